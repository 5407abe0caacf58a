#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Sandbox disks (limits.disk), as a platform team relies on them: a job that writes without end gets
# ENOSPC inside its sandbox, in its home and in a copy-mode workspace alike, while the host's file system
# keeps its room; a run may lower the size (--disk) but not raise it; the record, the audit and the
# tombstone say what the disk held; a released sandbox's disk goes (no mount, no loop device, no image)
# even while other sandboxes run; and a gateway killed with its sandboxes' disks mounted detaches and
# removes them at its next start. TAP output. Needs root and loop devices.
# usage: disk.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
GW_TABLE=crgw_disk
GW_PREFIX=cgk

if [ ! -w /dev/loop-control ]; then
	echo "1..0 # SKIP no loop devices (/dev/loop-control)"
	exit 0
fi
T=$(mktemp -d /tmp/crgw-disk.XXXXXX)
chmod 0755 "$T"
testnet_on_exit rm -rf "$T"
GW_DATA=$(mktemp -d /var/tmp/crgw-e2e-data.XXXXXX)
testnet_on_exit rm -rf "$GW_DATA"
# On the way out (last registered, first run): the gateway stops, then whatever a failed check left
# mounted goes, then the data directory.
testnet_on_exit 'disk_mounts | xargs -r -n1 umount -l 2>/dev/null'
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
AUDIT=$T/audit.log
printf 'version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n      - host: allowed.test\n' >"$T/cleanroom.yaml"
W=$T/ws
mkdir -p "$W"
echo "host file" >"$W/kept.txt"
cp "$T/cleanroom.yaml" "$W/"

MIB=$((1024 * 1024))
# Mount points beneath the gateway's sandboxes directory, in our mount namespace.
disk_mounts() {
	[ -n "${GW_DATA:-}" ] || return 0
	awk -v p="$GW_DATA/sandboxes/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo
}
# Loop devices bound to an image in the gateway's data directory.
disk_loops() {
	local f
	for f in /sys/block/loop*/loop/backing_file; do
		[ -r "$f" ] && grep -H "^$GW_DATA/" "$f"
	done 2>/dev/null || true
}
disk_images() { find "$GW_DATA/sandboxes" -maxdepth 1 -name '*.ext4' 2>/dev/null; }
# Teardown runs off the control thread: wait (up to 5 s) until no disk of ID is left.
disk_gone() { # disk_gone ID
	case $1 in sbx-*) ;; *) return 1 ;; esac
	for _ in $(seq 50); do
		if ! disk_mounts | grep -q "/$1\$" && ! disk_loops | grep -q "/$1.ext4" &&
			[ ! -e "$GW_DATA/sandboxes/$1.ext4" ]; then
			return 0
		fi
		sleep 0.1
	done
	diag "left of $1:" "$(disk_mounts)" "$(disk_loops)" "$(disk_images)"
	return 1
}
run() { "$CTL" run --policy "$T" --workspace-mode none "$@"; }
has_mounts() { disk_mounts | grep -q .; }
nothing_left() { [ -z "$(disk_mounts)" ] && [ -z "$(disk_images)" ] && [ -z "$(disk_loops)" ]; }
refused() { # refused RC OUTPUT PATTERN
	[ "$1" -ne 0 ] && grep -q -- "$3" <<<"$2"
}

gw_start "$T" --set limits.disk=128M || { echo "Bail out! crgw did not start"; exit 1; }
state=$("$CTL" stats --json 2>/dev/null | jq -r .limits.disk)
check "the gateway gives sandboxes disks (stats: $state)" -- test "${state#ext4 on a loop device}" != "$state"
caps=$(curl -s --unix-socket "$CRGW_CONTROL" http://crgw/v1/capabilities | jq -r .resource_limits.disk)
check "and the capability map says so ($caps)" -- test "$caps" = "$state"
host_free_before=$(df -B1 --output=avail "$GW_DATA" | tail -1)

# ---- a job that writes without end ------------------------------------------------------------------
out=$(run --rm -- sh -c 'dd if=/dev/zero of=$HOME/fill bs=1M count=400 2>&1; echo "dd=$?"; df -B1 --output=size $HOME | tail -1' 2>&1)
rc=$?
ok "$(grep -q 'No space left on device' <<<"$out" && grep -q 'dd=1' <<<"$out"; echo $?)" \
	"writing 400 MiB into the home of a sandbox with a 128 MiB disk fails with ENOSPC inside (exit $rc)" ||
	diag "$out"
size=$(tail -1 <<<"$out")
check "the sandbox's home is on a file system of at most 128 MiB ($size bytes)" -- \
	test "$size" -gt $((100 * MIB)) -a "$size" -le $((128 * MIB))
host_free_after=$(df -B1 --output=avail "$GW_DATA" | tail -1)
check "the host's file system kept its room (free before $host_free_before, after $host_free_after)" -- \
	test $((host_free_before - host_free_after)) -lt $((64 * MIB))
audit_has "$AUDIT" 'select(.event == "sandbox_released")'
id=$(jq -r 'select(.event == "sandbox_released") | .sandbox_id' "$AUDIT" | tail -1)
check "after --rm, its disk is gone: no mount, no loop device, no image ($id)" -- disk_gone "$id"
check "audited: sandbox_registered with disk_bytes 134217728" -- \
	audit_has "$AUDIT" "select(.event == \"sandbox_registered\" and .sandbox_id == \"$id\" and .disk_bytes == $((128 * MIB)))"
check "audited: sandbox_released with what its disk held (usage.disk_used_bytes over 100 MiB)" -- \
	audit_has "$AUDIT" "select(.event == \"sandbox_released\" and .sandbox_id == \"$id\" and .usage.disk_used_bytes > $((100 * MIB)))"

out=$(run --rm -- dd if=/dev/zero of=/root/fill bs=1M count=400 status=none 2>&1)
rc=$?
check "crgw-ctl run names the full disk when the command fails (exit $rc: $(tr '\n' ' ' <<<"$out"))" -- \
	refused "$rc" "$out" "its disk of 128 MiB is full"

# ---- a copy-mode workspace's changes count too ---------------------------------------------------------
out=$("$CTL" run --policy "$T" --workspace "$W" --rm -- sh -c 'dd if=/dev/zero of=/workspace/big bs=1M count=400 2>&1; echo "dd=$?"; cat /workspace/kept.txt' 2>&1)
ok "$(grep -q 'No space left on device' <<<"$out" && grep -q 'host file' <<<"$out"; echo $?)" \
	"a copy-mode workspace's changes fill the same disk: ENOSPC, and the workspace still reads" || diag "$out"
check "the host's workspace is unchanged (no big file)" -- test ! -e "$W/big"
# A kept copy-mode sandbox on its disk: diff and cp read its changes from the disk, as without one.
"$CTL" run --policy "$T" --workspace "$W" --name ws -- sh -c 'echo changed >/workspace/kept.txt; echo new >/workspace/new.txt' >/dev/null 2>&1
diff=$("$CTL" sandbox diff ws 2>&1)
lists_both() { grep -q 'A new.txt' <<<"$1" && grep -q 'C kept.txt' <<<"$1"; }
check "sandbox diff lists the changes kept on the disk ($(tr '\n' ' ' <<<"$diff"))" -- lists_both "$diff"
"$CTL" cp ws:/workspace/new.txt "$T/new.out" >/dev/null 2>&1
check "crgw-ctl cp copies a file out of it" -- test "$(cat "$T/new.out" 2>/dev/null)" = new
check "and the host's workspace still has its own kept.txt" -- test "$(cat "$W/kept.txt")" = "host file"
"$CTL" sandbox rm ws >/dev/null 2>&1

# ---- a kept sandbox: its record, a lowered size, and the refusals ----------------------------------------
run --name keep -- sh -c 'dd if=/dev/zero of=$HOME/twenty bs=1M count=20 status=none' >/dev/null 2>&1
rec=$("$CTL" sandbox show --json keep 2>&1)
check "the record names its disk: limit_bytes 134217728 ($(jq -c .disk <<<"$rec"))" -- \
	test "$(jq .disk.limit_bytes <<<"$rec")" = $((128 * MIB))
check "and what it holds (used_bytes at least the 20 MiB written)" -- \
	test "$(jq .disk.used_bytes <<<"$rec")" -ge $((20 * MIB))
check "and what is left to write (free_bytes between 60 and 108 MiB)" -- \
	test "$(jq .disk.free_bytes <<<"$rec")" -gt $((60 * MIB)) -a "$(jq .disk.free_bytes <<<"$rec")" -lt $((108 * MIB))
text=$("$CTL" sandbox show keep 2>&1)
check "sandbox show says it in words too" -- grep -qi "disk" <<<"$text"
row=$("$CTL" stats --json | jq -c '.sandbox_resources[] | select(.name == "keep") | .disk')
check "stats has it in the sandbox's row ($row)" -- test "$(jq .limit_bytes <<<"$row")" = $((128 * MIB))
check "and the text table in its DISK column" -- sh -c "'$CTL' stats | grep -E ' keep .* [0-9]+/128 MiB '"
metrics=$(curl -s --unix-socket "$CRGW_CONTROL" http://crgw/metrics)
keep_sid=$(jq -r .id <<<"$rec")
has_series() { # has_series NAME VALUE-PATTERN: a line of $metrics for the kept sandbox
	grep -qE "^$1\{sandbox=\"$keep_sid\"\} $2\$" <<<"$metrics"
}
disk_series() {
	has_series crgw_sandbox_disk_limit_bytes $((128 * MIB)) && has_series crgw_sandbox_disk_used_bytes '[0-9]+' &&
		has_series crgw_sandbox_disk_free_bytes '[0-9]+'
}
check "metrics: crgw_sandbox_disk_limit_bytes, _used_bytes and _free_bytes for it" -- disk_series
keep_id=$(jq -r .id <<<"$rec")
out=$(run --rm --disk 64M -- sh -c 'df -B1 --output=size $HOME | tail -1; dd if=/dev/zero of=$HOME/f bs=1M count=100 2>&1; echo "dd=$?"' 2>&1)
size=$(head -1 <<<"$out")
check "--disk 64M lowers it: the home's file system is at most 64 MiB ($size)" -- \
	test "$size" -gt $((40 * MIB)) -a "$size" -le $((64 * MIB))
check "and 100 MiB do not fit" -- grep -q 'No space left on device' <<<"$out"
before=$("$CTL" stats --json | jq .sandboxes)
out=$(run --rm --disk 1G -- true 2>&1)
rc=$?
check "--disk above limits.disk is refused, naming the ceiling (exit $rc: $out)" -- refused "$rc" "$out" limits.disk
check "and leaves no sandbox" -- test "$("$CTL" stats --json | jq .sandboxes)" = "$before"
out=$(run --rm --disk 10K -- true 2>&1)
rc=$?
check "--disk below 64M is refused before a sandbox is begun (exit $rc: $out)" -- refused "$rc" "$out" --disk
body='{"policy":'$("$CTL" policy compile --json "$T" 2>/dev/null)',"netns_path":"/proc/self/ns/net","limits":{"disk":"12parsecs"}}'
code=$(curl -s -o "$T/answer" -w '%{http_code}' --unix-socket "$CRGW_CONTROL" -H 'Content-Type: application/json' \
	-d "$body" http://crgw/v1/sandboxes)
check "the control API refuses a disk that is not a size: 400 request_invalid ($(cat "$T/answer"))" -- \
	sh -c "[ $code = 400 ] && jq -e '.code == \"request_invalid\"' '$T/answer' >/dev/null"

# ---- a sandbox released while another runs lets go of its disk ----------------------------------------
run --name other -- true >/dev/null 2>&1
other_id=$("$CTL" sandbox show --json other | jq -r .id)
"$CTL" exec other -- sh -c 'dd if=/dev/zero of=$HOME/x bs=1M count=5 status=none' >/dev/null 2>&1
other_holder=$("$CTL" sandbox show --json other | jq -r .holder_pid)
# A sandbox's mount namespace is a copy of the host's, made while the first one's disk was mounted.
check "the second sandbox's mount namespace holds a copy of the first one's disk" -- \
	grep -q "/$keep_id " "/proc/$other_holder/mountinfo"
"$CTL" sandbox rm keep >/dev/null 2>&1
check "a sandbox released while another runs: its disk is gone all the same ($keep_id)" -- disk_gone "$keep_id"
check "and the other sandbox's copy went with it" -- sh -c "! grep -q '/$keep_id ' /proc/$other_holder/mountinfo"
tomb=$(curl -s --unix-socket "$CRGW_CONTROL" "http://crgw/v1/sandboxes/$keep_id")
check "its tombstone says what its disk held ($(jq -c .disk <<<"$tomb"))" -- \
	test "$(jq .disk.used_bytes <<<"$tomb")" -ge $((20 * MIB))
check "the other sandbox still writes to its own ($other_id)" -- \
	"$CTL" exec other -- sh -c 'test -s $HOME/x && echo more >$HOME/y'

# ---- a gateway killed with disks mounted -------------------------------------------------------------
kill -KILL "$GW_PID"
wait "$GW_PID" 2>/dev/null
GW_PID=
check "killed: the other sandbox's disk is still mounted" -- has_mounts
gw_start "$T" --set limits.disk=128M || { echo "Bail out! crgw did not start again"; exit 1; }
check "the next start detaches the previous run's disks" -- grep -q "detached a previous run's sandbox disks" "$T/crgw.log"
check "and nothing of them stays: no mount, no loop device, no image" -- disk_gone "$other_id"

# ---- no ceiling: a run may still ask for a disk ---------------------------------------------------------
gw_stop
gw_start "$T" || { echo "Bail out! crgw did not start a third time"; exit 1; }
state=$("$CTL" stats --json | jq -r .limits.disk)
check "without limits.disk the gateway says so ($state)" -- test "${state#none}" != "$state"
rec=$(run --name plain -- true >/dev/null 2>&1; "$CTL" sandbox show --json plain)
check "a sandbox without a disk has none in its record (disk: null)" -- test "$(jq -c .disk <<<"$rec")" = null
"$CTL" sandbox rm plain >/dev/null 2>&1
out=$(run --rm --disk 64M -- sh -c 'df -B1 --output=size $HOME | tail -1' 2>&1)
check "--disk 64M gives one where the operator set no ceiling ($out)" -- \
	test "$(tail -1 <<<"$out")" -le $((64 * MIB))
free_mib=$(($(df -B1 --output=avail "$GW_DATA" | tail -1) / MIB))
out=$(run --rm --disk $((free_mib + 1024))M -- true 2>&1)
rc=$?
check "a disk larger than data_dir's free space ($free_mib MiB) is refused, not overcommitted (exit $rc: $out)" -- \
	refused "$rc" "$out" "does not fit"
gw_stop
check "the gateway stopped cleanly: nothing of any disk is left" -- nothing_left
# A ceiling the host cannot hold is found at start, not at every sandbox's.
"$CRGW" --control "$T/ctl2.sock" --audit-log "$T/audit2.log" --pool "$GW_POOL" --upstream-dns "$TN_DNS" --workers 1 \
	--set "state_dir=$T/state" --set "data_dir=$GW_DATA" --set "cache.dir=$GW_DATA/cache" \
	--set "limits.cgroup=$GW_CGROUP" --set "nftables.table=$GW_TABLE" --set "interfaces.prefix=$GW_PREFIX" \
	--set limits.disk=1P >"$T/big.log" 2>&1 &
big_pid=$!
for _ in $(seq 100); do alive "$big_pid" || break; sleep 0.1; done
if alive "$big_pid"; then
	kill "$big_pid"
	wait "$big_pid"
	ok 1 "limits.disk: 1P: the gateway did not refuse to start"
else
	wait "$big_pid"
	rc=$?
	check "limits.disk larger than the host can hold: the gateway does not start (exit $rc: $(grep -m1 -o 'error=.*' "$T/big.log"))" -- \
		sh -c "[ $rc -ne 0 ] && grep -qE 'does not fit|larger than one file' '$T/big.log'"
fi
check "and leaves nothing of its probe" -- nothing_left
tap_done
