/* SPDX-License-Identifier: Apache-2.0 */
/* The image config blob: checked for the platform and reduced to what a sandbox needs (docs/images.md). */
#include <errno.h>
#include <string.h>

#include "image_priv.h"

#define MAX_STRINGS 4096 /* entries of Entrypoint, Cmd or Env */
#define MAX_STRING 65536

/* A copy of an array of bounded strings, or NULL when `a` is not one. */
static json_t *strings(json_t *a, bool env)
{
	json_t *out, *v;
	size_t i;

	if (!json_is_array(a) || json_array_size(a) > MAX_STRINGS)
		return NULL;
	if (!(out = json_array()))
		return NULL;
	json_array_foreach(a, i, v) {
		const char *s = json_string_value(v);

		if (!s || json_string_length(v) > MAX_STRING || strlen(s) != json_string_length(v) ||
		    (env && (!strchr(s, '=') || s[0] == '='))) {
			json_decref(out);
			return NULL;
		}
		json_array_append_new(out, json_string(s));
	}
	return out;
}

int img_config_parse(const char *doc, size_t len, size_t nlayers, json_t **summary, const char **why)
{
	static const struct {
		const char *from, *to;
		bool env;
	} lists[] = { { "Entrypoint", "entrypoint", false }, { "Cmd", "cmd", false }, { "Env", "env", true } };
	static const struct {
		const char *from, *to;
	} texts[] = { { "WorkingDir", "workdir" }, { "User", "user" } };
	json_error_t je;
	json_t *root, *cfg, *v, *out = NULL;
	const char *s;
	int rc = -EBADMSG;

	*summary = NULL;
	if (len > IMG_CONFIG_MAX_BYTES)
		return *why = "image config larger than 4 MiB", -E2BIG;
	/* JSON_REJECT_DUPLICATES: two "Entrypoint" keys must not mean different things to different readers. */
	root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return *why = "image config is not JSON", -EBADMSG;
	if (!json_is_object(root)) {
		*why = "image config is not an object";
		goto out;
	}
	if (!(out = json_object())) {
		*why = "out of memory";
		rc = -ENOMEM;
		goto out;
	}
	if ((v = json_object_get(root, "os"))) {
		if (!(s = json_string_value(v)) || strcmp(s, "linux")) {
			*why = "image config: os is not linux";
			goto out;
		}
		json_object_set_new(out, "os", json_string(s));
	}
	if ((v = json_object_get(root, "architecture"))) {
		if (!(s = json_string_value(v)) || strcmp(s, "amd64")) {
			*why = "image config: architecture is not amd64";
			goto out;
		}
		json_object_set_new(out, "architecture", json_string(s));
	}
	cfg = json_object_get(root, "config");
	if (cfg && !json_is_null(cfg)) {
		if (!json_is_object(cfg)) {
			*why = "image config: config is not an object";
			goto out;
		}
		for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
			json_t *a;

			if (!(v = json_object_get(cfg, lists[i].from)) || json_is_null(v))
				continue;
			if (!(a = strings(v, lists[i].env))) {
				*why = "image config: Entrypoint, Cmd or Env is not a list of bounded strings";
				goto out;
			}
			json_object_set_new(out, lists[i].to, a);
		}
		for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
			if (!(v = json_object_get(cfg, texts[i].from)) || json_is_null(v))
				continue;
			if (!(s = json_string_value(v)) || json_string_length(v) > 4096 ||
			    strlen(s) != json_string_length(v)) {
				*why = "image config: WorkingDir or User is not a bounded string";
				goto out;
			}
			json_object_set_new(out, texts[i].to, json_string(s));
		}
	}
	if (nlayers) {
		json_t *ids = json_object_get(json_object_get(root, "rootfs"), "diff_ids");

		if (!json_is_array(ids) || json_array_size(ids) != nlayers) {
			*why = "image config: rootfs.diff_ids does not list one id per layer";
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(root);
	if (rc)
		json_decref(out);
	else
		*summary = out;
	return rc;
}
