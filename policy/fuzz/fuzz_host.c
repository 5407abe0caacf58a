/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzzes host and host:port normalization, and checks that a normal form is a fixed point and that an IPv4
 * address carried in an IPv6 one reads back as itself. */
#include <stdlib.h>
#include <string.h>

#include "crgw/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct crgw_host h, again;
	uint16_t port;

	if (crgw_host_parse((const char *)data, size, &h, NULL) == 0) {
		if (strlen(h.text) != h.len)
			abort();
		/* Normalizing a normal form must give it back unchanged. */
		if (crgw_host_parse(h.text, h.len, &again, NULL) != 0 || strcmp(again.text, h.text) != 0 ||
		    again.kind != h.kind)
			abort();
		/* A parsed host is never IPv4-mapped (that is stored as IPv4); a carried address reads back as itself. */
		struct crgw_host v4;
		enum crgw_embed form = crgw_host_embedded_ipv4(&h, &v4);

		if (form == CRGW_EMBED_MAPPED)
			abort();
		if (form != CRGW_EMBED_NONE && (crgw_host_parse(v4.text, v4.len, &again, NULL) != 0 ||
						again.kind != CRGW_HOST_IPV4 || memcmp(again.addr, v4.addr, 4) != 0))
			abort();
	}
	crgw_hostport_parse((const char *)data, size, 443, &h, &port, NULL);
	return 0;
}
