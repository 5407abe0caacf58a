/* SPDX-License-Identifier: Apache-2.0 */
/* ClientHello parsing straight from the record stream: every read is checked against the buffer and its container. */
#include <errno.h>
#include <string.h>

#include "tlshello.h"

#define REC_HDR 5
#define REC_HANDSHAKE 22
#define HS_HDR 4
#define HS_CLIENT_HELLO 1
#define RANDOM_LEN 32
#define SESSION_ID_MAX 32
#define HOST_MAX (CRGW_TLS_SNI_MAX - 1)
#define LABEL_MAX 63

#define EXT_SERVER_NAME 0
#define EXT_ALPN 16
#define EXT_SUPPORTED_VERSIONS 43
#define EXT_ECH 0xfe0d
#define SNI_HOST_NAME 0

/*
 * A cursor over the handshake bytes carried by consecutive records. Reading through it instead of first
 * reassembling the message means no copy and no buffer, and every check happens at the byte that proves
 * it, in stream order: that is what makes the result for a prefix either -EAGAIN or the final one.
 */
struct rd {
	const uint8_t *buf;
	size_t len;
	size_t pos;	 /* stream offset of the next unread byte */
	size_t rec_end;	 /* stream offset where the current record ends; pos == rec_end between records */
	size_t hs_off;	 /* handshake bytes read so far */
	size_t hs_total; /* handshake bytes the hello needs: the header's until its length is read, then all */
	unsigned records;
};

/*
 * The least stream length that can hold the rest of the hello: what the current record still holds, and
 * the remainder in one more record. It is both the -E2BIG test, decided as early as the lengths allow and
 * before the caller buffers anything, and the -EAGAIN hint. Reading bytes leaves it unchanged; it only
 * grows when a record header or the handshake length is read, and both places test it. So a hello that
 * passed never needs a byte at or beyond CRGW_TLS_HELLO_MAX, and a full buffer never gets -EAGAIN.
 */
static size_t min_end(const struct rd *r)
{
	size_t left = r->hs_total - r->hs_off, in_rec = r->rec_end - r->pos;

	if (left <= in_rec)
		return r->rec_end;
	return r->rec_end + REC_HDR + (left - in_rec);
}

/* Reads the header of the record that must carry the hello's next byte; pos is at its first byte. */
static int next_record(struct rd *r)
{
	size_t avail = r->len - r->pos, n;
	const uint8_t *h;

	if (avail < 1)
		return -EAGAIN;
	h = r->buf + r->pos;
	/*
	 * Interleaving another record type (an alert, a ChangeCipherSpec, early data) inside the hello is
	 * forbidden (RFC 8446 5.1); refusing it also means the bytes we read are the bytes a server would.
	 */
	if (h[0] != REC_HANDSHAKE)
		return -EBADMSG;
	if (avail < 2)
		return -EAGAIN;
	if (h[1] != 3)
		return -EBADMSG;
	if (avail < 3)
		return -EAGAIN;
	if (h[2] < 1 || h[2] > 4)
		return -EBADMSG;
	if (avail < REC_HDR)
		return -EAGAIN;
	n = (size_t)h[3] << 8 | h[4];
	if (n == 0 || n > CRGW_TLS_RECORD_MAX)
		return -EBADMSG;
	r->pos += REC_HDR;
	r->rec_end = r->pos + n;
	r->records++;
	return min_end(r) > CRGW_TLS_HELLO_MAX ? -E2BIG : 0;
}

/* Reads n handshake bytes into dst (NULL to skip them), crossing records as they come. */
static int take(struct rd *r, uint8_t *dst, size_t n)
{
	while (n > 0) {
		size_t chunk;
		int err;

		if (r->pos == r->rec_end) {
			err = next_record(r);
			if (err)
				return err;
		}
		chunk = r->rec_end - r->pos;
		if (chunk > n)
			chunk = n;
		if (r->len - r->pos < chunk)
			return -EAGAIN;
		if (dst) {
			memcpy(dst, r->buf + r->pos, chunk);
			dst += chunk;
		}
		r->pos += chunk;
		r->hs_off += chunk;
		n -= chunk;
	}
	return 0;
}

/*
 * Reads an n-byte (1..3) big-endian number that must lie before handshake offset `end`. Every container
 * check in this file goes through here or skip(), which keeps hs_off <= end <= hs_total throughout.
 */
static int get(struct rd *r, size_t end, size_t n, size_t *v)
{
	uint8_t b[3];
	int err;

	if (end - r->hs_off < n)
		return -EBADMSG;
	err = take(r, b, n);
	if (err)
		return err;
	*v = 0;
	for (size_t i = 0; i < n; i++)
		*v = *v << 8 | b[i];
	return 0;
}

static int skip(struct rd *r, size_t end, size_t n)
{
	if (end - r->hs_off < n)
		return -EBADMSG;
	return take(r, NULL, n);
}

/* RFC 8701: 0x0a0a, 0x1a1a, ... 0xfafa, for cipher suites, extensions and versions alike. */
static bool grease(size_t v)
{
	return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

static bool host_byte(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static bool hex_digit(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/*
 * A last label a resolver would take for (part of) an IPv4 address, decimal or hex, as inet_aton does and
 * the WHATWG URL standard's "ends in a number" check does. No top-level domain looks like that.
 */
static bool numeric_label(const char *s, size_t n)
{
	size_t i = 0;

	if (n >= 2 && s[0] == '0' && s[1] == 'x') {
		for (i = 2; i < n && hex_digit(s[i]); i++)
			;
		return i == n;
	}
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
		;
	return i == n;
}

/*
 * Checks the n-byte name and writes it lowercased and NUL-terminated to out (n + 1 bytes). Underscores are
 * accepted because real names carry them (and the DNS service accepts them); anything that could mean
 * something else to a resolver, a logger or a policy matcher is not.
 */
static int host_copy(const uint8_t *name, size_t n, char *out)
{
	size_t label = 0, last = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t c = name[i];

		if (c == '.') {
			if (label == 0)
				return -EBADMSG;
			label = 0;
			last = i + 1;
			out[i] = '.';
			continue;
		}
		if (c >= 'A' && c <= 'Z')
			c = (uint8_t)(c - 'A' + 'a');
		if (!host_byte(c) || ++label > LABEL_MAX)
			return -EBADMSG;
		out[i] = (char)c;
	}
	if (label == 0)
		return -EBADMSG;
	out[n] = '\0';
	return numeric_label(out + last, n - last) ? -EBADMSG : 0;
}

/*
 * server_name (RFC 6066 3), held to one host_name entry as OpenSSL and BoringSSL hold it: a second entry,
 * or another name type, would be a second place for a server to look for the name and a chance for it
 * to read a different one than we did.
 */
static int parse_sni(struct rd *r, size_t end, struct crgw_tls_hello *out)
{
	uint8_t name[HOST_MAX];
	size_t list, type, n;
	int err;

	if ((err = get(r, end, 2, &list)))
		return err;
	if (list != end - r->hs_off)
		return -EBADMSG;
	if ((err = get(r, end, 1, &type)))
		return err;
	if (type != SNI_HOST_NAME)
		return -EBADMSG;
	if ((err = get(r, end, 2, &n)))
		return err;
	if (n != end - r->hs_off)
		return -EBADMSG;
	if (n == 0 || n > HOST_MAX) {
		out->sni_invalid = true;
		return -EBADMSG;
	}
	if ((err = take(r, name, n)))
		return err;
	if ((err = host_copy(name, n, out->sni))) {
		out->sni_invalid = true;
		return err;
	}
	out->sni_len = n;
	out->has_sni = true;
	return 0;
}

static int parse_versions(struct rd *r, size_t end, struct crgw_tls_hello *out)
{
	size_t list, v, max = 0;
	int err;

	if ((err = get(r, end, 1, &list)))
		return err;
	if (list == 0 || list % 2 || list != end - r->hs_off)
		return -EBADMSG;
	while (r->hs_off < end) {
		if ((err = get(r, end, 2, &v)))
			return err;
		if (grease(v))
			out->grease = true;
		else if (v > max)
			max = v;
	}
	if (max)
		out->max_version = (uint16_t)max;
	return 0;
}

static int parse_alpn(struct rd *r, size_t end, struct crgw_tls_hello *out)
{
	size_t list, n;
	int err;

	if ((err = get(r, end, 2, &list)))
		return err;
	if (list == 0 || list != end - r->hs_off)
		return -EBADMSG;
	while (r->hs_off < end) {
		if ((err = get(r, end, 1, &n)))
			return err;
		if (n == 0)
			return -EBADMSG;
		if ((err = skip(r, end, n)))
			return err;
	}
	out->has_alpn = true;
	return 0;
}

static int parse_extensions(struct rd *r, size_t end, struct crgw_tls_hello *out)
{
	/* One bit per extension type: exact duplicate detection in constant time, whatever the count. */
	uint8_t seen[65536 / 8];
	size_t type, n, ext_end;
	int err;

	memset(seen, 0, sizeof(seen));
	while (r->hs_off < end) {
		if ((err = get(r, end, 2, &type)) || (err = get(r, end, 2, &n)))
			return err;
		if (n > end - r->hs_off || seen[type / 8] & (1u << type % 8))
			return -EBADMSG;
		seen[type / 8] |= (uint8_t)(1u << type % 8);
		ext_end = r->hs_off + n;
		switch (type) {
		case EXT_SERVER_NAME:
			err = parse_sni(r, ext_end, out);
			break;
		case EXT_SUPPORTED_VERSIONS:
			err = parse_versions(r, ext_end, out);
			break;
		case EXT_ALPN:
			err = parse_alpn(r, ext_end, out);
			break;
		case EXT_ECH:
			out->ech = true;
			err = skip(r, ext_end, n);
			break;
		default:
			if (grease(type))
				out->grease = true;
			err = skip(r, ext_end, n);
			break;
		}
		if (err)
			return err;
	}
	return 0;
}

static int parse_hello(struct rd *r, struct crgw_tls_hello *out)
{
	size_t v, n, end;
	int err;

	if ((err = get(r, HS_HDR, 1, &v)))
		return err;
	if (v != HS_CLIENT_HELLO)
		return -EBADMSG;
	if ((err = get(r, HS_HDR, 3, &n)))
		return err;
	r->hs_total = end = HS_HDR + n;
	if (min_end(r) > CRGW_TLS_HELLO_MAX)
		return -E2BIG;

	if ((err = get(r, end, 2, &v)))
		return err;
	if (v < 0x0301 || v > 0x03ff)
		return -EBADMSG;
	out->legacy_version = out->max_version = (uint16_t)v;
	if ((err = skip(r, end, RANDOM_LEN)) || (err = get(r, end, 1, &n)))
		return err;
	if (n > SESSION_ID_MAX)
		return -EBADMSG;
	if ((err = skip(r, end, n)) || (err = get(r, end, 2, &n)))
		return err;
	if (n == 0 || n % 2 || n > end - r->hs_off)
		return -EBADMSG;
	for (size_t i = 0; i < n; i += 2) {
		if ((err = get(r, end, 2, &v)))
			return err;
		if (grease(v))
			out->grease = true;
	}
	if ((err = get(r, end, 1, &n)))
		return err;
	if (n == 0)
		return -EBADMSG;
	if ((err = skip(r, end, n)))
		return err;
	if (r->hs_off == end)
		return 0;
	if ((err = get(r, end, 2, &n)))
		return err;
	if (n != end - r->hs_off)
		return -EBADMSG;
	return parse_extensions(r, end, out);
}

int crgw_tls_hello_parse(const uint8_t *buf, size_t len, struct crgw_tls_hello *out)
{
	struct rd r = { .buf = buf, .len = len, .hs_total = HS_HDR };
	int err;

	memset(out, 0, sizeof(*out));
	err = parse_hello(&r, out);
	/* The rest of the last record is part of what we vouch for, so wait for all of it. */
	if (!err && r.rec_end > len)
		err = -EAGAIN;
	if (err) {
		bool sni_invalid = err == -EBADMSG && out->sni_invalid;

		memset(out, 0, sizeof(*out));
		out->sni_invalid = sni_invalid;
		if (err == -EAGAIN)
			out->need = min_end(&r) > len ? min_end(&r) : len + 1;
		return err;
	}
	out->records = r.records;
	out->consumed = r.rec_end;
	return 0;
}
