/* SPDX-License-Identifier: Apache-2.0 */
/*
 * /registry/<npm|pypi|go|oci>/<host>/...: what every registry handler shares (registry.h). Metadata is
 * fetched whole and bounded, kept on disk beside the content cache with its validators, reused for
 * cache.metadata_ttl_seconds and served stale only offline or when the upstream fails. Artifacts stream to
 * the client as they are hashed, with the last bytes held back until the digest matches: a client never
 * has a complete wrong file, and the cache keeps nothing that did not match.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/event.h>

#include "cache/service.h"
#include "config.h"
#include "log.h"
#include "path.h"
#include "registry.h"
#include "sandbox.h"

#define META_MAGIC "crgw-meta 2\n"
/* Redirects an artifact may follow, each to an allowed host. */
#define MAX_REDIRECTS 5
/* A refused or failed answer's body is read and dropped up to this much. */
#define DISCARD_MAX (64 * 1024)
/* Bytes a cached copy is hashed per turn of the loop before it is trusted. */
#define VERIFY_STEP (4 * 1024 * 1024)
#define PUMP_STEP (256 * 1024)

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const struct crgw_config *cfg_of(const struct med_request *r)
{
	return r->m->cfg;
}

static struct reg_req *state(struct med_request *r)
{
	return r->handler_state;
}

/*
 * Fills under way, by digest and the host they come from (reg_vouched says why the host matters). A
 * concurrent miss for the same registry and host follows the fill, so that a hundred sandboxes on a cold
 * cache cause one upstream fetch; a miss for another host fetches from its own. A fill not found here (the
 * table full, or the miss came between the fill's start and its entry) is not followed: that fails safe.
 */
#define LEADS_MAX 256

static struct {
	pthread_mutex_t lock;
	struct crgw_digest digest[LEADS_MAX];
	char origin[LEADS_MAX][264]; /* "<registry> <host>"; empty: a free slot */
} leads = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void lead_origin(const struct reg_req *g, char *out, size_t cap)
{
	snprintf(out, cap, "%s %s", g->rule->name, g->origin);
}

static void lead_put(struct reg_req *g, const struct crgw_digest *d)
{
	char origin[264];

	lead_origin(g, origin, sizeof(origin));
	pthread_mutex_lock(&leads.lock);
	for (unsigned i = 0; i < LEADS_MAX && !g->lead; i++)
		if (!leads.origin[i][0]) {
			leads.digest[i] = *d;
			snprintf(leads.origin[i], sizeof(leads.origin[i]), "%s", origin);
			g->lead = i + 1;
		}
	pthread_mutex_unlock(&leads.lock);
}

static void lead_drop(struct reg_req *g)
{
	if (!g->lead)
		return;
	pthread_mutex_lock(&leads.lock);
	leads.origin[g->lead - 1][0] = '\0';
	pthread_mutex_unlock(&leads.lock);
	g->lead = 0;
}

/* Whether a fill of `d` from this request's registry and host is under way. */
static bool lead_same(const struct reg_req *g, const struct crgw_digest *d)
{
	char origin[264];
	bool same = false;

	lead_origin(g, origin, sizeof(origin));
	pthread_mutex_lock(&leads.lock);
	for (unsigned i = 0; i < LEADS_MAX && !same; i++)
		same = !strcmp(leads.origin[i], origin) && crgw_digest_equal(&leads.digest[i], d);
	pthread_mutex_unlock(&leads.lock);
	return same;
}

void reg_free(struct med_request *r)
{
	struct reg_req *g = r->handler_state;

	if (!g)
		return;
	if (g->authorization) {
		explicit_bzero(g->authorization, strlen(g->authorization));
		free(g->authorization);
	}
	lead_drop(g);
	/* The follower first: its notification may still wake the event until it is closed. */
	crgw_cache_follower_close(g->follower);
	if (g->wake)
		event_free(g->wake);
	crgw_cache_fill_abort(g->fill);
	crgw_cache_reader_close(g->reader);
	if (g->own_free)
		g->own_free(g->own);
	if (g->doc)
		evbuffer_free(g->doc);
	if (g->stale)
		evbuffer_free(g->stale);
	if (g->held)
		evbuffer_free(g->held);
	EVP_MD_CTX_free(g->md);
	free(g);
	r->handler_state = NULL;
}

static const struct med_handler idle_handler = { .free = reg_free };

/* ---- the start of every registry request ------------------------------------------------------------ */

struct reg_req *reg_begin_host(struct med_request *r, const char *kind, const char *registry, const char *host,
			       size_t hlen)
{
	const struct crgw_registry_rule *rule = crgw_policy_registry(med_sandbox(r)->policy, registry);
	const char *why = NULL, *method;
	size_t mlen;
	char detail[400];
	struct reg_req *g;

	/* The host is read first, so that even a registry's refusal names the host it was asked for. */
	bool host_ok = !host || (hlen && !crgw_host_parse(host, hlen, &r->host, &why) && r->host.kind == CRGW_HOST_NAME);

	if (!host_ok)
		r->host.len = 0;
	AUDIT_SET(r->registry, registry);
	if (!rule || !rule->enable) {
		snprintf(detail, sizeof(detail), "registries.%s is not enabled in this sandbox's policy", registry);
		med_refuse(r, 403, "Forbidden", CRGW_REASON_REGISTRY_NOT_ALLOWED, detail);
		return NULL;
	}
	if (!host_ok) {
		snprintf(detail, sizeof(detail), "expected /registry/%s/<registry host>/... with a host name", kind);
		med_refuse(r, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID, detail);
		return NULL;
	}
	if (host && !crgw_policy_registry_host_allowed(rule, r->host.text)) {
		snprintf(detail, sizeof(detail), "%s is not in registries.%s.allowed_hosts", r->host.text, registry);
		if (!med_sandbox(r)->learn) {
			med_refuse(r, 403, "Forbidden", CRGW_REASON_HOST_NOT_ALLOWED, detail);
			return NULL;
		}
		/* Learn mode: let through, without the operator's credential (med_credential_add). */
		r->anonymous = true;
		if (!med_audit_warn(r, CRGW_REASON_HOST_NOT_ALLOWED, detail))
			return NULL;
	}
	method = med_method(r, &mlen);
	if (!(mlen == 3 && !memcmp(method, "GET", 3)) && !(mlen == 4 && !memcmp(method, "HEAD", 4))) {
		med_refuse(r, 405, "Method Not Allowed", CRGW_REASON_REQUEST_INVALID,
			   "registries are mediated read-only: GET and HEAD");
		return NULL;
	}
	g = calloc(1, sizeof(*g));
	if (!g || !(g->wake = event_new(r->m->base, -1, 0, NULL, NULL))) {
		free(g);
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
		return NULL;
	}
	g->rule = rule;
	/* Learn mode: metadata is not trimmed to the lockfile, and an unlisted artifact passes as warn. */
	if (med_sandbox(r)->learn && rule->mode == CRGW_LOCKFILE_DENY_UNKNOWN) {
		g->learn_rule = *rule;
		g->learn_rule.mode = CRGW_LOCKFILE_WARN;
		g->rule = &g->learn_rule;
	}
	g->kind = kind;
	if (host)
		snprintf(g->origin, sizeof(g->origin), "%s", r->host.text);
	g->t0_us = now_us();
	r->port = 443;
	r->handler_state = g;
	r->h = &idle_handler;
	snprintf(r->operation, sizeof(r->operation), "fetch");
	return g;
}

void *reg_own_alloc(struct med_request *r, size_t size)
{
	struct reg_req *g = state(r);

	g->own = calloc(1, size);
	if (!g->own) {
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
		return NULL;
	}
	g->own_free = free;
	return g->own;
}

struct reg_req *reg_begin(struct med_request *r, const char *kind, const char *registry, const char **path,
			  size_t *len)
{
	const char *seg = "";
	size_t seglen = 0;

	/* Read even for a registry that is not enabled: its registry_not_allowed names the host (when it is one). */
	if (med_path_segment(path, len, &seg, &seglen)) {
		seg = "";
		seglen = 0; /* refused as a missing host */
	}
	return reg_begin_host(r, kind, registry, seg, seglen);
}

void reg_gateway_url(struct med_request *r, char *out, size_t cap, const char *host, const char *path)
{
	char gw[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &med_sandbox(r)->gw, gw, sizeof(gw));
	snprintf(out, cap, "http://%s:%u/registry/%s/%s%s", gw, CRGW_MEDIATION_PORT, state(r)->kind, host, path);
}

bool reg_want_parse(const char *text, size_t len, struct reg_want *out)
{
	memset(out, 0, sizeof(*out));
	if (len > 5 && !memcmp(text, "sha1-", 5)) {
		unsigned char raw[32];
		int n;

		if (len - 5 != 28)
			return false;
		n = EVP_DecodeBlock(raw, (const unsigned char *)text + 5, 28);
		/* 28 base64 characters with one '=' of padding: 20 bytes. */
		if (n != 21 || text[len - 1] != '=' || text[len - 2] == '=')
			return false;
		memcpy(out->sha1_bytes, raw, 20);
		out->sha1 = true;
		return true;
	}
	return crgw_digest_parse(text, len, &out->digest) == 0;
}

void reg_set_integrity(struct med_request *r, const struct reg_want *w)
{
	char *out = r->integrity;
	size_t cap = sizeof(r->integrity);

	if (w->sha1) {
		size_t at = (size_t)snprintf(out, cap, "sha1:");

		for (int i = 0; i < 20 && at + 3 <= cap; i++)
			at += (size_t)snprintf(out + at, cap - at, "%02x", w->sha1_bytes[i]);
	} else if (crgw_digest_format(&w->digest, out, cap) < 0) {
		snprintf(out, cap, "?");
	}
}

/* ---- decisions --------------------------------------------------------------------------------------- */

bool reg_unlisted(struct med_request *r, const char *detail)
{
	const struct crgw_registry_rule *rule = state(r)->rule;
	char text[400];

	/* Learn mode lets an unlisted artifact through as warn mode does. */
	switch (med_sandbox(r)->learn ? CRGW_LOCKFILE_WARN : rule->mode) {
	case CRGW_LOCKFILE_WARN:
		return med_audit_warn(r, CRGW_REASON_LOCKFILE_VIOLATION, detail);
	case CRGW_LOCKFILE_DENY_UNKNOWN:
		med_refuse(r, 403, "Forbidden", CRGW_REASON_LOCKFILE_VIOLATION, detail);
		return false;
	case CRGW_LOCKFILE_OFF:
		break;
	}
	if (rule->fallback_allow)
		return true;
	snprintf(text, sizeof(text), "registries.%s has no lockfile enforcement and its fallback is deny", rule->name);
	med_refuse(r, 403, "Forbidden", CRGW_REASON_LOCKFILE_VIOLATION, text);
	return false;
}

bool reg_too_new(struct med_request *r, long long published)
{
	const struct crgw_registry_rule *rule = state(r)->rule;
	long long age = (long long)time(NULL) - published;
	char detail[300];

	if (!rule->min_release_age || published < 0 || age >= rule->min_release_age)
		return false;
	snprintf(detail, sizeof(detail), "published %lld s ago; registries.%s.min_release_age is %ld s", age < 0 ? 0 : age,
		 rule->name, rule->min_release_age);
	med_refuse(r, 403, "Forbidden", CRGW_REASON_RELEASE_TOO_NEW, detail);
	return true;
}

bool reg_allow(struct med_request *r)
{
	return med_audit_allow(r, NULL);
}

void reg_answer_doc(struct med_request *r, const char *content_type, const char *doc, size_t len)
{
	evbuffer_drain(r->resp_head, evbuffer_get_length(r->resp_head));
	evbuffer_add_printf(r->resp_head, "Content-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n",
			    content_type, len);
	r->status = 200;
	r->chunked_out = false;
	r->bytes_down += len;
	med_client_write(r, doc, len);
	med_local_done(r);
}

void reg_answer_status(struct med_request *r, long status)
{
	char body[400];
	int n;

	if (status < 400 || status > 599) {
		/* Not the upstream's error to pass on: the gateway refuses (a document's redirect is never followed). */
		snprintf(body, sizeof(body), "the upstream %s answered %ld, which the gateway does not follow or pass on",
			 r->host.text, status);
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, body);
		return;
	}
	n = snprintf(body, sizeof(body), "crgw: the upstream %s answered %ld\n", r->host.text, status);
	evbuffer_drain(r->resp_head, evbuffer_get_length(r->resp_head));
	evbuffer_add_printf(r->resp_head, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
			    "Cache-Control: no-store\r\n", n);
	r->status = status;
	r->chunked_out = false;
	med_client_write(r, body, (size_t)n);
	med_local_done(r);
}

/* ---- the metadata store ---------------------------------------------------------------------------- */

static bool meta_dir(const struct med_request *r, char *out, size_t cap)
{
	const struct crgw_config *cfg = cfg_of(r);

	if (!crgw_cache_service())
		return false;
	if ((size_t)snprintf(out, cap, "%s/meta", cfg->cache_dir) >= cap)
		return false;
	return mkdir(out, 0700) == 0 || errno == EEXIST;
}

static void meta_key(struct reg_req *g, const char *url, const char *accept)
{
	unsigned char md[32];
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	g->meta_key[0] = '\0';
	if (!c)
		return;
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	EVP_DigestUpdate(c, g->rule->name, strlen(g->rule->name) + 1);
	EVP_DigestUpdate(c, url, strlen(url) + 1);
	EVP_DigestUpdate(c, accept, strlen(accept));
	EVP_DigestFinal_ex(c, md, NULL);
	EVP_MD_CTX_free(c);
	for (int i = 0; i < 32; i++)
		snprintf(g->meta_key + 2 * i, 3, "%02x", md[i]);
}

/* Reads the stored document: 1 found (fetched time, validators, body into g->stale), 0 not, never fails loudly. */
static int meta_load(struct med_request *r, struct reg_req *g, int64_t *fetched)
{
	char dir[4200], path[4300], head[1024];
	uint64_t max = cfg_of(r)->cache_max_metadata_bytes, len = 0;
	long long t = 0;
	struct stat st;
	ssize_t n;
	int fd, ok = 0;
	char *p, *body;

	if (!g->meta_key[0] || !meta_dir(r, dir, sizeof(dir)))
		return 0;
	snprintf(path, sizeof(path), "%s/%s", dir, g->meta_key);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max + sizeof(head))
		goto out;
	n = pread(fd, head, sizeof(head) - 1, 0);
	if (n <= 0)
		goto out;
	head[n] = '\0';
	/*
	 * magic, fetched, length, etag, last-modified, content type, the credential's secret: one per line,
	 * then the body. Version 1 entries had no secret: they are fetched again.
	 */
	if (strncmp(head, META_MAGIC, strlen(META_MAGIC)))
		goto out;
	p = head + strlen(META_MAGIC);
	char etag[256] = "", modified[64] = "", ctype[128] = "", secret[sizeof(g->cred_secret)] = "";
	char *end;

	/* Not sscanf: its "\n" would skip the empty lines of absent validators that follow. */
	t = strtoll(p, &end, 10);
	if (end == p || *end != '\n')
		goto out;
	p = end + 1;
	len = strtoull(p, &end, 10);
	if (end == p || *end != '\n')
		goto out;
	p = end + 1;
	char *lines[4] = { etag, modified, ctype, secret };
	size_t caps[4] = { sizeof(etag), sizeof(modified), sizeof(ctype), sizeof(secret) };

	for (int i = 0; i < 4; i++) {
		char *eol = strchr(p, '\n');

		if (!eol || (size_t)(eol - p) >= caps[i])
			goto out;
		memcpy(lines[i], p, (size_t)(eol - p));
		lines[i][eol - p] = '\0';
		p = eol + 1;
	}
	off_t at = (off_t)(p - head);

	if ((uint64_t)st.st_size != (uint64_t)at + len || len > max)
		goto out; /* torn or foreign: fetched again */
	/* Fetched with a credential the operator has since withdrawn from this host: not theirs to serve. */
	if (secret[0] && !crgw_vault_credential_serves(CRGW_VAULT_REGISTRY, secret, r->host.text))
		goto out;
	body = malloc(len ? len : 1);
	if (!body)
		goto out;
	if (pread(fd, body, len, at) != (ssize_t)len) {
		free(body);
		goto out;
	}
	if (!g->stale)
		g->stale = evbuffer_new();
	if (g->stale) {
		evbuffer_drain(g->stale, evbuffer_get_length(g->stale));
		evbuffer_add(g->stale, body, len);
		snprintf(g->stale_etag, sizeof(g->stale_etag), "%s", etag);
		snprintf(g->stale_modified, sizeof(g->stale_modified), "%s", modified);
		snprintf(g->content_type, sizeof(g->content_type), "%s", ctype);
		snprintf(g->cred_secret, sizeof(g->cred_secret), "%s", secret);
		*fetched = t;
		ok = 1;
	}
	free(body);
out:
	close(fd);
	return ok;
}

/* Writes the document with its validators (temporary file, then rename): a torn write is never read. */
static void meta_store(struct med_request *r, struct reg_req *g, struct evbuffer *doc, const char *etag,
		       const char *modified, const char *ctype)
{
	char dir[4200], path[4300], tmp[4400], head[1024];
	size_t len = evbuffer_get_length(doc);
	const char *body = (const char *)evbuffer_pullup(doc, -1);
	int fd, n;
	bool ok;

	if (!g->meta_key[0] || !meta_dir(r, dir, sizeof(dir)))
		return;
	snprintf(path, sizeof(path), "%s/%s", dir, g->meta_key);
	snprintf(tmp, sizeof(tmp), "%s/.%s.%d.%p", dir, g->meta_key, (int)getpid(), (void *)r);
	n = snprintf(head, sizeof(head), META_MAGIC "%lld\n%zu\n%s\n%s\n%s\n%s\n", (long long)time(NULL), len, etag,
		     modified, ctype, g->cred_secret);
	if (n < 0 || (size_t)n >= sizeof(head))
		return;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	ok = write(fd, head, (size_t)n) == n && (!len || write(fd, body, len) == (ssize_t)len);
	if (close(fd) || !ok || rename(tmp, path)) {
		unlink(tmp);
		log_warn("registry: a metadata document could not be stored", "dir=%s error=\"%s\"", dir, strerror(errno));
	}
}

/*
 * Notes: small documents a handler derives and keeps (go: a verified zip's sha256 by module, version and
 * go.sum hash). They live in the metadata store under a key of their own ("note" in place of an Accept), are
 * never refreshed from an upstream and never expire: what they record cannot change (an h1 names one zip).
 */
int reg_note_get(struct med_request *r, const char *key, char *out, size_t cap)
{
	struct reg_req *g = state(r);
	int64_t fetched = 0;
	size_t len;

	meta_key(g, key, "note");
	if (!meta_load(r, g, &fetched))
		return -ENOENT;
	len = evbuffer_get_length(g->stale);
	if (len >= cap)
		return -E2BIG;
	evbuffer_copyout(g->stale, out, len);
	out[len] = '\0';
	evbuffer_drain(g->stale, len);
	return 0;
}

void reg_note_put(struct med_request *r, const char *key, const char *value)
{
	struct reg_req *g = state(r);
	struct evbuffer *b = evbuffer_new();

	if (!b)
		return;
	meta_key(g, key, "note");
	if (!evbuffer_add(b, value, strlen(value)))
		meta_store(r, g, b, "", "", "text/plain");
	evbuffer_free(b);
}

/*
 * Provenance. The content cache is shared by every sandbox and keyed by digest alone, but a digest is not a
 * capability: a sandbox names any digest it likes (an OCI blob's path holds one), and so may the metadata
 * of any upstream it may use. A copy that another sandbox fetched from a private registry, with the
 * operator's credential for that registry, must not answer a request for another host. So the cache serves
 * a request only what the host it names has served itself, verified, to this gateway: that host, with the
 * operator's credential for it, would give the sandbox those very bytes. A note per registry, host and
 * digest records it (in the metadata store, like reg_note_put's, in a state of its own so that the
 * request's metadata document is left alone); it never expires, since a digest names one content.
 */
static struct reg_req *vouch_state(struct med_request *r, const struct crgw_digest *d)
{
	struct reg_req *g = state(r), *v;
	char text[CRGW_DIGEST_TEXT_MAX], key[400];

	if (!g->origin[0] || crgw_digest_format(d, text, sizeof(text)) <= 0 || !(v = calloc(1, sizeof(*v))))
		return NULL;
	v->rule = g->rule;
	snprintf(key, sizeof(key), "served %s %s", g->origin, text);
	meta_key(v, key, "vouch");
	return v;
}

static void vouch_state_free(struct reg_req *v)
{
	if (v->stale)
		evbuffer_free(v->stale);
	free(v);
}

bool reg_vouched(struct med_request *r, const struct crgw_digest *d)
{
	struct reg_req *v;
	int64_t fetched = 0;
	bool known;

	/* What the host served with the operator's credential is not for a request that goes without it. */
	if (r->anonymous || !(v = vouch_state(r, d)))
		return false;
	known = meta_load(r, v, &fetched) == 1;
	vouch_state_free(v);
	return known;
}

void reg_vouch(struct med_request *r, const struct crgw_digest *d)
{
	struct reg_req *v = vouch_state(r, d);
	struct evbuffer *b = evbuffer_new();

	int64_t fetched = 0;

	/*
	 * Written once per credential: a manifest by tag, say, passes here on every request. The note holds
	 * the secret whose credential the bytes came with (the request's), so the cache answers for the host
	 * only while the operator presents that secret to it; a fill with another rewrites it.
	 */
	if (v && b && !r->anonymous &&
	    (meta_load(r, v, &fetched) != 1 || strcmp(v->cred_secret, state(r)->cred_secret)) &&
	    !evbuffer_add(b, "1", 1)) {
		memcpy(v->cred_secret, state(r)->cred_secret, sizeof(v->cred_secret));
		meta_store(r, v, b, "", "", "text/plain");
	}
	if (b)
		evbuffer_free(b);
	if (v)
		vouch_state_free(v);
}

/* ---- fetching a metadata document ------------------------------------------------------------------ */

static void meta_deliver(struct med_request *r, struct evbuffer *doc)
{
	struct reg_req *g = state(r);
	size_t len = evbuffer_get_length(doc);
	const char *p = (const char *)evbuffer_pullup(doc, -1);

	r->h = &idle_handler;
	g->meta_done(r, 200, p ? p : "", len);
}

static void meta_on_response(struct med_request *r)
{
	struct reg_req *g = state(r);
	curl_off_t cl = -1;

	r->head_held = true;
	g->meta_is_304 = r->status == 304;
	curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	if (r->status == 200 && cl > 0 && (uint64_t)cl > cfg_of(r)->cache_max_metadata_bytes) {
		char detail[200];

		snprintf(detail, sizeof(detail), "the upstream's document is %lld bytes, over cache.max_metadata_bytes",
			 (long long)cl);
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return;
	}
	if (r->status == 200 && !g->doc && !(g->doc = evbuffer_new()))
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
	else if (g->doc)
		evbuffer_drain(g->doc, evbuffer_get_length(g->doc));
}

static void meta_on_body(struct med_request *r, const char *data, size_t len)
{
	struct reg_req *g = state(r);

	/* What reaches the client is counted when it is answered (reg_answer_doc, a handler's own answer). */
	g->sent += len;
	if (r->status != 200) {
		if (g->sent > DISCARD_MAX)
			med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, "the upstream's error answer is too long");
		return;
	}
	if (evbuffer_get_length(g->doc) + len > cfg_of(r)->cache_max_metadata_bytes) {
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE,
			   "the upstream's document is larger than cache.max_metadata_bytes");
		return;
	}
	evbuffer_add(g->doc, data, len);
}

static bool meta_on_done(struct med_request *r, bool ok, const char *why)
{
	struct reg_req *g = state(r);
	char etag[256] = "", modified[64] = "", ctype[128] = "";

	if (!ok || r->status >= 500) {
		if (!g->stale)
			return false; /* refused as the router refuses every failed upstream */
		log_warn("registry: the upstream failed; a stored metadata document is served", "host=%s why=\"%s\"",
			 r->host.text, ok ? "server error" : why);
		meta_deliver(r, g->stale);
		return true;
	}
	if (r->status == 304 && g->stale) {
		meta_store(r, g, g->stale, g->stale_etag, g->stale_modified, g->content_type);
		meta_deliver(r, g->stale);
		return true;
	}
	if (r->status == 401 && g->on_unauthorized && g->on_unauthorized(r))
		return true;
	if (r->status != 200) {
		r->h = &idle_handler;
		g->meta_done(r, r->status, NULL, 0);
		return true;
	}
	med_resp_field(r, "etag", etag, sizeof(etag));
	med_resp_field(r, "last-modified", modified, sizeof(modified));
	med_resp_field(r, "content-type", ctype, sizeof(ctype));
	snprintf(g->content_type, sizeof(g->content_type), "%s", ctype);
	meta_store(r, g, g->doc, etag, modified, ctype);
	meta_deliver(r, g->doc);
	return true;
}

static const struct med_handler meta_handler = {
	.on_response = meta_on_response,
	.on_response_body = meta_on_body,
	.on_done = meta_on_done,
	.free = reg_free,
	.takes_body = true,
};

/* The header lines of an upstream request: what is asked, and the operator's credential for the host. */
bool reg_upstream_headers(struct med_request *r, const char *accept)
{
	struct reg_req *g = state(r);
	char line[400];
	int err;

	if (accept && *accept) {
		snprintf(line, sizeof(line), "Accept: %s", accept);
		if (!med_header_add(r, line))
			return false;
	}
	if (!med_header_add(r, "User-Agent: crgw-mediation"))
		return false;
	/* A token the handler obtained replaces the operator's credential, and goes only to its own host. */
	if (g->authorization && !strcmp(g->auth_host, r->host.text)) {
		memcpy(g->cred_secret, g->auth_secret, sizeof(g->cred_secret));
		if (med_header_add(r, g->authorization))
			return true;
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
		return false;
	}
	err = med_credential_add(r, CRGW_VAULT_REGISTRY, g->cred_secret);
	if (err) {
		char detail[400];

		snprintf(detail, sizeof(detail), "the credential for %s (secret %s) is unavailable", r->host.text,
			 r->secret_id);
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return false;
	}
	return true;
}

bool reg_set_url(struct med_request *r, const char *url)
{
	free(r->url);
	r->url = strdup(url);
	if (!r->url)
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
	return r->url != NULL;
}

void reg_fetch_meta(struct med_request *r, const char *url, const char *accept, reg_meta_done done)
{
	struct reg_req *g = state(r);
	int64_t fetched = 0;
	bool stored;
	char line[400], detail[300];

	g->meta_done = done;
	snprintf(g->meta_accept, sizeof(g->meta_accept), "%s", accept ? accept : "");
	meta_key(g, url, g->meta_accept);
	/*
	 * Neither loaded nor stored. A request without the operator's credential (learn mode, a host outside
	 * the policy) must not be answered with a document that the credential fetched, nor leave one of its own.
	 */
	if (g->meta_nostore || r->anonymous)
		g->meta_key[0] = '\0';
	stored = meta_load(r, g, &fetched);
	if (stored && (crgw_cache_service_offline() ||
		       (int64_t)time(NULL) - fetched < (int64_t)cfg_of(r)->cache_metadata_ttl_seconds)) {
		meta_deliver(r, g->stale);
		return;
	}
	if (crgw_cache_service_offline()) {
		snprintf(detail, sizeof(detail), "offline (cache.offline): this %s document is not in the cache", g->rule->name);
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return;
	}
	if (r->started)
		med_client_reset(r);
	if (!reg_set_url(r, url) || !reg_upstream_headers(r, accept))
		return;
	g->sent = 0;
	if (stored && g->stale_etag[0]) {
		snprintf(line, sizeof(line), "If-None-Match: %s", g->stale_etag);
		med_header_add(r, line);
	} else if (stored && g->stale_modified[0]) {
		snprintf(line, sizeof(line), "If-Modified-Since: %s", g->stale_modified);
		med_header_add(r, line);
	}
	r->h = &meta_handler;
	med_client_start(r);
}

/* ---- artifacts: from the cache ---------------------------------------------------------------------- */

/*
 * The head of an artifact's answer. X-Crgw-Cache says where the bytes come from (docs/mediation.md): "hit"
 * the content cache, "shared" another request's fetch under way, "miss" the upstream now, into the cache,
 * "uncached" the upstream now, not kept (an integrity the cache cannot key by, or the cache could not take
 * it). crgw-ctl cache warm tells cached from fetched by it.
 */
static void artifact_head(struct med_request *r, int64_t size, const char *cache)
{
	char line[80];

	evbuffer_drain(r->resp_head, evbuffer_get_length(r->resp_head));
	evbuffer_add_printf(r->resp_head, "Content-Type: application/octet-stream\r\nX-Crgw-Cache: %s\r\n", cache);
	if (size >= 0)
		snprintf(line, sizeof(line), "Content-Length: %lld\r\n", (long long)size);
	else
		snprintf(line, sizeof(line), "Transfer-Encoding: chunked\r\n");
	evbuffer_add(r->resp_head, line, strlen(line));
	r->chunked_out = size < 0;
	r->status = 200;
	med_client_write(r, NULL, 0);
}

static bool is_head(const struct med_request *r)
{
	size_t mlen;
	const char *m = med_method(r, &mlen);

	return mlen == 4 && !memcmp(m, "HEAD", 4);
}

static void finish_served(struct med_request *r, bool hit)
{
	struct reg_req *g = state(r);

	crgw_cache_service_observe(hit, (uint64_t)(now_us() - g->t0_us), g->sent);
	r->cache_hit = hit;
	med_local_done(r);
}

static void start_upstream(struct med_request *r, const char *url);
static void fetch_miss(struct med_request *r, const char *url, bool vouched);

/*
 * A hit whose file this process verified: sent by the kernel (sendfile), untouched by us. `hashed`: the
 * reader was just read to the end to verify it, and reader_read counted those bytes as served already.
 */
static void serve_trusted(struct med_request *r, bool hashed)
{
	struct reg_req *g = state(r);
	uint64_t size = crgw_cache_reader_size(g->reader);
	int fd = dup(crgw_cache_reader_fd(g->reader));

	if (fd < 0) {
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of file descriptors");
		return;
	}
	artifact_head(r, (int64_t)size, "hit");
	if (is_head(r)) {
		close(fd);
	} else if (size && med_client_add_file(r, fd, size)) {
		close(fd);
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "cannot send the cached file");
		return;
	} else if (!size) {
		close(fd);
	}
	if (!is_head(r)) {
		if (!hashed)
			crgw_cache_reader_sent(g->reader, size);
		g->sent = size;
		r->bytes_down += size;
	}
	crgw_cache_reader_close(g->reader);
	g->reader = NULL;
	finish_served(r, true);
}

/*
 * A hit this process has not verified (after a restart, or every hit with cache.verify_always): hashed in
 * steps on the loop before any byte is sent, so that a corrupt copy is fetched again instead of served.
 * Then that same reader's file is sent, when it is still the file that was hashed (the reader is then
 * trusted); a file changed meanwhile is fetched again.
 */
static void verify_step(evutil_socket_t fd, short what, void *arg)
{
	struct med_request *r = arg;
	struct reg_req *g = state(r);
	static __thread char scratch[256 * 1024];
	size_t done = 0;
	ssize_t n = 1;

	(void)fd;
	(void)what;
	while (done < VERIFY_STEP && (n = crgw_cache_reader_read(g->reader, scratch, sizeof(scratch))) > 0)
		done += (size_t)n;
	if (n > 0) {
		event_active(g->wake, 0, 0);
		return;
	}
	g->verify_pass = false;
	/*
	 * Not opened again: with verify_always a new reader is never trusted (the hit was refetched, and
	 * offline refused as corrupt), and a second open would count a second hit for one request.
	 */
	if (n == 0 && crgw_cache_reader_trusted(g->reader)) {
		serve_trusted(r, true);
		return;
	}
	crgw_cache_reader_close(g->reader);
	g->reader = NULL;
	if (crgw_cache_service_offline()) {
		log_warn("registry: a cached object did not match its digest; it was removed, and offline it cannot "
			 "be fetched again (a warm while online puts it back)",
			 "sandbox=%s integrity=%s", med_sandbox(r)->id, r->integrity);
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE,
			   "offline (cache.offline): the cached copy was corrupt and was removed");
		return;
	}
	log_warn("registry: a cached object did not match its digest; it was removed and is fetched again",
		 "sandbox=%s integrity=%s", med_sandbox(r)->id, r->integrity);
	/* Fetched as a miss, and kept again: a corrupt copy is repaired by the request that found it. */
	crgw_cache_count_miss(crgw_cache_service());
	fetch_miss(r, r->url, true);
}

static void serve_hit(struct med_request *r)
{
	struct reg_req *g = state(r);

	if (crgw_cache_reader_trusted(g->reader)) {
		serve_trusted(r, false);
		return;
	}
	g->verify_pass = true;
	event_assign(g->wake, r->m->base, -1, 0, verify_step, r);
	event_active(g->wake, 0, 0);
}

/* ---- artifacts: following another request's fill ---------------------------------------------------- */

static void on_notify(void *arg)
{
	/* On the writer's thread: only wakes this request's loop. */
	event_active(arg, 0, 0);
}

static void follower_pump(struct med_request *r)
{
	struct reg_req *g = state(r);
	static __thread char buf[PUMP_STEP];
	ssize_t n;

	if (!g->follower_head) {
		uint64_t written = 0;
		int64_t size = -1;

		crgw_cache_follower_status(g->follower, &written, &size);
		artifact_head(r, size, "shared");
		g->follower_head = true;
	}
	while (med_client_has_room(r) && (n = crgw_cache_follower_read(g->follower, buf, sizeof(buf))) > 0) {
		med_client_write(r, buf, (size_t)n);
		g->sent += (size_t)n;
		r->bytes_down += (size_t)n;
	}
	if (!med_client_has_room(r))
		return; /* on_drain comes back */
	n = crgw_cache_follower_read(g->follower, buf, sizeof(buf));
	if (n > 0) {
		med_client_write(r, buf, (size_t)n);
		g->sent += (size_t)n;
		r->bytes_down += (size_t)n;
		return;
	}
	if (n == -EAGAIN)
		return; /* the fill's notification comes back */
	if (n == 0) {
		crgw_cache_follower_close(g->follower);
		g->follower = NULL;
		finish_served(r, true);
		return;
	}
	{
		char detail[160];

		snprintf(detail, sizeof(detail), "the fetch this request shared failed: %s", strerror((int)-n));
		med_refuse(r, 502, "Bad Gateway",
			   n == -EBADMSG ? CRGW_REASON_INTEGRITY_MISMATCH : CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
	}
}

static void follower_wake(evutil_socket_t fd, short what, void *arg)
{
	struct med_request *r = arg;

	(void)fd;
	(void)what;
	if (!r->finished)
		follower_pump(r);
}

static void follower_drain(struct med_request *r)
{
	follower_pump(r);
}

static const struct med_handler follower_handler = {
	.on_drain = follower_drain,
	.free = reg_free,
};

/* ---- artifacts: from the upstream, verified as they stream ------------------------------------------ */

static bool digest_matches(struct reg_req *g)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;

	if (!g->md || !EVP_DigestFinal_ex(g->md, md, &len))
		return false;
	if (g->want.sha1)
		return len == 20 && !memcmp(md, g->want.sha1_bytes, 20);
	return len == g->want.digest.len && !memcmp(md, g->want.digest.bytes, len);
}

static void artifact_on_response(struct med_request *r)
{
	struct reg_req *g = state(r);
	const struct crgw_config *cfg = cfg_of(r);
	curl_off_t cl = -1;

	r->head_held = true;
	if (r->status != 200)
		return;
	curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	if (cl >= 0 && (uint64_t)cl > cfg->cache_max_artifact_bytes) {
		crgw_cache_fill_abort(g->fill);
		g->fill = NULL;
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE,
			   "the artifact is larger than cache.max_artifact_bytes");
		return;
	}
	artifact_head(r, cl, g->fill || (is_head(r) && g->cacheable) ? "miss" : "uncached");
}

static void fill_failed(struct med_request *r, int err)
{
	struct reg_req *g = state(r);

	/* EFBIG is the cache's own bound, not the file system's: say which, since "File too large" reads as a disk's. */
	log_warn("registry: the artifact is served but not cached", "sandbox=%s integrity=%s error=\"%s\"",
		 med_sandbox(r)->id, r->integrity,
		 err == -EFBIG ? "larger than the whole cache (cache.max_bytes)" : strerror(-err));
	crgw_cache_fill_abort(g->fill);
	g->fill = NULL;
}

static void artifact_on_body(struct med_request *r, const char *data, size_t len)
{
	struct reg_req *g = state(r);
	int err;

	if (r->status != 200) {
		g->sent += len;
		if (g->sent > DISCARD_MAX)
			med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, "the upstream's error answer is too long");
		return;
	}
	if (g->sent + len > cfg_of(r)->cache_max_artifact_bytes) {
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE,
			   "the artifact is larger than cache.max_artifact_bytes");
		return;
	}
	EVP_DigestUpdate(g->md, data, len);
	if (g->fill && (err = crgw_cache_fill_write(g->fill, data, len)) < 0)
		fill_failed(r, err);
	/* The bytes before this chunk go out; this chunk waits, so the end is only sent once verified. */
	r->bytes_down += evbuffer_get_length(g->held);
	med_client_write_buffer(r, g->held);
	evbuffer_add(g->held, data, len);
	g->sent += len;
}

int reg_redirect(struct med_request *r, char *location, size_t cap)
{
	struct reg_req *g = state(r);
	char detail[400];
	const char *host, *slash, *why = NULL;
	struct crgw_host h;
	size_t hlen;

	if (!med_resp_field(r, "location", location, cap) || strncmp(location, "https://", 8)) {
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE,
			   "the upstream redirected to something other than an https URL");
		return -EPERM;
	}
	host = location + 8;
	slash = strchr(host, '/');
	hlen = slash ? (size_t)(slash - host) : strlen(host);
	if (memchr(host, '@', hlen) || memchr(host, ':', hlen) || crgw_host_parse(host, hlen, &h, &why) ||
	    h.kind != CRGW_HOST_NAME) {
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE,
			   "the upstream redirected to a URL with credentials, a port or no host name");
		return -EPERM;
	}
	if (!crgw_policy_registry_host_allowed(g->rule, h.text)) {
		snprintf(detail, sizeof(detail), "the upstream redirected to %s, which is not in registries.%s.allowed_hosts",
			 h.text, g->rule->name);
		med_refuse(r, 403, "Forbidden", CRGW_REASON_HOST_NOT_ALLOWED, detail);
		return -EPERM;
	}
	if (++g->redirects > MAX_REDIRECTS) {
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, "too many redirects");
		return -EPERM;
	}
	r->host = h;
	return 0;
}

static bool follow_redirect(struct med_request *r)
{
	char location[2048];

	if (reg_redirect(r, location, sizeof(location)) == 0)
		start_upstream(r, location);
	return true;
}

/*
 * A verified fill is committed (fsync, rename, directory fsync, index) on a thread of its own: for a large
 * artifact that takes seconds of disk time, which neither the client (whose bytes were verified by the
 * stream's own hash) nor the worker's other connections should wait for. Followers see the end when it
 * is done. The workers wait for every commit before the cache closes (reg_wait_commits).
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t done;
	unsigned pending;
} commits = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };

struct commit_job {
	struct crgw_cache_fill *fill;
	char integrity[136];
};

static void commit_now(struct commit_job *j)
{
	int err = crgw_cache_fill_commit(j->fill);

	if (err)
		log_warn("registry: a verified artifact could not be cached", "integrity=%s error=\"%s\"", j->integrity,
			 strerror(-err));
	free(j);
}

static void *commit_main(void *arg)
{
	commit_now(arg);
	pthread_mutex_lock(&commits.lock);
	if (--commits.pending == 0)
		pthread_cond_broadcast(&commits.done);
	pthread_mutex_unlock(&commits.lock);
	return NULL;
}

static void commit_async(struct crgw_cache_fill *fill, const char *integrity)
{
	struct commit_job *j = calloc(1, sizeof(*j));
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	if (!j) {
		crgw_cache_fill_abort(fill);
		return;
	}
	j->fill = fill;
	snprintf(j->integrity, sizeof(j->integrity), "%s", integrity);
	pthread_mutex_lock(&commits.lock);
	commits.pending++;
	pthread_mutex_unlock(&commits.lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, commit_main, j);
	pthread_attr_destroy(&attr);
	if (rc)
		commit_main(j); /* no thread to be had: on this one, then */
}

void reg_wait_commits(void)
{
	pthread_mutex_lock(&commits.lock);
	while (commits.pending)
		pthread_cond_wait(&commits.done, &commits.lock);
	pthread_mutex_unlock(&commits.lock);
}

static bool artifact_on_done(struct med_request *r, bool ok, const char *why)
{
	struct reg_req *g = state(r);

	if (!ok) {
		char detail[300];

		crgw_cache_fill_abort(g->fill);
		g->fill = NULL;
		if (!r->head_sent)
			return false; /* nothing went out: the router answers 502 and audits it */
		/*
		 * A reset, a stall past idle_timeout, a Content-Length the upstream did not keep: the artifact was
		 * allowed and never delivered, so it is denied like a mismatch, with its package and version, not
		 * only ended. The head went out: the refusal ends the connection, the held bytes never leave.
		 */
		snprintf(detail, sizeof(detail), "the upstream failed mid-artifact after %" PRIu64 " bytes: %s; nothing was cached",
			 g->sent, why ? why : "failed");
		atomic_fetch_add(&med_stats.upstream_failures, 1);
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return true;
	}
	if (r->status >= 300 && r->status < 400 && r->status != 304)
		return follow_redirect(r);
	/* The fill (nothing written to it yet) stays for the retry with a token: its followers keep waiting. */
	if (r->status == 401 && g->on_unauthorized && g->on_unauthorized(r))
		return true;
	if (r->status != 200) {
		crgw_cache_fill_abort(g->fill);
		g->fill = NULL;
		reg_answer_status(r, r->status);
		return true;
	}
	if (is_head(r)) {
		crgw_cache_fill_abort(g->fill);
		g->fill = NULL;
		finish_served(r, false);
		return true;
	}
	if (!digest_matches(g)) {
		char detail[160];

		/*
		 * Not an abort: the commit checks the digest itself and fails the fill with -EBADMSG, keeping
		 * nothing, so the clients following this fetch are refused as integrity_mismatch too (an abort
		 * would tell them -ECANCELED, which reads as the upstream's failure).
		 */
		if (g->fill)
			(void)crgw_cache_fill_commit(g->fill);
		g->fill = NULL;
		snprintf(detail, sizeof(detail), "the upstream's %" PRIu64 " bytes do not match the expected digest", g->sent);
		/* The head went out: the refusal ends the connection, the held bytes never leave. */
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_INTEGRITY_MISMATCH, detail);
		return true;
	}
	if (g->fill) {
		commit_async(g->fill, r->integrity);
		g->fill = NULL;
	}
	if (g->cacheable)
		reg_vouch(r, &g->want.digest);
	r->bytes_down += evbuffer_get_length(g->held);
	med_client_write_buffer(r, g->held);
	finish_served(r, false);
	return true;
}

static const struct med_handler artifact_handler = {
	.on_response = artifact_on_response,
	.on_response_body = artifact_on_body,
	.on_done = artifact_on_done,
	.free = reg_free,
	.takes_body = true,
};

static void start_upstream(struct med_request *r, const char *url)
{
	struct reg_req *g = state(r);
	char copy[REG_URL_MAX];

	snprintf(copy, sizeof(copy), "%s", url); /* `url` may be r->url, which is replaced */
	if (r->started)
		med_client_reset(r);
	EVP_MD_CTX_free(g->md);
	g->md = EVP_MD_CTX_new();
	if (!g->held)
		g->held = evbuffer_new();
	if (!g->md || !g->held ||
	    !EVP_DigestInit_ex(g->md, g->want.sha1 ? EVP_sha1()
					      : g->want.digest.alg == CRGW_DIGEST_SHA512 ? EVP_sha512() : EVP_sha256(),
			       NULL)) {
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
		return;
	}
	evbuffer_drain(g->held, evbuffer_get_length(g->held));
	g->sent = 0;
	if (!reg_set_url(r, copy) || !reg_upstream_headers(r, "*/*"))
		return;
	r->h = &artifact_handler;
	med_client_start(r);
}

void reg_artifact_retry(struct med_request *r, const char *url)
{
	start_upstream(r, url);
}

void reg_fetch_artifact(struct med_request *r, const char *url, const struct reg_want *want)
{
	struct reg_req *g = state(r);
	struct crgw_cache *cache = crgw_cache_service();
	bool cacheable = cache && !want->sha1 && want->digest.alg != CRGW_DIGEST_NONE;
	bool vouched = cacheable && reg_vouched(r, &want->digest);

	g->want = *want;
	g->cacheable = cacheable;
	if (!g->integrity_named)
		reg_set_integrity(r, want);
	if (!reg_set_url(r, url))
		return;
	if (vouched && crgw_cache_read_open(cache, &want->digest, &g->reader) == 0) {
		serve_hit(r);
		return;
	}
	/* read_open counted its miss; a digest this host has not served is one too, or a cold cache shows none. */
	if (cacheable && !vouched)
		crgw_cache_count_miss(cache);
	fetch_miss(r, url, vouched);
}

/*
 * What is not served from the cache: refused offline, else fetched, filling the cache (or following the
 * fill of another request for the same digest) when the artifact can be kept.
 */
static void fetch_miss(struct med_request *r, const char *url, bool vouched)
{
	struct reg_req *g = state(r);
	struct crgw_cache *cache = crgw_cache_service();
	const struct reg_want *want = &g->want;
	bool cacheable = g->cacheable;
	int rc;

	/* A copy another host served is not this host's: the answer is the same, so that it does not tell of one. */
	if (crgw_cache_service_offline()) {
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE,
			   "offline (cache.offline): the artifact is not in the cache");
		return;
	}
	if (cacheable && !is_head(r)) {
		event_assign(g->wake, r->m->base, -1, 0, follower_wake, r);
		rc = crgw_cache_fill_begin(cache, &want->digest, -1, on_notify, g->wake, &g->fill, &g->follower);
		if (rc == -EEXIST && vouched && crgw_cache_read_open(cache, &want->digest, &g->reader) == 0) {
			serve_hit(r);
			return;
		}
		/* Another host's fill is not this host's answer: this request asks its own. */
		if (rc == 0 && g->follower && !vouched && (r->anonymous || !lead_same(g, &want->digest))) {
			crgw_cache_follower_close(g->follower);
			g->follower = NULL;
		}
		if (rc == 0 && g->follower) {
			r->h = &follower_handler;
			follower_pump(r);
			return;
		}
		if (rc == 0 && g->fill && !r->anonymous)
			lead_put(g, &want->digest);
		if (rc && rc != -EEXIST)
			log_warn("registry: the artifact is not cached", "integrity=%s error=\"%s\"", r->integrity,
				 rc == -EFBIG ? "larger than the whole cache (cache.max_bytes)" : strerror(-rc));
	}
	start_upstream(r, url);
}

/* ---- routing --------------------------------------------------------------------------------------- */

/* OCI's parser takes the whole canonical path: put back the prefix the router took off. */
static void oci_whole(struct med_request *r, const char *prefix, const char *path, size_t len)
{
	char whole[MED_PATH_BUF + 16];
	int n = snprintf(whole, sizeof(whole), "%s%.*s", prefix, (int)len, path);

	med_oci(r, whole, (size_t)n);
}

void med_registry(struct med_request *r, const char *path, size_t len, const char *query, size_t qlen)
{
	const char *whole = path;
	size_t wlen = len;

	(void)query;
	(void)qlen;
	if (med_path_take(&path, &len, "/npm"))
		med_npm(r, path, len);
	else if (med_path_take(&path, &len, "/pypi"))
		med_pypi(r, path, len);
	else if (med_path_take(&path, &len, "/go"))
		med_go(r, path, len);
	else if (med_path_take(&path, &len, "/oci"))
		oci_whole(r, "/registry", whole, wlen);
	else
		med_refuse(r, 404, "Not Found", CRGW_REASON_REQUEST_INVALID,
			   "no such registry (the gateway mediates /registry/npm/, /registry/pypi/, /registry/go/, /registry/oci/)");
}

void med_registry_v2(struct med_request *r, const char *path, size_t len)
{
	oci_whole(r, "/v2", path, len);
}
