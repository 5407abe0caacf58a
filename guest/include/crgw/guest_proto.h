/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest agent's wire protocol, shared by crgw-guest (inside the VM) and the host side in libcrgw-vm:
 * newline-delimited JSON frames on one byte stream, several executions multiplexed on it by a channel id
 * ("ch"), per-channel credit for the data in both directions. guest/README.md is the specification; this
 * header is its code: a line reader, a strict frame parser, frame writers and a bounded output queue. No
 * I/O beyond the queue's flush, no global state: both sides and the fuzzer link it as it is.
 */
#ifndef CRGW_GUEST_PROTO_H
#define CRGW_GUEST_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRGW_GUEST_PROTO_VERSION 1

/* The longest frame either side accepts, newline included; a longer line is refused and skipped. */
#define CRGW_GUEST_FRAME_MAX 65536
/* The most bytes of data one stdin/stdout/stderr frame carries (base64 of it fits a frame with room). */
#define CRGW_GUEST_DATA_MAX 32768
/* Unacknowledged data bytes a sender may have in flight per channel and direction. */
#define CRGW_GUEST_WINDOW (256 * 1024)
/* Limits of an open frame. */
#define CRGW_GUEST_ARGV_MAX 4096
#define CRGW_GUEST_ENV_MAX 4096
/* Channel ids are 1 .. CRGW_GUEST_CH_MAX; 0 names the connection itself (hello, connection errors). */
#define CRGW_GUEST_CH_MAX 0x7fffffffu

enum crgw_guest_frame_type {
	/* guest → host */
	CRGW_GF_HELLO = 1, /* the agent is ready: version, limits */
	CRGW_GF_STDOUT,	   /* data */
	CRGW_GF_STDERR,	   /* data */
	CRGW_GF_EXIT,	   /* code (0-255, 128+N for signal N), optional error text; ends the channel */
	CRGW_GF_ERROR,	   /* reason, message: a frame was refused; on a channel, that channel has ended */
	/* host → guest */
	CRGW_GF_OPEN,	/* argv, env, cwd, tty, rows, cols, stdin: starts an execution on a new channel */
	CRGW_GF_STDIN,	/* data */
	CRGW_GF_EOF,	/* the end of stdin */
	CRGW_GF_RESIZE, /* rows, cols */
	CRGW_GF_SIGNAL, /* sig: to the execution's process group */
	CRGW_GF_CLOSE,	/* the host gives the channel up: the execution is killed, its exit still follows */
	/* both ways */
	CRGW_GF_ACK, /* n: data bytes of the channel the receiver has consumed (credit back) */
};

/*
 * One parsed frame. Strings and arrays point into `root` (owned by the frame); `data` is owned by the
 * frame. Fields a type does not carry are zero.
 */
struct crgw_guest_frame {
	enum crgw_guest_frame_type type;
	uint32_t ch;
	/* open */
	const char **argv; /* NULL-terminated, argc >= 1 */
	size_t argc;
	const char **env; /* NULL-terminated NAME=VALUE entries; NULL when absent */
	size_t nenv;
	const char *cwd; /* NULL: the agent's default */
	bool tty;
	bool has_stdin;	     /* open: whether stdin frames will come (else the command reads /dev/null) */
	unsigned rows, cols; /* open, resize: 0 when unknown */
	/* signal */
	int sig;
	/* ack */
	uint32_t n;
	/* exit */
	int code;
	/* exit (optional), error */
	const char *reason; /* error: a short machine word ("bad_frame", "no_channel", …) */
	const char *message;
	/* hello */
	int version;
	/* stdin, stdout, stderr */
	unsigned char *data;
	size_t len;
	json_t *root;
};

/*
 * Parses one frame from `line` (`len` bytes, no newline; need not be NUL-terminated). Every field is
 * checked against the limits above and the type's shape; unknown keys are ignored, so later versions can
 * add some. Returns 0 with `*f` filled (release it with crgw_guest_frame_clear), or -EPROTO / -ENOMEM with
 * a short reason word in `reason` and a message in `err` (either may be NULL). The ch of a refused frame,
 * when it could be read, is left in f->ch (else 0) so the answer can name it.
 */
int crgw_guest_frame_parse(const char *line, size_t len, struct crgw_guest_frame *f, const char **reason, char *err,
			   size_t errlen);
void crgw_guest_frame_clear(struct crgw_guest_frame *f);

/* "stdout", "open", … for a type; NULL for none. */
const char *crgw_guest_frame_type_name(enum crgw_guest_frame_type type);

/*
 * Splits a byte stream into lines of at most CRGW_GUEST_FRAME_MAX bytes. The caller reads into the space
 * crgw_guest_reader_space() gives and reports it with _commit(); _next() then yields lines one by one.
 */
struct crgw_guest_reader {
	char buf[CRGW_GUEST_FRAME_MAX];
	size_t len;    /* bytes held */
	size_t scan;   /* bytes already known to hold no newline */
	size_t start;  /* where the next line begins (lines handed out are consumed on the next call) */
	bool skipping; /* inside a line that was too long: dropped up to its newline */
};

void crgw_guest_reader_init(struct crgw_guest_reader *r);
/* Where to read to and how much fits (never 0: a full buffer without a newline is dropped as too long). */
char *crgw_guest_reader_space(struct crgw_guest_reader *r, size_t *avail);
void crgw_guest_reader_commit(struct crgw_guest_reader *r, size_t n);
/*
 * The next complete line (without its newline) in `*line`/`*len`, borrowed until the next call: returns
 * 1 for a line, 0 when more input is needed, -EMSGSIZE once for each line that was too long (it is
 * skipped; the stream stays in step at its newline).
 */
int crgw_guest_reader_next(struct crgw_guest_reader *r, const char **line, size_t *len);

/*
 * A bounded queue of bytes going out on the stream. `max` is fixed at creation: an append past it fails
 * with -ENOBUFS and appends nothing, so a frame is queued whole or not at all.
 */
struct crgw_guest_outq {
	char *buf;
	size_t off, len, cap, max;
};

int crgw_guest_outq_init(struct crgw_guest_outq *q, size_t max);
void crgw_guest_outq_free(struct crgw_guest_outq *q);
static inline size_t crgw_guest_outq_pending(const struct crgw_guest_outq *q)
{
	return q->len - q->off;
}
/* Writes what it can to `fd` (non-blocking). Returns 0 (also when some is left), or -errno. */
int crgw_guest_outq_flush(struct crgw_guest_outq *q, int fd);

/*
 * Frame writers: each appends one whole frame, newline included, or nothing. Strings are borrowed.
 * Return 0, -ENOBUFS (queue full), -EINVAL (out of the protocol's bounds) or -ENOMEM.
 */
int crgw_guest_put_data(struct crgw_guest_outq *q, enum crgw_guest_frame_type type, uint32_t ch, const void *data,
			size_t len);
int crgw_guest_put_simple(struct crgw_guest_outq *q, enum crgw_guest_frame_type type, uint32_t ch);
int crgw_guest_put_ack(struct crgw_guest_outq *q, uint32_t ch, uint32_t n);
int crgw_guest_put_signal(struct crgw_guest_outq *q, uint32_t ch, int sig);
int crgw_guest_put_resize(struct crgw_guest_outq *q, uint32_t ch, unsigned rows, unsigned cols);
int crgw_guest_put_exit(struct crgw_guest_outq *q, uint32_t ch, int code, const char *error);
int crgw_guest_put_error(struct crgw_guest_outq *q, uint32_t ch, const char *reason, const char *message);
int crgw_guest_put_hello(struct crgw_guest_outq *q);

/* What an open frame asks for; the pointers are borrowed. */
struct crgw_guest_open {
	char *const *argv;
	char *const *env; /* may be NULL */
	const char *cwd;  /* may be NULL */
	bool tty, has_stdin;
	unsigned rows, cols;
};
int crgw_guest_put_open(struct crgw_guest_outq *q, uint32_t ch, const struct crgw_guest_open *o);

/* Base64 (RFC 4648, padded). _decode refuses anything else; returns the decoded length or -EINVAL. */
size_t crgw_guest_b64_encode(const unsigned char *in, size_t len, char *out);
long crgw_guest_b64_decode(const char *in, size_t len, unsigned char *out, size_t outmax);

#endif
