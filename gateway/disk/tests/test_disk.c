/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcrgw-disk against the machine's loop devices and ext4: a disk is a mount point of its own size,
 * writing past it fails with ENOSPC while the host's image stays within it, detaching leaves no mount and
 * no loop device, a previous run's disks are found and detached, and every failure leaves nothing. Needs
 * root and /dev/loop-control.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "disk.h"
#include "tap.h"

static char top[64];

static bool mounted(const char *dir)
{
	char parent[4200];
	struct stat a, b;

	snprintf(parent, sizeof(parent), "%s/..", dir);
	return stat(dir, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

/* Whether a loop device is still bound to `image` (the kernel names its backing file in sysfs). */
static bool loop_bound(const char *image)
{
	DIR *d = opendir("/sys/block");
	struct dirent *e;
	bool found = false;

	while (d && !found && (e = readdir(d))) {
		char path[300], *text;
		size_t len;

		if (strncmp(e->d_name, "loop", 4))
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", e->d_name);
		if ((text = tap_read_file(path, &len))) {
			text[strcspn(text, "\n")] = '\0';
			/* An image removed while bound reads "(deleted)" after its name. */
			found = !strncmp(text, image, strlen(image));
			free(text);
		}
	}
	if (d)
		closedir(d);
	return found;
}

/* The autoclear may finish a moment after the unmount: wait up to two seconds. */
static bool loop_released(const char *image)
{
	for (int i = 0; i < 200; i++) {
		if (!loop_bound(image))
			return true;
		nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
	}
	return false;
}

static void fill_to_enospc(const char *dir)
{
	char path[4200], *block = calloc(1, 1 << 20);
	unsigned long long written = 0;
	int fd, err = 0, e;
	uint64_t used = 0, left = 0, size = 0;
	struct stat st;

	snprintf(path, sizeof(path), "%s/fill", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	/* At most 100 MiB into a 64 MiB disk. */
	for (int i = 0; fd >= 0 && block && i < 100; i++) {
		ssize_t n = write(fd, block, 1 << 20);

		if (n < 0) {
			err = errno;
			break;
		}
		written += (unsigned long long)n;
	}
	if (fd >= 0 && !err && fsync(fd))
		err = errno;
	tap_result(err == ENOSPC, "writing 100 MiB into a 64 MiB disk fails with ENOSPC (errno %d, %llu MiB written)",
		   err, written >> 20);
	struct statvfs v;

	e = crgw_disk_usage(dir, &used, &left);
	if (statvfs(dir, &v) == 0)
		size = (uint64_t)v.f_blocks * v.f_frsize;
	tap_result(e == 0 && size <= CRGW_DISK_MIN && used <= size && used > size / 2 && left < (1 << 20),
		   "the usage says the disk is full: %llu of %llu bytes, %llu left", (unsigned long long)used,
		   (unsigned long long)size, (unsigned long long)left);
	snprintf(path, sizeof(path), "%s.ext4", dir);
	e = stat(path, &st);
	tap_result(e == 0 && (unsigned long long)st.st_blocks * 512 <= CRGW_DISK_MIN + (1 << 20),
		   "the host's image takes the disk's size and no more (%llu bytes)",
		   (unsigned long long)st.st_blocks * 512);
	if (fd >= 0)
		close(fd);
	free(block);
}

int main(void)
{
	char dir[200], image[220], err[512] = "", parent[240];
	struct stat st;
	unsigned count = 0;
	int e;

	if (geteuid() != 0 || access("/dev/loop-control", R_OK | W_OK)) {
		printf("1..0 # SKIP needs root and /dev/loop-control\n");
		return 0;
	}
	snprintf(top, sizeof(top), "/tmp/crgw-disk-test.XXXXXX");
	if (!mkdtemp(top)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	e = crgw_disk_probe(top, CRGW_DISK_MIN, err, sizeof(err));
	tap_result(e == 0, "the probe makes, mounts and removes a disk (%s)", err);
	snprintf(image, sizeof(image), "%s/.disk-probe.ext4", top);
	tap_result(access(image, F_OK) != 0 && loop_released(image),
		   "the probe leaves neither its image nor a loop device");

	snprintf(dir, sizeof(dir), "%s/sb", top);
	snprintf(image, sizeof(image), "%s/sb.ext4", top);
	mkdir(dir, 0700);
	e = crgw_disk_create(image, dir, CRGW_DISK_MIN, err, sizeof(err));
	tap_result(e == 0, "a 64 MiB disk is made and mounted (%s)", e ? err : "");
	tap_result(mounted(dir), "the directory is a mount point of its own");
	e = stat(dir, &st);
	tap_result(e == 0 && (st.st_mode & 07777) == 0700 && st.st_uid == 0, "its top is root's, mode 0700 (%o)",
		   st.st_mode & 07777);
	snprintf(parent, sizeof(parent), "%s/lost+found", dir);
	tap_result(access(parent, F_OK) != 0, "it has no lost+found");
	tap_result(loop_bound(image), "a loop device holds the image");
	e = stat(image, &st);
	tap_result(e == 0 && (unsigned long long)st.st_blocks * 512 >= CRGW_DISK_MIN,
		   "its space is reserved on the host before a byte is written (%llu bytes)",
		   (unsigned long long)st.st_blocks * 512);
	fill_to_enospc(dir);
	tap_result(crgw_disk_create(image, dir, CRGW_DISK_MIN, err, sizeof(err)) == -EEXIST,
		   "a second disk over an existing image is refused: %s", err);
	tap_result(crgw_disk_detach(dir) == 0 && !mounted(dir), "detaching leaves the directory unmounted");
	tap_result(loop_released(image), "the loop device goes with the last mount");
	tap_result(crgw_disk_detach(dir) == 0, "detaching an unmounted directory is no error");
	unlink(image);
	rmdir(dir);

	e = crgw_disk_create(image, dir, CRGW_DISK_MIN, err, sizeof(err));
	tap_result(e == -ENOENT && access(image, F_OK) != 0 && loop_released(image),
		   "a missing mount point fails (%s) and leaves no image and no loop device", err);
	e = crgw_disk_create(image, top, CRGW_DISK_MIN - 4096, err, sizeof(err));
	tap_result(e == -EINVAL && access(image, F_OK) != 0, "a disk below 64 MiB is refused: %s", err);

	/* A host file system without room for the whole disk: refused now, never found short later. */
	snprintf(parent, sizeof(parent), "%s/small", top);
	mkdir(parent, 0700);
	if (mount("tmpfs", parent, "tmpfs", 0, "size=32m") == 0) {
		snprintf(dir, sizeof(dir), "%s/small/sb", top);
		snprintf(image, sizeof(image), "%s/small/sb.ext4", top);
		mkdir(dir, 0700);
		e = crgw_disk_create(image, dir, CRGW_DISK_MIN, err, sizeof(err));
		tap_result(e == -ENOSPC && strstr(err, "does not fit") && access(image, F_OK) != 0 && !mounted(dir),
			   "a disk larger than the host's free space is refused and leaves nothing: %s", err);
		e = crgw_disk_probe(parent, CRGW_DISK_MIN, err, sizeof(err));
		tap_result(e == -ENOSPC, "and the probe of that size says so: %s", err);
		rmdir(dir);
		umount2(parent, MNT_DETACH);
	} else {
		tap_result(false, "mounting a 32 MiB tmpfs for the test: %s", strerror(errno));
	}
	rmdir(parent);
	/* Larger than one file may be (RLIMIT_FSIZE stands in for the file system's own limit). */
	{
		struct rlimit old, small;

		snprintf(dir, sizeof(dir), "%s/sb", top);
		snprintf(image, sizeof(image), "%s/sb.ext4", top);
		mkdir(dir, 0700);
		signal(SIGXFSZ, SIG_IGN);
		getrlimit(RLIMIT_FSIZE, &old);
		small = (struct rlimit){16 << 20, old.rlim_max}; /* the soft limit only: it can be put back */
		setrlimit(RLIMIT_FSIZE, &small);
		e = crgw_disk_create(image, dir, CRGW_DISK_MIN, err, sizeof(err));
		setrlimit(RLIMIT_FSIZE, &old);
		tap_result(e == -EFBIG && strstr(err, "larger than one file") && access(image, F_OK) != 0,
			   "a disk larger than one file may be is refused and leaves nothing: %s", err);
		rmdir(dir);
	}

	/* A previous run's disks, found by their place. */
	snprintf(parent, sizeof(parent), "%s/run", top);
	mkdir(parent, 0700);
	for (int i = 0; i < 2; i++) {
		snprintf(dir, sizeof(dir), "%s/run/sb %d", top, i);
		snprintf(image, sizeof(image), "%s/run/sb %d.ext4", top, i);
		mkdir(dir, 0700);
		e = crgw_disk_create(image, dir, CRGW_DISK_MIN, err, sizeof(err));
		tap_result(e == 0, "disk %d beneath a parent (its name has a space) (%s)", i, e ? err : "");
	}
	e = crgw_disk_detach_beneath(parent, &count);
	tap_result(e == 0 && count == 2, "detach_beneath finds and detaches both (%d, %u)", e, count);
	for (int i = 0; i < 2; i++) {
		snprintf(dir, sizeof(dir), "%s/run/sb %d", top, i);
		snprintf(image, sizeof(image), "%s/run/sb %d.ext4", top, i);
		tap_result(!mounted(dir) && loop_released(image), "disk %d: no mount, no loop device", i);
		unlink(image);
		rmdir(dir);
	}
	e = crgw_disk_detach_beneath(parent, &count);
	tap_result(e == 0 && count == 0, "nothing more beneath it (%u)", count);
	rmdir(parent);
	tap_result(rmdir(top) == 0, "nothing is left in the test's directory");
	/* After a failed case, whatever it left: its disks first, then the files. */
	if (access(top, F_OK) == 0) {
		char cmd[128];

		crgw_disk_detach_beneath(top, &count);
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", top);
	}
	return tap_done();
}
