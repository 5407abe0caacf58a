/* SPDX-License-Identifier: Apache-2.0 */
/* The CompiledPolicy document: its canonical serialization and hash, shared by compiler and loader. */
#ifndef CRGW_POLICY_COMPILED_H
#define CRGW_POLICY_COMPILED_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CRGW_COMPILED_FORMAT "crgw.compiled-policy/v1"

/* The policy language's `version`: the only one the compiler accepts and writes, so the only one that loads. */
#define CRGW_COMPILED_VERSION 1

/* Sorted keys, no insignificant whitespace, ASCII only: the same document always gives the same bytes. */
#define CRGW_JSON_CANONICAL (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)

/* Bounds the compiler enforces and the loader checks again: the document crosses a trust boundary. */
#define CRGW_COMPILED_MAX_STRING 256
#define CRGW_COMPILED_MAX_LIST 4096
#define CRGW_COMPILED_MAX_SECRETS 256
#define CRGW_COMPILED_MAX_RULES 65536 /* network rules, allow and deny together */
#define CRGW_COMPILED_MAX_PORTS 4096  /* ports of one rule */

/* A secret id: 1-64 bytes of [a-z0-9_.-] (`s` borrowed, `len` bytes). */
bool crgw_compiled_secret_id_valid(const char *s, size_t len);

/* Whether `h` (NUL-terminated, borrowed) is an HTTP header name (an RFC 9110 token). */
bool crgw_compiled_header_name_valid(const char *h);

/* Whether `h` controls framing or routing (Host, Content-Length, …), and so can never carry a secret. */
bool crgw_compiled_header_forbidden(const char *h);

/* Whether a secret's `format` (NUL-terminated, borrowed) holds "{secret}" exactly once. */
bool crgw_compiled_format_valid(const char *format);

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
