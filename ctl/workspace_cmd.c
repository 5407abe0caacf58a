/* SPDX-License-Identifier: Apache-2.0 */
/* crgw-ctl sandbox diff: what a copy-mode sandbox changed in its workspace, the places to review first. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/vm.h"
#include "ctl.h"

static const char diff_usage[] =
	"usage: crgw-ctl sandbox diff [--json] SANDBOX\n"
	"\n"
	"Lists what a sandbox in copy mode changed in its workspace: A added, C changed, D deleted. Changes a\n"
	"reviewer must see first (git hooks and configuration, CI files, dotfiles, the policy) are listed\n"
	"first, marked '!'. Copy files out with crgw-ctl cp SANDBOX:PATH HOSTPATH.\n";

struct change_list {
	json_t *all;
	bool failed;
};

static void collect(void *arg, const struct crgw_change *c)
{
	struct change_list *l = arg;
	static const char *const kinds[] = { "added", "changed", "deleted" };
	json_t *change = json_pack("{s:s, s:o, s:b, s:s?}", "kind", kinds[c->kind], "path", ctl_json_text(c->path),
				   "review", c->review, "why", c->why);

	if (!change)
		l->failed = true;
	json_array_append_new(l->all, change);
}

static char toupper_kind(const char *kind)
{
	return kind && kind[0] == 'a' ? 'A' : kind && kind[0] == 'c' ? 'C' : 'D';
}

/*
 * One line per change. The sandbox chose the names: a control character, line separator or bidi control
 * is shown as '?', so that a name can neither move the cursor over a line above (a '!' one) nor forge one.
 */
static void print_change(json_t *c)
{
	const char *kind = json_string_value(json_object_get(c, "kind"));
	const char *why = json_string_value(json_object_get(c, "why"));
	json_t *path = json_object_get(c, "path");
	char *shown = ctl_shown(json_string_value(path), json_string_length(path));

	printf("%c%c %s%s%s%s\n", json_is_true(json_object_get(c, "review")) ? '!' : ' ', toupper_kind(kind),
	       shown ? shown : "?", why ? "  (" : "", why ? why : "", why ? ")" : "");
	free(shown);
}

int sandbox_diff(int argc, char **argv)
{
	struct change_list l = { json_array(), false };
	const char *id = NULL, *lower;
	char err[1024];
	bool json = false;
	json_t *rec = NULL, *c;
	size_t i;
	int e, rc = CTL_EXIT_ERROR;

	for (int k = 1; k < argc; k++) {
		if (!strcmp(argv[k], "--json"))
			json = true;
		else if (!strcmp(argv[k], "--help") || !strcmp(argv[k], "-h")) {
			fputs(diff_usage, stdout);
			json_decref(l.all);
			return CTL_EXIT_OK;
		} else if (!id && argv[k][0] != '-')
			id = argv[k];
		else {
			fputs(diff_usage, stderr);
			json_decref(l.all);
			return CTL_EXIT_ERROR;
		}
	}
	if (!id || !l.all) {
		fputs(diff_usage, stderr);
		json_decref(l.all);
		return CTL_EXIT_ERROR;
	}
	e = ctl_get_sandbox(id, &rec, err, sizeof(err));
	if (e) {
		fprintf(stderr, "crgw-ctl: %s: %s\n", id, err);
		goto out;
	}
	lower = json_string_value(json_object_get(json_object_get(rec, "workspace"), "dir"));
	e = crgw_sandbox_changes(rec, collect, &l, err, sizeof(err));
	if (!e && l.failed) {
		snprintf(err, sizeof(err), "out of memory listing its changes");
		e = -ENOMEM;
	}
	if (e) {
		fprintf(stderr, "crgw-ctl: %s: %s\n", id, err);
		goto out;
	}
	if (json) {
		json_t *o = json_pack("{s:s, s:s, s:O}", "sandbox_id", json_string_value(json_object_get(rec, "id")),
				      "workspace", lower, "changes", l.all);
		char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;

		if (s)
			puts(s);
		free(s);
		json_decref(o);
	} else {
		/* The changes to review first, then everything, in path order. */
		json_array_foreach(l.all, i, c)
			if (json_is_true(json_object_get(c, "review")))
				print_change(c);
		json_array_foreach(l.all, i, c)
			if (!json_is_true(json_object_get(c, "review")))
				print_change(c);
	}
	rc = CTL_EXIT_OK;
out:
	json_decref(rec);
	json_decref(l.all);
	return rc;
}
