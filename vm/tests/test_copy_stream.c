/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writer of crgw-ctl cp's stream, fed streams built by hand: a good tree lands as sent (links as
 * links, set-id bits dropped), and every bad stream (absolute or ".." names, a name through a link, a
 * length out of bounds, a stream cut short, a reader's error, entries after a single file, a duplicate)
 * ends the copy with an error and writes nothing outside the destination.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "vm_priv.h"

static char top[64];
static FILE *stream;

static void rec(int type, unsigned mode, const char *path, const char *link, const char *data)
{
	struct rec r = { .type = (uint8_t)type, .mode = mode, .path_len = (uint32_t)strlen(path),
			 .link_len = link ? (uint32_t)strlen(link) : 0, .size = data ? strlen(data) : 0 };

	fwrite(&r, sizeof(r), 1, stream);
	fwrite(path, 1, r.path_len, stream);
	if (link)
		fwrite(link, 1, r.link_len, stream);
	if (data)
		fwrite(data, 1, r.size, stream);
}

static void begin(void)
{
	stream = tmpfile();
}

/* Runs the writer on what was built, into DEST (under the test's directory). */
static int finish(const char *dest, char *err, size_t errlen)
{
	char path[256];
	int e;

	fflush(stream);
	rewind(stream);
	snprintf(path, sizeof(path), "%s/%s", top, dest);
	err[0] = '\0';
	e = copy_stream_write(fileno(stream), path, err, errlen);
	fclose(stream);
	return e;
}

static bool file_is(const char *rel, const char *want, mode_t mode)
{
	char path[256], buf[256] = "";
	struct stat st;
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%s", top, rel);
	fd = open(path, O_RDONLY | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st))
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return !strcmp(buf, want) && (st.st_mode & 07777) == mode;
}

static bool missing(const char *rel)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", top, rel);
	return lstat(path, &st) != 0;
}

int main(void)
{
	char err[512], path[256], target[256];
	int e;

	snprintf(top, sizeof(top), "/tmp/crgw-test-copy-XXXXXX");
	if (!mkdtemp(top))
		return 1;
	snprintf(path, sizeof(path), "%s/outside", top);
	mkdir(path, 0755);

	/* A good tree. */
	begin();
	rec(REC_DIR, 0755, "", NULL, NULL);
	rec(REC_DIR, 0700, "sub", NULL, NULL);
	rec(REC_FILE, 04755, "sub/tool", NULL, "#!/bin/sh\n");
	rec(REC_LINK, 0777, "etc-link", "/etc", NULL);
	rec(REC_FILE, 0644, "readme", NULL, "hello");
	rec(REC_END, 0, "", NULL, NULL);
	e = finish("good", err, sizeof(err));
	tap_result(e == 0, "a good tree is written (%s)", e ? err : "ok");
	tap_result(file_is("good/readme", "hello", 0644), "a file arrives with its content and mode");
	tap_result(file_is("good/sub/tool", "#!/bin/sh\n", 0755), "set-user-ID is dropped (04755 → 0755)");
	snprintf(path, sizeof(path), "%s/good/etc-link", top);
	ssize_t n = readlink(path, target, sizeof(target) - 1);

	tap_result(n == 4 && !strncmp(target, "/etc", 4), "a link is copied as a link, not followed");

	/* One file. */
	begin();
	rec(REC_FILE, 0600, "", NULL, "one");
	rec(REC_END, 0, "", NULL, NULL);
	tap_result(finish("single", err, sizeof(err)) == 0 && file_is("single", "one", 0600), "a single file is written");

	static const struct {
		const char *what;
		const char *name;
	} bad_names[] = {
		{ "an absolute name", "/etc/crgw-test" },
		{ "a '..' name", "../outside/escaped" },
		{ "a '..' inside a name", "a/../../outside/escaped" },
		{ "a '.' name", "./x" },
		{ "an empty component", "a//b" },
	};
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		char dest[32];

		snprintf(dest, sizeof(dest), "bad%zu", i);
		begin();
		rec(REC_DIR, 0755, "", NULL, NULL);
		rec(REC_DIR, 0755, "a", NULL, NULL);
		rec(REC_FILE, 0644, bad_names[i].name, NULL, "x");
		rec(REC_END, 0, "", NULL, NULL);
		e = finish(dest, err, sizeof(err));
		tap_result(e != 0 && missing("outside/escaped") && access("/etc/crgw-test", F_OK) != 0,
			   "%s is refused (%s)", bad_names[i].what, err);
	}

	/* A link sent first, then a file through it: the writer never follows a link. */
	begin();
	rec(REC_DIR, 0755, "", NULL, NULL);
	snprintf(target, sizeof(target), "%s/outside", top);
	rec(REC_LINK, 0777, "l", target, NULL);
	rec(REC_FILE, 0644, "l/escaped", NULL, "x");
	rec(REC_END, 0, "", NULL, NULL);
	e = finish("through-link", err, sizeof(err));
	tap_result(e != 0 && missing("outside/escaped"), "a file through a link it was sent is refused (%s)", err);

	/* Bounds and a stream cut short. */
	begin();
	struct rec huge = { .type = REC_FILE, .path_len = COPY_PATH_MAX + 1 };

	fwrite(&huge, sizeof(huge), 1, stream);
	e = finish("huge", err, sizeof(err));
	tap_result(e == -EPROTO && missing("huge"), "a name longer than the limit is refused (%s)", err);
	begin();
	rec(REC_DIR, 0755, "", NULL, NULL);
	struct rec cut = { .type = REC_FILE, .mode = 0644, .path_len = 1, .size = 1000 };

	fwrite(&cut, sizeof(cut), 1, stream);
	fwrite("f", 1, 1, stream);
	fwrite("short", 1, 5, stream);
	e = finish("cut", err, sizeof(err));
	tap_result(e != 0, "a stream that ends inside a file is an error (%s)", err);
	begin();
	rec(REC_DIR, 0755, "", NULL, NULL);
	e = finish("noend", err, sizeof(err));
	tap_result(e != 0, "a stream without its end record is an error (%s)", err);

	/* What the reader reports, and what may not follow. */
	begin();
	rec(REC_ERROR, 0, "/x in the sandbox: Permission denied", NULL, NULL);
	e = finish("reader-error", err, sizeof(err));
	tap_result(e != 0 && strstr(err, "Permission denied") && missing("reader-error"), "the reader's error is passed on");
	begin();
	rec(REC_FILE, 0644, "", NULL, "one");
	rec(REC_FILE, 0644, "more", NULL, "two");
	rec(REC_END, 0, "", NULL, NULL);
	e = finish("after-single", err, sizeof(err));
	tap_result(e == -EPROTO && file_is("after-single", "one", 0644) && strstr(err, "after a single file"),
		   "an entry after a single file is refused (%s)", err);
	begin();
	rec(REC_LINK, 0777, "", "/etc/shadow", NULL);
	rec(REC_END, 0, "", NULL, NULL);
	e = finish("top-link", err, sizeof(err));
	tap_result(e == -EPROTO && missing("top-link"), "a link as the top entry is refused (%s)", err);
	begin();
	rec(REC_DIR, 0755, "", NULL, NULL);
	rec(REC_FILE, 0644, "twice", NULL, "1");
	rec(REC_FILE, 0644, "twice", NULL, "2");
	rec(REC_END, 0, "", NULL, NULL);
	e = finish("dup", err, sizeof(err));
	tap_result(e != 0 && file_is("dup/twice", "1", 0644), "a name sent twice is not overwritten (%s)", err);

	snprintf(path, sizeof(path), "rm -rf '%s'", top);
	if (system(path) != 0)
		return 1;
	return tap_done();
}
