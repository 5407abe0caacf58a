/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The difference between two CompiledPolicy documents: rule by rule in the author's paths, and what it
 * means for reachability, found by asking both matchers about every destination either policy names.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/policy_diff.h"
#include "matcher.h"

const char *crgw_change_kind_str(enum crgw_change_kind kind)
{
	switch (kind) {
	case CRGW_CHANGE_ADDED:
		return "added";
	case CRGW_CHANGE_REMOVED:
		return "removed";
	case CRGW_CHANGE_CHANGED:
		return "changed";
	}
	return "?";
}

struct differ {
	crgw_policy_change_cb cb;
	void *arg;
	int count;
	int err;
};

static void emit(struct differ *d, enum crgw_change_kind kind, const char *path, const char *old_path, json_t *old_v,
		 json_t *new_v)
{
	char *o = old_v ? json_dumps(old_v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
	char *n = new_v ? json_dumps(new_v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;

	if ((old_v && !o) || (new_v && !n)) {
		d->err = -ENOMEM;
	} else {
		struct crgw_policy_change c = {
		    .kind = kind,
		    .path = path,
		    .old_path = old_path,
		    .old_value = o,
		    .new_value = n,
		};

		d->cb(d->arg, &c);
		d->count++;
	}
	free(o);
	free(n);
}

/* ---- network rules: matched by action and host, whatever their place in the file ------------------- */

static const char *rule_str(json_t *rule, const char *key)
{
	const char *s = json_string_value(json_object_get(rule, key));

	return s ? s : "";
}

static bool same_target(json_t *a, json_t *b)
{
	return !strcmp(rule_str(a, "action"), rule_str(b, "action")) &&
	       !strcmp(rule_str(a, "host"), rule_str(b, "host"));
}

/* A rule as its author reads it: without its origin, which says where it is, not what it does. */
static json_t *rule_body(json_t *rule)
{
	json_t *body = json_copy(rule);

	if (body)
		json_object_del(body, "origin");
	return body;
}

static bool same_body(json_t *a, json_t *b)
{
	json_t *ab = rule_body(a), *bb = rule_body(b);
	bool same = ab && bb && json_equal(ab, bb);

	json_decref(ab);
	json_decref(bb);
	return same;
}

/*
 * Rules pair by action and host. A host may have several rules (other ports, another spelling of the
 * name): a rule that only moved pairs with its identical twin first, so that only what differs shows.
 */
static void diff_rules(struct differ *d, json_t *old_rules, json_t *new_rules)
{
	size_t no = json_array_size(old_rules), nn = json_array_size(new_rules);
	ssize_t *pair = calloc(nn ? nn : 1, sizeof(*pair));
	bool *taken = calloc(no ? no : 1, sizeof(*taken));

	if (!pair || !taken) {
		d->err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nn; i++)
		pair[i] = -1;
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < nn; i++)
			for (size_t k = 0; pair[i] < 0 && k < no; k++) {
				json_t *r = json_array_get(new_rules, i), *was = json_array_get(old_rules, k);

				if (!taken[k] && same_target(r, was) && (pass == 1 || same_body(r, was))) {
					pair[i] = (ssize_t)k;
					taken[k] = true;
				}
			}
	for (size_t i = 0; i < nn; i++) {
		json_t *r = json_array_get(new_rules, i),
		       *was = pair[i] >= 0 ? json_array_get(old_rules, (size_t)pair[i]) : NULL;
		json_t *nb = rule_body(r), *ob = was ? rule_body(was) : NULL;

		if (!nb || (was && !ob))
			d->err = -ENOMEM;
		else if (!was)
			emit(d, CRGW_CHANGE_ADDED, rule_str(r, "origin"), NULL, NULL, nb);
		else if (!json_equal(ob, nb))
			emit(d, CRGW_CHANGE_CHANGED, rule_str(r, "origin"),
			     strcmp(rule_str(was, "origin"), rule_str(r, "origin")) ? rule_str(was, "origin") : NULL,
			     ob, nb);
		json_decref(nb);
		json_decref(ob);
	}
	for (size_t k = 0; k < no; k++) {
		json_t *ob;

		if (taken[k])
			continue;
		ob = rule_body(json_array_get(old_rules, k));
		if (!ob)
			d->err = -ENOMEM;
		else
			emit(d, CRGW_CHANGE_REMOVED, rule_str(json_array_get(old_rules, k), "origin"), NULL, ob, NULL);
		json_decref(ob);
	}
out:
	free(pair);
	free(taken);
}

/* ---- everything else: objects by key, arrays as sets ------------------------------------------------ */

/* What identifies an element of an array of objects: a secret's id, an artifact's name, version and hash. */
static char *element_key(json_t *v)
{
	const char *id = json_string_value(json_object_get(v, "id"));
	const char *name = json_string_value(json_object_get(v, "name"));
	char *out = NULL;

	if (id)
		return strdup(id);
	if (name) {
		const char *version = json_string_value(json_object_get(v, "version"));
		const char *integrity = json_string_value(json_object_get(v, "integrity"));

		if (asprintf(&out, "%s@%s %s", name, version ? version : "", integrity ? integrity : "") < 0)
			return NULL;
		return out;
	}
	return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static json_t *find_element(json_t *array, json_t *like, const char *key)
{
	size_t i;
	json_t *e;

	if (!json_is_object(like)) {
		json_array_foreach(array, i, e)
		{
			if (json_equal(e, like))
				return e;
		}
		return NULL;
	}
	json_array_foreach(array, i, e)
	{
		char *k = element_key(e);
		bool same = k && key && !strcmp(k, key);

		free(k);
		if (same)
			return e;
	}
	return NULL;
}

static void diff_value(struct differ *d, const char *path, json_t *o, json_t *n);

static void diff_array(struct differ *d, const char *path, json_t *o, json_t *n)
{
	size_t i;
	json_t *e;

	json_array_foreach(n, i, e)
	{
		char *key = element_key(e);
		json_t *was = key ? find_element(o, e, key) : NULL;

		if (!key)
			d->err = -ENOMEM;
		else if (!was)
			emit(d, CRGW_CHANGE_ADDED, path, NULL, NULL, e);
		else if (!json_equal(was, e))
			emit(d, CRGW_CHANGE_CHANGED, path, NULL, was, e);
		free(key);
	}
	json_array_foreach(o, i, e)
	{
		char *key = element_key(e);

		if (!key)
			d->err = -ENOMEM;
		else if (!find_element(n, e, key))
			emit(d, CRGW_CHANGE_REMOVED, path, NULL, e, NULL);
		free(key);
	}
}

static bool skipped_key(const char *path)
{
	return !strcmp(path, "policy_hash") || !strcmp(path, "source") || !strcmp(path, "format") ||
	       !strcmp(path, "network");
}

static void diff_object(struct differ *d, const char *path, json_t *o, json_t *n)
{
	const char **keys = NULL;
	size_t nkeys = 0, cap = json_object_size(o) + json_object_size(n);
	const char *k;
	json_t *v;

	keys = calloc(cap ? cap : 1, sizeof(*keys));
	if (!keys) {
		d->err = -ENOMEM;
		return;
	}
	json_object_foreach(o, k, v) keys[nkeys++] = k;
	json_object_foreach(n, k, v)
	{
		if (!json_object_get(o, k))
			keys[nkeys++] = k;
	}
	/* Key order, so the output does not depend on how either document was written. */
	for (size_t i = 1; i < nkeys; i++)
		for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
			const char *t = keys[j];

			keys[j] = keys[j - 1];
			keys[j - 1] = t;
		}
	for (size_t i = 0; i < nkeys && !d->err; i++) {
		char *sub = NULL;

		if (path[0] ? asprintf(&sub, "%s.%s", path, keys[i]) < 0 : !(sub = strdup(keys[i]))) {
			d->err = -ENOMEM;
			break;
		}
		if (!path[0] && skipped_key(sub)) {
			free(sub);
			continue;
		}
		diff_value(d, sub, json_object_get(o, keys[i]), json_object_get(n, keys[i]));
		free(sub);
	}
	free(keys);
}

static void diff_value(struct differ *d, const char *path, json_t *o, json_t *n)
{
	if (!o) {
		emit(d, CRGW_CHANGE_ADDED, path, NULL, NULL, n);
	} else if (!n) {
		emit(d, CRGW_CHANGE_REMOVED, path, NULL, o, NULL);
	} else if (json_is_object(o) && json_is_object(n)) {
		diff_object(d, path, o, n);
	} else if (json_is_array(o) && json_is_array(n)) {
		diff_array(d, path, o, n);
	} else if (!json_equal(o, n)) {
		emit(d, CRGW_CHANGE_CHANGED, path, NULL, o, n);
	}
}

static int load_both(const char *old_json, size_t old_len, const char *new_json, size_t new_len, json_t **o, json_t **n)
{
	*o = json_loadb(old_json, old_len, 0, NULL);
	*n = json_loadb(new_json, new_len, 0, NULL);
	if (json_is_object(*o) && json_is_object(*n))
		return 0;
	json_decref(*o);
	json_decref(*n);
	*o = *n = NULL;
	return -EINVAL;
}

int crgw_policy_diff_rules(const char *old_json, size_t old_len, const char *new_json, size_t new_len,
			   crgw_policy_change_cb cb, void *arg)
{
	struct differ d = {.cb = cb, .arg = arg};
	json_t *o, *n, *on, *nn;
	int err = load_both(old_json, old_len, new_json, new_len, &o, &n);

	if (err)
		return err;
	on = json_object_get(o, "network");
	nn = json_object_get(n, "network");
	if (!json_equal(json_object_get(on, "default"), json_object_get(nn, "default")))
		emit(&d, CRGW_CHANGE_CHANGED, "sandbox.network.default", NULL, json_object_get(on, "default"),
		     json_object_get(nn, "default"));
	diff_rules(&d, json_object_get(on, "rules"), json_object_get(nn, "rules"));
	diff_object(&d, "", o, n);
	json_decref(o);
	json_decref(n);
	return d.err ? d.err : d.count;
}

/* ---- reachability ---------------------------------------------------------------------------------- */

#define PORTS_MAX 4096

struct probe_set {
	uint16_t ports[PORTS_MAX];
	size_t nports;
};

static void add_port(struct probe_set *s, long p)
{
	if (p < 1 || p > 65535)
		return;
	for (size_t i = 0; i < s->nports; i++)
		if (s->ports[i] == p)
			return;
	if (s->nports < PORTS_MAX)
		s->ports[s->nports++] = (uint16_t)p;
}

static void collect_ports(struct probe_set *s, json_t *doc)
{
	json_t *rules = json_object_get(json_object_get(doc, "network"), "rules"), *r, *p;
	size_t i, j;

	json_array_foreach(rules, i, r)
	{
		json_array_foreach(json_object_get(r, "ports"), j, p) add_port(s, (long)json_integer_value(p));
	}
}

/*
 * The name or address that stands for a rule's host: itself, a name one label under a wildcard's parent,
 * or a network's first address (the compiler keeps networks in canonical form).
 */
/* The name under a wildcard rule's `*.` or `**.`, or NULL for any other rule. */
static const char *wildcard_parent(const char *rule_host)
{
	return !strncmp(rule_host, "*.", 2) || !strncmp(rule_host, "**.", 3) ? strchr(rule_host, '.') + 1 : NULL;
}

/*
 * The host standing for a rule's: a name `depth` labels under a wildcard's parent (`*.` and `**.` agree on
 * one label and differ from two on), a network's first address, or the rule's own host.
 */
static int probe_host(const char *rule_host, unsigned depth, struct crgw_host *out)
{
	char name[CRGW_HOST_NAME_MAX + 1];
	const char *slash = strchr(rule_host, '/'), *parent = wildcard_parent(rule_host);

	if (parent) {
		if (snprintf(name, sizeof(name), "%scrgw-probe.%s", depth > 1 ? "crgw-probe." : "", parent) >=
		    (int)sizeof(name))
			return -EINVAL;
	} else if (slash) {
		snprintf(name, sizeof(name), "%.*s", (int)(slash - rule_host), rule_host);
	} else {
		snprintf(name, sizeof(name), "%s", rule_host);
	}
	return crgw_host_parse(name, strlen(name), out, NULL);
}

static bool same_decision(const struct crgw_decision *a, const struct crgw_decision *b)
{
	return a->allow == b->allow;
}

struct reach {
	const struct crgw_policy *old_policy, *new_policy;
	const struct crgw_blocklist *blocked;
	crgw_reach_flip_cb cb;
	void *arg;
	int count;
};

static void probe(struct reach *r, const char *label, const struct crgw_host *host, const struct probe_set *ports,
		  uint16_t other_port)
{
	for (size_t i = 0; i <= ports->nports; i++) {
		uint16_t port = i < ports->nports ? ports->ports[i] : other_port;
		struct crgw_reach_flip f = {.host = label, .port = i < ports->nports ? port : 0};

		if (!port)
			continue;
		crgw_policy_decide(r->old_policy, r->blocked, host, port, &f.old_decision);
		crgw_policy_decide(r->new_policy, r->blocked, host, port, &f.new_decision);
		if (same_decision(&f.old_decision, &f.new_decision))
			continue;
		f.now_allowed = f.new_decision.allow;
		r->cb(r->arg, &f);
		r->count++;
	}
}

/* Whether a rule before this one (in either document) stands for the same hosts: `*.x` and `**.x` do. */
static bool seen_host(json_t *docs[2], size_t doc, size_t upto, const char *host)
{
	const char *parent = wildcard_parent(host);

	for (size_t d = 0; d <= doc; d++) {
		json_t *rules = json_object_get(json_object_get(docs[d], "network"), "rules"), *r;
		size_t i, end = d == doc ? upto : json_array_size(rules);

		for (i = 0; i < end && (r = json_array_get(rules, i)); i++) {
			const char *h = rule_str(r, "host"), *p = wildcard_parent(h);

			if (parent ? p && !strcmp(p, parent) : !strcmp(h, host))
				return true;
		}
	}
	return false;
}

/*
 * Address ranges. A network stands for itself through its first address, but a change of prefix keeps
 * that address: 10.0.0.0/16 -> 10.0.0.0/8 opens 10.1.0.0-10.255.255.255 and its first address says
 * nothing of it. Between two consecutive edges (where a network of either policy, or a special range,
 * begins or ends) every address is in the same networks, so one address decides for the whole range;
 * each range that does not begin at a rule's own network is probed and named by its first and last address.
 */
struct edge {
	uint8_t kind;	 /* enum crgw_host_kind */
	bool rule_start; /* a rule's network begins here: probed already under the rule's host */
	uint8_t addr[16];
};

struct edges {
	struct edge *v;
	size_t n, cap;
};

static int edge_add(struct edges *e, enum crgw_host_kind kind, const uint8_t *addr, bool rule_start)
{
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 64;
		struct edge *v = realloc(e->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		e->v = v;
		e->cap = cap;
	}
	e->v[e->n] = (struct edge){.kind = (uint8_t)kind, .rule_start = rule_start};
	memcpy(e->v[e->n].addr, addr, 16);
	e->n++;
	return 0;
}

/* The address after a network's last one into `next`; false when the network ends the address space. */
static bool net_after(const struct pattern *p, uint8_t next[16])
{
	unsigned bits = host_bits(p->host.kind);
	int carry = 1;

	memcpy(next, p->host.addr, 16);
	for (unsigned bit = p->prefix; bit < bits; bit++)
		next[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
	for (int i = (int)bits / 8 - 1; i >= 0 && carry; i--)
		carry = ++next[i] == 0;
	return !carry;
}

static int edges_add_net(struct edges *e, const struct pattern *p, bool rule)
{
	uint8_t next[16];
	int err = edge_add(e, p->host.kind, p->host.addr, rule);

	if (!err && net_after(p, next))
		err = edge_add(e, p->host.kind, next, false);
	return err;
}

static int edge_cmp(const void *a, const void *b)
{
	const struct edge *x = a, *y = b;

	return x->kind != y->kind ? (int)x->kind - (int)y->kind : memcmp(x->addr, y->addr, 16);
}

/* The edges of every network rule of both documents, of the special and the blocked ranges, sorted, one per
 * address. */
static int collect_edges(json_t *docs[2], const struct crgw_blocklist *blocked, struct edges *e)
{
	struct pattern p;
	int err = 0;

	for (size_t d = 0; d < 2 && !err; d++) {
		json_t *rules = json_object_get(json_object_get(docs[d], "network"), "rules"), *rule;
		size_t i;

		json_array_foreach(rules, i, rule)
		{
			const char *h = rule_str(rule, "host");

			if (!err && !pattern_parse(h, strlen(h), &p, NULL) && p.kind == PATTERN_CIDR)
				err = edges_add_net(e, &p, true);
		}
	}
	for (size_t i = 0; !err && matcher_special_range(i, &p); i++)
		err = edges_add_net(e, &p, false);
	for (size_t i = 0; !err && matcher_blocked_range(blocked, i, &p); i++)
		err = edges_add_net(e, &p, false);
	/* The IPv6 forms that carry an IPv4 address (crgw_host_embedded_ipv4) are decided by it as well, so no
	 * range is named across one of their edges; IPv4-mapped is the IPv4 address itself. */
	static const char *const embedding[] = {"64:ff9b::/96", "::ffff:0:0:0/96", "2002::/16", "2001::/32"};

	for (size_t i = 0; !err && i < sizeof(embedding) / sizeof(embedding[0]); i++)
		if (!pattern_parse(embedding[i], strlen(embedding[i]), &p, NULL))
			err = edges_add_net(e, &p, false);
	if (err || !e->n)
		return err;
	qsort(e->v, e->n, sizeof(*e->v), edge_cmp);
	size_t out = 0;

	for (size_t i = 0; i < e->n; i++) {
		if (out && !edge_cmp(&e->v[out - 1], &e->v[i]))
			e->v[out - 1].rule_start |= e->v[i].rule_start;
		else
			e->v[out++] = e->v[i];
	}
	e->n = out;
	return 0;
}

/* "first-last" (or "first" for one address; IPv6 in brackets) of the range from edge `i` to the next edge of its
 * family. */
static int range_host(const struct edges *e, size_t i, struct crgw_host *host, char *label, size_t size)
{
	const struct edge *x = &e->v[i];
	int af = x->kind == CRGW_HOST_IPV4 ? AF_INET : AF_INET6;
	unsigned bytes = x->kind == CRGW_HOST_IPV4 ? 4 : 16;
	uint8_t last[16];
	char first_s[INET6_ADDRSTRLEN], last_s[INET6_ADDRSTRLEN];

	if (i + 1 < e->n && e->v[i + 1].kind == x->kind) {
		int borrow = 1;

		memcpy(last, e->v[i + 1].addr, 16);
		for (int b = (int)bytes - 1; b >= 0 && borrow; b--)
			borrow = last[b]-- == 0;
	} else {
		memset(last, 0xff, bytes);
	}
	inet_ntop(af, x->addr, first_s, sizeof(first_s));
	inet_ntop(af, last, last_s, sizeof(last_s));
	/* An IPv6 range is bracketed, as an IPv6 host with a port is, so the port stays readable after it. */
	if (memcmp(x->addr, last, bytes))
		snprintf(label, size, af == AF_INET ? "%s-%s" : "[%s]-[%s]", first_s, last_s);
	else
		snprintf(label, size, af == AF_INET ? "%s" : "[%s]", first_s);
	return crgw_host_parse(first_s, strlen(first_s), host, NULL);
}

static int probe_ranges(struct reach *r, json_t *docs[2], const struct probe_set *ports, uint16_t other)
{
	struct edges e = {0};
	int err = collect_edges(docs, r->blocked, &e);

	for (size_t i = 0; !err && i < e.n; i++) {
		char label[2 * INET6_ADDRSTRLEN + 6];
		struct crgw_host host;

		if (!e.v[i].rule_start && !range_host(&e, i, &host, label, sizeof(label)))
			probe(r, label, &host, ports, other);
	}
	free(e.v);
	return err;
}

int crgw_policy_diff_reach(const char *old_json, size_t old_len, const struct crgw_policy *old_policy,
			   const char *new_json, size_t new_len, const struct crgw_policy *new_policy,
			   const struct crgw_blocklist *blocked, crgw_reach_flip_cb cb, void *arg)
{
	struct reach r = {.old_policy = old_policy, .new_policy = new_policy, .blocked = blocked, .cb = cb, .arg = arg};
	struct probe_set *ports = calloc(1, sizeof(*ports));
	json_t *docs[2];
	struct crgw_host host;
	uint16_t other = 0;
	int err;

	if (!ports)
		return -ENOMEM;
	err = load_both(old_json, old_len, new_json, new_len, &docs[0], &docs[1]);
	if (err) {
		free(ports);
		return err;
	}
	add_port(ports, 80);
	add_port(ports, 443);
	collect_ports(ports, docs[0]);
	collect_ports(ports, docs[1]);
	/* One port no rule names stands for all of them. */
	for (long p = 1; p <= 65535 && !other; p++) {
		bool used = false;

		for (size_t i = 0; i < ports->nports && !used; i++)
			used = ports->ports[i] == p;
		if (!used)
			other = (uint16_t)p;
	}
	for (size_t d = 0; d < 2; d++) {
		json_t *rules = json_object_get(json_object_get(docs[d], "network"), "rules"), *rule;
		size_t i;

		json_array_foreach(rules, i, rule)
		{
			const char *h = rule_str(rule, "host"), *parent = wildcard_parent(h);
			char label[CRGW_HOST_NAME_MAX + 8];

			if (seen_host(docs, d, i, h))
				continue;
			if (parent) {
				/* Listed as one label under the parent (`*.x`), then as two (`*.*.x`). */
				snprintf(label, sizeof(label), "*.%s", parent);
				if (!probe_host(h, 1, &host))
					probe(&r, label, &host, ports, other);
				snprintf(label, sizeof(label), "*.*.%s", parent);
				if (!probe_host(h, 2, &host))
					probe(&r, label, &host, ports, other);
			} else if (!probe_host(h, 1, &host)) {
				probe(&r, h, &host, ports, other);
			}
		}
	}
	err = probe_ranges(&r, docs, ports, other);
	/* A host no rule names: what `default` decides. */
	if (!err && !crgw_host_parse("crgw-probe.invalid", 18, &host, NULL))
		probe(&r, "*", &host, ports, other);
	json_decref(docs[0]);
	json_decref(docs[1]);
	free(ports);
	return err ? err : r.count;
}
