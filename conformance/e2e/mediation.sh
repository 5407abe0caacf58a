#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end through mediation (8170), as a job uses it: real git inside crgw-ctl run sandboxes against
# the test network's git server over TLS, which demands a password the sandbox never holds (clone,
# shallow clone, fetch, ls-remote, protocol v2; pushes only where the policy allows them, and then ref
# by ref: outside git.push_refs, deletions and force pushes refused before the server sees them); a git
# host outside git.hosts; /secrets/ reaching an API with the operator's token and never the sandbox's
# own, nor the session cookie the API sets for it; /meta/; a table of hostile paths refused before routing; upstream failures (bad certificate, a
# refused credential, a reset mid-pack, a stalled upstream) answered and audited; a secret the operator
# lacks failing the launch; and a leak test: no secret value in anything the sandbox could read, in crgw's
# log, the audit log, the metrics or crgw-ctl's output.
# TAP output. Needs root.
# usage: mediation.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

T=$(mktemp -d /tmp/crgw-e2e-med.XXXXXX)
chmod 0755 "$T"
testnet_on_exit '[ -n "${CRGW_E2E_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"'
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
AUDIT=$T/audit.log

GITPW=$(<"$TN_GIT_PASSWORD_FILE")
TOKEN=$(<"$TN_API_TOKEN_FILE")
BASIC=$(printf '%s:%s' "$TN_GIT_USER" "$GITPW" | base64 -w0)
# A value the gateway reads from its environment: it must leave crgw's environment once read.
ENVTOK=envtok-$(openssl rand -hex 16)
(umask 077 && printf 'not-the-password' >"$T/wrong-pw")

cat >"$T/crgw.yaml" <<EOF
secrets:
  git_pw: { file: $TN_GIT_PASSWORD_FILE }
  api_token: { command: [/bin/cat, $TN_API_TOKEN_FILE], refresh_seconds: 60 }
  wrong_pw: { file: $T/wrong-pw }
  env_token: { env: CRGW_E2E_ENV_TOKEN }
git:
  credentials:
    git.test: { secret: git_pw, scheme: basic, username: $TN_GIT_USER }
    reset.git.test: { secret: git_pw, scheme: basic, username: $TN_GIT_USER }
    badcert.test: { secret: git_pw, scheme: basic, username: $TN_GIT_USER }
    git2.test: { secret: wrong_pw, scheme: basic, username: $TN_GIT_USER }
mediation:
  ca_file: $TN_CA
  idle_timeout: 4
  push_hold_bytes: 1MiB
EOF
CRGW_E2E_ENV_TOKEN=$ENVTOK gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not start"; exit 1; }

# ---- policies ----------------------------------------------------------------------------------------
mkpolicy() { # mkpolicy DIR YAML-AFTER-NETWORK
	mkdir -p "$1"
	{
		printf 'version: 1\nsandbox:\n  network:\n    default: deny\n'
		printf '%s\n' "$2"
	} >"$1/cleanroom.yaml"
}
FETCH=$T/fetch
mkpolicy "$FETCH" 'git:
  hosts: [git.test]
  push: false
secrets:
  - id: api_token
    allowed_hosts: [api.test]
  - id: env_token
    allowed_hosts: [api.test]
    header: X-Api-Key
    format: "{secret}"'
PUSH=$T/push
mkpolicy "$PUSH" 'git:
  hosts: [git.test]
  push: true
  push_refs: ["refs/heads/agent/*"]'
FAIL=$T/fail
mkpolicy "$FAIL" 'git:
  hosts: [git2.test, badcert.test, reset.git.test]
secrets:
  - id: api_token
    allowed_hosts: [api.test]'
MISSING=$T/missing
mkpolicy "$MISSING" 'secrets:
  - id: not_configured
    allowed_hosts: [api.test]'

W=$T/ws
mkdir -p "$W"
run() { # run POLICY-DIR SCRIPT: a sandbox on POLICY with $W as its read-write workspace
	"$CTL" run --rm --policy "$1/cleanroom.yaml" --workspace "$W" --workspace-mode rw -- bash -c "$2"
}
upstream_ref() { # upstream_ref REPO REF: the ref's id on the server, or nothing
	git --git-dir "$TN_GIT_ROOT/$1" rev-parse -q --verify "$2" 2>/dev/null
}

# ---- git fetches ---------------------------------------------------------------------------------------
out=$(run "$FETCH" 'git clone -q https://git.test/org/small.git small && git -C small log --oneline | wc -l' 2>&1)
ok $? "clone of org/small.git through the gateway (${out//$'\n'/ })"
check "the clone's HEAD is the server's main" -- test "$(git -C "$W/small" rev-parse HEAD)" = "$(upstream_ref org/small.git refs/heads/main)"
out=$(run "$FETCH" 'git clone -q --depth 1 https://git.test/org/small.git shallow && git -C shallow rev-list --count HEAD' 2>&1)
check "shallow clone has one commit ($out)" -- test "$out" = 1
out=$(run "$FETCH" 'cd small && git fetch -q origin && git rev-parse origin/main' 2>&1)
ok $? "fetch in the clone ($out)"
out=$(run "$FETCH" 'git ls-remote https://git.test/org/small.git' 2>&1)
echo "$out" | grep -q 'refs/heads/main$'
ok $? "ls-remote lists refs/heads/main"
out=$(run "$FETCH" 'GIT_TRACE_PACKET=1 git -c protocol.version=2 ls-remote https://git.test/org/small.git 2>&1 >/dev/null' 2>&1)
echo "$out" | grep -q 'version 2'
ok $? "protocol v2 passes through (the server answered 'version 2')"
check "a fetch is audited: decision allow, service git, operation fetch, the repository" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .service=="git" and .action=="allow" and .operation=="fetch" and .path=="/org/small.git" and .dst_host=="git.test")'
check "connection_end of a git exchange carries bytes" -- \
	audit_has "$AUDIT" 'select(.event=="connection_end" and .service=="git" and .bytes_down > 0)'

# The credential was needed: the same clone straight from the host, without it, fails at the server.
out=$(GIT_TERMINAL_PROMPT=0 git -c http.sslCAInfo="$TN_CA" -c "http.curloptResolve=git.test:443:$TN_GIT" \
	clone -q https://git.test/org/small.git "$T/direct" 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -Eq '401|Authentication failed|could not read Username'
ok $? "the same clone without the gateway's credential fails at the server ($(echo "$out" | tail -1))"

# ---- pushes --------------------------------------------------------------------------------------------
out=$(run "$FETCH" 'cd small && git -c user.email=a@b -c user.name=a commit -q --allow-empty -m p && git push origin HEAD:refs/heads/agent/nopush' 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q 'git.push is false'
ok $? "push refused without git.push ($(echo "$out" | grep -m1 crgw))"
check "the refused push is audited (request_invalid, operation push)" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .service=="git" and .action=="deny" and .reason_code=="request_invalid" and .operation=="push")'
check "nothing reached the server" -- test -z "$(upstream_ref org/small.git refs/heads/agent/nopush)"

rm -rf "$W/small"
G='git -c user.email=agent@sandbox -c user.name=agent'
out=$(run "$PUSH" "git clone -q https://git.test/org/small.git small && cd small && git checkout -q -b work &&
	echo one >one && git add one && $G commit -q -m one && git push -q origin HEAD:refs/heads/agent/e2e" 2>&1)
ok $? "push of a new branch under refs/heads/agent/* ($out)"
check "the server has the pushed commit" -- test "$(upstream_ref org/small.git refs/heads/agent/e2e)" = "$(git -C "$W/small" rev-parse HEAD)"
out=$(run "$PUSH" "cd small && echo two >two && git add two && $G commit -q -m two && git push -q origin HEAD:refs/heads/agent/e2e" 2>&1)
ok $? "a fast-forward push ($out)"
tip=$(upstream_ref org/small.git refs/heads/agent/e2e)
check "the server moved to the new tip" -- test "$tip" = "$(git -C "$W/small" rev-parse HEAD)"
main=$(upstream_ref org/small.git refs/heads/main)

out=$(run "$PUSH" 'cd small && git push origin HEAD:refs/heads/main' 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q 'outside git.push_refs'
ok $? "push to refs/heads/main refused ($(echo "$out" | grep -m1 crgw))"
echo "$out" | grep -q '\[remote rejected\] HEAD -> main (crgw: request_invalid: push refused: the ref is outside'
ok $? "git reports the ref as remote rejected, with the reason ($(echo "$out" | grep -m1 'remote rejected'))"
check "main unchanged on the server" -- test "$(upstream_ref org/small.git refs/heads/main)" = "$main"
check "the refusal names the ref" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .action=="deny" and .ref=="refs/heads/main")'

out=$(run "$PUSH" 'cd small && git push origin :refs/heads/agent/e2e' 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q 'deleting a ref'
ok $? "branch deletion refused ($(echo "$out" | grep -m1 crgw))"
check "the branch still exists on the server" -- test "$(upstream_ref org/small.git refs/heads/agent/e2e)" = "$tip"

out=$(run "$PUSH" "cd small && $G commit -q --amend -m rewritten && git push -f origin HEAD:refs/heads/agent/e2e" 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q 'not a fast-forward'
ok $? "force push of a rewritten commit refused ($(echo "$out" | grep -m1 crgw))"
check "the branch is unchanged on the server" -- test "$(upstream_ref org/small.git refs/heads/agent/e2e)" = "$tip"
check "the force push's refusal is audited with its ref" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .action=="deny" and .ref=="refs/heads/agent/e2e" and (.detail|test("fast-forward")))'

# Pushes larger than mediation.push_hold_bytes (1 MiB here): a fast-forward is proved by the commits at
# the head of its pack and streams on; a rewrite cannot be proved and is refused.
out=$(run "$PUSH" "cd small && git reset -q --hard $tip && head -c 3145728 /dev/urandom >big && git add big &&
	$G commit -q -m big && git push -q origin HEAD:refs/heads/agent/e2e" 2>&1)
ok $? "a fast-forward push of 3 MiB, over the 1 MiB hold limit, passes ($out)"
tip=$(upstream_ref org/small.git refs/heads/agent/e2e)
check "the server has the large commit" -- test "$tip" = "$(git -C "$W/small" rev-parse HEAD)"
out=$(run "$PUSH" "cd small && head -c 3145728 /dev/urandom >big2 && git add big2 && $G commit -q --amend -m big-rewritten &&
	git push -f origin HEAD:refs/heads/agent/e2e" 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q 'push_hold_bytes'
ok $? "a rewritten push over the hold limit cannot be proved and is refused ($(echo "$out" | grep -m1 crgw))"
check "the branch is unchanged on the server" -- test "$(upstream_ref org/small.git refs/heads/agent/e2e)" = "$tip"

# ---- a host outside git.hosts --------------------------------------------------------------------------
out=$(run "$FETCH" 'git clone -q https://git2.test/org/small.git other' 2>&1)
rc=$?
[ $rc -ne 0 ]
ok $? "a git host outside git.hosts: the URL is not rewritten, and the proxy refuses it"
out=$(run "$FETCH" 'curl -s -o /dev/null -w "%{http_code} " -D - "$CRGW_MEDIATION_URL/git/git2.test/org/small.git/info/refs?service=git-upload-pack" | tr -d "\r" | grep -i "^x-crgw-reason\|^[0-9]"' 2>&1)
echo "$out" | grep -q 'host_not_allowed'
ok $? "/git/git2.test/ refused with host_not_allowed ($(echo $out))"
check "audited: host_not_allowed for git2.test" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .service=="git" and .reason_code=="host_not_allowed" and .dst_host=="git2.test")'

# ---- /secrets/ -----------------------------------------------------------------------------------------
out=$(run "$FETCH" 'curl -s -H "Authorization: Bearer sandbox-own" "$CRGW_MEDIATION_URL/secrets/api_token/api.test/whoami"' 2>&1)
[ "$(echo "$out" | jq -r .token_ok 2>/dev/null)" = true ] && [ "$(echo "$out" | jq -r .authorization)" = "Bearer $TOKEN" ]
ok $? "/secrets/ reaches the API with the operator's token, not the sandbox's"
out=$(run "$FETCH" 'curl -s -H "Authorization: Bearer sandbox-own" -H "X-Api-Key: mine" "$CRGW_MEDIATION_URL/secrets/env_token/api.test/echo"' 2>&1)
echo "$out" | jq -e --arg t "$ENVTOK" '[.headers[] | select(.[0]|ascii_downcase == "x-api-key")] == [["X-Api-Key", $t]] and ([.headers[] | select(.[0]|ascii_downcase == "authorization")] | length) == 0' >/dev/null 2>&1 ||
	echo "$out" | grep -q "$ENVTOK"
ok $? "a custom header with the policy's format; the sandbox's own Authorization and X-Api-Key are not forwarded"
out=$(run "$FETCH" 'curl -s -D - -o /dev/null "$CRGW_MEDIATION_URL/secrets/api_token/api.test/session" | tr -d "\r"' 2>&1)
grep -q '^HTTP/1.1 200' <<<"$out" && ! grep -qi '^set-cookie' <<<"$out"
ok $? "a session cookie the API sets for the operator's token never reaches the sandbox ($(echo $out | head -c 100))"
# An upstream's malformed field lines reach the client as nothing it could read as another field.
out=$(run "$FETCH" 'curl -s -D - -o /dev/null "$CRGW_MEDIATION_URL/secrets/api_token/api.test/badfields" | base64 -w0' 2>&1)
python3 - "$out" <<'PY'
import base64, re, sys
head = base64.b64decode(sys.argv[1]).split(b"\r\n\r\n")[0]
lines = re.split(rb"\r\n|\r|\n", head)
ok = (head.startswith(b"HTTP/1.1 200") and b"\0" not in head and b"\r" not in head.replace(b"\r\n", b"")
      and not any(l[:1] in (b" ", b"\t") or l.lower().startswith((b"set-cookie", b"bad name")) for l in lines)
      and b"X-Crgw-Good: 1" in lines and b"X-Crgw-Cr: a Set-Cookie: smuggled=1" in lines)
sys.exit(0 if ok else 1)
PY
ok $? "malformed upstream field lines (bare CR, obs-fold, a bad name) do not reach the client as fields ($(base64 -d <<<"$out" 2>/dev/null | tr '\r\n\0' '!|@' | head -c 300))"
out=$(run "$FETCH" 'curl -s -D - -o /dev/null "$CRGW_MEDIATION_URL/secrets/api_token/allowed.test/echo" | tr -d "\r"' 2>&1)
echo "$out" | grep -q '^HTTP/1.1 403' && echo "$out" | grep -qi '^x-crgw-reason: secret_scope_violation'
ok $? "a destination outside allowed_hosts: 403 secret_scope_violation"
out=$(run "$FETCH" 'curl -s -D - -o /dev/null "$CRGW_MEDIATION_URL/secrets/no_such/api.test/whoami" | tr -d "\r"' 2>&1)
echo "$out" | grep -qi '^x-crgw-reason: secret_scope_violation'
ok $? "a secret the policy does not name: secret_scope_violation"
check "secret_injected is audited with the secret's id" -- \
	audit_has "$AUDIT" 'select(.event=="secret_injected" and .secret_id=="api_token" and .dst_host=="api.test")'
check "the scope violation is audited" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .reason_code=="secret_scope_violation" and .dst_host=="allowed.test")'

# ---- /meta/ --------------------------------------------------------------------------------------------
out=$(run "$FETCH" 'echo "$CRGW_SANDBOX_ID"; curl -s "$CRGW_MEDIATION_URL/meta/"' 2>&1)
id=$(echo "$out" | head -1)
echo "$out" | tail -n +2 | jq -e --arg id "$id" '.sandbox_id == $id and .git.hosts == ["git.test"] and
	([.secrets[].id] | sort) == ["api_token","env_token"] and (.policy_hash|startswith("sha256:")) and
	(.endpoints.git|endswith(":8170/git/"))' >/dev/null
ok $? "/meta/ names the sandbox, its git hosts, its secret ids and the endpoints"
# A HEAD answer has no body: one sent anyway would be read as the start of the next answer.
out=$(run "$FETCH" 'm=${CRGW_MEDIATION_URL#http://}; exec 3<>"/dev/tcp/${m%:*}/${m##*:}"
	printf "HEAD /meta/ HTTP/1.1\r\nHost: gw\r\n\r\nGET /meta/ HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n" >&3
	timeout 3 cat <&3' 2>&1)
heads=$(grep -c '^HTTP/1\.1 200 ' <<<"$out")
first=$(awk '/^\r?$/ { getline; print; exit }' <<<"$out" | tr -d '\r')
[ "$heads" = 2 ] && [ "${first:0:9}" = "HTTP/1.1 " ]
ok $? "HEAD /meta/ answers without a body, and the next request on the connection gets its own answer ($heads answers; after the first head: ${first:0:40})"

# ---- hostile paths, refused before routing ---------------------------------------------------------------
cat >"$W/paths.txt" <<'EOF'
/git/git.test/../meta/
/git/git.test/./org/small.git/info/refs
/git/git.test/org/%2e%2e/x/info/refs
/git/git.test/%2E%2E/%2E%2E/meta/
/git/git.test/.%2e/x
/git//git.test/org/small.git/info/refs
/git/git.test//org/small.git/info/refs
/git/git.test/org/small.git//info/refs
/git/git.test/org%00/small.git/info/refs
/git/git.test/org%2fsmall.git/info/refs
/git/git.test/org%2Fsmall.git/info/refs
/git/git.test/org%5csmall.git/info/refs
/git/git.test/org\small.git/info/refs
/git/git.test/%252e%252e/meta/
/git/git.test/%25/x
/git/git.test/x%
/git/git.test/x%4
/git/git.test/x%zz
/git/git.test/x%0a
/git/git.test/x%0d%0aX-Injected:%201
/git/git.test/x%7f
/git/git.test/x%20y
/git/git.test/x%3fservice=git-upload-pack
/git/git.test/x%23frag
/git/git.test/x%09y
/git/git.test/%c0%ae%c0%ae/meta/
/git/git.test/%ff/x
/git/git.test/x/..
/git/git.test/x/.
/git/git.test/x/%2e
/meta/..
/meta/%2e%2e
/meta/%00
/secrets/api_token/api.test/../../meta/
/secrets/api_token/api.test/%2e%2e%2f%2e%2e%2fmeta
/secrets/..%2fgit/x
/%2e%2e/meta/
/./meta/
//meta/
/secrets/api_token/api.test/%5c..%5c
/git/git.test/..%5c..%5cmeta
/git/git.test/%%32%65%%32%65/
/git/git.test/x%2
/git/git.test/x%u002e
/git/git.test/x"y
/git/git.test/x<y>
http://git.test/org/small.git/info/refs
*
EOF
out=$(run "$FETCH" 'gw=${CRGW_MEDIATION_URL#http://}; while IFS= read -r p; do
	exec 3<>"/dev/tcp/${gw%:*}/${gw#*:}" || { echo "CONNECT-FAILED $p"; continue; }
	printf "GET %s HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n" "$p" >&3
	status=$(head -c 4096 <&3 | tr -d "\r" | awk "NR==1{s=\$2} tolower(\$1)==\"x-crgw-reason:\"{r=\$2} END{print s, r}")
	exec 3<&-
	printf "%s %s\n" "$status" "$p"
done <paths.txt' 2>&1)
total=$(grep -c . "$W/paths.txt")
good=$(echo "$out" | grep -c '^400 request_invalid ')
ok "$([ "$good" -eq "$total" ] && echo 0 || echo 1)" "$good of $total hostile paths refused with 400 request_invalid"
[ "$good" -eq "$total" ] || diag "$(echo "$out" | grep -v '^400 request_invalid ')"
check "at least 40 hostile paths in the table" -- test "$total" -ge 40
check "each refusal is audited before routing (service mediation)" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .service=="mediation" and .reason_code=="request_invalid")'
out=$(run "$FETCH" 'curl -s -o /dev/null -w "%{http_code}" "$CRGW_MEDIATION_URL/gitx/git.test/org/small.git/info/refs?service=git-upload-pack"' 2>&1)
check "a prefix is matched on whole segments: /gitx/ is no service ($out)" -- test "$out" = 404

# ---- upstream failures -----------------------------------------------------------------------------------
out=$(timeout 60 "$CTL" run --rm --policy "$FAIL/cleanroom.yaml" --workspace-mode none -- git clone -q https://badcert.test/org/small.git /tmp/x 2>&1)
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "$out" | grep -q 'crgw: upstream_unreachable'
ok $? "TLS verification failure: a clear error ($(echo "$out" | grep -m1 crgw))"
check "audited: upstream_unreachable for badcert.test" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .reason_code=="upstream_unreachable" and .dst_host=="badcert.test")'
out=$(timeout 60 "$CTL" run --rm --policy "$FAIL/cleanroom.yaml" --workspace-mode none -- git clone -q https://git2.test/org/small.git /tmp/x 2>&1)
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "$out" | grep -q "refused the gateway's credential"
ok $? "401 from the upstream: a clear error, no prompt ($(echo "$out" | grep -m1 crgw))"
# A repository whose pack is larger than what the reset proxy lets through.
big=$T/medium-src
git init -q -b main "$big" && head -c $((3 << 20)) /dev/urandom >"$big/blob" && git -C "$big" add blob &&
	git -C "$big" -c user.email=a@b -c user.name=a commit -q -m blob &&
	git clone -q --bare "$big" "$TN_GIT_ROOT/org/medium.git" && chmod -R a+rX "$TN_GIT_ROOT/org/medium.git"
start=$(date +%s)
out=$(timeout 60 "$CTL" run --rm --policy "$FAIL/cleanroom.yaml" --workspace-mode none -- git clone -q https://reset.git.test/org/medium.git /tmp/x 2>&1)
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ]
ok $? "an upstream reset mid-pack fails the clone, in $(($(date +%s) - start)) s ($(echo "$out" | tail -1))"
check "audited: the exchange ended mid-answer" -- \
	audit_has "$AUDIT" 'select(.event=="connection_end" and .dst_host=="reset.git.test" and (.detail|test("mid-answer")))'
start=$(date +%s)
out=$(timeout 60 "$CTL" run --rm --policy "$FAIL/cleanroom.yaml" --workspace-mode none -- bash -c 'curl -s -m 50 "$CRGW_MEDIATION_URL/secrets/api_token/api.test/slow?seconds=40"' 2>&1)
rc=$?
took=$(($(date +%s) - start))
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $took -lt 30 ]
ok $? "a stalled upstream ends at the idle limit (4 s): curl exit $rc after $took s"
check "audited: the stalled exchange" -- \
	audit_has "$AUDIT" 'select(.event=="connection_end" and .dst_host=="api.test" and (.detail|test("idle|mid-answer")))'

# ---- a secret the operator does not hold -------------------------------------------------------------------
out=$("$CTL" run --rm --policy "$MISSING/cleanroom.yaml" --workspace-mode none -- true 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q "not_configured" && echo "$out" | grep -q runtime_launch_failed
ok $? "a policy naming a secret the operator lacks fails the launch ($(echo "$out" | head -1))"

# ---- a reload gives a host a new secret, with no restart -----------------------------------------------------
# git2.test's credential named the wrong password above; the operator adds a secret and points the host at
# it. The environment-variable secret, unchanged, keeps its value (the variable left crgw's environment).
(umask 077 && cp "$TN_GIT_PASSWORD_FILE" "$T/git2-pw")
sed -i -e "s|^  env_token: .*|&\n  git2_pw: { file: $T/git2-pw }|" -e 's|git2.test: { secret: wrong_pw|git2.test: { secret: git2_pw|' \
	"$T/crgw.yaml"
"$CTL" reload --json >"$T/reload.json" 2>&1
rc=$?
[ $rc -eq 0 ] && jq -e '.reloaded and (.applied | index("secrets") and index("git.credentials")) and (.needs_restart == [])' \
	"$T/reload.json" >/dev/null
ok $? "crgw-ctl reload applies a new secret and a host's new credential live ($(jq -c '{applied, needs_restart}' "$T/reload.json" 2>/dev/null))"
out=$(timeout 60 "$CTL" run --rm --policy "$FAIL/cleanroom.yaml" --workspace-mode none -- \
	bash -c 'git clone -q https://git2.test/org/small.git /tmp/x && git -C /tmp/x log --oneline | wc -l' 2>&1)
[ $? -eq 0 ] && [ "$(tail -1 <<<"$out")" -ge 1 ]
ok $? "the clone the old credential failed now works with the new one, the gateway not restarted (pid $GW_PID)" || diag "$out"
out=$(run "$FETCH" 'curl -s "$CRGW_MEDIATION_URL/secrets/env_token/api.test/echo"' 2>&1)
grep -q "$ENVTOK" <<<"$out"
ok $? "the unchanged environment-variable secret keeps its value over the reload"
sed -i "s|^  env_token: .*|&\n  env_new: { env: CRGW_E2E_NOT_SET }|" "$T/crgw.yaml"
out=$("$CTL" reload 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q "secrets.env_new" <<<"$out" && grep -q "at start" <<<"$out"
ok $? "a reload naming a new environment variable is refused whole, saying why (exit $rc: $(head -1 <<<"$out"))"
out=$(timeout 60 "$CTL" run --rm --policy "$FAIL/cleanroom.yaml" --workspace-mode none -- git ls-remote https://git2.test/org/small.git 2>&1)
[ $? -eq 0 ] && grep -q refs/heads <<<"$out"
ok $? "and the secrets loaded before it stay in use" || diag "$out"
check "audited: config_reloaded with secrets, then config_reload_refused" -- \
	audit_has "$AUDIT" 'select(.event=="config_reloaded" and (.detail|test("secrets")))'
check "audited: the refusal" -- audit_has "$AUDIT" 'select(.event=="config_reload_refused" and (.detail|test("env_new")))'

# ---- leaks -----------------------------------------------------------------------------------------------
# Everything a sandbox can see: its environment, /proc/self, its workspace and home, /meta/, and every
# response and header it gets from the services (refusals included), collected into the workspace.
rm -rf "$W/leak"
run "$FETCH" 'mkdir -p leak && cd leak && env >env && cat /proc/self/environ >environ && cat /proc/self/cmdline >cmdline &&
	cat /proc/self/status /proc/self/maps /proc/self/mountinfo >proc 2>/dev/null
	u=$CRGW_MEDIATION_URL
	curl -s -D meta.h "$u/meta/" >meta.b
	curl -s -D s1.h "$u/secrets/api_token/allowed.test/x" >s1.b
	curl -s -D s2.h "$u/secrets/no_such/api.test/x" >s2.b
	curl -s -D s3.h "$u/secrets/api_token/api.test/redirect?to=https://api.test/elsewhere" >s3.b
	curl -s -D s4.h "$u/secrets/api_token/api.test/missing-path" >s4.b
	curl -s -D g1.h "$u/git/git.test/org/small.git/info/refs?service=git-upload-pack" >g1.b
	curl -s -D g2.h "$u/git/git.test/org/small.git/objects/info/packs" >g2.b
	curl -s -D g3.h -X POST --data-binary 0000 "$u/git/git.test/org/small.git/git-receive-pack" >g3.b
	GIT_TRACE=1 GIT_CURL_VERBOSE=1 git clone -q https://git.test/org/small.git clone >git-trace 2>&1
	GIT_TRACE_CURL=1 git ls-remote https://git.test/org/small.git >>git-trace 2>&1
	tar -C / -cf home.tar root tmp 2>/dev/null; true' >"$T/leak-run.out" 2>&1
"$CTL" stats --prometheus >"$T/metrics.txt" 2>&1
"$CTL" stats --json >"$T/stats.json" 2>&1
"$CTL" sandbox ls >"$T/sandboxes.txt" 2>&1
cat "/proc/$GW_PID/environ" >"$T/crgw-environ" 2>/dev/null
leaks=
for v in "$GITPW" "$TOKEN" "$BASIC" "$ENVTOK"; do
	for f in "$W/leak" "$W/small" "$T/leak-run.out" "$T/crgw.log" "$AUDIT" "$T/metrics.txt" "$T/stats.json" \
		"$T/sandboxes.txt" "$T/crgw-environ"; do
		if grep -rqaF -- "$v" "$f" 2>/dev/null; then leaks+=" ${f#"$T"/}"; fi
	done
	if tar -xOf "$W/leak/home.tar" 2>/dev/null | grep -qaF -- "$v"; then leaks+=" home.tar"; fi
done
check "the leak run collected what the sandbox saw" -- test -s "$W/leak/meta.b" -a -s "$W/leak/env" -a -s "$W/leak/git-trace"
ok "$([ -z "$leaks" ] && echo 0 || echo 1)" "no secret value (password, its Basic form, tokens) in anything the sandbox read, crgw's log, the audit log, metrics, crgw-ctl output or crgw's environment${leaks:+: found in$leaks}"

gw_stop
ok $? "crgw stopped cleanly"
tap_done
