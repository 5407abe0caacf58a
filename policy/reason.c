/* SPDX-License-Identifier: Apache-2.0 */
/* The one string table of reason codes, shared by the audit log, HTTP bodies, the CLI and the docs. */
#include <string.h>

#include "crgw/reason.h"

static const char *const reason_names[CRGW_REASON_COUNT_] = {
	[CRGW_REASON_NONE] = NULL,
	[CRGW_REASON_POLICY_INVALID] = "policy_invalid",
	[CRGW_REASON_POLICY_CONFLICT] = "policy_conflict",
	[CRGW_REASON_BACKEND_UNAVAILABLE] = "backend_unavailable",
	[CRGW_REASON_BACKEND_CAPABILITY_MISMATCH] = "backend_capability_mismatch",
	[CRGW_REASON_HOST_NOT_ALLOWED] = "host_not_allowed",
	[CRGW_REASON_PORT_NOT_ALLOWED] = "port_not_allowed",
	[CRGW_REASON_IP_LITERAL_NOT_ALLOWED] = "ip_literal_not_allowed",
	[CRGW_REASON_PRIVATE_ADDRESS_BLOCKED] = "private_address_blocked",
	[CRGW_REASON_SNI_MISSING] = "sni_missing",
	[CRGW_REASON_SNI_MISMATCH] = "sni_mismatch",
	[CRGW_REASON_REGISTRY_NOT_ALLOWED] = "registry_not_allowed",
	[CRGW_REASON_LOCKFILE_VIOLATION] = "lockfile_violation",
	[CRGW_REASON_INTEGRITY_MISMATCH] = "integrity_mismatch",
	[CRGW_REASON_SECRET_SCOPE_VIOLATION] = "secret_scope_violation",
	[CRGW_REASON_REQUEST_INVALID] = "request_invalid",
	[CRGW_REASON_DNS_BYPASS_ATTEMPT] = "dns_bypass_attempt",
	[CRGW_REASON_SPOOFED_SOURCE] = "spoofed_source",
	[CRGW_REASON_UNKNOWN_SANDBOX] = "unknown_sandbox",
	[CRGW_REASON_UPSTREAM_UNREACHABLE] = "upstream_unreachable",
	[CRGW_REASON_RATE_LIMITED] = "rate_limited",
	[CRGW_REASON_RUNTIME_LAUNCH_FAILED] = "runtime_launch_failed",
	[CRGW_REASON_RELEASE_TOO_NEW] = "release_too_new",
};

const char *crgw_reason_str(enum crgw_reason reason)
{
	if ((unsigned)reason >= CRGW_REASON_COUNT_)
		return NULL;
	return reason_names[reason];
}

enum crgw_reason crgw_reason_from_str(const char *name)
{
	for (unsigned i = 1; i < CRGW_REASON_COUNT_; i++)
		if (strcmp(reason_names[i], name) == 0)
			return (enum crgw_reason)i;
	return CRGW_REASON_COUNT_;
}
