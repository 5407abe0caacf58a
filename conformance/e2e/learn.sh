#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Learn mode, end to end, as a policy owner uses it: a job that uses DNS, the explicit proxy's HTTP
# forwarding and CONNECT, transparent TLS and git through mediation runs in a learn-mode sandbox under a
# policy that allows none of its hosts; crgw-ctl policy learn drafts a policy from that run's audit
# events; the same job then runs in enforce mode under the draft and passes with zero denials. Also: what
# the gateway refuses always stays refused in learn mode, a git host outside the policy gets no operator
# credential, and learn mode is refused when the operator has not switched it on, or when the policy
# forbids it. TAP output; needs root.
# usage: learn.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
GW_TABLE=crgw_e2e_learn

T=$(mktemp -d /tmp/crgw-e2e-learn.XXXXXX)
chmod 0755 "$T"
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
mediation:
  ca_file: $TN_CA
EOF
gw_start "$T" --config "$T/crgw.yaml" --set learn.allowed=true || { echo "Bail out! crgw did not start"; exit 1; }
ok 0 "crgw starts with learn.allowed (pid $GW_PID)"

# The job's policy before learning: git through mediation, no network host at all.
mkdir -p "$T/start"
cat >"$T/start/cleanroom.yaml" <<'YAML'
version: 1
sandbox:
  network:
    default: deny
git:
  hosts: [git.test]
YAML
# The job: DNS, HTTP forwarding and CONNECT through the explicit proxy, transparent TLS, git.
job="set -e
$(sb_ca_cmd)
getent ahostsv4 allowed.test >/dev/null
curl -sf -o /dev/null http://allowed.test/
curl -sf -o /dev/null --cacert $SB_CA https://allowed.test/
env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY curl -sf -o /dev/null --cacert $SB_CA https://other.test/
git ls-remote https://git.test/org/small.git | grep -q refs/heads/main
echo job-ok"
W=$T/ws
mkdir -p "$W"
job_run() { # job_run RUN-ID POLICY-ARGS...: the job in a sandbox; its output
	local id=$1
	shift
	"$CTL" run --rm --run-id "$id" --workspace "$W" --workspace-mode ro "$@" -- bash -c "$job" 2>&1
}

out=$(job_run enforce-0 --policy "$T/start/cleanroom.yaml")
! grep -q job-ok <<<"$out"
ok $? "under the starting policy the job fails: it needs hosts the policy does not name"

out=$(job_run learn-1 --learn --policy "$T/start/cleanroom.yaml")
grep -q job-ok <<<"$out"
ok $? "in learn mode the same job passes ($(tail -1 <<<"$out"))"
learn_events() { jq -c --arg r learn-1 "select(.run_id == \$r and .event == \"decision\" and ($1))" "$AUDIT" 2>/dev/null | wc -l; }
for svc in dns http connect tls; do
	n=$(learn_events ".service == \"$svc\" and .action == \"warn\" and .reason_code != null")
	[ "$n" -gt 0 ]
	ok $? "... its $svc flows are audited as warn with the reason enforcement would give ($n)"
done
n=$(learn_events '.service == "git" and .action == "allow"')
[ "$n" -gt 0 ]
ok $? "... its git requests through mediation as allowed ($n)"
n=$(learn_events '.action == "deny"')
[ "$n" -eq 0 ]
ok $? "... and nothing of it was denied ($n)"
"$CTL" sandbox ls --json >/dev/null

# What the gateway refuses always stays refused in learn mode.
out=$("$CTL" run --rm --run-id learn-guard --learn --policy "$T/start/cleanroom.yaml" --workspace-mode none -- \
	sh -c 'getent ahostsv4 loopback.test; echo rc=$?; curl -s -m 5 -o /dev/null -w "%{http_code}" -x "" http://169.254.169.254/; echo " rc=$?"' 2>&1)
audit_has "$AUDIT" 'select(.run_id == "learn-guard" and .service == "dns" and .dst_host == "loopback.test" and .action == "deny" and .reason_code == "private_address_blocked")'
ok $? "learn mode still refuses a name that resolves to loopback (private_address_blocked)"
audit_has "$AUDIT" 'select(.run_id == "learn-guard" and .dst_host == "169.254.169.254" and .action == "deny" and .reason_code == "private_address_blocked")' &&
	! jq -e -s 'map(select(.run_id == "learn-guard" and (.dst_ip == "169.254.169.254" or .dst_host == "169.254.169.254") and (.action == "allow" or .action == "warn"))) | length > 0' "$AUDIT" >/dev/null &&
	! grep -q '^200' <<<"$(tail -1 <<<"$out")"
ok $? "learn mode does not reach the metadata address: refused as private_address_blocked (HTTP $(tail -1 <<<"$out"))"

# A name the policy would refuse and that does not exist binds nothing, yet a learn run records it: query
# names are a channel out, and policy learn must see every lookup.
out=$("$CTL" run --rm --run-id learn-nx --learn --policy "$T/start/cleanroom.yaml" --workspace-mode none -- \
	sh -c 'getent ahostsv4 c2VjcmV0.nosuch.test; echo rc=$?' 2>&1)
audit_has "$AUDIT" 'select(.run_id == "learn-nx" and .service == "dns" and .dst_host == "c2vjcmv0.nosuch.test" and .action == "warn" and .reason_code == "host_not_allowed" and .detail == "no such name (NXDOMAIN)")'
ok $? "learn mode audits a refused name that does not exist as warn, NXDOMAIN in its detail ($(tail -1 <<<"$out"))" ||
	diag "$(jq -c 'select(.run_id == "learn-nx")' "$AUDIT")"

# Learn mode widens where a job connects, never whose credential it uses: git.test, outside this policy's
# git.hosts, is asked without the operator's credential (and wants one: the gateway's 502).
mkdir -p "$T/nogit"
printf 'version: 1\nsandbox:\n  network:\n    default: deny\n' >"$T/nogit/cleanroom.yaml"
out=$("$CTL" run --rm --run-id learn-cred --learn --policy "$T/nogit/cleanroom.yaml" --workspace-mode none -- \
	sh -c 'GIT_TERMINAL_PROMPT=0 git ls-remote http://$CRGW_GATEWAY:8170/git/git.test/org/small.git; echo rc=$?' 2>&1)
! grep -q refs/heads/main <<<"$out" && grep -q 'rc=[1-9]' <<<"$out"
ok $? "learn mode: a git host outside git.hosts gets no operator credential ($(tail -1 <<<"$out"))"
audit_has "$AUDIT" 'select(.run_id == "learn-cred" and .service == "git" and .action == "warn" and .reason_code == "host_not_allowed")' &&
	audit_has "$AUDIT" 'select(.run_id == "learn-cred" and .service == "git" and .action == "deny" and (.detail // "" | test("with no credential")))' &&
	! jq -e -s 'map(select(.run_id == "learn-cred" and .secret_id != null)) | length > 0' "$AUDIT" >/dev/null
ok $? "... audited as warn host_not_allowed, then the upstream's refusal, and no secret_id anywhere"

# The draft.
"$CTL" policy learn "$AUDIT" --run-id learn-1 --into "$T/learned/cleanroom.yaml" 2>"$T/learn.err"
rc=$?
[ $rc -eq 2 ] && grep -q "No such file" "$T/learn.err"
ok $? "policy learn into a directory that does not exist is a clear error (exit $rc)"
mkdir -p "$T/learned"
"$CTL" policy learn "$AUDIT" --run-id learn-1 --into "$T/learned/cleanroom.yaml" 2>"$T/learn.err"
ok $? "policy learn drafts a policy from the learn run ($(tail -1 "$T/learn.err"))"
diag "$(cat "$T/learned/cleanroom.yaml")"
"$CTL" policy validate "$T/learned" >/dev/null 2>&1
ok $? "the draft validates"
grep -q '"allowed.test"' "$T/learned/cleanroom.yaml" && grep -q '"other.test"' "$T/learned/cleanroom.yaml" &&
	grep -q '"git.test"' "$T/learned/cleanroom.yaml" && ! grep -q 'loopback.test\|169.254' "$T/learned/cleanroom.yaml"
ok $? "it names exactly the job's hosts, and nothing the gateway refused"
grep -q '# .*connection' "$T/learned/cleanroom.yaml"
ok $? "every rule says how often it was used"
"$CTL" policy diff "$T/learned" "$T/learned" --against "$AUDIT" --json |
	jq -e '.against.flips == [] and .against.replayed > 0' >/dev/null
ok $? "the learn run's log replayed through the draft flips nothing"

out=$(job_run enforce-2 --policy "$T/learned/cleanroom.yaml")
grep -q job-ok <<<"$out"
ok $? "the job passes in enforce mode under the draft ($(tail -1 <<<"$out"))"
sleep 1.2 # the audit writer batches for up to a millisecond; a second for the file to settle
n=$(jq -c 'select(.run_id == "enforce-2" and (.action == "deny" or .action == "warn"))' "$AUDIT" | wc -l)
m=$(jq -c 'select(.run_id == "enforce-2" and .event == "decision" and .action == "allow")' "$AUDIT" | wc -l)
[ "$n" -eq 0 ] && [ "$m" -gt 4 ]
ok $? "... with zero denials and no warn ($m allowed decisions)"

# Collapsing siblings, and the draft printed when --into is not given.
"$CTL" policy learn "$AUDIT" --run-id learn-1 --collapse 2 2>/dev/null | grep -q '"\*\.test"'
[ $? -ne 0 ]
ok $? "--collapse never makes a wildcard of a one-label parent (*.test)"

# Learn mode is the operator's and the policy's to refuse.
mkdir -p "$T/nolearn"
printf 'version: 1\nsandbox:\n  learn: false\n  network:\n    default: deny\n' >"$T/nolearn/cleanroom.yaml"
out=$("$CTL" run --rm --learn --policy "$T/nolearn/cleanroom.yaml" --workspace-mode none -- true 2>&1)
rc=$?
[ $rc -eq 125 ] && grep -q "forbids learn mode" <<<"$out"
ok $? "a policy with sandbox.learn: false is never run in learn mode (exit $rc: $(tail -1 <<<"$out"))"
gw_stop
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not restart"; exit 1; }
out=$("$CTL" run --rm --learn --policy "$T/start/cleanroom.yaml" --workspace-mode none -- true 2>&1)
rc=$?
[ $rc -eq 125 ] && grep -q "learn mode is off" <<<"$out"
ok $? "without learn.allowed the gateway refuses learn mode (exit $rc: $(tail -1 <<<"$out"))"
[ "$("$CTL" stats --json | jq .sandboxes)" -eq 0 ]
ok $? "no sandbox left registered"
gw_stop
ok $? "crgw exits 0 on SIGTERM"
tap_done
