/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the image module's own parsers. The first byte chooses: even, the rest is an image
 * reference; odd, it is an image config blob and byte >> 1 the number of layers its manifest lists. An
 * accepted reference names a host and a repository and has a tag or a valid digest; an accepted config gives
 * a summary object of the documented keys only.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "image_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *why = NULL;
	int rc;

	if (size < 1)
		return 0;
	if (!(data[0] & 1)) {
		char *s = strndup((const char *)data + 1, size - 1);
		struct img_ref r;

		assert(s);
		rc = img_ref_parse(s, &r, &why);
		assert(rc == 0 || (rc == -EINVAL && why && why[0]));
		if (rc == 0) {
			assert(r.host[0] && r.name[0] && (r.tag[0] || r.digest[0]));
			assert(!r.digest[0] || img_digest_valid(r.digest));
			assert(!strstr(r.name, "//") && r.name[0] != '/' && !strchr(r.host, '/'));
		}
		free(s);
		return 0;
	}
	json_t *sum = NULL, *v;
	const char *key;

	rc = img_config_parse((const char *)data + 1, size - 1, data[0] >> 1, &sum, &why);
	assert(rc == 0 || rc == -EBADMSG || rc == -E2BIG || rc == -ENOMEM);
	assert(rc ? (why && why[0] && !sum) : (sum != NULL));
	json_object_foreach(sum, key, v) {
		assert(!strcmp(key, "entrypoint") || !strcmp(key, "cmd") || !strcmp(key, "env") ||
		       !strcmp(key, "workdir") || !strcmp(key, "user") || !strcmp(key, "os") ||
		       !strcmp(key, "architecture"));
	}
	json_decref(sum);
	return 0;
}
