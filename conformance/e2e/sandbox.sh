#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end on the netns backend, as a user runs jobs: real tools (npm ci, pip install of a wheel, go
# build, git clone over HTTP, gcc) in a sandbox's /workspace in copy mode with the host's tree unchanged
# byte for byte, rw mode with new files owned by the directory's owner, ro and none, sandbox diff and cp,
# links that never lead a write out of the workspace, resource limits (a fork bomb and a 10 GiB
# allocation end inside while DNS and a tunnel through the gateway stay answered), the seccomp filter
# from inside, a terminal (-t: ^C and the window size reach the command), the environment, and TTLs.
# TAP output. Needs root.
# usage: sandbox.sh CRGW CRGW_CTL SYSCALL_PROBE
set -uo pipefail
CRGW=$1
CTL=$2
PROBE=$3
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

T=$(mktemp -d /tmp/crgw-e2e.XXXXXX)
chmod 0755 "$T"
OUT=/srv/crgw-e2e-outside-$$
testnet_on_exit rm -rf "$T" "$OUT"
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
AUDIT=$T/audit.log
# Tools read these from the machine's environment; the sandbox starts with none of them anyway.
unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE SSL_CERT_FILE GIT_SSL_CAINFO NODE_EXTRA_CA_CERTS PIP_CERT PIP_FIND_LINKS

policy() { # policy DIR: a policy allowing allowed.test on 80 and 443
	cat >"$1/cleanroom.yaml" <<'YAML'
version: 1
sandbox:
  network:
    default: deny
    allow:
      - host: allowed.test
        ports: [80, 443]
YAML
}

# ---- fixtures: a project using npm, pip, go, gcc and git, and the servers it fetches from ----------
P=$T/proj
mkdir -p "$P/wheels" "$P/gosrc" "$P/.github/workflows"
policy "$P"
WWW=$TN_STATE/www/$TN_WEB1
mkdir -p "$WWW/npm" "$WWW/git"
# An npm package served by the test network's web server, pinned by the lockfile with its sha512.
mkdir -p "$T/pkg/package"
printf '{"name":"tiny-lib","version":"1.0.0","main":"index.js"}\n' >"$T/pkg/package/package.json"
printf 'module.exports = () => "tiny-lib works";\n' >"$T/pkg/package/index.js"
tar -C "$T/pkg" -czf "$WWW/npm/tiny-lib-1.0.0.tgz" package
integrity="sha512-$(openssl dgst -sha512 -binary "$WWW/npm/tiny-lib-1.0.0.tgz" | base64 -w0)"
printf '{"name":"proj","version":"1.0.0","dependencies":{"tiny-lib":"1.0.0"}}\n' >"$P/package.json"
cat >"$P/package-lock.json" <<JSON
{"name":"proj","version":"1.0.0","lockfileVersion":3,"requires":true,"packages":{
"":{"name":"proj","version":"1.0.0","dependencies":{"tiny-lib":"1.0.0"}},
"node_modules/tiny-lib":{"version":"1.0.0","resolved":"http://allowed.test/npm/tiny-lib-1.0.0.tgz","integrity":"$integrity"}}}
JSON
# A wheel built by hand (a zip with its metadata), installed without an index.
python3 - "$P/wheels" <<'PY'
import base64, hashlib, sys, zipfile
files = {
    "tinywheel/__init__.py": b"def hello():\n    return 'tinywheel works'\n",
    "tinywheel-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinywheel\nVersion: 1.0\n",
    "tinywheel-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: crgw-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = ""
for name, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record += f"{name},sha256={digest},{len(data)}\n"
record += "tinywheel-1.0.dist-info/RECORD,,\n"
with zipfile.ZipFile(sys.argv[1] + "/tinywheel-1.0-py3-none-any.whl", "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
    z.writestr("tinywheel-1.0.dist-info/RECORD", record)
PY
printf 'module example.test/hello\n\ngo 1.19\n' >"$P/gosrc/go.mod"
printf 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("go works") }\n' >"$P/gosrc/main.go"
printf '#include <stdio.h>\nint main(void) { puts("gcc works"); return 0; }\n' >"$P/hello.c"
printf 'on: push\n' >"$P/.github/workflows/ci.yml"
mkdir -p "$P/docs"
echo a >"$P/docs/a.md"
echo b >"$P/docs/b.md"
# A git repository served over HTTP (the "dumb" protocol: static files) by the same web server.
git init -q --bare "$WWW/git/repo.git"
git -C "$T" init -q src && git -C "$T/src" -c user.email=t@t -c user.name=t commit -q --allow-empty -m "first commit" &&
	git -C "$T/src" push -q "$WWW/git/repo.git" HEAD:refs/heads/main && git -C "$WWW/git/repo.git" symbolic-ref HEAD refs/heads/main &&
	git -C "$WWW/git/repo.git" update-server-info
cp "$PROBE" "$P/syscall_probe"

tree_sum() { # a digest of every name, mode, owner, size and content under DIR
	(cd "$1" && find . -printf '%p %m %U:%G %s %l\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) | sha256sum
}
before=$(tree_sum "$P")

gw_start "$T" || { echo "Bail out! crgw did not start"; exit 1; }
ok 0 "crgw starts against the test network (pid $GW_PID)"

# ---- copy mode: real tools write into /workspace, the host's tree never changes --------------------
"$CTL" run --policy "$P" --name tools -- true
ok $? "run without --rm leaves a copy-mode sandbox 'tools'"
tools() { "$CTL" exec tools -- sh -c "$1" 2>&1; }
out=$(tools 'npm ci --no-audit --no-fund --registry http://allowed.test/npm/ && node -e "console.log(require(\"tiny-lib\")())"')
grep -q 'tiny-lib works' <<<"$out"
ok $? "npm ci installs the locked package over the gateway, checked against its integrity" || diag "$out"
out=$(tools 'python3 -m venv .venv && .venv/bin/pip install -q --no-index wheels/tinywheel-1.0-py3-none-any.whl && .venv/bin/python -c "import tinywheel; print(tinywheel.hello())"')
grep -q 'tinywheel works' <<<"$out"
ok $? "pip installs a local wheel into a venv in the workspace" || diag "$out"
out=$(tools 'cd gosrc && GOFLAGS=-mod=mod GOPROXY=off go build -o hello . && ./hello')
grep -q 'go works' <<<"$out"
ok $? "go build writes a binary (its cache in the private home)" || diag "$out"
out=$(tools 'git clone -q http://allowed.test/git/repo.git clone && git -C clone log --oneline')
grep -q 'first commit' <<<"$out"
ok $? "git clone fetches a repository over HTTP through the gateway" || diag "$out"
out=$(tools 'gcc -o hello hello.c && ./hello')
grep -q 'gcc works' <<<"$out"
ok $? "gcc compiles and runs" || diag "$out"
tools 'echo "#!/bin/sh" > .git-hook-test; mkdir -p .git/hooks && echo "curl evil" > .git/hooks/pre-commit; mkdir -p sub/.git/hooks && echo "curl evil" > sub/.git/hooks/post-checkout; mkdir -p .git/modules/lib/hooks && echo "curl evil" > .git/modules/lib/hooks/post-checkout; echo "run: evil" >> .github/workflows/ci.yml; rm hello.c; rm -r docs && mkdir docs && echo c > docs/c.md' >/dev/null
[ "$(tree_sum "$P")" = "$before" ]
ok $? "the host's tree is byte for byte unchanged after all of that"

out=$("$CTL" sandbox diff tools 2>&1)
grep -q '^ A node_modules/tiny-lib/index.js' <<<"$out" && grep -q '^ A gosrc/hello' <<<"$out" &&
	grep -q '^ D hello.c' <<<"$out" && grep -q '^ A clone/' <<<"$out"
ok $? "sandbox diff lists what was added and deleted" || diag "$out"
grep -q '^ D docs/a.md' <<<"$out" && grep -q '^ D docs/b.md' <<<"$out" && grep -q '^ A docs/c.md' <<<"$out"
ok $? "... through a directory removed and made again (an opaque directory in the change layer)" || diag "$out"
flagged=$(sed -n '/^!/p' <<<"$out")
grep -q '^!C .github/workflows/ci.yml' <<<"$flagged" && grep -q '^!A .git/hooks/pre-commit' <<<"$flagged" &&
	[ "$(head -n "$(wc -l <<<"$flagged")" <<<"$out")" = "$flagged" ] && ! grep -q '^!A .venv/bin' <<<"$out"
ok $? "... the CI file and the git hook first, flagged for review (not every file of a .venv)" || diag "$out"
grep -q '^!A sub/.git/hooks/post-checkout' <<<"$flagged" && grep -q '^!A clone/.git/config' <<<"$flagged" &&
	grep -q '^!A .git/modules/lib/hooks/post-checkout' <<<"$flagged" &&
	! grep -q '^!A clone/.git/hooks/.*\.sample' <<<"$out" && grep -q '^ A clone/.git/hooks/pre-commit.sample' <<<"$out"
ok $? "... a nested repository's and a submodule's hooks and configuration too, not the samples a clone brings" || diag "$out"
"$CTL" sandbox diff --json tools | jq -e '.changes | map(select(.path=="hello.c" and .kind=="deleted")) | length == 1' >/dev/null
ok $? "sandbox diff --json gives kinds and paths"
# The sandbox chose these names: one that is not UTF-8 is listed (it was left out, so a CI file could
# hide from the review), and one with escapes or a line break cannot drive the reviewer's terminal.
"$CTL" exec tools -- sh -c 'printf x > ".github/workflows/ci-$(printf "\377").yml"; printf x > "caf$(printf "\351")"
	printf x > "$(printf "e\033[1A\033[2Kvil\nfake")"' >/dev/null 2>&1
out=$("$CTL" sandbox diff tools 2>&1)
grep -q '^!A \.github/workflows/ci-.*\.yml  (CI configuration)$' <<<"$out" && grep -q '^ A caf' <<<"$out" &&
	grep -qF ' A e?[1A?[2Kvil?fake' <<<"$out" && ! grep -q "$(printf '\033')" <<<"$out"
ok $? "sandbox diff lists names that are not UTF-8, and shows control characters as '?'" || diag "$out"
"$CTL" sandbox diff --json tools | jq -e '[.changes[].path] | index(".github/workflows/ci-\ufffd.yml") != null and
	index("caf\ufffd") != null and index("e\u001b[1A\u001b[2Kvil\nfake") != null' >/dev/null
ok $? "... and so does --json, the bytes that are not UTF-8 as U+FFFD"
out=$("$CTL" sandbox rm 'tools#x' 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q "not a sandbox id or name" <<<"$out" && "$CTL" sandbox show tools >/dev/null 2>&1
ok $? "sandbox rm 'tools#x' is refused and tools stays (curl would drop the fragment and release tools)" || diag "$out"
"$CTL" cp tools:gosrc/hello "$T/hello-out" && [ "$("$T/hello-out")" = "go works" ]
ok $? "cp copies a built binary out, and it runs on the host"
"$CTL" cp tools:node_modules "$T/nm-out" && grep -q 'tiny-lib works' "$T/nm-out/tiny-lib/index.js"
ok $? "cp copies a directory out"
mkdir -p "$OUT"
"$CTL" exec tools -- sh -c 'ln -s /etc/shadow shadow-link; ln -s ../../../../root root-link' >/dev/null 2>&1
! "$CTL" cp tools:shadow-link "$T/shadow-out" 2>/dev/null || ! grep -q root: "$T/shadow-out" 2>/dev/null
ok $? "cp through a link inside the sandbox reads the sandbox's view, never the host's /etc/shadow"
! "$CTL" cp tools:../../etc/shadow "$T/shadow-out2" 2>/dev/null || ! grep -q root: "$T/shadow-out2" 2>/dev/null
ok $? "cp of a '..' path stays inside the sandbox"
"$CTL" exec tools -- mkfifo fifo >/dev/null 2>&1
out=$(timeout 20 "$CTL" cp tools:fifo "$T/fifo-out" 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q "fifo in the sandbox: not a file or directory (devices, FIFOs and sockets are not copied)" <<<"$out" &&
	[ ! -e "$T/fifo-out" ]
ok $? "cp of a FIFO says what it is, at once, and copies nothing (exit $rc)" || diag "$out"
"$CTL" sandbox show tools | grep -q '^run_id  *-$'
ok $? "sandbox show gives '-' for a run id it has none of"

# ---- the seccomp filter, from inside --------------------------------------------------------------
out=$("$CTL" exec tools -- ./syscall_probe /tmp 2>&1)
rc=$?
nok=$(grep -c '^ok' <<<"$out")
[ $rc -eq 0 ] && [ "$nok" -ge 30 ] && ! grep -q '^not ok' <<<"$out"
ok $? "every refused system call fails inside with its errno, tools' calls work ($nok probes)" || diag "$out"
out=$("$CTL" exec tools -- sh -c 'grep Seccomp: /proc/self/status; grep NoNewPrivs /proc/self/status')
grep -q 'Seccomp:[[:space:]]*2' <<<"$out" && grep -q 'NoNewPrivs:[[:space:]]*1' <<<"$out"
ok $? "the command runs under a seccomp filter with no_new_privs" || diag "$out"
out=$("$CTL" exec tools -- sh -c 'umount /proc; umount /tmp; echo x > /tmp/still-mine; grep -c " /proc \| /tmp " /proc/self/mounts' 2>&1)
[ "$(tail -1 <<<"$out")" = 2 ]
ok $? "its root cannot unmount /proc or /tmp" || diag "$out"
tdata=$("$CTL" sandbox show --json tools | jq -r .data_dir)
tholder=$("$CTL" sandbox show --json tools | jq -r .holder_pid)
out=$("$CTL" sandbox rm tools 2>&1)
rc=$?
# It answers once the teardown is over: the sandbox's processes and data are gone when it returns.
[ $rc -eq 0 ] && [ "$out" = "tools released" ] && [ -n "$tdata" ] && [ ! -e "$tdata" ] && ! alive "$tholder"
ok $? "sandbox rm releases it and returns with its data ($tdata) and processes gone ($out)"
out=$("$CTL" sandbox rm tools 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q "released: sandbox sbx-[0-9a-f]* was released at .*: released through the control API" <<<"$out"
ok $? "a second sandbox rm says when and why it was released, as sandbox show does (exit $rc)" || diag "$out"
# A client that gives up while the gateway removes a large tree: the gateway goes on, and so does the removal.
"$CTL" run --policy "$P" --name bigtree -- sh -c 'mkdir -p /root/t && cd /root/t && seq 60000 | xargs touch' >/dev/null 2>&1
bdata=$("$CTL" sandbox show --json bigtree 2>/dev/null | jq -r .data_dir)
nfiles=$(find "$bdata" -type f 2>/dev/null | wc -l)
"$CTL" sandbox rm bigtree >/dev/null 2>&1 &
rmpid=$!
# Killed once the release happened (show answers 410), while the tree is still being removed.
for _ in $(seq 500); do "$CTL" sandbox show bigtree >/dev/null 2>&1 || break; sleep 0.01; done
waiting=$(alive "$rmpid" && [ -e "$bdata" ] && echo waiting || echo done)
kill -KILL "$rmpid" 2>/dev/null
wait "$rmpid" 2>/dev/null
for _ in $(seq 100); do [ ! -e "$bdata" ] && break; sleep 0.1; done
[ "$waiting" = waiting ] && [ "$nfiles" -ge 60000 ] && [ ! -e "$bdata" ] && kill -0 "$GW_PID" && "$CTL" sandbox ls >/dev/null
ok $? "a sandbox rm killed while it waits ($waiting): the gateway carries on and removes the sandbox's $nfiles files"

# ---- rw: the directory itself; new files belong to its owner --------------------------------------
R=$T/rwproj
mkdir -p "$R"
policy "$R"
cp "$P/package.json" "$P/package-lock.json" "$R/"
ln -s /etc "$R/etc-link"
ln -s "$OUT" "$R/out-link"
chown -R 4242:4343 "$R" "$OUT"
out=$("$CTL" run --rm --policy "$R" --workspace-mode rw -- sh -c 'npm ci --no-audit --no-fund --registry http://allowed.test/npm/ && mkdir -p build && echo x > build/artifact && touch new-file' 2>&1)
ok $? "npm ci in rw mode" || diag "$out"
owners=$(find "$R/node_modules" "$R/build" "$R/new-file" -printf '%U:%G\n' | sort -u)
[ "$owners" = "4242:4343" ]
ok $? "the files it made belong on the host to the directory's owner ($owners)"
out=$("$CTL" run --rm --policy "$R" --workspace-mode rw -- sh -c 'echo pwn > etc-link/crgw-e2e; echo pwn > out-link/escaped; echo pwn > /workspace/../etc/crgw-e2e; ln -s /srv w; echo pwn > w/x' 2>&1)
[ ! -e /etc/crgw-e2e ] && [ -z "$(ls -A "$OUT")" ] && [ ! -e /srv/x ]
ok $? "links to /etc, to a directory of the same owner outside, and '..' never let a write leave the workspace" || diag "$out"
out=$("$CTL" run --rm --policy "$R" --workspace-mode rw -- sh -c 'touch setid && chmod 4755 setid; echo "chmod=$?"' 2>&1)
grep -q 'chmod=1' <<<"$out" && [ "$(stat -c %a "$R/setid")" = 644 ]
ok $? "no set-user-ID file can be made in the workspace" || diag "$out"

# ---- ro and none ---------------------------------------------------------------------------------
out=$("$CTL" run --rm --policy "$P" --workspace-mode ro -- sh -c 'cat package.json >/dev/null && touch x' 2>&1)
rc=$?
[ $rc -ne 0 ] && grep -q 'Read-only file system' <<<"$out"
ok $? "ro: the workspace reads, writes are refused (exit $rc)"
out=$("$CTL" run --rm --policy "$P" --workspace-mode none -- sh -c 'pwd; test -e /workspace || echo none' 2>&1)
[ "$out" = "$(printf '/\nnone')" ]
ok $? "none: no /workspace, the command starts in /"

out=$("$CTL" run --rm --policy "$P" --workspace /proc/sys --workspace-mode rw -- true 2>&1)
[ $? -eq 125 ] && grep -q 'needs an idmapped mount' <<<"$out"
ok $? "rw on a file system without idmapped mounts is refused with a clear error, no chown" || diag "$out"

# ---- the control socket, even where a workspace shows it as the sandbox root's own -----------------
probe_ctl='import socket,sys
s=socket.socket(socket.AF_UNIX)
try:
    s.connect("/workspace/ctl.sock")
    s.sendall(b"GET /v1/sandboxes HTTP/1.0\r\n\r\n")
    print(s.recv(200).decode(errors="replace").splitlines()[0])
except OSError as e:
    print("refused", e)'
policy "$T"
out=$("$CTL" run --rm --policy "$T" --workspace-mode rw -- python3 -c "$probe_ctl" 2>&1)
grep -q '403\|refused' <<<"$out" && ! grep -q ' 200 ' <<<"$out"
ok $? "the gateway's control API refuses a sandbox that reaches its socket through an rw workspace ($out)"
grep -q 'control API refused a peer' "$T/crgw.log"
ok $? "... and says so in its log"

# ---- the environment and options -----------------------------------------------------------------
printf '# comment\nFROM_FILE=yes\n\nexport EXPORTED=1\n' >"$T/env"
out=$(HOST_ONLY=secret "$CTL" run --rm --policy "$P" -e A=1 -e 'B=two words' --env-file "$T/env" -w /tmp -- sh -c 'echo "$A|$B|$FROM_FILE|$EXPORTED|${HOST_ONLY:-unset}|$HOME|$(pwd)"' 2>&1)
[ "$out" = "1|two words|yes|1|unset|/root|/tmp" ]
ok $? "-e, --env-file and -w reach the command; nothing else of the caller's environment does ($out)"
"$CTL" run --rm --policy "$P" -e '1BAD=x' -- true 2>/dev/null
[ $? -eq 125 ]
ok $? "a bad -e is refused with 125"
"$CTL" run --rm --policy "$P" -- sh -c 'kill -TERM $$' 2>/dev/null
[ $? -eq 143 ]
ok $? "a command killed by SIGTERM exits 143"
out=$(echo piped | "$CTL" run --rm --policy "$P" -i -- cat 2>&1)
[ "$out" = piped ]
ok $? "-i passes standard input"
out=$(echo piped | "$CTL" run --rm --policy "$P" -- sh -c 'cat; echo end' 2>&1)
[ "$out" = end ]
ok $? "without -i the command reads /dev/null"

# ---- a terminal -----------------------------------------------------------------------------------
# A pty of our own drives crgw-ctl as a terminal would: its size, a ^C, the command's exit code.
pty_out=$(python3 - "$CTL" "$P" <<'PY' 2>&1
import fcntl, os, pty, select, struct, sys, termios, time
ctl, proj = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.execv(ctl, [ctl, "run", "--rm", "--policy", proj, "-it", "--", "sh", "-c",
                   'tty; stty size; trap "echo got-int; exit 3" INT; echo ready; while :; do sleep 1; done'])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 37, 111, 0, 0))
buf, sent, deadline = b"", False, time.time() + 20
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.5)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        buf += data
    if b"ready" in buf and not sent:
        os.write(fd, b"\x03")
        sent = True
_, status = os.waitpid(pid, 0)
print(buf.decode(errors="replace"))
print("exit", os.waitstatus_to_exitcode(status))
PY
)
grep -q '/dev/pts/0' <<<"$pty_out"
ok $? "-t: the command's terminal is a pty of the sandbox's own (/dev/pts/0)" || diag "$pty_out"
grep -q '37 111' <<<"$pty_out"
ok $? "-t: the window size reaches it"
grep -q 'got-int' <<<"$pty_out" && grep -q 'exit 3' <<<"$pty_out"
ok $? "-t: ^C reaches the command's process group, and its exit code comes back"

# ---- limits: a fork bomb and a 10 GiB allocation end inside; the gateway stays responsive ----------
"$CTL" run --policy "$P" --name prober -- true
# Measure the gateway from another sandbox while the storm runs: one DNS answer and one tunnel.
measure() {
	"$CTL" exec prober -- sh -c '
		s=$(date +%s%N); kdig +time=3 +retry=0 @"$CRGW_GATEWAY" allowed.test A | grep -q NOERROR || echo dns-failed
		d=$(date +%s%N); curl -s -o /dev/null -w "%{http_code}" -p -x "http://$CRGW_GATEWAY:3128" --max-time 5 http://allowed.test/ | grep -q 200 || echo tunnel-failed
		e=$(date +%s%N); echo "dns_ms=$(( (d - s) / 1000000 )) tunnel_ms=$(( (e - d) / 1000000 ))"' 2>&1
}
"$CTL" run --rm --policy "$P" --pids 64 -- bash -c 'timeout 8 bash -c "bomb() { bomb | bomb & }; bomb" 2>/dev/null; sleep 9' >"$T/bomb.out" 2>&1 &
bomb=$!
sleep 2
during=$(measure)
wait "$bomb"
bomb_rc=$?
! grep -q failed <<<"$during"
ok $? "during a fork bomb the gateway answers DNS and opens a tunnel ($during)"
grep -q 'forks were refused at its process limit of 64' "$T/bomb.out"
ok $? "the fork bomb ends inside: crgw-ctl says forks were refused (exit $bomb_rc)" || diag "$(tail -3 "$T/bomb.out")"
audit_has "$AUDIT" 'select(.event=="sandbox_released" and .usage.pids_denied > 0)'
ok $? "... and the audit's sandbox_released counts the refused forks"
"$CTL" run --rm --policy "$P" --memory 256M -- python3 -c "x = b'a' * (10 << 30)" >"$T/oom.out" 2>&1 &
oom=$!
sleep 0.5
during=$(measure)
wait "$oom"
oom_rc=$?
[ $oom_rc -eq 137 ] && grep -q 'ran out of memory' "$T/oom.out"
ok $? "a 10 GiB allocation under a 256M limit ends the sandbox: exit 137 and a word why" || diag "$(cat "$T/oom.out")"
! grep -q failed <<<"$during"
ok $? "... while the gateway answers ($during)"
audit_has "$AUDIT" 'select(.event=="sandbox_released" and .usage.oom_kills >= 1 and (.detail | test("OOM|out of memory")))'
ok $? "... and sandbox_released counts the OOM kill"
# A kept sandbox: no crgw-ctl releases it, the gateway's memory watch must (cgroup v1 signals the OOM
# before its kill is counted).
out=$("$CTL" run --policy "$P" --memory 64M --name oomkept -- python3 -c "x = b'a' * (1 << 30)" 2>&1)
oom_rc=$?
gone=$("$CTL" sandbox show oomkept 2>&1)
[ $oom_rc -eq 137 ] && grep -q 'ran out of memory.*the sandbox was ended' <<<"$out" && ! grep -q 'still running' <<<"$out" &&
	grep -q 'out of memory' <<<"$gone"
ok $? "a kept sandbox's OOM kill ends it too: exit 137, 'the sandbox was ended', its tombstone says out of memory" ||
	diag "$out" "$gone"
"$CTL" sandbox rm oomkept >/dev/null 2>&1
out=$("$CTL" run --rm --policy "$P" --memory 64G -- true 2>&1)
[ $? -eq 125 ] && grep -q "above the operator's ceiling" <<<"$out"
ok $? "a run may not raise a limit above the operator's ceiling" || diag "$out"
cpu=$("$CTL" run --rm --policy "$P" --cpus 0.5 --json -- sh -c 'timeout 3 sh -c "while :; do :; done"' 2>&1 >/dev/null | jq -r 'select(.event=="sandbox_created") | .sandbox_id')
cpu_ms=$(jq -r "select(.event==\"sandbox_released\" and .sandbox_id==\"$cpu\") | .usage.cpu_ms" "$AUDIT" | tail -1)
[ -n "$cpu_ms" ] && [ "$cpu_ms" -lt 2400 ] && [ "$cpu_ms" -gt 500 ]
ok $? "--cpus 0.5: a 3 s busy loop gets about half a CPU (${cpu_ms} ms of CPU)"
"$CTL" stats --json | jq -e '.limits.active and (.sandbox_resources | map(select(.name=="prober")) | .[0].resources.memory_bytes > 0)' >/dev/null
ok $? "stats shows each sandbox's memory and CPU"
metrics=$("$CTL" stats --prometheus)
grep -q 'crgw_sandbox_memory_bytes{sandbox="sbx-' <<<"$metrics" && grep -q '^crgw_limits_active 1' <<<"$metrics"
ok $? "so do the metrics"
"$CTL" doctor --json | jq -e '.capabilities.resource_limits.active == true and .backend.netns.seccomp == true' >/dev/null
ok $? "doctor and the capability map say limits and seccomp are active"

# ---- a released sandbox's connections end with it -------------------------------------------------
# Two slow downloads (a CONNECT tunnel and transparent HTTP) and an idle mediation connection, open
# when the sandbox is removed: all end at once, not at their idle timeout, and say why.
head -c $((8 * 1024 * 1024)) /dev/urandom >"$WWW/slow.bin"
"$CTL" run --policy "$P" --workspace-mode none --name conns -- true >/dev/null 2>&1
ok $? "a kept sandbox for the connection checks"
open_conns() { "$CTL" stats --json | jq -r '"\(.proxy.tunnels_open // 0) \(.mediation.connections_open // 0)"'; }
"$CTL" exec conns -- bash -c 'curl -s -o /dev/null --limit-rate 50k -p -x "http://$CRGW_GATEWAY:3128" http://allowed.test/slow.bin &
	curl -s -o /dev/null --limit-rate 50k http://allowed.test/slow.bin &
	exec 3<>"/dev/tcp/$CRGW_GATEWAY/8170"; sleep 60' >/dev/null 2>&1 &
conns_job=$!
for _ in $(seq 50); do
	read -r tun med <<<"$(open_conns)"
	[ "$tun" -ge 2 ] && [ "$med" -ge 1 ] && break
	sleep 0.1
done
[ "$tun" -ge 2 ] && [ "$med" -ge 1 ]
ok $? "the sandbox has two tunnels and a mediation connection open (tunnels $tun, mediation $med)"
"$CTL" sandbox rm conns >/dev/null
for _ in $(seq 30); do
	read -r tun med <<<"$(open_conns)"
	[ "$tun" = 0 ] && [ "$med" = 0 ] && break
	sleep 0.1
done
[ "$tun" = 0 ] && [ "$med" = 0 ]
ok $? "sandbox rm ends them within 3 s (open after: tunnels $tun, mediation $med)"
audit_has "$AUDIT" '[select(.event == "connection_end" and .detail == "the sandbox was released")] | length >= 2' &&
	audit_has "$AUDIT" 'select(.event == "connection_end" and .detail == "the sandbox was released" and .service == "connect")' &&
	audit_has "$AUDIT" 'select(.event == "connection_end" and .detail == "the sandbox was released" and .service == "http")'
ok $? "... each audited as connection_end: the sandbox was released" ||
	diag "$(jq -c 'select(.event == "connection_end")' "$AUDIT" | tail -4)"
wait "$conns_job" 2>/dev/null
rm -f "$WWW/slow.bin"

# ---- TTL --------------------------------------------------------------------------------------------
"$CTL" sandbox show --json prober | jq -e '.ttl_s == 3600 and .ttl_left_s > 3500' >/dev/null
ok $? "a sandbox gets its policy's ttl_minutes (60 by default)"
"$CTL" sandbox ls | grep -Eq 'prober +[0-9.]+ +[0-9]+m[0-9]+s'
ok $? "sandbox ls shows the time left"
"$CTL" sandbox rm prober >/dev/null
gw_stop
gw_start "$T" --set testing.ttl_seconds=3 || { echo "Bail out! crgw did not restart"; exit 1; }
start=$(date +%s)
out=$("$CTL" run --rm --policy "$P" -- sleep 30 2>&1)
rc=$?
took=$(($(date +%s) - start))
[ $rc -eq 137 ] && grep -q 'released: ttl expired' <<<"$out" && [ $took -lt 20 ]
ok $? "a sandbox whose TTL ends is released: the command ends, exit 137, 'ttl expired' (${took} s)" || diag "$out"
audit_has "$AUDIT" 'select(.event=="sandbox_released" and (.detail | startswith("ttl expired")))'
ok $? "... sandbox_released says ttl expired"

# ---- limits that cannot be had: fail closed, unless the operator says they are optional ------------
# The gateway runs in a private mount namespace without the cgroup file systems (the machine's own
# mounts are untouched), as on a host without the controllers.
gw_stop
cat >"$T/crgw-nocgroup" <<SH
#!/bin/sh
exec unshare -m --propagation private sh -c 'umount -R /sys/fs/cgroup && exec "\$0" "\$@"' "$CRGW" "\$@"
SH
chmod +x "$T/crgw-nocgroup"
real_crgw=$CRGW
CRGW=$T/crgw-nocgroup
gw_start "$T" >/dev/null 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q 'cannot set up resource limits' "$T/crgw.log"
ok $? "without cgroup controllers the gateway refuses to start (limits fail closed)"
gw_reap
gw_start "$T" --set limits.optional=true || { echo "Bail out! crgw did not start with limits.optional"; exit 1; }
out=$("$CTL" run --rm --policy "$P" -- sh -c 'echo ran' 2>&1)
[ "$out" = ran ]
ok $? "with limits.optional the sandbox runs"
audit_has "$AUDIT" 'select(.event=="sandbox_registered" and .limits=="off")'
ok $? "... and its sandbox_registered event says limits are off"
"$CTL" doctor --json | jq -e '.capabilities.resource_limits.active == false and .capabilities.resource_limits.optional == true' >/dev/null
ok $? "... and so do doctor and the capability map"
CRGW=$real_crgw

# ---- nothing left -----------------------------------------------------------------------------------
gw_stop
ok $? "crgw stops cleanly"
left=$(find /sys/fs/cgroup -maxdepth 6 -type d -name "$GW_CGROUP" 2>/dev/null)
[ -z "$left" ]
ok $? "no cgroup of the gateway is left"
[ -z "$(ls -A "$GW_DATA/sandboxes" 2>/dev/null)" ] && [ -z "$(ls -A "$GW_DATA/trash" 2>/dev/null)" ]
ok $? "no sandbox data is left"
if [ "$TAP_FAILED" -gt 0 ]; then
	diag "crgw log:" "$(tail -20 "$T/crgw.log")"
fi
tap_done
