#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's first command, run as a new user runs it: scripts/demo, checked for what the README says it
# shows (the lookups, the proxies, the audit, the private clone and the refused push, `npm ci` against its
# lockfile and the version outside it, the copy-on-write workspace, the VM or why there is none), and for
# what it leaves behind: nothing. TAP output. Needs root; brings up the test network itself.
# usage: demo.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
src=$1 build=$2
# shellcheck source=../e2e/lib.sh
source "$src/conformance/e2e/lib.sh"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
before_tmp=$(find /tmp -maxdepth 1 -name 'crgw-demo.*' | sort)

CRGW_DEMO_BUILD=$(realpath "$build") timeout 600 "$src/scripts/demo" >"$out" 2>&1
ok $? "scripts/demo exits 0" || diag "$(tail -n 20 "$out")"
has() { grep -qE -- "$1" "$out"; }
count() { grep -cE -- "$1" "$out"; }
check "it explains the example policy (api.github.com:22)" -- has 'api\.github\.com'
check "an allowed lookup resolves" -- has 'STREAM allowed\.test'
check "a denied lookup gets NXDOMAIN" -- has 'status: NXDOMAIN'
check "a query around the gateway gets no answer, audited as dns_bypass_attempt" -- has 'packet_drop +deny +dns_bypass_attempt'
n=$(count '^upstream 203\.0\.113\.10$')
check "allowed.test through CONNECT, transparent HTTP and transparent TLS ($n answers)" -- test "$n" -ge 3
check "denied.test through the proxy: 403" -- has '^403$'
check "the audit shows the proxy's denial" -- has 'decision +deny +host_not_allowed +connect'
check "the private repository is cloned with the gateway's password" -- has 'small: revision 5'
n=$(count 'naming a password, token or secret: 0$')
check "no sandbox holds a password, token or secret ($n sandboxes)" -- test "$n" -ge 2
check "a push to an agent/ branch passes" -- has '^pushed$'
check "a push to main is refused with its reason" -- has 'remote rejected\] HEAD -> main \(crgw: request_invalid'
check "npm ci installs the lockfile's 57 packages through the gateway" -- has '^added 57 packages'
check "a version outside the lockfile does not exist for the sandbox" -- has 'notarget No matching version found for crgw-dep-01@9\.0\.0'
check "its tarball asked for directly is refused, audited as lockfile_violation" -- \
	has 'decision +deny +lockfile_violation +registry .*crgw-dep-01@9\.0\.0 is not in the lockfile'
check "the content cache holds the 57 verified tarballs" -- has '^objects +57$'
check "sandbox diff shows the kept sandbox's changes" -- has '^ A notes\.txt'
check "and the removed policy file first" -- has '^!D cleanroom\.yaml'
check "the VM step ran, or said why not" -- has '# in a VM: Linux|^\(no VM: '

# What it leaves: its table, interfaces, namespaces, scratch directory and processes are gone.
check "no nftables table crgw_demo is left" -- bash -c '! nft list table inet crgw_demo'
check "no interface cgd* is left" -- bash -c '! ip -o link show | grep -q ": cgd[0-9]"'
after_tmp=$(find /tmp -maxdepth 1 -name 'crgw-demo.*' | sort)
check "no scratch directory is left in /tmp" -- test "$after_tmp" = "$before_tmp"
# Its servers' command lines name its scratch directory; "[/]tmp" keeps pgrep from matching this line.
work=$(grep -oE '/tmp/crgw-demo\.[A-Za-z0-9]+' "$out" | head -1)
left=$(pgrep -af -- "[/]${work#/}")
[ -n "$work" ] && [ -z "$left" ]
ok $? "no process of the demo is left" || diag "left: $left"
tap_done
