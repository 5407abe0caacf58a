/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The frame code alone: base64 both ways and its refusals, the line reader on streams cut anywhere and on
 * lines over the limit, the queue's bound, the parser's limits and shapes, the kernel command line of the
 * init, and a replay of the fuzz corpus (no crash, every refusal has a reason).
 * usage: test_guest_proto CORPUS-DIR
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "crgw/guest_proto.h"
#include "tap.h"

static void test_base64(void)
{
	unsigned char in[300], back[300];
	char enc[404];
	bool ok = true;

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 7 + 3);
	for (size_t len = 0; len <= sizeof(in); len++) {
		size_t n = crgw_guest_b64_encode(in, len, enc);
		long m = crgw_guest_b64_decode(enc, n, back, sizeof(back));

		if (n != (len + 2) / 3 * 4 || m != (long)len || memcmp(in, back, len))
			ok = false;
	}
	tap_result(ok, "base64 round trips for every length 0..300");
	tap_result(crgw_guest_b64_decode("aGk=", 4, back, sizeof(back)) == 2 && !memcmp(back, "hi", 2), "aGk= is hi");
	static const char *const bad[] = {"aGk", "aG=k", "a===", "aGl=", "aGk=aGk=", "aG!=", "===="};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		tap_result(crgw_guest_b64_decode(bad[i], strlen(bad[i]), back, sizeof(back)) == -EINVAL,
			   "base64 %s refused (unpadded, misplaced padding, slack bits, padding inside)", bad[i]);
	tap_result(crgw_guest_b64_decode("aGVsbG8=", 8, back, 4) == -EINVAL, "decoding past the output's size refused");
}

/* Feeds `stream` to a reader `step` bytes at a time; collects lines joined by '|', too-long ones as '!'. */
static void feed(const char *stream, size_t len, size_t step, char *out, size_t outlen)
{
	static struct crgw_guest_reader r;
	size_t off = 0, o = 0;

	crgw_guest_reader_init(&r);
	out[0] = '\0';
	while (off < len) {
		size_t avail, n;
		char *space = crgw_guest_reader_space(&r, &avail);
		const char *line;
		size_t ll;
		int got;

		n = len - off < step ? len - off : step;
		if (n > avail)
			n = avail;
		memcpy(space, stream + off, n);
		crgw_guest_reader_commit(&r, n);
		off += n;
		while ((got = crgw_guest_reader_next(&r, &line, &ll)) != 0) {
			if (got < 0)
				o += (size_t)snprintf(out + o, outlen - o, "!|");
			else
				o += (size_t)snprintf(out + o, outlen - o, "%.*s|", ll > 20 ? 20 : (int)ll, line);
		}
	}
}

static void test_reader(void)
{
	char out[256];
	size_t big = CRGW_GUEST_FRAME_MAX * 3;
	char *stream = malloc(big + 64);
	bool ok = true;

	for (size_t step = 1; step < 12; step++) {
		feed("ab\ncd\n\nef\n", 10, step, out, sizeof(out));
		if (strcmp(out, "ab|cd||ef|"))
			ok = false;
	}
	tap_result(ok, "lines come out whole however the stream is cut");
	/* A line of exactly the limit (newline included) passes; one byte more is refused, and the next survives. */
	memset(stream, 'x', big);
	stream[CRGW_GUEST_FRAME_MAX - 1] = '\n';
	memcpy(stream + CRGW_GUEST_FRAME_MAX, "ok\n", 3);
	feed(stream, CRGW_GUEST_FRAME_MAX + 3, 4096, out, sizeof(out));
	tap_result(!strcmp(out, "xxxxxxxxxxxxxxxxxxxx|ok|"), "a line of %d bytes with its newline passes (%s)",
		   CRGW_GUEST_FRAME_MAX, out);
	memset(stream, 'x', big);
	stream[CRGW_GUEST_FRAME_MAX] = '\n';
	memcpy(stream + CRGW_GUEST_FRAME_MAX + 1, "ok\n", 3);
	feed(stream, CRGW_GUEST_FRAME_MAX + 4, 4096, out, sizeof(out));
	tap_result(!strcmp(out, "!|ok|"), "one byte more is refused once and the stream stays in step (%s)", out);
	memset(stream, 'x', big);
	memcpy(stream + big, "\nok\n", 4);
	feed(stream, big + 4, 65536, out, sizeof(out));
	tap_result(!strcmp(out, "!|ok|"), "a line of three times the limit is refused once (%s)", out);
	free(stream);
}

static void test_outq(void)
{
	struct crgw_guest_outq q;
	static unsigned char data[CRGW_GUEST_DATA_MAX + 1];
	int n = 0, e;

	crgw_guest_outq_init(&q, 200000);
	while ((e = crgw_guest_put_data(&q, CRGW_GF_STDOUT, 1, data, CRGW_GUEST_DATA_MAX)) == 0)
		n++;
	tap_result(e == -ENOBUFS && n == 4 && crgw_guest_outq_pending(&q) <= 200000,
		   "the queue takes whole frames up to its bound, then refuses (%d frames, %zu bytes)", n,
		   crgw_guest_outq_pending(&q));
	tap_result(crgw_guest_put_data(&q, CRGW_GF_STDOUT, 1, data, CRGW_GUEST_DATA_MAX + 1) == -EINVAL,
		   "more data than a frame carries is refused");
	tap_result(crgw_guest_put_ack(&q, 0, 1) == -EINVAL && crgw_guest_put_signal(&q, 1, 65) == -EINVAL,
		   "writers refuse what the parser would refuse");
	crgw_guest_outq_free(&q);
}

static int parse(const char *s, const char **reason)
{
	struct crgw_guest_frame f;
	char err[200];
	int e = crgw_guest_frame_parse(s, strlen(s), &f, reason, err, sizeof(err));

	crgw_guest_frame_clear(&f);
	return e;
}

static void test_parser(void)
{
	const char *reason;
	struct crgw_guest_frame f;
	char *s;
	size_t n, cap = CRGW_GUEST_FRAME_MAX * 2;

	tap_result(
	    parse("{\"t\":\"open\",\"ch\":3,\"argv\":[\"ls\",\"-l\"],\"env\":[\"A=1\"],\"cwd\":\"/\",\"tty\":true,"
		  "\"stdin\":true,\"rows\":24,\"cols\":80,\"future\":{\"x\":1}}",
		  &reason) == 0,
	    "a full open frame parses, unknown keys ignored");
	s = malloc(cap);
	/* argv of CRGW_GUEST_ARGV_MAX + 1 one-letter entries */
	n = (size_t)snprintf(s, cap, "{\"t\":\"open\",\"ch\":1,\"argv\":[");
	for (int i = 0; i <= CRGW_GUEST_ARGV_MAX; i++)
		n += (size_t)snprintf(s + n, cap - n, "%s\"a\"", i ? "," : "");
	snprintf(s + n, cap - n, "]}");
	tap_result(parse(s, &reason) == -EPROTO && !strcmp(reason, "bad_frame"), "argv of %d entries refused",
		   CRGW_GUEST_ARGV_MAX + 1);
	/* data of CRGW_GUEST_DATA_MAX + 3 bytes */
	n = (size_t)snprintf(s, cap, "{\"t\":\"stdin\",\"ch\":1,\"data\":\"");
	memset(s + n, 'A', (CRGW_GUEST_DATA_MAX + 3) / 3 * 4);
	n += (CRGW_GUEST_DATA_MAX + 3) / 3 * 4;
	snprintf(s + n, cap - n, "\"}");
	tap_result(parse(s, &reason) == -EPROTO, "data over %d bytes refused", CRGW_GUEST_DATA_MAX);
	free(s);
	tap_result(parse("{\"t\":\"ack\",\"ch\":1,\"n\":262145}", &reason) == -EPROTO,
		   "an ack over the window refused");
	tap_result(parse("{\"t\":\"exit\",\"ch\":1,\"code\":256}", &reason) == -EPROTO, "exit code 256 refused");
	tap_result(parse("{\"t\":\"exit\",\"ch\":4294967296,\"code\":0}", &reason) == -EPROTO,
		   "a channel over 2^31-1 refused");
	tap_result(parse("{\"t\":\"open\",\"ch\":1,\"argv\":[\"a\\u0000b\"]}", &reason) == -EPROTO &&
		       !strcmp(reason, "bad_json"),
		   "a NUL inside a string refused (argv must be C strings)");
	tap_result(parse("{\"t\":\"stdout\",\"ch\":1,\"data\":\"aGk=\",\"t\":\"stderr\"}", &reason) == -EPROTO,
		   "duplicate keys refused");
	tap_result(crgw_guest_frame_parse("{\"t\":\"eof\",\"ch\":7,", 19, &f, &reason, NULL, 0) == -EPROTO && f.ch == 0,
		   "a cut frame refused");
	tap_result(crgw_guest_frame_parse("{\"t\":\"eof\",\"ch\":7,\"x\":[}", 24, &f, &reason, NULL, 0) == -EPROTO,
		   "bad JSON refused");
	tap_result(crgw_guest_frame_parse("{\"t\":\"nope\",\"ch\":7}", 19, &f, &reason, NULL, 0) == -EPROTO &&
		       f.ch == 7 && !strcmp(reason, "unknown_type"),
		   "an unknown type is named, with its channel kept for the answer");
}

static void test_boot(void)
{
	struct guest_boot b;
	char err[200];

	tap_result(guest_boot_parse("console=ttyS0 crgw.ip=10.201.0.6/30 crgw.gw=10.201.0.5 crgw.dns=10.201.0.5 "
				    "crgw.mtu=1400 crgw.hostname=sb-1 crgw.future=1 quiet\n",
				    &b, err, sizeof(err)) == 0 &&
		       !strcmp(b.ip, "10.201.0.6/30") && !strcmp(b.gw, "10.201.0.5") && b.mtu == 1400 &&
		       !strcmp(b.port, "crgw.0") && !strcmp(b.ifname, "eth0") && !strcmp(b.hostname, "sb-1") &&
		       b.vsock == 0,
		   "the kernel command line's crgw.* parameters, with defaults");
	tap_result(guest_boot_parse("crgw.vsock=1024 crgw.port=other", &b, err, sizeof(err)) == 0 && b.vsock == 1024 &&
		       !strcmp(b.port, "other"),
		   "crgw.vsock and crgw.port");
	tap_result(guest_boot_parse("crgw.mtu=99999999999", &b, err, sizeof(err)) == -EINVAL,
		   "an MTU out of range refused");
	tap_result(guest_boot_parse("crgw.ip", &b, err, sizeof(err)) == -EINVAL,
		   "a crgw.* parameter without a value refused");
	tap_result(
	    guest_boot_parse("crgw.hostname=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &b,
			     err, sizeof(err)) == -EINVAL,
	    "a value too long refused, not cut");
}

static void test_corpus(const char *dir)
{
	char **names;
	size_t n = tap_list_dir(dir, "", &names);
	unsigned frames = 0, refused = 0;
	bool ok = n > 0;

	for (size_t i = 0; i < n; i++) {
		char path[512], *buf;
		size_t len;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		buf = tap_read_file(path, &len);
		for (char *line = buf, *nl; buf && line < buf + len; line = nl + 1) {
			struct crgw_guest_frame f;
			const char *reason;

			nl = memchr(line, '\n', (size_t)(buf + len - line));
			if (!nl)
				nl = buf + len;
			if (nl == line)
				continue;
			if (crgw_guest_frame_parse(line, (size_t)(nl - line), &f, &reason, NULL, 0) == 0)
				frames++;
			else if (reason)
				refused++;
			else
				ok = false;
			crgw_guest_frame_clear(&f);
		}
		free(buf);
		free(names[i]);
	}
	free(names);
	tap_result(ok && frames > 0 && refused > 0,
		   "the fuzz corpus replays: %u frames parse, %u refused with a reason", frames, refused);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS-DIR\n", argv[0]);
		return 2;
	}
	test_base64();
	test_reader();
	test_outq();
	test_parser();
	test_boot();
	test_corpus(argv[1]);
	return tap_done();
}
