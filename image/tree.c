/* SPDX-License-Identifier: Apache-2.0 */
/* The merged tree of an image: layers applied in order with libarchive, in memory, contents spooled. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "image_priv.h"

#define NAME_MAX_BYTES 255
#define PATH_MAX_BYTES 4095
#define TARGET_MAX_BYTES 4095
/*
 * ext4's link count is 16 bits: a file with more names, or a directory with more subdirectories, would
 * wrap it (the kernel's dir_nlink trick aside). Far beyond any real image, so refused.
 */
#define LINKS_MAX 60000

int img_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

void img_hex_digest(const unsigned char md[32], char out[CRGW_IMAGE_ID_LEN])
{
	static const char hex[] = "0123456789abcdef";

	memcpy(out, "sha256:", 7);
	for (int i = 0; i < 32; i++) {
		out[7 + 2 * i] = hex[md[i] >> 4];
		out[8 + 2 * i] = hex[md[i] & 15];
	}
	out[71] = 0;
}

bool img_digest_valid(const char *s)
{
	if (strncmp(s, "sha256:", 7) || strlen(s) != 71)
		return false;
	return strspn(s + 7, "0123456789abcdef") == 64;
}

void crgw_image_limits_default(struct crgw_image_limits *l)
{
	l->max_bytes = 16ull << 30;
	l->max_entries = 1000000;
	l->max_depth = 128;
	l->max_blob = 8ull << 30;
}

/* ---- nodes ---- */

static size_t hash(const struct img_node *parent, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)parent;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ull;
	return (size_t)(h ^ (h >> 29));
}

struct img_node *img_child(const struct crgw_image_tree *t, const struct img_node *dir, const char *name)
{
	for (struct img_node *n = t->buckets[hash(dir, name) & (t->nbuckets - 1)]; n; n = n->hnext)
		if (n->parent == dir && !strcmp(n->name, name))
			return n;
	return NULL;
}

static int grow(struct crgw_image_tree *t)
{
	size_t nb = t->nbuckets * 2;
	struct img_node **b = calloc(nb, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct img_node *n = t->buckets[i], *next;

		for (; n; n = next) {
			size_t k = hash(n->parent, n->name) & (nb - 1);

			next = n->hnext;
			n->hnext = b[k];
			b[k] = n;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = nb;
	return 0;
}

static void inode_put(struct img_inode *in)
{
	if (in && --in->refs == 0) {
		free(in->target);
		free(in);
	}
}

/* Unhashes and frees `n` and everything beneath it; depth is bounded by max_depth. */
static void node_remove(struct crgw_image_tree *t, struct img_node *n)
{
	while (n->first)
		node_remove(t, n->first);
	if (n->parent) {
		struct img_node **pp = &t->buckets[hash(n->parent, n->name) & (t->nbuckets - 1)];

		while (*pp != n)
			pp = &(*pp)->hnext;
		*pp = n->hnext;
		if (n->prev)
			n->prev->next = n->next;
		else
			n->parent->first = n->next;
		if (n->next)
			n->next->prev = n->prev;
		else
			n->parent->last = n->prev;
		if (S_ISDIR(n->inode->mode))
			n->parent->inode->subdirs--;
		t->nnodes--;
	}
	inode_put(n->inode);
	free(n->name);
	free(n);
}

/* A new child `name` of `dir` naming `in` (a reference taken on success). */
static int node_add(struct crgw_image_tree *t, struct img_node *dir, const char *name, struct img_inode *in,
		    struct img_node **out)
{
	struct img_node *n;
	size_t k;

	if (in->refs >= LINKS_MAX || (S_ISDIR(in->mode) && dir->inode->subdirs >= LINKS_MAX))
		return -EMLINK;
	if (t->nnodes + 1 > t->nbuckets && grow(t))
		return -ENOMEM;
	n = calloc(1, sizeof(*n));
	if (!n || !(n->name = strdup(name))) {
		free(n);
		return -ENOMEM;
	}
	n->parent = dir;
	n->inode = in;
	n->layer = t->layer;
	in->refs++;
	if (S_ISDIR(in->mode))
		dir->inode->subdirs++;
	n->prev = dir->last;
	if (dir->last)
		dir->last->next = n;
	else
		dir->first = n;
	dir->last = n;
	k = hash(dir, name) & (t->nbuckets - 1);
	n->hnext = t->buckets[k];
	t->buckets[k] = n;
	t->nnodes++;
	*out = n;
	return 0;
}

static struct img_inode *inode_new(unsigned mode)
{
	struct img_inode *in = calloc(1, sizeof(*in));

	if (in)
		in->mode = mode;
	return in;
}

int crgw_image_tree_new(const char *spool_dir, const struct crgw_image_limits *limits,
			struct crgw_image_tree **out, char *err, size_t errlen)
{
	struct crgw_image_tree *t = calloc(1, sizeof(*t));
	struct img_inode *in;

	*out = NULL;
	if (!t)
		return img_fail(err, errlen, -ENOMEM, "out of memory");
	t->spool = -1;
	if (limits)
		t->lim = *limits;
	else
		crgw_image_limits_default(&t->lim);
	t->nbuckets = 1024;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	t->root = calloc(1, sizeof(*t->root));
	in = inode_new(S_IFDIR | 0755);
	if (!t->buckets || !t->root || !in || !(t->root->name = strdup(""))) {
		free(in);
		crgw_image_tree_free(t);
		return img_fail(err, errlen, -ENOMEM, "out of memory");
	}
	t->root->inode = in;
	in->refs = 1;
	t->spool = open(spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (t->spool < 0) {
		int e = -errno;

		crgw_image_tree_free(t);
		return img_fail(err, errlen, e, "making a spool file in %s: %s", spool_dir, strerror(-e));
	}
	*out = t;
	return 0;
}

void crgw_image_tree_free(struct crgw_image_tree *t)
{
	if (!t)
		return;
	if (t->root)
		node_remove(t, t->root);
	if (t->spool >= 0)
		close(t->spool);
	free(t->buckets);
	free(t);
}

void crgw_image_tree_stats(const struct crgw_image_tree *t, uint64_t *entries, uint64_t *bytes)
{
	if (entries)
		*entries = t->nnodes + 1;
	if (bytes)
		*bytes = t->bytes;
}

/* ---- paths ---- */

/*
 * Normalizes an archive path into `out` (relative, components joined by '/', "" for the root): "./" and
 * empty components dropped; absolute paths, "..", long names, long paths and deep paths refused. A layer
 * path is never made relative by stripping '/': an absolute name is a sign of a hand-made archive, and
 * refusing it is the simplest way to be sure nothing lands outside the root.
 */
static int norm_path(const struct crgw_image_tree *t, const char *in, char *out, size_t outsz, const char **why)
{
	size_t o = 0;
	unsigned depth = 0;

	if (!in || !*in)
		return *why = "empty path", -EINVAL;
	if (in[0] == '/')
		return *why = "absolute path", -EINVAL;
	if (strlen(in) > PATH_MAX_BYTES)
		return *why = "path too long", -EINVAL;
	while (*in) {
		size_t n = strcspn(in, "/");

		if (n == 2 && in[0] == '.' && in[1] == '.')
			return *why = "path with '..'", -EINVAL;
		if (n > NAME_MAX_BYTES)
			return *why = "name longer than 255 bytes", -EINVAL;
		if (n && !(n == 1 && in[0] == '.')) {
			if (++depth > t->lim.max_depth)
				return *why = "path too deep", -EINVAL;
			if (o + (o ? 1 : 0) + n + 1 > outsz)
				return *why = "path too long", -EINVAL;
			if (o)
				out[o++] = '/';
			memcpy(out + o, in, n);
			o += n;
		}
		in += n;
		while (*in == '/')
			in++;
	}
	out[o] = 0;
	return 0;
}

/*
 * Walks `path` (normalized) from the root, making missing directories (0755, root) when `make` is set.
 * Never follows a symbolic link: a component that exists and is not a directory is refused, so nothing a
 * layer says can reach outside the tree.
 */
static int walk(struct crgw_image_tree *t, const char *path, bool make, struct img_node **out, const char **why)
{
	struct img_node *d = t->root;
	char name[NAME_MAX_BYTES + 1];

	while (*path) {
		size_t n = strcspn(path, "/");
		struct img_node *c;

		memcpy(name, path, n);
		name[n] = 0;
		c = img_child(t, d, name);
		if (!c) {
			struct img_inode *in;

			if (!make)
				return *why = "no such directory", -ENOENT;
			int rc;

			if (!(in = inode_new(S_IFDIR | 0755)))
				return -ENOMEM;
			if ((rc = node_add(t, d, name, in, &c))) {
				free(in);
				return rc == -EMLINK ? (*why = "more than 60000 subdirectories in one directory", -EINVAL) : rc;
			}
		} else if (!S_ISDIR(c->inode->mode)) {
			return *why = "path through a non-directory (links are never followed)", -EINVAL;
		}
		d = c;
		path += n;
		if (*path == '/')
			path++;
	}
	*out = d;
	return 0;
}

/* Splits normalized `path` into its parent (in `parent`) and the last component. */
static const char *split(const char *path, char *parent, size_t size)
{
	const char *slash = strrchr(path, '/');

	if (!slash) {
		parent[0] = 0;
		return path;
	}
	snprintf(parent, size, "%.*s", (int)(slash - path), path);
	return slash + 1;
}

/* Contents of a regular file: `size` bytes from the archive appended to the spool. */
static int spool_data(struct crgw_image_tree *t, struct archive *a, struct img_inode *in, uint64_t size,
		      const char **why)
{
	char buf[65536];
	uint64_t got = 0;
	la_ssize_t n;

	in->data_off = t->spool_end;
	while ((n = archive_read_data(a, buf, sizeof(buf))) > 0) {
		got += (uint64_t)n;
		/* The header's size was checked against the budget; libarchive never returns more than it. */
		if (got > size)
			return *why = "more data than the entry's size", -EBADMSG;
		for (la_ssize_t off = 0; off < n;) {
			ssize_t w = pwrite(t->spool, buf + off, (size_t)(n - off), (off_t)(t->spool_end + off));

			if (w < 0)
				return *why = "writing the spool file", -errno;
			off += w;
		}
		t->spool_end += (uint64_t)n;
	}
	if (n < 0)
		return *why = archive_error_string(a) ? archive_error_string(a) : "damaged archive", -EBADMSG;
	if (got != size)
		return *why = "truncated entry", -EBADMSG;
	in->size = size;
	return 0;
}

/* Drops `dir`'s children that lower layers made (an opaque directory). */
static void make_opaque(struct crgw_image_tree *t, struct img_node *dir)
{
	struct img_node *c = dir->first, *next;

	for (; c; c = next) {
		next = c->next;
		if (c->layer < t->layer)
			node_remove(t, c);
	}
}

static int apply_entry(struct crgw_image_tree *t, struct archive *a, struct archive_entry *e, const char **why)
{
	char path[PATH_MAX_BYTES + 1], parent_path[PATH_MAX_BYTES + 1];
	struct img_node *dir, *old, *n;
	struct img_inode *in;
	const char *base, *link;
	unsigned type = archive_entry_filetype(e);
	int rc;

	if ((rc = norm_path(t, archive_entry_pathname(e), path, sizeof(path), why)))
		return rc;
	/*
	 * ext4 keeps 32-bit ids: cut down, gid 2^40 would become 0 (root). Refused, as GNU tar refuses such a
	 * header, rather than mapped to some id the layer never named.
	 */
	if (archive_entry_uid(e) < 0 || archive_entry_uid(e) > UINT32_MAX || archive_entry_gid(e) < 0 ||
	    archive_entry_gid(e) > UINT32_MAX)
		return *why = "uid or gid beyond 32 bits", -EINVAL;
	if (!path[0]) {
		/* "./": the root's own metadata. */
		if (type != AE_IFDIR || archive_entry_hardlink(e))
			return *why = "the root must be a directory", -EINVAL;
		t->root->inode->mode = S_IFDIR | (archive_entry_perm(e) & 07777);
		t->root->inode->uid = (uint32_t)archive_entry_uid(e);
		t->root->inode->gid = (uint32_t)archive_entry_gid(e);
		t->root->inode->mtime = archive_entry_mtime(e);
		return 0;
	}
	base = split(path, parent_path, sizeof(parent_path));

	/*
	 * Whiteouts hide what lower layers made; never what this layer made (OCI image spec, layer.md). One in a
	 * directory that does not exist hides nothing and makes nothing.
	 */
	if (!strncmp(base, ".wh.", 4)) {
		if ((rc = walk(t, parent_path, false, &dir, why)))
			return rc == -ENOENT ? 0 : rc;
		if (!strcmp(base, ".wh..wh..opq"))
			make_opaque(t, dir);
		else if (strncmp(base, ".wh..wh.", 8) && (old = img_child(t, dir, base + 4)) && old->layer < t->layer)
			node_remove(t, old);
		return 0;
	}
	if ((rc = walk(t, parent_path, true, &dir, why)))
		return rc;

	old = img_child(t, dir, base);
	if ((link = archive_entry_hardlink(e))) {
		char target[PATH_MAX_BYTES + 1], tparent[PATH_MAX_BYTES + 1];
		struct img_node *tdir, *tn;
		const char *tbase;

		if ((rc = norm_path(t, link, target, sizeof(target), why)))
			return rc;
		if (!target[0])
			return *why = "hard link to the root", -EINVAL;
		tbase = split(target, tparent, sizeof(tparent));
		if (walk(t, tparent, false, &tdir, why) || !(tn = img_child(t, tdir, tbase)))
			return *why = "hard link to a path that does not exist", -EINVAL;
		if (S_ISDIR(tn->inode->mode))
			return *why = "hard link to a directory", -EINVAL;
		if (tn == old)
			return 0;
		in = tn->inode;
		in->refs++; /* held across removing `old`, which may be its last other name */
		if (old)
			node_remove(t, old);
		rc = node_add(t, dir, base, in, &n);
		inode_put(in);
		return rc == -EMLINK ? (*why = "more than 60000 names for one file", -EINVAL) : rc;
	}

	switch (type) {
	case AE_IFDIR:
		if (old && S_ISDIR(old->inode->mode)) {
			/* A directory declared again keeps its children and takes the new metadata. */
			old->inode->mode = S_IFDIR | (archive_entry_perm(e) & 07777);
			old->inode->uid = (uint32_t)archive_entry_uid(e);
			old->inode->gid = (uint32_t)archive_entry_gid(e);
			old->inode->mtime = archive_entry_mtime(e);
			old->layer = t->layer;
			return 0;
		}
		break;
	case AE_IFREG:
	case AE_IFLNK:
	case AE_IFCHR:
	case AE_IFBLK:
	case AE_IFIFO:
		break;
	default:
		return *why = "an entry type images cannot hold (socket or unknown)", -EINVAL;
	}
	if (old)
		node_remove(t, old);
	if (!(in = inode_new(type | (archive_entry_perm(e) & 07777))))
		return -ENOMEM;
	in->uid = (uint32_t)archive_entry_uid(e);
	in->gid = (uint32_t)archive_entry_gid(e);
	in->mtime = archive_entry_mtime(e);
	if ((rc = node_add(t, dir, base, in, &n))) {
		free(in);
		return rc == -EMLINK ? (*why = "more than 60000 subdirectories in one directory", -EINVAL) : rc;
	}
	if (type == AE_IFLNK) {
		const char *target = archive_entry_symlink(e);

		if (!target || !*target)
			return *why = "symbolic link without a target", -EINVAL;
		if (strlen(target) > TARGET_MAX_BYTES)
			return *why = "symbolic link target too long", -EINVAL;
		/* Stored as the layer says: it is resolved only inside the guest, never here. */
		if (!(in->target = strdup(target)))
			return -ENOMEM;
	} else if (type == AE_IFCHR || type == AE_IFBLK) {
		in->rmajor = (unsigned)archive_entry_rdevmajor(e);
		in->rminor = (unsigned)archive_entry_rdevminor(e);
	} else if (type == AE_IFREG) {
		int64_t size = archive_entry_size(e);

		if (size < 0)
			return *why = "negative size", -EBADMSG;
		/* Checked before reading a byte: a bomb's header says how big it is. */
		if ((uint64_t)size > t->lim.max_bytes - t->bytes)
			return *why = "the layers unpack to more than the limit of uncompressed bytes", -E2BIG;
		t->bytes += (uint64_t)size;
		return spool_data(t, a, in, (uint64_t)size, why);
	}
	return 0;
}

/*
 * Two archives read a layer: `raw` undoes the compression (gzip, zstd or none) of the bytes read from the
 * file, hashing them as they go by; `tar` parses what `raw` gives. Split so, the compressed stream can be
 * read to its very end after the tar's end-of-archive blocks, which is where gzip keeps its CRC and size
 * and zstd its checksum; a tar reader alone stops at those blocks and never checks them.
 */
struct reader {
	int fd;
	EVP_MD_CTX *md;
	char buf[65536];
	int err;           /* -errno of a failed read(2) */
	struct archive *raw;
	char why[256];     /* what `raw` said when it failed */
	/*
	 * libarchive's gzip reader consumes a member's trailer without comparing it (a TODO in its source), so
	 * a flipped byte inside a stored or deflated block would pass; zlib inflates the same bytes alongside,
	 * output discarded, to check each member's CRC and size.
	 */
	z_stream z;
	enum { GZ_START, GZ_MEMBER, GZ_BETWEEN, GZ_DONE } gz;
	bool zinit;
	unsigned char zout[65536];
};

/* Runs the gzip check over `n` more input bytes; -EBADMSG when a member's CRC or size is wrong. */
static int gz_check(struct reader *r, const unsigned char *in, size_t n)
{
	r->z.next_in = (unsigned char *)in;
	r->z.avail_in = (uInt)n;
	while (r->z.avail_in && r->gz != GZ_DONE) {
		int zr;

		if (r->gz == GZ_START || r->gz == GZ_BETWEEN) {
			/* Another member starts with the magic; anything else after a member is not checked. */
			if (r->z.next_in[0] != 0x1f || (r->z.avail_in > 1 && r->z.next_in[1] != 0x8b)) {
				r->gz = GZ_DONE;
				break;
			}
			if (r->zinit ? inflateReset(&r->z) != Z_OK : inflateInit2(&r->z, 15 + 16) != Z_OK)
				return -ENOMEM;
			r->zinit = true;
			r->gz = GZ_MEMBER;
		}
		r->z.next_out = r->zout;
		r->z.avail_out = sizeof(r->zout);
		zr = inflate(&r->z, Z_NO_FLUSH);
		if (zr == Z_STREAM_END)
			r->gz = GZ_BETWEEN;
		else if (zr != Z_OK && zr != Z_BUF_ERROR)
			return -EBADMSG;
	}
	return 0;
}

static la_ssize_t read_cb(struct archive *a, void *arg, const void **buf)
{
	struct reader *r = arg;
	ssize_t n;

	(void)a;
	do
		n = read(r->fd, r->buf, sizeof(r->buf));
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		r->err = -errno;
		return -1;
	}
	if (r->md)
		EVP_DigestUpdate(r->md, r->buf, (size_t)n);
	if (gz_check(r, (const unsigned char *)r->buf, (size_t)n)) {
		snprintf(r->why, sizeof(r->why), "gzip data does not match its CRC or size: %s",
			 r->z.msg ? r->z.msg : "damaged");
		r->gz = GZ_DONE;
		return -1;
	}
	*buf = r->buf;
	return n;
}

static la_ssize_t tar_cb(struct archive *a, void *arg, const void **buf)
{
	struct reader *r = arg;
	size_t size = 0;
	la_int64_t off;
	int ar;

	(void)a;
	/* 0 would mean the end to the tar reader: an empty block is skipped, never passed on. */
	do
		ar = archive_read_data_block(r->raw, buf, &size, &off);
	while (ar == ARCHIVE_OK && !size);
	if (ar == ARCHIVE_EOF)
		return 0;
	if (ar != ARCHIVE_OK) {
		if (!r->why[0])
			snprintf(r->why, sizeof(r->why), "%s",
				 archive_error_string(r->raw) ? archive_error_string(r->raw) : "unreadable");
		return -1;
	}
	return (la_ssize_t)size;
}

/* Why `a` failed: the decompressor's words when it was the one, else the tar reader's. */
static const char *why_of(const struct reader *r, struct archive *a)
{
	if (r->why[0])
		return r->why;
	return archive_error_string(a) ? archive_error_string(a) : "unreadable";
}

int crgw_image_tree_apply(struct crgw_image_tree *t, int fd, char sha256[CRGW_IMAGE_ID_LEN], char *err,
			  size_t errlen)
{
	struct archive *a = archive_read_new(), *raw = archive_read_new();
	struct archive_entry *e;
	struct reader *r = calloc(1, sizeof(*r));
	const char *why = NULL;
	int64_t end = 0;
	int rc = 0, ar;

	if (!a || !raw || !r) {
		rc = img_fail(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	r->fd = fd;
	r->raw = raw;
	if (sha256 && (!(r->md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(r->md, EVP_sha256(), NULL))) {
		rc = img_fail(err, errlen, -ENOMEM, "sha256: out of memory");
		goto out;
	}
	t->layer++;
	/*
	 * Only tar, and only gzip, zstd or nothing around it (what OCI layers may be); zstd must be built in,
	 * never the external program libarchive falls back to.
	 */
	if (archive_read_support_format_raw(raw) != ARCHIVE_OK ||
	    archive_read_support_filter_gzip(raw) != ARCHIVE_OK ||
	    archive_read_support_filter_zstd(raw) != ARCHIVE_OK ||
	    archive_read_support_filter_none(raw) != ARCHIVE_OK || archive_read_support_format_tar(a) != ARCHIVE_OK ||
	    archive_read_support_filter_none(a) != ARCHIVE_OK) {
		rc = img_fail(err, errlen, -ENOTSUP, "libarchive lacks tar, gzip or zstd: %s",
			      archive_error_string(raw) ? archive_error_string(raw) : archive_error_string(a));
		goto out;
	}
	if (archive_read_open(raw, r, NULL, read_cb, NULL) != ARCHIVE_OK ||
	    archive_read_next_header(raw, &e) != ARCHIVE_OK) {
		rc = img_fail(err, errlen, r->err ? r->err : -EBADMSG, "%s: %s",
			      r->why[0] ? "damaged or truncated layer" : "not a tar archive", why_of(r, raw));
		goto out;
	}
	if (archive_read_open(a, r, NULL, tar_cb, NULL) != ARCHIVE_OK) {
		rc = img_fail(err, errlen, r->err ? r->err : -EBADMSG, "not a tar archive: %s", why_of(r, a));
		goto out;
	}
	for (;;) {
		const char *name;

		ar = archive_read_next_header(a, &e);
		if (ar == ARCHIVE_EOF)
			break;
		/* ARCHIVE_RETRY (a bad header checksum) is a failure too: `e` is not an entry then. */
		if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN) {
			rc = img_fail(err, errlen, r->err ? r->err : -EBADMSG, "damaged or truncated layer: %s",
				      why_of(r, a));
			goto out;
		}
		if (++t->entries > t->lim.max_entries) {
			rc = img_fail(err, errlen, -E2BIG, "more than %llu entries in the image's layers",
				      (unsigned long long)t->lim.max_entries);
			goto out;
		}
		name = archive_entry_pathname(e);
		if ((rc = apply_entry(t, a, e, &why))) {
			if (r->err)
				rc = r->err;
			img_fail(err, errlen, rc, "layer entry \"%.200s\": %s", name ? name : "",
				 r->why[0] ? r->why : why ? why : strerror(-rc));
			goto out;
		}
		if (archive_read_data_skip(a) != ARCHIVE_OK) {
			rc = img_fail(err, errlen, r->err ? r->err : -EBADMSG, "damaged or truncated layer: %s",
				      why_of(r, a));
			goto out;
		}
		/* Where the next header starts: the entry's data and padding are consumed now. */
		end = archive_filter_bytes(a, 0);
	}
	/*
	 * A tar cut exactly between two entries reads like a shorter, whole one; only the end-of-archive blocks
	 * (the reader consumes at least one zero block) tell them apart.
	 */
	if (archive_filter_bytes(a, 0) < end + 512) {
		rc = img_fail(err, errlen, -EBADMSG, "damaged or truncated layer: no end-of-archive blocks");
		goto out;
	}
	/*
	 * What follows the end blocks is read, not applied (as tar and containerd ignore it), to the end of the
	 * compressed stream, so that its trailer is checked.
	 */
	{
		const void *rest;
		size_t size;
		la_int64_t off;

		while ((ar = archive_read_data_block(raw, &rest, &size, &off)) == ARCHIVE_OK)
			;
		if (ar != ARCHIVE_EOF) {
			rc = img_fail(err, errlen, r->err ? r->err : -EBADMSG, "damaged or truncated layer: %s",
				      why_of(r, raw));
			goto out;
		}
	}
	if (sha256) {
		unsigned char md[32];
		const void *rest;
		ssize_t n;

		/* The hash covers the whole blob, also what follows the compressed stream's end. */
		while ((n = read_cb(raw, r, &rest)) > 0)
			;
		if (n < 0) {
			rc = img_fail(err, errlen, r->err ? r->err : -EBADMSG, "reading the layer: %s",
				      r->err ? strerror(-r->err) : r->why);
			goto out;
		}
		EVP_DigestFinal_ex(r->md, md, NULL);
		img_hex_digest(md, sha256);
	}
out:
	if (a)
		archive_read_free(a);
	if (raw)
		archive_read_free(raw);
	if (r) {
		EVP_MD_CTX_free(r->md);
		if (r->zinit)
			inflateEnd(&r->z);
	}
	free(r);
	return rc;
}

/* A regular file `name` directly under `dir`. */
static bool has_file(const struct crgw_image_tree *t, const struct img_node *dir, const char *name)
{
	const struct img_node *n = img_child(t, dir, name);

	return n && S_ISREG(n->inode->mode);
}

enum img_tree_kind img_tree_kind(const struct crgw_image_tree *t)
{
	/*
	 * A root file system has at least one of these at its top; a saved image has none of them (its top is
	 * made by the tool, never by the image). Looking only at the top, and only when none is there, keeps a
	 * rootfs that happens to hold an index.json or manifest.json (at the top or anywhere) importable.
	 */
	static const char *const fhs[] = { "bin", "sbin", "usr", "etc", "lib", "lib64", "var", "opt", "root", "home" };
	const struct img_node *r = t->root, *c;

	for (size_t i = 0; i < sizeof(fhs) / sizeof(fhs[0]); i++)
		if (img_child(t, r, fhs[i]))
			return IMG_TREE_ROOTFS;
	/* The OCI image layout (skopeo's oci-archive:, docker save since Docker 25): oci-layout, index.json. */
	if (has_file(t, r, "oci-layout") && has_file(t, r, "index.json"))
		return IMG_TREE_OCI_LAYOUT;
	/* docker save before Docker 25: manifest.json and a directory per layer holding its layer.tar. */
	if (has_file(t, r, "manifest.json"))
		for (c = r->first; c; c = c->next)
			if (S_ISDIR(c->inode->mode) && has_file(t, c, "layer.tar"))
				return IMG_TREE_DOCKER_SAVE;
	return IMG_TREE_ROOTFS;
}

int img_tree_inject_fd(struct crgw_image_tree *t, int fd, const char *src, const char *path, unsigned mode,
		       char *err, size_t errlen)
{
	char norm[PATH_MAX_BYTES + 1], parent[PATH_MAX_BYTES + 1], buf[65536];
	struct img_node *dir, *old, *n;
	struct img_inode *in;
	const char *why = NULL, *base;
	struct stat st;
	ssize_t got;
	int rc;

	while (*path == '/')
		path++;
	if ((rc = norm_path(t, path, norm, sizeof(norm), &why)) || !norm[0])
		return img_fail(err, errlen, -EINVAL, "%s: %s", path, why ? why : "the root");
	if (fstat(fd, &st))
		return img_fail(err, errlen, -errno, "%s: %s", src, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return img_fail(err, errlen, -EINVAL, "%s: not a regular file", src);
	/* The guest counts against the contents limit like any file of a layer. */
	if ((uint64_t)st.st_size > t->lim.max_bytes - t->bytes)
		return img_fail(err, errlen, -E2BIG, "%s: past the limit of uncompressed bytes", src);
	base = split(norm, parent, sizeof(parent));
	if ((rc = walk(t, parent, true, &dir, &why)))
		return img_fail(err, errlen, rc, "/%s: %s", norm, why ? why : strerror(-rc));
	if ((old = img_child(t, dir, base)))
		node_remove(t, old);
	if (!(in = inode_new(S_IFREG | (mode & 07777))) || node_add(t, dir, base, in, &n)) {
		free(in);
		return img_fail(err, errlen, -ENOMEM, "out of memory");
	}
	in->mtime = st.st_mtime;
	in->data_off = t->spool_end;
	while ((got = read(fd, buf, sizeof(buf))) > 0) {
		if (pwrite(t->spool, buf, (size_t)got, (off_t)t->spool_end) != got)
			return img_fail(err, errlen, -EIO, "writing the spool file");
		t->spool_end += (uint64_t)got;
		in->size += (uint64_t)got;
	}
	if (got < 0)
		return img_fail(err, errlen, -errno, "reading %s: %s", src, strerror(errno));
	t->bytes += in->size;
	return 0;
}

int crgw_image_tree_inject(struct crgw_image_tree *t, const char *src, const char *path, unsigned mode,
			   char *err, size_t errlen)
{
	int fd, rc;

	/* O_NONBLOCK: a FIFO with no writer would block the open forever; it is refused as not a regular file. */
	if ((fd = open(src, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)) < 0)
		return img_fail(err, errlen, -errno, "%s: %s", src, strerror(errno));
	rc = img_tree_inject_fd(t, fd, src, path, mode, err, errlen);
	close(fd);
	return rc;
}
