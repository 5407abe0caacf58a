#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end for crgw-ctl image: pulls from the test network's docker-registry (oci.test, anonymous; and
# oci-auth.test behind the Bearer token endpoint of api.test) into a fresh store, the ext4 result checked with
# e2fsck -fn and debugfs. The test network's own image (umoci, skopeo) and images this test pushes itself
# (image_fixtures.py: two layers with a whiteout, a multi-platform index, and bad ones). Checks: tag-only
# references refused, --resolve, the index's linux/amd64 entry chosen, a re-run resumes from verified blobs,
# credentials needed and used for the token flow, and each bad input (truncated layer, digest mismatch on the
# registry's storage, a wrong pinned digest, a tar path escape, a gzip bomb) failing with a clear message, a
# non-zero exit and no image nor temporary file left. crgw-ctl runs inside the test network's namespace, so
# every name resolves there (its resolver) and no packet leaves the test addresses.
# TAP output. Needs root. Run it under `flock /tmp/crgw-e2e.lock` beside other engineers' e2e runs.
# Last, through the gateway: crgw-ctl image pull --registry-mirror inside a crgw-ctl run sandbox, through the
# OCI mediation on 8170 and its content cache, audited.
# The guest agent, when given, is injected into one image and checked there.
# usage: image.sh CRGW CRGW_CTL [CRGW_GUEST]
set -uo pipefail
CRGW=$1
CTL=$2
GUEST=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"

T=$(mktemp -d /tmp/crgw-e2e-image.XXXXXX)
chmod 0755 "$T"
testnet_on_exit '[ -n "${CRGW_E2E_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"'
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
testnet_registries_up || { echo "Bail out! the test registries did not come up"; exit 1; }
V2=$TN_STATE/oci/data/docker/registry/v2
STORE=$T/store

ctl() { testnet_exec "$CTL" image "$@" --store "$STORE" --ca-file "$TN_CA"; }
in_curl() { testnet_exec curl --noproxy '*' -sS --fail --max-time 20 --cacert "$TN_CA" "$@"; }
ms() { date +%s%N | cut -c1-13; }
no_leftovers() { # no image beyond those named, nothing in tmp/
	[ -z "$(ls -A "$STORE/tmp")" ] && [ "$(ls "$STORE/images" | wc -l)" -eq "$1" ] && return 0
	diag "left in tmp/: $(ls -A "$STORE/tmp" | tr '\n' ' ')" "images: $(ls "$STORE/images" | wc -l), want $1"
	return 1
}

# ---- push what image_fixtures.py built, with the registry's own API ----------------------------------------
python3 "$here/image_fixtures.py" "$T/fx" || { echo "Bail out! image_fixtures.py failed"; exit 1; }
push() { # push KIND REPO: every blob and manifest of fixture KIND into REPO on oci.test
	local dir=$T/fx/$1 repo=$2 kind hex tag mt file loc
	while read -r kind hex tag mt file; do
		if [ "$kind" = blob ]; then
			[ -z "$hex" ] && continue
			loc=$(in_curl -X POST -D - -o /dev/null "https://oci.test/v2/$repo/blobs/uploads/" |
				tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
			[ -n "$loc" ] || return 1
			case $loc in http*) ;; *) loc=https://oci.test$loc ;; esac
			in_curl -X PUT -o /dev/null -H 'Content-Type: application/octet-stream' \
				--data-binary "@$dir/blobs/$hex" "$loc&digest=sha256:$hex" || return 1
		else
			# the fields are: manifest TAG MEDIATYPE FILE, read as kind hex tag mt
			in_curl -X PUT -o /dev/null -H "Content-Type: $tag" --data-binary "@$dir/$mt" \
				"https://oci.test/v2/$repo/manifests/$hex" || return 1
		fi
	done <"$dir/push"
}
digest_of() { printf 'sha256:%s\n' "$(sha256sum <"$T/fx/$1/manifest-$2" | cut -d' ' -f1)"; }
for k in good index truncated escape bomb mismatch big; do
	push "$k" "crgw/img-$k" || { echo "Bail out! pushing fixture $k failed"; exit 1; }
done

# ---- the test network's own image (umoci, skopeo) ------------------------------------------------------------
hello_digest=$(cat "$V2/repositories/crgw/hello/_manifests/tags/1/current/link")
out=$(ctl pull oci.test/crgw/hello:1 2>&1)
rc=$?
ok "$([ $rc -ne 0 ] && grep -q 'pin a digest' <<<"$out" && echo 0 || echo 1)" \
	"a tag alone is refused, saying to pin a digest (exit $rc)"
out=$(ctl pull --resolve oci.test/crgw/hello:1 2>&1)
ok "$([ "$out" = "oci.test/crgw/hello:1@$hello_digest" ] && echo 0 || echo 1)" "--resolve prints the pinned reference"

t0=$(ms)
out=$(ctl pull "oci.test/crgw/hello@$hello_digest" 2>&1)
rc=$?
t1=$(ms)
ok "$([ $rc -eq 0 ] && [ "$out" = "$hello_digest" ] && echo 0 || echo 1)" \
	"pull of the umoci-built image by digest: its id is the digest ($((t1 - t0)) ms for pull and ext4)"
diag "pull + apply + ext4 of oci.test/crgw/hello: $((t1 - t0)) ms"
rootfs=$(ctl rootfs "$hello_digest" 2>/dev/null)
check "e2fsck -fn finds the image clean" -- e2fsck -fn "$rootfs"
ok "$(debugfs -R 'cat /hello.txt' "$rootfs" 2>/dev/null | grep -q . && echo 0 || echo 1)" "/hello.txt is in the image"
t0=$(ms)
out=$(ctl pull "oci.test/crgw/hello@$hello_digest" 2>&1)
t1=$(ms)
ok "$([ "$out" = "$hello_digest" ] && echo 0 || echo 1)" "a second pull finds it in the store ($((t1 - t0)) ms)"

# ---- two layers, a whiteout, the config --------------------------------------------------------------------
good=$(digest_of good 1)
t0=$(ms)
guest_opt=()
[ -n "$GUEST" ] && guest_opt=(--guest "$GUEST")
events=$(ctl pull --json "${guest_opt[@]}" "oci.test/crgw/img-good@$good" 2>"$T/err")
rc=$?
t1=$(ms)
ok "$rc" "pull of a two-layer image (gzip and plain tar) with --json ($((t1 - t0)) ms)"
ok "$(jq -se 'map(.event) | index("blob_done") and index("apply") and index("write") and (.[-1] == "done")' \
	<<<"$events" >/dev/null && echo 0 || echo 1)" "--json prints blob_done, apply, write and done events"
rootfs=$(ctl rootfs "$good")
img() { debugfs -R "$1" "$rootfs" 2>/dev/null; }
check "its ext4 is clean (e2fsck -fn)" -- e2fsck -fn "$rootfs"
ok "$([ "$(img 'cat /work/readme')" = "upper layer" ] && [ "$(img 'cat /etc/os-release')" = "ID=crgw-test" ] &&
	echo 0 || echo 1)" "both layers' files are there"
ok "$(img 'stat /etc/removed' | grep -q . && echo 1 || echo 0)" "the upper layer's whiteout removed /etc/removed"
ok "$(img 'stat /usr/bin/passwd' | grep -q 'Mode:  04755' && img 'stat /bin/sh' | grep -q 'Fast link dest: "hello"' &&
	echo 0 || echo 1)" "setuid bit and symlink kept"
if [ -n "$GUEST" ]; then
	img "dump /sbin/crgw-guest $T/guest.out" >/dev/null
	cmp -s "$GUEST" "$T/guest.out" && img 'stat /sbin/crgw-guest' | grep -q 'Mode:  0755' &&
		[ "$(ctl inspect "$good" | jq -r .guest)" = "$GUEST" ]
	ok "$?" "crgw-guest injected as /sbin/crgw-guest, 0755, byte for byte"
fi
info=$(ctl inspect "${good:7:16}")
ok "$(jq -e '.image_config.entrypoint == ["/bin/hello"] and .image_config.workdir == "/work" and
	(.image_config.env | index("GREETING=hi")) and (.layers | length) == 2 and .manifest == "'"$good"'"' \
	<<<"$info" >/dev/null && echo 0 || echo 1)" "inspect shows entrypoint, env, workdir, layers (by a 16-digit prefix)"
ok "$(ctl ls --json | jq -e 'length == 2' >/dev/null && ctl ls | grep -q "img-good" && echo 0 || echo 1)" \
	"ls lists both images, --json and text"

# ---- an index: the linux/amd64 manifest; and a re-run resumes from verified blobs -------------------------
multi=$(digest_of index multi)
amd=$(digest_of index amd64)
ctl pull "oci.test/crgw/img-index@$multi" >/dev/null 2>"$T/err"
ok "$?" "pull of a multi-platform index"
rec=$(ctl inspect "$multi")
ok "$(jq -e '.index == "'"$multi"'" and .manifest == "'"$amd"'"' <<<"$rec" >/dev/null && echo 0 || echo 1)" \
	"the index's linux/amd64 manifest was chosen"
ok "$(debugfs -R 'stat /arm' "$(ctl rootfs "$multi")" 2>/dev/null | grep -q . && echo 1 || echo 0)" \
	"nothing of the arm64 image is in it"
events=$(ctl pull --json "oci.test/crgw/img-index@$amd" 2>&1)
jq -se '[.[] | select(.event == "blob_done")] | length == 3 and all(.cached)' <<<"$events" >/dev/null
ok "$?" \
	"pulling its amd64 manifest again fetches no blob already verified in the layer store"
ctl rm "$amd" >/dev/null 2>&1
no_leftovers 3
ok "$?" "rm removes the image"
# A blob damaged in the layer store after it was verified: the next build notices, removes it, fails clearly;
# the pull after that fetches it again.
l=$(jq -r '.layers[0].digest' <<<"$rec")
f=$STORE/blobs/sha256/${l#sha256:}
ctl rm "$multi" >/dev/null 2>&1
ok "$([ -f "$f" ] && echo 0 || echo 1)" "rm keeps the blobs another image uses"
head -c "$(stat -c %s "$f")" /dev/urandom >"$f.new" && mv "$f.new" "$f"
out=$(ctl pull "oci.test/crgw/img-index@$multi" 2>&1)
rc=$?
ok "$([ $rc -ne 0 ] && grep -q 'in the store reads as' <<<"$out" && [ ! -e "$f" ] && no_leftovers 2 && echo 0 ||
	echo 1)" "a damaged blob in the layer store fails the build and is removed (exit $rc)"
ctl pull "oci.test/crgw/img-index@$multi" >/dev/null 2>&1
ok "$?" "the next pull fetches it again"

# ---- the token flow: oci-auth.test with and without credentials -----------------------------------------
S2=$T/store-auth
out=$(testnet_exec "$CTL" image pull --store "$S2" --ca-file "$TN_CA" "oci-auth.test/crgw/hello@$hello_digest" 2>&1)
rc=$?
ok "$([ $rc -ne 0 ] && grep -q 'token endpoint api.test answered 401' <<<"$out" && echo 0 || echo 1)" \
	"without credentials the token endpoint refuses, said clearly (exit $rc)"
before=$(cat "$TN_STATE/secrets/oci-token.log" 2>/dev/null | wc -l)
out=$(testnet_exec "$CTL" image pull --store "$S2" --ca-file "$TN_CA" --username "$TN_OCI_TOKEN_USER" \
	--password-file "$TN_OCI_TOKEN_PASSWORD_FILE" "oci-auth.test/crgw/hello@$hello_digest" 2>&1)
ok "$([ "$out" = "$hello_digest" ] && echo 0 || echo 1)" "with credentials the Bearer token flow pulls the image"
ok "$(tail -n +"$((before + 1))" "$TN_STATE/secrets/oci-token.log" | jq -se 'length >= 1 and
	all(.scope == "repository:crgw/hello:pull")' >/dev/null && echo 0 || echo 1)" "the token asked for is pull on the repository"

# ---- bad input: a clear error, non-zero exit, nothing left ----------------------------------------------
bad() { # bad DESCRIPTION WANT-REGEX PULL-ARGS...
	local desc=$1 want=$2 out rc
	shift 2
	out=$(ctl pull "$@" 2>&1)
	rc=$?
	[ $rc -ne 0 ] && grep -Eq "$want" <<<"$out" && no_leftovers "$IMAGES"
	ok "$?" "$desc (exit $rc)"
	diag "$out"
}
IMAGES=3
bad "a truncated layer fails" "truncated" "oci.test/crgw/img-truncated@$(digest_of truncated 1)"
bad "a tar path escaping the root fails" "path with '\.\.'" "oci.test/crgw/img-escape@$(digest_of escape 1)"
ok "$([ ! -e /tmp/crgw-escaped ] && echo 0 || echo 1)" "and nothing was written outside"
bad "a gzip bomb layer fails against --max-bytes 16M" "more than the limit of uncompressed" --max-bytes 16M \
	"oci.test/crgw/img-bomb@$(digest_of bomb 1)"
# The registry's stored layer swapped for other bytes of the same size: the pull must not keep them.
mm_layer=$(jq -r '.layers[0].digest' "$T/fx/mismatch/manifest-1")
h=${mm_layer#sha256:}
f=$V2/blobs/sha256/${h:0:2}/$h/data
head -c "$(stat -c %s "$f")" /dev/urandom >"$f.new" && mv "$f.new" "$f"
bad "a layer whose bytes do not match its digest fails" "digest mismatch" \
	"oci.test/crgw/img-mismatch@$(digest_of mismatch 1)"
ok "$([ ! -e "$STORE/blobs/sha256/$h" ] && echo 0 || echo 1)" "and the layer store does not hold it"
bad "a pinned digest the registry does not have fails" "not found" \
	"oci.test/crgw/img-good@sha256:$(printf x | sha256sum | cut -d' ' -f1)"
# The registry's stored manifest swapped for another manifest: the digest pinned is what decides.
h=${good#sha256:}
cp "$T/fx/index/manifest-arm64" "$V2/blobs/sha256/${h:0:2}/$h/data"
ctl rm "$good" >/dev/null
IMAGES=2
bad "a manifest whose bytes do not match the pinned digest fails" "digest mismatch" "oci.test/crgw/img-good@$good"

# ---- import ------------------------------------------------------------------------------------------------
mkdir -p "$T/rootfs/bin"
printf '#!/bin/sh\necho imported\n' >"$T/rootfs/bin/hi"
chmod 0755 "$T/rootfs/bin/hi"
tar czf "$T/rootfs.tgz" -C "$T/rootfs" .
id=$(ctl import "$T/rootfs.tgz" 2>"$T/err")
ok "$([ "$id" = "sha256:$(sha256sum <"$T/rootfs.tgz" | cut -d' ' -f1)" ] && echo 0 || echo 1)" \
	"import: the tarball's sha256 is the image's id"
ok "$(debugfs -R 'cat /bin/hi' "$(ctl rootfs "$id")" 2>/dev/null | grep -q imported && echo 0 || echo 1)" \
	"import: its files are in the ext4 image"

# ---- killed in the middle: nothing usable left, the next run resumes ---------------------------------------
S3=$T/store-kill
big=$(digest_of big 1)
killed_at() { # killed_at EVENT: a pull of the big image, SIGKILLed at its first EVENT; prints what it saw
	local line pid seen=no
	exec 3< <(exec ip netns exec "$TN_NS" "$CTL" image pull --json --store "$S3" --ca-file "$TN_CA" \
		"oci.test/crgw/img-big@$big" 2>/dev/null)
	pid=$!
	while read -r line <&3; do
		case $line in *"\"event\":\"$1\""*) kill -9 "$pid" 2>/dev/null && seen=yes; break ;; esac
	done
	exec 3<&-
	wait "$pid" 2>/dev/null
	echo "$seen"
}
seen=$(killed_at blob)
ok "$([ "$seen" = yes ] && [ ! -e "$S3/images/${big#sha256:}" ] && echo 0 || echo 1)" \
	"a pull killed while a blob downloads leaves no image"
seen=$(killed_at apply)
ok "$([ "$seen" = yes ] && [ ! -e "$S3/images/${big#sha256:}" ] && echo 0 || echo 1)" \
	"a pull killed while its layers are applied leaves no image"
events=$(testnet_exec "$CTL" image pull --json --store "$S3" --ca-file "$TN_CA" "oci.test/crgw/img-big@$big" 2>&1)
jq -se '([.[] | select(.event == "blob_done")] | length == 2 and all(.cached)) and .[-1].event == "done"' \
	<<<"$events" >/dev/null
ok "$?" "the next run completes from the blobs already verified, fetching none"
check "its ext4 is clean" -- e2fsck -fn "$S3/images/${big#sha256:}/rootfs.ext4"
# What an interrupted download leaves (tmp/partial-HEX) is continued with a Range request, then checked whole.
big_layer=$(jq -r '.layers[0].digest' "$T/fx/big/manifest-1")
h=${big_layer#sha256:}
pull_in() { testnet_exec "$CTL" image pull --json --store "$1" --ca-file "$TN_CA" "oci.test/crgw/img-big@$big" 2>&1; }
mkdir -p "$T/store-resume/tmp" "$T/store-badpart/tmp"
head -c $((48 << 20)) "$T/fx/big/blobs/$h" >"$T/store-resume/tmp/partial-$h"
events=$(pull_in "$T/store-resume")
jq -se --arg d "$big_layer" 'any(.[]; .event == "blob_done" and .digest == $d and .resumed == 50331648)' \
	<<<"$events" >/dev/null && [ -e "$T/store-resume/images/${big#sha256:}" ] && [ ! -e "$T/store-resume/tmp/partial-$h" ]
ok "$?" "a half-fetched layer is continued from byte 48 MiB (Range), verified whole, the image made"
head -c $((48 << 20)) /dev/urandom >"$T/store-badpart/tmp/partial-$h"
out=$(pull_in "$T/store-badpart")
grep -q 'digest mismatch.*earlier run fetched' <<<"$out" && [ ! -e "$T/store-badpart/tmp/partial-$h" ] &&
	[ ! -e "$T/store-badpart/images/${big#sha256:}" ]
ok "$?" "a partial download holding wrong bytes fails the digest check and is removed"
pull_in "$T/store-badpart" >/dev/null && [ -e "$T/store-badpart/images/${big#sha256:}" ]
ok "$?" "the next pull fetches the layer from the start"

# ---- through the gateway's OCI mediation, from inside a sandbox ----------------------------------------------
printf 'mediation:\n  ca_file: %s\n' "$TN_CA" >"$T/crgw.yaml"
if gw_start "$T" --config "$T/crgw.yaml"; then
	W=$T/mirror
	mkdir -p "$W"
	cp "$CTL" "$W/crgw-ctl"
	printf 'version: 1\nsandbox:\n  network:\n    default: deny\nregistries:\n  oci:\n    enable: true\n    allowed_hosts: [oci.test]\n' \
		>"$W/cleanroom.yaml"
	# LeakSanitizer cannot stop the world under the sandbox's seccomp filter: leaks are checked by the pulls
	# above, on the host; in the sandbox (an ASan build of crgw-ctl) only ASan and UBSan.
	mirror_pull() { # mirror_pull STORE
		"$CTL" run --rm --policy "$W/cleanroom.yaml" --workspace "$W" --workspace-mode rw -- sh -c \
			"ASAN_OPTIONS=detect_leaks=0 /workspace/crgw-ctl image pull --store /workspace/$1 --registry-mirror http://\$CRGW_GATEWAY:8170/registry/oci oci.test/crgw/hello@$hello_digest"
	}
	out=$(mirror_pull store1 2>&1)
	ok "$([ "$(tail -n1 <<<"$out")" = "$hello_digest" ] && echo 0 || echo 1)" \
		"pull --registry-mirror from a sandbox through the gateway's OCI mediation ($(tail -c 200 <<<"$out"))"
	r1=$W/store1/images/${hello_digest#sha256:}/rootfs.ext4
	check "its ext4 is clean and holds /hello.txt" -- sh -c \
		"e2fsck -fn '$r1' && debugfs -R 'cat /hello.txt' '$r1' | grep -q ."
	hello_layer=$(jq -r '.layers[0].digest' "$W/store1/images/${hello_digest#sha256:}/image.json")
	check "audited: the layer's connection_end through mediation" -- audit_has "$T/audit.log" \
		"select(.event==\"connection_end\" and .registry==\"oci\" and .version==\"$hello_layer\")"
	out=$(mirror_pull store2 2>&1)
	ok "$([ "$(tail -n1 <<<"$out")" = "$hello_digest" ] && echo 0 || echo 1)" "a second pull into another store"
	check "its layer came from the gateway's content cache" -- audit_has "$T/audit.log" \
		"select(.event==\"connection_end\" and .registry==\"oci\" and .version==\"$hello_layer\" and .cache==\"hit\")"
else
	ok 1 "crgw started for the mirror pulls"
fi

tap_done
