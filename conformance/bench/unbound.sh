# SPDX-License-Identifier: Apache-2.0
# Bash functions that run Unbound in a test network namespace as the DNS peer the benchmark compares against.
#
# Source this file, then:
#   bench_unbound_start NETNS ADDR[:PORT] STATE_DIR UPSTREAM_ADDR[:PORT]   # returns 0 once Unbound answers
#   bench_unbound_stop                                                     # stops that Unbound only
# The PID is kept in BENCH_UNBOUND_PID and STATE_DIR/bench-unbound.pid. One Unbound per sourcing shell.

BENCH_UNBOUND_PID=
BENCH_UNBOUND_WAIT_S=${BENCH_UNBOUND_WAIT_S:-10}

# "A.B.C.D" or "A.B.C.D:PORT" -> "A.B.C.D@PORT" (Unbound's spelling); fails on anything else.
_bench_unbound_addr() {
	local addr=${1%%:*} port=53
	[[ $1 == *:* ]] && port=${1##*:}
	[[ $addr =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ && $port =~ ^[0-9]{1,5}$ ]] || return 1
	((port >= 1 && port <= 65535)) || return 1
	printf '%s@%s\n' "$addr" "$port"
}

bench_unbound_start() {
	local netns=$1 listen=$2 state=$3 upstream=$4 laddr up conf i
	if [[ $# -ne 4 || -z $netns || -z $state ]]; then
		echo "usage: bench_unbound_start NETNS ADDR[:PORT] STATE_DIR UPSTREAM_ADDR[:PORT]" >&2
		return 2
	fi
	if [[ -n $BENCH_UNBOUND_PID ]]; then
		echo "bench_unbound_start: already running as PID $BENCH_UNBOUND_PID" >&2
		return 1
	fi
	laddr=$(_bench_unbound_addr "$listen") || { echo "bench_unbound_start: bad ADDR $listen" >&2; return 2; }
	up=$(_bench_unbound_addr "$upstream") || { echo "bench_unbound_start: bad UPSTREAM $upstream" >&2; return 2; }
	mkdir -p "$state" || return 1
	state=$(cd "$state" && pwd) || return 1
	conf=$state/unbound.conf

	# Everything else in this config is about measuring the cache fairly:
	# - iterator only (no validator): the gateway does not validate either, and test. is unsigned;
	# - caches far larger than any name list the benchmark uses, so every measured query is a cache hit;
	# - 4 MB socket buffers (capped by net.core.rmem_max/wmem_max; Unbound warns and carries on if lower): with
	#   the default 208 KB a few thousand queries in flight overflow the receive queue and read as loss;
	# - slabs = threads, to keep lock contention what a tuned 2-thread Unbound would have;
	# - "." forwarded to the same upstream, so that a stray query for a name outside test. goes to the test
	#   authoritative instead of the real root servers, whatever routes the caller's namespace has. (A
	#   'local-zone: "." refuse' would be simpler but it also refuses test.: nodefault does not exempt it.)
	cat >"$conf" <<EOF || return 1
server:
	verbosity: 1
	num-threads: 2
	so-reuseport: yes
	interface: ${laddr}
	do-ip4: yes
	do-ip6: no
	do-udp: yes
	do-tcp: yes
	access-control: 10.0.0.0/8 allow
	access-control: 203.0.113.0/24 allow
	chroot: ""
	username: ""
	directory: "${state}"
	logfile: "${state}/unbound.log"
	use-syslog: no
	pidfile: "${state}/unbound.pid"
	module-config: "iterator"
	domain-insecure: "test"
	local-zone: "test." nodefault
	msg-cache-size: 64m
	msg-cache-slabs: 2
	rrset-cache-size: 128m
	rrset-cache-slabs: 2
	infra-cache-slabs: 2
	key-cache-slabs: 2
	num-queries-per-thread: 4096
	so-rcvbuf: 4m
	so-sndbuf: 4m
	outgoing-range: 8192
	minimal-responses: yes
	prefetch: no
	harden-referral-path: no
	qname-minimisation: no
	do-not-query-localhost: no

remote-control:
	control-enable: no

forward-zone:
	name: "test."
	forward-addr: ${up}

forward-zone:
	name: "."
	forward-addr: ${up}
EOF
	if ! unbound-checkconf "$conf" >"$state/unbound-checkconf.log" 2>&1; then
		cat "$state/unbound-checkconf.log" >&2
		return 1
	fi

	# ip netns exec execs the command after setns(), so $! is Unbound's own PID.
	ip netns exec "$netns" unbound -d -c "$conf" >>"$state/unbound.stderr" 2>&1 &
	BENCH_UNBOUND_PID=$!
	echo "$BENCH_UNBOUND_PID" >"$state/bench-unbound.pid"

	# Ready means answering: a CHAOS query needs no upstream and no cache. Bounded by BENCH_UNBOUND_WAIT_S.
	for ((i = 0; i < BENCH_UNBOUND_WAIT_S * 5; i++)); do
		if ! kill -0 "$BENCH_UNBOUND_PID" 2>/dev/null; then
			echo "bench_unbound_start: unbound exited; see $state/unbound.log and $state/unbound.stderr" >&2
			wait "$BENCH_UNBOUND_PID" 2>/dev/null
			BENCH_UNBOUND_PID=
			return 1
		fi
		if ip netns exec "$netns" kdig @"${laddr%@*}" -p "${laddr#*@}" +timeout=1 +retry=0 +short \
			version.server CH TXT >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	echo "bench_unbound_start: no answer from ${laddr} within ${BENCH_UNBOUND_WAIT_S}s" >&2
	bench_unbound_stop
	return 1
}

bench_unbound_stop() {
	local pid=$BENCH_UNBOUND_PID i
	[[ -n $pid ]] || return 0
	# Only this PID, and only while it is still our Unbound (not a recycled PID).
	if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == unbound ]]; then
		kill -TERM "$pid" 2>/dev/null
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	BENCH_UNBOUND_PID=
	return 0
}
