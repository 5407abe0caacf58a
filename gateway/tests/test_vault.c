/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The secret vault against real sources: an environment variable (gone from the environment once read),
 * a file (read again when it changes, refused when it vanishes), a command (its stdout, run again at most
 * every refresh_seconds); values that could split a header refused at start with errors that name the
 * secret and never its value; the scratch memory locked and left out of core dumps; reloads (below).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"
#include "vault.h"

static char dir[] = "/tmp/crgw-test-vault.XXXXXX";

#if defined(__SANITIZE_ADDRESS__)
static const bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
static const bool sanitized = true;
#else
static const bool sanitized = false;
#endif
#else
static const bool sanitized = false;
#endif

static void write_file(const char *name, const char *text)
{
	char path[256], tmp[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.new", dir, name);
	f = fopen(tmp, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) || rename(tmp, path))
		perror(path);
}

/* Loads `yaml` as crgw.yaml into `cfg`; 0, or -100 when the configuration itself is refused. */
static int configure(const char *yaml, struct crgw_config *cfg, char *err, size_t errlen)
{
	char path[256], text[2048];
	int rc;

	/* An upstream only because the configuration needs one: nothing here sends a query. */
	snprintf(text, sizeof(text), "dns:\n  upstream: [203.0.113.53]\n%s", yaml);
	write_file("crgw.yaml", text);
	snprintf(path, sizeof(path), "%s/crgw.yaml", dir);
	crgw_config_defaults(cfg);
	err[0] = '\0';
	rc = crgw_config_load_file(cfg, path, err, errlen);
	if (!rc)
		rc = crgw_config_finish(cfg, err, errlen);
	if (rc) {
		printf("# config: %s\n", err);
		return -100;
	}
	return 0;
}

/* Loads `yaml` as crgw.yaml and starts the vault on it; the start's status, its error in `err`. */
static int start(const char *yaml, struct crgw_config *cfg, char *err, size_t errlen)
{
	int rc = configure(yaml, cfg, err, errlen);

	return rc ? rc : crgw_vault_start(cfg, err, errlen);
}

/* Loads `yaml` as crgw.yaml and reloads the vault with it, as a reload does. */
static int reload(const char *yaml, char *err, size_t errlen)
{
	static struct crgw_config cfg;
	int rc = configure(yaml, &cfg, err, errlen);

	return rc ? rc : crgw_vault_load(&cfg, err, errlen);
}

/* "SECRET/basic:USER" or "SECRET/bearer" for the host's credential in `realm`, "none" without one. */
static const char *cred(enum crgw_vault_realm realm, const char *host)
{
	static char texts[3][256];
	static unsigned turn;
	char *text = texts[turn++ % 3];
	struct crgw_git_credential c;

	if (crgw_vault_credential(realm, host, &c))
		return "none";
	snprintf(text, sizeof(texts[0]), "%s/%s%s", c.secret, c.basic ? "basic:" : "bearer", c.basic ? c.username : "");
	return text;
}

/* The value of `id`, or the error as text. */
static const char *get(const char *id, char *out, size_t size)
{
	ssize_t n = crgw_vault_get(id, strlen(id), out, size);

	if (n < 0)
		snprintf(out, size, "error %zd", n);
	return out;
}

/* The number in file `name` (a command's run counter), or -1. */
static int count_in(const char *name)
{
	char path[256], *text;
	size_t len;
	int n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	text = tap_read_file(path, &len);
	n = text ? (int)strtol(text, NULL, 10) : -1;
	free(text);
	return n;
}

/* Whether the mapping holding `p` has flag `flag` (two letters) in /proc/self/smaps. */
static bool map_has_flag(const void *p, const char *flag)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool inside = false, found = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			inside = (unsigned long)p >= lo && (unsigned long)p < hi;
		} else if (inside && !strncmp(line, "VmFlags:", 8)) {
			char want[8];

			snprintf(want, sizeof(want), " %s", flag);
			found = strstr(line + 8, want) != NULL;
			break;
		}
	}
	fclose(f);
	return found;
}

static void test_sources(void)
{
	struct crgw_config cfg;
	char err[512], yaml[1024], *out = crgw_vault_scratch(CRGW_SECRET_VALUE_MAX + 1), small[4];
	struct crgw_vault_stats stats;
	struct timespec times[2];
	char path[256];
	int rc, runs;

	if (!out) {
		tap_result(false, "scratch memory");
		return;
	}
	tap_result(map_has_flag(out, "dd"), "scratch memory is left out of core dumps (dd)");
	/* AddressSanitizer makes mlock a no-op that succeeds: only the plain build can see the lock. */
	if (sanitized)
		printf("ok %u - # SKIP locked memory: mlock is a no-op under AddressSanitizer\n", ++tap_count);
	else
		tap_result(map_has_flag(out, "lo"), "scratch memory is locked (lo)");
	setenv("CRGW_TEST_VAULT_ENV", "from-the-environment", 1);
	write_file("f", "from-a-file\n");
	write_file("n", "0\n");
	snprintf(yaml, sizeof(yaml),
		 "secrets:\n"
		 "  e: { env: CRGW_TEST_VAULT_ENV }\n"
		 "  f: { file: %s/f }\n"
		 "  c: { command: [/bin/sh, -c, 'n=$(cat %s/n); echo $((n + 1)) >%s/n; echo cmd-$n'], refresh_seconds: 1 }\n",
		 dir, dir, dir);
	rc = start(yaml, &cfg, err, sizeof(err));
	tap_result(rc == 0, "three sources start (%s)", rc ? err : "ok");
	tap_result(!strcmp(get("e", out, CRGW_SECRET_VALUE_MAX), "from-the-environment"), "env: %s", out);
	tap_result(getenv("CRGW_TEST_VAULT_ENV") == NULL, "the variable is gone from the environment once read");
	tap_result(!strcmp(get("f", out, CRGW_SECRET_VALUE_MAX), "from-a-file"), "file, its newline dropped: %s", out);
	tap_result(!strcmp(get("c", out, CRGW_SECRET_VALUE_MAX), "cmd-0"), "command's stdout: %s", out);
	tap_result(crgw_vault_has("f", 1) && !crgw_vault_has("x", 1) && crgw_vault_get("x", 1, out, 64) == -ENOENT,
		   "an id not configured is not there (-ENOENT)");
	tap_result(crgw_vault_get("f", 1, small, sizeof(small)) == -E2BIG, "a buffer too small gets -E2BIG");

	/* A rotated file: another size, then the same size with only the time changed. */
	write_file("f", "rotated-value\n");
	tap_result(!strcmp(get("f", out, CRGW_SECRET_VALUE_MAX), "rotated-value"), "a replaced file is read again: %s",
		   out);
	snprintf(path, sizeof(path), "%s/f", dir);
	{
		int fd = open(path, O_WRONLY);

		if (fd < 0 || pwrite(fd, "R", 1, 0) != 1)
			perror(path);
		if (fd >= 0)
			close(fd);
	}
	times[0].tv_sec = times[1].tv_sec = 1000000000;
	times[0].tv_nsec = times[1].tv_nsec = 0;
	utimensat(AT_FDCWD, path, times, 0);
	tap_result(!strcmp(get("f", out, CRGW_SECRET_VALUE_MAX), "Rotated-value"),
		   "a file changed in place (same size, new time) is read again: %s", out);
	unlink(path);
	tap_result(crgw_vault_get("f", 1, out, CRGW_SECRET_VALUE_MAX) == -EIO,
		   "a vanished file is an error, never the old value from memory");
	write_file("f", "back\n");
	tap_result(!strcmp(get("f", out, CRGW_SECRET_VALUE_MAX), "back"), "and comes back when the file does: %s", out);
	write_file("f", "two\nlines\n");
	tap_result(crgw_vault_get("f", 1, out, CRGW_SECRET_VALUE_MAX) == -EIO,
		   "a file that now holds a line break is refused");

	/* The command runs again after refresh_seconds, not on every read. */
	sleep(3);
	get("c", out, CRGW_SECRET_VALUE_MAX);
	runs = count_in("n");
	tap_result(strncmp(out, "cmd-", 4) == 0 && strcmp(out, "cmd-0") && runs >= 2 && runs <= 5,
		   "the command ran again, at most once a second: %s after %d runs in 3 s", out, runs);
	crgw_vault_get_stats(&stats);
	tap_result(stats.secrets == 3 && stats.refreshes >= 1, "stats: %u secrets, %lu refreshes", stats.secrets,
		   stats.refreshes);
	crgw_vault_stop();
	tap_result(crgw_vault_get("e", 1, out, CRGW_SECRET_VALUE_MAX) == -ENOENT, "stopped, nothing is held");
	crgw_vault_scratch_free(out, CRGW_SECRET_VALUE_MAX + 1);
}

/*
 * A reload: new and changed sources read, unchanged ones kept (an environment variable cannot be read
 * twice), the hosts' credentials replaced with them; a source that cannot be read refuses the reload and
 * everything held stays; a refresh under way when the set is replaced is dropped.
 */
static void test_reload(void)
{
	static struct crgw_config cfg;
	char err[512], yaml[2048], *out = crgw_vault_scratch(CRGW_SECRET_VALUE_MAX + 1);
	struct crgw_vault_stats stats;
	int rc;

	if (!out) {
		tap_result(false, "scratch memory");
		return;
	}
	setenv("CRGW_TEST_VAULT_RELOAD_ENV", "env-value", 1);
	write_file("a", "value-a\n");
	write_file("b", "value-b\n");
	snprintf(yaml, sizeof(yaml),
		 "secrets:\n"
		 "  a: { file: %s/a }\n"
		 "  e: { env: CRGW_TEST_VAULT_RELOAD_ENV }\n"
		 "git:\n  credentials:\n    git.example.test: { secret: a, scheme: basic, username: bot }\n"
		 "registries:\n  credentials:\n    npm.example.test: { secret: e, scheme: bearer }\n"
		 "    auth.example.test: { secret: a, scheme: basic, username: u, token_for: [oci.example.test] }\n",
		 dir);
	rc = start(yaml, &cfg, err, sizeof(err));
	tap_result(rc == 0 && !strcmp(cred(CRGW_VAULT_GIT, "git.example.test"), "a/basic:bot") &&
			   !strcmp(cred(CRGW_VAULT_REGISTRY, "npm.example.test"), "e/bearer") &&
			   !strcmp(cred(CRGW_VAULT_GIT, "other.example.test"), "none") &&
			   !strcmp(cred(CRGW_VAULT_REGISTRY, "git.example.test"), "none"),
		   "start: each host's credential in its own list (%s)", rc ? err : "ok");
	/* Which secret the gateway presents to which host: what its stores may serve (mediation/registry.c). */
	tap_result(crgw_vault_credential_serves(CRGW_VAULT_REGISTRY, "e", "npm.example.test") &&
			   crgw_vault_credential_serves(CRGW_VAULT_GIT, "a", "git.example.test") &&
			   crgw_vault_credential_serves(CRGW_VAULT_REGISTRY, "a", "auth.example.test") &&
			   crgw_vault_credential_serves(CRGW_VAULT_REGISTRY, "a", "oci.example.test"),
		   "a host's secret serves it, and a token realm's serves the registries its token_for lists");
	tap_result(!crgw_vault_credential_serves(CRGW_VAULT_REGISTRY, "a", "npm.example.test") &&
			   !crgw_vault_credential_serves(CRGW_VAULT_REGISTRY, "e", "oci.example.test") &&
			   !crgw_vault_credential_serves(CRGW_VAULT_GIT, "a", "oci.example.test") &&
			   !crgw_vault_credential_serves(CRGW_VAULT_REGISTRY, "a", "other.example.test") &&
			   !crgw_vault_credential_serves(CRGW_VAULT_REGISTRY, "", "npm.example.test"),
		   "no other host: another host's secret, a realm's beyond its token_for, another list's, none");

	/* b and c added, a's host moved to b, a new host on a; e unchanged while its variable is gone. */
	write_file("cn", "0\n");
	snprintf(yaml, sizeof(yaml),
		 "secrets:\n"
		 "  a: { file: %s/a }\n"
		 "  e: { env: CRGW_TEST_VAULT_RELOAD_ENV }\n"
		 "  b: { file: %s/b }\n"
		 "  c: { command: [/bin/sh, -c, 'n=$(cat %s/cn); echo $((n + 1)) >%s/cn; [ $n = 0 ] || sleep 1; echo c-$n'],"
		 " refresh_seconds: 1 }\n"
		 "git:\n  credentials:\n    git.example.test: { secret: b, scheme: bearer }\n"
		 "    other.example.test: { secret: a, scheme: basic, username: bot2 }\n",
		 dir, dir, dir, dir);
	rc = reload(yaml, err, sizeof(err));
	tap_result(rc == 0, "a reload adding a file and a command source loads (%s)", rc ? err : "ok");
	tap_result(!strcmp(get("e", out, CRGW_SECRET_VALUE_MAX), "env-value") && !getenv("CRGW_TEST_VAULT_RELOAD_ENV"),
		   "an unchanged environment source keeps its value, though the variable is gone: %s", out);
	tap_result(!strcmp(get("a", out, CRGW_SECRET_VALUE_MAX), "value-a"), "an unchanged file source: %s", out);
	tap_result(!strcmp(get("b", out, CRGW_SECRET_VALUE_MAX), "value-b"), "the new file source: %s", out);
	tap_result(!strcmp(get("c", out, CRGW_SECRET_VALUE_MAX), "c-0"), "the new command source, run once: %s", out);
	tap_result(!strcmp(cred(CRGW_VAULT_GIT, "git.example.test"), "b/bearer") &&
			   !strcmp(cred(CRGW_VAULT_GIT, "other.example.test"), "a/basic:bot2") &&
			   !strcmp(cred(CRGW_VAULT_REGISTRY, "npm.example.test"), "none"),
		   "the hosts' credentials are the new lists: git.example.test %s, other.example.test %s, npm.example.test %s",
		   cred(CRGW_VAULT_GIT, "git.example.test"), cred(CRGW_VAULT_GIT, "other.example.test"),
		   cred(CRGW_VAULT_REGISTRY, "npm.example.test"));
	tap_result(!crgw_vault_credential_serves(CRGW_VAULT_REGISTRY, "e", "npm.example.test") &&
			   !crgw_vault_credential_serves(CRGW_VAULT_REGISTRY, "a", "oci.example.test") &&
			   !crgw_vault_credential_serves(CRGW_VAULT_GIT, "a", "git.example.test") &&
			   crgw_vault_credential_serves(CRGW_VAULT_GIT, "b", "git.example.test"),
		   "and serve only their hosts: the withdrawn registry credentials none, git.example.test b's");

	/* Refused: a new source that cannot be read, a new environment variable. Everything held stays. */
	snprintf(yaml, sizeof(yaml),
		 "secrets:\n  a: { file: %s/a }\n  d: { file: %s/absent }\n"
		 "git:\n  credentials:\n    git.example.test: { secret: d, scheme: bearer }\n",
		 dir, dir);
	rc = reload(yaml, err, sizeof(err));
	tap_result(rc != 0 && rc != -100 && strstr(err, "secrets.d: file"), "a new file that cannot be read refuses the reload: %s",
		   err);
	tap_result(!strcmp(get("b", out, CRGW_SECRET_VALUE_MAX), "value-b") &&
			   !strcmp(cred(CRGW_VAULT_GIT, "git.example.test"), "b/bearer"),
		   "and what was held stays: b %s, git.example.test %s", out, cred(CRGW_VAULT_GIT, "git.example.test"));
	snprintf(yaml, sizeof(yaml), "secrets:\n  a: { file: %s/a }\n  n: { env: CRGW_TEST_VAULT_NOT_SET }\n", dir);
	rc = reload(yaml, err, sizeof(err));
	tap_result(rc != 0 && rc != -100 && strstr(err, "secrets.n: env") && strstr(err, "at start") &&
			   !strcmp(get("e", out, CRGW_SECRET_VALUE_MAX), "env-value"),
		   "a new environment source refuses the reload, saying why: %s", err);

	/* A reload while c's refresh runs (its second run has begun, and sleeps): that refresh is dropped. */
	for (int i = 0; i < 100 && (rc = count_in("cn")) < 2; i++)
		usleep(50000);
	tap_result(rc >= 2, "c's refresh is under way (run %d)", rc);
	snprintf(yaml, sizeof(yaml),
		 "secrets:\n  a: { file: %s/a }\n  e: { env: CRGW_TEST_VAULT_RELOAD_ENV }\n"
		 "  c: { command: [/bin/echo, c-new] }\n",
		 dir);
	rc = reload(yaml, err, sizeof(err));
	usleep(1500000);
	tap_result(rc == 0 && !strcmp(get("c", out, CRGW_SECRET_VALUE_MAX), "c-new") &&
			   crgw_vault_get("b", 1, out, CRGW_SECRET_VALUE_MAX) == -ENOENT &&
			   !strcmp(cred(CRGW_VAULT_GIT, "git.example.test"), "none"),
		   "the reload's value stands after the old refresh ended; b and the credentials are gone (%s)",
		   rc ? err : "ok");

	/* Nothing at all: every value goes. */
	rc = reload("", err, sizeof(err));
	crgw_vault_get_stats(&stats);
	tap_result(rc == 0 && stats.secrets == 0 && crgw_vault_get("a", 1, out, CRGW_SECRET_VALUE_MAX) == -ENOENT,
		   "a reload with no secrets holds none (%u)", stats.secrets);
	crgw_vault_stop();
	crgw_vault_scratch_free(out, CRGW_SECRET_VALUE_MAX + 1);
}

struct bad_case {
	const char *what;
	const char *file;    /* the content of file "b", or NULL for none */
	const char *source;  /* the secret's source, %s for the directory */
	const char *message; /* in the error */
	const char *never;   /* never in the error */
};

static void test_refused(void)
{
	static const struct bad_case cases[] = {
		{ "a missing file", NULL, "{ file: %s/absent }", "secrets.b: ", NULL },
		{ "a value with a line break", "abc-Leak\r\nX-Injected: 1\n", "{ file: %s/b }", "line break", "Leak" },
		{ "an empty file", "", "{ file: %s/b }", "empty", NULL },
		{ "a command that fails", NULL, "{ command: [/bin/sh, -c, 'echo Leak-value; exit 3'] }", "secrets.b: ", "Leak" },
		{ "a variable not set", NULL, "{ env: CRGW_TEST_VAULT_NOT_SET }", "secrets.b: ", NULL },
		{ "a directory, not a file", NULL, "{ file: %s }", "secrets.b: ", NULL },
	};
	char yaml[1024], err[512], source[512];
	struct crgw_config cfg;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc;

		if (cases[i].file)
			write_file("b", cases[i].file);
		snprintf(source, sizeof(source), cases[i].source, dir);
		snprintf(yaml, sizeof(yaml), "secrets:\n  b: %s\n", source);
		rc = start(yaml, &cfg, err, sizeof(err));
		tap_result(rc != 0 && rc != -100 && strstr(err, cases[i].message) &&
				   (!cases[i].never || !strstr(err, cases[i].never)),
			   "%s fails the start, naming the secret and not its value: %s", cases[i].what, err);
		crgw_vault_stop();
	}
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_sources();
	test_refused();
	test_reload();
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd))
			printf("# could not remove %s\n", dir);
	}
	return tap_done();
}
