/* SPDX-License-Identifier: Apache-2.0 */
/* The policy compiler: validates cleanroom.yaml and emits the canonical CompiledPolicy with its hash. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiled.h"
#include "crgw/policy_diff.h"
#include "gitref.h"
#include "lockfile.h"
#include "matcher.h"
#include "pattern.h"
#include "secret_scan.h"
#include "text.h"
#include "yaml_tree.h"

/* Bounds that keep a hostile policy's cost proportional to a large honest one. */
#define MAX_RULES CRGW_COMPILED_MAX_RULES
#define MAX_PORTS_PER_RULE CRGW_COMPILED_MAX_PORTS
#define MAX_STRING CRGW_COMPILED_MAX_STRING
#define MAX_LIST CRGW_COMPILED_MAX_LIST
#define MAX_SECRETS CRGW_COMPILED_MAX_SECRETS
#define MAX_METADATA 64

struct rule {
	bool deny;
	struct pattern pattern;
	uint16_t *ports; /* sorted, unique; NULL with nports 0 means every port (deny only) */
	size_t nports;
	char origin[160];
	const struct ynode *node;
	const struct ynode *reason;
};

struct compiler {
	struct crgw_compiled *out;
	const struct crgw_compile_opts *opts;
	struct rule *rules;
	size_t nrules;
	/* The document's credential-looking scalars, keys or values: never shown in a diagnostic. */
	const struct ynode **secrets;
	size_t nsecrets;
	bool oom; /* an allocation failed: the compile reports -ENOMEM, never a partial document */
};

/* A credential's shortest telling part: a diagnostic holding this much of one is cut there. */
#define SECRET_PREFIX 8

/*
 * Replaces, in `buf`, every run that begins with the first bytes of one of the document's credential-looking
 * scalars (as far as it goes on matching it: a message may hold a truncated copy) with "<credential>".
 */
static void redact(const struct compiler *c, char *buf, size_t size)
{
	for (size_t i = 0; i < c->nsecrets; i++) {
		const struct ynode *s = c->secrets[i];
		size_t want = s->len < SECRET_PREFIX ? s->len : SECRET_PREFIX;
		char *at;

		while (want && (at = memmem(buf, strlen(buf), s->value, want))) {
			size_t n = want, rest;
			char tail[512];

			while (n < s->len && at[n] && at[n] == s->value[n])
				n++;
			/* Another credential sharing its start: the rest of that one's run goes too. */
			while (isalnum((unsigned char)at[n]) || (at[n] && strchr("_-+/=", at[n])))
				n++;
			rest = strlen(at + n);
			if (rest >= sizeof(tail))
				rest = sizeof(tail) - 1;
			memcpy(tail, at + n, rest);
			tail[rest] = '\0';
			snprintf(at, size - (size_t)(at - buf), "<credential>%s", tail);
		}
	}
}

static void vdiag(struct compiler *c, enum crgw_reason code, const struct ynode *at, const char *path,
		  const char *fmt, va_list ap)
{
	struct crgw_compiled *o = c->out;

	if (code == CRGW_REASON_NONE)
		o->nwarnings++;
	else
		o->nerrors++;
	if (o->ndiags >= CRGW_DIAG_MAX)
		return;
	struct crgw_diag *d = &o->diags[o->ndiags++];

	d->code = code;
	d->line = at ? at->line : 0;
	d->column = at ? at->column : 0;
	snprintf(d->path, sizeof(d->path), "%s", path);
	vsnprintf(d->message, sizeof(d->message), fmt, ap);
	redact(c, d->path, sizeof(d->path));
	redact(c, d->message, sizeof(d->message));
}

__attribute__((format(printf, 5, 6))) static void error(struct compiler *c, enum crgw_reason code,
							 const struct ynode *at, const char *path,
							 const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdiag(c, code, at, path, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 4, 5))) static void invalid(struct compiler *c, const struct ynode *at,
							  const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdiag(c, CRGW_REASON_POLICY_INVALID, at, path, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 4, 5))) static void warning(struct compiler *c, const struct ynode *at,
							  const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdiag(c, CRGW_REASON_NONE, at, path, fmt, ap);
	va_end(ap);
}

/* Joins a path and a key; the result is truncated, never overflowed, for absurdly deep input. */
static void path_key(char *buf, size_t size, const char *base, const char *key)
{
	if (snprintf(buf, size, "%s%s%s", base, base[0] ? "." : "", key) >= (int)size)
		memcpy(buf + size - 4, "...", 4);
}

static void path_index(char *buf, size_t size, const char *base, size_t i)
{
	if (snprintf(buf, size, "%s[%zu]", base, i) >= (int)size)
		memcpy(buf + size - 4, "...", 4);
}

static bool is_null(const struct ynode *n)
{
	return n->type == YNODE_SCALAR && n->plain &&
	       (n->len == 0 || strcmp(n->value, "~") == 0 || strcmp(n->value, "null") == 0 ||
		strcmp(n->value, "Null") == 0 || strcmp(n->value, "NULL") == 0);
}

/* "null" for a key written without a value ("allow:"), which reads as "found a scalar" otherwise. */
static const char *type_name(const struct ynode *n)
{
	if (n->type == YNODE_SCALAR)
		return is_null(n) ? "null" : "a scalar";
	return n->type == YNODE_MAP ? "a mapping" : "a list";
}

static bool expect_type(struct compiler *c, const struct ynode *n, const char *path, enum ynode_type type)
{
	static const char *const names[] = { "a scalar", "a list", "a mapping" };

	if (n->type == type)
		return true;
	invalid(c, n, path, "expected %s, found %s", names[type], type_name(n));
	return false;
}

/*
 * The edit distance between two keys (insertions, deletions, substitutions, and a swap of neighbours,
 * which is the commonest typo: "prots"), ignoring case, stopping early past 2: only a near miss is worth
 * suggesting. Keys are at most 64 bytes here; longer ones are never near a known key.
 */
static unsigned key_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned d[65][65];

	if (la > 64 || lb > 64 || (la > lb ? la - lb : lb - la) > 2)
		return 3;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (unsigned)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			unsigned cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
			unsigned best = d[i - 1][j - 1] + cost;

			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[la][lb];
}

/* The known key an unknown one was probably meant to be (at most 2 edits, fewer than its length), or NULL. */
static const char *key_suggestion(const char *key, const char *const *keys)
{
	const char *best = NULL;
	unsigned best_d = 3;

	for (const char *const *p = keys; *p; p++) {
		unsigned dist = key_distance(key, *p);

		if (dist < best_d && dist < strlen(*p)) {
			best = *p;
			best_d = dist;
		}
	}
	return best;
}

/* Refuses keys that `keys` (NULL-terminated) does not list; typos must not silently weaken a policy. */
static bool check_keys(struct compiler *c, const struct ynode *map, const char *path, const char *const *keys)
{
	bool ok = true;

	if (!expect_type(c, map, path, YNODE_MAP))
		return false;
	for (size_t i = 0; i < map->nchildren; i += 2) {
		const struct ynode *k = map->children[i];
		bool known = false;

		for (const char *const *p = keys; *p && !known; p++)
			known = strcmp(k->value, *p) == 0;
		if (!known) {
			char sub[160];

			const char *near = key_suggestion(k->value, keys);

			path_key(sub, sizeof(sub), path, k->value);
			invalid(c, k, sub, "unknown key '%.64s'%s%s%s", k->value, near ? " (did you mean '" : "",
				near ? near : "", near ? "'?)" : "");
			ok = false;
		}
	}
	return ok;
}

static bool get_string(struct compiler *c, const struct ynode *n, const char *path, const char **out)
{
	if (!expect_type(c, n, path, YNODE_SCALAR))
		return false;
	if (is_null(n)) {
		invalid(c, n, path, "expected a string, found null");
		return false;
	}
	if (n->len > MAX_STRING) {
		invalid(c, n, path, "string longer than %d bytes", MAX_STRING);
		return false;
	}
	if (text_has_control(n->value, n->len)) {
		invalid(c, n, path, "control character in string");
		return false;
	}
	*out = n->value;
	return true;
}

/* Plain decimal only: YAML 1.1 would read 0443 as octal and 0x1bb as hex, which no one means here. */
static bool get_int(struct compiler *c, const struct ynode *n, const char *path, long min, long max, long *out)
{
	long v = 0;

	if (!expect_type(c, n, path, YNODE_SCALAR))
		return false;
	if (!n->plain || n->len == 0 || n->len > 10 || (n->len > 1 && n->value[0] == '0'))
		goto bad;
	for (size_t i = 0; i < n->len; i++) {
		if (n->value[i] < '0' || n->value[i] > '9')
			goto bad;
		v = v * 10 + (n->value[i] - '0');
	}
	if (v < min || v > max) {
		invalid(c, n, path, "%ld is out of range %ld-%ld", v, min, max);
		return false;
	}
	*out = v;
	return true;
bad:
	invalid(c, n, path, "expected a decimal integer from %ld to %ld", min, max);
	return false;
}

/* The longest release cooldown: a year. Past that a registry would serve nothing new at all. */
#define MAX_DURATION_S (366L * 86400)

/*
 * A duration such as "72h", "3d", "1d12h" or "90m": decimal numbers each followed by a unit (s, m, h, d,
 * w), largest first, each unit once; "0" alone is no duration. Into seconds.
 */
static bool get_duration(struct compiler *c, const struct ynode *n, const char *path, long *out)
{
	static const char units[] = "wdhms";
	static const long seconds[] = { 604800, 86400, 3600, 60, 1 };
	const char *p, *last = NULL;
	long total = 0;

	if (!get_string(c, n, path, &p))
		return false;
	if (strcmp(p, "0") == 0 && !n->plain) {
		*out = 0;
		return true;
	}
	if (!*p)
		goto bad;
	while (*p) {
		long v = 0;
		size_t digits = 0;
		const char *u;

		/* Any number of digits; past a year's seconds the value stops growing and is refused below. */
		while (*p >= '0' && *p <= '9') {
			if (v <= MAX_DURATION_S)
				v = v * 10 + (*p - '0');
			p++;
			digits++;
		}
		if (!digits || !*p || !(u = strchr(units, *p)) || (last && u <= last))
			goto bad;
		last = u;
		total += v > MAX_DURATION_S ? MAX_DURATION_S + 1 : v * seconds[u - units];
		if (total > MAX_DURATION_S) {
			invalid(c, n, path, "longer than 366 days");
			return false;
		}
		p++;
	}
	*out = total;
	return true;
bad:
	if (n->plain && strcmp(n->value, "0") == 0)
		invalid(c, n, path, "a bare 0 is a number in YAML: write \"0\" (quoted) for no cooldown");
	else
		invalid(c, n, path,
			"expected a duration such as 72h, 3d or 1d12h (units w, d, h, m, s, largest first)");
	return false;
}

static bool get_bool(struct compiler *c, const struct ynode *n, const char *path, bool *out)
{
	if (n->type == YNODE_SCALAR && n->plain && strcmp(n->value, "true") == 0) {
		*out = true;
		return true;
	}
	if (n->type == YNODE_SCALAR && n->plain && strcmp(n->value, "false") == 0) {
		*out = false;
		return true;
	}
	invalid(c, n, path, "expected true or false");
	return false;
}

static bool get_enum(struct compiler *c, const struct ynode *n, const char *path, const char *const *values,
		     const char **out)
{
	const char *s;

	if (!get_string(c, n, path, &s))
		return false;
	for (const char *const *v = values; *v; v++) {
		if (strcmp(s, *v) == 0) {
			*out = *v;
			return true;
		}
	}
	char allowed[128] = "";

	for (const char *const *v = values; *v; v++) {
		size_t used = strlen(allowed);

		snprintf(allowed + used, sizeof(allowed) - used, "%s%s", used ? ", " : "", *v);
	}
	invalid(c, n, path, "'%.64s' is not one of: %s", s, allowed);
	return false;
}

static bool get_list(struct compiler *c, const struct ynode *n, const char *path, bool nonempty)
{
	if (!expect_type(c, n, path, YNODE_SEQ))
		return false;
	if (nonempty && n->nchildren == 0) {
		invalid(c, n, path, "list must not be empty");
		return false;
	}
	if (n->nchildren > MAX_LIST) {
		invalid(c, n, path, "list longer than %d entries", MAX_LIST);
		return false;
	}
	return true;
}

/* jansson fails only when memory runs out; the flag turns that into -ENOMEM for the whole compile. */
static void add_json(struct compiler *c, json_t *obj, const char *key, json_t *value)
{
	if (!value || json_object_set_new(obj, key, value) != 0)
		c->oom = true;
}

static void append_json(struct compiler *c, json_t *arr, json_t *value)
{
	if (!value || json_array_append_new(arr, value) != 0)
		c->oom = true;
}

static json_t *string_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* A name (no wildcard, no IP) for places that connect to exactly one host: git, registries. */
static bool get_host_name(struct compiler *c, const struct ynode *n, const char *path, struct crgw_host *out)
{
	const char *s, *why = NULL;

	if (!get_string(c, n, path, &s))
		return false;
	if (crgw_host_parse(s, n->len, out, &why) != 0) {
		invalid(c, n, path, "invalid host: %s", why);
		return false;
	}
	if (out->kind != CRGW_HOST_NAME) {
		invalid(c, n, path, "expected a host name, not an IP address");
		return false;
	}
	return true;
}

static json_t *host_list(struct compiler *c, const struct ynode *n, const char *path, bool wildcards)
{
	json_t *arr = json_array();

	if (!get_list(c, n, path, true))
		return arr;
	for (size_t i = 0; i < n->nchildren; i++) {
		char sub[160], text[CRGW_HOST_NAME_MAX + 8];
		const struct ynode *e = n->children[i];

		path_index(sub, sizeof(sub), path, i);
		if (wildcards) {
			struct pattern p;
			const char *s, *why = NULL;

			if (!get_string(c, e, sub, &s))
				continue;
			if (pattern_parse(s, e->len, &p, &why) != 0 || p.kind == PATTERN_CIDR) {
				invalid(c, e, sub, "invalid host: %s", why ? why : "expected a name or wildcard");
				continue;
			}
			/* A secret scoped to "*.com" goes to any host under it: the limit of allow rules, for
			 * the same reason and more (the credential itself would leave). */
			if (pattern_check_allow(&p, &why) != 0) {
				invalid(c, e, sub, "a secret's wildcard needs at least two labels after the wildcard "
						   "('*.com' would send it to most of the internet)");
				continue;
			}
			pattern_format(&p, text, sizeof(text));
		} else {
			struct crgw_host h;

			if (!get_host_name(c, e, sub, &h))
				continue;
			snprintf(text, sizeof(text), "%s", h.text);
		}
		append_json(c, arr, json_string(text));
	}
	return arr;
}

/* ---- sandbox.network ---------------------------------------------------------------------------- */

static int cmp_u16(const void *a, const void *b)
{
	return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

static bool parse_ports(struct compiler *c, const struct ynode *n, const char *path, struct rule *r)
{
	if (!get_list(c, n, path, true))
		return false;
	if (n->nchildren > MAX_PORTS_PER_RULE) {
		invalid(c, n, path, "more than %d ports in one rule", MAX_PORTS_PER_RULE);
		return false;
	}
	r->ports = calloc(n->nchildren, sizeof(*r->ports));
	if (!r->ports) {
		c->oom = true;
		return false;
	}
	/* Every bad port is reported, not only the first: validate lists every problem. */
	bool ok = true;

	for (size_t i = 0; i < n->nchildren; i++) {
		char sub[160];
		long port;

		path_index(sub, sizeof(sub), path, i);
		if (!get_int(c, n->children[i], sub, 1, 65535, &port))
			ok = false;
		else
			r->ports[r->nports++] = (uint16_t)port;
	}
	if (!ok)
		return false;
	qsort(r->ports, r->nports, sizeof(*r->ports), cmp_u16);
	size_t w = 0;

	for (size_t i = 0; i < r->nports; i++)
		if (w == 0 || r->ports[w - 1] != r->ports[i])
			r->ports[w++] = r->ports[i];
	r->nports = w;
	return true;
}

static void parse_rule(struct compiler *c, const struct ynode *n, const char *path, bool deny)
{
	static const char *const keys[] = { "host", "ports", "reason", NULL };
	struct rule r = { .deny = deny, .node = n };
	const struct ynode *host, *ports, *reason;
	const char *s, *why = NULL;

	if (!check_keys(c, n, path, keys))
		return;
	host = ytree_get(n, "host");
	ports = ytree_get(n, "ports");
	reason = ytree_get(n, "reason");
	if (!host) {
		invalid(c, n, path, "a rule needs a 'host'");
		return;
	}
	char sub[160];

	path_key(sub, sizeof(sub), path, "host");
	if (!get_string(c, host, sub, &s))
		return;
	if (pattern_parse(s, host->len, &r.pattern, &why) != 0) {
		invalid(c, host, sub, "invalid host: %s", why);
		return;
	}
	if (!deny && pattern_check_allow(&r.pattern, &why) != 0) {
		invalid(c, host, sub, "%s", why);
		return;
	}
	if (reason) {
		const char *text;

		path_key(sub, sizeof(sub), path, "reason");
		if (!get_string(c, reason, sub, &text))
			return;
		r.reason = reason;
	}
	if (ports) {
		path_key(sub, sizeof(sub), path, "ports");
		if (!parse_ports(c, ports, sub, &r)) {
			free(r.ports);
			return;
		}
	} else if (!deny) {
		static const uint16_t defaults[] = { 80, 443 };

		r.ports = malloc(sizeof(defaults));
		if (!r.ports) {
			c->oom = true;
			return;
		}
		memcpy(r.ports, defaults, sizeof(defaults));
		r.nports = 2;
	}
	snprintf(r.origin, sizeof(r.origin), "%s", path);
	if (c->nrules >= MAX_RULES) {
		invalid(c, n, path, "more than %d network rules", MAX_RULES);
		free(r.ports);
		return;
	}
	c->rules[c->nrules++] = r;
}

/* Builds a matcher over the parsed rules, in the order they were written (`mrules` holds them). */
static int matcher_build_from(struct compiler *c, struct matcher_rule *mrules, struct matcher **out)
{
	for (size_t i = 0; i < c->nrules; i++) {
		mrules[i].deny = c->rules[i].deny;
		mrules[i].pattern = c->rules[i].pattern;
		mrules[i].ports = c->rules[i].ports;
		mrules[i].nports = c->rules[i].nports;
		mrules[i].origin = c->rules[i].origin;
	}
	return matcher_build(mrules, c->nrules, out);
}

static bool ports_subset(const struct rule *inner, const struct rule *outer)
{
	if (outer->nports == 0)
		return true;
	for (size_t i = 0; i < inner->nports; i++)
		if (!bsearch(&inner->ports[i], outer->ports, outer->nports, sizeof(uint16_t), cmp_u16))
			return false;
	return true;
}

/* Orders patterns so that identical ones are adjacent; any total order will do. */
static int pattern_cmp(const struct pattern *a, const struct pattern *b)
{
	if (a->kind != b->kind)
		return (int)a->kind - (int)b->kind;
	if (a->host.kind != b->host.kind)
		return (int)a->host.kind - (int)b->host.kind;
	if (a->prefix != b->prefix)
		return (int)a->prefix - (int)b->prefix;
	return strcmp(a->host.text, b->host.text);
}

static int deny_cmp(const void *a, const void *b)
{
	return pattern_cmp(&(*(const struct rule *const *)a)->pattern, &(*(const struct rule *const *)b)->pattern);
}

/*
 * An allow rule that a deny rule for the same pattern fully covers can never take effect: a mistake.
 * Deny rules are sorted once, so a large policy costs n log n here, not n squared.
 */
static void check_shadowed(struct compiler *c)
{
	const struct rule **denies = calloc(c->nrules ? c->nrules : 1, sizeof(*denies));
	size_t ndeny = 0;

	if (!denies) {
		c->oom = true;
		return;
	}
	for (size_t i = 0; i < c->nrules; i++)
		if (c->rules[i].deny)
			denies[ndeny++] = &c->rules[i];
	qsort(denies, ndeny, sizeof(*denies), deny_cmp);
	for (size_t i = 0; i < c->nrules; i++) {
		const struct rule *a = &c->rules[i];
		size_t lo = 0, hi = ndeny;

		if (a->deny)
			continue;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;

			if (pattern_cmp(&denies[mid]->pattern, &a->pattern) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (; lo < ndeny && pattern_cmp(&denies[lo]->pattern, &a->pattern) == 0; lo++) {
			if (ports_subset(a, denies[lo])) {
				error(c, CRGW_REASON_POLICY_CONFLICT, a->node, a->origin,
				      "this allow rule can never match: %s denies the same host on all its ports",
				      denies[lo]->origin);
				break;
			}
		}
	}
	free(denies);
}

/* Sorts JSON values by their canonical text, so the output order depends on content alone. */
struct keyed {
	char *key;
	json_t *value;
};

static int cmp_keyed(const void *a, const void *b)
{
	return strcmp(((const struct keyed *)a)->key, ((const struct keyed *)b)->key);
}

static int sort_array(json_t *arr)
{
	size_t n = json_array_size(arr);
	struct keyed *v = calloc(n ? n : 1, sizeof(*v));
	int err = 0;

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		v[i].value = json_incref(json_array_get(arr, i));
		v[i].key = json_dumps(v[i].value, CRGW_JSON_CANONICAL | JSON_ENCODE_ANY);
		if (!v[i].key)
			err = -ENOMEM;
	}
	if (!err) {
		qsort(v, n, sizeof(*v), cmp_keyed);
		json_array_clear(arr);
		for (size_t i = 0; i < n; i++)
			if (json_array_append(arr, v[i].value) != 0)
				err = -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		free(v[i].key);
		json_decref(v[i].value);
	}
	free(v);
	return err;
}

static json_t *rules_json(struct compiler *c)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < c->nrules; i++) {
		const struct rule *r = &c->rules[i];
		char text[CRGW_HOST_NAME_MAX + 8];
		json_t *o = json_object(), *ports = json_array();

		pattern_format(&r->pattern, text, sizeof(text));
		for (size_t p = 0; p < r->nports; p++)
			append_json(c, ports, json_integer(r->ports[p]));
		add_json(c, o, "action", json_string(r->deny ? "deny" : "allow"));
		add_json(c, o, "host", json_string(text));
		add_json(c, o, "ports", ports);
		add_json(c, o, "origin", json_string(r->origin));
		if (r->reason)
			add_json(c, o, "reason", json_string(r->reason->value));
		append_json(c, arr, o);
	}
	return arr;
}

static json_t *compile_network(struct compiler *c, const struct ynode *n)
{
	static const char *const keys[] = { "default", "allow", "deny", NULL };
	static const char *const defaults[] = { "deny", "allow", NULL };
	const char *path = "sandbox.network", *dflt = NULL;
	json_t *out = json_object();

	if (!check_keys(c, n, path, keys))
		return out;
	const struct ynode *d = ytree_get(n, "default");

	if (!d) {
		invalid(c, n, path, "'default' is required (deny or allow)");
	} else if (get_enum(c, d, "sandbox.network.default", defaults, &dflt)) {
		if (strcmp(dflt, "allow") == 0 && !c->opts->allow_default_allow)
			invalid(c, d, "sandbox.network.default",
				"default: allow is refused unless the operator passes --allow-default-allow");
		add_json(c, out, "default", json_string(dflt));
	}

	size_t total = 0;

	for (int deny = 0; deny < 2; deny++) {
		const struct ynode *list = ytree_get(n, deny ? "deny" : "allow");

		if (list && list->type == YNODE_SEQ)
			total += list->nchildren;
	}
	c->rules = calloc(total ? total : 1, sizeof(*c->rules));
	if (!c->rules) {
		c->oom = true;
		return out;
	}
	for (int deny = 0; deny < 2; deny++) {
		const char *name = deny ? "deny" : "allow";
		const struct ynode *list = ytree_get(n, name);
		char lpath[160];

		if (!list)
			continue;
		path_key(lpath, sizeof(lpath), path, name);
		if (!expect_type(c, list, lpath, YNODE_SEQ))
			continue;
		for (size_t i = 0; i < list->nchildren; i++) {
			char sub[160];

			path_index(sub, sizeof(sub), lpath, i);
			parse_rule(c, list->children[i], sub, deny);
		}
	}
	check_shadowed(c);
	add_json(c, out, "rules", rules_json(c));
	return out;
}

/* ---- sandbox ------------------------------------------------------------------------------------ */

static bool is_lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* name[:tag]@sha256:<64 hex>; a tag alone can move under a sandbox, a digest cannot. */
static json_t *compile_image(struct compiler *c, const struct ynode *n)
{
	static const char *const keys[] = { "ref", NULL };
	const char *path = "sandbox.image", *ref;
	const struct ynode *r;
	json_t *out = json_object();

	if (!check_keys(c, n, path, keys))
		return out;
	r = ytree_get(n, "ref");
	if (!r) {
		invalid(c, n, path, "'ref' is required");
		return out;
	}
	if (!get_string(c, r, "sandbox.image.ref", &ref))
		return out;
	const char *at = strchr(ref, '@');

	if (!at) {
		invalid(c, r, "sandbox.image.ref", "image must be pinned by digest (name@sha256:<64 hex>)");
		return out;
	}
	if (strlen(at + 1) != 71 || strncmp(at + 1, "sha256:", 7) != 0 || !is_lower_hex(at + 8, 64)) {
		invalid(c, r, "sandbox.image.ref", "digest must be sha256: followed by 64 lowercase hex digits");
		return out;
	}
	for (const char *p = ref; p < at; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("._-/:", *p))) {
			invalid(c, r, "sandbox.image.ref", "invalid character in image name");
			return out;
		}
	}
	if (at == ref) {
		invalid(c, r, "sandbox.image.ref", "image name is empty");
		return out;
	}
	add_json(c, out, "ref", json_string(ref));
	add_json(c, out, "digest", json_string(at + 1));
	return out;
}

static json_t *compile_sandbox(struct compiler *c, const struct ynode *n, json_t **network)
{
	static const char *const keys[] = { "image", "ttl_minutes", "network", "learn", NULL };
	json_t *out = json_object();
	const struct ynode *v;
	long ttl = 60;
	bool learn = true;

	*network = NULL;
	if (!check_keys(c, n, "sandbox", keys))
		return out;
	if ((v = ytree_get(n, "image")))
		add_json(c, out, "image", compile_image(c, v));
	if ((v = ytree_get(n, "ttl_minutes")))
		get_int(c, v, "sandbox.ttl_minutes", 1, 10080, &ttl);
	add_json(c, out, "ttl_minutes", json_integer(ttl));
	/* Written only when it forbids learn mode, so that every policy without the key keeps its hash. */
	if ((v = ytree_get(n, "learn")) && get_bool(c, v, "sandbox.learn", &learn) && !learn)
		add_json(c, out, "learn", json_false());
	if ((v = ytree_get(n, "network")))
		*network = compile_network(c, v);
	else
		invalid(c, n, "sandbox", "'network' is required");
	return out;
}

/* ---- git, registries, secrets, metadata --------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Sorted bytewise and without duplicates, so that order and repetition in the file do not change the hash
 * (and the loader can insist on exactly this form).
 */
static json_t *compile_push_refs(struct compiler *c, const struct ynode *n)
{
	static const char *const defaults[] = GITREF_DEFAULT_PUSH_REFS;
	const char **refs = NULL;
	size_t count = 0;
	json_t *arr = json_array();

	if (!n) {
		for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
			append_json(c, arr, json_string(defaults[i]));
		return arr;
	}
	if (!get_list(c, n, "git.push_refs", true))
		return arr;
	refs = calloc(n->nchildren, sizeof(*refs));
	if (!refs) {
		c->oom = true;
		return arr;
	}
	for (size_t i = 0; i < n->nchildren; i++) {
		const struct ynode *e = n->children[i];
		const char *s, *why = NULL;
		char sub[160];

		path_index(sub, sizeof(sub), "git.push_refs", i);
		if (!get_string(c, e, sub, &s))
			continue;
		if (gitref_check(s, e->len, true, NULL, &why) != 0) {
			invalid(c, e, sub, "invalid ref pattern: %s", why);
			continue;
		}
		refs[count++] = s;
	}
	qsort(refs, count, sizeof(*refs), cmp_str);
	for (size_t i = 0; i < count; i++)
		if (i == 0 || strcmp(refs[i - 1], refs[i]) != 0)
			append_json(c, arr, json_string(refs[i]));
	free(refs);
	return arr;
}

static json_t *compile_git(struct compiler *c, const struct ynode *n)
{
	static const char *const keys[] = { "hosts", "push", "push_refs", "force_push", NULL };
	const struct ynode *v, *refs = NULL, *force = NULL;
	json_t *out = json_object();
	bool push = false, force_push = false;

	if (n && check_keys(c, n, "git", keys)) {
		if ((v = ytree_get(n, "hosts")))
			add_json(c, out, "hosts", host_list(c, v, "git.hosts", false));
		if ((v = ytree_get(n, "push")))
			get_bool(c, v, "git.push", &push);
		refs = ytree_get(n, "push_refs");
		if ((force = ytree_get(n, "force_push")))
			get_bool(c, force, "git.force_push", &force_push);
	}
	if (!json_object_get(out, "hosts"))
		add_json(c, out, "hosts", json_array());
	add_json(c, out, "push", json_boolean(push));
	add_json(c, out, "push_refs", compile_push_refs(c, refs));
	add_json(c, out, "force_push", json_boolean(force_push));
	/* Kept in the compiled form as written, but an author who set them most likely meant to push. */
	if (!push && refs)
		warning(c, refs, "git.push_refs", "has no effect while git.push is false");
	if (!push && force)
		warning(c, force, "git.force_push", "has no effect while git.push is false");
	return out;
}

/* Lockfile paths come from a repository: they may name only files beneath it. */
static bool safe_relative_path(const char *p)
{
	if (p[0] == '/' || p[0] == '\0')
		return false;
	for (const char *s = p; *s;) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);

		if (n == 0 || (n == 2 && s[0] == '.' && s[1] == '.') || (n == 1 && s[0] == '.'))
			return false;
		s += n + (e ? 1 : 0);
	}
	return true;
}


/* Why a lockfile could not be read (the errors crgw_read_file_cb documents). */
static const char *lockfile_read_error(int err)
{
	switch (err) {
	case -E2BIG:
		return "file too large";
	case -EINVAL:
		return "not a regular file";
	case -EXDEV:
	case -ELOOP:
		return "a link or '..' in its path leads outside the repository";
	default:
		return strerror(-err);
	}
}
static void load_lockfile(struct compiler *c, const struct ynode *n, const char *path, const char *registry,
			  struct crgw_artifact_list *artifacts)
{
	enum crgw_lockfile_kind kind;
	struct crgw_lockfile_error lerr = { 0 };
	const char *file;
	char *buf = NULL;
	size_t len = 0;
	int err;

	if (!get_string(c, n, path, &file))
		return;
	if (!safe_relative_path(file)) {
		invalid(c, n, path, "lockfile path must be relative to the repository, without '.' or '..'");
		return;
	}
	if (crgw_lockfile_kind_from_name(file, &kind) != 0) {
		invalid(c, n, path,
			"'%.64s' is not a supported lockfile (package-lock.json, npm-shrinkwrap.json, yarn.lock, "
			"requirements*.txt, go.sum)",
			file);
		return;
	}
	if (strcmp(crgw_lockfile_registry(kind), registry) != 0) {
		invalid(c, n, path, "'%.64s' is a %s lockfile, not one for registry %s", file,
			crgw_lockfile_registry(kind), registry);
		return;
	}
	if (!c->opts->read_file) {
		invalid(c, n, path, "lockfile enforcement is enabled but lockfiles cannot be read here");
		return;
	}
	err = c->opts->read_file(c->opts->read_file_arg, file, CRGW_LOCKFILE_MAX_BYTES, &buf, &len);
	if (err == -ENOMEM) {
		c->oom = true;
		return;
	}
	if (err) {
		invalid(c, n, path, "cannot read lockfile '%.64s': %s", file, lockfile_read_error(err));
		return;
	}
	err = crgw_lockfile_parse(kind, buf, len, artifacts, &lerr);
	free(buf);
	if (err == -ENOMEM) {
		c->oom = true;
	} else if (err == -E2BIG) {
		invalid(c, n, path, "lockfile '%.64s' has too many entries", file);
	} else if (err) {
		invalid(c, n, path, "%.64s:%u:%u: %s", file, lerr.line, lerr.column, lerr.message);
	}
}

static json_t *artifacts_json(struct compiler *c, const struct crgw_artifact_list *list)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < list->count; i++) {
		const struct crgw_artifact *a = &list->items[i];
		json_t *o = json_object();

		add_json(c, o, "name", json_string(a->name));
		add_json(c, o, "version", json_string(a->version));
		add_json(c, o, "registry", string_or_null(a->registry));
		add_json(c, o, "integrity", json_string(a->integrity));
		append_json(c, arr, o);
	}
	return arr;
}

/* Artifacts resolved from a host the registry may not use will fail at install time: say so now. */
static void warn_foreign_registries(struct compiler *c, const struct ynode *at, const char *path,
				    const struct crgw_artifact_list *list, json_t *allowed)
{
	const char *last = NULL;

	for (size_t i = 0; i < list->count; i++) {
		const char *reg = list->items[i].registry;
		bool ok = !reg;

		for (size_t j = 0; !ok && j < json_array_size(allowed); j++)
			ok = strcmp(reg, json_string_value(json_array_get(allowed, j))) == 0;
		if (ok || (last && strcmp(last, reg) == 0))
			continue;
		warning(c, at, path, "lockfile resolves '%.64s' from '%.64s', which is not in allowed_hosts",
			list->items[i].name, reg);
		last = reg;
	}
}

static json_t *compile_enforcement(struct compiler *c, const struct ynode *n, const char *path,
				   const char *registry, json_t *registry_out)
{
	static const char *const keys[] = { "enabled", "mode", "lockfiles", NULL };
	static const char *const modes[] = { "deny_unknown", "warn", NULL };
	json_t *out = json_object(), *files = json_array();
	const struct ynode *v, *lockfiles;
	const char *mode = "deny_unknown";
	bool enabled = false;
	char sub[160];

	add_json(c, out, "lockfiles", files);
	if (!check_keys(c, n, path, keys))
		return out;
	path_key(sub, sizeof(sub), path, "enabled");
	if ((v = ytree_get(n, "enabled")))
		get_bool(c, v, sub, &enabled);
	path_key(sub, sizeof(sub), path, "mode");
	if ((v = ytree_get(n, "mode")))
		get_enum(c, v, sub, modes, &mode);
	add_json(c, out, "enabled", json_boolean(enabled));
	add_json(c, out, "mode", json_string(mode));

	lockfiles = ytree_get(n, "lockfiles");
	path_key(sub, sizeof(sub), path, "lockfiles");
	if (!lockfiles) {
		if (enabled)
			invalid(c, n, sub, "enforcement is enabled but no lockfiles are listed");
		return out;
	}
	if (!get_list(c, lockfiles, sub, enabled))
		return out;

	struct crgw_artifact_list artifacts = { 0 };

	for (size_t i = 0; i < lockfiles->nchildren; i++) {
		char item[160];
		const char *file;

		path_index(item, sizeof(item), sub, i);
		if (!get_string(c, lockfiles->children[i], item, &file))
			continue;
		append_json(c, files, json_string(file));
		if (enabled)
			load_lockfile(c, lockfiles->children[i], item, registry, &artifacts);
	}
	if (enabled) {
		crgw_artifact_list_sort_unique(&artifacts);
		warn_foreign_registries(c, lockfiles, sub, &artifacts, json_object_get(registry_out, "allowed_hosts"));
		add_json(c, registry_out, "artifacts", artifacts_json(c, &artifacts));
	}
	crgw_artifact_list_free(&artifacts);
	return out;
}

static json_t *compile_registry(struct compiler *c, const struct ynode *n, const char *name)
{
	static const char *const keys[] = { "enable", "allowed_hosts", "fallback", "lockfile_enforcement",
					    "min_release_age", NULL };
	static const char *const fallbacks[] = { "deny", "allow", NULL };
	json_t *out = json_object();
	const struct ynode *v;
	const char *fallback = "deny";
	bool enable = false;
	char path[64], sub[160];

	snprintf(path, sizeof(path), "registries.%s", name);
	if (!check_keys(c, n, path, keys))
		return out;
	path_key(sub, sizeof(sub), path, "enable");
	if ((v = ytree_get(n, "enable")))
		get_bool(c, v, sub, &enable);
	add_json(c, out, "enable", json_boolean(enable));
	path_key(sub, sizeof(sub), path, "allowed_hosts");
	if ((v = ytree_get(n, "allowed_hosts")))
		add_json(c, out, "allowed_hosts", host_list(c, v, sub, false));
	else if (enable)
		invalid(c, n, sub, "an enabled registry needs 'allowed_hosts'");
	path_key(sub, sizeof(sub), path, "fallback");
	if ((v = ytree_get(n, "fallback")))
		get_enum(c, v, sub, fallbacks, &fallback);
	add_json(c, out, "fallback", json_string(fallback));
	path_key(sub, sizeof(sub), path, "min_release_age");
	if ((v = ytree_get(n, "min_release_age"))) {
		long age = 0;

		/* An image registry records no publish time of its own: nothing to measure the age by. */
		if (strcmp(name, "oci") == 0)
			invalid(c, v, sub, "OCI registries record no publish times; there is no release age to hold back");
		else if (get_duration(c, v, sub, &age))
			add_json(c, out, "min_release_age_seconds", json_integer(age));
	}
	path_key(sub, sizeof(sub), path, "lockfile_enforcement");
	if ((v = ytree_get(n, "lockfile_enforcement"))) {
		if (strcmp(name, "oci") == 0)
			invalid(c, v, sub, "OCI images are pinned by digest; there is no lockfile to enforce");
		else
			add_json(c, out, "lockfile_enforcement", compile_enforcement(c, v, sub, name, out));
	}
	return out;
}

static json_t *compile_registries(struct compiler *c, const struct ynode *n)
{
	static const char *const keys[] = { "npm", "pip", "oci", "go", NULL };
	json_t *out = json_object();

	if (!check_keys(c, n, "registries", keys))
		return out;
	for (const char *const *k = keys; *k; k++) {
		const struct ynode *v = ytree_get(n, *k);

		if (v)
			add_json(c, out, *k, compile_registry(c, v, *k));
	}
	return out;
}

static json_t *compile_secret(struct compiler *c, const struct ynode *n, const char *path)
{
	static const char *const keys[] = { "id", "allowed_hosts", "header", "format", "ttl_seconds", NULL };
	json_t *out = json_object();
	const struct ynode *v;
	const char *id, *header = "Authorization", *format = "Bearer {secret}";
	long ttl = 3600;
	char sub[160];

	if (!check_keys(c, n, path, keys))
		return out;
	path_key(sub, sizeof(sub), path, "id");
	if (!(v = ytree_get(n, "id"))) {
		invalid(c, n, sub, "'id' is required");
	} else if (get_string(c, v, sub, &id)) {
		if (!crgw_compiled_secret_id_valid(id, v->len))
			invalid(c, v, sub, "a secret id is an identifier ([a-z0-9_.-], at most 64), not a value");
		else
			add_json(c, out, "id", json_string(id));
	}
	path_key(sub, sizeof(sub), path, "allowed_hosts");
	if ((v = ytree_get(n, "allowed_hosts")))
		add_json(c, out, "allowed_hosts", host_list(c, v, sub, true));
	else
		invalid(c, n, sub, "'allowed_hosts' is required: a secret goes only where it is scoped");
	path_key(sub, sizeof(sub), path, "header");
	if ((v = ytree_get(n, "header")) && get_string(c, v, sub, &header)) {
		if (!crgw_compiled_header_name_valid(header))
			invalid(c, v, sub, "not a valid HTTP header name");
		else if (crgw_compiled_header_forbidden(header))
			invalid(c, v, sub, "'%s' controls framing or routing and cannot carry a secret", header);
	}
	add_json(c, out, "header", json_string(header));
	path_key(sub, sizeof(sub), path, "format");
	if ((v = ytree_get(n, "format")) && get_string(c, v, sub, &format)) {
		if (!crgw_compiled_format_valid(format))
			invalid(c, v, sub, "format must contain '{secret}' exactly once");
	}
	add_json(c, out, "format", json_string(format));
	path_key(sub, sizeof(sub), path, "ttl_seconds");
	if ((v = ytree_get(n, "ttl_seconds")))
		get_int(c, v, sub, 1, 86400, &ttl);
	add_json(c, out, "ttl_seconds", json_integer(ttl));
	return out;
}

static json_t *compile_secrets(struct compiler *c, const struct ynode *n)
{
	json_t *arr = json_array();

	if (!get_list(c, n, "secrets", false))
		return arr;
	if (n->nchildren > MAX_SECRETS) {
		invalid(c, n, "secrets", "more than %d secrets", MAX_SECRETS);
		return arr;
	}
	for (size_t i = 0; i < n->nchildren; i++) {
		char sub[160];
		json_t *s;

		path_index(sub, sizeof(sub), "secrets", i);
		s = compile_secret(c, n->children[i], sub);
		const char *id = json_string_value(json_object_get(s, "id"));

		for (size_t j = 0; id && j < json_array_size(arr); j++) {
			const char *other = json_string_value(json_object_get(json_array_get(arr, j), "id"));

			if (other && strcmp(id, other) == 0) {
				error(c, CRGW_REASON_POLICY_CONFLICT, n->children[i], sub,
				      "secret id '%s' is defined more than once", id);
				break;
			}
		}
		append_json(c, arr, s);
	}
	return arr;
}

static json_t *compile_metadata(struct compiler *c, const struct ynode *n)
{
	json_t *out = json_object();

	if (!expect_type(c, n, "metadata", YNODE_MAP))
		return out;
	if (n->nchildren / 2 > MAX_METADATA) {
		invalid(c, n, "metadata", "more than %d metadata entries", MAX_METADATA);
		return out;
	}
	for (size_t i = 0; i + 1 < n->nchildren; i += 2) {
		char sub[160];
		const char *value;

		path_key(sub, sizeof(sub), "metadata", n->children[i]->value);
		if (n->children[i]->len > 64) {
			invalid(c, n->children[i], "metadata", "metadata key longer than 64 bytes");
			continue;
		}
		/* Reviewers and audit consumers read these keys too: the rules of a string value hold. */
		if (n->children[i]->len == 0 || text_has_control(n->children[i]->value, n->children[i]->len)) {
			invalid(c, n->children[i], "metadata", "metadata key empty or with a control character");
			continue;
		}
		if (get_string(c, n->children[i + 1], sub, &value))
			add_json(c, out, n->children[i]->value, json_string(value));
	}
	return out;
}

/* ---- the whole document ------------------------------------------------------------------------- */

/* Notes every credential-looking scalar before any diagnostic can quote one (redact). */
static void collect_secrets(struct compiler *c, const struct ynode *n)
{
	if (n->type == YNODE_SCALAR) {
		const struct ynode **more;

		if (!secret_scan(n->value, n->len))
			return;
		more = realloc(c->secrets, (c->nsecrets + 1) * sizeof(*more));
		if (!more) {
			c->oom = true;
			return;
		}
		c->secrets = more;
		c->secrets[c->nsecrets++] = n;
		return;
	}
	for (size_t i = 0; i < n->nchildren; i++)
		collect_secrets(c, n->children[i]);
}

/* Walks every scalar, key or value, so a credential is refused wherever it was pasted. */
static void scan_secrets(struct compiler *c, const struct ynode *n, const char *path)
{
	if (n->type == YNODE_SCALAR) {
		const char *kind = secret_scan(n->value, n->len);

		if (kind)
			invalid(c, n, path,
				"value looks like a credential (%s); a policy names secrets by id only", kind);
		return;
	}
	for (size_t i = 0; i < n->nchildren; i++) {
		char sub[160];

		if (n->type == YNODE_MAP) {
			if (i % 2 == 0) {
				path_key(sub, sizeof(sub), path, n->children[i]->value);
				scan_secrets(c, n->children[i], sub);
			} else {
				path_key(sub, sizeof(sub), path, n->children[i - 1]->value);
				scan_secrets(c, n->children[i], sub);
			}
		} else {
			path_index(sub, sizeof(sub), path, i);
			scan_secrets(c, n->children[i], sub);
		}
	}
}

/*
 * Hosts the gateway itself contacts for this sandbox must not be ones the policy denies. The rules go
 * through the same matcher the gateway uses, so "denies" means exactly what it will mean at run time.
 */
static void check_denied_service_hosts(struct compiler *c, json_t *doc)
{
	struct matcher_rule *mrules = calloc(c->nrules ? c->nrules : 1, sizeof(*mrules));
	struct matcher *m = NULL;
	json_t *to_check = json_array();
	const char *name;
	json_t *reg, *h;
	size_t i;

	if (!mrules || !to_check || matcher_build_from(c, mrules, &m) != 0) {
		c->oom = true;
		goto out;
	}
	json_array_extend(to_check, json_object_get(json_object_get(doc, "git"), "hosts"));
	json_object_foreach(json_object_get(doc, "registries"), name, reg)
		json_array_extend(to_check, json_object_get(reg, "allowed_hosts"));

	json_array_foreach(to_check, i, h) {
		const char *text = json_string_value(h);
		struct crgw_decision d;
		struct crgw_host host;

		if (crgw_host_parse(text, strlen(text), &host, NULL) != 0)
			continue;
		matcher_decide(m, false, NULL, &host, 443, &d);
		for (size_t r = 0; !d.allow && r < c->nrules; r++) {
			if (c->rules[r].deny && d.rule == c->rules[r].origin) {
				error(c, CRGW_REASON_POLICY_CONFLICT, c->rules[r].node, c->rules[r].origin,
				      "denies '%s', which git or a registry of this policy needs", text);
				break;
			}
		}
	}
out:
	matcher_free(m);
	free(mrules);
	json_decref(to_check);
}

/*
 * The caller's words about where the policy came from go into the stored, hashed document and the audit
 * trail: the rules of a policy's own strings hold, a credential (a URL with a token) is refused as in the
 * file, and a commit is a commit id.
 */
static void check_source(struct compiler *c, const struct crgw_compile_opts *o)
{
	const char *r = o->source_repository, *commit = o->source_commit, *kind;

	if (o->source_path && !crgw_text_utf8_valid(o->source_path, strlen(o->source_path)))
		invalid(c, NULL, "source.path", "the policy file's name is not UTF-8; rename it");

	if (r && (!*r || strlen(r) > MAX_STRING || text_has_control(r, strlen(r)) || !crgw_text_utf8_valid(r, strlen(r))))
		invalid(c, NULL, "source.repository", "empty, longer than %d bytes, not UTF-8 or with a control character",
			MAX_STRING);
	else if (r && (kind = secret_scan(r, strlen(r))))
		invalid(c, NULL, "source.repository", "looks like it holds a credential (%s); name the repository only",
			kind);
	if (commit) {
		size_t n = strspn(commit, "0123456789abcdefABCDEF");

		if (n < 7 || n > 64 || commit[n])
			invalid(c, NULL, "source.commit", "not a commit id (7 to 64 hexadecimal digits)");
	}
}

/*
 * A caller's string; null where it is not UTF-8 (check_source refused it then: no "out of memory" for it),
 * and NULL when memory ran out.
 */
static json_t *source_string(const char *s)
{
	return s && crgw_text_utf8_valid(s, strlen(s)) ? json_string(s) : json_null();
}

static json_t *source_json(struct compiler *c, const struct crgw_compile_opts *o)
{
	json_t *s = json_object();

	check_source(c, o);

	add_json(c, s, "path", source_string(o->source_path));
	add_json(c, s, "repository", source_string(o->source_repository));
	add_json(c, s, "commit", source_string(o->source_commit));
	return s;
}

static json_t *compile_document(struct compiler *c, const struct ynode *root)
{
	static const char *const keys[] = { "version", "project", "sandbox", "git", "registries", "secrets",
					    "metadata", NULL };
	json_t *doc = json_object(), *network = NULL;
	const struct ynode *v;
	long version;

	add_json(c, doc, "format", json_string(CRGW_COMPILED_FORMAT));
	add_json(c, doc, "source", source_json(c, c->opts));
	if (!check_keys(c, root, "", keys)) {
		if (root->type != YNODE_MAP)
			return doc;
	}
	scan_secrets(c, root, "");
	if (!(v = ytree_get(root, "version")))
		invalid(c, root, "version", "'version' is required (version: 1)");
	else if (get_int(c, v, "version", CRGW_COMPILED_VERSION, CRGW_COMPILED_VERSION, &version))
		add_json(c, doc, "version", json_integer(version));

	if ((v = ytree_get(root, "project"))) {
		static const char *const pkeys[] = { "name", "owner", NULL };
		json_t *p = json_object();
		const char *s;

		if (check_keys(c, v, "project", pkeys)) {
			const struct ynode *f;

			if ((f = ytree_get(v, "name")) && get_string(c, f, "project.name", &s))
				add_json(c, p, "name", json_string(s));
			if ((f = ytree_get(v, "owner")) && get_string(c, f, "project.owner", &s))
				add_json(c, p, "owner", json_string(s));
		}
		add_json(c, doc, "project", p);
	}
	if ((v = ytree_get(root, "sandbox")))
		add_json(c, doc, "sandbox", compile_sandbox(c, v, &network));
	else
		invalid(c, root, "sandbox", "'sandbox' with 'network.default' is required");
	add_json(c, doc, "network", network ? network : json_object());
	add_json(c, doc, "git", compile_git(c, ytree_get(root, "git")));
	add_json(c, doc, "registries", (v = ytree_get(root, "registries")) ? compile_registries(c, v) : json_object());
	add_json(c, doc, "secrets", (v = ytree_get(root, "secrets")) ? compile_secrets(c, v) : json_array());
	add_json(c, doc, "metadata", (v = ytree_get(root, "metadata")) ? compile_metadata(c, v) : json_object());
	check_denied_service_hosts(c, doc);
	return doc;
}

void crgw_compiled_free(struct crgw_compiled *compiled)
{
	if (!compiled)
		return;
	free(compiled->json);
	free(compiled);
}

static int finish(struct crgw_compiled *out, json_t *doc)
{
	json_t *rules = json_object_get(json_object_get(doc, "network"), "rules");
	json_t *regs = json_object_get(doc, "registries");
	const char *name;
	json_t *reg, *secret;
	size_t i;
	int err = 0;

	if (rules && (err = sort_array(rules)))
		return err;
	json_object_foreach(regs, name, reg) {
		json_t *hosts = json_object_get(reg, "allowed_hosts");

		if (hosts && (err = sort_array(hosts)))
			return err;
	}
	if ((err = sort_array(json_object_get(json_object_get(doc, "git"), "hosts"))))
		return err;
	/* Each secret's hosts before the secrets themselves: the secrets sort by their whole text. */
	json_array_foreach(json_object_get(doc, "secrets"), i, secret) {
		json_t *hosts = json_object_get(secret, "allowed_hosts");

		if (hosts && (err = sort_array(hosts)))
			return err;
	}
	if ((err = sort_array(json_object_get(doc, "secrets"))))
		return err;
	return crgw_compiled_seal(doc, &out->json, &out->json_len, out->hash);
}

int crgw_policy_compile(const char *yaml, size_t len, const struct crgw_compile_opts *opts,
			struct crgw_compiled **result)
{
	static const struct crgw_compile_opts no_opts;
	struct crgw_compiled *out = calloc(1, sizeof(*out));
	struct compiler c = { .out = out, .opts = opts ? opts : &no_opts };
	struct ynode *root = NULL;
	struct ytree_error yerr;
	json_t *doc = NULL;
	int err = 0;

	*result = NULL;
	if (!out)
		return -ENOMEM;
	if (len > CRGW_POLICY_MAX_BYTES) {
		invalid(&c, NULL, "", "policy file larger than %u bytes", CRGW_POLICY_MAX_BYTES);
		goto out;
	}
	err = ytree_parse(yaml, len, &root, &yerr);
	if (err == -EINVAL) {
		struct ynode at = { .line = yerr.line, .column = yerr.column };

		invalid(&c, &at, "", "%s", yerr.message);
		err = 0;
		goto out;
	}
	if (err)
		goto out;
	collect_secrets(&c, root);
	doc = compile_document(&c, root);
	if (!doc || c.oom)
		err = -ENOMEM;
	else if (out->nerrors == 0)
		err = finish(out, doc);
out:
	for (size_t i = 0; i < c.nrules; i++)
		free(c.rules[i].ports);
	free(c.rules);
	free(c.secrets);
	json_decref(doc);
	ytree_free(root);
	if (err) {
		crgw_compiled_free(out);
		return err;
	}
	*result = out;
	return 0;
}
