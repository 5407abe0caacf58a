/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcrgw-vm: sandbox backends behind one small interface (create, open, exec, release, capabilities),
 * one file each (netns.c, qemu.c, firecracker.c), and what every backend shares:
 * workspaces, the seccomp filter and the terminal plumbing of an execution. Used by crgw-ctl, in the
 * calling thread; backends fork helpers but leave no thread behind.
 */
#ifndef CRGW_VM_H
#define CRGW_VM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum crgw_workspace_mode { CRGW_WS_COPY, CRGW_WS_RW, CRGW_WS_RO, CRGW_WS_NONE };

/* "copy", "rw", "ro", "none" ↔ the mode. Returns 0 or -EINVAL. */
int crgw_workspace_mode_parse(const char *text, enum crgw_workspace_mode *out);
const char *crgw_workspace_mode_name(enum crgw_workspace_mode mode);

/* What a new sandbox is made of. Every pointer is borrowed for the duration of create(). */
struct crgw_sandbox_spec {
	const char *policy_json; /* the CompiledPolicy, canonical */
	const char *run_id;      /* optional */
	bool learn;              /* learn mode (the gateway must allow it: learn.allowed) */
	const char *name;        /* optional */
	enum crgw_workspace_mode workspace_mode;
	const char *workspace_dir; /* the host directory (absolute); ignored for CRGW_WS_NONE */
	const char *memory;        /* optional limits as text: "512M"; the gateway parses and checks them */
	const char *cpus;          /* "0.5" */
	unsigned long pids;        /* 0: the operator's ceiling */
	const char *disk;          /* "10G": the size of the sandbox's own disk (limits.disk is the ceiling) */
	bool remove_on_exit;       /* --rm: the sandbox ends with the process that made it */
};

/*
 * The gateway as a backend needs it; crgw-ctl supplies these over the control API. Each returns 0 or
 * -errno with a message in `err`; `*answer` and `*record` are new JSON references the caller drops.
 */
struct crgw_gateway_ops {
	void *arg;
	/* POST /v1/sandboxes. */
	int (*register_sandbox)(void *arg, json_t *request, json_t **answer, char *err, size_t errlen);
	/* DELETE /v1/sandboxes/ID; a sandbox already gone is not an error. */
	int (*release_sandbox)(void *arg, const char *id);
	/* GET /v1/sandboxes/ID: 0 with the record; -ESRCH with the tombstone of a released one; -ENOENT. */
	int (*get_sandbox)(void *arg, const char *id, json_t **record, char *err, size_t errlen);
	/* POST /v1/sandboxes/ID/timings: what making it or a command took (sandbox show's "timings"). */
	int (*report_timings)(void *arg, const char *id, json_t *timings);
};

/* One command to run in a sandbox. */
struct crgw_exec_request {
	char *const *argv;     /* argv[0] is looked up in the sandbox's PATH */
	char *const *env;      /* NAME=VALUE pairs over the sandbox's base environment; may be NULL */
	const char *cwd;       /* NULL: /workspace, or / in a sandbox without a workspace */
	bool tty;              /* a terminal: raw mode here, a pty there, the window size kept in step */
	bool interactive;      /* our standard input reaches the command (else it reads /dev/null) */
};

/* A sandbox a backend made or found: opaque. */
struct crgw_vm_sandbox;

struct crgw_backend {
	const char *name;
	/* Makes a sandbox and registers it with the gateway; nothing is left on failure. */
	int (*create)(const struct crgw_sandbox_spec *spec, const struct crgw_gateway_ops *gw,
		      struct crgw_vm_sandbox **out, char *err, size_t errlen);
	/* Finds a running sandbox from its gateway record (borrowed). */
	int (*open)(json_t *record, struct crgw_vm_sandbox **out, char *err, size_t errlen);
	/*
	 * Runs a command in the sandbox, relaying our standard streams and signals, until it ends. `*status`
	 * is its exit code, or 128+N when it died of signal N. Returns 0, or -errno when it could not run
	 * (with `*status` 125, 126 or 127 as container runtimes use them).
	 */
	int (*exec)(struct crgw_vm_sandbox *sb, const struct crgw_exec_request *req, int *status, char *err,
		    size_t errlen);
	/* Ends the sandbox and asks the gateway to release it. */
	int (*release)(struct crgw_vm_sandbox *sb, const struct crgw_gateway_ops *gw);
	/* The backend's capability map on this host (a new JSON object). */
	json_t *(*capabilities)(void);
	void (*free)(struct crgw_vm_sandbox *sb);
};

/* Whether this host can run the qemu backend: `why` says how (accelerator, kernel, agent) or why not. */
bool crgw_qemu_available(char *why, size_t whylen);

/*
 * Whether this host can run the firecracker backend (a Firecracker binary, KVM, a kernel, the agent): `why`
 * says how (the binary, the jailer) or why not.
 */
bool crgw_firecracker_available(char *why, size_t whylen);

/* The backend called `name` ("netns"), or NULL when this build or host has none of that name. */
const struct crgw_backend *crgw_backend_find(const char *name);

/* The gateway's record of the sandbox (borrowed), its id, and its gateway address. */
json_t *crgw_vm_sandbox_record(const struct crgw_vm_sandbox *sb);
const char *crgw_vm_sandbox_id(const struct crgw_vm_sandbox *sb);

/* What making a sandbox this process created took: {"image_prep_ms", "network_ms", "boot_ms"} (new). */
json_t *crgw_vm_sandbox_timings(const struct crgw_vm_sandbox *sb);

/* ---- the seccomp filter (seccomp.c) ----------------------------------------------------------- */

/*
 * Installs the sandbox's seccomp filter on the calling thread (and sets no_new_privs): an allowlist of
 * system calls; named dangerous calls answer EPERM, clone3 and anything unknown ENOSYS. Returns 0 or -errno
 * with `err`. What it allows and refuses is listed in docs/gateway.md.
 */
int crgw_seccomp_apply(char *err, size_t errlen);

/* Whether this kernel and build can filter system calls; `why` says otherwise. */
bool crgw_seccomp_available(char *why, size_t whylen);

/* The system calls that answer EPERM, NULL-terminated (for doctor and the docs' test). */
extern const char *const crgw_seccomp_refused[];

/* ---- workspaces (workspace.c) ----------------------------------------------------------------- */

enum crgw_change_kind { CRGW_CHANGE_ADDED, CRGW_CHANGE_CHANGED, CRGW_CHANGE_DELETED };

struct crgw_change {
	enum crgw_change_kind kind;
	const char *path; /* relative to the workspace; directories end in '/' */
	bool review;      /* a place a reviewer must see first: .git internals, CI files, dotfiles */
	const char *why;  /* why it is flagged, when `review` */
};

/*
 * Lists what a copy-mode sandbox changed: `upper` is its change layer, `lower` the host directory. Calls
 * `cb` for each change in path order; never follows a link. Returns 0 or -errno.
 */
int crgw_workspace_diff(const char *lower, const char *upper,
			void (*cb)(void *arg, const struct crgw_change *change), void *arg);

/*
 * Copies `path` (absolute in the sandbox, or relative to /workspace) out of the running sandbox whose init
 * is `holder` to `host_path` (a file, or a directory to copy into). Links inside the sandbox never lead
 * outside it; set-id bits are dropped; new files belong to the caller. Returns 0 or -errno with `err`.
 */
int crgw_sandbox_copy_out(pid_t holder, const char *path, const char *host_path, char *err, size_t errlen);

/*
 * What the copy-mode sandbox of gateway record `record` (borrowed) changed in its workspace, whatever its
 * backend: a netns sandbox's change directory, or a VM's change disk once its guest has written back what
 * it holds (vm_workspace.c). Returns 0 or -errno with `err` (-EINVAL: not a copy-mode sandbox).
 */
int crgw_sandbox_changes(json_t *record, void (*cb)(void *arg, const struct crgw_change *change), void *arg,
			 char *err, size_t errlen);

/*
 * crgw_sandbox_copy_out for the sandbox of `record`, whatever its backend: a VM's files are streamed by its
 * guest agent, and checked here the same way. Returns 0 or -errno with `err`.
 */
int crgw_sandbox_copy(json_t *record, const char *path, const char *host_path, char *err, size_t errlen);

#endif
