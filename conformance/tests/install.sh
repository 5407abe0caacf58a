#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# meson install into a DESTDIR: the programs, the example crgw.yaml (valid, every key documented) and a
# crgw.service that systemd-analyze verifies. TAP output.
# usage: install.sh BUILD_DIR SOURCE_DIR BINDIR CONFDIR UNITDIR   (absolute install paths, without DESTDIR)
set -uo pipefail
build=$1 src=$2 bindir=$3 confdir=$4 unitdir=$5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest
n=0 failed=0

result() { # result STATUS DESCRIPTION [FILE-TO-SHOW]
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failed=$((failed + 1))
		[ -n "${3:-}" ] && sed 's/^/#   /' "$3" | head -20
	fi
}

# ---- the install
meson install -C "$build" --no-rebuild --destdir "$dest" >"$tmp/install.log" 2>&1
result $? "meson install --destdir succeeds" "$tmp/install.log"
crgw=$dest$bindir/crgw
conf=$dest$confdir/crgw.yaml
unit=$dest$unitdir/crgw.service
[ -x "$crgw" ] && [ -x "$dest$bindir/crgw-ctl" ]
result $? "crgw and crgw-ctl are in $bindir"
[ "$(stat -c %a "$conf" 2>/dev/null)" = 644 ]
result $? "the example crgw.yaml is in $confdir, mode 0644"
[ "$(stat -c %a "$unit" 2>/dev/null)" = 644 ]
result $? "crgw.service is in $unitdir, mode 0644"
"$crgw" --version >"$tmp/out" 2>&1 && grep -q '^crgw ' "$tmp/out"
result $? "the installed crgw runs" "$tmp/out"

# ---- the example configuration
"$crgw" --config "$conf" --check-config >"$tmp/out" 2>&1 && grep -qx 'configuration ok' "$tmp/out"
result $? "the installed example passes crgw --check-config" "$tmp/out"
# --check-config reads the CA files a start and a reload read: one without a certificate fails it.
echo "not a certificate" >"$tmp/junk.pem"
"$crgw" --config "$conf" --set "mediation.ca_file=$tmp/junk.pem" --check-config >"$tmp/out" 2>&1
[ $? = 2 ] && grep -q 'mediation.ca_file: .*no PEM certificate in it' "$tmp/out"
result $? "--check-config refuses a mediation.ca_file without a certificate (exit 2, naming the key)" "$tmp/out"

# Uncommenting every commented-out setting ("#key: value", "#  key: value") must give a valid file that
# sets each key of gateway/config.c's table, so the example cannot fall behind the table. Keys may be
# operator's names with dots (git.credentials is keyed by host).
sed -E 's/^#( *[a-z_][a-z0-9_.-]*:( |$))/\1/' "$conf" >"$tmp/all.yaml"
"$crgw" --config "$tmp/all.yaml" --check-config >"$tmp/out" 2>&1
result $? "the example with every setting uncommented passes --check-config" "$tmp/out"
sed -nE 's/^[[:space:]]*\{ "([a-z_.]+)", K_.*/\1/p' "$src/gateway/config.c" | sort >"$tmp/table"
python3 - "$tmp/all.yaml" >"$tmp/documented" <<'EOF'
import re, sys
# Dotted paths of the scalar keys of a two-level block mapping: all the example uses.
section = None
for line in open(sys.argv[1]):
    m = re.match(r'^( *)([a-z_]+):\s*(.*?)\s*(#.*)?$', line)
    if not m:
        continue
    indent, key, value = m.group(1), m.group(2), m.group(3)
    # secrets:, git.credentials: and registries.credentials: are maps keyed by the operator's own names,
    # outside the table.
    if not indent and key in ('secrets', 'git', 'registries'):
        section = None
        continue
    if not indent:
        section = key if value == '' else None
        if value != '':
            print(key)
    elif section:
        print(section + '.' + key)
EOF
sort -o "$tmp/documented" "$tmp/documented"
[ -s "$tmp/table" ] && diff "$tmp/table" "$tmp/documented" >"$tmp/out"
result $? "the example documents exactly the keys of gateway/config.c ($(wc -l <"$tmp/table") keys)" "$tmp/out"

# ---- the unit
grep -qx "ExecStart=$bindir/crgw --config $confdir/crgw.yaml" "$unit"
result $? "ExecStart names the installed crgw and crgw.yaml" "$unit"
for line in Type=notify 'ExecReload=/bin/kill -HUP $MAINPID' RuntimeDirectory=crgw RuntimeDirectoryMode=0755 \
	Restart=on-failure Delegate=yes KillMode=mixed; do
	grep -qxF "$line" "$unit"
	result $? "the unit says $line"
done

# systemd-analyze verify checks that ExecStart's program exists on this machine, and with --root it
# would want the whole of systemd's own units under the DESTDIR. So it verifies a copy whose ExecStart
# points into the DESTDIR. It exits 0 on directives it ignores (a misspelt key, a bad value): any
# output at all is a failure.
verify() { # verify UNIT-FILE: ok when systemd-analyze verify exits 0 and says nothing
	systemd-analyze verify "$1" >"$tmp/verify.out" 2>&1 && ! [ -s "$tmp/verify.out" ]
}
mkdir -p "$tmp/unit" "$tmp/broken"
sed "s|^ExecStart=/|ExecStart=$dest/|" "$unit" >"$tmp/unit/crgw.service"
verify "$tmp/unit/crgw.service"
result $? "systemd-analyze verify accepts crgw.service, without a warning" "$tmp/verify.out"
# The check itself must catch a broken unit: a misspelt key, a bad value, a missing program.
sed 's/^KillMode=/KilMode=/' "$tmp/unit/crgw.service" >"$tmp/broken/crgw.service"
! verify "$tmp/broken/crgw.service"
result $? "it rejects a misspelt key"
sed 's/^Type=notify/Type=notifying/' "$tmp/unit/crgw.service" >"$tmp/broken/crgw.service"
! verify "$tmp/broken/crgw.service"
result $? "it rejects a bad value"
sed "s|^ExecStart=$dest/|ExecStart=/|" "$tmp/unit/crgw.service" >"$tmp/broken/crgw.service"
sed -i "s|/crgw --config|/crgw-missing --config|" "$tmp/broken/crgw.service"
! verify "$tmp/broken/crgw.service"
result $? "it rejects a missing program"

# ---- a reinstall keeps the operator's configuration
echo "# edited by the operator" >>"$conf"
meson install -C "$build" --no-rebuild --destdir "$dest" >"$tmp/install.log" 2>&1 &&
	grep -qx '# edited by the operator' "$conf"
result $? "a second meson install keeps an edited crgw.yaml" "$tmp/install.log"

echo "1..$n"
[ "$failed" -eq 0 ]
