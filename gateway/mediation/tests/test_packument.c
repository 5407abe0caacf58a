/* SPDX-License-Identifier: Apache-2.0 */
/*
 * npm packuments: real-shaped documents (plain and scoped) rewritten in full and abbreviated form and read
 * back field by field; "latest" re-pointing; malformed documents, each refused with a reason; bounds; version
 * lookup; semver order, RFC 3339 times, package names and tarball paths, hostile ones included.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "packument.h"
#include "tap.h"

/* An unscoped packument as a registry serves it (trimmed): four versions, one prerelease, two tags. */
static const char plain[] =
    "{\"_id\":\"demo-pkg\",\"_rev\":\"12-abc\",\"name\":\"demo-pkg\",\"description\":\"A demo\","
    "\"dist-tags\":{\"latest\":\"1.2.0\",\"next\":\"2.0.0-rc.1\",\"old\":\"1.0.0\"},"
    "\"versions\":{"
    "\"1.0.0\":{\"name\":\"demo-pkg\",\"version\":\"1.0.0\",\"main\":\"index.js\",\"license\":\"MIT\","
    "\"dependencies\":{\"dep-a\":\"^1.0.0\"},\"scripts\":{\"test\":\"tap\"},\"_npmUser\":{\"name\":\"u\"},"
    "\"dist\":{\"tarball\":\"https://npm.test/demo-pkg/-/demo-pkg-1.0.0.tgz\",\"shasum\":"
    "\"0123456789abcdef0123456789abcdef01234567\",\"integrity\":\"sha512-AAAA==\",\"fileCount\":3,"
    "\"unpackedSize\":1234}},"
    "\"1.1.0\":{\"name\":\"demo-pkg\",\"version\":\"1.1.0\",\"bin\":{\"demo\":\"bin/demo.js\"},"
    "\"engines\":{\"node\":\">=14\"},\"scripts\":{\"postinstall\":\"node x.js\"},\"deprecated\":\"use 1.2\","
    "\"optionalDependencies\":{\"opt\":\"1\"},\"peerDependencies\":{\"peer\":\"2\"},"
    "\"peerDependenciesMeta\":{\"peer\":{\"optional\":true}},\"os\":[\"linux\"],\"cpu\":[\"x64\"],"
    "\"funding\":{\"url\":\"https://fund.example\"},\"_hasShrinkwrap\":false,\"gitHead\":\"abc\","
    "\"dist\":{\"tarball\":\"https://npm.test/demo-pkg/-/demo-pkg-1.1.0.tgz\",\"integrity\":\"sha512-BBBB==\"}},"
    "\"1.2.0\":{\"name\":\"demo-pkg\",\"version\":\"1.2.0\",\"big\":9007199254740993,\"ratio\":0.5,"
    "\"neg\":-12,\"uni\":\"caf\xc3\xa9 \\u2603 \\\"q\\\" a/b\","
    "\"dist\":{\"tarball\":\"https://npm.test/demo-pkg/-/demo-pkg-1.2.0.tgz\",\"integrity\":\"sha512-CCCC==\"}},"
    "\"2.0.0-rc.1\":{\"name\":\"demo-pkg\",\"version\":\"2.0.0-rc.1\","
    "\"dist\":{\"tarball\":\"https://npm.test/demo-pkg/-/demo-pkg-2.0.0-rc.1.tgz\",\"integrity\":\"sha512-DDDD==\"}}"
    "},"
    "\"time\":{\"created\":\"2020-01-01T00:00:00.000Z\",\"modified\":\"2024-06-01T12:00:00.000Z\","
    "\"1.0.0\":\"2020-01-01T00:00:00.000Z\",\"1.1.0\":\"2021-03-04T05:06:07.890Z\","
    "\"1.2.0\":\"2024-06-01T12:00:00+02:00\",\"2.0.0-rc.1\":\"2024-05-01T00:00:00Z\",\"0.0.1\":\"2019-01-01T00:00:"
    "00Z\"},"
    "\"maintainers\":[{\"name\":\"u\",\"email\":\"u@example.com\"}],\"readme\":\"# "
    "demo\\n\",\"readmeFilename\":\"README.md\","
    "\"users\":{\"someone\":true},\"license\":\"MIT\","
    "\"_attachments\":{\"demo-pkg-1.2.0.tgz\":{\"content_type\":\"application/octet-stream\",\"data\":\"AAAA\"}}}";

/* A scoped packument. */
static const char scoped[] =
    "{\"_id\":\"@acme/widget\",\"name\":\"@acme/"
    "widget\",\"dist-tags\":{\"latest\":\"0.3.0\",\"beta\":\"0.4.0-beta.2\"},"
    "\"versions\":{"
    "\"0.2.0\":{\"name\":\"@acme/widget\",\"version\":\"0.2.0\",\"bundleDependencies\":[\"x\"],\"libc\":[\"glibc\"],"
    "\"dist\":{\"tarball\":\"https://npm.test/@acme/widget/-/widget-0.2.0.tgz\",\"integrity\":\"sha512-EEEE==\","
    "\"signatures\":[{\"keyid\":\"SHA256:k\",\"sig\":\"MEUC\"}]}},"
    "\"0.3.0\":{\"name\":\"@acme/widget\",\"version\":\"0.3.0\",\"directories\":{},\"_hasShrinkwrap\":true,"
    "\"acceptDependencies\":{\"a\":\"1\"},\"hasInstallScript\":true,\"readme\":\"x\","
    "\"dist\":{\"tarball\":\"https://npm.test/@acme/widget/-/widget-0.3.0.tgz\",\"integrity\":\"sha512-FFFF==\"}},"
    "\"0.4.0-beta.2\":{\"name\":\"@acme/widget\",\"version\":\"0.4.0-beta.2\","
    "\"dist\":{\"tarball\":\"https://npm.test/@acme/widget/-/"
    "widget-0.4.0-beta.2.tgz\",\"integrity\":\"sha512-GGGG==\"}}"
    "},"
    "\"time\":{\"created\":\"2022-01-01T00:00:00.000Z\",\"modified\":\"2023-01-01T00:00:00.000Z\","
    "\"0.2.0\":\"2022-01-01T00:00:00.000Z\",\"0.3.0\":\"2022-06-01T00:00:00.000Z\",\"0.4.0-beta.2\":\"2023-01-01T00:00:"
    "00.000Z\"},"
    "\"readme\":\"# widget\"}";

/* The callback's orders: versions listed in `drop` go as unlisted; those published at or after `cutoff` as too new. */
struct judge {
	const char *name;
	const char *drop[8];
	long long cutoff; /* 0: none */
	unsigned calls;
	char seen[16][32]; /* copies: what the callback is given lives only as long as the call */
	long long published[16];
	char integrity[16][32];
};

static enum npm_verdict judge(void *arg, const struct npm_version_info *v, char *new_tarball, size_t cap)
{
	struct judge *j = arg;
	const char *base = strchr(j->name, '/') ? strchr(j->name, '/') + 1 : j->name;

	if (j->calls < 16) {
		snprintf(j->seen[j->calls], sizeof(j->seen[0]), "%s", v->version);
		j->published[j->calls] = v->published;
		snprintf(j->integrity[j->calls], sizeof(j->integrity[0]), "%s", v->integrity ? v->integrity : "");
	}
	j->calls++;
	for (size_t i = 0; i < 8 && j->drop[i]; i++)
		if (!strcmp(j->drop[i], v->version))
			return NPM_DROP_UNLISTED;
	if (j->cutoff && (v->published < 0 || v->published >= j->cutoff))
		return NPM_DROP_TOO_NEW;
	snprintf(new_tarball, cap, "http://gw.test:8170/registry/npm/%s/-/%s-%s.tgz", j->name, base, v->version);
	return NPM_KEEP;
}

static json_t *reparse(const struct npm_rewrite *r)
{
	return r->doc ? json_loadb(r->doc, r->len, JSON_REJECT_DUPLICATES, NULL) : NULL;
}

/* The string at `path` (keys joined by '/') in `o`, or NULL. */
static const char *sget(json_t *o, const char *path)
{
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *k = strtok_r(buf, "/", &save); k && o; k = strtok_r(NULL, "/", &save))
		o = json_object_get(o, k);
	return json_string_value(o);
}

static size_t nkeys(json_t *o)
{
	return json_is_object(o) ? json_object_size(o) : (size_t)-1;
}

static void test_full(void)
{
	struct judge j = {.name = "demo-pkg", .drop = {"1.0.0"}, .cutoff = 1714521600 /* 2024-05-01 */};
	struct npm_rewrite r;
	const char *why = "unset";
	int err = npm_packument_rewrite(plain, strlen(plain), "demo-pkg", false, judge, &j, &r, &why);
	json_t *d = reparse(&r), *vs = json_object_get(d, "versions"), *t = json_object_get(d, "time");

	tap_result(!err && !why && d && r.len == strlen(r.doc), "plain: rewritten (%d %s)", err, why ? why : "-");
	tap_result(j.calls == 4 && !strcmp(j.seen[0], "1.0.0") && !strcmp(j.seen[3], "2.0.0-rc.1"),
		   "plain: the callback saw every version in order");
	tap_result(j.published[0] == 1577836800 && j.published[1] == 1614834367 && j.published[2] == 1717236000 &&
		       !strcmp(j.integrity[1], "sha512-BBBB=="),
		   "plain: publish times and integrity given to the callback");
	tap_result(r.kept == 1 && r.dropped_unlisted == 1 && r.dropped_too_new == 2 && r.dropped_invalid == 0,
		   "plain: counts %zu/%zu/%zu", r.kept, r.dropped_unlisted, r.dropped_too_new);
	tap_result(nkeys(vs) == 1 && json_object_get(vs, "1.1.0"), "plain: only 1.1.0 left in versions");
	tap_result(!strcmp(sget(vs, "1.1.0/dist/tarball") ?: "",
			   "http://gw.test:8170/registry/npm/demo-pkg/-/demo-pkg-1.1.0.tgz") &&
		       !strcmp(sget(vs, "1.1.0/dist/integrity") ?: "", "sha512-BBBB=="),
		   "plain: tarball rewritten, integrity kept");
	tap_result(nkeys(t) == 4 && json_object_get(t, "created") && json_object_get(t, "modified") &&
		       json_object_get(t, "1.1.0") && json_object_get(t, "0.0.1") && !json_object_get(t, "1.2.0"),
		   "plain: time keeps created, modified, kept versions and unknown keys; drops dropped versions");
	tap_result(!strcmp(sget(d, "dist-tags/latest") ?: "", "1.1.0") && nkeys(json_object_get(d, "dist-tags")) == 1,
		   "plain: latest re-pointed to 1.1.0, next and old removed");
	tap_result(!json_object_get(d, "_attachments") && sget(d, "readme") && json_object_get(d, "users") &&
		       !strcmp(sget(d, "_rev") ?: "", "12-abc") && json_object_get(vs, "1.1.0") &&
		       sget(vs, "1.1.0/gitHead"),
		   "plain: _attachments dropped, the rest kept");
	tap_result(!strstr(r.doc, "1.2.0") && !strstr(r.doc, "2.0.0-rc.1") && !strstr(r.doc, "npm.test") &&
		       !strstr(r.doc, ": ") && !strstr(r.doc, "\n"),
		   "plain: compact, nothing of dropped versions or upstream tarballs left");
	json_decref(d);
	npm_rewrite_free(&r);
	npm_rewrite_free(&r);

	/* Everything kept: numbers and strings come back unchanged. */
	struct judge all = {.name = "demo-pkg"};

	err = npm_packument_rewrite(plain, strlen(plain), "demo-pkg", false, judge, &all, &r, NULL);
	d = reparse(&r);
	vs = json_object_get(d, "versions");
	tap_result(!err && strstr(r.doc, "\"big\":9007199254740993") && strstr(r.doc, "\"ratio\":0.5") &&
		       strstr(r.doc, "\"neg\":-12") && strstr(r.doc, "\"fileCount\":3") &&
		       strstr(r.doc, "caf\xc3\xa9 \xe2\x98\x83 \\\"q\\\" a/b"),
		   "plain: numbers and strings kept");
	tap_result(r.kept == 4 && !strcmp(sget(d, "dist-tags/latest") ?: "", "1.2.0") &&
		       !strcmp(sget(d, "dist-tags/next") ?: "", "2.0.0-rc.1") &&
		       nkeys(json_object_get(d, "dist-tags")) == 3,
		   "plain: tags untouched when everything is kept");
	json_decref(d);
	npm_rewrite_free(&r);
}

static void test_abbreviated(void)
{
	struct judge j = {.name = "demo-pkg", .drop = {"1.2.0"}};
	struct npm_rewrite r;
	const char *why = NULL;
	int err = npm_packument_rewrite(plain, strlen(plain), "demo-pkg", true, judge, &j, &r, &why);
	json_t *d = reparse(&r), *vs = json_object_get(d, "versions");
	json_t *v0 = json_object_get(vs, "1.0.0"), *v1 = json_object_get(vs, "1.1.0");

	tap_result(!err && d && nkeys(d) == 4 && !strcmp(sget(d, "name") ?: "", "demo-pkg") &&
		       !strcmp(sget(d, "modified") ?: "", "2024-06-01T12:00:00.000Z") &&
		       json_object_get(d, "dist-tags") && vs,
		   "abbreviated: name, modified, dist-tags, versions and nothing else (%s)", why ? why : "-");
	tap_result(nkeys(vs) == 3 && !json_object_get(vs, "1.2.0"), "abbreviated: the dropped version is gone");
	/* 1.0.0 had main, license, scripts (test only), _npmUser: all go; no install script. */
	tap_result(nkeys(v0) == 4 && sget(v0, "name") && sget(v0, "version") && json_object_get(v0, "dependencies") &&
		       json_object_get(v0, "dist") && !json_object_get(v0, "hasInstallScript"),
		   "abbreviated: 1.0.0 keeps name, version, dependencies, dist");
	tap_result(json_integer_value(json_object_get(json_object_get(v0, "dist"), "fileCount")) == 3 &&
		       !strcmp(sget(v0, "dist/shasum") ?: "", "0123456789abcdef0123456789abcdef01234567"),
		   "abbreviated: dist kept whole");
	static const char *const want1[] = {"name",
					    "version",
					    "bin",
					    "engines",
					    "deprecated",
					    "optionalDependencies",
					    "peerDependencies",
					    "peerDependenciesMeta",
					    "os",
					    "cpu",
					    "funding",
					    "_hasShrinkwrap",
					    "dist",
					    "hasInstallScript"};
	bool all = nkeys(v1) == sizeof(want1) / sizeof(want1[0]);

	for (size_t i = 0; i < sizeof(want1) / sizeof(want1[0]); i++)
		all = all && json_object_get(v1, want1[i]);
	tap_result(all && json_is_true(json_object_get(v1, "hasInstallScript")) && !json_object_get(v1, "scripts") &&
		       !json_object_get(v1, "gitHead"),
		   "abbreviated: 1.1.0 field by field, hasInstallScript derived from postinstall");
	tap_result(!strcmp(sget(d, "dist-tags/latest") ?: "", "1.1.0") &&
		       !strcmp(sget(d, "dist-tags/next") ?: "", "2.0.0-rc.1") &&
		       !strcmp(sget(d, "dist-tags/old") ?: "", "1.0.0"),
		   "abbreviated: latest re-pointed below the dropped one, next and old kept");
	tap_result(!strstr(r.doc, "readme") && !strstr(r.doc, "_attachments") && !strstr(r.doc, "maintainers"),
		   "abbreviated: no readme, attachments or maintainers");
	json_decref(d);
	npm_rewrite_free(&r);

	struct judge s = {.name = "@acme/widget"};

	err = npm_packument_rewrite(scoped, strlen(scoped), "@acme/widget", true, judge, &s, &r, &why);
	d = reparse(&r);
	vs = json_object_get(d, "versions");
	v0 = json_object_get(vs, "0.2.0");
	v1 = json_object_get(vs, "0.3.0");
	tap_result(!err && nkeys(vs) == 3 &&
		       !strcmp(sget(v0, "dist/tarball") ?: "",
			       "http://gw.test:8170/registry/npm/@acme/widget/-/widget-0.2.0.tgz") &&
		       json_object_get(v0, "bundleDependencies") && json_object_get(v0, "libc") &&
		       json_is_array(json_object_get(json_object_get(v0, "dist"), "signatures")),
		   "scoped abbreviated: tarball, bundleDependencies, libc, dist.signatures");
	tap_result(
	    nkeys(v1) == 7 && json_object_get(v1, "directories") &&
		json_is_true(json_object_get(v1, "_hasShrinkwrap")) && json_object_get(v1, "acceptDependencies") &&
		json_is_true(json_object_get(v1, "hasInstallScript")) && !json_object_get(v1, "readme"),
	    "scoped abbreviated: directories, _hasShrinkwrap, acceptDependencies, hasInstallScript; readme gone");
	json_decref(d);
	npm_rewrite_free(&r);
}

/* "latest" re-pointing, on a document built from a list of versions. */
static void test_latest(void)
{
	static const struct {
		const char *versions[6], *latest, *drop[4], *want; /* want NULL: no latest */
	} cases[] = {
	    {{"1.0.0", "1.1.0", "2.0.0"}, "2.0.0", {"2.0.0"}, "1.1.0"},
	    {{"1.0.0", "1.1.0", "2.0.0"}, "1.0.0", {"1.0.0"}, "2.0.0"},	     /* nothing below: the highest */
	    {{"1.0.0", "1.5.0", "2.0.0"}, "1.5.0", {"1.5.0"}, "1.0.0"},	     /* below the old latest first */
	    {{"1.0.0", "2.0.0-rc.1", "2.0.0"}, "2.0.0", {"2.0.0"}, "1.0.0"}, /* release before prerelease */
	    {{"2.0.0-alpha", "2.0.0-beta"}, "2.0.0-beta", {"2.0.0-beta"}, "2.0.0-alpha"},
	    {{"1.0.0-rc.1", "1.0.0-rc.2", "1.0.0-rc.10"}, "9.9.9", {NULL}, "1.0.0-rc.10"}, /* missing */
	    {{"1.0.0", "10.0.0", "9.0.0"}, NULL, {NULL}, "10.0.0"},  /* absent: set, numeric order */
	    {{"1.0.0", "1.0.1"}, "1.0.1", {"1.0.0", "1.0.1"}, NULL}, /* nothing kept: removed */
	    {{"0.9.0", "1.0.0-0", "1.0.0-a"}, "1.0.0", {NULL}, "0.9.0"},
	    {{"3.0.0", "3.0.0-x.1"}, "3.0.0", {NULL}, "3.0.0"}, /* untouched */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char doc[2048];
		size_t n = (size_t)snprintf(doc, sizeof(doc), "{\"name\":\"p\",\"dist-tags\":{");
		struct judge j = {.name = "p"};
		struct npm_rewrite r;

		if (cases[i].latest)
			n += (size_t)snprintf(doc + n, sizeof(doc) - n, "\"latest\":\"%s\"", cases[i].latest);
		n += (size_t)snprintf(doc + n, sizeof(doc) - n, "},\"versions\":{");
		for (size_t k = 0; k < 6 && cases[i].versions[k]; k++)
			n += (size_t)snprintf(doc + n, sizeof(doc) - n, "%s\"%s\":{\"version\":\"%s\"}", k ? "," : "",
					      cases[i].versions[k], cases[i].versions[k]);
		snprintf(doc + n, sizeof(doc) - n, "}}");
		for (size_t k = 0; k < 4 && cases[i].drop[k]; k++)
			j.drop[k] = cases[i].drop[k];

		int err = npm_packument_rewrite(doc, strlen(doc), "p", false, judge, &j, &r, NULL);
		json_t *d = reparse(&r);
		const char *got = sget(d, "dist-tags/latest");

		tap_result(!err && (cases[i].want ? got && !strcmp(got, cases[i].want) : !got), "latest %zu: %s", i,
			   got ? got : "(none)");
		json_decref(d);
		npm_rewrite_free(&r);
	}
}

/* Malformed documents: each refused whole, with a reason. */
static void test_malformed(void)
{
	static const struct {
		const char *doc, *what;
		int err;
	} bad[] = {
	    {"", "empty", -EINVAL},
	    {"[]", "array root", -EINVAL},
	    {"\"p\"", "string root", -EINVAL},
	    {"{\"name\":\"p\"", "truncated", -EINVAL},
	    {"{\"name\":\"p\"} x", "trailing bytes", -EINVAL},
	    {"{\"name\":\"p\",\"name\":\"p\"}", "duplicate top-level key", -EINVAL},
	    {"{\"name\":\"p\",\"versions\":{\"1.0.0\":{\"version\":\"1.0.0\",\"dist\":{\"tarball\":\"a\",\"tarball\":"
	     "\"b\"}}}}",
	     "duplicate key in dist", -EINVAL},
	    {"{\"name\":\"p\",\"versions\":{\"1.0.0\":{\"version\":\"1.0.0\"},\"1.0.0\":{\"version\":\"1.0.0\"}}}",
	     "duplicate version", -EINVAL},
	    /* npm's JSON.parse takes the last of two equal keys: the gateway must not judge the first. */
	    {"{\"name\":\"p\",\"\\u006eame\":\"q\"}", "duplicate key spelled with an escape", -EINVAL},
	    {"{\"name\":\"p\",\"versions\":{\"1.0.0\":{\"version\":\"1.0.0\"},\"1.0.\\u0030\":{\"version\":\"1.0.0\"}}"
	     "}",
	     "duplicate version spelled with an escape", -EINVAL},
	    {"\xef\xbb\xbf{\"name\":\"p\"}", "byte order mark", -EINVAL},
	    {"{\"versions\":{}}", "no name", -EINVAL},
	    {"{\"name\":7}", "name not a string", -EINVAL},
	    {"{\"name\":\"q\"}", "another package", -EINVAL},
	    {"{\"name\":\"P\"}", "name differs by case", -EINVAL},
	    {"{\"name\":\"p\",\"versions\":[]}", "versions an array", -EINVAL},
	    {"{\"name\":\"p\",\"versions\":{\"1.0.0\":\"x\"}}", "version not an object", -EINVAL},
	    {"{\"name\":\"p\",\"versions\":{\"1.0.0\":null}}", "version null", -EINVAL},
	    {"{\"name\":\"p\",\"versions\":{\"1.0.0\":{\"version\":\"1.0.1\"}}}", "version disagrees with key",
	     -EINVAL},
	    {"{\"name\":\"p\",\"versions\":{\"1.0.0\":{}}}", "version field missing", -EINVAL},
	    {"{\"name\":\"p\",\"versions\":{\"1.0.0\":{\"version\":1}}}", "version field a number", -EINVAL},
	    {"{\"name\":\"p\",\"versions\":{\"1.0.0\":{\"version\":\"1.0.0\",\"name\":\"q\"}}}",
	     "version of another package", -EINVAL},
	    {"{\"name\":\"p\",\"versions\":{\"1.0.0\":{\"version\":\"1.0.0\",\"name\":[]}}}", "version name an array",
	     -EINVAL},
	    {"{\"name\":\"p\",\"versions\":{\"1.0.0\":{\"version\":\"1.0.0\",\"dist\":\"x\"}}}", "dist a string",
	     -EINVAL},
	    {"{\"name\":\"p\",\"versions\":{\"1.0.0\":{\"version\":\"1.0.0\",\"dist\":{\"integrity\":[\"sha512-A\"]}}}"
	     "}",
	     "integrity not a string", -EINVAL},
	    {"{\"name\":\"p\",\"versions\":{\"1.0.0\":{\"version\":\"1.0.0\",\"dist\":{\"tarball\":1}}}}",
	     "tarball not a string", -EINVAL},
	    {"{\"name\":\"p\",\"versions\":{\"1.0.0\":{\"version\":\"1.0.0\",\"dist\":{\"shasum\":null}}}}",
	     "shasum null", -EINVAL},
	    {"{\"name\":\"p\",\"time\":[]}", "time an array", -EINVAL},
	    {"{\"name\":\"p\",\"dist-tags\":\"1.0.0\"}", "dist-tags a string", -EINVAL},
	    {"{\"name\":\"p\",\"x\":\"a\\u0000b\"}", "\\u0000 in a string", -EINVAL},
	    {"{\"name\":\"p\",\"a\\u0000\":1}", "\\u0000 in a key", -EINVAL},
	    {"{\"name\":\"p\",\"x\":\"\xff\"}", "invalid UTF-8", -EINVAL},
	    {"{\"name\":\"p\",\"x\":\"\\ud800\"}", "lone surrogate", -EINVAL},
	    {"{\"name\":\"p\",\"x\":123456789012345678901234567890}", "huge integer", -EINVAL},
	    {"{\"name\":\"p\",\"x\":-9223372036854775809}", "integer below 64 bits", -EINVAL},
	    {"{\"name\":\"p\",\"x\":1e400}", "real overflow", -EINVAL},
	    {"{\"name\":\"p\",\"x\":NaN}", "NaN", -EINVAL},
	    {"{\"name\":\"p\",\"x\":01}", "leading zero", -EINVAL},
	    {"{'name':'p'}", "single quotes", -EINVAL},
	    {"{\"name\":\"p\",}", "trailing comma", -EINVAL},
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct judge j = {.name = "p"};
		struct npm_rewrite r;
		const char *why = NULL;
		int err = npm_packument_rewrite(bad[i].doc, strlen(bad[i].doc), "p", i % 2, judge, &j, &r, &why);

		tap_result(err == bad[i].err && why && why[0] && !r.doc && !r.len && !r.kept, "refused: %s (%s)",
			   bad[i].what, why ? why : "-");
	}

	/* The same bytes with a NUL inside, not NUL-terminated: the length rules. */
	static const char nul[] = "{\"name\":\"p\"}\0{}";
	struct npm_rewrite r;
	const char *why = NULL;
	struct judge j = {.name = "p"};

	int err = npm_packument_rewrite(nul, sizeof(nul) - 1, "p", false, judge, &j, &r, &why);

	tap_result(err == -EINVAL && why, "refused: NUL byte after the object (%s)", why ? why : "-");
	tap_result(npm_packument_rewrite(nul, 12, "p", false, judge, &j, &r, &why) == 0 && !why &&
		       !strcmp(r.doc, "{\"name\":\"p\",\"dist-tags\":{}}"),
		   "a minimal document: dist-tags added, versions left absent");
	npm_rewrite_free(&r);
	err = npm_packument_rewrite(nul, 12, "../p", false, judge, &j, &r, &why);
	tap_result(err == -EINVAL && why, "refused: invalid package name asked for (%s)", why ? why : "-");
	tap_result(npm_packument_rewrite(nul, 12, "p", false, NULL, NULL, &r, &why) == -EINVAL && why,
		   "refused: no callback");
}

static enum npm_verdict keep_without_url(void *arg, const struct npm_version_info *v, char *new_tarball, size_t cap)
{
	(void)arg, (void)v, (void)cap;
	new_tarball[0] = '\0';
	return NPM_KEEP;
}

static enum npm_verdict keep_latin1(void *arg, const struct npm_version_info *v, char *new_tarball, size_t cap)
{
	(void)arg, (void)v;
	snprintf(new_tarball, cap, "http://gw.test/caf\xe9.tgz");
	return NPM_KEEP;
}

static enum npm_verdict odd_verdict(void *arg, const struct npm_version_info *v, char *new_tarball, size_t cap)
{
	(void)arg, (void)v, (void)new_tarball, (void)cap;
	return (enum npm_verdict)42;
}

static void test_callback_and_keys(void)
{
	static const char doc[] =
	    "{\"name\":\"p\",\"dist-tags\":{\"latest\":\"1.0.0\",\"x\":\"v1\"},\"versions\":{"
	    "\"1.0.0\":{\"version\":\"1.0.0\"},\"v1\":{\"version\":\"v1\"},\"01.0.0\":{\"version\":\"01.0.0\"},"
	    "\"modified\":{\"version\":\"modified\"},\"../1.0.0\":{\"version\":\"../1.0.0\"}},"
	    "\"time\":{\"modified\":\"2020-01-01T00:00:00Z\",\"v1\":\"2020-01-01T00:00:00Z\"}}";
	struct judge j = {.name = "p"};
	struct npm_rewrite r;
	const char *why = NULL;
	int err = npm_packument_rewrite(doc, strlen(doc), "p", false, judge, &j, &r, &why);
	json_t *d = reparse(&r);

	tap_result(!err && j.calls == 1 && r.kept == 1 && r.dropped_invalid == 4 &&
		       nkeys(json_object_get(d, "versions")) == 1,
		   "keys that are not semver are dropped, never given to the callback");
	tap_result(sget(d, "time/modified") && !json_object_get(json_object_get(d, "time"), "v1") &&
		       !sget(d, "dist-tags/x"),
		   "time.modified survives a version named \"modified\"; a tag on a dropped key goes");
	json_decref(d);
	npm_rewrite_free(&r);

	err = npm_packument_rewrite(doc, strlen(doc), "p", false, keep_without_url, NULL, &r, &why);
	tap_result(err == -EINVAL && why && !r.doc, "a kept version without a URL fails the rewrite (%s)",
		   why ? why : "-");
	err = npm_packument_rewrite(doc, strlen(doc), "p", false, keep_latin1, NULL, &r, &why);
	tap_result(err == -EINVAL && why && !r.doc, "a URL that is not UTF-8 fails the rewrite (%s)", why ? why : "-");
	err = npm_packument_rewrite(doc, strlen(doc), "p", false, odd_verdict, NULL, &r, &why);
	tap_result(!err && r.kept == 0 && r.dropped_unlisted == 1 && !strstr(r.doc, "1.0.0") &&
		       !strstr(r.doc, "latest"),
		   "an unknown verdict drops the version");
	npm_rewrite_free(&r);
}

static void test_bounds(void)
{
	char *doc = malloc(4096);
	struct judge j = {.name = "p"};
	struct npm_rewrite r;
	const char *why = NULL;
	size_t n;

	/* NPM_MAX_DEPTH levels in all (the root is one) pass; one more is refused. */
	for (int depth = NPM_MAX_DEPTH; depth <= NPM_MAX_DEPTH + 1; depth++) {
		n = (size_t)snprintf(doc, 4096, "{\"name\":\"p\",\"x\":");
		for (int i = 1; i < depth; i++)
			n += (size_t)snprintf(doc + n, 4096 - n, "%s", i % 2 ? "[" : "{\"k\":");
		doc[n++] = '0';
		for (int i = depth - 1; i >= 1; i--)
			doc[n++] = i % 2 ? ']' : '}';
		doc[n++] = '}';
		int err = npm_packument_rewrite(doc, n, "p", false, judge, &j, &r, &why);

		tap_result(depth == NPM_MAX_DEPTH ? !err : err == -E2BIG && why, "nesting %d: %s", depth,
			   why ? why : "ok");
		npm_rewrite_free(&r);
	}
	/* Brackets inside strings do not count. */
	n = (size_t)snprintf(doc, 4096, "{\"name\":\"p\",\"x\":\"");
	for (int i = 0; i < 200; i++)
		doc[n++] = '[';
	n += (size_t)snprintf(doc + n, 4096 - n, "\\\"{\"}");
	tap_result(!npm_packument_rewrite(doc, n, "p", false, judge, &j, &r, &why),
		   "brackets in strings are not nesting");
	npm_rewrite_free(&r);
	/* The size bound is checked before a byte is read. */
	int err = npm_packument_rewrite(doc, (size_t)NPM_PACKUMENT_MAX + 1, "p", false, judge, &j, &r, &why);

	tap_result(err == -E2BIG && why, "a document over NPM_PACKUMENT_MAX (%s)", why ? why : "-");
	free(doc);
}

static void test_find(void)
{
	struct npm_version_found f;
	const char *why = NULL;

	tap_result(!npm_packument_find(plain, strlen(plain), "demo-pkg", "1.2.0", &f, &why) && !why &&
		       !strcmp(f.version, "1.2.0") && !strcmp(f.integrity, "sha512-CCCC==") && !f.shasum[0] &&
		       !strcmp(f.tarball, "https://npm.test/demo-pkg/-/demo-pkg-1.2.0.tgz") &&
		       f.published == 1717236000 && !f.prerelease,
		   "find: 1.2.0 with its integrity, tarball and time (offset applied)");
	tap_result(!npm_packument_find(scoped, strlen(scoped), "@acme/widget", "0.4.0-beta.2", &f, NULL) &&
		       f.prerelease && f.published == 1672531200,
		   "find: scoped prerelease");
	static const char notime[] = "{\"name\":\"p\",\"versions\":{\"1.0.0\":{\"version\":\"1.0.0\"}},"
				     "\"time\":{\"1.0.0\":\"yesterday\"}}";

	tap_result(!npm_packument_find(notime, strlen(notime), "p", "1.0.0", &f, NULL) && f.published == -1 &&
		       !f.tarball[0] && !f.integrity[0],
		   "find: an unparsable time is -1, missing dist fields empty");
	tap_result(npm_packument_find(plain, strlen(plain), "demo-pkg", "0.0.1", &f, &why) == -ENOENT && why &&
		       f.published == -1 && !f.version[0],
		   "find: a version only in time is absent");
	tap_result(npm_packument_find(plain, strlen(plain), "demo-pkg", "../1.0.0", &f, &why) == -EINVAL && why,
		   "find: a version that is not semver is refused");
	tap_result(npm_packument_find(plain, strlen(plain), "other", "1.0.0", &f, &why) == -EINVAL && why,
		   "find: another package's document is refused");
	static const char bad[] =
	    "{\"name\":\"p\",\"versions\":{\"1.0.0\":{\"version\":\"1.0.0\"},\"2.0.0\":{\"version\":\"3\"}}}";

	tap_result(npm_packument_find(bad, strlen(bad), "p", "1.0.0", &f, &why) == -EINVAL && why,
		   "find: a malformed version elsewhere fails the document");

	char *big = malloc(NPM_INTEGRITY_MAX + 200);
	size_t n = (size_t)snprintf(
	    big, 200, "{\"name\":\"p\",\"versions\":{\"1.0.0\":{\"version\":\"1.0.0\",\"dist\":{\"integrity\":\"");

	memset(big + n, 'A', NPM_INTEGRITY_MAX + 1);
	n += NPM_INTEGRITY_MAX + 1;
	n += (size_t)snprintf(big + n, 20, "\"}}}}");
	tap_result(npm_packument_find(big, n, "p", "1.0.0", &f, &why) == -E2BIG && why, "find: integrity too long");
	free(big);
}

static void test_semver(void)
{
	/* Each is below the next (semver.org's precedence example, then more). */
	static const char *const order[] = {
	    "0.0.0",
	    "0.0.1",
	    "0.1.0",
	    "1.0.0-0",
	    "1.0.0-1",
	    "1.0.0-2",
	    "1.0.0-10",
	    "1.0.0-a",
	    "1.0.0-alpha",
	    "1.0.0-alpha.1",
	    "1.0.0-alpha.beta",
	    "1.0.0-beta",
	    "1.0.0-beta.2",
	    "1.0.0-beta.11",
	    "1.0.0-rc.1",
	    "1.0.0",
	    "1.0.1",
	    "1.2.0",
	    "1.10.0",
	    "2.0.0",
	    "10.0.0",
	    "99999999999999999999.0.0",
	};
	bool ok = true;

	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
			int c = npm_semver_cmp(order[i], order[k]);

			if ((i < k && c >= 0) || (i == k && c) || (i > k && c <= 0)) {
				ok = false;
				printf("# %s vs %s: %d\n", order[i], order[k], c);
			}
		}
	tap_result(ok, "semver: precedence over %zu versions", sizeof(order) / sizeof(order[0]));
	tap_result(!npm_semver_cmp("1.0.0+a", "1.0.0+b") && npm_semver_cmp("1.0.0-a+z", "1.0.0+a") < 0,
		   "semver: build metadata ignored");

	static const char *const valid[] = {"0.0.0",
					    "1.2.3",
					    "1.0.0-rc.1",
					    "1.0.0-0A.is.legal",
					    "1.0.0+001",
					    "1.0.0-x-y-z.--",
					    "1.0.0-alpha+exp.sha.5114f85"};
	static const char *const invalid[] = {
	    "",	      "1",	 "1.2",	     "1.2.3.4",	   "01.2.3", "1.02.3",	      "1.2.03",	   "v1.2.3",
	    "=1.2.3", "1.2.3-",	 "1.2.3-01", "1.2.3-a..b", "1.2.3+", "1.2.3+a..b",    "1.2.3-a_b", "1.2.3 ",
	    " 1.2.3", "1.2.3/x", "../1.2.3", "1.2.-3",	   "-1.2.3", "1.2.3-\xc3\xa9"};

	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
		tap_result(npm_semver_valid(valid[i], strlen(valid[i])), "semver valid: %s", valid[i]);
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		tap_result(!npm_semver_valid(invalid[i], strlen(invalid[i])), "semver invalid: \"%s\"", invalid[i]);
	char longv[NPM_VERSION_MAX + 2];

	memset(longv, '1', sizeof(longv));
	memcpy(longv, "1.0.0-", 6);
	tap_result(npm_semver_valid(longv, NPM_VERSION_MAX) && !npm_semver_valid(longv, NPM_VERSION_MAX + 1),
		   "semver: at most NPM_VERSION_MAX bytes");
}

static void test_time(void)
{
	static const struct {
		const char *s;
		long long t;
	} cases[] = {
	    {"1970-01-01T00:00:00Z", 0},
	    {"2015-02-18T22:20:37.035Z", 1424298037},
	    {"2011-08-24T20:39:59.000Z", 1314218399},
	    {"2024-02-29T00:00:00Z", 1709164800},
	    {"2000-02-29T00:00:00Z", 951782400},
	    {"2024-06-01T12:00:00+02:00", 1717236000},
	    {"2024-06-01T12:00:00-0130", 1717248600},
	    {"2024-06-01t12:00:00.123456789z", 1717243200},
	    {"2016-12-31T23:59:60Z", 1483228800}, /* a leap second: the next second */
	    {"1969-12-31T23:59:59Z", -1},	  /* before the epoch */
	    {"1970-01-01T00:30:00+01:00", -1},
	    {"2023-02-29T00:00:00Z", -1},
	    {"1900-02-29T00:00:00Z", -1},
	    {"2024-13-01T00:00:00Z", -1},
	    {"2024-04-31T00:00:00Z", -1},
	    {"2024-00-01T00:00:00Z", -1},
	    {"2024-01-01T24:00:00Z", -1},
	    {"2024-01-01T00:60:00Z", -1},
	    {"2024-01-01T00:00:61Z", -1},
	    {"2024-01-01T00:00:00", -1}, /* no zone */
	    {"2024-01-01 00:00:00Z", -1},
	    {"2024-01-01T00:00:00.Z", -1},
	    {"2024-01-01T00:00:00+24:00", -1},
	    {"2024-01-01T00:00:00+01:60", -1},
	    {"2024-01-01T00:00:00+1", -1},
	    {"2024-01-01T00:00:00Zjunk", -1},
	    {"2024-01-01", -1},
	    {"", -1},
	    {"+2024-01-01T00:00:00Z", -1},
	    {"9999-12-31T23:59:59Z", 253402300799},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long t = npm_time_parse(cases[i].s);

		tap_result(t == cases[i].t, "time \"%s\": %lld", cases[i].s, t);
	}
}

static void test_names(void)
{
	static const char *const good[] = {"a",	   "lodash",	 "demo-pkg",	"a.b_c-d", "@acme/widget",
					   "@a/b", "JSONStream", "@types/node", "x1",	   "-"};
	static const char *const bad[] = {"",
					  ".hidden",
					  "_private",
					  "node_modules",
					  "favicon.ico",
					  "a/b",
					  "@acme",
					  "@acme/",
					  "@/x",
					  "@acme/widget/x",
					  "@.a/b",
					  "@a/.b",
					  "@_a/b",
					  "a b",
					  "a%2fb",
					  "caf\xc3\xa9",
					  "a~b",
					  "a!b",
					  "a(b)",
					  "a*b",
					  "a'b",
					  "..",
					  "a\\b",
					  "@acme%2fwidget"};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		tap_result(npm_name_valid(good[i], strlen(good[i])), "name valid: %s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		tap_result(!npm_name_valid(bad[i], strlen(bad[i])), "name invalid: \"%s\"", bad[i]);

	char n[NPM_NAME_MAX + 2];

	memset(n, 'a', sizeof(n));
	tap_result(npm_name_valid(n, NPM_NAME_MAX) && !npm_name_valid(n, NPM_NAME_MAX + 1), "name: at most 214 bytes");
	tap_result(!npm_name_valid("a\0b", 3), "name: NUL refused");
}

static void test_tarball_paths(void)
{
	static const struct {
		const char *path, *name, *version;
	} good[] = {
	    {"lodash/-/lodash-4.17.21.tgz", "lodash", "4.17.21"},
	    {"/lodash/-/lodash-4.17.21.tgz", "lodash", "4.17.21"},
	    {"@acme/widget/-/widget-0.4.0-beta.2.tgz", "@acme/widget", "0.4.0-beta.2"},
	    {"demo-pkg/-/demo-pkg-1.0.0-rc.1+b.5.tgz", "demo-pkg", "1.0.0-rc.1+b.5"},
	    {"a-b/-/a-b-1.0.0.tgz", "a-b", "1.0.0"},
	    {"-/-/--1.0.0.tgz", "-", "1.0.0"},
	};
	static const char *const bad[] = {
	    "",
	    "/",
	    "lodash",
	    "lodash/-/",
	    "lodash/-/lodash-4.17.21",
	    "lodash/-/lodash-4.17.21.tar.gz",
	    "lodash/-/lodash-4.17.21.TGZ",
	    "lodash/-/other-4.17.21.tgz",
	    "lodash/-/lodash4.17.21.tgz",
	    "lodash/-/lodash-.tgz",
	    "lodash/-/lodash-4.17.tgz",
	    "lodash/-/lodash-v4.17.21.tgz",
	    "lodash/x/lodash-4.17.21.tgz",
	    "lodash/-/x/lodash-4.17.21.tgz",
	    "lodash//-/lodash-4.17.21.tgz",
	    "../lodash/-/lodash-4.17.21.tgz",
	    "lodash/-/../lodash-4.17.21.tgz",
	    "./lodash/-/lodash-4.17.21.tgz",
	    "lodash/../-/lodash-4.17.21.tgz",
	    "lodash/-/lodash-1.0.0/../../x.tgz",
	    "lodash/-/lodash-1.0.0.tgz/",
	    "//lodash/-/lodash-1.0.0.tgz",
	    "@acme/widget/-/@acme/widget-1.0.0.tgz",
	    "@acme/widget/-/acme-widget-1.0.0.tgz",
	    "@acme/-/widget-1.0.0.tgz",
	    "@acme%2fwidget/-/widget-1.0.0.tgz",
	    "@acme/widget/-/widget-1.0.0.tgz?x",
	    "lodash/-/lodash-1.0.0-.tgz",
	    "lodash\\-\\lodash-1.0.0.tgz",
	    ".lodash/-/.lodash-1.0.0.tgz",
	    "@acme/widget/extra/-/widget-1.0.0.tgz",
	    "a/b/c/d/e/f/g",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char name[NPM_NAME_MAX + 1], version[NPM_VERSION_MAX + 1];
		int err = npm_tarball_path_parse(good[i].path, strlen(good[i].path), name, sizeof(name), version,
						 sizeof(version));

		tap_result(!err && !strcmp(name, good[i].name) && !strcmp(version, good[i].version), "tarball path %s",
			   good[i].path);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char name[NPM_NAME_MAX + 1] = "x", version[NPM_VERSION_MAX + 1] = "x";
		int err = npm_tarball_path_parse(bad[i], strlen(bad[i]), name, sizeof(name), version, sizeof(version));

		tap_result(err == -EINVAL && !name[0] && !version[0], "tarball path refused: \"%s\"", bad[i]);
	}
	char name[8], version[4];

	tap_result(npm_tarball_path_parse("lodash/-/lodash-1.0.0.tgz\0", 26, name, sizeof(name), version,
					  sizeof(version)) == -EINVAL &&
		       npm_tarball_path_parse("lo\0ash/-/lo\0ash-1.0.0.tgz", 25, name, sizeof(name), version,
					      sizeof(version)) == -EINVAL,
		   "tarball path refused: NUL bytes");

	tap_result(npm_tarball_path_parse("lodash/-/lodash-4.17.21.tgz", 27, name, sizeof(name), version,
					  sizeof(version)) == -E2BIG &&
		       !name[0] && !version[0],
		   "tarball path: a version that does not fit");
}

int main(void)
{
	test_full();
	test_abbreviated();
	test_latest();
	test_malformed();
	test_callback_and_keys();
	test_bounds();
	test_find();
	test_semver();
	test_time();
	test_names();
	test_tarball_paths();
	return tap_done();
}
