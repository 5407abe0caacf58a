/* SPDX-License-Identifier: Apache-2.0 */
/* The merged tree written as a new ext4 file system with libext2fs: no mount, no root, no loop device. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <et/com_err.h>
#include <ext2fs/ext2_err.h>
#include <ext2fs/ext2fs.h>

#include "image_priv.h"

#define BLOCK 4096u
#define INODE_SIZE 256u /* room for i_extra_isize; what mke2fs makes */

struct sizing {
	uint64_t blocks, inodes;
};

/* Counts blocks and inodes, marking each inode once (ino = 1) so hard links count once; unmarked after. */
static void measure(const struct img_node *dir, struct sizing *z, int mark)
{
	uint64_t dirent = 24;

	for (const struct img_node *c = dir->first; c; c = c->next) {
		struct img_inode *in = c->inode;

		dirent += 8 + ((strlen(c->name) + 3) & ~3u);
		if (mark && in->ino)
			continue;
		in->ino = (uint32_t)mark;
		if (!mark)
			continue;
		z->inodes++;
		if (S_ISREG(in->mode)) {
			uint64_t b = (in->size + BLOCK - 1) / BLOCK;

			z->blocks += b + b / 256 + 1; /* data, and extent tree blocks for a fragmented file */
		} else if (S_ISLNK(in->mode) && strlen(in->target) >= 60) {
			z->blocks++;
		}
	}
	/* Linear directories, filled to about two thirds when entries come and go. */
	if (mark)
		z->blocks += (dirent * 3 / 2 + BLOCK - 1) / BLOCK + 1;
	for (const struct img_node *c = dir->first; c; c = c->next)
		if (S_ISDIR(c->inode->mode))
			measure(c, z, mark);
}

static const char *e2err(errcode_t e)
{
	return error_message(e);
}

/* Maps libext2fs's "no space" family to -ENOSPC, so the caller can retry with a bigger file system. */
static int e2rc(errcode_t e)
{
	switch (e) {
	case EXT2_ET_BLOCK_ALLOC_FAIL:
	case EXT2_ET_INODE_ALLOC_FAIL:
	case EXT2_ET_DIR_NO_SPACE:
	case ENOSPC:
		return -ENOSPC;
	default:
		return -EIO;
	}
}

struct writer {
	ext2_filsys fs;
	struct crgw_image_tree *t;
	char *buf;
	size_t bufsz;
	char *err;
	size_t errlen;
};

static int fail_e2(struct writer *w, errcode_t e, const char *what, const char *name)
{
	return img_fail(w->err, w->errlen, e2rc(e), "ext4: %s \"%.200s\": %s", what, name, e2err(e));
}

static void set_time(uint32_t *field, int64_t t)
{
	/* The 32-bit seconds field; times before 1970 or after 2038 are clamped (docs/images.md). */
	*field = t < 0 ? 0 : t > INT32_MAX ? (uint32_t)INT32_MAX : (uint32_t)t;
}

/* The file's metadata onto its inode, keeping its type, links and blocks. */
static int set_attrs(struct writer *w, ext2_ino_t ino, const struct img_inode *in, const char *name)
{
	struct ext2_inode inode;
	errcode_t e;

	if ((e = ext2fs_read_inode(w->fs, ino, &inode)))
		return fail_e2(w, e, "reading the inode of", name);
	inode.i_mode = (uint16_t)((inode.i_mode & LINUX_S_IFMT) | (in->mode & 07777));
	inode.i_uid = (uint16_t)in->uid;
	ext2fs_set_i_uid_high(inode, in->uid >> 16);
	inode.i_gid = (uint16_t)in->gid;
	ext2fs_set_i_gid_high(inode, in->gid >> 16);
	set_time(&inode.i_mtime, in->mtime);
	set_time(&inode.i_atime, in->mtime);
	set_time(&inode.i_ctime, in->mtime);
	if (S_ISREG(in->mode) && (e = ext2fs_inode_size_set(w->fs, &inode, in->size)))
		return fail_e2(w, e, "setting the size of", name);
	if ((e = ext2fs_write_inode(w->fs, ino, &inode)))
		return fail_e2(w, e, "writing the inode of", name);
	return 0;
}

/* ext2fs_link, growing the directory when it is full. */
static errcode_t link_in(ext2_filsys fs, ext2_ino_t dir, const char *name, ext2_ino_t ino, int ft)
{
	errcode_t e = ext2fs_link(fs, dir, name, ino, ft);

	if (e == EXT2_ET_DIR_NO_SPACE && !(e = ext2fs_expand_dir(fs, dir)))
		e = ext2fs_link(fs, dir, name, ino, ft);
	return e;
}

static int file_type(unsigned mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return EXT2_FT_REG_FILE;
	case S_IFDIR:
		return EXT2_FT_DIR;
	case S_IFLNK:
		return EXT2_FT_SYMLINK;
	case S_IFCHR:
		return EXT2_FT_CHRDEV;
	case S_IFBLK:
		return EXT2_FT_BLKDEV;
	default:
		return EXT2_FT_FIFO;
	}
}

/* A new inode of any type but directory and symlink, linked as `name` in `dir`. */
static int make_inode(struct writer *w, ext2_ino_t dir, const char *name, struct img_inode *in, ext2_ino_t *out)
{
	struct ext2_inode inode;
	ext2_ino_t ino;
	errcode_t e;

	if ((e = ext2fs_new_inode(w->fs, dir, (int)(in->mode & 0xffff), 0, &ino)))
		return fail_e2(w, e, "allocating an inode for", name);
	if ((e = link_in(w->fs, dir, name, ino, file_type(in->mode))))
		return fail_e2(w, e, "linking", name);
	ext2fs_inode_alloc_stats2(w->fs, ino, +1, 0);
	memset(&inode, 0, sizeof(inode));
	inode.i_mode = (uint16_t)in->mode;
	inode.i_links_count = 1;
	if (S_ISCHR(in->mode) || S_ISBLK(in->mode)) {
		/* The device number encodings of the kernel's ext4 (old for small numbers, new otherwise). */
		if (in->rmajor < 256 && in->rminor < 256) {
			inode.i_block[0] = in->rmajor * 256 + in->rminor;
		} else {
			inode.i_block[1] = (in->rminor & 0xff) | (in->rmajor << 8) | ((in->rminor & ~0xffu) << 12);
		}
	} else if (S_ISREG(in->mode) && ext2fs_has_feature_extents(w->fs->super)) {
		ext2_extent_handle_t h;

		/* An empty extent tree in the inode (what create_inode.c in e2fsprogs does). */
		if ((e = ext2fs_extent_open2(w->fs, ino, &inode, &h)))
			return fail_e2(w, e, "starting the extents of", name);
		ext2fs_extent_free(h);
	}
	if ((e = ext2fs_write_new_inode(w->fs, ino, &inode)))
		return fail_e2(w, e, "writing the inode of", name);
	*out = ino;
	return 0;
}

static int copy_contents(struct writer *w, ext2_ino_t ino, const struct img_inode *in, const char *name)
{
	ext2_file_t f;
	uint64_t done = 0;
	errcode_t e;
	int rc = 0;

	if (!in->size)
		return 0;
	if ((e = ext2fs_file_open(w->fs, ino, EXT2_FILE_WRITE, &f)))
		return fail_e2(w, e, "opening", name);
	while (done < in->size) {
		size_t want = in->size - done < w->bufsz ? (size_t)(in->size - done) : w->bufsz;
		ssize_t n = pread(w->t->spool, w->buf, want, (off_t)(in->data_off + done));
		unsigned int wrote;

		if (n <= 0) {
			rc = img_fail(w->err, w->errlen, n < 0 ? -errno : -EIO, "reading the spool for \"%.200s\"", name);
			break;
		}
		for (size_t off = 0; off < (size_t)n; off += wrote) {
			if ((e = ext2fs_file_write(f, w->buf + off, (unsigned)((size_t)n - off), &wrote))) {
				rc = fail_e2(w, e, "writing", name);
				break;
			}
			if (!wrote) {
				rc = img_fail(w->err, w->errlen, -ENOSPC, "ext4: writing \"%.200s\": no progress", name);
				break;
			}
		}
		if (rc)
			break;
		done += (uint64_t)n;
	}
	if ((e = ext2fs_file_close(f)) && !rc)
		rc = fail_e2(w, e, "closing", name);
	return rc;
}

static int write_dir(struct writer *w, const struct img_node *dir, ext2_ino_t dir_ino)
{
	for (const struct img_node *c = dir->first; c; c = c->next) {
		struct img_inode *in = c->inode;
		ext2_ino_t ino;
		errcode_t e;
		int rc;

		if (in->ino) {
			/* Another name of a file already written: a hard link. */
			struct ext2_inode inode;

			if ((e = link_in(w->fs, dir_ino, c->name, in->ino, file_type(in->mode))))
				return fail_e2(w, e, "linking", c->name);
			if ((e = ext2fs_read_inode(w->fs, in->ino, &inode)))
				return fail_e2(w, e, "reading", c->name);
			inode.i_links_count++;
			if ((e = ext2fs_write_inode(w->fs, in->ino, &inode)))
				return fail_e2(w, e, "writing", c->name);
			continue;
		}
		if (S_ISDIR(in->mode)) {
			if ((e = ext2fs_new_inode(w->fs, dir_ino, LINUX_S_IFDIR | 0755, 0, &ino)))
				return fail_e2(w, e, "allocating an inode for", c->name);
			e = ext2fs_mkdir(w->fs, dir_ino, ino, c->name);
			if (e == EXT2_ET_DIR_NO_SPACE && !(e = ext2fs_expand_dir(w->fs, dir_ino)))
				e = ext2fs_mkdir(w->fs, dir_ino, ino, c->name);
			if (e)
				return fail_e2(w, e, "making the directory", c->name);
		} else if (S_ISLNK(in->mode)) {
			if ((e = ext2fs_new_inode(w->fs, dir_ino, LINUX_S_IFLNK | 0777, 0, &ino)))
				return fail_e2(w, e, "allocating an inode for", c->name);
			/* Room first: ext2fs_symlink would allocate the inode before finding the directory full. */
			e = ext2fs_symlink(w->fs, dir_ino, ino, c->name, in->target);
			if (e == EXT2_ET_DIR_NO_SPACE && !(e = ext2fs_expand_dir(w->fs, dir_ino)))
				e = ext2fs_symlink(w->fs, dir_ino, ino, c->name, in->target);
			if (e)
				return fail_e2(w, e, "making the symbolic link", c->name);
		} else if ((rc = make_inode(w, dir_ino, c->name, in, &ino))) {
			return rc;
		}
		in->ino = ino;
		if (S_ISREG(in->mode) && (rc = copy_contents(w, ino, in, c->name)))
			return rc;
		if ((rc = set_attrs(w, ino, in, c->name)))
			return rc;
		if (S_ISDIR(in->mode) && (rc = write_dir(w, c, ino)))
			return rc;
	}
	return 0;
}

static void clear_inos(const struct img_node *dir)
{
	for (const struct img_node *c = dir->first; c; c = c->next) {
		c->inode->ino = 0;
		if (S_ISDIR(c->inode->mode))
			clear_inos(c);
	}
}

static int write_fs(struct crgw_image_tree *t, const char *path, uint64_t bytes, uint64_t inodes, char *err,
		    size_t errlen)
{
	struct ext2_super_block param;
	struct writer w = { .t = t, .err = err, .errlen = errlen, .bufsz = 1u << 20 };
	ext2_ino_t lf;
	errcode_t e;
	int rc = 0, fd;

	fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0)
		return img_fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
	/* Sparse: every block libext2fs does not write reads as zeros, so inode tables need no zeroing. */
	if (ftruncate(fd, (off_t)bytes)) {
		rc = img_fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	close(fd);

	memset(&param, 0, sizeof(param));
	ext2fs_blocks_count_set(&param, bytes / BLOCK);
	param.s_log_block_size = 2; /* 4 KiB */
	param.s_rev_level = EXT2_DYNAMIC_REV;
	param.s_inode_size = INODE_SIZE;
	param.s_inodes_count = (uint32_t)inodes;
	param.s_creator_os = EXT2_OS_LINUX;
	ext2fs_set_feature_filetype(&param);
	ext2fs_set_feature_extents(&param);
	ext2fs_set_feature_sparse_super(&param);
	ext2fs_set_feature_large_file(&param);
	ext2fs_set_feature_huge_file(&param);
	ext2fs_set_feature_dir_nlink(&param);
	ext2fs_set_feature_extra_isize(&param);
	param.s_min_extra_isize = param.s_want_extra_isize = 32;

	if ((e = ext2fs_initialize(path, EXT2_FLAG_RW | EXT2_FLAG_64BITS, &param, unix_io_manager, &w.fs))) {
		rc = img_fail(err, errlen, -EIO, "ext4: initializing %s: %s", path, e2err(e));
		goto out;
	}
	if (getrandom(w.fs->super->s_uuid, sizeof(w.fs->super->s_uuid), 0) != sizeof(w.fs->super->s_uuid) ||
	    getrandom(w.fs->super->s_hash_seed, sizeof(w.fs->super->s_hash_seed), 0) !=
		    sizeof(w.fs->super->s_hash_seed)) {
		rc = img_fail(err, errlen, -EIO, "getrandom: %s", strerror(errno));
		goto out;
	}
	w.fs->super->s_uuid[6] = (w.fs->super->s_uuid[6] & 0x0f) | 0x40; /* a version 4 UUID */
	w.fs->super->s_uuid[8] = (w.fs->super->s_uuid[8] & 0x3f) | 0x80;
	w.fs->super->s_def_hash_version = EXT2_HASH_HALF_MD4;
	w.fs->super->s_max_mnt_count = 0xffff;
	if ((e = ext2fs_allocate_tables(w.fs))) {
		rc = img_fail(err, errlen, e2rc(e), "ext4: allocating tables: %s", e2err(e));
		goto out;
	}
	if ((e = ext2fs_mkdir(w.fs, EXT2_ROOT_INO, EXT2_ROOT_INO, 0))) {
		rc = img_fail(err, errlen, e2rc(e), "ext4: making the root: %s", e2err(e));
		goto out;
	}
	/* The reserved inodes, and the bad blocks inode (empty), as mke2fs leaves them. */
	for (ext2_ino_t i = EXT2_ROOT_INO + 1; i < EXT2_FIRST_INODE(w.fs->super); i++)
		ext2fs_inode_alloc_stats2(w.fs, i, +1, 0);
	ext2fs_inode_alloc_stats2(w.fs, EXT2_BAD_INO, +1, 0);
	if ((e = ext2fs_update_bb_inode(w.fs, NULL))) {
		rc = img_fail(err, errlen, e2rc(e), "ext4: the bad blocks inode: %s", e2err(e));
		goto out;
	}
	if (!img_child(t, t->root, "lost+found")) {
		if ((e = ext2fs_mkdir(w.fs, EXT2_ROOT_INO, 0, "lost+found")) ||
		    (e = ext2fs_lookup(w.fs, EXT2_ROOT_INO, "lost+found", 10, NULL, &lf))) {
			rc = img_fail(err, errlen, e2rc(e), "ext4: lost+found: %s", e2err(e));
			goto out;
		}
		/* e2fsck wants room there without growing it: four blocks, as mke2fs makes it. */
		for (int i = 0; i < 3 && !e; i++)
			e = ext2fs_expand_dir(w.fs, lf);
		if (e) {
			rc = img_fail(err, errlen, e2rc(e), "ext4: lost+found: %s", e2err(e));
			goto out;
		}
	}
	if (!(w.buf = malloc(w.bufsz))) {
		rc = img_fail(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	t->root->inode->ino = EXT2_ROOT_INO;
	if ((rc = set_attrs(&w, EXT2_ROOT_INO, t->root->inode, "/")) || (rc = write_dir(&w, t->root, EXT2_ROOT_INO)))
		goto out;
out:
	clear_inos(t->root);
	t->root->inode->ino = 0;
	free(w.buf);
	if (w.fs) {
		if ((e = ext2fs_close_free(&w.fs)) && !rc)
			rc = img_fail(err, errlen, e2rc(e), "ext4: closing %s: %s", path, e2err(e));
		else if (e)
			ext2fs_free(w.fs);
	}
	if (!rc) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fsync(fd))
			rc = img_fail(err, errlen, -errno, "fsync %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	if (rc)
		unlink(path);
	return rc;
}

int crgw_image_ext4_write(struct crgw_image_tree *t, const char *path, uint64_t extra_bytes, uint64_t *size,
			  char *err, size_t errlen)
{
	struct sizing z = { 0, 0 };
	uint64_t bytes, inodes;
	int rc;

	initialize_ext2_error_table();
	measure(t->root, &z, 1);
	measure(t->root, &z, 0);
	inodes = z.inodes + z.inodes / 10 + 64;
	if (inodes < 1024)
		inodes = 1024;
	/* Data and directories, a tenth more, the inode tables, and 8 MiB for the rest of the metadata. */
	bytes = z.blocks * BLOCK + z.blocks * BLOCK / 10 + inodes * INODE_SIZE + (8u << 20) + extra_bytes;
	/* A size estimate that proves short (a fragmented free space) is retried twice, bigger each time. */
	for (int attempt = 0;; attempt++) {
		bytes = (bytes + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
		if (inodes > UINT32_MAX - 1024)
			return img_fail(err, errlen, -E2BIG, "ext4: too many files");
		rc = write_fs(t, path, bytes, inodes, err, errlen);
		if (rc != -ENOSPC || attempt == 2)
			break;
		bytes = bytes * 3 / 2;
		inodes = inodes * 3 / 2;
	}
	if (!rc && size)
		*size = bytes;
	return rc;
}
