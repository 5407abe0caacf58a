/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policies by hash: every CompiledPolicy the gateway has accepted (pushed, or registered with a sandbox),
 * kept as DIR/<64 hex>.json, so that a launcher can register a sandbox by its hash alone and an audit
 * consumer can fetch the exact policy behind any event's policy_hash. Control-thread only.
 */
#ifndef CRGW_GATEWAY_POLICY_STORE_H
#define CRGW_GATEWAY_POLICY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Creates `dir` (0700, its parents 0755) when missing and opens it. Returns 0 or -errno with `err`. */
int crgw_policy_store_open(const char *dir, char *err, size_t errlen);

void crgw_policy_store_close(void);

/*
 * Keeps a document (borrowed bytes) that crgw_policy_load accepted with hash `hash` ("sha256:<hex>"),
 * unless the store already has it: a temporary file, fsync, rename, fsync of the directory. Sets
 * `*created`. Returns 0 or -errno.
 */
int crgw_policy_store_put(const char *hash, const char *json, size_t len, bool *created);

/*
 * The document stored for `hash` ("sha256:<64 hex>" or the 64 hex digits alone), checked again against
 * its hash before it is returned: 0 with a malloc'd, NUL-terminated `*json` (taken by the caller),
 * -EINVAL for a malformed hash, -ENOENT when the store has none, -EBADMSG when the stored file no longer
 * matches its name, or -errno.
 */
int crgw_policy_store_get(const char *hash, char **json, size_t *len);

/* One stored policy, for the list. */
struct crgw_policy_store_entry {
	char hash[72];
	uint64_t bytes;
	int64_t stored; /* seconds since the epoch */
};

/* Calls `fn` for each stored policy (in no particular order). Returns the count or -errno. */
int crgw_policy_store_list(void (*fn)(const struct crgw_policy_store_entry *e, void *arg), void *arg);

#endif
