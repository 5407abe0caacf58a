/* SPDX-License-Identifier: Apache-2.0 */
/* A striped hash table of DNS answers: one mutex per stripe keeps workers off each other's lines. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dns_cache.h"
#include "sandbox.h"

#define STRIPES 64
#define BUCKETS_PER_STRIPE 256

/* Sized to its answer: the addresses it holds, then its name. */
struct entry {
	struct entry *next;
	uint16_t qtype;
	uint64_t hash;
	int rcode;
	int64_t expiry;
	unsigned naddrs, omitted;
	char *name; /* after the addresses, in the same allocation */
	uint8_t addrs[][16];
};

struct stripe {
	pthread_mutex_t lock;
	unsigned count;
	uint64_t hits, misses, inserts, evictions;
	struct entry *buckets[BUCKETS_PER_STRIPE];
} __attribute__((aligned(64)));

static struct stripe stripes[STRIPES];
static unsigned stripe_max = 1024;

static uint64_t hash_name(const char *name, uint16_t qtype)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ qtype;

	for (; *name; name++)
		h = (h ^ (uint8_t)*name) * 0x100000001b3ULL;
	h ^= h >> 29;
	return h;
}

void crgw_dns_cache_init(unsigned max_entries)
{
	stripe_max = max_entries / STRIPES ? max_entries / STRIPES : 1;
	for (unsigned i = 0; i < STRIPES; i++) {
		memset(&stripes[i], 0, sizeof(stripes[i]));
		pthread_mutex_init(&stripes[i].lock, NULL);
	}
}

void crgw_dns_cache_fini(void)
{
	for (unsigned i = 0; i < STRIPES; i++) {
		for (unsigned b = 0; b < BUCKETS_PER_STRIPE; b++) {
			struct entry *e = stripes[i].buckets[b], *next;

			for (; e; e = next) {
				next = e->next;
				free(e);
			}
			stripes[i].buckets[b] = NULL;
		}
		stripes[i].count = 0;
	}
}

bool crgw_dns_cache_get(const char *name, uint16_t qtype, struct crgw_dns_cached *out)
{
	uint64_t h = hash_name(name, qtype);
	struct stripe *s = &stripes[h % STRIPES];
	bool found = false;
	int64_t now = crgw_monotonic_s();

	pthread_mutex_lock(&s->lock);
	for (struct entry *e = s->buckets[(h / STRIPES) % BUCKETS_PER_STRIPE]; e; e = e->next)
		if (e->hash == h && e->qtype == qtype && !strcmp(e->name, name)) {
			if (e->expiry > now) {
				out->rcode = e->rcode;
				out->expiry = e->expiry;
				out->naddrs = e->naddrs;
				out->omitted = e->omitted;
				memcpy(out->addrs, e->addrs, e->naddrs * sizeof(out->addrs[0]));
				found = true;
			}
			break;
		}
	if (found)
		s->hits++;
	else
		s->misses++;
	pthread_mutex_unlock(&s->lock);
	return found;
}

/* Frees expired entries in the stripe; if none were, the oldest-expiring entry of one bucket goes. */
static void evict(struct stripe *s, unsigned bucket_hint)
{
	int64_t now = crgw_monotonic_s();
	unsigned before = s->count;

	for (unsigned b = 0; b < BUCKETS_PER_STRIPE; b++) {
		struct entry **pp = &s->buckets[b];

		while (*pp) {
			if ((*pp)->expiry <= now) {
				struct entry *e = *pp;

				*pp = e->next;
				free(e);
				s->count--;
			} else {
				pp = &(*pp)->next;
			}
		}
	}
	for (unsigned i = 0; s->count == before && i < BUCKETS_PER_STRIPE; i++) {
		struct entry **pp = &s->buckets[(bucket_hint + i) % BUCKETS_PER_STRIPE], **oldest = NULL;

		for (; *pp; pp = &(*pp)->next)
			if (!oldest || (*pp)->expiry < (*oldest)->expiry)
				oldest = pp;
		if (oldest) {
			struct entry *e = *oldest;

			*oldest = e->next;
			free(e);
			s->count--;
		}
	}
	s->evictions += before - s->count;
}

void crgw_dns_cache_put(const char *name, uint16_t qtype, const struct crgw_dns_cached *entry)
{
	uint64_t h = hash_name(name, qtype);
	struct stripe *s = &stripes[h % STRIPES];
	unsigned b = (h / STRIPES) % BUCKETS_PER_STRIPE;
	unsigned naddrs = entry->naddrs < CRGW_DNS_CACHE_ADDRS ? entry->naddrs : CRGW_DNS_CACHE_ADDRS;
	size_t nlen = strlen(name), abytes = naddrs * sizeof(entry->addrs[0]);
	struct entry *e = malloc(sizeof(*e) + abytes + nlen + 1), **pp;

	if (!e)
		return; /* not cached: the next query asks upstream again */
	e->qtype = qtype;
	e->hash = h;
	e->rcode = entry->rcode;
	e->expiry = entry->expiry;
	e->naddrs = naddrs;
	e->omitted = entry->omitted + (entry->naddrs - naddrs);
	memcpy(e->addrs, entry->addrs, abytes);
	e->name = (char *)e->addrs + abytes;
	memcpy(e->name, name, nlen + 1);
	pthread_mutex_lock(&s->lock);
	/* A new answer for a cached (name, type) replaces the old entry: its size may differ. */
	for (pp = &s->buckets[b]; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == h && (*pp)->qtype == qtype && !strcmp((*pp)->name, name)) {
			struct entry *old = *pp;

			e->next = old->next;
			*pp = e;
			free(old);
			goto out;
		}
	if (s->count >= stripe_max)
		evict(s, b);
	e->next = s->buckets[b];
	s->buckets[b] = e;
	s->count++;
	s->inserts++;
out:
	pthread_mutex_unlock(&s->lock);
}

void crgw_dns_cache_get_stats(struct crgw_dns_cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < STRIPES; i++) {
		pthread_mutex_lock(&stripes[i].lock);
		out->hits += stripes[i].hits;
		out->misses += stripes[i].misses;
		out->inserts += stripes[i].inserts;
		out->evictions += stripes[i].evictions;
		out->entries += stripes[i].count;
		pthread_mutex_unlock(&stripes[i].lock);
	}
}
