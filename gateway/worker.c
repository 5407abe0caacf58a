/* SPDX-License-Identifier: Apache-2.0 */
/* Worker threads: each runs DNS, the explicit proxy, mediation and the transparent listeners on its own loop. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "audit.h"
#include "config.h"
#include "dns.h"
#include "listen.h"
#include "log.h"
#include "mediation/mediation.h"
#include "proxy.h"
#include "sandbox.h"
#include "worker.h"

struct worker {
	unsigned index;
	pthread_t thread;
	bool started;
	const struct crgw_config *cfg;
	struct event_base *base;
	struct crgw_dns_server *dns;
	struct crgw_proxy *proxy;
	struct crgw_mediation *mediation;
	struct evconnlistener *transparent[2];
	struct crgw_accept_guard guard[2];
	struct event *released; /* activated from the main thread when a sandbox is released */
};

static struct worker *workers;
static unsigned nworkers;

/*
 * Connections the nftables redirect sends to the transparent listeners: port 80 to the HTTP one, every
 * other redirected port to the TLS/TCP one. The proxy decides each (proxy.c).
 */
static void transparent_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
			       void *arg)
{
	struct worker *w = arg;
	struct sockaddr_in orig;
	socklen_t olen = sizeof(orig);
	bool http = evconnlistener_get_fd(l) == evconnlistener_get_fd(w->transparent[0]);
	struct crgw_sandbox *sb = crgw_sandbox_for_accepted(fd, sa, salen, http ? "http" : "tls");

	if (!sb) {
		close(fd);
		return;
	}
	if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &orig, &olen) != 0 || orig.sin_family != AF_INET) {
		/* Not redirected here: nothing says where it was going. */
		log_warn("transparent connection without an original destination", "sandbox=%s", sb->id);
		close(fd);
		crgw_sandbox_unref(sb);
		return;
	}
	crgw_proxy_transparent(w->proxy, fd, sb, &orig, http);
	crgw_sandbox_unref(sb);
}

/*
 * A worker's loop. The epoll changelist folds the delete-then-add that a one-shot event re-armed in its own
 * callback amounts to into nothing: without it every relay step costs epoll_ctl calls.
 */
static struct event_base *worker_base_new(void)
{
	struct event_config *cfg = event_config_new();
	struct event_base *base;

	if (!cfg)
		return NULL;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}

static void transparent_accept_error(struct evconnlistener *l, void *arg)
{
	struct worker *w = arg;

	crgw_accept_guard_trip(&w->guard[l == w->transparent[0] ? 0 : 1]);
}

static int transparent_listener(struct worker *w, unsigned port, struct evconnlistener **out)
{
	int fd, err = crgw_listen_reuseport(SOCK_STREAM, (uint16_t)port, &fd);

	if (err)
		return err;
	/* Port 80's clients send their request first; other redirected ports may carry server-first protocols. */
	crgw_proxy_tune_listener(fd, out == &w->transparent[0]);
	*out = evconnlistener_new(w->base, transparent_accept, w, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
				  -1, fd);
	if (!*out) {
		close(fd);
		return -ENOMEM;
	}
	crgw_accept_guard_init(&w->guard[out == &w->transparent[0] ? 0 : 1], w->base, *out,
			       out == &w->transparent[0] ? "transparent-http" : "transparent-tcp");
	evconnlistener_set_error_cb(*out, transparent_accept_error);
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	sigset_t all;

	/* Signals belong to the main thread's loop. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	crgw_mediation_thread_fini();
	return NULL;
}

/* A sandbox was released: this worker's connections of it end now. */
static void on_sandbox_released(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	crgw_proxy_close_released(w->proxy);
	crgw_mediation_close_released(w->mediation);
}

static void sandbox_released(void)
{
	for (unsigned i = 0; i < nworkers; i++)
		if (workers[i].released)
			event_active(workers[i].released, 0, 0);
}

static void worker_free(struct worker *w)
{
	/* Tunnels first: one waiting for a lookup is called back when the DNS server goes. */
	crgw_proxy_free(w->proxy);
	crgw_mediation_free(w->mediation);
	crgw_dns_server_free(w->dns);
	for (unsigned i = 0; i < 2; i++)
		if (w->transparent[i]) {
			crgw_accept_guard_fini(&w->guard[i]);
			evconnlistener_free(w->transparent[i]);
		}
	if (w->released)
		event_free(w->released);
	if (w->base)
		event_base_free(w->base);
}

int crgw_workers_start(const struct crgw_config *cfg)
{
	int err = 0;

	workers = calloc(cfg->workers, sizeof(*workers));
	if (!workers)
		return -ENOMEM;
	nworkers = cfg->workers;
	for (unsigned i = 0; i < nworkers && !err; i++) {
		struct worker *w = &workers[i];

		w->index = i;
		w->cfg = cfg;
		w->base = worker_base_new();
		if (!w->base) {
			err = -ENOMEM;
			break;
		}
		err = crgw_dns_server_new(w->base, cfg, &w->dns);
		if (err) {
			log_error("cannot listen for DNS", "port=53 error=\"%s\"", strerror(-err));
			break;
		}
		err = crgw_proxy_new(w->base, cfg, w->dns, &w->proxy);
		if (err) {
			log_error("cannot listen for the explicit proxy", "port=3128 error=\"%s\"", strerror(-err));
			break;
		}
		err = crgw_mediation_new(w->base, cfg, w->dns, &w->mediation);
		if (err) {
			log_error("cannot listen for mediation", "port=8170 error=\"%s\"", strerror(-err));
			break;
		}
		crgw_proxy_set_mediation(w->proxy, w->mediation);
		w->released = event_new(w->base, -1, 0, on_sandbox_released, w);
		if (!w->released) {
			err = -ENOMEM;
			break;
		}
		err = transparent_listener(w, cfg->transparent_http_port, &w->transparent[0]);
		if (!err)
			err = transparent_listener(w, cfg->transparent_tcp_port, &w->transparent[1]);
		if (err)
			log_error("cannot listen for transparent connections", "error=\"%s\"", strerror(-err));
	}
	for (unsigned i = 0; i < nworkers && !err; i++) {
		err = -pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
		workers[i].started = !err;
	}
	if (err)
		crgw_workers_stop();
	else
		crgw_sandbox_on_release(sandbox_released);
	return err;
}

void crgw_workers_stop(void)
{
	/*
	 * loopexit, not loopbreak: a break is a flag that event_base_loop clears as it starts, so a worker
	 * stopped before its loop began (a start-up failing right after the threads) ran for ever. loopexit is
	 * an event, taken whenever the loop gets to it.
	 */
	crgw_sandbox_on_release(NULL);
	for (unsigned i = 0; i < nworkers; i++)
		if (workers[i].started)
			event_base_loopexit(workers[i].base, NULL);
	for (unsigned i = 0; i < nworkers; i++)
		if (workers[i].started)
			pthread_join(workers[i].thread, NULL);
	for (unsigned i = 0; i < nworkers; i++)
		worker_free(&workers[i]);
	free(workers);
	workers = NULL;
	nworkers = 0;
}
