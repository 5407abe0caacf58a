/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the packument rewrite. The input is nine control bytes, then a document: byte 0 picks
 * the abbreviated form (bit 0) and the package name (bit 1: "@scope/pkg", else "pkg"); bytes 1-4 say which
 * versions (by their order) are kept, bytes 5-8 whether a dropped one is too new or unlisted. A rewritten
 * document must parse again, hold exactly the kept versions with our tarball URLs, no time entry and no tag of
 * a dropped version, and (full form) come back byte for byte when rewritten again keeping everything. A
 * refused document must be refused by npm_packument_find() too. The whole input is also tried as a tarball
 * path, which, when accepted, must print back to itself.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "packument.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEEN 64

struct judge {
	const char *name;
	uint32_t keep, too_new;
	bool keep_all;
	size_t calls;
	char kept[MAX_SEEN][NPM_VERSION_MAX + 1], dropped[MAX_SEEN][NPM_VERSION_MAX + 1];
	size_t nkept, ndropped;
};

static void url(const char *name, const char *version, char *out, size_t cap)
{
	const char *base = strchr(name, '/') ? strchr(name, '/') + 1 : name;
	int n = snprintf(out, cap, "http://gw.test/registry/npm/%s/-/%s-%s.tgz", name, base, version);

	assert(n > 0 && (size_t)n < cap);
}

static enum npm_verdict judge(void *arg, const struct npm_version_info *v, char *new_tarball, size_t cap)
{
	struct judge *j = arg;
	size_t bit = j->calls++ % 32;

	assert(cap == NPM_URL_MAX + 1 && npm_semver_valid(v->version, strlen(v->version)));
	assert(v->published >= -1);
	if (j->keep_all || (j->keep >> bit & 1)) {
		if (j->nkept < MAX_SEEN)
			snprintf(j->kept[j->nkept++], NPM_VERSION_MAX + 1, "%s", v->version);
		url(j->name, v->version, new_tarball, cap);
		return NPM_KEEP;
	}
	if (j->ndropped < MAX_SEEN)
		snprintf(j->dropped[j->ndropped++], NPM_VERSION_MAX + 1, "%s", v->version);
	return j->too_new >> bit & 1 ? NPM_DROP_TOO_NEW : NPM_DROP_UNLISTED;
}

static void check(const struct npm_rewrite *r, const struct judge *j, bool abbreviated)
{
	json_t *d = json_loadb(r->doc, r->len, JSON_REJECT_DUPLICATES, NULL);
	json_t *vs = json_object_get(d, "versions"), *time = json_object_get(d, "time"), *v;
	json_t *tags = json_object_get(d, "dist-tags");
	const char *key;
	char want[NPM_URL_MAX + 1];

	assert(d && json_is_object(d) && !strcmp(json_string_value(json_object_get(d, "name")), j->name));
	assert(strlen(r->doc) == r->len && !json_object_get(d, "_attachments"));
	assert(r->kept + r->dropped_unlisted + r->dropped_too_new == j->calls);
	assert(json_is_object(tags) && (vs ? json_object_size(vs) : 0) == r->kept);
	assert(!abbreviated || (!time && !json_object_get(d, "readme")));
	for (size_t i = 0; i < j->nkept; i++) {
		url(j->name, j->kept[i], want, sizeof(want));
		v = json_object_get(json_object_get(vs, j->kept[i]), "dist");
		assert(v && !strcmp(json_string_value(json_object_get(v, "tarball")), want));
	}
	for (size_t i = 0; i < j->ndropped; i++)
		assert(!json_object_get(vs, j->dropped[i]) && !json_object_get(time, j->dropped[i]));
	json_object_foreach(tags, key, v)
	{
		assert(json_is_string(v) && json_object_get(vs, json_string_value(v)));
	}
	assert(!r->kept == !json_object_get(tags, "latest"));
	json_decref(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[NPM_NAME_MAX + 1], version[NPM_VERSION_MAX + 1];

	if (npm_tarball_path_parse((const char *)data, size, name, sizeof(name), version, sizeof(version)) == 0) {
		char again[NPM_NAME_MAX * 2 + NPM_VERSION_MAX + 16];
		const char *base = strchr(name, '/') ? strchr(name, '/') + 1 : name;
		size_t off = size && data[0] == '/';
		int n = snprintf(again, sizeof(again), "%s/-/%s-%s.tgz", name, base, version);

		assert(npm_name_valid(name, strlen(name)) && npm_semver_valid(version, strlen(version)));
		assert((size_t)n == size - off && !memcmp(again, data + off, size - off));
	}
	if (size < 9)
		return 0;

	static struct judge j, all;
	struct npm_rewrite r, r2;
	struct npm_version_found f;
	const char *why = "unset", *why2 = "unset";
	bool abbreviated = data[0] & 1;
	const char *doc = (const char *)data + 9;
	size_t len = size - 9;

	memset(&j, 0, sizeof(j));
	j.name = data[0] & 2 ? "@scope/pkg" : "pkg";
	memcpy(&j.keep, data + 1, 4);
	memcpy(&j.too_new, data + 5, 4);

	int err = npm_packument_rewrite(doc, len, j.name, abbreviated, judge, &j, &r, &why);

	assert(err == 0 || err == -EINVAL || err == -E2BIG || err == -ENOMEM);
	assert(err ? (why && why[0] && !r.doc && !r.len && !r.kept) : !why);
	if (err) {
		/* The lookup checks the document as the rewrite does: it fails the same way. */
		int ferr = npm_packument_find(doc, len, j.name, "1.0.0", &f, &why2);

		assert(ferr == err && why2 && !f.version[0]);
		return 0;
	}
	check(&r, &j, abbreviated);
	if (j.nkept) {
		int ferr = npm_packument_find(doc, len, j.name, j.kept[0], &f, &why2);

		assert((ferr == 0 && !strcmp(f.version, j.kept[0]) && !why2) || (ferr == -E2BIG && why2));
	}
	if (!abbreviated) {
		memset(&all, 0, sizeof(all));
		all.name = j.name;
		all.keep_all = true;
		err = npm_packument_rewrite(r.doc, r.len, all.name, false, judge, &all, &r2, &why2);
		assert(!err && all.calls == r.kept && r2.len == r.len && !memcmp(r2.doc, r.doc, r.len));
		npm_rewrite_free(&r2);
	}
	npm_rewrite_free(&r);
	npm_rewrite_free(&r);
	return 0;
}
