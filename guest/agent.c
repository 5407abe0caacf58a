/* SPDX-License-Identifier: Apache-2.0 */
/*
 * crgw-guest's agent: sessions (one per connection or per host connection to the serial port), channels
 * (one execution each), their processes, and the relays between them, in one poll loop. Every buffer is
 * bounded: a child's output is read only while its channel has credit and the session's queue is below
 * its high watermark, and the host's stream is read only while the queue has room for the answers.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "crgw/guest_proto.h"

#define EXIT_RUN_FAILED 125
#define EXIT_CANNOT_EXEC 126
#define EXIT_NOT_FOUND 127

#define SESSIONS_MAX 16
#define CHANNELS_MAX 256 /* per agent: each holds a process and up to three descriptors */
/* The session's queue: data is read from children only below the watermark; the rest is headroom for acks,
 * exits and errors. */
#define OUTQ_HIGH (256 * 1024)
#define OUTQ_MAX (1024 * 1024)
/* Room an ack or an exit frame needs in the queue before we do what makes one. */
#define CONTROL_ROOM 4096
#define PORT_RETRY_MS 50

static const char base_path[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

extern char **environ;

struct session;

struct channel {
	uint32_t id;
	struct session *s; /* NULL once its session has ended: kept only until the process is reaped */
	pid_t pid;
	bool tty;
	int in_fd;	      /* the child's stdin (pipe or pty master), -1 when closed or never */
	int out_fd[2];	      /* stdout, stderr (a tty has only [0], the master) */
	unsigned char *inbuf; /* stdin from the host, not yet written: at most CRGW_GUEST_WINDOW */
	size_t in_off, in_len;
	uint32_t in_ack;      /* bytes written to the child (or dropped) not yet acknowledged */
	bool in_eof;	      /* the host sent eof: close (or ^D) once inbuf is written */
	bool in_dead;	      /* the child's stdin is gone: stdin is acknowledged and dropped */
	uint32_t out_unacked; /* data sent to the host it has not acknowledged */
	bool closing;	      /* the host gave the channel up: output is dropped */
	bool reaped;
	int code;
	char error[256]; /* why it could not run */
	struct channel *next;
};

struct session {
	int in_fd, out_fd;
	int port; /* the serial port's index (its descriptor outlives the session), or -1 */
	struct crgw_guest_reader rd;
	struct crgw_guest_outq q;
	bool ending; /* input ended: flush what is queued, then go */
	bool gone;   /* the host left the serial port: nothing more can reach it, end now */
};

struct agent {
	const struct agent_config *cfg;
	struct session *sessions[SESSIONS_MAX];
	struct channel *channels;
	size_t nchannels;
	int sigfd;
	long long port_retry_at[AGENT_PORTS_MAX]; /* ms; 0: no retry due */
	bool port_session[AGENT_PORTS_MAX];	  /* a session runs on the port */
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

	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* An error frame is advice: when the queue is full it is dropped rather than let the queue grow. */
static void send_error(struct session *s, uint32_t ch, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void send_error(struct session *s, uint32_t ch, const char *reason, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	crgw_guest_put_error(&s->q, ch, reason, msg);
}

static struct channel *channel_find(struct agent *a, struct session *s, uint32_t id)
{
	for (struct channel *c = a->channels; c; c = c->next)
		if (c->s == s && c->id == id)
			return c;
	return NULL;
}

static void channel_kill(struct channel *c, int sig)
{
	if (c->pid > 0 && !c->reaped)
		kill(-c->pid, sig);
}

static void channel_free(struct agent *a, struct channel *c)
{
	for (struct channel **p = &a->channels; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	close_fd(&c->in_fd);
	close_fd(&c->out_fd[0]);
	close_fd(&c->out_fd[1]);
	free(c->inbuf);
	free(c);
	a->nchannels--;
}

/* ---- starting an execution -------------------------------------------------------------------- */

/* The command's environment: the base (ours, or a fixed one as PID 1), then the request's by name. */
static char **build_env(const struct agent *a, const struct crgw_guest_frame *f)
{
	static const char *const fixed[] = {base_path, "HOME=/root", "USER=root", "LOGNAME=root", "LANG=C.UTF-8"};
	char *const *base = a->cfg->pid1 ? (char *const *)fixed : environ;
	size_t nbase = 0, n = 0;
	char **env;

	if (a->cfg->pid1)
		nbase = sizeof(fixed) / sizeof(fixed[0]);
	else
		while (environ && environ[nbase])
			nbase++;
	env = calloc(nbase + f->nenv + 3, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < nbase; i++)
		env[n++] = base[i];
	if (!a->cfg->pid1 && !getenv("PATH"))
		env[n++] = (char *)base_path;
	if (f->tty && !getenv("TERM"))
		env[n++] = "TERM=xterm";
	for (size_t i = 0; i < f->nenv; i++) {
		const char *name = f->env[i];
		size_t klen = (size_t)(strchr(name, '=') - name) + 1;
		size_t j;

		for (j = 0; j < n; j++)
			if (!strncmp(env[j], name, klen))
				break;
		if (j == n)
			n++;
		env[j] = (char *)name;
	}
	env[n] = NULL;
	return env;
}

struct start_failure {
	int code;
	int err;
	char what[200];
};

/* In the child: says why it cannot run on the report pipe and ends. */
__attribute__((noreturn)) static void child_fail(int report, int code, int err, const char *what)
{
	struct start_failure sf = {.code = code, .err = err};

	snprintf(sf.what, sizeof(sf.what), "%s", what);
	if (write(report, &sf, sizeof(sf)) < 0) {
		/* the agent is gone: nothing to tell */
	}
	_exit(code);
}

__attribute__((noreturn)) static void child_main(const struct crgw_guest_frame *f, char **env, const char *cwd,
						 int fds[3], int report)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < 65; s++)
		signal(s, SIG_DFL);
	/* Its own session and process group: signals and a close reach everything it starts. */
	setsid();
	if (f->tty && ioctl(fds[0], TIOCSCTTY, 0))
		child_fail(report, EXIT_RUN_FAILED, errno, "making the terminal the controlling one");
	for (int i = 0; i < 3; i++)
		if (dup2(fds[i], i) < 0)
			child_fail(report, EXIT_RUN_FAILED, errno, "setting up the standard streams");
	/* Nothing of the agent's reaches the command (all are close-on-exec; this also covers inherited ones). */
	if (report > 3)
		close_range(3, (unsigned)report - 1, 0);
	close_range((unsigned)report + 1, ~0u, 0);
	if (chdir(cwd))
		child_fail(report, EXIT_CANNOT_EXEC, errno, cwd);
	/* execvp looks PATH up in our environment: the command's own PATH is the one that counts. */
	environ = env;
	execvp(f->argv[0], (char *const *)f->argv);
	child_fail(report, errno == ENOENT || errno == ENOTDIR ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC, errno, f->argv[0]);
}

/* A pty: the master (ours) and the slave (the command's). */
static int open_pty(int *master, int *slave, unsigned rows, unsigned cols)
{
	int unlock = 0;
	struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};

	*master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*master < 0)
		return -errno;
	if (ioctl(*master, TIOCSPTLCK, &unlock) ||
	    (*slave = ioctl(*master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
		int e = -errno;

		close_fd(master);
		return e;
	}
	if (rows && cols)
		ioctl(*master, TIOCSWINSZ, &ws);
	return 0;
}

/* Sets up streams, forks and execs. On failure the channel still exists and reports its exit code. */
static void channel_start(struct agent *a, struct channel *c, const struct crgw_guest_frame *f)
{
	int child_fd[3] = {-1, -1, -1}, report[2] = {-1, -1}, p[2];
	const char *cwd = f->cwd;
	struct start_failure sf;
	struct stat st;
	char **env = NULL;
	ssize_t n;
	int e = 0;

	c->code = EXIT_RUN_FAILED;
	c->tty = f->tty;
	if (!cwd)
		cwd = stat("/workspace", &st) == 0 && S_ISDIR(st.st_mode) ? "/workspace" : "/";
	if (f->tty) {
		int master = -1, slave = -1;

		if ((e = open_pty(&master, &slave, f->rows, f->cols))) {
			snprintf(c->error, sizeof(c->error), "opening a terminal: %s", strerror(-e));
			goto fail;
		}
		child_fd[0] = slave;
		child_fd[1] = dup(slave);
		child_fd[2] = dup(slave);
		c->out_fd[0] = master;
		if (f->has_stdin)
			c->in_fd = fcntl(master, F_DUPFD_CLOEXEC, 0);
		if (child_fd[1] < 0 || child_fd[2] < 0 || (f->has_stdin && c->in_fd < 0)) {
			snprintf(c->error, sizeof(c->error), "opening a terminal: %s", strerror(errno));
			goto fail;
		}
	} else {
		if (f->has_stdin) {
			if (pipe2(p, O_CLOEXEC))
				goto fail_errno;
			child_fd[0] = p[0];
			c->in_fd = p[1];
		} else {
			child_fd[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
			if (child_fd[0] < 0)
				goto fail_errno;
		}
		for (int i = 0; i < 2; i++) {
			if (pipe2(p, O_CLOEXEC))
				goto fail_errno;
			child_fd[1 + i] = p[1];
			c->out_fd[i] = p[0];
		}
	}
	env = build_env(a, f);
	if (!env || pipe2(report, O_CLOEXEC))
		goto fail_errno;
	c->pid = fork();
	if (c->pid < 0) {
		c->pid = 0;
		goto fail_errno;
	}
	if (c->pid == 0)
		child_main(f, env, cwd, child_fd, report[1]);
	close_fd(&report[1]);
	/* The report pipe closes at the exec: a short blocking read, never longer than the child's set-up. */
	do
		n = read(report[0], &sf, sizeof(sf));
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(sf)) {
		sf.what[sizeof(sf.what) - 1] = '\0';
		if (sf.code == EXIT_CANNOT_EXEC && !strcmp(sf.what, cwd))
			snprintf(c->error, sizeof(c->error), "working directory %s: %s", cwd, strerror(sf.err));
		else
			snprintf(c->error, sizeof(c->error), "%s: %s", sf.what, strerror(sf.err));
	}
	goto out;
fail_errno:
	snprintf(c->error, sizeof(c->error), "starting the command: %s", strerror(errno));
fail:
	/* Nothing runs: the channel ends at once with 125. */
	c->reaped = true;
	close_fd(&c->in_fd);
	close_fd(&c->out_fd[0]);
	close_fd(&c->out_fd[1]);
out:
	for (int i = 0; i < 3; i++)
		close_fd(&child_fd[i]);
	close_fd(&report[0]);
	close_fd(&report[1]);
	free(env);
	if (c->in_fd >= 0)
		set_nonblock(c->in_fd);
	for (int i = 0; i < 2; i++)
		if (c->out_fd[i] >= 0)
			set_nonblock(c->out_fd[i]);
}

/* ---- frames from the host --------------------------------------------------------------------- */

static void on_open(struct agent *a, struct session *s, const struct crgw_guest_frame *f)
{
	struct channel *c;

	if (channel_find(a, s, f->ch)) {
		send_error(s, f->ch, "channel_in_use", "channel %u is in use", f->ch);
		return;
	}
	if (a->nchannels >= CHANNELS_MAX) {
		send_error(s, f->ch, "too_many_channels", "at most %d executions at once", CHANNELS_MAX);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		send_error(s, f->ch, "no_memory", "no memory for a channel");
		return;
	}
	c->id = f->ch;
	c->s = s;
	c->in_fd = c->out_fd[0] = c->out_fd[1] = -1;
	c->next = a->channels;
	a->channels = c;
	a->nchannels++;
	channel_start(a, c, f);
	if (!f->has_stdin)
		c->in_eof = c->in_dead = true;
}

static void on_stdin(struct session *s, struct channel *c, const struct crgw_guest_frame *f)
{
	if (c->in_eof) {
		send_error(s, c->id, "bad_frame", "stdin after eof on channel %u", c->id);
		return;
	}
	if (c->in_dead || c->closing) {
		/* Nobody reads it: consumed at once, so the host's credit comes back. */
		c->in_ack += (uint32_t)f->len;
		return;
	}
	if (c->in_len - c->in_off + f->len > CRGW_GUEST_WINDOW) {
		/* The host ignored its credit: this channel's stdin is cut, the rest of the session goes on. */
		send_error(s, c->id, "window_exceeded", "more stdin than the window of %d bytes on channel %u",
			   CRGW_GUEST_WINDOW, c->id);
		c->in_dead = true;
		c->in_ack += (uint32_t)(c->in_len - c->in_off);
		c->in_off = c->in_len = 0;
		close_fd(&c->in_fd);
		return;
	}
	if (!c->inbuf && !(c->inbuf = malloc(CRGW_GUEST_WINDOW))) {
		send_error(s, c->id, "no_memory", "no memory for stdin");
		return;
	}
	if (c->in_off && c->in_len + f->len > CRGW_GUEST_WINDOW) {
		memmove(c->inbuf, c->inbuf + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	memcpy(c->inbuf + c->in_len, f->data, f->len);
	c->in_len += f->len;
}

static void on_frame(struct agent *a, struct session *s, const struct crgw_guest_frame *f)
{
	struct channel *c;

	if (f->type == CRGW_GF_OPEN) {
		on_open(a, s, f);
		return;
	}
	if (f->type != CRGW_GF_STDIN && f->type != CRGW_GF_EOF && f->type != CRGW_GF_RESIZE &&
	    f->type != CRGW_GF_SIGNAL && f->type != CRGW_GF_CLOSE && f->type != CRGW_GF_ACK) {
		send_error(s, f->ch, "unexpected_frame", "the agent does not take %s frames",
			   crgw_guest_frame_type_name(f->type));
		return;
	}
	c = channel_find(a, s, f->ch);
	if (!c) {
		/*
		 * A last ack or a close crosses the exit on its way: nothing to answer. An answer would also
		 * outlive a host that has left the serial port, and reach the next connection as its own error.
		 */
		if (f->type != CRGW_GF_ACK && f->type != CRGW_GF_CLOSE)
			send_error(s, f->ch, "no_channel", "no channel %u", f->ch);
		return;
	}
	switch (f->type) {
	case CRGW_GF_STDIN:
		on_stdin(s, c, f);
		break;
	case CRGW_GF_EOF:
		c->in_eof = true;
		break;
	case CRGW_GF_RESIZE:
		if (c->tty && c->out_fd[0] >= 0) {
			struct winsize ws = {.ws_row = (unsigned short)f->rows, .ws_col = (unsigned short)f->cols};

			ioctl(c->out_fd[0], TIOCSWINSZ, &ws);
		}
		break;
	case CRGW_GF_SIGNAL: {
		/* On a terminal, to its foreground group (what a keyboard's ^C would reach); else to the command's. */
		pid_t fg = c->tty && c->out_fd[0] >= 0 ? tcgetpgrp(c->out_fd[0]) : -1;

		if (fg > 0 && !c->reaped)
			kill(-fg, f->sig);
		else
			channel_kill(c, f->sig);
		break;
	}
	case CRGW_GF_CLOSE:
		c->closing = true;
		channel_kill(c, SIGKILL);
		break;
	case CRGW_GF_ACK:
		if (f->n > c->out_unacked) {
			send_error(s, c->id, "bad_ack", "ack of %u bytes, %u are unacknowledged", f->n, c->out_unacked);
			c->out_unacked = 0;
		} else {
			c->out_unacked -= f->n;
		}
		break;
	default:
		break;
	}
}

/* Reads and handles what the host sent, while the queue has room for the answers. */
static void session_read(struct agent *a, struct session *s)
{
	const char *line;
	size_t avail, len;
	ssize_t n;
	int r;

	char *space = crgw_guest_reader_space(&s->rd, &avail);

	n = read(s->in_fd, space, avail);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* On the port, the end of input is the host leaving: what is queued cannot reach anyone. */
		if (s->port >= 0)
			s->gone = true;
		s->ending = true;
		return;
	}
	crgw_guest_reader_commit(&s->rd, (size_t)n);
	while ((r = crgw_guest_reader_next(&s->rd, &line, &len)) != 0) {
		struct crgw_guest_frame f;
		const char *reason;
		char err[256];

		if (r < 0) {
			send_error(s, 0, "frame_too_long", "a frame longer than %d bytes was skipped",
				   CRGW_GUEST_FRAME_MAX);
			continue;
		}
		if (len == 0)
			continue; /* blank lines are allowed between frames (a human at a socket) */
		if (crgw_guest_frame_parse(line, len, &f, &reason, err, sizeof(err))) {
			send_error(s, f.ch, reason ? reason : "bad_frame", "%s", err);
			continue;
		}
		on_frame(a, s, &f);
		crgw_guest_frame_clear(&f);
	}
}

/* ---- channels' relays ------------------------------------------------------------------------- */

static bool queue_has_room(const struct session *s, size_t n)
{
	return crgw_guest_outq_pending(&s->q) + n <= OUTQ_MAX;
}

/* Writes buffered stdin to the child; acknowledges what it took. */
static void channel_write_stdin(struct channel *c)
{
	struct session *s = c->s;

	if (c->in_fd >= 0 && c->in_len > c->in_off) {
		ssize_t n = write(c->in_fd, c->inbuf + c->in_off, c->in_len - c->in_off);

		if (n > 0) {
			c->in_off += (size_t)n;
			c->in_ack += (uint32_t)n;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			/* EPIPE: the command closed its stdin; what is left is dropped (and acknowledged). */
			c->in_ack += (uint32_t)(c->in_len - c->in_off);
			c->in_dead = true;
			close_fd(&c->in_fd);
		}
		if (c->in_off == c->in_len)
			c->in_off = c->in_len = 0;
	}
	if (c->in_eof && c->in_len == c->in_off && c->in_fd >= 0) {
		if (c->tty) {
			/* A terminal has no end of input: its EOF character ends a read where the line discipline is
			 * canonical. */
			struct termios t;

			if (tcgetattr(c->in_fd, &t) == 0 && (t.c_lflag & ICANON)) {
				char eof = (char)t.c_cc[VEOF];

				if (write(c->in_fd, &eof, 1) < 0) {
					/* the command is gone */
				}
			}
		}
		close_fd(&c->in_fd);
	}
	if (s && c->in_ack && queue_has_room(s, CONTROL_ROOM)) {
		if (crgw_guest_put_ack(&s->q, c->id, c->in_ack) == 0)
			c->in_ack = 0;
	}
}

/*
 * Reads one chunk of a child's output into a frame. Returns 1 when it read, 0 when nothing was there
 * (EAGAIN), -1 at the end of the stream (EOF, or EIO on a pty whose slave is closed everywhere).
 */
static int channel_read_output(struct channel *c, int i)
{
	unsigned char buf[CRGW_GUEST_DATA_MAX];
	size_t want = sizeof(buf);
	ssize_t n;

	if (c->s && !c->closing) {
		uint32_t credit = CRGW_GUEST_WINDOW - c->out_unacked;

		if (credit < want)
			want = credit;
	}
	if (want == 0)
		return 0;
	n = read(c->out_fd[i], buf, want);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return -1;
	if (c->s && !c->closing) {
		int e = crgw_guest_put_data(&c->s->q, i == 0 ? CRGW_GF_STDOUT : CRGW_GF_STDERR, c->id, buf, (size_t)n);

		/* The watermark check before the read leaves room for a frame: a failure here is memory. */
		if (e == 0)
			c->out_unacked += (uint32_t)n;
	}
	return 1;
}

/* Whether the channel may read its children's output now. */
static bool channel_may_read(const struct channel *c)
{
	if (!c->s || c->closing)
		return true;
	return c->out_unacked < CRGW_GUEST_WINDOW && crgw_guest_outq_pending(&c->s->q) < OUTQ_HIGH;
}

/*
 * After the command ended, what its pipes hold now is read; a pipe that says EAGAIN is done (a process
 * it left behind may hold it open for ever). Then the exit goes out, after all of the channel's data.
 */
static void channel_finish(struct agent *a, struct channel *c)
{
	if (!c->reaped)
		return;
	for (int i = 0; i < 2; i++) {
		while (c->out_fd[i] >= 0 && channel_may_read(c)) {
			int r = channel_read_output(c, i);

			if (r <= 0) {
				close_fd(&c->out_fd[i]);
				break;
			}
		}
		if (c->out_fd[i] >= 0)
			return;
	}
	if (c->s) {
		if (!queue_has_room(c->s, CONTROL_ROOM))
			return;
		channel_write_stdin(c); /* the last ack */
		crgw_guest_put_exit(&c->s->q, c->id, c->code, c->error[0] ? c->error : NULL);
	}
	channel_free(a, c);
}

static void reap(struct agent *a)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (struct channel *c = a->channels; c; c = c->next)
			if (c->pid == pid && !c->reaped) {
				c->reaped = true;
				c->code = WIFEXITED(status)	? WEXITSTATUS(status)
					  : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
								: EXIT_RUN_FAILED;
				break;
			}
		/* Anything else is an orphan we adopted (PID 1, or a subreaper): reaped and forgotten. */
	}
}

/* ---- sessions --------------------------------------------------------------------------------- */

static struct session *session_new(struct agent *a, int in_fd, int out_fd, int port)
{
	struct session *s;
	int slot;

	for (slot = 0; slot < SESSIONS_MAX && a->sessions[slot]; slot++)
		;
	if (slot == SESSIONS_MAX)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->in_fd = in_fd;
	s->out_fd = out_fd;
	s->port = port;
	crgw_guest_reader_init(&s->rd);
	crgw_guest_outq_init(&s->q, OUTQ_MAX);
	set_nonblock(in_fd);
	set_nonblock(out_fd);
	crgw_guest_put_hello(&s->q);
	a->sessions[slot] = s;
	return s;
}

/* The session is over: its commands are killed (a closed terminal), its channels forgotten once reaped. */
static void session_end(struct agent *a, int slot)
{
	struct session *s = a->sessions[slot];

	for (struct channel *c = a->channels; c; c = c->next)
		if (c->s == s) {
			channel_kill(c, SIGKILL);
			c->s = NULL;
			close_fd(&c->in_fd);
		}
	if (s->port >= 0) {
		a->port_session[s->port] = false;
		a->port_retry_at[s->port] = now_ms() + PORT_RETRY_MS;
	} else {
		close(s->in_fd);
		if (s->out_fd != s->in_fd)
			close(s->out_fd);
	}
	crgw_guest_outq_free(&s->q);
	free(s);
	a->sessions[slot] = NULL;
}

/*
 * The serial port has no connect: poll says POLLHUP while the host is not connected. A session starts
 * when it stops saying so.
 */
static void port_try(struct agent *a)
{
	for (unsigned i = 0; i < a->cfg->nports; i++) {
		struct pollfd p = {.fd = a->cfg->port_fds[i], .events = POLLIN};

		if (a->port_session[i] || !a->port_retry_at[i] || now_ms() < a->port_retry_at[i])
			continue;
		if (poll(&p, 1, 0) >= 0 && !(p.revents & (POLLHUP | POLLERR)) &&
		    session_new(a, a->cfg->port_fds[i], a->cfg->port_fds[i], (int)i)) {
			a->port_session[i] = true;
			a->port_retry_at[i] = 0;
			continue;
		}
		a->port_retry_at[i] = now_ms() + PORT_RETRY_MS;
	}
}

static int open_signals(struct agent *a)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	if (a->cfg->pid1) {
		/* PID 1 ends only when the VM does: these are the kernel's and a keyboard's requests. */
		signal(SIGTERM, SIG_IGN);
		signal(SIGINT, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
	} else {
		/* Orphans of our commands come to us, so none is left a zombie under a foreign parent. */
		prctl(PR_SET_CHILD_SUBREAPER, 1);
	}
	sigprocmask(SIG_BLOCK, &set, NULL);
	a->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return a->sigfd < 0 ? -errno : 0;
}

int agent_run(const struct agent_config *cfg)
{
	struct agent a = {.cfg = cfg, .sigfd = -1};
	int e;

	if ((e = open_signals(&a)))
		return e;
	if (cfg->source == AGENT_FD && !session_new(&a, cfg->in_fd, cfg->out_fd, -1))
		return -ENOMEM;
	if (cfg->source == AGENT_LISTEN)
		set_nonblock(cfg->listen_fd);
	if (cfg->source == AGENT_PORT)
		for (unsigned i = 0; i < cfg->nports && i < AGENT_PORTS_MAX; i++)
			a.port_retry_at[i] = 1;

	for (;;) {
		/* Sessions, channels (three each), the listener, signals. */
		struct pollfd pfd[SESSIONS_MAX * 2 + CHANNELS_MAX * 3 + 2];
		void *owner[sizeof(pfd) / sizeof(pfd[0])];
		int kind[sizeof(pfd) / sizeof(pfd[0])];
		unsigned n = 0;
		int timeout = -1;
		bool fd_session_alive = false;

		port_try(&a);
		for (struct channel *c = a.channels, *next; c; c = next) {
			next = c->next;
			channel_write_stdin(c);
			channel_finish(&a, c);
		}
		/* Flush, and end the sessions whose input ended once their queue is out. */
		for (int i = 0; i < SESSIONS_MAX; i++) {
			struct session *s = a.sessions[i];

			if (!s)
				continue;
			if (s->gone || crgw_guest_outq_flush(&s->q, s->out_fd) < 0 ||
			    (s->ending && crgw_guest_outq_pending(&s->q) == 0)) {
				session_end(&a, i);
				continue;
			}
			if (cfg->source == AGENT_FD)
				fd_session_alive = true;
		}
		if (cfg->source == AGENT_FD && !fd_session_alive) {
			/* The one session is over: its commands were killed; wait for them, then go. */
			if (!a.channels)
				break;
		}

		pfd[n] = (struct pollfd){.fd = a.sigfd, .events = POLLIN};
		kind[n++] = 0;
		if (cfg->source == AGENT_LISTEN) {
			pfd[n] = (struct pollfd){.fd = cfg->listen_fd, .events = POLLIN};
			kind[n++] = 1;
		}
		for (int i = 0; i < SESSIONS_MAX; i++) {
			struct session *s = a.sessions[i];

			if (!s)
				continue;
			if (!s->ending && crgw_guest_outq_pending(&s->q) < OUTQ_HIGH) {
				pfd[n] = (struct pollfd){.fd = s->in_fd, .events = POLLIN};
				owner[n] = s;
				kind[n++] = 2;
			} else if (s->port >= 0 && !s->ending) {
				/* Not reading, but a host that leaves the port must still be seen (POLLHUP), or a full
				 * queue would wait for it for ever. */
				pfd[n] = (struct pollfd){.fd = s->in_fd, .events = 0};
				owner[n] = s;
				kind[n++] = 7;
			}
			if (crgw_guest_outq_pending(&s->q)) {
				pfd[n] = (struct pollfd){.fd = s->out_fd, .events = POLLOUT};
				owner[n] = s;
				kind[n++] = 3;
			}
		}
		for (struct channel *c = a.channels; c; c = c->next) {
			if (c->in_fd >= 0 && c->in_len > c->in_off) {
				pfd[n] = (struct pollfd){.fd = c->in_fd, .events = POLLOUT};
				owner[n] = c;
				kind[n++] = 4;
			}
			for (int i = 0; i < 2; i++)
				if (c->out_fd[i] >= 0 && !c->reaped && channel_may_read(c)) {
					pfd[n] = (struct pollfd){.fd = c->out_fd[i], .events = POLLIN};
					owner[n] = c;
					kind[n++] = 5 + i;
				}
		}
		for (unsigned i = 0; i < cfg->nports; i++)
			if (a.port_retry_at[i])
				timeout = PORT_RETRY_MS;
		if (poll(pfd, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (unsigned k = 0; k < n; k++) {
			if (!pfd[k].revents)
				continue;
			switch (kind[k]) {
			case 0: {
				struct signalfd_siginfo si;

				while (read(a.sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
					;
				reap(&a);
				break;
			}
			case 1: {
				int fd = accept4(cfg->listen_fd, NULL, NULL, SOCK_CLOEXEC);

				if (fd >= 0 && !session_new(&a, fd, fd, -1)) {
					/* Too many sessions: the host sees the connection close. */
					close(fd);
				}
				break;
			}
			case 2: {
				struct session *s = owner[k];

				session_read(&a, s);
				/*
				 * A hang-up seen by poll is the host leaving the port, even when it is back by the time
				 * we read: a new connection must get a new session and its hello.
				 */
				if (s->port >= 0 && (pfd[k].revents & POLLHUP))
					s->gone = s->ending = true;
				break;
			}
			case 3:
				/* flushed at the top of the loop */
				break;
			case 7:
				if (pfd[k].revents & (POLLHUP | POLLERR)) {
					struct session *s = owner[k];

					s->gone = s->ending = true;
				}
				break;
			case 4:
				channel_write_stdin(owner[k]);
				break;
			default: {
				struct channel *c = owner[k];
				int i = kind[k] - 5;

				if (c->out_fd[i] >= 0 && channel_read_output(c, i) < 0)
					close_fd(&c->out_fd[i]);
				break;
			}
			}
		}
		/* A child may have ended without its SIGCHLD read yet: reaping is cheap, do it each round. */
		reap(&a);
	}
	close(a.sigfd);
	return 0;
}
