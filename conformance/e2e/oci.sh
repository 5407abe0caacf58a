#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end through OCI registry mediation (port 8170), as a job uses it: skopeo inside crgw-ctl run
# sandboxes, pointed at the gateway by the registries.conf the netns backend writes into the sandbox's
# home, against the test network's docker-registry over TLS, with the content cache. A copy succeeds and
# its blobs are the registry's; a second copy is served from the cache; a layer tampered with on the
# registry's storage is cut (integrity_mismatch) and nothing of it is cached; a tampered manifest is
# refused against the registry's Docker-Content-Digest; a multi-platform index is copied whole (manifests
# by digest); a registry the policy does not enable is refused (registry_not_allowed) and so is a host
# outside allowed_hosts (host_not_allowed); the registry behind token auth is read with a token the
# gateway fetched itself, from an allowed realm only; offline, with the registries stopped, a copy is
# served from the cache and the metadata store; a realm that refuses the gateway's credential gives a 502;
# a cached layer and manifest named by digest under another allowed host are never served from the cache;
# a learn-mode request for a host outside the policy gets neither a realm's credential nor a token it bought.
# TAP output. Needs root.
# usage: oci.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

T=$(mktemp -d /tmp/crgw-e2e-oci.XXXXXX)
chmod 0755 "$T"
testnet_on_exit '[ -n "${CRGW_E2E_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"'
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
testnet_registries_up || { echo "Bail out! the test registries did not come up"; exit 1; }
AUDIT=$T/audit.log
REPO=crgw/hello
V2=$TN_STATE/oci/data/docker/registry/v2

write_config() { # write_config OFFLINE [TOKEN-PASSWORD-FILE [TOKEN-FOR]]
	cat >"$T/crgw.yaml" <<EOF
secrets:
  oci_token_pw: { file: ${2:-$TN_OCI_TOKEN_PASSWORD_FILE} }
registries:
  credentials:
    api.test: { secret: oci_token_pw, scheme: basic, username: $TN_OCI_TOKEN_USER, token_for: [${3:-$TN_OCI_AUTH}] }
mediation:
  ca_file: $TN_CA
  idle_timeout: 10
cache:
  offline: $1
  metadata_ttl_seconds: 0
EOF
}
write_config false
# One worker: a token the gateway bought is in that worker's cache for every later request (learn mode below).
gw_start "$T" --config "$T/crgw.yaml" --set learn.allowed=true --set workers=1 || { echo "Bail out! crgw did not start"; exit 1; }

# ---- projects: an empty workspace with a policy --------------------------------------------------------
project() { # project DIR POLICY-REGISTRIES-YAML
	rm -rf "$1"
	mkdir -p "$1"
	printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"$1/policy.json"
	{
		printf 'version: 1\nsandbox:\n  network:\n    default: deny\nregistries:\n'
		printf '%s\n' "$2"
	} >"$1/cleanroom.yaml"
}
run() { # run PROJECT SCRIPT: a sandbox on PROJECT's policy with PROJECT as its read-write workspace
	"$CTL" run --rm --policy "$1/cleanroom.yaml" --workspace "$1" --workspace-mode rw -- bash -c "$2"
}
COPY='skopeo --policy /workspace/policy.json copy --quiet'
OCI=$T/oci
project "$OCI" '  oci:
    enable: true
    allowed_hosts: [oci.test]'

# What the registry holds: the tag's manifest digest, and every blob under it.
tag_digest() { cat "$V2/repositories/$REPO/_manifests/tags/$1/current/link"; }
blob_path() { local h=${1#sha256:}; printf '%s/blobs/sha256/%s/%s/data\n' "$V2" "${h:0:2}" "$h"; }
manifest=$(tag_digest 1)
layer=$(jq -r '.layers[0].digest' "$(blob_path "$manifest")")
config=$(jq -r '.config.digest' "$(blob_path "$manifest")")

# ---- the sandbox's configuration --------------------------------------------------------------------------
out=$(run "$OCI" 'echo "$CONTAINERS_REGISTRIES_CONF"; cat "$CONTAINERS_REGISTRIES_CONF"' 2>&1)
grep -q "location = \"$TN_OCI\"" <<<"$out" && grep -q "location = \"[0-9.]*:8170/registry/oci/$TN_OCI\"" <<<"$out"
ok $? "the sandbox's registries.conf mirrors $TN_OCI through the gateway ($(echo $out | head -c 200))"

# The mediation port is plain HTTP: a TLS ClientHello (containers/image tries TLS first) gets an answer at once.
start=$(date +%s%N)
out=$(run "$OCI" 'curl -sk --max-time 20 -o /dev/null -w "%{http_code}" https://$CRGW_GATEWAY:8170/v2/; echo " exit=$?"' 2>&1)
tls_ms=$((($(date +%s%N) - start) / 1000000))
check "TLS to the mediation port fails fast ($out, ${tls_ms} ms with the sandbox's start)" -- test "$tls_ms" -lt 5000

# ---- skopeo copy through the gateway ------------------------------------------------------------------------
start=$(date +%s%N)
out=$(run "$OCI" "$COPY docker://$TN_OCI_IMAGE dir:/workspace/img 2>&1; echo exit=\$?" 2>&1)
cold_ms=$((($(date +%s%N) - start) / 1000000))
check "skopeo copy docker://$TN_OCI_IMAGE through the gateway (${cold_ms} ms; $(echo $out | tail -c 300))" -- \
	grep -q 'exit=0' <<<"$out"
check "the manifest it got is the registry's ($manifest)" -- \
	test "sha256:$(sha256sum <"$OCI/img/manifest.json" | cut -c1-64)" = "$manifest"
bad=0
for d in "$layer" "$config"; do
	f=$OCI/img/${d#sha256:}
	{ [ -f "$f" ] && [ "sha256:$(sha256sum <"$f" | cut -c1-64)" = "$d" ] && cmp -s "$f" "$(blob_path "$d")"; } || bad=1
done
ok $bad "its config and layer match their digests and the registry's blobs"
check "audited: the manifest by tag, decision allow, registry oci, package and version" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .service=="registry" and .registry=="oci" and .action=="allow" and .package=="crgw/hello" and .version=="1")'
check "audited: the layer's connection_end with its digest and bytes" -- \
	audit_has "$AUDIT" "select(.event==\"connection_end\" and .registry==\"oci\" and .version==\"$layer\" and .integrity==\"$layer\" and .bytes_down > 0)"

# HEAD, as containers tools may send it, and the manifest's own headers.
out=$(run "$OCI" "curl -sI -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://\$CRGW_GATEWAY:8170/v2/registry/oci/$TN_OCI/$REPO/manifests/1 | tr -d '\r'" 2>&1)
grep -qi "^docker-content-digest: $manifest" <<<"$out" && grep -qi '^content-type: application/vnd' <<<"$out" && grep -q '^HTTP/1.1 200' <<<"$out"
ok $? "HEAD of the manifest by tag: 200, its media type and digest ($(echo $out | head -c 200))"
out=$(run "$OCI" "curl -sI http://\$CRGW_GATEWAY:8170/registry/oci/$TN_OCI/v2/$REPO/blobs/$layer | tr -d '\r'" 2>&1)
grep -q '^HTTP/1.1 200' <<<"$out" && grep -qi "^content-length: $(stat -c %s "$(blob_path "$layer")")" <<<"$out"
ok $? "HEAD of the layer (direct form): 200 and its size ($(echo $out | head -c 120))"

# ---- the second copy: from the cache ------------------------------------------------------------------------
rm -rf "$OCI/img"
out=$(run "$OCI" "$COPY docker://$TN_OCI_IMAGE dir:/workspace/img 2>&1; echo exit=\$?" 2>&1)
check "the second copy succeeds ($(echo $out | tail -c 200))" -- grep -q 'exit=0' <<<"$out"
check "its layer came from the cache (connection_end with cache hit)" -- \
	audit_has "$AUDIT" "select(.event==\"connection_end\" and .registry==\"oci\" and .version==\"$layer\" and .cache==\"hit\")"

# ---- a digest is not a capability: the cache answers a host only with what that host served ----------------
# A sandbox whose policy allows only another host (web1.test, which holds no image) names the cached layer
# and manifest by digest under it: the gateway asks web1.test (a 404), never serving oci.test's bytes.
OTHER=$T/other
project "$OTHER" '  oci:
    enable: true
    allowed_hosts: [web1.test]'
for what in "blobs/$layer" "manifests/$manifest"; do
	rm -f "$OTHER/got"
	out=$(run "$OTHER" "curl -s -o /workspace/got -w '%{http_code}' http://\$CRGW_GATEWAY:8170/registry/oci/web1.test/v2/$REPO/$what" 2>&1)
	check "$what under web1.test is not served from oci.test's cached copy ($out)" -- \
		bash -c '[ "$1" != 200 ] && ! cmp -s "$2" "$3"' _ "$out" "$OTHER/got" "$(blob_path "${what#*/}")"
done
check "audited: the web1.test requests, none of them a cache hit" -- \
	bash -c 'jq -e -s "map(select(.dst_host==\"web1.test\")) | length > 0 and all(.cache != \"hit\")" "$1"' _ "$AUDIT"
out=$(run "$OCI" "curl -s -o /dev/null -w '%{http_code}' http://\$CRGW_GATEWAY:8170/registry/oci/$TN_OCI/v2/$REPO/blobs/$layer" 2>&1)
check "and oci.test, which served the layer, still gets it from the cache ($out)" -- test "$out" = 200

# ---- integrity_mismatch: a layer tampered with on the registry's storage ----------------------------------
"$CTL" --control "$T/ctl.sock" cache gc --target 0 >/dev/null 2>&1
victim=$(blob_path "$layer")
size=$(stat -c %s "$victim")
cp "$victim" "$T/victim.orig"
printf 'X' | dd of="$victim" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
rm -rf "$OCI/img"
out=$(run "$OCI" "$COPY docker://$TN_OCI_IMAGE dir:/workspace/img 2>&1; echo exit=\$?" 2>&1)
check "a tampered layer: skopeo copy fails ($(echo $out | tail -c 250))" -- bash -c '! grep -q "exit=0" <<<"$1"' _ "$out"
check "audited: integrity_mismatch with the repository and the layer's digest" -- \
	audit_has "$AUDIT" "select(.event==\"decision\" and .action==\"deny\" and .reason_code==\"integrity_mismatch\" and .package==\"crgw/hello\" and .version==\"$layer\")"
out=$("$CTL" --control "$T/ctl.sock" cache ls --json 2>&1)
echo "$out" | jq -e --arg d "$layer" 'map(select(.digest==$d)) | length == 0' >/dev/null
ok $? "the cache holds nothing of it ($(echo "$out" | jq length 2>/dev/null) objects)"
cp "$T/victim.orig" "$victim"

# A manifest tampered with on the storage, under a tag the gateway has not seen (a stored tag would be
# revalidated by its ETag, the digest, and served from the store): the registry still names the digest
# in Docker-Content-Digest, and the gateway checks the bytes against it.
ip netns exec "$TN_NS" skopeo --policy "$OCI/policy.json" copy --quiet --src-cert-dir "$TN_OCI_CERT_DIR" \
	--dest-cert-dir "$TN_OCI_CERT_DIR" "docker://$TN_OCI_IMAGE" "docker://$TN_OCI/$REPO:t2" >/dev/null 2>&1
mvictim=$(blob_path "$manifest")
cp "$mvictim" "$T/manifest.orig"
# One digit of the config's size, changed: still JSON, still a manifest, not the same bytes.
python3 - "$mvictim" <<'EOF'
import re, sys
p = sys.argv[1]
s = open(p, encoding="utf-8").read()
s = re.sub(r'("size":\d*)(\d)', lambda m: m.group(1) + ("8" if m.group(2) == "9" else str(int(m.group(2)) + 1)), s, count=1)
open(p, "w", encoding="utf-8").write(s)
EOF
cmp -s "$mvictim" "$T/manifest.orig"
ok $((!$?)) "the manifest on the registry's storage is changed ($(stat -c %s "$mvictim") bytes, as before)"
out=$(run "$OCI" "curl -s -D - -o /dev/null http://\$CRGW_GATEWAY:8170/v2/registry/oci/$TN_OCI/$REPO/manifests/t2 | tr -d '\r' | grep -i '^HTTP\|^x-crgw-reason'" 2>&1)
check "a manifest that does not match Docker-Content-Digest: 502 integrity_mismatch ($(echo $out))" -- \
	grep -q integrity_mismatch <<<"$out"
check "audited: integrity_mismatch for the tag" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .action=="deny" and .reason_code=="integrity_mismatch" and .package=="crgw/hello" and .version=="t2")'
cp "$T/manifest.orig" "$mvictim"

# ---- a multi-platform index: the platform's manifest asked for by digest -----------------------------------
# Made from the image: an OCI index naming its manifest for linux/amd64, pushed as the tag "multi".
L=$T/layout
rm -rf "$L"
ip netns exec "$TN_NS" skopeo --policy "$OCI/policy.json" copy --quiet --src-cert-dir "$TN_OCI_CERT_DIR" \
	"docker://$TN_OCI_IMAGE" "oci:$L:1" >/dev/null 2>&1
desc=$(jq -c '.manifests[0] | del(.annotations) + {platform: {architecture: "amd64", os: "linux"}}' "$L/index.json")
jq -cnj --argjson m "$desc" '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [$m]}' >"$T/index.json"
ih=$(sha256sum <"$T/index.json" | cut -c1-64)
cp "$T/index.json" "$L/blobs/sha256/$ih"
jq --arg d "sha256:$ih" --argjson n "$(stat -c %s "$T/index.json")" \
	'.manifests = [{mediaType: "application/vnd.oci.image.index.v1+json", digest: $d, size: $n, annotations: {"org.opencontainers.image.ref.name": "multi"}}]' \
	"$L/index.json" >"$T/layout-index.json" && mv "$T/layout-index.json" "$L/index.json"
ip netns exec "$TN_NS" skopeo --policy "$OCI/policy.json" copy --quiet --all --dest-cert-dir "$TN_OCI_CERT_DIR" \
	"oci:$L:multi" "docker://$TN_OCI/$REPO:multi" >"$T/push-multi.log" 2>&1
ok $? "an index pushed to the registry as $REPO:multi (sha256:$ih)"
for pass in first second; do
	rm -rf "$OCI/multi"
	out=$(run "$OCI" "$COPY --all docker://$TN_OCI/$REPO:multi dir:/workspace/multi 2>&1; echo exit=\$?" 2>&1)
	check "skopeo copy --all of the index, $pass time ($(echo $out | tail -c 200))" -- grep -q 'exit=0' <<<"$out"
done
check "the index it got is the registry's" -- test "sha256:$(sha256sum <"$OCI/multi/manifest.json" | cut -c1-64)" = "sha256:$ih"
check "and the platform's manifest, asked for by digest, is the image's" -- \
	cmp -s "$OCI/multi/${manifest#sha256:}.manifest.json" "$(blob_path "$manifest")"
check "audited: the manifest by digest, allowed, with its digest as version and integrity" -- \
	audit_has "$AUDIT" "select(.event==\"decision\" and .action==\"allow\" and .registry==\"oci\" and .version==\"$manifest\" and .integrity==\"$manifest\")"
check "the second time it came from the content cache" -- \
	audit_has "$AUDIT" "select(.event==\"connection_end\" and .registry==\"oci\" and .version==\"$manifest\" and .cache==\"hit\")"

# ---- a registry the policy does not enable, a host it does not allow ------------------------------------
NONE=$T/none
project "$NONE" '  npm: { enable: true, allowed_hosts: [npm.test] }'
out=$(run "$NONE" "curl -s -D - -o /dev/null http://\$CRGW_GATEWAY:8170/v2/registry/oci/$TN_OCI/$REPO/manifests/1 | tr -d '\r' | grep -i '^x-crgw-reason'" 2>&1)
check "oci not enabled: registry_not_allowed ($out)" -- grep -q registry_not_allowed <<<"$out"
check "audited: registry_not_allowed with registry oci" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .reason_code=="registry_not_allowed" and .registry=="oci")'
out=$(run "$OCI" "$COPY --src-tls-verify=false docker://\$CRGW_GATEWAY:8170/registry/oci/web1.test/$REPO:1 dir:/workspace/other 2>&1; echo exit=\$?" 2>&1)
check "skopeo copy from a host outside allowed_hosts fails ($(echo $out | tail -c 200))" -- \
	bash -c '! grep -q "exit=0" <<<"$1"' _ "$out"
check "audited: host_not_allowed for it" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .reason_code=="host_not_allowed" and .registry=="oci" and .dst_host=="web1.test")'

# ---- a registry behind token auth: the gateway fetches the token itself ------------------------------------
AUTH=$T/auth
project "$AUTH" "  oci:
    enable: true
    allowed_hosts: [$TN_OCI_AUTH, api.test]"
"$CTL" --control "$T/ctl.sock" cache gc --target 0 >/dev/null 2>&1
TOKLOG=$TN_STATE/secrets/oci-token.log
out=$(run "$AUTH" "$COPY --src-tls-verify=false docker://\$CRGW_GATEWAY:8170/registry/oci/$TN_OCI_AUTH/$REPO:1 dir:/workspace/img 2>&1; echo exit=\$?" 2>&1)
check "skopeo copy from $TN_OCI_AUTH (token auth) through the gateway ($(echo $out | tail -c 200))" -- grep -q 'exit=0' <<<"$out"
check "its layer is the registry's" -- cmp -s "$AUTH/img/${layer#sha256:}" "$(blob_path "$layer")"
check "the realm was asked for pull on the repository, and nothing more" -- \
	jq -se 'length > 0 and all(.scope == "repository:crgw/hello:pull" and .service == "oci-auth.test")' "$TOKLOG"
check "audited: the layer from $TN_OCI_AUTH, allowed" -- \
	audit_has "$AUDIT" "select(.event==\"connection_end\" and .dst_host==\"$TN_OCI_AUTH\" and .version==\"$layer\" and .bytes_down > 0)"
leak=0
while read -r tok; do
	grep -rqF "$tok" "$AUTH" "$AUDIT" "$T/crgw.log" && leak=1
	grep -qF "${tok##*.}" <<<"$out" && leak=1
done < <(jq -r .token "$TOKLOG")
ok $leak "no token it issued ($(wc -l <"$TOKLOG")) is in the sandbox's files and output, the audit or the gateway's log"
out=$(run "$AUTH" "curl -s -D - -o /dev/null http://\$CRGW_GATEWAY:8170/v2/registry/oci/$TN_OCI_AUTH/$REPO/manifests/1 | tr -d '\r'" 2>&1)
grep -q '^HTTP/1.1 200' <<<"$out" && ! grep -qi '^www-authenticate' <<<"$out"
ok $? "the sandbox sees a 200 and no challenge ($(echo $out | head -c 100))"

# Learn mode: oci-auth.test, outside this policy (its realm api.test inside), is asked without the realm's
# credential, and not with the token the copies above bought with it.
LEARNOCI=$T/learnoci
project "$LEARNOCI" '  oci:
    enable: true
    allowed_hosts: [api.test]'
out=$("$CTL" run --rm --learn --run-id learn-oci --policy "$LEARNOCI/cleanroom.yaml" --workspace-mode none -- \
	bash -c "curl -s -o /dev/null -w '%{http_code}' http://\$CRGW_GATEWAY:8170/v2/registry/oci/$TN_OCI_AUTH/$REPO/manifests/1" 2>&1 | tail -1)
check "learn mode, $TN_OCI_AUTH outside allowed_hosts: no token the operator's credential bought ($out)" -- test "$out" != 200
check "audited: warn host_not_allowed, and no secret_id for the learn run" -- \
	bash -c 'jq -e -s "map(select(.run_id == \"learn-oci\")) | any(.action == \"warn\" and .reason_code == \"host_not_allowed\") and all(.secret_id == null)" "$1"' _ "$AUDIT"

NOREALM=$T/norealm
project "$NOREALM" "  oci:
    enable: true
    allowed_hosts: [$TN_OCI_AUTH]"
out=$(run "$NOREALM" "curl -s -D - -o /dev/null http://\$CRGW_GATEWAY:8170/v2/registry/oci/$TN_OCI_AUTH/$REPO/manifests/1 | tr -d '\r' | grep -i '^x-crgw-reason'" 2>&1)
check "a token realm outside allowed_hosts: host_not_allowed ($out)" -- grep -q host_not_allowed <<<"$out"
check "audited: host_not_allowed naming the realm" -- \
	audit_has "$AUDIT" "select(.event==\"decision\" and .reason_code==\"host_not_allowed\" and .registry==\"oci\" and (.detail|test(\"realm api.test\")))"

# ---- a credential withdrawn on reload withdraws what it fetched --------------------------------------------
# The cache holds the image the realm's credential fetched from oci-auth.test, and the one worker holds the
# token it bought. A reload whose token_for no longer lists oci-auth.test withdraws both: the layer is no
# longer answered from the cache (the host is asked again, without the credential, and refuses), nor the
# manifest with the cached token. Put back, the credential serves them again.
blob_code() { run "$AUTH" "curl -s -o /dev/null -w '%{http_code}' http://\$CRGW_GATEWAY:8170/registry/oci/$TN_OCI_AUTH/v2/$REPO/blobs/$layer" 2>&1 | tail -1; }
tag_code() { run "$AUTH" "curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://\$CRGW_GATEWAY:8170/v2/registry/oci/$TN_OCI_AUTH/$REPO/manifests/1" 2>&1 | tail -1; }
out="$(blob_code) $(tag_code)"
check "before: the layer and the manifest by tag from $TN_OCI_AUTH ($out)" -- test "$out" = "200 200"
write_config false "$TN_OCI_TOKEN_PASSWORD_FILE" "$TN_OCI"
"$CTL" reload >/dev/null 2>&1
out="$(blob_code) $(tag_code)"
check "a reload withdraws the realm's credential from $TN_OCI_AUTH: neither the cached layer nor the cached token serves ($out)" -- \
	test "$out" = "502 502"
check "audited: the layer refused as upstream_unreachable, not a cache hit" -- \
	audit_has "$AUDIT" "select(.event==\"decision\" and .action==\"deny\" and .reason_code==\"upstream_unreachable\" and .dst_host==\"$TN_OCI_AUTH\" and .version==\"$layer\")"
write_config false
"$CTL" reload >/dev/null 2>&1
out="$(blob_code) $(tag_code)"
check "the credential put back: both served again ($out)" -- test "$out" = "200 200"

# ---- the realm refuses the gateway's credential ----------------------------------------------------------
gw_stop >/dev/null 2>&1
(umask 077 && printf 'not-the-password' >"$T/wrong-password")
write_config false "$T/wrong-password"
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not restart"; exit 1; }
rm -rf "$AUTH/img"
out=$(run "$AUTH" "$COPY --src-tls-verify=false docker://\$CRGW_GATEWAY:8170/registry/oci/$TN_OCI_AUTH/$REPO:1 dir:/workspace/img 2>&1; echo exit=\$?" 2>&1)
check "a credential the realm refuses: skopeo copy fails with the gateway's 502 ($(echo $out | tail -c 120))" -- \
	bash -c 'grep -q "502 Bad Gateway" <<<"$1" && ! grep -q "exit=0" <<<"$1"' _ "$out"
check "audited: upstream_unreachable naming the token endpoint's answer and the secret's id" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .action=="deny" and .reason_code=="upstream_unreachable" and .dst_host=="oci-auth.test" and .secret_id=="oci_token_pw" and (.detail|test("token endpoint api.test answered 401")))'

# ---- the realm's credential is not for this registry ---------------------------------------------------
# Another registry the policy allows (oci.test, here) may not name api.test as its realm and be sold a token
# for oci-auth.test's images with the operator's credential: the credential goes only with challenges of
# the registries its token_for lists. Asked without it, this realm refuses.
gw_stop >/dev/null 2>&1
write_config false "$TN_OCI_TOKEN_PASSWORD_FILE" "$TN_OCI"
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not restart"; exit 1; }
rm -rf "$AUTH/img"
before=$(wc -l <"$TOKLOG")
out=$(run "$AUTH" "$COPY --src-tls-verify=false docker://\$CRGW_GATEWAY:8170/registry/oci/$TN_OCI_AUTH/$REPO:1 dir:/workspace/img 2>&1; echo exit=\$?" 2>&1)
check "a realm credential whose token_for does not list $TN_OCI_AUTH: skopeo copy fails ($(echo $out | tail -c 120))" -- \
	bash -c 'grep -q "502 Bad Gateway" <<<"$1" && ! grep -q "exit=0" <<<"$1"' _ "$out"
check "the realm sold no token ($(wc -l <"$TOKLOG") lines, $before before)" -- test "$(wc -l <"$TOKLOG")" = "$before"
check "audited: upstream_unreachable naming token_for, without the secret's id" -- \
	audit_has "$AUDIT" 'select(.event=="decision" and .action=="deny" and .reason_code=="upstream_unreachable" and .dst_host=="oci-auth.test" and .secret_id==null and (.detail|test("registries.credentials.api.test.token_for")))'
out=$(blob_code)
check "nor is the layer the credential fetched answered from the cache, with no token held ($out)" -- test "$out" = 502
# The same registry with a realm that gives public images anonymous pull tokens: the copy succeeds, with a
# token asked for without the credential (docs/registries.md: public images still come).
printf '%s\n' "$REPO" >"$TN_STATE/secrets/oci-token.anonymous"
rm -rf "$AUTH/img"
before=$(wc -l <"$TOKLOG")
audit_before=$(wc -l <"$AUDIT")
out=$(run "$AUTH" "$COPY --src-tls-verify=false docker://\$CRGW_GATEWAY:8170/registry/oci/$TN_OCI_AUTH/$REPO:1 dir:/workspace/img 2>&1; echo exit=\$?" 2>&1)
rm -f "$TN_STATE/secrets/oci-token.anonymous"
check "a public image behind that realm: skopeo copy succeeds with an anonymous token ($(echo $out | tail -c 120))" -- \
	grep -q 'exit=0' <<<"$out"
check "its layer is the registry's" -- cmp -s "$AUTH/img/${layer#sha256:}" "$(blob_path "$layer")"
check "every token the realm sold for it went without the credential ($(($(wc -l <"$TOKLOG") - before)) tokens)" -- \
	bash -c 'tail -n +$(($2 + 1)) "$1" | jq -se "length > 0 and all(.anonymous)"' _ "$TOKLOG" "$before"
check "audited: the layer fetched from $TN_OCI_AUTH, not the cache's, without a secret_id" -- \
	bash -c 'tail -n +$(($2 + 1)) "$1" | jq -se --arg h "$3" --arg l "$4" "any(.[]; .event == \"connection_end\" and .dst_host == \$h and .version == \$l and .bytes_down > 0 and .cache != \"hit\" and .secret_id == null)"' \
	_ "$AUDIT" "$audit_before" "$TN_OCI_AUTH" "$layer"

# ---- offline: the registries stopped, the copy served from the cache and the metadata store ---------------
gw_stop >/dev/null 2>&1
write_config false
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not restart"; exit 1; }
rm -rf "$OCI/img"
run "$OCI" "$COPY docker://$TN_OCI_IMAGE dir:/workspace/img" >/dev/null 2>&1 # warm again after the gc
gw_stop >/dev/null 2>&1
for s in oci oci-auth; do
	[ -f "$TN_STATE/pids/$s.pid" ] && read -r pid _ <"$TN_STATE/pids/$s.pid" && kill -STOP "$pid" 2>/dev/null
done
write_config true
gw_start "$T" --config "$T/crgw.yaml" || { echo "Bail out! crgw did not start offline"; exit 1; }
rm -rf "$OCI/img"
out=$(run "$OCI" "$COPY docker://$TN_OCI_IMAGE dir:/workspace/img 2>&1; echo exit=\$?" 2>&1)
check "offline (cache.offline, the registry stopped): skopeo copy succeeds ($(echo $out | tail -c 200))" -- \
	grep -q 'exit=0' <<<"$out"
check "and its layer is the registry's" -- cmp -s "$OCI/img/${layer#sha256:}" "$(blob_path "$layer")"
out=$(run "$OCI" "curl -s -o /dev/null -w '%{http_code}' http://\$CRGW_GATEWAY:8170/v2/registry/oci/$TN_OCI/$REPO/manifests/never" 2>&1)
check "offline, a tag never fetched: 503 ($out)" -- test "$out" = 503
for s in oci oci-auth; do
	[ -f "$TN_STATE/pids/$s.pid" ] && read -r pid _ <"$TN_STATE/pids/$s.pid" && kill -CONT "$pid" 2>/dev/null
done

# Every restart above stopped a crgw; this one is checked: under the sanitizers a leak or undefined behaviour
# makes it fail.
gw_stop
ok $? "crgw stopped cleanly"

tap_done
