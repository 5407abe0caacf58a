/* SPDX-License-Identifier: Apache-2.0 */
/* What cgroup.c shares with the two implementations (v1.c, v2.c). */
#ifndef CRGW_CGROUP_PRIV_H
#define CRGW_CGROUP_PRIV_H

#include <limits.h>
#include <stdbool.h>

#include "cgroup.h"

/* v1 needs up to four hierarchies (memory, pids, cpu, cpuacct); v2 one. */
#define CG_DIRS_MAX 4

enum cg_dir_role { CG_MEMORY, CG_PIDS, CG_CPU, CG_CPUACCT, CG_ROLES };

struct cgroup_ops {
	const char *version;
	/* Limits and the OOM behaviour for a freshly made group whose directories exist. */
	int (*apply)(struct crgw_cgroup *cg, const struct crgw_cgroup_limits *limits, char *err, size_t errlen);
	/* Sets up cg->event_fd (or leaves it -1). */
	int (*watch)(struct crgw_cgroup *cg);
	int (*usage)(const struct crgw_cgroup *cg, struct crgw_cgroup_usage *out);
	/* Ends every process in a group's directory at once where the kernel can (v2 cgroup.kill);
	 * -ENOTSUP where it cannot, and the caller signals the listed processes one by one. */
	int (*kill_dir)(const char *dir);
};

extern const struct cgroup_ops crgw_cgroup_v1_ops;
extern const struct cgroup_ops crgw_cgroup_v2_ops;

struct crgw_cgroup_root {
	const struct cgroup_ops *ops;
	/* Distinct directories holding this gateway's sandbox groups, and which role each serves. */
	char dirs[CG_DIRS_MAX][PATH_MAX];
	unsigned ndirs;
	int role_dir[CG_ROLES]; /* index into dirs for each role */
	char describe[PATH_MAX + 128];
};

struct crgw_cgroup {
	struct crgw_cgroup_root *root;
	char dirs[CG_DIRS_MAX][PATH_MAX];
	unsigned ndirs;
	int event_fd;
	int aux_fd; /* v1: memory.oom_control, kept open for the eventfd's registration */
};

/* dir/name, or -ENAMETOOLONG. */
int cg_path(char *out, size_t size, const char *dir, const char *name);

/* Writes `value` to dir/name. Returns 0 or -errno. */
int cg_write(const char *dir, const char *name, const char *value);

/* Reads dir/name (at most size-1 bytes), NUL-terminated. Returns 0 or -errno. */
int cg_read(const char *dir, const char *name, char *buf, size_t size);

/* Reads a single unsigned number ("max" reads as UINT64_MAX). Returns 0 or -errno. */
int cg_read_u64(const char *dir, const char *name, uint64_t *out);

/* The number after `key ` in a "key value" per line file; 0 when the key is absent. */
int cg_read_keyed(const char *dir, const char *name, const char *key, uint64_t *out);

/* The group's directory serving `role`. */
const char *cg_dir(const struct crgw_cgroup *cg, enum cg_dir_role role);

bool cg_exists(const char *dir, const char *name);

#endif
