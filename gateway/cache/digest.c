/* SPDX-License-Identifier: Apache-2.0 */
/* Digests: the "alg:hex" and SRI "alg-base64" forms, parsing strictly and printing canonically. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cache_priv.h"

static const struct {
	const char *name;
	unsigned len;
	const EVP_MD *(*md)(void);
} algs[] = {
	[CRGW_DIGEST_SHA256] = { "sha256", 32, EVP_sha256 },
	[CRGW_DIGEST_SHA512] = { "sha512", 64, EVP_sha512 },
};

static bool alg_valid(enum crgw_digest_alg alg)
{
	return alg == CRGW_DIGEST_SHA256 || alg == CRGW_DIGEST_SHA512;
}

const char *cache_alg_name(enum crgw_digest_alg alg)
{
	return alg_valid(alg) ? algs[alg].name : NULL;
}

unsigned cache_alg_len(enum crgw_digest_alg alg)
{
	return alg_valid(alg) ? algs[alg].len : 0;
}

const EVP_MD *cache_alg_md(enum crgw_digest_alg alg)
{
	return alg_valid(alg) ? algs[alg].md() : NULL;
}

void cache_hex(const uint8_t *bytes, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 15];
	}
	out[2 * len] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64val(char c)
{
	const char *p = c ? memchr(b64, c, 64) : NULL;

	return p ? (int)(p - b64) : -1;
}

/*
 * Decodes padded base64 that must yield exactly `want` bytes. The unused low bits of the last character
 * must be zero, so each digest has one spelling (two spellings of one key would be two cache entries).
 */
static int b64_decode(const char *s, size_t len, uint8_t *out, size_t want)
{
	size_t n = 0;

	if (len % 4 || len != (want + 2) / 3 * 4)
		return -EINVAL;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		unsigned pad = 0;

		for (int k = 0; k < 4; k++) {
			if (s[i + k] == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad)
				return -EINVAL; /* data after padding */
			v[k] = b64val(s[i + k]);
			if (v[k] < 0)
				return -EINVAL;
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
		uint8_t b[3] = { (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w };

		for (unsigned k = 0; k < 3 - pad; k++) {
			if (n == want)
				return -EINVAL;
			out[n++] = b[k];
		}
		if (pad == 2 && (w & 0xffff))
			return -EINVAL;
		if (pad == 1 && (w & 0xff))
			return -EINVAL;
	}
	return n == want ? 0 : -EINVAL;
}

int crgw_digest_parse(const char *s, size_t len, struct crgw_digest *out)
{
	enum crgw_digest_alg alg;
	const char *body;
	size_t blen;
	unsigned dlen;

	if (!s || !out || len < 7)
		return -EINVAL;
	if (memcmp(s, "sha256", 6) == 0)
		alg = CRGW_DIGEST_SHA256;
	else if (memcmp(s, "sha512", 6) == 0)
		alg = CRGW_DIGEST_SHA512;
	else
		return -EINVAL;
	dlen = cache_alg_len(alg);
	body = s + 7;
	blen = len - 7;
	memset(out, 0, sizeof(*out));
	if (s[6] == ':') {
		if (blen != 2 * (size_t)dlen)
			return -EINVAL;
		for (unsigned i = 0; i < dlen; i++) {
			int hi = hexval(body[2 * i]), lo = hexval(body[2 * i + 1]);

			if (hi < 0 || lo < 0)
				return -EINVAL;
			out->bytes[i] = (uint8_t)(hi << 4 | lo);
		}
	} else if (s[6] == '-') {
		if (b64_decode(body, blen, out->bytes, dlen) < 0) {
			memset(out, 0, sizeof(*out));
			return -EINVAL;
		}
	} else {
		return -EINVAL;
	}
	out->alg = alg;
	out->len = (uint8_t)dlen;
	return 0;
}

static bool digest_valid(const struct crgw_digest *d)
{
	return d && alg_valid(d->alg) && d->len == cache_alg_len(d->alg);
}

int crgw_digest_format(const struct crgw_digest *d, char *buf, size_t cap)
{
	char hex[2 * CRGW_DIGEST_MAX_LEN + 1];
	int n;

	if (!digest_valid(d) || !buf)
		return -EINVAL;
	cache_hex(d->bytes, d->len, hex);
	n = snprintf(buf, cap, "%s:%s", cache_alg_name(d->alg), hex);
	return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

int crgw_digest_format_sri(const struct crgw_digest *d, char *buf, size_t cap)
{
	size_t need, o;

	if (!digest_valid(d) || !buf)
		return -EINVAL;
	need = 7 + (d->len + 2u) / 3 * 4;
	if (need + 1 > cap)
		return -ENOSPC;
	memcpy(buf, cache_alg_name(d->alg), 6);
	buf[6] = '-';
	o = 7;
	for (unsigned i = 0; i < d->len; i += 3) {
		unsigned left = d->len - i;
		uint32_t w = (uint32_t)d->bytes[i] << 16 | (left > 1 ? (uint32_t)d->bytes[i + 1] << 8 : 0) |
			     (left > 2 ? d->bytes[i + 2] : 0);

		buf[o++] = b64[w >> 18 & 63];
		buf[o++] = b64[w >> 12 & 63];
		buf[o++] = left > 1 ? b64[w >> 6 & 63] : '=';
		buf[o++] = left > 2 ? b64[w & 63] : '=';
	}
	buf[o] = '\0';
	return (int)o;
}

bool crgw_digest_equal(const struct crgw_digest *a, const struct crgw_digest *b)
{
	return a->alg == b->alg && a->len == b->len && a->len <= CRGW_DIGEST_MAX_LEN &&
	       memcmp(a->bytes, b->bytes, a->len) == 0;
}

int crgw_digest_compute(enum crgw_digest_alg alg, const void *data, size_t len, struct crgw_digest *out)
{
	unsigned int n = 0;

	if (!alg_valid(alg) || !out || (!data && len))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!EVP_Digest(data ? data : "", len, out->bytes, &n, cache_alg_md(alg), NULL) || n != cache_alg_len(alg))
		return -EIO;
	out->alg = alg;
	out->len = (uint8_t)n;
	return 0;
}
