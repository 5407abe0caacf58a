/* SPDX-License-Identifier: Apache-2.0 */
/* Lockfile parsers: turn a lockfile's bytes into the artifact allowlist the mediation layer enforces. */
#ifndef CRGW_POLICY_LOCKFILE_H
#define CRGW_POLICY_LOCKFILE_H

#include <stddef.h>

/* Bounds on untrusted lockfile input; going over is an error, never a truncation. */
#define CRGW_LOCKFILE_MAX_BYTES (64u * 1024 * 1024)
#define CRGW_LOCKFILE_MAX_ARTIFACTS 200000u
#define CRGW_LOCKFILE_MAX_FIELD 1024u

/*
 * One allowed artifact: a package at a version whose content must hash to `integrity`.
 * All strings are owned by the list. `registry` is the host the lockfile resolved the artifact from,
 * lowercased, or NULL where the format does not say (go.sum, pip without --index-url).
 * `integrity` keeps the lockfile's own notation: "sha512-<base64>" / "sha1-<base64>" (npm, yarn),
 * "sha256:<hex>" (pip), "h1:<base64>" (go).
 */
struct crgw_artifact {
	char *name;
	char *version;
	char *registry;
	char *integrity;
};

struct crgw_artifact_list {
	struct crgw_artifact *items;
	size_t count;
	size_t capacity;
};

/* Where and why a lockfile was refused. `line` and `column` are 1-based; 0 when unknown. */
struct crgw_lockfile_error {
	unsigned line;
	unsigned column;
	char message[256];
};

enum crgw_lockfile_kind {
	CRGW_LOCKFILE_NPM,   /* package-lock.json / npm-shrinkwrap.json, lockfileVersion 2 or 3 */
	CRGW_LOCKFILE_YARN,  /* yarn.lock v1 */
	CRGW_LOCKFILE_PIP,   /* requirements.txt with --hash on every requirement */
	CRGW_LOCKFILE_GOSUM, /* go.sum */
};

/* Which parser a file name calls for (by its base name); -ENOENT for a name no parser knows. */
int crgw_lockfile_kind_from_name(const char *path, enum crgw_lockfile_kind *out);

/* The registry kind (`npm`, `pip`, `go`) whose lockfile_enforcement may list this kind. */
const char *crgw_lockfile_registry(enum crgw_lockfile_kind kind);

/*
 * Parses `len` bytes of `buf` (borrowed; need not be NUL-terminated; may contain anything) and appends
 * the artifacts to `out`. Returns 0, or -EINVAL with `err` filled for malformed or unsupported input,
 * -E2BIG when a bound above is exceeded, -ENOMEM. On error `out` may hold a partial list; the caller
 * frees it with crgw_artifact_list_free().
 */
int crgw_lockfile_parse(enum crgw_lockfile_kind kind, const char *buf, size_t len,
			struct crgw_artifact_list *out, struct crgw_lockfile_error *err);

/* Sorts by (name, version, integrity, registry) and drops exact duplicates, so output is canonical. */
void crgw_artifact_list_sort_unique(struct crgw_artifact_list *list);

/* Frees every entry and the array; the list is left empty and reusable. Accepts an empty list. */
void crgw_artifact_list_free(struct crgw_artifact_list *list);

#endif
