/* SPDX-License-Identifier: Apache-2.0 */
/* CONNECT tunnels: request parsing (llhttp), the decision, the upstream connect, and the splice relay. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/socket.h>
#include <unistd.h>

#include "audit.h"
#include "config.h"
#include "dns.h"
#include "dns_cache.h"
#include "dnsmsg.h"
#include "listen.h"
#include "log.h"
#include "proxy.h"
#include "proxy_internal.h"
#include "sandbox.h"
#include "tlshello.h"

/* How long a refused client may keep sending before its connection is closed under it. */
#define LINGER_S 2

/*
 * How long a redirected connection may stay silent before it is taken for a protocol where the server
 * speaks first (ssh banners, SMTP): then the original destination alone decides.
 */
#define SNIFF_MS 1000

static struct {
	atomic_uint_fast64_t tunnels_open, tunnels_total, denied, upstream_failures, bytes_up, bytes_down;
} stats;

/*
 * Connections held now in the whole gateway, from accept until they close or linger: the caps count these, not
 * stats.tunnels_open, which a tunnel joins only once its relay starts. Counted at the relay, a burst of
 * connections still waiting for their request or upstream all passed the gateway's cap at once.
 */
static atomic_uint tunnels_held;

static void close_fd(int *fd);
static void unhold(struct tunnel *t);
static void on_linger(evutil_socket_t fd, short what, void *arg);
static void plain_decision(struct tunnel *t);

/* ---- audit -------------------------------------------------------------------------------------- */

int proxy_audit(struct tunnel *t, enum crgw_audit_kind kind, bool allow, enum crgw_reason reason,
		const char *detail)
{
	struct crgw_audit_event ev = { .kind = kind, .service = t->service };
	uint64_t suppressed = 0;

	if (kind == CRGW_AUDIT_DECISION && !allow && !crgw_sandbox_audit_allowed(t->sb, &suppressed))
		return 0;
	AUDIT_SET(ev.sandbox_id, t->sb->id);
	AUDIT_SET(ev.run_id, t->sb->run_id);
	AUDIT_SET(ev.policy_hash, t->sb->policy_hash);
	inet_ntop(AF_INET, &t->sb->guest, ev.src_ip, sizeof(ev.src_ip));
	/* A request refused as malformed names what it asked for; the connection's end names its host. */
	if (kind == CRGW_AUDIT_DECISION && t->asked[0])
		AUDIT_SET(ev.dst_host, t->asked);
	else if (t->host.len)
		AUDIT_SET(ev.dst_host, t->host.text);
	if (t->upstream.sa.sa_family == AF_INET)
		inet_ntop(AF_INET, &t->upstream.in.sin_addr, ev.dst_ip, sizeof(ev.dst_ip));
	else if (t->upstream.sa.sa_family == AF_INET6)
		inet_ntop(AF_INET6, &t->upstream.in6.sin6_addr, ev.dst_ip, sizeof(ev.dst_ip));
	ev.dst_port = t->port;
	if (kind == CRGW_AUDIT_DECISION) {
		ev.action = !allow ? CRGW_ACTION_DENY : t->learned ? CRGW_ACTION_WARN : CRGW_ACTION_ALLOW;
		ev.reason = !allow ? reason : t->learned;
		AUDIT_SET(ev.rule, t->rule);
	} else {
		ev.has_bytes = true;
		ev.bytes_up = t->up.bytes;
		ev.bytes_down = t->down.bytes;
		ev.duration_ms = (uint64_t)(crgw_realtime_us() - t->start_us) / 1000;
	}
	/* A decision names the request it is about; a connection_end only why the gateway ended it. */
	if (!detail && kind == CRGW_AUDIT_DECISION && t->detail[0])
		detail = t->detail;
	AUDIT_SET(ev.detail, detail);
	if (suppressed)
		ev.count = suppressed + 1;
	return crgw_audit_emit(&ev);
}

/*
 * A connection or request that would go ahead unrecorded is refused instead (audit.allow_loss: false, the
 * default): the audit queue is a gateway-wide limit, hence rate_limited. The refusal's own event is lost as
 * well; the audit_loss event that follows counts both.
 */
bool proxy_audit_allow(struct tunnel *t)
{
	if (!proxy_audit(t, CRGW_AUDIT_DECISION, true, CRGW_REASON_NONE, NULL))
		return true;
	proxy_refuse(t, 503, "Service Unavailable", CRGW_REASON_RATE_LIMITED,
		     "the audit queue is full: an allowed connection is not made unrecorded (audit.allow_loss)");
	return false;
}

/* A connection that had an upstream ends once: its connection_end event and the gauges. */
static void count_end(struct tunnel *t)
{
	if (!t->counted)
		return;
	t->counted = false;
	proxy_audit(t, CRGW_AUDIT_CONNECTION_END, true, CRGW_REASON_NONE, t->end_detail);
	atomic_fetch_sub(&stats.tunnels_open, 1);
	atomic_fetch_add(&stats.bytes_up, t->up.bytes);
	atomic_fetch_add(&stats.bytes_down, t->down.bytes);
}

/*
 * Answers the client with an error status whose body names the reason code, then closes. A transparent
 * connection has no HTTP exchange to answer in: it is closed.
 */
void proxy_refuse(struct tunnel *t, int status, const char *text, enum crgw_reason reason, const char *detail)
{
	char resp[512];
	const char *code = crgw_reason_str(reason);
	int n = snprintf(resp, sizeof(resp),
			 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: %zu\r\n"
			 "X-Crgw-Reason: %s\r\n\r\n%s\n",
			 status, text, strlen(code) + 1, code, code);

	atomic_fetch_add(&stats.denied, 1);
	proxy_audit(t, CRGW_AUDIT_DECISION, false, reason, detail);
	if (!t->answers_http) {
		proxy_close(t);
		return;
	}
	/* Best effort: the client may already be gone, and a refusal is never worth waiting for. */
	if (write(t->cfd, resp, (size_t)n) < 0)
		log_debug("proxy refusal not delivered", "error=\"%s\"", strerror(errno));
	if (t->counted)
		t->end_detail = "refused a later request";
	proxy_linger(t);
}

/*
 * Closing a socket with bytes still coming sends a reset, which can destroy the last answer before the
 * client reads it (a client writing its head line by line, or pipelining, is still sending): end our
 * side, then discard what arrives until the client closes or LINGER_S pass.
 */
void proxy_linger(struct tunnel *t)
{
	shutdown(t->cfd, SHUT_WR);
	event_del(&t->cread);
	event_del(&t->timer);
	event_del(&t->uread);
	close_fd(&t->ufd);
	upstream_abort(t);
	count_end(t);
	unhold(t);
	t->state = S_LINGER;
	event_assign(&t->cread, t->px->base, t->cfd, EV_READ | EV_PERSIST, on_linger, t);
	event_add(&t->cread, NULL);
	t->deadline_us = 0;
	proxy_arm_timer(t, LINGER_S);
}

/* ---- life cycle --------------------------------------------------------------------------------- */

static void on_linger(evutil_socket_t fd, short what, void *arg)
{
	struct tunnel *t = arg;
	char sink[4096];

	(void)what;
	for (unsigned i = 0; i < 16; i++) {
		ssize_t n = read(fd, sink, sizeof(sink));

		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		break;
	}
	proxy_close(t);
}

static void tunnel_free(struct tunnel *t)
{
	crgw_sandbox_unref(t->sb);
	free(t->head);
	free(t->req);
	free(t);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int pipe_get(struct crgw_proxy *px, struct flow *f)
{
	if (px->npipes) {
		px->npipes--;
		f->pipe[0] = px->pipes[px->npipes][0];
		f->pipe[1] = px->pipes[px->npipes][1];
		return 0;
	}
	return pipe2(f->pipe, O_NONBLOCK | O_CLOEXEC) ? -1 : 0;
}

/* An empty pipe of the default size goes back to the pool; anything else is closed. */
static void pipe_put(struct crgw_proxy *px, struct flow *f)
{
	if (f->pipe[0] < 0)
		return;
	if (f->queued == 0 && f->cap <= PROXY_PIPE_BYTES && px->npipes < sizeof(px->pipes) / sizeof(px->pipes[0])) {
		px->pipes[px->npipes][0] = f->pipe[0];
		px->pipes[px->npipes][1] = f->pipe[1];
		px->npipes++;
	} else {
		close(f->pipe[0]);
		close(f->pipe[1]);
	}
	f->pipe[0] = f->pipe[1] = -1;
}

/*
 * A lingering connection (a refusal on its way out, or an answered one draining) leaves the gateway's
 * count: otherwise a sandbox refused over its share could still fill the rest of the room for LINGER_S
 * with each refused attempt. It stays in its own sandbox's count until it closes.
 */
static void unhold(struct tunnel *t)
{
	if (!t->held)
		return;
	t->held = false;
	atomic_fetch_sub(&tunnels_held, 1);
}

/* Never frees inside a callback's caller: the memory goes when the last reference (a lookup) drops. */
void proxy_close(struct tunnel *t)
{
	if (t->closed)
		return;
	t->closed = true;
	event_del(&t->cread);
	event_del(&t->uread);
	event_del(&t->timer);
	count_end(t);
	atomic_fetch_sub(&t->sb->counters.tunnels, 1);
	unhold(t);
	if (t->prev)
		t->prev->next = t->next;
	else
		t->px->tunnels = t->next;
	if (t->next)
		t->next->prev = t->prev;
	close_fd(&t->cfd);
	close_fd(&t->ufd);
	pipe_put(t->px, &t->up);
	pipe_put(t->px, &t->down);
	http_free(t);
	upstream_abort(t);
	if (--t->refs == 0)
		tunnel_free(t);
}

/* The timer for whichever comes first: `seconds` from now, the absolute deadline, `head_by_us`. */
void proxy_arm_timer_head(struct tunnel *t, unsigned seconds, int64_t head_by_us)
{
	int64_t now = crgw_realtime_us(), at = now + (int64_t)seconds * 1000000, left;
	struct timeval tv;

	t->timer_for = TIMER_IDLE;
	if (t->deadline_us && t->deadline_us < at) {
		at = t->deadline_us;
		t->timer_for = TIMER_DEADLINE;
	}
	if (head_by_us && head_by_us < at) {
		at = head_by_us;
		t->timer_for = TIMER_HEAD;
	}
	left = at > now ? at - now : 0;
	tv.tv_sec = (time_t)(left / 1000000);
	tv.tv_usec = (suseconds_t)(left % 1000000);
	event_add(&t->timer, &tv);
}

void proxy_arm_timer(struct tunnel *t, unsigned seconds)
{
	proxy_arm_timer_head(t, seconds, 0);
}

unsigned proxy_idle_seconds(const struct tunnel *t)
{
	return t->px->cfg->proxy_idle_timeout;
}

size_t proxy_pipe_room(const struct flow *f)
{
	return (f->cap ? f->cap : PROXY_PIPE_BYTES) - f->queued;
}

void proxy_count_open(struct tunnel *t)
{
	if (t->counted)
		return;
	t->counted = true;
	t->start_us = crgw_realtime_us();
	if (t->px->cfg->proxy_max_connection_seconds)
		t->deadline_us = t->start_us + (int64_t)t->px->cfg->proxy_max_connection_seconds * 1000000;
	atomic_fetch_add(&stats.tunnels_open, 1);
	atomic_fetch_add(&stats.tunnels_total, 1);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct tunnel *t = arg;

	(void)fd;
	(void)what;
	if (t->state == S_HELLO) {
		plain_decision(t);
		return;
	}
	/*
	 * Which limit was armed, not a clock reading: libevent counts from its loop's cached time, so a timer
	 * for the deadline may fire a little before the wall clock reaches it on a busy loop.
	 */
	if (t->timer_for == TIMER_DEADLINE)
		t->end_detail = "absolute timeout";
	else if (t->timer_for == TIMER_HEAD)
		t->end_detail = "request head timeout";
	else if (t->state == S_RELAY || t->state == S_HTTP)
		t->end_detail = "idle timeout";
	proxy_close(t);
}

/* ---- the relay ---------------------------------------------------------------------------------- */

/*
 * Moves what can move in one direction without blocking. Returns -1 when the tunnel must close, 1 when
 * it stopped after its rounds while bytes still moved (the caller runs it again from a fresh callback:
 * with edge-triggered events nothing else would), else 0; sets the interest bits: src readable wanted,
 * dst writable wanted.
 */
int proxy_pump(struct tunnel *t, struct flow *f, int src, int dst, uint64_t *limit, bool *want_read,
	       bool *want_write)
{
	bool more = false;

	if (f->pipe[0] < 0 && pipe_get(t->px, f))
		return -1;
	if (f->cap == 0)
		f->cap = PROXY_PIPE_BYTES;
	/* Best effort: a pipe that cannot grow (the per-user pipe quota) keeps working as it is. */
	if (f->cap == PROXY_PIPE_BYTES && f->bytes >= PROXY_BULK_AFTER &&
	    fcntl(f->pipe[0], F_SETPIPE_SZ, PROXY_PIPE_BULK_BYTES) >= PROXY_PIPE_BULK_BYTES)
		f->cap = PROXY_PIPE_BULK_BYTES;
	for (unsigned rounds = 0; rounds < 16; rounds++) {
		bool progress = false;
		size_t room = f->cap - f->queued;

		if (limit && *limit < room)
			room = (size_t)*limit;
		if (!f->eof && room) {
			ssize_t n = splice(src, NULL, f->pipe[1], NULL, room, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

			if (n > 0) {
				f->queued += (size_t)n;
				if (limit)
					*limit -= (uint64_t)n;
				progress = true;
			} else if (n == 0) {
				if (limit)
					return -1; /* the peer ended inside a body of known length */
				f->eof = true;
				progress = true;
			} else if (errno != EAGAIN && errno != EINTR) {
				return -1;
			}
		}
		if (f->queued) {
			ssize_t n = splice(f->pipe[0], NULL, dst, NULL, f->queued, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

			if (n > 0) {
				f->queued -= (size_t)n;
				f->bytes += (uint64_t)n;
				progress = true;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				return -1;
			}
		}
		if (!limit && f->eof && f->queued == 0 && !f->shut) {
			/* Half-close: the other side may still answer (unless it is done too: then close does it). */
			if (!f->last)
				shutdown(dst, SHUT_WR);
			f->shut = true;
		}
		if (!progress)
			break;
		if (rounds == 15)
			more = true;
	}
	/* Backpressure: read only while the pipe has room, write only while it holds bytes. */
	*want_read = !f->eof && f->queued < f->cap && (!limit || *limit);
	*want_write = f->queued > 0;
	return more ? 1 : 0;
}

/* What relay() is asked to do: which directions to run, and whether their source is known not to have ended. */
#define RELAY_UP 1u
#define RELAY_DOWN 2u
#define RELAY_UP_OPEN 4u   /* the client's socket raised a readable edge without a hang-up */
#define RELAY_DOWN_OPEN 8u /* the same for the upstream's */

/*
 * Copy mode (PROXY_COPY_UNTIL): reads src into the worker's buffer and writes it to dst, until src is
 * drained, dst is full, or the flow has moved enough to be spliced. What dst does not take goes into the
 * flow's pipe, from where the splice path sends it on. A short read means src is drained only when the
 * edge that woke us reported no hang-up (`open`): a FIN that came with the data raised no edge of its own.
 * Returns -1 when the tunnel must close, 1 when the flow should go on by splice, 0 to wait for an edge.
 */
static int relay_copy(struct tunnel *t, struct flow *f, int src, int dst, bool open)
{
	char *buf = t->px->copy_buf;

	while (f->bytes < PROXY_COPY_UNTIL) {
		ssize_t n = read(src, buf, PROXY_COPY_BUF), w;

		if (n == 0) {
			f->eof = true;
			return 0;
		}
		if (n < 0)
			return errno == EAGAIN ? 0 : errno == EINTR ? 1 : -1;
		w = write(dst, buf, (size_t)n);
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		w = w < 0 ? 0 : w;
		f->bytes += (uint64_t)w;
		if (w < n) {
			/* dst is full: the rest waits in the pipe (empty, and larger than the buffer) for its edge. */
			if ((f->pipe[0] < 0 && pipe_get(t->px, f)) ||
			    write(f->pipe[1], buf + w, (size_t)(n - w)) != n - w)
				return -1;
			if (f->cap == 0)
				f->cap = PROXY_PIPE_BYTES;
			f->queued = (size_t)(n - w);
			return 0;
		}
		if (n < PROXY_COPY_BUF && open)
			return 0;
	}
	return 1;
}

/* One direction: copied while it is young and nothing waits in its pipe, else spliced. */
static int relay_pump(struct tunnel *t, struct flow *f, int src, int dst, bool open)
{
	bool r, w;

	if (!f->eof && f->queued == 0 && f->bytes < PROXY_COPY_UNTIL) {
		int rc = relay_copy(t, f, src, dst, open);

		if (rc < 0)
			return -1;
		if (rc == 0) {
			if (f->eof && f->queued == 0 && !f->shut) {
				/* Half-close: the other side may still answer (unless it is done too: then close does it). */
				if (!f->last)
					shutdown(dst, SHUT_WR);
				f->shut = true;
			}
			return 0;
		}
	}
	return proxy_pump(t, f, src, dst, NULL, &r, &w);
}

/*
 * Pumps the directions asked for. Both sockets are watched edge-triggered for reading and writing, once
 * for the connection's life (proxy_watch), so a tunnel costs no epoll_ctl per chunk: each direction runs
 * when its source has new bytes or its destination has room again, and runs until one of them would block.
 */
static void relay(struct tunnel *t, unsigned run)
{
	int ru = 0, rd = 0;

	t->up.last = t->down.shut;
	if (run & RELAY_UP)
		ru = relay_pump(t, &t->up, t->cfd, t->ufd, run & RELAY_UP_OPEN);
	t->down.last = t->up.shut;
	if (ru >= 0 && (run & RELAY_DOWN))
		rd = relay_pump(t, &t->down, t->ufd, t->cfd, run & RELAY_DOWN_OPEN);
	if (ru < 0 || rd < 0 || (t->up.shut && t->down.shut)) {
		proxy_close(t);
		return;
	}
	/* A direction cut short by its round limit goes on from a fresh callback, after other connections. */
	if (ru > 0)
		event_active(&t->cread, EV_READ | EV_CLOSED, 1);
	if (rd > 0)
		event_active(&t->uread, EV_READ | EV_CLOSED, 1);
	proxy_arm_timer(t, proxy_idle_seconds(t));
}

/*
 * An edge on one socket: readable runs the direction it feeds; writable the one it drains, if that has
 * bytes waiting (an empty pipe means its source was read dry, and the source's own edge will say more).
 *
 * epoll reports a socket's state when it is harvested, so an edge usually says writable as well, and says
 * EV_CLOSED if the peer's FIN had arrived by then: without it, a short read means drained, and a FIN that
 * comes later raises an edge of its own. A hang-up of both directions (after our own shutdown) comes as
 * readable and writable without EV_CLOSED: once we have shut a socket, its reads go on to EAGAIN.
 */
static void relay_io(struct tunnel *t, evutil_socket_t fd, short what)
{
	bool readable = what & EV_READ, open = readable && !(what & EV_CLOSED);
	unsigned run = 0;

	if (fd == t->cfd) {
		run |= readable ? RELAY_UP | (open && !t->down.shut ? RELAY_UP_OPEN : 0) : 0;
		run |= (what & EV_WRITE) && t->down.queued ? RELAY_DOWN : 0;
	} else {
		run |= readable ? RELAY_DOWN | (open && !t->up.shut ? RELAY_DOWN_OPEN : 0) : 0;
		run |= (what & EV_WRITE) && t->up.queued ? RELAY_UP : 0;
	}
	relay(t, run);
}

/* Every edge-triggered event of a connection: what it means depends on what the connection is doing. */
static void on_io(evutil_socket_t fd, short what, void *arg)
{
	struct tunnel *t = arg;

	if (t->http)
		http_io(t, fd, what);
	else if (t->state == S_RELAY)
		relay_io(t, fd, what);
	else if (fd == t->cfd && (what & EV_READ))
		t->client_edge = true; /* the upstream is still being reached: start_relay reads it */
}

void proxy_watch(struct tunnel *t, struct event *ev, int fd)
{
	event_del(ev);
	event_assign(ev, t->px->base, fd, EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST, on_io, t);
	event_add(ev, NULL);
}

static int start_relay(struct tunnel *t)
{
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	size_t early = t->head_len - t->body_at;

	/* Recorded before the client hears of it, or refused (proxy_audit_allow): 0, the tunnel is dealt with. */
	if (!proxy_audit_allow(t))
		return 0;
	/* Bytes the client sent after its request (or the whole replayed TLS hello) go first, from the pipe. */
	if (early) {
		ssize_t n;

		if (pipe_get(t->px, &t->up))
			return -errno;
		n = write(t->up.pipe[1], t->head + t->body_at, early);
		if (n != (ssize_t)early)
			return -EIO;
		t->up.queued = early;
	}
	free(t->head);
	t->head = NULL;
	free(t->req);
	t->req = NULL;
	if (!t->transparent && write(t->cfd, ok, sizeof(ok) - 1) != (ssize_t)(sizeof(ok) - 1))
		return -EIO;
	proxy_watch(t, &t->uread, t->ufd);
	t->state = S_RELAY;
	proxy_count_open(t);
	/*
	 * The client's bytes that came while connecting go now. The upstream's need nothing: watching its
	 * socket reports what is already there as an edge.
	 */
	relay(t, t->up.queued || t->client_edge ? RELAY_UP : 0);
	return 0;
}

/* ---- connecting upstream ------------------------------------------------------------------------ */

void proxy_connected(struct tunnel *t)
{
	event_del(&t->timer);
	if (t->http)
		http_upstream_ready(t);
	else if (start_relay(t))
		proxy_close(t);
}

void proxy_upstream_failed(struct tunnel *t)
{
	(void)t;
	atomic_fetch_add(&stats.upstream_failures, 1);
}

bool proxy_unref(struct tunnel *t)
{
	if (--t->refs == 0) {
		tunnel_free(t);
		return false;
	}
	return !t->closed;
}

static void address_of_host(struct tunnel *t, union proxy_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (t->host.kind == CRGW_HOST_IPV6) {
		a->in6.sin6_family = AF_INET6;
		a->in6.sin6_port = htons(t->port);
		memcpy(&a->in6.sin6_addr, t->host.addr, 16);
	} else {
		a->in.sin_family = AF_INET;
		a->in.sin_port = htons(t->port);
		memcpy(&a->in.sin_addr, t->host.addr, 4);
	}
}

/* ---- the request -------------------------------------------------------------------------------- */

bool proxy_decide(struct tunnel *t)
{
	struct crgw_decision d;

	t->learned = CRGW_REASON_NONE;
	crgw_sandbox_decide(t->sb, &t->host, t->port, &d);
	AUDIT_SET(t->rule, d.rule);
	proxy_note_learned(t, &d);
	if (!d.allow)
		proxy_refuse(t, 403, "Forbidden", d.reason, NULL);
	return d.allow;
}

void proxy_decide_and_connect(struct tunnel *t)
{
	union proxy_addr to;

	if (!proxy_decide(t))
		return;
	if (t->host.kind == CRGW_HOST_NAME) {
		upstream_connect(t);
		return;
	}
	/* An IP literal: the policy decision above already included the rebinding check's ranges. */
	address_of_host(t, &to);
	upstream_connect_address(t, &to);
}

void proxy_note_asked(struct tunnel *t, const char *text, size_t len)
{
	const char *scheme = len >= 3 ? memmem(text, len, "://", 3) : NULL;
	const char *at;
	size_t n = 0;

	if (scheme) {
		len -= (size_t)(scheme + 3 - text);
		text = scheme + 3;
	}
	/* A path or query may carry tokens: only what comes before them names the destination. */
	while (n < len && text[n] != '/' && text[n] != '?' && text[n] != '#')
		n++;
	/* "user:password@host" keeps its password out of the log. */
	while ((at = memchr(text, '@', n))) {
		n -= (size_t)(at + 1 - text);
		text = at + 1;
	}
	AUDIT_SET_RAW(t->asked, text, n);
}

void proxy_note_request_line(struct tunnel *t)
{
	const char *line = t->head, *eol, *sp1, *sp2;
	size_t len = t->head_len;

	eol = memchr(line, '\n', len);
	if (!eol)
		return; /* not even the request line: nothing was named */
	len = (size_t)(eol - line);
	if (len && line[len - 1] == '\r')
		len--;
	/*
	 * The target runs from the method to the version: a line that did not parse may hold spaces in its
	 * target ("CONNECT no port here HTTP/1.1"), and the client asked for all of it.
	 */
	sp1 = memchr(line, ' ', len);
	sp2 = memrchr(line, ' ', len);
	if (!sp1 || sp2 <= sp1 + 1)
		return;
	proxy_note_asked(t, sp1 + 1, (size_t)(sp2 - sp1 - 1));
}

/*
 * The first request head, or a TLS hello, must be in whole PROXY_REQUEST_TIMEOUT_S after the wait for it
 * began, however it trickles in (a later head on a kept-alive connection: http_forward.c). The persistent read event's own timeout restarts at every read: alone, it let a
 * client that sent a byte every few seconds hold its connection, unanswered, for as long as it liked.
 */
static void head_wait_start(struct tunnel *t)
{
	t->head_deadline_us = crgw_realtime_us() + (int64_t)PROXY_REQUEST_TIMEOUT_S * 1000000;
}

static void head_wait(struct tunnel *t)
{
	int64_t left = t->head_deadline_us - crgw_realtime_us();
	struct timeval tv = { 0, 0 };

	if (left > 0) {
		tv.tv_sec = (time_t)(left / 1000000);
		tv.tv_usec = (suseconds_t)(left % 1000000);
	}
	event_add(&t->cread, &tv);
}

/* A CONNECT head: the target decides, and the bytes after the head are the tunnel's first. */
static void connect_request(struct tunnel *t)
{
	const struct crgw_http_request *r = &t->req->req;
	const char *why = NULL;

	t->body_at = r->head_len;
	if (t->transparent) {
		proxy_refuse(t, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID, "CONNECT on a redirected connection");
		return;
	}
	if (crgw_hostport_parse(t->head + r->target.off, r->target.len, 0, &t->host, &t->port, &why) ||
	    t->port == 0) {
		t->host.len = 0;
		proxy_note_asked(t, t->head + r->target.off, r->target.len);
		proxy_refuse(t, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID, why ? why : "CONNECT needs host:port");
		return;
	}
	proxy_decide_and_connect(t);
}

static void on_request(evutil_socket_t fd, short what, void *arg)
{
	struct tunnel *t = arg;
	ssize_t n;
	int r;

	if (what & EV_TIMEOUT) {
		proxy_close(t);
		return;
	}
	n = read(fd, t->head + t->head_len, CRGW_HTTP_HEAD_MAX - t->head_len);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		proxy_close(t);
		return;
	}
	t->head_len += (size_t)n;
	r = crgw_http_parse_head(t->req, t->head, t->head_len);
	if (r == -EAGAIN) {
		head_wait(t); /* need more, within what is left of the head's time */
		return;
	}
	/* From here on the client's socket is watched for both directions, once (a refusal replaces it). */
	proxy_watch(t, &t->cread, t->cfd);
	if (r)
		proxy_note_request_line(t);
	if (r == -E2BIG) {
		proxy_refuse(t, 431, "Request Header Fields Too Large", CRGW_REASON_REQUEST_INVALID,
			     "request head over 16 KiB");
	} else if (r) {
		proxy_refuse(t, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID, t->req->error);
	} else if (t->req->req.method == HTTP_CONNECT) {
		connect_request(t);
	} else {
		http_begin(t);
	}
}

/* A new connection of sandbox `sb` (the reference passes to it); NULL when out of memory. */
static struct tunnel *tunnel_new(struct crgw_proxy *px, int fd, struct crgw_sandbox *sb, const char *service,
				 size_t buffer)
{
	struct tunnel *t = calloc(1, sizeof(*t));

	if (t)
		t->head = malloc(buffer);
	if (!t || !t->head) {
		free(t);
		crgw_sandbox_unref(sb);
		close(fd);
		return NULL;
	}
	t->px = px;
	t->sb = sb;
	t->service = service;
	t->cfd = fd;
	t->ufd = -1;
	t->refs = 1;
	t->up.pipe[0] = t->up.pipe[1] = t->down.pipe[0] = t->down.pipe[1] = -1;
	atomic_fetch_add(&sb->counters.tunnels, 1);
	atomic_fetch_add(&tunnels_held, 1);
	t->held = true;
	t->next = px->tunnels;
	if (t->next)
		t->next->prev = t;
	px->tunnels = t;
	event_assign(&t->timer, px->base, -1, 0, on_timer, t);
	event_assign(&t->cread, px->base, fd, EV_READ, on_io, t);
	event_assign(&t->uread, px->base, -1, EV_READ, on_io, t);
	return t;
}

/*
 * The tunnels the descriptor limit has room for (set once at start): a tunnel holds up to six descriptors
 * (two sockets, two pipes), and a quarter of the limit stays for DNS, mediation, the audit log and the
 * sandboxes' registrations. Beyond it a tunnel is refused 429 rate_limited, as over proxy.max_tunnels,
 * rather than every service failing its accept() once the descriptors are gone.
 */
static atomic_uint fd_tunnel_cap = UINT_MAX;

static void set_fd_tunnel_cap(const struct crgw_config *cfg)
{
	unsigned long long nofile = 0;
	unsigned cap = crgw_nofile_room(3, 4, 6, &nofile);

	if (atomic_exchange(&fd_tunnel_cap, cap) != cap && cap < cfg->proxy_max_tunnels)
		log_warn("proxy.max_tunnels is more than the descriptor limit has room for: more are refused",
			 "max_tunnels=%u nofile=%llu tunnels=%u", cfg->proxy_max_tunnels, nofile, cap);
}

/*
 * Both counts include t itself. A sandbox may hold at most half of the gateway's room, whatever
 * proxy.max_tunnels_per_sandbox says: with the descriptor limit's cap below the per-sandbox one (2,500
 * against 4,096 at 20,000 descriptors), one sandbox holding idle tunnels otherwise left every other
 * sandbox nothing but 429s.
 */
static bool over_cap(struct tunnel *t)
{
	unsigned cap = t->px->cfg->proxy_max_tunnels, fd_cap = atomic_load(&fd_tunnel_cap);
	unsigned room = cap < fd_cap ? cap : fd_cap, share = room / 2 ? room / 2 : 1;

	if (share > t->px->cfg->proxy_max_tunnels_per_sandbox)
		share = t->px->cfg->proxy_max_tunnels_per_sandbox;
	return atomic_load(&t->sb->counters.tunnels) > share || atomic_load(&tunnels_held) > room;
}

/* Reads a request head: the explicit proxy's first request, or a redirected HTTP connection's. */
static void await_request(struct tunnel *t)
{
	struct timeval tv = { PROXY_REQUEST_TIMEOUT_S, 0 };

	t->req = malloc(sizeof(*t->req));
	if (!t->req) {
		proxy_close(t);
		return;
	}
	crgw_http_parser_init(t->req);
	t->answers_http = true;
	if (over_cap(t)) {
		proxy_refuse(t, 429, "Too Many Requests", CRGW_REASON_RATE_LIMITED, "too many connections");
		return;
	}
	event_assign(&t->cread, t->px->base, t->cfd, EV_READ | EV_PERSIST, on_request, t);
	head_wait_start(t);
	event_add(&t->cread, &tv);
	/*
	 * The head has usually arrived with the connection (TCP_DEFER_ACCEPT on the proxy's listener): read
	 * it now. The event above is only queued in libevent's change list, so a request decided here goes
	 * straight to its edge-triggered watch with one epoll_ctl, not three. (t may be gone after this.)
	 */
	on_request(t->cfd, EV_READ, t);
}

void crgw_proxy_tune_listener(int fd, bool client_speaks_first)
{
	int one = 1, defer = PROXY_REQUEST_TIMEOUT_S / 2;

	/* Accepted sockets inherit it: the 200, an HTTP answer and a tunnel's first bytes never wait for an ACK. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/*
	 * A client that speaks first (a CONNECT or HTTP request) is accepted once its first bytes are in: one
	 * wake-up for the connection and its request. A silent one is accepted after `defer` seconds anyway
	 * and then meets the request timeout. Both are best effort: without them only the cost changes.
	 */
	if (client_speaks_first)
		setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer));
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	(void)l;
	crgw_accept_guard_trip(&((struct crgw_proxy *)arg)->guard);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct crgw_proxy *px = arg;
	struct crgw_sandbox *sb;
	struct tunnel *t;

	(void)l;
	sb = crgw_sandbox_for_accepted(fd, sa, salen, "connect");
	if (!sb) {
		close(fd);
		return;
	}
	t = tunnel_new(px, fd, sb, "connect", CRGW_HTTP_HEAD_MAX);
	if (t)
		await_request(t);
}

/* ---- transparent TLS and TCP -------------------------------------------------------------------- */

static void connect_original(struct tunnel *t)
{
	union proxy_addr to = t->upstream;

	upstream_connect_address(t, &to);
}

/*
 * Not TLS (or silent): only the original destination can decide. An explicit IP rule decides alone;
 * otherwise a name the gateway's DNS bound to that address for this sandbox, allowed on that port.
 */
static void plain_decision(struct tunnel *t)
{
	struct crgw_host ip = { .kind = CRGW_HOST_IPV4 };
	struct crgw_binding_addr ba = { .family = AF_INET };
	struct crgw_decision d, named;
	char name[CRGW_HOST_NAME_MAX + 1];

	t->service = "tcp";
	proxy_watch(t, &t->cread, t->cfd);
	event_del(&t->timer);
	memcpy(ip.addr, &t->upstream.in.sin_addr, 4);
	inet_ntop(AF_INET, ip.addr, ip.text, sizeof(ip.text));
	ip.len = (uint8_t)strlen(ip.text);
	t->learned = CRGW_REASON_NONE;
	crgw_sandbox_check_address(t->sb, &ip, t->port, &d);
	proxy_note_learned(t, &d);
	if (d.allow)
		crgw_sandbox_decide(t->sb, &ip, t->port, &d);
	/* In learn mode an address no rule names is still first offered the names bound to it, below. */
	if ((d.allow && d.reason == CRGW_REASON_NONE) || (!d.allow && d.reason == CRGW_REASON_PRIVATE_ADDRESS_BLOCKED) ||
	    (d.rule && strcmp(d.rule, "sandbox.network.default"))) {
		AUDIT_SET(t->rule, d.rule);
		proxy_note_learned(t, &d);
		if (!d.allow) {
			proxy_refuse(t, 0, NULL, d.reason, NULL);
			return;
		}
		connect_original(t);
		return;
	}
	memcpy(ba.addr, ip.addr, 4);
	if (crgw_binding_allowed_name(t->sb, &ba, t->port, name, &named)) {
		crgw_host_parse(name, strlen(name), &t->host, NULL);
		AUDIT_SET(t->rule, named.rule);
		proxy_note_learned(t, &named);
		connect_original(t);
		return;
	}
	if (d.allow) {
		/* Learn mode, and no name bound to the address: the address itself is what was used. */
		AUDIT_SET(t->rule, d.rule);
		proxy_note_learned(t, &d);
		connect_original(t);
		return;
	}
	if (named.reason != CRGW_REASON_NONE) {
		/* A bound name decided, and said no. */
		crgw_host_parse(name, strlen(name), &t->host, NULL);
		d = named;
	}
	AUDIT_SET(t->rule, d.rule);
	proxy_refuse(t, 0, NULL, d.reason, "no name bound to this address is allowed on this port");
}

/* TLS: the SNI names the destination, and must be bound by the gateway's DNS to the address dialled. */
static void tls_decision(struct tunnel *t, const struct crgw_tls_hello *hello)
{
	struct crgw_binding_addr ba = { .family = AF_INET };
	struct crgw_host ip = { .kind = CRGW_HOST_IPV4 };
	struct crgw_decision d;

	proxy_watch(t, &t->cread, t->cfd);
	event_del(&t->timer);
	if (!hello->has_sni) {
		proxy_refuse(t, 0, NULL, CRGW_REASON_SNI_MISSING, "the TLS client hello names no server");
		return;
	}
	if (crgw_host_parse(hello->sni, hello->sni_len, &t->host, NULL) || t->host.kind != CRGW_HOST_NAME) {
		t->host.len = 0;
		AUDIT_SET_RAW(t->asked, hello->sni, hello->sni_len);
		proxy_refuse(t, 0, NULL, CRGW_REASON_REQUEST_INVALID, "the SNI is not a host name");
		return;
	}
	t->learned = CRGW_REASON_NONE;
	crgw_sandbox_decide(t->sb, &t->host, t->port, &d);
	AUDIT_SET(t->rule, d.rule);
	proxy_note_learned(t, &d);
	if (!d.allow) {
		proxy_refuse(t, 0, NULL, d.reason, hello->ech ? "decided on the outer SNI of an encrypted client hello" : NULL);
		return;
	}
	memcpy(ba.addr, &t->upstream.in.sin_addr, 4);
	if (!crgw_binding_check(t->sb, t->host.text, &ba)) {
		proxy_refuse(t, 0, NULL, CRGW_REASON_SNI_MISMATCH,
		       "the gateway's DNS did not give this sandbox that address for that name");
		return;
	}
	memcpy(ip.addr, &t->upstream.in.sin_addr, 4);
	crgw_sandbox_check_address(t->sb, &ip, t->port, &d);
	if (!d.allow) {
		AUDIT_SET(t->rule, d.rule);
		proxy_refuse(t, 0, NULL, d.reason, NULL);
		return;
	}
	proxy_note_learned(t, &d);
	connect_original(t);
}

static void on_hello(evutil_socket_t fd, short what, void *arg)
{
	struct tunnel *t = arg;
	struct crgw_tls_hello hello;
	const char *why = "malformed TLS client hello";
	ssize_t n;
	int r;

	if (what & EV_TIMEOUT) {
		/* Nothing, or not all of a hello, arrived in time. */
		if (t->head_len == 0)
			plain_decision(t);
		else
			proxy_refuse(t, 0, NULL, CRGW_REASON_REQUEST_INVALID, "incomplete TLS client hello");
		return;
	}
	n = read(fd, t->head + t->head_len, CRGW_TLS_HELLO_MAX - t->head_len);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		proxy_close(t);
		return;
	}
	if (t->head_len == 0 && t->head[0] == 0x16)
		head_wait_start(t); /* a TLS record: the whole hello, however many segments it takes, in time */
	t->head_len += (size_t)n;
	if (t->head[0] != 0x16) {
		plain_decision(t);
		return;
	}
	/* Parse again only once enough has arrived: a hello sent a byte at a time costs no quadratic work. */
	if (t->head_len < t->hello_need) {
		head_wait(t);
		return;
	}
	r = crgw_tls_hello_parse((const uint8_t *)t->head, t->head_len, &hello);
	if (r == -EAGAIN && t->head_len < CRGW_TLS_HELLO_MAX) {
		t->hello_need = hello.need;
		head_wait(t);
		return;
	}
	if (r == 0) {
		tls_decision(t, &hello);
		return;
	}
	if (r == -EAGAIN || r == -E2BIG)
		why = "TLS client hello too large";
	else if (hello.sni_invalid)
		why = "the SNI is not a host name (empty, an address, a trailing dot, or a character other than "
		      "letters, digits, '-', '_' and '.')";
	proxy_refuse(t, 0, NULL, CRGW_REASON_REQUEST_INVALID, why);
}

void crgw_proxy_transparent(struct crgw_proxy *px, int fd, struct crgw_sandbox *sb, const struct sockaddr_in *orig,
			    bool http)
{
	struct timeval sniff = { 0, SNIFF_MS * 1000 };
	struct tunnel *t;

	t = tunnel_new(px, fd, crgw_sandbox_ref(sb), http ? "http" : "tls",
		       http ? CRGW_HTTP_HEAD_MAX : CRGW_TLS_HELLO_MAX);
	if (!t)
		return;
	t->transparent = true;
	t->port = ntohs(orig->sin_port);
	t->upstream.in = *orig;
	if (http) {
		await_request(t);
		return;
	}
	t->state = S_HELLO;
	if (over_cap(t)) {
		proxy_refuse(t, 0, NULL, CRGW_REASON_RATE_LIMITED, "too many connections");
		return;
	}
	event_assign(&t->cread, px->base, fd, EV_READ | EV_PERSIST, on_hello, t);
	event_add(&t->cread, &sniff);
}

/* ---- set-up ------------------------------------------------------------------------------------- */

int crgw_proxy_new(struct event_base *base, const struct crgw_config *cfg, struct crgw_dns_server *dns,
		   struct crgw_proxy **out)
{
	struct crgw_proxy *px = calloc(1, sizeof(*px));
	int err, fd;

	if (!px)
		return -ENOMEM;
	px->cfg = cfg;
	px->base = base;
	px->dns = dns;
	set_fd_tunnel_cap(cfg);
	err = crgw_listen_reuseport(SOCK_STREAM, CRGW_PROXY_PORT, &fd);
	if (err) {
		free(px);
		return err;
	}
	crgw_proxy_tune_listener(fd, true);
	px->listener = evconnlistener_new(base, on_accept, px, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (!px->listener) {
		close(fd);
		free(px);
		return -ENOMEM;
	}
	crgw_accept_guard_init(&px->guard, base, px->listener, "proxy");
	evconnlistener_set_error_cb(px->listener, on_accept_error);
	*out = px;
	return 0;
}

void crgw_proxy_set_mediation(struct crgw_proxy *px, struct crgw_mediation *m)
{
	px->mediation = m;
}

void crgw_proxy_close_released(struct crgw_proxy *px)
{
	struct tunnel *t = px->tunnels, *next;

	for (; t; t = next) {
		next = t->next;
		if (atomic_load(&t->sb->released)) {
			t->end_detail = "the sandbox was released";
			proxy_close(t);
		}
	}
}

void crgw_proxy_free(struct crgw_proxy *px)
{
	if (!px)
		return;
	/*
	 * Each open tunnel ends with its connection_end event. One still waiting for a lookup keeps its
	 * memory until the DNS server, freed after this, calls it back.
	 */
	while (px->tunnels)
		proxy_close(px->tunnels);
	while (px->npipes) {
		px->npipes--;
		close(px->pipes[px->npipes][0]);
		close(px->pipes[px->npipes][1]);
	}
	crgw_accept_guard_fini(&px->guard);
	evconnlistener_free(px->listener);
	free(px);
}

void crgw_proxy_get_stats(struct crgw_proxy_stats *out)
{
	out->tunnels_open = atomic_load(&stats.tunnels_open);
	out->tunnels_total = atomic_load(&stats.tunnels_total);
	out->denied = atomic_load(&stats.denied);
	out->upstream_failures = atomic_load(&stats.upstream_failures);
	out->bytes_up = atomic_load(&stats.bytes_up);
	out->bytes_down = atomic_load(&stats.bytes_down);
}
