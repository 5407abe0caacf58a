/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcrgw-image: OCI images to ext4 root file systems for the VM backends. Pulls digest-pinned images from
 * a registry (libcurl; the token flow; every blob verified against its digest while streaming) into a
 * shared layer store, applies their layers in order in memory (libarchive; whiteouts, opaque directories,
 * links, devices; hostile archives refused), and writes an ext4 image with libext2fs without mounting and
 * without root. Images are cached by digest in a store directory (docs/images.md).
 *
 * Used by crgw-ctl and the VM backends, in the calling thread; nothing here starts a thread or keeps global
 * state, so separate stores may be used from separate threads. Every function returns 0 or -errno and, on
 * failure, writes one line saying why into `err` (`errlen` bytes, NUL-terminated).
 */
#ifndef CRGW_IMAGE_H
#define CRGW_IMAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where crgw-ctl keeps images unless --store or CRGW_IMAGE_STORE says otherwise. */
#define CRGW_IMAGE_STORE_DEFAULT "/var/lib/crgw/images"

/* "sha256:" + 64 lower-case hex digits, NUL-terminated. */
#define CRGW_IMAGE_ID_LEN 72

/* Bounds on what one image may unpack to; every layer of an image counts against the same totals. */
struct crgw_image_limits {
	uint64_t max_bytes;    /* uncompressed bytes of file contents, summed over layers (gzip bombs) */
	uint64_t max_entries;  /* archive entries, summed over layers */
	unsigned max_depth;    /* path components */
	uint64_t max_blob;     /* bytes of one blob as the manifest declares it */
};

/* 16 GiB, 1,000,000 entries, depth 128, blobs of at most 8 GiB. */
void crgw_image_limits_default(struct crgw_image_limits *l);

/* ---- progress ---- */

enum crgw_image_event {
	CRGW_IMAGE_EV_MANIFEST,  /* digest: the manifest chosen (platform linux/amd64) */
	CRGW_IMAGE_EV_BLOB,      /* digest, bytes of total: a blob downloading (called at most ~10 times/s) */
	CRGW_IMAGE_EV_BLOB_DONE, /* digest, total: verified and stored; cached: it was already in the store;
				  * resumed: bytes an interrupted run had fetched */
	CRGW_IMAGE_EV_APPLY,     /* digest, index of count: a layer being applied */
	CRGW_IMAGE_EV_WRITE,     /* total: bytes of the ext4 image about to be written */
	CRGW_IMAGE_EV_DONE,      /* digest: the image's id */
};

struct crgw_image_progress {
	enum crgw_image_event ev;
	const char *digest; /* borrowed for the call */
	uint64_t bytes, total;
	unsigned index, count; /* blobs or layers: 1-based index of count */
	bool cached;
	uint64_t resumed;      /* BLOB_DONE: bytes an earlier, interrupted run had fetched (Range) */
};

/* Called in the calling thread, synchronously, from inside pull/import. */
typedef void (*crgw_image_progress_cb)(const struct crgw_image_progress *p, void *arg);

/* ---- the store ---- */

struct crgw_image_store;

/*
 * Opens (creating, 0700) the store at `dir`: blobs/sha256/ (the layer store, shared by every image),
 * images/<hex>/ (rootfs.ext4 and image.json per image), tmp/ (what an interrupted run leaves; on open,
 * cleared of a killed build's or, when no one holds the store's lock, a killed rm's directory, and of files
 * older than a day). Returns a new store in `*out`.
 */
int crgw_image_store_open(const char *dir, struct crgw_image_store **out, char *err, size_t errlen);
void crgw_image_store_close(struct crgw_image_store *s); /* NULL is fine */

/* What pull and import take. Every pointer is borrowed for the call; all may be NULL. */
struct crgw_image_opts {
	const char *ca_file;   /* PEM bundle to verify registries with (else the system's) */
	/*
	 * Fetch through the gateway's OCI mediation: the base URL of its direct form, e.g.
	 * "http://10.201.0.1:8170/registry/oci"; requests go to MIRROR/<registry host>/v2/... over that URL's
	 * scheme (http is allowed here only), and the gateway does the token flow upstream.
	 */
	const char *mirror;
	const char *username;  /* registry credentials for the token endpoint (Basic), with password */
	const char *password;  /* borrowed; never logged, never written to disk */
	const char *guest;     /* a file injected as /sbin/crgw-guest (0755, root) when not NULL */
	const struct crgw_image_limits *limits; /* NULL: the defaults */
	crgw_image_progress_cb progress;
	void *progress_arg;
	long timeout_s;        /* per HTTP request without progress; 0: 60 s */
};

/*
 * Resolves `ref` ("HOST[:PORT]/NAME:TAG" or "...@sha256:...") to the digest of the manifest (or index) the
 * registry serves for it, verified against the bytes, and writes "HOST/NAME@sha256:..." (`pinned`,
 * `pinnedlen`). Nothing is stored.
 */
int crgw_image_resolve(const char *ref, const struct crgw_image_opts *o, char *pinned, size_t pinnedlen,
		       char *err, size_t errlen);

/*
 * Pulls `ref`, which must be pinned ("HOST[:PORT]/NAME[:TAG]@sha256:<hex>"; a tag alone is refused with
 * -EINVAL), into the store and makes its ext4 image; the image's id (the pinned digest) goes to `id`. An
 * image already in the store is not pulled again. Blobs already verified in the layer store are not
 * fetched again, and a blob an interrupted run had begun is continued where it stopped (HTTP Range; the
 * whole checked against its digest), so a run after an interruption resumes. On failure no image is left.
 * The store's lock is taken only to publish the verified blobs and make the image, never while the
 * registry is waited on, so a slow registry holds up no crgw_image_remove.
 */
int crgw_image_pull(struct crgw_image_store *s, const char *ref, const struct crgw_image_opts *o,
		    char id[CRGW_IMAGE_ID_LEN], char *err, size_t errlen);

/*
 * Makes an image from a root file system tarball (tar, optionally gzip or zstd) at `path`. Its id is the
 * sha256 of the tarball's bytes as read. A saved image (an OCI image layout, a docker save archive) is
 * refused with -EINVAL and a message that says what it is and how to make an image of it.
 */
int crgw_image_import(struct crgw_image_store *s, const char *path, const struct crgw_image_opts *o,
		      char id[CRGW_IMAGE_ID_LEN], char *err, size_t errlen);

/*
 * Finds an image by id: "sha256:<hex>", or a unique prefix of at least 12 hex digits (with or without
 * "sha256:"). Writes the full id to `id` (may be NULL). -ENOENT when none, -EEXIST when ambiguous.
 */
int crgw_image_find(struct crgw_image_store *s, const char *idref, char id[CRGW_IMAGE_ID_LEN], char *err,
		    size_t errlen);

/*
 * What a VM backend calls: the absolute path of the complete ext4 root file system of image `idref`
 * (as crgw_image_find takes it). The file belongs to the store and is never changed once there: a backend
 * opens it read-only (a copy-on-write overlay per sandbox). -ENOENT when the image is not in the store.
 */
int crgw_image_rootfs(struct crgw_image_store *s, const char *idref, char *path, size_t pathlen, char *err,
		      size_t errlen);

/* Image `idref`'s record (image.json: id, reference, manifest, config, layers, size, ...): a new reference. */
int crgw_image_inspect(struct crgw_image_store *s, const char *idref, json_t **out, char *err, size_t errlen);

/* Every image's record, oldest first: a new array. */
int crgw_image_list(struct crgw_image_store *s, json_t **out, char *err, size_t errlen);

/* Removes image `idref`, then every blob of the layer store no remaining image names. */
int crgw_image_remove(struct crgw_image_store *s, const char *idref, char *err, size_t errlen);

/* ---- the pieces, for tests, fuzzers and the VM module's built-in image ---- */

struct crgw_image_tree;

/*
 * A new merged tree holding only "/" (0755, root). File contents are spooled to an unlinked file made in
 * `spool_dir`. `limits` may be NULL (the defaults); it is copied.
 */
int crgw_image_tree_new(const char *spool_dir, const struct crgw_image_limits *limits,
			struct crgw_image_tree **out, char *err, size_t errlen);
void crgw_image_tree_free(struct crgw_image_tree *t); /* NULL is fine */

/*
 * Applies one layer, a tar stream (uncompressed, gzip or zstd), read from `fd` (borrowed, read to its end)
 * on top of what the tree holds. When `sha256` is not NULL the sha256 of the bytes read is written there
 * as "sha256:<hex>". -EINVAL for a refused entry (absolute path, "..", through a non-directory, a link to
 * nothing), -E2BIG past a limit, -EBADMSG for a damaged or truncated archive. After a failure the tree
 * must only be freed.
 */
int crgw_image_tree_apply(struct crgw_image_tree *t, int fd, char sha256[CRGW_IMAGE_ID_LEN], char *err,
			  size_t errlen);

/* Puts the host file `src` at `path` (absolute, parents made 0755) with `mode`, owned by root. */
int crgw_image_tree_inject(struct crgw_image_tree *t, const char *src, const char *path, unsigned mode,
			   char *err, size_t errlen);

/* Entries and bytes of file contents the tree holds now. */
void crgw_image_tree_stats(const struct crgw_image_tree *t, uint64_t *entries, uint64_t *bytes);

/*
 * Writes the tree as a new ext4 file system to `path` (created, must not exist), sized from the tree with
 * `extra_bytes` of free space on top of a small headroom. The size written goes to `*size` (may be NULL).
 */
int crgw_image_ext4_write(struct crgw_image_tree *t, const char *path, uint64_t extra_bytes, uint64_t *size,
			  char *err, size_t errlen);

#endif
