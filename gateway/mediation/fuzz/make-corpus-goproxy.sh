#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Writes the goproxy fuzz target's seed corpus (run once by hand; the files are committed). Each seed is
# one control byte (0 path, 1 zip, 2 .info, 3 @v/list; see the target) and the input. Zips come from
# Python's zipfile (as the test network's generator writes them) and, when go is installed, from Go's own
# archive/zip writer, with data descriptors. No network.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/corpus/goproxy
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mkdir -p "$out"

seed() { # seed NAME BYTE [TEXT]: TEXT, or standard input
	if [ $# -ge 3 ]; then
		{ printf "\\x$2"; printf '%s' "$3"; } > "$out/$1"
	else
		{ printf "\\x$2"; cat; } > "$out/$1"
	fi
}

seed path-list 00 'goproxy.test/m/a/@v/list'
seed path-latest 00 'go.pkgs.example/!burnt!sushi/toml/@latest'
seed path-info 00 'goproxy.test/m/a/@v/v1.0.0-!r!c1.info'
seed path-mod 00 'gopkg.in/yaml.v2/@v/v2.4.0.mod'
seed path-zip 00 'go.pkgs.example/x/v2/@v/v2.0.0-20230102150405-abcdef123456.zip'
seed path-incompatible 00 'go.pkgs.example/x/@v/v3.0.0+incompatible.zip'
seed path-sumdb-lookup 00 'sumdb/sum.goproxy.test/lookup/go.pkgs.example/!x@v1.0.0'
seed path-sumdb-tile 00 'sumdb/sum.goproxy.test/tile/8/1/x001/x002/345.p/7'
seed path-sumdb-data 00 'sumdb/sum.goproxy.test/tile/8/data/000'
seed path-sumdb-supported 00 'sumdb/sum.goproxy.test/supported'
seed info 02 '{"Version":"v1.2.3","Time":"2023-01-02T15:04:05.123+01:00"}'
seed list 03 $'v1.0.0\nv1.1.0 2023-01-02T15:04:05Z\r\nv2.0.0+incompatible\njunk\n'

python3 - "$t" <<'PY'
import sys, zipfile
t = sys.argv[1]
p = "goproxy.test/m@v1.0.0/"
def mk(name, files, method=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile("%s/%s" % (t, name), "w", method) as z:
        for n, d in files:
            z.writestr(zipfile.ZipInfo(n, (2024, 1, 1, 0, 0, 0)), d, compress_type=method)
mk("deflate.zip", [(p + "go.mod", b"module goproxy.test/m\n\ngo 1.19\n"), (p + "m.go", b"package m\n" * 20),
                   (p + "LICENSE", b"MIT\n"), (p + "sub/x.go", b"package sub\n")])
mk("stored.zip", [(p + "go.mod", b"module goproxy.test/m\n"), (p + "sub/", b""), (p + "a b.txt", b"")],
   zipfile.ZIP_STORED)
mk("casefold.zip", [(p + "A.go", b"x"), (p + "a.go", b"y")], zipfile.ZIP_STORED)
PY
for z in deflate stored casefold; do seed "zip-$z" 01 < "$t/$z.zip"; done

if command -v go >/dev/null; then
	mkdir "$t/w" && cd "$t/w"
	cat > main.go <<'GO'
package main

import (
	"archive/zip"
	"os"
)

func main() {
	f, _ := os.Create(os.Args[1])
	w := zip.NewWriter(f)
	for _, n := range []string{"go.mod", "a.go", "sub/", "sub/b.go"} {
		if n == "sub/" {
			w.CreateHeader(&zip.FileHeader{Name: "goproxy.test/m@v1.0.0/" + n})
			continue
		}
		fw, _ := w.Create("goproxy.test/m@v1.0.0/" + n)
		fw.Write([]byte("module goproxy.test/m\n"))
	}
	w.Close()
	f.Close()
}
GO
	printf 'module w\n\ngo 1.19\n' > go.mod
	GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod GOCACHE="$t/gocache" GOPATH="$t/gopath" go run . "$t/go.zip"
	seed zip-go-writer 01 < "$t/go.zip"
fi
