/* SPDX-License-Identifier: Apache-2.0 */
/* What the cache's files share: algorithm facts, hex, and the index file's format (index.c). */
#ifndef CRGW_CACHE_PRIV_H
#define CRGW_CACHE_PRIV_H

#include <openssl/evp.h>

#include "cache.h"

/* The algorithm's name ("sha256"), its digest length and its OpenSSL hash; NULL/0 for an unknown one. */
const char *cache_alg_name(enum crgw_digest_alg alg);
unsigned cache_alg_len(enum crgw_digest_alg alg);
const EVP_MD *cache_alg_md(enum crgw_digest_alg alg);

/* Lowercase hex of `len` bytes into `out` (2 * len + 1 bytes). */
void cache_hex(const uint8_t *bytes, size_t len, char *out);

/*
 * The index file: a header line, one line per object, an end line with the count, and nothing after:
 *
 *   crgw-cache-index 1
 *   sha256:<hex> <size> <atime> <S|M> <freq>
 *   end <count>
 *
 * Objects are listed queue by queue (small, then main) in eviction order, so loading appends them back in
 * the same order. The file is untrusted: the parser is strict and bounded, and any fault rejects it whole.
 */
#define CACHE_INDEX_HEADER "crgw-cache-index 1\n"
#define CACHE_INDEX_LINE_MAX 200
#define CACHE_INDEX_MAX_BYTES (64u << 20)
#define CACHE_INDEX_MAX_RECORDS (CACHE_INDEX_MAX_BYTES / 80)
#define CACHE_SIZE_MAX (1ull << 52)
#define CACHE_ATIME_MAX (1ll << 40)
#define CACHE_FREQ_MAX 3

enum { CACHE_Q_SMALL = 0, CACHE_Q_MAIN = 1 };

struct cache_index_rec {
	struct crgw_digest digest;
	uint64_t size;
	int64_t atime;
	uint8_t queue; /* CACHE_Q_* */
	uint8_t freq;  /* 0..CACHE_FREQ_MAX */
};

/*
 * Parses a whole index file of `len` bytes, calling `cb` per record in order. Returns the record count,
 * -EBADMSG for a malformed file, or what a callback returned (non-zero stops the parse).
 */
int cache_index_parse(const char *buf, size_t len, int (*cb)(void *arg, const struct cache_index_rec *r),
		      void *arg);

/* Prints one record's line (with its newline); returns the length or -ENOSPC / -EINVAL. */
int cache_index_format_rec(const struct cache_index_rec *r, char *buf, size_t cap);

/* Prints the end line for `count` records; returns the length or -ENOSPC. */
int cache_index_format_end(size_t count, char *buf, size_t cap);

#endif
