/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the layer applier: the input is one layer (tar, gzip or zstd), applied through a
 * memfd to a new tree with small limits. Whatever it holds, the apply returns 0 or one of its documented
 * errors, and the tree it leaves holds only names without '/', "." or "..", no deeper than the limit.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct crgw_image_tree *t, const struct img_node *dir, unsigned depth)
{
	assert(depth <= t->lim.max_depth);
	for (const struct img_node *c = dir->first; c; c = c->next) {
		assert(c->parent == dir);
		assert(c->name[0] && !strchr(c->name, '/') && strcmp(c->name, ".") && strcmp(c->name, ".."));
		assert(strlen(c->name) <= 255);
		assert(img_child(t, dir, c->name) == c);
		assert(c->inode && c->inode->refs >= 1);
		if (S_ISLNK(c->inode->mode))
			assert(c->inode->target && c->inode->target[0]);
		if (S_ISDIR(c->inode->mode))
			check(t, c, depth + 1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct crgw_image_limits lim = { .max_bytes = 1u << 20, .max_entries = 2000, .max_depth = 16,
					 .max_blob = 1u << 20 };
	struct crgw_image_tree *t;
	char err[512], sha[CRGW_IMAGE_ID_LEN];
	int fd = memfd_create("layer", MFD_CLOEXEC), rc;

	assert(fd >= 0);
	assert(write(fd, data, size) == (ssize_t)size);
	lseek(fd, 0, SEEK_SET);
	rc = crgw_image_tree_new("/tmp", &lim, &t, err, sizeof(err));
	assert(rc == 0);
	rc = crgw_image_tree_apply(t, fd, sha, err, sizeof(err));
	assert(rc == 0 || rc == -EINVAL || rc == -E2BIG || rc == -EBADMSG || rc == -ENOMEM);
	if (rc == 0) {
		assert(img_digest_valid(sha));
		check(t, t->root, 0);
		assert(t->bytes <= lim.max_bytes && t->entries <= lim.max_entries);
	} else {
		assert(err[0]);
	}
	crgw_image_tree_free(t);
	close(fd);
	return 0;
}
