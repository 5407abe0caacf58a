/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What mediation reads from a loaded policy: git hosts, secrets (lookup by id, their fields, and where
 * each may be sent), and the hosts of the network allow rules.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/policy.h"
#include "tap.h"

static const char policy_yaml[] =
	"version: 1\n"
	"sandbox:\n"
	"  network:\n"
	"    default: deny\n"
	"    allow:\n"
	"      - host: API.example.com\n"
	"        ports: [443]\n"
	"      - host: api.example.com\n"
	"        ports: [8443]\n"
	"      - host: \"*.pkgs.example\"\n"
	"      - host: \"**.cdn.example\"\n"
	"      - host: 10.20.0.0/16\n"
	"        ports: [5432]\n"
	"      - host: \"2001:DB8::1\"\n"
	"      - host: bücher.example\n"
	"    deny:\n"
	"      - host: bad.pkgs.example\n"
	"git:\n"
	"  hosts: [Git.Example.com, code.example.org, bücher.example]\n"
	"secrets:\n"
	"  - id: z-last\n"
	"    allowed_hosts: [api.example.com]\n"
	"  - id: alpha\n"
	"    allowed_hosts: [\"**.cdn.example\", api.example.com, \"*.pkgs.example\"]\n"
	"    header: X-Api-Key\n"
	"    format: \"{secret}\"\n"
	"    ttl_seconds: 60\n"
	"  - id: beta.2\n"
	"    allowed_hosts: [bücher.example]\n";

static struct crgw_policy *load(const char *yaml)
{
	struct crgw_compiled *c = NULL;
	struct crgw_policy *p = NULL;
	char err[256] = "";

	if (crgw_policy_compile(yaml, strlen(yaml), NULL, &c) != 0)
		return NULL;
	for (unsigned i = 0; c->nerrors && i < c->ndiags; i++)
		printf("# %u:%u %s: %s\n", c->diags[i].line, c->diags[i].column, c->diags[i].path,
		       c->diags[i].message);
	if (!c->nerrors && crgw_policy_load(c->json, c->json_len, &p, err, sizeof(err)) != 0)
		printf("# load: %s\n", err);
	crgw_compiled_free(c);
	return p;
}

/* Compares a list read through an accessor with `want` (NULL-terminated). */
static void expect_list(const char *what, size_t n, const char *(*get)(const struct crgw_policy *, size_t),
			const struct crgw_policy *p, const char *const *want)
{
	size_t i = 0;
	bool ok = true;

	for (; want[i]; i++)
		ok = ok && i < n && get(p, i) && strcmp(get(p, i), want[i]) == 0;
	ok = ok && n == i && get(p, n) == NULL;
	tap_result(ok, "%s: %zu entries, in order, NULL past the end", what, n);
	for (size_t j = 0; !ok && j < n; j++)
		printf("#   [%zu] %s\n", j, get(p, j));
}

static void git_hosts(const struct crgw_policy *p)
{
	static const char *const want[] = { "code.example.org", "git.example.com", "xn--bcher-kva.example", NULL };

	expect_list("git hosts", crgw_policy_git_host_count(p), crgw_policy_git_host, p, want);
	tap_result(crgw_policy_git_host_allowed(p, "git.example.com") &&
			   crgw_policy_git_host_allowed(p, "code.example.org") &&
			   crgw_policy_git_host_allowed(p, "xn--bcher-kva.example"),
		   "each git host is allowed");
	tap_result(!crgw_policy_git_host_allowed(p, "Git.Example.com") &&
			   !crgw_policy_git_host_allowed(p, "git.example.com.") &&
			   !crgw_policy_git_host_allowed(p, "bücher.example"),
		   "git hosts match normalized names only: no case folding, trailing dot or IDNA here");
	tap_result(!crgw_policy_git_host_allowed(p, "example.com") &&
			   !crgw_policy_git_host_allowed(p, "x.git.example.com") &&
			   !crgw_policy_git_host_allowed(p, "git.example.co") && !crgw_policy_git_host_allowed(p, ""),
		   "git hosts match exactly: no suffixes, no prefixes");
	tap_result(!crgw_policy_git_push(p) && !crgw_policy_git_force_push(p), "push and force_push default to false");
}

static void secrets(const struct crgw_policy *p)
{
	const struct crgw_secret_rule *a = crgw_policy_secret_find(p, "alpha", 5);
	const struct crgw_secret_rule *b = crgw_policy_secret_find(p, "beta.2", 6);
	const struct crgw_secret_rule *z = crgw_policy_secret_find(p, "z-last", 6);

	tap_result(crgw_policy_secret_count(p) == 3 && a && b && z, "three secrets, each found by id");
	if (!a || !b || !z)
		return;
	tap_result(strcmp(a->id, "alpha") == 0 && strcmp(a->header, "X-Api-Key") == 0 &&
			   strcmp(a->format, "{secret}") == 0 && a->ttl_seconds == 60,
		   "a secret's header, format and ttl as written");
	tap_result(strcmp(z->header, "Authorization") == 0 && strcmp(z->format, "Bearer {secret}") == 0 &&
			   z->ttl_seconds == 3600,
		   "and the defaults when not written");
	tap_result(a->nhosts == 3 && strcmp(a->allowed_hosts[0], "**.cdn.example") == 0 &&
			   strcmp(a->allowed_hosts[1], "*.pkgs.example") == 0 &&
			   strcmp(a->allowed_hosts[2], "api.example.com") == 0,
		   "allowed_hosts canonical and sorted");
	tap_result(b->nhosts == 1 && strcmp(b->allowed_hosts[0], "xn--bcher-kva.example") == 0,
		   "allowed_hosts normalized");

	bool all = true;

	for (size_t i = 0; i < crgw_policy_secret_count(p); i++) {
		const struct crgw_secret_rule *s = crgw_policy_secret_at(p, i);

		all = all && s && crgw_policy_secret_find(p, s->id, strlen(s->id)) == s;
	}
	tap_result(all && crgw_policy_secret_at(p, 3) == NULL, "secret_at and secret_find agree; NULL past the end");
	tap_result(crgw_policy_secret_find(p, "beta.2-and-more", 6) == b, "the id is a counted string");
	tap_result(!crgw_policy_secret_find(p, "beta", 4) && !crgw_policy_secret_find(p, "beta.20", 7) &&
			   !crgw_policy_secret_find(p, "ALPHA", 5) && !crgw_policy_secret_find(p, "", 0) &&
			   !crgw_policy_secret_find(p, NULL, 0) && !crgw_policy_secret_find(p, "alpha\0", 6),
		   "no prefix, extension, case-folded, empty or NUL-carrying id finds a secret");

	static const struct {
		const char *host;
		bool allowed;
	} cases[] = {
		{ "api.example.com", true },     { "x.api.example.com", false }, { "example.com", false },
		{ "API.example.com", false },    { "api.example.com.", false },  { "a.pkgs.example", true },
		{ "a-b_c.pkgs.example", true },  { "a.b.pkgs.example", false },  { "pkgs.example", false },
		{ "apkgs.example", false },      { ".pkgs.example", false },     { "a.cdn.example", true },
		{ "a.b.c.cdn.example", true },   { "cdn.example", false },       { "xcdn.example", false },
		{ "a..cdn.example", false },     { ".cdn.example", false },      { "10.0.0.1", false },
		{ "", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		tap_result(crgw_secret_host_allowed(a, cases[i].host) == cases[i].allowed,
			   "secret alpha %s '%s'", cases[i].allowed ? "may go to" : "may not go to", cases[i].host);
	tap_result(crgw_secret_host_allowed(b, "xn--bcher-kva.example") &&
			   !crgw_secret_host_allowed(b, "api.example.com"),
		   "each secret has its own hosts");
}

static void allow_hosts(const struct crgw_policy *p)
{
	static const char *const want[] = { "**.cdn.example", "*.pkgs.example", "10.20.0.0/16", "2001:db8::1",
					    "api.example.com", "xn--bcher-kva.example", NULL };

	expect_list("allow hosts (canonical, sorted, each once, no deny rules)", crgw_policy_allow_host_count(p),
		    crgw_policy_allow_host, p, want);
}

static void empty(void)
{
	struct crgw_policy *p = load("version: 1\nsandbox:\n  network:\n    default: deny\n"
				     "    deny:\n      - host: bad.example\n");

	if (!p) {
		tap_result(false, "an empty policy loads");
		return;
	}
	tap_result(crgw_policy_git_host_count(p) == 0 && crgw_policy_git_host(p, 0) == NULL &&
			   !crgw_policy_git_host_allowed(p, "github.com"),
		   "no git hosts: none allowed");
	tap_result(crgw_policy_secret_count(p) == 0 && crgw_policy_secret_at(p, 0) == NULL &&
			   crgw_policy_secret_find(p, "x", 1) == NULL,
		   "no secrets: none found");
	tap_result(crgw_policy_allow_host_count(p) == 0 && crgw_policy_allow_host(p, 0) == NULL,
		   "deny rules alone: no allow hosts");
	tap_result(crgw_policy_registry_min_release_age(p, "npm") == 0 &&
			   crgw_policy_registry_min_release_age(p, "pip") == 0,
		   "no registries: no release cooldown");
	crgw_policy_unref(p);
}

static void release_ages(void)
{
	struct crgw_policy *p = load("version: 1\nsandbox:\n  network:\n    default: deny\nregistries:\n"
				     "  npm: { enable: true, allowed_hosts: [npm.pkgs.example], min_release_age: 1w2d3h4m5s }\n"
				     "  pip: { enable: true, allowed_hosts: [pypi.pkgs.example], min_release_age: 72h }\n"
				     "  go: { enable: true, allowed_hosts: [proxy.pkgs.example] }\n"
				     "  oci: { enable: true, allowed_hosts: [oci.pkgs.example] }\n");

	if (!p) {
		tap_result(false, "a policy with release cooldowns loads");
		return;
	}
	tap_result(crgw_policy_registry_min_release_age(p, "npm") == 604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5,
		   "npm: 1w2d3h4m5s is %ld seconds", crgw_policy_registry_min_release_age(p, "npm"));
	tap_result(crgw_policy_registry_min_release_age(p, "pip") == 259200, "pip: 72h is 259200 seconds");
	tap_result(crgw_policy_registry_min_release_age(p, "go") == 0 &&
			   crgw_policy_registry_min_release_age(p, "oci") == 0 &&
			   crgw_policy_registry_min_release_age(p, "cargo") == 0,
		   "go without the key, oci and an unknown registry: no cooldown");
	crgw_policy_unref(p);
}


/* Lockfiles served from memory: the accessors' tests need no files. */
static int read_lockfile(void *arg, const char *path, size_t max, char **buf, size_t *len)
{
	const char *const *files = arg;

	for (; files[0]; files += 2)
		if (!strcmp(files[0], path)) {
			*len = strlen(files[1]);
			if (*len > max)
				return -E2BIG;
			*buf = strdup(files[1]);
			return *buf ? 0 : -ENOMEM;
		}
	return -ENOENT;
}

static void registries(void)
{
	static const char *const files[] = {
		"package-lock.json",
		"{\"name\":\"x\",\"version\":\"1.0.0\",\"lockfileVersion\":3,\"packages\":{\"\":{\"name\":\"x\"},"
		"\"node_modules/b\":{\"version\":\"2.0.0\",\"resolved\":\"https://npm.pkgs.example/b/-/b-2.0.0.tgz\","
		"\"integrity\":\"sha512-AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ==\"},"
		"\"node_modules/@s/a\":{\"version\":\"1.0.0\",\"resolved\":\"https://npm.pkgs.example/@s/a/-/a-1.0.0.tgz\","
		"\"integrity\":\"sha512-AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg==\"},"
		"\"node_modules/c/node_modules/b\":{\"version\":\"1.0.0\",\"resolved\":\"https://npm.pkgs.example/b/-/b-1.0.0.tgz\","
		"\"integrity\":\"sha512-AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw==\"}}}",
		NULL,
	};
	static const char yaml[] = "version: 1\nsandbox:\n  network:\n    default: deny\nregistries:\n"
				   "  npm: { enable: true, allowed_hosts: [npm.pkgs.example, cdn.pkgs.example], fallback: allow,\n"
				   "         lockfile_enforcement: { enabled: true, mode: warn, lockfiles: [package-lock.json] } }\n"
				   "  pip: { enable: false }\n"
				   "  oci: { enable: true, allowed_hosts: [oci.pkgs.example] }\n";
	struct crgw_compile_opts opts = { .read_file = read_lockfile, .read_file_arg = (void *)files };
	const struct crgw_registry_rule *npm, *oci;
	const struct crgw_policy_artifact *a;
	struct crgw_compiled *c = NULL;
	struct crgw_policy *p = NULL;
	char err[256] = "";
	size_t n;

	if (crgw_policy_compile(yaml, strlen(yaml), &opts, &c) || c->nerrors ||
	    crgw_policy_load(c->json, c->json_len, &p, err, sizeof(err))) {
		tap_result(false, "a policy with registries and a lockfile loads (%s)", err);
		crgw_compiled_free(c);
		return;
	}
	crgw_compiled_free(c);
	npm = crgw_policy_registry(p, "npm");
	oci = crgw_policy_registry(p, "oci");
	tap_result(npm && npm->enable && npm->fallback_allow && npm->mode == CRGW_LOCKFILE_WARN && npm->nhosts == 2 &&
			   !strcmp(npm->allowed_hosts[0], "cdn.pkgs.example") && !strcmp(npm->primary, "npm.pkgs.example"),
		   "npm: enabled, fallback allow, warn mode, two hosts sorted, the lockfile's host primary");
	tap_result(crgw_policy_registry_host_allowed(npm, "npm.pkgs.example") &&
			   !crgw_policy_registry_host_allowed(npm, "NPM.pkgs.example") &&
			   !crgw_policy_registry_host_allowed(npm, "pkgs.example"),
		   "npm: allowed hosts byte for byte");
	n = crgw_policy_registry_artifacts(npm, "b", &a);
	tap_result(n == 2 && !strcmp(a[0].version, "1.0.0") && !strcmp(a[1].version, "2.0.0") &&
			   !strcmp(a[0].registry, "npm.pkgs.example") && !strncmp(a[1].integrity, "sha512-AQEB", 11),
		   "npm: both versions of b, adjacent and in order (%zu)", n);
	n = crgw_policy_registry_artifacts(npm, "@s/a", &a);
	tap_result(n == 1 && !strcmp(a->version, "1.0.0"), "npm: the scoped package");
	tap_result(crgw_policy_registry_artifacts(npm, "c", &a) == 0 && a == NULL &&
			   crgw_policy_registry_artifacts(npm, "a", &a) == 0,
		   "npm: names outside the lockfile have no entries");
	tap_result(oci && oci->enable && !oci->fallback_allow && oci->mode == CRGW_LOCKFILE_OFF && oci->nartifacts == 0 &&
			   !strcmp(oci->primary, "oci.pkgs.example"),
		   "oci: enabled, fallback deny, no lockfile");
	tap_result(crgw_policy_registry(p, "pip") && !crgw_policy_registry(p, "pip")->enable &&
			   crgw_policy_registry(p, "go") == NULL && crgw_policy_registry(p, "cargo") == NULL,
		   "pip present but disabled; go absent; unknown names absent");
	crgw_policy_unref(p);
}

int main(void)
{
	struct crgw_policy *p = load(policy_yaml);

	tap_result(p != NULL, "the policy compiles and loads");
	if (p) {
		git_hosts(p);
		secrets(p);
		allow_hosts(p);
	}
	crgw_policy_unref(p);
	empty();
	release_ages();
	registries();
	return tap_done();
}
