/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The firecracker backend: a Firecracker microVM per sandbox, configured over its API socket with libcurl
 * (machine, boot source, root drive, the gateway's TAP, a hybrid vsock), optionally through the jailer,
 * booting the same kernel and initramfs as the qemu backend with the agent on vsock. Firecracker is the
 * sandbox's holder, as QEMU is for qemu.c. No Firecracker binary can run on the project's machines: this
 * file is tested against a fake that checks every request against Firecracker's published API schema
 * (vm/tests/fake_firecracker.py), never against the real VMM. docs/ctl.md says what that leaves untested.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernel.h"
#include "vm_priv.h"

#define FC_BINARY "firecracker"
#define JAILER_BINARY "jailer"
#define GUEST_MEMORY_MB 512
#define GUEST_CID 3
/* The jailed VMM's user and group: an unprivileged id just below the sandboxes' range (vm_priv.h). */
#define JAIL_UID (SANDBOX_UID_BASE - 1)
/* Firecracker makes its API socket within milliseconds of starting; a VMM that has not by then never will. */
#define API_SOCKET_TIMEOUT_MS 5000
#define API_REQUEST_TIMEOUT_MS 10000
#define API_BODY_MAX 4096
/* "OK 1073741824\n": what Firecracker answers a CONNECT with; a longer line is not that. */
#define VSOCK_LINE_MAX 32

/* The modules a Firecracker guest needs: virtio over MMIO, block, network, vsock, and ext4 (with crc32c). */
static const char *const fc_guest_modules[] = {
    "virtio_mmio", "virtio_blk", "virtio_net", "vmw_vsock_virtio_transport", "crc32c_generic", "ext4", NULL,
};

/* ---- the API client -------------------------------------------------------------------------------- */

struct api_body {
	char buf[API_BODY_MAX];
	size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct api_body *b = arg;
	size_t len = size * n, room = sizeof(b->buf) - 1 - b->len;

	/* What does not fit is dropped: an answer is a status and a short fault message. */
	memcpy(b->buf + b->len, p, len < room ? len : room);
	b->len += len < room ? len : room;
	b->buf[b->len] = '\0';
	return len;
}

/* The VMM's words in our error message: printable ASCII only, bounded. */
static void clean_copy(char *out, size_t len, const char *in)
{
	size_t i = 0;

	for (; in && *in && i + 1 < len; in++)
		out[i++] = (*in >= 0x20 && *in < 0x7f) ? *in : '?';
	out[i] = '\0';
}

int vm_fc_api_put(const char *api_sock, const char *path, json_t *body, char *err, size_t errlen)
{
	struct api_body b = {.len = 0};
	struct curl_slist *h = NULL;
	char url[256], *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER), fault[300];
	long status = 0;
	CURLcode cc;
	CURL *c = NULL;
	int e = 0;

	if (!text || vm_fmt(url, sizeof(url), "http://localhost%s", path)) {
		snprintf(err, errlen, "PUT %s: out of memory", path);
		free(text);
		return -ENOMEM;
	}
	h = curl_slist_append(h, "Content-Type: application/json");
	if (h)
		h = curl_slist_append(h, "Accept: application/json");
	c = curl_easy_init();
	if (!c || !h) {
		snprintf(err, errlen, "PUT %s: out of memory", path);
		e = -ENOMEM;
		goto out;
	}
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, api_sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)API_REQUEST_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "crgw-vm/1");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		snprintf(err, errlen, "Firecracker's API (%s), PUT %s: %s", api_sock, path, curl_easy_strerror(cc));
		e = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -ECONNREFUSED;
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (status != 204) {
		json_t *j = json_loads(b.buf, 0, NULL);

		clean_copy(fault, sizeof(fault), json_string_value(json_object_get(j, "fault_message")));
		if (!fault[0])
			clean_copy(fault, sizeof(fault), b.len ? b.buf : "no fault_message");
		json_decref(j);
		snprintf(err, errlen, "Firecracker refused PUT %s (HTTP %ld): %s", path, status, fault);
		e = -EPROTO;
	}
out:
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	free(text);
	return e;
}

int vm_fc_configure(const char *api_sock, json_t *config, char *err, size_t errlen)
{
	json_t *action = json_pack("{s:s}", "action_type", "InstanceStart"), *drive, *iface;
	char path[128];
	size_t i;
	int e;

	if (!action)
		return -ENOMEM;
	/* Firecracker's own order in its config file: machine, boot source, drives, network, vsock, then start. */
	if ((e = vm_fc_api_put(api_sock, "/machine-config", json_object_get(config, "machine-config"), err, errlen)) ||
	    (e = vm_fc_api_put(api_sock, "/boot-source", json_object_get(config, "boot-source"), err, errlen)))
		goto out;
	json_array_foreach(json_object_get(config, "drives"), i, drive)
	{
		if ((e = vm_fmt(path, sizeof(path), "/drives/%s",
				json_string_value(json_object_get(drive, "drive_id")) ?: "")) ||
		    (e = vm_fc_api_put(api_sock, path, drive, err, errlen)))
			goto out;
	}
	json_array_foreach(json_object_get(config, "network-interfaces"), i, iface)
	{
		if ((e = vm_fmt(path, sizeof(path), "/network-interfaces/%s",
				json_string_value(json_object_get(iface, "iface_id")) ?: "")) ||
		    (e = vm_fc_api_put(api_sock, path, iface, err, errlen)))
			goto out;
	}
	if ((e = vm_fc_api_put(api_sock, "/vsock", json_object_get(config, "vsock"), err, errlen)) ||
	    (e = vm_fc_api_put(api_sock, "/actions", action, err, errlen)))
		goto out;
out:
	json_decref(action);
	return e;
}

json_t *vm_fc_config(const struct vm_fc_vm *vm)
{
	json_t *c = json_pack("{s:{s:i, s:i}, s:{s:s, s:s, s:s}, s:[], s:[{s:s, s:s, s:s}], s:{s:i, s:s}}",
			      "machine-config", "vcpu_count", (int)vm->vcpus, "mem_size_mib", (int)vm->mem_mib,
			      "boot-source", "kernel_image_path", vm->kernel, "initrd_path", vm->initrd, "boot_args",
			      vm->boot_args, "drives", "network-interfaces", "iface_id", "eth0", "host_dev_name",
			      vm->tap, "guest_mac", vm->mac, "vsock", "guest_cid", (int)vm->cid, "uds_path", vm->vsock);

	/* The root first (/dev/vda); the guest finds the workspace's disks by their labels. */
	const struct {
		const char *id, *path;
		int root, ro;
	} drives[] = {
	    {"rootfs", vm->drive, 1, 0}, {"workspace", vm->ws_lower, 0, 1}, {"workspace_changes", vm->ws_upper, 0, 0}};

	for (size_t i = 0; c && i < sizeof(drives) / sizeof(drives[0]); i++)
		if (drives[i].path && drives[i].path[0] &&
		    json_array_append_new(json_object_get(c, "drives"),
					  json_pack("{s:s, s:s, s:b, s:b}", "drive_id", drives[i].id, "path_on_host",
						    drives[i].path, "is_root_device", drives[i].root, "is_read_only",
						    drives[i].ro))) {
			json_decref(c);
			return NULL;
		}
	return c;
}

/* ---- hybrid vsock ---------------------------------------------------------------------------------- */

/*
 * Reads Firecracker's answer to CONNECT a byte at a time: whatever follows the line is the guest's, and
 * is left for the agent's protocol. 1 with the line, 0 at EOF before any byte (nobody listens on the port
 * yet), -ETIMEDOUT, -EPROTO (more than a line's worth, or EOF within it).
 */
static int read_answer(int fd, char *line, size_t len, double end)
{
	size_t n = 0;

	while (n + 1 < len) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int left = (int)(end - vm_now_ms()), r;
		ssize_t got;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, left);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r <= 0)
			continue;
		got = read(fd, line + n, 1);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got < 0)
			return n ? -EPROTO : 0; /* a reset: refused, like EOF */
		if (got == 0)
			return n ? -EPROTO : 0;
		if (line[n] == '\n') {
			line[n] = '\0';
			return 1;
		}
		n++;
	}
	line[n] = '\0';
	return -EPROTO;
}

int vm_fc_vsock_connect(const char *uds, unsigned port, int holder_pidfd, int timeout_ms, char *err, size_t errlen)
{
	double end = vm_now_ms() + timeout_ms;
	char req[32], line[VSOCK_LINE_MAX], shown[VSOCK_LINE_MAX];
	int n = snprintf(req, sizeof(req), "CONNECT %u\n", port);

	for (;;) {
		int left = (int)(end - vm_now_ms()), fd, r;

		if (left <= 0) {
			snprintf(err, errlen, "nothing listened on the guest's vsock port %u within %d s", port,
				 timeout_ms / 1000);
			return -ETIMEDOUT;
		}
		fd = vm_unix_connect(uds, holder_pidfd, left);
		if (fd < 0) {
			snprintf(err, errlen, "the VM's vsock socket %s: %s", uds,
				 fd == -ESRCH ? "the VMM has ended" : strerror(-fd));
			return fd;
		}
		if (write(fd, req, (size_t)n) != n) {
			r = 0; /* the VMM hung up at once: as refused */
		} else {
			r = read_answer(fd, line, sizeof(line), end);
		}
		if (r == 1) {
			char *rest;

			/* "OK <host port>": the number is Firecracker's; only its shape is ours to check. */
			if (!strncmp(line, "OK ", 3) && line[3] >= '0' && line[3] <= '9' &&
			    (strtoul(line + 3, &rest, 10), *rest == '\0'))
				return fd;
			clean_copy(shown, sizeof(shown), line);
			snprintf(err, errlen, "the VMM answered the vsock CONNECT %u with '%s', not OK", port, shown);
			close(fd);
			return -EPROTO;
		}
		close(fd);
		if (r == -EPROTO) {
			clean_copy(shown, sizeof(shown), line);
			snprintf(err, errlen,
				 "the VMM's answer to the vsock CONNECT %u is not a line of up to %d bytes "
				 "('%s')",
				 port, VSOCK_LINE_MAX - 1, shown);
			return -EPROTO;
		}
		if (r == -ETIMEDOUT) {
			snprintf(err, errlen, "no answer to the vsock CONNECT %u within %d s", port, timeout_ms / 1000);
			return -ETIMEDOUT;
		}
		if (r < 0) {
			snprintf(err, errlen, "the VM's vsock socket %s: %s", uds, strerror(-r));
			return r;
		}
		/* Refused: the guest is still booting, nothing listens on the port yet. */
		if (vm_holder_gone(holder_pidfd)) {
			snprintf(err, errlen, "the VMM has ended");
			return -ESRCH;
		}
		usleep(50000);
	}
}

/* ---- the VM's directory ---------------------------------------------------------------------------- */

/*
 * <data_dir>/firecracker/ (docs/ctl.md, "The firecracker backend"): vm-config.json (the configuration as
 * sent, in the shape of Firecracker's --config-file), api.sock and vsock.sock, rootfs.ext4 (the VM's own
 * copy of its image), console.log (the guest's serial console), firecracker.log (the VMM's), snapshot/
 * (where a snapshot's vmstate and memory files go). With the jailer the sockets and the files Firecracker
 * opens are in the chroot, jail/<exec name>/<id>/root/, and the names above link to them.
 */
struct fc_layout {
	char dir[PATH_MAX], config[PATH_MAX], api[PATH_MAX], vsock[PATH_MAX], drive[PATH_MAX];
	char console[PATH_MAX], log[PATH_MAX], snapshot[PATH_MAX];
	/* with the jailer */
	char jail_base[PATH_MAX], root[PATH_MAX];
};

static int layout_init(struct fc_layout *l, const char *data_dir)
{
	if (vm_fmt(l->dir, sizeof(l->dir), "%s/firecracker", data_dir) ||
	    vm_fmt(l->config, sizeof(l->config), "%s/vm-config.json", l->dir) ||
	    vm_fmt(l->api, sizeof(l->api), "%s/api.sock", l->dir) ||
	    vm_fmt(l->vsock, sizeof(l->vsock), "%s/vsock.sock", l->dir) ||
	    vm_fmt(l->drive, sizeof(l->drive), "%s/rootfs.ext4", l->dir) ||
	    vm_fmt(l->console, sizeof(l->console), "%s/console.log", l->dir) ||
	    vm_fmt(l->log, sizeof(l->log), "%s/firecracker.log", l->dir) ||
	    vm_fmt(l->snapshot, sizeof(l->snapshot), "%s/snapshot", l->dir) ||
	    vm_fmt(l->jail_base, sizeof(l->jail_base), "%s/jail", l->dir))
		return -ENAMETOOLONG;
	l->root[0] = '\0';
	return 0;
}

int vm_fc_copy_file(const char *from, const char *to)
{
	static char buf[1 << 16];
	int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, e = 0;
	struct stat st;
	ssize_t n;

	if (in < 0)
		return -errno;
	if (fstat(in, &st) || (out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
		e = -errno;
		goto out;
	}
	if (ioctl(out, FICLONE, in) == 0)
		goto out;
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		bool zero = true;

		for (ssize_t i = 0; i < n && zero; i++)
			zero = buf[i] == 0;
		/* A block of zeros stays a hole: an ext4 image is mostly empty. */
		if (zero ? lseek(out, n, SEEK_CUR) < 0 : write(out, buf, (size_t)n) != n) {
			e = errno ? -errno : -EIO;
			break;
		}
	}
	if (!e && (n < 0 || ftruncate(out, st.st_size) || fsync(out)))
		e = -errno;
out:
	if (out >= 0)
		close(out);
	close(in);
	if (e && out >= 0)
		unlink(to);
	return e;
}

/* A name for `from` at `to`: a hard link (the cache and the data directory share a file system), or a copy. */
static int link_or_copy(const char *from, const char *to)
{
	return link(from, to) == 0 ? 0 : vm_fc_copy_file(from, to);
}

/* ---- the backend ----------------------------------------------------------------------------------- */

struct fc_programs {
	char vmm[PATH_MAX], jailer[PATH_MAX];
};

/*
 * Firecracker: $CRGW_FIRECRACKER or firecracker in PATH. The jailer: $CRGW_JAILER ("none": never), else
 * jailer in PATH when there is one. Returns 0 or -ENOENT with `err`.
 */
static int find_programs(struct fc_programs *p, char *err, size_t errlen)
{
	const char *j = getenv("CRGW_JAILER");

	if (vm_find_program("CRGW_FIRECRACKER", FC_BINARY, p->vmm, sizeof(p->vmm))) {
		snprintf(err, errlen,
			 "no Firecracker binary: set CRGW_FIRECRACKER to one or put firecracker in PATH (Firecracker "
			 "is not packaged in Debian; its releases carry firecracker and jailer)%s%s",
			 getenv("CRGW_FIRECRACKER") ? "; CRGW_FIRECRACKER=" : "", getenv("CRGW_FIRECRACKER") ?: "");
		return -ENOENT;
	}
	p->jailer[0] = '\0';
	if (j && !strcmp(j, "none"))
		return 0;
	if (vm_find_program("CRGW_JAILER", JAILER_BINARY, p->jailer, sizeof(p->jailer)) && j && *j) {
		snprintf(err, errlen, "CRGW_JAILER=%s: not an executable (\"none\" runs Firecracker without it)", j);
		return -ENOENT;
	}
	return 0;
}

/* What the jail holds: the files Firecracker opens, linked in, and the directory of its sockets. */
static int jail_prepare(struct fc_layout *l, const char *vmm, const char *id, const char *kernel, const char *initrd,
			const char *drive, const struct vm_ws *ws, char *k_in, char *i_in, size_t len, char *err,
			size_t errlen)
{
	const char *exe = strrchr(vmm, '/') ? strrchr(vmm, '/') + 1 : vmm;
	char path[PATH_MAX], run[PATH_MAX];
	const char *files[5][2] = {{kernel, "vmlinux"},
				   {initrd, "initrd.img"},
				   {drive, "rootfs.ext4"},
				   {ws->lower, "workspace.ext4"},
				   {ws->upper, "workspace-changes.ext4"}};
	int e;

	/* The jailer's chroot: <chroot-base-dir>/<exec-file's name>/<id>/root. */
	if (vm_fmt(l->root, sizeof(l->root), "%s/%s/%s/root", l->jail_base, exe, id) ||
	    vm_fmt(run, sizeof(run), "%s/run", l->root))
		return -ENAMETOOLONG;
	for (char *s = l->root + strlen(l->dir); (s = strchr(s + 1, '/'));) {
		*s = '\0';
		e = mkdir(l->root, 0700) && errno != EEXIST ? -errno : 0;
		*s = '/';
		if (e)
			goto fail;
	}
	if ((mkdir(l->root, 0700) && errno != EEXIST) || (mkdir(run, 0700) && errno != EEXIST) ||
	    chown(l->root, JAIL_UID, JAIL_UID) || chown(run, JAIL_UID, JAIL_UID)) {
		e = -errno;
		goto fail;
	}
	for (int i = 0; i < 5; i++) {
		if (!files[i][0] || !files[i][0][0])
			continue;
		if ((e = vm_fmt(path, sizeof(path), "%s/%s", l->root, files[i][1])))
			return e;
		/*
		 * The drive is the VM's own: moved in whole. The workspace's disks are linked (sandbox diff reads
		 * the changes under their name in the data directory). The kernel and initramfs stay the cache's.
		 */
		if (i >= 2 ? link(files[i][0], path) : link_or_copy(files[i][0], path)) {
			e = -errno;
			goto fail;
		}
		if ((i == 2 && unlink(drive)) || (i >= 2 && chown(path, JAIL_UID, JAIL_UID))) {
			e = -errno;
			goto fail;
		}
	}
	snprintf(k_in, len, "/vmlinux");
	snprintf(i_in, len, "/initrd.img");
	/* The names of the layout lead into the jail. */
	if (vm_fmt(path, sizeof(path), "%s/rootfs.ext4", l->root) || (drive[0] && symlink(path, drive)) ||
	    vm_fmt(path, sizeof(path), "%s/run/api.sock", l->root) || symlink(path, l->api) ||
	    vm_fmt(path, sizeof(path), "%s/run/vsock.sock", l->root) || symlink(path, l->vsock)) {
		e = -errno;
		goto fail;
	}
	return 0;
fail:
	snprintf(err, errlen, "preparing the jail %s: %s", l->root, strerror(-e));
	return e;
}

/* Removes the VM's copy of its root drive, in the jail too. */
static void drive_remove(const char *drive)
{
	char target[PATH_MAX];
	ssize_t n;

	if (!drive[0])
		return;
	n = readlink(drive, target, sizeof(target) - 1);
	if (n > 0) {
		target[n] = '\0';
		unlink(target);
	}
	unlink(drive);
}

/*
 * The guest's kernel command line: Firecracker's usual (its serial console, a reboot that ends the VMM,
 * no PCI: its devices are on MMIO), the qemu backend's fast-boot options, and the agent's crgw.* settings
 * with the vsock port in place of a serial port.
 */
static int fmt_args(char *out, size_t len, const char *guest, const struct crgw_vm_sandbox *sb, bool root,
		    enum crgw_workspace_mode ws)
{
	return vm_fmt(out, len,
		      "console=ttyS0 reboot=k panic=-1 pci=off rdinit=/init quiet mitigations=off tsc=reliable "
		      "no_timer_check rcupdate.rcu_expedited=1 i8042.noaux i8042.nokbd i8042.nopnp 8250.nr_uarts=1 "
		      "random.trust_cpu=on cryptomgr.notests crgw.ip=%s/30 crgw.gw=%s crgw.dns=%s crgw.hostname=%s "
		      "crgw.vsock=%u%s%s%s",
		      guest, sb->gateway, sb->gateway, sb->id, VM_FC_AGENT_PORT, root ? " crgw.root=/dev/vda" : "",
		      ws == CRGW_WS_NONE ? "" : " crgw.ws=", ws == CRGW_WS_NONE ? "" : crgw_workspace_mode_name(ws));
}

static int cgroup_version(void)
{
	return access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0 ? 2 : 1;
}

/*
 * A boot that did not finish, on a host whose KVM this boot's probe found running no guest (a nested KVM
 * that stops it): the likely reason, added to the error. Not checked before the launch: a VMM that needs no
 * KVM of this host (the tests' fake) must still run.
 */
static void kvm_hint(char *err, size_t errlen)
{
	char why[300];
	size_t used = strlen(err);

	if (vm_kvm_known_broken(why, sizeof(why)) && used + 8 < errlen)
		snprintf(err + used, errlen - used, " (KVM on this host ran no guest in this boot's probe: %s)", why);
}

static int fc_create(const struct crgw_sandbox_spec *spec, const struct crgw_gateway_ops *gw,
		     struct crgw_vm_sandbox **out, char *err, size_t errlen)
{
	struct fc_programs prog;
	struct fc_layout l;
	struct vm_ws ws;
	struct vm_answer a;
	json_t *image_config = NULL;
	struct vm_kernel k;
	struct crgw_vm_sandbox *sb = NULL;
	json_t *req = NULL, *answer = NULL, *config = NULL;
	int cmd[2] = {-1, -1}, st[2] = {-1, -1}, e, fd = -1, boot_ms = vm_boot_timeout_ms();
	bool registered = false;
	char image[PATH_MAX], initrd[PATH_MAX], kernel_in[PATH_MAX], initrd_in[PATH_MAX], args[1024];
	char cmdline[16384], uid[16], cgv[4], tail[400];
	size_t cmdlen;
	pid_t holder = -1;
	double t0 = vm_now_ms(), t_prep, t_net;
	ssize_t n;

	*out = NULL;
	l.drive[0] = '\0';
	if (geteuid() != 0) {
		snprintf(err, errlen, "the firecracker backend needs root (the gateway's TAP, the VM's cgroup)");
		return -EPERM;
	}
	if ((e = vm_ws_check(&ws, spec, "firecracker", err, errlen)))
		return e;
	if ((e = find_programs(&prog, err, errlen)))
		return e;
	/* What the VM boots: the qemu backend's kernel and initramfs, with the modules of an MMIO machine. */
	if ((e = vm_policy_image(spec->policy_json, image, sizeof(image), &image_config, err, errlen)) ||
	    (e = vm_boot_prepare(fc_guest_modules, &k, initrd, sizeof(initrd), err, errlen)))
		return e;
	t_prep = vm_now_ms();

	sb = vm_sandbox_new();
	if (!sb) {
		e = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if ((e = vm_holder_fork(sb, &cmd[1], &st[0], err, errlen)))
		goto fail;
	holder = sb->holder;

	if (!(req = vm_registration(spec, &ws, "firecracker", holder))) {
		e = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* The jailed VMM is not root: the TAP must be its own to open. */
	if (prog.jailer[0])
		json_object_set_new(req, "tap_owner", json_integer(JAIL_UID));
	if ((e = vm_register(sb, gw, req, &answer, &a, &registered, err, errlen)))
		goto fail;
	const char *data_dir = a.data_dir, *guest = a.guest, *ifname = a.ifname, *mac = a.mac;

	if ((e = layout_init(&l, data_dir))) {
		snprintf(err, errlen, "the VM's paths are too long (data_dir %s)", data_dir);
		l.drive[0] = '\0';
		goto fail;
	}
	if ((mkdir(l.dir, 0700) && errno != EEXIST) || (mkdir(l.snapshot, 0700) && errno != EEXIST)) {
		e = -errno;
		snprintf(err, errlen, "%s: %s", l.dir, strerror(errno));
		l.drive[0] = '\0';
		goto fail;
	}
	/* Firecracker has no snapshot=on: the VM writes to a copy of its own, gone with the sandbox. */
	if (image[0] && (e = vm_fc_copy_file(image, l.drive))) {
		snprintf(err, errlen, "copying the image %s to %s: %s", image, l.drive, strerror(-e));
		l.drive[0] = '\0';
		goto fail;
	}
	if (!image[0])
		l.drive[0] = '\0';
	double t_ws = vm_now_ms();

	if ((e = vm_ws_make_disks(&ws, data_dir, err, errlen)))
		goto fail;
	if ((e = vm_image_config_save(data_dir, image_config))) {
		snprintf(err, errlen, "%s/%s: %s", data_dir, VM_IMAGE_CONFIG, strerror(-e));
		goto fail;
	}
	t_prep += vm_now_ms() - t_ws; /* the workspace's disks are image preparation too */
	memcpy(kernel_in, k.vmlinux, sizeof(kernel_in));
	memcpy(initrd_in, initrd, sizeof(initrd_in));
	if (prog.jailer[0] && (e = jail_prepare(&l, prog.vmm, sb->id, k.vmlinux, initrd, l.drive, &ws, kernel_in,
						initrd_in, sizeof(kernel_in), err, errlen)))
		goto fail;
	if (fmt_args(args, sizeof(args), guest, sb, image[0] != '\0', ws.mode)) {
		e = -ENAMETOOLONG;
		snprintf(err, errlen, "the kernel command line is too long");
		goto fail;
	}
	struct vm_fc_vm vm = {
	    .vcpus = 1,
	    .mem_mib = GUEST_MEMORY_MB,
	    .kernel = kernel_in,
	    .initrd = initrd_in,
	    .boot_args = args,
	    .drive = l.drive[0] ? (l.root[0] ? "/rootfs.ext4" : l.drive) : NULL,
	    .ws_lower = ws.lower[0] ? (l.root[0] ? "/workspace.ext4" : ws.lower) : NULL,
	    .ws_upper = ws.upper[0] ? (l.root[0] ? "/workspace-changes.ext4" : ws.upper) : NULL,
	    .tap = ifname,
	    .mac = mac,
	    .cid = GUEST_CID,
	    .vsock = l.root[0] ? "/run/vsock.sock" : l.vsock,
	};
	snprintf(uid, sizeof(uid), "%u", JAIL_UID);
	snprintf(cgv, sizeof(cgv), "%d", cgroup_version());
	{
		const char *direct[] = {prog.vmm, "--api-sock", l.api};
		const char *jailed[] = {
		    prog.jailer, "--id",  sb->id,	"--exec-file",	     prog.vmm,	  "--uid",
		    uid,	 "--gid", uid,		"--chroot-base-dir", l.jail_base, "--cgroup-version",
		    cgv,	 "--",	  "--api-sock", "/run/api.sock"};

		config = vm_fc_config(&vm);
		if (!config || json_dump_file(config, l.config, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) {
			e = config ? -EIO : -ENOMEM;
			snprintf(err, errlen, "writing %s: %s", l.config, strerror(-e));
			goto fail;
		}
		e = l.root[0] ? vm_holder_args(l.console, l.log, jailed, sizeof(jailed) / sizeof(jailed[0]), cmdline,
					       sizeof(cmdline), &cmdlen)
			      : vm_holder_args(l.console, l.log, direct, sizeof(direct) / sizeof(direct[0]), cmdline,
					       sizeof(cmdline), &cmdlen);
		if (e) {
			snprintf(err, errlen, "the VMM's command line is too long");
			goto fail;
		}
	}
	if (vm_fmt(sb->agent_sock, sizeof(sb->agent_sock), "%s", l.vsock) ||
	    vm_fmt(sb->drive, sizeof(sb->drive), "%s", l.drive)) {
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
		snprintf(err, errlen, "starting %s: %s", l.root[0] ? prog.jailer : prog.vmm, strerror(e));
		e = -e;
		goto fail;
	}
	/* The API socket appears once Firecracker runs; then the whole configuration, then the start. */
	fd = vm_unix_connect(l.api, sb->holder_pidfd, API_SOCKET_TIMEOUT_MS);
	if (fd < 0) {
		e = fd;
		vm_tail_of(l.log, tail, sizeof(tail));
		snprintf(err, errlen, "Firecracker's API socket %s: %s%s%s", l.api,
			 e == -ESRCH			      ? "the VMM ended before making it"
			 : e == -ENOENT || e == -ECONNREFUSED ? "did not appear within 5 s"
							      : strerror(-e),
			 tail[0] ? ": " : "", tail);
		goto fail;
	}
	close(fd);
	fd = -1;
	if ((e = vm_fc_configure(l.api, config, err, errlen)))
		goto fail;
	/*
	 * Booted when the agent says hello on the vsock port. The connection stays for the first exec, as in
	 * qemu.c; later ones open their own (vsock takes many).
	 */
	double boot_end = vm_now_ms() + boot_ms;

	fd = vm_fc_vsock_connect(l.vsock, VM_FC_AGENT_PORT, sb->holder_pidfd, boot_ms, err, errlen);
	e = fd < 0 ? fd : vm_wait_hello(fd, (int)(boot_end - vm_now_ms()));
	if (fd >= 0 && e) {
		char why[200];

		snprintf(why, sizeof(why), "%s",
			 e == -EPROTO ? "the guest's first line was not the agent's hello" : strerror(-e));
		vm_tail_of(l.console, tail, sizeof(tail));
		snprintf(err, errlen, "the VM did not come up (%s): %s", why, tail);
		close(fd);
		kvm_hint(err, errlen);
		goto fail;
	} else if (fd < 0) {
		size_t used = strlen(err);

		vm_tail_of(l.console, tail, sizeof(tail));
		if (tail[0] && used + 3 < errlen)
			snprintf(err + used, errlen - used, ": %s", tail);
		kvm_hint(err, errlen);
		goto fail;
	}
	sb->agent_fd = fd;
	sb->timings[0] = t_prep - t0;
	sb->timings[1] = t_net - t_prep;
	sb->timings[2] = vm_now_ms() - t_net;
	vm_report_timings(sb, gw, access("/dev/kvm", R_OK | W_OK) == 0 ? "KVM" : "no /dev/kvm");
	json_decref(config);
	json_decref(image_config);
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
	drive_remove(l.drive);
	if (registered && sb && sb->id[0])
		gw->release_sandbox(gw->arg, sb->id);
	for (int i = 0; i < 2; i++) {
		if (cmd[i] >= 0)
			close(cmd[i]);
		if (st[i] >= 0)
			close(st[i]);
	}
	json_decref(config);
	json_decref(image_config);
	json_decref(req);
	json_decref(answer);
	vm_sandbox_free(sb);
	return e;
}

static int fc_open(json_t *record, struct crgw_vm_sandbox **out, char *err, size_t errlen)
{
	struct fc_layout l;
	int e = vm_open(record, out, err, errlen);

	if (e)
		return e;
	if (layout_init(&l, json_string_value(json_object_get(record, "data_dir"))) ||
	    vm_fmt((*out)->agent_sock, sizeof((*out)->agent_sock), "%s", l.vsock) ||
	    vm_fmt((*out)->drive, sizeof((*out)->drive), "%s", l.drive)) {
		snprintf(err, errlen, "%s: its data directory's path is too long", (*out)->id);
		vm_sandbox_free(*out);
		*out = NULL;
		return -ENAMETOOLONG;
	}
	return 0;
}

/* Unlike QEMU's one serial connection, vsock takes a connection per execution. */
static int fc_run(struct crgw_vm_sandbox *sb, const struct crgw_exec_request *r, int *status, char *err, size_t errlen)
{
	int fd = vm_fc_vsock_connect(sb->agent_sock, VM_FC_AGENT_PORT, sb->holder_pidfd, 10000, err, errlen), e;

	if (fd < 0) {
		size_t used = strlen(err);

		snprintf(err + used, errlen - used, " (%s)", sb->id);
		return fd;
	}
	e = crgw_guest_exec_on(fd, r, vm_boot_timeout_ms(), false, sb->owned ? sb->holder_pidfd : -1, status, err,
			       errlen);
	close(fd);
	return e;
}

static int fc_exec(struct crgw_vm_sandbox *sb, const struct crgw_exec_request *req, int *status, char *err,
		   size_t errlen)
{
	return vm_exec(sb, req, fc_run, status, err, errlen);
}

static int fc_release(struct crgw_vm_sandbox *sb, const struct crgw_gateway_ops *gw)
{
	int e = vm_release_holder(sb, gw);

	/* The gateway removes the data directory in its teardown; the drive, the largest file, goes now. */
	drive_remove(sb->drive);
	return e;
}

bool crgw_firecracker_available(char *why, size_t whylen)
{
	struct fc_programs p;
	char err[PATH_MAX + 200], guest[PATH_MAX + 200];

	if (find_programs(&p, err, sizeof(err))) {
		snprintf(why, whylen, "%s", err);
		return false;
	}
	if (!vm_guest_available(guest, sizeof(guest))) {
		snprintf(why, whylen, "%s", guest);
		return false;
	}
	if (access("/dev/kvm", R_OK | W_OK)) {
		snprintf(why, whylen, "%s found, but Firecracker needs KVM and /dev/kvm is not usable", p.vmm);
		return false;
	}
	if (vm_kvm_known_broken(err, sizeof(err))) {
		snprintf(why, whylen, "%s found, but Firecracker needs KVM and KVM here runs no guest (%s)", p.vmm,
			 err);
		return false;
	}
	snprintf(why, whylen, "%s%s%s with %s", p.vmm, p.jailer[0] ? " through " : " (no jailer)", p.jailer, guest);
	return true;
}

static json_t *fc_capabilities(void)
{
	struct fc_programs p;
	char err[PATH_MAX + 200];
	bool jailer = find_programs(&p, err, sizeof(err)) == 0 && p.jailer[0];

	return json_pack("{s:b, s:b, s:b, s:b, s:b, s:b, s:[sss], s:b, s:s, s:s, s:b, s:s}", "network_default_deny", 1,
			 "network_host_port_filtering", 1, "dns_control", 1, "policy_immutability", 1,
			 "audit_event_emission", 1, "secret_isolation", 1, "workspace_modes", "copy", "ro", "none",
			 "tty", 1, "accelerator", "kvm", "isolation", "a virtual machine (its own kernel)", "jailer",
			 jailer, "agent_channel", "hybrid vsock");
}

const struct crgw_backend crgw_backend_firecracker = {
    .name = "firecracker",
    .create = fc_create,
    .open = fc_open,
    .exec = fc_exec,
    .release = fc_release,
    .capabilities = fc_capabilities,
    .free = vm_sandbox_free,
};
