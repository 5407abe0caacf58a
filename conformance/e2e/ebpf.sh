#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The enforcement layers end to end (docs/gateway.md, "Enforcement layers"): crgw with `enforcement:
# nftables`, `ebpf` and `both` in turn, one sandbox each running the same probes (a spoofed source, DNS
# around the gateway, UDP elsewhere, a port the gateway does not serve, TCP elsewhere, the explicit proxy),
# each drop checked in the audit log and in `sandbox show`'s counters; the eBPF layer alone blocks what
# nftables alone blocks, with the same counts, and with both the guard drops first. Then a forged MAC,
# which only the guard sees, and a gateway killed with SIGKILL: after its restart no program, filter or
# interface of the old one is left. TAP output. Needs root.
# usage: ebpf.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

T=$(mktemp -d /tmp/crgw-e2e-ebpf.XXXXXX)
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
YAML

guard_programs() { bpftool prog show 2>/dev/null | grep -c 'name crgw_guard' || true; }
# The kernel frees a program after an RCU grace period: wait until the count is as expected.
wait_programs() { # wait_programs N
	for _ in $(seq 50); do
		[ "$(guard_programs)" -eq "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
base_programs=$(guard_programs)

# The probes, in the sandbox: exactly one packet per dropped probe (kdig +retry=0, one datagram each), so
# the counts are the same whichever layer drops them. The spoofed query comes after a lookup through the
# gateway, so that the gateway's address is in the neighbour table and no ARP carries the forged address.
probes='
kdig +time=2 +retry=0 @"$CRGW_GATEWAY" allowed.test A | grep -q "status: NOERROR" && echo dns=ok
kdig +time=1 +retry=0 @'"$TN_DNS"' allowed.test A >/dev/null 2>&1 || echo bypass=blocked
echo x >/dev/udp/'"$TN_WEB1"'/9999; echo x >/dev/udp/$CRGW_GATEWAY/9999
ip addr add 192.0.2.77/32 dev eth0 && { kdig +time=1 +retry=0 -b 192.0.2.77 @"$CRGW_GATEWAY" allowed.test A >/dev/null 2>&1 || echo spoof=blocked; }
ip addr del 192.0.2.77/32 dev eth0
curl -s -o /dev/null -w "proxy=%{http_code}\n" -m 5 -x "$HTTP_PROXY" http://allowed.test/
curl -s -o /dev/null -w "transparent=%{http_code}\n" -m 3 --noproxy "*" http://allowed.test/
:'

# run_mode MODE: starts crgw with `enforcement: MODE`, runs the probes in a sandbox named probe-MODE that
# stays, and leaves its `sandbox show --json` in $T/MODE.json and the probes' output in $T/MODE.out.
run_mode() {
	local mode=$1
	gw_start "$T" --set "enforcement=$mode" || { echo "Bail out! crgw did not start with enforcement=$mode"; exit 1; }
	"$CTL" run --name "probe-$mode" --policy "$T/cleanroom.yaml" -- bash -c "$probes" >"$T/$mode.out" 2>&1
	"$CTL" sandbox show --json "probe-$mode" >"$T/$mode.json" 2>&1
}
counter() { jq -r "$2 // 0" "$T/$1.json"; }
# drop_event REASON yes|no: a packet_drop with that reason since `mark`, from the eBPF guard or not.
drop_event() {
	local from='test("dropped by the eBPF guard")'
	[ "$2" = no ] && from='test("dropped by the eBPF guard") | not'
	for _ in $(seq 30); do # the audit writer runs behind the drops by a moment
		tail -n +"$((mark + 1))" "$AUDIT" |
			jq -e -s "any(.[]; .event==\"packet_drop\" and .reason_code==\"$1\" and (.detail | $from))" >/dev/null &&
			return 0
		sleep 0.1
	done
	return 1
}

declare -A spoof dns
for mode in nftables ebpf both; do
	mark=$(wc -l <"$AUDIT" 2>/dev/null || echo 0)
	run_mode "$mode"
	out=$(tr '\n' ' ' <"$T/$mode.out")
	caps=$("$CTL" stats >/dev/null 2>&1; curl -s --unix-socket "$CRGW_CONTROL" http://crgw/v1/capabilities)
	want_nft=true want_ebpf=true
	[ "$mode" = nftables ] && want_ebpf=false
	[ "$mode" = ebpf ] && want_nft=false
	got=$(jq -r '"\(.enforcement.nftables) \(.enforcement.ebpf)"' <<<"$caps")
	check "$mode: the capability map says nftables=$want_nft ebpf=$want_ebpf ($got)" -- test "$got" = "$want_nft $want_ebpf"
	check "$mode: DNS through the gateway and the explicit proxy work ($out)" -- \
		grep -qz 'dns=ok.*proxy=200' "$T/$mode.out"
	check "$mode: DNS to the upstream and the spoofed source are blocked" -- \
		grep -qz 'bypass=blocked.*spoof=blocked' "$T/$mode.out"
	if [ "$mode" = ebpf ]; then
		check "$mode: TCP elsewhere is dropped (no redirect without nftables)" -- grep -q 'transparent=000' "$T/$mode.out"
		check "$mode: ... audited host_not_allowed by the guard" -- drop_event host_not_allowed yes
		check "$mode: no nftables table" -- bash -c "! nft list table inet $GW_TABLE >/dev/null 2>&1"
	else
		check "$mode: TCP elsewhere goes to the transparent proxy" -- grep -q 'transparent=200' "$T/$mode.out"
		# The gateway's own services are untracked; the transparent proxy's redirect needs conntrack.
		guest=$(jq -r .guest "$T/$mode.json")
		check "$mode: the explicit proxy's connection left no conntrack entry, the redirected one did" -- \
			bash -c "! grep -q 'src=$guest .*dport=3128 ' /proc/net/nf_conntrack && grep -q 'src=$guest .*dport=80 ' /proc/net/nf_conntrack"
	fi
	guard=yes
	[ "$mode" = nftables ] && guard=no
	for reason in dns_bypass_attempt spoofed_source host_not_allowed port_not_allowed; do
		check "$mode: $reason audited (from the eBPF guard: $guard)" -- drop_event "$reason" "$guard"
	done
	spoof[$mode]=$(counter "$mode" .counters.spoofed_packets)
	dns[$mode]=$(counter "$mode" .counters.dns_bypass_packets)
	if [ "$mode" != nftables ]; then
		ifname=$(jq -r .interface "$T/$mode.json")
		check "$mode: the guard is attached to $ifname" -- bash -c "tc filter show dev '$ifname' ingress | grep -q crgw_guard"
		g_spoof=$(counter "$mode" .ebpf.dropped.spoofed_source.packets)
		g_dns=$(counter "$mode" .ebpf.dropped.dns_bypass_attempt.packets)
		g_port=$(counter "$mode" .ebpf.dropped.port_not_allowed.packets)
		g_pass=$(counter "$mode" .ebpf.passed_packets)
		check "$mode: the guard counted 1 spoofed, 1 DNS bypass, 1 port_not_allowed, and what it passed ($g_spoof, $g_dns, $g_port, $g_pass)" -- \
			test "$g_spoof" = 1 -a "$g_dns" = 1 -a "$g_port" = 1 -a "$g_pass" -gt 5
		check "$mode: sandbox show's drop counters include the guard's (spoofed ${spoof[$mode]}, dns ${dns[$mode]})" -- \
			test "${spoof[$mode]}" = "$g_spoof" -a "${dns[$mode]}" = "$g_dns"
		metrics=$(curl -s --unix-socket "$CRGW_CONTROL" http://crgw/metrics)
		sbid=$(jq -r .id "$T/$mode.json")
		check "$mode: metrics carry the sandbox's per-class packets" -- \
			grep -q "crgw_sandbox_packets_total{sandbox=\"$sbid\",class=\"spoofed_source\"} 1" <<<"$metrics"
	fi
	if [ "$mode" = both ]; then
		# A forged MAC: nftables does not look at it; the guard drops it.
		mark=$(wc -l <"$AUDIT")
		# A new link address flushes the sandbox's neighbour table, and its ARP would carry the forged MAC
		# too: the gateway's entry is put back by hand, so that the IPv4 frame itself goes out.
		gw_mac=$(cat "/sys/class/net/$ifname/address")
		"$CTL" exec "probe-$mode" -- bash -c 'ip link set eth0 address 02:00:00:00:00:99; ip neigh replace $CRGW_GATEWAY lladdr '"$gw_mac"' dev eth0 nud permanent; echo x >/dev/udp/$CRGW_GATEWAY/53' >/dev/null 2>&1
		"$CTL" sandbox show --json "probe-$mode" >"$T/$mode.mac.json" 2>&1
		check "$mode: a forged source MAC is dropped and audited spoofed_source by the guard" -- drop_event spoofed_source yes
		check "$mode: ... the IPv4 frame's event names the forged MAC, not an unparsed protocol" -- \
			audit_has "$AUDIT" 'select(.event=="packet_drop" and .reason_code=="spoofed_source" and .detail=="ethertype=0x0800 source_mac=02:00:00:00:00:99; dropped by the eBPF guard")'
	fi
	if [ "$mode" = ebpf ]; then
		# A host service on the gateway address, and a SYN to it in two IPv4 fragments. With the guard alone
		# (no nftables behind it), the first fragment's ports must be judged: passed unjudged, the host
		# reassembled the SYN and its listener answered SYN-ACK.
		gw_addr=$(jq -r .gateway "$T/$mode.json")
		python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7777)); s.listen(4); time.sleep(8)' "$gw_addr" &
		host_listener=$!
		sleep 0.3
		out=$("$CTL" exec "probe-$mode" -- python3 -c '
import os, random, socket, struct, time
gw = os.environ["CRGW_GATEWAY"]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect((gw, 9)); me = u.getsockname()[0]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
sp = random.randint(40000, 49999)
t = struct.pack("!HHIIBBHHH", sp, 7777, 1000, 0, 5 << 4, 2, 65535, 0, 0)
t = t[:16] + struct.pack("!H", csum(socket.inet_aton(me) + socket.inet_aton(gw) + struct.pack("!BBH", 0, 6, 20) + t)) + t[18:]
def frag(payload, off):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 4242, off, 64, 6, 0, socket.inet_aton(me), socket.inet_aton(gw))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload
out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
inp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP); inp.settimeout(0.5)
out.sendto(frag(t[:8], 0x2000), (gw, 0)); out.sendto(frag(t[8:], 1), (gw, 0))
reply, end = "none", time.time() + 3
while time.time() < end and reply == "none":
    try: p = inp.recv(2000)
    except socket.timeout: continue
    h = (p[0] & 15) * 4
    if struct.unpack("!HH", p[h:h + 4]) == (7777, sp): reply = "0x%02x" % p[h + 13]
print("reply=" + reply)' 2>&1)
		kill "$host_listener" 2>/dev/null
		wait "$host_listener" 2>/dev/null
		check "$mode: a SYN in fragments to a host port on the gateway address gets no answer ($out)" -- \
			grep -q '^reply=none$' <<<"$out"
		check "$mode: ... its first fragment is audited port_not_allowed" -- \
			audit_has "$AUDIT" 'select(.event=="packet_drop" and .reason_code=="port_not_allowed" and .dst_port==7777)'
	fi
	"$CTL" sandbox rm "probe-$mode" >/dev/null 2>&1
	if [ "$mode" != nftables ]; then
		check "$mode: after release, no filter and no interface $ifname" -- bash -c "! ip link show '$ifname' >/dev/null 2>&1"
	fi
	gw_stop >/dev/null 2>&1
	check "$mode: no guard program is left after a clean stop" -- wait_programs "$base_programs"
done
check "the three modes counted the same drops (spoofed ${spoof[*]}; DNS bypass ${dns[*]})" -- \
	test "${spoof[nftables]}" = 1 -a "${spoof[ebpf]}" = 1 -a "${spoof[both]}" = 1 -a \
	"${dns[nftables]}" = 1 -a "${dns[ebpf]}" = 1 -a "${dns[both]}" = 1

# ---- SIGKILL: the restart leaves nothing of the old gateway ---------------------------------------------
gw_start "$T" --set enforcement=both || { echo "Bail out! crgw did not start"; exit 1; }
"$CTL" run --name killed --policy "$T/cleanroom.yaml" -- true >/dev/null 2>&1
ifname=$("$CTL" sandbox show --json killed | jq -r .interface)
check "a sandbox with the guard on $ifname, then SIGKILL" -- bash -c "tc filter show dev '$ifname' ingress | grep -q crgw_guard"
kill -KILL "$GW_PID"
wait "$GW_PID" 2>/dev/null
GW_PID=
gw_start "$T" --set enforcement=both || { echo "Bail out! crgw did not restart"; exit 1; }
check "after the restart: the old interface is gone" -- bash -c "! ip link show '$ifname' >/dev/null 2>&1"
check "... and only the new gateway's guard program is loaded" -- wait_programs "$((base_programs + 1))"
gw_stop >/dev/null 2>&1
check "after its stop, none" -- wait_programs "$base_programs"
check "no interface of the gateway is left" -- test -z "$(kernel_objects)"

if [ "$TAP_FAILED" -ne 0 ]; then
	diag "crgw log:" "$(tail -20 "$T/crgw.log")"
fi
tap_done
