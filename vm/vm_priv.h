/* SPDX-License-Identifier: Apache-2.0 */
/* What the backends and the shared pieces of libcrgw-vm declare to each other. */
#ifndef CRGW_VM_PRIV_H
#define CRGW_VM_PRIV_H

#include <limits.h>
#include <stdint.h>
#include <termios.h>

#include "crgw/copy_stream.h"
#include "crgw/vm.h"

/*
 * The sandbox's root is an unprivileged user on the host (SANDBOX_UID_BASE and up): it can neither join
 * the host's namespaces nor read or write the host's root-owned files, while it keeps full capabilities
 * over its own network, mounts and processes.
 */
#define SANDBOX_UID_BASE 1879048192u /* 0x70000000: far above any account a distribution makes */
#define SANDBOX_UID_COUNT 65536u

/*
 * A QEMU VM runs as uid VM_QEMU_UID_BASE + its pid (below SANDBOX_UID_BASE by more than any pid_max): an
 * account of its own per VM, owning no file.
 */
#define VM_QEMU_UID_BASE 1610612736u /* 0x60000000 */

#define CGROUP_DIRS_MAX 8

struct crgw_vm_sandbox {
	const struct crgw_backend *backend;
	json_t *record;        /* the gateway's record (registration answer or GET) */
	char id[24];
	char gateway[16];      /* its gateway address */
	pid_t holder;          /* netns: the sandbox's init */
	int holder_pidfd;
	bool owned;            /* made by this process (run), not found (exec) */
	enum crgw_workspace_mode workspace_mode;
	char *cgroup_dirs[CGROUP_DIRS_MAX];
	size_t ncgroup_dirs;
	char agent_sock[PATH_MAX]; /* VM backends: the host's end of the guest agent's port */
	int agent_fd;              /* VM backends: the connection create() saw the hello on, for the first exec; -1 */
	int agent_lock;            /* qemu: the lock on agent_fd's port while it is held; -1 */
	char drive[PATH_MAX];      /* firecracker: the VM's own copy of its root drive, removed on release; "" */
	double timings[3];         /* made here: image (root) prep, network, boot to ready (ms) */
};

/*
 * Writes the user namespace maps of process `pid`: `count` ids from `inside_uid`/`inside_gid` inside are
 * `outside` and up outside (uids and gids alike). Returns 0 or -errno.
 */
int vm_map_ids(pid_t pid, unsigned inside_uid, unsigned inside_gid, unsigned outside, unsigned count);

/* Adds what every backend's registration carries from the spec: run_id, name, limits. */
void vm_registration_add_common(json_t *req, const struct crgw_sandbox_spec *spec);

/* A backend's release: the gateway releases the sandbox, then the holder is ended and reaped here too. */
int vm_release_holder(struct crgw_vm_sandbox *sb, const struct crgw_gateway_ops *gw);

/* CLOCK_MONOTONIC in milliseconds. */
double vm_now_ms(void);

/*
 * Tells the gateway what making the sandbox took (sb->timings; sandbox show's "timings"), and prints it
 * when CRGW_VM_TIMINGS is set (`how`: "TCG", "KVM" or NULL). Best effort: a gateway that does not take
 * them costs the sandbox nothing.
 */
void vm_report_timings(struct crgw_vm_sandbox *sb, const struct crgw_gateway_ops *gw, const char *how);

/* Fills the fields every backend reads from a gateway record. Returns 0 or -EINVAL with `err`. */
int vm_sandbox_from_record(struct crgw_vm_sandbox *sb, json_t *record, char *err, size_t errlen);
/* Whether the disk the gateway gave a new sandbox (its record's "disk") is mounted where we see its data. */
int vm_disk_check(json_t *record, char *err, size_t errlen);
void vm_sandbox_clear(struct crgw_vm_sandbox *sb);

/*
 * The environment a sandbox's command starts with (env.c): nothing of the caller's, a base (PATH, HOME,
 * LANG, ...), the image's Env over it (`image_env`, NAME=VALUE entries, NULL-terminated; may be NULL), the
 * gateway wired in over that (proxy variables, mediation for git and the registries), then the request's
 * -e entries. A new
 * NULL-terminated array of new strings, or NULL when out of memory.
 */
char **vm_command_env(const struct crgw_vm_sandbox *sb, const struct crgw_exec_request *req,
		      char *const *image_env);

/* ---- vmm.c: what the VM backends (qemu.c, firecracker.c) share ----------------------------------- */

/* Boot to the agent's hello: about 3.5 s under TCG on the project's machines; a loaded host takes longer. */
#define VM_BOOT_TIMEOUT_MS 120000

struct vm_kernel;

/* snprintf that says whether it fitted: 0, or -ENAMETOOLONG when `out` was too small. */
__attribute__((format(printf, 3, 4))) int vm_fmt(char *out, size_t len, const char *f, ...);

/* Where kernels and initramfs images are cached: $CRGW_VM_CACHE, or /var/cache/crgw/vm. */
const char *vm_cache_dir(void);

/* How long a VM may take to boot to its agent's hello: $CRGW_VM_BOOT_TIMEOUT seconds, else 120 s. */
int vm_boot_timeout_ms(void);

/* QEMU's machine, and its CPU under KVM: what a launch (qemu.c) and the KVM probe (accel.c) both ask for. */
#define VM_QEMU_MACHINE "q35"
#define VM_QEMU_KVM_CPU "host"

struct vm_kernel;
/*
 * KVM or TCG for a QEMU guest of kernel `k` and `initrd` (vm/accel.c): $CRGW_VM_ACCEL `kvm` or `tcg`
 * decides; `auto` or unset means KVM when /dev/kvm is usable and a guest booted under it, tried once per
 * boot of the host (at most vm_accel_probe_timeout_ms, usually well under a second) and remembered in the
 * cache directory. Sets *kvm, and `why` when /dev/kvm is there and KVM is not used (the probe's reason).
 * 0, or -EINVAL for another value of CRGW_VM_ACCEL (`why` says so).
 */
int vm_accel_choose(const char *qemu, const struct vm_kernel *k, const char *initrd, bool *kvm, char *why,
		    size_t whylen);
/* How long the probe's guest may take (15 s; lowered by the tests). */
extern int vm_accel_probe_timeout_ms;
/*
 * What the next launch will use, as far as is known without booting anything (doctor, capabilities):
 * CRGW_VM_ACCEL, else /dev/kvm and this boot's last answer. `why` always says which.
 */
bool vm_accel_expected(char *why, size_t whylen);
/*
 * Whether this boot's probe found that KVM runs no guest (a nested KVM that aborts QEMU or stops the guest):
 * then `why` says what the probe saw. Other backends that need KVM (Firecracker) ask it to fail at once
 * rather than wait out a boot that cannot finish. False when nothing is known, and with CRGW_VM_ACCEL=kvm.
 */
bool vm_kvm_known_broken(char *why, size_t whylen);

/* Whether `path` is a static ELF program (a guest without libc can run it). */
bool vm_static_program(const char *path);

/*
 * An executable: the value of the environment variable `env` when it is set (which must then be one), else
 * `name` in PATH. Returns 0 with its path in `out`, or -ENOENT.
 */
int vm_find_program(const char *env, const char *name, char *out, size_t len);

/*
 * The guest agent: $CRGW_GUEST, or crgw-guest beside this program (installed), or in the build tree's
 * guest/ (run from the build directory). It must be static: the built-in image has no libc. 0 or -errno.
 */
int vm_find_agent(char *out, size_t len, char *err, size_t errlen);

/* Whether this host has what a guest boots (a kernel, a static agent, busybox); `why` says which or why not. */
bool vm_guest_available(char *why, size_t whylen);

/*
 * What a guest boots: the distribution's newest kernel as an ELF vmlinux (in `k`), and an initramfs with
 * the agent as /init, `modules` (NULL-terminated modprobe names) in load order and the built-in image
 * (busybox, /etc/passwd, ...), at `initrd`. Both cached under vm_cache_dir(). Returns 0 or -errno with `err`.
 */
int vm_boot_prepare(const char *const *modules, struct vm_kernel *k, char *initrd, size_t initrd_len, char *err,
		    size_t errlen);

/*
 * The root file system of the policy's `sandbox.image` from the image store ($CRGW_IMAGE_STORE, else
 * the default), into `path`; an empty path when the policy names no image (the built-in one). With
 * `config`, also what the image's config says of its commands' environment and directory (a new object,
 * or NULL). An image
 * not in the store is an error that says how to pull it: a launch never fetches what nobody vetted.
 */
int vm_policy_image(const char *policy_json, char *path, size_t pathlen, json_t **config, char *err, size_t errlen);

/*
 * What the image's config says its commands run with, kept in the sandbox's data directory for every exec
 * (`config` from vm_policy_image: {"env": [...], "workdir": "..."}, or NULL for none). 0 or -errno.
 */
#define VM_IMAGE_CONFIG "image-config.json"
#define VM_IMAGE_ENV_MAX 256
int vm_image_config_save(const char *data_dir, json_t *config);

/*
 * The holder, in the child of a fork made before the registration (so that the gateway can put it in the
 * sandbox's cgroup): waits on `cmd` for what vm_holder_args() packed (EOF: give up and exit 0), then
 * becomes the VMM with its standard output and error there (an empty path: /dev/null and ours). An exec
 * that fails is reported as an errno on `status` (close-on-exec, so a successful exec just closes it).
 */
__attribute__((noreturn)) void vm_holder_main(int cmd, int status);

/*
 * Packs the holder's command: the paths for standard output and error (NULL or "": none), then `argc`
 * (at most 96) non-empty arguments, NUL-separated and ended by an empty one; leading NAME=VALUE arguments
 * are the program's environment, as env(1) reads them. 0, or -E2BIG / -EINVAL.
 */
int vm_holder_args(const char *out_path, const char *err_path, const char *const *argv, size_t argc, char *buf,
		   size_t size, size_t *len);

/* The agent's hello on a fresh connection: 0, -ETIMEDOUT, -ECONNRESET, -EPROTO (something else came). */
int vm_wait_hello(int fd, int timeout_ms);

/* Whether the process behind `pidfd` has ended (false for -1). */
bool vm_holder_gone(int pidfd);

/*
 * A connection to the unix socket at `path`, retried every 20 ms until `timeout_ms` (the VMM may not have
 * made it yet); -ESRCH as soon as the holder behind `holder_pidfd` (-1: none) has ended. fd or -errno.
 */
int vm_unix_connect(const char *path, int holder_pidfd, int timeout_ms);

/* The last 300 bytes of a VMM's log or a guest's console, for an error message; control bytes blanked. */
void vm_tail_of(const char *path, char *out, size_t len);

/*
 * Forks the holder (vm_holder_main) for `sb` before its registration: sets sb->holder, its pidfd and
 * `owned`; `*cmd_fd` takes vm_holder_args()' bytes, `*status_fd` reads an exec's errno. 0 or -errno with `err`.
 */
int vm_holder_fork(struct crgw_vm_sandbox *sb, int *cmd_fd, int *status_fd, char *err, size_t errlen);

/*
 * A VM backend's open(): the sandbox of a gateway record (borrowed) whose VMM still runs, with a pidfd on
 * it; the backend then fills in where its agent is (the record's data_dir). 0 or -errno with `err`.
 */
int vm_open(json_t *record, struct crgw_vm_sandbox **out, char *err, size_t errlen);

/*
 * A VM backend's exec(): the command's environment (vm_command_env), then the connection create() kept
 * for the first execution, or `run` with the request on a connection of the backend's own making. Same
 * contract as struct crgw_backend's exec.
 */
int vm_exec(struct crgw_vm_sandbox *sb, const struct crgw_exec_request *req,
	    int (*run)(struct crgw_vm_sandbox *sb, const struct crgw_exec_request *r, int *status, char *err,
		       size_t errlen),
	    int *status, char *err, size_t errlen);

/* A sandbox of a VM backend (no holder, no agent connection yet), or NULL; vm_sandbox_free ends it. */
struct crgw_vm_sandbox *vm_sandbox_new(void);
void vm_sandbox_free(struct crgw_vm_sandbox *sb);

/*
 * A VM sandbox's registration: the policy, the backend's name, its holder, its workspace and what every
 * backend adds (vm_registration_add_common). New, or NULL when out of memory.
 */
struct vm_ws;
json_t *vm_registration(const struct crgw_sandbox_spec *spec, const struct vm_ws *ws, const char *backend,
			pid_t holder);

/* What a VM needs of the gateway's answer to its registration; borrowed from the answer. */
struct vm_answer {
	const char *data_dir, *guest, *ifname, *mac;
};

/*
 * Registers `req` (borrowed) with the gateway; `*answer` is the caller's to drop, `*registered` says whether
 * the gateway has the sandbox (to release on a later failure). Fills `sb` and `a` from the answer, which
 * must have what a VM needs. 0 or -errno with `err`.
 */
int vm_register(struct crgw_vm_sandbox *sb, const struct crgw_gateway_ops *gw, json_t *req, json_t **answer,
		struct vm_answer *a, bool *registered, char *err, size_t errlen);

/* ---- firecracker.c: Firecracker's API and hybrid vsock (declared for vm/tests/test_firecracker.c) ---- */

/* The vsock port the guest agent listens on (crgw.vsock= on the kernel command line). */
#define VM_FC_AGENT_PORT 1024u

/* What a Firecracker VM is made of; paths as Firecracker sees them (in its jail, when jailed). Borrowed. */
struct vm_fc_vm {
	unsigned vcpus, mem_mib;
	const char *kernel, *initrd, *boot_args;
	const char *drive; /* the root drive (writable, the VM's own copy), or NULL */
	const char *ws_lower, *ws_upper; /* the workspace's disks (read-only copy, changes), or NULL */
	const char *tap, *mac;
	unsigned cid;
	const char *vsock; /* the hybrid vsock's unix socket */
};

/*
 * The VM's configuration in the shape of Firecracker's --config-file ("machine-config", "boot-source",
 * "drives", "network-interfaces", "vsock"): what vm_fc_configure sends and vm-config.json keeps. New, or NULL.
 */
json_t *vm_fc_config(const struct vm_fc_vm *vm);

/*
 * PUT `body` (borrowed) at `path` on the API socket `api_sock` (libcurl, CURLOPT_UNIX_SOCKET_PATH) and
 * expects 204. Returns 0, -EPROTO with Firecracker's fault_message in `err` (cleaned of control bytes), or
 * -ECONNREFUSED / -ETIMEDOUT when the API could not be reached (10 s per request).
 */
int vm_fc_api_put(const char *api_sock, const char *path, json_t *body, char *err, size_t errlen);

/*
 * Sends a vm_fc_config() configuration in Firecracker's order: machine-config, boot-source, each drive,
 * each network interface, vsock; then InstanceStart. Stops at the first refusal. 0 or -errno with `err`.
 */
int vm_fc_configure(const char *api_sock, json_t *config, char *err, size_t errlen);

/*
 * A connection to the guest's vsock `port` through Firecracker's hybrid vsock socket `uds`: "CONNECT
 * port\n", answered "OK <n>\n", after which the connection is the guest's. A connection closed without
 * an answer (nothing listens yet: the guest is booting) is tried again until `timeout_ms`; an answer that is
 * not that line, or none within `timeout_ms`, fails at once: the answer is the guest's side, not trusted.
 * Returns the descriptor, or -ETIMEDOUT, -EPROTO, -ESRCH (the VMM behind `holder_pidfd` ended) with `err`.
 */
int vm_fc_vsock_connect(const char *uds, unsigned port, int holder_pidfd, int timeout_ms, char *err, size_t errlen);

/*
 * Copies `from` to a new file `to` (mode 0600; an existing `to` is an error): a reflink (FICLONE) where the
 * file system shares blocks, else a copy that leaves blocks of zeros as holes. 0 or -errno; nothing on error.
 */
int vm_fc_copy_file(const char *from, const char *to);

/* ---- workspace.c ------------------------------------------------------------------------------ */

/* A workspace made ready on the host, before the sandbox exists. */
struct workspace {
	enum crgw_workspace_mode mode;
	char dir[PATH_MAX];
	uid_t owner;
	gid_t group;
	mode_t dir_mode;
	int tree_fd; /* a detached, idmapped copy of the directory's mount; -1 for none */
};

/*
 * Opens `dir` and makes the detached, idmapped tree the sandbox will see at /workspace: the directory's
 * owner appears as the sandbox's root, so files it creates belong on the host to that owner. Host root,
 * before the sandbox exists. Returns 0 or -errno with `err` (e.g. no idmapped mounts on this kernel).
 */
int workspace_prepare(struct workspace *ws, enum crgw_workspace_mode mode, const char *dir, char *err,
		      size_t errlen);
void workspace_close(struct workspace *ws);

/*
 * Attaches the workspace at `target` inside the sandbox's mount namespace (the caller is in it, as host
 * root): rw and ro the tree itself, copy an overlay whose change layer lives in `data_dir`. `stage` is an
 * empty directory to hold the overlay's lower layer while it is mounted. Returns 0 or -errno with `err`.
 */
int workspace_attach(const struct workspace *ws, const char *target, const char *stage, const char *data_dir,
		     char *err, size_t errlen);

/*
 * Writes what the stream on `in` holds at `dest` (a new file or directory), never through a link and
 * never outside `dest`; a name that is absolute, holds "." or "..", or comes after a single file, and any
 * length out of bounds end the copy with an error. Returns 0 or -errno with `err`.
 */
int copy_stream_write(int in, const char *dest, char *err, size_t errlen);

/*
 * crgw-ctl cp's frame: `path` (absolute, or relative to /workspace) read by `reader` in a child process,
 * which writes the stream on `out` and exits, and written at `host_path` (into it, when it is a directory)
 * by copy_stream_write. Returns 0 or -errno with `err`.
 */
int vm_copy_out(const char *path, const char *host_path, void (*reader)(void *arg, const char *inside, int out),
		void *arg, char *err, size_t errlen);

/* ---- vm_workspace.c: a VM's workspace as disks -------------------------------------------------- */

struct vm_ws {
	enum crgw_workspace_mode mode;
	char dir[PATH_MAX];   /* the host directory, resolved */
	char lower[PATH_MAX]; /* its copy: a read-only ext4 disk labelled crgw-ws-lower */
	char upper[PATH_MAX]; /* copy mode: the overlay's change disk, labelled crgw-ws-upper */
};

/* Checks the spec's workspace for a VM `backend` (rw cannot be shared) and resolves it. 0 or -errno with `err`. */
int vm_ws_check(struct vm_ws *ws, const struct crgw_sandbox_spec *spec, const char *backend, char *err,
		size_t errlen);

/* Makes the workspace's disks in the sandbox's `data_dir` (gone with it). 0 or -errno with `err`. */
int vm_ws_make_disks(struct vm_ws *ws, const char *data_dir, char *err, size_t errlen);

/*
 * crgw_workspace_diff over the change layer on `changes_disk` (the guest's overlay's "upper"), mirrored in
 * a scratch directory under `scratch_dir` and removed after. 0 or -errno with `err`.
 */
int vm_ws_diff(const char *changes_disk, const char *lower, const char *scratch_dir,
	       void (*cb)(void *arg, const struct crgw_change *change), void *arg, char *err, size_t errlen);

/* ---- rootfs.c --------------------------------------------------------------------------------- */

struct rootfs_spec {
	const char *data_dir;   /* the sandbox's data directory on the host (home, resolv.conf, changes) */
	const char *hostname;   /* its id */
	const char *gateway;    /* its gateway address: the only resolver */
	const char *guest;      /* its own address */
	const struct workspace *workspace;
	bool disk;              /* data_dir is the mount of the sandbox's own disk (the gateway's record says) */
};

/*
 * Builds the sandbox's file system view and makes it the root of its mount namespace: the host's
 * top-level directories bound read-only, a private /tmp, /var/tmp, /run, /dev/shm, a fresh /proc, a
 * minimal /dev with its own ptys, a private home, /workspace, and resolv.conf naming the gateway. Runs in
 * a helper that joined the sandbox's mount, PID and UTS namespaces as host root. Returns 0 or -errno.
 */
int rootfs_build(const struct rootfs_spec *spec, char *err, size_t errlen);

/* ---- console.c -------------------------------------------------------------------------------- */

/* The standard streams of one execution: relayed through pipes or a pty, or handed over as they are. */
struct console {
	bool tty, interactive;
	int child_fd[3];  /* what the command gets as 0, 1, 2 (closed here after the fork) */
	int relay_fd[3];  /* our end of each relayed stream, -1 where the stream is passed through */
	int pty_master;   /* -1 until the executing side sends it */
	bool raw;
	struct termios saved;
};

/*
 * Sets up the streams before the fork. A terminal of ours never reaches the sandbox: without -t a tty is
 * relayed through a pipe, and without -i the command reads /dev/null. Returns 0 or -errno.
 */
int console_open(struct console *c, bool tty, bool interactive);

/* After the fork, in the parent: closes the command's ends. */
void console_after_fork(struct console *c);

/*
 * Relays until the executing side (`ctl_fd`, a SEQPACKET socket) reports the command's exit, forwarding
 * signals to `forward_pid`; `on_fatal` (may be NULL) is called for SIGTERM and SIGHUP instead of
 * forwarding them. Returns the exit status (0-255), or -errno when the executing side vanished.
 */
int console_run(struct console *c, int ctl_fd, pid_t forward_pid, void (*on_fatal)(int sig, void *arg),
		void *arg);

/* Restores the terminal and closes everything. */
void console_close(struct console *c);

/* Messages on the control socket between crgw-ctl and the process executing in the sandbox. */
enum exec_msg_type { EXEC_MSG_PTY = 1, EXEC_MSG_EXIT = 2, EXEC_MSG_ERROR = 3 };

struct exec_msg {
	int type;
	int code;          /* EXIT: the status (0-255); ERROR: the exit code to report (125-127) */
	char text[400];    /* ERROR: why */
};

/* Sends `msg`, with `fd` attached when >= 0. Returns 0 or -errno. */
int exec_msg_send(int sock, const struct exec_msg *msg, int fd);

/* Receives a message and an attached descriptor (or -1). Returns 0, -EPIPE at the end, or -errno. */
int exec_msg_recv(int sock, struct exec_msg *msg, int *fd);

/* ---- guest_client.c: the host side of the guest agent's protocol (guest/README.md) ------------- */

/* One execution over a connection to crgw-guest, with descriptors of its own. */
struct guest_exec {
	/* what to run; borrowed for the call */
	char *const *argv;    /* argv[0] is looked up in the command's PATH */
	char *const *env;     /* NAME=VALUE over the agent's base environment; may be NULL */
	const char *cwd;      /* NULL: /workspace when the guest has one, else / */
	bool tty;             /* a pty in the guest: all output comes to out_fd */
	unsigned rows, cols;  /* the pty's size; 0 when unknown */
	int in_fd;            /* the command's input, read here until EOF; -1: it reads /dev/null */
	int out_fd, err_fd;   /* where its output goes, written after poll says so (a blocking one may still
			       * hold the others up while a write completes) */
	/* results */
	int status;           /* its exit code, 128+N for signal N; 125-127 when it could not run */
	char error[256];      /* why it could not run (from the agent), else "" */
};

struct guest_client_opts {
	/* SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 to this process go to every running execution
	 * (blocked and read with a signalfd for the call); SIGWINCH sends the size of `winsize_fd`'s terminal
	 * to the executions with a tty. */
	bool forward_signals;
	int winsize_fd;
	/* How long to wait for the agent's hello (a VM still booting); 0: for ever. -ETIMEDOUT after it. */
	int hello_timeout_ms;
	/* The caller has read the agent's hello on this connection already. */
	bool hello_seen;
	/*
	 * For a run that owns the sandbox: SIGTERM and SIGHUP end the sandbox at once (SIGKILL to its holder,
	 * the VMM, by `fatal_pidfd`) instead of reaching the command, which may never answer (a VM that is
	 * stuck); every execution still running ends with 128 + the signal.
	 */
	bool fatal_ends;
	int fatal_pidfd;
};

/*
 * Runs `n` (1-64) executions at once over `agent_fd`, a fresh connection to the agent (its first frame is
 * hello), on channels 1..n, until every one has ended and its output is written. The descriptors are
 * borrowed. A slow out_fd stalls its own execution only: nothing is read from the guest beyond each
 * channel's window. Returns 0 with each execution's status (an execution the agent could not start has
 * status 125-127 and `error`), or -errno with `err` when the connection failed or the guest broke the
 * protocol (then every execution still running is closed, which kills it in the guest).
 */
int guest_client_run(int agent_fd, struct guest_exec *execs, size_t n, const struct guest_client_opts *opts,
		     char *err, size_t errlen);

/*
 * What a VM backend's exec() does once it holds a connection to the agent: one execution relaying our
 * standard streams (stdin only when `req->interactive`), raw mode and the window size with `req->tty`,
 * signals forwarded. Same contract as struct crgw_backend's exec: 0 with `*status`, or -errno with `err`
 * and `*status` 125-127 when the command could not run (-ENOENT for 127) or the connection failed.
 */
int crgw_guest_exec(int agent_fd, const struct crgw_exec_request *req, int *status, char *err, size_t errlen);

/*
 * The same with the hello's deadline (ms; 0: none; crgw_guest_exec waits 120 s), whether the caller has
 * read the hello on `agent_fd` already, and the holder SIGTERM and SIGHUP end (`fatal_pidfd`, -1: they go
 * to the command; guest_client_opts). -ETIMEDOUT when no hello came: nothing was sent then, so the caller
 * may connect again and retry.
 */
int crgw_guest_exec_on(int agent_fd, const struct crgw_exec_request *req, int hello_timeout_ms, bool hello_seen,
		       int fatal_pidfd, int *status, char *err, size_t errlen);

#endif
