/* SPDX-License-Identifier: Apache-2.0 */
/*
 * policy learn: the least policy that would have allowed a set of audited flows (usually a learn-mode
 * run's), drafted as cleanroom.yaml with a comment on every rule saying how often it was used. Pure: the
 * caller reads the log (crgw_audit_flow_parse) and writes the draft.
 */
#ifndef CRGW_POLICY_LEARN_H
#define CRGW_POLICY_LEARN_H

#include <stddef.h>
#include <stdint.h>

#include "crgw/policy_diff.h"

struct crgw_learner;

/* A new, empty learner (NULL when out of memory). */
struct crgw_learner *crgw_learner_new(void);

void crgw_learner_free(struct crgw_learner *learner);

/*
 * Takes one audited flow (borrowed): a decision that allowed it (`allow`, or `warn`, as learn mode
 * writes) by DNS, a proxy (`connect`, `http`, `tls`, `tcp`), git or a registry. Returns 1 when the flow
 * was learned, 0 when it is none of those (a denial, a connection end, life cycle) or its host is not
 * one crgw_host_parse reads (a name, for git and registries), -E2BIG past the bounds (100,000 hosts,
 * 1,024 ports per host), -ENOMEM.
 */
int crgw_learner_add(struct crgw_learner *learner, const struct crgw_audit_flow *flow);

/* What was learned, for the caller's summary. */
struct crgw_learner_counts {
	uint64_t flows; /* flows learned */
	size_t hosts;	/* network allow rules before collapsing */
	size_t git_hosts;
	size_t registries;
};

void crgw_learner_counts(const struct crgw_learner *learner, struct crgw_learner_counts *out);

/*
 * The draft as YAML (a new malloc'd NUL-terminated string in `*yaml`). `header` (borrowed, may be NULL)
 * is written first as comment lines, one per '\n', each made safe by crgw_audit_text_safe. With
 * `collapse` N >= 2, N or more names exactly one label under the same parent (of at least two labels)
 * become one "*.parent" rule with the union of their ports; 0 keeps every host exact. Returns 0 or
 * -ENOMEM.
 */
int crgw_learner_draft(const struct crgw_learner *learner, unsigned collapse, const char *header, char **yaml);

#endif
