#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Audit export to the pipelines operators already run: real rsyslog (from Debian) receiving over TCP
# with octet counting and over TLS (its gtls driver, the test CA), and an OTLP/HTTP JSON logs receiver
# (conformance/lib/otlp_receiver.py: the OpenTelemetry collector is not packaged; it checks each request
# against the OTLP JSON schema and starts by answering 503). Every event of the run reaches all three;
# rsyslog stopped mid-run and started again loses nothing (the spool drains), also across a gateway restart;
# a sink whose spool is full
# counts what it drops and reports it, and the gateway goes on. TAP output; needs root and rsyslog.
# usage: export.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
GW_TABLE=crgw_e2e_export

RSYSLOGD=$(command -v rsyslogd || echo /usr/sbin/rsyslogd)
if ! [ -x "$RSYSLOGD" ] || ! [ -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ]; then
	echo "1..0 # SKIP no rsyslog with its TLS driver (scripts/setup installs rsyslog and rsyslog-gnutls)"
	exit 0
fi

T=$(mktemp -d /tmp/crgw-e2e-export.XXXXXX)
chmod 0755 "$T"
testnet_on_exit '[ -n "${CRGW_E2E_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"'
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_on_exit 'for p in $(cat "$T"/pids 2>/dev/null); do kill "$p" 2>/dev/null; done'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
AUDIT=$T/audit.log
# The receivers' addresses, in the test network's namespace.
SYSLOG_TCP=203.0.113.60
SYSLOG_TLS=203.0.113.61
OTLP=203.0.113.62
DEAD=203.0.113.63
for a in $SYSLOG_TCP $SYSLOG_TLS $OTLP; do testnet_exec ip addr add "$a/24" dev eth0; done

rsyslog_start() { # rsyslog_start NAME ADDR PORT TLS(0|1): in the test network, foreground, its own files
	local name=$1 addr=$2 port=$3 tls=$4 dir=$T/rsyslog-$1
	mkdir -p "$dir"
	{
		echo "global(workDirectory=\"$dir\" maxMessageSize=\"128k\""
		if [ "$tls" = 1 ]; then
			echo "  defaultNetstreamDriverCAFile=\"$TN_CA\""
			echo "  defaultNetstreamDriverCertFile=\"$TN_STATE/pki/server.pem\""
			echo "  defaultNetstreamDriverKeyFile=\"$TN_STATE/pki/server.key\""
		fi
		echo ")"
		if [ "$tls" = 1 ]; then
			echo 'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")'
		else
			echo 'module(load="imtcp")'
		fi
		echo "input(type=\"imtcp\" address=\"$addr\" port=\"$port\")"
		echo 'template(name="msgonly" type="string" string="%msg%\n")'
		echo "action(type=\"omfile\" file=\"$dir/received.log\" template=\"msgonly\")"
		echo 'template(name="sdonly" type="string" string="%structured-data%\n")'
		echo "action(type=\"omfile\" file=\"$dir/sd.log\" template=\"sdonly\")"
	} >"$dir/rsyslog.conf"
	testnet_exec "$RSYSLOGD" -n -f "$dir/rsyslog.conf" -i "$dir/rsyslog.pid" >"$dir/out.log" 2>&1 &
	echo $! >"$dir/exec.pid"
	echo $! >>"$T/pids"
	for _ in $(seq 50); do
		if [ -s "$dir/rsyslog.pid" ] && testnet_exec bash -c "exec 3<>/dev/tcp/$addr/$port" 2>/dev/null; then
			echo "$(cat "$dir/rsyslog.pid")" >>"$T/pids"
			return 0
		fi
		sleep 0.1
	done
	diag "rsyslog $name did not listen:" "$(cat "$dir/out.log")"
	return 1
}
rsyslog_stop() { # rsyslog_stop NAME: SIGTERM to rsyslogd (its pid file names it), and wait for it to end
	local dir=$T/rsyslog-$1 pid
	pid=$(cat "$dir/rsyslog.pid" 2>/dev/null) || return 1
	kill -TERM "$pid" || return 1
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	wait "$(cat "$dir/exec.pid")" 2>/dev/null
	! kill -0 "$pid" 2>/dev/null
}

rsyslog_start tcp $SYSLOG_TCP 1514 0 || { echo "Bail out! rsyslog (tcp) did not start"; exit 1; }
rsyslog_start tls $SYSLOG_TLS 6514 1 || { echo "Bail out! rsyslog (tls) did not start"; exit 1; }
testnet_exec python3 "$here/../lib/otlp_receiver.py" $OTLP 4318 "$T/otlp.log" 3 &
echo $! >>"$T/pids"

cat >"$T/crgw.yaml" <<EOF
audit:
  sinks:
    siem-tcp: { type: syslog, transport: tcp, address: "$SYSLOG_TCP:1514", format: sd }
    siem-tls: { type: syslog, transport: tls, address: "$SYSLOG_TLS:6514", server_name: allowed.test, ca_file: "$TN_CA" }
    otel: { type: otlp, endpoint: "http://$OTLP:4318/v1/logs", batch_max: 50 }
    nowhere: { type: syslog, transport: tcp, address: "$DEAD:1514", spool_max_bytes: 4K }
EOF
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not start"; exit 1; }
ok 0 "crgw starts with four audit sinks (pid $GW_PID)"
cat >"$T/cleanroom.yaml" <<'YAML'
version: 1
sandbox:
  network:
    default: deny
    allow:
      - host: allowed.test
YAML
traffic() { # traffic N: N sandboxes, each a few allowed and denied lookups
	for i in $(seq "$1"); do
		"$CTL" run --rm --workspace-mode none --policy "$T/cleanroom.yaml" -- \
			sh -c "getent ahostsv4 allowed.test; getent ahostsv4 denied-$i.test; true" >/dev/null 2>&1
	done
}
sink() { "$CTL" stats --json | jq -c --arg n "$1" '.audit.sinks[] | select(.name == $n)'; }

traffic 5
rsyslog_stop tcp
ok $? "rsyslog (tcp) stopped mid-run"
traffic 5
for _ in $(seq 30); do
	[ "$(sink siem-tcp | jq .spool_bytes)" -gt 0 ] && break
	sleep 0.2
done
spooled=$(sink siem-tcp | jq .spool_bytes)
[ "$spooled" -gt 0 ]
ok $? "while it is down the events wait in the spool ($spooled bytes; $(sink siem-tcp))"
rsyslog_start tcp $SYSLOG_TCP 1514 0
ok $? "rsyslog (tcp) started again"
traffic 5
drained=no
for _ in $(seq 150); do
	if [ "$(sink siem-tcp | jq .spool_bytes)" -eq 0 ] && [ "$(sink siem-tls | jq .spool_bytes)" -eq 0 ] &&
		[ "$(sink otel | jq .spool_bytes)" -eq 0 ]; then
		drained=yes
		break
	fi
	sleep 0.2
done
[ $drained = yes ]
ok $? "the spools drain once the receivers take events ($(sink siem-tcp) $(sink otel))"
sink nowhere >"$T/nowhere.json"
jq -e '.lost > 0 and .spool_bytes <= 4096' "$T/nowhere.json" >/dev/null
ok $? "a sink whose spool is full counts what it drops, and keeps its bound ($(cat "$T/nowhere.json"))"
audit_has "$AUDIT" 'select(.event == "audit_loss" and (.detail | contains("audit.sinks.nowhere")) and .count > 0)'
ok $? "... the loss is itself an audit event, naming the sink"
"$CTL" stats >/dev/null && kill -0 "$GW_PID"
ok $? "... and the gateway goes on serving"

# A gateway stopped with events in a spool delivers them after its next start.
rsyslog_stop tcp
traffic 3
for _ in $(seq 30); do
	[ "$(sink siem-tcp | jq .spool_bytes)" -gt 0 ] && break
	sleep 0.2
done
left=$(sink siem-tcp | jq .spool_bytes)
gw_stop
ok $? "crgw exits 0 on SIGTERM with $left bytes left in a spool (the spools stay for the next start)"
rsyslog_start tcp $SYSLOG_TCP 1514 0
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not restart"; exit 1; }
for _ in $(seq 100); do
	[ "$(sink siem-tcp | jq .spool_bytes)" -eq 0 ] && [ "$(sink siem-tcp | jq .delivered)" -gt 0 ] && break
	sleep 0.2
done
resumed=$(sink siem-tcp)
[ "$left" -gt 0 ] && jq -e '.spool_bytes == 0 and .delivered > 0' <<<"$resumed" >/dev/null
ok $? "the next start delivers what the spool kept ($resumed)"
gw_stop
ok $? "crgw exits 0 on SIGTERM"
rsyslog_stop tcp
rsyslog_stop tls
# Every line of the file, in each receiver (a resend after a failure may repeat one; none may be missing).
norm() { sed 's/^ *//' "$1" | sort -u; }
sort -u "$AUDIT" >"$T/want"
want=$(wc -l <"$T/want")
for r in tcp tls; do
	missing=$(comm -23 "$T/want" <(norm "$T/rsyslog-$r/received.log") | grep -vc '"event":"gateway_stopped"\|"event":"audit_loss"')
	[ "$want" -gt 50 ] && [ "$missing" -eq 0 ]
	ok $? "rsyslog over $r received every event of the run ($want events, $missing missing)"
	[ "$missing" -eq 0 ] || diag "$(comm -23 "$T/want" <(norm "$T/rsyslog-$r/received.log") | head -3)"
done
missing=$(comm -23 "$T/want" <(sort -u "$T/otlp.log") | grep -vc '"event":"gateway_stopped"\|"event":"audit_loss"')
[ "$missing" -eq 0 ] && ! [ -s "$T/otlp.log.errors" ]
ok $? "the OTLP receiver got every event in valid OTLP JSON, after three 503s ($missing missing)"
grep -q '^\[crgw@32473 service="dns" sandbox_id="sbx-[0-9a-f]*" action="allow"' "$T/rsyslog-tcp/sd.log"
ok $? "format sd: rsyslog parses the structured data of each message ($(grep -m1 'service="dns"' "$T/rsyslog-tcp/sd.log"))"
grep -q '^-$' "$T/rsyslog-tls/sd.log"
ok $? "format json (the default): no structured data, the JSON line is the message"
tap_done
