/* SPDX-License-Identifier: Apache-2.0 */
/* Host patterns of network rules: exact names, the two wildcard forms, and IP/CIDR. */
#ifndef CRGW_POLICY_PATTERN_H
#define CRGW_POLICY_PATTERN_H

#include "crgw/policy.h"

enum pattern_kind {
	PATTERN_NAME,      /* api.example.com */
	PATTERN_WILD_ONE,  /* *.example.com: exactly one extra label */
	PATTERN_WILD_MANY, /* **.example.com: one or more extra labels */
	PATTERN_CIDR,      /* 10.0.0.0/8, 2001:db8::/32, or a bare address (full-length prefix) */
};

struct pattern {
	enum pattern_kind kind;
	/* name or wildcard suffix (kind NAME), or the network address (IPV4/IPV6) */
	struct crgw_host host;
	unsigned prefix; /* CIDR prefix length, in bits of host.kind's family */
};

/*
 * Parses a pattern as written in a policy or a compiled policy. IPv4-mapped IPv6 networks become IPv4.
 * Host bits beyond the prefix must be zero. Returns 0 or -EINVAL with `*why` set.
 */
int pattern_parse(const char *text, size_t len, struct pattern *out, const char **why);

/*
 * Whether `p` may be an allow rule's host: a wildcard needs at least two labels after it, since "*.com"
 * would admit most of the internet (a deny rule may cover a top-level domain). The compiler and the loader
 * both ask, so a compiled document cannot hold an allow rule the compiler would refuse. Returns 0 or
 * -EINVAL with `*why` set.
 */
int pattern_check_allow(const struct pattern *p, const char **why);

/* Writes the canonical spelling (the compiled form's `host`) into `buf`. */
void pattern_format(const struct pattern *p, char *buf, size_t size);

/* Number of address bits of a host kind: 32 or 128 (0 for names). */
unsigned host_bits(enum crgw_host_kind kind);

/* Whether the first `prefix` bits of `a` and `b` agree. */
bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix);

#endif
