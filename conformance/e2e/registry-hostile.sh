#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Registry mediation against bad input and hostile upstreams. The test network's api.test serves an npm
# registry whose packages misbehave by name (testnet_servers.py, "The hostile npm registry"); the gateway's
# policy allows [api.test, npm.test] with the api token as api.test's credential, and lockfiles written
# here name those packages with integrities computed here from the bytes the server serves. From inside
# crgw-ctl run sandboxes, with curl and npm: a packument over cache.max_metadata_bytes (with and without
# Content-Length), one gzip-encoded unasked, another package's, one that redirects and one that stalls are
# refused (502, upstream_unreachable); a version whose
# tarball lives outside allowed_hosts is dropped and never fetched; tarballs that reset, stall past
# mediation.idle_timeout, announce more than they send or do not match are cut before their last bytes,
# audited and never cached; a gzip bomb and a tar that climbs out pass only when they match the lockfile;
# redirects are followed to allowed hosts only; clients that follow a failing fetch through the cache are
# cut with the leader's reason; hostile request paths and methods get 4xx with a reason; a learn-mode
# sandbox whose policy leaves api.test out gets neither api.test's token nor what the cache holds from it.
# At the end crgw is alive, answers, and its RSS is sane.
# TAP output. Needs root.
# usage: registry-hostile.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

T=$(mktemp -d /tmp/crgw-e2e-hostile.XXXXXX)
chmod 0755 "$T"
testnet_on_exit '[ -n "${CRGW_E2E_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"'
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
testnet_registries_up || { echo "Bail out! the test registries did not come up"; exit 1; }
AUDIT=$T/audit.log
IDLE=3

cat >"$T/crgw.yaml" <<EOF
secrets:
  api_token: { file: $TN_API_TOKEN_FILE }
  npm_token: { file: $TN_NPM_TOKEN_FILE }
registries:
  credentials:
    api.test: { secret: api_token, scheme: bearer }
    npm.test: { secret: npm_token, scheme: bearer }
mediation:
  ca_file: $TN_CA
  idle_timeout: $IDLE
cache:
  metadata_ttl_seconds: 0
  max_metadata_bytes: 65536
EOF
gw_start "$T" --config "$T/crgw.yaml" --set learn.allowed=true || { echo "Bail out! crgw did not start"; exit 1; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$GW_PID/status" 2>/dev/null || echo 0; }
rss_start=$(rss)

# ---- the bytes the hostile registry serves, and lockfiles made from them ---------------------------------
# From the root namespace, straight to api.test with the token (given on stdin: never on a command line).
api_get() { # api_get PATH OUT: the body into OUT; prints the status
	printf 'header = "Authorization: Bearer %s"\n' "$(<"$TN_API_TOKEN_FILE")" |
		curl --noproxy '*' -s -K - --cacert "$TN_CA" --resolve "api.test:443:$TN_API" --max-time 30 \
			-o "$2" -w '%{http_code}' "https://api.test$1"
}
sri() { printf 'sha512-%s' "$(openssl dgst -sha512 -binary "$1" | base64 -w0)"; }
hex512() { openssl dgst -sha512 -r "$1" | cut -d' ' -f1; }
sri_hex() { sed 's/^sha512-//' <<<"$1" | base64 -d | od -An -tx1 -v | tr -d ' \n'; }

TARBALLS="plain reset stall short tampered gzbomb traversal redirect-same redirect-loop redirect-out redirect-http noint"
declare -A INTEG SIZE
mkdir -p "$T/genuine"
fetched=0
for n in $TARBALLS offsite; do
	code=$(api_get "/@hostile/-/genuine/$n-1.0.0.tgz" "$T/genuine/$n.tgz")
	[ "$code" = 200 ] && fetched=$((fetched + 1))
	INTEG[$n]=$(sri "$T/genuine/$n.tgz")
	SIZE[$n]=$(stat -c %s "$T/genuine/$n.tgz")
done
api_get /@hostile/-/genuine/offsite-1.1.0.tgz "$T/genuine/offsite-1.1.0.tgz" >/dev/null
INTEG[offsite-1.1.0]=$(sri "$T/genuine/offsite-1.1.0.tgz")
INTEG[redirect-npm]=$(jq -r '.packages["node_modules/crgw-dep-39"].integrity' "$TN_NPM_PROJECT/package-lock.json")
check "the hostile registry serves the genuine bytes of every tarball ($fetched of 13)" -- test "$fetched" = 13
code=$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --cacert "$TN_CA" --resolve "api.test:443:$TN_API" \
	https://api.test/@hostile%2fplain)
check "it wants the token: 401 without ($code)" -- test "$code" = 401
code=$(api_get "/@hostile/tampered/-/tampered-1.0.0.tgz" "$T/tampered.served")
check "its tampered tarball differs from the genuine one" -- \
	test "$code" = 200 -a "$(hex512 "$T/tampered.served")" != "$(hex512 "$T/genuine/tampered.tgz")"

# lockfile DIR NAME=INTEGRITY...: package.json and a v3 package-lock.json naming @hostile/NAME@1.0.0 (NAME
# may be NAME@VERSION), resolved from api.test, with that integrity.
lockfile() {
	local dir=$1 spec name version deps='{}' pkgs='{}'
	shift
	mkdir -p "$dir"
	for spec in "$@"; do
		name=${spec%%=*}
		version=1.0.0
		[[ "$name" == *@* ]] && version=${name#*@} name=${name%@*}
		deps=$(jq -c --arg n "@hostile/$name" --arg v "$version" '. + {($n): $v}' <<<"$deps")
		pkgs=$(jq -c --arg k "node_modules/@hostile/$name" --arg v "$version" --arg i "${spec#*=}" \
			--arg r "https://api.test/@hostile/$name/-/$name-$version.tgz" \
			'. + {($k): {version: $v, resolved: $r, integrity: $i}}' <<<"$pkgs")
	done
	jq -n --argjson d "$deps" '{name: "hostile", version: "1.0.0", dependencies: $d}' >"$dir/package.json"
	jq -n --argjson d "$deps" --argjson p "$pkgs" \
		'{name: "hostile", version: "1.0.0", lockfileVersion: 3, requires: true,
		  packages: ({"": {name: "hostile", version: "1.0.0", dependencies: $d}} + $p)}' >"$dir/package-lock.json"
}
policy() { # policy DIR MODE
	cat >"$1/cleanroom.yaml" <<EOF
version: 1
sandbox:
  network:
    default: deny
registries:
  npm:
    enable: true
    allowed_hosts: [api.test, npm.test]
    lockfile_enforcement: { enabled: true, mode: $2, lockfiles: [package-lock.json] }
EOF
}
run() { # run PROJECT SCRIPT: a sandbox on PROJECT's policy with PROJECT as its read-write workspace
	"$CTL" run --rm --policy "$1/cleanroom.yaml" --workspace "$1" --workspace-mode rw -- bash -c "$2"
}

HOST=$T/host
specs=()
for n in $TARBALLS; do specs+=("$n=${INTEG[$n]}"); done
specs+=("redirect-npm=${INTEG[redirect-npm]}" "offsite@1.0.0=${INTEG[offsite]}")
lockfile "$HOST" "${specs[@]}"
# offsite has two versions: both listed (a second entry under another key, as a nested copy would be).
jq --arg i "${INTEG[offsite-1.1.0]}" '.packages["node_modules/x/node_modules/@hostile/offsite"] =
	{version: "1.1.0", resolved: "https://api.test/@hostile/offsite/-/offsite-1.1.0.tgz", integrity: $i}' \
	"$HOST/package-lock.json" >"$HOST/lock.tmp" && mv "$HOST/lock.tmp" "$HOST/package-lock.json"
policy "$HOST" deny_unknown

# Audit lines since a mark, and the content cache's digests.
mark() { wc -l <"$AUDIT"; }
cache_has() { # cache_has SHA512-HEX: true when the content cache holds that object
	"$CTL" --control "$T/ctl.sock" cache ls --json 2>/dev/null |
		jq -e --arg d "sha512:$1" 'map(select(.digest == $d)) | length > 0' >/dev/null
}
not_cached() { # not_cached SHA512-HEX: the cache answers, and holds nothing of that object
	"$CTL" --control "$T/ctl.sock" cache ls --json 2>/dev/null |
		jq -e --arg d "sha512:$1" 'map(select(.digest == $d)) | length == 0' >/dev/null
}

# ---- packuments ------------------------------------------------------------------------------------------
# Each line: NAME HTTP-CODE BYTES CURL-EXIT REASON; the bodies land in the workspace.
cat >"$HOST/packuments.sh" <<'EOF'
mkdir -p doc
for n in plain big big-chunked gzip offsite noint imposter redirect-doc stall-doc; do
	curl -s --max-time 60 -D "doc/$n.head" -o "doc/$n.json" -w "$n %{http_code} %{size_download}" \
		"$npm_config_registry@hostile%2f$n"
	echo " $? $(tr -d '\r' <"doc/$n.head" | sed -n 's/^[Xx]-[Cc]rgw-[Rr]eason: //p')"
done
EOF
out=$(run "$HOST" 'bash packuments.sh' 2>&1)
diag "$out"
declare -A PCODE PREASON
while read -r n code _ _ reason; do
	PCODE[$n]=$code
	PREASON[$n]=$reason
done <<<"$out"
check "a healthy packument through the gateway, api.test's token presented for it (${PCODE[plain]:-none})" -- \
	test "${PCODE[plain]:-}" = 200
check "its tarball points back at the gateway" -- \
	bash -c "jq -r '.versions[\"1.0.0\"].dist.tarball' '$HOST/doc/plain.json' | grep -q ':8170/registry/npm/api.test/@hostile/plain/-/plain-1.0.0.tgz\$'"
check "a 256 KiB packument with Content-Length, over max_metadata_bytes: 502 upstream_unreachable (${PCODE[big]:-} ${PREASON[big]:-})" -- \
	test "${PCODE[big]:-}" = 502 -a "${PREASON[big]:-}" = upstream_unreachable
check "audited with the package and the size" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .action=="deny" and .reason_code=="upstream_unreachable" and .package=="@hostile/big" and (.detail|test("262[0-9]{3} bytes, over cache.max_metadata_bytes")))'
check "the same, chunked (no Content-Length): 502 upstream_unreachable (${PCODE[big-chunked]:-} ${PREASON[big-chunked]:-})" -- \
	test "${PCODE[big-chunked]:-}" = 502 -a "${PREASON[big-chunked]:-}" = upstream_unreachable
check "audited: larger than cache.max_metadata_bytes" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .reason_code=="upstream_unreachable" and .package=="@hostile/big-chunked" and (.detail|test("larger than cache.max_metadata_bytes")))'
check "a packument gzip-encoded unasked (32 MiB in 32 KiB): 502 upstream_unreachable, never inflated (${PCODE[gzip]:-} ${PREASON[gzip]:-})" -- \
	test "${PCODE[gzip]:-}" = 502 -a "${PREASON[gzip]:-}" = upstream_unreachable
check "audited: the upstream's packument is refused" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .reason_code=="upstream_unreachable" and .package=="@hostile/gzip" and (.detail|startswith("the upstream'"'"'s packument is refused")))'
versions=$(jq -c '[.versions|keys[]]' "$HOST/doc/offsite.json" 2>/dev/null)
check "a version whose dist.tarball is on web1.test is dropped; the other is kept (${PCODE[offsite]:-} $versions)" -- \
	test "${PCODE[offsite]:-}" = 200 -a "$versions" = '["1.1.0"]'
check "nothing in it names web1.test" -- bash -c "! grep -q web1.test '$HOST/doc/offsite.json'"
check "a packument without integrities is served (the lockfile has them) (${PCODE[noint]:-})" -- test "${PCODE[noint]:-}" = 200
check "another package's packument: 502 upstream_unreachable (${PCODE[imposter]:-} ${PREASON[imposter]:-})" -- \
	test "${PCODE[imposter]:-}" = 502 -a "${PREASON[imposter]:-}" = upstream_unreachable
check "audited: for another package" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .package=="@hostile/imposter" and (.detail|test("another package")))'
check "a packument that redirects (to web1.test) is not followed: 502 upstream_unreachable (${PCODE[redirect-doc]:-} ${PREASON[redirect-doc]:-})" -- \
	test "${PCODE[redirect-doc]:-}" = 502 -a "${PREASON[redirect-doc]:-}" = upstream_unreachable
check "audited: the upstream answered 302" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .action=="deny" and .package=="@hostile/redirect-doc" and (.detail|test("answered 302")))'
check "a packument that stalls past idle_timeout: 502 upstream_unreachable (${PCODE[stall-doc]:-} ${PREASON[stall-doc]:-})" -- \
	test "${PCODE[stall-doc]:-}" = 502 -a "${PREASON[stall-doc]:-}" = upstream_unreachable
check "audited: a timeout" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .package=="@hostile/stall-doc" and .reason_code=="upstream_unreachable" and (.detail|test("Timeout")))'

# ---- tarballs --------------------------------------------------------------------------------------------
# Each line: NAME HTTP-CODE BYTES CURL-EXIT SECONDS REASON.
cat >"$HOST/tarballs.sh" <<'EOF'
mkdir -p tgz
for n in $TARBALLS redirect-npm offsite; do
	curl -s --max-time 60 -D "tgz/$n.head" -o "tgz/$n.tgz" -w "$n %{http_code} %{size_download}" \
		"$npm_config_registry@hostile/$n/-/$n-1.0.0.tgz"
	echo " $? $(tr -d '\r' <"tgz/$n.head" | sed -n 's/^[Xx]-[Cc]rgw-[Rr]eason: //p')"
done
EOF
before=$(mark)
out=$(run "$HOST" "TARBALLS='$TARBALLS' bash tarballs.sh" 2>&1)
diag "$out"
declare -A CODE GOT EXIT REASON
while read -r n code got rc reason; do
	CODE[$n]=$code
	GOT[$n]=$got
	EXIT[$n]=$rc
	REASON[$n]=$reason
done <<<"$out"
since() { tail -n +$((before + 1)) "$AUDIT"; }
audit_since() { # audit_since JQ-FILTER: a matching audit line after the mark (waits like audit_has)
	local filter=$1
	for _ in $(seq 50); do
		since | jq -c "$filter" 2>/dev/null | grep -c . >/dev/null && return 0
		sleep 0.1
	done
	return 1
}
same() { test "$(hex512 "$HOST/tgz/$1.tgz" 2>/dev/null)" = "$(sri_hex "$2")"; }

check "a healthy tarball: 200, every byte, its integrity (${CODE[plain]:-} ${GOT[plain]:-} of ${SIZE[plain]})" -- \
	same plain "${INTEG[plain]}"
check "audited: allow with package, version and integrity" -- \
	audit_since 'select(.event=="decision" and .action=="allow" and .package=="@hostile/plain" and .version=="1.0.0" and (.integrity|startswith("sha512:")))'
check "and cached" -- cache_has "$(sri_hex "${INTEG[plain]}")"

# Cut mid-stream: the client's transfer ends early, with fewer bytes than the file, and nothing is cached.
cut_case() { # cut_case NAME WHAT AUDIT-FILTER
	local n=$1 what=$2 filter=$3
	[ "${CODE[$n]:-}" = 200 ] && [ "${GOT[$n]:-0}" -lt "${SIZE[$n]}" ] && [ "${EXIT[$n]:-0}" != 0 ]
	ok $? "$what: the client's transfer is cut short (status ${CODE[$n]:-none}, ${GOT[$n]:-?} of ${SIZE[$n]} bytes, curl exit ${EXIT[$n]:-?})"
	check "$n: audited ($filter)" -- audit_since "select(.package==\"@hostile/$n\" and .version==\"1.0.0\" and $filter)"
	check "$n: the cache holds nothing of it" -- not_cached "$(sri_hex "${INTEG[$n]}")"
}
cut_case reset "a tarball whose upstream resets mid-body" \
	'.event=="decision" and .action=="deny" and .reason_code=="upstream_unreachable" and (.detail|test("mid-artifact.*receiving data"))'
cut_case stall "a tarball whose upstream stalls past idle_timeout (${IDLE} s)" \
	'.event=="decision" and .action=="deny" and .reason_code=="upstream_unreachable" and (.detail|test("mid-artifact.*Timeout"))'
cut_case short "a tarball 4096 bytes short of its Content-Length (every real byte sent)" \
	'.event=="decision" and .action=="deny" and .reason_code=="upstream_unreachable" and (.detail|test("mid-artifact.*partial file"))'
cut_case tampered "a tarball whose bytes do not match the lockfile" \
	'.event=="decision" and .action=="deny" and .reason_code=="integrity_mismatch" and (.detail|test("do not match"))'
check "tampered: the served bytes are not cached either" -- not_cached "$(hex512 "$T/tampered.served")"

# Hostile content that matches the lockfile: passed on as it is (the gateway does not unpack).
check "a gzip bomb (64 MiB of zeros) that matches: 200, the same 64 KiB (${CODE[gzbomb]:-} ${GOT[gzbomb]:-})" -- \
	same gzbomb "${INTEG[gzbomb]}"
check "and cached as it is" -- cache_has "$(sri_hex "${INTEG[gzbomb]}")"
check "a tar that climbs out (../, absolute, through a symlink) that matches: 200, the same bytes (${CODE[traversal]:-} ${GOT[traversal]:-})" -- \
	same traversal "${INTEG[traversal]}"

# Redirects.
check "a redirect to another path of api.test: followed, verified (${CODE[redirect-same]:-} ${GOT[redirect-same]:-})" -- \
	same redirect-same "${INTEG[redirect-same]}"
check "a redirect to npm.test (allowed): followed, verified against the lockfile (${CODE[redirect-npm]:-} ${GOT[redirect-npm]:-})" -- \
	same redirect-npm "${INTEG[redirect-npm]}"
check "audited: its connection ends at npm.test" -- \
	audit_since 'select(.event=="connection_end" and .package=="@hostile/redirect-npm" and .dst_host=="npm.test" and .bytes_down > 0)'
check "a redirect to web1.test (not allowed): 403 host_not_allowed (${CODE[redirect-out]:-} ${REASON[redirect-out]:-})" -- \
	test "${CODE[redirect-out]:-}" = 403 -a "${REASON[redirect-out]:-}" = host_not_allowed
check "audited: host_not_allowed naming web1.test" -- \
	audit_since 'select(.event=="decision" and .reason_code=="host_not_allowed" and .package=="@hostile/redirect-out" and (.detail|test("web1.test")))'
check "a redirect to plain http: 502 upstream_unreachable (${CODE[redirect-http]:-} ${REASON[redirect-http]:-})" -- \
	test "${CODE[redirect-http]:-}" = 502 -a "${REASON[redirect-http]:-}" = upstream_unreachable
check "a redirect loop: 502 (${CODE[redirect-loop]:-} ${REASON[redirect-loop]:-})" -- test "${CODE[redirect-loop]:-}" = 502
check "audited: too many redirects" -- \
	audit_since 'select(.event=="decision" and .reason_code=="upstream_unreachable" and .package=="@hostile/redirect-loop" and .detail=="too many redirects")'
check "the off-site version's tarball asked for directly: api.test's 404, nothing else (${CODE[offsite]:-})" -- \
	test "${CODE[offsite]:-}" = 404
check "web1.test never saw a request for the hostile registry" -- \
	bash -c "! grep -qs '@hostile' '$TN_STATE'/log/*web1*.log"
had=
for n in redirect-out redirect-http redirect-loop offsite; do
	same "$n" "${INTEG[$n]}" && had+=" $n"
done
check "no refused one left the client with its file (${had:-none did})" -- test -z "$had"
check "the off-site version's audit names no host but api.test" -- \
	test -z "$(since | jq -c 'select(.package=="@hostile/offsite" and .dst_host != null and .dst_host != "api.test")')"

# ---- three clients at once: one fetch, the others follow it (the cache's fill), all cut -------------------
# stall (3 s before the cut) and tampered (a 1 s pause halfway) are slow enough for the others to join.
for n in stall tampered; do
	before=$(mark)
	# One echo per client: its line cannot interleave with the others'.
	out=$(run "$HOST" "for i in 1 2 3; do (o=\$(curl -s -o c\$i.tgz -w '$n %{http_code} %{size_download}' --max-time 60 \"\$npm_config_registry@hostile/$n/-/$n-1.0.0.tgz\"); echo \"\$o \$?\") & sleep 0.2; done; wait" 2>&1)
	diag "$out"
	cut=0
	while read -r _ code got rc; do
		[ "$code" = 200 ] && [ "$got" -lt "${SIZE[$n]}" ] && [ "$rc" != 0 ] && cut=$((cut + 1))
	done <<<"$out"
	check "$n: three concurrent clients are all cut short ($cut of 3)" -- test "$cut" = 3
	reason=upstream_unreachable
	[ $n = tampered ] && reason=integrity_mismatch
	denied=$(since | jq -s --arg n "@hostile/$n" --arg r $reason '[.[] | select(.event=="decision" and .action=="deny" and .package==$n and .reason_code==$r)] | length')
	followed=$(since | jq -s --arg n "@hostile/$n" '[.[] | select(.event=="decision" and .package==$n and (.detail // "" | test("shared failed")))] | length')
	check "$n: each audited as $reason ($denied), the followers' as a shared fetch that failed ($followed)" -- \
		test "$denied" = 3 -a "$followed" -ge 1
	check "$n: the cache holds nothing of it" -- not_cached "$(sri_hex "${INTEG[$n]}")"
done

# ---- the lockfile's integrity decides: the same hostile bytes with a wrong integrity are cut ----------------
WRONG=$T/wrong
# Wrong: the integrity of bytes nobody serves (not of another package's: the content cache, addressed by
# digest, would rightly answer with that package's bytes, which are what the lockfile pins).
wrong_sri() { printf 'sha512-%s' "$({ cat "$1"; printf x; } | openssl dgst -sha512 -binary | base64 -w0)"; }
lockfile "$WRONG" "gzbomb=$(wrong_sri "$T/genuine/gzbomb.tgz")" "traversal=$(wrong_sri "$T/genuine/traversal.tgz")"
policy "$WRONG" deny_unknown
before=$(mark)
out=$(run "$WRONG" 'for n in gzbomb traversal; do curl -s -o $n.tgz -w "$n %{http_code} %{size_download}" "$npm_config_registry@hostile/$n/-/$n-1.0.0.tgz"; echo " $?"; done' 2>&1)
diag "$out"
while read -r n code got rc; do
	[ "$code" = 200 ] && [ "$got" -lt "${SIZE[$n]}" ] && [ "$rc" != 0 ]
	ok $? "$n with a wrong integrity in the lockfile: cut short ($code, $got of ${SIZE[$n]} bytes, curl exit $rc)"
	check "$n: audited integrity_mismatch" -- \
		audit_since "select(.event==\"decision\" and .reason_code==\"integrity_mismatch\" and .package==\"@hostile/$n\")"
done <<<"$out"

# ---- warn mode: outside the lockfile, the packument's integrity decides ------------------------------------
WARN=$T/warn
lockfile "$WARN" "plain=${INTEG[plain]}"
policy "$WARN" warn
before=$(mark)
out=$(run "$WARN" 'for n in tampered noint; do curl -s -o $n.tgz -D $n.head -w "$n %{http_code} %{size_download}" "$npm_config_registry@hostile/$n/-/$n-1.0.0.tgz"; echo " $? $(tr -d "\r" <$n.head | sed -n "s/^[Xx]-[Cc]rgw-[Rr]eason: //p")"; done' 2>&1)
diag "$out"
read -r _ code got rc _ <<<"$(grep '^tampered ' <<<"$out")"
[ "$code" = 200 ] && [ "$got" -lt "${SIZE[tampered]}" ] && [ "$rc" != 0 ]
ok $? "warn mode: a tarball outside the lockfile that does not match its packument's integrity is cut ($code, $got bytes, exit $rc)"
check "audited: warn lockfile_violation, then integrity_mismatch" -- \
	audit_since 'select(.event=="decision" and .action=="deny" and .reason_code=="integrity_mismatch" and .package=="@hostile/tampered")'
read -r _ code got rc reason <<<"$(grep '^noint ' <<<"$out")"
check "warn mode: a packument with no integrity for it: 502 integrity_mismatch ($code $reason)" -- \
	test "$code" = 502 -a "$reason" = integrity_mismatch

# ---- npm itself ------------------------------------------------------------------------------------------
npm_ci='rm -rf node_modules; npm_config_fetch_retries=0 npm ci --cache "$(mktemp -d)" --no-progress 2>&1 | grep -m3 -i "npm err\|added"'
GOOD=$T/good
lockfile "$GOOD" "plain=${INTEG[plain]}" "redirect-same=${INTEG[redirect-same]}"
policy "$GOOD" deny_unknown
out=$(run "$GOOD" "$npm_ci" 2>&1)
check "npm ci of a healthy package and a redirected one from api.test succeeds ($(echo $out))" -- \
	test -f "$GOOD/node_modules/@hostile/plain/package.json" -a -f "$GOOD/node_modules/@hostile/redirect-same/package.json"
for bad in tampered reset; do
	BAD=$T/npm-$bad
	lockfile "$BAD" "plain=${INTEG[plain]}" "$bad=${INTEG[$bad]}"
	policy "$BAD" deny_unknown
	out=$(run "$BAD" "set -o pipefail; $npm_ci; test -f node_modules/@hostile/$bad/package.json && echo INSTALLED" 2>&1)
	! grep -q INSTALLED <<<"$out" && grep -qi 'npm err' <<<"$out"
	ok $? "npm ci with @hostile/$bad fails and installs nothing of it ($(echo $out | head -c 160))"
done
TRAV=$T/npm-traversal
lockfile "$TRAV" "traversal=${INTEG[traversal]}"
policy "$TRAV" deny_unknown
out=$(run "$TRAV" "$npm_ci; ls /tmp/crgw-escaped /tmp/crgw-absolute /etc/crgw-through-link 2>/dev/null | sed 's/^/ESCAPED /'" 2>&1)
! grep -q ESCAPED <<<"$out"
ok $? "npm ci of the tar that climbs out writes nothing outside node_modules ($(echo $out | head -c 160))"

# ---- bad input at the mediation level ---------------------------------------------------------------------
# Each line: LABEL HTTP-CODE REASON.
cat >"$HOST/probes.sh" <<'EOF'
G=http://$CRGW_GATEWAY:8170
probe() { # probe LABEL PATH [curl args]
	local label=$1 path=$2 code
	shift 2
	code=$(curl -s --path-as-is -D head -o /dev/null -w '%{http_code}' "$@" "$G$path")
	echo "$label $code $(tr -d '\r' <head | sed -n 's/^[Xx]-[Cc]rgw-[Rr]eason: //p')"
}
long=$(head -c 5000 /dev/zero | tr '\0' a)
probe dotdot-encoded /registry/npm/api.test/..%2f
probe dotdot-encoded-dots /registry/npm/api.test/%2e%2e/%2e%2e/secrets/x
probe dotdot-scope /registry/npm/api.test/@hostile%2f..%2f..%2fsecrets
probe dotdot-plain /registry/npm/api.test/../../secrets/x
probe double-slash /registry/npm/api.test//@hostile/plain
probe nul /registry/npm/api.test/a%00b
probe nul-tarball /registry/npm/api.test/@hostile/plain/-/plain-1.0.0.tgz%00.json
probe long-name "/registry/npm/api.test/$long"
probe long-version "/registry/npm/api.test/@hostile/plain/-/plain-1.0.0-$long.tgz"
probe unknown /registry/unknown/
probe no-host /registry/npm/
probe ip-host /registry/npm/203.0.113.40/@hostile%2fplain
probe userinfo-host /registry/npm/user@api.test/@hostile%2fplain
probe port-host /registry/npm/api.test:8443/@hostile%2fplain
probe other-host /registry/npm/web1.test/@hostile%2fplain
probe bad-tarball-path /registry/npm/api.test/@hostile/plain/-/other-1.0.0.tgz
probe post /registry/npm/api.test/@hostile%2fplain -X POST -d '{}'
probe put /registry/npm/api.test/@hostile%2fplain -X PUT -H 'Content-Type: application/json' -d '{"name":"@hostile/plain"}'
probe delete /registry/npm/api.test/@hostile/plain/-rev/1 -X DELETE
EOF
before=$(mark)
out=$(run "$HOST" 'bash probes.sh' 2>&1)
diag "$out"
declare -A WANT=([post]=405 [put]=405 [delete]=405 [unknown]=404 [other-host]=403)
nprobes=0
while read -r label code reason; do
	[ -n "$label" ] || continue
	nprobes=$((nprobes + 1))
	want=${WANT[$label]:-4xx}
	[[ "$code" == 4* ]] && [[ "$code" == "${want%xx}"* ]] && [ -n "$reason" ]
	ok $? "hostile request $label: $code $reason (want $want with a reason)"
done <<<"$out"
check "all 19 probes ran ($nprobes)" -- test "$nprobes" = 19
invalid=$(since | jq -s '[.[] | select(.event=="decision" and .reason_code=="request_invalid")] | length')
check "the probes are audited: request_invalid ($invalid), and host_not_allowed for web1.test" -- \
	audit_since 'select(.event=="decision" and .reason_code=="host_not_allowed" and .dst_host=="web1.test")'
check "every refused probe but the host's is audited as request_invalid ($invalid)" -- test "$invalid" -ge 17

# ---- learn mode: a host outside the policy, asked without api.test's token, and not from what it fetched --
# The tarball the sandboxes above had cached from api.test with its token, asked for by a learn-mode sandbox
# whose policy allows npm.test only: it goes to api.test without the token (a 401), never to the cache.
LEARN=$T/learn
lockfile "$LEARN" "plain=${INTEG[plain]}"
policy "$LEARN" deny_unknown
sed -i 's/allowed_hosts: \[api.test, npm.test\]/allowed_hosts: [npm.test]/' "$LEARN/cleanroom.yaml"
out=$("$CTL" run --rm --learn --run-id learn-hostile --policy "$LEARN/cleanroom.yaml" --workspace "$LEARN" --workspace-mode rw -- \
	bash -c 'curl -s -o p.tgz -w "%{http_code}" "http://$CRGW_GATEWAY:8170/registry/npm/api.test/@hostile/plain/-/plain-1.0.0.tgz" >code' 2>&1)
code=$(cat "$LEARN/code" 2>/dev/null)
check "learn mode, api.test outside allowed_hosts: its cached tarball is not served without the token ($code; $(tr '\n' ' ' <<<"$out" | tail -c 200))" -- \
	bash -c '[ -n "$1" ] && [ "$1" != 200 ] && ! cmp -s "$2" "$3"' _ "$code" "$LEARN/p.tgz" "$T/genuine/plain.tgz"
check "audited: warn host_not_allowed, no cache hit and no secret_id for it" -- \
	bash -c 'jq -e -s "map(select(.run_id == \"learn-hostile\")) | any(.action == \"warn\" and .reason_code == \"host_not_allowed\") and all(.cache != \"hit\" and .secret_id == null)" "$1"' _ "$AUDIT"

# ---- still alive ------------------------------------------------------------------------------------------
kill -0 "$GW_PID" 2>/dev/null
ok $? "crgw is still running"
out=$(run "$HOST" 'curl -s -o p.tgz -w "%{http_code} %{size_download}" "$npm_config_registry@hostile/plain/-/plain-1.0.0.tgz"; echo; curl -s -o /dev/null -w "%{http_code}" "$npm_config_registry@hostile%2fplain"' 2>&1)
check "and answers: a healthy tarball and packument ($(echo $out))" -- \
	bash -c "test '$(echo $out)' = '200 ${SIZE[plain]} 200' && test \"\$(openssl dgst -sha512 -r '$HOST/p.tgz' | cut -d' ' -f1)\" = '$(sri_hex "${INTEG[plain]}")'"
check "crgw-ctl stats answers" -- "$CTL" --control "$T/ctl.sock" stats
rss_end=$(rss)
diag "crgw RSS: ${rss_start} kB at the start, ${rss_end} kB at the end"
check "its RSS is sane (${rss_end} kB < 256 MiB, grew by $(((rss_end - rss_start) / 1024)) MiB)" -- \
	test "$rss_end" -gt 0 -a "$rss_end" -lt 262144
gw_stop
ok $? "crgw stops cleanly on SIGTERM"
# After the stop: a sanitizer build reports leaks at exit.
grep -q 'Sanitizer\|runtime error' "$T/crgw.log"
ok $((!$?)) "nothing in crgw's log from a sanitizer"

tap_done
