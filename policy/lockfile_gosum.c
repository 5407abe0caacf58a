/* SPDX-License-Identifier: Apache-2.0 */
/* Parser for go.sum: one "module version h1:<base64 sha256>" line per module zip or go.mod file. */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "lockfile.h"
#include "lockfile_priv.h"

#define GOMOD_SUFFIX "/go.mod"

/* The go command splits with strings.Fields; these are the ASCII spaces it splits on. */
static bool is_field_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/*
 * Module paths as the Go toolchain checks them: ASCII letters, digits and "-._~/+", no empty
 * element and no element starting or ending with '.', so no "." or ".." can reach a proxy URL path.
 */
static bool module_ok(const char *p, size_t n)
{
	size_t i;

	if (!is_alnum(p[0]) || p[n - 1] == '/' || p[n - 1] == '.')
		return false;
	for (i = 0; i < n; i++) {
		if (!is_alnum(p[i]) && !memchr("-._~/+", p[i], 6))
			return false;
		if (p[i] == '/' && (p[i - 1] == '/' || p[i - 1] == '.' || p[i + 1] == '.'))
			return false;
	}
	return true;
}

/* "v" + digit, then semver and pseudo-version characters; the "/go.mod" suffix is checked apart. */
static bool version_ok(const char *p, size_t n)
{
	size_t i;

	if (n >= strlen(GOMOD_SUFFIX) && !memcmp(p + n - strlen(GOMOD_SUFFIX), GOMOD_SUFFIX,
						  strlen(GOMOD_SUFFIX)))
		n -= strlen(GOMOD_SUFFIX);
	if (n < 2 || p[0] != 'v' || p[1] < '0' || p[1] > '9')
		return false;
	for (i = 1; i < n; i++) {
		if (!is_alnum(p[i]) && p[i] != '.' && p[i] != '-' && p[i] != '+')
			return false;
	}
	return true;
}

int crgw_lf_parse_gosum(const char *buf, size_t len, struct crgw_artifact_list *out,
			struct crgw_lockfile_error *err)
{
	struct crgw_lf_lines it = { buf, len, 0, 0 };
	struct crgw_lf_artifact a = { 0 };
	struct crgw_lf_field f[3];
	unsigned char digest[32];
	const char *line;
	size_t n, i, nf, dlen;
	char snip[CRGW_LF_SNIPPET + 4];
	int ret;

	while (crgw_lf_next_line(&it, &line, &n)) {
		unsigned col[3] = { 0 };

		for (i = 0, nf = 0; i < n;) {
			while (i < n && is_field_space(line[i]))
				i++;
			if (i == n)
				break;
			if (nf == 3)
				return crgw_lf_fail(err, -EINVAL, it.lineno, (unsigned)i + 1,
						    "more than 3 fields; expected 'module version h1:hash'");
			f[nf].p = line + i;
			col[nf] = (unsigned)i + 1;
			while (i < n && !is_field_space(line[i]))
				i++;
			f[nf].len = (size_t)(line + i - f[nf].p);
			nf++;
		}
		if (!nf)
			continue;
		if (nf != 3)
			return crgw_lf_fail(err, -EINVAL, it.lineno, 1,
					    "%zu fields; expected 'module version h1:hash'", nf);

		if (f[0].len > CRGW_LOCKFILE_MAX_FIELD || !module_ok(f[0].p, f[0].len)) {
			crgw_lf_snippet(snip, sizeof(snip), f[0].p, f[0].len);
			return crgw_lf_fail(err, -EINVAL, it.lineno, col[0], "bad module path '%s'", snip);
		}
		if (f[1].len > CRGW_LOCKFILE_MAX_FIELD || !version_ok(f[1].p, f[1].len)) {
			crgw_lf_snippet(snip, sizeof(snip), f[1].p, f[1].len);
			return crgw_lf_fail(err, -EINVAL, it.lineno, col[1], "bad version '%s'", snip);
		}
		if (f[2].len < 3 || memcmp(f[2].p, "h1:", 3))
			return crgw_lf_fail(err, -EINVAL, it.lineno, col[2], "hash is not h1:<base64>");
		ret = crgw_lf_b64_decode(f[2].p + 3, f[2].len - 3, digest, sizeof(digest), &dlen);
		if (ret || dlen != sizeof(digest))
			return crgw_lf_fail(err, -EINVAL, it.lineno, col[2],
					    "h1: hash is not the base64 of 32 bytes");

		a.name = f[0];
		a.version = f[1];
		a.integrity = f[2];
		ret = crgw_lf_append(out, &a, err, it.lineno, 1);
		if (ret)
			return ret;
	}
	return 0;
}
