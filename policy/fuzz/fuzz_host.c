/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzzes host and host:port normalization, and checks that a normal form is a fixed point. */
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
	}
	crgw_hostport_parse((const char *)data, size, 443, &h, &port, NULL);
	return 0;
}
