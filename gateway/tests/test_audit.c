/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The audit writer's failure paths: a full queue is counted and reported, a full disk never hangs it; and a
 * client's raw bytes in an event are escaped and bounded, so the event always serializes.
 */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "tap.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct crgw_audit_event event(unsigned i)
{
	struct crgw_audit_event ev = { .kind = CRGW_AUDIT_DECISION, .service = "dns",
				       .action = CRGW_ACTION_DENY, .reason = CRGW_REASON_HOST_NOT_ALLOWED };

	snprintf(ev.sandbox_id, sizeof(ev.sandbox_id), "sbx-test");
	snprintf(ev.dst_host, sizeof(ev.dst_host), "n%u.example", i);
	/* Quotes, backslashes and control bytes must come out as valid JSON. */
	snprintf(ev.detail, sizeof(ev.detail), "quote \" backslash \\ tab \t bell \a %u", i);
	return ev;
}

/* crgw_audit_copy_raw on bytes `in` (len n) into a field of `size`: want `want`, and a line that parses. */
static void raw_case(const char *in, size_t n, size_t size, const char *want, const char *what)
{
	struct crgw_audit_event ev = { .kind = CRGW_AUDIT_DECISION, .service = "connect",
				       .action = CRGW_ACTION_DENY, .reason = CRGW_REASON_REQUEST_INVALID };
	char *line;
	json_t *j;

	crgw_audit_copy_raw(ev.dst_host, size, in, n);
	line = crgw_audit_format(&ev);
	j = line ? json_loads(line, 0, NULL) : NULL;
	/* An empty field is left out of the line. */
	const char *got = json_string_value(json_object_get(j, "dst_host"));

	tap_result(strcmp(ev.dst_host, want) == 0 && strlen(ev.dst_host) < size && j && !strcmp(got ? got : "", want),
		   "raw target, %s: \"%s\"", what, ev.dst_host);
	json_decref(j);
	free(line);
}

/* A client's raw target goes into dst_host escaped and bounded; the event always serializes. */
static void raw_targets(void)
{
	char big[1000], want[254];

	raw_case("0177.0.0.1:443", 14, 254, "0177.0.0.1:443", "printable ASCII is kept as it is");
	raw_case("no port here", 12, 254, "no\\x20port\\x20here", "spaces are escaped");
	raw_case("a\\b", 3, 254, "a\\x5cb", "a backslash is escaped, so escapes are unambiguous");
	raw_case("x\xff\xc3\x28.test", 9, 254, "x\\xff\\xc3(.test", "bytes that are not UTF-8 are escaped");
	raw_case("n\0ul\r\n\t", 7, 254, "n\\x00ul\\x0d\\x0a\\x09", "NUL and control bytes are escaped");
	raw_case("", 0, 254, "", "nothing stays nothing");
	memset(big, 'a', sizeof(big));
	memset(want, 'a', 250);
	memcpy(want + 250, "...", 4);
	raw_case(big, sizeof(big), 254, want, "a long target is cut to the field and ends in ...");
	memset(big, ' ', sizeof(big));
	raw_case(big, 5, 12, "\\x20\\x20...", "a cut never splits an escape");
	raw_case("abcd", 4, 5, "abcd", "what fits exactly is not cut");
	raw_case("abcde", 5, 5, "a...", "one byte too many is cut");
}

/* ---- the formatter against jansson ---------------------------------------------------------------- */

/*
 * The line as jansson wrote it before the gateway had its own formatter (JSON_COMPACT, JSON_PRESERVE_ORDER,
 * JSON_ENSURE_ASCII): the reference the direct formatter must match byte for byte.
 */
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

static int ref_str(json_t *o, const char *key, const char *v)
{
	if (!v || !*v)
		return 0;
	return json_object_set_new(o, key, json_string(v));
}

static int ref_u64(json_t *o, const char *key, uint64_t v)
{
	return json_object_set_new(o, key, json_integer((json_int_t)v));
}

static char *jansson_format(const struct crgw_audit_event *ev)
{
	json_t *o = json_object();
	char ts[40];
	struct tm tm;
	time_t secs = (time_t)(ev->ts_us / 1000000);
	size_t n;
	char *out = NULL;
	int err = 0;

	if (!o)
		return NULL;
	gmtime_r(&secs, &tm);
	n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, sizeof(ts) - n, ".%06dZ", (int)(ev->ts_us % 1000000));
	/* Every insertion is checked: jansson drops members silently when memory runs out. */
	err |= ref_str(o, "ts", ts);
	err |= ref_u64(o, "schema", CRGW_AUDIT_SCHEMA);
	err |= ref_str(o, "event", kind_names[ev->kind]);
	err |= ref_str(o, "sandbox_id", ev->sandbox_id);
	err |= ref_str(o, "run_id", ev->run_id);
	err |= ref_str(o, "policy_hash", ev->policy_hash);
	err |= ref_str(o, "service", ev->service);
	err |= ref_str(o, "dst_host", ev->dst_host);
	err |= ref_str(o, "dst_ip", ev->dst_ip);
	if (ev->dst_port)
		err |= ref_u64(o, "dst_port", ev->dst_port);
	err |= ref_str(o, "src_ip", ev->src_ip);
	if (ev->action != CRGW_ACTION_NONE)
		err |= ref_str(o, "action", action_names[ev->action]);
	if (ev->action != CRGW_ACTION_NONE || ev->reason != CRGW_REASON_NONE)
		err |= json_object_set_new(o, "reason_code",
					   ev->reason ? json_string(crgw_reason_str(ev->reason)) : json_null());
	err |= ref_str(o, "rule", ev->rule);
	err |= ref_str(o, "qtype", ev->qtype);
	err |= ref_str(o, "operation", ev->operation);
	err |= ref_str(o, "path", ev->path);
	err |= ref_str(o, "ref", ev->ref);
	err |= ref_str(o, "secret_id", ev->secret_id);
	err |= ref_str(o, "registry", ev->registry);
	err |= ref_str(o, "package", ev->package);
	err |= ref_str(o, "version", ev->version);
	err |= ref_str(o, "integrity", ev->integrity);
	if (ev->cache_hit)
		err |= json_object_set_new(o, "cache", json_string("hit"));
	err |= ref_str(o, "detail", ev->detail);
	if (ev->count)
		err |= ref_u64(o, "count", ev->count);
	if (ev->has_bytes) {
		err |= ref_u64(o, "bytes_up", ev->bytes_up);
		err |= ref_u64(o, "bytes_down", ev->bytes_down);
		err |= ref_u64(o, "duration_ms", ev->duration_ms);
	}
	if (ev->limits_off) {
		err |= ref_str(o, "limits", "off");
	} else if (ev->has_limits) {
		/* 0 is "no limit" in every field: printed as null, never as a limit of zero. */
		json_t *l = json_pack("{s:o, s:o, s:o}",
				      "memory_bytes", ev->limit_memory ? json_integer((json_int_t)ev->limit_memory) : json_null(),
				      "pids", ev->limit_pids ? json_integer((json_int_t)ev->limit_pids) : json_null(),
				      "cpus", ev->limit_cpu_milli ? json_real(ev->limit_cpu_milli / 1000.0) : json_null());

		err |= !l || json_object_set_new(o, "limits", l);
	}
	if (ev->ttl_s)
		err |= ref_u64(o, "ttl_s", (uint64_t)ev->ttl_s);
	if (ev->has_usage) {
		json_t *u = json_pack("{s:I, s:I, s:I, s:I}", "oom_kills", (json_int_t)ev->oom_kills, "pids_denied",
				      (json_int_t)ev->pids_denied, "memory_peak_bytes", (json_int_t)ev->memory_peak,
				      "cpu_ms", (json_int_t)ev->cpu_ms);

		err |= !u || json_object_set_new(o, "usage", u);
	}
	if (!err)
		out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	json_decref(o);
	return out;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static bool junk_allowed; /* one event in ten may hold invalid UTF-8 */

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* A field of random content: plain ASCII, JSON's specials, control bytes, UTF-8 of every length, or junk. */
static void fill(char *dst, size_t size)
{
	static const char *const pieces[] = { "a", "Z", "0", ".", "/", "-", " ", "\"", "\\", "\b", "\f", "\n", "\r",
					      "\t", "\x01", "\x1f", "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
					      "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf", "\xc2\x80" };
	static const char *const junk[] = { "\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82",
					    "\x80", "\xf8\x88\x80\x80\x80" };
	size_t want = rnd() % 4 == 0 ? 0 : rnd() % (size - 1), used = 0;

	while (used < want) {
		const char *p = junk_allowed && rnd() % 100 == 0 ? junk[rnd() % 7] : pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
		size_t n = strlen(p);

		if (used + n > want)
			break;
		memcpy(dst + used, p, n);
		used += n;
	}
	dst[used] = '\0';
}

static void random_event(struct crgw_audit_event *ev)
{
	static const char *const services[] = { "dns", "connect", "tls", "http", NULL };

	memset(ev, 0, sizeof(*ev));
	junk_allowed = rnd() % 10 == 0;
	ev->kind = (enum crgw_audit_kind)(rnd() % (CRGW_AUDIT_CONFIG_REFUSED + 1));
	ev->ts_us = (int64_t)(rnd() % 4102444800000000ULL);
	ev->service = services[rnd() % 5];
	fill(ev->sandbox_id, sizeof(ev->sandbox_id));
	fill(ev->run_id, sizeof(ev->run_id));
	fill(ev->policy_hash, sizeof(ev->policy_hash));
	fill(ev->dst_host, sizeof(ev->dst_host));
	fill(ev->dst_ip, sizeof(ev->dst_ip));
	ev->dst_port = (uint16_t)(rnd() % 3 ? rnd() : 0);
	fill(ev->src_ip, sizeof(ev->src_ip));
	ev->action = (enum crgw_audit_action)(rnd() % 4);
	ev->reason = (enum crgw_reason)(rnd() % 3 ? 0 : 1 + rnd() % 5);
	fill(ev->rule, sizeof(ev->rule));
	fill(ev->qtype, sizeof(ev->qtype));
	fill(ev->operation, sizeof(ev->operation));
	fill(ev->path, sizeof(ev->path));
	fill(ev->ref, sizeof(ev->ref));
	fill(ev->secret_id, sizeof(ev->secret_id));
	fill(ev->registry, sizeof(ev->registry));
	fill(ev->package, sizeof(ev->package));
	fill(ev->version, sizeof(ev->version));
	fill(ev->integrity, sizeof(ev->integrity));
	ev->cache_hit = rnd() % 2;
	fill(ev->detail, sizeof(ev->detail));
	ev->count = rnd() % 2 ? rnd() % 100000 : 0;
	ev->has_bytes = rnd() % 2;
	ev->bytes_up = rnd() >> (rnd() % 2 ? 1 : 40);
	ev->bytes_down = rnd() >> 20;
	ev->duration_ms = rnd() % 86400000;
	ev->limits_off = rnd() % 5 == 0;
	ev->has_limits = rnd() % 2;
	ev->limit_memory = rnd() % 3 ? rnd() >> 20 : 0;
	ev->limit_pids = rnd() % 3 ? rnd() % 100000 : 0;
	ev->limit_cpu_milli = (uint32_t)(rnd() % 3 ? rnd() % (rnd() % 2 ? 4000 : 4294967295U) : 0);
	ev->ttl_s = rnd() % 2 ? (int64_t)(rnd() % 1000000) : 0;
	ev->has_usage = rnd() % 2;
	ev->oom_kills = rnd() % 10;
	ev->pids_denied = rnd() % 1000;
	ev->memory_peak = rnd() >> 20;
	ev->cpu_ms = rnd() % 10000000;
}

static void against_jansson(void)
{
	unsigned same = 0, refused = 0, total = 20000;
	struct crgw_audit_event ev;
	char worst[CRGW_AUDIT_LINE_MAX];
	ssize_t n;

	for (unsigned i = 0; i < total; i++) {
		char *want, *got;

		random_event(&ev);
		want = jansson_format(&ev);
		got = crgw_audit_format(&ev);
		if (!want && !got) {
			refused++;
			same++;
		} else if (want && got && !strcmp(want, got)) {
			same++;
		} else if (same + 3 > i) {
			printf("# differs:\n#  jansson: %s\n#  direct:  %s\n", want ? want : "(none)", got ? got : "(none)");
		}
		free(want);
		free(got);
	}
	tap_result(same == total, "the direct formatter writes jansson's line for %u of %u random events (%u refused "
		   "by both for invalid UTF-8)", same, total, refused);
	tap_result(refused > 0 && refused < total / 2, "the random events include invalid UTF-8 (%u)", refused);

	/* Every field full of control bytes: the worst case fits CRGW_AUDIT_LINE_MAX. */
	random_event(&ev);
	ev.has_limits = ev.has_usage = ev.has_bytes = true;
	ev.limits_off = false;
#define WORST(f) (memset((f), '\x01', sizeof(f) - 1), (f)[sizeof(f) - 1] = '\0')
	WORST(ev.sandbox_id), WORST(ev.run_id), WORST(ev.policy_hash), WORST(ev.dst_host), WORST(ev.dst_ip);
	WORST(ev.src_ip), WORST(ev.rule), WORST(ev.qtype), WORST(ev.operation), WORST(ev.path), WORST(ev.ref);
	WORST(ev.secret_id), WORST(ev.registry), WORST(ev.package), WORST(ev.version), WORST(ev.integrity);
	WORST(ev.detail);
#undef WORST
	n = crgw_audit_format_into(&ev, worst, sizeof(worst));
	tap_result(n > 10000 && (size_t)n < sizeof(worst), "every field escaped at its worst fits (%zd of %zu bytes)", n,
		   sizeof(worst));
	tap_result(crgw_audit_format_into(&ev, worst, 100) == -1, "a line that does not fit is refused, not cut");
}

int main(void)
{
	char dir[] = "/tmp/crgw-test-audit-XXXXXX", path[128], line[4096];
	unsigned refused = 0, lines = 0, decisions = 0, bad = 0;
	uint64_t loss_count = 0;
	struct crgw_audit_stats st;
	FILE *f;

	raw_targets();
	against_jansson();
	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/audit.log", dir);

	/* A queue of 64 and a burst of 5,000: some are refused, and the loss is itself recorded. */
	tap_result(crgw_audit_start(path, 1u << 30, 5, 64, false) == 0, "the writer starts");
	for (unsigned i = 0; i < 5000; i++) {
		struct crgw_audit_event ev = event(i);

		if (crgw_audit_emit(&ev) == -ENOBUFS)
			refused++;
	}
	crgw_audit_get_stats(&st);
	crgw_audit_stop();
	tap_result(refused > 0, "a full queue refuses events (%u of 5000)", refused);
	tap_result(st.lost == refused, "every refused event is counted as lost (%llu)", (unsigned long long)st.lost);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f)) {
		json_t *j = json_loads(line, 0, NULL);
		const char *kind = json_string_value(json_object_get(j, "event"));

		lines++;
		if (!j || !kind)
			bad++;
		else if (!strcmp(kind, "decision"))
			decisions++;
		else if (!strcmp(kind, "audit_loss"))
			loss_count += (uint64_t)json_integer_value(json_object_get(j, "count"));
		json_decref(j);
	}
	if (f)
		fclose(f);
	tap_result(bad == 0, "every line is a JSON object with an event (%u lines)", lines);
	tap_result(decisions + refused == 5000, "written plus refused is every event (%u + %u)", decisions, refused);
	tap_result(loss_count == refused, "audit_loss events account for every refused event (%llu)",
		   (unsigned long long)loss_count);

	/* With loss allowed, emit says yes and the loss is still counted. */
	unlink(path);
	tap_result(crgw_audit_start(path, 1u << 30, 5, 64, true) == 0, "the writer starts with loss allowed");
	refused = 0;
	for (unsigned i = 0; i < 2000; i++) {
		struct crgw_audit_event ev = event(i);

		if (crgw_audit_emit(&ev))
			refused++;
	}
	crgw_audit_get_stats(&st);
	crgw_audit_stop();
	tap_result(refused == 0 && st.lost > 0, "allow_loss: emit never refuses, losses are counted (%llu)",
		   (unsigned long long)st.lost);

	/*
	 * A disk that refuses every write (a file size limit of one byte: EFBIG, as ENOSPC would be): the writer
	 * retries, counts, and still stops in bounded time. A device such as /dev/full is no audit log.
	 */
	{
		struct rlimit old, tiny;
		char full[160];
		double t0;

		snprintf(full, sizeof(full), "%s/full.log", dir);
		tap_result(crgw_audit_start("/dev/full", 1u << 30, 0, 64, false) == -EINVAL,
			   "a device is refused as the audit log (it would be renamed by rotation)");
		getrlimit(RLIMIT_FSIZE, &old);
		tiny = old;
		tiny.rlim_cur = 1;
		signal(SIGXFSZ, SIG_IGN);
		setrlimit(RLIMIT_FSIZE, &tiny);
		tap_result(crgw_audit_start(full, 1u << 30, 0, 64, false) == 0, "the writer starts on a file it cannot grow");
		refused = 0;
		for (unsigned i = 0; i < 200; i++) {
			struct crgw_audit_event ev = event(i);

			if (crgw_audit_emit(&ev) == -ENOBUFS)
				refused++;
		}
		usleep(500000);
		crgw_audit_get_stats(&st);
		tap_result(st.write_errors > 0, "write errors are counted (%llu)", (unsigned long long)st.write_errors);
		t0 = now_s();
		crgw_audit_stop();
		tap_result(now_s() - t0 < 15, "stopping with a full disk takes %.1f s, not a retry per event",
			   now_s() - t0);
		setrlimit(RLIMIT_FSIZE, &old);
		unlink(full);
	}

	unlink(path);
	rmdir(dir);
	return tap_done();
}
