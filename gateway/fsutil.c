/* SPDX-License-Identifier: Apache-2.0 */
/* Creates missing parent directories one component at a time, following only links nobody else could plant. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"

/* Links followed in one walk before giving up, as the kernel does (MAXSYMLINKS). */
#define MAX_LINKS 40
/* Attempts at one component while another process keeps creating and removing it. */
#define MAX_RACES 8
#define NOT_FOLLOWED "a symbolic link that another user owns or could have put there; not followed"

static bool owner_trusted(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

/*
 * Whoever can write a directory can put a link in it and so choose where a mkdir beneath lands. A link is
 * followed only when its directory is root's (or ours) and writable by no group or other user, which also
 * rules out sticky world-writable directories such as /tmp: fs.protected_symlinks is not on everywhere.
 */
static bool link_trusted(int dirfd, const struct stat *link)
{
	struct stat dir;

	if (fstat(dirfd, &dir))
		return false;
	return owner_trusted(dir.st_uid) && !(dir.st_mode & (S_IWGRP | S_IWOTH)) && owner_trusted(link->st_uid);
}

static int fail(int err, char *why, size_t why_size, const char *walked, const char *name, const char *cause)
{
	if (why_size)
		snprintf(why, why_size, "%s%s%s: %s", walked,
			 walked[0] && walked[strlen(walked) - 1] != '/' ? "/" : "", name,
			 cause ? cause : strerror(-err));
	return err;
}

static void append(char *walked, size_t size, const char *name)
{
	size_t len = strlen(walked);

	snprintf(walked + len, size - len, "%s%s", len && walked[len - 1] != '/' ? "/" : "", name);
}

/* Creates `name` in `dirfd` with exactly `mode`; -EEXIST when something took the name first. */
static int make_dir(int dirfd, const char *name, mode_t mode)
{
	int fd, err = 0;

	if (mkdirat(dirfd, name, mode))
		return -errno;
	/* mkdir applies the umask; an operator's umask 077 must not hide the control socket's directory. */
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fchmod(fd, mode))
		err = -errno;
	if (fd >= 0)
		close(fd);
	return err;
}

int crgw_fs_make_parents(const char *path, mode_t mode, char *why, size_t why_size)
{
	char todo[2 * PATH_MAX], next[2 * PATH_MAX], walked[2 * PATH_MAX], target[PATH_MAX];
	size_t len = strlen(path);
	unsigned links = 0;
	struct stat st;
	char *p = todo;
	int dirfd, err = 0;

	if (why_size)
		why[0] = '\0';
	while (len > 1 && path[len - 1] == '/')
		len--;
	while (len > 0 && path[len - 1] != '/')
		len--;
	if (len == 0)
		return 0; /* a bare name: its directory is the current one */
	if (len >= sizeof(todo))
		return fail(-ENAMETOOLONG, why, why_size, "", path, NULL);
	memcpy(todo, path, len);
	todo[len] = '\0';
	/* The usual case, and nothing about an existing directory is this function's business. */
	if (stat(todo, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;

	snprintf(walked, sizeof(walked), "%s", todo[0] == '/' ? "/" : "");
	dirfd = open(todo[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return fail(-errno, why, why_size, "", todo[0] == '/' ? "/" : ".", NULL);
	while (*p) {
		char *name, *slash;
		unsigned races = 0;
		int fd;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		name = p;
		slash = strchr(p, '/');
		if (slash) {
			*slash = '\0';
			p = slash + 1;
		} else {
			p += strlen(p);
		}
		if (!strcmp(name, "."))
			continue;
again:
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW)) {
			if (errno != ENOENT) {
				err = fail(-errno, why, why_size, walked, name, NULL);
				goto out;
			}
			err = make_dir(dirfd, name, mode);
			/* Someone else made it between the two calls: look again at what it is now. */
			if (err == -EEXIST && ++races < MAX_RACES)
				goto again;
			if (err) {
				err = fail(err, why, why_size, walked, name, NULL);
				goto out;
			}
			if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW)) {
				err = fail(-errno, why, why_size, walked, name, NULL);
				goto out;
			}
		}
		if (S_ISLNK(st.st_mode)) {
			ssize_t n;

			if (++links > MAX_LINKS) {
				err = fail(-ELOOP, why, why_size, walked, name, NULL);
				goto out;
			}
			if (!link_trusted(dirfd, &st)) {
				err = fail(-EPERM, why, why_size, walked, name, NOT_FOLLOWED);
				goto out;
			}
			n = readlinkat(dirfd, name, target, sizeof(target));
			if (n < 0 || (size_t)n >= sizeof(target)) {
				err = fail(n < 0 ? -errno : -ENAMETOOLONG, why, why_size, walked, name, NULL);
				goto out;
			}
			target[n] = '\0';
			/* The link's target takes its place in what is left to walk. */
			if ((size_t)snprintf(next, sizeof(next), "%s/%s", target, p) >= sizeof(next)) {
				err = fail(-ENAMETOOLONG, why, why_size, walked, name, NULL);
				goto out;
			}
			memcpy(todo, next, sizeof(todo));
			p = todo;
			if (target[0] == '/') {
				close(dirfd);
				dirfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
				if (dirfd < 0)
					return fail(-errno, why, why_size, "", "/", NULL);
				snprintf(walked, sizeof(walked), "/");
			}
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			err = fail(-ENOTDIR, why, why_size, walked, name, NULL);
			goto out;
		}
		/* O_NOFOLLOW and a second look: the name may have become a link since fstatat. */
		fd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) || !S_ISDIR(st.st_mode)) {
			err = fail(fd < 0 ? -errno : -ENOTDIR, why, why_size, walked, name, NULL);
			if (fd >= 0)
				close(fd);
			goto out;
		}
		close(dirfd);
		dirfd = fd;
		append(walked, sizeof(walked), name);
	}
out:
	close(dirfd);
	return err;
}
