/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An audit event as one JSON line, written straight into a buffer. It used to be built as a jansson object
 * and dumped (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII); this writes the same bytes without an
 * allocation per member, which showed in the proxies' profiles (docs/performance.md). test_audit.c keeps
 * the jansson form as the reference and compares the two on every kind of field content.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"

static const char *const kind_names[] = {
	[CRGW_AUDIT_DECISION] = "decision",
	[CRGW_AUDIT_CONNECTION_END] = "connection_end",
	[CRGW_AUDIT_SANDBOX_REGISTERED] = "sandbox_registered",
	[CRGW_AUDIT_SANDBOX_RELEASED] = "sandbox_released",
	[CRGW_AUDIT_PACKET_DROP] = "packet_drop",
	[CRGW_AUDIT_AUDIT_LOSS] = "audit_loss",
	[CRGW_AUDIT_GATEWAY_STARTED] = "gateway_started",
	[CRGW_AUDIT_GATEWAY_STOPPED] = "gateway_stopped",
	[CRGW_AUDIT_SECRET_INJECTED] = "secret_injected",
	[CRGW_AUDIT_CONFIG_RELOADED] = "config_reloaded",
	[CRGW_AUDIT_CONFIG_REFUSED] = "config_reload_refused",
};
static const char *const action_names[] = { NULL, "allow", "deny", "warn" };

/* A bounded output: a write past the end sets `full`, and the line is then refused whole. */
struct line {
	char *p;
	size_t len, cap;
	bool full, bad;
};

static void put(struct line *l, const char *s, size_t n)
{
	if (l->len + n >= l->cap) {
		l->full = true;
		return;
	}
	memcpy(l->p + l->len, s, n);
	l->len += n;
}

static void put_str(struct line *l, const char *s)
{
	put(l, s, strlen(s));
}

static void put_u16_escape(struct line *l, unsigned u)
{
	static const char hex[] = "0123456789ABCDEF";
	char e[6] = { '\\', 'u', hex[(u >> 12) & 15], hex[(u >> 8) & 15], hex[(u >> 4) & 15], hex[u & 15] };

	put(l, e, sizeof(e));
}

/*
 * Decodes one UTF-8 sequence at `s` (`n` bytes left) into *cp; returns its length, or 0 when it is not
 * valid UTF-8 (jansson's rules: no overlong forms, no surrogates, nothing above U+10FFFF).
 */
static size_t utf8_next(const unsigned char *s, size_t n, unsigned *cp)
{
	unsigned c = s[0], v;
	size_t len;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c < 0xc2 || c > 0xf4)
		return 0;
	len = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
	if (len > n)
		return 0;
	v = c & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && v < 0x800) || (len == 4 && v < 0x10000) || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

/* A JSON string, ASCII only: what is not printable ASCII is escaped; invalid UTF-8 refuses the line. */
static void put_json_string(struct line *l, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str), i = 0;

	put(l, "\"", 1);
	while (i < n) {
		size_t run = i, step;
		unsigned cp;

		/* The common case, a run of plain ASCII, is copied at once. */
		while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\')
			run++;
		put(l, str + i, run - i);
		i = run;
		if (i == n)
			break;
		step = utf8_next(s + i, n - i, &cp);
		if (!step) {
			l->bad = true;
			return;
		}
		i += step;
		switch (cp) {
		case '"': put(l, "\\\"", 2); break;
		case '\\': put(l, "\\\\", 2); break;
		case '\b': put(l, "\\b", 2); break;
		case '\f': put(l, "\\f", 2); break;
		case '\n': put(l, "\\n", 2); break;
		case '\r': put(l, "\\r", 2); break;
		case '\t': put(l, "\\t", 2); break;
		default:
			if (cp < 0x10000) {
				put_u16_escape(l, cp);
			} else {
				put_u16_escape(l, 0xd800 | ((cp - 0x10000) >> 10));
				put_u16_escape(l, 0xdc00 | (cp & 0x3ff));
			}
		}
	}
	put(l, "\"", 1);
}

/* ,"key": — the first member of an object has no comma. */
static void put_key(struct line *l, const char *key)
{
	if (l->len && l->p[l->len - 1] != '{')
		put(l, ",", 1);
	put(l, "\"", 1);
	put_str(l, key);
	put(l, "\":", 2);
}

/* A string member; an absent or empty value leaves the member out. */
static void member_str(struct line *l, const char *key, const char *v)
{
	if (!v || !*v)
		return;
	put_key(l, key);
	put_json_string(l, v);
}

static void put_u64(struct line *l, uint64_t v)
{
	char digits[24];
	size_t i = sizeof(digits);

	do {
		digits[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(l, digits + i, sizeof(digits) - i);
}

static void member_u64(struct line *l, const char *key, uint64_t v)
{
	put_key(l, key);
	put_u64(l, v);
}

/* 0 is "no limit" in every limit field: null, never a limit of zero. */
static void member_limit(struct line *l, const char *key, uint64_t v)
{
	put_key(l, key);
	if (v)
		put_u64(l, v);
	else
		put_str(l, "null");
}

/*
 * CPUs as a JSON real, as jansson prints one: 17 significant digits, and ".0" on a whole number so that it
 * reads back as a real. A milli-CPU count over 1000 is always between 0.001 and 4.3e6: no exponent.
 */
static void member_cpus(struct line *l, uint32_t milli)
{
	char num[40];
	int n;

	put_key(l, "cpus");
	if (!milli) {
		put_str(l, "null");
		return;
	}
	n = snprintf(num, sizeof(num), "%.17g", milli / 1000.0);
	put(l, num, (size_t)n);
	if (!strchr(num, '.') && !strchr(num, 'e'))
		put(l, ".0", 2);
}

static void put_ts(struct line *l, int64_t ts_us)
{
	char ts[40];
	struct tm tm;
	time_t secs = (time_t)(ts_us / 1000000);
	size_t n;

	gmtime_r(&secs, &tm);
	n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, sizeof(ts) - n, ".%06dZ", (int)(ts_us % 1000000));
	member_str(l, "ts", ts);
}

ssize_t crgw_audit_format_into(const struct crgw_audit_event *ev, char *buf, size_t size)
{
	struct line l = { .p = buf, .cap = size };

	put(&l, "{", 1);
	put_ts(&l, ev->ts_us);
	member_u64(&l, "schema", CRGW_AUDIT_SCHEMA);
	member_str(&l, "event", kind_names[ev->kind]);
	member_str(&l, "sandbox_id", ev->sandbox_id);
	member_str(&l, "run_id", ev->run_id);
	member_str(&l, "policy_hash", ev->policy_hash);
	member_str(&l, "service", ev->service);
	member_str(&l, "dst_host", ev->dst_host);
	member_str(&l, "dst_ip", ev->dst_ip);
	if (ev->dst_port)
		member_u64(&l, "dst_port", ev->dst_port);
	member_str(&l, "src_ip", ev->src_ip);
	if (ev->action != CRGW_ACTION_NONE)
		member_str(&l, "action", action_names[ev->action]);
	if (ev->action != CRGW_ACTION_NONE || ev->reason != CRGW_REASON_NONE) {
		put_key(&l, "reason_code");
		if (ev->reason)
			put_json_string(&l, crgw_reason_str(ev->reason));
		else
			put_str(&l, "null");
	}
	member_str(&l, "rule", ev->rule);
	member_str(&l, "qtype", ev->qtype);
	member_str(&l, "operation", ev->operation);
	member_str(&l, "path", ev->path);
	member_str(&l, "ref", ev->ref);
	member_str(&l, "secret_id", ev->secret_id);
	member_str(&l, "registry", ev->registry);
	member_str(&l, "package", ev->package);
	member_str(&l, "version", ev->version);
	member_str(&l, "integrity", ev->integrity);
	if (ev->cache_hit)
		member_str(&l, "cache", "hit");
	member_str(&l, "detail", ev->detail);
	if (ev->count)
		member_u64(&l, "count", ev->count);
	if (ev->has_bytes) {
		member_u64(&l, "bytes_up", ev->bytes_up);
		member_u64(&l, "bytes_down", ev->bytes_down);
		member_u64(&l, "duration_ms", ev->duration_ms);
	}
	if (ev->limits_off) {
		member_str(&l, "limits", "off");
	} else if (ev->has_limits) {
		put_key(&l, "limits");
		put(&l, "{", 1);
		member_limit(&l, "memory_bytes", ev->limit_memory);
		member_limit(&l, "pids", ev->limit_pids);
		member_cpus(&l, ev->limit_cpu_milli);
		put(&l, "}", 1);
	}
	if (ev->limit_disk)
		member_u64(&l, "disk_bytes", ev->limit_disk);
	if (ev->ttl_s)
		member_u64(&l, "ttl_s", (uint64_t)ev->ttl_s);
	if (ev->has_usage || ev->has_disk_used) {
		put_key(&l, "usage");
		put(&l, "{", 1);
		if (ev->has_usage) {
			member_u64(&l, "oom_kills", ev->oom_kills);
			member_u64(&l, "pids_denied", ev->pids_denied);
			member_u64(&l, "memory_peak_bytes", ev->memory_peak);
			member_u64(&l, "cpu_ms", ev->cpu_ms);
		}
		if (ev->has_disk_used)
			member_u64(&l, "disk_used_bytes", ev->disk_used);
		put(&l, "}", 1);
	}
	put(&l, "}", 1);
	if (l.full || l.bad)
		return -1;
	buf[l.len] = '\0';
	return (ssize_t)l.len;
}

char *crgw_audit_format(const struct crgw_audit_event *ev)
{
	char buf[CRGW_AUDIT_LINE_MAX];
	ssize_t n = crgw_audit_format_into(ev, buf, sizeof(buf));
	char *line;

	if (n < 0)
		return NULL;
	line = malloc((size_t)n + 1);
	if (line)
		memcpy(line, buf, (size_t)n + 1);
	return line;
}
