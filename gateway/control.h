/* SPDX-License-Identifier: Apache-2.0 */
/* The control API (SPEC section 7): HTTP/JSON on a unix socket, served on the main thread's loop. */
#ifndef CRGW_GATEWAY_CONTROL_H
#define CRGW_GATEWAY_CONTROL_H

#include <event2/event.h>

struct crgw_config;

/*
 * Binds the control socket at cfg->control_path (mode cfg->control_mode; a stale socket left by a dead
 * gateway is replaced, a live one is an error) and serves it on `base`. Returns 0 or -errno.
 */
int crgw_control_start(struct event_base *base, const struct crgw_config *cfg);

/* Closes the socket and ends every follower stream. */
void crgw_control_stop(void);

#endif
