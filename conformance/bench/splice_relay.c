/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A bare CONNECT (or fixed-target TCP) relay moving bytes with splice(2), or with the experimental sockmap
 * relay of ebpf/ (--sockmap): the physical limits the proxy benchmark compares against.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "crgw/relay.h"

/*
 * No policy, no logging, no timers: what is left is the least any CONNECT relay must do (parse a head, connect,
 * answer, move bytes through the kernel) and so the upper bound for crgw on the same path. The only limits are
 * the ones that keep it bounded: the head size, the tunnel count, the process lifetime.
 */
#define HEAD_MAX 4096u
#define EVENTS 256
#define MAX_THREADS 64u
#define DEFAULT_PIPE (1u << 20)
#define GROW_AFTER (256u << 10)
#define DEFAULT_MAX_TUNNELS 100000u
#define NS_PER_S 1000000000ull

static const char usage_text[] =
    "usage: splice_relay --listen ADDR:PORT [--target ADDR:PORT] [--threads N] [--pipe-bytes N]\n"
    "                    [--max-tunnels N] [--lifetime SECONDS] [--sockmap]\n"
    "\n"
    "Without --target: reads 'CONNECT A.B.C.D:PORT HTTP/1.x' and headers up to the blank line (numeric\n"
    "addresses only), connects, answers 'HTTP/1.1 200 Connection established', then relays. With --target:\n"
    "relays every accepted connection to that address at once (TCP mode).\n"
    "Bytes move with splice(2) through one pipe per direction (grown to --pipe-bytes, default 1 MiB, once\n"
    "it has carried 256 KiB), non-blocking, edge-triggered epoll, one loop per thread (--threads, default 2,\n"
    "SO_REUSEPORT); a FIN is passed on as shutdown(SHUT_WR) and the tunnel ends when both directions have\n"
    "ended. Runs until killed or for --lifetime seconds (default 3600).\n"
    "--sockmap (CONNECT only, needs CAP_BPF): bytes move in the kernel instead, each thread's tunnels in a\n"
    "sockhash of the sockmap relay (ebpf/README.md, \"Relay\"); a FIN is passed on once everything the peer\n"
    "sent before it has been written out (polled every millisecond).\n";

enum tstate { T_HEAD, T_CONNECTING, T_RELAY };

/* One direction: bytes read from src wait in the pipe until dst takes them. */
struct flow {
	int pipe[2];
	size_t queued;
	size_t cap;	/* the pipe's capacity now */
	uint64_t total; /* bytes moved so far */
	bool grown;	/* the one attempt to enlarge the pipe has been made */
	bool eof;	/* src has ended */
	bool shut;	/* dst has been shut down for writing */
};

struct tunnel;

/* An epoll registration: which tunnel, which side. */
struct end {
	struct tunnel *t;
	int side; /* 0 client, 1 upstream */
};

struct tunnel {
	int cfd, ufd;
	uint64_t id;	/* the sockmap relay's tunnel id */
	bool in_map;	/* --sockmap: in the thread's relay */
	bool fin[2];	/* --sockmap: side s has received the peer's FIN */
	bool passed[2]; /* --sockmap: that FIN has been passed on (the other side shut down for writing) */
	struct tunnel *next_draining; /* --sockmap: waiting for side s's bytes to go out before its FIN */
	bool draining;
	uint8_t state; /* enum tstate */
	bool dead;     /* closed; freed after the current epoll batch */
	char *head;    /* T_HEAD only */
	size_t head_len;
	size_t early_off; /* client bytes after the head, sent to the upstream once connected */
	struct flow up;	  /* client -> upstream */
	struct flow down; /* upstream -> client */
	struct end cend, uend;
	struct tunnel *next_dead;
};

struct options {
	struct sockaddr_in listen;
	struct sockaddr_in target;
	bool tcp;
	uint32_t threads;
	uint32_t pipe_bytes;
	uint32_t max_tunnels;
	double lifetime;
	bool sockmap;
};

struct rthread {
	const struct options *o;
	int ep;
	int lfd;
	struct end lend; /* the listener's registration: t == NULL */
	struct tunnel *dead;
	struct tunnel *draining;  /* --sockmap */
	struct crgw_relay *relay; /* --sockmap */
	uint64_t next_id;
	uint64_t deadline;
	pthread_t tid;
};

static atomic_uint tunnels;

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long v;

	if (s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* "A.B.C.D:PORT" in [s, s+n): numeric only, so the relay never resolves anything. */
static int parse_addr_port(const char *s, size_t n, struct sockaddr_in *sa)
{
	char buf[32];
	char *colon;
	uint32_t port;

	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	colon = strrchr(buf, ':');
	if (!colon)
		return -EINVAL;
	*colon = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	if (inet_pton(AF_INET, buf, &sa->sin_addr) != 1 || parse_u32(colon + 1, 1, 65535, &port) != 0)
		return -EINVAL;
	sa->sin_port = htons((uint16_t)port);
	return 0;
}

/*
 * Marks the tunnel dead and closes its descriptors. The struct lives until the end of the epoll batch: its
 * other descriptor may have an event in the same batch.
 */
static void tunnel_kill(struct rthread *th, struct tunnel *t)
{
	if (t->dead)
		return;
	t->dead = true;
	if (t->in_map)
		(void)crgw_relay_remove(th->relay, t->id);
	if (t->cfd >= 0)
		close(t->cfd);
	if (t->ufd >= 0)
		close(t->ufd);
	for (int i = 0; i < 2; i++) {
		if (t->up.pipe[i] >= 0)
			close(t->up.pipe[i]);
		if (t->down.pipe[i] >= 0)
			close(t->down.pipe[i]);
	}
	free(t->head);
	t->head = NULL;
	t->next_dead = th->dead;
	th->dead = t;
	atomic_fetch_sub(&tunnels, 1);
}

/*
 * Pipes start at the kernel's default size and grow to --pipe-bytes once a flow has moved GROW_AFTER bytes
 * (not "when full": a pipe's slots fill with partial pages from the socket long before its byte size is
 * reached, so byte counts cannot tell a full pipe from an empty socket). A bulk flow gets the large pipe
 * (fewer splice calls per byte: about 15% more throughput here with 1 MiB than with 64 KiB), while short and
 * idle tunnels cost no more than default pipes: an empty 1 MiB pipe still holds 256 slot descriptors, and
 * without CAP_SYS_RESOURCE or CAP_SYS_ADMIN every pipe's size counts against fs.pipe-user-pages-soft, past
 * which new pipes get two pages only.
 */
static void flow_grow(struct flow *f, uint32_t bytes)
{
	int r;

	f->grown = true;
	if (bytes <= f->cap)
		return;
	r = fcntl(f->pipe[0], F_SETPIPE_SZ, (int)bytes);
	if (r > 0)
		f->cap = (size_t)r;
}

/* Moves what it can in one direction; 0, or -1 when the tunnel must end (an error on either side). */
static int flow_pump(struct flow *f, int src, int dst, uint32_t pipe_bytes, bool *progress)
{
	for (;;) {
		bool moved = false;

		if (!f->grown && f->total >= GROW_AFTER)
			flow_grow(f, pipe_bytes);
		if (!f->eof && f->queued < f->cap) {
			ssize_t n =
			    splice(src, NULL, f->pipe[1], NULL, f->cap - f->queued, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

			if (n > 0) {
				f->queued += (size_t)n;
				f->total += (uint64_t)n;
				moved = true;
			} else if (n == 0) {
				f->eof = true;
				moved = true;
			} else if (errno != EAGAIN) {
				return -1;
			}
		}
		if (f->queued > 0) {
			ssize_t n = splice(f->pipe[0], NULL, dst, NULL, f->queued, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

			if (n > 0) {
				f->queued -= (size_t)n;
				moved = true;
			} else if (n < 0 && errno != EAGAIN) {
				return -1;
			}
		}
		if (f->eof && f->queued == 0 && !f->shut) {
			/* Half-close: the other direction may still be moving. */
			(void)shutdown(dst, SHUT_WR);
			f->shut = true;
		}
		if (!moved)
			return 0;
		*progress = true;
	}
}

/*
 * Edge-triggered: every event on either side runs both directions until neither moves, so a direction blocked
 * on a full pipe is resumed by the writable event of its destination.
 */
static void tunnel_pump(struct rthread *th, struct tunnel *t)
{
	bool progress;

	do {
		progress = false;
		if (flow_pump(&t->up, t->cfd, t->ufd, th->o->pipe_bytes, &progress) != 0 ||
		    flow_pump(&t->down, t->ufd, t->cfd, th->o->pipe_bytes, &progress) != 0) {
			tunnel_kill(th, t);
			return;
		}
	} while (progress);
	if (t->up.shut && t->down.shut)
		tunnel_kill(th, t);
}

static int make_pipe(struct flow *f)
{
	int r;

	if (pipe2(f->pipe, O_NONBLOCK | O_CLOEXEC) != 0)
		return -errno;
	r = fcntl(f->pipe[0], F_GETPIPE_SZ);
	f->cap = r > 0 ? (size_t)r : 4096;
	return 0;
}

/*
 * --sockmap: the FIN of side s (a socket that has received its peer's FIN) is passed on with shutdown once
 * every byte it received before it has been written into the other socket; the kernel relays the bytes,
 * so only its counters can say when. Returns true when the tunnel still waits for something.
 */
static bool sockmap_pass_fins(struct rthread *th, struct tunnel *t)
{
	int fd[2] = {t->cfd, t->ufd};

	for (int s = 0; s < 2; s++) {
		uint64_t unsent;

		if (!t->fin[s] || t->passed[s])
			continue;
		if (crgw_relay_unsent(th->relay, t->id, s, fd[s], fd[s ^ 1], &unsent) != 0) {
			tunnel_kill(th, t);
			return false;
		}
		if (unsent == 0) {
			(void)shutdown(fd[s ^ 1], SHUT_WR);
			t->passed[s] = true;
		}
	}
	if (t->passed[0] && t->passed[1]) {
		tunnel_kill(th, t);
		return false;
	}
	return (t->fin[0] && !t->passed[0]) || (t->fin[1] && !t->passed[1]);
}

static void sockmap_event(struct rthread *th, struct tunnel *t, int side, uint32_t events)
{
	if (events & EPOLLERR) {
		tunnel_kill(th, t);
		return;
	}
	if (events & (EPOLLRDHUP | EPOLLHUP))
		t->fin[side] = true;
	if (sockmap_pass_fins(th, t) && !t->draining) {
		t->draining = true;
		t->next_draining = th->draining;
		th->draining = t;
	}
}

/* Every loop turn with tunnels draining: check them again; the finished ones leave the list. */
static void sockmap_poll_draining(struct rthread *th)
{
	struct tunnel **pp = &th->draining;

	while (*pp) {
		struct tunnel *t = *pp;

		if (!t->dead && sockmap_pass_fins(th, t)) {
			pp = &t->next_draining;
			continue;
		}
		t->draining = false;
		*pp = t->next_draining;
	}
}

static void start_sockmap(struct rthread *th, struct tunnel *t)
{
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	size_t early = t->head_len - t->early_off;

	/* Client bytes after the head go in before the add, so they are not the relay's to count. */
	if (early > 0 && write(t->ufd, t->head + t->early_off, early) != (ssize_t)early) {
		tunnel_kill(th, t);
		return;
	}
	/*
	 * What the upstream sent already (a server that speaks first) would stay in its socket once in the map,
	 * until more came: it goes to the client with the 200, written by us and so left out of the relay's
	 * counts. The head buffer (HEAD_MAX) holds it; more than that before the 200 is not a benchmark's.
	 */
	memcpy(t->head, ok, sizeof(ok) - 1);
	t->head_len = sizeof(ok) - 1;
	for (;;) {
		ssize_t n = recv(t->ufd, t->head + t->head_len, HEAD_MAX - t->head_len, MSG_DONTWAIT);

		if (n > 0 && (t->head_len += (size_t)n) < HEAD_MAX)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		tunnel_kill(th, t); /* closed, failed, or more than HEAD_MAX */
		return;
	}
	t->id = ++th->next_id;
	if (crgw_relay_add(th->relay, t->id, t->cfd, t->ufd, t->head_len) != 0) {
		tunnel_kill(th, t);
		return;
	}
	t->in_map = true;
	t->state = T_RELAY;
	if (write(t->cfd, t->head, t->head_len) != (ssize_t)t->head_len) {
		tunnel_kill(th, t);
		return;
	}
	free(t->head);
	t->head = NULL;
	/* Bytes that arrived between the recv and the add are stuck until more come: the known gap. */
	int queued = 0;
	if (ioctl(t->ufd, FIONREAD, &queued) == 0 && queued > 0) {
		fprintf(stderr, "splice_relay: tunnel %llu: %d upstream bytes arrived before the add; closed\n",
			(unsigned long long)t->id, queued);
		tunnel_kill(th, t);
	}
}

static void start_relay(struct rthread *th, struct tunnel *t)
{
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";

	if (th->o->sockmap) {
		start_sockmap(th, t);
		return;
	}
	if (make_pipe(&t->up) != 0 || make_pipe(&t->down) != 0) {
		tunnel_kill(th, t);
		return;
	}
	if (!th->o->tcp) {
		size_t early = t->head_len - t->early_off;

		/* Both writes go to sockets with nothing queued: short means the tunnel is already broken. */
		if (write(t->cfd, ok, sizeof(ok) - 1) != (ssize_t)(sizeof(ok) - 1) ||
		    (early > 0 && write(t->ufd, t->head + t->early_off, early) != (ssize_t)early)) {
			tunnel_kill(th, t);
			return;
		}
		free(t->head);
		t->head = NULL;
	}
	t->state = T_RELAY;
	tunnel_pump(th, t);
}

static int connect_upstream(struct rthread *th, struct tunnel *t, const struct sockaddr_in *to)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &t->uend};
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)to, sizeof(*to)) != 0 && errno != EINPROGRESS) {
		int err = -errno;

		close(fd);
		return err;
	}
	t->ufd = fd;
	if (epoll_ctl(th->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
		return -errno;
	t->state = T_CONNECTING;
	return 0;
}

/* The CONNECT head: request line "CONNECT A.B.C.D:PORT HTTP/1.x"; the headers are read and ignored. */
static void head_event(struct rthread *th, struct tunnel *t)
{
	static const char bad[] = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n";
	static const char fail[] = "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n";
	struct sockaddr_in to;
	char *end, *sp;

	for (;;) {
		ssize_t n;

		if (t->head_len == HEAD_MAX)
			goto bad_request;
		n = read(t->cfd, t->head + t->head_len, HEAD_MAX - t->head_len);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			tunnel_kill(th, t);
			return;
		}
		t->head_len += (size_t)n;
		end = memmem(t->head, t->head_len, "\r\n\r\n", 4);
		if (end)
			break;
	}
	t->early_off = (size_t)(end - t->head) + 4;
	if (t->early_off < 9 || memcmp(t->head, "CONNECT ", 8) != 0)
		goto bad_request;
	sp = memchr(t->head + 8, ' ', (size_t)(end - t->head) - 8);
	if (!sp || parse_addr_port(t->head + 8, (size_t)(sp - t->head) - 8, &to) != 0)
		goto bad_request;
	if (connect_upstream(th, t, &to) != 0) {
		(void)!write(t->cfd, fail, sizeof(fail) - 1);
		tunnel_kill(th, t);
	}
	return;
bad_request:
	(void)!write(t->cfd, bad, sizeof(bad) - 1);
	tunnel_kill(th, t);
}

static void connecting_event(struct rthread *th, struct tunnel *t, uint32_t events)
{
	static const char fail[] = "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n";
	int soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
		return;
	if (getsockopt(t->ufd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0 || (events & EPOLLERR)) {
		if (!th->o->tcp)
			(void)!write(t->cfd, fail, sizeof(fail) - 1);
		tunnel_kill(th, t);
		return;
	}
	start_relay(th, t);
}

static void on_accept(struct rthread *th)
{
	/* Bounded per wakeup, so a flood of connections cannot starve the tunnels. */
	for (int i = 0; i < 256; i++) {
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};
		struct tunnel *t;
		int one = 1;
		int fd = accept4(th->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				usleep(1000); /* the listener stays readable: do not spin */
			return;
		}
		if (atomic_fetch_add(&tunnels, 1) >= th->o->max_tunnels) {
			atomic_fetch_sub(&tunnels, 1);
			close(fd);
			continue;
		}
		t = calloc(1, sizeof(*t));
		if (t && !th->o->tcp)
			t->head = malloc(HEAD_MAX);
		if (!t || (!th->o->tcp && !t->head)) {
			if (t)
				free(t);
			atomic_fetch_sub(&tunnels, 1);
			close(fd);
			continue;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		t->cfd = fd;
		t->ufd = -1;
		t->up.pipe[0] = t->up.pipe[1] = t->down.pipe[0] = t->down.pipe[1] = -1;
		t->cend.t = t;
		t->cend.side = 0;
		t->uend.t = t;
		t->uend.side = 1;
		t->state = T_HEAD;
		ev.data.ptr = &t->cend;
		if (epoll_ctl(th->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			tunnel_kill(th, t);
			continue;
		}
		if (th->o->tcp && connect_upstream(th, t, &th->o->target) != 0)
			tunnel_kill(th, t);
	}
}

static void *relay_thread(void *arg)
{
	struct rthread *th = arg;
	struct epoll_event evs[EVENTS];

	while (mono_ns() < th->deadline) {
		int n = epoll_wait(th->ep, evs, EVENTS, th->draining ? 1 : 1000);

		for (int i = 0; i < n; i++) {
			struct end *e = evs[i].data.ptr;
			struct tunnel *t = e->t;

			if (!t) {
				on_accept(th);
				continue;
			}
			if (t->dead)
				continue;
			switch (t->state) {
			case T_HEAD:
				if (e->side == 0)
					head_event(th, t);
				break;
			case T_CONNECTING:
				if (e->side == 1)
					connecting_event(th, t, evs[i].events);
				/* Client bytes meanwhile stay in its socket: start_relay's first pump takes them. */
				break;
			default:
				if (th->o->sockmap)
					sockmap_event(th, t, e->side, evs[i].events);
				else
					tunnel_pump(th, t);
				break;
			}
		}
		if (th->draining)
			sockmap_poll_draining(th);
		while (th->dead) {
			struct tunnel *t = th->dead;

			th->dead = t->next_dead;
			free(t);
		}
	}
	return NULL;
}

static int listen_on(const struct options *o, struct rthread *th)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &th->lend};
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    bind(fd, (const struct sockaddr *)&o->listen, sizeof(o->listen)) != 0 || listen(fd, 4096) != 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	th->lfd = fd;
	if (epoll_ctl(th->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
		return -errno;
	return 0;
}

int main(int argc, char **argv)
{
	enum { O_LISTEN = 256, O_TARGET, O_THREADS, O_PIPE, O_MAXT, O_LIFETIME, O_SOCKMAP, O_HELP };
	static const struct option longopts[] = {
	    {"listen", required_argument, NULL, O_LISTEN},
	    {"target", required_argument, NULL, O_TARGET},
	    {"threads", required_argument, NULL, O_THREADS},
	    {"pipe-bytes", required_argument, NULL, O_PIPE},
	    {"max-tunnels", required_argument, NULL, O_MAXT},
	    {"lifetime", required_argument, NULL, O_LIFETIME},
	    {"sockmap", no_argument, NULL, O_SOCKMAP},
	    {"help", no_argument, NULL, O_HELP},
	    {NULL, 0, NULL, 0},
	};
	struct options o = {
	    .threads = 2, .pipe_bytes = DEFAULT_PIPE, .max_tunnels = DEFAULT_MAX_TUNNELS, .lifetime = 3600};
	struct rthread *th = NULL;
	struct rlimit rl;
	bool have_listen = false;
	uint32_t v, started = 0;
	uint64_t deadline;
	int c, err, rc = 2;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_LISTEN:
		case O_TARGET:
			if (parse_addr_port(optarg, strlen(optarg), c == O_LISTEN ? &o.listen : &o.target) != 0) {
				fprintf(stderr, "splice_relay: --%s: A.B.C.D:PORT\n",
					c == O_LISTEN ? "listen" : "target");
				return 2;
			}
			if (c == O_LISTEN)
				have_listen = true;
			else
				o.tcp = true;
			break;
		case O_THREADS:
			if (parse_u32(optarg, 1, MAX_THREADS, &o.threads) != 0) {
				fprintf(stderr, "splice_relay: --threads: 1..%u\n", MAX_THREADS);
				return 2;
			}
			break;
		case O_PIPE:
			if (parse_u32(optarg, 4096, 64u << 20, &o.pipe_bytes) != 0) {
				fprintf(stderr, "splice_relay: --pipe-bytes: 4096..67108864\n");
				return 2;
			}
			break;
		case O_MAXT:
			if (parse_u32(optarg, 1, 10000000, &o.max_tunnels) != 0) {
				fprintf(stderr, "splice_relay: --max-tunnels: 1..10000000\n");
				return 2;
			}
			break;
		case O_LIFETIME:
			if (parse_u32(optarg, 1, 86400, &v) != 0) {
				fprintf(stderr, "splice_relay: --lifetime: 1..86400 seconds\n");
				return 2;
			}
			o.lifetime = v;
			break;
		case O_SOCKMAP:
			o.sockmap = true;
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
	if (o.sockmap && o.tcp) {
		/* With no CONNECT exchange the client may send before its socket is in the map. */
		fprintf(stderr, "splice_relay: --sockmap relays CONNECT tunnels only (no --target)\n");
		return 2;
	}
	/* Six descriptors per tunnel (two sockets, two pipes). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	th = calloc(o.threads, sizeof(*th));
	if (!th)
		return 2;
	deadline = mono_ns() + (uint64_t)(o.lifetime * 1e9);
	for (uint32_t t = 0; t < o.threads; t++) {
		th[t].o = &o;
		th[t].lfd = -1;
		th[t].deadline = deadline;
		th[t].ep = epoll_create1(EPOLL_CLOEXEC);
		if (th[t].ep < 0) {
			fprintf(stderr, "splice_relay: epoll: %s\n", strerror(errno));
			goto out;
		}
		if (o.sockmap) {
			char why[256];

			/* One relay (program and maps) per thread: a relay's calls are not thread-safe. */
			err = crgw_relay_open(&th[t].relay, 0, why, sizeof(why));
			if (err) {
				fprintf(stderr, "splice_relay: sockmap relay: %s\n", why);
				goto out;
			}
		}
		err = listen_on(&o, &th[t]);
		if (err) {
			fprintf(stderr, "splice_relay: listen: %s\n", strerror(-err));
			goto out;
		}
	}
	for (; started < o.threads; started++) {
		err = pthread_create(&th[started].tid, NULL, relay_thread, &th[started]);
		if (err) {
			fprintf(stderr, "splice_relay: pthread_create: %s\n", strerror(err));
			break;
		}
	}
	for (uint32_t t = 0; t < started; t++)
		pthread_join(th[t].tid, NULL);
	rc = started == o.threads ? 0 : 2;
out:
	/* Tunnels still open at the end go with the process. */
	for (uint32_t t = 0; t < o.threads; t++) {
		if (th[t].lfd >= 0)
			close(th[t].lfd);
		if (th[t].ep > 0)
			close(th[t].ep);
		crgw_relay_close(th[t].relay);
	}
	free(th);
	return rc;
}
