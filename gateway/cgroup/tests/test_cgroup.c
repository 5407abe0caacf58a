/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcrgw-cgroup against the machine's real hierarchies (v1 on the test machines): limits land in the
 * kernel's files, a process and its children stay in the group, the pids limit refuses forks, an
 * allocation past the memory limit is OOM-killed and announced, kill and destroy leave nothing. Needs root.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "tap.h"

/* A child that waits on a pipe and then does `what`; returns its pid. */
static pid_t child(int *go, void (*what)(void))
{
	int p[2];
	pid_t pid;

	if (pipe(p))
		return -1;
	pid = fork();
	if (pid == 0) {
		char c;

		close(p[1]);
		if (read(p[0], &c, 1) == 1 && what)
			what();
		_exit(0);
	}
	close(p[0]);
	*go = p[1];
	return pid;
}

static void fork_many(void)
{
	unsigned ok = 0;

	for (int i = 0; i < 40; i++) {
		pid_t p = fork();

		if (p == 0) {
			sleep(2);
			_exit(0);
		}
		if (p > 0)
			ok++;
	}
	_exit(ok == 40 ? 0 : 3);
}

static void eat_memory(void)
{
	/*
	 * Straight from the kernel (a sanitizer's allocator would fail its own way first), and every page
	 * touched: a mapping alone is not charged.
	 */
	char *p = mmap(NULL, 256u << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		_exit(4);
	for (size_t off = 0; off < (256u << 20); off += 4096)
		p[off] = 1;
	_exit(0);
}

static bool file_has(const char *dir, const char *name, const char *want)
{
	char path[4200], buf[256] = "";
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	return strncmp(buf, want, strlen(want)) == 0;
}

static bool in_group(pid_t pid, const char *name)
{
	char path[64], buf[4096];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, name) != NULL;
}

int main(void)
{
	struct crgw_cgroup_root *root = NULL;
	struct crgw_cgroup *cg = NULL, *oom = NULL;
	struct crgw_cgroup_usage u;
	char name[64], err[512] = "";
	const char *dirs[4];
	size_t ndirs;
	int go, status, e;
	pid_t pid;

	if (geteuid() != 0) {
		printf("1..0 # SKIP needs root\n");
		return 0;
	}
	snprintf(name, sizeof(name), "crgw_test_%d", (int)getpid());
	e = crgw_cgroup_root_open(name, &root, err, sizeof(err));
	tap_result(e == 0, "the hierarchies are found (%s)", e ? err : crgw_cgroup_root_describe(root));
	if (e)
		return tap_done();
	tap_result(crgw_cgroup_root_open("../x", &(struct crgw_cgroup_root *){ NULL }, err, sizeof(err)) == -EINVAL,
		   "a name with a slash is refused");

	/* Limits land in the kernel's files, and the process joins. */
	pid = child(&go, fork_many);
	struct crgw_cgroup_limits lim = { .memory = 64u << 20, .pids = 16, .cpu_milli = 500 };

	e = crgw_cgroup_create(root, "sbx-one", &lim, pid, &cg, err, sizeof(err));
	tap_result(e == 0, "a group is made with limits and the process joins (%s)", e ? err : "ok");
	if (e)
		goto out;
	ndirs = crgw_cgroup_dirs(cg, dirs, 4);
	tap_result(ndirs >= 1, "the group has %zu directories", ndirs);
	bool limits_set = false;

	for (size_t i = 0; i < ndirs; i++)
		limits_set |= file_has(dirs[i], "memory.limit_in_bytes", "67108864") ||
			      file_has(dirs[i], "memory.max", "67108864");
	tap_result(limits_set, "the memory limit is in the kernel's file");
	bool pids_set = false, cpu_set = false;

	for (size_t i = 0; i < ndirs; i++) {
		pids_set |= file_has(dirs[i], "pids.max", "16");
		cpu_set |= file_has(dirs[i], "cpu.cfs_quota_us", "50000") || file_has(dirs[i], "cpu.max", "50000 100000");
	}
	tap_result(pids_set, "the process limit is in the kernel's file");
	tap_result(cpu_set, "the CPU quota is in the kernel's file (half a CPU)");
	tap_result(in_group(pid, "sbx-one"), "the process is in the group");
	e = crgw_cgroup_usage(cg, &u);
	tap_result(e == 0 && u.pids == 1, "usage counts one process (%llu)", (unsigned long long)u.pids);

	/* The child forks 40 sleepers under a limit of 16: some forks must fail, and are counted. */
	if (write(go, "g", 1) != 1)
		goto out;
	close(go);
	waitpid(pid, &status, 0);
	tap_result(WIFEXITED(status) && WEXITSTATUS(status) == 3, "forks past the pids limit fail inside");
	crgw_cgroup_usage(cg, &u);
	tap_result(u.pids_denied > 0, "refused forks are counted (%llu)", (unsigned long long)u.pids_denied);
	tap_result(u.pids > 0, "the sleepers are in the group (%llu)", (unsigned long long)u.pids);
	crgw_cgroup_kill(cg);
	tap_result(crgw_cgroup_destroy(cg, 3000) == 0, "destroy kills the sleepers and removes the group");
	cg = NULL;
	bool gone = true;

	for (size_t i = 0; i < ndirs; i++)
		gone &= access(dirs[i], F_OK) != 0;
	tap_result(gone, "no directory of the group is left");

	/* Past the memory limit: the kernel kills, the event descriptor wakes, the kill is counted. */
	pid = child(&go, eat_memory);
	lim = (struct crgw_cgroup_limits){ .memory = 32u << 20 };
	e = crgw_cgroup_create(root, "sbx-oom", &lim, pid, &oom, err, sizeof(err));
	tap_result(e == 0 && crgw_cgroup_event_fd(oom) >= 0, "a group with an OOM watch is made (%s)", e ? err : "ok");
	if (e)
		goto out;
	if (write(go, "g", 1) != 1)
		goto out;
	close(go);
	waitpid(pid, &status, 0);
	tap_result(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "an allocation past the limit is killed");
	struct pollfd pfd = { .fd = crgw_cgroup_event_fd(oom), .events = POLLIN };

	tap_result(poll(&pfd, 1, 5000) == 1, "the event descriptor announces it");
	crgw_cgroup_event_drain(oom);
	crgw_cgroup_usage(oom, &u);
	tap_result(u.oom_kills >= 1, "the OOM kill is counted (%llu)", (unsigned long long)u.oom_kills);
	tap_result(u.memory_peak > (16u << 20), "the peak is recorded (%llu bytes)", (unsigned long long)u.memory_peak);
	tap_result(crgw_cgroup_destroy(oom, 3000) == 0, "the OOM group is removed");
	oom = NULL;

	/* A process that is gone cannot join: nothing is left. */
	e = crgw_cgroup_create(root, "sbx-gone", &lim, 4194303, &cg, err, sizeof(err));
	tap_result(e != 0 && cg == NULL, "a missing process fails the create (%s)", err);
	cg = NULL;

	/* A crash's leftovers: a group with a live process, found and removed by the sweep. */
	pid = child(&go, NULL);
	e = crgw_cgroup_create(root, "sbx-left", &lim, pid, &cg, err, sizeof(err));
	ndirs = e ? 0 : crgw_cgroup_dirs(cg, dirs, 4);
	char kept[4][4200];

	for (size_t i = 0; i < ndirs; i++)
		snprintf(kept[i], sizeof(kept[i]), "%s", dirs[i]);
	free(cg); /* forgotten, as by a gateway that died */
	cg = NULL;
	unsigned removed = 0;

	crgw_cgroup_root_sweep(root, &removed);
	gone = removed == 1;
	for (size_t i = 0; i < ndirs; i++)
		gone &= access(kept[i], F_OK) != 0;
	tap_result(e == 0 && gone, "the sweep kills a leftover group's process and removes it (%u)", removed);
	waitpid(pid, &status, 0);
	tap_result(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "... the process was killed");
	close(go);
out:
	crgw_cgroup_destroy(cg, 2000);
	crgw_cgroup_destroy(oom, 2000);
	crgw_cgroup_root_free(root);
	return tap_done();
}
