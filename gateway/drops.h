/* SPDX-License-Identifier: Apache-2.0 */
/* Packet drops the kernel reports (NFLOG, the eBPF guard's ring buffer) turned into audit events. */
#ifndef CRGW_GATEWAY_DROPS_H
#define CRGW_GATEWAY_DROPS_H

#include <event2/event.h>
#include <stdbool.h>

struct crgw_config;
struct crgw_guard;

/*
 * Reads on `base` (the control loop): with `nft`, the configured NFLOG group (bound here); with `guard`
 * (borrowed, outliving the reader), the guard's drop events. Returns 0 or -errno.
 */
int crgw_drops_start(struct event_base *base, const struct crgw_config *cfg, bool nft, struct crgw_guard *guard);
void crgw_drops_stop(void);

#endif
