#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# crgw --check-config as an operator runs it: the flags and the file agree, and nothing blocks. TAP output.
# usage: check_config.sh CRGW
set -uo pipefail
crgw=$(realpath "$1")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0 failed=0

# expect STATUS SUBSTRING DESCRIPTION -- ARGS...: crgw --check-config ARGS exits STATUS, printing SUBSTRING
expect() {
	local want=$1 text=$2 what=$3 rc
	shift 4
	timeout 10 "$crgw" --check-config "$@" >"$tmp/out" 2>&1
	rc=$?
	n=$((n + 1))
	if [ "$rc" = "$want" ] && grep -qF -- "$text" "$tmp/out"; then
		echo "ok $n - $what"
	else
		echo "not ok $n - $what (exit $rc)"
		sed 's/^/#   /' "$tmp/out" | head -5
		failed=$((failed + 1))
	fi
}

cd "$tmp" || exit 1
printf 'workers: 9999\ndns: {upstream: [192.0.2.53]}\n' >bad.yaml
printf 'dns: {upstream: [192.0.2.53]}\n' >good.yaml
mkfifo fifo

expect 0 'configuration ok' "a good file" -- --config good.yaml
expect 2 'bad.yaml:1:10: workers:' "--config bad.yaml is read" -- --config bad.yaml
expect 2 'bad.yaml:1:10: workers:' "--conf, an abbreviation getopt takes, is read too" -- --conf bad.yaml --upstream-dns 192.0.2.1
expect 2 'bad.yaml:1:10: workers:' "--confi=FILE is read too" -- --confi=bad.yaml --upstream-dns 192.0.2.1
expect 2 "unexpected argument '--config=bad.yaml'" "a --config after -- is an argument, not a file" \
	-- --upstream-dns 192.0.2.1 -- --config=bad.yaml
expect 2 "unexpected argument 'good.yaml'" "--config as another flag's value is that value" \
	-- --control --config good.yaml
expect 2 'fifo: not a regular file' "a FIFO is refused, not waited on" -- --config fifo
expect 2 'blocked_ranges: expected an IPv4 CIDR' "--blocked-range 10.0.0.0/+8 is refused" \
	-- --config good.yaml --blocked-range 10.0.0.0/+8
expect 2 'blocked_ranges: expected an IPv4 CIDR' "--blocked-range 0.0.0.0/-0 is refused" \
	-- --config good.yaml --blocked-range 0.0.0.0/-0
expect 2 'pool: expected an IPv4 CIDR' "--pool 10.0.0.0/+16 is refused" -- --config good.yaml --pool 10.0.0.0/+16
expect 2 'workers: expected a non-negative integer' "--set 'workers= -18446744073709551615' is refused" \
	-- --config good.yaml --set 'workers= -18446744073709551615'
expect 2 'dns.upstream: expected an IPv4 address' "--upstream-dns 192.0.2.1:+53 is refused" -- --upstream-dns 192.0.2.1:+53
expect 2 'dns.upstream: 10.200.0.1:53 is inside the sandbox pool' "an upstream in the pool is refused" \
	-- --upstream-dns 10.200.0.1
expect 2 'pool: is in loopback' "a pool in 127.0.0.0/8 is refused" -- --config good.yaml --pool 127.0.0.0/8
expect 2 'secrets.tok.env: secrets, audit sinks and credentials are maps set in a configuration file' \
	"--set of a secret says where secrets are set" -- --config good.yaml --set secrets.tok.env=TOKEN
expect 2 'audit.sinks: secrets, audit sinks and credentials are maps' "--set audit.sinks says the same" \
	-- --config good.yaml --set audit.sinks=x

echo "1..$n"
[ "$failed" = 0 ]
