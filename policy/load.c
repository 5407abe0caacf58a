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
#include "gitref.h"
#include "lockfile.h"
#include "matcher.h"
#include "pattern.h"

#define MAX_COMPILED_BYTES (256u * 1024 * 1024)

struct crgw_policy {
	atomic_uint refs;
	json_t *doc;
	char hash[72];
	bool default_allow;
	unsigned ttl_minutes;
	bool learn_forbidden;
	uint16_t *ports;
	struct matcher *matcher;
	/* What mediation reads. Strings are borrowed from `doc`, which lives as long as the policy. */
	const char **allow_hosts; /* sorted, unique */
	size_t nallow_hosts;
	const char **git_hosts; /* sorted */
	size_t ngit_hosts;
	bool git_push;
	bool git_force_push;
	struct gitref_pattern *push_refs; /* sorted, unique */
	size_t npush_refs;
	struct crgw_secret_rule *secrets; /* in the document's order */
	const struct crgw_secret_rule **secrets_by_id;
	const char **secret_hosts; /* every secret's allowed_hosts, one secret after another */
	size_t nsecrets;
	long min_release_age[3]; /* seconds, by release_age_registries */
	struct crgw_registry_rule registries[CRGW_REGISTRY_COUNT]; /* by crgw_registry_names; name NULL when absent */
	const char **registry_hosts[CRGW_REGISTRY_COUNT];
	struct crgw_policy_artifact *artifacts[CRGW_REGISTRY_COUNT];
};

const char *const crgw_registry_names[CRGW_REGISTRY_COUNT] = { "npm", "pip", "go", "oci" };

/* The registries whose versions carry publish times, so that a release cooldown can apply. */
static const char *const release_age_registries[] = { "npm", "pip", "go" };

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

/*
 * A string as the compiler takes one from the YAML: at most 256 bytes, no control characters. In a header
 * value they would let a policy split the request it is injected into; in a rule's reason, forge lines of
 * what prints it.
 */
static bool text_ok(const char *s, size_t len)
{
	if (len > CRGW_COMPILED_MAX_STRING)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/*
 * Only the origin the compiler writes, the rule's own list and index: "sandbox.network.allow[3]" for an
 * allow rule. Decisions and the audit log name the deciding rule by its origin, so other text could pose
 * as a gateway rule ("gateway.special_addresses") or as a rule of the other kind.
 */
static bool origin_ok(const char *s, size_t len, bool deny)
{
	const char *prefix = deny ? "sandbox.network.deny[" : "sandbox.network.allow[";
	size_t plen = strlen(prefix), digits = 0;
	unsigned long at = 0;

	if (len < plen || memcmp(s, prefix, plen) != 0)
		return false;
	s += plen;
	len -= plen;
	while (digits < len && digits < 5 && s[digits] >= '0' && s[digits] <= '9')
		at = at * 10 + (unsigned long)(s[digits++] - '0');
	return digits > 0 && (digits == 1 || s[0] != '0') && at < CRGW_COMPILED_MAX_RULES && len == digits + 1 &&
	       s[digits] == ']';
}

static int load_rule(json_t *o, size_t i, struct matcher_rule *r, uint16_t **ports_next, char *err,
		     size_t errlen)
{
	static const char *const keys[] = { "action", "host", "ports", "origin", "reason", NULL };
	const char *action, *host, *unknown, *why = NULL;
	json_t *ports, *origin, *reason;
	char canon[CRGW_HOST_NAME_MAX + 8];

	if (!json_is_object(o))
		return fail(err, errlen, "network.rules[%zu]: expected an object", i);
	if (!only_keys(o, keys, &unknown))
		return fail(err, errlen, "network.rules[%zu]: unknown key '%.64s'", i, unknown);
	action = json_string_value(json_object_get(o, "action"));
	host = json_string_value(json_object_get(o, "host"));
	ports = json_object_get(o, "ports");
	origin = json_object_get(o, "origin");
	reason = json_object_get(o, "reason");
	if (!action || (strcmp(action, "allow") != 0 && strcmp(action, "deny") != 0))
		return fail(err, errlen, "network.rules[%zu].action: expected \"allow\" or \"deny\"", i);
	r->deny = action[0] == 'd';
	if (!host || pattern_parse(host, json_string_length(json_object_get(o, "host")), &r->pattern, &why))
		return fail(err, errlen, "network.rules[%zu].host: %s", i, why ? why : "expected a string");
	pattern_format(&r->pattern, canon, sizeof(canon));
	if (strcmp(canon, host) != 0)
		return fail(err, errlen, "network.rules[%zu].host: not in canonical form", i);
	if (!r->deny && pattern_check_allow(&r->pattern, &why) != 0)
		return fail(err, errlen, "network.rules[%zu].host: %s", i, why);
	if (!json_is_string(origin) || !origin_ok(json_string_value(origin), json_string_length(origin), r->deny))
		return fail(err, errlen, "network.rules[%zu].origin: expected the rule's path, sandbox.network.%s[N]",
			    i, action);
	r->origin = json_string_value(origin);
	if (reason && (!json_is_string(reason) || !text_ok(json_string_value(reason), json_string_length(reason))))
		return fail(err, errlen, "network.rules[%zu].reason: expected %d bytes at most, no control characters",
			    i, CRGW_COMPILED_MAX_STRING);
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

/*
 * The compiler numbers each list's rules from 0 without a gap, so sorted by origin (`r`, checked by
 * origin_ok) they count up from 0 per action. A repeat would leave the tie between two equally specific
 * rules to qsort; a gap marks a rule taken out after compiling.
 */
static int check_origin_sequence(const struct matcher_rule *r, size_t n, char *err, size_t errlen)
{
	unsigned long next[2] = { 0, 0 };

	for (size_t i = 0; i < n; i++) {
		unsigned long at = strtoul(strchr(r[i].origin, '[') + 1, NULL, 10);

		if (at < next[r[i].deny])
			return fail(err, errlen, "network.rules: origin %s is used twice", r[i].origin);
		if (at > next[r[i].deny])
			return fail(err, errlen, "network.rules: no rule has origin sandbox.network.%s[%lu]",
				    r[i].deny ? "deny" : "allow", next[r[i].deny]);
		next[r[i].deny]++;
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts `n` strings and drops repeats; returns the new count. */
static size_t sort_unique(const char **v, size_t n)
{
	size_t w = 0;

	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_str);
	for (size_t i = 0; i < n; i++)
		if (w == 0 || strcmp(v[w - 1], v[i]) != 0)
			v[w++] = v[i];
	return w;
}

/* The rules were checked by load_rule: every host is a canonical pattern. */
static int collect_allow_hosts(struct crgw_policy *p, json_t *rules)
{
	size_t n = json_array_size(rules);

	p->allow_hosts = malloc((n ? n : 1) * sizeof(*p->allow_hosts));
	if (!p->allow_hosts)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *r = json_array_get(rules, i);

		if (strcmp(json_string_value(json_object_get(r, "action")), "allow") == 0)
			p->allow_hosts[p->nallow_hosts++] = json_string_value(json_object_get(r, "host"));
	}
	p->nallow_hosts = sort_unique(p->allow_hosts, p->nallow_hosts);
	return 0;
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
	/*
	 * "allow" loads as written although the compiler writes it only under --allow-default-allow: that
	 * flag is the operator's consent to compile it from a repository's file, and the document keeps no
	 * mark of it, nor could one help, since whoever can write the document can write the mark. A compiled
	 * document comes from the control socket's users, who control the gateway (docs/policy.md).
	 */
	p->default_allow = dflt[0] == 'a';
	rules = json_object_get(net, "rules");
	if (!json_is_array(rules))
		return fail(err, errlen, "network.rules: expected an array");
	n = json_array_size(rules);
	if (n > CRGW_COMPILED_MAX_RULES)
		return fail(err, errlen, "network.rules: more than %d rules", CRGW_COMPILED_MAX_RULES);
	/* Bounded before anything is allocated for them: the document is untrusted. */
	for (size_t i = 0; i < n; i++) {
		json_t *ports = json_object_get(json_array_get(rules, i), "ports");

		if (json_array_size(ports) > CRGW_COMPILED_MAX_PORTS)
			return fail(err, errlen, "network.rules[%zu].ports: more than %d ports", i,
				    CRGW_COMPILED_MAX_PORTS);
		nports += json_array_size(ports);
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
	rc = check_origin_sequence(mrules, n, err, errlen);
	if (!rc)
		rc = matcher_build(mrules, n, &p->matcher);
	free(mrules);
	if (rc)
		return rc;
	return collect_allow_hosts(p, rules);
}

/* A name exactly as crgw_host_parse writes it: anything else did not come from the compiler. */
static bool normalized_name(const char *text, size_t len)
{
	struct crgw_host h;

	return crgw_host_parse(text, len, &h, NULL) == 0 && h.kind == CRGW_HOST_NAME && h.len == len &&
	       memcmp(h.text, text, len) == 0;
}

/*
 * A document compiled before push_refs and force_push existed has neither; it gets the defaults the
 * compiler writes today, as one without sandbox.ttl_minutes gets 60.
 */
static int cmp_artifact(const void *a, const void *b)
{
	const struct crgw_policy_artifact *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (!c)
		c = strcmp(x->version, y->version);
	return c ? c : strcmp(x->integrity, y->integrity);
}

/* A string of 1..1024 printable ASCII bytes, as the lockfile parsers write them. */
static const char *artifact_field(json_t *o, const char *key, bool nullable, bool *ok)
{
	json_t *v = json_object_get(o, key);
	const char *s;
	size_t len;

	if (nullable && json_is_null(v))
		return NULL;
	if (!json_is_string(v) || (len = json_string_length(v)) == 0 || len > CRGW_LOCKFILE_MAX_FIELD) {
		*ok = false;
		return NULL;
	}
	s = json_string_value(v);
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			*ok = false;
	return s;
}

static int load_artifacts(struct crgw_policy *p, size_t ri, json_t *list, char *err, size_t errlen)
{
	static const char *const keys[] = { "name", "version", "registry", "integrity", NULL };
	struct crgw_registry_rule *rule = &p->registries[ri];
	size_t n = json_array_size(list);
	const char *unknown;

	if (!json_is_array(list) || n > CRGW_LOCKFILE_MAX_ARTIFACTS)
		return fail(err, errlen, "registries.%s.artifacts: expected an array of at most %u entries", rule->name,
			    CRGW_LOCKFILE_MAX_ARTIFACTS);
	p->artifacts[ri] = calloc(n ? n : 1, sizeof(*p->artifacts[ri]));
	if (!p->artifacts[ri])
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_array_get(list, i);
		struct crgw_policy_artifact *a = &p->artifacts[ri][i];
		bool ok = json_is_object(o) && only_keys(o, keys, &unknown);

		if (ok) {
			a->name = artifact_field(o, "name", false, &ok);
			a->version = artifact_field(o, "version", false, &ok);
			a->registry = artifact_field(o, "registry", true, &ok);
			a->integrity = artifact_field(o, "integrity", false, &ok);
		}
		if (!ok)
			return fail(err, errlen, "registries.%s.artifacts[%zu]: expected {name, version, registry, integrity}",
				    rule->name, i);
	}
	/* Lookups bisect: the order is the loader's own, whatever the document's. */
	qsort(p->artifacts[ri], n, sizeof(*p->artifacts[ri]), cmp_artifact);
	rule->artifacts = p->artifacts[ri];
	rule->nartifacts = n;
	return 0;
}

static int load_registry(struct crgw_policy *p, size_t ri, json_t *o, char *err, size_t errlen)
{
	static const char *const keys[] = { "enable", "allowed_hosts", "fallback", "lockfile_enforcement",
					    "min_release_age_seconds", "artifacts", NULL };
	struct crgw_registry_rule *rule = &p->registries[ri];
	json_t *enable = json_object_get(o, "enable"), *hosts = json_object_get(o, "allowed_hosts");
	json_t *fallback = json_object_get(o, "fallback"), *lf = json_object_get(o, "lockfile_enforcement");
	json_t *age = json_object_get(o, "min_release_age_seconds"), *artifacts = json_object_get(o, "artifacts");
	const char *unknown, *name = crgw_registry_names[ri];
	size_t n;

	rule->name = name;
	if (!json_is_object(o) || !only_keys(o, keys, &unknown))
		return fail(err, errlen, "registries.%s: expected an object of known keys", name);
	if (!json_is_boolean(enable))
		return fail(err, errlen, "registries.%s.enable: expected true or false", name);
	rule->enable = json_is_true(enable);
	if (fallback && (!json_is_string(fallback) || (strcmp(json_string_value(fallback), "deny") &&
							 strcmp(json_string_value(fallback), "allow"))))
		return fail(err, errlen, "registries.%s.fallback: expected deny or allow", name);
	rule->fallback_allow = fallback && !strcmp(json_string_value(fallback), "allow");
	if (age) {
		if (!json_is_integer(age) || json_integer_value(age) < 0 || json_integer_value(age) > 366L * 86400 ||
		    ri >= sizeof(release_age_registries) / sizeof(release_age_registries[0]))
			return fail(err, errlen, "registries.%s.min_release_age_seconds: expected 0 to %ld seconds", name,
				    366L * 86400);
		rule->min_release_age = (long)json_integer_value(age);
		p->min_release_age[ri] = rule->min_release_age;
	}
	if (hosts && (!json_is_array(hosts) || json_array_size(hosts) > CRGW_COMPILED_MAX_LIST))
		return fail(err, errlen, "registries.%s.allowed_hosts: expected an array of at most %d names", name,
			    CRGW_COMPILED_MAX_LIST);
	n = json_array_size(hosts);
	if (rule->enable && n == 0)
		return fail(err, errlen, "registries.%s.allowed_hosts: an enabled registry needs at least one", name);
	p->registry_hosts[ri] = malloc((n ? n : 1) * sizeof(*p->registry_hosts[ri]));
	if (!p->registry_hosts[ri])
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *h = json_array_get(hosts, i);

		if (!json_is_string(h) || !normalized_name(json_string_value(h), json_string_length(h)))
			return fail(err, errlen, "registries.%s.allowed_hosts[%zu]: expected a normalized host name", name, i);
		p->registry_hosts[ri][i] = json_string_value(h);
	}
	rule->allowed_hosts = p->registry_hosts[ri];
	rule->nhosts = n;
	if (lf) {
		static const char *const lkeys[] = { "enabled", "mode", "lockfiles", NULL };
		json_t *enabled = json_object_get(lf, "enabled"), *mode = json_object_get(lf, "mode");

		if (!json_is_object(lf) || !only_keys(lf, lkeys, &unknown) || !json_is_boolean(enabled) ||
		    !json_is_string(mode) ||
		    (strcmp(json_string_value(mode), "deny_unknown") && strcmp(json_string_value(mode), "warn")))
			return fail(err, errlen, "registries.%s.lockfile_enforcement: expected {enabled, mode, lockfiles}",
				    name);
		if (json_is_true(enabled))
			rule->mode = strcmp(json_string_value(mode), "warn") ? CRGW_LOCKFILE_DENY_UNKNOWN : CRGW_LOCKFILE_WARN;
	}
	if (artifacts) {
		int rc = load_artifacts(p, ri, artifacts, err, errlen);

		if (rc)
			return rc;
	} else if (rule->mode != CRGW_LOCKFILE_OFF) {
		return fail(err, errlen, "registries.%s: lockfile enforcement without an artifact list", name);
	}
	rule->primary = n ? rule->allowed_hosts[0] : NULL;
	for (size_t i = 0, best = 0; i < n; i++) {
		size_t count = 0;

		for (size_t j = 0; j < rule->nartifacts; j++)
			count += rule->artifacts[j].registry && !strcmp(rule->artifacts[j].registry, rule->allowed_hosts[i]);
		if (count > best) {
			best = count;
			rule->primary = rule->allowed_hosts[i];
		}
	}
	return 0;
}

static int load_registries(struct crgw_policy *p, json_t *registries, char *err, size_t errlen)
{
	const char *k;
	json_t *v;

	json_object_foreach(registries, k, v) {
		size_t i;

		for (i = 0; i < CRGW_REGISTRY_COUNT; i++)
			if (!strcmp(k, crgw_registry_names[i]))
				break;
		if (i == CRGW_REGISTRY_COUNT)
			return fail(err, errlen, "registries: unknown registry '%.64s'", k);
		int rc = load_registry(p, i, v, err, errlen);

		if (rc)
			return rc;
	}
	return 0;
}

static int load_git(struct crgw_policy *p, json_t *git, char *err, size_t errlen)
{
	static const char *const keys[] = { "hosts", "push", "push_refs", "force_push", NULL };
	static const char *const defaults[] = GITREF_DEFAULT_PUSH_REFS;
	json_t *hosts = json_object_get(git, "hosts"), *push = json_object_get(git, "push");
	json_t *refs = json_object_get(git, "push_refs"), *force = json_object_get(git, "force_push");
	const char *unknown;
	size_t n;

	if (!only_keys(git, keys, &unknown))
		return fail(err, errlen, "git: unknown key '%.64s'", unknown);
	if (!json_is_boolean(push))
		return fail(err, errlen, "git.push: expected true or false");
	if (force && !json_is_boolean(force))
		return fail(err, errlen, "git.force_push: expected true or false");
	p->git_push = json_is_true(push);
	p->git_force_push = json_is_true(force);

	if (!json_is_array(hosts) || json_array_size(hosts) > CRGW_COMPILED_MAX_LIST)
		return fail(err, errlen, "git.hosts: expected an array of at most %d names", CRGW_COMPILED_MAX_LIST);
	n = json_array_size(hosts);
	p->git_hosts = malloc((n ? n : 1) * sizeof(*p->git_hosts));
	if (!p->git_hosts)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *h = json_array_get(hosts, i);

		if (!json_is_string(h) || !normalized_name(json_string_value(h), json_string_length(h)))
			return fail(err, errlen, "git.hosts[%zu]: expected a normalized host name", i);
		p->git_hosts[p->ngit_hosts++] = json_string_value(h);
	}
	/* Documents compiled before git.hosts was sorted may hold it in the file's order. */
	qsort(p->git_hosts, p->ngit_hosts, sizeof(*p->git_hosts), cmp_str);

	if (refs && (!json_is_array(refs) || json_array_size(refs) == 0 ||
		     json_array_size(refs) > CRGW_COMPILED_MAX_LIST))
		return fail(err, errlen, "git.push_refs: expected an array of 1 to %d patterns",
			    CRGW_COMPILED_MAX_LIST);
	n = refs ? json_array_size(refs) : sizeof(defaults) / sizeof(defaults[0]);
	p->push_refs = calloc(n, sizeof(*p->push_refs));
	if (!p->push_refs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *r = refs ? json_array_get(refs, i) : NULL;
		const char *text = refs ? json_string_value(r) : defaults[i], *why = "expected a string";
		size_t len = refs ? json_string_length(r) : strlen(defaults[i]);

		if (!text || len > GITREF_PATTERN_MAX || gitref_check(text, len, true, &p->push_refs[i], &why) != 0)
			return fail(err, errlen, "git.push_refs[%zu]: %s", i,
				    len > GITREF_PATTERN_MAX ? "too long" : why);
		/* Canonical form is what keeps one policy to one hash; a reordered list is not the compiler's. */
		if (i > 0 && strcmp(p->push_refs[i - 1].text, text) >= 0)
			return fail(err, errlen, "git.push_refs[%zu]: not sorted, or repeated", i);
		p->npush_refs++;
	}
	return 0;
}

static int load_secret(json_t *o, size_t i, struct crgw_secret_rule *s, const char ***hosts_next, char *err,
		       size_t errlen)
{
	static const char *const keys[] = { "id", "allowed_hosts", "header", "format", "ttl_seconds", NULL };
	json_t *id = json_object_get(o, "id"), *header = json_object_get(o, "header");
	json_t *format = json_object_get(o, "format"), *ttl = json_object_get(o, "ttl_seconds");
	json_t *hosts = json_object_get(o, "allowed_hosts");
	const char *unknown;

	if (!json_is_object(o))
		return fail(err, errlen, "secrets[%zu]: expected an object", i);
	if (!only_keys(o, keys, &unknown))
		return fail(err, errlen, "secrets[%zu]: unknown key '%.64s'", i, unknown);
	if (!json_is_string(id) || !crgw_compiled_secret_id_valid(json_string_value(id), json_string_length(id)))
		return fail(err, errlen, "secrets[%zu].id: expected an id of 1-64 [a-z0-9_.-]", i);
	if (!json_is_string(header) || json_string_length(header) > CRGW_COMPILED_MAX_STRING ||
	    !crgw_compiled_header_name_valid(json_string_value(header)) ||
	    crgw_compiled_header_forbidden(json_string_value(header)))
		return fail(err, errlen, "secrets[%zu].header: expected a header name that may carry a secret", i);
	if (!json_is_string(format) || !text_ok(json_string_value(format), json_string_length(format)) ||
	    !crgw_compiled_format_valid(json_string_value(format)))
		return fail(err, errlen, "secrets[%zu].format: expected a header value with '{secret}' once", i);
	if (!json_is_integer(ttl) || json_integer_value(ttl) < 1 || json_integer_value(ttl) > 86400)
		return fail(err, errlen, "secrets[%zu].ttl_seconds: expected 1..86400", i);
	if (!json_is_array(hosts) || json_array_size(hosts) == 0)
		return fail(err, errlen, "secrets[%zu].allowed_hosts: expected a non-empty array", i);
	s->id = json_string_value(id);
	s->header = json_string_value(header);
	s->format = json_string_value(format);
	s->ttl_seconds = (unsigned)json_integer_value(ttl);
	s->allowed_hosts = *hosts_next;
	s->nhosts = json_array_size(hosts);
	for (size_t h = 0; h < s->nhosts; h++) {
		json_t *v = json_array_get(hosts, h);
		const char *text = json_string_value(v);
		char canon[CRGW_HOST_NAME_MAX + 8];
		struct pattern pat;

		if (!text || pattern_parse(text, json_string_length(v), &pat, NULL) != 0 || pat.kind == PATTERN_CIDR)
			return fail(err, errlen, "secrets[%zu].allowed_hosts[%zu]: expected a name or wildcard", i, h);
		/* What the compiler refuses (host_list): a wildcard over a top-level domain. */
		if (pattern_check_allow(&pat, NULL) != 0)
			return fail(err, errlen, "secrets[%zu].allowed_hosts[%zu]: a wildcard over a top-level domain", i,
				    h);
		pattern_format(&pat, canon, sizeof(canon));
		if (strcmp(canon, text) != 0)
			return fail(err, errlen, "secrets[%zu].allowed_hosts[%zu]: not in canonical form", i, h);
		(*hosts_next)[h] = text;
	}
	/* Documents compiled before these lists were sorted may hold them in the file's order. */
	qsort(*hosts_next, s->nhosts, sizeof(**hosts_next), cmp_str);
	*hosts_next += s->nhosts;
	return 0;
}

static int secret_id_cmp(const void *a, const void *b)
{
	return strcmp((*(const struct crgw_secret_rule *const *)a)->id,
		      (*(const struct crgw_secret_rule *const *)b)->id);
}

static int load_secrets(struct crgw_policy *p, json_t *secrets, char *err, size_t errlen)
{
	size_t n = json_array_size(secrets), nhosts = 0;
	const char **next;
	int rc;

	if (n > CRGW_COMPILED_MAX_SECRETS)
		return fail(err, errlen, "secrets: more than %d", CRGW_COMPILED_MAX_SECRETS);
	/* Bounded before anything is allocated for them: the document is untrusted. */
	for (size_t i = 0; i < n; i++) {
		json_t *hosts = json_object_get(json_array_get(secrets, i), "allowed_hosts");

		if (json_array_size(hosts) > CRGW_COMPILED_MAX_LIST)
			return fail(err, errlen, "secrets[%zu].allowed_hosts: more than %d hosts", i,
				    CRGW_COMPILED_MAX_LIST);
		nhosts += json_array_size(hosts);
	}
	p->secrets = calloc(n ? n : 1, sizeof(*p->secrets));
	p->secrets_by_id = calloc(n ? n : 1, sizeof(*p->secrets_by_id));
	p->secret_hosts = calloc(nhosts ? nhosts : 1, sizeof(*p->secret_hosts));
	if (!p->secrets || !p->secrets_by_id || !p->secret_hosts)
		return -ENOMEM;
	next = p->secret_hosts;
	for (size_t i = 0; i < n; i++) {
		if ((rc = load_secret(json_array_get(secrets, i), i, &p->secrets[i], &next, err, errlen)))
			return rc;
		p->secrets_by_id[i] = &p->secrets[i];
		p->nsecrets++;
	}
	qsort(p->secrets_by_id, n, sizeof(*p->secrets_by_id), secret_id_cmp);
	for (size_t i = 1; i < n; i++)
		if (strcmp(p->secrets_by_id[i - 1]->id, p->secrets_by_id[i]->id) == 0)
			return fail(err, errlen, "secrets: id '%s' is defined more than once", p->secrets_by_id[i]->id);
	return 0;
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
	/* Another version could mean what this loader does not know to enforce: refused, not guessed at. */
	json_int_t version = json_integer_value(json_object_get(doc, "version"));

	if (version != CRGW_COMPILED_VERSION)
		return fail(err, errlen, "version: %" JSON_INTEGER_FORMAT " is not supported (only %d is)", version,
			    CRGW_COMPILED_VERSION);
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
	static const char *const sandbox_keys[] = { "image", "ttl_minutes", "learn", NULL };
	json_t *sandbox = json_object_get(p->doc, "sandbox");
	const char *unknown;

	if (!only_keys(sandbox, sandbox_keys, &unknown)) {
		rc = fail(err, errlen, "sandbox: unknown key '%.64s'", unknown);
		goto out;
	}
	/* The compiler bounds ttl_minutes to 1..10080; a document without it predates the key: 60. */
	json_t *ttl = json_object_get(sandbox, "ttl_minutes");

	p->ttl_minutes = 60;
	if (ttl && (!json_is_integer(ttl) || json_integer_value(ttl) < 1 || json_integer_value(ttl) > 10080)) {
		rc = fail(err, errlen, "sandbox.ttl_minutes: expected 1..10080");
		goto out;
	}
	if (ttl)
		p->ttl_minutes = (unsigned)json_integer_value(ttl);
	json_t *learn = json_object_get(sandbox, "learn");

	if (learn && !json_is_false(learn)) {
		rc = fail(err, errlen, "sandbox.learn: only false is ever written");
		goto out;
	}
	p->learn_forbidden = learn != NULL;
	if ((rc = load_git(p, json_object_get(p->doc, "git"), err, errlen)))
		goto out;
	if ((rc = load_registries(p, json_object_get(p->doc, "registries"), err, errlen)))
		goto out;
	if ((rc = load_secrets(p, json_object_get(p->doc, "secrets"), err, errlen)))
		goto out;
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
	free(policy->allow_hosts);
	free(policy->git_hosts);
	free(policy->push_refs);
	free(policy->secrets);
	free(policy->secrets_by_id);
	free(policy->secret_hosts);
	for (size_t i = 0; i < CRGW_REGISTRY_COUNT; i++) {
		free(policy->registry_hosts[i]);
		free(policy->artifacts[i]);
	}
	json_decref(policy->doc);
	free(policy);
}

const char *crgw_policy_hash(const struct crgw_policy *policy)
{
	return policy->hash;
}

bool crgw_policy_learn_allowed(const struct crgw_policy *policy)
{
	return !policy->learn_forbidden;
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

size_t crgw_policy_git_host_count(const struct crgw_policy *policy)
{
	return policy->ngit_hosts;
}

const char *crgw_policy_git_host(const struct crgw_policy *policy, size_t i)
{
	return i < policy->ngit_hosts ? policy->git_hosts[i] : NULL;
}

bool crgw_policy_git_host_allowed(const struct crgw_policy *policy, const char *host)
{
	return bsearch(&host, policy->git_hosts, policy->ngit_hosts, sizeof(*policy->git_hosts), cmp_str) != NULL;
}

long crgw_policy_registry_min_release_age(const struct crgw_policy *policy, const char *registry)
{
	for (size_t i = 0; i < sizeof(release_age_registries) / sizeof(release_age_registries[0]); i++)
		if (strcmp(registry, release_age_registries[i]) == 0)
			return policy->min_release_age[i];
	return 0;
}

const struct crgw_registry_rule *crgw_policy_registry(const struct crgw_policy *policy, const char *name)
{
	for (size_t i = 0; i < CRGW_REGISTRY_COUNT; i++)
		if (!strcmp(name, crgw_registry_names[i]))
			return policy->registries[i].name ? &policy->registries[i] : NULL;
	return NULL;
}

bool crgw_policy_registry_host_allowed(const struct crgw_registry_rule *rule, const char *host)
{
	for (size_t i = 0; i < rule->nhosts; i++)
		if (!strcmp(rule->allowed_hosts[i], host))
			return true;
	return false;
}

size_t crgw_policy_registry_artifacts(const struct crgw_registry_rule *rule, const char *name,
				      const struct crgw_policy_artifact **first)
{
	size_t lo = 0, hi = rule->nartifacts, end;

	*first = NULL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(rule->artifacts[mid].name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (end = lo; end < rule->nartifacts && !strcmp(rule->artifacts[end].name, name); end++)
		;
	if (end > lo)
		*first = &rule->artifacts[lo];
	return end - lo;
}

bool crgw_policy_git_push(const struct crgw_policy *policy)
{
	return policy->git_push;
}

bool crgw_policy_git_force_push(const struct crgw_policy *policy)
{
	return policy->git_force_push;
}

bool crgw_policy_git_ref_allowed(const struct crgw_policy *policy, const char *ref, size_t len)
{
	if (gitref_check(ref, len, false, NULL, NULL) != 0)
		return false;
	for (size_t i = 0; i < policy->npush_refs; i++)
		if (gitref_match(&policy->push_refs[i], ref, len))
			return true;
	return false;
}

size_t crgw_policy_secret_count(const struct crgw_policy *policy)
{
	return policy->nsecrets;
}

const struct crgw_secret_rule *crgw_policy_secret_at(const struct crgw_policy *policy, size_t i)
{
	return i < policy->nsecrets ? &policy->secrets[i] : NULL;
}

const struct crgw_secret_rule *crgw_policy_secret_find(const struct crgw_policy *policy, const char *id,
						       size_t len)
{
	size_t lo = 0, hi = policy->nsecrets;

	if (len == 0)
		return NULL;
	/* By hand rather than bsearch(): the id is a counted string, the table holds NUL-terminated ones. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *have = policy->secrets_by_id[mid]->id;
		size_t hlen = strlen(have);
		int c = memcmp(have, id, hlen < len ? hlen : len);

		if (c == 0 && hlen != len)
			c = hlen < len ? -1 : 1;
		if (c == 0)
			return policy->secrets_by_id[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

bool crgw_secret_host_allowed(const struct crgw_secret_rule *secret, const char *host)
{
	size_t hlen = strlen(host);

	for (size_t i = 0; i < secret->nhosts; i++) {
		const char *pat = secret->allowed_hosts[i];
		size_t skip = strncmp(pat, "**.", 3) == 0 ? 3 : strncmp(pat, "*.", 2) == 0 ? 2 : 0;

		if (!skip) {
			if (strcmp(pat, host) == 0)
				return true;
			continue;
		}
		/* The suffix with its leading dot, so "*.example.com" can never match "badexample.com". */
		const char *suffix = pat + skip - 1;
		size_t slen = strlen(suffix);

		if (hlen <= slen || memcmp(host + hlen - slen, suffix, slen) != 0)
			continue;
		/* What the wildcard stands for, host[0 .. hlen - slen): one label for "*.", any number for "**.". */
		if (host[0] == '.' || host[hlen - slen - 1] == '.')
			continue;
		if (skip == 3 || !memchr(host, '.', hlen - slen))
			return true;
	}
	return false;
}

size_t crgw_policy_allow_host_count(const struct crgw_policy *policy)
{
	return policy->nallow_hosts;
}

const char *crgw_policy_allow_host(const struct crgw_policy *policy, size_t i)
{
	return i < policy->nallow_hosts ? policy->allow_hosts[i] : NULL;
}
