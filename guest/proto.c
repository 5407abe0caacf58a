/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest agent's frames: the line reader, the strict parser (the host runs it on what an untrusted
 * guest sends, the guest on what the host sends), the writers and the bounded output queue.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crgw/guest_proto.h"

static const char *const type_names[] = {
    [CRGW_GF_HELLO] = "hello",	 [CRGW_GF_STDOUT] = "stdout", [CRGW_GF_STDERR] = "stderr", [CRGW_GF_EXIT] = "exit",
    [CRGW_GF_ERROR] = "error",	 [CRGW_GF_OPEN] = "open",     [CRGW_GF_STDIN] = "stdin",   [CRGW_GF_EOF] = "eof",
    [CRGW_GF_RESIZE] = "resize", [CRGW_GF_SIGNAL] = "signal", [CRGW_GF_CLOSE] = "close",   [CRGW_GF_ACK] = "ack",
};
#define NTYPES (sizeof(type_names) / sizeof(type_names[0]))

const char *crgw_guest_frame_type_name(enum crgw_guest_frame_type type)
{
	return (unsigned)type < NTYPES ? type_names[type] : NULL;
}

/* ---- base64 ----------------------------------------------------------------------------------- */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t crgw_guest_b64_encode(const unsigned char *in, size_t len, char *out)
{
	size_t o = 0, i = 0;

	for (; i + 3 <= len; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];

		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (len - i == 1) {
		unsigned v = (unsigned)in[i] << 16;

		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (len - i == 2) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;

		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = '=';
	}
	return o;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long crgw_guest_b64_decode(const char *in, size_t len, unsigned char *out, size_t outmax)
{
	size_t o = 0;

	/* Padded only, and canonical: one encoding per byte string, so nothing hides in slack bits. */
	if (len % 4)
		return -EINVAL;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		size_t pad = 0;
		bool last = i + 4 == len;

		for (int k = 0; k < 4; k++) {
			if (last && k >= 2 && in[i + k] == '=') {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad || (v[k] = b64_value((unsigned char)in[i + k])) < 0)
				return -EINVAL;
		}
		if (o + 3 - pad > outmax)
			return -EINVAL;
		unsigned w = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];

		if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff)))
			return -EINVAL;
		out[o++] = (unsigned char)(w >> 16);
		if (pad < 2)
			out[o++] = (unsigned char)(w >> 8);
		if (pad < 1)
			out[o++] = (unsigned char)w;
	}
	return (long)o;
}

/* ---- the parser ------------------------------------------------------------------------------- */

#define FAIL(why, ...)                                                                                                 \
	do {                                                                                                           \
		*reason_out = why;                                                                                     \
		if (err)                                                                                               \
			snprintf(err, errlen, __VA_ARGS__);                                                            \
		e = -EPROTO;                                                                                           \
		goto out;                                                                                              \
	} while (0)

/* An integer member in [lo, hi]; absent is `absent_ok` with *v untouched. */
static int get_int(json_t *root, const char *key, long long lo, long long hi, bool absent_ok, long long *v)
{
	json_t *j = json_object_get(root, key);

	if (!j)
		return absent_ok ? 0 : -ENOENT;
	if (!json_is_integer(j) || json_integer_value(j) < lo || json_integer_value(j) > hi)
		return -ERANGE;
	*v = json_integer_value(j);
	return 0;
}

/* A string array of 1..max (or 0..max) entries into a new NULL-terminated vector of borrowed strings. */
static int get_strings(json_t *arr, size_t min, size_t max, const char ***out, size_t *count)
{
	size_t n = json_array_size(arr), i;
	json_t *v;
	const char **vec;

	if (!json_is_array(arr) || n < min || n > max)
		return -ERANGE;
	vec = calloc(n + 1, sizeof(*vec));
	if (!vec)
		return -ENOMEM;
	json_array_foreach(arr, i, v)
	{
		if (!json_is_string(v)) {
			free(vec);
			return -EINVAL;
		}
		vec[i] = json_string_value(v);
	}
	*out = vec;
	*count = n;
	return 0;
}

static bool is_data_type(enum crgw_guest_frame_type t)
{
	return t == CRGW_GF_STDIN || t == CRGW_GF_STDOUT || t == CRGW_GF_STDERR;
}

int crgw_guest_frame_parse(const char *line, size_t len, struct crgw_guest_frame *f, const char **reason, char *err,
			   size_t errlen)
{
	const char *dummy_reason, **reason_out = reason ? reason : &dummy_reason;
	json_error_t jerr;
	json_t *t, *j;
	const char *type;
	long long v = 0;
	size_t i;
	int e = 0;

	memset(f, 0, sizeof(*f));
	*reason_out = NULL;
	if (len >= CRGW_GUEST_FRAME_MAX)
		FAIL("frame_too_long", "a frame of %zu bytes (the most is %d)", len, CRGW_GUEST_FRAME_MAX - 1);
	/* Duplicate keys refused: two readers of one frame must never see two different frames. */
	f->root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!f->root)
		FAIL("bad_json", "not JSON: %s at byte %d", jerr.text, jerr.position);
	if (!json_is_object(f->root))
		FAIL("bad_frame", "a frame is a JSON object");
	if (get_int(f->root, "ch", 0, CRGW_GUEST_CH_MAX, true, &v))
		FAIL("bad_frame", "\"ch\" is an integer from 0 to %u", CRGW_GUEST_CH_MAX);
	f->ch = (uint32_t)v;
	t = json_object_get(f->root, "t");
	type = json_string_value(t);
	if (!type)
		FAIL("bad_frame", "a frame has a type \"t\"");
	for (i = 1; i < NTYPES; i++)
		if (type_names[i] && !strcmp(type, type_names[i]))
			break;
	if (i == NTYPES)
		FAIL("unknown_type", "unknown frame type \"%.40s\"", type);
	f->type = (enum crgw_guest_frame_type)i;
	/* The connection's own frames have no channel; every other frame names one. */
	if (f->type == CRGW_GF_HELLO) {
		if (f->ch != 0)
			FAIL("bad_frame", "hello has no channel");
	} else if (f->type != CRGW_GF_ERROR && f->ch == 0) {
		FAIL("bad_frame", "%s needs a channel \"ch\" from 1", type);
	}

	if (is_data_type(f->type)) {
		const char *data;
		size_t dlen;
		long n;

		j = json_object_get(f->root, "data");
		data = json_string_value(j);
		dlen = json_string_length(j);
		if (!data || dlen > (CRGW_GUEST_DATA_MAX + 2) / 3 * 4)
			FAIL("bad_frame", "%s carries \"data\": base64 of at most %d bytes", type, CRGW_GUEST_DATA_MAX);
		f->data = malloc(dlen / 4 * 3 + 1);
		if (!f->data) {
			*reason_out = "no_memory";
			e = -ENOMEM;
			goto out;
		}
		n = crgw_guest_b64_decode(data, dlen, f->data, CRGW_GUEST_DATA_MAX);
		if (n < 0)
			FAIL("bad_frame", "%s: \"data\" is not padded base64", type);
		f->len = (size_t)n;
		goto out;
	}
	switch (f->type) {
	case CRGW_GF_HELLO:
		if (get_int(f->root, "v", 1, INT_MAX, false, &v))
			FAIL("bad_frame", "hello carries the protocol version \"v\"");
		f->version = (int)v;
		break;
	case CRGW_GF_EXIT:
		if (get_int(f->root, "code", 0, 255, false, &v))
			FAIL("bad_frame", "exit carries \"code\" from 0 to 255");
		f->code = (int)v;
		j = json_object_get(f->root, "error");
		if (j && !json_is_string(j))
			FAIL("bad_frame", "exit: \"error\" is a string");
		f->message = json_string_value(j);
		break;
	case CRGW_GF_ERROR:
		f->reason = json_string_value(json_object_get(f->root, "reason"));
		if (!f->reason)
			FAIL("bad_frame", "error carries \"reason\"");
		j = json_object_get(f->root, "message");
		if (j && !json_is_string(j))
			FAIL("bad_frame", "error: \"message\" is a string");
		f->message = json_string_value(j);
		break;
	case CRGW_GF_OPEN:
		if ((e = get_strings(json_object_get(f->root, "argv"), 1, CRGW_GUEST_ARGV_MAX, &f->argv, &f->argc))) {
			if (e == -ENOMEM)
				goto nomem;
			FAIL("bad_frame", "open carries \"argv\": 1 to %d strings", CRGW_GUEST_ARGV_MAX);
		}
		if (!f->argv[0][0])
			FAIL("bad_frame", "open: argv[0] is empty");
		j = json_object_get(f->root, "env");
		if (j) {
			if ((e = get_strings(j, 0, CRGW_GUEST_ENV_MAX, &f->env, &f->nenv))) {
				if (e == -ENOMEM)
					goto nomem;
				FAIL("bad_frame", "open: \"env\" is 0 to %d strings", CRGW_GUEST_ENV_MAX);
			}
			for (i = 0; i < f->nenv; i++) {
				const char *eq = strchr(f->env[i], '=');

				if (!eq || eq == f->env[i])
					FAIL("bad_frame", "open: env entry %zu is not NAME=VALUE", i);
			}
		}
		j = json_object_get(f->root, "cwd");
		if (j) {
			f->cwd = json_string_value(j);
			if (!f->cwd || f->cwd[0] != '/' || json_string_length(j) >= PATH_MAX)
				FAIL("bad_frame", "open: \"cwd\" is an absolute path");
		}
		j = json_object_get(f->root, "tty");
		if (j && !json_is_boolean(j))
			FAIL("bad_frame", "open: \"tty\" is true or false");
		f->tty = json_is_true(j);
		j = json_object_get(f->root, "stdin");
		if (j && !json_is_boolean(j))
			FAIL("bad_frame", "open: \"stdin\" is true or false");
		f->has_stdin = json_is_true(j);
		/* fall through: the window size */
		__attribute__((fallthrough));
	case CRGW_GF_RESIZE: {
		long long rows = 0, cols = 0;
		bool need = f->type == CRGW_GF_RESIZE;

		if (get_int(f->root, "rows", 0, 65535, !need, &rows) ||
		    get_int(f->root, "cols", 0, 65535, !need, &cols))
			FAIL("bad_frame", "%s: \"rows\" and \"cols\" are integers from 0 to 65535", type);
		f->rows = (unsigned)rows;
		f->cols = (unsigned)cols;
		break;
	}
	case CRGW_GF_SIGNAL:
		if (get_int(f->root, "sig", 1, 64, false, &v))
			FAIL("bad_frame", "signal carries \"sig\" from 1 to 64");
		f->sig = (int)v;
		break;
	case CRGW_GF_ACK:
		if (get_int(f->root, "n", 1, CRGW_GUEST_WINDOW, false, &v))
			FAIL("bad_frame", "ack carries \"n\" from 1 to %d", CRGW_GUEST_WINDOW);
		f->n = (uint32_t)v;
		break;
	default:
		break;
	}
out:
	if (e) {
		uint32_t ch = f->ch;

		crgw_guest_frame_clear(f);
		f->ch = ch;
	}
	return e;
nomem:
	*reason_out = "no_memory";
	e = -ENOMEM;
	goto out;
}

void crgw_guest_frame_clear(struct crgw_guest_frame *f)
{
	free(f->argv);
	free(f->env);
	free(f->data);
	json_decref(f->root);
	memset(f, 0, sizeof(*f));
}

/* ---- the line reader -------------------------------------------------------------------------- */

void crgw_guest_reader_init(struct crgw_guest_reader *r)
{
	r->len = r->scan = r->start = 0;
	r->skipping = false;
}

static void reader_compact(struct crgw_guest_reader *r)
{
	if (r->start == 0)
		return;
	memmove(r->buf, r->buf + r->start, r->len - r->start);
	r->len -= r->start;
	r->scan -= r->start;
	r->start = 0;
}

char *crgw_guest_reader_space(struct crgw_guest_reader *r, size_t *avail)
{
	reader_compact(r);
	if (r->len == sizeof(r->buf)) {
		/* A full buffer without a newline: too long. Drop it and skip to the newline. */
		r->len = r->scan = 0;
		r->skipping = true;
	}
	*avail = sizeof(r->buf) - r->len;
	return r->buf + r->len;
}

void crgw_guest_reader_commit(struct crgw_guest_reader *r, size_t n)
{
	r->len += n;
}

int crgw_guest_reader_next(struct crgw_guest_reader *r, const char **line, size_t *len)
{
	for (;;) {
		char *nl;

		if (r->scan < r->start)
			r->scan = r->start;
		nl = memchr(r->buf + r->scan, '\n', r->len - r->scan);
		if (!nl) {
			r->scan = r->len;
			if (r->skipping) {
				/* Nothing of a skipped line is kept: the whole buffer is free for what follows. */
				r->len = r->scan = r->start = 0;
			} else if (r->len - r->start >= sizeof(r->buf)) {
				r->len = r->scan = r->start = 0;
				r->skipping = true;
				return -EMSGSIZE;
			}
			return 0;
		}
		size_t begin = r->start, end = (size_t)(nl - r->buf);

		r->start = r->scan = end + 1;
		if (r->skipping) {
			/* The tail of a line already reported as too long. */
			r->skipping = false;
			continue;
		}
		*line = r->buf + begin;
		*len = end - begin;
		return 1;
	}
}

/* ---- the output queue and the writers --------------------------------------------------------- */

int crgw_guest_outq_init(struct crgw_guest_outq *q, size_t max)
{
	memset(q, 0, sizeof(*q));
	q->max = max;
	return 0;
}

void crgw_guest_outq_free(struct crgw_guest_outq *q)
{
	free(q->buf);
	memset(q, 0, sizeof(*q));
}

/* Room for `n` more bytes, within the queue's maximum. */
static int outq_reserve(struct crgw_guest_outq *q, size_t n)
{
	size_t need, cap;
	char *nb;

	if (q->off && q->off == q->len)
		q->off = q->len = 0;
	if (crgw_guest_outq_pending(q) + n > q->max)
		return -ENOBUFS;
	if (q->len + n <= q->cap)
		return 0;
	if (q->off) {
		memmove(q->buf, q->buf + q->off, q->len - q->off);
		q->len -= q->off;
		q->off = 0;
		if (q->len + n <= q->cap)
			return 0;
	}
	need = q->len + n;
	cap = q->cap ? q->cap : 4096;
	while (cap < need)
		cap *= 2;
	if (cap > q->max)
		cap = q->max;
	nb = realloc(q->buf, cap);
	if (!nb)
		return -ENOMEM;
	q->buf = nb;
	q->cap = cap;
	return 0;
}

int crgw_guest_outq_flush(struct crgw_guest_outq *q, int fd)
{
	while (q->off < q->len) {
		ssize_t n = write(fd, q->buf + q->off, q->len - q->off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -errno;
		}
		q->off += (size_t)n;
	}
	q->off = q->len = 0;
	return 0;
}

int crgw_guest_put_data(struct crgw_guest_outq *q, enum crgw_guest_frame_type type, uint32_t ch, const void *data,
			size_t len)
{
	char head[64];
	int hn, e;

	if (!is_data_type(type) || ch == 0 || ch > CRGW_GUEST_CH_MAX || len > CRGW_GUEST_DATA_MAX)
		return -EINVAL;
	hn = snprintf(head, sizeof(head), "{\"t\":\"%s\",\"ch\":%u,\"data\":\"", type_names[type], ch);
	if ((e = outq_reserve(q, (size_t)hn + (len + 2) / 3 * 4 + 3)))
		return e;
	memcpy(q->buf + q->len, head, (size_t)hn);
	q->len += (size_t)hn;
	q->len += crgw_guest_b64_encode(data, len, q->buf + q->len);
	memcpy(q->buf + q->len, "\"}\n", 3);
	q->len += 3;
	return 0;
}

static int put_bytes(struct crgw_guest_outq *q, const char *s, size_t n)
{
	int e = outq_reserve(q, n + 1);

	if (e)
		return e;
	memcpy(q->buf + q->len, s, n);
	q->len += n;
	q->buf[q->len++] = '\n';
	return 0;
}

/* Appends `obj` (taken) as one frame. */
static int put_json(struct crgw_guest_outq *q, json_t *obj)
{
	char *s;
	int e;

	if (!obj)
		return -EINVAL;
	s = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (!s)
		return -ENOMEM;
	e = strlen(s) + 1 > CRGW_GUEST_FRAME_MAX ? -EINVAL : put_bytes(q, s, strlen(s));
	free(s);
	return e;
}

static int put_fmt(struct crgw_guest_outq *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int put_fmt(struct crgw_guest_outq *q, const char *fmt, ...)
{
	char buf[160];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -EINVAL;
	return put_bytes(q, buf, (size_t)n);
}

int crgw_guest_put_simple(struct crgw_guest_outq *q, enum crgw_guest_frame_type type, uint32_t ch)
{
	if ((type != CRGW_GF_EOF && type != CRGW_GF_CLOSE) || ch == 0 || ch > CRGW_GUEST_CH_MAX)
		return -EINVAL;
	return put_fmt(q, "{\"t\":\"%s\",\"ch\":%u}", type_names[type], ch);
}

int crgw_guest_put_ack(struct crgw_guest_outq *q, uint32_t ch, uint32_t n)
{
	if (ch == 0 || ch > CRGW_GUEST_CH_MAX || n == 0 || n > CRGW_GUEST_WINDOW)
		return -EINVAL;
	return put_fmt(q, "{\"t\":\"ack\",\"ch\":%u,\"n\":%u}", ch, n);
}

int crgw_guest_put_signal(struct crgw_guest_outq *q, uint32_t ch, int sig)
{
	if (ch == 0 || ch > CRGW_GUEST_CH_MAX || sig < 1 || sig > 64)
		return -EINVAL;
	return put_fmt(q, "{\"t\":\"signal\",\"ch\":%u,\"sig\":%d}", ch, sig);
}

int crgw_guest_put_resize(struct crgw_guest_outq *q, uint32_t ch, unsigned rows, unsigned cols)
{
	if (ch == 0 || ch > CRGW_GUEST_CH_MAX || rows > 65535 || cols > 65535)
		return -EINVAL;
	return put_fmt(q, "{\"t\":\"resize\",\"ch\":%u,\"rows\":%u,\"cols\":%u}", ch, rows, cols);
}

int crgw_guest_put_exit(struct crgw_guest_outq *q, uint32_t ch, int code, const char *error)
{
	json_t *o;

	if (ch == 0 || ch > CRGW_GUEST_CH_MAX || code < 0 || code > 255)
		return -EINVAL;
	o = json_pack("{s:s, s:I, s:i}", "t", "exit", "ch", (json_int_t)ch, "code", code);
	/* A message that is not UTF-8 (a path in the error, say) is dropped rather than the exit. */
	if (o && error) {
		json_t *m = json_string(error);

		json_object_set_new(o, "error", m ? m : json_string("(not UTF-8)"));
	}
	return put_json(q, o);
}

int crgw_guest_put_error(struct crgw_guest_outq *q, uint32_t ch, const char *reason, const char *message)
{
	json_t *o;

	if (ch > CRGW_GUEST_CH_MAX || !reason)
		return -EINVAL;
	o = json_pack("{s:s, s:I, s:s}", "t", "error", "ch", (json_int_t)ch, "reason", reason);
	if (o && message) {
		json_t *m = json_string(message);

		json_object_set_new(o, "message", m ? m : json_string("(not UTF-8)"));
	}
	return put_json(q, o);
}

int crgw_guest_put_hello(struct crgw_guest_outq *q)
{
	return put_fmt(q, "{\"t\":\"hello\",\"v\":%d,\"frame_max\":%d,\"data_max\":%d,\"window\":%d}",
		       CRGW_GUEST_PROTO_VERSION, CRGW_GUEST_FRAME_MAX, CRGW_GUEST_DATA_MAX, CRGW_GUEST_WINDOW);
}

static json_t *string_array(char *const *v)
{
	json_t *a = json_array();

	for (size_t i = 0; a && v && v[i]; i++) {
		json_t *s = json_string(v[i]);

		if (!s || json_array_append_new(a, s)) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

int crgw_guest_put_open(struct crgw_guest_outq *q, uint32_t ch, const struct crgw_guest_open *o)
{
	json_t *f, *argv, *env = NULL;

	if (ch == 0 || ch > CRGW_GUEST_CH_MAX || !o->argv || !o->argv[0] || o->rows > 65535 || o->cols > 65535)
		return -EINVAL;
	argv = string_array(o->argv);
	if (o->env)
		env = string_array(o->env);
	if (!argv || (o->env && !env)) {
		json_decref(argv);
		json_decref(env);
		return -EINVAL; /* a string that is not UTF-8 */
	}
	f = json_pack("{s:s, s:I, s:o, s:b, s:b, s:i, s:i}", "t", "open", "ch", (json_int_t)ch, "argv", argv, "tty",
		      o->tty, "stdin", o->has_stdin, "rows", (int)o->rows, "cols", (int)o->cols);
	if (f && env)
		json_object_set_new(f, "env", env);
	else
		json_decref(env);
	if (f && o->cwd) {
		json_t *c = json_string(o->cwd);

		if (!c) {
			json_decref(f);
			return -EINVAL;
		}
		json_object_set_new(f, "cwd", c);
	}
	return put_json(q, f);
}
