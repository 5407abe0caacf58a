/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The mediation service's request paths, made canonical before anything routes on them: one percent-decoding,
 * and every form that could name one thing two ways (dot segments, empty segments, encoded slashes,
 * backslashes, double encoding) refused rather than repaired. No I/O.
 */
#ifndef CRGW_MEDIATION_PATH_H
#define CRGW_MEDIATION_PATH_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Canonicalizes an origin-form request target ("/a/b?q"). The decoded path goes to `out` (NUL-terminated,
 * `*out_len` bytes); `*query` points into `target` after the '?' (raw, undecoded; NULL without one). A
 * final '/' is kept ("/meta/"). Returns 0, or -1 with `*why` saying what was refused.
 */
int med_path_canon(const char *target, size_t len, char *out, size_t outsz, size_t *out_len, const char **query,
		   size_t *qlen, const char **why);

/* true when the path is `prefix` or starts with `prefix` + '/': `*path` then moves past the prefix. */
bool med_path_take(const char **path, size_t *len, const char *prefix);

/* Takes the next non-empty segment of a path that starts with '/'; 0, or -1 when there is none. */
int med_path_segment(const char **path, size_t *len, const char **seg, size_t *seglen);

/*
 * The value of `name` in a raw query string, percent-decoded once into `out` (NUL-terminated). 0; -ENOENT
 * when absent; -EINVAL when malformed, given twice, or holding NUL or control bytes; -E2BIG when too long.
 */
int med_query_param(const char *query, size_t qlen, const char *name, char *out, size_t outsz, size_t *out_len);

#endif
