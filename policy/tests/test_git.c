/* SPDX-License-Identifier: Apache-2.0 */
/*
 * git.push, git.push_refs and git.force_push: their defaults in the compiled form, the warnings when they
 * cannot take effect, the accessors, and ref matching from a data file (see data/git_refs.txt).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/policy.h"
#include "tap.h"

static const char base[] = "version: 1\nsandbox:\n  network:\n    default: deny\n";

/* Compiles base + `git` (a YAML fragment). Returns the compile; `*p` gets the loaded policy, if any. */
static struct crgw_compiled *compile_git(const char *git, struct crgw_policy **p)
{
	struct crgw_compiled *c = NULL;
	char yaml[8192], err[256] = "";

	*p = NULL;
	snprintf(yaml, sizeof(yaml), "%s%s", base, git);
	if (crgw_policy_compile(yaml, strlen(yaml), NULL, &c) != 0)
		return NULL;
	for (unsigned i = 0; c->nerrors && i < c->ndiags; i++)
		printf("# %u:%u %s: %s\n", c->diags[i].line, c->diags[i].column, c->diags[i].path,
		       c->diags[i].message);
	if (!c->nerrors && crgw_policy_load(c->json, c->json_len, p, err, sizeof(err)) != 0)
		printf("# load: %s\n", err);
	return c;
}

static bool has_warning(const struct crgw_compiled *c, const char *path, unsigned line, unsigned column)
{
	for (unsigned i = 0; i < c->ndiags; i++) {
		const struct crgw_diag *d = &c->diags[i];

		if (d->code == CRGW_REASON_NONE && strcmp(d->path, path) == 0 && d->line == line &&
		    d->column == column && strstr(d->message, "no effect while git.push is false"))
			return true;
	}
	return false;
}

static void defaults(void)
{
	struct crgw_policy *p;
	struct crgw_compiled *c = compile_git("", &p);

	tap_result(c && p && c->nwarnings == 0, "a policy without git compiles and loads, without warnings");
	if (!p) {
		crgw_compiled_free(c);
		return;
	}
	tap_result(strstr(c->json, "\"git\":{\"force_push\":false,\"hosts\":[],\"push\":false,"
				   "\"push_refs\":[\"refs/heads/*\",\"refs/tags/*\"]}") != NULL,
		   "the compiled form writes the defaults out");
	tap_result(!crgw_policy_git_push(p) && !crgw_policy_git_force_push(p) && crgw_policy_git_host_count(p) == 0,
		   "push and force_push default to false, no git hosts");
	tap_result(crgw_policy_git_ref_allowed(p, "refs/heads/main", 15) &&
			   crgw_policy_git_ref_allowed(p, "refs/tags/v1", 12) &&
			   !crgw_policy_git_ref_allowed(p, "refs/notes/commits", 18),
		   "push_refs defaults to branches and tags");
	crgw_policy_unref(p);
	crgw_compiled_free(c);

	c = compile_git("git:\n  push: true\n", &p);
	tap_result(c && p && c->nwarnings == 0 && strstr(c->json, "\"push_refs\":[\"refs/heads/*\",\"refs/tags/*\"]") &&
			   crgw_policy_git_push(p) && !crgw_policy_git_force_push(p),
		   "push: true alone keeps the default push_refs and force_push");
	crgw_policy_unref(p);
	crgw_compiled_free(c);
}

static void expect_refs(const struct crgw_compiled *c, const char *want, const char *what)
{
	const char *got = c && c->json ? strstr(c->json, "\"push_refs\":") : NULL;
	bool ok = got && strncmp(got + 12, want, strlen(want)) == 0;

	tap_result(ok, "push_refs %s: %s", what, want);
	if (!ok)
		printf("# got: %.120s\n", got ? got : "(nothing)");
}

static void force_and_canonical(void)
{
	struct crgw_policy *p;
	struct crgw_compiled *c =
		compile_git("git:\n  push: true\n  force_push: true\n  push_refs: [refs/tags/v*, refs/heads/b, "
			    "refs/heads/a, refs/heads/b, \"refs/heads/a\"]\n",
			    &p);

	tap_result(c && p && crgw_policy_git_force_push(p), "force_push: true is read back");
	expect_refs(c, "[\"refs/heads/a\",\"refs/heads/b\",\"refs/tags/v*\"]", "sorted, repeats dropped");
	crgw_policy_unref(p);
	crgw_compiled_free(c);

	/* Byte order, not the order of the canonical JSON text (where "refs/a!" would sort first). */
	c = compile_git("git:\n  push: true\n  push_refs: [\"refs/a!\", refs/a, refs/B, refs/\xc3\xa9]\n", &p);
	expect_refs(c, "[\"refs/B\",\"refs/a\",\"refs/a!\",\"refs/\\u00E9\"]", "sorted bytewise");
	tap_result(p != NULL, "and the loader accepts that order");
	crgw_policy_unref(p);
	crgw_compiled_free(c);
}

static void warnings(void)
{
	struct crgw_policy *p;
	struct crgw_compiled *c =
		compile_git("git:\n  push: false\n  push_refs: [refs/heads/x]\n  force_push: true\n", &p);

	/* base is 4 lines: git: is line 5, push_refs line 7 */
	tap_result(c && p && c->nerrors == 0 && c->nwarnings == 2 && has_warning(c, "git.push_refs", 7, 14) &&
			   has_warning(c, "git.force_push", 8, 15),
		   "push_refs and force_push with push: false compile, with a warning each");
	tap_result(p && !crgw_policy_git_push(p) && crgw_policy_git_force_push(p) &&
			   crgw_policy_git_ref_allowed(p, "refs/heads/x", 12),
		   "they are kept in the compiled form as written");
	crgw_policy_unref(p);
	crgw_compiled_free(c);

	c = compile_git("git:\n  force_push: false\n", &p);
	tap_result(c && p && c->nwarnings == 1 && has_warning(c, "git.force_push", 6, 15),
		   "force_push with push absent warns too, whatever its value");
	crgw_policy_unref(p);
	crgw_compiled_free(c);

	c = compile_git("git:\n  push: true\n  push_refs: [refs/heads/x]\n  force_push: true\n", &p);
	tap_result(c && p && c->nwarnings == 0, "no warning when push is true");
	crgw_policy_unref(p);
	crgw_compiled_free(c);
}

static size_t unescape(const char *in, char *out, size_t cap)
{
	size_t n = 0;

	for (size_t i = 0; in[i] && n < cap; i++) {
		unsigned v;

		if (in[i] == '\\' && in[i + 1] == 'x' && sscanf(in + i + 2, "%2x", &v) == 1) {
			out[n++] = (char)v;
			i += 3;
		} else {
			out[n++] = in[i];
		}
	}
	return n;
}

/* "push_refs: default" or "push_refs: P1 P2 ..." → a loaded policy that may push those refs. */
static struct crgw_policy *refs_policy(const char *spec, unsigned lineno)
{
	char git[4096] = "git:\n  push: true\n";
	struct crgw_compiled *c;
	struct crgw_policy *p;

	if (strcmp(spec, "default") != 0) {
		size_t n = strlen(git);

		n += (size_t)snprintf(git + n, sizeof(git) - n, "  push_refs:\n");
		for (const char *s = spec; *s && n < sizeof(git);) {
			size_t len = strcspn(s, " ");

			n += (size_t)snprintf(git + n, sizeof(git) - n, "    - \"%.*s\"\n", (int)len, s);
			s += len + strspn(s + len, " ");
		}
	}
	c = compile_git(git, &p);
	tap_result(p != NULL, "line %u: push_refs: %s compiles and loads", lineno, spec);
	crgw_compiled_free(c);
	return p;
}

static void ref_table(const char *file)
{
	size_t len;
	char *text = tap_read_file(file, &len);
	struct crgw_policy *p = NULL;
	unsigned lineno = 0;

	if (!text) {
		tap_result(false, "cannot read %s", file);
		return;
	}
	for (char *line = text; line && *line;) {
		char *end = strchr(line, '\n'), *tab, ref[1024];

		if (end)
			*end = '\0';
		lineno++;
		if (strncmp(line, "push_refs: ", 11) == 0) {
			crgw_policy_unref(p);
			p = refs_policy(line + 11, lineno);
		} else if (line[0] != '#' && line[0] != '\0') {
			tab = strchr(line, '\t');
			if (!tab || !p) {
				tap_result(false, "line %u: no tab, or no policy before it", lineno);
			} else {
				*tab = '\0';
				size_t n = unescape(line, ref, sizeof(ref));
				bool want = strcmp(tab + 1, "allow") == 0;
				bool got = crgw_policy_git_ref_allowed(p, ref, n);

				tap_result(got == want && (want || strcmp(tab + 1, "deny") == 0), "line %u: %s %s",
					   lineno, line, got ? "allowed" : "refused");
			}
		}
		line = end ? end + 1 : NULL;
	}
	crgw_policy_unref(p);
	free(text);
}

/* The ref is a counted string: what follows it, NUL or not, is not part of it. */
static void counted(void)
{
	struct crgw_policy *p;
	struct crgw_compiled *c = compile_git("git:\n  push: true\n  push_refs: [refs/heads/main]\n", &p);

	if (!p) {
		tap_result(false, "counted: policy loads");
		crgw_compiled_free(c);
		return;
	}
	tap_result(crgw_policy_git_ref_allowed(p, "refs/heads/mainline", 15), "a prefix of a longer buffer matches");
	tap_result(!crgw_policy_git_ref_allowed(p, "refs/heads/main", 14), "a shorter length does not");
	tap_result(!crgw_policy_git_ref_allowed(p, "refs/heads/main\0", 16),
		   "a trailing NUL inside the length does not");
	tap_result(!crgw_policy_git_ref_allowed(p, NULL, 0), "an empty ref does not");
	crgw_policy_unref(p);
	crgw_compiled_free(c);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s GIT-REFS-FILE\n", argv[0]);
		return 2;
	}
	defaults();
	force_and_canonical();
	warnings();
	counted();
	ref_table(argv[1]);
	return tap_done();
}
