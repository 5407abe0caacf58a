/* SPDX-License-Identifier: Apache-2.0 */
/* What crgw-guest's files declare to each other: the agent loop (agent.c) and the init duties (init.c). */
#ifndef CRGW_GUEST_AGENT_H
#define CRGW_GUEST_AGENT_H

#include <stdbool.h>
#include <stddef.h>

/* Where the agent's sessions come from. */
enum agent_source {
	AGENT_FD,     /* one session on a descriptor pair (--fd N, --stdio); the agent ends with it */
	AGENT_LISTEN, /* sessions accepted on a listening socket (--listen unix:PATH|vsock:PORT) */
	AGENT_PORT,   /* a virtio-serial port: one session at a time, a new one each time the host connects */
};

/* Serial ports served at once: a host connection each (a port takes one at a time). */
#define AGENT_PORTS_MAX 8

struct agent_config {
	enum agent_source source;
	int in_fd, out_fd; /* AGENT_FD */
	int listen_fd;	   /* AGENT_LISTEN */
	int port_fds[AGENT_PORTS_MAX]; /* AGENT_PORT: the open /dev/vportNpM, one session each */
	unsigned nports;
	bool pid1;	   /* the commands' base environment is fixed, not ours; orphans are ours to reap */
};

/*
 * Serves the protocol (guest/README.md) until an AGENT_FD session ends; never returns for the other
 * sources unless something fatal happens. Returns 0 or -errno. Single-threaded: one poll loop.
 */
int agent_run(const struct agent_config *cfg);

/* ---- init.c: what PID 1 does before serving ---------------------------------------------------- */

/* What the kernel command line says (crgw.* parameters, guest/README.md). Strings are empty when unset. */
struct guest_boot {
	char ip[48];	   /* crgw.ip=ADDR/PREFIX */
	char gw[16];	   /* crgw.gw=ADDR */
	char dns[16];	   /* crgw.dns=ADDR */
	char ifname[16];   /* crgw.if=NAME (eth0) */
	char hostname[64]; /* crgw.hostname=NAME */
	char port[64];	   /* crgw.port=NAME: the virtio-serial port's name (crgw.0) */
	unsigned ports;	   /* crgw.ports=N: also NAME.1 .. NAME.N-1 (1) */
	unsigned mtu;	   /* crgw.mtu=N, 0 for the driver's */
	unsigned vsock;	   /* crgw.vsock=PORT: listen on vsock instead of a serial port (Firecracker) */
	char root[64];	   /* crgw.root=/dev/vda: the image's ext4 file system, switched into; empty: stay */
	char ws[8];	   /* crgw.ws=copy|ro: the workspace's disks (by label) at /workspace; empty: none */
};

/* Parses a command line (the text of /proc/cmdline) into `b`, with defaults. Returns 0 or -EINVAL. */
int guest_boot_parse(const char *cmdline, struct guest_boot *b, char *err, size_t errlen);

/* Mounts /proc, /sys, /dev, /dev/pts, /dev/shm, /tmp, /run (what is mounted already stays). */
void guest_mount_all(void);

/*
 * Loads the kernel modules listed in `list` (a path per line, in load order; '#' comments) with
 * finit_module: a distribution kernel has virtio_console and virtio_net as modules. A missing list is
 * no work. Returns how many loaded, or -errno when the list cannot be read.
 */
#define GUEST_MODULES_LIST "/etc/crgw-guest/modules"
int guest_load_modules(const char *list);

/*
 * Mounts `dev` (ext4) and makes it the root: the early mounts move along, the initramfs stays beneath
 * (it is the kernel's rootfs, which cannot be unmounted). Waits up to `wait_ms` for the device. Returns 0
 * or -errno with `err`; on failure the root is unchanged.
 */
int guest_switch_root(const char *dev, int wait_ms, char *err, size_t errlen);

/*
 * The workspace (crgw.ws=MODE): the disk labelled GUEST_WS_LOWER_LABEL is the host directory's copy; "ro"
 * mounts it read-only at /workspace, "copy" makes it the lower layer of an overlay whose changes go to
 * the disk labelled GUEST_WS_UPPER_LABEL (in its directory "upper"), where the host reads them. Returns 0
 * or -errno with `err`: a workspace that cannot be mounted is a VM that must not serve.
 */
#define GUEST_WS_LOWER_LABEL "crgw-ws-lower"
#define GUEST_WS_UPPER_LABEL "crgw-ws-upper"
int guest_mount_workspace(const char *mode, char *err, size_t errlen);

/* Brings up lo and the interface with its address, MTU and default route; writes /etc/resolv.conf. */
int guest_network_up(const struct guest_boot *b, char *err, size_t errlen);

/* Opens /dev/vportNpM whose name is `name`, waiting up to `wait_ms` for it to appear. Returns fd or -errno. */
int guest_open_port(const char *name, int wait_ms);

/* Logs a line to stderr (the console, for PID 1) with the program's name. */
void guest_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
