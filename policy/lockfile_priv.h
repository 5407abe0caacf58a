/* SPDX-License-Identifier: Apache-2.0 */
/* Private to the lockfile parsers: the helpers lockfile.c shares with the per-format files. */
#ifndef CRGW_POLICY_LOCKFILE_PRIV_H
#define CRGW_POLICY_LOCKFILE_PRIV_H

#include <stdbool.h>
#include <stddef.h>

#include "lockfile.h"

/* Bytes of untrusted input quoted back in an error message, after sanitizing. */
#define CRGW_LF_SNIPPET 48

/* A borrowed run of bytes; `p == NULL` means "absent", which only `registry` may be. */
struct crgw_lf_field {
	const char *p;
	size_t len;
};

struct crgw_lf_artifact {
	struct crgw_lf_field name;
	struct crgw_lf_field version;
	struct crgw_lf_field registry;
	struct crgw_lf_field integrity;
};

/* Walks `buf` line by line; the iterator borrows `buf`. */
struct crgw_lf_lines {
	const char *buf;
	size_t len;
	size_t pos;
	unsigned lineno;
};

/* Per-format parsers; same contract as crgw_lockfile_parse() after its common checks. */
int crgw_lf_parse_npm(const char *buf, size_t len, struct crgw_artifact_list *out,
		      struct crgw_lockfile_error *err);
int crgw_lf_parse_yarn(const char *buf, size_t len, struct crgw_artifact_list *out,
		       struct crgw_lockfile_error *err);
int crgw_lf_parse_pip(const char *buf, size_t len, struct crgw_artifact_list *out,
		      struct crgw_lockfile_error *err);
int crgw_lf_parse_gosum(const char *buf, size_t len, struct crgw_artifact_list *out,
			struct crgw_lockfile_error *err);

/* Fills `err` (may be NULL) and returns `code`, so a parser can `return crgw_lf_fail(...)`. */
int crgw_lf_fail(struct crgw_lockfile_error *err, int code, unsigned line, unsigned column,
		 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * Copies at most CRGW_LF_SNIPPET bytes of untrusted `p` into `dst` for an error message, replacing
 * anything but printable ASCII with '?', so a hostile lockfile cannot put control bytes in a log.
 */
void crgw_lf_snippet(char *dst, size_t size, const char *p, size_t len);

/*
 * Copies the borrowed fields into a new entry of `out`. Every field must be 1..CRGW_LOCKFILE_MAX_FIELD
 * bytes of printable ASCII without spaces (registry may be absent); the registry is lowercased.
 * -EINVAL or -E2BIG fill `err` at `line`, `column`; -ENOMEM too.
 */
int crgw_lf_append(struct crgw_artifact_list *out, const struct crgw_lf_artifact *a,
		   struct crgw_lockfile_error *err, unsigned line, unsigned column);

/*
 * The host of an http(s) URL (borrowed from `url`): userinfo and port dropped, IPv6 brackets removed,
 * one trailing dot dropped. -ENOENT when the URL is not http(s) (git+ssh:, file:, ...), -EINVAL with
 * `*why` set when it is http(s) but the authority is malformed.
 */
int crgw_lf_url_host(const char *url, size_t len, struct crgw_lf_field *host, const char **why);

/*
 * Checks one Subresource Integrity token "<sha1|sha256|sha384|sha512>-<base64>": known algorithm,
 * canonical padded base64, digest of that algorithm's length. 0, or -EINVAL with `*why` set.
 */
int crgw_lf_check_sri(const char *p, size_t len, const char **why);

/*
 * Strict standard base64 (padding required, no whitespace, unused bits zero, so every digest has one
 * spelling and string comparison of integrity values is sound). Returns 0 and the decoded size in
 * `*outlen`, or -EINVAL (bad input) / -E2BIG (more than `cap` bytes).
 */
int crgw_lf_b64_decode(const char *in, size_t len, unsigned char *out, size_t cap, size_t *outlen);

/* Encodes `len` bytes with padding; `cap` must hold 4 * ceil(len / 3) + 1 bytes or -E2BIG. */
int crgw_lf_b64_encode(const unsigned char *in, size_t len, char *out, size_t cap);

/*
 * npm package names as the registry allows them: "name" or "@scope/name", each part URL-safe
 * ([A-Za-z0-9-._~!*'()]) and not starting with '.' or '_'. Nothing that could climb a URL path.
 * Length is left to crgw_lf_append(), which reports it as such.
 */
bool crgw_lf_npm_name_ok(const char *p, size_t n);

/* Registry versions are semver: [0-9A-Za-z.+-] only, starting with a digit. */
bool crgw_lf_semver_ok(const char *p, size_t n);

/* The next line without its "\n" or "\r\n"; false at the end. `it->lineno` is the returned line's number. */
bool crgw_lf_next_line(struct crgw_lf_lines *it, const char **line, size_t *llen);

static inline bool crgw_lf_is_space(char c)
{
	return c == ' ' || c == '\t';
}

#endif
