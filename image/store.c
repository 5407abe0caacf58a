/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The image store: blobs by digest (the layer store every image shares), images by id, each made in tmp/
 * and renamed into place whole, so a crash or a failure never leaves a partial image where a reader looks.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image_priv.h"

#define TMP_MAX_AGE (24 * 3600)

void img_progress(const struct crgw_image_opts *o, enum crgw_image_event ev, const char *digest, uint64_t bytes,
		  uint64_t total, unsigned index, unsigned count, bool cached)
{
	struct crgw_image_progress p = { .ev = ev, .digest = digest, .bytes = bytes, .total = total,
					 .index = index, .count = count, .cached = cached };

	if (o && o->progress)
		o->progress(&p, o->progress_arg);
}

/* Removes `name` in `dirfd` and everything beneath it, never following a link. */
static int rm_tree(int dir, const char *name)
{
	int fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct dirent *e;
	DIR *d;

	if (fd < 0)
		return unlinkat(dir, name, 0) && errno != ENOENT ? -errno : 0;
	if (!(d = fdopendir(fd))) {
		close(fd);
		return -errno;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			rm_tree(dirfd(d), e->d_name);
	closedir(d);
	return unlinkat(dir, name, AT_REMOVEDIR) && errno != ENOENT ? -errno : 0;
}

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

	if (fd < 0 || fsync(fd))
		rc = -errno;
	if (fd >= 0)
		close(fd);
	return rc;
}

/* An img-* build directory whose builder is gone: it holds the directory's flock while it lives. */
static bool build_dir_orphaned(int dir, const char *name)
{
	int fd;
	bool gone;

	if (strncmp(name, "img-", 4))
		return false;
	if ((fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return false;
	gone = !flock(fd, LOCK_EX | LOCK_NB);
	/* Removed while the lock is held, so a builder that races for it finds its directory unlinked. */
	if (gone)
		rm_tree(dir, name);
	close(fd);
	return gone;
}

/*
 * What interrupted runs left in tmp/: a killed build's directory at once (its lock is free), anything else a
 * day later; younger entries may belong to a run in progress (a pull's partial-* files are kept to resume).
 */
static void sweep_tmp(const char *tmp)
{
	DIR *d = opendir(tmp);
	struct dirent *e;
	struct stat st;
	time_t now = time(NULL);

	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.' || build_dir_orphaned(dirfd(d), e->d_name))
			continue;
		if (!fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) && now - st.st_mtime > TMP_MAX_AGE)
			rm_tree(dirfd(d), e->d_name);
	}
	if (d)
		closedir(d);
}

/*
 * What killed rms left: an rm renames its image to tmp/rm-<hex> and removes that, all under the store's lock
 * held exclusively. The caller holds it so, so no rm is running and every rm-* is a dead one's (and one of
 * the image about to be removed would make its rename fail).
 */
static void sweep_removed(const char *tmp)
{
	DIR *d = opendir(tmp);
	struct dirent *e;

	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, "rm-", 3))
			rm_tree(dirfd(d), e->d_name);
	if (d)
		closedir(d);
}

/*
 * The store feeds root file systems to VMs: a directory of it that another user owns or may write to could
 * swap an image or a blob under us, so it is refused rather than used (or silently chmodded).
 */
static int check_owned(const char *path, bool follow, char *err, size_t errlen)
{
	struct stat st;

	if ((follow ? stat(path, &st) : lstat(path, &st)))
		return img_fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return img_fail(err, errlen, -ENOTDIR, "%s: not a directory", path);
	if (st.st_uid != geteuid())
		return img_fail(err, errlen, -EPERM,
				"%s: owned by uid %u, not %u: refusing an image store another user controls", path,
				(unsigned)st.st_uid, (unsigned)geteuid());
	if (st.st_mode & 022)
		return img_fail(err, errlen, -EPERM, "%s: mode %04o lets others write to it: refusing it (chmod 0700)",
				path, (unsigned)(st.st_mode & 07777));
	return 0;
}

int crgw_image_store_open(const char *dir, struct crgw_image_store **out, char *err, size_t errlen)
{
	static const char *const subs[] = { "", "/blobs", "/blobs/sha256", "/images", "/tmp" };
	struct crgw_image_store *s;
	char path[4100];

	*out = NULL;
	if (!dir || dir[0] != '/' || strlen(dir) >= 3900)
		return img_fail(err, errlen, -EINVAL, "the image store must be an absolute path: %s", dir ? dir : "");
	if (!(s = calloc(1, sizeof(*s))))
		return img_fail(err, errlen, -ENOMEM, "out of memory");
	snprintf(s->dir, sizeof(s->dir), "%s", dir);
	/* Missing parents are made 0755 (as /var/lib is); the store itself and what is in it 0700. */
	snprintf(path, sizeof(path), "%s", dir);
	for (char *p = path + 1; (p = strchr(p, '/')); p++) {
		*p = 0;
		if (mkdir(path, 0755) && errno != EEXIST) {
			int e = -errno;

			free(s);
			return img_fail(err, errlen, e, "%s: %s", path, strerror(-e));
		}
		*p = '/';
	}
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		int e;

		snprintf(path, sizeof(path), "%s%s", dir, subs[i]);
		if (mkdir(path, 0700) && errno != EEXIST) {
			e = -errno;
			free(s);
			return img_fail(err, errlen, e, "%s: %s", path, strerror(-e));
		}
		if ((e = check_owned(path, i == 0, err, errlen))) {
			free(s);
			return e;
		}
	}
	snprintf(path, sizeof(path), "%s/lock", dir);
	s->lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (s->lock < 0) {
		int e = -errno;

		free(s);
		return img_fail(err, errlen, e, "%s: %s", path, strerror(-e));
	}
	snprintf(path, sizeof(path), "%s/tmp", dir);
	sweep_tmp(path);
	/* Only when no one holds the lock: never waits behind a build, and a running rm keeps its rm-*. */
	if (!flock(s->lock, LOCK_EX | LOCK_NB)) {
		sweep_removed(path);
		flock(s->lock, LOCK_UN);
	}
	*out = s;
	return 0;
}

void crgw_image_store_close(struct crgw_image_store *s)
{
	if (!s)
		return;
	close(s->lock);
	free(s);
}

void img_blob_path(const struct crgw_image_store *s, const char *digest, char *path, size_t size)
{
	snprintf(path, size, "%s/blobs/sha256/%s", s->dir, digest + 7);
}

bool img_blob_have(const struct crgw_image_store *s, const char *digest, int64_t size)
{
	char path[4200];
	struct stat st;

	img_blob_path(s, digest, path, sizeof(path));
	return !stat(path, &st) && S_ISREG(st.st_mode) && (size < 0 || st.st_size == size);
}

int img_tmp_file(const struct crgw_image_store *s, char *path, size_t size)
{
	int fd;

	snprintf(path, size, "%s/tmp/blob-XXXXXX", s->dir);
	fd = mkostemp(path, O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int img_blob_publish(const struct crgw_image_store *s, const char *tmp, const char *digest, char *err,
		     size_t errlen)
{
	char path[4200], dir[4200];

	img_blob_path(s, digest, path, sizeof(path));
	if (rename(tmp, path)) {
		/* Another pull that found the same verified partial file published it first. */
		if (errno == ENOENT && img_blob_have(s, digest, -1))
			return 0;
		return img_fail(err, errlen, -errno, "storing %s: %s", digest, strerror(errno));
	}
	snprintf(dir, sizeof(dir), "%s/blobs/sha256", s->dir);
	return fsync_dir(dir);
}

int img_blob_commit(const struct crgw_image_store *s, int fd, const char *tmp, const char *digest, char *err,
		    size_t errlen)
{
	int rc = 0;

	if (fsync(fd))
		rc = img_fail(err, errlen, -errno, "storing %s: %s", digest, strerror(errno));
	close(fd);
	if (!rc)
		rc = img_blob_publish(s, tmp, digest, err, errlen);
	if (rc)
		unlink(tmp);
	return rc;
}

int img_blob_put(const struct crgw_image_store *s, const char *digest, const void *buf, size_t len, char *err,
		 size_t errlen)
{
	char tmp[4200];
	int fd;

	if (img_blob_have(s, digest, (int64_t)len))
		return 0;
	if ((fd = img_tmp_file(s, tmp, sizeof(tmp))) < 0)
		return img_fail(err, errlen, fd, "%s/tmp: %s", s->dir, strerror(-fd));
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, (const char *)buf + off, len - off);

		if (n < 0) {
			int e = -errno;

			close(fd);
			unlink(tmp);
			return img_fail(err, errlen, e, "writing %s: %s", tmp, strerror(-e));
		}
		off += (size_t)n;
	}
	return img_blob_commit(s, fd, tmp, digest, err, errlen);
}

/* sha256 of what `fd` holds from its start; leaves it at the start again. */
static int hash_fd(int fd, char out[CRGW_IMAGE_ID_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char md[32];
	char buf[65536];
	ssize_t n;
	int rc = 0;

	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(ctx);
		return -ENOMEM;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		EVP_DigestUpdate(ctx, buf, (size_t)n);
	if (n < 0 || lseek(fd, 0, SEEK_SET) < 0)
		rc = -errno;
	else
		EVP_DigestFinal_ex(ctx, md, NULL);
	EVP_MD_CTX_free(ctx);
	if (!rc)
		img_hex_digest(md, out);
	return rc;
}

static json_t *load_record(const struct crgw_image_store *s, const char *hex)
{
	char path[4300];

	snprintf(path, sizeof(path), "%s/images/%s/image.json", s->dir, hex);
	return json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
}

static void iso_now(char *buf, size_t size)
{
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * Opens the guest file `path` for reading without blocking on a FIFO (refused, as is anything but a regular
 * file: the import would otherwise wait on it while holding the store's lock) and hashes it into `sha`.
 * Returns the descriptor, at the file's start, or -errno.
 */
static int guest_open(const char *path, char sha[CRGW_IMAGE_ID_LEN], char *err, size_t errlen)
{
	struct stat st;
	int fd, rc;

	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)) < 0)
		return img_fail(err, errlen, -errno, "guest %s: %s", path, strerror(errno));
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		rc = S_ISREG(st.st_mode) ? -errno : -EINVAL;
		close(fd);
		return img_fail(err, errlen, rc, "guest %s: %s", path,
				rc == -EINVAL ? "not a regular file" : strerror(-rc));
	}
	if ((rc = hash_fd(fd, sha))) {
		close(fd);
		return img_fail(err, errlen, rc, "guest %s: %s", path, strerror(-rc));
	}
	return fd;
}

int img_existing(struct crgw_image_store *s, const char *id, const struct crgw_image_opts *o, char *err,
		 size_t errlen)
{
	char final[4200], sha[CRGW_IMAGE_ID_LEN] = "";
	const char *had;
	json_t *r;
	bool same, had_guest;
	int fd;

	if (o && o->guest) {
		if ((fd = guest_open(o->guest, sha, err, errlen)) < 0)
			return fd;
		close(fd);
	}
	snprintf(final, sizeof(final), "%s/images/%s", s->dir, id + 7);
	if (access(final, F_OK))
		return 0;
	/*
	 * The id names the image's contents (the pinned digest, the tarball's sha256), not its guest, so the
	 * same id asked for with another guest is refused rather than answered with an image that lacks it.
	 */
	if (!(r = load_record(s, id + 7)))
		return img_fail(err, errlen, -EIO, "image %s is in the store but its image.json is unreadable", id);
	had = json_string_value(json_object_get(r, "guest_sha256"));
	had_guest = had || json_is_string(json_object_get(r, "guest"));
	if (had)
		same = sha[0] && !strcmp(had, sha);
	else if (had_guest) /* recorded before guest_sha256 was: the path is all there is to compare */
		same = sha[0] && !strcmp(json_string_value(json_object_get(r, "guest")), o->guest);
	else
		same = !sha[0];
	json_decref(r);
	if (!same)
		return img_fail(err, errlen, -EEXIST,
				"image %s is in the store with %s: remove it (crgw-ctl image rm) to make it with %s",
				id, !had_guest ? "no guest" : sha[0] ? "another guest" : "a guest",
				sha[0] ? "this guest" : "none");
	return 1;
}

/*
 * What a user who imports a saved image meant, and how to get it: import reads neither format, pull reads
 * from a registry only.
 */
static const struct {
	const char *what, *instead;
} not_rootfs[] = {
	[IMG_TREE_OCI_LAYOUT] = { "an OCI image layout (oci-layout, index.json, blobs/)",
				  "push it to a registry (skopeo copy oci-archive:FILE docker://HOST/NAME:TAG) and "
				  "crgw-ctl image pull it by digest, or unpack it (umoci unpack) and import a tarball "
				  "of the bundle's rootfs/" },
	[IMG_TREE_DOCKER_SAVE] = { "a docker save archive (manifest.json, */layer.tar)",
				   "push it to a registry (skopeo copy docker-archive:FILE docker://HOST/NAME:TAG) "
				   "and crgw-ctl image pull it by digest, or import a container's file system "
				   "(docker export $(docker create IMAGE) >rootfs.tar)" },
};

int img_build(struct crgw_image_store *s, const char *id, json_t *record, const struct crgw_image_opts *o,
	      bool import, char *err, size_t errlen)
{
	struct crgw_image_limits lim;
	struct crgw_image_tree *t = NULL;
	char final[4200], tmpdir[4200], path[4300], images[4200], when[32];
	json_t *layers = json_object_get(record, "layers"), *l;
	uint64_t size = 0, entries = 0, bytes = 0;
	bool made = false;
	char gsha[CRGW_IMAGE_ID_LEN] = "";
	enum img_tree_kind kind;
	int gfd = -1, tfd = -1;
	struct stat st;
	size_t i;
	int rc = 0;

	snprintf(final, sizeof(final), "%s/images/%s", s->dir, id + 7);
	if ((rc = img_existing(s, id, o, err, errlen))) {
		rc = rc > 0 ? 0 : rc;
		goto out;
	}
	if (o && o->guest && (gfd = guest_open(o->guest, gsha, err, errlen)) < 0) {
		rc = gfd;
		goto out;
	}
	/*
	 * The build directory is locked while this runs, so that the sweep of a later command removes it at once
	 * when this process is killed. A sweep can take the lock between mkdtemp and flock: the directory is then
	 * gone (no links), and another is made.
	 */
	for (;;) {
		snprintf(tmpdir, sizeof(tmpdir), "%s/tmp/img-XXXXXX", s->dir);
		if (!mkdtemp(tmpdir)) {
			rc = img_fail(err, errlen, -errno, "%s: %s", tmpdir, strerror(errno));
			goto out;
		}
		made = true;
		if ((tfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 || flock(tfd, LOCK_EX) ||
		    fstat(tfd, &st)) {
			rc = img_fail(err, errlen, -errno, "%s: %s", tmpdir, strerror(errno));
			goto out;
		}
		if (st.st_nlink)
			break;
		made = false;
		close(tfd);
		tfd = -1;
	}
	if (o && o->limits)
		lim = *o->limits;
	else
		crgw_image_limits_default(&lim);
	if ((rc = crgw_image_tree_new(tmpdir, &lim, &t, err, errlen)))
		goto out;
	json_array_foreach(layers, i, l) {
		const char *digest = json_string_value(json_object_get(l, "digest"));
		char sha[CRGW_IMAGE_ID_LEN], blob[4200];
		int fd;

		img_progress(o, CRGW_IMAGE_EV_APPLY, digest, 0, 0, (unsigned)i + 1, (unsigned)json_array_size(layers),
			     false);
		img_blob_path(s, digest, blob, sizeof(blob));
		if ((fd = open(blob, O_RDONLY | O_CLOEXEC)) < 0) {
			rc = img_fail(err, errlen, -errno, "layer %s: %s", digest, strerror(errno));
			goto out;
		}
		/*
		 * Verified when it arrived; again here, before a byte of it is unpacked, so a store damaged since
		 * never becomes an image (and a damaged blob is not mistaken for a hostile archive).
		 */
		if ((rc = hash_fd(fd, sha))) {
			close(fd);
			rc = img_fail(err, errlen, rc, "layer %s: %s", digest, strerror(-rc));
			goto out;
		}
		if (strcmp(sha, digest)) {
			close(fd);
			unlink(blob);
			rc = img_fail(err, errlen, -EIO, "layer %s in the store reads as %s: removed, pull again", digest,
				      sha);
			goto out;
		}
		rc = crgw_image_tree_apply(t, fd, NULL, err, errlen);
		close(fd);
		if (rc) {
			char why[768];

			snprintf(why, sizeof(why), "%s", err);
			img_fail(err, errlen, rc, "layer %zu/%zu %.19s...: %s", i + 1, json_array_size(layers), digest, why);
			goto out;
		}
	}
	if (import && (kind = img_tree_kind(t)) != IMG_TREE_ROOTFS) {
		rc = img_fail(err, errlen, -EINVAL, "%s is %s, not a root file system tarball: %s",
			      json_string_value(json_object_get(record, "reference")), not_rootfs[kind].what,
			      not_rootfs[kind].instead);
		goto out;
	}
	if (gfd >= 0 && (rc = img_tree_inject_fd(t, gfd, o->guest, "/sbin/crgw-guest", 0755, err, errlen)))
		goto out;
	crgw_image_tree_stats(t, &entries, &bytes);
	img_progress(o, CRGW_IMAGE_EV_WRITE, id, 0, bytes, 0, 0, false);
	snprintf(path, sizeof(path), "%s/rootfs.ext4", tmpdir);
	if ((rc = crgw_image_ext4_write(t, path, 64u << 20, &size, err, errlen)))
		goto out;
	iso_now(when, sizeof(when));
	json_object_set_new(record, "id", json_string(id));
	json_object_set_new(record, "created", json_string(when));
	json_object_set_new(record, "rootfs_bytes", json_integer((json_int_t)size));
	json_object_set_new(record, "content_bytes", json_integer((json_int_t)bytes));
	json_object_set_new(record, "entries", json_integer((json_int_t)entries));
	json_object_set_new(record, "guest", o && o->guest ? json_string(o->guest) : json_null());
	json_object_set_new(record, "guest_sha256", gsha[0] ? json_string(gsha) : json_null());
	snprintf(path, sizeof(path), "%s/image.json", tmpdir);
	if (json_dump_file(record, path, JSON_INDENT(2) | JSON_SORT_KEYS)) {
		rc = img_fail(err, errlen, -EIO, "writing %s", path);
		goto out;
	}
	{
		int fd = open(path, O_RDONLY | O_CLOEXEC);

		if (fd < 0 || fsync(fd))
			rc = img_fail(err, errlen, -errno, "fsync %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		if (rc || (rc = fsync_dir(tmpdir)))
			goto out;
	}
	/* The rename makes the image: complete or absent, never half there. */
	if (rename(tmpdir, final)) {
		if (errno != EEXIST && errno != ENOTEMPTY) {
			rc = img_fail(err, errlen, -errno, "%s: %s", final, strerror(errno));
			goto out;
		}
	} else {
		made = false;
	}
	snprintf(images, sizeof(images), "%s/images", s->dir);
	fsync_dir(images);
out:
	crgw_image_tree_free(t);
	if (made) {
		char tdir[4200];
		const char *slash = strrchr(tmpdir, '/');

		snprintf(tdir, sizeof(tdir), "%s/tmp", s->dir);
		int dfd = open(tdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0) {
			rm_tree(dfd, slash + 1);
			close(dfd);
		}
	}
	if (tfd >= 0)
		close(tfd);
	if (gfd >= 0)
		close(gfd);
	json_decref(record);
	if (!rc)
		img_progress(o, CRGW_IMAGE_EV_DONE, id, 0, 0, 0, 0, false);
	return rc;
}

/*
 * The most an imported tarball may be, as read: the per-blob limit, and no more than the contents it may
 * unpack to plus a quarter and 64 MiB for tar headers and padding (compression only ever shrinks a tar by
 * more than it adds). Checked while copying, so /dev/zero or a huge file stops there, not at a full disk.
 */
static uint64_t import_cap(const struct crgw_image_limits *lim)
{
	uint64_t room = lim->max_bytes > UINT64_MAX / 2 ? UINT64_MAX
							: lim->max_bytes + lim->max_bytes / 4 + (64ull << 20);

	return room < lim->max_blob ? room : lim->max_blob;
}

#define FIFO_WAIT_MS 10000

/*
 * Opens the tarball without blocking on a FIFO that has no writer: one that gets none within 10 s is an
 * error. A FIFO with a writer (process substitution, `<(zcat x.tar.gz)`) is read as any file. Returns the
 * descriptor, in blocking mode, or -errno.
 */
static int input_open(const char *path, char *err, size_t errlen)
{
	struct pollfd pfd;
	struct stat st;
	int fd, rc;

	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)) < 0)
		return img_fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st)) {
		rc = img_fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		return img_fail(err, errlen, -EISDIR, "%s: %s", path, strerror(EISDIR));
	}
	/* A reader's poll sees neither data nor a hang-up until a writer has opened the FIFO. */
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	if (S_ISFIFO(st.st_mode) && (rc = poll(&pfd, 1, FIFO_WAIT_MS)) <= 0) {
		rc = rc < 0 ? -errno : -ETIMEDOUT;
		close(fd);
		return img_fail(err, errlen, rc, "%s: %s", path,
				rc == -ETIMEDOUT ? "a FIFO no one wrote to for 10 s" : strerror(-rc));
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)) {
		rc = img_fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	return fd;
}

/* Digests of every image record into `keep` (a set); true when some image's record cannot be read. */
static bool owned_digests(struct crgw_image_store *s, json_t *keep);

/*
 * Removes blob `digest`, which this import put in the layer store, unless an image names it. Exclusive, as
 * rm is: a pull or import of the same bytes may be between storing it and naming it in its image.
 */
static void drop_blob(struct crgw_image_store *s, const char *digest)
{
	json_t *keep = json_object();
	char path[4200];

	flock(s->lock, LOCK_EX);
	if (keep && !owned_digests(s, keep) && !json_object_get(keep, digest)) {
		img_blob_path(s, digest, path, sizeof(path));
		unlink(path);
	}
	json_decref(keep);
}

int crgw_image_import(struct crgw_image_store *s, const char *path, const struct crgw_image_opts *o,
		      char id[CRGW_IMAGE_ID_LEN], char *err, size_t errlen)
{
	char tmp[4200], proc[64], blob[4200], buf[65536];
	struct crgw_image_limits lim;
	unsigned char md[32];
	EVP_MD_CTX *ctx = NULL;
	uint64_t total = 0, cap;
	json_t *record, *layers;
	bool locked = false, created = false;
	int in = -1, fd = -1, rc = 0;
	ssize_t n;

	if (o && o->limits)
		lim = *o->limits;
	else
		crgw_image_limits_default(&lim);
	cap = import_cap(&lim);
	/*
	 * The input is read, copied and hashed before the store's lock is taken: a slow or stalled input (a
	 * pipe) must not hold up an rm. The copy is an unnamed file until it is complete, so an import killed
	 * meanwhile leaves nothing in tmp/.
	 */
	if ((in = input_open(path, err, errlen)) < 0) {
		rc = in;
		goto out;
	}
	snprintf(tmp, sizeof(tmp), "%s/tmp", s->dir);
	if ((fd = open(tmp, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) < 0) {
		rc = img_fail(err, errlen, -errno, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (!(ctx = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rc = img_fail(err, errlen, -ENOMEM, "sha256: out of memory");
		goto out;
	}
	for (;;) {
		do
			n = read(in, buf, sizeof(buf));
		while (n < 0 && errno == EINTR);
		if (n <= 0)
			break;
		if ((uint64_t)n > cap - total) {
			rc = img_fail(err, errlen, -EFBIG,
				      "%s: larger than %llu bytes (--max-bytes plus a quarter and 64 MiB, "
				      "at most the %llu of a blob)",
				      path, (unsigned long long)cap, (unsigned long long)lim.max_blob);
			goto out;
		}
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(fd, buf + off, (size_t)(n - off));

			if (w < 0) {
				rc = img_fail(err, errlen, -errno, "copying %s into %s: %s", path, tmp,
					      strerror(errno));
				goto out;
			}
			off += w;
		}
		total += (uint64_t)n;
	}
	if (n < 0) {
		rc = img_fail(err, errlen, -errno, "reading %s: %s", path, strerror(errno));
		goto out;
	}
	EVP_DigestFinal_ex(ctx, md, NULL);
	img_hex_digest(md, id);
	if (fsync(fd)) {
		rc = img_fail(err, errlen, -errno, "fsync %s: %s", tmp, strerror(errno));
		goto out;
	}

	flock(s->lock, LOCK_SH);
	locked = true;
	/* link, not rename: it fails when the blob is there already, which tells whether this import made it. */
	img_blob_path(s, id, blob, sizeof(blob));
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (!linkat(AT_FDCWD, proc, AT_FDCWD, blob, AT_SYMLINK_FOLLOW)) {
		created = true;
		snprintf(tmp, sizeof(tmp), "%s/blobs/sha256", s->dir);
		if ((rc = fsync_dir(tmp))) {
			img_fail(err, errlen, rc, "fsync %s: %s", tmp, strerror(-rc));
			goto out;
		}
	} else if (errno != EEXIST) {
		rc = img_fail(err, errlen, -errno, "storing %s: %s", id, strerror(errno));
		goto out;
	}
	img_progress(o, CRGW_IMAGE_EV_BLOB_DONE, id, total, total, 1, 1, !created);
	record = json_object();
	layers = json_array();
	json_array_append_new(layers, json_pack("{s:s,s:I,s:s}", "digest", id, "size", (json_int_t)total,
						 "media_type", "application/vnd.oci.image.layer.v1.tar"));
	json_object_set_new(record, "layers", layers);
	json_object_set_new(record, "source", json_string("import"));
	json_object_set_new(record, "reference", json_string(path));
	rc = img_build(s, id, record, o, true, err, errlen);
	/* A refused tarball is not kept: no image names it, and it may be as big as the limit allows. */
	if (rc && created)
		drop_blob(s, id);
out:
	if (fd >= 0)
		close(fd);
	if (in >= 0)
		close(in);
	EVP_MD_CTX_free(ctx);
	if (locked)
		flock(s->lock, LOCK_UN);
	return rc;
}

int crgw_image_find(struct crgw_image_store *s, const char *idref, char id[CRGW_IMAGE_ID_LEN], char *err,
		    size_t errlen)
{
	char images[4200], found[65] = "";
	const char *hex = idref;
	size_t n, matches = 0;
	struct dirent *e;
	DIR *d;

	if (!strncmp(hex, "sha256:", 7))
		hex += 7;
	n = strlen(hex);
	if (n < 12 || n > 64 || strspn(hex, "0123456789abcdef") != n)
		return img_fail(err, errlen, -EINVAL, "%s: an image id is sha256:<hex>, or 12 or more of its hex digits",
				idref);
	snprintf(images, sizeof(images), "%s/images", s->dir);
	if (!(d = opendir(images)))
		return img_fail(err, errlen, -errno, "%s: %s", images, strerror(errno));
	while ((e = readdir(d))) {
		if (strlen(e->d_name) == 64 && !strncmp(e->d_name, hex, n)) {
			matches++;
			memcpy(found, e->d_name, 65);
		}
	}
	closedir(d);
	if (!matches)
		return img_fail(err, errlen, -ENOENT, "no image %s in %s", idref, s->dir);
	if (matches > 1)
		return img_fail(err, errlen, -EEXIST, "%s names %zu images: give more digits", idref, matches);
	if (id)
		snprintf(id, CRGW_IMAGE_ID_LEN, "sha256:%s", found);
	return 0;
}

int crgw_image_rootfs(struct crgw_image_store *s, const char *idref, char *path, size_t pathlen, char *err,
		      size_t errlen)
{
	char id[CRGW_IMAGE_ID_LEN];
	int rc;

	if ((rc = crgw_image_find(s, idref, id, err, errlen)))
		return rc;
	if ((size_t)snprintf(path, pathlen, "%s/images/%s/rootfs.ext4", s->dir, id + 7) >= pathlen)
		return img_fail(err, errlen, -ENAMETOOLONG, "path too long");
	if (access(path, R_OK))
		return img_fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
	return 0;
}

int crgw_image_inspect(struct crgw_image_store *s, const char *idref, json_t **out, char *err, size_t errlen)
{
	char id[CRGW_IMAGE_ID_LEN];
	int rc;

	*out = NULL;
	if ((rc = crgw_image_find(s, idref, id, err, errlen)))
		return rc;
	if (!(*out = load_record(s, id + 7)))
		return img_fail(err, errlen, -EIO, "%s: image.json is unreadable", id);
	return 0;
}

static int by_created(const void *a, const void *b)
{
	const char *x = json_string_value(json_object_get(*(json_t *const *)a, "created"));
	const char *y = json_string_value(json_object_get(*(json_t *const *)b, "created"));

	return strcmp(x ? x : "", y ? y : "");
}

int crgw_image_list(struct crgw_image_store *s, json_t **out, char *err, size_t errlen)
{
	char images[4200];
	json_t **recs = NULL, *arr;
	size_t n = 0, cap = 0;
	struct dirent *e;
	DIR *d;

	*out = NULL;
	snprintf(images, sizeof(images), "%s/images", s->dir);
	if (!(d = opendir(images)))
		return img_fail(err, errlen, -errno, "%s: %s", images, strerror(errno));
	while ((e = readdir(d))) {
		json_t *r;

		if (strlen(e->d_name) != 64 || strspn(e->d_name, "0123456789abcdef") != 64)
			continue;
		/* Listed all the same: an image hidden here would look like room to rm's collection of blobs. */
		if (!(r = load_record(s, e->d_name)) || !json_is_object(r)) {
			json_decref(r);
			r = json_pack("{s:s+,s:s}", "id", "sha256:", e->d_name, "error", "image.json is unreadable");
			if (!r)
				continue;
		}
		if (n == cap) {
			json_t **nr = realloc(recs, (cap = cap ? cap * 2 : 16) * sizeof(*recs));

			if (!nr) {
				json_decref(r);
				break;
			}
			recs = nr;
		}
		recs[n++] = r;
	}
	closedir(d);
	if (n)
		qsort(recs, n, sizeof(*recs), by_created);
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, recs[i]);
	free(recs);
	*out = arr;
	return 0;
}

/* Adds every digest an image record names to `keep` (an object used as a set). */
static void record_digests(json_t *r, json_t *keep)
{
	static const char *const keys[] = { "index", "manifest", "config" };
	json_t *l;
	size_t i;

	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		if (json_is_string(json_object_get(r, keys[k])))
			json_object_set_new(keep, json_string_value(json_object_get(r, keys[k])), json_true());
	json_array_foreach(json_object_get(r, "layers"), i, l)
		if (json_is_string(json_object_get(l, "digest")))
			json_object_set_new(keep, json_string_value(json_object_get(l, "digest")), json_true());
}

static bool owned_digests(struct crgw_image_store *s, json_t *keep)
{
	json_t *all = NULL, *r;
	bool unreadable = false;
	char why[256];
	size_t i;

	if (crgw_image_list(s, &all, why, sizeof(why)))
		return true;
	json_array_foreach(all, i, r) {
		if (json_object_get(r, "error"))
			unreadable = true;
		record_digests(r, keep);
	}
	json_decref(all);
	return unreadable;
}

int crgw_image_remove(struct crgw_image_store *s, const char *idref, char *err, size_t errlen)
{
	char id[CRGW_IMAGE_ID_LEN], from[4200], to[4200], blobs[4200];
	json_t *keep = NULL;
	struct dirent *e;
	DIR *d;
	int rc, tfd;

	/* Exclusive: no pull or import is between storing a blob and naming it in its image. */
	flock(s->lock, LOCK_EX);
	snprintf(to, sizeof(to), "%s/tmp", s->dir);
	sweep_removed(to);
	if ((rc = crgw_image_find(s, idref, id, err, errlen)))
		goto out;
	snprintf(from, sizeof(from), "%s/images/%s", s->dir, id + 7);
	snprintf(to, sizeof(to), "%s/tmp/rm-%s", s->dir, id + 7);
	if (rename(from, to)) {
		rc = img_fail(err, errlen, -errno, "%s: %s", from, strerror(errno));
		goto out;
	}
	snprintf(to, sizeof(to), "%s/tmp", s->dir);
	if ((tfd = open(to, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		snprintf(from, sizeof(from), "rm-%s", id + 7);
		rm_tree(tfd, from);
		close(tfd);
	}
	/*
	 * The layer store keeps what the remaining images name, and nothing else; while some image's record
	 * cannot be read, what it names is unknown, so every blob stays.
	 */
	keep = json_object();
	snprintf(blobs, sizeof(blobs), "%s/blobs/sha256", s->dir);
	if (keep && !owned_digests(s, keep) && (d = opendir(blobs))) {
		while ((e = readdir(d))) {
			char digest[CRGW_IMAGE_ID_LEN];

			if (strlen(e->d_name) != 64)
				continue;
			snprintf(digest, sizeof(digest), "sha256:%s", e->d_name);
			if (!json_object_get(keep, digest))
				unlinkat(dirfd(d), e->d_name, 0);
		}
		closedir(d);
	}
out:
	json_decref(keep);
	flock(s->lock, LOCK_UN);
	return rc;
}
