#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Bulk transfers end to end: 1 GiB from the test network's web server reaches a sandbox intact (sha256 and
# byte count) through each way crgw relays it — a CONNECT tunnel, the transparent TLS relay, TLS inside a
# CONNECT tunnel, transparent HTTP, and absolute-URI forwarding on the proxy port — and 1 GiB goes up
# through a tunnel to the upstream's /echo. Each transfer's connection_end event must count every byte. TAP
# output, with each path's time and speed as diagnostics. Needs root; 15-30 s, also under ASan+UBSan.
# usage: bulk.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
GW_TABLE=crgw_bulk
GW_PREFIX=cgb

SIZE=$((1 << 30))
# The bound on each transfer. A gcc build moves 1 GiB in a few seconds, a sanitizer build in well under a
# minute; the bound only keeps a stalled transfer from holding the test until meson's timeout.
MAX_TIME=${BULK_MAX_TIME:-120}

t0=$EPOCHREALTIME
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# /var/tmp, not /tmp: the 1 GiB file belongs on disk, and /tmp may be a tmpfs taking it out of RAM.
T=$(mktemp -d /var/tmp/crgw-bulk.XXXXXX)
testnet_on_exit rm -rf "$T"
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
AUDIT=$T/audit.log
cat >"$T/cleanroom.yaml" <<'YAML'
version: 1
sandbox:
  network:
    default: deny
    allow:
      - host: allowed.test
        ports: [80, 443]
YAML

# 1 GiB of AES-CTR keystream: pseudo-random (nothing on the way can compress it), the same on every run,
# and fast to make (about 3 s, most of it writing the page cache). head reads to the end of its count and
# openssl to the end of its input: neither pipeline stage exits early.
big=$T/net/www/$TN_WEB1/big
key=6372677762756c6b7465737430303030 # "crgwbulktest0000"
iv=00000000000000000000000000000000
t=$EPOCHREALTIME
head -c "$SIZE" /dev/zero | openssl enc -aes-128-ctr -nosalt -K "$key" -iv "$iv" -out "$big"
ok $? "1 GiB of test data written ($(stat -f -c %T "$T"), $(elapsed "$t") s)"
# openssl's sha256 is about three times as fast as coreutils' here (SHA extensions).
want=$(openssl dgst -sha256 -r "$big")
want=${want%% *}
[ "$(stat -c %s "$big")" = "$SIZE" ] && [[ $want =~ ^[0-9a-f]{64}$ ]]
ok $? "... $SIZE bytes, sha256 ${want:0:16}…"

gw_start "$T" || { echo "Bail out! crgw did not start"; exit 1; }
run() { "$CTL" run --rm --policy "$T/cleanroom.yaml" -- "$@"; }
# -i: the uploads read the file from standard input, which a sandbox gets only when asked for.
run_stdin() { "$CTL" run --rm -i --policy "$T/cleanroom.yaml" -- "$@"; }

# Inside a sandbox: write the test CA to $SB_CA, run curl with the bound and the given arguments (@GW@
# stands for the sandbox's gateway address) and hash what arrives. Prints the digest line and, on stderr,
# "sandbox ID" and "stats HTTP-CODE BYTES BYTES-PER-SECOND". Exits with curl's status.
# shellcheck disable=SC2016 # for the inner shell
fetch_script='set -o pipefail
echo "sandbox $CRGW_SANDBOX_ID" >&2
'"$(sb_ca_cmd)"' || exit 99
max=$1
shift
curl -sS --max-time "$max" -w "%{stderr}stats %{http_code} %{size_download} %{speed_download}\n" \
	"${@//@GW@/$CRGW_GATEWAY}" | openssl dgst -sha256 -r'

# fetch NAME CURL-ARGS...: one download of the big file in a fresh sandbox, one test point.
fetch() {
	local name=$1 out rc stats hash t code bytes speed
	shift
	t=$EPOCHREALTIME
	out=$(run bash -c "$fetch_script" _ "$MAX_TIME" "$@" 2>&1)
	rc=$?
	stats=$(grep '^stats ' <<<"$out")
	sandbox_of "$out"
	hash=$(grep -Eo '^[0-9a-f]{64}' <<<"$out")
	read -r _ code bytes speed <<<"$stats"
	[ "$rc" = 0 ] && [ "${code:-}" = 200 ] && [ "${bytes:-}" = "$SIZE" ] && [ "$hash" = "$want" ]
	ok $? "$name: 1 GiB arrives intact (sha256 and byte count)"
	diag "$name: $(elapsed "$t") s, $(awk -v s="${speed:-0}" 'BEGIN { printf "%.0f", s / 1048576 }') MiB/s" \
		"(curl exit $rc, HTTP ${code:-none}, ${bytes:-0} bytes, sha256 ${hash:0:16}, ${SB_ID:-no sandbox})"
	[ "$rc" = 0 ] || diag "$name: $(grep -Ev '^([0-9a-f]{64} |stats |sandbox )' <<<"$out" | tail -n 3)"
}

# sandbox_of OUTPUT: sets SB_ID from the "sandbox ID" line a transfer printed (every run is a new sandbox,
# so its id picks out that run's audit events).
sandbox_of() {
	SB_ID=$(sed -n 's/^sandbox \(sbx-[0-9a-z]*\)$/\1/p' <<<"$1")
}

# counted DESCRIPTION JQ-CONDITION: the last run's connection_end matches the condition (a byte count).
counted() {
	audit_has "$AUDIT" "select(.event==\"connection_end\" and .sandbox_id==\"${SB_ID:-none}\" and $2)"
	ok $? "... $1"
}

fetch "CONNECT tunnel (curl -p, HTTP_PROXY)" -p http://allowed.test/big
counted "connection_end of the tunnel to :80 counts it" \
	".service==\"connect\" and .dst_port==80 and .bytes_down > $SIZE"

fetch "transparent TLS (SNI decided)" --noproxy '*' --cacert "$SB_CA" https://allowed.test/big
counted "connection_end of the TLS relay counts it" ".service==\"tls\" and .dst_port==443 and .bytes_down > $SIZE"

fetch "TLS inside a CONNECT tunnel (HTTPS_PROXY)" --cacert "$SB_CA" https://allowed.test/big
counted "connection_end of the tunnel to :443 counts it" \
	".service==\"connect\" and .dst_port==443 and .bytes_down > $SIZE"

fetch "transparent HTTP (port 80 redirected)" --noproxy '*' http://allowed.test/big
counted "connection_end of the forwarded request counts it" \
	".service==\"http\" and .dst_port==80 and .bytes_down > $SIZE"

fetch "absolute-URI forwarding on the proxy port" --proxy 'http://@GW@:3128' http://allowed.test/big
counted "connection_end of the forwarded request counts it" \
	".service==\"http\" and .dst_port==80 and .bytes_down > $SIZE"

fetch "a chunked response through transparent HTTP (parsed, not spliced)" --noproxy '*' \
	http://allowed.test/chunked/big
counted "connection_end of the chunked response counts it" \
	".service==\"http\" and .dst_port==80 and .bytes_down > $SIZE"

# Upload: the file on the sandbox's stdin (the sandbox cannot see $T), sent chunked through a CONNECT
# tunnel; the echo endpoint hashes what reaches it.
t=$EPOCHREALTIME
# shellcheck disable=SC2016 # for the inner shell
out=$(run_stdin bash -c 'echo "sandbox $CRGW_SANDBOX_ID"; exec curl -sS --max-time "$1" -p -X POST -T - \
	-w "\nstats %{http_code} %{size_upload} %{speed_upload}\n" http://allowed.test/echo' _ "$MAX_TIME" \
	<"$big" 2>&1)
rc=$?
sandbox_of "$out"
read -r _ code bytes speed <<<"$(grep '^stats ' <<<"$out")"
echoed=$(grep '^{' <<<"$out" | jq -r '"\(.body_length) \(.body_sha256)"' 2>/dev/null)
[ "$rc" = 0 ] && [ "${code:-}" = 200 ] && [ "$echoed" = "$SIZE $want" ]
ok $? "upload through a CONNECT tunnel: 1 GiB reaches /echo intact (sha256 and byte count)"
diag "upload: $(elapsed "$t") s, $(awk -v s="${speed:-0}" 'BEGIN { printf "%.0f", s / 1048576 }') MiB/s" \
	"(curl exit $rc, HTTP ${code:-none}, ${bytes:-0} bytes sent with the chunk framing;" \
	"echo saw: ${echoed:-nothing})"
counted "connection_end of the upload tunnel counts it" \
	".service==\"connect\" and .dst_port==80 and .bytes_up > $SIZE"

# The same upload through transparent HTTP forwarding: a chunked request body is the one body the gateway
# parses (to find its end) and copies rather than splices.
t=$EPOCHREALTIME
# shellcheck disable=SC2016 # for the inner shell
out=$(run_stdin bash -c 'echo "sandbox $CRGW_SANDBOX_ID"; exec curl -sS --max-time "$1" --noproxy "*" -X POST -T - \
	-w "\nstats %{http_code} %{size_upload} %{speed_upload}\n" http://allowed.test/echo' _ "$MAX_TIME" \
	<"$big" 2>&1)
rc=$?
sandbox_of "$out"
read -r _ code bytes speed <<<"$(grep '^stats ' <<<"$out")"
echoed=$(grep '^{' <<<"$out" | jq -r '"\(.body_length) \(.body_sha256)"' 2>/dev/null)
[ "$rc" = 0 ] && [ "${code:-}" = 200 ] && [ "$echoed" = "$SIZE $want" ]
ok $? "chunked upload through transparent HTTP: 1 GiB reaches /echo intact (sha256 and byte count)"
diag "chunked upload via HTTP forwarding: $(elapsed "$t") s, $(awk -v s="${speed:-0}" 'BEGIN { printf "%.0f", s / 1048576 }') MiB/s" \
	"(curl exit $rc, HTTP ${code:-none}; echo saw: ${echoed:-nothing})"
counted "connection_end of the forwarded upload counts it" \
	".service==\"http\" and .dst_port==80 and .bytes_up > $SIZE"

"$CTL" stats --json >/dev/null
gw_stop
ok $? "crgw exits 0 on SIGTERM (sanitizer builds: LeakSanitizer found nothing)"
if [ "$TAP_FAILED" -gt 0 ]; then
	diag "crgw log:" "$(tail -20 "$T/crgw.log")"
fi
diag "total $(elapsed "$t0") s"
tap_done
