/* SPDX-License-Identifier: Apache-2.0 */
/* A tiny TAP emitter and file helpers for the table-driven tests. */
#ifndef CRGW_TESTS_TAP_H
#define CRGW_TESTS_TAP_H

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned tap_count, tap_failed;

__attribute__((format(printf, 2, 3))) static inline void tap_result(bool ok, const char *fmt, ...)
{
	va_list ap;
	char line[8192];
	int n;

	tap_count++;
	if (!ok)
		tap_failed++;
	printf("%s %u - ", ok ? "ok" : "not ok", tap_count);
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* A description may quote captured output: one TAP line still, its newlines shown as \n. */
	for (const char *p = line; *p; p++) {
		if (*p == '\n')
			fputs("\\n", stdout);
		else
			putchar(*p);
	}
	printf("%s\n", n >= (int)sizeof(line) ? "..." : "");
}

/* Prints the plan (at the end, which TAP allows) and returns the exit status. */
static inline int tap_done(void)
{
	printf("1..%u\n", tap_count);
	if (tap_count == 0) {
		printf("# no cases ran: that is a failure, not a pass\n");
		return 1;
	}
	return tap_failed ? 1 : 0;
}

/* Reads a whole file; returns a malloc'd NUL-terminated buffer or NULL. */
static inline char *tap_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f)
		return NULL;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			char *nb = realloc(buf, cap);

			if (!nb) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		size_t got = fread(buf + n, 1, 4096, f);

		n += got;
		if (got == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/*
 * A crgw_read_file_cb for tests: reads `path` beneath the folder `arg` (a const char *) with the limits
 * the compiler asks for.
 */
static inline int tap_read_beneath(void *arg, const char *path, size_t max, char **buf, size_t *len)
{
	char full[4096];

	snprintf(full, sizeof(full), "%s/%s", (const char *)arg, path);
	*buf = tap_read_file(full, len);
	if (!*buf)
		return -ENOENT;
	if (*len > max) {
		free(*buf);
		return -E2BIG;
	}
	return 0;
}

static int tap_cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the entries of `dir` ending in `suffix`, sorted; returns the count (names malloc'd). */
static inline size_t tap_list_dir(const char *dir, const char *suffix, char ***names)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0, slen = strlen(suffix);

	*names = NULL;
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);

		if (e->d_name[0] == '.' || len < slen || strcmp(e->d_name + len - slen, suffix) != 0)
			continue;
		char **v = realloc(*names, (n + 1) * sizeof(*v));

		if (!v)
			break;
		*names = v;
		v[n++] = strdup(e->d_name);
	}
	closedir(d);
	if (n > 1)
		qsort(*names, n, sizeof(**names), tap_cmp_names);
	return n;
}

#endif
