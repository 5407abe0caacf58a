/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Layers applied to the merged tree and written as ext4, checked on the image with e2fsck -fn and debugfs:
 * every entry type, ownership, setuid bits, whiteouts and opaque directories, hard links across layers,
 * gzip and zstd, big directories; and every refusal (absolute paths, "..", paths through links, too deep,
 * too many entries, a gzip bomb, a truncated layer, a link to nothing). Tars are built here with libarchive.
 * usage: test_layer (needs e2fsck and debugfs on PATH or in /sbin)
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "crgw/image.h"
#include "tap.h"

static char dir[] = "/tmp/crgw-test-layer.XXXXXX";

/* ---- building tars ---- */

struct tarb {
	struct archive *a;
	char path[512];
};

static void tar_open(struct tarb *b, const char *name, const char *filter)
{
	snprintf(b->path, sizeof(b->path), "%s/%s", dir, name);
	b->a = archive_write_new();
	archive_write_set_format_pax_restricted(b->a);
	if (!strcmp(filter, "gzip"))
		archive_write_add_filter_gzip(b->a);
	else if (!strcmp(filter, "zstd"))
		archive_write_add_filter_zstd(b->a);
	if (archive_write_open_filename(b->a, b->path) != ARCHIVE_OK) {
		printf("Bail out! %s: %s\n", b->path, archive_error_string(b->a));
		exit(1);
	}
}

static void add(struct tarb *b, const char *path, unsigned type, unsigned perm, const char *data, size_t size,
		const char *link)
{
	struct archive_entry *e = archive_entry_new();

	archive_entry_set_pathname(e, path);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_mtime(e, 1700000000, 0);
	archive_entry_set_size(e, type == AE_IFREG ? (la_int64_t)size : 0);
	if (type == AE_IFLNK)
		archive_entry_set_symlink(e, link);
	archive_write_header(b->a, e);
	if (type == AE_IFREG && size)
		archive_write_data(b->a, data, size);
	archive_entry_free(e);
}

static void file(struct tarb *b, const char *path, const char *text)
{
	add(b, path, AE_IFREG, 0644, text, strlen(text), NULL);
}

static void dir_(struct tarb *b, const char *path)
{
	add(b, path, AE_IFDIR, 0755, NULL, 0, NULL);
}

static void symlink_(struct tarb *b, const char *path, const char *target)
{
	add(b, path, AE_IFLNK, 0777, NULL, 0, target);
}

static void hardlink(struct tarb *b, const char *path, const char *target)
{
	struct archive_entry *e = archive_entry_new();

	archive_entry_set_pathname(e, path);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_hardlink(e, target);
	archive_entry_set_size(e, 0);
	archive_write_header(b->a, e);
	archive_entry_free(e);
}

static void owned(struct tarb *b, const char *path, unsigned perm, unsigned uid, unsigned gid, const char *text)
{
	struct archive_entry *e = archive_entry_new();

	archive_entry_set_pathname(e, path);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, perm);
	archive_entry_set_uid(e, uid);
	archive_entry_set_gid(e, gid);
	archive_entry_set_mtime(e, 1600000000, 0);
	archive_entry_set_size(e, (la_int64_t)strlen(text));
	archive_write_header(b->a, e);
	archive_write_data(b->a, text, strlen(text));
	archive_entry_free(e);
}

static void device(struct tarb *b, const char *path, unsigned type, unsigned maj, unsigned min)
{
	struct archive_entry *e = archive_entry_new();

	archive_entry_set_pathname(e, path);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, 0666);
	archive_entry_set_rdevmajor(e, maj);
	archive_entry_set_rdevminor(e, min);
	archive_write_header(b->a, e);
	archive_entry_free(e);
}

static void tar_close(struct tarb *b)
{
	archive_write_close(b->a);
	archive_write_free(b->a);
}

/* ---- applying and checking ---- */

static struct crgw_image_limits lim;

static int apply_files(struct crgw_image_tree *t, const char *const *paths, char *err, size_t errlen)
{
	for (; *paths; paths++) {
		int fd = open(*paths, O_RDONLY), rc;

		if (fd < 0)
			return -errno;
		rc = crgw_image_tree_apply(t, fd, NULL, err, errlen);
		close(fd);
		if (rc)
			return rc;
	}
	return 0;
}

static char *run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *run(const char *fmt, ...)
{
	char cmd[2048], *out = NULL;
	size_t cap = 0, n = 0;
	va_list ap;
	FILE *p;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	p = popen(cmd, "r");
	if (!p)
		return strdup("");
	for (;;) {
		if (n + 4097 > cap) {
			cap = cap ? cap * 2 : 8192;
			out = realloc(out, cap);
		}
		size_t got = fread(out + n, 1, 4096, p);

		if (!got)
			break;
		n += got;
	}
	out[n] = 0;
	pclose(p);
	return out;
}

static const char *img;

static bool has(const char *path, const char *needle)
{
	char *s = run("debugfs -R 'stat \"%s\"' %s 2>&1", path, img);
	bool ok = strstr(s, needle) != NULL;

	if (!ok)
		printf("# stat %s lacks \"%s\":\n# %.300s\n", path, needle, s);
	free(s);
	return ok;
}

static bool content(const char *path, const char *want)
{
	char *s = run("debugfs -R 'cat \"%s\"' %s 2>/dev/null", path, img);
	bool ok = !strcmp(s, want);

	if (!ok)
		printf("# cat %s: \"%.100s\", want \"%.100s\"\n", path, s, want);
	free(s);
	return ok;
}

static bool absent(const char *path)
{
	char *s = run("debugfs -R 'stat \"%s\"' %s 2>&1", path, img);
	bool ok = strstr(s, "File not found") || strstr(s, "is not a directory");

	free(s);
	return ok;
}

static bool fsck_clean(const char *path)
{
	char *s = run("e2fsck -fn %s 2>&1; echo \"rc=$?\"", path);
	bool ok = strstr(s, "rc=0") != NULL;

	if (!ok)
		printf("# e2fsck:\n# %.600s\n", s);
	free(s);
	return ok;
}

static void test_good(void)
{
	struct tarb b;
	struct crgw_image_tree *t;
	char err[512], l1[600], l2[600], l3[600], out[600], big[70000];
	char slow[200];
	uint64_t size = 0;
	int rc;

	/* Layer 1, uncompressed: every type. */
	tar_open(&b, "l1.tar", "none");
	dir_(&b, "./");
	dir_(&b, "etc/");
	file(&b, "etc/hostname", "base\n");
	file(&b, "etc/removed", "gone soon\n");
	file(&b, "etc/kept-same-layer", "x\n");
	dir_(&b, "usr/bin");
	owned(&b, "usr/bin/su", 04755, 0, 0, "#!su\n");
	owned(&b, "home/user/file", 0600, 1000, 1000, "mine\n");
	owned(&b, "home/big/file", 0640, 100000, 70000, "big ids\n");
	symlink_(&b, "etc/fast", "hostname");
	memset(slow, 'a', sizeof(slow) - 1);
	slow[sizeof(slow) - 1] = 0;
	symlink_(&b, "etc/slow", slow);
	symlink_(&b, "etc/escape", "../../../../etc/shadow");
	symlink_(&b, "etc/abs", "/etc/shadow");
	file(&b, "data/orig", "linked\n");
	hardlink(&b, "data/link1", "data/orig");
	device(&b, "dev/null", AE_IFCHR, 1, 3);
	device(&b, "dev/sda", AE_IFBLK, 8, 0);
	device(&b, "dev/big", AE_IFCHR, 300, 70000);
	device(&b, "run/fifo", AE_IFIFO, 0, 0);
	dir_(&b, "opaque/");
	file(&b, "opaque/old1", "old\n");
	dir_(&b, "opaque/sub");
	file(&b, "opaque/sub/old2", "old\n");
	file(&b, "replace/was-file", "file\n");
	dir_(&b, "replace/was-dir");
	file(&b, "replace/was-dir/inner", "inner\n");
	memset(big, 'z', sizeof(big));
	add(&b, "data/big", AE_IFREG, 0644, big, sizeof(big), NULL);
	for (int i = 0; i < 3000; i++) {
		char p[64];

		snprintf(p, sizeof(p), "many/entry-with-a-longish-name-%04d", i);
		file(&b, p, "m");
	}
	tar_close(&b);
	snprintf(l1, sizeof(l1), "%s", b.path);

	/* Layer 2, gzip: whiteouts, opaque directory, replacements. */
	tar_open(&b, "l2.tar.gz", "gzip");
	file(&b, "etc/.wh.removed", "");
	file(&b, "etc/new-here", "new\n");
	file(&b, "etc/.wh.new-here", "");
	dir_(&b, "opaque/");
	file(&b, "opaque/.wh..wh..opq", "");
	file(&b, "opaque/new", "new\n");
	dir_(&b, "replace/was-file");
	file(&b, "replace/was-file/now-dir", "d\n");
	file(&b, "replace/was-dir", "now a file\n");
	file(&b, "many/.wh.entry-with-a-longish-name-0000", "");
	file(&b, "nowhere/.wh.x", "");
	tar_close(&b);
	snprintf(l2, sizeof(l2), "%s", b.path);

	/* Layer 3, zstd: a hard link to a lower layer's file, a file overwritten. */
	tar_open(&b, "l3.tar.zst", "zstd");
	hardlink(&b, "data/link2", "data/orig");
	file(&b, "etc/hostname", "top\n");
	tar_close(&b);
	snprintf(l3, sizeof(l3), "%s", b.path);

	rc = crgw_image_tree_new(dir, &lim, &t, err, sizeof(err));
	tap_result(rc == 0, "tree_new (%s)", rc ? err : "ok");
	if (rc)
		return;
	rc = apply_files(t, (const char *const[]){ l1, l2, l3, NULL }, err, sizeof(err));
	tap_result(rc == 0, "three layers (tar, gzip, zstd) apply (%s)", rc ? err : "ok");
	snprintf(out, sizeof(out), "%s/good.ext4", dir);
	img = out;
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = rc ? rc : crgw_image_ext4_write(t, out, 0, &size, err, sizeof(err));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	tap_result(rc == 0, "ext4 written (%s), %llu MiB in %.0f ms", rc ? err : "ok",
		   (unsigned long long)(size >> 20),
		   (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	crgw_image_tree_free(t);
	if (rc)
		return;
	tap_result(fsck_clean(out), "e2fsck -fn finds nothing");
	tap_result(content("/etc/hostname", "top\n"), "an upper layer's file replaces the lower one");
	tap_result(absent("/etc/removed"), "a whiteout removes a lower layer's file");
	tap_result(content("/etc/new-here", "new\n"), "a whiteout does not hide its own layer's file");
	tap_result(absent("/opaque/old1") && absent("/opaque/sub") && content("/opaque/new", "new\n"),
		   "an opaque directory hides everything lower layers put there");
	tap_result(has("/replace/was-file", "Type: directory") && content("/replace/was-file/now-dir", "d\n"),
		   "a file replaced by a directory");
	tap_result(content("/replace/was-dir", "now a file\n") && absent("/replace/was-dir/inner"),
		   "a directory replaced by a file, its contents gone");
	tap_result(has("/usr/bin/su", "Mode:  04755") && has("/usr/bin/su", "User:     0"), "setuid bit kept");
	tap_result(has("/home/user/file", "Mode:  0600") && has("/home/user/file", "User:  1000   Group:  1000"),
		   "ownership and mode kept");
	tap_result(has("/home/big/file", "User: 100000   Group: 70000"), "uids and gids above 65535 kept");
	tap_result(has("/home/user/file", "mtime: 0x5f5e1000"), "mtime kept");
	tap_result(has("/etc/fast", "Type: symlink") && has("/etc/fast", "Fast link dest: \"hostname\""),
		   "fast symlink");
	tap_result(has("/etc/slow", "Type: symlink") && has("/etc/slow", "Size: 199"), "slow symlink (199 bytes)");
	tap_result(has("/etc/escape", "Fast link dest: \"../../../../etc/shadow\"") &&
			   has("/etc/abs", "Fast link dest: \"/etc/shadow\""),
		   "symlinks pointing out of the root are stored as they are");
	tap_result(has("/data/orig", "Links: 3") && content("/data/link1", "linked\n") &&
			   content("/data/link2", "linked\n"),
		   "hard links, in a layer and across layers, share one inode");
	tap_result(has("/dev/null", "Type: character special") && has("/dev/null", "Device major/minor number: 01:03"),
		   "character device 1:3");
	tap_result(has("/dev/sda", "Type: block special") && has("/dev/sda", "Device major/minor number: 08:00"),
		   "block device 8:0");
	tap_result(has("/dev/big", "Device major/minor number: 300:70000"), "device numbers past 255 (300:70000)");
	tap_result(has("/run/fifo", "Type: FIFO"), "fifo");
	tap_result(has("/data/big", "Size: 70000") && has("/data/big", "EXTENTS"), "a multi-block file, in extents");
	tap_result(absent("/many/entry-with-a-longish-name-0000") && content("/many/entry-with-a-longish-name-2999", "m"),
		   "a directory of 3000 entries");
	tap_result(has("/lost+found", "Type: directory"), "lost+found made");
	tap_result(absent("/nowhere"), "a whiteout in a directory that does not exist makes nothing");
}

/* Writes a one-entry-list tar and expects the apply to fail with `want`. */
static void refused(const char *what, int want, void (*build)(struct tarb *), const char *filter)
{
	struct tarb b;
	struct crgw_image_tree *t;
	char err[512] = "";
	int rc;

	tar_open(&b, "bad.tar", filter);
	build(&b);
	tar_close(&b);
	if (crgw_image_tree_new(dir, &lim, &t, err, sizeof(err))) {
		tap_result(false, "%s: tree_new: %s", what, err);
		return;
	}
	rc = apply_files(t, (const char *const[]){ b.path, NULL }, err, sizeof(err));
	tap_result(rc == want, "%s refused (%d, want %d): %s", what, rc, want, err);
	crgw_image_tree_free(t);
	unlink(b.path);
}

static void b_abs(struct tarb *b)
{
	file(b, "/etc/passwd", "x");
}
static void b_dotdot(struct tarb *b)
{
	file(b, "a/../../etc/passwd", "x");
}
static void b_through_link(struct tarb *b)
{
	symlink_(b, "lnk", "/etc");
	file(b, "lnk/passwd", "x");
}
static void b_through_dotlink(struct tarb *b)
{
	symlink_(b, "up", "..");
	file(b, "up/x", "x");
}
static void b_hardlink_missing(struct tarb *b)
{
	hardlink(b, "x", "nothing/here");
}
static void b_hardlink_out(struct tarb *b)
{
	hardlink(b, "x", "../../etc/shadow");
}
static void b_deep(struct tarb *b)
{
	char p[1024];
	size_t n = 0;

	for (int i = 0; i < 40; i++)
		n += (size_t)snprintf(p + n, sizeof(p) - n, "d/");
	snprintf(p + n, sizeof(p) - n, "f");
	file(b, p, "x");
}
static void b_many(struct tarb *b)
{
	for (int i = 0; i < 1100; i++) {
		char p[32];

		snprintf(p, sizeof(p), "f%d", i);
		file(b, p, "");
	}
}
static void b_longname(struct tarb *b)
{
	char p[300];

	memset(p, 'n', 256);
	p[256] = 0;
	file(b, p, "x");
}
static void b_many_links(struct tarb *b)
{
	file(b, "f", "x");
	for (int i = 0; i < 60000; i++) {
		char p[32];

		snprintf(p, sizeof(p), "l%d", i);
		hardlink(b, p, "f");
	}
}
static void b_many_subdirs(struct tarb *b)
{
	for (int i = 0; i < 60001; i++) {
		char p[32];

		snprintf(p, sizeof(p), "d/%d/", i);
		dir_(b, p);
	}
}
static void b_bomb(struct tarb *b)
{
	/* 64 MiB of zeros: about 64 KiB gzipped, past the test's 16 MiB limit. */
	char *z = calloc(1, 64u << 20);

	add(b, "bomb", AE_IFREG, 0644, z, 64u << 20, NULL);
	free(z);
}
static void b_bomb_many(struct tarb *b)
{
	/* Many 1 MiB files: no single one is too big, their sum is. */
	char *z = calloc(1, 1u << 20);

	for (int i = 0; i < 20; i++) {
		char p[32];

		snprintf(p, sizeof(p), "z%d", i);
		add(b, p, AE_IFREG, 0644, z, 1u << 20, NULL);
	}
	free(z);
}

static void test_truncated(void)
{
	struct tarb b;
	struct crgw_image_tree *t;
	char err[512] = "", cut[600];
	struct stat st;
	int rc;

	tar_open(&b, "full.tar.gz", "gzip");
	char *data = malloc(1u << 20);

	for (size_t i = 0; i < (1u << 20); i++)
		data[i] = (char)(i * 2654435761u >> 13);
	add(&b, "file", AE_IFREG, 0644, data, 1u << 20, NULL);
	free(data);
	tar_close(&b);
	stat(b.path, &st);
	snprintf(cut, sizeof(cut), "%s/cut.tar.gz", dir);
	free(run("head -c %lld %s > %s", (long long)st.st_size / 2, b.path, cut));
	crgw_image_tree_new(dir, &lim, &t, err, sizeof(err));
	rc = apply_files(t, (const char *const[]){ cut, NULL }, err, sizeof(err));
	tap_result(rc == -EBADMSG, "a truncated gzip layer is refused (%d): %s", rc, err);
	crgw_image_tree_free(t);
}

/* Applies the layer at `path` to a fresh tree; the apply's result, the message in `err`. */
static int apply_one(const char *path, char *err, size_t errlen)
{
	struct crgw_image_tree *t;
	int rc;

	if ((rc = crgw_image_tree_new(dir, &lim, &t, err, errlen)))
		return rc;
	rc = apply_files(t, (const char *const[]){ path, NULL }, err, errlen);
	crgw_image_tree_free(t);
	return rc;
}

/* The offset of the 512-byte block of `path` that starts with `name` (a tar header), or -1. */
static long header_at(const char *path, const char *name)
{
	char blk[512];
	long off = 0, found = -1;
	FILE *f = fopen(path, "rb");

	while (f && fread(blk, 1, sizeof(blk), f) == sizeof(blk)) {
		if (!strcmp(blk, name)) {
			found = off;
			break;
		}
		off += 512;
	}
	if (f)
		fclose(f);
	return found;
}

static void test_damaged(void)
{
	struct tarb b;
	char err[512] = "", cut[600], *big = calloc(1, 100000), *out;
	long third;
	int rc;

	/* Cut exactly where an entry starts: what is left reads as a whole tar, bar the end blocks. */
	tar_open(&b, "three.tar", "none");
	file(&b, "first", "1");
	add(&b, "second", AE_IFREG, 0644, big, 100000, NULL);
	file(&b, "third", "3");
	tar_close(&b);
	third = header_at(b.path, "third");
	snprintf(cut, sizeof(cut), "%s/boundary.tar", dir);
	free(run("head -c %ld %s > %s", third, b.path, cut));
	rc = apply_one(cut, err, sizeof(err));
	tap_result(third > 0 && rc == -EBADMSG, "a tar cut at an entry boundary is refused (%d): %s", rc, err);
	rc = apply_one(b.path, err, sizeof(err));
	tap_result(rc == 0, "... and the whole tar applies (%s)", rc ? err : "ok");

	/* An entry after the end blocks: other readers ignore it, so applying it would be a second truth. */
	snprintf(cut, sizeof(cut), "%s/after-end.tar", dir);
	free(run("cat %s %s > %s", b.path, b.path, cut));
	rc = apply_one(cut, err, sizeof(err));
	tap_result(rc == 0, "what follows the end-of-archive blocks is read, not applied (%s)", rc ? err : "ok");
	free(run("head -c 10240 /dev/zero | cat %s - > %s", b.path, cut));
	rc = apply_one(cut, err, sizeof(err));
	tap_result(rc == 0, "zero blocks after the end blocks are fine (%s)", rc ? err : "ok");

	/* A stored (level 0) gzip with one byte of contents changed: only the trailer's CRC says so. */
	b.a = archive_write_new();
	snprintf(b.path, sizeof(b.path), "%s/stored.tar.gz", dir);
	archive_write_set_format_pax_restricted(b.a);
	archive_write_add_filter_gzip(b.a);
	archive_write_set_filter_option(b.a, "gzip", "compression-level", "0");
	archive_write_open_filename(b.a, b.path);
	memset(big, 'a', 99999);
	memcpy(big + 50000, "MARKER", 6);
	add(&b, "second", AE_IFREG, 0644, big, 99999, NULL);
	tar_close(&b);
	rc = apply_one(b.path, err, sizeof(err));
	tap_result(rc == 0, "a stored gzip layer applies (%s)", rc ? err : "ok");
	out = run("grep -boa MARKER %s | head -1 | cut -d: -f1 | tr -d '\\n'", b.path);
	free(run("printf Z | dd of=%s bs=1 seek=%s conv=notrunc status=none", b.path, out));
	free(out);
	rc = apply_one(b.path, err, sizeof(err));
	tap_result(rc == -EBADMSG, "a gzip layer whose CRC does not match is refused (%d): %s", rc, err);
	free(big);
}

static void b_uid40(struct tarb *b)
{
	struct archive_entry *e = archive_entry_new();

	archive_entry_set_pathname(e, "f");
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_uid(e, 1000);
	archive_entry_set_gid(e, 1ll << 40);
	archive_entry_set_size(e, 0);
	archive_write_header(b->a, e);
	archive_entry_free(e);
}
static void b_uid33(struct tarb *b)
{
	struct archive_entry *e = archive_entry_new();

	archive_entry_set_pathname(e, "d");
	archive_entry_set_filetype(e, AE_IFDIR);
	archive_entry_set_perm(e, 0755);
	archive_entry_set_uid(e, (1ll << 32) + 5);
	archive_write_header(b->a, e);
	archive_entry_free(e);
}

static void test_sha_and_inject(void)
{
	struct tarb b;
	struct crgw_image_tree *t;
	char err[512] = "", sha[CRGW_IMAGE_ID_LEN], out[600], guest[600], *want;
	int fd, rc;

	tar_open(&b, "sha.tar", "gzip");
	file(&b, "sbin/init", "init\n");
	tar_close(&b);
	want = run("sha256sum %s | cut -c1-64 | tr -d '\\n'", b.path);
	crgw_image_tree_new(dir, &lim, &t, err, sizeof(err));
	fd = open(b.path, O_RDONLY);
	rc = crgw_image_tree_apply(t, fd, sha, err, sizeof(err));
	close(fd);
	tap_result(rc == 0 && !strcmp(sha + 7, want), "the layer's sha256 is computed while applying");
	free(want);
	snprintf(guest, sizeof(guest), "%s/guest-bin", dir);
	fd = open(guest, O_CREAT | O_WRONLY, 0700);
	if (write(fd, "#!guest\n", 8) != 8)
		rc = -EIO;
	close(fd);
	rc = rc ? rc : crgw_image_tree_inject(t, guest, "/sbin/crgw-guest", 0755, err, sizeof(err));
	snprintf(out, sizeof(out), "%s/inject.ext4", dir);
	rc = rc ? rc : crgw_image_ext4_write(t, out, 1u << 20, NULL, err, sizeof(err));
	crgw_image_tree_free(t);
	img = out;
	tap_result(rc == 0 && content("/sbin/crgw-guest", "#!guest\n") && has("/sbin/crgw-guest", "Mode:  0755") &&
			   content("/sbin/init", "init\n") && fsck_clean(out),
		   "a file injected at /sbin/crgw-guest, 0755 (%s)", rc ? err : "ok");
}

int main(void)
{
	setenv("PATH", "/usr/sbin:/sbin:/usr/bin:/bin", 1);
	if (!mkdtemp(dir)) {
		printf("Bail out! mkdtemp\n");
		return 1;
	}
	crgw_image_limits_default(&lim);
	test_good();
	test_sha_and_inject();

	lim.max_depth = 32;
	lim.max_entries = 1000;
	lim.max_bytes = 16u << 20;
	refused("an absolute path", -EINVAL, b_abs, "none");
	refused("a path with ..", -EINVAL, b_dotdot, "none");
	refused("a path through a symlink", -EINVAL, b_through_link, "none");
	refused("a path through a symlink to ..", -EINVAL, b_through_dotlink, "gzip");
	refused("a hard link to nothing", -EINVAL, b_hardlink_missing, "none");
	refused("a hard link out of the root", -EINVAL, b_hardlink_out, "none");
	refused("a path 41 deep (limit 32)", -EINVAL, b_deep, "none");
	refused("1100 entries (limit 1000)", -E2BIG, b_many, "none");
	refused("a 256-byte name", -EINVAL, b_longname, "none");
	lim.max_entries = 100000;
	refused("60001 names for one file (ext4 counts links in 16 bits)", -EINVAL, b_many_links, "gzip");
	refused("60001 subdirectories in one directory", -EINVAL, b_many_subdirs, "gzip");
	lim.max_entries = 1000;
	refused("a gzip bomb, one 64 MiB file (limit 16 MiB)", -E2BIG, b_bomb, "gzip");
	refused("a zstd bomb of twenty 1 MiB files (limit 16 MiB)", -E2BIG, b_bomb_many, "zstd");
	test_truncated();
	test_damaged();
	refused("a gid of 2^40 (would be 0, root, in 32 bits)", -EINVAL, b_uid40, "none");
	refused("a uid of 2^32+5", -EINVAL, b_uid33, "none");

	if (!getenv("KEEP"))
		free(run("rm -rf %s", dir));
	return tap_done();
}
