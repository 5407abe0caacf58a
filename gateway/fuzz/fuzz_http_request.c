/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the proxies' request path: the head parser fed in two pieces split where the input
 * says, which must agree with one piece; then the target and Host through the URL and host:port parsers;
 * then a chunked body, again split, which must end at the same byte either way.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "crgw/policy.h"
#include "http_request.h"

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
