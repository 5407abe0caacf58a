/* SPDX-License-Identifier: Apache-2.0 */
/* The closed set of reason codes: every denial, error and audit event names exactly one of these. */
#ifndef CRGW_REASON_H
#define CRGW_REASON_H

/*
 * The order is part of no interface (only the strings are); CRGW_REASON_NONE means "allowed" and
 * prints as JSON null. Add a code here, in the string table in reason.c and in docs/reasons.md together.
 */
enum crgw_reason {
	CRGW_REASON_NONE = 0,
	CRGW_REASON_POLICY_INVALID,
	CRGW_REASON_POLICY_CONFLICT,
	CRGW_REASON_BACKEND_UNAVAILABLE,
	CRGW_REASON_BACKEND_CAPABILITY_MISMATCH,
	CRGW_REASON_HOST_NOT_ALLOWED,
	CRGW_REASON_PORT_NOT_ALLOWED,
	CRGW_REASON_IP_LITERAL_NOT_ALLOWED,
	CRGW_REASON_PRIVATE_ADDRESS_BLOCKED,
	CRGW_REASON_SNI_MISSING,
	CRGW_REASON_SNI_MISMATCH,
	CRGW_REASON_REGISTRY_NOT_ALLOWED,
	CRGW_REASON_LOCKFILE_VIOLATION,
	CRGW_REASON_INTEGRITY_MISMATCH,
	CRGW_REASON_SECRET_SCOPE_VIOLATION,
	CRGW_REASON_REQUEST_INVALID,
	CRGW_REASON_DNS_BYPASS_ATTEMPT,
	CRGW_REASON_SPOOFED_SOURCE,
	CRGW_REASON_UNKNOWN_SANDBOX,
	CRGW_REASON_UPSTREAM_UNREACHABLE,
	CRGW_REASON_RATE_LIMITED,
	CRGW_REASON_RUNTIME_LAUNCH_FAILED,
	CRGW_REASON_RELEASE_TOO_NEW,
	CRGW_REASON_COUNT_
};

/* The stable string for `reason` ("host_not_allowed", ...); NULL for CRGW_REASON_NONE or out of range. */
const char *crgw_reason_str(enum crgw_reason reason);

/* The reason whose string is `name`; CRGW_REASON_COUNT_ when there is none. */
enum crgw_reason crgw_reason_from_str(const char *name);

#endif
