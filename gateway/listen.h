/* SPDX-License-Identifier: Apache-2.0 */
/* The workers' listening sockets: one per worker per service, shared by the kernel through SO_REUSEPORT. */
#ifndef CRGW_GATEWAY_LISTEN_H
#define CRGW_GATEWAY_LISTEN_H

#include <event2/event_struct.h>
#include <stdint.h>

struct event_base;
struct evconnlistener;

/*
 * Binds a non-blocking, close-on-exec IPv4 socket of `type` (SOCK_STREAM: listening, SO_REUSEADDR;
 * SOCK_DGRAM: IP_PKTINFO and a 4 MiB receive buffer) on 0.0.0.0:`port` with SO_REUSEPORT. Returns 0 with
 * the descriptor in `*out` (owned by the caller), or -errno.
 */
int crgw_listen_reuseport(int type, uint16_t port, int *out);

/*
 * Keeps a listener from spinning when accept(2) fails for want of descriptors or memory: the pending
 * connection stays readable, so the loop would call accept again at once, forever. Tripped from the
 * listener's error callback, the guard disables the listener for 100 ms, and logs at most every 10 s.
 */
struct crgw_accept_guard {
	struct evconnlistener *listener;
	struct event timer;
	const char *what;
	int64_t logged_s; /* CLOCK_MONOTONIC seconds of the last log line */
};
void crgw_accept_guard_init(struct crgw_accept_guard *g, struct event_base *base, struct evconnlistener *l,
			    const char *what);
void crgw_accept_guard_trip(struct crgw_accept_guard *g);
void crgw_accept_guard_fini(struct crgw_accept_guard *g);

/*
 * How many connections of `per` descriptors each fit in `num`/`den` of the descriptor limit (at least 1),
 * with the limit in `*nofile`; UINT_MAX when there is no limit to speak of. The services' caps are held to
 * it, so that a full service refuses with 429 rather than every service's accept(2) failing.
 */
unsigned crgw_nofile_room(unsigned num, unsigned den, unsigned per, unsigned long long *nofile);

#endif
