/* SPDX-License-Identifier: Apache-2.0 */
/* The table of backends and what every backend reads from the gateway's record of a sandbox. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vm_priv.h"

extern const struct crgw_backend crgw_backend_netns;
extern const struct crgw_backend crgw_backend_qemu;
extern const struct crgw_backend crgw_backend_firecracker;

static const struct crgw_backend *const backends[] = {&crgw_backend_netns, &crgw_backend_qemu,
						      &crgw_backend_firecracker};

const struct crgw_backend *crgw_backend_find(const char *name)
{
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (!strcmp(backends[i]->name, name))
			return backends[i];
	return NULL;
}

json_t *crgw_vm_sandbox_record(const struct crgw_vm_sandbox *sb)
{
	return sb->record;
}

const char *crgw_vm_sandbox_id(const struct crgw_vm_sandbox *sb)
{
	return sb->id;
}

/*
 * A disk the gateway mounted must be what the sandbox writes into: a crgw-ctl in another mount namespace
 * than the gateway's would find the bare directory beneath it, with no limit, and must refuse rather than
 * fill the host.
 */
int vm_disk_check(json_t *record, char *err, size_t errlen)
{
	const char *data_dir = json_string_value(json_object_get(record, "data_dir"));
	char parent[PATH_MAX + 4];
	struct stat a, b;

	if (!json_is_object(json_object_get(record, "disk")) || !data_dir)
		return 0;
	snprintf(parent, sizeof(parent), "%s/..", data_dir);
	if (stat(data_dir, &a) || stat(parent, &b) || a.st_dev == b.st_dev) {
		snprintf(err, errlen,
			 "the sandbox's disk is not mounted on %s here (is crgw-ctl in another mount namespace than "
			 "the gateway?)",
			 data_dir);
		return -ENOTDIR;
	}
	return 0;
}

int vm_sandbox_from_record(struct crgw_vm_sandbox *sb, json_t *record, char *err, size_t errlen)
{
	const char *id = json_string_value(json_object_get(record, "id"));
	const char *gw = json_string_value(json_object_get(record, "gateway"));
	const char *mode = json_string_value(json_object_get(json_object_get(record, "workspace"), "mode"));
	json_t *dirs = json_object_get(record, "cgroup_dirs"), *d;
	size_t i;

	if (!id || !gw || strlen(id) >= sizeof(sb->id) || strlen(gw) >= sizeof(sb->gateway)) {
		snprintf(err, errlen, "unexpected answer from the gateway (no id or gateway address)");
		return -EINVAL;
	}
	memcpy(sb->id, id, strlen(id) + 1);
	memcpy(sb->gateway, gw, strlen(gw) + 1);
	sb->holder = (pid_t)json_integer_value(json_object_get(record, "holder_pid"));
	sb->workspace_mode = CRGW_WS_NONE;
	if (mode && crgw_workspace_mode_parse(mode, &sb->workspace_mode)) {
		snprintf(err, errlen, "unexpected workspace mode '%s' in the gateway's record", mode);
		return -EINVAL;
	}
	json_array_foreach(dirs, i, d)
	{
		const char *s = json_string_value(d);

		if (!s || s[0] != '/' || sb->ncgroup_dirs == CGROUP_DIRS_MAX)
			continue;
		if (!(sb->cgroup_dirs[sb->ncgroup_dirs] = strdup(s)))
			return -ENOMEM;
		sb->ncgroup_dirs++;
	}
	json_decref(sb->record);
	sb->record = json_incref(record);
	return 0;
}

void vm_sandbox_clear(struct crgw_vm_sandbox *sb)
{
	for (size_t i = 0; i < sb->ncgroup_dirs; i++)
		free(sb->cgroup_dirs[i]);
	sb->ncgroup_dirs = 0;
	json_decref(sb->record);
	sb->record = NULL;
	if (sb->holder_pidfd >= 0)
		close(sb->holder_pidfd);
	sb->holder_pidfd = -1;
}

int vm_map_ids(pid_t pid, unsigned inside_uid, unsigned inside_gid, unsigned outside, unsigned count)
{
	static const char *const files[] = {"uid_map", "gid_map"};

	for (int i = 0; i < 2; i++) {
		char path[64], map[64];
		int fd, err = 0,
			n = snprintf(map, sizeof(map), "%u %u %u\n", i ? inside_gid : inside_uid, outside, count);

		snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, files[i]);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		/* The kernel takes a map in one write, once. */
		if (write(fd, map, (size_t)n) != n)
			err = -errno;
		close(fd);
		if (err)
			return err;
	}
	return 0;
}

void vm_registration_add_common(json_t *req, const struct crgw_sandbox_spec *spec)
{
	json_t *limits = json_object();

	if (spec->run_id)
		json_object_set_new(req, "run_id", json_string(spec->run_id));
	if (spec->name)
		json_object_set_new(req, "name", json_string(spec->name));
	if (spec->learn)
		json_object_set_new(req, "learn", json_true());
	if (limits && spec->memory)
		json_object_set_new(limits, "memory", json_string(spec->memory));
	if (limits && spec->cpus)
		json_object_set_new(limits, "cpus", json_string(spec->cpus));
	if (limits && spec->pids)
		json_object_set_new(limits, "pids", json_integer((json_int_t)spec->pids));
	if (limits && spec->disk)
		json_object_set_new(limits, "disk", json_string(spec->disk));
	if (limits && json_object_size(limits))
		json_object_set_new(req, "limits", limits);
	else
		json_decref(limits);
}

int vm_release_holder(struct crgw_vm_sandbox *sb, const struct crgw_gateway_ops *gw)
{
	int e = gw ? gw->release_sandbox(gw->arg, sb->id) : -ENOTCONN;

	/* The gateway ends the holder; without it (or when it is gone), we do: nothing of the sandbox stays. */
	if (sb->holder_pidfd >= 0)
		syscall(SYS_pidfd_send_signal, sb->holder_pidfd, SIGKILL, NULL, 0);
	if (sb->owned && sb->holder > 0)
		while (waitpid(sb->holder, NULL, 0) < 0 && errno == EINTR)
			;
	return e;
}

double vm_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

json_t *crgw_vm_sandbox_timings(const struct crgw_vm_sandbox *sb)
{
	return json_pack("{s:I, s:I, s:I}", "image_prep_ms", (json_int_t)(sb->timings[0] + 0.5), "network_ms",
			 (json_int_t)(sb->timings[1] + 0.5), "boot_ms", (json_int_t)(sb->timings[2] + 0.5));
}

void vm_report_timings(struct crgw_vm_sandbox *sb, const struct crgw_gateway_ops *gw, const char *how)
{
	json_t *t = crgw_vm_sandbox_timings(sb);

	if (t && gw->report_timings)
		(void)gw->report_timings(gw->arg, sb->id, t);
	json_decref(t);
	if (getenv("CRGW_VM_TIMINGS"))
		fprintf(stderr, "crgw-ctl: %s: image %.0f ms, network %.0f ms, boot to agent ready %.0f ms%s%s%s\n",
			sb->id, sb->timings[0], sb->timings[1], sb->timings[2], how ? " (" : "", how ? how : "",
			how ? ")" : "");
}
