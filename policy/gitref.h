/* SPDX-License-Identifier: Apache-2.0 */
/* Git ref names and the ref patterns of git.push_refs, read alike by the compiler and the loader. */
#ifndef CRGW_POLICY_GITREF_H
#define CRGW_POLICY_GITREF_H

#include <stdbool.h>
#include <stddef.h>

/* The longest pattern a policy may hold: the compiler's string limit, checked again at load. */
#define GITREF_PATTERN_MAX 256

/*
 * git.push_refs when a policy has none: every branch and every tag. Notes, refs/meta/ (review
 * configuration on some servers) and other namespaces must be named to be pushed. Sorted, as the
 * compiled form is.
 */
#define GITREF_DEFAULT_PUSH_REFS { "refs/heads/*", "refs/tags/*" }

/* A checked pattern; `text` is borrowed. `star` is the offset of its '*', or `len` when it has none. */
struct gitref_pattern {
	const char *text;
	size_t len;
	size_t star;
};

/*
 * Checks `len` bytes of `s` (borrowed; may hold NUL, which is refused) as a full ref name beginning with
 * "refs/", by the rules of git check-ref-format. With `pattern`, one '*' is allowed as well, and `out`
 * (if non-NULL) is filled. Returns 0 or -EINVAL with `*why` (if non-NULL) set to a static explanation.
 */
int gitref_check(const char *s, size_t len, bool pattern, struct gitref_pattern *out, const char **why);

/*
 * Whether `len` bytes of `ref` match `p`: byte for byte, case-sensitive; a '*' stands for one or more
 * bytes, '/' included. Does not check `ref` itself (gitref_check does). Never allocates.
 */
bool gitref_match(const struct gitref_pattern *p, const char *ref, size_t len);

#endif
