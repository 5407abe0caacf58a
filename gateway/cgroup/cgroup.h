/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcrgw-cgroup: one control group per sandbox holding every process in it, with memory, process and CPU
 * limits, usage figures, OOM-kill counts, and an end for every process in it. Two implementations sit
 * behind this interface, the unified hierarchy (cgroup v2) and separate v1 hierarchies per controller
 * (v1.c, v2.c); callers never learn which one they have. Used by the gateway's control thread only.
 */
#ifndef CRGW_CGROUP_H
#define CRGW_CGROUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Limits of one sandbox. Zero means "no limit" for each field. */
struct crgw_cgroup_limits {
	uint64_t memory;    /* bytes, swap included (the sandbox gets no swap of its own) */
	uint64_t pids;      /* processes and threads */
	uint32_t cpu_milli; /* thousandths of a CPU: 1500 is one and a half CPUs */
};

/* What a sandbox's group has used; counters only grow. */
struct crgw_cgroup_usage {
	uint64_t memory;      /* bytes charged now (page cache included) */
	uint64_t memory_peak; /* the most ever charged, where the kernel keeps it; else 0 */
	uint64_t cpu_us;      /* CPU time of all its processes */
	uint64_t pids;        /* processes and threads now */
	uint64_t oom_kills;   /* processes the kernel killed for want of memory */
	uint64_t pids_denied; /* forks refused at the process limit */
};

struct crgw_cgroup_root;
struct crgw_cgroup;

/*
 * Finds the hierarchies that hold the memory, pids and cpu controllers (v2 when the unified hierarchy has
 * all three, else v1 with one hierarchy each) and makes `name` beneath this process's own group in each:
 * sandboxes nest inside the gateway's group, so whatever contains the gateway contains them too. Returns
 * 0 with a new root in `*out`, or -errno with `err` saying what is missing (e.g. no memory controller).
 */
int crgw_cgroup_root_open(const char *name, struct crgw_cgroup_root **out, char *err, size_t errlen);

/* A line for people: "v1 (memory, pids, cpu, cpuacct) under /sys/fs/cgroup/memory/…/crgw". Borrowed. */
const char *crgw_cgroup_root_describe(const struct crgw_cgroup_root *root);

/* "v1" or "v2". Borrowed, static. */
const char *crgw_cgroup_root_version(const struct crgw_cgroup_root *root);

/*
 * Removes groups a previous gateway left beneath the root: every process in them is killed first. Runs
 * at start, before any sandbox is registered. Returns 0 or -errno; `*removed` counts groups removed.
 */
int crgw_cgroup_root_sweep(struct crgw_cgroup_root *root, unsigned *removed);

/* Removes the root's own directories when they are empty, and frees it. Accepts NULL. */
void crgw_cgroup_root_free(struct crgw_cgroup_root *root);

/*
 * Makes the group `name` (a sandbox id) with `limits` and moves process `pid` into it, all or nothing.
 * Everything `pid` forks afterwards stays in the group. Returns 0 with a new group in `*out`, or -errno
 * with `err` filled and nothing left behind.
 */
int crgw_cgroup_create(struct crgw_cgroup_root *root, const char *name, const struct crgw_cgroup_limits *limits,
		       pid_t pid, struct crgw_cgroup **out, char *err, size_t errlen);

/* Reads the group's usage. Returns 0, or -errno when the group is gone. */
int crgw_cgroup_usage(const struct crgw_cgroup *cg, struct crgw_cgroup_usage *out);

/*
 * A descriptor that becomes readable when the group's memory events may have changed (an OOM kill among
 * them): poll it, then call crgw_cgroup_event_drain() and read the usage. -1 when there is none. Owned by
 * the group.
 */
int crgw_cgroup_event_fd(const struct crgw_cgroup *cg);
void crgw_cgroup_event_drain(const struct crgw_cgroup *cg);

/* Sends SIGKILL to every process in the group. Returns 0 or -errno. */
int crgw_cgroup_kill(const struct crgw_cgroup *cg);

/*
 * Kills what is left in the group, waits up to `wait_ms` for it to empty and removes it; frees `cg` in
 * any case. Returns 0, or -EBUSY when processes outlived the wait (the next start's sweep removes the
 * group). May block: call it off the event loop. Accepts NULL.
 */
int crgw_cgroup_destroy(struct crgw_cgroup *cg, unsigned wait_ms);

/*
 * The group's directories, one per hierarchy (so that a process joining the sandbox can write its pid
 * into each `cgroup.procs`). Returns how many; `dirs` borrows from the group.
 */
size_t crgw_cgroup_dirs(const struct crgw_cgroup *cg, const char **dirs, size_t max);

#endif
