/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The loader refuses CompiledPolicy documents the compiler would never write (a bad version, network rule,
 * git or secrets section) even when their policy_hash is right: the hash only says the document is
 * intact, not that the compiler wrote it, so each tampered document here is resealed before it is loaded.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiled.h"
#include "crgw/policy.h"
#include "tap.h"

static const char base_yaml[] = "version: 1\n"
				"sandbox:\n"
				"  network:\n"
				"    default: deny\n"
				"    allow:\n"
				"      - host: api.example.com\n"
				"git:\n"
				"  hosts: [git.example.com]\n"
				"  push: true\n"
				"  push_refs: [refs/heads/agent/*, refs/tags/v*]\n"
				"secrets:\n"
				"  - id: tok\n"
				"    allowed_hosts: [api.example.com, \"*.example.org\"]\n";

static char *base_json;

/*
 * Sets the member at `path` ("git.push_refs", "secrets[0].id") of `doc` to `value` (JSON text), or
 * removes it when `value` is NULL; an index one past the end of an array appends. Returns false when the
 * path does not lead anywhere.
 */
static bool set_path(json_t *doc, const char *path, const char *value)
{
	json_t *at = doc, *v = NULL;
	char key[64];

	if (value && !(v = json_loads(value, JSON_DECODE_ANY, NULL)))
		return false;
	for (const char *s = path;;) {
		size_t len = strcspn(s, ".[");
		bool last = s[len] == '\0';

		if (len) {
			snprintf(key, sizeof(key), "%.*s", (int)len, s);
			if (last) {
				if (v)
					return json_object_set_new(at, key, v) == 0;
				return json_object_del(at, key) == 0;
			}
			at = json_object_get(at, key);
		}
		s += len;
		if (*s == '[') {
			size_t i = strtoul(s + 1, (char **)&s, 10);

			s++; /* ']' */
			if (*s == '\0' && v && i == json_array_size(at))
				return json_array_append_new(at, v) == 0;
			if (*s == '\0' && v)
				return json_array_set_new(at, i, v) == 0;
			if (*s == '\0')
				return json_array_remove(at, i) == 0;
			at = json_array_get(at, i);
		}
		if (*s == '.')
			s++;
		if (!at) {
			json_decref(v);
			return false;
		}
	}
}

/* The base document with `path` set to `value`, resealed; loaded. Returns what the loader did. */
static int load_changed(const char *path, const char *value, struct crgw_policy **p, char *err, size_t errlen)
{
	json_t *doc = json_loads(base_json, 0, NULL);
	char *json = NULL, hash[72];
	size_t len;
	int rc = -1;

	*p = NULL;
	if (doc && (!path || set_path(doc, path, value)) && crgw_compiled_seal(doc, &json, &len, hash) == 0)
		rc = crgw_policy_load(json, len, p, err, errlen);
	else
		snprintf(err, errlen, "test setup: cannot set %s", path ? path : "-");
	free(json);
	json_decref(doc);
	return rc;
}

static void refused(const char *path, const char *value, const char *expect)
{
	struct crgw_policy *p;
	char err[256] = "";
	int rc = load_changed(path, value, &p, err, sizeof(err));
	bool ok = rc == -EINVAL && !p && strstr(err, expect);

	tap_result(ok, "%s = %.60s refused: %s", path, value ? value : "(removed)", err);
	if (!ok)
		printf("#   expected an error containing '%s' (rc %d)\n", expect, rc);
	crgw_policy_unref(p);
}

static void document_cases(void)
{
	static const struct {
		const char *path, *value, *expect;
	} cases[] = {
		{ "version", "2", "version: 2 is not supported (only 1 is)" },
		{ "version", "0", "version: 0 is not supported" },
		{ "version", "-1", "version: -1 is not supported" },
		{ "version", "99999999999", "version: 99999999999 is not supported" },
		{ "version", "\"1\"", "version: wrong type" },
		{ "version", "1.0", "version: wrong type" },
		{ "version", NULL, "missing top-level key 'version'" },
		{ "sandbox.network", "{\"default\":\"deny\"}", "sandbox: unknown key 'network'" },
		{ "sandbox.ttl_minutes", "0", "sandbox.ttl_minutes: expected 1..10080" },
		{ "sandbox.learn", "true", "sandbox.learn: only false is ever written" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		refused(cases[i].path, cases[i].value, cases[i].expect);
}

static void network_cases(void)
{
	static const struct {
		const char *path, *value, *expect;
	} cases[] = {
		/* What the compiler refuses in an allow rule: a wildcard over a top-level domain. */
		{ "network.rules[0].host", "\"*.com\"", "network.rules[0].host: an allow wildcard needs at least two labels" },
		{ "network.rules[0].host", "\"**.com\"", "network.rules[0].host: an allow wildcard needs at least two labels" },
		{ "network.rules[0].host", "\"*.API.example.com\"", "network.rules[0].host: not in canonical form" },
		/* Origins the compiler never writes: a gateway rule's name, the other list, other spellings. */
		{ "network.rules[0].origin", "\"gateway.special_addresses\"", "network.rules[0].origin: expected the rule's path" },
		{ "network.rules[0].origin", "\"sandbox.network.default\"", "network.rules[0].origin: expected the rule's path" },
		{ "network.rules[0].origin", "\"sandbox.network.deny[0]\"", "network.rules[0].origin: expected the rule's path, sandbox.network.allow[N]" },
		{ "network.rules[0].origin", "\"sandbox.network.allow[00]\"", "network.rules[0].origin: expected" },
		{ "network.rules[0].origin", "\"sandbox.network.allow[]\"", "network.rules[0].origin: expected" },
		{ "network.rules[0].origin", "\"sandbox.network.allow[-1]\"", "network.rules[0].origin: expected" },
		{ "network.rules[0].origin", "\"sandbox.network.allow[0] \"", "network.rules[0].origin: expected" },
		{ "network.rules[0].origin", "\"sandbox.network.allow[0]x\"", "network.rules[0].origin: expected" },
		{ "network.rules[0].origin", "\"sandbox.network.allow[65536]\"", "network.rules[0].origin: expected" },
		{ "network.rules[0].origin", "\"sandbox.network.allow[123456]\"", "network.rules[0].origin: expected" },
		{ "network.rules[0].origin", "\"\"", "network.rules[0].origin: expected" },
		{ "network.rules[0].origin", "0", "network.rules[0].origin: expected" },
		{ "network.rules[0].origin", NULL, "network.rules[0].origin: expected" },
		{ "network.rules[0].origin", "\"sandbox.network.allow[1]\"", "network.rules: no rule has origin sandbox.network.allow[0]" },
		{ "network.rules[1]", "{\"action\":\"allow\",\"host\":\"b.example.com\",\"ports\":[443],"
				      "\"origin\":\"sandbox.network.allow[0]\"}",
		  "network.rules: origin sandbox.network.allow[0] is used twice" },
		{ "network.rules[1]", "{\"action\":\"deny\",\"host\":\"b.example.com\",\"ports\":[],"
				      "\"origin\":\"sandbox.network.deny[1]\"}",
		  "network.rules: no rule has origin sandbox.network.deny[0]" },
		{ "network.rules[0].reason", "\"a\\nb\"", "network.rules[0].reason: expected 256 bytes at most" },
		{ "network.rules[0].reason", "7", "network.rules[0].reason: expected 256 bytes at most" },
		{ "network.rules[0].ports", "[0]", "network.rules[0].ports[0]: expected ascending ports 1-65535" },
		{ "network.rules[0].ports", "[443,443]", "network.rules[0].ports[1]: expected ascending ports" },
		{ "network.rules[0].ports", "[]", "network.rules[0].ports: an allow rule needs ports" },
		{ "network.default", "\"open\"", "network.default: expected \"deny\" or \"allow\"" },
	};
	char *long_reason = malloc(300), *many = malloc(4097 * 6 + 8);
	size_t n = 1;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		refused(cases[i].path, cases[i].value, cases[i].expect);
	if (!long_reason || !many) {
		free(long_reason);
		free(many);
		return;
	}
	snprintf(long_reason, 300, "\"%0*d\"", 257, 0);
	refused("network.rules[0].reason", long_reason, "network.rules[0].reason: expected 256 bytes at most");
	many[0] = '[';
	for (unsigned p = 1; p <= 4097; p++)
		n += (size_t)snprintf(many + n, 4097 * 6 + 8 - n, "%s%u", p > 1 ? "," : "", p);
	snprintf(many + n, 4097 * 6 + 8 - n, "]");
	refused("network.rules[0].ports", many, "network.rules[0].ports: more than 4096 ports");
	free(long_reason);
	free(many);

	/* More rules than the compiler ever writes: refused before any of them is read. */
	size_t cap = 65537 * 2 + 2;
	char *rules = malloc(cap);

	if (!rules)
		return;
	for (size_t i = 0; i < 65537; i++)
		memcpy(rules + 2 * i, i ? ",0" : "[0", 2);
	memcpy(rules + cap - 2, "]", 2);
	refused("network.rules", rules, "network.rules: more than 65536 rules");
	free(rules);
}

static void git_cases(void)
{
	static const struct {
		const char *path, *value, *expect;
	} cases[] = {
		{ "git.push_refs", "[\"refs/heads/a..b\"]", "git.push_refs[0]: a ref cannot contain '..'" },
		{ "git.push_refs", "[\"heads/*\"]", "git.push_refs[0]: a ref must be a full name" },
		{ "git.push_refs", "[\"refs/heads/*\",\"refs/heads/*/x*\"]", "git.push_refs[1]: a ref pattern may hold at most" },
		{ "git.push_refs", "[\"refs/heads/a b\"]", "git.push_refs[0]: a ref cannot contain a space" },
		{ "git.push_refs", "[\"refs/heads/a\\u0001\"]", "git.push_refs[0]: control character" },
		{ "git.push_refs", "[\"refs/heads/a\\r\\nb\"]", "git.push_refs[0]: control character" },
		{ "git.push_refs", "[\"refs/heads/x.lock\"]", "git.push_refs[0]: a path component cannot end" },
		{ "git.push_refs", "[\"refs/heads/\"]", "git.push_refs[0]: empty path component" },
		{ "git.push_refs", "[\"refs//x\"]", "git.push_refs[0]: empty path component" },
		{ "git.push_refs", "[\"refs/heads/.x\"]", "git.push_refs[0]: a path component cannot begin with '.'" },
		{ "git.push_refs", "[\"refs/heads/x@{1}\"]", "git.push_refs[0]: a ref cannot contain '@{'" },
		{ "git.push_refs", "[\"refs/heads/x.\"]", "git.push_refs[0]: a ref cannot end with '.'" },
		{ "git.push_refs", "[\"refs/tags/*\",\"refs/heads/*\"]", "git.push_refs[1]: not sorted, or repeated" },
		{ "git.push_refs", "[\"refs/heads/*\",\"refs/heads/*\"]", "git.push_refs[1]: not sorted, or repeated" },
		{ "git.push_refs", "[]", "git.push_refs: expected an array of 1 to 4096" },
		{ "git.push_refs", "\"refs/heads/*\"", "git.push_refs: expected an array" },
		{ "git.push_refs", "[1]", "git.push_refs[0]: expected a string" },
		{ "git.push_refs", "[null]", "git.push_refs[0]: expected a string" },
		{ "git.force_push", "\"false\"", "git.force_push: expected true or false" },
		{ "git.force_push", "0", "git.force_push: expected true or false" },
		{ "git.force_push", "null", "git.force_push: expected true or false" },
		{ "git.push", NULL, "git.push: expected true or false" },
		{ "git.push", "\"true\"", "git.push: expected true or false" },
		{ "git.pull", "true", "git: unknown key 'pull'" },
		{ "git.hosts", NULL, "git.hosts: expected an array" },
		{ "git.hosts", "\"git.example.com\"", "git.hosts: expected an array" },
		{ "git.hosts", "[\"Git.example.com\"]", "git.hosts[0]: expected a normalized host name" },
		{ "git.hosts", "[\"git.example.com.\"]", "git.hosts[0]: expected a normalized host name" },
		{ "git.hosts", "[\"git.example.com\",\"10.0.0.1\"]", "git.hosts[1]: expected a normalized host name" },
		{ "git.hosts", "[\"*.example.com\"]", "git.hosts[0]: expected a normalized host name" },
		{ "git.hosts", "[\"\"]", "git.hosts[0]: expected a normalized host name" },
		{ "git.hosts", "[7]", "git.hosts[0]: expected a normalized host name" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		refused(cases[i].path, cases[i].value, cases[i].expect);

	char long_ref[512];

	snprintf(long_ref, sizeof(long_ref), "[\"refs/heads/%0*d\"]", 250, 0);
	refused("git.push_refs", long_ref, "git.push_refs[0]: too long");
}

static void secret_cases(void)
{
	static const struct {
		const char *path, *value, *expect;
	} cases[] = {
		{ "secrets[0].id", "\"Bad ID\"", "secrets[0].id: expected an id" },
		{ "secrets[0].id", NULL, "secrets[0].id: expected an id" },
		{ "secrets[0].id", "\"\"", "secrets[0].id: expected an id" },
		{ "secrets[0].header", "\"Host\"", "secrets[0].header: expected a header name" },
		{ "secrets[0].header", "\"transfer-encoding\"", "secrets[0].header: expected a header name" },
		{ "secrets[0].header", "\"X Bad\"", "secrets[0].header: expected a header name" },
		{ "secrets[0].header", "\"X-Bad\\r\\nX-Evil\"", "secrets[0].header: expected a header name" },
		{ "secrets[0].header", NULL, "secrets[0].header: expected a header name" },
		{ "secrets[0].format", "\"Bearer\"", "secrets[0].format: expected a header value" },
		{ "secrets[0].format", "\"{secret}{secret}\"", "secrets[0].format: expected a header value" },
		{ "secrets[0].format", "\"Bearer {secret}\\r\\nX-Evil: 1\"", "secrets[0].format: expected a header" },
		{ "secrets[0].format", "\"Bearer {secret}\\u007f\"", "secrets[0].format: expected a header value" },
		{ "secrets[0].ttl_seconds", "0", "secrets[0].ttl_seconds: expected 1..86400" },
		{ "secrets[0].ttl_seconds", "86401", "secrets[0].ttl_seconds: expected 1..86400" },
		{ "secrets[0].ttl_seconds", "\"60\"", "secrets[0].ttl_seconds: expected 1..86400" },
		{ "secrets[0].allowed_hosts", "[]", "secrets[0].allowed_hosts: expected a non-empty array" },
		{ "secrets[0].allowed_hosts", NULL, "secrets[0].allowed_hosts: expected a non-empty array" },
		{ "secrets[0].allowed_hosts", "[\"10.0.0.0/8\"]", "secrets[0].allowed_hosts[0]: expected a name" },
		{ "secrets[0].allowed_hosts", "[\"10.0.0.1\"]", "secrets[0].allowed_hosts[0]: expected a name" },
		{ "secrets[0].allowed_hosts", "[\"a.*.example.com\"]", "secrets[0].allowed_hosts[0]: expected a name" },
		{ "secrets[0].allowed_hosts", "[\"api.example.com\",\"API.example.com\"]",
		  "secrets[0].allowed_hosts[1]: not in canonical form" },
		{ "secrets[0].allowed_hosts", "[1]", "secrets[0].allowed_hosts[0]: expected a name or wildcard" },
		{ "secrets[0].allowed_hosts", "[\"*.com\"]",
		  "secrets[0].allowed_hosts[0]: a wildcard over a top-level domain" },
		{ "secrets[0].allowed_hosts", "[\"**.org\"]",
		  "secrets[0].allowed_hosts[0]: a wildcard over a top-level domain" },
		{ "secrets[0].value", "\"hunter2\"", "secrets[0]: unknown key 'value'" },
		{ "secrets[1]", "\"tok\"", "secrets[1]: expected an object" },
		{ "secrets[1]", "{\"id\":\"tok\",\"allowed_hosts\":[\"x.example\"],\"header\":\"Authorization\","
				"\"format\":\"Bearer {secret}\",\"ttl_seconds\":60}",
		  "secrets: id 'tok' is defined more than once" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		refused(cases[i].path, cases[i].value, cases[i].expect);

	/* More secrets than the compiler ever writes. */
	size_t cap = 300 * 128, n = 1;
	char *many = malloc(cap);

	if (!many)
		return;
	many[0] = '[';
	for (unsigned i = 0; i < 257; i++)
		n += (size_t)snprintf(many + n, cap - n,
				      "%s{\"id\":\"s%u\",\"allowed_hosts\":[\"a.example\"],\"header\":\"X\","
				      "\"format\":\"{secret}\",\"ttl_seconds\":1}",
				      i ? "," : "", i);
	snprintf(many + n, cap - n, "]");
	refused("secrets", many, "secrets: more than 256");
	free(many);
}

static void accepted(void)
{
	struct crgw_policy *p;
	char err[256] = "";
	int rc;

	tap_result(load_changed(NULL, NULL, &p, err, sizeof(err)) == 0 && p, "the resealed base document loads %s",
		   err);
	crgw_policy_unref(p);

	/* A deny rule may cover a top-level domain; only allow wildcards need two labels. */
	rc = load_changed("network.rules[1]",
			  "{\"action\":\"deny\",\"host\":\"*.com\",\"ports\":[],\"origin\":\"sandbox.network.deny[0]\"}",
			  &p, err, sizeof(err));
	tap_result(rc == 0 && p, "a deny rule for *.com loads %s", err);
	crgw_policy_unref(p);

	/*
	 * default: allow loads as written, as the compiler writes it under --allow-default-allow: the document
	 * keeps no mark of the flag (docs/policy.md, "The CompiledPolicy").
	 */
	struct crgw_decision d = { .allow = false };
	struct crgw_host h;

	rc = load_changed("network.default", "\"allow\"", &p, err, sizeof(err));
	if (rc == 0 && p && crgw_host_parse("x.com", 5, &h, NULL) == 0)
		crgw_policy_decide(p, NULL, &h, 443, &d);
	tap_result(rc == 0 && p && d.allow, "a document with default allow loads and allows what no rule names %s",
		   err);
	crgw_policy_unref(p);

	/* A document compiled before push_refs and force_push existed. */
	tap_result(load_changed("git.push_refs", NULL, &p, err, sizeof(err)) == 0 && p &&
			   crgw_policy_git_ref_allowed(p, "refs/heads/main", 15) &&
			   crgw_policy_git_ref_allowed(p, "refs/tags/x", 11) &&
			   !crgw_policy_git_ref_allowed(p, "refs/notes/x", 12),
		   "a document without push_refs loads with the default %s", err);
	crgw_policy_unref(p);
	tap_result(load_changed("git.force_push", NULL, &p, err, sizeof(err)) == 0 && p &&
			   !crgw_policy_git_force_push(p),
		   "a document without force_push loads with false %s", err);
	crgw_policy_unref(p);

	/* ... and before git.hosts and secrets' hosts were sorted: read back sorted all the same. */
	rc = load_changed("git.hosts", "[\"x.example\",\"b.example\",\"x.example\"]", &p, err, sizeof(err));
	tap_result(rc == 0 && p && crgw_policy_git_host_count(p) == 3 &&
			   strcmp(crgw_policy_git_host(p, 0), "b.example") == 0 &&
			   crgw_policy_git_host_allowed(p, "x.example") && crgw_policy_git_host_allowed(p, "b.example"),
		   "unsorted git.hosts load, read back sorted %s", err);
	crgw_policy_unref(p);
	rc = load_changed("secrets[0].allowed_hosts", "[\"z.example\",\"*.example.org\"]", &p, err, sizeof(err));
	tap_result(rc == 0 && p && strcmp(crgw_policy_secret_at(p, 0)->allowed_hosts[0], "*.example.org") == 0,
		   "unsorted secret hosts load, read back sorted %s", err);
	crgw_policy_unref(p);
}

/* What the compiler writes under --allow-default-allow loads: the gateway keeps running such policies. */
static void compiled_default_allow(void)
{
	static const char yaml[] = "version: 1\nsandbox:\n  network:\n    default: allow\n"
				   "    deny:\n      - host: \"*.com\"\n";
	struct crgw_compile_opts opts = { .allow_default_allow = true };
	struct crgw_compiled *c = NULL;
	struct crgw_policy *p = NULL;
	char err[256] = "";

	if (crgw_policy_compile(yaml, sizeof(yaml) - 1, &opts, &c) != 0 || c->nerrors) {
		tap_result(false, "a default-allow policy compiles with allow_default_allow");
		crgw_compiled_free(c);
		return;
	}
	tap_result(crgw_policy_load(c->json, c->json_len, &p, err, sizeof(err)) == 0 && p,
		   "the compiler's default-allow document loads %s", err);
	crgw_policy_unref(p);
	crgw_compiled_free(c);
}

int main(void)
{
	struct crgw_compiled *c = NULL;

	if (crgw_policy_compile(base_yaml, sizeof(base_yaml) - 1, NULL, &c) != 0 || c->nerrors) {
		tap_result(false, "the base policy compiles");
		crgw_compiled_free(c);
		return tap_done();
	}
	base_json = c->json;
	accepted();
	compiled_default_allow();
	document_cases();
	network_cases();
	git_cases();
	secret_cases();
	crgw_compiled_free(c);
	return tap_done();
}
