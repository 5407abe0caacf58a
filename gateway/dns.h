/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sandbox-facing DNS service (SPEC section 5): UDP and TCP on port 53 of every gateway address,
 * answers only for allowed names, resolves upstream with c-ares, records bindings for the proxies.
 * One server per worker; each owns its sockets (SO_REUSEPORT) and its c-ares channel.
 */
#ifndef CRGW_GATEWAY_DNS_H
#define CRGW_GATEWAY_DNS_H

#include <event2/event.h>
#include <stdint.h>

struct crgw_config;
struct crgw_dns_server;

/* Process-wide set-up (c-ares, the shared cache). Call once before any server is created. */
int crgw_dns_global_init(const struct crgw_config *cfg);
void crgw_dns_global_fini(void);

/*
 * A reload's upstream servers (cfg->upstream, borrowed for the call): every worker's channel takes them
 * before its next upstream query. Queries already sent finish with the servers they went to. Any thread.
 */
void crgw_dns_set_upstreams(const struct crgw_config *cfg);

/*
 * Creates the worker's sockets and c-ares channel on `base` (borrowed; the worker's loop). Binding errors
 * come back here, on the main thread, before the gateway reports itself ready.
 */
int crgw_dns_server_new(struct event_base *base, const struct crgw_config *cfg, struct crgw_dns_server **out);

/* Frees the server; its loop must no longer be running. Answers still waiting upstream are dropped. */
void crgw_dns_server_free(struct crgw_dns_server *srv);

struct crgw_dns_cached;

/*
 * Resolves (name, qtype) for the gateway's own use (the proxies' upstream connections), sharing the cache
 * and the in-flight lookups of the DNS service. Returns 1 with the entry in `*out` on a cache hit; 0 when
 * an upstream lookup was started: `cb` then runs later on this server's loop with the entry, or NULL on
 * failure (and may run before this returns); -errno otherwise. `name` is a normalized host name (borrowed).
 */
int crgw_dns_resolve(struct crgw_dns_server *srv, const char *name, uint16_t qtype, struct crgw_dns_cached *out,
		     void (*cb)(void *arg, const struct crgw_dns_cached *e), void *arg);

struct crgw_dns_stats {
	uint64_t queries, answered_cache, answered_upstream, denied, formerr, servfail, rate_limited;
	uint64_t unknown_sandbox, upstream_queries, upstream_failures;
};
/* Sums every server's counters (relaxed reads; for metrics). */
void crgw_dns_get_stats(struct crgw_dns_stats *out);

#endif
