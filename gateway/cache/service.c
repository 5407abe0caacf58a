/* SPDX-License-Identifier: Apache-2.0 */
/* The content cache as a gateway service: its lock, its flush thread, latency histograms and operator jobs. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "service.h"

/* A crash loses at most this much of the index's access times and queue order, never validity. */
#define FLUSH_SECONDS 5

const uint64_t crgw_cache_latency_bounds_us[CRGW_CACHE_LATENCY_BUCKETS] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

/* Per bucket, not cumulative, so that an observation is one increment; summed when read. */
struct histogram {
	uint64_t buckets[CRGW_CACHE_LATENCY_BUCKETS + 1];
	uint64_t sum_us, bytes;
};

static struct {
	const struct crgw_config *cfg;
	struct crgw_cache *cache;
	int lock_fd;

	pthread_mutex_t lock; /* guards what follows: the flusher's and the job's state */
	pthread_cond_t wake;
	bool flusher_running, stopping;
	pthread_t flusher;
	int last_flush_err;

	bool job_thread, job_running;
	pthread_t job;
	enum crgw_cache_job_kind job_kind;
	uint64_t job_target;
	crgw_cache_job_cb job_done;
	void *job_arg;

	struct histogram hit, miss;
} S = { .lock_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER };

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void *flusher_main(void *arg)
{
	struct timespec until;

	(void)arg;
	pthread_mutex_lock(&S.lock);
	while (!S.stopping) {
		int err;

		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += FLUSH_SECONDS;
		while (!S.stopping && pthread_cond_timedwait(&S.wake, &S.lock, &until) != ETIMEDOUT)
			;
		if (S.stopping)
			break;
		/* The flush writes and fsyncs a file: never under this lock, which observe() never takes anyway. */
		pthread_mutex_unlock(&S.lock);
		err = crgw_cache_flush(S.cache);
		pthread_mutex_lock(&S.lock);
		/* Logged when it starts failing and when it recovers, not every five seconds. */
		if (err != S.last_flush_err) {
			if (err)
				log_warn("cannot write the cache index", "dir=\"%s\" error=\"%s\"", S.cfg->cache_dir,
					 strerror(-err));
			else
				log_info("the cache index is written again", "dir=\"%s\"", S.cfg->cache_dir);
			S.last_flush_err = err;
		}
	}
	pthread_mutex_unlock(&S.lock);
	return NULL;
}

/*
 * The cache's own lock, beside the instance locks of main.c: those are per state directory and table, and
 * two gateways configured apart in everything but cache.dir would otherwise share a cache.
 */
static int lock_dir(const char *dir, int *fd_out)
{
	char path[4200];
	struct stat st;
	int fd, err;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	/*
	 * What is served from here goes to every sandbox unhashed once verified: a directory another user owns
	 * or may write to could have objects swapped under us. One of ours that others may enter is closed.
	 */
	if (stat(dir, &st))
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (st.st_uid != geteuid()) {
		log_error("the cache directory belongs to another user: it must be the gateway's own",
			  "dir=\"%s\" uid=%u", dir, (unsigned)st.st_uid);
		return -EPERM;
	}
	if ((st.st_mode & 077) && chmod(dir, 0700) == 0)
		log_info("cache directory made 0700", "dir=\"%s\" was=%04o", dir, (unsigned)(st.st_mode & 07777));
	snprintf(path, sizeof(path), "%s/lock", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		err = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
		close(fd);
		return err;
	}
	*fd_out = fd;
	return 0;
}

int crgw_cache_service_start(const struct crgw_config *cfg)
{
	struct crgw_cache_config cc = { 0 };
	struct crgw_cache_stats st;
	pthread_condattr_t ca;
	uint64_t t0 = now_us();
	int err;

	S.cfg = cfg;
	if (!cfg->cache_enabled) {
		log_info("content cache disabled", "%s", "cache.enabled=false");
		return 0;
	}
	err = lock_dir(cfg->cache_dir, &S.lock_fd);
	if (err == -EWOULDBLOCK) {
		log_error("another gateway uses the same cache directory", "dir=\"%s\"", cfg->cache_dir);
		goto out;
	}
	if (err) {
		log_error("cannot open the content cache", "dir=\"%s\" error=\"%s\"", cfg->cache_dir, strerror(-err));
		goto out;
	}
	cc.dir = cfg->cache_dir;
	cc.max_bytes = cfg->cache_max_bytes;
	cc.verify_always = cfg->cache_verify_always;
	err = crgw_cache_open(&cc, &S.cache);
	if (err) {
		log_error("cannot open the content cache", "dir=\"%s\" error=\"%s\"", cfg->cache_dir, strerror(-err));
		goto out;
	}
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&S.wake, &ca);
	pthread_condattr_destroy(&ca);
	S.stopping = false;
	S.last_flush_err = 0;
	err = -pthread_create(&S.flusher, NULL, flusher_main, NULL);
	if (err) {
		log_error("cannot start the cache's flush thread", "error=\"%s\"", strerror(-err));
		goto out;
	}
	S.flusher_running = true;
	crgw_cache_stats(S.cache, &st);
	log_info("content cache open", "dir=\"%s\" objects=%llu bytes=%llu max_bytes=%llu offline=%s verify_always=%s ms=%llu",
		 cfg->cache_dir, (unsigned long long)st.objects, (unsigned long long)st.bytes,
		 (unsigned long long)st.max_bytes, cfg->cache_offline ? "true" : "false",
		 cfg->cache_verify_always ? "true" : "false", (unsigned long long)((now_us() - t0) / 1000));
	/* What opening cost: objects over a lowered max_bytes, files that were not what the index said. */
	/* Objects stay (each is still hashed on its first read); what the index alone knew, their order, is lost. */
	if (st.index_rebuilt)
		log_warn("content cache: its index file was not whole or not one crgw wrote; rebuilt from the objects on disk",
			 "dir=\"%s\" objects=%llu", cfg->cache_dir, (unsigned long long)st.objects);
	if (st.evictions || st.corrupt)
		log_warn("content cache: objects removed at open (evicted: over cache.max_bytes; corrupt: not what the index said)",
			 "evicted=%llu corrupt=%llu", (unsigned long long)st.evictions, (unsigned long long)st.corrupt);
	return 0;
out:
	crgw_cache_service_stop();
	return err;
}

void crgw_cache_service_stop(void)
{
	pthread_mutex_lock(&S.lock);
	S.stopping = true;
	if (S.flusher_running)
		pthread_cond_broadcast(&S.wake);
	pthread_mutex_unlock(&S.lock);
	if (S.flusher_running) {
		pthread_join(S.flusher, NULL);
		S.flusher_running = false;
		pthread_cond_destroy(&S.wake);
	}
	/* A verify has no way to stop half-way: shutdown waits for it (it is what the operator asked for). */
	if (S.job_thread) {
		pthread_join(S.job, NULL);
		S.job_thread = false;
	}
	if (S.cache) {
		crgw_cache_close(S.cache); /* writes the index */
		S.cache = NULL;
	}
	if (S.lock_fd >= 0) {
		close(S.lock_fd);
		S.lock_fd = -1;
	}
}

struct crgw_cache *crgw_cache_service(void)
{
	return S.cache;
}

bool crgw_cache_service_offline(void)
{
	return S.cache && S.cfg->cache_offline;
}

void crgw_cache_service_observe(bool hit, uint64_t latency_us, uint64_t bytes)
{
	struct histogram *h = hit ? &S.hit : &S.miss;
	size_t i = 0;

	while (i < CRGW_CACHE_LATENCY_BUCKETS && latency_us > crgw_cache_latency_bounds_us[i])
		i++;
	__atomic_fetch_add(&h->buckets[i], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->sum_us, latency_us, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->bytes, bytes, __ATOMIC_RELAXED);
}

void crgw_cache_service_latency(bool hit, struct crgw_cache_latency *out)
{
	const struct histogram *h = hit ? &S.hit : &S.miss;
	uint64_t total = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i <= CRGW_CACHE_LATENCY_BUCKETS; i++) {
		total += __atomic_load_n(&h->buckets[i], __ATOMIC_RELAXED);
		out->buckets[i] = total;
	}
	/* The count is the last bucket, so the two always agree in one copy (Prometheus expects it). */
	out->count = total;
	out->sum_us = __atomic_load_n(&h->sum_us, __ATOMIC_RELAXED);
	out->bytes = __atomic_load_n(&h->bytes, __ATOMIC_RELAXED);
}

/* ---- jobs ---- */

static void *job_main(void *arg)
{
	struct crgw_cache_job_result r = { .kind = S.job_kind };
	struct crgw_cache_stats st;
	uint64_t t0 = now_us();
	crgw_cache_job_cb done;
	void *done_arg;

	(void)arg;
	crgw_cache_stats(S.cache, &st);
	r.bytes_before = st.bytes;
	if (S.job_kind == CRGW_CACHE_JOB_GC)
		r.err = crgw_cache_gc(S.cache, S.job_target, &r.evicted);
	else
		r.err = crgw_cache_verify(S.cache, &r.verify);
	crgw_cache_stats(S.cache, &st);
	r.bytes_after = st.bytes;
	r.duration_us = now_us() - t0;
	if (r.err)
		log_warn(S.job_kind == CRGW_CACHE_JOB_GC ? "cache gc failed" : "cache verify failed", "error=\"%s\"",
			 strerror(-r.err));
	else if (S.job_kind == CRGW_CACHE_JOB_GC)
		log_info("cache gc", "target=%llu evicted=%llu bytes=%llu", (unsigned long long)S.job_target,
			 (unsigned long long)r.evicted, (unsigned long long)r.bytes_after);
	else
		/* Corrupt objects are worth a warning: the disk or someone with root changed the cache. */
		crgw_log(r.verify.corrupt || r.verify.errors ? CRGW_LOG_WARN : CRGW_LOG_INFO, "cache verify",
			 "checked=%llu ok=%llu corrupt=%llu errors=%llu ms=%llu", (unsigned long long)r.verify.checked,
			 (unsigned long long)r.verify.ok, (unsigned long long)r.verify.corrupt,
			 (unsigned long long)r.verify.errors, (unsigned long long)(r.duration_us / 1000));
	/*
	 * Not running any more before the caller hears of it: a caller that starts the next job as soon as it
	 * has this one's result must not be told the cache is busy. The next start joins this thread, which
	 * may still be in the callback (which never takes S.lock).
	 */
	done = S.job_done;
	done_arg = S.job_arg;
	pthread_mutex_lock(&S.lock);
	S.job_running = false;
	pthread_mutex_unlock(&S.lock);
	done(done_arg, &r);
	return NULL;
}

int crgw_cache_service_job(enum crgw_cache_job_kind kind, uint64_t target, crgw_cache_job_cb done, void *arg)
{
	int err;

	if (!S.cache)
		return -ENODEV;
	pthread_mutex_lock(&S.lock);
	if (S.job_running || S.stopping) {
		pthread_mutex_unlock(&S.lock);
		return -EBUSY;
	}
	/* The previous job has ended (it may still be telling its caller): reap its thread before starting another. */
	if (S.job_thread) {
		pthread_join(S.job, NULL);
		S.job_thread = false;
	}
	S.job_kind = kind;
	S.job_target = target;
	S.job_done = done;
	S.job_arg = arg;
	err = -pthread_create(&S.job, NULL, job_main, NULL);
	if (!err)
		S.job_thread = S.job_running = true;
	pthread_mutex_unlock(&S.lock);
	return err;
}
