/* SPDX-License-Identifier: Apache-2.0 */
/* An audit log read as a stream of lines, in bounded memory, for policy diff --against and policy learn. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"

#define READ_CHUNK (4u * 1024 * 1024)

int ctl_audit_open(const char *path)
{
	struct stat st;
	int fd, err;

	if (!strcmp(path, "-"))
		return STDIN_FILENO;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		fprintf(stderr, "crgw-ctl: %s: %s\n", path, strerror(errno));
		return err;
	}
	/* A directory opens, and fails only at the first read: after a caller has printed half its answer. */
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		fprintf(stderr, "crgw-ctl: %s: %s\n", path, strerror(EISDIR));
		close(fd);
		return -EISDIR;
	}
	return fd;
}

void ctl_audit_close(int fd)
{
	if (fd >= 0 && fd != STDIN_FILENO)
		close(fd);
}

int ctl_audit_lines(int fd, const char *path, int (*fn)(void *arg, const char *line, size_t len), void *arg,
		    uint64_t *overlong)
{
	char *buf;
	size_t have = 0;
	bool skipping = false;
	int err = 0;

	buf = malloc(READ_CHUNK + CTL_AUDIT_LINE_MAX);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + have, READ_CHUNK + CTL_AUDIT_LINE_MAX - have);
		size_t start = 0;
		char *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			fprintf(stderr, "crgw-ctl: %s: %s\n", path, strerror(errno));
			break;
		}
		have += (size_t)n;
		while ((nl = memchr(buf + start, '\n', have - start))) {
			size_t len = (size_t)(nl - (buf + start));

			if (skipping)
				skipping = false; /* the tail of an over-long line, counted when it began */
			else if (len > CTL_AUDIT_LINE_MAX)
				(*overlong)++;
			else if (len && (err = fn(arg, buf + start, len)))
				goto out;
			start += len + 1;
		}
		memmove(buf, buf + start, have - start);
		have -= start;
		if (n == 0) {
			if (have && !skipping && have <= CTL_AUDIT_LINE_MAX)
				err = fn(arg, buf, have);
			else if (have && !skipping)
				(*overlong)++;
			break;
		}
		if (have > CTL_AUDIT_LINE_MAX) {
			/* No newline within the limit: drop what there is and the rest of the line. */
			if (!skipping)
				(*overlong)++;
			skipping = true;
			have = 0;
		}
	}
out:
	free(buf);
	return err;
}
