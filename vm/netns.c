/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The netns backend: a fresh user, network, mount, PID, UTS and IPC namespace whose init (the "holder")
 * keeps the sandbox alive, the gateway wiring its interface in and putting it in its cgroup, a root file
 * system of its own (rootfs.c), and commands run inside by a process that joins it (the "joiner"): into
 * the sandbox's cgroup, its namespaces, under its seccomp filter. Weaker isolation than a VM: the kernel
 * is the host's.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vm_priv.h"

#define NS_FLAGS (CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC)

#define EXIT_RUN_FAILED 125
#define EXIT_CANNOT_EXEC 126
#define EXIT_NOT_FOUND 127

extern char **environ;

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Closes every descriptor from `from` up: nothing of ours may leak into the sandbox. */
static void close_from(int from)
{
	if (syscall(SYS_close_range, from, ~0u, 0) == 0)
		return;
	for (int fd = from; fd < 65536; fd++)
		close(fd);
}

static void be_sandbox_root(void)
{
	/* The maps are written by now: become the namespace's root for real (ids and no groups). */
	if (setresgid(0, 0, 0) || setgroups(0, NULL) || setresuid(0, 0, 0))
		_exit(EXIT_RUN_FAILED);
}

/*
 * The holder: PID 1 of the sandbox. Waits for the go (its root file system is built by then), drops
 * everything it inherited, takes the seccomp filter, says it is ready, and reaps orphans until the sandbox
 * is released (SIGKILL from the gateway, or from the creator with --rm).
 */
__attribute__((noreturn)) static void holder_main(int go_fd, int ready_fd, bool die_with_parent)
{
	char c = 0, why[256] = "";
	int devnull;

	prctl(PR_SET_PDEATHSIG, die_with_parent ? SIGKILL : 0);
	if (read(go_fd, &c, 1) != 1 || c != 'g')
		_exit(EXIT_RUN_FAILED);
	be_sandbox_root();
	/*
	 * Becoming root of the namespace changed our ids, which clears the parent-death signal (prctl(2)):
	 * without it again, a creator killed with SIGKILL (a `cache warm`, a `run --rm`) left the sandbox
	 * registered until its TTL. The creator dying within these few instructions is not caught: as PID 1
	 * of a new PID namespace we cannot see our parent (getppid is 0).
	 */
	if (die_with_parent)
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	setsid();
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0) {
		c = 'e';
		if (write(ready_fd, &c, 1) < 0)
			_exit(EXIT_RUN_FAILED);
		_exit(EXIT_RUN_FAILED);
	}
	if (crgw_seccomp_apply(why, sizeof(why))) {
		c = 'e';
		if (write(ready_fd, &c, 1) < 0)
			_exit(EXIT_RUN_FAILED);
		_exit(EXIT_RUN_FAILED);
	}
	c = 'r';
	if (write(ready_fd, &c, 1) != 1)
		_exit(EXIT_RUN_FAILED);
	close_from(3);
	for (;;) {
		if (wait(NULL) < 0 && errno == ECHILD)
			pause();
	}
}

/* Opens /proc/PID/ns/NAME. */
static int ns_open(pid_t pid, const char *name)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, name);
	return open(path, O_RDONLY | O_CLOEXEC);
}

/*
 * The gateway mounted the sandbox's disk on its data directory in the host's mount namespace, after the
 * holder made the sandbox's: whether it arrived here depends on the host's propagation (a private root
 * sends nothing). Where it did not, the clone of it taken from the host's tree is attached here.
 */
static int attach_disk(int tree, const char *data_dir, char *why, size_t whylen)
{
	struct stat here, disk;

	if (fstat(tree, &disk) == 0 && stat(data_dir, &here) == 0 && here.st_dev == disk.st_dev)
		return 0;
	if (syscall(SYS_move_mount, tree, "", AT_FDCWD, data_dir, MOVE_MOUNT_F_EMPTY_PATH)) {
		snprintf(why, whylen, "attaching the sandbox's disk on %s: %s", data_dir, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Builds the sandbox's root: a helper joins its PID namespace (so that the /proc it mounts is the
 * sandbox's), forks into it, joins its mount and UTS namespaces as host root, and runs rootfs_build().
 * Returns 0 or -errno with `err`.
 */
static int build_root(pid_t holder, const struct rootfs_spec *spec, char *err, size_t errlen)
{
	int pidns = ns_open(holder, "pid"), mntns = ns_open(holder, "mnt"), utsns = ns_open(holder, "uts");
	int msg[2] = {-1, -1}, status, e = 0;
	pid_t helper;

	if (pidns < 0 || mntns < 0 || utsns < 0 || pipe2(msg, O_CLOEXEC)) {
		e = -errno;
		snprintf(err, errlen, "the sandbox's namespaces: %s", strerror(errno));
		goto out;
	}
	fflush(NULL);
	helper = fork();
	if (helper == 0) {
		char why[1024] = "";
		pid_t inner;
		int rc;

		close(msg[0]);
		if (setns(pidns, CLONE_NEWPID)) {
			snprintf(why, sizeof(why), "joining the sandbox's PID namespace: %s", strerror(errno));
			goto fail;
		}
		inner = fork();
		if (inner == 0) {
			/* The disk, taken from the host's tree before leaving it. */
			int disk = spec->disk ? (int)syscall(SYS_open_tree, AT_FDCWD, spec->data_dir,
							     OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)
					      : -1;

			if (spec->disk && disk < 0) {
				snprintf(why, sizeof(why), "the sandbox's disk on %s: %s", spec->data_dir,
					 strerror(errno));
			} else if (setns(mntns, CLONE_NEWNS) || setns(utsns, CLONE_NEWUTS)) {
				snprintf(why, sizeof(why), "joining the sandbox's namespaces: %s", strerror(errno));
			} else if (disk >= 0 && attach_disk(disk, spec->data_dir, why, sizeof(why))) {
				/* why says it */
			} else if (rootfs_build(spec, why, sizeof(why)) == 0) {
				_exit(0);
			}
			if (write(msg[1], why, strlen(why)) < 0)
				_exit(1);
			_exit(1);
		}
		if (inner < 0 || waitpid(inner, &rc, 0) < 0 || !WIFEXITED(rc) || WEXITSTATUS(rc))
			_exit(1);
		_exit(0);
	fail:
		if (write(msg[1], why, strlen(why)) < 0)
			_exit(1);
		_exit(1);
	}
	close(msg[1]);
	msg[1] = -1;
	if (helper < 0) {
		e = -errno;
		snprintf(err, errlen, "fork: %s", strerror(errno));
		goto out;
	}
	while (waitpid(helper, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		ssize_t n = read(msg[0], err, errlen - 1);

		err[n > 0 ? n : 0] = '\0';
		if (n <= 0)
			snprintf(err, errlen, "building the sandbox's file system failed");
		e = -EIO;
	}
out:
	for (int i = 0; i < 2; i++)
		if (msg[i] >= 0)
			close(msg[i]);
	if (pidns >= 0)
		close(pidns);
	if (mntns >= 0)
		close(mntns);
	if (utsns >= 0)
		close(utsns);
	return e;
}

static json_t *registration(const struct crgw_sandbox_spec *spec, const struct workspace *ws, pid_t holder)
{
	char netns[64];
	json_t *policy = json_loads(spec->policy_json, 0, NULL), *req;

	snprintf(netns, sizeof(netns), "/proc/%d/ns/net", (int)holder);
	req = json_pack("{s:o, s:s, s:s, s:i}", "policy", policy ? policy : json_null(), "netns_path", netns, "backend",
			"netns", "holder_pid", (int)holder);
	if (!req)
		return NULL;
	json_object_set_new(req, "workspace",
			    ws->mode == CRGW_WS_NONE
				? json_pack("{s:s}", "mode", "none")
				: json_pack("{s:s, s:s}", "mode", crgw_workspace_mode_name(ws->mode), "dir", ws->dir));
	vm_registration_add_common(req, spec);
	return req;
}

static void netns_free(struct crgw_vm_sandbox *sb)
{
	if (!sb)
		return;
	vm_sandbox_clear(sb);
	free(sb);
}

static struct crgw_vm_sandbox *sandbox_new(void)
{
	struct crgw_vm_sandbox *sb = calloc(1, sizeof(*sb));

	if (sb)
		sb->holder_pidfd = -1;
	return sb;
}

/*
 * containers tools (skopeo, podman, buildah) read $HOME/.config/containers/registries.conf before the
 * system's file, and then no drop-in of /etc/containers/registries.conf.d: the sandbox's home gets one that
 * makes the gateway's registry mediation the mirror of the policy's primary OCI host (the mediation port is
 * plain HTTP, hence insecure: containers/image tries TLS first, which the gateway answers 400, then HTTP).
 * Written before any command runs, owned by the sandbox's root: it may change its own tools' configuration;
 * the network policy, not this file, keeps it from the registry itself. CONTAINERS_REGISTRIES_CONF names
 * the same file for tools that read that variable. 0, or -errno.
 */
/* A new file of the sandbox's home, written from the host before any of its commands runs; owned by it. */
static int home_file(const char *path, const char *text, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644), e = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len || fchown(fd, SANDBOX_UID_BASE, SANDBOX_UID_BASE))
		e = errno ? -errno : -EIO;
	if (close(fd) && !e)
		e = -errno;
	return e;
}

static int write_registries_conf(const struct crgw_vm_sandbox *sb, const char *data_dir)
{
	static const char sigstore[] = "# Written by crgw: signatures live in the sandbox's home.\n"
				       "default-docker:\n  lookaside: file:///root/.local/share/containers/sigstore\n";
	json_t *med = json_object_get(sb->record, "mediation");
	const char *oci = json_string_value(json_object_get(json_object_get(med, "registries"), "oci"));
	const char *url = json_string_value(json_object_get(med, "url"));
	char path[4096], text[1024];
	int n, e;

	if (!oci || !url || strncmp(url, "http://", 7) || strlen(oci) > 253 || strlen(url) > 128 ||
	    strspn(oci, "abcdefghijklmnopqrstuvwxyz0123456789.-") != strlen(oci))
		return 0;
	n = snprintf(text, sizeof(text),
		     "# Written by crgw: %s through the gateway's registry mediation (see docs/mediation.md).\n"
		     "[[registry]]\nlocation = \"%s\"\n\n[[registry.mirror]]\nlocation = \"%s/registry/oci/%s\"\n"
		     "insecure = true\n",
		     oci, oci, url + 7, oci);
	if (n < 0 || (size_t)n >= sizeof(text))
		return -ENAMETOOLONG;
	static const char *const dirs[] = {"/home/.config", "/home/.config/containers",
					   "/home/.config/containers/registries.d"};
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s%s", data_dir, dirs[i]);
		if ((mkdir(path, 0755) && errno != EEXIST) || lchown(path, SANDBOX_UID_BASE, SANDBOX_UID_BASE))
			return -errno;
	}
	snprintf(path, sizeof(path), "%s/home/.config/containers/registries.conf", data_dir);
	if ((e = home_file(path, text, (size_t)n)))
		return e;
	/*
	 * Signatures: containers/image run as (namespaced) root reads them from the host's
	 * /var/lib/containers/sigstore, which the sandbox cannot open, and fails. Its own home instead.
	 */
	snprintf(path, sizeof(path), "%s/home/.config/containers/registries.d/crgw.yaml", data_dir);
	return home_file(path, sigstore, strlen(sigstore));
}

static int netns_create(const struct crgw_sandbox_spec *spec, const struct crgw_gateway_ops *gw,
			struct crgw_vm_sandbox **out, char *err, size_t errlen)
{
	struct crgw_vm_sandbox *sb = NULL;
	struct workspace ws = {.tree_fd = -1};
	int go[2] = {-1, -1}, ready[2] = {-1, -1}, e;
	json_t *req = NULL, *answer = NULL;
	bool registered = false;
	pid_t holder = -1;
	char why[256];
	double t_net, t_root, t_boot;

	*out = NULL;
	if (geteuid() != 0) {
		snprintf(err, errlen, "the netns backend needs root");
		return -EPERM;
	}
	/* Fail closed and early: a host that cannot filter system calls gets no sandbox. */
	if (!crgw_seccomp_available(why, sizeof(why))) {
		snprintf(err, errlen, "seccomp: %s", why);
		return -ENOSYS;
	}
	if ((e = workspace_prepare(&ws, spec->workspace_mode, spec->workspace_dir, err, errlen)))
		return e;
	sb = sandbox_new();
	if (!sb || pipe2(go, O_CLOEXEC) || pipe2(ready, O_CLOEXEC)) {
		e = sb ? -errno : -ENOMEM;
		snprintf(err, errlen, "%s", strerror(-e));
		goto fail;
	}
	fflush(NULL);
	/* A fork into new namespaces: the child is PID 1 of its own PID namespace. */
	holder = (pid_t)syscall(SYS_clone, NS_FLAGS | SIGCHLD, NULL, NULL, NULL, 0);
	if (holder < 0) {
		e = -errno;
		snprintf(err, errlen, "creating the sandbox's namespaces: %s", strerror(errno));
		goto fail;
	}
	if (holder == 0) {
		close(go[1]);
		close(ready[0]);
		holder_main(go[0], ready[1], spec->remove_on_exit);
	}
	close(go[0]);
	close(ready[1]);
	go[0] = ready[1] = -1;
	sb->holder = holder;
	sb->holder_pidfd = pidfd_open_(holder);
	sb->owned = true;
	/* Uids and gids 0-65535 inside are SANDBOX_UID_BASE and up outside. */
	if ((e = vm_map_ids(holder, 0, 0, SANDBOX_UID_BASE, SANDBOX_UID_COUNT))) {
		snprintf(err, errlen, "mapping the sandbox's user namespace: %s", strerror(-e));
		goto fail;
	}
	t_net = vm_now_ms();
	req = registration(spec, &ws, holder);
	if (!req) {
		e = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if ((e = gw->register_sandbox(gw->arg, req, &answer, err, errlen)))
		goto fail;
	registered = true;
	if ((e = vm_sandbox_from_record(sb, answer, err, errlen)) || (e = vm_disk_check(answer, err, errlen)))
		goto fail;
	const char *data_dir = json_string_value(json_object_get(answer, "data_dir"));
	const char *guest = json_string_value(json_object_get(answer, "guest"));

	if (!data_dir || data_dir[0] != '/') {
		e = -EPROTO;
		snprintf(err, errlen, "the gateway gave the sandbox no data directory (is it older than crgw-ctl?)");
		goto fail;
	}
	if (ws.mode == CRGW_WS_COPY && !strncmp(data_dir, ws.dir, strlen(ws.dir)) &&
	    (data_dir[strlen(ws.dir)] == '/' || !strcmp(ws.dir, "/"))) {
		e = -ELOOP;
		snprintf(err, errlen,
			 "the workspace %s holds the gateway's data directory %s: a copy of it cannot be "
			 "made (choose another --workspace, or move the gateway's data_dir)",
			 ws.dir, data_dir);
		goto fail;
	}
	struct rootfs_spec rs = {.data_dir = data_dir,
				 .hostname = sb->id,
				 .gateway = sb->gateway,
				 .guest = guest ? guest : "127.0.0.1",
				 .workspace = &ws,
				 .disk = json_is_object(json_object_get(answer, "disk"))};

	t_root = vm_now_ms();
	if ((e = build_root(holder, &rs, err, errlen)))
		goto fail;
	if ((e = write_registries_conf(sb, data_dir))) {
		snprintf(err, errlen, "writing the sandbox's registries.conf: %s", strerror(-e));
		goto fail;
	}
	char c = 'g';

	t_boot = vm_now_ms();
	ssize_t got = -1;
	bool gone = false;

	/* EPIPE or EOF: the holder has ended. A signal to us (EINTR) says nothing of it. */
	if (write(go[1], &c, 1) != 1) {
		gone = errno == EPIPE;
	} else {
		got = read(ready[0], &c, 1);
		gone = got == 0;
	}
	if (got != 1 || c != 'r') {
		int status = 0;

		e = -EIO;
		/*
		 * Killed by SIGKILL, the holder was ended by the gateway's release (or its stop), not by our
		 * filter. It is reaped here, so the cleanup below must not signal its pid.
		 */
		if (gone && waitpid(holder, &status, 0) == holder) {
			holder = -1;
			if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
				snprintf(err, errlen,
					 "the sandbox was ended before its init started: its holder was killed (the "
					 "gateway released the sandbox, or stopped)");
				goto fail;
			}
		}
		snprintf(err, errlen, "the sandbox's init did not start (its seccomp filter could not be applied)");
		goto fail;
	}
	/* Its root (and workspace) is its "image"; the registration its network; its init's start its boot. */
	sb->timings[0] = t_boot - t_root;
	sb->timings[1] = t_root - t_net;
	sb->timings[2] = vm_now_ms() - t_boot;
	vm_report_timings(sb, gw, NULL);
	close(go[1]);
	close(ready[0]);
	workspace_close(&ws);
	json_decref(req);
	json_decref(answer);
	*out = sb;
	return 0;
fail:
	/* Nothing of the sandbox may stay: its init goes, and the gateway releases what it registered. */
	if (holder > 0) {
		kill(holder, SIGKILL);
		waitpid(holder, NULL, 0);
	}
	if (registered && sb->id[0])
		gw->release_sandbox(gw->arg, sb->id);
	for (int i = 0; i < 2; i++) {
		if (go[i] >= 0)
			close(go[i]);
		if (ready[i] >= 0)
			close(ready[i]);
	}
	workspace_close(&ws);
	json_decref(req);
	json_decref(answer);
	netns_free(sb);
	return e;
}

static int netns_open(json_t *record, struct crgw_vm_sandbox **out, char *err, size_t errlen)
{
	struct crgw_vm_sandbox *sb = sandbox_new();
	int e;

	*out = NULL;
	if (!sb)
		return -ENOMEM;
	if ((e = vm_sandbox_from_record(sb, record, err, errlen)))
		goto fail;
	if (sb->holder <= 0) {
		e = -ESRCH;
		snprintf(err, errlen, "%s has no process to join (not a netns sandbox)", sb->id);
		goto fail;
	}
	/* A pidfd names this process, where the number could be reused. */
	sb->holder_pidfd = pidfd_open_(sb->holder);
	if (sb->holder_pidfd < 0) {
		e = -errno;
		snprintf(err, errlen, "%s: its init (pid %d) is gone", sb->id, (int)sb->holder);
		goto fail;
	}
	*out = sb;
	return 0;
fail:
	netns_free(sb);
	return e;
}

static volatile sig_atomic_t command_pgrp;

/* In the joiner: a signal from crgw-ctl goes to the command's process group. */
static void forward_to_command(int sig)
{
	if (command_pgrp > 0)
		kill(-(pid_t)command_pgrp, sig);
}

__attribute__((noreturn)) static void exec_fail(int ctl, int code, const char *fmt, const char *what)
{
	struct exec_msg m = {.type = EXEC_MSG_ERROR, .code = code};

	snprintf(m.text, sizeof(m.text), fmt, what, strerror(errno));
	exec_msg_send(ctl, &m, -1);
	_exit(code);
}

/*
 * The command's process, forked into the sandbox's PID namespace while still host root: it enters the
 * sandbox's cgroup, then its other namespaces (the user namespace first: the others belong to it),
 * becomes its root, opens its terminal, takes its seccomp filter and execs the command.
 */
__attribute__((noreturn)) static void command_main(const struct crgw_vm_sandbox *sb,
						   const struct crgw_exec_request *req, const struct console *con,
						   int ns[6], int ctl)
{
	static const char *const ns_names[] = {"user", "pid", "net", "uts", "ipc", "mnt"};
	const char *cwd = req->cwd ? req->cwd : sb->workspace_mode == CRGW_WS_NONE ? "/" : "/workspace";
	int fds[3], slave = -1;
	char why[256], **env;
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < 32; s++)
		signal(s, SIG_DFL);
	/* "0" is the writer itself: every process it forks stays in the sandbox's group. */
	for (size_t i = 0; i < sb->ncgroup_dirs; i++) {
		char path[PATH_MAX];
		int fd;

		snprintf(path, sizeof(path), "%s/cgroup.procs", sb->cgroup_dirs[i]);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, "0", 1) != 1)
			exec_fail(ctl, EXIT_RUN_FAILED, "joining the sandbox's cgroup %s: %s", sb->cgroup_dirs[i]);
		close(fd);
	}
	for (int i = 0; i < 6; i++)
		if (i != 1 && setns(ns[i], 0))
			exec_fail(ctl, EXIT_RUN_FAILED, "joining the sandbox (%s namespace): %s", ns_names[i]);
	if (setresgid(0, 0, 0) || setgroups(0, NULL) || setresuid(0, 0, 0))
		exec_fail(ctl, EXIT_RUN_FAILED, "becoming the sandbox's root%s: %s", "");
	if (chdir(cwd))
		exec_fail(ctl, EXIT_CANNOT_EXEC, "working directory %s: %s", cwd);
	/* A session of its own: no terminal of the caller's is its controlling terminal. */
	setsid();
	if (req->tty) {
		/* The sandbox's own pty instance: ttyname() and /dev/tty work inside as they should. */
		int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC), unlock = 0;

		if (master < 0 || ioctl(master, TIOCSPTLCK, &unlock) ||
		    (slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
			exec_fail(ctl, EXIT_RUN_FAILED, "opening a terminal in the sandbox%s: %s", "");
		struct exec_msg m = {.type = EXEC_MSG_PTY};

		if (exec_msg_send(ctl, &m, master))
			_exit(EXIT_RUN_FAILED);
		close(master);
		ioctl(slave, TIOCSCTTY, 0);
		fds[0] = fds[1] = fds[2] = slave;
	} else {
		memcpy(fds, con->child_fd, sizeof(fds));
	}
	env = vm_command_env(sb, req, NULL);
	if (!env)
		exec_fail(ctl, EXIT_RUN_FAILED, "building the environment%s: %s", "");
	if (crgw_seccomp_apply(why, sizeof(why)))
		exec_fail(ctl, EXIT_RUN_FAILED, "%s (%s)", why);
	for (int i = 0; i < 3; i++)
		if (dup2(fds[i], i) < 0)
			_exit(EXIT_RUN_FAILED);
	close_from(3);
	environ = env;
	execvp(req->argv[0], req->argv);
	fprintf(stderr, "crgw-ctl: %s: %s\n", req->argv[0], strerror(errno));
	_exit(errno == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC);
}

/*
 * The joiner: crgw-ctl's child that joins the sandbox's PID namespace (which only its children enter),
 * forks the command into it and waits for it. It stays host root and outside the sandbox's cgroup, so
 * that an end of the sandbox (its TTL, an OOM kill, a release) ends the command, not the report of it.
 */
__attribute__((noreturn)) static void joiner_main(const struct crgw_vm_sandbox *sb, const struct crgw_exec_request *req,
						  struct console *con, int ns[6], int ctl)
{
	int status;
	pid_t child;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* crgw-ctl's ends of the relays: held here, a closed input would never reach the command as EOF. */
	for (int i = 0; i < 3; i++)
		if (con->relay_fd[i] >= 0)
			close(con->relay_fd[i]);
	if (setns(ns[1], CLONE_NEWPID))
		exec_fail(ctl, EXIT_RUN_FAILED, "joining the sandbox (%s namespace): %s", "pid");
	child = fork();
	/* A PID namespace whose init has died takes no new process: fork says ENOMEM (pid_namespaces(7)). */
	if (child < 0 && errno == ENOMEM)
		exec_fail(ctl, EXIT_RUN_FAILED, "the sandbox's init has ended (was the sandbox released?)%s%.0s", "");
	if (child < 0)
		exec_fail(ctl, EXIT_RUN_FAILED, "fork%s: %s", "");
	if (child == 0)
		command_main(sb, req, con, ns, ctl);
	command_pgrp = child;
	struct sigaction sa = {.sa_handler = forward_to_command};

	sigemptyset(&sa.sa_mask);
	for (int s = 1; s < 32; s++)
		if (s != SIGKILL && s != SIGSTOP && s != SIGCHLD && s != SIGSEGV && s != SIGBUS && s != SIGILL &&
		    s != SIGFPE && s != SIGABRT)
			sigaction(s, &sa, NULL);
	for (int i = 0; i < 3; i++)
		if (con->child_fd[i] >= 0)
			close(con->child_fd[i]);
	for (int i = 0; i < 6; i++)
		close(ns[i]);
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			_exit(EXIT_RUN_FAILED);
	struct exec_msg m = {.type = EXEC_MSG_EXIT};

	m.code = WIFEXITED(status)     ? WEXITSTATUS(status)
		 : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
				       : EXIT_RUN_FAILED;
	exec_msg_send(ctl, &m, -1);
	_exit(0);
}

struct fatal_ctx {
	struct crgw_vm_sandbox *sb;
	int sig;
};

/* TERM or HUP at crgw-ctl run: the sandbox it made ends now, whatever the command would do. */
static void end_sandbox(int sig, void *arg)
{
	struct fatal_ctx *f = arg;

	f->sig = sig;
	if (f->sb->holder_pidfd >= 0)
		syscall(SYS_pidfd_send_signal, f->sb->holder_pidfd, SIGKILL, NULL, 0);
}

static int netns_exec(struct crgw_vm_sandbox *sb, const struct crgw_exec_request *req, int *status, char *err,
		      size_t errlen)
{
	static const char *const ns_names[] = {"user", "pid", "net", "uts", "ipc", "mnt"};
	int ns[6] = {-1, -1, -1, -1, -1, -1}, ctl[2] = {-1, -1}, e = 0;
	struct fatal_ctx fatal = {.sb = sb};
	struct console con;
	pid_t joiner;

	*status = EXIT_RUN_FAILED;
	if ((e = console_open(&con, req->tty, req->interactive))) {
		snprintf(err, errlen, "setting up the command's streams: %s", strerror(-e));
		console_close(&con);
		return e;
	}
	/* All namespaces first, then a check that the init is still the one we named: never another's. */
	for (int i = 0; i < 6; i++)
		if ((ns[i] = ns_open(sb->holder, ns_names[i])) < 0) {
			e = -errno;
			snprintf(err, errlen, "%s: its %s namespace: %s", sb->id, ns_names[i], strerror(errno));
			goto out;
		}
	if (sb->holder_pidfd < 0 || syscall(SYS_pidfd_send_signal, sb->holder_pidfd, 0, NULL, 0)) {
		e = -ESRCH;
		snprintf(err, errlen, "%s has ended", sb->id);
		goto out;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl)) {
		e = -errno;
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		goto out;
	}
	fflush(NULL);
	joiner = fork();
	if (joiner < 0) {
		e = -errno;
		snprintf(err, errlen, "fork: %s", strerror(errno));
		goto out;
	}
	if (joiner == 0) {
		close(ctl[0]);
		joiner_main(sb, req, &con, ns, ctl[1]);
	}
	console_after_fork(&con);
	close(ctl[1]);
	ctl[1] = -1;
	e = console_run(&con, ctl[0], joiner, sb->owned ? end_sandbox : NULL, &fatal);
	while (waitpid(joiner, NULL, 0) < 0 && errno == EINTR)
		;
	if (fatal.sig)
		*status = 128 + fatal.sig;
	else if (e >= 0)
		*status = e;
	else
		snprintf(err, errlen, "the sandbox ended before the command reported its exit");
	e = e < 0 && !fatal.sig ? e : 0;
out:
	console_close(&con);
	for (int i = 0; i < 6; i++)
		if (ns[i] >= 0)
			close(ns[i]);
	for (int i = 0; i < 2; i++)
		if (ctl[i] >= 0)
			close(ctl[i]);
	return e;
}

static int netns_release(struct crgw_vm_sandbox *sb, const struct crgw_gateway_ops *gw)
{
	return vm_release_holder(sb, gw);
}

static json_t *netns_capabilities(void)
{
	char why[256];
	bool seccomp = crgw_seccomp_available(why, sizeof(why));

	return json_pack("{s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:s, s:[s, s, s, s], s:b, s:s}", "network_default_deny",
			 1, "network_host_port_filtering", 1, "dns_control", 1, "policy_immutability", 1,
			 "audit_event_emission", 1, "secret_isolation", 1, "seccomp", seccomp, "seccomp_detail", why,
			 "workspace_modes", "copy", "rw", "ro", "none", "tty", 1, "isolation",
			 "namespaces (weaker than a VM: the host's kernel)");
}

const struct crgw_backend crgw_backend_netns = {
    .name = "netns",
    .create = netns_create,
    .open = netns_open,
    .exec = netns_exec,
    .release = netns_release,
    .capabilities = netns_capabilities,
    .free = netns_free,
};
