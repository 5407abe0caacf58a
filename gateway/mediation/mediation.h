/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The mediation service (SPEC section 5) on port 8170 of each sandbox's gateway address: plain HTTP/1.1
 * from the sandbox, routed on a canonical path to /git/ (smart HTTP with the operator's credential for
 * the host), /secrets/ (a request sent on with a secret's header) and /meta/ (what the sandbox may know
 * about itself). Upstreams are reached over verified TLS, only at addresses the gateway's DNS gave and
 * the policy's address checks pass. One per worker, on the worker's loop.
 */
#ifndef CRGW_MEDIATION_H
#define CRGW_MEDIATION_H

#include <event2/event.h>
#include <stdint.h>

struct crgw_config;
struct crgw_dns_server;
struct crgw_mediation;
struct crgw_sandbox;

#define CRGW_MEDIATION_PORT 8170

/* Process-wide set-up (libcurl, whose allocations are wiped when freed). Call once before any worker. */
int crgw_mediation_global_init(void);
void crgw_mediation_global_fini(void);

/* Binds the worker's listener (SO_REUSEPORT) on `base`; `dns` resolves upstream names. Returns 0 or -errno. */
int crgw_mediation_new(struct event_base *base, const struct crgw_config *cfg, struct crgw_dns_server *dns,
		       struct crgw_mediation **out);

/*
 * Takes `fd` (owned from here; a socket of this worker's loop, e.g. one end of a socketpair) as a
 * connection from `sb` (borrowed), as if the sandbox had connected to its gateway's port 8170: the
 * explicit proxy's way to hand over a request that only the mediation may serve. Returns 0 or -ENOMEM.
 */
int crgw_mediation_adopt(struct crgw_mediation *m, int fd, struct crgw_sandbox *sb);

/* What a worker thread's mediation keeps for itself (registry tokens): wiped by the thread, as its loop ends. */
void crgw_mediation_thread_fini(void);

/* Ends every exchange (with its connection_end event) and closes the listener. The loop must be stopped. */
void crgw_mediation_free(struct crgw_mediation *m);

/* Closes the worker's connections of released sandboxes (crgw_sandbox_on_release); on m's thread. */
void crgw_mediation_close_released(struct crgw_mediation *m);

/*
 * Checks, at registration, that the operator holds every secret the policy names. Returns 0, or -ENOENT
 * with `err` naming the first missing id (never a value).
 */
struct crgw_policy;
int crgw_mediation_check_policy(const struct crgw_policy *policy, char *err, size_t errlen);

/* What a sandbox's mediation remembers between requests (the refs a push may move); freed with it. */
struct crgw_mediation_state;
void crgw_mediation_state_free(struct crgw_mediation_state *st);

struct crgw_mediation_stats {
	uint64_t connections_open, requests, denied, upstream_failures, secrets_injected, bytes_up, bytes_down;
};
void crgw_mediation_get_stats(struct crgw_mediation_stats *out);

#endif
