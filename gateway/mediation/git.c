/* SPDX-License-Identifier: Apache-2.0 */
/*
 * /git/<host>/<repository>/<smart HTTP endpoint>: git's smart HTTP, and nothing else of a git host, sent
 * on over TLS with the operator's credential for that host. A push is read before any of it goes
 * upstream: its command list (every ref inside git.push_refs, no deletion, no stale or non-fast-forward
 * update unless git.force_push), proved against the refs the upstream advertised to this sandbox and the
 * commits the pack carries.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "gitproto.h"
#include "internal.h"
#include "log.h"
#include "path.h"
#include "sandbox.h"
#include "vault.h"

/* Repositories whose advertised refs a sandbox remembers for its next push (the oldest is forgotten). */
#define STATE_REPOS 16
#define ADV_MAX_REFS 10000

struct crgw_mediation_state {
	pthread_mutex_t lock;
	struct {
		char key[512]; /* host/repository */
		struct git_refs *refs;
	} repos[STATE_REPOS];
	unsigned next;
};

enum git_endpoint { EP_INFO_REFS, EP_UPLOAD_PACK, EP_RECEIVE_PACK };

struct git_req {
	char key[512];
	struct git_adv adv; /* info/refs for a push: the refs it may move, remembered */
	struct git_refs adv_refs;
	bool adv_active;
	struct git_push push; /* the receive-pack request's command list */
	bool push_active;
	struct git_pack_scan scan; /* the pack's commits, when an update must be proved a fast-forward */
	bool scan_active;
	struct git_refs advertised; /* the refs this sandbox was shown (a copy) */
	bool commands_done, need_scan;
	uint64_t held;
	/* A push refused once its commands were read: answered in git's own report when its body ends. */
	bool refused;
	size_t refused_cmd;
	char refusal[512];
};

static void refs_free(struct git_refs *refs)
{
	if (refs) {
		git_refs_free(refs);
		free(refs);
	}
}

/* A deep copy of `from` into `to` (zeroed); false when out of memory (`to` is then freed). */
static bool refs_copy(struct git_refs *to, const struct git_refs *from)
{
	*to = *from;
	to->refs = NULL;
	to->caps = NULL;
	if (from->caps && !(to->caps = strndup(from->caps, from->caps_len)))
		goto fail;
	if (from->n && !(to->refs = calloc(from->n, sizeof(*to->refs))))
		goto fail;
	for (size_t i = 0; i < from->n; i++) {
		to->refs[i] = from->refs[i];
		if (!(to->refs[i].name = strndup(from->refs[i].name, from->refs[i].len))) {
			to->n = i;
			goto fail;
		}
	}
	return true;
fail:
	git_refs_free(to);
	return false;
}

void crgw_mediation_state_free(struct crgw_mediation_state *st)
{
	if (!st)
		return;
	for (unsigned i = 0; i < STATE_REPOS; i++)
		refs_free(st->repos[i].refs);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

static struct crgw_mediation_state *state_of(struct crgw_sandbox *sb)
{
	struct crgw_mediation_state *st = atomic_load(&sb->mediation), *fresh;

	if (st)
		return st;
	fresh = calloc(1, sizeof(*fresh));
	if (!fresh)
		return NULL;
	pthread_mutex_init(&fresh->lock, NULL);
	if (!atomic_compare_exchange_strong(&sb->mediation, &st, fresh)) {
		crgw_mediation_state_free(fresh);
		return st;
	}
	return fresh;
}

/* Remembers `refs` (taken) as what the upstream advertised for `key`. */
static void state_put(struct crgw_sandbox *sb, const char *key, struct git_refs *refs)
{
	struct crgw_mediation_state *st = state_of(sb);
	unsigned slot = STATE_REPOS;

	if (!st) {
		refs_free(refs);
		return;
	}
	pthread_mutex_lock(&st->lock);
	for (unsigned i = 0; i < STATE_REPOS; i++)
		if (!strcmp(st->repos[i].key, key))
			slot = i;
	if (slot == STATE_REPOS)
		slot = st->next++ % STATE_REPOS;
	refs_free(st->repos[slot].refs);
	snprintf(st->repos[slot].key, sizeof(st->repos[slot].key), "%s", key);
	st->repos[slot].refs = refs;
	pthread_mutex_unlock(&st->lock);
}

/*
 * A copy of what was advertised to this sandbox for `key` into `out`. Without one (the push was not
 * preceded by its info/refs), an empty, incomplete table: nothing can be proved against it.
 */
static void state_get(struct crgw_sandbox *sb, const char *key, struct git_refs *out)
{
	struct crgw_mediation_state *st = state_of(sb);
	bool found = false;

	memset(out, 0, sizeof(*out));
	if (st) {
		pthread_mutex_lock(&st->lock);
		for (unsigned i = 0; i < STATE_REPOS && !found; i++)
			if (st->repos[i].refs && !strcmp(st->repos[i].key, key))
				found = refs_copy(out, st->repos[i].refs);
		pthread_mutex_unlock(&st->lock);
	}
	if (!found) {
		memset(out, 0, sizeof(*out));
		out->incomplete = true;
	}
}

static void git_free(struct med_request *r)
{
	struct git_req *g = r->handler_state;

	if (!g)
		return;
	if (g->adv_active)
		git_refs_free(&g->adv_refs);
	git_push_free(&g->push);
	git_pack_scan_free(&g->scan);
	git_refs_free(&g->advertised);
	free(g);
	r->handler_state = NULL;
}

/* ---- the upstream's answer -------------------------------------------------------------------------- */

static void git_on_response(struct med_request *r)
{
	struct crgw_git_credential cred;
	char detail[512];

	if (r->status != 401 && r->status != 403 && r->status != 407)
		return;
	/* Passed on, a 401 would only make git ask for a password the sandbox must never have. */
	if (r->anonymous)
		snprintf(detail, sizeof(detail),
			 "upstream %s answered %ld: learn mode asks a host outside git.hosts with no credential",
			 r->host.text, r->status);
	else if (crgw_vault_credential(CRGW_VAULT_GIT, r->host.text, &cred) == 0)
		snprintf(detail, sizeof(detail), "upstream %s answered %ld: it refused the gateway's credential for the host",
			 r->host.text, r->status);
	else
		snprintf(detail, sizeof(detail),
			 "upstream %s answered %ld: it wants a credential, and git.credentials has none for the host",
			 r->host.text, r->status);
	atomic_fetch_add(&med_stats.upstream_failures, 1);
	med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
}

static bool ref_wanted(void *arg, const char *ref, size_t len)
{
	return crgw_policy_git_ref_allowed(arg, ref, len);
}

static void git_on_response_body(struct med_request *r, const char *data, size_t len)
{
	struct git_req *g = r->handler_state;
	struct git_refs *keep;
	int rc;

	if (!g || !g->adv_active || r->status != 200)
		return;
	rc = git_adv_feed(&g->adv, (const uint8_t *)data, len);
	if (rc == -EAGAIN)
		return;
	g->adv_active = false;
	keep = rc == 0 ? malloc(sizeof(*keep)) : NULL;
	if (keep) {
		*keep = g->adv_refs;
		state_put(med_sandbox(r), g->key, keep);
	} else {
		/* Not an advertisement we understand: no push can be proved against it. */
		git_refs_free(&g->adv_refs);
	}
}

/* ---- a push, before anything of it goes upstream ---------------------------------------------------- */

static const char *verdict_reason(enum git_push_verdict v)
{
	switch (v) {
	case GIT_PUSH_OK: return "allowed";
	case GIT_PUSH_REF_NOT_ALLOWED: return "the ref is outside git.push_refs";
	case GIT_PUSH_DELETE: return "deleting a ref needs git.force_push";
	case GIT_PUSH_STALE: return "the update does not start from the ref the upstream advertised";
	case GIT_PUSH_NOT_FAST_FORWARD: return "not a fast-forward (git.force_push is false)";
	}
	return "refused";
}

static bool ref_allowed_cb(void *arg, const char *ref, size_t len)
{
	return crgw_policy_git_ref_allowed(arg, ref, len);
}

/* ---- refusing a push in git's own terms ------------------------------------------------------------ */

static bool has_cap(const struct git_push *p, const char *name)
{
	size_t vlen;

	return p->caps && git_cap_find(p->caps, strlen(p->caps), name, &vlen);
}

/* Appends one pkt-line holding `band` (when not 0) and `data`. */
static void pkt_add(struct evbuffer *out, int band, const void *data, size_t len)
{
	size_t total = 4 + (band ? 1 : 0) + len;

	evbuffer_add_printf(out, "%04zx", total);
	if (band) {
		unsigned char b = (unsigned char)band;

		evbuffer_add(out, &b, 1);
	}
	evbuffer_add(out, data, len);
}

/*
 * The answer to a refused push, as a git server answers a push its hooks rejected: "unpack ok" and
 * an "ng" line per command, the refused one with the reason, in the side band when the client asked
 * for one, and the reason again as a progress message, which git prints as "remote: crgw: ...". git
 * shows nothing of an HTTP error's body on a push, so a 403 would leave its user guessing.
 */
static void send_report(struct med_request *r, struct git_req *g)
{
	struct evbuffer *report = evbuffer_new(), *body = evbuffer_new();
	int band = has_cap(&g->push, "side-band-64k") || has_cap(&g->push, "side-band") ? 1 : 0;
	char line[1024];
	size_t len;

	if (!report || !body) {
		if (report)
			evbuffer_free(report);
		if (body)
			evbuffer_free(body);
		med_answer(r, 503, "text/plain; charset=utf-8", "crgw: out of memory\n", 20);
		return;
	}
	pkt_add(report, 0, "unpack ok\n", 10);
	for (size_t i = 0; i < g->push.ncmds; i++) {
		const struct git_push_cmd *cmd = &g->push.cmds[i];
		int n;

		if (i == g->refused_cmd || g->refused_cmd >= g->push.ncmds)
			n = snprintf(line, sizeof(line), "ng %.*s crgw: request_invalid: %s\n", (int)cmd->ref_len, cmd->ref,
				     g->refusal);
		else
			n = snprintf(line, sizeof(line), "ng %.*s crgw: not pushed: another ref of the push was refused\n",
				     (int)cmd->ref_len, cmd->ref);
		if (n > 0)
			pkt_add(report, 0, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	}
	evbuffer_add(report, "0000", 4);
	if (band) {
		/* side-band (not 64k) allows 1000 bytes a packet: the report goes in pieces that fit either. */
		int n = snprintf(line, sizeof(line), "crgw: request_invalid: %s\n", g->refusal);

		pkt_add(body, 2, line, (size_t)n < 990 ? (size_t)n : 990);
		while ((len = evbuffer_get_length(report)) > 0) {
			size_t take = len < 990 ? len : 990;

			pkt_add(body, 1, evbuffer_pullup(report, (ssize_t)take), take);
			evbuffer_drain(report, take);
		}
		evbuffer_add(body, "0000", 4);
	} else {
		evbuffer_add_buffer(body, report);
	}
	len = evbuffer_get_length(body);
	med_answer(r, 200, "application/x-git-receive-pack-result", (const char *)evbuffer_pullup(body, -1), len);
	evbuffer_free(report);
	evbuffer_free(body);
}

/*
 * Refuses the push (audited now). Once its commands are known and the client reads a report, the rest
 * of its body is read and dropped, and the report answers it; otherwise a plain refusal.
 */
static void push_refuse(struct med_request *r, struct git_req *g, int status, const char *text, const char *detail,
			size_t cmd)
{
	if (!g->commands_done || !(has_cap(&g->push, "report-status") || has_cap(&g->push, "report-status-v2"))) {
		med_refuse(r, status, text, CRGW_REASON_REQUEST_INVALID, detail);
		return;
	}
	atomic_fetch_add(&med_stats.denied, 1);
	med_audit(r, CRGW_AUDIT_DECISION, false, CRGW_REASON_REQUEST_INVALID, detail);
	snprintf(g->refusal, sizeof(g->refusal), "%s", detail);
	g->refused = true;
	g->refused_cmd = cmd;
	r->discarding = true;
	evbuffer_drain(r->body_buf, evbuffer_get_length(r->body_buf));
}

/* Decides every command; refuses the whole push for the first one that fails. true when all pass. */
static bool judge(struct med_request *r, struct git_req *g)
{
	const struct crgw_policy *p = med_sandbox(r)->policy;
	for (size_t i = 0; i < g->push.ncmds; i++) {
		const struct git_push_cmd *cmd = &g->push.cmds[i];
		const char *why = NULL;
		enum git_push_verdict v = git_push_check(cmd, crgw_policy_git_force_push(p), ref_allowed_cb, (void *)p,
							 &g->advertised, g->scan_active ? &g->scan : NULL, &why);

		if (v != GIT_PUSH_OK) {
			char detail[512];

			snprintf(detail, sizeof(detail), "push refused: %s%s%s", verdict_reason(v), why ? ": " : "",
				 why ? why : "");
			AUDIT_SET_RAW(r->ref, cmd->ref, cmd->ref_len);
			push_refuse(r, g, 403, "Forbidden", detail, i);
			return false;
		}
	}
	return true;
}

static bool needs_scan(struct med_request *r, struct git_req *g)
{
	if (crgw_policy_git_force_push(med_sandbox(r)->policy))
		return false;
	for (size_t i = 0; i < g->push.ncmds; i++) {
		const struct git_push_cmd *cmd = &g->push.cmds[i];

		if (!git_oid_is_zero(&cmd->old_oid) && !git_oid_is_zero(&cmd->new_oid))
			return true;
	}
	return false;
}

/*
 * A pack larger than the hold limit: whether the commits read so far prove every update (git writes
 * the commits first, so they usually do), in which case the rest streams on without being held.
 */
static bool proved_so_far(struct med_request *r, struct git_req *g)
{
	const struct crgw_policy *p = med_sandbox(r)->policy;

	for (size_t i = 0; i < g->push.ncmds; i++) {
		const struct git_push_cmd *cmd = &g->push.cmds[i];
		enum git_push_verdict v = git_push_check(cmd, crgw_policy_git_force_push(p), ref_allowed_cb, (void *)p,
							 &g->advertised, NULL, NULL);

		/* Without a scan, every other rule has passed when the verdict is "not a fast-forward". */
		if (v == GIT_PUSH_NOT_FAST_FORWARD && git_pack_reaches_so_far(&g->scan, &cmd->old_oid, &cmd->new_oid))
			continue;
		if (v != GIT_PUSH_OK)
			return false;
	}
	return true;
}

/* The push passed: its decision is audited now, as it goes upstream. */
static int allow(struct med_request *r)
{
	return med_audit_allow(r, NULL) ? 0 : -1;
}

/* What push_gate returns after a refusal: answered now (-1), or once the body has been read (1). */
static int after_refusal(struct med_request *r, struct git_req *g, bool end)
{
	if (!g->refused)
		return -1;
	if (!end)
		return 1;
	send_report(r, g);
	return -1;
}

static int push_gate(struct med_request *r, const char *data, size_t len, bool end)
{
	struct git_req *g = r->handler_state;
	char detail[512];
	size_t used = 0;
	int rc;

	if (g->refused)
		return after_refusal(r, g, end);
	g->held += len;
	if (g->held > r->m->cfg->mediation_push_hold_bytes && g->scan_active && proved_so_far(r, g))
		return allow(r);
	if (g->held > r->m->cfg->mediation_push_hold_bytes && !(g->commands_done && !g->need_scan)) {
		push_refuse(r, g, 413, "Content Too Large",
			    "the push's commands and commits are larger than mediation.push_hold_bytes: it cannot be checked",
			    SIZE_MAX);
		return after_refusal(r, g, end);
	}
	if (!len && !end)
		return 1;
	if (!g->commands_done) {
		rc = len ? git_push_feed(&g->push, (const uint8_t *)data, len, &used) : git_push_end(&g->push);
		if (rc == -EAGAIN && !end)
			return 1;
		if (rc == -EAGAIN)
			rc = git_push_end(&g->push);
		if (rc == -ENOTSUP) {
			med_refuse(r, 403, "Forbidden", CRGW_REASON_REQUEST_INVALID,
				   "signed pushes (push certificates) are not mediated");
			return -1;
		}
		if (rc < 0) {
			snprintf(detail, sizeof(detail), "the push's command list is malformed: %s",
				 g->push.why ? g->push.why : "truncated");
			med_refuse(r, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID, detail);
			return -1;
		}
		g->commands_done = true;
		if (g->push.push_options) {
			push_refuse(r, g, 403, "Forbidden", "push options are not mediated", SIZE_MAX);
			return after_refusal(r, g, end);
		}
		state_get(med_sandbox(r), g->key, &g->advertised);
		g->need_scan = needs_scan(r, g);
		if (!g->need_scan)
			return judge(r, g) ? allow(r) : after_refusal(r, g, end);
		if (git_pack_scan_init(&g->scan, g->push.sha256)) {
			med_refuse(r, 503, "Service Unavailable", CRGW_REASON_REQUEST_INVALID, "out of memory");
			return -1;
		}
		g->scan_active = true;
		data += used;
		len -= used;
	}
	rc = len ? git_pack_scan_feed(&g->scan, (const uint8_t *)data, len) : -EAGAIN;
	if (rc == -EAGAIN && !end)
		return 1;
	if (rc == -EAGAIN)
		rc = git_pack_scan_end(&g->scan);
	if (rc == -E2BIG) {
		snprintf(detail, sizeof(detail), "the push's pack is beyond what the gateway checks: %s",
			 g->scan.why ? g->scan.why : "too large");
		push_refuse(r, g, 413, "Content Too Large", detail, SIZE_MAX);
		return after_refusal(r, g, end);
	}
	if (rc < 0) {
		snprintf(detail, sizeof(detail), "the push's pack is malformed: %s", g->scan.why ? g->scan.why : "truncated");
		push_refuse(r, g, 400, "Bad Request", detail, SIZE_MAX);
		return after_refusal(r, g, end);
	}
	return judge(r, g) ? allow(r) : after_refusal(r, g, end);
}

static const struct med_handler fetch_handler = {
	.on_response = git_on_response,
	.on_response_body = git_on_response_body,
	.free = git_free,
};

static const struct med_handler push_handler = {
	.on_response = git_on_response,
	.on_response_body = git_on_response_body,
	.on_request_body = push_gate,
	.free = git_free,
};

/* ---- the request ------------------------------------------------------------------------------------ */

/* Appends the canonical `path` to `url`, escaping the bytes a canonical path may still hold above 0x7f. */
static bool append_path(char *url, size_t size, const char *path, size_t len)
{
	size_t at = strlen(url);

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)path[i];

		if (at + 4 >= size)
			return false;
		if (c >= 0x80)
			at += (size_t)snprintf(url + at, size - at, "%%%02X", c);
		else
			url[at++] = (char)c;
	}
	url[at] = '\0';
	return true;
}

/* The client's fields that mean something to a git server; nothing that authenticates or routes. */
static bool forward_fields(struct med_request *r)
{
	static const char *const names[] = { "Accept", "Accept-Encoding", "Accept-Language", "Content-Type",
					     "Content-Encoding", "Git-Protocol", "User-Agent", "Pragma" };
	char line[1024];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t len;
		const char *v = med_field(r, names[i], &len);

		if (!v || len > 900)
			continue;
		snprintf(line, sizeof(line), "%s: %.*s", names[i], (int)len, v);
		if (!med_header_add(r, line))
			return false;
	}
	return true;
}

static bool ends_with(const char *s, size_t len, const char *suffix, size_t *stem)
{
	size_t n = strlen(suffix);

	if (len <= n || memcmp(s + len - n, suffix, n))
		return false;
	*stem = len - n;
	return true;
}

void med_git(struct med_request *r, const char *path, size_t len, const char *query, size_t qlen)
{
	const struct crgw_policy *policy = med_sandbox(r)->policy;
	const char *seg, *why = NULL;
	size_t seglen, stem = 0, mlen;
	const char *method = med_method(r, &mlen);
	bool get = mlen == 3 && !memcmp(method, "GET", 3), post = mlen == 4 && !memcmp(method, "POST", 4);
	enum git_endpoint ep;
	char service[32] = "", detail[512];
	struct git_req *g;
	int err;

	if (med_path_segment(&path, &len, &seg, &seglen) || crgw_host_parse(seg, seglen, &r->host, &why) ||
	    r->host.kind != CRGW_HOST_NAME) {
		r->host.len = 0;
		med_refuse(r, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID,
			   "expected /git/<host>/<repository>/... with a host name");
		return;
	}
	if (!crgw_policy_git_host_allowed(policy, r->host.text)) {
		snprintf(detail, sizeof(detail), "git host %s is not in the policy's git.hosts", r->host.text);
		if (!med_sandbox(r)->learn) {
			med_refuse(r, 403, "Forbidden", CRGW_REASON_HOST_NOT_ALLOWED, detail);
			return;
		}
		/* Learn mode: let through (without the operator's credential), saying what enforcement would refuse. */
		r->anonymous = true;
		if (!med_audit_warn(r, CRGW_REASON_HOST_NOT_ALLOWED, detail))
			return;
	}
	if (get && ends_with(path, len, "/info/refs", &stem)) {
		ep = EP_INFO_REFS;
		if (med_query_param(query, qlen, "service", service, sizeof(service), NULL) ||
		    (strcmp(service, "git-upload-pack") && strcmp(service, "git-receive-pack"))) {
			med_refuse(r, 403, "Forbidden", CRGW_REASON_REQUEST_INVALID,
				   "only smart HTTP is mediated: info/refs needs ?service=git-upload-pack or git-receive-pack");
			return;
		}
	} else if (post && ends_with(path, len, "/git-upload-pack", &stem)) {
		ep = EP_UPLOAD_PACK;
	} else if (post && ends_with(path, len, "/git-receive-pack", &stem)) {
		ep = EP_RECEIVE_PACK;
	} else {
		med_refuse(r, 403, "Forbidden", CRGW_REASON_REQUEST_INVALID,
			   "only git smart HTTP is mediated (GET info/refs, POST git-upload-pack, POST git-receive-pack)");
		return;
	}
	AUDIT_SET_RAW(r->subject, path, stem);
	bool push = ep == EP_RECEIVE_PACK || !strcmp(service, "git-receive-pack");
	snprintf(r->operation, sizeof(r->operation), "%s", push ? "push" : "fetch");
	if (push && !crgw_policy_git_push(policy)) {
		med_refuse(r, 403, "Forbidden", CRGW_REASON_REQUEST_INVALID, "git.push is false in this sandbox's policy");
		return;
	}
	if (ep == EP_RECEIVE_PACK) {
		size_t elen;
		const char *enc = med_field(r, "Content-Encoding", &elen);

		if (enc && !(elen == 8 && !strncasecmp(enc, "identity", 8))) {
			med_refuse(r, 415, "Unsupported Media Type", CRGW_REASON_REQUEST_INVALID,
				   "a push must not be compressed: the gateway reads its commands");
			return;
		}
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
		return;
	}
	r->handler_state = g;
	snprintf(g->key, sizeof(g->key), "%s%.*s", r->host.text, (int)(stem < 400 ? stem : 400), path);
	r->h = push ? &push_handler : &fetch_handler;
	r->url = malloc(MED_PATH_BUF + 600);
	if (!r->url) {
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
		return;
	}
	snprintf(r->url, MED_PATH_BUF + 600, "https://%s", r->host.text);
	if (!append_path(r->url, MED_PATH_BUF + 300, path, len)) {
		med_refuse(r, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID, "the path is too long");
		return;
	}
	if (ep == EP_INFO_REFS)
		snprintf(r->url + strlen(r->url), 64, "?service=%s", service);
	if (ep == EP_INFO_REFS && push) {
		git_adv_init(&g->adv, &g->adv_refs, "git-receive-pack", ADV_MAX_REFS, ref_wanted, (void *)policy);
		g->adv_active = true;
	}
	if (!forward_fields(r)) {
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
		return;
	}
	err = med_credential_add(r, CRGW_VAULT_GIT, NULL);
	if (err) {
		snprintf(detail, sizeof(detail), "the credential for %s (secret %s) is unavailable: %s", r->host.text,
			 r->secret_id, err == -EIO ? "its source cannot be read" : strerror(-err));
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return;
	}
	if (ep == EP_RECEIVE_PACK) {
		git_push_init(&g->push);
		g->push_active = true;
		r->holding = true; /* the router feeds push_gate; it starts the upstream when the push passes */
		return;
	}
	if (med_audit_allow(r, NULL))
		med_client_start(r);
}
