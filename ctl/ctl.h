/* SPDX-License-Identifier: Apache-2.0 */
/* Shared pieces of crgw-ctl's subcommands. */
#ifndef CRGW_CTL_H
#define CRGW_CTL_H

#include <stdbool.h>
#include <stddef.h>

/* Exit codes, documented in `crgw-ctl --help` and docs/ctl.md. */
#define CTL_EXIT_OK 0
#define CTL_EXIT_DENY 1
#define CTL_EXIT_ERROR 2

struct repo_policy {
	char path[4096];      /* the policy file to read */
	char root[4096];      /* repository root: lockfiles resolve beneath it */
	char source[256];     /* path recorded in the compiled policy, relative to the root */
	char warning[4300];   /* non-empty when both candidate files exist */
};

/*
 * Finds the policy for `arg` (a file, a directory, or NULL for "."): DIR/cleanroom.yaml first, then
 * DIR/.buildkite/cleanroom.yaml. Returns 0, or -errno with a message in `err`.
 */
int repo_find_policy(const char *arg, struct repo_policy *out, char *err, size_t errlen);

/* Reads a whole regular file of at most `max` bytes. Returns 0 with a malloc'd buffer, -E2BIG, or -errno. */
int repo_read_file(const char *path, size_t max, char **buf, size_t *len);

/* A crgw_read_file_cb that reads beneath the repository root `arg` (a const char *), refusing to leave it. */
int repo_read_beneath(void *arg, const char *path, size_t max, char **buf, size_t *len);

int cmd_policy(int argc, char **argv);

#endif
