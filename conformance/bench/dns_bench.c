/* SPDX-License-Identifier: Apache-2.0 */
/* Closed-loop UDP DNS load generator that measures a resolver's answer rate and latency (SPEC section 10). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/*
 * Limits. Each keeps one resource bounded whatever the command line says: the number of names held in memory,
 * the per-socket id space (16 bits, so fewer outstanding queries per socket than ids leaves room to find a free
 * one quickly), and the latency store (4 bytes per answer, sized by --max-queries).
 */
#define MAX_NAMES 1000000u
#define MAX_LINE 1024u
#define MAX_INFLIGHT 65536u
#define MAX_PER_SOCKET 16384u
#define MAX_SOCKETS 256u
#define MAX_THREADS 64u
#define MAX_QUERIES_CAP 100000000ull
#define MAX_LABEL 128u
#define MAX_TIMEOUT_MS 4000u /* latencies are stored as uint32 nanoseconds: 4.29 s at most */
#define MAX_SECONDS 3600.0
#define DNS_HDR 12u
#define DNS_MAX_WIRE_NAME 255u
#define BATCH 64u	   /* messages per sendmmsg/recvmmsg call */
#define RX_BUF 2048u	   /* no EDNS in the query, so a conforming answer is at most 512 bytes */
#define RX_ROUNDS 8u	   /* recvmmsg calls per readable socket per wakeup, so one socket cannot starve others */
#define SCAN_NS 5000000ull /* timeout scan period: 5 ms, small against the smallest allowed timeout */
#define NS_PER_S 1000000000ull

/*
 * Defaults chosen by measurement on the 2-core VM against Unbound with 2 threads and SO_REUSEPORT (see
 * conformance/bench/README.md). Sixteen source ports: the kernel hashes each to one of the server's sockets, and
 * with 4 ports about one run in eight puts them all on one server thread, and the figure then moves by a third.
 * Two threads: on that VM one generator thread left a third of the CPU idle (each hand-off waited for a halted
 * vCPU to wake), and two saturate it.
 */
#define DEFAULT_SOCKETS 16u
#define DEFAULT_THREADS 2u

enum slot_state { SLOT_QUEUED, SLOT_WAIT };

/* One outstanding query position. The number of slots is --inflight: closed loop, each refills on completion. */
struct slot {
	uint64_t sent_ns;
	uint32_t name;
	uint16_t sock;
	uint8_t idbuf[2]; /* id in network order; sent as the first iovec so templates stay shared */
	uint8_t state;
	uint8_t measured;
};

struct bsock {
	int fd;
	uint16_t next_id;
	int32_t *by_id;	 /* 65536 entries: slot index or -1; this is how answers are matched by (socket, id) */
	uint32_t *queue; /* slots waiting to be sent on this socket; capacity = slots on this socket */
	uint32_t nqueue;
	uint32_t cap;
};

struct stats {
	uint64_t sent;	   /* measured queries sent */
	uint64_t answered; /* measured queries with a valid answer */
	uint64_t lost;	   /* measured queries without any answer within --timeout-ms */
	uint64_t wrong;	   /* measured queries answered with a bad header, rcode or no answer record */
	uint64_t stray;	   /* datagrams that matched no outstanding query (late, duplicated or mangled) */
	uint64_t send_errors;
	uint64_t total_sent; /* every query sent, warm-up included: bounded by --max-queries */
};

struct names {
	uint8_t *blob; /* concatenated query templates, id bytes zero */
	uint32_t *off;
	uint16_t *len;
	uint32_t count;
	uint32_t index_cap;
	size_t used;
	size_t cap;
};

struct options {
	struct sockaddr_in server;
	uint16_t qtype;
	uint32_t inflight;
	uint32_t sockets;
	uint32_t threads;
	uint32_t timeout_ms;
	uint64_t max_queries;
	double duration;
	double warmup;
	const char *label;
	bool json;
	bool verbose;
};

/* A worker owns its sockets, slots and latency store outright; threads share only read-only data below. */
struct worker {
	const struct options *opt;
	const struct names *names;
	uint64_t t_measure, t_stop, t_hard;
	uint32_t nslots, nsocks, name_next;
	uint64_t max_total;
	struct slot *slots;
	struct bsock *socks;
	int ep;
	uint32_t *lat; /* nanoseconds of each measured valid answer */
	uint64_t nlat, lat_cap, lat_max;
	uint64_t measured_outstanding;
	uint64_t sending_ended_ns, last_done_ns;
	uint64_t cpu_start_ns, cpu_end_ns;
	bool cpu_started, cpu_ended, sending;
	struct stats st;
	uint64_t n_iter, n_wait, n_send_calls, n_recv_calls, n_recv_msgs; /* for --verbose: batching efficiency */
	uint8_t (*rxbuf)[RX_BUF];
	struct mmsghdr *rxmsg;
	struct iovec *rxiov;
	struct mmsghdr *txmsg;
	struct iovec (*txiov)[2];
	uint32_t *scratch; /* nslots entries, for reordering a send queue */
	int err;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *out)
{
	fputs("usage: dns_bench --server ADDR[:PORT] (--names FILE | --name NAME ...) [options]\n"
	      "\n"
	      "Closed-loop UDP DNS load: keeps --inflight queries outstanding, refilling each slot as soon as its\n"
	      "answer (or its timeout) arrives, and reports the answer rate and latency of the measured window.\n"
	      "\n"
	      "  --server ADDR[:PORT]  IPv4 resolver to load (port 53 by default)\n"
	      "  --names FILE          names to ask for, one per line ('#' starts a comment); cycled in order\n"
	      "  --name NAME           a name to ask for; repeatable, combinable with --names\n"
	      "  --qtype A|AAAA        query type (default A)\n"
	      "  --inflight N          concurrent outstanding queries (default 64, at most 65536)\n"
	      "  --sockets K           UDP sockets (source ports) to spread the queries over (default 16, at most\n"
	      "                        --inflight), so a server using SO_REUSEPORT spreads them over its threads\n"
	      "  --threads N           generator threads, each with its share of sockets and slots (default 2, at\n"
	      "                        most --inflight)\n"
	      "  --warmup SECONDS      warm-up before measuring, excluded from the figures (default 1)\n"
	      "  --duration SECONDS    measured window (default 5); the run ends within warm-up + duration +\n"
	      "                        timeout, whatever the server does\n"
	      "  --max-queries N       hard bound on queries sent, warm-up included (default 5000000)\n"
	      "  --timeout-ms MS       per-query timeout; unanswered queries count as lost (default 1000, max 4000)\n"
	      "  --label TEXT          name of this run in the result (default: the server address)\n"
	      "  --json                print the result as one JSON object instead of the text line\n"
	      "  --verbose             per-thread loop counters on stderr (batch sizes, wakeups)\n"
	      "  --help                this text\n"
	      "\n"
	      "An answer is valid when its id and question match the query, QR is set, TC is clear, the rcode is\n"
	      "NOERROR and it has at least one answer record; other answers count as wrong. Latencies are exact\n"
	      "(nearest rank over every valid measured answer). Exit status: 0 when at most 1% of the measured\n"
	      "queries were lost or wrong, 1 otherwise, 2 on a usage or setup error.\n",
	      out);
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

static int parse_server(const char *arg, struct sockaddr_in *sa)
{
	char host[INET_ADDRSTRLEN];
	const char *colon = strchr(arg, ':');
	size_t hlen = colon ? (size_t)(colon - arg) : strlen(arg);
	uint64_t port = 53;

	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, arg, hlen);
	host[hlen] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return -EINVAL;
	if (colon && parse_u64(colon + 1, 1, 65535, &port) != 0)
		return -EINVAL;
	sa->sin_port = htons((uint16_t)port);
	return 0;
}

/*
 * Appends the query template for one name: header (id 0, RD set, one question), the name in wire format, qtype
 * and class IN. Names are plain dotted text without escapes; a trailing dot is optional.
 */
static int names_add(struct names *n, const char *name, size_t namelen, uint16_t qtype)
{
	uint8_t wire[DNS_HDR + DNS_MAX_WIRE_NAME + 4];
	size_t w = DNS_HDR, i = 0;

	if (n->count >= MAX_NAMES)
		return -E2BIG;
	memset(wire, 0, DNS_HDR);
	wire[2] = 0x01; /* RD: a stub resolver's query, which is what a sandbox sends to the gateway */
	wire[5] = 1;	/* QDCOUNT */
	if (namelen == 1 && name[0] == '.')
		namelen = 0;
	while (i < namelen) {
		size_t start = i, llen;

		while (i < namelen && name[i] != '.')
			i++;
		llen = i - start;
		if (llen == 0 || llen > 63)
			return -EINVAL;
		/* The root byte, qtype and class must still fit after this label. */
		if (w - DNS_HDR + 1 + llen + 1 > DNS_MAX_WIRE_NAME)
			return -EINVAL;
		wire[w++] = (uint8_t)llen;
		memcpy(wire + w, name + start, llen);
		w += llen;
		if (i < namelen)
			i++; /* the dot; a trailing one ends the loop with the root label below */
	}
	wire[w++] = 0;
	wire[w++] = (uint8_t)(qtype >> 8);
	wire[w++] = (uint8_t)qtype;
	wire[w++] = 0;
	wire[w++] = 1; /* class IN */

	if (n->used + w > n->cap) {
		size_t ncap = n->cap ? n->cap * 2 : 65536;
		uint8_t *nb = realloc(n->blob, ncap);

		if (!nb)
			return -ENOMEM;
		n->blob = nb;
		n->cap = ncap;
	}
	if (n->count == n->index_cap) {
		/* Doubling, bounded by MAX_NAMES through the check above. */
		size_t ncnt = n->index_cap ? (size_t)n->index_cap * 2 : 1024;
		uint32_t *no = realloc(n->off, ncnt * sizeof(*no));
		uint16_t *nl;

		if (!no)
			return -ENOMEM;
		n->off = no;
		nl = realloc(n->len, ncnt * sizeof(*nl));
		if (!nl)
			return -ENOMEM;
		n->len = nl;
		n->index_cap = (uint32_t)ncnt;
	}
	memcpy(n->blob + n->used, wire, w);
	n->off[n->count] = (uint32_t)n->used;
	n->len[n->count] = (uint16_t)w;
	n->used += w;
	n->count++;
	return 0;
}

static int names_load(struct names *n, const char *path, uint16_t qtype)
{
	char line[MAX_LINE + 2];
	unsigned long lineno = 0;
	FILE *f = fopen(path, "re");
	int err = 0;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		size_t len = strlen(line), b = 0;

		lineno++;
		if (len > 0 && line[len - 1] != '\n' && !feof(f)) {
			fprintf(stderr, "dns_bench: %s:%lu: line longer than %u bytes\n", path, lineno, MAX_LINE);
			err = -EINVAL;
			goto out;
		}
		for (size_t i = 0; i < len; i++) {
			if (line[i] == '#') {
				len = i;
				break;
			}
		}
		while (len > 0 && isspace((unsigned char)line[len - 1]))
			len--;
		while (b < len && isspace((unsigned char)line[b]))
			b++;
		if (b == len)
			continue;
		err = names_add(n, line + b, len - b, qtype);
		if (err) {
			fprintf(stderr, "dns_bench: %s:%lu: %s\n", path, lineno,
				err == -E2BIG ? "too many names" : "not a valid name");
			goto out;
		}
	}
	if (ferror(f))
		err = -EIO;
out:
	fclose(f);
	return err;
}

static void names_free(struct names *n)
{
	free(n->blob);
	free(n->off);
	free(n->len);
}

static int ascii_lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/*
 * Compares the answer's question with the query's, case-insensitively: a server may echo the name in another
 * case (0x20 randomisation upstream must not leak, but it is not this program's business to judge that).
 */
static bool question_matches(const uint8_t *ans, size_t alen, const uint8_t *q, size_t qlen)
{
	size_t n = qlen - DNS_HDR;

	if (alen < qlen)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (ascii_lower(ans[DNS_HDR + i]) != ascii_lower(q[DNS_HDR + i]))
			return false;
	}
	return true;
}

static int latency_push(struct worker *w, uint64_t ns)
{
	if (w->nlat == w->lat_cap) {
		uint64_t ncap = w->lat_cap ? w->lat_cap * 2 : 65536;
		uint32_t *nl;

		if (ncap > w->lat_max)
			ncap = w->lat_max;
		if (ncap <= w->nlat)
			return -ENOSPC; /* cannot happen: one entry per query and --max-queries bounds queries */
		nl = realloc(w->lat, ncap * sizeof(*nl));
		if (!nl)
			return -ENOMEM;
		w->lat = nl;
		w->lat_cap = ncap;
	}
	w->lat[w->nlat++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
	return 0;
}

static void slot_requeue(struct worker *w, uint32_t idx)
{
	struct slot *s = &w->slots[idx];
	struct bsock *b = &w->socks[s->sock];

	s->state = SLOT_QUEUED;
	b->queue[b->nqueue++] = idx;
}

/* Ends the query in slot idx (answered, wrong or lost), frees its id and queues the slot for the next query. */
static void slot_done(struct worker *w, uint32_t idx)
{
	struct slot *s = &w->slots[idx];
	struct bsock *b = &w->socks[s->sock];
	uint16_t id = (uint16_t)(s->idbuf[0] << 8 | s->idbuf[1]);

	b->by_id[id] = -1;
	if (s->measured)
		w->measured_outstanding--;
	slot_requeue(w, idx);
}

static void handle_answer(struct worker *w, struct bsock *b, const uint8_t *p, size_t len, uint64_t now)
{
	const struct names *n = w->names;
	struct slot *s;
	int32_t idx;
	uint16_t id, qd, an;
	uint8_t rcode;

	if (len < DNS_HDR) {
		w->st.stray++;
		return;
	}
	id = (uint16_t)(p[0] << 8 | p[1]);
	idx = b->by_id[id];
	if (idx < 0) {
		w->st.stray++; /* an answer after its timeout, or a duplicate */
		return;
	}
	s = &w->slots[idx];
	qd = (uint16_t)(p[4] << 8 | p[5]);
	an = (uint16_t)(p[6] << 8 | p[7]);
	rcode = p[3] & 0x0f;
	if (!(p[2] & 0x80)) {
		w->st.stray++; /* not a response at all: leave the query to its real answer or its timeout */
		return;
	}
	if (qd != 0 && (qd != 1 || !question_matches(p, len, n->blob + n->off[s->name], n->len[s->name]))) {
		/*
		 * Same id, other question: most likely a late answer to an earlier query that had this id. Treating
		 * it as this query's answer would hide both a loss and a wrong answer, so the query keeps waiting.
		 */
		w->st.stray++;
		return;
	}
	if (s->measured) {
		/* qd == 0 is how some servers answer FORMERR or REFUSED: a response to this id, and a wrong one. */
		if (qd == 1 && rcode == 0 && an >= 1 && !(p[2] & 0x02) && (p[2] & 0x78) == 0) {
			w->st.answered++;
			if (latency_push(w, now - s->sent_ns) != 0 && !w->err)
				w->err = -ENOMEM;
		} else {
			w->st.wrong++;
		}
	}
	if (s->measured && now > w->last_done_ns)
		w->last_done_ns = now; /* answers, not timeouts, extend the measured window */
	slot_done(w, (uint32_t)idx);
}

static void scan_timeouts(struct worker *w, uint64_t now)
{
	uint64_t tmo = (uint64_t)w->opt->timeout_ms * 1000000ull;

	for (uint32_t i = 0; i < w->nslots; i++) {
		struct slot *s = &w->slots[i];

		if (s->state != SLOT_WAIT || now - s->sent_ns < tmo)
			continue;
		if (s->measured)
			w->st.lost++;
		slot_done(w, i);
	}
}

static bool may_send(struct worker *w, uint64_t now)
{
	if (!w->sending)
		return false;
	if (now >= w->t_stop || w->st.total_sent >= w->max_total) {
		w->sending = false;
		w->sending_ended_ns = now < w->t_stop ? now : w->t_stop;
		return false;
	}
	return true;
}

/* Sends the queued slots of one socket in sendmmsg batches; what cannot be sent now stays queued. */
static void flush_socket(struct worker *w, struct bsock *b)
{
	const struct names *n = w->names;
	uint32_t done = 0;

	/* One pass over the queue: each call either sends, stops on EAGAIN, or consumes a failing slot. */
	while (done < b->nqueue) {
		uint64_t now = mono_ns();
		uint32_t cnt = 0;
		int r;

		if (!may_send(w, now))
			break;
		while (cnt < BATCH && done + cnt < b->nqueue && w->st.total_sent + cnt < w->max_total) {
			struct slot *s = &w->slots[b->queue[done + cnt]];
			uint32_t tries = 0;
			uint16_t id;

			/* At most MAX_PER_SOCKET ids are taken, so a free one is found within that many tries. */
			do {
				id = b->next_id++;
			} while (b->by_id[id] >= 0 && ++tries < 65536);
			s->idbuf[0] = (uint8_t)(id >> 8);
			s->idbuf[1] = (uint8_t)id;
			s->name = w->name_next;
			w->name_next = w->name_next + 1 == n->count ? 0 : w->name_next + 1;
			w->txiov[cnt][0].iov_base = s->idbuf;
			w->txiov[cnt][0].iov_len = 2;
			w->txiov[cnt][1].iov_base = n->blob + n->off[s->name] + 2;
			w->txiov[cnt][1].iov_len = n->len[s->name] - 2u;
			memset(&w->txmsg[cnt].msg_hdr, 0, sizeof(w->txmsg[cnt].msg_hdr));
			w->txmsg[cnt].msg_hdr.msg_iov = w->txiov[cnt];
			w->txmsg[cnt].msg_hdr.msg_iovlen = 2;
			cnt++;
		}
		if (cnt == 0)
			break;
		now = mono_ns();
		r = sendmmsg(b->fd, w->txmsg, cnt, MSG_DONTWAIT);
		w->n_send_calls++;
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
				break;
			/*
			 * A hard error (an ICMP error reported on the connected socket, a missing route): the first
			 * query of the batch counts as sent and lost, so a dead server ends as a failed run.
			 */
			w->st.send_errors++;
			w->st.total_sent++;
			if (now >= w->t_measure) {
				w->st.sent++;
				w->st.lost++;
			}
			done++;
			continue;
		}
		for (int i = 0; i < r; i++) {
			uint32_t idx = b->queue[done + (uint32_t)i];
			struct slot *s = &w->slots[idx];
			uint16_t id = (uint16_t)(s->idbuf[0] << 8 | s->idbuf[1]);

			b->by_id[id] = (int32_t)idx;
			s->sent_ns = now;
			s->state = SLOT_WAIT;
			s->measured = now >= w->t_measure;
			if (s->measured) {
				w->st.sent++;
				w->measured_outstanding++;
			}
		}
		w->st.total_sent += (uint64_t)r;
		done += (uint32_t)r;
		if ((uint32_t)r < cnt)
			break;
	}
	if (done > 0) {
		/*
		 * Sent slots are now waiting; those consumed by a hard error are still queued and go to the back, to
		 * be retried on a later pass (the loop then sleeps at most 1 ms, which paces a failing server).
		 */
		uint32_t nfail = 0;

		for (uint32_t i = 0; i < done; i++) {
			if (w->slots[b->queue[i]].state == SLOT_QUEUED)
				w->scratch[nfail++] = b->queue[i];
		}
		memmove(b->queue, b->queue + done, (size_t)(b->nqueue - done) * sizeof(*b->queue));
		b->nqueue -= done;
		memcpy(b->queue + b->nqueue, w->scratch, (size_t)nfail * sizeof(*b->queue));
		b->nqueue += nfail;
	}
}

static void drain_socket(struct worker *w, struct bsock *b)
{
	for (uint32_t round = 0; round < RX_ROUNDS; round++) {
		uint64_t now;
		int r;

		/* The receive vector is set up once in worker_init: the kernel writes only lengths and flags. */
		r = recvmmsg(b->fd, w->rxmsg, BATCH, MSG_DONTWAIT, NULL);
		w->n_recv_calls++;
		if (r <= 0)
			return; /* EAGAIN, or an ICMP error now cleared: the affected queries time out */
		w->n_recv_msgs += (uint64_t)r;
		now = mono_ns();
		for (int i = 0; i < r; i++)
			handle_answer(w, b, w->rxbuf[i], w->rxmsg[i].msg_len, now);
		if ((uint32_t)r < BATCH)
			return;
	}
}
static void worker_free(struct worker *w)
{
	if (w->socks) {
		for (uint32_t i = 0; i < w->nsocks; i++) {
			if (w->socks[i].fd >= 0)
				close(w->socks[i].fd);
			free(w->socks[i].by_id);
			free(w->socks[i].queue);
		}
	}
	if (w->ep >= 0)
		close(w->ep);
	free(w->socks);
	free(w->slots);
	free(w->lat);
	free(w->rxbuf);
	free(w->rxmsg);
	free(w->rxiov);
	free(w->txmsg);
	free(w->txiov);
	free(w->scratch);
}

static int socket_open(const struct options *opt, int ep, uint32_t index, int *fdp)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = index};
	int buf = 4 << 20;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	/*
	 * Big buffers so that a burst of answers to a full window is not dropped and misread as loss. FORCE needs
	 * CAP_NET_ADMIN; without it the plain option is capped by net.core.rmem_max, which is fine at 64 in flight.
	 */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf)) != 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)) != 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	/* Connected: the kernel picks a distinct source port and drops datagrams from anyone but the server. */
	if (connect(fd, (const struct sockaddr *)&opt->server, sizeof(opt->server)) != 0 ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	*fdp = fd;
	return 0;
}

/* Sets up worker w with nslots slots spread round-robin over nsocks sockets. */
static int worker_init(struct worker *w, uint32_t nslots, uint32_t nsocks, uint64_t max_total)
{
	int err;

	w->nslots = nslots;
	w->nsocks = nsocks;
	w->max_total = max_total;
	w->lat_max = max_total;
	w->sending = true;
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	if (w->ep < 0)
		return -errno;
	w->socks = calloc(nsocks, sizeof(*w->socks));
	w->slots = calloc(nslots, sizeof(*w->slots));
	w->scratch = calloc(nslots, sizeof(*w->scratch));
	w->rxbuf = calloc(BATCH, sizeof(*w->rxbuf));
	w->rxmsg = calloc(BATCH, sizeof(*w->rxmsg));
	w->rxiov = calloc(BATCH, sizeof(*w->rxiov));
	w->txmsg = calloc(BATCH, sizeof(*w->txmsg));
	w->txiov = calloc(BATCH, sizeof(*w->txiov));
	if (!w->socks || !w->slots || !w->scratch || !w->rxbuf || !w->rxmsg || !w->rxiov || !w->txmsg || !w->txiov)
		return -ENOMEM;
	for (uint32_t i = 0; i < BATCH; i++) {
		w->rxiov[i].iov_base = w->rxbuf[i];
		w->rxiov[i].iov_len = RX_BUF;
		w->rxmsg[i].msg_hdr.msg_iov = &w->rxiov[i];
		w->rxmsg[i].msg_hdr.msg_iovlen = 1;
	}
	for (uint32_t i = 0; i < nsocks; i++)
		w->socks[i].fd = -1;
	for (uint32_t i = 0; i < nsocks; i++) {
		struct bsock *b = &w->socks[i];

		b->cap = nslots / nsocks + (i < nslots % nsocks ? 1 : 0);
		b->by_id = malloc(65536 * sizeof(*b->by_id));
		b->queue = calloc(b->cap ? b->cap : 1, sizeof(*b->queue));
		if (!b->by_id || !b->queue)
			return -ENOMEM;
		for (uint32_t id = 0; id < 65536; id++)
			b->by_id[id] = -1;
		err = socket_open(w->opt, w->ep, i, &b->fd);
		if (err)
			return err;
	}
	for (uint32_t i = 0; i < nslots; i++) {
		w->slots[i].sock = (uint16_t)(i % nsocks);
		slot_requeue(w, i);
	}
	return 0;
}

/*
 * The closed loop: send what is queued, wait for answers or the next deadline, take the answers, requeue their
 * slots. It ends when the measured window is over and every measured query is answered or timed out, and in any
 * case at t_hard (window end + one timeout), or after an iteration count no healthy run can reach.
 */
static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[MAX_SOCKETS];
	uint64_t next_scan = 0;
	uint64_t start = mono_ns();
	uint64_t max_iter = w->max_total * 4 + (w->t_hard > start ? (w->t_hard - start) / 10000 : 0) + 1000;

	for (uint64_t iter = 0; iter < max_iter && !w->err; iter++) {
		uint64_t now = mono_ns(), wake;
		bool queued = false;
		int timeout_ms, n;

		if (!w->cpu_started && now >= w->t_measure) {
			w->cpu_start_ns = thread_cpu_ns();
			w->cpu_started = true;
		}
		if (!w->cpu_ended && now >= w->t_stop) {
			w->cpu_end_ns = thread_cpu_ns();
			w->cpu_ended = true;
		}
		if (now >= w->t_hard)
			break;
		if (!may_send(w, now) && w->measured_outstanding == 0)
			break;
		if (now >= next_scan) {
			scan_timeouts(w, now);
			next_scan = now + SCAN_NS;
		}
		for (uint32_t i = 0; i < w->nsocks; i++) {
			flush_socket(w, &w->socks[i]);
			if (w->sending && w->socks[i].nqueue > 0)
				queued = true;
		}
		/* Sleep until the next scan or phase change; 1 ms at most while sends wait for buffer space. */
		wake = next_scan;
		if (w->sending && w->t_stop < wake)
			wake = w->t_stop;
		if (!w->cpu_started && w->t_measure < wake)
			wake = w->t_measure;
		now = mono_ns();
		timeout_ms = wake > now ? (int)((wake - now + 999999) / 1000000) : 0;
		if (queued && timeout_ms > 1)
			timeout_ms = 1;
		n = epoll_wait(w->ep, evs, (int)w->nsocks, timeout_ms);
		w->n_iter++;
		if (n > 0)
			w->n_wait += (uint64_t)n;
		for (int i = 0; i < n; i++)
			drain_socket(w, &w->socks[evs[i].data.u32]);
	}
	if (!w->cpu_ended) {
		w->cpu_end_ns = thread_cpu_ns();
		w->cpu_ended = true;
	}
	if (!w->cpu_started)
		w->cpu_start_ns = w->cpu_end_ns;
	if (w->sending) {
		/* Left by the hard bound with sending still on: the window ended now. */
		w->sending_ended_ns = mono_ns();
		if (w->sending_ended_ns > w->t_stop)
			w->sending_ended_ns = w->t_stop;
	}
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array, in microseconds. */
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

static int parse_args(int argc, char **argv, struct options *opt, struct names *names)
{
	enum {
		O_SERVER = 256,
		O_NAMES,
		O_NAME,
		O_QTYPE,
		O_INFLIGHT,
		O_DURATION,
		O_MAXQ,
		O_TIMEOUT,
		O_SOCKETS,
		O_LABEL,
		O_JSON,
		O_WARMUP,
		O_THREADS,
		O_VERBOSE,
		O_HELP
	};
	static const struct option longopts[] = {
	    {"server", required_argument, NULL, O_SERVER},
	    {"names", required_argument, NULL, O_NAMES},
	    {"name", required_argument, NULL, O_NAME},
	    {"qtype", required_argument, NULL, O_QTYPE},
	    {"inflight", required_argument, NULL, O_INFLIGHT},
	    {"duration", required_argument, NULL, O_DURATION},
	    {"max-queries", required_argument, NULL, O_MAXQ},
	    {"timeout-ms", required_argument, NULL, O_TIMEOUT},
	    {"sockets", required_argument, NULL, O_SOCKETS},
	    {"label", required_argument, NULL, O_LABEL},
	    {"json", no_argument, NULL, O_JSON},
	    {"warmup", required_argument, NULL, O_WARMUP},
	    {"threads", required_argument, NULL, O_THREADS},
	    {"verbose", no_argument, NULL, O_VERBOSE},
	    {"help", no_argument, NULL, O_HELP},
	    {NULL, 0, NULL, 0},
	};
	/* Names are encoded only once the query type is known, whatever the option order. */
	const char **files = calloc((size_t)argc, sizeof(*files));
	const char **single = calloc((size_t)argc, sizeof(*single));
	uint32_t nfiles = 0, nsingle = 0;
	bool have_server = false, have_sockets = false, have_threads = false;
	uint64_t v;
	int c, err = -EINVAL;

	if (!files || !single) {
		err = -ENOMEM;
		goto out;
	}
	opt->qtype = 1;
	opt->inflight = 64;
	opt->sockets = DEFAULT_SOCKETS;
	opt->threads = DEFAULT_THREADS;
	opt->timeout_ms = 1000;
	opt->max_queries = 5000000;
	opt->duration = 5.0;
	opt->warmup = 1.0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_SERVER:
			if (parse_server(optarg, &opt->server) != 0) {
				fprintf(stderr, "dns_bench: --server: want IPv4ADDR[:PORT]\n");
				goto out;
			}
			have_server = true;
			break;
		case O_NAMES:
			files[nfiles++] = optarg;
			break;
		case O_NAME:
			single[nsingle++] = optarg;
			break;
		case O_QTYPE:
			if (strcasecmp(optarg, "A") == 0) {
				opt->qtype = 1;
			} else if (strcasecmp(optarg, "AAAA") == 0) {
				opt->qtype = 28;
			} else {
				fprintf(stderr, "dns_bench: --qtype: A or AAAA\n");
				goto out;
			}
			break;
		case O_INFLIGHT:
			if (parse_u64(optarg, 1, MAX_INFLIGHT, &v) != 0) {
				fprintf(stderr, "dns_bench: --inflight: 1..%u\n", MAX_INFLIGHT);
				goto out;
			}
			opt->inflight = (uint32_t)v;
			break;
		case O_SOCKETS:
			if (parse_u64(optarg, 1, MAX_SOCKETS, &v) != 0) {
				fprintf(stderr, "dns_bench: --sockets: 1..%u\n", MAX_SOCKETS);
				goto out;
			}
			opt->sockets = (uint32_t)v;
			have_sockets = true;
			break;
		case O_THREADS:
			if (parse_u64(optarg, 1, MAX_THREADS, &v) != 0) {
				fprintf(stderr, "dns_bench: --threads: 1..%u\n", MAX_THREADS);
				goto out;
			}
			opt->threads = (uint32_t)v;
			have_threads = true;
			break;
		case O_DURATION:
			if (parse_seconds(optarg, 0.001, &opt->duration) != 0) {
				fprintf(stderr, "dns_bench: --duration: seconds, 0.001..%.0f\n", MAX_SECONDS);
				goto out;
			}
			break;
		case O_WARMUP:
			if (parse_seconds(optarg, 0.0, &opt->warmup) != 0) {
				fprintf(stderr, "dns_bench: --warmup: seconds, 0..%.0f\n", MAX_SECONDS);
				goto out;
			}
			break;
		case O_MAXQ:
			if (parse_u64(optarg, 1, MAX_QUERIES_CAP, &opt->max_queries) != 0) {
				fprintf(stderr, "dns_bench: --max-queries: 1..%llu\n", MAX_QUERIES_CAP);
				goto out;
			}
			break;
		case O_TIMEOUT:
			if (parse_u64(optarg, 10, MAX_TIMEOUT_MS, &v) != 0) {
				fprintf(stderr, "dns_bench: --timeout-ms: 10..%u\n", MAX_TIMEOUT_MS);
				goto out;
			}
			opt->timeout_ms = (uint32_t)v;
			break;
		case O_LABEL:
			if (strlen(optarg) > MAX_LABEL) {
				fprintf(stderr, "dns_bench: --label: at most %u bytes\n", MAX_LABEL);
				goto out;
			}
			opt->label = optarg;
			break;
		case O_JSON:
			opt->json = true;
			break;
		case O_VERBOSE:
			opt->verbose = true;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			goto out;
		}
	}
	if (optind != argc || !have_server || nfiles + nsingle == 0) {
		usage(stderr);
		goto out;
	}
	for (uint32_t i = 0; i < nfiles; i++) {
		int e = names_load(names, files[i], opt->qtype);

		if (e) {
			if (e != -EINVAL)
				fprintf(stderr, "dns_bench: %s: %s\n", files[i], strerror(-e));
			err = e;
			goto out;
		}
	}
	for (uint32_t i = 0; i < nsingle; i++) {
		if (names_add(names, single[i], strlen(single[i]), opt->qtype) != 0) {
			fprintf(stderr, "dns_bench: --name %s: not a valid name\n", single[i]);
			goto out;
		}
	}
	if (names->count == 0) {
		fprintf(stderr, "dns_bench: no names to ask for\n");
		goto out;
	}
	/* Each thread needs a socket and a slot per socket; each socket at most MAX_PER_SOCKET queries in flight. */
	/* Defaults give way to what was asked for: --inflight 1 alone means one thread and one socket. */
	if (!have_threads && opt->threads > opt->inflight)
		opt->threads = opt->inflight;
	if (!have_threads && have_sockets && opt->threads > opt->sockets)
		opt->threads = opt->sockets;
	if (!have_sockets && opt->sockets > opt->inflight)
		opt->sockets = opt->inflight;
	if (!have_sockets && opt->sockets < opt->threads)
		opt->sockets = opt->threads;
	if (opt->threads > opt->sockets || opt->sockets > opt->inflight) {
		fprintf(stderr, "dns_bench: need threads <= sockets <= inflight\n");
		goto out;
	}
	if ((opt->inflight + opt->sockets - 1) / opt->sockets > MAX_PER_SOCKET) {
		fprintf(stderr, "dns_bench: at most %u in flight per socket: raise --sockets\n", MAX_PER_SOCKET);
		goto out;
	}
	err = 0;
out:
	free(files);
	free(single);
	return err;
}

int main(int argc, char **argv)
{
	struct options opt = {0};
	struct names names = {0};
	struct worker *ws = NULL;
	pthread_t *tids = NULL;
	uint32_t *all = NULL;
	struct stats tot = {0};
	uint64_t nall = 0, t0, end_ns = 0, cpu_ns = 0;
	char addr[INET_ADDRSTRLEN + 8], label[MAX_LABEL + 1];
	double elapsed, qps, p50, p99, p999, pmax, cpu_pct;
	uint32_t started = 0;
	bool ok;
	int err, rc = 2;

	err = parse_args(argc, argv, &opt, &names);
	if (err)
		goto out;
	inet_ntop(AF_INET, &opt.server.sin_addr, addr, sizeof(addr));
	snprintf(addr + strlen(addr), sizeof(addr) - strlen(addr), ":%u", ntohs(opt.server.sin_port));
	snprintf(label, sizeof(label), "%s", opt.label ? opt.label : addr);

	ws = calloc(opt.threads, sizeof(*ws));
	tids = calloc(opt.threads, sizeof(*tids));
	if (!ws || !tids) {
		fprintf(stderr, "dns_bench: out of memory\n");
		goto out;
	}
	for (uint32_t t = 0; t < opt.threads; t++) {
		ws[t].ep = -1;
		ws[t].opt = &opt;
		ws[t].names = &names;
	}
	for (uint32_t t = 0; t < opt.threads; t++) {
		uint32_t slots = opt.inflight / opt.threads + (t < opt.inflight % opt.threads ? 1 : 0);
		uint32_t socks = opt.sockets / opt.threads + (t < opt.sockets % opt.threads ? 1 : 0);
		uint64_t maxq = opt.max_queries / opt.threads + (t < opt.max_queries % opt.threads ? 1 : 0);

		/* Threads start at different names so that they do not ask for the same one in lockstep. */
		ws[t].name_next = (uint32_t)((uint64_t)names.count * t / opt.threads);
		err = worker_init(&ws[t], slots, socks, maxq);
		if (err) {
			fprintf(stderr, "dns_bench: setting up sockets: %s\n", strerror(-err));
			goto out;
		}
	}
	t0 = mono_ns();
	for (uint32_t t = 0; t < opt.threads; t++) {
		ws[t].t_measure = t0 + (uint64_t)(opt.warmup * 1e9);
		ws[t].t_stop = ws[t].t_measure + (uint64_t)(opt.duration * 1e9);
		ws[t].t_hard = ws[t].t_stop + (uint64_t)opt.timeout_ms * 1000000ull;
	}
	if (opt.threads == 1) {
		worker_run(&ws[0]);
		started = 1;
	} else {
		for (; started < opt.threads; started++) {
			err = pthread_create(&tids[started], NULL, worker_run, &ws[started]);
			if (err) {
				fprintf(stderr, "dns_bench: pthread_create: %s\n", strerror(err));
				break;
			}
		}
		for (uint32_t t = 0; t < started; t++)
			pthread_join(tids[t], NULL);
		if (started < opt.threads)
			goto out;
	}

	for (uint32_t t = 0; t < opt.threads; t++) {
		struct worker *w = &ws[t];
		uint64_t e = w->sending_ended_ns > w->last_done_ns ? w->sending_ended_ns : w->last_done_ns;

		if (w->err) {
			fprintf(stderr, "dns_bench: %s\n", strerror(-w->err));
			goto out;
		}
		if (opt.verbose)
			fprintf(stderr,
				"dns_bench: thread %" PRIu32 ": loops %" PRIu64 " ready sockets %" PRIu64
				" sendmmsg %" PRIu64 " (%.1f per call) recvmmsg %" PRIu64 " (%.1f per call)\n",
				t, w->n_iter, w->n_wait, w->n_send_calls,
				w->n_send_calls ? (double)w->st.total_sent / (double)w->n_send_calls : 0.0,
				w->n_recv_calls,
				w->n_recv_calls ? (double)w->n_recv_msgs / (double)w->n_recv_calls : 0.0);
		tot.sent += w->st.sent;
		tot.answered += w->st.answered;
		tot.lost += w->st.lost;
		tot.wrong += w->st.wrong;
		tot.stray += w->st.stray;
		tot.send_errors += w->st.send_errors;
		tot.total_sent += w->st.total_sent;
		/* Measured queries still out at the hard bound never got an answer: they are lost. */
		tot.lost += w->measured_outstanding;
		nall += w->nlat;
		if (e > end_ns)
			end_ns = e;
		cpu_ns += w->cpu_end_ns - w->cpu_start_ns;
	}
	all = malloc((nall ? nall : 1) * sizeof(*all));
	if (!all) {
		fprintf(stderr, "dns_bench: out of memory\n");
		goto out;
	}
	nall = 0;
	for (uint32_t t = 0; t < opt.threads; t++) {
		memcpy(all + nall, ws[t].lat, ws[t].nlat * sizeof(*all));
		nall += ws[t].nlat;
	}
	qsort(all, nall, sizeof(*all), cmp_u32);
	if (tot.sent == 0)
		fprintf(stderr,
			"dns_bench: no query sent in the measured window (--max-queries used up in warm-up?)\n");
	elapsed = end_ns > ws[0].t_measure ? (double)(end_ns - ws[0].t_measure) / 1e9 : 0.0;
	qps = elapsed > 0 ? (double)tot.answered / elapsed : 0.0;
	p50 = percentile_us(all, nall, 50.0);
	p99 = percentile_us(all, nall, 99.0);
	p999 = percentile_us(all, nall, 99.9);
	pmax = nall ? all[nall - 1] / 1000.0 : 0.0;
	cpu_pct = elapsed > 0 ? (double)cpu_ns / 1e9 / elapsed * 100.0 : 0.0;
	/* A server that drops or garbles answers must not pass for a fast one. */
	ok = tot.sent > 0 && tot.answered > 0 && (tot.lost + tot.wrong) * 100 <= tot.sent;

	if (opt.json) {
		printf("{\"label\":");
		json_string(stdout, label);
		printf(",\"server\":\"%s\",\"qtype\":\"%s\",\"names\":%" PRIu32 ",\"inflight\":%" PRIu32
		       ",\"sockets\":%" PRIu32 ",\"threads\":%" PRIu32 ",\"warmup_s\":%.3f,\"duration_s\":%.3f"
		       ",\"elapsed_s\":%.6f,\"sent\":%" PRIu64 ",\"answered\":%" PRIu64 ",\"lost\":%" PRIu64
		       ",\"wrong\":%" PRIu64 ",\"stray\":%" PRIu64 ",\"send_errors\":%" PRIu64
		       ",\"total_sent\":%" PRIu64
		       ",\"qps\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f"
		       ",\"gen_cpu_pct\":%.1f,\"ok\":%s}\n",
		       addr, opt.qtype == 1 ? "A" : "AAAA", names.count, opt.inflight, opt.sockets, opt.threads,
		       opt.warmup, opt.duration, elapsed, tot.sent, tot.answered, tot.lost, tot.wrong, tot.stray,
		       tot.send_errors, tot.total_sent, qps, p50, p99, p999, pmax, cpu_pct, ok ? "true" : "false");
	} else {
		printf("%s inflight=%" PRIu32 " sent=%" PRIu64 " answered=%" PRIu64 " lost=%" PRIu64 " wrong=%" PRIu64
		       " stray=%" PRIu64 " qps=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f"
		       " elapsed_s=%.3f gen_cpu=%.0f%%%s\n",
		       label, opt.inflight, tot.sent, tot.answered, tot.lost, tot.wrong, tot.stray, qps, p50, p99, p999,
		       pmax, elapsed, cpu_pct, ok ? "" : " FAILED");
	}
	fflush(stdout);
	rc = ok ? 0 : 1;
out:
	if (ws) {
		for (uint32_t t = 0; t < opt.threads; t++)
			worker_free(&ws[t]);
	}
	free(ws);
	free(tids);
	free(all);
	names_free(&names);
	return rc;
}
