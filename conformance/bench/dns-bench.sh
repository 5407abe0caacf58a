#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Measures crgw's DNS (cached allowed names, from a sandbox) and Unbound (from its cache) side by side.
#
# A benchmark that prints figures, never a test: it has no pass/fail threshold on speed, and meson does not
# register it. Needs root. Run it on a quiet machine; it waits for one and repeats a measurement that
# another process disturbed. See conformance/bench/README.md and docs/performance.md ("DNS").
#
# What runs where: on both sides the generator and the server are in different namespaces, one veth apart.
#   crgw     root namespace, started here with --workers 2 and the per-sandbox DNS rate limit lifted;
#            dns_bench runs inside one sandbox (crgw-ctl exec) and asks the sandbox's gateway address.
#   Unbound  2 threads (conformance/bench/unbound.sh) in the test network's namespace on an added veth,
#            10.202.0.1, forwarding test. to the test authoritative (knot, 203.0.113.53, same namespace);
#            dns_bench runs in a client namespace made here, 10.202.0.2, on the other end of that veth.
# crgw's path also crosses its nftables rules and conntrack (active in the root namespace while crgw runs).
# Every sandbox pays that cost, so it stays in crgw's figure; Unbound's namespaces have no rules at all.
# Neither path leaves namespaces that this script or the test network harness made; the machine's resolver is
# never used. Names: b0..b999.bench.test (TTL 300 s), fetched once into each cache before measuring.

# shellcheck source-path=SCRIPTDIR
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

BUILD=$ROOT/build-bench
ROUNDS=3
INFLIGHTS="1 64"
WARMUP=1
DURATION=5
PIN="0,1"
PROFILE=0
STATE=
OUT=
MAX_ATTEMPTS=3    # per measurement: a disturbed one is run again, at most this many times in all
QUIET_PCT=10      # before a measurement: wait while the machine is busier than this (% of all CPUs)
QUIET_TRIES=60    # ... checking at most this many times (about 5 s each) before going ahead anyway
OTHER_PCT=20      # during a measurement: CPU used outside server and generator (% of one CPU) that marks it
                  # disturbed; on a quiet machine it is 0-10 (inflight 1: interrupts waking idle CPUs count here)
ZONE_TTL=300      # TTL of the bench names in the test zone: both caches drop them after this

usage() {
	cat <<EOF
usage: $0 [options]        (as root)

Measures crgw's DNS (allowed, cached names, from a sandbox) and Unbound (from its cache) on the same
workload: ROUNDS rounds, each measuring both servers at every inflight level, in alternating order;
prints the median of each figure and the crgw/Unbound ratio. One measurement is dns_bench with
--warmup WARMUP --duration DURATION; CPU shares are taken over the measured window.

  --build DIR        meson build directory with crgw, crgw-ctl and dns_bench (default build-bench)
  --rounds N         rounds (default 3, at most 20)
  --inflight "A B"   inflight levels (default "1 64")
  --warmup S         dns_bench warm-up seconds per measurement (default 1)
  --duration S       measured seconds per measurement (default 5, at most 60)
  --pin S,G          at inflight 1, pin the server to CPU S and the generator to CPU G (default 0,1)
  --no-pin           never pin
  --profile          after the rounds, one more inflight-64 run per server under a system-wide
                     'perf record' (not in the table: perf slows it down); reports in STATE/perf-*.txt
  --state DIR        keep logs and results here (default: a new /tmp/crgw-dns-bench.XXXXXX, kept)
  --out FILE         also write the table to FILE
  --report FILE      only print the table again from an earlier run's STATE/results.jsonl
  --help             this text
EOF
}

die() {
	echo "dns-bench: $*" >&2
	exit 2
}
note() { echo "dns-bench: $*" >&2; }

# print_table RESULTS: the table of medians, the ratios and the CPU cost per query, from a results.jsonl,
# headed by the meta.txt written beside it when the run started.
print_table() {
	local dir
	dir=$(dirname "$1")
	[[ ! -f $dir/meta.txt ]] || cat "$dir/meta.txt"
	printf '# figures are medians over the rounds; lost = lost + wrong answers summed over the rounds; CPU in %% of one CPU\n\n'
	jq -s -r --argjson attempts "$MAX_ATTEMPTS" '
		def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
		def n0: round | tostring | [scan("\\d")] | reverse | [range(0; length) as $i | .[$i] + (if $i > 0 and $i % 3 == 0 then "," else "" end)] | reverse | join("");
		def n1: . * 10 | round / 10 | tostring;
		def n2: . * 100 | round / 100 | tostring;
		def name: if . == "crgw" then "crgw" else "Unbound" end;
		. as $all
		| (group_by(.inflight) | map(group_by(.server) | map({
			server: .[0].server, inflight: .[0].inflight, runs: length,
			qps: (map(.qps) | median), qps_all: map(.qps | round),
			p50: (map(.p50_us) | median), p99: (map(.p99_us) | median), p999: (map(.p999_us) | median),
			lost: (map(.lost + .wrong) | add), sent: (map(.sent) | add),
			srv: (map(.server_cpu_pct) | median), gen: (map(.gen_cpu_pct) | median), idle: (map(.idle_pct) | median),
			srv_us: (map(.server_cpu_pct * 1e4 / .qps) | median), gen_us: (map(.gen_cpu_pct * 1e4 / .qps) | median),
			upstream: (map(.upstream) | add), disturbed: (map(select(.disturbed)) | length)
		}) | sort_by(.server)) | flatten) as $rows
		| "| inflight | server | qps | p50 µs | p99 µs | p99.9 µs | lost | server CPU | generator CPU | idle | qps per round |",
		  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
		  ($rows[] | "| \(.inflight) | \(.server | name) | \(.qps | n0) | \(.p50 | n1) | \(.p99 | n1) | \(.p999 | n1) | \(.lost) of \(.sent | n0) | \(.srv | n1)% | \(.gen | n1)% | \(.idle | n1)% | \(.qps_all | map(n0) | join(", ")) |"),
		  "",
		  ($rows | group_by(.inflight)[] | select(length == 2) | (map(select(.server == "crgw"))[0]) as $c
		   | (map(select(.server == "unbound"))[0]) as $u
		   | ([$all[] | select(.inflight == $c.inflight)] | group_by(.round) | map(select(length == 2)
		      | (map(select(.server == "crgw"))[0].qps / map(select(.server == "unbound"))[0].qps))) as $paired
		   | "crgw/Unbound at inflight \($c.inflight): qps \($c.qps / $u.qps | n2) (same round: \($paired | map(n2) | join(", "))), p50 \($c.p50 / $u.p50 | n2), p99 \($c.p99 / $u.p99 | n2)",
		     "  CPU per answered query at inflight \($c.inflight): crgw \($c.srv_us | n1) µs + generator \($c.gen_us | n1) µs; Unbound \($u.srv_us | n1) µs + generator \($u.gen_us | n1) µs"),
		  ($rows[] | select(.upstream > 0) | "warning: \(.server) inflight \(.inflight): \(.upstream) queries went upstream during measurements (cache misses)"),
		  ($rows[] | select(.disturbed > 0) | "warning: \(.server) inflight \(.inflight): \(.disturbed) run(s) still disturbed by other processes after \($attempts) attempts")
	' "$1"
}

argn=$#
for ((argi = 0; argi < argn && $# > 0; argi++)); do
	case $1 in
	--build) BUILD=${2:?}; shift 2 ;;
	--rounds) ROUNDS=${2:?}; shift 2 ;;
	--inflight) INFLIGHTS=${2:?}; shift 2 ;;
	--warmup) WARMUP=${2:?}; shift 2 ;;
	--duration) DURATION=${2:?}; shift 2 ;;
	--pin) PIN=${2:?}; shift 2 ;;
	--no-pin) PIN=; shift ;;
	--profile) PROFILE=1; shift ;;
	--state) STATE=${2:?}; shift 2 ;;
	--out) OUT=${2:?}; shift 2 ;;
	--report) print_table "${2:?}"; exit 0 ;;
	--help | -h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
in_range() { [[ $1 =~ ^[0-9]{1,5}$ ]] && (($1 >= $2 && $1 <= $3)); } # in_range VALUE MIN MAX
in_range "$ROUNDS" 1 20 || die "--rounds must be 1-20"
in_range "$WARMUP" 0 10 || die "--warmup must be 0-10 (whole seconds)"
in_range "$DURATION" 1 60 || die "--duration must be 1-60 (whole seconds)"
for n in $INFLIGHTS; do
	in_range "$n" 1 4096 || die "--inflight: $n is not 1-4096"
done
[[ -n $INFLIGHTS ]] || die "--inflight is empty"
if [[ -n $PIN ]]; then
	[[ $PIN =~ ^([0-9]+),([0-9]+)$ ]] || die "--pin takes S,G (two CPU numbers)"
	PIN_SRV=${BASH_REMATCH[1]}
	PIN_GEN=${BASH_REMATCH[2]}
fi
[[ $(id -u) == 0 ]] || die "needs root (namespaces, nftables, sandboxes)"

CRGW=$BUILD/gateway/crgw
CTL=$BUILD/ctl/crgw-ctl
DNS_BENCH=$(cd "$BUILD" 2>/dev/null && pwd)/conformance/bench/dns_bench
for f in "$CRGW" "$CTL" "$DNS_BENCH"; do
	[[ -x $f ]] || die "$f is missing: meson setup $BUILD (once), then meson compile -C $BUILD"
done
for c in unbound unbound-checkconf kdig jq taskset ip nft; do
	command -v "$c" >/dev/null || die "missing $c"
done
((PROFILE == 0)) || command -v perf >/dev/null || die "--profile needs perf (linux-perf)"
# The sandbox sees the host's filesystem as an unprivileged user, with /tmp and /run of its own.
[[ $DNS_BENCH == /tmp/* || $DNS_BENCH == /run/* ]] && die "the build directory must not be under /tmp or /run"

if [[ -z $STATE ]]; then
	STATE=$(mktemp -d /tmp/crgw-dns-bench.XXXXXX)
else
	mkdir -p "$STATE"
	STATE=$(cd "$STATE" && pwd)
fi
mkdir -p "$STATE/runs"
RESULTS=$STATE/results.jsonl
: >"$RESULTS"
TICK=$(getconf CLK_TCK)
NCPU=$(nproc)
ALL_CPUS=$(taskset -c -p $$ | sed 's/.*: //')
if [[ -n $PIN ]] && ((PIN_SRV >= NCPU || PIN_GEN >= NCPU)); then
	die "--pin $PIN: this machine has CPUs 0-$((NCPU - 1))"
fi

# shellcheck source=../lib/testnet.sh
source "$ROOT/conformance/lib/testnet.sh"
# shellcheck source=unbound.sh
source "$HERE/unbound.sh"

CRGW_PID=
SOCK=$STATE/ctl.sock
SB=
SB_GW=
SB_HOLDER=
SB_HOLDER_START=
GEN_PID=
PERF_PID=
CLI_NS=crgwdb$(($$ % 10000))-cli
CLI_CREATED=
UB_ADDR=10.202.0.1
CLI_ADDR=10.202.0.2
NAMES=$STATE/names.txt

# ---- cleanup: everything below runs from the EXIT/INT/TERM trap, last registered first, then testnet_down ----

start_time() { # start_time PID: prints the process's start time (clock ticks since boot), or nothing
	local line rest
	local -a f
	{ read -r line <"/proc/$1/stat"; } 2>/dev/null || return 0
	rest=${line##*) }
	read -r -a f <<<"$rest"
	echo "${f[19]}"
}

stop_pid() { # stop_pid PID COMM: TERM, wait up to 10 s, KILL; only while PID is still COMM
	local pid=$1 comm=$2 i
	[[ -n $pid ]] || return 0
	if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]]; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null || true
}

cleanup_crgw() {
	if [[ -n $GEN_PID ]]; then
		kill -TERM "$GEN_PID" 2>/dev/null || true
		wait "$GEN_PID" 2>/dev/null || true
		GEN_PID=
	fi
	if [[ -n $PERF_PID ]]; then
		kill -INT "$PERF_PID" 2>/dev/null || true
		wait "$PERF_PID" 2>/dev/null || true
		PERF_PID=
	fi
	if [[ -n $SB && -n $CRGW_PID ]]; then
		timeout 10 "$CTL" --control "$SOCK" sandbox rm "$SB" >/dev/null 2>&1 || true
	fi
	# A stopping crgw releases its sandboxes and removes its interfaces and nftables table.
	stop_pid "$CRGW_PID" crgw
	CRGW_PID=
	# Only if crgw could not do it itself (it was killed): its sandbox's holder, by PID and start time (so
	# that a reused PID is never hit).
	if [[ -n $SB_HOLDER && $(start_time "$SB_HOLDER") == "$SB_HOLDER_START" ]]; then
		kill -KILL "$SB_HOLDER" 2>/dev/null || true
	fi
	SB=
}

cleanup_client_ns() {
	local -a pids
	[[ -n $CLI_CREATED ]] || return 0
	if [[ -e /run/netns/$CLI_NS ]]; then
		# Everything in this namespace was started by this script (dns_bench runs).
		mapfile -t pids < <(ip netns pids "$CLI_NS" 2>/dev/null)
		((${#pids[@]} == 0)) || testnet_kill "${pids[@]}"
		ip netns del "$CLI_NS" 2>/dev/null || true
	fi
	CLI_CREATED=
}

testnet_on_exit cleanup_crgw
testnet_on_exit bench_unbound_stop
testnet_on_exit cleanup_client_ns

pause() { # pause SECONDS: a sleep the trap can interrupt
	sleep "$1" &
	wait $! || true
}

# ---- machine figures, read with builtins only (no fork inside a measured window) --------------------

KSOFTIRQD=()
for f in /proc/[0-9]*/comm; do
	{ read -r c <"$f"; } 2>/dev/null || continue
	if [[ $c == ksoftirqd/* ]]; then
		p=${f#/proc/}
		KSOFTIRQD+=("${p%/comm}")
	fi
done

# CPU time is read from schedstat (nanoseconds on the CPU, exact) and idle time from /proc/stat (exact on a
# tickless kernel). The per-process tick counts in /proc/PID/stat are not used: with tick accounting they
# miss most of the short bursts an inflight-1 run is made of.
# pid_ns PID: sets NS to the CPU time of all of PID's threads, in nanoseconds, and THREADS_NS to "TID NS ...".
pid_ns() {
	local f ns rest tid
	NS=0
	THREADS_NS=
	for f in /proc/"$1"/task/*/schedstat; do
		{ read -r ns rest <"$f"; } 2>/dev/null || continue
		NS=$((NS + ns))
		tid=${f%/schedstat}
		THREADS_NS+="${tid##*/} $ns "
	done
}

# Prints {"TID": "comm", ...} for PID's threads (outside measured windows: it forks).
thread_names() {
	local f c tid
	for f in /proc/"$1"/task/*/comm; do
		{ read -r c <"$f"; } 2>/dev/null || continue
		tid=${f%/comm}
		printf '%s\t%s\n' "${tid##*/}" "$c"
	done | jq -R -s 'split("\n") | map(select(length > 0) | split("\t") | {(.[0]): .[1]}) | add // {}'
}

# Sets SNAP_US, SNAP_IDLE (ticks, all CPUs), SNAP_SOFTIRQ (ticks), SNAP_FORKS, SNAP_SRV and SNAP_KSOFT (ns),
# SNAP_THREADS ("TID NS ..." for the server's threads).
snap() { # snap SERVER_PID
	local key a b c d e f g h rest p
	SNAP_US=${EPOCHREALTIME/./}
	while read -r key a b c d e f g h rest; do
		case $key in
		cpu)
			SNAP_IDLE=$((d + e))
			SNAP_SOFTIRQ=$g
			;;
		processes) SNAP_FORKS=$a ;;
		esac
	done </proc/stat
	pid_ns "$1"
	SNAP_SRV=$NS
	SNAP_THREADS=$THREADS_NS
	SNAP_KSOFT=0
	for p in "${KSOFTIRQD[@]}"; do
		pid_ns "$p"
		SNAP_KSOFT=$((SNAP_KSOFT + NS))
	done
}

# Busy share of the whole machine over about one second, in % of all CPUs.
machine_busy_pct() {
	local b0 i0 b1 i1 key a b c d e f g h rest
	read -r key a b c d e f g h rest </proc/stat
	b0=$((a + b + c + f + g + h)) i0=$((d + e))
	pause 1
	read -r key a b c d e f g h rest </proc/stat
	b1=$((a + b + c + f + g + h)) i1=$((d + e))
	echo $(((b1 - b0) * 100 / (b1 - b0 + i1 - i0 + 1)))
}

wait_quiet() {
	local i pct
	for ((i = 0; i < QUIET_TRIES; i++)); do
		pct=$(machine_busy_pct)
		((pct > QUIET_PCT)) || return 0
		((i % 6)) || note "machine busy (${pct}% of ${NCPU} CPUs) before a measurement; waiting"
		pause 4
	done
	note "machine still busy after $QUIET_TRIES checks; measuring anyway (the run will likely be marked disturbed)"
}

# ---- servers ---------------------------------------------------------------------------------------

start_crgw() {
	local i
	mkdir -p "$STATE/crgw/state" "$STATE/crgw/policy"
	"$CRGW" --workers 2 --pool 10.201.0.0/24 --upstream-dns "$TN_DNS" \
		--set dns.rate_limit=1000000 --set "state_dir=$STATE/crgw/state" \
		--set nftables.table=crgw_bench --set interfaces.prefix=cgb --set log_level=warn \
		--set "enforcement=${CRGW_BENCH_ENFORCEMENT:-both}" \
		--control "$SOCK" --audit-log "$STATE/crgw/audit.log" 2>>"$STATE/crgw/crgw.log" &
	CRGW_PID=$!
	for ((i = 0; i < 100; i++)); do
		"$CTL" --control "$SOCK" stats >/dev/null 2>&1 && break
		kill -0 "$CRGW_PID" 2>/dev/null || die "crgw exited: $(tail -3 "$STATE/crgw/crgw.log")"
		pause 0.1
	done
	((i < 100)) || die "crgw did not answer on $SOCK within 10 s"
	printf 'version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n      - host: "**.bench.test"\n' \
		>"$STATE/crgw/policy/cleanroom.yaml"
	# Without --rm the sandbox stays up after `true`; the creation event is on stderr.
	timeout 30 "$CTL" --control "$SOCK" run --policy "$STATE/crgw/policy" --json -- true \
		</dev/null >/dev/null 2>"$STATE/crgw/created.json" || die "crgw-ctl run failed: $(cat "$STATE/crgw/created.json")"
	SB=$(jq -r 'select(.event == "sandbox_created") | .sandbox_id' "$STATE/crgw/created.json")
	SB_GW=$(jq -r 'select(.event == "sandbox_created") | .gateway' "$STATE/crgw/created.json")
	[[ $SB =~ ^sbx- && $SB_GW =~ ^[0-9.]+$ ]] || die "no sandbox in $STATE/crgw/created.json"
	SB_HOLDER=$("$CTL" --control "$SOCK" sandbox show --json "$SB" | jq -r '.holder_pid // empty')
	[[ -z $SB_HOLDER ]] || SB_HOLDER_START=$(start_time "$SB_HOLDER")
}

start_unbound() {
	local tn_if=crgwdb$(($$ % 10000))s
	# The client namespace: only the veth, no route but its /30, so nothing it sends can go anywhere else.
	ip netns add "$CLI_NS"
	CLI_CREATED=1
	ip netns exec "$CLI_NS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	ip -n "$CLI_NS" link set lo up
	ip -n "$TN_NS" link add "$tn_if" type veth peer name eth0 netns "$CLI_NS"
	ip -n "$TN_NS" addr add "$UB_ADDR/30" dev "$tn_if"
	ip -n "$CLI_NS" addr add "$CLI_ADDR/30" dev eth0
	ip -n "$TN_NS" link set "$tn_if" up
	ip -n "$CLI_NS" link set eth0 up
	bench_unbound_start "$TN_NS" "$UB_ADDR" "$STATE/unbound" "$TN_DNS" || die "Unbound did not start"
}

srv_pid() { if [[ $1 == crgw ]]; then echo "$CRGW_PID"; else echo "$BENCH_UNBOUND_PID"; fi; }

# Queries that reached the authoritative server: crgw counts its own; for Unbound, its queries to knot go
# over the test namespace's loopback, so that interface's packet count (two per query) stands in.
upstream_count() {
	if [[ $1 == crgw ]]; then
		"$CTL" --control "$SOCK" stats --json | jq '.dns.upstream_queries'
	else
		ip netns exec "$TN_NS" cat /sys/class/net/lo/statistics/rx_packets
	fi
}

# gen_cmd SERVER INFLIGHT PINNED: the generator command line, prefixed with what puts it next to the server.
gen_cmd() {
	local server=$1 inflight=$2 pinned=$3
	local -a pin=() shape=()
	[[ $pinned == 1 ]] && pin=(taskset -c "$PIN_GEN")
	# inflight 1 allows only one thread and one socket; above that, dns_bench's defaults (2 threads, 16 sockets).
	((inflight > 1)) || shape=(--threads 1 --sockets 1)
	if [[ $server == crgw ]]; then
		GEN=("${pin[@]}" "$CTL" --control "$SOCK" exec -i "$SB" -- "$DNS_BENCH" --server "$SB_GW")
	else
		GEN=(ip netns exec "$CLI_NS" "${pin[@]}" "$DNS_BENCH" --server "$UB_ADDR")
	fi
	GEN+=(--names /dev/stdin --inflight "$inflight" "${shape[@]}" --json --label "$server")
}

declare -A WARMED_AT
warm() { # warm SERVER: one pass over the names, so every later query is a cache hit
	local out=$STATE/runs/warm-$1.json
	gen_cmd "$1" 16 0
	WARMED_AT[$1]=$SECONDS
	"${GEN[@]}" --threads 1 --sockets 4 --warmup 0 --duration 10 --max-queries 1000 <"$NAMES" >"$out" \
		2>"$out.err" || die "warming $1 failed: $(cat "$out" "$out.err")"
	[[ $(jq '.answered' "$out") == 1000 ]] || die "warming $1: not every name answered: $(cat "$out")"
}

# Both caches drop the names ZONE_TTL seconds after the warm pass. A measurement that would straddle that
# moment waits until it has passed (at most one measurement's length) and warms again.
fresh_cache() { # fresh_cache SERVER
	local need=$((WARMUP + DURATION + 10)) age=$((SECONDS - WARMED_AT[$1]))
	((age + need < ZONE_TTL - 5)) && return 0
	if ((age <= ZONE_TTL + 1)); then
		note "$1: cache entries expire in $((ZONE_TTL - age)) s; waiting for that and warming again"
		pause $((ZONE_TTL + 2 - age))
	fi
	warm "$1"
}

# ---- one measurement -------------------------------------------------------------------------------

# measure SERVER INFLIGHT ROUND: appends one JSON line to RESULTS (the dns_bench result plus CPU figures).
measure() {
	local server=$1 inflight=$2 round=$3 attempt pinned=0 pid out rc up0 up1 other
	local s_us s_idle s_soft s_forks s_srv s_ksoft s_threads
	pid=$(srv_pid "$server")
	[[ -n $PIN && $inflight == 1 ]] && pinned=1
	for ((attempt = 1; attempt <= MAX_ATTEMPTS; attempt++)); do
		wait_quiet
		fresh_cache "$server"
		if [[ $pinned == 1 ]]; then
			taskset -a -c -p "$PIN_SRV" "$pid" >/dev/null
		fi
		gen_cmd "$server" "$inflight" "$pinned"
		out=$STATE/runs/$server-i$inflight-r$round-a$attempt.json
		up0=$(upstream_count "$server")
		"${GEN[@]}" --warmup "$WARMUP" --duration "$DURATION" <"$NAMES" >"$out" 2>"$out.err" &
		GEN_PID=$!
		# The window: from the end of dns_bench's warm-up to the end of its measurement (give or take the
		# few milliseconds it takes to start).
		pause "$WARMUP"
		snap "$pid"
		s_us=$SNAP_US s_idle=$SNAP_IDLE s_soft=$SNAP_SOFTIRQ s_forks=$SNAP_FORKS
		s_srv=$SNAP_SRV s_ksoft=$SNAP_KSOFT s_threads=$SNAP_THREADS
		pause "$DURATION"
		snap "$pid"
		rc=0
		wait "$GEN_PID" || rc=$?
		GEN_PID=
		up1=$(upstream_count "$server")
		[[ $pinned == 1 ]] && taskset -a -c -p "$ALL_CPUS" "$pid" >/dev/null
		if ! jq -e '.qps' "$out" >/dev/null 2>&1; then
			die "$server inflight $inflight: dns_bench failed (status $rc): $(cat "$out.err")"
		fi
		# CPU in % of one CPU. other = machine busy - server - generator - ksoftirqd: someone else's work.
		# (Softirq work, here mostly the veth receive path, runs in the context of the sending process and is
		# charged to it: the generator pays for delivering queries, the server for delivering answers.)
		jq -c --argjson round "$round" --argjson attempt "$attempt" --argjson pinned "$pinned" \
			--argjson win_us $((SNAP_US - s_us)) --argjson tick "$TICK" --argjson ncpu "$NCPU" \
			--argjson idle $((SNAP_IDLE - s_idle)) \
			--argjson softirq $((SNAP_SOFTIRQ - s_soft)) --argjson forks $((SNAP_FORKS - s_forks)) \
			--argjson srv $((SNAP_SRV - s_srv)) --argjson ksoft $((SNAP_KSOFT - s_ksoft)) \
			--argjson upstream $((up1 - up0)) --argjson rc "$rc" --arg server "$server" \
			--arg t0 "$s_threads" --arg t1 "$SNAP_THREADS" --argjson names "$(thread_names "$pid")" '
			def r1: . * 10 | round / 10;
			def tmap: [splits(" +") | select(length > 0)] | [range(0; length; 2) as $i | {(.[$i]): (.[$i + 1] | tonumber)}] | add // {};
			def pct(t): (t / $tick) / ($win_us / 1e6) * 100 | r1;
			def pct_ns(t): (t / 1e3) / $win_us * 100 | r1;
			. + {server: $server, round: $round, attempt: $attempt, pinned: ($pinned == 1), exit: $rc,
			     server_cpu_pct: pct_ns($srv), ksoftirqd_cpu_pct: pct_ns($ksoft), softirq_pct: pct($softirq),
			     idle_pct: pct($idle), busy_pct: ($ncpu * 100 - pct($idle) | r1), forks: $forks,
			     upstream: (if $server == "crgw" then $upstream else ($upstream / 2 | floor) end)}
			| .other_cpu_pct = ((.busy_pct - .server_cpu_pct - .gen_cpu_pct - .ksoftirqd_cpu_pct) * 10 | round / 10)
			| ($t0 | tmap) as $a | ($t1 | tmap) as $b
			| .server_threads = [$b | to_entries[] | select($a[.key] != null)
				| {tid: .key, name: ($names[.key] // "?"), cpu_pct: pct_ns(.value - $a[.key])} | select(.cpu_pct >= 1)]
			' "$out" >"$out.full"
		other=$(jq '.other_cpu_pct | floor' "$out.full")
		if ((other <= OTHER_PCT)) || ((attempt == MAX_ATTEMPTS)); then
			jq -c --argjson disturbed "$((other > OTHER_PCT ? 1 : 0))" '. + {disturbed: ($disturbed == 1)}' \
				"$out.full" >>"$RESULTS"
			break
		fi
		note "$server inflight $inflight round $round: ${other}% of a CPU went to other processes; measuring again"
	done
	jq -r '"  \(.server) inflight \(.inflight) round \(.round): \(.qps | round) q/s, p50 \(.p50_us) us, p99 \(.p99_us) us, lost \(.lost + .wrong), server CPU \(.server_cpu_pct)%, generator \(.gen_cpu_pct)%, other \(.other_cpu_pct)%, upstream \(.upstream); server threads: \(.server_threads | map("\(.name) \(.cpu_pct)%") | join(", "))"' \
		<(tail -n 1 "$RESULTS") >&2
}

# profile SERVER: one inflight-64 run under a system-wide `perf record`, so that the kernel work done in the
# generator's context for the server (the receive path, and for crgw its nftables rules and conntrack) shows
# too. Reports: STATE/perf-SERVER.txt by symbol, STATE/perf-SERVER-comm.txt by process and object.
profile() {
	local server=$1 data=$STATE/perf-$1.data out nf
	wait_quiet
	fresh_cache "$server"
	gen_cmd "$server" 64 0
	out=$STATE/runs/$server-profile.json
	"${GEN[@]}" --warmup "$WARMUP" --duration "$DURATION" <"$NAMES" >"$out" 2>"$out.err" &
	GEN_PID=$!
	pause "$WARMUP"
	perf record -q -a -g -e cpu-clock -F 999 -o "$data" -- sleep "$DURATION" >"$STATE/perf-$server.log" 2>&1 &
	PERF_PID=$!
	wait "$PERF_PID" || true
	PERF_PID=
	wait "$GEN_PID" || true
	GEN_PID=
	perf report -i "$data" --stdio --no-children --sort comm,dso -g none --percent-limit 0.5 \
		>"$STATE/perf-$server-comm.txt" 2>/dev/null || true
	perf report -i "$data" --stdio --no-children --sort dso,sym -g none \
		>"$STATE/perf-$server.txt" 2>/dev/null || true
	# Netfilter's share of all samples: nftables rule evaluation, conntrack, NAT hooks.
	nf=$(awk '$1 ~ /%$/ && $NF ~ /^(nf_|nft_|__nf|__nft|nf_conntrack|nf_nat|ipv4_conntrack|nf_ct_|hash_conntrack)/ { s += $1 } END { printf "%.1f", s }' \
		"$STATE/perf-$server.txt")
	note "profile of $server under load ($(jq -r '.qps | round' "$out") q/s with perf attached, netfilter ${nf}% of all CPU samples): $STATE/perf-$server.txt"
}

# ---- the run ---------------------------------------------------------------------------------------

for ((i = 0; i < 1000; i++)); do printf 'b%d.bench.test\n' "$i"; done >"$NAMES"

{
	printf '# crgw DNS vs Unbound, %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf '# machine: %s, %s CPUs, kernel %s; %s; crgw %s (%s)\n' \
		"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" "$NCPU" "$(uname -r)" \
		"Unbound $(unbound -V | sed -n 's/^Version //p' | head -n 1)" \
		"$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')" \
		"$(meson introspect --buildoptions "$BUILD" 2>/dev/null |
			jq -r 'map(select(.name == "buildtype"))[0].value // "?"' 2>/dev/null || echo '?')"
	printf '# %s rounds x (warm-up %s s + %s s measured); inflight 1: %s; inflight > 1: 2 generator threads, 16 sockets\n' \
		"$ROUNDS" "$WARMUP" "$DURATION" \
		"$([[ -n $PIN ]] && echo "server pinned to CPU $PIN_SRV, generator to CPU $PIN_GEN" || echo unpinned)"
} >"$STATE/meta.txt"
note "state and logs: $STATE"
testnet_up "$STATE/testnet" || die "the test network did not come up"
start_crgw
start_unbound
warm crgw
warm unbound
note "sandbox $SB (gateway $SB_GW), crgw PID $CRGW_PID; Unbound $UB_ADDR, PID $BENCH_UNBOUND_PID"

for ((round = 1; round <= ROUNDS; round++)); do
	# Alternate which server goes first, so that neither always runs right after the other.
	if ((round % 2)); then order="crgw unbound"; else order="unbound crgw"; fi
	for inflight in $INFLIGHTS; do
		for server in $order; do
			measure "$server" "$inflight" "$round"
		done
	done
done

if ((PROFILE)); then
	profile crgw
	profile unbound
fi

# ---- the table -------------------------------------------------------------------------------------

print_table "$RESULTS" >"$STATE/table.md"
cat "$STATE/table.md"
[[ -z $OUT ]] || cp "$STATE/table.md" "$OUT"
note "raw results: $RESULTS"
