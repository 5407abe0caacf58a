/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Python simple repository pages (PEP 503 HTML, PEP 691 JSON) parsed and written again with only the files
 * the policy keeps, pointing back at the gateway. The upstream page is untrusted and what the client
 * installs follows from it, so the reader fails closed: an anchor it cannot read, a file name that is not
 * its URL's, a hash that is not one, a JSON page of another project, refuse the whole page rather than skip
 * one file (a skipped file could be the one the policy would have refused under its real name). The page
 * written holds nothing the reader did not understand, so the client and the policy see the same files.
 */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pypi_index.h"
#include "tchar.h"

/* ---- small helpers ---- */

/* A growable buffer with a maximum fixed at creation (STYLE: never a realloc to infinity). */
struct buf {
	char *p;
	size_t n, cap, max;
};

static int buf_add(struct buf *b, const char *s, size_t n)
{
	if (n > b->max - b->n)
		return -E2BIG;
	if (b->n + n + 1 > b->cap) {
		size_t c = b->cap ? b->cap : 256;
		char *np;

		while (c < b->n + n + 1)
			c *= 2;
		if (c > b->max + 1)
			c = b->max + 1;
		np = realloc(b->p, c);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = c;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
	return 0;
}

static int buf_str(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

static int buf_ch(struct buf *b, char c)
{
	return buf_add(b, &c, 1);
}

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
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

/* Case-insensitive comparison of s[0..n) with the NUL-terminated lower-case `lit`. */
static bool eq_ci(const char *s, size_t n, const char *lit)
{
	size_t k = strlen(lit);

	if (n != k)
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower(s[i]) != lit[i])
			return false;
	return true;
}

/* Well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
static bool utf8_ok(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		unsigned c = p[i], need, cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			need = 1, cp = c & 0x1f, min = 0x80;
		else if (c >= 0xe0 && c <= 0xef)
			need = 2, cp = c & 0x0f, min = 0x800;
		else if (c >= 0xf0 && c <= 0xf4)
			need = 3, cp = c & 0x07, min = 0x10000;
		else
			return false;
		if (n - i - 1 < need)
			return false;
		for (unsigned k = 1; k <= need; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

static bool is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* ---- names and versions ---- */

int pypi_normalize(const char *name, size_t len, char *out, size_t cap)
{
	size_t o = 0;

	if (len == 0 || !is_alnum(name[0]) || !is_alnum(name[len - 1]))
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (c == '-' || c == '_' || c == '.') {
			if (o && out[o - 1] == '-')
				continue;
			c = '-';
		} else if (!is_alnum(c)) {
			return -EINVAL;
		}
		if (o + 1 >= cap)
			return -ENOSPC;
		out[o++] = lower(c);
	}
	out[o] = '\0';
	return 0;
}

/* Whether name[0..len) normalizes to `project`. */
static bool name_is(const char *name, size_t len, const char *project)
{
	char norm[PYPI_MAX_NAME];

	return len < sizeof(norm) && pypi_normalize(name, len, norm, sizeof(norm)) == 0 && !strcmp(norm, project);
}

/*
 * What a PEP 440 version can look like in a file name, loosely: enough that "bar-1.0", what is left of
 * "foo-bar-1.0.tar.gz" on foo's page, is not taken for one of foo's versions.
 */
static bool version_ok(const char *v, size_t n)
{
	size_t i = 0;

	if (n && (v[0] == 'v' || v[0] == 'V'))
		i = 1;
	if (i >= n || !is_digit(v[i]))
		return false;
	for (; i < n; i++)
		if (!is_alnum(v[i]) && !strchr(".!+_-", v[i]))
			return false;
	return true;
}

static int put_version(const char *v, size_t n, char *out, size_t cap)
{
	if (!version_ok(v, n))
		return 0;
	if (n >= cap)
		return -ENOSPC;
	memcpy(out, v, n);
	out[n] = '\0';
	return 0;
}

int pypi_filename_version(const char *fn, const char *project, char *out, size_t cap)
{
	static const char *const sdist[] = { ".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz", ".tar" };
	size_t len = strlen(fn);

	if (cap == 0)
		return -ENOSPC;
	out[0] = '\0';
	if (len > 4 && !strcmp(fn + len - 4, ".whl")) {
		/* PEP 427: the name has its '-' escaped to '_', so the parts split on '-' alone. */
		const char *part[7];
		size_t plen[7], np = 0, start = 0, stem = len - 4;

		for (size_t i = 0; i <= stem; i++) {
			if (i < stem && fn[i] != '-')
				continue;
			if (np == 7)
				return 0;
			part[np] = fn + start;
			plen[np++] = i - start;
			start = i + 1;
		}
		if (np != 5 && np != 6)
			return 0;
		for (size_t k = 0; k < np; k++)
			if (plen[k] == 0)
				return 0;
		if (np == 6 && !is_digit(part[2][0]))
			return 0;
		if (!name_is(part[0], plen[0], project))
			return 0;
		return put_version(part[1], plen[1], out, cap);
	}
	for (size_t k = 0; k < sizeof(sdist) / sizeof(sdist[0]); k++) {
		size_t el = strlen(sdist[k]), stem;

		if (len <= el || strcasecmp(fn + len - el, sdist[k]))
			continue;
		/* The first '-' whose prefix is the project, as installers split it: names hold '-', so try each. */
		stem = len - el;
		for (size_t i = 1; i < stem; i++)
			if (fn[i] == '-' && name_is(fn, i, project))
				return put_version(fn + i + 1, stem - i - 1, out, cap);
		return 0;
	}
	return 0;
}

/* ---- Accept ---- */

enum { SPEC_NONE, SPEC_ALL, SPEC_TYPE, SPEC_EXACT };

static const struct {
	const char *type, *sub;
	enum pypi_format fmt;
} offers[] = {
	{ "text", "html", PYPI_HTML },
	{ "application", "vnd.pypi.simple.v1+html", PYPI_HTML },
	{ "application", "vnd.pypi.simple.latest+html", PYPI_HTML },
	{ "application", "vnd.pypi.simple.v1+json", PYPI_JSON },
	{ "application", "vnd.pypi.simple.latest+json", PYPI_JSON },
};
#define N_OFFERS (sizeof(offers) / sizeof(offers[0]))

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* "0", "0.5", "1.000": thousandths, or -1. */
static int qvalue(const char *s, size_t n)
{
	int q, scale = 100;

	if (n == 0 || (s[0] != '0' && s[0] != '1') || n > 5 || (n > 1 && s[1] != '.'))
		return -1;
	q = (s[0] - '0') * 1000;
	for (size_t i = 2; i < n; i++, scale /= 10) {
		if (!is_digit(s[i]))
			return -1;
		q += (s[i] - '0') * scale;
	}
	return q > 1000 ? -1 : q;
}

/*
 * One element s[0..n) (OWS trimmed by the caller): type "/" subtype *( OWS ";" OWS name "=" value ). Sets
 * the q of every offer it matches more specifically than what matched before. false when unreadable.
 */
static bool accept_elem(const char *s, size_t n, int *q, int *spec)
{
	size_t i = 0, t0, tl, s0, sl;
	int qv = 1000;

	for (t0 = i; i < n && med_is_tchar((unsigned char)s[i]); i++)
		;
	tl = i - t0;
	if (!tl || i >= n || s[i] != '/')
		return false;
	for (s0 = ++i; i < n && med_is_tchar((unsigned char)s[i]); i++)
		;
	sl = i - s0;
	if (!sl)
		return false;
	while (i < n) {
		size_t p0, pl, v0, vl;

		while (i < n && is_ows(s[i]))
			i++;
		if (i >= n)
			break;
		if (s[i++] != ';')
			return false;
		while (i < n && is_ows(s[i]))
			i++;
		for (p0 = i; i < n && med_is_tchar((unsigned char)s[i]); i++)
			;
		pl = i - p0;
		if (!pl || i >= n || s[i++] != '=')
			return false;
		if (i < n && s[i] == '"') {
			for (v0 = ++i; i < n && s[i] != '"'; i++)
				if (s[i] == '\\')
					i++;
			if (i >= n)
				return false;
			vl = i++ - v0;
		} else {
			for (v0 = i; i < n && med_is_tchar((unsigned char)s[i]); i++)
				;
			vl = i - v0;
			if (!vl)
				return false;
		}
		if (eq_ci(s + p0, pl, "q")) {
			qv = qvalue(s + v0, vl);
			if (qv < 0)
				return false;
			break; /* what follows q are accept-ext, which say nothing here */
		}
	}
	for (size_t k = 0; k < N_OFFERS; k++) {
		int sp;

		if (eq_ci(s + t0, tl, "*") && eq_ci(s + s0, sl, "*"))
			sp = SPEC_ALL;
		else if (eq_ci(s + t0, tl, offers[k].type) && eq_ci(s + s0, sl, "*"))
			sp = SPEC_TYPE;
		else if (eq_ci(s + t0, tl, offers[k].type) && eq_ci(s + s0, sl, offers[k].sub))
			sp = SPEC_EXACT;
		else
			continue;
		if (sp > spec[k] || (sp == spec[k] && qv > q[k])) {
			spec[k] = sp;
			q[k] = qv;
		}
	}
	return true;
}

int pypi_accept(const char *accept, size_t len)
{
	int q[N_OFFERS] = { 0 }, spec[N_OFFERS] = { 0 };
	int best_q[2] = { 0, 0 }, best_s[2] = { 0, 0 };
	size_t i = 0, read = 0;

	while (accept && i < len) {
		size_t a = i, b;
		bool quoted = false;

		for (; i < len && (quoted || accept[i] != ','); i++) {
			if (accept[i] == '"')
				quoted = !quoted;
			else if (quoted && accept[i] == '\\' && i + 1 < len)
				i++;
		}
		b = i++;
		while (a < b && is_ows(accept[a]))
			a++;
		while (b > a && is_ows(accept[b - 1]))
			b--;
		if (a < b && accept_elem(accept + a, b - a, q, spec))
			read++;
	}
	/* No header, or nothing readable in it, is no preference at all. */
	if (read == 0)
		return PYPI_HTML;
	for (size_t k = 0; k < N_OFFERS; k++) {
		int f = offers[k].fmt;

		if (spec[k] == SPEC_NONE || q[k] == 0)
			continue;
		if (q[k] > best_q[f] || (q[k] == best_q[f] && spec[k] > best_s[f])) {
			best_q[f] = q[k];
			best_s[f] = spec[k];
		}
	}
	if (best_q[PYPI_JSON] > best_q[PYPI_HTML] ||
	    (best_q[PYPI_JSON] == best_q[PYPI_HTML] && best_q[PYPI_JSON] && best_s[PYPI_JSON] > best_s[PYPI_HTML]))
		return PYPI_JSON;
	return best_q[PYPI_HTML] ? PYPI_HTML : -1;
}

/* ---- URLs (RFC 3986) ---- */

struct uri {
	const char *scheme, *auth, *path, *query, *frag;
	size_t scheme_len, auth_len, path_len, query_len, frag_len;
	bool has_scheme, has_auth, has_query, has_frag;
};

static void uri_split(const char *s, size_t n, struct uri *u)
{
	size_t i = 0;

	memset(u, 0, sizeof(*u));
	if (n && ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) {
		for (i = 1; i < n && (is_alnum(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'); i++)
			;
		if (i < n && s[i] == ':') {
			u->has_scheme = true;
			u->scheme = s;
			u->scheme_len = i++;
		} else {
			i = 0;
		}
	}
	if (n - i >= 2 && s[i] == '/' && s[i + 1] == '/') {
		u->has_auth = true;
		u->auth = s + i + 2;
		for (i += 2; i < n && s[i] != '/' && s[i] != '?' && s[i] != '#'; i++)
			;
		u->auth_len = (size_t)(s + i - u->auth);
	}
	u->path = s + i;
	for (; i < n && s[i] != '?' && s[i] != '#'; i++)
		;
	u->path_len = (size_t)(s + i - u->path);
	if (i < n && s[i] == '?') {
		u->has_query = true;
		u->query = s + ++i;
		for (; i < n && s[i] != '#'; i++)
			;
		u->query_len = (size_t)(s + i - u->query);
	}
	if (i < n && s[i] == '#') {
		u->has_frag = true;
		u->frag = s + i + 1;
		u->frag_len = n - i - 1;
	}
}

/* RFC 3986 section 5.2.4, from in[0..n) to out (room for n bytes: the output is never longer). */
static size_t remove_dots(const char *in, size_t n, char *out)
{
	size_t i = 0, o = 0;

	while (i < n) {
		const char *s = in + i;
		size_t r = n - i;

		if (r >= 3 && !memcmp(s, "../", 3)) {
			i += 3;
		} else if (r >= 2 && !memcmp(s, "./", 2)) {
			i += 2;
		} else if (r >= 3 && !memcmp(s, "/./", 3)) {
			i += 2;
		} else if (r == 2 && !memcmp(s, "/.", 2)) {
			out[o++] = '/';
			i += 2;
		} else if ((r >= 4 && !memcmp(s, "/../", 4)) || (r == 3 && !memcmp(s, "/..", 3))) {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
			if (r == 3) {
				out[o++] = '/';
				i += 3;
			} else {
				i += 3;
			}
		} else if ((r == 1 && s[0] == '.') || (r == 2 && !memcmp(s, "..", 2))) {
			i += r;
		} else {
			size_t j = i + (s[0] == '/');

			while (j < n && in[j] != '/')
				j++;
			memcpy(out + o, in + i, j - i);
			o += j - i;
			i = j;
		}
	}
	return o;
}

static int add_dotless(struct buf *b, const char *path, size_t n)
{
	char *tmp = malloc(n + 1);
	int err;

	if (!tmp)
		return -ENOMEM;
	err = buf_add(b, tmp, remove_dots(path, n, tmp));
	free(tmp);
	return err;
}

/* RFC 3986 section 5.2.2 (strict): `ref` against the absolute `base`, without the fragment, into `b`. */
static int uri_resolve(const struct uri *base, const struct uri *ref, struct buf *b)
{
	const struct uri *auth_from = ref, *query_from = ref;
	int err = 0;

	if (ref->has_scheme) {
		err = buf_add(b, ref->scheme, ref->scheme_len);
	} else {
		err = buf_add(b, base->scheme, base->scheme_len);
		if (!ref->has_auth)
			auth_from = base;
	}
	for (size_t k = 0; k < b->n; k++)
		b->p[k] = lower(b->p[k]);
	if (!err)
		err = buf_ch(b, ':');
	if (!err && auth_from->has_auth) {
		err = buf_add(b, "//", 2);
		if (!err)
			err = buf_add(b, auth_from->auth, auth_from->auth_len);
	}
	if (err)
		return err;
	if (ref->has_scheme || ref->has_auth || (ref->path_len && ref->path[0] == '/')) {
		err = add_dotless(b, ref->path, ref->path_len);
	} else if (ref->path_len == 0) {
		err = buf_add(b, base->path, base->path_len);
		if (!ref->has_query)
			query_from = base;
	} else {
		/* Merge (5.2.3): the base path up to its last '/', then the reference. */
		struct buf m = { .max = PYPI_MAX_URL * 2 };
		size_t keep = base->path_len;

		while (keep > 0 && base->path[keep - 1] != '/')
			keep--;
		if (base->has_auth && base->path_len == 0)
			err = buf_ch(&m, '/');
		else
			err = buf_add(&m, base->path, keep);
		if (!err)
			err = buf_add(&m, ref->path, ref->path_len);
		if (!err)
			err = add_dotless(b, m.p, m.n);
		free(m.p);
	}
	if (!err && query_from->has_query) {
		err = buf_ch(b, '?');
		if (!err)
			err = buf_add(b, query_from->query, query_from->query_len);
	}
	return err;
}

/* Printable ASCII but space and '\' (which browsers read as '/' and RFC 3986 does not). */
static bool url_chars_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '\\')
			return false;
	return true;
}

/* An absolute http(s) URL with a host and no userinfo. */
static bool url_absolute_ok(const struct uri *u)
{
	return u->has_scheme && (eq_ci(u->scheme, u->scheme_len, "http") || eq_ci(u->scheme, u->scheme_len, "https")) &&
	       u->has_auth && u->auth_len > 0 && !memchr(u->auth, '@', u->auth_len);
}

/* ---- the files of a page ---- */

struct ent {
	struct pypi_file f;
	char *filename, *href, *url, *rp, *reason, *new_url;
	char sha256[65]; /* from JSON "hashes" or the fragment; "" when none */
	bool keep;
};

struct page {
	struct ent *v;
	size_t n, cap;
	char *base; /* an HTML page's first <base href>, decoded; NULL when none */
	/*
	 * Bytes of resolved and of new URLs: a short href under a long <base> resolves to 8 KiB, so without this
	 * a 2 MiB page could hold 100000 of them (800 MiB).
	 */
	size_t url_bytes, new_url_bytes;
	const char *why;
};

static int fail(struct page *pg, int err, const char *why)
{
	pg->why = why;
	return err;
}

static void page_free(struct page *pg)
{
	for (size_t i = 0; i < pg->n; i++) {
		struct ent *e = &pg->v[i];

		free(e->filename);
		free(e->href);
		free(e->url);
		free(e->rp);
		free(e->reason);
		free(e->new_url);
	}
	free(pg->v);
	free(pg->base);
}

/* Appends an empty file; its index in *idx. */
static int page_add(struct page *pg, size_t *idx)
{
	if (pg->n == PYPI_MAX_FILES)
		return fail(pg, -E2BIG, "more than 100000 files on the page");
	if (pg->n == pg->cap) {
		size_t c = pg->cap ? pg->cap * 2 : 16;
		struct ent *v = realloc(pg->v, c * sizeof(*v));

		if (!v)
			return fail(pg, -ENOMEM, "out of memory");
		pg->v = v;
		pg->cap = c;
	}
	memset(&pg->v[pg->n], 0, sizeof(pg->v[0]));
	pg->v[pg->n].f.upload_time = -1;
	pg->v[pg->n].f.size = -1;
	*idx = pg->n++;
	return 0;
}

/* 64 hex digits, lower-cased into out[65]. */
static bool sha256_hex(const char *s, size_t n, char *out)
{
	if (n != 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (hexval(s[i]) < 0)
			return false;
		out[i] = lower(s[i]);
	}
	out[64] = '\0';
	return true;
}

static int set_rp(struct page *pg, struct ent *e, const char *s, size_t n)
{
	if (n > PYPI_MAX_TEXT)
		return fail(pg, -E2BIG, "requires-python is longer than 4096 bytes");
	if (!utf8_ok(s, n))
		return fail(pg, -EINVAL, "requires-python is not UTF-8");
	for (size_t i = 0; i < n; i++)
		if (is_ctl((unsigned char)s[i]))
			return fail(pg, -EINVAL, "requires-python holds a control character");
	e->rp = dup_n(s, n);
	return e->rp ? 0 : fail(pg, -ENOMEM, "out of memory");
}

/* A yank reason is free text for people: control bytes become spaces rather than refuse the page. */
static int set_reason(struct page *pg, struct ent *e, const char *s, size_t n)
{
	e->f.yanked = true;
	if (n == 0)
		return 0;
	if (n > PYPI_MAX_TEXT)
		return fail(pg, -E2BIG, "a yank reason is longer than 4096 bytes");
	if (!utf8_ok(s, n))
		return fail(pg, -EINVAL, "a yank reason is not UTF-8");
	e->reason = dup_n(s, n);
	if (!e->reason)
		return fail(pg, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		if (is_ctl((unsigned char)e->reason[i]))
			e->reason[i] = ' ';
	return 0;
}

/*
 * Checks one file once the page is read, and resolves its URL against `base`: the name must be a plain file
 * name and the last segment of its URL, the URL an http(s) one, a sha256 in the fragment well formed and the
 * same as the one in "hashes".
 */
static int file_check(struct page *pg, struct ent *e, const struct uri *base)
{
	struct buf b = { .max = PYPI_MAX_URL };
	size_t fl = strlen(e->filename), hl = strlen(e->href), seg, k = 0;
	struct uri ref, u;
	char frag_sha[65] = "";
	int err;

	if (fl == 0)
		return fail(pg, -EINVAL, "a file has no name");
	if (fl > PYPI_MAX_FILENAME)
		return fail(pg, -E2BIG, "a file name is longer than 255 bytes");
	for (size_t i = 0; i < fl; i++)
		if ((unsigned char)e->filename[i] <= 0x20 || (unsigned char)e->filename[i] >= 0x7f ||
		    e->filename[i] == '/' || e->filename[i] == '\\')
			return fail(pg, -EINVAL, "a file name holds a character other than printable ASCII");
	if (!strcmp(e->filename, ".") || !strcmp(e->filename, ".."))
		return fail(pg, -EINVAL, "a file is named . or ..");
	if (hl > PYPI_MAX_URL)
		return fail(pg, -E2BIG, "a file URL is longer than 8192 bytes");
	if (!url_chars_ok(e->href, hl))
		return fail(pg, -EINVAL, "a file URL holds a space, a backslash or a byte outside printable ASCII");
	uri_split(e->href, hl, &ref);
	if (ref.has_frag) {
		const char *eq = memchr(ref.frag, '=', ref.frag_len);

		if (eq && eq_ci(ref.frag, (size_t)(eq - ref.frag), "sha256") &&
		    !sha256_hex(eq + 1, ref.frag_len - (size_t)(eq + 1 - ref.frag), frag_sha))
			return fail(pg, -EINVAL, "a file URL's #sha256= is not 64 hex digits");
	}
	if (frag_sha[0] && e->sha256[0] && strcmp(frag_sha, e->sha256))
		return fail(pg, -EINVAL, "a file URL's #sha256= differs from its hashes");
	if (frag_sha[0])
		memcpy(e->sha256, frag_sha, sizeof(frag_sha));
	err = uri_resolve(base, &ref, &b);
	if (err) {
		free(b.p);
		return fail(pg, err, err == -E2BIG ? "a resolved file URL is longer than 8192 bytes" : "out of memory");
	}
	e->url = b.p;
	pg->url_bytes += b.n;
	if (pg->url_bytes > PYPI_MAX_DOC)
		return fail(pg, -E2BIG, "the page's resolved URLs total more than 64 MiB");
	uri_split(b.p, b.n, &u);
	if (!url_absolute_ok(&u))
		return fail(pg, -EINVAL, "a file URL is not an http(s) URL with a host and no user info");
	/* The file name the policy judges must be the one an installer takes from the URL. */
	for (seg = u.path_len; seg > 0 && u.path[seg - 1] != '/'; seg--)
		;
	for (size_t i = seg; i < u.path_len; i++, k++) {
		char c = u.path[i];

		if (c == '%') {
			int hi = i + 2 < u.path_len ? hexval(u.path[i + 1]) : -1;
			int lo = hi >= 0 ? hexval(u.path[i + 2]) : -1;

			if (lo < 0)
				return fail(pg, -EINVAL, "a file URL holds a bad percent escape");
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if (k >= fl || e->filename[k] != c)
			return fail(pg, -EINVAL, "a file name is not the last segment of its URL");
	}
	if (k != fl)
		return fail(pg, -EINVAL, "a file name is not the last segment of its URL");
	e->f.filename = e->filename;
	e->f.url = e->url;
	e->f.sha256 = e->sha256[0] ? e->sha256 : NULL;
	e->f.requires_python = e->rp;
	e->f.yanked_reason = e->reason;
	return 0;
}

/* ---- HTML ---- */

/* HTML character references in s[0..n), decoded into `b`: the five named ones and numeric ones. */
static int decode(const char *s, size_t n, struct buf *b)
{
	static const struct {
		const char *name, *text;
	} named[] = { { "amp", "&" }, { "lt", "<" }, { "gt", ">" }, { "quot", "\"" }, { "apos", "'" } };
	size_t i = 0;
	int err = 0;

	while (!err && i < n) {
		size_t j = i;

		if (s[i] != '&') {
			while (j < n && s[j] != '&')
				j++;
			err = buf_add(b, s + i, j - i);
			i = j;
			continue;
		}
		if (i + 1 < n && s[i + 1] == '#') {
			bool hex = i + 2 < n && (s[i + 2] == 'x' || s[i + 2] == 'X');
			uint32_t cp = 0;
			size_t digits = 0;
			char u[4];

			for (j = i + 2 + hex; j < n && (hex ? hexval(s[j]) >= 0 : is_digit(s[j])); j++, digits++)
				if (cp <= 0x10ffff)
					cp = cp * (hex ? 16 : 10) + (uint32_t)hexval(s[j]);
			if (!digits) {
				err = buf_ch(b, '&');
				i++;
				continue;
			}
			if (j < n && s[j] == ';')
				j++;
			if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
				return -EINVAL;
			if (cp < 0x80) {
				u[0] = (char)cp;
				err = buf_add(b, u, 1);
			} else if (cp < 0x800) {
				u[0] = (char)(0xc0 | (cp >> 6));
				u[1] = (char)(0x80 | (cp & 0x3f));
				err = buf_add(b, u, 2);
			} else if (cp < 0x10000) {
				u[0] = (char)(0xe0 | (cp >> 12));
				u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
				u[2] = (char)(0x80 | (cp & 0x3f));
				err = buf_add(b, u, 3);
			} else {
				u[0] = (char)(0xf0 | (cp >> 18));
				u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
				u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
				u[3] = (char)(0x80 | (cp & 0x3f));
				err = buf_add(b, u, 4);
			}
			i = j;
			continue;
		}
		for (j = i + 1; j < n && is_alnum(s[j]); j++)
			;
		if (j < n && s[j] == ';') {
			size_t k;

			for (k = 0; k < sizeof(named) / sizeof(named[0]); k++)
				if (eq_ci(s + i + 1, j - i - 1, named[k].name))
					break;
			if (k < sizeof(named) / sizeof(named[0])) {
				err = buf_str(b, named[k].text);
				i = j + 1;
				continue;
			}
		}
		/* Anything else is the text it is, as in HTML. */
		err = buf_ch(b, '&');
		i++;
	}
	return err;
}

/* Decodes s[0..n) into a new string (*out), bounded by `max` bytes. */
static int decode_dup(struct page *pg, const char *s, size_t n, size_t max, char **out, size_t *out_len)
{
	struct buf b = { .max = max };
	int err = decode(s, n, &b);

	if (!err && !b.p)
		err = buf_add(&b, "", 0);
	if (err) {
		free(b.p);
		return fail(pg, err, err == -EINVAL ? "a character reference names no character"
				: err == -E2BIG ? "an attribute or anchor text is too long" : "out of memory");
	}
	if (memchr(b.p, '\0', b.n)) {
		free(b.p);
		return fail(pg, -EINVAL, "a NUL byte in an attribute or anchor text");
	}
	*out = b.p;
	if (out_len)
		*out_len = b.n;
	return 0;
}

static bool html_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

enum { AT_HREF, AT_RP, AT_YANKED, AT_NAME, AT_CONTENT, AT_N };
static const char *const at_names[AT_N] = { "href", "data-requires-python", "data-yanked", "name", "content" };

/* A tag, with only the attributes this reader uses (values raw, borrowed from the page). */
struct tag {
	char name[16]; /* lower case; "" when longer */
	bool end, dup;
	bool has[AT_N];
	const char *v[AT_N];
	size_t vlen[AT_N];
};

/* Reads the tag at p[*ip] ('<' then a letter, or "</" then a letter) through its '>'. */
static int read_tag(struct page *pg, const char *p, size_t n, size_t *ip, struct tag *t)
{
	size_t i = *ip + 1, n0;

	memset(t, 0, sizeof(*t));
	if (p[i] == '/') {
		t->end = true;
		i++;
	}
	for (n0 = i; i < n && !html_ws(p[i]) && p[i] != '/' && p[i] != '>'; i++)
		;
	if (i - n0 < sizeof(t->name))
		for (size_t k = 0; k < i - n0; k++)
			t->name[k] = lower(p[n0 + k]);
	for (;;) {
		const char *v = "";
		size_t a0, al, vl = 0;

		while (i < n && (html_ws(p[i]) || p[i] == '/'))
			i++;
		if (i >= n)
			return fail(pg, -EINVAL, "a tag does not end");
		if (p[i] == '>')
			break;
		for (a0 = i++; i < n && !html_ws(p[i]) && p[i] != '/' && p[i] != '>' && p[i] != '='; i++)
			;
		al = i - a0;
		while (i < n && html_ws(p[i]))
			i++;
		if (i < n && p[i] == '=') {
			for (i++; i < n && html_ws(p[i]); i++)
				;
			if (i >= n)
				return fail(pg, -EINVAL, "a tag does not end");
			if (p[i] == '"' || p[i] == '\'') {
				const char *e = memchr(p + i + 1, p[i], n - i - 1);

				if (!e)
					return fail(pg, -EINVAL, "an attribute value does not end");
				v = p + i + 1;
				vl = (size_t)(e - v);
				i = (size_t)(e - p) + 1;
			} else {
				for (v = p + i; i < n && !html_ws(p[i]) && p[i] != '>'; i++)
					;
				vl = (size_t)(p + i - v);
			}
		}
		for (int a = 0; a < AT_N; a++) {
			if (!eq_ci(p + a0, al, at_names[a]))
				continue;
			if (t->has[a])
				t->dup = true;
			t->has[a] = true;
			t->v[a] = v;
			t->vlen[a] = vl;
		}
	}
	*ip = i + 1;
	return 0;
}

/* PEP 629: a major version other than 1 is a format this reader does not know. */
static bool repo_version_ok(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && s[i] == '0')
		i++;
	if (i >= n || s[i] != '1')
		return false;
	if (++i == n)
		return true;
	if (s[i] != '.' || i + 1 == n)
		return false;
	for (i++; i < n; i++)
		if (!is_digit(s[i]))
			return false;
	return true;
}

static int start_anchor(struct page *pg, struct ent *e, const struct tag *t)
{
	int err = decode_dup(pg, t->v[AT_HREF], t->vlen[AT_HREF], PYPI_MAX_URL + 64, &e->href, NULL);
	char *s = NULL;
	size_t n = 0, a = 0;

	if (err)
		return err;
	/* Browsers strip the whitespace around a URL attribute. */
	n = strlen(e->href);
	while (a < n && html_ws(e->href[a]))
		a++;
	while (n > a && html_ws(e->href[n - 1]))
		n--;
	memmove(e->href, e->href + a, n - a);
	e->href[n - a] = '\0';
	if (t->has[AT_RP]) {
		err = decode_dup(pg, t->v[AT_RP], t->vlen[AT_RP], PYPI_MAX_TEXT, &s, &n);
		if (!err)
			err = set_rp(pg, e, s, n);
		free(s);
		s = NULL;
		if (err)
			return err;
	}
	if (t->has[AT_YANKED]) {
		err = decode_dup(pg, t->v[AT_YANKED], t->vlen[AT_YANKED], PYPI_MAX_TEXT, &s, &n);
		if (!err)
			err = set_reason(pg, e, s, n);
		free(s);
	}
	return err;
}

static int finish_anchor(struct page *pg, struct ent *e, const struct buf *text)
{
	size_t n, a = 0;
	int err = decode_dup(pg, text->p ? text->p : "", text->n, PYPI_MAX_TEXT, &e->filename, &n);

	if (err)
		return err;
	while (a < n && html_ws(e->filename[a]))
		a++;
	while (n > a && html_ws(e->filename[n - 1]))
		n--;
	memmove(e->filename, e->filename + a, n - a);
	e->filename[n - a] = '\0';
	return 0;
}

/* Elements whose content is text up to their end tag, never tags (HTML's raw text and RCDATA). */
static bool raw_text(const char *name)
{
	return !strcmp(name, "script") || !strcmp(name, "style") || !strcmp(name, "title") ||
	       !strcmp(name, "textarea");
}

static int html_parse(struct page *pg, const char *p, size_t n)
{
	struct buf text = { .max = PYPI_MAX_TEXT };
	size_t i = 0, cur = SIZE_MAX;
	bool in_a = false;
	struct tag t;
	int err = 0;

	while (!err && i < n) {
		if (p[i] != '<') {
			size_t j = i;

			while (j < n && p[j] != '<')
				j++;
			if (cur != SIZE_MAX && buf_add(&text, p + i, j - i))
				err = fail(pg, -E2BIG, "an anchor's text is longer than 4096 bytes");
			i = j;
			continue;
		}
		if (n - i >= 4 && !memcmp(p + i, "<!--", 4)) {
			const char *e = memmem(p + i + 4, n - i - 4, "-->", 3);

			if (!e)
				err = fail(pg, -EINVAL, "a comment does not end");
			else
				i = (size_t)(e - p) + 3;
			continue;
		}
		if (n - i >= 2 && (p[i + 1] == '!' || p[i + 1] == '?')) {
			const char *e = memchr(p + i, '>', n - i);

			if (!e)
				err = fail(pg, -EINVAL, "a declaration does not end");
			else
				i = (size_t)(e - p) + 1;
			continue;
		}
		if (!(i + 1 < n && is_alpha(p[i + 1])) && !(i + 2 < n && p[i + 1] == '/' && is_alpha(p[i + 2]))) {
			if (cur != SIZE_MAX && buf_ch(&text, '<'))
				err = fail(pg, -E2BIG, "an anchor's text is longer than 4096 bytes");
			i++;
			continue;
		}
		err = read_tag(pg, p, n, &i, &t);
		if (err)
			break;
		if (!strcmp(t.name, "a") && t.end) {
			if (cur != SIZE_MAX)
				err = finish_anchor(pg, &pg->v[cur], &text);
			in_a = false;
			cur = SIZE_MAX;
		} else if (!strcmp(t.name, "a")) {
			/* HTML would close the first anchor here; which text belongs to which file is a guess. */
			if (in_a)
				err = fail(pg, -EINVAL, "an anchor inside an anchor");
			else if (t.dup)
				err = fail(pg, -EINVAL, "an anchor repeats an attribute");
			in_a = true;
			if (err || !t.has[AT_HREF])
				continue; /* an anchor without href links nothing */
			err = page_add(pg, &cur);
			if (!err)
				err = start_anchor(pg, &pg->v[cur], &t);
			text.n = 0;
		} else if (t.end) {
			continue;
		} else if (!strcmp(t.name, "base")) {
			if (!pg->base && t.has[AT_HREF])
				err = decode_dup(pg, t.v[AT_HREF], t.vlen[AT_HREF], PYPI_MAX_URL, &pg->base, NULL);
		} else if (!strcmp(t.name, "meta")) {
			if (t.has[AT_NAME] && t.vlen[AT_NAME] == 23 &&
			    !memcmp(t.v[AT_NAME], "pypi:repository-version", 23) &&
			    !repo_version_ok(t.v[AT_CONTENT], t.has[AT_CONTENT] ? t.vlen[AT_CONTENT] : 0))
				err = fail(pg, -EINVAL, "the page's repository version is not 1.x");
		} else if (raw_text(t.name)) {
			size_t k = strlen(t.name), j = i;

			for (;;) {
				const char *e = memmem(p + j, n - j, "</", 2);

				if (!e) {
					err = fail(pg, -EINVAL, "a script, style, title or textarea does not end");
					break;
				}
				j = (size_t)(e - p);
				if (n - j >= k + 3 && eq_ci(p + j + 2, k, t.name) &&
				    (html_ws(p[j + 2 + k]) || p[j + 2 + k] == '/' || p[j + 2 + k] == '>'))
					break;
				j += 2;
			}
			i = j;
		}
	}
	if (!err && in_a)
		err = fail(pg, -EINVAL, "an anchor does not end");
	free(text.p);
	return err;
}

/* ---- JSON ---- */

static bool leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian, y >= 1970), in closed form (H. Hinnant's days_from_civil). */
static long long days_from_civil(int y, int m, int d)
{
	long long era, yoe, doy, doe;

	y -= m <= 2;
	era = y / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int digits(const char *s, size_t n)
{
	int v = 0;

	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* PEP 700 upload-time: "yyyy-mm-ddThh:mm:ss[.ffffff]Z" (or "+00:00"), UTC. -1 when malformed. */
static long long parse_time(const char *s, size_t n)
{
	static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h, mi, se;
	size_t i = 19;

	if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
		return -1;
	y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
	h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap(y)) || h < 0 || h > 23 ||
	    mi < 0 || mi > 59 || se < 0 || se > 59)
		return -1;
	if (s[i] == '.') {
		size_t f0 = ++i;

		while (i < n && is_digit(s[i]))
			i++;
		if (i == f0 || i - f0 > 9)
			return -1;
	}
	if (!((n - i == 1 && s[i] == 'Z') || (n - i == 6 && !memcmp(s + i, "+00:00", 6))))
		return -1;
	return ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 + se;
}

static bool jstr(json_t *v, const char **s, size_t *n)
{
	if (!json_is_string(v))
		return false;
	*s = json_string_value(v);
	*n = json_string_length(v);
	return true;
}

static int json_file(struct page *pg, json_t *jf)
{
	json_t *v, *h;
	const char *s, *key;
	size_t n, idx;
	struct ent *e;
	int err;

	if (!json_is_object(jf))
		return fail(pg, -EINVAL, "a file is not an object");
	err = page_add(pg, &idx);
	if (err)
		return err;
	e = &pg->v[idx];
	if (!jstr(json_object_get(jf, "filename"), &s, &n))
		return fail(pg, -EINVAL, "a file has no \"filename\" string");
	if (n > PYPI_MAX_FILENAME)
		return fail(pg, -E2BIG, "a file name is longer than 255 bytes");
	e->filename = dup_n(s, n);
	if (!jstr(json_object_get(jf, "url"), &s, &n))
		return fail(pg, -EINVAL, "a file has no \"url\" string");
	if (n > PYPI_MAX_URL)
		return fail(pg, -E2BIG, "a file URL is longer than 8192 bytes");
	e->href = dup_n(s, n);
	if (!e->filename || !e->href)
		return fail(pg, -ENOMEM, "out of memory");
	h = json_object_get(jf, "hashes");
	if (h && !json_is_object(h))
		return fail(pg, -EINVAL, "a file's \"hashes\" is not an object");
	json_object_foreach(h, key, v) {
		if (!jstr(v, &s, &n))
			return fail(pg, -EINVAL, "a file's hash is not a string");
		if (!strcmp(key, "sha256") && !sha256_hex(s, n, e->sha256))
			return fail(pg, -EINVAL, "a file's sha256 is not 64 hex digits");
	}
	v = json_object_get(jf, "requires-python");
	if (v && !json_is_null(v)) {
		if (!jstr(v, &s, &n))
			return fail(pg, -EINVAL, "a file's \"requires-python\" is not a string");
		err = set_rp(pg, e, s, n);
		if (err)
			return err;
	}
	v = json_object_get(jf, "yanked");
	if (json_is_true(v)) {
		e->f.yanked = true;
	} else if (json_is_string(v)) {
		jstr(v, &s, &n);
		err = set_reason(pg, e, s, n);
		if (err)
			return err;
	} else if (v && !json_is_false(v) && !json_is_null(v)) {
		return fail(pg, -EINVAL, "a file's \"yanked\" is neither a boolean nor a string");
	}
	v = json_object_get(jf, "upload-time");
	if (v && !json_is_null(v)) {
		if (!jstr(v, &s, &n) || (e->f.upload_time = parse_time(s, n)) < 0)
			return fail(pg, -EINVAL, "a file's \"upload-time\" is not an ISO 8601 UTC time");
	}
	v = json_object_get(jf, "size");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return fail(pg, -EINVAL, "a file's \"size\" is not a non-negative integer");
		e->f.size = json_integer_value(v);
	}
	return 0;
}

static int json_parse(struct page *pg, const char *doc, size_t len, const char *project)
{
	json_error_t je;
	json_t *root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &je), *meta, *files, *jf;
	char norm[PYPI_MAX_NAME];
	const char *s;
	size_t n, i;
	int err = 0;

	if (!root)
		return fail(pg, -EINVAL, "the page is not JSON (or repeats a key)");
	meta = json_object_get(root, "meta");
	files = json_object_get(root, "files");
	if (!json_is_object(root) || !json_is_object(meta))
		err = fail(pg, -EINVAL, "the page has no \"meta\" object");
	else if (!jstr(json_object_get(meta, "api-version"), &s, &n) || !repo_version_ok(s, n))
		err = fail(pg, -EINVAL, "the page's api-version is not 1.x");
	else if (!jstr(json_object_get(root, "name"), &s, &n) || n >= sizeof(norm) ||
		 pypi_normalize(s, n, norm, sizeof(norm)) || strcmp(norm, project))
		err = fail(pg, -EINVAL, "the page's \"name\" is not the project's");
	else if (!json_is_array(files))
		err = fail(pg, -EINVAL, "the page has no \"files\" array");
	else if (json_array_size(files) > PYPI_MAX_FILES)
		err = fail(pg, -E2BIG, "more than 100000 files on the page");
	json_array_foreach(err ? NULL : files, i, jf) {
		err = json_file(pg, jf);
		if (err)
			break;
	}
	json_decref(root);
	return err;
}

/* ---- writing ---- */

static int html_esc(struct buf *b, const char *s)
{
	int err = 0;

	for (; !err && *s; s++) {
		switch (*s) {
		case '&': err = buf_str(b, "&amp;"); break;
		case '<': err = buf_str(b, "&lt;"); break;
		case '>': err = buf_str(b, "&gt;"); break;
		case '"': err = buf_str(b, "&quot;"); break;
		case '\'': err = buf_str(b, "&#39;"); break;
		default: err = buf_ch(b, *s);
		}
	}
	return err;
}

static int write_html(const struct page *pg, const char *project, struct buf *b)
{
	int err = buf_str(b, "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
			     "<meta name=\"pypi:repository-version\" content=\"1.0\">\n<title>Links for ");

	if (!err)
		err = html_esc(b, project);
	if (!err)
		err = buf_str(b, "</title>\n</head>\n<body>\n<h1>Links for ");
	if (!err)
		err = html_esc(b, project);
	if (!err)
		err = buf_str(b, "</h1>\n");
	for (size_t i = 0; !err && i < pg->n; i++) {
		const struct ent *e = &pg->v[i];

		if (!e->keep)
			continue;
		err = buf_str(b, "<a href=\"");
		if (!err)
			err = html_esc(b, e->new_url);
		if (!err && e->sha256[0]) {
			err = buf_str(b, "#sha256=");
			if (!err)
				err = buf_str(b, e->sha256);
		}
		if (!err)
			err = buf_ch(b, '"');
		if (!err && e->rp) {
			err = buf_str(b, " data-requires-python=\"");
			if (!err)
				err = html_esc(b, e->rp);
			if (!err)
				err = buf_ch(b, '"');
		}
		if (!err && e->f.yanked) {
			err = buf_str(b, " data-yanked=\"");
			if (!err && e->reason)
				err = html_esc(b, e->reason);
			if (!err)
				err = buf_ch(b, '"');
		}
		if (!err)
			err = buf_ch(b, '>');
		if (!err)
			err = html_esc(b, e->filename);
		if (!err)
			err = buf_str(b, "</a><br/>\n");
	}
	if (!err)
		err = buf_str(b, "</body>\n</html>\n");
	return err;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Adds `v` (a new reference, may be NULL after a failed allocation) to `o` as `key`. */
static int jset(json_t *o, const char *key, json_t *v)
{
	return v && !json_object_set_new(o, key, v) ? 0 : -ENOMEM;
}

static int write_json(const struct page *pg, const char *project, struct buf *b)
{
	json_t *root = json_object(), *meta = json_object(), *files = json_array(), *versions = json_array();
	const char **vs = malloc((pg->n ? pg->n : 1) * sizeof(*vs));
	size_t nv = 0;
	char *text = NULL;
	int err = root && meta && files && versions && vs ? 0 : -ENOMEM;

	if (!err)
		err = jset(meta, "api-version", json_string("1.1"));
	if (!err)
		err = jset(root, "meta", json_incref(meta));
	if (!err)
		err = jset(root, "name", json_string(project));
	for (size_t i = 0; !err && i < pg->n; i++) {
		const struct ent *e = &pg->v[i];
		json_t *f, *h;
		char t[64];

		if (!e->keep)
			continue;
		if (e->f.version[0])
			vs[nv++] = e->f.version;
		f = json_object();
		h = json_object();
		err = f && h && !json_array_append(files, f) ? 0 : -ENOMEM;
		if (!err)
			err = jset(f, "filename", json_string(e->filename));
		if (!err)
			err = jset(f, "url", json_string(e->new_url));
		if (!err && e->sha256[0])
			err = jset(h, "sha256", json_string(e->sha256));
		if (!err)
			err = jset(f, "hashes", json_incref(h));
		if (!err && e->rp)
			err = jset(f, "requires-python", json_string(e->rp));
		if (!err)
			err = jset(f, "yanked", e->reason ? json_string(e->reason) : json_boolean(e->f.yanked));
		if (!err && e->f.size >= 0)
			err = jset(f, "size", json_integer(e->f.size));
		if (!err && e->f.upload_time >= 0) {
			time_t tt = (time_t)e->f.upload_time;
			struct tm tm;

			if (!gmtime_r(&tt, &tm))
				err = -EINVAL;
			else
				snprintf(t, sizeof(t), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
					 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
			if (!err)
				err = jset(f, "upload-time", json_string(t));
		}
		json_decref(f);
		json_decref(h);
	}
	/* PEP 700 "versions": every version a kept file has, once each (sorted, which PEP 700 leaves open). */
	if (!err && nv)
		qsort(vs, nv, sizeof(*vs), cmp_str);
	for (size_t i = 0; !err && i < nv; i++)
		if (i == 0 || strcmp(vs[i], vs[i - 1]))
			err = json_array_append_new(versions, json_string(vs[i])) ? -ENOMEM : 0;
	if (!err)
		err = jset(root, "versions", json_incref(versions));
	if (!err)
		err = jset(root, "files", json_incref(files));
	if (!err) {
		text = json_dumps(root, JSON_COMPACT);
		err = text ? buf_str(b, text) : -ENOMEM;
		if (!err)
			err = buf_ch(b, '\n');
	}
	free(text);
	free(vs);
	json_decref(root);
	json_decref(meta);
	json_decref(files);
	json_decref(versions);
	return err;
}

/* ---- the rewrite ---- */

/* What a callback may hand back: a URL of printable ASCII without a fragment. */
static bool new_url_ok(const char *s, size_t n)
{
	return n > 0 && url_chars_ok(s, n) && !memchr(s, '#', n);
}

int pypi_index_rewrite(enum pypi_format in_fmt, const char *doc, size_t len, const char *doc_url,
		       const char *project, enum pypi_format out_fmt, pypi_file_cb cb, void *arg, char **out,
		       size_t *out_len, const char **why)
{
	struct page pg = { 0 };
	struct buf ob = { .max = PYPI_MAX_DOC };
	struct uri base, bb;
	char norm[PYPI_MAX_NAME], *nu = NULL;
	int err = 0;

	*out = NULL;
	*out_len = 0;
	uri_split(doc_url, strlen(doc_url), &base);
	if (len > PYPI_MAX_DOC)
		err = fail(&pg, -E2BIG, "the page is larger than 64 MiB");
	else if (!url_chars_ok(doc_url, strlen(doc_url)) || !url_absolute_ok(&base))
		err = fail(&pg, -EINVAL, "the page's URL is not an absolute http(s) URL");
	else if (pypi_normalize(project, strlen(project), norm, sizeof(norm)) || strcmp(norm, project))
		err = fail(&pg, -EINVAL, "the project name is not PEP 503-normalized");
	else if (in_fmt == PYPI_HTML)
		err = html_parse(&pg, doc ? doc : "", len);
	else
		err = json_parse(&pg, doc ? doc : "", len, project);
	if (err)
		goto out;
	if (pg.base) {
		/* <base href> is itself resolved against the page's URL, and must be as plain as a file's URL. */
		size_t bl = strlen(pg.base);
		struct buf b = { .max = PYPI_MAX_URL };
		struct uri ref;

		if (!url_chars_ok(pg.base, bl)) {
			err = fail(&pg, -EINVAL,
				   "<base href> holds a space, a backslash or a byte outside printable ASCII");
			goto out;
		}
		uri_split(pg.base, bl, &ref);
		err = uri_resolve(&base, &ref, &b);
		free(pg.base);
		pg.base = b.p;
		if (err) {
			fail(&pg, err, err == -E2BIG ? "<base href> is longer than 8192 bytes" : "out of memory");
			goto out;
		}
		uri_split(pg.base, b.n, &bb);
		if (!url_absolute_ok(&bb)) {
			err = fail(&pg, -EINVAL, "<base href> is not an http(s) URL with a host and no user info");
			goto out;
		}
		base = bb;
	}
	for (size_t i = 0; !err && i < pg.n; i++)
		err = file_check(&pg, &pg.v[i], &base);
	if (err)
		goto out;
	/* Callbacks only once the whole page is known good: a page refused halfway keeps nothing. */
	nu = malloc(PYPI_MAX_URL + 1);
	if (!nu) {
		err = fail(&pg, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < pg.n; i++) {
		struct ent *e = &pg.v[i];
		size_t nl;

		if (pypi_filename_version(e->filename, project, e->f.version, sizeof(e->f.version)))
			e->f.version[0] = '\0';
		nu[0] = '\0';
		e->keep = cb(arg, &e->f, nu, PYPI_MAX_URL);
		if (!e->keep)
			continue;
		nu[PYPI_MAX_URL] = '\0';
		nl = strnlen(nu, PYPI_MAX_URL);
		if (nl == PYPI_MAX_URL || !new_url_ok(nu, nl)) {
			err = fail(&pg, -EINVAL, "the callback's URL is empty, too long, or not printable ASCII");
			goto out;
		}
		pg.new_url_bytes += nl;
		if (pg.new_url_bytes > PYPI_MAX_DOC) {
			err = fail(&pg, -E2BIG, "the new page's URLs total more than 64 MiB");
			goto out;
		}
		e->new_url = dup_n(nu, nl);
		if (!e->new_url) {
			err = fail(&pg, -ENOMEM, "out of memory");
			goto out;
		}
	}
	err = out_fmt == PYPI_HTML ? write_html(&pg, project, &ob) : write_json(&pg, project, &ob);
	if (err) {
		fail(&pg, err, err == -E2BIG ? "the new page is larger than 64 MiB" : "out of memory");
		goto out;
	}
	*out = ob.p;
	*out_len = ob.n;
	ob.p = NULL;
out:
	free(nu);
	free(ob.p);
	page_free(&pg);
	if (why)
		*why = err ? pg.why : NULL;
	return err;
}
