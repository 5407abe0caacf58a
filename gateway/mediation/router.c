/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The mediation service's connections: identity at accept, a cap per sandbox, request heads through the
 * proxies' strict parser, the canonical path before any routing, the client's body (de-chunked) held or
 * streamed to the upstream with backpressure, and answers streamed back. Refusals answer in text/plain
 * with the reason code (git shows such a body to its user as "remote:" lines) and are audited.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <event2/listener.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "internal.h"
#include "log.h"
#include "path.h"
#include "registry.h"
#include "sandbox.h"

#define HEAD_TIMEOUT_S 30
#define LINGER_S 5

struct med_stats med_stats;

struct med_conn {
	struct med_conn *prev, *next;
	struct crgw_mediation *m;
	struct crgw_sandbox *sb; /* reference */
	struct bufferevent *bev;
	struct crgw_http_parser hp;
	char head[CRGW_HTTP_HEAD_MAX];
	struct med_request *req;
	struct event timer;   /* waiting for a head, idleness, lingering */
	struct event kick;    /* work to do outside a libcurl callback */
	bool closing;         /* the answer goes out, then the connection ends */
	bool lingering;       /* our side is shut; what the client still sends is discarded */
	bool ending;          /* the request ends at the next kick */
	bool corked;          /* TCP_CORK set: a file is on its way out */
	bool aborting;        /* the connection ends at the next kick, whatever is queued */
	int64_t activity_us;  /* the last byte either way */
};

static void conn_close(struct med_conn *c);
static void conn_process(struct med_conn *c);

static int64_t now_us(void)
{
	return crgw_realtime_us();
}

struct crgw_sandbox *med_sandbox(const struct med_request *r)
{
	return r->c->sb;
}

const char *med_field(const struct med_request *r, const char *name, size_t *len)
{
	const struct crgw_http_request *q = &r->c->hp.req;

	for (unsigned i = 0; i < q->nfields; i++)
		if (crgw_http_field_is(r->c->head, q->fields[i].name, name)) {
			*len = q->fields[i].value.len;
			return r->c->head + q->fields[i].value.off;
		}
	*len = 0;
	return NULL;
}

unsigned med_field_count(const struct med_request *r)
{
	return r->c->hp.req.nfields;
}

void med_field_at(const struct med_request *r, unsigned i, const char **name, size_t *nlen, const char **value,
		  size_t *vlen)
{
	const struct crgw_http_field *f = &r->c->hp.req.fields[i];

	*name = r->c->head + f->name.off;
	*nlen = f->name.len;
	*value = r->c->head + f->value.off;
	*vlen = f->value.len;
}

const char *med_method(const struct med_request *r, size_t *len)
{
	*len = r->c->hp.req.method_text.len;
	return r->c->head + r->c->hp.req.method_text.off;
}

/* ---- audit ------------------------------------------------------------------------------------------ */

/* Returns crgw_audit_emit's answer: -ENOBUFS for an event that could not be queued (and loss not allowed). */
static int audit_event(struct med_request *r, enum crgw_audit_kind kind, enum crgw_audit_action action,
		       enum crgw_reason reason, const char *detail)
{
	struct crgw_sandbox *sb = r->c->sb;
	struct crgw_audit_event ev = { .kind = kind, .service = r->service };
	uint64_t suppressed = 0;
	bool allow = action != CRGW_ACTION_DENY;

	if (kind == CRGW_AUDIT_DECISION && !allow && !crgw_sandbox_audit_allowed(sb, &suppressed))
		return 0;
	AUDIT_SET(ev.sandbox_id, sb->id);
	AUDIT_SET(ev.run_id, sb->run_id);
	AUDIT_SET(ev.policy_hash, sb->policy_hash);
	inet_ntop(AF_INET, &sb->guest, ev.src_ip, sizeof(ev.src_ip));
	if (r->host.len)
		AUDIT_SET(ev.dst_host, r->host.text);
	AUDIT_SET(ev.dst_ip, r->upstream_ip);
	ev.dst_port = r->host.len ? r->port : 0;
	AUDIT_SET(ev.operation, r->operation);
	AUDIT_SET(ev.path, r->subject);
	AUDIT_SET(ev.secret_id, r->secret_id);
	AUDIT_SET(ev.ref, r->ref);
	AUDIT_SET(ev.registry, r->registry);
	AUDIT_SET(ev.package, r->package);
	AUDIT_SET(ev.version, r->version);
	AUDIT_SET(ev.integrity, r->integrity);
	ev.cache_hit = r->cache_hit && kind == CRGW_AUDIT_CONNECTION_END;
	if (kind == CRGW_AUDIT_DECISION) {
		ev.action = action;
		ev.reason = action == CRGW_ACTION_ALLOW ? CRGW_REASON_NONE : reason;
	} else if (kind == CRGW_AUDIT_CONNECTION_END) {
		ev.has_bytes = true;
		ev.bytes_up = r->bytes_up;
		ev.bytes_down = r->bytes_down;
		ev.duration_ms = (uint64_t)(now_us() - r->start_us) / 1000;
	}
	AUDIT_SET(ev.detail, detail ? detail : r->detail);
	if (suppressed)
		ev.count = suppressed + 1;
	return crgw_audit_emit(&ev);
}

void med_audit(struct med_request *r, enum crgw_audit_kind kind, bool allow, enum crgw_reason reason,
	       const char *detail)
{
	audit_event(r, kind, allow ? CRGW_ACTION_ALLOW : CRGW_ACTION_DENY, reason, detail);
}

/*
 * What lets an action through unrecorded is refused instead (audit.allow_loss: false, the default): the
 * audit queue is a gateway-wide limit, hence rate_limited. The refusal's own event is lost as well; the
 * audit_loss event that follows counts both.
 */
static bool recorded(struct med_request *r, int emitted)
{
	if (!emitted)
		return true;
	med_refuse(r, 503, "Service Unavailable", CRGW_REASON_RATE_LIMITED,
		   "the audit queue is full: an allowed action is not taken unrecorded (audit.allow_loss)");
	return false;
}

bool med_audit_allow(struct med_request *r, const char *detail)
{
	return recorded(r, audit_event(r, CRGW_AUDIT_DECISION, CRGW_ACTION_ALLOW, CRGW_REASON_NONE, detail));
}

bool med_audit_warn(struct med_request *r, enum crgw_reason reason, const char *detail)
{
	return recorded(r, audit_event(r, CRGW_AUDIT_DECISION, CRGW_ACTION_WARN, reason, detail));
}

bool med_audit_injected(struct med_request *r)
{
	return recorded(r, audit_event(r, CRGW_AUDIT_SECRET_INJECTED, CRGW_ACTION_ALLOW, CRGW_REASON_NONE, NULL));
}

/* ---- answers ---------------------------------------------------------------------------------------- */

static const char *status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 410: return "Gone";
	case 413: return "Content Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Status";
	}
}

bool med_client_has_room(const struct med_request *r)
{
	return evbuffer_get_length(bufferevent_get_output(r->c->bev)) < MED_OUT_HIGH;
}

void med_client_write(struct med_request *r, const char *data, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(r->c->bev);

	r->c->activity_us = now_us();
	if (!r->head_sent) {
		evbuffer_add_printf(out, "HTTP/1.1 %ld %s\r\n", r->status, status_text((int)r->status));
		evbuffer_add_buffer(out, r->resp_head);
		if (r->close_after || r->c->closing)
			evbuffer_add_printf(out, "Connection: close\r\n");
		evbuffer_add(out, "\r\n", 2);
		r->head_sent = true;
	}
	if (!len)
		return;
	if (r->chunked_out) {
		evbuffer_add_printf(out, "%zx\r\n", len);
		evbuffer_add(out, data, len);
		evbuffer_add(out, "\r\n", 2);
	} else {
		evbuffer_add(out, data, len);
	}
}

/*
 * A file goes out with TCP_CORK, uncorked once the output is empty. The client sockets have TCP_NODELAY
 * (answers must not wait), which makes every sendfile(2) push its tail as a short segment; corked, the
 * kernel sends only full ones and the head shares the first. The receiving client, which bounds a bulk
 * transfer on one machine, keeps up better: a 1 GiB hit went from 0.70 of nginx's rate (which corks too:
 * tcp_nopush) to 0.94 (docs/performance.md). A cork the drain never lifts costs the kernel's 200 ms at most.
 */
static void conn_cork(struct med_conn *c, bool on)
{
	int v = on;

	if (c->corked == on)
		return;
	/* Best effort: a socket that refuses only loses the optimization. */
	setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_CORK, &v, sizeof(v));
	c->corked = on;
}

int med_client_add_file(struct med_request *r, int fd, uint64_t size)
{
	r->c->activity_us = now_us();
	conn_cork(r->c, true);
	return evbuffer_add_file(bufferevent_get_output(r->c->bev), fd, 0, (ev_off_t)size) ? -ENOMEM : 0;
}

void med_client_write_buffer(struct med_request *r, struct evbuffer *buf)
{
	struct evbuffer *out = bufferevent_get_output(r->c->bev);
	size_t len = evbuffer_get_length(buf);

	if (!r->head_sent || !len) {
		med_client_write(r, NULL, 0);
		if (!len)
			return;
	}
	r->c->activity_us = now_us();
	if (r->chunked_out)
		evbuffer_add_printf(out, "%zx\r\n", len);
	evbuffer_add_buffer(out, buf); /* the chains move; nothing is copied */
	if (r->chunked_out)
		evbuffer_add(out, "\r\n", 2);
}

static bool is_head_request(const struct med_request *r)
{
	size_t mlen;
	const char *m = med_method(r, &mlen);

	return mlen == 4 && !memcmp(m, "HEAD", 4);
}

/* The request is over (answered, or its connection must end): the rest happens outside any callback. */
static void request_end(struct med_request *r)
{
	r->c->ending = true;
	event_active(&r->c->kick, 0, 0);
}

void med_answer(struct med_request *r, int status, const char *content_type, const char *body, size_t len)
{
	evbuffer_drain(r->resp_head, evbuffer_get_length(r->resp_head));
	evbuffer_add_printf(r->resp_head, "Content-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n",
			    content_type, len);
	r->status = status;
	r->chunked_out = false;
	if (!r->body_done)
		r->close_after = true; /* the body we did not read would be taken for the next request */
	med_client_write(r, body, is_head_request(r) ? 0 : len); /* a HEAD answer's body would be the next answer */
	r->finished = true;
	request_end(r);
}

void med_refuse(struct med_request *r, int status, const char *text, enum crgw_reason reason, const char *detail)
{
	const char *code = crgw_reason_str(reason);
	char body[512];
	int n;

	(void)text;
	atomic_fetch_add(&med_stats.denied, 1);
	med_audit(r, CRGW_AUDIT_DECISION, false, reason, detail);
	if (r->head_sent) {
		/* Too late for a status: ending the connection is the only way to say it failed. */
		r->c->closing = true;
		r->finished = true;
		request_end(r);
		return;
	}
	n = snprintf(body, sizeof(body), "crgw: %s: %s\n", code, detail ? detail : code);
	if (n < 0 || (size_t)n >= sizeof(body))
		n = (int)strlen(body);
	evbuffer_drain(r->resp_head, evbuffer_get_length(r->resp_head));
	evbuffer_add_printf(r->resp_head,
			    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nCache-Control: no-store\r\n"
			    "X-Crgw-Reason: %s\r\n",
			    n, code);
	r->close_after = true;
	r->c->closing = true;
	r->status = status;
	r->chunked_out = false;
	med_client_write(r, body, (size_t)n);
	r->finished = true;
	request_end(r);
}

void med_local_done(struct med_request *r)
{
	r->finished = true;
	if (r->chunked_out)
		evbuffer_add(bufferevent_get_output(r->c->bev), "0\r\n\r\n", 5);
	atomic_fetch_add(&med_stats.bytes_down, r->bytes_down);
	med_audit(r, CRGW_AUDIT_CONNECTION_END, true, CRGW_REASON_NONE, NULL);
	if (!r->body_done)
		r->c->closing = true;
	request_end(r);
}

void med_upstream_done(struct med_request *r, bool ok, const char *why)
{
	if (r->h && r->h->on_done && r->h->on_done(r, ok, why))
		return;
	if (ok) {
		if (!r->head_sent) {
			med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, "the upstream sent no answer");
			return;
		}
		if (r->chunked_out)
			evbuffer_add(bufferevent_get_output(r->c->bev), "0\r\n\r\n", 5);
		atomic_fetch_add(&med_stats.bytes_up, r->bytes_up);
		atomic_fetch_add(&med_stats.bytes_down, r->bytes_down);
		med_audit(r, CRGW_AUDIT_CONNECTION_END, true, CRGW_REASON_NONE, NULL);
		if (!r->body_done)
			r->c->closing = true;
		request_end(r);
		return;
	}
	atomic_fetch_add(&med_stats.upstream_failures, 1);
	if (!r->head_sent) {
		char detail[512];

		snprintf(detail, sizeof(detail), "upstream %s: %s", r->host.text, why ? why : "failed");
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return;
	}
	/* Mid-answer: the client must see a truncated response, never a complete-looking one. */
	{
		char detail[512];

		snprintf(detail, sizeof(detail), "the upstream failed mid-answer: %s", why ? why : "failed");
		atomic_fetch_add(&med_stats.bytes_up, r->bytes_up);
		atomic_fetch_add(&med_stats.bytes_down, r->bytes_down);
		med_audit(r, CRGW_AUDIT_CONNECTION_END, false, CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
	}
	r->c->aborting = true;
	request_end(r);
}

/* ---- requests -------------------------------------------------------------------------------------- */

static void request_free(struct med_request *r)
{
	struct curl_slist *l;

	if (!r)
		return;
	med_client_abort(r);
	if (r->h && r->h->free)
		r->h->free(r);
	/* Header lines may carry a credential: wiped before libcurl frees them (it wipes as well). */
	for (l = r->headers; l; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(r->headers);
	free(r->url);
	if (r->body_buf)
		evbuffer_free(r->body_buf);
	if (r->resp_head)
		evbuffer_free(r->resp_head);
	free(r);
}

static void body_append(struct med_request *r, const char *data, size_t len)
{
	if (r->discarding) {
		r->discarded += len;
		if (r->discarded > MED_DISCARD_MAX) {
			r->finished = true;
			r->c->aborting = true;
			request_end(r);
			return;
		}
	} else {
		evbuffer_add(r->body_buf, data, len);
	}
	if (r->holding && r->h && r->h->on_request_body && !r->finished) {
		int rc = r->h->on_request_body(r, data, len, false);

		if (rc == 0)
			med_release_body(r);
	}
}

static void on_chunk_data(void *arg, const char *data, size_t len)
{
	body_append(arg, data, len);
}

void med_release_body(struct med_request *r)
{
	r->holding = false;
	if (!r->finished)
		med_client_start(r);
}

/* Moves the client's body from its input into the request, as far as the request has room. */
static void feed_body(struct med_conn *c)
{
	struct med_request *r = c->req;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t len;

	while (!r->body_done && !r->finished && (len = evbuffer_get_length(in)) > 0 &&
	       (r->holding || evbuffer_get_length(r->body_buf) < MED_BODY_HIGH)) {
		size_t n = len < 65536 ? len : 65536;
		const char *p;

		if (r->body == MED_BODY_LENGTH) {
			if (n > r->body_left)
				n = (size_t)r->body_left;
			/* Counted before the handler sees them: it may start the upstream, which sizes the body. */
			r->body_left -= n;
			if (r->body_left == 0)
				r->body_done = true;
			p = (const char *)evbuffer_pullup(in, (ssize_t)n);
			body_append(r, p, n);
			evbuffer_drain(in, n);
		} else {
			size_t used = 0;
			int rc;

			p = (const char *)evbuffer_pullup(in, (ssize_t)n);
			rc = crgw_http_parse_body(&c->hp, p, n, &used);
			evbuffer_drain(in, used);
			if (rc == 0) {
				r->body_done = true;
			} else if (rc != -EAGAIN) {
				r->body_done = true; /* nothing more of it is read */
				med_refuse(r, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID,
					   c->hp.error ? c->hp.error : "malformed chunked body");
				return;
			}
		}
		c->activity_us = now_us();
	}
	if (r->finished)
		return;
	if (r->body_done && r->holding && r->h && r->h->on_request_body) {
		int rc = r->h->on_request_body(r, NULL, 0, true);

		if (rc == 0)
			med_release_body(r);
		else if (rc == 1 && !r->finished)
			med_refuse(r, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID, "the request body ended early");
		if (r->finished)
			return;
	}
	if (r->started)
		med_client_resume(r, CURLPAUSE_SEND);
	if (!r->body_done && !r->holding && evbuffer_get_length(r->body_buf) >= MED_BODY_HIGH)
		bufferevent_disable(c->bev, EV_READ);
	else
		bufferevent_enable(c->bev, EV_READ);
}

/*
 * The connections the descriptor limit has room for (set once at start). The proxies' tunnels may take
 * three quarters of the limit (proxy.c); of the quarter left, half is mediation's, at four descriptors
 * a connection (the sandbox's socket, an upstream's, a cached object or a fill's file, a spool). Beyond
 * it a connection is refused 429 rate_limited, as over mediation.max_connections, rather than every
 * service failing its accept() once the descriptors are gone.
 */
static atomic_uint fd_conn_cap = UINT_MAX;

static void set_fd_conn_cap(const struct crgw_config *cfg)
{
	unsigned long long nofile = 0;
	unsigned cap = crgw_nofile_room(1, 8, 4, &nofile);

	if (atomic_exchange(&fd_conn_cap, cap) != cap && cap < cfg->mediation_max_connections)
		log_warn("mediation.max_connections is more than the descriptor limit has room for: more are refused",
			 "max_connections=%u nofile=%llu connections=%u", cfg->mediation_max_connections, nofile, cap);
}

/* Both counts include c itself. A sandbox may hold at most half of the room, as with the tunnels. */
static bool over_cap(struct med_conn *c)
{
	unsigned cap = c->m->cfg->mediation_max_connections, fd_cap = atomic_load(&fd_conn_cap);
	unsigned room = cap < fd_cap ? cap : fd_cap, share = room / 2 ? room / 2 : 1;

	if (share > c->m->cfg->mediation_max_connections_per_sandbox)
		share = c->m->cfg->mediation_max_connections_per_sandbox;
	return atomic_load(&c->sb->counters.mediation_conns) > share ||
	       atomic_load(&med_stats.connections_open) > room;
}

/* Sends the request to its service by the canonical path; a service's prefix is matched on whole segments. */
/*
 * npm names a scoped package's document "@scope%2fname". The canonical path refuses an encoded slash
 * everywhere (it would make one path two); here, in the one place npm puts it, the segment after the
 * registry host that starts with '@', it means exactly "@scope/name", which the npm handler then checks
 * as a package name. Copies the target with that one escape decoded into `out`; false when it does not apply.
 */
static bool npm_scope_target(const char *target, size_t tlen, char *out, size_t cap)
{
	static const char prefix[] = "/registry/npm/";
	size_t n = sizeof(prefix) - 1, at;
	const char *host_end, *esc;

	if (tlen <= n || tlen >= cap || memcmp(target, prefix, n))
		return false;
	host_end = memchr(target + n, '/', tlen - n);
	if (!host_end || (size_t)(host_end - target) + 2 >= tlen || host_end[1] != '@')
		return false;
	at = (size_t)(host_end - target) + 2;
	esc = NULL;
	for (size_t i = at; i + 2 < tlen && target[i] != '/' && target[i] != '?'; i++)
		if (target[i] == '%' && target[i + 1] == '2' && (target[i + 2] == 'f' || target[i + 2] == 'F')) {
			esc = target + i;
			break;
		}
	if (!esc)
		return false;
	memcpy(out, target, (size_t)(esc - target));
	out[esc - target] = '/';
	memcpy(out + (esc - target) + 1, esc + 3, tlen - (size_t)(esc - target) - 3);
	return true;
}

static void route(struct med_request *r, const char *target, size_t tlen)
{
	char path[MED_PATH_BUF], scoped[MED_PATH_BUF];
	size_t plen = 0, qlen = 0;
	const char *query = NULL, *why = NULL, *rest;
	size_t rlen;
	int rc;

	AUDIT_SET_RAW(r->subject, target, tlen);
	if (npm_scope_target(target, tlen, scoped, sizeof(scoped))) {
		target = scoped;
		tlen -= 2;
	}
	rc = med_path_canon(target, tlen, path, sizeof(path), &plen, &query, &qlen, &why);
	if (rc) {
		r->service = "mediation";
		med_refuse(r, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID, why ? why : "the path is not canonical");
		return;
	}
	AUDIT_SET_RAW(r->subject, path, plen);
	rest = path;
	rlen = plen;
	if (med_path_take(&rest, &rlen, "/git")) {
		r->service = "git";
		med_git(r, rest, rlen, query, qlen);
	} else if (med_path_take(&rest, &rlen, "/secrets")) {
		r->service = "secrets";
		med_secrets(r, rest, rlen, query, qlen);
	} else if (med_path_take(&rest, &rlen, "/meta")) {
		r->service = "meta";
		med_meta(r, rest, rlen);
	} else if (med_path_take(&rest, &rlen, "/registry")) {
		r->service = "registry";
		med_registry(r, rest, rlen, query, qlen);
	} else if (med_path_take(&rest, &rlen, "/v2")) {
		/* OCI clients put the registry API's /v2/ before a mirror's path: /v2/registry/oci/<host>/... */
		r->service = "registry";
		med_registry_v2(r, rest, rlen);
	} else {
		r->service = "mediation";
		med_refuse(r, 404, "Not Found", CRGW_REASON_REQUEST_INVALID,
			   "no such service (the gateway serves /git/, /registry/, /secrets/ and /meta/)");
	}
}

/* A complete head is at the start of the input: take it and start its request. */
/* A request of `c`, made its current one; NULL (the connection closed) when out of memory. */
static struct med_request *request_new(struct med_conn *c)
{
	struct med_request *r = calloc(1, sizeof(*r));

	if (r) {
		r->body_buf = evbuffer_new();
		r->resp_head = evbuffer_new();
	}
	if (!r || !r->body_buf || !r->resp_head) {
		request_free(r);
		conn_close(c);
		return NULL;
	}
	r->m = c->m;
	r->c = c;
	r->service = "mediation";
	r->start_us = now_us();
	c->req = r;
	return r;
}

static void start_request(struct med_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	const struct crgw_http_request *q = &c->hp.req;
	struct med_request *r = request_new(c);

	if (!r)
		return;
	evbuffer_remove(in, c->head, q->head_len);
	r->port = 443;
	r->status = 200;
	atomic_fetch_add(&med_stats.requests, 1);
	if (q->method == HTTP_CONNECT || q->upgrade) {
		r->body_done = true;
		med_refuse(r, 405, "Method Not Allowed", CRGW_REASON_REQUEST_INVALID,
			   "CONNECT and protocol upgrades are not mediated");
		return;
	}
	if (q->chunked) {
		r->body = MED_BODY_CHUNKED;
		c->hp.on_body = on_chunk_data;
		c->hp.body_arg = r;
	} else if (q->content_length) {
		r->body = MED_BODY_LENGTH;
		r->body_left = q->content_length;
	} else {
		r->body_done = true;
	}
	if (!q->keep_alive)
		r->close_after = true;
	route(r, c->head + q->target.off, q->target.len);
	if (c->req == r && !r->finished)
		feed_body(c);
}

static void read_head(struct med_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t len = evbuffer_get_length(in), n = len < CRGW_HTTP_HEAD_MAX ? len : CRGW_HTTP_HEAD_MAX;
	const char *p;
	int rc;

	if (n == 0)
		return;
	p = (const char *)evbuffer_pullup(in, (ssize_t)n);
	rc = crgw_http_parse_head(&c->hp, p, n);
	if (rc == -EAGAIN)
		return;
	if (rc == 0) {
		start_request(c);
		return;
	}
	/* A head that does not parse: answered, and the connection ends (its framing is unknown). */
	{
		struct med_request *r = request_new(c);

		if (!r)
			return;
		r->body_done = true;
		evbuffer_drain(in, len);
		med_refuse(r, rc == -E2BIG ? 431 : 400, "Bad Request", CRGW_REASON_REQUEST_INVALID,
			   rc == -E2BIG ? "the request head is larger than 16 KiB"
					: c->hp.error ? c->hp.error : "malformed request");
	}
}

static void conn_process(struct med_conn *c)
{
	if (c->lingering) {
		struct evbuffer *in = bufferevent_get_input(c->bev);

		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	if (c->req) {
		if (!c->req->finished && !c->ending)
			feed_body(c);
		return;
	}
	if (c->closing)
		return;
	read_head(c);
}

/* ---- the connection --------------------------------------------------------------------------------- */

/* `why` names what ended an exchange still under way (its connection_end event). */
static void conn_close_why(struct med_conn *c, const char *why)
{
	if (c->req) {
		struct med_request *r = c->req;

		c->req = NULL;
		if (r->started && !r->finished) {
			/* The exchange ends with what moved. */
			r->finished = true;
			med_audit(r, CRGW_AUDIT_CONNECTION_END, true, CRGW_REASON_NONE, why);
		}
		request_free(r);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		c->m->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	event_del(&c->timer);
	event_del(&c->kick);
	bufferevent_free(c->bev);
	atomic_fetch_sub(&c->sb->counters.mediation_conns, 1);
	atomic_fetch_sub(&med_stats.connections_open, 1);
	crgw_sandbox_unref(c->sb);
	free(c);
}

static void conn_close(struct med_conn *c)
{
	conn_close_why(c, "the client closed the connection");
}

static void arm_timer(struct med_conn *c, unsigned seconds)
{
	struct timeval tv = { seconds, 0 };

	event_add(&c->timer, &tv);
}

/* Shuts our side and reads what the client still sends for a while, so that a reset does not eat the answer. */
static void conn_linger(struct med_conn *c)
{
	c->lingering = true;
	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	bufferevent_enable(c->bev, EV_READ);
	arm_timer(c, LINGER_S);
}

/* Outside every callback: the ended request goes, then the connection ends or reads its next request. */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct med_conn *c = arg;
	struct med_request *r = c->req;

	(void)fd;
	(void)what;
	if (c->aborting) {
		conn_close(c);
		return;
	}
	if (c->ending && r) {
		c->ending = false;
		c->req = NULL;
		if (r->close_after || !r->body_done)
			c->closing = true;
		request_free(r);
		crgw_http_parser_init(&c->hp);
	} else if (r) {
		/* The upstream took body bytes: read more of the client's. */
		conn_process(c);
		return;
	}
	if (c->closing) {
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 && !c->lingering)
			conn_linger(c);
		return;
	}
	arm_timer(c, HEAD_TIMEOUT_S);
	bufferevent_enable(c->bev, EV_READ);
	conn_process(c);
}

void med_upstream_activity(struct med_request *r)
{
	r->c->activity_us = now_us();
}

void med_body_consumed(struct med_request *r)
{
	r->c->activity_us = now_us();
	if (!r->body_done && !(bufferevent_get_enabled(r->c->bev) & EV_READ))
		event_active(&r->c->kick, 0, 0);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct med_conn *c = arg;
	unsigned idle = c->m->cfg->mediation_idle_timeout;

	(void)fd;
	(void)what;
	if (c->lingering || !c->req) {
		conn_close(c);
		return;
	}
	if (now_us() - c->activity_us >= (int64_t)idle * 1000000) {
		if (c->req->started && !c->req->finished) {
			c->req->finished = true;
			med_audit(c->req, CRGW_AUDIT_CONNECTION_END, false, CRGW_REASON_NONE, "idle timeout");
		}
		conn_close(c);
		return;
	}
	arm_timer(c, idle / 4 + 1);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct med_conn *c = arg;

	(void)bev;
	c->activity_us = now_us();
	if (c->req && !evtimer_pending(&c->timer, NULL))
		arm_timer(c, c->m->cfg->mediation_idle_timeout / 4 + 1);
	conn_process(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct med_conn *c = arg;

	(void)bev;
	c->activity_us = now_us();
	/* Below the low watermark libevent calls this after every write, so also after the last one. */
	if (c->corked && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_cork(c, false);
	if (c->req && (c->req->pause & CURLPAUSE_RECV))
		med_client_resume(c->req, CURLPAUSE_RECV);
	if (c->req && !c->req->finished && c->req->h && c->req->h->on_drain)
		c->req->h->on_drain(c->req);
	if (c->closing && !c->req && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 && !c->lingering)
		conn_linger(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct med_conn *c = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (c->lingering || (what & BEV_EVENT_ERROR) || !c->req || !c->req->body_done) {
			conn_close(c);
			return;
		}
		/* The client finished sending (half-close) and waits for its answer. */
		c->closing = true;
	}
}

/* Takes `fd` (owned) as a connection of `sb` (a reference, owned from here). */
static int conn_start(struct crgw_mediation *m, int fd, struct crgw_sandbox *sb)
{
	struct med_conn *c = calloc(1, sizeof(*c));

	if (c)
		c->bev = bufferevent_socket_new(m->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c || !c->bev) {
		free(c);
		close(fd);
		crgw_sandbox_unref(sb);
		return -ENOMEM;
	}
	c->m = m;
	c->sb = sb;
	c->activity_us = now_us();
	atomic_fetch_add(&sb->counters.mediation_conns, 1);
	atomic_fetch_add(&med_stats.connections_open, 1);
	c->next = m->conns;
	if (c->next)
		c->next->prev = c;
	m->conns = c;
	crgw_http_parser_init(&c->hp);
	evtimer_assign(&c->timer, m->base, on_timer, c);
	event_assign(&c->kick, m->base, -1, 0, on_kick, c);
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, MED_OUT_LOW, 0);
	/* libevent's default is 16 KiB a call: a pack would cost a system call and a loop turn per 16 KiB. */
	bufferevent_set_max_single_write(c->bev, MED_OUT_HIGH);
	bufferevent_set_max_single_read(c->bev, MED_BODY_HIGH);
	arm_timer(c, HEAD_TIMEOUT_S);
	if (over_cap(c)) {
		struct med_request *r = request_new(c);

		if (!r)
			return 0;
		r->body_done = true;
		med_refuse(r, 429, "Too Many Requests", CRGW_REASON_RATE_LIMITED, "too many mediation connections");
		bufferevent_enable(c->bev, EV_WRITE);
		return 0;
	}
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	return 0;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct crgw_sandbox *sb;
	int one = 1;

	(void)l;
	sb = crgw_sandbox_for_accepted(fd, sa, salen, "mediation");
	if (!sb) {
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	conn_start(arg, fd, sb);
}

int crgw_mediation_adopt(struct crgw_mediation *m, int fd, struct crgw_sandbox *sb)
{
	crgw_sandbox_ref(sb);
	return conn_start(m, fd, sb);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	(void)l;
	crgw_accept_guard_trip(&((struct crgw_mediation *)arg)->guard);
}

int crgw_mediation_new(struct event_base *base, const struct crgw_config *cfg, struct crgw_dns_server *dns,
		       struct crgw_mediation **out)
{
	struct crgw_mediation *m = calloc(1, sizeof(*m));
	int err, fd;

	if (!m)
		return -ENOMEM;
	m->cfg = cfg;
	m->base = base;
	m->dns = dns;
	set_fd_conn_cap(cfg);
	err = med_client_init(m);
	if (err) {
		free(m);
		return err;
	}
	err = crgw_listen_reuseport(SOCK_STREAM, CRGW_MEDIATION_PORT, &fd);
	if (err) {
		med_client_fini(m);
		free(m);
		return err;
	}
	m->listener = evconnlistener_new(base, on_accept, m, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (!m->listener) {
		close(fd);
		med_client_fini(m);
		free(m);
		return -ENOMEM;
	}
	crgw_accept_guard_init(&m->guard, base, m->listener, "mediation");
	evconnlistener_set_error_cb(m->listener, on_accept_error);
	*out = m;
	return 0;
}

void crgw_mediation_thread_fini(void)
{
	med_oci_thread_fini();
}

void crgw_mediation_close_released(struct crgw_mediation *m)
{
	struct med_conn *c = m->conns, *next;

	for (; c; c = next) {
		next = c->next;
		if (atomic_load(&c->sb->released))
			conn_close_why(c, "the sandbox was released");
	}
}

void crgw_mediation_free(struct crgw_mediation *m)
{
	if (!m)
		return;
	while (m->conns)
		conn_close(m->conns);
	med_go_drain(); /* the requests are gone; a zip verification's thread may still hold the cache */
	crgw_accept_guard_fini(&m->guard);
	evconnlistener_free(m->listener);
	med_client_fini(m);
	/* The cache closes after the workers: no commit may still be writing into it then. */
	reg_wait_commits();
	free(m);
}

void crgw_mediation_get_stats(struct crgw_mediation_stats *out)
{
	out->connections_open = atomic_load(&med_stats.connections_open);
	out->requests = atomic_load(&med_stats.requests);
	out->denied = atomic_load(&med_stats.denied);
	out->upstream_failures = atomic_load(&med_stats.upstream_failures);
	out->secrets_injected = atomic_load(&med_stats.secrets_injected);
	out->bytes_up = atomic_load(&med_stats.bytes_up);
	out->bytes_down = atomic_load(&med_stats.bytes_down);
}
