/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Upstream connections for the proxies: a name's IPv6 and IPv4 addresses from the gateway's own DNS, each
 * through the rebinding check, then raced happy-eyeballs style (RFC 8305): families interleaved, IPv6
 * first, a new attempt every 250 ms (at once when one fails) while earlier ones go on; the first to
 * connect wins and the rest are closed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns.h"
#include "dnsmsg.h"
#include "proxy_internal.h"
#include "sandbox.h"

#define CONNECT_TIMEOUT_S 10
#define ATTEMPT_DELAY_MS 250
/* How long IPv4 answers wait for a late IPv6 lookup before racing without it. */
#define RESOLUTION_DELAY_MS 50
/*
 * Addresses one race tries at most. At ATTEMPT_DELAY_MS apart, 32 attempts take 8 s, close to the
 * CONNECT_TIMEOUT_S of the first: more would only make a dead destination fail later, and each costs an
 * event in every connection that is racing.
 */
#define RACE_ADDRS 32

struct attempt {
	struct upstream_race *race;
	int fd;
	struct event ev;
	union proxy_addr to;
};

struct upstream_race {
	struct tunnel *t;
	union proxy_addr addrs[RACE_ADDRS];
	unsigned naddrs, next;
	struct attempt attempts[RACE_ADDRS];
	unsigned live; /* attempts still connecting */
	struct event stagger; /* the next attempt's start; before the race, the resolution delay */
	bool racing;
	bool asking;     /* inside upstream_connect: answers wait until both lookups are asked */
	bool pending[2]; /* lookups outstanding: [0] A, [1] AAAA */
	bool answered;   /* some lookup gave a NOERROR answer */
	unsigned refused;
	struct crgw_decision first_refusal;
	union proxy_addr refused_addr;
};

static void race_start(struct upstream_race *r);
static void proceed(struct upstream_race *r);

static socklen_t addr_len(const union proxy_addr *a)
{
	return a->sa.sa_family == AF_INET6 ? sizeof(a->in6) : sizeof(a->in);
}

void upstream_abort(struct tunnel *t)
{
	struct upstream_race *r = t->race;

	if (!r)
		return;
	for (unsigned i = 0; i < r->next; i++) {
		if (r->attempts[i].fd >= 0) {
			event_del(&r->attempts[i].ev);
			close(r->attempts[i].fd);
		}
	}
	event_del(&r->stagger);
	free(r);
	t->race = NULL;
}

static void fail(struct tunnel *t)
{
	struct upstream_race *r = t->race;
	const char *why;

	if (r->naddrs == 0 && r->refused) {
		/* Every address the name has is one the policy refuses: say which rule, and one such address. */
		struct crgw_decision d = r->first_refusal;

		t->upstream = r->refused_addr;
		upstream_abort(t);
		AUDIT_SET(t->rule, d.rule);
		proxy_refuse(t, 403, "Forbidden", d.reason, "the name resolves only to refused addresses");
		return;
	}
	if (r->next)
		t->upstream = r->addrs[r->next - 1]; /* the audit names the last address tried */
	why = r->naddrs ? "no address of the destination answered"
	      : r->answered ? "the name has no address"
			    : "the name could not be resolved";
	upstream_abort(t);
	proxy_upstream_failed(t);
	proxy_refuse(t, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, why);
}

static void on_attempt(evutil_socket_t fd, short what, void *arg)
{
	struct attempt *a = arg;
	struct upstream_race *r = a->race;
	struct tunnel *t = r->t;
	int err = 0;
	socklen_t len = sizeof(err);

	/*
	 * Writable alone is a completed connect (epoll reports a failed one as an error, which libevent hands
	 * over as readable and writable): only then is SO_ERROR asked (a server that spoke at once costs it too).
	 */
	if ((what & EV_TIMEOUT) || ((what & EV_READ) && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) || err))) {
		close(fd);
		a->fd = -1;
		r->live--;
		/* A failure starts the next attempt at once. */
		event_del(&r->stagger);
		race_start(r);
		return;
	}
	t->ufd = fd;
	t->upstream = a->to;
	a->fd = -1; /* the winner's descriptor now belongs to the connection */
	upstream_abort(t);
	proxy_connected(t);
}

static void on_stagger(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_race *r = arg;

	(void)fd;
	(void)what;
	/* Before the race this was the resolution delay: IPv6 answers took too long to wait for. */
	r->racing = true;
	race_start(r);
}

/*
 * Starts the next attempt that gets as far as connecting, and arms the stagger timer for the one after.
 * With nothing left to try, nothing connecting and no lookup outstanding, the connection fails.
 */
static void race_start(struct upstream_race *r)
{
	struct tunnel *t = r->t;

	while (r->next < r->naddrs) {
		struct attempt *a = &r->attempts[r->next];
		struct timeval timeout = { CONNECT_TIMEOUT_S, 0 }, delay = { 0, ATTEMPT_DELAY_MS * 1000 };
		int one = 1;

		a->race = r;
		a->to = r->addrs[r->next++];
		a->fd = socket(a->to.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (a->fd < 0)
			continue;
		setsockopt(a->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(a->fd, &a->to.sa, addr_len(&a->to)) && errno != EINPROGRESS) {
			/* Refused at once (no route, say): straight on to the next address. */
			close(a->fd);
			a->fd = -1;
			continue;
		}
		/* Reading too: an error then comes as readable and writable, and success as writable alone. */
		event_assign(&a->ev, t->px->base, a->fd, EV_READ | EV_WRITE, on_attempt, a);
		event_add(&a->ev, &timeout);
		r->live++;
		if (r->next < r->naddrs)
			event_add(&r->stagger, &delay);
		return;
	}
	if (r->live == 0 && !r->pending[0] && !r->pending[1])
		fail(t);
}

/*
 * Adds a lookup's addresses that pass the rebinding check to those not tried yet, and orders the untried
 * ones IPv6, IPv4, IPv6, ... (each family keeps its own order).
 */
static void add_addresses(struct upstream_race *r, int family, const struct crgw_dns_cached *e)
{
	struct tunnel *t = r->t;
	union proxy_addr v6[RACE_ADDRS], v4[RACE_ADDRS];
	unsigned n6 = 0, n4 = 0, i6 = 0, i4 = 0, n = r->next;

	for (unsigned i = r->next; i < r->naddrs; i++) {
		if (r->addrs[i].sa.sa_family == AF_INET6)
			v6[n6++] = r->addrs[i];
		else
			v4[n4++] = r->addrs[i];
	}
	for (unsigned i = 0; i < e->naddrs && i < CRGW_DNS_CACHE_ADDRS; i++) {
		struct crgw_host h = { .kind = family == AF_INET6 ? CRGW_HOST_IPV6 : CRGW_HOST_IPV4 };
		union proxy_addr a;
		struct crgw_decision d = { 0 };

		memset(&a, 0, sizeof(a));
		memcpy(h.addr, e->addrs[i], family == AF_INET6 ? 16 : 4);
		if (family == AF_INET6) {
			a.in6.sin6_family = AF_INET6;
			a.in6.sin6_port = htons(t->port);
			memcpy(&a.in6.sin6_addr, e->addrs[i], 16);
		} else {
			a.in.sin_family = AF_INET;
			a.in.sin_port = htons(t->port);
			memcpy(&a.in.sin_addr, e->addrs[i], 4);
		}
		crgw_sandbox_check_address(t->sb, &h, t->port, &d);
		proxy_note_learned(t, &d);
		if (!d.allow) {
			if (!r->refused++) {
				r->first_refusal = d;
				r->refused_addr = a;
			}
			continue;
		}
		/* Beyond what a race tries: the rest of a long answer waits for the next connection. */
		if (family == AF_INET6 && n6 < RACE_ADDRS)
			v6[n6++] = a;
		else if (family == AF_INET && n4 < RACE_ADDRS)
			v4[n4++] = a;
	}
	while ((i6 < n6 || i4 < n4) && n < RACE_ADDRS) {
		if (i6 < n6)
			r->addrs[n++] = v6[i6++];
		if (i4 < n4 && n < RACE_ADDRS)
			r->addrs[n++] = v4[i4++];
	}
	r->naddrs = n;
}

/* After a lookup: race, wait for the other lookup, or feed a race already going. */
static void proceed(struct upstream_race *r)
{
	struct timeval delay = { 0, RESOLUTION_DELAY_MS * 1000 };

	if (r->asking)
		return;
	if (r->racing) {
		if (r->live == 0)
			race_start(r); /* new addresses, or the last lookup ended with nothing to try */
		else if (r->next < r->naddrs && !evtimer_pending(&r->stagger, NULL))
			event_add(&r->stagger, &(struct timeval){ 0, ATTEMPT_DELAY_MS * 1000 });
		return;
	}
	if (r->pending[0])
		return; /* wait for the IPv4 answers */
	if (r->pending[1]) {
		/* IPv4 answers are in: give the IPv6 lookup a moment, then race without it. */
		if (r->naddrs && !evtimer_pending(&r->stagger, NULL))
			event_add(&r->stagger, &delay);
		return;
	}
	event_del(&r->stagger);
	r->racing = true;
	race_start(r);
}

static void on_lookup(struct tunnel *t, int family, const struct crgw_dns_cached *e)
{
	struct upstream_race *r = t->race;

	r->pending[family == AF_INET6] = false;
	if (e && e->rcode == CRGW_DNS_NOERROR) {
		r->answered = true;
		add_addresses(r, family, e);
	}
	proceed(r);
}

static void on_lookup_a(void *arg, const struct crgw_dns_cached *e)
{
	struct tunnel *t = arg;

	if (proxy_unref(t) && t->race)
		on_lookup(t, AF_INET, e);
}

static void on_lookup_aaaa(void *arg, const struct crgw_dns_cached *e)
{
	struct tunnel *t = arg;

	if (proxy_unref(t) && t->race)
		on_lookup(t, AF_INET6, e);
}

static struct upstream_race *race_new(struct tunnel *t)
{
	struct upstream_race *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->t = t;
	t->race = r;
	event_assign(&r->stagger, t->px->base, -1, 0, on_stagger, r);
	t->state = S_CONNECTING;
	return r;
}

void upstream_connect_address(struct tunnel *t, const union proxy_addr *to)
{
	struct upstream_race *r = race_new(t);

	if (!r) {
		proxy_close(t);
		return;
	}
	r->addrs[0] = *to;
	r->naddrs = 1;
	r->racing = true;
	race_start(r);
}

void upstream_connect(struct tunnel *t)
{
	static const struct {
		uint16_t qtype;
		int family;
		void (*cb)(void *arg, const struct crgw_dns_cached *e);
	} lookups[2] = { { CRGW_DNS_A, AF_INET, on_lookup_a }, { CRGW_DNS_AAAA, AF_INET6, on_lookup_aaaa } };
	struct upstream_race *r = race_new(t);

	if (!r) {
		proxy_close(t);
		return;
	}
	t->state = S_RESOLVING;
	r->pending[0] = r->pending[1] = true;
	r->asking = true;
	for (unsigned i = 0; i < 2; i++) {
		struct crgw_dns_cached e;
		int rc;

		t->refs++;
		rc = crgw_dns_resolve(t->px->dns, t->host.text, lookups[i].qtype, &e, lookups[i].cb, t);
		if (rc != 0) {
			/* Answered from the cache (1), or failed (< 0): no callback comes. */
			proxy_unref(t);
			on_lookup(t, lookups[i].family, rc == 1 ? &e : NULL);
		}
	}
	r->asking = false;
	proceed(r);
}
