/* SPDX-License-Identifier: Apache-2.0 */
/* The CompiledPolicy document: its canonical serialization and hash, shared by compiler and loader. */
#ifndef CRGW_POLICY_COMPILED_H
#define CRGW_POLICY_COMPILED_H

#include <jansson.h>
#include <stddef.h>

#define CRGW_COMPILED_FORMAT "crgw.compiled-policy/v1"

/* Sorted keys, no insignificant whitespace, ASCII only: the same document always gives the same bytes. */
#define CRGW_JSON_CANONICAL (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)

/*
 * Computes "sha256:<hex>" over the canonical form of `doc` without its `policy_hash` member (the
 * document itself is not changed). Returns 0 or -ENOMEM.
 */
int crgw_compiled_hash(json_t *doc, char hash[72]);

/*
 * Sets `policy_hash` in `doc` and writes its canonical form to `*json` (malloc'd, taken by the caller,
 * NUL-terminated) and `*len`. Returns 0 or -ENOMEM.
 */
int crgw_compiled_seal(json_t *doc, char **json, size_t *len, char hash[72]);

#endif
