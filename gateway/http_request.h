/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The proxies' HTTP/1.x request parser: llhttp in strict mode, plus the checks llhttp leaves to its caller
 * (obsolete line folding, header names that are not tokens, HTTP versions other than 1.0/1.1, Host
 * missing or repeated). Bounded and without I/O, so the fuzzer drives exactly what the proxies run.
 *
 * A request is parsed in two steps: its head, once the whole head has arrived, then, for a chunked body
 * only, the body as it streams (to find where the message ends). A Content-Length body needs no parser:
 * the caller moves exactly that many bytes.
 */
#ifndef CRGW_GATEWAY_HTTP_REQUEST_H
#define CRGW_GATEWAY_HTTP_REQUEST_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRGW_HTTP_HEAD_MAX 16384
#define CRGW_HTTP_FIELDS_MAX 100

/* A run of bytes inside the head, by offset from its first byte. */
struct crgw_http_span {
	uint32_t off, len;
};

struct crgw_http_field {
	struct crgw_http_span name, value; /* value without surrounding whitespace */
};

struct crgw_http_request {
	size_t head_len; /* bytes of the head, its final empty line included */
	llhttp_method_t method;
	uint8_t minor; /* HTTP/1.minor: 0 or 1 */
	struct crgw_http_span method_text, target;
	struct crgw_http_span host; /* the Host field's value; len 0 when there is none */
	struct crgw_http_field fields[CRGW_HTTP_FIELDS_MAX];
	unsigned nfields;
	bool keep_alive; /* the client wants the connection kept after this request */
	bool chunked;    /* the body is chunked: crgw_http_parse_body finds its end */
	bool upgrade;    /* the client asked to switch protocols (Connection: upgrade) */
	uint64_t content_length; /* body bytes when neither chunked nor CONNECT; 0 for none */
};

struct crgw_http_parser {
	llhttp_t http;
	llhttp_settings_t settings;
	const char *base; /* the head being parsed (borrowed, during a call only) */
	struct crgw_http_request req;
	size_t scanned;      /* bytes of the head already checked */
	bool in_name;        /* the last field callback was for a name: its next piece extends it */
	bool message_done;   /* llhttp saw the end of the message */
	bool too_many_fields;
	const char *error; /* why the last call failed (static text, for the audit detail) */
	/* When set, crgw_http_parse_body hands over a chunked body's data, without its framing. */
	void (*on_body)(void *arg, const char *data, size_t len);
	void *body_arg;
};

/* Prepares `hp` (caller owned; it must not move while in use: llhttp keeps a pointer to its settings). */
void crgw_http_parser_init(struct crgw_http_parser *hp);

/*
 * Parses the request head at the start of `buf` (borrowed), of which `len` bytes have arrived. Call it again
 * with the same start and a larger `len` as bytes arrive: earlier bytes are not scanned twice. Returns
 * -EAGAIN while the head is incomplete (the caller bounds it at CRGW_HTTP_HEAD_MAX: -E2BIG past that); 0
 * with `hp->req` filled (offsets relative to `buf`); -EBADMSG with `hp->error` for anything malformed or
 * ambiguous. The body, if any, starts at `buf + hp->req.head_len`.
 */
int crgw_http_parse_head(struct crgw_http_parser *hp, const char *buf, size_t len);

/*
 * For a chunked body: feeds the next `len` body bytes. Returns -EAGAIN when all were used and the body goes
 * on; 0 when the message ended after `*used` bytes; -EBADMSG with `hp->error` for a malformed chunk.
 */
int crgw_http_parse_body(struct crgw_http_parser *hp, const char *data, size_t len, size_t *used);

/*
 * The origin-form target for the upstream and the authority the request names, from an absolute-form
 * target ("http://host[:port]/path?query"). Returns 0, or -EINVAL with `*why` for another scheme, user
 * information, or a malformed URI. For origin-form ("/path") returns -ENOENT.
 */
int crgw_http_absolute_target(const char *target, size_t len, struct crgw_http_span *authority,
			      struct crgw_http_span *path, const char **why);

/* Whether the field name at `span` of `base` is `name` (ASCII case-insensitive). */
bool crgw_http_field_is(const char *base, struct crgw_http_span span, const char *name);

/* Whether a Connection field of `r` (its head at `base`) lists the token `name` (`len` bytes; any case). */
bool crgw_http_connection_lists(const char *base, const struct crgw_http_request *r, const char *name, size_t len);

#endif
