#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# What a sandbox disk (limits.disk) costs: the whole run of `crgw-ctl run --rm -- true` (start, command,
# release) and a job writing 256 MiB into its home with fsync, without a disk (the home in data_dir's own
# file system) and with one (ext4 on a loop device), ROUNDS times each, the two gateways taking turns.
# Prints the medians side by side.
#
# A benchmark that prints figures, never a test. Needs root and loop devices.
# usage: disk-bench.sh CRGW CRGW_CTL [ROUNDS]
set -uo pipefail
CRGW=$1
CTL=$2
ROUNDS=${3:-11}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=../e2e/lib.sh
source "$here/../e2e/lib.sh"
GW_TABLE=crgw_disk_bench
GW_PREFIX=cgdb

[[ $ROUNDS =~ ^[0-9]+$ ]] && ((ROUNDS >= 1 && ROUNDS <= 50)) || { echo "disk-bench: ROUNDS is 1 to 50" >&2; exit 2; }
T=$(mktemp -d /tmp/crgw-disk-bench.XXXXXX)
testnet_on_exit rm -rf "$T"
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" >/dev/null || { echo "disk-bench: the test network did not come up" >&2; exit 1; }
printf 'version: 1\nsandbox:\n  network:\n    default: deny\n' >"$T/cleanroom.yaml"

ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
round() { # round LABEL [crgw args]: one start and one write on a fresh gateway
	local label=$1 s
	shift
	gw_start "$T" --set log_level=warn "$@" || { echo "disk-bench: crgw did not start" >&2; return 1; }
	# One run first, so that what the first sandbox of a gateway sets up is not counted.
	"$CTL" run --rm --policy "$T" --workspace-mode none -- true >/dev/null 2>&1
	s=$(date +%s%N)
	"$CTL" run --rm --policy "$T" --workspace-mode none -- true >/dev/null 2>&1 || echo "disk-bench: the run failed" >&2
	echo "$label start $(ms "$s")" >>"$T/runs"
	s=$(date +%s%N)
	"$CTL" run --rm --policy "$T" --workspace-mode none -- \
		dd if=/dev/zero of=/root/f bs=1M count=256 conv=fsync status=none >/dev/null 2>&1 ||
		echo "disk-bench: the write failed" >&2
	echo "$label write $(ms "$s")" >>"$T/runs"
	gw_stop >/dev/null 2>&1
}
for i in $(seq "$ROUNDS"); do
	if ((i % 2)); then
		round none && round disk --set limits.disk=16G
	else
		round disk --set limits.disk=16G && round none
	fi || exit 1
done
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
col() { awk -v l="$1" -v k="$2" '$1 == l && $2 == k {print $3}' "$T/runs" | median; }
echo "# sandbox disks, kernel $(uname -r), $(nproc) CPUs, $(date -u +%F); medians of $ROUNDS rounds (ms)"
echo "| sandbox | run --rm -- true (start, command, release) | run --rm -- dd 256 MiB with fsync |"
echo "|---|---:|---:|"
echo "| no disk (data_dir's file system) | $(col none start) | $(col none write) |"
echo "| a 16 GiB disk (ext4 on a loop device) | $(col disk start) | $(col disk write) |"
