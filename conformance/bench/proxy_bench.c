/* SPDX-License-Identifier: Apache-2.0 */
/* The proxy benchmark's load generator and upstream servers: bulk tunnels, tunnel setup, forward requests, idle tunnels (SPEC section 10). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/*
 * Limits. Each keeps one resource bounded whatever the command line says: buffered bytes per connection (a
 * proxy's response head, a request head at the server), connections, the latency store (4 bytes per measured
 * operation, sized by --max-ops) and every run's length.
 */
#define NS_PER_S 1000000000ull
#define PING_LEN 16u		  /* the bytes a setup-rate tunnel carries each way */
#define HEAD_MAX 16384u		  /* a response head at the client, a request head at the server */
#define LINE_MAX_SRC 64u	  /* the source server's request line */
#define SRC_CHUNK (1u << 20)	  /* the memfd that sendfile cycles over, both directions */
#define DISCARD_BUF (1u << 20)	  /* the bulk sink's buffer (and its recv length) */
#define MAX_CONC 65536u		  /* concurrent operations or idle tunnels in one client */
#define MAX_THREADS 64u
#define MAX_SECONDS 3600.0
#define MAX_OPS_CAP 100000000ull
#define MAX_BYTES (UINT64_C(1) << 40)
#define MAX_BODY (UINT64_C(1) << 30) /* a forward response's body: anything larger is a protocol error here */
#define MAX_AUTH 255u
#define MAX_PATH_LEN 1024u
#define MAX_LABEL 128u
#define MAX_PIPELINE 64u	  /* server: responses owed on one connection before it stops reading */
#define SCAN_NS 10000000ull	  /* client: timeout scan and failed-slot retry period, 10 ms */
#define EVENTS 256
#define FAIL_EARLY 200u		  /* a run whose first this-many operations all failed stops early */
#define DEFAULT_MAX_CONNS 100000u /* server */
#define DEFAULT_BODY 64u	  /* server: forward response body bytes */

static const char usage_text[] =
	"usage: proxy_bench MODE [options]\n"
	"\n"
	"Modes (client modes reach their upstream through the proxy at --proxy):\n"
	"  serve  --listen ADDR [--ports SRC,PING,HTTP,HOLD] [--threads N] [--body BYTES] [--max-conns N]\n"
	"         [--lifetime S]\n"
	"         the upstream servers, one listener each (default ports 9001-9004):\n"
	"           source: reads 'down N\\n' and sends N bytes then FIN, or 'up N\\n', sinks N bytes, answers 'ok\\n'\n"
	"           ping:   reads 16 bytes, echoes them and closes (so the TIME_WAIT stays on the server)\n"
	"           http:   HTTP/1.1 keep-alive responder: 200 with a --body byte body to every request head\n"
	"           hold:   sends one byte 'H' on accept, then holds the connection until the client closes\n"
	"  bulk   --proxy ADDR:PORT (--connect HOST:PORT | --tcp) [--bytes N] [--direction down|up] [--copy]\n"
	"         one tunnel to the source server moving N bytes (default 1 GiB); reports MB/s (10^6 bytes/s)\n"
	"  setup  --proxy ADDR:PORT (--connect HOST:PORT | --tcp) [--concurrency C] [--threads T]\n"
	"         closed loop of tunnels to the ping server: connect, CONNECT, 200, 16 bytes each way, the\n"
	"         upstream's close; reports tunnels/s and the latency of the whole exchange\n"
	"  http   --proxy ADDR:PORT --url http://HOST:PORT/PATH [--concurrency C] [--threads T]\n"
	"         absolute-URI GET requests over keep-alive connections, C connections; reports requests/s and\n"
	"         latency per request; reconnects when the proxy closes\n"
	"  idle   --proxy ADDR:PORT (--connect HOST:PORT | --tcp) [--count N] [--parallel P] [--hold S]\n"
	"         opens N tunnels to the hold server (each confirmed by the upstream's byte), prints a 'ready'\n"
	"         line, holds them for S seconds (counting any the proxy drops), prints a 'done' line\n"
	"\n"
	"Common client options:\n"
	"  --tcp               no CONNECT: the proxy is a TCP relay to a fixed upstream (HAProxy in TCP mode)\n"
	"  --warmup S          setup/http: seconds before measuring, left out of the figures (default 1)\n"
	"  --duration S        setup/http: measured seconds (default 5); the run ends within warm-up +\n"
	"                      duration + timeout whatever the proxy does\n"
	"  --max-ops N         setup/http: bound on operations started, warm-up included (default 20000000)\n"
	"  --timeout-ms MS     per operation (connect to end of exchange, or one request; default 5000)\n"
	"  --max-seconds S     bulk and idle: bound on the whole run (default 300)\n"
	"  --label TEXT        name of this run in the result\n"
	"  --json              one JSON object per result line instead of text\n"
	"\n"
	"Exit status: 0 when at most 1% of the measured operations failed, 1 otherwise (a JSON result is still\n"
	"printed, with the failures broken down and the last unexpected HTTP status), 2 on a usage or setup error.\n";

/* ---- shared helpers ------------------------------------------------------------------------------- */

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(clockid_t clk)
{
	struct timespec ts;

	if (clock_gettime(clk, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Like parse_u64, for a decimal field inside a buffer: [s, s+n). */
static int parse_u64_n(const char *s, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		if (v > (max - (uint64_t)(s[i] - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

static int parse_seconds(const char *s, double min, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < min || v > MAX_SECONDS)
		return -EINVAL;
	*out = v;
	return 0;
}

/* "A.B.C.D:PORT", numeric only: the benchmark never resolves a name itself. */
static int parse_addr_port(const char *arg, struct sockaddr_in *sa)
{
	char host[INET_ADDRSTRLEN];
	const char *colon = strrchr(arg, ':');
	uint64_t port;

	if (!colon || colon == arg || (size_t)(colon - arg) >= sizeof(host))
		return -EINVAL;
	memcpy(host, arg, (size_t)(colon - arg));
	host[colon - arg] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1 || parse_u64(colon + 1, 1, 65535, &port) != 0)
		return -EINVAL;
	sa->sin_port = htons((uint16_t)port);
	return 0;
}

/* 2,000 idle tunnels and 64-way loops need more descriptors than the usual soft limit of 1,024. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void set_nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* A memfd of SRC_CHUNK bytes in the page cache: sendfile from it costs no copy in user space. */
static int make_source_memfd(int *out)
{
	char block[4096];
	int fd = memfd_create("proxy-bench-source", MFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	for (size_t i = 0; i < sizeof(block); i++)
		block[i] = (char)('a' + i % 26);
	for (uint32_t off = 0; off < SRC_CHUNK; off += sizeof(block)) {
		if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block)) {
			int err = errno ? -errno : -EIO;

			close(fd);
			return err;
		}
	}
	*out = fd;
	return 0;
}

static int ascii_lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* Case-insensitive search for needle (lowercase) in [s, s+n). */
static bool ci_contains(const char *s, size_t n, const char *needle)
{
	size_t m = strlen(needle);

	for (size_t i = 0; i + m <= n; i++) {
		size_t j = 0;

		while (j < m && ascii_lower((unsigned char)s[i + j]) == needle[j])
			j++;
		if (j == m)
			return true;
	}
	return false;
}

/* True when the header line [line, line+n) is "name:" (name lowercase); *val and *vlen get the trimmed value. */
static bool header_is(const char *line, size_t n, const char *name, const char **val, size_t *vlen)
{
	size_t m = strlen(name);
	size_t b, e;

	if (n <= m || line[m] != ':')
		return false;
	for (size_t i = 0; i < m; i++) {
		if (ascii_lower((unsigned char)line[i]) != name[i])
			return false;
	}
	b = m + 1;
	e = n;
	while (b < e && (line[b] == ' ' || line[b] == '\t'))
		b++;
	while (e > b && (line[e - 1] == ' ' || line[e - 1] == '\t'))
		e--;
	*val = line + b;
	*vlen = e - b;
	return true;
}

static void json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array of nanoseconds, in microseconds. */
static double percentile_us(const uint32_t *v, uint64_t n, double p)
{
	uint64_t rank;

	if (n == 0)
		return 0.0;
	rank = (uint64_t)ceil(p / 100.0 * (double)n);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1] / 1000.0;
}

/* ---- serve: the upstream servers ------------------------------------------------------------------ */

enum skind { SK_SOURCE, SK_PING, SK_HTTP, SK_HOLD, SK_NKINDS };
enum src_phase { SRC_REQ, SRC_DOWN, SRC_UP, SRC_DRAIN };

struct sopts {
	struct in_addr addr;
	uint16_t port[SK_NKINDS];
	uint32_t threads;
	uint32_t max_conns;
	uint32_t body;
	double lifetime;
};

/*
 * One per epoll registration, listeners included. A connection has exactly one descriptor, so no later event
 * in the same epoll batch can name a connection after it is freed: freeing at once is safe here.
 */
struct sconn {
	int fd;
	uint8_t kind;
	uint8_t listener;
	uint8_t phase;	     /* source: enum src_phase */
	uint8_t close_after; /* http: the request asked for it (or was HTTP/1.0 without keep-alive) */
	uint32_t len;	     /* bytes in buf / small */
	uint64_t remaining;  /* source: bytes still to send or to sink */
	uint64_t skip;	     /* http: request body bytes still to discard */
	off_t off;	     /* source: position in the memfd */
	uint32_t owed;	     /* http: responses owed */
	uint32_t out_off;    /* http: bytes of the current response written */
	char *buf;	     /* http: HEAD_MAX bytes */
	char small[LINE_MAX_SRC];
};

struct sthread {
	const struct sopts *o;
	int ep;
	int memfd;
	struct sconn lis[SK_NKINDS];
	uint64_t deadline;
	pthread_t tid;
};

static atomic_uint srv_conns;
static char *http_resp;
static size_t http_resp_len;

static void sconn_close(struct sconn *c)
{
	close(c->fd);
	free(c->buf);
	free(c);
	atomic_fetch_sub(&srv_conns, 1);
}

/*
 * The *_event functions run on every event of a connection (edge-triggered: each works until EAGAIN) and
 * return 0 to keep the connection, -1 to have it closed.
 */
static int source_event(struct sthread *th, struct sconn *c)
{
	for (;;) {
		if (c->phase == SRC_REQ) {
			char *nl;
			uint64_t n;
			ssize_t r = read(c->fd, c->small + c->len, sizeof(c->small) - c->len);

			if (r < 0)
				return errno == EAGAIN ? 0 : -1;
			if (r == 0)
				return -1;
			c->len += (uint32_t)r;
			nl = memchr(c->small, '\n', c->len);
			if (!nl)
				return c->len == sizeof(c->small) ? -1 : 0;
			if (c->len > 5 && memcmp(c->small, "down ", 5) == 0 &&
			    parse_u64_n(c->small + 5, (size_t)(nl - c->small - 5), MAX_BYTES, &n) == 0 && n > 0) {
				c->phase = SRC_DOWN;
			} else if (c->len > 3 && memcmp(c->small, "up ", 3) == 0 &&
				   parse_u64_n(c->small + 3, (size_t)(nl - c->small - 3), MAX_BYTES, &n) == 0 && n > 0) {
				/* Upload bytes that came with the request line count. */
				uint64_t extra = (uint64_t)(c->small + c->len - (nl + 1));

				c->phase = SRC_UP;
				n -= extra < n ? extra : n;
			} else {
				return -1;
			}
			c->remaining = n;
			continue;
		}
		if (c->phase == SRC_DOWN) {
			while (c->remaining > 0) {
				size_t want = SRC_CHUNK - (size_t)c->off;
				ssize_t r;

				if (want > c->remaining)
					want = (size_t)c->remaining;
				r = sendfile(c->fd, th->memfd, &c->off, want);
				if (r < 0)
					return errno == EAGAIN ? 0 : -1;
				c->remaining -= (uint64_t)r;
				if (c->off >= (off_t)SRC_CHUNK)
					c->off = 0;
			}
			(void)shutdown(c->fd, SHUT_WR);
			c->phase = SRC_DRAIN;
			continue;
		}
		if (c->phase == SRC_UP) {
			while (c->remaining > 0) {
				/* MSG_TRUNC on TCP discards without copying: the sink costs the machine nothing extra. */
				size_t want = c->remaining > DISCARD_BUF ? DISCARD_BUF : (size_t)c->remaining;
				ssize_t r = recv(c->fd, NULL, want, MSG_TRUNC | MSG_DONTWAIT);

				if (r < 0)
					return errno == EAGAIN ? 0 : -1;
				if (r == 0)
					return -1;
				c->remaining -= (uint64_t)r;
			}
			if (write(c->fd, "ok\n", 3) != 3)
				return -1;
			(void)shutdown(c->fd, SHUT_WR);
			c->phase = SRC_DRAIN;
			continue;
		}
		/* SRC_DRAIN: the client closes; anything it still sends is thrown away. */
		for (;;) {
			ssize_t r = recv(c->fd, NULL, DISCARD_BUF, MSG_TRUNC | MSG_DONTWAIT);

			if (r < 0)
				return errno == EAGAIN ? 0 : -1;
			if (r == 0)
				return -1;
		}
	}
}

static int ping_event(struct sconn *c)
{
	for (;;) {
		ssize_t r = read(c->fd, c->small + c->len, PING_LEN - c->len);

		if (r < 0)
			return errno == EAGAIN ? 0 : -1;
		if (r == 0)
			return -1;
		c->len += (uint32_t)r;
		if (c->len == PING_LEN) {
			/* A fresh socket's send buffer takes 16 bytes whole. The close that follows puts the FIN (and
			 * the TIME_WAIT) on this side, so no proxy runs out of ephemeral ports. */
			(void)!write(c->fd, c->small, PING_LEN);
			return -1;
		}
	}
}

/* Parses one request head of hlen bytes at c->buf: what it says about the body and the connection. */
static int http_request_head(struct sconn *c, size_t hlen)
{
	const char *p = c->buf, *end = c->buf + hlen;
	const char *eol = memchr(p, '\n', hlen);
	bool http10, keep_alive = false, close = false;
	uint64_t cl = 0;

	if (!eol || eol - p < 10)
		return -EINVAL;
	http10 = eol - p >= 9 && memcmp(eol - 9, "HTTP/1.0\r", 9) == 0;
	for (p = eol + 1; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *v;
		size_t vlen;

		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (header_is(p, n, "content-length", &v, &vlen)) {
			if (parse_u64_n(v, vlen, MAX_BODY, &cl) != 0)
				return -EINVAL;
		} else if (header_is(p, n, "transfer-encoding", &v, &vlen)) {
			return -ENOTSUP; /* no request of this benchmark has a chunked body */
		} else if (header_is(p, n, "connection", &v, &vlen) ||
			   header_is(p, n, "proxy-connection", &v, &vlen)) {
			if (ci_contains(v, vlen, "close"))
				close = true;
			if (ci_contains(v, vlen, "keep-alive"))
				keep_alive = true;
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	c->skip = cl;
	if (close || (http10 && !keep_alive))
		c->close_after = 1;
	return 0;
}

/* Writes what is owed; -EAGAIN when the socket is full. */
static int http_flush(struct sconn *c)
{
	while (c->owed > 0) {
		ssize_t r = write(c->fd, http_resp + c->out_off, http_resp_len - c->out_off);

		if (r < 0)
			return errno == EAGAIN ? -EAGAIN : -errno;
		c->out_off += (uint32_t)r;
		if (c->out_off == http_resp_len) {
			c->out_off = 0;
			c->owed--;
		}
	}
	return 0;
}

static int http_event(struct sconn *c)
{
	for (;;) {
		bool progress = false;
		int r = http_flush(c);

		if (r == -EAGAIN)
			return 0; /* stop reading until the client takes what it is owed (EPOLLOUT) */
		if (r < 0)
			return -1;
		if (c->close_after) {
			(void)shutdown(c->fd, SHUT_WR);
			return -1;
		}
		/* Discard body bytes, then answer every complete head in the buffer. */
		while (c->len > 0 && !c->close_after && c->owed < MAX_PIPELINE) {
			char *e;
			size_t hlen;

			if (c->skip > 0) {
				size_t take = c->skip < c->len ? (size_t)c->skip : c->len;

				memmove(c->buf, c->buf + take, c->len - take);
				c->len -= (uint32_t)take;
				c->skip -= take;
				progress = true;
				continue;
			}
			e = memmem(c->buf, c->len, "\r\n\r\n", 4);
			if (!e)
				break;
			hlen = (size_t)(e - c->buf) + 4;
			if (http_request_head(c, hlen) != 0)
				return -1;
			memmove(c->buf, c->buf + hlen, c->len - hlen);
			c->len -= (uint32_t)hlen;
			c->owed++;
			progress = true;
		}
		if (progress)
			continue;
		if (c->owed >= MAX_PIPELINE)
			return 0;
		if (c->len == HEAD_MAX)
			return -1; /* a head larger than HEAD_MAX */
		if (c->skip > 0 && c->len == 0) {
			ssize_t n = recv(c->fd, NULL, c->skip > DISCARD_BUF ? DISCARD_BUF : (size_t)c->skip,
					 MSG_TRUNC | MSG_DONTWAIT);

			if (n < 0)
				return errno == EAGAIN ? 0 : -1;
			if (n == 0)
				return -1;
			c->skip -= (uint64_t)n;
			continue;
		}
		{
			ssize_t n = read(c->fd, c->buf + c->len, HEAD_MAX - c->len);

			if (n < 0)
				return errno == EAGAIN ? 0 : -1;
			if (n == 0)
				return -1;
			c->len += (uint32_t)n;
		}
	}
}

static int hold_event(struct sconn *c)
{
	for (;;) {
		ssize_t r = recv(c->fd, NULL, DISCARD_BUF, MSG_TRUNC | MSG_DONTWAIT);

		if (r < 0)
			return errno == EAGAIN ? 0 : -1;
		if (r == 0)
			return -1;
	}
}

static void serve_accept(struct sthread *th, struct sconn *l)
{
	/* Bounded: a listener that stays readable yields to the other events after this many. */
	for (int i = 0; i < 256; i++) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };
		struct sconn *c;
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				static atomic_bool said;

				if (!atomic_exchange(&said, true))
					fprintf(stderr, "proxy_bench serve: out of descriptors (ulimit -n)\n");
				usleep(1000); /* the listener stays readable: do not spin */
			}
			return;
		}
		if (atomic_fetch_add(&srv_conns, 1) >= th->o->max_conns) {
			atomic_fetch_sub(&srv_conns, 1);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c && l->kind == SK_HTTP)
			c->buf = malloc(HEAD_MAX);
		if (!c || (l->kind == SK_HTTP && !c->buf)) {
			if (c)
				free(c);
			atomic_fetch_sub(&srv_conns, 1);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->kind = l->kind;
		if (c->kind != SK_SOURCE)
			set_nodelay(fd);
		ev.data.ptr = c;
		if (epoll_ctl(th->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			sconn_close(c);
			continue;
		}
		if (c->kind == SK_HOLD && write(fd, "H", 1) != 1)
			sconn_close(c);
	}
}

static void *serve_thread(void *arg)
{
	struct sthread *th = arg;
	struct epoll_event evs[EVENTS];

	while (mono_ns() < th->deadline) {
		int n = epoll_wait(th->ep, evs, EVENTS, 1000);

		for (int i = 0; i < n; i++) {
			struct sconn *c = evs[i].data.ptr;
			int r = 0;

			if (c->listener) {
				serve_accept(th, c);
				continue;
			}
			switch (c->kind) {
			case SK_SOURCE:
				r = source_event(th, c);
				break;
			case SK_PING:
				r = ping_event(c);
				break;
			case SK_HTTP:
				r = http_event(c);
				break;
			default:
				r = hold_event(c);
				break;
			}
			if (r < 0)
				sconn_close(c);
		}
	}
	return NULL;
}

static int serve_listen(const struct sopts *o, struct sthread *th, enum skind k)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr = o->addr, .sin_port = htons(o->port[k]) };
	struct epoll_event ev = { .events = EPOLLIN };
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	/* One listener per thread and port: the kernel spreads connections over the threads. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4096) != 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	th->lis[k].fd = fd;
	th->lis[k].kind = (uint8_t)k;
	th->lis[k].listener = 1;
	ev.data.ptr = &th->lis[k];
	if (epoll_ctl(th->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
		return -errno;
	return 0;
}

static int parse_ports(const char *arg, uint16_t *port)
{
	char buf[64];
	char *save = NULL, *tok;
	unsigned k = 0;

	if (strlen(arg) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", arg);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		uint64_t v;

		if (k == SK_NKINDS || parse_u64(tok, 1, 65535, &v) != 0)
			return -EINVAL;
		port[k++] = (uint16_t)v;
	}
	return k == SK_NKINDS ? 0 : -EINVAL;
}

static int serve_main(int argc, char **argv)
{
	enum { O_LISTEN = 256, O_PORTS, O_THREADS, O_BODY, O_MAXC, O_LIFETIME, O_HELP };
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "ports", required_argument, NULL, O_PORTS },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "body", required_argument, NULL, O_BODY },
		{ "max-conns", required_argument, NULL, O_MAXC },
		{ "lifetime", required_argument, NULL, O_LIFETIME },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct sopts o = { .port = { 9001, 9002, 9003, 9004 }, .threads = 2, .max_conns = DEFAULT_MAX_CONNS,
			   .body = DEFAULT_BODY, .lifetime = MAX_SECONDS };
	struct sthread *th = NULL;
	bool have_listen = false;
	uint64_t v, deadline;
	uint32_t started = 0;
	int c, err, memfd = -1, rc = 2;
	size_t hdr;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_LISTEN:
			if (inet_pton(AF_INET, optarg, &o.addr) != 1) {
				fprintf(stderr, "proxy_bench serve: --listen: an IPv4 address\n");
				return 2;
			}
			have_listen = true;
			break;
		case O_PORTS:
			if (parse_ports(optarg, o.port) != 0) {
				fprintf(stderr, "proxy_bench serve: --ports: SRC,PING,HTTP,HOLD\n");
				return 2;
			}
			break;
		case O_THREADS:
			if (parse_u64(optarg, 1, MAX_THREADS, &v) != 0) {
				fprintf(stderr, "proxy_bench serve: --threads: 1..%u\n", MAX_THREADS);
				return 2;
			}
			o.threads = (uint32_t)v;
			break;
		case O_BODY:
			if (parse_u64(optarg, 0, 1 << 20, &v) != 0) {
				fprintf(stderr, "proxy_bench serve: --body: 0..1048576\n");
				return 2;
			}
			o.body = (uint32_t)v;
			break;
		case O_MAXC:
			if (parse_u64(optarg, 1, 10000000, &v) != 0) {
				fprintf(stderr, "proxy_bench serve: --max-conns: 1..10000000\n");
				return 2;
			}
			o.max_conns = (uint32_t)v;
			break;
		case O_LIFETIME:
			if (parse_seconds(optarg, 1.0, &o.lifetime) != 0) {
				fprintf(stderr, "proxy_bench serve: --lifetime: 1..%.0f seconds\n", MAX_SECONDS);
				return 2;
			}
			break;
		case O_HELP:
			fputs(usage_text, stdout);
			return 0;
		default:
			fputs(usage_text, stderr);
			return 2;
		}
	}
	if (optind != argc || !have_listen) {
		fputs(usage_text, stderr);
		return 2;
	}
	raise_nofile();

	/* The one response every forward request gets: a fixed head and a body of --body bytes. */
	http_resp = malloc(256 + (size_t)o.body);
	if (!http_resp)
		goto out;
	hdr = (size_t)snprintf(http_resp, 256,
			       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %" PRIu32
			       "\r\n\r\n",
			       o.body);
	for (uint32_t i = 0; i < o.body; i++)
		http_resp[hdr + i] = i + 1 == o.body ? '\n' : (char)('a' + i % 26);
	http_resp_len = hdr + o.body;

	err = make_source_memfd(&memfd);
	if (err) {
		fprintf(stderr, "proxy_bench serve: memfd: %s\n", strerror(-err));
		goto out;
	}
	th = calloc(o.threads, sizeof(*th));
	if (!th)
		goto out;
	deadline = mono_ns() + (uint64_t)(o.lifetime * 1e9);
	for (uint32_t t = 0; t < o.threads; t++) {
		th[t].o = &o;
		th[t].memfd = memfd;
		th[t].deadline = deadline;
		for (int k = 0; k < SK_NKINDS; k++)
			th[t].lis[k].fd = -1;
		th[t].ep = epoll_create1(EPOLL_CLOEXEC);
		if (th[t].ep < 0) {
			fprintf(stderr, "proxy_bench serve: epoll: %s\n", strerror(errno));
			goto out;
		}
		for (int k = 0; k < SK_NKINDS; k++) {
			err = serve_listen(&o, &th[t], (enum skind)k);
			if (err) {
				fprintf(stderr, "proxy_bench serve: listening on port %u: %s\n", o.port[k], strerror(-err));
				goto out;
			}
		}
	}
	{
		char addr[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &o.addr, addr, sizeof(addr));
		fprintf(stderr,
			"proxy_bench serve: listening on %s ports %u (source) %u (ping) %u (http) %u (hold), %u threads\n",
			addr, o.port[0], o.port[1], o.port[2], o.port[3], o.threads);
	}
	for (; started < o.threads; started++) {
		err = pthread_create(&th[started].tid, NULL, serve_thread, &th[started]);
		if (err) {
			fprintf(stderr, "proxy_bench serve: pthread_create: %s\n", strerror(err));
			break;
		}
	}
	for (uint32_t t = 0; t < started; t++)
		pthread_join(th[t].tid, NULL);
	rc = started == o.threads ? 0 : 2;
out:
	/* Connections still open at the end go with the process. */
	if (th) {
		for (uint32_t t = 0; t < o.threads; t++) {
			for (int k = 0; k < SK_NKINDS; k++) {
				if (th[t].lis[k].fd >= 0)
					close(th[t].lis[k].fd);
			}
			if (th[t].ep > 0)
				close(th[t].ep);
		}
	}
	free(th);
	if (memfd >= 0)
		close(memfd);
	free(http_resp);
	return rc;
}

/* ---- client: options and result ------------------------------------------------------------------- */

enum cmode { M_BULK, M_SETUP, M_HTTP, M_IDLE };

struct copts {
	enum cmode mode;
	struct sockaddr_in proxy;
	char target[MAX_AUTH + 8];	     /* CONNECT authority, or the URL for http; for the result */
	char req[2 * MAX_AUTH + MAX_PATH_LEN + 256]; /* the CONNECT head, or the forward request */
	size_t req_len;
	bool tcp;
	bool up;
	bool copy;
	uint32_t conc;
	uint32_t threads;
	uint32_t count;
	uint32_t parallel;
	uint32_t timeout_ms;
	uint64_t bytes;
	uint64_t max_ops;
	double warmup;
	double duration;
	double hold;
	double max_seconds;
	const char *label;
	bool json;
};

/* Why an operation failed; counted separately so a refusing proxy does not pass for a slow one. */
enum fail { FAIL_OK, FAIL_CONN, FAIL_TIMEOUT, FAIL_STATUS, FAIL_PROTO, FAIL_NKINDS };

struct cstats {
	uint64_t started; /* measured operations started */
	uint64_t ok;	  /* measured operations completed */
	uint64_t fail[FAIL_NKINDS];
	uint64_t reconnects; /* http: connections opened after the first C */
	uint64_t retries;    /* http: a request resent because a kept-alive connection had just closed */
	uint64_t total_started;
	uint64_t total_ok;
	uint64_t total_failed; /* warm-up included: a run refused from the start shows here */
	int last_status; /* the last HTTP status that was not 2xx */
	int last_errno;	 /* the last connect or socket error */
};

static const char *const fail_name[FAIL_NKINDS] = { "ok", "conn", "timeout", "status", "proto" };

/* ---- client: response parsing ----------------------------------------------------------------------- */

enum ch_state { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER, CH_TRAILER_LF };

enum body_kind { B_NONE, B_LENGTH, B_CHUNKED, B_EOF };

struct resp {
	int status;
	uint8_t body;	  /* enum body_kind */
	uint8_t close;	  /* the proxy will close after this response */
	uint8_t ch;	  /* enum ch_state */
	uint8_t digits;	  /* chunk-size digits seen */
	uint32_t linelen; /* chunk extension or trailer line length so far */
	uint64_t left;	  /* body bytes (B_LENGTH) or chunk bytes (B_CHUNKED) still to come */
};

/*
 * Parses a response head of hlen bytes ending in CRLFCRLF. Returns 0, or -EINVAL for anything that is not an
 * HTTP/1.x response head.
 */
static int resp_head(const char *h, size_t hlen, struct resp *r)
{
	const char *end = h + hlen, *p;
	const char *eol = memchr(h, '\n', hlen);
	bool has_cl = false, chunked = false, keep_alive = false, close = false;
	uint64_t cl = 0;

	if (!eol || hlen < 12 || memcmp(h, "HTTP/1.", 7) != 0 || (h[7] != '0' && h[7] != '1') || h[8] != ' ' ||
	    h[9] < '1' || h[9] > '5' || h[10] < '0' || h[10] > '9' || h[11] < '0' || h[11] > '9')
		return -EINVAL;
	r->status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
	for (p = eol + 1; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *v;
		size_t vlen;

		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (header_is(p, n, "content-length", &v, &vlen)) {
			if (parse_u64_n(v, vlen, MAX_BODY, &cl) != 0)
				return -EINVAL;
			has_cl = true;
		} else if (header_is(p, n, "transfer-encoding", &v, &vlen)) {
			chunked = ci_contains(v, vlen, "chunked");
		} else if (header_is(p, n, "connection", &v, &vlen) ||
			   header_is(p, n, "proxy-connection", &v, &vlen)) {
			if (ci_contains(v, vlen, "close"))
				close = true;
			if (ci_contains(v, vlen, "keep-alive"))
				keep_alive = true;
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	r->close = close || (h[7] == '0' && !keep_alive);
	r->ch = CH_SIZE;
	r->digits = 0;
	r->linelen = 0;
	r->left = 0;
	if (r->status < 200 || r->status == 204 || r->status == 304) {
		r->body = B_NONE;
	} else if (chunked) {
		r->body = B_CHUNKED;
	} else if (has_cl) {
		r->body = cl ? B_LENGTH : B_NONE;
		r->left = cl;
	} else {
		r->body = B_EOF;
		r->close = 1;
	}
	return 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = ascii_lower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * Consumes body bytes [p, p+n). Returns 1 when the body is complete (*used says how much of the input it
 * took), 0 when it needs more, -EINVAL on a malformed chunked body.
 */
static int resp_body(struct resp *r, const char *p, size_t n, size_t *used)
{
	size_t i = 0;

	if (r->body == B_NONE) {
		*used = 0;
		return 1;
	}
	if (r->body == B_EOF) {
		*used = n;
		return 0;
	}
	if (r->body == B_LENGTH) {
		size_t take = r->left < n ? (size_t)r->left : n;

		r->left -= take;
		*used = take;
		return r->left == 0;
	}
	while (i < n) {
		int c = (unsigned char)p[i];

		switch (r->ch) {
		case CH_SIZE:
			i++;
			if (hexval(c) >= 0) {
				if (r->digits >= 10) /* a chunk of 2^40 bytes or more: not from this benchmark */
					return -EINVAL;
				r->left = r->left * 16 + (uint64_t)hexval(c);
				r->digits++;
			} else if (r->digits > 0 && (c == ';' || c == ' ' || c == '\t')) {
				r->ch = CH_EXT;
			} else if (r->digits > 0 && c == '\r') {
				r->ch = CH_SIZE_LF;
			} else {
				return -EINVAL;
			}
			break;
		case CH_EXT:
			i++;
			if (c == '\r')
				r->ch = CH_SIZE_LF;
			else if (++r->linelen > HEAD_MAX)
				return -EINVAL;
			break;
		case CH_SIZE_LF:
			i++;
			if (c != '\n')
				return -EINVAL;
			r->linelen = 0;
			r->ch = r->left ? CH_DATA : CH_TRAILER;
			break;
		case CH_DATA: {
			size_t take = r->left < n - i ? (size_t)r->left : n - i;

			i += take;
			r->left -= take;
			if (r->left == 0)
				r->ch = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
			i++;
			if (c != '\r')
				return -EINVAL;
			r->ch = CH_DATA_LF;
			break;
		case CH_DATA_LF:
			i++;
			if (c != '\n')
				return -EINVAL;
			r->ch = CH_SIZE;
			r->digits = 0;
			break;
		case CH_TRAILER:
			i++;
			if (c == '\r')
				r->ch = CH_TRAILER_LF;
			else if (++r->linelen > HEAD_MAX)
				return -EINVAL;
			break;
		default: /* CH_TRAILER_LF */
			i++;
			if (c != '\n')
				return -EINVAL;
			if (r->linelen == 0) {
				*used = i;
				return 1;
			}
			r->linelen = 0;
			r->ch = CH_TRAILER;
			break;
		}
	}
	*used = i;
	return 0;
}

/* The status of a CONNECT answer head in buf, or -EINVAL. */
static int connect_status(const char *buf, size_t hlen)
{
	struct resp r;

	if (resp_head(buf, hlen, &r) != 0)
		return -EINVAL;
	return r.status;
}

/* ---- client: the closed loops (setup, http) and idle tunnels -------------------------------------------- */

enum cstate { CS_IDLE, CS_CONNECTING, CS_HEAD, CS_PING, CS_EOF, CS_RESP, CS_BANNER, CS_HELD, CS_DONE };

struct cslot {
	int fd;
	uint32_t gen;	  /* bumped whenever fd changes: events of an earlier descriptor are ignored */
	uint8_t state;	  /* enum cstate */
	uint8_t measured; /* started inside the measured window */
	uint8_t reused;	  /* http: a response has already completed on this connection */
	uint8_t head_done;
	uint32_t have;	  /* bytes in buf */
	uint64_t t0;	  /* when the operation (tunnel, request) started */
	uint64_t retry_at; /* an idle slot after a failure starts again no sooner than this */
	struct resp r;
	char *buf;	  /* HEAD_MAX */
};

struct cworker {
	const struct copts *o;
	int ep;
	struct cslot *slots;
	uint32_t nslots;
	uint64_t t_measure, t_stop, t_hard;
	bool starting; /* new operations may start */
	uint64_t start_ended_ns, last_done_ns;
	uint64_t max_total;
	uint64_t outstanding; /* measured operations in progress */
	uint32_t *lat;	      /* nanoseconds of each measured, completed operation */
	uint64_t nlat, lat_cap, lat_max;
	uint64_t cpu_start_ns, cpu_end_ns;
	bool cpu_started, cpu_ended;
	struct cstats st;
	/* idle mode */
	uint32_t established, in_progress, dropped;
	pthread_t tid;
	int err;
};

static int latency_push(struct cworker *w, uint64_t ns)
{
	if (w->nlat == w->lat_cap) {
		uint64_t ncap = w->lat_cap ? w->lat_cap * 2 : 65536;
		uint32_t *nl;

		if (ncap > w->lat_max)
			ncap = w->lat_max;
		if (ncap <= w->nlat)
			return -ENOSPC; /* cannot happen: one entry per operation and max_total bounds them */
		nl = realloc(w->lat, ncap * sizeof(*nl));
		if (!nl)
			return -ENOMEM;
		w->lat = nl;
		w->lat_cap = ncap;
	}
	w->lat[w->nlat++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
	return 0;
}

static bool may_start(struct cworker *w, uint64_t now)
{
	if (!w->starting)
		return false;
	if (now >= w->t_stop || w->st.total_started >= w->max_total ||
	    (w->st.total_started >= FAIL_EARLY && w->st.total_ok == 0)) {
		w->starting = false;
		w->start_ended_ns = now < w->t_stop ? now : w->t_stop;
		return false;
	}
	return true;
}

static void slot_close(struct cslot *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->gen++;
	s->have = 0;
	s->head_done = 0;
	s->reused = 0;
}

static int slot_connect(struct cworker *w, uint32_t i)
{
	struct cslot *s = &w->slots[i];
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	set_nodelay(fd);
	if (connect(fd, (const struct sockaddr *)&w->o->proxy, sizeof(w->o->proxy)) != 0 && errno != EINPROGRESS) {
		int err = -errno;

		close(fd);
		return err;
	}
	s->fd = fd;
	s->gen++;
	ev.data.u64 = (uint64_t)i | (uint64_t)s->gen << 32;
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
		int err = -errno;

		slot_close(s);
		return err;
	}
	s->state = CS_CONNECTING;
	s->have = 0;
	return 0;
}

/*
 * Ends the operation in slot i. The connection is closed unless keep says it carries on (http keep-alive). A
 * slot that failed waits for the next scan before it starts again, so a refusing proxy cannot make it spin.
 */
static void op_end(struct cworker *w, uint32_t i, enum fail f, uint64_t now, bool keep)
{
	struct cslot *s = &w->slots[i];

	if (s->measured) {
		w->outstanding--;
		if (f == FAIL_OK) {
			w->st.ok++;
			if (latency_push(w, now - s->t0) != 0 && !w->err)
				w->err = -ENOMEM;
			if (now > w->last_done_ns)
				w->last_done_ns = now;
		} else {
			w->st.fail[f]++;
		}
	}
	if (f == FAIL_OK)
		w->st.total_ok++;
	else
		w->st.total_failed++;
	if (!keep)
		slot_close(s);
	s->state = CS_IDLE;
	s->retry_at = f == FAIL_OK ? 0 : now + SCAN_NS;
}

/* A failed operation; an idle tunnel that fails is not tried again. */
static void op_fail(struct cworker *w, uint32_t i, enum fail f, uint64_t now)
{
	struct cslot *s = &w->slots[i];

	if (w->o->mode == M_IDLE) {
		w->st.fail[f]++;
		w->in_progress--;
		slot_close(s);
		s->state = CS_DONE;
		return;
	}
	op_end(w, i, f, now, false);
}

/* Starts one operation in slot i: a tunnel (setup, idle) or a connection for requests (http). */
static void op_start(struct cworker *w, uint32_t i, uint64_t now)
{
	struct cslot *s = &w->slots[i];
	int err;

	s->t0 = now;
	s->measured = now >= w->t_measure && w->o->mode != M_IDLE;
	w->st.total_started++;
	if (s->measured) {
		w->st.started++;
		w->outstanding++;
	}
	err = slot_connect(w, i);
	if (err) {
		w->st.last_errno = -err;
		op_fail(w, i, FAIL_CONN, now);
	}
}

static int send_all(int fd, const char *p, size_t n)
{
	/* Requests are at most a few hundred bytes on a socket with nothing queued: short means trouble. */
	ssize_t r = send(fd, p, n, MSG_NOSIGNAL);

	if (r < 0)
		return -errno;
	return (size_t)r == n ? 0 : -EMSGSIZE;
}

/*
 * http: sends the request on slot i's connection. The latency runs from op_start for a request that needed a
 * new connection (connect included), from here for one on a kept-alive connection.
 */
static int http_send(struct cworker *w, uint32_t i)
{
	struct cslot *s = &w->slots[i];

	s->head_done = 0;
	s->have = 0;
	s->state = CS_RESP;
	return send_all(s->fd, w->o->req, w->o->req_len);
}

/* Feeds slot i's buffer to the http response parser; returns 1 when the response is complete, 0, or < 0. */
static int http_progress(struct cslot *s)
{
	size_t used;
	int r;

	for (;;) {
		if (!s->head_done) {
			char *e = memmem(s->buf, s->have, "\r\n\r\n", 4);
			size_t hlen;

			if (!e)
				return s->have == HEAD_MAX ? -EMSGSIZE : 0;
			hlen = (size_t)(e - s->buf) + 4;
			if (resp_head(s->buf, hlen, &s->r) != 0)
				return -EINVAL;
			memmove(s->buf, s->buf + hlen, s->have - hlen);
			s->have -= (uint32_t)hlen;
			if (s->r.status < 200)
				continue; /* 1xx: the real response follows */
			s->head_done = 1;
		}
		r = resp_body(&s->r, s->buf, s->have, &used);
		if (r < 0)
			return r;
		memmove(s->buf, s->buf + used, s->have - used);
		s->have -= (uint32_t)used;
		if (r == 1)
			return s->have ? -EPROTO : 1; /* bytes after the response: nothing was pipelined */
		return 0;
	}
}

/* After a complete response on slot i: the next request on the same connection, or a new connection. */
static void http_next(struct cworker *w, uint32_t i, uint64_t now)
{
	struct cslot *s = &w->slots[i];
	bool keep = !s->r.close;
	enum fail f = s->r.status >= 200 && s->r.status < 300 ? FAIL_OK : FAIL_STATUS;

	if (f == FAIL_STATUS)
		w->st.last_status = s->r.status;
	op_end(w, i, f, now, keep);
	if (keep)
		s->reused = 1;
	if (!may_start(w, now) || f != FAIL_OK) {
		if (keep)
			slot_close(s);
		return;
	}
	if (!keep) {
		w->st.reconnects++;
		op_start(w, i, now);
		return;
	}
	w->st.total_started++;
	s->t0 = now;
	s->measured = now >= w->t_measure;
	if (s->measured) {
		w->st.started++;
		w->outstanding++;
	}
	if (http_send(w, i) != 0) {
		w->st.last_errno = errno;
		op_end(w, i, FAIL_CONN, now, false);
	}
}

static void slot_event(struct cworker *w, uint32_t i, uint32_t events, uint64_t now)
{
	const struct copts *o = w->o;
	struct cslot *s = &w->slots[i];

	if (s->state == CS_CONNECTING) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		if (events & (EPOLLERR | EPOLLHUP)) {
			(void)getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			w->st.last_errno = soerr ? soerr : ECONNRESET;
			goto fail_conn;
		}
		if (!(events & EPOLLOUT))
			return;
		if (o->mode == M_HTTP) {
			if (http_send(w, i) != 0)
				goto fail_errno;
		} else if (!o->tcp) {
			if (send_all(s->fd, o->req, o->req_len) != 0)
				goto fail_errno;
			s->state = CS_HEAD;
		} else if (o->mode == M_SETUP) {
			if (send_all(s->fd, "0123456789abcdef", PING_LEN) != 0)
				goto fail_errno;
			s->state = CS_PING;
		} else {
			s->state = CS_BANNER;
		}
	}
	if (s->state == CS_HELD) {
		/* An idle tunnel that became readable: the proxy (or the upstream) closed or reset it. */
		char b[64];
		ssize_t n = read(s->fd, b, sizeof(b));

		if (n == 0 || (n < 0 && errno != EAGAIN)) {
			w->dropped++;
			slot_close(s);
			s->state = CS_DONE;
		}
		return;
	}
	for (;;) {
		ssize_t n;

		if (s->have == HEAD_MAX) {
			w->st.last_errno = EMSGSIZE;
			goto fail_proto;
		}
		n = read(s->fd, s->buf + s->have, HEAD_MAX - s->have);
		if (n < 0) {
			if (errno == EAGAIN)
				return;
			goto fail_errno;
		}
		if (n == 0) {
			if (s->state == CS_EOF) {
				op_end(w, i, FAIL_OK, now, false);
				if (may_start(w, now))
					op_start(w, i, now);
				return;
			}
			if (s->state == CS_RESP && s->head_done && s->r.body == B_EOF) {
				http_next(w, i, now);
				return;
			}
			if (s->state == CS_RESP && s->reused && s->have == 0 && !s->head_done) {
				/*
				 * The proxy closed a kept-alive connection just as this request went out: the
				 * usual race of persistent connections. The request goes again on a new one.
				 */
				w->st.retries++;
				slot_close(s);
				if (slot_connect(w, i) != 0)
					goto fail_conn;
				w->st.reconnects++;
				return;
			}
			if (s->state == CS_HEAD || s->state == CS_RESP) {
				/* A refusal without a complete head, or a close mid-response. */
				w->st.last_errno = ECONNRESET;
				goto fail_conn;
			}
			w->st.last_errno = ECONNRESET;
			goto fail_conn;
		}
		s->have += (uint32_t)n;
		switch (s->state) {
		case CS_HEAD: {
			char *e = memmem(s->buf, s->have, "\r\n\r\n", 4);
			size_t hlen;
			int st;

			if (!e)
				continue;
			hlen = (size_t)(e - s->buf) + 4;
			st = connect_status(s->buf, hlen);
			if (st < 0)
				goto fail_proto;
			if (st < 200 || st > 299) {
				w->st.last_status = st;
				goto fail_status;
			}
			memmove(s->buf, s->buf + hlen, s->have - hlen);
			s->have -= (uint32_t)hlen;
			if (o->mode == M_SETUP) {
				if (s->have > 0)
					goto fail_proto; /* bytes before the ping went out */
				if (send_all(s->fd, "0123456789abcdef", PING_LEN) != 0)
					goto fail_errno;
				s->state = CS_PING;
				continue;
			}
			s->state = CS_BANNER;
			if (s->have == 0)
				continue;
			/* The upstream's byte came with the head. */
		}
			__attribute__((fallthrough));
		case CS_BANNER:
			if (s->have != 1 || s->buf[0] != 'H')
				goto fail_proto;
			s->have = 0;
			s->state = CS_HELD;
			w->established++;
			w->in_progress--;
			return;
		case CS_PING:
			if (s->have < PING_LEN)
				continue;
			if (s->have > PING_LEN || memcmp(s->buf, "0123456789abcdef", PING_LEN) != 0)
				goto fail_proto;
			s->have = 0;
			s->state = CS_EOF;
			continue;
		case CS_RESP: {
			int r = http_progress(s);

			if (r < 0)
				goto fail_proto;
			if (r == 1) {
				http_next(w, i, now);
				return;
			}
			continue;
		}
		default: /* CS_EOF: nothing may follow the echo */
			goto fail_proto;
		}
	}

fail_errno:
	w->st.last_errno = errno;
fail_conn:
	op_fail(w, i, FAIL_CONN, now);
	return;
fail_status:
	op_fail(w, i, FAIL_STATUS, now);
	return;
fail_proto:
	op_fail(w, i, FAIL_PROTO, now);
}

/* Starts failed slots again, and fails operations that have run past --timeout-ms. */
static void scan_slots(struct cworker *w, uint64_t now)
{
	uint64_t tmo = (uint64_t)w->o->timeout_ms * 1000000ull;

	for (uint32_t i = 0; i < w->nslots; i++) {
		struct cslot *s = &w->slots[i];

		switch (s->state) {
		case CS_IDLE:
			if (w->o->mode != M_IDLE && s->retry_at <= now && may_start(w, now))
				op_start(w, i, now);
			break;
		case CS_HELD:
		case CS_DONE:
			break;
		default:
			if (now - s->t0 >= tmo) {
				w->st.last_errno = ETIMEDOUT;
				op_fail(w, i, FAIL_TIMEOUT, now);
			}
			break;
		}
	}
}

static void dispatch(struct cworker *w, const struct epoll_event *ev)
{
	uint32_t i = (uint32_t)ev->data.u64;
	uint32_t gen = (uint32_t)(ev->data.u64 >> 32);

	if (i < w->nslots && w->slots[i].gen == gen && w->slots[i].fd >= 0)
		slot_event(w, i, ev->events, mono_ns());
}

/*
 * The closed loop of setup and http: every slot keeps one operation going and starts the next the moment one
 * ends. It stops when the measured window is over and every measured operation has ended, and in any case at
 * t_hard (window end + one timeout), or after an iteration count no healthy run can reach.
 */
static void *worker_run(void *arg)
{
	struct cworker *w = arg;
	struct epoll_event evs[EVENTS];
	uint64_t start = mono_ns(), next_scan = start + SCAN_NS;
	uint64_t max_iter = w->max_total * 8 + (w->t_hard > start ? (w->t_hard - start) / 10000 : 0) + 1000;

	for (uint32_t i = 0; i < w->nslots; i++) {
		if (may_start(w, start))
			op_start(w, i, start);
	}
	for (uint64_t iter = 0; iter < max_iter && !w->err; iter++) {
		uint64_t now = mono_ns(), wake;
		int n, timeout_ms;

		if (!w->cpu_started && now >= w->t_measure) {
			w->cpu_start_ns = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
			w->cpu_started = true;
		}
		if (!w->cpu_ended && now >= w->t_stop) {
			w->cpu_end_ns = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
			w->cpu_ended = true;
		}
		if (now >= w->t_hard)
			break;
		if (!may_start(w, now) && w->outstanding == 0)
			break;
		if (now >= next_scan) {
			scan_slots(w, now);
			next_scan = now + SCAN_NS;
		}
		wake = next_scan;
		if (!w->cpu_started && w->t_measure < wake)
			wake = w->t_measure;
		if (w->starting && w->t_stop < wake)
			wake = w->t_stop;
		timeout_ms = wake > now ? (int)((wake - now + 999999) / 1000000) : 0;
		n = epoll_wait(w->ep, evs, EVENTS, timeout_ms);
		for (int k = 0; k < n; k++)
			dispatch(w, &evs[k]);
	}
	if (!w->cpu_ended) {
		w->cpu_end_ns = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
		w->cpu_ended = true;
	}
	if (!w->cpu_started)
		w->cpu_start_ns = w->cpu_end_ns;
	if (w->starting) {
		/* Left by a hard bound with starting still on: the window ended now. */
		w->start_ended_ns = mono_ns();
		if (w->start_ended_ns > w->t_stop)
			w->start_ended_ns = w->t_stop;
	}
	/* Measured operations still going at the hard bound never ended: they time out. */
	w->st.fail[FAIL_TIMEOUT] += w->outstanding;
	w->outstanding = 0;
	return NULL;
}

static void worker_free(struct cworker *w)
{
	if (w->slots) {
		for (uint32_t i = 0; i < w->nslots; i++) {
			if (w->slots[i].fd >= 0)
				close(w->slots[i].fd);
			free(w->slots[i].buf);
		}
	}
	if (w->ep >= 0)
		close(w->ep);
	free(w->slots);
	free(w->lat);
}

static int worker_init(struct cworker *w, uint32_t nslots, uint64_t max_total)
{
	w->nslots = nslots;
	w->max_total = max_total;
	w->lat_max = max_total;
	w->starting = true;
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	if (w->ep < 0)
		return -errno;
	w->slots = calloc(nslots, sizeof(*w->slots));
	if (!w->slots)
		return -ENOMEM;
	for (uint32_t i = 0; i < nslots; i++)
		w->slots[i].fd = -1;
	for (uint32_t i = 0; i < nslots; i++) {
		/* Idle tunnels read at most one byte after the head: a small buffer keeps 2,000 of them cheap. */
		w->slots[i].buf = malloc(HEAD_MAX);
		if (!w->slots[i].buf)
			return -ENOMEM;
	}
	return 0;
}

static void print_common(FILE *out, const struct copts *o, const char *label, const char *mode)
{
	char addr[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &o->proxy.sin_addr, addr, sizeof(addr));
	fprintf(out, "{\"label\":");
	json_string(out, label);
	fprintf(out, ",\"mode\":\"%s\",\"proxy\":\"%s:%u\",\"target\":", mode, addr, ntohs(o->proxy.sin_port));
	json_string(out, o->target);
	fprintf(out, ",\"tcp\":%s", o->tcp ? "true" : "false");
}

static const char *errno_name(int e)
{
	return e ? strerror(e) : "";
}

/* setup and http: runs the threads, merges their figures, prints the result. */
static int loop_main(const struct copts *o, const char *label)
{
	struct cworker *ws = calloc(o->threads, sizeof(*ws));
	pthread_t *tids = calloc(o->threads, sizeof(*tids));
	struct cstats tot = { 0 };
	uint32_t *all = NULL;
	uint64_t nall = 0, t0, end_ns = 0, cpu = 0, failed = 0;
	uint32_t started = 0;
	double elapsed, rate, cpu_pct;
	bool ok;
	int err, rc = 2;

	if (!ws || !tids) {
		fprintf(stderr, "proxy_bench: out of memory\n");
		goto out;
	}
	for (uint32_t t = 0; t < o->threads; t++) {
		ws[t].ep = -1;
		ws[t].o = o;
	}
	for (uint32_t t = 0; t < o->threads; t++) {
		uint32_t slots = o->conc / o->threads + (t < o->conc % o->threads ? 1 : 0);
		uint64_t maxo = o->max_ops / o->threads + (t < o->max_ops % o->threads ? 1 : 0);

		err = worker_init(&ws[t], slots, maxo);
		if (err) {
			fprintf(stderr, "proxy_bench: setting up: %s\n", strerror(-err));
			goto out;
		}
	}
	t0 = mono_ns();
	for (uint32_t t = 0; t < o->threads; t++) {
		ws[t].t_measure = t0 + (uint64_t)(o->warmup * 1e9);
		ws[t].t_stop = ws[t].t_measure + (uint64_t)(o->duration * 1e9);
		ws[t].t_hard = ws[t].t_stop + (uint64_t)o->timeout_ms * 1000000ull;
	}
	if (o->threads == 1) {
		worker_run(&ws[0]);
		started = 1;
	} else {
		for (; started < o->threads; started++) {
			err = pthread_create(&tids[started], NULL, worker_run, &ws[started]);
			if (err) {
				fprintf(stderr, "proxy_bench: pthread_create: %s\n", strerror(err));
				break;
			}
		}
		for (uint32_t t = 0; t < started; t++)
			pthread_join(tids[t], NULL);
		if (started < o->threads)
			goto out;
	}
	for (uint32_t t = 0; t < o->threads; t++) {
		struct cworker *w = &ws[t];
		uint64_t e = w->start_ended_ns > w->last_done_ns ? w->start_ended_ns : w->last_done_ns;

		if (w->err) {
			fprintf(stderr, "proxy_bench: %s\n", strerror(-w->err));
			goto out;
		}
		tot.started += w->st.started;
		tot.ok += w->st.ok;
		for (int f = 0; f < FAIL_NKINDS; f++)
			tot.fail[f] += w->st.fail[f];
		tot.reconnects += w->st.reconnects;
		tot.retries += w->st.retries;
		tot.total_started += w->st.total_started;
		tot.total_failed += w->st.total_failed;
		if (w->st.last_status)
			tot.last_status = w->st.last_status;
		if (w->st.last_errno)
			tot.last_errno = w->st.last_errno;
		nall += w->nlat;
		if (e > end_ns)
			end_ns = e;
		cpu += w->cpu_end_ns - w->cpu_start_ns;
	}
	for (int f = 1; f < FAIL_NKINDS; f++)
		failed += tot.fail[f];
	all = malloc((nall ? nall : 1) * sizeof(*all));
	if (!all) {
		fprintf(stderr, "proxy_bench: out of memory\n");
		goto out;
	}
	nall = 0;
	for (uint32_t t = 0; t < o->threads; t++) {
		if (ws[t].nlat == 0)
			continue; /* lat is NULL then */
		memcpy(all + nall, ws[t].lat, ws[t].nlat * sizeof(*all));
		nall += ws[t].nlat;
	}
	qsort(all, nall, sizeof(*all), cmp_u32);
	elapsed = end_ns > ws[0].t_measure ? (double)(end_ns - ws[0].t_measure) / 1e9 : 0.0;
	rate = elapsed > 0 ? (double)tot.ok / elapsed : 0.0;
	cpu_pct = elapsed > 0 ? (double)cpu / 1e9 / elapsed * 100.0 : 0.0;
	/* A proxy that refuses or drops operations must not pass for a fast one. */
	ok = tot.ok > 0 && failed * 100 <= tot.started;

	if (o->json) {
		print_common(stdout, o, label, o->mode == M_SETUP ? "setup" : "http");
		printf(",\"concurrency\":%" PRIu32 ",\"threads\":%" PRIu32 ",\"warmup_s\":%.3f,\"duration_s\":%.3f"
		       ",\"elapsed_s\":%.6f,\"started\":%" PRIu64 ",\"completed\":%" PRIu64 ",\"failed\":%" PRIu64,
		       o->conc, o->threads, o->warmup, o->duration, elapsed, tot.started, tot.ok, failed);
		for (int f = 1; f < FAIL_NKINDS; f++)
			printf(",\"fail_%s\":%" PRIu64, fail_name[f], tot.fail[f]);
		printf(",\"last_status\":%d,\"last_error\":", tot.last_status);
		json_string(stdout, errno_name(tot.last_errno));
		printf(",\"reconnects\":%" PRIu64 ",\"retries\":%" PRIu64 ",\"total_started\":%" PRIu64
		       ",\"total_failed\":%" PRIu64 ",\"rate\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f"
		       ",\"gen_cpu_pct\":%.1f,\"ok\":%s}\n",
		       tot.reconnects, tot.retries, tot.total_started, tot.total_failed, rate, percentile_us(all, nall, 50.0),
		       percentile_us(all, nall, 99.0), percentile_us(all, nall, 99.9),
		       nall ? all[nall - 1] / 1000.0 : 0.0, cpu_pct, ok ? "true" : "false");
	} else {
		printf("%s %s concurrency=%" PRIu32 " started=%" PRIu64 " completed=%" PRIu64 " failed=%" PRIu64
		       " (conn %" PRIu64 " timeout %" PRIu64 " status %" PRIu64 " proto %" PRIu64
		       ") last_status=%d last_error=%s reconnects=%" PRIu64 " rate=%.0f/s p50_us=%.1f"
		       " p99_us=%.1f p999_us=%.1f elapsed_s=%.3f gen_cpu=%.0f%%%s\n",
		       label, o->mode == M_SETUP ? "setup" : "http", o->conc, tot.started, tot.ok, failed,
		       tot.fail[FAIL_CONN], tot.fail[FAIL_TIMEOUT], tot.fail[FAIL_STATUS], tot.fail[FAIL_PROTO], tot.last_status,
		       tot.last_errno ? strerror(tot.last_errno) : "-", tot.reconnects, rate,
		       percentile_us(all, nall, 50.0), percentile_us(all, nall, 99.0), percentile_us(all, nall, 99.9),
		       elapsed, cpu_pct, ok ? "" : " FAILED");
	}
	fflush(stdout);
	rc = ok ? 0 : 1;
out:
	if (ws) {
		for (uint32_t t = 0; t < o->threads; t++)
			worker_free(&ws[t]);
	}
	free(ws);
	free(tids);
	free(all);
	return rc;
}

/* idle: opens the tunnels --parallel at a time, reports, holds them, reports again. */
static int idle_main(const struct copts *o, const char *label)
{
	struct cworker w = { .o = o, .ep = -1 };
	struct epoll_event evs[EVENTS];
	uint64_t start, deadline, ready_at, hold_end, failed = 0;
	uint32_t next = 0;
	bool ok;
	int err, rc = 2;

	err = worker_init(&w, o->count, o->count);
	if (err) {
		fprintf(stderr, "proxy_bench: setting up: %s\n", strerror(-err));
		goto out;
	}
	start = mono_ns();
	deadline = start + (uint64_t)(o->max_seconds * 1e9);
	for (;;) {
		uint64_t now = mono_ns();
		int n;

		failed = 0;
		for (int f = 1; f < FAIL_NKINDS; f++)
			failed += w.st.fail[f];
		if (w.established + failed >= o->count || now >= deadline)
			break;
		while (w.in_progress < o->parallel && next < o->count) {
			w.in_progress++;
			op_start(&w, next++, now);
		}
		n = epoll_wait(w.ep, evs, EVENTS, 10);
		for (int k = 0; k < n; k++)
			dispatch(&w, &evs[k]);
		scan_slots(&w, mono_ns());
	}
	ready_at = mono_ns();
	if (o->json) {
		print_common(stdout, o, label, "idle");
		printf(",\"phase\":\"ready\",\"count\":%" PRIu32 ",\"established\":%" PRIu32 ",\"failed\":%" PRIu64,
		       o->count, w.established, failed);
		for (int f = 1; f < FAIL_NKINDS; f++)
			printf(",\"fail_%s\":%" PRIu64, fail_name[f], w.st.fail[f]);
		printf(",\"last_status\":%d,\"last_error\":", w.st.last_status);
		json_string(stdout, errno_name(w.st.last_errno));
		printf(",\"setup_s\":%.3f}\n", (double)(ready_at - start) / 1e9);
	} else {
		printf("%s idle ready: established=%" PRIu32 " of %" PRIu32 " failed=%" PRIu64
		       " last_status=%d last_error=%s setup_s=%.3f\n",
		       label, w.established, o->count, failed, w.st.last_status,
		       w.st.last_errno ? strerror(w.st.last_errno) : "-", (double)(ready_at - start) / 1e9);
	}
	fflush(stdout);

	/* Hold: an idle tunnel gets an event only when the proxy or the upstream ends it. */
	hold_end = ready_at + (uint64_t)(o->hold * 1e9);
	for (;;) {
		uint64_t now = mono_ns();
		int n;

		if (now >= hold_end)
			break;
		n = epoll_wait(w.ep, evs, EVENTS, (int)((hold_end - now + 999999) / 1000000));
		for (int k = 0; k < n; k++)
			dispatch(&w, &evs[k]);
	}
	ok = (uint64_t)failed * 100 <= o->count && (uint64_t)w.dropped * 100 <= o->count && w.established > 0;
	if (o->json) {
		print_common(stdout, o, label, "idle");
		printf(",\"phase\":\"done\",\"count\":%" PRIu32 ",\"established\":%" PRIu32 ",\"failed\":%" PRIu64
		       ",\"dropped\":%" PRIu32 ",\"hold_s\":%.3f,\"ok\":%s}\n",
		       o->count, w.established, failed, w.dropped, o->hold, ok ? "true" : "false");
	} else {
		printf("%s idle done: established=%" PRIu32 " dropped=%" PRIu32 "%s\n", label, w.established,
		       w.dropped, ok ? "" : " FAILED");
	}
	fflush(stdout);
	rc = ok ? 0 : 1;
out:
	worker_free(&w);
	return rc;
}

/* bulk: one tunnel, blocking I/O with timeouts; the figure is bytes over the time from request to last byte. */
static int bulk_main(const struct copts *o, const char *label)
{
	struct timeval tv = { .tv_sec = o->timeout_ms / 1000, .tv_usec = (o->timeout_ms % 1000) * 1000 };
	char line[64], *buf = NULL;
	const char *why = NULL;
	uint64_t t0 = 0, t1 = 0, tfirst = 0, c0 = 0, c1 = 0, done = 0, hard;
	int fd, memfd = -1, rc = 1, e = 0;
	size_t have = 0;

	buf = malloc(DISCARD_BUF);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!buf || fd < 0) {
		fprintf(stderr, "proxy_bench: setting up: %s\n", strerror(buf ? errno : ENOMEM));
		free(buf);
		if (fd >= 0)
			close(fd);
		return 2;
	}
	hard = mono_ns() + (uint64_t)(o->max_seconds * 1e9);
	/* A stall of --timeout-ms in any one call fails the run, and so does --max-seconds in all. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
		why = "setsockopt";
		e = errno;
		goto report;
	}
	if (connect(fd, (const struct sockaddr *)&o->proxy, sizeof(o->proxy)) != 0) {
		why = "connect";
		e = errno;
		goto report;
	}
	if (!o->tcp) {
		char *end = NULL;
		int st;

		if (send_all(fd, o->req, o->req_len) != 0) {
			why = "sending CONNECT";
			e = errno;
			goto report;
		}
		while (!end) {
			ssize_t n;

			if (have == HEAD_MAX) {
				why = "CONNECT answer head too long";
				goto report;
			}
			n = recv(fd, buf + have, HEAD_MAX - have, 0);
			if (n <= 0) {
				why = "reading the CONNECT answer";
				e = n < 0 ? errno : ECONNRESET;
				goto report;
			}
			have += (size_t)n;
			end = memmem(buf, have, "\r\n\r\n", 4);
		}
		st = connect_status(buf, (size_t)(end - buf) + 4);
		if (st < 200 || st > 299 || (size_t)(end - buf) + 4 != have) {
			snprintf(line, sizeof(line), "CONNECT answered %d", st);
			why = line;
			goto report;
		}
	}
	snprintf(line, sizeof(line), "%s %" PRIu64 "\n", o->up ? "up" : "down", o->bytes);
	if (o->up) {
		int err = make_source_memfd(&memfd);

		if (err) {
			why = "memfd";
			e = -err;
			goto report;
		}
	}
	c0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
	t0 = mono_ns();
	if (send_all(fd, line, strlen(line)) != 0) {
		why = "sending the request line";
		e = errno;
		goto report;
	}
	if (!o->up) {
		while (done < o->bytes) {
			size_t want = o->bytes - done > DISCARD_BUF ? DISCARD_BUF : (size_t)(o->bytes - done);
			/* MSG_TRUNC on TCP drops the bytes in the kernel: the sink leaves the CPU to the proxy. */
			ssize_t n = recv(fd, buf, want, o->copy ? 0 : MSG_TRUNC);

			if (n <= 0) {
				if (n < 0 && errno == EINTR)
					continue;
				why = "receiving";
				e = n < 0 ? errno : ECONNRESET;
				goto report;
			}
			if (done == 0)
				tfirst = mono_ns();
			done += (uint64_t)n;
			if (mono_ns() > hard) {
				why = "--max-seconds";
				goto report;
			}
		}
		t1 = mono_ns();
		c1 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
		if (recv(fd, buf, 1, 0) != 0) {
			why = "no end of stream after the last byte";
			goto report;
		}
	} else {
		off_t off = 0;
		ssize_t n;

		while (done < o->bytes) {
			size_t want = SRC_CHUNK - (size_t)off;

			if (want > o->bytes - done)
				want = (size_t)(o->bytes - done);
			n = sendfile(fd, memfd, &off, want);
			if (n <= 0) {
				if (n < 0 && errno == EINTR)
					continue;
				why = "sending";
				e = n < 0 ? errno : EPIPE;
				goto report;
			}
			if (done == 0)
				tfirst = mono_ns();
			done += (uint64_t)n;
			if (off >= (off_t)SRC_CHUNK)
				off = 0;
			if (mono_ns() > hard) {
				why = "--max-seconds";
				goto report;
			}
		}
		have = 0;
		while (have < 3) {
			n = recv(fd, buf + have, 3 - have, 0);
			if (n <= 0) {
				why = "waiting for the upstream's receipt";
				e = n < 0 ? errno : ECONNRESET;
				goto report;
			}
			have += (size_t)n;
		}
		t1 = mono_ns();
		c1 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
		if (memcmp(buf, "ok\n", 3) != 0) {
			why = "the upstream's receipt is wrong";
			goto report;
		}
	}
	rc = 0;
report:
	{
		double secs = t1 > t0 ? (double)(t1 - t0) / 1e9 : 0.0;
		double mbs = rc == 0 && secs > 0 ? (double)o->bytes / secs / 1e6 : 0.0;
		double cpu = rc == 0 && secs > 0 ? (double)(c1 - c0) / 1e9 / secs * 100.0 : 0.0;
		double ttfb = tfirst > t0 && t0 ? (double)(tfirst - t0) / 1e3 : 0.0;
		char err[160];

		snprintf(err, sizeof(err), "%s%s%s", why ? why : "", e ? ": " : "", e ? strerror(e) : "");
		if (o->json) {
			print_common(stdout, o, label, "bulk");
			printf(",\"direction\":\"%s\",\"bytes\":%" PRIu64 ",\"moved\":%" PRIu64
			       ",\"seconds\":%.6f,\"mb_s\":%.1f,\"ttfb_us\":%.1f,\"gen_cpu_pct\":%.1f,\"error\":",
			       o->up ? "up" : "down", o->bytes, done, secs, mbs, ttfb, cpu);
			json_string(stdout, err);
			printf(",\"ok\":%s}\n", rc == 0 ? "true" : "false");
		} else if (rc == 0) {
			printf("%s bulk %s bytes=%" PRIu64 " seconds=%.3f MB/s=%.1f ttfb_us=%.1f gen_cpu=%.0f%%\n", label,
			       o->up ? "up" : "down", o->bytes, secs, mbs, ttfb, cpu);
		} else {
			printf("%s bulk %s FAILED after %" PRIu64 " bytes: %s\n", label, o->up ? "up" : "down", done, err);
		}
		fflush(stdout);
	}
	close(fd);
	if (memfd >= 0)
		close(memfd);
	free(buf);
	return rc;
}

/* Characters allowed in a CONNECT authority or a URL taken from the command line: no space, CR, LF. */
static bool plain_text(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return false;
	}
	return true;
}

static int client_main(enum cmode mode, int argc, char **argv)
{
	enum {
		O_PROXY = 256,
		O_CONNECT,
		O_TCP,
		O_URL,
		O_BYTES,
		O_DIRECTION,
		O_COPY,
		O_CONC,
		O_THREADS,
		O_COUNT,
		O_PARALLEL,
		O_HOLD,
		O_WARMUP,
		O_DURATION,
		O_MAXOPS,
		O_TIMEOUT,
		O_MAXSEC,
		O_LABEL,
		O_JSON,
		O_HELP
	};
	static const struct option longopts[] = {
		{ "proxy", required_argument, NULL, O_PROXY },
		{ "connect", required_argument, NULL, O_CONNECT },
		{ "tcp", no_argument, NULL, O_TCP },
		{ "url", required_argument, NULL, O_URL },
		{ "bytes", required_argument, NULL, O_BYTES },
		{ "direction", required_argument, NULL, O_DIRECTION },
		{ "copy", no_argument, NULL, O_COPY },
		{ "concurrency", required_argument, NULL, O_CONC },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "count", required_argument, NULL, O_COUNT },
		{ "parallel", required_argument, NULL, O_PARALLEL },
		{ "hold", required_argument, NULL, O_HOLD },
		{ "warmup", required_argument, NULL, O_WARMUP },
		{ "duration", required_argument, NULL, O_DURATION },
		{ "max-ops", required_argument, NULL, O_MAXOPS },
		{ "timeout-ms", required_argument, NULL, O_TIMEOUT },
		{ "max-seconds", required_argument, NULL, O_MAXSEC },
		{ "label", required_argument, NULL, O_LABEL },
		{ "json", no_argument, NULL, O_JSON },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	static struct copts o; /* large (the prebuilt request): not on the stack */
	const char *connect_to = NULL, *url = NULL;
	char label[MAX_LABEL + 1];
	bool have_proxy = false, have_threads = false;
	uint64_t v;
	int c;

	memset(&o, 0, sizeof(o));
	o.mode = mode;
	o.conc = 1;
	o.threads = 1;
	o.count = 2000;
	o.parallel = 64;
	o.hold = 5.0;
	o.bytes = UINT64_C(1) << 30;
	o.max_ops = 20000000;
	o.timeout_ms = 5000;
	o.warmup = 1.0;
	o.duration = 5.0;
	o.max_seconds = 300.0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_PROXY:
			if (parse_addr_port(optarg, &o.proxy) != 0) {
				fprintf(stderr, "proxy_bench: --proxy: IPv4ADDR:PORT\n");
				return 2;
			}
			have_proxy = true;
			break;
		case O_CONNECT:
			connect_to = optarg;
			break;
		case O_TCP:
			o.tcp = true;
			break;
		case O_URL:
			url = optarg;
			break;
		case O_BYTES:
			if (parse_u64(optarg, 1, MAX_BYTES, &o.bytes) != 0) {
				fprintf(stderr, "proxy_bench: --bytes: 1..%" PRIu64 "\n", MAX_BYTES);
				return 2;
			}
			break;
		case O_DIRECTION:
			if (strcmp(optarg, "down") == 0) {
				o.up = false;
			} else if (strcmp(optarg, "up") == 0) {
				o.up = true;
			} else {
				fprintf(stderr, "proxy_bench: --direction: down or up\n");
				return 2;
			}
			break;
		case O_COPY:
			o.copy = true;
			break;
		case O_CONC:
		case O_COUNT:
		case O_PARALLEL:
			if (parse_u64(optarg, 1, MAX_CONC, &v) != 0) {
				fprintf(stderr, "proxy_bench: --%s: 1..%u\n",
					c == O_CONC ? "concurrency" : c == O_COUNT ? "count" : "parallel", MAX_CONC);
				return 2;
			}
			if (c == O_CONC)
				o.conc = (uint32_t)v;
			else if (c == O_COUNT)
				o.count = (uint32_t)v;
			else
				o.parallel = (uint32_t)v;
			break;
		case O_THREADS:
			if (parse_u64(optarg, 1, MAX_THREADS, &v) != 0) {
				fprintf(stderr, "proxy_bench: --threads: 1..%u\n", MAX_THREADS);
				return 2;
			}
			o.threads = (uint32_t)v;
			have_threads = true;
			break;
		case O_HOLD:
		case O_WARMUP:
			if (parse_seconds(optarg, 0.0, c == O_HOLD ? &o.hold : &o.warmup) != 0) {
				fprintf(stderr, "proxy_bench: --%s: 0..%.0f seconds\n", c == O_HOLD ? "hold" : "warmup",
					MAX_SECONDS);
				return 2;
			}
			break;
		case O_DURATION:
		case O_MAXSEC:
			if (parse_seconds(optarg, 0.001, c == O_DURATION ? &o.duration : &o.max_seconds) != 0) {
				fprintf(stderr, "proxy_bench: --%s: 0.001..%.0f seconds\n",
					c == O_DURATION ? "duration" : "max-seconds", MAX_SECONDS);
				return 2;
			}
			break;
		case O_MAXOPS:
			if (parse_u64(optarg, 1, MAX_OPS_CAP, &o.max_ops) != 0) {
				fprintf(stderr, "proxy_bench: --max-ops: 1..%llu\n", MAX_OPS_CAP);
				return 2;
			}
			break;
		case O_TIMEOUT:
			if (parse_u64(optarg, 10, 60000, &v) != 0) {
				fprintf(stderr, "proxy_bench: --timeout-ms: 10..60000\n");
				return 2;
			}
			o.timeout_ms = (uint32_t)v;
			break;
		case O_LABEL:
			if (strlen(optarg) > MAX_LABEL) {
				fprintf(stderr, "proxy_bench: --label: at most %u bytes\n", MAX_LABEL);
				return 2;
			}
			o.label = optarg;
			break;
		case O_JSON:
			o.json = true;
			break;
		case O_HELP:
			fputs(usage_text, stdout);
			return 0;
		default:
			fputs(usage_text, stderr);
			return 2;
		}
	}
	if (optind != argc || !have_proxy) {
		fputs(usage_text, stderr);
		return 2;
	}
	if (mode == M_HTTP) {
		const char *auth, *slash;
		size_t alen;

		if (!url || strncmp(url, "http://", 7) != 0 || o.tcp || connect_to) {
			fprintf(stderr, "proxy_bench http: needs --url http://HOST[:PORT]/PATH (and no --connect, --tcp)\n");
			return 2;
		}
		auth = url + 7;
		slash = strchr(auth, '/');
		alen = slash ? (size_t)(slash - auth) : strlen(auth);
		if (alen == 0 || alen > MAX_AUTH || strlen(url) > MAX_AUTH + MAX_PATH_LEN ||
		    !plain_text(url, strlen(url))) {
			fprintf(stderr, "proxy_bench http: --url: bad or too long\n");
			return 2;
		}
		snprintf(o.target, sizeof(o.target), "%.*s", (int)alen, auth);
		o.req_len = (size_t)snprintf(o.req, sizeof(o.req),
					     "GET %s%s HTTP/1.1\r\nHost: %.*s\r\nUser-Agent: proxy_bench\r\n"
					     "Accept: */*\r\n\r\n",
					     url, slash ? "" : "/", (int)alen, auth);
		snprintf(o.target, sizeof(o.target), "%s", url);
	} else {
		if (url || (!connect_to) == !o.tcp) {
			fprintf(stderr, "proxy_bench: needs one of --connect HOST:PORT and --tcp (and no --url)\n");
			return 2;
		}
		if (connect_to) {
			size_t n = strlen(connect_to);

			if (n == 0 || n > MAX_AUTH || !plain_text(connect_to, n) || !strchr(connect_to, ':')) {
				fprintf(stderr, "proxy_bench: --connect: HOST:PORT, at most %u bytes\n", MAX_AUTH);
				return 2;
			}
			snprintf(o.target, sizeof(o.target), "%s", connect_to);
			o.req_len = (size_t)snprintf(o.req, sizeof(o.req), "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n",
						     connect_to, connect_to);
		} else {
			snprintf(o.target, sizeof(o.target), "(tcp)");
		}
	}
	if (mode == M_SETUP || mode == M_HTTP) {
		if (!have_threads && o.threads > o.conc)
			o.threads = o.conc;
		if (o.threads > o.conc) {
			fprintf(stderr, "proxy_bench: --threads must not exceed --concurrency\n");
			return 2;
		}
	}
	{
		char addr[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &o.proxy.sin_addr, addr, sizeof(addr));
		snprintf(label, sizeof(label), "%s", o.label ? o.label : addr);
	}
	raise_nofile();
	switch (mode) {
	case M_BULK:
		return bulk_main(&o, label);
	case M_IDLE:
		return idle_main(&o, label);
	default:
		return loop_main(&o, label);
	}
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int mode; /* -1: serve */
	} modes[] = {
		{ "serve", -1 }, { "bulk", M_BULK }, { "setup", M_SETUP }, { "http", M_HTTP }, { "idle", M_IDLE },
	};

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(usage_text, stdout);
		return 0;
	}
	for (size_t i = 0; argc >= 2 && i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(argv[1], modes[i].name) != 0)
			continue;
		if (modes[i].mode < 0)
			return serve_main(argc - 1, argv + 1);
		return client_main((enum cmode)modes[i].mode, argc - 1, argv + 1);
	}
	fputs(usage_text, stderr);
	return 2;
}
