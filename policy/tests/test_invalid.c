/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Invalid policies must be refused with the right code, path and position. Each data file is a policy
 * whose first lines say what is expected:
 *   # expect: CODE PATH LINE:COLUMN      (PATH "-" for the document itself)
 *   # message: SUBSTRING                 (optional)
 *   # never: SUBSTRING                   (optional: in no diagnostic's path or message)
 * Lockfiles such files name are read from DIR/files/. Hostile inputs (huge, deeply nested, NUL bytes,
 * invalid UTF-8) are generated here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/policy.h"
#include "tap.h"

static const char *files_dir;

static bool has_diag(const struct crgw_compiled *c, const char *code, const char *path, unsigned line,
		     unsigned column, const char *message)
{
	for (unsigned i = 0; i < c->ndiags; i++) {
		const struct crgw_diag *d = &c->diags[i];
		const char *dcode = crgw_reason_str(d->code);

		if (dcode && strcmp(dcode, code) == 0 && strcmp(d->path, strcmp(path, "-") == 0 ? "" : path) == 0 &&
		    d->line == line && d->column == column && (!message || strstr(d->message, message)))
			return true;
	}
	return false;
}

static void show(const struct crgw_compiled *c)
{
	for (unsigned i = 0; i < c->ndiags; i++)
		printf("#   got %s %s %u:%u %s\n", crgw_reason_str(c->diags[i].code) ? crgw_reason_str(c->diags[i].code) : "warning",
		       c->diags[i].path[0] ? c->diags[i].path : "-", c->diags[i].line, c->diags[i].column,
		       c->diags[i].message);
}

static void run_file(const char *dir, const char *name)
{
	struct crgw_compile_opts opts = { .read_file = tap_read_beneath, .read_file_arg = (void *)files_dir };
	struct crgw_compiled *c = NULL;
	char path[4096], code[64], rule[160], message[256];
	unsigned line, column;
	size_t len;
	char *text;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	text = tap_read_file(path, &len);
	if (!text || sscanf(text, "# expect: %63s %159s %u:%u", code, rule, &line, &column) != 4) {
		tap_result(false, "%s: missing '# expect:' header", name);
		free(text);
		return;
	}
	const char *m = strstr(text, "\n# message: ");
	bool want_message = m && sscanf(m, "\n# message: %255[^\n]", message) == 1;
	const char *nv = strstr(text, "\n# never: ");
	char never[256];
	bool check_never = nv && sscanf(nv, "\n# never: %255[^\n]", never) == 1;

	if (crgw_policy_compile(text, len, &opts, &c) != 0) {
		tap_result(false, "%s: compile failed to run", name);
	} else {
		bool ok = c->nerrors > 0 && !c->json &&
			  has_diag(c, code, rule, line, column, want_message ? message : NULL);

		for (unsigned i = 0; check_never && i < c->ndiags; i++)
			if (strstr(c->diags[i].path, never) || strstr(c->diags[i].message, never))
				ok = false;

		tap_result(ok, "%s: %s %s %u:%u", name, code, rule, line, column);
		if (!ok)
			show(c);
	}
	crgw_compiled_free(c);
	free(text);
}

/* Generated hostile inputs: each must give one error and no crash. */
static void run_generated(const char *what, const char *buf, size_t len, const char *expect)
{
	struct crgw_compiled *c = NULL;

	if (crgw_policy_compile(buf, len, NULL, &c) != 0) {
		tap_result(false, "generated %s: compile failed to run", what);
		return;
	}
	bool ok = c->nerrors > 0 && !c->json && c->ndiags > 0 && strstr(c->diags[0].message, expect);

	tap_result(ok, "generated %s: %s", what, c->ndiags ? c->diags[0].message : "(no error)");
	if (!ok)
		show(c);
	crgw_compiled_free(c);
}

/* As run_generated, and the error is at `line`:`column`. */
static void run_generated_at(const char *what, const char *buf, size_t len, const char *expect, unsigned line,
			     unsigned column)
{
	struct crgw_compiled *c = NULL;

	if (crgw_policy_compile(buf, len, NULL, &c) != 0) {
		tap_result(false, "generated %s: compile failed to run", what);
		return;
	}
	bool ok = c->nerrors > 0 && c->ndiags > 0 && strstr(c->diags[0].message, expect) &&
		  c->diags[0].line == line && c->diags[0].column == column;

	tap_result(ok, "generated %s: at %u:%u (%s)", what, c->ndiags ? c->diags[0].line : 0,
		   c->ndiags ? c->diags[0].column : 0, c->ndiags ? c->diags[0].message : "no error");
	crgw_compiled_free(c);
}

static void generated(void)
{
	size_t big = CRGW_POLICY_MAX_BYTES + 1, deep = 100000;
	char *buf = malloc(big > deep * 2 ? big : deep * 2);

	if (!buf) {
		tap_result(false, "generated: out of memory");
		return;
	}
	memset(buf, '#', big);
	run_generated("huge file", buf, big, "larger than");

	memset(buf, '[', deep);
	run_generated("deep flow nesting", buf, deep, "nesting deeper than 32");

	size_t n = 0;
	for (unsigned i = 0; i < 40; i++)
		n += (size_t)snprintf(buf + n, 128, "%*sk%u:\n", (int)(i * 2), "", i);
	run_generated("deep block nesting", buf, n, "nesting deeper than 32");

	static const char nul[] = "version: 1\nsandbox:\n  network:\n    default: d\0eny\n";
	run_generated("NUL byte", nul, sizeof(nul) - 1, "control characters are not allowed");

	static const char bad_utf8[] = "version: 1\nproject:\n  name: \"\xc3\x28\"\n";
	run_generated("invalid UTF-8", bad_utf8, sizeof(bad_utf8) - 1, "invalid");

	/* libyaml finds these while decoding ahead, with no mark: the place comes from the byte's offset. */
	static const char late_utf8[] = "version: 1\nsandbox:\n  network:\n    default: deny\n"
					"    allow:\n      - host: \xc3\xa9\xff.test\n";
	run_generated_at("invalid UTF-8 on line 6", late_utf8, sizeof(late_utf8) - 1, "invalid", 6, 16);
	static const char late_ctl[] = "version: 1\nsandbox:\n  network:\n    default: deny\x01\n";
	run_generated_at("a control character on line 4", late_ctl, sizeof(late_ctl) - 1, "control characters", 4, 18);

	static const char escaped_nul[] = "version: 1\nproject:\n  name: \"a\\0b\"\n";
	run_generated("escaped NUL", escaped_nul, sizeof(escaped_nul) - 1, "NUL character");

	n = (size_t)snprintf(buf, 64, "a: [");
	for (unsigned i = 0; i < 60000; i++)
		n += (size_t)snprintf(buf + n, 8, "1,1,");
	buf[n++] = ']';
	run_generated("too many nodes", buf, n, "too many nodes");

	static const char alias[] = "a: &x [1, 2]\nb: *x\n";
	run_generated("anchors", alias, sizeof(alias) - 1, "anchors are not accepted");

	run_generated("empty file", "", 0, "empty document");
	free(buf);
}

int main(int argc, char **argv)
{
	char **names;
	size_t n;
	char files[4096];

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	snprintf(files, sizeof(files), "%s/files", argv[1]);
	files_dir = files;
	n = tap_list_dir(argv[1], ".yaml", &names);
	for (size_t i = 0; i < n; i++) {
		run_file(argv[1], names[i]);
		free(names[i]);
	}
	free(names);
	generated();
	return tap_done();
}
