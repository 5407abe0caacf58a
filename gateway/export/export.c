/* SPDX-License-Identifier: Apache-2.0 */
/* Audit export (export.h): a spool per sink on disk, and a thread per sink delivering from it. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "fsutil.h"
#include "internal.h"
#include "log.h"

#define CHUNK (1u << 20)
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 30000

static struct export_sink *sinks[CRGW_SINKS_MAX];
static size_t nsinks;

static void save_cursor(struct export_sink *s, uint64_t sent)
{
	char text[32];
	int n = snprintf(text, sizeof(text), "%020" PRIu64 "\n", sent);

	/* Fixed width: one pwrite replaces the whole value. A crash between delivery and this write resends. */
	if (pwrite(s->cursor_fd, text, (size_t)n, 0) != n)
		log_warn("audit export: cannot record the spool's position", "sink=%s error=\"%s\"", s->cfg.name,
			 strerror(errno));
}

static uint64_t load_cursor(int fd)
{
	char text[32] = "";
	ssize_t n = pread(fd, text, sizeof(text) - 1, 0);

	return n > 0 ? strtoull(text, NULL, 10) : 0;
}

static int open_spool(struct export_sink *s, const char *data_dir, char *err, size_t errlen)
{
	char dir[4400], path[4500], why[512];
	struct stat st;
	int rc;

	snprintf(dir, sizeof(dir), "%s/spool/%s/", data_dir, s->cfg.name);
	rc = crgw_fs_make_parents(dir, 0700, why, sizeof(why));
	if (rc) {
		snprintf(err, errlen, "audit.sinks.%s: %s", s->cfg.name, why);
		return rc;
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		snprintf(err, errlen, "audit.sinks.%s: %s: %s", s->cfg.name, dir, strerror(errno));
		return -errno;
	}
	snprintf(path, sizeof(path), "%sspool", dir);
	s->spool_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	snprintf(path, sizeof(path), "%scursor", dir);
	s->cursor_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (s->spool_fd < 0 || s->cursor_fd < 0 || fstat(s->spool_fd, &st)) {
		snprintf(err, errlen, "audit.sinks.%s: %s: %s", s->cfg.name, dir, strerror(errno));
		return -errno;
	}
	s->size = (uint64_t)st.st_size;
	/* A line a killed gateway was writing when it died is cut off: only whole lines are delivered. */
	while (s->size) {
		char c;

		if (pread(s->spool_fd, &c, 1, (off_t)s->size - 1) != 1 || c == '\n')
			break;
		s->size--;
	}
	if (ftruncate(s->spool_fd, (off_t)s->size))
		log_warn("audit export: cannot trim the spool", "sink=%s", s->cfg.name);
	s->sent = load_cursor(s->cursor_fd);
	if (s->sent > s->size)
		s->sent = 0;
	if (s->size > s->sent)
		log_info("audit export: resuming from the spool", "sink=%s bytes=%" PRIu64, s->cfg.name,
			 s->size - s->sent);
	return 0;
}

int export_halt_check(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return atomic_load(&((struct export_sink *)arg)->halt) ? 1 : 0;
}

void crgw_export_offer(const char *lines, size_t len, unsigned events)
{
	for (size_t i = 0; i < nsinks; i++) {
		struct export_sink *s = sinks[i];

		pthread_mutex_lock(&s->lock);
		if (s->size + len > s->cfg.spool_max_bytes) {
			atomic_fetch_add(&s->lost, events);
		} else if (pwrite(s->spool_fd, lines, len, (off_t)s->size) != (ssize_t)len) {
			/* A short write leaves a partial line past `size`: the next write covers it. */
			atomic_fetch_add(&s->lost, events);
		} else {
			s->size += len;
			pthread_cond_signal(&s->wake);
		}
		pthread_mutex_unlock(&s->lock);
	}
}

/* A loss is itself an event: the file has it, and every sink gets it in turn. */
static void report_loss(struct export_sink *s)
{
	uint64_t lost = atomic_load(&s->lost);
	struct crgw_audit_event ev = {.kind = CRGW_AUDIT_AUDIT_LOSS, .service = "audit"};

	struct timespec now;

	/*
	 * At most one report per 5 s: with the receiver down and the spool full, the report itself is lost
	 * for this sink too, and must not become a stream of its own.
	 */
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (lost <= s->lost_reported || (s->reported_at && now.tv_sec - s->reported_at < 5))
		return;
	s->reported_at = now.tv_sec;
	ev.count = lost - s->lost_reported;
	snprintf(ev.detail, sizeof(ev.detail), "audit.sinks.%s: not exported (spool full, or refused by the receiver)",
		 s->cfg.name);
	s->lost_reported = lost;
	log_warn("audit export lost events", "sink=%s count=%" PRIu64, s->cfg.name, (uint64_t)ev.count);
	crgw_audit_emit(&ev);
}

static int deliver(struct export_sink *s, const char *const *lines, const size_t *lens, size_t n)
{
	return s->cfg.type == CRGW_SINK_SYSLOG ? export_syslog_deliver(s, lines, lens, n)
					       : export_otlp_deliver(s, lines, lens, n);
}

/* Waits `ms` or until stopped; returns true when stopping. */
static bool pause_ms(struct export_sink *s, unsigned ms)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->lock);
	if (!s->stopping)
		pthread_cond_timedwait(&s->wake, &s->lock, &ts);
	stop = s->stopping;
	pthread_mutex_unlock(&s->lock);
	return stop;
}

static void *sender_main(void *arg)
{
	struct export_sink *s = arg;
	char *buf = malloc(CHUNK);
	const char **lines = calloc(s->cfg.batch_max, sizeof(*lines));
	size_t *lens = calloc(s->cfg.batch_max, sizeof(*lens));
	unsigned backoff = 0;

	if (!buf || !lines || !lens) {
		log_error("audit export: out of memory; the sink stays idle", "sink=%s", s->cfg.name);
		goto out;
	}
	for (;;) {
		uint64_t avail;
		size_t n = 0, used = 0;
		ssize_t got;
		int rc;

		report_loss(s);
		pthread_mutex_lock(&s->lock);
		while (!s->stopping && s->sent >= s->size) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&s->wake, &s->lock, &ts);
			if (atomic_load(&s->lost) > s->lost_reported) {
				pthread_mutex_unlock(&s->lock);
				report_loss(s); /* it decides whether it is time */
				pthread_mutex_lock(&s->lock);
			}
		}
		if (s->stopping) {
			pthread_mutex_unlock(&s->lock);
			break;
		}
		avail = s->size - s->sent;
		pthread_mutex_unlock(&s->lock);
		if (!avail)
			continue;
		got = pread(s->spool_fd, buf, avail < CHUNK ? (size_t)avail : CHUNK, (off_t)s->sent);
		if (got <= 0) {
			log_error("audit export: cannot read the spool", "sink=%s error=\"%s\"", s->cfg.name,
				  got < 0 ? strerror(errno) : "short");
			if (pause_ms(s, BACKOFF_MAX_MS))
				break;
			continue;
		}
		while (n < s->cfg.batch_max && used < (size_t)got) {
			char *nl = memchr(buf + used, '\n', (size_t)got - used);

			if (!nl)
				break;
			lines[n] = buf + used;
			lens[n] = (size_t)(nl - (buf + used));
			used += lens[n] + 1;
			n++;
		}
		if (!n) {
			/* No whole line in a full chunk: a line longer than any the writer makes; skip it. */
			used = (size_t)got;
			atomic_fetch_add(&s->lost, 1);
			rc = 0;
		} else {
			rc = deliver(s, lines, lens, n);
		}
		if (rc == -EAGAIN) {
			atomic_fetch_add(&s->failures, 1);
			backoff =
			    backoff ? (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2) : BACKOFF_MIN_MS;
			if (pause_ms(s, backoff))
				break;
			continue;
		}
		if (backoff || s->logged_down)
			log_info("audit export: the receiver takes events again", "sink=%s", s->cfg.name);
		backoff = 0;
		s->logged_down = false;
		if (rc == -EBADMSG)
			atomic_fetch_add(&s->lost, n);
		else
			atomic_fetch_add(&s->delivered, n);
		pthread_mutex_lock(&s->lock);
		s->sent += used;
		if (s->sent >= s->size) {
			/* Everything delivered: the spool starts over (the writer appends under the same lock). */
			if (ftruncate(s->spool_fd, 0) == 0)
				s->size = s->sent = 0;
		}
		save_cursor(s, s->sent);
		pthread_mutex_unlock(&s->lock);
	}
out:
	if (s->cfg.type == CRGW_SINK_SYSLOG)
		export_syslog_close(s);
	else
		export_otlp_close(s);
	free(buf);
	free(lines);
	free(lens);
	return NULL;
}

int crgw_export_start(const struct crgw_config *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < cfg->nsinks; i++) {
		struct export_sink *s = calloc(1, sizeof(*s));
		int rc;

		if (!s) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		s->cfg = cfg->sinks[i];
		s->spool_fd = s->cursor_fd = s->udp_fd = -1;
		pthread_mutex_init(&s->lock, NULL);
		pthread_cond_init(&s->wake, NULL);
		if (gethostname(s->hostname, sizeof(s->hostname) - 1) || !s->hostname[0])
			snprintf(s->hostname, sizeof(s->hostname), "-");
		sinks[nsinks++] = s;
		rc = open_spool(s, cfg->data_dir, err, errlen);
		if (rc)
			return rc;
		rc = pthread_create(&s->thread, NULL, sender_main, s);
		if (rc) {
			snprintf(err, errlen, "audit.sinks.%s: cannot start its thread: %s", s->cfg.name, strerror(rc));
			return -rc;
		}
		s->started = true;
		log_info("audit export started", "sink=%s type=%s", s->cfg.name,
			 s->cfg.type == CRGW_SINK_SYSLOG ? "syslog" : "otlp");
	}
	return 0;
}

void crgw_export_stop(void)
{
	for (size_t i = 0; i < nsinks; i++) {
		struct export_sink *s = sinks[i];

		atomic_store(&s->halt, true);
		pthread_mutex_lock(&s->lock);
		s->stopping = true;
		pthread_cond_broadcast(&s->wake);
		pthread_mutex_unlock(&s->lock);
		if (s->started)
			pthread_join(s->thread, NULL);
		if (s->spool_fd >= 0)
			close(s->spool_fd);
		if (s->cursor_fd >= 0)
			close(s->cursor_fd);
		pthread_mutex_destroy(&s->lock);
		pthread_cond_destroy(&s->wake);
		free(s);
		sinks[i] = NULL;
	}
	nsinks = 0;
}

size_t crgw_export_get_stats(struct crgw_export_stats *out, size_t max)
{
	for (size_t i = 0; i < nsinks && i < max; i++) {
		struct export_sink *s = sinks[i];

		snprintf(out[i].name, sizeof(out[i].name), "%s", s->cfg.name);
		out[i].type = s->cfg.type == CRGW_SINK_SYSLOG ? "syslog" : "otlp";
		out[i].delivered = atomic_load(&s->delivered);
		out[i].lost = atomic_load(&s->lost);
		out[i].failures = atomic_load(&s->failures);
		out[i].connected = atomic_load(&s->connected);
		pthread_mutex_lock(&s->lock);
		out[i].spool_bytes = s->size - s->sent;
		pthread_mutex_unlock(&s->lock);
	}
	return nsinks;
}
