/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A VM's workspace (there is no virtiofs here to share the host directory): a read-only ext4 disk made
 * from the host directory at launch, and for copy mode a sparse ext4 disk that takes the guest overlay's
 * changes. crgw-ctl sandbox diff reads the change layer from that disk with libext2fs (after the guest has
 * written back what it holds); crgw-ctl cp asks the guest's agent for the files. Both work the same for
 * every backend from here: the netns backend's changes are a directory, its files are read in its
 * namespaces.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <et/com_err.h>
#include <ext2fs/ext2_err.h>
#include <ext2fs/ext2fs.h>

#include "vm_priv.h"

extern char **environ;

#define BLOCK 4096ull
/* The change disk: sparse, so only what the guest writes takes room on the host. */
#define UPPER_BYTES (16ull << 30)
/* The guest's labels for the two disks (guest/agent.h). */
#define LOWER_LABEL "crgw-ws-lower"
#define UPPER_LABEL "crgw-ws-upper"

int vm_ws_check(struct vm_ws *ws, const struct crgw_sandbox_spec *spec, const char *backend, char *err, size_t errlen)
{
	struct stat st;

	memset(ws, 0, sizeof(*ws));
	ws->mode = spec->workspace_mode;
	if (ws->mode == CRGW_WS_NONE)
		return 0;
	if (ws->mode == CRGW_WS_RW) {
		snprintf(err, errlen,
			 "workspace mode rw: a %s sandbox cannot share the host's directory (no virtiofs on this "
			 "host); use copy (the default: crgw-ctl sandbox diff and cp bring changes back) or ro",
			 backend);
		return -EOPNOTSUPP;
	}
	if (!spec->workspace_dir || !realpath(spec->workspace_dir, ws->dir) || stat(ws->dir, &st)) {
		int e = errno ? -errno : -EINVAL;

		snprintf(err, errlen, "workspace %s: %s", spec->workspace_dir ? spec->workspace_dir : "(none)",
			 strerror(-e));
		return e;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "workspace %s: not a directory", ws->dir);
		return -ENOTDIR;
	}
	if (!strcmp(ws->dir, "/")) {
		snprintf(err, errlen,
			 "workspace /: a VM's workspace is a copy, and the host's root is not one to make");
		return -EINVAL;
	}
	return 0;
}

/* ---- making the disks --------------------------------------------------------------------------- */

static struct {
	unsigned long long bytes, inodes;
} measured;

static int measure_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	measured.inodes++;
	if (type == FTW_F && S_ISREG(st->st_mode))
		/* Data blocks, and an extent block per 128 MiB of a fragmented file. */
		measured.bytes += ((unsigned long long)st->st_size + BLOCK - 1) / BLOCK * BLOCK +
				  (unsigned long long)st->st_size / (128ull << 20) * BLOCK;
	else if (type == FTW_D || type == FTW_DNR)
		measured.bytes += BLOCK * (1 + (unsigned long long)st->st_size / BLOCK);
	else if (type == FTW_SL)
		measured.bytes += BLOCK;
	return 0;
}

/* Runs mke2fs with `args` (NULL-terminated, after the program); its complaint, if any, in `err`. */
static int run_mke2fs(const char *const *args, const char *log, char *err, size_t errlen)
{
	char prog[PATH_MAX];
	const char *argv[24];
	posix_spawn_file_actions_t fa;
	size_t n = 0;
	pid_t pid;
	int status, e;

	/* PATH first; a caller's PATH without the sbin directories still finds the distribution's. */
	if (vm_find_program(NULL, "mke2fs", prog, sizeof(prog)) &&
	    (snprintf(prog, sizeof(prog), "/usr/sbin/mke2fs"), access(prog, X_OK)) &&
	    (snprintf(prog, sizeof(prog), "/sbin/mke2fs"), access(prog, X_OK))) {
		snprintf(err, errlen, "no mke2fs (package e2fsprogs)");
		return -ENOENT;
	}
	argv[n++] = prog;
	while (*args && n < sizeof(argv) / sizeof(argv[0]) - 1)
		argv[n++] = *args++;
	argv[n] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	e = posix_spawn(&pid, prog, &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (e) {
		snprintf(err, errlen, "%s: %s", prog, strerror(e));
		return -e;
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	char tail[400];

	vm_tail_of(log, tail, sizeof(tail));
	snprintf(err, errlen, "mke2fs failed: %s", tail[0] ? tail : "no message");
	return -EIO;
}

/*
 * mke2fs -d copies the tree but makes lost+found and gives the root directory root's owner and mode 0755:
 * the guest must see the host directory as it is, so lost+found goes (unless the host has one) and the root
 * takes the directory's owner, mode and times. libext2fs, on the disk nothing has mounted.
 */
static int lower_finish(const char *path, const struct stat *top, bool keep_lost_found, char *err, size_t errlen)
{
	ext2_filsys fs = NULL;
	struct ext2_inode root, lf;
	ext2_ino_t ino;
	errcode_t e;

	initialize_ext2_error_table();
	e = ext2fs_open2(path, NULL, EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs);
	if (e)
		goto fail;
	if ((e = ext2fs_read_bitmaps(fs)) || (e = ext2fs_read_inode(fs, EXT2_ROOT_INO, &root)))
		goto fail;
	if (!keep_lost_found && ext2fs_lookup(fs, EXT2_ROOT_INO, "lost+found", 10, NULL, &ino) == 0) {
		if ((e = ext2fs_read_inode(fs, ino, &lf)) || (e = ext2fs_punch(fs, ino, &lf, NULL, 0, ~0ULL)) ||
		    (e = ext2fs_unlink(fs, EXT2_ROOT_INO, "lost+found", ino, 0)))
			goto fail;
		lf.i_links_count = 0;
		lf.i_dtime = (__u32)time(NULL);
		if ((e = ext2fs_write_inode(fs, ino, &lf)))
			goto fail;
		ext2fs_inode_alloc_stats2(fs, ino, -1, 1);
		root.i_links_count--;
	}
	root.i_mode = (__u16)(LINUX_S_IFDIR | (top->st_mode & 07777));
	root.i_uid = (__u16)top->st_uid;
	ext2fs_set_i_uid_high(root, top->st_uid >> 16);
	root.i_gid = (__u16)top->st_gid;
	ext2fs_set_i_gid_high(root, top->st_gid >> 16);
	root.i_mtime = (__u32)top->st_mtime;
	root.i_atime = (__u32)top->st_atime;
	root.i_ctime = (__u32)top->st_ctime;
	if ((e = ext2fs_write_inode(fs, EXT2_ROOT_INO, &root)))
		goto fail;
	ext2fs_mark_super_dirty(fs);
	e = ext2fs_close_free(&fs);
	if (e)
		goto fail;
	return 0;
fail:
	if (fs)
		ext2fs_close_free(&fs);
	snprintf(err, errlen, "finishing the workspace's disk %s: %s", path, error_message(e));
	return -EIO;
}

int vm_ws_make_disks(struct vm_ws *ws, const char *data_dir, char *err, size_t errlen)
{
	char size[32], inodes[32], log[PATH_MAX], owner[64];
	struct statvfs vfs;
	struct stat top, lf;
	int e = 0;

	if (ws->mode == CRGW_WS_NONE)
		return 0;
	size_t dl = strlen(ws->dir);

	if (!strncmp(data_dir, ws->dir, dl) && data_dir[dl] == '/') {
		snprintf(err, errlen,
			 "the workspace %s holds the gateway's data directory %s: a copy of it cannot be made "
			 "(choose another --workspace, or move the gateway's data_dir)",
			 ws->dir, data_dir);
		return -ELOOP;
	}
	if (vm_fmt(ws->lower, sizeof(ws->lower), "%s/workspace.ext4", data_dir) ||
	    (ws->mode == CRGW_WS_COPY && vm_fmt(ws->upper, sizeof(ws->upper), "%s/workspace-changes.ext4", data_dir)) ||
	    vm_fmt(log, sizeof(log), "%s/mke2fs.log", data_dir)) {
		snprintf(err, errlen, "the data directory's path is too long: %s", data_dir);
		return -ENAMETOOLONG;
	}
	if (stat(ws->dir, &top)) {
		e = -errno;
		snprintf(err, errlen, "workspace %s: %s", ws->dir, strerror(errno));
		return e;
	}
	memset(&measured, 0, sizeof(measured));
	if (nftw(ws->dir, measure_one, 32, FTW_PHYS)) {
		e = errno ? -errno : -EIO;
		snprintf(err, errlen, "workspace %s: reading it: %s", ws->dir, strerror(-e));
		return e;
	}
	/* Room for the metadata and for ext4's allocator to breathe; inode tables are counted apart. */
	unsigned long long bytes = measured.bytes + measured.bytes / 16 + (measured.inodes + 64) * 256 + (32ull << 20);

	if (statvfs(data_dir, &vfs) == 0 && bytes > (unsigned long long)vfs.f_bavail * vfs.f_frsize) {
		snprintf(err, errlen, "the workspace %s (%llu MiB as a disk) does not fit in %s (%llu MiB free)",
			 ws->dir, bytes >> 20, data_dir, (unsigned long long)vfs.f_bavail * vfs.f_frsize >> 20);
		return -ENOSPC;
	}
	snprintf(inodes, sizeof(inodes), "%llu", measured.inodes + 64);
	snprintf(owner, sizeof(owner), "nodiscard,root_owner=%u:%u", (unsigned)top.st_uid, (unsigned)top.st_gid);
	/* Sizes in KiB; a tree that grew since it was measured gets one more try, twice the size. */
	for (int attempt = 0; attempt < 2; attempt++, bytes *= 2) {
		const char *args[] = {"-q",   "-F",  "-t", "ext4",  "-O",      "^has_journal", "-b",
				      "4096", "-m",  "0",  "-N",    inodes,    "-L",	       LOWER_LABEL,
				      "-E",   owner, "-d", ws->dir, ws->lower, size,	       NULL};

		snprintf(size, sizeof(size), "%lluk", bytes >> 10);
		unlink(ws->lower);
		e = run_mke2fs(args, log, err, errlen);
		if (!e)
			break;
	}
	if (!e) {
		char path[PATH_MAX + 16];

		snprintf(path, sizeof(path), "%s/lost+found", ws->dir);
		e = lower_finish(ws->lower, &top, lstat(path, &lf) == 0, err, errlen);
	}
	if (!e && ws->mode == CRGW_WS_COPY) {
		/* No journal: the host reads this disk while the guest runs, and reads no journal. */
		const char *args[] = {"-q",	 "-F", "-t", "ext4",	  "-O", "^has_journal",
				      "-m",	 "0",  "-L", UPPER_LABEL, "-E", "nodiscard,lazy_itable_init=1",
				      ws->upper, size, NULL};

		/*
		 * Sparse, but never larger than the room left beside it (the sandbox's own disk, when the operator
		 * gives one: limits.disk): a guest that fills it gets ENOSPC from its file system, not I/O errors
		 * from a disk whose blocks the host cannot hold.
		 */
		unsigned long long upper = UPPER_BYTES, room;

		if (statvfs(data_dir, &vfs) == 0 && (room = (unsigned long long)vfs.f_bavail * vfs.f_frsize) < upper)
			upper = room & ~4095ull;
		if (upper < (64ull << 20)) {
			snprintf(err, errlen, "no room for the workspace's changes in %s (%llu MiB free)", data_dir,
				 upper >> 20);
			e = -ENOSPC;
		} else {
			snprintf(size, sizeof(size), "%lluk", upper >> 10);
			e = run_mke2fs(args, log, err, errlen);
		}
	}
	unlink(log);
	if (e) {
		unlink(ws->lower);
		if (ws->upper[0])
			unlink(ws->upper);
	}
	return e;
}

/* ---- sandbox diff: the change layer read back from its disk ------------------------------------- */

struct upper_read {
	ext2_filsys fs;
	unsigned long entries;
	errcode_t error;
};

struct dir_names {
	struct {
		char name[256];
		ext2_ino_t ino;
	} * items;
	size_t n, cap;
	bool overflow;
};

static int collect_name(ext2_ino_t dir, int entry, struct ext2_dir_entry *dirent, int offset, int blocksize, char *buf,
			void *arg)
{
	struct dir_names *d = arg;
	int len = ext2fs_dirent_name_len(dirent);

	(void)dir;
	(void)offset;
	(void)blocksize;
	(void)buf;
	if (entry != DIRENT_OTHER_FILE || len <= 0 || len > 255 || !dirent->inode)
		return 0;
	if ((len == 1 && dirent->name[0] == '.') || (len == 2 && dirent->name[0] == '.' && dirent->name[1] == '.') ||
	    memchr(dirent->name, '/', (size_t)len) || memchr(dirent->name, '\0', (size_t)len))
		return 0; /* not a name a directory can hold: a damaged or forged disk */
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		void *items = cap <= COPY_ENTRIES_MAX ? realloc(d->items, cap * sizeof(*d->items)) : NULL;

		if (!items) {
			d->overflow = true;
			return DIRENT_ABORT;
		}
		d->items = items;
		d->cap = cap;
	}
	memcpy(d->items[d->n].name, dirent->name, (size_t)len);
	d->items[d->n].name[len] = '\0';
	d->items[d->n].ino = dirent->inode;
	d->n++;
	return 0;
}

static bool opaque_dir(ext2_filsys fs, ext2_ino_t ino)
{
	struct ext2_xattr_handle *h = NULL;
	void *value = NULL;
	size_t len = 0;
	bool yes = false;

	if (ext2fs_xattrs_open(fs, ino, &h))
		return false;
	if (ext2fs_xattrs_read(h) == 0 && ext2fs_xattr_get(h, "trusted.overlay.opaque", &value, &len) == 0)
		yes = len >= 1 && ((char *)value)[0] == 'y';
	if (value)
		ext2fs_free_mem(&value);
	ext2fs_xattrs_close(&h);
	return yes;
}

/*
 * Mirrors directory `ino` of the disk into `fd` (taken): directories, whiteouts (0/0 character devices),
 * the opaque mark, and an empty file for anything else. That is all crgw_workspace_diff reads of a change
 * layer: an entry there is a change whatever its content.
 */
static int mirror_dir(struct upper_read *r, ext2_ino_t ino, int fd, unsigned depth)
{
	struct dir_names d = {0};
	int e = 0;

	if (opaque_dir(r->fs, ino) && fsetxattr(fd, "trusted.overlay.opaque", "y", 1, 0)) {
		e = -errno;
		goto out;
	}
	if ((r->error = ext2fs_dir_iterate2(r->fs, ino, 0, NULL, collect_name, &d))) {
		e = -EIO;
		goto out;
	}
	if (d.overflow || (r->entries += d.n) > COPY_ENTRIES_MAX) {
		e = -E2BIG;
		goto out;
	}
	for (size_t i = 0; i < d.n && !e; i++) {
		struct ext2_inode in;
		const char *name = d.items[i].name;

		if ((r->error = ext2fs_read_inode(r->fs, d.items[i].ino, &in))) {
			e = -EIO;
			break;
		}
		if (LINUX_S_ISDIR(in.i_mode)) {
			int sub;

			if (depth >= 256)
				continue;
			if (mkdirat(fd, name, 0700) && errno != EEXIST) {
				e = -errno;
				break;
			}
			sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				e = -errno;
				break;
			}
			e = mirror_dir(r, d.items[i].ino, sub, depth + 1);
		} else if (LINUX_S_ISCHR(in.i_mode) && in.i_block[0] == 0 && in.i_block[1] == 0) {
			/* overlayfs's whiteout: the device number 0/0, in either of ext4's encodings */
			if (mknodat(fd, name, S_IFCHR | 0600, makedev(0, 0)) && errno != EEXIST)
				e = -errno;
		} else {
			int f = openat(fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

			if (f >= 0)
				close(f);
			else if (errno != EEXIST)
				e = -errno;
		}
	}
out:
	free(d.items);
	close(fd);
	return e;
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP ? rmdir(path) : unlink(path))
		return -1;
	return 0;
}

int vm_ws_diff(const char *changes_disk, const char *lower, const char *scratch_dir,
	       void (*cb)(void *arg, const struct crgw_change *change), void *arg, char *err, size_t errlen)
{
	struct upper_read r = {0};
	char tmp[PATH_MAX];
	ext2_ino_t upper;
	int e, fd;

	if (vm_fmt(tmp, sizeof(tmp), "%s/diff.XXXXXX", scratch_dir) || !mkdtemp(tmp)) {
		e = errno ? -errno : -ENAMETOOLONG;
		snprintf(err, errlen, "a scratch directory in %s: %s", scratch_dir, strerror(-e));
		return e;
	}
	initialize_ext2_error_table();
	r.error = ext2fs_open2(changes_disk, NULL, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &r.fs);
	if (r.error) {
		e = -EIO;
		goto out;
	}
	fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		e = -errno;
		goto out;
	}
	/* The guest's overlay keeps its changes in "upper"; a disk without one has none yet. */
	if (ext2fs_lookup(r.fs, EXT2_ROOT_INO, "upper", 5, NULL, &upper) == 0)
		e = mirror_dir(&r, upper, fd, 0);
	else
		e = close(fd);
	if (!e)
		e = crgw_workspace_diff(lower, tmp, cb, arg);
out:
	if (e)
		snprintf(err, errlen, "reading the changes on %s: %s", changes_disk,
			 r.error       ? error_message(r.error)
			 : e == -E2BIG ? "too many entries"
				       : strerror(-e));
	if (r.fs)
		ext2fs_close_free(&r.fs);
	nftw(tmp, remove_one, 32, FTW_DEPTH | FTW_PHYS);
	return e;
}

/* ---- every backend: what a sandbox changed, and copying out of it ------------------------------- */

/*
 * Runs crgw-guest with `argv` in the VM of `record` (its standard output is ours). argv[0] is
 * /proc/self/exe: the agent's child is the agent until it execs, so this is the agent in any image (and
 * never, say, another init that holds PID 1). Returns its exit status, 125 when it could not run.
 */
static int guest_helper(json_t *record, char *const *argv, char *err, size_t errlen)
{
	const struct crgw_backend *b = crgw_backend_find(json_string_value(json_object_get(record, "backend")));
	struct crgw_exec_request req = {.argv = argv, .cwd = "/"};
	struct crgw_vm_sandbox *sb = NULL;
	int status = 125, e;

	if (!b) {
		snprintf(err, errlen, "its backend is not available in this build");
		return 125;
	}
	if ((e = b->open(record, &sb, err, errlen)))
		return 125;
	e = b->exec(sb, &req, &status, err, errlen);
	b->free(sb);
	return e ? 125 : status;
}

static bool is_vm(json_t *record)
{
	const char *backend = json_string_value(json_object_get(record, "backend"));

	return backend && strcmp(backend, "netns");
}

int crgw_sandbox_changes(json_t *record, void (*cb)(void *arg, const struct crgw_change *change), void *arg, char *err,
			 size_t errlen)
{
	json_t *ws = json_object_get(record, "workspace");
	const char *mode = json_string_value(json_object_get(ws, "mode"));
	const char *lower = json_string_value(json_object_get(ws, "dir"));
	const char *data = json_string_value(json_object_get(record, "data_dir"));
	char *const sync_argv[] = {"/proc/self/exe", "--sync", NULL};
	char path[PATH_MAX];
	int e, status;

	if (!mode || strcmp(mode, "copy") || !lower || !data) {
		snprintf(err, errlen, "its workspace is %s, not a copy: %s", mode ? mode : "none",
			 mode && !strcmp(mode, "rw") ? "changes were made in place" : "there are no changes to list");
		return -EINVAL;
	}
	if (!is_vm(record)) {
		if (vm_fmt(path, sizeof(path), "%s/upper", data))
			return -ENAMETOOLONG;
		e = crgw_workspace_diff(lower, path, cb, arg);
		if (e)
			snprintf(err, errlen, "reading its changes: %s", strerror(-e));
		return e;
	}
	/* What the guest holds in its page cache is not on the disk yet: its agent writes it back first. */
	status = guest_helper(record, sync_argv, err, errlen);
	if (status) {
		if (status != 125)
			snprintf(err, errlen, "the guest could not write its changes back (exit %d)", status);
		return -EIO;
	}
	if (vm_fmt(path, sizeof(path), "%s/workspace-changes.ext4", data))
		return -ENAMETOOLONG;
	return vm_ws_diff(path, lower, data, cb, arg, err, errlen);
}

struct guest_copy {
	json_t *record;
};

/* The reading child for a VM: the guest's agent streams the path, on our standard output. */
static void guest_reader(void *arg, const char *inside, int out)
{
	struct guest_copy *c = arg;
	char *const argv[] = {"/proc/self/exe", "--copy-out", (char *)inside, NULL};
	char err[512] = "";
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC), status;

	if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0) {
		crgw_copy_send_error(out, "cannot set up the copy's streams");
		_exit(1);
	}
	status = guest_helper(c->record, argv, err, sizeof(err));
	if (status == 125 && err[0])
		crgw_copy_send_error(out, err);
	_exit(status ? 1 : 0);
}

int crgw_sandbox_copy(json_t *record, const char *path, const char *host_path, char *err, size_t errlen)
{
	json_int_t holder = json_integer_value(json_object_get(record, "holder_pid"));
	struct guest_copy c = {record};

	if (holder <= 0) {
		snprintf(err, errlen, "it has no running init to copy from");
		return -ESRCH;
	}
	if (!is_vm(record))
		return crgw_sandbox_copy_out((pid_t)holder, path, host_path, err, errlen);
	return vm_copy_out(path, host_path, guest_reader, &c, err, errlen);
}
