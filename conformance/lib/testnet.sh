# SPDX-License-Identifier: Apache-2.0
# The hermetic "mini internet" that crgw's end-to-end tests, README demo and benchmarks run against.
# A bash library: `source conformance/lib/testnet.sh`, then call the functions below. Needs root.
#
# Topology
#
#   root namespace (the host; crgw runs here)          ${TN_PREFIX}-net  (the "internet")
#   ---------------------------------------            ---------------------------------------------
#   ${TN_PREFIX}u  203.0.113.1/24   <---- veth ---->   eth0  203.0.113.53/24  knotd, authoritative for test.
#                  2001:db8:113::1/64                        203.0.113.10/24  HTTP :80, HTTPS :443,
#                                                                             TCP banner/echo :22
#   blackhole 203.0.113.0/24 metric 4000                     203.0.113.11/24  HTTP :80, HTTPS :443
#   blackhole 10.201.0.0/16  metric 4000  (sandbox pool)     203.0.113.30/24  git.test, git2.test: HTTPS :443
#   blackhole 2001:db8::/32  metric 4000                     203.0.113.31/24  reset.git.test: HTTPS :443
#                                                            203.0.113.40/24  api.test: HTTPS :443
#                                                            203.0.113.41/24  badcert.test: HTTPS :443
#                                                            203.0.113.50-52, .54: npm.test, pypi.test,
#                                                              goproxy.test, oci.test: HTTPS :443, only
#                                                              after testnet_registries_up
#                                                            2001:db8:113::10/64  HTTP :80
#                                                            lo up (knotd also on 127.0.0.1:53)
#                                                            no default route (either family)
#
# The root namespace reaches 203.0.113.x through the connected /24 on the veth; the blackholes (added first,
# removed last) catch everything else in those ranges, so no packet for them ever follows the machine's
# default route, even while the veth is being made or taken down. Nothing forwards: crgw proxies, and it is
# the root namespace itself that talks to 203.0.113.x. Global ip_forward is never touched. 10.201.0.0/16 is
# reserved for the sandboxes the gateway makes; the harness only blackholes it. IPv6 works the same way: the
# connected 2001:db8:113::/64 reaches the namespace, the rest of 2001:db8::/32 is blackholed. Names for the
# proxies' IPv6 paths: v6only.test (AAAA 2001:db8:113::10 only), dual.test (203.0.113.10 and
# 2001:db8:113::10), slow6.test (203.0.113.10 and 2001:db8:113::99, where no host answers: a connect there
# hangs until neighbour discovery gives up), allowed.test (AAAA 2001:db8::10: blackholed, fails at once).
# Names for the address checks: AAAA records that carry an IPv4 address, mapped.test (::ffff:127.0.0.1),
# nat64.test (64:ff9b::7f00:1), sixtofour.test (2002:7f00:1::1), teredo.test (client 127.0.0.1),
# mapped-host.test (::ffff:203.0.113.1, the root namespace's own address), mapped-web.test
# (::ffff:203.0.113.10, a web server); mixed.test (A 203.0.113.10, 127.0.0.3 and 127.0.0.4; AAAA
# 2001:db8:113::10 and ::ffff:127.0.0.1: good and loopback addresses in one answer); wide.test (70 A
# records, 203.0.113.100-169, more than a gateway keeps of one answer).
#
# Servers (conformance/lib/testnet_servers.py for HTTP, HTTPS and the banner). HTTP on :80 and HTTPS on :443
# of each web address serve the same directory, STATE_DIR/www/<address>/ (index.html says
# "upstream <address>"; tests drop their own files there), speak HTTP/1.1 with keep-alive, send large files
# with sendfile, and answer /echo (any method) with JSON describing the request as it arrived: method,
# target, version, headers in order, body length and sha256 (see testnet_servers.py).
# TLS: testnet_up makes a throwaway test CA in STATE_DIR/pki (EC P-256, valid one day, name-constrained to
# test. and 203.0.113.0/24; its key ca.key never leaves that directory) and one server certificate it signs
# for every name of the zone, *.test, *.allowed.test, *.bench.test and the addresses .10, .11, .30, .31 and
# .40. Clients get the CA explicitly: curl --cacert "$TN_CA" (the machine's CA variables are cleared,
# below). A sandbox made by crgw-ctl run has a private /tmp and cannot see STATE_DIR: hand it the PEM's
# text instead.
#
# Credentialed upstreams, for mediation's tests. Each one's password or token is random per network.
#   git.test, git2.test (203.0.113.30): lighttpd runs git-http-backend (CGI, as root in the namespace) for
#     git's smart HTTP over TLS, GIT_PROJECT_ROOT=TN_GIT_ROOT (STATE_DIR/git/root), every repository
#     exported, so repositories that tests add there are served too. Every path demands HTTP basic auth
#     as TN_GIT_USER with the password in TN_GIT_PASSWORD_FILE (0600, no newline): 401 without. Pushes
#     work (auth sets REMOTE_USER, which enables receive-pack); protocol v2 works (git-http-backend reads
#     the Git-Protocol header). org/small.git: bare, branch main, five small commits whose ids are the same
#     on every run. Access log: STATE_DIR/log/git-access.log.
#   reset.git.test (203.0.113.31): a TLS reverse proxy (testnet_servers.py) to https://git.test at
#     203.0.113.30, verified with the test CA, that forwards each request with its Authorization and resets
#     the client's connection (RST) after 1 MiB of answer body; /reset-after/N/PATH cuts after N bytes.
#   api.test (203.0.113.40): a JSON API over TLS that wants "Authorization: Bearer $(<TN_API_TOKEN_FILE)"
#     (0600, no newline): /whoami, /echo, /slow?seconds=N, /reset, /redirect?to=URL, /reflect, /session (a
#     session cookie, Set-Cookie and Set-Cookie2, for the right token; 401 without), and under
#     /@hostile/ an npm registry whose packages misbehave by name (oversized and gzip-bombed packuments,
#     tarballs that reset, stall, come up short, do not match, redirect; see testnet_servers.py).
#   badcert.test (203.0.113.41): the same API with a self-signed certificate: verification with the test
#     CA fails.
#
# Registries, for registry mediation: opt-in, started by testnet_registries_up after testnet_up (same
# shell), recorded and stopped like the other servers. Names in the zone and the certificate always; content
# from conformance/lib/testnet_registries.py, the same bytes on every run. Clients run inside the namespace.
#   npm.test (203.0.113.50): verdaccio 6.8.0 (scripts/setup installs it into TN_REGISTRY_CACHE_DIR), HTTPS
#     of its own, uplinks {} (unpublished names are 404). User TN_NPM_USER, token in TN_NPM_TOKEN_FILE
#     (0600), needed to publish. 57 versions of 56 packages: crgw-dep-00..39, @crgw/lib-00..14, crgw-dup
#     1.0.0 and 2.0.0 (nested). The scope @priv/* is readable with a token only (none published here). TN_NPM_PROJECT: package.json and package-lock.json (v3, all 57), the
#     lockfile cached in TN_REGISTRY_CACHE_DIR once npm made it against npm.test.
#   pypi.test (203.0.113.51): lighttpd, static PEP 503 HTML (links with #sha256=) and PEP 691 JSON for a
#     client that asks for it; wheels crgw-alpha 1.0.0, crgw-beta 1.0.0 and 1.1.0, Crgw.Gamma 0.1.0;
#     TN_PYPI_REQUIREMENTS pins three with --hash=sha256:. pip: --index-url "$TN_PYPI_INDEX" --cert "$TN_CA",
#     REQUESTS_CA_BUNDLE unset, PIP_CONFIG_FILE=/dev/null.
#   goproxy.test (203.0.113.52): lighttpd, static GOPROXY tree of goproxy.test/m/a (v1.0.0, v1.1.0) and
#     goproxy.test/m/b (v1.0.0); TN_GO_MAIN: a main module with go.mod and go.sum (h1: hashes). No checksum
#     database here: GOPROXY="$TN_GOPROXY" GONOSUMDB=goproxy.test SSL_CERT_FILE="$TN_CA" (go.sum pins all).
#   oci.test (203.0.113.54, not .53: the DNS server's): docker-registry (distribution 2.8) over TLS, no
#     auth; TN_OCI_IMAGE (oci.test/crgw/hello:1), one layer with /hello.txt, built by umoci (cached layout)
#     and pushed by skopeo on each run. skopeo: --cert-dir "$TN_OCI_CERT_DIR" (holds ca.crt) and --policy.
#   oci-auth.test (203.0.113.55): a second docker-registry over the same storage (read it only), with
#     `auth: token`: every request without a token gets 401 and the challenge Bearer
#     realm="https://api.test/oci/token",service="oci-auth.test". api.test's /oci/token issues the tokens
#     (testnet_servers.py) to TN_OCI_TOKEN_USER (crgw-oci) with the password in TN_OCI_TOKEN_PASSWORD_FILE
#     (0600, no newline), and logs each one it issued to STATE_DIR/secrets/oci-token.log.
#
# Names. TN_PREFIX defaults to "crgwtn<$$ mod 10000>" (at most 14 characters: the veth name must fit in 15).
#   namespace ${TN_PREFIX}-net, root-side veth ${TN_PREFIX}u, namespace-side eth0,
#   /etc/netns/${TN_PREFIX}-net/resolv.conf (so `ip netns exec` programs use 203.0.113.53, never the machine's),
#   /run/crgw-testnet/${TN_PREFIX}.pid: "PID STARTTIME" of the shell that owns the network, then the state dir;
#   knotd's control socket is STATE_DIR/knot/run/knot.sock, or /run/crgw-testnet/${TN_PREFIX}.knot.sock when
#   STATE_DIR is too deep for a unix socket path.
# One network per machine: every instance uses the same addresses, so a second testnet_up waits (up to
# TN_LOCK_WAIT seconds, default 120) until the owner's testnet_down, or until its owner is dead and reaped.
#
# Functions
#   testnet_up STATE_DIR       make the network, start the servers, wait until they answer (1-3 s)
#   testnet_down [--keep-blackhole]
#                              stop what testnet_up started, delete namespace and veth, then the blackholes and
#                              the claim file (kept with --keep-blackhole; a later testnet_down removes them).
#                              Idempotent and quiet.
#   testnet_reap_stale         clean up networks whose owning PID is dead, and crgwtn<N>-net/crgwtn<N>u
#                              objects that have no claim file at all (testnet_up calls it)
#   testnet_trap               trap EXIT/INT/TERM/HUP: run the testnet_on_exit commands, then testnet_down
#   testnet_on_exit CMD...     register a cleanup command (run before testnet_down, last registered first,
#                              in this shell, so `testnet_kill $pid` reaps a child); also calls testnet_trap
#   testnet_exec CMD...        run CMD inside the internet namespace
#   testnet_kill PID...        TERM, wait up to 2 s, KILL, reap: for cleanups of the caller's own processes
#   testnet_kdig ARGS...       kdig @203.0.113.53 +timeout=1 +retry=0 (never the machine's resolver)
#   testnet_git [--anonymous]  print, one per line, the `git -c` options for a client in the root namespace:
#                              the test CA, curloptResolve for git.test, git2.test and reset.git.test, the
#                              machine's credential helpers dropped and, unless --anonymous, a helper that
#                              answers with the test user and password. `git $(testnet_git) clone
#                              https://git.test/org/small.git`. Set GIT_TERMINAL_PROMPT=0 so that an
#                              anonymous 401 fails rather than prompting.
#   testnet_git_big_repo       install org/big.git (a 257 MiB pack, 256 commits) into TN_GIT_ROOT from the
#                              cache in TN_GIT_BIG_CACHE_DIR (default /var/cache/crgw-test), hard-linked
#                              (0.1 s); makes the cache first if it is missing (12-20 s, once per machine)
#   testnet_git_big_cached     true if that cache exists
#   testnet_registries_up      after testnet_up, in the same shell: the four registries above (8-15 s warm;
#                              the first run on a machine also builds the image and the lockfile)
#   testnet_npm DIR ARGS...    npm ARGS in DIR inside the namespace with npm.test, the test CA, the test
#                              user's token and none of the machine's npm configuration
#   testnet_npm_publish NAME VERSION [DEP=RANGE...]
#                              publish one more generated package to npm.test as the test user
# Variables, exported by testnet_up: TN_NS TN_VETH TN_HOST(203.0.113.1) TN_DNS(203.0.113.53)
#   TN_WEB1(203.0.113.10) TN_WEB2(203.0.113.11) TN_HOST6(2001:db8:113::1) TN_WEB6(2001:db8:113::10)
#   TN_POOL(10.201.0.0/16) TN_STATE
#   TN_CA (STATE_DIR/pki/ca.pem, the test CA's certificate)
#   TN_GIT(203.0.113.30) TN_GIT_RESET(203.0.113.31) TN_API(203.0.113.40) TN_BADCERT(203.0.113.41)
#   TN_GIT_ROOT TN_GIT_USER(crgw-tester) TN_GIT_PASSWORD_FILE TN_API_TOKEN_FILE; STATE_DIR/testnet.env
#   holds the same for programs that are not bash. Exported by testnet_registries_up (and appended to
#   testnet.env): TN_NPM_ADDR TN_PYPI_ADDR TN_GOPROXY_ADDR TN_OCI_ADDR TN_NPM_REGISTRY(https://npm.test/)
#   TN_NPM_USER TN_NPM_TOKEN_FILE TN_NPM_PROJECT TN_PYPI_INDEX(https://pypi.test/simple/) TN_PYPI_REQUIREMENTS
#   TN_GOPROXY(https://goproxy.test/) TN_GO_MAIN TN_OCI(oci.test) TN_OCI_IMAGE TN_OCI_CERT_DIR
#   TN_OCI_AUTH(oci-auth.test) TN_OCI_AUTH_ADDR TN_OCI_TOKEN_USER TN_OCI_TOKEN_PASSWORD_FILE; the caches
#   live in TN_REGISTRY_CACHE_DIR (default /var/cache/crgw-test). A script started by the owner may source this library
#   and use testnet_exec and testnet_kdig with the inherited values; only the owner calls testnet_down.
#
# Callers that set their own traps must do so before testnet_trap/testnet_on_exit, or not at all: register
# cleanups with testnet_on_exit instead. A background child started with `&` in a non-interactive shell has
# SIGINT ignored and cannot trap it; TERM works. A trap runs only after the current foreground command ends,
# so wait with `sleep N & wait $!` rather than `sleep N` if the script should react to TERM at once.
# Every function is safe under `set -euo pipefail`.

# shellcheck shell=bash disable=SC2120,SC2119 # testnet_down's only option is optional

# Hermetic environment, set when the library is sourced.
# Proxy variables would send curl and friends to a machine proxy outside the test network.
unset http_proxy https_proxy ftp_proxy all_proxy no_proxy HTTP_PROXY HTTPS_PROXY FTP_PROXY ALL_PROXY NO_PROXY
# The machine points TLS clients at its own CA bundle through these; tests must see only their own CA.
unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE SSL_CERT_FILE SSL_CERT_DIR GIT_SSL_CAINFO NODE_EXTRA_CA_CERTS \
	PIP_CERT PIP_FIND_LINKS NIX_SSL_CERT_FILE AWS_CA_BUNDLE HTTPLIB2_CA_CERTS \
	GRPC_DEFAULT_SSL_ROOTS_FILE_PATH CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE
TN_PREFIX=${TN_PREFIX:-crgwtn$(($$ % 10000))}
TN_LOCK_WAIT=${TN_LOCK_WAIT:-120}
TN_HOST=203.0.113.1
TN_DNS=203.0.113.53
TN_WEB1=203.0.113.10
TN_WEB2=203.0.113.11
TN_HOST6=2001:db8:113::1
TN_WEB6=2001:db8:113::10
TN_GIT=203.0.113.30
TN_GIT_RESET=203.0.113.31
TN_API=203.0.113.40
TN_BADCERT=203.0.113.41
# The registries of testnet_registries_up (not started by testnet_up). oci.test is not at .53: that is the
# DNS server's address, and a policy that names oci.test must not also cover the resolver.
TN_NPM_ADDR=203.0.113.50
TN_PYPI_ADDR=203.0.113.51
TN_GOPROXY_ADDR=203.0.113.52
TN_OCI_ADDR=203.0.113.54
TN_OCI_AUTH_ADDR=203.0.113.55
TN_GIT_USER=crgw-tester
TN_NET=203.0.113.0/24
TN_POOL=10.201.0.0/16
# Inherited values let a script started by the owner use testnet_exec without owning the network.
TN_NS=${TN_NS:-}
TN_VETH=${TN_VETH:-}
TN_STATE=${TN_STATE:-}
# The test CA (see the header); clients get it explicitly, never through the variables cleared above.
TN_CA=${TN_CA:-}
# The credentialed upstreams' files (see the header), inherited like the rest.
TN_GIT_ROOT=${TN_GIT_ROOT:-}
TN_GIT_PASSWORD_FILE=${TN_GIT_PASSWORD_FILE:-}
TN_API_TOKEN_FILE=${TN_API_TOKEN_FILE:-}
# The large repository's cache, shared by every run on the machine (testnet_git_big_repo). Bump the number
# in TN__BIG_SPEC when testnet_bigrepo.py's output changes: the name carries a hash of the spec.
TN_GIT_BIG_CACHE_DIR=${TN_GIT_BIG_CACHE_DIR:-/var/cache/crgw-test}
TN__BIG_SPEC="1 commits=256 blob=1048576 seed=crgw-big-1"

TN__LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TN__GIT_BACKEND=/usr/lib/git-core/git-http-backend
TN__RUN_DIR=/run/crgw-testnet
TN__METRIC=4000
TN__BLACKHOLES4=("$TN_NET" "$TN_POOL")
TN__BLACKHOLES6=(2001:db8::/32)
TN__UP=
TN__CLEANED=
TN__TRAPPED=
TN__ON_EXIT=()
if [ -x /usr/bin/python3 ]; then TN__PYTHON=/usr/bin/python3; else TN__PYTHON=python3; fi

testnet__err() {
	printf 'testnet: %s\n' "$*" >&2
}

# Prefixes become interface, namespace and file names: keep them to [a-z0-9] and short enough that
# "${prefix}u" fits IFNAMSIZ (15 characters).
testnet__valid_prefix() {
	[[ $1 =~ ^[a-z][a-z0-9]{0,13}$ ]]
}

# Prints the start time (clock ticks since boot) of a running, non-zombie PID; fails otherwise. PID plus
# start time names a process without the risk of a reused PID.
testnet__starttime() {
	local line rest
	local -a f
	[[ $1 =~ ^[0-9]+$ ]] || return 1
	{ IFS= read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
	rest=${line##*) }
	read -r -a f <<<"$rest"
	[ "${f[0]:-}" != Z ] || return 1
	printf '%s\n' "${f[19]:-}"
}

# True if PID is running and started at STARTTIME.
testnet__alive() {
	local st
	st=$(testnet__starttime "$1") || return 1
	[ "$st" = "$2" ]
}

# TERM the given PIDs, wait up to 2 s, KILL what is left, wait up to 1 s more. Reaps the ones that are
# children of this shell so they do not linger as zombies.
testnet__kill_pids() {
	local pid i left
	[ "$#" -gt 0 ] || return 0
	kill -TERM "$@" 2>/dev/null || true
	for i in 1 2; do
		for _ in $(seq 1 "$((i == 1 ? 20 : 10))"); do
			left=
			for pid in "$@"; do
				if testnet__starttime "$pid" >/dev/null; then left+=" $pid"; fi
			done
			[ -n "$left" ] || break 2
			sleep 0.1
		done
		if [ "$i" = 1 ]; then
			# shellcheck disable=SC2086 # a list of PIDs
			kill -KILL $left 2>/dev/null || true
		fi
	done
	for pid in "$@"; do
		# Only a pid that is no longer running: `wait` on a running child would block.
		testnet__starttime "$pid" >/dev/null || wait "$pid" 2>/dev/null || true
	done
	return 0
}

# Kill everything running inside namespace NS (every process there was started by this harness).
testnet__kill_ns() {
	local -a pids
	[ -e "/run/netns/$1" ] || return 0
	mapfile -t pids < <(ip netns pids "$1" 2>/dev/null)
	testnet__kill_pids "${pids[@]}"
}

# Delete the namespace, veth and /etc/netns entry of PREFIX, after killing what runs in the namespace.
testnet__remove_objects() {
	local ns="$1-net" veth="$1u"
	testnet__valid_prefix "$1" || return 0
	testnet__kill_ns "$ns"
	if ip link show dev "$veth" >/dev/null 2>&1; then ip link del "$veth" 2>/dev/null || true; fi
	if [ -e "/run/netns/$ns" ]; then ip netns del "$ns" 2>/dev/null || true; fi
	rm -rf "/etc/netns/$ns"
	rm -f "$TN__RUN_DIR/$1.knot.sock"
	rmdir /etc/netns 2>/dev/null || true
	return 0
}

testnet__remove_blackholes() {
	local r
	for r in "${TN__BLACKHOLES4[@]}"; do
		ip -4 route del blackhole "$r" metric "$TN__METRIC" 2>/dev/null || true
	done
	for r in "${TN__BLACKHOLES6[@]}"; do
		ip -6 route del blackhole "$r" metric "$TN__METRIC" 2>/dev/null || true
	done
	return 0
}

# Run "$@" holding the lock on /run/crgw-testnet (short sections only: claims and reaping).
testnet__locked() {
	local fd rc=0
	mkdir -p "$TN__RUN_DIR" || return 1
	exec {fd}>>"$TN__RUN_DIR/lock" || return 1
	if ! flock -w 15 "$fd"; then
		exec {fd}>&-
		testnet__err "could not lock $TN__RUN_DIR/lock"
		return 1
	fi
	"$@" || rc=$?
	exec {fd}>&-
	return "$rc"
}

# Prints "PREFIX PID" for every claim whose owner is alive, except this shell's own claim. (Another live
# process with the same prefix, its PID equal to ours mod 10000, does count: its claim is not ours.)
testnet__live_claims() {
	local f p pid st
	for f in "$TN__RUN_DIR"/*.pid; do
		[ -e "$f" ] || continue
		p=${f##*/}
		p=${p%.pid}
		pid='' st=''
		read -r pid st <"$f" 2>/dev/null || true
		if [ "$p" = "$TN_PREFIX" ] && [ "$pid" = "$$" ]; then continue; fi
		if testnet__alive "$pid" "$st"; then printf '%s %s\n' "$p" "$pid"; fi
	done
	return 0
}

testnet__reap_locked() {
	local f p pid st name live=0
	local -a names
	for f in "$TN__RUN_DIR"/*.pid; do
		[ -e "$f" ] || continue
		p=${f##*/}
		p=${p%.pid}
		pid='' st=''
		read -r pid st <"$f" 2>/dev/null || true
		if testnet__alive "$pid" "$st"; then
			live=1
			continue
		fi
		testnet__remove_objects "$p"
		rm -f "$f"
	done
	# Objects of the default pattern that no claim file covers: claims are written before anything is made
	# and removed after everything else, so these belong to no live run.
	mapfile -t names < <(ip netns list 2>/dev/null | awk '{ print $1 }')
	for name in "${names[@]}"; do
		[[ $name =~ ^(crgwtn[0-9]{1,4})-net$ ]] || continue
		[ -e "$TN__RUN_DIR/${BASH_REMATCH[1]}.pid" ] || testnet__remove_objects "${BASH_REMATCH[1]}"
	done
	mapfile -t names < <(ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }')
	for name in "${names[@]}"; do
		[[ $name =~ ^(crgwtn[0-9]{1,4})u$ ]] || continue
		[ -e "$TN__RUN_DIR/${BASH_REMATCH[1]}.pid" ] || testnet__remove_objects "${BASH_REMATCH[1]}"
	done
	[ "$live" = 1 ] || testnet__remove_blackholes
	return 0
}

testnet_reap_stale() {
	testnet__locked testnet__reap_locked
}

# Claim the network for this shell: 0 claimed, 2 someone alive holds it (TN__HOLDER says who), 1 error.
testnet__claim_locked() {
	local holder foreign
	testnet__reap_locked
	holder=$(testnet__live_claims | head -n 1)
	if [ -n "$holder" ]; then
		TN__HOLDER="prefix ${holder% *}, PID ${holder#* }"
		return 2
	fi
	foreign=$(ip -o -4 addr show to "$TN_NET" 2>/dev/null | awk '{ print $2 }' | head -n 1)
	if [ -n "$foreign" ]; then
		testnet__err "$TN_NET is already on interface $foreign, which is not a test network: refusing"
		return 1
	fi
	printf '%s %s\n%s\n' "$$" "$(testnet__starttime "$$")" "$TN_STATE" >"$TN__RUN_DIR/$TN_PREFIX.pid"
}

# Start "$@" in the namespace as service NAME: output to STATE/log/NAME.log, "PID STARTTIME" to
# STATE/pids/NAME.pid. `ip netns exec` execs the command, so $! is the server itself.
testnet__spawn() {
	local name=$1 pid
	shift
	ip netns exec "$TN_NS" "$@" </dev/null >"$TN_STATE/log/$name.log" 2>&1 &
	pid=$!
	printf '%s %s\n' "$pid" "$(testnet__starttime "$pid" || true)" >"$TN_STATE/pids/$name.pid"
}

# Poll "$@" every 0.1 s for up to TN__AWAIT_TRIES/10 s (default 10 s), failing early if service NAME has
# exited.
testnet__await() {
	local name=$1 pid st tries=${TN__AWAIT_TRIES:-100}
	shift
	read -r pid st <"$TN_STATE/pids/$name.pid" || return 1
	for _ in $(seq 1 "$tries"); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		if ! testnet__alive "$pid" "$st"; then
			testnet__err "$name exited; last lines of $TN_STATE/log/$name.log:"
			tail -n 5 "$TN_STATE/log/$name.log" >&2 || true
			return 1
		fi
		sleep 0.1
	done
	testnet__err "$name did not answer within $((tries / 10)) s (log: $TN_STATE/log/$name.log)"
	return 1
}

testnet__dns_ready() {
	[ "$(testnet_kdig allowed.test A +short)" = "$TN_WEB1" ]
}

testnet__http_ready() {
	local url=$1
	[[ $url == *:* ]] && url="[$url]" # an IPv6 address
	[ "$(curl --noproxy '*' -sf --max-time 1 "http://$url/")" = "upstream $1" ]
}

# The HTTPS server on ADDR answers for allowed.test with a certificate that verifies against the test CA.
testnet__https_ready() {
	[ "$(curl --noproxy '*' -sf --max-time 1 --cacert "$TN_CA" --resolve "allowed.test:443:$1" \
		https://allowed.test/)" = "upstream $1" ]
}

# Reads the first line from ADDR:PORT (numeric address: bash's /dev/tcp does no lookup for it).
testnet__banner() {
	# shellcheck disable=SC2016 # $1 and $2 belong to the inner shell
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2" && IFS= read -r line <&3 && printf "%s\n" "$line"' _ "$1" "$2" |
		tr -d '\r'
}

# curl to https://HOST/PATH at ADDR with the test CA and the git user's password. The password reaches
# curl on stdin, as a config line, so that it shows in no process list.
testnet__curl_git() { # HOST ADDR PATH [CURL-ARGS...]
	local host=$1 addr=$2 path=$3
	shift 3
	printf 'user = "%s:%s"\n' "$TN_GIT_USER" "$(<"$TN_GIT_PASSWORD_FILE")" |
		curl --noproxy '*' -s --max-time 2 -K - --cacert "$TN_CA" --resolve "$host:443:$addr" "$@" \
			"https://$host$path"
}

# git's smart HTTP answers HOST at ADDR, with the password, for org/small.git.
testnet__git_ready() {
	local out
	out=$(testnet__curl_git "$1" "$2" '/org/small.git/info/refs?service=git-upload-pack' -f) &&
		[[ $out == "001e# service=git-upload-pack"* ]]
}

# The API answers HOST at ADDR and accepts the token (extra curl arguments: --insecure for badcert.test).
testnet__api_ready() {
	local host=$1 addr=$2 out
	shift 2
	out=$(printf 'header = "Authorization: Bearer %s"\n' "$(<"$TN_API_TOKEN_FILE")" |
		curl --noproxy '*' -sf --max-time 2 -K - --cacert "$TN_CA" --resolve "$host:443:$addr" "$@" \
			"https://$host/whoami") && [[ $out == *'"token_ok": true'* ]]
}

testnet__write_zone() {
	local f=$1 i
	{
		cat <<'EOF'
$ORIGIN test.
$TTL 300
@                IN SOA   ns.test. hostmaster.test. 1 3600 600 86400 60
@                IN NS    ns.test.
ns               IN A     203.0.113.53
allowed          IN A     203.0.113.10
allowed          IN AAAA  2001:db8::10
www.allowed      IN CNAME allowed.test.
chain            IN CNAME www.allowed.test.
other            IN A     203.0.113.11
denied           IN A     203.0.113.11
loopback         IN A     127.0.0.1
pool             IN A     10.201.0.2
short         1  IN A     203.0.113.10
long     604800  IN A     203.0.113.10
txt              IN TXT   "hello"
v6only           IN AAAA  2001:db8:113::10
dual             IN A     203.0.113.10
dual             IN AAAA  2001:db8:113::10
slow6            IN A     203.0.113.10
slow6            IN AAAA  2001:db8:113::99
mapped           IN AAAA  ::ffff:127.0.0.1
nat64            IN AAAA  64:ff9b::7f00:1
sixtofour        IN AAAA  2002:7f00:1::1
teredo           IN AAAA  2001:0:cb00:7101::80ff:fffe
mapped-host      IN AAAA  ::ffff:203.0.113.1
mapped-web       IN AAAA  ::ffff:203.0.113.10
mixed            IN A     203.0.113.10
mixed            IN A     127.0.0.3
mixed            IN A     127.0.0.4
mixed            IN AAAA  2001:db8:113::10
mixed            IN AAAA  ::ffff:127.0.0.1
git              IN A     203.0.113.30
git2             IN A     203.0.113.30
reset.git        IN A     203.0.113.31
api              IN A     203.0.113.40
badcert          IN A     203.0.113.41
npm              IN A     203.0.113.50
pypi             IN A     203.0.113.51
goproxy          IN A     203.0.113.52
oci              IN A     203.0.113.54
oci-auth         IN A     203.0.113.55
EOF
		for i in 20 21 22 23 24 25 26 27; do printf 'many             IN A     203.0.113.%s\n' "$i"; done
		for ((i = 100; i < 170; i++)); do printf 'wide             IN A     203.0.113.%s\n' "$i"; done
		for ((i = 0; i < 1000; i++)); do printf 'b%s.bench IN A 203.0.113.10\n' "$i"; done
	} >"$f"
}

# The test CA and the web servers' certificate, in STATE_DIR/pki. Everything is made under umask 077; only
# the two certificates are then opened up. The name constraints keep the CA from vouching for anything
# outside the test network, should it ever be trusted by mistake.
testnet__make_pki() {
	local p=$TN_STATE/pki
	rm -rf "$p"
	mkdir -m 0755 "$p" || return 1
	cat >"$p/openssl.cnf" <<EOF
# Generated by conformance/lib/testnet.sh: the test network's throwaway CA and server certificate.
[req]
distinguished_name = dn
prompt = no
[dn]
CN = crgw testnet
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
nameConstraints = critical, permitted;DNS:test, permitted;IP:203.0.113.0/255.255.255.0
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = @san
[san]
$(testnet__san_lines)
EOF
	(
		umask 077
		cd "$p" || exit 1
		openssl req -x509 -new -config openssl.cnf -extensions ca -newkey ec \
			-pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=crgw testnet CA $TN_PREFIX" \
			-keyout ca.key -out ca.pem &&
			openssl req -new -config openssl.cnf -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
				-subj /CN=allowed.test -keyout server.key -out server.csr &&
			openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -days 1 -extfile openssl.cnf \
				-extensions server -out server.pem &&
			rm -f server.csr && chmod 0644 ca.pem server.pem &&
			# badcert.test's: self-signed, so that nothing verifying with the test CA accepts it.
			openssl req -x509 -new -config openssl.cnf -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
				-days 1 -subj /CN=badcert.test -addext "subjectAltName = DNS:badcert.test, IP:$TN_BADCERT" \
				-keyout badcert.key -out badcert.pem &&
			chmod 0644 badcert.pem
	) >"$TN_STATE/log/pki.log" 2>&1 || {
		testnet__err "making the test CA failed; last lines of $TN_STATE/log/pki.log:"
		tail -n 5 "$TN_STATE/log/pki.log" >&2
		return 1
	}
}

# subjectAltName entries of the servers' certificate: the names of testnet__write_zone (reset.git.test is
# one that *.test does not cover), wildcards for names tests make up, and the servers' addresses. Not
# badcert.test's address: that server has a certificate of its own.
testnet__san_lines() {
	local i=0 n
	for n in allowed.test www.allowed.test chain.test other.test denied.test loopback.test pool.test \
		short.test long.test many.test txt.test ns.test git.test git2.test reset.git.test api.test \
		npm.test pypi.test goproxy.test oci.test oci-auth.test '*.test' '*.allowed.test' '*.bench.test'; do
		i=$((i + 1))
		printf 'DNS.%d = %s\n' "$i" "$n"
	done
	i=0
	for n in "$TN_WEB1" "$TN_WEB2" "$TN_GIT" "$TN_GIT_RESET" "$TN_API" "$TN_NPM_ADDR" "$TN_PYPI_ADDR" \
		"$TN_GOPROXY_ADDR" "$TN_OCI_ADDR" "$TN_OCI_AUTH_ADDR"; do
		i=$((i + 1))
		printf 'IP.%d = %s\n' "$i" "$n"
	done
}

testnet__write_knot_conf() {
	local s=$TN_STATE/knot sock
	# A unix socket path must fit sun_path (108 bytes); knotd exits when it cannot bind its control
	# socket, so a deep STATE_DIR gets the socket under /run/crgw-testnet instead.
	sock=$s/run/knot.sock
	[ "${#sock}" -le 100 ] || sock=$TN__RUN_DIR/$TN_PREFIX.knot.sock
	cat >"$s/knot.conf" <<EOF
# Generated by conformance/lib/testnet.sh: authoritative for test., inside $TN_NS only.
server:
    rundir: "$s/run"
    pidfile: "$s/run/knot.pid"
    listen: [ $TN_DNS@53, 127.0.0.1@53 ]
control:
    listen: "$sock"
database:
    storage: "$s/db"
log:
  - target: stderr
    any: info
template:
  - id: default
    storage: "$s/zones"
    semantic-checks: on
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: test.
    file: test.zone
EOF
}

# The git password and the API token: random per network, mode 0600, no newline.
testnet__make_secrets() {
	local d=$TN_STATE/secrets
	rm -rf "$d"
	mkdir -m 0700 "$d" || return 1
	(
		umask 077
		openssl rand -hex 24 | tr -d '\n' >"$TN_GIT_PASSWORD_FILE" &&
			openssl rand -hex 24 | tr -d '\n' >"$TN_API_TOKEN_FILE"
	) || {
		testnet__err "making the git password and the API token failed"
		return 1
	}
}

# git for the harness's own repositories: no system or user configuration (init.defaultBranch, templates,
# signing) changes what it makes.
testnet__git() {
	GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null git "$@"
}

# org/small.git's history as a git fast-import stream: five commits, a README and one small file each,
# with fixed authors and dates, so the commit ids are the same on every run.
testnet__small_stream() {
	local i t msg text
	for i in 1 2 3 4 5; do
		t=$((1700000000 + i * 3600))
		msg="small: revision $i"
		printf 'commit refs/heads/main\n'
		printf 'author crgw testnet <testnet@crgw.test> %d +0000\n' "$t"
		printf 'committer crgw testnet <testnet@crgw.test> %d +0000\n' "$t"
		printf 'data %d\n%s\n' "${#msg}" "$msg"
		text=$(printf '# small\n\nA repository of the crgw test network, revision %d.' "$i")
		printf 'M 100644 inline README.md\ndata %d\n%s\n' "${#text}" "$text"
		text="file $i"
		printf 'M 100644 inline files/%d.txt\ndata %d\n%s\n' "$i" "${#text}" "$text"
	done
}

# git.test's server: lighttpd's configuration, its user file, the CGI's home, the credential helper of
# testnet_git, and TN_GIT_ROOT with org/small.git.
testnet__make_git() {
	local g=$TN_STATE/git
	rm -rf "$g"
	mkdir -p "$g/home" "$g/tmp" "$g/empty" "$TN_GIT_ROOT/org" || return 1
	chmod 0755 "$g" "$TN_GIT_ROOT" "$TN_GIT_ROOT/org" || return 1
	(
		umask 077
		printf '%s:%s\n' "$TN_GIT_USER" "$(<"$TN_GIT_PASSWORD_FILE")" >"$g/users"
	) || return 1
	# The CGI runs as root (lighttpd is not told to drop privileges: pushes write into repositories that
	# tests make as root); a repository someone else owns must be served all the same.
	printf '[safe]\n\tdirectory = *\n' >"$g/home/.gitconfig"
	{
		printf '#!/bin/sh\n'
		printf '# Generated by conformance/lib/testnet.sh: the credential helper of testnet_git. It answers\n'
		printf "# every host with the test git server's user and password.\n"
		# shellcheck disable=SC2016 # $1 belongs to the helper
		printf 'cat >/dev/null\n[ "$1" = get ] || exit 0\n'
		printf "printf 'username=%%s\\\\npassword=%%s\\\\n' '%s' \"\$(cat '%s')\"\n" \
			"$TN_GIT_USER" "$TN_GIT_PASSWORD_FILE"
	} >"$g/credential-helper"
	chmod 0700 "$g/credential-helper" || return 1
	testnet__lighttpd_conf >"$g/lighttpd.conf"
	if ! testnet__git init -q --bare -b main "$TN_GIT_ROOT/org/small.git" ||
		! testnet__small_stream | testnet__git --git-dir "$TN_GIT_ROOT/org/small.git" fast-import --quiet ||
		! chmod -R a+rX "$TN_GIT_ROOT"; then
		testnet__err "making $TN_GIT_ROOT/org/small.git failed"
		return 1
	fi
}

testnet__lighttpd_conf() {
	local g=$TN_STATE/git
	cat <<EOF
# Generated by conformance/lib/testnet.sh: git's smart HTTP for git.test and git2.test, inside $TN_NS only.
# Every path needs the password (basic auth over TLS). git-http-backend then sees REMOTE_USER, which
# enables git-receive-pack; it reads the Git-Protocol header from HTTP_GIT_PROTOCOL itself (git 2.34 and
# later), so protocol v2 needs no wrapper.
server.modules = ( "mod_openssl", "mod_auth", "mod_authn_file", "mod_alias", "mod_setenv", "mod_cgi",
                   "mod_accesslog" )
server.bind = "$TN_GIT"
server.port = 443
server.document-root = "$g/empty"
server.upload-dirs = ( "$g/tmp" )
# Responses stream with back-pressure. Request bodies are spooled: a large push comes chunked, and a CGI
# needs CONTENT_LENGTH, which lighttpd only knows once the body is whole (streamed, it answers 411).
server.stream-request-body = 0
server.stream-response-body = 2
# HTTP/1.1 only, like every other server of the test network.
server.feature-flags = ( "server.h2proto" => "disable" )
accesslog.filename = "$TN_STATE/log/git-access.log"
ssl.engine = "enable"
ssl.pemfile = "$TN_STATE/pki/server.pem"
ssl.privkey = "$TN_STATE/pki/server.key"
auth.backend = "plain"
auth.backend.plain.userfile = "$g/users"
auth.require = ( "/" => ( "method" => "basic", "realm" => "crgw testnet git", "require" => "valid-user" ) )
alias.url = ( "/" => "$TN__GIT_BACKEND/" )
cgi.assign = ( "" => "" )
setenv.add-environment = (
    "GIT_PROJECT_ROOT" => "$TN_GIT_ROOT",
    "GIT_HTTP_EXPORT_ALL" => "1",
    "GIT_CONFIG_NOSYSTEM" => "1",
    "HOME" => "$g/home",
    "PATH" => "/usr/bin:/bin",
)
EOF
}

testnet__write_env() {
	local v
	{
		for v in TN_PREFIX TN_NS TN_VETH TN_STATE TN_HOST TN_DNS TN_WEB1 TN_WEB2 TN_HOST6 TN_WEB6 TN_NET TN_POOL TN_CA \
			TN_GIT TN_GIT_RESET TN_API TN_BADCERT TN_GIT_ROOT TN_GIT_USER TN_GIT_PASSWORD_FILE TN_API_TOKEN_FILE; do
			printf '%s=%s\n' "$v" "${!v}"
		done
	} >"$TN_STATE/testnet.env"
}

# Everything after the claim. Any failure returns non-zero; testnet_up then calls testnet_down.
testnet__build() {
	local s=$TN_STATE a route
	rm -rf "$s/pids" "$s/knot/run" "$s/knot/db"
	mkdir -p "$s/pids" "$s/log" "$s/knot/run" "$s/knot/db" "$s/knot/zones" \
		"$s/www/$TN_WEB1" "$s/www/$TN_WEB2" "$s/www/$TN_WEB6" || return 1
	printf 'upstream %s\n' "$TN_WEB1" >"$s/www/$TN_WEB1/index.html"
	printf 'upstream %s\n' "$TN_WEB2" >"$s/www/$TN_WEB2/index.html"
	printf 'upstream %s\n' "$TN_WEB6" >"$s/www/$TN_WEB6/index.html"
	testnet__write_zone "$s/knot/zones/test.zone"
	testnet__write_knot_conf
	testnet__make_pki || return 1
	testnet__make_secrets || return 1
	testnet__make_git || return 1
	testnet__write_env

	# Blackholes first, so no moment exists in which these ranges follow the default route.
	for a in "${TN__BLACKHOLES4[@]}"; do
		ip -4 route replace blackhole "$a" metric "$TN__METRIC" || return 1
	done
	for a in "${TN__BLACKHOLES6[@]}"; do
		ip -6 route replace blackhole "$a" metric "$TN__METRIC" || return 1
	done

	mkdir -p "/etc/netns/$TN_NS" || return 1
	printf 'nameserver %s\noptions timeout:1 attempts:1\n' "$TN_DNS" >"/etc/netns/$TN_NS/resolv.conf"
	ip netns add "$TN_NS" || return 1
	ip link add "$TN_VETH" type veth peer name eth0 netns "$TN_NS" || return 1
	# IPv6 on the link: one /64 out of the blackholed 2001:db8::/32, static addresses without duplicate
	# address detection (usable at once), and no router advertisements taken from anywhere.
	sysctl -qw "net.ipv6.conf.$TN_VETH.accept_ra=0" "net.ipv6.conf.$TN_VETH.disable_ipv6=0" || return 1
	ip addr add "$TN_HOST/24" dev "$TN_VETH" || return 1
	ip addr add "$TN_HOST6/64" dev "$TN_VETH" nodad || return 1
	ip link set "$TN_VETH" up || return 1
	ip netns exec "$TN_NS" sysctl -qw net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
		net.ipv6.conf.eth0.accept_ra=0 || return 1
	ip -n "$TN_NS" link set lo up || return 1
	for a in "$TN_DNS" "$TN_WEB1" "$TN_WEB2" "$TN_GIT" "$TN_GIT_RESET" "$TN_API" "$TN_BADCERT"; do
		ip -n "$TN_NS" addr add "$a/24" dev eth0 || return 1
	done
	ip -n "$TN_NS" addr add "$TN_WEB6/64" dev eth0 nodad || return 1
	ip -n "$TN_NS" link set eth0 up || return 1

	route=$(ip -4 route get 203.0.113.99 2>&1)
	if [[ $route != *" dev $TN_VETH "* ]]; then
		testnet__err "203.0.113.99 does not route through $TN_VETH: $route"
		return 1
	fi

	testnet__spawn knotd knotd -c "$s/knot/knot.conf"
	testnet__spawn http-web1 "$TN__PYTHON" "$TN__LIB_DIR/testnet_servers.py" http "$TN_WEB1" 80 "$s/www/$TN_WEB1"
	testnet__spawn http-web2 "$TN__PYTHON" "$TN__LIB_DIR/testnet_servers.py" http "$TN_WEB2" 80 "$s/www/$TN_WEB2"
	testnet__spawn https-web1 "$TN__PYTHON" "$TN__LIB_DIR/testnet_servers.py" https "$TN_WEB1" 443 \
		"$s/www/$TN_WEB1" "$s/pki/server.pem" "$s/pki/server.key"
	testnet__spawn https-web2 "$TN__PYTHON" "$TN__LIB_DIR/testnet_servers.py" https "$TN_WEB2" 443 \
		"$s/www/$TN_WEB2" "$s/pki/server.pem" "$s/pki/server.key"
	testnet__spawn http-web6 "$TN__PYTHON" "$TN__LIB_DIR/testnet_servers.py" http "$TN_WEB6" 80 "$s/www/$TN_WEB6"
	testnet__spawn banner "$TN__PYTHON" "$TN__LIB_DIR/testnet_servers.py" banner "$TN_WEB1" 22
	testnet__spawn git lighttpd -D -f "$s/git/lighttpd.conf"
	testnet__spawn git-reset "$TN__PYTHON" "$TN__LIB_DIR/testnet_servers.py" reset-proxy "$TN_GIT_RESET" 443 \
		"$s/pki/server.pem" "$s/pki/server.key" "$TN_GIT" git.test "$TN_CA"
	testnet__spawn api "$TN__PYTHON" "$TN__LIB_DIR/testnet_servers.py" api "$TN_API" 443 \
		"$s/pki/server.pem" "$s/pki/server.key" "$TN_API_TOKEN_FILE"
	testnet__spawn badcert "$TN__PYTHON" "$TN__LIB_DIR/testnet_servers.py" api "$TN_BADCERT" 443 \
		"$s/pki/badcert.pem" "$s/pki/badcert.key" "$TN_API_TOKEN_FILE"

	testnet__await knotd testnet__dns_ready || return 1
	testnet__await http-web1 testnet__http_ready "$TN_WEB1" || return 1
	testnet__await http-web2 testnet__http_ready "$TN_WEB2" || return 1
	testnet__await https-web1 testnet__https_ready "$TN_WEB1" || return 1
	testnet__await https-web2 testnet__https_ready "$TN_WEB2" || return 1
	testnet__await http-web6 testnet__http_ready "$TN_WEB6" || return 1
	testnet__await banner testnet__banner "$TN_WEB1" 22 || return 1
	testnet__await git testnet__git_ready git.test "$TN_GIT" || return 1
	testnet__await git-reset testnet__git_ready reset.git.test "$TN_GIT_RESET" || return 1
	testnet__await api testnet__api_ready api.test "$TN_API" || return 1
	testnet__await badcert testnet__api_ready badcert.test "$TN_BADCERT" --insecure || return 1
	# A server can answer and still exit just after (knotd does when its control socket fails).
	for a in knotd http-web1 http-web2 https-web1 https-web2 http-web6 banner git git-reset api badcert; do
		testnet__await "$a" true || return 1
	done
	return 0
}

testnet_up() {
	local state=${1:-} rc waited='' a
	if [ -z "$state" ]; then
		testnet__err "usage: testnet_up STATE_DIR"
		return 1
	fi
	if [ -n "$TN__UP" ]; then
		testnet__err "already up as $TN_NS"
		return 1
	fi
	if [ "$(id -u)" != 0 ]; then
		testnet__err "needs root (network namespaces, routes)"
		return 1
	fi
	if ! testnet__valid_prefix "$TN_PREFIX"; then
		testnet__err "TN_PREFIX '$TN_PREFIX' must match ^[a-z][a-z0-9]{0,13}\$"
		return 1
	fi
	for a in ip knotd kdig curl flock timeout openssl lighttpd git "$TN__PYTHON" "$TN__GIT_BACKEND"; do
		command -v "$a" >/dev/null || { testnet__err "missing $a (scripts/setup installs it)"; return 1; }
	done
	mkdir -p "$state" || return 1
	state=$(cd "$state" && pwd) || return 1
	# The path goes into knot.conf unquoted-safe only for plain characters.
	if [[ ! $state =~ ^[A-Za-z0-9._/+-]+$ ]]; then
		testnet__err "STATE_DIR '$state' must consist of [A-Za-z0-9._/+-]"
		return 1
	fi

	TN_STATE=$state
	TN_NS=$TN_PREFIX-net
	TN_VETH=${TN_PREFIX}u
	TN_CA=$state/pki/ca.pem
	TN_GIT_ROOT=$state/git/root
	TN_GIT_PASSWORD_FILE=$state/secrets/git-password
	TN_API_TOKEN_FILE=$state/secrets/api-token
	export TN_NS TN_VETH TN_STATE TN_HOST TN_DNS TN_WEB1 TN_WEB2 TN_HOST6 TN_WEB6 TN_NET TN_POOL TN_CA \
		TN_GIT TN_GIT_RESET TN_API TN_BADCERT TN_GIT_ROOT TN_GIT_USER TN_GIT_PASSWORD_FILE TN_API_TOKEN_FILE

	local deadline=$((SECONDS + TN_LOCK_WAIT))
	while :; do
		rc=0
		testnet__locked testnet__claim_locked || rc=$?
		[ "$rc" = 2 ] || break
		if [ "$SECONDS" -ge "$deadline" ]; then
			testnet__err "the test network is held by $TN__HOLDER; gave up after $TN_LOCK_WAIT s"
			return 1
		fi
		[ -n "$waited" ] || testnet__err "waiting for the test network held by $TN__HOLDER"
		waited=1
		sleep 0.2
	done
	[ "$rc" = 0 ] || return 1

	TN__UP=1
	if ! testnet__build; then
		testnet__err "bringing up $TN_NS failed; tearing down"
		testnet_down
		return 1
	fi
	return 0
}

# Stop our recorded services (PID and start time must both match, so a reused PID is never hit).
testnet__stop_services() {
	local f pid st
	local -a pids=()
	[ -n "$TN_STATE" ] && [ -d "$TN_STATE/pids" ] || return 0
	for f in "$TN_STATE/pids"/*.pid; do
		[ -e "$f" ] || continue
		pid='' st=''
		read -r pid st <"$f" 2>/dev/null || true
		if testnet__alive "$pid" "$st"; then pids+=("$pid"); fi
	done
	testnet__kill_pids "${pids[@]}"
	rm -f "$TN_STATE/pids"/*.pid
	return 0
}

testnet__release_locked() {
	if [ -z "$(testnet__live_claims)" ]; then testnet__remove_blackholes; fi
	rm -f "$TN__RUN_DIR/$TN_PREFIX.pid"
	return 0
}

testnet_down() {
	local pid='' st=''
	testnet__valid_prefix "$TN_PREFIX" || return 0
	# A live claim on this prefix by another process (PIDs equal mod 10000) is not ours to take down.
	if [ -e "$TN__RUN_DIR/$TN_PREFIX.pid" ]; then
		read -r pid st <"$TN__RUN_DIR/$TN_PREFIX.pid" 2>/dev/null || true
		if [ -z "$TN__UP" ] && [ "$pid" != "$$" ] && testnet__alive "$pid" "$st"; then return 0; fi
	fi
	# Recorded services only if this shell made them: a helper that inherited TN_STATE must not stop them.
	if [ -n "$TN__UP" ] || [ "$pid" = "$$" ]; then testnet__stop_services; fi
	# Then whatever else runs in the namespace (testnet_exec ... &), the veth, the namespace.
	testnet__remove_objects "$TN_PREFIX"
	if [ "${1:-}" = --keep-blackhole ]; then return 0; fi
	# Last: the blackholes (unless another live network needs them) and our claim.
	if [ -e "$TN__RUN_DIR/$TN_PREFIX.pid" ] || [ -n "$TN__UP" ]; then
		testnet__locked testnet__release_locked || true
	fi
	TN__UP=
	return 0
}

testnet_exec() {
	if [ -z "$TN_NS" ]; then
		testnet__err "testnet_exec: network is not up"
		return 1
	fi
	ip netns exec "$TN_NS" "$@"
}

# Bounded stop for a caller's own process (the gateway under test): a plain `kill $pid; wait $pid` in a
# cleanup hangs the whole test if the process ignores TERM.
testnet_kill() {
	testnet__kill_pids "$@"
}

testnet_kdig() {
	kdig @"$TN_DNS" +timeout=1 +retry=0 "$@"
}

# Prints, one per line, the `git -c` options a client outside the namespace needs for the test git
# servers: the test CA, fixed addresses for git.test, git2.test and reset.git.test (git resolves nothing
# then), no proxy and no credential helper of the machine's, and unless --anonymous the test user's
# password through the helper testnet_up wrote. No line holds a space and none holds the password itself,
# so both `git $(testnet_git) clone ...` and `mapfile -t o < <(testnet_git); git "${o[@]}" ...` work.
testnet_git() {
	local anonymous=
	case ${1:-} in
	'') ;;
	--anonymous) anonymous=1 ;;
	*)
		testnet__err "usage: testnet_git [--anonymous]"
		return 1
		;;
	esac
	if [ -z "$TN_STATE" ] || [ ! -x "$TN_STATE/git/credential-helper" ]; then
		testnet__err "testnet_git: network is not up"
		return 1
	fi
	printf '%s\n' -c "http.sslCAInfo=$TN_CA" -c "http.curloptResolve=git.test:443:$TN_GIT" \
		-c "http.curloptResolve=git2.test:443:$TN_GIT" -c "http.curloptResolve=reset.git.test:443:$TN_GIT_RESET" \
		-c http.proxy= -c credential.helper=
	[ -n "$anonymous" ] || printf '%s\n' -c "credential.helper=$TN_STATE/git/credential-helper"
}

# The large repository's cache directory (a bare repository), named after TN__BIG_SPEC.
testnet__big_cache() {
	printf '%s/git-big-%s-%s.git\n' "$TN_GIT_BIG_CACHE_DIR" "${TN__BIG_SPEC%% *}" \
		"$(printf '%s' "$TN__BIG_SPEC" | sha256sum | cut -c1-12)"
}

# True if the large repository's cache exists (complete: it is renamed into place when made).
testnet_git_big_cached() {
	local c
	c=$(testnet__big_cache)
	[ -d "$c" ] && testnet__git --git-dir "$c" rev-parse -q --verify refs/heads/main >/dev/null
}

# Makes the cache under a lock shared by every run on the machine: generated into DIR.tmp with
# testnet_bigrepo.py and git fast-import, repacked with a bitmap (as a hosting server keeps its
# repositories), then renamed into place. Idle priority, one pack thread: other work shares the machine.
testnet__make_big_cache() {
	local c fd rc=0 spec
	c=$(testnet__big_cache)
	mkdir -p "$TN_GIT_BIG_CACHE_DIR" || return 1
	exec {fd}>>"$TN_GIT_BIG_CACHE_DIR/.lock" || return 1
	if ! flock -w 1800 "$fd"; then
		exec {fd}>&-
		testnet__err "could not lock $TN_GIT_BIG_CACHE_DIR/.lock within 30 minutes"
		return 1
	fi
	if ! testnet_git_big_cached; then
		read -r -a spec <<<"$TN__BIG_SPEC"
		rm -rf "$c.tmp" # left by a run that was killed: we hold the lock, so nobody else writes it
		testnet__git init -q --bare -b main "$c.tmp" || rc=1
		if [ "$rc" = 0 ]; then
			timeout 1800 nice -n 10 "$TN__PYTHON" "$TN__LIB_DIR/testnet_bigrepo.py" "${spec[@]:1}" |
				timeout 1800 nice -n 10 env GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null \
					git --git-dir "$c.tmp" fast-import --quiet
			# Both sides: a generator that died between two commits leaves fast-import content with less.
			[ "${PIPESTATUS[*]}" = "0 0" ] || rc=1
		fi
		if [ "$rc" = 0 ]; then
			timeout 1800 nice -n 10 env GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null \
				git --git-dir "$c.tmp" -c pack.threads=1 -c core.bigFileThreshold=512k repack -q -a -d -b &&
				chmod -R a+rX "$c.tmp" && mv "$c.tmp" "$c" || rc=1
		fi
		if [ "$rc" != 0 ]; then
			rm -rf "$c.tmp"
			testnet__err "making the large repository in $c failed"
		fi
	fi
	exec {fd}>&-
	return "$rc"
}

# Installs org/big.git into TN_GIT_ROOT from the cache, making the cache first if need be. A local
# clone hard-links the pack (copies it across file systems), so this takes a moment once cached.
testnet_git_big_repo() {
	local dst=$TN_GIT_ROOT/org/big.git
	if [ -z "$TN_GIT_ROOT" ] || [ ! -d "$TN_GIT_ROOT/org" ]; then
		testnet__err "testnet_git_big_repo: network is not up"
		return 1
	fi
	[ ! -d "$dst" ] || return 0
	testnet_git_big_cached || testnet__make_big_cache || return 1
	rm -rf "$dst.tmp"
	# No --local: with it, git refuses to copy when it cannot link; without it, a path clone links or
	# copies.
	if ! testnet__git clone -q --bare "$(testnet__big_cache)" "$dst.tmp" || ! chmod -R a+rX "$dst.tmp" ||
		! mv "$dst.tmp" "$dst"; then
		rm -rf "$dst.tmp"
		testnet__err "installing $dst failed"
		return 1
	fi
}

testnet__cleanup() {
	local i
	[ -z "$TN__CLEANED" ] || return 0
	TN__CLEANED=1
	for ((i = ${#TN__ON_EXIT[@]} - 1; i >= 0; i--)); do
		eval "${TN__ON_EXIT[i]}" || true
	done
	testnet_down || true
}

testnet__exit_trap() {
	testnet__cleanup
	exit "$1"
}

# Clean up, then die of the same signal so the caller sees the usual 128+N status.
testnet__signal_trap() {
	trap '' INT TERM HUP
	testnet__cleanup
	trap - "$1" EXIT
	kill -s "$1" "$BASHPID"
}

testnet_trap() {
	[ -z "$TN__TRAPPED" ] || return 0
	TN__TRAPPED=1
	trap 'testnet__exit_trap $?' EXIT
	trap 'testnet__signal_trap INT' INT
	trap 'testnet__signal_trap TERM' TERM
	trap 'testnet__signal_trap HUP' HUP
}

testnet_on_exit() {
	if [ "$#" -eq 0 ]; then
		testnet__err "usage: testnet_on_exit CMD..."
		return 1
	fi
	if [ "$#" -eq 1 ]; then TN__ON_EXIT+=("$1"); else TN__ON_EXIT+=("$(printf '%q ' "$@")"); fi
	testnet_trap
}

# ---- Registries (testnet_registries_up) ----
# Inherited like the rest, so a script started by the owner sees them.
TN_NPM_REGISTRY=${TN_NPM_REGISTRY:-}
TN_NPM_TOKEN_FILE=${TN_NPM_TOKEN_FILE:-}
TN_NPM_PROJECT=${TN_NPM_PROJECT:-}
TN_PYPI_INDEX=${TN_PYPI_INDEX:-}
TN_PYPI_REQUIREMENTS=${TN_PYPI_REQUIREMENTS:-}
TN_GOPROXY=${TN_GOPROXY:-}
TN_GO_MAIN=${TN_GO_MAIN:-}
TN_OCI=${TN_OCI:-}
TN_OCI_IMAGE=${TN_OCI_IMAGE:-}
TN_OCI_CERT_DIR=${TN_OCI_CERT_DIR:-}
TN_OCI_AUTH=${TN_OCI_AUTH:-}
TN_OCI_TOKEN_USER=${TN_OCI_TOKEN_USER:-}
TN_OCI_TOKEN_PASSWORD_FILE=${TN_OCI_TOKEN_PASSWORD_FILE:-}
TN_NPM_USER=crgw-publisher
# Expensive artifacts shared by every run on the machine: verdaccio (scripts/setup installs it), the npm
# lockfile and the OCI image layout. Bump TN__OCI_SPEC when the image changes: the name carries its hash;
# the lockfile's name carries a hash of the generator and npm's version.
TN_REGISTRY_CACHE_DIR=${TN_REGISTRY_CACHE_DIR:-/var/cache/crgw-test}
TN__VERDACCIO="verdaccio-6.8.0"
TN__OCI_SPEC="1 crgw/hello:1 hello.txt"
TN__REGISTRY_VARS="TN_NPM_ADDR TN_PYPI_ADDR TN_GOPROXY_ADDR TN_OCI_ADDR TN_NPM_REGISTRY TN_NPM_USER \
TN_NPM_TOKEN_FILE TN_NPM_PROJECT TN_PYPI_INDEX TN_PYPI_REQUIREMENTS TN_GOPROXY TN_GO_MAIN TN_OCI TN_OCI_IMAGE \
TN_OCI_CERT_DIR TN_OCI_AUTH TN_OCI_AUTH_ADDR TN_OCI_TOKEN_USER TN_OCI_TOKEN_PASSWORD_FILE"

testnet__registries_py() {
	"$TN__PYTHON" "$TN__LIB_DIR/testnet_registries.py" "$@"
}

# curl to https://HOST/PATH at ADDR with the test CA; extra arguments go to curl.
testnet__curl_at() { # HOST ADDR PATH [CURL-ARGS...]
	local host=$1 addr=$2 path=$3
	shift 3
	curl --noproxy '*' -sf --max-time 2 --cacert "$TN_CA" --resolve "$host:443:$addr" "$@" "https://$host$path"
}

testnet__verdaccio_conf() {
	local d=$TN_STATE/npm
	cat <<EOF
# Generated by conformance/lib/testnet.sh: npm.test, inside $TN_NS only. No uplinks: it serves what the
# tests publish and nothing else.
storage: $d/storage
auth:
  htpasswd:
    file: $d/htpasswd
    max_users: 100
uplinks: {}
packages:
  # A private scope: only a user with a token reads it (the operator's credential, through the gateway).
  '@priv/*':
    access: \$authenticated
    publish: \$authenticated
    unpublish: \$authenticated
  '@*/*':
    access: \$all
    publish: \$authenticated
    unpublish: \$authenticated
  '**':
    access: \$all
    publish: \$authenticated
    unpublish: \$authenticated
listen:
  - https://$TN_NPM_ADDR:443/
https:
  key: $TN_STATE/pki/server.key
  cert: $TN_STATE/pki/server.pem
  ca: $TN_CA
web:
  enable: false
max_body_size: 50mb
log: { type: stdout, format: pretty, level: warn }
EOF
}

# A static site over TLS on ADDR:443 serving ROOT: pypi.test and goproxy.test. On pypi.test a client that
# asks for PEP 691's JSON (pip does) gets the index.json beside each index.html.
testnet__static_conf() { # NAME ADDR ROOT
	local name=$1 addr=$2 root=$3
	cat <<EOF
# Generated by conformance/lib/testnet.sh: $name.test, static files, inside $TN_NS only.
server.modules = ( "mod_openssl", "mod_rewrite", "mod_setenv", "mod_indexfile", "mod_staticfile",
                   "mod_accesslog" )
server.bind = "$addr"
server.port = 443
server.document-root = "$root"
server.feature-flags = ( "server.h2proto" => "disable" )
accesslog.filename = "$TN_STATE/log/$name-access.log"
ssl.engine = "enable"
ssl.pemfile = "$TN_STATE/pki/server.pem"
ssl.privkey = "$TN_STATE/pki/server.key"
index-file.names = ( "index.html" )
mimetype.assign = ( ".html" => "text/html", ".json" => "application/vnd.pypi.simple.v1+json",
                    ".whl" => "application/octet-stream", ".zip" => "application/zip",
                    ".mod" => "text/plain; charset=utf-8", ".info" => "application/json",
                    "list" => "text/plain; charset=utf-8", "@latest" => "application/json" )
EOF
	if [ "$name" = pypi ]; then
		cat <<'EOF'
setenv.add-response-header = ( "Vary" => "Accept" )
$REQUEST_HEADER["Accept"] =~ "application/vnd\.pypi\.simple\.v1\+json" {
    url.rewrite-once = ( "^(/simple/([a-z0-9-]+/)?)$" => "${1}index.json" )
}
EOF
	fi
}

testnet__registry_conf() { # [auth]: oci-auth.test, behind the token endpoint
	local addr=$TN_OCI_ADDR name=oci.test
	[ "${1:-}" = auth ] && addr=$TN_OCI_AUTH_ADDR name=oci-auth.test
	cat <<EOF
# Generated by conformance/lib/testnet.sh: $name (distribution 2.8), inside $TN_NS only.
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $TN_STATE/oci/data
  delete:
    enabled: true
http:
  addr: $addr:443
  secret: $(openssl rand -hex 16)
  tls:
    certificate: $TN_STATE/pki/server.pem
    key: $TN_STATE/pki/server.key
EOF
	[ "${1:-}" = auth ] && cat <<EOF
auth:
  token:
    realm: https://api.test/oci/token
    service: oci-auth.test
    issuer: crgw-testnet-token
    rootcertbundle: $TN_STATE/oci/token.crt
EOF
	return 0
}

# The token endpoint's key and password, beside the API's token (testnet_servers.py reads them there), and
# the certificate docker-registry trusts for the tokens' signatures.
testnet__oci_token_setup() {
	local d
	d=$(dirname "$TN_API_TOKEN_FILE")
	(
		umask 077
		openssl rand -hex 24 | tr -d '\n' >"$TN_OCI_TOKEN_PASSWORD_FILE.tmp" &&
			mv "$TN_OCI_TOKEN_PASSWORD_FILE.tmp" "$TN_OCI_TOKEN_PASSWORD_FILE" &&
			openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/oci-token.key" -out "$TN_STATE/oci/token.crt" \
				-days 1 -subj /CN=crgw-testnet-token >/dev/null 2>&1
	) && chmod 0644 "$TN_STATE/oci/token.crt"
}

testnet__oci_auth_ready() {
	[ "$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$TN_CA" \
		--resolve "oci-auth.test:443:$TN_OCI_AUTH_ADDR" https://oci-auth.test/v2/)" = 401 ]
}

# The OCI image layout's cache directory, named after TN__OCI_SPEC.
testnet__oci_cache() {
	printf '%s/oci-hello-%s-%s\n' "$TN_REGISTRY_CACHE_DIR" "${TN__OCI_SPEC%% *}" \
		"$(printf '%s' "$TN__OCI_SPEC" | sha256sum | cut -c1-12)"
}

# An image of one layer holding /hello.txt, built with umoci (no daemon, no base image) into the cache
# under the cache's lock; made in DIR.tmp and renamed into place.
testnet__make_oci_cache() {
	local c fd rc=0
	c=$(testnet__oci_cache)
	[ ! -d "$c" ] || return 0
	mkdir -p "$TN_REGISTRY_CACHE_DIR" || return 1
	exec {fd}>>"$TN_REGISTRY_CACHE_DIR/.lock" || return 1
	if ! flock -w 600 "$fd"; then
		exec {fd}>&-
		testnet__err "could not lock $TN_REGISTRY_CACHE_DIR/.lock within 10 minutes"
		return 1
	fi
	if [ ! -d "$c" ]; then
		rm -rf "$c.tmp"
		mkdir -p "$c.tmp" &&
			(
				cd "$c.tmp" &&
					umoci init --layout layout &&
					umoci new --image layout:1 &&
					umoci unpack --rootless --image layout:1 bundle &&
					printf 'hello from the crgw test network\n' >bundle/rootfs/hello.txt &&
					umoci repack --image layout:1 bundle &&
					umoci config --image layout:1 --config.cmd /hello.txt --architecture amd64 --os linux &&
					umoci gc --layout layout &&
					rm -rf bundle
			) >"$TN_STATE/log/oci-build.log" 2>&1 && mv "$c.tmp" "$c" || rc=1
		if [ "$rc" != 0 ]; then
			rm -rf "$c.tmp"
			testnet__err "building the OCI image failed; last lines of $TN_STATE/log/oci-build.log:"
			tail -n 5 "$TN_STATE/log/oci-build.log" >&2
		fi
	fi
	exec {fd}>&-
	return "$rc"
}

# The npm lockfile's cache: the generator fixes every tarball's bytes, so one lockfile serves every run.
testnet__npm_lock_cache() {
	printf '%s/npm-lock-%s.json\n' "$TN_REGISTRY_CACHE_DIR" \
		"$({ cat "$TN__LIB_DIR/testnet_registries.py"; npm --version; } | sha256sum | cut -c1-12)"
}

# npm inside the namespace, in DIR, with the test registry and CA and none of the machine's npm
# configuration (a user configuration there drops "resolved" from lockfiles, for one). The test user's
# token goes into DIR/.npmrc-testnet (0600), which is npm's user configuration here.
testnet_npm() { # DIR ARGS...
	local dir=$1 rc=0
	shift
	if [ -z "$TN_NPM_REGISTRY" ]; then
		testnet__err "testnet_npm: registries are not up"
		return 1
	fi
	(
		umask 077
		printf '//npm.test/:_authToken=%s\n' "$(<"$TN_NPM_TOKEN_FILE")" >"$dir/.npmrc-testnet"
	) || return 1
	(cd "$dir" && ip netns exec "$TN_NS" env npm_config_userconfig="$dir/.npmrc-testnet" \
		npm_config_globalconfig=/dev/null npm_config_registry="$TN_NPM_REGISTRY" npm_config_cafile="$TN_CA" \
		npm_config_strict_ssl=true npm_config_cache="$TN_STATE/npm/client-cache" npm_config_audit=false \
		npm_config_fund=false npm_config_update_notifier=false npm_config_fetch_retries=0 \
		npm_config_loglevel=error npm "$@") || rc=$?
	rm -f "$dir/.npmrc-testnet"
	return "$rc"
}

# Publish one generated package (an index.js that requires its dependencies) as the test user:
# testnet_npm_publish NAME VERSION [DEP=RANGE...]
testnet_npm_publish() {
	if [ -z "$TN_NPM_REGISTRY" ]; then
		testnet__err "testnet_npm_publish: registries are not up"
		return 1
	fi
	testnet__registries_py npm-publish "$TN_CA" "$TN_NPM_ADDR" npm.test "$TN_NPM_TOKEN_FILE" "$@"
}

# The user, the package tree and the project that depends on it, with its lockfile (from the cache, or
# made by npm against npm.test and cached).
testnet__npm_content() {
	local p=$TN_NPM_PROJECT lock n
	if ! (
		umask 077
		testnet__registries_py npm-user "$TN_CA" "$TN_NPM_ADDR" npm.test "$TN_NPM_USER" \
			"$(openssl rand -hex 16)" >"$TN_NPM_TOKEN_FILE"
	) || [ ! -s "$TN_NPM_TOKEN_FILE" ]; then
		testnet__err "creating the npm user on npm.test failed"
		return 1
	fi
	testnet__registries_py npm-tree "$TN_CA" "$TN_NPM_ADDR" npm.test "$TN_NPM_TOKEN_FILE" "$p" \
		>"$TN_STATE/log/npm-publish.log" 2>&1 || {
		testnet__err "publishing the npm tree failed:"
		tail -n 3 "$TN_STATE/log/npm-publish.log" >&2
		return 1
	}
	lock=$(testnet__npm_lock_cache)
	if [ -s "$lock" ]; then
		cp "$lock" "$p/package-lock.json" || return 1
		return 0
	fi
	testnet_npm "$p" install --package-lock-only --ignore-scripts >"$TN_STATE/log/npm-lock.log" 2>&1 || {
		testnet__err "npm install --package-lock-only against npm.test failed:"
		tail -n 5 "$TN_STATE/log/npm-lock.log" >&2
		return 1
	}
	n=$(jq '[.packages | keys[] | select(. != "")] | length' "$p/package-lock.json" 2>/dev/null)
	if [ "${n:-0}" -lt 50 ]; then
		testnet__err "the npm lockfile names ${n:-0} packages, fewer than 50"
		return 1
	fi
	mkdir -p "$TN_REGISTRY_CACHE_DIR" && cp "$p/package-lock.json" "$lock.tmp.$$" && mv "$lock.tmp.$$" "$lock"
}

# Push the cached image layout to oci.test with skopeo, inside the namespace (oci.test resolves there).
testnet__oci_push() {
	local c
	c=$(testnet__oci_cache)
	printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"$TN_STATE/oci/policy.json"
	ip netns exec "$TN_NS" skopeo --policy "$TN_STATE/oci/policy.json" copy --quiet --dest-no-creds \
		--dest-cert-dir "$TN_OCI_CERT_DIR" "oci:$c/layout:1" "docker://$TN_OCI_IMAGE" \
		>"$TN_STATE/log/oci-push.log" 2>&1 || {
		testnet__err "skopeo copy to $TN_OCI_IMAGE failed; last lines of $TN_STATE/log/oci-push.log:"
		tail -n 5 "$TN_STATE/log/oci-push.log" >&2
		return 1
	}
}

testnet__registries_build() {
	local s=$TN_STATE a v
	local verdaccio=$TN_REGISTRY_CACHE_DIR/$TN__VERDACCIO/node_modules/verdaccio/bin/verdaccio
	for a in node npm jq docker-registry umoci skopeo; do
		command -v "$a" >/dev/null || { testnet__err "missing $a (scripts/setup installs it)"; return 1; }
	done
	[ -x "$verdaccio" ] || { testnet__err "missing $verdaccio (scripts/setup installs it)"; return 1; }
	rm -rf "$s/npm" "$s/pypi" "$s/goproxy" "$s/oci"
	mkdir -p "$s/npm/storage" "$TN_NPM_PROJECT" "$s/oci/data" "$TN_OCI_CERT_DIR" || return 1
	cp "$TN_CA" "$TN_OCI_CERT_DIR/ca.crt" || return 1
	if ! testnet__registries_py pypi "$s/pypi" pypi.test ||
		! testnet__registries_py goproxy "$s/goproxy" goproxy.test; then
		testnet__err "generating the PyPI and GOPROXY trees failed"
		return 1
	fi
	chmod -R a+rX "$s/pypi" "$s/goproxy" || return 1
	testnet__make_oci_cache || return 1
	testnet__verdaccio_conf >"$s/npm/config.yaml"
	testnet__static_conf pypi "$TN_PYPI_ADDR" "$s/pypi/www" >"$s/pypi/lighttpd.conf"
	testnet__static_conf goproxy "$TN_GOPROXY_ADDR" "$s/goproxy/www" >"$s/goproxy/lighttpd.conf"
	testnet__registry_conf >"$s/oci/registry.yml"
	testnet__registry_conf auth >"$s/oci/registry-auth.yml"
	testnet__oci_token_setup || { testnet__err "making the OCI token endpoint's key failed"; return 1; }

	for a in "$TN_NPM_ADDR" "$TN_PYPI_ADDR" "$TN_GOPROXY_ADDR" "$TN_OCI_ADDR" "$TN_OCI_AUTH_ADDR"; do
		ip -n "$TN_NS" addr add "$a/24" dev eth0 || return 1
	done
	testnet__spawn npm node "$verdaccio" --config "$s/npm/config.yaml"
	testnet__spawn pypi lighttpd -D -f "$s/pypi/lighttpd.conf"
	testnet__spawn goproxy lighttpd -D -f "$s/goproxy/lighttpd.conf"
	testnet__spawn oci docker-registry serve "$s/oci/registry.yml"
	testnet__spawn oci-auth docker-registry serve "$s/oci/registry-auth.yml"

	# verdaccio takes a few seconds to load (longer on a busy machine): a minute for it.
	TN__AWAIT_TRIES=600 testnet__await npm testnet__curl_at npm.test "$TN_NPM_ADDR" /-/ping || return 1
	testnet__await pypi testnet__curl_at pypi.test "$TN_PYPI_ADDR" /simple/crgw-alpha/ || return 1
	testnet__await goproxy testnet__curl_at goproxy.test "$TN_GOPROXY_ADDR" /goproxy.test/m/a/@v/list || return 1
	TN__AWAIT_TRIES=300 testnet__await oci testnet__curl_at oci.test "$TN_OCI_ADDR" /v2/ || return 1
	TN__AWAIT_TRIES=300 testnet__await oci-auth testnet__oci_auth_ready || return 1

	testnet__npm_content || return 1
	testnet__oci_push || return 1
	for a in npm pypi goproxy oci oci-auth; do
		testnet__await "$a" true || return 1
	done
	for v in $TN__REGISTRY_VARS; do
		printf '%s=%s\n' "$v" "${!v}"
	done >>"$s/testnet.env"
}

testnet_registries_up() {
	local s=$TN_STATE
	if [ -z "$TN__UP" ] || [ -z "$s" ]; then
		testnet__err "testnet_registries_up: call testnet_up first (in this shell)"
		return 1
	fi
	if [ -n "$TN_NPM_REGISTRY" ]; then
		testnet__err "testnet_registries_up: already up"
		return 1
	fi
	TN_NPM_REGISTRY=https://npm.test/
	TN_NPM_TOKEN_FILE=$s/secrets/npm-token
	TN_NPM_PROJECT=$s/npm/project
	TN_PYPI_INDEX=https://pypi.test/simple/
	TN_PYPI_REQUIREMENTS=$s/pypi/client/requirements.txt
	TN_GOPROXY=https://goproxy.test/
	TN_GO_MAIN=$s/goproxy/client
	TN_OCI=oci.test
	TN_OCI_IMAGE=oci.test/crgw/hello:1
	TN_OCI_CERT_DIR=$s/oci/certs
	TN_OCI_AUTH=oci-auth.test
	TN_OCI_TOKEN_USER=crgw-oci
	TN_OCI_TOKEN_PASSWORD_FILE=$s/secrets/oci-token.password
	# shellcheck disable=SC2086,SC2163 # a list of names
	export $TN__REGISTRY_VARS
	if ! testnet__registries_build; then
		testnet__err "bringing up the registries failed (testnet_down stops what was started)"
		return 1
	fi
}
