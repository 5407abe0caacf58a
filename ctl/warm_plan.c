/* SPDX-License-Identifier: Apache-2.0 */
/* The requests `crgw-ctl cache warm` makes for a compiled policy's lockfiles (warm_plan.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "goproxy.h"
#include "packument.h"
#include "pypi_index.h"
#include "warm_plan.h"

#define GOMOD_SUFFIX "/go.mod"

/* A host as the compiled policy writes them: a normalized name, so nothing in it needs escaping. */
static bool host_ok(const char *host)
{
	size_t len = host ? strlen(host) : 0;

	return len && len <= 253 && strspn(host, "abcdefghijklmnopqrstuvwxyz0123456789.-") == len;
}

static int put(size_t cap, int n)
{
	return n < 0 ? -EINVAL : (size_t)n >= cap ? -E2BIG : 0;
}

int warm_npm_path(const char *host, const char *name, const char *version, char *out, size_t cap)
{
	char back_name[NPM_NAME_MAX + 1], back_version[NPM_VERSION_MAX + 1];
	const char *base = name;
	const char *prefix = "/registry/npm/";
	size_t skip;
	int e;

	if (!host_ok(host) || !npm_name_valid(name, strlen(name)) || !npm_semver_valid(version, strlen(version)))
		return -EINVAL;
	if (name[0] == '@')
		base = strchr(name, '/') + 1; /* npm_name_valid: a scoped name has its slash */
	e = put(cap, snprintf(out, cap, "%s%s/%s/-/%s-%s.tgz", prefix, host, name, base, version));
	if (e)
		return e;
	/* The handler reads the path after the host back into name@version: it must come out the same. */
	skip = strlen(prefix) + strlen(host);
	if (npm_tarball_path_parse(out + skip, strlen(out + skip), back_name, sizeof(back_name), back_version,
				   sizeof(back_version)) ||
	    strcmp(back_name, name) || strcmp(back_version, version))
		return -EINVAL;
	return 0;
}

int warm_pypi_path(const char *host, const char *project, const char *file, char *out, size_t cap)
{
	char norm[PYPI_MAX_NAME];
	size_t flen = file ? strlen(file) : 0;

	if (!host_ok(host) || pypi_normalize(project, strlen(project), norm, sizeof(norm)))
		return -EINVAL;
	/* A file name travels raw: only characters the gateway's canonical paths keep as they are. */
	if (file && (!flen || flen > PYPI_MAX_FILENAME || file[0] == '.' ||
		     strspn(file, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+!-") != flen))
		return -EINVAL;
	return put(cap, snprintf(out, cap, "/registry/pypi/%s/simple/%s/%s", host, norm, file ? file : ""));
}

int warm_go_path(const char *host, const char *module, const char *version, char *out, size_t cap)
{
	char ver[256], emod[1024], ever[512];
	size_t vlen = strlen(version), slen = strlen(GOMOD_SUFFIX);
	bool mod = vlen > slen && !strcmp(version + vlen - slen, GOMOD_SUFFIX);

	if (mod)
		vlen -= slen;
	if (!host_ok(host) || vlen >= sizeof(ver))
		return -EINVAL;
	memcpy(ver, version, vlen);
	ver[vlen] = '\0';
	if (!goproxy_module_ok(module, NULL) || !goproxy_version_ok(module, ver, NULL) ||
	    goproxy_escape(module, emod, sizeof(emod)) || goproxy_escape(ver, ever, sizeof(ever)))
		return -EINVAL;
	return put(cap, snprintf(out, cap, "/registry/go/%s/%s/@v/%s.%s", host, emod, ever, mod ? "mod" : "zip"));
}

/* ---- the plan ------------------------------------------------------------------------------------ */

static int add_item(struct warm_plan *p, size_t *cap, const struct warm_item *it)
{
	if (p->nitems == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct warm_item *n = realloc(p->items, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		p->items = n;
		*cap = ncap;
	}
	p->items[p->nitems++] = *it;
	return 0;
}

/* An item whose path `make` writes; `invalid` (with no path) when it cannot be asked for. */
static int add_path(struct warm_plan *p, size_t *cap, struct warm_item *it, int made, const char *path,
		    const char *why)
{
	it->path = NULL;
	it->invalid = NULL;
	if (made == 0) {
		it->path = strdup(path);
		if (!it->path)
			return -ENOMEM;
	} else {
		it->invalid = why;
	}
	if (add_item(p, cap, it)) {
		free(it->path);
		return -ENOMEM;
	}
	return 0;
}

static const char *npm_host(const struct crgw_registry_rule *rule, const struct crgw_policy_artifact *a)
{
	if (a->registry && crgw_policy_registry_host_allowed(rule, a->registry))
		return a->registry;
	return rule->primary;
}

static int plan_npm(const struct crgw_registry_rule *rule, struct warm_plan *p, size_t *cap)
{
	char path[WARM_PATH_MAX];

	for (size_t i = 0; i < rule->nartifacts; i++) {
		const struct crgw_policy_artifact *a = &rule->artifacts[i], *prev = i ? a - 1 : NULL;
		const char *host = npm_host(rule, a);
		struct warm_item it = { .kind = WARM_NPM, .registry = "npm", .name = a->name, .version = a->version };
		int made;

		/* Sorted by name, then version: the entries of one name@version (several integrities) are adjacent. */
		if (prev && !strcmp(prev->name, a->name) && !strcmp(prev->version, a->version))
			continue;
		made = host ? warm_npm_path(host, a->name, a->version, path, sizeof(path)) : -ENOENT;
		if (add_path(p, cap, &it, made, path, host ? "invalid_name" : "no_allowed_host"))
			return -ENOMEM;
	}
	return 0;
}

static bool is_sha256(const char *integrity)
{
	return !strncmp(integrity, "sha256:", 7) && strlen(integrity + 7) == 64 &&
	       strspn(integrity + 7, "0123456789abcdefABCDEF") == 64;
}

static int plan_pip(const struct crgw_registry_rule *rule, struct warm_plan *p, size_t *cap)
{
	char path[WARM_PATH_MAX], norm[PYPI_MAX_NAME];
	size_t i = 0;

	p->hashes = calloc(rule->nartifacts ? rule->nartifacts : 1, sizeof(*p->hashes));
	p->projects = calloc(rule->nartifacts ? rule->nartifacts : 1, sizeof(*p->projects));
	if (!p->hashes || !p->projects)
		return -ENOMEM;
	/* Sorted by name: a project's entries are adjacent. */
	while (i < rule->nartifacts) {
		const char *name = rule->artifacts[i].name;
		size_t end = i;
		bool named = pypi_normalize(name, strlen(name), norm, sizeof(norm)) == 0;
		struct warm_project *proj = &p->projects[p->nprojects];
		struct warm_item it = { .kind = WARM_PIP_PAGE, .registry = "pip", .name = name };
		int made;

		while (end < rule->nartifacts && !strcmp(rule->artifacts[end].name, name))
			end++;
		proj->first = p->nhashes;
		proj->host = rule->primary;
		snprintf(proj->name, sizeof(proj->name), "%s", named ? norm : name);
		for (; i < end; i++) {
			const struct crgw_policy_artifact *a = &rule->artifacts[i];
			struct warm_item bad = { .kind = WARM_PIP_FILE, .registry = "pip", .name = a->name,
						 .version = a->version };

			if (is_sha256(a->integrity)) {
				p->hashes[p->nhashes++] = (struct warm_hash){ .sha256 = a->integrity + 7, .name = a->name,
									     .version = a->version };
			} else if (add_path(p, cap, &bad, -EINVAL, NULL, "no_sha256")) {
				/* The gateway finds a file by its page's sha256: another hash cannot pick one. */
				return -ENOMEM;
			}
		}
		proj->n = p->nhashes - proj->first;
		if (!proj->n)
			continue;
		it.project = p->nprojects++;
		made = !rule->primary ? -ENOENT : named ? warm_pypi_path(rule->primary, norm, NULL, path, sizeof(path)) : -EINVAL;
		if (made) {
			/* No page to read: each of its artifacts is reported failed. */
			for (size_t k = proj->first; k < proj->first + proj->n; k++) {
				struct warm_item bad = { .kind = WARM_PIP_FILE, .registry = "pip", .name = p->hashes[k].name,
							 .version = p->hashes[k].version };

				if (add_path(p, cap, &bad, made, NULL, rule->primary ? "invalid_name" : "no_allowed_host"))
					return -ENOMEM;
			}
			continue;
		}
		if (add_path(p, cap, &it, 0, path, NULL))
			return -ENOMEM;
	}
	return 0;
}

static int plan_go(const struct crgw_registry_rule *rule, struct warm_plan *p, size_t *cap)
{
	char path[WARM_PATH_MAX];

	for (size_t i = 0; i < rule->nartifacts; i++) {
		const struct crgw_policy_artifact *a = &rule->artifacts[i], *prev = i ? a - 1 : NULL;
		struct warm_item it = { .kind = WARM_GO, .registry = "go", .name = a->name, .version = a->version };
		int made;

		if (prev && !strcmp(prev->name, a->name) && !strcmp(prev->version, a->version))
			continue;
		made = rule->primary ? warm_go_path(rule->primary, a->name, a->version, path, sizeof(path)) : -ENOENT;
		if (add_path(p, cap, &it, made, path, rule->primary ? "invalid_name" : "no_allowed_host"))
			return -ENOMEM;
	}
	return 0;
}

int warm_plan_build(const struct crgw_registry_rule *npm, const struct crgw_registry_rule *pip,
		    const struct crgw_registry_rule *go, struct warm_plan *out)
{
	size_t cap = 0;
	int e = 0;

	memset(out, 0, sizeof(*out));
	if (npm && npm->enable)
		e = plan_npm(npm, out, &cap);
	if (!e && pip && pip->enable)
		e = plan_pip(pip, out, &cap);
	if (!e && go && go->enable)
		e = plan_go(go, out, &cap);
	if (e)
		warm_plan_free(out);
	return e;
}

void warm_plan_free(struct warm_plan *plan)
{
	for (size_t i = 0; i < plan->nitems; i++)
		free(plan->items[i].path);
	free(plan->items);
	free(plan->projects);
	free(plan->hashes);
	memset(plan, 0, sizeof(*plan));
}
