#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Clone throughput through mediation against a direct clone from the same server, in one run. The test
# network's big repository (a few hundred MB) is cloned over TLS with its password. The direct clone runs
# from the host with the password in a credential file. The gateway clone runs inside a crgw-ctl run
# sandbox that holds no password, over plain HTTP to mediation, which clones over TLS with the
# operator's credential. Rounds alternate the two, and each clone writes to the same file system.
#
# crgw's resident memory is sampled every 100 ms during the gateway's clones. Its growth over the idle
# figure shows whether the pack is streamed or buffered.
#
# Prints one line per clone and a summary: the median MB/s of each, their ratio, and crgw's RSS growth.
# docs/performance.md records the figures. Needs root.
# usage: git-bench.sh CRGW CRGW_CTL [ROUNDS]
set -uo pipefail
CRGW=$1
CTL=$2
ROUNDS=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=../e2e/lib.sh
source "$here/../e2e/lib.sh"

T=$(mktemp -d /var/tmp/crgw-git-bench.XXXXXX)
chmod 0755 "$T"
testnet_on_exit rm -rf "$T"
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_on_exit '[ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null; true'
testnet_up "$T/net" || { echo "the test network did not come up" >&2; exit 1; }
echo "making (or reusing) the big repository..."
testnet_git_big_repo || { echo "the big repository could not be made" >&2; exit 1; }

cat >"$T/crgw.yaml" <<EOF
secrets:
  git_pw: { file: $TN_GIT_PASSWORD_FILE }
git:
  credentials:
    git.test: { secret: git_pw, scheme: basic, username: $TN_GIT_USER }
mediation:
  ca_file: $TN_CA
EOF
gw_start "$T" --config "$T/crgw.yaml" || { echo "crgw did not start" >&2; exit 1; }
mkdir -p "$T/policy" "$T/ws"
printf 'version: 1\nsandbox:\n  network:\n    default: deny\ngit:\n  hosts: [git.test]\n' >"$T/policy/cleanroom.yaml"
(umask 077 && printf 'https://%s:%s@git.test\n' "$TN_GIT_USER" "$(<"$TN_GIT_PASSWORD_FILE")" >"$T/credentials")

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$GW_PID/status"; }

direct() { # prints "seconds bytes"
	rm -rf "$T/ws/direct"
	local s e
	s=$(date +%s.%N)
	git -c http.sslCAInfo="$TN_CA" -c "http.curloptResolve=git.test:443:$TN_GIT" \
		-c credential.helper="store --file=$T/credentials" clone -q https://git.test/org/big.git "$T/ws/direct" || return 1
	e=$(date +%s.%N)
	echo "$s $e $(du -sb "$T/ws/direct/.git/objects/pack" | cut -f1)"
}

gateway() { # prints "seconds bytes", timed inside the sandbox
	rm -rf "$T/ws/gw"
	local out
	out=$("$CTL" run --rm --policy "$T/policy/cleanroom.yaml" --workspace "$T/ws" --workspace-mode rw -- \
		bash -c 's=$(date +%s.%N); git clone -q https://git.test/org/big.git gw || exit 1; e=$(date +%s.%N); echo "$s $e"') || return 1
	echo "$out $(du -sb "$T/ws/gw/.git/objects/pack" | cut -f1)"
}

rate() { awk -v s="$1" -v e="$2" -v b="$3" 'BEGIN { printf "%.1f", b / (e - s) / 1e6 }'; }

fresh=$(rss_kib)
# One clone each first: the server's and the kernel's caches are then warm for both.
direct >/dev/null && gateway >/dev/null || { echo "a warm-up clone failed" >&2; exit 1; }
idle=$(rss_kib)
peak=$idle
: >"$T/rss"
(while :; do rss_kib >>"$T/rss"; sleep 0.1; done) &
SAMPLER=$!
d_rates=()
g_rates=()
for ((i = 1; i <= ROUNDS; i++)); do
	read -r s e b < <(direct) || { echo "direct clone failed" >&2; exit 1; }
	d_rates+=("$(rate "$s" "$e" "$b")")
	printf 'round %d direct:  %6.1f MB/s (%s bytes in %.2f s)\n' "$i" "${d_rates[-1]}" "$b" "$(awk -v s="$s" -v e="$e" 'BEGIN { print e - s }')"
	read -r s e b < <(gateway) || { echo "gateway clone failed" >&2; exit 1; }
	g_rates+=("$(rate "$s" "$e" "$b")")
	printf 'round %d gateway: %6.1f MB/s (%s bytes in %.2f s)\n' "$i" "${g_rates[-1]}" "$b" "$(awk -v s="$s" -v e="$e" 'BEGIN { print e - s }')"
done
kill "$SAMPLER" 2>/dev/null
wait "$SAMPLER" 2>/dev/null
SAMPLER=
peak=$(sort -n "$T/rss" | tail -1)
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
dm=$(median "${d_rates[@]}")
gm=$(median "${g_rates[@]}")
echo
echo "median direct:  $dm MB/s"
echo "median gateway: $gm MB/s"
echo "ratio gateway/direct: $(awk -v g="$gm" -v d="$dm" 'BEGIN { printf "%.2f", g / d }')"
echo "crgw RSS: $((fresh / 1024)) MiB when started, idle $((idle / 1024)) MiB after the warm-up clones, peak $((peak / 1024)) MiB during the gateway's clones, growth $(((peak - idle) / 1024)) MiB (from start: $(((peak - fresh) / 1024)) MiB)"
