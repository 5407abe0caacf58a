#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end on the qemu backend: crgw against the hermetic test network, sandboxes that are real VMs
# (QEMU, TCG on machines without KVM) made with crgw-ctl run --backend qemu on the built-in image (busybox
# and crgw-guest in the initramfs). Checks the command's streams and exit codes, a tty, that its traffic
# reaches the gateway (egress.sh has the egress checks for both backends), exec into a running VM, an image
# from the test registry, a disk of its own (--disk), SIGTERM ending a VM that no longer answers, the host's
# file system filling under a running VM (an I/O error in the guest, never a paused VM), and that teardown
# leaves no process, TAP, rule or file. TAP output. Needs root,
# QEMU and the distribution's kernel.
# usage: qemu.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
GW_TABLE=crgw_e2e_qemu
GW_PREFIX=cgq

if ! command -v qemu-system-x86_64 >/dev/null || ! ls /boot/vmlinuz-* >/dev/null 2>&1; then
	echo "1..0 # SKIP no QEMU or no kernel in /boot (scripts/setup installs qemu-system-x86 and linux-image-amd64)"
	exit 0
fi
if readelf -lW "$(dirname "$CTL")/../guest/crgw-guest" 2>/dev/null | grep -q 'program interpreter'; then
	echo "1..0 # SKIP crgw-guest is not static in this build (the sanitizers cannot link it so)"
	exit 0
fi

T=$(mktemp -d /tmp/crgw-e2e-qemu.XXXXXX)
export CRGW_VM_CACHE=$T/vmcache
testnet_on_exit rm -rf "$T"
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
AUDIT=$T/audit.log

# The policy's directory is the runs' workspace (copy mode, the default): a small repository of its own.
W=$T/repo
mkdir -p "$W"
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

vmrun() { "$CTL" run --backend qemu --rm --policy "$W" "$@"; }

# ---- the command's streams and exit code ------------------------------------------------------------
start=$(date +%s.%N)
out=$(CRGW_VM_TIMINGS=1 vmrun -- sh -c 'echo out; echo err >&2; exit 7' 2>"$T/err")
rc=$?
secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e - s}')
[ "$rc" -eq 7 ] && [ "$out" = out ] && grep -qx err "$T/err"
ok $? "a command in a VM: stdout, stderr and exit code 7 come back (rc=$rc, ${secs}s with the first image build)"
diag "$(grep 'boot to agent ready' "$T/err")"

# ---- the accelerator: KVM only where a guest was seen to boot under it ------------------------------
# A /dev/kvm that cannot run a guest (a nested KVM missing an MSR or an instruction's emulation) must
# not cost every launch its boot timeout: the first launch tried it once and remembered the answer.
how=$(grep -o 'boot to agent ready [0-9]* ms (.*)' "$T/err" | sed 's/.* ms (//; s/)$//')
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
	probe=$(sed -n 2p "$CRGW_VM_CACHE/kvm-probe" 2>/dev/null)
	case $probe in kvm) want=KVM ;; tcg*) want=TCG ;; *) want=none ;; esac
	[ "$(head -c 36 "$CRGW_VM_CACHE/kvm-probe")" = "$(cat /proc/sys/kernel/random/boot_id)" ] && [ "${how%% *}" = "$want" ]
	ok $? "/dev/kvm is here: a guest was booted under it once, this boot's answer kept ($probe), and the launch used $how"
	out=$("$CTL" doctor 2>&1 | grep 'backend qemu')
	echo "$out" | grep -q "available: $want"
	ok $? "doctor tells which accelerator the next launch gets ($out)"
else
	[ "$how" = TCG ]
	ok $? "no /dev/kvm: the launch used TCG ($how)"
fi
CRGW_VM_ACCEL=tcg CRGW_VM_TIMINGS=1 vmrun -- true 2>"$T/err2"
rc=$?
[ $rc -eq 0 ] && grep -q 'boot to agent ready [0-9]* ms (TCG)' "$T/err2"
ok $? "CRGW_VM_ACCEL=tcg boots under TCG (rc=$rc: $(grep -o '(TCG.*' "$T/err2"))"
out=$(CRGW_VM_ACCEL=hvf vmrun -- true 2>&1)
rc=$?
[ $rc -eq 125 ] && echo "$out" | grep -q 'CRGW_VM_ACCEL=hvf: not kvm, tcg or auto'
ok $? "an unknown CRGW_VM_ACCEL is refused before anything starts (rc=$rc: $out)"
out=$(vmrun -- sh -c 'uname -r; cat /proc/1/comm; hostname' 2>&1)
echo "$out" | grep -qx "$(uname -r | sed 's/-fc.*//')" >/dev/null 2>&1 || echo "$out" | grep -q "amd64"
kernel_ok=$?
echo "$out" | grep -qx "init" && echo "$out" | grep -q '^sbx-' && [ "$kernel_ok" -eq 0 ]
ok $? "it runs its own kernel with crgw-guest as PID 1 and the sandbox id as hostname: $(echo "$out" | tr '\n' ' ')"
vmrun -- sh -c 'kill -9 $$'
[ $? -eq 137 ]
ok $? "a command killed by SIGKILL exits 137"
vmrun -- no-such-command 2>/dev/null
[ $? -eq 127 ]
ok $? "a missing command exits 127"
out=$(printf 'line1\nline2\n' | vmrun -i -- sh -c 'wc -l')
[ "$(echo "$out" | tr -d ' ')" = 2 ]
ok $? "standard input reaches the command with -i (wc -l says $out)"
if command -v script >/dev/null; then
	# script's terminal has no size of its own (its input is /dev/null): give it one, to see it arrive.
	out=$(script -qec "stty rows 33 cols 101; $CTL run --backend qemu --rm --policy $W -t -- sh -c 'tty; stty size'" /dev/null 2>&1 </dev/null)
	echo "$out" | grep -q '/dev/pts/' && echo "$out" | tr -d '\r' | grep -qx '33 101'
	ok $? "an interactive -t session gets a terminal in the VM with the caller's window size: $(echo "$out" | tr -d '\r' | tr '\n' ' ')"
fi

# ---- the network: the same enforcement as a netns sandbox -------------------------------------------
# egress.sh runs the egress conformance checks (DNS, the proxy, CONNECT, transparent HTTP and TLS,
# mediation, a DNS bypass) unchanged against both backends (e2e-egress-netns, e2e-egress-qemu). One here,
# so that this test alone still says whether a VM's traffic reaches the gateway.
out=$(vmrun -- sh -c 'wget -q -O - http://allowed.test/ 2>&1; echo rc=$?')
echo "$out" | grep -q "rc=0"
ok $? "an allowed host is fetched through the gateway's proxy (busybox wget, HTTP_PROXY)"
audit_has "$AUDIT" 'select(.event == "decision" and .service == "http" and .dst_host == "allowed.test" and .action == "allow")'
ok $? "... and audited"

# ---- a VM that stays: exec, show, rm ----------------------------------------------------------------
"$CTL" run --backend qemu --json --policy "$W" -- true 2>"$T/run.json" >/dev/null
id=$(jq -r 'select(.event == "sandbox_created") | .sandbox_id' "$T/run.json" 2>/dev/null | head -1)
[ -n "$id" ] && out=$("$CTL" exec "$id" -- sh -c 'echo again; exit 3')
rc=$?
[ "$rc" -eq 3 ] && [ "$out" = again ]
ok $? "crgw-ctl exec runs a second command in the running VM ($id, rc=$rc)"
jq -e 'select(.event == "exited") | .timings | .boot_ms > 0 and .network_ms >= 0 and .command_ms >= 0' "$T/run.json" >/dev/null
ok $? "run --json's exited event has the run's timings: $(jq -c 'select(.event == "exited") | .timings' "$T/run.json")"
"$CTL" sandbox show --json "$id" >"$T/show.json" 2>&1
jq -e '.timings | .boot_ms > 0 and .image_prep_ms >= 0 and .network_ms >= 0 and .last_command_ms >= 0 and .commands == 2' \
	"$T/show.json" >/dev/null
ok $? "sandbox show has the VM's timings (boot to agent ready, two commands): $(jq -c .timings "$T/show.json")"
# Several crgw-ctl at once: QEMU serves one connection per serial port, the VM has four.
(
	"$CTL" exec "$id" -- sh -c 'sleep 6; echo long' >"$T/long.out" 2>&1
	echo $? >"$T/long.rc"
) &
longpid=$!
sleep 1
out=$("$CTL" exec "$id" -- echo quick 2>&1)
[ -e "$T/long.rc" ] && running=no || running=yes
pids=$longpid
for k in 1 2 3 4 5; do
	"$CTL" exec "$id" -- sh -c "sleep 1; echo par$k" >"$T/par$k.out" 2>&1 &
	pids="$pids $!"
done
for p in $pids; do wait "$p"; done
pars=$(cat "$T"/par?.out | sort | tr '\n' ' ')
[ "$out" = quick ] && [ "$running" = yes ] && [ "$(cat "$T/long.out")" = long ] && [ "$(cat "$T/long.rc")" = 0 ] &&
	[ "$pars" = "par1 par2 par3 par4 par5 " ]
ok $? "execs run side by side: one while a long one runs ($out, the long one still running: $running), then five at once ($pars)"
ifname=$("$CTL" sandbox show --json "$id" 2>/dev/null | jq -r .interface)
holder=$("$CTL" sandbox show --json "$id" 2>/dev/null | jq -r .holder_pid)
[ -n "$holder" ] && grep -q qemu "/proc/$holder/cmdline" 2>/dev/null && ip -d link show dev "$ifname" 2>/dev/null | grep -q "tun type tap"
ok $? "its QEMU is the holder ($holder) on the gateway's TAP ($ifname)"
quid=$(awk '/^Uid:/ {print $2 "," $3 "," $4 "," $5}' "/proc/$holder/status" 2>/dev/null)
qroot=$(readlink "/proc/$holder/root" 2>/dev/null)
qcap=$(awk '/^CapEff:/ {print $2}' "/proc/$holder/status" 2>/dev/null)
[ "$quid" = "$((0x60000000 + holder)),$((0x60000000 + holder)),$((0x60000000 + holder)),$((0x60000000 + holder))" ] &&
	[ "$qroot" = "$GW_DATA/sandboxes/$id/qemu-root" ] && [ "$qcap" = 0000000000000000 ] && [ -z "$(ls -A "$qroot")" ]
ok $? "QEMU runs as a user of its own with no capabilities in an empty root (uids $quid, root $qroot, CapEff $qcap)"
qdata=$("$CTL" sandbox show --json "$id" 2>/dev/null | jq -r .data_dir)
"$CTL" sandbox rm "$id" >/dev/null 2>&1
# It answers once the teardown is over: nothing to wait for after it returns.
! alive "$holder" && ! ip link show dev "$ifname" >/dev/null 2>&1 && [ -n "$qdata" ] && [ ! -e "$qdata" ]
ok $? "sandbox rm returns with QEMU ended, the TAP deleted and the data removed ($qdata)"

# ---- the workspace: a copy on disks, changes back with sandbox diff and cp ---------------------------
# The same commands in a netns sandbox and in a VM must leave the same changes (crgw-ctl sandbox diff).
mkdir -p "$W/src" "$W/gone" "$W/.git/hooks"
echo hello >"$W/README"
echo 'int main(void) { return 0; }' >"$W/src/main.c"
echo bye >"$W/gone/f"
ln -s README "$W/link"
chown 4321:4322 "$W/src/main.c"
(cd "$W" && find . -exec stat -c '%n %s %a %u %Y' {} + | sort) >"$T/ws.before"
change='pwd; cat README; stat -c %u:%g src/main.c; readlink link; echo new >added.txt; echo changed >>README;
rm -r gone; mkdir -p .github; echo ci >.github/ci.yml; echo "#!/bin/sh" >.git/hooks/pre-commit'
for b in qemu netns; do
	"$CTL" run --backend "$b" --json --policy "$W" -- sh -c "$change" >"$T/ws-$b.out" 2>"$T/ws-$b.json"
	echo $? >"$T/ws-$b.rc"
	jq -r 'select(.event == "sandbox_created") | .sandbox_id' "$T/ws-$b.json" 2>/dev/null | head -1 >"$T/ws-$b.id"
done
vid=$(cat "$T/ws-qemu.id")
nid=$(cat "$T/ws-netns.id")
out=$(cat "$T/ws-qemu.out")
[ "$(cat "$T/ws-qemu.rc")" = 0 ] && [ "$(echo "$out" | head -4 | tr '\n' ' ')" = "/workspace hello 4321:4322 README " ]
ok $? "a VM's command starts in /workspace, a copy of the policy's directory with owners and links ($(echo "$out" | tr '\n' ' '))"
(cd "$W" && find . -exec stat -c '%n %s %a %u %Y' {} + | sort) | cmp -s - "$T/ws.before"
ok $? "... and the host's files never change"
"$CTL" sandbox diff "$vid" >"$T/diff-qemu" 2>&1
"$CTL" sandbox diff "$nid" >"$T/diff-netns" 2>&1
grep -qx ' A added.txt' "$T/diff-qemu" && grep -qx ' C README' "$T/diff-qemu" && grep -qx ' D gone/' "$T/diff-qemu" &&
	grep -q '^!A .git/hooks/pre-commit' "$T/diff-qemu" && grep -q '^!A .github/' "$T/diff-qemu"
ok $? "crgw-ctl sandbox diff lists what the VM changed, hooks and CI first: $(tr '\n' ';' <"$T/diff-qemu")"
cmp -s "$T/diff-qemu" "$T/diff-netns"
ok $? "... exactly what a netns sandbox running the same commands changed ($(tr '\n' ';' <"$T/diff-netns"))"
[ -n "$vid" ] && out=$("$CTL" exec "$vid" -- sh -c 'cat added.txt; rm README; mkdir gone; echo back >gone/g')
"$CTL" sandbox diff "$vid" >"$T/diff-qemu2" 2>&1
[ "$out" = new ] && grep -qx ' D README' "$T/diff-qemu2" && grep -qx ' D gone/f' "$T/diff-qemu2" &&
	grep -qx ' A gone/g' "$T/diff-qemu2" && ! grep -q ' gone/$' "$T/diff-qemu2"
ok $? "a second command sees the first one's changes; diff then shows a deletion and a directory made anew: $(tr '\n' ';' <"$T/diff-qemu2")"
rm -rf "$T/cp"
mkdir -p "$T/cp"
"$CTL" cp "$vid:added.txt" "$T/cp/added.txt" && "$CTL" cp "$vid:/workspace" "$T/cp/ws" && "$CTL" cp "$vid:/etc/passwd" "$T/cp/" 2>"$T/cp.err"
[ "$(cat "$T/cp/added.txt" 2>/dev/null)" = new ] && [ "$(cat "$T/cp/ws/gone/g" 2>/dev/null)" = back ] &&
	[ ! -e "$T/cp/ws/README" ] && [ "$(readlink "$T/cp/ws/link")" = README ] && grep -q '^root:' "$T/cp/passwd"
ok $? "crgw-ctl cp copies a file, the whole workspace (links as links) and a file outside it out of the VM $(cat "$T/cp.err")"
out=$("$CTL" cp "$vid:no/such/file" "$T/cp/none" 2>&1)
rc=$?
[ "$rc" -ne 0 ] && echo "$out" | grep -q "no/such/file" && [ ! -e "$T/cp/none" ]
ok $? "a path the VM does not have fails clearly (rc=$rc: $out)"
"$CTL" sandbox rm "$vid" >/dev/null 2>&1
"$CTL" sandbox rm "$nid" >/dev/null 2>&1
# A disk of its own (--disk): the VM's workspace disks live on it, so its changes meet ENOSPC in the guest.
out=$(vmrun --disk 128M -- sh -c 'dd if=/dev/zero of=/workspace/big bs=1M count=200 2>&1; echo dd=$?; cat README' 2>&1)
echo "$out" | grep -q 'No space left on device' && echo "$out" | grep -qx 'dd=1' && echo "$out" | grep -qx hello &&
	[ ! -e "$W/big" ]
ok $? "--disk 128M: writing 200 MiB into the VM's workspace fails with ENOSPC inside, the workspace still reads ($(echo "$out" | grep -v records | tr '\n' ' '))"
left=$(find "$GW_DATA/sandboxes" -maxdepth 1 -name '*.ext4' 2>/dev/null; awk -v p="$GW_DATA/sandboxes/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo)
ok "$([ -z "$left" ]; echo $?)" "and after --rm its disk is gone (${left:-no image, no mount})"
out=$(vmrun --workspace-mode ro -- sh -c 'cat README; touch x 2>&1; echo rc=$?')
echo "$out" | grep -qx hello && echo "$out" | grep -q 'Read-only file system' && echo "$out" | grep -qx 'rc=1'
ok $? "--workspace-mode ro: the VM reads the workspace and cannot write it ($(echo "$out" | tr '\n' ' '))"
out=$(vmrun --workspace-mode rw -- true 2>&1)
rc=$?
[ "$rc" -eq 125 ] && echo "$out" | grep -q "cannot share the host's directory"
ok $? "--workspace-mode rw is refused for a VM with the reason (rc=$rc)"
out=$(vmrun --workspace-mode none -- pwd)
[ "$(echo "$out" | head -1)" = / ]
ok $? "--workspace-mode none: no workspace, the command starts in / ($(echo "$out" | tr '\n' ' '))"

# ---- an image pulled from the test network's registry ----------------------------------------------
# Built here with umoci (busybox and a marker file, no base image), pushed with skopeo to oci.test, pulled
# into an image store with crgw-ctl image pull by digest; the policy names it, the VM boots on it.
if testnet_registries_up >/dev/null 2>&1; then
	L=$T/vmimage
	(
		cd "$T" && umoci init --layout "$L" && umoci new --image "$L:1" &&
			umoci unpack --rootless --image "$L:1" "$T/bundle" >/dev/null &&
			mkdir -p "$T/bundle/rootfs/bin" "$T/bundle/rootfs/etc" && cp /bin/busybox "$T/bundle/rootfs/bin/" &&
			for a in sh cat echo ls uname wget nslookup; do ln -s busybox "$T/bundle/rootfs/bin/$a"; done &&
			echo "crgw e2e image" >"$T/bundle/rootfs/etc/image-release" &&
			mkdir -p "$T/bundle/rootfs/opt/tools" &&
			printf '#!/bin/sh\necho tool from the image PATH\n' >"$T/bundle/rootfs/opt/tools/imgtool" &&
			chmod 755 "$T/bundle/rootfs/opt/tools/imgtool" &&
			umoci repack --image "$L:1" "$T/bundle" &&
			umoci config --image "$L:1" --architecture amd64 --os linux \
				--config.env PATH=/opt/tools:/usr/bin:/bin --config.env CRGW_IMAGE_VAR=from-image \
				--config.env HTTP_PROXY=http://image.invalid:1 --config.workingdir /opt
	) >"$T/umoci.log" 2>&1
	printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"$T/skopeo-policy.json"
	testnet_exec skopeo --policy "$T/skopeo-policy.json" copy --quiet --dest-no-creds \
		--dest-cert-dir "$TN_OCI_CERT_DIR" --digestfile "$T/vmimage.digest" "oci:$L:1" \
		docker://oci.test/crgw/vmbase:1 >>"$T/umoci.log" 2>&1
	digest=$(cat "$T/vmimage.digest" 2>/dev/null)
	ref=oci.test/crgw/vmbase@$digest
	export CRGW_IMAGE_STORE=$T/images
	testnet_exec "$CTL" image pull --store "$CRGW_IMAGE_STORE" --ca-file "$TN_CA" "$ref" >>"$T/umoci.log" 2>&1
	rc=$?
	ok $rc "an image built by the test (busybox) is pushed to the test registry and pulled by digest ($digest)"
	[ $rc -eq 0 ] || diag "$(tail -5 "$T/umoci.log")"
	mkdir -p "$T/img"
	printf 'version: 1\nsandbox:\n  image: { ref: "%s" }\n  network:\n    default: deny\n    allow:\n      - host: allowed.test\n        ports: [80]\n' \
		"$ref" >"$T/img/cleanroom.yaml"
	out=$("$CTL" run --backend qemu --rm --policy "$T/img" -- sh -c 'cat /etc/image-release; echo x > /etc/written; cat /etc/written; wget -q -O /dev/null http://allowed.test/ && echo fetched' 2>&1)
	echo "$out" | grep -qx "crgw e2e image" && echo "$out" | grep -qx x && echo "$out" | grep -qx fetched
	ok $? "a VM boots on that image: its files, a writable root, the gateway's proxy ($(echo "$out" | tr '\n' ' '))"
	out=$("$CTL" run --backend qemu --rm --policy "$T/img" -- cat /etc/written 2>&1)
	! echo "$out" | grep -qx x
	ok $? "... and the next VM on it starts from the pristine image (each gets its own overlay)"
	# That overlay is in the sandbox's data directory (on its disk, when it has one; gone with it), not in
	# the host's /var/tmp, where a VM could fill the host and a killed QEMU left it for good.
	"$CTL" run --backend qemu --rm --policy "$T/img" -- sh -c 'busybox dd if=/dev/zero of=/overlay-test bs=1M count=8 2>/dev/null; echo written; busybox sleep 3' >"$T/ovl.out" 2>&1 &
	ovl=$!
	for _ in $(seq 600); do grep -q '^written' "$T/ovl.out" 2>/dev/null && break; sleep 0.1; done
	# QEMU may unlink the file as soon as it has it open: where it is shows in its descriptors.
	ovl_vm=$(pgrep -f "qemu-system-x86_64.*$GW_DATA" | head -1)
	overlay=$(ls -l "/proc/${ovl_vm:-0}/fd" 2>/dev/null | grep -o '/[^ ]*/vl\.[A-Za-z0-9]*' | head -1)
	wait "$ovl"
	[ -n "$overlay" ] && [ "${overlay#"$GW_DATA"/sandboxes/}" != "$overlay" ]
	ok $? "the overlay of the VM's root is in its data directory, not in /var/tmp (${overlay:-no overlay file open})"
	out=$("$CTL" run --backend qemu --rm --workspace-mode none --policy "$T/img" -- sh -c 'pwd; imgtool; echo "$CRGW_IMAGE_VAR"; echo "$HTTP_PROXY"' 2>&1)
	[ "$(echo "$out" | sed -n 1p)" = /opt ] && [ "$(echo "$out" | sed -n 2p)" = "tool from the image PATH" ] &&
		[ "$(echo "$out" | sed -n 3p)" = from-image ] && echo "$out" | sed -n 4p | grep -q '^http://10\.201\..*:3128$'
	ok $? "the image's Env and WorkingDir apply, under the gateway's own variables ($(echo "$out" | tr '\n' ' '))"
	out=$("$CTL" run --backend qemu --rm --policy "$T/img" -e CRGW_IMAGE_VAR=mine -- sh -c 'pwd; echo "$CRGW_IMAGE_VAR"' 2>&1)
	[ "$(echo "$out" | tr '\n' ' ')" = "/workspace mine " ]
	ok $? "... -e goes over the image's Env, and a workspace is where commands start ($(echo "$out" | tr '\n' ' '))"
	printf 'version: 1\nsandbox:\n  image: { ref: "oci.test/crgw/vmbase@sha256:%s" }\n  network:\n    default: deny\n' \
		"$(printf '0%.0s' $(seq 64))" >"$T/img/cleanroom.yaml"
	out=$("$CTL" run --backend qemu --rm --policy "$T/img" -- true 2>&1)
	rc=$?
	[ "$rc" -eq 125 ] && echo "$out" | grep -q "not in the image store" && echo "$out" | grep -q "crgw-ctl image pull"
	ok $? "an image that is not in the store stops the launch and says how to pull it (rc=$rc)"
	unset CRGW_IMAGE_STORE
else
	echo "ok $((TAP_N + 1)) - an image from the test registry # SKIP the test registries did not come up"
	TAP_N=$((TAP_N + 1))
fi

# ---- SIGTERM to run ends the sandbox, even when its VM no longer answers ------------------------------
# crgw-ctl itself, not the vmrun function: $! must be its pid.
"$CTL" run --backend qemu --rm --policy "$W" -- sh -c 'echo started; sleep 300' >"$T/stuck.out" 2>&1 &
stuck=$!
for _ in $(seq 600); do grep -q '^started' "$T/stuck.out" 2>/dev/null && break; sleep 0.1; done
stuck_vm=$(pgrep -f "qemu-system-x86_64.*$GW_DATA" | head -1)
[ -n "$stuck_vm" ] && kill -STOP "$stuck_vm"
kill -TERM "$stuck"
for _ in $(seq 100); do alive "$stuck" || break; sleep 0.1; done
if alive "$stuck"; then
	ok 1 "SIGTERM to crgw-ctl run with a stopped VM: still running after 10 s"
	kill -KILL "$stuck"
	[ -n "$stuck_vm" ] && kill -CONT "$stuck_vm"
else
	wait "$stuck"
	rc=$?
	for _ in $(seq 50); do [ "$("$CTL" stats --json | jq .sandboxes)" -eq 0 ] && break; sleep 0.1; done
	[ "$rc" -eq 143 ] && ! alive "$stuck_vm" && [ "$("$CTL" stats --json | jq .sandboxes)" -eq 0 ]
	ok $? "SIGTERM to crgw-ctl run with a VM that no longer answers (stopped): exit 143, the VM killed, the sandbox released (rc=$rc)"
fi

# ---- what is left -----------------------------------------------------------------------------------
[ -z "$(kernel_objects)" ]
ok $? "no interface, chain, set or counter left"
[ "$("$CTL" stats --json | jq .sandboxes)" -eq 0 ]
ok $? "no sandbox left registered"
for _ in $(seq 50); do [ -z "$(ls -A "$GW_DATA/sandboxes" 2>/dev/null)" ] && break; sleep 0.1; done
[ -z "$(ls -A "$GW_DATA/sandboxes" 2>/dev/null)" ]
ok $? "no sandbox data left (the workspace's disks go with their VM)"
! pgrep -f "qemu-system-x86_64.*$GW_DATA" >/dev/null
ok $? "no QEMU process left"
gw_stop
ok $? "crgw exits 0 on SIGTERM"

# ---- the host's file system filling under a running VM ---------------------------------------------------
# The change disk is a file in data_dir, here a 256 MiB tmpfs that the test fills once the VM runs: the
# guest's write must fail with an I/O error (QEMU's werror=report), never pause the VM until its TTL.
SMALL=$T/small
mkdir -p "$SMALL"
if mount -t tmpfs -o size=256m tmpfs "$SMALL"; then
	testnet_on_exit "umount -l '$SMALL' 2>/dev/null"
	GW_DATA=$SMALL
	gw_start "$T" || { echo "Bail out! crgw did not start on the small data_dir"; exit 1; }
	timeout -k 10 120 "$CTL" run --backend qemu --rm --policy "$W" -- \
		sh -c 'echo started; sleep 6; dd if=/dev/zero of=/workspace/big bs=1M count=150 conv=fsync 2>&1; echo dd=$?' \
		>"$T/fill.out" 2>&1 &
	vm=$!
	for _ in $(seq 600); do grep -q '^started' "$T/fill.out" 2>/dev/null && break; sleep 0.1; done
	dd if=/dev/zero of="$SMALL/filler" bs=1M 2>/dev/null
	wait "$vm"
	rc=$?
	out=$(grep -v records "$T/fill.out" | tr '\n' ' ')
	[ "$rc" -ne 124 ] && grep -q '^started' "$T/fill.out" && ! grep -qx 'dd=0' "$T/fill.out"
	ok $? "the host's file system full under a running VM: the guest's write fails, the VM does not hang (exit $rc: $out)"
	rm -f "$SMALL/filler"
	gw_stop
	ok $? "crgw exits 0"
fi
tap_done
