/* SPDX-License-Identifier: Apache-2.0 */
/* The content cache: the store on disk, its index and S3-FIFO eviction, fills and their followers, readers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache_priv.h"

/*
 * Locking: c->lock guards the index (hash table, queues, byte count, ghost), the list of fills under way
 * and the dirty generation. It is held for lookups, queue moves and the metadata calls that must be
 * atomic with them (rename into objects/, unlink at eviction or removal, open of nothing), never while
 * object data is hashed, read or written. Each fill has its own mutex for its progress and followers; the
 * order is c->lock, then fill->m. Counters are atomics.
 */

#define GHOST_MAX 4096
#define OBJ_PATH_MAX 160
#define TMP_NAME_MAX 200

#define ASSERT(x)                                                                                              \
	do {                                                                                                   \
		if (!(x)) {                                                                                    \
			fprintf(stderr, "%s:%d: cache invariant broken: %s\n", __FILE__, __LINE__, #x);        \
			abort();                                                                               \
		}                                                                                              \
	} while (0)

#define COUNT(c, field, n) __atomic_add_fetch(&(c)->st.field, (n), __ATOMIC_RELAXED)

/* What identifies one version of a file: a rewrite, a truncation or a new file changes one of these. */
struct file_id {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim, ctim;
};

struct obj {
	struct crgw_digest d;
	uint64_t size;
	int64_t atime;
	uint8_t queue, freq;
	bool seen;   /* found on disk while reconciling at open */
	bool have_id; /* `id` is a file this process verified */
	struct file_id id;
	struct obj *hnext;
	struct obj *prev, *next;
};

struct queue {
	struct obj *head, *tail;
	uint64_t bytes;
	size_t n;
};

enum fill_state { FILL_FILLING, FILL_DONE, FILL_FAILED };

struct crgw_cache_follower {
	struct crgw_cache_fill *f;
	crgw_cache_notify_cb notify;
	void *arg;
	uint64_t pos;      /* owner's thread only */
	uint64_t seen_seq; /* the notification round that last called it */
	bool in_cb, closing;
	struct crgw_cache_follower *prev, *next;
};

struct crgw_cache_fill {
	struct crgw_cache *c;
	struct crgw_digest d;
	int64_t expect;
	int fd; /* the temporary file; followers pread it until the last reference goes */
	char tmpname[TMP_NAME_MAX];
	EVP_MD_CTX *md;   /* writer only */
	bool failed_local; /* writer only: the fill has failed, nothing to do but abort */
	bool registered;  /* in c->fills (c->lock) */
	struct crgw_cache_fill *cnext;

	pthread_mutex_t m;
	pthread_cond_t cv;
	enum fill_state state;
	int err;
	uint64_t written;
	unsigned refs;
	struct crgw_cache_follower *followers;
	uint64_t notify_seq;
	bool notifying;
	pthread_t notifier;
};

struct crgw_cache_reader {
	struct crgw_cache *c;
	struct crgw_digest d;
	int fd;
	uint64_t size, pos;
	struct file_id id;
	bool trusted, done, count;
	int err;
	EVP_MD_CTX *md;
};

struct crgw_cache {
	pthread_mutex_t lock;
	pthread_mutex_t flush_lock; /* one index writer at a time; taken before c->lock */
	int dir_fd, objects_fd, tmp_fd;
	uint64_t max_bytes;
	bool verify_always;
	bool opened; /* open succeeded: close writes the index */
	bool index_rebuilt; /* open found an index file it could not use and rebuilt it from objects/ */

	struct obj **buckets;
	size_t nbuckets, nobjs;
	struct queue small, main;
	uint64_t bytes;
	uint64_t ghost[GHOST_MAX];
	size_t ghost_pos;
	struct crgw_cache_fill *fills;
	size_t nfills;
	uint64_t gen, flushed_gen;
	uint64_t tmp_seq;

	struct {
		uint64_t hits, misses, bytes_served, bytes_stored, evictions, corrupt, fills_failed;
	} st;
};

/* ---- Small helpers ---- */

static int64_t now_sec(void)
{
	return (int64_t)time(NULL);
}

static void file_id_of(const struct stat *st, struct file_id *id)
{
	memset(id, 0, sizeof(*id));
	id->dev = st->st_dev;
	id->ino = st->st_ino;
	id->size = st->st_size;
	id->mtim = st->st_mtim;
	id->ctim = st->st_ctim;
}

static bool file_id_equal(const struct file_id *a, const struct file_id *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtim.tv_sec == b->mtim.tv_sec &&
	       a->mtim.tv_nsec == b->mtim.tv_nsec && a->ctim.tv_sec == b->ctim.tv_sec &&
	       a->ctim.tv_nsec == b->ctim.tv_nsec;
}

static bool digest_ok(const struct crgw_digest *d)
{
	return d && cache_alg_len(d->alg) && d->len == cache_alg_len(d->alg);
}

/* "sha256/ab/abcd…", relative to objects/. */
static void obj_path(const struct crgw_digest *d, char *buf, size_t cap)
{
	char hex[2 * CRGW_DIGEST_MAX_LEN + 1];

	cache_hex(d->bytes, d->len, hex);
	snprintf(buf, cap, "%s/%.2s/%s", cache_alg_name(d->alg), hex, hex);
}

static void obj_dir(const struct crgw_digest *d, char *buf, size_t cap)
{
	char hex[2 * CRGW_DIGEST_MAX_LEN + 1];

	cache_hex(d->bytes, d->len, hex);
	snprintf(buf, cap, "%s/%.2s", cache_alg_name(d->alg), hex);
}

static uint64_t digest_hash(const struct crgw_digest *d)
{
	uint64_t h;

	/* The digest is already uniform; its first bytes are a fine hash. */
	memcpy(&h, d->bytes, sizeof(h));
	return h ^ (uint64_t)d->alg;
}

static void mark_dirty(struct crgw_cache *c)
{
	c->gen++;
}

/* ---- The index: hash table and the two FIFO queues (c->lock held) ---- */

static struct obj *obj_find(struct crgw_cache *c, const struct crgw_digest *d)
{
	for (struct obj *o = c->buckets[digest_hash(d) % c->nbuckets]; o; o = o->hnext)
		if (crgw_digest_equal(&o->d, d))
			return o;
	return NULL;
}

static int table_grow(struct crgw_cache *c)
{
	size_t n = c->nbuckets ? c->nbuckets * 2 : 1024;
	struct obj **b = calloc(n, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < c->nbuckets; i++) {
		for (struct obj *o = c->buckets[i], *next; o; o = next) {
			size_t k = digest_hash(&o->d) % n;

			next = o->hnext;
			o->hnext = b[k];
			b[k] = o;
		}
	}
	free(c->buckets);
	c->buckets = b;
	c->nbuckets = n;
	return 0;
}

static struct queue *queue_of(struct crgw_cache *c, const struct obj *o)
{
	return o->queue == CACHE_Q_SMALL ? &c->small : &c->main;
}

static void q_push(struct crgw_cache *c, struct obj *o, uint8_t which)
{
	struct queue *q;

	o->queue = which;
	q = queue_of(c, o);
	o->next = NULL;
	o->prev = q->tail;
	if (q->tail)
		q->tail->next = o;
	else
		q->head = o;
	q->tail = o;
	q->bytes += o->size;
	q->n++;
}

static void q_remove(struct crgw_cache *c, struct obj *o)
{
	struct queue *q = queue_of(c, o);

	if (o->prev)
		o->prev->next = o->next;
	else
		q->head = o->next;
	if (o->next)
		o->next->prev = o->prev;
	else
		q->tail = o->prev;
	o->prev = o->next = NULL;
	q->bytes -= o->size;
	q->n--;
}

/* Adds a new entry at the tail of `which`; the caller checked it is not there. */
static int obj_add(struct crgw_cache *c, const struct crgw_digest *d, uint64_t size, int64_t atime, uint8_t which,
		   uint8_t freq, struct obj **out)
{
	struct obj *o;
	size_t k;

	if (c->nobjs + 1 > c->nbuckets && table_grow(c) < 0)
		return -ENOMEM;
	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->d = *d;
	o->size = size;
	o->atime = atime;
	o->freq = freq;
	k = digest_hash(d) % c->nbuckets;
	o->hnext = c->buckets[k];
	c->buckets[k] = o;
	q_push(c, o, which);
	c->nobjs++;
	c->bytes += size;
	if (out)
		*out = o;
	return 0;
}

/* Removes the entry from the index, and its file from disk when `unlink_file`. */
static void obj_drop(struct crgw_cache *c, struct obj *o, bool unlink_file)
{
	struct obj **pp = &c->buckets[digest_hash(&o->d) % c->nbuckets];

	if (unlink_file) {
		char path[OBJ_PATH_MAX];

		/*
		 * Under the lock, so no fill of the same digest can rename a new file into this path between
		 * the index change and the unlink. Readers keep their descriptors: unlinking an open file is safe.
		 */
		obj_path(&o->d, path, sizeof(path));
		/*
		 * An empty directory in place of the object is removed too: left there, it would fail every
		 * later fill's rename (EISDIR), and verify would have said "removed" of it.
		 */
		if (unlinkat(c->objects_fd, path, 0) < 0 && errno == EISDIR)
			(void)unlinkat(c->objects_fd, path, AT_REMOVEDIR);
	}
	while (*pp != o)
		pp = &(*pp)->hnext;
	*pp = o->hnext;
	q_remove(c, o);
	c->nobjs--;
	c->bytes -= o->size;
	free(o);
	mark_dirty(c);
}

static void ghost_add(struct crgw_cache *c, const struct crgw_digest *d)
{
	c->ghost[c->ghost_pos] = digest_hash(d) | 1; /* 0 marks an empty slot */
	c->ghost_pos = (c->ghost_pos + 1) % GHOST_MAX;
}

/* Whether `d` was evicted from the small queue recently; forgets it if so. */
static bool ghost_take(struct crgw_cache *c, const struct crgw_digest *d)
{
	uint64_t h = digest_hash(d) | 1;

	for (size_t i = 0; i < GHOST_MAX; i++) {
		if (c->ghost[i] == h) {
			c->ghost[i] = 0;
			return true;
		}
	}
	return false;
}

/*
 * S3-FIFO (Yang et al., SOSP 2023): new objects enter the small queue S (a tenth of the bound); an object
 * leaving S that was hit since it entered moves to the main queue M, one that was not is evicted and
 * remembered in the ghost list, and a ghost that comes back enters M directly. M is a FIFO with second
 * chances: a hit object at its head goes back to the tail with one hit less. One-hit wonders (most
 * artifacts of a one-off install) thus leave quickly without pushing out what is used again.
 */
static void evict_one(struct crgw_cache *c)
{
	for (;;) {
		bool from_small = c->small.n && (c->small.bytes > c->max_bytes / 10 || !c->main.n);
		struct obj *o = from_small ? c->small.head : c->main.head;

		ASSERT(o);
		if (o->freq) {
			q_remove(c, o);
			o->freq = from_small ? 0 : (uint8_t)(o->freq - 1);
			q_push(c, o, CACHE_Q_MAIN);
			continue;
		}
		if (from_small)
			ghost_add(c, &o->d);
		obj_drop(c, o, true);
		COUNT(c, evictions, 1);
		return;
	}
}

/* Evicts until `need` more bytes fit under `limit`. */
static void make_room(struct crgw_cache *c, uint64_t need, uint64_t limit)
{
	while (c->nobjs && c->bytes + need > limit)
		evict_one(c);
}

static void index_clear(struct crgw_cache *c)
{
	while (c->small.head)
		obj_drop(c, c->small.head, false);
	while (c->main.head)
		obj_drop(c, c->main.head, false);
}

/* ---- Opening: tmp/ leftovers, the index, reconciling with objects/ ---- */

/* A crash mid-fill leaves only a file in tmp/; nothing there is ever part of the cache. */
static void clean_tmp(struct crgw_cache *c)
{
	int fd = openat(c->tmp_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			(void)unlinkat(c->tmp_fd, e->d_name, 0);
	closedir(d);
}

static int add_rec(void *arg, const struct cache_index_rec *r)
{
	struct crgw_cache *c = arg;

	if (obj_find(c, &r->digest))
		return -EBADMSG; /* a duplicate: the file is not one we wrote */
	return obj_add(c, &r->digest, r->size, r->atime, r->queue, r->freq, NULL);
}

/* Loads the index if it is whole and sound; otherwise leaves the table empty. Returns whether it loaded. */
static int load_index(struct crgw_cache *c, bool *loaded)
{
	/* O_NONBLOCK: a FIFO named index would block the open, and so the gateway's start (it is not S_ISREG). */
	int fd = openat(c->dir_fd, "index", O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int err = 0;

	*loaded = false;
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)CACHE_INDEX_MAX_BYTES)
		goto out;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto out;
		len += (size_t)n;
	}
	err = cache_index_parse(buf, len, add_rec, c);
	if (err >= 0) {
		*loaded = true;
		err = 0;
	} else if (err == -EBADMSG) {
		err = 0;
	}
out:
	if (!*loaded) {
		index_clear(c);
		c->index_rebuilt = true;
	}
	free(buf);
	close(fd);
	return err;
}

static bool is_lower_hex(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* Indexes the objects of one objects/<alg>/<xx>/ directory; files with names we never write are ignored. */
static int reconcile_dir(struct crgw_cache *c, enum crgw_digest_alg alg, int dfd, const char *sub, bool *changed)
{
	unsigned hexlen = 2 * cache_alg_len(alg);
	int fd = openat(dfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	int err = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while (!err && (e = readdir(d))) {
		char text[CRGW_DIGEST_TEXT_MAX];
		struct crgw_digest dg;
		struct stat st;
		struct obj *o;

		if (strlen(e->d_name) != hexlen || !is_lower_hex(e->d_name, hexlen) ||
		    memcmp(e->d_name, sub, 2) != 0)
			continue;
		snprintf(text, sizeof(text), "%s:%s", cache_alg_name(alg), e->d_name);
		if (crgw_digest_parse(text, strlen(text), &dg) < 0)
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		o = obj_find(c, &dg);
		if (!o) {
			err = obj_add(c, &dg, (uint64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, CACHE_Q_SMALL, 0, &o);
			*changed = true;
		} else if (o->size != (uint64_t)st.st_size) {
			/* The file decides; the digest check on the first read decides whether it is any good. */
			queue_of(c, o)->bytes -= o->size;
			c->bytes -= o->size;
			o->size = (uint64_t)st.st_size;
			queue_of(c, o)->bytes += o->size;
			c->bytes += o->size;
			*changed = true;
		}
		if (o)
			o->seen = true;
	}
	closedir(d);
	return err;
}

static int reconcile(struct crgw_cache *c, bool *changed)
{
	static const enum crgw_digest_alg all[] = { CRGW_DIGEST_SHA256, CRGW_DIGEST_SHA512 };
	int err = 0;

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]) && !err; i++) {
		int fd = openat(c->objects_fd, cache_alg_name(all[i]), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		int fd2 = fd >= 0 ? dup(fd) : -1;
		DIR *d = fd2 >= 0 ? fdopendir(fd2) : NULL;
		struct dirent *e;

		if (!d) {
			if (fd >= 0)
				close(fd);
			if (fd2 >= 0)
				close(fd2);
			continue;
		}
		while (!err && (e = readdir(d)))
			if (strlen(e->d_name) == 2 && is_lower_hex(e->d_name, 2))
				err = reconcile_dir(c, all[i], fd, e->d_name, changed);
		closedir(d);
		close(fd);
	}
	if (err)
		return err;
	/* Entries whose file is gone are dropped. */
	for (struct queue *q = &c->small; q; q = q == &c->small ? &c->main : NULL) {
		for (struct obj *o = q->head, *next; o; o = next) {
			next = o->next;
			if (!o->seen) {
				obj_drop(c, o, false);
				*changed = true;
			}
		}
	}
	return 0;
}

static int mkdir_at(int dfd, const char *name)
{
	return mkdirat(dfd, name, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

int crgw_cache_open(const struct crgw_cache_config *cfg, struct crgw_cache **out)
{
	struct crgw_cache *c;
	bool loaded = false, changed = false;
	size_t nobjs;
	int err;

	if (!cfg || !cfg->dir || !cfg->max_bytes || cfg->max_bytes > CACHE_SIZE_MAX || !out)
		return -EINVAL;
	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->dir_fd = c->objects_fd = c->tmp_fd = -1;
	c->max_bytes = cfg->max_bytes;
	c->verify_always = cfg->verify_always;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->flush_lock, NULL);
	err = table_grow(c);
	if (err)
		goto out;
	if (mkdir(cfg->dir, 0700) < 0 && errno != EEXIST) {
		err = -errno;
		goto out;
	}
	c->dir_fd = open(cfg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->dir_fd < 0 || (err = mkdir_at(c->dir_fd, "objects")) || (err = mkdir_at(c->dir_fd, "tmp"))) {
		err = err ? err : -errno;
		goto out;
	}
	c->objects_fd = openat(c->dir_fd, "objects", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	c->tmp_fd = openat(c->dir_fd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (c->objects_fd < 0 || c->tmp_fd < 0) {
		err = -errno;
		goto out;
	}
	if ((err = mkdir_at(c->objects_fd, "sha256")) || (err = mkdir_at(c->objects_fd, "sha512")))
		goto out;
	clean_tmp(c);
	err = load_index(c, &loaded);
	if (!err)
		err = reconcile(c, &changed);
	if (err)
		goto out;
	nobjs = c->nobjs;
	make_room(c, 0, c->max_bytes);
	/* Whatever the index said, this process has verified nothing yet: every first read is hashed. */
	c->gen = c->flushed_gen = 1;
	if (!loaded || changed || nobjs != c->nobjs)
		mark_dirty(c);
	c->opened = true;
	*out = c;
	return 0;
out:
	crgw_cache_close(c);
	return err;
}

/* ---- The index on disk ---- */

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The whole index file, built under c->lock (no I/O): a new buffer the caller frees. */
static char *index_text(struct crgw_cache *c, size_t *len)
{
	size_t cap = strlen(CACHE_INDEX_HEADER) + (c->nobjs + 1) * CACHE_INDEX_LINE_MAX, n;
	char *buf = malloc(cap);

	if (!buf)
		return NULL;
	n = (size_t)snprintf(buf, cap, "%s", CACHE_INDEX_HEADER);
	for (struct queue *q = &c->small; q; q = q == &c->small ? &c->main : NULL) {
		for (struct obj *o = q->head; o; o = o->next) {
			struct cache_index_rec r = {
				.digest = o->d,
				.size = o->size,
				.atime = o->atime < 0 ? 0 : o->atime > CACHE_ATIME_MAX ? CACHE_ATIME_MAX : o->atime,
				.queue = o->queue,
				.freq = o->freq,
			};
			int k = cache_index_format_rec(&r, buf + n, cap - n);

			ASSERT(k > 0);
			n += (size_t)k;
		}
	}
	int k = cache_index_format_end(c->nobjs, buf + n, cap - n);

	ASSERT(k > 0);
	*len = n + (size_t)k;
	return buf;
}

int crgw_cache_flush(struct crgw_cache *c)
{
	uint64_t gen;
	char *buf;
	size_t len;
	int fd = -1, err = 0;

	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&c->flush_lock);
	pthread_mutex_lock(&c->lock);
	gen = c->gen;
	buf = gen != c->flushed_gen ? index_text(c, &len) : NULL;
	pthread_mutex_unlock(&c->lock);
	if (gen == c->flushed_gen)
		goto out;
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	/* Write a new file, make it durable, then rename it over the old one: a crash leaves one or the other. */
	fd = openat(c->tmp_fd, "index.new", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	err = write_all(fd, buf, len);
	if (!err && fsync(fd) < 0)
		err = -errno;
	if (!err && close(fd) < 0)
		err = -errno;
	fd = -1;
	if (!err && renameat(c->tmp_fd, "index.new", c->dir_fd, "index") < 0)
		err = -errno;
	if (!err && fsync(c->dir_fd) < 0)
		err = -errno;
	if (err) {
		(void)unlinkat(c->tmp_fd, "index.new", 0);
		goto out;
	}
	pthread_mutex_lock(&c->lock);
	c->flushed_gen = gen;
	pthread_mutex_unlock(&c->lock);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	pthread_mutex_unlock(&c->flush_lock);
	return err;
}

void crgw_cache_close(struct crgw_cache *c)
{
	if (!c)
		return;
	if (c->opened)
		(void)crgw_cache_flush(c);
	ASSERT(!c->fills);
	if (c->nbuckets)
		index_clear(c);
	free(c->buckets);
	if (c->tmp_fd >= 0)
		close(c->tmp_fd);
	if (c->objects_fd >= 0)
		close(c->objects_fd);
	if (c->dir_fd >= 0)
		close(c->dir_fd);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->flush_lock);
	free(c);
}

int crgw_cache_lookup(struct crgw_cache *c, const struct crgw_digest *d, uint64_t *size)
{
	struct obj *o;

	if (!c || !digest_ok(d))
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	o = obj_find(c, d);
	if (o && size)
		*size = o->size;
	pthread_mutex_unlock(&c->lock);
	return o ? 0 : -ENOENT;
}

/* Removes the object if its path still names the file `id` was taken from (another may have replaced it). */
static void remove_corrupt(struct crgw_cache *c, const struct crgw_digest *d, const struct file_id *id)
{
	char path[OBJ_PATH_MAX];
	struct stat st;
	struct obj *o;

	obj_path(d, path, sizeof(path));
	pthread_mutex_lock(&c->lock);
	o = obj_find(c, d);
	if (o) {
		int rc = fstatat(c->objects_fd, path, &st, AT_SYMLINK_NOFOLLOW);
		bool gone = rc < 0 && errno == ENOENT;
		bool same = rc == 0 && st.st_dev == id->dev && st.st_ino == id->ino;

		if (same || gone)
			obj_drop(c, o, same);
	}
	pthread_mutex_unlock(&c->lock);
	COUNT(c, corrupt, 1);
}

/*
 * An indexed object whose file has gone (deleted behind our back): drops the entry, so that the next fill
 * can keep the object again (fill_begin refuses a digest the index holds) and ls, stats and the offline
 * mode stop counting it. Under the lock, renames into objects/ and eviction's unlinks are ordered with
 * this check: an entry evicted (or evicted and filled again) since the caller looked is left alone, and
 * false is returned.
 */
static bool remove_missing(struct crgw_cache *c, const struct crgw_digest *d)
{
	char path[OBJ_PATH_MAX];
	struct stat st;
	struct obj *o;
	bool dropped = false;

	obj_path(d, path, sizeof(path));
	pthread_mutex_lock(&c->lock);
	o = obj_find(c, d);
	if (o && fstatat(c->objects_fd, path, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
		obj_drop(c, o, false);
		dropped = true;
	}
	pthread_mutex_unlock(&c->lock);
	if (dropped)
		COUNT(c, corrupt, 1);
	return dropped;
}

/* ---- Readers ---- */

static int reader_open(struct crgw_cache *c, const struct crgw_digest *d, bool count, struct crgw_cache_reader **out)
{
	struct crgw_cache_reader *r = NULL;
	char path[OBJ_PATH_MAX];
	struct file_id known;
	bool have_id = false;
	struct stat st;
	uint64_t size = 0;
	struct obj *o;
	int fd = -1, err;

	if (!c || !digest_ok(d) || !out)
		return -EINVAL;
	*out = NULL;
	obj_path(d, path, sizeof(path));
	pthread_mutex_lock(&c->lock);
	o = obj_find(c, d);
	if (o) {
		size = o->size;
		have_id = o->have_id;
		known = o->id;
		if (count) {
			if (o->freq < CACHE_FREQ_MAX)
				o->freq++;
			o->atime = now_sec();
			mark_dirty(c);
		}
	}
	pthread_mutex_unlock(&c->lock);
	if (!o) {
		err = -ENOENT;
		goto out;
	}
	/*
	 * O_NONBLOCK: a FIFO planted under the object's name would otherwise block this open (a worker, or a
	 * verify that shutdown waits for) until something opened it for writing. The type is checked below.
	 */
	fd = openat(c->objects_fd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0 && errno == ELOOP && fstatat(c->objects_fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode)) {
		struct file_id id;

		/* A link in place of the object: the wrong type, removed like one (the link, not its target). */
		file_id_of(&st, &id);
		remove_corrupt(c, d, &id);
		err = -EBADMSG;
		goto out;
	}
	if (fd < 0) {
		/* Evicted since (a miss), or removed behind our back: found bad, like a file of the wrong size. */
		err = errno != ENOENT ? -errno : remove_missing(c, d) ? -EBADMSG : -ENOENT;
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != size) {
		struct file_id id;

		file_id_of(&st, &id);
		remove_corrupt(c, d, &id);
		err = -EBADMSG;
		goto out;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		err = -errno;
		goto out;
	}
	r = calloc(1, sizeof(*r));
	if (!r || !(r->md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(r->md, cache_alg_md(d->alg), NULL)) {
		err = -ENOMEM;
		goto out;
	}
	r->c = c;
	r->d = *d;
	r->fd = fd;
	r->size = size;
	r->count = count;
	file_id_of(&st, &r->id);
	r->trusted = !c->verify_always && have_id && file_id_equal(&known, &r->id);
	fd = -1;
	*out = r;
	r = NULL;
	err = 0;
out:
	if (count && !err)
		COUNT(c, hits, 1);
	else if (count && (err == -ENOENT || err == -EBADMSG))
		COUNT(c, misses, 1);
	if (fd >= 0)
		close(fd);
	crgw_cache_reader_close(r);
	return err;
}

int crgw_cache_read_open(struct crgw_cache *c, const struct crgw_digest *d, struct crgw_cache_reader **out)
{
	int err = reader_open(c, d, true, out);

	/* Found bad at open and removed: for the caller, a miss to fetch again. */
	return err == -EBADMSG ? -ENOENT : err;
}

void crgw_cache_count_miss(struct crgw_cache *c)
{
	if (c)
		COUNT(c, misses, 1);
}

int crgw_cache_reader_fd(const struct crgw_cache_reader *r)
{
	return r->fd;
}

uint64_t crgw_cache_reader_size(const struct crgw_cache_reader *r)
{
	return r->size;
}

bool crgw_cache_reader_trusted(const struct crgw_cache_reader *r)
{
	return r->trusted;
}

void crgw_cache_reader_sent(struct crgw_cache_reader *r, uint64_t bytes)
{
	COUNT(r->c, bytes_served, bytes);
}

/* The whole object has been hashed: decide, and remember a good file as verified. */
static int reader_finish(struct crgw_cache_reader *r)
{
	struct crgw_digest got = { .alg = r->d.alg, .len = r->d.len };
	unsigned n = 0;
	struct stat st;
	struct file_id now;
	struct obj *o;

	if (!EVP_DigestFinal_ex(r->md, got.bytes, &n) || n != r->d.len)
		return r->err = -EIO;
	if (!crgw_digest_equal(&got, &r->d)) {
		remove_corrupt(r->c, &r->d, &r->id);
		return r->err = -EBADMSG;
	}
	r->done = true;
	/* Trust it later only if the file is still the one we opened (no write during the read). */
	if (fstat(r->fd, &st) < 0)
		return 0;
	file_id_of(&st, &now);
	if (!file_id_equal(&now, &r->id))
		return 0;
	/* What this reader hashed is what its descriptor holds: it may be sent as it is, verify_always or not. */
	r->trusted = true;
	pthread_mutex_lock(&r->c->lock);
	o = obj_find(r->c, &r->d);
	if (o && o->size == r->size) {
		o->id = now;
		o->have_id = true;
	}
	pthread_mutex_unlock(&r->c->lock);
	return 0;
}

ssize_t crgw_cache_reader_read(struct crgw_cache_reader *r, void *buf, size_t cap)
{
	uint64_t left;
	ssize_t n;

	if (r->err)
		return r->err;
	if (r->done)
		return 0;
	left = r->size - r->pos;
	if (left == 0) /* an empty object: still checked */
		return reader_finish(r);
	if (cap == 0)
		return -EINVAL;
	do
		n = pread(r->fd, buf, cap < left ? cap : (size_t)left, (off_t)r->pos);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return r->err = -errno;
	if (n == 0) {
		/* Shorter than indexed: truncated behind our back. */
		remove_corrupt(r->c, &r->d, &r->id);
		return r->err = -EBADMSG;
	}
	if (!EVP_DigestUpdate(r->md, buf, (size_t)n))
		return r->err = -EIO;
	r->pos += (uint64_t)n;
	if (r->pos == r->size && reader_finish(r) < 0)
		return r->err;
	if (r->count)
		COUNT(r->c, bytes_served, (uint64_t)n);
	return n;
}

void crgw_cache_reader_close(struct crgw_cache_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	EVP_MD_CTX_free(r->md);
	free(r);
}

/* ---- Fills and followers ---- */

static void fill_free(struct crgw_cache_fill *f)
{
	ASSERT(!f->followers && !f->registered);
	if (f->fd >= 0)
		close(f->fd);
	EVP_MD_CTX_free(f->md);
	pthread_mutex_destroy(&f->m);
	pthread_cond_destroy(&f->cv);
	free(f);
}

static void fill_unref(struct crgw_cache_fill *f)
{
	bool last;

	pthread_mutex_lock(&f->m);
	ASSERT(f->refs > 0);
	last = --f->refs == 0;
	pthread_mutex_unlock(&f->m);
	if (last)
		fill_free(f);
}

/*
 * Calls every follower's notify once, without f->m held (the callback may take its own locks). A
 * follower closed from another thread waits until its callback returned; one closed from inside its own
 * callback is freed here afterwards. Followers that join during a round are not called in it: they read
 * the state themselves after joining.
 */
/* Takes follower `w` out of its fill's list and frees it; under f->m. */
static void follower_unlink(struct crgw_cache_fill *f, struct crgw_cache_follower *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		f->followers = w->next;
	if (w->next)
		w->next->prev = w->prev;
	free(w);
}

static void fill_notify(struct crgw_cache_fill *f)
{
	uint64_t seq;

	pthread_mutex_lock(&f->m);
	seq = ++f->notify_seq;
	f->notifying = true;
	f->notifier = pthread_self();
	for (;;) {
		struct crgw_cache_follower *w;

		for (w = f->followers; w; w = w->next)
			if (w->seen_seq < seq && !w->closing)
				break;
		if (!w)
			break;
		w->seen_seq = seq;
		if (!w->notify)
			continue;
		w->in_cb = true;
		pthread_mutex_unlock(&f->m);
		w->notify(w->arg);
		pthread_mutex_lock(&f->m);
		w->in_cb = false;
		if (w->closing) {
			follower_unlink(f, w);
			f->refs--; /* the writer still holds its reference */
		}
		pthread_cond_broadcast(&f->cv);
	}
	f->notifying = false;
	pthread_mutex_unlock(&f->m);
}

static void fill_unregister(struct crgw_cache *c, struct crgw_cache_fill *f)
{
	struct crgw_cache_fill **pp = &c->fills;

	if (!f->registered)
		return;
	while (*pp != f)
		pp = &(*pp)->cnext;
	*pp = f->cnext;
	f->registered = false;
	c->nfills--;
}

static struct crgw_cache_fill *fill_find(struct crgw_cache *c, const struct crgw_digest *d)
{
	for (struct crgw_cache_fill *f = c->fills; f; f = f->cnext)
		if (crgw_digest_equal(&f->d, d))
			return f;
	return NULL;
}

/* Adds a follower to a registered fill (c->lock held, so the fill is still under way). */
static void fill_join(struct crgw_cache_fill *f, struct crgw_cache_follower *w, crgw_cache_notify_cb notify,
		      void *arg)
{
	w->f = f;
	w->notify = notify;
	w->arg = arg;
	pthread_mutex_lock(&f->m);
	w->seen_seq = f->notify_seq;
	w->next = f->followers;
	if (w->next)
		w->next->prev = w;
	f->followers = w;
	f->refs++;
	pthread_mutex_unlock(&f->m);
}

/* Ends the fill with `err` (writer's thread): the temporary file goes, followers get the error. */
static int fill_fail(struct crgw_cache_fill *f, int err)
{
	struct crgw_cache *c = f->c;

	if (f->failed_local)
		return f->err;
	f->failed_local = true;
	(void)unlinkat(c->tmp_fd, f->tmpname, 0);
	pthread_mutex_lock(&c->lock);
	fill_unregister(c, f);
	pthread_mutex_unlock(&c->lock);
	COUNT(c, fills_failed, 1);
	pthread_mutex_lock(&f->m);
	f->state = FILL_FAILED;
	f->err = err;
	pthread_mutex_unlock(&f->m);
	fill_notify(f);
	return err;
}

int crgw_cache_fill_begin(struct crgw_cache *c, const struct crgw_digest *d, int64_t size,
			  crgw_cache_notify_cb notify, void *arg, struct crgw_cache_fill **fill,
			  struct crgw_cache_follower **follower)
{
	struct crgw_cache_follower *w = NULL;
	struct crgw_cache_fill *f = NULL, *other;
	char hex[2 * CRGW_DIGEST_MAX_LEN + 1];
	int err;

	if (!c || !digest_ok(d) || size < -1 || !fill || !follower)
		return -EINVAL;
	*fill = NULL;
	*follower = NULL;
	if (size >= 0 && (uint64_t)size > c->max_bytes)
		return -EFBIG;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;

	/* Cheap checks first, so a collapsed miss creates no file. */
	pthread_mutex_lock(&c->lock);
	err = obj_find(c, d) ? -EEXIST : 0;
	other = err ? NULL : fill_find(c, d);
	if (other)
		fill_join(other, w, notify, arg);
	pthread_mutex_unlock(&c->lock);
	if (err || other)
		goto out;

	f = calloc(1, sizeof(*f));
	if (!f) {
		err = -ENOMEM;
		goto out;
	}
	f->c = c;
	f->d = *d;
	f->expect = size;
	f->fd = -1;
	f->refs = 1;
	pthread_mutex_init(&f->m, NULL);
	pthread_cond_init(&f->cv, NULL);
	f->md = EVP_MD_CTX_new();
	if (!f->md || !EVP_DigestInit_ex(f->md, cache_alg_md(d->alg), NULL)) {
		err = -ENOMEM;
		goto out;
	}
	cache_hex(d->bytes, d->len, hex);
	snprintf(f->tmpname, sizeof(f->tmpname), "%s-%s.%ld.%llu", cache_alg_name(d->alg), hex, (long)getpid(),
		 (unsigned long long)__atomic_add_fetch(&c->tmp_seq, 1, __ATOMIC_RELAXED));
	f->fd = openat(c->tmp_fd, f->tmpname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (f->fd < 0) {
		err = -errno;
		goto out;
	}
	/* Reserving the announced size turns a full disk into an error now rather than mid-stream. */
	if (size > 0 && fallocate(f->fd, 0, 0, (off_t)size) < 0 && errno != EOPNOTSUPP && errno != ENOSYS) {
		err = -errno;
		goto out_unlink;
	}

	pthread_mutex_lock(&c->lock);
	err = obj_find(c, d) ? -EEXIST : 0;
	other = err ? NULL : fill_find(c, d);
	if (other) {
		fill_join(other, w, notify, arg);
	} else if (!err) {
		f->registered = true;
		f->cnext = c->fills;
		c->fills = f;
		c->nfills++;
	}
	pthread_mutex_unlock(&c->lock);
	if (err || other)
		goto out_unlink;
	*fill = f;
	free(w);
	return 0;
out_unlink:
	(void)unlinkat(c->tmp_fd, f->tmpname, 0);
out:
	if (f)
		fill_free(f);
	if (other && !err) {
		*follower = w;
		return 0;
	}
	free(w);
	return err;
}

int crgw_cache_fill_write(struct crgw_cache_fill *f, const void *buf, size_t len)
{
	const char *p = buf;
	uint64_t off = f->written;

	if (f->failed_local)
		return f->err;
	if (len == 0)
		return 0;
	if (f->expect >= 0 && f->written + len > (uint64_t)f->expect)
		return fill_fail(f, -EMSGSIZE);
	if (f->written + len > f->c->max_bytes)
		return fill_fail(f, -EFBIG);
	if (!EVP_DigestUpdate(f->md, buf, len))
		return fill_fail(f, -EIO);
	for (size_t done = 0; done < len;) {
		ssize_t n = pwrite(f->fd, p + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return fill_fail(f, n < 0 ? -errno : -EIO);
		done += (size_t)n;
	}
	pthread_mutex_lock(&f->m);
	f->written += len;
	pthread_mutex_unlock(&f->m);
	fill_notify(f);
	return 0;
}

static void fsync_dir(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);

	/*
	 * A failure here can only lose the entry in a crash (the rename may not be durable); the object is
	 * verified already, and a lost rename leaves a file in tmp/ that the next open removes.
	 */
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

int crgw_cache_fill_commit(struct crgw_cache_fill *f)
{
	struct crgw_cache *c = f->c;
	struct crgw_digest got = { .alg = f->d.alg, .len = f->d.len };
	char path[OBJ_PATH_MAX], dir[OBJ_PATH_MAX];
	unsigned n = 0;
	struct stat st;
	struct obj *o;
	int err;

	if (f->failed_local) {
		err = f->err;
		goto out;
	}
	if (f->expect >= 0 && f->written != (uint64_t)f->expect) {
		err = fill_fail(f, -EBADMSG);
		goto out;
	}
	if (!EVP_DigestFinal_ex(f->md, got.bytes, &n) || n != f->d.len) {
		err = fill_fail(f, -EIO);
		goto out;
	}
	if (!crgw_digest_equal(&got, &f->d)) {
		err = fill_fail(f, -EBADMSG);
		goto out;
	}
	/* A reservation larger than what came would leave zeros at the end; the size check above forbids it. */
	if (fsync(f->fd) < 0) {
		err = fill_fail(f, -errno);
		goto out;
	}
	obj_path(&f->d, path, sizeof(path));
	obj_dir(&f->d, dir, sizeof(dir));
	err = mkdir_at(c->objects_fd, dir);
	if (err) {
		err = fill_fail(f, err);
		goto out;
	}

	pthread_mutex_lock(&c->lock);
	/* Nothing can be at `path`: begin refuses a digest in the index, and we are its only fill. */
	ASSERT(!obj_find(c, &f->d));
	if (renameat(c->tmp_fd, f->tmpname, c->objects_fd, path) < 0 || fstat(f->fd, &st) < 0) {
		err = -errno;
		(void)unlinkat(c->objects_fd, path, 0);
		pthread_mutex_unlock(&c->lock);
		err = fill_fail(f, err);
		goto out;
	}
	make_room(c, f->written, c->max_bytes);
	err = obj_add(c, &f->d, f->written, now_sec(), ghost_take(c, &f->d) ? CACHE_Q_MAIN : CACHE_Q_SMALL, 0, &o);
	if (err) {
		(void)unlinkat(c->objects_fd, path, 0);
		pthread_mutex_unlock(&c->lock);
		err = fill_fail(f, err);
		goto out;
	}
	/* We hashed every byte on its way into this file: it starts out verified. */
	file_id_of(&st, &o->id);
	o->have_id = true;
	fill_unregister(c, f);
	mark_dirty(c);
	pthread_mutex_unlock(&c->lock);
	fsync_dir(c->objects_fd, dir);
	COUNT(c, bytes_stored, f->written);

	pthread_mutex_lock(&f->m);
	f->state = FILL_DONE;
	pthread_mutex_unlock(&f->m);
	fill_notify(f);
	err = 0;
out:
	f->failed_local = true;
	fill_unref(f);
	return err;
}

void crgw_cache_fill_abort(struct crgw_cache_fill *f)
{
	if (!f)
		return;
	(void)fill_fail(f, -ECANCELED);
	fill_unref(f);
}

ssize_t crgw_cache_follower_read(struct crgw_cache_follower *w, void *buf, size_t cap)
{
	struct crgw_cache_fill *f = w->f;
	uint64_t limit;
	enum fill_state state;
	ssize_t n;

	if (cap == 0)
		return -EINVAL;
	pthread_mutex_lock(&f->m);
	state = f->state;
	/* Until the digest matched, the last byte is not final: hold it back. */
	limit = state == FILL_DONE ? f->written : f->written ? f->written - 1 : 0;
	n = state == FILL_FAILED ? f->err : 0;
	pthread_mutex_unlock(&f->m);
	if (n < 0)
		return n;
	if (w->pos >= limit)
		return state == FILL_DONE ? 0 : -EAGAIN;
	do
		n = pread(f->fd, buf, cap < limit - w->pos ? cap : (size_t)(limit - w->pos), (off_t)w->pos);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -EIO;
	w->pos += (uint64_t)n;
	COUNT(f->c, bytes_served, (uint64_t)n);
	return n;
}

int crgw_cache_follower_status(struct crgw_cache_follower *w, uint64_t *written, int64_t *size)
{
	struct crgw_cache_fill *f = w->f;
	int rc;

	pthread_mutex_lock(&f->m);
	if (written)
		*written = f->written;
	if (size)
		*size = f->expect;
	rc = f->state == FILL_DONE ? 1 : f->state == FILL_FAILED ? f->err : 0;
	pthread_mutex_unlock(&f->m);
	return rc;
}

void crgw_cache_follower_close(struct crgw_cache_follower *w)
{
	struct crgw_cache_fill *f;
	bool last;

	if (!w)
		return;
	f = w->f;
	pthread_mutex_lock(&f->m);
	if (w->in_cb && f->notifying && pthread_equal(f->notifier, pthread_self())) {
		w->closing = true; /* fill_notify frees it when the callback returns */
		pthread_mutex_unlock(&f->m);
		return;
	}
	while (w->in_cb)
		pthread_cond_wait(&f->cv, &f->m);
	follower_unlink(f, w);
	last = --f->refs == 0;
	pthread_mutex_unlock(&f->m);
	if (last)
		fill_free(f);
}

/* ---- Operations ---- */

void crgw_cache_stats(struct crgw_cache *c, struct crgw_cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&c->lock);
	out->objects = c->nobjs;
	out->bytes = c->bytes;
	out->fills_active = c->nfills;
	pthread_mutex_unlock(&c->lock);
	out->max_bytes = c->max_bytes;
	out->index_rebuilt = c->index_rebuilt;
	out->hits = __atomic_load_n(&c->st.hits, __ATOMIC_RELAXED);
	out->misses = __atomic_load_n(&c->st.misses, __ATOMIC_RELAXED);
	out->bytes_served = __atomic_load_n(&c->st.bytes_served, __ATOMIC_RELAXED);
	out->bytes_stored = __atomic_load_n(&c->st.bytes_stored, __ATOMIC_RELAXED);
	out->evictions = __atomic_load_n(&c->st.evictions, __ATOMIC_RELAXED);
	out->corrupt = __atomic_load_n(&c->st.corrupt, __ATOMIC_RELAXED);
	out->fills_failed = __atomic_load_n(&c->st.fills_failed, __ATOMIC_RELAXED);
}

/* A snapshot of the entries in eviction order: a new array the caller frees. */
static int snapshot(struct crgw_cache *c, struct crgw_cache_entry **out, size_t *n)
{
	struct crgw_cache_entry *v;
	size_t k = 0;

	pthread_mutex_lock(&c->lock);
	v = calloc(c->nobjs ? c->nobjs : 1, sizeof(*v));
	if (!v) {
		pthread_mutex_unlock(&c->lock);
		return -ENOMEM;
	}
	for (struct queue *q = &c->small; q; q = q == &c->small ? &c->main : NULL) {
		for (struct obj *o = q->head; o; o = o->next) {
			v[k].digest = o->d;
			v[k].size = o->size;
			v[k].atime = o->atime;
			v[k].verified = o->have_id && !c->verify_always;
			k++;
		}
	}
	pthread_mutex_unlock(&c->lock);
	*out = v;
	*n = k;
	return 0;
}

int crgw_cache_foreach(struct crgw_cache *c, int (*cb)(void *arg, const struct crgw_cache_entry *e), void *arg)
{
	struct crgw_cache_entry *v = NULL;
	size_t n = 0;
	int err;

	if (!c || !cb)
		return -EINVAL;
	err = snapshot(c, &v, &n);
	for (size_t i = 0; !err && i < n; i++)
		err = cb(arg, &v[i]);
	free(v);
	return err;
}

int crgw_cache_gc(struct crgw_cache *c, uint64_t target, uint64_t *evicted)
{
	uint64_t before;

	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	before = c->nobjs;
	while (c->nobjs && c->bytes > target)
		evict_one(c);
	if (evicted)
		*evicted = before - c->nobjs;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int crgw_cache_verify(struct crgw_cache *c, struct crgw_cache_verify_report *out)
{
	struct crgw_cache_entry *v;
	size_t n;
	char *buf;
	int err;

	if (!c || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	buf = malloc(1 << 16);
	if (!buf)
		return -ENOMEM;
	err = snapshot(c, &v, &n);
	if (err) {
		free(buf);
		return err;
	}
	for (size_t i = 0; i < n; i++) {
		struct crgw_cache_reader *r;
		ssize_t k;
		int rc = reader_open(c, &v[i].digest, false, &r);

		if (rc == -ENOENT)
			continue; /* evicted since the snapshot */
		out->checked++;
		if (rc == -EBADMSG) {
			out->corrupt++;
			continue;
		}
		if (rc < 0) {
			out->errors++;
			continue;
		}
		while ((k = crgw_cache_reader_read(r, buf, 1 << 16)) > 0)
			;
		if (k == 0)
			out->ok++;
		else if (k == -EBADMSG)
			out->corrupt++;
		else
			out->errors++;
		crgw_cache_reader_close(r);
	}
	free(v);
	free(buf);
	return 0;
}
