#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The egress conformance checks, run unchanged against a backend: a sandbox made by crgw-ctl run --backend
# BACKEND against the hermetic test network, an allowed and a denied flow of every kind (DNS, the explicit
# proxy's forwarding and CONNECT, transparent HTTP, transparent TLS by SNI, git mediation with the
# operator's credential, DNS sent around the gateway, a direct connection to an address the policy does not
# allow), each checked from the client's side and in the audit log. The commands are busybox applets only,
# so that the very same commands run in a netns sandbox (the host's /bin/busybox) and in a VM (the built-in
# image's busybox): whatever differs between the backends shows up as a check that passes on one and not
# on the other. TAP output. Needs root; the qemu backend needs QEMU and a kernel in /boot.
# usage: egress.sh CRGW CRGW_CTL BACKEND
set -uo pipefail
CRGW=$1
CTL=$2
BACKEND=${3:-netns}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
GW_TABLE=crgw_e2e_egress
GW_PREFIX=cge

if ! [ -x /bin/busybox ]; then
	echo "1..0 # SKIP no /bin/busybox (scripts/setup installs busybox-static)"
	exit 0
fi
if [ "$BACKEND" = qemu ]; then
	if ! command -v qemu-system-x86_64 >/dev/null || ! ls /boot/vmlinuz-* >/dev/null 2>&1; then
		echo "1..0 # SKIP no QEMU or no kernel in /boot (scripts/setup installs qemu-system-x86 and linux-image-amd64)"
		exit 0
	fi
	if readelf -lW "$(dirname "$CTL")/../guest/crgw-guest" 2>/dev/null | grep -q 'program interpreter'; then
		echo "1..0 # SKIP crgw-guest is not static in this build (the sanitizers cannot link it so)"
		exit 0
	fi
fi

T=$(mktemp -d /tmp/crgw-e2e-egress.XXXXXX)
chmod 0755 "$T"
export CRGW_VM_CACHE=$T/vmcache
testnet_on_exit '[ -n "${CRGW_E2E_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"'
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
AUDIT=$T/audit.log

cat >"$T/crgw.yaml" <<EOF
secrets:
  git_pw: { file: $TN_GIT_PASSWORD_FILE }
git:
  credentials:
    git.test: { secret: git_pw, scheme: basic, username: $TN_GIT_USER }
    git2.test: { secret: git_pw, scheme: basic, username: $TN_GIT_USER }
mediation:
  ca_file: $TN_CA
EOF
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
git:
  hosts: [git.test]
  push: false
YAML

gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not start"; exit 1; }
ok 0 "crgw starts against the test network (pid $GW_PID), backend $BACKEND"

# One sandbox per check, as a job would make it; its output is the script's stdout and stderr together.
sb() { "$CTL" run --backend "$BACKEND" --rm --workspace-mode none --policy "$T/cleanroom.yaml" -- sh -c "$1" 2>&1; }
# The events of this backend's sandboxes only carry the fields checked below; every check names its event.
seen() { audit_has "$AUDIT" "select($1)"; }
oneline() { printf '%s' "$1" | tr '\r\n' '  ' | cut -c1-160; }

# ---- DNS ---------------------------------------------------------------------------------------------
out=$(sb 'busybox nslookup allowed.test $CRGW_GATEWAY')
echo "$out" | grep -q "203.0.113.10"
ok $? "DNS: an allowed name resolves through the gateway ($(oneline "$(echo "$out" | grep -m1 Address.*203)"))"
seen '.event == "decision" and .service == "dns" and .dst_host == "allowed.test" and .action == "allow"'
ok $? "... audited: dns allow"
out=$(sb 'busybox nslookup denied.test $CRGW_GATEWAY; echo rc=$?')
! echo "$out" | grep -q "203.0.113.11"
ok $? "DNS: a denied name gets no address ($(oneline "$(echo "$out" | tail -2)"))"
seen '.event == "decision" and .service == "dns" and .dst_host == "denied.test" and .action == "deny" and .reason_code == "host_not_allowed"'
ok $? "... audited: dns deny host_not_allowed"
sb "busybox nslookup allowed.test $TN_DNS" >/dev/null
for _ in $(seq 30); do
	seen '.event == "packet_drop" and .reason_code == "dns_bypass_attempt"' && break
	sleep 0.2
done
seen '.event == "packet_drop" and .reason_code == "dns_bypass_attempt"'
ok $? "DNS sent around the gateway ($TN_DNS) is dropped and audited as dns_bypass_attempt"

# ---- the explicit proxy ------------------------------------------------------------------------------
out=$(sb 'busybox wget -q -O - http://allowed.test/; echo rc=$?')
echo "$out" | grep -q "upstream 203.0.113.10" && echo "$out" | grep -q "rc=0"
ok $? "proxy: an allowed host is fetched through HTTP_PROXY ($(oneline "$out"))"
seen '.event == "decision" and .service == "http" and .dst_host == "allowed.test" and .action == "allow"'
ok $? "... audited: http allow"
out=$(sb 'busybox wget -q -O - http://denied.test/; echo rc=$?')
! echo "$out" | grep -q "rc=0"
ok $? "proxy: a denied host is refused ($(oneline "$out"))"
seen '.event == "decision" and .service == "http" and .dst_host == "denied.test" and .action == "deny" and .reason_code == "host_not_allowed"'
ok $? "... audited: http deny host_not_allowed"
# CONNECT by hand (busybox wget has no CONNECT): the gateway's answer line is what a client sees.
connect() { printf 'printf "CONNECT %s HTTP/1.1\\r\\nHost: %s\\r\\n\\r\\n" | busybox nc -w 3 $CRGW_GATEWAY 3128 | head -1' "$1" "$1"; }
out=$(sb "$(connect allowed.test:443)")
echo "$out" | grep -q "^HTTP/1.1 200"
ok $? "CONNECT to an allowed host:port is established ($(oneline "$out"))"
seen '.event == "decision" and .service == "connect" and .dst_host == "allowed.test" and .dst_port == 443 and .action == "allow"'
ok $? "... audited: connect allow"
out=$(sb "$(connect other.test:443)")
echo "$out" | grep -q "^HTTP/1.1 403"
ok $? "CONNECT to a port the policy does not allow is refused ($(oneline "$out"))"
seen '.event == "decision" and .service == "connect" and .dst_host == "other.test" and .dst_port == 443 and .action == "deny" and .reason_code == "port_not_allowed"'
ok $? "... audited: connect deny port_not_allowed"

# ---- transparent HTTP and TLS ------------------------------------------------------------------------
direct='unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY;'
count() { jq -c "select($1)" "$AUDIT" 2>/dev/null | wc -l; }
http_allowed='.event == "decision" and .service == "http" and .dst_host == "allowed.test" and .action == "allow"'
before=$(count "$http_allowed")
out=$(sb "$direct busybox wget -q -O - http://allowed.test/; echo rc=\$?")
echo "$out" | grep -q "upstream 203.0.113.10" && echo "$out" | grep -q "rc=0"
ok $? "transparent HTTP: an allowed host without the proxy ($(oneline "$out"))"
for _ in $(seq 25); do [ "$(count "$http_allowed")" -gt "$before" ] && break; sleep 0.2; done
[ "$(count "$http_allowed")" -gt "$before" ]
ok $? "... audited: http allow (one more than before)"
out=$(sb "$direct busybox timeout 10 busybox wget -q -O - http://203.0.113.11/; echo rc=\$?")
! echo "$out" | grep -q "rc=0"
ok $? "transparent HTTP: an address no allowed name resolved to is not reached ($(oneline "$out"))"
# busybox's own TLS (the VM's client; the host's busybox hands https to openssl when it finds it) sends
# no signature_algorithms, so the test servers' OpenSSL refuses its hello with an alert: that alert comes
# from the upstream through the tunnel (crgw never speaks TLS to a sandbox) and counts as reaching it.
out=$(sb "$direct busybox wget -q --no-check-certificate -O - https://allowed.test/; echo rc=\$?")
{ echo "$out" | grep -q "upstream 203.0.113.10" && echo "$out" | grep -q "rc=0"; } ||
	echo "$out" | grep -q "TLS error from peer"
ok $? "transparent TLS: an allowed host by its SNI reaches the upstream's TLS server, not intercepted ($(oneline "$(echo "$out" | grep -v '^wget: note')"))"
seen '.event == "decision" and .service == "tls" and .dst_host == "allowed.test" and .dst_port == 443 and .action == "allow"'
ok $? "... audited: tls allow"
seen '.event == "connection_end" and .service == "tls" and .dst_host == "allowed.test" and .bytes_down > 0'
ok $? "... and its connection_end counts the upstream's bytes"
out=$(sb "$direct busybox timeout 10 busybox wget -q --no-check-certificate -O - https://other.test/; echo rc=\$?")
! echo "$out" | grep -q "rc=0"
ok $? "transparent TLS: a port the policy does not allow for that name is refused ($(oneline "$(echo "$out" | grep -v '^wget: note')"))"
seen '.event == "decision" and .service == "tls" and .dst_host == "other.test" and .dst_port == 443 and .action == "deny" and .reason_code == "port_not_allowed"'
ok $? "... audited: tls deny port_not_allowed"

# ---- mediation ---------------------------------------------------------------------------------------
# The ref advertisement of a private repository: the server wants a password the sandbox never holds.
# busybox wget ignores NO_PROXY, so -Y off says what NO_PROXY says to other clients.
refs='/org/small.git/info/refs?service=git-upload-pack'
out=$(sb "busybox wget -Y off -q -O - \"\$CRGW_MEDIATION_URL/git/git.test$refs\" | grep -a -q refs/heads/main && echo listed; echo rc=\$?")
echo "$out" | grep -qx listed
ok $? "mediation: a repository the policy allows, with the operator's credential ($(oneline "$out"))"
seen '.event == "decision" and .service == "git" and .dst_host == "git.test" and .path == "/org/small.git" and .action == "allow"'
ok $? "... audited: git allow"
out=$(sb "busybox wget -Y off -q -O - \"\$CRGW_MEDIATION_URL/git/git2.test$refs\"; echo rc=\$?")
echo "$out" | grep -q "403" && ! echo "$out" | grep -q "rc=0"
ok $? "mediation: a git host outside the policy's git.hosts is refused ($(oneline "$out"))"
seen '.event == "decision" and .service == "git" and .dst_host == "git2.test" and .action == "deny" and .reason_code == "host_not_allowed"'
ok $? "... audited: git deny host_not_allowed"

# ---- policy diff --against this run's own audit log ----------------------------------------------------
# Each case is a hand-made change to the policy above and exactly the flows of this run it must flip
# (direction and flow, sorted); nothing else may flip. Not in a pipeline: ok must count in this shell.
diff_case() { # diff_case NAME EXIT 'FLIP;FLIP;…' (the new policy on stdin)
	local name=$1 want_rc=$2 want=$3 got rc
	mkdir -p "$T/diff-$name"
	cat >"$T/diff-$name/cleanroom.yaml"
	"$CTL" policy diff --json "$T/cleanroom.yaml" "$T/diff-$name" --against "$AUDIT" >"$T/diff-$name.json" 2>"$T/diff-$name.err"
	rc=$?
	got=$(jq -r '[.against.flips[] | "\(.direction) \(.flow)"] | sort | join(";")' "$T/diff-$name.json" 2>/dev/null)
	[ "$rc" -eq "$want_rc" ] && [ "$got" = "$want" ]
	ok $? "policy diff --against the run's log, $name: exit $rc, flips [$got]"
	[ "$got" = "$want" ] || diag "want [$want]" "$(head -3 "$T/diff-$name.err")"
}
network() { # network ALLOW-LINES [GIT-HOSTS]: a policy in the shape of the one above
	printf 'version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n%b\ngit:\n  hosts: [%s]\n  push: false\n' "$1" "${2:-git.test}"
}
allowed='      - host: allowed.test\n        ports: [80, 443]'
other='      - host: other.test\n        ports: [80]'
diff_case unchanged 0 "" \
	< <(network "$allowed\n$other")
diff_case "allowed.test loses port 80" 1 "allowed_to_denied allowed.test:80" \
	< <(network "      - host: allowed.test\n        ports: [443]\n$other")
diff_case "other.test gains port 443" 1 "denied_to_allowed other.test:443" \
	< <(network "$allowed\n      - host: other.test\n        ports: [80, 443]")
diff_case "allowed.test removed" 1 "allowed_to_denied allowed.test (dns);allowed_to_denied allowed.test:443;allowed_to_denied allowed.test:80" \
	< <(network "$other")
diff_case "git2.test added to git.hosts" 1 "denied_to_allowed git fetch git2.test" \
	< <(network "$allowed\n$other" "git.test, git2.test")
diff_case "denied.test allowed" 1 "denied_to_allowed denied.test (dns);denied_to_allowed denied.test:80" \
	< <(network "$allowed\n$other\n      - host: denied.test")
n_events=$(jq -c 'select(.event == "decision")' "$AUDIT" | wc -l)
replayed=$(jq .against.replayed "$T/diff-unchanged.json")
[ "$replayed" -gt 10 ] && [ "$replayed" -le "$n_events" ]
ok $? "... the run's decisions were replayed ($replayed of $n_events decisions; rate limits and drops are not the policy's)"

# ---- every event names its sandbox, and nothing is left ----------------------------------------------
n=$(jq -c 'select(.event == "decision" and (.sandbox_id | type) != "string")' "$AUDIT" 2>/dev/null | wc -l)
[ "$n" -eq 0 ]
ok $? "every decision carries its sandbox's id ($n without)"
[ "$("$CTL" stats --json | jq .sandboxes)" -eq 0 ]
ok $? "no sandbox left registered"
[ -z "$(kernel_objects)" ]
ok $? "no interface, chain, set or counter left"
gw_stop
ok $? "crgw exits 0 on SIGTERM"
tap_done
