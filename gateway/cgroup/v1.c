/* SPDX-License-Identifier: Apache-2.0 */
/* Sandbox groups on cgroup v1: one hierarchy each for memory, pids, cpu (and cpuacct for CPU time). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cgroup_priv.h"

static int set_u64(const char *dir, const char *name, uint64_t v, char *err, size_t errlen)
{
	char text[32];
	int e;

	snprintf(text, sizeof(text), "%" PRIu64, v);
	e = cg_write(dir, name, text);
	if (e)
		snprintf(err, errlen, "%s/%s = %s: %s", dir, name, text, strerror(-e));
	return e;
}

static int v1_apply(struct crgw_cgroup *cg, const struct crgw_cgroup_limits *lim, char *err, size_t errlen)
{
	const char *mem = cg_dir(cg, CG_MEMORY), *pids = cg_dir(cg, CG_PIDS), *cpu = cg_dir(cg, CG_CPU);
	int e = 0;

	if (lim->memory) {
		e = set_u64(mem, "memory.limit_in_bytes", lim->memory, err, errlen);
		/*
		 * With swap accounting, memory+swap gets the same ceiling: the limit is on what the sandbox
		 * holds, and swapping would only let it hold more, slowly. memsw must not be below the memory
		 * limit, so it is written second.
		 */
		if (!e && cg_exists(mem, "memory.memsw.limit_in_bytes"))
			e = set_u64(mem, "memory.memsw.limit_in_bytes", lim->memory, err, errlen);
	}
	if (!e && lim->pids)
		e = set_u64(pids, "pids.max", lim->pids, err, errlen);
	if (!e && lim->cpu_milli) {
		e = set_u64(cpu, "cpu.cfs_period_us", 100000, err, errlen);
		if (!e)
			e = set_u64(cpu, "cpu.cfs_quota_us", (uint64_t)lim->cpu_milli * 100, err, errlen);
	}
	return e;
}

/* v1 announces OOM through an eventfd registered with cgroup.event_control against memory.oom_control. */
static int v1_watch(struct crgw_cgroup *cg)
{
	const char *mem = cg_dir(cg, CG_MEMORY);
	char path[PATH_MAX], line[64];
	int e;

	if ((e = cg_path(path, sizeof(path), mem, "memory.oom_control")))
		return e;
	cg->aux_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (cg->aux_fd < 0)
		return -errno;
	cg->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (cg->event_fd < 0)
		return -errno;
	snprintf(line, sizeof(line), "%d %d", cg->event_fd, cg->aux_fd);
	return cg_write(mem, "cgroup.event_control", line);
}

static int v1_usage(const struct crgw_cgroup *cg, struct crgw_cgroup_usage *out)
{
	const char *mem = cg_dir(cg, CG_MEMORY), *pids = cg_dir(cg, CG_PIDS), *acct = cg_dir(cg, CG_CPUACCT);
	uint64_t ns = 0;
	int e;

	if ((e = cg_read_u64(mem, "memory.usage_in_bytes", &out->memory)))
		return e;
	cg_read_u64(mem, "memory.max_usage_in_bytes", &out->memory_peak);
	cg_read_keyed(mem, "memory.oom_control", "oom_kill", &out->oom_kills);
	cg_read_u64(pids, "pids.current", &out->pids);
	cg_read_keyed(pids, "pids.events", "max", &out->pids_denied);
	if (acct && cg_read_u64(acct, "cpuacct.usage", &ns) == 0)
		out->cpu_us = ns / 1000;
	return 0;
}

static int v1_kill_dir(const char *dir)
{
	(void)dir;
	return -ENOTSUP;
}

const struct cgroup_ops crgw_cgroup_v1_ops = {
	.version = "v1",
	.apply = v1_apply,
	.watch = v1_watch,
	.usage = v1_usage,
	.kill_dir = v1_kill_dir,
};
