/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Go's module proxy protocol, the parts that need no I/O but reading a file: request paths checked the way
 * golang.org/x/mod checks them, the go.sum hashes of go.mod files and module zips, `.info` times and
 * `@v/list` filtering. The rules follow golang.org/x/mod (module, semver, zip, sumdb/dirhash, sumdb/tlog);
 * where Go is lenient about something two readers could take two ways, this file refuses it instead.
 */
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "goproxy.h"

#define FAIL(e, w)                                                                                              \
	do {                                                                                                    \
		if (why)                                                                                        \
			*why = (w);                                                                             \
		return (e);                                                                                     \
	} while (0)

static bool is_lower(unsigned char c)
{
	return c >= 'a' && c <= 'z';
}

static bool is_upper(unsigned char c)
{
	return c >= 'A' && c <= 'Z';
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(unsigned char c)
{
	return is_lower(c) || is_upper(c) || is_digit(c);
}

static unsigned char fold(unsigned char c)
{
	return is_upper(c) ? (unsigned char)(c - 'A' + 'a') : c;
}

static bool eq_fold(const char *a, size_t alen, const char *b)
{
	size_t i;

	if (alen != strlen(b))
		return false;
	for (i = 0; i < alen; i++)
		if (fold((unsigned char)a[i]) != fold((unsigned char)b[i]))
			return false;
	return true;
}

/* ---- module paths and versions (golang.org/x/mod/module, semver) ----------------------------------- */

enum path_kind { K_MODULE, K_FILE };

/* Module path elements: ASCII letters, digits and "-._~" (modPathOK). */
static bool mod_char_ok(unsigned char c)
{
	return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/*
 * File names in a zip: Go also allows Unicode letters; we take ASCII only, since telling whether two
 * non-ASCII names fold to the same one needs Unicode's tables, and a missed collision is the attack.
 */
static bool file_char_ok(unsigned char c)
{
	return is_alnum(c) || (c && strchr("!#$%&()+,-.=@[]^_{}~ ", c));
}

static const char *const windows_names[] = { "CON",  "PRN",  "AUX",  "NUL",  "COM1", "COM2", "COM3",
					      "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1",
					      "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8",
					      "LPT9" };

/* checkElem: one path element. */
static bool elem_ok(const char *e, size_t n, enum path_kind kind, const char **why)
{
	size_t i, dots = 0, short_n;
	const char *dot;

	if (n == 0)
		FAIL(false, "empty path element");
	for (i = 0; i < n; i++) {
		if (e[i] == '.')
			dots++;
		if (!(kind == K_MODULE ? mod_char_ok((unsigned char)e[i]) : file_char_ok((unsigned char)e[i])))
			FAIL(false, "invalid character in path element");
	}
	if (dots == n)
		FAIL(false, "path element of dots only");
	if (e[0] == '.' && kind == K_MODULE)
		FAIL(false, "leading dot in path element");
	if (e[n - 1] == '.')
		FAIL(false, "trailing dot in path element");
	/* Windows refuses these names whatever follows the first dot; Go refuses them everywhere. */
	dot = memchr(e, '.', n);
	short_n = dot ? (size_t)(dot - e) : n;
	for (i = 0; i < sizeof(windows_names) / sizeof(windows_names[0]); i++)
		if (eq_fold(e, short_n, windows_names[i]))
			FAIL(false, "path element reserved on Windows");
	if (kind == K_MODULE) {
		/* "NAME~1": a Windows short name, which could alias another element. */
		size_t t = short_n;

		while (t > 0 && is_digit((unsigned char)e[t - 1]))
			t--;
		if (t < short_n && t > 0 && e[t - 1] == '~')
			FAIL(false, "path element ends in a tilde and digits");
	}
	return true;
}

/* checkPath: a slash-separated path of elements. */
static bool path_ok(const char *p, size_t n, enum path_kind kind, const char **why)
{
	size_t i, start = 0;

	if (n == 0)
		FAIL(false, "empty path");
	if (p[0] == '-' && kind != K_FILE)
		FAIL(false, "leading dash");
	for (i = 0; i <= n; i++) {
		if (i == n || p[i] == '/') {
			if (!elem_ok(p + start, i - start, kind, why))
				return false;
			start = i + 1;
		}
	}
	return true;
}

/*
 * SplitPathVersion: the major version suffix of a module path ("/v2", or ".v2" / ".v1-unstable" for
 * gopkg.in), into `major` (empty when none). False when the suffix is malformed ("/v1", "/v01", "/v2.1").
 */
static bool split_major(const char *p, size_t n, const char **major, size_t *mlen)
{
	size_t i = n;
	bool dot = false;

	*major = p + n;
	*mlen = 0;
	if (n >= 9 && memcmp(p, "gopkg.in/", 9) == 0) {
		size_t end = n;

		if (end >= 9 && memcmp(p + end - 9, "-unstable", 9) == 0)
			i = end -= 9;
		while (i > 0 && is_digit((unsigned char)p[i - 1]))
			i--;
		if (i <= 1 || p[i - 1] != 'v' || p[i - 2] != '.')
			return false;
		*major = p + i - 2;
		*mlen = n - (i - 2);
		if (end - (i - 2) <= 2 || (p[i] == '0' && n - (i - 2) != 3))
			return false;
		return true;
	}
	while (i > 0 && (is_digit((unsigned char)p[i - 1]) || p[i - 1] == '.')) {
		if (p[i - 1] == '.')
			dot = true;
		i--;
	}
	if (i <= 1 || i == n || p[i - 1] != 'v' || p[i - 2] != '/')
		return true;
	if (dot || n - (i - 2) <= 2 || p[i] == '0' || (n - i == 1 && p[i] == '1'))
		return false;
	*major = p + i - 2;
	*mlen = n - (i - 2);
	return true;
}

int goproxy_module_ok(const char *m, const char **why)
{
	size_t n = strlen(m), first;
	const char *slash, *major;
	size_t mlen, i;

	if (n >= sizeof(((struct goproxy_path *)0)->module))
		FAIL(0, "module path too long");
	if (!path_ok(m, n, K_MODULE, why))
		return 0;
	slash = memchr(m, '/', n);
	first = slash ? (size_t)(slash - m) : n;
	if (!memchr(m, '.', first))
		FAIL(0, "missing dot in first path element");
	/* The first element is a domain name, lower case so that it has one spelling. */
	for (i = 0; i < first; i++)
		if (!(is_lower((unsigned char)m[i]) || is_digit((unsigned char)m[i]) || m[i] == '-' || m[i] == '.'))
			FAIL(0, "invalid character in first path element");
	if (!split_major(m, n, &major, &mlen))
		FAIL(0, "invalid major version suffix");
	return 1;
}

static bool ident_char(unsigned char c)
{
	return is_alnum(c) || c == '-';
}

/* A numeric identifier with a leading zero ("01"). */
static bool bad_num(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!is_digit((unsigned char)s[i]))
			return false;
	return n > 1 && s[0] == '0';
}

/* Digits without a leading zero, at s[*i]; their span into *start and *len. */
static bool semver_num(const char *s, size_t n, size_t *i, size_t *start, size_t *len)
{
	size_t j = *i;

	while (j < n && is_digit((unsigned char)s[j]))
		j++;
	if (j == *i || (s[*i] == '0' && j - *i > 1))
		return false;
	*start = *i;
	*len = j - *i;
	*i = j;
	return true;
}

/*
 * Canonical semver as module.CanonicalVersion prints it: "vMAJOR.MINOR.PATCH", an optional pre-release,
 * and no build metadata except "+incompatible". The major number's span into *maj and *majlen, and whether it
 * ends in +incompatible into *incompat.
 */
static bool semver_canonical(const char *v, size_t n, size_t *maj, size_t *majlen, bool *incompat)
{
	size_t i = 1, s, l, start;

	*incompat = false;
	if (n < 6 || v[0] != 'v')
		return false;
	if (!semver_num(v, n, &i, maj, majlen) || i >= n || v[i++] != '.')
		return false;
	if (!semver_num(v, n, &i, &s, &l) || i >= n || v[i++] != '.')
		return false;
	if (!semver_num(v, n, &i, &s, &l))
		return false;
	if (i < n && v[i] == '-') {
		start = ++i;
		for (;; i++) {
			if (i == n || v[i] == '.' || v[i] == '+') {
				if (i == start || bad_num(v + start, i - start))
					return false;
				if (i == n || v[i] == '+')
					break;
				start = i + 1;
			} else if (!ident_char((unsigned char)v[i])) {
				return false;
			}
		}
	}
	if (i == n)
		return true;
	if (n - i == 13 && memcmp(v + i, "+incompatible", 13) == 0) {
		*incompat = true;
		return true;
	}
	return false;
}

int goproxy_version_ok(const char *m, const char *v, const char **why)
{
	size_t n = strlen(v), maj, majlen, mlen;
	const char *major;
	bool incompat;

	if (n >= sizeof(((struct goproxy_path *)0)->version))
		FAIL(0, "version too long");
	if (!semver_canonical(v, n, &maj, &majlen, &incompat))
		FAIL(0, "version is not canonical semver");
	if (!split_major(m, strlen(m), &major, &mlen))
		FAIL(0, "invalid major version suffix");
	if (mlen == 0) {
		bool low = majlen == 1 && (v[maj] == '0' || v[maj] == '1');

		/* Go itself refuses v0/v1 +incompatible when it fetches from a repository. */
		if (low != !incompat)
			FAIL(0, incompat ? "+incompatible on a major version below 2" : "major version needs a /vN suffix");
		return 1;
	}
	if (incompat)
		FAIL(0, "+incompatible on a path with a major version suffix");
	if (major[0] == '.') {
		/* gopkg.in/x.v1 still resolves v0.0.0- pseudo-versions from an old bug; Go allows them. */
		if (mlen >= 9 && memcmp(major + mlen - 9, "-unstable", 9) == 0)
			mlen -= 9;
		if (mlen == 3 && memcmp(major, ".v1", 3) == 0 && n > 7 && memcmp(v, "v0.0.0-", 7) == 0)
			return 1;
	}
	if (majlen != mlen - 2 || memcmp(v + maj, major + 2, majlen) != 0)
		FAIL(0, "version does not match the path's major version");
	return 1;
}

/* ---- case encoding ----------------------------------------------------------------------------------- */

int goproxy_escape(const char *in, char *out, size_t cap)
{
	size_t o = 0;

	for (; *in; in++) {
		unsigned char c = (unsigned char)*in;

		if (c == '!' || c >= 0x80)
			return -EINVAL;
		if (o + (is_upper(c) ? 2 : 1) >= cap)
			return -E2BIG;
		if (is_upper(c)) {
			out[o++] = '!';
			c = fold(c);
		}
		out[o++] = (char)c;
	}
	if (cap == 0)
		return -E2BIG;
	out[o] = '\0';
	return 0;
}

int goproxy_unescape(const char *in, size_t len, char *out, size_t cap)
{
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == 0 || c >= 0x80 || is_upper(c))
			return -EINVAL;
		if (c == '!') {
			if (++i == len || !is_lower((unsigned char)in[i]))
				return -EINVAL;
			c = (unsigned char)(in[i] - 'a' + 'A');
		}
		if (o + 1 >= cap)
			return -E2BIG;
		out[o++] = (char)c;
	}
	if (cap == 0)
		return -E2BIG;
	out[o] = '\0';
	return 0;
}

/* ---- request paths ----------------------------------------------------------------------------------- */

/* An escaped module path into out->module, checked. */
static int take_module(const char *p, size_t n, struct goproxy_path *out, const char **why)
{
	if (goproxy_unescape(p, n, out->module, sizeof(out->module)) < 0)
		FAIL(-EINVAL, "bad case encoding in module path");
	if (!goproxy_module_ok(out->module, why))
		return -EINVAL;
	return 0;
}

static int take_version(const char *p, size_t n, struct goproxy_path *out, const char **why)
{
	if (memchr(p, '/', n))
		FAIL(-EINVAL, "slash in version");
	if (goproxy_unescape(p, n, out->version, sizeof(out->version)) < 0)
		FAIL(-EINVAL, "bad case encoding in version");
	if (!goproxy_version_ok(out->module, out->version, why))
		return -EINVAL;
	return 0;
}

/* A decimal number without leading zeros, at most `max`, spanning all of [p, p+n). */
static bool dec_ok(const char *p, size_t n, unsigned long long max, unsigned long long *val)
{
	unsigned long long v = 0;
	size_t i;

	if (n == 0 || n > 19 || (p[0] == '0' && n > 1))
		return false;
	for (i = 0; i < n; i++) {
		if (!is_digit((unsigned char)p[i]))
			return false;
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	if (v > max)
		return false;
	*val = v;
	return true;
}

/*
 * The next '/'-terminated field of `p` (`n` bytes) from *at, or the last one; *at becomes n + 1 after the
 * last field, and then there is none.
 */
static bool next_field(const char *p, size_t n, size_t *at, const char **f, size_t *fl)
{
	const char *s;

	if (*at > n)
		return false;
	s = memchr(p + *at, '/', n - *at);
	*f = p + *at;
	*fl = s ? (size_t)(s - *f) : n - *at;
	*at += *fl + 1;
	return true;
}

/*
 * A tile path in the one form tlog.Tile.Path prints: "tile/H/L/" (H in 1..30, L a level or "data"), then
 * the index in base 1000 as "xNNN/" groups (the first not x000) and a last "NNN", then ".p/W" for a partial
 * tile (W in 1..2^H-1). Anything else names no tile, and a second spelling of one would split caches.
 */
static bool tile_ok(const char *p, size_t n)
{
	const char *f;
	size_t fl, groups = 0, at = 0;
	unsigned long long h, l, w;

	if (!next_field(p, n, &at, &f, &fl) || fl != 4 || memcmp(f, "tile", 4) != 0)
		return false;
	if (!next_field(p, n, &at, &f, &fl) || !dec_ok(f, fl, 30, &h) || h < 1)
		return false;
	if (!next_field(p, n, &at, &f, &fl) || !((fl == 4 && memcmp(f, "data", 4) == 0) || dec_ok(f, fl, 63, &l)))
		return false;
	for (;;) {
		if (!next_field(p, n, &at, &f, &fl))
			return false;
		if (fl == 4 && f[0] == 'x') {
			unsigned long long g;

			if (!is_digit((unsigned char)f[1]) || !is_digit((unsigned char)f[2]) ||
			    !is_digit((unsigned char)f[3]))
				return false;
			g = (unsigned long long)(f[1] - '0') * 100 + (unsigned)(f[2] - '0') * 10 + (unsigned)(f[3] - '0');
			/* Six groups already pass 2^63 tiles; Go's int64 index would wrap. */
			if ((groups == 0 && g == 0) || ++groups > 6)
				return false;
			continue;
		}
		if (fl != 3 && !(fl == 5 && memcmp(f + 3, ".p", 2) == 0))
			return false;
		if (!is_digit((unsigned char)f[0]) || !is_digit((unsigned char)f[1]) || !is_digit((unsigned char)f[2]))
			return false;
		if (fl == 5) {
			if (!next_field(p, n, &at, &f, &fl) || !dec_ok(f, fl, (1ull << h) - 1, &w) || w < 1)
				return false;
		}
		return at > n; /* nothing after */
	}
}

/* A checksum database's name: a lower-case DNS name, as sumdb names are. */
static bool sumdb_host_ok(const char *p, size_t n)
{
	size_t i, lab = 0;

	if (n == 0 || n > 253)
		return false;
	for (i = 0; i <= n; i++) {
		if (i == n || p[i] == '.') {
			if (lab == 0 || lab > 63 || p[i - 1] == '-' || p[i - lab] == '-')
				return false;
			lab = 0;
			continue;
		}
		if (!(is_lower((unsigned char)p[i]) || is_digit((unsigned char)p[i]) || p[i] == '-'))
			return false;
		lab++;
	}
	return true;
}

static int parse_sumdb(const char *p, size_t n, struct goproxy_path *out, const char **why)
{
	const char *slash = memchr(p, '/', n), *rest, *at;
	size_t hl, rl;
	int err;

	if (!slash)
		FAIL(-EINVAL, "sumdb path without a request");
	hl = (size_t)(slash - p);
	if (!sumdb_host_ok(p, hl))
		FAIL(-EINVAL, "bad checksum database name");
	rest = slash + 1;
	rl = n - hl - 1;
	if (rl >= sizeof(out->sumdb_rest))
		FAIL(-EINVAL, "sumdb path too long");
	if ((rl == 9 && memcmp(rest, "supported", 9) == 0) || (rl == 6 && memcmp(rest, "latest", 6) == 0)) {
		/* nothing more to check */
	} else if (rl > 7 && memcmp(rest, "lookup/", 7) == 0) {
		at = memchr(rest + 7, '@', rl - 7);
		if (!at)
			FAIL(-EINVAL, "sumdb lookup without @version");
		if ((err = take_module(rest + 7, (size_t)(at - rest - 7), out, why)) < 0 ||
		    (err = take_version(at + 1, (size_t)(rest + rl - at - 1), out, why)) < 0)
			return err;
	} else if (!tile_ok(rest, rl)) {
		FAIL(-EINVAL, "not a sumdb request");
	}
	memcpy(out->sumdb_host, p, hl);
	out->sumdb_host[hl] = '\0';
	memcpy(out->sumdb_rest, rest, rl);
	out->sumdb_rest[rl] = '\0';
	out->kind = GOP_SUMDB;
	return 0;
}

int goproxy_path_parse(const char *path, size_t len, struct goproxy_path *out, const char **why)
{
	const char *at, *file;
	size_t ml, fl;
	int err;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		FAIL(-EINVAL, "empty path");
	if (memchr(path, '\0', len))
		FAIL(-EINVAL, "NUL in path");
	/* A module path's first element has a dot, so no module is named "sumdb/...". */
	if (len > 6 && memcmp(path, "sumdb/", 6) == 0)
		return parse_sumdb(path + 6, len - 6, out, why);
	/* '@' appears in no escaped module path, so the first one ends it. */
	at = memchr(path, '@', len);
	if (!at || at == path || at[-1] != '/')
		FAIL(-EINVAL, "no /@v/ or /@latest in path");
	ml = (size_t)(at - path) - 1;
	if ((err = take_module(path, ml, out, why)) < 0)
		return err;
	file = at + 1;
	fl = len - ml - 2;
	if (fl == 6 && memcmp(file, "latest", 6) == 0) {
		out->kind = GOP_LATEST;
		return 0;
	}
	if (fl < 2 || memcmp(file, "v/", 2) != 0)
		FAIL(-EINVAL, "no /@v/ or /@latest in path");
	file += 2;
	fl -= 2;
	if (fl == 4 && memcmp(file, "list", 4) == 0) {
		out->kind = GOP_LIST;
		return 0;
	}
	if (fl > 5 && memcmp(file + fl - 5, ".info", 5) == 0) {
		out->kind = GOP_INFO;
		fl -= 5;
	} else if (fl > 4 && memcmp(file + fl - 4, ".mod", 4) == 0) {
		out->kind = GOP_MOD;
		fl -= 4;
	} else if (fl > 4 && memcmp(file + fl - 4, ".zip", 4) == 0) {
		out->kind = GOP_ZIP;
		fl -= 4;
	} else {
		FAIL(-EINVAL, "unknown @v/ request");
	}
	return take_version(file, fl, out, why);
}

/* ---- go.sum hashes (dirhash.Hash1) -------------------------------------------------------------------- */

/* The final "h1:" + base64 of the summary's digest. */
static void h1_print(const unsigned char dg[32], char out[64])
{
	memcpy(out, "h1:", 3);
	EVP_EncodeBlock((unsigned char *)out + 3, dg, 32); /* 44 bytes and a NUL */
}

/* Adds one "<sha256 hex>  <name>\n" line of the summary. */
static int h1_line(EVP_MD_CTX *sum, const unsigned char dg[32], const char *name, size_t nlen)
{
	static const char hx[] = "0123456789abcdef";
	char line[66];
	int i;

	for (i = 0; i < 32; i++) {
		line[2 * i] = hx[dg[i] >> 4];
		line[2 * i + 1] = hx[dg[i] & 15];
	}
	line[64] = ' ';
	line[65] = ' ';
	if (!EVP_DigestUpdate(sum, line, sizeof(line)) || !EVP_DigestUpdate(sum, name, nlen) ||
	    !EVP_DigestUpdate(sum, "\n", 1))
		return -ENOMEM;
	return 0;
}

int go_h1_mod(const char *mod, size_t len, char out[64])
{
	unsigned char dg[32];
	EVP_MD_CTX *sum = EVP_MD_CTX_new();
	int err = -ENOMEM;

	/* modfetch's goModSum: Hash1 over one file named "go.mod", whatever the module's path. */
	if (!sum || !EVP_Digest(mod, len, dg, NULL, EVP_sha256(), NULL) ||
	    !EVP_DigestInit_ex(sum, EVP_sha256(), NULL) || h1_line(sum, dg, "go.mod", 6) < 0 ||
	    !EVP_DigestFinal_ex(sum, dg, NULL))
		goto out;
	h1_print(dg, out);
	err = 0;
out:
	EVP_MD_CTX_free(sum);
	return err;
}

/* ---- module zips -------------------------------------------------------------------------------------- */

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define SIG_END64_LOC 0x07064b50u
#define SIG_DESC 0x08074b50u
#define LOCAL_LEN 30
#define CENTRAL_LEN 46
#define END_LEN 22
#define ZCHUNK 65536

struct zent {
	const char *name; /* into the central directory copy */
	uint16_t nlen, method, flags;
	uint32_t crc, csize, usize, off;
	uint64_t end; /* past the data and any data descriptor */
	unsigned char dg[32];
};

/* A name, or a parent directory of one, for the collision check. */
struct zname {
	const char *p;
	size_t n;
	bool dir;
};

static uint16_t le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads exactly n bytes at off; -EIO when the file is shorter or the read fails. */
static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
	unsigned char *b = buf;

	while (n) {
		ssize_t r = pread(fd, b, n, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -EIO;
		b += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int cmp_fold(const struct zname *a, const struct zname *b)
{
	size_t i, n = a->n < b->n ? a->n : b->n;

	for (i = 0; i < n; i++) {
		int d = fold((unsigned char)a->p[i]) - fold((unsigned char)b->p[i]);

		if (d)
			return d;
	}
	return (a->n > b->n) - (a->n < b->n);
}

static int zname_cmp(const void *x, const void *y)
{
	return cmp_fold(x, y);
}

static int zent_off_cmp(const void *x, const void *y)
{
	const struct zent *a = x, *b = y;

	return (a->off > b->off) - (a->off < b->off);
}

static int zent_name_cmp(const void *x, const void *y)
{
	const struct zent *a = x, *b = y;
	size_t n = a->nlen < b->nlen ? a->nlen : b->nlen;
	int d = memcmp(a->name, b->name, n);

	return d ? d : (a->nlen > b->nlen) - (a->nlen < b->nlen);
}

/*
 * The names after the "<module>@<version>/" prefix, as zip.CheckZip checks them: clean file paths, no two
 * alike under case folding, none both a file and a directory, go.mod only at the root.
 */
static int check_names(struct zent *e, size_t n, size_t plen, const char **why)
{
	struct zname *zn;
	size_t i, k, count = 0, bare = 0;
	int err = 0;

	for (i = 0; i < n; i++)
		for (k = plen; k < e[i].nlen; k++)
			count += e[i].name[k] == '/';
	count += n;
	zn = calloc(count ? count : 1, sizeof(*zn));
	if (!zn)
		FAIL(-ENOMEM, "out of memory");
	count = 0;
	for (i = 0; i < n; i++) {
		const char *r = e[i].name + plen, *base;
		size_t rn = e[i].nlen - plen;
		bool dir = false;

		if (rn == 0) {
			/* The module's own directory: Go skips it, and hashes it like any entry. */
			if (++bare > 1 || e[i].usize != 0) {
				err = -EBADMSG;
				*why = "module directory entry twice or not empty";
				goto out;
			}
			continue;
		}
		if (r[rn - 1] == '/') {
			dir = true;
			rn--;
			if (e[i].usize != 0) {
				err = -EBADMSG;
				*why = "directory entry with data";
				goto out;
			}
		}
		if (!path_ok(r, rn, K_FILE, why)) {
			err = -EBADMSG;
			goto out;
		}
		base = memrchr(r, '/', rn);
		base = base ? base + 1 : r;
		if (!dir && eq_fold(base, rn - (size_t)(base - r), "go.mod") &&
		    !(base == r && memcmp(r, "go.mod", 6) == 0)) {
			err = -EBADMSG;
			*why = "go.mod not in the module root, or not spelled go.mod";
			goto out;
		}
		zn[count++] = (struct zname){ r, rn, dir };
		for (k = 0; k < rn; k++)
			if (r[k] == '/')
				zn[count++] = (struct zname){ r, k, true };
	}
	qsort(zn, count, sizeof(*zn), zname_cmp);
	for (i = 1; i < count; i++) {
		if (cmp_fold(&zn[i - 1], &zn[i]) != 0)
			continue;
		if (memcmp(zn[i - 1].p, zn[i].p, zn[i].n) != 0) {
			err = -EBADMSG;
			*why = "file names that differ only in case";
			goto out;
		}
		if (zn[i - 1].dir != zn[i].dir) {
			err = -EBADMSG;
			*why = "a name that is both a file and a directory";
			goto out;
		}
		if (!zn[i].dir) {
			err = -EBADMSG;
			*why = "duplicate file name";
			goto out;
		}
	}
out:
	free(zn);
	return err;
}

/*
 * Inflates (or copies) one entry's data, hashing it. The output is bounded by the size the central
 * directory declared, which the caller has already summed against the limits, so a bomb stops at its
 * declared size; a stream that ends early, runs on, or fails its CRC is refused.
 */
static int read_entry(int fd, struct zent *e, unsigned char *in, unsigned char *outb, const char **why)
{
	EVP_MD_CTX *h = EVP_MD_CTX_new();
	z_stream zs;
	bool zinit = false, done = false;
	uint64_t at = e->end - e->csize, left = e->csize, produced = 0;
	uLong crc = crc32(0L, Z_NULL, 0);
	int err = -EBADMSG;

	/* e->end here is where the data ends; the caller moves it past a data descriptor later. */
	memset(&zs, 0, sizeof(zs));
	if (!h || !EVP_DigestInit_ex(h, EVP_sha256(), NULL)) {
		err = -ENOMEM;
		*why = "out of memory";
		goto out;
	}
	if (e->method == 8) {
		if (inflateInit2(&zs, -15) != Z_OK) {
			err = -ENOMEM;
			*why = "out of memory";
			goto out;
		}
		zinit = true;
	}
	while (!done) {
		size_t take = left < ZCHUNK ? (size_t)left : ZCHUNK, got;

		if (take && (err = pread_all(fd, in, take, at)) < 0) {
			*why = "zip truncated";
			goto out;
		}
		err = -EBADMSG;
		at += take;
		left -= take;
		if (e->method == 0) {
			got = take;
			if (!EVP_DigestUpdate(h, in, got))
				goto nomem;
			crc = crc32(crc, in, (uInt)got);
			produced += got;
			done = left == 0;
			continue;
		}
		zs.next_in = in;
		zs.avail_in = (uInt)take;
		do {
			int zr;

			zs.next_out = outb;
			zs.avail_out = ZCHUNK;
			zr = inflate(&zs, Z_NO_FLUSH);
			if (zr != Z_OK && zr != Z_STREAM_END && !(zr == Z_BUF_ERROR && zs.avail_out == ZCHUNK)) {
				*why = "corrupt deflate stream";
				goto out;
			}
			got = ZCHUNK - zs.avail_out;
			produced += got;
			if (produced > e->usize) {
				*why = "entry inflates past its declared size";
				goto out;
			}
			if (!EVP_DigestUpdate(h, outb, got))
				goto nomem;
			crc = crc32(crc, outb, (uInt)got);
			if (zr == Z_STREAM_END) {
				if (zs.avail_in != 0 || left != 0) {
					*why = "data after the end of a deflate stream";
					goto out;
				}
				done = true;
				break;
			}
			if (zr == Z_BUF_ERROR)
				break;
		} while (zs.avail_out == 0 || zs.avail_in != 0);
		if (!done && left == 0 && take == 0) {
			*why = "deflate stream truncated";
			goto out;
		}
	}
	if (produced != e->usize) {
		*why = "entry size differs from its header";
		goto out;
	}
	if (crc != e->crc) {
		*why = "entry CRC mismatch";
		goto out;
	}
	if (!EVP_DigestFinal_ex(h, e->dg, NULL))
		goto nomem;
	err = 0;
	goto out;
nomem:
	err = -ENOMEM;
	*why = "out of memory";
out:
	if (zinit)
		inflateEnd(&zs);
	EVP_MD_CTX_free(h);
	return err;
}

/* Finds the end of central directory record: the last signature whose comment reaches the file's end. */
static int find_end(int fd, uint64_t size, unsigned char *end, uint64_t *end_off, const char **why)
{
	size_t tail = size < END_LEN + 65535 ? (size_t)size : END_LEN + 65535, i;
	unsigned char *buf;
	int err;

	if (size < END_LEN)
		FAIL(-EBADMSG, "not a zip: too short");
	buf = malloc(tail);
	if (!buf)
		FAIL(-ENOMEM, "out of memory");
	if ((err = pread_all(fd, buf, tail, size - tail)) < 0) {
		free(buf);
		FAIL(err, "read failed");
	}
	for (i = tail - END_LEN + 1; i-- > 0;) {
		if (le32(buf + i) == SIG_END && i + END_LEN + le16(buf + i + 20) == tail) {
			memcpy(end, buf + i, END_LEN);
			*end_off = size - tail + i;
			free(buf);
			return 0;
		}
	}
	free(buf);
	FAIL(-EBADMSG, "not a zip: no end of central directory");
}

/* Checks the local header of `e` against its central entry; sets e->end past the data. */
static int check_local(int fd, struct zent *e, uint64_t cd_off, const char **why)
{
	unsigned char lh[LOCAL_LEN], *name;
	uint64_t data;
	int err;

	if ((uint64_t)e->off + LOCAL_LEN > cd_off || pread_all(fd, lh, LOCAL_LEN, e->off) < 0)
		FAIL(-EBADMSG, "local header outside the entries");
	if (le32(lh) != SIG_LOCAL)
		FAIL(-EBADMSG, "bad local header signature");
	/* Streaming readers believe the local header: it must say what the central directory says. */
	if (le16(lh + 8) != e->method || le16(lh + 26) != e->nlen || (le16(lh + 6) & 8) != (e->flags & 8) ||
	    (!(e->flags & 8) && (le32(lh + 14) != e->crc || le32(lh + 18) != e->csize || le32(lh + 22) != e->usize)))
		FAIL(-EBADMSG, "local header disagrees with the central directory");
	data = (uint64_t)e->off + LOCAL_LEN + e->nlen + le16(lh + 28);
	if (data + e->csize > cd_off)
		FAIL(-EBADMSG, "entry data past the central directory");
	name = malloc(e->nlen);
	if (!name)
		FAIL(-ENOMEM, "out of memory");
	err = pread_all(fd, name, e->nlen, (uint64_t)e->off + LOCAL_LEN);
	if (!err && memcmp(name, e->name, e->nlen) != 0)
		err = -EBADMSG;
	free(name);
	if (err)
		FAIL(-EBADMSG, "local file name differs from the central directory");
	e->end = data + e->csize;
	return 0;
}

/* Moves e->end past a data descriptor (flag bit 3), which must repeat the central CRC and sizes. */
static int check_descriptor(int fd, struct zent *e, uint64_t cd_off, const char **why)
{
	unsigned char d[16];
	size_t skip;

	if (!(e->flags & 8))
		return 0;
	if (e->end + 12 > cd_off || pread_all(fd, d, e->end + 16 <= cd_off ? 16 : 12, e->end) < 0)
		FAIL(-EBADMSG, "data descriptor missing");
	skip = le32(d) == SIG_DESC && e->end + 16 <= cd_off ? 4 : 0;
	if (le32(d + skip) != e->crc || le32(d + skip + 4) != e->csize || le32(d + skip + 8) != e->usize)
		FAIL(-EBADMSG, "data descriptor disagrees with the central directory");
	e->end += 12 + skip;
	return 0;
}

int go_h1_zip(int fd, const char *module, const char *version, char out[64], const char **why)
{
	const char *dummy;
	unsigned char end[END_LEN], *cd = NULL, *in = NULL, *outb = NULL;
	char prefix[sizeof(((struct goproxy_path *)0)->module) + sizeof(((struct goproxy_path *)0)->version) + 2];
	struct zent *e = NULL;
	EVP_MD_CTX *sum = NULL;
	struct stat st;
	uint64_t size, end_off, cd_off, cd_size, total = 0, pos;
	size_t n, i, plen;
	int err;

	if (!why)
		why = &dummy;
	if (!goproxy_module_ok(module, why) || !goproxy_version_ok(module, version, why))
		return -EBADMSG;
	plen = (size_t)snprintf(prefix, sizeof(prefix), "%s@%s/", module, version);
	if (fstat(fd, &st) < 0)
		FAIL(-EIO, "fstat failed");
	if (!S_ISREG(st.st_mode))
		FAIL(-EBADMSG, "not a regular file");
	size = (uint64_t)st.st_size;
	if (size > GOPROXY_MAX_ZIP)
		FAIL(-EFBIG, "zip file larger than 500 MiB");
	if ((err = find_end(fd, size, end, &end_off, why)) < 0)
		return err;
	n = le16(end + 10);
	cd_size = le32(end + 12);
	cd_off = le32(end + 16);
	if (end_off >= 20) {
		unsigned char loc[4];

		if (pread_all(fd, loc, 4, end_off - 20) == 0 && le32(loc) == SIG_END64_LOC)
			FAIL(-EBADMSG, "zip64 archives are refused");
	}
	if (n == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu)
		FAIL(-EBADMSG, "zip64 archives are refused");
	if (le16(end + 4) != 0 || le16(end + 6) != 0 || le16(end + 8) != n)
		FAIL(-EBADMSG, "multi-disk zip");
	if (n == 0)
		FAIL(-EBADMSG, "empty zip");
	if (n > GOPROXY_MAX_FILES)
		FAIL(-EFBIG, "too many files");
	/* No bytes hidden between the entries and the directory, nor a directory read at a guessed base. */
	if (cd_off + cd_size != end_off)
		FAIL(-EBADMSG, "central directory does not end at its end record");
	if (cd_size > GOPROXY_MAX_CDIR)
		FAIL(-EFBIG, "central directory too large");
	if (cd_size < (uint64_t)n * CENTRAL_LEN)
		FAIL(-EBADMSG, "central directory too small for its entries");
	cd = malloc(cd_size ? cd_size : 1);
	e = calloc(n, sizeof(*e));
	in = malloc(ZCHUNK);
	outb = malloc(ZCHUNK);
	sum = EVP_MD_CTX_new();
	if (!cd || !e || !in || !outb || !sum) {
		err = -ENOMEM;
		*why = "out of memory";
		goto out;
	}
	if ((err = pread_all(fd, cd, cd_size, cd_off)) < 0) {
		*why = "read failed";
		goto out;
	}
	err = -EBADMSG;
	for (pos = 0, i = 0; i < n; i++) {
		const unsigned char *h = cd + pos;
		size_t vlen;

		if (pos + CENTRAL_LEN > cd_size || le32(h) != SIG_CENTRAL) {
			*why = "bad central directory entry";
			goto out;
		}
		e[i].flags = le16(h + 8);
		e[i].method = le16(h + 10);
		e[i].crc = le32(h + 16);
		e[i].csize = le32(h + 20);
		e[i].usize = le32(h + 24);
		e[i].nlen = le16(h + 28);
		e[i].off = le32(h + 42);
		vlen = (size_t)e[i].nlen + le16(h + 30) + le16(h + 32);
		e[i].name = (const char *)h + CENTRAL_LEN;
		if (pos + CENTRAL_LEN + vlen > cd_size) {
			*why = "central directory entry past its end";
			goto out;
		}
		pos += CENTRAL_LEN + vlen;
		if (le16(h + 34) != 0) {
			*why = "multi-disk zip";
			goto out;
		}
		if (e[i].csize == 0xffffffffu || e[i].usize == 0xffffffffu || e[i].off == 0xffffffffu) {
			*why = "zip64 archives are refused";
			goto out;
		}
		if (e[i].flags & 0x41) {
			*why = "encrypted entry";
			goto out;
		}
		if (e[i].method != 0 && e[i].method != 8) {
			*why = "compression method other than store or deflate";
			goto out;
		}
		if (e[i].method == 0 && e[i].csize != e[i].usize) {
			*why = "stored entry with two sizes";
			goto out;
		}
		if (e[i].nlen < plen || memcmp(e[i].name, prefix, plen) != 0) {
			*why = "file name outside <module>@<version>/";
			goto out;
		}
		/* Summed before any byte is inflated, and each entry bounded by its own size while inflating. */
		total += e[i].usize;
		if (total > GOPROXY_MAX_ZIP) {
			err = -EFBIG;
			*why = "uncompressed size over 500 MiB";
			goto out;
		}
		if ((e[i].nlen == plen + 6 && memcmp(e[i].name + plen, "go.mod", 6) == 0 &&
		     e[i].usize > GOPROXY_MAX_GOMOD) ||
		    (e[i].nlen == plen + 7 && memcmp(e[i].name + plen, "LICENSE", 7) == 0 &&
		     e[i].usize > GOPROXY_MAX_LICENSE)) {
			err = -EFBIG;
			*why = "go.mod or LICENSE over 16 MiB";
			goto out;
		}
	}
	if (pos != cd_size) {
		*why = "central directory has bytes after its entries";
		goto out;
	}
	if ((err = check_names(e, n, plen, why)) < 0)
		goto out;
	/*
	 * Entries must tile the file from byte 0 to the directory: no prepended data, no gaps, no overlap.
	 * Overlapping entries are how a small zip expands many times over; gaps hide bytes other readers see.
	 */
	qsort(e, n, sizeof(*e), zent_off_cmp);
	for (pos = 0, i = 0; i < n; i++) {
		if (e[i].off != pos) {
			err = -EBADMSG;
			*why = e[i].off < pos ? "overlapping entries" : "bytes before or between entries";
			goto out;
		}
		if ((err = check_local(fd, &e[i], cd_off, why)) < 0)
			goto out;
		if ((err = read_entry(fd, &e[i], in, outb, why)) < 0)
			goto out;
		if ((err = check_descriptor(fd, &e[i], cd_off, why)) < 0)
			goto out;
		pos = e[i].end;
	}
	if (pos != cd_off) {
		err = -EBADMSG;
		*why = "bytes between the last entry and the central directory";
		goto out;
	}
	/* Hash1: the names in byte order, a line each. */
	qsort(e, n, sizeof(*e), zent_name_cmp);
	err = -ENOMEM;
	*why = "out of memory";
	if (!EVP_DigestInit_ex(sum, EVP_sha256(), NULL))
		goto out;
	for (i = 0; i < n; i++)
		if (h1_line(sum, e[i].dg, e[i].name, e[i].nlen) < 0)
			goto out;
	{
		unsigned char dg[32];

		if (!EVP_DigestFinal_ex(sum, dg, NULL))
			goto out;
		h1_print(dg, out);
	}
	err = 0;
	*why = NULL;
out:
	EVP_MD_CTX_free(sum);
	free(outb);
	free(in);
	free(e);
	free(cd);
	return err;
}

/* ---- .info and @v/list -------------------------------------------------------------------------------- */

static bool digits(const char *s, size_t n, int *v)
{
	size_t i;

	*v = 0;
	for (i = 0; i < n; i++) {
		if (!is_digit((unsigned char)s[i]))
			return false;
		*v = *v * 10 + (s[i] - '0');
	}
	return true;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* RFC 3339 as Go's time.Time marshals it: "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm)". */
static bool rfc3339(const char *s, size_t n, int64_t *t)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	size_t i = 19;

	if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
		return false;
	if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) || !digits(s + 11, 2, &h) ||
	    !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &sec))
		return false;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 59)
		return false;
	if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return false;
	if (s[i] == '.') {
		size_t f = ++i;

		while (i < n && is_digit((unsigned char)s[i]))
			i++;
		if (i == f || i - f > 9)
			return false;
	}
	if (i + 1 == n && s[i] == 'Z') {
		/* UTC */
	} else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':' && digits(s + i + 1, 2, &oh) &&
		   digits(s + i + 4, 2, &om) && oh <= 23 && om <= 59) {
		sign = s[i] == '+' ? 1 : -1;
	} else {
		return false;
	}
	*t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - sign * (oh * 3600 + om * 60);
	return true;
}

int goproxy_info_time(const char *json, size_t len, int64_t *t, char *version, const char **why)
{
	json_t *doc, *tm, *ver;
	int err = -EBADMSG;

	doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
	if (!doc || !json_is_object(doc)) {
		if (why)
			*why = "not a JSON object";
		goto out;
	}
	tm = json_object_get(doc, "Time");
	if (!json_is_string(tm) || !rfc3339(json_string_value(tm), json_string_length(tm), t)) {
		if (why)
			*why = "no RFC 3339 Time";
		goto out;
	}
	if (version) {
		ver = json_object_get(doc, "Version");
		if (!json_is_string(ver) || json_string_length(ver) >= 256 ||
		    strlen(json_string_value(ver)) != json_string_length(ver)) {
			if (why)
				*why = "no Version";
			goto out;
		}
		memcpy(version, json_string_value(ver), json_string_length(ver) + 1);
	}
	err = 0;
out:
	json_decref(doc);
	return err;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

int goproxy_list_filter(const char *body, size_t len, goproxy_keep_cb keep, void *arg, char *out, size_t cap,
			size_t *out_len)
{
	size_t i = 0, o = 0, maj, majlen;
	bool incompat;
	char v[256];

	*out_len = 0;
	if (cap == 0)
		return -E2BIG;
	while (i < len) {
		size_t s, f;
		int r;

		/* strings.Fields: the first run of non-space bytes of the line. */
		while (i < len && is_space(body[i]))
			i++;
		s = i;
		while (i < len && body[i] != '\n' && !is_space(body[i]))
			i++;
		f = i - s;
		while (i < len && body[i] != '\n')
			i++;
		i++; /* the newline */
		if (f == 0 || f >= sizeof(v) || !semver_canonical(body + s, f, &maj, &majlen, &incompat))
			continue;
		memcpy(v, body + s, f);
		v[f] = '\0';
		r = keep(arg, v);
		if (r < 0)
			return r;
		if (r == 0)
			continue;
		if (o + f + 1 >= cap)
			return -E2BIG;
		memcpy(out + o, v, f);
		o += f;
		out[o++] = '\n';
	}
	out[o] = '\0';
	*out_len = o;
	return 0;
}
