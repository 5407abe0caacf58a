/* SPDX-License-Identifier: Apache-2.0 */
/* Host normalization: the one place that decides what a name or address means, in policy and on the wire. */
#include <arpa/inet.h>
#include <errno.h>
#include <idn2.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/policy.h"

/* Anything longer cannot become a valid name even after IDNA; refuse before doing work on it. */
#define HOST_INPUT_MAX 1024

static int fail(const char **why, const char *text)
{
	if (why)
		*why = text;
	return -EINVAL;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f');
}

/*
 * The WHATWG URL rule: a host whose last label is numeric is an IPv4 address or nothing. That is what
 * stops "0x7f.1", "017.0.0.1" and "2130706433" from reaching loopback while looking like names.
 */
static bool last_label_numeric(const char *s, size_t len)
{
	size_t start = len;

	while (start > 0 && s[start - 1] != '.')
		start--;
	if (start == len)
		return false;
	if (len - start >= 2 && s[start] == '0' && s[start + 1] == 'x') {
		for (size_t i = start + 2; i < len; i++)
			if (!is_hex(s[i]))
				return false;
		return true;
	}
	for (size_t i = start; i < len; i++)
		if (!is_digit(s[i]))
			return false;
	return true;
}

/* Only the canonical dotted quad: four decimal octets, no leading zeros, no other spelling. */
static int parse_dotted_quad(const char *s, size_t len, uint8_t addr[4])
{
	size_t i = 0;

	for (int octet = 0; octet < 4; octet++) {
		unsigned value = 0, digits = 0;

		if (octet > 0) {
			if (i >= len || s[i] != '.')
				return -EINVAL;
			i++;
		}
		while (i < len && is_digit(s[i])) {
			if (digits == 1 && value == 0)
				return -EINVAL; /* leading zero: an octal spelling */
			value = value * 10 + (unsigned)(s[i] - '0');
			if (value > 255)
				return -EINVAL;
			digits++;
			i++;
		}
		if (digits == 0)
			return -EINVAL;
		addr[octet] = (uint8_t)value;
	}
	return i == len ? 0 : -EINVAL;
}

static bool is_v4_mapped(const uint8_t a[16])
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return memcmp(a, prefix, sizeof(prefix)) == 0;
}

static void set_ipv4(struct crgw_host *out, const uint8_t a[4])
{
	memset(out->addr, 0, sizeof(out->addr));
	memcpy(out->addr, a, 4);
	out->kind = CRGW_HOST_IPV4;
	inet_ntop(AF_INET, a, out->text, sizeof(out->text));
	out->len = (uint8_t)strlen(out->text);
}

static int parse_ipv6(const char *s, size_t len, struct crgw_host *out, const char **why)
{
	char buf[64];
	uint8_t a[16];

	if (len >= sizeof(buf))
		return fail(why, "IPv6 address too long");
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (memchr(buf, '%', len))
		return fail(why, "IPv6 zone identifiers are not accepted");
	if (inet_pton(AF_INET6, buf, a) != 1)
		return fail(why, "not a valid IPv6 address");
	if (is_v4_mapped(a)) {
		set_ipv4(out, a + 12);
		return 0;
	}
	memcpy(out->addr, a, 16);
	out->kind = CRGW_HOST_IPV6;
	inet_ntop(AF_INET6, a, out->text, sizeof(out->text));
	out->len = (uint8_t)strlen(out->text);
	return 0;
}

/* Checks an already lowercased ASCII name: LDH labels (underscore allowed, as DNS allows it). */
static int check_name(const char *s, size_t len, const char **why)
{
	size_t label = 0;

	if (len == 0)
		return fail(why, "empty host name");
	if (len > CRGW_HOST_NAME_MAX)
		return fail(why, "host name longer than 253 characters");
	for (size_t i = 0; i <= len; i++) {
		char c = i < len ? s[i] : '.';

		if (c == '.') {
			if (label == 0)
				return fail(why, "empty label in host name");
			if (s[i - 1] == '-' || s[i - label] == '-')
				return fail(why, "a label starts or ends with '-'");
			label = 0;
			continue;
		}
		if (!(is_digit(c) || (c >= 'a' && c <= 'z') || c == '-' || c == '_'))
			return fail(why, "invalid character in host name");
		if (++label > 63)
			return fail(why, "label longer than 63 characters");
	}
	return 0;
}

static bool has_ace_label(const char *s, size_t len)
{
	for (size_t i = 0; i + 4 <= len; i++)
		if ((i == 0 || s[i - 1] == '.') && memcmp(s + i, "xn--", 4) == 0)
			return true;
	return false;
}

/* The slow path for Unicode names and punycode labels, which libidn2 checks against IDNA2008. */
static int idna_to_ascii(const char *s, size_t len, struct crgw_host *out, const char **why)
{
	char buf[HOST_INPUT_MAX + 1];
	char *ace = NULL;
	int err = 0;

	memcpy(buf, s, len);
	buf[len] = '\0';
	if (idn2_lookup_u8((const uint8_t *)buf, (uint8_t **)&ace, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) !=
	    IDN2_OK)
		return fail(why, "not a valid internationalized domain name (IDNA2008)");
	size_t n = strlen(ace);

	for (size_t i = 0; i < n; i++)
		if (ace[i] >= 'A' && ace[i] <= 'Z')
			ace[i] = (char)(ace[i] - 'A' + 'a');
	if (n > 0 && ace[n - 1] == '.')
		n--;
	err = check_name(ace, n, why);
	if (err == 0 && last_label_numeric(ace, n))
		err = fail(why, "name maps to a numeric form; write the IPv4 address as a dotted quad");
	if (err == 0) {
		memcpy(out->text, ace, n);
		out->text[n] = '\0';
		out->len = (uint8_t)n;
		out->kind = CRGW_HOST_NAME;
		memset(out->addr, 0, sizeof(out->addr));
	}
	free(ace);
	return err;
}

int crgw_host_parse(const char *in, size_t len, struct crgw_host *out, const char **why)
{
	char lower[HOST_INPUT_MAX];
	bool ascii = true;

	if (len == 0)
		return fail(why, "empty host");
	if (len > HOST_INPUT_MAX)
		return fail(why, "host too long");
	if (memchr(in, '\0', len))
		return fail(why, "NUL byte in host");

	if (in[0] == '[') {
		if (in[len - 1] != ']')
			return fail(why, "unterminated IPv6 literal");
		if (len < 3)
			return fail(why, "empty IPv6 literal");
		return parse_ipv6(in + 1, len - 2, out, why);
	}
	if (memchr(in, ':', len)) {
		const char *colon = memchr(in, ':', len);

		/* "name:443": a port written into the host, not an IPv6 address gone wrong. */
		if (parse_ipv6(in, len, out, why) == 0)
			return 0;
		/* "https://name/": a URL pasted where a host goes; "not a valid IPv6 address" would mislead. */
		if (len - (size_t)(colon - in) >= 3 && colon[1] == '/' && colon[2] == '/')
			return fail(why, "a host, not a URL: write the host name alone, without 'scheme://' or a path");
		if (!memchr(colon + 1, ':', len - (size_t)(colon - in) - 1) && memchr(in, '.', (size_t)(colon - in)))
			return fail(why, "a host holds no port: ports go in 'ports' (rules) or after the host (HOST:PORT)");
		return -EINVAL;
	}

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c >= 0x80)
			ascii = false;
		lower[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	/* One trailing dot is the root label; "a.." or "." are not names. */
	if (len > 1 && lower[len - 1] == '.' && lower[len - 2] != '.')
		len--;

	if (!ascii || has_ace_label(lower, len))
		return idna_to_ascii(lower, len, out, why);

	if (last_label_numeric(lower, len)) {
		uint8_t a[4];

		if (parse_dotted_quad(lower, len, a) != 0)
			return fail(why, "numeric host is not a canonical dotted-quad IPv4 address");
		set_ipv4(out, a);
		return 0;
	}
	int err = check_name(lower, len, why);

	if (err)
		return err;
	memcpy(out->text, lower, len);
	out->text[len] = '\0';
	out->len = (uint8_t)len;
	out->kind = CRGW_HOST_NAME;
	memset(out->addr, 0, sizeof(out->addr));
	return 0;
}

static int parse_port(const char *s, size_t len, uint16_t *port, const char **why)
{
	unsigned v = 0;

	if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
		return fail(why, "port must be a decimal number from 1 to 65535");
	for (size_t i = 0; i < len; i++) {
		if (!is_digit(s[i]))
			return fail(why, "port must be a decimal number from 1 to 65535");
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return fail(why, "port must be a decimal number from 1 to 65535");
	*port = (uint16_t)v;
	return 0;
}

int crgw_hostport_parse(const char *in, size_t len, uint16_t default_port, struct crgw_host *host,
			uint16_t *port, const char **why)
{
	const char *colon;

	*port = default_port;
	if (len > 0 && in[0] == '[') {
		const char *close = memchr(in, ']', len);

		if (!close)
			return fail(why, "unterminated IPv6 literal");
		size_t hlen = (size_t)(close - in) + 1;

		if (hlen < len) {
			if (in[hlen] != ':')
				return fail(why, "expected ':' and a port after ']'");
			if (parse_port(in + hlen + 1, len - hlen - 1, port, why))
				return -ERANGE;
		}
		return crgw_host_parse(in, hlen, host, why);
	}
	colon = memchr(in, ':', len);
	/* More than one colon without brackets can only be a bare IPv6 address, never host:port. */
	if (colon && memchr(colon + 1, ':', len - (size_t)(colon - in) - 1))
		return crgw_host_parse(in, len, host, why);
	if (colon) {
		if (parse_port(colon + 1, len - (size_t)(colon - in) - 1, port, why))
			return -ERANGE;
		len = (size_t)(colon - in);
	}
	return crgw_host_parse(in, len, host, why);
}

/* ---- IPv4 addresses inside IPv6 addresses -------------------------------------------------------- */

static bool all_zero(const uint8_t *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i])
			return false;
	return true;
}

/*
 * Every form whose IPv4 address a packet can end up at: mapped (the socket speaks IPv4), translated by a
 * NAT64 or SIIT box, tunnelled by 6to4 or Teredo, or the deprecated compatible form some stacks still
 * tunnel. A checker that saw only the IPv6 address would let ::ffff:127.0.0.1 or 64:ff9b::a9fe:a9fe past
 * every IPv4 range it refuses.
 */
enum crgw_embed crgw_host_embedded_ipv4(const struct crgw_host *h, struct crgw_host *v4)
{
	static const uint8_t nat64[12] = { 0, 0x64, 0xff, 0x9b };
	const uint8_t *a = h->addr;
	enum crgw_embed form = CRGW_EMBED_NONE;
	uint8_t b[4];

	if (h->kind != CRGW_HOST_IPV6)
		return CRGW_EMBED_NONE;
	memcpy(b, a + 12, 4);
	if (is_v4_mapped(a)) {
		form = CRGW_EMBED_MAPPED;
	} else if (all_zero(a, 12)) {
		/* :: and ::1 are the unspecified and loopback addresses, not IPv4 0.0.0.0 and 0.0.0.1. */
		if (!all_zero(a + 12, 3) || a[15] > 1)
			form = CRGW_EMBED_COMPATIBLE;
	} else if (all_zero(a, 8) && a[8] == 0xff && a[9] == 0xff && a[10] == 0 && a[11] == 0) {
		form = CRGW_EMBED_TRANSLATED;
	} else if (memcmp(a, nat64, sizeof(nat64)) == 0) {
		form = CRGW_EMBED_NAT64;
	} else if (a[0] == 0x20 && a[1] == 0x02) {
		form = CRGW_EMBED_6TO4;
		memcpy(b, a + 2, 4);
	} else if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) {
		/* Teredo keeps the client's address inverted, so that NATs do not rewrite it in transit. */
		form = CRGW_EMBED_TEREDO;
		for (int i = 0; i < 4; i++)
			b[i] = (uint8_t)~b[i];
	}
	/* Copied out first: `v4` may be `h` itself. */
	if (form != CRGW_EMBED_NONE)
		set_ipv4(v4, b);
	return form;
}

const char *crgw_embed_str(enum crgw_embed form)
{
	switch (form) {
	case CRGW_EMBED_MAPPED: return "ipv4-mapped";
	case CRGW_EMBED_COMPATIBLE: return "ipv4-compatible";
	case CRGW_EMBED_TRANSLATED: return "ipv4-translated";
	case CRGW_EMBED_NAT64: return "nat64";
	case CRGW_EMBED_6TO4: return "6to4";
	case CRGW_EMBED_TEREDO: return "teredo";
	case CRGW_EMBED_NONE: break;
	}
	return NULL;
}
