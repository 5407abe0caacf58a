#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Boot to first command of the qemu backend: `crgw-ctl run --backend qemu --rm -- true` against a gateway
# on the hermetic test network, ROUNDS times, with the first (cold) launch apart: it also unpacks the
# kernel and builds the initramfs. Prints each step's median (image preparation, network, boot to the
# agent's hello) and the whole run (from crgw-ctl's start to the command's exit status, release
# included), under the accelerator this host has: KVM where a guest boots under /dev/kvm, TCG otherwise.
#
# A benchmark that prints figures, never a test. Needs root, QEMU and the distribution's kernel.
# usage: vm-bench.sh CRGW CRGW_CTL [ROUNDS]
set -uo pipefail
CRGW=$1
CTL=$2
ROUNDS=${3:-5}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=../e2e/lib.sh
source "$here/../e2e/lib.sh"
GW_TABLE=crgw_vm_bench
GW_PREFIX=cgvb

[[ $ROUNDS =~ ^[0-9]+$ ]] && ((ROUNDS >= 1 && ROUNDS <= 50)) || { echo "vm-bench: ROUNDS is 1 to 50" >&2; exit 2; }
T=$(mktemp -d /tmp/crgw-vm-bench.XXXXXX)
export CRGW_VM_CACHE=$T/vmcache
testnet_on_exit rm -rf "$T"
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" >/dev/null || { echo "vm-bench: the test network did not come up" >&2; exit 1; }
# The policy's directory is the workspace (copy mode, as users run): a small repository of its own.
mkdir -p "$T/repo"
printf 'version: 1\nsandbox:\n  network:\n    default: deny\n' >"$T/repo/cleanroom.yaml"
gw_start "$T" --set log_level=warn || { echo "vm-bench: crgw did not start" >&2; exit 1; }

accel=unknown
one() { # one LABEL: a launch; appends "label image network boot total" to $T/runs
	local s e line
	s=$(date +%s%N)
	CRGW_VM_TIMINGS=1 "$CTL" run --backend qemu --rm --policy "$T/repo" -- true 2>"$T/err" || {
		echo "vm-bench: the run failed: $(tail -2 "$T/err")" >&2
		return 1
	}
	e=$(date +%s%N)
	line=$(grep -o 'image [0-9]* ms, network [0-9]* ms, boot to agent ready [0-9]* ms' "$T/err")
	# What the launch booted with, as crgw-ctl says (a /dev/kvm that runs no guest means TCG).
	accel=$(grep -o 'boot to agent ready [0-9]* ms (.*)' "$T/err" | sed 's/.* ms (//; s/)$//')
	echo "$1 $(echo "$line" | awk '{print $2, $5, $11}') $(((e - s) / 1000000))" >>"$T/runs"
}
one cold || exit 1
for _ in $(seq "$ROUNDS"); do one warm || exit 1; done
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
col() { awk -v c="$1" '$1 == "warm" {print $c}' "$T/runs" | median; }
echo "# qemu backend, $accel, host kernel $(uname -r), guest kernel $(ls /boot/vmlinuz-* | sort -V | tail -n 1 | sed "s,.*/vmlinuz-,,"), $(nproc) CPUs, $(date -u +%F); medians of $ROUNDS warm launches (ms)"
echo "| launch | image prep | network | boot to agent ready | run to exit status (total) |"
echo "|---|---:|---:|---:|---:|"
awk '$1 == "cold" {printf "| cold (kernel unpacked, initramfs built) | %s | %s | %s | %s |\n", $2, $3, $4, $5}' "$T/runs"
echo "| warm | $(col 2) | $(col 3) | $(col 4) | $(col 5) |"
gw_stop >/dev/null 2>&1
