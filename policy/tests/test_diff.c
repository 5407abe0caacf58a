/* SPDX-License-Identifier: Apache-2.0 */
/*
 * policy diff's pure half: the audit line reader (escapes, nesting, wrong types, truncation), the replay of
 * every kind of audited flow through a policy, the rule-by-rule changes and the reach summary.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/policy_diff.h"
#include "tap.h"

struct compiled {
	char *json;
	size_t len;
	struct crgw_policy *policy;
};

static struct compiled compile(const char *yaml)
{
	struct compiled out = {0};
	struct crgw_compiled *c = NULL;
	char err[256];

	if (crgw_policy_compile(yaml, strlen(yaml), NULL, &c) || c->nerrors) {
		printf("# compile failed: %s\n", c && c->ndiags ? c->diags[0].message : "?");
		crgw_compiled_free(c);
		return out;
	}
	out.json = strdup(c->json);
	out.len = c->json_len;
	if (crgw_policy_load(c->json, c->json_len, &out.policy, err, sizeof(err)))
		printf("# load: %s\n", err);
	crgw_compiled_free(c);
	return out;
}

static void release(struct compiled *c)
{
	free(c->json);
	crgw_policy_unref(c->policy);
}

static int parse(const char *line, struct crgw_audit_flow *f)
{
	return crgw_audit_flow_parse(line, strlen(line), f);
}

static void test_reader(void)
{
	struct crgw_audit_flow f;
	static const char *const bad[] = {
	    "",
	    "not json",
	    "[1,2]",
	    "{\"event\":\"decision\"",
	    "{\"event\":\"decision\"} trailing",
	    "{\"event\":1}",
	    "{\"dst_port\":\"443\"}",
	    "{\"dst_port\":70000}",
	    "{\"dst_port\":-1}",
	    "{\"event\":\"a\\u0000b\"}",
	    "{\"event\":\"\\ud800\"}",
	    "{\"event\":\"\\q\"}",
	    "{\"event\":\"tab\there\"}",
	    "{\"x\":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}",
	    "{\"x\":tru}",
	    "{\"x\":1.}",
	    "{\"event\" \"decision\"}",
	    "{,}",
	    /* A ts is copied into a draft's comment and shown: only RFC 3339's shape, nothing that ends a line. */
	    "{\"ts\":\"2026-01-01T00:00:00Z\\r#\"}",
	    "{\"ts\":\"2026-01-02\\rgit: {hosts: [evil.test]} #\"}",
	    "{\"ts\":\"2026-01-01T00:00:00\\u001b[2JZ\"}",
	    "{\"ts\":\"2026-01-01T00:00:00Z\\u007f\"}",
	    "{\"ts\":\"2026-01-01T00:00:00Z\\u0085\"}",
	    "{\"ts\":\"2026-01-01T00:00:00Z\\u2028x: 1\"}",
	    "{\"ts\":\"\"}",
	    "{\"ts\":\"2026-01-01\"}",
	    "{\"ts\":\"2026-01-01 00:00:00Z\"}",
	    "{\"ts\":\"2026-13-01T00:00:00Z\"}",
	    "{\"ts\":\"2026-01-01T24:00:00Z\"}",
	    "{\"ts\":\"2026-01-01T00:00:00.Z\"}",
	    "{\"ts\":\"2026-01-01T00:00:00.1234567890Z\"}",
	    "{\"ts\":\"2026-01-01T00:00:00+0100\"}",
	    "{\"ts\":\"2026-01-01T00:00:00+01:00Z\"}",
	    "{\"ts\":\"2026-01-01T00:00:00z\"}",
	};
	static const char *const times[] = {
	    "2026-11-22T15:54:41Z",	 "2026-11-22T15:54:41.123456789Z", "2026-11-22T15:54:41.5+05:30",
	    "2026-11-22T15:54:41-00:00", "2016-12-31T23:59:60Z",
	};

	tap_result(
	    parse("{\"ts\":\"2026-11-22T15:54:41.021867Z\",\"schema\":1,\"event\":\"decision\",\"service\":\"connect\","
		  "\"dst_host\":\"allowed.test\",\"dst_ip\":\"203.0.113.10\",\"dst_port\":443,\"action\":\"allow\","
		  "\"reason_code\":null,\"rule\":\"sandbox.network.allow[0]\",\"limits\":{\"memory_bytes\":null,"
		  "\"x\":[1,2.5e3,{\"y\":\"\\\"}\"}]},\"count\":3}",
		  &f) == 0 &&
		!strcmp(f.event, "decision") && !strcmp(f.service, "connect") && !strcmp(f.host, "allowed.test") &&
		!strcmp(f.ip, "203.0.113.10") && f.port == 443 && f.schema == 1 && !strcmp(f.action, "allow") &&
		f.reason[0] == '\0' && !strcmp(f.rule, "sandbox.network.allow[0]") &&
		!strcmp(f.ts, "2026-11-22T15:54:41.021867Z"),
	    "a proxy decision: every field read, nested objects and unknown keys stepped over");
	tap_result(parse(" { \"event\" : \"decision\" , \"dst_host\" : \"a\\u00e9\\ud83d\\ude00\\/\" } ", &f) == 0 &&
		       !strcmp(f.host, "a\xc3\xa9\xf0\x9f\x98\x80/"),
		   "escapes decoded to UTF-8 (\\u00e9, a surrogate pair, \\/), whitespace anywhere");
	tap_result(parse("{\"event\":\"decision\",\"event\":\"connection_end\"}", &f) == 0 &&
		       !strcmp(f.event, "connection_end"),
		   "a repeated key: the last one counts");
	tap_result(parse("{\"ev\\u0065nt\":\"decision\"}", &f) == 0 && f.event[0] == '\0',
		   "a key spelled with an escape is not one of ours");
	tap_result(parse("{}", &f) == 0 && f.event[0] == '\0' && f.port == 0, "an empty object reads as no fields");
	{
		char line[600];

		snprintf(line, sizeof(line), "{\"event\":\"%0300d\"}", 7);
		tap_result(parse(line, &f) == -EINVAL, "a field longer than its room is refused, not cut");
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		tap_result(parse(bad[i], &f) == -EINVAL, "refused: %s", bad[i][0] ? bad[i] : "(empty line)");
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		char line[200];

		snprintf(line, sizeof(line), "{\"ts\":\"%s\"}", times[i]);
		tap_result(parse(line, &f) == 0 && !strcmp(f.ts, times[i]), "ts read: %s", times[i]);
	}
}

static void test_text_safe(void)
{
	/* C0, DEL, C1 (U+0085), U+2028, U+2029, U+202E, U+2066, U+2069 and a stray byte; NBSP, U+2027, é kept. */
	static const char in[] = "a\x1b[31mb\r\n\x7f\xc2\x85\xc2\xa0\xe2\x80\xa8\xe2\x80\xa9\xe2\x80\xae"
				 "\xe2\x81\xa6\xe2\x81\xa9\xe2\x80\xa7\xff\xc3\xa9z";
	char out[sizeof(in)];

	crgw_audit_text_safe(out, sizeof(out), in, sizeof(in) - 1);
	tap_result(!strcmp(out, "a?[31mb????\xc2\xa0?????\xe2\x80\xa7?\xc3\xa9z"),
		   "text made safe to show: controls, line breaks, bidi controls and stray bytes become '?'");
	crgw_audit_text_safe(out, 3, "a\xc3\xa9", 3);
	tap_result(!strcmp(out, "a"), "a character that does not fit is left out whole, not cut");
	crgw_audit_text_safe(out, sizeof(out), "x\0y", 3);
	tap_result(!strcmp(out, "x?y"), "a NUL within the length is shown as '?'");

	/* A Latin-1 byte, a surrogate, an overlong '/', a cut sequence; controls and valid UTF-8 kept as they are. */
	static const char bad[] = "caf\xe9\x1b\xed\xa0\x80\xc0\xaf\xc3\xa9\xe2\x82";
	char fixed[3 * sizeof(bad)];
	size_t n = crgw_text_utf8_repair(fixed, bad, sizeof(bad) - 1);

	tap_result(n == 30 && !memcmp(fixed, "caf\xef\xbf\xbd\x1b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
				       "\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd", n),
		   "UTF-8 repaired for JSON: each byte that is no part of a sequence is U+FFFD (%zu bytes)", n);
}

static const char OLD[] = "version: 1\n"
			  "sandbox:\n"
			  "  network:\n"
			  "    default: deny\n"
			  "    allow:\n"
			  "      - host: allowed.test\n"
			  "        ports: [80, 443]\n"
			  "      - host: other.test\n"
			  "        ports: [80]\n"
			  "      - host: \"*.pkgs.test\"\n"
			  "      - host: 10.20.0.0/16\n"
			  "        ports: [5432]\n"
			  "    deny:\n"
			  "      - host: bad.pkgs.test\n"
			  "git:\n"
			  "  hosts: [git.test]\n"
			  "  push: false\n"
			  "registries:\n"
			  "  npm:\n"
			  "    enable: true\n"
			  "    allowed_hosts: [npm.test]\n"
			  "    fallback: deny\n";

static const char NEW[] = "version: 1\n"
			  "sandbox:\n"
			  "  network:\n"
			  "    default: deny\n"
			  "    allow:\n"
			  "      - host: other.test\n"
			  "        ports: [80, 443]\n"
			  "      - host: allowed.test\n"
			  "        ports: [443]\n"
			  "      - host: \"*.pkgs.test\"\n"
			  "    deny:\n"
			  "      - host: bad.pkgs.test\n"
			  "git:\n"
			  "  hosts: [git.test, git2.test]\n"
			  "  push: true\n"
			  "registries:\n"
			  "  npm:\n"
			  "    enable: true\n"
			  "    allowed_hosts: [npm.test]\n"
			  "    fallback: allow\n";

struct replay_case {
	const char *line;
	enum crgw_replay_outcome old_outcome, new_outcome;
	const char *new_rule;
};

static const struct replay_case REPLAYS[] = {
    {"{\"event\":\"decision\",\"service\":\"dns\",\"dst_host\":\"allowed.test\",\"action\":\"allow\"}",
     CRGW_REPLAY_ALLOW, CRGW_REPLAY_ALLOW, "sandbox.network.allow[1]"},
    {"{\"event\":\"decision\",\"service\":\"dns\",\"dst_host\":\"denied.test\",\"action\":\"deny\","
     "\"reason_code\":\"host_not_allowed\"}",
     CRGW_REPLAY_DENY, CRGW_REPLAY_DENY, "sandbox.network.default"},
    {"{\"event\":\"decision\",\"service\":\"dns\",\"dst_host\":\"allowed.test\",\"dst_ip\":\"127.0.0.3\","
     "\"action\":\"deny\",\"reason_code\":\"private_address_blocked\"}",
     CRGW_REPLAY_DENY, CRGW_REPLAY_DENY, NULL},
    {"{\"event\":\"decision\",\"service\":\"http\",\"dst_host\":\"allowed.test\",\"dst_ip\":\"203.0.113.10\","
     "\"dst_port\":80,\"action\":\"allow\"}",
     CRGW_REPLAY_ALLOW, CRGW_REPLAY_DENY, "sandbox.network.default"},
    {"{\"event\":\"decision\",\"service\":\"tls\",\"dst_host\":\"other.test\",\"dst_port\":443,\"action\":\"deny\","
     "\"reason_code\":\"port_not_allowed\"}",
     CRGW_REPLAY_DENY, CRGW_REPLAY_ALLOW, "sandbox.network.allow[0]"},
    {"{\"event\":\"decision\",\"service\":\"connect\",\"dst_ip\":\"10.20.3.4\",\"dst_port\":5432,\"action\":\"allow\"}",
     CRGW_REPLAY_ALLOW, CRGW_REPLAY_DENY, "sandbox.network.default"},
    {"{\"event\":\"decision\",\"service\":\"tcp\",\"dst_host\":\"x.pkgs.test\",\"dst_port\":443,\"action\":\"allow\"}",
     CRGW_REPLAY_ALLOW, CRGW_REPLAY_ALLOW, "sandbox.network.allow[2]"},
    {"{\"event\":\"decision\",\"service\":\"connect\",\"dst_host\":\"bad.pkgs.test\",\"dst_port\":443,"
     "\"action\":\"deny\",\"reason_code\":\"host_not_allowed\"}",
     CRGW_REPLAY_DENY, CRGW_REPLAY_DENY, "sandbox.network.deny[0]"},
    {"{\"event\":\"decision\",\"service\":\"git\",\"dst_host\":\"git2.test\",\"operation\":\"fetch\","
     "\"action\":\"deny\",\"reason_code\":\"host_not_allowed\"}",
     CRGW_REPLAY_DENY, CRGW_REPLAY_ALLOW, "git.hosts"},
    {"{\"event\":\"decision\",\"service\":\"git\",\"dst_host\":\"git.test\",\"operation\":\"push\","
     "\"action\":\"deny\",\"reason_code\":\"request_invalid\",\"ref\":\"refs/heads/main\"}",
     CRGW_REPLAY_DENY, CRGW_REPLAY_ALLOW, "git.hosts"},
    {"{\"event\":\"decision\",\"service\":\"git\",\"dst_host\":\"git.test\",\"operation\":\"push\","
     "\"action\":\"deny\",\"reason_code\":\"request_invalid\",\"ref\":\"refs/notes/x\"}",
     CRGW_REPLAY_DENY, CRGW_REPLAY_DENY, "git.push_refs"},
    {"{\"event\":\"decision\",\"service\":\"registry\",\"registry\":\"npm\",\"dst_host\":\"npm.test\","
     "\"package\":\"left-pad\",\"version\":\"1.3.0\",\"action\":\"deny\",\"reason_code\":\"lockfile_violation\"}",
     CRGW_REPLAY_DENY, CRGW_REPLAY_ALLOW, "registries.npm.fallback"},
    {"{\"event\":\"decision\",\"service\":\"registry\",\"registry\":\"npm\",\"dst_host\":\"npm.test\","
     "\"package\":\"left-pad\",\"action\":\"allow\",\"reason_code\":null}",
     CRGW_REPLAY_ALLOW, CRGW_REPLAY_ALLOW, "registries.npm.allowed_hosts"},
    {"{\"event\":\"decision\",\"service\":\"registry\",\"registry\":\"pip\",\"package\":\"six\","
     "\"version\":\"1.0\",\"action\":\"deny\",\"reason_code\":\"registry_not_allowed\"}",
     CRGW_REPLAY_DENY, CRGW_REPLAY_DENY, "registries.pip"},
    {"{\"event\":\"decision\",\"service\":\"registry\",\"registry\":\"npm\",\"dst_host\":\"elsewhere.test\","
     "\"package\":\"left-pad\",\"version\":\"1.3.0\",\"action\":\"deny\",\"reason_code\":\"host_not_allowed\"}",
     CRGW_REPLAY_DENY, CRGW_REPLAY_DENY, "registries.npm.allowed_hosts"},
    /* What the policy alone does not decide is not replayed. */
    {"{\"event\":\"decision\",\"service\":\"dns\",\"dst_host\":\"allowed.test\",\"action\":\"deny\","
     "\"reason_code\":\"rate_limited\"}",
     CRGW_REPLAY_SKIP, CRGW_REPLAY_SKIP, NULL},
    {"{\"event\":\"decision\",\"service\":\"registry\",\"registry\":\"npm\",\"package\":\"a\",\"version\":\"1\","
     "\"action\":\"deny\",\"reason_code\":\"integrity_mismatch\"}",
     CRGW_REPLAY_SKIP, CRGW_REPLAY_SKIP, NULL},
    {"{\"event\":\"connection_end\",\"service\":\"connect\",\"dst_host\":\"allowed.test\",\"dst_port\":443}",
     CRGW_REPLAY_SKIP, CRGW_REPLAY_SKIP, NULL},
    {"{\"event\":\"decision\",\"service\":\"secrets\",\"dst_host\":\"allowed.test\",\"action\":\"allow\"}",
     CRGW_REPLAY_SKIP, CRGW_REPLAY_SKIP, NULL},
    {"{\"event\":\"decision\",\"service\":\"connect\",\"dst_host\":\"allowed.test\",\"action\":\"allow\"}",
     CRGW_REPLAY_SKIP, CRGW_REPLAY_SKIP, NULL},
    {"{\"event\":\"decision\",\"service\":\"connect\",\"dst_host\":\"0x7f.0.0.1\",\"dst_port\":443,"
     "\"action\":\"deny\",\"reason_code\":\"host_not_allowed\"}",
     CRGW_REPLAY_SKIP, CRGW_REPLAY_SKIP, NULL},
};

static const char *outcome_str(enum crgw_replay_outcome o)
{
	return o == CRGW_REPLAY_SKIP	? "skip"
	       : o == CRGW_REPLAY_ALLOW ? "allow"
	       : o == CRGW_REPLAY_WARN	? "warn"
					: "deny";
}

static void test_replay(const struct compiled *o, const struct compiled *n)
{
	for (size_t i = 0; i < sizeof(REPLAYS) / sizeof(REPLAYS[0]); i++) {
		const struct replay_case *c = &REPLAYS[i];
		struct crgw_audit_flow f;
		struct crgw_decision od, nd;
		enum crgw_replay_outcome oo = CRGW_REPLAY_SKIP, no = CRGW_REPLAY_SKIP;
		bool read = parse(c->line, &f) == 0;

		if (read) {
			oo = crgw_policy_replay(o->policy, NULL, &f, &od);
			no = crgw_policy_replay(n->policy, NULL, &f, &nd);
		}
		tap_result(read && oo == c->old_outcome && no == c->new_outcome &&
			       (!c->new_rule || (nd.rule && !strcmp(nd.rule, c->new_rule))),
			   "replay %s: old %s, new %s by %s (got %s, %s by %s)", c->line + 23,
			   outcome_str(c->old_outcome), outcome_str(c->new_outcome), c->new_rule ? c->new_rule : "-",
			   outcome_str(oo), outcome_str(no), no != CRGW_REPLAY_SKIP && nd.rule ? nd.rule : "-");
	}
}

struct seen {
	char text[4096];
	int n;
};

static void on_change(void *arg, const struct crgw_policy_change *c)
{
	struct seen *s = arg;
	size_t at = strlen(s->text);

	snprintf(s->text + at, sizeof(s->text) - at, "%s %s%s%s; ", crgw_change_kind_str(c->kind), c->path,
		 c->old_path ? " was " : "", c->old_path ? c->old_path : "");
	s->n++;
}

static void on_reach(void *arg, const struct crgw_reach_flip *f)
{
	struct seen *s = arg;
	size_t at = strlen(s->text);

	snprintf(s->text + at, sizeof(s->text) - at, "%s %s:%u; ", f->now_allowed ? "+" : "-", f->host, f->port);
	s->n++;
}

static void test_rules(const struct compiled *o, const struct compiled *n)
{
	struct seen s = {0};
	int rc = crgw_policy_diff_rules(o->json, o->len, n->json, n->len, on_change, &s);
	/* In the compiled document's order: rules sorted by host. */
	static const char want[] = "changed sandbox.network.allow[1] was sandbox.network.allow[0]; "
				   "changed sandbox.network.allow[0] was sandbox.network.allow[1]; "
				   "removed sandbox.network.allow[3]; "
				   "added git.hosts; "
				   "changed git.push; "
				   "changed registries.npm.fallback; ";

	tap_result(rc == 6 && !strcmp(s.text, want), "rule changes in the author's paths, moved rules named (%d): %s",
		   rc, s.text);
	memset(&s, 0, sizeof(s));
	rc = crgw_policy_diff_rules(o->json, o->len, o->json, o->len, on_change, &s);
	tap_result(rc == 0 && s.n == 0, "a policy against itself: no change");
	tap_result(crgw_policy_diff_rules("{", 1, n->json, n->len, on_change, &s) == -EINVAL,
		   "a document that does not parse is refused");

	memset(&s, 0, sizeof(s));
	rc = crgw_policy_diff_reach(o->json, o->len, o->policy, n->json, n->len, n->policy, NULL, on_reach, &s);
	static const char want_reach[] = "- 10.20.0.0/16:5432; "
					 "- allowed.test:80; "
					 "+ other.test:443; ";

	tap_result(rc == 3 && !strcmp(s.text, want_reach), "reach: exactly the destinations that flip (%d): %s", rc,
		   s.text);
	memset(&s, 0, sizeof(s));
	rc = crgw_policy_diff_reach(o->json, o->len, o->policy, o->json, o->len, o->policy, NULL, on_reach, &s);
	tap_result(rc == 0, "reach of a policy against itself: nothing flips");
}

/* Two rules for one host (another port, another spelling of the name): swapped, they only moved. */
static void test_twin_rules(void)
{
	struct compiled a = compile("version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n"
				    "      - { host: h.example.test, ports: [443] }\n"
				    "      - { host: H.example.test., ports: [80] }\n"),
			b = compile("version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n"
				    "      - { host: H.example.test., ports: [80] }\n"
				    "      - { host: h.example.test, ports: [443, 8443] }\n");
	struct seen s = {0};
	int rc;

	if (!a.policy || !b.policy) {
		tap_result(false, "the twin-rule policies compile");
		release(&a);
		release(&b);
		return;
	}
	rc = crgw_policy_diff_rules(a.json, a.len, b.json, b.len, on_change, &s);
	tap_result(rc == 1 && strstr(s.text, "changed sandbox.network.allow[1] was sandbox.network.allow[0]") &&
		       !strstr(s.text, "80]"),
		   "of two rules for one host, the one that changed is named, the one that moved is not (%d): %s", rc,
		   s.text);
	memset(&s, 0, sizeof(s));
	rc = crgw_policy_diff_rules(b.json, b.len, a.json, a.len, on_change, &s);
	tap_result(rc == 1, "and the same the other way round (%d): %s", rc, s.text);
	release(&a);
	release(&b);
}

/* `*.x` -> `**.x` allows every deeper name: the summary says so, once, for names two labels under. */
static void test_wildcard_depth(void)
{
	struct compiled a = compile("version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n"
				    "      - { host: '*.example.test', ports: [443] }\n"),
			b = compile("version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n"
				    "      - { host: '**.example.test', ports: [443] }\n"),
			c = compile("version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n"
				    "      - { host: '*.example.test', ports: [443] }\n"
				    "      - { host: '**.example.test', ports: [443] }\n");
	struct seen s = {0};
	int rc;

	if (!a.policy || !b.policy || !c.policy) {
		tap_result(false, "the wildcard policies compile");
		goto out;
	}
	rc = crgw_policy_diff_reach(a.json, a.len, a.policy, b.json, b.len, b.policy, NULL, on_reach, &s);
	tap_result(rc == 1 && !strcmp(s.text, "+ *.*.example.test:443; "),
		   "*. -> **.: names two labels under are newly allowed, one label under unchanged (%d): %s", rc,
		   s.text);
	memset(&s, 0, sizeof(s));
	rc = crgw_policy_diff_reach(b.json, b.len, b.policy, a.json, a.len, a.policy, NULL, on_reach, &s);
	tap_result(rc == 1 && !strcmp(s.text, "- *.*.example.test:443; "), "**. -> *.: and denied back (%d): %s", rc,
		   s.text);
	memset(&s, 0, sizeof(s));
	rc = crgw_policy_diff_reach(a.json, a.len, a.policy, c.json, c.len, c.policy, NULL, on_reach, &s);
	tap_result(rc == 1 && !strcmp(s.text, "+ *.*.example.test:443; "),
		   "both wildcards over one name are probed once (%d): %s", rc, s.text);
out:
	release(&a);
	release(&b);
	release(&c);
}

/* Reach of two network rules under one policy each; `want` is the whole list of flips. */
static void check_net_reach(const char *old_rules, const char *new_rules, const char *want, const char *what)
{
	char a_yaml[512], b_yaml[512];
	struct compiled a, b;
	struct seen s = {0};
	int rc = -1;

	snprintf(a_yaml, sizeof(a_yaml), "version: 1\nsandbox:\n  network:\n    default: deny\n%s", old_rules);
	snprintf(b_yaml, sizeof(b_yaml), "version: 1\nsandbox:\n  network:\n    default: deny\n%s", new_rules);
	a = compile(a_yaml);
	b = compile(b_yaml);
	if (a.policy && b.policy)
		rc = crgw_policy_diff_reach(a.json, a.len, a.policy, b.json, b.len, b.policy, NULL, on_reach, &s);
	tap_result(rc >= 0 && !strcmp(s.text, want), "%s (%d): %s", what, rc, s.text);
	release(&a);
	release(&b);
}

/* A range the gateway refuses whatever a policy says flips nothing, and the addresses around it still do. */
static void test_reach_blocked(void)
{
	struct compiled a = compile("version: 1\nsandbox:\n  network:\n    default: deny\n"),
			b = compile("version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n"
				    "      - { host: 10.0.0.0/8, ports: [80] }\n");
	struct crgw_blocklist *blocked = crgw_blocklist_new();
	struct seen s = {0};
	int rc = -1;

	if (a.policy && b.policy && blocked && !crgw_blocklist_add(blocked, "10.0.0.0/16", NULL))
		rc = crgw_policy_diff_reach(a.json, a.len, a.policy, b.json, b.len, b.policy, blocked, on_reach, &s);
	tap_result(rc == 1 && !strcmp(s.text, "+ 10.1.0.0-10.255.255.255:80; "),
		   "reach with a blocked range: only what the gateway would let through is newly allowed (%d): %s", rc,
		   s.text);
	crgw_blocklist_free(blocked);
	release(&a);
	release(&b);
}

/* A network keeps its first address when its prefix changes: the addresses past either end must be probed. */
static void test_network_ranges(void)
{
	check_net_reach("    allow:\n      - { host: 10.0.0.0/16, ports: [5432] }\n",
			"    allow:\n      - { host: 10.0.0.0/8, ports: [5432] }\n", "+ 10.1.0.0-10.255.255.255:5432; ",
			"reach: a network widened /16 -> /8 names the range it opens");
	check_net_reach("    allow:\n      - { host: 10.0.0.0/8, ports: [5432] }\n",
			"    allow:\n      - { host: 10.0.0.0/16, ports: [5432] }\n",
			"- 10.1.0.0-10.255.255.255:5432; ",
			"reach: a network narrowed /8 -> /16 names the range it closes");
	check_net_reach("    allow:\n      - { host: \"2001:db8::/48\", ports: [443] }\n",
			"    allow:\n      - { host: \"2001:db8::/32\", ports: [443] }\n",
			"+ [2001:db8:1::]-[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:443; ",
			"reach: an IPv6 network widened names the range it opens, bracketed");
	/* 0.0.0.0 is special (unspecified): its own probe is denied either way, the ranges after it are not. */
	check_net_reach("    allow:\n      - { host: 0.0.0.0/0, ports: [443] }\n",
			"    allow:\n      - { host: a.test, ports: [443] }\n",
			"+ a.test:443; - 1.0.0.0-126.255.255.255:443; - 128.0.0.0-169.253.255.255:443; "
			"- 169.255.0.0-223.255.255.255:443; ",
			"reach: 0.0.0.0/0 removed names every range it admitted, special ranges excepted");
	check_net_reach(
	    "    allow:\n      - { host: 10.0.0.0/8, ports: [443] }\n",
	    "    allow:\n      - { host: 10.0.0.0/8, ports: [443] }\n    deny:\n      - host: 10.9.0.0/16\n",
	    "- 10.9.0.0/16:443; ", "reach: a deny inside an allowed network flips that network only");
}

static void test_default_allow(void)
{
	struct crgw_compiled *c = NULL;
	struct crgw_compile_opts opts = {.allow_default_allow = true};
	const char yaml[] = "version: 1\nsandbox:\n  network:\n    default: allow\n    deny:\n      - host: bad.test\n";
	struct compiled o = compile(OLD), n = {0};
	struct seen s = {0};
	char err[256];

	if (crgw_policy_compile(yaml, strlen(yaml), &opts, &c) == 0 && !c->nerrors) {
		n.json = strdup(c->json);
		n.len = c->json_len;
		crgw_policy_load(c->json, c->json_len, &n.policy, err, sizeof(err));
	}
	crgw_compiled_free(c);
	int rc = n.policy ? crgw_policy_diff_reach(o.json, o.len, o.policy, n.json, n.len, n.policy, NULL, on_reach, &s)
			  : -1;

	tap_result(rc > 0 && strstr(s.text, "+ *:0; ") && strstr(s.text, "+ *:443; ") &&
		       strstr(s.text, "- bad.pkgs.test") == NULL,
		   "default deny -> allow (deny bad.test only): every other host and port newly allowed, bad.test "
		   "still denied (%d): %s",
		   rc, s.text);
	release(&o);
	release(&n);
}

/* A refused address that a new CIDR rule admits is opened by that rule, not by the name's. */
static void test_address_opened(void)
{
	struct compiled o = compile("version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n"
				    "      - host: mixed.test\n        ports: [80]\n"),
			n = compile("version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n"
				    "      - host: mixed.test\n        ports: [80]\n"
				    "      - host: 127.0.0.0/8\n        ports: [80]\n");
	static const char refused[] = "{\"event\":\"decision\",\"service\":\"dns\",\"dst_host\":\"mixed.test\","
				      "\"dst_ip\":\"127.0.0.3\",\"action\":\"deny\","
				      "\"reason_code\":\"private_address_blocked\"}";
	static const char allowed[] = "{\"event\":\"decision\",\"service\":\"dns\",\"dst_host\":\"mixed.test\","
				      "\"dst_ip\":\"203.0.113.10\",\"action\":\"allow\",\"reason_code\":null}";
	struct crgw_audit_flow f;
	struct crgw_decision od = {0}, nd = {0};
	enum crgw_replay_outcome oo = CRGW_REPLAY_SKIP, no = CRGW_REPLAY_SKIP;

	if (o.policy && n.policy && parse(refused, &f) == 0) {
		oo = crgw_policy_replay(o.policy, NULL, &f, &od);
		no = crgw_policy_replay(n.policy, NULL, &f, &nd);
	}
	tap_result(oo == CRGW_REPLAY_DENY && no == CRGW_REPLAY_ALLOW && nd.rule &&
		       !strcmp(nd.rule, "sandbox.network.allow[1]"),
		   "a refused 127.0.0.3 of mixed.test is opened by the new CIDR rule allow[1] (got %s)",
		   nd.rule ? nd.rule : "-");
	no = CRGW_REPLAY_SKIP;
	if (n.policy && parse(allowed, &f) == 0)
		no = crgw_policy_replay(n.policy, NULL, &f, &nd);
	tap_result(no == CRGW_REPLAY_ALLOW && nd.rule && !strcmp(nd.rule, "sandbox.network.allow[0]"),
		   "an address that was never refused stays credited to the name's rule allow[0] (got %s)",
		   nd.rule ? nd.rule : "-");
	release(&o);
	release(&n);
}

int main(void)
{
	struct compiled o = compile(OLD), n = compile(NEW);

	test_reader();
	test_text_safe();
	if (!o.policy || !n.policy) {
		tap_result(false, "the test policies compile");
		return tap_done();
	}
	test_replay(&o, &n);
	test_rules(&o, &n);
	test_twin_rules();
	test_wildcard_depth();
	test_default_allow();
	test_network_ranges();
	test_reach_blocked();
	test_address_opened();
	release(&o);
	release(&n);
	return tap_done();
}
