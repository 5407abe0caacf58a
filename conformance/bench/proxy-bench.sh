#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Measures crgw's explicit proxy against Squid, tinyproxy, HAProxy and a bare splice relay on one workload, in one run.
#
# A benchmark that prints figures, never a test: no pass/fail threshold on speed, and meson does not register
# it. Needs root. Run it on a quiet machine: it waits a while for one, and repeats a measurement that another
# process disturbed. See conformance/bench/README.md.
#
# What is measured, per proxy (conformance/bench/proxy_bench does the client and upstream sides):
#   bulk     one tunnel moving --bulk-bytes downstream (MB/s = 10^6 bytes/s, request to last byte)
#   setup    tunnels/s and latency at concurrency 1 and 64: connect, CONNECT, 200, 16 bytes each way, the
#            upstream's close (so TIME_WAIT stays on the upstream and no port range runs dry)
#   forward  absolute-URI GET requests/s over keep-alive connections at concurrency 64, a 64-byte body
#   idle     RSS of the proxy's processes with --idle tunnels open and idle, minus RSS before, per tunnel;
#            first round only (later rounds would reuse memory the first one's tunnels freed). Kernel memory
#            (socket and pipe buffers) is not in RSS and not in this figure.
#
# What runs where. Every client is one veth away from its proxy, and every proxy one veth away from the
# upstream servers (proxy_bench serve in the test network's namespace, 203.0.113.10:9001-9004):
#   crgw      root namespace, --workers 2, started here like dns-bench.sh starts it; the client runs inside
#             a sandbox (crgw-ctl exec) and talks to the sandbox's gateway on 3128. crgw's nftables rules and
#             conntrack are on this path: every sandbox pays them, so they stay in crgw's figures.
#   peers     one "proxy" namespace made here: 10.202.0.1 towards a client namespace (10.202.0.2, the
#             client's only route) and 10.203.0.2 towards the test network's namespace (10.203.0.1; route
#             203.0.113.0/24 via it). No nftables rules there. Each peer has its own config in the state
#             directory, its own non-standard ports, and resolves through the test network's knot only
#             (/etc/netns/<ns>/resolv.conf, which `ip netns exec` mounts over /etc/resolv.conf).
#     Squid 5      `workers 2` (SMP: 2 workers + coordinator), no cache, no access log, CONNECT to any port
#     tinyproxy    thread per connection (its design), MaxClients 4096
#     HAProxy 2.6  nbthread 2. No CONNECT: TCP-mode listeners relay to fixed upstreams (the client runs with
#                  --tcp), and an HTTP-mode listener forwards absolute-URI requests: do-resolve on the Host
#                  name through a resolvers section (knot), set-dst/set-dst-port, a server 0.0.0.0:0
#     sockmap relay  the same program with --sockmap: bytes relayed in the kernel by the experimental sockmap
#                  relay of ebpf/ (not used by crgw yet); opt-in (--proxies), so that the figures can say
#                  which relay crgw should use
#     splice relay conformance/bench/splice_relay, 2 threads, numeric CONNECT targets (it does not resolve);
#                  no forward mode
# Names: the CONNECT and forward targets are b0.bench.test (203.0.113.10, in the test zone) for every proxy
# that resolves; DNS caches are warmed before measuring. Nothing leaves namespaces this script or the test
# network harness made; the machine's resolver is never used.

# shellcheck source-path=SCRIPTDIR
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

BUILD=$ROOT/build-bench
ROUNDS=3
BULK_BYTES=$((2 << 30))
WARMUP=1
DURATION=5
IDLE=2000
HOLD=3
CONC_HI=64
CLIENT_THREADS=1
PROXIES="crgw squid tinyproxy haproxy splice"
STATE=
OUT=
QUICK=0
MAX_ATTEMPTS=2    # per measurement: a disturbed one is run again, at most this many times in all
QUIET_PCT=15      # before each proxy's measurements: wait while the machine is busier than this (% of all CPUs)
QUIET_TRIES=30    # ... checking at most this many times (about 5 s each), then going ahead anyway
OTHER_PCT=25      # during a measurement: CPU used by anything but proxy, client, upstream server, knot and
                  # ksoftirqd (% of one CPU) above which it counts as disturbed; 5-15 on a quiet machine

usage() {
	cat <<EOF
usage: $0 [options]        (as root)

Runs crgw, Squid, tinyproxy, HAProxy and the bare splice relay side by side on the same workload and prints
a table of medians over the rounds: CONNECT bulk MB/s, tunnel setup rate and latency at concurrency 1 and
$CONC_HI, absolute-URI forward requests/s at $CONC_HI, and RSS per idle tunnel.

  --build DIR        meson build directory with crgw, crgw-ctl, proxy_bench and splice_relay
                     (default build-bench)
  --quick            one round, 1 GiB bulk, 0.5 s warm-up + 2 s per measurement, 2 s hold (about 2 min)
  --rounds N         rounds (default 3, at most 10); proxies take turns going first
  --bulk-bytes N     bytes per bulk tunnel (default 2 GiB)
  --warmup S         seconds of warm-up per setup/forward measurement (default 1)
  --duration S       measured seconds per setup/forward measurement (default 5, at most 60)
  --idle N           idle tunnels for the memory figure, measured in the first round (default 2000)
  --hold S           seconds the idle tunnels are held (default 3)
  --client-threads N proxy_bench threads at concurrency $CONC_HI (default 1)
  --proxies "LIST"   a subset of: crgw squid tinyproxy haproxy splice sockmap (default all but sockmap)
  --state DIR        keep logs, configs and results here (default: a new /tmp/crgw-proxy-bench.XXXXXX, kept)
  --out FILE         also write the table to FILE
  --report FILE      only print the table again from an earlier run's STATE/results.jsonl
  --help             this text

Environment: CRGW_BENCH_ENFORCEMENT (crgw's enforcement: nftables, ebpf or both, the default);
CRGW_BENCH_PERF=DIR records a perf profile (perf record -g) and system call counts (perf stat) of crgw's
processes over each setup and forward window into DIR (profiling only: those windows' figures then include
perf's own cost).
EOF
}

die() {
	echo "proxy-bench: $*" >&2
	exit 2
}
note() { echo "proxy-bench: $*" >&2; }

# print_table RESULTS: the tables of medians and the ratios SPEC section 10 asks about, from a results.jsonl,
# headed by the meta.txt written beside it when the run started.
print_table() {
	local dir
	dir=$(dirname "$1")
	[[ ! -f $dir/meta.txt ]] || cat "$dir/meta.txt"
	printf '# medians over the rounds (idle memory: first round only); latency in µs; "n/a (405)": every forward request was refused with that status\n\n'
	jq -s -r --argjson hi "$CONC_HI" '
		def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
		def n0: if . == null then "—" else round | tostring | [scan("\\d")] | reverse | [range(0; length) as $i | .[$i] + (if $i > 0 and $i % 3 == 0 then "," else "" end)] | reverse | join("") end;
		def n1: if . == null then "—" else . * 10 | round / 10 | tostring end;
		def n2: if . == null then "—" else . * 100 | round / 100 | tostring end;
		def name: {crgw: "crgw", squid: "Squid", tinyproxy: "tinyproxy", haproxy: "HAProxy", splice: "splice relay", sockmap: "sockmap relay"}[.] // .;
		def order: {crgw: 0, splice: 1, sockmap: 2, haproxy: 3, squid: 4, tinyproxy: 5}[.] // 9;
		. as $all
		| def sel(p; t; c): [$all[] | select(.proxy == p and .test == t and (c == null or .concurrency == c))];
		  def okrows(r): [r[] | select(.ok)];
		  # A cell: the median of the good runs, or what went wrong.
		  def cell(r; f; fmt): okrows(r) as $g
			| if (r | length) == 0 then "—"
			  elif ($g | length) > 0 then ($g | map(f) | median | fmt)
			  elif (r | map(select(.completed == 0 and .last_status > 0)) | length) > 0 then "n/a (\(r[0].last_status))"
			  else "failed" end;
		  ($all | map(.proxy) | unique | sort_by(order)) as $proxies
		| "| proxy | bulk MB/s | tunnels/s c1 | p50 | p99 | tunnels/s c\($hi) | p50 | p99 | forward req/s c\($hi) | p50 | p99 | KiB per idle tunnel |",
		  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
		  ($proxies[] as $p
		   | sel($p; "bulk"; null) as $b | sel($p; "setup"; 1) as $s1 | sel($p; "setup"; $hi) as $s64
		   | sel($p; "http"; $hi) as $h | sel($p; "idle"; null) as $i
		   | "| \($p | name)\(if $p == "haproxy" then " (TCP mode; forward: HTTP mode)" else "" end) | \(cell($b; .mb_s; n0)) | \(cell($s1; .rate; n0)) | \(cell($s1; .p50_us; n1)) | \(cell($s1; .p99_us; n1)) | \(cell($s64; .rate; n0)) | \(cell($s64; .p50_us; n1)) | \(cell($s64; .p99_us; n1)) | \(cell($h; .rate; n0)) | \(cell($h; .p50_us; n1)) | \(cell($h; .p99_us; n1)) | \(cell($i; .kib_per_tunnel; n2)) |"),
		  "",
		  "CPU of the proxy (all its threads and processes; % of one CPU, µs per operation) and of the client:",
		  "",
		  "| proxy | bulk: proxy CPU | client CPU | setup c\($hi): proxy µs/tunnel | client µs/tunnel | forward c\($hi): proxy µs/request | client µs/request | forward reconnects | idle RSS before → after (MiB) |",
		  "|---|---:|---:|---:|---:|---:|---:|---:|---|",
		  ($proxies[] as $p
		   | sel($p; "bulk"; null) as $b | sel($p; "setup"; $hi) as $s64 | sel($p; "http"; $hi) as $h | sel($p; "idle"; null) as $i
		   | "| \($p | name) | \(cell($b; .proxy_cpu_pct; n1 + "%")) | \(cell($b; .gen_cpu_pct; n1 + "%")) | \(cell($s64; .proxy_cpu_pct * 1e4 / .rate; n1)) | \(cell($s64; .gen_cpu_pct * 1e4 / .rate; n1)) | \(cell($h; .proxy_cpu_pct * 1e4 / .rate; n1)) | \(cell($h; .gen_cpu_pct * 1e4 / .rate; n1)) | \(cell($h; .reconnects; n0)) | \(cell($i; .rss_before_kib / 1024; n1)) → \(cell($i; .rss_after_kib / 1024; n1)) |"),
		  "",
		  # The ratios of SPEC section 10, where both sides have a figure.
		  (def med(p; t; c; f): okrows(sel(p; t; c)) | map(f) | median;
		   def ratio(a; b): if a == null or b == null or b == 0 then "—" else (a / b | n2) end;
		   "crgw/splice relay, bulk MB/s: \(ratio(med("crgw"; "bulk"; null; .mb_s); med("splice"; "bulk"; null; .mb_s))) (SPEC target >= 0.95)",
		   "crgw/HAProxy TCP mode, tunnels/s at c\($hi): \(ratio(med("crgw"; "setup"; $hi; .rate); med("haproxy"; "setup"; $hi; .rate))) (target >= 1); p99 \(med("crgw"; "setup"; $hi; .p99_us) | n0) µs against \(med("haproxy"; "setup"; $hi; .p99_us) | n0) µs (target: lower)",
		   "crgw/HAProxy, forward requests/s at c\($hi): \(ratio(med("crgw"; "http"; $hi; .rate); med("haproxy"; "http"; $hi; .rate))) (target >= 1)",
		   "crgw KiB per idle tunnel: \(med("crgw"; "idle"; null; .kib_per_tunnel) | n2) (target <= 4)",
		   (if (sel("sockmap"; "bulk"; null) | length) > 0 then
		     "sockmap relay/splice relay: bulk \(ratio(med("sockmap"; "bulk"; null; .mb_s); med("splice"; "bulk"; null; .mb_s))), tunnels/s at c\($hi) \(ratio(med("sockmap"; "setup"; $hi; .rate); med("splice"; "setup"; $hi; .rate)))"
		    else empty end)),
		  ($all[] | select(.disturbed) | "warning: \(.proxy | name) \(.test) c\(.concurrency // "-") round \(.round): still disturbed by other processes (\(.other_cpu_pct)% of a CPU) after the last attempt"),
		  ($all[] | select(.ok | not) | "note: \(.proxy | name) \(.test) c\(.concurrency // "-") round \(.round): failed: \(.error // .last_error // "") \(if (.last_status // 0) > 0 then "status \(.last_status)" else "" end) (completed \(.completed // .established // 0), failed \(.total_failed // .failed // 0))")
	' "$1"
}

argn=$#
for ((argi = 0; argi < argn && $# > 0; argi++)); do
	case $1 in
	--build) BUILD=${2:?}; shift 2 ;;
	--quick) QUICK=1; shift ;;
	--rounds) ROUNDS=${2:?}; shift 2 ;;
	--bulk-bytes) BULK_BYTES=${2:?}; shift 2 ;;
	--warmup) WARMUP=${2:?}; shift 2 ;;
	--duration) DURATION=${2:?}; shift 2 ;;
	--idle) IDLE=${2:?}; shift 2 ;;
	--hold) HOLD=${2:?}; shift 2 ;;
	--client-threads) CLIENT_THREADS=${2:?}; shift 2 ;;
	--proxies) PROXIES=${2:?}; shift 2 ;;
	--state) STATE=${2:?}; shift 2 ;;
	--out) OUT=${2:?}; shift 2 ;;
	--report) print_table "${2:?}"; exit 0 ;;
	--help | -h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
if ((QUICK)); then
	# Explicit options given before or after --quick are overridden: --quick is a preset.
	ROUNDS=1 BULK_BYTES=$((1 << 30)) WARMUP=0.5 DURATION=2 HOLD=2 QUIET_TRIES=6
fi
in_range() { [[ $1 =~ ^[0-9]{1,12}$ ]] && (($1 >= $2 && $1 <= $3)); } # in_range VALUE MIN MAX
seconds_ok() { [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3})?$ ]]; }
in_range "$ROUNDS" 1 10 || die "--rounds must be 1-10"
in_range "$BULK_BYTES" 1048576 $((64 << 30)) || die "--bulk-bytes must be 1 MiB - 64 GiB"
seconds_ok "$WARMUP" || die "--warmup: seconds, e.g. 1 or 0.5"
if ! seconds_ok "$DURATION" || [[ $DURATION =~ ^0(\.0*)?$ ]] || ((${DURATION%%.*} > 60)); then die "--duration: seconds, more than 0, at most 60"; fi
in_range "$IDLE" 1 10000 || die "--idle must be 1-10000"
seconds_ok "$HOLD" || die "--hold: seconds"
in_range "$CLIENT_THREADS" 1 8 || die "--client-threads must be 1-8"
for p in $PROXIES; do
	[[ $p =~ ^(crgw|squid|tinyproxy|haproxy|splice|sockmap)$ ]] || die "--proxies: unknown proxy $p"
done
[[ $(id -u) == 0 ]] || die "needs root (namespaces, nftables, sandboxes)"

CRGW=$BUILD/gateway/crgw
CTL=$BUILD/ctl/crgw-ctl
BENCH_DIR=$(cd "$BUILD" 2>/dev/null && pwd)/conformance/bench
PB=$BENCH_DIR/proxy_bench
RELAY=$BENCH_DIR/splice_relay
for f in "$CRGW" "$CTL" "$PB" "$RELAY"; do
	[[ -x $f ]] || die "$f is missing: meson setup $BUILD (once), then meson compile -C $BUILD"
done
for c in jq ip nft kdig squid tinyproxy haproxy; do
	command -v "$c" >/dev/null || die "missing $c (scripts/setup installs it)"
done
# The sandbox sees the host's filesystem as an unprivileged user, with /tmp and /run of its own.
[[ $PB == /tmp/* || $PB == /run/* ]] && die "the build directory must not be under /tmp or /run"

# Descriptors: 2,000 idle tunnels take 2 sockets each in every proxy (crgw and the splice relay also hold 2
# pipes, 4 descriptors, per tunnel), and as many in client and upstream. Everything started below inherits this.
# crgw gives one sandbox at most half the tunnels its descriptors have room for (3/4 of them, six a tunnel),
# and the client is one sandbox: IDLE tunnels need 16 descriptors each.
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) >= IDLE * 16)) ||
	note "ulimit -n is $(ulimit -n) (the hard limit): crgw and the splice relay may run out of descriptors at $IDLE idle tunnels"

if [[ -z $STATE ]]; then
	STATE=$(mktemp -d /tmp/crgw-proxy-bench.XXXXXX)
else
	mkdir -p "$STATE"
	STATE=$(cd "$STATE" && pwd)
fi
# Squid and tinyproxy drop to their own users and must reach their directories beneath this one.
chmod 755 "$STATE"
mkdir -p "$STATE/runs"
RESULTS=$STATE/results.jsonl
: >"$RESULTS"
TICK=$(getconf CLK_TCK)
NCPU=$(nproc)

# shellcheck source=../lib/testnet.sh
source "$ROOT/conformance/lib/testnet.sh"

ID=$(($$ % 10000))
CLI_NS=crgwpb$ID-cli
PX_NS=crgwpb$ID-px
CLI_CREATED=
PX_CREATED=
PX_ADDR=10.202.0.1
CLI_ADDR=10.202.0.2
TNPX_ADDR=10.203.0.1
PXUP_ADDR=10.203.0.2
TNPX_IF=crgwpb${ID}t
NAME=b0.bench.test
P_SRC=9001 P_PING=9002 P_HTTP=9003 P_HOLD=9004
SQUID_PORT=13128
TINY_PORT=13129
HAP_SRC=14001 HAP_PING=14002 HAP_HOLD=14004 HAP_HTTP=14080
PERF_SYSCALLS="accept4 read write writev readv recvfrom sendto recvmsg sendmsg splice epoll_ctl epoll_wait
close shutdown socket connect setsockopt getsockopt getsockname getpeername futex pipe2 fcntl ioctl openat
mmap munmap madvise brk"
RELAY_PORT=15128
SOCKMAP_PORT=15129
SQUID_SERVICE=crgwpb$ID

# Each proxy runs in a cpuacct cgroup of its own (cgroup v1 here, v2 where that is what is mounted): its CPU
# time then includes threads and processes that end inside a measurement (tinyproxy's thread per
# connection), which /proc/PID/task no longer shows. Without cgroups, the schedstat of live threads stands in.
CG_DIR=
if [[ -d /sys/fs/cgroup/cpuacct && -w /sys/fs/cgroup/cpuacct ]]; then
	CG_DIR=/sys/fs/cgroup/cpuacct/crgw-proxy-bench.$$
	CG_FILE=cpuacct.usage
elif [[ -f /sys/fs/cgroup/cgroup.controllers && -w /sys/fs/cgroup ]]; then
	CG_DIR=/sys/fs/cgroup/crgw-proxy-bench.$$
	CG_FILE=cpu.stat
fi
CG_MADE=

CRGW_PID=
SOCK=$STATE/crgw/ctl.sock
SB=
SB_GW=
SB_HOLDER=
SB_HOLDER_START=
SRV_PID=
GEN_PID=
declare -A PID=()

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

cleanup_gen() {
	if [[ -n $GEN_PID ]]; then
		kill -TERM "$GEN_PID" 2>/dev/null || true
		wait "$GEN_PID" 2>/dev/null || true
		GEN_PID=
	fi
}

cleanup_crgw() {
	if [[ -n $SB && -n $CRGW_PID ]]; then
		timeout 10 "$CTL" --control "$SOCK" sandbox rm "$SB" >/dev/null 2>&1 || true
	fi
	# A stopping crgw releases its sandboxes and removes its interfaces and nftables table.
	stop_pid "$CRGW_PID" crgw
	CRGW_PID=
	# Only if crgw could not do it itself (it was killed): its sandbox's holder, by PID and start time.
	if [[ -n $SB_HOLDER && $(start_time "$SB_HOLDER") == "$SB_HOLDER_START" ]]; then
		kill -KILL "$SB_HOLDER" 2>/dev/null || true
	fi
	SB=
}

cleanup_peers() {
	local p
	for p in "${!PID[@]}"; do
		case $p in
		squid) stop_pid "${PID[$p]}" squid ;;
		tinyproxy) stop_pid "${PID[$p]}" tinyproxy ;;
		haproxy) stop_pid "${PID[$p]}" haproxy ;;
		splice | sockmap) stop_pid "${PID[$p]}" splice_relay ;;
		esac
		unset "PID[$p]"
	done
	# Squid's SMP sockets, named after this run's service name.
	rm -f /run/squid/"$SQUID_SERVICE"-*.ipc
}

cleanup_server() {
	stop_pid "$SRV_PID" proxy_bench
	SRV_PID=
}

cleanup_namespaces() {
	local ns
	local -a pids
	for ns in "$CLI_NS" "$PX_NS"; do
		[[ $ns == "$CLI_NS" && -z $CLI_CREATED ]] && continue
		[[ $ns == "$PX_NS" && -z $PX_CREATED ]] && continue
		if [[ -e /run/netns/$ns ]]; then
			# Everything in these namespaces was started by this script.
			mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
			((${#pids[@]} == 0)) || testnet_kill "${pids[@]}"
			ip netns del "$ns" 2>/dev/null || true
		fi
	done
	[[ -z $PX_CREATED ]] || rm -rf "/etc/netns/$PX_NS"
	rmdir /etc/netns 2>/dev/null || true
	CLI_CREATED=
	PX_CREATED=
}

cleanup_cgroups() {
	local d p
	[[ -n $CG_MADE ]] || return 0
	for d in "$CG_DIR"/*/; do
		[[ -d $d ]] || continue
		# A process still inside (it should all be gone by now) goes back to the root group first.
		while read -r p; do
			echo "$p" >"$CG_DIR/../cgroup.procs" 2>/dev/null || true
		done <"$d/cgroup.procs"
		rmdir "$d" 2>/dev/null || true
	done
	rmdir "$CG_DIR" 2>/dev/null || true
	CG_MADE=
}

testnet_on_exit cleanup_cgroups
testnet_on_exit cleanup_namespaces
testnet_on_exit cleanup_server
testnet_on_exit cleanup_crgw
testnet_on_exit cleanup_peers
testnet_on_exit cleanup_gen

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

# CPU time from schedstat (nanoseconds on the CPU, exact); idle from /proc/stat (exact on a tickless kernel).
# cpu_ns PID...: sets NS to the CPU time of all threads of the PIDs.
cpu_ns() {
	local f ns rest p
	NS=0
	for p in "$@"; do
		for f in /proc/"$p"/task/*/schedstat; do
			{ read -r ns rest <"$f"; } 2>/dev/null || continue
			NS=$((NS + ns))
		done
	done
}

# cgroup_cpu_ns DIR: sets NS to the CPU time of the cgroup DIR and its descendants (0 if it is gone).
cgroup_cpu_ns() {
	local key val
	NS=0
	if [[ $CG_FILE == cpuacct.usage ]]; then
		{ read -r NS <"$1/$CG_FILE"; } 2>/dev/null || NS=0
	else
		while read -r key val; do
			if [[ $key == usage_usec ]]; then
				NS=$((val * 1000))
				break
			fi
		done 2>/dev/null <"$1/$CG_FILE"
	fi
}

# proxy_cpu_ns PROXY PID...: sets NS to the proxy's CPU time, from its cgroup, or the PIDs' live threads.
# crgw makes its sandboxes' cgroups beneath its own (limits.cgroup, "crgw"), and crgw's client runs in its
# sandbox: that subtree's time is the client's, not the proxy's, and is left out.
proxy_cpu_ns() {
	local own
	if [[ -n $CG_MADE ]]; then
		cgroup_cpu_ns "$CG_DIR/$1"
		if [[ $1 == crgw ]]; then
			own=$NS
			cgroup_cpu_ns "$CG_DIR/$1/crgw"
			NS=$((own - NS))
		fi
		return 0
	fi
	shift
	cpu_ns "$@"
}

# snap PROXY PID...: sets SNAP_US, SNAP_IDLE and SNAP_IRQ (ticks, all CPUs: idle, and the tick-sampled time
# in interrupts and softirqs), SNAP_PX, SNAP_SRV, SNAP_DNS (the test network's knot), SNAP_KSOFT (ns).
snap() {
	local key a b c d e f g rest
	SNAP_US=${EPOCHREALTIME/./}
	while read -r key a b c d e f g rest; do
		if [[ $key == cpu ]]; then
			SNAP_IDLE=$((d + e))
			SNAP_IRQ=$((f + g))
			break
		fi
	done </proc/stat
	proxy_cpu_ns "$@"
	SNAP_PX=$NS
	cpu_ns "$SRV_PID"
	SNAP_SRV=$NS
	cpu_ns "$KNOT_PID"
	SNAP_DNS=$NS
	cpu_ns "${KSOFTIRQD[@]}"
	SNAP_KSOFT=$NS
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
		((i % 6)) || note "machine busy (${pct}% of ${NCPU} CPUs); waiting for it to settle"
		pause 4
	done
	note "machine still busy after $QUIET_TRIES checks; measuring anyway (runs may be marked disturbed)"
}

# proc_tree PID: PID and all its descendants (Squid's kids), one per line.
proc_tree() {
	local -A kids=()
	local f line rest pid ppid
	local -a queue=("$1") fields
	for f in /proc/[0-9]*/stat; do
		{ read -r line <"$f"; } 2>/dev/null || continue
		pid=${line%% *}
		rest=${line##*) }
		read -r -a fields <<<"$rest"
		ppid=${fields[1]}
		kids[$ppid]+="$pid "
	done
	while ((${#queue[@]} > 0)); do
		pid=${queue[0]}
		queue=("${queue[@]:1}")
		[[ -d /proc/$pid ]] || continue
		echo "$pid"
		# shellcheck disable=SC2206 # a list of PIDs
		queue+=(${kids[$pid]:-})
	done
}

rss_kib() { # rss_kib PID...: the sum of VmRSS
	local p key val sum=0
	for p in "$@"; do
		while read -r key val _; do
			if [[ $key == VmRSS: ]]; then
				sum=$((sum + val))
				break
			fi
		done 2>/dev/null <"/proc/$p/status" || true
	done
	echo "$sum"
}

# ---- the upstream servers, the namespaces, the proxies ---------------------------------------------

make_cgroups() {
	local p
	[[ -n $CG_DIR ]] || return 0
	if ! mkdir "$CG_DIR" 2>/dev/null; then
		note "cannot make $CG_DIR: proxy CPU comes from live threads only (misses threads that end)"
		CG_DIR=
		return 0
	fi
	CG_MADE=1
	for p in $PROXIES; do mkdir "$CG_DIR/$p"; done
}

# in_cgroup PROXY CMD...: runs CMD (exec, same PID) inside PROXY's cgroup, so that every thread and process it
# ever makes is counted there.
in_cgroup() {
	local proxy=$1
	shift
	if [[ -z $CG_MADE ]]; then
		exec "$@"
	fi
	echo "$BASHPID" >"$CG_DIR/$proxy/cgroup.procs"
	exec "$@"
}

start_server() {
	local i
	# Bounded lifetime: even a server this script failed to stop goes away on its own.
	ip netns exec "$TN_NS" "$PB" serve --listen "$TN_WEB1" --ports "$P_SRC,$P_PING,$P_HTTP,$P_HOLD" \
		--threads 2 --lifetime 3600 </dev/null >"$STATE/serve.log" 2>&1 &
	SRV_PID=$!
	for ((i = 0; i < 50; i++)); do
		# shellcheck disable=SC2016 # for the inner shell
		if [[ $(testnet_exec timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2" && head -c 1 <&3' _ "$TN_WEB1" "$P_HOLD" 2>/dev/null) == H ]]; then
			return 0
		fi
		kill -0 "$SRV_PID" 2>/dev/null || die "proxy_bench serve exited: $(cat "$STATE/serve.log")"
		pause 0.1
	done
	die "proxy_bench serve did not answer on $TN_WEB1:$P_HOLD"
}

make_namespaces() {
	ip netns add "$PX_NS"
	PX_CREATED=1
	ip netns add "$CLI_NS"
	CLI_CREATED=1
	# `ip netns exec` mounts these over /etc: the peers resolve through the test network's knot, never the
	# machine's resolver, and see no host names of the machine.
	mkdir -p "/etc/netns/$PX_NS"
	printf 'nameserver %s\noptions timeout:1 attempts:2\n' "$TN_DNS" >"/etc/netns/$PX_NS/resolv.conf"
	printf '127.0.0.1 localhost\n' >"/etc/netns/$PX_NS/hosts"
	for ns in "$PX_NS" "$CLI_NS"; do
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
		ip -n "$ns" link set lo up
	done
	# client <-> proxy namespace
	ip -n "$PX_NS" link add cli0 type veth peer name eth0 netns "$CLI_NS"
	ip -n "$PX_NS" addr add "$PX_ADDR/30" dev cli0
	ip -n "$CLI_NS" addr add "$CLI_ADDR/30" dev eth0
	ip -n "$PX_NS" link set cli0 up
	ip -n "$CLI_NS" link set eth0 up
	# proxy namespace <-> the test network (the upstream servers and knot)
	ip -n "$TN_NS" link add "$TNPX_IF" type veth peer name up0 netns "$PX_NS"
	ip -n "$TN_NS" addr add "$TNPX_ADDR/30" dev "$TNPX_IF"
	ip -n "$PX_NS" addr add "$PXUP_ADDR/30" dev up0
	ip -n "$TN_NS" link set "$TNPX_IF" up
	ip -n "$PX_NS" link set up0 up
	ip -n "$PX_NS" route add "$TN_NET" via "$TNPX_ADDR" dev up0
}

# await_port PROXY ADDR PORT: until something accepts on ADDR:PORT in the client namespace, for up to 10 s.
await_port() {
	local i
	for ((i = 0; i < 100; i++)); do
		# shellcheck disable=SC2016 # for the inner shell
		ip netns exec "$CLI_NS" timeout 1 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$2" "$3" 2>/dev/null && return 0
		kill -0 "${PID[$1]}" 2>/dev/null || die "$1 exited: $(tail -n 5 "$STATE/$1/"*.log 2>/dev/null)"
		pause 0.1
	done
	die "$1 does not accept on $2:$3 (logs: $STATE/$1)"
}

start_crgw() {
	local i
	mkdir -p "$STATE/crgw/state" "$STATE/crgw/policy"
	(in_cgroup crgw "$CRGW" --workers 2 --pool 10.201.2.0/24 --upstream-dns "$TN_DNS" \
		--set "state_dir=$STATE/crgw/state" --set nftables.table=crgw_pbench --set interfaces.prefix=cgpb \
		--set nftables.nflog_group=4245 --set transparent.http_port=15280 --set transparent.tcp_port=15643 \
		--set proxy.max_tunnels_per_sandbox=100000 --set log_level=warn \
		--set "enforcement=${CRGW_BENCH_ENFORCEMENT:-both}" \
		--set audit.max_bytes=33554432 --set audit.keep=1 \
		--control "$SOCK" --audit-log "$STATE/crgw/audit.log") </dev/null 2>>"$STATE/crgw/crgw.log" &
	CRGW_PID=$!
	for ((i = 0; i < 100; i++)); do
		"$CTL" --control "$SOCK" stats >/dev/null 2>&1 && break
		kill -0 "$CRGW_PID" 2>/dev/null || die "crgw exited: $(tail -3 "$STATE/crgw/crgw.log")"
		pause 0.1
	done
	((i < 100)) || die "crgw did not answer on $SOCK within 10 s"
	cat >"$STATE/crgw/policy/cleanroom.yaml" <<EOF
version: 1
sandbox:
  network:
    default: deny
    allow:
      - host: "**.bench.test"
        ports: [$P_SRC, $P_PING, $P_HTTP, $P_HOLD]
EOF
	# Without --rm the sandbox stays up after `true`; the creation event is on stderr.
	timeout 30 "$CTL" --control "$SOCK" run --policy "$STATE/crgw/policy" --json -- true \
		</dev/null >/dev/null 2>"$STATE/crgw/created.json" || die "crgw-ctl run failed: $(cat "$STATE/crgw/created.json")"
	SB=$(jq -r 'select(.event == "sandbox_created") | .sandbox_id' "$STATE/crgw/created.json")
	SB_GW=$(jq -r 'select(.event == "sandbox_created") | .gateway' "$STATE/crgw/created.json")
	[[ $SB =~ ^sbx- && $SB_GW =~ ^[0-9.]+$ ]] || die "no sandbox in $STATE/crgw/created.json"
	SB_HOLDER=$("$CTL" --control "$SOCK" sandbox show --json "$SB" | jq -r '.holder_pid // empty')
	[[ -z $SB_HOLDER ]] || SB_HOLDER_START=$(start_time "$SB_HOLDER")
	PID[crgw]=$CRGW_PID
}

start_squid() {
	local d=$STATE/squid
	mkdir -p "$d"
	cat >"$d/squid.conf" <<EOF
# Generated by conformance/bench/proxy-bench.sh: a forward and CONNECT proxy for the benchmark client only.
http_port $PX_ADDR:$SQUID_PORT
# SMP, two workers: the same number of cores crgw and HAProxy use (a coordinator process comes with it).
workers 2
pid_filename $d/squid.pid
cache_log $d/cache.log
access_log none
cache_store_log none
logfile_rotate 0
cache deny all
cache_mem 8 MB
dns_nameservers $TN_DNS
hosts_file none
acl bench_client src $CLI_ADDR/32
http_access allow bench_client
http_access deny all
max_filedescriptors $(ulimit -n)
coredump_dir $d
shutdown_lifetime 0 seconds
pinger_enable off
visible_hostname crgw-proxy-bench
EOF
	chown -R proxy: "$d"
	# --foreground: the master stays this script's child (and its PID), its kids below it.
	(in_cgroup squid ip netns exec "$PX_NS" squid --foreground -n "$SQUID_SERVICE" -f "$d/squid.conf") \
		</dev/null >"$d/squid.log" 2>&1 &
	PID[squid]=$!
	await_port squid "$PX_ADDR" "$SQUID_PORT"
}

start_tinyproxy() {
	local d=$STATE/tinyproxy
	mkdir -p "$d"
	cat >"$d/tinyproxy.conf" <<EOF
# Generated by conformance/bench/proxy-bench.sh. No ConnectPort line: CONNECT to any port.
User nobody
Group nogroup
Port $TINY_PORT
Listen $PX_ADDR
Timeout 600
LogLevel Error
MaxClients 4096
Allow $CLI_ADDR
DisableViaHeader Yes
EOF
	(in_cgroup tinyproxy ip netns exec "$PX_NS" tinyproxy -d -c "$d/tinyproxy.conf") \
		</dev/null >"$d/tinyproxy.log" 2>&1 &
	PID[tinyproxy]=$!
	await_port tinyproxy "$PX_ADDR" "$TINY_PORT"
}

start_haproxy() {
	local d=$STATE/haproxy
	mkdir -p "$d"
	# maxconn: 2 descriptors per connection must fit in ulimit -n, or HAProxy refuses to start.
	cat >"$d/haproxy.cfg" <<EOF
# Generated by conformance/bench/proxy-bench.sh.
global
	nbthread 2
	maxconn $(($(ulimit -n) / 2 - 1000))

# The forward listener resolves Host names here, through the test network's knot, and caches them.
resolvers bench
	nameserver knot $TN_DNS:53
	accepted_payload_size 1232
	hold valid 300s
	timeout resolve 1s
	timeout retry 1s
	resolve_retries 3

defaults
	timeout connect 5s
	timeout client 10m
	timeout server 10m
	timeout tunnel 10m

# TCP mode: HAProxy has no CONNECT, so each upstream gets a listener relaying to it (the client uses --tcp).
# Kernel splicing (option splice-auto) is left off: here it cut bulk throughput to less than half.
listen tcp_source
	mode tcp
	bind $PX_ADDR:$HAP_SRC
	server up $TN_WEB1:$P_SRC

listen tcp_ping
	mode tcp
	bind $PX_ADDR:$HAP_PING
	server up $TN_WEB1:$P_PING

listen tcp_hold
	mode tcp
	bind $PX_ADDR:$HAP_HOLD
	server up $TN_WEB1:$P_HOLD

# HTTP mode as a forward proxy for absolute-URI requests: the destination comes from the Host header
# (which HAProxy sets from the absolute URI's authority), resolved by do-resolve, applied with set-dst and
# set-dst-port to a server whose address 0.0.0.0:0 means "the connection's destination".
listen http_forward
	mode http
	bind $PX_ADDR:$HAP_HTTP
	http-request set-var(txn.fhost) req.hdr(host),field(1,:)
	http-request set-var(txn.fport) req.hdr(host),field(2,:)
	http-request do-resolve(txn.dstip,bench,ipv4) var(txn.fhost)
	http-request deny deny_status 502 unless { var(txn.dstip) -m found }
	http-request set-dst var(txn.dstip)
	http-request set-dst-port var(txn.fport)
	server forward 0.0.0.0:0
EOF
	haproxy -c -q -f "$d/haproxy.cfg" || die "HAProxy rejects $d/haproxy.cfg"
	(in_cgroup haproxy ip netns exec "$PX_NS" haproxy -db -f "$d/haproxy.cfg") </dev/null >"$d/haproxy.log" 2>&1 &
	PID[haproxy]=$!
	await_port haproxy "$PX_ADDR" "$HAP_HTTP"
}

start_splice() {
	mkdir -p "$STATE/splice"
	(in_cgroup splice ip netns exec "$PX_NS" "$RELAY" --listen "$PX_ADDR:$RELAY_PORT" --threads 2 --lifetime 3600) \
		</dev/null >"$STATE/splice/splice.log" 2>&1 &
	PID[splice]=$!
	await_port splice "$PX_ADDR" "$RELAY_PORT"
}

start_sockmap() {
	mkdir -p "$STATE/sockmap"
	(in_cgroup sockmap ip netns exec "$PX_NS" "$RELAY" --listen "$PX_ADDR:$SOCKMAP_PORT" --threads 2 --lifetime 3600 \
		--sockmap) </dev/null >"$STATE/sockmap/sockmap.log" 2>&1 &
	PID[sockmap]=$!
	await_port sockmap "$PX_ADDR" "$SOCKMAP_PORT"
}

# ---- one measurement -------------------------------------------------------------------------------

# client PROXY TEST: sets CMD to the client command line for PROXY and TEST (bulk, setup, http, idle),
# without the options that set the amount of work. Returns 1 when PROXY has no such test.
client() {
	local proxy=$1 test=$2 port target
	case $test in
	bulk) port=$P_SRC ;;
	setup) port=$P_PING ;;
	idle) port=$P_HOLD ;;
	*) port=$P_HTTP ;;
	esac
	if [[ $proxy == crgw ]]; then
		CMD=("$CTL" --control "$SOCK" exec "$SB" -- "$PB" "$test")
	else
		CMD=(ip netns exec "$CLI_NS" "$PB" "$test")
	fi
	if [[ $test == http ]]; then
		case $proxy in
		crgw) CMD+=(--proxy "$SB_GW:3128") ;;
		squid) CMD+=(--proxy "$PX_ADDR:$SQUID_PORT") ;;
		tinyproxy) CMD+=(--proxy "$PX_ADDR:$TINY_PORT") ;;
		haproxy) CMD+=(--proxy "$PX_ADDR:$HAP_HTTP") ;;
		*) return 1 ;;
		esac
		CMD+=(--url "http://$NAME:$port/bench")
	else
		target=$NAME:$port
		case $proxy in
		crgw) CMD+=(--proxy "$SB_GW:3128" --connect "$target") ;;
		squid) CMD+=(--proxy "$PX_ADDR:$SQUID_PORT" --connect "$target") ;;
		tinyproxy) CMD+=(--proxy "$PX_ADDR:$TINY_PORT" --connect "$target") ;;
		haproxy)
			case $test in
			bulk) CMD+=(--proxy "$PX_ADDR:$HAP_SRC" --tcp) ;;
			setup) CMD+=(--proxy "$PX_ADDR:$HAP_PING" --tcp) ;;
			*) CMD+=(--proxy "$PX_ADDR:$HAP_HOLD" --tcp) ;;
			esac
			;;
		splice) CMD+=(--proxy "$PX_ADDR:$RELAY_PORT" --connect "$TN_WEB1:$port") ;;
		sockmap) CMD+=(--proxy "$PX_ADDR:$SOCKMAP_PORT" --connect "$TN_WEB1:$port") ;;
		esac
	fi
	CMD+=(--json --label "$proxy")
}

# warm PROXY: a few tunnels and requests first, so DNS caches and connection pools are filled; not recorded.
warm() {
	local proxy=$1 t
	for t in setup http; do
		client "$proxy" "$t" || continue
		"${CMD[@]}" --concurrency 4 --warmup 0 --duration 0.5 >"$STATE/runs/$proxy-warm-$t.json" 2>&1 || true
	done
	client "$proxy" bulk
	"${CMD[@]}" --bytes $((64 << 20)) >"$STATE/runs/$proxy-warm-bulk.json" 2>&1 || true
}

# measure PROXY TEST CONC ROUND: appends one JSON line to RESULTS (the client's result plus CPU figures).
measure() {
	local proxy=$1 test=$2 conc=$3 round=$4 attempt out rc win_s other
	local -a pids shape=()
	local s_us s_idle s_irq s_px s_srv s_dns s_ksoft
	client "$proxy" "$test" || return 0
	mapfile -t pids < <(proc_tree "${PID[$proxy]}")
	if [[ $test == bulk ]]; then
		shape=(--bytes "$BULK_BYTES" --timeout-ms 10000)
	else
		shape=(--concurrency "$conc" --warmup "$WARMUP" --duration "$DURATION")
		((conc == 1)) || shape+=(--threads "$CLIENT_THREADS")
	fi
	for ((attempt = 1; attempt <= MAX_ATTEMPTS; attempt++)); do
		out=$STATE/runs/$proxy-$test-c$conc-r$round-a$attempt.json
		rc=0
		if [[ $test == bulk ]]; then
			snap "$proxy" "${pids[@]}"
			s_us=$SNAP_US s_idle=$SNAP_IDLE s_irq=$SNAP_IRQ s_px=$SNAP_PX s_srv=$SNAP_SRV s_dns=$SNAP_DNS
			s_ksoft=$SNAP_KSOFT
			"${CMD[@]}" "${shape[@]}" >"$out" 2>"$out.err" || rc=$?
			snap "$proxy" "${pids[@]}"
		else
			"${CMD[@]}" "${shape[@]}" >"$out" 2>"$out.err" &
			GEN_PID=$!
			# The window: from the end of the client's warm-up to the end of its measurement (give or take
			# the few milliseconds it takes to start, more through crgw-ctl exec).
			pause "$WARMUP"
			snap "$proxy" "${pids[@]}"
			s_us=$SNAP_US s_idle=$SNAP_IDLE s_irq=$SNAP_IRQ s_px=$SNAP_PX s_srv=$SNAP_SRV s_dns=$SNAP_DNS
			s_ksoft=$SNAP_KSOFT
			local perf_pid=
			if [[ -n ${CRGW_BENCH_PERF:-} && $proxy == crgw ]]; then
				# Profiling, not measuring: the figures of this window include perf's own cost.
				perf record -q -g -o "$CRGW_BENCH_PERF/crgw-$test-c$conc-r$round.data" \
					-p "$(IFS=,; echo "${pids[*]}")" -- sleep "$DURATION" >/dev/null 2>&1 &
				perf_pid=$!
				# and how many of each system call it made (divide by the operations in the result)
				perf stat -x, -o "$CRGW_BENCH_PERF/crgw-$test-c$conc-r$round.syscalls" \
					-e "$(printf 'syscalls:sys_enter_%s,' $PERF_SYSCALLS | sed 's/,$//')" \
					-p "$(IFS=,; echo "${pids[*]}")" -- sleep "$DURATION" >/dev/null 2>&1 &
				perf_pid+=" $!"
			fi
			pause "$DURATION"
			snap "$proxy" "${pids[@]}"
			# shellcheck disable=SC2086 # two PIDs
			[[ -z $perf_pid ]] || wait $perf_pid || true
			wait "$GEN_PID" || rc=$?
			GEN_PID=
		fi
		if ! jq -e '.mode' "$out" >/dev/null 2>&1; then
			note "$proxy $test c$conc: the client printed no result (status $rc): $(head -c 300 "$out.err" "$out")"
			jq -n -c --arg proxy "$proxy" --arg test "$test" --argjson conc "$conc" --argjson round "$round" \
				--arg err "$(head -c 200 "$out.err")" \
				'{proxy: $proxy, test: $test, concurrency: $conc, round: $round, ok: false, error: $err, completed: 0, last_status: 0}' \
				>>"$RESULTS"
			return 0
		fi
		# Bulk: proxy CPU over the transfer time the client measured (the proxy is idle before and after).
		# Others: CPU in % of one CPU over the snapped window; other = busy - proxy - upstream - client -
		# knot (tinyproxy looks the name up for every request) - ksoftirqd: someone else's work. Softirq work (the veth receive path) is in the task times of whoever
		# it interrupted; irq_pct, /proc/stat's tick-sampled irq + softirq share, is kept for information only
		# (subtracting it as well counts that work twice).
		win_s=$((SNAP_US - s_us))
		jq -c --arg proxy "$proxy" --arg test "$test" --argjson conc "$conc" --argjson round "$round" \
			--argjson attempt "$attempt" --argjson rc "$rc" --argjson win_us "$win_s" --argjson tick "$TICK" \
			--argjson ncpu "$NCPU" --argjson idle $((SNAP_IDLE - s_idle)) --argjson irq $((SNAP_IRQ - s_irq)) \
			--argjson px $((SNAP_PX - s_px)) \
			--argjson srv $((SNAP_SRV - s_srv)) --argjson dns $((SNAP_DNS - s_dns)) \
			--argjson ksoft $((SNAP_KSOFT - s_ksoft)) '
			def r1: . * 10 | round / 10;
			(if $test == "bulk" then (.seconds * 1e6) else $win_us end) as $w
			| . + {proxy: $proxy, test: $test, concurrency: (if $test == "bulk" then null else $conc end),
			       round: $round, attempt: $attempt, exit: $rc,
			       proxy_cpu_pct: (if $w > 0 then $px / 1e3 / $w * 100 | r1 else null end),
			       server_cpu_pct: ($srv / 1e3 / $win_us * 100 | r1),
			       dns_cpu_pct: ($dns / 1e3 / $win_us * 100 | r1),
			       ksoftirqd_cpu_pct: ($ksoft / 1e3 / $win_us * 100 | r1),
			       irq_pct: (($irq / $tick) / ($win_us / 1e6) * 100 | r1),
			       busy_pct: ($ncpu * 100 - ($idle / $tick) / ($win_us / 1e6) * 100 | r1)}
			| .other_cpu_pct = (if $test == "bulk" then 0 else
				(.busy_pct - .proxy_cpu_pct - .server_cpu_pct - .gen_cpu_pct - .dns_cpu_pct - .ksoftirqd_cpu_pct) | r1 end)
			' "$out" >"$out.full"
		other=$(jq '.other_cpu_pct | floor' "$out.full")
		if ((other <= OTHER_PCT)) || ((attempt == MAX_ATTEMPTS)) || ! jq -e '.ok' "$out.full" >/dev/null; then
			jq -c --argjson d "$((other > OTHER_PCT ? 1 : 0))" '. + {disturbed: ($d == 1)}' "$out.full" >>"$RESULTS"
			break
		fi
		note "$proxy $test c$conc round $round: ${other}% of a CPU went to other processes; measuring again"
		wait_quiet
	done
	jq -r '"  \(.proxy) \(.test) \(if .concurrency then "c\(.concurrency) " else "" end)round \(.round): " +
		(if .test == "bulk" then "\(.mb_s) MB/s" else "\(.rate | round)/s p50 \(.p50_us) us p99 \(.p99_us) us" end) +
		", proxy CPU \(.proxy_cpu_pct)%, client \(.gen_cpu_pct)%, upstream \(.server_cpu_pct // 0)%, knot \(.dns_cpu_pct // 0)%, irq \(.irq_pct // 0)%, other \(.other_cpu_pct)%" +
		(if .ok then "" else " FAILED (\(.error // .last_error) \(.last_status // ""))" end)' <(tail -n 1 "$RESULTS") >&2
}

# idle PROXY ROUND: RSS of the proxy's processes before and while IDLE tunnels are open and idle.
measure_idle() {
	local proxy=$1 round=$2 out i rss0 rss1 rc=0
	local -a pids
	client "$proxy" idle || return 0
	out=$STATE/runs/$proxy-idle-r$round.json
	mapfile -t pids < <(proc_tree "${PID[$proxy]}")
	rss0=$(rss_kib "${pids[@]}")
	"${CMD[@]}" --count "$IDLE" --parallel 64 --hold "$HOLD" --max-seconds 120 >"$out" 2>"$out.err" &
	GEN_PID=$!
	for ((i = 0; i < 1200; i++)); do
		grep -q '"phase":"ready"' "$out" 2>/dev/null && break
		kill -0 "$GEN_PID" 2>/dev/null || break
		pause 0.1
	done
	# A moment for the proxy to finish what it does per tunnel after the upstream's first byte.
	pause 0.5
	mapfile -t pids < <(proc_tree "${PID[$proxy]}")
	rss1=$(rss_kib "${pids[@]}")
	wait "$GEN_PID" || rc=$?
	GEN_PID=
	if ! jq -e 'select(.phase == "done")' "$out" >/dev/null 2>&1; then
		note "$proxy idle: the client printed no result (status $rc): $(head -c 300 "$out.err" "$out")"
		jq -n -c --arg proxy "$proxy" --argjson round "$round" --arg err "$(head -c 200 "$out.err")" \
			'{proxy: $proxy, test: "idle", round: $round, ok: false, error: $err, completed: 0, last_status: 0}' \
			>>"$RESULTS"
		return 0
	fi
	jq -s -c --arg proxy "$proxy" --argjson round "$round" --argjson rss0 "$rss0" --argjson rss1 "$rss1" '
		(map(select(.phase == "ready"))[0]) as $r | (map(select(.phase == "done"))[0]) as $d
		| $d + {proxy: $proxy, test: "idle", round: $round, last_status: $r.last_status, last_error: $r.last_error,
		        setup_s: $r.setup_s, rss_before_kib: $rss0, rss_after_kib: $rss1, disturbed: false,
		        kib_per_tunnel: (if $d.established > 0 then ($rss1 - $rss0) / $d.established else null end)}
		' "$out" >>"$RESULTS"
	jq -r '"  \(.proxy) idle round \(.round): \(.established) tunnels, RSS \(.rss_before_kib) -> \(.rss_after_kib) KiB, \(.kib_per_tunnel // 0 | . * 100 | round / 100) KiB per tunnel, dropped \(.dropped)" + (if .ok then "" else " FAILED" end)' \
		<(tail -n 1 "$RESULTS") >&2
	# Let the proxy close the tunnels before anything else is measured.
	pause 1
}

# ---- the run ---------------------------------------------------------------------------------------

note "state and logs: $STATE"
testnet_up "$STATE/testnet" || die "the test network did not come up"
# knot's CPU is accounted for separately (the peers that resolve per request make it work).
KNOT_PID=
[[ ! -f $TN_STATE/pids/knotd.pid ]] || read -r KNOT_PID _ <"$TN_STATE/pids/knotd.pid" || true
start_server
make_namespaces
make_cgroups
{
	printf '# crgw proxy vs peers, %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf '# machine: %s, %s CPUs, kernel %s; crgw %s (%s)\n' \
		"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" "$NCPU" "$(uname -r)" \
		"$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')" \
		"$(meson introspect --buildoptions "$BUILD" 2>/dev/null |
			jq -r 'map(select(.name == "buildtype"))[0].value // "?"' 2>/dev/null || echo '?')"
	printf '# peers: %s; %s; %s\n' "$(squid -v | sed -n 's/^Squid Cache: Version /Squid /p' | head -n 1)" \
		"$(haproxy -v | head -n 1 | cut -d' ' -f1-3)" "tinyproxy $(tinyproxy -v 2>&1 | sed -n 's/^tinyproxy //p' | head -n 1)"
	printf '# %s round(s); bulk %s bytes; setup/forward: warm-up %s s + %s s measured, concurrency 1 and %s (%s client thread(s)); %s idle tunnels held %s s\n' \
		"$ROUNDS" "$BULK_BYTES" "$WARMUP" "$DURATION" "$CONC_HI" "$CLIENT_THREADS" "$IDLE" "$HOLD"
	printf '# proxy CPU from %s\n' "$([[ -n $CG_MADE ]] && echo "a cgroup per proxy ($CG_FILE)" || echo "the schedstat of live threads")"
} >"$STATE/meta.txt"
for p in $PROXIES; do
	case $p in
	crgw) start_crgw ;;
	squid) start_squid ;;
	tinyproxy) start_tinyproxy ;;
	haproxy) start_haproxy ;;
	splice) start_splice ;;
	sockmap) start_sockmap ;;
	esac
done
for p in $PROXIES; do warm "$p"; done
note "up: $(for p in $PROXIES; do printf '%s PID %s; ' "$p" "${PID[$p]}"; done)crgw sandbox $SB (gateway $SB_GW)"

read -r -a LIST <<<"$PROXIES"
for ((round = 1; round <= ROUNDS; round++)); do
	# Rotate the order, so that no proxy always runs first or right after the same other one.
	for ((k = 0; k < ${#LIST[@]}; k++)); do
		proxy=${LIST[(k + round - 1) % ${#LIST[@]}]}
		wait_quiet
		measure "$proxy" bulk 0 "$round"
		measure "$proxy" setup 1 "$round"
		measure "$proxy" setup "$CONC_HI" "$round"
		measure "$proxy" http "$CONC_HI" "$round"
		# Memory once, in the first round: freed tunnels stay in a process's RSS (its allocator keeps the
		# memory), so a second batch of idle tunnels would mostly reuse the first one's and read as near 0.
		((round > 1)) || measure_idle "$proxy" "$round"
	done
done

# ---- the table -------------------------------------------------------------------------------------

print_table "$RESULTS" >"$STATE/table.md"
cat "$STATE/table.md"
[[ -z $OUT ]] || cp "$STATE/table.md" "$OUT"
note "raw results: $RESULTS"
