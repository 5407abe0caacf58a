/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sandbox's file system view, built inside its mount namespace and made its root: a small tmpfs top
 * holding the host's top-level directories bound read-only (the sandbox sees the host as an unprivileged
 * user would), private writable /tmp, /var/tmp, /run and /dev/shm, a /proc of its own PID namespace, a
 * minimal /dev with a pty instance of its own, a private home, /workspace, and resolv.conf and hosts files
 * that name the gateway. Nothing of the host's mount tree stays beneath it: unmounting anything inside
 * uncovers an empty directory, never a host one.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vm_priv.h"

/*
 * The new root is built in the sandbox's data directory ("root"), a mount made unbindable, so that the
 * recursive bind of the host directory holding it (/var) does not copy the root into itself.
 */
static char stage[3072];

/* stage + suffix, in a static buffer per call site's slot. */
static const char *at(const char *suffix)
{
	static char bufs[4][PATH_MAX];
	static unsigned next;
	char *b = bufs[next++ % 4];

	snprintf(b, PATH_MAX, "%s%s", stage, suffix);
	return b;
}

__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t errlen, int e, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	n = strlen(err);
	snprintf(err + n, errlen - n, ": %s", strerror(-e));
	return e;
}

/* Top-level host entries the sandbox does not get: replaced by its own, or not content at all. */
static bool skipped(const char *name)
{
	static const char *const names[] = { "proc", "dev", "tmp", "run", "root", "workspace", "lost+found", NULL };

	for (unsigned i = 0; names[i]; i++)
		if (!strcmp(name, names[i]))
			return true;
	return name[0] == '.';
}

/* Binds the host's `src` at `dst` with everything mounted beneath it, read-only, without set-id or devices. */
static int bind_ro(const char *src, const char *dst, bool allow_dev)
{
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | (allow_dev ? 0 : MOUNT_ATTR_NODEV) };

	if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL))
		return -errno;
	if (syscall(SYS_mount_setattr, AT_FDCWD, dst, AT_RECURSIVE, &attr, sizeof(attr)))
		return -errno;
	return 0;
}

static int tmpfs(const char *dst, const char *opts, unsigned long flags)
{
	return mount("tmpfs", dst, "tmpfs", MS_NOSUID | flags, opts) ? -errno : 0;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	size_t len = strlen(text);
	int err = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len)
		err = -EIO;
	if (close(fd) && !err)
		err = -errno;
	return err;
}

/*
 * Binds the file `src` over `dst`. A mount point must exist: an empty file is made in a tmpfs, and the
 * host's file serves under a read-only bind. A host's /etc/resolv.conf is often a link into /run, which is
 * the sandbox's own here: the new mount API mounts over the link itself instead of following it.
 */
static int bind_file(const char *src, const char *dst)
{
	struct stat st;
	int fd, tree, err = 0;

	if (lstat(dst, &st)) {
		fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd < 0)
			return -errno;
		close(fd);
	}
	tree = (int)syscall(SYS_open_tree, AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (tree < 0)
		return -errno;
	if (syscall(SYS_move_mount, tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH))
		err = -errno;
	close(tree);
	return err;
}

/* The host's top-level directories, each bound read-only; its top-level links recreated as they are. */
static int bind_host_tree(char *err, size_t errlen)
{
	DIR *d = opendir("/");
	struct dirent *e;
	int rc = 0;

	if (!d)
		return fail(err, errlen, -errno, "reading the host's /");
	while (!rc && (e = readdir(d))) {
		char src[PATH_MAX], dst[PATH_MAX];
		struct stat st;

		if (skipped(e->d_name))
			continue;
		snprintf(src, sizeof(src), "/%s", e->d_name);
		snprintf(dst, sizeof(dst), "%s/%s", stage, e->d_name);
		if (lstat(src, &st))
			continue;
		if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX];
			ssize_t n = readlink(src, target, sizeof(target) - 1);

			if (n > 0) {
				target[n] = '\0';
				if (symlink(target, dst))
					rc = fail(err, errlen, -errno, "linking %s", dst);
			}
			continue;
		}
		if (!S_ISDIR(st.st_mode))
			continue;
		if (mkdir(dst, 0755) && errno != EEXIST) {
			rc = fail(err, errlen, -errno, "mkdir %s", dst);
			break;
		}
		rc = bind_ro(src, dst, false);
		if (rc)
			rc = fail(err, errlen, rc, "binding the host's %s", src);
	}
	closedir(d);
	return rc;
}

/* A /dev of the usual character devices (bound from the host's), its own ptys and shared memory. */
static int build_dev(char *err, size_t errlen)
{
	static const char *const nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };
	static const char *const links[][2] = { { "fd", "/proc/self/fd" }, { "stdin", "/proc/self/fd/0" },
						{ "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" },
						{ "ptmx", "pts/ptmx" }, { "core", "/proc/kcore" } };
	int rc;

	if (mkdir(at("/dev"), 0755) && errno != EEXIST)
		return fail(err, errlen, -errno, "mkdir /dev");
	if ((rc = tmpfs(at("/dev"), "mode=0755,size=64k,nr_inodes=64", MS_NOEXEC)))
		return fail(err, errlen, rc, "mounting /dev");
	for (unsigned i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		char src[64], dst[PATH_MAX];

		snprintf(src, sizeof(src), "/dev/%s", nodes[i]);
		snprintf(dst, sizeof(dst), "%s/dev/%s", stage, nodes[i]);
		if ((rc = bind_file(src, dst)))
			return fail(err, errlen, rc, "binding %s", src);
	}
	for (unsigned i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
		char dst[PATH_MAX];

		if (!strcmp(links[i][0], "core"))
			continue;
		snprintf(dst, sizeof(dst), "%s/dev/%s", stage, links[i][0]);
		if (symlink(links[i][1], dst))
			return fail(err, errlen, -errno, "linking %s", dst);
	}
	if (mkdir(at("/dev/pts"), 0755) || mkdir(at("/dev/shm"), 01777))
		return fail(err, errlen, -errno, "mkdir in /dev");
	/* A pty instance of its own: the sandbox never sees the host's terminals. */
	if (mount("devpts", at("/dev/pts"), "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"))
		return fail(err, errlen, -errno, "mounting /dev/pts");
	if ((rc = tmpfs(at("/dev/shm"), "mode=1777,size=256m", MS_NODEV)))
		return fail(err, errlen, rc, "mounting /dev/shm");
	return 0;
}

/* The gateway is the only resolver; the sandbox's own name resolves to its own address. */
static int write_etc(const struct rootfs_spec *spec, char *resolv, char *hosts, size_t size)
{
	char text[512];
	int rc;

	snprintf(resolv, size, "%s/resolv.conf", spec->data_dir);
	snprintf(hosts, size, "%s/hosts", spec->data_dir);
	snprintf(text, sizeof(text),
		 "# written by crgw: the sandbox's only resolver is its gateway\nnameserver %s\n"
		 "options edns0 attempts:2 timeout:2\n", spec->gateway);
	if ((rc = write_file(resolv, text)))
		return rc;
	snprintf(text, sizeof(text), "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n",
		 spec->guest, spec->hostname);
	return write_file(hosts, text);
}

int rootfs_build(const struct rootfs_spec *spec, char *err, size_t errlen)
{
	char resolv[PATH_MAX], hosts[PATH_MAX], home[PATH_MAX];
	int rc = 0;

	if (snprintf(stage, sizeof(stage), "%s/root", spec->data_dir) >= (int)sizeof(stage))
		return fail(err, errlen, -ENAMETOOLONG, "%s", spec->data_dir);
	/* Nothing made here may reach the host's mount tree, and nothing of the host's may arrive later. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return fail(err, errlen, -errno, "making the sandbox's mounts private");
	if ((mkdir(stage, 0755) && errno != EEXIST) || (rc = tmpfs(stage, "mode=0755,size=1m,nr_inodes=4096", MS_NODEV)) ||
	    mount(NULL, stage, NULL, MS_UNBINDABLE, NULL))
		return fail(err, errlen, rc ? rc : -errno, "mounting the sandbox's root");
	if ((rc = bind_host_tree(err, errlen)))
		return rc;
	if (mkdir(at("/proc"), 0555) || mount("proc", at("/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		return fail(err, errlen, -errno, "mounting /proc");
	if ((rc = build_dev(err, errlen)))
		return rc;
	/* Private writable places, as a user expects them; their pages count against the sandbox's memory. */
	if (mkdir(at("/tmp"), 01777) || (rc = tmpfs(at("/tmp"), "mode=1777,size=1g", MS_NODEV)))
		return fail(err, errlen, rc ? rc : -errno, "mounting /tmp");
	if (mkdir(at("/run"), 0755) || (rc = tmpfs(at("/run"), "mode=0755,size=64m", MS_NODEV)))
		return fail(err, errlen, rc ? rc : -errno, "mounting /run");
	if (access(at("/var/tmp"), F_OK) == 0 && (rc = tmpfs(at("/var/tmp"), "mode=1777,size=1g", MS_NODEV)))
		return fail(err, errlen, rc, "mounting /var/tmp");
	/* A home of its own on disk, in its data directory: package caches fit, and go with the sandbox. */
	snprintf(home, sizeof(home), "%s/home", spec->data_dir);
	if ((mkdir(home, 0700) && errno != EEXIST) || chown(home, SANDBOX_UID_BASE, SANDBOX_UID_BASE) ||
	    mkdir(at("/root"), 0700) || mount(home, at("/root"), NULL, MS_BIND, NULL) ||
	    mount(NULL, at("/root"), NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, NULL))
		return fail(err, errlen, -errno, "mounting the home directory");
	if (spec->workspace->mode != CRGW_WS_NONE) {
		char lower[PATH_MAX];

		snprintf(lower, sizeof(lower), "%s/lower", spec->data_dir);
		if (mkdir(at("/workspace"), 0755) || (mkdir(lower, 0700) && errno != EEXIST))
			return fail(err, errlen, -errno, "mkdir /workspace");
		if ((rc = workspace_attach(spec->workspace, at("/workspace"), lower, spec->data_dir, err, errlen)))
			return rc;
		rmdir(lower);
	}
	if ((rc = write_etc(spec, resolv, hosts, sizeof(resolv))))
		return fail(err, errlen, rc, "writing resolv.conf and hosts in %s", spec->data_dir);
	if (access(at("/etc"), F_OK) == 0 &&
	    ((rc = bind_file(resolv, at("/etc/resolv.conf"))) || (rc = bind_file(hosts, at("/etc/hosts")))))
		return fail(err, errlen, rc, "binding resolv.conf and hosts");
	if (sethostname(spec->hostname, strlen(spec->hostname)))
		return fail(err, errlen, -errno, "setting the host name");
	/* The top itself read-only: the sandbox makes files where a user could, not beside /usr. */
	if (mount(NULL, stage, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL))
		return fail(err, errlen, -errno, "making the sandbox's root read-only");
	/*
	 * pivot_root(".", ".") stacks the old root under the new one, and the lazy unmount takes it away
	 * whole, locked mounts and all: the lock moves to the new root with the pivot.
	 */
	if (chdir(stage) || syscall(SYS_pivot_root, ".", ".") || umount2(".", MNT_DETACH) || chdir("/"))
		return fail(err, errlen, -errno, "entering the sandbox's root");
	return 0;
}
