/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the VM backends (qemu.c, firecracker.c) share: finding the guest agent and the VMM's programs,
 * what a guest boots (the kernel, the initramfs with the built-in image, the policy's image), the holder
 * that becomes the VMM once the gateway has made its TAP, and reaching the agent once it has booted.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "crgw/image.h"
#include "kernel.h"
#include "vm_priv.h"

#define BUSYBOX "/bin/busybox"
#define EXTRAS_MAX 512
#define HOLDER_ARGS_MAX 96

int vm_fmt(char *out, size_t len, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(out, len, f, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

const char *vm_cache_dir(void)
{
	const char *d = getenv("CRGW_VM_CACHE");

	return d && d[0] == '/' ? d : "/var/cache/crgw/vm";
}

int vm_boot_timeout_ms(void)
{
	const char *s = getenv("CRGW_VM_BOOT_TIMEOUT");
	char *end;
	long v;

	if (!s || !*s)
		return VM_BOOT_TIMEOUT_MS;
	errno = 0;
	v = strtol(s, &end, 10);
	/* Seconds, 1 to a day; anything else is the default rather than an error nobody would see. */
	return errno || *end || v < 1 || v > 86400 ? VM_BOOT_TIMEOUT_MS : (int)v * 1000;
}

bool vm_static_program(const char *path)
{
	char buf[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;

	if (fd >= 0)
		close(fd);
	/* A dynamic ELF names its interpreter within its first page: "/lib64/ld-linux-x86-64.so.2". */
	return n > 4 && !memcmp(buf, "\177ELF", 4) && !memmem(buf, (size_t)n, "/ld-linux", 9);
}

int vm_find_program(const char *env, const char *name, char *out, size_t len)
{
	const char *v = env ? getenv(env) : NULL;
	const char *path = getenv("PATH");

	out[0] = '\0';
	if (v && *v) {
		if (vm_fmt(out, len, "%s", v) || access(out, X_OK)) {
			out[0] = '\0';
			return -ENOENT;
		}
		return 0;
	}
	for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
		size_t n = strcspn(p, ":");

		if (n && vm_fmt(out, len, "%.*s/%s", (int)n, p, name) == 0 && access(out, X_OK) == 0)
			return 0;
		p += n + (p[n] == ':');
	}
	out[0] = '\0';
	return -ENOENT;
}

int vm_find_agent(char *out, size_t len, char *err, size_t errlen)
{
	const char *env = getenv("CRGW_GUEST");
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	const char *tries[2] = {"%s/crgw-guest", "%s/../guest/crgw-guest"};

	if (env && *env) {
		if (vm_fmt(out, len, "%s", env) || access(out, X_OK)) {
			snprintf(err, errlen, "CRGW_GUEST=%s: not an executable", env);
			return -ENOENT;
		}
	} else {
		char *slash;

		if (n <= 0)
			return -errno;
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash)
			*slash = '\0';
		out[0] = '\0';
		for (int i = 0; i < 2; i++) {
			if (vm_fmt(out, len, tries[i], self) == 0 && access(out, X_OK) == 0)
				break;
			out[0] = '\0';
		}
		if (!out[0]) {
			snprintf(err, errlen, "no crgw-guest beside %s (set CRGW_GUEST to the guest agent)", self);
			return -ENOENT;
		}
	}
	if (!vm_static_program(out)) {
		snprintf(err, errlen,
			 "%s is not a static program (a sanitizer build's is not): the guest has no libc "
			 "to run it",
			 out);
		return -ENOEXEC;
	}
	return 0;
}

bool vm_guest_available(char *why, size_t whylen)
{
	char agent[PATH_MAX], err[PATH_MAX + 128], release[128] = "";
	FILE *p;

	/* The newest kernel, as create() would pick it, without unpacking anything. */
	p = popen("ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1", "re");
	if (p) {
		if (!fgets(release, sizeof(release), p))
			release[0] = '\0';
		pclose(p);
	}
	release[strcspn(release, "\n")] = '\0';
	if (!release[0]) {
		snprintf(why, whylen, "no kernel in /boot (package linux-image-amd64)");
		return false;
	}
	if (vm_find_agent(agent, sizeof(agent), err, sizeof(err))) {
		snprintf(why, whylen, "%s", err);
		return false;
	}
	if (access(BUSYBOX, X_OK) || !vm_static_program(BUSYBOX)) {
		snprintf(why, whylen, "no static %s for the built-in image (package busybox-static)", BUSYBOX);
		return false;
	}
	snprintf(why, whylen, "%s, %s", release, agent);
	return true;
}

/* ---- the built-in image ----------------------------------------------------------------------------- */

struct extras {
	struct vm_initramfs_file f[EXTRAS_MAX];
	char *owned[EXTRAS_MAX];
	size_t n, nowned;
};

static void extras_free(struct extras *x)
{
	for (size_t i = 0; i < x->nowned; i++)
		free(x->owned[i]);
	x->n = x->nowned = 0;
}

/*
 * busybox and its applets' links, and the few files a shell user expects (/etc/passwd, /etc/group,
 * /etc/hosts, a home): the image every sandbox without an image of its own runs on.
 */
static int builtin_image(struct extras *x, char *err, size_t errlen)
{
	static const struct vm_initramfs_file fixed[] = {
	    {.path = "bin/busybox", .source = BUSYBOX, .mode = 0755},
	    {.path = "etc/passwd", .text = "root:x:0:0:root:/root:/bin/sh\n", .mode = 0644},
	    {.path = "etc/group", .text = "root:x:0:\n", .mode = 0644},
	    {.path = "etc/hosts", .text = "127.0.0.1 localhost\n", .mode = 0644},
	    {.path = "root/.profile", .text = "", .mode = 0644},
	};
	char line[256];
	FILE *p;

	if (access(BUSYBOX, X_OK) || !vm_static_program(BUSYBOX)) {
		snprintf(err, errlen, "%s: missing or not static (package busybox-static)", BUSYBOX);
		return -ENOENT;
	}
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		x->f[x->n++] = fixed[i];
	p = popen(BUSYBOX " --list-full", "re");
	if (!p)
		return -errno;
	while (fgets(line, sizeof(line), p)) {
		line[strcspn(line, "\n")] = '\0';
		/* Relative, plain names only: an applet list is input like any other. */
		if (!line[0] || line[0] == '/' || strstr(line, "..") ||
		    strspn(line, "abcdefghijklmnopqrstuvwxyz"
				 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-[") != strlen(line))
			continue;
		if (!strcmp(line, "bin/busybox") || x->n == EXTRAS_MAX || x->nowned == EXTRAS_MAX)
			continue;
		x->owned[x->nowned] = strdup(line);
		if (!x->owned[x->nowned])
			break;
		x->f[x->n++] = (struct vm_initramfs_file){.path = x->owned[x->nowned++], .link_target = "/bin/busybox"};
	}
	pclose(p);
	return 0;
}

int vm_boot_prepare(const char *const *modules, struct vm_kernel *k, char *initrd, size_t initrd_len, char *err,
		    size_t errlen)
{
	/* Large (a file entry per busybox applet): static, as crgw-ctl makes one sandbox at a time. */
	static struct extras x;
	char agent_bin[PATH_MAX];
	int e;

	if ((e = vm_find_agent(agent_bin, sizeof(agent_bin), err, errlen)))
		return e;
	if ((e = vm_kernel_prepare(vm_cache_dir(), NULL, NULL, NULL, k, err, errlen)))
		return e;
	if (!k->vmlinux[0]) {
		snprintf(err, errlen,
			 "kernel %s has no ELF vmlinux with a PVH entry point: it cannot be booted directly",
			 k->release);
		return -ENOEXEC;
	}
	extras_free(&x);
	if ((e = builtin_image(&x, err, errlen)))
		return e;
	e = vm_initramfs_build(vm_cache_dir(), k, agent_bin, modules, x.f, x.n, initrd, initrd_len, err, errlen);
	extras_free(&x);
	return e;
}

int vm_policy_image(const char *policy_json, char *path, size_t pathlen, json_t **config, char *err, size_t errlen)
{
	json_t *p = json_loads(policy_json, 0, NULL);
	json_t *img = json_object_get(json_object_get(p, "sandbox"), "image");
	const char *digest = json_string_value(json_object_get(img, "digest"));
	const char *ref = json_string_value(json_object_get(img, "ref"));
	const char *dir = getenv("CRGW_IMAGE_STORE");
	struct crgw_image_store *s = NULL;
	char why[512];
	int e = 0;

	path[0] = '\0';
	if (!img) {
		json_decref(p);
		return 0;
	}
	if (!dir || !*dir)
		dir = CRGW_IMAGE_STORE_DEFAULT;
	if (!digest || !ref) {
		snprintf(err, errlen, "the compiled policy's sandbox.image has no digest");
		e = -EINVAL;
	} else if ((e = crgw_image_store_open(dir, &s, why, sizeof(why)))) {
		snprintf(err, errlen, "image store %s: %s", dir, why);
	} else if ((e = crgw_image_rootfs(s, digest, path, pathlen, why, sizeof(why)))) {
		if (e == -ENOENT)
			snprintf(err, errlen,
				 "the policy's image %s is not in the image store %s: pull it first (crgw-ctl image "
				 "pull %s)",
				 ref, dir, ref);
		else
			snprintf(err, errlen, "the policy's image %s: %s", ref, why);
		path[0] = '\0';
	} else if (config) {
		json_t *rec = NULL;

		/* What the image says its commands run with (Env, WorkingDir): best effort, as an import has none. */
		if (crgw_image_inspect(s, digest, &rec, why, sizeof(why)) == 0) {
			json_t *c = json_object_get(rec, "image_config");

			*config = json_is_object(c) ? json_pack("{s:O?, s:O?}", "env", json_object_get(c, "env"), "workdir",
								json_object_get(c, "workdir"))
						    : NULL;
		}
		json_decref(rec);
	}
	crgw_image_store_close(s);
	json_decref(p);
	return e;
}

/* ---- the holder ------------------------------------------------------------------------------------- */

void vm_holder_main(int cmd, int status)
{
	static char buf[16384];
	char *argv[HOLDER_ARGS_MAX + 1], *out_path, *err_path;
	size_t len = 0, argc = 0, off;
	ssize_t n;
	int fd;

	setsid();
	while (len < sizeof(buf) && (n = read(cmd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	if (len < 2 || buf[len - 1] != '\0')
		_exit(0);
	/* Where standard output and error go, then the arguments: NUL-separated, ended by an empty one. */
	out_path = buf;
	off = strlen(out_path) + 1;
	err_path = off < len ? buf + off : buf + len - 1;
	off += strlen(err_path) + 1;
	for (; off < len && argc < HOLDER_ARGS_MAX; off += strlen(buf + off) + 1) {
		if (!buf[off])
			break;
		argv[argc++] = buf + off;
	}
	argv[argc] = NULL;
	/* Leading NAME=VALUE arguments are the program's environment, as env(1) reads them. */
	char **prog = argv;

	while (*prog && strchr(*prog, '=') && **prog != '/')
		putenv(*prog++);
	if (!*prog)
		_exit(0);
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
	}
	if (out_path[0] && (fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) >= 0)
		dup2(fd, 1);
	if (err_path[0] && (fd = open(err_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) >= 0)
		dup2(fd, 2);
	execvp(prog[0], prog);
	n = errno;
	(void)!write(status, &n, sizeof(n));
	_exit(127);
}

int vm_holder_args(const char *out_path, const char *err_path, const char *const *argv, size_t argc, char *buf,
		   size_t size, size_t *len)
{
	size_t off = 0;

	for (size_t i = 0; i < argc + 2; i++) {
		const char *a = i == 0 ? out_path : i == 1 ? err_path : argv[i - 2];
		size_t n = strlen(a ? a : "") + 1;

		if (i >= 2 && !a[0])
			return -EINVAL; /* an empty argument would end the list */
		if (argc > HOLDER_ARGS_MAX || off + n + 1 > size)
			return -E2BIG;
		memcpy(buf + off, a ? a : "", n);
		off += n;
	}
	buf[off++] = '\0';
	*len = off;
	return 0;
}

/* ---- reaching the agent ------------------------------------------------------------------------------ */

int vm_wait_hello(int fd, int timeout_ms)
{
	char buf[512];
	size_t len = 0;
	double end = vm_now_ms() + timeout_ms;

	while (len < sizeof(buf) - 1) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int left = (int)(end - vm_now_ms());
		ssize_t n;

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&p, 1, left) <= 0)
			continue;
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			return n == 0 ? -ECONNRESET : -errno;
		len += (size_t)n;
		buf[len] = '\0';
		if (strchr(buf, '\n'))
			return strstr(buf, "\"hello\"") ? 0 : -EPROTO;
	}
	return -EPROTO;
}

bool vm_holder_gone(int pidfd)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};

	/* A pidfd reads as ready once its process has ended, reaped or not (kill(pid, 0) says yes to a zombie). */
	return pidfd >= 0 && poll(&p, 1, 0) == 1;
}

int vm_unix_connect(const char *path, int holder_pidfd, int timeout_ms)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	double end = vm_now_ms() + timeout_ms;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), e;

		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		e = -errno;
		close(fd);
		if (vm_holder_gone(holder_pidfd))
			return -ESRCH;
		if (vm_now_ms() > end)
			return e;
		usleep(20000);
	}
}

void vm_tail_of(const char *path, char *out, size_t len)
{
	char buf[2048];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t size;
	ssize_t n;

	out[0] = '\0';
	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	n = pread(fd, buf, sizeof(buf) - 1, size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	/* A guest's console is its own to write: nothing but printable bytes reaches our terminal. */
	for (char *p = buf; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	(void)vm_fmt(out, len, "%s", buf + (n > 300 ? n - 300 : 0));
}

struct crgw_vm_sandbox *vm_sandbox_new(void)
{
	struct crgw_vm_sandbox *sb = calloc(1, sizeof(*sb));

	if (sb) {
		sb->holder_pidfd = -1;
		sb->agent_fd = -1;
		sb->agent_lock = -1;
	}
	return sb;
}

void vm_sandbox_free(struct crgw_vm_sandbox *sb)
{
	if (!sb)
		return;
	if (sb->agent_fd >= 0)
		close(sb->agent_fd);
	if (sb->agent_lock >= 0)
		close(sb->agent_lock);
	vm_sandbox_clear(sb);
	free(sb);
}

int vm_holder_fork(struct crgw_vm_sandbox *sb, int *cmd_fd, int *status_fd, char *err, size_t errlen)
{
	int cmd[2] = {-1, -1}, st[2] = {-1, -1}, e;
	pid_t pid;

	if (pipe2(cmd, O_CLOEXEC) || pipe2(st, O_CLOEXEC)) {
		e = -errno;
		goto fail;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		e = -errno;
		goto fail;
	}
	if (pid == 0) {
		close(cmd[1]);
		close(st[0]);
		vm_holder_main(cmd[0], st[1]);
	}
	close(cmd[0]);
	close(st[1]);
	*cmd_fd = cmd[1];
	*status_fd = st[0];
	sb->holder = pid;
	sb->holder_pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	sb->owned = true;
	return 0;
fail:
	snprintf(err, errlen, "starting the VM's holder: %s", strerror(-e));
	for (int i = 0; i < 2; i++) {
		if (cmd[i] >= 0)
			close(cmd[i]);
		if (st[i] >= 0)
			close(st[i]);
	}
	return e;
}

int vm_open(json_t *record, struct crgw_vm_sandbox **out, char *err, size_t errlen)
{
	struct crgw_vm_sandbox *sb = vm_sandbox_new();
	int e;

	*out = NULL;
	if (!sb)
		return -ENOMEM;
	if ((e = vm_sandbox_from_record(sb, record, err, errlen)))
		goto fail;
	if (sb->holder <= 0 || !json_string_value(json_object_get(record, "data_dir"))) {
		e = -ESRCH;
		snprintf(err, errlen, "%s has no VM to reach", sb->id);
		goto fail;
	}
	sb->holder_pidfd = (int)syscall(SYS_pidfd_open, sb->holder, 0);
	if (sb->holder_pidfd < 0) {
		e = -errno;
		snprintf(err, errlen, "%s: its VM (pid %d) is gone", sb->id, (int)sb->holder);
		goto fail;
	}
	*out = sb;
	return 0;
fail:
	vm_sandbox_free(sb);
	return e;
}

int vm_exec(struct crgw_vm_sandbox *sb, const struct crgw_exec_request *req,
	    int (*run)(struct crgw_vm_sandbox *sb, const struct crgw_exec_request *r, int *status, char *err,
		       size_t errlen),
	    int *status, char *err, size_t errlen)
{
	struct crgw_exec_request r = *req;
	const char *data_dir = json_string_value(json_object_get(sb->record, "data_dir"));
	char path[PATH_MAX], *image_env[VM_IMAGE_ENV_MAX + 1] = {NULL};
	json_t *config = NULL, *v;
	size_t i, n = 0;
	char **env;
	int e;

	/* The image's Env under the gateway's wiring, and its WorkingDir where there is no workspace. */
	if (data_dir && !vm_fmt(path, sizeof(path), "%s/" VM_IMAGE_CONFIG, data_dir))
		config = json_load_file(path, 0, NULL);
	json_array_foreach(json_object_get(config, "env"), i, v)
		if (json_is_string(v) && n < VM_IMAGE_ENV_MAX)
			image_env[n++] = (char *)json_string_value(v);
	if (!r.cwd && sb->workspace_mode == CRGW_WS_NONE && json_string_value(json_object_get(config, "workdir")) &&
	    json_string_value(json_object_get(config, "workdir"))[0] == '/')
		r.cwd = json_string_value(json_object_get(config, "workdir"));
	env = vm_command_env(sb, req, image_env);
	*status = 125;
	if (!env) {
		json_decref(config);
		snprintf(err, errlen, "building the environment: out of memory");
		return -ENOMEM;
	}
	r.env = env;
	if (sb->agent_fd >= 0) {
		e = crgw_guest_exec_on(sb->agent_fd, &r, 0, true, sb->owned ? sb->holder_pidfd : -1, status, err,
				       errlen);
		close(sb->agent_fd);
		sb->agent_fd = -1;
		if (sb->agent_lock >= 0)
			close(sb->agent_lock);
		sb->agent_lock = -1;
	} else {
		e = run(sb, &r, status, err, errlen);
	}
	for (i = 0; env[i]; i++)
		free(env[i]);
	free(env);
	json_decref(config);
	return e;
}

int vm_image_config_save(const char *data_dir, json_t *config)
{
	char path[PATH_MAX];

	if (!config)
		return 0;
	if (vm_fmt(path, sizeof(path), "%s/" VM_IMAGE_CONFIG, data_dir))
		return -ENAMETOOLONG;
	return json_dump_file(config, path, JSON_COMPACT) ? -EIO : 0;
}

json_t *vm_registration(const struct crgw_sandbox_spec *spec, const struct vm_ws *ws, const char *backend,
			pid_t holder)
{
	json_t *policy = json_loads(spec->policy_json, 0, NULL), *req;

	req = json_pack("{s:o, s:s, s:i, s:o}", "policy", policy ? policy : json_null(), "backend", backend,
			"holder_pid", (int)holder, "workspace",
			ws->mode == CRGW_WS_NONE
			    ? json_pack("{s:s}", "mode", "none")
			    : json_pack("{s:s, s:s}", "mode", crgw_workspace_mode_name(ws->mode), "dir", ws->dir));
	if (req)
		vm_registration_add_common(req, spec);
	return req;
}

int vm_register(struct crgw_vm_sandbox *sb, const struct crgw_gateway_ops *gw, json_t *req, json_t **answer,
		struct vm_answer *a, bool *registered, char *err, size_t errlen)
{
	int e;

	if ((e = gw->register_sandbox(gw->arg, req, answer, err, errlen)))
		return e;
	*registered = true;
	if ((e = vm_sandbox_from_record(sb, *answer, err, errlen)) || (e = vm_disk_check(*answer, err, errlen)))
		return e;
	a->data_dir = json_string_value(json_object_get(*answer, "data_dir"));
	a->guest = json_string_value(json_object_get(*answer, "guest"));
	a->ifname = json_string_value(json_object_get(*answer, "interface"));
	a->mac = json_string_value(json_object_get(*answer, "guest_mac"));
	if (!a->data_dir || a->data_dir[0] != '/' || !a->guest || !a->ifname || !a->mac) {
		snprintf(err, errlen,
			 "the gateway's answer lacks what a VM needs (data_dir, guest, interface, guest_mac): is it "
			 "older than crgw-ctl?");
		return -EPROTO;
	}
	return 0;
}
