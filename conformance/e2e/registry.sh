#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end through registry mediation (/registry/, port 8170), as a job uses it: real package tools inside
# crgw-ctl run sandboxes against the test network's registries over TLS (verdaccio for npm), with the
# content cache. `npm ci` of a v3 lockfile of 57 packages succeeds; a version outside the lockfile is
# hidden from packuments and its tarball refused (lockfile_violation), let through and audited in warn
# mode; a registry the policy does not enable is refused (registry_not_allowed); a version published just
# before the install is hidden and refused (release_too_new); a tarball tampered with on the upstream is
# cut before its last bytes (integrity_mismatch) and nothing of it is cached; a private packument fetched with
# the operator's credential is not served once the credential is withdrawn; the second install runs
# offline from the cache, with the registry stopped.
# TAP output. Needs root.
# usage: registry.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

T=$(mktemp -d /tmp/crgw-e2e-reg.XXXXXX)
chmod 0755 "$T"
testnet_on_exit '[ -n "${CRGW_E2E_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"'
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
testnet_registries_up || { echo "Bail out! the test registries did not come up"; exit 1; }
AUDIT=$T/audit.log

write_config() { # write_config OFFLINE [nocred]: nocred leaves npm.test without the operator's credential
	local cred="    npm.test: { secret: npm_token, scheme: bearer }"
	[ "${2:-}" = nocred ] && cred="    other.test: { secret: npm_token, scheme: bearer }"
	cat >"$T/crgw.yaml" <<EOF
secrets:
  npm_token: { file: $TN_NPM_TOKEN_FILE }
registries:
  credentials:
$cred
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

# ---- projects: a copy of the test network's npm project, each with its own policy -----------------------
project() { # project DIR POLICY-REGISTRIES-YAML
	rm -rf "$1"
	mkdir -p "$1"
	cp "$TN_NPM_PROJECT/package.json" "$TN_NPM_PROJECT/package-lock.json" "$1/"
	{
		printf 'version: 1\nsandbox:\n  network:\n    default: deny\nregistries:\n'
		printf '%s\n' "$2"
	} >"$1/cleanroom.yaml"
}
run() { # run PROJECT SCRIPT: a sandbox on PROJECT's policy with PROJECT as its read-write workspace
	"$CTL" run --rm --policy "$1/cleanroom.yaml" --workspace "$1" --workspace-mode rw -- bash -c "$2"
}
NPM=$T/npm
project "$NPM" '  npm:
    enable: true
    allowed_hosts: [npm.test]
    lockfile_enforcement: { enabled: true, mode: deny_unknown, lockfiles: [package-lock.json] }'

npm_count=$(jq '[.packages | to_entries[] | select(.key != "")] | length' "$TN_NPM_PROJECT/package-lock.json")

# ---- npm ci through the gateway -------------------------------------------------------------------------
start=$(date +%s%N)
out=$(run "$NPM" 'npm ci --cache "$(mktemp -d)" --no-progress 2>&1 | tail -3; ls node_modules | wc -l' 2>&1)
rc=$?
cold_ms=$((($(date +%s%N) - start) / 1000000))
ok $rc "npm ci through the gateway (${out//$'\n'/ }; ${cold_ms} ms)"
installed=$(find "$NPM/node_modules" -name package.json -path '*/node_modules/*/package.json' -not -path '*/node_modules/*/node_modules/*/*/*' 2>/dev/null | wc -l)
check "every package of the lockfile is installed ($installed of $npm_count)" -- test "$installed" -ge "$npm_count"
check "a tarball is audited: decision allow, service registry, registry npm, package and version" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .service=="registry" and .registry=="npm" and .action=="allow" and .package=="crgw-dep-00" and .version=="1.0.0" and (.integrity|startswith("sha512:")))'
check "its connection_end carries bytes" -- \
	audit_has "$AUDIT" 'select(.event=="connection_end" and .service=="registry" and .package=="crgw-dep-00" and .bytes_down > 0)'


# ---- yarn (v1) through the gateway -----------------------------------------------------------------------
# yarn fetches the URLs its yarn.lock recorded, whatever registry it is told. A yarn.lock written in a
# sandbox records this sandbox's gateway; in another sandbox the forward proxy hands those URLs, and
# plain-http URLs of the policy's npm hosts, to that sandbox's own mediation, which checks them as always.
# NODE_PATH: Debian's yarnpkg loads its modules from there, which a Node.js from elsewhere does not search.
if command -v yarnpkg >/dev/null 2>&1; then
	YARN=$T/yarn
	project "$YARN" '  npm:
    enable: true
    allowed_hosts: [npm.test]
    lockfile_enforcement: { enabled: true, mode: deny_unknown, lockfiles: [package-lock.json] }'
	rm -f "$YARN/package-lock.json.bak"
	yarn='export NODE_PATH=/usr/share/nodejs; yarnpkg --non-interactive --no-progress --cache-folder "$(mktemp -d)"'
	out=$(run "$YARN" "$yarn install 2>&1 | tail -2" 2>&1)
	check "yarn install resolves the lockfile's versions through the gateway (${out//$'\n'/ })" -- \
		grep -q '^crgw-dep-00@' "$YARN/yarn.lock"
	gwurl=$(grep -m1 -o 'resolved "http://[0-9.]*:8170/registry/npm/npm.test/' "$YARN/yarn.lock")
	check "its yarn.lock records the gateway's mediation (${gwurl:-none})" -- test -n "$gwurl"
	YF=$T/yarn-frozen
	project "$YF" '  npm:
    enable: true
    allowed_hosts: [npm.test]
    lockfile_enforcement: { enabled: true, mode: deny_unknown, lockfiles: [yarn.lock] }'
	rm -f "$YF/package-lock.json"
	# Another sandbox's gateway address (any /30 of the pool) for half the entries; the upstream over
	# plain http for the rest.
	sed -e 's|resolved "http://[0-9.]*:8170/registry/npm/npm.test/\(crgw-dep-[0-9]*[02468]/\)|resolved "http://10.201.255.249:8170/registry/npm/npm.test/\1|' \
		-e 's|resolved "http://[0-9.]*:8170/registry/npm/npm.test/|resolved "http://npm.test/|' \
		"$YARN/yarn.lock" >"$YF/yarn.lock"
	before=$(wc -l <"$AUDIT")
	out=$(run "$YF" "$yarn install --frozen-lockfile 2>&1 | tail -2; ls node_modules | wc -l" 2>&1)
	rc=$?
	installed=$(find "$YF/node_modules" -name package.json -path '*/node_modules/*/package.json' -not -path '*/node_modules/*/node_modules/*/*/*' 2>/dev/null | wc -l)
	ok $((rc != 0 || installed < npm_count)) "yarn install --frozen-lockfile of that yarn.lock in a new sandbox ($installed of $npm_count packages; ${out//$'\n'/ })"
	handed=$(tail -n +$((before + 1)) "$AUDIT" | jq -s '[.[] | select(.event=="decision" and .service=="http" and .action=="allow" and (.rule=="registries.npm" or .rule=="mediation"))] | length')
	served=$(tail -n +$((before + 1)) "$AUDIT" | jq -s '[.[] | select(.event=="decision" and .service=="registry" and .registry=="npm" and .action=="allow" and .package != null)] | length')
	check "each tarball was handed to the mediation and served there, checked against yarn.lock ($handed handed over, $served served)" -- \
		test "$handed" -ge "$npm_count" -a "$served" -ge "$npm_count"
	out=$(run "$YF" 'curl -s -o /dev/null -w "%{http_code}" http://npm.test/crgw-dep-01/-/crgw-dep-01-9.0.0.tgz' 2>&1)
	check "a version outside yarn.lock, asked for at the upstream's URL: 403 from the mediation ($out)" -- test "$out" = 403
	check "and audited as lockfile_violation of the registry npm" -- \
		audit_has "$AUDIT" 'select(.event=="decision" and .service=="registry" and .action=="deny" and .reason_code=="lockfile_violation" and .package=="crgw-dep-01" and .version=="9.0.0")'
fi


# What npm was given: the packument's tarballs point back at the gateway, and nothing else upstream.
out=$(run "$NPM" 'curl -s -H "Accept: application/vnd.npm.install-v1+json" "$npm_config_registry@crgw%2flib-00"' 2>&1)
url=$(echo "$out" | jq -r '.versions["1.0.0"].dist.tarball' 2>/dev/null)
[[ "$url" == http://*:8170/registry/npm/npm.test/@crgw/lib-00/-/lib-00-1.0.0.tgz ]]
ok $? "a scoped packument, abbreviated, points its tarball at the gateway (${url:-$(echo "$out" | head -c 200)})"
echo "$out" | grep -q 'https://npm.test'
ok $((!$?)) "no URL in it leads to the upstream"

# ---- pip install --require-hashes through the gateway ----------------------------------------------------
PIP=$T/pip
mkdir -p "$PIP"
cp "$TN_PYPI_REQUIREMENTS" "$PIP/requirements.txt"
cat >"$PIP/cleanroom.yaml" <<'EOF2'
version: 1
sandbox:
  network:
    default: deny
registries:
  pip:
    enable: true
    allowed_hosts: [pypi.test]
    lockfile_enforcement: { enabled: true, mode: deny_unknown, lockfiles: [requirements.txt] }
EOF2
pip_install='rm -rf site && pip install -q --no-cache-dir --disable-pip-version-check --require-hashes -r requirements.txt --target site 2>&1 | tail -3; ls site'
out=$(run "$PIP" "$pip_install" 2>&1)
echo "$out" | grep -q crgw_alpha && echo "$out" | grep -q crgw_beta && echo "$out" | grep -q crgw_gamma
ok $? "pip install --require-hashes of three wheels through the gateway (${out//$'\n'/ })"
check "a wheel is audited: registry pip, package, version, its sha256" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .registry=="pip" and .action=="allow" and .package=="crgw-beta" and .version=="1.1.0" and (.integrity|startswith("sha256:")))'
out=$(run "$PIP" 'curl -s "$PIP_INDEX_URL"crgw-beta/' 2>&1)
echo "$out" | grep -q 'crgw_beta-1.1.0' && ! echo "$out" | grep -q 'crgw_beta-1.0.0' && ! echo "$out" | grep -q 'https://pypi.test'
ok $? "the project page lists only the pinned file, at the gateway ($(echo "$out" | grep -o 'href="[^"]*"' | head -2 | tr '\n' ' '))"
out=$(run "$PIP" 'curl -s -H "Accept: application/vnd.pypi.simple.v1+json" "$PIP_INDEX_URL"crgw-beta/ | jq -c "[.files[].filename]"' 2>&1)
check "PEP 691 JSON when asked ($out)" -- test "$out" = '["crgw_beta-1.1.0-py3-none-any.whl"]'
out=$(run "$PIP" 'pip download -q --no-cache-dir --disable-pip-version-check --no-deps -d dl crgw-beta==1.0.0 2>&1 | tail -2' 2>&1)
echo "$out" | grep -qi 'no matching distribution'
ok $? "pip cannot find a version outside the requirements ($(echo "$out" | tail -1 | head -c 120))"
out=$(run "$PIP" 'curl -s -o /dev/null -w "%{http_code}" "$PIP_INDEX_URL"crgw-beta/crgw_beta-1.0.0-py3-none-any.whl' 2>&1)
check "its file asked for directly: 403 ($out)" -- test "$out" = 403
check "audited: lockfile_violation for crgw-beta 1.0.0" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .registry=="pip" and .reason_code=="lockfile_violation" and .package=="crgw-beta" and .version=="1.0.0")'

# ---- upstream connections: a sandbox reuses its own, never another's -----------------------------------
# The index's side counts the connections it is asked for (SYNs to pypi.test:443, in the test network's
# namespace). metadata_ttl_seconds is 0, so every project page goes upstream.
ip netns exec "$TN_NS" nft -f - <<EOF2 || { echo "Bail out! cannot count the index's connections"; exit 1; }
table inet crgw_e2e_conns {
	counter syns {}
	chain in {
		type filter hook input priority 0; policy accept;
		ip daddr $TN_PYPI_ADDR tcp dport 443 tcp flags & (syn | ack) == syn counter name syns
	}
}
EOF2
testnet_on_exit 'ip netns exec "$TN_NS" nft delete table inet crgw_e2e_conns 2>/dev/null; true'
syns() { ip netns exec "$TN_NS" nft -j list counter inet crgw_e2e_conns syns | jq '.nftables[1].counter.packets'; }
before=$(syns)
# One curl, so one client connection and so one worker (each worker keeps its own idle connections).
pages='u=$PIP_INDEX_URL; curl -s -w "%{http_code} " -o /dev/null ${u}crgw-alpha/ -o /dev/null ${u}crgw-beta/ -o /dev/null ${u}crgw-gamma/ -o /dev/null ${u}crgw-alpha/'
audit_before=$(wc -l <"$AUDIT")
out=$(run "$PIP" "$pages" 2>&1)
one=$(($(syns) - before))
check "four project pages from one sandbox ($out) took one upstream connection ($one)" -- test "$out" = "200 200 200 200 " -a "$one" = 1
out=$(run "$PIP" "$pages" 2>&1)
two=$(($(syns) - before))
check "another sandbox's four pages ($out) took a connection of its own ($two in all)" -- test "$out" = "200 200 200 200 " -a "$two" = 2
dst=$(tail -n +$((audit_before + 1)) "$AUDIT" | jq -rs '[.[] | select(.event=="connection_end" and .service=="registry" and .registry=="pip") | .dst_ip] | unique | join(",")')
check "every one of the eight requests is audited with the index's address, the reused ones too ($dst)" -- test "$dst" = "$TN_PYPI_ADDR"
n=$(tail -n +$((audit_before + 1)) "$AUDIT" | jq -s '[.[] | select(.event=="connection_end" and .service=="registry" and .registry=="pip")] | length')
check "... eight connection_end events ($n)" -- test "$n" = 8

# ---- deny_unknown: a version outside the lockfile ------------------------------------------------------
testnet_npm_publish crgw-dep-01 9.0.0 >/dev/null 2>&1
ok $? "crgw-dep-01@9.0.0 published to the upstream (outside the lockfile)"
out=$(run "$NPM" 'curl -s "$npm_config_registry"crgw-dep-01 | jq -c "[.versions|keys[]]"' 2>&1)
check "the packument lists only the lockfile's version ($out)" -- test "$out" = '["1.0.0"]'
out=$(run "$NPM" 'npm install --no-save crgw-dep-01@9.0.0 2>&1' 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q 'ETARGET\|No matching version'
ok $? "npm install of the unlisted version fails early, naming it ($(echo "$out" | grep -m1 -i 'notarget\|matching'))"
out=$(run "$NPM" 'curl -s -o /dev/null -w "%{http_code}" "$npm_config_registry"crgw-dep-01/-/crgw-dep-01-9.0.0.tgz' 2>&1)
check "its tarball asked for directly: 403 ($out)" -- test "$out" = 403
check "audited: lockfile_violation with package and version" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .action=="deny" and .reason_code=="lockfile_violation" and .package=="crgw-dep-01" and .version=="9.0.0")'

# ---- warn mode: let through and audited ----------------------------------------------------------------
WARN=$T/warn
project "$WARN" '  npm:
    enable: true
    allowed_hosts: [npm.test]
    lockfile_enforcement: { enabled: true, mode: warn, lockfiles: [package-lock.json] }'
out=$(run "$WARN" 'curl -s "$npm_config_registry"crgw-dep-01 | jq -c "[.versions|keys[]]"' 2>&1)
check "warn mode: the packument keeps the unlisted version ($out)" -- test "$out" = '["1.0.0","9.0.0"]'
out=$(run "$WARN" 'curl -s -o t.tgz -w "%{http_code}\n" "$npm_config_registry"crgw-dep-01/-/crgw-dep-01-9.0.0.tgz && tar -tzf t.tgz | head -1' 2>&1)
check "warn mode: the unlisted tarball is served, verified against the packument ($(echo $out))" -- test "$out" = $'200\npackage/package.json' -o "$out" = $'200\npackage/index.js'
check "audited: action warn, lockfile_violation" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .action=="warn" and .reason_code=="lockfile_violation" and .package=="crgw-dep-01" and .version=="9.0.0")'

# ---- a registry the policy does not enable ---------------------------------------------------------------
NONE=$T/none
project "$NONE" '  pip: { enable: true, allowed_hosts: [pypi.test] }'
out=$(run "$NONE" 'curl -s -D - -o /dev/null http://$CRGW_GATEWAY:8170/registry/npm/npm.test/crgw-dep-00 | tr -d "\r" | grep -i "^x-crgw-reason"' 2>&1)
check "npm not enabled: registry_not_allowed ($out)" -- grep -q registry_not_allowed <<<"$out"
out=$(run "$NPM" 'curl -s -D - -o /dev/null http://$CRGW_GATEWAY:8170/registry/pypi/pypi.test/simple/crgw-alpha/ | tr -d "\r" | grep -i "^x-crgw-reason"' 2>&1)
check "pip not enabled: registry_not_allowed ($out)" -- grep -q registry_not_allowed <<<"$out"
check "audited: registry_not_allowed with the registry and the host asked for" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .reason_code=="registry_not_allowed" and .registry=="pip" and .dst_host=="pypi.test")'
out=$(run "$NPM" 'curl -s -D - -o /dev/null http://$CRGW_GATEWAY:8170/registry/npm/web1.test/crgw-dep-00 | tr -d "\r" | grep -i "^x-crgw-reason"' 2>&1)
check "a host outside allowed_hosts: host_not_allowed ($out)" -- grep -q host_not_allowed <<<"$out"

# ---- the release cooldown --------------------------------------------------------------------------------
COOL=$T/cool
project "$COOL" '  npm:
    enable: true
    allowed_hosts: [npm.test]
    fallback: allow
    min_release_age: 1h'
testnet_npm_publish crgw-fresh 1.0.0 >/dev/null 2>&1
ok $? "crgw-fresh@1.0.0 published just now"
out=$(run "$COOL" 'npm install --no-save crgw-fresh 2>&1' 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -qi 'ETARGET\|No matching version\|notarget\|no versions available'
ok $? "npm install of a version younger than min_release_age fails ($(echo "$out" | grep -m1 -i 'notarget\|matching\|versions available' || echo "$out" | tail -2))"
out=$(run "$COOL" 'curl -s -o /dev/null -w "%{http_code}" "$npm_config_registry"crgw-fresh/-/crgw-fresh-1.0.0.tgz' 2>&1)
check "its tarball asked for directly: 403 ($out)" -- test "$out" = 403
check "audited: release_too_new with package and version" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .action=="deny" and .reason_code=="release_too_new" and .package=="crgw-fresh" and .version=="1.0.0")'

# ---- integrity_mismatch: a tarball tampered with on the upstream -----------------------------------------
"$CTL" --control "$T/ctl.sock" cache gc --target 0 >/dev/null 2>&1
victim=$TN_STATE/npm/storage/crgw-dep-05/crgw-dep-05-1.0.0.tgz
want=$(jq -r '.packages["node_modules/crgw-dep-05"].integrity' "$NPM/package-lock.json" | sed 's/^sha512-//' | base64 -d | od -An -tx1 -v | tr -d ' \n')
size=$(stat -c %s "$victim")
cp "$victim" "$T/victim.orig"
printf 'X' | dd of="$victim" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
out=$(run "$NPM" 'curl -s -o t.tgz -w "%{http_code} %{size_download}" "$npm_config_registry"crgw-dep-05/-/crgw-dep-05-1.0.0.tgz; echo " exit=$?"' 2>&1)
got=$(echo "$out" | awk '{print $2}')
[[ "$out" == 200\ * ]] && [ "$got" -lt "$size" ] && ! [[ "$out" == *exit=0 ]]
ok $? "a tampered tarball: the client's transfer is cut short ($out of $size bytes)"
check "the client never had the complete file" -- test "$(stat -c %s "$NPM/t.tgz" 2>/dev/null || echo 0)" -lt "$size"
check "audited: integrity_mismatch with package and version" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .action=="deny" and .reason_code=="integrity_mismatch" and .package=="crgw-dep-05")'
out=$("$CTL" --control "$T/ctl.sock" cache ls --json 2>&1)
echo "$out" | jq -e --arg d "sha512:$want" 'map(select(.digest==$d)) | length == 0' >/dev/null
ok $? "the cache holds nothing of it ($(echo "$out" | jq length 2>/dev/null) objects)"
rm -rf "$NPM/node_modules"
out=$(run "$NPM" 'set -o pipefail; npm ci --cache "$(mktemp -d)" --no-progress 2>&1 | grep -m2 "npm error"' 2>&1)
rc=$?
[ $rc -ne 0 ]
ok $? "npm ci fails while the upstream serves the tampered tarball ($(echo $out | head -c 150))"
cp "$T/victim.orig" "$victim"

# ---- a credential withdrawn on reload withdraws what it fetched --------------------------------------------
# @priv/* is readable only with a token. Its packument, fetched with the operator's credential, is kept in the
# metadata store; once a reload takes the credential from npm.test, that copy must not serve any sandbox.
PRIV=$T/priv
project "$PRIV" '  npm:
    enable: true
    allowed_hosts: [npm.test]
    fallback: allow'
testnet_npm_publish @priv/secret-lib 1.0.0 >/dev/null 2>&1
ok $? "@priv/secret-lib@1.0.0 published to a scope only a token reads"
anon=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TN_CA" --resolve "npm.test:443:$TN_NPM_ADDR" --noproxy '*' \
	https://npm.test/@priv%2fsecret-lib)
check "the registry refuses it without a token ($anon)" -- test "$anon" != 200
priv_get='curl -s -o /dev/null -w "%{http_code}" "$npm_config_registry"@priv%2fsecret-lib'
out=$(run "$PRIV" "$priv_get" 2>&1)
check "through the gateway, with the operator's credential: 200 ($out)" -- test "$out" = 200
write_config false nocred
"$CTL" reload >/dev/null 2>&1
out=$(run "$PRIV" "$priv_get" 2>&1)
check "a reload withdraws the credential from npm.test: the stored packument is not served ($out)" -- test "$out" != 200
write_config false
"$CTL" reload >/dev/null 2>&1
out=$(run "$PRIV" "$priv_get" 2>&1)
check "put back, it serves again ($out)" -- test "$out" = 200

# ---- the second install: offline, from the cache ---------------------------------------------------------
# Every install gets an empty npm cache of its own: what it does not fetch from the gateway it does not have.
rm -rf "$NPM/node_modules"
start=$(date +%s%N)
out=$(run "$NPM" 'npm ci --cache "$(mktemp -d)" --no-progress 2>&1 | tail -1' 2>&1)
rc=$?
warm_ms=$((($(date +%s%N) - start) / 1000000))
ok $rc "npm ci again, the cache warm ($warm_ms ms; $out)"
out=$(run "$PIP" "$pip_install" 2>&1)
echo "$out" | grep -q crgw_gamma
ok $? "pip install again, filling the cache the tamper test emptied"
gw_stop >/dev/null 2>&1
for s in npm pypi goproxy oci; do
	[ -f "$TN_STATE/pids/$s.pid" ] && read -r pid _ <"$TN_STATE/pids/$s.pid" && kill -STOP "$pid" 2>/dev/null
done
write_config true
before=$(wc -l <"$AUDIT")
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not start offline"; exit 1; }
rm -rf "$NPM/node_modules"
start=$(date +%s%N)
run "$NPM" true
sandbox_ms=$((($(date +%s%N) - start) / 1000000))
rm -rf "$NPM/node_modules"
start=$(date +%s%N)
out=$(run "$NPM" 'npm ci --cache "$(mktemp -d)" --no-progress 2>&1 | tail -1; ls node_modules | wc -l' 2>&1)
rc=$?
offline_ms=$((($(date +%s%N) - start) / 1000000))
ok $rc "npm ci offline (cache.offline, every registry stopped) succeeds ($offline_ms ms; ${out//$'\n'/ })"
# Timing is the benchmark's business (conformance/bench/registry-bench.sh); here, that every tarball came from the cache.
hits=$(tail -n +$((before + 1)) "$AUDIT" | jq -s '[.[] | select(.event=="connection_end" and .service=="registry" and .cache=="hit")] | length')
check "every tarball of the offline install was a cache hit ($hits hits, $npm_count packages)" -- test "$hits" -ge "$npm_count"
out=$(run "$WARN" 'curl -s -D - -o /dev/null "$npm_config_registry"crgw-dep-01/-/crgw-dep-01-9.0.0.tgz | tr -d "\r" | head -1' 2>&1)
check "offline, what is not cached is refused with 503 ($out)" -- grep -q 503 <<<"$out"
out=$(run "$PIP" "$pip_install" 2>&1)
echo "$out" | grep -q crgw_alpha && echo "$out" | grep -q crgw_beta && echo "$out" | grep -q crgw_gamma
ok $? "pip install offline, the index stopped: pages from the store, wheels from the cache (${out//$'\n'/ })"
out=$(run "$PRIV" "$priv_get" 2>&1)
check "offline, the private packument stored with the credential serves ($out)" -- test "$out" = 200
gw_stop >/dev/null 2>&1
write_config true nocred
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not start offline without the credential"; exit 1; }
out=$(run "$PRIV" "$priv_get" 2>&1)
check "offline after a restart without the credential: it is refused 503, not served ($out)" -- test "$out" = 503
for s in npm pypi goproxy oci; do
	[ -f "$TN_STATE/pids/$s.pid" ] && read -r pid _ <"$TN_STATE/pids/$s.pid" && kill -CONT "$pid" 2>/dev/null
done
diag "npm ci: first ${cold_ms} ms, warm ${warm_ms} ms, offline ${offline_ms} ms; an empty sandbox run ${sandbox_ms} ms"

# Every restart above stopped a crgw; this one is checked: under the sanitizers a leak or undefined behaviour
# makes it fail.
gw_stop
ok $? "crgw stopped cleanly"

tap_done
