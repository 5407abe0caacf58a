/* SPDX-License-Identifier: Apache-2.0 */
/*
 * /registry/pypi/<host>/<index path>/<project>/[<file name>]: Python's simple repository API. A project's
 * page (PEP 503 HTML or PEP 691 JSON, asked for as JSON so that upload times come along) is fetched from
 * the index host and rewritten: every file's URL becomes the gateway's page URL plus the file's name,
 * files the requirements' hashes do not name are dropped in deny_unknown mode, files younger than
 * min_release_age are hidden. A file is fetched by that name: the gateway reads the project's page again
 * (from its store) for the file's real URL, its sha256 and its upload time, so the sandbox can never
 * choose what a file is checked against, and streams it verified against that sha256.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pypi_index.h"
#include "registry.h"
#include "sandbox.h"

/* What the index is asked for: JSON first (it carries upload times), HTML otherwise. */
#define UPSTREAM_ACCEPT "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"

struct pypi_req {
	char project[PYPI_MAX_NAME];
	char page_path[MED_PATH_BUF]; /* the page's path on the index host, ending in '/' */
	char filename[PYPI_MAX_FILENAME + 1];
	int out_fmt;
	/* the file, as the page describes it */
	bool found;
	char url[PYPI_MAX_URL];
	char sha256[65];
	char version[128];
	long long upload_time;
	size_t kept, unlisted, too_new, foreign;
	struct med_request *r;
};

static bool is_file_name(const char *name, size_t len)
{
	static const char *const ext[] = { ".whl", ".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz", ".tar" };

	for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
		size_t n = strlen(ext[i]);

		if (len > n && !strcasecmp(name + len - n, ext[i]))
			return true;
	}
	return false;
}

/* Whether the requirements name this sha256 for the project. */
static bool hash_listed(const struct crgw_registry_rule *rule, const char *project, const char *sha256)
{
	const struct crgw_policy_artifact *a;
	size_t n = crgw_policy_registry_artifacts(rule, project, &a);

	for (size_t i = 0; i < n; i++)
		if (!strncmp(a[i].integrity, "sha256:", 7) && !strcasecmp(a[i].integrity + 7, sha256))
			return true;
	return false;
}

/* The host of an absolute https URL into `host` (lowercased); false for anything else. */
static bool url_host(const char *url, char *host, size_t cap)
{
	const char *h, *end;
	size_t len;

	if (strncasecmp(url, "https://", 8))
		return false;
	h = url + 8;
	end = h + strcspn(h, "/?#");
	len = (size_t)(end - h);
	if (!len || len >= cap || memchr(h, '@', len) || memchr(h, ':', len))
		return false;
	for (size_t i = 0; i < len; i++)
		host[i] = (char)((h[i] >= 'A' && h[i] <= 'Z') ? h[i] + 32 : h[i]);
	host[len] = '\0';
	return true;
}

static bool too_new(const struct crgw_registry_rule *rule, long long upload_time)
{
	/* Without an upload time the age cannot be judged: held back (fail closed). */
	return rule->min_release_age &&
	       (upload_time < 0 || (long long)time(NULL) - upload_time < rule->min_release_age);
}

/* ---- the project's page ----------------------------------------------------------------------------- */

static bool judge_file(void *arg, const struct pypi_file *f, char *new_url, size_t cap)
{
	struct pypi_req *q = arg;
	struct med_request *r = q->r;
	const struct crgw_registry_rule *rule = ((struct reg_req *)r->handler_state)->rule;
	char host[254], page[REG_URL_MAX];

	if (!url_host(f->url, host, sizeof(host)) || !crgw_policy_registry_host_allowed(rule, host)) {
		q->foreign++;
		return false; /* a file elsewhere than an allowed host is never followed */
	}
	if (rule->mode == CRGW_LOCKFILE_DENY_UNKNOWN && (!f->sha256 || !hash_listed(rule, q->project, f->sha256))) {
		q->unlisted++;
		return false;
	}
	if (too_new(rule, f->upload_time)) {
		q->too_new++;
		return false;
	}
	reg_gateway_url(r, page, sizeof(page), r->host.text, q->page_path);
	if ((size_t)snprintf(new_url, cap, "%s%s", page, f->filename) >= cap)
		return false;
	q->kept++;
	return true;
}

static enum pypi_format upstream_format(const struct reg_req *g)
{
	return strstr(g->content_type, "json") ? PYPI_JSON : PYPI_HTML;
}

static void on_page(struct med_request *r, long status, const char *doc, size_t len)
{
	struct reg_req *g = r->handler_state;
	struct pypi_req *q = g->own;
	char url[REG_URL_MAX], detail[200];
	const char *why = NULL;
	char *out = NULL;
	size_t out_len = 0;
	int rc;

	if (status != 200) {
		reg_answer_status(r, status);
		return;
	}
	snprintf(url, sizeof(url), "https://%s%s", r->host.text, q->page_path);
	rc = pypi_index_rewrite(upstream_format(g), doc, len, url, q->project, (enum pypi_format)q->out_fmt, judge_file, q,
				&out, &out_len, &why);
	if (rc) {
		snprintf(detail, sizeof(detail), "the upstream's page is refused: %s", why ? why : strerror(-rc));
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return;
	}
	snprintf(detail, sizeof(detail), "files kept=%zu not_in_lockfile=%zu too_new=%zu other_hosts=%zu", q->kept,
		 q->unlisted, q->too_new, q->foreign);
	if (med_audit_allow(r, detail))
		reg_answer_doc(r, q->out_fmt == PYPI_JSON ? "application/vnd.pypi.simple.v1+json" : "text/html; charset=utf-8",
			       out, out_len);
	free(out);
}

/* ---- a file ----------------------------------------------------------------------------------------- */

static bool find_file(void *arg, const struct pypi_file *f, char *new_url, size_t cap)
{
	struct pypi_req *q = arg;

	if (q->found || strcmp(f->filename, q->filename))
		return false;
	q->found = true;
	snprintf(q->url, sizeof(q->url), "%s", f->url);
	snprintf(q->sha256, sizeof(q->sha256), "%s", f->sha256 ? f->sha256 : "");
	snprintf(q->version, sizeof(q->version), "%s", f->version);
	q->upload_time = f->upload_time;
	snprintf(new_url, cap, "%s", f->url);
	return true;
}

static void on_file_page(struct med_request *r, long status, const char *doc, size_t len)
{
	struct reg_req *g = r->handler_state;
	struct pypi_req *q = g->own;
	char url[REG_URL_MAX], detail[700], host[254];
	const char *why = NULL;
	struct reg_want want;
	char *out = NULL;
	size_t out_len;
	int rc;

	if (status != 200) {
		reg_answer_status(r, status);
		return;
	}
	snprintf(url, sizeof(url), "https://%s%s", r->host.text, q->page_path);
	rc = pypi_index_rewrite(upstream_format(g), doc, len, url, q->project, PYPI_JSON, find_file, q, &out, &out_len, &why);
	free(out);
	if (rc) {
		snprintf(detail, sizeof(detail), "the upstream's page is refused: %s", why ? why : strerror(-rc));
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return;
	}
	if (!q->found) {
		med_refuse(r, 404, "Not Found", CRGW_REASON_REQUEST_INVALID, "the project's page lists no such file");
		return;
	}
	AUDIT_SET(r->version, q->version);
	if (!url_host(q->url, host, sizeof(host)) || !crgw_policy_registry_host_allowed(g->rule, host)) {
		snprintf(detail, sizeof(detail), "the page puts %s on a host outside registries.pip.allowed_hosts", q->filename);
		med_refuse(r, 403, "Forbidden", CRGW_REASON_HOST_NOT_ALLOWED, detail);
		return;
	}
	if (!q->sha256[0]) {
		snprintf(detail, sizeof(detail), "the index gives %s no sha256 to check it against", q->filename);
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_INTEGRITY_MISMATCH, detail);
		return;
	}
	if (g->rule->mode == CRGW_LOCKFILE_OFF || !hash_listed(g->rule, q->project, q->sha256)) {
		snprintf(detail, sizeof(detail), "%s (%s) is not in the requirements' hashes", q->filename, q->project);
		if (!reg_unlisted(r, detail))
			return;
	}
	if (too_new(g->rule, q->upload_time)) {
		if (q->upload_time < 0) {
			med_refuse(r, 403, "Forbidden", CRGW_REASON_RELEASE_TOO_NEW,
				   "the index gives no upload time, so registries.pip.min_release_age cannot be judged");
			return;
		}
		if (reg_too_new(r, q->upload_time))
			return;
	}
	snprintf(detail, sizeof(detail), "sha256:%s", q->sha256);
	if (!reg_want_parse(detail, strlen(detail), &want)) {
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_INTEGRITY_MISMATCH, "the index's sha256 is malformed");
		return;
	}
	/* The file may live on another allowed host than the index. */
	if (crgw_host_parse(host, strlen(host), &r->host, &why) || r->host.kind != CRGW_HOST_NAME) {
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, "the file's host is not a name");
		return;
	}
	reg_set_integrity(r, &want);
	if (reg_allow(r))
		reg_fetch_artifact(r, q->url, &want);
}

/* ---- the request ----------------------------------------------------------------------------------- */

void med_pypi(struct med_request *r, const char *path, size_t len)
{
	struct reg_req *g = reg_begin(r, "pypi", "pip", &path, &len);
	const char *last, *seg;
	size_t seglen, dirlen;
	char url[REG_URL_MAX];
	struct pypi_req *q;
	bool file;

	if (!g || !(q = reg_own_alloc(r, sizeof(*q))))
		return;
	q->r = r;
	/* ".../<project>/" is a page, ".../<project>/<file name>" a file of that page. */
	if (len < 2 || path[0] != '/') {
		med_refuse(r, 404, "Not Found", CRGW_REASON_REQUEST_INVALID, "expected <index path>/<project>/[<file>]");
		return;
	}
	file = path[len - 1] != '/';
	dirlen = len - (path[len - 1] == '/' ? 1 : 0);
	last = memrchr(path, '/', dirlen);
	if (file) {
		seglen = len - (size_t)(last - path) - 1;
		if (!is_file_name(last + 1, seglen) || seglen > PYPI_MAX_FILENAME) {
			med_refuse(r, 404, "Not Found", CRGW_REASON_REQUEST_INVALID,
				   "the gateway serves project pages (ending in '/') and their distribution files");
			return;
		}
		memcpy(q->filename, last + 1, seglen);
		q->filename[seglen] = '\0';
		dirlen = (size_t)(last - path);
		last = memrchr(path, '/', dirlen);
	}
	if (!last || last == path + dirlen) {
		med_refuse(r, 404, "Not Found", CRGW_REASON_REQUEST_INVALID,
			   "the project list is not served: ask for a project's page (<index path>/<project>/)");
		return;
	}
	seg = last + 1;
	seglen = (size_t)(path + dirlen - seg);
	if (pypi_normalize(seg, seglen, q->project, sizeof(q->project))) {
		med_refuse(r, 404, "Not Found", CRGW_REASON_REQUEST_INVALID, "not a project name");
		return;
	}
	AUDIT_SET(r->package, q->project);
	/* The page's path on the index host, with the project's name normalized. */
	snprintf(q->page_path, sizeof(q->page_path), "%.*s/%s/", (int)(last - path), path, q->project);
	snprintf(url, sizeof(url), "https://%s%s", r->host.text, q->page_path);
	if (file) {
		reg_fetch_meta(r, url, UPSTREAM_ACCEPT, on_file_page);
		return;
	}
	{
		size_t alen;
		const char *accept = med_field(r, "Accept", &alen);

		q->out_fmt = pypi_accept(accept, accept ? alen : 0);
		if (q->out_fmt < 0) {
			med_refuse(r, 406, "Not Acceptable", CRGW_REASON_REQUEST_INVALID,
				   "the gateway answers text/html and application/vnd.pypi.simple.v1+json (PEP 691)");
			return;
		}
	}
	reg_fetch_meta(r, url, UPSTREAM_ACCEPT, on_page);
}
