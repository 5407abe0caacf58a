/* SPDX-License-Identifier: Apache-2.0 */
/*
 * crgw-ctl cache warm's plan: the /registry/ paths it asks for (npm tarballs read back by the gateway's own
 * parser, pip pages and files, Go zips and go.mod files escaped as GOPROXY wants), and how a compiled
 * registry rule becomes requests: hosts, duplicates, pip hashes grouped by project, what cannot be asked for.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "warm_plan.h"

static void path_is(int got_rc, const char *got, int want_rc, const char *want, const char *what)
{
	bool ok = got_rc == want_rc && (want_rc || !strcmp(got, want));

	tap_result(ok, "%s", what);
	if (!ok)
		printf("#   got %d '%s', want %d '%s'\n", got_rc, got_rc ? "" : got, want_rc, want ? want : "");
}

static void paths(void)
{
	char p[WARM_PATH_MAX];
	int rc;

	rc = warm_npm_path("npm.test", "crgw-dep-00", "1.0.0", p, sizeof(p));
	path_is(rc, p, 0, "/registry/npm/npm.test/crgw-dep-00/-/crgw-dep-00-1.0.0.tgz", "npm: a plain name");
	rc = warm_npm_path("npm.test", "@crgw/lib-00", "1.0.0", p, sizeof(p));
	path_is(rc, p, 0, "/registry/npm/npm.test/@crgw/lib-00/-/lib-00-1.0.0.tgz", "npm: a scoped name, basename without the scope");
	rc = warm_npm_path("npm.test", "JSONStream", "1.3.5", p, sizeof(p));
	path_is(rc, p, 0, "/registry/npm/npm.test/JSONStream/-/JSONStream-1.3.5.tgz", "npm: an old upper-case name");
	rc = warm_npm_path("npm.test", "x", "1.0.0-rc.1+build.5", p, sizeof(p));
	path_is(rc, p, 0, "/registry/npm/npm.test/x/-/x-1.0.0-rc.1+build.5.tgz", "npm: prerelease and build metadata");
	path_is(warm_npm_path("npm.test", "../etc", "1.0.0", p, sizeof(p)), p, -EINVAL, NULL, "npm: a name with dots and slashes is refused");
	path_is(warm_npm_path("npm.test", "a?b", "1.0.0", p, sizeof(p)), p, -EINVAL, NULL, "npm: a '?' in a name is refused");
	path_is(warm_npm_path("npm.test", "a", "1.0", p, sizeof(p)), p, -EINVAL, NULL, "npm: a version that is not semver is refused");
	path_is(warm_npm_path("npm.test", "a", "1.0.0/../x", p, sizeof(p)), p, -EINVAL, NULL, "npm: a version with a path is refused");
	path_is(warm_npm_path("NPM.test", "a", "1.0.0", p, sizeof(p)), p, -EINVAL, NULL, "npm: a host not in normal form is refused");
	path_is(warm_npm_path("npm.test/x", "a", "1.0.0", p, sizeof(p)), p, -EINVAL, NULL, "npm: a host with a slash is refused");
	path_is(warm_npm_path("npm.test", "a", "1.0.0", p, 20), p, -E2BIG, NULL, "npm: a buffer too small is -E2BIG");

	rc = warm_pypi_path("pypi.test", "Crgw.Gamma", NULL, p, sizeof(p));
	path_is(rc, p, 0, "/registry/pypi/pypi.test/simple/crgw-gamma/", "pip: a page, the project normalized");
	rc = warm_pypi_path("pypi.test", "crgw-beta", "crgw_beta-1.1.0-py3-none-any.whl", p, sizeof(p));
	path_is(rc, p, 0, "/registry/pypi/pypi.test/simple/crgw-beta/crgw_beta-1.1.0-py3-none-any.whl", "pip: a file of a page");
	rc = warm_pypi_path("pypi.test", "x", "x-1.0+local-py3-none-any.whl", p, sizeof(p));
	path_is(rc, p, 0, "/registry/pypi/pypi.test/simple/x/x-1.0+local-py3-none-any.whl", "pip: a local version's '+'");
	path_is(warm_pypi_path("pypi.test", "x", "a b.whl", p, sizeof(p)), p, -EINVAL, NULL, "pip: a space in a file name is refused");
	path_is(warm_pypi_path("pypi.test", "x", "..", p, sizeof(p)), p, -EINVAL, NULL, "pip: a dot segment is refused");
	path_is(warm_pypi_path("pypi.test", "x", "a%2fb.whl", p, sizeof(p)), p, -EINVAL, NULL, "pip: a percent sign is refused");
	path_is(warm_pypi_path("pypi.test", "-bad-", NULL, p, sizeof(p)), p, -EINVAL, NULL, "pip: not a project name");

	rc = warm_go_path("goproxy.test", "goproxy.test/m/a", "v1.0.0", p, sizeof(p));
	path_is(rc, p, 0, "/registry/go/goproxy.test/goproxy.test/m/a/@v/v1.0.0.zip", "go: a module zip");
	rc = warm_go_path("goproxy.test", "goproxy.test/m/a", "v1.1.0/go.mod", p, sizeof(p));
	path_is(rc, p, 0, "/registry/go/goproxy.test/goproxy.test/m/a/@v/v1.1.0.mod", "go: a go.sum go.mod entry is the .mod file");
	rc = warm_go_path("goproxy.test", "example.com/BurntSushi/toml", "v1.2.0", p, sizeof(p));
	path_is(rc, p, 0, "/registry/go/goproxy.test/example.com/!burnt!sushi/toml/@v/v1.2.0.zip", "go: upper case escaped");
	rc = warm_go_path("goproxy.test", "example.com/m/v2", "v2.0.0-20230101000000-abcdefabcdef", p, sizeof(p));
	path_is(rc, p, 0, "/registry/go/goproxy.test/example.com/m/v2/@v/v2.0.0-20230101000000-abcdefabcdef.zip",
		"go: a pseudo-version on a /v2 module");
	path_is(warm_go_path("goproxy.test", "example.com/m/v2", "v1.0.0", p, sizeof(p)), p, -EINVAL, NULL,
		"go: a version that disagrees with the major suffix is refused");
	path_is(warm_go_path("goproxy.test", "example.com/../m", "v1.0.0", p, sizeof(p)), p, -EINVAL, NULL,
		"go: a module path with a dot segment is refused");
	path_is(warm_go_path("goproxy.test", "example.com/m", "master", p, sizeof(p)), p, -EINVAL, NULL,
		"go: a non-canonical version is refused");
}

static const char *const npm_hosts[] = { "mirror.test", "npm.test" };

static void plans(void)
{
	const struct crgw_policy_artifact npm_a[] = {
		{ "@crgw/lib-00", "1.0.0", "npm.test", "sha512-AAAA" },
		{ "a", "1.0.0", "npm.test", "sha1-BBBB" },
		{ "a", "1.0.0", "npm.test", "sha512-CCCC" }, /* the same tarball, two integrities: asked for once */
		{ "a", "2.0.0", "other.test", "sha512-DDDD" }, /* a host not allowed: the primary */
		{ "b", "1.0.0", "mirror.test", "sha512-EEEE" },  /* an allowed host of its own */
		{ "c", "1.0.0", NULL, "sha512-FFFF" },          /* no host in the lockfile: the primary */
		{ "bad name", "1.0.0", NULL, "sha512-0000" },
	};
	const struct crgw_registry_rule npm = { .name = "npm", .enable = true, .allowed_hosts = npm_hosts, .nhosts = 2,
						.primary = "npm.test", .mode = CRGW_LOCKFILE_DENY_UNKNOWN,
						.artifacts = npm_a, .nartifacts = sizeof(npm_a) / sizeof(npm_a[0]) };
	static const char h1[] = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
	static const char h2[] = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
	static const char h3[] = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
	const struct crgw_policy_artifact pip_a[] = {
		{ "crgw-alpha", "1.0.0", NULL, h1 },
		{ "crgw-alpha", "1.0.0", NULL, h2 },
		{ "crgw-beta", "1.1.0", NULL, h3 },
		{ "crgw-delta", "2.0", NULL, "sha512:abcd" }, /* no sha256: cannot pick a file */
	};
	const struct crgw_registry_rule pip = { .name = "pip", .enable = true, .primary = "pypi.test",
						.mode = CRGW_LOCKFILE_DENY_UNKNOWN, .artifacts = pip_a,
						.nartifacts = sizeof(pip_a) / sizeof(pip_a[0]) };
	const struct crgw_policy_artifact go_a[] = {
		{ "goproxy.test/m/a", "v1.0.0", NULL, "h1:x" },
		{ "goproxy.test/m/a", "v1.0.0/go.mod", NULL, "h1:y" },
	};
	const struct crgw_registry_rule go = { .name = "go", .enable = true, .primary = "goproxy.test",
					       .artifacts = go_a, .nartifacts = 2 };
	const struct crgw_registry_rule go_off = { .name = "go", .enable = false, .primary = "goproxy.test",
						   .artifacts = go_a, .nartifacts = 2 };
	struct warm_plan p;
	int rc;

	rc = warm_plan_build(&npm, NULL, NULL, &p);
	tap_result(rc == 0 && p.nitems == 6, "npm: one item per name@version (%zu)", p.nitems);
	if (p.nitems == 6) {
		tap_result(!strcmp(p.items[0].path, "/registry/npm/npm.test/@crgw/lib-00/-/lib-00-1.0.0.tgz"), "npm: scoped first, sorted");
		tap_result(!strcmp(p.items[1].path, "/registry/npm/npm.test/a/-/a-1.0.0.tgz") && !strcmp(p.items[2].version, "2.0.0"),
			   "npm: two integrities of one tarball are one request");
		tap_result(!strcmp(p.items[2].path, "/registry/npm/npm.test/a/-/a-2.0.0.tgz"),
			   "npm: a lockfile host outside allowed_hosts gives the primary");
		tap_result(!strcmp(p.items[3].path, "/registry/npm/mirror.test/b/-/b-1.0.0.tgz"),
			   "npm: an allowed host of the lockfile's own is kept");
		tap_result(!strcmp(p.items[4].path, "/registry/npm/npm.test/c/-/c-1.0.0.tgz"), "npm: no lockfile host gives the primary");
		tap_result(!p.items[5].path && p.items[5].invalid && !strcmp(p.items[5].invalid, "invalid_name"),
			   "npm: a name the gateway would refuse is reported, not asked for");
	}
	warm_plan_free(&p);

	rc = warm_plan_build(NULL, &pip, &go, &p);
	tap_result(rc == 0 && p.nitems == 5 && p.nprojects == 2 && p.nhashes == 3,
		   "pip and go: %zu items, %zu projects, %zu hashes", p.nitems, p.nprojects, p.nhashes);
	if (p.nitems == 5 && p.nprojects == 2) {
		tap_result(p.items[0].kind == WARM_PIP_PAGE && !strcmp(p.items[0].path, "/registry/pypi/pypi.test/simple/crgw-alpha/") &&
			   p.projects[p.items[0].project].n == 2, "pip: one page for a project with two hashes");
		tap_result(!strcmp(p.hashes[p.projects[0].first].sha256, h1 + 7), "pip: the hash without its prefix");
		tap_result(p.items[1].kind == WARM_PIP_PAGE && !strcmp(p.items[1].path, "/registry/pypi/pypi.test/simple/crgw-beta/"),
			   "pip: the next project's page");
		tap_result(p.items[2].invalid && !strcmp(p.items[2].invalid, "no_sha256") && !strcmp(p.items[2].name, "crgw-delta"),
			   "pip: a requirement without a sha256 is reported");
		tap_result(!strcmp(p.items[3].path, "/registry/go/goproxy.test/goproxy.test/m/a/@v/v1.0.0.zip") &&
			   !strcmp(p.items[4].path, "/registry/go/goproxy.test/goproxy.test/m/a/@v/v1.0.0.mod"), "go: the zip and the go.mod");
	}
	warm_plan_free(&p);

	rc = warm_plan_build(NULL, NULL, &go_off, &p);
	tap_result(rc == 0 && p.nitems == 0, "a registry that is not enabled gives nothing");
	warm_plan_free(&p);

	const struct crgw_registry_rule nohost = { .name = "npm", .enable = true, .artifacts = npm_a, .nartifacts = 1 };

	rc = warm_plan_build(&nohost, NULL, NULL, &p);
	tap_result(rc == 0 && p.nitems == 1 && p.items[0].invalid && !strcmp(p.items[0].invalid, "no_allowed_host"),
		   "a registry without a host: reported as no_allowed_host");
	warm_plan_free(&p);
	warm_plan_free(&p); /* twice: a freed plan is empty */
	tap_result(true, "a plan can be freed twice");
}

int main(void)
{
	paths();
	plans();
	return tap_done();
}
