/* SPDX-License-Identifier: Apache-2.0 */
/*
 * crgw-ctl policy diff OLD NEW [--against AUDIT|-]: what a policy change does, rule by rule, for every
 * destination either policy names, and for every decision of a real audit log, which is read as a stream
 * in bounded memory (a flow is kept only when its outcome flips, and at most FLOWS_MAX of them).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crgw/policy.h"
#include "crgw/policy_diff.h"
#include "ctl.h"

#define FLOWS_MAX 100000u

struct side {
	const char *label;
	char *json;
	size_t len;
	struct crgw_policy *policy;
};

/* One flow whose outcome flips: the events that share its service class, destination and direction. */
struct flow {
	char *key; /* what identifies it, NUL-separated parts joined by '\t' */
	uint64_t count;
	unsigned services; /* bit per service name, SERVICES order */
	bool now_allowed;
	char first[40], last[40];
	struct crgw_decision old_d, new_d;
	struct crgw_audit_flow sample; /* the first event, for the flow's fields */
};

static const char *const SERVICES[] = {"dns", "connect", "http", "tls", "tcp", "git", "registry"};

struct replay {
	struct flow *flows; /* open addressing, `cap` slots, a power of two */
	size_t nflows, cap;
	uint64_t lines, replayed, skipped, unreadable, flipped_events, flows_dropped;
	int newer_schema;
};

/* ---- loading a side ------------------------------------------------------------------------------ */

static int load_side(const char *where, bool allow_default_allow, struct side *s)
{
	char err[512];
	int rc = ctl_policy_document(where, allow_default_allow, &s->json, &s->len);

	s->label = where;
	if (rc)
		return rc;
	rc = crgw_policy_load(s->json, s->len, &s->policy, err, sizeof(err));
	if (rc)
		fprintf(stderr, "crgw-ctl: %s: policy_invalid: %s\n", where, err);
	return rc;
}

static void side_free(struct side *s)
{
	free(s->json);
	crgw_policy_unref(s->policy);
}

/* ---- rules and reach ------------------------------------------------------------------------------ */

struct printer {
	bool json;
	json_t *array;
	unsigned n;
};

static json_t *parsed_or_null(const char *text)
{
	json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;

	return v ? v : json_null();
}

static void on_change(void *arg, const struct crgw_policy_change *c)
{
	struct printer *p = arg;

	p->n++;
	if (p->json) {
		json_t *o = json_object();

		json_object_set_new(o, "change", json_string(crgw_change_kind_str(c->kind)));
		json_object_set_new(o, "path", json_string(c->path));
		if (c->old_path)
			json_object_set_new(o, "old_path", json_string(c->old_path));
		json_object_set_new(o, "old", parsed_or_null(c->old_value));
		json_object_set_new(o, "new", parsed_or_null(c->new_value));
		json_array_append_new(p->array, o);
		return;
	}
	if (p->n == 1)
		printf("Rules:\n");
	switch (c->kind) {
	case CRGW_CHANGE_ADDED:
		printf("  added    %s: %s\n", c->path, c->new_value);
		break;
	case CRGW_CHANGE_REMOVED:
		printf("  removed  %s: %s\n", c->path, c->old_value);
		break;
	case CRGW_CHANGE_CHANGED:
		printf("  changed  %s%s%s%s: %s -> %s\n", c->path, c->old_path ? " (was " : "",
		       c->old_path ? c->old_path : "", c->old_path ? ")" : "", c->old_value, c->new_value);
		break;
	}
}

static void decision_words(const struct crgw_decision *d, char *buf, size_t size)
{
	snprintf(buf, size, "%s by %s%s%s", d->allow ? "allowed" : "denied", d->rule ? d->rule : "no rule",
		 d->allow ? "" : ", ", d->allow ? "" : crgw_reason_str(d->reason));
}

static void on_reach(void *arg, const struct crgw_reach_flip *f)
{
	struct printer *p = arg;
	char port[16], was[200], now[200];

	p->n++;
	if (f->port)
		snprintf(port, sizeof(port), "%u", f->port);
	else
		snprintf(port, sizeof(port), "other");
	if (p->json) {
		json_t *o = json_object();

		json_object_set_new(o, "host", json_string(f->host));
		json_object_set_new(o, "port", f->port ? json_integer(f->port) : json_string("other"));
		json_object_set_new(o, "now", json_string(f->now_allowed ? "allowed" : "denied"));
		json_object_set_new(o, "old_rule",
				    f->old_decision.rule ? json_string(f->old_decision.rule) : json_null());
		json_object_set_new(o, "new_rule",
				    f->new_decision.rule ? json_string(f->new_decision.rule) : json_null());
		json_object_set_new(o, "new_reason_code",
				    f->new_decision.allow ? json_null()
							  : json_string(crgw_reason_str(f->new_decision.reason)));
		json_array_append_new(p->array, o);
		return;
	}
	if (p->n == 1)
		printf("Reach (every host the rules name, on every port they name; '*' is any other host):\n");
	decision_words(&f->old_decision, was, sizeof(was));
	decision_words(&f->new_decision, now, sizeof(now));
	printf("  newly %-7s %s:%s  (was %s; now %s)\n", f->now_allowed ? "allowed" : "denied", f->host, port, was,
	       now);
}

/* ---- replaying an audit log ------------------------------------------------------------------------ */

static uint64_t hash_key(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int grow(struct replay *r)
{
	size_t ncap = r->cap ? r->cap * 2 : 1024;
	struct flow *nf = calloc(ncap, sizeof(*nf));

	if (!nf)
		return -ENOMEM;
	for (size_t i = 0; i < r->cap; i++) {
		size_t at;

		if (!r->flows[i].key)
			continue;
		for (at = hash_key(r->flows[i].key) & (ncap - 1); nf[at].key; at = (at + 1) & (ncap - 1))
			;
		nf[at] = r->flows[i];
	}
	free(r->flows);
	r->flows = nf;
	r->cap = ncap;
	return 0;
}

/* What groups events into one flow: the kind of decision, the destination, and the direction of the flip. */
static void flow_key(const struct crgw_audit_flow *f, bool now_allowed, char *key, size_t size)
{
	const char *host = f->host[0] ? f->host : f->ip;
	const char *dir = now_allowed ? "+" : "-";

	if (!strcmp(f->service, "dns"))
		snprintf(key, size, "%s\tdns\t%s", dir, host);
	else if (!strcmp(f->service, "git"))
		snprintf(key, size, "%s\tgit\t%s\t%s", dir, host, f->operation[0] ? f->operation : "fetch");
	else if (!strcmp(f->service, "registry"))
		snprintf(key, size, "%s\tregistry\t%s\t%s\t%s\t%s", dir, f->registry, host, f->package,
			 f->version[0] ? f->version : f->integrity);
	else
		snprintf(key, size, "%s\tnet\t%s\t%u", dir, host, f->port);
}

static unsigned service_bit(const char *service)
{
	for (unsigned i = 0; i < sizeof(SERVICES) / sizeof(SERVICES[0]); i++)
		if (!strcmp(service, SERVICES[i]))
			return 1u << i;
	return 0;
}

static int note_flip(struct replay *r, const struct crgw_audit_flow *f, const struct crgw_decision *old_d,
		     const struct crgw_decision *new_d, bool now_allowed)
{
	char key[1024];
	size_t at;

	r->flipped_events++;
	flow_key(f, now_allowed, key, sizeof(key));
	if (r->nflows * 2 >= r->cap && r->nflows < FLOWS_MAX && grow(r))
		return -ENOMEM;
	for (at = hash_key(key) & (r->cap - 1); r->flows[at].key; at = (at + 1) & (r->cap - 1)) {
		struct flow *fl = &r->flows[at];

		if (strcmp(fl->key, key))
			continue;
		fl->count++;
		fl->services |= service_bit(f->service);
		if (f->ts[0] && (!fl->first[0] || strcmp(f->ts, fl->first) < 0))
			snprintf(fl->first, sizeof(fl->first), "%s", f->ts);
		if (f->ts[0] && strcmp(f->ts, fl->last) > 0)
			snprintf(fl->last, sizeof(fl->last), "%s", f->ts);
		return 0;
	}
	/* Past the cap the flip still counts; it is only not itemized. */
	if (r->nflows >= FLOWS_MAX || r->nflows * 2 >= r->cap) {
		r->flows_dropped++;
		return 0;
	}
	struct flow *fl = &r->flows[at];

	fl->key = strdup(key);
	if (!fl->key)
		return -ENOMEM;
	fl->count = 1;
	fl->services = service_bit(f->service);
	fl->now_allowed = now_allowed;
	snprintf(fl->first, sizeof(fl->first), "%s", f->ts);
	snprintf(fl->last, sizeof(fl->last), "%s", f->ts);
	fl->old_d = *old_d;
	fl->new_d = *new_d;
	fl->sample = *f;
	r->nflows++;
	return 0;
}

static bool passes(enum crgw_replay_outcome o)
{
	return o == CRGW_REPLAY_ALLOW || o == CRGW_REPLAY_WARN;
}

static int replay_line(struct replay *r, const struct side *old_s, const struct side *new_s,
		       const struct crgw_blocklist *blocked, const char *line, size_t len)
{
	struct crgw_audit_flow f;
	struct crgw_decision od, nd;
	enum crgw_replay_outcome oo, no;

	r->lines++;
	if (crgw_audit_flow_parse(line, len, &f)) {
		r->unreadable++;
		return 0;
	}
	if (f.schema > 1)
		r->newer_schema = f.schema;
	oo = crgw_policy_replay(old_s->policy, blocked, &f, &od);
	no = crgw_policy_replay(new_s->policy, blocked, &f, &nd);
	if (oo == CRGW_REPLAY_SKIP || no == CRGW_REPLAY_SKIP) {
		r->skipped++;
		return 0;
	}
	r->replayed++;
	if (passes(oo) == passes(no))
		return 0;
	return note_flip(r, &f, &od, &nd, passes(no));
}

struct replay_ctx {
	struct replay *r;
	const struct side *old_s, *new_s;
	const struct crgw_blocklist *blocked;
};

static int replay_one(void *arg, const char *line, size_t len)
{
	struct replay_ctx *x = arg;

	return replay_line(x->r, x->old_s, x->new_s, x->blocked, line, len);
}

/* Streams the log line by line; a line longer than CTL_AUDIT_LINE_MAX is unreadable, not fatal. */
static int replay_log(struct replay *r, int fd, const char *path, const struct side *old_s, const struct side *new_s,
		      const struct crgw_blocklist *blocked)
{
	struct replay_ctx x = { r, old_s, new_s, blocked };
	uint64_t overlong = 0;
	int err = ctl_audit_lines(fd, path, replay_one, &x, &overlong);

	r->lines += overlong;
	r->unreadable += overlong;
	return err;
}

static int cmp_flows(const void *a, const void *b)
{
	const struct flow *x = *(const struct flow *const *)a, *y = *(const struct flow *const *)b;

	if (x->now_allowed != y->now_allowed)
		return x->now_allowed ? 1 : -1;
	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	return strcmp(x->key, y->key);
}

static void services_text(unsigned bits, char *buf, size_t size)
{
	size_t at = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < sizeof(SERVICES) / sizeof(SERVICES[0]); i++)
		if (bits & 1u << i)
			at += (size_t)snprintf(buf + at, size - at, "%s%s", at ? "," : "", SERVICES[i]);
}

/* The flow as people name it: host:port, or the name for DNS, or what git or a registry was asked. */
static void flow_label(const struct flow *fl, char *buf, size_t size)
{
	const struct crgw_audit_flow *f = &fl->sample;
	const char *host = f->host[0] ? f->host : f->ip;
	bool v6 = !f->host[0] && strchr(host, ':');

	if (!strcmp(f->service, "dns"))
		snprintf(buf, size, "%s (dns)", host);
	else if (!strcmp(f->service, "git"))
		snprintf(buf, size, "git %s %s", f->operation[0] ? f->operation : "fetch", host);
	else if (!strcmp(f->service, "registry"))
		snprintf(buf, size, "%s %s@%s%s%s", f->registry, f->package, f->version[0] ? f->version : f->integrity,
			 host[0] ? " from " : "", host);
	else
		snprintf(buf, size, "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", f->port);
}

static json_t *flow_json(const struct flow *fl)
{
	const struct crgw_audit_flow *f = &fl->sample;
	json_t *o = json_object(), *services = json_array();
	const char *host = f->host[0] ? f->host : f->ip;
	char label[1024];

	flow_label(fl, label, sizeof(label));
	json_object_set_new(o, "flow", json_string(label));
	json_object_set_new(o, "direction", json_string(fl->now_allowed ? "denied_to_allowed" : "allowed_to_denied"));
	json_object_set_new(o, "host", json_string(host));
	json_object_set_new(o, "port",
			    strcmp(f->service, "dns") && strcmp(f->service, "git") && strcmp(f->service, "registry")
				? json_integer(f->port)
				: json_null());
	for (unsigned i = 0; i < sizeof(SERVICES) / sizeof(SERVICES[0]); i++)
		if (fl->services & 1u << i)
			json_array_append_new(services, json_string(SERVICES[i]));
	json_object_set_new(o, "services", services);
	if (f->operation[0])
		json_object_set_new(o, "operation", json_string(f->operation));
	if (f->registry[0]) {
		json_object_set_new(o, "registry", json_string(f->registry));
		json_object_set_new(o, "package", json_string(f->package));
		json_object_set_new(o, "version", json_string(f->version));
	}
	json_object_set_new(o, "count", json_integer((json_int_t)fl->count));
	json_object_set_new(o, "first_seen", fl->first[0] ? json_string(fl->first) : json_null());
	json_object_set_new(o, "last_seen", fl->last[0] ? json_string(fl->last) : json_null());
	json_object_set_new(o, "old_rule", fl->old_d.rule ? json_string(fl->old_d.rule) : json_null());
	json_object_set_new(o, "old_reason_code",
			    fl->old_d.allow ? json_null() : json_string(crgw_reason_str(fl->old_d.reason)));
	json_object_set_new(o, "new_rule", fl->new_d.rule ? json_string(fl->new_d.rule) : json_null());
	json_object_set_new(o, "new_reason_code",
			    fl->new_d.allow ? json_null() : json_string(crgw_reason_str(fl->new_d.reason)));
	return o;
}

static int report_replay(const struct replay *r, const char *path, json_t *doc)
{
	const struct flow **sorted = calloc(r->nflows ? r->nflows : 1, sizeof(*sorted));
	size_t n = 0;

	if (!sorted)
		return -ENOMEM;
	for (size_t i = 0; i < r->cap; i++)
		if (r->flows[i].key)
			sorted[n++] = &r->flows[i];
	qsort(sorted, n, sizeof(*sorted), cmp_flows);
	if (doc) {
		json_t *a = json_object(), *flips = json_array();

		json_object_set_new(a, "log", json_string(path));
		json_object_set_new(a, "lines", json_integer((json_int_t)r->lines));
		json_object_set_new(a, "replayed", json_integer((json_int_t)r->replayed));
		json_object_set_new(a, "not_replayable", json_integer((json_int_t)r->skipped));
		json_object_set_new(a, "unreadable", json_integer((json_int_t)r->unreadable));
		json_object_set_new(a, "flipped_events", json_integer((json_int_t)r->flipped_events));
		json_object_set_new(a, "flows_not_itemized", json_integer((json_int_t)r->flows_dropped));
		for (size_t i = 0; i < n; i++)
			json_array_append_new(flips, flow_json(sorted[i]));
		json_object_set_new(a, "flips", flips);
		json_object_set_new(doc, "against", a);
	} else {
		printf("Against %s: %llu lines, %llu decisions replayed, %llu not replayable (not decided by the "
		       "policy alone), %llu unreadable\n",
		       path, (unsigned long long)r->lines, (unsigned long long)r->replayed,
		       (unsigned long long)r->skipped, (unsigned long long)r->unreadable);
		if (!n)
			printf("  no audited flow flips\n");
		for (size_t i = 0; i < n; i++) {
			const struct flow *fl = sorted[i];
			char raw[1024], label[1024], svc[64], was[200], now[200], first[40], last[40];

			if (i == 0 || fl->now_allowed != sorted[i - 1]->now_allowed)
				printf("  %s:\n", fl->now_allowed ? "denied -> allowed" : "allowed -> denied");
			/* What the log wrote goes to a terminal: none of it may be an escape sequence. */
			flow_label(fl, raw, sizeof(raw));
			crgw_audit_text_safe(label, sizeof(label), raw, strlen(raw));
			crgw_audit_text_safe(first, sizeof(first), fl->first, strlen(fl->first));
			crgw_audit_text_safe(last, sizeof(last), fl->last, strlen(fl->last));
			services_text(fl->services, svc, sizeof(svc));
			decision_words(&fl->old_d, was, sizeof(was));
			decision_words(&fl->new_d, now, sizeof(now));
			printf("    %-40s %-12s %6llu event%s  %s .. %s\n      was %s; now %s\n", label, svc,
			       (unsigned long long)fl->count, fl->count == 1 ? "" : "s", first[0] ? first : "?",
			       last[0] ? last : "?", was, now);
		}
		if (r->flows_dropped)
			printf("  %llu more flipped events in flows past the first %u, not itemized\n",
			       (unsigned long long)r->flows_dropped, FLOWS_MAX);
	}
	if (r->newer_schema)
		fprintf(stderr,
			"warning: %s has events of audit schema %d, newer than this crgw-ctl knows; they were "
			"replayed from the fields it knows\n",
			path, r->newer_schema);
	free(sorted);
	return 0;
}

/* ---- the command ------------------------------------------------------------------------------------ */

static const char usage[] =
    "usage: crgw-ctl policy diff OLD NEW [--against AUDIT.jsonl|-] [--json] [--blocked CIDR]...\n"
    "                                     [--allow-default-allow]\n"
    "  OLD, NEW: a policy file, a repository directory, or a compiled policy document\n"
    "  exit 0: nothing flips; 1: something does (without --against: any rule changed);\n"
    "  2: an error\n";

int policy_diff(int argc, char **argv)
{
	static const struct option options[] = {
	    {"against", required_argument, NULL, 'a'}, {"json", no_argument, NULL, 'j'},
	    {"blocked", required_argument, NULL, 'b'}, {"allow-default-allow", no_argument, NULL, 'A'},
	    {"help", no_argument, NULL, 'h'},	       {0},
	};
	struct side old_s = {0}, new_s = {0};
	struct printer rules = {0}, reach = {0};
	struct replay r = {0};
	struct crgw_blocklist *blocked = NULL;
	const char *against = NULL;
	bool json = false, allow_default_allow = false;
	json_t *doc = NULL;
	int opt, rc = CTL_EXIT_ERROR, nchanges, nflips, fd = -1;

	blocked = ctl_gateway_blocklist();
	if (!blocked)
		return CTL_EXIT_ERROR;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "j", options, NULL)) != -1) {
		switch (opt) {
		case 'a':
			against = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'A':
			allow_default_allow = true;
			break;
		case 'b': {
			const char *bad = "out of memory";

			if (crgw_blocklist_add(blocked, optarg, &bad)) {
				fprintf(stderr, "crgw-ctl: --blocked '%s': %s (expected ADDRESS or ADDRESS/PREFIX)\n",
					optarg, bad);
				goto out;
			}
			break;
		}
		case 'h':
			fputs(usage, stdout);
			rc = CTL_EXIT_OK;
			goto out;
		default:
			fputs(usage, stderr);
			goto out;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "crgw-ctl policy diff: OLD and NEW are required\n%s", usage);
		goto out;
	}
	if (load_side(argv[optind], allow_default_allow, &old_s) ||
	    load_side(argv[optind + 1], allow_default_allow, &new_s))
		goto out;
	/* A log that cannot be read is an error (exit 2) before anything is printed, not after the rules. */
	if (against && (fd = ctl_audit_open(against)) < 0)
		goto out;
	if (json) {
		doc = json_object();
		rules.json = reach.json = true;
		rules.array = json_array();
		reach.array = json_array();
	} else {
		printf("policy diff %s (%s) -> %s (%s)\n", old_s.label, crgw_policy_hash(old_s.policy), new_s.label,
		       crgw_policy_hash(new_s.policy));
	}
	nchanges = crgw_policy_diff_rules(old_s.json, old_s.len, new_s.json, new_s.len, on_change, &rules);
	nflips = nchanges < 0 ? nchanges
			      : crgw_policy_diff_reach(old_s.json, old_s.len, old_s.policy, new_s.json, new_s.len,
						       new_s.policy, blocked, on_reach, &reach);
	if (nchanges < 0 || nflips < 0) {
		fprintf(stderr, "crgw-ctl policy diff: %s\n", strerror(-(nchanges < 0 ? nchanges : nflips)));
		goto out;
	}
	if (!json && !nchanges)
		printf("Rules: no change\n");
	if (!json && nchanges && !nflips)
		printf("Reach: no host or port the rules name changes its decision\n");
	if (against && replay_log(&r, fd, against, &old_s, &new_s, blocked))
		goto out;
	if (against && report_replay(&r, against, doc))
		goto out;
	if (doc) {
		json_object_set_new(
		    doc, "old",
		    json_pack("{s:s, s:s}", "policy", old_s.label, "policy_hash", crgw_policy_hash(old_s.policy)));
		json_object_set_new(
		    doc, "new",
		    json_pack("{s:s, s:s}", "policy", new_s.label, "policy_hash", crgw_policy_hash(new_s.policy)));
		json_object_set_new(doc, "changes", rules.array);
		json_object_set_new(doc, "reach", reach.array);
		rules.array = reach.array = NULL;
		char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);

		if (!text)
			goto out;
		puts(text);
		free(text);
	}
	if (against)
		rc = r.flipped_events ? CTL_EXIT_DENY : CTL_EXIT_OK;
	else
		rc = nchanges ? CTL_EXIT_DENY : CTL_EXIT_OK;
out:
	ctl_audit_close(fd);
	for (size_t i = 0; i < r.cap; i++)
		free(r.flows[i].key);
	free(r.flows);
	json_decref(rules.array);
	json_decref(reach.array);
	json_decref(doc);
	side_free(&old_s);
	side_free(&new_s);
	crgw_blocklist_free(blocked);
	return rc;
}
