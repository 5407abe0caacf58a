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

struct entry {
	struct entry *next;
	uint16_t qtype;
	uint64_t hash;
	struct crgw_dns_cached value;
	char name[];
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
			if (e->value.expiry > now) {
				/* Only the slots in use: most answers hold one or two of sixteen. */
				out->rcode = e->value.rcode;
				out->expiry = e->value.expiry;
				out->naddrs = e->value.naddrs;
				memcpy(out->addrs, e->value.addrs, e->value.naddrs * sizeof(out->addrs[0]));
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
			if ((*pp)->value.expiry <= now) {
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
			if (!oldest || (*pp)->value.expiry < (*oldest)->value.expiry)
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
	size_t nlen = strlen(name);
	struct entry *e;

	pthread_mutex_lock(&s->lock);
	for (e = s->buckets[b]; e; e = e->next)
		if (e->hash == h && e->qtype == qtype && !strcmp(e->name, name)) {
			e->value = *entry;
			goto out;
		}
	if (s->count >= stripe_max)
		evict(s, b);
	e = malloc(sizeof(*e) + nlen + 1);
	if (!e)
		goto out; /* not cached: the next query asks upstream again */
	e->qtype = qtype;
	e->hash = h;
	e->value = *entry;
	memcpy(e->name, name, nlen + 1);
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
