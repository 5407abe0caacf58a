/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Go's module proxy protocol: request path tables (every kind, escaping both ways, invalid forms), the go.sum
 * hashes against the real go tool (module zips made at run time by Go's own zip writer and by the test
 * network's generator, downloaded by `go mod download` from a file:// proxy with no network), hostile zips
 * made here (bombs, bad and duplicate names, overlaps, truncations, bit flips), `.info` times and list
 * filtering.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <jansson.h>

#include "goproxy.h"
#include "tap.h"

static char tmp[256];
static const char *srcdir;

/* ---- paths ---------------------------------------------------------------------------------------- */

static const struct {
	const char *path;
	enum goproxy_kind kind;
	const char *module, *version, *host, *rest;
} good_paths[] = {
	{ "goproxy.test/m/a/@v/list", GOP_LIST, "goproxy.test/m/a", "", NULL, NULL },
	{ "goproxy.test/m/a/@latest", GOP_LATEST, "goproxy.test/m/a", "", NULL, NULL },
	{ "goproxy.test/m/a/@v/v1.0.0.info", GOP_INFO, "goproxy.test/m/a", "v1.0.0", NULL, NULL },
	{ "goproxy.test/m/a/@v/v1.0.0.mod", GOP_MOD, "goproxy.test/m/a", "v1.0.0", NULL, NULL },
	{ "goproxy.test/m/a/@v/v1.0.0.zip", GOP_ZIP, "goproxy.test/m/a", "v1.0.0", NULL, NULL },
	{ "go.pkgs.example/!burnt!sushi/toml/@v/v1.2.1.zip", GOP_ZIP, "go.pkgs.example/BurntSushi/toml", "v1.2.1",
	  NULL, NULL },
	{ "go.pkgs.example/x/@v/v1.0.0-!r!c1.info", GOP_INFO, "go.pkgs.example/x", "v1.0.0-RC1", NULL, NULL },
	{ "go.pkgs.example/x/@v/v0.0.0-20230102150405-abcdef123456.mod", GOP_MOD, "go.pkgs.example/x",
	  "v0.0.0-20230102150405-abcdef123456", NULL, NULL },
	{ "go.pkgs.example/x/@v/v2.3.4+incompatible.zip", GOP_ZIP, "go.pkgs.example/x", "v2.3.4+incompatible", NULL,
	  NULL },
	{ "go.pkgs.example/x/v2/@v/v2.0.0.info", GOP_INFO, "go.pkgs.example/x/v2", "v2.0.0", NULL, NULL },
	{ "go.pkgs.example/x/v10/@v/v10.1.0-beta.1.zip", GOP_ZIP, "go.pkgs.example/x/v10", "v10.1.0-beta.1", NULL,
	  NULL },
	{ "gopkg.in/yaml.v2/@v/v2.4.0.mod", GOP_MOD, "gopkg.in/yaml.v2", "v2.4.0", NULL, NULL },
	{ "gopkg.in/check.v1/@v/v0.0.0-20161208181325-20d25e280405.mod", GOP_MOD, "gopkg.in/check.v1",
	  "v0.0.0-20161208181325-20d25e280405", NULL, NULL },
	{ "gopkg.in/x.v0/@v/v0.1.0.info", GOP_INFO, "gopkg.in/x.v0", "v0.1.0", NULL, NULL },
	{ "gopkg.in/x.v1-unstable/@v/v1.2.0.mod", GOP_MOD, "gopkg.in/x.v1-unstable", "v1.2.0", NULL, NULL },
	{ "go.pkgs.example/a_b~c-d.e/f/@v/list", GOP_LIST, "go.pkgs.example/a_b~c-d.e/f", "", NULL, NULL },
	{ "go.pkgs.example/v1x/@v/list", GOP_LIST, "go.pkgs.example/v1x", "", NULL, NULL },
	{ "sumdb/sum.goproxy.test/supported", GOP_SUMDB, "", "", "sum.goproxy.test", "supported" },
	{ "sumdb/sum.goproxy.test/latest", GOP_SUMDB, "", "", "sum.goproxy.test", "latest" },
	{ "sumdb/sum.goproxy.test/lookup/go.pkgs.example/!x@v1.0.0", GOP_SUMDB, "go.pkgs.example/X", "v1.0.0",
	  "sum.goproxy.test", "lookup/go.pkgs.example/!x@v1.0.0" },
	{ "sumdb/sum.goproxy.test/tile/8/0/000", GOP_SUMDB, "", "", "sum.goproxy.test", "tile/8/0/000" },
	{ "sumdb/sum.goproxy.test/tile/8/1/x001/x002/345.p/7", GOP_SUMDB, "", "", "sum.goproxy.test",
	  "tile/8/1/x001/x002/345.p/7" },
	{ "sumdb/sum.goproxy.test/tile/8/data/x123/000", GOP_SUMDB, "", "", "sum.goproxy.test",
	  "tile/8/data/x123/000" },
	{ "sumdb/sum.goproxy.test/tile/30/0/999.p/1073741823", GOP_SUMDB, "", "", "sum.goproxy.test",
	  "tile/30/0/999.p/1073741823" },
};

static const struct {
	const char *path;
	size_t len; /* 0: strlen */
} bad_paths[] = {
	{ "", 0 },
	{ "goproxy.test/m/a", 0 },                                /* no @ */
	{ "goproxy.test/m/a/@v/", 0 },                            /* nothing after @v/ */
	{ "goproxy.test/m/a/@v/list/", 0 },
	{ "goproxy.test/m/a/@v/lists", 0 },
	{ "goproxy.test/m/a/@latest/", 0 },
	{ "goproxy.test/m/a@v/list", 0 },                         /* @ not after a slash */
	{ "goproxy.test/m/a/@v/v1.0.0.tar", 0 },                  /* unknown suffix */
	{ "goproxy.test/m/a/@v/.zip", 0 },                        /* no version */
	{ "goproxy.test/m/a/@v/v1.0.zip", 0 },                    /* not canonical */
	{ "goproxy.test/m/a/@v/1.0.0.zip", 0 },                   /* no v */
	{ "goproxy.test/m/a/@v/v01.0.0.zip", 0 },                 /* leading zero */
	{ "goproxy.test/m/a/@v/v1.0.0-01.zip", 0 },               /* numeric pre-release with a leading zero */
	{ "goproxy.test/m/a/@v/v1.0.0-.zip", 0 },                 /* empty pre-release */
	{ "goproxy.test/m/a/@v/v1.0.0-a..b.zip", 0 },             /* empty pre-release identifier */
	{ "goproxy.test/m/a/@v/v1.0.0+build.zip", 0 },            /* build metadata is not canonical */
	{ "goproxy.test/m/a/@v/v1.0.0+incompatible.zip", 0 },     /* +incompatible below v2 */
	{ "goproxy.test/m/a/@v/v2.0.0.zip", 0 },                  /* v2 needs /v2 or +incompatible */
	{ "goproxy.test/m/a/v2/@v/v3.0.0.zip", 0 },               /* major mismatch */
	{ "goproxy.test/m/a/v2/@v/v2.0.0+incompatible.zip", 0 },  /* +incompatible with /v2 */
	{ "goproxy.test/m/a/v2/@v/v1.0.0.zip", 0 },
	{ "goproxy.test/m/a/@v/master.info", 0 },                 /* a query, not a version */
	{ "goproxy.test/m/a/@v/latest.info", 0 },
	{ "goproxy.test/m/a/@v/v1.0.0-!R!C1.info", 0 },           /* upper case after ! */
	{ "goproxy.test/m/a/@v/v1.0.0-RC1.info", 0 },             /* upper case not escaped */
	{ "goproxy.test/m/a/@v/v1.0.0-rc!.info", 0 },             /* ! at the end */
	{ "goproxy.test/m/a/@v/a/v1.0.0.info", 0 },               /* slash in version */
	{ "goproxy.test/M/a/@v/list", 0 },                        /* upper case not escaped */
	{ "goproxy.test/m/!!a/@v/list", 0 },
	{ "goproxy.test/m/!1a/@v/list", 0 },
	{ "goproxy.!test/m/@v/list", 0 },                         /* upper case in the domain */
	{ "goproxy/m/a/@v/list", 0 },                             /* no dot in the first element */
	{ "-goproxy.test/m/@v/list", 0 },                         /* leading dash */
	{ "/goproxy.test/m/@v/list", 0 },                         /* leading slash */
	{ "goproxy.test//m/@v/list", 0 },                         /* double slash */
	{ "goproxy.test/m//@v/list", 0 },                         /* trailing slash of the module */
	{ "goproxy.test/../m/@v/list", 0 },                       /* dot element */
	{ "goproxy.test/./m/@v/list", 0 },
	{ "goproxy.test/.m/@v/list", 0 },                         /* leading dot */
	{ "goproxy.test/m./@v/list", 0 },                         /* trailing dot */
	{ "goproxy.test/con/@v/list", 0 },                        /* Windows */
	{ "goproxy.test/!c!o!n.txt/@v/list", 0 },
	{ "goproxy.test/lpt9/@v/list", 0 },
	{ "goproxy.test/abc~1/@v/list", 0 },                      /* Windows short name */
	{ "goproxy.test/a b/@v/list", 0 },                        /* space */
	{ "goproxy.test/a+b/@v/list", 0 },
	{ "goproxy.test/a%41/@v/list", 0 },
	{ "goproxy.test/caf\xc3\xa9/@v/list", 0 },                /* non-ASCII */
	{ "goproxy.test/a\0b/@v/list", 23 },                      /* NUL */
	{ "goproxy.test/m/v1/@v/list", 0 },                       /* /v1 suffix */
	{ "goproxy.test/m/v0/@v/list", 0 },
	{ "goproxy.test/m/v02/@v/list", 0 },
	{ "goproxy.test/m/v2.1/@v/list", 0 },
	{ "gopkg.in/yaml/@v/list", 0 },                           /* gopkg.in needs .vN */
	{ "gopkg.in/yaml.v01/@v/list", 0 },
	{ "gopkg.in/yaml.v2/@v/v3.0.0.mod", 0 },
	{ "gopkg.in/x.v0-unstable/@v/list", 0 },                  /* as in Go: .v0 only without -unstable */
	{ "gopkg.in/x.v-unstable/@v/list", 0 },
	{ "gopkg.in/x.v2/@v/v2.0.0+incompatible.mod", 0 },
	{ "sumdb/", 0 },
	{ "sumdb/sum.goproxy.test", 0 },
	{ "sumdb/sum.goproxy.test/", 0 },
	{ "sumdb/sum.goproxy.test/supported/", 0 },
	{ "sumdb/sum.goproxy.test/other", 0 },
	{ "sumdb/Sum.goproxy.test/latest", 0 },                   /* upper case host */
	{ "sumdb/-sum.goproxy.test/latest", 0 },
	{ "sumdb/sum..goproxy.test/latest", 0 },
	{ "sumdb/sum_goproxy.test/latest", 0 },
	{ "sumdb/sum.goproxy.test/lookup/", 0 },
	{ "sumdb/sum.goproxy.test/lookup/go.pkgs.example/x", 0 },                /* no @ */
	{ "sumdb/sum.goproxy.test/lookup/go.pkgs.example/x@v1.0", 0 },
	{ "sumdb/sum.goproxy.test/lookup/go.pkgs.example/X@v1.0.0", 0 },
	{ "sumdb/sum.goproxy.test/tile/", 0 },
	{ "sumdb/sum.goproxy.test/tile/8/0", 0 },
	{ "sumdb/sum.goproxy.test/tile/8/0/", 0 },
	{ "sumdb/sum.goproxy.test/tile/0/0/000", 0 },                             /* H 0 */
	{ "sumdb/sum.goproxy.test/tile/31/0/000", 0 },                            /* H 31 */
	{ "sumdb/sum.goproxy.test/tile/08/0/000", 0 },                            /* leading zero */
	{ "sumdb/sum.goproxy.test/tile/8/00/000", 0 },
	{ "sumdb/sum.goproxy.test/tile/8/0/00", 0 },                              /* not three digits */
	{ "sumdb/sum.goproxy.test/tile/8/0/0000", 0 },
	{ "sumdb/sum.goproxy.test/tile/8/0/x000/123", 0 },                        /* leading x000 */
	{ "sumdb/sum.goproxy.test/tile/8/0/x1/123", 0 },
	{ "sumdb/sum.goproxy.test/tile/8/0/123/x001", 0 },                        /* x group last */
	{ "sumdb/sum.goproxy.test/tile/8/0/123/456", 0 },                         /* two plain groups */
	{ "sumdb/sum.goproxy.test/tile/8/0/123.p/256", 0 },                       /* W = 2^H */
	{ "sumdb/sum.goproxy.test/tile/8/0/123.p/0", 0 },
	{ "sumdb/sum.goproxy.test/tile/8/0/123.p/07", 0 },
	{ "sumdb/sum.goproxy.test/tile/8/0/123.p", 0 },
	{ "sumdb/sum.goproxy.test/tile/8/0/123.p/7/", 0 },
	{ "sumdb/sum.goproxy.test/tile/8/0/x001/x001/x001/x001/x001/x001/x001/000", 0 }, /* past int64 */
	{ "sumdb/sum.goproxy.test/tile/8/-1/000", 0 },
	{ "sumdb/sum.goproxy.test/tile/8/data/../000", 0 },
};

static const char *kind_name(enum goproxy_kind k)
{
	static const char *const n[] = { "list", "info", "mod", "zip", "latest", "sumdb" };

	return (unsigned)k < 6 ? n[k] : "?";
}

static void test_paths(void)
{
	struct goproxy_path p;
	const char *why;
	size_t i;

	for (i = 0; i < sizeof(good_paths) / sizeof(good_paths[0]); i++) {
		int rc = goproxy_path_parse(good_paths[i].path, strlen(good_paths[i].path), &p, &why);

		tap_result(rc == 0 && p.kind == good_paths[i].kind && strcmp(p.module, good_paths[i].module) == 0 &&
				   strcmp(p.version, good_paths[i].version) == 0 &&
				   (!good_paths[i].host || (strcmp(p.sumdb_host, good_paths[i].host) == 0 &&
							    strcmp(p.sumdb_rest, good_paths[i].rest) == 0)),
			   "path %s: %s %s %s %s", good_paths[i].path, rc ? why : kind_name(p.kind), p.module,
			   p.version, p.sumdb_rest);
	}
	for (i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
		size_t len = bad_paths[i].len ? bad_paths[i].len : strlen(bad_paths[i].path);
		int rc;

		why = NULL;
		rc = goproxy_path_parse(bad_paths[i].path, len, &p, &why);
		tap_result(rc == -EINVAL && why, "bad path %s: refused (%s)", bad_paths[i].path, why ? why : "-");
	}
	/* Lengths at the buffers' edges. */
	{
		char path[1200], mod[600];

		memset(mod, 'a', sizeof(mod));
		memcpy(mod, "goproxy.test/", 13);
		mod[511] = '\0';
		snprintf(path, sizeof(path), "%s/@v/list", mod);
		tap_result(goproxy_path_parse(path, strlen(path), &p, &why) == 0 && strlen(p.module) == 511,
			   "a 511-byte module path fits");
		mod[511] = 'a';
		mod[512] = '\0';
		snprintf(path, sizeof(path), "%s/@v/list", mod);
		tap_result(goproxy_path_parse(path, strlen(path), &p, &why) == -EINVAL, "a 512-byte one does not (%s)",
			   why);
	}
}

static void test_escape(void)
{
	static const struct {
		const char *real, *esc;
	} pairs[] = {
		{ "go.pkgs.example/BurntSushi/toml", "go.pkgs.example/!burnt!sushi/toml" },
		{ "v1.0.0-RC1", "v1.0.0-!r!c1" },
		{ "abc", "abc" },
		{ "ABC", "!a!b!c" },
		{ "", "" },
	};
	static const char *const bad_unesc[] = { "A", "!", "a!", "!A", "!!", "!1", "a\xc3\xa9", "!-" };
	char buf[64];
	size_t i;

	for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		int r1 = goproxy_escape(pairs[i].real, buf, sizeof(buf));
		bool e_ok = r1 == 0 && strcmp(buf, pairs[i].esc) == 0;
		int r2 = goproxy_unescape(pairs[i].esc, strlen(pairs[i].esc), buf, sizeof(buf));

		tap_result(e_ok && r2 == 0 && strcmp(buf, pairs[i].real) == 0, "escape %s <-> %s", pairs[i].real,
			   pairs[i].esc);
	}
	for (i = 0; i < sizeof(bad_unesc) / sizeof(bad_unesc[0]); i++)
		tap_result(goproxy_unescape(bad_unesc[i], strlen(bad_unesc[i]), buf, sizeof(buf)) == -EINVAL,
			   "unescape refuses %s", bad_unesc[i]);
	tap_result(goproxy_unescape("a\0b", 3, buf, sizeof(buf)) == -EINVAL, "unescape refuses NUL");
	tap_result(goproxy_escape("a!b", buf, sizeof(buf)) == -EINVAL, "escape refuses !");
	tap_result(goproxy_escape("caf\xc3\xa9", buf, sizeof(buf)) == -EINVAL, "escape refuses non-ASCII");
	tap_result(goproxy_escape("ABC", buf, 6) == -E2BIG && goproxy_escape("ABC", buf, 7) == 0,
		   "escape: room for the NUL counted");
	tap_result(goproxy_unescape("!a!b", 4, buf, 2) == -E2BIG && goproxy_unescape("!a!b", 4, buf, 3) == 0,
		   "unescape: room for the NUL counted");
	tap_result(goproxy_escape("", buf, 0) == -E2BIG, "escape into nothing");
}

/* ---- .info and list ---------------------------------------------------------------------------------- */

static int keep_not_v11(void *arg, const char *v)
{
	(*(int *)arg)++;
	return strcmp(v, "v1.1.0") != 0;
}

static int keep_fail(void *arg, const char *v)
{
	(void)arg;
	(void)v;
	return -ECANCELED;
}

static void test_info_list(void)
{
	static const struct {
		const char *json;
		int64_t t;
	} good[] = {
		{ "{\"Version\":\"v1.2.3\",\"Time\":\"2023-01-02T15:04:05Z\"}", 1672671845 },
		{ "{\"Version\":\"v1.2.3\",\"Time\":\"2023-01-02T15:04:05.123456789Z\"}", 1672671845 },
		{ "{\"Version\":\"v1.2.3\",\"Time\":\"2023-01-02T16:04:05+01:00\"}", 1672671845 },
		{ "{\"Version\":\"v1.2.3\",\"Time\":\"2023-01-02T10:04:05-05:00\"}", 1672671845 },
		{ "{\"Version\":\"v1.0.0\",\"Time\":\"1970-01-01T00:00:00Z\"}", 0 },
		{ "{\"Version\":\"v1.0.0\",\"Time\":\"2024-02-29T00:00:00Z\",\"Origin\":{}}", 1709164800 },
		{ "{\"Version\":\"v1.0.0\",\"Time\":\"1969-12-31T23:59:59Z\"}", -1 },
	};
	static const char *const bad[] = {
		"", "[]", "{}", "{\"Version\":\"v1.0.0\"}", "{\"Version\":\"v1.0.0\",\"Time\":12}",
		"{\"Version\":\"v1.0.0\",\"Time\":\"2023-01-02 15:04:05Z\"}",
		"{\"Version\":\"v1.0.0\",\"Time\":\"2023-01-02T15:04:05\"}",
		"{\"Version\":\"v1.0.0\",\"Time\":\"2023-13-02T15:04:05Z\"}",
		"{\"Version\":\"v1.0.0\",\"Time\":\"2023-02-29T15:04:05Z\"}",
		"{\"Version\":\"v1.0.0\",\"Time\":\"2023-01-02T24:04:05Z\"}",
		"{\"Version\":\"v1.0.0\",\"Time\":\"2023-01-02T15:04:05.Z\"}",
		"{\"Version\":\"v1.0.0\",\"Time\":\"2023-01-02T15:04:05+0100\"}",
		"{\"Version\":\"v1.0.0\",\"Time\":\"2023-01-02T15:04:05Zjunk\"}",
		"{\"Version\":\"v1.0.0\",\"Time\":\"2023-01-02T15:04:05Z\",\"Time\":\"2024-01-02T15:04:05Z\"}",
		"{\"Time\":\"2023-01-02T15:04:05Z\"}", /* no Version, and the caller asked for it */
		"{\"Version\":\"v1.0.0\",\"Time\":\"2023-01-02T15:04:05Z\"",
	};
	char ver[256], out[256];
	const char *why;
	int64_t t;
	size_t i, olen;
	int calls = 0;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int rc = goproxy_info_time(good[i].json, strlen(good[i].json), &t, ver, &why);

		tap_result(rc == 0 && t == good[i].t && ver[0] == 'v', "info %s: %lld", good[i].json,
			   rc ? 0LL : (long long)t);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		tap_result(goproxy_info_time(bad[i], strlen(bad[i]), &t, ver, &why) == -EBADMSG && why,
			   "info refused: %s (%s)", bad[i], why ? why : "-");
	}
	tap_result(goproxy_info_time("{\"Time\":\"2023-01-02T15:04:05Z\"}", 31, &t, NULL, &why) == 0,
		   "info without Version when the caller does not ask for it");

	{
		static const char body[] = "v1.0.0\nv1.1.0\r\n  v1.2.0 2023-01-02T15:04:05Z\nnot-a-version\n\nv1.3\n"
					   "v2.0.0+incompatible\nv1.4.0";
		int rc = goproxy_list_filter(body, sizeof(body) - 1, keep_not_v11, &calls, out, sizeof(out), &olen);

		tap_result(rc == 0 && calls == 5 && olen == strlen(out) &&
				   strcmp(out, "v1.0.0\nv1.2.0\nv2.0.0+incompatible\nv1.4.0\n") == 0,
			   "list filtered: versions kept, v1.1.0 dropped, junk dropped (%d calls)", calls);
		tap_result(goproxy_list_filter(body, sizeof(body) - 1, keep_fail, NULL, out, sizeof(out), &olen) ==
				   -ECANCELED,
			   "list: the callback's error stops the filter");
		tap_result(goproxy_list_filter(body, sizeof(body) - 1, keep_not_v11, &calls, out, 10, &olen) == -E2BIG,
			   "list: a short buffer is E2BIG");
		tap_result(goproxy_list_filter("", 0, keep_not_v11, &calls, out, 1, &olen) == 0 && olen == 0 &&
				   out[0] == '\0',
			   "list: empty");
	}
}

/* ---- Hash1 as the test computes it, separately from the library -------------------------------------- */

struct mfile {
	const char *name;
	const char *data;
	size_t len; /* 0: strlen(data) */
};

static size_t mlen(const struct mfile *f)
{
	return f->len ? f->len : strlen(f->data);
}

static int mfile_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mfile *)a)->name, ((const struct mfile *)b)->name);
}

static void ref_h1(struct mfile *f, size_t n, char out[64])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned char dg[32];
	char line[80];
	size_t i;
	int j;

	qsort(f, n, sizeof(*f), mfile_cmp);
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	for (i = 0; i < n; i++) {
		EVP_Digest(f[i].data, mlen(&f[i]), dg, NULL, EVP_sha256(), NULL);
		for (j = 0; j < 32; j++)
			snprintf(line + 2 * j, 3, "%02x", dg[j]);
		EVP_DigestUpdate(c, line, 64);
		EVP_DigestUpdate(c, "  ", 2);
		EVP_DigestUpdate(c, f[i].name, strlen(f[i].name));
		EVP_DigestUpdate(c, "\n", 1);
	}
	EVP_DigestFinal_ex(c, dg, NULL);
	EVP_MD_CTX_free(c);
	memcpy(out, "h1:", 3);
	EVP_EncodeBlock((unsigned char *)out + 3, dg, 32);
}

/* ---- a zip writer that can lie ----------------------------------------------------------------------- */

struct zspec {
	const char *name;
	const char *data;
	size_t len; /* 0: strlen(data) */
	int method; /* 0 store, 8 deflate */
	long long usize; /* >= 0: declared instead of the real size (both headers) */
	bool bad_crc, dd; /* a wrong CRC; sizes in a data descriptor */
	uint16_t flags; /* extra flag bits */
	const char *local_name; /* NULL: name */
};

struct zbuf {
	unsigned char *p;
	size_t n, cap;
};

static void zput(struct zbuf *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 1024;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
}

static void z16(struct zbuf *b, unsigned v)
{
	unsigned char x[2] = { (unsigned char)v, (unsigned char)(v >> 8) };

	zput(b, x, 2);
}

static void z32(struct zbuf *b, unsigned long v)
{
	unsigned char x[4] = { (unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
			       (unsigned char)(v >> 24) };

	zput(b, x, 4);
}

struct zopts {
	size_t prepend, gap; /* bytes before the first entry; between entries */
	bool overlap; /* a second central entry for entry 0 under another name */
	const char *trailer; /* bytes after the end record (not counted in its comment) */
	bool zip64_count; /* 0xffff in the end record */
};

/* Deflates `d` raw (no zlib header), as zip entries are. */
static unsigned char *deflate_raw(const void *d, size_t n, size_t *out_n)
{
	z_stream zs;
	size_t cap = compressBound(n) + 64;
	unsigned char *o = malloc(cap);

	memset(&zs, 0, sizeof(zs));
	deflateInit2(&zs, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY);
	zs.next_in = (unsigned char *)d;
	zs.avail_in = (uInt)n;
	zs.next_out = o;
	zs.avail_out = (uInt)cap;
	deflate(&zs, Z_FINISH);
	*out_n = cap - zs.avail_out;
	deflateEnd(&zs);
	return o;
}

static struct zbuf make_zip(const struct zspec *s, size_t n, const struct zopts *o)
{
	static const struct zopts none;
	struct zbuf b = { 0 }, cd = { 0 };
	size_t i, cnt = 0;
	unsigned long *offs = calloc(n + 1, sizeof(*offs));

	if (!o)
		o = &none;
	for (i = 0; i < o->prepend; i++)
		zput(&b, "P", 1);
	for (i = 0; i < n; i++) {
		size_t len = s[i].len ? s[i].len : strlen(s[i].data), clen = len;
		unsigned char *c = (unsigned char *)s[i].data, *dc = NULL;
		unsigned long crc = crc32(0, (const unsigned char *)s[i].data, (uInt)len) ^ (s[i].bad_crc ? 1 : 0);
		unsigned long us = s[i].usize >= 0 ? (unsigned long)s[i].usize : len;
		const char *ln = s[i].local_name ? s[i].local_name : s[i].name;
		uint16_t fl = (uint16_t)(s[i].flags | (s[i].dd ? 8 : 0));

		if (s[i].method == 8)
			c = dc = deflate_raw(s[i].data, len, &clen);
		if (i && o->gap)
			for (size_t g = 0; g < o->gap; g++)
				zput(&b, "G", 1);
		offs[i] = b.n;
		z32(&b, 0x04034b50);
		z16(&b, 20);
		z16(&b, fl);
		z16(&b, (unsigned)s[i].method);
		z16(&b, 0);
		z16(&b, 0x21);
		z32(&b, s[i].dd ? 0 : crc);
		z32(&b, s[i].dd ? 0 : clen);
		z32(&b, s[i].dd ? 0 : us);
		z16(&b, (unsigned)strlen(ln));
		z16(&b, 0);
		zput(&b, ln, strlen(ln));
		zput(&b, c, clen);
		if (s[i].dd) {
			z32(&b, 0x08074b50);
			z32(&b, crc);
			z32(&b, clen);
			z32(&b, us);
		}
		for (int rep = 0; rep < ((o->overlap && i == 0) ? 2 : 1); rep++) {
			const char *nm = rep ? "goproxy.test/m@v1.0.0/other.go" : s[i].name;

			z32(&cd, 0x02014b50);
			z16(&cd, 20);
			z16(&cd, 20);
			z16(&cd, fl);
			z16(&cd, (unsigned)s[i].method);
			z16(&cd, 0);
			z16(&cd, 0x21);
			z32(&cd, crc);
			z32(&cd, clen);
			z32(&cd, us);
			z16(&cd, (unsigned)strlen(nm));
			z16(&cd, 0);
			z16(&cd, 0);
			z16(&cd, 0);
			z16(&cd, 0);
			z32(&cd, 0644ul << 16);
			z32(&cd, offs[i]);
			zput(&cd, nm, strlen(nm));
			cnt++;
		}
		free(dc);
	}
	{
		size_t cd_off = b.n;

		zput(&b, cd.p, cd.n);
		z32(&b, 0x06054b50);
		z16(&b, 0);
		z16(&b, 0);
		z16(&b, o->zip64_count ? 0xffff : (unsigned)cnt);
		z16(&b, o->zip64_count ? 0xffff : (unsigned)cnt);
		z32(&b, cd.n);
		z32(&b, cd_off);
		z16(&b, 0);
		if (o->trailer)
			zput(&b, o->trailer, strlen(o->trailer));
	}
	free(cd.p);
	free(offs);
	return b;
}

static int memfd_of(const void *p, size_t n)
{
	int fd = memfd_create("zip", 0);
	const unsigned char *c = p;

	if (fd < 0)
		abort();
	while (n) {
		ssize_t w = write(fd, c, n);

		if (w <= 0)
			abort();
		c += w;
		n -= (size_t)w;
	}
	return fd;
}

static int h1_of(const void *p, size_t n, const char *mod, const char *ver, char out[64], const char **why)
{
	int fd = memfd_of(p, n), rc;

	*why = NULL;
	rc = go_h1_zip(fd, mod, ver, out, why);
	close(fd);
	return rc;
}

#define P "goproxy.test/m@v1.0.0/"

static void test_zip_synthetic(void)
{
	const struct zspec good[] = {
		{ P "go.mod", "module goproxy.test/m\n", 0, 8, -1, false, false, 0, NULL },
		{ P "a.go", "package m\n", 0, 0, -1, false, true, 0, NULL },
		{ P "LICENSE", "MIT\n", 0, 8, -1, false, true, 0, NULL },
		{ P "sub/", "", 0, 0, -1, false, false, 0, NULL },
		{ P "sub/b c.go", "package sub\n", 0, 8, -1, false, false, 0, NULL },
		{ P "empty", "", 0, 8, -1, false, false, 0, NULL },
		{ "goproxy.test/m@v1.0.0/", "", 0, 0, -1, false, false, 0, NULL },
	};
	struct mfile ref[7];
	struct zbuf z;
	char h[64], want[64];
	const char *why;
	int rc;
	size_t i;

	for (i = 0; i < 7; i++)
		ref[i] = (struct mfile){ good[i].name, good[i].data, 0 };
	ref_h1(ref, 7, want);
	z = make_zip(good, 7, NULL);
	rc = h1_of(z.p, z.n, "goproxy.test/m", "v1.0.0", h, &why);
	tap_result(rc == 0 && strcmp(h, want) == 0, "synthetic zip (store, deflate, descriptors, directories): %s",
		   rc ? why : h);

	/* Every truncation fails cleanly; so does every single-byte flip that the hash would not notice. */
	{
		size_t bad = 0, okflip = 0;

		for (i = 0; i < z.n; i++)
			if (h1_of(z.p, i, "goproxy.test/m", "v1.0.0", h, &why) == 0)
				bad++;
		tap_result(bad == 0, "every truncation of it (%zu) refused", z.n);
		for (i = 0; i < z.n; i++) {
			unsigned char *c = malloc(z.n);

			memcpy(c, z.p, z.n);
			c[i] ^= 0x55;
			if (h1_of(c, z.n, "goproxy.test/m", "v1.0.0", h, &why) == 0 && strcmp(h, want) != 0)
				okflip++; /* a flipped name byte can still make a valid, different zip */
			free(c);
		}
		tap_result(true, "every byte flipped once: no crash (%zu still valid with another hash)", okflip);
	}
	free(z.p);
	tap_result(h1_of("", 0, "goproxy.test/m", "v1.0.0", h, &why) == -EBADMSG, "empty file: %s", why);
	tap_result(h1_of("PK\5\6", 4, "goproxy.test/m", "v1.0.0", h, &why) == -EBADMSG, "4 bytes: %s", why);
	rc = h1_of(z.p ? "" : "", 0, "goproxy.test/m", "v1.0", h, &why);
	tap_result(rc == -EBADMSG, "non-canonical version refused before reading: %s", why);
}

/* One hostile zip: its entries, options, and the error and reason expected. */
struct hostile {
	const char *what;
	struct zspec s[3];
	size_t n;
	struct zopts o;
	int err;
	const char *why_has;
};

static void test_zip_hostile(void)
{
	static char zeros[4 << 20]; /* compresses to ~4 KiB */
	static char bigmod[17 << 20];
	const struct hostile cases[] = {
		{ "name without the prefix", { { "goproxy.test/m@v1.0.1/a.go", "x", 0, 0, -1, false, false, 0, NULL } },
		  1, { 0 }, -EBADMSG, "outside" },
		{ "module prefix of another case", { { "goproxy.test/M@v1.0.0/a.go", "x", 0, 0, -1, false, false, 0, NULL } },
		  1, { 0 }, -EBADMSG, "outside" },
		{ "name escaping upward", { { P "../a.go", "x", 0, 0, -1, false, false, 0, NULL } }, 1, { 0 }, -EBADMSG,
		  "dots" },
		{ "absolute name", { { "/" P "a.go", "x", 0, 0, -1, false, false, 0, NULL } }, 1, { 0 }, -EBADMSG, "outside" },
		{ "double slash", { { P "/a.go", "x", 0, 0, -1, false, false, 0, NULL } }, 1, { 0 }, -EBADMSG, "empty" },
		{ "dot element", { { P "a/./b.go", "x", 0, 0, -1, false, false, 0, NULL } }, 1, { 0 }, -EBADMSG, "dots" },
		{ "backslash", { { P "a\\b.go", "x", 0, 0, -1, false, false, 0, NULL } }, 1, { 0 }, -EBADMSG, "character" },
		{ "non-ASCII name", { { P "caf\xc3\xa9.go", "x", 0, 0, -1, false, false, 0, NULL } }, 1, { 0 }, -EBADMSG,
		  "character" },
		{ "newline in a name", { { P "a\n.go", "x", 0, 0, -1, false, false, 0, NULL } }, 1, { 0 }, -EBADMSG,
		  "character" },
		{ "trailing dot", { { P "a.", "x", 0, 0, -1, false, false, 0, NULL } }, 1, { 0 }, -EBADMSG, "trailing dot" },
		{ "Windows name", { { P "sub/aux.go", "x", 0, 0, -1, false, false, 0, NULL } }, 1, { 0 }, -EBADMSG,
		  "Windows" },
		{ "duplicate names",
		  { { P "a.go", "x", 0, 0, -1, false, false, 0, NULL }, { P "a.go", "y", 0, 0, -1, false, false, 0, NULL } },
		  2, { 0 }, -EBADMSG, "duplicate" },
		{ "names equal but for case",
		  { { P "A.go", "x", 0, 0, -1, false, false, 0, NULL }, { P "a.go", "y", 0, 0, -1, false, false, 0, NULL } },
		  2, { 0 }, -EBADMSG, "case" },
		{ "directories equal but for case",
		  { { P "D/a.go", "x", 0, 0, -1, false, false, 0, NULL }, { P "d/b.go", "y", 0, 0, -1, false, false, 0, NULL } },
		  2, { 0 }, -EBADMSG, "case" },
		{ "a file and a directory",
		  { { P "x", "x", 0, 0, -1, false, false, 0, NULL }, { P "x/y", "y", 0, 0, -1, false, false, 0, NULL } }, 2,
		  { 0 }, -EBADMSG, "both" },
		{ "go.mod in a subdirectory", { { P "sub/go.mod", "module x\n", 0, 0, -1, false, false, 0, NULL } }, 1, { 0 },
		  -EBADMSG, "go.mod" },
		{ "GO.MOD at the root", { { P "GO.MOD", "module x\n", 0, 0, -1, false, false, 0, NULL } }, 1, { 0 },
		  -EBADMSG, "go.mod" },
		{ "directory entry with data", { { P "d/", "x", 0, 0, -1, false, false, 0, NULL } }, 1, { 0 }, -EBADMSG,
		  "directory" },
		{ "deflate bomb: 4 MiB declared as 100 bytes",
		  { { P "a.go", zeros, sizeof(zeros), 8, 100, false, false, 0, NULL } }, 1, { 0 }, -EBADMSG, "declared" },
		{ "declared size smaller than stored data",
		  { { P "a.go", "hello", 0, 0, 3, false, false, 0, NULL } }, 1, { 0 }, -EBADMSG, "two sizes" },
		{ "declared size larger than the stream", { { P "a.go", "hello", 0, 8, 6, false, false, 0, NULL } }, 1,
		  { 0 }, -EBADMSG, "size" },
		{ "total over 500 MiB by the headers",
		  { { P "a.go", "x", 0, 8, 300ll << 20, false, false, 0, NULL },
		    { P "b.go", "x", 0, 8, 300ll << 20, false, false, 0, NULL } },
		  2, { 0 }, -EFBIG, "500 MiB" },
		{ "go.mod over 16 MiB", { { P "go.mod", bigmod, sizeof(bigmod), 8, -1, false, false, 0, NULL } }, 1, { 0 },
		  -EFBIG, "16 MiB" },
		{ "LICENSE over 16 MiB", { { P "LICENSE", bigmod, sizeof(bigmod), 8, -1, false, false, 0, NULL } }, 1, { 0 },
		  -EFBIG, "16 MiB" },
		{ "CRC mismatch", { { P "a.go", "x", 0, 8, -1, true, false, 0, NULL } }, 1, { 0 }, -EBADMSG, "CRC" },
		{ "CRC mismatch, stored, descriptor", { { P "a.go", "x", 0, 0, -1, true, true, 0, NULL } }, 1, { 0 },
		  -EBADMSG, "CRC" },
		{ "encrypted", { { P "a.go", "x", 0, 0, -1, false, false, 1, NULL } }, 1, { 0 }, -EBADMSG, "encrypted" },
		{ "bzip2", { { P "a.go", "x", 0, 12, -1, false, false, 0, NULL } }, 1, { 0 }, -EBADMSG, "method" },
		{ "local name differs", { { P "a.go", "x", 0, 0, -1, false, false, 0, P "b.go" } }, 1, { 0 }, -EBADMSG,
		  "local" },
		{ "overlapping entries", { { P "a.go", "x", 0, 0, -1, false, false, 0, NULL } }, 1,
		  { .overlap = true }, -EBADMSG, "overlap" },
		{ "data before the first entry", { { P "a.go", "x", 0, 0, -1, false, false, 0, NULL } }, 1,
		  { .prepend = 7 }, -EBADMSG, "between" },
		{ "bytes between entries",
		  { { P "a.go", "x", 0, 0, -1, false, false, 0, NULL }, { P "b.go", "y", 0, 0, -1, false, false, 0, NULL } },
		  2, { .gap = 3 }, -EBADMSG, "between" },
		{ "bytes after the end record", { { P "a.go", "x", 0, 0, -1, false, false, 0, NULL } }, 1,
		  { .trailer = "junk" }, -EBADMSG, "end of central" },
		{ "zip64 entry count", { { P "a.go", "x", 0, 0, -1, false, false, 0, NULL } }, 1, { .zip64_count = true },
		  -EBADMSG, "zip64" },
	};
	char h[64];
	const char *why;
	size_t i;

	memset(bigmod, 'a', sizeof(bigmod));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct zbuf z = make_zip(cases[i].s, cases[i].n, &cases[i].o);
		int rc = h1_of(z.p, z.n, "goproxy.test/m", "v1.0.0", h, &why);

		tap_result(rc == cases[i].err && why && strstr(why, cases[i].why_has), "hostile zip, %s: %d (%s)",
			   cases[i].what, rc, why ? why : "-");
		free(z.p);
	}
	/* A 16 MiB go.mod is allowed (the limit is inclusive, as in Go). */
	{
		struct zspec s = { P "go.mod", bigmod, 16u << 20, 8, -1, false, false, 0, NULL };
		struct zbuf z = make_zip(&s, 1, NULL);
		int rc = h1_of(z.p, z.n, "goproxy.test/m", "v1.0.0", h, &why);

		tap_result(rc == 0, "a go.mod of exactly 16 MiB: %s", rc ? why : h);
		free(z.p);
	}
	/* Not a regular file. */
	{
		int p[2];

		if (pipe(p) == 0) {
			tap_result(go_h1_zip(p[0], "goproxy.test/m", "v1.0.0", h, &why) == -EBADMSG, "a pipe: %s", why);
			close(p[0]);
			close(p[1]);
		}
	}
}

/* ---- against the real go tool ------------------------------------------------------------------------ */

__attribute__((format(printf, 1, 2))) static int sh(const char *fmt, ...)
{
	char cmd[16384], full[17000];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "cd '%s' && ( %s )", tmp, cmd);
	st = system(full);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A file beneath the test's directory, whole (malloc'd, NUL-terminated), or NULL. */
__attribute__((format(printf, 1, 2))) static char *slurp(const char *fmt, ...)
{
	char rel[1024], path[1400];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), "%s/%s", tmp, rel);
	return tap_read_file(path, &n);
}

/* Go's own zip writer, as a proxy built on golang.org/x/mod would use it: args are name, data pairs. */
static const char mkzip_go[] =
	"package main\n\nimport (\n\t\"archive/zip\"\n\t\"os\"\n)\n\n"
	"func main() {\n\tf, err := os.Create(os.Args[1])\n\tif err != nil {\n\t\tpanic(err)\n\t}\n"
	"\tw := zip.NewWriter(f)\n\tfor i := 3; i+1 < len(os.Args); i += 2 {\n"
	"\t\tname, data := os.Args[2]+os.Args[i], os.Args[i+1]\n"
	"\t\tif name[len(name)-1] == '/' {\n\t\t\tw.CreateHeader(&zip.FileHeader{Name: name})\n\t\t\tcontinue\n\t\t}\n"
	"\t\tm := zip.Deflate\n\t\tif len(data) > 0 && data[0] == 'S' {\n\t\t\tm = zip.Store\n\t\t}\n"
	"\t\tfw, err := w.CreateHeader(&zip.FileHeader{Name: name, Method: m})\n\t\tif err != nil {\n\t\t\tpanic(err)\n\t\t}\n"
	"\t\tfw.Write([]byte(data))\n\t}\n\tif err := w.Close(); err != nil {\n\t\tpanic(err)\n\t}\n\tf.Close()\n}\n";

/* Modules for the file:// proxy, each zipped by mkzip: path, escaped path, version, the zip's files. */
static const struct {
	const char *mod, *esc, *ver, *files;
} go_mods[] = {
	{ "goproxy.test/Upper/mod", "goproxy.test/!upper/mod", "v1.0.0",
	  "go.mod 'module goproxy.test/Upper/mod\n' a.go 'package mod\n' LICENSE 'SMIT\n' sub/ '' sub/b.go 'package sub\n'" },
	{ "goproxy.test/st", "goproxy.test/st", "v1.2.3-RC.1",
	  "go.mod 'module goproxy.test/st\n' 'x y.go' 'Spackage st\n' empty ''" },
	{ "goproxy.test/nomod/v2", "goproxy.test/nomod/v2", "v2.0.0", "README 'hello\n' d/e/f/g.txt 'deep\n'" },
	{ "goproxy.test/inc", "goproxy.test/inc", "v3.1.0+incompatible", "inc.go 'package inc\n'" },
};

/* Reads go mod download -json's Sum and GoModSum for one module. */
static bool go_sums(const char *json, char *sum, char *modsum)
{
	json_t *d = json_loads(json, 0, NULL);
	const char *s = json_string_value(json_object_get(d, "Sum")), *m =
		json_string_value(json_object_get(d, "GoModSum"));
	bool ok = s && m && strlen(s) < 64 && strlen(m) < 64;

	if (ok) {
		snprintf(sum, 64, "%s", s);
		snprintf(modsum, 64, "%s", m);
	}
	json_decref(d);
	return ok;
}

static void check_zip_against_go(const char *what, const char *zip, const char *mod, const char *ver,
				 const char *gomod, const char *want_sum, const char *want_modsum)
{
	char h[64] = "", hm[64] = "";
	const char *why = NULL;
	int fd = open(zip, O_RDONLY | O_CLOEXEC), rc = -1;

	if (fd >= 0) {
		rc = go_h1_zip(fd, mod, ver, h, &why);
		close(fd);
	}
	tap_result(rc == 0 && strcmp(h, want_sum) == 0, "%s %s@%s zip: ours %s, go %s", what, mod, ver,
		   rc ? why : h, want_sum);
	if (gomod) {
		go_h1_mod(gomod, strlen(gomod), hm);
		tap_result(strcmp(hm, want_modsum) == 0, "%s %s@%s go.mod: ours %s, go %s", what, mod, ver, hm,
			   want_modsum);
	}
}

static void test_go_tool(void)
{
	size_t i;

	if (sh("go version >/dev/null 2>&1") != 0) {
		tap_result(true, "h1 against the go tool # SKIP go not found");
		return;
	}
	/* No network, no sum database, a private cache: the proxy is a directory. */
	setenv("GOTOOLCHAIN", "local", 1);
	setenv("GOFLAGS", "-mod=mod", 1);
	setenv("GOSUMDB", "off", 1);
	setenv("GONOSUMDB", "*", 1);
	setenv("GONOSUMCHECK", "1", 1);
	setenv("GOPRIVATE", "", 1);
	setenv("CGO_ENABLED", "0", 1);
	sh("mkdir -p gopath modcache gocache proxy work mkzip");
	{
		char p[512];

		snprintf(p, sizeof(p), "%s/gopath", tmp);
		setenv("GOPATH", p, 1);
		snprintf(p, sizeof(p), "%s/modcache", tmp);
		setenv("GOMODCACHE", p, 1);
		snprintf(p, sizeof(p), "%s/gocache", tmp);
		setenv("GOCACHE", p, 1);
		snprintf(p, sizeof(p), "file://%s/proxy", tmp);
		setenv("GOPROXY", p, 1);
	}
	{
		FILE *f;
		char p[512];

		snprintf(p, sizeof(p), "%s/mkzip/main.go", tmp);
		f = fopen(p, "w");
		if (f) {
			fputs(mkzip_go, f);
			fclose(f);
		}
	}
	if (sh("cd mkzip && printf 'module mkzip\\n\\ngo 1.19\\n' > go.mod && GOPROXY=off go build -o ../mkzip.bin . "
	       ">/dev/null 2>&1") != 0) {
		tap_result(false, "go built the zip writer");
		return;
	}
	for (i = 0; i < sizeof(go_mods) / sizeof(go_mods[0]); i++) {
		const char *m = go_mods[i].mod, *e = go_mods[i].esc, *v = go_mods[i].ver;
		char ev[256], sum[64] = "", modsum[64] = "", *out, *gomod, *ziphash, zip[1024];
		struct goproxy_path gp;
		char url[1024];
		const char *why;

		goproxy_escape(v, ev, sizeof(ev));
		/* The files the go command asks the proxy for, at the paths our parser must accept. */
		snprintf(url, sizeof(url), "%s/@v/%s.zip", e, ev);
		tap_result(goproxy_path_parse(url, strlen(url), &gp, &why) == 0 && strcmp(gp.module, m) == 0 &&
				   strcmp(gp.version, v) == 0,
			   "the proxy path %s parses", url);
		if (sh("mkdir -p 'proxy/%s/@v' && ./mkzip.bin 'proxy/%s/@v/%s.zip' '%s@%s/' %s && "
		       "printf 'module %s\\n' > 'proxy/%s/@v/%s.mod' && "
		       "echo '{\"Version\":\"%s\",\"Time\":\"2023-01-02T15:04:05Z\"}' > 'proxy/%s/@v/%s.info' && "
		       "echo '%s' >> 'proxy/%s/@v/list'",
		       e, e, ev, m, v, go_mods[i].files, m, e, ev, v, e, ev, v, e) != 0) {
			tap_result(false, "fixture %s@%s written", m, v);
			continue;
		}
		snprintf(zip, sizeof(zip), "cd work && go mod download -json '%s@%s' > ../dl-%zu.json 2>../dl-%zu.err", m, v,
			 i, i);
		if (sh("%s", zip) != 0) {
			char *err = slurp("dl-%zu.err", i);

			tap_result(false, "go mod download %s@%s: %s", m, v, err ? err : "?");
			free(err);
			continue;
		}
		out = slurp("dl-%zu.json", i);
		if (!out || !go_sums(out, sum, modsum)) {
			tap_result(false, "go mod download -json %s@%s gave Sum and GoModSum", m, v);
			free(out);
			continue;
		}
		free(out);
		snprintf(zip, sizeof(zip), "%s/modcache/cache/download/%s/@v/%s.ziphash", tmp, e, ev);
		ziphash = tap_read_file(zip, &(size_t){ 0 });
		tap_result(ziphash && strncmp(ziphash, sum, strlen(sum)) == 0, "go's .ziphash agrees with -json (%s)",
			   sum);
		free(ziphash);
		gomod = slurp("proxy/%s/@v/%s.mod", e, ev);
		snprintf(zip, sizeof(zip), "%s/proxy/%s/@v/%s.zip", tmp, e, ev);
		check_zip_against_go("go's writer", zip, m, v, gomod, sum, modsum);
		free(gomod);
	}
	/* The test network's generator: its zips (Python's writer) and its go.sum, and go's view of both. */
	if (!srcdir || sh("python3 -c '' 2>/dev/null") != 0) {
		tap_result(true, "test network's GOPROXY tree # SKIP no source dir or python3");
		return;
	}
	if (sh("python3 '%s/conformance/lib/testnet_registries.py' goproxy tn goproxy.test >/dev/null", srcdir) != 0) {
		tap_result(false, "the test network's generator ran");
		return;
	}
	{
		char p[512];

		snprintf(p, sizeof(p), "file://%s/tn/www", tmp);
		setenv("GOPROXY", p, 1);
		snprintf(p, sizeof(p), "%s/modcache-tn", tmp);
		setenv("GOMODCACHE", p, 1);
	}
	{
		static const char *const tn[][2] = { { "goproxy.test/m/a", "v1.0.0" },
						     { "goproxy.test/m/a", "v1.1.0" },
						     { "goproxy.test/m/b", "v1.0.0" } };
		char *gosum = slurp("tn/client/go.sum");

		for (i = 0; i < 3; i++) {
			char sum[64] = "", modsum[64] = "", zip[1024], line[256], *out, *gomod;

			if (sh("cd work && go mod download -json '%s@%s' > ../tn-%zu.json 2>/dev/null", tn[i][0], tn[i][1],
			       i) != 0 ||
			    !(out = slurp("tn-%zu.json", i))) {
				tap_result(false, "go mod download %s@%s from the test network tree", tn[i][0], tn[i][1]);
				continue;
			}
			if (!go_sums(out, sum, modsum))
				tap_result(false, "go's sums for %s@%s", tn[i][0], tn[i][1]);
			free(out);
			snprintf(zip, sizeof(zip), "%s/tn/www/%s/@v/%s.zip", tmp, tn[i][0], tn[i][1]);
			gomod = slurp("tn/www/%s/@v/%s.mod", tn[i][0], tn[i][1]);
			check_zip_against_go("test network", zip, tn[i][0], tn[i][1], gomod, sum, modsum);
			free(gomod);
			if (strcmp(tn[i][1], "v1.0.0") == 0) {
				snprintf(line, sizeof(line), "%s %s %s\n", tn[i][0], tn[i][1], sum);
				tap_result(gosum && strstr(gosum, line), "the generator's go.sum has %s", line);
			}
		}
		free(gosum);
	}
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	srcdir = argc > 1 ? argv[1] : NULL;
	snprintf(tmp, sizeof(tmp), "/tmp/crgw-goproxy-XXXXXX");
	if (!mkdtemp(tmp)) {
		tap_result(false, "a private directory");
		return tap_done();
	}
	test_paths();
	test_escape();
	test_info_list();
	{
		char h[64];

		/* Computed by go 1.19 (modfetch's goModSum) for this go.mod. */
		go_h1_mod("module goproxy.test/Upper/mod\n", 30, h);
		tap_result(strcmp(h, "h1:Pm4C+XkRmtKQE7AHTW3FhWMvONe3qkoGpudncTzU2eA=") == 0, "go.mod vector: %s", h);
	}
	test_zip_synthetic();
	test_zip_hostile();
	test_go_tool();
	sh("chmod -R u+w . 2>/dev/null; cd / && rm -rf '%s'", tmp);
	return tap_done();
}
