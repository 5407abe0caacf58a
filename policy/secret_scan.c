/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recognizes strings that look like credentials. A policy lives in a repository that sandboxes and
 * reviewers read, so a token pasted into it is a leak; the compiler refuses the file instead.
 */
#include <math.h>
#include <string.h>

#include "secret_scan.h"

static bool is_alnum(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_token_char(char c)
{
	return is_alnum(c) || c == '_' || c == '-' || c == '+' || c == '/' || c == '=' || c == '.';
}

/* Length of the run of characters a token's tail is made of, starting at s[i]. */
static size_t tail_run(const char *s, size_t len, size_t i)
{
	size_t n = 0;

	while (i + n < len && (is_alnum(s[i + n]) || s[i + n] == '_' || s[i + n] == '-'))
		n++;
	return n;
}

/* Length of the run of token characters starting at s[i]. */
static size_t token_run(const char *s, size_t len, size_t i)
{
	size_t n = 0;

	while (i + n < len && is_token_char(s[i + n]))
		n++;
	return n;
}

struct prefix_rule {
	const char *prefix;
	size_t min_tail; /* token characters that must follow */
	const char *kind;
};

/* Published formats of common credentials; a prefix alone is not enough, a token tail must follow. */
static const struct prefix_rule prefixes[] = {
	{ "ghp_", 30, "GitHub token" },
	{ "gho_", 30, "GitHub token" },
	{ "ghu_", 30, "GitHub token" },
	{ "ghs_", 30, "GitHub token" },
	{ "ghr_", 30, "GitHub token" },
	{ "github_pat_", 22, "GitHub token" },
	{ "glpat-", 20, "GitLab token" },
	{ "xoxb-", 10, "Slack token" },
	{ "xoxp-", 10, "Slack token" },
	{ "xoxa-", 10, "Slack token" },
	{ "xoxs-", 10, "Slack token" },
	{ "AKIA", 16, "AWS access key" },
	{ "ASIA", 16, "AWS access key" },
	{ "sk_live_", 16, "API secret key" },
	{ "rk_live_", 16, "API secret key" },
	{ "sk-", 20, "API secret key" },
	{ "npm_", 36, "npm token" },
	{ "pypi-", 50, "PyPI token" },
	{ "AIza", 30, "API key" },
};

static double entropy_bits(const char *s, size_t len)
{
	unsigned counts[256] = { 0 };
	double h = 0;

	for (size_t i = 0; i < len; i++)
		counts[(unsigned char)s[i]]++;
	for (unsigned i = 0; i < 256; i++) {
		if (!counts[i])
			continue;
		double p = (double)counts[i] / (double)len;

		h -= p * log2(p);
	}
	return h;
}

/*
 * A long run mixing upper case, lower case and digits with high entropy reads as a random secret.
 * Digests (lowercase hex) and ordinary words do not mix all three classes, so they pass.
 */
static bool random_looking(const char *s, size_t len)
{
	bool upper = false, lower = false, digit = false;

	if (len < 32)
		return false;
	for (size_t i = 0; i < len; i++) {
		upper |= s[i] >= 'A' && s[i] <= 'Z';
		lower |= s[i] >= 'a' && s[i] <= 'z';
		digit |= s[i] >= '0' && s[i] <= '9';
	}
	return upper && lower && digit && entropy_bits(s, len) >= 4.0;
}

static bool starts_word(const char *s, size_t i)
{
	return i == 0 || !is_token_char(s[i - 1]);
}

const char *secret_scan(const char *s, size_t len)
{
	if (memmem(s, len, "PRIVATE KEY", 11) && memmem(s, len, "-----BEGIN", 10))
		return "private key";

	for (size_t i = 0; i < len; i++) {
		if (!starts_word(s, i))
			continue;
		for (size_t r = 0; r < sizeof(prefixes) / sizeof(prefixes[0]); r++) {
			size_t plen = strlen(prefixes[r].prefix);

			if (len - i >= plen && memcmp(s + i, prefixes[r].prefix, plen) == 0 &&
			    tail_run(s, len, i + plen) >= prefixes[r].min_tail)
				return prefixes[r].kind;
		}
		/* JSON Web Tokens: base64url of '{"' opens both header and payload. */
		if (len - i > 20 && memcmp(s + i, "eyJ", 3) == 0) {
			const char *dot = memchr(s + i, '.', len - i);

			if (dot && (size_t)(dot - s) + 4 < len && memcmp(dot + 1, "eyJ", 3) == 0)
				return "JSON Web Token";
		}
		size_t run = token_run(s, len, i);

		if (run && random_looking(s + i, run))
			return "random-looking token";
		if (run)
			i += run - 1;
	}
	/* Credentials in a URL: scheme://user:password@host. */
	const char *scheme = memmem(s, len, "://", 3);

	if (scheme) {
		const char *start = scheme + 3, *end = s + len;
		const char *slash = memchr(start, '/', (size_t)(end - start));
		const char *at = memchr(start, '@', (size_t)((slash ? slash : end) - start));

		if (at && memchr(start, ':', (size_t)(at - start)))
			return "password in a URL";
	}
	/* An Authorization-style value with a literal credential instead of the {secret} placeholder. */
	static const char *const schemes[] = { "Bearer ", "Basic ", "token " };

	for (size_t k = 0; k < sizeof(schemes) / sizeof(schemes[0]); k++) {
		size_t slen = strlen(schemes[k]);
		const char *p = memmem(s, len, schemes[k], slen);

		if (p && token_run(s, len, (size_t)(p - s) + slen) >= 16)
			return "credential in a header value";
	}
	return NULL;
}
