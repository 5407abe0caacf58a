#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Live reload under load: 64 CONNECT tunnels move data (2 MiB uploads, paced by the client) while
# crgw.yaml changes the DNS rate limit and the upstream DNS servers, applied by crgw-ctl reload and by
# SIGHUP; every tunnel finishes whole. A file with an error is refused and the running configuration
# stays; a setting that cannot change live is named and left as it was. TAP output; needs root.
# usage: reload.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
GW_TABLE=crgw_e2e_reload
GW_UPSTREAM_IN_FILE=1

T=$(mktemp -d /tmp/crgw-e2e-reload.XXXXXX)
chmod 0755 "$T"
testnet_on_exit '[ -n "${CRGW_E2E_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"'
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
AUDIT=$T/audit.log
# An address of the test network where nothing answers DNS: an upstream that fails, so that a change
# of upstream shows.
SILENT=203.0.113.254

config() { # config RATE UPSTREAM [EXTRA]: writes crgw.yaml
	printf 'dns:\n  rate_limit: %s\n  timeout_ms: %s\n  upstream: [ "%s" ]\n%s' "$1" "${4:-800}" "$2" "${3:-}" >"$T/crgw.yaml"
}
config 1000 "$TN_DNS"
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not start"; exit 1; }
ok 0 "crgw starts with its upstream DNS from crgw.yaml (pid $GW_PID)"
cat >"$T/cleanroom.yaml" <<'YAML'
version: 1
sandbox:
  network:
    default: deny
    allow:
      - host: allowed.test
      - host: www.allowed.test
      - host: chain.test
      - host: api.test
YAML
sb() { "$CTL" run --rm --workspace-mode none --policy "$T/cleanroom.yaml" -- bash -c "$1" 2>&1; }
# A burst of N lookups of a cached name: how many were refused.
burst() { sb "getent ahostsv4 allowed.test >/dev/null; n=0; for i in \$(seq $1); do kdig +time=2 +retry=0 @\"\$CRGW_GATEWAY\" allowed.test | grep -q 'status: REFUSED' && n=\$((n+1)); done; echo refused=\$n"; }
# A name asked of the upstream for the first time: its status.
fresh() { sb "kdig +time=5 +retry=0 @\"\$CRGW_GATEWAY\" $1 | grep -o 'status: [A-Z]*'"; }

out=$(burst 30)
[ "$out" = refused=0 ]
ok $? "before the reload a burst of 30 lookups passes ($out)"

# The load: 64 tunnels, each uploading 2 MiB at 256 KiB/s through CONNECT (8 s) to a server that sends
# the body back, in one sandbox. The client paces the bytes, so every tunnel stays busy while it runs.
sb "$(sb_ca_cmd)"'
head -c 2097152 /dev/urandom >/tmp/blob
for i in $(seq 64); do
	curl -s --cacert '"$SB_CA"' -o /dev/null -w "%{size_upload} %{size_download} %{http_code}\n" --limit-rate 256k \
		-H "Content-Type: application/octet-stream" --data-binary @/tmp/blob https://api.test/reflect >/tmp/r.$i 2>&1 &
done
wait
cat /tmp/r.*' >"$T/load.out" &
load=$!
for _ in $(seq 50); do
	[ "$("$CTL" stats --json | jq '.proxy.tunnels_open // 0')" -ge 64 ] && break
	sleep 0.1
done
open=$("$CTL" stats --json | jq '.proxy.tunnels_open // 0')
[ "$open" -ge 64 ]
ok $? "64 tunnels are open and moving data ($open)"
[ "$open" -ge 64 ] || diag "$("$CTL" stats --json | jq -c .proxy)" "$(ss -Htn state established "( sport = :3128 )" | wc -l) connections to 3128"

tunnels() { "$CTL" stats --json | jq '.proxy.tunnels_open // 0'; }
config 5 "$SILENT" "" 900
at_reload="$(tunnels)"
"$CTL" reload --json >"$T/reload1.json" 2>&1
rc=$?
[ $rc -eq 0 ] && jq -e '.reloaded and (.applied | index("dns.rate_limit") and index("dns.upstream")) and (.needs_restart | index("dns.timeout_ms"))' "$T/reload1.json" >/dev/null
ok $? "crgw-ctl reload applies the rate limit and the upstream, and names dns.timeout_ms as needing a restart (exit $rc: $(jq -c . "$T/reload1.json" 2>/dev/null))"
out=$(burst 30)
n=${out#refused=}
[ "${n:-0}" -ge 10 ]
ok $? "... the new rate limit refuses the excess of the same burst ($out)"
out=$(fresh www.allowed.test)
! grep -q 'NOERROR' <<<"$out"
ok $? "... a name never asked before goes to the new upstream, which does not answer ($out)"
audit_has "$AUDIT" 'select(.event == "config_reloaded" and (.detail | contains("dns.rate_limit")))'
ok $? "... the reload is audited (config_reloaded)"

# A bad file: refused, and the running configuration stays.
printf 'dns:\n  rate_limit: -5\n' >"$T/crgw.yaml"
at_reload+=" $(tunnels)"
out=$("$CTL" reload 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q config_invalid <<<"$out"
ok $? "a file with an error is refused (exit $rc: $(tail -1 <<<"$out"))"
out=$(burst 30)
n=${out#refused=}
[ "${n:-0}" -ge 10 ] && kill -0 "$GW_PID"
ok $? "... the running configuration stays: the burst is still limited ($out)"
audit_has "$AUDIT" 'select(.event == "config_reload_refused")'
ok $? "... and the refusal is audited (config_reload_refused)"
# A CA file that holds no certificate would fail every upstream of mediation: the reload is refused.
echo "not a certificate" >"$T/junk.pem"
printf 'dns:
  rate_limit: 5
  upstream: [ "%s" ]
mediation:
  ca_file: %s
' "$TN_DNS" "$T/junk.pem" >"$T/crgw.yaml"
out=$("$CTL" reload 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q 'mediation.ca_file: .*no PEM certificate' <<<"$out" && kill -0 "$GW_PID"
ok $? "a mediation.ca_file without a certificate is refused on reload too (exit $rc: $(tail -1 <<<"$out"))"

# Back by SIGHUP.
config 1000 "$TN_DNS"
at_reload+=" $(tunnels)"
kill -HUP "$GW_PID"
sleep 0.5
out=$(fresh chain.test)
grep -q 'NOERROR' <<<"$out"
ok $? "SIGHUP reloads too: the first upstream answers again ($out)"
out=$(burst 30)
[ "$out" = refused=0 ]
ok $? "... and the rate limit is lifted ($out)"

wait "$load"
whole=$(grep -c '^2097152 2097152 200$' "$T/load.out")
[ "$whole" -eq 64 ]
ok $? "every one of the 64 tunnels finished whole ($whole of 64; tunnels open at the three reloads: $at_reload)"
[ "$(grep -c . "$T/load.out")" -eq 64 ] || diag "$(sort "$T/load.out" | uniq -c | head -5)"
gw_stop
ok $? "crgw exits 0 on SIGTERM"
tap_done
