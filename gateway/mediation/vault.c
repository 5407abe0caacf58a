/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Secret values. One mapping holds a fixed slot per secret: locked (never swapped), excluded from core
 * dumps, wiped in forked children. A value is checked when read (no CR, LF or NUL: it goes into a header
 * line) and wiped where it came from when that is ours to wipe (the environment).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "vault.h"

#define COMMAND_TIMEOUT_MS 30000

extern char **environ;

struct slot {
	const struct crgw_secret_source *src;
	size_t len;
	bool valid;
	/* file sources: what the file was when read */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	time_t next_refresh; /* commands: CLOCK_MONOTONIC seconds; 0: never */
	char *value;         /* CRGW_SECRET_VALUE_MAX bytes in the locked mapping */
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t refresher;
	bool refresher_running, stopping;
	struct slot slots[CRGW_SECRETS_MAX];
	size_t n;
	char *arena;
	size_t arena_size;
	unsigned long refreshes, failures;
} vault = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };

void *crgw_vault_scratch(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* Best effort for scratch: the value itself is locked in the arena; this copy lives for a request. */
	(void)mlock(p, size);
	(void)madvise(p, size, MADV_DONTDUMP);
	(void)madvise(p, size, MADV_WIPEONFORK);
	return p;
}

void crgw_vault_scratch_free(void *p, size_t size)
{
	if (!p)
		return;
	explicit_bzero(p, size);
	munmap(p, size);
}

/* Takes the value in `buf` (`len` bytes): one trailing newline goes; anything that could split a header fails. */
static int accept_value(struct slot *s, const char *buf, size_t len, const char **why)
{
	if (len && buf[len - 1] == '\n')
		len--;
	if (len && buf[len - 1] == '\r')
		len--;
	if (len == 0) {
		*why = "the value is empty";
		return -EINVAL;
	}
	if (len >= CRGW_SECRET_VALUE_MAX) {
		*why = "the value is longer than 8191 bytes";
		return -E2BIG;
	}
	for (size_t i = 0; i < len; i++)
		if (buf[i] == '\r' || buf[i] == '\n' || buf[i] == '\0') {
			*why = "the value holds a line break or NUL";
			return -EINVAL;
		}
	explicit_bzero(s->value, CRGW_SECRET_VALUE_MAX);
	memcpy(s->value, buf, len);
	s->len = len;
	s->valid = true;
	return 0;
}

/* Reads a file source into its slot; `buf` is locked scratch of CRGW_SECRET_VALUE_MAX + 1 bytes. */
static int read_file(struct slot *s, char *buf, const char **why)
{
	struct stat st;
	ssize_t n = 0;
	size_t got = 0;
	int fd = open(s->src->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), err;

	if (fd < 0) {
		*why = strerror(errno);
		return -EIO;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		*why = "not a regular file";
		return -EIO;
	}
	while (got <= CRGW_SECRET_VALUE_MAX && (n = read(fd, buf + got, CRGW_SECRET_VALUE_MAX + 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	if (n < 0) {
		*why = strerror(errno);
		return -EIO;
	}
	err = accept_value(s, buf, got, why);
	explicit_bzero(buf, got);
	if (err)
		return err;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->size = st.st_size;
	s->mtime = st.st_mtim;
	return 0;
}

/* Runs a command source (its stdout is the value) with a timeout; nothing of ours is inherited. */
static int run_command(const struct crgw_secret_source *src, struct slot *s, char *buf, const char **why)
{
	char *argv[CRGW_SECRET_ARGV_MAX + 1];
	char *envp[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	posix_spawn_file_actions_t fa;
	int out[2], status = 0, err = 0;
	size_t got = 0;
	pid_t pid;
	struct timespec start, now;

	for (unsigned i = 0; i < src->argc; i++)
		argv[i] = (char *)src->argv[i];
	argv[src->argc] = NULL;
	if (pipe2(out, O_CLOEXEC)) {
		*why = strerror(errno);
		return -EIO;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	err = posix_spawn(&pid, argv[0], &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(out[1]);
	if (err) {
		close(out[0]);
		*why = strerror(err);
		return -EIO;
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct pollfd p = { .fd = out[0], .events = POLLIN };
		long left;
		ssize_t n;

		clock_gettime(CLOCK_MONOTONIC, &now);
		left = COMMAND_TIMEOUT_MS - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
		if (left <= 0) {
			kill(pid, SIGKILL);
			err = -ETIMEDOUT;
			*why = "the command took longer than 30 s";
			break;
		}
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR) {
			kill(pid, SIGKILL);
			err = -EIO;
			*why = strerror(errno);
			break;
		}
		n = read(out[0], buf + got, CRGW_SECRET_VALUE_MAX + 1 - got);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got > CRGW_SECRET_VALUE_MAX) {
			kill(pid, SIGKILL);
			err = -E2BIG;
			*why = "the command printed more than 8192 bytes";
			break;
		}
	}
	close(out[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!err && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		err = -EIO;
		*why = "the command failed";
	}
	if (!err)
		err = accept_value(s, buf, got, why);
	explicit_bzero(buf, CRGW_SECRET_VALUE_MAX + 1);
	return err;
}

static time_t monotonic_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* Re-runs the commands that are due; waits for the next one. Old values stay when a refresh fails. */
static void *refresher(void *arg)
{
	char *buf = crgw_vault_scratch(CRGW_SECRET_VALUE_MAX + 1);
	char *tmp = crgw_vault_scratch(CRGW_SECRET_VALUE_MAX);

	(void)arg;
	pthread_mutex_lock(&vault.lock);
	while (!vault.stopping && buf && tmp) {
		time_t now = monotonic_s(), next = 0;
		struct timespec until;

		for (size_t i = 0; i < vault.n; i++) {
			struct slot *s = &vault.slots[i], fresh = *s;
			const char *why = NULL;
			int err;

			if (!s->next_refresh)
				continue;
			if (s->next_refresh <= now) {
				s->next_refresh = now + (time_t)s->src->refresh_seconds;
				/* The command runs without the lock: a slow one must not stall requests. */
				fresh.value = tmp;
				pthread_mutex_unlock(&vault.lock);
				err = run_command(s->src, &fresh, buf, &why);
				pthread_mutex_lock(&vault.lock);
				vault.refreshes++;
				if (err) {
					vault.failures++;
					log_warn("secret refresh failed; the previous value stays", "secret_id=%s why=\"%s\"",
						 s->src->id, why);
				} else {
					memcpy(s->value, tmp, fresh.len);
					explicit_bzero(s->value + fresh.len, CRGW_SECRET_VALUE_MAX - fresh.len);
					s->len = fresh.len;
				}
				explicit_bzero(tmp, CRGW_SECRET_VALUE_MAX);
			}
			if (!next || s->next_refresh < next)
				next = s->next_refresh;
		}
		if (!next)
			break;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec = next;
		until.tv_nsec = 0;
		pthread_cond_timedwait(&vault.wake, &vault.lock, &until);
	}
	pthread_mutex_unlock(&vault.lock);
	crgw_vault_scratch_free(buf, CRGW_SECRET_VALUE_MAX + 1);
	crgw_vault_scratch_free(tmp, CRGW_SECRET_VALUE_MAX);
	return NULL;
}

int crgw_vault_start(const struct crgw_config *cfg, char *err, size_t errlen)
{
	char *buf;
	bool refresh = false;
	pthread_condattr_t ca;

	if (cfg->nsecrets == 0)
		return 0;
	vault.arena_size = cfg->nsecrets * CRGW_SECRET_VALUE_MAX;
	vault.arena = mmap(NULL, vault.arena_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (vault.arena == MAP_FAILED) {
		vault.arena = NULL;
		snprintf(err, errlen, "secrets: cannot map memory for %zu values", cfg->nsecrets);
		return -ENOMEM;
	}
	if (mlock(vault.arena, vault.arena_size) || madvise(vault.arena, vault.arena_size, MADV_DONTDUMP) ||
	    madvise(vault.arena, vault.arena_size, MADV_WIPEONFORK)) {
		int e = errno;

		snprintf(err, errlen, "secrets: cannot lock their memory (%s; raise RLIMIT_MEMLOCK or grant CAP_IPC_LOCK)",
			 strerror(e));
		crgw_vault_stop();
		return -e;
	}
	/*
	 * libcurl and OpenSSL hold copies of a header while they send it, in ordinary heap memory: they are
	 * wiped when freed, but a core dump taken meanwhile would hold them. So a gateway that holds secrets
	 * makes no core dumps.
	 */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	buf = crgw_vault_scratch(CRGW_SECRET_VALUE_MAX + 1);
	if (!buf) {
		crgw_vault_stop();
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->nsecrets; i++) {
		const struct crgw_secret_source *src = &cfg->secrets[i];
		struct slot *s = &vault.slots[i];
		const char *why = NULL, *v;
		int e = 0;

		s->src = src;
		s->value = vault.arena + i * CRGW_SECRET_VALUE_MAX;
		switch (src->kind) {
		case CRGW_SECRET_ENV:
			v = getenv(src->env);
			if (!v) {
				e = -ENOENT;
				why = "the environment variable is not set";
				break;
			}
			e = accept_value(s, v, strlen(v), &why);
			/* Our environment is readable in /proc by the same user: the value leaves it. */
			explicit_bzero((char *)v, strlen(v));
			unsetenv(src->env);
			break;
		case CRGW_SECRET_FILE:
			e = read_file(s, buf, &why);
			break;
		case CRGW_SECRET_COMMAND:
			e = run_command(src, s, buf, &why);
			if (src->refresh_seconds) {
				s->next_refresh = monotonic_s() + (time_t)src->refresh_seconds;
				refresh = true;
			}
			break;
		}
		vault.n = i + 1;
		if (e) {
			snprintf(err, errlen, "secrets.%s: %s %s: %s", src->id,
				 src->kind == CRGW_SECRET_ENV ? "env" : src->kind == CRGW_SECRET_FILE ? "file" : "command",
				 src->kind == CRGW_SECRET_ENV ? src->env : src->kind == CRGW_SECRET_FILE ? src->path
													 : src->argv[0],
				 why ? why : strerror(-e));
			crgw_vault_scratch_free(buf, CRGW_SECRET_VALUE_MAX + 1);
			crgw_vault_stop();
			return e;
		}
	}
	crgw_vault_scratch_free(buf, CRGW_SECRET_VALUE_MAX + 1);
	if (refresh) {
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_destroy(&vault.wake);
		pthread_cond_init(&vault.wake, &ca);
		pthread_condattr_destroy(&ca);
		if (pthread_create(&vault.refresher, NULL, refresher, NULL) == 0)
			vault.refresher_running = true;
	}
	return 0;
}

void crgw_vault_stop(void)
{
	pthread_mutex_lock(&vault.lock);
	vault.stopping = true;
	pthread_cond_broadcast(&vault.wake);
	pthread_mutex_unlock(&vault.lock);
	if (vault.refresher_running)
		pthread_join(vault.refresher, NULL);
	vault.refresher_running = false;
	if (vault.arena) {
		explicit_bzero(vault.arena, vault.arena_size);
		munmap(vault.arena, vault.arena_size);
	}
	vault.arena = NULL;
	memset(vault.slots, 0, sizeof(vault.slots));
	vault.n = 0;
	vault.stopping = false;
}

static struct slot *find(const char *id, size_t len)
{
	for (size_t i = 0; i < vault.n; i++)
		if (strlen(vault.slots[i].src->id) == len && !memcmp(vault.slots[i].src->id, id, len))
			return &vault.slots[i];
	return NULL;
}

bool crgw_vault_has(const char *id, size_t len)
{
	bool found;

	pthread_mutex_lock(&vault.lock);
	found = find(id, len) != NULL;
	pthread_mutex_unlock(&vault.lock);
	return found;
}

ssize_t crgw_vault_get(const char *id, size_t id_len, char *out, size_t size)
{
	struct slot *s;
	ssize_t ret;

	pthread_mutex_lock(&vault.lock);
	s = find(id, id_len);
	if (!s) {
		pthread_mutex_unlock(&vault.lock);
		return -ENOENT;
	}
	if (s->src->kind == CRGW_SECRET_FILE) {
		struct stat st;
		char *buf = NULL;
		const char *why = NULL;

		/* A rotated file is read again; a vanished or unreadable one is not served from memory. */
		if (stat(s->src->path, &st)) {
			s->valid = false;
		} else if (!s->valid || st.st_dev != s->dev || st.st_ino != s->ino || st.st_size != s->size ||
			   st.st_mtim.tv_sec != s->mtime.tv_sec || st.st_mtim.tv_nsec != s->mtime.tv_nsec) {
			buf = crgw_vault_scratch(CRGW_SECRET_VALUE_MAX + 1);
			if (!buf || read_file(s, buf, &why)) {
				s->valid = false;
				log_warn("secret file unreadable", "secret_id=%s why=\"%s\"", s->src->id,
					 why ? why : "out of memory");
			}
			crgw_vault_scratch_free(buf, CRGW_SECRET_VALUE_MAX + 1);
		}
	}
	if (!s->valid)
		ret = -EIO;
	else if (s->len >= size)
		ret = -E2BIG;
	else {
		memcpy(out, s->value, s->len);
		out[s->len] = '\0';
		ret = (ssize_t)s->len;
	}
	pthread_mutex_unlock(&vault.lock);
	return ret;
}

void crgw_vault_get_stats(struct crgw_vault_stats *out)
{
	pthread_mutex_lock(&vault.lock);
	out->secrets = (unsigned)vault.n;
	out->refreshes = vault.refreshes;
	out->refresh_failures = vault.failures;
	pthread_mutex_unlock(&vault.lock);
}
