#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# crgw-ctl policy explain against the gateway it explains: for each destination of a table (names in
# other spellings, IP literals, IPv4-mapped and NAT64 IPv6, loopback, the sandbox pool, numeric spellings
# that are no address), explain's verdict, reason and rule, and the real gateway's for a CONNECT to it from
# a sandbox (the status line the client reads, the decision the audit log records). Any disagreement is a
# defect of one or the other. TAP output. Needs root.
# usage: explain.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
GW_TABLE=${GW_TABLE:-crgw_e2e_explain}
GW_PREFIX=${GW_PREFIX:-cgx}
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

T=$(mktemp -d /tmp/crgw-e2e-explain.XXXXXX)
chmod 0755 "$T"
testnet_on_exit '[ -n "${CRGW_E2E_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"'
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
AUDIT=$T/audit.log

# dual.test is 203.0.113.10 (and 2001:db8:113::10); other.test is 203.0.113.11. No rule denies an address a
# name the table asks for resolves to: explain cannot resolve (docs/ctl.md), so that step is not compared.
cat >"$T/cleanroom.yaml" <<'YAML'
version: 1
sandbox:
  network:
    default: deny
    allow:
      - host: allowed.test
        ports: [80, 443]
      - host: other.test
        ports: [80]
      - host: dual.test
      - host: 203.0.113.0/25
        ports: [80]
      - host: "2001:db8:113::/64"
        ports: [80]
      - host: 127.0.0.0/8
        ports: [8079]
    deny:
      - host: dual.test
        ports: [443]
      - host: 203.0.113.12
YAML

gw_start "$T" || { echo "Bail out! crgw did not start"; exit 1; }
ok 0 "crgw starts against the test network (pid $GW_PID)"

# The gateway refuses its pool whatever the policy says; explain is told so, as its docs ask.
explain() { "$CTL" policy explain --json --blocked "$GW_POOL" --policy "$T/cleanroom.yaml" "$1" 2>/dev/null; }
decisions() { jq -c 'select(.event == "decision" and .service == "connect")' "$AUDIT" 2>/dev/null; }

# compare TARGET: a CONNECT to TARGET from a fresh sandbox, then explain for the same TARGET.
compare() {
	local target=$1 before status gw ex gw_action want_action
	before=$(decisions | wc -l)
	status=$("$CTL" run --rm --workspace-mode none --policy "$T/cleanroom.yaml" -- bash -c \
		'exec 3<>/dev/tcp/$CRGW_GATEWAY/3128 && printf "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" "$1" "$1" >&3 &&
		 read -r -t 10 line <&3; printf "%s\n" "${line%$'"'\r'"'}"' sh "$target" 2>/dev/null)
	for _ in $(seq 50); do
		[ "$(decisions | wc -l)" -gt "$before" ] && break
		sleep 0.1
	done
	# Allowed and then unreachable (nothing listens there) is audited as upstream_unreachable with the
	# rule that allowed it: for the policy's part, an allow.
	gw=$(decisions | tail -n +"$((before + 1))" | head -1 |
		jq -c 'if .reason_code == "upstream_unreachable" then {action: "allow", reason_code: null, rule}
		       else {action, reason_code, rule} end')
	ex=$(explain "$target" | jq -c '{action, reason_code, rule}')
	# What the client read: 200 (or 502, allowed and then unreachable) is an allow, 403 and 400 a denial.
	case $status in
	"HTTP/1.1 200"* | "HTTP/1.1 502"*) gw_action=allow ;;
	*) gw_action=deny ;;
	esac
	want_action=$(jq -r .action <<<"$ex")
	[ -n "$ex" ] && [ "$gw" = "$ex" ] && [ "$gw_action" = "$want_action" ]
	ok $? "CONNECT $target: explain $ex, gateway '$status' $gw"
}

compare allowed.test:80
compare ALLOWED.Test.:443
compare other.test:443
compare denied.test:443
compare dual.test:443
compare dual.test:80
compare 203.0.113.10:80
compare 203.0.113.10:443
compare 203.0.113.12:80
compare 203.0.113.11:80
compare '[::ffff:203.0.113.10]:80'
compare '[2001:db8:113::10]:80'
compare 127.0.0.1:80
# 127.0.0.0/8 opens the special range, but 127.0.0.1 is the gateway's own address on every host: refused.
compare 127.0.0.1:8079
compare 127.0.0.2:8079
compare '[64:ff9b::7f00:1]:80'
compare "${GW_POOL%.*/*}.77:80"
compare 0177.0.0.1:80
compare 2130706433:80
compare a..test:80

gw_stop
ok $? "crgw exits 0 on SIGTERM"
tap_done
