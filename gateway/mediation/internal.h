/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the router (connections, requests, answers), the upstream client and the handlers (git, secrets,
 * meta) share. Not for other modules: they use mediation.h.
 */
#ifndef CRGW_MEDIATION_INTERNAL_H
#define CRGW_MEDIATION_INTERNAL_H

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "audit.h"
#include "crgw/policy.h"
#include "http_request.h"
#include "listen.h"
#include "mediation.h"
#include "vault.h"

#define MED_PATH_BUF 4096
/* The client's output held before the upstream is paused, and where it is resumed. */
#define MED_OUT_HIGH (1024 * 1024)
#define MED_OUT_LOW (256 * 1024)
/* The client's request body held for the upstream before the client is no longer read. */
#define MED_BODY_HIGH (512 * 1024)
/* A refused body read to its end (so that the client can read the answer) before the connection is cut. */
#define MED_DISCARD_MAX (4ULL << 30)
#define MED_RESOLVE_ADDRS 16

struct med_conn;
struct crgw_git_credential;
struct med_request;

struct crgw_mediation {
	const struct crgw_config *cfg;
	struct event_base *base;
	struct crgw_dns_server *dns;
	struct evconnlistener *listener;
	struct crgw_accept_guard guard;
	struct med_conn *conns;
	CURLM *multi;
	struct event curl_timer;
};

/* What a handler does with a request once routed; each hook may be NULL. */
struct med_handler {
	/* The response head arrived: may change the status to answer (0: pass it on). */
	void (*on_response)(struct med_request *r);
	/* Response body bytes as they go to the client. */
	void (*on_response_body)(struct med_request *r, const char *data, size_t len);
	/* Request body bytes as they arrive, while r->holding: returns 1 to go on holding, 0 to start the upstream, -1 refused (answered). */
	int (*on_request_body)(struct med_request *r, const char *data, size_t len, bool end);
	/* The upstream transfer ended: true when the handler took it over (answered, or started another transfer). */
	bool (*on_done)(struct med_request *r, bool ok, const char *why);
	/* The client's output drained below MED_OUT_LOW: a handler that writes from its own source writes more. */
	void (*on_drain)(struct med_request *r);
	void (*free)(struct med_request *r);
	/* on_response_body consumes the body: the router writes none of it to the client itself. */
	bool takes_body;
};

enum med_body { MED_BODY_NONE, MED_BODY_LENGTH, MED_BODY_CHUNKED };

/* One request of a connection, and its upstream transfer. */
struct med_lookup;

struct med_request {
	struct crgw_mediation *m;
	struct med_conn *c;
	const struct med_handler *h;
	void *handler_state;
	const char *service;  /* "git", "secrets", "meta" */
	char operation[16];   /* git: fetch or push */
	char subject[256];    /* what the audit names: a repository path, a secret's request path */
	char secret_id[65];
	char ref[256];        /* a ref a push was refused for */
	char detail[160];
	/* registry mediation: what the audit names */
	char registry[8];
	char package[256];
	char version[128];
	char integrity[136];
	bool cache_hit;
	struct crgw_host host;
	uint16_t port;
	bool anonymous; /* learn mode let through a host its policy does not list: no operator credential */
	/* the upstream request */
	char *url;
	bool upstream_get; /* a GET upstream whatever the client's method (a HEAD answered from a whole document) */
	struct curl_slist *headers; /* wiped when freed: may carry a credential */
	CURL *easy;
	bool started, finished;
	unsigned pause; /* CURLPAUSE_RECV / CURLPAUSE_SEND bits in force */
	char resolve_entry[1024];
	struct curl_slist *resolve, *connect_to;
	struct in6_addr allowed[MED_RESOLVE_ADDRS]; /* where the upstream may be connected (v4 mapped) */
	unsigned nallowed;
	struct med_lookup *lookup[2]; /* A, AAAA outstanding */
	bool resolving;
	unsigned refused; /* addresses the policy refused */
	struct crgw_decision refusal;
	char upstream_ip[46];
	/* the client's body */
	enum med_body body;
	uint64_t body_left; /* MED_BODY_LENGTH: bytes still to come from the client */
	bool body_done;
	bool holding;       /* the handler reads the body before anything goes upstream */
	bool discarding;    /* refused, answered when the body ends: its bytes are counted, not kept */
	uint64_t discarded;
	struct evbuffer *body_buf;
	/* the response */
	long status;
	struct evbuffer *resp_head; /* the head for the client, built as header lines arrive */
	bool head_sent, chunked_out, close_after;
	bool head_held; /* set by on_response: the handler sends the head itself (med_client_write) */
	uint64_t bytes_up, bytes_down;
	int64_t start_us;
	char answer_reason[40];
};

/* router.c */
/* Answers the request with `status` and a text body that names the reason, audits the refusal, ends the request. */
void med_refuse(struct med_request *r, int status, const char *text, enum crgw_reason reason, const char *detail);
/* Answers with a complete response built by a handler (type and body borrowed); ends the request. */
void med_answer(struct med_request *r, int status, const char *content_type, const char *body, size_t len);
/* Audits a refusal or an event other than a decision. */
void med_audit(struct med_request *r, enum crgw_audit_kind kind, bool allow, enum crgw_reason reason,
	       const char *detail);
/*
 * Audits an allowed decision, or one let through with action warn (a registry's lockfile in warn mode,
 * learn mode). Returns false when its event could not be queued and loss is not allowed: the request has
 * then been refused (503, rate_limited) and ended, and the caller takes no step further.
 */
bool med_audit_allow(struct med_request *r, const char *detail);
bool med_audit_warn(struct med_request *r, enum crgw_reason reason, const char *detail);
/* The secret_injected event of a request about to carry an operator's secret; false as above. */
bool med_audit_injected(struct med_request *r);
/* Ends a request the handler served itself (from the cache): audits its end like a finished transfer. */
void med_local_done(struct med_request *r);
struct crgw_sandbox *med_sandbox(const struct med_request *r);
const char *med_field(const struct med_request *r, const char *name, size_t *len);
/* The request's header fields, in order. */
unsigned med_field_count(const struct med_request *r);
void med_field_at(const struct med_request *r, unsigned i, const char **name, size_t *nlen, const char **value,
		  size_t *vlen);
/* The request's method, as the client sent it. */
const char *med_method(const struct med_request *r, size_t *len);
/* Writes response bytes to the client (framed when chunked); false when the client is gone. */
void med_client_write(struct med_request *r, const char *data, size_t len);
/* Writes all of `buf` to the client (framed when chunked), moving its chains: `buf` is left empty. */
void med_client_write_buffer(struct med_request *r, struct evbuffer *buf);
/* Queues `size` bytes of the file `fd` (taken: closed once sent) for the client, sent with sendfile(2). */
int med_client_add_file(struct med_request *r, int fd, uint64_t size);
/* The client's output has room for more. */
bool med_client_has_room(const struct med_request *r);
/* The upstream transfer ended: `ok`, or why not. */
void med_upstream_done(struct med_request *r, bool ok, const char *why);
/* The upstream sent bytes the client does not see yet (a document read whole, a zip spooled): not idle. */
void med_upstream_activity(struct med_request *r);
/* The upstream took body bytes (from a libcurl callback): the client is read again if it was paused. */
void med_body_consumed(struct med_request *r);
/* Starts feeding held body bytes to the upstream (after a handler's on_request_body returned 0). */
void med_release_body(struct med_request *r);

/* client.c: the upstream side, libcurl on the worker's loop */
int med_client_init(struct crgw_mediation *m);
void med_client_fini(struct crgw_mediation *m);
/*
 * Resolves r->host through the gateway's DNS, checks every address (rebinding defence), then sends
 * the request: r->url, r->headers, the client's body as it comes. Refuses the request itself when no
 * address passes. Response hooks run as the answer streams.
 */
void med_client_start(struct med_request *r);
/* Tells the transfer that body bytes arrived, or that the client's output drained. */
void med_client_resume(struct med_request *r, unsigned what);
void med_client_abort(struct med_request *r);
/*
 * Ends the current upstream transfer (if any) so that the request can make another: a handler's on_done
 * calls it, sets r->url, r->host, r->port and the header lines again, then calls med_client_start.
 * Header lines are wiped and freed; the response head gathered so far is dropped.
 */
void med_client_reset(struct med_request *r);
/* A field of the upstream's response head (case-insensitive name) into `out`; false when absent or too long. */
bool med_resp_field(const struct med_request *r, const char *name, char *out, size_t cap);

/*
 * The operator's credential for r->host from `list` (git.credentials, registries.credentials), added as a
 * header. `used` (NULL, or room for a secret id, 65 bytes) gets the id of the secret presented, "" for none.
 */
int med_credential_add(struct med_request *r, enum crgw_vault_realm realm, char *used);

/* Header lines for an upstream request: appended to r->headers (wiped on free). false: out of memory. */
bool med_header_add(struct med_request *r, const char *line);

/* git.c, secrets.c, meta.c: each takes a routed request; `path` is the canonical path after its prefix. */
void med_git(struct med_request *r, const char *path, size_t len, const char *query, size_t qlen);
void med_secrets(struct med_request *r, const char *path, size_t len, const char *query, size_t qlen);
void med_meta(struct med_request *r, const char *path, size_t len);
/* registry.c: /registry/<npm|pypi|go|oci>/ and the OCI mirror form /v2/ */
void med_registry(struct med_request *r, const char *path, size_t len, const char *query, size_t qlen);
void med_registry_v2(struct med_request *r, const char *path, size_t len);
/* oci.c: wipes and frees the calling worker thread's cached registry tokens. */
void med_oci_thread_fini(void);
/* Waits until every verified artifact handed to a commit thread is in the cache (or failed). */
void reg_wait_commits(void);

extern struct med_stats {
	atomic_uint_fast64_t connections_open, requests, denied, upstream_failures, secrets_injected, bytes_up,
		bytes_down;
} med_stats;

#endif
