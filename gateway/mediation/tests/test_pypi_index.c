/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Python simple index pages: the test network's pages both ways, URL resolution, character references,
 * yanking, requires-python escaping, metadata advertisements dropped, files dropped, malformed pages refused
 * before any callback; then tables for Accept negotiation, file name versions and name normalization; last,
 * the pages the test network's generator writes (when the source dir is given and python3 is installed),
 * each file's hash checked against the wheel itself and the generator's pinned requirements.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "pypi_index.h"
#include "tap.h"

#define GW "http://gw.test:8170/registry/pypi/files/"

/* What a callback saw, copied. */
struct rec {
	char filename[256], url[8300], sha256[65], rp[256], reason[256], version[128];
	bool has_sha, has_rp, yanked, has_reason;
	long long upload_time, size;
};

struct seen {
	struct rec r[16];
	size_t n, calls;
	const char *drop; /* a file whose name holds this is dropped; NULL keeps all */
	const char *bad_url; /* when set, the URL the callback hands back */
};

static void copy(char *dst, size_t cap, const char *s, bool *has)
{
	if (has)
		*has = s != NULL;
	snprintf(dst, cap, "%s", s ? s : "");
}

static bool keep_cb(void *arg, const struct pypi_file *f, char *new_url, size_t cap)
{
	struct seen *s = arg;

	s->calls++;
	if (s->n < 16) {
		struct rec *r = &s->r[s->n++];

		copy(r->filename, sizeof(r->filename), f->filename, NULL);
		copy(r->url, sizeof(r->url), f->url, NULL);
		copy(r->sha256, sizeof(r->sha256), f->sha256, &r->has_sha);
		copy(r->rp, sizeof(r->rp), f->requires_python, &r->has_rp);
		copy(r->reason, sizeof(r->reason), f->yanked_reason, &r->has_reason);
		copy(r->version, sizeof(r->version), f->version, NULL);
		r->yanked = f->yanked;
		r->upload_time = f->upload_time;
		r->size = f->size;
	}
	if (s->drop && strstr(f->filename, s->drop))
		return false;
	snprintf(new_url, cap, "%s%s", s->bad_url ? s->bad_url : GW, s->bad_url ? "" : f->filename);
	return true;
}

static int run(enum pypi_format in, const char *doc, const char *url, const char *project, enum pypi_format outf,
	       struct seen *s, char **out, const char **why)
{
	size_t n;

	*out = NULL;
	return pypi_index_rewrite(in, doc, strlen(doc), url, project, outf, keep_cb, s, out, &n, why);
}

/* The test network's pages (conformance/lib/testnet_registries.py), byte for byte in form. */
static const char tn_html[] =
	"<!DOCTYPE html>\n<html><head><title>Links for crgw-beta</title></head><body>\n"
	"<a href=\"../../files/crgw_beta-1.0.0-py3-none-any.whl#sha256="
	"1111111111111111111111111111111111111111111111111111111111111111\">crgw_beta-1.0.0-py3-none-any.whl</a><br>\n"
	"<a href=\"../../files/crgw_beta-1.1.0-py3-none-any.whl#sha256="
	"22222222222222222222222222222222222222222222222222222222222222AA\">crgw_beta-1.1.0-py3-none-any.whl</a><br>\n"
	"</body></html>\n";
static const char tn_json[] =
    "{\"meta\": {\"api-version\": \"1.0\"}, \"name\": \"crgw-beta\", \"files\": ["
    "{\"filename\": \"crgw_beta-1.0.0-py3-none-any.whl\", \"url\": \"../../files/crgw_beta-1.0.0-py3-none-any.whl\", "
    "\"hashes\": {\"sha256\": \"1111111111111111111111111111111111111111111111111111111111111111\"}}, "
    "{\"filename\": \"crgw_beta-1.1.0-py3-none-any.whl\", \"url\": \"../../files/crgw_beta-1.1.0-py3-none-any.whl\", "
    "\"hashes\": {\"sha256\": \"22222222222222222222222222222222222222222222222222222222222222aa\"}}]}\n";
#define TN_URL "https://pypi.test/simple/crgw-beta/"

static bool tn_files(const struct seen *s)
{
	return s->n == 2 && !strcmp(s->r[0].filename, "crgw_beta-1.0.0-py3-none-any.whl") &&
	       !strcmp(s->r[0].url, "https://pypi.test/files/crgw_beta-1.0.0-py3-none-any.whl") &&
	       !strcmp(s->r[0].sha256, "1111111111111111111111111111111111111111111111111111111111111111") &&
	       !strcmp(s->r[0].version, "1.0.0") && !s->r[0].has_rp && !s->r[0].yanked &&
	       !strcmp(s->r[1].url, "https://pypi.test/files/crgw_beta-1.1.0-py3-none-any.whl") &&
	       !strcmp(s->r[1].sha256, "22222222222222222222222222222222222222222222222222222222222222aa") &&
	       !strcmp(s->r[1].version, "1.1.0");
}

/* Re-reads a written page: the files must be the gateway's, with what the first read saw. */
static bool reread(enum pypi_format fmt, const char *doc, const char *project, const struct seen *first,
		   bool want_times)
{
	struct seen s = { 0 };
	char *out = NULL;
	const char *why;
	int err = run(fmt, doc, "http://gw.test:8170/registry/pypi/simple/x/", project, fmt, &s, &out, &why);
	size_t k = 0;
	bool ok = !err;

	free(out);
	for (size_t i = 0; ok && i < first->n; i++) {
		const struct rec *a = &first->r[i];

		if (first->drop && strstr(a->filename, first->drop))
			continue;
		const struct rec *b = &s.r[k++];
		char u[8400];

		snprintf(u, sizeof(u), GW "%s", a->filename);
		ok = k <= s.n && !strcmp(a->filename, b->filename) && !strcmp(u, b->url) &&
		     !strcmp(a->sha256, b->sha256) && a->has_rp == b->has_rp && !strcmp(a->rp, b->rp) &&
		     a->yanked == b->yanked && a->has_reason == b->has_reason && !strcmp(a->reason, b->reason) &&
		     (!want_times || (a->upload_time == b->upload_time && a->size == b->size));
	}
	return ok && k == s.n;
}

static void test_testnet(void)
{
	struct seen s = { 0 };
	char *out;
	const char *why = "x";
	int err;

	err = run(PYPI_HTML, tn_html, TN_URL, "crgw-beta", PYPI_HTML, &s, &out, &why);
	tap_result(!err && !why && tn_files(&s), "test network HTML page read (%d %s)", err, why ? why : "");
	tap_result(out && strstr(out, "<a href=\"" GW "crgw_beta-1.0.0-py3-none-any.whl#sha256=1111111111111111"
				       "111111111111111111111111111111111111111111111111\">"
				       "crgw_beta-1.0.0-py3-none-any.whl</a>"),
		   "HTML to HTML: the gateway's URL with the hash in its fragment");
	tap_result(out && reread(PYPI_HTML, out, "crgw-beta", &s, false),
		   "HTML to HTML: the new page reads back the same");
	free(out);

	memset(&s, 0, sizeof(s));
	err = run(PYPI_JSON, tn_json, TN_URL, "crgw-beta", PYPI_JSON, &s, &out, &why);
	tap_result(!err && tn_files(&s), "test network JSON page read (%d %s)", err, why ? why : "");
	tap_result(out && strstr(out, "\"meta\":{\"api-version\":\"1.1\"}") && strstr(out, "\"name\":\"crgw-beta\"") &&
			   strstr(out, "\"versions\":[\"1.0.0\",\"1.1.0\"]") &&
			   strstr(out, "\"url\":\"" GW "crgw_beta-1.1.0-py3-none-any.whl\"") &&
			   strstr(out, "\"yanked\":false"),
		   "JSON to JSON: meta 1.1, name, versions, the gateway's URLs");
	tap_result(out && reread(PYPI_JSON, out, "crgw-beta", &s, true),
		   "JSON to JSON: the new page reads back the same");
	free(out);

	memset(&s, 0, sizeof(s));
	err = run(PYPI_HTML, tn_html, TN_URL, "crgw-beta", PYPI_JSON, &s, &out, &why);
	tap_result(!err && tn_files(&s) && out && strstr(out, "\"hashes\":{\"sha256\":\"2222") &&
			   reread(PYPI_JSON, out, "crgw-beta", &s, false),
		   "HTML to JSON");
	free(out);
	memset(&s, 0, sizeof(s));
	err = run(PYPI_JSON, tn_json, TN_URL, "crgw-beta", PYPI_HTML, &s, &out, &why);
	tap_result(!err && tn_files(&s) && out && reread(PYPI_HTML, out, "crgw-beta", &s, false), "JSON to HTML");
	free(out);

	/* Dropping one: gone from the page and from "versions". */
	memset(&s, 0, sizeof(s));
	s.drop = "1.1.0";
	err = run(PYPI_HTML, tn_html, TN_URL, "crgw-beta", PYPI_JSON, &s, &out, &why);
	tap_result(!err && s.calls == 2 && out && !strstr(out, "1.1.0") && strstr(out, "\"versions\":[\"1.0.0\"]") &&
			   reread(PYPI_JSON, out, "crgw-beta", &s, false),
		   "a dropped file leaves the page and versions");
	free(out);
	memset(&s, 0, sizeof(s));
	s.drop = "crgw";
	err = run(PYPI_JSON, tn_json, TN_URL, "crgw-beta", PYPI_HTML, &s, &out, &why);
	tap_result(!err && out && !strstr(out, "<a ") && reread(PYPI_HTML, out, "crgw-beta", &s, false),
		   "every file dropped");
	free(out);
}

/* One anchor's page, at `page_url`; the callback must see `want` as the URL. */
static const struct {
	const char *page_url, *head, *href, *want;
} urls[] = {
	{ "https://pypi.test/simple/p/", "", "p-1.0.tar.gz", "https://pypi.test/simple/p/p-1.0.tar.gz" },
	{ "https://pypi.test/simple/p/", "", "../../files/p-1.0.tar.gz", "https://pypi.test/files/p-1.0.tar.gz" },
	{ "https://pypi.test/simple/p/", "", "../../../../../p-1.0.tar.gz", "https://pypi.test/p-1.0.tar.gz" },
	{ "https://pypi.test/simple/p", "", "p-1.0.tar.gz", "https://pypi.test/simple/p-1.0.tar.gz" },
	{ "https://pypi.test/simple/p/", "", "/a/./b/../c/p-1.0.tar.gz", "https://pypi.test/a/c/p-1.0.tar.gz" },
	{ "https://pypi.test/simple/p/", "", "//files.pkgs.example/x/../p-1.0.tar.gz",
	  "https://files.pkgs.example/p-1.0.tar.gz" },
	{ "https://pypi.test/simple/p/", "", "http://files.pkgs.example:8080/a/p-1.0.tar.gz#md5=00",
	  "http://files.pkgs.example:8080/a/p-1.0.tar.gz" },
	{ "https://pypi.test/simple/p/", "", "HTTPS://files.pkgs.example/p-1.0.tar.gz",
	  "https://files.pkgs.example/p-1.0.tar.gz" },
	{ "https://pypi.test/simple/p/?x=1", "", "p-1.0.tar.gz?dl=1&amp;t=2",
	  "https://pypi.test/simple/p/p-1.0.tar.gz?dl=1&t=2" },
	{ "https://pypi.test/simple/p/", "", "p%2D1.0.tar.gz", "https://pypi.test/simple/p/p%2D1.0.tar.gz" },
	{ "https://pypi.test/simple/p/", "", "  p-1.0.tar.gz\n", "https://pypi.test/simple/p/p-1.0.tar.gz" },
	{ "https://pypi.test/simple/p/", "<base href=\"https://files.pkgs.example/pkgs/\">", "p-1.0.tar.gz",
	  "https://files.pkgs.example/pkgs/p-1.0.tar.gz" },
	{ "https://pypi.test/simple/p/", "<BASE HREF='../../mirror/'>", "sub/p-1.0.tar.gz",
	  "https://pypi.test/mirror/sub/p-1.0.tar.gz" },
	/* Only the first <base> counts, wherever the anchors are. */
	{ "https://pypi.test/simple/p/", "<base href=/one/><base href=/two/>", "p-1.0.tar.gz",
	  "https://pypi.test/one/p-1.0.tar.gz" },
};

static void test_urls(void)
{
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		char doc[1024], *out;
		struct seen s = { 0 };
		const char *why;
		int err;

		snprintf(doc, sizeof(doc), "<html><head>%s</head><body><a href=\"%s\">p-1.0.tar.gz</a></body></html>",
			 urls[i].head, urls[i].href);
		err = run(PYPI_HTML, doc, urls[i].page_url, "p", PYPI_HTML, &s, &out, &why);
		tap_result(!err && s.n == 1 && !strcmp(s.r[0].url, urls[i].want) && !strcmp(s.r[0].version, "1.0"),
			   "URL %zu on %s -> %s (%d %s, got %s)", i, urls[i].page_url, urls[i].want, err,
			   err ? why : "", s.n ? s.r[0].url : "");
		free(out);
	}
	/* JSON URLs resolve against the page's URL too. */
	struct seen s = { 0 };
	char *out;
	const char *why;
	int err = run(PYPI_JSON,
		      "{\"meta\":{\"api-version\":\"1.3\"},\"name\":\"P\",\"files\":[{\"filename\":\"p-1.0.zip\","
		      "\"url\":\"/f/p-1.0.zip\",\"hashes\":{}}]}",
		      "http://pypi.test:8080/simple/p/", "p", PYPI_JSON, &s, &out, &why);

	tap_result(!err && s.n == 1 && !strcmp(s.r[0].url, "http://pypi.test:8080/f/p-1.0.zip") && !s.r[0].has_sha,
		   "JSON: a relative URL, an unnormalized name, api-version 1.3");
	free(out);
}

static void test_attributes(void)
{
	static const char page[] =
		"<!doctype html><HTML><head><meta name=\"pypi:repository-version\" content=\"1.1\">"
		"<script>var s = '<a href=\"x\">nothing</a>';</script><!-- <a href=y>not a file</a> -->"
		"<title>Links for <a></title></head><body><h1>p</h1>\n"
		"<A HREF='p-1.0.tar.gz#SHA256=ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789' "
		"data-requires-python=\"&gt;=3.8,&lt;4&#44;!=3.9.*\" data-dist-info-metadata=\"sha256=00\" "
		"data-core-metadata=true data-gpg-sig=true>p-1.0.tar.gz</A><br/>\n"
		"<a href=p-1.1.tar.gz data-yanked>p&#45;1.1&#x2e;tar.gz</a>\n"
		"<a href=\"p-1.2.tar.gz\" data-yanked=\"\">  p-1.2.tar.gz </a>\n"
		"<a href=\"p-1.3.tar.gz\" data-yanked=\"broken &amp; &quot;bad&quot; &lt;b&gt;\tsee\nnotes\">"
		"p-1.3.tar.gz</a>\n"
		"<a name=\"top\">an anchor without href is not a file</a>\n"
		"<a href=\"p-2.0.tar.gz\" data-requires-python='\"&apos;'><b>p-2.0</b>.tar.gz</a>\n"
		"</body></html>";
	struct seen s = { 0 };
	char *out, *html;
	const char *why;
	int err = run(PYPI_HTML, page, "https://pypi.test/simple/p/", "p", PYPI_HTML, &s, &out, &why);

	tap_result(!err && s.n == 5, "attributes page read: five files (%d %s, %zu)", err, err ? why : "", s.n);
	if (err || s.n != 5)
		return;
	tap_result(!strcmp(s.r[0].sha256, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"),
		   "a #SHA256= fragment, lower-cased");
	tap_result(!strcmp(s.r[0].rp, ">=3.8,<4,!=3.9.*") && !s.r[0].yanked, "requires-python unescaped");
	tap_result(s.r[1].yanked && !s.r[1].has_reason && !strcmp(s.r[1].filename, "p-1.1.tar.gz"),
		   "data-yanked without a value; numeric references in text");
	tap_result(s.r[2].yanked && !s.r[2].has_reason && !strcmp(s.r[2].filename, "p-1.2.tar.gz"),
		   "data-yanked=\"\"; anchor text trimmed");
	tap_result(s.r[3].yanked && !strcmp(s.r[3].reason, "broken & \"bad\" <b> see notes"),
		   "a yank reason unescaped, control characters made spaces");
	tap_result(!strcmp(s.r[4].filename, "p-2.0.tar.gz") && !strcmp(s.r[4].rp, "\"'"),
		   "tags inside an anchor's text; &apos;");
	html = out;
	tap_result(strstr(html, "data-requires-python=\"&gt;=3.8,&lt;4,!=3.9.*\"") &&
			   strstr(html, "data-yanked=\"broken &amp; &quot;bad&quot; &lt;b&gt; see notes\"") &&
			   strstr(html, "data-requires-python=\"&quot;&#39;\"") && !strstr(html, "metadata") &&
			   !strstr(html, "gpg") && reread(PYPI_HTML, html, "p", &s, false),
		   "HTML written escaped, with no metadata or signature attributes");
	free(out);
	err = run(PYPI_HTML, page, "https://pypi.test/simple/p/", "p", PYPI_JSON, &s, &out, &why);
	tap_result(!err && out && strstr(out, "\"requires-python\":\">=3.8,<4,!=3.9.*\"") &&
		       strstr(out, "\"yanked\":\"broken & \\\"bad\\\" <b> see notes\"") &&
		       strstr(out, "\"yanked\":true") && !strstr(out, "metadata") && !strstr(out, "upload-time"),
		   "the same in JSON");
	free(out);

	static const char jpage[] =
	    "{\"meta\":{\"api-version\":\"1.1\",\"_last-serial\":3},\"name\":\"p\",\"versions\":[\"9\"],\"files\":["
	    "{\"filename\":\"p-1.0-py3-none-any.whl\",\"url\":\"https://files.pkgs.example/p-1.0-py3-none-any.whl\","
	    "\"hashes\":{\"sha256\":\"ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789\",\"md5\":\"x\"}"
	    ","
	    "\"requires-python\":\">=3.8\",\"dist-info-metadata\":{\"sha256\":\"00\"},\"core-metadata\":true,"
	    "\"data-dist-info-metadata\":true,\"gpg-sig\":false,\"yanked\":\"no <good>\",\"size\":1234,"
	    "\"upload-time\":\"2024-01-02T03:04:05.123456Z\"},"
	    "{\"filename\":\"p-1.1.tar.gz\",\"url\":\"https://files.pkgs.example/p-1.1.tar.gz\",\"hashes\":{},"
	    "\"requires-python\":null,\"yanked\":true,\"upload-time\":\"2024-02-29T00:00:00+00:00\"}]}";

	memset(&s, 0, sizeof(s));
	err = run(PYPI_JSON, jpage, "https://pypi.test/simple/p/", "p", PYPI_JSON, &s, &out, &why);
	tap_result(!err && s.n == 2 && s.r[0].upload_time == 1704164645 && s.r[0].size == 1234 &&
		       !strcmp(s.r[0].reason, "no <good>") && !strcmp(s.r[0].version, "1.0") &&
		       s.r[1].upload_time == 1709164800 && s.r[1].size == -1 && s.r[1].yanked && !s.r[1].has_reason &&
		       !s.r[1].has_rp,
		   "JSON: upload-time, size, yanked string and true (%d %s)", err, err ? why : "");
	tap_result(out && strstr(out, "\"upload-time\":\"2024-01-02T03:04:05Z\"") && strstr(out, "\"size\":1234") &&
			   strstr(out, "\"versions\":[\"1.0\",\"1.1\"]") && !strstr(out, "metadata") &&
			   !strstr(out, "gpg") && !strstr(out, "md5") && !strstr(out, "serial") &&
			   reread(PYPI_JSON, out, "p", &s, true),
		   "JSON written: times, sizes, versions recomputed, metadata dropped");
	free(out);
	err = run(PYPI_JSON, jpage, "https://pypi.test/simple/p/", "p", PYPI_HTML, &s, &out, &why);
	tap_result(!err && out && strstr(out, "data-yanked=\"no &lt;good&gt;\"") && strstr(out, "data-yanked=\"\"") &&
			   !strstr(out, "metadata"),
		   "JSON to HTML: yanked both ways");
	free(out);
}

/* Refused pages: -EINVAL (or the error given) and no callback. */
static const struct {
	int fmt;
	const char *doc;
	int err;
} bad[] = {
    {PYPI_HTML, "<a href=\"p-1.0.tar.gz\">p-1.0.tar.gz<a href=\"p-2.0.tar.gz\">p-2.0.tar.gz</a></a>", -EINVAL},
    {PYPI_HTML, "<a href=\"p-1.0.tar.gz\">p-1.0.tar.gz", -EINVAL},
    {PYPI_HTML, "<a href=\"p-1.0.tar.gz\">p-1.0.tar.gz</a><!-- <a href=x>", -EINVAL},
    {PYPI_HTML, "<a href=\"p-1.0.tar.gz>p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=p-1.0.tar.gz", -EINVAL},
    {PYPI_HTML, "<a href=\"p-1.0.tar.gz\" href=\"q-1.0.tar.gz\">p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"p-1.0.tar.gz#sha256=abc\">p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"p-1.0.tar.gz#sha256=\">p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"evil-1.0.tar.gz\">p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"p-1.0.tar.gz/\">p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"p-1.0.tar.gz?x=/y\">p-1.0.tar.gz</a>", 0}, /* the query is not the path */
    {PYPI_HTML, "<a href=\"javascript:p-1.0.tar.gz\">p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"file:///p-1.0.tar.gz\">p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"https://u:pw@files.pkgs.example/p-1.0.tar.gz\">p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"https:///p-1.0.tar.gz\">p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"x\\p-1.0.tar.gz\">p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"a b/p-1.0.tar.gz\">p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"p-1.0.tar.gz&#0;\">p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"p-1.0.tar.gz\">p-1.0.tar.gz&#xD800;</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"p%zz.tar.gz\">p%zz.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"..\">..</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"p 1.tar.gz\">p 1.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"\"></a>", -EINVAL},
    {PYPI_HTML, "<a href=\"p-1.0.tar.gz\" data-requires-python=\"&gt;=3&#10;\">p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<a href=\"p-1.0.tar.gz\" data-requires-python=\"\xff\">p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<meta name=\"pypi:repository-version\" content=\"2.0\"><a href=p-1.0.tar.gz>p-1.0.tar.gz</a>",
     -EINVAL},
    {PYPI_HTML, "<base href=\"ftp://files.pkgs.example/\"><a href=p-1.0.tar.gz>p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_HTML, "<script><a href=p-1.0.tar.gz>p-1.0.tar.gz</a>", -EINVAL},
    {PYPI_JSON, "not json", -EINVAL},
    {PYPI_JSON, "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"name\":\"p\",\"files\":[]}", -EINVAL},
    {PYPI_JSON, "{\"meta\":{\"api-version\":\"2.0\"},\"name\":\"p\",\"files\":[]}", -EINVAL},
    {PYPI_JSON, "{\"meta\":{},\"name\":\"p\",\"files\":[]}", -EINVAL},
    {PYPI_JSON, "{\"name\":\"p\",\"files\":[]}", -EINVAL},
    {PYPI_JSON, "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"q\",\"files\":[]}", -EINVAL},
    {PYPI_JSON, "{\"meta\":{\"api-version\":\"1.0\"},\"files\":[]}", -EINVAL},
    {PYPI_JSON, "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"files\":{}}", -EINVAL},
    {PYPI_JSON, "[]", -EINVAL},
    {PYPI_JSON, "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"files\":[1]}", -EINVAL},
    {PYPI_JSON, "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"files\":[{\"url\":\"p-1.0.zip\"}]}", -EINVAL},
    {PYPI_JSON, "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"files\":[{\"filename\":\"p-1.0.zip\"}]}",
     -EINVAL},
    {PYPI_JSON,
     "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"files\":[{\"filename\":\"p-1.0.zip\","
     "\"url\":\"p-1.0.zip\",\"hashes\":{\"sha256\":\"00\"}}]}",
     -EINVAL},
    {PYPI_JSON,
     "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"files\":[{\"filename\":\"p-1.0.zip\","
     "\"url\":\"p-1.0.zip#sha256=1111111111111111111111111111111111111111111111111111111111111111\","
     "\"hashes\":{\"sha256\":\"2222222222222222222222222222222222222222222222222222222222222222\"}}]}",
     -EINVAL},
    {PYPI_JSON,
     "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"files\":[{\"filename\":\"p-1.0.zip\","
     "\"url\":\"p-1.0.zip\",\"hashes\":[]}]}",
     -EINVAL},
    {PYPI_JSON,
     "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"files\":[{\"filename\":\"p-1.0.zip\","
     "\"url\":\"p-1.0.zip\",\"yanked\":1}]}",
     -EINVAL},
    {PYPI_JSON,
     "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"files\":[{\"filename\":\"p-1.0.zip\","
     "\"url\":\"p-1.0.zip\",\"upload-time\":\"2024-02-30T00:00:00Z\"}]}",
     -EINVAL},
    {PYPI_JSON,
     "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"files\":[{\"filename\":\"p-1.0.zip\","
     "\"url\":\"p-1.0.zip\",\"upload-time\":\"2024-01-01T00:00:00+01:00\"}]}",
     -EINVAL},
    {PYPI_JSON,
     "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"files\":[{\"filename\":\"p-1.0.zip\","
     "\"url\":\"p-1.0.zip\",\"size\":-1}]}",
     -EINVAL},
    {PYPI_JSON,
     "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"files\":[{\"filename\":\"p-1.0.zip\","
     "\"url\":\"p-1.0.zip\",\"requires-python\":3}]}",
     -EINVAL},
    {PYPI_JSON,
     "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"files\":[{\"filename\":\"p\\u0000.zip\","
     "\"url\":\"p-1.0.zip\"}]}",
     -EINVAL},
    {PYPI_JSON,
     "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"files\":[{\"filename\":\"p-1.0.zip\","
     "\"url\":\"../x/p-1.0.zip\"},{\"filename\":\"../p-1.0.zip\",\"url\":\"p-1.0.zip\"}]}",
     -EINVAL},
};

static void test_bad(void)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct seen s = { 0 };
		char *out = (char *)"unset";
		const char *why = NULL;
		int err = run(bad[i].fmt, bad[i].doc, "https://pypi.test/simple/p/", "p", PYPI_HTML, &s, &out, &why);

		tap_result(err == bad[i].err && (err ? why && !out && s.calls == 0 : !why && out),
			   "refused %zu: %s -> %d (%s)", i, bad[i].doc, err, why ? why : "");
		free(err ? NULL : out);
	}
}

static void test_bounds(void)
{
	struct seen s = { 0 };
	char *out, doc[1024], name[300];
	const char *why;
	size_t n;
	int err;

	err = pypi_index_rewrite(PYPI_HTML, "", (size_t)PYPI_MAX_DOC + 1, "https://pypi.test/simple/p/", "p", PYPI_HTML,
				 keep_cb, &s, &out, &n, &why);
	tap_result(err == -E2BIG && why && !out, "a page over 64 MiB");
	memset(name, 'p', 256);
	name[256] = '\0';
	snprintf(doc, sizeof(doc), "<a href=\"%s\">%s</a>", name, name);
	err = run(PYPI_HTML, doc, "https://pypi.test/simple/p/", "p", PYPI_HTML, &s, &out, &why);
	tap_result(err == -E2BIG && s.calls == 0, "a file name over 255 bytes");
	err = run(PYPI_HTML, "", "pypi.test/simple/p/", "p", PYPI_HTML, &s, &out, &why);
	tap_result(err == -EINVAL, "a relative page URL");
	err = run(PYPI_HTML, "", "https://pypi.test/simple/p/", "P", PYPI_HTML, &s, &out, &why);
	tap_result(err == -EINVAL, "a project name not normalized");
	err = run(PYPI_HTML, "", "https://pypi.test/simple/p/", "p", PYPI_JSON, &s, &out, &why);
	tap_result(!err && out && !strcmp(out, "{\"meta\":{\"api-version\":\"1.1\"},\"name\":\"p\",\"versions\":[],"
					       "\"files\":[]}\n"),
		   "an empty page");
	free(out);

	/* 100000 files pass, 100001 do not. */
	for (int extra = 0; extra <= 1; extra++) {
		size_t cnt = PYPI_MAX_FILES + (size_t)extra, cap = cnt * 40 + 100, o = 0;
		char *big = malloc(cap);
		struct seen k = { 0 };

		o += (size_t)snprintf(big + o, cap - o,
				      "{\"meta\":{\"api-version\":\"1.0\"},\"name\":\"p\",\"files\":[");
		for (size_t i = 0; i < cnt; i++)
			o += (size_t)snprintf(big + o, cap - o, "%s{\"filename\":\"p\",\"url\":\"p\"}", i ? "," : "");
		o += (size_t)snprintf(big + o, cap - o, "]}");
		k.drop = "p";
		err = pypi_index_rewrite(PYPI_JSON, big, o, "https://pypi.test/simple/p/", "p", PYPI_JSON, keep_cb, &k,
					 &out, &n, &why);
		tap_result(extra ? err == -E2BIG && k.calls == 0 : !err && k.calls == cnt, "%zu files", cnt);
		free(out);
		free(big);
	}

	/* A long <base> under many short hrefs: the resolved URLs are bounded in total, not only each. */
	{
		size_t cnt = 20000, cap = cnt * 32 + 9000, o = 0;
		char *big = malloc(cap);
		struct seen k = { 0 };

		o += (size_t)snprintf(big + o, cap - o, "<base href=\"/");
		memset(big + o, 'b', 8000);
		o += 8000;
		o += (size_t)snprintf(big + o, cap - o, "/\">");
		for (size_t i = 0; i < cnt; i++)
			o += (size_t)snprintf(big + o, cap - o, "<a href=p>p</a>");
		err = pypi_index_rewrite(PYPI_HTML, big, o, "https://pypi.test/simple/p/", "p", PYPI_JSON, keep_cb, &k,
					 &out, &n, &why);
		tap_result(err == -E2BIG && k.calls == 0 && !out, "resolved URLs bounded in total (%s)", why);
		free(big);
	}

	/* A callback's URL is checked. */
	static const char *const bad_urls[] = { "", "http://gw.test/a b", "http://gw.test/x#y", "http://gw.test/\x01" };

	for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
		memset(&s, 0, sizeof(s));
		s.bad_url = bad_urls[i];
		err = run(PYPI_HTML, tn_html, TN_URL, "crgw-beta", PYPI_HTML, &s, &out, &why);
		tap_result(err == -EINVAL && !out && why, "a callback's bad URL %zu refused", i);
	}
}

static const struct {
	const char *accept;
	int want;
} accepts[] = {
	{ NULL, PYPI_HTML },
	{ "", PYPI_HTML },
	{ "*/*", PYPI_HTML },
	{ "text/html", PYPI_HTML },
	{ "application/vnd.pypi.simple.v1+json", PYPI_JSON },
	{ "application/vnd.pypi.simple.latest+json", PYPI_JSON },
	{ "application/vnd.pypi.simple.v1+html", PYPI_HTML },
	{ "application/vnd.pypi.simple.latest+html", PYPI_HTML },
	/* What pip sends. */
	{ "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01",
	  PYPI_JSON },
	{ "text/html;q=0.9, application/vnd.pypi.simple.v1+json;q=0.5", PYPI_HTML },
	{ "text/html;q=0.4, application/vnd.pypi.simple.v1+json;q=0.5", PYPI_JSON },
	{ "APPLICATION/VND.PYPI.SIMPLE.V1+JSON", PYPI_JSON },
	{ "application/vnd.pypi.simple.v1+json, text/html", PYPI_HTML }, /* a tie goes to HTML */
	{ "application/vnd.pypi.simple.v1+json, */*", PYPI_JSON }, /* the more specific match wins a tie */
	{ "application/*", PYPI_HTML },
	{ "application/*;q=0.5, application/vnd.pypi.simple.v1+html;q=0", PYPI_HTML }, /* latest+html still matches */
	{ "application/*;q=0.5, application/vnd.pypi.simple.v1+html;q=0, application/vnd.pypi.simple.latest+html;q=0",
	  PYPI_JSON },
	{ "text/*", PYPI_HTML },
	{ "application/json", -1 },
	{ "image/png, text/plain", -1 },
	{ "text/html;q=0", -1 },
	{ "*/*;q=0", -1 },
	{ "*/*;q=0.1, text/html;q=0", PYPI_HTML }, /* the +html types still match the wildcard */
	{ "*/*;q=0.1, text/html;q=0, application/*;q=0", -1 },
	{ "*/*;q=0.1, text/*;q=0, application/vnd.pypi.simple.v1+html;q=0, application/vnd.pypi.simple.latest+html;q=0",
	  PYPI_JSON },
	{ "*/*, application/vnd.pypi.simple.v1+json;q=0", PYPI_HTML },
	{ "text/html;q=0, application/vnd.pypi.simple.v1+json;q=0.001", PYPI_JSON },
	{ "application/vnd.pypi.simple.v1+json;charset=\"utf-8, or so\";q=0.5, text/html;q=0.4", PYPI_JSON },
	{ "text/html;level=1;q=0.2;ext=1, application/vnd.pypi.simple.v1+json ; q=0.3", PYPI_JSON },
	{ "text/html;q=2, application/vnd.pypi.simple.v1+json", PYPI_JSON }, /* q=2 is unreadable: skipped */
	{ "garbage", PYPI_HTML }, /* nothing readable: no preference */
	{ ",,, ,", PYPI_HTML },
	{ "text/html;q=0.5x", PYPI_HTML },
	{ "text/html;q=, application/json", -1 },
};

static const struct {
	const char *file, *project, *version;
} versions[] = {
	{ "crgw_beta-1.1.0-py3-none-any.whl", "crgw-beta", "1.1.0" },
	{ "crgw_gamma-0.1.0-py3-none-any.whl", "crgw-gamma", "0.1.0" },
	{ "Crgw.Gamma-0.1.0.tar.gz", "crgw-gamma", "0.1.0" },
	{ "foo-1.0-1-py2.py3-none-any.whl", "foo", "1.0" }, /* build tag */
	{ "foo-1.0-1abc-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "foo", "1.0" },
	{ "foo-1.0-abc-py3-none-any.whl", "foo", "" }, /* a build tag starts with a digit */
	{ "foo-1.0-py3-none.whl", "foo", "" },
	{ "foo-1.0-1-2-py3-none-any.whl", "foo", "" },
	{ "foo--1.0-py3-none-any.whl", "foo", "" },
	{ "bar-1.0-py3-none-any.whl", "foo", "" },
	{ "Foo_Bar-2.0rc1-py3-none-any.whl", "foo-bar", "2.0rc1" },
	{ "foo-bar-1.0.tar.gz", "foo-bar", "1.0" }, /* hyphens in an sdist's name */
	{ "foo-bar-1.0.tar.gz", "foo", "" }, /* not foo's */
	{ "foo.bar-1.0.post1.zip", "foo-bar", "1.0.post1" },
	{ "Foo__Bar-1.0.tar.bz2", "foo-bar", "1.0" },
	{ "foo-bar-baz-1!2.0+local.1.tar.gz", "foo-bar-baz", "1!2.0+local.1" },
	{ "foo-v1.0.tar.gz", "foo", "v1.0" },
	{ "foo-1.0-1.tar.gz", "foo", "1.0-1" },
	{ "foo-1.0.TAR.GZ", "foo", "1.0" },
	{ "foo-1.0.exe", "foo", "" },
	{ "foo-1.0.egg", "foo", "" },
	{ "foo-.tar.gz", "foo", "" },
	{ "foo.tar.gz", "foo", "" },
	{ "foo-1.0", "foo", "" },
	{ "-1.0.tar.gz", "foo", "" },
	{ ".whl", "foo", "" },
};

static const struct {
	const char *name, *norm;
	int err;
} names[] = {
	{ "Crgw.Gamma", "crgw-gamma", 0 }, { "foo__bar", "foo-bar", 0 }, { "A-_.b", "a-b", 0 }, { "x", "x", 0 },
	{ "Django", "django", 0 }, { "zope.interface", "zope-interface", 0 }, { "a1", "a1", 0 },
	{ "", NULL, -EINVAL }, { "-a", NULL, -EINVAL }, { "a-", NULL, -EINVAL }, { "a b", NULL, -EINVAL },
	{ "a/b", NULL, -EINVAL }, { "caf\xc3\xa9", NULL, -EINVAL }, { ".a", NULL, -EINVAL },
};

static void test_tables(void)
{
	char out[128], small[4];

	for (size_t i = 0; i < sizeof(accepts) / sizeof(accepts[0]); i++) {
		const char *a = accepts[i].accept;
		int got = pypi_accept(a, a ? strlen(a) : 0);

		tap_result(got == accepts[i].want, "Accept \"%s\" -> %d (got %d)", a ? a : "(none)", accepts[i].want,
			   got);
	}
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		int err = pypi_filename_version(versions[i].file, versions[i].project, out, sizeof(out));

		tap_result(!err && !strcmp(out, versions[i].version), "%s for %s -> \"%s\" (got \"%s\")",
			   versions[i].file, versions[i].project, versions[i].version, out);
	}
	tap_result(pypi_filename_version("foo-1.0.0.tar.gz", "foo", small, sizeof(small)) == -ENOSPC,
		   "a version longer than the room");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int err = pypi_normalize(names[i].name, strlen(names[i].name), out, sizeof(out));

		tap_result(err == names[i].err && (err || !strcmp(out, names[i].norm)), "normalize \"%s\" -> %s",
			   names[i].name, names[i].norm ? names[i].norm : "refused");
	}
	tap_result(pypi_normalize("abcd", 4, small, sizeof(small)) == -ENOSPC, "normalize into too little room");
}

/* ---- the test network's generator ---- */

static int sh(const char *cmd)
{
	int st = system(cmd);

	return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool file_sha256(const char *path, char hex[65])
{
	size_t n;
	char *data = tap_read_file(path, &n);
	unsigned char md[32];
	unsigned mdlen = 0;
	bool ok = data && EVP_Digest(data, n, md, &mdlen, EVP_sha256(), NULL) && mdlen == 32;

	for (unsigned i = 0; ok && i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	free(data);
	return ok;
}

static void test_generator(const char *srcdir)
{
	static const char *const projects[] = { "crgw-alpha", "crgw-beta", "crgw-gamma" };
	struct seen pages[3] = { 0 };
	char tmp[] = "/tmp/crgw-pypi-index-XXXXXX", cmd[2048], path[1024], line[512];
	FILE *req;

	if (!srcdir || sh("python3 -c '' 2>/dev/null") != 0 || !mkdtemp(tmp)) {
		tap_result(true, "the test network's pages # SKIP no source dir or python3");
		return;
	}
	snprintf(cmd, sizeof(cmd), "python3 '%s/conformance/lib/testnet_registries.py' pypi '%s' pypi.test >/dev/null",
		 srcdir, tmp);
	if (sh(cmd) != 0) {
		tap_result(false, "the test network's generator ran");
		goto out;
	}
	for (size_t p = 0; p < 3; p++) {
		char url[256], *doc[2];
		size_t len[2];

		snprintf(url, sizeof(url), "https://pypi.test/simple/%s/", projects[p]);
		for (int f = 0; f < 2; f++) {
			snprintf(path, sizeof(path), "%s/www/simple/%s/index.%s", tmp, projects[p],
				 f ? "json" : "html");
			doc[f] = tap_read_file(path, &len[f]);
		}
		for (int in = 0; in < 2; in++) {
			for (int outf = 0; outf < 2; outf++) {
				struct seen s = { 0 };
				char *out = NULL;
				const char *why = NULL;
				size_t n;
				bool ok;
				int err = doc[in] ? pypi_index_rewrite(in, doc[in], len[in], url, projects[p], outf,
								       keep_cb, &s, &out, &n, &why)
						  : -ENOENT;

				ok = !err && s.n >= 1 && reread(outf, out, projects[p], &s, false);
				for (size_t i = 0; ok && i < s.n; i++) {
					char want[512], hex[65];

					snprintf(want, sizeof(want), "https://pypi.test/files/%s", s.r[i].filename);
					snprintf(path, sizeof(path), "%s/www/files/%s", tmp, s.r[i].filename);
					ok = !strcmp(s.r[i].url, want) && s.r[i].version[0] && file_sha256(path, hex) &&
					     !strcmp(hex, s.r[i].sha256);
				}
				tap_result(
				    ok, "generator's %s page (%s to %s): URLs, versions, hashes of the wheels (%d %s)",
				    projects[p], in ? "JSON" : "HTML", outf ? "JSON" : "HTML", err, why ? why : "");
				if (in == outf)
					pages[p] = s;
				free(out);
			}
		}
		free(doc[0]);
		free(doc[1]);
	}
	/* Every pin in the generator's requirements.txt is a file the pages show, by version and hash. */
	snprintf(path, sizeof(path), "%s/client/requirements.txt", tmp);
	req = fopen(path, "r");
	tap_result(req != NULL, "the generator's requirements.txt");
	while (req && fgets(line, sizeof(line), req)) {
		char *eq = strstr(line, "=="), *sp = strchr(line, ' '), *h = strstr(line, "sha256:"), norm[64];
		bool found = false;

		if (line[0] == '#' || !eq || !sp || !h)
			continue;
		*sp = '\0';
		h[71] = '\0';
		if (pypi_normalize(line, (size_t)(eq - line), norm, sizeof(norm)))
			norm[0] = '\0';
		for (size_t p = 0; p < 3; p++)
			for (size_t i = 0; !strcmp(norm, projects[p]) && i < pages[p].n; i++)
				found |= !strcmp(pages[p].r[i].version, eq + 2) && !strcmp(pages[p].r[i].sha256, h + 7);
		tap_result(found, "pin %s==%s is on %s's page with its hash", norm, eq + 2, norm);
	}
	if (req)
		fclose(req);
out:
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	sh(cmd);
}

int main(int argc, char **argv)
{
	test_testnet();
	test_urls();
	test_attributes();
	test_bad();
	test_bounds();
	test_tables();
	test_generator(argc > 1 ? argv[1] : NULL);
	return tap_done();
}
