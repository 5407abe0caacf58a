/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loads a CompiledPolicy into an immutable, reference-counted policy. The document crosses a trust
 * boundary (the control API), so it is checked as strictly as the YAML was: schema, canonical patterns,
 * sorted ports, and a hash that matches the content.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiled.h"
#include "matcher.h"

#define MAX_COMPILED_BYTES (256u * 1024 * 1024)

struct crgw_policy {
	atomic_uint refs;
	json_t *doc;
	char hash[72];
	bool default_allow;
	unsigned ttl_minutes;
	uint16_t *ports;
	struct matcher *matcher;
};

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static bool only_keys(json_t *obj, const char *const *keys, const char **unknown)
{
	const char *k;
	json_t *v;

	json_object_foreach(obj, k, v) {
		bool known = false;

		for (const char *const *p = keys; *p && !known; p++)
			known = strcmp(k, *p) == 0;
		if (!known) {
			*unknown = k;
			return false;
		}
	}
	return true;
}

static int load_rule(json_t *o, size_t i, struct matcher_rule *r, uint16_t **ports_next, char *err,
		     size_t errlen)
{
	static const char *const keys[] = { "action", "host", "ports", "origin", "reason", NULL };
	const char *action, *host, *unknown, *why = NULL;
	json_t *ports, *origin;
	char canon[CRGW_HOST_NAME_MAX + 8];

	if (!json_is_object(o))
		return fail(err, errlen, "network.rules[%zu]: expected an object", i);
	if (!only_keys(o, keys, &unknown))
		return fail(err, errlen, "network.rules[%zu]: unknown key '%.64s'", i, unknown);
	action = json_string_value(json_object_get(o, "action"));
	host = json_string_value(json_object_get(o, "host"));
	ports = json_object_get(o, "ports");
	origin = json_object_get(o, "origin");
	if (!action || (strcmp(action, "allow") != 0 && strcmp(action, "deny") != 0))
		return fail(err, errlen, "network.rules[%zu].action: expected \"allow\" or \"deny\"", i);
	r->deny = action[0] == 'd';
	if (!host || pattern_parse(host, json_string_length(json_object_get(o, "host")), &r->pattern, &why))
		return fail(err, errlen, "network.rules[%zu].host: %s", i, why ? why : "expected a string");
	pattern_format(&r->pattern, canon, sizeof(canon));
	if (strcmp(canon, host) != 0)
		return fail(err, errlen, "network.rules[%zu].host: not in canonical form", i);
	if (!json_is_string(origin) || json_string_length(origin) == 0 || json_string_length(origin) > 159)
		return fail(err, errlen, "network.rules[%zu].origin: expected a rule path", i);
	r->origin = json_string_value(origin);
	if (json_object_get(o, "reason") && !json_is_string(json_object_get(o, "reason")))
		return fail(err, errlen, "network.rules[%zu].reason: expected a string", i);
	if (!json_is_array(ports))
		return fail(err, errlen, "network.rules[%zu].ports: expected an array", i);
	if (json_array_size(ports) == 0 && !r->deny)
		return fail(err, errlen, "network.rules[%zu].ports: an allow rule needs ports", i);
	r->ports = *ports_next;
	r->nports = json_array_size(ports);
	for (size_t p = 0; p < r->nports; p++) {
		json_t *v = json_array_get(ports, p);
		json_int_t port = json_integer_value(v);

		if (!json_is_integer(v) || port < 1 || port > 65535 || (p > 0 && port <= r->ports[p - 1]))
			return fail(err, errlen, "network.rules[%zu].ports[%zu]: expected ascending ports 1-65535",
				    i, p);
		(*ports_next)[p] = (uint16_t)port;
	}
	*ports_next += r->nports;
	return 0;
}

/*
 * Compares origins so that "allow[7]" comes before "allow[60]": numbers by value, the rest bytewise.
 * Ties between equally specific rules then go to the rule written first, as the author reads the file.
 */
static int origin_cmp(const char *a, const char *b)
{
	while (*a && *b) {
		if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
			unsigned long x = strtoul(a, (char **)&a, 10), y = strtoul(b, (char **)&b, 10);

			if (x != y)
				return x < y ? -1 : 1;
			continue;
		}
		if (*a != *b)
			return (unsigned char)*a - (unsigned char)*b;
		a++;
		b++;
	}
	return (unsigned char)*a - (unsigned char)*b;
}

static int rule_origin_cmp(const void *a, const void *b)
{
	return origin_cmp(((const struct matcher_rule *)a)->origin, ((const struct matcher_rule *)b)->origin);
}

static int load_network(struct crgw_policy *p, json_t *net, char *err, size_t errlen)
{
	static const char *const keys[] = { "default", "rules", NULL };
	const char *dflt, *unknown;
	json_t *rules;
	struct matcher_rule *mrules = NULL;
	size_t n, nports = 0;
	int rc;

	if (!json_is_object(net))
		return fail(err, errlen, "network: expected an object");
	if (!only_keys(net, keys, &unknown))
		return fail(err, errlen, "network: unknown key '%.64s'", unknown);
	dflt = json_string_value(json_object_get(net, "default"));
	if (!dflt || (strcmp(dflt, "deny") != 0 && strcmp(dflt, "allow") != 0))
		return fail(err, errlen, "network.default: expected \"deny\" or \"allow\"");
	p->default_allow = dflt[0] == 'a';
	rules = json_object_get(net, "rules");
	if (!json_is_array(rules))
		return fail(err, errlen, "network.rules: expected an array");
	n = json_array_size(rules);
	for (size_t i = 0; i < n; i++) {
		json_t *ports = json_object_get(json_array_get(rules, i), "ports");

		nports += json_is_array(ports) ? json_array_size(ports) : 0;
	}
	p->ports = malloc((nports ? nports : 1) * sizeof(*p->ports));
	mrules = calloc(n ? n : 1, sizeof(*mrules));
	if (!p->ports || !mrules) {
		free(mrules);
		return -ENOMEM;
	}
	uint16_t *next = p->ports;

	for (size_t i = 0; i < n; i++) {
		rc = load_rule(json_array_get(rules, i), i, &mrules[i], &next, err, errlen);
		if (rc) {
			free(mrules);
			return rc;
		}
	}
	qsort(mrules, n, sizeof(*mrules), rule_origin_cmp);
	rc = matcher_build(mrules, n, &p->matcher);
	free(mrules);
	return rc;
}

/* Sections later modules read; here only their shape is checked, so a malformed one fails at load. */
static int check_sections(json_t *doc, char *err, size_t errlen)
{
	static const struct {
		const char *key;
		json_type type;
		bool required;
	} sections[] = {
		{ "format", JSON_STRING, true },    { "policy_hash", JSON_STRING, true },
		{ "version", JSON_INTEGER, true },  { "source", JSON_OBJECT, true },
		{ "network", JSON_OBJECT, true },   { "sandbox", JSON_OBJECT, true },
		{ "git", JSON_OBJECT, true },       { "registries", JSON_OBJECT, true },
		{ "secrets", JSON_ARRAY, true },    { "metadata", JSON_OBJECT, true },
		{ "project", JSON_OBJECT, false },
	};
	const char *k;
	json_t *v;

	json_object_foreach(doc, k, v) {
		size_t i;

		for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
			if (strcmp(k, sections[i].key) == 0)
				break;
		if (i == sizeof(sections) / sizeof(sections[0]))
			return fail(err, errlen, "unknown top-level key '%.64s'", k);
		if (json_typeof(v) != sections[i].type)
			return fail(err, errlen, "%s: wrong type", k);
	}
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		if (sections[i].required && !json_object_get(doc, sections[i].key))
			return fail(err, errlen, "missing top-level key '%s'", sections[i].key);
	if (strcmp(json_string_value(json_object_get(doc, "format")), CRGW_COMPILED_FORMAT) != 0)
		return fail(err, errlen, "format: expected \"%s\"", CRGW_COMPILED_FORMAT);
	return 0;
}

int crgw_policy_load(const char *json, size_t len, struct crgw_policy **out, char *err, size_t errlen)
{
	struct crgw_policy *p;
	json_error_t jerr;
	int rc;

	*out = NULL;
	if (len > MAX_COMPILED_BYTES)
		return fail(err, errlen, "compiled policy larger than %u bytes", MAX_COMPILED_BYTES);
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	atomic_init(&p->refs, 1);
	p->doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!p->doc) {
		rc = fail(err, errlen, "not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
		goto out;
	}
	if (!json_is_object(p->doc)) {
		rc = fail(err, errlen, "expected a JSON object");
		goto out;
	}
	if ((rc = check_sections(p->doc, err, errlen)))
		goto out;
	if ((rc = crgw_compiled_hash(p->doc, p->hash)))
		goto out;
	if (strcmp(p->hash, json_string_value(json_object_get(p->doc, "policy_hash"))) != 0) {
		rc = fail(err, errlen, "policy_hash does not match the content (%s computed)", p->hash);
		goto out;
	}
	if ((rc = load_network(p, json_object_get(p->doc, "network"), err, errlen)))
		goto out;
	/* The compiler bounds ttl_minutes to 1..10080; a document without it predates the key: 60. */
	json_t *ttl = json_object_get(json_object_get(p->doc, "sandbox"), "ttl_minutes");

	p->ttl_minutes = 60;
	if (ttl && (!json_is_integer(ttl) || json_integer_value(ttl) < 1 || json_integer_value(ttl) > 10080)) {
		rc = fail(err, errlen, "sandbox.ttl_minutes: expected 1..10080");
		goto out;
	}
	if (ttl)
		p->ttl_minutes = (unsigned)json_integer_value(ttl);
	*out = p;
	return 0;
out:
	if (rc == -ENOMEM)
		fail(err, errlen, "out of memory");
	crgw_policy_unref(p);
	return rc;
}

struct crgw_policy *crgw_policy_ref(struct crgw_policy *policy)
{
	atomic_fetch_add_explicit(&policy->refs, 1, memory_order_relaxed);
	return policy;
}

void crgw_policy_unref(struct crgw_policy *policy)
{
	if (!policy || atomic_fetch_sub_explicit(&policy->refs, 1, memory_order_acq_rel) != 1)
		return;
	matcher_free(policy->matcher);
	free(policy->ports);
	json_decref(policy->doc);
	free(policy);
}

const char *crgw_policy_hash(const struct crgw_policy *policy)
{
	return policy->hash;
}

unsigned crgw_policy_ttl_minutes(const struct crgw_policy *policy)
{
	return policy->ttl_minutes;
}

void crgw_policy_decide(const struct crgw_policy *policy, const struct crgw_blocklist *blocked,
			const struct crgw_host *host, uint16_t port, struct crgw_decision *out)
{
	matcher_decide(policy->matcher, policy->default_allow, blocked, host, port, out);
}

void crgw_policy_check_address(const struct crgw_policy *policy, const struct crgw_blocklist *blocked,
			       const struct crgw_host *addr, uint16_t port, struct crgw_decision *out)
{
	matcher_check_address(policy->matcher, blocked, addr, port, out);
}
