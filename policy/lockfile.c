/* SPDX-License-Identifier: Apache-2.0 */
/* Lockfile front door: picks a parser by file name, checks common bounds, and owns the artifact list. */

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lockfile.h"
#include "lockfile_priv.h"

static bool has_suffix(const char *s, size_t len, const char *suffix)
{
	size_t n = strlen(suffix);

	return len >= n && !memcmp(s + len - n, suffix, n);
}

/*
 * pip has no fixed lockfile name: projects keep requirements-dev.txt or requirements_lock.txt beside
 * requirements.txt. Accept "requirements" + one of "-_." + anything + ".txt" and nothing looser, so a
 * stray notes.txt is never parsed as a lockfile.
 */
static bool is_requirements(const char *base)
{
	static const char prefix[] = "requirements";
	size_t plen = sizeof(prefix) - 1;
	size_t len = strlen(base);

	if (!strcmp(base, "requirements.txt"))
		return true;
	if (len <= plen + 1 + 4 || memcmp(base, prefix, plen))
		return false;
	if (!strchr("-_.", base[plen]))
		return false;
	return has_suffix(base, len, ".txt");
}

int crgw_lockfile_kind_from_name(const char *path, enum crgw_lockfile_kind *out)
{
	const char *base;

	if (!path || !out)
		return -EINVAL;
	base = strrchr(path, '/');
	base = base ? base + 1 : path;

	if (!strcmp(base, "package-lock.json") || !strcmp(base, "npm-shrinkwrap.json"))
		*out = CRGW_LOCKFILE_NPM;
	else if (!strcmp(base, "yarn.lock"))
		*out = CRGW_LOCKFILE_YARN;
	else if (is_requirements(base))
		*out = CRGW_LOCKFILE_PIP;
	else if (!strcmp(base, "go.sum"))
		*out = CRGW_LOCKFILE_GOSUM;
	else
		return -ENOENT;
	return 0;
}

const char *crgw_lockfile_registry(enum crgw_lockfile_kind kind)
{
	switch (kind) {
	case CRGW_LOCKFILE_NPM:
	case CRGW_LOCKFILE_YARN:
		return "npm";
	case CRGW_LOCKFILE_PIP:
		return "pip";
	case CRGW_LOCKFILE_GOSUM:
		return "go";
	}
	return NULL;
}

/*
 * None of the text formats has a use for a NUL byte, and refusing them here means the line-based parsers
 * never meet one and no C string built from the input can be cut short behind a parser's back.
 */
static int refuse_nul(const char *buf, size_t len, struct crgw_lockfile_error *err)
{
	const char *nul = memchr(buf, '\0', len);
	unsigned line = 1, col = 1;
	const char *p;

	if (!nul)
		return 0;
	for (p = buf; p < nul; p++) {
		if (*p == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	return crgw_lf_fail(err, -EINVAL, line, col, "NUL byte in a text lockfile");
}

int crgw_lockfile_parse(enum crgw_lockfile_kind kind, const char *buf, size_t len,
			struct crgw_artifact_list *out, struct crgw_lockfile_error *err)
{
	int ret;

	if (err) {
		err->line = 0;
		err->column = 0;
		err->message[0] = '\0';
	}
	if (!out || (!buf && len))
		return crgw_lf_fail(err, -EINVAL, 0, 0, "no lockfile buffer or list");
	if (len > CRGW_LOCKFILE_MAX_BYTES)
		return crgw_lf_fail(err, -E2BIG, 0, 0, "lockfile larger than %u bytes",
				    CRGW_LOCKFILE_MAX_BYTES);
	if (!buf)
		buf = "";

	switch (kind) {
	case CRGW_LOCKFILE_NPM:
		return crgw_lf_parse_npm(buf, len, out, err);
	case CRGW_LOCKFILE_YARN:
		ret = refuse_nul(buf, len, err);
		return ret ? ret : crgw_lf_parse_yarn(buf, len, out, err);
	case CRGW_LOCKFILE_PIP:
		ret = refuse_nul(buf, len, err);
		return ret ? ret : crgw_lf_parse_pip(buf, len, out, err);
	case CRGW_LOCKFILE_GOSUM:
		ret = refuse_nul(buf, len, err);
		return ret ? ret : crgw_lf_parse_gosum(buf, len, out, err);
	}
	return crgw_lf_fail(err, -EINVAL, 0, 0, "unknown lockfile kind %d", (int)kind);
}

/* ---- artifact list ------------------------------------------------------------------------------ */

static int cmp_str(const char *a, const char *b)
{
	if (!a || !b)
		return (a != NULL) - (b != NULL);
	return strcmp(a, b);
}

static int cmp_artifact(const void *pa, const void *pb)
{
	const struct crgw_artifact *a = pa, *b = pb;
	int c;

	c = cmp_str(a->name, b->name);
	if (!c)
		c = cmp_str(a->version, b->version);
	if (!c)
		c = cmp_str(a->integrity, b->integrity);
	if (!c)
		c = cmp_str(a->registry, b->registry);
	return c;
}

static void artifact_free(struct crgw_artifact *a)
{
	free(a->name);
	free(a->version);
	free(a->registry);
	free(a->integrity);
	memset(a, 0, sizeof(*a));
}

void crgw_artifact_list_sort_unique(struct crgw_artifact_list *list)
{
	size_t i, kept = 0;

	if (!list || list->count < 2)
		return;
	qsort(list->items, list->count, sizeof(list->items[0]), cmp_artifact);
	for (i = 1; i < list->count; i++) {
		if (!cmp_artifact(&list->items[kept], &list->items[i]))
			artifact_free(&list->items[i]);
		else
			list->items[++kept] = list->items[i];
	}
	list->count = kept + 1;
}

void crgw_artifact_list_free(struct crgw_artifact_list *list)
{
	size_t i;

	if (!list)
		return;
	for (i = 0; i < list->count; i++)
		artifact_free(&list->items[i]);
	free(list->items);
	list->items = NULL;
	list->count = 0;
	list->capacity = 0;
}

static const char *check_field(const struct crgw_lf_field *f, bool optional)
{
	size_t i;

	if (!f->p)
		return optional ? NULL : "is missing";
	if (!f->len)
		return "is empty";
	if (f->len > CRGW_LOCKFILE_MAX_FIELD)
		return "is longer than the field limit";
	/*
	 * Names, versions, hosts and digests of every supported ecosystem are plain ASCII. Refusing the rest
	 * keeps tabs, newlines and terminal escapes out of the allowlist, the audit log and the CLI tables.
	 */
	for (i = 0; i < f->len; i++) {
		unsigned char c = (unsigned char)f->p[i];

		if (c <= 0x20 || c >= 0x7f)
			return "holds a byte that is not printable ASCII";
	}
	return NULL;
}

static char *dup_field(const struct crgw_lf_field *f, bool lower)
{
	char *s;
	size_t i;

	if (!f->p)
		return NULL;
	s = malloc(f->len + 1);
	if (!s)
		return NULL;
	memcpy(s, f->p, f->len);
	s[f->len] = '\0';
	if (lower) {
		for (i = 0; i < f->len; i++) {
			if (s[i] >= 'A' && s[i] <= 'Z')
				s[i] = (char)(s[i] - 'A' + 'a');
		}
	}
	return s;
}

static int list_reserve(struct crgw_artifact_list *out)
{
	struct crgw_artifact *items;
	size_t cap;

	if (out->count < out->capacity)
		return 0;
	cap = out->capacity ? out->capacity * 2 : 64;
	if (cap > CRGW_LOCKFILE_MAX_ARTIFACTS)
		cap = CRGW_LOCKFILE_MAX_ARTIFACTS;
	if (cap <= out->count)
		return -E2BIG;
	items = realloc(out->items, cap * sizeof(*items));
	if (!items)
		return -ENOMEM;
	out->items = items;
	out->capacity = cap;
	return 0;
}

int crgw_lf_append(struct crgw_artifact_list *out, const struct crgw_lf_artifact *a,
		   struct crgw_lockfile_error *err, unsigned line, unsigned column)
{
	static const char *const names[] = { "name", "version", "registry", "integrity" };
	const struct crgw_lf_field *fields[] = { &a->name, &a->version, &a->registry, &a->integrity };
	struct crgw_artifact *dst;
	const char *why;
	char snip[CRGW_LF_SNIPPET + 4];
	size_t i;
	int ret;

	for (i = 0; i < 4; i++) {
		why = check_field(fields[i], i == 2);
		if (why) {
			crgw_lf_snippet(snip, sizeof(snip), fields[i]->p, fields[i]->p ? fields[i]->len : 0);
			return crgw_lf_fail(err, -EINVAL, line, column, "%s '%s' %s", names[i], snip, why);
		}
	}
	if (out->count >= CRGW_LOCKFILE_MAX_ARTIFACTS)
		return crgw_lf_fail(err, -E2BIG, line, column, "more than %u artifacts",
				    CRGW_LOCKFILE_MAX_ARTIFACTS);
	ret = list_reserve(out);
	if (ret)
		return crgw_lf_fail(err, ret, line, column, "out of memory");

	dst = &out->items[out->count];
	memset(dst, 0, sizeof(*dst));
	dst->name = dup_field(&a->name, false);
	dst->version = dup_field(&a->version, false);
	dst->registry = dup_field(&a->registry, true);
	dst->integrity = dup_field(&a->integrity, false);
	if (!dst->name || !dst->version || !dst->integrity || (a->registry.p && !dst->registry)) {
		artifact_free(dst);
		return crgw_lf_fail(err, -ENOMEM, line, column, "out of memory");
	}
	out->count++;
	return 0;
}

/* ---- shared helpers ----------------------------------------------------------------------------- */

int crgw_lf_fail(struct crgw_lockfile_error *err, int code, unsigned line, unsigned column,
		 const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return code;
	err->line = line;
	err->column = column;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return code;
}

void crgw_lf_snippet(char *dst, size_t size, const char *p, size_t len)
{
	size_t i, n = 0;
	bool cut = false;

	if (!size)
		return;
	if (len > CRGW_LF_SNIPPET) {
		len = CRGW_LF_SNIPPET;
		cut = true;
	}
	for (i = 0; i < len && n + 1 < size; i++) {
		unsigned char c = (unsigned char)p[i];

		dst[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (cut && n + 4 <= size) {
		memcpy(dst + n, "...", 3);
		n += 3;
	}
	dst[n] = '\0';
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool prefix_nocase(const char *p, size_t len, const char *prefix)
{
	size_t i, n = strlen(prefix);

	if (len < n)
		return false;
	for (i = 0; i < n; i++) {
		char c = p[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != prefix[i])
			return false;
	}
	return true;
}

static bool npm_part_ok(const char *p, size_t n)
{
	size_t i;

	if (!n || p[0] == '.' || p[0] == '_')
		return false;
	for (i = 0; i < n; i++) {
		if (!is_alnum(p[i]) && !memchr("-._~!*'()", p[i], 9))
			return false;
	}
	return true;
}

bool crgw_lf_npm_name_ok(const char *p, size_t n)
{
	const char *slash;

	if (!n)
		return false;
	if (p[0] != '@')
		return npm_part_ok(p, n);
	slash = memchr(p, '/', n);
	if (!slash)
		return false;
	return npm_part_ok(p + 1, (size_t)(slash - p - 1)) &&
	       npm_part_ok(slash + 1, n - (size_t)(slash - p) - 1);
}

bool crgw_lf_semver_ok(const char *p, size_t n)
{
	size_t i;

	if (!n || p[0] < '0' || p[0] > '9')
		return false;
	for (i = 0; i < n; i++) {
		if (!is_alnum(p[i]) && p[i] != '.' && p[i] != '+' && p[i] != '-')
			return false;
	}
	return true;
}

/*
 * A lockfile written inside a sandbox records the gateway's registry mediation (port 8170), whose path
 * names the upstream: http://<gateway>:8170/registry/<kind>/<host>/... That host is where the artifact
 * comes from, and the one allowed_hosts must name. Left as it was when the path is not of that form.
 */
static void mediated_host(const char *path, size_t len, struct crgw_lf_field *host)
{
	const char *end = path + len, *kind, *h, *p;

	if (len < 10 || memcmp(path, "/registry/", 10))
		return;
	for (kind = p = path + 10; p < end && is_alnum(*p); p++)
		;
	if (p == kind || p >= end || *p != '/')
		return;
	for (h = ++p; p < end && (is_alnum(*p) || *p == '-' || *p == '.' || *p == '_'); p++)
		;
	if (p == h || p >= end || *p != '/' || h[0] == '.' || p[-1] == '.')
		return;
	host->p = h;
	host->len = (size_t)(p - h);
}

int crgw_lf_url_host(const char *url, size_t len, struct crgw_lf_field *host, const char **why)
{
	const char *auth, *end, *h, *he, *p, *port = NULL;
	size_t skip;

	if (prefix_nocase(url, len, "https://"))
		skip = 8;
	else if (prefix_nocase(url, len, "http://"))
		skip = 7;
	else
		return -ENOENT;

	auth = url + skip;
	for (end = auth; end < url + len; end++) {
		if (*end == '/' || *end == '?' || *end == '#' || *end == '\\')
			break;
	}
	/* Credentials are not part of where an artifact comes from; the last '@' ends them. */
	h = auth;
	for (p = auth; p < end; p++) {
		if (*p == '@')
			h = p + 1;
	}

	if (h < end && *h == '[') {
		he = memchr(h, ']', (size_t)(end - h));
		if (!he) {
			*why = "unterminated IPv6 address in URL";
			return -EINVAL;
		}
		p = he + 1;
		h++;
		for (const char *q = h; q < he; q++) {
			if (!is_hex(*q) && *q != ':' && *q != '.') {
				*why = "bad IPv6 address in URL";
				return -EINVAL;
			}
		}
	} else {
		for (he = h; he < end && *he != ':'; he++) {
			if (!is_alnum(*he) && *he != '-' && *he != '.' && *he != '_') {
				*why = "bad character in URL host";
				return -EINVAL;
			}
		}
		p = he;
		if (he > h && he[-1] == '.')
			he--;
	}
	/* What follows the host may only be a port. */
	if (p < end) {
		if (*p != ':' || p + 1 == end) {
			*why = "bad port in URL";
			return -EINVAL;
		}
		port = p + 1;
		for (p++; p < end; p++) {
			if (*p < '0' || *p > '9') {
				*why = "bad port in URL";
				return -EINVAL;
			}
		}
	}
	if (he == h) {
		*why = "URL has no host";
		return -EINVAL;
	}
	host->p = h;
	host->len = (size_t)(he - h);
	if (port && end - port == 4 && !memcmp(port, "8170", 4))
		mediated_host(end, (size_t)(url + len - end), host);
	return 0;
}

static const struct {
	const char *name;
	size_t digest;
} sri_algos[] = {
	{ "sha1", 20 },
	{ "sha256", 32 },
	{ "sha384", 48 },
	{ "sha512", 64 },
};

int crgw_lf_check_sri(const char *p, size_t len, const char **why)
{
	unsigned char digest[64];
	const char *dash = memchr(p, '-', len);
	size_t alen, dlen, i;
	int ret;

	if (!dash) {
		*why = "integrity is not <algorithm>-<base64>";
		return -EINVAL;
	}
	alen = (size_t)(dash - p);
	for (i = 0; i < sizeof(sri_algos) / sizeof(sri_algos[0]); i++) {
		if (strlen(sri_algos[i].name) == alen && !memcmp(sri_algos[i].name, p, alen))
			break;
	}
	if (i == sizeof(sri_algos) / sizeof(sri_algos[0])) {
		*why = "integrity algorithm is not sha1, sha256, sha384 or sha512";
		return -EINVAL;
	}
	ret = crgw_lf_b64_decode(dash + 1, len - alen - 1, digest, sizeof(digest), &dlen);
	if (ret == -EINVAL) {
		*why = "integrity digest is not canonical base64";
		return -EINVAL;
	}
	if (ret || dlen != sri_algos[i].digest) {
		*why = "integrity digest has the wrong length for its algorithm";
		return -EINVAL;
	}
	return 0;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int crgw_lf_b64_decode(const char *in, size_t len, unsigned char *out, size_t cap, size_t *outlen)
{
	size_t i, n = 0, pad = 0;

	if (len % 4)
		return -EINVAL;
	if (len && in[len - 1] == '=')
		pad++;
	if (len > 1 && in[len - 2] == '=')
		pad++;
	if (len / 4 * 3 - pad > cap)
		return -E2BIG;

	for (i = 0; i < len; i += 4) {
		int v[4], k, quads = (i + 4 == len) ? 4 - (int)pad : 4;
		uint32_t acc = 0;

		for (k = 0; k < 4; k++) {
			v[k] = k < quads ? b64_value(in[i + k]) : 0;
			if (v[k] < 0)
				return -EINVAL;
			acc = acc << 6 | (uint32_t)v[k];
		}
		/* Unused low bits must be zero, or two spellings would name the same digest. */
		if ((quads == 3 && (acc & 0xff)) || (quads == 2 && (acc & 0xffff)))
			return -EINVAL;
		out[n++] = (unsigned char)(acc >> 16);
		if (quads > 2)
			out[n++] = (unsigned char)(acc >> 8);
		if (quads > 3)
			out[n++] = (unsigned char)acc;
	}
	*outlen = n;
	return 0;
}

int crgw_lf_b64_encode(const unsigned char *in, size_t len, char *out, size_t cap)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, n = 0;

	if (len > (SIZE_MAX - 1) / 4 || (len + 2) / 3 * 4 + 1 > cap)
		return -E2BIG;
	for (i = 0; i < len; i += 3) {
		uint32_t acc = (uint32_t)in[i] << 16;

		if (i + 1 < len)
			acc |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			acc |= in[i + 2];
		out[n++] = alphabet[acc >> 18 & 63];
		out[n++] = alphabet[acc >> 12 & 63];
		out[n++] = i + 1 < len ? alphabet[acc >> 6 & 63] : '=';
		out[n++] = i + 2 < len ? alphabet[acc & 63] : '=';
	}
	out[n] = '\0';
	return 0;
}

bool crgw_lf_next_line(struct crgw_lf_lines *it, const char **line, size_t *llen)
{
	const char *start, *nl;
	size_t n;

	if (it->pos >= it->len)
		return false;
	start = it->buf + it->pos;
	nl = memchr(start, '\n', it->len - it->pos);
	n = nl ? (size_t)(nl - start) : it->len - it->pos;
	it->pos += n + (nl ? 1 : 0);
	if (n && start[n - 1] == '\r')
		n--;
	it->lineno++;
	*line = start;
	*llen = n;
	return true;
}
