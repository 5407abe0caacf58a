/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a policy change does (crgw-ctl policy diff): the rules that changed between two CompiledPolicy
 * documents, the destinations whose decision flips, and the replay of audited flows through a policy.
 * Pure functions over borrowed input, like the rest of libcrgw-policy: no I/O.
 */
#ifndef CRGW_POLICY_DIFF_H
#define CRGW_POLICY_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crgw/policy.h"

/* ---- rules ----------------------------------------------------------------------------------------- */

enum crgw_change_kind {
	CRGW_CHANGE_ADDED,
	CRGW_CHANGE_REMOVED,
	CRGW_CHANGE_CHANGED,
};

/* "added", "removed", "changed". */
const char *crgw_change_kind_str(enum crgw_change_kind kind);

/*
 * One changed rule or setting, in the author's dotted path (a network rule's `origin`, else the key's
 * path in the document). `old_value` and `new_value` are compact JSON (NULL for the side that has none);
 * all borrowed for the duration of the callback.
 */
struct crgw_policy_change {
	enum crgw_change_kind kind;
	const char *path;
	const char *old_path; /* a network rule's path in the old policy when it moved; else NULL */
	const char *old_value;
	const char *new_value;
};

typedef void (*crgw_policy_change_cb)(void *arg, const struct crgw_policy_change *change);

/*
 * Compares two CompiledPolicy documents (borrowed bytes, already loaded by crgw_policy_load, so known to
 * be valid) and calls `cb` once per change, network rules first, then the other sections in key order.
 * `policy_hash`, `source` and `format` are not compared. Returns the number of changes, -EINVAL when a
 * document does not parse, or -ENOMEM.
 */
int crgw_policy_diff_rules(const char *old_json, size_t old_len, const char *new_json, size_t new_len,
			   crgw_policy_change_cb cb, void *arg);

/*
 * One destination whose network decision differs between the policies. `host` is the rule's host as
 * written ("*.x" and CIDR forms included), "*" for any host no rule names, or an address range
 * "FIRST-LAST" ("[FIRST]-[LAST]" for IPv6; one address alone when FIRST is LAST) between the edges of
 * the networks and special ranges; `port` is 0 for "every port no rule names".
 */
struct crgw_reach_flip {
	const char *host;
	uint16_t port;
	bool now_allowed;
	struct crgw_decision old_decision;
	struct crgw_decision new_decision;
};

typedef void (*crgw_reach_flip_cb)(void *arg, const struct crgw_reach_flip *flip);

/*
 * The semantic summary: probes every host of both documents' network rules (a wildcard through a name
 * it matches, a network through its first address), every address range that begins at the end of a
 * network or at the edge of a special range, and every host no rule names, on every port either
 * document names, 80, 443 and one port none names, through both loaded policies, and calls `cb` for
 * each pair whose decision flips. `blocked` (borrowed, may be NULL) is what the gateway refuses whatever
 * a policy says, as crgw_policy_decide takes it; its ranges' edges are probed too. Returns the number of
 * flips, -EINVAL or -ENOMEM.
 */
int crgw_policy_diff_reach(const char *old_json, size_t old_len, const struct crgw_policy *old_policy,
			   const char *new_json, size_t new_len, const struct crgw_policy *new_policy,
			   const struct crgw_blocklist *blocked, crgw_reach_flip_cb cb, void *arg);

/* ---- audited flows ----------------------------------------------------------------------------------- */

/*
 * The fields of one audit line (docs/audit.md, schema 1 and the lines before `schema` existed) that a
 * replay reads, copied out and unescaped. Empty strings for absent fields; `port` 0 when absent.
 */
struct crgw_audit_flow {
	int schema; /* 0 when the line has none */
	uint16_t port;
	char event[24];
	char service[16];
	char action[8];
	char reason[40];
	char ts[40];
	char host[CRGW_HOST_NAME_MAX + 1];
	char ip[48];
	char registry[8];
	char operation[8];
	char sandbox_id[24];
	char run_id[72];
	char rule[96];
	char package[216];
	char version[136];
	char integrity[160];
	char ref[256];
	/* The destination and the address, parsed by the first replay of the line and kept for the next. */
	signed char target_state, ip_state; /* 0: not parsed yet; 1: parsed; -1: refused */
	struct crgw_host target, address;
};

/*
 * Reads one audit line (`len` borrowed bytes, no newline; untrusted). Returns 0, or -EINVAL when it is
 * not one JSON object of the audit log's shape (nesting over 16 levels, a known field of the wrong
 * type or longer than its field above, bytes after the object, a `ts` that is not an RFC 3339 time:
 * digits, "-:T.Z+" in its shape, 9 fractional digits at most).
 */
int crgw_audit_flow_parse(const char *line, size_t len, struct crgw_audit_flow *out);

/*
 * `len` bytes of `src` (borrowed, untrusted: a field of a log, or an argument) made safe to print to a
 * terminal or to put in a YAML comment: every C0 and C1 control and DEL, U+2028 and U+2029 (line breaks
 * in YAML), the bidi controls U+202A-U+202E and U+2066-U+2069, and every byte that is not part of a UTF-8
 * sequence becomes one '?'. Written to `dst` (`size` bytes, NUL-terminated, cut before a character that
 * does not fit: `len` + 1 bytes always hold it all). Returns `dst`.
 */
char *crgw_audit_text_safe(char *dst, size_t size, const char *src, size_t len);

/*
 * `len` bytes of `src` as UTF-8 that JSON can carry: every byte that is not part of a UTF-8 sequence becomes
 * U+FFFD, everything else is kept as it is (controls too: JSON escapes them). Written to `dst` (at least
 * 3 * `len` bytes; not NUL-terminated). Returns the bytes written.
 */
size_t crgw_text_utf8_repair(char *dst, const char *src, size_t len);

/* Whether `len` bytes of `s` are UTF-8 that JSON can carry (no allocation: a check, not a conversion). */
bool crgw_text_utf8_valid(const char *s, size_t len);

enum crgw_replay_outcome {
	CRGW_REPLAY_SKIP, /* not a decision a policy makes (rate limits, upstream failures, life cycle) */
	CRGW_REPLAY_ALLOW,
	CRGW_REPLAY_WARN, /* allowed and audited with action warn (lockfile mode warn) */
	CRGW_REPLAY_DENY,
};

/*
 * Decides the flow again under `policy` as the gateway would: DNS names on any port, the proxies'
 * destinations with the address they dialled, git hosts and pushes, registry artifacts against the
 * lockfile allowlist. Decisions that depend on more than the policy (an upstream's bytes or publish
 * times, rate limits, a malformed request) are CRGW_REPLAY_SKIP. `out` gets the reason and the deciding
 * rule (a path in the policy, borrowed from it or static). The flow keeps its parsed hosts, so replaying
 * one line through two policies parses them once. Never allocates.
 */
enum crgw_replay_outcome crgw_policy_replay(const struct crgw_policy *policy, const struct crgw_blocklist *blocked,
					    struct crgw_audit_flow *flow, struct crgw_decision *out);

#endif
