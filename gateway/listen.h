/* SPDX-License-Identifier: Apache-2.0 */
/* The workers' listening sockets: one per worker per service, shared by the kernel through SO_REUSEPORT. */
#ifndef CRGW_GATEWAY_LISTEN_H
#define CRGW_GATEWAY_LISTEN_H

#include <stdint.h>

/*
 * Binds a non-blocking, close-on-exec IPv4 socket of `type` (SOCK_STREAM: listening, SO_REUSEADDR;
 * SOCK_DGRAM: IP_PKTINFO and a 4 MiB receive buffer) on 0.0.0.0:`port` with SO_REUSEPORT. Returns 0 with
 * the descriptor in `*out` (owned by the caller), or -errno.
 */
int crgw_listen_reuseport(int type, uint16_t port, int *out);

#endif
