/* SPDX-License-Identifier: Apache-2.0 */
/* Sandbox groups on the unified hierarchy (cgroup v2): one directory with memory, pids and cpu. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "cgroup_priv.h"

static int set_text(const char *dir, const char *name, const char *text, char *err, size_t errlen)
{
	int e = cg_write(dir, name, text);

	if (e)
		snprintf(err, errlen, "%s/%s = %s: %s", dir, name, text, strerror(-e));
	return e;
}

static int v2_apply(struct crgw_cgroup *cg, const struct crgw_cgroup_limits *lim, char *err, size_t errlen)
{
	const char *dir = cg->dirs[0];
	char text[48];
	int e = 0;

	if (lim->memory) {
		snprintf(text, sizeof(text), "%" PRIu64, lim->memory);
		e = set_text(dir, "memory.max", text, err, errlen);
		/* No swap: the limit is on what the sandbox holds (see v1.c). Absent without swap support. */
		if (!e && cg_exists(dir, "memory.swap.max"))
			e = set_text(dir, "memory.swap.max", "0", err, errlen);
	}
	/* One OOM kill ends the whole group, as the v1 path does from the gateway's event handler. */
	if (!e && cg_exists(dir, "memory.oom.group"))
		e = set_text(dir, "memory.oom.group", "1", err, errlen);
	if (!e && lim->pids) {
		snprintf(text, sizeof(text), "%" PRIu64, lim->pids);
		e = set_text(dir, "pids.max", text, err, errlen);
	}
	if (!e && lim->cpu_milli) {
		snprintf(text, sizeof(text), "%" PRIu64 " 100000", (uint64_t)lim->cpu_milli * 100);
		e = set_text(dir, "cpu.max", text, err, errlen);
	}
	return e;
}

/* memory.events announces its changes as file modifications, which inotify reports. */
static int v2_watch(struct crgw_cgroup *cg)
{
	char path[PATH_MAX];
	int e;

	if ((e = cg_path(path, sizeof(path), cg->dirs[0], "memory.events")))
		return e;
	cg->event_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (cg->event_fd < 0)
		return -errno;
	if (inotify_add_watch(cg->event_fd, path, IN_MODIFY) < 0)
		return -errno;
	return 0;
}

static int v2_usage(const struct crgw_cgroup *cg, struct crgw_cgroup_usage *out)
{
	const char *dir = cg->dirs[0];
	int e;

	if ((e = cg_read_u64(dir, "memory.current", &out->memory)))
		return e;
	cg_read_u64(dir, "memory.peak", &out->memory_peak);
	cg_read_keyed(dir, "memory.events", "oom_kill", &out->oom_kills);
	cg_read_keyed(dir, "cpu.stat", "usage_usec", &out->cpu_us);
	cg_read_u64(dir, "pids.current", &out->pids);
	cg_read_keyed(dir, "pids.events", "max", &out->pids_denied);
	return 0;
}

static int v2_kill_dir(const char *dir)
{
	/* cgroup.kill (Linux 5.14) ends every process at once, with no window for a fork to escape. */
	return cg_exists(dir, "cgroup.kill") ? cg_write(dir, "cgroup.kill", "1") : -ENOTSUP;
}

const struct cgroup_ops crgw_cgroup_v2_ops = {
	.version = "v2",
	.apply = v2_apply,
	.watch = v2_watch,
	.usage = v2_usage,
	.kill_dir = v2_kill_dir,
};
