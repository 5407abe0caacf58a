/* SPDX-License-Identifier: Apache-2.0 */
/* Hand-written, bounded parser for yarn.lock v1 (the "# yarn lockfile v1" text format, not yarn berry YAML). */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "lockfile.h"
#include "lockfile_priv.h"

#define FIELD_CAP (CRGW_LOCKFILE_MAX_FIELD + 1)

/* One value of an entry, unquoted into a bounded buffer; `line` 0 means the field was not seen. */
struct yfield {
	char text[FIELD_CAP];
	size_t len;
	unsigned line;
	unsigned column;
};

struct yentry {
	bool open;
	bool in_block; /* inside a "dependencies:" style map, whose 4-space lines are skipped */
	unsigned line;
	char name[FIELD_CAP];
	size_t name_len;
	struct yfield version;
	struct yfield resolved;
	struct yfield integrity;
};

/*
 * Reads one value at `p` (at most `n` bytes): a JSON-style quoted string, which is how yarn writes
 * anything with spaces, colons or a leading digit, or else the bare rest of the token. Stops at `stop`
 * outside quotes. Sets `*used` to the bytes consumed. Returns 0 or -EINVAL with `*why`.
 */
static int read_value(const char *p, size_t n, char stop, char *dst, size_t *dlen, size_t *used,
		      const char **why)
{
	size_t i = 0, k = 0;

	if (n && p[0] == '"') {
		for (i = 1; i < n && p[i] != '"'; i++) {
			char c = p[i];

			if (c == '\\') {
				if (++i == n)
					break;
				c = p[i];
				if (c != '"' && c != '\\' && c != '/') {
					*why = "unsupported escape in quoted string";
					return -EINVAL;
				}
			}
			if (k + 1 >= FIELD_CAP) {
				*why = "value is longer than the field limit";
				return -EINVAL;
			}
			dst[k++] = c;
		}
		if (i >= n) {
			*why = "unterminated quoted string";
			return -EINVAL;
		}
		i++;
	} else {
		for (; i < n && p[i] != stop; i++) {
			if (p[i] == '"') {
				*why = "quote inside an unquoted value";
				return -EINVAL;
			}
			if (k + 1 >= FIELD_CAP) {
				*why = "value is longer than the field limit";
				return -EINVAL;
			}
			dst[k++] = p[i];
		}
		while (k && crgw_lf_is_space(dst[k - 1]))
			k--;
	}
	dst[k] = '\0';
	*dlen = k;
	*used = i;
	return 0;
}

/* The first '@' past position 0 ends the name: "@scope/pkg@^1" -> "@scope/pkg". */
static size_t name_end(const char *s, size_t n)
{
	const char *at = n > 1 ? memchr(s + 1, '@', n - 1) : NULL;

	return at ? (size_t)(at - s) : n;
}

/*
 * The package a specifier fetches. For an alias "name@npm:other@^1" that is `other`: the registry
 * serves other's tarball, and npm's own lockfile records the same entry under "name": "other".
 */
static void spec_name(const char *spec, size_t n, const char **name, size_t *nlen)
{
	size_t end = name_end(spec, n);
	const char *range = spec + end + 1;
	size_t rlen = end < n ? n - end - 1 : 0;

	if (rlen > 4 && !memcmp(range, "npm:", 4)) {
		*name = range + 4;
		*nlen = name_end(range + 4, rlen - 4);
		return;
	}
	*name = spec;
	*nlen = end;
}

static int parse_key_line(struct yentry *e, const char *line, size_t n, unsigned lineno,
			  struct crgw_lockfile_error *err)
{
	char spec[FIELD_CAP], snip[CRGW_LF_SNIPPET + 4];
	const char *why, *name;
	size_t pos = 0, slen, used, nlen;
	bool first = true;

	while (n && crgw_lf_is_space(line[n - 1]))
		n--;
	if (!n || line[n - 1] != ':')
		return crgw_lf_fail(err, -EINVAL, lineno, 1, "entry key line does not end with ':'");
	n--;

	while (pos < n) {
		while (pos < n && crgw_lf_is_space(line[pos]))
			pos++;
		if (read_value(line + pos, n - pos, ',', spec, &slen, &used, &why))
			return crgw_lf_fail(err, -EINVAL, lineno, (unsigned)pos + 1, "%s", why);
		if (!slen)
			return crgw_lf_fail(err, -EINVAL, lineno, (unsigned)pos + 1, "empty specifier");
		spec_name(spec, slen, &name, &nlen);
		if (!nlen)
			return crgw_lf_fail(err, -EINVAL, lineno, (unsigned)pos + 1,
					    "specifier has no package name");
		if (first) {
			memcpy(e->name, name, nlen);
			e->name_len = nlen;
			first = false;
		} else if (nlen != e->name_len || memcmp(e->name, name, nlen)) {
			crgw_lf_snippet(snip, sizeof(snip), spec, slen);
			return crgw_lf_fail(err, -EINVAL, lineno, (unsigned)pos + 1,
					    "specifier '%s' names a different package than the first one", snip);
		}
		pos += used;
		while (pos < n && crgw_lf_is_space(line[pos]))
			pos++;
		if (pos < n) {
			if (line[pos] != ',')
				return crgw_lf_fail(err, -EINVAL, lineno, (unsigned)pos + 1,
						    "expected ',' between specifiers");
			pos++;
			if (pos == n)
				return crgw_lf_fail(err, -EINVAL, lineno, (unsigned)pos + 1,
						    "empty specifier");
		}
	}
	if (first)
		return crgw_lf_fail(err, -EINVAL, lineno, 1, "entry key line has no specifier");
	e->line = lineno;
	e->open = true;
	return 0;
}

static int parse_field_line(struct yentry *e, const char *line, size_t n, unsigned lineno,
			    struct crgw_lockfile_error *err)
{
	struct yfield *f = NULL;
	const char *key = line + 2, *why;
	size_t klen, pos, used;

	while (n && crgw_lf_is_space(line[n - 1]))
		n--;
	/* "dependencies:" and friends open a nested map we have no use for. */
	if (line[n - 1] == ':') {
		e->in_block = true;
		return 0;
	}
	e->in_block = false;
	for (klen = 0; 2 + klen < n && line[2 + klen] != ' '; klen++)
		;
	if (klen == 7 && !memcmp(key, "version", 7))
		f = &e->version;
	else if (klen == 8 && !memcmp(key, "resolved", 8))
		f = &e->resolved;
	else if (klen == 9 && !memcmp(key, "integrity", 9))
		f = &e->integrity;
	if (!f) {
		if (klen && key[klen - 1] == ':')
			return crgw_lf_fail(err, -EINVAL, lineno, 3,
					    "YAML-style 'key: value' is not yarn.lock v1 syntax");
		return 0;
	}

	if (f->line)
		return crgw_lf_fail(err, -EINVAL, lineno, 3, "%.*s given twice in one entry", (int)klen, key);
	pos = 2 + klen;
	while (pos < n && line[pos] == ' ')
		pos++;
	if (pos == n)
		return crgw_lf_fail(err, -EINVAL, lineno, 3, "%.*s has no value", (int)klen, key);
	if (read_value(line + pos, n - pos, '\0', f->text, &f->len, &used, &why))
		return crgw_lf_fail(err, -EINVAL, lineno, (unsigned)pos + 1, "%s", why);
	if (pos + used != n)
		return crgw_lf_fail(err, -EINVAL, lineno, (unsigned)(pos + used) + 1,
				    "text after a quoted value");
	if (!f->len)
		return crgw_lf_fail(err, -EINVAL, lineno, (unsigned)pos + 1, "%.*s is empty", (int)klen, key);
	f->line = lineno;
	f->column = (unsigned)pos + 1;
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Old yarn entries carry only "resolved url#<sha1 hex>". Rewriting that as SRI "sha1-<base64>" gives
 * every npm-ecosystem artifact the same integrity notation.
 */
static int sha1_from_fragment(const struct yfield *resolved, char *dst, size_t cap)
{
	const char *hash = memchr(resolved->text, '#', resolved->len);
	unsigned char digest[20];
	size_t i;

	if (!hash || resolved->len - (size_t)(hash - resolved->text) - 1 != 40)
		return -ENOENT;
	hash++;
	for (i = 0; i < 20; i++) {
		int hi = hexval(hash[2 * i]), lo = hexval(hash[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -ENOENT;
		digest[i] = (unsigned char)(hi << 4 | lo);
	}
	memcpy(dst, "sha1-", 5);
	return crgw_lf_b64_encode(digest, sizeof(digest), dst + 5, cap - 5);
}

static int finish_entry(struct yentry *e, struct crgw_artifact_list *out, struct crgw_lockfile_error *err)
{
	struct crgw_lf_artifact a = { 0 };
	char sha1[64];
	const char *why, *p, *end;
	size_t n;
	int ret;

	if (!e->open)
		return 0;
	e->open = false;

	if (e->resolved.line) {
		ret = crgw_lf_url_host(e->resolved.text, e->resolved.len, &a.registry, &why);
		/* git, file: and tarball-path dependencies are not registry artifacts; fetches of them are refused. */
		if (ret == -ENOENT)
			return 0;
		if (ret)
			return crgw_lf_fail(err, -EINVAL, e->resolved.line, e->resolved.column, "%s", why);
	} else if (!e->integrity.line) {
		/* file: and link: dependencies have neither; nothing is downloaded for them. */
		return 0;
	}
	if (!e->version.line)
		return crgw_lf_fail(err, -EINVAL, e->line, 1, "entry has no version");
	if (!crgw_lf_npm_name_ok(e->name, e->name_len))
		return crgw_lf_fail(err, -EINVAL, e->line, 1, "package name is not a valid npm name");
	if (!crgw_lf_semver_ok(e->version.text, e->version.len))
		return crgw_lf_fail(err, -EINVAL, e->version.line, e->version.column,
				    "version is not a semver version");

	a.name = (struct crgw_lf_field){ e->name, e->name_len };
	a.version = (struct crgw_lf_field){ e->version.text, e->version.len };

	if (!e->integrity.line) {
		if (sha1_from_fragment(&e->resolved, sha1, sizeof(sha1)))
			return crgw_lf_fail(err, -EINVAL, e->line, 1,
					    "resolved from a registry but has no integrity or #sha1 fragment");
		a.integrity = (struct crgw_lf_field){ sha1, strlen(sha1) };
		return crgw_lf_append(out, &a, err, e->line, 1);
	}

	p = e->integrity.text;
	end = p + e->integrity.len;
	while (p < end) {
		while (p < end && crgw_lf_is_space(*p))
			p++;
		for (n = 0; p + n < end && !crgw_lf_is_space(p[n]); n++)
			;
		if (!n)
			break;
		if (crgw_lf_check_sri(p, n, &why))
			return crgw_lf_fail(err, -EINVAL, e->integrity.line, e->integrity.column, "%s", why);
		a.integrity = (struct crgw_lf_field){ p, n };
		ret = crgw_lf_append(out, &a, err, e->integrity.line, e->integrity.column);
		if (ret)
			return ret;
		p += n;
	}
	return 0;
}

/* yarn berry writes YAML whose first key is __metadata; say so instead of failing on the first field. */
static int refuse_berry(const char *buf, size_t len, struct crgw_lockfile_error *err)
{
	struct crgw_lf_lines it = { buf, len, 0, 0 };
	const char *line;
	size_t n;

	while (crgw_lf_next_line(&it, &line, &n)) {
		if (n >= 11 && !memcmp(line, "__metadata:", 11))
			return crgw_lf_fail(err, -EINVAL, it.lineno, 1,
					    "yarn berry lockfiles are not supported; yarn.lock v1 only");
	}
	return 0;
}

int crgw_lf_parse_yarn(const char *buf, size_t len, struct crgw_artifact_list *out,
		       struct crgw_lockfile_error *err)
{
	struct crgw_lf_lines it = { buf, len, 0, 0 };
	struct yentry e;
	const char *line;
	size_t n, indent, i;
	int ret;

	ret = refuse_berry(buf, len, err);
	if (ret)
		return ret;

	memset(&e, 0, sizeof(e));
	while (crgw_lf_next_line(&it, &line, &n)) {
		for (indent = 0; indent < n && line[indent] == ' '; indent++)
			;
		for (i = indent; i < n && crgw_lf_is_space(line[i]); i++)
			;
		if (i == n || line[i] == '#')
			continue;
		if (line[indent] == '\t')
			return crgw_lf_fail(err, -EINVAL, it.lineno, (unsigned)indent + 1,
					    "tab in indentation");

		if (indent == 0) {
			ret = finish_entry(&e, out, err);
			if (ret)
				return ret;
			memset(&e, 0, sizeof(e));
			ret = parse_key_line(&e, line, n, it.lineno, err);
		} else if (indent == 2 && e.open) {
			ret = parse_field_line(&e, line, n, it.lineno, err);
		} else if (indent >= 4 && e.in_block) {
			ret = 0;
		} else {
			ret = crgw_lf_fail(err, -EINVAL, it.lineno, (unsigned)indent + 1,
					   "unexpected indentation");
		}
		if (ret)
			return ret;
	}
	return finish_entry(&e, out, err);
}
