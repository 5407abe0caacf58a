/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The proxies (SPEC section 5). On port 3128 of each sandbox's gateway address: `CONNECT host:port`, and
 * absolute-URI HTTP/1.1 requests. Redirected by nftables: TLS by SNI, HTTP by Host, other TCP by the names
 * the gateway's DNS bound to the address. Each is decided by the sandbox's policy and connected upstream
 * by the gateway (never to an address the rebinding check refuses); bytes move with splice(2) wherever
 * the gateway does not need to read them. One per worker, on the worker's loop.
 */
#ifndef CRGW_GATEWAY_PROXY_H
#define CRGW_GATEWAY_PROXY_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

struct crgw_config;
struct crgw_dns_server;
struct crgw_proxy;

#define CRGW_PROXY_PORT 3128

/* Binds the worker's listener (SO_REUSEPORT) on `base`; `dns` resolves names. Returns 0 or -errno. */
int crgw_proxy_new(struct event_base *base, const struct crgw_config *cfg, struct crgw_dns_server *dns,
		   struct crgw_proxy **out);

/* Closes every tunnel (with its connection_end event) and the listener. The loop must not be running. */
void crgw_proxy_free(struct crgw_proxy *px);

/* Closes the worker's connections of released sandboxes (crgw_sandbox_on_release); on px's thread. */
void crgw_proxy_close_released(struct crgw_proxy *px);

struct crgw_mediation;
/* The worker's mediation (borrowed, outliving `px`'s loop), which plain-http registry URLs are handed to. */
void crgw_proxy_set_mediation(struct crgw_proxy *px, struct crgw_mediation *m);

struct crgw_sandbox;
struct sockaddr_in;

/*
 * Takes a connection the nftables redirect sent to a transparent listener (`fd` is owned from here) from
 * sandbox `sb` (borrowed; the connection takes its own reference), whose original destination is `orig`.
 *
 * With `http` (redirected port 80), each request is decided on its Host field and forwarded to the name's
 * addresses as the gateway resolves them, on `orig`'s port. Otherwise a TLS client hello is decided on its
 * SNI, which must be bound by the gateway's DNS to `orig` for this sandbox; anything else on the bindings
 * of `orig` itself; allowed connections go to `orig` and are relayed like tunnels. Refusals are audited.
 */
void crgw_proxy_transparent(struct crgw_proxy *px, int fd, struct crgw_sandbox *sb, const struct sockaddr_in *orig,
			    bool http);

/*
 * Sets a proxy listener's options that accepted sockets inherit (TCP_NODELAY) and, when its clients always
 * speak first, TCP_DEFER_ACCEPT. Best effort.
 */
void crgw_proxy_tune_listener(int fd, bool client_speaks_first);

struct crgw_proxy_stats {
	uint64_t tunnels_open, tunnels_total, denied, upstream_failures, bytes_up, bytes_down;
};
void crgw_proxy_get_stats(struct crgw_proxy_stats *out);

#endif
