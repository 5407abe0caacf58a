/* SPDX-License-Identifier: Apache-2.0 */
/* The audit writer: a bounded queue, one thread that appends JSON lines, rotation, and the live ring. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "export/export.h"
#include "log.h"

#define BATCH_MAX 256
#define BATCH_DELAY_US 1000
#define RECENT_MAX 4096
#define RETRY_MS 200

/* A formatted line waiting for the writer. */
struct queued_line {
	char *line;
	size_t len;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t thread;
	bool running, stopping, allow_loss, gave_up, failing;
	bool writer_idle; /* the writer waits for events: an emit must wake it */
	struct queued_line *queue;
	unsigned cap, head, len;
	char path[4096];
	int fd;
	uint64_t size, max_bytes;
	unsigned keep;
	struct crgw_audit_stats stats;
	uint64_t lost_reported;

	pthread_mutex_t recent_lock;
	char *recent[RECENT_MAX];
	size_t recent_len[RECENT_MAX];
	uint64_t seq;
	void (*notify)(void *);
	void *notify_arg;
} A = { .lock = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP, /* held for a few stores: spin before sleeping */ .wake = PTHREAD_COND_INITIALIZER,
	.recent_lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1 };

static atomic_bool reopen_requested;

void crgw_audit_copy(char *dst, size_t size, const char *src)
{
	size_t n = src ? strnlen(src, size - 1) : 0;

	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
}

void crgw_audit_copy_raw(char *dst, size_t size, const char *src, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t used = 0, total = 0;
	bool cut;

	if (size < 4) {
		if (size)
			dst[0] = '\0';
		return;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];

		total += c > 0x20 && c < 0x7f && c != '\\' ? 1 : 4;
	}
	cut = total >= size;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];
		bool plain = c > 0x20 && c < 0x7f && c != '\\';
		/* Room for this byte's form and, when the whole will not fit, for the "..." that marks the cut. */
		size_t need = (plain ? 1 : 4) + (cut ? 3 : 0);

		if (used + need + 1 > size) {
			memcpy(dst + used, "...", 3);
			used += 3;
			break;
		}
		if (plain) {
			dst[used++] = (char)c;
		} else {
			dst[used++] = '\\';
			dst[used++] = 'x';
			dst[used++] = hex[c >> 4];
			dst[used++] = hex[c & 15];
		}
	}
	dst[used] = '\0';
}

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * The line is formatted here, on the emitting thread: the queue then holds a few hundred bytes per event,
 * not the whole record, and the writer only copies.
 */
int crgw_audit_emit(const struct crgw_audit_event *ev)
{
	struct crgw_audit_event stamped;
	char buf[CRGW_AUDIT_LINE_MAX];
	ssize_t n;
	char *line = NULL;
	bool lost = false;

	if (!ev->ts_us) {
		stamped = *ev;
		stamped.ts_us = now_us();
		ev = &stamped;
	}
	n = crgw_audit_format_into(ev, buf, sizeof(buf));
	if (n >= 0) {
		line = malloc((size_t)n + 1);
		if (line)
			memcpy(line, buf, (size_t)n + 1);
	}
	pthread_mutex_lock(&A.lock);
	if (!line || !A.running || A.len == A.cap) {
		A.stats.lost++;
		lost = true;
	} else {
		A.queue[(A.head + A.len) % A.cap] = (struct queued_line){ line, (size_t)n };
		A.len++;
		A.stats.queued++;
		/* A busy writer takes the queue in batches anyway: wake only a waiting one (no futex per event). */
		if (A.writer_idle)
			pthread_cond_signal(&A.wake);
	}
	pthread_mutex_unlock(&A.lock);
	if (lost) {
		free(line);
		return A.allow_loss ? 0 : -ENOBUFS;
	}
	return 0;
}

static int open_log(void)
{
	struct stat st;
	int fd = -1;

	/*
	 * A log that is rotated by renaming must be a file: never /dev/null renamed, nor a FIFO, which would
	 * hold the gateway's start until a reader came (hence no blocking open, and a second look after it).
	 */
	if (stat(A.path, &st) == 0 && !S_ISREG(st.st_mode))
		goto not_a_file;
	fd = open(A.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0640);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		goto not_a_file;
	A.size = (uint64_t)st.st_size;
	if (A.fd >= 0)
		close(A.fd);
	A.fd = fd;
	return 0;
not_a_file:
	log_error("the audit log is not a regular file", "path=\"%s\"", A.path);
	if (fd >= 0)
		close(fd);
	return -EINVAL;
}

static void rotate(void)
{
	char from[4200], to[4200];

	/* keep = 0 turns rotation off: nothing is ever deleted by the gateway. */
	if (A.keep == 0)
		return;
	for (unsigned i = A.keep; i > 1; i--) {
		snprintf(from, sizeof(from), "%s.%u", A.path, i - 1);
		snprintf(to, sizeof(to), "%s.%u", A.path, i);
		rename(from, to);
	}
	snprintf(to, sizeof(to), "%s.1", A.path);
	if (rename(A.path, to) == 0 && open_log() == 0) {
		A.size = 0;
		A.stats.rotations++;
	}
}

static void remember(char *line, size_t len)
{
	pthread_mutex_lock(&A.recent_lock);
	A.seq++;
	free(A.recent[A.seq % RECENT_MAX]);
	A.recent[A.seq % RECENT_MAX] = line;
	A.recent_len[A.seq % RECENT_MAX] = len;
	pthread_mutex_unlock(&A.recent_lock);
}

uint64_t crgw_audit_recent(uint64_t after, unsigned max, void (*cb)(void *arg, const char *line, size_t len),
			   void *arg)
{
	uint64_t s;

	pthread_mutex_lock(&A.recent_lock);
	s = after;
	if (A.seq > RECENT_MAX && s < A.seq - RECENT_MAX)
		s = A.seq - RECENT_MAX;
	if (A.seq > max && s < A.seq - max)
		s = A.seq - max;
	for (; s < A.seq; s++)
		cb(arg, A.recent[(s + 1) % RECENT_MAX], A.recent_len[(s + 1) % RECENT_MAX]);
	pthread_mutex_unlock(&A.recent_lock);
	return s;
}

void crgw_audit_set_notify(void (*notify)(void *arg), void *arg)
{
	pthread_mutex_lock(&A.lock);
	A.notify = notify;
	A.notify_arg = arg;
	pthread_mutex_unlock(&A.lock);
}

/* Appends `buf` whole, retrying while the disk refuses; gives up only when stopping. */
static bool write_all(const char *buf, size_t len)
{
	size_t off = 0;
	unsigned failures = 0;

	while (off < len) {
		ssize_t w = A.fd >= 0 ? write(A.fd, buf + off, len - off) : -1;

		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		A.stats.write_errors++;
		failures++;
		/* Once per episode: a dead disk must not turn into a log line per event. */
		if (!A.failing)
			log_error("audit write failed", "path=\"%s\" error=\"%s\"", A.path,
				  A.fd >= 0 ? strerror(errno) : "not open");
		A.failing = true;
		if (A.fd < 0)
			open_log();
		/* Stopping with a log that refuses writes: give up once, then count the rest lost at once. */
		if (A.stopping && (A.gave_up || failures > 25)) {
			A.gave_up = true;
			return false;
		}
		struct timespec ts = { 0, RETRY_MS * 1000000L };
		nanosleep(&ts, NULL);
	}
	if (A.failing)
		log_info("audit writes work again", "path=\"%s\"", A.path);
	A.failing = false;
	A.size += len;
	return true;
}

/* Lines of the current batch, written with one write(2). */
static char out_buf[64 * 1024];
static size_t out_len;
static unsigned out_events;

static void flush_out(void)
{
	if (out_events == 0)
		return;
	if (write_all(out_buf, out_len)) {
		/* The file has them: now the exporters' spools, which never hold what the file does not. */
		crgw_export_offer(out_buf, out_len, out_events);
		A.stats.written += out_events;
		A.stats.bytes += out_len;
	} else {
		A.stats.lost += out_events;
	}
	out_len = 0;
	out_events = 0;
}

/* Appends one line (taken: it moves on to the ring of recent lines). */
static void write_line(char *line, size_t len)
{
	if (A.max_bytes && A.size + out_len + len + 1 > A.max_bytes && A.size + out_len > 0) {
		flush_out();
		rotate();
	}
	if (out_len + len + 1 > sizeof(out_buf))
		flush_out();
	if (len + 1 > sizeof(out_buf)) {
		/* Longer than the buffer (cannot happen with today's fields): written on its own. */
		line[len] = '\n';
		if (write_all(line, len + 1)) {
			crgw_export_offer(line, len + 1, 1);
			A.stats.written++;
			A.stats.bytes += len + 1;
		} else {
			A.stats.lost++;
		}
		line[len] = '\0';
	} else {
		memcpy(out_buf + out_len, line, len);
		out_buf[out_len + len] = '\n';
		out_len += len + 1;
		out_events++;
	}
	remember(line, len);
}

static void *writer_main(void *arg)
{
	struct queued_line batch[BATCH_MAX];
	sigset_t all;

	(void)arg;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		unsigned n = 0;
		bool stop;
		uint64_t lost;

		pthread_mutex_lock(&A.lock);
		while (A.len == 0 && !A.stopping && !atomic_load(&reopen_requested)) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += RETRY_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			A.writer_idle = true;
			pthread_cond_timedwait(&A.wake, &A.lock, &ts);
			A.writer_idle = false;
			if (A.len && A.len < BATCH_MAX && !A.stopping) {
				/*
				 * Woken by the first event after a quiet spell: let a batch gather before taking it,
				 * so a busy gateway wakes this thread at most every BATCH_DELAY_US, not per event.
				 */
				struct timespec delay = { 0, BATCH_DELAY_US * 1000L };

				pthread_mutex_unlock(&A.lock);
				nanosleep(&delay, NULL);
				pthread_mutex_lock(&A.lock);
			}
		}
		while (A.len && n < BATCH_MAX) {
			batch[n++] = A.queue[A.head];
			A.head = (A.head + 1) % A.cap;
			A.len--;
		}
		stop = A.stopping && A.len == 0;
		lost = A.stats.lost;
		void (*notify)(void *) = A.notify;
		void *notify_arg = A.notify_arg;
		pthread_mutex_unlock(&A.lock);

		if (atomic_exchange(&reopen_requested, false)) {
			int err = open_log();

			if (err)
				log_error("audit reopen failed", "path=\"%s\" error=\"%s\"", A.path, strerror(-err));
			else
				log_info("audit log reopened", "path=\"%s\"", A.path);
		}
		for (unsigned i = 0; i < n; i++)
			write_line(batch[i].line, batch[i].len);
		flush_out();
		/* A loss is itself an event, written as soon as the log takes writes again. */
		if (lost > A.lost_reported) {
			struct crgw_audit_event ev = { .kind = CRGW_AUDIT_AUDIT_LOSS, .service = "audit" };

			ev.ts_us = now_us();
			ev.count = lost - A.lost_reported;
			AUDIT_SET(ev.detail, A.allow_loss ? "queue full; loss allowed by audit.allow_loss"
							  : "queue full; the unrecorded actions were refused");
			A.lost_reported = lost;
			char *line = crgw_audit_format(&ev);

			if (line)
				write_line(line, strlen(line));
			flush_out();
		}
		if (n && notify)
			notify(notify_arg);
		if (stop)
			break;
	}
	if (A.fd >= 0)
		fdatasync(A.fd);
	return NULL;
}

int crgw_audit_start(const char *path, uint64_t max_bytes, unsigned keep, unsigned queue, bool allow_loss)
{
	int err;

	crgw_audit_copy(A.path, sizeof(A.path), path);
	A.max_bytes = max_bytes;
	A.keep = keep;
	A.allow_loss = allow_loss;
	A.cap = queue;
	A.queue = calloc(queue, sizeof(*A.queue));
	if (!A.queue)
		return -ENOMEM;
	err = open_log();
	if (err) {
		free(A.queue);
		A.queue = NULL;
		return err;
	}
	A.running = true;
	err = -pthread_create(&A.thread, NULL, writer_main, NULL);
	if (err) {
		A.running = false;
		close(A.fd);
		A.fd = -1;
		free(A.queue);
		A.queue = NULL;
	}
	return err;
}

void crgw_audit_reopen(void)
{
	atomic_store(&reopen_requested, true);
}

void crgw_audit_stop(void)
{
	if (!A.running)
		return;
	pthread_mutex_lock(&A.lock);
	A.stopping = true;
	pthread_cond_signal(&A.wake);
	pthread_mutex_unlock(&A.lock);
	pthread_join(A.thread, NULL);
	pthread_mutex_lock(&A.lock);
	A.running = false;
	while (A.len) {
		free(A.queue[A.head].line);
		A.head = (A.head + 1) % A.cap;
		A.len--;
	}
	pthread_mutex_unlock(&A.lock);
	free(A.queue);
	A.queue = NULL;
	if (A.fd >= 0)
		close(A.fd);
	A.fd = -1;
	for (unsigned i = 0; i < RECENT_MAX; i++) {
		free(A.recent[i]);
		A.recent[i] = NULL;
	}
}

void crgw_audit_get_stats(struct crgw_audit_stats *out)
{
	pthread_mutex_lock(&A.lock);
	*out = A.stats;
	out->queue_depth = A.len;
	pthread_mutex_unlock(&A.lock);
}
