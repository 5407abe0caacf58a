/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests of the ClientHello parser on hellos built here (a small builder: extensions, SNI, GREASE, padding,
 * records cut at chosen offsets) and on real clients' hellos in the fuzz seed corpus, the one argument.
 * Seed files named real-* were captured from openssl s_client and curl on loopback and must parse with
 * the name example.test; ok-* must parse, bad-* must be refused with -EBADMSG and big-* with -E2BIG; any
 * other file (a crash input the fuzzer found) must just give a documented result, so it stays fixed even
 * in a build without libFuzzer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "tlshello.h"

#define BYTES_MAX (3 * CRGW_TLS_HELLO_MAX)

/* A byte string under construction; a test that overflows one is a bug in this file, so it stops. */
struct bytes {
	uint8_t b[BYTES_MAX];
	size_t n;
};

static struct bytes ext, hs, rec;

static void put(struct bytes *s, const void *p, size_t n)
{
	if (n > sizeof(s->b) - s->n) {
		fprintf(stderr, "test builder overflow\n");
		exit(2);
	}
	memcpy(s->b + s->n, p, n);
	s->n += n;
}

static void put8(struct bytes *s, unsigned v)
{
	uint8_t b = (uint8_t)v;

	put(s, &b, 1);
}

static void put16(struct bytes *s, unsigned v)
{
	put8(s, v >> 8);
	put8(s, v);
}

static void put24(struct bytes *s, unsigned v)
{
	put8(s, v >> 16);
	put16(s, v);
}

static void fill(struct bytes *s, unsigned v, size_t n)
{
	while (n--)
		put8(s, v);
}

static void ext_raw(struct bytes *e, unsigned type, const void *data, size_t n)
{
	put16(e, type);
	put16(e, (unsigned)n);
	put(e, data, n);
}

static void ext_fill(struct bytes *e, unsigned type, size_t n)
{
	put16(e, type);
	put16(e, (unsigned)n);
	fill(e, 0, n);
}

/* server_name with one host_name entry of n bytes (n given, so names may hold NULs). */
static void ext_sni_n(struct bytes *e, const char *name, size_t n)
{
	put16(e, 0);
	put16(e, (unsigned)n + 5);
	put16(e, (unsigned)n + 3);
	put8(e, 0);
	put16(e, (unsigned)n);
	put(e, name, n);
}

static void ext_sni(struct bytes *e, const char *name)
{
	ext_sni_n(e, name, strlen(name));
}

/* supported_versions as TLS 1.3 clients send it, optionally led by a GREASE value. */
static void ext_versions(struct bytes *e, bool grease)
{
	put16(e, 43);
	put16(e, grease ? 7 : 5);
	put8(e, grease ? 6 : 4);
	if (grease)
		put16(e, 0x3a3a);
	put16(e, 0x0304);
	put16(e, 0x0303);
}

static void ext_alpn(struct bytes *e)
{
	static const uint8_t list[] = { 0, 12, 2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };

	ext_raw(e, 16, list, sizeof(list));
}

/* A key_share with one share per group in `groups`, each `share` bytes long. */
static void ext_key_share(struct bytes *e, const unsigned *groups, size_t k, size_t share)
{
	put16(e, 51);
	put16(e, (unsigned)(2 + k * (4 + share)));
	put16(e, (unsigned)(k * (4 + share)));
	for (size_t i = 0; i < k; i++) {
		put16(e, groups[i]);
		put16(e, (unsigned)share);
		fill(e, 0x40 + (unsigned)i, share);
	}
}

/* An outer ECHClientHello: outer type, HKDF-SHA256/AES-128-GCM, config id, a 32-byte enc and a payload. */
static void ext_ech(struct bytes *e, size_t payload)
{
	put16(e, 0xfe0d);
	put16(e, (unsigned)(1 + 4 + 1 + 2 + 32 + 2 + payload));
	put8(e, 0);
	put16(e, 1);
	put16(e, 1);
	put8(e, 0x7b);
	put16(e, 32);
	fill(e, 0x5e, 32);
	put16(e, (unsigned)payload);
	fill(e, 0xec, payload);
}

/*
 * A ClientHello handshake message into hs: TLS 1.2 legacy_version, a session id of `sid` bytes, four
 * cipher suites (led by a GREASE one when asked), null compression, then the extensions in e (none at all
 * when e is NULL). Offsets of the fixed parts with the usual 32-byte session id: version 4, session id
 * length 38, cipher suites length 71.
 */
static void hello_sid(const struct bytes *e, bool grease_cs, size_t sid)
{
	hs.n = 0;
	put8(&hs, 1);
	put24(&hs, 0);
	put16(&hs, 0x0303);
	fill(&hs, 0x11, 32);
	put8(&hs, (unsigned)sid);
	fill(&hs, 0x22, sid);
	put16(&hs, grease_cs ? 10 : 8);
	if (grease_cs)
		put16(&hs, 0xdada);
	put16(&hs, 0x1301);
	put16(&hs, 0x1302);
	put16(&hs, 0x1303);
	put16(&hs, 0xc02f);
	put8(&hs, 1);
	put8(&hs, 0);
	if (e) {
		put16(&hs, (unsigned)e->n);
		put(&hs, e->b, e->n);
	}
	hs.b[1] = (uint8_t)((hs.n - 4) >> 16);
	hs.b[2] = (uint8_t)((hs.n - 4) >> 8);
	hs.b[3] = (uint8_t)(hs.n - 4);
}

static void hello(const struct bytes *e, bool grease_cs)
{
	hello_sid(e, grease_cs, 32);
}

/* Offset in hs where the extensions (the first extension's type) start. */
#define EXT_START (4 + 2 + 32 + 1 + 32 + 2 + 8 + 2 + 2)

static unsigned rec_version = 0x0301;

/*
 * Frames hs into rec as handshake records, a new record starting at each offset in cuts[] (ascending,
 * inside hs) and wherever a record would pass `max` bytes.
 */
static void frame_max(const size_t *cuts, size_t k, size_t max)
{
	size_t start = 0, i = 0;

	rec.n = 0;
	while (start < hs.n || (start == 0 && hs.n == 0)) {
		size_t end = hs.n;

		while (i < k && cuts[i] <= start)
			i++;
		if (i < k && cuts[i] < end)
			end = cuts[i];
		if (end - start > max)
			end = start + max;
		put8(&rec, 22);
		put16(&rec, rec_version);
		put16(&rec, (unsigned)(end - start));
		put(&rec, hs.b + start, end - start);
		start = end;
		if (hs.n == 0)
			break;
	}
}

static void frame(const size_t *cuts, size_t k)
{
	frame_max(cuts, k, 16384);
}

static void frame1(void)
{
	frame(NULL, 0);
}

static int parse_rec(struct crgw_tls_hello *h)
{
	return crgw_tls_hello_parse(rec.b, rec.n, h);
}

static int parse_only(void)
{
	struct crgw_tls_hello h;

	return parse_rec(&h);
}

static bool same(const struct crgw_tls_hello *a, const struct crgw_tls_hello *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

/*
 * Every proper prefix of s (n bytes), each in its own allocation of exactly that size so a sanitizer sees
 * any read past it, must ask for more with a hint no larger than the hello needs; the whole must parse
 * to exactly *want.
 */
static bool prefixes_ok(const uint8_t *s, size_t n, const struct crgw_tls_hello *want)
{
	struct crgw_tls_hello h;

	for (size_t i = 0; i < n; i++) {
		uint8_t *copy = malloc(i ? i : 1);
		int rc;

		if (!copy)
			return false;
		memcpy(copy, s, i);
		rc = crgw_tls_hello_parse(i ? copy : NULL, i, &h);
		free(copy);
		if (rc != -EAGAIN || h.need <= i || h.need > want->consumed || h.need > CRGW_TLS_HELLO_MAX) {
			printf("# prefix %zu of %zu: rc %d need %zu\n", i, n, rc, h.need);
			return false;
		}
	}
	return crgw_tls_hello_parse(s, n, &h) == 0 && same(&h, want);
}

/* ---- well-formed hellos ---- */

static void expect_ok(const char *what, const char *sni, size_t records)
{
	struct crgw_tls_hello h;
	int rc = parse_rec(&h);

	tap_result(rc == 0 && h.has_sni == (sni != NULL) && strcmp(h.sni, sni ? sni : "") == 0 &&
			   h.sni_len == strlen(h.sni) && h.consumed == rec.n && h.records == records,
		   "%s: rc %d sni '%s' consumed %zu of %zu in %u records", what, rc, h.sni, h.consumed, rec.n,
		   h.records);
}

static void basic_cases(void)
{
	struct crgw_tls_hello h;
	int rc;

	ext.n = 0;
	ext_sni(&ext, "example.test");
	hello(&ext, false);
	frame1();
	expect_ok("one record, SNI only", "example.test", 1);
	rc = parse_rec(&h);
	tap_result(rc == 0 && h.legacy_version == 0x0303 && h.max_version == 0x0303 && !h.ech && !h.grease &&
			   !h.has_alpn && h.need == 0,
		   "plain TLS 1.2 hello: version 0x%04x, no ECH, GREASE or ALPN", h.legacy_version);

	ext.n = 0;
	ext_sni(&ext, "WWW.Example.TEST");
	hello(&ext, false);
	frame1();
	expect_ok("SNI is lowercased", "www.example.test", 1);

	hello(NULL, false);
	frame1();
	expect_ok("no extensions block at all", NULL, 1);

	ext.n = 0;
	ext_sni(&ext, "example.test");
	hello_sid(&ext, false, 0);
	frame1();
	expect_ok("empty session id", "example.test", 1);

	ext.n = 0;
	hello(&ext, false);
	frame1();
	expect_ok("empty extensions block", NULL, 1);

	ext.n = 0;
	ext_versions(&ext, false);
	ext_alpn(&ext);
	hello(&ext, false);
	frame1();
	expect_ok("extensions without server_name", NULL, 1);
	rc = parse_rec(&h);
	tap_result(rc == 0 && h.max_version == 0x0304 && h.has_alpn, "supported_versions and ALPN read: 0x%04x %d",
		   h.max_version, h.has_alpn);

	ext.n = 0;
	ext_sni(&ext, "_acme-challenge.my-host.example");
	hello(&ext, false);
	frame1();
	expect_ok("underscore and hyphen accepted", "_acme-challenge.my-host.example", 1);

	ext.n = 0;
	ext_sni(&ext, "a");
	hello(&ext, false);
	frame1();
	expect_ok("one-letter single-label name", "a", 1);

	ext.n = 0;
	ext_sni(&ext, "123.example.com");
	hello(&ext, false);
	frame1();
	expect_ok("numeric first label", "123.example.com", 1);

	ext.n = 0;
	ext_sni(&ext, "xn--bcher-kva.example");
	hello(&ext, false);
	frame1();
	expect_ok("IDN A-label", "xn--bcher-kva.example", 1);

	{
		char name[254];

		/* 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 */
		memset(name, 'a', 253);
		name[63] = name[127] = name[191] = '.';
		name[253] = '\0';
		ext.n = 0;
		ext_sni(&ext, name);
		hello(&ext, false);
		frame1();
		expect_ok("name of 253 bytes with 63-byte labels", name, 1);
	}

	/* Chromium's shape: GREASE cipher suite, GREASE first and last extensions, GREASE version. */
	ext.n = 0;
	ext_raw(&ext, 0x2a2a, "", 0);
	ext_sni(&ext, "example.test");
	ext_versions(&ext, true);
	ext_raw(&ext, 0xbaba, "\0", 1);
	hello(&ext, true);
	frame1();
	expect_ok("GREASE suites, extensions and versions tolerated", "example.test", 1);
	rc = parse_rec(&h);
	tap_result(rc == 0 && h.grease && h.max_version == 0x0304, "GREASE seen, max version skips it: 0x%04x",
		   h.max_version);

	ext.n = 0;
	ext_raw(&ext, 0x0a0a, "", 0);
	hello(&ext, false);
	frame1();
	rc = parse_rec(&h);
	tap_result(rc == 0 && h.grease && !h.has_sni, "GREASE extension 0x0a0a alone");

	ext.n = 0;
	ext_raw(&ext, 0x0a1a, "", 0);
	ext_raw(&ext, 0x1a0a, "", 0);
	ext_raw(&ext, 0xfafb, "", 0);
	hello(&ext, false);
	frame1();
	rc = parse_rec(&h);
	tap_result(rc == 0 && !h.grease, "0x0a1a, 0x1a0a and 0xfafb are not GREASE");

	ext.n = 0;
	ext_sni(&ext, "public.example");
	ext_versions(&ext, false);
	ext_ech(&ext, 200);
	hello(&ext, true);
	frame1();
	rc = parse_rec(&h);
	tap_result(rc == 0 && h.ech && h.has_sni && strcmp(h.sni, "public.example") == 0,
		   "ECH outer hello: outer SNI and ech set");

	ext.n = 0;
	ext_ech(&ext, 100);
	ext_versions(&ext, false);
	hello(&ext, false);
	frame1();
	rc = parse_rec(&h);
	tap_result(rc == 0 && h.ech && !h.has_sni, "ECH without an outer SNI: ech set, no name");

	ext.n = 0;
	ext_sni(&ext, "example.test");
	hello(&ext, false);
	frame1();
	put8(&rec, 20);
	put16(&rec, 0x0303);
	put16(&rec, 1);
	put8(&rec, 1);
	rc = parse_rec(&h);
	tap_result(rc == 0 && h.consumed == rec.n - 6, "a ChangeCipherSpec record after the hello is not counted");

	ext.n = 0;
	ext_sni(&ext, "example.test");
	hello(&ext, false);
	put8(&hs, 11);
	put24(&hs, 2);
	put16(&hs, 0);
	frame1();
	rc = parse_rec(&h);
	tap_result(rc == 0 && h.consumed == rec.n && h.records == 1,
		   "trailing handshake bytes in the hello's last record are counted in consumed");
	rc = crgw_tls_hello_parse(rec.b, rec.n - 1, &h);
	tap_result(rc == -EAGAIN && h.need == rec.n, "the rest of the last record is waited for: need %zu", h.need);

	for (unsigned v = 0x0301; v <= 0x0304; v++) {
		rec_version = v;
		frame1();
		rec_version = 0x0301;
		tap_result(parse_only() == 0, "record version 0x%04x accepted", v);
	}
	hs.b[4] = 3;
	hs.b[5] = 0xff;
	frame1();
	tap_result(parse_only() == 0, "legacy_version 0x03ff accepted");
}

/* ---- records: boundaries anywhere, sizes, reassembly ---- */

static void record_cases(void)
{
	struct crgw_tls_hello one, h;
	size_t sni_off;
	bool ok;
	int rc;

	ext.n = 0;
	ext_raw(&ext, 0x1a1a, "", 0);
	ext_versions(&ext, true);
	ext_alpn(&ext);
	ext_sni(&ext, "split.example.test");
	ext_fill(&ext, 21, 40);
	hello(&ext, false);
	frame1();
	rc = parse_rec(&one);
	tap_result(rc == 0, "reference hello for the splits");

	/* Where the name itself starts in hs: after the GREASE, versions and ALPN extensions, and 9 bytes. */
	sni_off = EXT_START + 4 + 11 + 18 + 9;
	tap_result(memcmp(hs.b + sni_off, "split", 5) == 0, "builder puts the SNI where this test expects it");

	static const struct {
		const char *what;
		size_t cuts[4];
		size_t k;
	} splits[] = {
		{ "after the handshake type", { 1 }, 1 },
		{ "inside the handshake length", { 2 }, 1 },
		{ "right after the handshake header", { 4 }, 1 },
		{ "inside legacy_version", { 5 }, 1 },
		{ "inside the cipher suites", { 73 }, 1 },
		{ "inside the extensions block length", { EXT_START - 1 }, 1 },
		{ "inside an extension header", { EXT_START + 2 }, 1 },
		{ "inside supported_versions", { EXT_START + 8 }, 1 },
		{ "inside the SNI list header", { EXT_START + 4 + 11 + 18 + 5 }, 1 },
		{ "inside the SNI itself", { EXT_START + 4 + 11 + 18 + 12 }, 1 },
		{ "three records, handshake header and SNI split", { 3, EXT_START + 4 + 11 + 18 + 9 + 1 }, 2 },
	};
	for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
		frame(splits[i].cuts, splits[i].k);
		rc = parse_rec(&h);
		one.consumed = rec.n;
		one.records = (unsigned)splits[i].k + 1;
		tap_result(rc == 0 && same(&h, &one), "split %s: rc %d, %u records", splits[i].what, rc, h.records);
	}

	ok = true;
	for (size_t cut = 1; cut < hs.n && ok; cut++) {
		frame(&cut, 1);
		one.consumed = rec.n;
		one.records = 2;
		ok = parse_rec(&h) == 0 && same(&h, &one);
	}
	tap_result(ok, "two records, cut at every one of %zu offsets: same result", hs.n - 1);

	frame_max(NULL, 0, 1);
	rc = parse_rec(&h);
	one.consumed = rec.n;
	one.records = (unsigned)hs.n;
	tap_result(rc == 0 && same(&h, &one), "one handshake byte per record: %u records", h.records);
	tap_result(prefixes_ok(rec.b, rec.n, &one), "every prefix of the one-byte-record hello asks for more");

	{
		size_t cuts[] = { 3, 70, sni_off + 2, sni_off + 3 };

		frame(cuts, 4);
		one.consumed = rec.n;
		one.records = 5;
		tap_result(prefixes_ok(rec.b, rec.n, &one), "every prefix of a five-record hello asks for more");
	}

	/* A 16 KiB+ hello: a post-quantum key share (1216 bytes), a classic one, and padding to 17000. */
	{
		static const unsigned groups[] = { 0x11ec, 0x001d };

		ext.n = 0;
		ext_sni(&ext, "big.example.test");
		ext_versions(&ext, true);
		put16(&ext, 51);
		put16(&ext, 2 + 4 + 1216 + 4 + 32);
		put16(&ext, 4 + 1216 + 4 + 32);
		put16(&ext, groups[0]);
		put16(&ext, 1216);
		fill(&ext, 0x41, 1216);
		put16(&ext, groups[1]);
		put16(&ext, 32);
		fill(&ext, 0x42, 32);
		hello(&ext, true);
		ext_fill(&ext, 21, 17000 - hs.n - 4);
		hello(&ext, true);
		frame1();
		rc = parse_rec(&h);
		tap_result(rc == 0 && h.records == 2 && strcmp(h.sni, "big.example.test") == 0 && hs.n == 17000,
			   "17000-byte hello with a post-quantum key share in two records: rc %d", rc);
		tap_result(prefixes_ok(rec.b, rec.n, &h), "every prefix of the two-record 17000-byte hello");
		frame_max(NULL, 0, 1000);
		rc = parse_rec(&h);
		tap_result(rc == 0 && h.records == 17, "the same in 17 records of 1000 bytes: rc %d", rc);
	}

	/* Many key shares: 40 groups of 1216 bytes is about 48 KiB, in three full records and a tail. */
	{
		unsigned groups[40];

		for (size_t i = 0; i < 40; i++)
			groups[i] = 0x0200 + (unsigned)i;
		ext.n = 0;
		ext_sni(&ext, "shares.example.test");
		ext_key_share(&ext, groups, 40, 1216);
		hello(&ext, false);
		frame1();
		rc = parse_rec(&h);
		tap_result(rc == 0 && h.records == 3 && rec.n < CRGW_TLS_HELLO_MAX,
			   "%zu-byte hello of 40 key shares: rc %d", rec.n, rc);
	}

	/* Records at the size limit: 2^14 + 256 is accepted, one byte more is not. */
	ext.n = 0;
	ext_sni(&ext, "example.test");
	hello(&ext, false);
	ext_fill(&ext, 21, CRGW_TLS_RECORD_MAX - hs.n - 4);
	hello(&ext, false);
	frame_max(NULL, 0, CRGW_TLS_RECORD_MAX);
	rc = parse_rec(&h);
	tap_result(rc == 0 && h.records == 1 && hs.n == CRGW_TLS_RECORD_MAX, "record of 16640 bytes accepted: rc %d",
		   rc);
	ext.n = 0;
	ext_sni(&ext, "example.test");
	hello(&ext, false);
	ext_fill(&ext, 21, CRGW_TLS_RECORD_MAX + 1 - hs.n - 4);
	hello(&ext, false);
	frame_max(NULL, 0, CRGW_TLS_RECORD_MAX + 1);
	tap_result(crgw_tls_hello_parse(rec.b, 5, &h) == -EBADMSG, "record of 16641 bytes refused from its header");
}

/* ---- the size limit ---- */

/* A hello padded so that, in records of `max` bytes, the stream is exactly `total` bytes long. */
static bool padded_to(size_t total, size_t max)
{
	size_t pad = 0;

	/* Each round corrects the padding by the shortfall; a record header more or less settles in a few. */
	for (int round = 0; round < 8; round++) {
		ext.n = 0;
		ext_sni(&ext, "example.test");
		ext_fill(&ext, 21, pad);
		hello(&ext, false);
		frame_max(NULL, 0, max);
		if (rec.n == total)
			return true;
		if (rec.n > total && rec.n - total > pad)
			return false;
		pad = pad + total - rec.n;
	}
	return false;
}

static void size_cases(void)
{
	struct crgw_tls_hello h;
	int rc;

	if (padded_to(CRGW_TLS_HELLO_MAX, 16384)) {
		rc = parse_rec(&h);
		tap_result(rc == 0 && h.consumed == CRGW_TLS_HELLO_MAX,
			   "hello of exactly %d stream bytes accepted: rc %d", CRGW_TLS_HELLO_MAX, rc);
	} else {
		tap_result(false, "builder could not pad to %d bytes", CRGW_TLS_HELLO_MAX);
	}
	if (padded_to(CRGW_TLS_HELLO_MAX + 1, 16384)) {
		rc = parse_rec(&h);
		tap_result(rc == -E2BIG, "one byte more is too big: rc %d", rc);
		rc = crgw_tls_hello_parse(rec.b, 3 * (5 + 16384) + 5, &h);
		tap_result(rc == -E2BIG, "known from the last record's header, before its body: rc %d", rc);
	} else {
		tap_result(false, "builder could not pad to %d bytes", CRGW_TLS_HELLO_MAX + 1);
	}

	/* 2^24 - 1 announced: refused at once, before the caller buffers anything. */
	{
		static const uint8_t huge[] = { 22, 3, 1, 0x40, 0, 1, 0xff, 0xff, 0xff };

		tap_result(crgw_tls_hello_parse(huge, sizeof(huge), &h) == -E2BIG, "handshake length 2^24 - 1");
	}

	/* Small records: each costs 5 header bytes, so 12000 handshake bytes in 1-byte records cannot fit. */
	ext.n = 0;
	ext_sni(&ext, "example.test");
	ext_fill(&ext, 21, 12000);
	hello(&ext, false);
	frame_max(NULL, 0, 1);
	rc = crgw_tls_hello_parse(rec.b, CRGW_TLS_HELLO_MAX, &h);
	tap_result(rc == -E2BIG, "12 KB hello in one-byte records is too big within the buffer limit: rc %d", rc);
	rc = crgw_tls_hello_parse(rec.b, 4 * 6, &h);
	tap_result(rc == -EAGAIN && h.need == 4 * 6 + 5 + hs.n - 4,
		   "the same asks for more once its handshake header is in: need %zu", h.need);

	/* Truncated valid hellos: any length up to the limit asks for more, and never past it. */
	ext.n = 0;
	ext_sni(&ext, "example.test");
	ext_fill(&ext, 21, 40000);
	hello(&ext, false);
	frame1();
	rc = crgw_tls_hello_parse(rec.b, 30000, &h);
	tap_result(rc == -EAGAIN && h.need > 30000 && h.need <= rec.n, "truncated 40 KB hello: need %zu of %zu", h.need,
		   rec.n);
	rc = crgw_tls_hello_parse(rec.b, 9, &h);
	tap_result(rc == -EAGAIN && h.need == 5 + 16384 + 5 + hs.n - 16384 && rec.n == h.need + 5,
		   "after the headers the hint assumes the rest fits one more record: need %zu of %zu", h.need, rec.n);
	tap_result(crgw_tls_hello_parse(NULL, 0, &h) == -EAGAIN && h.need >= 9, "nothing read: need %zu", h.need);
}

/* ---- malformed streams, each its own check ---- */

struct bad {
	const char *what;
	const uint8_t *bytes;
	size_t n;
	int rc;
};

/* The hello's structure is refused: nothing of it is kept, and it is not said to be the name. */
static void expect_rc(const char *what, int want)
{
	struct crgw_tls_hello h;
	int rc = parse_rec(&h);
	static const struct crgw_tls_hello zero;

	tap_result(rc == want && same(&h, &zero), "%s: rc %d, want %d", what, rc, want);
}

/* The server_name's name is refused: -EBADMSG with sni_invalid, so the proxy's detail can say so. */
static void expect_sni_refused(const char *what)
{
	struct crgw_tls_hello h;
	int rc = parse_rec(&h);
	static const struct crgw_tls_hello zero;
	bool flagged = h.sni_invalid;

	h.sni_invalid = false;
	tap_result(rc == -EBADMSG && flagged && same(&h, &zero), "%s: rc %d, sni_invalid %d", what, rc, flagged);
}

static void raw_cases(void)
{
	static const uint8_t sslv2[] = { 0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10 };
	static const uint8_t alert[] = { 21, 3, 3, 0, 2, 2, 40 };
	static const uint8_t appdata[] = { 23, 3, 3, 0, 4, 1, 2, 3, 4 };
	static const uint8_t ccs[] = { 20, 3, 3, 0, 1, 1 };
	static const uint8_t http[] = "GET / HTTP/1.1\r\nHost: example.test\r\n\r\n";
	static const uint8_t ssl3[] = { 22, 3, 0, 0, 4, 1, 0, 0, 40 };
	static const uint8_t tls_future[] = { 22, 3, 5, 0, 4, 1, 0, 0, 40 };
	static const uint8_t major2[] = { 22, 2, 1, 0, 4, 1, 0, 0, 40 };
	static const uint8_t server_hello[] = { 22, 3, 3, 0, 4, 2, 0, 0, 40 };
	static const uint8_t hello_request[] = { 22, 3, 1, 0, 4, 0, 0, 0, 0 };
	static const uint8_t tiny[] = { 22, 3, 1, 0, 4, 1, 0, 0, 0 };
	static const uint8_t too_long[] = { 22, 3, 1, 0x41, 0x01 };
	static const struct bad cases[] = {
		{ "SSLv2-compatible hello", sslv2, sizeof(sslv2), -EBADMSG },
		{ "SSLv2 first byte alone", sslv2, 1, -EBADMSG },
		{ "alert record", alert, sizeof(alert), -EBADMSG },
		{ "application data record", appdata, sizeof(appdata), -EBADMSG },
		{ "ChangeCipherSpec first", ccs, sizeof(ccs), -EBADMSG },
		{ "plain HTTP", http, sizeof(http) - 1, -EBADMSG },
		{ "record version SSL 3.0", ssl3, sizeof(ssl3), -EBADMSG },
		{ "record version 0x0305", tls_future, sizeof(tls_future), -EBADMSG },
		{ "record major version 2", major2, sizeof(major2), -EBADMSG },
		{ "ServerHello instead of ClientHello", server_hello, sizeof(server_hello), -EBADMSG },
		{ "HelloRequest instead of ClientHello", hello_request, sizeof(hello_request), -EBADMSG },
		{ "empty ClientHello body", tiny, sizeof(tiny), -EBADMSG },
		{ "record length 16641", too_long, sizeof(too_long), -EBADMSG },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rec.n = 0;
		put(&rec, cases[i].bytes, cases[i].n);
		expect_rc(cases[i].what, cases[i].rc);
	}
}

/* Replaces hs[off..off+n) with the n bytes of `with` and frames the result in one record. */
static void patch(size_t off, const void *with, size_t n)
{
	memcpy(hs.b + off, with, n);
	frame1();
}

static void set_hs_len(size_t n)
{
	hs.b[1] = (uint8_t)(n >> 16);
	hs.b[2] = (uint8_t)(n >> 8);
	hs.b[3] = (uint8_t)n;
}

static void body_cases(void)
{
	size_t cuts[2];

	/* Between records: a zero-length or foreign record before or inside the hello. */
	ext.n = 0;
	ext_sni(&ext, "example.test");
	hello(&ext, false);
	frame1();
	memmove(rec.b + 5, rec.b, rec.n);
	memcpy(rec.b, "\x16\x03\x01\x00\x00", 5);
	rec.n += 5;
	expect_rc("zero-length handshake record before the hello", -EBADMSG);
	cuts[0] = 50;
	frame(cuts, 1);
	memmove(rec.b + 5 + 50 + 5, rec.b + 5 + 50, rec.n - 55);
	memcpy(rec.b + 55, "\x16\x03\x01\x00\x00", 5);
	rec.n += 5;
	expect_rc("zero-length record inside the hello", -EBADMSG);
	rec.b[55] = 21;
	rec.b[59] = 2;
	expect_rc("alert record inside the hello", -EBADMSG);
	frame(cuts, 1);
	rec.b[55] = 23;
	expect_rc("application data record where the hello's second record belongs", -EBADMSG);
	frame(cuts, 1);
	rec.b[57] = 0;
	expect_rc("second record with version 0x0300", -EBADMSG);

	hello(&ext, false);
	patch(4, "\x03\x00", 2);
	expect_rc("legacy_version SSL 3.0", -EBADMSG);
	hello(&ext, false);
	patch(4, "\x02\x00", 2);
	expect_rc("legacy_version 0x0200", -EBADMSG);
	hello(&ext, false);
	patch(4, "\x04\x03", 2);
	expect_rc("legacy_version 0x0403", -EBADMSG);
	hello_sid(&ext, false, 33);
	frame1();
	expect_rc("session id of 33 bytes", -EBADMSG);
	hello(&ext, false);
	patch(71, "\x00\x07", 2);
	expect_rc("odd cipher suites length", -EBADMSG);
	hello(&ext, false);
	patch(71, "\x00\x00", 2);
	expect_rc("empty cipher suite list", -EBADMSG);
	hello(&ext, false);
	patch(71, "\xff\xfe", 2);
	expect_rc("cipher suites overrun the hello", -EBADMSG);
	hello(&ext, false);
	patch(81, "\x00", 1);
	expect_rc("empty compression methods", -EBADMSG);
	hello(&ext, false);
	patch(EXT_START - 2, "\x00\x20", 2);
	expect_rc("extensions block longer than the hello", -EBADMSG);
	hello(&ext, false);
	patch(EXT_START - 2, "\x00\x10", 2);
	expect_rc("extensions block shorter than the hello", -EBADMSG);
	hello(&ext, false);
	set_hs_len(hs.n - 4 - 1);
	frame1();
	expect_rc("handshake length one short", -EBADMSG);
	hello(&ext, false);
	put8(&hs, 0);
	set_hs_len(hs.n - 4);
	frame1();
	expect_rc("a byte after the extensions block", -EBADMSG);
	hello(NULL, false);
	put8(&hs, 0);
	set_hs_len(hs.n - 4);
	frame1();
	expect_rc("one byte where the extensions block length belongs", -EBADMSG);
	hello(&ext, false);
	hs.n = EXT_START + 3;
	set_hs_len(hs.n - 4);
	hs.b[EXT_START - 1] = 3;
	frame1();
	expect_rc("extension header cut by the hello's end", -EBADMSG);
	hello(&ext, false);
	patch(EXT_START + 2, "\x00\x12", 2);
	expect_rc("extension overruns the extensions block", -EBADMSG);
	hello(&ext, false);
	set_hs_len(hs.n - 4 + 10);
	frame1();
	expect_rc("handshake length beyond what the extensions block says", -EBADMSG);
}

static void ext_case(const char *what, void (*add)(struct bytes *e), bool name)
{
	ext.n = 0;
	add(&ext);
	hello(&ext, false);
	frame1();
	if (name)
		expect_sni_refused(what);
	else
		expect_rc(what, -EBADMSG);
}

static void dup_alpn(struct bytes *e)
{
	ext_alpn(e);
	ext_sni(e, "example.test");
	ext_alpn(e);
}

static void dup_sni(struct bytes *e)
{
	ext_sni(e, "example.test");
	ext_sni(e, "evil.example");
}

static void dup_grease(struct bytes *e)
{
	ext_raw(e, 0x3a3a, "", 0);
	ext_sni(e, "example.test");
	ext_raw(e, 0x3a3a, "", 0);
}

static void dup_unknown(struct bytes *e)
{
	ext_fill(e, 0x1234, 3);
	ext_fill(e, 0x1234, 0);
}

static void sni_empty_ext(struct bytes *e)
{
	ext_raw(e, 0, "", 0);
}

static void sni_list_long(struct bytes *e)
{
	ext_raw(e, 0, "\x00\x10\x00\x00\x04test", 9);
}

static void sni_list_short(struct bytes *e)
{
	ext_raw(e, 0, "\x00\x06\x00\x00\x04test", 9);
}

static void sni_type1(struct bytes *e)
{
	ext_raw(e, 0, "\x00\x07\x01\x00\x04test", 9);
}

static void sni_two_entries(struct bytes *e)
{
	ext_raw(e, 0, "\x00\x0e\x00\x00\x04test\x00\x00\x04evil", 16);
}

static void sni_other_then_host(struct bytes *e)
{
	ext_raw(e, 0, "\x00\x0e\x01\x00\x04test\x00\x00\x04evil", 16);
}

static void sni_zero_len(struct bytes *e)
{
	ext_raw(e, 0, "\x00\x03\x00\x00\x00", 5);
}

static void sni_name_overruns(struct bytes *e)
{
	ext_raw(e, 0, "\x00\x07\x00\x00\x08test", 9);
}

static void sni_list_cut(struct bytes *e)
{
	ext_raw(e, 0, "\x00", 1);
}

static void sni_254(struct bytes *e)
{
	char name[254];

	memset(name, 'a', sizeof(name));
	for (size_t i = 50; i < sizeof(name); i += 50)
		name[i] = '.';
	ext_sni_n(e, name, sizeof(name));
}

static void versions_odd(struct bytes *e)
{
	ext_raw(e, 43, "\x03\x03\x04\x03", 4);
}

static void versions_empty(struct bytes *e)
{
	ext_raw(e, 43, "\x00", 1);
}

static void versions_mismatch(struct bytes *e)
{
	ext_raw(e, 43, "\x04\x03\x04\x03\x03\x03\x02", 7);
}

static void alpn_empty(struct bytes *e)
{
	ext_raw(e, 16, "\x00\x00", 2);
}

static void alpn_empty_name(struct bytes *e)
{
	ext_raw(e, 16, "\x00\x04\x02h2\x00", 6);
}

static void alpn_overrun(struct bytes *e)
{
	ext_raw(e, 16, "\x00\x03\x03h2", 5);
}

static void extension_cases(void)
{
	static const struct {
		const char *what;
		void (*add)(struct bytes *e);
		bool name; /* the name is what is wrong, not the extension's structure */
	} cases[] = {
		{ "duplicate ALPN extension", dup_alpn, false },
		{ "two server_name extensions", dup_sni, false },
		{ "the same GREASE extension twice", dup_grease, false },
		{ "the same unknown extension twice", dup_unknown, false },
		{ "empty server_name extension", sni_empty_ext, false },
		{ "server_name list longer than the extension", sni_list_long, false },
		{ "server_name list shorter than the extension", sni_list_short, false },
		{ "server_name type 1 instead of host_name", sni_type1, false },
		{ "two host_name entries", sni_two_entries, false },
		{ "another name type before host_name", sni_other_then_host, false },
		{ "zero-length host_name", sni_zero_len, true },
		{ "host_name overruns its list", sni_name_overruns, false },
		{ "server_name list length cut", sni_list_cut, false },
		{ "host_name of 254 bytes", sni_254, true },
		{ "supported_versions list odd", versions_odd, false },
		{ "supported_versions list empty", versions_empty, false },
		{ "supported_versions list not filling the extension", versions_mismatch, false },
		{ "ALPN list empty", alpn_empty, false },
		{ "ALPN protocol of zero bytes", alpn_empty_name, false },
		{ "ALPN protocol overruns the list", alpn_overrun, false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ext_case(cases[i].what, cases[i].add, cases[i].name);
}

static void name_cases(void)
{
	static const struct {
		const char *what;
		const char *name;
		size_t n;
	} cases[] = {
		{ "trailing dot", "example.test.", 0 },
		{ "leading dot", ".example.test", 0 },
		{ "double dot", "example..test", 0 },
		{ "a dot alone", ".", 0 },
		{ "NUL inside", "evil.example\0.allowed.test", 26 },
		{ "NUL at the end", "example.test\0", 13 },
		{ "slash", "example.test/path", 0 },
		{ "backslash", "example\\test", 0 },
		{ "space", "example test", 0 },
		{ "tab", "example\ttest", 0 },
		{ "CR LF", "example.test\r\nX: y", 0 },
		{ "control byte 0x01", "exa\x01mple.test", 0 },
		{ "DEL", "example\x7f.test", 0 },
		{ "non-ASCII byte", "b\xc3\xbc" "cher.example", 0 },
		{ "colon (an IPv6 literal or a port)", "example.test:443", 0 },
		{ "IPv6 literal", "2001:db8::1", 0 },
		{ "asterisk", "*.example.test", 0 },
		{ "at sign", "user@example.test", 0 },
		{ "percent", "example%2etest", 0 },
		{ "IPv4 literal", "192.0.2.1", 0 },
		{ "short IPv4 form", "127.1", 0 },
		{ "all-digit single label", "2130706433", 0 },
		{ "hex address", "0x7f000001", 0 },
		{ "hex last label", "0x7f.0x1", 0 },
		{ "label of 64 bytes", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.test", 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char what[128];

		ext.n = 0;
		ext_sni_n(&ext, cases[i].name, cases[i].n ? cases[i].n : strlen(cases[i].name));
		hello(&ext, false);
		frame1();
		snprintf(what, sizeof(what), "SNI refused: %s", cases[i].what);
		expect_sni_refused(what);
	}

	static const char *const fine[] = { "0x.example", "example.0x7g", "1e100.net", "a-.-b", "xn--p1ai", "_._" };

	for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
		char what[128];

		ext.n = 0;
		ext_sni(&ext, fine[i]);
		hello(&ext, false);
		frame1();
		snprintf(what, sizeof(what), "SNI accepted: %s", fine[i]);
		expect_ok(what, fine[i], 1);
	}
}

/* Streams that go bad after a prefix: each prefix must ask for more or already give the final error. */
static void prefix_error_cases(void)
{
	struct crgw_tls_hello h;
	bool ok = true;
	int rc;

	ext.n = 0;
	ext_sni(&ext, "example..test");
	hello(&ext, false);
	frame1();
	for (size_t i = 0; i <= rec.n && ok; i++) {
		rc = crgw_tls_hello_parse(rec.b, i, &h);
		ok = rc == -EAGAIN || (rc == -EBADMSG && i == rec.n);
	}
	tap_result(ok, "a bad name is found only once the whole name is there, and every prefix before asks for more");

	rec.n = 0;
	put(&rec, "\x16\x03\x01\x00\x10\x02", 6);
	rc = crgw_tls_hello_parse(rec.b, 6, &h);
	tap_result(rc == -EBADMSG, "a wrong handshake type is refused before the rest arrives");
}

/* ---- the fuzz seed corpus ---- */

static void replay_corpus(const char *dir)
{
	char **names;
	size_t n = tap_list_dir(dir, "", &names), real = 0;

	tap_result(n >= 8, "corpus: %zu seed files in %s", n, dir);
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		size_t len = 0;
		struct crgw_tls_hello h, again;
		int rc = -1;
		bool ok = false;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		char *data = tap_read_file(path, &len);
		uint8_t *copy = malloc(len ? len : 1);

		if (data && copy) {
			memcpy(copy, data, len);
			rc = crgw_tls_hello_parse(copy, len, &h);
			ok = rc == 0 || rc == -EAGAIN || rc == -EBADMSG || rc == -E2BIG;
			if (rc == 0)
				ok = crgw_tls_hello_parse(copy, h.consumed, &again) == 0 && same(&h, &again);
		}
		if (strncmp(names[i], "real-", 5) == 0) {
			real++;
			ok = ok && rc == 0 && strcmp(h.sni, "example.test") == 0 && h.consumed == len;
			tap_result(ok, "corpus: %s: rc %d sni '%s', %zu bytes in %u records, version 0x%04x", names[i],
				   rc, rc == 0 ? h.sni : "", len, rc == 0 ? h.records : 0, rc == 0 ? h.max_version : 0);
			tap_result(ok && prefixes_ok(copy, len, &h), "corpus: %s: every prefix asks for more",
				   names[i]);
		} else {
			if (strncmp(names[i], "ok-", 3) == 0)
				ok = ok && rc == 0;
			else if (strncmp(names[i], "bad-", 4) == 0)
				ok = ok && rc == -EBADMSG;
			else if (strncmp(names[i], "big-", 4) == 0)
				ok = ok && rc == -E2BIG;
			tap_result(ok, "corpus: %s: rc %d", names[i], rc);
		}
		free(copy);
		free(data);
		free(names[i]);
	}
	free(names);
	tap_result(real >= 5, "corpus: %zu hellos from real clients", real);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS-DIR\n", argv[0]);
		return 2;
	}
	basic_cases();
	record_cases();
	size_cases();
	raw_cases();
	body_cases();
	extension_cases();
	name_cases();
	prefix_error_cases();
	replay_corpus(argv[1]);
	return tap_done();
}
