#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The explicit proxy end to end: CONNECT tunnels from a sandbox through crgw to the test network's real
# servers, every refusal with its status, body and audit event, non-HTTP TCP through a tunnel, and a bulk
# transfer that must arrive intact. TAP output. Needs root.
# usage: proxy.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
GW_TABLE=crgw_proxy
GW_PREFIX=cgp

T=$(mktemp -d /tmp/crgw-proxy.XXXXXX)
testnet_on_exit rm -rf "$T"
testnet_on_exit 'gw_stop >/dev/null 2>&1'
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
      - host: chain.test
        ports: [22]
      - host: pool.test
      - host: other.test
        ports: [8080]
      - host: v6only.test
        ports: [80]
      - host: dual.test
        ports: [80]
      - host: slow6.test
        ports: [80]
      - host: 2001:db8:113::/64
        ports: [80]
      - host: mapped.test
        ports: [80]
      - host: nat64.test
        ports: [80]
      - host: mapped-web.test
        ports: [80]
      - host: mixed.test
        ports: [80]
YAML
# A 64 MiB blob on the upstream web server, and its digest.
head -c $((64 << 20)) /dev/urandom >"$T/net/www/$TN_WEB1/blob"
want=$(sha256sum <"$T/net/www/$TN_WEB1/blob" | cut -d' ' -f1)

gw_start "$T" || { echo "Bail out! crgw did not start"; exit 1; }
run() { "$CTL" run --rm --policy "$T/cleanroom.yaml" -- "$@"; }
# Inside a sandbox: a raw CONNECT, then whatever the tunnel carries, for at most 3 s.
connect_raw() { printf 'exec 3<>/dev/tcp/$CRGW_GATEWAY/3128; printf "CONNECT %s HTTP/1.1\\r\\nHost: %s\\r\\n\\r\\n" >&3; timeout 3 cat <&3' "$1" "$1"; }

out=$(run curl -s --max-time 10 -p http://allowed.test/ 2>&1)
[ "$out" = "upstream $TN_WEB1" ]
ok $? "curl through HTTPS_PROXY/HTTP_PROXY tunnels to an allowed host (got: $out)"
audit_has "$AUDIT" 'select(.event=="decision" and .service=="connect" and .action=="allow" and .dst_host=="allowed.test" and .dst_port==80 and .dst_ip=="203.0.113.10" and .rule=="sandbox.network.allow[0]")'
ok $? "... the tunnel is audited as allowed with the rule and the upstream address"
audit_has "$AUDIT" 'select(.event=="connection_end" and .service=="connect" and .dst_host=="allowed.test" and .bytes_down > 0 and .bytes_up > 0)'
ok $? "... and its end with the bytes each way"

check_refusal() { # TARGET STATUS REASON DESCRIPTION
	local out attempt
	# A second attempt only when the first saw no answer at all, and it is reported: a wrong answer fails.
	for attempt in 1 2; do
		out=$(run bash -c "$(connect_raw "$1")" 2>&1)
		[ -n "$out" ] && break
		diag "CONNECT $1: attempt $attempt saw no answer"
	done
	grep -q "^HTTP/1.1 $2 " <<<"${out%%$'\n'*}" && grep -q "^$3\$" <<<"$out"
	ok $? "CONNECT $1 is refused: $2 with body $3"
	[ "$TAP_FAILED" -gt 0 ] && diag "got: $out"
	audit_has "$AUDIT" "select(.event==\"decision\" and .service==\"connect\" and .action==\"deny\" and .reason_code==\"$3\")"
	ok $? "... audited as $3"
}
check_refusal denied.test:80 403 host_not_allowed
check_refusal allowed.test:22 403 port_not_allowed
check_refusal 203.0.113.10:80 403 ip_literal_not_allowed
check_refusal pool.test:80 403 private_address_blocked
check_refusal "$TN_HOST:80" 403 private_address_blocked
check_refusal 'no port here' 400 request_invalid
audit_has "$AUDIT" 'select(.service=="connect" and .reason_code=="request_invalid" and .dst_host=="no\\x20port\\x20here")'
ok $? "... naming the target as the client wrote it, escaped, in dst_host"
check_refusal 0177.0.0.1:443 400 request_invalid
audit_has "$AUDIT" 'select(.service=="connect" and .reason_code=="request_invalid" and .dst_host=="0177.0.0.1:443" and .dst_port==443 and (.detail | test("dotted-quad")))'
ok $? "... with the octal target in dst_host and why in detail"
check_refusal 'user:secret@evil.test' 400 request_invalid
audit_has "$AUDIT" 'select(.service=="connect" and .reason_code=="request_invalid" and .dst_host=="evil.test")'
ok $? "... and user information never reaches the audit log"
! grep -q secret "$AUDIT"
ok $? "... anywhere in it"
# A name whose only address is an IPv4-mapped or NAT64 form of loopback: the gateway's own loopback must
# never be the upstream.
check_refusal mapped.test:80 403 private_address_blocked
audit_has "$AUDIT" 'select(.service=="connect" and .dst_host=="mapped.test" and .reason_code=="private_address_blocked" and .dst_ip=="::ffff:127.0.0.1")'
ok $? "... naming the IPv4-mapped address"
check_refusal nat64.test:80 403 private_address_blocked
# Allowed, but nothing listens there: the upstream answers with a reset.
check_refusal other.test:8080 502 upstream_unreachable

out=$(run sh -c "$(sb_ca_cmd) && curl -s --max-time 10 --cacert $SB_CA https://allowed.test/" 2>&1)
[ "$out" = "upstream $TN_WEB1" ]
ok $? "HTTPS through a CONNECT tunnel verifies against the test CA end to end (got: $out)"
audit_has "$AUDIT" 'select(.event=="decision" and .service=="connect" and .action=="allow" and .dst_host=="allowed.test" and .dst_port==443)'
ok $? "... audited as an allowed tunnel to port 443"
out=$(run bash -c 'exec 3<>/dev/tcp/$CRGW_GATEWAY/3128; printf "CONNECT allowed.test:80 HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n" >&3; timeout 3 cat <&3' 2>&1)
grep -q '^HTTP/1.1 400 ' <<<"${out%%$'\n'*}"
ok $? "a malformed request head gets 400"

out=$(run bash -c "$(connect_raw chain.test:22)" 2>&1)
grep -q '^HTTP/1.1 200 ' <<<"$out" && grep -q "SSH-2.0-crgw-testnet $TN_WEB1" <<<"$out"
ok $? "non-HTTP TCP (an ssh-style banner on port 22) flows through a tunnel"
out=$(run bash -c 'exec 3<>/dev/tcp/$CRGW_GATEWAY/3128; printf "CONNECT chain.test:22 HTTP/1.1\r\nHost: chain.test\r\n\r\nearly-bytes\n" >&3; timeout 3 cat <&3' 2>&1)
grep -q '^early-bytes' <<<"$out"
ok $? "bytes sent right after the CONNECT head reach the upstream (its echo comes back)"
# A client slower than its upstream while the tunnel is still young (copy mode): a 4 KiB receive buffer
# and a second's pause before it reads. Whatever the gateway could not write at once (how much depends on
# its send buffer, which the test cannot shrink) waits in the flow's pipe; every byte arrives, in order.
# 48 KiB, all within the first 64 KiB each way.
head -c $((48 << 10)) /dev/urandom >"$T/net/www/$TN_WEB1/small-blob"
small_want=$(sha256sum <"$T/net/www/$TN_WEB1/small-blob" | cut -d' ' -f1)
got=$(run python3 -c '
import hashlib, os, socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect((os.environ["CRGW_GATEWAY"], 3128))
s.sendall(b"CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET /small-blob HTTP/1.0\r\nHost: allowed.test\r\n\r\n")
time.sleep(1)
s.settimeout(10)
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
body = data.split(b"\r\n\r\n", 2)[2]
print(hashlib.sha256(body).hexdigest())
' 2>&1)
[ "$got" = "$small_want" ]
ok $? "a young tunnel to a slow reader delivers every byte in order (sha256 ${got:0:16}…)"
# An upstream that answers and closes at once (its last bytes and its FIN in one go): the client gets
# both, and its read ends on the end of stream within a second, not on a timeout. (The relay treats a
# short read as a drained socket only when the edge reported no hang-up.)
out=$(run bash -c 'exec 3<>/dev/tcp/$CRGW_GATEWAY/3128; printf "CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET / HTTP/1.0\r\nHost: allowed.test\r\n\r\n" >&3; start=$(date +%s%N); timeout 5 cat <&3; echo "cat=$? ms=$((($(date +%s%N) - start) / 1000000))"' 2>&1)
ms=$(grep -o 'cat=0 ms=[0-9]*' <<<"$out" | cut -d= -f3)
grep -q "^upstream $TN_WEB1" <<<"$out" && [ -n "$ms" ] && [ "$ms" -lt 2000 ]
ok $? "an upstream's answer and close reach the client whole, ending its read ($(grep -o 'cat=[0-9]* ms=[0-9]*' <<<"$out"))"

# ---- IPv6 upstreams ----------------------------------------------------------------------------
# The sandbox speaks IPv4 to the gateway; the gateway connects upstream over either family.
out=$(run curl -s --max-time 10 -p http://v6only.test/ 2>&1)
[ "$out" = "upstream $TN_WEB6" ]
ok $? "a name with only an IPv6 address is reached over IPv6 (got: $out)"
audit_has "$AUDIT" "select(.service==\"connect\" and .action==\"allow\" and .dst_host==\"v6only.test\" and .dst_ip==\"$TN_WEB6\")"
ok $? "... audited with the IPv6 upstream address"
out=$(run curl -s --max-time 10 -p http://dual.test/ 2>&1)
[ "$out" = "upstream $TN_WEB6" ]
ok $? "with both families answering, IPv6 is tried first and wins (got: $out)"
out=$(run sh -c 's=$(date +%s%N); curl -s --max-time 10 -p http://slow6.test/; echo " $((($(date +%s%N) - s) / 1000000))"' 2>&1)
[ "${out%%$'\n'*}" = "upstream $TN_WEB1" ] && [ "${out##* }" -lt 2500 ]
ok $? "an IPv6 address that never answers does not hold the connection: IPv4 wins after the 250 ms stagger (took ${out##* } ms)"
out=$(run curl -s --max-time 10 -p http://mapped-web.test/ 2>&1)
[ "$out" = "upstream $TN_WEB1" ]
ok $? "an IPv4-mapped address of an allowed upstream is connected, over IPv4 (got: $out)"
out=$(run curl -s --max-time 10 -p http://mixed.test/ 2>&1)
[ "$out" = "upstream $TN_WEB6" ] || [ "$out" = "upstream $TN_WEB1" ]
ok $? "a name with good and loopback addresses is reached at a good one (got: $out)"
audit_has "$AUDIT" 'select(.service=="connect" and .action=="allow" and .dst_host=="mixed.test" and (.dst_ip | test("127|ffff") | not))'
ok $? "... audited with that upstream address"
out=$(run bash -c "$(connect_raw '[2001:db8:113::10]:80')" 2>&1)
grep -q '^HTTP/1.1 200 ' <<<"$out"
ok $? "an IPv6 literal target allowed by a CIDR rule is connected"
out=$(run sh -c 'curl -s --max-time 10 -x "http://$CRGW_GATEWAY:3128" http://v6only.test/' 2>&1)
[ "$out" = "upstream $TN_WEB6" ]
ok $? "HTTP forwarding reaches an IPv6-only name too (got: $out)"

# ---- transparent TLS and TCP ----------------------------------------------------------------------
out=$(run sh -c "$(sb_ca_cmd) && curl -s --noproxy '*' --max-time 10 --cacert $SB_CA https://allowed.test/" 2>&1)
[ "$out" = "upstream $TN_WEB1" ]
ok $? "HTTPS straight to an allowed name goes through the transparent TLS relay, verified by the test CA (got: $out)"
audit_has "$AUDIT" 'select(.event=="decision" and .service=="tls" and .action=="allow" and .dst_host=="allowed.test" and .dst_ip=="203.0.113.10" and .dst_port==443)'
ok $? "... audited as an allowed tls decision"
audit_has "$AUDIT" 'select(.event=="connection_end" and .service=="tls" and .bytes_down > 0)'
ok $? "... and its connection_end"
out=$(run sh -c "echo | timeout 5 openssl s_client -connect $TN_WEB1:443 -noservername 2>&1" 2>&1)
! grep -q 'BEGIN CERTIFICATE' <<<"$out"
ok $? "a TLS hello without SNI gets no upstream"
audit_has "$AUDIT" 'select(.service=="tls" and .reason_code=="sni_missing")'
ok $? "... audited as sni_missing"
out=$(run sh -c "getent ahostsv4 allowed.test >/dev/null; echo | timeout 5 openssl s_client -connect $TN_WEB2:443 -servername allowed.test 2>&1" 2>&1)
! grep -q 'BEGIN CERTIFICATE' <<<"$out"
ok $? "an SNI that the gateway's DNS did not bind to the dialled address gets no upstream"
audit_has "$AUDIT" "select(.service==\"tls\" and .reason_code==\"sni_mismatch\" and .dst_ip==\"$TN_WEB2\")"
ok $? "... audited as sni_mismatch"
out=$(run sh -c "getent ahostsv4 allowed.test >/dev/null; echo | timeout 5 openssl s_client -connect $TN_WEB1:443 -servername xn--zz.test 2>&1" 2>&1)
! grep -q 'BEGIN CERTIFICATE' <<<"$out"
ok $? "an SNI that is not a host name (invalid punycode) gets no upstream"
audit_has "$AUDIT" 'select(.service=="tls" and .reason_code=="request_invalid" and .dst_host=="xn--zz.test" and .detail=="the SNI is not a host name")'
ok $? "... audited as request_invalid naming the SNI in dst_host"
out=$(run sh -c "getent ahostsv4 allowed.test >/dev/null; echo | timeout 5 openssl s_client -connect $TN_WEB1:443 -servername allowed.test. 2>&1" 2>&1)
! grep -q 'BEGIN CERTIFICATE' <<<"$out"
ok $? "an SNI with a trailing dot (RFC 6066 has none) gets no upstream"
audit_has "$AUDIT" 'select(.service=="tls" and .reason_code=="request_invalid" and (.detail | startswith("the SNI is not a host name (")))'
ok $? "... audited saying the SNI is what is wrong, not a malformed hello"
out=$(run sh -c "echo | timeout 5 openssl s_client -connect $TN_WEB1:443 -servername denied.test 2>&1" 2>&1)
! grep -q 'BEGIN CERTIFICATE' <<<"$out"
ok $? "an SNI naming a denied host gets no upstream"
audit_has "$AUDIT" 'select(.service=="tls" and .reason_code=="host_not_allowed" and .dst_host=="denied.test")'
ok $? "... audited as host_not_allowed"
out=$(run bash -c 'exec 3<>/dev/tcp/chain.test/22 && timeout 4 cat <&3' 2>&1)
grep -q "SSH-2.0-crgw-testnet" <<<"$out"
ok $? "non-HTTP TCP to an allowed name's address and port is relayed (server speaks first)"
audit_has "$AUDIT" 'select(.service=="tcp" and .action=="allow" and .dst_host=="chain.test" and .dst_port==22)'
ok $? "... decided by the name the gateway bound to the address"
out=$(run bash -c "exec 3<>/dev/tcp/$TN_WEB2/22 && timeout 3 head -c 40 <&3" 2>&1)
! grep -q "SSH-2.0" <<<"$out"
ok $? "TCP to an address no allowed name was resolved to is refused"
audit_has "$AUDIT" "select(.service==\"tcp\" and .action==\"deny\" and .dst_ip==\"$TN_WEB2\" and .reason_code==\"ip_literal_not_allowed\")"
ok $? "... audited as ip_literal_not_allowed"

out=$(run bash -c "getent ahostsv4 allowed.test >/dev/null; exec 3<>/dev/tcp/$TN_WEB1/443 && printf '\\x16\\x09\\x09\\x00\\x04abcd' >&3 && timeout 3 cat <&3 | wc -c" 2>&1)
[ "$out" = "0" ]
ok $? "a malformed TLS record on a redirected connection is closed without a byte (got: $out)"
audit_has "$AUDIT" 'select(.service=="tls" and .reason_code=="request_invalid" and .detail=="malformed TLS client hello")'
ok $? "... audited as request_invalid"

got=$(run sh -c 'curl -s --max-time 60 -p http://allowed.test/blob | sha256sum' 2>&1 | cut -d' ' -f1)
[ "$got" = "$want" ]
ok $? "64 MiB arrive intact through a tunnel (sha256 ${got:0:16}…)"
audit_has "$AUDIT" 'select(.event=="connection_end" and .bytes_down > 67108864)'
ok $? "... and connection_end counts them"

# A request head or a TLS hello that trickles in, a byte a second, is cut 10 s after it began, not kept for
# as long as bytes keep coming (the read's timeout used to restart at every byte). So is the head of a
# later request on a kept-alive connection (it used to have the idle timeout, restarted at every byte).
# All three run at once.
trickle='import os, select, socket, sys, time
host = os.environ["CRGW_GATEWAY"] if sys.argv[1] == "gw" else sys.argv[1]
first = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" if sys.argv[3] == "tls" else b"GET http://allowed.test/ HTTP/1.1\r\nX: "
s = socket.create_connection((host, int(sys.argv[2])), timeout=5)
if sys.argv[3] == "again":
    s.sendall(b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
    got, t0 = b"", time.time()
    while not got.endswith(b"upstream " + sys.argv[4].encode() + b"\n") and time.time() - t0 < 5:
        if select.select([s], [], [], 0.2)[0]:
            more = s.recv(4096)
            if not more:
                break
            got += more
    if not got.startswith(b"HTTP/1.1 200 "):
        print("the first request was not answered: %r" % got[:80])
        sys.exit()
t0 = time.time()
for b in first + b"a" * 40:
    try:
        s.send(bytes([b]))
        if select.select([s], [], [], 1)[0] and not s.recv(4096):
            break
    except OSError:
        break
    if time.time() - t0 > 16:
        print("open after 16 s")
        sys.exit()
print("closed after %d s" % round(time.time() - t0))'
run python3 -c "$trickle" gw 3128 http >"$T/trickle-proxy.out" 2>&1 &
trickle_proxy=$!
run python3 -c "$trickle" gw 3128 again "$TN_WEB1" >"$T/trickle-again.out" 2>&1 &
trickle_again=$!
out=$(run bash -c 'unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY; python3 -c "$1" '"$TN_WEB1"' 443 tls' _ "$trickle" 2>&1)
wait "$trickle_proxy" "$trickle_again"
for what in "a request head trickling in to the explicit proxy:$(<"$T/trickle-proxy.out")" \
	"a later request's head trickling in on a kept-alive connection:$(<"$T/trickle-again.out")" \
	"a TLS hello trickling in to the transparent listener:$out"; do
	n=$(grep -o 'closed after [0-9]*' <<<"${what#*:}" | grep -o '[0-9]*$')
	[ -n "$n" ] && [ "$n" -ge 9 ] && [ "$n" -le 13 ]
	ok $? "${what%%:*} is cut 10 s after it began ($(tr '\n' ' ' <<<"${what#*:}" | cut -c1-120))"
done
audit_has "$AUDIT" 'select(.event=="connection_end" and .service=="http" and .detail=="request head timeout")'
ok $? "... the kept-alive connection's end is audited as a request head timeout"

"$CTL" stats --json >/dev/null
gw_stop
ok $? "crgw exits 0 on SIGTERM (sanitizer builds: LeakSanitizer found nothing)"

# ---- timeouts ----------------------------------------------------------------------------------------
gw_start "$T" --set proxy.idle_timeout=2 --set proxy.max_connection_seconds=4 \
	--set proxy.max_tunnels_per_sandbox=3 || { echo "Bail out! crgw did not start again"; exit 1; }
# Three tunnels held open in one sandbox; the fourth is over proxy.max_tunnels_per_sandbox.
out=$(run bash -c 'for fd in 10 11 12; do eval "exec $fd<>/dev/tcp/$CRGW_GATEWAY/3128"; printf "CONNECT chain.test:22 HTTP/1.1\r\nHost: chain.test\r\n\r\n" >&$fd; done; sleep 0.5; exec 3<>/dev/tcp/$CRGW_GATEWAY/3128; printf "CONNECT chain.test:22 HTTP/1.1\r\nHost: chain.test\r\n\r\n" >&3; timeout 3 cat <&3' 2>&1)
grep -q '^HTTP/1.1 429 ' <<<"${out%%$'\n'*}" && grep -q '^rate_limited' <<<"$out"
ok $? "a tunnel over the per-sandbox cap is refused: 429 with body rate_limited"
audit_has "$AUDIT" 'select(.event=="decision" and .service=="connect" and .action=="deny" and .reason_code=="rate_limited")'
ok $? "... audited as rate_limited"
# A tunnel to the banner service that then stays silent: closed after 2 s without a byte.
out=$(run bash -c 'exec 3<>/dev/tcp/$CRGW_GATEWAY/3128; printf "CONNECT chain.test:22 HTTP/1.1\r\nHost: chain.test\r\n\r\n" >&3; s=$(date +%s%N); timeout 10 cat <&3 >/dev/null; echo $((($(date +%s%N) - s) / 1000000))' 2>&1)
[ "$out" -ge 1500 ] && [ "$out" -lt 6000 ]
ok $? "an idle tunnel is closed after proxy.idle_timeout (2 s; took $out ms)"
audit_has "$AUDIT" 'select(.event=="connection_end" and .service=="connect" and .detail=="idle timeout")'
ok $? "... and its connection_end says so"
# A kept-alive HTTP connection (redirected port 80) that sends nothing after its answer: the same timeout.
out=$(run bash -c 'exec 3<>/dev/tcp/allowed.test/80; printf "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n" >&3; s=$(date +%s%N); timeout 10 cat <&3 >/dev/null; echo $((($(date +%s%N) - s) / 1000000))' 2>&1)
[ "$out" -ge 1500 ] && [ "$out" -lt 6000 ]
ok $? "an idle kept-alive HTTP connection is closed after proxy.idle_timeout (took $out ms)"
audit_has "$AUDIT" 'select(.event=="connection_end" and .service=="http" and .detail=="idle timeout")'
ok $? "... and its connection_end says so" ||
	diag "http connection_end events:" "$(jq -c 'select(.event=="connection_end" and .service=="http")' "$AUDIT")"
# A tunnel kept busy (a line every 0.3 s, echoed back) still ends at proxy.max_connection_seconds.
out=$(run bash -c 'exec 3<>/dev/tcp/$CRGW_GATEWAY/3128; printf "CONNECT chain.test:22 HTTP/1.1\r\nHost: chain.test\r\n\r\n" >&3; s=$(date +%s%N); (for i in $(seq 40); do echo tick; sleep 0.3; done >&3 2>/dev/null) & timeout 12 cat <&3 >/dev/null; echo $((($(date +%s%N) - s) / 1000000)); kill $! 2>/dev/null' 2>&1)
[ "$out" -ge 3500 ] && [ "$out" -lt 8000 ]
ok $? "a busy tunnel is closed at proxy.max_connection_seconds (4 s; took $out ms)"
audit_has "$AUDIT" 'select(.event=="connection_end" and .service=="connect" and .detail=="absolute timeout")'
ok $? "... and its connection_end says so" ||
	diag "connect connection_end events:" "$(jq -c 'select(.event=="connection_end" and .service=="connect")' "$AUDIT" | tail -3)"
gw_stop
ok $? "crgw exits 0 again"

# ---- out of descriptors ------------------------------------------------------------------------------
# With a hard limit of 64 descriptors, 80 connections held open exhaust them: the listener must pause
# (not spin on the pending connection), and accept again once descriptors are free. Each sends the start
# of a request: the proxy's listener accepts a connection once its client has spoken (TCP_DEFER_ACCEPT).
printf '#!/bin/sh\nexec prlimit --nofile=64:64 -- "%s" "$@"\n' "$CRGW" >"$T/crgw-limited"
chmod +x "$T/crgw-limited"
CRGW_REAL=$CRGW
CRGW=$T/crgw-limited
gw_start "$T" || { echo "Bail out! crgw did not start with 64 descriptors"; exit 1; }
CRGW=$CRGW_REAL
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$GW_PID/stat"; }
out=$(run bash -c 'for i in $(seq 80); do eval "exec $((i + 9))<>/dev/tcp/$CRGW_GATEWAY/3128 && printf C >&$((i + 9))" 2>/dev/null || break; done; sleep 1; echo held; sleep 3' 2>&1 &
	sleep 2.5
	before=$(cpu_ticks)
	sleep 1
	echo "ticks $(($(cpu_ticks) - before))")
ticks=$(grep -o 'ticks [0-9]*' <<<"$out" | cut -d' ' -f2)
[ -n "$ticks" ] && [ "$ticks" -lt 30 ]
ok $? "with its descriptors exhausted crgw does not spin on the listener (${ticks:-?} ticks of CPU in 1 s)"
grep -q 'accept failed; pausing the listener' "$T/crgw.log"
ok $? "... and says so in its log"
sleep 3
out=$(run curl -s --max-time 10 -p http://allowed.test/ 2>&1)
[ "$out" = "upstream $TN_WEB1" ]
ok $? "once descriptors are free again, the proxy accepts and serves (got: $out)"
gw_stop
ok $? "crgw exits 0 after running out of descriptors"

# ---- tunnels the descriptor limit has room for -------------------------------------------------------
# 1,024 descriptors hold 128 tunnels (six each, a quarter kept for the rest), and no sandbox gets more than
# half of them: one sandbox holding tunnels must not leave the others nothing but 429s. Sandbox A holds 64
# and its 65th is refused; sandbox B still gets its 64; with all 128 held, sandbox C's first is refused like
# one over proxy.max_tunnels, before the descriptors run out for DNS and mediation.
printf '#!/bin/sh\nexec prlimit --nofile=1024:1024 -- "%s" "$@"\n' "$CRGW" >"$T/crgw-1024"
chmod +x "$T/crgw-1024"
CRGW=$T/crgw-1024
gw_start "$T" || { echo "Bail out! crgw did not start with 1,024 descriptors"; exit 1; }
CRGW=$CRGW_REAL
grep -q 'more than the descriptor limit has room for.*nofile=1024 tunnels=128' "$T/crgw.log"
ok $? "with 1,024 descriptors crgw says proxy.max_tunnels is more than they hold (128 tunnels)"
# Inside a sandbox: N tunnels, one more, then the tunnels are held for 20 s (ended by the caller). With
# "spam", it also goes on asking for more all that time, 50 a second, never closing one: each is refused
# and lingers, and must not count against what the gateway keeps for others.
hold() { # hold N [spam]
	local spam=:
	[ "${2:-}" = spam ] && spam='for i in $(seq 1000); do exec {s}<>/dev/tcp/$CRGW_GATEWAY/3128 && printf "CONNECT chain.test:22 HTTP/1.1\r\nHost: chain.test\r\n\r\n" >&$s; sleep 0.02; done 2>/dev/null'
	echo 'up=0; for i in $(seq '"$1"'); do fd=$((i + 9)); eval "exec $fd<>/dev/tcp/$CRGW_GATEWAY/3128"; printf "CONNECT chain.test:22 HTTP/1.1\r\nHost: chain.test\r\n\r\n" >&$fd; read -r -t 5 line <&$fd; case $line in "HTTP/1.1 200"*) up=$((up + 1)) ;; esac; done; echo "held $up"; exec 3<>/dev/tcp/$CRGW_GATEWAY/3128; printf "CONNECT chain.test:22 HTTP/1.1\r\nHost: chain.test\r\n\r\n" >&3; timeout 3 cat <&3; exec 3<&-; echo done; '"$spam"'; sleep 20'
}
held_out() { # held_out FILE: waits (up to 30 s) until the sandbox writing FILE is done with its tunnels
	for _ in $(seq 300); do grep -q '^done' "$1" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}
run bash -c "$(hold 64 spam)" >"$T/hold-a.out" 2>&1 &
hold_a=$!
held_out "$T/hold-a.out"
out=$(<"$T/hold-a.out")
grep -q '^held 64$' <<<"$out" && grep -q '^HTTP/1.1 429 ' <<<"$out" && grep -q '^rate_limited' <<<"$out"
ok $? "one sandbox holds 64 tunnels, half the gateway's room; its 65th is refused 429 rate_limited" ||
	diag "$(head -c 600 <<<"$out")"
run bash -c "$(hold 64)" >"$T/hold-b.out" 2>&1 &
hold_b=$!
held_out "$T/hold-b.out"
out=$(<"$T/hold-b.out")
grep -q '^held 64$' <<<"$out"
ok $? "... while it holds them and keeps asking for more, another sandbox still gets its 64" ||
	diag "$(head -c 600 <<<"$out")"
out=$(run bash -c 'exec 3<>/dev/tcp/$CRGW_GATEWAY/3128; printf "CONNECT chain.test:22 HTTP/1.1\r\nHost: chain.test\r\n\r\n" >&3; timeout 3 cat <&3; getent ahostsv4 allowed.test >/dev/null && echo dns-ok' 2>&1)
grep -q '^HTTP/1.1 429 ' <<<"$out" && grep -q '^rate_limited' <<<"$out"
ok $? "with 128 held, the 129th tunnel is refused 429 rate_limited, not failed for want of descriptors" ||
	diag "$(head -c 600 <<<"$out")"
grep -q '^dns-ok' <<<"$out"
ok $? "... while the 128 are held, DNS still answers"
# Mediation's share of what is left: an eighth of the limit at four descriptors a connection, 32 here, and
# half of that for one sandbox.
grep -q 'mediation.max_connections is more than the descriptor limit has room for.*nofile=1024 connections=32' "$T/crgw.log"
ok $? "with 1,024 descriptors crgw says mediation.max_connections is more than they hold (32 connections)"
out=$(run bash -c 'for i in $(seq 16); do eval "exec $((i + 9))<>/dev/tcp/$CRGW_GATEWAY/8170"; done; sleep 0.5; exec 3<>/dev/tcp/$CRGW_GATEWAY/8170; timeout 3 cat <&3' 2>&1)
grep -q '^HTTP/1.1 429 ' <<<"$out" && grep -qi 'rate_limited' <<<"$out"
ok $? "one sandbox holds 16 mediation connections, half the room; its 17th is refused 429 rate_limited" ||
	diag "$(head -c 600 <<<"$out")"
testnet_kill "$hold_a" "$hold_b"
gw_stop
ok $? "crgw exits 0"
if [ "$TAP_FAILED" -gt 0 ]; then
	diag "crgw log:" "$(tail -20 "$T/crgw.log")"
fi
tap_done
