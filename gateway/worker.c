/* SPDX-License-Identifier: Apache-2.0 */
/* Worker threads and the transparent listeners' placeholder until the proxies arrive. */
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
	struct evconnlistener *transparent[2];
};

static struct worker *workers;
static unsigned nworkers;

/*
 * Connections the nftables redirect sends to the transparent listeners. Everything but port 80 goes to
 * the transparent TLS/TCP relay (proxy.c). Port 80 waits for the transparent HTTP proxy: until then each
 * connection is decided (blocked ranges, IP rules, then the name the gateway's DNS bound to the address),
 * refused whatever the decision, and audited (rate limited).
 */
static void transparent_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
			       void *arg)
{
	struct worker *w = arg;
	struct sockaddr_in orig, *peer = (struct sockaddr_in *)sa;
	socklen_t olen = sizeof(orig);
	struct crgw_sandbox *sb = NULL;
	struct crgw_audit_event ev = { .kind = CRGW_AUDIT_DECISION, .action = CRGW_ACTION_DENY };
	bool http = evconnlistener_get_fd(l) == evconnlistener_get_fd(w->transparent[0]);
	struct crgw_decision d = { 0 };
	struct crgw_host h = { .kind = CRGW_HOST_IPV4 };

	ev.service = http ? "http" : "tls";
	sb = crgw_sandbox_for_accepted(fd, sa, salen, ev.service);
	if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &orig, &olen) != 0)
		memset(&orig, 0, sizeof(orig));
	inet_ntop(AF_INET, &orig.sin_addr, ev.dst_ip, sizeof(ev.dst_ip));
	ev.dst_port = ntohs(orig.sin_port);
	if (salen == sizeof(*peer))
		inet_ntop(AF_INET, &peer->sin_addr, ev.src_ip, sizeof(ev.src_ip));
	if (!sb) {
		close(fd);
		return;
	}
	/* Everything but port 80 goes to the transparent TLS/TCP relay. */
	if (!http && orig.sin_family == AF_INET) {
		crgw_proxy_transparent(w->proxy, fd, sb, &orig);
		crgw_sandbox_unref(sb);
		return;
	}
	close(fd);
	atomic_fetch_add(&sb->counters.connections_refused, 1);
	uint64_t suppressed = 0;

	if (!crgw_sandbox_audit_allowed(sb, &suppressed)) {
		crgw_sandbox_unref(sb);
		return;
	}
	if (suppressed)
		ev.count = suppressed + 1;
	AUDIT_SET(ev.sandbox_id, sb->id);
	AUDIT_SET(ev.run_id, sb->run_id);
	AUDIT_SET(ev.policy_hash, sb->policy_hash);
	memcpy(h.addr, &orig.sin_addr, 4);
	inet_ntop(AF_INET, h.addr, h.text, sizeof(h.text));
	h.len = (uint8_t)strlen(h.text);
	/* The address first: blocked ranges and CIDR denies hold whatever name the sandbox claims. */
	crgw_policy_check_address(sb->policy, crgw_gateway_blocklist(), &h, ev.dst_port, &d);
	if (d.allow) {
		struct crgw_binding_addr ba = { .family = AF_INET };
		struct crgw_host name = { 0 };

		memcpy(ba.addr, &orig.sin_addr, 4);
		/*
		 * The IP rules first (an explicit CIDR allow stands on its own); otherwise the name the gateway's
		 * DNS bound to this address for this sandbox decides.
		 */
		crgw_policy_decide(sb->policy, crgw_gateway_blocklist(), &h, ev.dst_port, &d);
		if (!(d.allow && d.rule && strcmp(d.rule, "sandbox.network.default")) &&
		    crgw_binding_name_for(sb, &ba, ev.dst_host) &&
		    crgw_host_parse(ev.dst_host, strlen(ev.dst_host), &name, NULL) == 0)
			crgw_policy_decide(sb->policy, crgw_gateway_blocklist(), &name, ev.dst_port, &d);
	}
	if (!d.allow) {
		ev.reason = d.reason;
		AUDIT_SET(ev.rule, d.rule);
	} else {
		ev.reason = CRGW_REASON_UPSTREAM_UNREACHABLE;
		AUDIT_SET(ev.rule, d.rule);
		AUDIT_SET(ev.detail, "allowed, but transparent relaying is not available in this version");
	}
	crgw_audit_emit(&ev);
	crgw_sandbox_unref(sb);
}

static int transparent_listener(struct worker *w, unsigned port, struct evconnlistener **out)
{
	int fd, err = crgw_listen_reuseport(SOCK_STREAM, (uint16_t)port, &fd);

	if (err)
		return err;
	*out = evconnlistener_new(w->base, transparent_accept, w, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
				  -1, fd);
	if (!*out) {
		close(fd);
		return -ENOMEM;
	}
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
	return NULL;
}

static void worker_free(struct worker *w)
{
	/* Tunnels first: one waiting for a lookup is called back when the DNS server goes. */
	crgw_proxy_free(w->proxy);
	crgw_dns_server_free(w->dns);
	for (unsigned i = 0; i < 2; i++)
		if (w->transparent[i])
			evconnlistener_free(w->transparent[i]);
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
		w->base = event_base_new();
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
	return err;
}

void crgw_workers_stop(void)
{
	for (unsigned i = 0; i < nworkers; i++)
		if (workers[i].started)
			event_base_loopbreak(workers[i].base);
	for (unsigned i = 0; i < nworkers; i++)
		if (workers[i].started)
			pthread_join(workers[i].thread, NULL);
	for (unsigned i = 0; i < nworkers; i++)
		worker_free(&workers[i]);
	free(workers);
	workers = NULL;
	nworkers = 0;
}
