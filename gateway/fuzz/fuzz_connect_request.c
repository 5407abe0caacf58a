/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the explicit proxy's request path: the head parser fed in two chunks split where
 * the input says, which must agree with one chunk, then the target through the host:port normalizer.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "connect_request.h"
#include "crgw/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct crgw_connect_parser one, two;
	size_t split, used1 = 0, used2a = 0, used2b = 0;
	int r1, r2;

	if (size < 1 || size > 20000)
		return 0;
	split = data[0] % size;
	data++;
	size--;
	if (split > size)
		split = size;

	crgw_connect_parser_init(&one);
	r1 = crgw_connect_parser_feed(&one, (const char *)data, size, &used1);

	crgw_connect_parser_init(&two);
	r2 = crgw_connect_parser_feed(&two, (const char *)data, split, &used2a);
	if (r2 == -EAGAIN)
		r2 = crgw_connect_parser_feed(&two, (const char *)data + split, size - split, &used2b);
	else
		used2b = 0;

	/* Where the stream is cut must not change what it means. */
	assert(r1 == r2);
	assert(r1 == 0 || r1 == -EAGAIN || r1 == -EBADMSG || r1 == -EOPNOTSUPP || r1 == -ENAMETOOLONG);
	if (r1 == 0) {
		size_t head2 = used2b ? split + used2b : used2a;

		assert(used1 == head2);
		assert(used1 <= size);
		assert(one.authority_len == two.authority_len);
		assert(!memcmp(one.authority, two.authority, one.authority_len));
		assert(one.authority[one.authority_len] == '\0');
		assert(one.authority_len < CRGW_CONNECT_AUTHORITY_MAX);

		struct crgw_host host;
		uint16_t port = 0;
		const char *why = NULL;

		if (crgw_hostport_parse(one.authority, one.authority_len, 0, &host, &port, &why) == 0)
			assert(host.text[CRGW_HOST_NAME_MAX] == '\0' || strlen(host.text) <= CRGW_HOST_NAME_MAX);
	}
	return 0;
}
