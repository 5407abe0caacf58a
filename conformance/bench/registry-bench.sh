#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Registry mediation and the content cache, in one run against the test network's registries:
#   1. npm ci (57 packages), pip install --require-hashes of the test network's 3 tiny wheels and of a
#      bulk project (30 wheels, 38 MiB, testnet_registries.py pypi-bulk) inside crgw-ctl run sandboxes:
#      cold (the gateway's cache and metadata store emptied, every artifact fetched from the upstream and
#      verified) against warm (everything from the cache) against offline (cache.offline, the registries
#      stopped). Every install starts with an empty client cache (npm --cache, pip --no-cache-dir), so
#      what the client does not fetch from the gateway it does not have.
#      The same again with the registries behind an emulated wide-area link (wan_relay.py).
#   2. Cache-hit latency of a small object (a 334-byte tarball): COUNT requests on one kept-alive
#      connection from a sandbox, p50 and p99 of curl's time_total.
#   3. Throughput of a 1 GiB cached object (served with sendfile) from a sandbox, beside nginx serving
#      the very same file (the cache's object) from the same disk, to a client across the same kind of
#      veth link (the root namespace to the test network's namespace); and the gateway's transfer again
#      to a curl in the sandbox's network namespace but outside the sandbox (its groups, its seccomp
#      filter), the client placed as nginx's is; and to a curl started in a sandbox that is already running
#      (crgw-ctl exec: its groups, its seccomp filter), as a job's later download is; and nginx, on the
#      gateway's address through a hole made for this benchmark, to that same running sandbox's curl.
# Prints one line per measurement and a summary; docs/performance.md records the figures. Needs root.
# usage: registry-bench.sh CRGW CRGW_CTL [ROUNDS] [COUNT]
# CRGW_BENCH_PARTS="installs latency huge" (the default) chooses the parts; e.g. "huge" alone, 3 minutes.
set -uo pipefail
CRGW=$1
CTL=$2
ROUNDS=${3:-3}
COUNT=${4:-2000}
PARTS=" ${CRGW_BENCH_PARTS:-installs latency huge} "
part() { [[ $PARTS == *" $1 "* ]]; }
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=../e2e/lib.sh
source "$here/../e2e/lib.sh"

T=$(mktemp -d /var/tmp/crgw-registry-bench.XXXXXX)
chmod 0755 "$T"
testnet_on_exit rm -rf "$T"
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_on_exit '[ -n "${NGINX_PID:-}" ] && kill "$NGINX_PID" 2>/dev/null; true'
testnet_on_exit 'resume_registries'
testnet_up "$T/net" >/dev/null || { echo "the test network did not come up" >&2; exit 1; }
testnet_registries_up >/dev/null || { echo "the test registries did not come up" >&2; exit 1; }
python3 "$here/../lib/testnet_registries.py" pypi-bulk "$TN_STATE/pypi" 30 && chmod -R a+rX "$TN_STATE/pypi" ||
	{ echo "cannot build the bulk pip project" >&2; exit 1; }

write_config() { # write_config OFFLINE
	cat >"$T/crgw.yaml" <<EOF
secrets:
  npm_token: { file: $TN_NPM_TOKEN_FILE }
registries:
  credentials:
    npm.test: { secret: npm_token, scheme: bearer }
mediation:
  ca_file: $TN_CA
cache:
  offline: $1
  metadata_ttl_seconds: 0
EOF
}
CACHE=$T/cache
start_gw() { gw_start "$T" --config "$T/crgw.yaml" --set "cache.dir=$CACHE" || { echo "crgw did not start" >&2; exit 1; }; }
stop_registries() { for s in npm pypi; do read -r pid _ <"$TN_STATE/pids/$s.pid" && kill -STOP "$pid"; done; }
resume_registries() { for s in npm pypi; do [ -f "$TN_STATE/pids/$s.pid" ] && read -r pid _ <"$TN_STATE/pids/$s.pid" && kill -CONT "$pid" 2>/dev/null; done; true; }

# One project for both tools: the npm project, the pip requirements, a policy enabling both.
P=$T/p
mkdir -p "$P"
cp "$TN_NPM_PROJECT/package.json" "$TN_NPM_PROJECT/package-lock.json" "$P/"
cp "$TN_PYPI_REQUIREMENTS" "$P/requirements.txt"
cp "$TN_STATE/pypi/bulk/requirements.txt" "$P/requirements-bulk.txt"
cat >"$P/cleanroom.yaml" <<'EOF'
version: 1
sandbox:
  network:
    default: deny
registries:
  npm:
    enable: true
    allowed_hosts: [npm.test]
    lockfile_enforcement: { enabled: true, mode: deny_unknown, lockfiles: [package-lock.json] }
  pip:
    enable: true
    allowed_hosts: [pypi.test]
    fallback: allow
    lockfile_enforcement: { enabled: true, mode: deny_unknown, lockfiles: [requirements.txt, requirements-bulk.txt] }
EOF
run() { "$CTL" run --rm --policy "$P/cleanroom.yaml" --workspace "$P" --workspace-mode rw -- bash -c "$1"; }
npm_job='rm -rf node_modules; s=$(date +%s%N); npm ci --cache "$(mktemp -d)" --no-progress >/dev/null 2>&1 || exit 1; echo $((($(date +%s%N) - s) / 1000000))'
pip_job='rm -rf site; s=$(date +%s%N); pip install -q --no-cache-dir --disable-pip-version-check --require-hashes -r requirements.txt --target site >/dev/null 2>&1 || exit 1; echo $((($(date +%s%N) - s) / 1000000))'
pipbulk_job=${pip_job//requirements.txt/requirements-bulk.txt}
median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR + 1) / 2)] : "-")}'; }
empty_cache() { "$CTL" cache gc --target 0 >/dev/null 2>&1; rm -rf "$CACHE/meta"; }

# ---- 1. installs: cold, warm, offline ------------------------------------------------------------------
declare -A times
installs() { # installs LABEL: ROUNDS of cold and warm, then offline, into times[LABEL.tool.kind]
	local label=$1 r tool job c w o
	write_config false
	start_gw
	for r in $(seq "$ROUNDS"); do
		for tool in npm pip pipbulk; do
			job=${tool}_job
			empty_cache
			c=$(run "${!job}") || { echo "$tool cold install failed" >&2; exit 1; }
			w=$(run "${!job}") || { echo "$tool warm install failed" >&2; exit 1; }
			times[$label.$tool.cold]+="$c "
			times[$label.$tool.warm]+="$w "
			echo "$label round $r $tool: cold $c ms, warm $w ms (inside the sandbox)"
		done
	done
	# Each tool's cold round emptied the cache of the other's artifacts: both fill it again.
	run "$npm_job" >/dev/null && run "$pip_job" >/dev/null && run "$pipbulk_job" >/dev/null ||
		{ echo "the installs before going offline failed" >&2; exit 1; }
	gw_stop >/dev/null 2>&1
	write_config true
	stop_registries
	start_gw
	for r in $(seq "$ROUNDS"); do
		for tool in npm pip pipbulk; do
			job=${tool}_job
			o=$(run "${!job}") || { echo "$tool offline install failed" >&2; exit 1; }
			times[$label.$tool.offline]+="$o "
			echo "$label round $r $tool: offline $o ms (the registries stopped)"
		done
	done
	resume_registries
	gw_stop >/dev/null 2>&1
}
labels=""
if part installs; then
labels=local
installs local

# The same installs with the registries behind an emulated wide-area link (wan_relay.py: a one-way delay
# and a shared bandwidth, CRGW_BENCH_WAN="DELAY_MS MBIT", default 20 ms each way and 100 Mbit/s): what a
# cache saves against a registry across a real network. Only the gateway's upstream traffic crosses it.
read -r wan_delay wan_mbit <<<"${CRGW_BENCH_WAN:-20 100}"
ip netns exec "$TN_NS" python3 "$here/wan_relay.py" 9443 "$wan_delay" "$wan_mbit" >"$T/wan.out" 2>&1 &
WAN_PID=$!
testnet_on_exit 'kill "$WAN_PID" 2>/dev/null; true'
for _ in $(seq 50); do grep -q ready "$T/wan.out" && break; sleep 0.1; done
ip netns exec "$TN_NS" nft -f - <<EOF || { echo "cannot divert the registries through the emulated link" >&2; exit 1; }
table ip crgw_bench_wan {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr $TN_NPM_ADDR tcp dport 443 dnat to $TN_NPM_ADDR:9443
		ip daddr $TN_PYPI_ADDR tcp dport 443 dnat to $TN_PYPI_ADDR:9443
	}
}
EOF
labels+=" wan"
echo "wan: the registries behind ${wan_delay} ms each way and ${wan_mbit} Mbit/s"
installs wan
ip netns exec "$TN_NS" nft delete table ip crgw_bench_wan
kill "$WAN_PID" 2>/dev/null
wait "$WAN_PID" 2>/dev/null
fi
write_config false
start_gw

# ---- 2. cache-hit latency of a small object -------------------------------------------------------------
p50=- p99=-
if part latency; then
url_path=/registry/npm/npm.test/crgw-dep-00/-/crgw-dep-00-1.0.0.tgz
lat=$(run 'u=http://$CRGW_GATEWAY:8170'"$url_path"'; args=(); for i in $(seq '"$COUNT"'); do args+=(-o /dev/null "$u"); done
	curl -s -w "%{time_total}\n" "${args[@]}"')
p50=$(echo "$lat" | sort -n | awk -v n="$COUNT" 'NR == int(n * 0.5) {printf "%.0f", $1 * 1e6}')
p99=$(echo "$lat" | sort -n | awk -v n="$COUNT" 'NR == int(n * 0.99) {printf "%.0f", $1 * 1e6}')
echo "cache hit, 334-byte tarball, $COUNT requests on one connection: p50 ${p50} us, p99 ${p99} us"
fi

# ---- 3. a 1 GiB object: the gateway's sendfile against nginx, the same file --------------------------------
if part huge; then
www=$TN_STATE/pypi/www
mkdir -p "$www/simple/crgw-huge"
f=crgw_huge-1.0.0-py3-none-any.whl
head -c $((1024 * 1024 * 1024)) /dev/urandom >"$www/files/$f"
d=$(sha256sum "$www/files/$f" | cut -d' ' -f1)
echo "<a href=\"../../files/$f#sha256=$d\">$f</a>" >"$www/simple/crgw-huge/index.html"
printf '{"meta":{"api-version":"1.0"},"name":"crgw-huge","files":[{"filename":"%s","url":"../../files/%s","hashes":{"sha256":"%s"}}]}\n' \
	"$f" "$f" "$d" >"$www/simple/crgw-huge/index.json"
printf 'version: 1\nsandbox:\n  network:\n    default: deny\nregistries:\n  pip: { enable: true, allowed_hosts: [pypi.test], fallback: allow }\n' >"$T/huge.yaml"
hrun() { "$CTL" run --rm --policy "$T/huge.yaml" --workspace "$P" --workspace-mode rw -- bash -c "$1"; }
fill=$(hrun 'curl -s -o /dev/null -w "%{speed_download}" "$PIP_INDEX_URL"crgw-huge/'"$f")
echo "1 GiB cold (fetched, verified, cached): $(awk -v b="$fill" 'BEGIN {printf "%.0f", b / 1e6}') MB/s"
for _ in $(seq 300); do # the commit (fsync) runs on a thread of its own after the client has the end
	obj=$(find "$CACHE/objects" -type f -size +1000M | head -1)
	[ -n "$obj" ] && break
	sleep 0.1
done
[ -n "$obj" ] || { echo "the 1 GiB object is not in the cache" >&2; exit 1; }
mkdir -p "$T/nginx"
cat >"$T/nginx/nginx.conf" <<EOF
daemon off;
user root root;
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $T/nginx;
    proxy_temp_path $T/nginx;
    fastcgi_temp_path $T/nginx;
    uwsgi_temp_path $T/nginx;
    scgi_temp_path $T/nginx;
    server {
        listen $TN_PYPI_ADDR:8081;
        location = /object { alias $obj; default_type application/octet-stream; }
    }
}
EOF
ip netns exec "$TN_NS" nginx -c "$T/nginx/nginx.conf" -p "$T/nginx" &
NGINX_PID=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://$TN_PYPI_ADDR:8081/object" --max-time 0.2 -r 0-0 && break; sleep 0.1; done
gwr=""
ngr=""
ratios=""
# A round takes about a second and single rounds of either server swing by a factor of two on a shared
# machine (the host's load, not the servers': the same server's rate moves as much between rounds). So:
# at least 11 rounds, the two servers taking turns at going first, each round's two transfers back to
# back, and the median of the rounds' own ratios beside the ratio of the medians (a slow spell of the
# host then weighs on both servers of a round alike). The sandbox settles for a second before its
# transfer, so that its own start (registration, rules, the link coming up) is not measured.
huge_rounds=$((ROUNDS < 11 ? 11 : ROUNDS))
from_nginx() { curl -s -o /dev/null -w "%{speed_download}" "http://$TN_PYPI_ADDR:8081/object"; }
# The same transfer from a sandbox's network namespace by a curl outside the sandbox (nsenter -n: not in
# its control groups, without its seccomp filter): the gateway's sender and the sandbox's link, rules and
# guard, measured as nginx's client is, without what confines the sandbox's own processes.
"$CTL" run --policy "$T/huge.yaml" --workspace-mode none --name hugebench -- true >/dev/null 2>&1 ||
	{ echo "cannot make the sandbox for the namespace-only client" >&2; exit 1; }
testnet_on_exit '"$CTL" sandbox rm hugebench >/dev/null 2>&1; true'
hb_url=$("$CTL" exec hugebench -- sh -c 'echo "$PIP_INDEX_URL"')crgw-huge/$f
hb_holder=$("$CTL" sandbox show --json hugebench | jq -r .holder_pid)
from_netns() { nsenter -t "$hb_holder" -n curl -s -o /dev/null -w "%{speed_download}" "$hb_url"; }
# A curl begun in the running sandbox: its groups and seccomp filter, not a sandbox just made.
from_running() { "$CTL" exec hugebench -- curl -s -o /dev/null -w "%{speed_download}" "$hb_url"; }
# nginx again, in the root namespace on the sandbox's gateway address, to the very curl of from_running:
# the same client, sandbox, link, rules and guard, only the server differs. That takes a hole, made for
# this benchmark only: port 8081 accepted first in the sandbox's input chain and added to the eBPF guard's
# gateway ports (it is removed again on exit). With no guard loaded, the nftables hole alone.
hb_gw=$(echo "$hb_url" | sed -E 's#^https?://\[?([^]/]+)\]?:[0-9]+/.*#\1#')
hb_in=$(nft list table inet "$GW_TABLE" | sed -n 's/^\tchain \(sb[0-9]*_in\) {$/\1/p')
[ "$(echo "$hb_in" | wc -w)" = 1 ] || { echo "cannot find the sandbox's input chain (got: $hb_in)" >&2; exit 1; }
nft insert rule inet "$GW_TABLE" "$hb_in" tcp dport 8081 accept ||
	{ echo "cannot open port 8081 in the sandbox's input chain" >&2; exit 1; }
guard_map=$(bpftool -j map show 2>/dev/null | jq -r '.[] | select(.name == "gw_ports") | .id' | head -1)
guard_key="0x91 0x1f 0x06 0x00" # struct guard_port { 8081 in host order, IPPROTO_TCP, 0 }
if [ -n "$guard_map" ]; then
	bpftool map update id "$guard_map" key $guard_key value 0x01 ||
		{ echo "cannot add port 8081 to the guard's gateway ports" >&2; exit 1; }
	testnet_on_exit 'bpftool map delete id "$guard_map" key $guard_key 2>/dev/null; true'
fi
sed -e "s#listen $TN_PYPI_ADDR:8081;#listen $hb_gw:8081;#" -e "s#$T/nginx#$T/nginx-gw#g" "$T/nginx/nginx.conf" >"$T/nginx.gw.conf"
mkdir -p "$T/nginx-gw"
nginx -c "$T/nginx.gw.conf" -p "$T/nginx-gw" &
NGINX_GW_PID=$!
testnet_on_exit 'kill "$NGINX_GW_PID" 2>/dev/null; true'
from_nginx_running() { "$CTL" exec hugebench -- curl -s -o /dev/null -w "%{speed_download}" "http://$hb_gw:8081/object"; }
for _ in $(seq 50); do
	"$CTL" exec hugebench -- curl -s -o /dev/null --max-time 0.5 -r 0-0 "http://$hb_gw:8081/object" && break
	sleep 0.1
done
nsr=""
nsratios=""
exr=""
exratios=""
sbr=""
sbratios=""
mbs() { awk -v b="$1" 'BEGIN {printf "%.0f", b / 1e6}'; }
ratio() { awk -v g="$1" -v n="$2" 'BEGIN {printf "%.3f", (n > 0 ? g / n : 0)}'; }
from_fresh() { hrun 'sleep 1; curl -s -o /dev/null -w "%{speed_download}" "$PIP_INDEX_URL"crgw-huge/'"$f"; }
for r in $(seq "$huge_rounds"); do
	if [ $((r % 2)) = 1 ]; then
		n=$(from_nginx) s=$(from_nginx_running) h=$(from_netns) x=$(from_running) g=$(from_fresh)
	else
		g=$(from_fresh) x=$(from_running) h=$(from_netns) s=$(from_nginx_running) n=$(from_nginx)
	fi
	g=$(mbs "$g") h=$(mbs "$h") x=$(mbs "$x") n=$(mbs "$n") s=$(mbs "$s")
	gwr+="$g " nsr+="$h " exr+="$x " ngr+="$n " sbr+="$s "
	ratios+="$(ratio "$g" "$n") " nsratios+="$(ratio "$h" "$n") " exratios+="$(ratio "$x" "$n") "
	sbratios+="$(ratio "$x" "$s") "
	echo "round $r 1 GiB hit: crgw $g MB/s to a new sandbox, $x MB/s to a running one, $h MB/s to its network namespace; nginx $n MB/s, $s MB/s to the running sandbox"
done
fi

echo
echo "summary (medians of $ROUNDS rounds)"
for label in $labels; do
	for tool in npm pip pipbulk; do
		c=$(echo ${times[$label.$tool.cold]} | tr ' ' '\n' | median)
		w=$(echo ${times[$label.$tool.warm]} | tr ' ' '\n' | median)
		o=$(echo ${times[$label.$tool.offline]} | tr ' ' '\n' | median)
		echo "$label $tool install: cold $c ms, warm $w ms, offline $o ms; cold/offline $(awk -v c="$c" -v o="$o" 'BEGIN {printf "%.1f", c / o}')x"
	done
done
part latency && echo "cache hit latency (small object): p50 ${p50} us, p99 ${p99} us"
part huge || exit 0
summary_line() { # summary_line LABEL RATES RATIOS [NGINX-RATES]
	local g n
	g=$(echo $2 | tr ' ' '\n' | median)
	n=$(echo ${4:-$ngr} | tr ' ' '\n' | median)
	echo "1 GiB cached object, $1 (medians of $huge_rounds rounds): crgw $g MB/s, nginx $n MB/s; ratio $(awk -v g="$g" -v n="$n" 'BEGIN {printf "%.2f", g / n}'), median of the rounds' ratios $(echo $3 | tr ' ' '\n' | median | awk '{printf "%.2f", $1}')"
}
summary_line "to a new sandbox (crgw-ctl run)" "$gwr" "$ratios"
summary_line "to a running sandbox (crgw-ctl exec)" "$exr" "$exratios"
summary_line "to the sandbox's network namespace only" "$nsr" "$nsratios"
summary_line "to a running sandbox, nginx to the same sandbox's curl" "$exr" "$sbratios" "$sbr"
