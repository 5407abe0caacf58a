/* SPDX-License-Identifier: Apache-2.0 */
/*
 * /registry/npm/<host>/...: the npm registry protocol. Packuments (plain and scoped) are fetched whole
 * from the upstream and rewritten for the sandbox: tarball URLs point back at the gateway, versions the
 * lockfile does not name are dropped in deny_unknown mode (so npm fails early, naming the version), and
 * versions younger than min_release_age are hidden. Tarballs are checked against the lockfile's
 * integrity (or, outside the lockfile where the policy lets them through, the packument's) while they
 * stream.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "packument.h"
#include "registry.h"
#include "sandbox.h"

struct npm_req {
	char name[NPM_NAME_MAX + 1];
	char version[NPM_VERSION_MAX + 1];
	char path[MED_PATH_BUF];  /* the tarball's path on the upstream */
	bool abbreviated;
	bool listed;              /* the lockfile names this version */
	struct reg_want want;     /* the lockfile's integrity, when listed */
	struct med_request *r;
};

/* The packument's URL on the upstream: a scoped name travels as "@scope%2fname". */
static void packument_url(const struct med_request *r, const char *name, char *out, size_t cap)
{
	const char *slash = name[0] == '@' ? strchr(name, '/') : NULL;

	if (slash)
		snprintf(out, cap, "https://%s/%.*s%%2f%s", r->host.text, (int)(slash - name), name, slash + 1);
	else
		snprintf(out, cap, "https://%s/%s", r->host.text, name);
}

/* The lockfile's entry for name@version: its integrity in *want (the strongest when there are several). */
static bool listed(const struct crgw_registry_rule *rule, const char *name, const char *version, struct reg_want *want)
{
	const struct crgw_policy_artifact *a;
	size_t n = crgw_policy_registry_artifacts(rule, name, &a);
	bool found = false;

	for (size_t i = 0; i < n; i++) {
		struct reg_want w;

		if (strcmp(a[i].version, version) || !reg_want_parse(a[i].integrity, strlen(a[i].integrity), &w))
			continue;
		if (!found || (want->sha1 && !w.sha1) || w.digest.alg > want->digest.alg)
			*want = w;
		found = true;
	}
	return found;
}

/* ---- packuments ------------------------------------------------------------------------------------ */

/* The packument's tarball URL, through the gateway when its host is allowed; false otherwise. */
static bool gateway_tarball(struct med_request *r, const char *tarball, char *out, size_t cap)
{
	const struct crgw_registry_rule *rule = ((struct reg_req *)r->handler_state)->rule;
	const char *host, *slash;
	char name[254];
	size_t hlen;

	if (!tarball || strncmp(tarball, "https://", 8))
		return false;
	host = tarball + 8;
	slash = strchr(host, '/');
	hlen = slash ? (size_t)(slash - host) : 0;
	if (!hlen || hlen >= sizeof(name) || memchr(host, '@', hlen) || memchr(host, ':', hlen))
		return false;
	for (size_t i = 0; i < hlen; i++)
		name[i] = (char)((host[i] >= 'A' && host[i] <= 'Z') ? host[i] + 32 : host[i]);
	name[hlen] = '\0';
	if (!crgw_policy_registry_host_allowed(rule, name) || strpbrk(slash, "?#\"\\ "))
		return false;
	reg_gateway_url(r, out, cap, name, slash);
	return true;
}

static enum npm_verdict judge_version(void *arg, const struct npm_version_info *v, char *new_tarball, size_t cap)
{
	struct npm_req *q = arg;
	struct med_request *r = q->r;
	const struct crgw_registry_rule *rule = ((struct reg_req *)r->handler_state)->rule;
	struct reg_want want;

	if (rule->mode == CRGW_LOCKFILE_DENY_UNKNOWN && !listed(rule, q->name, v->version, &want))
		return NPM_DROP_UNLISTED;
	if (rule->min_release_age && v->published >= 0 && (long long)time(NULL) - v->published < rule->min_release_age)
		return NPM_DROP_TOO_NEW;
	/* A tarball elsewhere than an allowed host is never followed: the version goes. */
	return gateway_tarball(r, v->tarball, new_tarball, cap) ? NPM_KEEP : NPM_DROP_UNLISTED;
}

static void on_packument(struct med_request *r, long status, const char *doc, size_t len)
{
	struct reg_req *g = r->handler_state;
	struct npm_req *q = g->own;
	struct npm_rewrite out;
	const char *why = NULL;
	char detail[160];
	int rc;

	if (status != 200) {
		reg_answer_status(r, status);
		return;
	}
	rc = npm_packument_rewrite(doc, len, q->name, q->abbreviated, judge_version, q, &out, &why);
	if (rc) {
		snprintf(detail, sizeof(detail), "the upstream's packument is refused: %s", why ? why : strerror(-rc));
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return;
	}
	snprintf(detail, sizeof(detail), "versions kept=%zu not_in_lockfile=%zu too_new=%zu", out.kept,
		 out.dropped_unlisted, out.dropped_too_new);
	if (med_audit_allow(r, detail))
		reg_answer_doc(r, q->abbreviated ? "application/vnd.npm.install-v1+json" : "application/json", out.doc,
			       out.len);
	npm_rewrite_free(&out);
}

/* npm asks for the abbreviated form first; anything else gets the full document. */
static bool wants_abbreviated(struct med_request *r)
{
	size_t len;
	const char *accept = med_field(r, "Accept", &len);

	return accept && memmem(accept, len, "application/vnd.npm.install-v1+json", 35) &&
	       !memmem(accept, len, "application/vnd.npm.install-v1+json; q=0", 40);
}

/* ---- tarballs -------------------------------------------------------------------------------------- */

static void tarball_go(struct med_request *r, struct npm_req *q, const struct reg_want *want)
{
	char url[REG_URL_MAX];

	snprintf(url, sizeof(url), "https://%s%s", r->host.text, q->path);
	reg_fetch_artifact(r, url, want);
}

/* The packument arrived for a tarball: its publish time (cooldown) and, outside the lockfile, its integrity. */
static void on_tarball_packument(struct med_request *r, long status, const char *doc, size_t len)
{
	struct reg_req *g = r->handler_state;
	struct npm_req *q = g->own;
	struct npm_version_found *found = calloc(1, sizeof(*found));
	struct reg_want want = q->want;
	const char *why = NULL;
	char detail[700];
	int rc;

	if (!found) {
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
		return;
	}
	if (status != 200) {
		free(found);
		reg_answer_status(r, status);
		return;
	}
	rc = npm_packument_find(doc, len, q->name, q->version, found, &why);
	if (rc == -ENOENT) {
		free(found);
		reg_answer_status(r, 404);
		return;
	}
	if (rc) {
		snprintf(detail, sizeof(detail), "the upstream's packument is refused: %s", why ? why : strerror(-rc));
		free(found);
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return;
	}
	if (reg_too_new(r, found->published)) {
		free(found);
		return;
	}
	if (!q->listed) {
		char sri[NPM_INTEGRITY_MAX + 1];
		const char *sp;

		/* dist.integrity may list several hashes: the first sha512 (or the first) is the one checked. */
		snprintf(sri, sizeof(sri), "%s", found->integrity);
		sp = strstr(sri, "sha512-");
		if (!sp)
			sp = sri;
		if (!sp[0] || !reg_want_parse(sp, strcspn(sp, " "), &want)) {
			snprintf(detail, sizeof(detail), "the registry gives %s@%s no integrity the gateway can check", q->name,
				 q->version);
			free(found);
			med_refuse(r, 502, "Bad Gateway", CRGW_REASON_INTEGRITY_MISMATCH, detail);
			return;
		}
	}
	free(found);
	reg_set_integrity(r, &want);
	if (reg_allow(r))
		tarball_go(r, q, &want);
}

static void tarball(struct med_request *r, struct reg_req *g, struct npm_req *q, const char *path, size_t len)
{
	char url[REG_URL_MAX], detail[700];

	if (npm_tarball_path_parse(path, len, q->name, sizeof(q->name), q->version, sizeof(q->version))) {
		med_refuse(r, 404, "Not Found", CRGW_REASON_REQUEST_INVALID,
			   "not a tarball path (<name>/-/<name>-<version>.tgz)");
		return;
	}
	AUDIT_SET(r->package, q->name);
	AUDIT_SET(r->version, q->version);
	snprintf(q->path, sizeof(q->path), "%.*s", (int)len, path);
	q->listed = g->rule->mode != CRGW_LOCKFILE_OFF && listed(g->rule, q->name, q->version, &q->want);
	if (!q->listed) {
		snprintf(detail, sizeof(detail), "%s@%s is not in the lockfile", q->name, q->version);
		if (!reg_unlisted(r, detail))
			return;
	}
	if (q->listed && !g->rule->min_release_age) {
		reg_set_integrity(r, &q->want);
		if (reg_allow(r))
			tarball_go(r, q, &q->want);
		return;
	}
	packument_url(r, q->name, url, sizeof(url));
	reg_fetch_meta(r, url, "application/json", on_tarball_packument);
}

/* ---- the request ----------------------------------------------------------------------------------- */

void med_npm(struct med_request *r, const char *path, size_t len)
{
	struct reg_req *g = reg_begin(r, "npm", "npm", &path, &len);
	struct npm_req *q;
	char url[REG_URL_MAX];

	if (!g || !(q = reg_own_alloc(r, sizeof(*q))))
		return;
	q->r = r;
	if (len > 1 && memmem(path, len, "/-/", 3) && path[1] != '-') {
		tarball(r, g, q, path, len);
		return;
	}
	/* A packument: "/name" or "/@scope/name" (npm sends "@scope%2fname", decoded once to the same). */
	if (len < 2 || path[0] != '/' || len - 1 > NPM_NAME_MAX || !npm_name_valid(path + 1, len - 1)) {
		med_refuse(r, 404, "Not Found", CRGW_REASON_REQUEST_INVALID,
			   "the gateway serves npm packuments and tarballs only (no search, audit or publish)");
		return;
	}
	memcpy(q->name, path + 1, len - 1);
	q->name[len - 1] = '\0';
	AUDIT_SET(r->package, q->name);
	q->abbreviated = wants_abbreviated(r);
	packument_url(r, q->name, url, sizeof(url));
	reg_fetch_meta(r, url, "application/json", on_packument);
}
