#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# crgw-guest as PID 1 in a real VM: QEMU q35 under TCG (KVM when /dev/kvm works) boots the machine's own
# kernel with an initramfs of crgw-guest as /init, the virtio modules it loads itself and busybox; the
# host runs commands through the virtio-serial port with guest_exec (crgw_guest_exec, as the QEMU backend
# will). Checks the mounts, the network set from crgw.* (a NIC on a hub with no other port: nothing leaves),
# resolv.conf, exit codes, stdin, a tty and a session per command. Skips without QEMU, a
# readable kernel, busybox, or a static crgw-guest (the sanitizer build links it dynamically): a TAP plan of 0.
# usage: guest-vm-smoke.sh CRGW-GUEST GUEST-EXEC
set -uo pipefail
agent=$1 exec_tool=$2
# The distribution's kernel (linux-image-amd64) and its modules; not the host's running kernel, which in a
# container may be another one.
kver=
for k in /boot/vmlinuz-*; do
	v=${k#/boot/vmlinuz-}
	[ -d "/lib/modules/$v" ] && kver=$v
done
kernel=/boot/vmlinuz-$kver
modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_console failover net_failover virtio_net"

# TAP: a plan of 0 with SKIP, and exit 0 (meson counts a non-zero exit of a TAP test as an error).
skip() { echo "1..0 # SKIP $*"; exit 0; }
command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64"
[ -r "$kernel" ] || skip "no readable $kernel"
command -v busybox >/dev/null || skip "no busybox"
command -v cpio >/dev/null || skip "no cpio"
file -L "$agent" | grep -q 'statically linked' || skip "crgw-guest is not static (sanitizer build)"

dir=$(mktemp -d /tmp/crgw-vm-smoke.XXXXXX)
qpid=
cleanup() { [ -n "$qpid" ] && kill "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

root=$dir/root
mkdir -p "$root"/{bin,etc/crgw-guest,lib/modules,workspace}
cp "$agent" "$root/init"
cp "$(command -v busybox)" "$root/bin/busybox"
for t in sh echo cat stty sleep ls ip head pwd true false tty test kill mount grep hostname sort tr; do
	ln -s busybox "$root/bin/$t"
done
for m in $modules; do
	f=$(modinfo -k "$kver" -n "$m" 2>/dev/null) || continue
	case $f in /*) cp "$f" "$root/lib/modules/$m.ko" && echo "/lib/modules/$m.ko" >>"$root/etc/crgw-guest/modules" ;; esac
done
(cd "$root" && find . | cpio -o -H newc --quiet >"$dir/initrd") || skip "cpio failed"

# TCG unless asked for KVM: a /dev/kvm can be there and still not run a guest (a nested KVM); the
# backend finds that out with a probe (vm/accel.c), this test of the agent does not need to.
accel=tcg
[ "${CRGW_VM_ACCEL:-}" = kvm ] && accel=kvm
start=$(date +%s.%N)
qemu-system-x86_64 -M q35 -accel $accel -m 256 -smp 1 -nodefaults -no-user-config -display none -no-reboot \
	-kernel "$kernel" -initrd "$dir/initrd" \
	-append "console=ttyS0 rdinit=/init panic=-1 quiet mitigations=off tsc=reliable no_timer_check i8042.noaux i8042.nokbd i8042.nopnp 8250.nr_uarts=1 random.trust_cpu=on cryptomgr.notests crgw.ip=10.201.0.6/30 crgw.gw=10.201.0.5 crgw.dns=10.201.0.5 crgw.mtu=1400 crgw.hostname=smoke" \
	-serial "file:$dir/console.log" \
	-device virtio-serial-pci -chardev "socket,id=agent,path=$dir/agent.sock,server=on,wait=off" \
	-device virtserialport,chardev=agent,name=crgw.0 \
	-netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0 2>"$dir/qemu.log" &
qpid=$!

n=0 fails=0
check() { # check DESCRIPTION WANT-STATUS WANT-OUTPUT-REGEX [-i INPUT] -- ARGV
	local what=$1 want_status=$2 want=$3 input= flags=()
	shift 3
	if [ "$1" = -i ]; then input=$2; flags=(-i); shift 2; fi
	[ "$1" = -t ] && { flags+=(-t); shift; }
	shift # --
	local out status
	out=$(printf '%s' "$input" | timeout 120 "$exec_tool" -w 100 "${flags[@]}" "$dir/agent.sock" -- "$@" 2>&1)
	status=$?
	n=$((n + 1))
	if [ "$status" = "$want_status" ] && [[ $out =~ $want ]]; then
		echo "ok $n - $what"
	else
		fails=$((fails + 1))
		echo "not ok $n - $what (status $status, output: ${out//$'\n'/\\n})"
	fi
}

check "the agent answers once the VM has booted ($accel)" 0 '^ready$' -- echo ready
echo "# boot to the first command: $(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo '?') s under $accel"
check "PID 1 is crgw-guest, /proc /sys /dev /dev/pts /tmp /run mounted" 0 \
	'^devtmpfs /dev devtmpfs devpts /dev/pts devpts proc /proc proc tmpfs /run tmpfs sysfs /sys sysfs tmpfs /tmp tmpfs $' -- sh -c \
	'test "$(cat /proc/1/comm)" = init && grep -o "^[a-z]* /\(proc\|sys\|dev\|dev/pts\|tmp\|run\) [a-z]*" /proc/mounts | sort -k2 | tr "\n" " "'
check "eth0 has crgw.ip and crgw.mtu, the default route is crgw.gw" 0 '10\.201\.0\.6/30.*mtu 1400.*default via 10\.201\.0\.5' -- sh -c \
	'ip -o -4 addr show eth0 | grep -o "inet [^ ]*"; ip -o link show eth0 | grep -o "mtu [0-9]*"; ip route'
check "resolv.conf names crgw.dns; the hostname is crgw.hostname" 0 'nameserver 10\.201\.0\.5.*smoke' -- sh -c 'cat /etc/resolv.conf; hostname'
check "the default directory is /workspace" 0 '^/workspace$' -- pwd
check "an exit code comes back" 7 'x' -- sh -c 'echo x; exit 7'
check "death by a signal is 128+N" 137 '' -- sh -c 'kill -KILL $$'
check "a missing program is 127" 127 'No such file' -- no-such-program
check "stdin reaches the command" 0 '^abc$' -i abc -- cat
check "a tty: the command's streams are a pty of the guest's" 0 'tty=/dev/pts/0' -t -- sh -c 'echo tty=$(tty)'
check "a second session on the port after the others ended" 0 '^again$' -- echo again

kill "$qpid" 2>/dev/null
wait "$qpid" 2>/dev/null
qpid=
echo "1..$n"
if [ $fails -gt 0 ]; then
	echo "# console:"; sed 's/^/# /' "$dir/console.log" | tail -40
	sed "s/^/# qemu: /" "$dir/qemu.log"
	exit 1
fi
