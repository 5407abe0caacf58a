/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The explicit proxy's request-head parser: incremental, bounded, llhttp in strict mode underneath. No
 * I/O, so the fuzzer drives exactly what the proxy runs.
 */
#ifndef CRGW_GATEWAY_CONNECT_REQUEST_H
#define CRGW_GATEWAY_CONNECT_REQUEST_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>

#define CRGW_CONNECT_AUTHORITY_MAX 300

struct crgw_connect_parser {
	llhttp_t http;
	llhttp_settings_t settings;
	char authority[CRGW_CONNECT_AUTHORITY_MAX]; /* the request target, NUL-terminated */
	size_t authority_len;
	bool authority_too_long;
	int state; /* 0 running, else the sticky result */
};

/* Prepares `cp` (caller owned; it must not move while in use: llhttp keeps a pointer to its settings). */
void crgw_connect_parser_init(struct crgw_connect_parser *cp);

/*
 * Feeds the next `len` bytes of the stream (borrowed). Returns -EAGAIN while the head is incomplete; 0 for a
 * complete `CONNECT` head, with `*used` the bytes of this chunk that belong to the head (the rest are the
 * tunnel's first bytes); -EOPNOTSUPP for a complete head with another method; -ENAMETOOLONG for a request
 * target over CRGW_CONNECT_AUTHORITY_MAX - 1 bytes; -EBADMSG for anything malformed. Once it has returned
 * something other than -EAGAIN it returns the same for every later call. The caller bounds the head's size.
 */
int crgw_connect_parser_feed(struct crgw_connect_parser *cp, const char *data, size_t len, size_t *used);

#endif
