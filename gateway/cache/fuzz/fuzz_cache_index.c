/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the index parser, which reads a file the disk may have corrupted, and checks that what it accepts
 * prints back to the same bytes: one spelling per index, so a round trip through the printer is exact.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cache_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEEP 256

struct seen {
	struct cache_index_rec recs[KEEP];
	size_t n;
};

static int keep(void *arg, const struct cache_index_rec *r)
{
	struct seen *s = arg;

	if (r->digest.len != (r->digest.alg == CRGW_DIGEST_SHA256 ? 32 : 64) || r->size > CACHE_SIZE_MAX ||
	    r->atime < 0 || r->atime > CACHE_ATIME_MAX || r->freq > CACHE_FREQ_MAX || r->queue > CACHE_Q_MAIN)
		abort();
	if (s->n == KEEP)
		return -E2BIG; /* a callback's error must stop the parse and come back unchanged */
	s->recs[s->n++] = *r;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct seen s;
	static char out[KEEP * CACHE_INDEX_LINE_MAX + 64];
	size_t o;
	int rc;

	s.n = 0;
	rc = cache_index_parse((const char *)data, size, keep, &s);
	if (rc == -EBADMSG || rc == -E2BIG)
		return 0;
	if (rc < 0 || (size_t)rc != s.n)
		abort();
	o = strlen(CACHE_INDEX_HEADER);
	memcpy(out, CACHE_INDEX_HEADER, o);
	for (size_t i = 0; i < s.n; i++) {
		int k = cache_index_format_rec(&s.recs[i], out + o, sizeof(out) - o);

		if (k <= 0)
			abort();
		o += (size_t)k;
	}
	int k = cache_index_format_end(s.n, out + o, sizeof(out) - o);

	if (k <= 0)
		abort();
	o += (size_t)k;
	if (o != size || memcmp(out, data, size) != 0)
		abort();
	return 0;
}
