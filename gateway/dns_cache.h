/* SPDX-License-Identifier: Apache-2.0 */
/* The gateway's DNS answer cache, shared by every worker: (name, type) → addresses, bounded and striped. */
#ifndef CRGW_GATEWAY_DNS_CACHE_H
#define CRGW_GATEWAY_DNS_CACHE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Addresses kept of one answer. Enough for every real service's answer (large CDNs hand out 8 to 16); an
 * answer with more is cut, and `omitted` says by how many, so the sandbox's allow event can say so.
 */
#define CRGW_DNS_CACHE_ADDRS 64

struct crgw_dns_cached {
	int rcode;        /* NOERROR (naddrs may be 0: no data) or NXDOMAIN */
	int64_t expiry;   /* CLOCK_MONOTONIC seconds */
	unsigned naddrs;
	unsigned omitted; /* addresses of the upstream answer beyond CRGW_DNS_CACHE_ADDRS, left out */
	uint8_t addrs[CRGW_DNS_CACHE_ADDRS][16]; /* 4 bytes used for A */
};

/* Sets the bound on entries (per stripe: total / 64). Call once before workers start. */
void crgw_dns_cache_init(unsigned max_entries);
void crgw_dns_cache_fini(void);

/* Copies a live entry into `out`. Returns false on a miss or an expired entry. Any thread. */
bool crgw_dns_cache_get(const char *name, uint16_t qtype, struct crgw_dns_cached *out);

/*
 * Stores an answer, replacing any entry for (name, type); evicts within the stripe when full. An entry takes
 * memory for the addresses it holds only, not for CRGW_DNS_CACHE_ADDRS.
 */
void crgw_dns_cache_put(const char *name, uint16_t qtype, const struct crgw_dns_cached *entry);

struct crgw_dns_cache_stats {
	uint64_t hits, misses, inserts, evictions;
	unsigned entries;
};
void crgw_dns_cache_get_stats(struct crgw_dns_cache_stats *out);

#endif
