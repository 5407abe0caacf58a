/* SPDX-License-Identifier: Apache-2.0 */
/* Parses and prints host patterns; shared by the compiler and the loader so both read patterns alike. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "pattern.h"

static int fail(const char **why, const char *text)
{
	if (why)
		*why = text;
	return -EINVAL;
}

unsigned host_bits(enum crgw_host_kind kind)
{
	return kind == CRGW_HOST_IPV4 ? 32 : kind == CRGW_HOST_IPV6 ? 128 : 0;
}

bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	unsigned bytes = prefix / 8, bits = prefix % 8;

	if (memcmp(a, b, bytes) != 0)
		return false;
	if (bits == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - bits));

	return (a[bytes] & mask) == (b[bytes] & mask);
}

static int parse_prefix(const char *s, size_t len, unsigned *out)
{
	unsigned v = 0;

	if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return 0;
}

static int parse_cidr(const char *text, size_t len, const char *slash, struct pattern *out, const char **why)
{
	size_t alen = (size_t)(slash - text);
	bool v6_written = memchr(text, ':', alen) != NULL;
	unsigned prefix;

	/* "https://name/...": not a network; the host parser names a URL for what it is. */
	if (alen > 0 && text[alen - 1] == ':' && len > alen + 1 && slash[1] == '/')
		return crgw_host_parse(text, len, &out->host, why) ? -EINVAL : fail(why, "a URL, not a host");
	if (crgw_host_parse(text, alen, &out->host, why) != 0)
		return -EINVAL;
	if (out->host.kind == CRGW_HOST_NAME)
		return fail(why, "a CIDR rule needs an IP address before '/'");
	if (parse_prefix(slash + 1, len - alen - 1, &prefix) != 0)
		return fail(why, "prefix length must be a decimal number");
	/* An IPv4-mapped network written in IPv6 counts its prefix from the mapped IPv4 address. */
	if (v6_written && out->host.kind == CRGW_HOST_IPV4) {
		if (prefix < 96 || prefix > 128)
			return fail(why, "an IPv4-mapped network needs a prefix of 96 to 128");
		prefix -= 96;
	}
	if (prefix > host_bits(out->host.kind))
		return fail(why, "prefix length too large for the address family");
	uint8_t masked[16];

	memcpy(masked, out->host.addr, 16);
	for (unsigned bit = prefix; bit < host_bits(out->host.kind); bit++)
		masked[bit / 8] &= (uint8_t)~(0x80 >> (bit % 8));
	if (memcmp(masked, out->host.addr, 16) != 0)
		return fail(why, "address has bits set beyond the prefix length");
	out->kind = PATTERN_CIDR;
	out->prefix = prefix;
	return 0;
}

int pattern_parse(const char *text, size_t len, struct pattern *out, const char **why)
{
	const char *slash = memchr(text, '/', len);

	memset(out, 0, sizeof(*out));
	if (slash)
		return parse_cidr(text, len, slash, out, why);

	size_t skip = 0;

	if (len >= 3 && memcmp(text, "**.", 3) == 0) {
		out->kind = PATTERN_WILD_MANY;
		skip = 3;
	} else if (len >= 2 && memcmp(text, "*.", 2) == 0) {
		out->kind = PATTERN_WILD_ONE;
		skip = 2;
	} else {
		out->kind = PATTERN_NAME;
	}
	if (memchr(text + skip, '*', len - skip))
		return fail(why, "a wildcard must be the whole left-most label: '*.example.com' or '**.example.com'");
	if (crgw_host_parse(text + skip, len - skip, &out->host, why) != 0)
		return -EINVAL;
	if (out->host.kind != CRGW_HOST_NAME) {
		if (skip)
			return fail(why, "wildcards apply to names, not IP addresses");
		out->kind = PATTERN_CIDR;
		out->prefix = host_bits(out->host.kind);
	}
	return 0;
}

int pattern_check_allow(const struct pattern *p, const char **why)
{
	if ((p->kind == PATTERN_WILD_ONE || p->kind == PATTERN_WILD_MANY) && !memchr(p->host.text, '.', p->host.len))
		return fail(why, "an allow wildcard needs at least two labels after the wildcard");
	return 0;
}

void pattern_format(const struct pattern *p, char *buf, size_t size)
{
	switch (p->kind) {
	case PATTERN_NAME:
		snprintf(buf, size, "%s", p->host.text);
		break;
	case PATTERN_WILD_ONE:
		snprintf(buf, size, "*.%s", p->host.text);
		break;
	case PATTERN_WILD_MANY:
		snprintf(buf, size, "**.%s", p->host.text);
		break;
	case PATTERN_CIDR:
		if (p->prefix == host_bits(p->host.kind))
			snprintf(buf, size, "%s", p->host.text);
		else
			snprintf(buf, size, "%s/%u", p->host.text, p->prefix);
		break;
	}
}
