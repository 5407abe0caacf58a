/* SPDX-License-Identifier: Apache-2.0 */
/* The precomputed network-rule matcher behind crgw_policy_decide(). */
#ifndef CRGW_POLICY_MATCHER_H
#define CRGW_POLICY_MATCHER_H

#include "pattern.h"

struct matcher_rule {
	bool deny;
	struct pattern pattern;
	const uint16_t *ports; /* sorted, unique; nports 0 = every port. Borrowed until matcher_free. */
	size_t nports;
	const char *origin; /* borrowed until matcher_free */
};

struct matcher;

/* Builds the lookup tables over `rules` (the array is copied; what it points to is borrowed). Rules
 * earlier in the array win ties between equally specific matches. Returns 0 or -ENOMEM / -E2BIG. */
int matcher_build(const struct matcher_rule *rules, size_t nrules, struct matcher **out);

void matcher_free(struct matcher *m);

void matcher_decide(const struct matcher *m, bool default_allow, const struct crgw_blocklist *blocked,
		    const struct crgw_host *host, uint16_t port, struct crgw_decision *out);

/*
 * The i-th of the special ranges (loopback, link-local, the metadata address, …) that address_checks
 * refuses without a specific enough allow rule, as a CIDR pattern in `out`. Returns false past the last.
 * policy diff probes their edges: a decision can change there without any rule changing.
 */
bool matcher_special_range(size_t i, struct pattern *out);

/* The i-th range of `blocked` (may be NULL), as matcher_special_range gives a special one. */
bool matcher_blocked_range(const struct crgw_blocklist *blocked, size_t i, struct pattern *out);

void matcher_check_address(const struct matcher *m, const struct crgw_blocklist *blocked,
			   const struct crgw_host *addr, uint16_t port, struct crgw_decision *out);

#endif
