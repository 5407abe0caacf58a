#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end on the firecracker backend, against a FAKE Firecracker: no Firecracker binary can run on the
# project's machines (none is packaged in Debian, none may be downloaded, and its guests need KVM), so
# crgw-ctl run --backend firecracker is pointed at vm/tests/fake_firecracker.py with CRGW_FIRECRACKER. The
# fake checks every API request against Firecracker's published schema and records it, and joins the
# hybrid vsock to a real crgw-guest: the commands run on the host in a network namespace of their own
# (unshare -n), not in a VM. Everything else is real: crgw against the hermetic test network, the
# registration, the gateway's TAP, the rules, the teardown. Checks the command's streams and exit code,
# that the TAP the gateway made and its MAC are what the VMM was told, exec into a running sandbox,
# sandbox rm, and that a refused API request fails the launch cleanly. TAP output. Needs root.
# usage: firecracker.sh CRGW CRGW_CTL FAKE_FIRECRACKER CRGW_GUEST
set -uo pipefail
CRGW=$1
CTL=$2
FAKE=$3
AGENT=$4
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
GW_TABLE=crgw_e2e_fc
GW_PREFIX=cgf

if ! ls /boot/vmlinuz-* >/dev/null 2>&1; then
	echo "1..0 # SKIP no kernel in /boot (the backend prepares what a guest would boot: linux-image-amd64)"
	exit 0
fi
if readelf -lW "$AGENT" 2>/dev/null | grep -q 'program interpreter'; then
	echo "1..0 # SKIP crgw-guest is not static in this build (the sanitizers cannot link it so)"
	exit 0
fi

T=$(mktemp -d /tmp/crgw-e2e-fc.XXXXXX)
export CRGW_VM_CACHE=$T/vmcache
export CRGW_FIRECRACKER=$FAKE CRGW_JAILER=none
export FAKE_FC_AGENT=$AGENT FAKE_FC_NETNS=1 FAKE_FC_LOG=$T/exchange.jsonl
testnet_on_exit rm -rf "$T"
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }

# The policy's directory is the runs' workspace (copy mode, the default): a small repository of its own.
W=$T/repo
mkdir -p "$W"
echo hello >"$W/README"
cat >"$W/cleanroom.yaml" <<'YAML'
version: 1
sandbox:
  network:
    default: deny
    allow:
      - host: allowed.test
        ports: [80, 443]
YAML

gw_start "$T" || { echo "Bail out! crgw did not start"; exit 1; }
ok 0 "crgw starts against the test network (pid $GW_PID)"
diag "the VMM is a FAKE Firecracker ($FAKE): commands run on the host in a network namespace, not in a VM"

fcrun() { "$CTL" run --backend firecracker --rm --policy "$W" "$@"; }

# ---- the command's streams and exit code ------------------------------------------------------------
out=$(fcrun -- sh -c 'echo out; echo err >&2; exit 7' 2>"$T/err")
rc=$?
[ "$rc" -eq 7 ] && [ "$out" = out ] && grep -qx err "$T/err"
ok $? "a command through the backend: stdout, stderr and exit code 7 come back (rc=$rc)"
[ $rc -eq 7 ] || diag "$(cat "$T/err")"
# The fake logs a request once it has answered it: the last line may come just after the command's end.
for _ in $(seq 20); do [ "$(wc -l <"$FAKE_FC_LOG")" -ge 7 ] && break; sleep 0.1; done
jq -e -s '[.[] | .path] == ["/machine-config", "/boot-source", "/drives/workspace", "/drives/workspace_changes",
	"/network-interfaces/eth0", "/vsock", "/actions"]
	and all(.status == 204)' "$FAKE_FC_LOG" >/dev/null
ok $? "the VMM got the whole configuration, each request valid against the API schema: $(jq -r -s '[.[] | "\(.path)=\(.status)"] | join(" ")' "$FAKE_FC_LOG")"
jq -e -s '.[] | select(.path == "/boot-source") | .body.boot_args | test("crgw.vsock=1024") and test("reboot=k") and test("crgw.gw=")' \
	"$FAKE_FC_LOG" >/dev/null
ok $? "the kernel command line names the agent's vsock port and the gateway"
jq -e -s '[.[] | select(.path | startswith("/drives/")) | .body] as $d
	| ($d[0].is_read_only and ($d[0].path_on_host | endswith("/workspace.ext4")) and ($d[0].is_root_device | not))
	and (($d[1].is_read_only | not) and ($d[1].path_on_host | endswith("/workspace-changes.ext4")))' "$FAKE_FC_LOG" >/dev/null &&
	jq -e -s '.[] | select(.path == "/boot-source") | .body.boot_args | test("crgw.ws=copy")' "$FAKE_FC_LOG" >/dev/null
ok $? "the workspace goes to the VM as the qemu backend's two disks: the copy read-only, the changes writable, crgw.ws=copy"
: >"$FAKE_FC_LOG"
fcrun --workspace-mode ro -- true >/dev/null 2>&1
jq -e -s '[.[] | select(.path | startswith("/drives/")) | .body.drive_id] == ["workspace"]' "$FAKE_FC_LOG" >/dev/null &&
	jq -e -s '.[] | select(.path == "/boot-source") | .body.boot_args | test("crgw.ws=ro")' "$FAKE_FC_LOG" >/dev/null
ok $? "--workspace-mode ro gives the copy alone"
out=$(fcrun --workspace-mode rw -- true 2>&1)
rc=$?
[ "$rc" -eq 125 ] && echo "$out" | grep -q "cannot share the host's directory"
ok $? "--workspace-mode rw is refused with the reason (rc=$rc)"
fcrun -- no-such-command 2>/dev/null
[ $? -eq 127 ]
ok $? "a missing command exits 127"
out=$(printf 'line1\nline2\n' | fcrun -i -- sh -c 'wc -l')
[ "$(echo "$out" | tr -d ' ')" = 2 ]
ok $? "standard input reaches the command with -i (wc -l says $out)"

# ---- a sandbox that stays: the TAP, exec, rm --------------------------------------------------------
: >"$FAKE_FC_LOG"
"$CTL" run --backend firecracker --json --policy "$W" -- true 2>"$T/run.json" >/dev/null
id=$(jq -r 'select(.event == "sandbox_created") | .sandbox_id' "$T/run.json" 2>/dev/null | head -1)
"$CTL" sandbox show --json "$id" >"$T/show.json" 2>/dev/null
ifname=$(jq -r .interface "$T/show.json")
mac=$(jq -r .guest_mac "$T/show.json")
holder=$(jq -r .holder_pid "$T/show.json")
data_dir=$(jq -r .data_dir "$T/show.json")
sent=$(jq -r -s '.[] | select(.path == "/network-interfaces/eth0") | "\(.body.host_dev_name) \(.body.guest_mac)"' "$FAKE_FC_LOG")
[ -n "$id" ] && [ "$sent" = "$ifname $mac" ] && ip -d link show dev "$ifname" 2>/dev/null | grep -q "tun type tap"
ok $? "the registration got a TAP ($ifname), and the VMM was given it with the gateway's MAC ($sent)"
grep -q fake_firecracker "/proc/$holder/cmdline" 2>/dev/null
ok $? "the VMM is the sandbox's holder ($holder)"
jq -e '.["boot-source"] and .vsock.uds_path and (.["network-interfaces"][0].host_dev_name == "'"$ifname"'")' \
	"$data_dir/firecracker/vm-config.json" >/dev/null 2>&1 && [ -d "$data_dir/firecracker/snapshot" ]
ok $? "the VM's directory has its configuration as sent and a place for snapshots"
out=$("$CTL" exec "$id" -- sh -c 'echo again; exit 3')
rc=$?
[ "$rc" -eq 3 ] && [ "$out" = again ]
ok $? "crgw-ctl exec runs a second command in the running sandbox over a new vsock connection ($id, rc=$rc)"
# With the fake the agent runs on the host and mounts no workspace: diff reads an untouched change disk,
# and cp reads what the host's agent sees. Both travel the hybrid vsock as in a real VM.
out=$("$CTL" sandbox diff "$id" 2>&1)
rc=$?
"$CTL" cp "$id:$W/README" "$T/fc-readme" 2>"$T/cp.err"
[ "$rc" -eq 0 ] && [ -z "$out" ] && [ "$(cat "$T/fc-readme" 2>/dev/null)" = hello ] && [ -f "$data_dir/workspace-changes.ext4" ]
ok $? "sandbox diff (the guest's sync, then the change disk) and cp (the agent's --copy-out) over the vsock (diff rc=$rc$(cat "$T/cp.err"))"
out=$("$CTL" sandbox rm "$id" 2>&1)
# sandbox rm answers once the teardown is over: the VMM, its TAP and the data are gone when it returns.
! alive "$holder" && ! ip link show dev "$ifname" >/dev/null 2>&1 && [ ! -e "$data_dir" ] && [ "$out" = "$id released" ]
ok $? "sandbox rm returns with the VMM ended, the TAP deleted and the sandbox's files removed (holder $(alive "$holder" && echo alive || echo gone), TAP $(ip link show dev "$ifname" >/dev/null 2>&1 && echo there || echo gone), data $([ -e "$data_dir" ] && echo there || echo gone); $out)"

# ---- a refused API request --------------------------------------------------------------------------
out=$(FAKE_FC_FAULT=/network-interfaces/eth0 fcrun -- true 2>&1)
rc=$?
[ "$rc" -eq 125 ] && echo "$out" | grep -q "Firecracker refused PUT /network-interfaces/eth0 (HTTP 400): fake fault injected"
ok $? "a request the VMM refuses fails the launch with its fault message (rc=$rc): $out"
for _ in $(seq 30); do [ -z "$(kernel_objects)" ] && break; sleep 0.1; done
[ "$("$CTL" stats --json | jq .sandboxes)" -eq 0 ] && [ -z "$(kernel_objects)" ]
ok $? "... and leaves no registration, TAP or rule"
out=$(CRGW_FIRECRACKER=/nonexistent/firecracker fcrun -- true 2>&1)
rc=$?
[ "$rc" -eq 125 ] && echo "$out" | grep -q "no Firecracker binary"
ok $? "without a Firecracker binary the launch stops and says so (rc=$rc)"
"$CTL" doctor 2>/dev/null | grep -q "backend firecracker"
ok $? "doctor has a backend firecracker line: $("$CTL" doctor 2>/dev/null | grep "backend firecracker" | cut -c1-160)"

# ---- what is left -----------------------------------------------------------------------------------
[ -z "$(kernel_objects)" ]
ok $? "no interface, chain, set or counter left"
[ "$("$CTL" stats --json | jq .sandboxes)" -eq 0 ]
ok $? "no sandbox left registered"
! pgrep -f "fake_firecracker.py --api-sock $GW_DATA" >/dev/null && ! pgrep -f "crgw-guest --listen unix:$GW_DATA" >/dev/null
ok $? "no VMM or agent process left"
gw_stop
ok $? "crgw exits 0 on SIGTERM"
tap_done
