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
#include <grp.h>
#include <stdint.h>
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
	char path[64];
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
	err = vm_map_ids(pid, (unsigned)uid, (unsigned)gid, to, 1);
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

/*
 * Git's places where code runs or comes from, in the workspace's repository and in any repository inside it
 * (a clone, a vendored tree) or kept in a git directory (a submodule's .git/modules/NAME, a worktree's
 * .git/worktrees/NAME): a hooks directory, a config file and info/attributes anywhere beneath a .git
 * component; and .gitattributes and .gitmodules in any directory.
 */
static const char *git_reason(const char *rel)
{
	const char *base = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
	const char *inside = NULL;
	size_t blen = strlen(base);

	for (const char *p = rel; p; p = strchr(p, '/') ? strchr(p, '/') + 1 : NULL)
		if (!strncmp(p, ".git/", 5)) {
			inside = p + 5;
			break;
		}
	if (inside) {
		for (const char *p = inside; p; p = strchr(p, '/') ? strchr(p, '/') + 1 : NULL) {
			/* Where git keeps refs, their logs and objects, a "hooks" or "config" is a ref's name. */
			if (!strncmp(p, "refs/", 5) || !strncmp(p, "logs/", 5) || !strncmp(p, "objects/", 8))
				return NULL;
			if (!strncmp(p, "hooks", 5) && (p[5] == '\0' || p[5] == '/')) {
				/* The samples every clone has: git never runs a hook by that name. */
				if (p[5] == '/' && blen > 7 && !strcmp(base + blen - 7, ".sample"))
					return NULL;
				return "git hook: runs on git commands";
			}
			if (!strcmp(p, "info/attributes"))
				return "git attributes: filters and diff drivers";
		}
		if (!strcmp(base, "config") || !strncmp(base, "config.", 7))
			return "git configuration: can run commands (core.fsmonitor, aliases, filters)";
	}
	if (!strcmp(base, ".gitattributes"))
		return "git attributes: filters and diff drivers";
	if (!strcmp(base, ".gitmodules"))
		return "git submodules: where a clone fetches from";
	return NULL;
}

/*
 * Paths a reviewer must see before trusting a change: where code runs without being asked (git hooks and
 * configuration, CI, editor tasks, hook managers) and the files tools load from a repository on their own
 * (dotfiles). Inside other dot-directories (a .venv, a .cache) only the directory itself is flagged.
 */
static const char *review_reason(const char *rel)
{
	const char *git = git_reason(rel);

	if (git)
		return git;
	static const struct {
		const char *prefix;
		const char *why;
	} places[] = {
		{ ".github", "CI configuration" },
		{ ".gitlab-ci", "CI configuration" },
		{ ".gitlab", "CI configuration" },
		{ ".buildkite", "CI configuration" },
		{ ".circleci", "CI configuration" },
		{ ".drone", "CI configuration" },
		{ ".travis.yml", "CI configuration" },
		{ "Jenkinsfile", "CI configuration" },
		{ "azure-pipelines.yml", "CI configuration" },
		{ ".husky", "git hook manager: runs on git commands" },
		{ ".vscode", "editor configuration: tasks run commands" },
		{ ".devcontainer", "development container configuration" },
		{ "cleanroom.yaml", "the sandbox policy" },
	};
	for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
		size_t n = strlen(places[i].prefix);

		if (!strncmp(rel, places[i].prefix, n) && (rel[n] == '\0' || rel[n] == '/' || rel[n] == '.' || rel[n] == '-'))
			return places[i].why;
	}
	if (!strncmp(rel, ".git/", 5) || !strcmp(rel, ".git"))
		return NULL;
	/* A dotfile anywhere, or a dot-directory itself; not what lies inside one. */
	const char *base = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;

	if (base[0] == '.') {
		for (const char *p = rel; p < base; p = strchr(p, '/') + 1)
			if (*p == '.')
				return NULL;
		return "dotfile";
	}
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
	if (n)
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

/*
 * The copy is read by a child that has entered the sandbox's user and mount namespaces as its root: it
 * sees what the sandbox sees and may read only what the sandbox may (a link to /etc/shadow planted in
 * the workspace gives nothing). It streams records over a pipe; this process, host root, writes them
 * beneath the destination, never through a link, and checks every name it is sent.
 */

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 ? -EPIPE : -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The reading child: enters the sandbox as its root and streams `inside`. */
__attribute__((noreturn)) static void copy_reader(pid_t holder, const char *inside, int out)
{
	char p[64];
	int userns, mntns;

	snprintf(p, sizeof(p), "/proc/%d/ns/user", (int)holder);
	userns = open(p, O_RDONLY | O_CLOEXEC);
	snprintf(p, sizeof(p), "/proc/%d/ns/mnt", (int)holder);
	mntns = open(p, O_RDONLY | O_CLOEXEC);
	if (userns < 0 || mntns < 0 || setns(userns, CLONE_NEWUSER) || setresgid(0, 0, 0) || setgroups(0, NULL) ||
	    setresuid(0, 0, 0) || setns(mntns, CLONE_NEWNS) || chdir("/")) {
		char msg[300];

		snprintf(msg, sizeof(msg), "entering the sandbox: %s", strerror(errno));
		crgw_copy_send_error(out, msg);
		_exit(1);
	}
	if (crgw_copy_send(out, inside))
		_exit(1);
	_exit(0);
}

/* A name the reader sent: relative, without "." or ".." components, and not empty unless it is the top. */
static bool safe_relative(const char *path)
{
	if (path[0] == '/')
		return false;
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, "/");

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}

/* Opens the directory holding `path` beneath `top`, never through a link. */
static int parent_dir(int top, const char *path, const char **base)
{
	struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
	const char *slash = strrchr(path, '/');
	char dir[COPY_PATH_MAX];

	if (!slash) {
		*base = path;
		return fcntl(top, F_DUPFD_CLOEXEC, 0);
	}
	*base = slash + 1;
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	return (int)syscall(SYS_openat2, top, dir, &how, sizeof(how));
}

int copy_stream_write(int in, const char *dest, char *err, size_t errlen)
{
	char path[COPY_PATH_MAX + 1], link[COPY_PATH_MAX + 1], buf[65536];
	int top = -1, e = 0;
	unsigned long entries = 0;

	for (;;) {
		struct rec r;
		const char *base;
		int dirfd_;

		if ((e = read_all(in, &r, sizeof(r)))) {
			snprintf(err, errlen, "the sandbox's side of the copy ended early");
			break;
		}
		if (r.path_len > COPY_PATH_MAX || r.link_len > COPY_PATH_MAX || ++entries > COPY_ENTRIES_MAX) {
			snprintf(err, errlen, "the sandbox's side of the copy sent an entry out of bounds");
			e = -EPROTO;
			break;
		}
		if ((e = read_all(in, path, r.path_len)) || (e = read_all(in, link, r.link_len)))
			break;
		path[r.path_len] = link[r.link_len] = '\0';
		if (r.type == REC_END)
			break;
		if (r.type == REC_ERROR) {
			snprintf(err, errlen, "%s", path);
			e = -EIO;
			break;
		}
		mode_t mode = r.mode & 0777;

		if (top == -2) {
			snprintf(err, errlen, "the sandbox's side of the copy sent more after a single file");
			e = -EPROTO;
			break;
		}
		if (top == -1) {
			/* The top entry is the destination itself. */
			if (path[0]) {
				snprintf(err, errlen, "the sandbox's side of the copy sent no top entry");
				e = -EPROTO;
				break;
			}
			if (r.type == REC_DIR) {
				if (mkdir(dest, 0700) && errno != EEXIST) {
					e = -errno;
					snprintf(err, errlen, "%s: %s", dest, strerror(errno));
					break;
				}
				top = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				if (top < 0 || fchmod(top, mode | 0700)) {
					e = -errno;
					snprintf(err, errlen, "%s: %s", dest, strerror(errno));
					break;
				}
				continue;
			}
			if (r.type != REC_FILE) {
				snprintf(err, errlen, "the sandbox's side of the copy sent neither a file nor a directory");
				e = -EPROTO;
				break;
			}
			/* One file: written to `dest` (replaced, never written through a link). */
			int fd = open(dest, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);

			if (fd < 0) {
				e = -errno;
				snprintf(err, errlen, "%s: %s", dest, strerror(errno));
				break;
			}
			for (uint64_t left = r.size; !e && left;) {
				size_t n = left < sizeof(buf) ? (size_t)left : sizeof(buf);

				if (!(e = read_all(in, buf, n)))
					e = crgw_copy_write_all(fd, buf, n);
				left -= n;
			}
			fchmod(fd, mode);
			close(fd);
			top = -2;
			continue;
		}
		if (!safe_relative(path)) {
			snprintf(err, errlen, "the sandbox's side of the copy sent a bad name");
			e = -EPROTO;
			break;
		}
		dirfd_ = parent_dir(top, path, &base);
		if (dirfd_ < 0) {
			e = -errno;
			snprintf(err, errlen, "%s/%s: %s", dest, path, strerror(errno));
			break;
		}
		if (r.type == REC_DIR) {
			if (mkdirat(dirfd_, base, mode | 0700) && errno != EEXIST)
				e = -errno;
		} else if (r.type == REC_LINK) {
			if (symlinkat(link, dirfd_, base) && errno != EEXIST)
				e = -errno;
		} else if (r.type == REC_FILE) {
			int fd = openat(dirfd_, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);

			if (fd < 0)
				e = -errno;
			for (uint64_t left = r.size; left;) {
				size_t n = left < sizeof(buf) ? (size_t)left : sizeof(buf);
				int e2 = read_all(in, buf, n);

				if (!e2 && fd >= 0 && !e)
					e = crgw_copy_write_all(fd, buf, n);
				if (e2) {
					e = e2;
					break;
				}
				left -= n;
			}
			if (fd >= 0)
				close(fd);
		}
		close(dirfd_);
		if (e) {
			snprintf(err, errlen, "%s/%s: %s", dest, path, strerror(-e));
			break;
		}
	}
	if (top >= 0)
		close(top);
	return e;
}

int vm_copy_out(const char *path, const char *host_path, void (*reader)(void *arg, const char *inside, int out),
		void *arg, char *err, size_t errlen)
{
	char inside[PATH_MAX], dest[PATH_MAX];
	struct stat dst;
	int pipefd[2], status, e;
	pid_t child;

	if (path[0] == '/')
		snprintf(inside, sizeof(inside), "%s", path);
	else if (snprintf(inside, sizeof(inside), "/workspace/%s", path) >= (int)sizeof(inside))
		return -ENAMETOOLONG;
	/* Like cp: into an existing directory, under the source's name. */
	if (stat(host_path, &dst) == 0 && S_ISDIR(dst.st_mode)) {
		const char *base = strrchr(inside, '/');

		base = base && base[1] ? base + 1 : "workspace";
		if (!strcmp(base, "..") || !strcmp(base, "."))
			base = "copy";
		if (snprintf(dest, sizeof(dest), "%s/%s", host_path, base) >= (int)sizeof(dest))
			return -ENAMETOOLONG;
	} else {
		snprintf(dest, sizeof(dest), "%s", host_path);
	}
	if (pipe2(pipefd, O_CLOEXEC))
		return -errno;
	fflush(NULL);
	child = fork();
	if (child < 0) {
		e = -errno;
		close(pipefd[0]);
		close(pipefd[1]);
		return e;
	}
	if (child == 0) {
		close(pipefd[0]);
		reader(arg, inside, pipefd[1]);
		_exit(1);
	}
	close(pipefd[1]);
	e = copy_stream_write(pipefd[0], dest, err, errlen);
	close(pipefd[0]);
	if (e)
		kill(child, SIGKILL);
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	return e;
}

static void netns_reader(void *arg, const char *inside, int out)
{
	copy_reader(*(pid_t *)arg, inside, out);
}

int crgw_sandbox_copy_out(pid_t holder, const char *path, const char *host_path, char *err, size_t errlen)
{
	return vm_copy_out(path, host_path, netns_reader, &holder, err, errlen);
}
