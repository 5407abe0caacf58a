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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kernel.h"
#include "vm_priv.h"

#define QEMU_BINARY "qemu-system-x86_64"
#define GUEST_MEMORY_MB 512
#define AGENT_PORT "crgw.0"
/*
 * Serial ports to the agent: QEMU serves one connection per port, so this many crgw-ctl processes (exec,
 * cp, diff) can reach one VM at once; each takes a port under a lock file (agent.N.lock).
 */
#define AGENT_PORTS 4
/*
 * A write the host cannot make (its file system full under a disk file) is an I/O error in the guest,
 * which the job sees and fails on. QEMU's default stops the VM instead, and the job would hang until its
 * TTL with nothing said.
 */
#define DRIVE_ERRORS ",werror=report,rerror=report"

struct qemu_launch {
	char vmlinux[PATH_MAX], initrd[PATH_MAX], console[PATH_MAX], agent[PATH_MAX];
	char rootfs[PATH_MAX]; /* the policy's image (ext4), or empty for the built-in image */
	char drive[PATH_MAX + 64];
	char ws_lower[PATH_MAX + 64], ws_upper[PATH_MAX + 64]; /* the workspace's disks, or empty */
	char append[1024], chardev[AGENT_PORTS][PATH_MAX + 64], port[AGENT_PORTS][64], netdev[128], nic[128];
	char memory[16];
	char runas[32], chroot[PATH_MAX]; /* who QEMU becomes, and where, once it has opened what it needs */
	char tmpdir[PATH_MAX + 8];        /* "TMPDIR=<data_dir>": where snapshot=on keeps the root's overlay */
	bool kvm;
};

/* The holder's command: QEMU's log, then its command line (vm_holder_args). */
static int qemu_cmdline(const struct qemu_launch *l, const char *log, char *buf, size_t size, size_t *len)
{
	/* clang-format off: pairs of option and value read best side by side */
	const char *argv[] = {
	    l->tmpdir,
	    QEMU_BINARY,
	    "-M",
	    VM_QEMU_MACHINE,
	    "-accel",
	    l->kvm ? "kvm" : "tcg",
	    "-cpu",
	    l->kvm ? VM_QEMU_KVM_CPU : "max",
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
	    "-netdev",
	    l->netdev,
	    "-device",
	    l->nic,
	    /*
	     * QEMU opens its TAP, disks, sockets and logs as root, then becomes a user of its own in an empty
	     * root before the guest runs: a guest that breaks out of QEMU is an unprivileged process that can
	     * reach no file and signal no other VM. Its seccomp filter denies spawning and obsolete calls;
	     * elevateprivileges must allow the drop itself (setuid), which cannot raise anything after it.
	     */
	    "-runas",
	    l->runas,
	    "-chroot",
	    l->chroot,
	    "-sandbox",
	    "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny",
	};
	/* clang-format on */
	const char *all[sizeof(argv) / sizeof(argv[0]) + 12 + 4 * AGENT_PORTS];
	size_t nargs = sizeof(argv) / sizeof(argv[0]);

	memcpy(all, argv, sizeof(argv));
	for (int i = 0; i < AGENT_PORTS; i++) {
		all[nargs++] = "-chardev";
		all[nargs++] = l->chardev[i];
		all[nargs++] = "-device";
		all[nargs++] = l->port[i];
	}
	/*
	 * The image's root first, so that it is /dev/vda (the guest finds the workspace's disks by label),
	 * read-only underneath: snapshot=on gives each VM its own throwaway overlay.
	 */
	const char *const drives[][2] = {
	    {l->rootfs[0] ? l->drive : "", "virtio-blk-pci,drive=root"},
	    {l->ws_lower, "virtio-blk-pci,drive=wslower"},
	    {l->ws_upper, "virtio-blk-pci,drive=wsupper"},
	};

	for (size_t i = 0; i < 3; i++)
		if (drives[i][0][0]) {
			all[nargs++] = "-drive";
			all[nargs++] = drives[i][0];
			all[nargs++] = "-device";
			all[nargs++] = drives[i][1];
		}
	return vm_holder_args(NULL, log, all, nargs, buf, size, len);
}

/* The agent's socket of port `i` in `data_dir` (port 0's is agent.sock), or its lock file. */
static int port_path(char *out, size_t len, const char *data_dir, int i, bool lock)
{
	if (lock)
		return vm_fmt(out, len, "%s/agent.%d.lock", data_dir, i);
	return i ? vm_fmt(out, len, "%s/agent.%d.sock", data_dir, i) : vm_fmt(out, len, "%s/agent.sock", data_dir);
}

static int agent_ports(struct qemu_launch *l, const char *data_dir)
{
	char sock[PATH_MAX];

	for (int i = 0; i < AGENT_PORTS; i++)
		if (port_path(sock, sizeof(sock), data_dir, i, false) ||
		    vm_fmt(l->chardev[i], sizeof(l->chardev[i]), "socket,id=agent%d,path=%s,server=on,wait=off", i,
			   sock) ||
		    vm_fmt(l->port[i], sizeof(l->port[i]),
			   i ? "virtserialport,chardev=agent%d,name=" AGENT_PORT ".%d"
			     : "virtserialport,chardev=agent%d,name=" AGENT_PORT,
			   i, i))
			return -ENAMETOOLONG;
	return 0;
}

/*
 * A port no other crgw-ctl holds: its lock taken (returned, to close when done) and its socket in `sock`.
 * When all are taken, waits for port 0. Returns the lock's descriptor or -errno.
 */
static int port_take(const char *data_dir, char *sock, size_t len)
{
	char lock[PATH_MAX];

	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < (pass ? 1 : AGENT_PORTS); i++) {
			int fd;

			if (port_path(lock, sizeof(lock), data_dir, i, true) ||
			    port_path(sock, len, data_dir, i, false))
				return -ENAMETOOLONG;
			fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
			if (fd < 0)
				return -errno;
			if (flock(fd, pass ? LOCK_EX : LOCK_EX | LOCK_NB) == 0)
				return fd;
			close(fd);
		}
	return -EAGAIN;
}

static void qemu_free(struct crgw_vm_sandbox *sb)
{
	vm_sandbox_free(sb);
}

static int qemu_create(const struct crgw_sandbox_spec *spec, const struct crgw_gateway_ops *gw,
		       struct crgw_vm_sandbox **out, char *err, size_t errlen)
{
	struct qemu_launch l = {.kvm = false};
	struct vm_ws ws;
	struct vm_answer a;
	json_t *image_config = NULL;
	struct vm_kernel k;
	struct crgw_vm_sandbox *sb = NULL;
	json_t *req = NULL, *answer = NULL;
	int cmd[2] = {-1, -1}, st[2] = {-1, -1}, e, fd;
	bool registered = false;
	char qlog[PATH_MAX], cmdline[16384], why[400], accel[400], how[420];
	size_t cmdlen;
	pid_t holder = -1;
	double t0 = vm_now_ms(), t_prep, t_net;
	ssize_t n;

	*out = NULL;
	if (geteuid() != 0) {
		snprintf(err, errlen, "the qemu backend needs root (the gateway's TAP, the VM's cgroup)");
		return -EPERM;
	}
	if ((e = vm_ws_check(&ws, spec, "qemu", err, errlen)))
		return e;
	/* What the VM boots: the host's kernel, and an initramfs with the agent and the built-in image. */
	if ((e = vm_policy_image(spec->policy_json, l.rootfs, sizeof(l.rootfs), &image_config, err, errlen)) ||
	    (e = vm_boot_prepare(vm_guest_modules, &k, l.initrd, sizeof(l.initrd), err, errlen))) {
		json_decref(image_config);
		return e;
	}
	memcpy(l.vmlinux, k.vmlinux, sizeof(l.vmlinux));
	{
		char bin[PATH_MAX];

		if (vm_find_program(NULL, QEMU_BINARY, bin, sizeof(bin)))
			snprintf(bin, sizeof(bin), "%s", QEMU_BINARY); /* the launch below says it is missing */
		if ((e = vm_accel_choose(bin, &k, l.initrd, &l.kvm, accel, sizeof(accel)))) {
			snprintf(err, errlen, "%s", accel);
			json_decref(image_config);
			return e;
		}
	}
	t_prep = vm_now_ms();

	sb = vm_sandbox_new();
	if (!sb) {
		e = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* QEMU's own log, until the data directory exists: then it moves there. */
	if (vm_fmt(qlog, sizeof(qlog), "/tmp/crgw-qemu-%d.log", (int)getpid())) {
		e = -ENAMETOOLONG;
		goto fail;
	}
	if ((e = vm_holder_fork(sb, &cmd[1], &st[0], err, errlen)))
		goto fail;
	holder = sb->holder;

	req = vm_registration(spec, &ws, "qemu", holder);
	if (!req) {
		e = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if ((e = vm_register(sb, gw, req, &answer, &a, &registered, err, errlen)))
		goto fail;
	const char *data_dir = a.data_dir, *guest = a.guest, *ifname = a.ifname, *mac = a.mac;

	double t_ws = vm_now_ms();

	if ((e = vm_ws_make_disks(&ws, data_dir, err, errlen)))
		goto fail;
	if ((e = vm_image_config_save(data_dir, image_config))) {
		snprintf(err, errlen, "%s/%s: %s", data_dir, VM_IMAGE_CONFIG, strerror(-e));
		goto fail;
	}
	t_prep += vm_now_ms() - t_ws; /* the workspace's disks are image preparation too */
	snprintf(l.memory, sizeof(l.memory), "%u", GUEST_MEMORY_MB);
	/* Its own uid: no two VMs share one (the holder's pid is unique while it runs). */
	unsigned uid = VM_QEMU_UID_BASE + (unsigned)holder;

	snprintf(l.runas, sizeof(l.runas), "%u:%u", uid, uid);
	if (vm_fmt(l.chroot, sizeof(l.chroot), "%s/qemu-root", data_dir)) {
		e = -ENAMETOOLONG;
		snprintf(err, errlen, "the VM's paths are too long (data_dir %s)", data_dir);
		goto fail;
	}
	/*
	 * The overlay that takes the guest's writes to the image's root goes in the sandbox's data directory, not
	 * /var/tmp: on its disk (limits.disk bounds it), and gone with the sandbox even when QEMU is killed.
	 */
	if (vm_fmt(l.tmpdir, sizeof(l.tmpdir), "TMPDIR=%s", data_dir)) {
		e = -ENAMETOOLONG;
		snprintf(err, errlen, "the VM's paths are too long (data_dir %s)", data_dir);
		goto fail;
	}
	if (mkdir(l.chroot, 0555) && errno != EEXIST) {
		e = -errno;
		snprintf(err, errlen, "QEMU's empty root %s: %s", l.chroot, strerror(errno));
		goto fail;
	}
	if (vm_fmt(l.console, sizeof(l.console), "file:%s/console.log", data_dir) ||
	    vm_fmt(l.agent, sizeof(l.agent), "%s/agent.sock", data_dir) || agent_ports(&l, data_dir) ||
	    vm_fmt(l.netdev, sizeof(l.netdev), "tap,id=net0,ifname=%s,script=no,downscript=no,vhost=off", ifname) ||
	    vm_fmt(l.nic, sizeof(l.nic), "virtio-net-pci,netdev=net0,mac=%s", mac) ||
	    vm_fmt(l.drive, sizeof(l.drive), "file=%s,if=none,id=root,format=raw,snapshot=on" DRIVE_ERRORS, l.rootfs) ||
	    (ws.lower[0] &&
	     vm_fmt(l.ws_lower, sizeof(l.ws_lower), "file=%s,if=none,id=wslower,format=raw,readonly=on", ws.lower)) ||
	    (ws.upper[0] &&
	     vm_fmt(l.ws_upper, sizeof(l.ws_upper), "file=%s,if=none,id=wsupper,format=raw" DRIVE_ERRORS, ws.upper)) ||
	    vm_fmt(l.append, sizeof(l.append),
		   "console=ttyS0 rdinit=/init panic=-1 quiet mitigations=off tsc=reliable no_timer_check "
		   "rcupdate.rcu_expedited=1 i8042.noaux i8042.nokbd i8042.nopnp 8250.nr_uarts=1 random.trust_cpu=on "
		   "cryptomgr.notests crgw.ip=%s/30 crgw.gw=%s crgw.dns=%s crgw.hostname=%s crgw.port=" AGENT_PORT
		   " crgw.ports=%d"
		   "%s%s%s",
		   guest, sb->gateway, sb->gateway, sb->id, AGENT_PORTS, l.rootfs[0] ? " crgw.root=/dev/vda" : "",
		   ws.mode == CRGW_WS_NONE ? "" : " crgw.ws=",
		   ws.mode == CRGW_WS_NONE ? "" : crgw_workspace_mode_name(ws.mode)) ||
	    qemu_cmdline(&l, qlog, cmdline, sizeof(cmdline), &cmdlen)) {
		e = -ENAMETOOLONG;
		snprintf(err, errlen, "the VM's paths are too long (data_dir %s)", data_dir);
		goto fail;
	}
	if (vm_fmt(sb->agent_sock, sizeof(sb->agent_sock), "%s", l.agent)) {
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
	fd = vm_unix_connect(l.agent, sb->holder_pidfd, 10000);
	e = fd < 0 ? fd : vm_wait_hello(fd, vm_boot_timeout_ms());
	if (fd >= 0 && e)
		close(fd);
	else if (fd >= 0) {
		char lock[PATH_MAX];

		/* Port 0 is this connection's until the first exec is over (agent.0.lock). */
		sb->agent_fd = fd;
		if (!port_path(lock, sizeof(lock), data_dir, 0, true) &&
		    (sb->agent_lock = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) >= 0)
			flock(sb->agent_lock, LOCK_EX | LOCK_NB);
	}
	if (e) {
		char tail[400];

		vm_tail_of(l.console + 5, tail, sizeof(tail));
		if (!tail[0])
			vm_tail_of(qlog, tail, sizeof(tail));
		snprintf(why, sizeof(why), "%s", tail);
		snprintf(err, errlen, "the VM did not come up (%s): %s", strerror(-e), why);
		goto fail;
	}
	unlink(qlog);
	sb->timings[0] = t_prep - t0;
	sb->timings[1] = t_net - t_prep;
	sb->timings[2] = vm_now_ms() - t_net;
	/* Why not KVM, when /dev/kvm is there and did not work: worth a word where timings are asked for. */
	if (l.kvm || !accel[0] || vm_fmt(how, sizeof(how), "TCG (%s)", accel))
		snprintf(how, sizeof(how), "%s", l.kvm ? "KVM" : "TCG");
	vm_report_timings(sb, gw, how);
	json_decref(req);
	json_decref(answer);
	json_decref(image_config);
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
	json_decref(image_config);
	qemu_free(sb);
	return e;
}

static int qemu_open(json_t *record, struct crgw_vm_sandbox **out, char *err, size_t errlen)
{
	int e = vm_open(record, out, err, errlen);

	if (!e && vm_fmt((*out)->agent_sock, sizeof((*out)->agent_sock), "%s/agent.sock",
			 json_string_value(json_object_get(record, "data_dir")))) {
		snprintf(err, errlen, "%s: its data directory's path is too long", (*out)->id);
		vm_sandbox_free(*out);
		*out = NULL;
		e = -ENAMETOOLONG;
	}
	return e;
}

static int qemu_run(struct crgw_vm_sandbox *sb, const struct crgw_exec_request *r, int *status, char *err,
		    size_t errlen)
{
	const char *data_dir = json_string_value(json_object_get(sb->record, "data_dir"));
	char sock[PATH_MAX];
	int fd, e, lock;

	if (!data_dir) {
		snprintf(err, errlen, "%s: its record has no data directory", sb->id);
		return -EINVAL;
	}
	lock = port_take(data_dir, sock, sizeof(sock));
	if (lock < 0) {
		snprintf(err, errlen, "%s: a port to the VM's agent: %s", sb->id, strerror(-lock));
		return lock;
	}
	/*
	 * QEMU serves one connection at a time per port, and the guest greets a connection once it has seen
	 * the last one go: a connection that gets no hello soon is made again (nothing was sent on it).
	 */
	for (int attempt = 0;; attempt++) {
		fd = vm_unix_connect(sock, sb->holder_pidfd, 10000);
		if (fd < 0) {
			e = fd;
			snprintf(err, errlen, "%s: the VM's agent (%s): %s", sb->id, sock,
				 e == -ESRCH ? "the VM has ended" : strerror(-e));
			break;
		}
		e = crgw_guest_exec_on(fd, r, attempt < 4 ? 3000 : vm_boot_timeout_ms(), false,
				       sb->owned ? sb->holder_pidfd : -1, status, err, errlen);
		close(fd);
		if (e != -ETIMEDOUT || attempt >= 4)
			break;
		usleep(100000);
	}
	close(lock);
	return e;
}

static int qemu_exec(struct crgw_vm_sandbox *sb, const struct crgw_exec_request *req, int *status, char *err,
		     size_t errlen)
{
	return vm_exec(sb, req, qemu_run, status, err, errlen);
}

static int qemu_release(struct crgw_vm_sandbox *sb, const struct crgw_gateway_ops *gw)
{
	return vm_release_holder(sb, gw);
}

static const char *accel_name(char *out, size_t len)
{
	char why[256];
	bool kvm = vm_accel_expected(why, sizeof(why));

	if (vm_fmt(out, len, "%s%s%s%s", kvm ? "KVM" : "TCG", why[0] ? " (" : "", why, why[0] ? ")" : ""))
		(void)vm_fmt(out, len, "%s", kvm ? "KVM" : "TCG");
	return out;
}

bool crgw_qemu_available(char *why, size_t whylen)
{
	char bin[PATH_MAX], guest[PATH_MAX + 200], accel[300];

	if (vm_find_program(NULL, QEMU_BINARY, bin, sizeof(bin))) {
		snprintf(why, whylen, "no %s (package qemu-system-x86)", QEMU_BINARY);
		return false;
	}
	if (!vm_guest_available(guest, sizeof(guest))) {
		snprintf(why, whylen, "%s", guest);
		return false;
	}
	snprintf(why, whylen, "%s with %s", accel_name(accel, sizeof(accel)), guest);
	return true;
}

static json_t *qemu_capabilities(void)
{
	char why[256];
	bool kvm = vm_accel_expected(why, sizeof(why));

	return json_pack("{s:b, s:b, s:b, s:b, s:b, s:b, s:[sss], s:b, s:s, s:s}", "network_default_deny", 1,
			 "network_host_port_filtering", 1, "dns_control", 1, "policy_immutability", 1,
			 "audit_event_emission", 1, "secret_isolation", 1, "workspace_modes", "copy", "ro", "none",
			 "tty", 1, "accelerator", kvm ? "kvm" : "tcg", "isolation",
			 "a virtual machine (its own kernel)");
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
