# SPDX-License-Identifier: Apache-2.0
# Shared pieces of the end-to-end tests: TAP output, the gateway under test, audit queries. Sourced after
# conformance/lib/testnet.sh; every process started here is registered for cleanup by PID.
# shellcheck shell=bash

TAP_N=0
TAP_FAILED=0

ok() { # ok CONDITION-EXIT-STATUS DESCRIPTION: returns the status, so that `ok $? ... || diag ...` says why
	local status=$1
	shift
	TAP_N=$((TAP_N + 1))
	if [ "$status" -eq 0 ]; then
		echo "ok $TAP_N - $*"
		return 0
	fi
	echo "not ok $TAP_N - $*"
	TAP_FAILED=$((TAP_FAILED + 1))
	return 1
}

check() { # check DESCRIPTION -- COMMAND...: ok when COMMAND exits 0
	local desc=$1
	shift
	[ "$1" = "--" ] && shift
	if "$@" >/dev/null 2>&1; then ok 0 "$desc"; else ok 1 "$desc"; fi
}

# Every gateway a test stops must exit 0: in a sanitizer build its exit status is where a leak or an error
# at exit shows, and a test that restarts its gateway would otherwise never look (gw_stop counts them).
GW_STOPS=0
GW_STOP_BAD=
tap_done() {
	[ -n "${GW_PID:-}" ] && gw_stop >/dev/null 2>&1
	if [ "$GW_STOPS" -gt 0 ]; then
		[ -z "$GW_STOP_BAD" ]
		ok $? "every gateway this test stopped ($GW_STOPS) exited 0 (sanitizer builds: no leak, no error)${GW_STOP_BAD:+; exit statuses:$GW_STOP_BAD}"
	fi
	echo "1..$TAP_N"
	[ "$TAP_N" -gt 0 ] && [ "$TAP_FAILED" -eq 0 ]
}

diag() { printf '%s\n' "$@" | sed 's/^/# /'; }

# The gateway under test: its own socket, table, interface prefix, NFLOG group and state, so nothing
# collides with a gateway the machine may run. Pool addresses are inside the blackholed 10.201.0.0/16.
GW_TABLE=${GW_TABLE:-crgw_e2e}
GW_PREFIX=${GW_PREFIX:-cge}
GW_POOL=${GW_POOL:-10.201.0.0/24}

# The gateway's data (sandboxes' homes and workspace changes) lives outside DIR: tests use DIR as the
# sandboxes' workspace, and a copy-mode workspace cannot hold the data directory of its own changes.
# Its content cache goes there too (GW_DATA/cache), never to the machine's /var/cache/crgw.
GW_CGROUP=${GW_CGROUP:-crgw_e2e}

gw_start() { # gw_start DIR [extra crgw args...]
	local dir=$1
	shift
	mkdir -p "$dir/state"
	rm -f "$dir/ctl.sock"
	if [ -z "${GW_DATA:-}" ]; then
		GW_DATA=$(mktemp -d /var/tmp/crgw-e2e-data.XXXXXX)
		testnet_on_exit rm -rf "$GW_DATA"
	fi
	# GW_UPSTREAM_IN_FILE=1: the upstream servers come from the --config file (a flag would override it).
	local upstream=(--upstream-dns "$TN_DNS")
	[ -n "${GW_UPSTREAM_IN_FILE:-}" ] && upstream=()
	"$CRGW" --control "$dir/ctl.sock" --audit-log "$dir/audit.log" --pool "$GW_POOL" \
		"${upstream[@]}" --workers 2 --set "state_dir=$dir/state" --set "data_dir=$GW_DATA" \
		--set "cache.dir=$GW_DATA/cache" \
		--set "limits.cgroup=$GW_CGROUP" \
		--set "nftables.table=$GW_TABLE" --set "interfaces.prefix=$GW_PREFIX" \
		--set nftables.nflog_group=4243 --set transparent.http_port=15180 \
		--set transparent.tcp_port=15543 "$@" 2>>"$dir/crgw.log" &
	GW_PID=$!
	export CRGW_CONTROL=$dir/ctl.sock
	for _ in $(seq 100); do
		if "$CTL" stats >/dev/null 2>&1; then
			return 0
		fi
		kill -0 "$GW_PID" 2>/dev/null || break
		sleep 0.1
	done
	diag "crgw did not become ready:" "$(tail -5 "$dir/crgw.log")"
	return 1
}

gw_reap() { # gw_reap: for a gateway that was meant to fail: waits for it, not counted by tap_done
	[ -n "${GW_PID:-}" ] || return 0
	kill -TERM "$GW_PID" 2>/dev/null
	wait "$GW_PID" 2>/dev/null
	GW_PID=
}

gw_stop() { # gw_stop: SIGTERM and wait; returns crgw's exit status
	local rc=0
	[ -n "${GW_PID:-}" ] || return 0
	kill -TERM "$GW_PID" 2>/dev/null
	for _ in $(seq 100); do
		kill -0 "$GW_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$GW_PID" 2>/dev/null; then
		diag "crgw did not stop on SIGTERM within 10 s"
		kill -KILL "$GW_PID"
		rc=137
		wait "$GW_PID" 2>/dev/null
	else
		wait "$GW_PID"
		rc=$?
	fi
	GW_PID=
	GW_STOPS=$((GW_STOPS + 1))
	[ $rc -eq 0 ] || GW_STOP_BAD+=" $rc"
	return $rc
}

# Waits (up to 5 s: the writer is asynchronous) for an audit line matching the jq filter.
audit_has() { # audit_has FILE JQ-FILTER
	local file=$1 filter=$2
	for _ in $(seq 50); do
		# grep -c reads everything: an early exit would kill jq with SIGPIPE and fail the pipeline.
		if [ -f "$file" ] && jq -c "$filter" "$file" 2>/dev/null | grep -c . >/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# The test CA inside a sandbox. crgw-ctl run gives a sandbox a private /tmp and keeps the host's root-owned
# test directories out of its reach, so $TN_CA cannot be read there by its path. sb_ca_cmd prints a shell
# command that writes the CA's PEM to $SB_CA inside the sandbox (works in sh and bash):
#   run sh -c "$(sb_ca_cmd) && curl --cacert $SB_CA https://allowed.test/"
SB_CA=/tmp/testnet-ca.pem
sb_ca_cmd() {
	local pem
	pem=$(<"$TN_CA") || return 1
	# A PEM holds no single quote, so single quotes carry it, newlines and all.
	printf "printf '%%s\\\\n' '%s' >%s" "$pem" "$SB_CA"
}

# Kernel objects of the gateway under test, one per line: links with our prefix and per-sandbox
# nftables objects (chains, sets, counters).
kernel_objects() {
	ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep "^${GW_PREFIX}[0-9]" || true
	nft -j list table inet "$GW_TABLE" 2>/dev/null |
		jq -r '.nftables[] | (.chain // .set // .counter // empty) | .name' | grep '^sb[0-9]' || true
}

# True while PID runs. A zombie is not running: it has already given up its namespaces, and its reaping
# is up to whoever inherited it.
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}
