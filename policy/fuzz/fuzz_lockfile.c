/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for every lockfile parser: the first input byte (mod 4) picks the format, the rest is the file. */

#include <stddef.h>
#include <stdint.h>

#include "lockfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum crgw_lockfile_kind kinds[4] = {
		CRGW_LOCKFILE_NPM,
		CRGW_LOCKFILE_YARN,
		CRGW_LOCKFILE_PIP,
		CRGW_LOCKFILE_GOSUM,
	};
	struct crgw_artifact_list list = { 0 };
	struct crgw_lockfile_error err;

	if (!size)
		return 0;
	/* The parse result does not matter here; sanitizers and the sort catch what does. */
	(void)crgw_lockfile_parse(kinds[data[0] % 4], (const char *)data + 1, size - 1, &list, &err);
	crgw_artifact_list_sort_unique(&list);
	crgw_artifact_list_free(&list);
	return 0;
}
