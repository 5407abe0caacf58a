/* SPDX-License-Identifier: Apache-2.0 */
/* The index file's strict, bounded parser and its printer (format in cache_priv.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cache_priv.h"

/*
 * A decimal without sign or leading zeros, at most `max`. Leading zeros are refused so that a number has
 * one spelling; the length bound keeps the arithmetic below from overflowing.
 */
static int parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 19 || (len > 1 && s[0] == '0'))
		return -EBADMSG;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EBADMSG;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > max)
		return -EBADMSG;
	*out = v;
	return 0;
}

/* Splits `line` at single spaces into exactly `n` non-empty fields. */
static int split(const char *line, size_t len, const char **f, size_t *flen, size_t n)
{
	size_t k = 0, start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] != ' ')
			continue;
		if (k == n || i == start)
			return -EBADMSG;
		f[k] = line + start;
		flen[k++] = i - start;
		start = i + 1;
	}
	return k == n ? 0 : -EBADMSG;
}

static int parse_rec(const char *line, size_t len, struct cache_index_rec *r)
{
	const char *f[5];
	size_t fl[5];
	uint64_t v;

	if (split(line, len, f, fl, 5) < 0)
		return -EBADMSG;
	/* Only the hex form the printer writes; an SRI spelling would be a second name for one object. */
	if (fl[0] < 7 || f[0][6] != ':' || crgw_digest_parse(f[0], fl[0], &r->digest) < 0)
		return -EBADMSG;
	for (size_t i = 7; i < fl[0]; i++)
		if (f[0][i] >= 'A' && f[0][i] <= 'F')
			return -EBADMSG;
	if (parse_u64(f[1], fl[1], CACHE_SIZE_MAX, &r->size) < 0)
		return -EBADMSG;
	if (parse_u64(f[2], fl[2], (uint64_t)CACHE_ATIME_MAX, &v) < 0)
		return -EBADMSG;
	r->atime = (int64_t)v;
	if (fl[3] != 1 || (f[3][0] != 'S' && f[3][0] != 'M'))
		return -EBADMSG;
	r->queue = f[3][0] == 'S' ? CACHE_Q_SMALL : CACHE_Q_MAIN;
	if (parse_u64(f[4], fl[4], CACHE_FREQ_MAX, &v) < 0)
		return -EBADMSG;
	r->freq = (uint8_t)v;
	return 0;
}

int cache_index_parse(const char *buf, size_t len, int (*cb)(void *arg, const struct cache_index_rec *r),
		      void *arg)
{
	size_t hlen = strlen(CACHE_INDEX_HEADER), pos, count = 0;

	if (!buf || len < hlen || len > CACHE_INDEX_MAX_BYTES || memcmp(buf, CACHE_INDEX_HEADER, hlen) != 0)
		return -EBADMSG;
	pos = hlen;
	for (;;) {
		size_t room = len - pos, llen;
		const char *nl, *line = buf + pos;
		struct cache_index_rec r;
		uint64_t n;
		int err;

		nl = memchr(line, '\n', room < CACHE_INDEX_LINE_MAX ? room : CACHE_INDEX_LINE_MAX);
		if (!nl)
			return -EBADMSG; /* truncated, or a line too long */
		llen = (size_t)(nl - line);
		pos += llen + 1;
		if (llen > 4 && memcmp(line, "end ", 4) == 0) {
			/* The end line proves the file is whole; nothing may follow it. */
			if (parse_u64(line + 4, llen - 4, CACHE_INDEX_MAX_RECORDS, &n) < 0 || n != count || pos != len)
				return -EBADMSG;
			return (int)count;
		}
		if (count == CACHE_INDEX_MAX_RECORDS || parse_rec(line, llen, &r) < 0)
			return -EBADMSG;
		count++;
		err = cb ? cb(arg, &r) : 0;
		if (err)
			return err;
	}
}

int cache_index_format_rec(const struct cache_index_rec *r, char *buf, size_t cap)
{
	char d[CRGW_DIGEST_TEXT_MAX];
	int n;

	if (r->size > CACHE_SIZE_MAX || r->atime < 0 || r->atime > CACHE_ATIME_MAX || r->freq > CACHE_FREQ_MAX ||
	    r->queue > CACHE_Q_MAIN || crgw_digest_format(&r->digest, d, sizeof(d)) < 0)
		return -EINVAL;
	n = snprintf(buf, cap, "%s %llu %lld %c %u\n", d, (unsigned long long)r->size, (long long)r->atime,
		     r->queue == CACHE_Q_SMALL ? 'S' : 'M', (unsigned)r->freq);
	return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

int cache_index_format_end(size_t count, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "end %zu\n", count);

	return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}
