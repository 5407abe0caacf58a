/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzzes the CompiledPolicy loader, the control API's trust boundary, and decides on what loads. */
#include "crgw/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct crgw_policy *p = NULL;
	struct crgw_decision d;
	struct crgw_host h;
	char err[256];

	if (crgw_policy_load((const char *)data, size, &p, err, sizeof(err)) != 0)
		return 0;
	if (crgw_host_parse("api.example.com", 15, &h, NULL) == 0)
		crgw_policy_decide(p, NULL, &h, 443, &d);
	crgw_policy_unref(p);
	return 0;
}
