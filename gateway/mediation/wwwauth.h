/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A strict parser of upstream `WWW-Authenticate` challenges (RFC 9110 section 11.6.1), for the registry
 * client's token flow, and a check of a Bearer challenge's realm before anything connects to it. No I/O.
 */
#ifndef CRGW_MEDIATION_WWWAUTH_H
#define CRGW_MEDIATION_WWWAUTH_H

#include <stddef.h>
#include <stdint.h>

#define MED_WWWAUTH_MAX_HEADER 16384 /* bytes of one header value */
#define MED_WWWAUTH_MAX_CHALLENGES 16
#define MED_WWWAUTH_MAX_PARAMS 32 /* per challenge */
#define MED_WWWAUTH_MAX_VALUE 4096 /* bytes of a token68 or a value, after unescaping */

struct med_wwwauth_param {
	char *name; /* as sent; compare with strcasecmp */
	char *value; /* unescaped, NUL-terminated; never holds NUL or control bytes */
	size_t value_len;
};

struct med_wwwauth_challenge {
	char *scheme; /* as sent; compare with strcasecmp */
	char *token68; /* NULL unless the challenge carries a token68 (then n_params is 0) */
	struct med_wwwauth_param params[MED_WWWAUTH_MAX_PARAMS];
	size_t n_params;
};

/* Every string is owned by the struct and freed by med_wwwauth_free(). */
struct med_wwwauth {
	struct med_wwwauth_challenge ch[MED_WWWAUTH_MAX_CHALLENGES];
	size_t n;
};

/*
 * Parses one header value (`len` bytes, borrowed, untrusted, not NUL-terminated) into `out`, which the call
 * initializes. 0; -EBADMSG when malformed, -E2BIG past a bound above, -ENOMEM; on failure `out` is empty
 * and `*why` (may be NULL) points to a static string saying what was refused.
 */
int med_wwwauth_parse(const char *hdr, size_t len, struct med_wwwauth *out, const char **why);

/* Frees every string of `w` and empties it. Safe on a zeroed struct and twice. */
void med_wwwauth_free(struct med_wwwauth *w);

/* The first challenge whose scheme is `scheme` (any case), borrowed from `w`; NULL when none. */
const struct med_wwwauth_challenge *med_wwwauth_find(const struct med_wwwauth *w, const char *scheme);

/* The value of param `name` (any case) in `c`, borrowed; NULL when absent. */
const char *med_wwwauth_param(const struct med_wwwauth_challenge *c, const char *name);

/*
 * Prints `w` canonically (`Scheme token68` or `Scheme name=value, name="quoted value"`, challenges joined by
 * ", ") into `out` (NUL-terminated, `*out_len` bytes). Parsing what it prints gives the same challenges.
 * 0, or -E2BIG when `outsz` is too small.
 */
int med_wwwauth_print(const struct med_wwwauth *w, char *out, size_t outsz, size_t *out_len);

/* A Bearer challenge checked for the token flow. Pointers are borrowed from the challenge. */
struct med_wwwauth_bearer {
	const char *realm; /* the whole URL, as sent */
	const char *service; /* NULL when absent */
	const char *scope; /* NULL when absent */
	char host[256]; /* the realm's host, lower case; an IPv6 literal without its brackets */
	uint16_t port; /* 443 unless the realm names one */
};

/*
 * Checks that `c` is a Bearer challenge with auth-params whose `realm` is an absolute `https://` URL with a
 * host, no userinfo, no fragment and a port in 1-65535, and fills `out`, so the caller can check the host
 * against the policy before connecting. 0, or -EBADMSG with `*why` (may be NULL) static.
 */
int med_wwwauth_bearer(const struct med_wwwauth_challenge *c, struct med_wwwauth_bearer *out, const char **why);

#endif
