#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Writes the git fuzz targets' seed corpora from real git output (run once by hand; the files are
# committed). Each seed is one control byte (see the target) followed by what git wrote. No network.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
export HOME=$t GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=F GIT_AUTHOR_EMAIL=f@example.com GIT_COMMITTER_NAME=F \
	GIT_COMMITTER_EMAIL=f@example.com GIT_AUTHOR_DATE='1700000000 +0000' GIT_COMMITTER_DATE='1700000000 +0000'
unset GIT_PROTOCOL GIT_DIR
git config --global init.defaultBranch main
git config --global protocol.version 0
cd "$t"

seed() { # seed TARGET NAME BYTE FILE
	mkdir -p "$here/corpus/$1"
	{ printf "\\x$3"; cat "$4"; } > "$here/corpus/$1/$2"
}
http() { # http SERVICE FILE: the service line and flush git-http-backend puts first
	local line="# service=$1"
	printf '%04x%s\n0000' $(( ${#line} + 5 )) "$line"
	cat "$2"
}

git init -q a && (cd a && echo 1 > f && git add f && git commit -q -m one && git tag -a v1 -m v1 &&
	git branch dev && for i in 2 3 4 5 6; do
		printf 'commit %s\n\n%s\n' $i "$(seq 1 40 | tr '\n' ' ')" > msg; echo $i >> f;
		git commit -q -a -F msg; done)
git init -q --bare empty.git
git init -q --object-format=sha256 s && (cd s && echo 1 > f && git add f && git commit -q -m one && git tag light)

git receive-pack --advertise-refs a > rp; http git-receive-pack rp > x; seed git_adv receive-pack 00 x
git upload-pack --advertise-refs a > up; http git-upload-pack up > x; seed git_adv upload-pack 01 x
git receive-pack --advertise-refs empty.git > e; http git-receive-pack e > x; seed git_adv empty 00 x
git receive-pack --advertise-refs s > s2; http git-receive-pack s2 > x; seed git_adv sha256 12 x
GIT_PROTOCOL=version=2 git upload-pack --advertise-refs a > v2; seed git_adv v2 01 v2
GIT_PROTOCOL=version=1 git receive-pack --advertise-refs a > v1; http git-receive-pack v1 > x; seed git_adv v1 10 x

printf 'main\n' | git -C a pack-objects --revs -q --stdout --window=50 --delta-base-offset --no-reuse-delta > p
seed git_pack ofs-delta 00 p
printf 'main\n' | git -C a pack-objects --revs -q --stdout --window=50 --no-reuse-delta > p
seed git_pack ref-delta 00 p
printf 'main\n^main~2\n' | git -C a pack-objects --revs -q --stdout --thin --delta-base-offset > p
seed git_pack thin 00 p
printf 'main\n' | git -C s pack-objects --revs -q --stdout > p
seed git_pack sha256 01 p

printf '#!/bin/sh\ntee "$CAPTURE" | git receive-pack "$@"\n' > rp.sh && chmod +x rp.sh
git init -q --bare R.git && git -C a push -q "$t/R.git" main~3:refs/heads/main
CAPTURE=$t/c git -C a push -q --receive-pack="$t/rp.sh" "$t/R.git" main; seed git_push fast-forward 00 c
CAPTURE=$t/c git -C a push -q --receive-pack="$t/rp.sh" "$t/R.git" dev v1; seed git_push create 00 c
CAPTURE=$t/c git -C a push -q --receive-pack="$t/rp.sh" "$t/R.git" :dev; seed git_push delete 00 c
(cd a && git commit -q --amend -m rewritten)
CAPTURE=$t/c git -C a push -q --receive-pack="$t/rp.sh" "$t/R.git" +main; seed git_push rewrite 00 c
git init -q --bare --object-format=sha256 S.git && git -C s push -q "$t/S.git" main
(cd s && echo 2 >> f && git commit -q -am two)
CAPTURE=$t/c git -C s push -q --receive-pack="$t/rp.sh" "$t/S.git" main; seed git_push sha256 00 c
git -C R.git config receive.advertisePushOptions true
(cd a && echo 7 >> f && git commit -q -am seven)
CAPTURE=$t/c git -C a push -q -o ci.skip --receive-pack="$t/rp.sh" "$t/R.git" main; seed git_push options 00 c
ls -l "$here"/corpus/*
