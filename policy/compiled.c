/* SPDX-License-Identifier: Apache-2.0 */
/* Canonical form and hash of a CompiledPolicy. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiled.h"

int crgw_compiled_hash(json_t *doc, char hash[72])
{
	json_t *copy = json_copy(doc);
	unsigned char digest[32];
	unsigned int dlen = 0;
	char *text;
	int err = 0;

	if (!copy)
		return -ENOMEM;
	json_object_del(copy, "policy_hash");
	text = json_dumps(copy, CRGW_JSON_CANONICAL);
	json_decref(copy);
	if (!text)
		return -ENOMEM;
	if (EVP_Digest(text, strlen(text), digest, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32) {
		err = -ENOMEM;
	} else {
		memcpy(hash, "sha256:", 7);
		for (unsigned i = 0; i < 32; i++)
			snprintf(hash + 7 + 2 * i, 3, "%02x", digest[i]);
	}
	free(text);
	return err;
}

int crgw_compiled_seal(json_t *doc, char **json, size_t *len, char hash[72])
{
	int err = crgw_compiled_hash(doc, hash);

	if (err)
		return err;
	if (json_object_set_new(doc, "policy_hash", json_string(hash)) != 0)
		return -ENOMEM;
	*json = json_dumps(doc, CRGW_JSON_CANONICAL);
	if (!*json)
		return -ENOMEM;
	*len = strlen(*json);
	return 0;
}
