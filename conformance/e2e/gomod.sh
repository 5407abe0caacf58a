#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end through Go module mediation (/registry/go/, port 8170), as a job uses it: the go command inside
# crgw-ctl run sandboxes against the test network's static GOPROXY tree over TLS, with the content cache and
# go.sum as the lockfile. `go mod download` and `go build` of the test network's main module succeed, every
# zip and go.mod checked against go.sum (audited with its h1); a version go.sum does not name is hidden from
# the list, refused as .info (so `go get` fails) and as @latest (lockfile_violation), let through and audited
# in warn mode; a registry the policy does not enable is refused (registry_not_allowed); a zip tampered with
# on the upstream is refused whole (integrity_mismatch: the client gets a 502 and no byte of it) and nothing
# of it is cached, and so is a tampered go.mod; a version published just now is hidden and refused under
# min_release_age (release_too_new); the checksum database is proxied only for an allowed host; the second download is served
# from the cache, and so is one offline (cache.offline, the goproxy server stopped).
# TAP output. Needs root.
# usage: gomod.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

T=$(mktemp -d /tmp/crgw-e2e-go.XXXXXX)
chmod 0755 "$T"
testnet_on_exit '[ -n "${CRGW_E2E_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"'
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
testnet_registries_up || { echo "Bail out! the test registries did not come up"; exit 1; }
AUDIT=$T/audit.log
TREE=$TN_STATE/goproxy/www/goproxy.test/m
A=goproxy.test/m/a
B=goproxy.test/m/b

write_config() { # write_config OFFLINE
	cat >"$T/crgw.yaml" <<EOF
mediation:
  ca_file: $TN_CA
  idle_timeout: 10
cache:
  offline: $1
  metadata_ttl_seconds: 0
EOF
}
write_config false
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not start"; exit 1; }

# ---- projects: a copy of the test network's main module, each with its own policy ------------------------
project() { # project DIR POLICY-REGISTRIES-YAML
	rm -rf "$1"
	mkdir -p "$1"
	cp "$TN_GO_MAIN/go.mod" "$TN_GO_MAIN/go.sum" "$TN_GO_MAIN/main.go" "$1/"
	{
		printf 'version: 1\nsandbox:\n  network:\n    default: deny\nregistries:\n'
		printf '%s\n' "$2"
	} >"$1/cleanroom.yaml"
}
# run PROJECT SCRIPT: a sandbox on PROJECT's policy, PROJECT its read-write workspace, the go command's
# caches private to the workspace (GOMODCACHE emptied by `fresh`). GOPROXY is the gateway's (injected).
run() {
	"$CTL" run --rm --policy "$1/cleanroom.yaml" --workspace "$1" --workspace-mode rw -- bash -c '
		export GOPATH=$PWD/.gopath GOMODCACHE=$PWD/.gopath/pkg/mod GOCACHE=$PWD/.gocache HOME=$PWD
		export GOFLAGS=-modcacherw GONOSUMDB=goproxy.test GOTOOLCHAIN=local GO111MODULE=on
		fresh() { rm -rf "$GOMODCACHE"; }
		'"$2"
}
GO=$T/go
project "$GO" '  go:
    enable: true
    allowed_hosts: [goproxy.test]
    lockfile_enforcement: { enabled: true, mode: deny_unknown, lockfiles: [go.sum] }'
sum_of() { awk -v m="$1" -v v="$2" '$1 == m && $2 == v { print $3 }' "$TN_GO_MAIN/go.sum"; }
A_ZIP=$(sum_of $A v1.0.0)
A_MOD=$(sum_of $A v1.0.0/go.mod)
B_ZIP=$(sum_of $B v1.0.0)
B_MOD=$(sum_of $B v1.0.0/go.mod)

# ---- go mod download and go build through the gateway ------------------------------------------------------
out=$(run "$GO" 'echo "GOPROXY=$GOPROXY"; go mod download 2>&1 && go build -o hello . 2>&1 && ./hello 2>&1' 2>&1)
rc=$?
ok $rc "go mod download and go build through the gateway (${out//$'\n'/ })"
check "the program runs with the modules of go.sum" -- grep -q 'a v1.0.0, b v1.0.0' <<<"$out"
check "GOPROXY points at the gateway's /registry/go/goproxy.test" -- grep -q 'GOPROXY=http://.*:8170/registry/go/goproxy.test$' <<<"$out"
for m in "$A $A_ZIP zip" "$A $A_MOD go.mod" "$B $B_ZIP zip" "$B $B_MOD go.mod"; do
	set -- $m
	check "$1's $3 is verified: decision allow with package, version and go.sum's h1 ($2)" -- \
		audit_has "$AUDIT" "select(.event==\"decision\" and .service==\"registry\" and .registry==\"go\" and .action==\"allow\" and .package==\"$1\" and .version==\"v1.0.0\" and .integrity==\"$2\")"
done
check "the zip's connection_end carries its bytes" -- \
	audit_has "$AUDIT" "select(.event==\"connection_end\" and .registry==\"go\" and .package==\"$A\" and .integrity==\"$A_ZIP\" and .bytes_down > 0)"

# ---- the second download: from the cache --------------------------------------------------------------------
before=$(wc -l <"$AUDIT")
out=$(run "$GO" 'fresh; go mod download 2>&1 && ls $GOMODCACHE/cache/download/goproxy.test/m/a/@v/' 2>&1)
ok $? "go mod download again with an empty module cache (${out//$'\n'/ })"
hits=$(tail -n +$((before + 1)) "$AUDIT" | jq -s '[.[] | select(.event=="connection_end" and .registry=="go" and .cache=="hit")] | length')
check "both zips came from the content cache ($hits hits)" -- test "$hits" -ge 2
check "a hit is audited with go.sum's h1 and the sha256 the cache serves" -- \
	audit_has "$AUDIT" "select(.event==\"decision\" and .package==\"$B\" and .integrity==\"$B_ZIP\" and (.detail|test(\"cache serves sha256:\")))"

# ---- deny_unknown: a version outside go.sum -----------------------------------------------------------------
out=$(run "$GO" 'curl -s "$GOPROXY/'$A'/@v/list"' 2>&1)
check "the version list shows only go.sum's version ($(echo $out))" -- test "$out" = v1.0.0
out=$(run "$GO" 'go get '$A'@v1.1.0 2>&1' 2>&1)
rc=$?
[ $rc -ne 0 ] && grep -q 'lockfile_violation\|403' <<<"$out"
ok $? "go get of a version go.sum does not name fails ($(echo "$out" | grep -m1 -i 'v1.1.0'))"
check "audited: lockfile_violation with package and version" -- \
	audit_has "$AUDIT" "select(.event==\"decision\" and .action==\"deny\" and .reason_code==\"lockfile_violation\" and .package==\"$A\" and .version==\"v1.1.0\")"
out=$(run "$GO" 'curl -s -o /dev/null -w "%{http_code}" "$GOPROXY/'$A'/@v/v1.1.0.zip"' 2>&1)
check "its zip asked for directly: 403 ($out)" -- test "$out" = 403
out=$(run "$GO" 'curl -s -w " %{http_code}" "$GOPROXY/'$A'/@latest"' 2>&1)
out=${out//$'\n'/}
check "@latest (v1.1.0, outside go.sum) is 404 with a clear text ($out)" -- grep -q 'lockfile_violation.*v1.1.0.* 404$' <<<"$out"
check "audited: @latest's lockfile_violation names the version" -- \
	audit_has "$AUDIT" "select(.event==\"decision\" and .action==\"deny\" and .reason_code==\"lockfile_violation\" and .package==\"$A\" and .version==\"v1.1.0\" and (.detail|test(\"@latest\")))"

# ---- warn mode: let through and audited ---------------------------------------------------------------------
WARN=$T/warn
project "$WARN" '  go:
    enable: true
    allowed_hosts: [goproxy.test]
    lockfile_enforcement: { enabled: true, mode: warn, lockfiles: [go.sum] }'
out=$(run "$WARN" 'curl -s "$GOPROXY/'$A'/@v/list" | tr "\n" " "; go get '$A'@v1.1.0 2>&1 && go build -o hello . && ./hello 2>&1' 2>&1)
rc=$?
ok $rc "warn mode: go get of the unlisted version succeeds (${out//$'\n'/ })"
check "warn mode: the list keeps it and the program uses it" -- grep -q 'v1.0.0 v1.1.0 .*a v1.1.0, b v1.0.0' <<<"${out//$'\n'/ }"
check "audited: action warn, lockfile_violation, for the zip" -- \
	audit_has "$AUDIT" "select(.event==\"decision\" and .action==\"warn\" and .reason_code==\"lockfile_violation\" and .package==\"$A\" and .version==\"v1.1.0\" and (.detail|test(\"is not in go.sum\")))"
check "audited: the unlisted zip was checked against nothing, and says so" -- \
	audit_has "$AUDIT" "select(.event==\"decision\" and .action==\"allow\" and .package==\"$A\" and .version==\"v1.1.0\" and (.detail|test(\"checked against nothing\")))"

# ---- a registry the policy does not enable, the checksum database ------------------------------------------
NONE=$T/none
project "$NONE" '  pip: { enable: true, allowed_hosts: [pypi.test] }'
out=$(run "$NONE" 'curl -s -D - -o /dev/null http://$CRGW_GATEWAY:8170/registry/go/goproxy.test/'$A'/@v/list | tr -d "\r" | grep -i "^x-crgw-reason"' 2>&1)
check "go not enabled: registry_not_allowed ($out)" -- grep -q registry_not_allowed <<<"$out"
check "audited: registry_not_allowed with registry go" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .reason_code=="registry_not_allowed" and .registry=="go")'
out=$(run "$GO" 'curl -s -w " %{http_code}" "$GOPROXY/sumdb/sumdb.test/supported"' 2>&1)
out=${out//$'\n'/}
check "a checksum database outside allowed_hosts: 404 for supported, so the go command goes direct ($out)" -- grep -q ' 404$' <<<"$out"
check "audited: host_not_allowed naming the checksum database" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .action=="deny" and .reason_code=="host_not_allowed" and .registry=="go" and (.detail|test("sumdb.test")))'
SUMDB=$T/sumdb
project "$SUMDB" '  go:
    enable: true
    allowed_hosts: [goproxy.test, allowed.test]
    lockfile_enforcement: { enabled: true, mode: deny_unknown, lockfiles: [go.sum] }'
printf 'crgw-sumdb-probe\n' >"$TN_STATE/www/$TN_WEB1/supported"
out=$(run "$SUMDB" 'curl -s -w " %{http_code}" "$GOPROXY/sumdb/allowed.test/supported"' 2>&1)
out=${out//$'\n'/}
check "a checksum database in allowed_hosts is passed through ($out)" -- test "$out" = "crgw-sumdb-probe 200"
check "audited: passed through, never cached" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .action=="allow" and .registry=="go" and (.detail|test("checksum database allowed.test passed through")))'
rm -f "$TN_STATE/www/$TN_WEB1/supported"

# ---- the release cooldown: a version published just now ----------------------------------------------------
# goproxy.test/m/b v1.1.0 added to the static tree by hand, with the time of now, and made its @latest.
python3 - "$TREE/b/@v" "$B" <<'EOF'
import io, json, os, sys, time, zipfile
d, mod = sys.argv[1], sys.argv[2]
v = "v1.1.0"
gomod = "module %s\n\ngo 1.19\n" % mod
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    for n, data in (("go.mod", gomod), ("b.go", 'package b\n\nfunc Hello() string { return "b v1.1.0" }\n'),
                    ("LICENSE", "MIT\n")):
        z.writestr("%s@%s/%s" % (mod, v, n), data)
info = json.dumps({"Version": v, "Time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n"
files = ((v + ".zip", buf.getvalue()), (v + ".mod", gomod.encode()), (v + ".info", info.encode()),
         ("list", b"v1.0.0\nv1.1.0\n"), ("../@latest", info.encode()))
for name, data in files:
    path = os.path.join(d, name)
    open(path + ".new", "wb").write(data)
    os.rename(path + ".new", path)
EOF
ok $? "$B@v1.1.0 published to the static tree just now"
sleep 2 # lighttpd's stat cache
COOL=$T/cool
project "$COOL" '  go:
    enable: true
    allowed_hosts: [goproxy.test]
    fallback: allow
    min_release_age: 1h'
out=$(run "$COOL" 'curl -s "$GOPROXY/'$B'/@v/list"' 2>&1)
check "the list hides the version younger than min_release_age ($(echo $out))" -- test "$out" = v1.0.0
check "audited: the list's too_new count" -- \
	audit_has "$AUDIT" "select(.event==\"decision\" and .package==\"$B\" and (.detail|test(\"too_new=1 \")))"
out=$(run "$COOL" 'go get '$B'@v1.1.0 2>&1' 2>&1)
rc=$?
[ $rc -ne 0 ] && grep -q 'release_too_new\|403' <<<"$out"
ok $? "go get of the version younger than min_release_age fails ($(echo "$out" | grep -m1 'v1.1.0' | head -c 250))"
check "audited: release_too_new with package and version" -- \
	audit_has "$AUDIT" "select(.event==\"decision\" and .action==\"deny\" and .reason_code==\"release_too_new\" and .package==\"$B\" and .version==\"v1.1.0\")"
out=$(run "$COOL" 'curl -s -o /dev/null -w "%{http_code}" "$GOPROXY/'$B'/@v/v1.1.0.zip"' 2>&1)
check "its zip asked for directly: 403 ($out)" -- test "$out" = 403
out=$(run "$COOL" 'curl -s -w " %{http_code}" "$GOPROXY/'$B'/@latest"' 2>&1)
out=${out//$'\n'/}
check "@latest (v1.1.0, too new) is 404 with a clear text ($out)" -- grep -q 'release_too_new.*v1.1.0.* 404$' <<<"$out"
out=$(run "$COOL" 'go mod download 2>&1 && go build -o hello . && ./hello 2>&1' 2>&1)
ok $? "go mod download and go build of the older versions under the cooldown (${out//$'\n'/ })"
check "audited: without go.sum enforcement an allowed zip says it was checked against nothing" -- \
	audit_has "$AUDIT" "select(.event==\"decision\" and .action==\"allow\" and .package==\"$B\" and .version==\"v1.0.0\" and (.detail|test(\"checked against nothing\")))"

# ---- integrity_mismatch: a zip tampered with on the upstream ------------------------------------------------
"$CTL" --control "$T/ctl.sock" cache gc --target 0 >/dev/null 2>&1
# Four clients at once for one zip the cache lost: each spooled and verified, one fill wins, all served.
want=$(sha256sum "$TREE/a/@v/v1.0.0.zip" | cut -d' ' -f1)
out=$(run "$GO" 'for i in 1 2 3 4; do curl -s -o z$i.zip "$GOPROXY/'$A'/@v/v1.0.0.zip" & done; wait; sha256sum z?.zip | cut -d" " -f1 | sort | uniq -c' 2>&1)
check "four concurrent downloads of a zip get the same verified bytes ($(echo $out))" -- test "$(echo $out)" = "4 $want"
out=$("$CTL" --control "$T/ctl.sock" cache ls --json 2>&1)
echo "$out" | jq -e --arg d "sha256:$want" 'map(select(.digest==$d)) | length == 1' >/dev/null
ok $? "the cache holds it once ($(echo "$out" | jq length 2>/dev/null) objects)"
victim=$TREE/b/@v/v1.0.0.zip
cp "$victim" "$T/victim.orig"
# A well-formed zip of the same names with one file changed: only the h1 can tell.
python3 - "$victim" <<'EOF'
import sys, zipfile, io
src = open(sys.argv[1], "rb").read()
out = io.BytesIO()
with zipfile.ZipFile(io.BytesIO(src)) as zi, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zo:
    for info in zi.infolist():
        data = zi.read(info)
        if info.filename.endswith("/b.go"):
            data = data.replace(b"b v1.0.0", b"b EVIL!!")
        zo.writestr(info, data)
open(sys.argv[1] + ".new", "wb").write(out.getvalue())
EOF
mv "$victim.new" "$victim"
sleep 2
tampered=$(sha256sum "$victim" | cut -d' ' -f1)
out=$(run "$GO" 'curl -s -o t.zip -w "%{http_code}" "$GOPROXY/'$B'/@v/v1.0.0.zip"; echo " $(head -c 2 t.zip)"' 2>&1)
check "a tampered zip: the client gets 502 and no byte of the zip ($out)" -- test "$out" = "502 cr"
check "audited: integrity_mismatch with package, version and go.sum's h1" -- \
	audit_has "$AUDIT" "select(.event==\"decision\" and .action==\"deny\" and .reason_code==\"integrity_mismatch\" and .package==\"$B\" and .version==\"v1.0.0\" and .integrity==\"$B_ZIP\")"
out=$("$CTL" --control "$T/ctl.sock" cache ls --json 2>&1)
echo "$out" | jq -e --arg d "sha256:$tampered" 'map(select(.digest==$d)) | length == 0' >/dev/null
ok $? "the cache holds nothing of it ($(echo "$out" | jq length 2>/dev/null) objects)"
out=$(run "$GO" 'fresh; go mod download 2>&1' 2>&1)
rc=$?
[ $rc -ne 0 ]
ok $? "go mod download fails while the upstream serves the tampered zip ($(echo "$out" | grep -m1 -i 'v1.0.0' | head -c 200))"
cp "$T/victim.orig" "$victim.new" && mv "$victim.new" "$victim"
# lighttpd keeps a file's size in its stat cache for about a second: a request in that second would be cut.
sleep 2

# A go.mod tampered with on the upstream: refused whole, the stored copy replaced by the new one is hashed too.
modfile=$TREE/b/@v/v1.0.0.mod
cp "$modfile" "$T/mod.orig"
{ cat "$T/mod.orig"; echo 'require evil.test/x v1.0.0'; } >"$modfile.new" && mv "$modfile.new" "$modfile"
sleep 2
out=$(run "$GO" 'curl -s -w " %{http_code}" "$GOPROXY/'$B'/@v/v1.0.0.mod"' 2>&1)
out=${out//$'\n'/}
check "a tampered go.mod: 502, none of it served ($out)" -- grep -q '^crgw: integrity_mismatch: .* 502$' <<<"$out"
check "audited: integrity_mismatch with go.sum's /go.mod h1" -- \
	audit_has "$AUDIT" "select(.event==\"decision\" and .action==\"deny\" and .reason_code==\"integrity_mismatch\" and .package==\"$B\" and .integrity==\"$B_MOD\")"
cp "$T/mod.orig" "$modfile.new" && mv "$modfile.new" "$modfile"
sleep 2

# ---- offline, from the cache -------------------------------------------------------------------------------
out=$(run "$GO" 'fresh; go mod download 2>&1' 2>&1)
ok $? "go mod download with the upstream restored fills the cache again ($out)"
gw_stop >/dev/null 2>&1
read -r gopid _ <"$TN_STATE/pids/goproxy.pid"
kill -STOP "$gopid"
testnet_on_exit "kill -CONT $gopid 2>/dev/null"
write_config true
before=$(wc -l <"$AUDIT")
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not start offline"; exit 1; }
rm -f "$GO/hello"
out=$(run "$GO" 'fresh; rm -rf "$GOCACHE"; go mod download 2>&1 && go build -o hello . 2>&1 && ./hello 2>&1' 2>&1)
ok $? "offline (cache.offline, goproxy.test stopped): go mod download and go build succeed (${out//$'\n'/ })"
hits=$(tail -n +$((before + 1)) "$AUDIT" | jq -s '[.[] | select(.event=="connection_end" and .registry=="go" and .cache=="hit")] | length')
check "both zips of the offline download were cache hits ($hits)" -- test "$hits" -ge 2
out=$(run "$WARN" 'curl -s -o /dev/null -w "%{http_code}" "$GOPROXY/'$A'/@v/v1.1.0.zip"' 2>&1)
check "offline, an unlisted zip (never cached) is refused with 503 ($out)" -- test "$out" = 503
check "audited: upstream_unreachable (offline) with package and version" -- \
	audit_has "$AUDIT" "select(.event==\"decision\" and .action==\"deny\" and .reason_code==\"upstream_unreachable\" and .package==\"$A\" and .version==\"v1.1.0\" and (.detail|test(\"offline\")))"
kill -CONT "$gopid"

# Every restart above stopped a crgw; this one is checked: under the sanitizers a leak or undefined behaviour
# makes it fail.
gw_stop
ok $? "crgw stopped cleanly"

tap_done
