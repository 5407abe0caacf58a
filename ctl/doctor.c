/* SPDX-License-Identifier: Apache-2.0 */
/* crgw-ctl doctor: the host's prerequisites for the gateway and the capability map of a running one. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "crgw/ebpf.h"
#include "crgw/vm.h"
#include "ctl.h"

enum level { OK, WARN, FAIL };

struct report {
	bool json;
	json_t *checks;
	unsigned failed, warned;
};

static void check(struct report *r, const char *name, enum level level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void check(struct report *r, const char *name, enum level level, const char *fmt, ...)
{
	static const char *const words[] = {"ok", "warn", "fail"};
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (level == FAIL)
		r->failed++;
	if (level == WARN)
		r->warned++;
	if (r->json)
		json_array_append_new(
		    r->checks, json_pack("{s:s, s:s, s:s}", "check", name, "status", words[level], "detail", detail));
	else
		printf("%-5s %-22s %s\n", words[level], name, detail);
}

static bool file_has(const char *path, const char *needle)
{
	char buf[8192];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return needle == NULL || strstr(buf, needle) != NULL;
}

/* What a sandbox needs of this host beyond namespaces: cgroup controllers, seccomp, idmapped mounts. */
static void sandbox_checks(struct report *r)
{
	static const char *const controllers[] = {"memory", "pids", "cpu"};
	char why[256], line[256];
	struct utsname u;
	FILE *f = fopen("/proc/cgroups", "re");
	bool have[3] = {false, false, false};
	unsigned major = 0, minor = 0;

	/* /proc/cgroups: subsys_name hierarchy num_cgroups enabled. */
	while (f && fgets(line, sizeof(line), f)) {
		char name[64];
		int hier, num, enabled;

		if (sscanf(line, "%63s %d %d %d", name, &hier, &num, &enabled) == 4 && enabled)
			for (int i = 0; i < 3; i++)
				have[i] |= !strcmp(name, controllers[i]);
	}
	if (f)
		fclose(f);
	check(r, "cgroup controllers", have[0] && have[1] && have[2] ? OK : FAIL, "memory %s, pids %s, cpu %s%s",
	      have[0] ? "yes" : "no", have[1] ? "yes" : "no", have[2] ? "yes" : "no",
	      have[0] && have[1] && have[2]
		  ? " (the gateway's capability map says which hierarchy it uses)"
		  : ": sandboxes cannot be limited (the gateway refuses to start unless limits.optional)");
	check(r, "seccomp", crgw_seccomp_available(why, sizeof(why)) ? OK : FAIL, "%s", why);
	if (uname(&u) == 0)
		sscanf(u.release, "%u.%u", &major, &minor);
	check(r, "idmapped mounts", major > 5 || (major == 5 && minor >= 12) ? OK : WARN, "%s",
	      major > 5 || (major == 5 && minor >= 12)
		  ? "kernel 5.12 or later: workspaces in copy, rw and ro modes (the file system must support them)"
		  : "kernel older than 5.12: only --workspace-mode none works");
	check(r, "overlayfs", file_has("/proc/filesystems", "overlay") ? OK : WARN, "%s",
	      file_has("/proc/filesystems", "overlay") ? "available (copy-mode workspaces)"
						       : "missing: no copy-mode workspaces");
	/* A sandbox's own disk (limits.disk): an ext4 image on a loop device, made with mke2fs. */
	bool loop = access("/dev/loop-control", R_OK | W_OK) == 0, ext4 = file_has("/proc/filesystems", "ext4"),
	     mkfs = access("/usr/sbin/mke2fs", X_OK) == 0 || access("/sbin/mke2fs", X_OK) == 0;

	check(r, "sandbox disks", loop && ext4 && mkfs ? OK : WARN, "%s%s%s%s",
	      loop && ext4 && mkfs ? "loop devices, ext4 and mke2fs present (limits.disk, --disk)"
				   : "cannot be had (limits.disk needs limits.optional, or 0):",
	      loop ? "" : " no /dev/loop-control", ext4 ? "" : " no ext4 in /proc/filesystems",
	      mkfs ? "" : " no mke2fs (package e2fsprogs)");
}

static void gateway_checks(struct report *r, json_t **caps)
{
	struct ctl_response resp;
	char err[512];
	struct stat st;
	long timeout = ctl_timeout_ms;

	/* A health check: a gateway that does not answer in 10 s is the finding, not a reason to wait 120. */
	ctl_timeout_ms = 10000;
	/* Connecting to a UNIX socket takes write permission: others' write bit is what lets them in. */
	bool exists = stat(ctl_control_path, &st) == 0;

	if (exists && !S_ISSOCK(st.st_mode))
		check(r, "control socket", WARN, "%s is not a socket", ctl_control_path);
	else if (exists)
		check(r, "control socket", (st.st_mode & 0002) ? WARN : OK, "%s mode %04o owner %u:%u%s",
		      ctl_control_path, st.st_mode & 07777, st.st_uid, st.st_gid,
		      (st.st_mode & 0002) ? " (others can reach the control API)" : "");
	int e = ctl_request("GET", "/v1/health", NULL, &resp, err, sizeof(err));

	if (e) {
		/* Not running is a warning (doctor also serves hosts before their gateway); hung is a failure. */
		check(r, "gateway", e == -ETIMEDOUT ? FAIL : WARN, "%s", err);
		ctl_timeout_ms = timeout;
		return;
	}
	check(r, "gateway", resp.status == 200 ? OK : FAIL, "health: %s", resp.body);
	free(resp.body);
	if (ctl_request("GET", "/v1/capabilities", NULL, &resp, err, sizeof(err)) == 0) {
		*caps = json_loads(resp.body, 0, NULL);
		free(resp.body);
	}
	ctl_timeout_ms = timeout;
}

int cmd_doctor(int argc, char **argv)
{
	struct report r = {0};
	struct utsname u;
	json_t *caps = NULL;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: crgw-ctl doctor [--json]\n"
		       "Checks the host's prerequisites (namespaces, nftables, cgroups, seccomp, idmapped mounts)\n"
		       "and prints the capability map of the backends and of the running gateway.\n"
		       "Exit 0 when every check passes, 1 when one fails.\n");
		return CTL_EXIT_OK;
	}
	if (argc == 2 && !strcmp(argv[1], "--json"))
		r.json = true;
	else if (argc != 1) {
		fprintf(stderr, "usage: crgw-ctl doctor [--json]\n");
		return CTL_EXIT_ERROR;
	}
	r.checks = json_array();
	check(&r, "root", geteuid() == 0 ? OK : FAIL, "%s",
	      geteuid() == 0 ? "running as root"
			     : "the gateway and the netns backend need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)");
	if (uname(&u) == 0)
		check(&r, "kernel", OK, "%s %s", u.sysname, u.release);
	check(&r, "network namespaces", access("/proc/self/ns/net", F_OK) == 0 ? OK : FAIL, "/proc/self/ns/net");
	check(&r, "pid namespaces", access("/proc/self/ns/pid", F_OK) == 0 ? OK : FAIL, "/proc/self/ns/pid");
	check(&r, "nftables", access("/proc/net/netfilter/nf_log", F_OK) == 0 ? OK : FAIL,
	      "netfilter present (nf_tables, NAT and redirect are needed; the gateway fails to start without them)");
	check(&r, "nflog", file_has("/proc/net/netfilter/nf_log", "nfnetlink_log") ? OK : WARN,
	      "nfnetlink_log %s (packet-drop audit events)",
	      file_has("/proc/net/netfilter/nf_log", "nfnetlink_log") ? "available" : "missing");
	check(&r, "btf", access("/sys/kernel/btf/vmlinux", R_OK) == 0 ? OK : WARN, "/sys/kernel/btf/vmlinux %s",
	      access("/sys/kernel/btf/vmlinux", R_OK) == 0 ? "readable" : "missing (no CO-RE BPF)");
	{
		/* The real test: the kernel loads and verifies the very program the gateway attaches. */
		struct crgw_guard *g = NULL;
		char why[512] = "";
		int e = crgw_guard_open(&g, 1, why, sizeof(why));

		crgw_guard_close(g);
		if (e)
			check(&r, "ebpf guard", WARN, "cannot be loaded here (%s): enforcement would be nftables alone",
			      why[0] ? why : strerror(-e));
		else
			check(&r, "ebpf guard", OK, "the kernel loads and verifies it (enforcement: both by default)");
	}
	check(&r, "ip_forward", file_has("/proc/sys/net/ipv4/ip_forward", "0") ? OK : WARN, "%s",
	      file_has("/proc/sys/net/ipv4/ip_forward", "0")
		  ? "global forwarding off"
		  : "global forwarding on: the gateway's forward chain still drops sandbox traffic");
	check(&r, "tun", access("/dev/net/tun", R_OK | W_OK) == 0 ? OK : WARN, "/dev/net/tun %s (VM backends)",
	      access("/dev/net/tun", F_OK) == 0 ? "present" : "missing");
	check(&r, "kvm", access("/dev/kvm", R_OK | W_OK) == 0 ? OK : WARN, "/dev/kvm %s",
	      access("/dev/kvm", F_OK) == 0 ? "present" : "missing (VMs would run under TCG emulation)");
	check(&r, "backend netns", geteuid() == 0 ? OK : FAIL, "available; weaker isolation than a VM");
	{
		char why[4352];
		bool ok = crgw_qemu_available(why, sizeof(why));

		check(&r, "backend qemu", ok ? OK : WARN, "%s%s", ok ? "available: " : "not available: ", why);
		ok = crgw_firecracker_available(why, sizeof(why));
		check(&r, "backend firecracker", ok ? OK : WARN, "%s%s", ok ? "available: " : "not available: ", why);
	}
	sandbox_checks(&r);
	gateway_checks(&r, &caps);
	json_t *netns = crgw_backend_find("netns")->capabilities();
	if (r.json) {
		json_t *out = json_pack("{s:o, s:i, s:i, s:{s:o}}", "checks", r.checks, "failed", r.failed, "warnings",
					r.warned, "backend", "netns", netns);

		if (caps)
			json_object_set_new(out, "capabilities", caps);
		char *s = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		if (s)
			puts(s);
		free(s);
		json_decref(out);
	} else {
		char *b = json_dumps(netns, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		printf("backend netns (this host):\n%s\n", b ? b : "");
		free(b);
		json_decref(netns);
		if (caps) {
			char *s = json_dumps(caps, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

			printf("capability map (gateway):\n%s\n", s ? s : "");
			free(s);
			json_decref(caps);
		}
		json_decref(r.checks);
		printf("%u failed, %u warning%s\n", r.failed, r.warned, r.warned == 1 ? "" : "s");
	}
	return r.failed ? CTL_EXIT_DENY : CTL_EXIT_OK;
}
