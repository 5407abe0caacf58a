/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Valid policies compile, load back with the same hash, and give byte-identical output on every run.
 * For DIR/NAME.yaml: DIR/NAME.expected.json, if present, is the exact canonical output, and every
 * DIR/NAME.equiv*.yaml must compile to the same hash (formatting, key order, case, IDNA spelling and
 * port order are not significant). Tampered compiled documents must fail to load.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/policy.h"
#include "tap.h"

static struct crgw_compiled *compile_file(const char *dir, const char *name)
{
	struct crgw_compile_opts opts = {
		.read_file = tap_read_beneath,
		.read_file_arg = (void *)dir,
		.source_path = "cleanroom.yaml",
	};
	struct crgw_compiled *c = NULL;
	char path[4096];
	size_t len;
	char *text;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	text = tap_read_file(path, &len);
	if (!text)
		return NULL;
	if (crgw_policy_compile(text, len, &opts, &c) != 0)
		c = NULL;
	free(text);
	if (c && c->nerrors) {
		for (unsigned i = 0; i < c->ndiags; i++)
			printf("# %s:%u:%u: %s: %s\n", name, c->diags[i].line, c->diags[i].column, c->diags[i].path,
			       c->diags[i].message);
	}
	return c;
}

static bool strip_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	while (la && a[la - 1] == '\n')
		la--;
	while (lb && b[lb - 1] == '\n')
		lb--;
	return la == lb && memcmp(a, b, la) == 0;
}

static void run_policy(const char *dir, const char *name, char **all, size_t nall)
{
	struct crgw_compiled *c = compile_file(dir, name), *again = compile_file(dir, name);
	struct crgw_policy *p = NULL;
	char err[256] = "", path[4096];
	size_t base = strlen(name) - strlen(".yaml");

	if (!c || c->nerrors || !again || again->nerrors) {
		tap_result(false, "%s compiles", name);
		goto out;
	}
	tap_result(strcmp(c->json, again->json) == 0, "%s compiles to the same bytes twice", name);
	tap_result(crgw_policy_load(c->json, c->json_len, &p, err, sizeof(err)) == 0 &&
			   strcmp(crgw_policy_hash(p), c->hash) == 0,
		   "%s loads with hash %s %s", name, c->hash, err);

	snprintf(path, sizeof(path), "%s/%.*s.expected.json", dir, (int)base, name);
	size_t elen;
	char *expected = tap_read_file(path, &elen);

	if (expected) {
		bool same = strip_eq(expected, c->json);

		tap_result(same, "%s matches %.*s.expected.json", name, (int)base, name);
		if (!same)
			printf("# got: %s\n", c->json);
		free(expected);
	}
	for (size_t i = 0; i < nall; i++) {
		if (strncmp(all[i], name, base) != 0 || strncmp(all[i] + base, ".equiv", 6) != 0)
			continue;
		struct crgw_compiled *e = compile_file(dir, all[i]);

		tap_result(e && !e->nerrors && strcmp(e->hash, c->hash) == 0, "%s has the same hash as %s", all[i],
			   name);
		crgw_compiled_free(e);
	}
out:
	crgw_policy_unref(p);
	crgw_compiled_free(c);
	crgw_compiled_free(again);
}

/* Replaces the first `from` in `json` with `to` and expects the loader to refuse the result. */
static void tamper(const char *json, const char *from, const char *to, const char *what)
{
	const char *at = strstr(json, from);
	struct crgw_policy *p = NULL;
	char err[256] = "";

	if (!at) {
		tap_result(false, "tamper %s: '%s' not found", what, from);
		return;
	}
	size_t n = strlen(json) + strlen(to) + 1;
	char *bad = malloc(n);

	if (!bad)
		return;
	snprintf(bad, n, "%.*s%s%s", (int)(at - json), json, to, at + strlen(from));
	int rc = crgw_policy_load(bad, strlen(bad), &p, err, sizeof(err));

	tap_result(rc == -EINVAL && !p, "tampered %s refused: %s", what, err);
	crgw_policy_unref(p);
	free(bad);
}

static void tamper_cases(void)
{
	static const char yaml[] = "version: 1\nsandbox:\n  network:\n    default: deny\n"
				   "    allow:\n      - host: api.example.com\n        ports: [443]\n";
	struct crgw_compiled *c = NULL;

	if (crgw_policy_compile(yaml, sizeof(yaml) - 1, NULL, &c) != 0 || c->nerrors) {
		tap_result(false, "tamper base policy compiles");
		crgw_compiled_free(c);
		return;
	}
	tamper(c->json, "api.example.com", "evil.example.com", "host (hash mismatch)");
	tamper(c->json, "[443]", "[443,22]", "ports (hash mismatch)");
	tamper(c->json, "\"deny\"", "\"allow\"", "default (hash mismatch)");
	tamper(c->json, "\"policy_hash\":\"sha256:", "\"policy_hash\":\"sha256:0", "hash text");
	tamper(c->json, "{", "[", "top-level type");
	tamper(c->json, "\"format\":\"crgw.compiled-policy/v1\"", "\"format\":\"v2\"", "format");
	tamper(c->json, "\"action\":\"allow\"", "\"action\":\"allow\",\"extra\":1", "unknown rule key");
	tamper(c->json, "}", "", "truncated document");
	crgw_compiled_free(c);
}

/* Allocation failure injection for jansson, where the compiler builds the whole document. */
static long alloc_calls, alloc_fail_at = -1;

static void *failing_malloc(size_t n)
{
	if (alloc_calls++ == alloc_fail_at)
		return NULL;
	return malloc(n);
}

/*
 * Fails the Nth jansson allocation for every N until a compile runs through: each compile must either
 * report -ENOMEM or produce exactly the document an unconstrained compile produces, never a partial one.
 */
static void allocation_failures(const char *dir)
{
	struct crgw_compiled *ref = compile_file(dir, "cleanroom.yaml");
	unsigned bad = 0, enomem = 0, refused = 0;

	if (!ref || ref->nerrors) {
		tap_result(false, "allocation failures: reference compile");
		crgw_compiled_free(ref);
		return;
	}
	json_set_alloc_funcs(failing_malloc, free);
	for (alloc_fail_at = 0;; alloc_fail_at++) {
		struct crgw_compiled *c = NULL;
		char path[4096];
		size_t len;
		char *text;
		int rc;

		alloc_calls = 0;
		snprintf(path, sizeof(path), "%s/cleanroom.yaml", dir);
		text = tap_read_file(path, &len);
		struct crgw_compile_opts opts = {
			.read_file = tap_read_beneath,
			.read_file_arg = (void *)dir,
			.source_path = "cleanroom.yaml",
		};

		rc = text ? crgw_policy_compile(text, len, &opts, &c) : -1;
		free(text);
		if (rc == -ENOMEM)
			enomem++;
		else if (rc == 0 && c->nerrors && !c->json)
			refused++; /* jansson reports some failures inside a lockfile as a syntax error */
		else if (rc != 0 || c->nerrors || strcmp(c->json, ref->json) != 0) {
			if (bad++ < 5)
				printf("# failing allocation %ld: rc %d, %u errors\n", alloc_fail_at, rc,
				       c ? c->nerrors : 0);
		}
		crgw_compiled_free(c);
		if (alloc_calls <= alloc_fail_at || alloc_fail_at > 100000)
			break; /* this run never reached the injected failure: every point was tried */
	}
	json_set_alloc_funcs(malloc, free);
	tap_result(bad == 0 && enomem > 0,
		   "allocation failures at %ld points: %u -ENOMEM, %u refused as invalid, %u partial or wrong",
		   alloc_fail_at, enomem, refused, bad);

	/* The loader under the same injection: it refuses, or it loads exactly the policy it was given. */
	unsigned loaded = 0, load_bad = 0, load_refused = 0;

	json_set_alloc_funcs(failing_malloc, free);
	for (alloc_fail_at = 0;; alloc_fail_at++) {
		struct crgw_policy *p = NULL;
		char err[256];
		int rc;

		alloc_calls = 0;
		rc = crgw_policy_load(ref->json, ref->json_len, &p, err, sizeof(err));
		if (rc == -ENOMEM || rc == -EINVAL)
			load_refused += !p;
		else if (rc == 0 && strcmp(crgw_policy_hash(p), ref->hash) == 0)
			loaded++;
		else
			load_bad++;
		crgw_policy_unref(p);
		if (alloc_calls <= alloc_fail_at || alloc_fail_at > 100000)
			break;
	}
	json_set_alloc_funcs(malloc, free);
	tap_result(load_bad == 0 && loaded == 1,
		   "load with allocation failures at %ld points: %u refused, %u loaded, %u wrong", alloc_fail_at,
		   load_refused, loaded, load_bad);
	crgw_compiled_free(ref);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR...\n", argv[0]);
		return 2;
	}
	for (int d = 1; d < argc; d++) {
		char **names;
		size_t n = tap_list_dir(argv[d], ".yaml", &names);

		for (size_t i = 0; i < n; i++)
			if (!strstr(names[i], ".equiv"))
				run_policy(argv[d], names[i], names, n);
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
	tamper_cases();
	allocation_failures(argv[argc - 1]);
	return tap_done();
}
