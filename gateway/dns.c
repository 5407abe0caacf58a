/* SPDX-License-Identifier: Apache-2.0 */
/* The sandbox-facing DNS service: policy first, then the shared cache, then c-ares upstream. */
#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "audit.h"
#include "config.h"
#include "dns.h"
#include "dns_cache.h"
#include "dnsmsg.h"
#include "listen.h"
#include "log.h"
#include "sandbox.h"

/* Fixed: the nftables rules admit DNS to the gateway address on this port only. */
#define CRGW_DNS_PORT 53
#define RECV_BATCH 32
#define RECV_BUF 4096
#define TCP_IDLE_S 10
/* Per sandbox: each holds a descriptor, and a sandbox must not take all of the gateway's. */
#define TCP_CONNS_PER_SANDBOX 64
#define TCP_INFLIGHT_MAX 16
#define PENDING_MAX 4096
#define UPSTREAM_BUCKETS 1024
#define ARES_SOCKS_MAX 16

struct tcp_conn;

/* A sandbox query waiting for an upstream answer. */
struct waiter {
	struct waiter *next;
	struct crgw_sandbox *sb; /* reference */
	struct crgw_dns_query q;
	struct tcp_conn *conn;   /* reference, or NULL for UDP */
	/* A lookup for the gateway itself (the proxies): called instead of answering a query. */
	void (*cb)(void *arg, const struct crgw_dns_cached *e);
	void *cb_arg;
	struct sockaddr_in peer;
	struct in_addr local;
	size_t len;
	uint8_t msg[];
};

/* One upstream lookup of (name, type), shared by every query that asks for it meanwhile. */
struct upstream {
	struct upstream *next;
	struct crgw_dns_server *srv;
	uint16_t qtype;
	unsigned nwaiters;
	struct waiter *waiters;
	char name[CRGW_DNS_HOST_TEXT_MAX];
};

struct tcp_conn {
	struct tcp_conn *prev, *next;
	struct crgw_dns_server *srv;
	struct bufferevent *bev;
	struct crgw_sandbox *sb;
	unsigned refs, inflight;
	bool closed;
};

struct ares_sock {
	int fd;
	struct event *ev;
};

/*
 * What this worker last bound, per (sandbox, name, family): the cache hands out one expiry per answer,
 * so a repeat of the same answer needs no trip through the sandbox's binding lock. A stale memo can only
 * make the gateway skip a binding it already made, or miss one (the proxies then refuse): never allow more.
 */
#define BIND_MEMO 1024

struct bind_memo {
	const struct crgw_sandbox *sb;
	int64_t created_us;
	int64_t expiry;
	uint8_t family;
	char name[CRGW_DNS_HOST_TEXT_MAX];
};

struct counters {
	atomic_uint_fast64_t queries, answered_cache, answered_upstream, denied, formerr, servfail, rate_limited;
	atomic_uint_fast64_t unknown_sandbox, upstream_queries, upstream_failures;
};

struct crgw_dns_server {
	struct crgw_dns_server *next_server;
	const struct crgw_config *cfg;
	struct event_base *base;
	int udp_fd;
	struct event *udp_ev;
	struct evconnlistener *tcp_listener;
	struct crgw_accept_guard tcp_guard;
	ares_channel channel;
	bool channel_ready;
	struct ares_sock asocks[ARES_SOCKS_MAX];
	struct event *ares_timer;
	unsigned upstream_generation; /* the reload whose servers the channel has */
	struct upstream *pending[UPSTREAM_BUCKETS];
	unsigned npending;
	struct counters c;
	struct tcp_conn *conns;
	struct bind_memo memo[BIND_MEMO];
	/* recvmmsg/sendmmsg state */
	struct mmsghdr rmsg[RECV_BATCH], smsg[RECV_BATCH];
	struct iovec riov[RECV_BATCH], siov[RECV_BATCH];
	struct sockaddr_in rpeer[RECV_BATCH], speer[RECV_BATCH];
	uint8_t rctl[RECV_BATCH][CMSG_SPACE(sizeof(struct in_pktinfo))];
	uint8_t sctl[RECV_BATCH][CMSG_SPACE(sizeof(struct in_pktinfo))];
	uint8_t rbuf[RECV_BATCH][RECV_BUF];
	uint8_t sbuf[RECV_BATCH][CRGW_DNS_UDP_PLAIN_MAX > CRGW_DNS_EDNS_UDP_SIZE ? CRGW_DNS_UDP_PLAIN_MAX
										 : CRGW_DNS_EDNS_UDP_SIZE];
};

static pthread_mutex_t servers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct crgw_dns_server *servers;

#define COUNT(srv, field) atomic_fetch_add_explicit(&(srv)->c.field, 1, memory_order_relaxed)

/* ---- audit -------------------------------------------------------------------------------------- */

static const char *qtype_name(uint16_t t, char *buf, size_t size)
{
	switch (t) {
	case CRGW_DNS_A: return "A";
	case CRGW_DNS_AAAA: return "AAAA";
	case CRGW_DNS_CNAME: return "CNAME";
	case CRGW_DNS_TXT: return "TXT";
	case CRGW_DNS_MX: return "MX";
	case CRGW_DNS_SRV: return "SRV";
	case CRGW_DNS_HTTPS: return "HTTPS";
	case CRGW_DNS_ANY: return "ANY";
	default: snprintf(buf, size, "TYPE%u", t); return buf;
	}
}

/*
 * One DNS decision event. Allows are audited when they bind a name (once per answer lifetime, not per
 * repeated query: docs/audit.md); denials every time, up to a per-sandbox rate. Returns -ENOBUFS when an
 * allow could not be recorded and the operator did not allow loss: the caller then refuses.
 */
static void follow_upstreams(struct crgw_dns_server *srv);

static int audit_dns_limited(struct crgw_sandbox *sb, const struct crgw_dns_query *q, bool allow, bool limited,
			     enum crgw_reason reason, const char *rule, const char *dst_ip, const char *detail)
{
	struct crgw_audit_event ev = { .kind = CRGW_AUDIT_DECISION, .service = "dns" };
	uint64_t suppressed = 0;
	char tbuf[12];

	if (limited && !crgw_sandbox_audit_allowed(sb, &suppressed))
		return 0;
	AUDIT_SET(ev.sandbox_id, sb->id);
	AUDIT_SET(ev.run_id, sb->run_id);
	AUDIT_SET(ev.policy_hash, sb->policy_hash);
	AUDIT_SET(ev.dst_host, q->name);
	AUDIT_SET(ev.dst_ip, dst_ip);
	inet_ntop(AF_INET, &sb->guest, ev.src_ip, sizeof(ev.src_ip));
	/* An allow with a reason is learn mode's: what enforcement would have refused, let through. */
	ev.action = !allow ? CRGW_ACTION_DENY : reason != CRGW_REASON_NONE ? CRGW_ACTION_WARN : CRGW_ACTION_ALLOW;
	ev.reason = reason;
	AUDIT_SET(ev.rule, rule);
	AUDIT_SET(ev.qtype, qtype_name(q->qtype, tbuf, sizeof(tbuf)));
	AUDIT_SET(ev.detail, detail);
	if (suppressed)
		ev.count = suppressed + 1;
	return crgw_audit_emit(&ev);
}

static int audit_dns(struct crgw_sandbox *sb, const struct crgw_dns_query *q, bool allow,
		     enum crgw_reason reason, const char *rule, const char *dst_ip, const char *detail)
{
	return audit_dns_limited(sb, q, allow, !allow, reason, rule, dst_ip, detail);
}

/*
 * Learn mode: a name the policy would refuse, let through, that has no address (NXDOMAIN, or none of the
 * type asked) binds nothing, so no allow event would name it. It is audited as warn all the same, once
 * per query (dns.rate_limit bounds them): a learn run must not send data out in query names unrecorded,
 * and `policy learn` must see every lookup the job made.
 */
static void audit_learned_miss(struct crgw_sandbox *sb, const struct crgw_dns_query *q, const char *detail)
{
	struct crgw_host host;
	struct crgw_decision d = { 0 };

	if (!sb->learn || crgw_host_parse(q->name, q->name_len, &host, NULL))
		return;
	crgw_sandbox_decide(sb, &host, CRGW_PORT_ANY, &d);
	if (!d.allow || d.reason == CRGW_REASON_NONE)
		return;
	audit_dns_limited(sb, q, true, false,
			  d.reason == CRGW_REASON_PORT_NOT_ALLOWED ? CRGW_REASON_HOST_NOT_ALLOWED : d.reason, d.rule, NULL,
			  detail);
}

/* ---- deciding and answering --------------------------------------------------------------------- */

static unsigned clamp_ttl(const struct crgw_config *cfg, int64_t remaining)
{
	if (remaining < (int64_t)cfg->dns_ttl_min)
		remaining = cfg->dns_ttl_min;
	if (remaining > (int64_t)cfg->dns_ttl_max)
		remaining = cfg->dns_ttl_max;
	return remaining < 1 ? 1 : (unsigned)remaining;
}

static int build(uint8_t *out, size_t cap, size_t limit, const uint8_t *msg, size_t len,
		 const struct crgw_dns_query *q, int rcode, const struct crgw_dns_answer *ans, size_t n)
{
	return crgw_dns_response_build(out, cap, limit, msg, len, q, rcode, ans, n);
}

static int denied_rcode(const struct crgw_config *cfg)
{
	return cfg->dns_refuse_denied ? CRGW_DNS_REFUSED : CRGW_DNS_NXDOMAIN;
}

/* Where the memo of (sandbox, name, family) lives. */
static unsigned memo_slot(const char *name, uint8_t family, const struct crgw_sandbox *sb)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ family ^ (uint64_t)(uintptr_t)sb;

	for (; *name; name++)
		h = (h ^ (uint8_t)*name) * 0x100000001b3ULL;
	return (unsigned)(h ^ (h >> 29)) % BIND_MEMO;
}

/*
 * Lists addresses for an audit detail, comma-separated, as many as fit in `size` bytes; the rest are
 * counted (" +N more"), so a long answer never makes the detail lie about its length.
 */
static void addrs_text(uint8_t family, const uint8_t *const *addrs, unsigned n, char *out, size_t size)
{
	size_t used = 0;

	out[0] = '\0';
	for (unsigned i = 0; i < n; i++) {
		char text[INET6_ADDRSTRLEN], more[24];
		/* Room for this address and, should a later one not fit, for the count of the rest. */
		int rest = i + 1 < n ? snprintf(more, sizeof(more), " +%u more", n - i - 1) : 0;

		inet_ntop(family, addrs[i], text, sizeof(text));
		if (used + (used ? 1 : 0) + strlen(text) + (size_t)rest + 1 > size) {
			snprintf(out + used, size - used, "%s+%u more", used ? " " : "", n - i);
			return;
		}
		used += (size_t)snprintf(out + used, size - used, "%s%s", used ? "," : "", text);
	}
}

/* One refused address of an answer, with what refused it. */
struct refusal {
	const uint8_t *addr;
	struct crgw_decision d;
};

/*
 * Audits the refused addresses of an answer that was given without them: one denial per reason and rule,
 * naming the first such address in dst_ip and all of them in detail. A consumer that watches for
 * private_address_blocked sees a rebinding attempt even when the name also has good addresses.
 */
static void audit_left_out(struct crgw_sandbox *sb, const struct crgw_dns_query *q, uint8_t family,
			   const struct refusal *r, unsigned n)
{
	bool done[CRGW_DNS_CACHE_ADDRS] = { false };

	for (unsigned i = 0; i < n; i++) {
		const uint8_t *group[CRGW_DNS_CACHE_ADDRS];
		char first[INET6_ADDRSTRLEN], list[100], detail[160];
		unsigned m = 0;

		if (done[i])
			continue;
		for (unsigned j = i; j < n; j++) {
			if (done[j] || r[j].d.reason != r[i].d.reason ||
			    (r[j].d.rule != r[i].d.rule &&
			     (!r[j].d.rule || !r[i].d.rule || strcmp(r[j].d.rule, r[i].d.rule))))
				continue;
			done[j] = true;
			group[m++] = r[j].addr;
		}
		inet_ntop(family, r[i].addr, first, sizeof(first));
		addrs_text(family, group, m, list, sizeof(list));
		snprintf(detail, sizeof(detail), "refused=%s (left out; the other addresses were answered)", list);
		audit_dns(sb, q, false, r[i].d.reason, r[i].d.rule, first, detail);
	}
}

/* The allow event's detail: the addresses handed out, the TTL, and what the sandbox did not get. */
static void allow_detail(uint8_t family, const struct crgw_binding_addr *bind, unsigned n, unsigned ttl,
			 unsigned refused, unsigned omitted, char *out, size_t size)
{
	const uint8_t *addrs[CRGW_DNS_CACHE_ADDRS];
	char tail[120];
	size_t used, head = strlen("addresses="), tlen;

	used = (size_t)snprintf(tail, sizeof(tail), " ttl=%u", ttl);
	if (refused)
		used += (size_t)snprintf(tail + used, sizeof(tail) - used, " (refused addresses left out)");
	if (omitted)
		snprintf(tail + used, sizeof(tail) - used, " (%u more over the limit of %u left out)", omitted,
			 CRGW_DNS_CACHE_ADDRS);
	for (unsigned i = 0; i < n; i++)
		addrs[i] = bind[i].addr;
	/* The notes matter more than the full list: the list gets what room they leave. */
	tlen = strlen(tail);
	memcpy(out, "addresses=", head);
	addrs_text(family, addrs, n, out + head, size - head - tlen);
	used = strlen(out);
	memcpy(out + used, tail, tlen + 1);
}

/*
 * Answers an allowed name from a cache entry: every address passes the rebinding check (blocked ranges,
 * special addresses, CIDR denies) and is bound to the sandbox before it is handed out.
 */
static int answer_entry(struct crgw_dns_server *srv, struct crgw_sandbox *sb, const struct crgw_dns_query *q,
			const uint8_t *msg, size_t len, const struct crgw_dns_cached *e, uint8_t *out, size_t cap,
			size_t limit)
{
	const struct crgw_config *cfg = srv->cfg;
	struct crgw_dns_answer ans[CRGW_DNS_CACHE_ADDRS];
	struct crgw_binding_addr bind[CRGW_DNS_CACHE_ADDRS];
	struct refusal refused[CRGW_DNS_CACHE_ADDRS];
	int64_t now = crgw_monotonic_s();
	unsigned ttl = clamp_ttl(cfg, e->expiry - now), n = 0, nrefused = 0;
	uint8_t family = q->qtype == CRGW_DNS_A ? AF_INET : AF_INET6;
	size_t alen = family == AF_INET ? 4 : 16;

	if (e->rcode != CRGW_DNS_NOERROR) {
		audit_learned_miss(sb, q, e->rcode == CRGW_DNS_NXDOMAIN ? "no such name (NXDOMAIN)" : "no answer");
		return build(out, cap, limit, msg, len, q, e->rcode, NULL, 0);
	}
	memset(bind, 0, e->naddrs * sizeof(bind[0]));
	for (unsigned i = 0; i < e->naddrs; i++) {
		struct crgw_host h;
		struct crgw_decision d = { 0 };

		/* The bytes as they came: the policy library sees through IPv4-mapped and other embedded forms. */
		memset(&h, 0, sizeof(h));
		h.kind = family == AF_INET ? CRGW_HOST_IPV4 : CRGW_HOST_IPV6;
		memcpy(h.addr, e->addrs[i], alen);
		crgw_sandbox_check_address(sb, &h, CRGW_PORT_ANY, &d);
		if (!d.allow) {
			refused[nrefused].addr = e->addrs[i];
			refused[nrefused].d = d;
			nrefused++;
			continue;
		}
		ans[n].type = q->qtype;
		ans[n].ttl = ttl;
		memcpy(ans[n].addr, e->addrs[i], 16);
		bind[n].family = family;
		memcpy(bind[n].addr, e->addrs[i], alen);
		n++;
	}
	if (nrefused && n == 0) {
		char text[INET6_ADDRSTRLEN];

		/* Every address is one the sandbox must never reach: the name does not exist for it. */
		atomic_fetch_add(&sb->counters.dns_denied, 1);
		COUNT(srv, denied);
		inet_ntop(family, refused[0].addr, text, sizeof(text));
		/* The reason and rule of the first refused address, which dst_ip names. */
		audit_dns(sb, q, false, refused[0].d.reason, refused[0].d.rule, text, "resolved to a refused address");
		return build(out, cap, limit, msg, len, q, denied_rcode(cfg), NULL, 0);
	}
	if (n) {
		int64_t expiry = now + ttl + cfg->dns_binding_grace;
		struct bind_memo *m = &srv->memo[memo_slot(q->name, family, sb)];
		bool known = m->sb == sb && m->created_us == sb->created_us && m->family == family &&
			     m->expiry == e->expiry && !strcmp(m->name, q->name);
		int changed = known ? 0 : crgw_binding_record(sb, q->name, bind, n, expiry);

		/* Fail closed: an address the proxies could not check later is not handed out. */
		if (changed < 0) {
			COUNT(srv, servfail);
			return build(out, cap, limit, msg, len, q, CRGW_DNS_SERVFAIL, NULL, 0);
		}
		if (changed) {
			struct crgw_host host;
			struct crgw_decision allow = { 0 };
			char detail[160];

			if (crgw_host_parse(q->name, q->name_len, &host, NULL) == 0)
				crgw_sandbox_decide(sb, &host, CRGW_PORT_ANY, &allow);
			allow_detail(family, bind, n, ttl, nrefused, e->omitted, detail, sizeof(detail));
			/* An allow that cannot be recorded is not given, and the next query tries again. */
			if (audit_dns(sb, q, true,
				      allow.reason == CRGW_REASON_PORT_NOT_ALLOWED ? CRGW_REASON_HOST_NOT_ALLOWED : allow.reason,
				      allow.rule, NULL, detail) == -ENOBUFS) {
				crgw_binding_forget(sb, q->name, family);
				m->sb = NULL;
				COUNT(srv, servfail);
				return build(out, cap, limit, msg, len, q, CRGW_DNS_SERVFAIL, NULL, 0);
			}
			/* Audited with the answer they were left out of: once per binding change, like the allow. */
			audit_left_out(sb, q, family, refused, nrefused);
		}
		if (!known) {
			m->sb = sb;
			m->created_us = sb->created_us;
			m->family = family;
			m->expiry = e->expiry;
			memcpy(m->name, q->name, q->name_len + 1);
		}
	}
	if (!n && !nrefused)
		audit_learned_miss(sb, q, "no address of this type");
	atomic_fetch_add_explicit(&sb->counters.dns_allowed, 1, memory_order_relaxed);
	return build(out, cap, limit, msg, len, q, CRGW_DNS_NOERROR, ans, n);
}

static size_t udp_limit(const struct crgw_dns_query *q)
{
	if (!q->edns)
		return CRGW_DNS_UDP_PLAIN_MAX;
	return q->edns_udp_size < CRGW_DNS_EDNS_UDP_SIZE ? q->edns_udp_size : CRGW_DNS_EDNS_UDP_SIZE;
}

enum verdict { V_DROP, V_ANSWER, V_UPSTREAM };

/*
 * Everything up to the cache: parse, rate limit, policy. Writes an answer into `out` (V_ANSWER), asks for
 * an upstream lookup (V_UPSTREAM, `q` filled), or drops (V_DROP: not a query at all).
 */
static enum verdict decide(struct crgw_dns_server *srv, struct crgw_sandbox *sb, const uint8_t *msg, size_t len,
			   struct crgw_dns_query *q, uint8_t *out, size_t cap, bool tcp, int *outlen)
{
	const struct crgw_config *cfg = srv->cfg;
	struct crgw_decision d;
	struct crgw_host host;
	struct crgw_dns_cached e;
	int err = crgw_dns_query_parse(msg, len, q);
	size_t limit = tcp ? cap : udp_limit(q);

	COUNT(srv, queries);
	atomic_fetch_add_explicit(&sb->counters.dns_queries, 1, memory_order_relaxed);
	if (err == -EINVAL)
		return V_DROP;
	if (err == -EPROTONOSUPPORT) {
		*outlen = build(out, cap, limit, msg, len, q, CRGW_DNS_BADVERS, NULL, 0);
		return *outlen > 0 ? V_ANSWER : V_DROP;
	}
	if (err == -EBADMSG || err == -EOPNOTSUPP) {
		COUNT(srv, formerr);
		atomic_fetch_add(&sb->counters.dns_formerr, 1);
		*outlen = build(out, cap, limit, msg, len, q,
				err == -EBADMSG ? CRGW_DNS_FORMERR : CRGW_DNS_NOTIMP, NULL, 0);
		return *outlen > 0 ? V_ANSWER : V_DROP;
	}
	if (err)
		return V_DROP;

	uint64_t now = (uint64_t)crgw_monotonic_s(), w = atomic_load_explicit(&sb->rate_window, memory_order_relaxed);

	if (w != now && atomic_compare_exchange_strong(&sb->rate_window, &w, now))
		atomic_store(&sb->rate_count, 0);
	if (atomic_fetch_add_explicit(&sb->rate_count, 1, memory_order_relaxed) >= cfg->dns_rate_limit) {
		COUNT(srv, rate_limited);
		atomic_fetch_add(&sb->counters.dns_rate_limited, 1);
		audit_dns(sb, q, false, CRGW_REASON_RATE_LIMITED, "dns.rate_limit", NULL, NULL);
		*outlen = build(out, cap, limit, msg, len, q, CRGW_DNS_REFUSED, NULL, 0);
		return *outlen > 0 ? V_ANSWER : V_DROP;
	}
	if (q->qclass != CRGW_DNS_CLASS_IN || q->name_len == 0) {
		*outlen = build(out, cap, limit, msg, len, q, CRGW_DNS_REFUSED, NULL, 0);
		return *outlen > 0 ? V_ANSWER : V_DROP;
	}
	/* A name in a query is a name: "1.2.3.4" asked as a name is refused like any unlisted one. */
	if (crgw_host_parse(q->name, q->name_len, &host, NULL) || host.kind != CRGW_HOST_NAME) {
		d.allow = false;
		d.reason = CRGW_REASON_HOST_NOT_ALLOWED;
		d.rule = "sandbox.network.default";
	} else {
		crgw_sandbox_decide(sb, &host, CRGW_PORT_ANY, &d);
	}
	if (!d.allow) {
		COUNT(srv, denied);
		atomic_fetch_add(&sb->counters.dns_denied, 1);
		audit_dns(sb, q, false, d.reason == CRGW_REASON_PORT_NOT_ALLOWED ? CRGW_REASON_HOST_NOT_ALLOWED : d.reason,
			  d.rule, NULL, NULL);
		*outlen = build(out, cap, limit, msg, len, q, denied_rcode(cfg), NULL, 0);
		return *outlen > 0 ? V_ANSWER : V_DROP;
	}
	if (q->qtype != CRGW_DNS_A && q->qtype != CRGW_DNS_AAAA) {
		/* Allowed names get an empty answer for other types: no data channel through other records. */
		*outlen = build(out, cap, limit, msg, len, q, CRGW_DNS_NOERROR, NULL, 0);
		return *outlen > 0 ? V_ANSWER : V_DROP;
	}
	if (crgw_dns_cache_get(q->name, q->qtype, &e)) {
		COUNT(srv, answered_cache);
		*outlen = answer_entry(srv, sb, q, msg, len, &e, out, cap, limit);
		return *outlen > 0 ? V_ANSWER : V_DROP;
	}
	return V_UPSTREAM;
}

/* ---- upstream (c-ares) -------------------------------------------------------------------------- */

static unsigned upstream_bucket(const char *name, uint16_t qtype)
{
	uint32_t h = 2166136261u ^ qtype;

	for (; *name; name++)
		h = (h ^ (uint8_t)*name) * 16777619u;
	return h % UPSTREAM_BUCKETS;
}

static void tcp_conn_unref(struct tcp_conn *c);
static void tcp_send(struct tcp_conn *c, const uint8_t *resp, int len);

static void udp_send_one(struct crgw_dns_server *srv, const struct sockaddr_in *peer, struct in_addr local,
			 const uint8_t *resp, size_t len)
{
	uint8_t ctl[CMSG_SPACE(sizeof(struct in_pktinfo))] = { 0 };
	struct iovec iov = { (void *)resp, len };
	struct msghdr mh = { .msg_name = (void *)peer, .msg_namelen = sizeof(*peer), .msg_iov = &iov,
			     .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	struct in_pktinfo *pi;

	cm->cmsg_level = IPPROTO_IP;
	cm->cmsg_type = IP_PKTINFO;
	cm->cmsg_len = CMSG_LEN(sizeof(*pi));
	pi = (struct in_pktinfo *)CMSG_DATA(cm);
	pi->ipi_spec_dst = local;
	/* Best effort, like any UDP answer: the client retries. */
	if (sendmsg(srv->udp_fd, &mh, MSG_DONTWAIT) < 0)
		return;
}

static void finish_waiter(struct crgw_dns_server *srv, struct waiter *w, const struct crgw_dns_cached *e)
{
	uint8_t out[4096];
	size_t limit = w->conn ? sizeof(out) : udp_limit(&w->q);
	int len;

	if (w->cb) {
		w->cb(w->cb_arg, e);
		free(w);
		return;
	}
	if (e)
		len = answer_entry(srv, w->sb, &w->q, w->msg, w->len, e, out, sizeof(out), limit);
	else
		len = build(out, sizeof(out), limit, w->msg, w->len, &w->q, CRGW_DNS_SERVFAIL, NULL, 0);
	if (len > 0) {
		if (w->conn)
			tcp_send(w->conn, out, len);
		else
			udp_send_one(srv, &w->peer, w->local, out, (size_t)len);
	}
	if (w->conn) {
		w->conn->inflight--;
		tcp_conn_unref(w->conn);
	}
	crgw_sandbox_unref(w->sb);
	free(w);
}

static void upstream_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct upstream *u = arg;
	struct crgw_dns_server *srv = u->srv;
	const struct crgw_config *cfg = srv->cfg;
	struct crgw_dns_cached e = { .rcode = CRGW_DNS_NOERROR };
	bool ok = true;
	int64_t now = crgw_monotonic_s();
	int ttl_min = -1;

	(void)timeouts;
	if (status == ARES_SUCCESS && abuf) {
		/* The hostent has every address of the answer: only it tells how many the array left out. */
		struct hostent *all = NULL;
		int n = CRGW_DNS_CACHE_ADDRS, r;

		if (u->qtype == CRGW_DNS_A) {
			struct ares_addrttl at[CRGW_DNS_CACHE_ADDRS];

			r = ares_parse_a_reply(abuf, alen, &all, at, &n);
			for (int i = 0; r == ARES_SUCCESS && i < n; i++) {
				memcpy(e.addrs[i], &at[i].ipaddr, 4);
				if (ttl_min < 0 || at[i].ttl < ttl_min)
					ttl_min = at[i].ttl;
			}
		} else {
			struct ares_addr6ttl at[CRGW_DNS_CACHE_ADDRS];

			r = ares_parse_aaaa_reply(abuf, alen, &all, at, &n);
			for (int i = 0; r == ARES_SUCCESS && i < n; i++) {
				memcpy(e.addrs[i], &at[i].ip6addr, 16);
				if (ttl_min < 0 || at[i].ttl < ttl_min)
					ttl_min = at[i].ttl;
			}
		}
		if (r == ARES_SUCCESS) {
			unsigned total = 0;

			e.naddrs = (unsigned)n;
			while (all && all->h_addr_list[total])
				total++;
			e.omitted = total > e.naddrs ? total - e.naddrs : 0;
		} else if (r != ARES_ENODATA) {
			ok = false;
		}
		if (all)
			ares_free_hostent(all);
	} else if (status == ARES_ENOTFOUND) {
		e.rcode = CRGW_DNS_NXDOMAIN;
	} else if (status == ARES_ENODATA) {
		e.naddrs = 0;
	} else {
		ok = false;
	}
	if (ok) {
		int64_t ttl = e.naddrs ? ttl_min : (int64_t)cfg->dns_negative_ttl;

		if (ttl > (int64_t)cfg->dns_ttl_max)
			ttl = cfg->dns_ttl_max;
		if (ttl < (int64_t)cfg->dns_ttl_min)
			ttl = cfg->dns_ttl_min;
		e.expiry = now + (ttl < 1 ? 1 : ttl);
		crgw_dns_cache_put(u->name, u->qtype, &e);
	} else {
		COUNT(srv, upstream_failures);
		log_warn("upstream DNS lookup failed", "name=%s type=%u error=\"%s\"", u->name, u->qtype,
			 ares_strerror(status));
	}
	/* Unlink first: answering may not re-enter, but freeing the channel calls back with ARES_EDESTRUCTION. */
	struct upstream **pp = &srv->pending[upstream_bucket(u->name, u->qtype)];

	while (*pp && *pp != u)
		pp = &(*pp)->next;
	if (*pp)
		*pp = u->next;
	srv->npending -= u->nwaiters;
	for (struct waiter *w = u->waiters, *next; w; w = next) {
		next = w->next;
		if (ok)
			COUNT(srv, answered_upstream);
		else
			COUNT(srv, servfail);
		finish_waiter(srv, w, ok ? &e : NULL);
	}
	free(u);
}

static void ares_sock_event(evutil_socket_t fd, short what, void *arg)
{
	struct crgw_dns_server *srv = arg;

	ares_process_fd(srv->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
			(what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
}

static void ares_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct crgw_dns_server *srv = data;
	struct ares_sock *slot = NULL, *free_slot = NULL;

	for (unsigned i = 0; i < ARES_SOCKS_MAX; i++) {
		if (srv->asocks[i].ev && srv->asocks[i].fd == fd)
			slot = &srv->asocks[i];
		else if (!srv->asocks[i].ev && !free_slot)
			free_slot = &srv->asocks[i];
	}
	if (slot) {
		event_free(slot->ev);
		slot->ev = NULL;
	}
	if (!readable && !writable)
		return;
	if (!slot)
		slot = free_slot;
	if (!slot) {
		log_error("too many c-ares sockets", "fd=%d", fd);
		return;
	}
	slot->fd = fd;
	slot->ev = event_new(srv->base, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0) | EV_PERSIST,
			     ares_sock_event, srv);
	if (slot->ev)
		event_add(slot->ev, NULL);
}

static void ares_tick(evutil_socket_t fd, short what, void *arg)
{
	struct crgw_dns_server *srv = arg;

	(void)fd;
	(void)what;
	ares_process_fd(srv->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

/* Queues `w` behind an upstream lookup of its name, starting one if none is in flight. */
static void ask_upstream(struct crgw_dns_server *srv, struct waiter *w)
{
	unsigned b = upstream_bucket(w->q.name, w->q.qtype);
	struct upstream *u;

	if (srv->npending >= PENDING_MAX) {
		COUNT(srv, servfail);
		finish_waiter(srv, w, NULL);
		return;
	}
	for (u = srv->pending[b]; u; u = u->next)
		if (u->qtype == w->q.qtype && !strcmp(u->name, w->q.name))
			break;
	if (!u) {
		u = calloc(1, sizeof(*u));
		if (!u) {
			finish_waiter(srv, w, NULL);
			return;
		}
		u->srv = srv;
		u->qtype = w->q.qtype;
		memcpy(u->name, w->q.name, w->q.name_len + 1);
		u->next = srv->pending[b];
		srv->pending[b] = u;
		w->next = NULL;
		u->waiters = w;
		u->nwaiters = 1;
		srv->npending++;
		COUNT(srv, upstream_queries);
		follow_upstreams(srv);
		/* May call back at once (e.g. no servers): nothing of `u` is touched after this. */
		ares_query(srv->channel, u->name, CRGW_DNS_CLASS_IN, u->qtype, upstream_done, u);
		return;
	}
	w->next = u->waiters;
	u->waiters = w;
	u->nwaiters++;
	srv->npending++;
}

static struct waiter *new_waiter(struct crgw_sandbox *sb, const struct crgw_dns_query *q, const uint8_t *msg,
				 size_t len)
{
	struct waiter *w = malloc(sizeof(*w) + len);

	if (!w)
		return NULL;
	memset(w, 0, sizeof(*w));
	w->sb = crgw_sandbox_ref(sb);
	w->q = *q;
	w->len = len;
	memcpy(w->msg, msg, len);
	return w;
}

int crgw_dns_resolve(struct crgw_dns_server *srv, const char *name, uint16_t qtype, struct crgw_dns_cached *out,
		     void (*cb)(void *arg, const struct crgw_dns_cached *e), void *arg)
{
	size_t len = strlen(name);
	struct waiter *w;

	if (len == 0 || len >= CRGW_DNS_HOST_TEXT_MAX)
		return -EINVAL;
	if (crgw_dns_cache_get(name, qtype, out))
		return 1;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	memcpy(w->q.name, name, len + 1);
	w->q.name_len = len;
	w->q.qtype = qtype;
	w->q.qclass = CRGW_DNS_CLASS_IN;
	w->cb = cb;
	w->cb_arg = arg;
	ask_upstream(srv, w);
	return 0;
}

/* ---- UDP ---------------------------------------------------------------------------------------- */

static void udp_read(evutil_socket_t fd, short what, void *arg)
{
	struct crgw_dns_server *srv = arg;

	(void)what;
	/* Bounded per wake-up so TCP clients and upstream answers on this loop are not starved. */
	for (unsigned round = 0; round < 8; round++) {
		unsigned nsend = 0;
		int n;

		for (unsigned i = 0; i < RECV_BATCH; i++) {
			srv->riov[i].iov_base = srv->rbuf[i];
			srv->riov[i].iov_len = RECV_BUF;
			memset(&srv->rmsg[i].msg_hdr, 0, sizeof(srv->rmsg[i].msg_hdr));
			srv->rmsg[i].msg_hdr.msg_name = &srv->rpeer[i];
			srv->rmsg[i].msg_hdr.msg_namelen = sizeof(srv->rpeer[i]);
			srv->rmsg[i].msg_hdr.msg_iov = &srv->riov[i];
			srv->rmsg[i].msg_hdr.msg_iovlen = 1;
			srv->rmsg[i].msg_hdr.msg_control = srv->rctl[i];
			srv->rmsg[i].msg_hdr.msg_controllen = sizeof(srv->rctl[i]);
		}
		n = recvmmsg(fd, srv->rmsg, RECV_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return;
		for (int i = 0; i < n; i++) {
			struct msghdr *mh = &srv->rmsg[i].msg_hdr;
			struct in_pktinfo *pi = NULL;
			struct crgw_sandbox *sb;
			struct crgw_dns_query q;
			int outlen = 0;
			enum verdict v;

			for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm))
				if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO)
					pi = (struct in_pktinfo *)CMSG_DATA(cm);
			if (!pi || mh->msg_namelen != sizeof(struct sockaddr_in) || (mh->msg_flags & MSG_TRUNC))
				continue;
			sb = crgw_sandbox_lookup(pi->ipi_ifindex, srv->rpeer[i].sin_addr);
			/* Identity is (interface, source) and the query must be addressed to that sandbox's gateway. */
			if (!sb || sb->gw.s_addr != pi->ipi_addr.s_addr) {
				COUNT(srv, unknown_sandbox);
				crgw_audit_unknown(&srv->rpeer[i], pi->ipi_ifindex, "dns");
				crgw_sandbox_unref(sb);
				continue;
			}
			memset(&q, 0, sizeof(q));
			v = decide(srv, sb, srv->rbuf[i], srv->rmsg[i].msg_len, &q, srv->sbuf[nsend],
				   sizeof(srv->sbuf[nsend]), false, &outlen);
			if (v == V_ANSWER) {
				struct msghdr *sh = &srv->smsg[nsend].msg_hdr;
				struct cmsghdr *cm;

				srv->siov[nsend].iov_base = srv->sbuf[nsend];
				srv->siov[nsend].iov_len = (size_t)outlen;
				srv->speer[nsend] = srv->rpeer[i];
				memset(sh, 0, sizeof(*sh));
				memset(srv->sctl[nsend], 0, sizeof(srv->sctl[nsend]));
				sh->msg_name = &srv->speer[nsend];
				sh->msg_namelen = sizeof(srv->speer[nsend]);
				sh->msg_iov = &srv->siov[nsend];
				sh->msg_iovlen = 1;
				sh->msg_control = srv->sctl[nsend];
				sh->msg_controllen = sizeof(srv->sctl[nsend]);
				cm = CMSG_FIRSTHDR(sh);
				cm->cmsg_level = IPPROTO_IP;
				cm->cmsg_type = IP_PKTINFO;
				cm->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
				((struct in_pktinfo *)CMSG_DATA(cm))->ipi_spec_dst = pi->ipi_addr;
				nsend++;
			} else if (v == V_UPSTREAM) {
				struct waiter *w = new_waiter(sb, &q, srv->rbuf[i], srv->rmsg[i].msg_len);

				if (w) {
					w->peer = srv->rpeer[i];
					w->local = pi->ipi_addr;
					ask_upstream(srv, w);
				}
			}
			crgw_sandbox_unref(sb);
		}
		/* Best effort, like any UDP answer: a client whose answer is lost retries. */
		if (nsend && sendmmsg(fd, srv->smsg, nsend, MSG_DONTWAIT) < 0)
			log_debug("DNS send failed", "error=\"%s\"", strerror(errno));
		if (n < RECV_BATCH)
			return;
	}
}

/* ---- TCP ---------------------------------------------------------------------------------------- */

static void tcp_close(struct tcp_conn *c)
{
	if (c->closed)
		return;
	c->closed = true;
	bufferevent_free(c->bev);
	c->bev = NULL;
	tcp_conn_unref(c);
}

static void tcp_conn_unref(struct tcp_conn *c)
{
	if (--c->refs)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		c->srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	atomic_fetch_sub(&c->sb->counters.dns_tcp_conns, 1);
	crgw_sandbox_unref(c->sb);
	free(c);
}

static void tcp_send(struct tcp_conn *c, const uint8_t *resp, int len)
{
	uint8_t hdr[2] = { (uint8_t)(len >> 8), (uint8_t)len };

	if (c->closed || len <= 0)
		return;
	bufferevent_write(c->bev, hdr, 2);
	bufferevent_write(c->bev, resp, (size_t)len);
	/* A client that stopped reading while it had too many queries in flight may read again. */
	if (c->inflight < TCP_INFLIGHT_MAX)
		bufferevent_enable(c->bev, EV_READ);
}

static void tcp_read(struct bufferevent *bev, void *arg)
{
	struct tcp_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t msg[CRGW_DNS_TCP_MAX], out[4096];

	while (!c->closed && evbuffer_get_length(in) >= 2) {
		uint8_t hdr[2];
		size_t len;
		struct crgw_dns_query q;
		int outlen = 0;
		enum verdict v;

		if (c->inflight >= TCP_INFLIGHT_MAX) {
			bufferevent_disable(bev, EV_READ);
			return;
		}
		evbuffer_copyout(in, hdr, 2);
		len = (size_t)hdr[0] << 8 | hdr[1];
		if (len == 0) {
			tcp_close(c);
			return;
		}
		if (evbuffer_get_length(in) < len + 2)
			return;
		evbuffer_drain(in, 2);
		evbuffer_remove(in, msg, len);
		memset(&q, 0, sizeof(q));
		v = decide(c->srv, c->sb, msg, len, &q, out, sizeof(out), true, &outlen);
		if (v == V_ANSWER) {
			tcp_send(c, out, outlen);
		} else if (v == V_UPSTREAM) {
			struct waiter *w = new_waiter(c->sb, &q, msg, len);

			if (w) {
				w->conn = c;
				c->refs++;
				c->inflight++;
				ask_upstream(c->srv, w);
			}
		} else {
			/* Not a query on a stream: nothing sensible can follow. */
			tcp_close(c);
			return;
		}
	}
}

static void tcp_event(struct bufferevent *bev, short what, void *arg)
{
	struct tcp_conn *c = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		tcp_close(c);
}

static void tcp_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct crgw_dns_server *srv = arg;
	struct crgw_sandbox *sb;
	struct tcp_conn *c;
	struct timeval idle = { TCP_IDLE_S, 0 };

	(void)l;
	sb = crgw_sandbox_for_accepted(fd, sa, salen, "dns");
	if (!sb) {
		COUNT(srv, unknown_sandbox);
		close(fd);
		return;
	}
	if (atomic_fetch_add(&sb->counters.dns_tcp_conns, 1) >= TCP_CONNS_PER_SANDBOX) {
		atomic_fetch_sub(&sb->counters.dns_tcp_conns, 1);
		crgw_sandbox_unref(sb);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c)
		c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c || !c->bev) {
		free(c);
		atomic_fetch_sub(&sb->counters.dns_tcp_conns, 1);
		crgw_sandbox_unref(sb);
		close(fd);
		return;
	}
	c->srv = srv;
	c->sb = sb;
	c->refs = 1;
	c->next = srv->conns;
	if (c->next)
		c->next->prev = c;
	srv->conns = c;
	bufferevent_setcb(c->bev, tcp_read, NULL, tcp_event, c);
	bufferevent_set_timeouts(c->bev, &idle, &idle);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CRGW_DNS_TCP_MAX + 2);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* ---- life cycle --------------------------------------------------------------------------------- */

int crgw_dns_global_init(const struct crgw_config *cfg)
{
	(void)cfg;
	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
		return -ENOMEM;
	crgw_dns_cache_init(65536);
	return 0;
}

void crgw_dns_global_fini(void)
{
	crgw_dns_cache_fini();
	ares_library_cleanup();
}

/*
 * The upstream servers a reload set (crgw_dns_set_upstreams): a text every worker applies to its own
 * channel, on its own thread, before its next upstream query.
 */
static struct {
	pthread_mutex_t lock;
	char csv[CRGW_UPSTREAM_MAX * 72];
	atomic_uint generation;
} U = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void upstream_csv(const struct crgw_config *cfg, char *csv, size_t size)
{
	size_t used = 0;

	csv[0] = '\0';
	for (size_t i = 0; i < cfg->nupstream && used < size; i++)
		used += (size_t)snprintf(csv + used, size - used, "%s%s", i ? "," : "", cfg->upstream[i].text);
}

void crgw_dns_set_upstreams(const struct crgw_config *cfg)
{
	pthread_mutex_lock(&U.lock);
	upstream_csv(cfg, U.csv, sizeof(U.csv));
	atomic_fetch_add(&U.generation, 1);
	pthread_mutex_unlock(&U.lock);
}

/* Takes the servers of the last reload into this worker's channel, once per reload. */
static void follow_upstreams(struct crgw_dns_server *srv)
{
	unsigned gen = atomic_load(&U.generation);
	char csv[sizeof(U.csv)];
	int r;

	if (gen == srv->upstream_generation)
		return;
	pthread_mutex_lock(&U.lock);
	memcpy(csv, U.csv, sizeof(csv));
	gen = atomic_load(&U.generation);
	pthread_mutex_unlock(&U.lock);
	srv->upstream_generation = gen;
	r = ares_set_servers_ports_csv(srv->channel, csv);
	if (r != ARES_SUCCESS)
		log_error("c-ares rejected the reloaded upstream servers", "servers=\"%s\" error=\"%s\"", csv,
			  ares_strerror(r));
}

static int channel_init(struct crgw_dns_server *srv)
{
	const struct crgw_config *cfg = srv->cfg;
	struct ares_options o;
	struct in_addr servers[CRGW_UPSTREAM_MAX];
	char csv[CRGW_UPSTREAM_MAX * 72] = "";
	size_t used = 0;
	int mask = 0, r;

	memset(&o, 0, sizeof(o));
	for (size_t i = 0; i < cfg->nupstream; i++) {
		servers[i] = ((const struct sockaddr_in *)&cfg->upstream[i].addr)->sin_addr;
		used += (size_t)snprintf(csv + used, sizeof(csv) - used, "%s%s", i ? "," : "", cfg->upstream[i].text);
	}
	/* Never the host's resolver: explicit servers, no search list, no hosts file. */
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_EDNS;
	o.timeout = (int)cfg->dns_timeout_ms;
	o.tries = 2;
	o.ndots = 1;
	o.servers = servers;
	o.nservers = (int)cfg->nupstream;
	o.lookups = (char *)"b";
	o.domains = NULL;
	o.ndomains = 0;
	o.ednspsz = CRGW_DNS_EDNS_UDP_SIZE;
	o.sock_state_cb = ares_sock_state;
	o.sock_state_cb_data = srv;
	mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_NDOTS | ARES_OPT_SERVERS |
	       ARES_OPT_LOOKUPS | ARES_OPT_DOMAINS | ARES_OPT_EDNSPSZ | ARES_OPT_SOCK_STATE_CB;
	r = ares_init_options(&srv->channel, &o, mask);
	if (r != ARES_SUCCESS) {
		log_error("c-ares initialization failed", "error=\"%s\"", ares_strerror(r));
		return -ENOMEM;
	}
	srv->channel_ready = true;
	srv->upstream_generation = atomic_load(&U.generation);
	r = ares_set_servers_ports_csv(srv->channel, csv);
	if (r != ARES_SUCCESS) {
		log_error("c-ares rejected the upstream servers", "servers=\"%s\" error=\"%s\"", csv, ares_strerror(r));
		return -EINVAL;
	}
	return 0;
}

static void tcp_accept_error(struct evconnlistener *l, void *arg)
{
	(void)l;
	crgw_accept_guard_trip(&((struct crgw_dns_server *)arg)->tcp_guard);
}

int crgw_dns_server_new(struct event_base *base, const struct crgw_config *cfg, struct crgw_dns_server **out)
{
	struct crgw_dns_server *srv = calloc(1, sizeof(*srv));
	struct timeval tick = { 0, 100000 };
	int tcp_fd = -1, err;

	if (!srv)
		return -ENOMEM;
	srv->cfg = cfg;
	srv->base = base;
	srv->udp_fd = -1;
	err = crgw_listen_reuseport(SOCK_DGRAM, CRGW_DNS_PORT, &srv->udp_fd);
	if (!err)
		err = crgw_listen_reuseport(SOCK_STREAM, CRGW_DNS_PORT, &tcp_fd);
	if (err)
		goto fail;
	srv->udp_ev = event_new(base, srv->udp_fd, EV_READ | EV_PERSIST, udp_read, srv);
	srv->tcp_listener = evconnlistener_new(base, tcp_accept, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
					       -1, tcp_fd);
	if (!srv->udp_ev || !srv->tcp_listener) {
		err = -ENOMEM;
		goto fail;
	}
	tcp_fd = -1;
	crgw_accept_guard_init(&srv->tcp_guard, base, srv->tcp_listener, "dns-tcp");
	evconnlistener_set_error_cb(srv->tcp_listener, tcp_accept_error);
	err = channel_init(srv);
	if (err)
		goto fail;
	srv->ares_timer = event_new(base, -1, EV_PERSIST, ares_tick, srv);
	if (!srv->ares_timer || event_add(srv->ares_timer, &tick) || event_add(srv->udp_ev, NULL)) {
		err = -ENOMEM;
		goto fail;
	}
	pthread_mutex_lock(&servers_lock);
	srv->next_server = servers;
	servers = srv;
	pthread_mutex_unlock(&servers_lock);
	*out = srv;
	return 0;
fail:
	if (tcp_fd >= 0)
		close(tcp_fd);
	crgw_dns_server_free(srv);
	return err;
}

void crgw_dns_server_free(struct crgw_dns_server *srv)
{
	if (!srv)
		return;
	pthread_mutex_lock(&servers_lock);
	for (struct crgw_dns_server **pp = &servers; *pp; pp = &(*pp)->next_server)
		if (*pp == srv) {
			*pp = srv->next_server;
			break;
		}
	pthread_mutex_unlock(&servers_lock);
	/* Pending lookups call back with ARES_EDESTRUCTION and their waiters are answered SERVFAIL. */
	if (srv->channel_ready)
		ares_destroy(srv->channel);
	for (unsigned i = 0; i < ARES_SOCKS_MAX; i++)
		if (srv->asocks[i].ev)
			event_free(srv->asocks[i].ev);
	while (srv->conns) {
		struct tcp_conn *c = srv->conns;

		c->refs = 1;
		if (!c->closed) {
			bufferevent_free(c->bev);
			c->closed = true;
		}
		tcp_conn_unref(c);
	}
	if (srv->ares_timer)
		event_free(srv->ares_timer);
	if (srv->udp_ev)
		event_free(srv->udp_ev);
	if (srv->tcp_listener) {
		crgw_accept_guard_fini(&srv->tcp_guard);
		evconnlistener_free(srv->tcp_listener);
	}
	if (srv->udp_fd >= 0)
		close(srv->udp_fd);
	free(srv);
}

void crgw_dns_get_stats(struct crgw_dns_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&servers_lock);
	for (struct crgw_dns_server *s = servers; s; s = s->next_server) {
		out->queries += atomic_load_explicit(&s->c.queries, memory_order_relaxed);
		out->answered_cache += atomic_load_explicit(&s->c.answered_cache, memory_order_relaxed);
		out->answered_upstream += atomic_load_explicit(&s->c.answered_upstream, memory_order_relaxed);
		out->denied += atomic_load_explicit(&s->c.denied, memory_order_relaxed);
		out->formerr += atomic_load_explicit(&s->c.formerr, memory_order_relaxed);
		out->servfail += atomic_load_explicit(&s->c.servfail, memory_order_relaxed);
		out->rate_limited += atomic_load_explicit(&s->c.rate_limited, memory_order_relaxed);
		out->unknown_sandbox += atomic_load_explicit(&s->c.unknown_sandbox, memory_order_relaxed);
		out->upstream_queries += atomic_load_explicit(&s->c.upstream_queries, memory_order_relaxed);
		out->upstream_failures += atomic_load_explicit(&s->c.upstream_failures, memory_order_relaxed);
	}
	pthread_mutex_unlock(&servers_lock);
}
