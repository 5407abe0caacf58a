/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Matcher benchmark: compiles a generated policy of N rules (exact names, both wildcard forms, IPv4 and
 * IPv6 networks, deny rules) and times M decisions over a mix of hits and misses. Prints figures; it
 * asserts nothing about time. Usage: match_bench [RULES [LOOKUPS]] (defaults 5000 and 1000000).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crgw/policy.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *generate_policy(unsigned rules, size_t *len)
{
	size_t cap = 200 + (size_t)rules * 96, n = 0;
	char *y = malloc(cap);

	if (!y)
		return NULL;
	n += (size_t)snprintf(y + n, cap - n, "version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n");
	for (unsigned i = 0; i < rules; i++) {
		switch (i % 10) {
		case 0:
		case 1:
		case 2:
		case 3:
		case 4:
		case 5:
			n += (size_t)snprintf(y + n, cap - n, "      - { host: svc%u.team%u.example.com, ports: [443] }\n",
					      i, i % 97);
			break;
		case 6:
			n += (size_t)snprintf(y + n, cap - n, "      - { host: \"*.cdn%u.example.net\" }\n", i);
			break;
		case 7:
			n += (size_t)snprintf(y + n, cap - n, "      - { host: \"**.zone%u.example.org\", ports: [443, 8443] }\n", i);
			break;
		case 8:
			n += (size_t)snprintf(y + n, cap - n, "      - { host: 10.%u.%u.0/24, ports: [5432] }\n",
					      (i / 256) % 256, i % 256);
			break;
		case 9:
			n += (size_t)snprintf(y + n, cap - n, "      - { host: \"2001:db8:%x::/48\", ports: [443] }\n", i);
			break;
		}
	}
	n += (size_t)snprintf(y + n, cap - n, "    deny:\n");
	for (unsigned i = 0; i < rules / 50 + 1; i++)
		n += (size_t)snprintf(y + n, cap - n, "      - { host: \"**.bad%u.example.com\" }\n", i);
	*len = n;
	return y;
}

int main(int argc, char **argv)
{
	unsigned rules = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 5000;
	size_t lookups = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000000;
	struct crgw_compile_opts opts = { 0 };
	struct crgw_compiled *c = NULL;
	struct crgw_policy *p = NULL;
	size_t len;
	char err[256], *yaml;
	enum { NHOSTS = 4096 };
	static struct crgw_host hosts[NHOSTS];
	static char texts[NHOSTS][96];

	if (rules < 10 || lookups == 0) {
		fprintf(stderr, "usage: %s [RULES>=10 [LOOKUPS>0]]\n", argv[0]);
		return 2;
	}
	yaml = generate_policy(rules, &len);
	double t0 = now();

	if (!yaml || crgw_policy_compile(yaml, len, &opts, &c) != 0 || c->nerrors) {
		fprintf(stderr, "generated policy did not compile: %s\n", c && c->ndiags ? c->diags[0].message : "");
		return 1;
	}
	double t1 = now();

	if (crgw_policy_load(c->json, c->json_len, &p, err, sizeof(err)) != 0) {
		fprintf(stderr, "load: %s\n", err);
		return 1;
	}
	double t2 = now();

	srand(42);
	for (unsigned i = 0; i < NHOSTS; i++) {
		unsigned r = (unsigned)rand() % rules;

		switch (i % 8) {
		case 0:
		case 1:
			snprintf(texts[i], sizeof(texts[i]), "svc%u.team%u.example.com", r - r % 10, (r - r % 10) % 97);
			break;
		case 2:
			snprintf(texts[i], sizeof(texts[i]), "img.cdn%u.example.net", r - r % 10 + 6);
			break;
		case 3:
			snprintf(texts[i], sizeof(texts[i]), "a.b.zone%u.example.org", r - r % 10 + 7);
			break;
		case 4:
			snprintf(texts[i], sizeof(texts[i]), "10.%u.%u.7", ((r - r % 10 + 8) / 256) % 256,
				 (r - r % 10 + 8) % 256);
			break;
		case 5:
			snprintf(texts[i], sizeof(texts[i]), "2001:db8:%x::1", r - r % 10 + 9);
			break;
		case 6:
			snprintf(texts[i], sizeof(texts[i]), "x.y.bad%u.example.com", r % (rules / 50 + 1));
			break;
		default:
			snprintf(texts[i], sizeof(texts[i]), "unknown%u.elsewhere.example", r);
			break;
		}
		if (crgw_host_parse(texts[i], strlen(texts[i]), &hosts[i], NULL) != 0) {
			fprintf(stderr, "bad generated host %s\n", texts[i]);
			return 1;
		}
	}

	static const uint16_t ports[] = { 443, 443, 80, 5432, 8443, 22 };
	size_t allowed = 0;
	struct crgw_decision d;
	double t3 = now();

	for (size_t i = 0; i < lookups; i++) {
		crgw_policy_decide(p, NULL, &hosts[i % NHOSTS], ports[i % 6], &d);
		allowed += d.allow;
	}
	double t4 = now();
	size_t parse_n = lookups / 4;

	for (size_t i = 0; i < parse_n; i++) {
		struct crgw_host h;

		crgw_host_parse(texts[i % NHOSTS], strlen(texts[i % NHOSTS]), &h, NULL);
		crgw_policy_decide(p, NULL, &h, ports[i % 6], &d);
		allowed += d.allow;
	}
	double t5 = now();

	printf("rules                      %u (+%u deny)\n", rules, rules / 50 + 1);
	printf("compile                    %.1f ms\n", (t1 - t0) * 1e3);
	printf("load (build matcher)       %.1f ms\n", (t2 - t1) * 1e3);
	printf("decisions                  %zu in %.3f s: %.0f ns each, %.2f M/s (%zu allowed)\n", lookups,
	       t4 - t3, (t4 - t3) * 1e9 / (double)lookups, (double)lookups / (t4 - t3) / 1e6, allowed);
	printf("normalize + decide         %zu in %.3f s: %.0f ns each\n", parse_n, t5 - t4,
	       (t5 - t4) * 1e9 / (double)parse_n);
	crgw_policy_unref(p);
	crgw_compiled_free(c);
	free(yaml);
	return 0;
}
