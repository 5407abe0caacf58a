/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the guest protocol: the input is a byte stream as the host reads it from an
 * untrusted guest, fed in uneven pieces through the line reader; every line goes through the frame parser,
 * and what parses is written back out and must parse again to the same frame.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/guest_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_roundtrip(const struct crgw_guest_frame *f)
{
	struct crgw_guest_outq q;
	struct crgw_guest_frame g;
	int e = -1;

	crgw_guest_outq_init(&q, CRGW_GUEST_FRAME_MAX * 2);
	switch (f->type) {
	case CRGW_GF_STDIN:
	case CRGW_GF_STDOUT:
	case CRGW_GF_STDERR:
		e = crgw_guest_put_data(&q, f->type, f->ch, f->data, f->len);
		break;
	case CRGW_GF_ACK:
		e = crgw_guest_put_ack(&q, f->ch, f->n);
		break;
	case CRGW_GF_EXIT:
		e = crgw_guest_put_exit(&q, f->ch, f->code, f->message);
		break;
	case CRGW_GF_OPEN: {
		struct crgw_guest_open o = {.argv = (char *const *)f->argv,
					    .env = (char *const *)f->env,
					    .cwd = f->cwd,
					    .tty = f->tty,
					    .has_stdin = f->has_stdin,
					    .rows = f->rows,
					    .cols = f->cols};

		e = crgw_guest_put_open(&q, f->ch, &o);
		break;
	}
	default:
		break;
	}
	if (e == 0) {
		if (crgw_guest_frame_parse(q.buf, q.len - 1, &g, NULL, NULL, 0))
			abort();
		if (g.type != f->type || g.ch != f->ch || g.len != f->len ||
		    (f->len && memcmp(g.data, f->data, f->len)) || g.argc != f->argc || g.code != f->code ||
		    g.n != f->n)
			abort();
		crgw_guest_frame_clear(&g);
	}
	crgw_guest_outq_free(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct crgw_guest_reader r;
	size_t off = 0, step = 1;

	crgw_guest_reader_init(&r);
	while (off < size) {
		size_t avail, n;
		char *space = crgw_guest_reader_space(&r, &avail);
		const char *line;
		size_t len;
		int got;

		/* Pieces of 1, 2, 4 … bytes, then whatever fits: a stream split anywhere. */
		n = size - off < step ? size - off : step;
		if (n > avail)
			n = avail;
		memcpy(space, data + off, n);
		crgw_guest_reader_commit(&r, n);
		off += n;
		step = step < 65536 ? step * 2 : step;
		while ((got = crgw_guest_reader_next(&r, &line, &len)) != 0) {
			struct crgw_guest_frame f;
			char err[128];
			const char *reason;

			if (got < 0)
				continue;
			if (len >= CRGW_GUEST_FRAME_MAX)
				abort();
			if (crgw_guest_frame_parse(line, len, &f, &reason, err, sizeof(err)) == 0) {
				check_roundtrip(&f);
				crgw_guest_frame_clear(&f);
			} else if (!reason) {
				abort();
			}
		}
	}
	return 0;
}
