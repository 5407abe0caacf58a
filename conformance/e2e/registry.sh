#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end through registry mediation (/registry/, port 8170), as a job uses it: real package tools inside
# crgw-ctl run sandboxes against the test network's registries over TLS (verdaccio for npm), with the
# content cache. `npm ci` of a v3 lockfile of 57 packages succeeds; a version outside the lockfile is
# hidden from packuments and its tarball refused (lockfile_violation), let through and audited in warn
# mode; a registry the policy does not enable is refused (registry_not_allowed); a version published just
# before the install is hidden and refused (release_too_new); a tarball tampered with on the upstream is
# cut before its last bytes (integrity_mismatch) and nothing of it is cached; the second install runs
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
out=$(run "$NPM" 'npm ci --no-progress 2>&1 | tail -3; ls node_modules | wc -l' 2>&1)
rc=$?
cold_ms=$((($(date +%s%N) - start) / 1000000))
ok $rc "npm ci through the gateway (${out//$'\n'/ }; ${cold_ms} ms)"
installed=$(find "$NPM/node_modules" -name package.json -path '*/node_modules/*/package.json' -not -path '*/node_modules/*/node_modules/*/*/*' 2>/dev/null | wc -l)
check "every package of the lockfile is installed ($installed of $npm_count)" -- test "$installed" -ge "$npm_count"
check "a tarball is audited: decision allow, service registry, registry npm, package and version" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .service=="registry" and .registry=="npm" and .action=="allow" and .package=="crgw-dep-00" and .version=="1.0.0" and (.integrity|startswith("sha512:")))'
check "its connection_end carries bytes" -- \
	audit_has "$AUDIT" 'select(.event=="connection_end" and .service=="registry" and .package=="crgw-dep-00" and .bytes_down > 0)'

tap_done
