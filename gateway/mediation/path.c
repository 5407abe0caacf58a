/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Canonical request paths for the mediation service. The path is decoded exactly once, and a request is
 * refused, not repaired, whenever its decoded form could mean something other than what a byte-by-byte
 * reading of it says: an upstream or a later decoding step must never see a different path than the router.
 */
#include <errno.h>
#include <string.h>

#include "hex.h"
#include "path.h"

static bool is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* A raw byte of the path, before decoding. */
static const char *raw_refused(unsigned char c)
{
	if (c == '\0')
		return "the path holds a NUL byte";
	if (is_ctl(c) || c == ' ')
		return "the path holds a control character or a space";
	if (c == '\\')
		return "the path holds a backslash";
	if (c == '#')
		return "the request target holds a fragment";
	/* RFC 3986: a path or a query holds these and percent escapes, nothing else, raw. */
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    strchr("-._~!$&'()*+,;=:@/?%", c))
		return NULL;
	return "the request target holds a character that must be percent-encoded";
}

/* A byte that an escape decoded to. */
static const char *decoded_refused(unsigned char c)
{
	switch (c) {
	case '\0': return "the path holds an encoded NUL (%00)";
	case '/': return "the path holds an encoded slash (%2F)";
	case '\\': return "the path holds an encoded backslash (%5C)";
	case '%': return "the path is encoded twice (%25)";
	case '?':
	case '#': return "the path holds an encoded '?' or '#'";
	case ' ': return "the path holds an encoded space";
	}
	if (is_ctl(c))
		return "the path holds an encoded control character";
	return NULL;
}

/*
 * Valid UTF-8 without overlong forms or surrogates: an overlong "%c0%ae" is a dot to some servers, and
 * refusing the malformed keeps every reader of the path agreeing on its bytes.
 */
static bool utf8_valid(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		size_t n;
		unsigned cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		if (len - i <= n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

/* Every segment of a decoded path that starts with '/': no empty one but the last, no "." or "..". */
static const char *segments_refused(const char *p, size_t len)
{
	size_t at = 1;

	while (at <= len) {
		const char *slash = memchr(p + at, '/', len - at);
		size_t end = slash ? (size_t)(slash - p) : len, n = end - at;

		if (n == 0 && slash)
			return "the path holds an empty segment (//)";
		if ((n == 1 && p[at] == '.') || (n == 2 && p[at] == '.' && p[at + 1] == '.'))
			return "the path holds a '.' or '..' segment";
		at = end + 1;
	}
	return NULL;
}

int med_path_canon(const char *target, size_t len, char *out, size_t outsz, size_t *out_len, const char **query,
		   size_t *qlen, const char **why)
{
	const char *q = memchr(target, '?', len);
	size_t plen = q ? (size_t)(q - target) : len, n = 0;

	*query = NULL;
	*qlen = 0;
	*out_len = 0;
	*why = NULL;
	if (len == 0 || target[0] != '/') {
		*why = "the request target must be a path (origin form)";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		if ((*why = raw_refused((unsigned char)target[i])))
			return -1;
	}
	for (size_t i = 0; i < plen; i++) {
		unsigned char c = (unsigned char)target[i];

		if (c == '%') {
			int hi = i + 2 < plen ? med_hexval(target[i + 1]) : -1;
			int lo = i + 2 < plen ? med_hexval(target[i + 2]) : -1;

			if (hi < 0 || lo < 0) {
				*why = "the path holds a malformed percent escape";
				return -1;
			}
			c = (unsigned char)(hi << 4 | lo);
			if ((*why = decoded_refused(c)))
				return -1;
			i += 2;
		}
		if (n + 1 >= outsz) {
			*why = "the path is too long";
			return -1;
		}
		out[n++] = (char)c;
	}
	out[n] = '\0';
	if (!utf8_valid((const unsigned char *)out, n)) {
		*why = "the path is not valid UTF-8";
		return -1;
	}
	if ((*why = segments_refused(out, n)))
		return -1;
	*out_len = n;
	if (q) {
		*query = q + 1;
		*qlen = len - plen - 1;
	}
	return 0;
}

bool med_path_take(const char **path, size_t *len, const char *prefix)
{
	size_t n = strlen(prefix);

	if (*len < n || memcmp(*path, prefix, n) || (*len > n && (*path)[n] != '/'))
		return false;
	*path += n;
	*len -= n;
	return true;
}

int med_path_segment(const char **path, size_t *len, const char **seg, size_t *seglen)
{
	const char *slash;
	size_t n;

	if (*len < 2 || (*path)[0] != '/')
		return -1;
	slash = memchr(*path + 1, '/', *len - 1);
	n = slash ? (size_t)(slash - *path) - 1 : *len - 1;
	if (n == 0)
		return -1;
	*seg = *path + 1;
	*seglen = n;
	*path += n + 1;
	*len -= n + 1;
	return 0;
}

int med_query_param(const char *query, size_t qlen, const char *name, char *out, size_t outsz, size_t *out_len)
{
	size_t nlen = strlen(name), at = 0;
	int found = -ENOENT;

	while (query && at <= qlen) {
		const char *amp = memchr(query + at, '&', qlen - at);
		size_t end = amp ? (size_t)(amp - query) : qlen;
		const char *pair = query + at;
		size_t plen = end - at;

		if (plen > nlen && !memcmp(pair, name, nlen) && pair[nlen] == '=') {
			size_t n = 0;

			if (found == 0)
				return -EINVAL; /* given twice: which one an upstream would read is anyone's guess */
			for (size_t i = nlen + 1; i < plen; i++) {
				unsigned char c = (unsigned char)pair[i];

				if (c == '%') {
					int hi = i + 2 < plen ? med_hexval(pair[i + 1]) : -1;
					int lo = i + 2 < plen ? med_hexval(pair[i + 2]) : -1;

					if (hi < 0 || lo < 0)
						return -EINVAL;
					c = (unsigned char)(hi << 4 | lo);
					i += 2;
				} else if (c == '+') {
					c = ' ';
				}
				if (is_ctl(c))
					return -EINVAL;
				if (n + 1 >= outsz)
					return -E2BIG;
				out[n++] = (char)c;
			}
			out[n] = '\0';
			if (out_len)
				*out_len = n;
			found = 0;
		} else if (plen == nlen && !memcmp(pair, name, nlen)) {
			return -EINVAL; /* a bare name: no value */
		}
		if (!amp)
			break;
		at = end + 1;
	}
	return found;
}
