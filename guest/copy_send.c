/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The reading side of crgw-ctl cp's stream (crgw/copy_stream.h): shared by the netns backend's reader,
 * which runs in the sandbox's namespaces, and crgw-guest --copy-out, which runs in a VM.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crgw/copy_stream.h"

int crgw_copy_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_rec(int out, int type, mode_t mode, const char *path, const char *link, uint64_t size)
{
	struct rec r = {.type = (uint8_t)type,
			.mode = mode & 0777,
			.path_len = (uint32_t)strlen(path),
			.link_len = link ? (uint32_t)strlen(link) : 0,
			.size = size};
	int e = crgw_copy_write_all(out, &r, sizeof(r));

	if (!e)
		e = crgw_copy_write_all(out, path, r.path_len);
	if (!e && link)
		e = crgw_copy_write_all(out, link, r.link_len);
	return e;
}

static void send_error(int out, const char *fmt, const char *what, int e)
{
	char msg[600];

	snprintf(msg, sizeof(msg), fmt, what, strerror(e));
	send_rec(out, REC_ERROR, 0, msg, NULL, 0);
}

/* Streams the open entry `fd` (taken) at relative `path` and, for a directory, everything beneath it. */
static int send_tree(int out, int fd, const char *path, unsigned depth)
{
	struct stat st;
	int e = 0;

	if (fstat(fd, &st)) {
		e = -errno;
		close(fd);
		return e;
	}
	if (S_ISREG(st.st_mode)) {
		char buf[65536];
		uint64_t left = (uint64_t)st.st_size;

		e = send_rec(out, REC_FILE, st.st_mode, path, NULL, left);
		/* The size was promised: a file that shrinks meanwhile is padded, one that grows is cut. */
		while (!e && left) {
			ssize_t n = read(fd, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf));

			if (n <= 0) {
				memset(buf, 0, sizeof(buf));
				n = (ssize_t)(left < sizeof(buf) ? left : sizeof(buf));
			}
			e = crgw_copy_write_all(out, buf, (size_t)n);
			left -= (uint64_t)n;
		}
		close(fd);
		return e;
	}
	if (!S_ISDIR(st.st_mode)) {
		close(fd);
		return 0; /* devices, FIFOs and sockets are not content */
	}
	DIR *d = fdopendir(fd);
	struct dirent *ent;

	if (!d) {
		e = -errno;
		close(fd);
		return e;
	}
	e = send_rec(out, REC_DIR, st.st_mode, path, NULL, 0);
	while (!e && depth < 256 && (ent = readdir(d))) {
		char sub[COPY_PATH_MAX];
		struct stat lst;

		if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, ".."))
			continue;
		if (snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "/" : "", ent->d_name) >= (int)sizeof(sub))
			continue;
		if (fstatat(dirfd(d), ent->d_name, &lst, AT_SYMLINK_NOFOLLOW))
			continue;
		if (S_ISLNK(lst.st_mode)) {
			char target[COPY_PATH_MAX];
			ssize_t n = readlinkat(dirfd(d), ent->d_name, target, sizeof(target) - 1);

			if (n >= 0) {
				target[n] = '\0';
				e = send_rec(out, REC_LINK, 0777, sub, target, 0);
			}
			continue;
		}
		int sfd = openat(dirfd(d), ent->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);

		if (sfd >= 0)
			e = send_tree(out, sfd, sub, depth + 1);
	}
	closedir(d);
	return e;
}
void crgw_copy_send_error(int out, const char *msg)
{
	send_rec(out, REC_ERROR, 0, msg, NULL, 0);
}

int crgw_copy_send(int out, const char *path)
{
	struct stat st;
	int fd, e;

	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		e = -errno;
		send_error(out, "%s in the sandbox: %s", path, errno);
		return e;
	}
	if (fstat(fd, &st)) {
		e = -errno;
		close(fd);
		send_error(out, "%s in the sandbox: %s", path, -e);
		return e;
	}
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
		char msg[600];

		close(fd);
		/* As inside a tree, where such entries are skipped: only files, directories and links are copied. */
		snprintf(msg, sizeof(msg),
			 "%s in the sandbox: not a file or directory (devices, FIFOs and sockets are not copied)",
			 path);
		crgw_copy_send_error(out, msg);
		return -EINVAL;
	}
	e = send_tree(out, fd, "", 0);
	return e ? e : send_rec(out, REC_END, 0, "", NULL, 0);
}
