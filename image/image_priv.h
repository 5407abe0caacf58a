/* SPDX-License-Identifier: Apache-2.0 */
/* What the files of libcrgw-image share: the merged tree's nodes, the reference and config parsers. */
#ifndef CRGW_IMAGE_PRIV_H
#define CRGW_IMAGE_PRIV_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "crgw/image.h"

/* One file of the merged tree; several nodes share one when they are hard links. */
struct img_inode {
	unsigned refs;     /* nodes naming it */
	unsigned subdirs;  /* directories: child directories (each a link to this one in ext4) */
	unsigned mode;     /* S_IFMT | 07777 */
	uint32_t uid, gid;
	int64_t mtime;
	uint64_t size;     /* regular files */
	uint64_t data_off; /* regular files: where the contents start in the spool */
	char *target;      /* symlinks, as stored in the archive */
	unsigned rmajor, rminor;
	uint32_t ino;      /* set while writing ext4 */
};

struct img_node {
	char *name;
	struct img_node *parent;
	struct img_node *first, *last;     /* children, in creation order */
	struct img_node *prev, *next;      /* siblings */
	struct img_node *hnext;            /* the tree's hash chain: (parent, name) */
	struct img_inode *inode;
	unsigned layer;                    /* the last layer that declared it */
};

struct crgw_image_tree {
	struct crgw_image_limits lim;
	struct img_node *root;
	struct img_node **buckets;
	size_t nbuckets, nnodes;
	uint64_t entries, bytes;  /* entries read and content bytes spooled, over every layer */
	unsigned layer;           /* layers applied so far */
	int spool;                /* unlinked file of contents */
	uint64_t spool_end;
};

/* Formats `fmt` into err and returns `rc` (negative errno). */
int img_fail(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Looks `name` up among `dir`'s children. */
struct img_node *img_child(const struct crgw_image_tree *t, const struct img_node *dir, const char *name);

/* "sha256:<hex>" of a digest from OpenSSL. */
void img_hex_digest(const unsigned char md[32], char out[CRGW_IMAGE_ID_LEN]);

/* True for "sha256:" + 64 lower-case hex digits. */
bool img_digest_valid(const char *s);

/* ---- references (ref.c) ---- */

struct img_ref {
	char host[256];   /* host[:port] */
	char name[256];   /* the repository */
	char tag[129];    /* empty when absent */
	char digest[CRGW_IMAGE_ID_LEN]; /* empty when absent */
};

/*
 * Parses "HOST[:PORT]/NAME[:TAG][@sha256:HEX]" (`s`, NUL-terminated, untrusted). The host is required: a
 * first component with a '.' or ':', or "localhost". 0, or -EINVAL with `*why` static.
 */
int img_ref_parse(const char *s, struct img_ref *out, const char **why);

/* ---- image config (config.c) ---- */

#define IMG_CONFIG_MAX_BYTES (4u << 20)

/*
 * Checks an image config blob (`len` bytes, untrusted): a JSON object with "os" "linux" and "architecture"
 * "amd64" when present, and, when present, config.Entrypoint/Cmd (arrays of strings), config.Env (array
 * of strings NAME=VALUE), config.WorkingDir and config.User (strings), and rootfs.diff_ids with `nlayers`
 * entries when `nlayers` is not 0. On success `*summary` is a new object: entrypoint, cmd, env, workdir,
 * user, os, architecture (only those present). 0, -EBADMSG or -E2BIG with `*why` static.
 */
int img_config_parse(const char *doc, size_t len, size_t nlayers, json_t **summary, const char **why);

/* ---- the store (store.c), as pull.c uses it ---- */

struct crgw_image_store {
	char dir[4000];
	int lock; /* the store's lock file: shared while publishing blobs and making an image, exclusive while
		   * removing */
};

/* DIR/blobs/sha256/<hex> of `digest` (valid) into `path`. */
void img_blob_path(const struct crgw_image_store *s, const char *digest, char *path, size_t size);

/* The blob is in the layer store with `size` bytes (-1: any size). */
bool img_blob_have(const struct crgw_image_store *s, const char *digest, int64_t size);

/* A new temporary file in DIR/tmp; its path goes to `path`. Returns the descriptor or -errno. */
int img_tmp_file(const struct crgw_image_store *s, char *path, size_t size);

/*
 * Renames `tmp` (a verified, fsynced file in DIR/tmp) to the blob's path and fsyncs the directory. Under the
 * store's lock (shared): rm collects every blob no image names while it holds the lock exclusively.
 */
int img_blob_publish(const struct crgw_image_store *s, const char *tmp, const char *digest, char *err,
		     size_t errlen);

/* fsyncs `fd` (closed here), then img_blob_publish; `tmp` is removed when that fails. Under the lock. */
int img_blob_commit(const struct crgw_image_store *s, int fd, const char *tmp, const char *digest, char *err,
		    size_t errlen);

/* Stores `len` bytes already verified as `digest`. */
int img_blob_put(const struct crgw_image_store *s, const char *digest, const void *buf, size_t len, char *err,
		 size_t errlen);

/*
 * Applies the layers named by `record`'s "layers" (each verified again against its digest while read),
 * injects the guest, writes the ext4 image and image.json into a temporary directory, and renames it into
 * images/<hex of id>. `import`: the layer is a tarball a user gave as a root file system, refused when it is
 * a saved image instead (img_tree_kind). Takes `record` (a reference is consumed). The caller holds the
 * store's lock, shared.
 */
int img_build(struct crgw_image_store *s, const char *id, json_t *record, const struct crgw_image_opts *o,
	      bool import, char *err, size_t errlen);

/*
 * Whether image `id` is in the store already, asked with `o`'s guest: 1 when it is, with the same guest
 * (or none with none); 0 when it is not; -EEXIST when it is with another guest, and -errno when the guest
 * file is unusable (checked first, so a wrong --guest fails even for an image already there).
 */
int img_existing(struct crgw_image_store *s, const char *id, const struct crgw_image_opts *o, char *err,
		 size_t errlen);

/*
 * Puts the regular file open at `fd` (borrowed, read from its current offset to its end; `src` names it in
 * messages) at `path` with `mode`, owned by root.
 */
int img_tree_inject_fd(struct crgw_image_tree *t, int fd, const char *src, const char *path, unsigned mode,
		       char *err, size_t errlen);

enum img_tree_kind {
	IMG_TREE_ROOTFS,      /* anything that is not one of the below */
	IMG_TREE_OCI_LAYOUT,  /* oci-layout and index.json at the top */
	IMG_TREE_DOCKER_SAVE, /* manifest.json and DIR/layer.tar at the top */
};

/*
 * Whether the tree is a saved image rather than a root file system: an OCI image layout or a docker save
 * archive at its top, and none of the directories a root file system has there (bin, usr, etc, ...).
 * Import asks it after applying the tarball, so a saved image is told apart in the one pass over it.
 */
enum img_tree_kind img_tree_kind(const struct crgw_image_tree *t);

void img_progress(const struct crgw_image_opts *o, enum crgw_image_event ev, const char *digest, uint64_t bytes,
		  uint64_t total, unsigned index, unsigned count, bool cached);

#endif
