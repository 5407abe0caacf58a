/* SPDX-License-Identifier: Apache-2.0 */
/* Packet drops the kernel logs (NFLOG) turned into audit events: spoofing, DNS bypass, other egress. */
#ifndef CRGW_GATEWAY_DROPS_H
#define CRGW_GATEWAY_DROPS_H

#include <event2/event.h>

struct crgw_config;

/* Binds the configured NFLOG group and reads it on `base` (the control loop). Returns 0 or -errno. */
int crgw_drops_start(struct event_base *base, const struct crgw_config *cfg);
void crgw_drops_stop(void);

#endif
