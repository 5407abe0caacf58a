/* SPDX-License-Identifier: Apache-2.0 */
/* Test helper: puts a file into a cache directory through libcrgw-cache and prints its digest. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"

/*
 * usage: cache_put DIR FILE [sha256|sha512]
 * Reads FILE whole (at most 64 MiB: test objects are small), computes its digest, fills it into the cache
 * at DIR (bound 1 GiB) and closes the cache, which writes the index. Prints "sha256:<hex>" on stdout.
 * Exit 0, or 1 with the cause on stderr. The gateway must not have DIR open.
 */
int main(int argc, char **argv)
{
	struct crgw_cache_config cfg = { .max_bytes = UINT64_C(1) << 30 };
	enum crgw_digest_alg alg = CRGW_DIGEST_SHA256;
	struct crgw_cache *c = NULL;
	struct crgw_cache_fill *fill = NULL;
	struct crgw_cache_follower *follower = NULL;
	struct crgw_digest d;
	char text[CRGW_DIGEST_TEXT_MAX];
	struct stat st;
	char *buf = NULL;
	ssize_t n;
	int fd = -1, err, status = 1;

	if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "sha256") && strcmp(argv[3], "sha512"))) {
		fprintf(stderr, "usage: cache_put DIR FILE [sha256|sha512]\n");
		return 2;
	}
	if (argc == 4 && !strcmp(argv[3], "sha512"))
		alg = CRGW_DIGEST_SHA512;
	fd = open(argv[2], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > (64 << 20)) {
		fprintf(stderr, "cache_put: %s: %s\n", argv[2], fd < 0 ? strerror(errno) : "not a regular file of at most 64 MiB");
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		goto out;
	n = read(fd, buf, (size_t)st.st_size);
	if (n != st.st_size) {
		fprintf(stderr, "cache_put: %s: short read\n", argv[2]);
		goto out;
	}
	if ((err = crgw_digest_compute(alg, buf, (size_t)n, &d)) || crgw_digest_format(&d, text, sizeof(text)) < 0) {
		fprintf(stderr, "cache_put: digest failed\n");
		goto out;
	}
	cfg.dir = argv[1];
	err = crgw_cache_open(&cfg, &c);
	if (err) {
		fprintf(stderr, "cache_put: open %s: %s\n", argv[1], strerror(-err));
		goto out;
	}
	err = crgw_cache_fill_begin(c, &d, n, NULL, NULL, &fill, &follower);
	if (err == -EEXIST) {
		status = 0; /* already there: the same bytes */
	} else if (err || !fill) {
		fprintf(stderr, "cache_put: fill: %s\n", strerror(err ? -err : EBUSY));
		crgw_cache_follower_close(follower);
	} else if ((err = crgw_cache_fill_write(fill, buf, (size_t)n))) {
		fprintf(stderr, "cache_put: write: %s\n", strerror(-err));
		crgw_cache_fill_abort(fill);
	} else if ((err = crgw_cache_fill_commit(fill))) { /* frees the fill either way */
		fprintf(stderr, "cache_put: commit: %s\n", strerror(-err));
	} else {
		status = 0;
	}
	if (status == 0)
		printf("%s\n", text);
out:
	crgw_cache_close(c);
	free(buf);
	if (fd >= 0)
		close(fd);
	return status;
}
