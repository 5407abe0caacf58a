#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Self-test of the test network's registries (testnet_registries_up in conformance/lib/testnet.sh): each is
# used by its real client, inside the test namespace, with the test CA: npm ci of the generated lockfile
# against npm.test (verdaccio), pip install --require-hashes against pypi.test, go mod download and go
# build against goproxy.test, skopeo inspect and copy from oci.test (docker-registry); then teardown leaves
# nothing running. TAP output; needs root; 25-40 s (the first run on a machine builds the image and the lockfile).
#
# The only addresses touched are inside the test network (203.0.113.0/24); names are looked up only by
# clients inside its namespace, whose resolv.conf names the test network's DNS server.

set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/../lib/testnet.sh
source "$here/../lib/testnet.sh"

# shellcheck source=SCRIPTDIR/../lib/selftest_tap.sh
source "$here/../lib/selftest_tap.sh"

# Runs "$@" (a client) with its output in $tmp/log/NAME.log; on failure shows the last lines.
logged() {
	local name=$1 rc=0
	shift
	"$@" >"$tmp/log/$name.log" 2>&1 || rc=$?
	if [ "$rc" != 0 ]; then
		diag "$name: exit $rc; last lines:"
		tail -n 8 "$tmp/log/$name.log" | sed 's/^/#   /'
	fi
	return "$rc"
}

in_ns() {
	ip netns exec "$TN_NS" "$@"
}

tmp=$(mktemp -d /tmp/crgw-registries.XXXXXX)
chmod 0755 "$tmp"
mkdir -p "$tmp/log"
testnet_on_exit "rm -rf '$tmp'"

out=$(testnet_registries_up 2>&1)
is "testnet_registries_up before testnet_up fails and says why" "$?:$out" \
	"1:testnet: testnet_registries_up: call testnet_up first (in this shell)"
t=$EPOCHREALTIME
if ! testnet_up "$tmp/state"; then
	not_ok "testnet_up"
	printf '1..%d\n' "$n"
	exit 1
fi
ok "testnet_up"
t=$EPOCHREALTIME
if ! testnet_registries_up; then
	not_ok "testnet_registries_up"
	printf '1..%d\n' "$n"
	exit 1
fi
ok "testnet_registries_up"
diag "testnet_registries_up took $(elapsed "$t") s"
out=$(testnet_registries_up 2>&1)
is "a second call fails and says why" "$?:$out" "1:testnet: testnet_registries_up: already up"

# ---------------------------------------------------------------------------------------------------------
# Names, addresses, certificate, environment.
is "npm.test, pypi.test, goproxy.test, oci.test in the zone" \
	"$(for h in npm pypi goproxy oci; do testnet_kdig "$h.test" A +short; done | tr '\n' ' ')" \
	"$TN_NPM_ADDR $TN_PYPI_ADDR $TN_GOPROXY_ADDR $TN_OCI_ADDR "
check "the server certificate names the registries and their addresses" bash -c \
	"openssl x509 -in '$TN_STATE/pki/server.pem' -noout -ext subjectAltName | grep -q 'DNS:npm.test, DNS:pypi.test, DNS:goproxy.test, DNS:oci.test' &&
	 openssl x509 -in '$TN_STATE/pki/server.pem' -noout -ext subjectAltName | grep -q 'IP Address:$TN_OCI_ADDR'"
is "the registries' variables" "$TN_NPM_REGISTRY $TN_PYPI_INDEX $TN_GOPROXY $TN_OCI $TN_OCI_IMAGE" \
	"https://npm.test/ https://pypi.test/simple/ https://goproxy.test/ oci.test oci.test/crgw/hello:1"
check "testnet.env lists them" grep -qxF "TN_NPM_TOKEN_FILE=$TN_NPM_TOKEN_FILE" "$TN_STATE/testnet.env"
is "the npm token file is 0600" "$(stat -c %a "$TN_NPM_TOKEN_FILE")" 600

# ---------------------------------------------------------------------------------------------------------
# npm.test: the lockfile, npm ci, what verdaccio refuses.
lock=$TN_NPM_PROJECT/package-lock.json
is "package-lock.json is version 3" "$(jq .lockfileVersion "$lock")" 3
count=$(jq '[.packages | keys[] | select(. != "")] | length' "$lock")
check "it names at least 50 packages ($count)" [ "${count:-0}" -ge 50 ]
is "scoped and unscoped, every one resolved from npm.test with an integrity" \
	"$(jq -r '[.packages | to_entries[] | select(.key != "") | .value] |
		"\(map(select(.resolved | startswith("https://npm.test/"))) | length) \(map(select(.integrity | startswith("sha512-"))) | length)"' "$lock")" \
	"$count $count"
check "both kinds present" bash -c "jq -e '.packages | has(\"node_modules/@crgw/lib-14\") and has(\"node_modules/crgw-dep-39\")' '$lock' >/dev/null"
proj=$tmp/npm-project
mkdir -p "$proj"
cp "$TN_NPM_PROJECT/package.json" "$lock" "$proj/"
t=$EPOCHREALTIME
check "npm ci against npm.test" logged npm-ci testnet_npm "$proj" ci --ignore-scripts
diag "npm ci took $(elapsed "$t") s"
installed=$(find "$proj/node_modules" -name package.json -path '*/node_modules/*/package.json' \
	-not -path '*/node_modules/*/node_modules/*/*/package.json' 2>/dev/null | wc -l)
is "every locked package is installed" "$installed" "$count"
is "the tree loads (nested crgw-dup 1.0.0 under @crgw/lib-00, 2.0.0 at the top)" \
	"$(cd "$proj" && node -e 'const r = require("crgw-dep-00"); const l = require("@crgw/lib-00");
		console.log(r.name, l.deps[0].version, require("crgw-dup").version)')" "crgw-dep-00 1.0.0 2.0.0"
is "a package nobody published is 404 (no uplinks)" \
	"$(testnet__curl_at npm.test "$TN_NPM_ADDR" /left-pad -o /dev/null -w '%{http_code}'; true)" 404
check "testnet_npm_publish publishes a new version" logged npm-publish testnet_npm_publish crgw-fresh 1.0.0 crgw-dup=^2.0.0
is "its packument lists it" "$(testnet__curl_at npm.test "$TN_NPM_ADDR" /crgw-fresh | jq -r '.versions | keys | join(",")')" \
	"1.0.0"
is "publishing without the token is refused (401)" \
	"$(testnet__curl_at npm.test "$TN_NPM_ADDR" /crgw-anon -X PUT -H 'content-type: application/json' \
		-d '{"name":"crgw-anon","versions":{}}' -o /dev/null -w '%{http_code}'; true)" 401

# ---------------------------------------------------------------------------------------------------------
# pypi.test: the simple index in both forms, pip with hashes into a venv.
check "/simple/ lists the projects (PEP 503 HTML)" bash -c \
	"testnet__curl_at() { curl --noproxy '*' -sf --max-time 2 --cacert '$TN_CA' --resolve 'pypi.test:443:$TN_PYPI_ADDR' \"https://pypi.test\$1\"; }
	 testnet__curl_at /simple/ | grep -q 'href=\"crgw-gamma/\"' &&
	 testnet__curl_at /simple/crgw-beta/ | grep -Eq 'href=\"../../files/crgw_beta-1.1.0-py3-none-any.whl#sha256=[0-9a-f]{64}\"'"
is "PEP 691 JSON when asked for" \
	"$(testnet__curl_at pypi.test "$TN_PYPI_ADDR" /simple/crgw-beta/ -H 'Accept: application/vnd.pypi.simple.v1+json' \
		-D "$tmp/pypi-headers" | jq -r '[.files[].filename] | join(" ")') $(grep -i '^content-type:' "$tmp/pypi-headers" | tr -d '\r')" \
	"crgw_beta-1.0.0-py3-none-any.whl crgw_beta-1.1.0-py3-none-any.whl Content-Type: application/vnd.pypi.simple.v1+json"
t=$EPOCHREALTIME
venv=$tmp/venv
if logged venv "$TN__PYTHON" -m venv "$venv"; then
	check "pip install --require-hashes against pypi.test" logged pip in_ns env -u REQUESTS_CA_BUNDLE -u PIP_CERT \
		-u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
		"$venv/bin/pip" install --no-cache-dir --disable-pip-version-check --require-hashes \
		--index-url "$TN_PYPI_INDEX" --cert "$TN_CA" -r "$TN_PYPI_REQUIREMENTS"
	is "the wheels import" "$("$venv/bin/python" -c 'import crgw_alpha, crgw_beta, crgw_gamma
print(crgw_alpha.VERSION, crgw_beta.VERSION, crgw_gamma.NAME)')" "1.0.0 1.1.0 Crgw.Gamma"
	check "pip fetched them from pypi.test" grep -q 'Downloading https://pypi.test/files/crgw_alpha-1.0.0-py3-none-any.whl' \
		"$tmp/log/pip.log"
else
	not_ok "python3 -m venv"
fi
diag "venv and pip took $(elapsed "$t") s"

# ---------------------------------------------------------------------------------------------------------
# goproxy.test: go mod download, go mod verify, go build against the go.sum the generator wrote. No
# checksum database in the test network: GONOSUMDB covers the test modules, go.sum pins them.
gomain=$tmp/go-main
cp -r "$TN_GO_MAIN" "$gomain"
mkdir -p "$tmp/gohome" "$TN_REGISTRY_CACHE_DIR/go-build"
go_env=(env -u GOFLAGS -u GOPRIVATE -u GONOPROXY -u GOSUMDB HOME="$tmp/gohome" GOPATH="$tmp/gohome/go"
	GOMODCACHE="$tmp/gohome/mod" GOCACHE="$TN_REGISTRY_CACHE_DIR/go-build" GOPROXY="$TN_GOPROXY"
	GONOSUMDB=goproxy.test GOFLAGS=-modcacherw SSL_CERT_FILE="$TN_CA" GOTOOLCHAIN=local)
# go_in ARGS...: go inside the namespace, in the copy of the main module.
go_in() {
	(cd "$gomain" && in_ns "${go_env[@]}" go "$@")
}
t=$EPOCHREALTIME
check "go mod download against goproxy.test" logged go-download go_in mod download -x
check "go mod verify" logged go-verify go_in mod verify
check "go build" logged go-build go_in build -o hello .
is "the program runs" "$("$gomain/hello" 2>&1)" "a v1.0.0, b v1.0.0"
diag "go took $(elapsed "$t") s"
is "a wrong go.sum line fails the download" "$(
	cd "$gomain" && sed -i 's|^goproxy.test/m/b v1.0.0 h1:.*|goproxy.test/m/b v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=|' go.sum &&
		rm -rf "$tmp/gohome/mod" && go_in mod download 2>&1 | grep -c 'SECURITY ERROR'
)" 1

# ---------------------------------------------------------------------------------------------------------
# oci.test: skopeo inspect and copy out, the manifest by curl with the OCI Accept header.
printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"$tmp/policy.json"
inspect=$(in_ns skopeo --policy "$tmp/policy.json" inspect --no-creds --cert-dir "$TN_OCI_CERT_DIR" \
	"docker://$TN_OCI_IMAGE" 2>"$tmp/log/skopeo-inspect.log")
is "skopeo inspect docker://$TN_OCI_IMAGE" "$(jq -r '"\(.Architecture) \(.Os) \(.Layers | length)"' <<<"$inspect")" \
	"amd64 linux 1"
digest=$(jq -r .Digest <<<"$inspect")
is "its digest is the manifest's" "$(testnet__curl_at oci.test "$TN_OCI_ADDR" /v2/crgw/hello/manifests/1 \
	-H 'Accept: application/vnd.oci.image.manifest.v1+json' | sha256sum | cut -d' ' -f1)" "${digest#sha256:}"
check "skopeo copy from oci.test to a directory" logged skopeo-copy in_ns skopeo --policy "$tmp/policy.json" \
	copy --quiet --src-no-creds --src-cert-dir "$TN_OCI_CERT_DIR" "docker://$TN_OCI_IMAGE" "dir:$tmp/image"
layer=$(jq -r '.layers[0].digest' "$tmp/image/manifest.json" 2>/dev/null)
is "the layer holds hello.txt" "$(tar -xzOf "$tmp/image/${layer#sha256:}" hello.txt 2>/dev/null)" \
	"hello from the crgw test network"
is "without the CA the copy fails" "$(in_ns skopeo --policy "$tmp/policy.json" inspect --no-creds \
	"docker://$TN_OCI_IMAGE" 2>&1 | grep -c 'certificate signed by unknown authority')" 1

# ---------------------------------------------------------------------------------------------------------
# Teardown: every registry process gone, nothing left of the namespace.
pidfiles=("$TN_STATE"/pids/{npm,pypi,goproxy,oci}.pid)
mkdir -p "$tmp/pids"
cp "${pidfiles[@]}" "$tmp/pids/"
prefix=$TN_PREFIX
t=$EPOCHREALTIME
testnet_down
diag "testnet_down took $(elapsed "$t") s"
alive=
for f in "$tmp"/pids/*.pid; do
	read -r pid st <"$f"
	if testnet__alive "$pid" "$st"; then alive+=" ${f##*/}"; fi
done
is "no registry process survives testnet_down" "$alive" ""
check "no namespace or veth left" bash -c "! ip netns list | grep -q '^$prefix-net\b' && ! ip link show dev '${prefix}u' >/dev/null 2>&1"
is "no process runs the state directory's configurations" "$(pgrep -fc "$tmp/state/" || true)" 0

diag "total $(elapsed "$t0") s"
printf '1..%d\n' "$n"
[ "$failures" = 0 ]
