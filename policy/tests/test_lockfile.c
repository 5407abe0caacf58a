/* SPDX-License-Identifier: Apache-2.0 */
/* Runs the lockfile parser cases under tests/data/lockfiles (one folder each) plus built-in limit cases, as TAP. */

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lockfile.h"

#define WHY_MAX 768

static unsigned n_failed;

static void report(const char *name, const char *why)
{
	const char *p;

	if (why[0]) {
		/* An unescaped '#' would start a TAP directive ("# SKIP") inside the reason. */
		printf("not ok %s: ", name);
		for (p = why; *p; p++) {
			if (*p == '#')
				putchar('\\');
			putchar(*p);
		}
		putchar('\n');
		n_failed++;
	} else {
		printf("ok %s\n", name);
	}
}

static void why_set(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void why_set(char *why, const char *fmt, ...)
{
	va_list ap;

	if (why[0])
		return; /* keep the first reason */
	va_start(ap, fmt);
	vsnprintf(why, WHY_MAX, fmt, ap);
	va_end(ap);
}

/*
 * Reads a whole file into an exactly sized heap buffer with no terminator after it, so AddressSanitizer
 * catches a parser that reads past `len`. `*text` (if non-NULL) gets a NUL-terminated copy as well.
 */
static int read_file(const char *path, char **data, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *buf = NULL;
	int ret = 0;

	*data = NULL;
	*len = 0;
	if (!f)
		return -errno;
	if (fstat(fileno(f), &st) || st.st_size < 0 || (size_t)st.st_size > CRGW_LOCKFILE_MAX_BYTES) {
		ret = -EFBIG;
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		ret = -EIO;
		goto out;
	}
	*data = buf;
	*len = (size_t)st.st_size;
	buf = NULL;
out:
	free(buf);
	fclose(f);
	return ret;
}

static char *nul_terminated(const char *p, size_t len)
{
	char *s = malloc(len + 1);

	if (s) {
		memcpy(s, p, len);
		s[len] = '\0';
	}
	return s;
}

/* Appends the canonical "name\tversion\tregistry\tintegrity\n" rendering of `list` to a new string. */
static char *render(const struct crgw_artifact_list *list)
{
	size_t i, cap = 1, n = 0;
	char *s;

	for (i = 0; i < list->count; i++)
		cap += strlen(list->items[i].name) + strlen(list->items[i].version) +
		       (list->items[i].registry ? strlen(list->items[i].registry) : 1) +
		       strlen(list->items[i].integrity) + 4;
	s = malloc(cap);
	if (!s)
		return NULL;
	s[0] = '\0';
	for (i = 0; i < list->count; i++) {
		const struct crgw_artifact *a = &list->items[i];

		n += (size_t)snprintf(s + n, cap - n, "%s\t%s\t%s\t%s\n", a->name, a->version,
				      a->registry ? a->registry : "-", a->integrity);
	}
	return s;
}

/* Compares line by line; a missing final newline in expected.txt does not matter. */
static void compare(const char *want, const char *got, char *why)
{
	unsigned line = 1;
	size_t wl, gl;

	for (;;) {
		if (!*want && !*got)
			return;
		wl = strcspn(want, "\n");
		gl = strcspn(got, "\n");
		if (wl != gl || memcmp(want, got, wl)) {
			why_set(why, "line %u: want '%.*s' got '%.*s'", line, (int)wl, want, (int)gl, got);
			return;
		}
		want += wl + (want[wl] == '\n');
		got += gl + (got[gl] == '\n');
		line++;
	}
}

static void check_error(const char *expected, int ret, const struct crgw_lockfile_error *err, char *why)
{
	const char *p = expected + strlen("error\t");
	char *end, sub[256];
	unsigned long line;
	size_t n;

	errno = 0;
	line = strtoul(p, &end, 10);
	if (errno || end == p || *end != '\t') {
		why_set(why, "expected.txt: bad error line");
		return;
	}
	p = end + 1;
	n = strcspn(p, "\r\n");
	if (n >= sizeof(sub)) {
		why_set(why, "expected.txt: message too long");
		return;
	}
	memcpy(sub, p, n);
	sub[n] = '\0';
	if (ret >= 0)
		why_set(why, "parse succeeded; want an error at line %lu", line);
	else if (err->line != line)
		why_set(why, "error at line %u (%s); want line %lu", err->line, err->message, line);
	else if (!strstr(err->message, sub))
		why_set(why, "message '%s' lacks '%s'", err->message, sub);
}

static int find_lockfile(const char *dir, char *path, size_t size, enum crgw_lockfile_kind *kind,
			 char *why)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	unsigned found = 0;

	if (!d) {
		why_set(why, "cannot open %s", dir);
		return -errno;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || !strcmp(de->d_name, "expected.txt"))
			continue;
		if (crgw_lockfile_kind_from_name(de->d_name, kind)) {
			why_set(why, "unexpected file %s", de->d_name);
			continue;
		}
		snprintf(path, size, "%s/%s", dir, de->d_name);
		found++;
	}
	closedir(d);
	if (found != 1)
		why_set(why, "%u lockfiles in the case folder; want exactly 1", found);
	return why[0] ? -EINVAL : 0;
}

static void run_case(const char *root, const char *name)
{
	struct crgw_artifact_list list = { 0 };
	struct crgw_lockfile_error err;
	enum crgw_lockfile_kind kind;
	char dir[512], path[1024], why[WHY_MAX] = "";
	char *data = NULL, *exp_raw = NULL, *expected = NULL, *got = NULL;
	size_t len, exp_len;
	int ret;

	snprintf(dir, sizeof(dir), "%s/%s", root, name);
	if (find_lockfile(dir, path, sizeof(path), &kind, why))
		goto out;
	if (read_file(path, &data, &len)) {
		why_set(why, "cannot read %s", path);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/expected.txt", dir);
	if (read_file(path, &exp_raw, &exp_len) || !(expected = nul_terminated(exp_raw, exp_len))) {
		why_set(why, "cannot read %s", path);
		goto out;
	}

	ret = crgw_lockfile_parse(kind, data, len, &list, &err);
	if (!strncmp(expected, "error\t", 6)) {
		check_error(expected, ret, &err, why);
		goto out;
	}
	if (ret) {
		why_set(why, "parse failed (%d) at %u:%u: %s", ret, err.line, err.column, err.message);
		goto out;
	}
	crgw_artifact_list_sort_unique(&list);
	got = render(&list);
	if (!got) {
		why_set(why, "out of memory");
		goto out;
	}
	compare(expected, got, why);
out:
	report(name, why);
	crgw_artifact_list_free(&list);
	free(got);
	free(expected);
	free(exp_raw);
	free(data);
}

/* ---- built-in cases: limits and inputs a data file cannot express well ---------------------------- */

static const char h1[] = "h1:47DEQpj8HBSZ+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

static void case_kind_names(char *why)
{
	static const struct {
		const char *path;
		int ret;
		enum crgw_lockfile_kind kind;
	} t[] = {
		{ "package-lock.json", 0, CRGW_LOCKFILE_NPM },
		{ "web/npm-shrinkwrap.json", 0, CRGW_LOCKFILE_NPM },
		{ "a/b/yarn.lock", 0, CRGW_LOCKFILE_YARN },
		{ "requirements.txt", 0, CRGW_LOCKFILE_PIP },
		{ "py/requirements-dev.txt", 0, CRGW_LOCKFILE_PIP },
		{ "requirements_lock.txt", 0, CRGW_LOCKFILE_PIP },
		{ "go.sum", 0, CRGW_LOCKFILE_GOSUM },
		{ "requirements.in", -ENOENT, 0 },
		{ "requirementsfoo.txt", -ENOENT, 0 },
		{ "notes.txt", -ENOENT, 0 },
		{ "go.sum/", -ENOENT, 0 },
		{ "Package-Lock.json", -ENOENT, 0 },
		{ "", -ENOENT, 0 },
	};
	enum crgw_lockfile_kind k;
	size_t i;
	int ret;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		k = (enum crgw_lockfile_kind)-1;
		ret = crgw_lockfile_kind_from_name(t[i].path, &k);
		if (ret != t[i].ret || (!ret && k != t[i].kind))
			why_set(why, "'%s': ret %d kind %d", t[i].path, ret, (int)k);
	}
	if (crgw_lockfile_kind_from_name(NULL, &k) != -EINVAL)
		why_set(why, "NULL path accepted");
	if (strcmp(crgw_lockfile_registry(CRGW_LOCKFILE_NPM), "npm") ||
	    strcmp(crgw_lockfile_registry(CRGW_LOCKFILE_YARN), "npm") ||
	    strcmp(crgw_lockfile_registry(CRGW_LOCKFILE_PIP), "pip") ||
	    strcmp(crgw_lockfile_registry(CRGW_LOCKFILE_GOSUM), "go") ||
	    crgw_lockfile_registry((enum crgw_lockfile_kind)42))
		why_set(why, "crgw_lockfile_registry table");
}

static void case_max_bytes(char *why)
{
	struct crgw_artifact_list list = { 0 };
	struct crgw_lockfile_error err;
	size_t len = (size_t)CRGW_LOCKFILE_MAX_BYTES + 1;
	char *buf = malloc(len);
	int ret;

	if (!buf) {
		why_set(why, "out of memory");
		return;
	}
	memset(buf, '\n', len);
	ret = crgw_lockfile_parse(CRGW_LOCKFILE_GOSUM, buf, len, &list, &err);
	if (ret != -E2BIG)
		why_set(why, "%zu bytes: ret %d, want -E2BIG", len, ret);
	/* Exactly the limit is fine: all blank lines. */
	ret = crgw_lockfile_parse(CRGW_LOCKFILE_GOSUM, buf, len - 1, &list, &err);
	if (ret || list.count)
		why_set(why, "%zu blank bytes: ret %d (%s)", len - 1, ret, err.message);
	crgw_artifact_list_free(&list);
	free(buf);
}

/* One go.sum line per artifact, `n` artifacts with distinct versions. */
static char *many_gosum(size_t n, size_t *len)
{
	size_t i, cap = n * 80 + 1, used = 0;
	char *buf = malloc(cap);

	if (!buf)
		return NULL;
	for (i = 0; i < n; i++)
		used += (size_t)snprintf(buf + used, cap - used, "example.test/m v1.0.%zu %s\n", i, h1);
	*len = used;
	return buf;
}

static void case_max_artifacts(char *why)
{
	struct crgw_artifact_list list = { 0 };
	struct crgw_lockfile_error err;
	size_t len;
	char *buf = many_gosum(CRGW_LOCKFILE_MAX_ARTIFACTS + 1, &len);
	int ret;

	if (!buf) {
		why_set(why, "out of memory");
		return;
	}
	ret = crgw_lockfile_parse(CRGW_LOCKFILE_GOSUM, buf, len, &list, &err);
	if (ret != -E2BIG || err.line != CRGW_LOCKFILE_MAX_ARTIFACTS + 1)
		why_set(why, "ret %d line %u, want -E2BIG at the last line", ret, err.line);
	crgw_artifact_list_free(&list);
	free(buf);
}

static void case_max_field(char *why)
{
	struct crgw_artifact_list list = { 0 };
	struct crgw_lockfile_error err;
	char buf[CRGW_LOCKFILE_MAX_FIELD + 200];
	size_t n;
	int ret;

	/* A module path of exactly the limit passes; one byte more fails. */
	for (n = CRGW_LOCKFILE_MAX_FIELD; n <= CRGW_LOCKFILE_MAX_FIELD + 1; n++) {
		size_t len;

		memset(buf, 'a', n);
		len = n + (size_t)snprintf(buf + n, sizeof(buf) - n, " v1.0.0 %s\n", h1);
		ret = crgw_lockfile_parse(CRGW_LOCKFILE_GOSUM, buf, len, &list, &err);
		if (n == CRGW_LOCKFILE_MAX_FIELD && ret)
			why_set(why, "module of %zu bytes refused: %s", n, err.message);
		if (n > CRGW_LOCKFILE_MAX_FIELD && ret != -EINVAL)
			why_set(why, "module of %zu bytes: ret %d", n, ret);
	}
	crgw_artifact_list_free(&list);

	/* An npm name over the limit, from the key. */
	n = (size_t)snprintf(buf, sizeof(buf),
			     "{\"lockfileVersion\":3,\"packages\":{\"node_modules/%0*d\":{\"version\":\"1.0.0\","
			     "\"integrity\":\"sha1-AAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}}}",
			     (int)CRGW_LOCKFILE_MAX_FIELD + 1, 0);
	ret = crgw_lockfile_parse(CRGW_LOCKFILE_NPM, buf, n, &list, &err);
	if (ret != -EINVAL || !strstr(err.message, "field limit"))
		why_set(why, "npm long name: ret %d (%s)", ret, err.message);
	crgw_artifact_list_free(&list);
}

/* NUL bytes, no terminator, NULL error struct, empty input: nothing crashes, text formats refuse NUL. */
static void case_odd_input(char *why)
{
	static const char yarn[] = "a@1:\n  version \"1\0\"\n";
	struct crgw_artifact_list list = { 0 };
	struct crgw_lockfile_error err;
	int ret, k;

	ret = crgw_lockfile_parse(CRGW_LOCKFILE_YARN, yarn, sizeof(yarn) - 1, &list, &err);
	if (ret != -EINVAL || err.line != 2 || err.column != 13 || !strstr(err.message, "NUL"))
		why_set(why, "yarn NUL: ret %d at %u:%u %s", ret, err.line, err.column, err.message);
	for (k = CRGW_LOCKFILE_NPM; k <= CRGW_LOCKFILE_GOSUM; k++) {
		ret = crgw_lockfile_parse((enum crgw_lockfile_kind)k, yarn, sizeof(yarn) - 1, &list, NULL);
		if (ret != -EINVAL)
			why_set(why, "kind %d with NULL err: ret %d", k, ret);
		ret = crgw_lockfile_parse((enum crgw_lockfile_kind)k, NULL, 0, &list, &err);
		if ((k == CRGW_LOCKFILE_NPM) != (ret == -EINVAL) || (k != CRGW_LOCKFILE_NPM && ret))
			why_set(why, "kind %d empty input: ret %d", k, ret);
	}
	if (crgw_lockfile_parse(CRGW_LOCKFILE_GOSUM, NULL, 1, &list, &err) != -EINVAL)
		why_set(why, "NULL buffer with a length accepted");
	if (crgw_lockfile_parse((enum crgw_lockfile_kind)9, "", 0, &list, &err) != -EINVAL)
		why_set(why, "unknown kind accepted");
	crgw_artifact_list_free(&list);
	crgw_artifact_list_free(&list); /* twice: must be reusable */
	crgw_artifact_list_sort_unique(&list);
}

static const struct {
	const char *name;
	void (*fn)(char *why);
} builtins[] = {
	{ "builtin-kind-names", case_kind_names },
	{ "builtin-max-bytes", case_max_bytes },
	{ "builtin-max-artifacts", case_max_artifacts },
	{ "builtin-max-field", case_max_field },
	{ "builtin-odd-input", case_odd_input },
};

static int is_case(const struct dirent *de)
{
	return de->d_name[0] != '.';
}

int main(int argc, char **argv)
{
	struct dirent **cases = NULL;
	size_t nb = sizeof(builtins) / sizeof(builtins[0]), i;
	int n;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DATA_DIR (tests/data/lockfiles)\n", argv[0]);
		return 2;
	}
	n = scandir(argv[1], &cases, is_case, alphasort);
	if (n < 0) {
		fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	printf("1..%zu\n", (size_t)n + nb);
	for (i = 0; i < (size_t)n; i++) {
		run_case(argv[1], cases[i]->d_name);
		free(cases[i]);
	}
	free(cases);
	for (i = 0; i < nb; i++) {
		char why[WHY_MAX] = "";

		builtins[i].fn(why);
		report(builtins[i].name, why);
	}
	return n_failed ? 1 : 0;
}
