#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# meson install step: puts the example crgw.yaml in place unless one is already there, so that a
# reinstall never overwrites an operator's configuration.
# usage: install-config.sh EXAMPLE SYSCONFDIR/crgw  (DESTDIR from the environment, as meson sets it)
set -eu
example=$1
dir=${DESTDIR:-}$2
if [ -e "$dir/crgw.yaml" ]; then
	echo "Keeping $dir/crgw.yaml (the current example is $example)"
	exit 0
fi
install -d -m 0755 "$dir"
install -m 0644 "$example" "$dir/crgw.yaml"
echo "Installing $example to $dir/crgw.yaml"
