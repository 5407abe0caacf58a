/* SPDX-License-Identifier: Apache-2.0 */
/* crgw-ctl cache ls|stats|gc|verify: the gateway's content cache, for operators (docs/cache.md). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/limits.h"
#include "ctl.h"

static const char cache_usage[] =
	"usage: crgw-ctl cache ls [--json] [--limit N]   the cached objects, next to be evicted first\n"
	"       crgw-ctl cache stats [--json]            objects, bytes, hits and misses, evictions, corruption\n"
	"       crgw-ctl cache gc [--target SIZE] [--json]\n"
	"                                               evict down to SIZE (default: cache.max_bytes)\n"
	"       crgw-ctl cache verify [--json]           hash every object, remove the corrupt ones;\n"
	"                                               exits 1 when one was corrupt or unreadable\n"
	"       crgw-ctl cache warm [--policy PATH|DIR] [--jobs N] [--json]\n"
	"                                               fetch every artifact the policy's lockfiles name\n"
	"                                               into the cache; exits 1 when one failed\n";

/* Sends one request and parses the JSON answer; prints why on failure (exit 2). */
static json_t *call(const char *method, const char *path, const char *body, const char *what, int *exit_code)
{
	struct ctl_response r;
	char err[512];
	json_t *j;

	*exit_code = CTL_EXIT_ERROR;
	if (ctl_request(method, path, body, &r, err, sizeof(err))) {
		fprintf(stderr, "crgw-ctl: %s\n", err);
		return NULL;
	}
	if (r.status != 200) {
		ctl_print_error(what, &r);
		free(r.body);
		return NULL;
	}
	j = json_loads(r.body, 0, NULL);
	free(r.body);
	if (!j)
		fprintf(stderr, "crgw-ctl: %s: the gateway's answer is not JSON\n", what);
	else
		*exit_code = CTL_EXIT_OK;
	return j;
}

static void print_pretty(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (s)
		puts(s);
	free(s);
}

static unsigned long long num(json_t *o, const char *key)
{
	return (unsigned long long)json_integer_value(json_object_get(o, key));
}

void cache_human(unsigned long long bytes, char *buf, size_t size)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	int u = -1;

	if (bytes < 1024) {
		snprintf(buf, size, "%llu B", bytes);
		return;
	}
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, size, "%.1f %s", v, units[u]);
}

static int cache_ls(bool json, unsigned long limit)
{
	char path[64], size[32], at[32];
	json_t *j, *o;
	size_t i;
	int rc;

	snprintf(path, sizeof(path), "/v1/cache/objects?limit=%lu", limit);
	j = call("GET", path, NULL, "cache ls", &rc);
	if (!j)
		return rc;
	if (json) {
		print_pretty(json_object_get(j, "objects"));
	} else {
		printf("%-71s %10s  %-20s  %s\n", "DIGEST", "SIZE", "LAST ACCESS", "VERIFIED");
		json_array_foreach(json_object_get(j, "objects"), i, o) {
			const char *last = json_string_value(json_object_get(o, "last_access"));

			cache_human(num(o, "size"), size, sizeof(size));
			/* To the second for people: "2026-12-04T17:03:12Z". */
			snprintf(at, sizeof(at), "%.19sZ", last ? last : "-");
			printf("%-71s %10s  %-20s  %s\n", json_string_value(json_object_get(o, "digest")), size, at,
			       json_is_true(json_object_get(o, "verified")) ? "yes" : "no");
		}
	}
	if (json_is_true(json_object_get(j, "truncated")))
		fprintf(stderr, "crgw-ctl: cache ls: %zu of %llu objects shown (--limit)\n",
			json_array_size(json_object_get(j, "objects")), num(j, "total"));
	json_decref(j);
	return CTL_EXIT_OK;
}

static int cache_stats(bool json)
{
	static const char *const counts[] = { "objects", "hits", "misses", "evictions", "corrupt", "fills_failed",
					      "fills_active" };
	static const char *const sizes[] = { "bytes", "max_bytes", "bytes_served", "bytes_stored" };
	json_t *j, *ratio, *lat;
	char h[32];
	int rc;

	j = call("GET", "/v1/cache", NULL, "cache stats", &rc);
	if (!j)
		return rc;
	if (json) {
		print_pretty(j);
		json_decref(j);
		return CTL_EXIT_OK;
	}
	printf("%-16s %s\n", "dir", json_string_value(json_object_get(j, "dir")));
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		printf("%-16s %llu\n", counts[i], num(j, counts[i]));
		if (i == 0) {
			for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
				cache_human(num(j, sizes[k]), h, sizeof(h));
				printf("%-16s %llu (%s)\n", sizes[k], num(j, sizes[k]), h);
			}
		}
		if (i == 2) {
			ratio = json_object_get(j, "hit_ratio");
			if (json_is_number(ratio))
				printf("%-16s %.3f\n", "hit_ratio", json_number_value(ratio));
			else
				printf("%-16s -\n", "hit_ratio");
		}
	}
	printf("%-16s %s\n", "offline", json_is_true(json_object_get(j, "offline")) ? "true" : "false");
	printf("%-16s %s\n", "verify_always", json_is_true(json_object_get(j, "verify_always")) ? "true" : "false");
	lat = json_object_get(j, "latency");
	for (int hit = 1; hit >= 0; hit--) {
		json_t *l = json_object_get(lat, hit ? "hits" : "misses");
		unsigned long long n = num(l, "count");
		double sum = json_number_value(json_object_get(l, "sum_seconds"));

		if (n)
			printf("%-16s %llu observed, mean %.1f ms\n", hit ? "hit_latency" : "miss_latency", n,
			       sum * 1000.0 / (double)n);
		else
			printf("%-16s none observed\n", hit ? "hit_latency" : "miss_latency");
	}
	json_decref(j);
	return CTL_EXIT_OK;
}

static int cache_gc(bool json, const char *target)
{
	char body[128], before[32], after[32];
	json_t *j;
	int rc;

	if (target) {
		uint64_t bytes;

		/* The gateway's parser: digits and a unit only, so the text needs no escaping in the body. */
		if (strlen(target) > 32 || crgw_size_parse(target, &bytes) || bytes > INT64_MAX) {
			fprintf(stderr, "crgw-ctl: --target wants a size such as 0, 512M or 2GiB\n");
			return CTL_EXIT_ERROR;
		}
		snprintf(body, sizeof(body), "{\"target\":\"%s\"}", target);
	}
	j = call("POST", "/v1/cache/gc", target ? body : NULL, "cache gc", &rc);
	if (!j)
		return rc;
	if (json) {
		print_pretty(j);
	} else {
		cache_human(num(j, "bytes_before"), before, sizeof(before));
		cache_human(num(j, "bytes_after"), after, sizeof(after));
		printf("evicted %llu object%s: %s -> %s (target %llu bytes)\n", num(j, "evicted"),
		       num(j, "evicted") == 1 ? "" : "s", before, after, num(j, "target_bytes"));
	}
	json_decref(j);
	return CTL_EXIT_OK;
}

static int cache_verify(bool json)
{
	json_t *j;
	int rc;

	/* Hashing a large cache takes as long as reading it: no client timeout. */
	ctl_timeout_ms = 0;
	j = call("POST", "/v1/cache/verify", NULL, "cache verify", &rc);
	if (!j)
		return rc;
	if (json)
		print_pretty(j);
	else
		printf("checked %llu: %llu ok, %llu corrupt (removed), %llu unreadable (%llu ms)\n", num(j, "checked"),
		       num(j, "ok"), num(j, "corrupt"), num(j, "errors"), num(j, "duration_ms"));
	rc = num(j, "corrupt") || num(j, "errors") ? CTL_EXIT_DENY : CTL_EXIT_OK;
	json_decref(j);
	return rc;
}

int cmd_cache(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "limit", required_argument, NULL, 'l' },
		{ "target", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sub = argc >= 2 ? argv[1] : "", *target = NULL;
	unsigned long limit = 10000;
	bool json = false, has_limit = false;
	char *end;
	int c;

	if (!strcmp(sub, "--help") || !strcmp(sub, "-h")) {
		fputs(cache_usage, stdout);
		return CTL_EXIT_OK;
	}
	if (!strcmp(sub, "warm"))
		return cache_warm(argc - 1, argv + 1);
	if (strcmp(sub, "ls") && strcmp(sub, "stats") && strcmp(sub, "gc") && strcmp(sub, "verify")) {
		/* Say what was wrong before the usage: the whole usage alone leaves the user to guess. */
		if (!*sub)
			fprintf(stderr, "crgw-ctl cache: a command is needed\n");
		else if (*sub == '-')
			fprintf(stderr, "crgw-ctl cache: options come after the command ('%s')\n", sub);
		else
			fprintf(stderr, "crgw-ctl cache: unknown command '%s'\n", sub);
		fputs(cache_usage, stderr);
		return CTL_EXIT_ERROR;
	}
	/* getopt names the program in its messages: the command's whole name, not "gc:". */
	char name[64];

	snprintf(name, sizeof(name), "crgw-ctl cache %s", sub);
	argv[1] = name;
	optind = 1;
	while ((c = getopt_long(argc - 1, argv + 1, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'h': fputs(cache_usage, stdout); return CTL_EXIT_OK;
		case 'l':
			errno = 0;
			limit = strtoul(optarg, &end, 10);
			if (errno || *end || *optarg < '0' || *optarg > '9' || limit > 100000) {
				fprintf(stderr, "crgw-ctl: --limit wants 0..100000\n");
				return CTL_EXIT_ERROR;
			}
			has_limit = true;
			break;
		case 't': target = optarg; break;
		default: fputs(cache_usage, stderr); return CTL_EXIT_ERROR;
		}
	}
	if (optind != argc - 1 || (has_limit && strcmp(sub, "ls")) || (target && strcmp(sub, "gc"))) {
		if (optind != argc - 1)
			fprintf(stderr, "crgw-ctl cache %s: unexpected argument '%s'\n", sub, argv[optind + 1]);
		else
			fprintf(stderr, "crgw-ctl cache %s: %s is for cache %s only\n", sub, has_limit ? "--limit" : "--target",
				has_limit ? "ls" : "gc");
		fputs(cache_usage, stderr);
		return CTL_EXIT_ERROR;
	}
	if (!strcmp(sub, "ls"))
		return cache_ls(json, limit);
	if (!strcmp(sub, "stats"))
		return cache_stats(json);
	if (!strcmp(sub, "gc"))
		return cache_gc(json, target);
	return cache_verify(json);
}
