/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What proxy.c (connections, decisions, upstream connects, the splice relay) and http_forward.c (HTTP
 * exchanges on a connection) share. Not for other modules: they use proxy.h.
 */
#ifndef CRGW_GATEWAY_PROXY_INTERNAL_H
#define CRGW_GATEWAY_PROXY_INTERNAL_H

#include <event2/event_struct.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "audit.h"
#include "crgw/policy.h"
#include "dns_cache.h"
#include "http_request.h"
#include "listen.h"

#define PROXY_PIPE_BYTES (64 * 1024)
/* A flow that has moved this much is bulk: its pipe grows to PROXY_PIPE_BULK_BYTES (fewer, larger splices). */
#define PROXY_BULK_AFTER (256 * 1024)
#define PROXY_PIPE_BULK_BYTES (1024 * 1024)
/*
 * A tunnel's first bytes each way are copied through a worker's buffer (read, write) rather than spliced:
 * the small exchanges of a handshake then cost no pipe, and a short read says the socket is drained, so no
 * probe that ends in EAGAIN. Past this many bytes a flow is spliced.
 */
#define PROXY_COPY_UNTIL (64 * 1024)
#define PROXY_COPY_BUF (16 * 1024)

enum proxy_state { S_REQUEST, S_HELLO, S_RESOLVING, S_CONNECTING, S_RELAY, S_HTTP, S_LINGER };

/* One direction of a relay: src → pipe → dst. */
struct flow {
	int pipe[2];
	size_t queued; /* bytes in the pipe */
	size_t cap;    /* what the pipe holds: PROXY_PIPE_BYTES, or more once grown */
	uint64_t bytes;
	bool eof, shut;
	/* The other direction has ended: when this one does, the connection closes (and close sends the FIN). */
	bool last;
};

struct http_exchange;
struct upstream_race;

union proxy_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/* One accepted connection: a CONNECT tunnel, a transparent relay, or HTTP exchanges. */
struct tunnel {
	struct tunnel *prev, *next; /* the worker's open connections */
	struct crgw_proxy *px;
	struct crgw_sandbox *sb; /* reference */
	enum proxy_state state;
	bool transparent;    /* redirected by nftables */
	bool answers_http;   /* refusals are answered with an HTTP response (else the connection closes) */
	bool counted;        /* in the open-connection gauge: ends with a connection_end event */
	bool held;           /* counted in proxy.c's tunnels_held: from accept until it closes or lingers */
	bool closed;
	const char *service; /* "connect", "tls", "tcp" or "http" */
	int cfd, ufd;
	/*
	 * The client's and the upstream's socket: while a request or hello is read, cread waits for reading
	 * only, level-triggered; once decided, both are edge-triggered for both directions (proxy_watch).
	 */
	struct event cread, uread, timer;
	bool client_edge; /* the client's socket became readable while the upstream was being reached */
	unsigned refs;
	/* the client's bytes not yet used: a request head (and what follows it), or a TLS hello */
	char *head;
	size_t head_len, body_at;
	size_t hello_need; /* bytes a complete hello needs at least (from the last -EAGAIN) */
	struct crgw_http_parser *req; /* while a request head is parsed */
	struct http_exchange *http;   /* HTTP forwarding on this connection */
	/* the decision and the upstream */
	struct crgw_host host;
	/* The destination as the client named it, escaped (proxy_note_asked): dst_host while host.len is 0. */
	char asked[CRGW_HOST_NAME_MAX + 1];
	uint16_t port;
	char rule[96];
	/* Learn mode: the reason enforcement would have refused the last decision for (NONE: it allows). */
	enum crgw_reason learned;
	char detail[160]; /* what the audit events say about the request (HTTP: method and path) */
	const char *end_detail; /* why the connection ended, when the gateway ended it */
	struct upstream_race *race; /* while connecting upstream */
	union proxy_addr upstream;  /* the upstream's address (before the connect: the dialled one, if any) */
	int64_t start_us, deadline_us;
	int64_t head_deadline_us; /* when the first request head or TLS hello must be in whole (0: not waiting) */
	/* Which limit the armed timer is: the idle one, the absolute one, or a later request head's. */
	enum { TIMER_IDLE, TIMER_DEADLINE, TIMER_HEAD } timer_for;
	struct flow up, down;
};

struct crgw_proxy {
	const struct crgw_config *cfg;
	struct event_base *base;
	struct crgw_dns_server *dns;
	struct crgw_mediation *mediation; /* this worker's, for requests only it may serve (http_forward.c) */
	struct evconnlistener *listener;
	struct crgw_accept_guard guard;
	struct tunnel *tunnels;
	char copy_buf[PROXY_COPY_BUF]; /* the relay's copy mode: holds bytes only within one call */
	/* Empty pipes of closed connections, kept for the next ones: short tunnels skip pipe2 and 4 closes. */
	int pipes[256][2];
	unsigned npipes;
};

/* proxy.c */
void proxy_close(struct tunnel *t);
/* Ends the connection gracefully: our side shut, the client's remaining bytes discarded for a while. */
void proxy_linger(struct tunnel *t);
/* Keeps what a learn-mode decision let through, for the allow event's action warn. */
static inline void proxy_note_learned(struct tunnel *t, const struct crgw_decision *d)
{
	if (d->allow && d->reason != CRGW_REASON_NONE)
		t->learned = d->reason;
}

void proxy_refuse(struct tunnel *t, int status, const char *text, enum crgw_reason reason, const char *detail);
/* Returns crgw_audit_emit's answer: -ENOBUFS for an event that could not be queued (and loss not allowed). */
int proxy_audit(struct tunnel *t, enum crgw_audit_kind kind, bool allow, enum crgw_reason reason,
		const char *detail);
/*
 * Audits the allowed (or learned) decision of a connection or request about to go ahead. false when its
 * event could not be queued and loss is not allowed: the client has then been refused (503, rate_limited)
 * and the tunnel closed, and the caller takes no step further.
 */
bool proxy_audit_allow(struct tunnel *t);
/*
 * Records the destination a request named, as the client wrote it (`len` borrowed bytes: a CONNECT target,
 * an absolute URL, a Host field), for the audit of a refusal that has no normalized host: what follows
 * "://" if there is one, up to a path, query or fragment ('/', '?', '#'), which may carry tokens; never
 * user information (anything up to an '@'); escaped and bounded by crgw_audit_copy_raw.
 */
void proxy_note_asked(struct tunnel *t, const char *text, size_t len);
/* The same from the request line of a head that did not parse (its target, if the line is complete). */
void proxy_note_request_line(struct tunnel *t);
/* Decides t->host:t->port for the sandbox; a denial is refused (403) and false returned. */
bool proxy_decide(struct tunnel *t);
/* proxy_decide, then resolves and connects (then proxy_connected). */
void proxy_decide_and_connect(struct tunnel *t);
/* The upstream connection is up: t->ufd and t->upstream are set. */
void proxy_connected(struct tunnel *t);
/* Counts an upstream failure (the caller refuses). */
void proxy_upstream_failed(struct tunnel *t);
/* Drops a reference taken for an asynchronous call; false when the connection closed meanwhile. */
bool proxy_unref(struct tunnel *t);
/* Counts the connection as open, once. */
void proxy_count_open(struct tunnel *t);
/*
 * Watches `fd` with `ev` (t->cread for the client, t->uread for the upstream) for reading and writing,
 * edge-triggered, until the connection ends: the relay and HTTP forwarding then never touch epoll again.
 */
void proxy_watch(struct tunnel *t, struct event *ev, int fd);
/* Re-arms the timer for `seconds`, or to the connection's absolute deadline if that comes first. */
void proxy_arm_timer(struct tunnel *t, unsigned seconds);
/* The same, or to `head_by_us` (a request head's deadline, crgw_realtime_us; 0: none) if that comes first. */
void proxy_arm_timer_head(struct tunnel *t, unsigned seconds, int64_t head_by_us);
/* How long a request head (the first, or a later one on a kept-alive connection) may take to arrive whole. */
#define PROXY_REQUEST_TIMEOUT_S 10
unsigned proxy_idle_seconds(const struct tunnel *t);
/*
 * Moves what can move from `src` to `dst` through `f`'s pipe without blocking. With `limit`, at most
 * *limit more bytes are taken from src (and *limit goes down); an end of src is then an error. Without,
 * an end of src half-closes dst. Returns 0 with the interest bits set, or -1 when the connection must close.
 */
size_t proxy_pipe_room(const struct flow *f);
int proxy_pump(struct tunnel *t, struct flow *f, int src, int dst, uint64_t *limit, bool *want_read,
	       bool *want_write);

/* upstream.c */
/* Resolves t->host (A and AAAA through the gateway's DNS), checks each address, races the connects. */
void upstream_connect(struct tunnel *t);
/* Connects to one address (an IP literal target, or the address a redirected connection dialled). */
void upstream_connect_address(struct tunnel *t, const union proxy_addr *to);
/* Ends a connect in progress (closing the connection does this). */
void upstream_abort(struct tunnel *t);

/* http_forward.c */
/* Takes over a connection whose first request head (not CONNECT) is parsed in t->req. */
void http_begin(struct tunnel *t);
/* The upstream connection for the pending request is up (t->ufd). */
void http_upstream_ready(struct tunnel *t);
/* An edge on the client's or the upstream's socket of an HTTP connection. */
void http_io(struct tunnel *t, int fd, short what);
void http_free(struct tunnel *t);

#endif
