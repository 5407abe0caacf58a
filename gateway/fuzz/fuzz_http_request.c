/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the proxies' request path: the head parser fed in two pieces split where the input
 * says, which must agree with one piece; then the target and Host through the URL and host:port parsers;
 * then, for an origin-form target, the mediation service's canonicalization and routing, whose output must
 * hold none of the forms it refuses; then a chunked body, again split, which must end at the same byte
 * either way.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "crgw/policy.h"
#include "http_request.h"
#include "path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_spans(const struct crgw_http_request *r)
{
	assert(r->target.off + r->target.len <= r->head_len);
	assert(r->host.off + r->host.len <= r->head_len);
	assert(r->nfields <= CRGW_HTTP_FIELDS_MAX);
	for (unsigned i = 0; i < r->nfields; i++) {
		assert(r->fields[i].name.len > 0);
		assert(r->fields[i].name.off + r->fields[i].name.len <= r->head_len);
		assert(r->fields[i].value.off + r->fields[i].value.len <= r->head_len);
	}
}

/* What the mediation router does with a target: canonical or refused, and nothing refusable survives. */
static void check_mediation_route(const char *target, size_t len)
{
	char out[4096], value[64];
	size_t n = 0, qlen = 0, rest_len, seglen;
	const char *query = NULL, *why = NULL, *rest, *seg;

	if (med_path_canon(target, len, out, sizeof(out), &n, &query, &qlen, &why)) {
		assert(why);
		return;
	}
	assert(n > 0 && n < sizeof(out) && out[0] == '/' && out[n] == '\0');
	assert(!memchr(out, '\\', n) && !memchr(out, '%', n) && !memchr(out, '?', n) && !memchr(out, '#', n));
	for (size_t i = 0; i + 1 < n; i++)
		assert(!(out[i] == '/' && out[i + 1] == '/'));
	for (size_t i = 0; i < n; i++)
		assert((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
	assert(!query || (query > target && query + qlen == target + len));
	rest = out;
	rest_len = n;
	if (med_path_take(&rest, &rest_len, "/git") || med_path_take(&rest, &rest_len, "/secrets") ||
	    med_path_take(&rest, &rest_len, "/meta")) {
		assert(rest_len == 0 || rest[0] == '/');
		while (med_path_segment(&rest, &rest_len, &seg, &seglen) == 0) {
			assert(seglen > 0 && !memchr(seg, '/', seglen));
			assert(!(seglen == 1 && seg[0] == '.') && !(seglen == 2 && seg[0] == '.' && seg[1] == '.'));
		}
	}
	if (query && med_query_param(query, qlen, "service", value, sizeof(value), &n) == 0)
		assert(n < sizeof(value) && strlen(value) == n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct crgw_http_parser one, two;
	const char *in = (const char *)data + 1;
	size_t split, n;
	int r1, r2;

	if (size < 1 || size > 40000)
		return 0;
	n = size - 1;
	split = n ? data[0] * n / 255 : 0;

	crgw_http_parser_init(&one);
	r1 = crgw_http_parse_head(&one, in, n);
	crgw_http_parser_init(&two);
	r2 = crgw_http_parse_head(&two, in, split);
	if (r2 == -EAGAIN)
		r2 = crgw_http_parse_head(&two, in, n);
	/* Where the stream is cut must not change what it means. */
	assert(r1 == r2);
	assert(r1 == 0 || r1 == -EAGAIN || r1 == -EBADMSG || r1 == -E2BIG);
	assert(r1 != -EBADMSG || one.error);
	if (r1 != 0)
		return 0;
	assert(one.req.head_len == two.req.head_len && one.req.head_len <= n);
	assert(one.req.nfields == two.req.nfields);
	check_spans(&one.req);

	struct crgw_http_span authority, path;
	struct crgw_host host;
	uint16_t port;
	const char *why = NULL;

	if (crgw_http_absolute_target(in + one.req.target.off, one.req.target.len, &authority, &path, &why) == 0) {
		assert(authority.off + authority.len <= one.req.target.len);
		assert(path.off + path.len == one.req.target.len);
		crgw_hostport_parse(in + one.req.target.off + authority.off, authority.len, 80, &host, &port, &why);
	}
	if (one.req.host.len)
		crgw_hostport_parse(in + one.req.host.off, one.req.host.len, 80, &host, &port, &why);
	if (one.req.target.len && in[one.req.target.off] == '/')
		check_mediation_route(in + one.req.target.off, one.req.target.len);

	if (one.req.chunked) {
		const char *body = in + one.req.head_len;
		size_t blen = n - one.req.head_len, used1 = 0, used2 = 0, cut = blen / 2;

		r1 = crgw_http_parse_body(&one, body, blen, &used1);
		r2 = crgw_http_parse_body(&two, body, cut, &used2);
		if (r2 == -EAGAIN) {
			size_t more = 0;

			r2 = crgw_http_parse_body(&two, body + cut, blen - cut, &more);
			used2 += more;
		}
		assert(r1 == r2);
		assert(r1 == 0 || r1 == -EAGAIN || r1 == -EBADMSG);
		if (r1 == 0)
			assert(used1 == used2 && used1 <= blen);
	}
	return 0;
}
