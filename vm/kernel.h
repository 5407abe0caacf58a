/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a VM backend boots: the distribution's kernel, unpacked once to the ELF `vmlinux` that QEMU starts
 * through PVH (about twice as fast as the compressed bzImage under TCG), and an initramfs made here with
 * the guest's init and the kernel modules it needs before it can reach its root file system and its host.
 * Both are cached by content under a directory the caller names; a cache entry appears whole (written,
 * synced and renamed) or not at all.
 */
#ifndef CRGW_VM_KERNEL_H
#define CRGW_VM_KERNEL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

struct vm_kernel {
	char release[128];	    /* "6.1.0-57-amd64" */
	char bzimage[PATH_MAX];	    /* /boot/vmlinuz-RELEASE */
	char vmlinux[PATH_MAX];	    /* the cached ELF; empty when the kernel has no PVH entry point */
	char modules_dir[PATH_MAX]; /* /lib/modules/RELEASE */
};

/*
 * Finds the kernel to boot: `release`, or the newest /boot/vmlinuz-* when NULL, from `boot_dir` ("/boot"
 * when NULL) and its modules under `modules_root` ("/lib/modules" when NULL). Unpacks it into
 * `cache_dir`/kernels/ unless there already. Returns 0, -ENOENT when there is no such kernel (with a
 * message that says which package provides one), or -errno with `err`.
 */
int vm_kernel_prepare(const char *cache_dir, const char *boot_dir, const char *modules_root, const char *release,
		      struct vm_kernel *out, char *err, size_t errlen);

/*
 * Unpacks the ELF kernel inside the bzImage at `bzimage` into `out_path` (through a temporary file).
 * `*pvh` says whether it has the PVH entry note QEMU needs to boot it directly. Returns 0 or -errno
 * (-ENOEXEC: not a bzImage, or no ELF inside) with `err`.
 */
int vm_kernel_unpack(const char *bzimage, const char *out_path, bool *pvh, char *err, size_t errlen);

/*
 * The modules `names` (as modprobe names them: "virtio_net") need, with their dependencies from
 * modules.dep, in an order that loads each after what it depends on; built-in ones (modules.builtin)
 * are left out. Calls `cb` with each module's path relative to `modules_dir`. Returns 0, -ENOENT for an
 * unknown module (named in `err`), or -errno.
 */
int vm_modules_resolve(const char *modules_dir, const char *const *names, int (*cb)(void *arg, const char *relpath),
		       void *arg, char *err, size_t errlen);

/* The modules a QEMU guest needs: virtio over PCI, its console, block, network, and ext4 (with crc32c). */
extern const char *const vm_guest_modules[];

/* One more entry of an initramfs: a copy of `source`, a symbolic link to `link_target`, or `text`. */
struct vm_initramfs_file {
	const char *path; /* inside, relative ("bin/busybox"); parent directories are made */
	const char *source;
	const char *link_target;
	const char *text;
	unsigned mode; /* permission bits of a file */
};

/*
 * Writes an initramfs (newc cpio, uncompressed: the kernel unpacks it fastest) to `cache_dir`/initramfs/
 * and sets `out_path`: `init` (a static program) as /init, the resolved modules under
 * /lib/modules/RELEASE/ (decompressed if the distribution compresses them), and /etc/crgw-guest/modules listing
 * them in load order, one path per line, then the `extra` entries. Cached by a digest of everything it contains. Returns 0 or
 * -errno with `err`.
 */
int vm_initramfs_build(const char *cache_dir, const struct vm_kernel *k, const char *init, const char *const *modules,
		       const struct vm_initramfs_file *extra, size_t nextra, char *out_path, size_t out_len, char *err,
		       size_t errlen);

#endif
