/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the audit line reader of policy diff (a log may come from anywhere) and the replay of what it
 * reads through a small policy: no read past the line, every kept field a terminated string within its
 * room, and every field read as jansson reads it when jansson takes the line too (it is stricter about
 * numbers too large for it, and we about nesting, so neither must accept all the other does); and the
 * line's bytes made safe to show (crgw_audit_text_safe), which must leave nothing a terminal or YAML
 * reads as a control.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/policy_diff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct crgw_policy *policy;

static void load_policy(void)
{
	static const char yaml[] = "version: 1\n"
				   "sandbox:\n"
				   "  network:\n"
				   "    default: deny\n"
				   "    allow:\n"
				   "      - host: allowed.test\n"
				   "      - host: \"*.pkgs.test\"\n"
				   "      - host: 10.0.0.0/8\n"
				   "git:\n"
				   "  hosts: [git.test]\n"
				   "registries:\n"
				   "  npm: { enable: true, allowed_hosts: [npm.test], fallback: deny }\n";
	struct crgw_compiled *c = NULL;
	char err[256];

	if (crgw_policy_compile(yaml, strlen(yaml), NULL, &c) || c->nerrors ||
	    crgw_policy_load(c->json, c->json_len, &policy, err, sizeof(err)))
		abort();
	crgw_compiled_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct crgw_audit_flow f;
	struct crgw_decision d;
	/* A copy of exactly `size` bytes, so that any read past the line is caught by the sanitizer. */
	char *line = malloc(size ? size : 1);

	if (!policy)
		load_policy();
	if (!line)
		return 0;
	memcpy(line, data, size);
	if (crgw_audit_flow_parse(line, size, &f) == 0) {
		const char *fields[] = {f.event,   f.service,  f.action,    f.reason,	  f.ts,	    f.host,
					f.ip,	   f.registry, f.operation, f.sandbox_id, f.run_id, f.rule,
					f.package, f.version,  f.integrity, f.ref};
		const size_t rooms[] = {
		    sizeof(f.event),	 sizeof(f.service),    sizeof(f.action),    sizeof(f.reason),
		    sizeof(f.ts),	 sizeof(f.host),       sizeof(f.ip),	    sizeof(f.registry),
		    sizeof(f.operation), sizeof(f.sandbox_id), sizeof(f.run_id),    sizeof(f.rule),
		    sizeof(f.package),	 sizeof(f.version),    sizeof(f.integrity), sizeof(f.ref)};
		static const char *const keys[] = {
		    "event",	 "service",    "action", "reason_code", "ts",	   "dst_host", "dst_ip",    "registry",
		    "operation", "sandbox_id", "run_id", "rule",	"package", "version",  "integrity", "ref"};
		json_t *back = json_loadb(line, size, 0, NULL);

		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			const char *theirs = json_string_value(json_object_get(back, keys[i]));

			if (strnlen(fields[i], rooms[i]) >= rooms[i])
				abort();
			if (back && theirs && strcmp(theirs, fields[i]))
				abort();
		}
		json_decref(back);
		/* A ts goes into a draft's comment: nothing but the bytes of an RFC 3339 time may pass. */
		if (strspn(f.ts, "0123456789-:T.Z+") != strlen(f.ts))
			abort();
		crgw_policy_replay(policy, NULL, &f, &d);
		if (d.rule && strlen(d.rule) > 200)
			abort();
	}
	{
		/* Whatever the bytes, the safe text has no control byte, line separator or bidi control left. */
		char safe[256];

		crgw_audit_text_safe(safe, sizeof(safe), (const char *)data, size);
		for (const unsigned char *p = (const unsigned char *)safe; *p; p++)
			if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] < 0xa0) ||
			    (p[0] == 0xe2 && ((p[1] == 0x80 && p[2] >= 0xa8 && p[2] <= 0xae) ||
					      (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9))))
				abort();
	}
	free(line);
	return 0;
}
