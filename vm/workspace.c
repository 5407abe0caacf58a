/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Workspaces: the host directory a sandbox sees at /workspace, as an idmapped mount (rw, ro) or as the
 * lower layer of an overlay whose changes stay in the sandbox's data directory (copy); what a copy-mode
 * sandbox changed; and copying files out of a sandbox without following its links.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "vm_priv.h"

static const char *const mode_names[] = { "copy", "rw", "ro", "none" };

int crgw_workspace_mode_parse(const char *text, enum crgw_workspace_mode *out)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(text, mode_names[i])) {
			*out = (enum crgw_workspace_mode)i;
			return 0;
		}
	return -EINVAL;
}

const char *crgw_workspace_mode_name(enum crgw_workspace_mode mode)
{
	return (unsigned)mode < 4 ? mode_names[mode] : "none";
}

/*
 * A user namespace whose only mapping is on-disk `from` ↔ host `to` (uid and gid alike), for
 * mount_setattr(MOUNT_ATTR_IDMAP). Made by a child that unshares and waits; we write its maps and keep a
 * descriptor of its namespace. Returns the descriptor or -errno.
 */
static int idmap_userns(uid_t uid, gid_t gid, unsigned to)
{
	int ready[2], hold[2], fd = -1, err = 0;
	char path[64], map[64];
	pid_t pid;

	if (pipe2(ready, O_CLOEXEC))
		return -errno;
	if (pipe2(hold, O_CLOEXEC)) {
		err = -errno;
		close(ready[0]);
		close(ready[1]);
		return err;
	}
	pid = fork();
	if (pid == 0) {
		char c = unshare(CLONE_NEWUSER) == 0 ? 'y' : 'n';

		if (write(ready[1], &c, 1) != 1)
			_exit(1);
		/* Wait until the parent has what it needs (our end of `hold` closes when it is done). */
		close(hold[1]);
		if (read(hold[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(ready[1]);
	close(hold[0]);
	if (pid < 0) {
		err = -errno;
		goto out;
	}
	char c = 'n';

	if (read(ready[0], &c, 1) != 1 || c != 'y') {
		err = -EPERM;
		goto out;
	}
	for (int i = 0; i < 2 && !err; i++) {
		int mfd, n = snprintf(map, sizeof(map), "%u %u 1\n", i ? (unsigned)gid : (unsigned)uid, to);

		snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, i ? "gid_map" : "uid_map");
		mfd = open(path, O_WRONLY | O_CLOEXEC);
		if (mfd < 0 || write(mfd, map, (size_t)n) != n)
			err = -errno;
		if (mfd >= 0)
			close(mfd);
	}
	if (!err) {
		snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			err = -errno;
	}
out:
	close(hold[1]);
	close(ready[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return err ? err : fd;
}

int workspace_prepare(struct workspace *ws, enum crgw_workspace_mode mode, const char *dir, char *err,
		      size_t errlen)
{
	struct stat st;
	int dfd, ufd, e;

	memset(ws, 0, sizeof(*ws));
	ws->mode = mode;
	ws->tree_fd = -1;
	if (mode == CRGW_WS_NONE)
		return 0;
	if (!realpath(dir, ws->dir)) {
		e = -errno;
		snprintf(err, errlen, "workspace %s: %s", dir, strerror(errno));
		return e;
	}
	dfd = open(ws->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fstat(dfd, &st)) {
		e = -errno;
		snprintf(err, errlen, "workspace %s: %s", ws->dir, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return e;
	}
	close(dfd);
	if (!strcmp(ws->dir, "/") && mode != CRGW_WS_RO) {
		snprintf(err, errlen, "workspace /: the host's root cannot be a writable workspace (use ro, or a project directory)");
		return -EINVAL;
	}
	ws->owner = st.st_uid;
	ws->group = st.st_gid;
	ws->dir_mode = st.st_mode & 07777;
	/*
	 * The directory's owner appears inside as the sandbox's root: it may change its own files, and what it
	 * creates through the mount belongs on the host to that owner, never to the sandbox's host user. Files
	 * of anyone else show as nobody's and stay read-only to it.
	 */
	ufd = idmap_userns(st.st_uid, st.st_gid, SANDBOX_UID_BASE);
	if (ufd < 0) {
		snprintf(err, errlen, "workspace %s: cannot make a user namespace for the idmapped mount: %s", ws->dir,
			 strerror(-ufd));
		return ufd;
	}
	ws->tree_fd = (int)syscall(SYS_open_tree, AT_FDCWD, ws->dir, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (ws->tree_fd < 0) {
		e = -errno;
		close(ufd);
		snprintf(err, errlen, "workspace %s: open_tree: %s (mode %s needs Linux 5.12 or later)", ws->dir,
			 strerror(errno), mode_names[mode]);
		return e;
	}
	struct mount_attr attr = {
		.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (mode == CRGW_WS_RO ? MOUNT_ATTR_RDONLY : 0),
		.userns_fd = (unsigned)ufd,
	};

	if (syscall(SYS_mount_setattr, ws->tree_fd, "", AT_EMPTY_PATH, &attr, sizeof(attr))) {
		e = -errno;
		close(ufd);
		close(ws->tree_fd);
		ws->tree_fd = -1;
		/* Never a fallback to chown: the host's files would change owner. */
		snprintf(err, errlen,
			 "workspace %s: mode %s needs an idmapped mount, which this kernel or file system refuses (%s); "
			 "use --workspace-mode none, or a directory on a file system with idmapped mounts (Linux 5.12+: "
			 "ext4, xfs, btrfs, tmpfs 6.3+)",
			 ws->dir, mode_names[mode], strerror(-e));
		return e;
	}
	close(ufd);
	return 0;
}

void workspace_close(struct workspace *ws)
{
	if (ws->tree_fd >= 0)
		close(ws->tree_fd);
	ws->tree_fd = -1;
}

int workspace_attach(const struct workspace *ws, const char *target, const char *stage, const char *data_dir,
		     char *err, size_t errlen)
{
	char upper[PATH_MAX], work[PATH_MAX], opts[3 * PATH_MAX + 64];
	int e;

	if (ws->mode == CRGW_WS_NONE)
		return 0;
	if (ws->mode != CRGW_WS_COPY) {
		if (syscall(SYS_move_mount, ws->tree_fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)) {
			e = -errno;
			snprintf(err, errlen, "mounting the workspace at %s: %s", target, strerror(errno));
			return e;
		}
		return 0;
	}
	/* copy: the idmapped tree is the lower layer; the changes go to the sandbox's data directory. */
	if (snprintf(upper, sizeof(upper), "%s/upper", data_dir) >= (int)sizeof(upper) ||
	    snprintf(work, sizeof(work), "%s/work", data_dir) >= (int)sizeof(work)) {
		snprintf(err, errlen, "%s: path too long", data_dir);
		return -ENAMETOOLONG;
	}
	/* The overlay's top takes the upper directory's owner and mode: the sandbox's root owns /workspace. */
	if ((mkdir(upper, 0755) && errno != EEXIST) || chown(upper, SANDBOX_UID_BASE, SANDBOX_UID_BASE) ||
	    chmod(upper, ws->dir_mode & 0777) || (mkdir(work, 0700) && errno != EEXIST)) {
		e = -errno;
		snprintf(err, errlen, "preparing the workspace's change layer in %s: %s", data_dir, strerror(errno));
		return e;
	}
	if (syscall(SYS_move_mount, ws->tree_fd, "", AT_FDCWD, stage, MOVE_MOUNT_F_EMPTY_PATH)) {
		e = -errno;
		snprintf(err, errlen, "staging the workspace: %s", strerror(errno));
		return e;
	}
	snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", stage, upper, work);
	e = mount("overlay", target, "overlay", MS_NOSUID | MS_NODEV, opts) ? -errno : 0;
	if (e) {
		snprintf(err, errlen, "mounting the copy-on-write workspace (lower %s, changes in %s): %s%s", ws->dir,
			 data_dir, strerror(-e),
			 e == -ELOOP || e == -EBUSY ? " (is the gateway's data directory inside the workspace?)" : "");
	}
	/* The overlay holds its own reference to the lower layer: the staging mount can go either way. */
	umount2(stage, MNT_DETACH);
	return e;
}

/* ---- sandbox diff ----------------------------------------------------------------------------- */

/* Paths a reviewer must see before trusting a change: where code runs without being asked. */
static const char *review_reason(const char *rel)
{
	if (!strncmp(rel, ".git/hooks", 10))
		return "git hook: runs on git commands";
	if (!strcmp(rel, ".git/config") || !strncmp(rel, ".git/config", 11))
		return "git configuration: can run commands (core.fsmonitor, aliases, filters)";
	if (!strncmp(rel, ".git/", 5) && (!strncmp(rel + 5, "info/attributes", 15)))
		return "git attributes: filters and diff drivers";
	if (!strncmp(rel, ".github/workflows", 17) || !strncmp(rel, ".gitlab-ci", 10) || !strncmp(rel, ".buildkite", 10) ||
	    !strncmp(rel, ".circleci", 9) || !strcmp(rel, "Jenkinsfile") || !strcmp(rel, ".travis.yml") ||
	    !strcmp(rel, "azure-pipelines.yml") || !strncmp(rel, ".drone", 6))
		return "CI configuration";
	if (!strcmp(rel, "cleanroom.yaml"))
		return "the sandbox policy";
	for (const char *p = rel; p; p = strchr(p, '/') ? strchr(p, '/') + 1 : NULL)
		if (*p == '.' && strncmp(p, ".git/", 5) && strcmp(p, ".git"))
			return "dotfile";
	return NULL;
}

struct diff_walk {
	void (*cb)(void *arg, const struct crgw_change *change);
	void *arg;
	int lower_root; /* O_PATH of the host directory, or -1 */
	char rel[PATH_MAX];
};

/* True when `rel` exists in the lower layer (never following a link on the way). */
static bool in_lower(const struct diff_walk *w, const char *rel, struct stat *st)
{
	struct open_how how = { .flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
	int fd;
	bool ok;

	if (w->lower_root < 0)
		return false;
	fd = (int)syscall(SYS_openat2, w->lower_root, rel, &how, sizeof(how));
	if (fd < 0)
		return false;
	ok = fstat(fd, st) == 0;
	close(fd);
	return ok;
}

static void report(struct diff_walk *w, enum crgw_change_kind kind, bool is_dir)
{
	char path[PATH_MAX + 2];
	const char *why;
	struct crgw_change c;

	snprintf(path, sizeof(path), "%s%s", w->rel, is_dir ? "/" : "");
	why = review_reason(w->rel);
	c = (struct crgw_change){ .kind = kind, .path = path, .review = why != NULL, .why = why };
	w->cb(w->arg, &c);
}

/* Every entry of the lower directory `rel` is gone: an opaque directory hides them all. */
static void report_lower_deleted(struct diff_walk *w, int upper_dir)
{
	struct open_how how = { .flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
	int fd = (int)syscall(SYS_openat2, w->lower_root, w->rel[0] ? w->rel : ".", &how, sizeof(how));
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	size_t len = strlen(w->rel);

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d))) {
		struct stat st;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		/* Still there in the upper layer: reported as changed by the caller. */
		if (fstatat(upper_dir, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			continue;
		snprintf(w->rel + len, sizeof(w->rel) - len, "%s%s", len ? "/" : "", e->d_name);
		report(w, CRGW_CHANGE_DELETED, e->d_type == DT_DIR);
		w->rel[len] = '\0';
	}
	closedir(d);
}

static int names_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int walk_upper(struct diff_walk *w, int fd, unsigned depth)
{
	DIR *d = fdopendir(fd);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0, len = strlen(w->rel);
	int err = 0;

	if (!d) {
		close(fd);
		return -errno;
	}
	/* An opaque directory replaced the lower one whole: what was below is deleted. */
	char opaque[4];

	if (fgetxattr(fd, "trusted.overlay.opaque", opaque, sizeof(opaque)) > 0 && opaque[0] == 'y' && len)
		report_lower_deleted(w, fd);
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (n == cap) {
			char **nn = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof(*names));

			if (!nn) {
				err = -ENOMEM;
				break;
			}
			names = nn;
		}
		if (!(names[n] = strdup(e->d_name))) {
			err = -ENOMEM;
			break;
		}
		n++;
	}
	qsort(names, n, sizeof(*names), names_cmp);
	for (size_t i = 0; i < n && !err; i++) {
		struct stat st, lst;
		bool lower;

		if (snprintf(w->rel + len, sizeof(w->rel) - len, "%s%s", len ? "/" : "", names[i]) >=
		    (int)(sizeof(w->rel) - len)) {
			err = -ENAMETOOLONG;
			break;
		}
		if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW))
			continue;
		lower = in_lower(w, w->rel, &lst);
		if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
			/* A whiteout: the lower entry is deleted. */
			if (lower)
				report(w, CRGW_CHANGE_DELETED, S_ISDIR(lst.st_mode));
		} else if (S_ISDIR(st.st_mode)) {
			if (!lower || !S_ISDIR(lst.st_mode))
				report(w, lower ? CRGW_CHANGE_CHANGED : CRGW_CHANGE_ADDED, true);
			if (depth < 256) {
				int sub = openat(dirfd(d), names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

				if (sub >= 0)
					err = walk_upper(w, sub, depth + 1);
			}
		} else {
			report(w, lower ? CRGW_CHANGE_CHANGED : CRGW_CHANGE_ADDED, false);
		}
		w->rel[len] = '\0';
	}
	w->rel[len] = '\0';
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return err;
}

int crgw_workspace_diff(const char *lower, const char *upper,
			void (*cb)(void *arg, const struct crgw_change *change), void *arg)
{
	struct diff_walk w = { .cb = cb, .arg = arg };
	int fd, err;

	fd = open(upper, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	w.lower_root = open(lower, O_PATH | O_DIRECTORY | O_CLOEXEC);
	err = walk_upper(&w, fd, 0);
	if (w.lower_root >= 0)
		close(w.lower_root);
	return err;
}

/* ---- crgw-ctl cp ------------------------------------------------------------------------------ */

/* Copies the open file `in` to `to` (created, mode `mode` without set-id bits). */
static int copy_file(int in, const char *to, mode_t mode)
{
	char buf[65536];
	int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode & 0777);
	int err = 0;

	if (out < 0)
		return -errno;
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf)), off = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : 0;
			break;
		}
		while (off < n) {
			ssize_t m = write(out, buf + off, (size_t)(n - off));

			if (m < 0) {
				if (errno == EINTR)
					continue;
				err = -errno;
				break;
			}
			off += m;
		}
		if (err)
			break;
	}
	if (close(out) && !err)
		err = -errno;
	return err;
}

/* Copies the directory `in` (taken) into the new directory `to`, entry by entry, links as links. */
static int copy_tree(int in, const char *to, mode_t mode, unsigned depth)
{
	DIR *d;
	struct dirent *e;
	int err = 0;

	if (depth > 256) {
		close(in);
		return -ELOOP;
	}
	if (mkdir(to, (mode & 0777) | 0700) && errno != EEXIST) {
		err = -errno;
		close(in);
		return err;
	}
	d = fdopendir(in);
	if (!d) {
		err = -errno;
		close(in);
		return err;
	}
	while (!err && (e = readdir(d))) {
		char path[PATH_MAX];
		struct stat st;
		int fd;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", to, e->d_name) >= (int)sizeof(path)) {
			err = -ENAMETOOLONG;
			break;
		}
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW))
			continue;
		if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX];
			ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);

			if (n >= 0) {
				target[n] = '\0';
				if (symlink(target, path) && errno != EEXIST)
					err = -errno;
			}
		} else if (S_ISDIR(st.st_mode)) {
			fd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			err = fd < 0 ? -errno : copy_tree(fd, path, st.st_mode, depth + 1);
		} else if (S_ISREG(st.st_mode)) {
			fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
			if (fd < 0)
				err = -errno;
			else {
				err = copy_file(fd, path, st.st_mode);
				close(fd);
			}
		}
		/* Devices, FIFOs and sockets are not copied out: they are not content. */
	}
	closedir(d);
	chmod(to, mode & 0777);
	return err;
}

int crgw_sandbox_copy_out(pid_t holder, const char *path, const char *host_path, char *err, size_t errlen)
{
	char rootpath[64], inside[PATH_MAX], dest[PATH_MAX];
	struct open_how how = { .flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
				.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
	struct stat st, dst;
	int root, fd, e;

	if (path[0] == '/')
		snprintf(inside, sizeof(inside), "%s", path);
	else if (snprintf(inside, sizeof(inside), "/workspace/%s", path) >= (int)sizeof(inside))
		return -ENAMETOOLONG;
	/* The sandbox's own root, through its init: every link inside is resolved as the sandbox sees it. */
	snprintf(rootpath, sizeof(rootpath), "/proc/%d/root", (int)holder);
	root = open(rootpath, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0) {
		e = -errno;
		snprintf(err, errlen, "the sandbox's file system: %s", strerror(errno));
		return e;
	}
	fd = (int)syscall(SYS_openat2, root, inside, &how, sizeof(how));
	close(root);
	if (fd < 0 || fstat(fd, &st)) {
		e = -errno;
		snprintf(err, errlen, "%s in the sandbox: %s", inside, strerror(errno));
		if (fd >= 0)
			close(fd);
		return e;
	}
	/* Like cp: into an existing directory, under the source's name. */
	if (stat(host_path, &dst) == 0 && S_ISDIR(dst.st_mode)) {
		const char *base = strrchr(inside, '/');

		base = base && base[1] ? base + 1 : "workspace";
		if (snprintf(dest, sizeof(dest), "%s/%s", host_path, base) >= (int)sizeof(dest)) {
			close(fd);
			return -ENAMETOOLONG;
		}
	} else {
		snprintf(dest, sizeof(dest), "%s", host_path);
	}
	if (S_ISDIR(st.st_mode))
		e = copy_tree(fd, dest, st.st_mode, 0);
	else if (S_ISREG(st.st_mode)) {
		e = copy_file(fd, dest, st.st_mode);
		close(fd);
	} else {
		close(fd);
		e = -EINVAL;
		snprintf(err, errlen, "%s in the sandbox is not a file or directory", inside);
		return e;
	}
	if (e)
		snprintf(err, errlen, "copying %s to %s: %s", inside, dest, strerror(-e));
	return e;
}
