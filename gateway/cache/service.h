/* SPDX-License-Identifier: Apache-2.0 */
/* The content cache as a service of the gateway: opened from crgw.yaml, flushed, observed, operated, closed. */
#ifndef CRGW_GATEWAY_CACHE_SERVICE_H
#define CRGW_GATEWAY_CACHE_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "cache.h"

struct crgw_config;

/*
 * libcrgw-cache knows nothing of the gateway; this file is the gateway's side of it (docs/cache.md,
 * "Operating the cache"). One cache per process. start and stop belong to the main thread, start before
 * the workers start and stop after they have stopped; everything else may be called from any thread in
 * between.
 */

/*
 * Opens the cache when cfg->cache_enabled: takes the lock `cache_dir/lock` (one gateway per cache
 * directory: opening empties tmp/, which would destroy another process's fills), opens the store with
 * cfg's bound and verify_always, and starts the thread that flushes the index every 5 seconds. A failure
 * is logged naming the directory and the cause, and returned (-errno); nothing is left running. With the
 * cache disabled it logs that and returns 0. Borrows `cfg`, which must outlive the service.
 */
int crgw_cache_service_start(const struct crgw_config *cfg);

/*
 * Waits for a running job (below) to end, stops the flush thread, writes the index and closes the cache.
 * Every reader, fill and follower must have ended: call it after the workers have stopped. Safe to call
 * when start failed or never ran.
 */
void crgw_cache_service_stop(void);

/* The cache (borrowed; valid from start to stop), or NULL when it is disabled. */
struct crgw_cache *crgw_cache_service(void);

/* cache.offline: serve only what is cached, answer everything else 503. False when disabled. */
bool crgw_cache_service_offline(void);

/*
 * Records one response the cache took part in, for the metrics: `hit` or not, the time from the request to
 * its last byte sent (µs), and the bytes of the body. Lock-free (atomics); any thread, including workers.
 */
void crgw_cache_service_observe(bool hit, uint64_t latency_us, uint64_t bytes);

/* ---- Reading the observations (the control API's /metrics and /v1/cache) ---- */

/* The histograms' upper bounds in µs, ascending; a last, implicit bucket is +Inf. */
#define CRGW_CACHE_LATENCY_BUCKETS 14
extern const uint64_t crgw_cache_latency_bounds_us[CRGW_CACHE_LATENCY_BUCKETS];

struct crgw_cache_latency {
	uint64_t buckets[CRGW_CACHE_LATENCY_BUCKETS + 1]; /* cumulative: [i] counts latencies <= bound i; last: all */
	uint64_t count;                                   /* equals the last bucket */
	uint64_t sum_us;
	uint64_t bytes;
};

/* A copy of the hit (or miss) histogram. Counters only grow; a copy taken while workers observe may lag. */
void crgw_cache_service_latency(bool hit, struct crgw_cache_latency *out);

/* ---- Operator jobs (crgw-ctl cache gc|verify), one at a time, off the caller's thread ---- */

enum crgw_cache_job_kind { CRGW_CACHE_JOB_GC, CRGW_CACHE_JOB_VERIFY };

struct crgw_cache_job_result {
	enum crgw_cache_job_kind kind;
	int err;                               /* 0 or -errno from the cache */
	uint64_t evicted;                      /* gc */
	uint64_t bytes_before, bytes_after;    /* gc and verify: the objects' bytes */
	struct crgw_cache_verify_report verify; /* verify */
	uint64_t duration_us;
};

/*
 * Called once when a job ends, on the job's own thread: it should only hand the result (borrowed for the
 * call) to its owner's loop (event_active) and must not start another job.
 */
typedef void (*crgw_cache_job_cb)(void *arg, const struct crgw_cache_job_result *r);

/*
 * Starts a job on a thread of its own, so that hashing every object (verify) or unlinking many (gc) never
 * holds up the caller's loop: gc evicts down to `target` bytes, verify ignores it. Returns 0 (`done` will
 * be called), -ENODEV when the cache is disabled, -EBUSY while another job runs, or -errno.
 */
int crgw_cache_service_job(enum crgw_cache_job_kind kind, uint64_t target, crgw_cache_job_cb done, void *arg);

#endif
