/* SPDX-License-Identifier: Apache-2.0 */
/* Canonical form and hash of a CompiledPolicy, and the field rules the compiler and the loader share. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compiled.h"

/*
 * jansson's dumper can drop pieces of its output when an allocation fails part way and still return a
 * string. Output that does not parse back to the same value is treated as the allocation failure it is,
 * so neither a hash nor a compiled document is ever made from damaged text.
 */
static int serialized_faithfully(const char *text, json_t *value)
{
	json_t *back;
	bool same;

	if (!text)
		return -ENOMEM;
	back = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	same = back && json_equal(back, value);
	json_decref(back);
	return same ? 0 : -ENOMEM;
}

int crgw_compiled_hash(json_t *doc, char hash[72])
{
	json_t *copy = json_copy(doc);
	unsigned char digest[32];
	unsigned int dlen = 0;
	char *text;
	int err = 0;

	/* json_copy() skips members it cannot allocate room for instead of failing; a short copy would
	 * hash a different document, so count. */
	if (!copy || json_object_size(copy) != json_object_size(doc)) {
		json_decref(copy);
		return -ENOMEM;
	}
	json_object_del(copy, "policy_hash");
	text = json_dumps(copy, CRGW_JSON_CANONICAL);
	err = serialized_faithfully(text, copy);
	json_decref(copy);
	if (err) {
		free(text);
		return err;
	}
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
	err = serialized_faithfully(*json, doc);
	if (err) {
		free(*json);
		*json = NULL;
		return err;
	}
	*len = strlen(*json);
	return 0;
}

bool crgw_compiled_secret_id_valid(const char *s, size_t len)
{
	if (len == 0 || len > 64)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		      s[i] == '-' || s[i] == '.'))
			return false;
	return true;
}

/* Header names a sandbox must never be able to set through the injector: framing and routing. */
bool crgw_compiled_header_forbidden(const char *h)
{
	static const char *const names[] = { "host", "content-length", "transfer-encoding", "connection",
					     "upgrade", "te", "trailer", "keep-alive", "proxy-connection", NULL };

	for (const char *const *n = names; *n; n++)
		if (strcasecmp(h, *n) == 0)
			return true;
	return false;
}

bool crgw_compiled_header_name_valid(const char *h)
{
	if (!*h)
		return false;
	for (const char *p = h; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      strchr("!#$%&'*+-.^_`|~", *p)))
			return false;
	return true;
}

bool crgw_compiled_format_valid(const char *format)
{
	const char *p = strstr(format, "{secret}");

	return p && !strstr(p + 1, "{secret}");
}
