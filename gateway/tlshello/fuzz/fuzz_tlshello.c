/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the ClientHello parser whole and in two deliveries, and checks what the transparent TLS listener
 * relies on: a prefix asks for more or gives the final answer, the hint never overshoots, and the name is
 * a bounded, NUL-terminated host name.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tlshello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same(const struct crgw_tls_hello *a, const struct crgw_tls_hello *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

static void check(int rc, const struct crgw_tls_hello *h, size_t len)
{
	static const struct crgw_tls_hello zero;
	struct crgw_tls_hello z;

	memcpy(&z, h, sizeof(z));
	switch (rc) {
	case 0:
		break;
	case -EAGAIN:
		if (len >= CRGW_TLS_HELLO_MAX || h->need <= len || h->need > CRGW_TLS_HELLO_MAX)
			abort();
		z.need = 0;
		/* fall through */
	case -E2BIG:
		if (!same(&z, &zero))
			abort();
		return;
	case -EBADMSG:
		z.sni_invalid = false; /* the one thing a refusal may say: that the name was what was wrong */
		if (!same(&z, &zero))
			abort();
		return;
	default:
		abort();
	}
	if (h->consumed > len || h->consumed > CRGW_TLS_HELLO_MAX || h->records == 0 || h->need != 0)
		abort();
	if (memchr(h->sni, '\0', sizeof(h->sni)) == NULL || strlen(h->sni) != h->sni_len ||
	    h->sni_len >= CRGW_TLS_SNI_MAX || h->has_sni != (h->sni_len > 0))
		abort();
	for (size_t i = 0; i < h->sni_len; i++) {
		char c = h->sni[i];
		bool dot = c == '.';

		if (!(dot || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			abort();
		if (dot && (i == 0 || i + 1 == h->sni_len || h->sni[i + 1] == '.'))
			abort();
	}
}

/* Parses data[0..n) from an allocation of exactly n bytes, so a read past the prefix is caught. */
static int parse_copy(const uint8_t *data, size_t n, struct crgw_tls_hello *h)
{
	uint8_t *copy = malloc(n ? n : 1);
	int rc;

	if (!copy)
		abort();
	memcpy(copy, data, n);
	rc = crgw_tls_hello_parse(n ? copy : NULL, n, h);
	free(copy);
	check(rc, h, n);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct crgw_tls_hello full, part;
	int rc = crgw_tls_hello_parse(data, size, &full), prc;
	size_t cut;

	check(rc, &full, size);
	if (size == 0)
		return 0;

	/* The first delivery ends at a point derived from the input, so the fuzzer can steer it. */
	cut = ((size_t)data[size - 1] << 8 | data[size / 2]) % size;
	prc = parse_copy(data, cut, &part);
	if (prc != -EAGAIN && (prc != rc || !same(&part, &full)))
		abort();
	if (prc == -EAGAIN && rc == 0 && (part.need > full.consumed || cut >= full.consumed))
		abort();

	/* A complete hello is self-contained: the bytes it spans give the same result, one byte less does not. */
	if (rc == 0) {
		if (parse_copy(data, full.consumed, &part) != 0 || !same(&part, &full))
			abort();
		if (parse_copy(data, full.consumed - 1, &part) != -EAGAIN)
			abort();
	}
	return 0;
}
