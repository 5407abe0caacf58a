#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Self-test of the test network (conformance/lib/testnet.sh): names, routes, DNS answers, upstream servers
# (the credentialed git server, the resetting proxy, the API and the bad certificate with real git and
# curl), teardown, and cleanup when the owning script is killed. TAP output; needs root; 25-40 s alone.
#
# Runs in parallel with itself: the network is one per machine, so a second run waits for the first.
# The only addresses touched are 203.0.113.0/24, 10.201.0.0/16 and 2001:db8::/32, all inside the test
# network or blackholed; names are looked up only with kdig @203.0.113.53.

set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lib=$here/../lib/testnet.sh
# shellcheck source=SCRIPTDIR/../lib/testnet.sh
source "$lib"

# shellcheck source=SCRIPTDIR/../lib/selftest_tap.sh
source "$here/../lib/selftest_tap.sh"

# kdig shorthand: prints the answer section as "name ttl type data" lines.
answer() {
	testnet_kdig "$@" +noall +answer | awk '{ $3 = ""; print }' | tr -s ' '
}

short() {
	testnet_kdig "$@" +short
}

# ADDR is routed to a blackhole: the kernel refuses the lookup (EINVAL is its answer for blackhole routes)
# and our metric-4000 blackhole for PREFIX is in the table.
blackholed() {
	local addr=$1 prefix=$2 fam=-4 out
	[[ $addr == *:* ]] && fam=-6
	if out=$(ip "$fam" route get "$addr" 2>&1); then
		diag "ip route get $addr: $out"
		return 1
	fi
	[[ $out == *"Invalid argument"* ]] &&
		ip "$fam" route show exact "$prefix" | grep -Eq "^blackhole $prefix (dev lo )?metric 4000"
}

routed_via_veth() {
	local out
	out=$(ip -4 route get 203.0.113.99 2>&1)
	[[ $out == *" dev $1 src 203.0.113.1 "* ]] || { diag "$out"; return 1; }
}

# True if nothing named after PREFIX exists any more: namespace, veth, claim file, /etc/netns entry.
nothing_left() {
	local p=$1 bad=0
	if ip netns list | grep -q "^$p-net\b"; then diag "namespace $p-net remains"; bad=1; fi
	if ip link show dev "${p}u" >/dev/null 2>&1; then diag "veth ${p}u remains"; bad=1; fi
	if [ -e "/run/crgw-testnet/$p.pid" ]; then diag "claim file for $p remains"; bad=1; fi
	if [ -e "/etc/netns/$p-net" ]; then diag "/etc/netns/$p-net remains"; bad=1; fi
	return "$bad"
}

# True if none of the "PID STARTTIME" records in the given files is still running.
all_dead() {
	local f pid st
	for f in "$@"; do
		read -r pid st <"$f" || continue
		if testnet__alive "$pid" "$st"; then diag "PID $pid ($f) still runs"; return 1; fi
	done
	return 0
}

# PID has exited (a zombie counts as gone).
gone() {
	local i
	for ((i = 0; i < 20; i++)); do
		testnet__starttime "$1" >/dev/null || return 0
		sleep 0.1
	done
	return 1
}

our_blackholes_gone() {
	[ -z "$(ip -4 route show exact 203.0.113.0/24 metric 4000 type blackhole)" ] &&
		[ -z "$(ip -4 route show exact 10.201.0.0/16 metric 4000 type blackhole)" ] &&
		[ -z "$(ip -6 route show exact 2001:db8::/32 metric 4000 type blackhole)" ]
}

# A parallel run may bring its network up (and add the same blackholes) right after ours goes down:
# look at the routes first, and only if they are there, ask whether someone else now holds the network.
blackholes_gone_check() {
	if our_blackholes_gone; then
		ok "$1"
	elif [ -n "$(testnet__live_claims)" ]; then
		skip "$1" "another test network is up"
	else
		not_ok "$1"
	fi
}

# Waits up to $2 tenths of a second for file $1.
await_file() {
	local i
	for ((i = 0; i < $2; i++)); do
		[ -e "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

# Waits up to 10 s for child NAME (see run_child) to exit; prints its exit status.
await_exit() {
	await_file "$tmp/$1/status" 100 && cat "$tmp/$1/status"
}

tmp=$(mktemp -d /tmp/crgw-testnet-selftest.XXXXXX)
testnet_on_exit "rm -rf '$tmp'"

# ---------------------------------------------------------------------------------------------------------
# Up.
fwd_before=$(sysctl -n net.ipv4.ip_forward)
t=$EPOCHREALTIME
if testnet_up "$tmp/state"; then
	ok "testnet_up"
else
	not_ok "testnet_up"
	printf '1..%d\n' "$n"
	exit 1
fi
diag "testnet_up took $(elapsed "$t") s (prefix $TN_PREFIX)"

is "namespace name" "$TN_NS" "$TN_PREFIX-net"
is "veth name" "$TN_VETH" "${TN_PREFIX}u"
check "veth name fits IFNAMSIZ" [ "${#TN_VETH}" -le 15 ]
is "exported addresses" "$(bash -c 'echo "$TN_NS $TN_HOST $TN_DNS $TN_WEB1 $TN_WEB2 $TN_POOL"')" \
	"$TN_NS 203.0.113.1 203.0.113.53 203.0.113.10 203.0.113.11 10.201.0.0/16"
check "testnet.env lists the same" grep -qx "TN_POOL=10.201.0.0/16" "$TN_STATE/testnet.env"
check "namespace exists" ip netns exec "$TN_NS" true
is "veth is up in the root namespace" "$(ip -br link show dev "$TN_VETH" | awk '{ print $2 }')" "UP"
check "claim file names this shell" grep -q "^$$ " "/run/crgw-testnet/$TN_PREFIX.pid"
check "203.0.113.99 routes through the veth" routed_via_veth "$TN_VETH"
check "10.201.0.2 (sandbox pool) is blackholed" blackholed 10.201.0.2 10.201.0.0/16
check "2001:db8::10 (AAAA target) is blackholed" blackholed 2001:db8::10 2001:db8::/32
check "blackhole for 203.0.113.0/24 sits under the veth route" \
	[ -n "$(ip -4 route show exact 203.0.113.0/24 metric 4000 type blackhole)" ]
is "internet namespace has no default route" "$(testnet_exec ip route show default)$(testnet_exec ip -6 route show default 2>/dev/null)" ""
is "IPv6 in the internet namespace: one static address" \
	"$(testnet_exec ip -6 -br addr show scope global | awk '{ $1 = $2 = ""; print }' | xargs)" "2001:db8:113::10/64"
is "2001:db8:113::/64 routes through the veth" "$(ip -6 route get 2001:db8:113::10 | grep -o "dev $TN_VETH")" "dev $TN_VETH"
check "the rest of 2001:db8::/32 stays blackholed" blackholed 2001:db8:114::1 2001:db8::/32
is "HTTP over IPv6" "$(curl --noproxy '*' -s --max-time 2 "http://[2001:db8:113::10]/")" "upstream 2001:db8:113::10"
is "internet namespace addresses" "$(testnet_exec ip -br -4 addr show dev eth0 | awk '{ $1 = $2 = ""; print }' | xargs)" \
	"203.0.113.53/24 203.0.113.10/24 203.0.113.11/24 203.0.113.30/24 203.0.113.31/24 203.0.113.40/24 \
203.0.113.41/24"
is "global ip_forward untouched" "$(sysctl -n net.ipv4.ip_forward)" "$fwd_before"
is "namespace programs get the test resolver" "$(testnet_exec grep -E '^nameserver' /etc/resolv.conf)" \
	"nameserver 203.0.113.53"

# ---------------------------------------------------------------------------------------------------------
# DNS, asked from the root namespace as the gateway will.
is "allowed.test A" "$(answer allowed.test A)" "allowed.test. 300 A 203.0.113.10"
is "allowed.test AAAA" "$(answer allowed.test AAAA)" "allowed.test. 300 AAAA 2001:db8::10"
is "www.allowed.test CNAME" "$(short www.allowed.test CNAME)" "allowed.test."
is "www.allowed.test A follows the CNAME" "$(short www.allowed.test A | tail -n 1)" "203.0.113.10"
is "chain.test CNAME" "$(short chain.test CNAME)" "www.allowed.test."
is "chain.test A: two CNAMEs then the address" "$(short chain.test A | paste -sd' ')" \
	"www.allowed.test. allowed.test. 203.0.113.10"
is "other.test A" "$(short other.test A)" "203.0.113.11"
is "denied.test A" "$(short denied.test A)" "203.0.113.11"
is "loopback.test A" "$(short loopback.test A)" "127.0.0.1"
is "pool.test A" "$(short pool.test A)" "10.201.0.2"
is "many.test has 8 A records" "$(short many.test A | sort -t. -k4n | paste -sd' ')" \
	"$(printf '203.0.113.%s ' 20 21 22 23 24 25 26 27 | sed 's/ $//')"
is "short.test TTL 1" "$(answer short.test A)" "short.test. 1 A 203.0.113.10"
is "long.test TTL 604800" "$(answer long.test A)" "long.test. 604800 A 203.0.113.10"
is "txt.test TXT" "$(short txt.test TXT)" '"hello"'
is "v6only.test: AAAA only" "$(short v6only.test AAAA)/$(short v6only.test A)" "2001:db8:113::10/"
is "dual.test: both families" "$(short dual.test A) $(short dual.test AAAA)" "203.0.113.10 2001:db8:113::10"
is "slow6.test: an IPv6 address nobody holds" "$(short slow6.test AAAA)" "2001:db8:113::99"
is "mapped.test: an IPv4-mapped loopback AAAA" "$(short mapped.test AAAA)" "::ffff:127.0.0.1"
is "nat64, 6to4 and Teredo forms of loopback" \
	"$(short nat64.test AAAA) $(short sixtofour.test AAAA) $(short teredo.test AAAA)" \
	"64:ff9b::7f00:1 2002:7f00:1::1 2001:0:cb00:7101::80ff:fffe"
is "mixed.test: good and loopback addresses in both families" \
	"$(short mixed.test A | sort | paste -sd' ') / $(short mixed.test AAAA | sort | paste -sd' ')" \
	"127.0.0.3 127.0.0.4 203.0.113.10 / 2001:db8:113::10 ::ffff:127.0.0.1"
is "wide.test has 70 A records (over TCP)" "$(short +tcp wide.test A | grep -c '^203\.0\.113\.1[0-6][0-9]$')" "70"
is "b0.bench.test A" "$(short b0.bench.test A)" "203.0.113.10"
is "b999.bench.test A" "$(short b999.bench.test A)" "203.0.113.10"
check "b1000.bench.test is NXDOMAIN" bash -c 'kdig @203.0.113.53 +timeout=1 +retry=0 b1000.bench.test A | grep -q "status: NXDOMAIN"'
check "answers are authoritative" bash -c 'kdig @203.0.113.53 +timeout=1 +retry=0 allowed.test A | grep -qi "flags: qr aa"'
is "DNS over TCP" "$(short +tcp allowed.test A)" "203.0.113.10"
is "knotd answers on 127.0.0.1 inside the namespace" \
	"$(testnet_exec kdig @127.0.0.1 +timeout=1 +retry=0 +short other.test A)" "203.0.113.11"

# ---------------------------------------------------------------------------------------------------------
# Upstream servers, by address only.
is "HTTP on 203.0.113.10" "$(curl --noproxy '*' -s --max-time 3 http://203.0.113.10/)" "upstream 203.0.113.10"
is "HTTP on 203.0.113.11" "$(curl --noproxy '*' -s --max-time 3 http://203.0.113.11/)" "upstream 203.0.113.11"
is "HTTP 404 for a missing path" "$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 3 http://203.0.113.10/nope)" "404"
# shellcheck disable=SC2016 # for the inner shell
is "banner and echo on 203.0.113.10:22" "$(timeout 3 bash -c 'exec 3<>/dev/tcp/203.0.113.10/22
	IFS= read -r banner <&3; printf "ping\n" >&3; IFS= read -r echo <&3; printf "%s|%s" "$banner" "$echo"' | tr -d '\r')" \
	"SSH-2.0-crgw-testnet 203.0.113.10|ping"
check "nothing listens on 203.0.113.11:22" bash -c '! timeout 2 bash -c "exec 3<>/dev/tcp/203.0.113.11/22" 2>/dev/null'

# ---------------------------------------------------------------------------------------------------------
# HTTPS with the test CA, asked from inside the namespace (clients there see no machine CA variables).
pki=$TN_STATE/pki
is "TN_CA is exported and in testnet.env" "$(bash -c 'echo "$TN_CA"'):$(grep '^TN_CA=' "$TN_STATE/testnet.env")" \
	"$pki/ca.pem:TN_CA=$pki/ca.pem"
is "the CA key is readable by root only" "$(stat -c %a "$pki/ca.key")" "600"
is "the server certificate verifies against the test CA" "$(openssl verify -CAfile "$TN_CA" "$pki/server.pem" 2>&1)" \
	"$pki/server.pem: OK"
check "the test CA is a CA (basicConstraints CA:TRUE)" \
	grep -q 'CA:TRUE' <<<"$(openssl x509 -in "$TN_CA" -noout -ext basicConstraints)"
for a in "$TN_WEB1" "$TN_WEB2"; do
	is "HTTPS on $a verifies for allowed.test with --cacert \$TN_CA" \
		"$(testnet_exec curl -s --max-time 3 --cacert "$TN_CA" --resolve "allowed.test:443:$a" https://allowed.test/)" \
		"upstream $a"
done
is "HTTPS for a name of the zone two labels deep (www.allowed.test)" \
	"$(testnet_exec curl -s --max-time 3 --cacert "$TN_CA" --resolve "www.allowed.test:443:$TN_WEB2" \
		https://www.allowed.test/)" "upstream $TN_WEB2"
is "HTTPS by address (IP subjectAltName)" \
	"$(testnet_exec curl -s --max-time 3 --cacert "$TN_CA" "https://$TN_WEB1/")" "upstream $TN_WEB1"
# curl exits 60 when it cannot verify the peer's certificate.
is "without the test CA, verification fails" \
	"$(testnet_exec curl -s -o /dev/null --max-time 3 --resolve "allowed.test:443:$TN_WEB1" https://allowed.test/
		echo "$?")" "60"
is "a name the certificate does not cover fails verification" \
	"$(testnet_exec curl -s -o /dev/null --max-time 3 --cacert "$TN_CA" --resolve "crgw.invalid:443:$TN_WEB1" \
		https://crgw.invalid/
		echo "$?")" "60"

# ---------------------------------------------------------------------------------------------------------
# HTTP/1.1 details the proxy tests rely on: /echo, keep-alive, pipelining, large files.
# echo_summary: one line from an /echo answer, "METHOD TARGET VERSION BODY-LENGTH SHA256 X-Test-VALUE REQUEST".
echo_summary() {
	jq -r '"\(.method) \(.target) \(.version) \(.body_length) \(.body_sha256) " +
		([.headers[] | select(.[0] == "X-Test") | .[1]] | join(",")) + " \(.request)"'
}
sha_hello=$(printf 'hello' | sha256sum | cut -d' ' -f1)
out=$(testnet_exec curl -s --max-time 3 -X POST --data-binary hello -H 'X-Test: one' \
	"http://$TN_WEB1/echo?x=1")
is "/echo reports a POST: method, target, version, body length and sha256, headers" \
	"$(echo_summary <<<"$out")" "POST /echo?x=1 HTTP/1.1 5 $sha_hello one 1"
is "... headers in arrival order, names as sent" \
	"$(jq -r '[.headers[][0]] | join(" ")' <<<"$out")" \
	"Host User-Agent Accept X-Test Content-Length Content-Type"
out=$(printf 'hello' | testnet_exec curl -s --max-time 3 -X PUT -T - -H 'X-Test: two' --cacert "$TN_CA" \
	--resolve "other.test:443:$TN_WEB2" https://other.test/echo)
is "/echo over HTTPS reads a chunked body" "$(echo_summary <<<"$out")" "PUT /echo HTTP/1.1 5 $sha_hello two 1"
is "/echo answers HEAD with headers only" \
	"$(testnet_exec curl -s --max-time 3 -I -o /dev/null -w '%{http_code} %{content_type} %{size_download}' \
		"http://$TN_WEB1/echo")" "200 application/json 0"
is "/chunked/NAME sends the file with the chunked coding" \
	"$(testnet_exec curl -s --max-time 3 -D - "http://$TN_WEB1/chunked/index.html" | tr -d '\r' |
		grep -i -e '^transfer-encoding' -e '^upstream' | paste -sd'|')" "Transfer-Encoding: chunked|upstream $TN_WEB1"
is "keep-alive over HTTP: two requests, one connection" \
	"$(testnet_exec curl -s --max-time 3 -o /dev/null -o /dev/null -w '%{num_connects} ' \
		"http://$TN_WEB1/" "http://$TN_WEB1/echo")" "1 0 "
is "keep-alive over HTTPS: two requests, one connection" \
	"$(testnet_exec curl -s --max-time 3 -o /dev/null -o /dev/null -w '%{num_connects} ' --cacert "$TN_CA" \
		--resolve "allowed.test:443:$TN_WEB1" https://allowed.test/ https://allowed.test/echo)" "1 0 "
# Two requests in one write, the first with a body: each is answered, in order, on the same connection.
# shellcheck disable=SC2016 # for the inner shell
out=$(testnet_exec timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/80"
	printf "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET http://a/echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" >&3
	cat <&3' _ "$TN_WEB1" | tr -d '\r')
is "pipelined requests are answered separately, in order" \
	"$(grep -c '^HTTP/1.1 200 ' <<<"$out") $(grep '^{' <<<"$out" | echo_summary | paste -sd'|')" \
	"2 POST /echo HTTP/1.1 5 $sha_hello  1|GET http://a/echo HTTP/1.1 0 $(sha256sum </dev/null | cut -d' ' -f1)  2"
head -c $((4 << 20)) /dev/urandom >"$TN_STATE/www/$TN_WEB1/blob"
sha_blob=$(sha256sum <"$TN_STATE/www/$TN_WEB1/blob" | cut -d' ' -f1)
is "a 4 MiB file over HTTP (sendfile) arrives intact" \
	"$(curl --noproxy '*' -s --max-time 5 "http://$TN_WEB1/blob" | sha256sum | cut -d' ' -f1)" "$sha_blob"
is "a 4 MiB file over HTTPS arrives intact" \
	"$(curl --noproxy '*' -s --max-time 5 --cacert "$TN_CA" "https://$TN_WEB1/blob" | sha256sum | cut -d' ' -f1)" \
	"$sha_blob"

# ---------------------------------------------------------------------------------------------------------
# Credentialed upstreams: git over TLS behind a password, the proxy that resets, the API and its token, a
# certificate the test CA did not issue. git runs in the root namespace, as mediation and the benchmark
# run it, with testnet_git's options (fixed addresses: it looks up no name) and none of the machine's
# configuration.
tgit() {
	GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0 timeout 60 git "$@"
}
mapfile -t gitopts < <(testnet_git)
mapfile -t anonopts < <(testnet_git --anonymous)
small_head=3ad3632b9815108a7cfe28f0b7087ca1f1f1bad3
is "credentialed upstreams: variables exported" \
	"$(bash -c 'echo "$TN_GIT $TN_GIT_RESET $TN_API $TN_BADCERT $TN_GIT_USER"')" \
	"203.0.113.30 203.0.113.31 203.0.113.40 203.0.113.41 crgw-tester"
check "testnet.env lists TN_GIT_ROOT and the secret files" grep -qxF -e "TN_GIT_ROOT=$TN_GIT_ROOT" \
	-e "TN_GIT_PASSWORD_FILE=$TN_GIT_PASSWORD_FILE" -e "TN_API_TOKEN_FILE=$TN_API_TOKEN_FILE" "$TN_STATE/testnet.env"
is "... all three of them" "$(grep -cE '^TN_(GIT_ROOT|GIT_PASSWORD_FILE|API_TOKEN_FILE)=/' "$TN_STATE/testnet.env")" "3"
is "git.test, git2.test, reset.git.test, api.test, badcert.test A" \
	"$(short git.test A) $(short git2.test A) $(short reset.git.test A) $(short api.test A) $(short badcert.test A)" \
	"203.0.113.30 203.0.113.30 203.0.113.31 203.0.113.40 203.0.113.41"
for f in "$TN_GIT_PASSWORD_FILE" "$TN_API_TOKEN_FILE"; do
	is "${f##*/}: mode 0600, 48 characters, no newline" "$(stat -c %a "$f") $(wc -c <"$f") $(wc -l <"$f")" "600 48 0"
done
check "the password and the token differ" [ "$(<"$TN_GIT_PASSWORD_FILE")" != "$(<"$TN_API_TOKEN_FILE")" ]
is "TN_GIT_ROOT is world-readable" "$(stat -c %a "$TN_GIT_ROOT")" "755"
is "a new certificate name: reset.git.test verifies against the test CA" \
	"$(openssl verify -CAfile "$TN_CA" -verify_hostname reset.git.test "$pki/server.pem" 2>&1)" "$pki/server.pem: OK"

# git.test
out=$(tgit "${gitopts[@]}" clone -q https://git.test/org/small.git "$tmp/small" 2>&1)
is "authenticated clone of org/small.git: five commits on main" \
	"$(git -C "$tmp/small" rev-list --count HEAD 2>/dev/null) $(git -C "$tmp/small" symbolic-ref --short HEAD 2>/dev/null)" \
	"5 main"
[ -z "$out" ] || diag "$out"
is "... the same commit ids on every run" "$(git -C "$tmp/small" rev-parse HEAD 2>/dev/null)" "$small_head"
out=$(tgit "${anonopts[@]}" clone -q https://git.test/org/small.git "$tmp/anonymous" 2>&1)
rc=$?
if [ "$rc" != 0 ] && [ ! -e "$tmp/anonymous/.git" ]; then
	ok "anonymous clone fails (git: $(tail -n 1 <<<"$out"))"
else
	not_ok "anonymous clone fails"
fi
# status_of PATH [CURL-ARGS...]: the HTTP status git.test answers for PATH.
status_of() {
	local path=$1
	shift
	curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$TN_CA" \
		--resolve "git.test:443:$TN_GIT" "$@" "https://git.test$path"
}
is "without credentials every path is 401: info/refs, git-upload-pack, git-receive-pack, /, a missing repository" \
	"$(status_of '/org/small.git/info/refs?service=git-upload-pack') $(status_of /org/small.git/git-upload-pack -d x) \
$(status_of /org/small.git/git-receive-pack -d x) $(status_of /) $(status_of /org/none.git/info/refs)" "401 401 401 401 401"
is "a wrong password is 401 too" "$(status_of '/org/small.git/info/refs?service=git-upload-pack' -u "$TN_GIT_USER:wrong")" "401"
is "the right password is 200 (curl)" \
	"$(testnet__curl_git git.test "$TN_GIT" '/org/small.git/info/refs?service=git-upload-pack' -o /dev/null -w '%{http_code}')" "200"
out=$(cd "$tmp/small" && printf 'pushed\n' >pushed.txt && git add pushed.txt &&
	tgit -c user.name=selftest -c user.email=selftest@crgw.test commit -q -m pushed &&
	tgit "${gitopts[@]}" push -q origin HEAD:refs/heads/selftest 2>&1)
is "push with credentials: the server has the new branch" \
	"$(git --git-dir "$TN_GIT_ROOT/org/small.git" rev-parse -q --verify refs/heads/selftest)" \
	"$(git -C "$tmp/small" rev-parse HEAD)"
[ -z "$out" ] || diag "$out"
out=$(cd "$tmp/small" && tgit "${anonopts[@]}" push -q origin HEAD:refs/heads/anonymous 2>&1)
check "push without credentials fails, nothing arrives" \
	[ -z "$(git --git-dir "$TN_GIT_ROOT/org/small.git" rev-parse -q --verify refs/heads/anonymous)" ]
git init -q --bare -b main "$TN_GIT_ROOT/org/later.git"
out=$(cd "$tmp/small" && tgit "${gitopts[@]}" push -q https://git.test/org/later.git HEAD:refs/heads/main 2>&1 &&
	tgit "${gitopts[@]}" ls-remote https://git.test/org/later.git refs/heads/main)
is "a repository a test adds later is served and takes pushes" "${out%%$'\t'*}" "$(git -C "$tmp/small" rev-parse HEAD)"
out=$(GIT_TRACE_PACKET=1 tgit "${gitopts[@]}" -c protocol.version=2 ls-remote https://git.test/org/small.git 2>&1)
if grep -q "git< version 2" <<<"$out" && grep -q "^$small_head"$'\t'"refs/heads/main$" <<<"$out"; then
	ok "protocol v2: the server answers 'version 2' and ls-refs lists main"
else
	not_ok "protocol v2: the server answers 'version 2' and ls-refs lists main"
	diag "$(grep -v 'pkt-line.c.*git> \|sideband' <<<"$out" | tail -n 5)"
fi
is "git2.test is the same server" \
	"$(tgit "${gitopts[@]}" ls-remote https://git2.test/org/small.git refs/heads/main 2>&1)" "$small_head"$'\t'"refs/heads/main"

# reset.git.test
rm -rf "$tmp/small-reset"
out=$(tgit "${gitopts[@]}" clone -q https://reset.git.test/org/small.git "$tmp/small-reset" 2>&1)
is "reset.git.test: a small clone (under 1 MiB) passes whole" "$(git -C "$tmp/small-reset" rev-parse HEAD 2>&1)" "$small_head"
# A repository whose pack is larger than 1 MiB: 2 MiB that do not compress.
mkdir -p "$tmp/medium"
tgit init -q -b main "$tmp/medium" && head -c $((2 << 20)) /dev/urandom >"$tmp/medium/blob" &&
	tgit -C "$tmp/medium" add blob && tgit -C "$tmp/medium" -c user.name=s -c user.email=s@crgw.test commit -q -m blob &&
	tgit clone -q --bare "$tmp/medium" "$TN_GIT_ROOT/org/medium.git"
out=$(tgit "${gitopts[@]}" clone -q https://git.test/org/medium.git "$tmp/medium-direct" 2>&1)
check "a 2 MiB repository clones straight from git.test" [ "$(git -C "$tmp/medium-direct" rev-parse HEAD 2>&1)" = "$(git -C "$tmp/medium" rev-parse HEAD)" ]
t=$EPOCHREALTIME
out=$(tgit "${gitopts[@]}" clone -q https://reset.git.test/org/medium.git "$tmp/medium-reset" 2>&1)
rc=$?
if [ "$rc" != 0 ] && grep -q 'Connection reset by peer' <<<"$out"; then
	ok "through reset.git.test its clone is cut: git fails, connection reset by peer ($(elapsed "$t") s)"
else
	not_ok "through reset.git.test its clone is cut"
	diag "git exit $rc" "$out"
fi
check "... after exactly 1 MiB of body (the proxy's log)" grep -q 'reset after 1048576 bytes of body' "$TN_STATE/log/git-reset.log"
out=$(testnet__curl_git reset.git.test "$TN_GIT_RESET" '/reset-after/100/org/small.git/info/refs?service=git-upload-pack' \
	-o /dev/null -w '%{http_code} %{size_download}' 2>&1; echo " $?")
is "/reset-after/100/: status 200, 100 bytes, then a reset (curl exit 56)" "$out" "200 100 56"

# api.test
token=$(<"$TN_API_TOKEN_FILE")
api() {
	curl --noproxy '*' -s --max-time 10 --cacert "$TN_CA" --resolve "api.test:443:$TN_API" "$@"
}
is "api.test /whoami with the token: token_ok true" \
	"$(api -H "Authorization: Bearer $token" https://api.test/whoami | jq -c .)" \
	"{\"token_ok\":true,\"authorization\":\"Bearer $token\"}"
is "... without it: false, null" "$(api https://api.test/whoami | jq -c .)" '{"token_ok":false,"authorization":null}'
is "... with another token: false" "$(api -H 'Authorization: Bearer nope' https://api.test/whoami | jq -c .token_ok)" "false"
out=$(api -X PATCH -H 'X-Test: one' -H 'X-Test: two' --data-binary 'hello api' 'https://api.test/echo?a=1')
is "/echo: method, path, body" "$(jq -r '"\(.method) \(.path) \(.body)"' <<<"$out")" "PATCH /echo?a=1 hello api"
is "... and the headers in order, repeats kept" "$(jq -r '[.headers[] | .[0] + "=" + .[1]] | join(" ")' <<<"$out")" \
	"Host=api.test User-Agent=curl/7.88.1 Accept=*/* X-Test=one X-Test=two Content-Length=9 Content-Type=application/x-www-form-urlencoded"
out=$(api -o /dev/null -w '%{http_code} %{time_starttransfer} %{time_total}' 'https://api.test/slow?seconds=2')
read -r code first total <<<"$out"
check "/slow?seconds=2: headers at once ($first s), the body after 2 s ($total s)" \
	awk -v c="$code" -v f="$first" -v t="$total" 'BEGIN { exit !(c == 200 && f < 1 && t >= 2) }'
api -o /dev/null 'https://api.test/slow?seconds=2' &
slow=$!
sleep 0.2
out=$(api -o /dev/null -w '%{http_code} %{time_total}' https://api.test/whoami)
check "another request is answered while /slow stalls ($out s)" awk -v o="$out" 'BEGIN { split(o, a, " "); exit !(a[1] == 200 && a[2] < 1) }'
wait "$slow"
out=$(api -o /dev/null https://api.test/reset 2>&1; echo "$?")
is "/reset: the connection is reset (curl exit 56)" "$out" "56"
is "/redirect?to=URL: 302 and Location" \
	"$(api -o /dev/null -w '%{http_code} %{redirect_url}' 'https://api.test/redirect?to=https://allowed.test/x')" \
	"302 https://allowed.test/x"
is "/reflect: the body comes back" \
	"$(head -c 100000 /dev/zero | tr '\0' x | api --data-binary @- https://api.test/reflect | sha256sum | cut -d' ' -f1)" \
	"$(head -c 100000 /dev/zero | tr '\0' x | sha256sum | cut -d' ' -f1)"
is "anything else: 404 with JSON" "$(api -w ' %{http_code}' https://api.test/nowhere)" '{"error": "not found", "path": "/nowhere"}
 404'
is "keep-alive: two requests, one connection" \
	"$(api -o /dev/null -o /dev/null -w '%{num_connects} ' https://api.test/whoami https://api.test/echo)" "1 0 "

# badcert.test
out=$(testnet_exec curl -s -o /dev/null --max-time 3 --cacert "$TN_CA" https://badcert.test/whoami; echo "$?")
is "badcert.test fails verification with the test CA (curl exit 60, name looked up in the zone)" "$out" "60"
# shellcheck disable=SC2016 # for the inner shell
check "... its certificate is not the test CA's" bash -c '! openssl verify -CAfile "$1" "$2" >/dev/null 2>&1' _ "$TN_CA" "$pki/badcert.pem"
out=$(tgit "${gitopts[@]}" -c http.curloptResolve=badcert.test:443:"$TN_BADCERT" ls-remote https://badcert.test/org/small.git 2>&1)
check "... and git refuses it (git: $(grep -m1 -o 'server certificate verification failed' <<<"$out"))" \
	grep -q 'server certificate verification failed' <<<"$out"
is "unverified, it is the API" "$(testnet_exec curl -s --insecure --max-time 3 https://badcert.test/whoami | jq -c .token_ok)" "false"

# The large repository, only if it is cached already (making it takes a while and 260 MB).
if testnet_git_big_cached; then
	t=$EPOCHREALTIME
	testnet_git_big_repo
	took=$(elapsed "$t")
	is "testnet_git_big_repo installs org/big.git from the cache ($took s)" \
		"$(tgit "${gitopts[@]}" ls-remote https://git.test/org/big.git refs/heads/main 2>&1)" \
		"e73e1a810fa2175419e851aca7be6aeb7184a4ca"$'\t'"refs/heads/main"
else
	skip "testnet_git_big_repo installs org/big.git from the cache" "no cache in $TN_GIT_BIG_CACHE_DIR"
fi

recorded=("$TN_STATE"/pids/*.pid)
is "eleven services recorded" "${#recorded[@]}" "11"
in_ns=1
for f in "${recorded[@]}"; do
	read -r pid _ <"$f"
	[ "$(ip netns identify "$pid")" = "$TN_NS" ] || in_ns=0
done
check "recorded services run inside the namespace" [ "$in_ns" = 1 ]
cp "${recorded[@]}" "$tmp/"
recorded=("$tmp"/*.pid)

# ---------------------------------------------------------------------------------------------------------
# A second network cannot come up while this one is: it waits, then gives up, and leaves nothing behind.
second=$(TN_LOCK_WAIT=1 bash -c 'source "$1"; testnet_up "$2"; echo "rc=$? prefix=$TN_PREFIX"' _ "$lib" "$tmp/second" 2>&1)
second_prefix=${second##*prefix=}
check "a second testnet_up gives up while this network is up" grep -q "rc=1" <<<"$second"
check "it says who holds the network" grep -q "held by prefix $TN_PREFIX, PID $$" <<<"$second"
check "it leaves nothing behind" nothing_left "$second_prefix"
check "this network still answers" testnet__dns_ready

# ---------------------------------------------------------------------------------------------------------
# Down, in two steps so the blackhole can be seen doing its job once the veth is gone.
# (stderr to /dev/null: the subshell's "Terminated" notice when testnet_down kills the sleep)
testnet_exec sleep 300 2>/dev/null &
stray=$!
sleep 0.2
t=$EPOCHREALTIME
testnet_down --keep-blackhole
diag "testnet_down took $(elapsed "$t") s"
check "namespace is gone" [ -z "$(ip netns list | grep "^$TN_NS\b")" ]
check "veth is gone" [ ! -e "/sys/class/net/$TN_VETH" ]
check "recorded services are dead" all_dead "${recorded[@]}"
check "a stray process in the namespace is gone too" gone "$stray"
check "203.0.113.99 is blackholed once the veth is gone" blackholed 203.0.113.99 203.0.113.0/24
testnet_down
blackholes_gone_check "blackholes removed last"
check "nothing named $TN_PREFIX remains" nothing_left "$TN_PREFIX"
out=$(testnet_down 2>&1)
rc=$?
is "testnet_down again: quiet success" "$rc:$out" "0:"

# ---------------------------------------------------------------------------------------------------------
# A script that owns the network and is killed: TERM runs its cleanups; KILL leaves the reaper to it.
cat >"$tmp/child.sh" <<'EOF'
set -euo pipefail
source "$1"
dir=$2
testnet_on_exit "touch '$dir/on-exit-ran'"
printf '%s\n' "$$" >"$dir/pid"
printf '%s\n' "$TN_PREFIX" >"$dir/prefix"
testnet_up "$dir/state"
cp "$dir/state/pids/"*.pid "$dir/"
sleep 60 &
sleeper=$!
testnet_on_exit "kill $sleeper"
touch "$dir/up"
wait "$sleeper"
EOF

# stop_child NAME: TERM the child if it still runs and give it 10 s to clean up after itself.
stop_child() {
	local pid
	[ -e "$tmp/$1/pid" ] && [ ! -e "$tmp/$1/status" ] || return 0
	read -r pid <"$tmp/$1/pid"
	kill -TERM "$pid" 2>/dev/null
	await_file "$tmp/$1/status" 100
}

# run_child NAME: starts the child script in the background, sets cpid (the child's own PID) once its
# network is up; its exit status lands in $tmp/NAME/status. The wrapper's stderr goes to /dev/null only
# to keep bash's "Terminated"/"Killed" job notices out of the test output.
run_child() {
	local dir=$tmp/$1
	mkdir -p "$dir"
	# If this test is killed while the child holds the network, the child must let go of it too.
	testnet_on_exit "stop_child $1"
	(
		bash "$tmp/child.sh" "$lib" "$dir" >"$dir/out" 2>&1
		echo "$?" >"$dir/status"
	) 2>/dev/null &
	# Generous: a parallel run of this test may hold the network for a few seconds first.
	if ! await_file "$dir/up" $(((TN_LOCK_WAIT + 15) * 10)); then
		diag "child $1 did not come up:" "$(cat "$dir/out")"
		[ -e "$dir/pid" ] && kill -KILL "$(cat "$dir/pid")" 2>/dev/null
		return 1
	fi
	cpid=$(cat "$dir/pid")
}

if run_child term; then
	ok "child brought the network up"
	cprefix=$(cat "$tmp/term/prefix")
	t=$EPOCHREALTIME
	kill -TERM "$cpid"
	is "child died of SIGTERM" "$(await_exit term)" "143"
	diag "TERM to clean: $(elapsed "$t") s"
	check "its testnet_on_exit command ran" [ -e "$tmp/term/on-exit-ran" ]
	check "its services are dead" all_dead "$tmp"/term/*.pid
	check "nothing named $cprefix remains" nothing_left "$cprefix"
	blackholes_gone_check "its blackholes are gone"
else
	not_ok "child brought the network up"
fi

if run_child kill; then
	ok "second child brought the network up"
	cprefix=$(cat "$tmp/kill/prefix")
	kill -KILL "$cpid"
	is "child died of SIGKILL" "$(await_exit kill)" "137"
	t=$EPOCHREALTIME
	testnet_reap_stale
	diag "testnet_reap_stale took $(elapsed "$t") s"
	check "testnet_reap_stale killed its services" all_dead "$tmp"/kill/*.pid
	check "testnet_reap_stale left nothing named $cprefix" nothing_left "$cprefix"
	blackholes_gone_check "testnet_reap_stale removed the blackholes"
else
	not_ok "second child brought the network up"
fi

# ---------------------------------------------------------------------------------------------------------
# The reaper is conservative: a bare crgwtn<N>-net with no claim file goes, anything else named crgwtn stays.
keep=crgwtnkeep$((RANDOM % 1000))-net
testnet_on_exit "ip netns del $keep 2>/dev/null"
ip netns add "$keep"
ip netns add "$TN_PREFIX-net"
ip link add "${TN_PREFIX}u" type veth peer name eth0 netns "$TN_PREFIX-net"
testnet_reap_stale
check "reaper removes an unclaimed $TN_PREFIX-net and its veth" nothing_left "$TN_PREFIX"
check "reaper leaves $keep alone" ip netns exec "$keep" true
ip netns del "$keep"

# testnet_kill is bounded even for a process that ignores TERM.
bash -c 'trap "" TERM; while :; do sleep 0.1; done' &
stubborn=$!
sleep 30 &
polite=$!
disown "$stubborn" "$polite" # no "Killed" job notices in the output
sleep 0.2
t=$EPOCHREALTIME
testnet_kill "$stubborn" "$polite"
took=$(elapsed "$t")
check "testnet_kill stops a process that ignores TERM" gone "$stubborn"
check "testnet_kill stops a process that obeys TERM" gone "$polite"
check "testnet_kill took at most 3 s ($took s)" awk -v t="$took" 'BEGIN { exit !(t <= 3) }'

diag "total $(elapsed "$t0") s"
printf '1..%d\n' "$n"
[ "$failures" = 0 ]
