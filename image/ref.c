/* SPDX-License-Identifier: Apache-2.0 */
/* Image references: "HOST[:PORT]/NAME[:TAG][@sha256:HEX]", parsed strictly, the registry always named. */
#include <errno.h>
#include <string.h>

#include "image_priv.h"

static bool lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* One repository component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* (the distribution spec's grammar). */
static bool component_valid(const char *s, size_t n)
{
	size_t i = 0;

	if (!n || !lower_alnum(s[0]) || !lower_alnum(s[n - 1]))
		return false;
	while (i < n) {
		if (lower_alnum(s[i])) {
			i++;
			continue;
		}
		if (s[i] == '.' || (s[i] == '_' && (i + 1 >= n || s[i + 1] != '_'))) {
			i++;
		} else if (s[i] == '_') {
			i += 2;
		} else if (s[i] == '-') {
			while (i < n && s[i] == '-')
				i++;
		} else {
			return false;
		}
		if (i >= n || !lower_alnum(s[i]))
			return false;
	}
	return true;
}

static bool host_valid(const char *s, size_t n)
{
	size_t colon = n;

	if (!n || n > 255)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == ':') {
			if (colon != n)
				return false;
			colon = i;
		} else if (!(lower_alnum(c) || (c >= 'A' && c <= 'Z') || c == '.' || c == '-')) {
			return false;
		}
	}
	if (colon == 0 || s[0] == '.' || s[0] == '-')
		return false;
	if (colon != n) {
		size_t digits = n - colon - 1;
		unsigned port = 0;

		if (!digits || digits > 5)
			return false;
		for (size_t i = colon + 1; i < n; i++) {
			if (s[i] < '0' || s[i] > '9')
				return false;
			port = port * 10 + (unsigned)(s[i] - '0');
		}
		if (!port || port > 65535)
			return false;
	}
	return true;
}

int img_ref_parse(const char *s, struct img_ref *out, const char **why)
{
	const char *at, *slash, *name, *end, *colon;
	size_t hn, nn;

	memset(out, 0, sizeof(*out));
	if (!s || strlen(s) > 1024)
		return *why = "reference too long", -EINVAL;
	slash = strchr(s, '/');
	if (!slash)
		return *why = "name the registry: HOST/NAME@sha256:...", -EINVAL;
	hn = (size_t)(slash - s);
	/* The first component is a registry only when it looks like one: no implicit default registry. */
	if (!(memchr(s, '.', hn) || memchr(s, ':', hn) || (hn == 9 && !strncmp(s, "localhost", 9))))
		return *why = "name the registry: HOST/NAME@sha256:... (the first component is not a host)", -EINVAL;
	if (!host_valid(s, hn))
		return *why = "malformed registry host", -EINVAL;
	memcpy(out->host, s, hn);

	name = slash + 1;
	at = strchr(name, '@');
	end = at ? at : name + strlen(name);
	if (at) {
		if (!img_digest_valid(at + 1))
			return *why = "a digest must be sha256: and 64 lower-case hex digits", -EINVAL;
		memcpy(out->digest, at + 1, CRGW_IMAGE_ID_LEN);
	}
	/* A tag follows the last ':' after the last '/'. */
	colon = NULL;
	for (const char *p = end; p > name; p--) {
		if (p[-1] == '/')
			break;
		if (p[-1] == ':') {
			colon = p - 1;
			break;
		}
	}
	if (colon) {
		size_t tn = (size_t)(end - colon - 1);

		if (!tn || tn > 128)
			return *why = "malformed tag", -EINVAL;
		for (size_t i = 0; i < tn; i++) {
			char c = colon[1 + i];

			if (!(lower_alnum(c) || (c >= 'A' && c <= 'Z') || c == '_' || (i && (c == '.' || c == '-'))))
				return *why = "malformed tag", -EINVAL;
		}
		memcpy(out->tag, colon + 1, tn);
		end = colon;
	}
	nn = (size_t)(end - name);
	if (!nn || nn > 255)
		return *why = "malformed repository name", -EINVAL;
	for (const char *p = name; p < end;) {
		const char *q = memchr(p, '/', (size_t)(end - p));
		size_t cn = q ? (size_t)(q - p) : (size_t)(end - p);

		if (!component_valid(p, cn))
			return *why = "malformed repository name", -EINVAL;
		p += cn + (q ? 1 : 0);
		if (q && p == end)
			return *why = "malformed repository name", -EINVAL;
	}
	memcpy(out->name, name, nn);
	if (!out->tag[0] && !out->digest[0])
		return *why = "no tag and no digest", -EINVAL;
	return 0;
}
