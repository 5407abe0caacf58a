/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The explicit proxy (SPEC section 5): `CONNECT host:port` on port 3128 of each sandbox's gateway address,
 * decided by the sandbox's policy, connected upstream by the gateway (never to an address the rebinding
 * check refuses), then relayed with splice(2). One per worker, on the worker's loop.
 */
#ifndef CRGW_GATEWAY_PROXY_H
#define CRGW_GATEWAY_PROXY_H

#include <event2/event.h>

struct crgw_config;
struct crgw_dns_server;
struct crgw_proxy;

#define CRGW_PROXY_PORT 3128

/* Binds the worker's listener (SO_REUSEPORT) on `base`; `dns` resolves names. Returns 0 or -errno. */
int crgw_proxy_new(struct event_base *base, const struct crgw_config *cfg, struct crgw_dns_server *dns,
		   struct crgw_proxy **out);

/* Closes every tunnel (with its connection_end event) and the listener. The loop must not be running. */
void crgw_proxy_free(struct crgw_proxy *px);

struct crgw_sandbox;
struct sockaddr_in;

/*
 * Takes a connection the nftables redirect sent to the transparent TCP listener (`fd` is owned from
 * here) from sandbox `sb` (borrowed; the tunnel takes its own reference), whose original destination is
 * `orig`. A TLS client hello is decided on its SNI, which must be bound by the gateway's DNS to `orig`
 * for this sandbox; anything else on the bindings of `orig` itself. Allowed connections go to `orig` and
 * are relayed like tunnels; the rest are closed and audited.
 */
void crgw_proxy_transparent(struct crgw_proxy *px, int fd, struct crgw_sandbox *sb, const struct sockaddr_in *orig);

struct crgw_proxy_stats {
	uint64_t tunnels_open, tunnels_total, denied, upstream_failures, bytes_up, bytes_down;
};
void crgw_proxy_get_stats(struct crgw_proxy_stats *out);

#endif
