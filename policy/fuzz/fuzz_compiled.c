/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the CompiledPolicy loader, the control API's trust boundary, and decides on what loads and reads
 * what mediation reads from it.
 */
#include <string.h>

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
	/* What mediation reads must be as safe to use as the decision on anything that loads. */
	(void)crgw_policy_git_ref_allowed(p, "refs/heads/agent/x", 18);
	(void)crgw_policy_git_host_allowed(p, "github.com");
	for (size_t i = 0; i < crgw_policy_secret_count(p); i++) {
		const struct crgw_secret_rule *s = crgw_policy_secret_at(p, i);

		if (crgw_policy_secret_find(p, s->id, strlen(s->id)) != s)
			__builtin_trap();
		(void)crgw_secret_host_allowed(s, "a.api.example.com");
	}
	for (size_t i = 0; i < crgw_policy_allow_host_count(p); i++)
		(void)strlen(crgw_policy_allow_host(p, i));
	crgw_policy_unref(p);
	return 0;
}
