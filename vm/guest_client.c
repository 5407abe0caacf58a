/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host side of the guest agent's protocol (guest/README.md): executions over one connection to
 * crgw-guest, each on its own channel, relaying descriptors both ways with the protocol's credit, so a slow
 * reader of one execution's output stalls that execution alone and nothing here grows without bound. The
 * guest is not trusted: every frame goes through the strict parser, and anything out of protocol ends the
 * run with an error that says what the guest did.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "crgw/guest_proto.h"
#include "vm_priv.h"

#define EXIT_RUN_FAILED 125
#define OUTQ_HIGH (256 * 1024)
#define OUTQ_MAX (1024 * 1024)
#define CONTROL_ROOM 4096
/* Acknowledge in batches: one small frame per this many bytes written, or when the buffer runs dry. */
#define ACK_BATCH (64 * 1024)

/* Output of one stream of one execution: what the guest sent that its descriptor has not taken yet. */
struct out_buf {
	int fd;
	unsigned char *buf; /* CRGW_GUEST_WINDOW bytes: the guest may not have more in flight */
	size_t off, len;
	bool broken; /* the descriptor refused a write: the rest is dropped (and acknowledged) */
};

struct run_exec {
	struct guest_exec *x;
	uint32_t ch;
	bool in_eof_sent, in_open;
	uint32_t in_unacked; /* stdin sent, not acknowledged by the guest */
	struct out_buf out[2];
	uint32_t to_ack; /* output written (or dropped), not yet acknowledged */
	bool done;	 /* exit or error received */
};

struct run {
	int fd;
	struct crgw_guest_reader rd;
	struct crgw_guest_outq q;
	struct run_exec *ex;
	size_t n;
	bool hello;
	int fatal_sig; /* the SIGTERM or SIGHUP that ended the sandbox (guest_client_opts.fatal_pidfd) */
	char *err;
	size_t errlen;
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static struct run_exec *exec_by_ch(struct run *r, uint32_t ch)
{
	if (ch == 0 || ch > r->n)
		return NULL;
	return &r->ex[ch - 1];
}

static size_t out_pending(const struct out_buf *o)
{
	return o->len - o->off;
}

/* Writes what a stream holds to its descriptor; counts what left for the ack. */
static void out_write(struct run_exec *e, struct out_buf *o)
{
	while (out_pending(o)) {
		ssize_t n = o->broken ? (ssize_t)out_pending(o) : write(o->fd, o->buf + o->off, out_pending(o));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			/* EPIPE, say: what the command writes now is dropped, and the guest still gets its credit. */
			o->broken = true;
			continue;
		}
		o->off += (size_t)n;
		e->to_ack += (uint32_t)n;
	}
	o->off = o->len = 0;
}

static void send_acks(struct run *r, struct run_exec *e)
{
	bool dry = !out_pending(&e->out[0]) && !out_pending(&e->out[1]);

	if (e->done || !e->to_ack || (!dry && e->to_ack < ACK_BATCH))
		return;
	if (crgw_guest_outq_pending(&r->q) + CONTROL_ROOM > OUTQ_MAX)
		return;
	if (crgw_guest_put_ack(&r->q, e->ch, e->to_ack) == 0)
		e->to_ack = 0;
}

/* A frame from the guest. Returns 0, or -EPROTO with the reason in r->err. */
static int on_frame(struct run *r, const struct crgw_guest_frame *f)
{
	struct run_exec *e;

	if (!r->hello) {
		if (f->type != CRGW_GF_HELLO) {
			snprintf(r->err, r->errlen, "the guest agent began with a %s frame, not hello",
				 crgw_guest_frame_type_name(f->type));
			return -EPROTO;
		}
		if (f->version != CRGW_GUEST_PROTO_VERSION) {
			snprintf(r->err, r->errlen, "the guest agent speaks protocol version %d, we speak %d",
				 f->version, CRGW_GUEST_PROTO_VERSION);
			return -EPROTO;
		}
		r->hello = true;
		return 0;
	}
	if (f->type == CRGW_GF_ERROR && f->ch == 0) {
		snprintf(r->err, r->errlen, "the guest agent refused a frame: %s%s%.200s", f->reason,
			 f->message ? ": " : "", f->message ? f->message : "");
		return -EPROTO;
	}
	e = exec_by_ch(r, f->ch);
	if (!e || f->type == CRGW_GF_HELLO || f->type == CRGW_GF_OPEN || f->type == CRGW_GF_STDIN ||
	    f->type == CRGW_GF_EOF || f->type == CRGW_GF_RESIZE || f->type == CRGW_GF_SIGNAL ||
	    f->type == CRGW_GF_CLOSE) {
		snprintf(r->err, r->errlen, "the guest agent sent a %s frame on channel %u, out of protocol",
			 crgw_guest_frame_type_name(f->type), f->ch);
		return -EPROTO;
	}
	if (e->done)
		return 0; /* the tail of a channel we gave up on */
	switch (f->type) {
	case CRGW_GF_STDOUT:
	case CRGW_GF_STDERR: {
		struct out_buf *o = &e->out[f->type == CRGW_GF_STDOUT ? 0 : 1];
		size_t held = out_pending(&e->out[0]) + out_pending(&e->out[1]) + e->to_ack;

		/* The guest's credit: what we hold or have written without acknowledging it. */
		if (held + f->len > CRGW_GUEST_WINDOW) {
			snprintf(r->err, r->errlen,
				 "the guest agent sent more than its window of %d bytes on channel %u",
				 CRGW_GUEST_WINDOW, f->ch);
			return -EPROTO;
		}
		if (!o->buf && !(o->buf = malloc(CRGW_GUEST_WINDOW))) {
			snprintf(r->err, r->errlen, "no memory for the output of channel %u", f->ch);
			return -ENOMEM;
		}
		if (o->off && o->len + f->len > CRGW_GUEST_WINDOW) {
			memmove(o->buf, o->buf + o->off, out_pending(o));
			o->len -= o->off;
			o->off = 0;
		}
		memcpy(o->buf + o->len, f->data, f->len);
		o->len += f->len;
		out_write(e, o);
		send_acks(r, e);
		break;
	}
	case CRGW_GF_ACK:
		if (f->n > e->in_unacked) {
			snprintf(r->err, r->errlen,
				 "the guest agent acknowledged %u bytes of stdin on channel %u, %u were sent", f->n,
				 f->ch, e->in_unacked);
			return -EPROTO;
		}
		e->in_unacked -= f->n;
		break;
	case CRGW_GF_EXIT:
		e->done = true;
		e->x->status = f->code;
		if (f->message)
			snprintf(e->x->error, sizeof(e->x->error), "%s", f->message);
		break;
	case CRGW_GF_ERROR:
		/* The guest refused this execution (its channel is then over) or something we sent on it. */
		e->done = true;
		e->x->status = EXIT_RUN_FAILED;
		snprintf(e->x->error, sizeof(e->x->error), "the guest agent: %s%s%.200s", f->reason,
			 f->message ? ": " : "", f->message ? f->message : "");
		crgw_guest_put_simple(&r->q, CRGW_GF_CLOSE, e->ch);
		break;
	default:
		snprintf(r->err, r->errlen, "the guest agent sent an unexpected %s frame",
			 crgw_guest_frame_type_name(f->type));
		return -EPROTO;
	}
	return 0;
}

static int read_agent(struct run *r)
{
	const char *line;
	size_t avail, len;
	char *space = crgw_guest_reader_space(&r->rd, &avail);
	ssize_t n = read(r->fd, space, avail);
	int got, e;

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n == 0) {
		snprintf(r->err, r->errlen, "the guest agent closed the connection before the command%s ended",
			 r->n > 1 ? "s" : "");
		return -EPIPE;
	}
	crgw_guest_reader_commit(&r->rd, (size_t)n);
	while ((got = crgw_guest_reader_next(&r->rd, &line, &len)) != 0) {
		struct crgw_guest_frame f;
		char why[200];

		if (got < 0) {
			snprintf(r->err, r->errlen, "the guest agent sent a frame longer than %d bytes",
				 CRGW_GUEST_FRAME_MAX);
			return -EPROTO;
		}
		if (len == 0)
			continue;
		if ((e = crgw_guest_frame_parse(line, len, &f, NULL, why, sizeof(why)))) {
			snprintf(r->err, r->errlen, "the guest agent sent a bad frame: %s", why);
			return e;
		}
		e = on_frame(r, &f);
		crgw_guest_frame_clear(&f);
		if (e)
			return e;
	}
	return 0;
}

/* Reads the caller's stdin for one execution, within the guest's credit. */
static void read_stdin(struct run *r, struct run_exec *e)
{
	unsigned char buf[CRGW_GUEST_DATA_MAX];
	size_t want = CRGW_GUEST_WINDOW - e->in_unacked;
	ssize_t n;

	if (want > sizeof(buf))
		want = sizeof(buf);
	n = read(e->x->in_fd, buf, want);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		e->in_open = false;
		if (crgw_guest_put_simple(&r->q, CRGW_GF_EOF, e->ch) == 0)
			e->in_eof_sent = true;
		return;
	}
	/* The watermark check before the read left room for this frame. */
	if (crgw_guest_put_data(&r->q, CRGW_GF_STDIN, e->ch, buf, (size_t)n) == 0)
		e->in_unacked += (uint32_t)n;
}

static void forward_signal(struct run *r, int sig, const struct guest_client_opts *o)
{
	if ((sig == SIGTERM || sig == SIGHUP) && o->fatal_ends) {
		syscall(SYS_pidfd_send_signal, o->fatal_pidfd, SIGKILL, NULL, 0);
		r->fatal_sig = sig;
		return;
	}
	for (size_t i = 0; i < r->n; i++) {
		struct run_exec *e = &r->ex[i];

		if (e->done)
			continue;
		if (sig == SIGWINCH) {
			struct winsize ws;

			if (e->x->tty && o->winsize_fd >= 0 && ioctl(o->winsize_fd, TIOCGWINSZ, &ws) == 0)
				crgw_guest_put_resize(&r->q, e->ch, ws.ws_row, ws.ws_col);
		} else {
			crgw_guest_put_signal(&r->q, e->ch, sig);
		}
	}
}

static bool all_done(const struct run *r)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct run_exec *e = &r->ex[i];

		if (!e->done || out_pending(&e->out[0]) || out_pending(&e->out[1]))
			return false;
	}
	return true;
}

int guest_client_run(int agent_fd, struct guest_exec *execs, size_t n, const struct guest_client_opts *opts, char *err,
		     size_t errlen)
{
	static const int fwd_sigs[] = {SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH};
	const struct guest_client_opts defaults = {.winsize_fd = -1};
	const struct guest_client_opts *o = opts ? opts : &defaults;
	struct run *r;
	sigset_t set, old;
	long long hello_deadline;
	int sfd = -1, e = 0;

	if (n == 0 || n > 64) {
		snprintf(err, errlen, "1 to 64 executions at once");
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (r)
		r->ex = calloc(n, sizeof(*r->ex));
	if (!r || !r->ex) {
		free(r);
		snprintf(err, errlen, "no memory");
		return -ENOMEM;
	}
	r->fd = agent_fd;
	r->n = n;
	r->err = err;
	r->errlen = errlen;
	crgw_guest_reader_init(&r->rd);
	crgw_guest_outq_init(&r->q, OUTQ_MAX);
	set_nonblock(agent_fd);
	for (size_t i = 0; i < n; i++) {
		struct run_exec *x = &r->ex[i];
		struct crgw_guest_open op = {.argv = execs[i].argv,
					     .env = execs[i].env,
					     .cwd = execs[i].cwd,
					     .tty = execs[i].tty,
					     .has_stdin = execs[i].in_fd >= 0,
					     .rows = execs[i].rows,
					     .cols = execs[i].cols};

		x->x = &execs[i];
		x->ch = (uint32_t)i + 1;
		x->in_open = execs[i].in_fd >= 0;
		x->out[0].fd = execs[i].out_fd;
		x->out[1].fd = execs[i].tty ? execs[i].out_fd : execs[i].err_fd;
		execs[i].status = EXIT_RUN_FAILED;
		execs[i].error[0] = '\0';
		if ((e = crgw_guest_put_open(&r->q, x->ch, &op))) {
			snprintf(err, errlen, "execution %zu: %s", i + 1,
				 e == -EINVAL ? "an argument, variable or directory is not UTF-8, or too long"
					      : strerror(-e));
			goto out;
		}
	}
	sigemptyset(&set);
	if (o->forward_signals)
		for (size_t i = 0; i < sizeof(fwd_sigs) / sizeof(fwd_sigs[0]); i++)
			sigaddset(&set, fwd_sigs[i]);
	sigprocmask(SIG_BLOCK, &set, &old);
	hello_deadline = now_ms() + o->hello_timeout_ms;
	/* The caller read the hello on this connection already (a backend waiting for the boot). */
	r->hello = o->hello_seen;
	if (o->forward_signals)
		sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);

	while (!all_done(r)) {
		struct pollfd pfd[2 + 64 * 3];
		struct run_exec *owner[sizeof(pfd) / sizeof(pfd[0])];
		int kind[sizeof(pfd) / sizeof(pfd[0])];
		unsigned k = 0;

		/*
		 * Nothing goes out before the agent's hello: virtio-serial discards what reaches a port the guest
		 * has not opened yet, so frames written early (the opens) could vanish while the VM boots.
		 */
		if (r->hello && (e = crgw_guest_outq_flush(&r->q, agent_fd))) {
			snprintf(err, errlen, "writing to the guest agent: %s", strerror(-e));
			goto restore;
		}
		pfd[k] = (struct pollfd){
		    .fd = agent_fd,
		    .events = (short)(POLLIN | (r->hello && crgw_guest_outq_pending(&r->q) ? POLLOUT : 0))};
		kind[k++] = 0;
		if (sfd >= 0) {
			pfd[k] = (struct pollfd){.fd = sfd, .events = POLLIN};
			kind[k++] = 1;
		}
		for (size_t i = 0; i < n; i++) {
			struct run_exec *x = &r->ex[i];

			if (x->in_open && !x->done && r->hello && x->in_unacked < CRGW_GUEST_WINDOW &&
			    crgw_guest_outq_pending(&r->q) < OUTQ_HIGH) {
				pfd[k] = (struct pollfd){.fd = x->x->in_fd, .events = POLLIN};
				owner[k] = x;
				kind[k++] = 2;
			}
			for (int s = 0; s < 2; s++)
				if (out_pending(&x->out[s])) {
					pfd[k] = (struct pollfd){.fd = x->out[s].fd, .events = POLLOUT};
					owner[k] = x;
					kind[k++] = 3 + s;
				}
		}
		int timeout = -1;

		if (!r->hello && o->hello_timeout_ms > 0) {
			timeout = (int)(hello_deadline - now_ms());
			if (timeout <= 0) {
				e = -ETIMEDOUT;
				snprintf(err, errlen, "the guest agent did not say hello within %d ms",
					 o->hello_timeout_ms);
				goto restore;
			}
		}
		if (poll(pfd, k, timeout) < 0) {
			if (errno == EINTR)
				continue;
			e = -errno;
			snprintf(err, errlen, "poll: %s", strerror(errno));
			goto restore;
		}
		for (unsigned i = 0; i < k; i++) {
			if (!pfd[i].revents)
				continue;
			switch (kind[i]) {
			case 0:
				if ((pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) && (e = read_agent(r)))
					goto restore;
				break;
			case 1: {
				struct signalfd_siginfo si;

				while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
					forward_signal(r, (int)si.ssi_signo, o);
				if (r->fatal_sig) {
					/* The VM is being killed: nothing more will come from it. */
					for (size_t x = 0; x < n; x++)
						if (!r->ex[x].done)
							execs[x].status = 128 + r->fatal_sig;
					goto restore;
				}
				break;
			}
			case 2:
				read_stdin(r, owner[i]);
				break;
			default:
				out_write(owner[i], &owner[i]->out[kind[i] - 3]);
				break;
			}
		}
		for (size_t i = 0; i < n; i++)
			send_acks(r, &r->ex[i]);
	}
	/* Whatever is queued (a last ack, a close) goes out if it can; the agent needs none of it. */
	if (r->hello)
		crgw_guest_outq_flush(&r->q, agent_fd);
restore:
	if (sfd >= 0)
		close(sfd);
	sigprocmask(SIG_SETMASK, &old, NULL);
out:
	if (e) {
		/* Give up every channel still running: the agent kills what ran there. */
		for (size_t i = 0; i < n; i++)
			if (!r->ex[i].done)
				crgw_guest_put_simple(&r->q, CRGW_GF_CLOSE, r->ex[i].ch);
		if (r->hello)
			crgw_guest_outq_flush(&r->q, agent_fd);
	}
	for (size_t i = 0; i < n; i++) {
		free(r->ex[i].out[0].buf);
		free(r->ex[i].out[1].buf);
	}
	crgw_guest_outq_free(&r->q);
	free(r->ex);
	free(r);
	return e;
}

int crgw_guest_exec(int agent_fd, const struct crgw_exec_request *req, int *status, char *err, size_t errlen)
{
	return crgw_guest_exec_on(agent_fd, req, 120000, false, -1, status, err, errlen);
}

int crgw_guest_exec_on(int agent_fd, const struct crgw_exec_request *req, int hello_timeout_ms, bool hello_seen,
		       int fatal_pidfd, int *status, char *err, size_t errlen)
{
	struct guest_exec x = {.argv = req->argv,
			       .env = req->env,
			       .cwd = req->cwd,
			       .tty = req->tty,
			       .in_fd = req->interactive ? 0 : -1,
			       .out_fd = 1,
			       .err_fd = 2};
	struct guest_client_opts o = {.forward_signals = true,
				      .winsize_fd = -1,
				      .hello_timeout_ms = hello_timeout_ms,
				      .hello_seen = hello_seen,
				      .fatal_ends = fatal_pidfd >= 0,
				      .fatal_pidfd = fatal_pidfd};
	struct termios saved, raw;
	bool restore = false;
	int e;

	*status = EXIT_RUN_FAILED;
	if (req->tty) {
		struct winsize ws;

		o.winsize_fd = isatty(0) ? 0 : isatty(1) ? 1 : -1;
		if (o.winsize_fd >= 0 && ioctl(o.winsize_fd, TIOCGWINSZ, &ws) == 0) {
			x.rows = ws.ws_row;
			x.cols = ws.ws_col;
		}
		/* Raw here, the guest's pty does the line discipline: ^C reaches the command as a byte. */
		if (isatty(0) && tcgetattr(0, &saved) == 0) {
			raw = saved;
			cfmakeraw(&raw);
			restore = tcsetattr(0, TCSADRAIN, &raw) == 0;
		}
	}
	e = guest_client_run(agent_fd, &x, 1, &o, err, errlen);
	if (restore)
		tcsetattr(0, TCSADRAIN, &saved);
	if (e)
		return e;
	*status = x.status;
	if (x.error[0]) {
		/* The command did not run: the caller says why, as the netns backend does. */
		snprintf(err, errlen, "%s", x.error);
		return x.status == 127 ? -ENOENT : x.status == 126 ? -EACCES : -EPROTO;
	}
	return 0;
}
