/* SPDX-License-Identifier: Apache-2.0 */
/* npm packuments checked and rewritten for the sandbox; npm names, semver versions and tarball paths. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "packument.h"

/* ---- names, versions, times ------------------------------------------------------------------------- */

static bool is_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/*
 * One part of a name (the scope or the package). Only letters, digits, '-', '_' and '.': these are the
 * characters that stand for themselves in a URL and on a file system, so a name can never carry a path
 * separator, a percent escape or a dot segment into the URLs and cache keys built from it.
 */
static bool name_part_ok(const char *p, size_t n)
{
	if (n == 0 || p[0] == '.' || p[0] == '_')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum((unsigned char)p[i]) && p[i] != '-' && p[i] != '_' && p[i] != '.')
			return false;
	return true;
}

bool npm_name_valid(const char *name, size_t len)
{
	if (!name || len == 0 || len > NPM_NAME_MAX)
		return false;
	if (name[0] == '@') {
		const char *slash = memchr(name + 1, '/', len - 1);

		return slash && name_part_ok(name + 1, (size_t)(slash - name - 1)) &&
		       name_part_ok(slash + 1, len - (size_t)(slash + 1 - name));
	}
	if ((len == 12 && !memcmp(name, "node_modules", 12)) || (len == 11 && !memcmp(name, "favicon.ico", 11)))
		return false;
	return name_part_ok(name, len);
}

/* A semver version cut in its parts; the pointers are into the string parsed. */
struct semver {
	const char *num[3];
	size_t numlen[3];
	const char *pre; /* the prerelease identifiers without the '-'; NULL when none */
	size_t prelen;
};

/* "0" or a number without a leading zero. */
static bool numeric_ok(const char *p, size_t n)
{
	if (n == 0 || (n > 1 && p[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_digit((unsigned char)p[i]))
			return false;
	return true;
}

/* Dot-separated non-empty identifiers of [0-9A-Za-z-]; numeric ones without leading zeros when `pre`. */
static bool idents_ok(const char *p, size_t n, bool pre)
{
	size_t start = 0;

	for (size_t i = 0; i <= n; i++) {
		if (i < n && p[i] != '.') {
			if (!is_alnum((unsigned char)p[i]) && p[i] != '-')
				return false;
			continue;
		}
		size_t k = i - start;
		bool all_digits = k > 0;

		for (size_t j = start; j < i; j++)
			all_digits = all_digits && is_digit((unsigned char)p[j]);
		if (k == 0 || (pre && all_digits && !numeric_ok(p + start, k)))
			return false;
		start = i + 1;
	}
	return true;
}

static bool semver_parse(const char *v, size_t len, struct semver *s)
{
	size_t i = 0;

	if (!v || len == 0 || len > NPM_VERSION_MAX)
		return false;
	for (int k = 0; k < 3; k++) {
		size_t start = i;

		while (i < len && is_digit((unsigned char)v[i]))
			i++;
		if (!numeric_ok(v + start, i - start))
			return false;
		s->num[k] = v + start;
		s->numlen[k] = i - start;
		if (k < 2) {
			if (i >= len || v[i] != '.')
				return false;
			i++;
		}
	}
	s->pre = NULL;
	s->prelen = 0;
	if (i < len && v[i] == '-') {
		size_t start = ++i;

		while (i < len && v[i] != '+')
			i++;
		if (!idents_ok(v + start, i - start, true))
			return false;
		s->pre = v + start;
		s->prelen = i - start;
	}
	if (i < len && v[i] == '+') {
		i++;
		if (!idents_ok(v + i, len - i, false))
			return false;
		i = len;
	}
	return i == len;
}

bool npm_semver_valid(const char *v, size_t len)
{
	struct semver s;

	return semver_parse(v, len, &s);
}

/* Two numbers without leading zeros, of any length: the longer is larger, else the digits decide. */
static int numcmp(const char *a, size_t an, const char *b, size_t bn)
{
	if (an != bn)
		return an < bn ? -1 : 1;
	return memcmp(a, b, an);
}

static int precmp(const char *a, size_t an, const char *b, size_t bn)
{
	size_t i = 0, j = 0;

	for (;;) {
		/* A larger set of identifiers is higher when all before are equal. */
		if (i >= an || j >= bn)
			return (j >= bn) - (i >= an);
		size_t ie = i, je = j;
		bool anum = true, bnum = true;

		for (; ie < an && a[ie] != '.'; ie++)
			anum = anum && is_digit((unsigned char)a[ie]);
		for (; je < bn && b[je] != '.'; je++)
			bnum = bnum && is_digit((unsigned char)b[je]);
		int c;

		if (anum && bnum)
			c = numcmp(a + i, ie - i, b + j, je - j);
		else if (anum != bnum)
			c = anum ? -1 : 1; /* numeric identifiers have lower precedence */
		else {
			size_t n = ie - i < je - j ? ie - i : je - j;

			c = memcmp(a + i, b + j, n);
			if (!c && ie - i != je - j)
				c = ie - i < je - j ? -1 : 1;
		}
		if (c)
			return c < 0 ? -1 : 1;
		i = ie + 1;
		j = je + 1;
	}
}

int npm_semver_cmp(const char *a, const char *b)
{
	struct semver x, y;
	bool xv = semver_parse(a, strlen(a), &x), yv = semver_parse(b, strlen(b), &y);

	/* Not used with invalid versions; give them a total order anyway: below every valid one. */
	if (!xv || !yv)
		return xv == yv ? (strcmp(a, b) > 0) - (strcmp(a, b) < 0) : (xv ? 1 : -1);
	for (int k = 0; k < 3; k++) {
		int c = numcmp(x.num[k], x.numlen[k], y.num[k], y.numlen[k]);

		if (c)
			return c < 0 ? -1 : 1;
	}
	if (!x.pre || !y.pre)
		return (x.pre ? -1 : 0) + (y.pre ? 1 : 0);
	return precmp(x.pre, x.prelen, y.pre, y.prelen);
}

/* `n` digits at `s` as a number, or -1; stops at the first non-digit, so never reads past a NUL. */
static int digits(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!is_digit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Days from 1970-01-01 to a date of the proleptic Gregorian calendar (H. Hinnant's days_from_civil). */
static long long days_from_civil(long long y, int m, int d)
{
	y -= m <= 2;
	long long era = (y >= 0 ? y : y - 399) / 400;
	long long yoe = y - era * 400;
	long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

long long npm_time_parse(const char *s)
{
	static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, sec, off = 0;
	const char *p;

	if (!s || (y = digits(s, 4)) < 0 || s[4] != '-' || (mo = digits(s + 5, 2)) < 0 || s[7] != '-' ||
	    (d = digits(s + 8, 2)) < 0 || (s[10] != 'T' && s[10] != 't') || (h = digits(s + 11, 2)) < 0 ||
	    s[13] != ':' || (mi = digits(s + 14, 2)) < 0 || s[16] != ':' || (sec = digits(s + 17, 2)) < 0)
		return -1;
	p = s + 19;
	if (*p == '.') {
		if (!is_digit((unsigned char)*++p))
			return -1;
		while (is_digit((unsigned char)*p))
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1, oh = digits(p + 1, 2), om;

		if (oh < 0)
			return -1;
		p += 3;
		if (*p == ':')
			p++;
		if ((om = digits(p, 2)) < 0 || oh > 23 || om > 59)
			return -1;
		off = sign * (oh * 3600 + om * 60);
		p += 2;
	} else {
		return -1;
	}
	if (*p || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
		return -1;
	if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return -1;
	long long t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;

	return t < 0 ? -1 : t;
}

/* ---- tarball paths --------------------------------------------------------------------------------- */

static int copy_out(char *dst, size_t cap, const char *src, size_t n)
{
	if (n >= cap)
		return -E2BIG;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return 0;
}

int npm_tarball_path_parse(const char *path, size_t len, char *name, size_t ncap, char *version, size_t vcap)
{
	const char *seg[5];
	size_t seglen[5], nseg = 0, start;

	if (ncap)
		name[0] = '\0';
	if (vcap)
		version[0] = '\0';
	if (!path)
		return -EINVAL;
	if (len && path[0] == '/')
		path++, len--;
	start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && path[i] != '/')
			continue;
		if (nseg == 5)
			return -EINVAL;
		seg[nseg] = path + start;
		seglen[nseg++] = i - start;
		start = i + 1;
	}
	/* "name/-/file" or "@scope/name/-/file": the name takes one segment, or two when scoped. */
	size_t nameseg = nseg && seglen[0] && path[0] == '@' ? 2 : 1;

	if (nseg != nameseg + 2 || seglen[nameseg] != 1 || seg[nameseg][0] != '-')
		return -EINVAL;
	size_t nlen = (size_t)(seg[nameseg - 1] + seglen[nameseg - 1] - path);
	const char *base = seg[nameseg - 1], *file = seg[nameseg + 1];
	size_t blen = seglen[nameseg - 1], flen = seglen[nameseg + 1];

	if (!npm_name_valid(path, nlen) || flen <= blen + 1 + 4 || memcmp(file, base, blen) || file[blen] != '-' ||
	    memcmp(file + flen - 4, ".tgz", 4) || !npm_semver_valid(file + blen + 1, flen - blen - 1 - 4))
		return -EINVAL;
	int err = copy_out(name, ncap, path, nlen);

	if (!err)
		err = copy_out(version, vcap, file + blen + 1, flen - blen - 1 - 4);
	if (err) {
		if (ncap)
			name[0] = '\0';
		if (vcap)
			version[0] = '\0';
	}
	return err;
}

/* ---- documents ------------------------------------------------------------------------------------- */

/*
 * Nesting is bounded before jansson sees the document: jansson's own limit (2048) is deep enough for its
 * recursive parser, printer and json_decref() to need a large stack, and a gateway worker's stack is small.
 * A packument is a few levels deep; a package.json field copied into a version is rarely more than ten.
 */
static bool depth_ok(const char *doc, size_t len)
{
	unsigned depth = 0;
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		char c = doc[i];

		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = false;
		} else if (c == '"') {
			in_str = true;
		} else if (c == '[' || c == '{') {
			if (++depth > NPM_MAX_DEPTH)
				return false;
		} else if ((c == ']' || c == '}') && depth) {
			depth--;
		}
	}
	return true;
}

/* jansson's error, as a static reason. */
static int load_error(const json_error_t *e, const char **why)
{
	switch (json_error_code(e)) {
	case json_error_out_of_memory:
		*why = "out of memory";
		return -ENOMEM;
	case json_error_stack_overflow:
		*why = "the document is nested too deeply";
		return -E2BIG;
	case json_error_invalid_utf8:
		*why = "the document is not valid UTF-8";
		break;
	case json_error_premature_end_of_input:
		*why = "the document ends early";
		break;
	case json_error_end_of_input_expected:
		*why = "bytes after the JSON value";
		break;
	case json_error_null_character:
	case json_error_null_byte_in_key:
		*why = "a string holds \\u0000";
		break;
	case json_error_duplicate_key:
		*why = "an object has a duplicate key";
		break;
	case json_error_numeric_overflow:
		*why = "a number is out of range";
		break;
	default:
		*why = "the document is not valid JSON";
		break;
	}
	return -EINVAL;
}

/* A loaded document and its parts, checked; the parts are borrowed from `root`. */
struct doc {
	json_t *root;
	json_t *versions; /* NULL when absent */
	json_t *time;	  /* NULL when absent */
	json_t *tags;	  /* NULL when absent */
};

static int load(const char *text, size_t len, const char *name, struct doc *d, const char **why)
{
	json_error_t e;
	json_t *n;

	memset(d, 0, sizeof(*d));
	if (!name || !npm_name_valid(name, strlen(name))) {
		*why = "invalid package name";
		return -EINVAL;
	}
	if (!text) {
		*why = "no document";
		return -EINVAL;
	}
	if (len > NPM_PACKUMENT_MAX) {
		*why = "the document is too large";
		return -E2BIG;
	}
	if (!depth_ok(text, len)) {
		*why = "the document is nested too deeply";
		return -E2BIG;
	}
	d->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
	if (!d->root)
		return load_error(&e, why);
	if (!json_is_object(d->root))
		*why = "the document is not a JSON object";
	else if (!(n = json_object_get(d->root, "name")) || !json_is_string(n))
		*why = "the document has no name";
	else if (strcmp(json_string_value(n), name))
		*why = "the document is for another package";
	else if ((d->versions = json_object_get(d->root, "versions")) && !json_is_object(d->versions))
		*why = "\"versions\" is not an object";
	else if ((d->time = json_object_get(d->root, "time")) && !json_is_object(d->time))
		*why = "\"time\" is not an object";
	else if ((d->tags = json_object_get(d->root, "dist-tags")) && !json_is_object(d->tags))
		*why = "\"dist-tags\" is not an object";
	else
		return 0;
	json_decref(d->root);
	d->root = NULL;
	return -EINVAL;
}

/* `o[key]` when it is a string; NULL when absent; `*bad` set when present and not a string. */
static const char *opt_string(json_t *o, const char *key, bool *bad)
{
	json_t *v = o ? json_object_get(o, key) : NULL;

	if (v && !json_is_string(v))
		*bad = true;
	return json_string_value(v);
}

/* Checks version `key` → `v` of the document and fills `info`, borrowing from the document. */
static int version_info(const struct doc *d, const char *name, const char *key, json_t *v,
			struct npm_version_info *info, const char **why)
{
	json_t *dist;
	const char *s;
	bool bad = false;
	struct semver sv;

	memset(info, 0, sizeof(*info));
	if (!json_is_object(v)) {
		*why = "a version is not an object";
		return -EINVAL;
	}
	/*
	 * A version object that names another version or another package is refused rather than trusted one way:
	 * npm reads the object's fields, the gateway decides on the key, and the two must be the same thing.
	 */
	if (!(s = opt_string(v, "version", &bad))) {
		*why = "a version has no string \"version\"";
		return -EINVAL;
	}
	if (strcmp(s, key)) {
		*why = "a version's \"version\" differs from its key";
		return -EINVAL;
	}
	if ((s = opt_string(v, "name", &bad)) && strcmp(s, name)) {
		*why = "a version names another package";
		return -EINVAL;
	}
	if (bad) {
		*why = "a version's \"name\" is not a string";
		return -EINVAL;
	}
	dist = json_object_get(v, "dist");
	if (dist && !json_is_object(dist)) {
		*why = "a version's \"dist\" is not an object";
		return -EINVAL;
	}
	info->version = key;
	info->tarball = opt_string(dist, "tarball", &bad);
	info->integrity = opt_string(dist, "integrity", &bad);
	info->shasum = opt_string(dist, "shasum", &bad);
	if (bad) {
		*why = "a version's dist.tarball, dist.integrity or dist.shasum is not a string";
		return -EINVAL;
	}
	s = d->time ? json_string_value(json_object_get(d->time, key)) : NULL;
	info->published = s ? npm_time_parse(s) : -1;
	info->prerelease = semver_parse(key, strlen(key), &sv) && sv.pre;
	return 0;
}

/* The fields of a version that the abbreviated form keeps: what npm's installer reads. */
static const char *const abbrev_fields[] = {
    "name",
    "version",
    "dist",
    "dependencies",
    "optionalDependencies",
    "peerDependencies",
    "peerDependenciesMeta",
    "bundleDependencies",
    "bundledDependencies",
    "bin",
    "directories",
    "engines",
    "cpu",
    "os",
    "libc",
    "_hasShrinkwrap",
    "hasInstallScript",
    "deprecated",
    "funding",
    "acceptDependencies",
};

/* The abbreviated form of version object `v`: a new object sharing its values. NULL on allocation failure. */
static json_t *abbreviate_version(json_t *v)
{
	json_t *a = json_object(), *scripts = json_object_get(v, "scripts");
	int err = !a;

	for (size_t i = 0; !err && i < sizeof(abbrev_fields) / sizeof(abbrev_fields[0]); i++) {
		json_t *f = json_object_get(v, abbrev_fields[i]);

		if (f)
			err = json_object_set(a, abbrev_fields[i], f);
	}
	/* The registry derives this flag from the scripts npm runs at install; without it npm would not know. */
	if (!err && !json_object_get(a, "hasInstallScript") && json_is_object(scripts) &&
	    (json_object_get(scripts, "preinstall") || json_object_get(scripts, "install") ||
	     json_object_get(scripts, "postinstall")))
		err = json_object_set_new(a, "hasInstallScript", json_true());
	if (err) {
		json_decref(a);
		return NULL;
	}
	return a;
}

/*
 * The version "latest" should name once the versions left are those of `versions` (all valid semver): a
 * release before a prerelease, and one at or below the old "latest" before one above it (a maintainer who
 * tagged 1.x latest while 2.x exists meant it), then the highest. NULL when nothing is left.
 */
static const char *pick_latest(json_t *versions, const char *old)
{
	const char *best = NULL, *key;
	int best_rank = -1;
	json_t *v;
	struct semver s;
	bool old_ok = old && semver_parse(old, strlen(old), &s);

	json_object_foreach(versions, key, v)
	{
		int rank = (semver_parse(key, strlen(key), &s) && !s.pre ? 2 : 0) +
			   (old_ok && npm_semver_cmp(key, old) <= 0 ? 1 : 0);

		if (rank > best_rank || (rank == best_rank && npm_semver_cmp(key, best) > 0)) {
			best = key;
			best_rank = rank;
		}
	}
	return best;
}

/* Removes every tag naming a version that is not in `versions` and re-points or removes "latest". */
static int retag(struct doc *d, json_t *versions)
{
	const char *key, *latest;
	json_t *v, *tmp;
	bool repoint = true;
	char *old = NULL;
	int err = 0;

	if (!d->tags) {
		if (!(d->tags = json_object()) || json_object_set_new(d->root, "dist-tags", d->tags))
			return -ENOMEM;
	}
	json_object_foreach_safe(d->tags, tmp, key, v)
	{
		const char *target = json_string_value(v);
		bool is_latest = !strcmp(key, "latest");

		if (target && versions && json_object_get(versions, target)) {
			if (is_latest)
				repoint = false;
			continue;
		}
		if (is_latest && target && !(old = strdup(target)))
			return -ENOMEM;
		json_object_del(d->tags, key);
	}
	if (repoint && versions && (latest = pick_latest(versions, old)))
		err = json_object_set_new(d->tags, "latest", json_string(latest)) ? -ENOMEM : 0;
	free(old);
	return err;
}

/* The abbreviated document: a new object sharing the values of `d`. */
static json_t *abbreviate(const struct doc *d)
{
	json_t *a = json_object(), *vs = json_object(), *v;
	json_t *modified = d->time ? json_object_get(d->time, "modified") : NULL;
	const char *key;
	int err = !a || !vs;

	if (!err)
		err = json_object_set(a, "name", json_object_get(d->root, "name"));
	if (!err && json_is_string(modified))
		err = json_object_set(a, "modified", modified);
	if (!err)
		err = json_object_set(a, "dist-tags", d->tags);
	if (!err && d->versions) {
		json_object_foreach(d->versions, key, v)
		{
			if ((err = json_object_set_new(vs, key, abbreviate_version(v))))
				break;
		}
	}
	if (!err)
		err = json_object_set(a, "versions", vs);
	json_decref(vs);
	if (err) {
		json_decref(a);
		return NULL;
	}
	return a;
}

static bool kept_key(const char *key)
{
	return !strcmp(key, "created") || !strcmp(key, "modified");
}

/* The output buffer: its bound is fixed at creation, so no document grows it without end. */
struct outbuf {
	char *p;
	size_t len, cap, max;
	bool over;
};

static int out_append(const char *s, size_t n, void *arg)
{
	struct outbuf *b = arg;

	if (n > b->max - b->len) {
		b->over = true;
		return -1;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap;
		char *p;

		while (cap < b->len + n + 1)
			cap = cap > b->max / 2 ? b->max + 1 : cap * 2;
		if (!(p = realloc(b->p, cap)))
			return -1;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

/*
 * Prints `doc` compactly into `out`. The output can be larger than the input (our tarball URLs may be
 * longer than the upstream's, and jansson prints a real such as 0.1 with 17 digits), so it has its own
 * bound, NPM_REWRITE_MAX. `hint`: the input's size, a good first guess.
 */
static int dump(json_t *doc, size_t hint, struct npm_rewrite *out, const char **why)
{
	struct outbuf b = {.max = NPM_REWRITE_MAX};

	b.cap = hint < 4096 ? 4096 : hint + hint / 8 + 1;
	if (b.cap > b.max + 1)
		b.cap = b.max + 1;
	if (!(b.p = malloc(b.cap)))
		return -ENOMEM;
	b.p[0] = '\0';
	if (json_dump_callback(doc, out_append, &b, JSON_COMPACT)) {
		free(b.p);
		if (!b.over)
			return -ENOMEM;
		*why = "the rewritten document is too large";
		return -E2BIG;
	}
	out->doc = b.p;
	out->len = b.len;
	return 0;
}

void npm_rewrite_free(struct npm_rewrite *r)
{
	if (!r)
		return;
	free(r->doc);
	memset(r, 0, sizeof(*r));
}

int npm_packument_rewrite(const char *doc, size_t len, const char *name, bool abbreviated, npm_version_cb cb, void *arg,
			  struct npm_rewrite *out, const char **why)
{
	const char *key, *reason = NULL;
	json_t *v, *tmp, *result = NULL;
	struct doc d = {0};
	int err;

	memset(out, 0, sizeof(*out));
	if (!cb) {
		reason = "no callback";
		err = -EINVAL;
		goto out;
	}
	if ((err = load(doc, len, name, &d, &reason)))
		goto out;
	if (d.versions) {
		json_object_foreach_safe(d.versions, tmp, key, v)
		{
			struct npm_version_info info;
			enum npm_verdict verdict = NPM_DROP_UNLISTED;
			char tarball[NPM_URL_MAX + 1];
			json_t *url;
			bool valid;

			if ((err = version_info(&d, name, key, v, &info, &reason)))
				goto out;
			valid = npm_semver_valid(key, strlen(key));
			if (valid) {
				tarball[0] = '\0';
				verdict = cb(arg, &info, tarball, sizeof(tarball));
			}
			if (valid && verdict == NPM_KEEP) {
				json_t *dist = json_object_get(v, "dist");

				if (!tarball[0] || !memchr(tarball, '\0', sizeof(tarball))) {
					reason = "the callback kept a version without a tarball URL";
					err = -EINVAL;
					goto out;
				}
				if (!dist && (!(dist = json_object()) || json_object_set_new(v, "dist", dist))) {
					err = -ENOMEM;
					goto out;
				}
				if (!(url = json_string(tarball))) {
					reason = "the callback's tarball URL is not UTF-8";
					err = -EINVAL;
					goto out;
				}
				if (json_object_set_new(dist, "tarball", url)) {
					err = -ENOMEM;
					goto out;
				}
				out->kept++;
				continue;
			}
			if (!valid)
				out->dropped_invalid++;
			else if (verdict == NPM_DROP_TOO_NEW)
				out->dropped_too_new++;
			else
				out->dropped_unlisted++;
			/* `key` belongs to `versions`: use it on "time" before deleting it there. */
			if (d.time && !kept_key(key))
				json_object_del(d.time, key);
			json_object_del(d.versions, key);
		}
	}
	if ((err = retag(&d, d.versions)))
		goto out;
	json_object_del(d.root, "_attachments");
	if (abbreviated) {
		if (!(result = abbreviate(&d))) {
			err = -ENOMEM;
			goto out;
		}
	} else {
		result = json_incref(d.root);
	}
	if ((err = dump(result, len, out, &reason)))
		goto out;
out:
	if (err == -ENOMEM)
		reason = "out of memory";
	json_decref(result);
	json_decref(d.root);
	if (err)
		npm_rewrite_free(out);
	if (why)
		*why = err ? reason : NULL;
	return err;
}

/* Copies string `s` (NULL: "") into `dst`; -E2BIG when it does not fit. */
static int copy_str(char *dst, size_t cap, const char *s)
{
	return copy_out(dst, cap, s ? s : "", s ? strlen(s) : 0);
}

int npm_packument_find(const char *doc, size_t len, const char *name, const char *version,
		       struct npm_version_found *out, const char **why)
{
	const char *key, *reason = NULL;
	struct npm_version_info info, found = {0};
	struct doc d = {0};
	json_t *v;
	int err;

	memset(out, 0, sizeof(*out));
	out->published = -1;
	if (!version || !npm_semver_valid(version, strlen(version))) {
		reason = "the version asked for is not a semver version";
		err = -EINVAL;
		goto out;
	}
	if ((err = load(doc, len, name, &d, &reason)))
		goto out;
	/* Every version is checked, so a document the rewrite refuses is refused here too. */
	if (d.versions) {
		json_object_foreach(d.versions, key, v)
		{
			if ((err = version_info(&d, name, key, v, &info, &reason)))
				goto out;
			if (!strcmp(key, version))
				found = info;
		}
	}
	if (!found.version) {
		reason = "no such version";
		err = -ENOENT;
		goto out;
	}
	if ((err = copy_str(out->version, sizeof(out->version), found.version)) ||
	    (err = copy_str(out->tarball, sizeof(out->tarball), found.tarball)) ||
	    (err = copy_str(out->integrity, sizeof(out->integrity), found.integrity)) ||
	    (err = copy_str(out->shasum, sizeof(out->shasum), found.shasum))) {
		reason = "a string of the version is too long";
		goto out;
	}
	out->published = found.published;
	out->prerelease = found.prerelease;
out:
	json_decref(d.root);
	if (err) {
		memset(out, 0, sizeof(*out));
		out->published = -1;
	}
	if (why)
		*why = err ? reason : NULL;
	return err;
}
