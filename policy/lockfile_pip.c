/* SPDX-License-Identifier: Apache-2.0 */
/* Parser for pip requirements files in hash-checking mode (every requirement pinned with == and --hash). */

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lockfile.h"
#include "lockfile_priv.h"

/*
 * pip's requirement-file options. pip parses them with optparse, which also accepts any unambiguous
 * prefix of a long option ("--extra-index" is --extra-index-url), so the whole set is listed here and
 * matched the same way: a prefix that pip would take as an unsupported option must not slip through.
 */
enum {
	OPT_ARG = 1 << 0,    /* takes a value */
	OPT_GLOBAL = 1 << 1, /* allowed on a line of its own */
	OPT_REQ = 1 << 2,    /* allowed after a requirement */
	OPT_UNSUPPORTED = 1 << 3,
};

enum opt_id { ID_INDEX, ID_EXTRA_INDEX, ID_HASH, ID_IGNORED, ID_OTHER };

static const struct pip_opt {
	const char *lng;
	char shrt;
	unsigned flags;
	enum opt_id id;
} pip_opts[] = {
	{ "index-url", 'i', OPT_ARG | OPT_GLOBAL, ID_INDEX },
	{ "extra-index-url", 0, OPT_ARG | OPT_GLOBAL, ID_EXTRA_INDEX },
	{ "hash", 0, OPT_ARG | OPT_REQ, ID_HASH },
	{ "require-hashes", 0, OPT_GLOBAL, ID_IGNORED },
	{ "pre", 0, OPT_GLOBAL, ID_IGNORED },
	{ "prefer-binary", 0, OPT_GLOBAL, ID_IGNORED },
	{ "only-binary", 0, OPT_ARG | OPT_GLOBAL, ID_IGNORED },
	{ "no-binary", 0, OPT_ARG | OPT_GLOBAL, ID_IGNORED },
	{ "trusted-host", 0, OPT_ARG | OPT_GLOBAL, ID_IGNORED },
	{ "requirement", 'r', OPT_ARG | OPT_UNSUPPORTED, ID_OTHER },
	{ "constraint", 'c', OPT_ARG | OPT_UNSUPPORTED, ID_OTHER },
	{ "editable", 'e', OPT_ARG | OPT_UNSUPPORTED, ID_OTHER },
	{ "find-links", 'f', OPT_ARG | OPT_UNSUPPORTED, ID_OTHER },
	{ "no-index", 0, OPT_UNSUPPORTED, ID_OTHER },
	{ "use-feature", 0, OPT_ARG | OPT_UNSUPPORTED, ID_OTHER },
	{ "global-option", 0, OPT_ARG | OPT_UNSUPPORTED, ID_OTHER },
	{ "config-settings", 0, OPT_ARG | OPT_UNSUPPORTED, ID_OTHER },
	{ "install-option", 0, OPT_ARG | OPT_UNSUPPORTED, ID_OTHER },
};

#define N_OPTS (sizeof(pip_opts) / sizeof(pip_opts[0]))
#define MAX_HASH_HEX 128

struct pip_state {
	struct crgw_artifact_list *out;
	struct crgw_lockfile_error *err;
	unsigned line; /* first physical line of the logical line being parsed, as pip reports it */
	char index[CRGW_LOCKFILE_MAX_FIELD + 1];
	size_t index_len;
	size_t first; /* out->count when this parse began */
	char snip[CRGW_LF_SNIPPET + 4];
};

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/*
 * Fails the current logical line with `fmt` (a literal, so the compiler checks it) whose one %s is a
 * sanitized snippet of the untrusted `p`. A macro rather than a function only to keep `fmt` literal.
 */
#define pfail(st, fmt, p, n)                                              \
	(crgw_lf_snippet((st)->snip, sizeof((st)->snip), (p), (n)),       \
	 crgw_lf_fail((st)->err, -EINVAL, (st)->line, 0, fmt, (st)->snip))

/* Long option by exact name or unique prefix, as optparse resolves it; short by its letter. */
static const struct pip_opt *find_opt(const char *tok, size_t n, const char **val, size_t *vlen)
{
	const struct pip_opt *hit = NULL;
	const char *eq;
	size_t i, nlen;

	*val = NULL;
	*vlen = 0;
	if (n >= 2 && tok[0] == '-' && tok[1] != '-') {
		for (i = 0; i < N_OPTS; i++) {
			if (pip_opts[i].shrt && pip_opts[i].shrt == tok[1])
				break;
		}
		if (i == N_OPTS)
			return NULL;
		if (n > 2) {
			*val = tok + 2;
			*vlen = n - 2;
		}
		return &pip_opts[i];
	}
	if (n < 3 || tok[0] != '-' || tok[1] != '-')
		return NULL;
	tok += 2;
	n -= 2;
	eq = memchr(tok, '=', n);
	nlen = eq ? (size_t)(eq - tok) : n;
	if (eq) {
		*val = eq + 1;
		*vlen = n - nlen - 1;
	}
	for (i = 0; i < N_OPTS; i++) {
		if (strlen(pip_opts[i].lng) == nlen && !memcmp(pip_opts[i].lng, tok, nlen))
			return &pip_opts[i];
	}
	for (i = 0; i < N_OPTS; i++) {
		if (strlen(pip_opts[i].lng) > nlen && nlen && !memcmp(pip_opts[i].lng, tok, nlen)) {
			if (hit)
				return NULL;
			hit = &pip_opts[i];
		}
	}
	return hit;
}

static int set_index(struct pip_state *st, const char *url, size_t n)
{
	struct crgw_lf_field host;
	const char *why;
	int ret;

	if (n > CRGW_LOCKFILE_MAX_FIELD)
		return crgw_lf_fail(st->err, -EINVAL, st->line, 0, "index URL is longer than %u bytes",
				    CRGW_LOCKFILE_MAX_FIELD);
	ret = crgw_lf_url_host(url, n, &host, &why);
	if (ret == -ENOENT)
		return pfail(st, "index URL '%s' is not http(s)", url, n);
	if (ret)
		return crgw_lf_fail(st->err, -EINVAL, st->line, 0, "index URL: %s", why);
	/*
	 * pip applies the last index URL to every requirement of the file, wherever it stands. Two
	 * different ones would make the earlier lines lie about where packages come from.
	 */
	if (st->index_len && (st->index_len != host.len || strncasecmp(st->index, host.p, host.len)))
		return crgw_lf_fail(st->err, -EINVAL, st->line, 0,
				    "a second, different --index-url (pip would use only the last one)");
	memcpy(st->index, host.p, host.len);
	st->index[host.len] = '\0';
	st->index_len = host.len;
	return 0;
}

/* Appends `a` once for the digest in `v` ("<algo>:<hex>", hex lowercased). */
static int add_hash(struct pip_state *st, struct crgw_lf_artifact *a, const char *v, size_t n)
{
	char text[8 + MAX_HASH_HEX + 1]; /* "sha512:" + hex */
	static const struct {
		const char *algo;
		size_t hex;
	} algos[] = { { "sha256", 64 }, { "sha384", 96 }, { "sha512", 128 } };
	const char *colon = memchr(v, ':', n);
	size_t alen, i, k;

	if (!colon)
		return pfail(st, "--hash '%s' is not <algorithm>:<hex>", v, n);
	alen = (size_t)(colon - v);
	for (k = 0; k < 3; k++) {
		if (strlen(algos[k].algo) == alen && !memcmp(algos[k].algo, v, alen))
			break;
	}
	if (k == 3)
		return pfail(st, "--hash '%s': algorithm must be sha256, sha384 or sha512", v, n);
	if (n - alen - 1 != algos[k].hex)
		return pfail(st, "--hash '%s': digest has the wrong length", v, n);
	memcpy(text, v, alen + 1);
	for (i = 0; i < algos[k].hex; i++) {
		char c = colon[1 + i];

		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return pfail(st, "--hash '%s': digest is not hex", v, n);
		text[alen + 1 + i] = c;
	}
	a->integrity = (struct crgw_lf_field){ text, alen + 1 + algos[k].hex };
	return crgw_lf_append(st->out, a, st->err, st->line, 0);
}

/*
 * Walks the option tokens of a logical line. On a requirement line (`req` non-NULL) only --hash is
 * allowed, and each one appends `req` with that digest: pip silently ignores global options there,
 * so accepting one would misdescribe the file.
 */
static int parse_options(struct pip_state *st, const char *p, size_t n, struct crgw_lf_artifact *req,
			 size_t *nhashes)
{
	const struct pip_opt *o;
	const char *tok, *val;
	size_t i = 0, tlen, vlen;
	int ret;

	while (i < n) {
		while (i < n && crgw_lf_is_space(p[i]))
			i++;
		if (i == n)
			break;
		tok = p + i;
		for (tlen = 0; i + tlen < n && !crgw_lf_is_space(tok[tlen]); tlen++)
			;
		i += tlen;
		if (memchr(tok, '"', tlen) || memchr(tok, '\'', tlen) || memchr(tok, '\\', tlen))
			return pfail(st, "quoting in option '%s' is not supported", tok, tlen);
		o = find_opt(tok, tlen, &val, &vlen);
		if (!o)
			return pfail(st, "unknown or ambiguous option '%s'", tok, tlen);
		if (o->flags & OPT_UNSUPPORTED)
			return pfail(st, "option '%s' is not supported in a lockfile", tok, tlen);
		if (o->id == ID_EXTRA_INDEX)
			return pfail(st, "option '%s' makes the origin of packages ambiguous", tok, tlen);
		if (req && !(o->flags & OPT_REQ))
			return pfail(st, "option '%s' is not allowed after a requirement", tok, tlen);
		if (!req && !(o->flags & OPT_GLOBAL))
			return pfail(st, "option '%s' needs a requirement before it", tok, tlen);
		if (!(o->flags & OPT_ARG)) {
			if (val)
				return pfail(st, "option '%s' takes no value", tok, tlen);
			continue;
		}
		if (!val) {
			while (i < n && crgw_lf_is_space(p[i]))
				i++;
			val = p + i;
			for (vlen = 0; i + vlen < n && !crgw_lf_is_space(val[vlen]); vlen++)
				;
			i += vlen;
			if (!vlen)
				return pfail(st, "option '%s' needs a value", tok, tlen);
			if (memchr(val, '"', vlen) || memchr(val, '\'', vlen) || memchr(val, '\\', vlen))
				return pfail(st, "quoting in '%s' is not supported", val, vlen);
		}
		if (!vlen)
			return pfail(st, "option '%s' needs a value", tok, tlen);
		if (o->id == ID_INDEX) {
			ret = set_index(st, val, vlen);
		} else if (o->id == ID_HASH) {
			ret = add_hash(st, req, val, vlen);
			(*nhashes)++;
		} else {
			ret = 0;
		}
		if (ret)
			return ret;
	}
	return 0;
}

/* PEP 503: lowercase, and every run of '-', '_' and '.' becomes one '-'. */
static size_t normalize_name(const char *p, size_t n, char *dst)
{
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		char c = p[i];

		if (c == '-' || c == '_' || c == '.') {
			if (k && dst[k - 1] == '-')
				continue;
			c = '-';
		} else if (c >= 'A' && c <= 'Z') {
			c = (char)(c - 'A' + 'a');
		}
		dst[k++] = c;
	}
	return k;
}

static bool is_version_char(char c, bool arbitrary)
{
	if (arbitrary)
		return c > 0x20 && c < 0x7f && c != ';' && c != ',';
	return is_alnum(c) || c == '.' || c == '-' || c == '_' || c == '+' || c == '!';
}

/*
 * name [extras] ==version [; marker]. Anything else (ranges, wildcards, several clauses, URLs, paths)
 * is refused: the allowlist must name exactly one version of each package.
 */
static int parse_requirement(struct pip_state *st, const char *p, size_t n, struct crgw_lf_artifact *a,
			     char *name_buf)
{
	const char *marker = memchr(p, ';', n);
	size_t head = marker ? (size_t)(marker - p) : n;
	size_t i = 0, vstart;
	bool arbitrary;

	/* Direct references ("pkg @ https://..."), archives and folders have no name and version to pin. */
	for (i = 0; i < head && !crgw_lf_is_space(p[i]); i++) {
		if (p[i] == '/' || p[i] == '\\' || p[i] == '@' || p[i] == ':')
			break;
	}
	if (p[0] == '.' || p[0] == '~' || (i < head && p[i] != ' ' && p[i] != '\t') ||
	    memmem(p, head, " @", 2))
		return pfail(st, "URLs and paths ('%s') are not supported in a lockfile", p, n);

	i = 0;
	if (!is_alnum(p[0]))
		return pfail(st, "requirement '%s' does not start with a package name", p, n);
	while (i < head && (is_alnum(p[i]) || p[i] == '-' || p[i] == '_' || p[i] == '.'))
		i++;
	if (!is_alnum(p[i - 1]))
		return pfail(st, "package name in '%s' ends with punctuation", p, n);
	if (i > CRGW_LOCKFILE_MAX_FIELD)
		return pfail(st, "package name in '%s' is too long", p, n);
	a->name.p = name_buf;
	a->name.len = normalize_name(p, i, name_buf);

	while (i < head && crgw_lf_is_space(p[i]))
		i++;
	if (i < head && p[i] == '[') {
		/* Extras pull in more requirements, which the file must list on their own; the artifact is the same. */
		for (i++; i < head && p[i] != ']'; i++) {
			if (!is_alnum(p[i]) && !memchr("-_., \t", p[i], 5))
				return pfail(st, "bad extras in '%s'", p, n);
		}
		if (i == head)
			return pfail(st, "unterminated extras in '%s'", p, n);
		i++;
		while (i < head && crgw_lf_is_space(p[i]))
			i++;
	}

	if (head - i < 2 || p[i] != '=' || p[i + 1] != '=')
		return pfail(st, "requirement '%s' is not pinned with ==", p, n);
	i += 2;
	arbitrary = i < head && p[i] == '=';
	if (arbitrary)
		i++;
	while (i < head && crgw_lf_is_space(p[i]))
		i++;
	vstart = i;
	while (i < head && is_version_char(p[i], arbitrary))
		i++;
	a->version.p = p + vstart;
	a->version.len = i - vstart;
	if (!a->version.len || (i < head && p[i] == '*'))
		return pfail(st, "requirement '%s' is not pinned to one version with ==", p, n);
	while (i < head && crgw_lf_is_space(p[i]))
		i++;
	if (i < head && p[i] == ',')
		return pfail(st, "requirement '%s' must be a single == pin", p, n);
	if (i < head)
		return pfail(st, "unexpected text in requirement '%s'", p, n);
	return 0;
}

static int parse_logical(struct pip_state *st, char *line, size_t n)
{
	struct crgw_lf_artifact a = { 0 };
	char name[CRGW_LOCKFILE_MAX_FIELD + 1];
	size_t i, args_end, nhashes = 0;
	int ret;

	/* pip's comment rule: '#' at the start or after whitespace; "pkg==1#x" keeps its '#'. */
	for (i = 0; i < n; i++) {
		if (line[i] == '#' && (i == 0 || crgw_lf_is_space(line[i - 1]))) {
			n = i;
			break;
		}
	}
	while (n && crgw_lf_is_space(line[n - 1]))
		n--;
	while (n && crgw_lf_is_space(line[0])) {
		line++;
		n--;
	}
	if (!n)
		return 0;

	/* Like pip: the requirement runs up to the first space-separated token that starts with '-'. */
	for (args_end = 0; args_end < n; args_end++) {
		if (line[args_end] == '-' && (args_end == 0 || line[args_end - 1] == ' '))
			break;
	}
	if (args_end == 0)
		return parse_options(st, line, n, NULL, NULL);

	for (i = args_end; i && crgw_lf_is_space(line[i - 1]); i--)
		;
	ret = parse_requirement(st, line, i, &a, name);
	if (ret)
		return ret;
	if (st->index_len)
		a.registry = (struct crgw_lf_field){ st->index, st->index_len };
	ret = parse_options(st, line + args_end, n - args_end, &a, &nhashes);
	if (ret)
		return ret;
	if (!nhashes)
		return crgw_lf_fail(st->err, -EINVAL, st->line, 0, "requirement '%.*s' has no --hash",
				    (int)a.name.len, a.name.p);
	return 0;
}

/*
 * pip splits lines with Python's str.splitlines(), which also breaks at \r, \v, \f, \x1c-\x1e, U+0085,
 * U+2028 and U+2029. Refusing those bytes (and every other control byte) means both parsers see the
 * same lines, so a requirement cannot hide inside what we take for a comment.
 */
static int refuse_line_breaks(const char *buf, size_t len, struct crgw_lockfile_error *err)
{
	unsigned line = 1;
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c == '\n') {
			line++;
			continue;
		}
		if (c == '\r' && i + 1 < len && buf[i + 1] == '\n')
			continue;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return crgw_lf_fail(err, -EINVAL, line, 0, "control character 0x%02x", c);
		if (c == 0xc2 && i + 1 < len && (unsigned char)buf[i + 1] == 0x85)
			return crgw_lf_fail(err, -EINVAL, line, 0, "Unicode line break U+0085");
		if (c == 0xe2 && i + 2 < len && (unsigned char)buf[i + 1] == 0x80 &&
		    ((unsigned char)buf[i + 2] == 0xa8 || (unsigned char)buf[i + 2] == 0xa9))
			return crgw_lf_fail(err, -EINVAL, line, 0, "Unicode line break U+2028/U+2029");
	}
	return 0;
}

static bool is_comment(const char *line, size_t n)
{
	size_t i = 0;

	while (i < n && crgw_lf_is_space(line[i]))
		i++;
	return i < n && line[i] == '#';
}

/* Python's str.strip("\\"): backslashes off both ends. */
static void strip_backslashes(const char **line, size_t *n)
{
	while (*n && (*line)[*n - 1] == '\\')
		(*n)--;
	while (*n && **line == '\\') {
		(*line)++;
		(*n)--;
	}
}

/* Sets the registry of lines read before the --index-url, since pip applies it to the whole file. */
static int apply_index(struct pip_state *st)
{
	size_t i;

	if (!st->index_len)
		return 0;
	for (i = st->first; i < st->out->count; i++) {
		struct crgw_artifact *a = &st->out->items[i];

		if (a->registry)
			continue;
		a->registry = strndup(st->index, st->index_len);
		if (!a->registry)
			return crgw_lf_fail(st->err, -ENOMEM, 0, 0, "out of memory");
		for (char *c = a->registry; *c; c++) {
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		}
	}
	return 0;
}

int crgw_lf_parse_pip(const char *buf, size_t len, struct crgw_artifact_list *out,
		      struct crgw_lockfile_error *err)
{
	struct crgw_lf_lines it;
	struct pip_state st = { .out = out, .err = err, .first = out->count };
	const char *line;
	char *logical;
	size_t n, used = 0;
	bool partial = false;
	int ret = 0;

	/* pip strips a UTF-8 byte order mark when it decodes the file. */
	if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3)) {
		buf += 3;
		len -= 3;
	}
	ret = refuse_line_breaks(buf, len, err);
	if (ret)
		return ret;

	/* A logical line is never longer than the file plus the one space a trailing comment gets. */
	logical = malloc(len + 2);
	if (!logical)
		return crgw_lf_fail(err, -ENOMEM, 0, 0, "out of memory");

	it = (struct crgw_lf_lines){ buf, len, 0, 0 };
	while (crgw_lf_next_line(&it, &line, &n)) {
		bool comment = is_comment(line, n);

		if (!partial)
			st.line = it.lineno;
		if (n && line[n - 1] == '\\' && !comment) {
			strip_backslashes(&line, &n);
			memcpy(logical + used, line, n);
			used += n;
			partial = true;
			continue;
		}
		/* A comment ending a continuation gets a space so it still reads as a comment once joined. */
		if (partial && comment)
			logical[used++] = ' ';
		memcpy(logical + used, line, n);
		used += n;
		ret = parse_logical(&st, logical, used);
		if (ret)
			goto out;
		used = 0;
		partial = false;
	}
	if (partial) {
		ret = parse_logical(&st, logical, used);
		if (ret)
			goto out;
	}
	ret = apply_index(&st);
out:
	free(logical);
	return ret;
}
