/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcrgw-cache against real files in a fresh directory: digests, round trips, fills that fail, leftovers
 * and a corrupt index at open, bit flips, eviction order, collapsed concurrent fills and their failures, a
 * full disk (root: a 1 MiB tmpfs in a private mount namespace) and a writer killed mid-way through 20
 * fills. The one argument is the index fuzz corpus, replayed so crash inputs stay fixed without libFuzzer.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "cache_priv.h"
#include "tap.h"

static char root[256];

static void tap_skip(const char *why)
{
	tap_count++;
	printf("ok %u - # SKIP %s\n", tap_count, why);
}

/* Deterministic bytes for object `seed`. */
static uint8_t *make_data(unsigned seed, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	uint64_t x = 0x9e3779b97f4a7c15ull * (seed + 1);

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
	return p;
}

static void path_of(const char *dir, const struct crgw_digest *d, char *buf, size_t cap)
{
	char hex[2 * CRGW_DIGEST_MAX_LEN + 1];

	cache_hex(d->bytes, d->len, hex);
	snprintf(buf, cap, "%s/objects/%s/%.2s/%s", dir, cache_alg_name(d->alg), hex, hex);
}

static struct crgw_cache *open_cache(const char *dir, uint64_t max, bool always)
{
	struct crgw_cache_config cfg = { .dir = dir, .max_bytes = max, .verify_always = always };
	struct crgw_cache *c = NULL;
	int err = crgw_cache_open(&cfg, &c);

	if (err)
		printf("# open %s: %s\n", dir, strerror(-err));
	return c;
}

/* begin + write in `chunk` pieces + commit; returns commit's result (or the first error). */
static int fill(struct crgw_cache *c, const struct crgw_digest *d, const uint8_t *data, size_t len, int64_t announce,
		size_t chunk)
{
	struct crgw_cache_fill *f = NULL;
	struct crgw_cache_follower *w = NULL;
	int err = crgw_cache_fill_begin(c, d, announce, NULL, NULL, &f, &w);

	if (err)
		return err;
	if (!f) {
		crgw_cache_follower_close(w);
		return -EALREADY;
	}
	for (size_t o = 0; o < len; o += chunk) {
		err = crgw_cache_fill_write(f, data + o, len - o < chunk ? len - o : chunk);
		if (err) {
			crgw_cache_fill_abort(f);
			return err;
		}
	}
	return crgw_cache_fill_commit(f);
}

/* Reads the object through the verifying reader; returns 0 or the error, *got the bytes handed out. */
static int read_back(struct crgw_cache *c, const struct crgw_digest *d, uint8_t *buf, size_t cap, size_t *got,
		     bool *trusted)
{
	struct crgw_cache_reader *r;
	ssize_t n;
	int err = crgw_cache_read_open(c, d, &r);

	*got = 0;
	if (err)
		return err;
	if (trusted)
		*trusted = crgw_cache_reader_trusted(r);
	while ((n = crgw_cache_reader_read(r, buf + *got, cap - *got < 4096 ? cap - *got : 4096)) > 0)
		*got += (size_t)n;
	crgw_cache_reader_close(r);
	return (int)n;
}

/* Counts regular files beneath `path`. */
static size_t files_in;
static int count_cb(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
	(void)p;
	(void)st;
	(void)ftw;
	if (type == FTW_F)
		files_in++;
	return 0;
}

static size_t count_files(const char *dir, const char *sub)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", dir, sub);
	files_in = 0;
	nftw(p, count_cb, 16, FTW_PHYS);
	return files_in;
}

static int rm_cb(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	(void)type;
	remove(p);
	return 0;
}

static void rm_tree(const char *p)
{
	nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void subdir(const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", root, name);
}

static void flip_bit(const char *path, off_t at)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	if (fd < 0 || pread(fd, &b, 1, at) != 1) {
		printf("# cannot flip a bit in %s\n", path);
		if (fd >= 0)
			close(fd);
		return;
	}
	b ^= 0x10;
	if (pwrite(fd, &b, 1, at) != 1)
		printf("# cannot write %s\n", path);
	close(fd);
}

/* ---- Digests ---- */

static void test_digests(void)
{
	static const char *sri512 =
		"sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==";
	static const char *sri256 = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
	static const char *hex256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
	static const char *bad[] = {
		"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",   /* 63 digits */
		"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8550", /* 65 */
		"sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"md5:d41d8cd98f00b204e9800998ecf8427e",
		"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",  /* no padding */
		"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=", /* non-zero spare bits */
		"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuF==", /* too short */
		"sha512-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", /* 32 bytes named sha512 */
		"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hS=FU=",
		"sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"sha256:",
		"",
	};
	struct crgw_digest d, e, empty;
	char buf[CRGW_DIGEST_TEXT_MAX];
	bool all = true;

	tap_result(crgw_digest_compute(CRGW_DIGEST_SHA512, "", 0, &empty) == 0 &&
			   crgw_digest_parse(sri512, strlen(sri512), &d) == 0 && crgw_digest_equal(&d, &empty) &&
			   crgw_digest_format_sri(&d, buf, sizeof(buf)) > 0 && strcmp(buf, sri512) == 0,
		   "digest: npm's sha512 SRI of the empty string parses and prints back");
	tap_result(crgw_digest_compute(CRGW_DIGEST_SHA256, "", 0, &empty) == 0 &&
			   crgw_digest_parse(sri256, strlen(sri256), &d) == 0 && crgw_digest_equal(&d, &empty) &&
			   crgw_digest_format(&d, buf, sizeof(buf)) > 0 && strcmp(buf, hex256) == 0,
		   "digest: sha256 SRI equals the hex form, printed as sha256:<hex>");
	snprintf(buf, sizeof(buf), "%s", hex256);
	for (char *p = buf + 7; *p; p++)
		*p = (char)(*p >= 'a' ? *p - 32 : *p);
	tap_result(crgw_digest_parse(buf, strlen(buf), &e) == 0 && crgw_digest_equal(&e, &empty),
		   "digest: uppercase hex accepted");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (crgw_digest_parse(bad[i], strlen(bad[i]), &d) != -EINVAL) {
			printf("# accepted: %s\n", bad[i]);
			all = false;
		}
	}
	tap_result(all, "digest: %zu malformed digests refused", sizeof(bad) / sizeof(bad[0]));
	tap_result(crgw_digest_format(&empty, buf, 20) == -ENOSPC, "digest: a short buffer is -ENOSPC");
}

/* ---- Round trips and failing fills ---- */

static void test_round_trips(void)
{
	char dir[300], path[600], sri[CRGW_DIGEST_TEXT_MAX];
	struct crgw_cache *c;
	struct crgw_digest d256, d512, tmp;
	struct crgw_cache_stats st;
	size_t len = 100 * 1024 + 7, got;
	uint8_t *data = make_data(1, len), *data2 = make_data(2, len), *buf = malloc(len + 16);
	uint64_t size = 0;
	bool trusted = false;
	struct stat sb;

	subdir("rt", dir, sizeof(dir));
	c = open_cache(dir, 64 << 20, false);
	if (!c) {
		tap_result(false, "round trip: open");
		goto out;
	}
	crgw_digest_compute(CRGW_DIGEST_SHA256, data, len, &d256);
	tap_result(fill(c, &d256, data, len, (int64_t)len, 4096) == 0, "round trip sha256: fill of a known size");
	path_of(dir, &d256, path, sizeof(path));
	tap_result(crgw_cache_lookup(c, &d256, &size) == 0 && size == len && stat(path, &sb) == 0 &&
			   (sb.st_mode & 0777) == 0600 && (uint64_t)sb.st_size == len,
		   "round trip sha256: indexed, at objects/sha256/xx/<hex>, 0600");
	tap_result(read_back(c, &d256, buf, len + 16, &got, &trusted) == 0 && got == len &&
			   memcmp(buf, data, len) == 0 && trusted,
		   "round trip sha256: read back verified; trusted for sendfile (written by this process)");

	crgw_digest_compute(CRGW_DIGEST_SHA512, data2, len, &tmp);
	crgw_digest_format_sri(&tmp, sri, sizeof(sri));
	tap_result(crgw_digest_parse(sri, strlen(sri), &d512) == 0 && fill(c, &d512, data2, len, -1, 1000) == 0,
		   "round trip sha512: fill keyed by its SRI, size unknown");
	tap_result(read_back(c, &d512, buf, len + 16, &got, NULL) == 0 && got == len && memcmp(buf, data2, len) == 0,
		   "round trip sha512: read back");
	tap_result(fill(c, &d512, data2, len, -1, 1000) == -EEXIST, "begin on a cached object is -EEXIST");

	/* A mismatching fill, a short one, a long one, an abandoned one: nothing of any is kept. */
	crgw_digest_compute(CRGW_DIGEST_SHA256, data2, len, &tmp);
	tap_result(fill(c, &tmp, data, len, (int64_t)len, 4096) == -EBADMSG, "mismatch: commit is -EBADMSG");
	tap_result(fill(c, &tmp, data2, len - 1, (int64_t)len, 4096) == -EBADMSG,
		   "short fill of an announced size: -EBADMSG");
	tap_result(fill(c, &tmp, data2, len, (int64_t)len - 1, 4096) == -EMSGSIZE,
		   "more bytes than announced: write is -EMSGSIZE");
	{
		struct crgw_cache_fill *f = NULL;
		struct crgw_cache_follower *w = NULL;

		crgw_cache_fill_begin(c, &tmp, -1, NULL, NULL, &f, &w);
		tap_result(f && crgw_cache_fill_write(f, data2, 5000) == 0 && count_files(dir, "tmp") == 1,
			   "abort: a fill under way has its temporary file");
		crgw_cache_fill_abort(f);
	}
	crgw_cache_stats(c, &st);
	tap_result(crgw_cache_lookup(c, &tmp, NULL) == -ENOENT && count_files(dir, "tmp") == 0 &&
			   count_files(dir, "objects") == 2 && st.objects == 2 && st.fills_failed == 4,
		   "failed and aborted fills leave nothing in tmp/ or objects/ (%llu failed)",
		   (unsigned long long)st.fills_failed);
	tap_result(fill(c, &tmp, data2, len, (int64_t)(65 << 20), 4096) == -EFBIG,
		   "a fill announced larger than the bound is refused");
	crgw_cache_stats(c, &st);
	tap_result(st.hits == 2 && st.misses == 0 && st.bytes == 2 * len &&
						     st.bytes_stored == 2 * len && st.bytes_served == 2 * len,
		   "stats: hits, bytes, stored and served");
	{
		struct crgw_digest e;
		size_t egot;

		crgw_digest_compute(CRGW_DIGEST_SHA256, "", 0, &e);
		tap_result(fill(c, &e, NULL, 0, 0, 1) == 0 && read_back(c, &e, buf, 16, &egot, NULL) == 0 && egot == 0,
			   "an empty object round-trips");
	}
	crgw_cache_close(c);

	/* A bound smaller than the fill, with the size unknown: refused at the write that crosses it. */
	c = open_cache(dir, len + 10000, false);
	if (c)
		crgw_cache_stats(c, &st);
	tap_result(c && st.bytes <= len + 10000 && st.evictions == 1 && st.objects == 2,
		   "reopen with a smaller bound evicts down to it");
	crgw_digest_compute(CRGW_DIGEST_SHA256, data, 30000, &tmp);
	if (c && fill(c, &tmp, data, 30000, -1, 4096) == 0)
		crgw_cache_stats(c, &st);
	tap_result(c && st.bytes <= len + 10000 && crgw_cache_lookup(c, &tmp, NULL) == 0,
		   "a fill that does not fit evicts others, the bound kept");
	{
		uint8_t *big = malloc(len + 10001);

		memset(big, 7, len + 10001);
		crgw_digest_compute(CRGW_DIGEST_SHA256, big, len + 10001, &tmp);
		tap_result(c && fill(c, &tmp, big, len + 10001, -1, 8192) == -EFBIG && count_files(dir, "tmp") == 0,
			   "a fill of unknown size crossing the bound fails at that write");
		free(big);
	}
	crgw_cache_close(c);
out:
	free(data);
	free(data2);
	free(buf);
}

/* ---- Open: leftovers, corrupt index, reconcile ---- */

static void test_open_repairs(void)
{
	char dir[300], p[600];
	struct crgw_cache *c;
	struct crgw_digest d[4];
	uint8_t *data[4];
	size_t len = 5000, got = 0, n = 0;
	uint8_t buf[6000];
	char *idx;
	FILE *f;
	bool ok = true;

	subdir("repair", dir, sizeof(dir));
	c = open_cache(dir, 1 << 20, false);
	for (int i = 0; i < 4; i++) {
		data[i] = make_data(10 + (unsigned)i, len);
		crgw_digest_compute(i & 1 ? CRGW_DIGEST_SHA512 : CRGW_DIGEST_SHA256, data[i], len, &d[i]);
		ok &= c && fill(c, &d[i], data[i], len, (int64_t)len, 1024) == 0;
	}
	{
		struct crgw_cache_stats st = {0};

		if (c)
			crgw_cache_stats(c, &st);
		tap_result(ok && !st.index_rebuilt && crgw_cache_flush(c) == 0,
			   "repair: four objects in a new cache (no index yet is nothing to rebuild), index flushed");
	}
	crgw_cache_close(c);

	snprintf(p, sizeof(p), "%s/index", dir);
	idx = tap_read_file(p, &n);
	tap_result(idx && cache_index_parse(idx, n, NULL, NULL) == 4, "the index file lists the four objects");
	free(idx);

	/* Leftovers of a crash mid-fill. */
	snprintf(p, sizeof(p), "%s/tmp/sha256-0000.1.1", dir);
	f = fopen(p, "w");
	if (f) {
		fputs("half an object", f);
		fclose(f);
	}
	snprintf(p, sizeof(p), "%s/tmp/index.new", dir);
	f = fopen(p, "w");
	if (f)
		fclose(f);
	tap_result(count_files(dir, "tmp") == 2, "leftovers planted in tmp/");
	c = open_cache(dir, 1 << 20, false);
	tap_result(c && count_files(dir, "tmp") == 0 && crgw_cache_lookup(c, &d[0], NULL) == 0,
		   "open removes tmp/ leftovers and keeps the objects");
	crgw_cache_close(c);

	/* A corrupt index: garbage, then a truncated one, then one with a duplicate. */
	static const char *bad[] = {
		"\x01\x02garbage\xff",
		"crgw-cache-index 1\nsha256:",
		NULL, /* a duplicate, built below */
	};
	char dup[600];
	char hex[CRGW_DIGEST_TEXT_MAX];

	crgw_digest_format(&d[0], hex, sizeof(hex));
	snprintf(dup, sizeof(dup), "crgw-cache-index 1\n%s 5000 1 S 0\n%s 5000 1 S 0\nend 2\n", hex, hex);
	bad[2] = dup;
	for (size_t i = 0; i < 3; i++) {
		struct crgw_cache_stats st;

		snprintf(p, sizeof(p), "%s/index", dir);
		f = fopen(p, "w");
		if (f) {
			fputs(bad[i], f);
			fclose(f);
		}
		c = open_cache(dir, 1 << 20, false);
		ok = c != NULL;
		for (int k = 0; ok && k < 4; k++)
			ok = read_back(c, &d[k], buf, sizeof(buf), &got, NULL) == 0 && got == len &&
			     memcmp(buf, data[k], len) == 0;
		if (c)
			crgw_cache_stats(c, &st);
		tap_result(ok && st.objects == 4 && st.bytes == 4 * len && st.index_rebuilt,
			   "corrupt index %zu: discarded, rebuilt from objects/ (and said so), all four served", i);
		crgw_cache_close(c);
	}
	snprintf(p, sizeof(p), "%s/index", dir);
	idx = tap_read_file(p, &n);
	tap_result(idx && cache_index_parse(idx, n, NULL, NULL) == 4, "the rebuilt index is written at close");
	free(idx);
	{
		struct crgw_cache_stats st = {0};

		c = open_cache(dir, 1 << 20, false);
		if (c)
			crgw_cache_stats(c, &st);
		tap_result(c && st.objects == 4 && !st.index_rebuilt, "a sound index is loaded, not rebuilt");
		crgw_cache_close(c);
	}

	/* A well-formed index with a wrong size (a flipped digit): the file's size wins. */
	{
		char line[700];
		struct crgw_cache_stats st0, st1;
		uint64_t sz = 0;

		snprintf(line, sizeof(line), "crgw-cache-index 1\n%s 4999 1 S 0\nend 1\n", hex);
		snprintf(p, sizeof(p), "%s/index", dir);
		f = fopen(p, "w");
		if (f) {
			fputs(line, f);
			fclose(f);
		}
		c = open_cache(dir, 1 << 20, false);
		if (c)
			crgw_cache_stats(c, &st0);
		ok = c && crgw_cache_lookup(c, &d[0], &sz) == 0 && sz == len && crgw_cache_lookup(c, &d[2], NULL) == 0;
		for (int k = 0; ok && k < 10; k++)
			ok = crgw_cache_lookup(c, &d[k % 4], NULL) == 0;
		if (c)
			crgw_cache_stats(c, &st1);
		tap_result(ok && st0.objects == 4 && st0.bytes == 4 * len && st1.hits == 0 && st1.misses == 0,
			   "an index entry with a wrong size takes the file's; lookup counts nothing");
		crgw_cache_close(c);
	}

	/* An entry without its file is dropped; a file without an entry is added. */
	path_of(dir, &d[1], p, sizeof(p));
	unlink(p);
	c = open_cache(dir, 1 << 20, false);
	tap_result(c && crgw_cache_lookup(c, &d[1], NULL) == -ENOENT && crgw_cache_lookup(c, &d[0], NULL) == 0,
		   "an index entry whose file is gone is dropped");
	crgw_cache_close(c);
	{
		struct crgw_digest x;
		uint8_t *xd = make_data(99, 777);
		char q[600], sub[600];

		crgw_digest_compute(CRGW_DIGEST_SHA256, xd, 777, &x);
		path_of(dir, &x, q, sizeof(q));
		snprintf(sub, sizeof(sub), "%.*s", (int)(strrchr(q, '/') - q), q);
		mkdir(sub, 0700);
		f = fopen(q, "w");
		if (f) {
			fwrite(xd, 1, 777, f);
			fclose(f);
		}
		c = open_cache(dir, 1 << 20, false);
		tap_result(c && read_back(c, &x, buf, sizeof(buf), &got, NULL) == 0 && got == 777,
			   "a file without an index entry is added (and verified on its first read)");
		crgw_cache_close(c);
		free(xd);
	}
	for (int i = 0; i < 4; i++)
		free(data[i]);
}

/* ---- Corruption on disk ---- */

static int count_entries(void *arg, const struct crgw_cache_entry *e)
{
	(void)e;
	(*(size_t *)arg)++;
	return 0;
}

static void test_bit_flips(void)
{
	char dir[300], p[600];
	struct crgw_cache *c;
	struct crgw_cache_reader *r;
	struct crgw_digest d[5];
	uint8_t *data[5], *buf;
	size_t len = 200000, got = 0;
	struct crgw_cache_stats st;
	struct crgw_cache_verify_report rep;
	bool trusted = true, ok = true;
	int rc;

	buf = malloc(len);
	subdir("flip", dir, sizeof(dir));
	c = open_cache(dir, 16 << 20, false);
	for (int i = 0; i < 5; i++) {
		data[i] = make_data(20 + (unsigned)i, len);
		crgw_digest_compute(CRGW_DIGEST_SHA512, data[i], len, &d[i]);
		ok &= c && fill(c, &d[i], data[i], len, (int64_t)len, 65536) == 0;
	}
	tap_result(ok, "bit flips: five objects");
	crgw_cache_close(c);

	/* A new process has verified nothing: the first read is hashed, and a flipped bit caught at the end. */
	path_of(dir, &d[0], p, sizeof(p));
	flip_bit(p, 123);
	c = open_cache(dir, 16 << 20, false);
	rc = c ? read_back(c, &d[0], buf, len, &got, &trusted) : -1;
	tap_result(rc == -EBADMSG && !trusted && got < len,
		   "a flipped bit: the verifying read ends in -EBADMSG, the final chunk withheld (%zu of %zu bytes)", got,
		   len);
	crgw_cache_stats(c, &st);
	tap_result(crgw_cache_lookup(c, &d[0], NULL) == -ENOENT && access(p, F_OK) < 0 && st.corrupt == 1,
		   "the corrupt object is gone from the index and the disk");

	/* The sendfile path: verified once, trusted while the file is unchanged, not after a write. */
	tap_result(read_back(c, &d[1], buf, len, &got, &trusted) == 0 && !trusted && got == len,
		   "first read after open: not trusted, verified");
	rc = crgw_cache_read_open(c, &d[1], &r);
	tap_result(rc == 0 && crgw_cache_reader_trusted(r) && crgw_cache_reader_size(r) == len &&
			   crgw_cache_reader_fd(r) >= 0,
		   "after a verified read: trusted for sendfile");
	crgw_cache_reader_close(r);
	usleep(20000); /* the kernel's timestamps are coarse: let the clock move past the last write */
	path_of(dir, &d[1], p, sizeof(p));
	flip_bit(p, (off_t)len - 1);
	rc = crgw_cache_read_open(c, &d[1], &r);
	tap_result(rc == 0 && !crgw_cache_reader_trusted(r), "a changed file is no longer trusted for sendfile");
	crgw_cache_reader_close(r);
	tap_result(read_back(c, &d[1], buf, len, &got, NULL) == -EBADMSG && got < len &&
			   crgw_cache_lookup(c, &d[1], NULL) == -ENOENT,
		   "...and hashing it finds the flip and removes it");

	/* A file replaced by another of the same size (a new inode) is not trusted either. */
	tap_result(read_back(c, &d[2], buf, len, &got, NULL) == 0, "third object verified");
	{
		char q[640];
		FILE *f;

		path_of(dir, &d[2], p, sizeof(p));
		snprintf(q, sizeof(q), "%s.new", p);
		f = fopen(q, "w");
		if (f) {
			fwrite(data[3], 1, len, f);
			fclose(f);
		}
		rename(q, p);
	}
	rc = crgw_cache_read_open(c, &d[2], &r);
	tap_result(rc == 0 && !crgw_cache_reader_trusted(r), "a replaced file is not trusted");
	crgw_cache_reader_close(r);

	/* verify: hashes everything, removes the bad (the replaced one), reports counts. */
	rc = crgw_cache_verify(c, &rep);
	tap_result(rc == 0 && rep.checked == 3 && rep.ok == 2 && rep.corrupt == 1 &&
			   crgw_cache_lookup(c, &d[2], NULL) == -ENOENT,
		   "verify: 3 checked, 2 good, 1 corrupt removed (%llu/%llu/%llu)", (unsigned long long)rep.checked,
		   (unsigned long long)rep.ok, (unsigned long long)rep.corrupt);
	{
		size_t n = 0;

		crgw_cache_foreach(c, count_entries, &n);
		crgw_cache_stats(c, &st);
		tap_result(n == 2 && st.objects == 2 && st.corrupt == 3, "ls sees the two left; 3 corrupt counted");
	}
	/* A truncated file is caught at open: it is a miss, and removed. */
	path_of(dir, &d[3], p, sizeof(p));
	tap_result(truncate(p, 1000) == 0 && crgw_cache_read_open(c, &d[3], &r) == -ENOENT &&
			   crgw_cache_lookup(c, &d[3], NULL) == -ENOENT,
		   "a truncated object is a miss and removed");
	crgw_cache_close(c);

	/* verify_always: never trusted, even right after a verified read. */
	c = open_cache(dir, 16 << 20, true);
	ok = c && read_back(c, &d[4], buf, len, &got, NULL) == 0;
	rc = ok ? crgw_cache_read_open(c, &d[4], &r) : -1;
	tap_result(rc == 0 && !crgw_cache_reader_trusted(r), "verify_always: nothing is trusted");
	/*
	 * ... until that very reader has hashed it to the end: its descriptor may then be sent as it is (the
	 * mediation hashes a hit first, then sends it; it used to open it again, never trusted, and refetch).
	 */
	{
		ssize_t n = 0;

		while (rc == 0 && (n = crgw_cache_reader_read(r, buf, len)) > 0)
			;
		tap_result(rc == 0 && n == 0 && crgw_cache_reader_trusted(r),
			   "verify_always: a reader read to the end is trusted, for sending what it hashed");
	}
	crgw_cache_reader_close(r);
	crgw_cache_close(c);
	for (int i = 0; i < 5; i++)
		free(data[i]);
	free(buf);
}

/*
 * Objects that are not regular files any more: a FIFO or a symbolic link put in place of an object while the
 * cache is open, and a FIFO named index at open. None may block (a FIFO's open waits for a writer: the alarm
 * ends the test if one does); each is removed like an object of the wrong type, and fetched again.
 */
static void test_not_files(void)
{
	struct crgw_cache_verify_report rep = { 0 };
	struct crgw_cache_stats st = { 0 };
	struct crgw_cache_reader *r = NULL;
	char dir[300], p[600], target[700];
	struct crgw_digest d[3];
	uint8_t *data[3];
	uint8_t buf[3000];
	size_t len = 3000, got = 0;
	struct crgw_cache *c;
	struct stat sb;
	bool ok = true;

	subdir("notfiles", dir, sizeof(dir));
	c = open_cache(dir, 1 << 20, false);
	for (int i = 0; i < 3; i++) {
		data[i] = make_data(300 + (unsigned)i, len);
		crgw_digest_compute(CRGW_DIGEST_SHA256, data[i], len, &d[i]);
		ok &= c && fill(c, &d[i], data[i], len, (int64_t)len, 1000) == 0;
	}
	tap_result(ok, "not files: three objects");
	alarm(20);

	path_of(dir, &d[0], p, sizeof(p));
	unlink(p);
	ok = mkfifo(p, 0600) == 0;
	tap_result(ok && crgw_cache_read_open(c, &d[0], &r) == -ENOENT && !r && lstat(p, &sb) < 0 &&
			   crgw_cache_lookup(c, &d[0], NULL) == -ENOENT,
		   "a FIFO in place of an object: read_open does not block, the FIFO is removed, a miss");
	ok = ok && fill(c, &d[0], data[0], len, (int64_t)len, 1000) == 0 &&
	     read_back(c, &d[0], buf, sizeof(buf), &got, NULL) == 0 && got == len && memcmp(buf, data[0], len) == 0;
	tap_result(ok, "... and it is filled again and served");

	path_of(dir, &d[1], p, sizeof(p));
	snprintf(target, sizeof(target), "%s/outside", dir);
	ok = rename(p, target) == 0 && symlink(target, p) == 0;
	tap_result(ok && crgw_cache_read_open(c, &d[1], &r) == -ENOENT && !r && lstat(p, &sb) < 0 &&
			   stat(target, &sb) == 0 && crgw_cache_lookup(c, &d[1], NULL) == -ENOENT,
		   "a symbolic link in place of an object: removed (the link, not its target), a miss");
	ok = ok && fill(c, &d[1], data[1], len, (int64_t)len, 1000) == 0 &&
	     read_back(c, &d[1], buf, sizeof(buf), &got, NULL) == 0 && got == len && memcmp(buf, data[1], len) == 0;
	tap_result(ok, "... and it is filled again and served");

	path_of(dir, &d[2], p, sizeof(p));
	unlink(p);
	ok = mkfifo(p, 0600) == 0;
	path_of(dir, &d[0], p, sizeof(p));
	unlink(p);
	ok = ok && symlink(target, p) == 0;
	ok = ok && crgw_cache_verify(c, &rep) == 0;
	if (c)
		crgw_cache_stats(c, &st);
	tap_result(ok && rep.checked == 3 && rep.ok == 1 && rep.corrupt == 2 && rep.errors == 0 && st.objects == 1,
		   "verify with a FIFO and a link among the objects: returns, both removed as corrupt (%llu ok, %llu "
		   "corrupt, %llu errors)",
		   (unsigned long long)rep.ok, (unsigned long long)rep.corrupt, (unsigned long long)rep.errors);
	crgw_cache_close(c);

	snprintf(p, sizeof(p), "%s/index", dir);
	unlink(p);
	ok = mkfifo(p, 0600) == 0;
	c = open_cache(dir, 1 << 20, false);
	tap_result(ok && c && crgw_cache_lookup(c, &d[1], NULL) == 0,
		   "a FIFO named index: open does not block, and rebuilds the index from objects/");
	crgw_cache_close(c);
	alarm(0);
	for (int i = 0; i < 3; i++)
		free(data[i]);
}

/*
 * An object file deleted behind the cache's back (by hand, say): the entry it leaves must go too, or the
 * digest could never be filled again (fill_begin refuses what the index holds), ls and stats would count
 * it, and verify would skip it as "evicted since" and report a clean cache.
 */
static void test_missing_files(void)
{
	struct crgw_cache_verify_report rep = { 0 };
	struct crgw_cache_stats st = { 0 };
	struct crgw_cache_reader *r = NULL;
	char dir[300], p[600];
	struct crgw_digest d[2];
	uint8_t *data[2];
	uint8_t buf[2000];
	size_t len = 2000, got = 0;
	struct crgw_cache *c;
	bool ok = true;

	subdir("missing", dir, sizeof(dir));
	c = open_cache(dir, 1 << 20, false);
	for (int i = 0; i < 2; i++) {
		data[i] = make_data(400 + (unsigned)i, len);
		crgw_digest_compute(CRGW_DIGEST_SHA256, data[i], len, &d[i]);
		ok &= c && fill(c, &d[i], data[i], len, (int64_t)len, 1000) == 0;
	}
	tap_result(ok, "missing files: two objects");

	path_of(dir, &d[0], p, sizeof(p));
	ok = ok && unlink(p) == 0 && crgw_cache_verify(c, &rep) == 0;
	if (c)
		crgw_cache_stats(c, &st);
	tap_result(ok && rep.checked == 2 && rep.ok == 1 && rep.corrupt == 1 && st.objects == 1 && st.bytes == len &&
			   st.corrupt == 1 && crgw_cache_lookup(c, &d[0], NULL) == -ENOENT,
		   "an object file deleted: verify counts it corrupt and drops its entry (checked %llu, ok %llu, "
		   "corrupt %llu; %llu objects left)",
		   (unsigned long long)rep.checked, (unsigned long long)rep.ok, (unsigned long long)rep.corrupt,
		   (unsigned long long)st.objects);
	ok = ok && fill(c, &d[0], data[0], len, (int64_t)len, 1000) == 0 &&
	     read_back(c, &d[0], buf, sizeof(buf), &got, NULL) == 0 && got == len && memcmp(buf, data[0], len) == 0;
	tap_result(ok, "... and it is filled again and served");

	path_of(dir, &d[1], p, sizeof(p));
	ok = ok && unlink(p) == 0;
	tap_result(ok && crgw_cache_read_open(c, &d[1], &r) == -ENOENT && !r &&
			   crgw_cache_lookup(c, &d[1], NULL) == -ENOENT,
		   "an object file deleted: read_open is a miss and drops the entry");
	ok = ok && fill(c, &d[1], data[1], len, (int64_t)len, 1000) == 0 &&
	     read_back(c, &d[1], buf, sizeof(buf), &got, NULL) == 0 && got == len && memcmp(buf, data[1], len) == 0;
	tap_result(ok, "... and it is filled again and served");

	/* An empty directory in place of an object: found bad, and removed, or no fill could ever rename there. */
	path_of(dir, &d[0], p, sizeof(p));
	ok = ok && unlink(p) == 0 && mkdir(p, 0700) == 0 && crgw_cache_verify(c, &rep) == 0;
	tap_result(ok && rep.corrupt == 1 && rmdir(p) < 0 && errno == ENOENT,
		   "an empty directory in place of an object: verify removes it (corrupt %llu)",
		   (unsigned long long)rep.corrupt);
	ok = ok && fill(c, &d[0], data[0], len, (int64_t)len, 1000) == 0 &&
	     read_back(c, &d[0], buf, sizeof(buf), &got, NULL) == 0 && got == len && memcmp(buf, data[0], len) == 0;
	tap_result(ok, "... and it is filled again and served");
	crgw_cache_close(c);
	for (int i = 0; i < 2; i++)
		free(data[i]);
}

/* ---- Eviction ---- */

struct names {
	char s[64];
	const struct crgw_digest *d;
};

static int collect(void *arg, const struct crgw_cache_entry *e)
{
	struct names *n = arg;

	for (int i = 0; i < 12; i++)
		if (crgw_digest_equal(n->d + i, &e->digest)) {
			size_t l = strlen(n->s);

			n->s[l] = (char)('A' + i);
			n->s[l + 1] = '\0';
		}
	return 0;
}

static bool hit(struct crgw_cache *c, const struct crgw_digest *d)
{
	struct crgw_cache_reader *r;

	if (crgw_cache_read_open(c, d, &r))
		return false;
	crgw_cache_reader_close(r);
	return true;
}

static void test_eviction(void)
{
	char dir[300];
	struct crgw_cache *c;
	struct crgw_digest d[12];
	uint8_t *data[12];
	struct crgw_cache_stats st;
	struct names n;
	uint64_t ev = 0;
	bool ok = true;

	subdir("evict", dir, sizeof(dir));
	c = open_cache(dir, 10000, false);
	for (int i = 0; i < 12; i++) {
		data[i] = make_data(40 + (unsigned)i, 1000);
		crgw_digest_compute(CRGW_DIGEST_SHA256, data[i], 1000, &d[i]);
	}
	for (int i = 0; i < 10; i++)
		ok &= c && fill(c, &d[i], data[i], 1000, 1000, 1000) == 0;
	crgw_cache_stats(c, &st);
	tap_result(ok && st.objects == 10 && st.bytes == 10000 && st.evictions == 0, "eviction: A..J fill the bound");

	/* B is hit once. K: the small queue's head A (never hit) goes; B stays. */
	ok = hit(c, &d[1]) && fill(c, &d[10], data[10], 1000, 1000, 1000) == 0;
	crgw_cache_stats(c, &st);
	tap_result(ok && crgw_cache_lookup(c, &d[0], NULL) == -ENOENT && crgw_cache_lookup(c, &d[1], NULL) == 0 &&
			   st.bytes == 10000,
		   "K evicts A, the oldest never hit");
	/* L: B, hit, moves to the main queue; C goes. */
	ok = fill(c, &d[11], data[11], 1000, 1000, 1000) == 0;
	tap_result(ok && crgw_cache_lookup(c, &d[2], NULL) == -ENOENT && crgw_cache_lookup(c, &d[1], NULL) == 0,
		   "L evicts C; B, hit, survives into the main queue");
	/* A again: a ghost, so it enters the main queue; D (small head) goes. */
	ok = fill(c, &d[0], data[0], 1000, 1000, 1000) == 0;
	n.s[0] = '\0';
	n.d = d;
	crgw_cache_foreach(c, collect, &n);
	tap_result(ok && strcmp(n.s, "EFGHIJKLBA") == 0, "A returns as a ghost into the main queue: order %s", n.s);
	crgw_cache_stats(c, &st);
	tap_result(st.evictions == 3 && st.bytes <= 10000, "three evictions, the bound kept");
	crgw_cache_close(c);

	/* The order survives a restart; gc evicts in it. */
	c = open_cache(dir, 10000, false);
	ok = c && crgw_cache_gc(c, 3000, &ev) == 0;
	n.s[0] = '\0';
	if (c)
		crgw_cache_foreach(c, collect, &n);
	tap_result(ok && ev == 7 && strcmp(n.s, "LBA") == 0, "after reopen, gc to 3000 bytes leaves %s (%llu evicted)",
		   n.s, (unsigned long long)ev);

	/* Evicting an object open for reading: the reader keeps its descriptor and its bytes. */
	{
		struct crgw_cache_reader *r = NULL;
		uint8_t buf[1000];
		size_t got = 0;
		ssize_t k;

		ok = c && crgw_cache_read_open(c, &d[11], &r) == 0 && crgw_cache_gc(c, 0, &ev) == 0 &&
		     crgw_cache_lookup(c, &d[11], NULL) == -ENOENT;
		while (ok && (k = crgw_cache_reader_read(r, buf + got, sizeof(buf) - got)) > 0)
			got += (size_t)k;
		tap_result(ok && got == 1000 && memcmp(buf, data[11], 1000) == 0 && count_files(dir, "objects") == 0,
			   "an evicted object being read is still read whole and verified");
		crgw_cache_reader_close(r);
	}
	crgw_cache_close(c);
	for (int i = 0; i < 12; i++)
		free(data[i]);
}

/* ---- Collapsed concurrent fills ---- */

#define THREADS 8

struct waiter {
	pthread_mutex_t m;
	pthread_cond_t cv;
	unsigned pings;
	struct crgw_cache_follower *self;
	bool close_in_cb;
};

static void ping(void *arg)
{
	struct waiter *w = arg;

	pthread_mutex_lock(&w->m);
	w->pings++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->m);
}

struct race {
	struct crgw_cache *c;
	struct crgw_digest d;
	const uint8_t *data;
	size_t len;
	bool corrupt;        /* the writer sends one wrong byte */
	bool abort_it;       /* the writer abandons the fill */
	pthread_barrier_t start;
	pthread_mutex_t m;
	pthread_cond_t cv;
	int joined, writers, others, commit_rc;
	int good, failed, early; /* followers: identical verified bytes; got an error; had it all too soon */
	int fail_rc;
};

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *m)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	pthread_cond_timedwait(cv, m, &ts);
}

static void write_side(struct race *rc, struct crgw_cache_fill *f)
{
	size_t chunk = 4096;
	int err = 0;

	pthread_mutex_lock(&rc->m);
	rc->writers++;
	while (rc->joined < THREADS - 1) {
		int before = rc->joined;

		timed_wait(&rc->cv, &rc->m);
		if (rc->joined == before)
			break; /* nobody came for ten seconds: the test fails below */
	}
	pthread_mutex_unlock(&rc->m);
	for (size_t o = 0; !err && o < rc->len; o += chunk) {
		size_t n = rc->len - o < chunk ? rc->len - o : chunk;
		uint8_t tmp[4096];

		memcpy(tmp, rc->data + o, n);
		if (rc->corrupt && o + n == rc->len)
			tmp[n - 1] ^= 1;
		err = crgw_cache_fill_write(f, tmp, n);
		if ((o / chunk) % 8 == 0)
			usleep(500);
	}
	if (rc->abort_it) {
		crgw_cache_fill_abort(f);
		err = -ECANCELED;
	} else {
		err = crgw_cache_fill_commit(f);
	}
	pthread_mutex_lock(&rc->m);
	rc->commit_rc = err;
	pthread_mutex_unlock(&rc->m);
}

static void follow_side(struct race *rc, struct crgw_cache_follower *fw, struct waiter *w)
{
	uint8_t *got = malloc(rc->len + 1);
	size_t n = 0;
	ssize_t k;
	bool early = false;

	pthread_mutex_lock(&rc->m);
	rc->joined++;
	pthread_cond_broadcast(&rc->cv);
	pthread_mutex_unlock(&rc->m);
	for (;;) {
		unsigned seen;

		pthread_mutex_lock(&w->m);
		seen = w->pings;
		pthread_mutex_unlock(&w->m);
		k = crgw_cache_follower_read(fw, got + n, rc->len + 1 - n);
		if (k > 0) {
			n += (size_t)k;
			/* All the bytes only after the commit: the last one is held back until the digest matched. */
			if (n == rc->len && crgw_cache_follower_status(fw, NULL, NULL) != 1)
				early = true;
			continue;
		}
		if (k != -EAGAIN)
			break;
		pthread_mutex_lock(&w->m);
		if (w->pings == seen)
			timed_wait(&w->cv, &w->m);
		pthread_mutex_unlock(&w->m);
	}
	pthread_mutex_lock(&rc->m);
	if (k == 0 && n == rc->len && memcmp(got, rc->data, n) == 0)
		rc->good++;
	else if (k < 0 && n < rc->len)
		rc->failed++, rc->fail_rc = (int)k;
	if (early)
		rc->early++;
	pthread_mutex_unlock(&rc->m);
	free(got);
}

static void *racer(void *arg)
{
	struct race *rc = arg;
	struct crgw_cache_fill *f = NULL;
	struct crgw_cache_follower *fw = NULL;
	struct waiter w = { .m = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	int err;

	pthread_barrier_wait(&rc->start);
	err = crgw_cache_fill_begin(rc->c, &rc->d, (int64_t)rc->len, ping, &w, &f, &fw);
	if (!err && f) {
		write_side(rc, f);
	} else if (!err && fw) {
		follow_side(rc, fw, &w);
		crgw_cache_follower_close(fw);
	} else {
		pthread_mutex_lock(&rc->m);
		rc->others++;
		pthread_cond_broadcast(&rc->cv);
		pthread_mutex_unlock(&rc->m);
	}
	return NULL;
}

static void run_race(struct race *rc)
{
	pthread_t t[THREADS];

	pthread_barrier_init(&rc->start, NULL, THREADS);
	pthread_mutex_init(&rc->m, NULL);
	pthread_cond_init(&rc->cv, NULL);
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, racer, rc);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&rc->start);
}

static void close_self(void *arg)
{
	struct waiter *w = arg;

	/* Closing its own follower from inside the notification: freed by the notifier afterwards. */
	if (w->self && w->close_in_cb) {
		w->close_in_cb = false;
		crgw_cache_follower_close(w->self);
		w->self = NULL;
	}
}

static void test_concurrent(void)
{
	char dir[300];
	struct crgw_cache *c;
	size_t len = 1 << 20;
	uint8_t *data = make_data(77, len), *buf = malloc(len);
	struct crgw_cache_stats st;
	size_t got = 0;

	subdir("race", dir, sizeof(dir));
	c = open_cache(dir, 64 << 20, false);
	{
		struct race rc = { .c = c, .data = data, .len = len };

		crgw_digest_compute(CRGW_DIGEST_SHA512, data, len, &rc.d);
		run_race(&rc);
		crgw_cache_stats(c, &st);
		tap_result(rc.writers == 1 && rc.others == 0 && rc.commit_rc == 0,
			   "8 concurrent misses: exactly one writer (%d), committed", rc.writers);
		tap_result(rc.good == THREADS - 1 && rc.early == 0,
			   "7 followers got identical verified bytes (%d), none before the commit (%d early)", rc.good,
			   rc.early);
		tap_result(read_back(c, &rc.d, buf, len, &got, NULL) == 0 && got == len && st.objects == 1 &&
				   st.bytes_stored == len && st.fills_active == 0,
			   "one object stored, served afterwards");
	}
	{
		struct race rc = { .c = c, .data = data, .len = len, .corrupt = true };

		crgw_digest_compute(CRGW_DIGEST_SHA256, data, len, &rc.d);
		run_race(&rc);
		tap_result(rc.writers == 1 && rc.commit_rc == -EBADMSG && rc.failed == THREADS - 1 &&
				   rc.fail_rc == -EBADMSG && rc.good == 0,
			   "a fill whose last byte is wrong fails all 7 followers with -EBADMSG (%d) before they had it all",
			   rc.failed);
		tap_result(crgw_cache_lookup(c, &rc.d, NULL) == -ENOENT && count_files(dir, "tmp") == 0,
			   "...and leaves nothing");
	}
	{
		struct race rc = { .c = c, .data = data, .len = len, .abort_it = true };

		crgw_digest_compute(CRGW_DIGEST_SHA256, data, len - 1, &rc.d);
		run_race(&rc);
		tap_result(rc.writers == 1 && rc.failed == THREADS - 1 && rc.fail_rc == -ECANCELED &&
				   count_files(dir, "tmp") == 0,
			   "an abandoned fill fails its followers with -ECANCELED");
	}
	{
		/* A follower closing itself from its callback, another closed from its own thread. */
		struct crgw_digest d;
		struct crgw_cache_fill *f = NULL;
		struct crgw_cache_follower *w1 = NULL, *w2 = NULL, *dummy = NULL;
		struct crgw_cache_fill *nofill = NULL;
		struct waiter a = { .close_in_cb = true }, b = { 0 };

		crgw_digest_compute(CRGW_DIGEST_SHA256, data, 5000, &d);
		crgw_cache_fill_begin(c, &d, 5000, NULL, NULL, &f, &dummy);
		crgw_cache_fill_begin(c, &d, 5000, close_self, &a, &nofill, &w1);
		crgw_cache_fill_begin(c, &d, 5000, close_self, &b, &nofill, &w2);
		a.self = w1;
		bool ok = f && w1 && w2 && crgw_cache_fill_write(f, data, 2500) == 0 && a.self == NULL;
		uint64_t written = 0;

		ok = ok && crgw_cache_follower_status(w2, &written, NULL) == 0 && written == 2500;
		crgw_cache_follower_close(w2);
		ok = ok && crgw_cache_fill_write(f, data + 2500, 2500) == 0 && crgw_cache_fill_commit(f) == 0;
		tap_result(ok, "followers closed inside and outside their callbacks");
	}
	crgw_cache_close(c);
	free(data);
	free(buf);
}

/* ---- A full disk (root) ---- */

static void test_enospc(void)
{
	static const char *checks[] = {
		"ENOSPC: a 2 MiB fill of unknown size into a 1 MiB file system fails at a write with -ENOSPC",
		"ENOSPC: nothing is left in tmp/ or objects/, and nothing is indexed",
		"ENOSPC: a 2 MiB fill of announced size is refused at begin with -ENOSPC",
		"ENOSPC: a small fill afterwards succeeds and reads back",
		"ENOSPC: the failures are counted",
	};
	char dir[300];
	int p[2];
	pid_t pid;
	uint8_t res[5] = { 0 };
	int status = 0;

	if (geteuid() != 0) {
		tap_skip("ENOSPC test needs root (a tmpfs in a private mount namespace)");
		return;
	}
	subdir("full", dir, sizeof(dir));
	mkdir(dir, 0700);
	if (pipe(p) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		size_t len = 2 << 20, got = 0;
		uint8_t *data = make_data(5, len), buf[20000];
		struct crgw_digest d, small;
		struct crgw_cache *c;
		struct crgw_cache_fill *f = NULL;
		struct crgw_cache_follower *w = NULL;
		struct crgw_cache_stats st;
		int err = 0;

		close(p[0]);
		if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700") < 0)
			_exit(2);
		c = open_cache(dir, 64 << 20, false);
		if (!c)
			_exit(3);
		crgw_digest_compute(CRGW_DIGEST_SHA256, data, len, &d);
		crgw_cache_fill_begin(c, &d, -1, NULL, NULL, &f, &w);
		for (size_t o = 0; f && !err && o < len; o += 65536)
			err = crgw_cache_fill_write(f, data + o, 65536);
		res[0] = f && err == -ENOSPC && crgw_cache_fill_commit(f) == -ENOSPC;
		res[1] = count_files(dir, "tmp") == 0 && count_files(dir, "objects") == 0 &&
			 crgw_cache_lookup(c, &d, NULL) == -ENOENT;
		f = NULL;
		res[2] = crgw_cache_fill_begin(c, &d, (int64_t)len, NULL, NULL, &f, &w) == -ENOSPC && !f &&
			 count_files(dir, "tmp") == 0;
		crgw_digest_compute(CRGW_DIGEST_SHA256, data, 20000, &small);
		res[3] = fill(c, &small, data, 20000, 20000, 4096) == 0 &&
			 read_back(c, &small, buf, sizeof(buf), &got, NULL) == 0 && got == 20000;
		crgw_cache_stats(c, &st);
		res[4] = st.fills_failed == 1 && st.objects == 1;
		crgw_cache_close(c);
		if (write(p[1], res, sizeof(res)) != (ssize_t)sizeof(res))
			_exit(4);
		_exit(0);
	}
	close(p[1]);
	ssize_t n = read(p[0], res, sizeof(res));

	close(p[0]);
	waitpid(pid, &status, 0);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
		tap_skip("cannot mount a tmpfs in a private mount namespace here");
		return;
	}
	for (size_t i = 0; i < 5; i++)
		tap_result(n == (ssize_t)sizeof(res) && res[i], "%s", checks[i]);
}

/* ---- A writer killed mid-way through 20 fills ---- */

#define KILL_FILLS 20
#define KILL_LEN (256 * 1024)

struct killer {
	struct crgw_cache *c;
	int i, pipe;
};

static void *kill_filler(void *arg)
{
	struct killer *k = arg;
	uint8_t *data = make_data(100 + (unsigned)k->i, KILL_LEN);
	struct crgw_digest d;
	struct crgw_cache_fill *f = NULL;
	struct crgw_cache_follower *w = NULL;
	bool fast = k->i % 2 == 0;
	char b = (char)k->i;

	crgw_digest_compute(k->i % 3 ? CRGW_DIGEST_SHA256 : CRGW_DIGEST_SHA512, data, KILL_LEN, &d);
	if (crgw_cache_fill_begin(k->c, &d, fast ? KILL_LEN : -1, NULL, NULL, &f, &w) || !f)
		return NULL;
	for (size_t o = 0; o < KILL_LEN; o += 8192) {
		crgw_cache_fill_write(f, data + o, 8192);
		usleep(fast ? 200 : 50000);
	}
	if (crgw_cache_fill_commit(f) == 0) {
		crgw_cache_flush(k->c);
		if (write(k->pipe, &b, 1) != 1)
			abort();
	}
	return NULL;
}

static void test_killed(void)
{
	char dir[300], p[600];
	int fds[2];
	pid_t pid;
	bool committed[KILL_FILLS] = { false };
	unsigned ncommitted = 0;
	size_t left_in_tmp;

	subdir("killed", dir, sizeof(dir));
	if (pipe(fds) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		struct crgw_cache *c = open_cache(dir, 64 << 20, false);
		pthread_t t[KILL_FILLS];
		struct killer k[KILL_FILLS];

		close(fds[0]);
		if (!c)
			_exit(1);
		for (int i = 0; i < KILL_FILLS; i++) {
			k[i] = (struct killer){ .c = c, .i = i, .pipe = fds[1] };
			pthread_create(&t[i], NULL, kill_filler, &k[i]);
		}
		for (int i = 0; i < KILL_FILLS; i++)
			pthread_join(t[i], NULL);
		_exit(0);
	}
	close(fds[1]);
	/* The even ones are fast: wait for them, then kill the slow ones mid-way. */
	while (ncommitted < KILL_FILLS / 2) {
		char b;

		if (read(fds[0], &b, 1) != 1)
			break;
		if (b >= 0 && b < KILL_FILLS && !committed[(int)b]) {
			committed[(int)b] = true;
			ncommitted++;
		}
	}
	usleep(100000);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	{
		char b;

		while (read(fds[0], &b, 1) == 1)
			if (b >= 0 && b < KILL_FILLS && !committed[(int)b])
				committed[(int)b] = true, ncommitted++;
	}
	close(fds[0]);
	left_in_tmp = count_files(dir, "tmp");
	tap_result(ncommitted >= KILL_FILLS / 2 && left_in_tmp > 0,
		   "killed mid-way: %u fills committed, %zu partial files left in tmp/", ncommitted, left_in_tmp);

	/* Plant a wrong object under a valid name, as a bad disk might: it must never be served. */
	struct crgw_digest bogus;
	uint8_t *bd = make_data(500, 4096);

	crgw_digest_compute(CRGW_DIGEST_SHA256, bd, 4096, &bogus);
	bd[100] ^= 1;
	path_of(dir, &bogus, p, sizeof(p));
	{
		char sub[600];
		FILE *f;

		snprintf(sub, sizeof(sub), "%.*s", (int)(strrchr(p, '/') - p), p);
		mkdir(sub, 0700);
		f = fopen(p, "w");
		if (f) {
			fwrite(bd, 1, 4096, f);
			fclose(f);
		}
	}
	free(bd);

	struct crgw_cache *c = open_cache(dir, 64 << 20, false);
	struct crgw_cache_stats st;
	uint8_t *buf = malloc(KILL_LEN + 1);
	unsigned served = 0, absent = 0, wrong = 0;
	size_t got = 0;

	tap_result(c && count_files(dir, "tmp") == 0, "the next open removes every partial fill");
	for (int i = 0; c && i < KILL_FILLS; i++) {
		uint8_t *data = make_data(100 + (unsigned)i, KILL_LEN);
		struct crgw_digest d;
		int rc;

		crgw_digest_compute(i % 3 ? CRGW_DIGEST_SHA256 : CRGW_DIGEST_SHA512, data, KILL_LEN, &d);
		rc = read_back(c, &d, buf, KILL_LEN + 1, &got, NULL);
		if (rc == 0 && got == KILL_LEN && memcmp(buf, data, KILL_LEN) == 0)
			served++;
		else if (rc == -ENOENT && !committed[i])
			absent++;
		else
			wrong++;
		free(data);
	}
	if (c)
		crgw_cache_stats(c, &st);
	tap_result(c && served == ncommitted && absent == KILL_FILLS - ncommitted && wrong == 0,
		   "every committed fill is served verified (%u), no partial one exists (%u absent, %u wrong)", served,
		   absent, wrong);
	tap_result(c && read_back(c, &bogus, buf, KILL_LEN, &got, NULL) == -EBADMSG && got < 4096 &&
			   crgw_cache_lookup(c, &bogus, NULL) == -ENOENT && st.objects == ncommitted + 1,
		   "an object that does not match its name is detected on its first read and removed");
	crgw_cache_close(c);
	free(buf);
}

/* ---- The fuzz corpus ---- */

static void test_corpus(const char *corpus)
{
	char **names = NULL;
	size_t n = corpus ? tap_list_dir(corpus, "", &names) : 0;
	bool ok = true;

	for (size_t i = 0; i < n; i++) {
		char p[1024];
		size_t len;
		char *buf;
		int rc;

		snprintf(p, sizeof(p), "%s/%s", corpus, names[i]);
		buf = tap_read_file(p, &len);
		rc = buf ? cache_index_parse(buf, len, NULL, NULL) : -EIO;
		if (strcmp(names[i], "empty") == 0)
			ok &= rc == 0;
		else if (strcmp(names[i], "three") == 0)
			ok &= rc == 3;
		else if (strncmp(names[i], "bad-", 4) == 0 || strcmp(names[i], "truncated") == 0 ||
			 strcmp(names[i], "no-header") == 0 || strcmp(names[i], "trailing") == 0 ||
			 strcmp(names[i], "sri-key") == 0 || strcmp(names[i], "uppercase-hex") == 0 ||
			 strcmp(names[i], "leading-zero") == 0)
			ok &= rc == -EBADMSG;
		if (!ok)
			printf("# %s: %d\n", names[i], rc);
		free(buf);
		free(names[i]);
	}
	free(names);
	tap_result(n > 0 && ok, "index fuzz corpus replayed (%zu files), the known ones decided as expected", n);
}

int main(int argc, char **argv)
{
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	snprintf(root, sizeof(root), "%s/crgw-cache-test-XXXXXX", base);
	if (!mkdtemp(root)) {
		printf("# mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	test_digests();
	test_round_trips();
	test_open_repairs();
	test_bit_flips();
	test_not_files();
	test_missing_files();
	test_eviction();
	test_concurrent();
	test_enospc();
	test_killed();
	test_corpus(argc > 1 ? argv[1] : NULL);
	rm_tree(root);
	return tap_done();
}
