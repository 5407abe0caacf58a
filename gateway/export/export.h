/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Audit export: the audit stream sent, besides the file (the source of truth), to the operator's
 * pipelines: syslog (RFC 5424 over UDP, TCP with octet counting, or TLS) and OpenTelemetry (OTLP/HTTP
 * JSON logs). The audit writer hands each written batch to every sink's spool on disk; a thread per sink
 * delivers from the spool, retries with backoff, and resumes after a restart. A full spool drops new
 * events for that sink, counts them and reports the loss as an audit_loss event (docs/audit.md, "Export").
 */
#ifndef CRGW_GATEWAY_EXPORT_H
#define CRGW_GATEWAY_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Opens every sink's spool under DATA_DIR/spool/NAME and starts its thread. 0 or -errno with `err`. */
int crgw_export_start(const struct crgw_config *cfg, char *err, size_t errlen);

/* Stops the threads (what is not delivered stays in the spools for the next start). */
void crgw_export_stop(void);

/* Appends `len` bytes of whole lines (`events` of them) to every sink's spool. The audit writer only. */
void crgw_export_offer(const char *lines, size_t len, unsigned events);

struct crgw_export_stats {
	char name[64];
	const char *type;
	uint64_t delivered, lost, failures, spool_bytes;
	int connected;
};

/* Copies the figures of at most `max` sinks; returns how many there are. Any thread. */
size_t crgw_export_get_stats(struct crgw_export_stats *out, size_t max);

/* ---- the deliverers (syslog.c, otlp.c), on their sink's thread ------------------------------------ */

struct export_sink;

/*
 * Delivers `n` lines (pointers and lengths into the spool's read buffer) to the receiver. Returns 0 when
 * the receiver has them (TCP and TLS: acknowledged by its TCP stack; OTLP: a 2xx answer), -EAGAIN to
 * retry later, -EBADMSG when the receiver refuses them for good (they are counted lost).
 */
int export_syslog_deliver(struct export_sink *s, const char *const *lines, const size_t *lens, size_t n);
int export_otlp_deliver(struct export_sink *s, const char *const *lines, const size_t *lens, size_t n);
void export_syslog_close(struct export_sink *s);
void export_otlp_close(struct export_sink *s);

#endif
