/* SPDX-License-Identifier: Apache-2.0 */
/*
 * crgw-guest: the agent in a sandbox VM. With no arguments it is the VM's init: it mounts, configures the
 * network from the kernel command line and serves the host on the virtio-serial port (or vsock). With
 * --listen, --fd or --stdio it only serves, as an ordinary process (tests, or under another init). The
 * host runs it in the VM (as /proc/self/exe, which in the agent's child is the agent) with --copy-out for
 * crgw-ctl cp, and with --sync before it reads the workspace's change disk for crgw-ctl sandbox diff.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "crgw/copy_stream.h"

static void usage(FILE *to)
{
	fprintf(to, "usage: crgw-guest                       as the VM's init (PID 1): kernel command line crgw.*\n"
		    "       crgw-guest --listen unix:PATH     serve connections on a unix socket\n"
		    "       crgw-guest --listen vsock:PORT    serve connections on vsock\n"
		    "       crgw-guest --fd N                 serve one session on descriptor N\n"
		    "       crgw-guest --stdio                serve one session on standard input and output\n"
		    "       crgw-guest --copy-out PATH        write PATH as crgw-ctl cp's stream on standard output\n"
		    "       crgw-guest --sync                 write what the file systems hold back to the disks\n");
}

/* A descriptor number: digits only, in range. */
static int parse_fd(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > 1 << 20)
		return -1;
	return (int)v;
}

static int listen_on(const char *spec, char *err, size_t errlen)
{
	int fd;

	if (!strncmp(spec, "unix:", 5)) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		const char *path = spec + 5;

		if (!*path || strlen(path) >= sizeof(sun.sun_path)) {
			snprintf(err, errlen, "%s: a unix socket path of 1 to %zu bytes", spec,
				 sizeof(sun.sun_path) - 1);
			return -EINVAL;
		}
		memcpy(sun.sun_path, path, strlen(path));
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) || listen(fd, 16)) {
			snprintf(err, errlen, "%s: %s", spec, strerror(errno));
			if (fd >= 0)
				close(fd);
			return -errno;
		}
		return fd;
	}
	if (!strncmp(spec, "vsock:", 6)) {
		struct sockaddr_vm svm = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY};
		int port = parse_fd(spec + 6);

		if (port < 0) {
			snprintf(err, errlen, "%s: a vsock port number", spec);
			return -EINVAL;
		}
		svm.svm_port = (unsigned)port;
		fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&svm, sizeof(svm)) || listen(fd, 16)) {
			snprintf(err, errlen, "%s: %s", spec, strerror(errno));
			if (fd >= 0)
				close(fd);
			return -errno;
		}
		return fd;
	}
	snprintf(err, errlen, "%s: unix:PATH or vsock:PORT", spec);
	return -EINVAL;
}

static char *read_cmdline(void)
{
	static char buf[4096];
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* PID 1 must not end: the kernel would panic. Where serving is impossible, the VM powers off instead. */
__attribute__((noreturn)) static void power_off(void)
{
	sync();
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

static int run_init(void)
{
	struct agent_config cfg = {.pid1 = true, .listen_fd = -1};
	struct guest_boot boot;
	char err[256];
	int e;

	guest_mount_all();
	guest_load_modules(GUEST_MODULES_LIST);
	if (guest_boot_parse(read_cmdline(), &boot, err, sizeof(err))) {
		guest_log("kernel command line: %s", err);
		power_off();
	}
	/* An image's root: without it nothing the host asked for could run, so no agent either. */
	if (boot.root[0]) {
		if (guest_switch_root(boot.root, 10000, err, sizeof(err))) {
			guest_log("root file system: %s", err);
			power_off();
		}
		guest_mount_all();
	}
	if (boot.ws[0] && guest_mount_workspace(boot.ws, err, sizeof(err))) {
		guest_log("workspace: %s", err);
		power_off();
	}
	/* A network that fails to come up is logged; commands still run, and the host's checks see it. */
	if (guest_network_up(&boot, err, sizeof(err)))
		guest_log("network: %s", err);
	if (boot.vsock) {
		char spec[32];

		snprintf(spec, sizeof(spec), "vsock:%u", boot.vsock);
		cfg.source = AGENT_LISTEN;
		cfg.listen_fd = listen_on(spec, err, sizeof(err));
		if (cfg.listen_fd < 0) {
			guest_log("%s", err);
			power_off();
		}
	} else {
		cfg.source = AGENT_PORT;
		/* The first port, then the others the host made (crgw.ports): a connection each. */
		for (unsigned i = 0; i < boot.ports; i++) {
			char name[80];
			int fd;

			snprintf(name, sizeof(name), i ? "%s.%u" : "%s", boot.port, i);
			fd = guest_open_port(name, 10000);
			if (fd < 0) {
				guest_log("the virtio-serial port named %s: %s", name, strerror(-fd));
				if (i == 0)
					power_off();
				break;
			}
			cfg.port_fds[cfg.nports++] = fd;
		}
	}
	e = agent_run(&cfg);
	guest_log("the agent ended: %s", strerror(-e));
	power_off();
}

int main(int argc, char **argv)
{
	struct agent_config cfg = {.listen_fd = -1};
	char err[256];
	int e;

	if (argc == 1) {
		if (getpid() != 1) {
			usage(stderr);
			return 2;
		}
		return run_init();
	}
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "--copy-out"))
		return crgw_copy_send(1, argv[2]) ? 1 : 0;
	if (argc == 2 && !strcmp(argv[1], "--sync")) {
		sync();
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "--stdio")) {
		cfg.source = AGENT_FD;
		cfg.in_fd = 0;
		cfg.out_fd = 1;
	} else if (argc == 3 && !strcmp(argv[1], "--fd")) {
		cfg.source = AGENT_FD;
		cfg.in_fd = cfg.out_fd = parse_fd(argv[2]);
		if (cfg.in_fd < 0 || fcntl(cfg.in_fd, F_GETFD) < 0) {
			fprintf(stderr, "crgw-guest: --fd %s: not an open descriptor\n", argv[2]);
			return 2;
		}
	} else if (argc == 3 && !strcmp(argv[1], "--listen")) {
		cfg.source = AGENT_LISTEN;
		cfg.listen_fd = listen_on(argv[2], err, sizeof(err));
		if (cfg.listen_fd < 0) {
			fprintf(stderr, "crgw-guest: --listen %s\n", err);
			return 1;
		}
	} else {
		usage(stderr);
		return 2;
	}
	e = agent_run(&cfg);
	if (e) {
		fprintf(stderr, "crgw-guest: %s\n", strerror(-e));
		return 1;
	}
	return 0;
}
