#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# crgw as a service would run it: it creates the missing directories of its control socket, state and audit
# log, refuses to create them through a planted link, tells NOTIFY_SOCKET (path or abstract) READY=1 once
# its control socket listens and STOPPING=1 on SIGTERM, and reopens its audit log on SIGHUP. Needs root, no
# test network (the upstream DNS server is never asked). TAP output.
# usage: service.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
	echo "1..0 # SKIP needs root (nftables, /run)"
	exit 0
fi

# Names of this test's own, so that nothing collides with a real gateway or the other end-to-end tests.
SVC_TABLE=crgw_svc
gw_args=(--pool 10.203.0.0/24 --upstream-dns 192.0.2.53 --workers 1 --set "nftables.table=$SVC_TABLE"
	--set interfaces.prefix=cgs --set nftables.nflog_group=4246 --set transparent.http_port=15380
	--set transparent.tcp_port=15743)

T=$(mktemp -d /tmp/crgw-service.XXXXXX)
# The sandboxes' data, cgroups and cache of these gateways stay the test's own, off the machine's defaults.
gw_args+=(--set "data_dir=$T/data" --set limits.cgroup=crgw_svc --set "cache.dir=$T/cache")
GW_PID=
LISTENER_PID=
cleanup() {
	[ -n "$GW_PID" ] && kill -KILL "$GW_PID" 2>/dev/null
	[ -n "$LISTENER_PID" ] && kill "$LISTENER_PID" 2>/dev/null
	nft delete table inet "$SVC_TABLE" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

# A datagram listener standing in for systemd: one line per notification, and on READY=1 whether the
# control socket accepted a connection at that moment.
cat >"$T/listener.py" <<'EOF'
import socket, sys
addr, out, control = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\0' + addr[1:] if addr.startswith('@') else addr)
s.settimeout(60)
open(out + '.bound', 'w').close()
with open(out, 'a', buffering=1) as f:
    while True:
        try:
            lines = s.recv(4096).decode().split('\n')
        except socket.timeout:
            break
        f.write(' '.join(lines) + '\n')
        if 'READY=1' in lines:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                c.connect(control)
                f.write('control: listening\n')
            except OSError as e:
                f.write('control: %s\n' % e)
            c.close()
        if 'STOPPING=1' in lines:
            break
EOF

listen() { # listen NOTIFY_SOCKET OUT CONTROL: starts the listener and waits until it is bound
	rm -f "$2" "$2.bound"
	python3 "$T/listener.py" "$1" "$2" "$3" &
	LISTENER_PID=$!
	for _ in $(seq 50); do
		[ -e "$2.bound" ] && return 0
		sleep 0.1
	done
	return 1
}

wait_for() { # wait_for SECONDS COMMAND...: polls every 0.1 s
	local i
	for i in $(seq $(($1 * 10))); do
		"${@:2}" && return 0
		sleep 0.1
	done
	return 1
}

start() { # start LOG [crgw args...]: crgw in the background under umask 077; GW_PID
	local log=$1
	shift
	(
		umask 077
		exec "$CRGW" "$@" 2>>"$log"
	) &
	GW_PID=$!
}

stop() { # stop: SIGTERM by PID; returns crgw's exit status
	local rc
	kill -TERM "$GW_PID"
	for _ in $(seq 200); do
		alive "$GW_PID" || break
		sleep 0.1
	done
	if alive "$GW_PID"; then
		diag "crgw did not stop on SIGTERM"
		kill -KILL "$GW_PID"
	fi
	wait "$GW_PID"
	rc=$?
	GW_PID=
	return $rc
}

mode_owner() { stat -c '%a %U' "$1" 2>/dev/null; }

# ---- a fresh machine: nothing of the run directory, state directory or audit log's directory exists
run=$T/run/crgw
logdir=$T/var/log/deep/crgw
ctl=$run/control.sock
listen "$T/notify.sock" "$T/notify.out" "$ctl"
ok $? "a NOTIFY_SOCKET listener (path) is bound"
NOTIFY_SOCKET=$T/notify.sock start "$T/crgw.log" "${gw_args[@]}" --control "$ctl" --set "state_dir=$run/state" \
	--audit-log "$logdir/audit.log"
wait_for 30 grep -q 'READY=1' "$T/notify.out"
ok $? "crgw sends READY=1 to the path socket"
wait_for 5 grep -q '^control:' "$T/notify.out"
grep -qx 'control: listening' "$T/notify.out"
ok $? "the control socket already listened when READY=1 arrived ($(grep '^control:' "$T/notify.out"))"
[ "$(mode_owner "$T/run")" = "755 root" ] && [ "$(mode_owner "$run")" = "755 root" ]
ok $? "the run directory and its parent are created 0755, root's, under umask 077 ($(mode_owner "$run"))"
[ "$(mode_owner "$run/state")" = "700 root" ]
ok $? "the state directory is created 0700 ($(mode_owner "$run/state"))"
[ "$(mode_owner "$T/var/log/deep")" = "755 root" ] && [ "$(mode_owner "$logdir")" = "755 root" ]
ok $? "the audit log's directories are created 0755, root's ($(mode_owner "$logdir"))"
[ -S "$ctl" ] && CRGW_CONTROL=$ctl "$CTL" stats >/dev/null 2>&1
ok $? "crgw-ctl reaches the gateway on the created socket"
audit_has "$logdir/audit.log" 'select(.event == "gateway_started")'
ok $? "the audit log is written in the created directory"
# The log is opened 0640 through the umask (077 here), unlike the directories, whose mode is exact.
[ "$(mode_owner "$logdir/audit.log")" = "600 root" ]
ok $? "the audit log itself is 0640 less the umask ($(mode_owner "$logdir/audit.log"))"
nft list table inet "$SVC_TABLE" >/dev/null 2>&1
ok $? "the gateway's table exists"

# What ExecReload does: SIGHUP reopens the audit log, so a rotated-away file is replaced by a new one.
mv "$logdir/audit.log" "$logdir/audit.log.old"
kill -HUP "$GW_PID"
wait_for 10 test -f "$logdir/audit.log"
ok $? "SIGHUP reopens the audit log at its path"
kill -0 "$GW_PID" 2>/dev/null
ok $? "crgw keeps running after SIGHUP"

stop
ok $? "SIGTERM stops crgw with status 0"
wait_for 5 grep -q 'STOPPING=1' "$T/notify.out"
ok $? "crgw sends STOPPING=1 on shutdown"
wait "$LISTENER_PID" 2>/dev/null
LISTENER_PID=
! nft list table inet "$SVC_TABLE" >/dev/null 2>&1
ok $? "the table is gone after shutdown"
grep -q 'level=error' "$T/crgw.log" && diag "$(grep 'level=error' "$T/crgw.log")"

# ---- a second start finds everything in place; an abstract NOTIFY_SOCKET
abstract="@crgw-service-test-$$"
listen "$abstract" "$T/notify2.out" "$ctl"
ok $? "a NOTIFY_SOCKET listener (abstract) is bound"
NOTIFY_SOCKET=$abstract start "$T/crgw2.log" "${gw_args[@]}" --control "$ctl" --set "state_dir=$run/state" \
	--audit-log "$logdir/audit.log"
wait_for 30 grep -q 'READY=1' "$T/notify2.out"
ok $? "crgw sends READY=1 to the abstract socket, with its directories already there"
stop
ok $? "and stops with status 0"
wait_for 5 grep -q 'STOPPING=1' "$T/notify2.out"
ok $? "STOPPING=1 reaches the abstract socket"
wait "$LISTENER_PID" 2>/dev/null
LISTENER_PID=

# ---- what cannot be created: a clear error, exit 1, no READY=1, nothing left behind
touch "$T/file"
listen "$T/notify3.sock" "$T/notify3.out" "$T/file/run/control.sock"
ok $? "a listener for the failing start is bound"
NOTIFY_SOCKET=$T/notify3.sock start "$T/crgw3.log" "${gw_args[@]}" --control "$T/file/run/control.sock" \
	--set "state_dir=$run/state" --audit-log "$logdir/audit.log"
wait "$GW_PID"
rc=$?
GW_PID=
[ "$rc" = 1 ]
ok $? "a file in the control socket's path: crgw exits 1 (got $rc)"
grep -q "msg=\"cannot create a directory\" for=\"$T/file/run/control.sock\" error=\"$T/file: Not a directory\"" \
	"$T/crgw3.log"
ok $? "the error names the path and the cause: $(grep -o 'msg="cannot create.*' "$T/crgw3.log")"
sleep 0.5
! grep -q 'READY=1' "$T/notify3.out" 2>/dev/null
ok $? "no READY=1 is sent"
! nft list table inet "$SVC_TABLE" >/dev/null 2>&1
ok $? "no table is made"
kill "$LISTENER_PID" 2>/dev/null
wait "$LISTENER_PID" 2>/dev/null
LISTENER_PID=

# A link in a directory any user can write could send root's mkdir anywhere: it is not followed.
mkdir -m 0777 "$T/shared" "$T/elsewhere"
ln -s "$T/elsewhere" "$T/shared/logs"
start "$T/crgw4.log" "${gw_args[@]}" --control "$ctl" --set "state_dir=$run/state" \
	--audit-log "$T/shared/logs/crgw/audit.log"
wait "$GW_PID"
rc=$?
GW_PID=
[ "$rc" = 1 ] && [ ! -e "$T/elsewhere/crgw" ]
ok $? "an audit log beneath a planted link: exit 1 (got $rc), nothing created through the link"
grep -q "error=\"$T/shared/logs: a symbolic link .*not followed\"" "$T/crgw4.log"
ok $? "the error says why: $(grep -o 'error=.*' "$T/crgw4.log")"

tap_done
