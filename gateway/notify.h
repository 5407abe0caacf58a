/* SPDX-License-Identifier: Apache-2.0 */
/* Telling a service manager (systemd's Type=notify) that the gateway is ready or stopping. */
#ifndef CRGW_GATEWAY_NOTIFY_H
#define CRGW_GATEWAY_NOTIFY_H

/*
 * Sends `state` (e.g. "READY=1", "STOPPING=1"; newline-separated assignments) as one datagram to the
 * unix socket named by $NOTIFY_SOCKET: a path, or an abstract name written with a leading '@'. Without
 * $NOTIFY_SOCKET it does nothing and returns 0, so the gateway runs the same outside a service manager.
 * Returns 0 or -errno (-EINVAL for a $NOTIFY_SOCKET that names no unix socket) and logs a warning on
 * failure: a lost notification is the service manager's timeout to handle, never a reason to stop.
 * Borrows `state`. Main thread.
 */
int crgw_notify(const char *state);

#endif
