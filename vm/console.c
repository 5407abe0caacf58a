/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The standard streams of an execution in a sandbox: a pty for -t (raw mode here, the window size kept in
 * step), pipes where our stream is a terminal that must not reach the sandbox, and the streams as they
 * are otherwise; signals forwarded; the command's exit read from the executing side's control socket.
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
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vm_priv.h"

int exec_msg_send(int sock, const struct exec_msg *msg, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { (void *)msg, sizeof(*msg) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

int exec_msg_recv(int sock, struct exec_msg *msg, int *fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { msg, sizeof(*msg) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	ssize_t n;

	*fd = -1;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -EPIPE;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	if ((size_t)n != sizeof(*msg)) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return -EPROTO;
	}
	msg->text[sizeof(msg->text) - 1] = '\0';
	return 0;
}

int console_open(struct console *c, bool tty, bool interactive)
{
	int p[2];

	memset(c, 0, sizeof(*c));
	c->tty = tty;
	c->interactive = interactive;
	c->pty_master = -1;
	for (int i = 0; i < 3; i++)
		c->child_fd[i] = c->relay_fd[i] = -1;
	if (tty)
		return 0; /* the pty comes from inside the sandbox */
	/* Standard input: /dev/null without -i; our own unless it is a terminal; else a pipe we feed. */
	if (!interactive) {
		c->child_fd[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (c->child_fd[0] < 0)
			return -errno;
	} else if (isatty(0)) {
		if (pipe2(p, O_CLOEXEC))
			return -errno;
		c->child_fd[0] = p[0];
		c->relay_fd[0] = p[1];
	} else {
		c->child_fd[0] = fcntl(0, F_DUPFD_CLOEXEC, 0);
		if (c->child_fd[0] < 0)
			c->child_fd[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	/*
	 * Output to a terminal goes through a pipe: a terminal descriptor inside the sandbox could be kept by
	 * a process that outlives the command and read what is typed into it afterwards.
	 */
	for (int i = 1; i < 3; i++) {
		if (isatty(i)) {
			if (pipe2(p, O_CLOEXEC))
				return -errno;
			c->child_fd[i] = p[1];
			c->relay_fd[i] = p[0];
		} else {
			c->child_fd[i] = fcntl(i, F_DUPFD_CLOEXEC, 0);
			if (c->child_fd[i] < 0)
				c->child_fd[i] = open("/dev/null", O_WRONLY | O_CLOEXEC);
		}
	}
	return 0;
}

void console_after_fork(struct console *c)
{
	for (int i = 0; i < 3; i++)
		if (c->child_fd[i] >= 0) {
			close(c->child_fd[i]);
			c->child_fd[i] = -1;
		}
}

static void sync_window(struct console *c)
{
	struct winsize ws;

	if (c->pty_master >= 0 && ioctl(0, TIOCGWINSZ, &ws) == 0)
		ioctl(c->pty_master, TIOCSWINSZ, &ws);
}

static void make_raw(struct console *c)
{
	struct termios t;

	if (!isatty(0) || tcgetattr(0, &c->saved))
		return;
	t = c->saved;
	cfmakeraw(&t);
	if (tcsetattr(0, TCSADRAIN, &t) == 0)
		c->raw = true;
}

/* A one-way relay with a small buffer, so that neither side's stall blocks the other direction. */
struct pump {
	int from, to;
	char buf[65536];
	size_t len, off;
	bool eof;
};

static void pump_read(struct pump *p)
{
	ssize_t n = read(p->from, p->buf, sizeof(p->buf));

	if (n > 0) {
		p->len = (size_t)n;
		p->off = 0;
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		/* EIO on a pty master: every slave is closed. */
		p->eof = true;
	}
}

static int pump_write(struct pump *p)
{
	ssize_t n = write(p->to, p->buf + p->off, p->len - p->off);

	if (n > 0) {
		p->off += (size_t)n;
		if (p->off == p->len)
			p->len = p->off = 0;
		return 0;
	}
	return n < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
}

/* What is left to read once the command has ended: whatever is there now, not what a leftover may write. */
static void drain(struct pump *p)
{
	int fl = fcntl(p->from, F_GETFL);

	fcntl(p->from, F_SETFL, fl | O_NONBLOCK);
	for (int rounds = 0; rounds < 4096 && !p->eof; rounds++) {
		if (p->len == 0) {
			pump_read(p);
			if (p->len == 0)
				break;
		}
		while (p->len && pump_write(p) == 0)
			;
		if (p->len)
			break;
	}
}

int console_run(struct console *c, int ctl_fd, pid_t forward_pid, void (*on_fatal)(int sig, void *arg), void *arg)
{
	static const int sigs[] = { SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH };
	struct pump pumps[3];
	unsigned npumps = 0;
	sigset_t set, old;
	int sfd, status = -EPIPE;
	bool done = false;

	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&set, sigs[i]);
	sigprocmask(SIG_BLOCK, &set, &old);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);

	if (c->tty) {
		/* The executing side opens the pty inside the sandbox first and sends its master. */
		struct exec_msg m;
		int fd;
		int e = exec_msg_recv(ctl_fd, &m, &fd);

		if (e == 0 && m.type == EXEC_MSG_PTY && fd >= 0) {
			c->pty_master = fd;
			make_raw(c);
			sync_window(c);
		} else if (e == 0 && (m.type == EXEC_MSG_ERROR || m.type == EXEC_MSG_EXIT)) {
			if (fd >= 0)
				close(fd);
			if (m.type == EXEC_MSG_ERROR)
				fprintf(stderr, "crgw-ctl: %s\n", m.text);
			status = m.code;
			done = true;
		} else {
			if (fd >= 0)
				close(fd);
			done = true;
		}
		if (c->pty_master >= 0) {
			if (c->interactive)
				pumps[npumps++] = (struct pump){ .from = 0, .to = c->pty_master };
			pumps[npumps++] = (struct pump){ .from = c->pty_master, .to = 1 };
		}
	} else {
		if (c->relay_fd[0] >= 0)
			pumps[npumps++] = (struct pump){ .from = 0, .to = c->relay_fd[0] };
		for (int i = 1; i < 3; i++)
			if (c->relay_fd[i] >= 0)
				pumps[npumps++] = (struct pump){ .from = c->relay_fd[i], .to = i };
	}
	/*
	 * Our ends of the pipes and the pty never block; our own standard streams stay as they are (their
	 * open file descriptions are shared with whoever started us), read only after poll says so.
	 */
	for (unsigned i = 0; i < npumps; i++) {
		if (pumps[i].from > 2)
			fcntl(pumps[i].from, F_SETFL, fcntl(pumps[i].from, F_GETFL) | O_NONBLOCK);
		if (pumps[i].to > 2)
			fcntl(pumps[i].to, F_SETFL, fcntl(pumps[i].to, F_GETFL) | O_NONBLOCK);
	}
	while (!done) {
		struct pollfd pfd[8];
		unsigned n = 0, map[8];

		pfd[n++] = (struct pollfd){ .fd = ctl_fd, .events = POLLIN };
		if (sfd >= 0)
			pfd[n++] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		for (unsigned i = 0; i < npumps; i++) {
			struct pump *p = &pumps[i];

			if (p->len) {
				map[n] = i;
				pfd[n++] = (struct pollfd){ .fd = p->to, .events = POLLOUT };
			} else if (!p->eof) {
				map[n] = i;
				pfd[n++] = (struct pollfd){ .fd = p->from, .events = POLLIN };
			}
		}
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (unsigned k = sfd >= 0 ? 2 : 1; k < n; k++) {
			struct pump *p = &pumps[map[k]];

			if (!pfd[k].revents)
				continue;
			if (p->len) {
				if (pump_write(p))
					p->len = p->off = 0, p->eof = true;
			} else {
				pump_read(p);
				if (p->eof && p->from == 0) {
					/* Our input ended: the command sees end of input (^D on a pty, EOF on a pipe). */
					if (c->tty && c->pty_master >= 0 && !c->raw) {
						char eot = 4;

						if (write(c->pty_master, &eot, 1) < 0) {
							/* the command is gone */
						}
					} else if (!c->tty && c->relay_fd[0] >= 0) {
						close(c->relay_fd[0]);
						c->relay_fd[0] = -1;
					}
				}
			}
		}
		if (sfd >= 0 && (pfd[1].revents & POLLIN)) {
			struct signalfd_siginfo si;

			while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				int sig = (int)si.ssi_signo;

				if (sig == SIGWINCH)
					sync_window(c);
				else if ((sig == SIGTERM || sig == SIGHUP) && on_fatal)
					on_fatal(sig, arg);
				else if (forward_pid > 0)
					kill(forward_pid, sig);
			}
		}
		if (pfd[0].revents) {
			struct exec_msg m;
			int fd, e = exec_msg_recv(ctl_fd, &m, &fd);

			if (fd >= 0)
				close(fd);
			if (e == 0 && m.type == EXEC_MSG_EXIT) {
				status = m.code;
				done = true;
			} else if (e == 0 && m.type == EXEC_MSG_ERROR) {
				fprintf(stderr, "crgw-ctl: %s\n", m.text);
				status = m.code;
				done = true;
			} else if (e) {
				done = true;
			}
		}
	}
	for (unsigned i = 0; i < npumps; i++)
		if (pumps[i].from != 0)
			drain(&pumps[i]);
	if (sfd >= 0)
		close(sfd);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return status;
}

void console_close(struct console *c)
{
	if (c->raw)
		tcsetattr(0, TCSADRAIN, &c->saved);
	c->raw = false;
	console_after_fork(c);
	for (int i = 0; i < 3; i++)
		if (c->relay_fd[i] >= 0) {
			close(c->relay_fd[i]);
			c->relay_fd[i] = -1;
		}
	if (c->pty_master >= 0)
		close(c->pty_master);
	c->pty_master = -1;
}
