/* SPDX-License-Identifier: Apache-2.0 */
/* Parser for npm's package-lock.json and npm-shrinkwrap.json, lockfileVersion 2 and 3 (the "packages" map). */

#include <errno.h>
#include <string.h>

#include <jansson.h>

#include "lockfile.h"
#include "lockfile_priv.h"

#define NODE_MODULES "node_modules/"

/* An optional string member: 0 and NULL when absent, -EINVAL when present but not a string. */
static int get_string(json_t *obj, const char *key, const char **out)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (!v)
		return 0;
	if (!json_is_string(v))
		return -EINVAL;
	*out = json_string_value(v);
	return 0;
}

/* The installed name: the part of the key after the last "node_modules/" ("@scope/pkg" included). */
static const char *name_from_key(const char *key)
{
	const char *p = key, *hit = NULL;

	while ((p = strstr(p, NODE_MODULES)) != NULL) {
		if (p == key || p[-1] == '/')
			hit = p + strlen(NODE_MODULES);
		p += strlen(NODE_MODULES);
	}
	return hit && *hit ? hit : NULL;
}

static int entry_fail(struct crgw_lockfile_error *err, int code, const char *key, const char *why)
{
	char snip[CRGW_LF_SNIPPET + 4];

	crgw_lf_snippet(snip, sizeof(snip), key, strlen(key));
	return crgw_lf_fail(err, code, 0, 0, "packages[\"%s\"]: %s", snip, why);
}

static int parse_entry(const char *key, json_t *pkg, struct crgw_artifact_list *out,
		       struct crgw_lockfile_error *err)
{
	const char *name, *version, *resolved, *integrity, *why, *p;
	struct crgw_lf_artifact a = { 0 };
	size_t n;
	int ret;

	if (!json_is_object(pkg))
		return entry_fail(err, -EINVAL, key, "entry is not an object");
	/* Links point at a folder elsewhere in the tree; bundled packages come inside their parent's tarball. */
	if (json_is_true(json_object_get(pkg, "link")) || json_is_true(json_object_get(pkg, "inBundle")))
		return 0;

	if (get_string(pkg, "name", &name) || get_string(pkg, "version", &version) ||
	    get_string(pkg, "resolved", &resolved) || get_string(pkg, "integrity", &integrity))
		return entry_fail(err, -EINVAL, key, "name, version, resolved or integrity is not a string");

	if (resolved) {
		if (strlen(resolved) > CRGW_LOCKFILE_MAX_FIELD)
			return entry_fail(err, -EINVAL, key, "resolved URL is longer than the field limit");
		ret = crgw_lf_url_host(resolved, strlen(resolved), &a.registry, &why);
		/* git+ssh:, file:, github: and the like are not registry artifacts; a fetch of one is refused. */
		if (ret == -ENOENT)
			return 0;
		if (ret)
			return entry_fail(err, -EINVAL, key, why);
		if (!integrity)
			return entry_fail(err, -EINVAL, key,
					  "resolved from a registry but has no integrity");
	} else if (!integrity) {
		/* A workspace or local folder: nothing is downloaded for it. */
		return 0;
	}
	/*
	 * No `resolved` but an `integrity` is what npm writes with omit-lockfile-registry-resolved: the
	 * artifact comes from whatever registry is configured, so the registry stays unknown (NULL).
	 */

	if (!name)
		name = name_from_key(key);
	if (!name)
		return entry_fail(err, -EINVAL, key, "cannot tell the package name");
	if (!version)
		return entry_fail(err, -EINVAL, key, "has no version");
	if (!crgw_lf_npm_name_ok(name, strlen(name)))
		return entry_fail(err, -EINVAL, key, "package name is not a valid npm name");
	if (!crgw_lf_semver_ok(version, strlen(version)))
		return entry_fail(err, -EINVAL, key, "version is not a semver version");

	a.name = (struct crgw_lf_field){ name, strlen(name) };
	a.version = (struct crgw_lf_field){ version, strlen(version) };

	/* SRI allows several whitespace-separated hashes; each is a separate acceptable digest. */
	for (p = integrity; *p;) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		n = strcspn(p, " \t\r\n");
		if (!n)
			break;
		if (crgw_lf_check_sri(p, n, &why))
			return entry_fail(err, -EINVAL, key, why);
		a.integrity = (struct crgw_lf_field){ p, n };
		ret = crgw_lf_append(out, &a, err, 0, 0);
		if (ret == -EINVAL && err) {
			char msg[sizeof(err->message)];

			memcpy(msg, err->message, sizeof(msg));
			return entry_fail(err, ret, key, msg);
		}
		if (ret)
			return ret;
		p += n;
	}
	if (!a.integrity.p)
		return entry_fail(err, -EINVAL, key, "integrity is empty");
	return 0;
}

int crgw_lf_parse_npm(const char *buf, size_t len, struct crgw_artifact_list *out,
		      struct crgw_lockfile_error *err)
{
	json_error_t jerr;
	json_t *root, *ver, *packages, *pkg;
	const char *key;
	json_int_t v;
	int ret = 0;

	/*
	 * Duplicate keys are refused because two parsers of the same file (ours and npm's) could keep
	 * different copies, and the allowlist must describe exactly what npm will install.
	 */
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		ret = json_error_code(&jerr) == json_error_out_of_memory ? -ENOMEM : -EINVAL;
		return crgw_lf_fail(err, ret, jerr.line > 0 ? (unsigned)jerr.line : 0,
				    jerr.column > 0 ? (unsigned)jerr.column : 0, "invalid JSON: %s", jerr.text);
	}
	if (!json_is_object(root)) {
		ret = crgw_lf_fail(err, -EINVAL, 1, 1, "top level is not a JSON object");
		goto out;
	}

	ver = json_object_get(root, "lockfileVersion");
	if (!json_is_integer(ver)) {
		ret = crgw_lf_fail(err, -EINVAL, 0, 0, "lockfileVersion is missing or not an integer");
		goto out;
	}
	v = json_integer_value(ver);
	packages = json_object_get(root, "packages");
	if (v < 2 || !packages) {
		ret = crgw_lf_fail(err, -EINVAL, 0, 0,
				   "lockfileVersion %lld without a \"packages\" map is not supported; regenerate the lockfile with npm 7 or later",
				   (long long)v);
		goto out;
	}
	if (v > 3) {
		ret = crgw_lf_fail(err, -EINVAL, 0, 0, "lockfileVersion %lld is not supported (2 or 3 only)",
				   (long long)v);
		goto out;
	}
	if (!json_is_object(packages)) {
		ret = crgw_lf_fail(err, -EINVAL, 0, 0, "\"packages\" is not an object");
		goto out;
	}

	json_object_foreach(packages, key, pkg) {
		/* The root project itself is not downloaded. */
		if (!*key)
			continue;
		ret = parse_entry(key, pkg, out, err);
		if (ret)
			goto out;
	}
out:
	json_decref(root);
	return ret;
}
