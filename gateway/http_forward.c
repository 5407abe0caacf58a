/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP forwarding on one client connection (absolute-URI requests on the explicit proxy, and redirected
 * port 80): each request is parsed, decided on its own and sent upstream with its head rewritten, one at
 * a time (pipelined requests wait their turn). Bodies of known length move with splice(2); the gateway
 * reads only what it must to find where a message ends: request heads, chunked bodies, response heads.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "http_request.h"
#include "log.h"
#include "mediation/mediation.h"
#include "proxy_internal.h"
#include "sandbox.h"

#define RESPONSE_BUF 16384
/* A side whose output queue holds this much is not read until the queue drains. */
#define QUEUE_HIGH (64 * 1024)

/* Where the client's current request is. */
enum request_phase {
	RQ_HEAD,    /* waiting for (the rest of) a head */
	RQ_WAIT,    /* decided, connecting upstream */
	RQ_RAW,	    /* a body of known length: rq_left bytes to go */
	RQ_CHUNKED, /* a chunked body: the parser finds its end */
	RQ_DONE,    /* sent; the next request waits for this one's response */
};

/* Where the upstream's response to it is. */
enum response_phase {
	RS_NONE,  /* no request outstanding: anything the upstream sends ends its connection */
	RS_PARSE, /* a head, or a chunked body, through llhttp */
	RS_RAW,	  /* a body of known length: rs_left bytes to go */
	RS_EOF,	  /* a body that ends when the upstream closes */
	RS_DONE,
};

struct http_exchange {
	llhttp_t resp;
	llhttp_settings_t resp_settings;
	struct evbuffer *to_up, *to_client;
	enum request_phase rq;
	enum response_phase rs;
	uint64_t rq_left, rs_left;
	uint64_t resp_bytes; /* of the current response, passed on to the client */
	bool head_request;   /* the response to a HEAD request has no body */
	bool client_keep, resp_keep, resp_final;
	bool raw_next, raw_until_eof; /* set at a response head: what follows it */
	uint64_t raw_len;
	bool client_eof, upstream_broken;
	/*
	 * The last read of the client's (upstream's) socket came back short or empty: it is drained until
	 * its next readable edge, so the loop does not probe it again (most reads of a request were EAGAIN).
	 */
	bool client_dry, upstream_dry;
	int64_t head_by_us;    /* a later request's head under way: when it must be in whole (0: none) */
	uint16_t dialled_port; /* redirected connections: the port the client dialled */
	/* the pending request's target, in t->head (which stays put until the request is sent) */
	struct crgw_http_span path, authority;
	char up_host[CRGW_HOST_NAME_MAX + 1];
	uint16_t up_port;
	bool up_mediation; /* the "upstream" is this process's mediation (to_mediation) */
	char *med_path;	   /* the target the mediation gets, when it is not the request's own */
	size_t rlen;
	char rbuf[RESPONSE_BUF];
};

static void http_run(struct tunnel *t);

/*
 * Both sockets are watched edge-triggered (proxy_watch): a readable edge says the socket has bytes again,
 * and any edge lets the exchange move on. While the next upstream is being reached there is nothing to do.
 */
void http_io(struct tunnel *t, int fd, short what)
{
	if (what & EV_READ) {
		if (fd == t->cfd)
			t->http->client_dry = false;
		else if (fd == t->ufd)
			t->http->upstream_dry = false;
	}
	if (t->state == S_HTTP)
		http_run(t);
}

/* ---- responses ---------------------------------------------------------------------------------- */

static int on_response_head(llhttp_t *p)
{
	struct http_exchange *x = ((struct tunnel *)p->data)->http;
	unsigned status = llhttp_get_status_code(p);

	x->raw_next = x->raw_until_eof = false;
	x->raw_len = 0;
	if (status == 101)
		return -1; /* the gateway never asks to switch protocols */
	if (status < 200 || status == 204 || status == 304)
		return 0;
	if (x->head_request)
		return 1;
	if (p->flags & F_CHUNKED)
		return 0; /* llhttp walks the chunks */
	/* A body of known length, or one that runs to the end of the connection: spliced, not parsed. */
	if (p->flags & F_CONTENT_LENGTH) {
		x->raw_len = p->content_length;
		x->raw_next = x->raw_len > 0;
		return 1;
	}
	if (llhttp_message_needs_eof(p)) {
		x->raw_next = x->raw_until_eof = true;
		return 1;
	}
	return 0;
}

static int on_response_complete(llhttp_t *p)
{
	struct http_exchange *x = ((struct tunnel *)p->data)->http;

	x->resp_final = llhttp_get_status_code(p) >= 200;
	x->resp_keep = llhttp_should_keep_alive(p) && !x->raw_until_eof;
	return HPE_PAUSED;
}

/* Passes on what the response parser has consumed; -1 for a malformed response. */
static int parse_response(struct tunnel *t, bool *progress)
{
	struct http_exchange *x = t->http;

	while (x->rs == RS_PARSE && x->rlen) {
		llhttp_errno_t err = llhttp_execute(&x->resp, x->rbuf, x->rlen);
		size_t used = x->rlen;

		if (err == HPE_PAUSED)
			used = (size_t)(llhttp_get_error_pos(&x->resp) - x->rbuf);
		else if (err != HPE_OK)
			return -1;
		evbuffer_add(x->to_client, x->rbuf, used);
		x->resp_bytes += used;
		memmove(x->rbuf, x->rbuf + used, x->rlen - used);
		x->rlen -= used;
		*progress = true;
		if (err != HPE_PAUSED)
			break;
		llhttp_resume(&x->resp);
		if (!x->resp_final)
			continue; /* an interim response (100 Continue): the final one follows */
		if (x->raw_next) {
			x->rs = x->raw_until_eof ? RS_EOF : RS_RAW;
			x->rs_left = x->raw_len;
		} else {
			x->rs = RS_DONE;
		}
	}
	if (x->rlen && (x->rs == RS_RAW || x->rs == RS_EOF)) {
		size_t n = x->rs == RS_RAW && x->rs_left < x->rlen ? (size_t)x->rs_left : x->rlen;

		evbuffer_add(x->to_client, x->rbuf, n);
		x->resp_bytes += n;
		memmove(x->rbuf, x->rbuf + n, x->rlen - n);
		x->rlen -= n;
		if (x->rs == RS_RAW) {
			x->rs_left -= n;
			if (x->rs_left == 0)
				x->rs = RS_DONE;
		}
		*progress = true;
	}
	if (x->rlen && (x->rs == RS_DONE || x->rs == RS_NONE)) {
		/* Bytes nobody asked for: this upstream connection cannot carry another request. */
		x->upstream_broken = true;
		x->rlen = 0;
	}
	return 0;
}

/* ---- requests ----------------------------------------------------------------------------------- */

static bool is_hop_by_hop(const char *head, const struct crgw_http_request *r, struct crgw_http_span name)
{
	static const char *const always[] = {
	    "connection",	  "keep-alive", "proxy-connection", "proxy-authorization",
	    "proxy-authenticate", "te",		"upgrade"};

	for (size_t i = 0; i < sizeof(always) / sizeof(always[0]); i++)
		if (crgw_http_field_is(head, name, always[i]))
			return true;
	/* And whatever the Connection fields name. */
	return crgw_http_connection_lists(head, r, head + name.off, name.len);
}

/* The head the upstream gets: origin-form target, hop-by-hop fields removed, our own connection wishes. */
static void write_head(struct tunnel *t, struct crgw_http_span path, const char *authority, size_t authority_len)
{
	const struct crgw_http_request *r = &t->req->req;
	struct evbuffer *out = t->http->to_up;
	const char *h = t->head;
	bool own_host;

	evbuffer_add(out, h + r->method_text.off, r->method_text.len);
	evbuffer_add(out, " ", 1);
	if (t->http->med_path)
		evbuffer_add(out, t->http->med_path, strlen(t->http->med_path));
	else if (path.len)
		evbuffer_add(out, h + path.off, path.len);
	else
		evbuffer_add(out, "/", 1);
	evbuffer_add_printf(out, " HTTP/1.%u\r\n", r->minor);
	/* The URL's authority stands in for a missing or empty Host; the empty one is then not sent too. */
	own_host = r->host.len == 0 && r->host.off == 0 && authority_len;
	if (own_host)
		evbuffer_add_printf(out, "Host: %.*s\r\n", (int)authority_len, authority);
	for (unsigned i = 0; i < r->nfields; i++) {
		const struct crgw_http_field *f = &r->fields[i];

		if (is_hop_by_hop(h, r, f->name) || (own_host && crgw_http_field_is(h, f->name, "host")))
			continue;
		evbuffer_add(out, h + f->name.off, f->name.len);
		evbuffer_add(out, ": ", 2);
		evbuffer_add(out, h + f->value.off, f->value.len);
		evbuffer_add(out, "\r\n", 2);
	}
	if (!t->http->client_keep)
		evbuffer_add(out, "Connection: close\r\n", 19);
	else if (r->minor == 0)
		evbuffer_add(out, "Connection: keep-alive\r\n", 24);
	evbuffer_add(out, "\r\n", 2);
}

static void consume_client(struct tunnel *t, size_t n)
{
	memmove(t->head, t->head + n, t->head_len - n);
	t->head_len -= n;
}

static void send_request(struct tunnel *t)
{
	struct http_exchange *x = t->http;
	const struct crgw_http_request *r = &t->req->req;

	if (!proxy_audit_allow(t))
		return;
	write_head(t, x->path, t->head + x->authority.off, x->authority.len);
	consume_client(t, r->head_len);
	if (r->chunked) {
		x->rq = RQ_CHUNKED;
	} else if (r->content_length) {
		x->rq = RQ_RAW;
		x->rq_left = r->content_length;
	} else {
		x->rq = RQ_DONE;
	}
	llhttp_init(&x->resp, HTTP_RESPONSE, &x->resp_settings);
	x->resp.data = t;
	x->rs = RS_PARSE;
	x->resp_bytes = 0;
	x->resp_final = false;
	t->state = S_HTTP;
	t->end_detail = NULL;
	proxy_count_open(t);
	http_run(t);
}

/* A failure after the request went upstream: an answer if the client has had none of the response yet. */
static void fail(struct tunnel *t, int status, const char *text, enum crgw_reason reason, const char *detail)
{
	struct http_exchange *x = t->http;

	if (x->resp_bytes == 0 && evbuffer_get_length(x->to_client) == 0 && t->down.queued == 0) {
		proxy_refuse(t, status, text, reason, detail);
		return;
	}
	proxy_audit(t, CRGW_AUDIT_DECISION, false, reason, detail);
	t->end_detail = detail;
	proxy_close(t);
}

/* Audits what the request asked for: its method and path, without the query (which may carry tokens). */
static void describe(struct tunnel *t)
{
	const struct crgw_http_request *r = &t->req->req;
	const char *path = t->head + t->http->path.off;
	size_t len = t->http->path.len;
	const char *q = memchr(path, '?', len);

	if (q)
		len = (size_t)(q - path);
	if (len > 120)
		len = 120;
	snprintf(t->detail, sizeof(t->detail), "%.*s %.*s", (int)r->method_text.len, t->head + r->method_text.off,
		 (int)len, len ? path : "/");
}

/*
 * A plain-http URL that only the registry mediation may serve is served by it, in this process, as if the
 * sandbox had asked its own gateway: a lockfile's tarball URL on an npm host of the policy (yarn fetches
 * what yarn.lock recorded, whatever registry it is told), or a mediation URL on any gateway address of the
 * pool (a lockfile written in another sandbox, or this sandbox's own mediation reached through the proxy).
 * The mediation checks what it serves as always; nothing here reaches an upstream. Returns true when the
 * request went there (or was refused).
 */
static bool to_mediation(struct tunnel *t)
{
	struct http_exchange *x = t->http;
	const struct crgw_http_request *r = &t->req->req;
	const struct crgw_config *cfg = t->px->cfg;
	const struct crgw_registry_rule *npm = crgw_policy_registry(t->sb->policy, "npm");
	const char *path = t->head + x->path.off;
	size_t len = x->path.len;
	int sp[2], n;

	if (r->method != HTTP_GET && r->method != HTTP_HEAD)
		return false;
	if (len == 0 || path[0] != '/')
		return false;
	free(x->med_path);
	x->med_path = NULL;
	if (t->host.kind == CRGW_HOST_IPV4 && t->port == CRGW_MEDIATION_PORT && len > 10 &&
	    !memcmp(path, "/registry/", 10)) {
		uint32_t a, pool = ntohl(cfg->pool.s_addr);
		uint32_t mask = cfg->pool_prefix ? ~0u << (32 - cfg->pool_prefix) : 0;

		memcpy(&a, t->host.addr, 4);
		if (((ntohl(a) ^ pool) & mask) != 0)
			return false;
		snprintf(t->rule, sizeof(t->rule), "mediation");
		n = asprintf(&x->med_path, "%.*s", (int)len, path);
	} else if (t->host.kind == CRGW_HOST_NAME && t->port == 80 && npm && npm->enable &&
		   crgw_policy_registry_host_allowed(npm, t->host.text)) {
		snprintf(t->rule, sizeof(t->rule), "registries.npm");
		n = asprintf(&x->med_path, "/registry/npm/%s%.*s", t->host.text, (int)len, path);
	} else {
		return false;
	}
	if (n < 0) {
		x->med_path = NULL;
		proxy_refuse(t, 500, "Internal Server Error", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
		return true;
	}
	x->head_request = r->method == HTTP_HEAD;
	x->client_keep = r->keep_alive && !x->client_eof;
	if (t->ufd >= 0 && x->up_mediation && !x->upstream_broken) {
		send_request(t);
		return true;
	}
	if (t->ufd >= 0) {
		event_del(&t->uread);
		close(t->ufd);
		t->ufd = -1;
		t->http->upstream_dry = false;
	}
	x->upstream_broken = false;
	x->rlen = 0;
	/* One end to the mediation, which takes it as a connection from this sandbox; the other is the upstream. */
	if (!t->px->mediation || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp)) {
		proxy_refuse(t, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE,
			     "the mediation cannot take the request");
		return true;
	}
	if (crgw_mediation_adopt(t->px->mediation, sp[1], t->sb)) {
		close(sp[0]);
		proxy_refuse(t, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE,
			     "the mediation cannot take the request");
		return true;
	}
	t->ufd = sp[0];
	t->http->upstream_dry = false;
	t->upstream.in.sin_family = AF_INET;
	t->upstream.in.sin_addr = t->sb->gw;
	t->upstream.in.sin_port = htons(CRGW_MEDIATION_PORT);
	x->up_mediation = true;
	http_upstream_ready(t);
	return true;
}

/* Decides the request whose head t->req holds, then sends it or connects first. */
static void start_request(struct tunnel *t)
{
	struct http_exchange *x = t->http;
	const struct crgw_http_request *r = &t->req->req;
	const char *target = t->head + r->target.off, *why = NULL;
	struct crgw_host host_field;
	uint16_t host_port;
	int rc;

	t->detail[0] = '\0';
	t->rule[0] = '\0';
	t->host.len = 0;
	t->asked[0] = '\0';
	x->rq = RQ_WAIT;
	if (x->head_by_us) {
		x->head_by_us = 0;
		proxy_arm_timer(t, proxy_idle_seconds(t));
	}
	free(x->med_path);
	x->med_path = NULL;
	if (r->method == HTTP_CONNECT) {
		proxy_note_asked(t, target, r->target.len);
		proxy_refuse(t, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID,
			     t->transparent ? "CONNECT on a redirected connection" : "CONNECT after other requests");
		return;
	}
	rc = crgw_http_absolute_target(target, r->target.len, &x->authority, &x->path, &why);
	if (rc == -EINVAL) {
		proxy_note_asked(t, target, r->target.len);
		proxy_refuse(t, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID, why);
		return;
	}
	if (rc == 0) {
		x->authority.off += r->target.off;
		x->path.off += r->target.off;
	} else if (!t->transparent) {
		/* An origin-form request names its destination, if at all, in Host. */
		if (r->host.len)
			proxy_note_asked(t, t->head + r->host.off, r->host.len);
		proxy_refuse(t, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID,
			     "a proxy request needs an absolute URL");
		return;
	} else if (r->host.len == 0) {
		proxy_refuse(t, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID, "no Host field to decide on");
		return;
	} else {
		x->authority = r->host;
		x->path = r->target;
	}
	describe(t);
	if (crgw_hostport_parse(t->head + x->authority.off, x->authority.len, t->transparent ? x->dialled_port : 80,
				&t->host, &t->port, &why)) {
		t->host.len = 0;
		proxy_note_asked(t, t->head + x->authority.off, x->authority.len);
		proxy_refuse(t, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID, why);
		return;
	}
	/* The absolute form and Host must agree: a peer behind the gateway may believe either. */
	if (rc == 0 && r->host.len &&
	    (crgw_hostport_parse(t->head + r->host.off, r->host.len, t->transparent ? x->dialled_port : 80, &host_field,
				 &host_port, &why) ||
	     host_port != t->port || strcmp(host_field.text, t->host.text))) {
		proxy_refuse(t, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID,
			     "the Host field names another destination than the request target");
		return;
	}
	if (t->transparent && t->port != x->dialled_port) {
		proxy_refuse(t, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID,
			     "the request names another port than the one dialled");
		return;
	}
	if (to_mediation(t))
		return;
	x->head_request = r->method == HTTP_HEAD;
	x->client_keep = r->keep_alive && !x->client_eof;
	/* Never share an upstream connection beyond this client's, and reuse it only for the same destination. */
	if (t->ufd >= 0 && !x->upstream_broken && !x->up_mediation && x->up_port == t->port &&
	    strcmp(x->up_host, t->host.text) == 0) {
		if (proxy_decide(t))
			send_request(t);
		return;
	}
	if (t->ufd >= 0) {
		event_del(&t->uread);
		close(t->ufd);
		t->ufd = -1;
		t->http->upstream_dry = false;
	}
	x->upstream_broken = false;
	x->up_mediation = false;
	x->rlen = 0;
	proxy_decide_and_connect(t);
}

void http_upstream_ready(struct tunnel *t)
{
	struct http_exchange *x = t->http;

	memcpy(x->up_host, t->host.text, t->host.len + 1u);
	x->up_port = t->port;
	proxy_watch(t, &t->uread, t->ufd);
	send_request(t);
}

void http_begin(struct tunnel *t)
{
	struct http_exchange *x = calloc(1, sizeof(*x));

	if (x) {
		x->to_up = evbuffer_new();
		x->to_client = evbuffer_new();
	}
	if (!x || !x->to_up || !x->to_client) {
		if (x) {
			if (x->to_up)
				evbuffer_free(x->to_up);
			if (x->to_client)
				evbuffer_free(x->to_client);
			free(x);
		}
		proxy_close(t);
		return;
	}
	t->http = x;
	t->service = "http";
	x->dialled_port = t->port;
	llhttp_settings_init(&x->resp_settings);
	x->resp_settings.on_headers_complete = on_response_head;
	x->resp_settings.on_message_complete = on_response_complete;
	/* The client's socket is watched already (on_request): edges now come to http_io. */
	start_request(t);
}

void http_free(struct tunnel *t)
{
	struct http_exchange *x = t->http;

	if (!x)
		return;
	evbuffer_free(x->to_up);
	evbuffer_free(x->to_client);
	free(x->med_path);
	free(x);
	t->http = NULL;
}

/* ---- moving bytes ------------------------------------------------------------------------------- */

/* The client's bytes for the current request: a chunked body through the parser, a raw body counted. */
static int request_bytes(struct tunnel *t, bool *progress)
{
	struct http_exchange *x = t->http;

	if (x->rq == RQ_CHUNKED && t->head_len) {
		size_t used;
		int r = crgw_http_parse_body(t->req, t->head, t->head_len, &used);

		if (r == -EBADMSG) {
			fail(t, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID, t->req->error);
			return -1;
		}
		evbuffer_add(x->to_up, t->head, used);
		consume_client(t, used);
		if (r == 0)
			x->rq = RQ_DONE;
		*progress = true;
	}
	if (x->rq == RQ_RAW && t->head_len) {
		size_t n = x->rq_left < t->head_len ? (size_t)x->rq_left : t->head_len;

		evbuffer_add(x->to_up, t->head, n);
		consume_client(t, n);
		x->rq_left -= n;
		*progress = true;
	}
	if (x->rq == RQ_RAW && x->rq_left == 0 && t->up.queued == 0)
		x->rq = RQ_DONE;
	return 0;
}

/* Writes a queue out; -1 when the peer is gone. */
static int flush(struct evbuffer *q, int fd, uint64_t *bytes, bool *progress)
{
	int n;

	if (evbuffer_get_length(q) == 0)
		return 0;
	n = evbuffer_write(q, fd);
	if (n > 0) {
		*bytes += (uint64_t)n;
		*progress = true;
		return 0;
	}
	return n < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
}

/* The request and its response are both done: the next request, or the end of the connection. */
static void next_request(struct tunnel *t)
{
	struct http_exchange *x = t->http;

	if (!x->client_keep || !x->resp_keep || (x->client_eof && t->head_len == 0)) {
		proxy_linger(t);
		return;
	}
	if (x->upstream_broken && t->ufd >= 0) {
		event_del(&t->uread);
		close(t->ufd);
		t->ufd = -1;
		t->http->upstream_dry = false;
	}
	x->rq = RQ_HEAD;
	x->rs = RS_NONE;
	crgw_http_parser_init(t->req);
	/*
	 * A pipelined request may be waiting in the buffer already. It is taken from a fresh callback: a fast
	 * upstream and a long pipeline must not turn into deep recursion.
	 */
	if (t->head_len)
		event_active(&t->cread, EV_READ, 1);
	else
		http_run(t);
}

/* Whether the client's bytes are read into t->head now (a raw body is spliced instead). */
static bool reads_client(const struct tunnel *t)
{
	const struct http_exchange *x = t->http;

	return !x->client_eof && t->head_len < CRGW_HTTP_HEAD_MAX &&
	       (x->rq == RQ_HEAD || x->rq == RQ_DONE ||
		(x->rq == RQ_CHUNKED && evbuffer_get_length(x->to_up) < QUEUE_HIGH));
}

/*
 * Whether the upstream's bytes are read into rbuf now: a head or chunked body to parse, or, with no
 * response expected, whatever would show the connection cannot be reused.
 */
static bool reads_upstream(const struct tunnel *t)
{
	const struct http_exchange *x = t->http;

	return t->ufd >= 0 && x->rlen < sizeof(x->rbuf) && evbuffer_get_length(x->to_client) < QUEUE_HIGH &&
	       (x->rs == RS_PARSE || x->rs == RS_NONE || (x->rs == RS_DONE && x->rq != RQ_DONE));
}

static void http_run(struct tunnel *t)
{
	struct http_exchange *x = t->http;
	bool more = false;

	for (unsigned round = 0; round < 64; round++) {
		bool progress = false, r, w;
		ssize_t n;

		/* client → upstream */
		if (request_bytes(t, &progress))
			return;
		if (t->ufd >= 0 && flush(x->to_up, t->ufd, &t->up.bytes, &progress)) {
			fail(t, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, "the upstream stopped reading");
			return;
		}
		if (x->rq == RQ_RAW && t->head_len == 0 && evbuffer_get_length(x->to_up) == 0) {
			uint64_t before = x->rq_left, sent = t->up.bytes;

			if (proxy_pump(t, &t->up, t->cfd, t->ufd, &x->rq_left, &r, &w) < 0) {
				fail(t, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID,
				     "the request body ended early");
				return;
			}
			progress |= before != x->rq_left || sent != t->up.bytes;
			if (x->rq_left == 0 && t->up.queued == 0)
				x->rq = RQ_DONE;
		}
		if (reads_client(t) && !x->client_dry) {
			size_t want = CRGW_HTTP_HEAD_MAX - t->head_len;

			n = read(t->cfd, t->head + t->head_len, want);
			if (n > 0) {
				t->head_len += (size_t)n;
				x->client_dry = (size_t)n < want;
				progress = true;
			} else if (n < 0 && errno == EAGAIN) {
				x->client_dry = true;
			} else if (n == 0 || errno != EINTR) {
				x->client_eof = true;
				x->client_keep = false;
				if (x->rq == RQ_HEAD && t->head_len == 0) {
					proxy_close(t);
					return;
				}
				if (x->rq == RQ_CHUNKED || x->rq == RQ_HEAD) {
					fail(t, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID,
					     "the request ended early");
					return;
				}
				progress = true;
			}
		}
		if (x->rq == RQ_HEAD && t->head_len) {
			int rc = crgw_http_parse_head(t->req, t->head, t->head_len);

			if (rc == 0) {
				start_request(t);
				return;
			}
			if (rc != -EAGAIN) {
				/* What this request named, not what the previous one did (t->host still says that). */
				t->asked[0] = '\0';
				proxy_note_request_line(t);
				if (rc == -E2BIG)
					proxy_refuse(t, 431, "Request Header Fields Too Large",
						     CRGW_REASON_REQUEST_INVALID, "request head over 16 KiB");
				else
					proxy_refuse(t, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID, t->req->error);
				return;
			}
		}

		/* upstream → client */
		if (parse_response(t, &progress)) {
			fail(t, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE,
			     "malformed response from the upstream");
			return;
		}
		if (flush(x->to_client, t->cfd, &t->down.bytes, &progress)) {
			proxy_close(t);
			return;
		}
		if ((x->rs == RS_RAW || x->rs == RS_EOF) && x->rlen == 0 && evbuffer_get_length(x->to_client) == 0) {
			uint64_t before = x->rs_left, sent = t->down.bytes;
			bool eof = t->down.eof;

			if (proxy_pump(t, &t->down, t->ufd, t->cfd, x->rs == RS_RAW ? &x->rs_left : NULL, &r, &w) < 0) {
				fail(t, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE,
				     "the upstream ended inside a response");
				return;
			}
			progress |= before != x->rs_left || sent != t->down.bytes || eof != t->down.eof;
			if ((x->rs == RS_RAW && x->rs_left == 0 && t->down.queued == 0) ||
			    (x->rs == RS_EOF && t->down.eof && t->down.queued == 0))
				x->rs = RS_DONE;
		}
		if (reads_upstream(t) && !x->upstream_dry) {
			size_t want = sizeof(x->rbuf) - x->rlen;

			n = read(t->ufd, x->rbuf + x->rlen, want);
			if (n > 0) {
				x->rlen += (size_t)n;
				x->upstream_dry = (size_t)n < want;
				progress = true;
			} else if (n < 0 && errno == EAGAIN) {
				x->upstream_dry = true;
			} else if (n == 0 || errno != EINTR) {
				if (x->rs == RS_PARSE) {
					fail(t, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE,
					     x->resp_bytes ? "the upstream ended inside a response"
							   : "the upstream closed without answering");
					return;
				}
				/* Idle upstream gone: the next request connects again. */
				event_del(&t->uread);
				close(t->ufd);
				t->ufd = -1;
				t->http->upstream_dry = false;
				x->upstream_broken = true;
				progress = true;
			}
		}

		/* transitions */
		if (x->rs == RS_DONE && evbuffer_get_length(x->to_client) == 0 && t->down.queued == 0) {
			if (x->rq == RQ_DONE) {
				next_request(t);
				return;
			}
			if (x->rq != RQ_WAIT) {
				/* The upstream answered before the request ended: nothing more can follow. */
				x->client_keep = false;
				proxy_linger(t);
				return;
			}
		}
		if (!progress)
			break;
		more = round == 63;
	}
	/*
	 * Still moving after 64 rounds: give other connections a turn, then go on from a fresh callback. Bytes
	 * already in the gateway's buffers are invisible to epoll, and edges already taken will not come again.
	 */
	if (more)
		event_active(&t->cread, EV_WRITE, 1);
	/*
	 * A later request's head, like the first (proxy.c, head_wait), must be in whole PROXY_REQUEST_TIMEOUT_S
	 * after its first byte: the idle timeout alone restarts at every byte, and a head trickled in a byte a
	 * minute would hold the connection, unanswered, for as long as the client liked.
	 */
	if (x->rq != RQ_HEAD || t->head_len == 0)
		x->head_by_us = 0;
	else if (!x->head_by_us)
		x->head_by_us = crgw_realtime_us() + (int64_t)PROXY_REQUEST_TIMEOUT_S * 1000000;
	proxy_arm_timer_head(t, proxy_idle_seconds(t), x->head_by_us);
}
