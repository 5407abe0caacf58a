/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The audit writer's failure paths: a full queue is counted and reported, a full disk never hangs it; and a
 * client's raw bytes in an event are escaped and bounded, so the event always serializes.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(void)
{
	char dir[] = "/tmp/crgw-test-audit-XXXXXX", path[128], line[4096];
	unsigned refused = 0, lines = 0, decisions = 0, bad = 0;
	uint64_t loss_count = 0;
	struct crgw_audit_stats st;
	FILE *f;

	raw_targets();
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

	/* A disk that refuses every write: the writer retries, counts, and still stops in bounded time. */
	if (access("/dev/full", W_OK) == 0) {
		double t0;

		tap_result(crgw_audit_start("/dev/full", 1u << 30, 0, 64, false) == 0, "the writer starts on /dev/full");
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
	}

	unlink(path);
	rmdir(dir);
	return tap_done();
}
