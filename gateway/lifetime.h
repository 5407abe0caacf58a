/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What ends a sandbox besides a request: its holder process ending, its TTL running out, or an OOM kill in
 * its group (which ends the whole sandbox). One watch per sandbox on the control thread's loop.
 */
#ifndef CRGW_GATEWAY_LIFETIME_H
#define CRGW_GATEWAY_LIFETIME_H

struct event_base;
struct crgw_sandbox;

/* Sets the loop the watches run on. Control thread. */
void crgw_lifetime_init(struct event_base *base);

/*
 * Watches a freshly registered sandbox: releases it when its holder ends ("its holder process ended"),
 * when its TTL ends ("ttl expired"), or at its first OOM kill ("out of memory"). The watch keeps only the
 * id and its own descriptors, so it outlives a release made elsewhere and then frees itself. Returns 0 or
 * -errno (the sandbox is then released only on request or at its TTL's end by the next watch).
 */
int crgw_lifetime_watch(const struct crgw_sandbox *sb);

/* Frees every watch (shutdown). */
void crgw_lifetime_fini(void);

#endif
