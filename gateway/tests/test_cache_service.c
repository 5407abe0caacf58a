/* SPDX-License-Identifier: Apache-2.0 */
/* The cache service: start and stop, the directory lock, periodic flushes, histograms, gc and verify jobs. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache/service.h"
#include "config.h"
#include "tap.h"

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	struct crgw_cache_job_result r;
} job = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, { 0 } };

static void job_done(void *arg, const struct crgw_cache_job_result *r)
{
	(void)arg;
	pthread_mutex_lock(&job.lock);
	job.r = *r;
	job.done = true;
	pthread_cond_signal(&job.cond);
	pthread_mutex_unlock(&job.lock);
}

static int run_job(enum crgw_cache_job_kind kind, uint64_t target, struct crgw_cache_job_result *out)
{
	int err;

	job.done = false;
	err = crgw_cache_service_job(kind, target, job_done, NULL);
	if (err)
		return err;
	pthread_mutex_lock(&job.lock);
	while (!job.done)
		pthread_cond_wait(&job.cond, &job.lock);
	*out = job.r;
	pthread_mutex_unlock(&job.lock);
	return 0;
}

static int put(struct crgw_cache *c, const char *text, struct crgw_digest *d)
{
	struct crgw_cache_fill *f = NULL;
	struct crgw_cache_follower *w = NULL;
	int err;

	crgw_digest_compute(CRGW_DIGEST_SHA256, text, strlen(text), d);
	err = crgw_cache_fill_begin(c, d, (int64_t)strlen(text), NULL, NULL, &f, &w);
	if (err || !f)
		return err ? err : -EBUSY;
	err = crgw_cache_fill_write(f, text, strlen(text));
	if (err) {
		crgw_cache_fill_abort(f);
		return err;
	}
	return crgw_cache_fill_commit(f);
}

static bool file_has(const char *path, const char *needle)
{
	char buf[8192];
	FILE *f = fopen(path, "re");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

	if (f)
		fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

int main(void)
{
	char dir[] = "/tmp/crgw-test-cache-service-XXXXXX", path[256], hex[CRGW_DIGEST_TEXT_MAX], cmd[300];
	static struct crgw_config cfg;
	struct crgw_cache_latency l;
	struct crgw_cache_job_result r = { 0 };
	struct crgw_digest d1, d2;
	struct crgw_cache *c = NULL;
	int status;
	pid_t pid;

	if (!mkdtemp(dir))
		return 1;

	/* Disabled: nothing opened, no directory made, jobs refused. */
	crgw_config_defaults(&cfg);
	cfg.cache_enabled = false;
	snprintf(cfg.cache_dir, sizeof(cfg.cache_dir), "%s/off", dir);
	tap_result(crgw_cache_service_start(&cfg) == 0 && crgw_cache_service() == NULL && !crgw_cache_service_offline(),
		   "disabled: start succeeds, no cache");
	snprintf(path, sizeof(path), "%s/off", dir);
	tap_result(access(path, F_OK) != 0, "disabled: no directory is made");
	tap_result(crgw_cache_service_job(CRGW_CACHE_JOB_VERIFY, 0, job_done, NULL) == -ENODEV,
		   "disabled: a job is -ENODEV");
	crgw_cache_service_stop();

	/* Enabled, offline. */
	crgw_config_defaults(&cfg);
	snprintf(cfg.cache_dir, sizeof(cfg.cache_dir), "%s/cache", dir);
	cfg.cache_max_bytes = 16u << 20;
	cfg.cache_offline = true;
	tap_result(crgw_cache_service_start(&cfg) == 0 && (c = crgw_cache_service()) != NULL &&
			   crgw_cache_service_offline(),
		   "enabled: the cache is open, offline as configured");

	/*
	 * The lock: another process cannot take it while this one has the directory open. (The child tries the
	 * flock itself: a forked copy of the service would hold threads that do not exist in the child.)
	 */
	pid = fork();
	if (pid == 0) {
		int fd;

		snprintf(path, sizeof(path), "%s/cache/lock", dir);
		fd = open(path, O_RDWR | O_CLOEXEC);
		_exit(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	tap_result(WIFEXITED(status) && WEXITSTATUS(status) == 0, "another process cannot take the directory's lock");

	/* The flush thread writes the index within its period, with the gateway still running. */
	tap_result(put(c, "first object", &d1) == 0 && put(c, "second object, a little longer", &d2) == 0,
		   "two objects filled");
	crgw_digest_format(&d1, hex, sizeof(hex));
	snprintf(path, sizeof(path), "%s/cache/index", dir);
	for (int i = 0; i < 70 && !file_has(path, hex); i++)
		usleep(100000);
	tap_result(file_has(path, hex) && file_has(path, "end 2"), "the index is flushed within 7 s while open");

	/* Histograms: cumulative buckets, count equal to the last, hits and misses apart. */
	crgw_cache_service_observe(true, 100, 10);      /* <= 0.5 ms */
	crgw_cache_service_observe(true, 500, 10);      /* <= 0.5 ms, on the bound */
	crgw_cache_service_observe(true, 30000, 100);   /* <= 50 ms */
	crgw_cache_service_observe(true, 60000000, 1);  /* beyond 10 s: +Inf only */
	crgw_cache_service_observe(false, 2000000, 5);  /* a miss, <= 2.5 s */
	crgw_cache_service_latency(true, &l);
	tap_result(l.buckets[0] == 2 && l.buckets[5] == 2 && l.buckets[6] == 3 && l.buckets[13] == 3 &&
			   l.buckets[CRGW_CACHE_LATENCY_BUCKETS] == 4 && l.count == 4 && l.sum_us == 60030600 &&
			   l.bytes == 121,
		   "hit histogram: cumulative buckets, +Inf, count %llu, sum %llu us, bytes %llu",
		   (unsigned long long)l.count, (unsigned long long)l.sum_us, (unsigned long long)l.bytes);
	crgw_cache_service_latency(false, &l);
	tap_result(l.count == 1 && l.buckets[10] == 0 && l.buckets[11] == 1 && l.sum_us == 2000000 && l.bytes == 5,
		   "miss histogram apart");

	/* Jobs: verify finds a damaged object; gc evicts down to its target. */
	crgw_digest_format(&d2, hex, sizeof(hex));
	snprintf(cmd, sizeof(cmd), "printf X | dd of=%s/cache/objects/sha256/%.2s/%s bs=1 seek=3 conv=notrunc 2>/dev/null",
		 dir, hex + 7, hex + 7);
	tap_result(system(cmd) == 0, "a byte of the second object overwritten");
	tap_result(run_job(CRGW_CACHE_JOB_VERIFY, 0, &r) == 0 && r.err == 0 && r.kind == CRGW_CACHE_JOB_VERIFY &&
			   r.verify.checked == 2 && r.verify.ok == 1 && r.verify.corrupt == 1 &&
			   r.bytes_after == strlen("first object"),
		   "verify: checked %llu, ok %llu, corrupt %llu", (unsigned long long)r.verify.checked,
		   (unsigned long long)r.verify.ok, (unsigned long long)r.verify.corrupt);
	tap_result(run_job(CRGW_CACHE_JOB_GC, 0, &r) == 0 && r.err == 0 && r.kind == CRGW_CACHE_JOB_GC &&
			   r.evicted == 1 && r.bytes_before == strlen("first object") && r.bytes_after == 0,
		   "gc to 0: evicted %llu", (unsigned long long)r.evicted);
	tap_result(run_job(CRGW_CACHE_JOB_GC, 0, &r) == 0 && r.evicted == 0, "a second job after the first: nothing left");

	crgw_cache_service_stop();
	tap_result(crgw_cache_service() == NULL && file_has(path, "end 0"), "stop closes the cache and writes the index");
	/* The lock went with the stop: the directory opens again. */
	tap_result(crgw_cache_service_start(&cfg) == 0 && crgw_cache_service() != NULL, "the directory opens again");
	crgw_cache_service_stop();
	crgw_cache_service_stop();
	tap_result(true, "stop twice is harmless");

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	return tap_done();
}
