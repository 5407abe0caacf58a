/* SPDX-License-Identifier: Apache-2.0 */
/* Creating the directories the gateway's files live in, on a fresh machine, without following planted links. */
#ifndef CRGW_GATEWAY_FSUTIL_H
#define CRGW_GATEWAY_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Makes sure the directory that will hold `path` exists: every missing directory above the last
 * component of `path` is created with exactly `mode` (whatever the umask), owned by the caller. `path`
 * itself is never created; trailing slashes are ignored, so "/run/crgw/state/" makes /run/crgw. A
 * relative path is taken from the current directory.
 *
 * When the directory already exists nothing is checked or changed. When something is missing, the path
 * is walked one component at a time from a directory descriptor, and a symbolic link on the way is
 * followed only when it and the directory it sits in belong to root (or to the caller) and that
 * directory is writable by nobody else; otherwise the walk stops with -EPERM, so a user who can write a
 * directory on the path cannot send a privileged mkdir elsewhere.
 *
 * Returns 0 or -errno; on failure writes a sentence naming the directory and the cause into
 * `why` (`why_size` bytes, may be 0). Borrows `path`. Any thread; no state.
 */
int crgw_fs_make_parents(const char *path, mode_t mode, char *why, size_t why_size);

#endif
