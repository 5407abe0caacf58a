/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcrgw-disk: a sandbox's data directory as a file system of its own, so that a job that writes without
 * end fills its own disk (ENOSPC inside) and never the host's. The file system is ext4 in an image file
 * beside the directory, its space reserved, on a loop device that goes away by itself once the last mount of it does
 * (autoclear). Used by the gateway's control and teardown threads.
 */
#ifndef CRGW_DISK_H
#define CRGW_DISK_H

#include <stddef.h>
#include <stdint.h>

/* The smallest disk made: limits.disk's least (CRGW_LIMIT_DISK_MIN in crgw/limits.h), the probe's size. */
#define CRGW_DISK_MIN (64ull << 20)

/*
 * Makes an ext4 file system of `bytes` in the new image file `image` and mounts it on the directory `dir`
 * (which exists and is empty), owned by root with mode 0700. The image's space is reserved whole (and
 * written only as the sandbox writes): a disk that does not fit is refused now (-ENOSPC, -EFBIG), never
 * found short later. Returns 0, or -errno with the reason in `err`, having left neither the image nor a
 * mount behind.
 */
int crgw_disk_create(const char *image, const char *dir, uint64_t bytes, char *err, size_t errlen);

/*
 * Detaches the file system mounted on `dir` from this mount namespace (lazily: what still uses it keeps
 * it until it lets go, and the loop device goes with the last user). 0 when `dir` holds no mount.
 */
int crgw_disk_detach(const char *dir);

/* Detaches every mount beneath the directory `parent` (a previous run's disks); their count in `count`. */
int crgw_disk_detach_beneath(const char *parent, unsigned *count);

/* What the file system on `dir` holds and what is left for a writer, in bytes. Returns 0 or -errno. */
int crgw_disk_usage(const char *dir, uint64_t *used, uint64_t *left);

/*
 * Whether this host can give sandboxes disks of `bytes`: makes, mounts and removes one in `scratch_dir`.
 * Returns 0, or -errno with what is missing in `why` (no loop devices, no ext4, no mke2fs, no room).
 */
int crgw_disk_probe(const char *scratch_dir, uint64_t bytes, char *why, size_t whylen);

#endif
