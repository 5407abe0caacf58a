/* SPDX-License-Identifier: Apache-2.0 */
/*
 * policy learn's pure half: which audited flows are learned, the draft's rules and comments, collapsing
 * siblings into one wildcard (never over a one-label parent), and that every draft compiles and allows
 * the flows it was drafted from.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/policy_learn.h"
#include "tap.h"

static int feed(struct crgw_learner *l, const char *line)
{
	struct crgw_audit_flow f;

	if (crgw_audit_flow_parse(line, strlen(line), &f))
		return -100;
	return crgw_learner_add(l, &f);
}

static const char *const FLOWS[] = {
    "{\"event\":\"decision\",\"service\":\"dns\",\"dst_host\":\"a.pkgs.test\",\"action\":\"warn\",\"reason_code\":"
    "\"host_not_allowed\"}",
    "{\"event\":\"decision\",\"service\":\"connect\",\"dst_host\":\"a.pkgs.test\",\"dst_port\":443,\"action\":\"warn\","
    "\"reason_code\":\"host_not_allowed\"}",
    "{\"event\":\"decision\",\"service\":\"http\",\"dst_host\":\"b.pkgs.test\",\"dst_port\":80,\"action\":\"allow\","
    "\"reason_code\":null}",
    "{\"event\":\"decision\",\"service\":\"tls\",\"dst_host\":\"c.pkgs.test\",\"dst_port\":8443,\"action\":\"warn\","
    "\"reason_code\":\"port_not_allowed\"}",
    "{\"event\":\"decision\",\"service\":\"tcp\",\"dst_ip\":\"203.0.113.7\",\"dst_port\":22,\"action\":\"warn\","
    "\"reason_code\":\"ip_literal_not_allowed\"}",
    "{\"event\":\"decision\",\"service\":\"dns\",\"dst_host\":\"only-resolved.test\",\"action\":\"allow\",\"reason_"
    "code\":null}",
    "{\"event\":\"decision\",\"service\":\"git\",\"dst_host\":\"git.test\",\"operation\":\"fetch\",\"action\":"
    "\"allow\",\"reason_code\":null}",
    "{\"event\":\"decision\",\"service\":\"registry\",\"registry\":\"npm\",\"dst_host\":\"npm.test\",\"package\":"
    "\"left-pad\",\"version\":\"1.3.0\",\"action\":\"warn\",\"reason_code\":\"lockfile_violation\"}",
};

static const char *const IGNORED[] = {
    "{\"event\":\"decision\",\"service\":\"dns\",\"dst_host\":\"loopback.test\",\"action\":\"deny\",\"reason_code\":"
    "\"private_address_blocked\"}",
    "{\"event\":\"connection_end\",\"service\":\"connect\",\"dst_host\":\"a.pkgs.test\",\"dst_port\":443}",
    "{\"event\":\"sandbox_registered\",\"service\":\"control\"}",
    "{\"event\":\"decision\",\"service\":\"secrets\",\"dst_host\":\"api.test\",\"action\":\"allow\",\"reason_code\":"
    "null}",
    "{\"event\":\"decision\",\"service\":\"connect\",\"dst_host\":\"x.test\",\"action\":\"allow\",\"reason_code\":"
    "null}",
    "{\"event\":\"decision\",\"service\":\"connect\",\"dst_host\":\"0x7f.1\",\"dst_port\":443,\"action\":\"allow\","
    "\"reason_code\":null}",
};

static struct crgw_policy *compiled(const char *yaml)
{
	struct crgw_compiled *c = NULL;
	struct crgw_policy *p = NULL;
	char err[256];

	if (crgw_policy_compile(yaml, strlen(yaml), NULL, &c) == 0 && !c->nerrors)
		crgw_policy_load(c->json, c->json_len, &p, err, sizeof(err));
	else if (c && c->ndiags)
		printf("# %s: %s\n", c->diags[0].path, c->diags[0].message);
	crgw_compiled_free(c);
	return p;
}

static bool allows_all(struct crgw_policy *p)
{
	for (size_t i = 0; i < sizeof(FLOWS) / sizeof(FLOWS[0]); i++) {
		struct crgw_audit_flow f;
		struct crgw_decision d;

		crgw_audit_flow_parse(FLOWS[i], strlen(FLOWS[i]), &f);
		if (crgw_policy_replay(p, NULL, &f, &d) == CRGW_REPLAY_DENY) {
			printf("# refused: %s\n", FLOWS[i]);
			return false;
		}
	}
	return true;
}

int main(void)
{
	struct crgw_learner *l = crgw_learner_new();
	struct crgw_learner_counts counts;
	struct crgw_policy *p;
	char *yaml = NULL;
	bool all = true;

	for (size_t i = 0; i < sizeof(FLOWS) / sizeof(FLOWS[0]); i++)
		all &= feed(l, FLOWS[i]) == 1;
	tap_result(all, "allowed and warned DNS, proxy, git and registry flows are learned");
	all = true;
	for (size_t i = 0; i < sizeof(IGNORED) / sizeof(IGNORED[0]); i++)
		all &= feed(l, IGNORED[i]) == 0;
	tap_result(all,
		   "denials, connection ends, life cycle, secrets, flows without a port and unparsable hosts are not");
	crgw_learner_counts(l, &counts);
	tap_result(counts.flows == 8 && counts.hosts == 5 && counts.git_hosts == 1 && counts.registries == 1,
		   "counts: %llu flows, %zu hosts, %zu git hosts, %zu registries", (unsigned long long)counts.flows,
		   counts.hosts, counts.git_hosts, counts.registries);

	tap_result(crgw_learner_draft(l, 0, "line one\nline two", &yaml) == 0 && yaml, "a draft is written");
	tap_result(yaml && !strncmp(yaml, "# line one\n# line two\nversion: 1\n", 33),
		   "the header comes first, as comments");
	tap_result(
	    yaml &&
		strstr(yaml,
		       "- host: \"a.pkgs.test\"  # 1 connection (connect), 1 DNS answer\n        ports: [443]\n") &&
		strstr(yaml, "- host: \"c.pkgs.test\"  # 1 connection (tls)\n        ports: [8443]\n") &&
		strstr(yaml, "- host: \"203.0.113.7\"  # 1 connection (tcp)\n        ports: [22]\n") &&
		strstr(yaml, "- host: \"only-resolved.test\"  # 1 DNS answer; resolved only") &&
		strstr(yaml, "- \"git.test\"  # 1 request\n  push: false") && strstr(yaml, "npm:") &&
		strstr(yaml, "- \"npm.test\""),
	    "exact hosts with the ports used and how often, git hosts, the registry and its host");
	p = yaml ? compiled(yaml) : NULL;
	tap_result(p && allows_all(p), "the draft compiles and allows every learned flow");
	crgw_policy_unref(p);
	free(yaml);

	tap_result(crgw_learner_draft(l, 3, NULL, &yaml) == 0 && strstr(yaml, "- host: \"*.pkgs.test\"") &&
		       strstr(yaml, "ports: [80, 443, 8443]") && !strstr(yaml, "\"a.pkgs.test\"") &&
		       strstr(yaml, "# 3 hosts: a.pkgs.test b.pkgs.test c.pkgs.test"),
		   "--collapse 3: three siblings become *.pkgs.test with the union of their ports");
	p = yaml ? compiled(yaml) : NULL;
	tap_result(p && allows_all(p), "the collapsed draft compiles and allows every learned flow");
	crgw_policy_unref(p);
	free(yaml);
	tap_result(crgw_learner_draft(l, 2, NULL, &yaml) == 0 && !strstr(yaml, "\"*.test\""),
		   "--collapse 2 never makes a wildcard over a one-label parent (*.test)");
	free(yaml);

	/* YAML ends a comment at CR, U+0085, U+2028 and U+2029 too: none may end a header line early. */
	static const char *const breaks[] = {"\r", "\xc2\x85", "\xe2\x80\xa8", "\xe2\x80\xa9"};
	static const char want[] = "# from x?git: {hosts: [evil.test]} #??\n# line two\nversion: 1\n";

	for (size_t i = 0; i < sizeof(breaks) / sizeof(breaks[0]); i++) {
		char header[200];

		snprintf(header, sizeof(header), "from x%sgit: {hosts: [evil.test]} #\x1b\x7f\nline two", breaks[i]);
		yaml = NULL;
		p = crgw_learner_draft(l, 0, header, &yaml) == 0 ? compiled(yaml) : NULL;
		tap_result(p && !crgw_policy_git_host_allowed(p, "evil.test") &&
			       crgw_policy_git_host_allowed(p, "git.test") && !strncmp(yaml, want, strlen(want)),
			   "a line break in the header (%zu) is written as '?' and the draft is unchanged by it", i);
		crgw_policy_unref(p);
		free(yaml);
	}
	tap_result(feed(l, "{\"event\":\"decision\",\"service\":\"git\",\"dst_host\":\"g.test\\\"\\nregistries: {}\","
			   "\"action\":\"allow\"}") == 0 &&
		       feed(l, "{\"event\":\"decision\",\"service\":\"registry\",\"registry\":\"pip\",\"dst_host\":"
			       "\"p.test\\\"]\",\"action\":\"allow\"}") == 0 &&
		       feed(l, "{\"event\":\"decision\",\"service\":\"git\",\"dst_host\":\"203.0.113.9\",\"action\":"
			       "\"allow\"}") == 0,
		   "git and registry hosts that are not names (a quote, a line break, an address) are not learned");
	crgw_learner_free(l);

	/* Bounds: ports per host. */
	l = crgw_learner_new();
	int rc = 0;

	for (unsigned port = 1; port <= 1025 && rc >= 0; port++) {
		char line[200];

		snprintf(line, sizeof(line),
			 "{\"event\":\"decision\",\"service\":\"connect\",\"dst_host\":\"many.test\",\"dst_port\":%u,"
			 "\"action\":\"allow\",\"reason_code\":null}",
			 port);
		rc = feed(l, line);
	}
	tap_result(rc == -E2BIG, "more than 1,024 ports for one host is refused, not grown without bound");
	crgw_learner_free(l);
	return tap_done();
}
