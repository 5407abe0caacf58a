/* SPDX-License-Identifier: Apache-2.0 */
/* Worker threads: each runs its own libevent loop with its own SO_REUSEPORT listeners. */
#ifndef CRGW_GATEWAY_WORKER_H
#define CRGW_GATEWAY_WORKER_H

struct crgw_config;

/*
 * Creates `cfg->workers` workers with their sockets (errors such as a port in use come back here, on the
 * calling thread) and starts their threads. Returns 0 or -errno, with nothing left running on failure.
 */
int crgw_workers_start(const struct crgw_config *cfg);

/* Stops every loop, joins the threads and frees the workers. */
void crgw_workers_stop(void);

#endif
