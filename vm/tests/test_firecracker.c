/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The firecracker backend against a FAKE Firecracker (fake_firecracker.py): no Firecracker binary can run
 * on the project's machines, so nothing here boots a VM. The fake checks every request against the
 * schemas of Firecracker's published API and records the exchange; this test compares that record with
 * the one checked in (data/firecracker-exchange.jsonl), sends requests the schema refuses, drives the
 * hybrid vsock handshake (good, refused, garbled, silent, flooded) into a real crgw-guest that the fake
 * runs as an ordinary process on the host, and, as root with a static agent and a kernel in /boot, runs
 * the backend's create/exec/release with a fake gateway: a 400 at each step of the configuration, a
 * missing binary and an API socket that never appears each leave no process, registration or drive.
 * usage: test_firecracker FAKE_FIRECRACKER CRGW_GUEST EXPECTED_EXCHANGE
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"
#include "vm_priv.h"

static const char *fake_path, *agent_path, *expected_path;
static char tmp[256];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

/* Starts the fake on `api` with `env` (NAME=VALUE pairs, NULL-terminated) added; waits for its socket. */
static bool accepting(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static pid_t fake_start(const char *api, const char *const *env)
{
	pid_t pid = fork();

	if (pid == 0) {
		/* The fake ends with the test, even one that crashes: nothing may outlive it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (size_t i = 0; env && env[i]; i++)
			putenv((char *)env[i]);
		execl(fake_path, fake_path, "--api-sock", api, (char *)NULL);
		_exit(127);
	}
	/* Until it accepts: the socket's file appears at bind, a moment before the fake listens on it. */
	for (int i = 0; i < 500 && !accepting(api); i++)
		usleep(10000);
	return pid;
}

static void fake_stop(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
}

/* Whether any process but us has `needle` in its command line. */
static bool process_with(const char *needle)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	bool found = false;

	while (d && !found && (e = readdir(d))) {
		char path[300], buf[4096];
		int fd;
		ssize_t n;

		if (e->d_name[0] < '1' || e->d_name[0] > '9' || strtol(e->d_name, NULL, 10) == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		for (ssize_t i = 0; i < n; i++)
			if (!buf[i])
				buf[i] = ' ';
		buf[n] = '\0';
		found = strstr(buf, needle) != NULL;
	}
	if (d)
		closedir(d);
	return found;
}

/* ---- the recorded exchange ----------------------------------------------------------------------------- */

/* Replaces every @DIR@ in `text` with `dir` (a new string). */
static char *subst_dir(const char *text, const char *dir)
{
	size_t n = 0, dl = strlen(dir);
	char *out, *o;

	for (const char *p = text; (p = strstr(p, "@DIR@")); p += 5)
		n++;
	out = malloc(strlen(text) + n * dl + 1);
	if (!out)
		return NULL;
	o = out;
	for (const char *p = text; *p;) {
		if (!strncmp(p, "@DIR@", 5)) {
			memcpy(o, dir, dl);
			o += dl;
			p += 5;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return out;
}

/* Compares the fake's log with the expected exchange: method, path, body, status and answer, in order. */
static bool exchange_matches(const char *log, const char *expected, char *why, size_t whylen)
{
	size_t glen, wlen;
	char *got = tap_read_file(log, &glen), *want_raw = tap_read_file(expected, &wlen), *want = NULL;
	char *gs, *ws, *gl, *wl;
	bool ok = false;
	size_t line = 0;

	snprintf(why, whylen, "could not read %s or %s", log, expected);
	if (!got || !want_raw || !(want = subst_dir(want_raw, tmp)))
		goto out;
	gl = strtok_r(got, "\n", &gs);
	wl = strtok_r(want, "\n", &ws);
	for (;; line++) {
		while (wl && wl[0] == '#')
			wl = strtok_r(NULL, "\n", &ws);
		if (!gl || !wl) {
			ok = !gl && !wl;
			snprintf(why, whylen, "%s ends at request %zu", gl ? "the expected exchange" : "the log",
				 line + 1);
			break;
		}
		json_t *g = json_loads(gl, 0, NULL), *w = json_loads(wl, 0, NULL);
		const char *keys[] = {"method", "path", "body", "status", "answer"};
		bool same = g && w;

		for (size_t i = 0; same && i < 5; i++) {
			same = json_equal(json_object_get(g, keys[i]), json_object_get(w, keys[i])) ||
			       (!json_object_get(g, keys[i]) && json_is_null(json_object_get(w, keys[i])));
			if (!same)
				snprintf(why, whylen, "request %zu differs in %s: got %.300s", line + 1, keys[i], gl);
		}
		json_decref(g);
		json_decref(w);
		if (!same)
			break;
		gl = strtok_r(NULL, "\n", &gs);
		wl = strtok_r(NULL, "\n", &ws);
	}
out:
	free(got);
	free(want_raw);
	free(want);
	return ok;
}

static void test_exchange(void)
{
	char api[300], log[300], kernel[300], initrd[300], drive[300], vsock[300], err[512], why[600], buf[64];
	char logenv[320], agentenv[PATH_MAX + 32];
	const char *env[] = {"FAKE_FC_SKIP_TAP=1", logenv, agentenv, NULL};
	json_t *config;
	pid_t fake;
	int e, fd, p[2];

	snprintf(api, sizeof(api), "%s/api.sock", tmp);
	snprintf(log, sizeof(log), "%s/exchange.jsonl", tmp);
	snprintf(kernel, sizeof(kernel), "%s/vmlinux", tmp);
	snprintf(initrd, sizeof(initrd), "%s/initrd.img", tmp);
	snprintf(drive, sizeof(drive), "%s/rootfs.ext4", tmp);
	snprintf(vsock, sizeof(vsock), "%s/vsock.sock", tmp);
	snprintf(logenv, sizeof(logenv), "FAKE_FC_LOG=%s", log);
	snprintf(agentenv, sizeof(agentenv), "FAKE_FC_AGENT=%s", agent_path);
	write_file(kernel, "not a kernel: the fake only checks that it exists\n");
	write_file(initrd, "not an initramfs\n");
	write_file(drive, "not an ext4 image\n");
	fake = fake_start(api, env);
	tap_result(access(api, F_OK) == 0, "the fake Firecracker serves its API on --api-sock");

	struct vm_fc_vm vm = {.vcpus = 1,
			      .mem_mib = 512,
			      .kernel = kernel,
			      .initrd = initrd,
			      .boot_args = "console=ttyS0 reboot=k panic=-1 pci=off crgw.vsock=1024",
			      .drive = drive,
			      .tap = "cgf0",
			      .mac = "06:00:0a:c8:00:02",
			      .cid = 3,
			      .vsock = vsock};

	config = vm_fc_config(&vm);
	e = vm_fc_configure(api, config, err, sizeof(err));
	tap_result(e == 0, "the whole configuration is accepted and the VM started (%s)", e ? err : "ok");
	tap_result(exchange_matches(log, expected_path, why, sizeof(why)),
		   "the requests are the recorded exchange, request for request (%s)",
		   exchange_matches(log, expected_path, why, sizeof(why)) ? "same" : why);

	/* What the schema refuses, answered with Firecracker's wording; the client shows the fault message. */
	static const struct {
		const char *path, *body, *fault;
	} bad[] = {
	    {"/machine-config", "{\"vcpu_count\": 1}", "missing field `mem_size_mib`"},
	    {"/machine-config", "{\"vcpu_count\": 0, \"mem_size_mib\": 128}", "out of range"},
	    {"/machine-config", "{\"vcpu_count\": \"1\", \"mem_size_mib\": 128}", "invalid type: string"},
	    {"/boot-source", "{\"kernel_image_path\": \"/x\", \"kernel_args\": \"\"}", "unknown field `kernel_args`"},
	    {"/drives/rootfs", "{\"drive_id\": \"root\", \"is_root_device\": true}", "does not match the id"},
	    {"/drives/rootfs", "{\"drive_id\": \"rootfs\", \"is_root_device\": 1}", "invalid type: integer"},
	    {"/drives/rootfs", "{\"drive_id\": \"rootfs\", \"is_root_device\": true, \"io_engine\": \"Fast\"}",
	     "unknown variant `Fast`"},
	    {"/vsock", "{\"guest_cid\": 2, \"uds_path\": \"/v\"}", "out of range"},
	    {"/actions", "{\"action_type\": \"Reboot\"}", "unknown variant `Reboot`"},
	    {"/network-interfaces/eth0", "{\"iface_id\": \"eth0\"}", "missing field `host_dev_name`"},
	    {"/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 128}", "not supported after starting"},
	    {"/snapshot/create", "{}", "Invalid request method and/or path"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *b = json_loads(bad[i].body, 0, NULL);

		err[0] = '\0';
		e = vm_fc_api_put(api, bad[i].path, b, err, sizeof(err));
		json_decref(b);
		tap_result(e == -EPROTO && strstr(err, bad[i].fault) && strstr(err, "HTTP 400"),
			   "PUT %s %s is refused: %s", bad[i].path, bad[i].body, err);
	}

	/* The hybrid vsock: CONNECT, OK, then the agent's protocol to a real crgw-guest, on the host. */
	fd = vm_fc_vsock_connect(vsock, 1024, -1, 5000, err, sizeof(err));
	tap_result(fd >= 0, "CONNECT 1024 on the vsock socket is answered OK (%s)", fd >= 0 ? "connected" : err);
	if (fd >= 0 && pipe(p) == 0) {
		char *argv[] = {"sh", "-c", "echo through-vsock; exit 3", NULL};
		struct guest_exec x = {.argv = argv, .in_fd = -1, .out_fd = p[1], .err_fd = 2};
		struct guest_client_opts o = {.winsize_fd = -1, .hello_timeout_ms = 5000};
		ssize_t n;

		e = guest_client_run(fd, &x, 1, &o, err, sizeof(err));
		close(p[1]);
		n = read(p[0], buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		close(p[0]);
		tap_result(e == 0 && x.status == 3 && !strcmp(buf, "through-vsock\n"),
			   "a command runs through it: its output and exit code 3 come back (%s, status %d)",
			   e ? err : "ok", x.status);
		close(fd);
	}
	/* Two connections at once: vsock is not QEMU's one serial port. */
	int a = vm_fc_vsock_connect(vsock, 1024, -1, 5000, err, sizeof(err));
	int b = vm_fc_vsock_connect(vsock, 1024, -1, 5000, err, sizeof(err));
	bool ha = a >= 0 && vm_wait_hello(a, 5000) == 0, hb = b >= 0 && vm_wait_hello(b, 5000) == 0;

	tap_result(ha && hb, "two connections at once each get the agent's hello");
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	double t0 = now_s();

	fd = vm_fc_vsock_connect(vsock, 2048, -1, 1000, err, sizeof(err));
	tap_result(fd == -ETIMEDOUT && now_s() - t0 < 3,
		   "a port nobody listens on is refused until the deadline, then -ETIMEDOUT (%.1f s): %s", now_s() - t0,
		   err);
	if (fd >= 0)
		close(fd);
	json_decref(config);
	fake_stop(fake);
	usleep(100000);
	tap_result(!process_with(api), "the fake's agent ends with the fake (nothing left running)");
	unlink(api);
	unlink(vsock);
}

/* The vsock handshake with a VMM that misbehaves: the answer is the guest's side, never trusted. */
static void test_vsock_hostile(void)
{
	static const struct {
		const char *mode;
		int want;
		const char *what;
	} cases[] = {
	    {"refuse", -ETIMEDOUT, "every connection closed without an answer: retried until the deadline"},
	    {"garble", -EPROTO, "a line that is not OK <n>"},
	    {"silent", -ETIMEDOUT, "no answer at all"},
	    {"flood", -EPROTO, "a megabyte without a newline"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char api[300], vsock[300], modeenv[64], err[512], kernel[300];
		const char *env[] = {"FAKE_FC_SKIP_TAP=1", modeenv, NULL};
		double t0;
		pid_t fake;
		int fd;

		snprintf(api, sizeof(api), "%s/h%zu.sock", tmp, i);
		snprintf(vsock, sizeof(vsock), "%s/h%zu.vsock", tmp, i);
		snprintf(kernel, sizeof(kernel), "%s/vmlinux", tmp);
		snprintf(modeenv, sizeof(modeenv), "FAKE_FC_VSOCK=%s", cases[i].mode);
		fake = fake_start(api, env);
		struct vm_fc_vm vm = {.vcpus = 1,
				      .mem_mib = 128,
				      .kernel = kernel,
				      .initrd = kernel,
				      .boot_args = "crgw.vsock=1024",
				      .tap = "cgf0",
				      .mac = "06:00:0a:c8:00:02",
				      .cid = 3,
				      .vsock = vsock};
		json_t *config = vm_fc_config(&vm);

		if (vm_fc_configure(api, config, err, sizeof(err)))
			tap_result(false, "vsock %s: the fake did not start: %s", cases[i].mode, err);
		json_decref(config);
		t0 = now_s();
		err[0] = '\0';
		fd = vm_fc_vsock_connect(vsock, 1024, -1, 1500, err, sizeof(err));
		tap_result(fd == cases[i].want && now_s() - t0 < 4 && !strchr(err, '\033'),
			   "vsock %s (%s): %s in %.1f s: %s", cases[i].mode, cases[i].what, strerror(-fd), now_s() - t0,
			   err);
		if (fd >= 0)
			close(fd);
		fake_stop(fake);
		unlink(api);
		unlink(vsock);
	}
}

static void test_copy(void)
{
	char from[300], to[300];
	struct stat a, b;
	int fd;
	bool same = false;

	snprintf(from, sizeof(from), "%s/image.ext4", tmp);
	snprintf(to, sizeof(to), "%s/copy.ext4", tmp);
	fd = open(from, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		(void)!pwrite(fd, "superblock", 10, 1024);
		(void)!pwrite(fd, "data", 4, 8 << 20);
		(void)!ftruncate(fd, 16 << 20);
		close(fd);
	}
	tap_result(vm_fc_copy_file(from, to) == 0, "an image is copied for the VM");
	if (stat(from, &a) == 0 && stat(to, &b) == 0) {
		size_t xl, yl;
		char *x = tap_read_file(from, &xl), *y = tap_read_file(to, &yl);

		same = x && y && a.st_size == b.st_size && !memcmp(x, y, (size_t)a.st_size);
		free(x);
		free(y);
		tap_result(same && b.st_blocks < 1024 && (b.st_mode & 0777) == 0600,
			   "the copy has the same bytes, stays sparse (%lld blocks of 512 for 16 MiB) and is 0600",
			   (long long)b.st_blocks);
	}
	tap_result(vm_fc_copy_file(from, to) == -EEXIST, "an existing copy is not overwritten");
	unlink(to);
	unlink(from);
}

/* ---- the backend with a fake gateway ------------------------------------------------------------------ */

struct fake_gw {
	int registered, released;
	pid_t holder;
	char data_dir[300];
	json_t *last_request;
};

static int gw_register(void *arg, json_t *request, json_t **answer, char *err, size_t errlen)
{
	struct fake_gw *g = arg;
	char dir[300];

	(void)err;
	(void)errlen;
	g->registered++;
	g->holder = (pid_t)json_integer_value(json_object_get(request, "holder_pid"));
	json_decref(g->last_request);
	g->last_request = json_incref(request);
	snprintf(dir, sizeof(dir), "%s/sandboxes", tmp);
	mkdir(dir, 0700);
	snprintf(g->data_dir, sizeof(g->data_dir), "%s/sandboxes/sbx-test%d", tmp, g->registered);
	mkdir(g->data_dir, 0700);
	*answer = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:{s:s}}", "id", "sbx-test", "gateway", "10.200.0.1",
			    "guest", "10.200.0.2", "interface", "cgf0", "guest_mac", "06:00:0a:c8:00:02", "data_dir",
			    g->data_dir, "holder_pid", (int)g->holder, "workspace", "mode", "none");
	return 0;
}

static int gw_release(void *arg, const char *id)
{
	(void)id;
	((struct fake_gw *)arg)->released++;
	return 0;
}

static int gw_get(void *arg, const char *id, json_t **record, char *err, size_t errlen)
{
	(void)arg;
	(void)id;
	(void)record;
	snprintf(err, errlen, "not in the fake gateway");
	return -ENOENT;
}

/* Runs `cmd` through the backend's exec with our standard output sent to /dev/null. */
static int exec_quiet(const struct crgw_backend *be, struct crgw_vm_sandbox *sb, const char *cmd, int *status,
		      char *err, size_t errlen)
{
	char *argv[] = {"sh", "-c", (char *)cmd, NULL};
	struct crgw_exec_request r = {.argv = argv};
	int saved = dup(1), null = open("/dev/null", O_WRONLY), e;

	fflush(stdout);
	dup2(null, 1);
	e = be->exec(sb, &r, status, err, errlen);
	dup2(saved, 1);
	close(saved);
	close(null);
	return e;
}

static void test_backend(void)
{
	const struct crgw_backend *be = crgw_backend_find("firecracker");
	struct fake_gw g = {0};
	struct crgw_gateway_ops ops = {
	    .arg = &g, .register_sandbox = gw_register, .release_sandbox = gw_release, .get_sandbox = gw_get};
	struct crgw_sandbox_spec spec = {.policy_json = "{\"version\":1}", .workspace_mode = CRGW_WS_NONE};
	struct crgw_vm_sandbox *sb = NULL;
	char err[1024], why[512], log[300], cache[300];
	int e, status = -1;

	tap_result(be && !strcmp(be->name, "firecracker"), "the backend table has firecracker");
	if (!be)
		return;
	json_t *caps = be->capabilities();

	tap_result(json_is_true(json_object_get(caps, "network_default_deny")) &&
		       json_is_string(json_object_get(caps, "agent_channel")),
		   "it has a capability map");
	json_decref(caps);

	/* No binary: a clear message, nothing registered. */
	setenv("CRGW_FIRECRACKER", "/nonexistent/firecracker", 1);
	e = be->create(&spec, &ops, &sb, err, sizeof(err));
	tap_result(e == -ENOENT && strstr(err, "no Firecracker binary") && g.registered == 0,
		   "without a Firecracker binary create fails before registering: %s", err);
	tap_result(!crgw_firecracker_available(why, sizeof(why)) && strstr(why, "no Firecracker binary"),
		   "crgw_firecracker_available says why not: %s", why);

	/* The initramfs wants a static agent: a sanitizer build may name the other build's in CRGW_GUEST. */
	if (!getenv("CRGW_GUEST"))
		setenv("CRGW_GUEST", agent_path, 1);
	if (geteuid() != 0 || !vm_guest_available(why, sizeof(why))) {
		printf("# SKIP create/exec/release: %s\n", geteuid() ? "not root" : why);
		tap_result(true, "create/exec/release # SKIP %s", geteuid() ? "needs root" : why);
		return;
	}
	snprintf(log, sizeof(log), "%s/backend.jsonl", tmp);
	snprintf(cache, sizeof(cache), "%s/vmcache", tmp);
	setenv("CRGW_FIRECRACKER", fake_path, 1);
	setenv("CRGW_JAILER", "none", 1);
	setenv("FAKE_FC_AGENT", agent_path, 1);
	setenv("FAKE_FC_SKIP_TAP", "1", 1);
	setenv("FAKE_FC_LOG", log, 1);
	if (!getenv("CRGW_VM_CACHE"))
		setenv("CRGW_VM_CACHE", cache, 1);

	/*
	 * A KVM that the qemu backend's probe found running no guest this boot: known (doctor says so, a boot
	 * that times out names it), but no reason to refuse a VMM that needs none of it (this fake): the
	 * create below runs with the record in place.
	 */
	char probe[PATH_MAX], *accel = getenv("CRGW_VM_ACCEL");
	{
		char boot_id[64] = "";
		size_t blen;
		char *b = tap_read_file("/proc/sys/kernel/random/boot_id", &blen);
		FILE *f;

		accel = accel ? strdup(accel) : NULL;
		unsetenv("CRGW_VM_ACCEL");
		if (b)
			snprintf(boot_id, sizeof(boot_id), "%.36s", b);
		free(b);
		mkdir(getenv("CRGW_VM_CACHE"), 0755);
		snprintf(probe, sizeof(probe), "%s/kvm-probe", getenv("CRGW_VM_CACHE"));
		f = fopen(probe, "we");
		if (f) {
			fprintf(f, "%s qemu kernel initrd\ntcg the guest stopped: KVM internal error\n", boot_id);
			fclose(f);
		}
		tap_result(boot_id[0] && vm_kvm_known_broken(why, sizeof(why)) && strstr(why, "KVM internal error"),
			   "this boot's probe answer is known: %s", why);
		setenv("CRGW_VM_ACCEL", "kvm", 1);
		tap_result(!vm_kvm_known_broken(why, sizeof(why)), "... not with CRGW_VM_ACCEL=kvm");
		unsetenv("CRGW_VM_ACCEL");
	}

	e = be->create(&spec, &ops, &sb, err, sizeof(err));
	tap_result(e == 0 && g.registered == 1, "create: registered, configured and the agent's hello over vsock (%s)",
		   e ? err : "ok");
	unlink(probe);
	tap_result(!vm_kvm_known_broken(why, sizeof(why)),
		   "... which the probe's record did not stop; nothing is known without it");
	if (accel)
		setenv("CRGW_VM_ACCEL", accel, 1);
	free(accel);
	tap_result(!strcmp(json_string_value(json_object_get(g.last_request, "backend")) ?: "", "firecracker") &&
		       !json_object_get(g.last_request, "tap_owner"),
		   "the registration says backend firecracker (no tap_owner without the jailer)");
	if (!e) {
		char path[400];

		snprintf(path, sizeof(path), "%s/firecracker/vm-config.json", g.data_dir);
		json_t *cfg = json_load_file(path, 0, NULL);

		tap_result(
		    cfg && json_object_get(cfg, "boot-source") && json_object_get(cfg, "vsock") &&
			strstr(json_string_value(json_object_get(json_object_get(cfg, "boot-source"), "boot_args"))
				   ?: "",
			       "crgw.vsock=1024"),
		    "the VM's directory keeps the configuration as sent (vm-config.json)");
		json_decref(cfg);
		e = exec_quiet(be, sb, "exit 5", &status, err, sizeof(err));
		tap_result(e == 0 && status == 5, "exec on create's connection: exit code 5 (%s)", e ? err : "ok");
		e = exec_quiet(be, sb, "exit 6", &status, err, sizeof(err));
		tap_result(e == 0 && status == 6, "exec on a new vsock connection: exit code 6 (%s)", e ? err : "ok");
		be->release(sb, &ops);
		be->free(sb);
		sb = NULL;
		usleep(100000);
		tap_result(g.released == 1 && kill(g.holder, 0) && !process_with(g.data_dir),
			   "release: the gateway is told, the VMM and its agent are gone");
	}

	/* A refusal at each step of the configuration: nothing is left. */
	static const char *const steps[] = {"/machine-config", "/boot-source", "/network-interfaces/eth0", "/vsock",
					    "/actions"};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		int before = g.registered, rel = g.released;

		setenv("FAKE_FC_FAULT", steps[i], 1);
		e = be->create(&spec, &ops, &sb, err, sizeof(err));
		tap_result(e == -EPROTO && strstr(err, "fake fault injected") && strstr(err, steps[i]) &&
			       g.registered == before + 1 && g.released == rel + 1 && kill(g.holder, 0) &&
			       !process_with(g.data_dir) && !sb,
			   "a 400 at PUT %s fails the launch, releases it, leaves no process: %s", steps[i], err);
	}
	unsetenv("FAKE_FC_FAULT");

	/* The API socket never appears: a bounded wait. */
	setenv("FAKE_FC_NO_SOCKET", "1", 1);
	double t0 = now_s();

	e = be->create(&spec, &ops, &sb, err, sizeof(err));
	tap_result(e < 0 && strstr(err, "did not appear") && now_s() - t0 < 15 && kill(g.holder, 0) &&
		       g.registered == g.released,
		   "an API socket that never appears fails the launch in %.1f s: %s", now_s() - t0, err);
	unsetenv("FAKE_FC_NO_SOCKET");

	/* The guest's side of the vsock misbehaves: a bounded failure, never a hang. */
	setenv("CRGW_VM_BOOT_TIMEOUT", "2", 1);
	static const char *const modes[] = {"refuse", "garble"};
	for (size_t i = 0; i < 2; i++) {
		setenv("FAKE_FC_VSOCK", modes[i], 1);
		t0 = now_s();
		e = be->create(&spec, &ops, &sb, err, sizeof(err));
		double took = now_s() - t0;

		/* The VMM's processes are reaped as they end: give a loaded machine a moment before looking. */
		for (int w = 0; w < 60 && (!kill(g.holder, 0) || process_with(g.data_dir)); w++)
			usleep(50 * 1000);
		tap_result(e < 0 && took < 10 && kill(g.holder, 0) && g.registered == g.released &&
			       !process_with(g.data_dir),
			   "a vsock that is %s fails the launch in %.1f s and leaves nothing: %s",
			   i ? "garbled" : "refused", took, err);
	}
	unsetenv("FAKE_FC_VSOCK");
	unsetenv("CRGW_VM_BOOT_TIMEOUT");
	json_decref(g.last_request);
}

int main(int argc, char **argv)
{
	char cmd[300];

	if (argc != 4) {
		fprintf(stderr, "usage: test_firecracker FAKE_FIRECRACKER CRGW_GUEST EXPECTED_EXCHANGE\n");
		return 2;
	}
	fake_path = argv[1];
	agent_path = argv[2];
	expected_path = argv[3];
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmp, sizeof(tmp), "/tmp/crgw-test-fc.XXXXXX");
	if (!mkdtemp(tmp))
		return 1;
	printf("# a FAKE Firecracker (%s): no Firecracker binary can run here; nothing boots\n", fake_path);
	test_exchange();
	test_vsock_hostile();
	test_copy();
	test_backend();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd))
		fprintf(stderr, "# could not remove %s\n", tmp);
	return tap_done();
}
