/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OCI distribution API, read-only, in both of its forms (/v2/registry/oci/<host>/... for a containers
 * registries.conf mirror, /registry/oci/<host>/v2/... for a client given a base URL): the ping, manifests by
 * tag and by digest, blobs, tag lists. Images are content-addressed, so there is no lockfile: every blob and
 * every manifest asked for by digest is checked against that digest while it streams (blobs) or before a
 * byte of it is sent (manifests, which are small and read whole), and the content cache keeps it. A tag is
 * metadata: its manifest document is kept in the metadata store for its short TTL, checked against the
 * upstream's Docker-Content-Digest when it gives one. The gateway answers the upstream's token challenges
 * itself (the sandbox never sees a challenge, a credential or a token) and keeps tokens per worker.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "cache/service.h"
#include "config.h"
#include "log.h"
#include "ociproto.h"
#include "registry.h"
#include "sandbox.h"
#include "wwwauth.h"

#define MANIFEST_ACCEPT OCI_MT_MANIFEST ", " OCI_MT_INDEX ", " OCI_MT_DOCKER_MANIFEST ", " OCI_MT_DOCKER_LIST
#define API_VERSION "Docker-Distribution-API-Version: registry/2.0\r\n"
/* A token endpoint's answer is read at most this far; a token longer than TOKEN_MAX is refused. */
#define TOKEN_DOC_MAX (64 * 1024)
#define TOKEN_MAX 8192
/* The distribution spec's default lifetime when expires_in is absent, and what the gateway keeps at most. */
#define TOKEN_TTL_DEFAULT 60
#define TOKEN_TTL_MAX 300
#define TOKEN_SLOTS 32
#define TOKEN_KEY_MAX 600

struct oci_req {
	struct oci_path p;
	struct crgw_digest want; /* the reference, when it is a digest */
	/* what a request retries once it holds a token */
	bool artifact;
	char url[REG_URL_MAX];
	char accept[256];
	reg_meta_done done;
	bool token_tried;
	bool realm_unbound;      /* the realm's credential is not for this registry: asked without it */
	char token_secret[65];   /* the secret whose credential asks the realm for the token ("": none) */
	bool saved_upstream_get;
	struct crgw_host reg_host; /* the registry's, while the token comes from the realm's host */
	char token_key[TOKEN_KEY_MAX];
	struct evbuffer *tok;
};

static void oci_req_free(void *own)
{
	struct oci_req *q = own;

	if (!q)
		return;
	if (q->tok) {
		size_t n = evbuffer_get_length(q->tok);

		if (n)
			explicit_bzero(evbuffer_pullup(q->tok, -1), n);
		evbuffer_free(q->tok);
	}
	free(q);
}

static struct reg_req *state(struct med_request *r)
{
	return r->handler_state;
}

static struct oci_req *own(struct med_request *r)
{
	return state(r)->own;
}

static bool is_head(const struct med_request *r)
{
	size_t mlen;
	const char *m = med_method(r, &mlen);

	return mlen == 4 && !memcmp(m, "HEAD", 4);
}

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_s(void)
{
	return mono_us() / 1000000;
}

/* ---- tokens, per worker ----------------------------------------------------------------------------- */

/*
 * Keyed by registry host and scope ("repository:<name>:pull"): every sandbox of this gateway gets the same
 * token for the same repository, since it comes from the operator's credential, and any sandbox whose
 * policy allows the host could fetch the same content with it; but only a sandbox whose policy also allows
 * the realm the token came from uses it (another asks the registry, and is refused at its challenge). The
 * line is the whole header; it is wiped when it is replaced. Never printed.
 */
struct token_slot {
	char key[TOKEN_KEY_MAX];
	char realm[254];
	char secret[65]; /* whose credential bought it ("": none): used only while the operator presents it */
	char *line;
	int64_t expires;
};

static __thread struct token_slot tokens[TOKEN_SLOTS];

static void slot_clear(struct token_slot *s)
{
	if (s->line) {
		explicit_bzero(s->line, strlen(s->line));
		free(s->line);
	}
	memset(s, 0, sizeof(*s));
}

void med_oci_thread_fini(void)
{
	for (int i = 0; i < TOKEN_SLOTS; i++)
		slot_clear(&tokens[i]);
}

/*
 * The token for `key` that `registry` may be sent, with the secret that bought it (*secret). One bought
 * with a credential the operator has since withdrawn from this registry (a reload) is dropped.
 */
static const char *token_get(const char *key, const char *registry, const struct crgw_registry_rule *rule,
			     const char **secret)
{
	int64_t now = mono_s();

	for (int i = 0; i < TOKEN_SLOTS; i++)
		if (tokens[i].line && !strcmp(tokens[i].key, key)) {
			if (tokens[i].expires <= now ||
			    (tokens[i].secret[0] &&
			     !crgw_vault_credential_serves(CRGW_VAULT_REGISTRY, tokens[i].secret, registry))) {
				slot_clear(&tokens[i]);
			} else if (crgw_policy_registry_host_allowed(rule, tokens[i].realm)) {
				*secret = tokens[i].secret;
				return tokens[i].line;
			}
		}
	return NULL;
}

static void token_drop(const char *key)
{
	for (int i = 0; i < TOKEN_SLOTS; i++)
		if (tokens[i].line && !strcmp(tokens[i].key, key))
			slot_clear(&tokens[i]);
}

static void token_put(const char *key, const char *realm, const char *secret, const char *line, int64_t ttl)
{
	struct token_slot *s = &tokens[0];

	if (ttl <= 0)
		return;
	token_drop(key);
	for (int i = 0; i < TOKEN_SLOTS; i++) {
		if (!tokens[i].line) {
			s = &tokens[i];
			break;
		}
		if (tokens[i].expires < s->expires)
			s = &tokens[i];
	}
	slot_clear(s);
	s->line = strdup(line);
	if (!s->line)
		return;
	snprintf(s->key, sizeof(s->key), "%s", key);
	snprintf(s->realm, sizeof(s->realm), "%s", realm);
	snprintf(s->secret, sizeof(s->secret), "%s", secret);
	s->expires = mono_s() + ttl;
}

/* The token line the registry's requests carry (NULL: none), bought with `secret`'s credential ("": none). */
static bool set_authorization(struct med_request *r, const char *line, const char *secret)
{
	struct reg_req *g = state(r);

	if (g->authorization) {
		explicit_bzero(g->authorization, strlen(g->authorization));
		free(g->authorization);
		g->authorization = NULL;
	}
	if (!line)
		return true;
	g->authorization = strdup(line);
	snprintf(g->auth_host, sizeof(g->auth_host), "%s", r->host.text);
	snprintf(g->auth_secret, sizeof(g->auth_secret), "%s", secret);
	return g->authorization != NULL;
}

/* ---- answers ---------------------------------------------------------------------------------------- */

static void answer_ping(struct med_request *r)
{
	evbuffer_drain(r->resp_head, evbuffer_get_length(r->resp_head));
	evbuffer_add_printf(r->resp_head,
			    "Content-Type: application/json\r\nContent-Length: 2\r\nCache-Control: no-store\r\n" API_VERSION);
	r->status = 200;
	r->chunked_out = false;
	if (is_head(r)) {
		med_client_write(r, NULL, 0);
	} else {
		r->bytes_down += 2;
		med_client_write(r, "{}", 2);
	}
	med_local_done(r);
}

static void answer_manifest(struct med_request *r, const char *type, const char *digest, const char *doc, size_t len)
{
	evbuffer_drain(r->resp_head, evbuffer_get_length(r->resp_head));
	evbuffer_add_printf(r->resp_head,
			    "Content-Type: %s\r\nContent-Length: %zu\r\nDocker-Content-Digest: %s\r\n"
			    "Cache-Control: no-store\r\n" API_VERSION,
			    type, len, digest);
	r->status = 200;
	r->chunked_out = false;
	if (is_head(r)) {
		med_client_write(r, NULL, 0);
	} else {
		r->bytes_down += len;
		med_client_write(r, doc, len);
	}
	med_local_done(r);
}

static void refuse_oom(struct med_request *r)
{
	med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
}

/* ---- the content cache for manifests ---------------------------------------------------------------- */

static void no_notify(void *arg)
{
	(void)arg;
}

/*
 * Keeps a manifest whose digest was computed here: content-addressed, so a later request by digest to this
 * host may use it (reg_vouched: never a request to another host).
 */
static void manifest_keep(struct med_request *r, const struct crgw_digest *d, const char *doc, size_t len)
{
	struct crgw_cache *c = crgw_cache_service();
	struct crgw_cache_fill *fill = NULL;
	struct crgw_cache_follower *follower = NULL;
	int rc;

	if (c)
		reg_vouch(r, d);
	if (!c || crgw_cache_fill_begin(c, d, (int64_t)len, no_notify, NULL, &fill, &follower))
		return; /* already there, or not cacheable now: served all the same */
	if (follower) {
		crgw_cache_follower_close(follower);
		return;
	}
	rc = crgw_cache_fill_write(fill, doc, len);
	if (rc) {
		crgw_cache_fill_abort(fill);
		return;
	}
	rc = crgw_cache_fill_commit(fill);
	if (rc)
		log_warn("oci: a verified manifest could not be cached", "error=\"%s\"", strerror(-rc));
}

/* A manifest by digest from the cache, read whole through the verifying reader. false: fetch it. */
static bool manifest_hit(struct med_request *r, struct oci_req *q)
{
	struct crgw_cache *c = crgw_cache_service();
	struct crgw_cache_reader *rd = NULL;
	struct oci_manifest m = { 0 };
	int64_t t0 = mono_us();
	uint64_t size;
	size_t at = 0;
	ssize_t n = 0;
	char *buf;

	if (!c || !reg_vouched(r, &q->want) || crgw_cache_read_open(c, &q->want, &rd))
		return false;
	size = crgw_cache_reader_size(rd);
	if (size > r->m->cfg->cache_max_metadata_bytes || size > OCI_MANIFEST_MAX_BYTES ||
	    !(buf = malloc((size_t)size + 1))) {
		crgw_cache_reader_close(rd);
		return false;
	}
	/* One byte more than the object: the read that returns 0 is the one that checked the digest. */
	while (at <= size && (n = crgw_cache_reader_read(rd, buf + at, (size_t)size + 1 - at)) > 0)
		at += (size_t)n;
	crgw_cache_reader_close(rd);
	if (n != 0 || at != size || oci_manifest_parse(buf, at, NULL, &m, NULL)) {
		log_warn("oci: a cached manifest is not used; it is fetched again", "sandbox=%s integrity=%s",
			 med_sandbox(r)->id, r->integrity);
		free(buf);
		return false;
	}
	r->cache_hit = true;
	crgw_cache_service_observe(true, (uint64_t)(mono_us() - t0), size);
	answer_manifest(r, m.media_type, q->p.reference, buf, at);
	oci_manifest_free(&m);
	free(buf);
	return true;
}

/* ---- upstream fetches ------------------------------------------------------------------------------- */

static void fetch_meta(struct med_request *r, const char *url, const char *accept, reg_meta_done done)
{
	struct oci_req *q = own(r);

	snprintf(q->url, sizeof(q->url), "%s", url);
	snprintf(q->accept, sizeof(q->accept), "%s", accept);
	q->done = done;
	q->artifact = false;
	r->upstream_get = true; /* a HEAD of a manifest is answered from the whole document */
	reg_fetch_meta(r, url, accept, done);
}

static void on_manifest(struct med_request *r, long status, const char *doc, size_t len)
{
	struct reg_req *g = state(r);
	struct oci_req *q = own(r);
	struct oci_manifest m = { 0 };
	struct crgw_digest d256, told, got;
	char told_text[CRGW_DIGEST_TEXT_MAX + 8], text[CRGW_DIGEST_TEXT_MAX], detail[400];
	const char *why = NULL;
	int rc;

	if (status != 200) {
		reg_answer_status(r, status);
		return;
	}
	rc = oci_manifest_parse(doc, len, g->content_type[0] ? g->content_type : NULL, &m, &why);
	if (rc) {
		snprintf(detail, sizeof(detail), "the upstream's manifest is refused: %s", why ? why : strerror(-rc));
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return;
	}
	if (crgw_digest_compute(CRGW_DIGEST_SHA256, doc, len, &d256)) {
		oci_manifest_free(&m);
		refuse_oom(r);
		return;
	}
	if (q->p.by_digest) {
		if (crgw_digest_compute(q->want.alg, doc, len, &got) || !crgw_digest_equal(&got, &q->want)) {
			oci_manifest_free(&m);
			med_refuse(r, 502, "Bad Gateway", CRGW_REASON_INTEGRITY_MISMATCH,
				   "the upstream's manifest does not match the digest it was asked for; nothing was cached");
			return;
		}
	} else if (med_resp_field(r, "docker-content-digest", told_text, sizeof(told_text)) &&
		   !crgw_digest_parse(told_text, strlen(told_text), &told)) {
		/* Given on a fresh answer (not by the store, which keeps only the document): it must agree. */
		if (crgw_digest_compute(told.alg, doc, len, &got) || !crgw_digest_equal(&got, &told)) {
			oci_manifest_free(&m);
			med_refuse(r, 502, "Bad Gateway", CRGW_REASON_INTEGRITY_MISMATCH,
				   "the upstream's manifest does not match its Docker-Content-Digest");
			return;
		}
	}
	manifest_keep(r, &d256, doc, len);
	if (q->p.by_digest && q->want.alg != CRGW_DIGEST_SHA256)
		manifest_keep(r, &q->want, doc, len);
	if (q->p.by_digest)
		snprintf(text, sizeof(text), "%s", q->p.reference);
	else
		crgw_digest_format(&d256, text, sizeof(text));
	if (!q->p.by_digest)
		snprintf(r->integrity, sizeof(r->integrity), "%s", text);
	answer_manifest(r, m.media_type, text, doc, len);
	oci_manifest_free(&m);
}

static void on_tags(struct med_request *r, long status, const char *doc, size_t len)
{
	if (status != 200) {
		reg_answer_status(r, status);
		return;
	}
	reg_answer_doc(r, "application/json", doc, len);
}

/* ---- the token flow --------------------------------------------------------------------------------- */

static void append_escaped(char *out, size_t cap, const char *s)
{
	size_t at = strlen(out);

	for (; *s && at + 4 < cap; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || strchr("-._~", ch))
			out[at++] = (char)ch;
		else
			at += (size_t)snprintf(out + at, cap - at, "%%%02X", ch);
	}
	out[at] = '\0';
}

/* The request's own transfer goes back to the registry, with the token, from where the 401 came. */
static void retry_with(struct med_request *r, const char *line)
{
	struct oci_req *q = own(r);

	r->host = q->reg_host;
	r->port = 443;
	r->upstream_get = q->saved_upstream_get;
	if (!set_authorization(r, line, q->token_secret)) {
		refuse_oom(r);
		return;
	}
	if (q->artifact)
		reg_artifact_retry(r, q->url);
	else
		reg_fetch_meta(r, q->url, q->accept, q->done);
}

static void token_fail(struct med_request *r, const char *detail)
{
	r->host = own(r)->reg_host;
	r->port = 443;
	med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
}

static void token_on_response(struct med_request *r)
{
	struct oci_req *q = own(r);
	curl_off_t cl = -1;

	r->head_held = true;
	curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	if (cl > TOKEN_DOC_MAX) {
		token_fail(r, "the token endpoint's answer is too long");
		return;
	}
	if (!q->tok && !(q->tok = evbuffer_new()))
		refuse_oom(r);
	else
		evbuffer_drain(q->tok, evbuffer_get_length(q->tok));
}

static void token_on_body(struct med_request *r, const char *data, size_t len)
{
	struct oci_req *q = own(r);

	if (evbuffer_get_length(q->tok) + len > TOKEN_DOC_MAX) {
		token_fail(r, "the token endpoint's answer is too long");
		return;
	}
	evbuffer_add(q->tok, data, len);
}

/* The token as a header line, or NULL (with *why): printable ASCII without spaces, never a header's end. */
static char *token_line(struct evbuffer *doc, int64_t *ttl, const char **why)
{
	size_t len = evbuffer_get_length(doc);
	char *text = (char *)evbuffer_pullup(doc, -1), *line = NULL;
	json_t *root = text ? json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
	json_t *tok = json_object_get(root, "token"), *exp = json_object_get(root, "expires_in");
	const char *value;
	size_t vlen;

	if (!json_is_string(tok) || !json_string_length(tok))
		tok = json_object_get(root, "access_token");
	value = json_string_value(tok);
	vlen = value ? json_string_length(tok) : 0;
	*why = NULL;
	*ttl = json_is_integer(exp) && json_integer_value(exp) > 0 ? (int64_t)json_integer_value(exp) : TOKEN_TTL_DEFAULT;
	if (*ttl > TOKEN_TTL_MAX)
		*ttl = TOKEN_TTL_MAX;
	if (!root)
		*why = "its answer is not JSON";
	else if (!vlen)
		*why = "its answer has no token";
	else if (vlen > TOKEN_MAX)
		*why = "its token is too long";
	for (size_t i = 0; !*why && i < vlen; i++)
		if (value[i] <= 0x20 || value[i] >= 0x7f)
			*why = "its token holds bytes a header cannot carry";
	if (!*why) {
		line = malloc(vlen + 32);
		if (line)
			snprintf(line, vlen + 32, "Authorization: Bearer %s", value);
		else
			*why = "out of memory";
	}
	/* The parsed copies of the token ("token" and "access_token" often both hold it) go wiped. */
	const char *key;
	json_t *v;

	json_object_foreach(root, key, v)
		if (json_is_string(v))
			explicit_bzero((char *)json_string_value(v), json_string_length(v));
	json_decref(root);
	return line;
}

static bool token_on_done(struct med_request *r, bool ok, const char *why)
{
	struct oci_req *q = own(r);
	char detail[900], *line;
	int64_t ttl = 0;

	if (!ok) {
		snprintf(detail, sizeof(detail), "the token endpoint %s failed: %s", r->host.text, why ? why : "failed");
		token_fail(r, detail);
		return true;
	}
	if (r->status != 200 && q->realm_unbound) {
		snprintf(detail, sizeof(detail),
			 "the token endpoint %s answered %ld to a request without its credential, which is not for "
			 "%s (registries.credentials.%s.token_for)",
			 r->host.text, r->status, q->reg_host.text, r->host.text);
		token_fail(r, detail);
		return true;
	}
	if (r->status != 200) {
		snprintf(detail, sizeof(detail), "the token endpoint %s answered %ld (is registries.credentials right?)",
			 r->host.text, r->status);
		token_fail(r, detail);
		return true;
	}
	line = token_line(q->tok, &ttl, &why);
	explicit_bzero(evbuffer_pullup(q->tok, -1), evbuffer_get_length(q->tok));
	evbuffer_drain(q->tok, evbuffer_get_length(q->tok));
	if (!line) {
		snprintf(detail, sizeof(detail), "the token endpoint %s is refused: %s", r->host.text, why);
		token_fail(r, detail);
		return true;
	}
	/* A margin, so that a token is not sent in its last seconds. One bought without the credential is not kept. */
	if (!r->anonymous)
		token_put(q->token_key, r->host.text, q->token_secret, line, ttl - 5);
	retry_with(r, line);
	explicit_bzero(line, strlen(line));
	free(line);
	return true;
}

static void token_free(struct med_request *r)
{
	reg_free(r);
}

static const struct med_handler token_handler = {
	.on_response = token_on_response,
	.on_response_body = token_on_body,
	.on_done = token_on_done,
	.free = token_free,
	.takes_body = true,
};

/* The upstream's Bearer challenge, parsed into `w` (the caller frees it); NULL when it sent none. */
static const struct med_wwwauth_challenge *bearer_challenge(struct med_request *r, struct med_wwwauth *w)
{
	struct curl_header *h = NULL;
	size_t amount = 1;

	for (size_t i = 0; i < amount; i++) {
		const struct med_wwwauth_challenge *c;

		if (curl_easy_header(r->easy, "WWW-Authenticate", i, CURLH_HEADER, -1, &h) != CURLHE_OK)
			return NULL;
		amount = h->amount;
		med_wwwauth_free(w);
		if (med_wwwauth_parse(h->value, strlen(h->value), w, NULL))
			continue;
		c = med_wwwauth_find(w, "Bearer");
		if (c)
			return c;
	}
	return NULL;
}

/*
 * Whether the operator's credential for a token realm may buy a token for this registry: the registry's
 * own host, or one its entry's token_for lists. Otherwise any allowed registry could have the token that
 * another's private realm sells sent to itself, by naming that realm in its challenge.
 */
static bool realm_credential_for(const char *realm, const char *registry)
{
	struct crgw_git_credential c;

	if (crgw_vault_credential(CRGW_VAULT_REGISTRY, realm, &c))
		return true; /* none to withhold */
	return crgw_vault_token_for(&c, registry);
}

/*
 * A 401 from the registry: its Bearer challenge names a realm, which must be an https URL on an allowed
 * host; the gateway asks it for a pull token of this one repository (never more, whatever the challenge's
 * scope says), with the operator's credential for the realm's host when there is one and it is for this
 * registry (realm_credential_for), and sends the request again with the token. A Basic challenge gets
 * nothing more: the host's credential, if any, was sent already. One token per request: a second 401 is
 * the client's answer.
 */
static bool oci_unauthorized(struct med_request *r)
{
	struct reg_req *g = state(r);
	struct oci_req *q = own(r);
	const struct med_wwwauth_challenge *c;
	struct med_wwwauth w = { 0 };
	struct med_wwwauth_bearer b;
	struct crgw_host realm;
	const char *why = NULL;
	char detail[600], url[REG_URL_MAX], scope[OCI_NAME_MAX + 32];
	int err;

	if (q->token_tried)
		return false;
	q->token_tried = true;
	if (g->authorization)
		token_drop(q->token_key); /* the registry refused the token this request was sent with */
	c = bearer_challenge(r, &w);
	if (!c) {
		med_wwwauth_free(&w);
		return false;
	}
	if (med_wwwauth_bearer(c, &b, &why)) {
		snprintf(detail, sizeof(detail), "the upstream's token challenge is refused: %s", why ? why : "malformed");
		med_wwwauth_free(&w);
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return true;
	}
	if (crgw_host_parse(b.host, strlen(b.host), &realm, &why) || realm.kind != CRGW_HOST_NAME ||
	    !crgw_policy_registry_host_allowed(g->rule, realm.text)) {
		snprintf(detail, sizeof(detail), "the upstream's token realm %s is not in registries.oci.allowed_hosts", b.host);
		med_wwwauth_free(&w);
		med_refuse(r, 403, "Forbidden", CRGW_REASON_HOST_NOT_ALLOWED, detail);
		return true;
	}
	if (b.port != 443 || strpbrk(b.realm, " \"\\<>`{}|^#") || strlen(b.realm) > 1024) {
		med_wwwauth_free(&w);
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE,
			   "the upstream's token realm is not an https URL on port 443 the gateway can use");
		return true;
	}
	snprintf(url, sizeof(url), "%s%s", b.realm, strchr(b.realm, '?') ? "&" : "?");
	if (b.service) {
		snprintf(url + strlen(url), sizeof(url) - strlen(url), "service=");
		append_escaped(url, sizeof(url), b.service);
		snprintf(url + strlen(url), sizeof(url) - strlen(url), "&");
	}
	snprintf(scope, sizeof(scope), "repository:%s:pull", q->p.name);
	snprintf(url + strlen(url), sizeof(url) - strlen(url), "scope=");
	append_escaped(url, sizeof(url), scope);
	med_wwwauth_free(&w);

	q->reg_host = r->host;
	q->saved_upstream_get = r->upstream_get;
	set_authorization(r, NULL, "");
	med_client_reset(r);
	r->host = realm;
	r->port = 443;
	r->upstream_get = true;
	free(r->url);
	r->url = strdup(url);
	if (!r->url || !med_header_add(r, "Accept: application/json") || !med_header_add(r, "User-Agent: crgw-mediation")) {
		refuse_oom(r);
		return true;
	}
	q->realm_unbound = !realm_credential_for(realm.text, q->reg_host.text);
	q->token_secret[0] = '\0';
	err = q->realm_unbound ? 0 : med_credential_add(r, CRGW_VAULT_REGISTRY, q->token_secret);
	if (err) {
		snprintf(detail, sizeof(detail), "the credential for the token realm %s (secret %s) is unavailable",
			 r->host.text, r->secret_id);
		r->host = q->reg_host;
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return true;
	}
	r->h = &token_handler;
	med_client_start(r);
	return true;
}

/* ---- the request ----------------------------------------------------------------------------------- */

static void upstream_url(struct med_request *r, const struct oci_path *p, const char *what, char *out, size_t cap)
{
	snprintf(out, cap, "https://%s/v2/%s/%s%s%s", r->host.text, p->name, what, p->reference[0] ? "/" : "",
		 p->reference);
}

void med_oci(struct med_request *r, const char *path, size_t len)
{
	struct oci_path p;
	struct reg_req *g;
	struct oci_req *q;
	const char *why = NULL, *line, *secret = "";
	char url[REG_URL_MAX], detail[300];
	struct reg_want want;

	if (oci_path_parse(path, len, &p, &why)) {
		/* The policy first, as for every registry: a sandbox without OCI learns only that. */
		if (reg_begin_host(r, "oci", "oci", NULL, 0)) {
			snprintf(detail, sizeof(detail), "not an OCI registry request the gateway serves: %s",
				 why ? why : "malformed");
			med_refuse(r, 404, "Not Found", CRGW_REASON_REQUEST_INVALID, detail);
		}
		return;
	}
	g = reg_begin_host(r, "oci", "oci", p.host[0] ? p.host : NULL, strlen(p.host));
	if (!g)
		return;
	q = calloc(1, sizeof(*q));
	if (!q) {
		refuse_oom(r);
		return;
	}
	q->p = p;
	g->own = q;
	g->own_free = oci_req_free;
	g->on_unauthorized = oci_unauthorized;
	if (p.ep == OCI_PING) {
		answer_ping(r);
		return;
	}
	AUDIT_SET(r->package, p.name);
	AUDIT_SET(r->version, p.reference);
	snprintf(q->token_key, sizeof(q->token_key), "%s\nrepository:%s:pull", r->host.text, p.name);
	/* A token the operator's credential bought is not for a request that goes without it (learn mode). */
	line = r->anonymous ? NULL : token_get(q->token_key, r->host.text, g->rule, &secret);
	if (line && !set_authorization(r, line, secret)) {
		refuse_oom(r);
		return;
	}
	if (p.by_digest && crgw_digest_parse(p.reference, strlen(p.reference), &q->want)) {
		med_refuse(r, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID, "the digest is not sha256 or sha512");
		return;
	}
	switch (p.ep) {
	case OCI_MANIFEST:
		if (p.by_digest) {
			memset(&want, 0, sizeof(want));
			want.digest = q->want;
			reg_set_integrity(r, &want);
		}
		if (!reg_allow(r) || (p.by_digest && manifest_hit(r, q)))
			return;
		/* A manifest by digest is content: the content cache keeps it, never the metadata store. */
		g->meta_nostore = p.by_digest;
		upstream_url(r, &p, "manifests", url, sizeof(url));
		fetch_meta(r, url, MANIFEST_ACCEPT, on_manifest);
		return;
	case OCI_BLOB:
		memset(&want, 0, sizeof(want));
		want.digest = q->want;
		reg_set_integrity(r, &want);
		if (!reg_allow(r))
			return;
		upstream_url(r, &p, "blobs", url, sizeof(url));
		snprintf(q->url, sizeof(q->url), "%s", url);
		q->artifact = true;
		reg_fetch_artifact(r, url, &want);
		return;
	case OCI_TAGS_LIST:
		if (!reg_allow(r))
			return;
		upstream_url(r, &p, "tags/list", url, sizeof(url));
		fetch_meta(r, url, "application/json", on_tags);
		return;
	case OCI_PING:
		break;
	}
	med_refuse(r, 404, "Not Found", CRGW_REASON_REQUEST_INVALID, "not an OCI registry request the gateway serves");
}
