/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The qemu backend: a microVM per sandbox. q35 booting the distribution's kernel through PVH (KVM when
 * /dev/kvm works, TCG otherwise), the gateway's TAP on virtio-net with the MAC the gateway's anti-spoofing
 * expects, crgw-guest as the guest's init on a virtio-serial port, and the built-in image: busybox and the
 * agent in the initramfs. QEMU is the sandbox's holder: the gateway puts it in the sandbox's cgroup, ends
 * it on release, TTL or a gateway restart, and deletes the TAP.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crgw/image.h"
#include "kernel.h"
#include "vm_priv.h"

#define QEMU_BINARY "qemu-system-x86_64"
#define BUSYBOX "/bin/busybox"
#define GUEST_MEMORY_MB 512
#define AGENT_PORT "crgw.0"
#define ARGV_MAX 64
#define EXTRAS_MAX 512
/* Boot to the agent's hello: about 3.5 s under TCG on the project's machines; a loaded host takes longer. */
#define BOOT_TIMEOUT_MS 120000

extern char **environ;

__attribute__((format(printf, 3, 4))) static int fmt(char *out, size_t len, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(out, len, f, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Where kernels and initramfs images are cached: $CRGW_VM_CACHE, or /var/cache/crgw/vm. */
static const char *cache_dir(void)
{
	const char *d = getenv("CRGW_VM_CACHE");

	return d && d[0] == '/' ? d : "/var/cache/crgw/vm";
}

static bool static_program(const char *path)
{
	char buf[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;

	if (fd >= 0)
		close(fd);
	/* A dynamic ELF names its interpreter within its first page: "/lib64/ld-linux-x86-64.so.2". */
	return n > 4 && !memcmp(buf, "\177ELF", 4) && !memmem(buf, (size_t)n, "/ld-linux", 9);
}

/*
 * The guest agent: $CRGW_GUEST, or crgw-guest beside this program (installed), or in the build tree's
 * guest/ (run from the build directory). It must be static: the built-in image has no libc.
 */
static int find_agent(char *out, size_t len, char *err, size_t errlen)
{
	const char *env = getenv("CRGW_GUEST");
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	const char *tries[2] = {"%s/crgw-guest", "%s/../guest/crgw-guest"};

	if (env && *env) {
		if (fmt(out, len, "%s", env) || access(out, X_OK)) {
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
			if (fmt(out, len, tries[i], self) == 0 && access(out, X_OK) == 0)
				break;
			out[0] = '\0';
		}
		if (!out[0]) {
			snprintf(err, errlen, "no crgw-guest beside %s (set CRGW_GUEST to the guest agent)", self);
			return -ENOENT;
		}
	}
	if (!static_program(out)) {
		snprintf(err, errlen,
			 "%s is not a static program (a sanitizer build's is not): the guest has no libc "
			 "to run it",
			 out);
		return -ENOEXEC;
	}
	return 0;
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

	if (access(BUSYBOX, X_OK) || !static_program(BUSYBOX)) {
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

/*
 * The root file system of the policy's `sandbox.image` from the image store ($CRGW_IMAGE_STORE, else
 * the default), into `path`; an empty path when the policy names no image (the built-in one). An image
 * not in the store is an error that says how to pull it: a launch never fetches what nobody vetted.
 */
static int policy_image(const char *policy_json, char *path, size_t pathlen, char *err, size_t errlen)
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
	}
	crgw_image_store_close(s);
	json_decref(p);
	return e;
}

/* ---- the holder: QEMU, started before the registration and exec'd after it ------------------------- */

/*
 * The holder waits for its command line on `cmd` (NUL-separated arguments, ended by an empty one; EOF:
 * give up), then becomes QEMU. It exists before the registration so that the gateway can put it in the
 * sandbox's cgroup; QEMU must start after it, since it opens the TAP the registration makes. An exec that
 * fails is reported on `status` (close-on-exec, so a successful exec just closes it).
 */
static __attribute__((noreturn)) void holder_main(int cmd, int status, const char *log)
{
	static char buf[16384];
	char *argv[ARGV_MAX + 1];
	size_t len = 0, argc = 0;
	ssize_t n;
	int fd;

	setsid();
	while (len < sizeof(buf) && (n = read(cmd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	if (len == 0 || buf[len - 1] != '\0')
		_exit(0);
	for (size_t off = 0; off < len && argc < ARGV_MAX; off += strlen(buf + off) + 1) {
		if (!buf[off])
			break;
		argv[argc++] = buf + off;
	}
	argv[argc] = NULL;
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
	}
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd >= 0)
		dup2(fd, 2);
	execvp(argv[0], argv);
	n = errno;
	(void)!write(status, &n, sizeof(n));
	_exit(127);
}

/* The agent's hello on a fresh connection: the guest has booted and its agent serves. */
static int wait_hello(int fd, int timeout_ms)
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

/* A connection to QEMU's socket for the agent's port; QEMU takes one client at a time. */
static int agent_connect(const char *path, pid_t holder, int timeout_ms)
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
		if (holder > 0 && kill(holder, 0) != 0)
			return -ESRCH;
		if (vm_now_ms() > end)
			return e;
		usleep(20000);
	}
}

static json_t *registration(const struct crgw_sandbox_spec *spec, pid_t holder)
{
	json_t *policy = json_loads(spec->policy_json, 0, NULL), *req;

	req = json_pack("{s:o, s:s, s:i, s:{s:s}}", "policy", policy ? policy : json_null(), "backend", "qemu",
			"holder_pid", (int)holder, "workspace", "mode", "none");
	if (!req)
		return NULL;
	vm_registration_add_common(req, spec);
	return req;
}

struct qemu_launch {
	char vmlinux[PATH_MAX], initrd[PATH_MAX], console[PATH_MAX], agent[PATH_MAX];
	char rootfs[PATH_MAX]; /* the policy's image (ext4), or empty for the built-in image */
	char drive[PATH_MAX + 64];
	char append[1024], chardev[PATH_MAX + 64], netdev[128], nic[128], memory[16];
	bool kvm;
};

/* QEMU's command line as NUL-separated arguments ended by an empty one. */
static int qemu_cmdline(const struct qemu_launch *l, char *buf, size_t size, size_t *len)
{
	/* clang-format off: pairs of option and value read best side by side */
	const char *argv[] = {
	    QEMU_BINARY,
	    "-M",
	    "q35",
	    "-accel",
	    l->kvm ? "kvm" : "tcg",
	    "-cpu",
	    l->kvm ? "host" : "max",
	    "-m",
	    l->memory,
	    "-smp",
	    "1",
	    "-nodefaults",
	    "-no-user-config",
	    "-display",
	    "none",
	    "-no-reboot",
	    "-serial",
	    l->console,
	    "-kernel",
	    l->vmlinux,
	    "-initrd",
	    l->initrd,
	    "-append",
	    l->append,
	    "-device",
	    "virtio-serial-pci",
	    "-chardev",
	    l->chardev,
	    "-device",
	    "virtserialport,chardev=agent,name=" AGENT_PORT,
	    "-netdev",
	    l->netdev,
	    "-device",
	    l->nic,
	    /* QEMU's own seccomp filter: no new privileges, no spawning, no obsolete calls. */
	    "-sandbox",
	    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
	    /* The image's root, read-only underneath: snapshot=on gives each VM its own throwaway overlay. */
	    "-drive",
	    l->drive,
	    "-device",
	    "virtio-blk-pci,drive=root",
	};
	/* clang-format on */
	size_t off = 0, nargs = sizeof(argv) / sizeof(argv[0]) - (l->rootfs[0] ? 0 : 4);

	for (size_t i = 0; i < nargs; i++) {
		size_t n = strlen(argv[i]) + 1;

		if (off + n + 1 > size)
			return -E2BIG;
		memcpy(buf + off, argv[i], n);
		off += n;
	}
	buf[off++] = '\0';
	*len = off;
	return 0;
}

static struct crgw_vm_sandbox *sandbox_new(void)
{
	struct crgw_vm_sandbox *sb = calloc(1, sizeof(*sb));

	if (sb) {
		sb->holder_pidfd = -1;
		sb->agent_fd = -1;
	}
	return sb;
}

static void qemu_free(struct crgw_vm_sandbox *sb)
{
	if (!sb)
		return;
	if (sb->agent_fd >= 0)
		close(sb->agent_fd);
	vm_sandbox_clear(sb);
	free(sb);
}

/* The last lines of QEMU's log or the guest's console, for an error message. */
static void tail_of(const char *path, char *out, size_t len)
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
	for (char *p = buf; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	(void)fmt(out, len, "%s", buf + (n > 300 ? n - 300 : 0));
}

static int qemu_create(const struct crgw_sandbox_spec *spec, const struct crgw_gateway_ops *gw,
		       struct crgw_vm_sandbox **out, char *err, size_t errlen)
{
	static struct extras x;
	struct qemu_launch l = {.kvm = false};
	struct vm_kernel k;
	struct crgw_vm_sandbox *sb = NULL;
	json_t *req = NULL, *answer = NULL;
	int cmd[2] = {-1, -1}, st[2] = {-1, -1}, e, fd;
	bool registered = false;
	char agent_bin[PATH_MAX], qlog[PATH_MAX], cmdline[16384], why[400];
	size_t cmdlen;
	pid_t holder = -1;
	double t0 = vm_now_ms(), t_prep, t_net;
	ssize_t n;

	*out = NULL;
	if (geteuid() != 0) {
		snprintf(err, errlen, "the qemu backend needs root (the gateway's TAP, the VM's cgroup)");
		return -EPERM;
	}
	if (spec->workspace_mode != CRGW_WS_NONE) {
		snprintf(err, errlen, "the qemu backend has no workspace yet: run it with --workspace-mode none");
		return -EOPNOTSUPP;
	}
	/* What the VM boots: the host's kernel, and an initramfs with the agent and the built-in image. */
	if ((e = find_agent(agent_bin, sizeof(agent_bin), err, errlen)))
		return e;
	if ((e = vm_kernel_prepare(cache_dir(), NULL, NULL, NULL, &k, err, errlen)))
		return e;
	if (!k.vmlinux[0]) {
		snprintf(err, errlen, "kernel %s has no PVH entry point: QEMU cannot boot it directly", k.release);
		return -ENOEXEC;
	}
	if ((e = policy_image(spec->policy_json, l.rootfs, sizeof(l.rootfs), err, errlen)))
		return e;
	extras_free(&x);
	if ((e = builtin_image(&x, err, errlen)))
		return e;
	e = vm_initramfs_build(cache_dir(), &k, agent_bin, vm_guest_modules, x.f, x.n, l.initrd, sizeof(l.initrd), err,
			       errlen);
	extras_free(&x);
	if (e)
		return e;
	memcpy(l.vmlinux, k.vmlinux, sizeof(l.vmlinux));
	t_prep = vm_now_ms();

	sb = sandbox_new();
	if (!sb || pipe2(cmd, O_CLOEXEC) || pipe2(st, O_CLOEXEC)) {
		e = sb ? -errno : -ENOMEM;
		snprintf(err, errlen, "%s", strerror(-e));
		goto fail;
	}
	/* QEMU's own log, until the data directory exists: then it moves there. */
	if (fmt(qlog, sizeof(qlog), "/tmp/crgw-qemu-%d.log", (int)getpid())) {
		e = -ENAMETOOLONG;
		goto fail;
	}
	fflush(NULL);
	holder = fork();
	if (holder < 0) {
		e = -errno;
		snprintf(err, errlen, "fork: %s", strerror(errno));
		goto fail;
	}
	if (holder == 0) {
		close(cmd[1]);
		close(st[0]);
		holder_main(cmd[0], st[1], qlog);
	}
	close(cmd[0]);
	close(st[1]);
	cmd[0] = st[1] = -1;
	sb->holder = holder;
	sb->holder_pidfd = (int)syscall(SYS_pidfd_open, holder, 0);
	sb->owned = true;

	req = registration(spec, holder);
	if (!req) {
		e = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if ((e = gw->register_sandbox(gw->arg, req, &answer, err, errlen)))
		goto fail;
	registered = true;
	if ((e = vm_sandbox_from_record(sb, answer, err, errlen)))
		goto fail;
	const char *data_dir = json_string_value(json_object_get(answer, "data_dir"));
	const char *guest = json_string_value(json_object_get(answer, "guest"));
	const char *ifname = json_string_value(json_object_get(answer, "interface"));
	const char *mac = json_string_value(json_object_get(answer, "guest_mac"));

	if (!data_dir || data_dir[0] != '/' || !guest || !ifname || !mac) {
		e = -EPROTO;
		snprintf(err, errlen,
			 "the gateway's answer lacks what a VM needs (data_dir, guest, interface, "
			 "guest_mac): is it older than crgw-ctl?");
		goto fail;
	}
	l.kvm = access("/dev/kvm", R_OK | W_OK) == 0;
	snprintf(l.memory, sizeof(l.memory), "%u", GUEST_MEMORY_MB);
	if (fmt(l.console, sizeof(l.console), "file:%s/console.log", data_dir) ||
	    fmt(l.agent, sizeof(l.agent), "%s/agent.sock", data_dir) ||
	    fmt(l.chardev, sizeof(l.chardev), "socket,id=agent,path=%s,server=on,wait=off", l.agent) ||
	    fmt(l.netdev, sizeof(l.netdev), "tap,id=net0,ifname=%s,script=no,downscript=no,vhost=off", ifname) ||
	    fmt(l.nic, sizeof(l.nic), "virtio-net-pci,netdev=net0,mac=%s", mac) ||
	    fmt(l.drive, sizeof(l.drive), "file=%s,if=none,id=root,format=raw,snapshot=on", l.rootfs) ||
	    fmt(l.append, sizeof(l.append),
		"console=ttyS0 rdinit=/init panic=-1 quiet mitigations=off tsc=reliable no_timer_check "
		"rcupdate.rcu_expedited=1 i8042.noaux i8042.nokbd i8042.nopnp 8250.nr_uarts=1 random.trust_cpu=on "
		"cryptomgr.notests crgw.ip=%s/30 crgw.gw=%s crgw.dns=%s crgw.hostname=%s crgw.port=" AGENT_PORT "%s",
		guest, sb->gateway, sb->gateway, sb->id, l.rootfs[0] ? " crgw.root=/dev/vda" : "") ||
	    qemu_cmdline(&l, cmdline, sizeof(cmdline), &cmdlen)) {
		e = -ENAMETOOLONG;
		snprintf(err, errlen, "the VM's paths are too long (data_dir %s)", data_dir);
		goto fail;
	}
	if (fmt(sb->agent_sock, sizeof(sb->agent_sock), "%s", l.agent)) {
		e = -ENAMETOOLONG;
		goto fail;
	}
	t_net = vm_now_ms();
	if (write(cmd[1], cmdline, cmdlen) != (ssize_t)cmdlen) {
		e = -EIO;
		snprintf(err, errlen, "the VM's holder process is gone");
		goto fail;
	}
	close(cmd[1]);
	cmd[1] = -1;
	n = read(st[0], &e, sizeof(e));
	if (n == (ssize_t)sizeof(e)) {
		snprintf(err, errlen, "starting %s: %s (package qemu-system-x86)", QEMU_BINARY, strerror(e));
		e = -e;
		goto fail;
	}
	/*
	 * Booted when the agent says hello. The connection stays for the first exec: closing it and connecting
	 * again at once could come before the guest has seen the hang-up, and it would not greet again.
	 */
	fd = agent_connect(l.agent, holder, 10000);
	e = fd < 0 ? fd : wait_hello(fd, BOOT_TIMEOUT_MS);
	if (fd >= 0 && e)
		close(fd);
	else if (fd >= 0)
		sb->agent_fd = fd;
	if (e) {
		char tail[400];

		tail_of(l.console + 5, tail, sizeof(tail));
		if (!tail[0])
			tail_of(qlog, tail, sizeof(tail));
		snprintf(why, sizeof(why), "%s", tail);
		snprintf(err, errlen, "the VM did not come up (%s): %s", strerror(-e), why);
		goto fail;
	}
	unlink(qlog);
	sb->timings[0] = t_prep - t0;
	sb->timings[1] = t_net - t_prep;
	sb->timings[2] = vm_now_ms() - t_net;
	vm_report_timings(sb, gw, l.kvm ? "KVM" : "TCG");
	json_decref(req);
	json_decref(answer);
	close(st[0]);
	*out = sb;
	return 0;
fail:
	if (holder > 0) {
		kill(holder, SIGKILL);
		waitpid(holder, NULL, 0);
	}
	if (registered && sb && sb->id[0])
		gw->release_sandbox(gw->arg, sb->id);
	for (int i = 0; i < 2; i++) {
		if (cmd[i] >= 0)
			close(cmd[i]);
		if (st[i] >= 0)
			close(st[i]);
	}
	unlink(qlog);
	json_decref(req);
	json_decref(answer);
	qemu_free(sb);
	return e;
}

static int qemu_open(json_t *record, struct crgw_vm_sandbox **out, char *err, size_t errlen)
{
	struct crgw_vm_sandbox *sb = sandbox_new();
	const char *data_dir = json_string_value(json_object_get(record, "data_dir"));
	int e;

	*out = NULL;
	if (!sb)
		return -ENOMEM;
	if ((e = vm_sandbox_from_record(sb, record, err, errlen)))
		goto fail;
	if (sb->holder <= 0 || !data_dir || fmt(sb->agent_sock, sizeof(sb->agent_sock), "%s/agent.sock", data_dir)) {
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
	qemu_free(sb);
	return e;
}

static int qemu_exec(struct crgw_vm_sandbox *sb, const struct crgw_exec_request *req, int *status, char *err,
		     size_t errlen)
{
	struct crgw_exec_request r = *req;
	char **env = vm_command_env(sb, req);
	int fd, e;

	*status = 125;
	if (!env) {
		snprintf(err, errlen, "building the environment: out of memory");
		return -ENOMEM;
	}
	r.env = env;
	if (sb->agent_fd >= 0) {
		e = crgw_guest_exec_on(sb->agent_fd, &r, 0, true, status, err, errlen);
		close(sb->agent_fd);
		sb->agent_fd = -1;
		goto out;
	}
	/*
	 * QEMU serves one connection at a time, and the guest greets a connection once it has seen the last
	 * one go: a connection that gets no hello soon is made again (nothing was sent on it).
	 */
	for (int attempt = 0;; attempt++) {
		fd = agent_connect(sb->agent_sock, sb->holder, 10000);
		if (fd < 0) {
			e = fd;
			snprintf(err, errlen, "%s: the VM's agent (%s): %s", sb->id, sb->agent_sock,
				 e == -ESRCH ? "the VM has ended" : strerror(-e));
			break;
		}
		e = crgw_guest_exec_on(fd, &r, attempt < 4 ? 3000 : BOOT_TIMEOUT_MS, false, status, err, errlen);
		close(fd);
		if (e != -ETIMEDOUT || attempt >= 4)
			break;
		usleep(100000);
	}
out:
	for (size_t i = 0; env[i]; i++)
		free(env[i]);
	free(env);
	return e;
}

static int qemu_release(struct crgw_vm_sandbox *sb, const struct crgw_gateway_ops *gw)
{
	return vm_release_holder(sb, gw);
}

static bool in_path(const char *name)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
		size_t n = strcspn(p, ":");

		if (n && fmt(buf, sizeof(buf), "%.*s/%s", (int)n, p, name) == 0 && access(buf, X_OK) == 0)
			return true;
		p += n + (p[n] == ':');
	}
	return false;
}

bool crgw_qemu_available(char *why, size_t whylen)
{
	char agent[PATH_MAX], err[PATH_MAX + 128];
	struct vm_kernel_found {
		char release[128];
	} k = {""};
	FILE *p;

	if (!in_path(QEMU_BINARY)) {
		snprintf(why, whylen, "no %s (package qemu-system-x86)", QEMU_BINARY);
		return false;
	}
	/* The newest kernel, as create() would pick it, without unpacking anything. */
	p = popen("ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1", "re");
	if (p) {
		if (!fgets(k.release, sizeof(k.release), p))
			k.release[0] = '\0';
		pclose(p);
	}
	k.release[strcspn(k.release, "\n")] = '\0';
	if (!k.release[0]) {
		snprintf(why, whylen, "no kernel in /boot (package linux-image-amd64)");
		return false;
	}
	if (find_agent(agent, sizeof(agent), err, sizeof(err))) {
		snprintf(why, whylen, "%s", err);
		return false;
	}
	if (access(BUSYBOX, X_OK) || !static_program(BUSYBOX)) {
		snprintf(why, whylen, "no static %s for the built-in image (package busybox-static)", BUSYBOX);
		return false;
	}
	snprintf(why, whylen, "%s with %s, %s", access("/dev/kvm", R_OK | W_OK) == 0 ? "KVM" : "TCG (no /dev/kvm)",
		 k.release, agent);
	return true;
}

static json_t *qemu_capabilities(void)
{
	bool kvm = access("/dev/kvm", R_OK | W_OK) == 0;

	return json_pack("{s:b, s:b, s:b, s:b, s:b, s:b, s:[s], s:b, s:s, s:s}", "network_default_deny", 1,
			 "network_host_port_filtering", 1, "dns_control", 1, "policy_immutability", 1,
			 "audit_event_emission", 1, "secret_isolation", 1, "workspace_modes", "none", "tty", 1,
			 "accelerator", kvm ? "kvm" : "tcg", "isolation", "a virtual machine (its own kernel)");
}

const struct crgw_backend crgw_backend_qemu = {
    .name = "qemu",
    .create = qemu_create,
    .open = qemu_open,
    .exec = qemu_exec,
    .release = qemu_release,
    .capabilities = qemu_capabilities,
    .free = qemu_free,
};
