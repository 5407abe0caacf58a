#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The audit log's disk fills: with audit.allow_loss false (the default), no allowed action goes ahead
# unrecorded. Once the writer cannot write and the queue (audit.queue: 64) is full, a DNS answer gets
# SERVFAIL, a proxied request or tunnel and a mediation request get 503 rate_limited, and nothing reaches
# the upstream; when the disk has room again the writer resumes, an audit_loss event counts the loss and
# says the actions were refused, and requests are allowed and recorded again. TAP output; needs root.
# usage: audit-loss.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
GW_TABLE=crgw_e2e_loss

T=$(mktemp -d /tmp/crgw-e2e-loss.XXXXXX)
chmod 0755 "$T"
mkdir -p "$T/alog"
testnet_on_exit '[ -n "${CRGW_E2E_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"'
testnet_on_exit 'mountpoint -q "$T/alog" && umount "$T/alog"; true'
testnet_on_exit '[ -n "${BOX:-}" ] && "$CTL" sandbox rm "$BOX" >/dev/null 2>&1; true'
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
# The audit log alone on a small file system of its own, which the test fills.
mount -t tmpfs -o size=256k,mode=0755 crgw-e2e-alog "$T/alog" || { echo "Bail out! cannot mount a tmpfs"; exit 1; }
AUDIT=$T/alog/audit.log
gw_start "$T" --set "audit.path=$AUDIT" --set audit.queue=64 --set audit.keep=0 ||
	{ echo "Bail out! crgw did not start"; exit 1; }
ok 0 "crgw starts with its audit log on a 256 KiB file system and a queue of 64 (pid $GW_PID)"
audit_has "$AUDIT" 'select(.event == "gateway_started")'
ok $? "the audit log is the one on that file system"

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
YAML
BOX=lossbox
"$CTL" run --policy "$T/cleanroom.yaml" --workspace-mode none --name "$BOX" -- true >/dev/null 2>&1
ok $? "a kept sandbox to run the requests in"
sx() { "$CTL" exec "$BOX" -- sh -c "$1"; }
# curl's answer: the status, and the reason the gateway gave (X-Crgw-Reason), if any.
PROXIED='curl -s -o /dev/null -D - -x "http://$CRGW_GATEWAY:3128" --max-time 5'
status_of() { sx "$1" 2>/dev/null | awk 'NR == 1 {s = $2} tolower($1) == "x-crgw-reason:" {r = $2} END {printf "%s %s", s, r}' | tr -d '\r'; }

# The test's paths do not exist upstream: the web server's 404 is the sign that a request reached it.
got=$(status_of "$PROXIED http://allowed.test/before")
[ "$got" = "404 " ]
ok $? "before: a proxied request is allowed and answered by the upstream (got: $got)"
sx 'getent hosts allowed.test' >/dev/null 2>&1
ok $? "before: the sandbox resolves allowed.test"
audit_has "$AUDIT" 'select(.event == "decision" and .service == "http" and .action == "allow")'
ok $? "before: the allowed request is in the audit log"

# Fill the file system: the writer's next write fails (ENOSPC) and events wait in the queue.
dd if=/dev/zero of="$T/alog/fill" bs=4k count=1000 >/dev/null 2>&1
[ "$(df --output=avail -k "$T/alog" | tail -1 | tr -d ' ')" -eq 0 ]
ok $? "the audit log's file system is full"

# Allowed requests until the queue is full: at most 200, each a fresh connection with its own events.
first503=
for i in $(seq 200); do
	got=$(status_of "$PROXIED http://allowed.test/fill-$i")
	if [ "${got%% *}" = 503 ]; then
		first503="$i $got"
		break
	fi
done
[ -n "$first503" ] && [ "${first503#* }" = "503 rate_limited" ]
ok $? "once the queue is full, an allowed proxied request is refused 503 rate_limited (request ${first503%% *} of at most 200: ${first503#* })"
mark=loss-$RANDOM$RANDOM
got=$(status_of "$PROXIED http://allowed.test/$mark")
[ "$got" = "503 rate_limited" ]
ok $? "the next allowed request is refused the same way (got: $got)"
sleep 0.5
! grep -rq "$mark" "$TN_STATE/log/" 2>/dev/null
ok $? "the refused request never reached the upstream web server (its path is in no server's log)"
out=$(sx 'curl -s -o /dev/null -w "%{http_connect}" -p -x "http://$CRGW_GATEWAY:3128" --max-time 5 http://allowed.test/' 2>&1)
[ "$out" = 503 ]
ok $? "a CONNECT tunnel to an allowed host is refused 503 (got: $out)"
got=$(status_of 'curl -s -o /dev/null -D - --max-time 5 "http://$CRGW_GATEWAY:8170/meta/"')
[ "$got" = "503 rate_limited" ]
ok $? "a mediation request (/meta/) is refused 503 rate_limited (got: $got)"
# other.test: allowed, and never asked before (a repeated answer is not audited again, so it needs no room).
sx 'getent hosts other.test' >/dev/null 2>&1
[ $? -ne 0 ]
ok $? "an allowed name asked for the first time does not resolve (SERVFAIL: its answer could not be recorded)"
out=$("$CTL" stats --json 2>/dev/null | jq -r '.audit.lost')
[ "${out:-0}" -gt 0 ] 2>/dev/null
ok $? "crgw-ctl stats counts the lost events (audit.lost: $out)"

# Room again: the writer resumes and says what it lost, and allowed actions are recorded again.
rm -f "$T/alog/fill"
audit_has "$AUDIT" 'select(.event == "audit_loss" and .count > 0 and .detail == "queue full; the unrecorded actions were refused")'
ok $? "with room again, an audit_loss event counts the loss and says the actions were refused"
ok=
for _ in $(seq 50); do
	got=$(status_of "$PROXIED http://allowed.test/after")
	[ "$got" = "404 " ] && ok=1 && break
	sleep 0.1
done
[ -n "$ok" ]
ok $? "then an allowed request reaches the upstream again (got: $got)"
audit_has "$AUDIT" 'select(.event == "decision" and .service == "http" and .action == "allow" and (.detail // "" | contains("/after")))'
ok $? "and is recorded"
! grep -q "$mark" "$AUDIT"
ok $? "no allow event names the refused request (its refusal was lost with the queue, and counted)"

"$CTL" sandbox rm "$BOX" >/dev/null 2>&1
ok $? "the sandbox is removed"
BOX=
gw_stop
ok $? "crgw stops cleanly"
tap_done
