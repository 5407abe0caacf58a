/* SPDX-License-Identifier: Apache-2.0 */
/* Sandbox disks: mke2fs on a reserved image, a loop device with autoclear, a mount without set-id or devices. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "disk.h"

extern char **environ;

/* The daemon's PATH may lack the sbin directories: the distribution's places, in order. */
static int find_mke2fs(char *prog, size_t len)
{
	static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin"};

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(prog, len, "%s/mke2fs", dirs[i]);
		if (access(prog, X_OK) == 0)
			return 0;
	}
	return -ENOENT;
}

/* mke2fs on `image`, its complaint (the first line that says anything) in `err` when it fails. */
static int make_fs(const char *image, uint64_t bytes, char *err, size_t errlen)
{
	char prog[64], size[32], out[512], sink[256];
	posix_spawn_file_actions_t fa;
	int pipefd[2], status, e;
	ssize_t n, got = 0;
	pid_t pid;

	if (find_mke2fs(prog, sizeof(prog))) {
		snprintf(err, errlen, "no mke2fs (package e2fsprogs)");
		return -ENOENT;
	}
	snprintf(size, sizeof(size), "%lluk", (unsigned long long)(bytes >> 10));
	/*
	 * No journal: the file system dies with its sandbox, a crash included, so there is nothing to replay.
	 * 4 KiB blocks whatever the size (mke2fs takes 1 KiB for a small one): the loop device's are 4 KiB.
	 * Lazy inode tables: the image is unwritten, so they read as zeros without being written.
	 */
	const char *argv[] = {prog,	      "-q",   "-F",
			      "-t",	      "ext4", "-O",
			      "^has_journal", "-b",   "4096",
			      "-m",	      "0",    "-L",
			      "crgw-sandbox", "-E",   "nodiscard,lazy_itable_init=1",
			      image,	      size,   NULL};

	if (pipe2(pipefd, O_CLOEXEC))
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
	e = posix_spawn(&pid, prog, &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	if (e) {
		close(pipefd[0]);
		snprintf(err, errlen, "%s: %s", prog, strerror(e));
		return -e;
	}
	/* Read to the end, keeping the start: mke2fs -q says little, and must never block on a full pipe. */
	for (;;) {
		bool room = got < (ssize_t)sizeof(out) - 1;

		n = read(pipefd[0], room ? out + got : sink, room ? sizeof(out) - 1 - (size_t)got : sizeof(sink));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (room)
			got += n;
	}
	out[got] = '\0';
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	out[strcspn(out, "\n")] = '\0';
	snprintf(err, errlen, "mke2fs failed: %s", out[0] ? out : "no message");
	return -EIO;
}

/*
 * A free loop device bound to `file_fd` that clears itself when its last user lets go. Returns its
 * descriptor (the caller's reference until the mount takes one) or -errno; its name in `dev`.
 */
static int loop_attach(int file_fd, char *dev, size_t devlen)
{
	struct loop_config cfg;
	int ctl, fd, e = -EBUSY;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return -errno;
	/* Another program may take the device we were offered before we configure it: ask again. */
	for (int attempt = 0; attempt < 16 && e == -EBUSY; attempt++) {
		int nr = ioctl(ctl, LOOP_CTL_GET_FREE);

		if (nr < 0) {
			e = -errno;
			break;
		}
		snprintf(dev, devlen, "/dev/loop%d", nr);
		fd = open(dev, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			e = -errno;
			break;
		}
		/*
		 * Direct I/O: the sandbox's pages are cached once, by its own file system, not a second time as
		 * the image's on the host's. A host file system without it gets the cached path.
		 */
		for (int dio = 1; dio >= 0; dio--) {
			memset(&cfg, 0, sizeof(cfg));
			cfg.fd = (unsigned)file_fd;
			cfg.block_size = 4096;
			cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | (dio ? LO_FLAGS_DIRECT_IO : 0);
			if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0) {
				close(ctl);
				return fd;
			}
			e = -errno;
			if (e != -EINVAL)
				break;
		}
		close(fd);
	}
	close(ctl);
	return e;
}

int crgw_disk_create(const char *image, const char *dir, uint64_t bytes, char *err, size_t errlen)
{
	char dev[32], lost[4200];
	int fd, loop, e;

	if (bytes < CRGW_DISK_MIN) {
		snprintf(err, errlen, "a disk of %llu bytes is below the smallest, %llu", (unsigned long long)bytes,
			 CRGW_DISK_MIN);
		return -EINVAL;
	}
	fd = open(image, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		e = -errno;
		snprintf(err, errlen, "%s: %s", image, strerror(errno));
		return e;
	}
	/*
	 * The whole size is reserved: a sparse image on a host file system that fills up would lose what the
	 * sandbox wrote without telling it (the loop device's writes fail long after the sandbox's did not).
	 * Unwritten extents: nothing is written, and what was never written reads as zeros.
	 */
	/*
	 * A size beyond the free space is refused before trying: a failed fallocate keeps what it took until
	 * the image goes, and would fill the host's file system for that moment.
	 */
	struct statvfs v;
	unsigned long long left = fstatvfs(fd, &v) ? ULLONG_MAX : (unsigned long long)v.f_bavail * v.f_frsize;

	e = bytes > left ? -ENOSPC : fallocate(fd, 0, 0, (off_t)bytes) ? -errno : 0;
	if (e == -ENOSPC) {
		snprintf(err, errlen,
			 "a disk of %llu MiB does not fit beside %s (%llu MiB free; a disk's space is reserved whole)",
			 (unsigned long long)(bytes >> 20), image, left == ULLONG_MAX ? 0 : left >> 20);
		goto fail;
	} else if (e == -EFBIG) {
		snprintf(err, errlen, "a disk of %llu MiB is larger than one file of the file system holding %s may be",
			 (unsigned long long)(bytes >> 20), image);
		goto fail;
	} else if (e) {
		snprintf(err, errlen, "reserving %llu MiB for %s: %s", (unsigned long long)(bytes >> 20), image,
			 strerror(-e));
		goto fail;
	}
	if ((e = make_fs(image, bytes, err, errlen)))
		goto fail;
	loop = loop_attach(fd, dev, sizeof(dev));
	if (loop < 0) {
		e = loop;
		snprintf(err, errlen, "no loop device for %s: %s", image, strerror(-e));
		goto fail;
	}
	/*
	 * noinit_itable: the tables read as zeros already; the kernel need not write them behind our back.
	 * No discard: a hole punched in the image would give its reserved space back. errors=remount-ro: a
	 * disk that fails (the host's device) stops taking writes, loudly, rather than going on without them.
	 */
	e = mount(dev, dir, "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME, "noinit_itable,errors=remount-ro") ? -errno : 0;
	close(loop);
	if (e) {
		snprintf(err, errlen, "mounting %s (ext4 on %s) on %s: %s", image, dev, dir, strerror(-e));
		goto fail;
	}
	snprintf(lost, sizeof(lost), "%s/lost+found", dir);
	rmdir(lost);
	if (chmod(dir, 0700)) {
		e = -errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		umount2(dir, MNT_DETACH);
		goto fail;
	}
	close(fd);
	return 0;
fail:
	close(fd);
	unlink(image);
	return e;
}

int crgw_disk_detach(const char *dir)
{
	if (umount2(dir, MNT_DETACH | UMOUNT_NOFOLLOW) == 0 || errno == EINVAL || errno == ENOENT)
		return 0;
	return -errno;
}

/* A mount point as /proc/self/mountinfo writes it: space, tab, newline and backslash as octal escapes. */
static void unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' &&
		    s[3] <= '7') {
			*w++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
}

int crgw_disk_detach_beneath(const char *parent, unsigned *count)
{
	size_t plen = strlen(parent), cap = 0, n = 0;
	char *line = NULL, **points = NULL;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int err = 0;

	*count = 0;
	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		char *mnt = NULL, *save = NULL, *tok = strtok_r(line, " ", &save);

		for (int field = 1; tok && field < 5; field++)
			tok = strtok_r(NULL, " ", &save);
		mnt = tok;
		if (!mnt)
			continue;
		unescape(mnt);
		if (strncmp(mnt, parent, plen) || mnt[plen] != '/')
			continue;
		char **grown = realloc(points, (n + 1) * sizeof(*points));

		if (!grown || !(grown[n] = strdup(mnt))) {
			points = grown ? grown : points;
			err = -ENOMEM;
			break;
		}
		points = grown;
		n++;
	}
	free(line);
	fclose(f);
	/* Deepest last in the table: detach from the end, so a mount goes before the one it sits on. */
	while (n-- > 0) {
		if (!err) {
			int e = crgw_disk_detach(points[n]);

			if (e)
				err = e;
			else
				(*count)++;
		}
		free(points[n]);
	}
	free(points);
	return err;
}

int crgw_disk_usage(const char *dir, uint64_t *used, uint64_t *left)
{
	struct statvfs v;

	if (statvfs(dir, &v))
		return -errno;
	*used = (uint64_t)(v.f_blocks - v.f_bfree) * v.f_frsize;
	*left = (uint64_t)v.f_bavail * v.f_frsize;
	return 0;
}

int crgw_disk_probe(const char *scratch_dir, uint64_t bytes, char *why, size_t whylen)
{
	char image[4200], dir[4200];
	int e;

	if (snprintf(image, sizeof(image), "%s/.disk-probe.ext4", scratch_dir) >= (int)sizeof(image) ||
	    snprintf(dir, sizeof(dir), "%s/.disk-probe", scratch_dir) >= (int)sizeof(dir)) {
		snprintf(why, whylen, "the path %s is too long", scratch_dir);
		return -ENAMETOOLONG;
	}
	/* A probe a crashed start left behind. */
	crgw_disk_detach(dir);
	unlink(image);
	if (mkdir(dir, 0700) && errno != EEXIST) {
		e = -errno;
		snprintf(why, whylen, "%s: %s", dir, strerror(errno));
		return e;
	}
	e = crgw_disk_create(image, dir, bytes, why, whylen);
	if (!e) {
		crgw_disk_detach(dir);
		unlink(image);
	}
	rmdir(dir);
	return e;
}
