#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the built crgw-ctl as a user would and checks output, JSON and exit codes. TAP output.
# usage: cli.sh CRGW_CTL EXAMPLES_DIR
set -uo pipefail
ctl=$(realpath "$1")
examples=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0 failed=0

result() { # result OK DESCRIPTION
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failed=$((failed + 1))
		sed 's/^/#   /' "$tmp/out" "$tmp/err" 2>/dev/null | head -20
	fi
}

run() { # run ARGS...: captures stdout, stderr and the exit code
	"$ctl" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
}

expect_rc() { # expect_rc CODE DESCRIPTION ARGS...
	local want=$1 what=$2
	shift 2
	run "$@"
	[ "$rc" = "$want" ]
	result $? "$what (exit $rc, want $want)"
}

# expect_json CODE JQ-FILTER DESCRIPTION ARGS...: exit code and a jq test on stdout
expect_json() {
	local want=$1 filter=$2 what=$3
	shift 3
	run "$@"
	[ "$rc" = "$want" ] && jq -e "$filter" "$tmp/out" >/dev/null 2>&1
	result $? "$what"
}

policy() { # policy DIR: writes stdin to DIR/cleanroom.yaml
	mkdir -p "$1"
	cat >"$1/cleanroom.yaml"
}

# ---- help and usage
expect_rc 0 "--help succeeds" --help
grep -q "Exit codes" "$tmp/out" && grep -q "2  invalid policy" "$tmp/out"
result $? "--help documents the exit codes"
expect_rc 2 "no command is a usage error"
expect_rc 2 "unknown command is a usage error" frobnicate
expect_rc 2 "unknown policy subcommand" policy frobnicate
expect_rc 2 "unknown option" policy validate --frobnicate "$examples"
expect_rc 2 "option of another subcommand" policy validate --policy x "$examples"
expect_rc 2 "explain needs a host" policy explain --policy "$examples"
# Every command and subcommand answers --help with its usage on stdout and exit 0.
for cmd in "run" "exec" "cp" "sandbox" "sandbox diff" "audit" "audit tail" "stats" "doctor" "policy" \
	"policy validate" "policy compile" "policy explain" "cache" "cache ls" "cache stats" "cache gc" "cache verify" \
	"cache warm" "policy diff" "policy push" "policy get" "policy ls" "policy learn" "reload"; do
	# shellcheck disable=SC2086
	run $cmd --help
	[ "$rc" = 0 ] && grep -qi "usage" "$tmp/out"
	result $? "$cmd --help prints its usage and exits 0 (exit $rc)"
done
expect_rc 2 "unknown cache subcommand" cache frobnicate
grep -q "^crgw-ctl cache: unknown command 'frobnicate'" "$tmp/err"
result $? "... says which"
expect_rc 2 "cache without a subcommand" cache
grep -q "^crgw-ctl cache: a command is needed" "$tmp/err"
result $? "... says so"
expect_rc 2 "cache with an option before its subcommand" cache --json stats
grep -q "^crgw-ctl cache: options come after the command ('--json')" "$tmp/err"
result $? "... says where options go"
expect_rc 2 "cache option of another subcommand" cache ls --target 0
grep -q "^crgw-ctl cache ls: --target is for cache gc only" "$tmp/err"
result $? "... says which subcommand it is for"
expect_rc 2 "cache stats with --limit" cache stats --limit 5
grep -q "^crgw-ctl cache stats: --limit is for cache ls only" "$tmp/err"
result $? "... says which subcommand it is for"
expect_rc 2 "cache ls with a bad --limit" cache ls --limit many
expect_rc 2 "cache gc with an extra argument" cache gc now
grep -q "^crgw-ctl cache gc: unexpected argument 'now'" "$tmp/err"
result $? "... names the argument"
run cache gc --target '5"}'
[ "$rc" = 2 ] && grep -q "^crgw-ctl: --target wants a size" "$tmp/err"
result $? "cache gc --target that is no size is refused before the gateway is asked (exit $rc)"
CRGW_CONTROL=$tmp/nobody.sock expect_rc 2 "cache stats without a gateway" cache stats
grep -q "cannot reach the gateway at $tmp/nobody.sock" "$tmp/err"
result $? "... says the gateway cannot be reached"
CRGW_CONTROL=$tmp/nobody.sock expect_rc 2 "cache verify without a gateway exits 2, not 1" cache verify
expect_rc 2 "cache warm with an extra argument" cache warm now
expect_rc 2 "cache warm with a bad --jobs" cache warm --jobs 0
expect_rc 2 "cache warm without a policy" cache warm --policy "$tmp/nowhere"
policy "$tmp/warm-noreg" <<'EOF'
version: 1
sandbox:
  network:
    default: deny
EOF
CRGW_CONTROL=$tmp/nobody.sock expect_rc 2 "cache warm of a policy without registries" cache warm --policy "$tmp/warm-noreg"
grep -q "names no artifact" "$tmp/err"
result $? "... says the policy names no artifact to fetch"
run run --help
grep -q -- "--workspace-mode" "$tmp/out" && grep -q -- "--env-file" "$tmp/out" && grep -q -- "--memory" "$tmp/out"
result $? "run --help lists the workspace, environment and limit options"
expect_rc 125 "run with an unknown workspace mode" run --workspace-mode everything -- true
expect_rc 125 "run with a relative -w" run -w relative -- true
expect_rc 125 "run with a bad -e" run -e "=x" -- true
expect_rc 125 "run with a bad --pids" run --pids -3 -- true
expect_rc 125 "run without a command" run --rm
run run --run-id "$(printf '\377\376')" -- true
[ "$rc" = 125 ] && grep -q -- "--run-id: at most 63 bytes of UTF-8" "$tmp/err"
result $? "run with a --run-id that is not UTF-8 is refused (the audit could not carry it) (exit $rc)"
# Limits and names are refused as the gateway would refuse them, before any sandbox is begun (no gateway
# runs here: an accepted value gets as far as the policy, and fails there with another message).
for bad in "--memory 5Q" "--memory 15M" "--memory -1G" "--memory 99999999999T" "--cpus -1" "--cpus 0.001" \
	"--cpus 1.2345" "--cpus .5" "--pids 7" "--pids +9" "--pids 99999999999999999999" "--name a+b" \
	"--name sbx-12" "--name .hidden" "--name $(printf 'n%.0s' $(seq 64))" "--run-id $(printf 'r%.0s' $(seq 64))"; do
	# shellcheck disable=SC2086 # each case is an option and its value
	run run $bad -- true
	[ "$rc" = 125 ] && grep -q -- "^crgw-ctl: ${bad%% *}: " "$tmp/err" && ! grep -q "policy" "$tmp/err"
	result $? "run ${bad:0:40} is refused at once (exit $rc: $(head -c 120 "$tmp/err"))"
done
run run --memory 16M --cpus 0.01 --pids 8 --name ok.name_-1 --policy "$tmp/none" -- true
[ "$rc" = 125 ] && ! grep -q -- "--memory\|--cpus\|--pids\|--name" "$tmp/err"
result $? "run with the least limits and a usable name gets past its flags (exit $rc: $(head -c 120 "$tmp/err"))"
expect_rc 125 "exec without a command" exec sbx-0000000000
expect_rc 2 "cp without a sandbox path" cp nothing "$tmp/x"

# ---- the example policy
expect_rc 0 "example policy validates" policy validate "$examples"
grep -q "valid (sha256:" "$tmp/out"
result $? "validate prints the policy hash"
expect_json 0 '.valid == true and (.policy_hash | test("^sha256:[0-9a-f]{64}$")) and .errors == []' \
	"validate --json reports valid with a hash" policy validate --json "$examples"
hash=$(jq -r .policy_hash "$tmp/out")

run policy compile --json "$examples"
cp "$tmp/out" "$tmp/compiled1.json"
run policy compile --json "$examples"
cmp -s "$tmp/out" "$tmp/compiled1.json" && [ "$(wc -l <"$tmp/out")" = 1 ]
result $? "compile --json is one canonical line, identical on every run"
[ "$(jq -r .policy_hash "$tmp/compiled1.json")" = "$hash" ]
result $? "compile and validate agree on the hash"
jq -e '.network.rules | length == 7' "$tmp/compiled1.json" >/dev/null && \
	jq -e '[.registries.npm.artifacts[].name] == ["@scope/util", "left-pad"]' "$tmp/compiled1.json" >/dev/null && \
	jq -e '.registries.pip.artifacts | length == 2' "$tmp/compiled1.json" >/dev/null
result $? "compiled policy holds the rules and both lockfiles' artifacts"
run policy compile "$examples"
jq -e . "$tmp/out" >/dev/null && [ "$(wc -l <"$tmp/out")" -gt 10 ]
result $? "compile without --json pretty-prints the same document"
expect_rc 0 "compile -o writes a file" policy compile -o "$tmp/compiled.json" "$examples"
cmp -s "$tmp/compiled.json" "$tmp/compiled1.json"
result $? "compile -o writes the canonical bytes"
expect_rc 0 "compile takes its options after the policy too" policy compile "$examples" -o "$tmp/compiled2.json"
cmp -s "$tmp/compiled2.json" "$tmp/compiled1.json"
result $? "compile DIR -o FILE writes the same canonical bytes"
expect_json 0 '.action == "allow" and .rule == "sandbox.network.allow[0]"' \
	"explain takes --policy and --json after the host, as diff takes its options after the policies" \
	policy explain api.github.com --policy "$examples" --json
expect_rc 2 "after --, an option is an argument (explain: unexpected argument)" \
	policy explain --policy "$examples" -- api.github.com --json
expect_rc 0 "source repository and commit are recorded" policy compile --json --repository example/repo \
	--commit 0123456789abcdef "$examples"
jq -e '.source == {"path": "cleanroom.yaml", "repository": "example/repo", "commit": "0123456789abcdef"}' \
	"$tmp/out" >/dev/null
result $? "compiled source names path, repository and commit"
run policy compile --json --repository "$(printf '\377\376')" "$examples"
[ "$rc" = 2 ] && grep -q 'source.repository: .*not UTF-8' "$tmp/err"
result $? "a --repository that is not UTF-8 is refused as such, not as 'out of memory' (exit $rc)"
run policy compile --json --commit "$(printf '\377\376')" "$examples"
[ "$rc" = 2 ] && grep -q 'source.commit: not a commit id' "$tmp/err" && ! grep -q 'memory' "$tmp/err"
result $? "a --commit that is not UTF-8 is not a commit id (exit $rc)"

# ---- explain
ex() { expect_json "$@"; }
ex 0 '.action == "allow" and .reason_code == null and .rule == "sandbox.network.allow[0]" and .port == 443 and .host == "api.github.com"' \
	"explain allow by exact rule" policy explain --json --policy "$examples" api.github.com
ex 1 '.action == "deny" and .reason_code == "host_not_allowed" and .rule == "sandbox.network.default"' \
	"explain deny by default" policy explain --json --policy "$examples" evil.example
ex 1 '.reason_code == "port_not_allowed" and .port == 80' \
	"explain port_not_allowed" policy explain --json --policy "$examples" api.github.com:80
ex 0 '.rule == "sandbox.network.allow[1]" and .port == 80' \
	"one-label wildcard with default ports" policy explain --json --policy "$examples" npm.pkgs.example:80
ex 1 '.reason_code == "host_not_allowed"' \
	"one-label wildcard does not match two labels" policy explain --json --policy "$examples" a.b.pkgs.example
ex 1 '.reason_code == "host_not_allowed"' \
	"wildcard never matches the apex" policy explain --json --policy "$examples" pkgs.example
ex 0 '.rule == "sandbox.network.allow[2]"' \
	"two-star wildcard matches deep names" policy explain --json --policy "$examples" a.b.c.cdn.example
ex 1 '.reason_code == "host_not_allowed" and .rule == "sandbox.network.deny[1]"' \
	"deny beats wildcard allow" policy explain --json --policy "$examples" tracker.pkgs.example
ex 0 '.host == "xn--bcher-kva.example" and .action == "allow"' \
	"Unicode names are normalized to punycode" policy explain --json --policy "$examples" BÜCHER.example
ex 0 '.host == "xn--bcher-kva.example"' \
	"punycode query matches too" policy explain --json --policy "$examples" xn--bcher-kva.example.
ex 0 '.host == "10.20.3.4" and .rule == "sandbox.network.allow[3]"' \
	"CIDR rule admits an IP literal" policy explain --json --policy "$examples" 10.20.3.4:5432
ex 0 '.host == "10.20.3.4" and .host_kind == "ipv4"' \
	"IPv4-mapped IPv6 is evaluated as IPv4" policy explain --json --policy "$examples" '[::ffff:10.20.3.4]:5432'
ex 1 '.reason_code == "ip_literal_not_allowed" and .host == "2001:db8::1"' \
	"IPv6 literal with no IP rule" policy explain --json --policy "$examples" '[2001:DB8::1]:443'
ex 1 '.reason_code == "ip_literal_not_allowed" and .rule == "sandbox.network.deny[0]"' \
	"metadata address denied by the deny rule" policy explain --json --policy "$examples" 169.254.169.254:80
ex 1 '.reason_code == "private_address_blocked" and .rule == "gateway.special_addresses"' \
	"loopback is private_address_blocked" policy explain --json --policy "$examples" 127.0.0.2:5432
# 127.0.0.1 and ::1 are on every gateway host's lo, and the gateway refuses its own addresses: a rule
# that opens the loopback range does not open them (e2e-explain compares this with a real gateway).
policy "$tmp/lo" <<'Y'
version: 1
sandbox: { network: { default: deny, allow: [{ host: 127.0.0.0/8, ports: [8080] }, { host: "::1", ports: [8080] }] } }
Y
ex 0 '.action == "allow" and .rule == "sandbox.network.allow[0]"' \
	"a rule for 127.0.0.0/8 opens 127.0.0.2" policy explain --json --policy "$tmp/lo" 127.0.0.2:8080
for target in 127.0.0.1:8080 '[::1]:8080' '[::ffff:127.0.0.1]:8080'; do
	ex 1 '.reason_code == "private_address_blocked" and .rule == "gateway.blocked_ranges"' \
		"explain $target: the gateway's own address, refused whatever the rules say" \
		policy explain --json --policy "$tmp/lo" "$target"
done
ex 1 '.reason_code == "private_address_blocked" and .rule == "gateway.blocked_ranges"' \
	"--blocked ranges are refused whatever the policy says" \
	policy explain --json --policy "$examples" --blocked 10.20.0.0/16 10.20.3.4:5432
# Hosts the sandbox reaches through mediation: explain's decision is a direct connection's, and it names
# the service that reaches the host anyway.
ex 1 '.action == "deny" and .mediation == [{"service": "git", "rule": "git.hosts", "push": false}]' \
	"explain names git.hosts for a host only mediation reaches" policy explain --json --policy "$examples" github.com
run policy explain --policy "$examples" github.com
[ "$rc" = 1 ] && grep -q '^  mediation: git.hosts: git in the sandbox clones and fetches https://github.com/' "$tmp/out"
result $? "... in its text too (exit $rc)"
ex 0 '.mediation == [{"service": "registry", "registry": "npm", "rule": "registries.npm.allowed_hosts", "lockfile": "deny_unknown"}]' \
	"explain names an enabled registry's allowed host and its lockfile mode" policy explain --json --policy "$examples" npm.pkgs.example
ex 0 '.mediation[0].registry == "pip" and .mediation[0].lockfile == "warn"' \
	"... pip's in warn mode" policy explain --json --policy "$examples" files.pkgs.example
ex 1 '.mediation == []' "explain names no mediation for other hosts" policy explain --json --policy "$examples" evil.example
expect_rc 2 "bad --blocked range" policy explain --policy "$examples" --blocked 10.20.0.1/16 x.example
run policy explain --policy "$examples" --blocked 10.20.0.1/16 x.example
grep -q "^crgw-ctl: --blocked '10.20.0.1/16': address has bits set beyond the prefix length" "$tmp/err"
result $? "a --blocked range with host bits set says so"
run policy diff "$examples" "$examples" --blocked x.example
[ "$rc" = 2 ] && grep -q "^crgw-ctl: --blocked 'x.example': a name, not an address" "$tmp/err"
result $? "policy diff --blocked with a name says it is no address (exit $rc)"
ex 1 '.host == "[::1]junk" and .reason_code == "request_invalid"' \
	"explain shows an IPv6 literal with trailing text whole" policy explain --json --policy "$examples" '[::1]junk'
expect_rc 2 "stats --json --prometheus are refused as conflicting" stats --json --prometheus
run --control '' stats
[ "$rc" = 2 ] && grep -q "^crgw-ctl: --control needs a path" "$tmp/err"
result $? "--control '' is refused (exit $rc)"
run --control "/tmp/$(printf 's%.0s' $(seq 110))" stats
[ "$rc" = 2 ] && grep -q "longer than a UNIX socket's path can be (107 bytes at most)" "$tmp/err"
result $? "a control path too long for a UNIX socket says so (exit $rc)"
expect_rc 125 "run --control without a path exits 125, as run's usage errors do" run --control
expect_rc 2 "audit tail with an extra word is a usage error" audit tail extra
run run --env-file "$tmp" -- true
[ "$rc" = 125 ] && grep -q -- "--env-file $tmp: not a regular file" "$tmp/err"
result $? "--env-file of a directory says it is not a regular file (exit $rc)"
run run --run-id "$(printf 'job\033[2J')" -- true
[ "$rc" = 125 ] && grep -q -- "--run-id: at most 63 bytes of UTF-8, no control characters" "$tmp/err"
result $? "a run id with a control character is refused (exit $rc)"
# Numeric spellings that are not a dotted quad: the gateway refuses such a target as request_invalid
# before any rule (CONNECT, URL, Host: 400), so explain says deny with that reason, not a usage error.
for target in 0177.0.0.1:443 0x7f000001 2130706433 127.1 0x7f.1; do
	ex 1 '.action == "deny" and .reason_code == "request_invalid" and .rule == null and .host_kind == "invalid" and (.explanation | test("canonical dotted-quad"))' \
		"explain $target: deny request_invalid, as the proxies answer it" policy explain --json --policy "$examples" "$target"
done
ex 1 '.host == "0177.0.0.1" and .port == 443' "... naming the host as given and the port" \
	policy explain --json --policy "$examples" 0177.0.0.1:443
run policy explain --policy "$examples" 0x7f000001
[ "$rc" = 1 ] && grep -q "^deny 0x7f000001:443" "$tmp/out" && grep -q "reason: request_invalid" "$tmp/out" &&
	grep -q "rule:   none" "$tmp/out" && grep -q "canonical dotted-quad" "$tmp/out"
result $? "explain human output for an invalid host says deny, request_invalid and why (exit $rc)"
ex 1 '.reason_code == "request_invalid" and .host == "exa mple.com"' \
	"a host with a stray character is request_invalid too" policy explain --json --policy "$examples" 'exa mple.com'
expect_rc 2 "an invalid host still needs a valid policy" policy explain --policy "$tmp/nonexistent" 0177.0.0.1
expect_rc 2 "an empty destination is a usage error" policy explain --policy "$examples" ''
expect_rc 2 "port 0 is refused" policy explain --policy "$examples" api.github.com:0
run policy explain --policy "$examples" https://api.github.com/repos
[ "$rc" = 2 ] && grep -q "a URL; give HOST\[:PORT\]" "$tmp/err" && ! grep -q "port must be" "$tmp/err"
result $? "explain of a URL says it is one, not that its port is bad (exit $rc)"
expect_rc 2 "port 65536 is refused" policy explain --policy "$examples" api.github.com:65536
expect_rc 2 "a bad port is a usage error even after an invalid host" policy explain --policy "$examples" 0177.0.0.1:99999
# IPv6 addresses that carry an IPv4 address are checked as that address too (docs/policy.md).
ex 1 '.reason_code == "private_address_blocked" and .rule == "gateway.special_addresses" and .embedded_ipv4 == {"form": "nat64", "address": "127.0.0.2"}' \
	"a NAT64 address of loopback is private_address_blocked, and explain names the IPv4 address" \
	policy explain --json --policy "$examples" '[64:ff9b::127.0.0.2]:443'
ex 1 '.reason_code == "private_address_blocked" and .rule == "gateway.blocked_ranges" and .embedded_ipv4.address == "127.0.0.1"' \
	"a NAT64 address of 127.0.0.1 is the gateway's own address" \
	policy explain --json --policy "$examples" '[64:ff9b::127.0.0.1]:443'
ex 1 '.reason_code == "private_address_blocked" and .embedded_ipv4.form == "6to4"' \
	"a 6to4 address of loopback is private_address_blocked" policy explain --json --policy "$examples" '[2002:7f00:1::1]'
ex 1 '.reason_code == "private_address_blocked" and .embedded_ipv4 == {"form": "teredo", "address": "127.0.0.1"}' \
	"a Teredo address whose client is loopback is private_address_blocked" \
	policy explain --json --policy "$examples" '[2001:0:cb00:7101::80ff:fffe]'
ex 1 '.reason_code == "ip_literal_not_allowed" and .rule == "sandbox.network.deny[0]" and .embedded_ipv4.address == "169.254.169.254"' \
	"a NAT64 address of the metadata service meets its deny rule" policy explain --json --policy "$examples" '[64:ff9b::a9fe:a9fe]:80'
ex 1 '.reason_code == "private_address_blocked" and .host_kind == "ipv4" and (has("embedded_ipv4") | not)' \
	"an IPv4-mapped address is the IPv4 address itself" policy explain --json --policy "$examples" '[::ffff:127.0.0.1]'
run policy explain --policy "$examples" '[64:ff9b::127.0.0.1]'
[ "$rc" = 1 ] && grep -q "carries: 127.0.0.1 (nat64)" "$tmp/out"
result $? "explain human output names the IPv4 address an IPv6 address carries"
run policy explain --policy "$examples" api.github.com:80
[ "$rc" = 1 ] && grep -q "reason: port_not_allowed" "$tmp/out" && grep -q "rule:   sandbox.network.default" "$tmp/out"
result $? "explain human output names reason and rule"
ex 0 '.action == "allow" and .policy_hash == "'"$hash"'"' \
	"explain --compiled uses a compiled policy" policy explain --json --compiled "$tmp/compiled.json" api.github.com
sed 's/api.github.com/evil.github.com/' "$tmp/compiled.json" >"$tmp/tampered.json"
expect_rc 2 "explain --compiled refuses a tampered document" policy explain --compiled "$tmp/tampered.json" x.example
grep -q "policy_hash does not match" "$tmp/err"
result $? "tampering is reported as a hash mismatch"
# A gateway takes at most 8 MiB of compiled policy: a larger file is refused before it is read into memory.
{ printf '{'; head -c $((9 << 20)) /dev/zero | tr '\0' ' '; } >"$tmp/huge.json"
for cmd in "policy explain --compiled $tmp/huge.json x.example" "policy push $tmp/huge.json"; do
	# shellcheck disable=SC2086 # the command's words
	run $cmd
	[ "$rc" = 2 ] && grep -q "larger than 8 MiB, the most a gateway takes" "$tmp/err"
	result $? "${cmd%% /*} of a 9 MiB file is refused by its size (exit $rc)"
done
# reseal JQ-EDIT: the compiled document edited and given the policy_hash of its new content (the canonical
# form is jq's sorted, compact, ASCII output), so that what the loader refuses is the content, not the hash.
reseal() {
	jq -cSa "$1 | del(.policy_hash)" "$tmp/compiled.json" | tr -d '\n' >"$tmp/body"
	jq -cSa --arg h "sha256:$(sha256sum <"$tmp/body" | cut -d' ' -f1)" '.policy_hash = $h' "$tmp/body" \
		>"$tmp/resealed.json"
}
reseal .
expect_rc 1 "explain --compiled loads a resealed, unchanged document" \
	policy explain --compiled "$tmp/resealed.json" x.com
reseal '.network.rules[0].host = "*.com"'
expect_rc 2 "explain --compiled refuses a resealed allow rule for *.com" \
	policy explain --compiled "$tmp/resealed.json" x.com
grep -q "network.rules\[0\].host: an allow wildcard needs at least two labels" "$tmp/err"
result $? "the refusal names the rule's host"

# ---- finding the policy
policy "$tmp/bk/.buildkite" <<'Y'
version: 1
sandbox: { network: { default: deny, allow: [ { host: bk.example } ] } }
Y
expect_json 0 '.policy | endswith(".buildkite/cleanroom.yaml")' ".buildkite/cleanroom.yaml is found" \
	policy validate --json "$tmp/bk"
policy "$tmp/bk" <<'Y'
version: 1
sandbox: { network: { default: deny, allow: [ { host: root.example } ] } }
Y
run policy validate "$tmp/bk"
[ "$rc" = 0 ] && grep -q "both cleanroom.yaml and .buildkite/cleanroom.yaml" "$tmp/err" && \
	grep -q "$tmp/bk/cleanroom.yaml: valid" "$tmp/out"
result $? "both files: the root one wins and a warning names the ignored one"
expect_json 0 '.warnings[0].message | test("ignoring .buildkite/cleanroom.yaml")' "the warning is in --json too" \
	policy validate --json "$tmp/bk"
ex 0 '.rule == "sandbox.network.allow[0]"' "explain uses the root policy" \
	policy explain --json --policy "$tmp/bk" root.example
expect_rc 2 "a directory without a policy" policy validate "$tmp"
expect_rc 2 "a missing path" policy validate "$tmp/nope"
( cd "$tmp/bk" && "$ctl" policy validate >/dev/null 2>&1 )
result $? "validate defaults to the current directory"

# ---- invalid policies
policy "$tmp/bad" <<'Y'
version: 1
sandbox:
  network:
    default: deny
    allow:
      - host: a.example
      - host: b.example
      - host: c.example
        ports: [443, 70000]
Y
run policy validate "$tmp/bad"
[ "$rc" = 2 ] && grep -q "cleanroom.yaml:9:22: policy_invalid: sandbox.network.allow\[2\].ports\[1\]: " "$tmp/err"
result $? "invalid port: FILE:LINE:COLUMN: code: dotted path"
expect_json 2 '.valid == false and .errors[0].code == "policy_invalid" and .errors[0].path == "sandbox.network.allow[2].ports[1]" and .errors[0].line == 9 and .errors[0].column == 22' \
	"validate --json gives code, path, line and column" policy validate --json "$tmp/bad"
expect_rc 2 "compile refuses an invalid policy" policy compile "$tmp/bad"
expect_rc 2 "explain refuses an invalid policy" policy explain --policy "$tmp/bad" a.example

printf 'version: 1\nsandbox: { network: { default: allow } }\n' | policy "$tmp/open"
expect_rc 2 "default: allow is refused" policy validate "$tmp/open"
expect_rc 0 "default: allow with --allow-default-allow" policy validate --allow-default-allow "$tmp/open"

mkdir -p "$tmp/huge"
{ echo "version: 1"; head -c 2000000 /dev/zero | tr '\0' '#'; } >"$tmp/huge/cleanroom.yaml"
run policy validate "$tmp/huge"
[ "$rc" = 2 ] && grep -q "larger than" "$tmp/err"
result $? "a 2 MB file is refused with a clear error"
printf 'version: 1\nsandbox:\n  network:\n    default: de\0ny\n' >"$tmp/huge/cleanroom.yaml"
run policy validate "$tmp/huge"
[ "$rc" = 2 ] && grep -q "control characters" "$tmp/err"
result $? "a NUL byte is refused with a clear error"
printf 'version: 1\nproject: { name: "\xff\xfe" }\n' >"$tmp/huge/cleanroom.yaml"
run policy validate "$tmp/huge"
[ "$rc" = 2 ] && grep -qi "utf-8" "$tmp/err"
result $? "invalid UTF-8 is refused with a clear error"
{ printf 'version: 1\nx: '; head -c 50000 /dev/zero | tr '\0' '['; } >"$tmp/huge/cleanroom.yaml"
run policy validate "$tmp/huge"
[ "$rc" = 2 ] && grep -q "nesting deeper" "$tmp/err"
result $? "deep nesting is refused with a clear error"

# ---- a policy that cannot be read: the JSON answer has the shape of an invalid one
head -c 1100000 /dev/zero | tr '\0' 'a' >"$tmp/big.yaml"
run policy validate --json "$tmp/big.yaml"
[ "$rc" = 2 ] && jq -e '.valid == false and .policy_hash == null and .errors_total == 1 and
	(.errors[0].message | test("larger than 1048576 bytes")) and .warnings == []' "$tmp/out" >/dev/null
result $? "validate --json of an oversized file: one error in the usual shape, no raw errno text"
mkdir -p "$tmp/brk/.buildkite" "$tmp/brk/cleanroom.yaml"
printf 'version: 1\nsandbox: { network: { default: deny } }\n' >"$tmp/brk/.buildkite/cleanroom.yaml"
run policy validate "$tmp/brk"
[ "$rc" = 2 ] && grep -q "cleanroom.yaml: not a regular file" "$tmp/err"
result $? "a cleanroom.yaml that is a directory is an error, not a silent fall-back to .buildkite/"

# ---- an answer that cannot be written is no answer
printf 'version: 1\nsandbox: { network: { default: deny } }\n' >"$tmp/src.yaml"
"$ctl" policy compile "$tmp/src.yaml" >/dev/full 2>"$tmp/err"
rc=$?
[ "$rc" = 2 ] && grep -q "cannot write the output" "$tmp/err"
result $? "a compile whose output cannot be written exits 2 and says so (rc=$rc)"

# ---- --repository and --commit go into the hashed document: checked like the file's own strings
run policy compile --repository "https://ci:ghp_FAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKE@git.example.test/o/r" "$tmp/src.yaml"
[ "$rc" = 2 ] && grep -q "source.repository: looks like it holds a credential" "$tmp/err" && ! grep -q FAKEFAKE "$tmp/err" &&
	! grep -q ":0:0:" "$tmp/err"
result $? "a repository URL with a token is refused without showing it ($(head -1 "$tmp/err"))"
run policy compile --commit "main; rm -rf /" "$tmp/src.yaml"
[ "$rc" = 2 ] && grep -q "source.commit: not a commit id" "$tmp/err"
result $? "a commit that is no commit id is refused"
run policy compile --json --repository git.example.test/o/r --commit 0123abcd "$tmp/src.yaml"
[ "$rc" = 0 ] && jq -e '.source.repository == "git.example.test/o/r" and .source.commit == "0123abcd"' "$tmp/out" >/dev/null
result $? "a plain repository name and a short commit id are recorded"

# ---- release cooldown durations: any number of digits, at most 366 days
for age in 31622400s 527040m 8784h; do
	printf 'version: 1\nsandbox: { network: { default: deny } }\nregistries:\n  npm: { enable: true, allowed_hosts: [npm.example.test], min_release_age: %s }\n' "$age" >"$tmp/age.yaml"
	run policy compile --json "$tmp/age.yaml"
	[ "$rc" = 0 ] && jq -e '.registries.npm.min_release_age_seconds == 31622400' "$tmp/out" >/dev/null
	result $? "min_release_age $age is 366 days exactly"
done

# ---- lockfiles stay inside the repository
mkdir -p "$tmp/esc"
cat >"$tmp/esc/cleanroom.yaml" <<'Y'
version: 1
sandbox: { network: { default: deny } }
registries:
  pip:
    enable: true
    allowed_hosts: [pypi.pkgs.example]
    lockfile_enforcement: { enabled: true, lockfiles: [requirements.txt] }
Y
ln -s /etc/passwd "$tmp/esc/requirements.txt"
run policy validate "$tmp/esc"
[ "$rc" = 2 ] && grep -q "cannot read lockfile" "$tmp/err" && ! grep -q "root:" "$tmp/err"
result $? "a lockfile symlink out of the repository is refused and nothing of its target is shown"
grep -q "leads outside the repository" "$tmp/err"
result $? "and the error says why ($(tail -1 "$tmp/err"))"
rm "$tmp/esc/requirements.txt"
# A sandbox with a rw workspace can leave a FIFO where a lockfile belongs: nothing may wait on it.
mkfifo "$tmp/esc/requirements.txt"
"$ctl" policy validate "$tmp/esc" >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then kill "$pid"; rc=hung; else wait "$pid"; rc=$?; fi
[ "$rc" = 2 ] && grep -q "requirements.txt': not a regular file" "$tmp/err"
result $? "a FIFO as a lockfile is refused at once, not waited on (rc=$rc)"
rm "$tmp/esc/requirements.txt"
mkdir "$tmp/esc/requirements.txt"
run policy validate "$tmp/esc"
[ "$rc" = 2 ] && grep -q "requirements.txt': not a regular file" "$tmp/err"
result $? "so is a directory"
rmdir "$tmp/esc/requirements.txt"
run policy validate "$tmp/esc"
[ "$rc" = 2 ] && grep -q "cannot read lockfile 'requirements.txt'" "$tmp/err"
result $? "a missing lockfile fails the compile"
printf 'requests==2.31.0\n' >"$tmp/esc/requirements.txt"
run policy validate "$tmp/esc"
[ "$rc" = 2 ] && grep -q "requirements.txt:1:" "$tmp/err"
result $? "an unhashed requirement fails the compile with its line"

# ---- policy diff
policy "$tmp/d_old" <<'Y'
version: 1
sandbox:
  network:
    default: deny
    allow:
      - host: allowed.test
        ports: [80, 443]
      - host: other.test
        ports: [80]
git: { hosts: [git.test] }
Y
policy "$tmp/d_new" <<'Y'
version: 1
sandbox:
  network:
    default: deny
    allow:
      - host: other.test
        ports: [80, 443]
      - host: allowed.test
        ports: [443]
git: { hosts: [git.test, git2.test] }
Y
cat >"$tmp/d.log" <<'L'
{"ts":"2026-12-06T10:00:00.000001Z","schema":1,"event":"decision","service":"dns","dst_host":"allowed.test","action":"allow","reason_code":null}
{"ts":"2026-12-06T10:00:01.000001Z","schema":1,"event":"decision","service":"http","dst_host":"allowed.test","dst_ip":"203.0.113.10","dst_port":80,"action":"allow","reason_code":null}
{"ts":"2026-12-06T10:00:02.000001Z","schema":1,"event":"decision","service":"http","dst_host":"allowed.test","dst_ip":"203.0.113.10","dst_port":80,"action":"allow","reason_code":null}
{"ts":"2026-12-06T10:00:03.000001Z","schema":1,"event":"decision","service":"connect","dst_host":"other.test","dst_port":443,"action":"deny","reason_code":"port_not_allowed"}
{"ts":"2026-12-06T10:00:04.000001Z","event":"decision","service":"git","dst_host":"git2.test","operation":"fetch","action":"deny","reason_code":"host_not_allowed"}
{"ts":"2026-12-06T10:00:05.000001Z","schema":1,"event":"decision","service":"dns","dst_host":"x.test","action":"deny","reason_code":"rate_limited"}
{"ts":"2026-12-06T10:00:06.000001Z","schema":1,"event":"connection_end","service":"http","dst_host":"allowed.test","dst_port":80}
this line is not JSON
{"ts":"2026-12-06T10:00:07.000001Z","schema":1,"event":"decision","service":"tls","dst_host":"allowed.test","dst_port":443,"action":"allow","reason_code":null}
L
expect_json 1 '[.changes[] | "\(.change) \(.path)"] == ["changed sandbox.network.allow[1]", "changed sandbox.network.allow[0]", "added git.hosts"] and
	([.reach[] | "\(.now) \(.host):\(.port)"] == ["denied allowed.test:80", "allowed other.test:443"])' \
	"diff without a log: the rules that changed and the destinations that flip, exit 1" \
	policy diff --json "$tmp/d_old" "$tmp/d_new"
expect_json 1 '.against.lines == 9 and .against.replayed == 6 and .against.not_replayable == 2 and .against.unreadable == 1 and
	.against.flipped_events == 4 and
	([.against.flips[] | "\(.direction) \(.flow) \(.count) \(.services | join(","))"] ==
	 ["allowed_to_denied allowed.test:80 2 http", "denied_to_allowed git fetch git2.test 1 git", "denied_to_allowed other.test:443 1 connect"]) and
	(.against.flips[0] | .first_seen == "2026-12-06T10:00:01.000001Z" and .last_seen == "2026-12-06T10:00:02.000001Z" and
	 .old_rule == "sandbox.network.allow[0]" and .new_rule == "sandbox.network.default" and .new_reason_code == "port_not_allowed")' \
	"diff --against: the audited flows that flip, grouped, counted, with first and last seen and both rules" \
	policy diff --json "$tmp/d_old" "$tmp/d_new" --against "$tmp/d.log"
run policy diff "$tmp/d_old" "$tmp/d_new" --against - <"$tmp/d.log"
[ "$rc" = 1 ] && grep -q "allowed -> denied" "$tmp/out" && grep -q "allowed.test:80" "$tmp/out" && grep -q "denied -> allowed" "$tmp/out"
result $? "diff --against - reads the log from stdin and prints the flips for people (exit $rc)"
expect_json 0 '.changes == [] and .reach == [] and .against.flips == [] and .against.replayed == 6' \
	"a policy against itself over the same log: nothing flips, exit 0" \
	policy diff --json "$tmp/d_old" "$tmp/d_old" --against "$tmp/d.log"
"$ctl" policy compile --output "$tmp/d_new.json" "$tmp/d_new" >/dev/null 2>&1
expect_json 1 '.new.policy_hash == .old.policy_hash | not' "a compiled document works as a side" \
	policy diff --json "$tmp/d_old" "$tmp/d_new.json" --against "$tmp/d.log"
policy "$tmp/d_net16" <<'Y'
version: 1
sandbox: { network: { default: deny, allow: [{ host: 10.0.0.0/16, ports: [5432] }] } }
Y
policy "$tmp/d_net8" <<'Y'
version: 1
sandbox: { network: { default: deny, allow: [{ host: 10.0.0.0/8, ports: [5432] }] } }
Y
expect_json 1 '[.reach[] | "\(.now) \(.host):\(.port)"] == ["allowed 10.1.0.0-10.255.255.255:5432"]' \
	"diff: a network widened /16 -> /8 shows the range it opens in reach (its first address is the same)" \
	policy diff --json "$tmp/d_net16" "$tmp/d_net8"
expect_json 1 '[.reach[] | "\(.now) \(.host):\(.port)"] == ["allowed 10.2.0.0-10.255.255.255:5432"]' \
	"diff --blocked: a blocked range flips nothing in reach, the rest of the network does" \
	policy diff --json "$tmp/d_net16" "$tmp/d_net8" --blocked 10.1.0.0/16
# A compiled document is checked as the gateway loads it; a policy written in JSON is a policy file.
expect_json 0 '.valid == true and .compiled == true and .errors == []' \
	"validate takes a compiled document" policy validate --json "$tmp/d_new.json"
[ "$(jq -r .policy_hash "$tmp/out")" = "$(jq -r .policy_hash "$tmp/d_new.json")" ] && [ "$(jq -r .compiled "$tmp/out")" = true ]
result $? "... and names its hash and that it is compiled"
jq -c '.version = 2' "$tmp/d_new.json" >"$tmp/d_v2.json"
run policy validate "$tmp/d_v2.json"
[ "$rc" = 2 ] && grep -q "d_v2.json: policy_invalid: version: 2 is not supported" "$tmp/err" &&
	grep -q "invalid compiled policy (1 error)" "$tmp/out" && ! grep -q "unknown key" "$tmp/err"
result $? "validate of a compiled document the gateway would refuse: its one error, not YAML's (exit $rc)"
printf '{"version": 1, "sandbox": {"network": {"default": "deny", "allow": [{"host": "a.test"}]}}}\n' >"$tmp/json-policy.yaml"
expect_rc 0 "diff of a policy written in JSON compiles it (no 'format': not a compiled document)" \
	policy diff "$tmp/json-policy.yaml" "$tmp/json-policy.yaml"
# A FIFO named as a policy has no writer: refused at once, never waited on.
mkfifo "$tmp/policy.fifo"
for cmd in "policy diff $tmp/policy.fifo $tmp/d_old" "policy validate $tmp/policy.fifo" "policy push $tmp/policy.fifo"; do
	# shellcheck disable=SC2086 # the words of the command
	timeout 10 "$ctl" --control "$tmp/none.sock" $cmd >"$tmp/out" 2>"$tmp/err"
	rc=$?
	[ "$rc" = 2 ] && grep -q "not a" "$tmp/err"
	result $? "${cmd//$tmp\//}: a FIFO is refused at once, not opened and waited on (exit $rc)"
done
expect_rc 2 "diff needs two policies" policy diff "$tmp/d_old"
expect_rc 2 "diff with a missing log is an error" policy diff "$tmp/d_old" "$tmp/d_new" --against "$tmp/nope.log"
[ ! -s "$tmp/out" ]
result $? "... found before anything is printed: nothing on stdout"
expect_rc 2 "diff against a directory is an error" policy diff "$tmp/d_old" "$tmp/d_new" --against "$tmp"
[ ! -s "$tmp/out" ]
result $? "... and nothing on stdout either"
expect_rc 2 "diff with an invalid policy is an error" policy diff "$tmp/d_old" "$tmp/esc"
printf '{"event":"decision","service":"dns","dst_host":"%s"}\n' "$(head -c 100000 /dev/zero | tr '\0' a)" >"$tmp/long.log"
expect_json 0 '.against.unreadable == 1 and .against.lines == 1' "an over-long line is counted as unreadable, not fatal" \
	policy diff --json "$tmp/d_old" "$tmp/d_old" --against "$tmp/long.log"

# A registry flow that flips, with terminal escapes and line breaks in what the log says of it.
policy "$tmp/d_npm" <<'Y'
version: 1
sandbox: { network: { default: deny } }
registries:
  npm: { enable: true, allowed_hosts: [npm.test], fallback: allow }
Y
printf '%s\n' '{"ts":"2026-12-06T10:00:00.000001Z","event":"decision","service":"registry","registry":"npm","dst_host":"npm.test","package":"\u001b]0;x\u0007p\u2028","version":"1\u202e\u0085","action":"allow","reason_code":null}' \
	'{"ts":"2026-12-06T10:00:01\u001b[2JZ","event":"decision","service":"registry","registry":"npm","dst_host":"npm.test","package":"q","version":"1","action":"allow","reason_code":null}' >"$tmp/esc.log"
run policy diff "$tmp/d_npm" "$tmp/d_old" --against "$tmp/esc.log"
[ "$rc" = 1 ] && grep -q 'npm ?\]0;x?p?@1?? from npm.test' "$tmp/out" && ! grep -q "$(printf '\033\|\007\|\302\205\|\342\200')" "$tmp/out" &&
	grep -q ': 2 lines, 1 decisions replayed, 0 not replayable (not decided by the policy alone), 1 unreadable' "$tmp/out"
result $? "diff --against shows what the log says with escapes and line breaks as '?'; a bad ts is unreadable (exit $rc)"

# ---- policy learn, and the policy's say on learn mode
run policy learn "$tmp/d.log"
[ "$rc" = 0 ] && grep -q '"allowed.test"' "$tmp/out" && grep -q 'ports: \[80, 443\]' "$tmp/out" && grep -q 'learned' "$tmp/err" &&
	! grep -q 'other.test\|git2.test' "$tmp/out"
result $? "policy learn drafts the allowed flows of a log, not its denials (exit $rc)"
mkdir -p "$tmp/learned"
"$ctl" policy learn "$tmp/d.log" --into "$tmp/learned/cleanroom.yaml" >/dev/null 2>&1
expect_rc 0 "... and the draft written with --into validates" policy validate "$tmp/learned"
expect_rc 2 "policy learn of a log with no allowed flow is an error" policy learn --run-id nobody "$tmp/d.log"
expect_rc 2 "policy learn of a missing log is an error" policy learn "$tmp/nope.log"
expect_rc 2 "policy learn --collapse 1 is a usage error" policy learn --collapse 1 "$tmp/d.log"
expect_rc 2 "policy learn --collapse ' 3' (a blank before the number) is a usage error" policy learn --collapse " 3" "$tmp/d.log"
# --into renames its draft over the path: something there that is not a file is refused, and left as it was.
mkfifo "$tmp/into.fifo"
ln -s "$tmp/learned/cleanroom.yaml" "$tmp/into.link"
run policy learn "$tmp/d.log" --into "$tmp/into.fifo"
[ "$rc" = 2 ] && [ -p "$tmp/into.fifo" ] && grep -q 'not a regular file' "$tmp/err"
result $? "policy learn --into a FIFO is refused and the FIFO stays (exit $rc: $(head -c 120 "$tmp/err"))"
run policy learn "$tmp/d.log" --into "$tmp/into.link"
[ "$rc" = 2 ] && [ -L "$tmp/into.link" ]
result $? "policy learn --into a symbolic link is refused and the link stays (exit $rc)"
# A ts that would end the header's comment line (CR, NEL, U+2028, U+2029) and write YAML after it, or that
# carries ESC or DEL; each is the last time seen, which the header names.
ok='{"ts":"2026-01-01T00:00:00Z","event":"decision","service":"connect","dst_host":"h.example.test","dst_port":443,"action":"allow"}'
for brk in '\r' '\u0085' '\u2028' '\u2029' '\u001b[2J\u007f'; do
	bad="2026-01-02${brk}git: {hosts: [e.test]} #" # within the 39 bytes a ts may have
	printf '%s\n' "$ok" "${ok/2026-01-01T00:00:00Z/$bad}" >"$tmp/inj.log"
	mkdir -p "$tmp/inj"
	run policy learn "$tmp/inj.log" --into "$tmp/inj/cleanroom.yaml"
	[ "$rc" = 0 ] && grep -q '(2 lines; 0 of other sandboxes or runs, 0 denials not learned, 1 unreadable)' "$tmp/err" &&
		! grep -q "$(printf '\033\|\r\|\177')" "$tmp/err" "$tmp/inj/cleanroom.yaml"
	result $? "policy learn: a line whose ts is '2026-01-02${brk}git: ...' is unreadable (exit $rc)"
	expect_json 0 '.git.hosts == [] and ([.network.rules[].host] == ["h.example.test"])' \
		"... and what its ts held does not reach the draft" policy compile --json "$tmp/inj"
done
run policy learn "$tmp/inj.log" --run-id "$(printf 'r\rgit: {hosts: [evil2.test]}\033')"
[ "$rc" = 2 ] && grep -q 'no allowed flow of run r?git: {hosts: \[evil2.test\]}? in 2 lines' "$tmp/err"
result $? "policy learn shows a run id from the command line with its control characters as '?' (exit $rc)"
# The draft's header names the log and the run: neither may end the comment line early.
cp "$tmp/d.log" "$tmp/x$(printf '\r')git: {hosts: [evil.test]} #.log"
mkdir -p "$tmp/hdr"
run policy learn "$tmp/x$(printf '\r')git: {hosts: [evil.test]} #.log" --into "$tmp/hdr/cleanroom.yaml"
[ "$rc" = 0 ] && [ "$(grep -c '^#' "$tmp/hdr/cleanroom.yaml")" = 2 ] && ! grep -q "$(printf '\r')" "$tmp/hdr/cleanroom.yaml"
result $? "a line break in the log's path is written as '?' in the header (exit $rc)"
expect_json 0 '.git.hosts == []' "... and the draft keeps no git host of it" policy compile --json "$tmp/hdr"
# One line over the limit among three: learn counts as diff --against does.
{ head -1 "$tmp/d.log"; printf '{"x":"%s"}\n' "$(head -c 300000 /dev/zero | tr '\0' a)"; tail -1 "$tmp/d.log"; } >"$tmp/long3.log"
run policy learn "$tmp/long3.log"
[ "$rc" = 0 ] && grep -q '(3 lines; 0 of other sandboxes or runs, 0 denials not learned, 1 unreadable)' "$tmp/err"
result $? "policy learn counts an over-long line once, as a line and unreadable (exit $rc)"
expect_json 0 '.against.lines == 3 and .against.unreadable == 1' "... as diff --against counts it" \
	policy diff --json "$tmp/d_old" "$tmp/d_old" --against "$tmp/long3.log"
policy "$tmp/nolearn" <<'Y'
version: 1
sandbox:
  learn: false
  network: { default: deny }
Y
expect_json 0 '.sandbox.learn == false' "sandbox.learn: false is kept in the compiled policy" policy compile --json "$tmp/nolearn"
expect_json 0 '.sandbox | has("learn") | not' "a policy without sandbox.learn keeps its hash (no key written)" \
	policy compile --json "$tmp/d_old"
policy "$tmp/badlearn" <<'Y'
version: 1
sandbox:
  learn: sometimes
  network: { default: deny }
Y
run policy validate "$tmp/badlearn"
[ "$rc" = 2 ] && grep -q "sandbox.learn: expected true or false" "$tmp/err"
result $? "sandbox.learn takes true or false only"

# ---- sandbox references: anything but an id or a name is refused before a gateway is asked (none runs
# here, so an accepted reference would fail with "cannot reach the gateway"). A '#', '?', space or dot
# segment would make the URL name another sandbox or endpoint: curl drops a fragment, and
# `sandbox rm 'keep#x'` released keep. conformance/e2e/sandbox.sh checks the same against a gateway.
for ref in 'keep#x' 'keep?x' 'ke ep' '.' '..' ''; do
	for cmd in "sandbox rm" "sandbox show" "sandbox diff"; do
		# shellcheck disable=SC2086 # the command's words
		run $cmd "$ref"
		[ "$rc" = 2 ] && grep -q "not a sandbox id or name" "$tmp/err" && ! grep -q "cannot reach" "$tmp/err"
		result $? "$cmd '$ref' is refused at once (exit $rc)"
	done
done
run exec 'keep#x' -- true
[ "$rc" = 125 ] && grep -q "not a sandbox id or name" "$tmp/err" && ! grep -q "cannot reach" "$tmp/err"
result $? "exec 'keep#x' is refused at once (exit $rc)"
run sandbox rm keep
[ "$rc" = 2 ] && grep -q "cannot reach" "$tmp/err"
result $? "sandbox rm keep is a reference the gateway is asked about (exit $rc)"

# ---- image (docs/images.md): a store in $tmp, never the system's
export CRGW_IMAGE_STORE=$tmp/store
unset CRGW_GUEST
mkdir -p "$tmp/rootfs/etc" && echo hello >"$tmp/rootfs/etc/motd"
tar -C "$tmp/rootfs" -cf "$tmp/root.tar" .
images() { find "$CRGW_IMAGE_STORE/images" -mindepth 1 -maxdepth 1 | wc -l; }
blobs() { find "$CRGW_IMAGE_STORE/blobs/sha256" -type f | wc -l; }
tmpfiles() { find "$CRGW_IMAGE_STORE/tmp" -mindepth 1 | wc -l; }
expect_rc 0 "image import of a rootfs tarball" image import "$tmp/root.tar"
rid=$(cat "$tmp/out")
run image ls --store ''
[ "$rc" = 2 ] && grep -q -- "--store wants a directory" "$tmp/err" && [ ! -s "$tmp/out" ]
result $? "image ls --store '' is an error, not the system store (exit $rc)"
# A tarball's name is shown in ls: its escapes and line breaks must not reach the terminal raw.
evil="$tmp/esc$(printf '\033]0;PWNED\007\033[2J\nfake line').tar"
cp "$tmp/root.tar" "$evil" && echo x >"$tmp/rootfs/x" && tar -C "$tmp/rootfs" -cf "$evil" .
expect_rc 0 "image import of a tarball whose name holds escapes and a line break" image import "$evil"
run image ls
[ "$rc" = 0 ] && [ "$(wc -l <"$tmp/out")" = 3 ] && ! grep -q "$(printf '\033')" "$tmp/out" &&
	grep -q 'esc?\]0;PWNED??\[2J?fake line.tar' "$tmp/out"
result $? "image ls shows the controls of a reference as '?' (exit $rc)"
expect_json 0 "[.[].reference | select(test(\"fake line\"))] | length == 1" "... and --json keeps the path exact" image ls --json
# A refused import leaves nothing: no image, no blob, nothing in tmp/.
rm -rf "$CRGW_IMAGE_STORE" && mkdir -m 0700 "$tmp/store"
echo "not a tar" >"$tmp/notar"
run image import "$tmp/notar"
[ "$rc" = 2 ] && [ "$(images)" = 0 ] && [ "$(blobs)" = 0 ] && [ "$(tmpfiles)" = 0 ]
result $? "a refused import leaves no image, no blob and nothing in tmp/ (exit $rc)"
# A saved image (what skopeo copy oci-archive: or docker save writes) is not a root file system: refused,
# saying what it is and what to do; a root file system that holds such names is still one.
mkdir -p "$tmp/layout/blobs/sha256" "$tmp/dsave/0a1b2c" "$tmp/looks/etc"
echo '{"imageLayoutVersion":"1.0.0"}' >"$tmp/layout/oci-layout"
echo '{"schemaVersion":2,"manifests":[]}' >"$tmp/layout/index.json"
echo '{}' >"$tmp/layout/blobs/sha256/$(printf '{}\n' | sha256sum | cut -d' ' -f1)"
tar -C "$tmp/layout" -czf "$tmp/layout.tar.gz" .
run image import "$tmp/layout.tar.gz"
want="layout.tar.gz is an OCI image layout (oci-layout, index.json, blobs/), not a root file system tarball"
[ "$rc" = 2 ] && grep -qF "$want: push it to a registry" "$tmp/err" && grep -q "image pull it by digest" "$tmp/err" &&
	[ "$(images)" = 0 ] && [ "$(blobs)" = 0 ] && [ "$(tmpfiles)" = 0 ]
result $? "import of an OCI image layout tarball is refused, saying what it is, leaving nothing (exit $rc)"
echo '[{"Config":"0a1b2c.json","RepoTags":["x:1"],"Layers":["0a1b2c/layer.tar"]}]' >"$tmp/dsave/manifest.json"
echo '{}' >"$tmp/dsave/0a1b2c.json" && echo 1.0 >"$tmp/dsave/0a1b2c/VERSION"
tar -C "$tmp/rootfs" -cf "$tmp/dsave/0a1b2c/layer.tar" .
tar -C "$tmp/dsave" -cf "$tmp/dsave.tar" manifest.json 0a1b2c.json 0a1b2c
run image import "$tmp/dsave.tar"
want="dsave.tar is a docker save archive (manifest.json, */layer.tar), not a root file system tarball"
[ "$rc" = 2 ] && grep -qF "$want" "$tmp/err" && grep -q "docker export" "$tmp/err" &&
	[ "$(images)" = 0 ] && [ "$(blobs)" = 0 ] && [ "$(tmpfiles)" = 0 ]
result $? "import of a docker save tarball is refused, saying what it is, leaving nothing (exit $rc)"
cp "$tmp/layout/oci-layout" "$tmp/layout/index.json" "$tmp/dsave/manifest.json" "$tmp/looks/"
mkdir -p "$tmp/looks/d" "$tmp/looks/srv" && cp "$tmp/dsave/0a1b2c/layer.tar" "$tmp/looks/d/"
cp "$tmp/layout/index.json" "$tmp/looks/srv/" && echo hi >"$tmp/looks/etc/motd"
tar -C "$tmp/looks" -cf "$tmp/looks.tar" .
expect_rc 0 "a root file system with oci-layout, index.json, manifest.json and d/layer.tar at its top imports" \
	image import "$tmp/looks.tar"
run image rm "$(cat "$tmp/out")"
# The copy is bounded while it runs: /dev/zero stops at --max-bytes plus room for headers, not a full disk.
timeout 20 "$ctl" image import --max-bytes 10M /dev/zero >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" = 2 ] && grep -q "larger than" "$tmp/err" && [ "$(blobs)" = 0 ] && [ "$(tmpfiles)" = 0 ]
result $? "import of /dev/zero with --max-bytes 10M stops at its bound, leaving nothing (exit $rc)"
# 2^24 TiB is 2^64 bytes: it once wrapped to 0 and 16777217T to 1 TiB, a bound no one asked for.
for big in 16777216T 16777217T 0 5Q; do
	run image import --max-bytes "$big" "$tmp/root.tar"
	[ "$rc" = 2 ] && grep -q "^crgw-ctl: --max-bytes wants a size" "$tmp/err"
	result $? "image import --max-bytes $big is refused (exit $rc)"
done
expect_rc 0 "image import --max-bytes 1GiB (the gateway's units)" image import --max-bytes 1GiB "$tmp/root.tar"
# --guest is part of what an import is asked for: never silently dropped for an image already there.
echo '#!/bin/sh' >"$tmp/guest1" && echo '#!/bin/sh -e' >"$tmp/guest2"
expect_rc 0 "image import without a guest" image import "$tmp/root.tar"
run image import --guest "$tmp/nonexistent" "$tmp/root.tar"
[ "$rc" = 2 ] && grep -q "guest $tmp/nonexistent: No such file" "$tmp/err"
result $? "--guest naming no file fails also when the image exists (exit $rc)"
run image import --guest "$tmp/guest1" "$tmp/root.tar"
[ "$rc" = 2 ] && grep -q "is in the store with no guest: remove it" "$tmp/err"
result $? "--guest for an image made without one is refused, not ignored (exit $rc)"
run image rm "$rid"
expect_rc 0 "... made again with the guest after rm" image import --guest "$tmp/guest1" "$tmp/root.tar"
run image inspect "$rid" && cp "$tmp/out" "$tmp/rec.json"
jq -e '.guest_sha256 | startswith("sha256:")' "$tmp/rec.json" >/dev/null
result $? "inspect shows the guest's sha256"
expect_rc 0 "the same import with the same guest is a no-op" image import --guest "$tmp/guest1" "$tmp/root.tar"
run image import --guest "$tmp/guest2" "$tmp/root.tar"
[ "$rc" = 2 ] && grep -q "with another guest" "$tmp/err"
result $? "... with another guest is refused (exit $rc)"
run image import "$tmp/root.tar"
[ "$rc" = 2 ] && grep -q "with a guest: remove it (crgw-ctl image rm) to make it with none" "$tmp/err"
result $? "... and without one too (exit $rc)"
# FIFOs: one without a writer neither hangs nor holds the store's lock; one with a writer is read.
mkfifo "$tmp/fifo"
run image import --guest "$tmp/fifo" "$tmp/root.tar"
[ "$rc" = 2 ] && grep -q "guest $tmp/fifo: not a regular file" "$tmp/err" && [ "$(tmpfiles)" = 0 ]
result $? "--guest FIFO is refused at once, leaving nothing in tmp/ (exit $rc)"
start=$SECONDS
timeout 30 "$ctl" image import "$tmp/fifo" >"$tmp/fifo.out" 2>"$tmp/fifo.err" &
fifo_pid=$!
sleep 1
timeout 5 "$ctl" image rm "$rid" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" = 0 ]
result $? "image rm is not held up by an import waiting on a FIFO (exit $rc)"
wait "$fifo_pid"
frc=$?
[ "$frc" = 2 ] && grep -q "a FIFO no one wrote to for 10 s" "$tmp/fifo.err" && [ $((SECONDS - start)) -lt 25 ]
result $? "import of a FIFO no one writes to gives up (exit $frc)"
run image import <(cat "$tmp/root.tar")
[ "$rc" = 0 ] && [ "$(cat "$tmp/out")" = "$rid" ]
result $? "import of a pipe with a writer (process substitution) works (exit $rc)"
# A build directory whose process is gone (killed) is swept by the next command; a partial pull is kept.
mkdir "$CRGW_IMAGE_STORE/tmp/img-killed" && touch "$CRGW_IMAGE_STORE/tmp/partial-0123"
run image ls
[ "$rc" = 0 ] && [ ! -e "$CRGW_IMAGE_STORE/tmp/img-killed" ] && [ -e "$CRGW_IMAGE_STORE/tmp/partial-0123" ]
result $? "a killed build's tmp/img-* goes at the next command (exit $rc)"
rm -f "$CRGW_IMAGE_STORE/tmp/partial-0123"
# A killed rm's tmp/rm-*: the next command that finds the store's lock free removes it, never one run while
# the lock is held (a running rm's own rm-* is in there then); an rm removes it once it holds the lock.
dead=$CRGW_IMAGE_STORE/tmp/rm-$(printf '%064d' 0)
mkdir -p "$dead/sub" && touch "$dead/rootfs.ext4" "$dead/sub/f"
flock -x "$CRGW_IMAGE_STORE/lock" "$ctl" image ls >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" = 0 ] && [ -e "$dead/sub/f" ]
result $? "a tmp/rm-* stays while someone holds the store's lock (exit $rc)"
run image ls
[ "$rc" = 0 ] && [ ! -e "$dead" ]
result $? "a killed rm's tmp/rm-* goes at the next command (exit $rc)"
# The same image removed again after a killed rm of it: rm clears the dead rm-HEX before renaming to it.
dead=$CRGW_IMAGE_STORE/tmp/rm-${rid#sha256:}
mkdir -p "$dead" && touch "$dead/rootfs.ext4"
flock -s "$CRGW_IMAGE_STORE/lock" sleep 2 &
holder=$!
sleep 0.5
run image rm "$rid"
wait "$holder"
[ "$rc" = 0 ] && [ ! -e "$dead" ] && [ "$(images)" = 0 ]
result $? "rm of an image whose earlier rm was killed clears tmp/rm-HEX and removes it (exit $rc)"
expect_rc 0 "... and it imports again" image import "$tmp/root.tar"
# An image whose record cannot be read is listed, and rm of another image keeps every blob.
expect_rc 0 "a second image" image import "$evil"
eid=$(cat "$tmp/out")
echo '{' >"$CRGW_IMAGE_STORE/images/${eid#sha256:}/image.json"
run image ls
[ "$rc" = 0 ] && grep -q "^$eid .*(image.json is unreadable)" "$tmp/out"
result $? "image ls lists an image whose image.json is unreadable (exit $rc)"
nb=$(blobs)
expect_rc 0 "rm of the readable image" image rm "$rid"
[ "$(blobs)" = "$nb" ] && [ -e "$CRGW_IMAGE_STORE/blobs/sha256/${eid#sha256:}" ]
result $? "... keeps the blobs, which the unreadable image may own"
# A pull holds no lock of the store while it waits on the network: an rm of another image goes through while
# a registry on 127.0.0.1 stalls a layer; the rm collects a blob the pull had found in the store (the other
# image's tarball is the pull's first layer), and the pull fetches it again before it makes the image.
sp=$tmp/spull
"$ctl" image import --store "$sp" "$tmp/root.tar" >"$tmp/out" 2>"$tmp/err"
sid=$(cat "$tmp/out")
python3 "$(dirname "$0")/slow_registry.py" "$tmp/reg" "$tmp/root.tar" &
reg_pid=$!
for _ in $(seq 100); do [ -e "$tmp/reg/port" ] && break; sleep 0.1; done
timeout 60 "$ctl" image pull --store "$sp" --registry-mirror "http://127.0.0.1:$(cat "$tmp/reg/port")/mirror" \
	"$(cat "$tmp/reg/ref")" >"$tmp/pull.out" 2>"$tmp/pull.err" &
pull_pid=$!
for _ in $(seq 100); do [ -e "$tmp/reg/stalled" ] && break; sleep 0.1; done
timeout 5 "$ctl" image rm --store "$sp" "$sid" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ -e "$tmp/reg/stalled" ] && [ "$rc" = 0 ] && [ ! -e "$sp/images/${sid#sha256:}" ] &&
	[ ! -e "$sp/blobs/sha256/${sid#sha256:}" ]
result $? "image rm of another image completes while a pull waits on a stalled registry (exit $rc)"
touch "$tmp/reg/release"
wait "$pull_pid"
prc=$?
pid=$(cut -d@ -f2 "$tmp/reg/ref")
cp "$tmp/pull.out" "$tmp/out" && cp "$tmp/pull.err" "$tmp/err"
[ "$prc" = 0 ] && [ "$(cat "$tmp/pull.out")" = "$pid" ] && [ -e "$sp/images/${pid#sha256:}/rootfs.ext4" ] &&
	[ "$(grep -c "blobs/$sid" "$tmp/reg/log")" = 1 ] && [ -z "$(ls -A "$sp/tmp")" ]
result $? "... and the pull then completes, fetching the layer the rm collected (exit $prc)"
kill "$reg_pid" 2>/dev/null
wait "$reg_pid" 2>/dev/null
# The store feeds root file systems to VMs: one others may write to is refused.
mkdir -m 0700 "$tmp/s777" && chmod 0777 "$tmp/s777"
run image ls --store "$tmp/s777"
[ "$rc" = 2 ] && grep -q "mode 0777 lets others write to it" "$tmp/err"
result $? "a store directory of mode 0777 is refused (exit $rc)"
mkdir -m 0700 "$tmp/sblob" && "$ctl" image ls --store "$tmp/sblob" >/dev/null && chmod 0775 "$tmp/sblob/blobs"
run image ls --store "$tmp/sblob"
[ "$rc" = 2 ] && grep -q "sblob/blobs: mode 0775" "$tmp/err"
result $? "... and so is one with a group-writable blobs/ (exit $rc)"
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
	mkdir -m 0700 "$tmp/snobody" && chown nobody "$tmp/snobody"
	run image ls --store "$tmp/snobody"
	[ "$rc" = 2 ] && grep -q "owned by uid $(id -u nobody), not 0" "$tmp/err"
	result $? "a store directory another user owns is refused (exit $rc)"
fi

# validate reports every bad port of a list, not the first alone.
printf 'version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n      - host: a.test\n        ports: [0, 70000, -1, 443]\n' >"$tmp/badports.yaml"
run policy validate "$tmp/badports.yaml"
[ "$rc" = 2 ] && grep -q 'invalid (3 errors)' "$tmp/out" && grep -q 'ports\[1\]: 70000' "$tmp/err" && grep -q 'ports\[2\]' "$tmp/err"
result $? "policy validate names each of three bad ports (exit $rc)"

# doctor names a control path that is no socket (and does not call a file's mode a door to the API).
: >"$tmp/notasock"
out=$("$ctl" --control "$tmp/notasock" doctor 2>&1)
grep -Eq '^warn +control socket +.*notasock is not a socket' <<<"$out" && ! grep -q 'others can reach' <<<"$out"
result $? "doctor: a control path that is not a socket is named as such"

echo "1..$n"
[ "$failed" = 0 ]
