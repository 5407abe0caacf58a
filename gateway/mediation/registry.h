/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the registry handlers (npm.c, pypi.c, go.c, oci.c) share: the policy's registry section, metadata
 * documents fetched whole (bounded, kept on disk with their validators for a short TTL, and served stale
 * in offline mode), and artifacts streamed to the client while they are hashed, the last bytes held back
 * until the digest matches, filled into and served from the content cache. Not for other modules.
 */
#ifndef CRGW_MEDIATION_REGISTRY_H
#define CRGW_MEDIATION_REGISTRY_H

#include <openssl/evp.h>

#include "cache.h"
#include "internal.h"

#define REG_URL_MAX (MED_PATH_BUF + 600)

/* A metadata document arrived (status 200), or the upstream answered `status` otherwise (doc NULL). */
typedef void (*reg_meta_done)(struct med_request *r, long status, const char *doc, size_t len);

/* What an artifact is checked against: a digest of the content cache's kinds, or SHA-1 (old npm entries). */
struct reg_want {
	struct crgw_digest digest; /* alg NONE with sha1 set: SHA-1, not cached */
	bool sha1;
	uint8_t sha1_bytes[20];
};

struct reg_req {
	const struct crgw_registry_rule *rule; /* the policy's, or learn_rule */
	struct crgw_registry_rule learn_rule;   /* learn mode: the policy's with its lockfile mode warn */
	const char *kind;   /* "npm", "pypi", "go", "oci": the path segment */
	void *own;          /* the handler's own state */
	void (*own_free)(void *own);
	/* metadata */
	reg_meta_done meta_done;
	char meta_key[65];
	char meta_accept[256];
	bool meta_nostore;  /* fetched for this request only: the store is neither read nor written */
	struct evbuffer *doc;
	struct evbuffer *stale; /* what the store held, when it may still serve */
	char stale_etag[256], stale_modified[64];
	bool meta_is_304;
	/* artifacts */
	struct reg_want want;
	EVP_MD_CTX *md;
	struct evbuffer *held;
	struct crgw_cache_fill *fill;
	struct crgw_cache_follower *follower;
	struct crgw_cache_reader *reader;
	struct event *wake;
	bool verify_pass;   /* hashing a cached copy before it is trusted */
	bool integrity_named; /* the handler set r->integrity itself (go: go.sum's h1): the digest does not replace it */
	bool follower_head;
	bool cacheable;     /* the cache keys this artifact: X-Crgw-Cache says "miss", not "uncached" */
	unsigned redirects;
	char origin[254]; /* the host the request named: the one a cached artifact must have come from */
	unsigned lead;	  /* leading a fill from origin: its slot in registry.c's table of leads, plus 1 */
	int64_t t0_us;
	uint64_t sent;
	char content_type[128]; /* the metadata document's, as the upstream gave it */
	/*
	 * The secret whose credential fetched what the request works with ("": none): presented upstream
	 * (reg_upstream_headers), or recorded beside a document the store held. The store keeps it with what
	 * it stores, and serves an entry only while the operator still presents that secret for its host.
	 */
	char cred_secret[65];
	/* upstream authentication beyond registries.credentials (the OCI token flow) */
	char *authorization; /* a whole header line, owned, wiped on free; sent only to auth_host */
	char auth_host[254];
	char auth_secret[65]; /* the secret whose credential bought `authorization` ("": none) */
	/* The upstream answered 401: true when the handler took the request over (it retries or answers). */
	bool (*on_unauthorized)(struct med_request *r);
};

/*
 * Starts a request of /registry/<kind>/<host>/...: the policy must enable `registry` (else
 * registry_not_allowed) and list the host in its allowed_hosts (else host_not_allowed). Takes the host
 * segment off *path. Returns the new state (r->handler_state), or NULL when the request was answered.
 */
struct reg_req *reg_begin(struct med_request *r, const char *kind, const char *registry, const char **path,
			  size_t *len);

/* The handler's own state of `size` bytes, zeroed, freed with the request; NULL (answered) when out of memory. */
void *reg_own_alloc(struct med_request *r, size_t size);

/*
 * reg_begin for a handler that finds the host itself (OCI: the path's form decides where it is): the same
 * checks, in the same order, with the same reasons, on `host` (`hlen` bytes, borrowed). A NULL host skips
 * the host's checks (OCI's ping, which names no registry).
 */
struct reg_req *reg_begin_host(struct med_request *r, const char *kind, const char *registry, const char *host,
			       size_t hlen);

/* Sends the artifact request again (after on_unauthorized got a token): the fill, if any, is kept. */
void reg_artifact_retry(struct med_request *r, const char *url);

/* Frees the request's registry state (a handler's `free` hook: every handler a registry request runs uses it). */
void reg_free(struct med_request *r);

/* The URL a sandbox uses for `host` and `path` through this gateway: http://<gw>:8170/registry/<kind>/<host><path>. */
void reg_gateway_url(struct med_request *r, char *out, size_t cap, const char *host, const char *path);

/* Fetches a metadata document (GET `url`, with `accept`), from the store when fresh; calls `done`. */
void reg_fetch_meta(struct med_request *r, const char *url, const char *accept, reg_meta_done done);

/*
 * Serves the artifact at `url` (on r->host) checked against `want`, from the cache when it holds it and the
 * host the request named has served those bytes before (reg_vouched); otherwise from the upstream.
 */
void reg_fetch_artifact(struct med_request *r, const char *url, const struct reg_want *want);

/*
 * Whether the host the request named (registry and host) has itself served, verified, the content of digest
 * `d` to this gateway: only then may a cached copy answer the request. reg_vouch records that it has.
 */
bool reg_vouched(struct med_request *r, const struct crgw_digest *d);
void reg_vouch(struct med_request *r, const struct crgw_digest *d);

/* r->url = a copy of `url`; false (answered) when out of memory. */
bool reg_set_url(struct med_request *r, const char *url);

/* The header lines of an upstream request: Accept (unless NULL or ""), the operator's credential for r->host. */
bool reg_upstream_headers(struct med_request *r, const char *accept);

/*
 * The upstream answered a redirect: its Location (into `location`, `cap` bytes) must be https to an allowed
 * host, without credentials or a port, within the redirect budget; then r->host is that host and 0 is
 * returned. Otherwise the request is refused (answered) and -EPERM returned.
 */
int reg_redirect(struct med_request *r, char *location, size_t cap);

/* Parses an integrity string (sha512-/sha256- SRI, sha1-, sha256:<hex>, sha512:<hex>); false if none of these. */
bool reg_want_parse(const char *text, size_t len, struct reg_want *out);

/*
 * An artifact the allowlist does not name: refuses it (lockfile_violation) in deny_unknown mode, and
 * without enforcement when fallback is deny; audits a warning in warn mode. true when it may go on.
 */
bool reg_unlisted(struct med_request *r, const char *detail);

/* The release cooldown: true (and refused with release_too_new) when `published` is too recent. */
bool reg_too_new(struct med_request *r, long long published);

/* Names the digest an artifact is checked against in the request's audit events. */
void reg_set_integrity(struct med_request *r, const struct reg_want *w);

/* Audits the request's decision to go ahead (allow). */
bool reg_allow(struct med_request *r);

/* Answers a metadata document the handler built; audits the end of the exchange. */
void reg_answer_doc(struct med_request *r, const char *content_type, const char *doc, size_t len);

/* The upstream answered `status` for something asked: passed on to the client as a plain answer. */
void reg_answer_status(struct med_request *r, long status);

/*
 * A note the handler keeps in the metadata store (registry.c, "Notes"): `value` (NUL-terminated, borrowed)
 * under `key`; never expires. reg_note_get copies it into `out`: 0, -ENOENT, -E2BIG.
 */
void reg_note_put(struct med_request *r, const char *key, const char *value);
int reg_note_get(struct med_request *r, const char *key, char *out, size_t cap);

/* The handlers. */
void med_npm(struct med_request *r, const char *path, size_t len);
void med_pypi(struct med_request *r, const char *path, size_t len);

/* `path`: the whole canonical path (/v2/... or /registry/oci/...), which oci_path_parse takes. */
void med_oci(struct med_request *r, const char *path, size_t len);

void med_go(struct med_request *r, const char *path, size_t len);
/* Waits (up to a minute) until no zip verification thread of go.c runs: before the loops and the cache go. */
void med_go_drain(void);

#endif
