/* SPDX-License-Identifier: Apache-2.0 */
/* Finds a repository's policy file and reads the files it names, never outside the repository. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ctl.h"

static bool is_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int repo_find_policy(const char *arg, struct repo_policy *out, char *err, size_t errlen)
{
	struct stat st;
	const char *dir = arg ? arg : ".";

	memset(out, 0, sizeof(*out));
	if (!dir[0]) {
		snprintf(err, errlen, "an empty path: give a policy file or a repository directory");
		return -ENOENT;
	}
	if (stat(dir, &st) != 0) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -errno;
	}
	if (S_ISDIR(st.st_mode)) {
		char root_file[4096], bk_file[4096];

		snprintf(root_file, sizeof(root_file), "%s/cleanroom.yaml", dir);
		snprintf(bk_file, sizeof(bk_file), "%s/.buildkite/cleanroom.yaml", dir);
		bool has_root = is_file(root_file), has_bk = is_file(bk_file);
		struct stat lst;

		/* One that is there and unusable is an error: falling back to the other would hide it. */
		if (!has_root && lstat(root_file, &lst) == 0) {
			snprintf(err, errlen, "%s: not a regular file (a directory, a FIFO, or a link that leads nowhere)",
				 root_file);
			return -EINVAL;
		}
		if (!has_root && !has_bk) {
			snprintf(err, errlen, "%s: no cleanroom.yaml or .buildkite/cleanroom.yaml", dir);
			return -ENOENT;
		}
		if (has_root && has_bk &&
		    snprintf(out->warning, sizeof(out->warning),
			     "both cleanroom.yaml and .buildkite/cleanroom.yaml exist in %s; using cleanroom.yaml and "
			     "ignoring .buildkite/cleanroom.yaml",
			     dir) >= (int)sizeof(out->warning))
			memcpy(out->warning + sizeof(out->warning) - 4, "...", 4);
		snprintf(out->path, sizeof(out->path), "%s", has_root ? root_file : bk_file);
		snprintf(out->root, sizeof(out->root), "%s", dir);
		snprintf(out->source, sizeof(out->source), "%s",
			 has_root ? "cleanroom.yaml" : ".buildkite/cleanroom.yaml");
		return 0;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a file or directory", dir);
		return -EINVAL;
	}
	char copy[4096], copy2[4096];

	snprintf(out->path, sizeof(out->path), "%s", dir);
	snprintf(copy, sizeof(copy), "%s", dir);
	snprintf(copy2, sizeof(copy2), "%s", dir);
	char *parent = dirname(copy), *base = basename(copy2);

	/* A file inside .buildkite/ belongs to the repository one level up, as the lookup order implies. */
	if (strcmp(basename(parent), ".buildkite") == 0) {
		char p2[4096];

		snprintf(p2, sizeof(p2), "%s", parent);
		snprintf(out->root, sizeof(out->root), "%s", dirname(p2));
		snprintf(out->source, sizeof(out->source), ".buildkite/%s", base);
	} else {
		snprintf(copy, sizeof(copy), "%s", dir);
		snprintf(out->root, sizeof(out->root), "%s", dirname(copy));
		snprintf(out->source, sizeof(out->source), "%s", base);
	}
	return 0;
}

static int read_fd(int fd, size_t max, char **buf, size_t *len)
{
	struct stat st;
	size_t cap, n = 0;
	char *b;

	if (fstat(fd, &st) != 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if ((size_t)st.st_size > max)
		return -E2BIG;
	cap = (size_t)st.st_size + 1;
	b = malloc(cap);
	if (!b)
		return -ENOMEM;
	/* The size may change under us; read until EOF but never past `max`. */
	for (;;) {
		if (n + 1 >= cap) {
			if (cap > max + 1) {
				free(b);
				return -E2BIG;
			}
			char *nb = realloc(b, cap * 2);

			if (!nb) {
				free(b);
				return -ENOMEM;
			}
			b = nb;
			cap *= 2;
		}
		ssize_t got = read(fd, b + n, cap - n - 1);

		if (got < 0) {
			if (errno == EINTR)
				continue;
			free(b);
			return -errno;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	if (n > max) {
		free(b);
		return -E2BIG;
	}
	b[n] = '\0';
	*buf = b;
	*len = n;
	return 0;
}

const char *repo_read_error(int err)
{
	return err == -EINVAL ? "not a regular file" : strerror(-err);
}

int repo_read_file(const char *path, size_t max, char **buf, size_t *len)
{
	/* O_NONBLOCK: opening a FIFO must not wait for a writer (read_fd then refuses it as no regular file). */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	int err;

	if (fd < 0)
		return -errno;
	err = read_fd(fd, max, buf, len);
	close(fd);
	return err;
}

int repo_read_beneath(void *arg, const char *path, size_t max, char **buf, size_t *len)
{
	const char *root = arg;
	struct open_how how = {
		/* A sandbox with a rw workspace may leave a FIFO where a lockfile is expected: never wait on it. */
		.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	int dirfd, fd, err;

	dirfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	/* RESOLVE_BENEATH stops symlinks and ".." from leading a repository's policy to host files. */
	fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
	if (fd < 0 && errno == ENOSYS)
		fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
	err = fd < 0 ? -errno : 0;
	close(dirfd);
	if (err)
		return err;
	err = read_fd(fd, max, buf, len);
	close(fd);
	return err;
}
