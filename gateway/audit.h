/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The audit log (SPEC section 6): workers fill a fixed event record and queue it; one writer thread
 * serializes JSON lines, appends them, rotates by size, reopens on request, and feeds live followers.
 */
#ifndef CRGW_GATEWAY_AUDIT_H
#define CRGW_GATEWAY_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "crgw/reason.h"

#define CRGW_AUDIT_SCHEMA 1

enum crgw_audit_kind {
	CRGW_AUDIT_DECISION,
	CRGW_AUDIT_CONNECTION_END,
	CRGW_AUDIT_SANDBOX_REGISTERED,
	CRGW_AUDIT_SANDBOX_RELEASED,
	CRGW_AUDIT_PACKET_DROP,
	CRGW_AUDIT_AUDIT_LOSS,
	CRGW_AUDIT_GATEWAY_STARTED,
	CRGW_AUDIT_GATEWAY_STOPPED,
	CRGW_AUDIT_SECRET_INJECTED,
	CRGW_AUDIT_CONFIG_RELOADED,
	CRGW_AUDIT_CONFIG_REFUSED,
};

enum crgw_audit_action { CRGW_ACTION_NONE, CRGW_ACTION_ALLOW, CRGW_ACTION_DENY, CRGW_ACTION_WARN };

/* One event. Every string is copied in, so the record outlives the sandbox and policy it names. */
struct crgw_audit_event {
	enum crgw_audit_kind kind;
	int64_t ts_us; /* filled by crgw_audit_emit() when 0 */
	char sandbox_id[24];
	char run_id[64];
	char policy_hash[72];
	const char *service; /* static: "dns", "connect", "tls", "http", "packet", "control", … */
	char dst_host[254];
	char dst_ip[46];
	uint16_t dst_port;
	char src_ip[46];
	enum crgw_audit_action action;
	enum crgw_reason reason;
	char rule[96];
	char qtype[12];
	/* mediation: what was asked of a service (git: fetch or push, the repository, a ref a push was refused
	 * for; secrets: the secret's id, never its value) */
	char operation[16];
	char path[256];
	char ref[256];
	char secret_id[65];
	/* registry mediation: which registry, the package and version asked for, the digest it was checked against */
	char registry[8];
	char package[256];
	char version[128];
	char integrity[136];
	bool cache_hit; /* served from the content cache (connection_end of a registry artifact) */
	char detail[160];
	uint64_t count; /* events this record stands for (rate-limited kinds); 0 prints nothing */
	uint64_t bytes_up, bytes_down, duration_ms;
	bool has_bytes;
	/* sandbox_registered: the limits it runs under ("limits"), or that it runs without ("off"). */
	bool has_limits, limits_off;
	uint64_t limit_memory, limit_pids;
	uint32_t limit_cpu_milli;
	uint64_t limit_disk; /* "disk_bytes": the size of its own disk; 0 prints nothing (it has none) */
	int64_t ttl_s; /* 0 prints nothing */
	/* sandbox_released: what it used ("usage"): its control group's figures, its disk's. */
	bool has_usage, has_disk_used;
	uint64_t oom_kills, pids_denied, memory_peak, cpu_ms, disk_used;
};

struct crgw_audit_stats {
	uint64_t queued, written, lost, write_errors, rotations, bytes;
	unsigned queue_depth;
};

/*
 * Starts the writer thread on `path` (created 0640 if missing, appended to otherwise). `queue` bounds the
 * events waiting; `allow_loss` says what happens when it is full (docs/audit.md). Returns 0 or -errno.
 */
int crgw_audit_start(const char *path, uint64_t max_bytes, unsigned keep, unsigned queue, bool allow_loss);

/*
 * Queues a copy of `ev`; never blocks on I/O. Returns 0, or -ENOBUFS when the queue is full: the loss is
 * counted and reported by an `audit_loss` event, and callers refuse the action they could not record
 * unless the operator allowed loss (then 0 is returned).
 */
int crgw_audit_emit(const struct crgw_audit_event *ev);

/* Asks the writer to reopen the file (SIGHUP). Async-signal-safe. */
void crgw_audit_reopen(void);

/* Writes out everything queued, stops the writer and closes the file. */
void crgw_audit_stop(void);

void crgw_audit_get_stats(struct crgw_audit_stats *out);

/*
 * Live followers: every written line gets a sequence number and stays in a ring of recent lines.
 * crgw_audit_recent() copies lines with sequence > `after` (at most `max`) into `cb`, and returns the last
 * sequence seen. `notify` is called from the writer thread after each batch (the control thread uses it
 * to wake up followers); set it once before crgw_audit_start().
 */
uint64_t crgw_audit_recent(uint64_t after, unsigned max, void (*cb)(void *arg, const char *line, size_t len),
			   void *arg);
void crgw_audit_set_notify(void (*notify)(void *arg), void *arg);

/*
 * Serializes one event as a JSON line without the newline (ASCII only, members in a fixed order, empty
 * fields left out) into `buf` of `size`, NUL-terminated; returns its length, or -1 when a field is not
 * valid UTF-8 or the line does not fit. CRGW_AUDIT_LINE_MAX always fits: every field escaped at its worst.
 */
#define CRGW_AUDIT_LINE_MAX (sizeof(struct crgw_audit_event) * 6 + 1024)
ssize_t crgw_audit_format_into(const struct crgw_audit_event *ev, char *buf, size_t size);
/* The same as a new malloc'ed string, or NULL. */
char *crgw_audit_format(const struct crgw_audit_event *ev);

/* Copies `src` into a fixed field, truncating. */
void crgw_audit_copy(char *dst, size_t size, const char *src);
#define AUDIT_SET(field, src) crgw_audit_copy((field), sizeof(field), (src))

/*
 * Copies `len` bytes a client sent (borrowed; any bytes at all) into a fixed field as printable ASCII that
 * cannot be mistaken for a normalized name: bytes outside 0x21-0x7e, and the backslash itself, become
 * \xHH (lowercase hex). What does not fit in `size` - 1 bytes is cut, and the text then ends in "...".
 * So an event never fails to serialize over invalid UTF-8, and never grows past its field.
 */
void crgw_audit_copy_raw(char *dst, size_t size, const char *src, size_t len);
#define AUDIT_SET_RAW(field, src, len) crgw_audit_copy_raw((field), sizeof(field), (src), (len))

#endif
