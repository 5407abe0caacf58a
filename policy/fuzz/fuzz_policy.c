/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzzes the policy compiler (YAML through to canonical JSON) and loads whatever compiles. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/policy.h"

/* Lockfiles named by fuzzed policies get a small fixed body, so the lockfile paths are exercised too. */
static int read_file(void *arg, const char *path, size_t max, char **buf, size_t *len)
{
	static const char body[] = "pkg==1.0 --hash=sha256:"
				   "0000000000000000000000000000000000000000000000000000000000000000\n";

	(void)arg;
	(void)max;
	if (strcmp(path, "requirements.txt") != 0)
		return -ENOENT;
	*buf = strdup(body);
	*len = sizeof(body) - 1;
	return *buf ? 0 : -ENOMEM;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct crgw_compile_opts opts = { .read_file = read_file, .allow_default_allow = true };
	struct crgw_compiled *c = NULL;

	if (crgw_policy_compile((const char *)data, size, &opts, &c) != 0)
		return 0;
	if (c->nerrors == 0) {
		struct crgw_policy *p = NULL;
		char err[256];

		/* What the compiler emits, the loader must accept: anything else is a bug. */
		if (crgw_policy_load(c->json, c->json_len, &p, err, sizeof(err)) != 0)
			abort();
		if (strcmp(crgw_policy_hash(p), c->hash) != 0)
			abort();
		crgw_policy_unref(p);
	}
	crgw_compiled_free(c);
	return 0;
}
