/* SPDX-License-Identifier: Apache-2.0 */
/* One SO_REUSEPORT socket per worker and service: the kernel spreads connections and queries across them. */
#include <errno.h>
#include <limits.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen.h"
#include "log.h"

int crgw_listen_reuseport(int type, uint16_t port, int *out)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, rcvbuf = 4 << 20, err, fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    (type == SOCK_STREAM && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one))) ||
	    (type == SOCK_DGRAM && setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one))))
		goto fail;
	/* Bursts of queries from many sandboxes wait here rather than being dropped. */
	if (type == SOCK_DGRAM)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) || (type == SOCK_STREAM && listen(fd, 1024)))
		goto fail;
	*out = fd;
	return 0;
fail:
	err = -errno;
	close(fd);
	return err;
}

static void on_guard_timer(evutil_socket_t fd, short what, void *arg)
{
	struct crgw_accept_guard *g = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(g->listener);
}

void crgw_accept_guard_init(struct crgw_accept_guard *g, struct event_base *base, struct evconnlistener *l,
			    const char *what)
{
	g->listener = l;
	g->what = what;
	g->logged_s = -3600;
	event_assign(&g->timer, base, -1, 0, on_guard_timer, g);
}

void crgw_accept_guard_trip(struct crgw_accept_guard *g)
{
	struct timeval pause = { 0, 100 * 1000 };
	struct timespec now;
	int err = EVUTIL_SOCKET_ERROR();

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec - g->logged_s >= 10) {
		log_error("accept failed; pausing the listener", "listener=%s error=\"%s\"", g->what, strerror(err));
		g->logged_s = now.tv_sec;
	}
	evconnlistener_disable(g->listener);
	event_add(&g->timer, &pause);
}

void crgw_accept_guard_fini(struct crgw_accept_guard *g)
{
	if (g->listener)
		event_del(&g->timer);
	g->listener = NULL;
}

unsigned crgw_nofile_room(unsigned num, unsigned den, unsigned per, unsigned long long *nofile)
{
	struct rlimit rl;
	unsigned long long room;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= UINT_MAX)
		return UINT_MAX;
	*nofile = rl.rlim_cur;
	room = rl.rlim_cur * num / den / per;
	return room ? (unsigned)room : 1;
}
