#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The content cache as an operator sees it: crgw opens a cache directory filled beforehand (by cache_put,
# through libcrgw-cache), and crgw-ctl cache ls/stats report its objects; a byte flipped on disk is found
# by cache verify, which removes the object and exits 1; gc --target 0 empties the cache; /metrics has the
# crgw_cache_* series. A gateway with cache.enabled: false answers cache_disabled; a cache directory that
# cannot be created or opened stops the start with exit 1 and a message naming it. Needs root, no test
# network (the upstream DNS server is never asked). TAP output.
# usage: cache.sh CRGW CRGW_CTL CACHE_PUT
set -uo pipefail
CRGW=$1
CTL=$2
PUT=$3
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
	echo "1..0 # SKIP needs root (nftables, /run)"
	exit 0
fi

# Names of this test's own, so that nothing collides with a real gateway or the other end-to-end tests.
CC_TABLE=crgw_cch
T=$(mktemp -d /tmp/crgw-cache.XXXXXX)
gw_args=(--pool 10.204.0.0/24 --upstream-dns 192.0.2.53 --workers 1 --set "nftables.table=$CC_TABLE"
	--set interfaces.prefix=cgc --set nftables.nflog_group=4247 --set transparent.http_port=15480
	--set transparent.tcp_port=15843 --set "data_dir=$T/data" --set limits.cgroup=crgw_cch
	--set limits.optional=true --set "state_dir=$T/state" --audit-log "$T/audit.log")
GW_PID=
cleanup() {
	[ -n "$GW_PID" ] && kill -KILL "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
	nft delete table inet "$CC_TABLE" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

export CRGW_CONTROL=$T/ctl.sock

start() { # start LOG [crgw args...]: crgw in the background; waits until the control API answers
	local log=$1
	shift
	"$CRGW" "${gw_args[@]}" --control "$CRGW_CONTROL" "$@" 2>>"$log" &
	GW_PID=$!
	for _ in $(seq 150); do
		"$CTL" stats >/dev/null 2>&1 && return 0
		kill -0 "$GW_PID" 2>/dev/null || break
		sleep 0.1
	done
	diag "crgw did not become ready:" "$(tail -5 "$log")"
	return 1
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

# ---- a cache filled beforehand: two sha256 objects and one sha512
C=$T/cache
head -c 1000 /dev/urandom >"$T/a"
head -c 5000 /dev/urandom >"$T/b"
head -c 3000 /dev/urandom >"$T/c"
da=$("$PUT" "$C" "$T/a") && db=$("$PUT" "$C" "$T/b") && dc=$("$PUT" "$C" "$T/c" sha512)
ok $? "cache_put fills three objects ($da, ${db:0:20}…, ${dc:0:20}…)"
[ "$da" = "sha256:$(sha256sum "$T/a" | cut -d' ' -f1)" ] && [ "$dc" = "sha512:$(sha512sum "$T/c" | cut -d' ' -f1)" ]
ok $? "... under the files' real digests"

start "$T/crgw.log" --set "cache.dir=$C" --set cache.max_bytes=64MiB || { echo "Bail out! crgw did not start"; exit 1; }
ok 0 "crgw starts with the filled cache (pid $GW_PID)"
grep -q 'msg="content cache open" dir="'"$C"'" objects=3 bytes=9000 max_bytes=67108864' "$T/crgw.log"
ok $? "crgw logs the cache it opened: $(grep -o 'msg="content cache open".*' "$T/crgw.log")"
[ -f "$C/lock" ]
ok $? "the gateway holds the cache directory's lock file"

# ---- ls
out=$("$CTL" cache ls --json)
ok $? "cache ls --json exits 0"
[ "$(jq -r 'map(.digest) | sort | join(" ")' <<<"$out")" = "$(printf '%s\n' "$da" "$db" "$dc" | sort | paste -sd' ')" ]
ok $? "ls lists the three digests"
[ "$(jq -r --arg a "$da" --arg b "$db" --arg c "$dc" \
	'[(.[] | select(.digest == $a) | .size), (.[] | select(.digest == $b) | .size), (.[] | select(.digest == $c) | .size)] | join(",")' \
	<<<"$out")" = "1000,5000,3000" ]
ok $? "... with their sizes"
jq -e 'all(.[]; .verified == false and (.last_access | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$")))' <<<"$out" >/dev/null
ok $? "... none verified yet by this process, each with an RFC 3339 last access"
out=$("$CTL" cache ls)
[ "$(grep -c '^sha' <<<"$out")" = 3 ] && head -1 <<<"$out" | grep -q '^DIGEST .*SIZE .*LAST ACCESS .*VERIFIED' &&
	grep -q "^$da .* 1000 B .* no$" <<<"$out"
ok $? "ls prints a table: header and one row per object"
out=$("$CTL" cache ls --json --limit 1 2>"$T/err")
[ "$(jq length <<<"$out")" = 1 ] && grep -q '1 of 3 objects shown' "$T/err"
ok $? "ls --limit 1 lists one and says so on stderr ($(cat "$T/err"))"

# ---- stats
out=$("$CTL" cache stats --json)
ok $? "cache stats --json exits 0"
jq -e --arg d "$C" '.dir == $d and .objects == 3 and .bytes == 9000 and .max_bytes == 67108864 and .hits == 0 and
	.misses == 0 and .hit_ratio == null and .bytes_served == 0 and .bytes_stored == 0 and .evictions == 0 and
	.corrupt == 0 and .fills_failed == 0 and .fills_active == 0 and .offline == false and .verify_always == false and
	.latency.hits.count == 0' <<<"$out" >/dev/null
ok $? "stats: 3 objects, 9000 bytes, bound 64 MiB, no traffic yet"
out=$("$CTL" cache stats)
grep -q '^objects  *3$' <<<"$out" && grep -q '^bytes  *9000 (8.8 KiB)$' <<<"$out" && grep -q '^hit_ratio  *-$' <<<"$out"
ok $? "stats prints one figure per line"

# ---- metrics
prom=$("$CTL" stats --prometheus)
missing=
for s in crgw_cache_objects crgw_cache_bytes crgw_cache_max_bytes crgw_cache_hits_total crgw_cache_misses_total \
	crgw_cache_bytes_served_total crgw_cache_bytes_stored_total crgw_cache_evictions_total crgw_cache_corrupt_total \
	crgw_cache_fills_failed_total; do
	grep -q "^# TYPE $s " <<<"$prom" && grep -q "^$s [0-9]" <<<"$prom" || missing+=" $s"
done
[ -z "$missing" ]
ok $? "/metrics has every crgw_cache_* series with HELP and TYPE${missing:+ (missing:$missing)}"
grep -qx 'crgw_cache_objects 3' <<<"$prom" && grep -qx 'crgw_cache_bytes 9000' <<<"$prom" &&
	grep -qx 'crgw_cache_max_bytes 67108864' <<<"$prom"
ok $? "... with the cache's figures"
grep -qx '# TYPE crgw_cache_hit_latency_seconds histogram' <<<"$prom" &&
	grep -qx 'crgw_cache_hit_latency_seconds_bucket{le="0.0005"} 0' <<<"$prom" &&
	grep -qx 'crgw_cache_hit_latency_seconds_bucket{le="10"} 0' <<<"$prom" &&
	grep -qx 'crgw_cache_hit_latency_seconds_bucket{le="+Inf"} 0' <<<"$prom" &&
	grep -qx 'crgw_cache_hit_latency_seconds_sum 0.000000' <<<"$prom" &&
	grep -qx 'crgw_cache_hit_latency_seconds_count 0' <<<"$prom" &&
	[ "$(grep -c '^crgw_cache_hit_latency_seconds_bucket' <<<"$prom")" = 15 ]
ok $? "the hit latency histogram: 15 buckets, sum and count"

# ---- a byte flipped on disk: verify finds it, removes it, exits 1
hex=${db#sha256:}
obj=$C/objects/sha256/${hex:0:2}/$hex
python3 -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(2500); b = f.read(1); f.seek(2500); f.write(bytes([b[0] ^ 1])); f.close()' "$obj"
ok $? "a bit of $db flipped on disk"
out=$("$CTL" cache verify --json)
rc=$?
[ "$rc" = 1 ]
ok $? "cache verify exits 1 when an object was corrupt (got $rc)"
jq -e '.checked == 3 and .ok == 2 and .corrupt == 1 and .errors == 0' <<<"$out" >/dev/null
ok $? "verify reports checked 3, ok 2, corrupt 1: $(jq -c . <<<"$out")"
[ ! -e "$obj" ] && ! "$CTL" cache ls --json | jq -e --arg b "$db" 'any(.[]; .digest == $b)' >/dev/null
ok $? "the corrupt object is gone from disk and from ls"
"$CTL" cache stats --json | jq -e '.objects == 2 and .bytes == 4000 and .corrupt == 1' >/dev/null
ok $? "stats count it: 2 objects, 4000 bytes, corrupt 1"
prom=$("$CTL" stats --prometheus)
grep -qx 'crgw_cache_corrupt_total 1' <<<"$prom"
ok $? "crgw_cache_corrupt_total 1"
out=$("$CTL" cache verify)
rc=$?
[ "$rc" = 0 ] && grep -q '^checked 2: 2 ok, 0 corrupt (removed), 0 unreadable' <<<"$out"
ok $? "a second verify is clean, exit $rc: $out"
"$CTL" cache ls --json | jq -e 'length == 2 and all(.[]; .verified == true)' >/dev/null
ok $? "the objects verify hashed are now trusted (verified: true)"

# ---- gc
out=$("$CTL" cache gc --target 1G --json)
ok $? "gc --target 1G exits 0"
jq -e '.evicted == 0 and .target_bytes == 1073741824' <<<"$out" >/dev/null
ok $? "... and evicts nothing: $(jq -c . <<<"$out")"
out=$("$CTL" cache gc --target 0 --json)
ok $? "gc --target 0 exits 0"
jq -e '.evicted == 2 and .bytes_before == 4000 and .bytes_after == 0 and .target_bytes == 0' <<<"$out" >/dev/null
ok $? "... and evicts both objects: $(jq -c . <<<"$out")"
[ "$("$CTL" cache ls --json | jq length)" = 0 ] && "$CTL" cache stats --json | jq -e '.objects == 0 and .bytes == 0 and .evictions == 2' >/dev/null
ok $? "the cache is empty: ls [], 0 objects, 2 evictions"
[ -z "$(find "$C/objects" -type f)" ]
ok $? "no object file is left on disk"
out=$("$CTL" cache gc)
grep -q '^evicted 0 objects: 0 B -> 0 B (target 67108864 bytes)$' <<<"$out"
ok $? "gc without --target evicts down to the bound: $out"
"$CTL" cache gc --target lots >/dev/null 2>"$T/err"
rc=$?
[ "$rc" = 2 ] && grep -q -- '--target wants a size' "$T/err"
ok $? "gc --target lots: exit 2 before the gateway is asked ($(cat "$T/err"))"
# The gateway checks the size itself too: a client other than crgw-ctl gets request_invalid.
out=$(curl -s -w ' %{http_code}' --unix-socket "$CRGW_CONTROL" -X POST -d '{"target":"lots"}' http://crgw/v1/cache/gc | tr -d '\n')
grep -q '"request_invalid".* 400$' <<<"$out"
ok $? "POST /v1/cache/gc with the target lots: 400 request_invalid ($out)"
# 2^64-1 parses as a size, but target_bytes in the answer is a JSON integer: above 2^63-1 it printed -1.
"$CTL" cache gc --target 18446744073709551615 >/dev/null 2>"$T/err"
rc=$?
[ "$rc" = 2 ] && grep -q -- '--target wants a size' "$T/err"
ok $? "gc --target 2^64-1: exit 2 before the gateway is asked ($(cat "$T/err"))"
out=$(curl -s -w ' %{http_code}' --unix-socket "$CRGW_CONTROL" -X POST -d '{"target":"18446744073709551615"}' http://crgw/v1/cache/gc | tr -d '\n')
grep -q '"request_invalid".* 400$' <<<"$out"
ok $? "POST /v1/cache/gc with the target 2^64-1: 400 request_invalid ($out)"
out=$("$CTL" cache gc --target 9223372036854775807 --json)
jq -e '.evicted == 0 and .target_bytes == 9223372036854775807' <<<"$out" >/dev/null
ok $? "gc --target 2^63-1 is the largest, and is answered as given: $(jq -c . <<<"$out")"
"$CTL" cache frobnicate >/dev/null 2>&1
[ $? = 2 ]
ok $? "an unknown cache subcommand exits 2"
# A user the socket is not for: the gateway is running, so "is crgw running?" would mislead.
setpriv --reuid=nobody --regid=nogroup --clear-groups "$CTL" cache stats >/dev/null 2>"$T/err"
rc=$?
[ "$rc" = 2 ] && grep -q 'Permission denied' "$T/err" && ! grep -q 'is crgw running' "$T/err"
ok $? "cache stats as nobody: exit 2, permission denied ($(cat "$T/err"))"

stop
ok $? "SIGTERM stops crgw with status 0"
grep -q '^crgw-cache-index 1$' "$C/index" && grep -qx 'end 0' "$C/index"
ok $? "the index is written at stop, empty"
grep -q 'level=error' "$T/crgw.log" && diag "$(grep 'level=error' "$T/crgw.log")"

# ---- cache.enabled: false
start "$T/crgw2.log" --set "cache.dir=$T/cache2" --set cache.enabled=false ||
	{ echo "Bail out! crgw did not start with the cache disabled"; exit 1; }
ok 0 "crgw starts with cache.enabled: false"
"$CTL" cache stats >/dev/null 2>"$T/err"
rc=$?
[ "$rc" = 2 ] && grep -q 'cache stats: cache_disabled: the content cache is disabled (crgw.yaml cache.enabled: false)' "$T/err"
ok $? "cache stats: exit 2 ($rc) and a clear error: $(cat "$T/err")"
"$CTL" cache verify >/dev/null 2>&1
rc=$?
[ "$rc" = 2 ]
ok $? "cache verify exits 2 too, not 1 ($rc)"
prom=$("$CTL" stats --prometheus) && ! grep -q '^crgw_cache_' <<<"$prom"
ok $? "/metrics has no crgw_cache_* series"
[ ! -e "$T/cache2" ]
ok $? "no cache directory is made"
stop
ok $? "and stops with status 0"

# ---- a cache directory that cannot be created, or opened: exit 1, a message naming it
touch "$T/file"
"$CRGW" "${gw_args[@]}" --control "$CRGW_CONTROL" --set "cache.dir=$T/file/cache" 2>"$T/crgw3.log"
rc=$?
[ "$rc" = 1 ]
ok $? "cache.dir beneath a file: crgw exits 1 (got $rc)"
grep -q "msg=\"cannot create a directory\" for=\"$T/file/cache\" error=\"$T/file: Not a directory\"" "$T/crgw3.log"
ok $? "... naming the path and the cause: $(grep -o 'msg=.*' "$T/crgw3.log" | head -1)"
"$CRGW" "${gw_args[@]}" --control "$CRGW_CONTROL" --set "cache.dir=$T/file" 2>"$T/crgw4.log"
rc=$?
[ "$rc" = 1 ]
ok $? "cache.dir is a file: crgw exits 1 (got $rc)"
grep -q "msg=\"cannot open the content cache\" dir=\"$T/file\" error=\"Not a directory\"" "$T/crgw4.log"
ok $? "... naming the directory and the cause: $(grep -o 'msg="cannot open the content cache.*' "$T/crgw4.log")"
! nft list table inet "$CC_TABLE" >/dev/null 2>&1
ok $? "a failed start leaves no table"

# ---- the cache directory is the gateway's own: others may not write to it, nor own it
mkdir -m 0777 "$T/open"
start "$T/crgw5.log" --set "cache.dir=$T/open" && [ "$(stat -c %a "$T/open")" = 700 ] &&
	grep -q 'msg="cache directory made 0700".*was=0777' "$T/crgw5.log"
ok $? "a cache directory others may write to is made 0700, and the log says so ($(stat -c %a "$T/open"))"
stop
mkdir -m 0700 "$T/theirs"
chown nobody "$T/theirs"
"$CRGW" "${gw_args[@]}" --control "$CRGW_CONTROL" --set "cache.dir=$T/theirs" 2>"$T/crgw6.log"
rc=$?
[ "$rc" = 1 ] && grep -q 'msg="the cache directory belongs to another user' "$T/crgw6.log"
ok $? "a cache directory another user owns is refused: exit 1, saying so (got $rc)"
! nft list table inet "$CC_TABLE" >/dev/null 2>&1
ok $? "... leaving no table"

tap_done
