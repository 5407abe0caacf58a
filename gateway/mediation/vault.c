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
	struct crgw_secret_source src; /* our own copy: a reload replaces the configuration's */
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
	/* Bumped whenever the set is replaced: a refresh that began before is dropped, its slot may be gone. */
	unsigned long generation;
	bool loaded; /* since start: a load now is a reload */
	/* git.credentials and registries.credentials: which host gets which secret, replaced with the set. */
	struct crgw_git_credential creds[2][CRGW_GIT_CREDENTIALS_MAX];
	size_t ncreds[2];
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
	int fd = open(s->src.path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), err;

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
	static struct crgw_secret_source src; /* one refresher: the source of the command it runs */
	char *buf = crgw_vault_scratch(CRGW_SECRET_VALUE_MAX + 1);
	char *tmp = crgw_vault_scratch(CRGW_SECRET_VALUE_MAX);

	(void)arg;
	pthread_mutex_lock(&vault.lock);
	while (!vault.stopping && buf && tmp) {
		time_t now = monotonic_s(), next = 0;
		bool replaced = false;
		struct timespec until;

		for (size_t i = 0; i < vault.n && !replaced; i++) {
			struct slot *s = &vault.slots[i], fresh = { .value = tmp };
			unsigned long generation = vault.generation;
			const char *why = NULL;
			int err;

			if (!s->next_refresh)
				continue;
			if (s->next_refresh <= now) {
				s->next_refresh = now + (time_t)s->src.refresh_seconds;
				src = s->src;
				/* The command runs without the lock: a slow one must not stall requests. */
				pthread_mutex_unlock(&vault.lock);
				err = run_command(&src, &fresh, buf, &why);
				pthread_mutex_lock(&vault.lock);
				vault.refreshes++;
				if (vault.generation != generation) {
					/* A reload replaced the set meanwhile: what it holds is newer. */
					replaced = true;
				} else if (err) {
					vault.failures++;
					log_warn("secret refresh failed; the previous value stays", "secret_id=%s why=\"%s\"",
						 src.id, why);
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
		if (replaced || vault.stopping)
			continue;
		if (!next) {
			/* Nothing to refresh until a reload brings a command that wants it. */
			pthread_cond_wait(&vault.wake, &vault.lock);
			continue;
		}
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

/* A locked mapping for `n` values, left out of core dumps and wiped in children; NULL (and 0) for none. */
static int arena_new(size_t n, char **out, size_t *size, char *err, size_t errlen)
{
	char *a;

	*out = NULL;
	*size = 0;
	if (!n)
		return 0;
	a = mmap(NULL, n * CRGW_SECRET_VALUE_MAX, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED) {
		snprintf(err, errlen, "secrets: cannot map memory for %zu values", n);
		return -ENOMEM;
	}
	if (mlock(a, n * CRGW_SECRET_VALUE_MAX) || madvise(a, n * CRGW_SECRET_VALUE_MAX, MADV_DONTDUMP) ||
	    madvise(a, n * CRGW_SECRET_VALUE_MAX, MADV_WIPEONFORK)) {
		int e = errno;

		snprintf(err, errlen, "secrets: cannot lock their memory (%s; raise RLIMIT_MEMLOCK or grant CAP_IPC_LOCK)",
			 strerror(e));
		munmap(a, n * CRGW_SECRET_VALUE_MAX);
		return -e;
	}
	*out = a;
	*size = n * CRGW_SECRET_VALUE_MAX;
	return 0;
}

static void arena_free(char *a, size_t size)
{
	if (!a)
		return;
	explicit_bzero(a, size);
	munmap(a, size);
}

static struct slot *find(const char *id, size_t len)
{
	for (size_t i = 0; i < vault.n; i++)
		if (strlen(vault.slots[i].src.id) == len && !memcmp(vault.slots[i].src.id, id, len))
			return &vault.slots[i];
	return NULL;
}

/* Reads the value of `s`'s source into `s` (its value buffer set); `buf` is scratch of VALUE_MAX + 1. */
static int read_source(struct slot *s, char *buf, const char **why)
{
	const char *v;
	int e;

	switch (s->src.kind) {
	case CRGW_SECRET_ENV:
		v = getenv(s->src.env);
		if (!v) {
			*why = "the environment variable is not set";
			return -ENOENT;
		}
		e = accept_value(s, v, strlen(v), why);
		/* Our environment is readable in /proc by the same user: the value leaves it. */
		explicit_bzero((char *)v, strlen(v));
		unsetenv(s->src.env);
		return e;
	case CRGW_SECRET_FILE:
		return read_file(s, buf, why);
	case CRGW_SECRET_COMMAND:
		e = run_command(&s->src, s, buf, why);
		if (!e && s->src.refresh_seconds)
			s->next_refresh = monotonic_s() + (time_t)s->src.refresh_seconds;
		return e;
	}
	return -EINVAL;
}

static bool refresher_wanted(void)
{
	for (size_t i = 0; i < vault.n; i++)
		if (vault.slots[i].next_refresh)
			return true;
	return false;
}

int crgw_vault_load(const struct crgw_config *cfg, char *err, size_t errlen)
{
	/* Built here, then swapped in whole under the lock; only the main thread loads. */
	static struct slot fresh[CRGW_SECRETS_MAX];
	char *arena, *old_arena, *buf;
	size_t arena_size, old_size;
	bool refresh;
	int e;

	e = arena_new(cfg->nsecrets, &arena, &arena_size, err, errlen);
	if (e)
		return e;
	buf = crgw_vault_scratch(CRGW_SECRET_VALUE_MAX + 1);
	if (!buf) {
		arena_free(arena, arena_size);
		snprintf(err, errlen, "secrets: out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->nsecrets; i++) {
		const struct crgw_secret_source *src = &cfg->secrets[i];
		struct slot *s = &fresh[i], *held;
		const char *why = NULL;
		bool kept = false;

		memset(s, 0, sizeof(*s));
		s->src = *src;
		s->value = arena + i * CRGW_SECRET_VALUE_MAX;
		/* An unchanged source keeps what is held (an environment variable could not be read again). */
		pthread_mutex_lock(&vault.lock);
		held = find(src->id, strlen(src->id));
		if (held && held->valid && !memcmp(&held->src, src, sizeof(*src))) {
			memcpy(s->value, held->value, held->len);
			s->len = held->len;
			s->valid = true;
			s->dev = held->dev;
			s->ino = held->ino;
			s->size = held->size;
			s->mtime = held->mtime;
			s->next_refresh = held->next_refresh;
			kept = true;
		}
		pthread_mutex_unlock(&vault.lock);
		e = kept ? 0 : read_source(s, buf, &why);
		/* Read at start and then wiped: a reload finds only what the start was given. */
		if (e == -ENOENT && src->kind == CRGW_SECRET_ENV && vault.loaded)
			why = "the environment variable is not set (the gateway's environment is read once, at start: "
			      "restart it, or use a file or command source)";
		if (e) {
			snprintf(err, errlen, "secrets.%s: %s %s: %s", src->id,
				 src->kind == CRGW_SECRET_ENV ? "env" : src->kind == CRGW_SECRET_FILE ? "file" : "command",
				 src->kind == CRGW_SECRET_ENV ? src->env : src->kind == CRGW_SECRET_FILE ? src->path
													 : src->argv[0],
				 why ? why : strerror(-e));
			crgw_vault_scratch_free(buf, CRGW_SECRET_VALUE_MAX + 1);
			arena_free(arena, arena_size);
			return e;
		}
	}
	crgw_vault_scratch_free(buf, CRGW_SECRET_VALUE_MAX + 1);
	/*
	 * libcurl and OpenSSL hold copies of a header while they send it, in ordinary heap memory: they are
	 * wiped when freed, but a core dump taken meanwhile would hold them. So a gateway that holds secrets
	 * makes no core dumps.
	 */
	if (cfg->nsecrets)
		prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	pthread_mutex_lock(&vault.lock);
	old_arena = vault.arena;
	old_size = vault.arena_size;
	memcpy(vault.slots, fresh, cfg->nsecrets * sizeof(fresh[0]));
	vault.n = cfg->nsecrets;
	vault.arena = arena;
	vault.arena_size = arena_size;
	memcpy(vault.creds[CRGW_VAULT_GIT], cfg->git_credentials, sizeof(cfg->git_credentials));
	vault.ncreds[CRGW_VAULT_GIT] = cfg->ngit_credentials;
	memcpy(vault.creds[CRGW_VAULT_REGISTRY], cfg->registry_credentials, sizeof(cfg->registry_credentials));
	vault.ncreds[CRGW_VAULT_REGISTRY] = cfg->nregistry_credentials;
	vault.generation++;
	vault.loaded = true;
	refresh = refresher_wanted() && !vault.refresher_running;
	pthread_cond_broadcast(&vault.wake);
	pthread_mutex_unlock(&vault.lock);
	memset(fresh, 0, cfg->nsecrets * sizeof(fresh[0]));
	arena_free(old_arena, old_size);
	if (refresh) {
		pthread_condattr_t ca;

		/* No thread waits on the condition yet: it can take the monotonic clock now. */
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

int crgw_vault_start(const struct crgw_config *cfg, char *err, size_t errlen)
{
	return crgw_vault_load(cfg, err, errlen);
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
	arena_free(vault.arena, vault.arena_size);
	vault.arena = NULL;
	vault.arena_size = 0;
	memset(vault.slots, 0, sizeof(vault.slots));
	vault.n = 0;
	vault.ncreds[CRGW_VAULT_GIT] = vault.ncreds[CRGW_VAULT_REGISTRY] = 0;
	vault.generation++;
	vault.loaded = false;
	vault.stopping = false;
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
	if (s->src.kind == CRGW_SECRET_FILE) {
		struct stat st;
		char *buf = NULL;
		const char *why = NULL;

		/* A rotated file is read again; a vanished or unreadable one is not served from memory. */
		if (stat(s->src.path, &st)) {
			s->valid = false;
		} else if (!s->valid || st.st_dev != s->dev || st.st_ino != s->ino || st.st_size != s->size ||
			   st.st_mtim.tv_sec != s->mtime.tv_sec || st.st_mtim.tv_nsec != s->mtime.tv_nsec) {
			buf = crgw_vault_scratch(CRGW_SECRET_VALUE_MAX + 1);
			if (!buf || read_file(s, buf, &why)) {
				s->valid = false;
				log_warn("secret file unreadable", "secret_id=%s why=\"%s\"", s->src.id,
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

int crgw_vault_credential(enum crgw_vault_realm realm, const char *host, struct crgw_git_credential *out)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&vault.lock);
	for (size_t i = 0; i < vault.ncreds[realm]; i++)
		if (!strcmp(vault.creds[realm][i].host, host)) {
			*out = vault.creds[realm][i];
			ret = 0;
			break;
		}
	pthread_mutex_unlock(&vault.lock);
	return ret;
}

bool crgw_vault_token_for(const struct crgw_git_credential *c, const char *registry)
{
	size_t n = strlen(registry);

	if (!strcmp(c->host, registry))
		return true;
	for (const char *p = c->token_for; *p; p += strcspn(p, " "), p += *p == ' ')
		if (strcspn(p, " ") == n && !strncmp(p, registry, n))
			return true;
	return false;
}

bool crgw_vault_credential_serves(enum crgw_vault_realm realm, const char *secret, const char *host)
{
	bool serves = false;

	pthread_mutex_lock(&vault.lock);
	for (size_t i = 0; i < vault.ncreds[realm] && !serves; i++) {
		const struct crgw_git_credential *c = &vault.creds[realm][i];

		serves = !strcmp(c->secret, secret) &&
			 (!strcmp(c->host, host) || (realm == CRGW_VAULT_REGISTRY && crgw_vault_token_for(c, host)));
	}
	pthread_mutex_unlock(&vault.lock);
	return serves;
}

void crgw_vault_get_stats(struct crgw_vault_stats *out)
{
	pthread_mutex_lock(&vault.lock);
	out->secrets = (unsigned)vault.n;
	out->refreshes = vault.refreshes;
	out->refresh_failures = vault.failures;
	pthread_mutex_unlock(&vault.lock);
}
