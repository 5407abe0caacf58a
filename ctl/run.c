/* SPDX-License-Identifier: Apache-2.0 */
/*
 * crgw-ctl run and exec on the netns backend: a fresh network, mount, PID, UTS and IPC namespace whose
 * init (the "holder") keeps the sandbox alive, the gateway wiring its interface in, and the command run
 * inside with its DNS and proxies pointed at the sandbox's gateway address.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#include "ctl.h"

/*
 * A user namespace too: the sandbox's root is an unprivileged user on the host (SANDBOX_UID_BASE and up),
 * so it can neither join the host's namespaces (that needs CAP_SYS_ADMIN over them) nor read or write the
 * host's root-owned files, while it keeps full capabilities over its own network, mounts and processes.
 */
#define NS_FLAGS (CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC)
#define SANDBOX_UID_BASE 1879048192u /* 0x70000000: far above any account a distribution makes */
#define SANDBOX_UID_COUNT 65536u

/* What the parent tells the holder once the gateway has wired the sandbox in. */
struct go {
	char ok;
	char id[24];
	char gateway[16];
	char resolv[PATH_MAX];
};

static void set_proxy_env(const char *gw, const char *id)
{
	char proxy[64];

	snprintf(proxy, sizeof(proxy), "http://%s:3128", gw);
	/* Both spellings: tools disagree on which one they read. */
	setenv("HTTP_PROXY", proxy, 1);
	setenv("HTTPS_PROXY", proxy, 1);
	setenv("http_proxy", proxy, 1);
	setenv("https_proxy", proxy, 1);
	setenv("NO_PROXY", "localhost,127.0.0.1", 1);
	setenv("no_proxy", "localhost,127.0.0.1", 1);
	setenv("CRGW_SANDBOX_ID", id, 1);
	setenv("CRGW_GATEWAY", gw, 1);
}

static const char *str_or(json_t *v)
{
	return json_string_value(v) ? json_string_value(v) : "";
}

static int exit_status(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return CTL_EXIT_RUN_FAILED;
}

/* Runs argv in the current namespaces; returns the exit code as a shell would. */
static int run_command(char **argv, int report_fd)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return CTL_EXIT_RUN_FAILED;
	if (pid == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		if (report_fd >= 0)
			close(report_fd);
		execvp(argv[0], argv);
		fprintf(stderr, "crgw-ctl: %s: %s\n", argv[0], strerror(errno));
		_exit(errno == ENOENT ? CTL_EXIT_NOT_FOUND : CTL_EXIT_CANNOT_EXEC);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return CTL_EXIT_RUN_FAILED;
	return exit_status(status);
}

/*
 * The sandbox's own view of the host filesystem: a new /proc for its PID namespace, our resolv.conf, and
 * empty private /tmp, /var/tmp, /run and /dev/shm, so that no host socket (the gateway's control socket
 * among them) or temporary file is reachable from inside.
 */
static int setup_mounts(const struct go *go)
{
	static const char *const private_dirs[] = { "/tmp", "/var/tmp", "/run", "/dev/shm" };

	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return -errno;
	if (mount(go->resolv, "/etc/resolv.conf", NULL, MS_BIND, NULL))
		return -errno;
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		return -errno;
	for (size_t i = 0; i < sizeof(private_dirs) / sizeof(private_dirs[0]); i++)
		if (access(private_dirs[i], F_OK) == 0 &&
		    mount("tmpfs", private_dirs[i], "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=256m"))
			return -errno;
	return 0;
}

/* Maps the holder's user namespace: uids and gids 0-65535 inside are SANDBOX_UID_BASE and up outside. */
static int map_user_namespace(pid_t pid)
{
	static const char *const files[] = { "uid_map", "gid_map" };
	char path[64], map[64];
	int n = snprintf(map, sizeof(map), "0 %u %u\n", SANDBOX_UID_BASE, SANDBOX_UID_COUNT);

	for (int i = 0; i < 2; i++) {
		int fd;

		snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, files[i]);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		if (write(fd, map, (size_t)n) != n) {
			int err = -errno;

			close(fd);
			return err;
		}
		close(fd);
	}
	return 0;
}

/*
 * The holder: PID 1 of the sandbox. Waits for the parent's go, runs the command, reports its exit code,
 * then either ends (--rm: the sandbox goes with it) or stays as the sandbox's init until released.
 */
static int holder_main(int go_fd, int report_fd, char **argv, bool stay)
{
	struct go go;
	int code, devnull;

	prctl(PR_SET_PDEATHSIG, stay ? 0 : SIGKILL);
	if (read(go_fd, &go, sizeof(go)) != (ssize_t)sizeof(go) || !go.ok)
		_exit(CTL_EXIT_RUN_FAILED);
	close(go_fd);
	/* The maps are written by now: become the namespace's root for real (ids, groups). */
	if (setresgid(0, 0, 0) || setgroups(0, NULL) || setresuid(0, 0, 0) || setup_mounts(&go) ||
	    sethostname(go.id, strlen(go.id))) {
		fprintf(stderr, "crgw-ctl: setting up the sandbox: %s\n", strerror(errno));
		code = CTL_EXIT_RUN_FAILED;
	} else {
		set_proxy_env(go.gateway, go.id);
		code = run_command(argv, report_fd);
	}
	if (write(report_fd, &code, sizeof(code)) != (ssize_t)sizeof(code))
		_exit(code);
	close(report_fd);
	if (!stay)
		_exit(code);
	/* Stay as init without holding the caller's terminal or pipes open. */
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull >= 0) {
		dup2(devnull, 0);
		dup2(devnull, 1);
		dup2(devnull, 2);
	}
	for (;;) {
		if (wait(NULL) < 0 && errno == ECHILD)
			pause();
	}
}

static int write_resolv(const char *gw, char *path, size_t size)
{
	char dir[] = "/tmp/crgw-run-XXXXXX";
	FILE *f;

	if (!mkdtemp(dir))
		return -errno;
	/* The sandbox's root is an unprivileged user here and must reach the file to bind-mount it. */
	if (chmod(dir, 0755))
		return -errno;
	snprintf(path, size, "%s/resolv.conf", dir);
	f = fopen(path, "we");
	if (!f)
		return -errno;
	fprintf(f, "# written by crgw-ctl run: the sandbox's only resolver is its gateway\nnameserver %s\n"
		   "options edns0 attempts:2 timeout:2\n", gw);
	if (fclose(f))
		return -errno;
	return 0;
}

static void remove_resolv(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');

	if (!path[0] || !slash)
		return;
	unlink(path);
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	rmdir(dir);
}

static volatile sig_atomic_t forwarded_signal;

static void remember_signal(int sig)
{
	forwarded_signal = sig;
}

static void json_event(bool json, json_t *ev)
{
	char *s;

	if (json && ev && (s = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER))) {
		fprintf(stderr, "%s\n", s);
		free(s);
	}
	json_decref(ev);
}

static const char run_usage[] =
	"usage: crgw-ctl run [--backend netns] [--policy PATH|DIR] [--rm] [--json] [--run-id ID] -- CMD [ARGS...]\n";

int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "policy", required_argument, NULL, 'p' },
		{ "backend", required_argument, NULL, 'b' },
		{ "rm", no_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "run-id", required_argument, NULL, 'i' },
		{ NULL, 0, NULL, 0 },
	};
	const char *policy_path = NULL, *run_id = NULL;
	bool rm = false, json = false;
	char *policy = NULL, *body = NULL, err[512];
	int go_pipe[2] = { -1, -1 }, report_pipe[2] = { -1, -1 }, c, code = CTL_EXIT_RUN_FAILED;
	struct ctl_response r = { 0 };
	struct go go = { 0 };
	json_t *req = NULL, *resp = NULL;
	pid_t holder = -1;
	char netns[64];

	optind = 1;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'p': policy_path = optarg; break;
		case 'r': rm = true; break;
		case 'j': json = true; break;
		case 'i': run_id = optarg; break;
		case 'b':
			if (strcmp(optarg, "netns")) {
				fprintf(stderr, "crgw-ctl: backend_unavailable: backend '%s' is not available here; "
						"netns is\n", optarg);
				return CTL_EXIT_RUN_FAILED;
			}
			break;
		default: fputs(run_usage, stderr); return CTL_EXIT_RUN_FAILED;
		}
	}
	if (optind >= argc) {
		fputs(run_usage, stderr);
		return CTL_EXIT_RUN_FAILED;
	}
	argv += optind;
	if (geteuid() != 0) {
		fprintf(stderr, "crgw-ctl: run: the netns backend needs root\n");
		return CTL_EXIT_RUN_FAILED;
	}
	if (ctl_compile_policy(policy_path, false, &policy))
		return CTL_EXIT_RUN_FAILED;
	if (pipe2(go_pipe, O_CLOEXEC) || pipe2(report_pipe, O_CLOEXEC)) {
		fprintf(stderr, "crgw-ctl: pipe: %s\n", strerror(errno));
		goto out;
	}
	fflush(NULL);
	/* A fork into new namespaces: the child is PID 1 of its own PID namespace. */
	holder = (pid_t)syscall(SYS_clone, NS_FLAGS | SIGCHLD, NULL, NULL, NULL, 0);
	if (holder < 0) {
		fprintf(stderr, "crgw-ctl: creating the sandbox's namespaces: %s\n", strerror(errno));
		goto out;
	}
	if (holder == 0) {
		close(go_pipe[1]);
		close(report_pipe[0]);
		holder_main(go_pipe[0], report_pipe[1], argv, !rm);
	}
	close(go_pipe[0]);
	go_pipe[0] = -1;
	close(report_pipe[1]);
	report_pipe[1] = -1;

	if (map_user_namespace(holder)) {
		fprintf(stderr, "crgw-ctl: mapping the sandbox's user namespace: %s\n", strerror(errno));
		goto out;
	}
	snprintf(netns, sizeof(netns), "/proc/%d/ns/net", (int)holder);
	req = json_pack("{s:o, s:s, s:s, s:i}", "policy", json_loads(policy, 0, NULL), "netns_path", netns,
			"backend", "netns", "holder_pid", (int)holder);
	if (req && run_id)
		json_object_set_new(req, "run_id", json_string(run_id));
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	if (!body) {
		fprintf(stderr, "crgw-ctl: out of memory\n");
		goto out;
	}
	if (ctl_request("POST", "/v1/sandboxes", body, &r, err, sizeof(err))) {
		fprintf(stderr, "crgw-ctl: %s\n", err);
		goto out;
	}
	if (r.status != 201) {
		ctl_print_error("run", &r);
		goto out;
	}
	resp = json_loads(r.body, 0, NULL);
	const char *id = json_string_value(json_object_get(resp, "id"));
	const char *gw = json_string_value(json_object_get(resp, "gateway"));

	if (!id || !gw || strlen(id) >= sizeof(go.id) || strlen(gw) >= sizeof(go.gateway)) {
		fprintf(stderr, "crgw-ctl: run: unexpected answer from the gateway\n");
		goto out;
	}
	memcpy(go.id, id, strlen(id) + 1);
	memcpy(go.gateway, gw, strlen(gw) + 1);
	if (write_resolv(gw, go.resolv, sizeof(go.resolv))) {
		fprintf(stderr, "crgw-ctl: writing the sandbox's resolv.conf: %s\n", strerror(errno));
		goto out;
	}
	json_event(json, json_pack("{s:s, s:s, s:s, s:s, s:s}", "event", "sandbox_created", "sandbox_id", id,
				   "guest", str_or(json_object_get(resp, "guest")), "gateway", gw, "policy_hash",
				   str_or(json_object_get(resp, "policy_hash"))));
	/* The command decides what Ctrl-C means; we only pass TERM on. */
	signal(SIGINT, SIG_IGN);
	/* No SA_RESTART: the read of the exit code below must return so that TERM ends the sandbox. */
	struct sigaction sa = { .sa_handler = remember_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	go.ok = 1;
	if (write(go_pipe[1], &go, sizeof(go)) != (ssize_t)sizeof(go)) {
		fprintf(stderr, "crgw-ctl: the sandbox's init ended early\n");
		goto out;
	}
	close(go_pipe[1]);
	go_pipe[1] = -1;
	for (;;) {
		ssize_t n;

		/* A signal that came before the read blocked counts too. */
		if (forwarded_signal)
			kill(holder, SIGKILL);
		n = read(report_pipe[0], &code, sizeof(code));

		if (n == (ssize_t)sizeof(code))
			break;
		if (n < 0 && errno == EINTR) {
			if (forwarded_signal)
				kill(holder, SIGKILL);
			continue;
		}
		/* The sandbox ended without a report: killed, by us on TERM or by its release. */
		code = forwarded_signal ? 128 + forwarded_signal : CTL_EXIT_RUN_FAILED;
		break;
	}
	if (rm) {
		struct ctl_response d;
		char path[64];

		waitpid(holder, NULL, 0);
		holder = -1;
		/* The gateway may have released it already when the holder ended; that is fine. */
		snprintf(path, sizeof(path), "/v1/sandboxes/%s", go.id);
		if (ctl_request("DELETE", path, NULL, &d, err, sizeof(err)) == 0)
			free(d.body);
	} else if (!json && !forwarded_signal) {
		fprintf(stderr, "crgw-ctl: sandbox %s is still running: crgw-ctl exec %s -- CMD, "
				"crgw-ctl sandbox rm %s\n", go.id, go.id, go.id);
	}
	/* Killed on a signal, the sandbox is gone whatever --rm said: the gateway releases it. */
	json_event(json, json_pack("{s:s, s:s, s:i, s:b}", "event", "exited", "sandbox_id", go.id, "exit_code",
				   code, "released", rm || forwarded_signal));
out:
	if (holder > 0 && (rm || code == CTL_EXIT_RUN_FAILED)) {
		/* Failed before the command ran, or --rm: nothing of the sandbox may stay. */
		kill(holder, SIGKILL);
		waitpid(holder, NULL, 0);
	}
	remove_resolv(go.resolv);
	for (int i = 0; i < 2; i++) {
		if (go_pipe[i] >= 0)
			close(go_pipe[i]);
		if (report_pipe[i] >= 0)
			close(report_pipe[i]);
	}
	json_decref(req);
	json_decref(resp);
	free(r.body);
	free(body);
	free(policy);
	return code;
}

/* ---- exec --------------------------------------------------------------------------------------- */

int cmd_exec(int argc, char **argv)
{
	/* The user namespace first: the others belong to it. */
	static const char *const ns_names[] = { "user", "pid", "net", "uts", "ipc", "mnt" };
	int fds[6] = { -1, -1, -1, -1, -1, -1 }, code = CTL_EXIT_RUN_FAILED;
	struct ctl_response r = { 0 };
	char path[128], err[512];
	json_t *sb = NULL;
	json_int_t holder;
	const char *gw;

	if (argc < 4 || strcmp(argv[2], "--") || strchr(argv[1], '/')) {
		fprintf(stderr, "usage: crgw-ctl exec SANDBOX -- CMD [ARGS...]\n");
		return CTL_EXIT_RUN_FAILED;
	}
	snprintf(path, sizeof(path), "/v1/sandboxes/%.64s", argv[1]);
	if (ctl_request("GET", path, NULL, &r, err, sizeof(err))) {
		fprintf(stderr, "crgw-ctl: %s\n", err);
		return CTL_EXIT_RUN_FAILED;
	}
	if (r.status != 200) {
		ctl_print_error(argv[1], &r);
		goto out;
	}
	sb = json_loads(r.body, 0, NULL);
	holder = json_integer_value(json_object_get(sb, "holder_pid"));
	gw = json_string_value(json_object_get(sb, "gateway"));
	if (holder <= 0 || !gw) {
		fprintf(stderr, "crgw-ctl: %s has no process to join (not a netns sandbox)\n", argv[1]);
		goto out;
	}
	/* Open all first: after joining the mount namespace, /proc/PID may name something else. */
	for (int i = 0; i < 6; i++) {
		snprintf(path, sizeof(path), "/proc/%lld/ns/%s", (long long)holder, ns_names[i]);
		fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0) {
			fprintf(stderr, "crgw-ctl: %s: %s\n", path, strerror(errno));
			goto out;
		}
	}
	/*
	 * Joining happens in a child: this process keeps its own namespaces, so nothing that runs at its
	 * exit (a sanitizer's leak check, which traces its own threads) ends up in the sandbox's PID space.
	 */
	signal(SIGINT, SIG_IGN);
	pid_t child = fork();

	if (child < 0) {
		fprintf(stderr, "crgw-ctl: fork: %s\n", strerror(errno));
		goto out;
	}
	if (child == 0) {
		for (int i = 0; i < 6; i++)
			if (setns(fds[i], 0)) {
				fprintf(stderr, "crgw-ctl: joining the sandbox (%s): %s\n", ns_names[i], strerror(errno));
				_exit(CTL_EXIT_RUN_FAILED);
			}
		if (setresgid(0, 0, 0) || setgroups(0, NULL) || setresuid(0, 0, 0)) {
			fprintf(stderr, "crgw-ctl: becoming the sandbox's root: %s\n", strerror(errno));
			_exit(CTL_EXIT_RUN_FAILED);
		}
		if (chdir("/")) {
			fprintf(stderr, "crgw-ctl: chdir: %s\n", strerror(errno));
			_exit(CTL_EXIT_RUN_FAILED);
		}
		set_proxy_env(gw, argv[1]);
		/* The PID namespace applies to children only: run_command forks into it. */
		_exit(run_command(argv + 3, -1));
	}
	int status;

	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR) {
			status = CTL_EXIT_RUN_FAILED << 8;
			break;
		}
	code = exit_status(status);
out:
	for (int i = 0; i < 6; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	json_decref(sb);
	free(r.body);
	return code;
}
