#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end: `crgw-ctl cache warm` against the test network's registries. A project with the test network's
# npm lockfile (57 tarballs) and pip requirements (3 wheels) is warmed through the gateway's own mediation:
# every artifact fetched, verified and cached (cache ls holds each digest), audited as the sandbox's requests;
# a second warm reports every one cached (X-Crgw-Cache: hit), and the sandbox is gone afterwards, also after
# a SIGTERM mid-warm. Then the gateway restarts offline with every registry stopped and `npm ci` and
# `pip install --require-hashes` in sandboxes succeed from what the warm put there. Go's go.sum entries are asked for by their GOPROXY paths
# (fetched, or each reported with its 501 while the gateway does not mediate Go). Failures: a lockfile
# naming a tarball the registry lacks (exit 1, named), no policy, a policy without registries, usage, a
# gateway without a cache (exit 2).
# TAP output. Needs root.
# usage: warm.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

T=$(mktemp -d /tmp/crgw-e2e-warm.XXXXXX)
chmod 0755 "$T"
testnet_on_exit '[ -n "${CRGW_E2E_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"'
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
testnet_registries_up || { echo "Bail out! the test registries did not come up"; exit 1; }
AUDIT=$T/audit.log

# Resumes the registries on every exit, so a failed check never leaves them stopped for the next test.
registries_signal() { # registries_signal STOP|CONT
	local s pid
	for s in npm pypi goproxy oci; do
		[ -f "$TN_STATE/pids/$s.pid" ] && read -r pid _ <"$TN_STATE/pids/$s.pid" && kill -"$1" "$pid" 2>/dev/null
	done
	return 0
}
testnet_on_exit 'registries_signal CONT'

write_config() { # write_config OFFLINE
	cat >"$T/crgw.yaml" <<EOF
secrets:
  npm_token: { file: $TN_NPM_TOKEN_FILE }
registries:
  credentials:
    npm.test: { secret: npm_token, scheme: bearer }
mediation:
  ca_file: $TN_CA
  idle_timeout: 10
cache:
  offline: $1
  metadata_ttl_seconds: 0
EOF
}
write_config false
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not start"; exit 1; }

warm() { # warm ARGS...: sets out, err and rc
	out=$("$CTL" cache warm "$@" 2>"$T/warm.err")
	rc=$?
	err=$(<"$T/warm.err")
}
sandboxes() { "$CTL" sandbox ls --json 2>/dev/null | jq '.sandboxes | length' 2>/dev/null; }

# ---- the project: npm and pip, both enforced by their lockfiles ------------------------------------------
P=$T/proj
mkdir -p "$P"
cp "$TN_NPM_PROJECT/package.json" "$TN_NPM_PROJECT/package-lock.json" "$P/"
cp "$TN_PYPI_REQUIREMENTS" "$P/requirements.txt"
cat >"$P/cleanroom.yaml" <<'EOF'
version: 1
sandbox:
  network:
    default: deny
registries:
  npm:
    enable: true
    allowed_hosts: [npm.test]
    lockfile_enforcement: { enabled: true, mode: deny_unknown, lockfiles: [package-lock.json] }
  pip:
    enable: true
    allowed_hosts: [pypi.test]
    lockfile_enforcement: { enabled: true, mode: deny_unknown, lockfiles: [requirements.txt] }
EOF
npm_count=$(jq '[.packages | to_entries[] | select(.key != "") | "\(.value.name // (.key | sub(".*node_modules/"; "")))@\(.value.version)"] | unique | length' "$P/package-lock.json")
pip_count=$(grep -o 'sha256:[0-9a-f]\{64\}' "$P/requirements.txt" | sort -u | wc -l)
# Every digest the cache must hold afterwards: the lockfile's sha512 as hex, the requirements' sha256.
jq -r '.packages | to_entries[] | select(.key != "") | .value.integrity' "$P/package-lock.json" | sort -u |
	while read -r sri; do
		printf 'sha512:%s\n' "$(printf '%s' "${sri#sha512-}" | base64 -d | od -An -tx1 -v | tr -d ' \n')"
	done >"$T/want.digests"
grep -o 'sha256:[0-9a-f]\{64\}' "$P/requirements.txt" | sort -u >>"$T/want.digests"
want_n=$(sort -u "$T/want.digests" | wc -l)
diag "the project: $npm_count npm tarballs, $pip_count pip files, $want_n digests"

# ---- bad input: exit 2 with a clear word -------------------------------------------------------------------
mkdir -p "$T/empty"
warm --policy "$T/empty"
[ "$rc" = 2 ] && grep -q 'no cleanroom.yaml' <<<"$err"
ok $? "no policy: exit 2, says so (rc $rc: $err)"
mkdir -p "$T/noreg"
printf 'version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n      - host: web1.test\n' >"$T/noreg/cleanroom.yaml"
warm --policy "$T/noreg"
[ "$rc" = 2 ] && grep -q 'names no artifact' <<<"$err"
ok $? "a policy without registries: exit 2, says so (rc $rc: $err)"
warm --policy "$P" extra
check "an extra argument: exit 2 (rc $rc)" -- test "$rc" = 2
warm --policy "$P" --jobs 0
check "--jobs 0: exit 2 (rc $rc)" -- test "$rc" = 2
check "no sandbox was made by any of them" -- test "$(sandboxes)" = 0

# ---- the first warm: everything fetched ------------------------------------------------------------------
start=$(date +%s%N)
warm --policy "$P" --json
cold_ms=$((($(date +%s%N) - start) / 1000000))
echo "$out" >"$T/warm1.json"
ok "$rc" "cache warm --json exits 0 ($cold_ms ms; $(echo "$out" | tail -1))"
[ "$rc" = 0 ] || diag "$err" "$(echo "$out" | jq -c 'select(.status=="failed")' 2>/dev/null | head -5)"
n=$(jq -s '[.[] | select(.event=="artifact" and .registry=="npm" and .status=="fetched")] | length' "$T/warm1.json")
check "every npm tarball fetched ($n of $npm_count)" -- test "$n" = "$npm_count"
n=$(jq -s '[.[] | select(.event=="artifact" and .registry=="pip" and .status=="fetched" and (.file | endswith(".whl")))] | length' "$T/warm1.json")
check "every pip wheel fetched ($n of $pip_count)" -- test "$n" = "$pip_count"
sum=$(jq -c 'select(.event=="summary")' "$T/warm1.json")
echo "$sum" | jq -e --argjson n $((npm_count + pip_count)) '.artifacts == $n and .fetched == $n and .cached == 0 and .failed == 0 and .bytes > 0 and .seconds >= 0' >/dev/null
ok $? "the summary counts them ($sum)"
jq -e -s 'map(select(.event=="artifact")) | all(.bytes > 0 and .http_status == 200 and (.path | startswith("/registry/")))' "$T/warm1.json" >/dev/null
ok $? "each line carries its bytes, status 200 and its /registry/ path"
line=$(jq -c 'select(.name=="@crgw/lib-00")' "$T/warm1.json")
echo "$line" | jq -e '.path == "/registry/npm/npm.test/@crgw/lib-00/-/lib-00-1.0.0.tgz" and .version == "1.0.0"' >/dev/null
ok $? "a scoped tarball's path ($line)"
# The commits are asynchronous (a thread per verified fill): wait for them.
for _ in $(seq 50); do
	"$CTL" cache ls --json >"$T/ls.json" 2>/dev/null
	have=$(jq -r '.[].digest' "$T/ls.json" | sort -u | comm -12 - <(sort -u "$T/want.digests") | wc -l)
	[ "$have" = "$want_n" ] && break
	sleep 0.1
done
check "cache ls holds every digest of the lockfiles ($have of $want_n)" -- test "$have" = "$want_n"
# A cold cache: every artifact a miss, none a hit (the misses of digests no host had served yet went uncounted).
st=$("$CTL" cache stats --json | jq -c '{hits, misses, hit_ratio}')
jq -e --argjson n $((npm_count + pip_count)) '.hits == 0 and .misses == $n and .hit_ratio == 0' <<<"$st" >/dev/null
ok $? "cache stats counts each fetched artifact a miss ($st)"
check "audited as the sandbox's own requests: a tarball's decision with run_id cache-warm" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .service=="registry" and .registry=="npm" and .action=="allow" and .package=="crgw-dep-00" and .run_id=="cache-warm")'
check "a wheel's connection_end with its bytes" -- \
	audit_has "$AUDIT" 'select(.event=="connection_end" and .service=="registry" and .registry=="pip" and .bytes_down > 0 and .run_id=="cache-warm")'
check "the warm's sandbox is released" -- test "$(sandboxes)" = 0

# ---- the second warm: everything cached -------------------------------------------------------------------
warm --policy "$P/cleanroom.yaml"
ok "$rc" "a second warm (text, the policy file's path) exits 0 ($(echo "$out" | tail -1))"
n=$(grep -c '^cached  ' <<<"$out")
check "it reports every artifact cached ($n of $((npm_count + pip_count)))" -- test "$n" = $((npm_count + pip_count))
grep -q '^cached  crgw-beta@1.1.0  [0-9]*  crgw_beta-1.1.0-py3-none-any.whl$' <<<"$out"
ok $? "a wheel's line: status, name@version, bytes, file ($(grep crgw-beta <<<"$out"))"
tail -1 <<<"$out" | grep -q "^$((npm_count + pip_count)) artifacts: 0 fetched, $((npm_count + pip_count)) cached, 0 failed; [0-9]* bytes"
ok $? "the summary line ($(tail -1 <<<"$out"))"

# ---- stopped half-way: the sandbox is released all the same ---------------------------------------------
# With the cache emptied and the registries stopped, the warm is certain to be mid-fetch when TERM comes.
"$CTL" cache gc --target 0 >/dev/null 2>&1
registries_signal STOP
"$CTL" cache warm --policy "$P" >"$T/term.out" 2>"$T/term.err" &
wpid=$!
sleep 1.5
kill -TERM "$wpid"
wait "$wpid"
rc=$?
registries_signal CONT
[ "$rc" = 2 ] && grep -q 'stopped by signal 15' "$T/term.err"
ok $? "SIGTERM mid-warm: exit 2, says so (rc $rc: $(tail -1 "$T/term.err"))"
check "... and its sandbox is released" -- test "$(sandboxes)" = 0
warm --policy "$P"
ok "$rc" "warmed again ($(tail -1 <<<"$out"))"

# ---- its output's reader gone (`| head -1`): SIGPIPE ends it in order too ----------------------------------
# `true` has exited before the sandbox is made, so the first line written raises SIGPIPE.
"$CTL" cache warm --policy "$P" 2>"$T/pipe.err" | true
rc=${PIPESTATUS[0]}
[ "$rc" = 2 ] && grep -q 'stopped by signal 13' "$T/pipe.err"
ok $? "stdout closed: exit 2, says so (rc $rc: $(tail -1 "$T/pipe.err"))"
check "... and its sandbox is released ($(sandboxes) left)" -- test "$(sandboxes)" = 0

# ---- SIGKILLed: nothing of it may live on ------------------------------------------------------------------
# Its fetching child dropped to nobody, which clears the parent-death signal: it went on fetching, orphaned.
"$CTL" cache gc --target 0 >/dev/null 2>&1
registries_signal STOP
"$CTL" cache warm --policy "$P" >/dev/null 2>&1 &
wpid=$!
sleep 1.5
kids=$(pgrep -P "$wpid" | tr '\n' ' ')
kill -KILL "$wpid"
wait "$wpid" 2>/dev/null
for _ in $(seq 50); do
	left=
	for k in $kids; do alive "$k" && left+=" $k"; done
	[ -z "$left" ] && [ "$(sandboxes)" = 0 ] && break
	sleep 0.1
done
registries_signal CONT
[ -n "$kids" ] && [ -z "$left" ]
ok $? "SIGKILL mid-warm: its processes end with it (${kids:-none found}; left:${left:- none})"
for k in $left; do kill -KILL "$k"; done
check "... and the gateway releases its sandbox ($(sandboxes) left)" -- test "$(sandboxes)" = 0
warm --policy "$P"
ok "$rc" "warmed again ($(tail -1 <<<"$out"))"

# ---- a lockfile that names a tarball the registry does not have ------------------------------------------
B=$T/missing
mkdir -p "$B"
cp "$P/package.json" "$P/cleanroom.yaml" "$P/requirements.txt" "$B/"
fake=$(head -c 64 /dev/zero | base64 -w0)
jq --arg i "sha512-$fake" '.packages["node_modules/crgw-missing"] = {version: "1.0.0", resolved: "https://npm.test/crgw-missing/-/crgw-missing-1.0.0.tgz", integrity: $i}' \
	"$P/package-lock.json" >"$B/package-lock.json"
warm --policy "$B"
check "a tarball the registry lacks: exit 1 (rc $rc)" -- test "$rc" = 1
line=$(grep 'crgw-missing' <<<"$out")
grep -q '^failed http_404  crgw-missing@1.0.0  0' <<<"$line"
ok $? "... named, with the upstream's answer ($line)"
tail -1 <<<"$out" | grep -q "^$((npm_count + pip_count + 1)) artifacts: 0 fetched, $((npm_count + pip_count)) cached, 1 failed"
ok $? "... the others cached ($(tail -1 <<<"$out"))"

# ---- Go: go.sum's zips and go.mod files, by the GOPROXY protocol ------------------------------------------
# The Go handler may not be built yet (501, "not mediated yet"): then every line must say so, and warm exit 1.
G=$T/go
mkdir -p "$G"
cp "$TN_GO_MAIN/go.mod" "$TN_GO_MAIN/go.sum" "$G/"
cat >"$G/cleanroom.yaml" <<'EOF2'
version: 1
sandbox:
  network:
    default: deny
registries:
  go:
    enable: true
    allowed_hosts: [goproxy.test]
    lockfile_enforcement: { enabled: true, mode: deny_unknown, lockfiles: [go.sum] }
EOF2
go_count=$(awk 'NF {print $1, $2}' "$G/go.sum" | sort -u | wc -l)
warm --policy "$G" --json
echo "$out" >"$T/warm-go.json"
n=$(jq -s '[.[] | select(.event=="artifact" and .registry=="go")] | length' "$T/warm-go.json")
check "go: one line per go.sum entry ($n of $go_count)" -- test "$n" = "$go_count"
jq -e -s 'map(select(.event=="artifact")) | map(.path) | index("/registry/go/goproxy.test/goproxy.test/m/a/@v/v1.0.0.zip") != null and
	index("/registry/go/goproxy.test/goproxy.test/m/a/@v/v1.0.0.mod") != null' "$T/warm-go.json" >/dev/null
ok $? "go: a module's zip and its go.mod file by GOPROXY paths"
not_mediated=$(jq -s '[.[] | select(.event=="artifact" and .status=="failed" and .http_status==501)] | length' "$T/warm-go.json")
fetched=$(jq -s '[.[] | select(.event=="artifact" and .status=="fetched")] | length' "$T/warm-go.json")
if [ "$not_mediated" -gt 0 ]; then
	[ "$not_mediated" = "$go_count" ] && [ "$rc" = 1 ] && grep -q 'not mediated yet' "$T/warm-go.json"
	ok $? "go: the gateway does not mediate Go yet: each reported with its 501, exit 1 (rc $rc)"
else
	[ "$fetched" = "$go_count" ] && [ "$rc" = 0 ]
	ok $? "go: every zip and go.mod fetched, exit 0 ($fetched of $go_count, rc $rc)"
fi

# ---- a gateway without a cache ----------------------------------------------------------------------------
gw_stop >/dev/null 2>&1
gw_start "$T" --config "$T/crgw.yaml" --set cache.enabled=false || { echo "Bail out! crgw did not start without a cache"; exit 1; }
warm --policy "$P"
[ "$rc" = 2 ] && grep -q 'cache_disabled' <<<"$err"
ok $? "a gateway without a cache: exit 2, cache_disabled (rc $rc: $err)"
check "... and no sandbox made" -- test "$(sandboxes)" = 0

# ---- offline, every registry stopped: the next run works from what the warm cached ------------------------
gw_stop >/dev/null 2>&1
registries_signal STOP
write_config true
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not start offline"; exit 1; }
run() { # run PROJECT SCRIPT: a sandbox on PROJECT's policy with PROJECT as its read-write workspace
	"$CTL" run --rm --policy "$1/cleanroom.yaml" --workspace "$1" --workspace-mode rw -- bash -c "$2"
}
warm --policy "$P"
[ "$rc" = 0 ] && [ "$(grep -c '^cached  ' <<<"$out")" = $((npm_count + pip_count)) ]
ok $? "warm offline: every artifact cached, exit 0 ($(tail -1 <<<"$out"))"
# After the restart nothing is trusted: each hit is hashed, then sent. One request is one hit, and its bytes
# are served once (the hashing pass and a second open counted each twice).
warm_bytes=$(tail -1 <<<"$out" | sed -n 's/.*failed; \([0-9]*\) bytes.*/\1/p')
st=$("$CTL" cache stats --json | jq -c '{hits, bytes_served}')
jq -e --argjson n $((npm_count + pip_count)) --argjson b "${warm_bytes:-0}" '.hits == $n and .bytes_served == $b' <<<"$st" >/dev/null
ok $? "... each a single hit, its bytes served once ($st; $((npm_count + pip_count)) artifacts, $warm_bytes bytes)"
before=$(wc -l <"$AUDIT")
out=$(run "$P" 'npm ci --cache "$(mktemp -d)" --no-progress 2>&1 | tail -2; ls node_modules | wc -l' 2>&1)
ok $? "npm ci offline, registries stopped, from the warm cache (${out//$'\n'/ })"
installed=$(find "$P/node_modules" -name package.json -path '*/node_modules/*/package.json' -not -path '*/node_modules/*/node_modules/*/*/*' 2>/dev/null | wc -l)
check "every package of the lockfile is installed ($installed of $npm_count)" -- test "$installed" -ge "$npm_count"
hits=$(tail -n +$((before + 1)) "$AUDIT" | jq -s '[.[] | select(.event=="connection_end" and .service=="registry" and .cache=="hit")] | length')
check "every tarball was a cache hit ($hits)" -- test "$hits" -ge "$npm_count"
pip_install='rm -rf site && pip install -q --no-cache-dir --disable-pip-version-check --require-hashes -r requirements.txt --target site 2>&1 | tail -3; ls site'
out=$(run "$P" "$pip_install" 2>&1)
grep -q crgw_alpha <<<"$out" && grep -q crgw_beta <<<"$out" && grep -q crgw_gamma <<<"$out"
ok $? "pip install --require-hashes offline, the index stopped (${out//$'\n'/ })"
out=$(run "$P" 'curl -s -D - -o /dev/null "$npm_config_registry"crgw-dep-00/-/crgw-dep-00-1.0.0.tgz | tr -d "\r" | grep -i "^x-crgw-cache"' 2>&1)
check "a tarball's answer says X-Crgw-Cache: hit ($out)" -- grep -qi '^x-crgw-cache: hit$' <<<"$out"
# verify_always hashes every hit before it is sent: each is still a hit (the reopened reader was never
# trusted, so every hit was taken for a corrupt copy: refetched, and offline refused).
gw_stop >/dev/null 2>&1
gw_start "$T" --config "$T/crgw.yaml" --set cache.verify_always=true || { echo "Bail out! crgw did not start offline with verify_always"; exit 1; }
warm --policy "$P"
warm --policy "$P"
[ "$rc" = 0 ] && [ "$(grep -c '^cached  ' <<<"$out")" = $((npm_count + pip_count)) ]
ok $? "verify_always, offline: a second warm finds every artifact cached, exit 0 (rc $rc: $(tail -1 <<<"$out"))"
"$CTL" cache stats --json | jq -e '.corrupt == 0 and .objects > 0' >/dev/null
ok $? "... nothing taken for corrupt, nothing removed"
registries_signal CONT

# ---- a copy damaged on disk is repaired by the request that finds it ---------------------------------------
# After a restart the first hit is hashed before a byte is sent: the damage is found, the tarball fetched
# again, kept again (it was served without being kept, so a warm-then-offline run lost it), and the next
# request is a hit.
gw_stop >/dev/null 2>&1
write_config false
integ=$(jq -r '.packages["node_modules/crgw-dep-00"].integrity' "$P/package-lock.json")
hex=$(printf '%s' "${integ#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')
obj=$GW_DATA/cache/objects/sha512/${hex:0:2}/$hex
[ -f "$obj" ] && printf 'X' | dd of="$obj" bs=1 seek=20 conv=notrunc 2>/dev/null
ok $? "a byte of crgw-dep-00's cached tarball changed on disk"
objects_before=$(find "$GW_DATA/cache/objects" -type f | wc -l)
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not start again"; exit 1; }
get='curl -s -D - -o t.tgz "$npm_config_registry"crgw-dep-00/-/crgw-dep-00-1.0.0.tgz | tr -d "\r" | grep -i "^x-crgw-cache"; sha512sum t.tgz | cut -d" " -f1'
out=$(run "$P" "$get; $get" 2>&1)
first=$(sed -n 1p <<<"$out" | tr 'A-Z' 'a-z') second=$(sed -n 3p <<<"$out" | tr 'A-Z' 'a-z')
[ "$first" = "x-crgw-cache: miss" ] && [ "$(sed -n 2p <<<"$out")" = "$hex" ] && [ "$second" = "x-crgw-cache: hit" ] &&
	[ "$(sed -n 4p <<<"$out")" = "$hex" ] && [ "$(find "$GW_DATA/cache/objects" -type f | wc -l)" = "$objects_before" ]
ok $? "the damaged copy is fetched again and kept: the right bytes, then a hit (${out//$'\n'/ })"
grep -q 'did not match its digest; it was removed and is fetched again' "$T/crgw.log"
ok $? "... and the log says so"

# ---- a full disk: every artifact fetched, few kept ---------------------------------------------------------
# Each fetch is answered before its fill is committed: the warm learns of the lost fills from the gateway.
gw_stop >/dev/null 2>&1
write_config false
mkdir -p "$T/tiny"
mount -t tmpfs -o size=24k,mode=0700 crgw-e2e-tiny "$T/tiny" || { echo "Bail out! no tmpfs for the full disk"; exit 1; }
testnet_on_exit umount -l "$T/tiny"
gw_start "$T" --config "$T/crgw.yaml" --set "cache.dir=$T/tiny/cache" || { echo "Bail out! crgw did not start on the small disk"; exit 1; }
warm --policy "$P"
[ "$rc" = 1 ] && grep -q "of the gateway's fills failed while warming" "$T/warm.err"
ok $? "a cache on a disk too small: the warm says fills failed, exit 1 (rc $rc: $(tail -1 "$T/warm.err"))"
gw_stop >/dev/null 2>&1

# ---- the gateway stops mid-warm: the warm ends at once, saying so -----------------------------------------
# A stopping gateway releases the sandbox before it closes its connections: the requests under way would
# wait out their 300-second stall limit, and the warm end with every artifact failed, exit 1, no word why.
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not start again"; exit 1; }
"$CTL" cache gc --target 0 >/dev/null 2>&1
registries_signal STOP
"$CTL" cache warm --policy "$P" >"$T/gone.out" 2>"$T/gone.err" &
wpid=$!
sleep 1.5
gw_stop >/dev/null 2>&1
for _ in $(seq 300); do
	alive "$wpid" || break
	sleep 0.1
done
# Still there: SIGTERM ends it in order (its fetching child too), SIGKILL only if even that fails.
alive "$wpid" && kill -TERM "$wpid" && sleep 2
alive "$wpid" && kill -KILL "$wpid"
wait "$wpid"
rc=$?
registries_signal CONT
[ "$rc" = 2 ] && grep -q "the gateway released the warm's sandbox" "$T/gone.err"
ok $? "the gateway stopped mid-warm: the warm ends within 30 s, exit 2, saying so (rc $rc: $(tail -1 "$T/gone.err"))"
diag "cache warm: ${cold_ms} ms for $((npm_count + pip_count)) artifacts"

tap_done
