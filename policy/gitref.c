/* SPDX-License-Identifier: Apache-2.0 */
/* Checks git ref names and matches them against git.push_refs patterns. */
#include <errno.h>
#include <string.h>

#include "gitref.h"

static int fail(const char **why, const char *text)
{
	if (why)
		*why = text;
	return -EINVAL;
}

/*
 * The rules are git's own (refs.c, check_refname_format) so that a pattern the policy accepts can name a
 * ref git would create, and a ref name that git would refuse never reaches a pattern: '*' matches '/', so
 * "refs/heads/agent-x/../../tags/v1" would otherwise match "refs/heads/agent-*". Bytes from 0x80 up are
 * allowed, as git allows them; they match only themselves.
 */
int gitref_check(const char *s, size_t len, bool pattern, struct gitref_pattern *out, const char **why)
{
	size_t comp = 0, star = len;

	if (len < 5 || memcmp(s, "refs/", 5) != 0)
		return fail(why, "a ref must be a full name beginning with 'refs/'");
	for (size_t i = 0; i <= len; i++) {
		unsigned char ch = i < len ? (unsigned char)s[i] : '/';

		if (ch == '/') {
			if (i == comp)
				return fail(why, "empty path component ('//' or a trailing '/')");
			if (s[comp] == '.')
				return fail(why, "a path component cannot begin with '.'");
			if (i - comp >= 5 && memcmp(s + i - 5, ".lock", 5) == 0)
				return fail(why, "a path component cannot end with '.lock'");
			comp = i + 1;
			continue;
		}
		if (ch < 0x20 || ch == 0x7f)
			return fail(why, "control character in a ref");
		if (strchr(" ~^:?[\\", ch))
			return fail(why, "a ref cannot contain a space or any of ~ ^ : ? [ \\");
		if (ch == '.' && s[i - 1] == '.')
			return fail(why, "a ref cannot contain '..'");
		if (ch == '{' && s[i - 1] == '@')
			return fail(why, "a ref cannot contain '@{'");
		if (ch == '*') {
			if (!pattern)
				return fail(why, "'*' is not allowed in a ref name");
			if (star != len)
				return fail(why, "a ref pattern may hold at most one '*'");
			star = i;
		}
	}
	if (s[len - 1] == '.')
		return fail(why, "a ref cannot end with '.'");
	if (out) {
		out->text = s;
		out->len = len;
		out->star = star;
	}
	return 0;
}

bool gitref_match(const struct gitref_pattern *p, const char *ref, size_t len)
{
	if (p->star == p->len)
		return len == p->len && memcmp(ref, p->text, len) == 0;

	size_t tail = p->len - p->star - 1;

	/* Strictly longer than prefix and suffix together: '*' never stands for nothing, so that
	 * "refs/heads/agent-*" does not admit the bare "refs/heads/agent-". */
	return len > p->star + tail && memcmp(ref, p->text, p->star) == 0 &&
	       memcmp(ref + len - tail, p->text + p->star + 1, tail) == 0;
}
