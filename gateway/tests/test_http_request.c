/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The proxies' request parser: what it accepts, every ambiguity it must refuse (the request smuggling
 * catalogue), heads split at every byte, chunked bodies, and absolute-form targets.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "http_request.h"
#include "tap.h"

struct head_case {
	const char *name;
	const char *head;
	size_t len; /* 0: strlen */
	int want;   /* 0, -EAGAIN, -EBADMSG, -E2BIG */
	const char *error; /* substring of hp.error for -EBADMSG */
};

static const struct head_case heads[] = {
	{ "origin-form GET", "GET /a?b HTTP/1.1\r\nHost: a.test\r\n\r\n", 0, 0, NULL },
	{ "absolute-form GET", "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n", 0, 0, NULL },
	{ "HTTP/1.0 without Host", "GET http://a.test/ HTTP/1.0\r\n\r\n", 0, 0, NULL },
	{ "CONNECT", "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n", 0, 0, NULL },
	{ "incomplete head", "GET / HTTP/1.1\r\nHost: a\r\n", 0, -EAGAIN, NULL },
	{ "CL and TE together", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
	  0, -EBADMSG, "Content-Length" },
	{ "TE and CL together", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
	  0, -EBADMSG, "Content-Length" },
	{ "duplicate Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 0,
	  -EBADMSG, "Duplicate Content-Length" },
	{ "Content-Length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 0, -EBADMSG,
	  "Content-Length" },
	{ "signed Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 0, -EBADMSG,
	  "Content-Length" },
	{ "obsolete line folding", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 0, -EBADMSG, "folding" },
	{ "folding with a tab", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 0, -EBADMSG, "folding" },
	{ "bare CR", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 0, -EBADMSG, "bare CR" },
	{ "bare LF", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 0, -EBADMSG, "bare LF" },
	{ "LF-only head", "GET / HTTP/1.1\nHost: a\n\n", 0, -EBADMSG, "bare LF" },
	{ "NUL in a value", "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n", 29, -EBADMSG, "NUL" },
	{ "space inside a name", "GET / HTTP/1.1\r\nHo st: a\r\n\r\n", 0, -EBADMSG, "field name" },
	{ "space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0, -EBADMSG, "field name" },
	{ "empty name", "GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", 0, -EBADMSG, "field name" },
	{ "name with a slash", "GET / HTTP/1.1\r\nHost: a\r\nX/Y: 1\r\n\r\n", 0, -EBADMSG, "field name" },
	{ "line without a colon", "GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n", 0, -EBADMSG, NULL },
	{ "two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0, -EBADMSG, "more than one Host" },
	{ "Connection naming Content-Length",
	  "POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\n", 0, -EBADMSG,
	  "Connection names" },
	{ "Connection naming Transfer-Encoding among others",
	  "POST / HTTP/1.1\r\nHost: a\r\nConnection: close ,\ttransfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
	  0, -EBADMSG, "Connection names" },
	{ "Connection naming Host", "GET / HTTP/1.1\r\nHost: a\r\nConnection: HOST\r\n\r\n", 0, -EBADMSG,
	  "Connection names" },
	{ "Connection naming other fields", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Host, Hosts\r\n\r\n",
	  0, 0, NULL },
	{ "HTTP/1.1 without Host", "GET / HTTP/1.1\r\nX: 1\r\n\r\n", 0, -EBADMSG, "without Host" },
	{ "Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
	  -EBADMSG, "Transfer-Encoding in an HTTP/1.0 request" },
	{ "HTTP/2.0 in a 1.x head", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 0, -EBADMSG, "version" },
	{ "HTTP/0.9", "GET /\r\n\r\n", 0, -EBADMSG, NULL },
	{ "Transfer-Encoding gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 0, -EBADMSG,
	  "Transfer-Encoding" },
	{ "chunked not last", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 0, -EBADMSG,
	  "Transfer-Encoding" },
	{ "control byte in the target", "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 0, -EBADMSG, NULL },
	{ "DEL in a value", "GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n", 0, -EBADMSG, NULL },
	{ "leading empty line", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, -EBADMSG, "not an HTTP request" },
	{ "lower-case method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", 0, -EBADMSG, "not an HTTP request" },
	{ "binary", "\x16\x03\x01\x02\x00", 5, -EBADMSG, "not an HTTP request" },
};

static void test_heads(void)
{
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		const struct head_case *c = &heads[i];
		size_t len = c->len ? c->len : strlen(c->head);
		struct crgw_http_parser hp;
		int r;

		crgw_http_parser_init(&hp);
		r = crgw_http_parse_head(&hp, c->head, len);
		tap_result(r == c->want && (!c->error || (hp.error && strstr(hp.error, c->error))),
			   "%s: got %d (%s), want %d", c->name, r, hp.error ? hp.error : "-", c->want);
		/* The same bytes one at a time must give the same answer. */
		crgw_http_parser_init(&hp);
		r = -EAGAIN;
		for (size_t n = 1; n <= len && r == -EAGAIN; n++)
			r = crgw_http_parse_head(&hp, c->head, n);
		tap_result(r == c->want, "%s, byte by byte: got %d, want %d", c->name, r, c->want);
	}
}

static void test_fields(void)
{
	static const char head[] = "POST http://a.test:8080/p?q HTTP/1.1\r\nHost:  a.test:8080 \r\n"
				   "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nContent-Length: 12\r\nX-Empty:\r\n\r\nbody";
	struct crgw_http_parser hp;
	const struct crgw_http_request *r = &hp.req;
	struct crgw_http_span auth, path;
	const char *why = NULL;

	crgw_http_parser_init(&hp);
	tap_result(crgw_http_parse_head(&hp, head, sizeof(head) - 1) == 0, "a full head parses");
	tap_result(r->head_len == sizeof(head) - 1 - 4, "the head ends before the body (%zu)", r->head_len);
	tap_result(r->method == HTTP_POST && r->method_text.len == 4, "method POST");
	tap_result(r->content_length == 12 && !r->chunked && r->keep_alive, "framing: 12 bytes, kept alive");
	tap_result(r->nfields == 5, "five fields (%u)", r->nfields);
	tap_result(r->host.len == 11 && memcmp(head + r->host.off, "a.test:8080", 11) == 0,
		   "Host without surrounding spaces");
	tap_result(r->fields[4].value.len == 0 && crgw_http_field_is(head, r->fields[4].name, "x-empty"),
		   "an empty value is a field of its own");
	tap_result(crgw_http_absolute_target(head + r->target.off, r->target.len, &auth, &path, &why) == 0 &&
			   auth.len == 11 && path.len == 4 && memcmp(head + r->target.off + path.off, "/p?q", 4) == 0,
		   "absolute-form splits into authority and path");
}

struct target_case {
	const char *target;
	int want;
};

static void test_targets(void)
{
	static const struct target_case cases[] = {
		{ "/x", -ENOENT },	     { "*", -ENOENT },
		{ "http://a.test", 0 },	     { "HTTP://A.test:81/x", 0 },
		{ "https://a.test/", -EINVAL }, { "ftp://a.test/", -EINVAL },
		{ "http://u@a.test/", -EINVAL }, { "http:///x", -EINVAL },
		{ "http://a.test/#f", -EINVAL }, { "a.test:80", -EINVAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct crgw_http_span a, p;
		const char *why = NULL;
		int r = crgw_http_absolute_target(cases[i].target, strlen(cases[i].target), &a, &p, &why);

		tap_result(r == cases[i].want, "target %s: %d (%s)", cases[i].target, r, why ? why : "-");
	}
}

static void test_chunked(void)
{
	static const char msg[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
				  "5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\nGET /next HTTP/1.1\r\n";
	static const char bad[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
	static const char huge[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
				   "fffffffffffffffffff\r\n";
	struct crgw_http_parser hp;
	size_t used = 0, total = 0;
	const char *body;
	size_t blen;
	int r = -EAGAIN;

	crgw_http_parser_init(&hp);
	tap_result(crgw_http_parse_head(&hp, msg, sizeof(msg) - 1) == 0 && hp.req.chunked, "chunked head");
	body = msg + hp.req.head_len;
	blen = sizeof(msg) - 1 - hp.req.head_len;
	for (size_t i = 0; i < blen && r == -EAGAIN; i++) {
		r = crgw_http_parse_body(&hp, body + i, 1, &used);
		total += used;
	}
	tap_result(r == 0 && total == blen - strlen("GET /next HTTP/1.1\r\n"),
		   "a chunked body fed byte by byte ends at its last CRLF (%zu)", total);

	crgw_http_parser_init(&hp);
	crgw_http_parse_head(&hp, bad, sizeof(bad) - 1);
	r = crgw_http_parse_body(&hp, bad + hp.req.head_len, sizeof(bad) - 1 - hp.req.head_len, &used);
	tap_result(r == -EBADMSG, "a chunk size that is not hex is refused (%s)", hp.error ? hp.error : "-");
	crgw_http_parser_init(&hp);
	crgw_http_parse_head(&hp, huge, sizeof(huge) - 1);
	r = crgw_http_parse_body(&hp, huge + hp.req.head_len, sizeof(huge) - 1 - hp.req.head_len, &used);
	tap_result(r == -EBADMSG, "a chunk size that overflows is refused (%s)", hp.error ? hp.error : "-");
}

static void test_limits(void)
{
	static char big[CRGW_HTTP_HEAD_MAX + 64];
	struct crgw_http_parser hp;
	size_t n = 0;
	int r;

	n += (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\n");
	while (n + 12 < sizeof(big))
		n += (size_t)snprintf(big + n, sizeof(big) - n, "X: 1234567\r\n");
	crgw_http_parser_init(&hp);
	r = crgw_http_parse_head(&hp, big, n);
	tap_result(r == -E2BIG, "a head over 16 KiB is refused (%d)", r);

	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\n");
	for (unsigned i = 0; i < CRGW_HTTP_FIELDS_MAX; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "X: 1\r\n");
	n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
	crgw_http_parser_init(&hp);
	r = crgw_http_parse_head(&hp, big, n);
	tap_result(r == -EBADMSG && hp.error && strstr(hp.error, "too many"), "over %u fields are refused",
		   CRGW_HTTP_FIELDS_MAX);
}

int main(void)
{
	test_heads();
	test_fields();
	test_targets();
	test_chunked();
	test_limits();
	return tap_done();
}
