/* SPDX-License-Identifier: Apache-2.0 */
/* The least policy for a set of audited flows (policy_learn.h): hosts and ports, git hosts, registries. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/policy_learn.h"

#define HOSTS_MAX 100000u
#define PORTS_MAX 1024u
#define GIT_MAX 1024u
#define REG_HOSTS_MAX 256u

enum { SVC_CONNECT = 1, SVC_HTTP = 2, SVC_TLS = 4, SVC_TCP = 8 };

struct host {
	char *name;
	bool address;	   /* an IP address, not a name */
	uint64_t dns;	   /* DNS answers */
	uint64_t conns;	   /* proxy decisions */
	unsigned services; /* SVC_* */
	uint16_t *ports;
	size_t nports, cap;
	bool collapsed; /* drafted under a wildcard */
};

struct counted {
	char name[CRGW_HOST_NAME_MAX + 1];
	uint64_t count;
};

struct registry {
	const char *name;
	uint64_t flows;
	struct counted hosts[REG_HOSTS_MAX];
	size_t nhosts;
};

struct crgw_learner {
	struct host *hosts;
	size_t nhosts, hcap;
	size_t *index; /* open addressing over `hosts`: slot → position + 1 (0: empty) */
	size_t icap;
	struct counted git[GIT_MAX];
	size_t ngit;
	uint64_t git_fetches, git_pushes;
	struct registry registries[4];
	uint64_t flows;
};

struct crgw_learner *crgw_learner_new(void)
{
	struct crgw_learner *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	for (size_t i = 0; i < CRGW_REGISTRY_COUNT; i++)
		l->registries[i].name = crgw_registry_names[i];
	return l;
}

void crgw_learner_free(struct crgw_learner *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->nhosts; i++) {
		free(l->hosts[i].name);
		free(l->hosts[i].ports);
	}
	free(l->hosts);
	free(l->index);
	free(l);
}

static size_t hash_of(const char *s)
{
	size_t h = 5381;

	for (; *s; s++)
		h = h * 33 + (unsigned char)*s;
	return h;
}

static int reindex(struct crgw_learner *l, size_t icap)
{
	size_t *index = calloc(icap, sizeof(*index));

	if (!index)
		return -ENOMEM;
	for (size_t i = 0; i < l->nhosts; i++) {
		size_t at = hash_of(l->hosts[i].name) & (icap - 1);

		while (index[at])
			at = (at + 1) & (icap - 1);
		index[at] = i + 1;
	}
	free(l->index);
	l->index = index;
	l->icap = icap;
	return 0;
}

static struct host *host_of(struct crgw_learner *l, const char *name, bool address, int *err)
{
	size_t at;

	if (l->icap)
		for (at = hash_of(name) & (l->icap - 1); l->index[at]; at = (at + 1) & (l->icap - 1))
			if (!strcmp(l->hosts[l->index[at] - 1].name, name))
				return &l->hosts[l->index[at] - 1];
	if (l->nhosts >= HOSTS_MAX) {
		*err = -E2BIG;
		return NULL;
	}
	if (l->nhosts == l->hcap) {
		size_t ncap = l->hcap ? l->hcap * 2 : 64;
		struct host *nh = realloc(l->hosts, ncap * sizeof(*nh));

		if (!nh) {
			*err = -ENOMEM;
			return NULL;
		}
		l->hosts = nh;
		l->hcap = ncap;
	}
	struct host *h = &l->hosts[l->nhosts];

	memset(h, 0, sizeof(*h));
	h->address = address;
	h->name = strdup(name);
	if (!h->name) {
		*err = -ENOMEM;
		return NULL;
	}
	l->nhosts++;
	if (l->nhosts * 2 > l->icap) {
		if (reindex(l, l->icap ? l->icap * 2 : 256)) {
			l->nhosts--;
			free(h->name);
			*err = -ENOMEM;
			return NULL;
		}
		return h;
	}
	for (at = hash_of(name) & (l->icap - 1); l->index[at]; at = (at + 1) & (l->icap - 1))
		;
	l->index[at] = l->nhosts;
	return h;
}

static int add_port(struct host *h, uint16_t port)
{
	for (size_t i = 0; i < h->nports; i++)
		if (h->ports[i] == port)
			return 0;
	if (h->nports >= PORTS_MAX)
		return -E2BIG;
	if (h->nports == h->cap) {
		size_t ncap = h->cap ? h->cap * 2 : 4;
		uint16_t *np = realloc(h->ports, ncap * sizeof(*np));

		if (!np)
			return -ENOMEM;
		h->ports = np;
		h->cap = ncap;
	}
	h->ports[h->nports++] = port;
	return 0;
}

static void count_in(struct counted *list, size_t *n, size_t max, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp(list[i].name, name)) {
			list[i].count++;
			return;
		}
	if (*n >= max)
		return;
	snprintf(list[*n].name, sizeof(list[*n].name), "%s", name);
	list[*n].count = 1;
	(*n)++;
}

static unsigned service_bit(const char *service)
{
	return !strcmp(service, "connect") ? SVC_CONNECT
	       : !strcmp(service, "http")  ? SVC_HTTP
	       : !strcmp(service, "tls")   ? SVC_TLS
	       : !strcmp(service, "tcp")   ? SVC_TCP
					   : 0;
}

int crgw_learner_add(struct crgw_learner *l, const struct crgw_audit_flow *f)
{
	struct crgw_host parsed;
	struct host *h;
	int err = 0;

	if (strcmp(f->event, "decision") || (strcmp(f->action, "allow") && strcmp(f->action, "warn")))
		return 0;
	/*
	 * A git or registry host is drafted inside quotes, and a log's host may hold a quote or a line break:
	 * only a name the policy library reads back is drafted, as it normalized it.
	 */
	if (!strcmp(f->service, "git")) {
		if (!f->host[0] || crgw_host_parse(f->host, strlen(f->host), &parsed, NULL) ||
		    parsed.kind != CRGW_HOST_NAME)
			return 0;
		count_in(l->git, &l->ngit, GIT_MAX, parsed.text);
		if (!strcmp(f->operation, "push"))
			l->git_pushes++;
		else
			l->git_fetches++;
		l->flows++;
		return 1;
	}
	if (!strcmp(f->service, "registry")) {
		for (size_t i = 0; i < 4; i++) {
			struct registry *r = &l->registries[i];

			if (strcmp(f->registry, r->name))
				continue;
			if (f->host[0] &&
			    (crgw_host_parse(f->host, strlen(f->host), &parsed, NULL) || parsed.kind != CRGW_HOST_NAME))
				return 0;
			r->flows++;
			if (f->host[0])
				count_in(r->hosts, &r->nhosts, REG_HOSTS_MAX, parsed.text);
			l->flows++;
			return 1;
		}
		return 0;
	}
	bool dns = !strcmp(f->service, "dns");
	unsigned bit = service_bit(f->service);
	const char *target = f->host[0] ? f->host : f->ip;

	if ((!dns && !bit) || (bit && !f->port) || !target[0])
		return 0;
	/* Only what the policy library reads back as a host: the draft must compile. */
	if (crgw_host_parse(target, strlen(target), &parsed, NULL))
		return 0;
	h = host_of(l, parsed.text, parsed.kind != CRGW_HOST_NAME, &err);
	if (!h)
		return err;
	if (dns) {
		h->dns++;
	} else {
		h->conns++;
		h->services |= bit;
		if ((err = add_port(h, f->port)))
			return err;
	}
	l->flows++;
	return 1;
}

void crgw_learner_counts(const struct crgw_learner *l, struct crgw_learner_counts *out)
{
	size_t nreg = 0;

	for (size_t i = 0; i < 4; i++)
		nreg += l->registries[i].flows != 0;
	*out = (struct crgw_learner_counts){
	    .flows = l->flows, .hosts = l->nhosts, .git_hosts = l->ngit, .registries = nreg};
}

/* ---- the draft --------------------------------------------------------------------------------------- */

static int cmp_port(const void *a, const void *b)
{
	return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

static int cmp_host(const void *a, const void *b)
{
	const struct host *x = *(const struct host *const *)a, *y = *(const struct host *const *)b;

	return strcmp(x->name, y->name);
}

static const char *parent_of(const char *name)
{
	const char *dot = strchr(name, '.');

	/* A wildcard's parent keeps two labels at least: never "*.com". */
	return dot && strchr(dot + 1, '.') ? dot + 1 : NULL;
}

static void write_ports(FILE *out, const uint16_t *ports, size_t n)
{
	fputs("        ports: [", out);
	for (size_t i = 0; i < n; i++)
		fprintf(out, "%s%u", i ? ", " : "", ports[i]);
	fputs("]\n", out);
}

static void write_use(FILE *out, uint64_t conns, unsigned services, uint64_t dns)
{
	static const char *const names[] = {"connect", "http", "tls", "tcp"};
	bool first = true;

	fputs("  # ", out);
	if (conns) {
		fprintf(out, "%llu connection%s (", (unsigned long long)conns, conns == 1 ? "" : "s");
		for (unsigned i = 0; i < 4; i++)
			if (services & 1u << i) {
				fprintf(out, "%s%s", first ? "" : ", ", names[i]);
				first = false;
			}
		fputs(")", out);
	}
	if (dns)
		fprintf(out, "%s%llu DNS answer%s", conns ? ", " : "", (unsigned long long)dns, dns == 1 ? "" : "s");
	if (!conns)
		fputs("; resolved only, no connection seen (a rule needs a port: 443)", out);
	fputs("\n", out);
}

/* A port list: the union of `n` hosts' ports, sorted (a malloc'd array in *out). */
static int union_ports(struct host *const *hosts, size_t n, uint16_t **out, size_t *count)
{
	size_t cap = 0, k = 0;
	uint16_t *ports;

	for (size_t i = 0; i < n; i++)
		cap += hosts[i]->nports;
	ports = malloc((cap ? cap : 1) * sizeof(*ports));
	if (!ports)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < hosts[i]->nports; j++) {
			bool seen = false;

			for (size_t m = 0; m < k && !seen; m++)
				seen = ports[m] == hosts[i]->ports[j];
			if (!seen)
				ports[k++] = hosts[i]->ports[j];
		}
	qsort(ports, k, sizeof(*ports), cmp_port);
	*out = ports;
	*count = k;
	return 0;
}

static int write_network(FILE *out, const struct crgw_learner *l, unsigned collapse)
{
	struct host **sorted = calloc(l->nhosts ? l->nhosts : 1, sizeof(*sorted));
	static const uint16_t https[] = {443};

	if (!sorted)
		return -ENOMEM;
	for (size_t i = 0; i < l->nhosts; i++) {
		sorted[i] = &l->hosts[i];
		sorted[i]->collapsed = false;
		if (sorted[i]->nports) /* a name only resolved has no port list at all */
			qsort(sorted[i]->ports, sorted[i]->nports, sizeof(uint16_t), cmp_port);
	}
	qsort(sorted, l->nhosts, sizeof(*sorted), cmp_host);
	fputs("sandbox:\n  network:\n    default: deny\n", out);
	if (!l->nhosts) {
		fputs("    # no network flow was seen\n", out);
		free(sorted);
		return 0;
	}
	fputs("    allow:\n", out);
	/* Wildcards first: N or more siblings one label under one parent. */
	if (collapse >= 2) {
		struct host **group = calloc(l->nhosts, sizeof(*group));

		if (!group) {
			free(sorted);
			return -ENOMEM;
		}
		for (size_t i = 0; i < l->nhosts; i++) {
			const char *parent = sorted[i]->address ? NULL : parent_of(sorted[i]->name);
			size_t n = 0, nports;
			uint64_t conns = 0, dns = 0;
			unsigned services = 0;
			uint16_t *ports;

			if (!parent || sorted[i]->collapsed)
				continue;
			for (size_t j = i; j < l->nhosts; j++) {
				const char *p = sorted[j]->address ? NULL : parent_of(sorted[j]->name);

				if (p && !sorted[j]->collapsed && !strcmp(p, parent))
					group[n++] = sorted[j];
			}
			if (n < collapse)
				continue;
			if (union_ports(group, n, &ports, &nports)) {
				free(group);
				free(sorted);
				return -ENOMEM;
			}
			fprintf(out, "      - host: \"*.%s\"", parent);
			for (size_t j = 0; j < n; j++) {
				group[j]->collapsed = true;
				conns += group[j]->conns;
				dns += group[j]->dns;
				services |= group[j]->services;
			}
			write_use(out, conns, services, dns);
			fprintf(out, "        # %zu hosts:", n);
			for (size_t j = 0; j < n && j < 8; j++)
				fprintf(out, " %s", group[j]->name);
			if (n > 8)
				fprintf(out, " (+%zu more)", n - 8);
			fputs("\n", out);
			if (nports)
				write_ports(out, ports, nports);
			else
				write_ports(out, https, 1);
			free(ports);
		}
		free(group);
	}
	for (size_t i = 0; i < l->nhosts; i++) {
		const struct host *h = sorted[i];

		if (h->collapsed)
			continue;
		fprintf(out, "      - host: \"%s\"", h->name);
		write_use(out, h->conns, h->services, h->dns);
		if (h->nports)
			write_ports(out, h->ports, h->nports);
		else
			write_ports(out, https, 1);
	}
	free(sorted);
	return 0;
}

int crgw_learner_draft(const struct crgw_learner *l, unsigned collapse, const char *header, char **yaml)
{
	size_t size = 0;
	FILE *out = open_memstream(yaml, &size);
	int err;

	*yaml = NULL;
	if (!out)
		return -ENOMEM;
	if (header) {
		const char *p = header;
		/* A safe line is never longer than the text it came from. */
		char *line = malloc(strlen(header) + 1);

		if (!line) {
			fclose(out);
			free(*yaml);
			*yaml = NULL;
			return -ENOMEM;
		}
		/*
		 * YAML ends a comment at CR, U+0085, U+2028 and U+2029 too: what followed one in a header made from
		 * a log would be read as policy. Only the header's own newlines start a line here.
		 */
		while (*p) {
			const char *nl = strchr(p, '\n');
			size_t n = nl ? (size_t)(nl - p) : strlen(p);

			fprintf(out, "# %s\n", crgw_audit_text_safe(line, n + 1, p, n));
			p += n + (nl ? 1 : 0);
		}
		free(line);
	}
	fputs("version: 1\n", out);
	err = write_network(out, l, collapse);
	if (l->ngit) {
		fputs("git:\n  hosts:\n", out);
		for (size_t i = 0; i < l->ngit; i++)
			fprintf(out, "    - \"%s\"  # %llu request%s\n", l->git[i].name,
				(unsigned long long)l->git[i].count, l->git[i].count == 1 ? "" : "s");
		fprintf(out, "  push: %s  # %llu fetch request%s, %llu push request%s allowed\n",
			l->git_pushes ? "true" : "false", (unsigned long long)l->git_fetches,
			l->git_fetches == 1 ? "" : "s", (unsigned long long)l->git_pushes,
			l->git_pushes == 1 ? "" : "s");
	}
	bool any = false;

	for (size_t i = 0; i < 4; i++) {
		const struct registry *r = &l->registries[i];

		if (!r->flows)
			continue;
		if (!any)
			fputs("registries:\n", out);
		any = true;
		fprintf(out, "  %s:  # %llu request%s\n    enable: true\n", r->name, (unsigned long long)r->flows,
			r->flows == 1 ? "" : "s");
		if (r->nhosts) {
			fputs("    allowed_hosts:\n", out);
			for (size_t j = 0; j < r->nhosts; j++)
				fprintf(out, "      - \"%s\"  # %llu\n", r->hosts[j].name,
					(unsigned long long)r->hosts[j].count);
		}
		fputs("    # No lockfile was learned: add lockfile_enforcement to pin every artifact.\n"
		      "    fallback: allow\n",
		      out);
	}
	if (fclose(out) || err) {
		free(*yaml);
		*yaml = NULL;
		return err ? err : -ENOMEM;
	}
	return 0;
}
