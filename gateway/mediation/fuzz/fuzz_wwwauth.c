/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the WWW-Authenticate parser. The input is one header value. Accepted challenges must
 * be bounded, NUL-terminated and free of duplicate params; their canonical print must parse back to the same
 * print; a Bearer realm that passes its check must name a host and a port.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wwwauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct med_wwwauth *w)
{
	assert(w->n >= 1 && w->n <= MED_WWWAUTH_MAX_CHALLENGES);
	for (size_t i = 0; i < w->n; i++) {
		const struct med_wwwauth_challenge *c = &w->ch[i];

		assert(c->scheme && c->scheme[0]);
		assert(!(c->token68 && c->n_params));
		assert(!c->token68 || (c->token68[0] && strlen(c->token68) <= MED_WWWAUTH_MAX_VALUE));
		assert(c->n_params <= MED_WWWAUTH_MAX_PARAMS);
		assert(med_wwwauth_find(w, c->scheme) <= c);
		for (size_t k = 0; k < c->n_params; k++) {
			const struct med_wwwauth_param *p = &c->params[k];

			assert(p->name[0] && p->value);
			assert(strlen(p->value) == p->value_len && p->value_len <= MED_WWWAUTH_MAX_VALUE);
			for (size_t j = 0; j < p->value_len; j++)
				assert(((unsigned char)p->value[j] >= 0x20 && (unsigned char)p->value[j] < 0x7f) ||
				       p->value[j] == '\t');
			for (size_t j = 0; j < k; j++)
				assert(strcasecmp(c->params[j].name, p->name));
			assert(med_wwwauth_param(c, p->name) == p->value);
		}

		struct med_wwwauth_bearer b;
		const char *why = NULL;
		int err = med_wwwauth_bearer(c, &b, &why);

		assert(err == 0 || (err == -EBADMSG && why && !b.realm));
		if (!err) {
			assert(!strncasecmp(c->scheme, "bearer", 7) && b.realm && !strncasecmp(b.realm, "https://", 8));
			assert(b.host[0] && strlen(b.host) < sizeof(b.host) && b.port >= 1);
			assert(!strchr(b.realm, '#'));
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char out[65536], out2[65536];
	struct med_wwwauth w, again;
	const char *why = "unset";
	size_t n = 0, n2 = 0;
	int err = med_wwwauth_parse((const char *)data, size, &w, &why);

	assert(err == 0 || err == -EBADMSG || err == -E2BIG || err == -ENOMEM);
	assert(err ? (why && why[0] && w.n == 0) : !why);
	if (size > MED_WWWAUTH_MAX_HEADER)
		assert(err == -E2BIG);
	if (err)
		return 0;
	check(&w);
	/* Printing adds at most a few bytes per byte parsed, so 64 KiB always holds it. */
	assert(!med_wwwauth_print(&w, out, sizeof(out), &n) && out[n] == '\0' && strlen(out) == n);
	if (n <= MED_WWWAUTH_MAX_HEADER) {
		err = med_wwwauth_parse(out, n, &again, &why);
		assert(!err);
		assert(again.n == w.n);
		assert(!med_wwwauth_print(&again, out2, sizeof(out2), &n2) && n2 == n && !memcmp(out, out2, n));
		med_wwwauth_free(&again);
	}
	med_wwwauth_free(&w);
	med_wwwauth_free(&w);
	return 0;
}
