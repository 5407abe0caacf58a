# SPDX-License-Identifier: Apache-2.0
# TAP helpers of the test network's selftests (testnet-selftest.sh, registries-selftest.sh), which test
# the network itself and so do not use conformance/e2e/lib.sh. Sourced; sets n and failures.
# shellcheck shell=bash

t0=$EPOCHREALTIME
n=0
failures=0

ok() {
	n=$((n + 1))
	printf 'ok %d - %s\n' "$n" "$1"
}

not_ok() {
	n=$((n + 1))
	failures=$((failures + 1))
	printf 'not ok %d - %s\n' "$n" "$1"
}

skip() {
	n=$((n + 1))
	printf 'ok %d - %s # SKIP %s\n' "$n" "$1" "$2"
}

diag() {
	printf '%s\n' "$@" | sed 's/^/# /'
}

# check DESC CMD...: one test point from a command's status.
check() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}

# is DESC GOT WANT: one test point from comparing strings; prints both on failure.
is() {
	if [ "$2" = "$3" ]; then
		ok "$1"
	else
		not_ok "$1"
		diag "got:  $(printf '%q' "$2")" "want: $(printf '%q' "$3")"
	fi
}

# elapsed START: seconds since START (an $EPOCHREALTIME), two decimals.
elapsed() {
	awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'
}
