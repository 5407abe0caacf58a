#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end on the netns backend: crgw against the hermetic test network (real knot upstream, real
# nftables, real namespaces), sandboxes made with crgw-ctl run. Checks DNS control, bypass and spoofing
# drops, isolation between sandboxes and from the host, the audit log, the control API, release, and
# recovery after SIGKILL. TAP output. Needs root.
# usage: gateway.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

T=$(mktemp -d /tmp/crgw-e2e.XXXXXX)
testnet_on_exit rm -rf "$T"
testnet_on_exit 'gw_stop >/dev/null 2>&1; for p in $(cat "$T"/holders 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
AUDIT=$T/audit.log

cat >"$T/cleanroom.yaml" <<'YAML'
version: 1
sandbox:
  network:
    default: deny
    allow:
      - host: allowed.test
        ports: [80, 443]
      - host: "*.allowed.test"
        ports: [443]
      - host: chain.test
      - host: long.test
      - host: short.test
      - host: many.test
      - host: pool.test
      - host: loopback.test
      - host: other.test
        ports: [22]
      - host: mapped.test
      - host: nat64.test
      - host: sixtofour.test
      - host: teredo.test
      - host: mapped-host.test
      - host: mapped-web.test
      - host: mixed.test
      - host: wide.test
YAML

gw_start "$T" || { echo "Bail out! crgw did not start"; exit 1; }
ok 0 "crgw starts against the test network (pid $GW_PID)"

run() { "$CTL" run --rm --policy "$T/cleanroom.yaml" -- "$@"; }
# Inside a sandbox, $CRGW_GATEWAY is its gateway address.
kq() { printf 'kdig +time=2 +retry=0 @"$CRGW_GATEWAY" %s' "$*"; }

# ---- DNS answers ----------------------------------------------------------------------------------
out=$(run sh -c 'cat /etc/resolv.conf; echo "proxy=$HTTPS_PROXY $HTTP_PROXY"' 2>&1)
gw_addr=$(echo "$out" | awk '/^nameserver/{print $2; exit}')
echo "$gw_addr" | grep -Eq '^10\.201\.0\.[0-9]+$' && grep -q "proxy=http://$gw_addr:3128 http://$gw_addr:3128" <<<"$out"
ok $? "the sandbox's resolv.conf and proxy variables name its gateway address ($gw_addr)"
out=$(run getent ahostsv4 allowed.test 2>&1)
ok $? "an allowed name resolves inside the sandbox"
grep -q '^203\.0\.113\.10 ' <<<"$out" ; ok $? "... to the upstream's address (got: $(echo "$out" | head -1))"
audit_has "$AUDIT" 'select(.event=="decision" and .service=="dns" and .dst_host=="allowed.test" and .action=="allow")'
ok $? "the allowed lookup is audited"

out=$(run sh -c "$(kq denied.test A)" 2>&1)
grep -q 'status: NXDOMAIN' <<<"$out"
ok $? "a denied name gets NXDOMAIN"
audit_has "$AUDIT" 'select(.event=="decision" and .service=="dns" and .dst_host=="denied.test" and .action=="deny" and .reason_code=="host_not_allowed" and .rule=="sandbox.network.default")'
ok $? "... and an audit event host_not_allowed with the deciding rule"

out=$(run sh -c "$(kq chain.test A) +noall +answer" 2>&1)
grep -Eq '^chain\.test\.[[:space:]]+[0-9]+[[:space:]]+IN[[:space:]]+A[[:space:]]+203\.0\.113\.10' <<<"$out" &&
	! grep -q CNAME <<<"$out"
ok $? "a CNAME chain is flattened into A records for the name asked"

out=$(run sh -c "$(kq long.test A) +noall +answer" 2>&1)
ttl=$(echo "$out" | awk '$4=="A"{print $2; exit}')
[ -n "$ttl" ] && [ "$ttl" -le 300 ]
ok $? "a week-long upstream TTL is clamped to dns.ttl_max (got $ttl)"
out=$(run sh -c "$(kq short.test A) +noall +answer" 2>&1)
ttl=$(echo "$out" | awk '$4=="A"{print $2; exit}')
[ -n "$ttl" ] && [ "$ttl" -ge 5 ]
ok $? "a 1 s upstream TTL is raised to dns.ttl_min (got $ttl)"

out=$(run sh -c "$(kq allowed.test AAAA) +noall +answer" 2>&1)
grep -q '2001:db8::10' <<<"$out"
ok $? "AAAA records are answered"
out=$(run sh -c "$(kq many.test A) +noall +answer" 2>&1)
[ "$(grep -c 'IN[[:space:]]*A' <<<"$out")" -eq 8 ]
ok $? "all 8 addresses of a name are answered"

out=$(run sh -c "$(kq allowed.test TXT)" 2>&1)
grep -q 'status: NOERROR' <<<"$out" && grep -q 'ANSWER: 0' <<<"$out"
ok $? "other record types of an allowed name get an empty answer"
out=$(run sh -c "$(kq txt.test TXT)" 2>&1)
grep -q 'status: NXDOMAIN' <<<"$out"
ok $? "other record types of a denied name get NXDOMAIN"

out=$(run sh -c "$(kq +tcp allowed.test A)" 2>&1)
grep -q 'status: NOERROR' <<<"$out" && grep -q '203.0.113.10' <<<"$out"
ok $? "DNS over TCP answers allowed names"
out=$(run sh -c "$(kq +tcp denied.test A)" 2>&1)
grep -q 'status: NXDOMAIN' <<<"$out"
ok $? "DNS over TCP refuses denied names"
# Each connection takes one of the gateway's descriptors: a sandbox holds at most 64 at once, so that it
# cannot take them all from the others. The 65th and later are closed unanswered; a new one is taken once
# the others have closed.
out=$(run python3 -c '
import os, socket, struct, time
gw = os.environ["CRGW_GATEWAY"]
q = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x07allowed\x04test\x00\x00\x01\x00\x01"
socks = [socket.create_connection((gw, 53), timeout=3) for _ in range(70)]
answered = 0
for s in socks:
    try:
        s.sendall(struct.pack(">H", len(q)) + q)
        answered += len(s.recv(2)) == 2
    except OSError:
        pass
for s in socks:
    s.close()
time.sleep(0.5)  # the gateway sees the closes
s = socket.create_connection((gw, 53), timeout=3)
s.sendall(struct.pack(">H", len(q)) + q)
print(answered, len(s.recv(2)) == 2)
' 2>&1)
[ "$out" = "64 True" ]
ok $? "a sandbox gets at most 64 DNS-over-TCP connections at once, and more once they have closed (got: $out)"

out=$(run sh -c "$(kq pool.test A)" 2>&1)
grep -q 'status: NXDOMAIN' <<<"$out"
ok $? "a name resolving into the sandbox pool is refused"
audit_has "$AUDIT" 'select(.dst_host=="pool.test" and .reason_code=="private_address_blocked" and .dst_ip=="10.201.0.2")'
ok $? "... audited as private_address_blocked with the address"
out=$(run sh -c "$(kq loopback.test A)" 2>&1)
grep -q 'status: NXDOMAIN' <<<"$out"
ok $? "a name resolving to loopback is refused"

# IPv6 addresses that carry an IPv4 address are checked as that address (docs/policy.md).
out=$(run sh -c "$(kq mapped.test AAAA)" 2>&1)
grep -q 'status: NXDOMAIN' <<<"$out" && ! grep -q 'ffff:127' <<<"$out"
ok $? "an AAAA answer of ::ffff:127.0.0.1 (IPv4-mapped loopback) is refused"
audit_has "$AUDIT" 'select(.dst_host=="mapped.test" and .qtype=="AAAA" and .action=="deny" and .reason_code=="private_address_blocked" and .dst_ip=="::ffff:127.0.0.1")'
ok $? "... audited as private_address_blocked with the address as answered"
for name in nat64 sixtofour teredo; do
	out=$(run sh -c "$(kq $name.test AAAA)" 2>&1)
	grep -q 'status: NXDOMAIN' <<<"$out"
	ok $? "the $name form of loopback in an AAAA answer is refused too"
	audit_has "$AUDIT" "select(.dst_host==\"$name.test\" and .reason_code==\"private_address_blocked\")"
	ok $? "... audited as private_address_blocked"
done
out=$(run sh -c "$(kq mapped-host.test AAAA)" 2>&1)
grep -q 'status: NXDOMAIN' <<<"$out"
ok $? "an IPv4-mapped form of the gateway host's own address is refused"
audit_has "$AUDIT" 'select(.dst_host=="mapped-host.test" and .reason_code=="private_address_blocked" and .rule=="gateway.blocked_ranges")'
ok $? "... by the gateway's blocked ranges"
out=$(run sh -c "$(kq mapped-web.test AAAA) +noall +answer" 2>&1)
grep -q '::ffff:203.0.113.10' <<<"$out"
ok $? "an IPv4-mapped form of an ordinary upstream address is answered"

# A mix of good and refused addresses: the good ones are answered, the refused ones audited.
out=$(run sh -c "$(kq mixed.test A) +noall +answer" 2>&1)
grep -q '203\.0\.113\.10' <<<"$out" && ! grep -q '127\.0\.0\.' <<<"$out"
ok $? "a name with good and loopback addresses is answered with the good ones only"
audit_has "$AUDIT" 'select(.dst_host=="mixed.test" and .qtype=="A" and .action=="allow" and (.detail | test("refused addresses left out")))'
ok $? "... the allow event says addresses were left out"
audit_has "$AUDIT" 'select(.dst_host=="mixed.test" and .qtype=="A" and .action=="deny" and .reason_code=="private_address_blocked" and .dst_ip=="127.0.0.3" and (.detail | test("127\\.0\\.0\\.3,127\\.0\\.0\\.4")))'
ok $? "... and the refused addresses are audited as private_address_blocked, all of them named"
out=$(run sh -c "$(kq mixed.test AAAA) +noall +answer" 2>&1)
grep -q '2001:db8:113::10' <<<"$out" && ! grep -q 'ffff' <<<"$out"
ok $? "the same in AAAA: the IPv4-mapped loopback address is left out"
audit_has "$AUDIT" 'select(.dst_host=="mixed.test" and .qtype=="AAAA" and .action=="deny" and .reason_code=="private_address_blocked" and .dst_ip=="::ffff:127.0.0.1")'
ok $? "... and audited"

# More addresses than the gateway keeps of one answer (70 > 64): cut, and the allow event says so.
out=$(run sh -c "$(kq +tcp wide.test A) +noall +answer" 2>&1)
n=$(grep -c 'IN[[:space:]]*A[[:space:]]*203\.0\.113\.1[0-6][0-9]' <<<"$out")
[ "$n" -eq 64 ]
ok $? "an answer of 70 addresses is answered with 64 (got $n)"
audit_has "$AUDIT" 'select(.dst_host=="wide.test" and .action=="allow" and (.detail | test("\\+[0-9]+ more ttl=[0-9]+ \\(6 more over the limit of 64 left out\\)$")))'
ok $? "... and the allow event says 6 were left out over the limit"

# A header claiming two questions: FORMERR, answered with the same id (bytes 3-4: flags; rcode 1).
out=$(run bash -c 'exec 3<>/dev/udp/$CRGW_GATEWAY/53; printf "\x12\x34\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00" >&3; timeout 3 head -c 4 <&3 | od -An -tx1' 2>&1)
grep -q '12 34 81 81' <<<"$out"
ok $? "a malformed query gets FORMERR with its id (got: $out)"

# ---- bypass and spoofing --------------------------------------------------------------------------
out=$(run kdig +time=1 +retry=0 @"$TN_DNS" allowed.test 2>&1)
rc=$?
[ $rc -ne 0 ] && ! grep -q 'status: NOERROR' <<<"$out"
ok $? "a query straight to the upstream DNS server gets no answer"
audit_has "$AUDIT" "select(.event==\"packet_drop\" and .reason_code==\"dns_bypass_attempt\" and .dst_ip==\"$TN_DNS\" and .dst_port==53)"
ok $? "... and is audited as dns_bypass_attempt"
out=$(run kdig +tcp +time=1 +retry=0 @"$TN_DNS" allowed.test 2>&1)
! grep -q 'status: NOERROR' <<<"$out"
ok $? "DNS over TCP to the upstream gets no answer either"

out=$(run sh -c "ip addr add 192.0.2.77/32 dev eth0 && $(kq -b 192.0.2.77 allowed.test A)" 2>&1)
! grep -q 'status: NOERROR' <<<"$out"
ok $? "a query with a spoofed source address is dropped"
audit_has "$AUDIT" 'select(.event=="packet_drop" and .reason_code=="spoofed_source" and .src_ip=="192.0.2.77")'
ok $? "... and audited as spoofed_source"

# ---- the host's conntrack table --------------------------------------------------------------------
# The table is the host's, shared with every sandbox and the gateway's own upstream connections. 3,000 bare
# SYNs from a raw socket to an upstream port: unchecked, 3,000 entries for 60 s. New redirected connections
# are held to 1,000 a second per sandbox (burst 1,000); the rest are dropped and audited rate_limited.
out=$(run python3 -c '
import socket, struct
web = "'"$TN_WEB1"'"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect((web, 9)); me = u.getsockname()[0]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
for i in range(3000):
    t = struct.pack("!HHIIBBHHH", 20000 + i, 8091, i, 0, 5 << 4, 2, 65535, 0, 0)
    pseudo = socket.inet_aton(me) + socket.inet_aton(web) + struct.pack("!BBH", 0, 6, len(t))
    r.sendto(t[:16] + struct.pack("!H", csum(pseudo + t)) + t[18:], (web, 0))
print("sent")' 2>&1)
n=$(grep -c "dst=$TN_WEB1 sport=[0-9]* dport=8091 " /proc/net/nf_conntrack)
grep -q '^sent$' <<<"$out" && [ "$n" -le 1500 ]
ok $? "3,000 SYNs from one sandbox take at most 1,500 of the host's conntrack entries ($n)" || diag "$out"
audit_has "$AUDIT" "select(.event==\"packet_drop\" and .reason_code==\"rate_limited\" and .dst_ip==\"$TN_WEB1\" and .dst_port==8091)"
ok $? "... the rest are dropped and audited as rate_limited"
# A redirected connection that ended: its entry goes within seconds, not after TIME_WAIT's 120 s.
run python3 -c '
import socket, time
s = socket.create_connection(("'"$TN_WEB1"'", 8092), timeout=5); s.close(); time.sleep(0.5)' >/dev/null 2>&1
sleep 5
! grep -q "dst=$TN_WEB1 sport=[0-9]* dport=8092 " /proc/net/nf_conntrack
ok $? "... and a closed connection's entry is gone 5 s later"

# ---- the sandbox's root is not the host's ----------------------------------------------------------
out=$(run sh -c 'umount /proc 2>/dev/null; nsenter -t 1 -n -- ip -br link 2>&1; nsenter --net=/proc/1/ns/net -- ip -br link 2>&1' 2>&1)
! grep -q "$TN_VETH" <<<"$out"
ok $? "root inside the sandbox cannot join the host's network namespace, even after unmounting its /proc"
out=$(run sh -c 'touch /etc/crgw-escape-test && echo wrote' 2>&1)
! grep -q wrote <<<"$out" && [ ! -e /etc/crgw-escape-test ]
ok $? "root inside the sandbox cannot write the host's files"
out=$(run sh -c 'head -c 1 /etc/shadow >/dev/null && echo read' 2>&1)
! grep -q '^read' <<<"$out"
ok $? "root inside the sandbox cannot read the host's root-only files"
out=$(run sh -c "ls $T/ctl.sock && echo visible" 2>&1)
! grep -q visible <<<"$out"
ok $? "the gateway's control socket is not reachable from inside"
out=$(run sh -c 'ip addr add 192.0.2.78/32 dev eth0 && echo netadmin' 2>&1)
grep -q netadmin <<<"$out"
ok $? "root inside keeps full control of its own network (to craft packets: the gateway assumes it)"

# ---- isolation between sandboxes and from the host ------------------------------------------------
"$CTL" run --policy "$T/cleanroom.yaml" --json -- true 2>"$T/a.json"
ok $? "run without --rm leaves the sandbox up"
A=$(jq -r 'select(.event=="sandbox_created") | .sandbox_id' "$T/a.json")
A_GUEST=$(jq -r 'select(.event=="sandbox_created") | .guest' "$T/a.json")
A_GW=$(jq -r 'select(.event=="sandbox_created") | .gateway' "$T/a.json")
"$CTL" sandbox show --json "$A" | jq -r .holder_pid >>"$T/holders"
grep -q "^$A " <<<"$("$CTL" sandbox ls)"
ok $? "sandbox ls lists it ($A, $A_GUEST)"
[ "$("$CTL" exec "$A" -- hostname 2>&1)" = "$A" ]
ok $? "exec runs a command inside it"
# A listener inside A that would hand out a secret to anyone who reaches it.
"$CTL" exec "$A" -- python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(8)
while True:
    c, _ = s.accept(); c.sendall(b"secret-from-A\n"); c.close()
' >/dev/null 2>&1 &
listener=$!
testnet_on_exit "kill $listener 2>/dev/null"
for _ in $(seq 30); do
	grep -q secret <<<"$("$CTL" exec "$A" -- bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080 && head -c 6 <&3' 2>/dev/null)" && break
	sleep 0.2
done
grep -q secret-from-A <<<"$("$CTL" exec "$A" -- bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080 && cat <&3' 2>/dev/null)"
ok $? "the listener inside A answers locally"

out=$(run bash -c "exec 3<>/dev/tcp/$A_GUEST/8080 && timeout 3 cat <&3" 2>&1)
! grep -q secret <<<"$out"
ok $? "another sandbox cannot reach A's address over TCP"
audit_has "$AUDIT" "select(.event==\"decision\" and .dst_ip==\"$A_GUEST\" and .dst_port==8080 and .action==\"deny\" and .reason_code==\"private_address_blocked\")"
ok $? "... the attempt is refused and audited as private_address_blocked"
out=$(run bash -c "exec 3<>/dev/udp/$A_GUEST/8080 && printf x >&3 && timeout 2 head -c 1 <&3" 2>&1)
[ -z "$out" ] || ! grep -q secret <<<"$out"
ok $? "UDP to A's address gets nothing back"
out=$(run sh -c "kdig +time=1 +retry=0 @$A_GW allowed.test" 2>&1)
! grep -q 'status: NOERROR' <<<"$out"
ok $? "another sandbox's gateway address does not serve DNS to this one"
out=$(run bash -c "exec 3<>/dev/tcp/$TN_HOST/22 && timeout 3 cat <&3" 2>&1)
! grep -q SSH <<<"$out"
ok $? "the host's other addresses are unreachable (TCP $TN_HOST:22)"
audit_has "$AUDIT" "select(.dst_ip==\"$TN_HOST\" and .dst_port==22 and .reason_code==\"private_address_blocked\")"
ok $? "... refused as a gateway-blocked address"
out=$(run bash -c "exec 3<>/dev/tcp/$TN_WEB1/22 && timeout 3 cat <&3" 2>&1)
! grep -q SSH <<<"$out"
ok $? "an upstream address is not reachable around the gateway (no kernel forwarding)"

# ---- control API -----------------------------------------------------------------------------------
"$CTL" sandbox show --json "$A" | jq -e '.counters.dns_queries >= 0 and .guest == "'"$A_GUEST"'"' >/dev/null
ok $? "sandbox show reports the sandbox and its counters"
"$CTL" sandbox show --json "$A" >"$T/a.show"
jq -e '.timings | .image_prep_ms >= 0 and .network_ms > 0 and .boot_ms >= 0 and .last_command_ms >= 0 and .commands >= 3' \
	"$T/a.show" >/dev/null
ok $? "sandbox show has the run's timings: $(jq -c .timings "$T/a.show")"
api() { curl -s -o /dev/null -w '%{http_code}' --unix-socket "$T/ctl.sock" "$@"; }
codes=$(api -X POST -d '{"bogus_ms": 1}' "http://crgw/v1/sandboxes/$A/timings")
codes+=" $(api -X POST -d '{"boot_ms": -5}' "http://crgw/v1/sandboxes/$A/timings")"
codes+=" $(api -X POST -d '{"boot_ms": 99999999999}' "http://crgw/v1/sandboxes/$A/timings")"
codes+=" $(api -X POST -d '{"boot_ms": "1"}' "http://crgw/v1/sandboxes/$A/timings")"
codes+=" $(api -X POST -d 'not json' "http://crgw/v1/sandboxes/$A/timings")"
codes+=" $(api -X POST -d '{"boot_ms": 1}' "http://crgw/v1/sandboxes/sbx-0000000000/timings")"
codes+=" $(api "http://crgw/v1/sandboxes/$A/timings")"
[ "$codes" = "400 400 400 400 400 404 405" ]
ok $? "bad timings are refused (an unknown key, negative, over a week, a string, not JSON, no such sandbox, GET): $codes"
# Paths that once reached a NULL in the router (an empty sandbox id): answered, and the gateway lives on.
codes=$(api "http://crgw/v1/sandboxes/")
codes+=" $(api -X POST -d '{}' "http://crgw/v1/sandboxes/")"
codes+=" $(api "http://crgw/v1/sandboxes//timings")"
codes+=" $(api -X POST -d '{}' "http://crgw/v1/sandboxes/x/y")"
[ "$codes" = "404 405 404 405" ] && kill -0 "$GW_PID"
ok $? "an empty sandbox id or an unknown sub-path is a 404 (a POST: 405), not a crash: $codes"
# Every method the router does not take gets its JSON 405, never libevent's HTML page.
bodies=""
for m in PUT PATCH OPTIONS TRACE; do
	bodies+=$(curl -s -X "$m" -w ' %{http_code};' --unix-socket "$T/ctl.sock" "http://crgw/v1/sandboxes" | tr -d '\n')
done
[ "$(grep -o '"code": *"request_invalid"' <<<"$bodies" | wc -l)" = 4 ] && [ "$(grep -o ' 405;' <<<"$bodies" | wc -l)" = 4 ]
ok $? "PUT, PATCH, OPTIONS and TRACE get a JSON 405: $bodies"
body=$(curl -s -X CONNECT --request-target crgw:443 -w ' %{http_code}' --unix-socket "$T/ctl.sock" http://crgw/ | tr -d '\n')
grep -q '"code": *"request_invalid".* 405$' <<<"$body" && kill -0 "$GW_PID"
ok $? "a CONNECT (an authority, no path) gets a JSON 405 too: $body"
"$CTL" stats --json | jq -e '.dns.queries > 10 and .sandboxes == 1' >/dev/null
ok $? "stats counts queries and sandboxes"
grep -q '^crgw_dns_queries_total [1-9]' <<<"$("$CTL" stats --prometheus)"
ok $? "metrics are served in Prometheus text format"
"$CTL" audit tail -n 5 --json | jq -e . >/dev/null
ok $? "audit tail prints JSON events"
"$CTL" audit tail -f -n 0 --json >"$T/follow.json" 2>/dev/null &
follower=$!
sleep 0.3
run sh -c "$(kq follow-me.test A)" >/dev/null 2>&1
audit_has "$T/follow.json" 'select(.dst_host=="follow-me.test")'
ok $? "audit tail -f streams live events"
kill "$follower" 2>/dev/null
wait "$follower" 2>/dev/null
# The gateway keeps at most 64 followers; the next one is told why, not "HTTP response code said error".
# A follower ended just before (above) may still be counted for a moment: one of the 64 refused then is
# started again, until the gateway has answered all 64 with 200 (each one's answer head in its file).
# (exec: run in the background, the function is curl itself, so its PID in $! is curl's)
follow() { exec curl -s -N -D "$T/follower.$1" --unix-socket "$T/ctl.sock" "http://crgw/v1/audit?lines=0&follow=1" >/dev/null 2>&1; }
followers=()
for i in $(seq 64); do
	follow "$i" &
	followers[i]=$!
done
for _ in $(seq 100); do
	up=0
	for i in $(seq 64); do
		if grep -q '^HTTP/1.1 200' "$T/follower.$i" 2>/dev/null; then
			up=$((up + 1))
		elif grep -q '^HTTP/1.1 [45]' "$T/follower.$i" 2>/dev/null; then
			rm -f "$T/follower.$i"
			follow "$i" &
			followers[i]=$!
		fi
	done
	[ $up -eq 64 ] && break
	sleep 0.1
done
timeout 20 "$CTL" audit tail -f -n 0 >/dev/null 2>"$T/follow65.err"
rc=$?
[ $up -eq 64 ] && [ $rc -eq 2 ] && grep -q "rate_limited: too many audit followers" "$T/follow65.err"
ok $? "a 65th audit follower is refused with the gateway's reason ($up followers; exit $rc: $(head -c 200 "$T/follow65.err"))"
kill "${followers[@]}" 2>/dev/null
wait "${followers[@]}" 2>/dev/null
# Followers whose clients went away (a `tail -f` ended by its user) cost nothing once the gateway has
# noticed: in a sanitizer build the shutdown check below fails on what such a follower left behind.
gone=()
for i in $(seq 10); do
	curl -s -N --unix-socket "$T/ctl.sock" "http://crgw/v1/audit?follow=1" >/dev/null 2>&1 &
	gone[i]=$!
done
sleep 1
kill "${gone[@]}" 2>/dev/null
wait "${gone[@]}" 2>/dev/null
for i in 1 2 3; do run true >/dev/null 2>&1; done
"$CTL" doctor >"$T/doctor.txt" 2>&1
ok $? "doctor passes on this host"
grep -q 'network_default_deny' "$T/doctor.txt"
ok $? "doctor shows the capability map"
# A gateway that accepts and never answers (stopped: the kernel still queues the connection): doctor gives
# up after its own 10 s, not the other commands' 120 s, and says so.
kill -STOP "$GW_PID"
t0=$(date +%s)
timeout 60 "$CTL" doctor >"$T/doctor-stopped.txt" 2>&1
rc=$?
t1=$(date +%s)
kill -CONT "$GW_PID"
# A failure, exit 1: a gateway that takes connections and answers none is unhealthy, and a probe built on
# doctor must say so (one that does not run at all is only a warning: doctor also checks hosts before).
line=$(grep -E '^fail +gateway ' "$T/doctor-stopped.txt" | head -1)
[ $rc -eq 1 ] && [ $((t1 - t0)) -le 30 ] && grep -qiE 'time|answer' <<<"$line"
ok $? "doctor against a gateway that does not answer ends in $((t1 - t0)) s, exit $rc (a failure): $(cut -c1-160 <<<"$line")"

# A second gateway must not take over the first one's table, state or DNS port.
timeout 10 "$CRGW" --control "$T/ctl2.sock" --audit-log "$T/audit2.log" --pool 10.201.1.0/24 \
	--upstream-dns "$TN_DNS" --set "state_dir=$T/state2" --set "nftables.table=$GW_TABLE" \
	--set interfaces.prefix=cgx 2>"$T/second.log"
rc=$?
[ $rc -eq 1 ] && grep -q 'same resources' "$T/second.log" && nft list table inet "$GW_TABLE" >/dev/null 2>&1
ok $? "a second gateway on the same nftables table refuses to start and leaves the first alone (exit $rc)"
timeout 10 "$CRGW" --control "$T/ctl2.sock" --audit-log "$T/audit2.log" --pool 10.201.1.0/24 \
	--upstream-dns "$TN_DNS" --set "state_dir=$T/state2" --set nftables.table=crgw_e2e_other \
	--set interfaces.prefix=cgx 2>"$T/second.log"
rc=$?
[ $rc -eq 1 ] && grep -q 'DNS on this host' "$T/second.log" && ! nft list table inet crgw_e2e_other >/dev/null 2>&1
ok $? "a second gateway on another table still refuses: one DNS service per host (exit $rc)"
"$CTL" stats >/dev/null
ok $? "the first gateway still serves"

mv "$AUDIT" "$AUDIT.old"
kill -HUP "$GW_PID"
sleep 0.3
run sh -c "$(kq after-hup.test A)" >/dev/null 2>&1
audit_has "$AUDIT" 'select(.dst_host=="after-hup.test")'
ok $? "SIGHUP reopens the audit log"

# ---- release ---------------------------------------------------------------------------------------
A_HOLDER=$("$CTL" sandbox show --json "$A" | jq -r .holder_pid)
A_IF=$("$CTL" sandbox show --json "$A" | jq -r .interface)
"$CTL" sandbox rm "$A" >/dev/null
ok $? "sandbox rm releases it"
sleep 0.3
! ip link show "$A_IF" >/dev/null 2>&1
ok $? "its interface is gone"
[ -z "$(kernel_objects)" ]
ok $? "no chain, set or counter of it is left"
! alive "$A_HOLDER"
ok $? "its namespaces' holder process is gone"
audit_has "$AUDIT" "select(.event==\"sandbox_released\" and .sandbox_id==\"$A\")"
ok $? "the release is audited"
out=$(curl -s --unix-socket "$T/ctl.sock" "http://crgw/v1/sandboxes/$A")
jq -e '.code == "released" and .timings.teardown_ms >= 0 and .timings.commands >= 3' >/dev/null <<<"$out"
ok $? "its tombstone keeps the timings with the gateway's teardown: $(jq -c .timings <<<"$out")"

# ---- policies by hash ------------------------------------------------------------------------------
# Every policy a sandbox registered with is in the store, under the hash its events carry.
A_HASH=$(jq -r --arg a "$A" 'select(.event=="sandbox_registered" and .sandbox_id==$a) | .policy_hash' "$AUDIT" "$AUDIT.old" 2>/dev/null | head -1)
"$CTL" policy get "$A_HASH" >"$T/a.policy.json"
jq -e --arg h "$A_HASH" '.policy_hash == $h' "$T/a.policy.json" >/dev/null &&
	"$CTL" policy diff "$T/cleanroom.yaml" "$T/a.policy.json" >/dev/null
ok $? "the policy behind sandbox A's events can be fetched by its hash, and it is the one it was made with"
[ -s "$T/a.policy.json" ] || diag "sandbox A's policy_hash: '$A_HASH'"
mkdir -p "$T/p_other"
cat >"$T/p_other/cleanroom.yaml" <<'YAML'
version: 1
sandbox:
  network:
    default: deny
    allow:
      - host: other.test
YAML
P_HASH=$("$CTL" policy push "$T/p_other")
again=$("$CTL" policy push "$T/p_other")
[[ "$P_HASH" =~ ^sha256:[0-9a-f]{64}$ ]] && [ "$again" = "$P_HASH (already stored)" ] &&
	"$CTL" policy ls --json | jq -e --arg h "$P_HASH" '[.policies[].policy_hash] | index($h) != null' >/dev/null
ok $? "policy push stores a policy once and prints its hash ($P_HASH); ls lists it"
out=$("$CTL" run --rm --json --policy-hash "$P_HASH" -- sh -c "$(kq other.test A) | grep -c 203.0.113; $(kq allowed.test A) | grep -o 'status: [A-Z]*'" 2>"$T/ph.json")
ph_sb=$(jq -r 'select(.event=="sandbox_created") | .policy_hash' "$T/ph.json")
grep -q '^1$' <<<"$out" && grep -q 'status: NXDOMAIN' <<<"$out" && [ "$ph_sb" = "$P_HASH" ]
ok $? "run --policy-hash runs under the stored policy: other.test resolves, allowed.test does not ($(echo "$out" | tr "\n" " "))"
# A launcher registers with the hash alone.
ip netns add crgw-e2e-ph
testnet_on_exit 'ip netns del crgw-e2e-ph 2>/dev/null'
ip netns exec crgw-e2e-ph sleep 60 &
ph_holder=$!
echo "$ph_holder" >>"$T/holders"
out=$(curl -s --unix-socket "$T/ctl.sock" -X POST \
	-d "{\"policy_hash\": \"$P_HASH\", \"netns_path\": \"/run/netns/crgw-e2e-ph\", \"holder_pid\": $ph_holder}" \
	http://crgw/v1/sandboxes)
ph_id=$(jq -r .id <<<"$out")
[ "$(jq -r .policy_hash <<<"$out")" = "$P_HASH" ] && [[ "$ph_id" == sbx-* ]] &&
	audit_has "$AUDIT" "select(.event==\"sandbox_registered\" and .sandbox_id==\"$ph_id\" and .policy_hash==\"$P_HASH\")"
ok $? "the control API registers a sandbox by policy_hash alone ($ph_id)"
[[ "$ph_id" == sbx-* ]] || diag "$out"
[ "$(api -X DELETE "http://crgw/v1/sandboxes/$ph_id")" = 200 ]
ok $? "... and releases it"
wait "$ph_holder" 2>/dev/null
ip netns del crgw-e2e-ph
bad_hash=sha256:$(printf '%064d' 0)
codes=$(api -X POST -d "{\"policy_hash\": \"$bad_hash\", \"netns_path\": \"/run/netns/none\"}" http://crgw/v1/sandboxes)
codes+=" $(api -X POST -d '{"policy_hash": "sha256:XYZ", "netns_path": "/run/netns/none"}' http://crgw/v1/sandboxes)"
codes+=" $(api -X POST -d "{\"policy_hash\": \"$P_HASH\", \"policy\": {}, \"netns_path\": \"/run/netns/none\"}" http://crgw/v1/sandboxes)"
codes+=" $(api -X POST -d '{"netns_path": "/run/netns/none"}' http://crgw/v1/sandboxes)"
codes+=" $(api "http://crgw/v1/policies/$bad_hash")"
codes+=" $(api --path-as-is "http://crgw/v1/policies/../../etc/passwd")"
codes+=" $(api -X POST -d 'not json' http://crgw/v1/policies)"
codes+=" $(api -X POST --data-binary @<(jq -c '.network.rules[0].host = "evil.test"' "$T/a.policy.json") http://crgw/v1/policies)"
codes+=" $(api -X DELETE "http://crgw/v1/policies/$P_HASH")"
[ "$codes" = "404 400 400 400 404 400 400 422 405" ]
ok $? "unknown and malformed hashes, both or neither of policy and policy_hash, a tampered document, a DELETE: refused ($codes)"
# A registration whose namespace path is a FIFO is answered at once (its open must not wait for a writer,
# which held the whole control API), and so is a policy that is not an object.
mkfifo "$T/ns.fifo"
sleep 60 &
fifo_holder=$!
body=$(jq -cn --argjson p "$(cat "$T/a.policy.json")" --arg n "$T/ns.fifo" --argjson h "$fifo_holder" '{policy: $p, netns_path: $n, holder_pid: $h}')
out=$(timeout 10 curl -s --unix-socket "$T/ctl.sock" -d "$body" http://crgw/v1/sandboxes)
rc=$?
kill "$fifo_holder" 2>/dev/null
wait "$fifo_holder" 2>/dev/null
[ $rc -eq 0 ] && grep -q 'not a network namespace' <<<"$out" && [ "$(api http://crgw/v1/health)" = 200 ]
ok $? "a FIFO as netns_path is refused at once, and the control API still answers (curl $rc: $out)"
codes=$(api -X POST -d '{"policy": 1, "netns_path": "/run/netns/none"}' http://crgw/v1/sandboxes)
codes+=" $(api -X POST -d '{"policy": "x", "netns_path": "/run/netns/none"}' http://crgw/v1/sandboxes)"
codes+=" $(api 'http://crgw/v1/audit?lines=')"
codes+=" $(api 'http://crgw/v1/audit?lines=1&follow=yes')"
[ "$codes" = "400 400 400 400" ]
ok $? "a policy that is not an object, an empty lines= and a follow= other than 0 or 1: 400 ($codes)"
# A stored file that no longer matches its name is never served nor run.
store=$GW_DATA/policies
cp "$store/${P_HASH#sha256:}.json" "$T/p_other.saved"
sed -i 's/other\.test/evil.test/' "$store/${P_HASH#sha256:}.json"
codes=$(api "http://crgw/v1/policies/$P_HASH")
codes+=" $(api -X POST -d "{\"policy_hash\": \"$P_HASH\", \"netns_path\": \"/run/netns/none\"}" http://crgw/v1/sandboxes)"
[ "$codes" = "500 500" ]
ok $? "a stored policy changed on disk is neither served nor run ($codes)"
cp "$T/p_other.saved" "$store/${P_HASH#sha256:}.json"
[ "$(stat -c %a "$store")" = 700 ] && [ -z "$(find "$store" -name '.tmp-*')" ]
ok $? "the store is private to root (0700) and holds no temporary file"

# ---- SIGKILL and restart --------------------------------------------------------------------------
# The gateway that served everything above stops cleanly first: in a sanitizer build its exit status is
# where a leak of theirs shows (the SIGKILLed one below would never say).
gw_stop
ok $? "SIGTERM stops the first crgw with status 0 (sanitizer builds: nothing it served above leaked)"
# Start-ups that must fail at once, with no gateway running: a control path that is no socket (kept as it
# is), an audit log that is a FIFO, a CA file without a certificate, a control path that is a directory
# (which failed after the workers had started, and then hung until SIGKILL).
gw_try() { # gw_try ARGS...: a start that is expected to fail; prints its exit status
	timeout 30 "$CRGW" --pool "$GW_POOL" --upstream-dns "$TN_DNS" --workers 2 --set "state_dir=$T/state" \
		--set "data_dir=$GW_DATA" --set "cache.dir=$GW_DATA/cache" --set "limits.cgroup=$GW_CGROUP" \
		--set "nftables.table=$GW_TABLE" --set "interfaces.prefix=$GW_PREFIX" --set nftables.nflog_group=4243 \
		--set transparent.http_port=15180 --set transparent.tcp_port=15543 "$@" 2>"$T/try.log"
	echo $?
}
echo "keep me" >"$T/not-a-socket"
rc=$(gw_try --control "$T/not-a-socket" --audit-log "$T/try-audit.log")
[ "$rc" = 1 ] && [ "$(cat "$T/not-a-socket")" = "keep me" ] && grep -q 'not a socket' "$T/try.log"
ok $? "a control path that is a file stops the start, and the file stays (exit $rc)"
mkdir "$T/ctl-dir"
rc=$(gw_try --control "$T/ctl-dir" --audit-log "$T/try-audit.log")
[ "$rc" = 1 ]
ok $? "a control path that is a directory stops the start at once (exit $rc; 124 is a hang)"
mkfifo "$T/audit.fifo"
rc=$(gw_try --control "$T/try.sock" --audit-log "$T/audit.fifo")
[ "$rc" = 1 ] && grep -q 'not a regular file' "$T/try.log"
ok $? "an audit log that is a FIFO stops the start at once (exit $rc)"
echo "not a certificate" >"$T/junk.pem"
rc=$(gw_try --control "$T/try.sock" --audit-log "$T/try-audit.log" --set "mediation.ca_file=$T/junk.pem")
[ "$rc" = 1 ] && grep -q 'mediation.ca_file: .*no PEM certificate' "$T/try.log"
ok $? "a mediation.ca_file without a certificate stops the start (exit $rc: $(grep -o 'error=.*' "$T/try.log" | head -1))"
# A host interface that the prefix would catch (a veth pair with no address: it carries nothing):
# refused, named.
ip link add "${GW_PREFIX}host" type veth peer name "${GW_PREFIX}hostp" &&
	testnet_on_exit "ip link del ${GW_PREFIX}host 2>/dev/null; true"
rc=$(gw_try --control "$T/try.sock" --audit-log "$T/try-audit.log")
ip link del "${GW_PREFIX}host"
[ "$rc" = 1 ] && grep -q "interfaces.prefix matches an interface.*interface=\"${GW_PREFIX}host" "$T/try.log" &&
	! grep -q "previous run's leftovers" "$T/try.log"
ok $? "an interfaces.prefix that a host interface starts with stops the start, naming it (exit $rc)"
gw_start "$T" || { echo "Bail out! crgw did not start again"; exit 1; }
"$CTL" run --policy "$T/cleanroom.yaml" --json -- true 2>"$T/b.json"
B=$(jq -r 'select(.event=="sandbox_created") | .sandbox_id' "$T/b.json")
B_HOLDER=$("$CTL" sandbox show --json "$B" | jq -r .holder_pid)
echo "$B_HOLDER" >>"$T/holders"
kill -KILL "$GW_PID"
wait "$GW_PID" 2>/dev/null
GW_PID=
[ -n "$(kernel_objects)" ] && alive "$B_HOLDER"
ok $? "after SIGKILL the dead gateway's sandbox is still there (interface, rules, holder)"
# The restarted gateway answers denied names REFUSED and allows 20 queries a second per sandbox.
gw_start "$T" --set dns.denied_rcode=refused --set dns.rate_limit=20
ok $? "a new crgw starts over the leftovers"
[ -z "$(kernel_objects)" ]
ok $? "no interface, chain, set or counter of the old sandboxes is left"
sleep 0.2
! alive "$B_HOLDER"
ok $? "the old sandbox's holder, and with it its namespaces, is gone"
audit_has "$AUDIT" "select(.event == \"sandbox_released\" and .sandbox_id == \"$B\" and (.policy_hash | startswith(\"sha256:\")) and (.detail | contains(\"stopped without releasing it\")))"
ok $? "... and its end is audited: sandbox_released, with its policy hash, says its gateway stopped without releasing it"
"$CTL" run --rm --policy "$T/cleanroom.yaml" -- getent ahostsv4 allowed.test >/dev/null 2>&1
ok $? "the restarted gateway serves new sandboxes"
# Killed again with a sandbox registered, then a start that fails after reading its record (an audit log
# that is a FIFO): the record must survive that start, so the next one still audits the sandbox's end.
"$CTL" run --policy "$T/cleanroom.yaml" --json -- true 2>"$T/b2.json"
B2=$(jq -r 'select(.event=="sandbox_created") | .sandbox_id' "$T/b2.json")
"$CTL" sandbox show --json "$B2" | jq -r .holder_pid >>"$T/holders"
kill -KILL "$GW_PID"
wait "$GW_PID" 2>/dev/null
GW_PID=
rc=$(gw_try --control "$T/ctl.sock" --audit-log "$T/audit.fifo")
[ "$rc" = 1 ] && [ -f "$T/state/$B2" ]
ok $? "a start that fails before its audit log opens (exit $rc) keeps the killed gateway's sandbox record"
gw_start "$T" --set dns.denied_rcode=refused --set dns.rate_limit=20 || { echo "Bail out! crgw did not restart"; exit 1; }
audit_has "$AUDIT" "select(.event == \"sandbox_released\" and .sandbox_id == \"$B2\" and (.detail | contains(\"stopped without releasing it\")))" &&
	[ ! -e "$T/state/$B2" ]
ok $? "... and the next start audits its end, then removes the record"
"$CTL" policy get "$P_HASH" | jq -e --arg h "$P_HASH" '.policy_hash == $h' >/dev/null
ok $? "the policy store outlives the gateway: $P_HASH is served after the restart"
out=$(run sh -c "$(kq denied.test A)" 2>&1)
grep -q 'status: REFUSED' <<<"$out"
ok $? "dns.denied_rcode=refused answers denied names REFUSED"
out=$(run sh -c 'for i in $(seq 60); do kdig +time=1 +retry=0 @"$CRGW_GATEWAY" allowed.test | grep -o "status: [A-Z]*"; done' 2>&1)
refused=$(grep -c 'status: REFUSED' <<<"$out")
[ "$refused" -gt 0 ] && grep -q 'status: NOERROR' <<<"$out"
ok $? "the per-sandbox rate limit refuses the excess of a burst ($refused of 60 refused)"
audit_has "$AUDIT" 'select(.reason_code=="rate_limited" and .service=="dns" and .rule=="dns.rate_limit")'
ok $? "... audited as rate_limited"

# ---- clean shutdown --------------------------------------------------------------------------------
"$CTL" run --policy "$T/cleanroom.yaml" --json -- true 2>"$T/c.json"
C_HOLDER=$("$CTL" sandbox show --json "$(jq -r 'select(.event=="sandbox_created") | .sandbox_id' "$T/c.json")" | jq -r .holder_pid)
echo "$C_HOLDER" >>"$T/holders"
# A job running while the gateway stops ends with it, and its run says so (a bare 137 reads as an OOM kill).
nsb() { "$CTL" sandbox ls --json 2>/dev/null | jq '.sandboxes | length'; }
before=$(nsb)
"$CTL" run --rm --policy "$T/cleanroom.yaml" -- sleep 60 2>"$T/gone.err" &
job=$!
for _ in $(seq 50); do
	[ "$(nsb)" -gt "$before" ] && break
	sleep 0.1
done
sleep 0.3
gw_stop
ok $? "SIGTERM stops crgw with status 0 (sanitizer builds: no leak)"
wait "$job"
rc=$?
[ $rc -eq 137 ] && grep -q "ended with its gateway: cannot reach the gateway" "$T/gone.err"
ok $? "a run whose gateway stopped exits 137 and says why (exit $rc: $(head -c 160 "$T/gone.err" | tr '\n' ' '))"
! nft list table inet "$GW_TABLE" >/dev/null 2>&1 && [ -z "$(kernel_objects)" ]
ok $? "shutdown removes the table and every interface"
! alive "$C_HOLDER"
ok $? "shutdown ends the sandboxes it released"
audit_has "$AUDIT" 'select(.event=="gateway_stopped")'
ok $? "the shutdown is audited"
if [ "$TAP_FAILED" -gt 0 ]; then
	diag "crgw log:" "$(tail -20 "$T/crgw.log")"
fi
tap_done
