/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sockmap relay (experimental) with real TCP over loopback in a private network namespace; needs root.
 *
 * Each tunnel is built like the proxy builds one: a "client" connects to a listener and the accepted
 * socket is the middle client side; the middle connects to an "upstream" listener whose accepted socket
 * is the upstream. The relay holds the two middle sockets. Payloads are a fixed pseudo-random pattern
 * (PAT bytes, a length that is not a power of two) sent from a running offset, and every reader compares
 * each byte it gets with the pattern at its offset, so loss, duplication and reordering all fail.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <linux/tcp.h>

#include "crgw/relay.h"
#include "tap.h"

#define MiB (1024u * 1024u)
/* How much a slow reader's peer may push before the test stops it (the kernel would take more). */
#define SLOW_CAP (256ull * MiB)
#define PAT (MiB + 4093u)
#define CHUNK (256u * 1024u)

/* A known failure: TAP "not ok ... # TODO", which meson counts as an expected failure, not a failure. */
__attribute__((format(printf, 1, 2))) static void tap_todo(const char *fmt, ...)
{
	va_list ap;

	tap_count++;
	printf("not ok %u - ", tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static unsigned char *pattern[2]; /* [dir]: PAT + CHUNK bytes, so any offset has CHUNK contiguous bytes */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void make_patterns(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (int d = 0; d < 2; d++) {
		pattern[d] = malloc(PAT + CHUNK);
		if (!pattern[d])
			abort();
		for (size_t i = 0; i < PAT + CHUNK; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			pattern[d][i] = i < PAT ? (unsigned char)(x >> 32) : pattern[d][i - PAT];
		}
	}
}

struct tun {
	int client, mid_cli, mid_up, up;
};

static int listener(struct sockaddr_in *sa)
{
	socklen_t len = sizeof(*sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)sa, sizeof(*sa)) || listen(fd, 4) ||
	    getsockname(fd, (struct sockaddr *)sa, &len))
		abort();
	return fd;
}

static void make_tun(struct tun *t)
{
	struct sockaddr_in a, u;
	int la = listener(&a), lu = listener(&u);

	t->client = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(t->client, (struct sockaddr *)&a, sizeof(a)))
		abort();
	t->mid_cli = accept(la, NULL, NULL);
	t->mid_up = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(t->mid_up, (struct sockaddr *)&u, sizeof(u)))
		abort();
	t->up = accept(lu, NULL, NULL);
	if (t->mid_cli < 0 || t->up < 0)
		abort();
	close(la);
	close(lu);
	/* nothing in this test may hang the suite: a stuck end fails its check after 10 s */
	{
		struct timeval tv = {.tv_sec = 10};

		setsockopt(t->client, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(t->client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(t->up, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(t->up, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
}

static void close_tun(struct tun *t)
{
	close(t->client);
	close(t->mid_cli);
	close(t->mid_up);
	close(t->up);
}

/* One stream end's work, run in a thread: write n bytes (then maybe shutdown), or read (n or to EOF). */
struct job {
	int fd, dir;
	bool write, shut, to_eof, nonblock_stop; /* nonblock_stop: writer stops at the first EAGAIN/error */
	uint64_t n;
	/* results */
	uint64_t done;
	bool bad, eof;
	int err;
	double t0, t1;
	double cpu; /* the thread's user+sys seconds */
	pthread_t th;
};

static double thread_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static void *job_run(void *arg)
{
	struct job *j = arg;
	static __thread unsigned char buf[CHUNK];
	double c0 = thread_cpu();

	j->t0 = now_s();
	while (j->write ? j->done < j->n : (j->to_eof || j->done < j->n)) {
		size_t off = j->done % PAT;
		size_t want = CHUNK;
		ssize_t k;

		if (!j->to_eof && j->n - j->done < want)
			want = j->n - j->done;
		if (j->write) {
			k = send(j->fd, pattern[j->dir] + off, want, MSG_NOSIGNAL);
		} else {
			k = recv(j->fd, buf, want, 0);
			if (k > 0 && memcmp(buf, pattern[j->dir] + off, (size_t)k))
				j->bad = true;
		}
		if (k == 0) {
			j->eof = true;
			break;
		}
		if (k < 0) {
			if (errno == EINTR)
				continue;
			j->err = errno;
			break;
		}
		j->done += (uint64_t)k;
	}
	if (j->write && j->shut)
		shutdown(j->fd, SHUT_WR);
	j->t1 = now_s();
	j->cpu = thread_cpu() - c0;
	return NULL;
}

static void job_start(struct job *j, int fd, int dir, bool write, uint64_t n)
{
	memset(j, 0, sizeof(*j));
	j->fd = fd;
	j->dir = dir;
	j->write = write;
	j->n = n;
}

static void go(struct job *j)
{
	if (pthread_create(&j->th, NULL, job_run, j))
		abort();
}

static void join(struct job *j)
{
	pthread_join(j->th, NULL);
}

static int lo_up(void)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM, 0), rc;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
	ifr.ifr_flags |= IFF_UP;
	if (!rc)
		rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
	close(fd);
	return rc;
}

/* Busy CPU seconds of the whole machine (all CPUs) from /proc/stat. */
static double machine_busy(void)
{
	unsigned long long v[10] = {0};
	FILE *f = fopen("/proc/stat", "r");
	long hz = sysconf(_SC_CLK_TCK);

	if (!f)
		return 0;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
		   &v[7]) != 8)
		v[0] = 0;
	fclose(f);
	/* user nice system (idle iowait) irq softirq steal */
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)hz;
}

static uint64_t outq(int fd)
{
	int n = 0;

	ioctl(fd, SIOCOUTQ, &n);
	return (uint64_t)n;
}

static uint64_t inq(int fd)
{
	int n = 0;

	ioctl(fd, SIOCINQ, &n);
	return (uint64_t)n;
}

static struct tcp_info tinfo(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len);
	return ti;
}

/* Waits for EPOLLRDHUP on fd; returns the seconds it waited or -1 on timeout. */
static double wait_rdhup(int fd, int timeout_ms)
{
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLRDHUP, .data.fd = fd}, out;
	double t0 = now_s();
	int n;

	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	do
		n = epoll_wait(ep, &out, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	close(ep);
	if (n != 1 || !(out.events & EPOLLRDHUP))
	{
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
		printf("# epoll_wait: n %d errno %d events 0x%x after %.3f s, SO_ERROR %d, state %u\n", n, n < 0 ? errno : 0,
		       n == 1 ? out.events : 0, now_s() - t0, soerr, tinfo(fd).tcpi_state);
	}
	return n == 1 && (out.events & EPOLLRDHUP) ? now_s() - t0 : -1;
}

/*
 * The half-close rule, as a proxy would run it: on EPOLLRDHUP from `from`, poll crgw_relay_unsent() until
 * 0, then shutdown(to, SHUT_WR). Returns the milliseconds it waited, or -1.
 */
static double propagate_fin(struct crgw_relay *r, uint64_t id, int dir, int from, int to, uint64_t *unsent_at_fin,
			    unsigned *polls)
{
	uint64_t unsent = 0;
	double t0;

	int rc;

	if (wait_rdhup(from, 20000) < 0) {
		printf("# propagate_fin dir %d: no EPOLLRDHUP\n", dir);
		return -1;
	}
	t0 = now_s();
	*polls = 0;
	rc = crgw_relay_unsent(r, id, dir, from, to, &unsent);
	if (rc) {
		printf("# propagate_fin dir %d: unsent rc %d\n", dir, rc);
		return -1;
	}
	*unsent_at_fin = unsent;
	while (unsent) {
		if (now_s() - t0 > 10)
			return -1;
		usleep(200);
		(*polls)++;
		if (crgw_relay_unsent(r, id, dir, from, to, &unsent))
			return -1;
	}
	shutdown(to, SHUT_WR);
	return (now_s() - t0) * 1000;
}

struct fin_args {
	struct crgw_relay *r;
	uint64_t id;
	int dir, from, to;
	uint64_t unsent_at_fin;
	unsigned polls;
	double ms;
	pthread_t th;
};

static void *fin_run(void *arg)
{
	struct fin_args *a = arg;

	a->ms = propagate_fin(a->r, a->id, a->dir, a->from, a->to, &a->unsent_at_fin, &a->polls);
	return NULL;
}

static void test_bidir(struct crgw_relay *r)
{
	struct tun t;
	struct job w_up, r_up, w_dn, r_dn;
	struct crgw_relay_stats st, st2;
	uint64_t unsent[2] = {9, 9};
	const uint64_t nu = 64ull * MiB, nd = 1ull * MiB;
	int rc;

	make_tun(&t);
	rc = crgw_relay_add(r, 1, t.mid_cli, t.mid_up, 0);
	tap_result(rc == 0, "add tunnel 1 (rc %d)", rc);
	rc = crgw_relay_add(r, 1, t.mid_cli, t.mid_up, 0);
	tap_result(rc == -EEXIST, "adding the same tunnel id again is -EEXIST (rc %d)", rc);
	job_start(&w_up, t.client, 0, true, nu);
	job_start(&r_up, t.up, 0, false, nu);
	job_start(&w_dn, t.up, 1, true, nd);
	job_start(&r_dn, t.client, 1, false, nd);
	go(&w_up), go(&r_up), go(&w_dn), go(&r_dn);
	join(&w_up), join(&r_up), join(&w_dn), join(&r_dn);
	tap_result(w_up.done == nu && r_up.done == nu && !r_up.bad, "64 MiB client -> upstream intact (got %llu, bad %d)",
		   (unsigned long long)r_up.done, r_up.bad);
	tap_result(w_dn.done == nd && r_dn.done == nd && !r_dn.bad,
		   "1 MiB upstream -> client at the same time, intact (got %llu, bad %d)", (unsigned long long)r_dn.done,
		   r_dn.bad);
	rc = crgw_relay_stats(r, 1, &st);
	tap_result(rc == 0 && st.bytes[0] == nu && st.bytes[1] == nd && st.passed[0] == 0 && st.passed[1] == 0,
		   "counters: up %llu down %llu drops %llu/%llu", (unsigned long long)st.bytes[0],
		   (unsigned long long)st.bytes[1], (unsigned long long)st.passed[0], (unsigned long long)st.passed[1]);
	printf("# skbs up %llu (avg %llu B), down %llu\n", (unsigned long long)st.skbs[0],
	       (unsigned long long)(st.skbs[0] ? st.bytes[0] / st.skbs[0] : 0), (unsigned long long)st.skbs[1]);
	{
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t mono = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;

		tap_result(st.last_ns > 0 && st.last_ns <= mono && mono - st.last_ns < 5000000000ull,
			   "last activity is a CLOCK_MONOTONIC time in the last 5 s (%.3f s ago)",
			   (double)(mono - st.last_ns) / 1e9);
	}
	usleep(20000);
	send(t.up, pattern[1], 1, 0);
	{
		char c;
		ssize_t k = recv(t.client, &c, 1, 0);

		rc = crgw_relay_stats(r, 1, &st2);
		tap_result(k == 1 && c == (char)pattern[1][0] && rc == 0 && st2.last_ns > st.last_ns + 10000000ull &&
				   st2.bytes[1] == nd + 1,
			   "one more byte down moves last activity (+%.1f ms) and the counter", (double)(st2.last_ns - st.last_ns) / 1e6);
	}
	crgw_relay_unsent(r, 1, 0, t.mid_cli, t.mid_up, &unsent[0]);
	crgw_relay_unsent(r, 1, 1, t.mid_up, t.mid_cli, &unsent[1]);
	tap_result(unsent[0] == 0 && unsent[1] == 0, "nothing unsent either way once the readers have it all");
	rc = crgw_relay_remove(r, 1);
	tap_result(rc == 0, "remove tunnel 1");
	rc = crgw_relay_remove(r, 1);
	tap_result(rc == -ENOENT, "remove again is -ENOENT (rc %d)", rc);
	/* out of the map, the sockets are ordinary sockets again: the proxy could go on in user space */
	send(t.mid_up, "x", 1, 0);
	{
		char c = 0;

		tap_result(recv(t.up, &c, 1, 0) == 1 && c == 'x', "after remove the middle socket works as a plain socket");
	}
	close_tun(&t);
}

/*
 * Half-close: the client sends n then FIN; the proxy side (propagate_fin in a thread per direction) passes
 * the FIN on only when everything before it has been written out; the upstream then answers m bytes and
 * its FIN. naive: shutdown at EPOLLRDHUP without waiting, to measure what that loses.
 */
static void test_half_close(struct crgw_relay *r, uint64_t id, uint64_t n, uint64_t m, bool naive)
{
	struct tun t;
	struct job w_up, r_up, w_dn, r_dn;
	struct fin_args f_up = {0}, f_dn = {0};
	struct crgw_relay_stats st;
	int rc;

	make_tun(&t);
	if (naive) {
		/* a small receive buffer upstream keeps more in flight in the middle when the FIN comes */
		int sz = 64 * 1024;

		setsockopt(t.up, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	rc = crgw_relay_add(r, id, t.mid_cli, t.mid_up, 0);
	if (rc) {
		tap_result(false, "add tunnel %llu (rc %d)", (unsigned long long)id, rc);
		close_tun(&t);
		return;
	}
	job_start(&w_up, t.client, 0, true, n);
	w_up.shut = true;
	job_start(&r_up, t.up, 0, false, 0);
	r_up.to_eof = true;
	f_up = (struct fin_args){.r = r, .id = id, .dir = 0, .from = t.mid_cli, .to = t.mid_up};
	f_dn = (struct fin_args){.r = r, .id = id, .dir = 1, .from = t.mid_up, .to = t.mid_cli};
	if (naive) {
		go(&w_up), go(&r_up);
		if (wait_rdhup(t.mid_cli, 20000) >= 0) {
			uint64_t unsent = 0;

			crgw_relay_unsent(r, id, 0, t.mid_cli, t.mid_up, &unsent);
			shutdown(t.mid_up, SHUT_WR);
			printf("# naive: at EPOLLRDHUP %llu bytes were still unsent; shutdown(SHUT_WR) at once\n",
			       (unsigned long long)unsent);
		}
		join(&w_up);
		/* a dropped tail leaves the upstream waiting on bytes that never come; the FIN still arrives */
		join(&r_up);
		printf("# naive: upstream got %llu of %llu bytes, then %s (lost %llu)\n", (unsigned long long)r_up.done,
		       (unsigned long long)n, r_up.eof ? "EOF" : "an error", (unsigned long long)(n - r_up.done));
		tap_result(true, "naive half-close measured (diag above; not asserted: it depends on timing)");
		crgw_relay_remove(r, id);
		close_tun(&t);
		return;
	}
	pthread_create(&f_up.th, NULL, fin_run, &f_up);
	pthread_create(&f_dn.th, NULL, fin_run, &f_dn);
	go(&w_up), go(&r_up);
	join(&w_up);
	join(&r_up);
	pthread_join(f_up.th, NULL);
	tap_result(r_up.done == n && r_up.eof && !r_up.bad,
		   "half-close: upstream reads exactly %llu bytes then EOF (got %llu, eof %d, bad %d)", (unsigned long long)n,
		   (unsigned long long)r_up.done, r_up.eof, r_up.bad);
	printf("# FIN up: %llu bytes unsent at EPOLLRDHUP, drained in %.2f ms (%u polls)\n",
	       (unsigned long long)f_up.unsent_at_fin, f_up.ms, f_up.polls);
	{
		char c;
		ssize_t k = recv(t.mid_cli, &c, 1, MSG_DONTWAIT | MSG_PEEK);

		printf("# recv(MSG_PEEK) on the middle client socket after the FIN returns %zd (errno %d)\n", k,
		       k < 0 ? errno : 0);
	}
	/* the reverse direction still flows */
	job_start(&w_dn, t.up, 1, true, m);
	w_dn.shut = true;
	job_start(&r_dn, t.client, 1, false, 0);
	r_dn.to_eof = true;
	go(&w_dn), go(&r_dn);
	join(&w_dn), join(&r_dn);
	printf("# down: upstream wrote %llu (err %s), client read %llu (err %s), mid_up state %u, mid_cli state %u\n",
	       (unsigned long long)w_dn.done, strerror(w_dn.err), (unsigned long long)r_dn.done, strerror(r_dn.err),
	       tinfo(t.mid_up).tcpi_state, tinfo(t.mid_cli).tcpi_state);
	pthread_join(f_dn.th, NULL);
	tap_result(r_dn.done == m && r_dn.eof && !r_dn.bad,
		   "half-close: after the client's FIN the upstream still sends %llu bytes, the client reads them all then EOF "
		   "(got %llu, eof %d)",
		   (unsigned long long)m, (unsigned long long)r_dn.done, r_dn.eof);
	printf("# FIN down: %llu bytes unsent at EPOLLRDHUP, drained in %.2f ms (%u polls)\n",
	       (unsigned long long)f_dn.unsent_at_fin, f_dn.ms, f_dn.polls);
	rc = crgw_relay_stats(r, id, &st);
	tap_result(rc == 0 && st.bytes[0] == n && st.bytes[1] == m, "half-close counters up %llu down %llu",
		   (unsigned long long)st.bytes[0], (unsigned long long)st.bytes[1]);
	{
		struct tcp_info a = tinfo(t.mid_cli), b = tinfo(t.mid_up);

		printf("# tcpi_bytes_received after FIN: middle client %llu (n %llu), middle upstream %llu (m %llu)\n",
		       (unsigned long long)a.tcpi_bytes_received, (unsigned long long)n,
		       (unsigned long long)b.tcpi_bytes_received, (unsigned long long)m);
	}
	crgw_relay_remove(r, id);
	close_tun(&t);
}

/* The upstream does not read: how much does the relay take in before the client's writes block? */
static long long mem_available_kib(void)
{
	char line[256];
	long long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %lld kB", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

static void test_slow_reader(struct crgw_relay *r, const char *mode)
{
	long long avail0 = mem_available_kib();
	struct tun t;
	struct crgw_relay_stats st;
	struct job rd;
	uint64_t sent = 0;
	double last_progress;
	int rc, fl;

	make_tun(&t);
	rc = crgw_relay_add(r, 4, t.mid_cli, t.mid_up, 0);
	fl = fcntl(t.client, F_GETFL);
	fcntl(t.client, F_SETFL, fl | O_NONBLOCK);
	last_progress = now_s();
	while (now_s() - last_progress < 1.0 && sent < SLOW_CAP) {
		ssize_t k = send(t.client, pattern[0] + sent % PAT, CHUNK, MSG_NOSIGNAL);

		if (k > 0) {
			sent += (uint64_t)k;
			last_progress = now_s();
		} else {
			usleep(1000);
		}
	}
	crgw_relay_stats(r, 4, &st);
	{
		uint64_t mid_up_written = tinfo(t.mid_up).tcpi_bytes_acked + outq(t.mid_up);
		struct tcp_info ci = tinfo(t.mid_cli);

		printf("# slow reader (%s): the client wrote %llu bytes %s\n", mode,
		       (unsigned long long)sent,
		       sent >= SLOW_CAP ? "and reached the test's cap without blocking" : "before blocking for 1 s");
		printf("#   MemAvailable fell by %lld MiB meanwhile\n", (avail0 - mem_available_kib()) / 1024);
		printf("#   client SIOCOUTQ %llu, middle client rx %llu (SIOCINQ %llu, rcv window %u), relay redirected %llu,\n"
		       "#   in the middle upstream's psock queue %llu, middle upstream SIOCOUTQ %llu, upstream SIOCINQ %llu\n",
		       (unsigned long long)outq(t.client), (unsigned long long)ci.tcpi_bytes_received,
		       (unsigned long long)inq(t.mid_cli), ci.tcpi_rcv_space, (unsigned long long)st.bytes[0],
		       (unsigned long long)(st.bytes[0] - mid_up_written), (unsigned long long)outq(t.mid_up),
		       (unsigned long long)inq(t.up));
	}
	if (sent < 256ull * MiB)
		tap_result(rc == 0, "slow reader (%s): the client's writes block after %llu bytes (bounded)", mode,
			   (unsigned long long)sent);
	else
		tap_todo("slow reader (%s): the client's writes block (they did not in %llu bytes) # TODO unbounded: the "
			 "peer's psock queue takes everything (README, Relay: not solved)", mode, (unsigned long long)sent);
	fcntl(t.client, F_SETFL, fl);
	shutdown(t.client, SHUT_WR);
	job_start(&rd, t.up, 0, false, sent);
	go(&rd);
	join(&rd);
	tap_result(rd.done == sent && !rd.bad, "slow reader (%s): once it reads, the upstream gets all %llu bytes intact", mode,
		   (unsigned long long)sent);
	crgw_relay_remove(r, 4);
	close_tun(&t);
}

/*
 * The backpressure experiment: the same slow upstream, but the client socket is paused (taken out of the
 * sockhash) once the peer's psock holds more than 8 MiB. Then the client closes its side, the upstream
 * reads, and when the psock queue is empty the proxy moves what queued in the client socket meanwhile
 * itself and passes the FIN on.
 */
static void test_pause(struct crgw_relay *r)
{
	const uint64_t high = 8ull * MiB;
	struct tun t;
	struct crgw_relay_stats st;
	struct job rd;
	uint64_t sent = 0, queued = 0, moved = 0, max_queued = 0;
	double last_progress;
	bool paused = false;
	int rc, fl;
	static unsigned char buf[CHUNK];

	make_tun(&t);
	rc = crgw_relay_add(r, 7, t.mid_cli, t.mid_up, 0);
	fl = fcntl(t.client, F_GETFL);
	fcntl(t.client, F_SETFL, fl | O_NONBLOCK);
	last_progress = now_s();
	while (now_s() - last_progress < 1.0 && sent < SLOW_CAP) {
		ssize_t k = send(t.client, pattern[0] + sent % PAT, CHUNK, MSG_NOSIGNAL);

		if (k > 0) {
			sent += (uint64_t)k;
			last_progress = now_s();
		} else {
			usleep(1000);
		}
		{
			/* written first, then the counter: the counter can only have grown, so no underflow */
			uint64_t written = tinfo(t.mid_up).tcpi_bytes_acked + outq(t.mid_up);

			crgw_relay_stats(r, 7, &st);
			queued = st.bytes[0] > written ? st.bytes[0] - written : 0;
		}
		if (queued > max_queued)
			max_queued = queued;
		if (!paused && queued > high) {
			rc |= crgw_relay_pause(r, 7, CRGW_RELAY_UP);
			paused = true;
		}
	}
	printf("# pause at %llu MiB in the psock: the client wrote %llu bytes %s; max psock queue %llu, "
	       "middle client SIOCINQ %llu\n",
	       (unsigned long long)(high / MiB), (unsigned long long)sent,
	       sent >= SLOW_CAP ? "and reached the test's cap" : "before blocking for 1 s", (unsigned long long)max_queued,
	       (unsigned long long)inq(t.mid_cli));
	tap_result(rc == 0 && paused && sent < 256ull * MiB, "pausing the source bounds what the client can push (%llu bytes)",
		   (unsigned long long)sent);
	/* while the client socket is paused, the upstream answers: where do its bytes go? */
	{
		struct crgw_relay_stats st2;
		char c[4096];
		ssize_t k;

		send(t.up, pattern[1], 65536, 0);
		usleep(100000);
		crgw_relay_stats(r, 7, &st2);
		k = recv(t.mid_up, c, sizeof(c), MSG_DONTWAIT | MSG_PEEK);
		printf("# while paused, 65536 bytes down: %llu skbs left to user space by the program; recv on the middle "
		       "upstream socket now: %zd (%s)\n",
		       (unsigned long long)st2.passed[1], k, k < 0 ? strerror(errno) : "data");
	}
	fcntl(t.client, F_SETFL, fl);
	shutdown(t.client, SHUT_WR);
	job_start(&rd, t.up, 0, false, 0);
	rd.to_eof = true;
	go(&rd);
	for (double t0 = now_s(); now_s() - t0 < 10;) {
		crgw_relay_stats(r, 7, &st);
		if (st.bytes[0] == tinfo(t.mid_up).tcpi_bytes_acked + outq(t.mid_up))
			break;
		usleep(500);
	}
	/* the psock queue is empty: move the paused bytes in user space, then the FIN */
	for (;;) {
		ssize_t k = recv(t.mid_cli, buf, sizeof(buf), 0), o = 0;

		if (k <= 0)
			break;
		while (o < k) {
			ssize_t w = send(t.mid_up, buf + o, (size_t)(k - o), MSG_NOSIGNAL);

			if (w <= 0)
				break;
			o += w;
		}
		moved += (uint64_t)o;
	}
	shutdown(t.mid_up, SHUT_WR);
	join(&rd);
	{
		/* the passed bytes were queued behind the up direction's backlog on the same psock: now they are readable */
		static char c[65536];
		ssize_t mid = 0, got = 0, k;
		double t0 = now_s();

		while (mid < 65536 && now_s() - t0 < 5) {
			k = recv(t.mid_up, c + mid, sizeof(c) - (size_t)mid, MSG_DONTWAIT);
			if (k > 0)
				mid += k;
			else
				usleep(1000);
		}
		if (mid > 0)
			send(t.mid_cli, c, (size_t)mid, MSG_NOSIGNAL);
		memset(c, 0, sizeof(c));
		while (got < mid && (k = recv(t.client, c + got, sizeof(c) - (size_t)got, 0)) > 0)
			got += k;
		tap_result(got == 65536 && !memcmp(c, pattern[1], 65536),
			   "the reverse direction survives a pause: the program left the 65536 bytes on the middle upstream "
			   "socket, readable once the up backlog drained (after %.1f ms), the proxy relayed them (client got %zd)",
			   (now_s() - t0) * 1000, got);
	}
	tap_result(rd.done == sent && !rd.bad && rd.eof,
		   "after the pause the upstream gets all %llu bytes in order (%llu relayed in the kernel, %llu moved by "
		   "the proxy), then EOF",
		   (unsigned long long)rd.done, (unsigned long long)st.bytes[0], (unsigned long long)moved);
	crgw_relay_remove(r, 7);
	close_tun(&t);
}

static void test_remove_mid_transfer(struct crgw_relay *r)
{
	struct tun t;
	struct job w, rd;
	struct timeval tv = {.tv_sec = 2};
	unsigned nt, ne, ns;
	int rc;

	make_tun(&t);
	setsockopt(t.client, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(t.up, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	rc = crgw_relay_add(r, 5, t.mid_cli, t.mid_up, 0);
	job_start(&w, t.client, 0, true, 512ull * MiB);
	job_start(&rd, t.up, 0, false, 0);
	rd.to_eof = true;
	go(&w), go(&rd);
	usleep(100000);
	rc |= crgw_relay_remove(r, 5);
	close(t.mid_cli);
	close(t.mid_up);
	join(&w), join(&rd);
	tap_result(rc == 0 && !rd.bad && rd.done > 0,
		   "remove mid-transfer then close: no crash; writer ended (%s after %llu), reader got %llu intact then %s",
		   strerror(w.err), (unsigned long long)w.done, (unsigned long long)rd.done,
		   rd.eof ? "EOF" : strerror(rd.err));
	close(t.client);
	close(t.up);
	crgw_relay_count(r, &nt, &ne, &ns);
	tap_result(nt == 0 && ne == 0 && ns == 0, "maps empty after the removes (tunnels %u endpoints %u sockets %u)", nt, ne,
		   ns);
}

/* 256 MiB one way: the relay, then a splice relay thread, same namespace, same readers and writers. */
struct splice_args {
	int from, to;
	uint64_t moved;
	double cpu;
	pthread_t th;
};

static void *splice_run(void *arg)
{
	struct splice_args *a = arg;
	int p[2];
	double c0 = thread_cpu();

	if (pipe(p))
		return NULL;
	fcntl(p[0], F_SETPIPE_SZ, 1024 * 1024);
	for (;;) {
		ssize_t k = splice(a->from, NULL, p[1], NULL, 1 << 20, SPLICE_F_MOVE), out;

		if (k <= 0)
			break;
		while (k > 0) {
			out = splice(p[0], NULL, a->to, NULL, (size_t)k, SPLICE_F_MOVE);
			if (out <= 0)
				goto done;
			k -= out;
			a->moved += (uint64_t)out;
		}
	}
done:
	shutdown(a->to, SHUT_WR);
	close(p[0]);
	close(p[1]);
	a->cpu = thread_cpu() - c0;
	return NULL;
}

static void test_throughput(struct crgw_relay *r)
{
	const uint64_t n = 256ull * MiB;
	struct job w, rd;
	struct tun t;
	double busy0, busy1, mbs[2], sys[2], ends[2], relay_cpu = 0;
	bool ok[2];

	for (int round = 0; round < 6; round++) {
		struct splice_args sa = {0};
		int mode = round & 1;

		make_tun(&t);
		if (mode == 0 && crgw_relay_add(r, 6, t.mid_cli, t.mid_up, 0))
			abort();
		job_start(&w, t.client, 0, true, n);
		job_start(&rd, t.up, 0, false, n);
		busy0 = machine_busy();
		if (mode == 1) {
			sa.from = t.mid_cli;
			sa.to = t.mid_up;
			pthread_create(&sa.th, NULL, splice_run, &sa);
		}
		go(&rd), go(&w);
		join(&w), join(&rd);
		busy1 = machine_busy();
		ok[mode] = rd.done == n && !rd.bad;
		mbs[mode] = (double)n / 1e6 / (rd.t1 - w.t0);
		sys[mode] = busy1 - busy0;
		ends[mode] = w.cpu + rd.cpu;
		if (mode == 1) {
			shutdown(t.client, SHUT_WR);
			pthread_join(sa.th, NULL);
			relay_cpu = sa.cpu;
		} else {
			crgw_relay_remove(r, 6);
		}
		close_tun(&t);
		if (mode == 1) {
			printf("# round %d, 256 MiB over loopback: sockmap %.0f MB/s, splice %.0f MB/s\n", round / 2 + 1, mbs[0],
			       mbs[1]);
			printf("#   CPU s, machine busy during the run / writer+reader threads: sockmap %.2f / %.2f (relay ~%.2f, "
			       "in softirq and kworkers), splice %.2f / %.2f (splice thread %.2f)\n",
			       sys[0], ends[0], sys[0] - ends[0], sys[1], ends[1], relay_cpu);
			tap_result(ok[0] && ok[1], "throughput round %d moved 256 MiB intact both ways of relaying", round / 2 + 1);
		}
	}
}

int main(void)
{
	struct crgw_relay *r = NULL;
	char err[256] = "";
	int rc;
	unsigned nt, ne, ns;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (geteuid() != 0) {
		printf("1..0 # SKIP needs root\n");
		return 0;
	}
	if (unshare(CLONE_NEWNET) || lo_up()) {
		printf("1..0 # SKIP no private network namespace: %s\n", strerror(errno));
		return 0;
	}
	make_patterns();
	rc = crgw_relay_open(&r, 0, err, sizeof(err));
	tap_result(rc == 0, "open the relay (%s)", rc ? err : "loaded, verdict attached");
	if (rc)
		return tap_done();
	test_bidir(r);
	test_half_close(r, 2, 32ull * MiB, 4ull * MiB, false);
	test_half_close(r, 3, 32ull * MiB, 0, true);
	test_slow_reader(r, "verdict path");
	{
		struct crgw_relay *rs = NULL;

		rc = crgw_relay_open(&rs, CRGW_RELAY_F_STRPARSER, err, sizeof(err));
		tap_result(rc == 0, "open a second relay with a stream parser (%s)", rc ? err : "ok");
		if (!rc) {
			test_slow_reader(rs, "strparser path");
			test_half_close(rs, 2, 32ull * MiB, 4ull * MiB, false);
		}
		crgw_relay_close(rs);
	}
	test_pause(r);
	test_remove_mid_transfer(r);
	test_throughput(r);
	crgw_relay_count(r, &nt, &ne, &ns);
	tap_result(nt == 0 && ne == 0 && ns == 0, "maps empty at the end (tunnels %u endpoints %u sockets %u)", nt, ne, ns);
	crgw_relay_close(r);
	return tap_done();
}
