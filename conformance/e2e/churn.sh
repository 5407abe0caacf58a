#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# 200 sandboxes registered and released in a row through crgw-ctl run: no file descriptor, kernel object,
# process or temporary file may be left, and under the sanitizer build crgw must exit clean (LeakSanitizer
# runs at exit). Also: refused registrations leave nothing behind. TAP output. Needs root.
# usage: churn.sh CRGW CRGW_CTL [COUNT]
set -uo pipefail
CRGW=$1
CTL=$2
COUNT=${3:-200}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
GW_TABLE=crgw_churn
GW_PREFIX=cgc

T=$(mktemp -d /tmp/crgw-churn.XXXXXX)
testnet_on_exit rm -rf "$T"
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
printf 'version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n      - host: allowed.test\n' >"$T/p.yaml"

# A small audit file, so that the churn also rotates it.
gw_start "$T" --set audit.max_bytes=65536 --set audit.keep=20 || { echo "Bail out! crgw did not start"; exit 1; }
# The gateway's descriptors once a released sandbox's watches are gone: they go when the main loop sees
# its holder end, a moment after crgw-ctl has.
gw_fds() {
	local a b
	b=$(ls "/proc/$GW_PID/fd" | wc -l)
	for _ in $(seq 30); do
		sleep 0.1
		a=$b
		b=$(ls "/proc/$GW_PID/fd" | wc -l)
		[ "$a" -eq "$b" ] && [ "$("$CTL" stats --json | jq .sandboxes)" -eq 0 ] && break
	done
	echo "$b"
}
# One sandbox first, so that lazily made state (c-ares sockets, caches) is not counted as a leak.
"$CTL" run --rm --policy "$T/p.yaml" -- getent ahostsv4 allowed.test >/dev/null 2>&1
fds_before=$(gw_fds)
rss_before=$(awk '/VmRSS/{print $2}' "/proc/$GW_PID/status")
tmp_before=$(find /tmp -maxdepth 1 -name 'crgw-run-*' | wc -l)

failed=0
start=$(date +%s.%N)
for i in $(seq "$COUNT"); do
	# Every fifth sandbox resolves a name too, so bindings and audit events are made and freed.
	if [ $((i % 5)) -eq 0 ]; then
		"$CTL" run --rm --policy "$T/p.yaml" -- getent ahostsv4 allowed.test >/dev/null 2>&1 || failed=$((failed + 1))
	else
		"$CTL" run --rm --policy "$T/p.yaml" -- true >/dev/null 2>&1 || failed=$((failed + 1))
	fi
done
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e - s}')
ok "$failed" "$COUNT sandboxes registered, used and released ($failed failed, ${elapsed}s)"
fds_after=$(gw_fds)
rss_after=$(awk '/VmRSS/{print $2}' "/proc/$GW_PID/status")
[ "$fds_after" -eq "$fds_before" ]
ok $? "no file descriptor leaked ($fds_before before, $fds_after after)"
diag "crgw RSS: $rss_before kB before, $rss_after kB after $COUNT sandboxes"
[ -z "$(kernel_objects)" ]
ok $? "no interface, chain, set or counter left"
[ "$("$CTL" stats --json | jq .sandboxes)" -eq 0 ]
ok $? "the registry is empty"
[ "$(find /tmp -maxdepth 1 -name 'crgw-run-*' | wc -l)" -eq "$tmp_before" ]
ok $? "crgw-ctl run left no temporary files"
[ -z "$(ls "$T/state" | grep -v "^lock$")" ]
ok $? "no holder record left in the state directory"
# The teardown thread removes groups and data after the release: give it a moment.
for _ in $(seq 50); do
	groups=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 7 -type d -path "*/$GW_CGROUP/sbx-*" 2>/dev/null | wc -l)
	data=$(ls -A "$GW_DATA/sandboxes" "$GW_DATA/trash" 2>/dev/null | grep -c '^sbx-')
	[ "$groups" -eq 0 ] && [ "$data" -eq 0 ] && break
	sleep 0.1
done
[ "$groups" -eq 0 ] && [ "$data" -eq 0 ]
ok $? "no sandbox cgroup ($groups) and no sandbox data ($data) left"

# Refused registrations: nothing may be left behind, and the error names a reason code.
policy=$("$CTL" policy compile --json "$T/p.yaml")
sock=$T/ctl.sock
out=$(curl -s --unix-socket "$sock" -X POST -d "{\"policy\": $policy, \"netns_path\": \"/nonexistent/ns\"}" http://crgw/v1/sandboxes)
echo "$out" | jq -e '.code == "runtime_launch_failed"' >/dev/null
ok $? "a registration whose namespace does not exist fails with runtime_launch_failed"
out=$(curl -s --unix-socket "$sock" -X POST -d "{\"policy\": $policy, \"netns_path\": \"/etc/hostname\"}" http://crgw/v1/sandboxes)
echo "$out" | jq -e '.code == "runtime_launch_failed"' >/dev/null && [ -z "$(kernel_objects)" ]
ok $? "a registration into something that is not a namespace fails and leaves nothing"
out=$(curl -s --unix-socket "$sock" -X POST -d '{"policy": {"schema": 1}, "netns_path": "/nonexistent/ns"}' http://crgw/v1/sandboxes)
echo "$out" | jq -e '.code == "policy_invalid"' >/dev/null
ok $? "a registration with an invalid compiled policy fails with policy_invalid"
tampered=$(echo "$policy" | jq -c '.network.default = "allow"' 2>/dev/null || echo "$policy")
out=$(curl -s --unix-socket "$sock" -X POST -d "{\"policy\": $tampered, \"netns_path\": \"/nonexistent/ns\"}" http://crgw/v1/sandboxes)
echo "$out" | jq -e '.code == "policy_invalid"' >/dev/null
ok $? "a tampered compiled policy (hash mismatch) is refused"
out=$(curl -s --unix-socket "$sock" -X POST -d '{"policy": ' http://crgw/v1/sandboxes)
echo "$out" | jq -e '.code == "request_invalid"' >/dev/null
ok $? "a malformed body gets request_invalid"
[ -z "$(kernel_objects)" ] && [ "$("$CTL" stats --json | jq .sandboxes)" -eq 0 ]
ok $? "refused registrations left no kernel object and no sandbox"
fds=$(gw_fds)
[ "$fds" -eq "$fds_before" ]
ok $? "refused registrations leaked no file descriptor ($fds_before before, $fds after)"

# A VM backend's registration: a TAP for its VMM instead of a veth into a namespace, with the same rules.
sleep 300 &
holder=$!
out=$(curl -s --unix-socket "$sock" -X POST \
	-d "{\"policy\": $policy, \"backend\": \"qemu\", \"holder_pid\": $holder, \"tap_owner\": 4242}" \
	http://crgw/v1/sandboxes)
vm_id=$(echo "$out" | jq -r '.id // empty')
vm_if=$(echo "$out" | jq -r '.interface // empty')
vm_mac=$(echo "$out" | jq -r '.guest_mac // empty')
ip -d link show dev "$vm_if" 2>/dev/null | grep -q "tun type tap .*user 4242" && [[ $vm_mac =~ ^02:63:67: ]]
ok $? "a qemu registration gets a TAP owned by its VMM's user and the MAC the guest must use ($vm_if $vm_mac)"
vm_slot=${vm_if#"$GW_PREFIX"}
nft -j list table inet "$GW_TABLE" 2>/dev/null | jq -e --arg c "sb${vm_slot}_" '[.nftables[] | .chain.name? // empty | select(startswith($c))] | length >= 3' >/dev/null
ok $? "... with the sandbox's nftables chains (sb${vm_slot}_*) for it"
curl -s --unix-socket "$sock" -X DELETE "http://crgw/v1/sandboxes/$vm_id" >/dev/null
for _ in $(seq 30); do ip link show dev "$vm_if" >/dev/null 2>&1 || break; sleep 0.1; done
! ip link show dev "$vm_if" >/dev/null 2>&1 && ! kill -0 "$holder" 2>/dev/null
ok $? "its release deletes the TAP and ends the VMM (holder)"
wait "$holder" 2>/dev/null
out=$(curl -s --unix-socket "$sock" -X POST -d "{\"policy\": $policy, \"backend\": \"qemu\", \"netns_path\": \"/proc/1/ns/net\"}" http://crgw/v1/sandboxes)
echo "$out" | jq -e '.code == "request_invalid"' >/dev/null
ok $? "a qemu registration with a namespace is refused"
out=$(curl -s --unix-socket "$sock" -X POST -d "{\"policy\": $policy, \"backend\": \"bhyve\"}" http://crgw/v1/sandboxes)
echo "$out" | jq -e '.code == "backend_unavailable"' >/dev/null
ok $? "an unknown backend gets backend_unavailable"
[ -z "$(kernel_objects)" ]
ok $? "nothing of the VM sandbox is left"

gw_stop
ok $? "crgw exits 0 on SIGTERM (sanitizer builds: LeakSanitizer found nothing)"
files=$(ls "$T"/audit.log* | wc -l)
[ "$files" -gt 1 ] && [ "$(stat -c %s "$T/audit.log.1")" -le 65536 ]
ok $? "the audit log rotated by size ($files files of at most 64 KiB)"
registered=$(cat "$T"/audit.log* | jq -c 'select(.event=="sandbox_registered")' | wc -l)
released=$(cat "$T"/audit.log* | jq -c 'select(.event=="sandbox_released")' | wc -l)
[ "$registered" -eq $((COUNT + 1)) ] && [ "$released" -eq $((COUNT + 1)) ]
ok $? "no audit event lost across rotations ($registered registered, $released released)"
cat "$T"/audit.log* | jq -e . >/dev/null
ok $? "every audit line is one JSON object"
if [ "$TAP_FAILED" -gt 0 ]; then
	diag "crgw log:" "$(tail -20 "$T/crgw.log")"
fi
tap_done
