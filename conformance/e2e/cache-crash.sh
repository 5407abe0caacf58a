#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The content cache under failure, with real pip-style downloads from a sandbox through registry mediation:
# crgw killed with SIGKILL in the middle of 20 concurrent downloads leaves no partial object (the next start
# clears the temporary files and serves only verified objects, and the downloads then complete with the
# right bytes); and a disk that fills up while caching: the client still gets its verified bytes, the
# cache keeps only whole, verified objects.
# TAP output. Needs root.
# usage: cache-crash.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

T=$(mktemp -d /tmp/crgw-e2e-crash.XXXXXX)
chmod 0755 "$T"
testnet_on_exit '[ -n "${CRGW_E2E_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"'
testnet_on_exit 'mountpoint -q "$T/small" && umount "$T/small"'
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
testnet_registries_up || { echo "Bail out! the test registries did not come up"; exit 1; }
AUDIT=$T/audit.log
N=20
SIZE_MB=16

# ---- a project of 20 large wheels on pypi.test, with its page in both formats ------------------------------
www=$TN_STATE/pypi/www
mkdir -p "$www/simple/crgw-big"
html='<!DOCTYPE html><html><body>'
json='{"meta":{"api-version":"1.0"},"name":"crgw-big","files":['
for i in $(seq 0 $((N - 1))); do
	f=crgw_big-1.0.$i-py3-none-any.whl
	head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom >"$www/files/$f"
	d=$(sha256sum "$www/files/$f" | cut -d' ' -f1)
	echo "$d" >"$T/$f.sha256"
	html+="<a href=\"../../files/$f#sha256=$d\">$f</a>"
	json+="$([ "$i" -gt 0 ] && echo ,){\"filename\":\"$f\",\"url\":\"../../files/$f\",\"hashes\":{\"sha256\":\"$d\"}}"
done
echo "$html</body></html>" >"$www/simple/crgw-big/index.html"
echo "$json]}" >"$www/simple/crgw-big/index.json"

P=$T/project
mkdir -p "$P"
cat >"$P/cleanroom.yaml" <<'EOF'
version: 1
sandbox:
  network:
    default: deny
registries:
  pip: { enable: true, allowed_hosts: [pypi.test], fallback: allow }
EOF
cat >"$T/crgw.yaml" <<EOF
mediation:
  ca_file: $TN_CA
  idle_timeout: 30
EOF
CACHE=$T/cache
gw_start "$T" --config "$T/crgw.yaml" --set "cache.dir=$CACHE" || { echo "Bail out! crgw did not start"; exit 1; }

run() { # run SCRIPT: in a sandbox on the project's policy, the project as its workspace
	"$CTL" run --rm --policy "$P/cleanroom.yaml" --workspace "$P" --workspace-mode rw -- bash -c "$1"
}
# Downloads every wheel at once, each at RATE (curl's --limit-rate, "" for none), into dl/.
fetch_all='rm -rf dl; mkdir dl; for i in $(seq 0 '$((N - 1))'); do
	f=crgw_big-1.0.$i-py3-none-any.whl
	curl -s -o dl/$f ${RATE:+--limit-rate $RATE} "$PIP_INDEX_URL"crgw-big/$f &
done; wait'
verify_all() { # verify_all: how many of the downloaded wheels have their right sha256
	local good=0 f
	for i in $(seq 0 $((N - 1))); do
		f=crgw_big-1.0.$i-py3-none-any.whl
		[ "$(sha256sum "$P/dl/$f" 2>/dev/null | cut -d' ' -f1)" = "$(cat "$T/$f.sha256")" ] && good=$((good + 1))
	done
	echo "$good"
}

# ---- SIGKILL in the middle of 20 concurrent downloads ---------------------------------------------------
# The gateway fills the cache at the upstream's pace, not the client's: on a quiet machine the first fills
# could end before the last begin. The test network's link is held to 80 Mbit/s meanwhile (tbf, on its
# own side of the veth), so that all 20 are under way together when the gateway is killed.
ip netns exec "$TN_NS" tc qdisc add dev eth0 root tbf rate 80mbit burst 256kb latency 400ms
ok $? "the test network's link held to 80 Mbit/s"
run "RATE=256K; $fetch_all" >/dev/null 2>&1 &
runner=$!
for _ in $(seq 100); do
	[ "$(find "$CACHE/tmp" -type f 2>/dev/null | wc -l)" -ge "$N" ] && break
	sleep 0.1
done
sleep 1
partial=$(find "$CACHE/tmp" -type f 2>/dev/null | wc -l)
partial_bytes=$(du -sb "$CACHE/tmp" 2>/dev/null | cut -f1)
kill -KILL "$GW_PID"
wait "$GW_PID" 2>/dev/null
GW_PID=
ip netns exec "$TN_NS" tc qdisc del dev eth0 root 2>/dev/null
[ "$partial" -ge $((N / 2)) ]
ok $? "SIGKILL with $partial fills under way ($partial_bytes bytes in the cache's tmp/)"
wait "$runner" 2>/dev/null
# The downloads that had ended (their clients' socket buffers hold a good part of each file) were
# verified and committed before the kill; the others must leave nothing but tmp/ files.
objects=$(find "$CACHE/objects" -type f 2>/dev/null | wc -l)
check "fewer objects than downloads were committed before the kill ($objects of $N)" -- test "$objects" -lt "$N"
gw_start "$T" --config "$T/crgw.yaml" --set "cache.dir=$CACHE" || { echo "Bail out! crgw did not restart"; exit 1; }
left=$(find "$CACHE/tmp" -type f 2>/dev/null | wc -l)
check "the next start removed every partial file ($left left in tmp/)" -- test "$left" -eq 0
out=$("$CTL" cache verify --json 2>&1)
rc=$?
check "every object the restarted cache holds is whole and verified ($(echo "$out" | jq -c '{checked,ok,corrupt}' 2>/dev/null))" -- \
	test $rc -eq 0 -a "$(echo "$out" | jq .checked 2>/dev/null)" = "$objects" -a "$(echo "$out" | jq .corrupt 2>/dev/null)" = 0
for f in "$CACHE"/objects/*/*/*; do
	[ -f "$f" ] || continue
	sum=$(sha256sum "$f" | cut -d' ' -f1)
	grep -qx "$sum" "$T"/*.sha256 || { bad_object=$f; break; }
done
check "each is one of the wheels, byte for byte" -- test -z "${bad_object:-}"
out=$(run "RATE=; $fetch_all" 2>&1)
good=$(verify_all)
check "the 20 downloads again, each with its right sha256 ($good of $N)" -- test "$good" -eq "$N"
# Verified fills are committed (fsync, rename) on threads of their own, just after their clients got the end.
for _ in $(seq 100); do
	[ "$("$CTL" cache stats --json 2>/dev/null | jq .objects)" = "$N" ] && break
	sleep 0.1
done
out=$("$CTL" cache verify --json 2>&1)
rc=$?
check "cache verify: every object whole ($(echo "$out" | jq -c '{checked,ok,corrupt}' 2>/dev/null))" -- \
	test $rc -eq 0 -a "$(echo "$out" | jq .ok 2>/dev/null)" = "$N"
check "the downloads' decisions are audited with their sha256" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .registry=="pip" and .package=="crgw-big" and .version=="1.0.19" and (.integrity|startswith("sha256:")))'

# ---- disk full while caching ------------------------------------------------------------------------------
gw_stop >/dev/null 2>&1
mkdir -p "$T/small"
mount -t tmpfs -o size=$((SIZE_MB * 3 / 2))m crgw-e2e-small "$T/small" || { echo "Bail out! cannot mount a tmpfs"; exit 1; }
gw_start "$T" --config "$T/crgw.yaml" --set "cache.dir=$T/small/cache" --set cache.max_bytes=1GiB ||
	{ echo "Bail out! crgw did not start on the small disk"; exit 1; }
out=$(run 'rm -rf dl; mkdir dl; for i in 0 1 2; do f=crgw_big-1.0.$i-py3-none-any.whl; curl -s -o dl/$f -w "%{http_code} " "$PIP_INDEX_URL"crgw-big/$f; done' 2>&1)
good=0
for i in 0 1 2; do
	f=crgw_big-1.0.$i-py3-none-any.whl
	[ "$(sha256sum "$P/dl/$f" | cut -d' ' -f1)" = "$(cat "$T/$f.sha256")" ] && good=$((good + 1))
done
check "with the disk full, every client still gets its verified bytes ($out; $good of 3 right)" -- test "$good" -eq 3
sleep 1 # the commits of the fills that did not fail
out=$("$CTL" cache verify --json 2>&1)
rc=$?
objects=$(echo "$out" | jq .checked 2>/dev/null)
check "the cache keeps only whole, verified objects ($objects kept of 3; $(echo "$out" | jq -c '{ok,corrupt}' 2>/dev/null))" -- \
	test $rc -eq 0 -a "${objects:-9}" -lt 3 -a "$(echo "$out" | jq .corrupt 2>/dev/null)" = 0
check "nothing partial is left in the cache's tmp/" -- test "$(find "$T/small/cache/tmp" -type f | wc -l)" -eq 0
grep -q 'not cached' "$T/crgw.log"
ok $? "the failed fill is logged ($(grep -m1 'not cached' "$T/crgw.log" | cut -c1-150))"
gw_stop
ok $? "crgw stopped cleanly"
umount "$T/small"

tap_done
