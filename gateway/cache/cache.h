/* SPDX-License-Identifier: Apache-2.0 */
/* The content cache: verified objects on local disk, addressed by their sha256 or sha512 digest (docs/cache.md). */
#ifndef CRGW_CACHE_H
#define CRGW_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The cache knows nothing of registries or HTTP: it stores bytes whose digest the caller names and it
 * checks, and serves them back by that digest. Every function may be called from any thread; a handle
 * (fill, follower, reader) is used by one thread at a time. Functions return 0 or -errno unless they say
 * otherwise.
 */

/* ---- Digests ---- */

enum crgw_digest_alg {
	CRGW_DIGEST_NONE = 0,
	CRGW_DIGEST_SHA256 = 1,
	CRGW_DIGEST_SHA512 = 2,
};

#define CRGW_DIGEST_MAX_LEN 64
/* The longest printed form, "sha512:" and 128 hex digits, plus its NUL. */
#define CRGW_DIGEST_TEXT_MAX 136

/* A digest as plain data: `len` is 32 or 64 and follows from `alg`. */
struct crgw_digest {
	enum crgw_digest_alg alg;
	uint8_t len;
	uint8_t bytes[CRGW_DIGEST_MAX_LEN];
};

/*
 * Parses `s` (`len` bytes, no NUL needed): "sha256:<64 hex>", "sha512:<128 hex>" (either case), or the SRI
 * form npm uses, "sha256-<base64>" / "sha512-<base64>" (standard alphabet, padded, canonical). One digest,
 * no options or spaces. Returns -EINVAL for anything else.
 */
int crgw_digest_parse(const char *s, size_t len, struct crgw_digest *out);

/* Prints "sha256:<hex>" (lowercase) into `buf`; returns the length, or -ENOSPC / -EINVAL. */
int crgw_digest_format(const struct crgw_digest *d, char *buf, size_t cap);

/* Prints the SRI form "sha512-<base64>" into `buf`; returns the length, or -ENOSPC / -EINVAL. */
int crgw_digest_format_sri(const struct crgw_digest *d, char *buf, size_t cap);

bool crgw_digest_equal(const struct crgw_digest *a, const struct crgw_digest *b);

/* Computes the digest of `len` bytes with algorithm `alg` (for callers and tests). */
int crgw_digest_compute(enum crgw_digest_alg alg, const void *data, size_t len, struct crgw_digest *out);

/* ---- The store ---- */

struct crgw_cache;

struct crgw_cache_config {
	const char *dir;    /* borrowed for the call: the cache's own directory, created 0700 if missing */
	uint64_t max_bytes; /* bound on the sum of the objects' sizes; larger fills are refused */
	/*
	 * Never trust an earlier verification: every hit must be hashed (crgw_cache_reader_trusted is then
	 * always false). Off by default; see docs/cache.md, "Verification".
	 */
	bool verify_always;
};

/*
 * Opens (creating if needed) the cache under cfg->dir: removes what interrupted fills left in tmp/, loads
 * the index (a corrupt one is discarded and rebuilt from objects/) and reconciles it with the files there,
 * then evicts down to the bound. On success *out is a new cache the caller frees with crgw_cache_close.
 */
int crgw_cache_open(const struct crgw_cache_config *cfg, struct crgw_cache **out);

/* Writes the index and frees the cache. Every fill, follower and reader must have ended. Accepts NULL. */
void crgw_cache_close(struct crgw_cache *c);

/*
 * Writes the index atomically if it changed since the last flush (new objects, evictions, access times).
 * The caller calls it every few seconds; a crash loses at most what changed since, never validity.
 */
int crgw_cache_flush(struct crgw_cache *c);

/* Whether the object is present, with its size; counts nothing, touches nothing, starts nothing (offline). */
int crgw_cache_lookup(struct crgw_cache *c, const struct crgw_digest *d, uint64_t *size);

/* ---- Reading a hit ---- */

struct crgw_cache_reader;

/*
 * Opens the object for reading: a hit (counted) gives a new reader the caller closes; a miss (counted) is
 * -ENOENT, and so is an object found corrupt at open (wrong size or type on disk: it is removed, to be
 * fetched again).
 */
int crgw_cache_read_open(struct crgw_cache *c, const struct crgw_digest *d, struct crgw_cache_reader **out);

/*
 * Counts a miss the caller decided without opening anything: a request the cache may not answer (the
 * object is not this requester's to have) is served from upstream, and is a miss all the same.
 */
void crgw_cache_count_miss(struct crgw_cache *c);

/* The object's descriptor (borrowed: valid until the reader closes) and size, for sendfile(2). */
int crgw_cache_reader_fd(const struct crgw_cache_reader *r);
uint64_t crgw_cache_reader_size(const struct crgw_cache_reader *r);

/*
 * True when the file may be sent as it is (sendfile) without hashing: this process verified this very file
 * (same device, inode, size, mtime and ctime) earlier, by writing it or by reading it through
 * crgw_cache_reader_read to the end, and verify_always is off; or this reader has just been read to the
 * end by crgw_cache_reader_read and its file did not change meanwhile (verify_always or not). Otherwise the
 * caller must read through crgw_cache_reader_read. The caller counts what it sends with
 * crgw_cache_reader_sent.
 */
bool crgw_cache_reader_trusted(const struct crgw_cache_reader *r);

/*
 * The verifying read: the next bytes of the object, hashed as they are read. Returns the number of bytes
 * (> 0); 0 at the end, once the whole object matched its digest; -EBADMSG if it did not (the object is
 * removed from the cache so that it is fetched again); another -errno on a read error. The chunk that
 * completes the object is hashed and checked before it is returned, so a caller that sends what it gets
 * never sends the last bytes of a corrupt object.
 */
ssize_t crgw_cache_reader_read(struct crgw_cache_reader *r, void *buf, size_t cap);

/* Counts `bytes` served by sendfile from a trusted reader (reader_read counts its own). */
void crgw_cache_reader_sent(struct crgw_cache_reader *r, uint64_t bytes);

/* Closes the descriptor and frees the reader. Accepts NULL. */
void crgw_cache_reader_close(struct crgw_cache_reader *r);

/* ---- Filling a miss, and following a fill ---- */

struct crgw_cache_fill;
struct crgw_cache_follower;

/*
 * Called when a fill being followed has more bytes, or has committed or failed. It runs on the thread of
 * the fill's writer (inside crgw_cache_fill_write, _commit or _abort), with no lock of the cache held: it
 * should only wake the follower's own thread (event_active, a condition variable). It may call
 * crgw_cache_follower_close on its own follower (that follower is then freed after it returns), and must
 * not call into the cache otherwise, nor wait for a lock that a thread closing a follower of the same
 * fill holds (close waits for a running callback to return).
 */
typedef void (*crgw_cache_notify_cb)(void *arg);

/*
 * Starts filling the object `d` of `size` bytes (-1: not known yet). Concurrent misses collapse: if a fill
 * of `d` is already under way, no second one starts; instead *follower is set to a new follower of it,
 * whose `notify(arg)` fires as it progresses. Otherwise *fill is set to a new fill, and this caller is the
 * writer. Exactly one of the two is set on success. -EEXIST: the object is already in the cache (open it).
 * -EFBIG: `size` is more than the cache's bound. -ENOSPC: the size could not be reserved on disk.
 */
int crgw_cache_fill_begin(struct crgw_cache *c, const struct crgw_digest *d, int64_t size,
			  crgw_cache_notify_cb notify, void *arg, struct crgw_cache_fill **fill,
			  struct crgw_cache_follower **follower);

/*
 * Appends bytes (borrowed), hashing them on the way. On a write error (-ENOSPC, -EIO), on more bytes than
 * announced (-EMSGSIZE) or than the bound (-EFBIG), the fill fails at once: its temporary file is removed,
 * followers get the error, and only crgw_cache_fill_abort is left to do.
 */
int crgw_cache_fill_write(struct crgw_cache_fill *f, const void *buf, size_t len);

/*
 * Ends the fill and frees it: checks size and digest (-EBADMSG on a mismatch: nothing is kept), fsyncs the
 * file, renames it into objects/, fsyncs the directory, indexes it (evicting others to make room) and tells
 * the followers. Returns the fill's error if it had already failed.
 */
int crgw_cache_fill_commit(struct crgw_cache_fill *f);

/* Abandons the fill (its followers get -ECANCELED) and frees it; nothing is kept. Accepts NULL. */
void crgw_cache_fill_abort(struct crgw_cache_fill *f);

/*
 * The follower's next bytes of the object, from the start. Returns a count (> 0); -EAGAIN when it has all
 * that is available for now (the notify callback fires when more is); 0 at the end, after the fill
 * committed, that is after the digest matched; the fill's error (< 0) if it failed. Until the commit, the
 * last byte written is held back, so a follower never has a complete object before it is verified. After
 * crgw_cache_fill_begin returns a follower, read until -EAGAIN before waiting for a notification.
 */
ssize_t crgw_cache_follower_read(struct crgw_cache_follower *w, void *buf, size_t cap);

/*
 * The fill's progress: bytes written so far and the announced size (-1 if unknown). Returns 0 while it is
 * under way, 1 once it committed, or its error.
 */
int crgw_cache_follower_status(struct crgw_cache_follower *w, uint64_t *written, int64_t *size);

/* Stops following and frees the follower (after a notify running on another thread returns). Accepts NULL. */
void crgw_cache_follower_close(struct crgw_cache_follower *w);

/* ---- Operations (crgw-ctl cache ls|stats|gc|verify) ---- */

struct crgw_cache_stats {
	uint64_t objects, bytes, max_bytes;
	uint64_t hits, misses;
	uint64_t bytes_served; /* by readers and followers */
	uint64_t bytes_stored; /* by committed fills */
	uint64_t evictions;
	uint64_t corrupt;      /* objects found not matching their digest (or wrong on disk) and removed */
	uint64_t fills_failed; /* mismatches, write errors, aborts */
	uint64_t fills_active;
	bool index_rebuilt; /* the index file found at open was not sound (not one we wrote whole): rebuilt */
};

void crgw_cache_stats(struct crgw_cache *c, struct crgw_cache_stats *out);

struct crgw_cache_entry {
	struct crgw_digest digest;
	uint64_t size;
	int64_t atime;  /* last access, seconds since the epoch */
	bool verified;  /* verified by this process and unchanged since (trusted for sendfile) */
};

/*
 * Calls `cb` for every object, from a snapshot taken under the lock (the callback runs without it, so it
 * may call into the cache). A non-zero return stops the walk and is returned.
 */
int crgw_cache_foreach(struct crgw_cache *c, int (*cb)(void *arg, const struct crgw_cache_entry *e), void *arg);

/* Evicts, in eviction order, until the objects take at most `target` bytes; *evicted (optional) counts them. */
int crgw_cache_gc(struct crgw_cache *c, uint64_t target, uint64_t *evicted);

struct crgw_cache_verify_report {
	uint64_t checked, ok, corrupt, errors;
};

/* Hashes every object (without the lock held), removing those that do not match. */
int crgw_cache_verify(struct crgw_cache *c, struct crgw_cache_verify_report *out);

#endif
