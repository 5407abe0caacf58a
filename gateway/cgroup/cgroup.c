/* SPDX-License-Identifier: Apache-2.0 */
/* Finding the hierarchies, making and removing sandbox groups: what v1 and v2 have in common. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cgroup_priv.h"

static const char *const role_names[CG_ROLES] = { "memory", "pids", "cpu", "cpuacct" };

int cg_path(char *out, size_t size, const char *dir, const char *name)
{
	int n = snprintf(out, size, "%s/%s", dir, name);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int cg_write(const char *dir, const char *name, const char *value)
{
	char path[PATH_MAX];
	size_t len = strlen(value);
	ssize_t n;
	int fd, err;

	if ((err = cg_path(path, sizeof(path), dir, name)))
		return err;
	fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	/* A control file takes one value per write(2); the kernel reports a refusal from the write. */
	n = write(fd, value, len);
	err = n < 0 ? -errno : (size_t)n != len ? -EIO : 0;
	close(fd);
	return err;
}

int cg_read(const char *dir, const char *name, char *buf, size_t size)
{
	char path[PATH_MAX];
	size_t got = 0;
	int fd, err;

	if ((err = cg_path(path, sizeof(path), dir, name)))
		return err;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	while (got + 1 < size) {
		ssize_t n = read(fd, buf + got, size - 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : 0;
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	return err;
}

int cg_read_u64(const char *dir, const char *name, uint64_t *out)
{
	char buf[64], *end;
	int err = cg_read(dir, name, buf, sizeof(buf));

	if (err)
		return err;
	if (!strncmp(buf, "max", 3)) {
		*out = UINT64_MAX;
		return 0;
	}
	errno = 0;
	*out = strtoull(buf, &end, 10);
	return errno || end == buf ? -EINVAL : 0;
}

int cg_read_keyed(const char *dir, const char *name, const char *key, uint64_t *out)
{
	char buf[4096];
	size_t klen = strlen(key);
	int err = cg_read(dir, name, buf, sizeof(buf));

	*out = 0;
	if (err)
		return err;
	for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (!strncmp(line, key, klen) && line[klen] == ' ') {
			*out = strtoull(line + klen + 1, NULL, 10);
			return 0;
		}
	return 0;
}

bool cg_exists(const char *dir, const char *name)
{
	char path[PATH_MAX];

	return cg_path(path, sizeof(path), dir, name) == 0 && access(path, F_OK) == 0;
}

const char *cg_dir(const struct crgw_cgroup *cg, enum cg_dir_role role)
{
	int i = cg->root->role_dir[role];

	return i >= 0 ? cg->dirs[i] : NULL;
}

/* ---- finding the hierarchies ------------------------------------------------------------------- */

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' &&
		    r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* True when `token` is an item of `list`, whose items are separated by `sep`. */
static bool has_item(const char *list, const char *token, char sep)
{
	size_t n = strlen(token);

	for (const char *p = list; p && *p; p = strchr(p, sep) ? strchr(p, sep) + 1 : NULL)
		if (!strncmp(p, token, n) && (p[n] == sep || p[n] == '\0' || p[n] == '\n'))
			return true;
	return false;
}

static bool has_token(const char *list, const char *token)
{
	return has_item(list, token, ',');
}

static bool has_token_spaces(const char *list, const char *token)
{
	return has_item(list, token, ' ');
}

struct hierarchy {
	bool found;
	char mount[PATH_MAX]; /* where it is mounted */
	char root[PATH_MAX];  /* which group that mount shows as its top */
};

/* The v1 mounts holding each role's controller, and the unified mount. */
static int scan_mounts(struct hierarchy v1[CG_ROLES], struct hierarchy *v2)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192];

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char *fields[16], *save = NULL, *sep;
		unsigned n = 0;

		sep = strstr(line, " - ");
		if (!sep)
			continue;
		*sep = '\0';
		for (char *t = strtok_r(line, " ", &save); t && n < 16; t = strtok_r(NULL, " ", &save))
			fields[n++] = t;
		if (n < 5)
			continue;
		char *type = strtok_r(sep + 3, " ", &save), *source = strtok_r(NULL, " ", &save);
		char *super = strtok_r(NULL, " \n", &save);

		(void)source;
		if (!type || !super)
			continue;
		unescape(fields[3]);
		unescape(fields[4]);
		if (!strcmp(type, "cgroup2") && !v2->found) {
			v2->found = true;
			snprintf(v2->mount, sizeof(v2->mount), "%s", fields[4]);
			snprintf(v2->root, sizeof(v2->root), "%s", fields[3]);
		} else if (!strcmp(type, "cgroup")) {
			for (int r = 0; r < CG_ROLES; r++)
				if (!v1[r].found && has_token(super, role_names[r])) {
					v1[r].found = true;
					snprintf(v1[r].mount, sizeof(v1[r].mount), "%s", fields[4]);
					snprintf(v1[r].root, sizeof(v1[r].root), "%s", fields[3]);
				}
		}
	}
	fclose(f);
	return 0;
}

/* This process's group in the v1 hierarchy of `controller`, or in the unified one when it is NULL. */
static int own_group(const char *controller, char *out, size_t size)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	char line[PATH_MAX + 128];
	int err = -ENOENT;

	if (!f)
		return -errno;
	while (err && fgets(line, sizeof(line), f)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		if (!c2)
			continue;
		*c2 = '\0';
		line[strcspn(line, ":")] = '\0';
		c2[1 + strcspn(c2 + 1, "\n")] = '\0';
		bool match = controller ? has_token(c1 + 1, controller) : (!strcmp(line, "0") && c1[1] == '\0');

		if (match) {
			snprintf(out, size, "%s", c2 + 1);
			err = 0;
		}
	}
	fclose(f);
	return err;
}

/* The directory of this process's group in a hierarchy mounted at h->mount showing h->root as its top. */
static int own_dir(const struct hierarchy *h, const char *group, char *out, size_t size)
{
	size_t rlen = strlen(h->root);
	const char *rel = group;
	int n;

	/* Inside a cgroup namespace or a container the mount shows a subtree: strip its top from our path. */
	if (strcmp(h->root, "/") && !strncmp(group, h->root, rlen) && (group[rlen] == '/' || !group[rlen]))
		rel = group + rlen;
	n = snprintf(out, size, "%s%s%s", h->mount, rel[0] == '/' ? "" : "/", rel);
	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	/* "/sys/fs/cgroup/memory/" for the top group: no trailing slash. */
	if (n > 1 && out[n - 1] == '/')
		out[n - 1] = '\0';
	return 0;
}

static bool valid_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 64 || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_' || *p == '.'))
			return false;
	return true;
}

static int mkdir_one(const char *path)
{
	return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -errno;
}

static int prepare_v1(struct crgw_cgroup_root *root, const struct hierarchy v1[CG_ROLES], const char *name,
		      char *err, size_t errlen)
{
	root->ops = &crgw_cgroup_v1_ops;
	for (int r = 0; r < CG_ROLES; r++) {
		char group[PATH_MAX], dir[PATH_MAX];
		int e;

		root->role_dir[r] = -1;
		if (!v1[r].found) {
			/* cpuacct only feeds the CPU figure: a host without it still gets its limits. */
			if (r == CG_CPUACCT)
				continue;
			snprintf(err, errlen, "no cgroup v1 hierarchy has the %s controller", role_names[r]);
			return -ENOENT;
		}
		if ((e = own_group(role_names[r], group, sizeof(group))) ||
		    (e = own_dir(&v1[r], group, dir, sizeof(dir)))) {
			snprintf(err, errlen, "cannot find this process's %s group: %s", role_names[r], strerror(-e));
			return e;
		}
		size_t len = strlen(dir);

		if (snprintf(dir + len, sizeof(dir) - len, "/%s", name) >= (int)(sizeof(dir) - len))
			return -ENAMETOOLONG;
		/* Co-mounted controllers (cpu,cpuacct) share one directory. */
		for (unsigned i = 0; i < root->ndirs; i++)
			if (!strcmp(root->dirs[i], dir))
				root->role_dir[r] = (int)i;
		if (root->role_dir[r] < 0) {
			if ((e = mkdir_one(dir))) {
				snprintf(err, errlen, "%s: %s", dir, strerror(-e));
				return e;
			}
			memcpy(root->dirs[root->ndirs], dir, strlen(dir) + 1);
			root->role_dir[r] = (int)root->ndirs++;
		}
	}
	return 0;
}

/*
 * The unified hierarchy lets a group enable controllers for its children only while it holds no process
 * itself. A gateway that is not at the top (a systemd service with Delegate=yes) therefore moves itself
 * into a leaf "gateway" first, then enables memory, pids and cpu for its own group and for `name`.
 */
static int prepare_v2(struct crgw_cgroup_root *root, const struct hierarchy *v2, const char *name, char *err,
		      size_t errlen)
{
	char group[PATH_MAX], own[PATH_MAX], dir[PATH_MAX], controllers[512];
	int e;

	root->ops = &crgw_cgroup_v2_ops;
	if ((e = own_group(NULL, group, sizeof(group))) || (e = own_dir(v2, group, own, sizeof(own)))) {
		snprintf(err, errlen, "cannot find this process's cgroup v2 group: %s", strerror(-e));
		return e;
	}
	if ((e = cg_read(own, "cgroup.controllers", controllers, sizeof(controllers))) ||
	    !has_token_spaces(controllers, "memory") || !has_token_spaces(controllers, "pids") ||
	    !has_token_spaces(controllers, "cpu")) {
		snprintf(err, errlen, "the unified hierarchy does not offer memory, pids and cpu to %s (it offers: %s)",
			 own, e ? strerror(-e) : controllers);
		return e ? e : -ENOENT;
	}
	if (strcmp(group, "/")) {
		char leaf[PATH_MAX];

		if (snprintf(leaf, sizeof(leaf), "%s/gateway", own) >= (int)sizeof(leaf))
			return -ENAMETOOLONG;
		if ((e = mkdir_one(leaf)) || (e = cg_write(leaf, "cgroup.procs", "0"))) {
			snprintf(err, errlen, "moving the gateway into %s: %s", leaf, strerror(-e));
			return e;
		}
	}
	if ((e = cg_write(own, "cgroup.subtree_control", "+memory +pids +cpu"))) {
		snprintf(err, errlen, "enabling memory, pids and cpu in %s: %s", own, strerror(-e));
		return e;
	}
	if (snprintf(dir, sizeof(dir), "%s/%s", own, name) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	if ((e = mkdir_one(dir)) || (e = cg_write(dir, "cgroup.subtree_control", "+memory +pids +cpu"))) {
		snprintf(err, errlen, "%s: %s", dir, strerror(-e));
		return e;
	}
	memcpy(root->dirs[0], dir, strlen(dir) + 1);
	root->ndirs = 1;
	for (int r = 0; r < CG_ROLES; r++)
		root->role_dir[r] = 0;
	return 0;
}

int crgw_cgroup_root_open(const char *name, struct crgw_cgroup_root **out, char *err, size_t errlen)
{
	struct hierarchy v1[CG_ROLES] = { 0 }, v2 = { 0 };
	struct crgw_cgroup_root *root;
	int e;

	*out = NULL;
	if (!valid_name(name)) {
		snprintf(err, errlen, "'%s' is not a usable group name", name);
		return -EINVAL;
	}
	if ((e = scan_mounts(v1, &v2))) {
		snprintf(err, errlen, "/proc/self/mountinfo: %s", strerror(-e));
		return e;
	}
	root = calloc(1, sizeof(*root));
	if (!root)
		return -ENOMEM;
	/* Hybrid hosts mount the controllers as v1 and an empty unified hierarchy beside them: v1 wins. */
	if (v1[CG_MEMORY].found || v1[CG_PIDS].found || v1[CG_CPU].found)
		e = prepare_v1(root, v1, name, err, errlen);
	else if (v2.found)
		e = prepare_v2(root, &v2, name, err, errlen);
	else {
		snprintf(err, errlen, "no cgroup file system is mounted");
		e = -ENOENT;
	}
	if (e) {
		free(root);
		return e;
	}
	if (root->ops == &crgw_cgroup_v1_ops)
		snprintf(root->describe, sizeof(root->describe), "v1 (memory, pids, cpu%s) under %s",
			 root->role_dir[CG_CPUACCT] >= 0 ? ", cpuacct" : "", root->dirs[root->role_dir[CG_MEMORY]]);
	else
		snprintf(root->describe, sizeof(root->describe), "v2 (memory, pids, cpu) under %s", root->dirs[0]);
	*out = root;
	return 0;
}

const char *crgw_cgroup_root_describe(const struct crgw_cgroup_root *root)
{
	return root->describe;
}

const char *crgw_cgroup_root_version(const struct crgw_cgroup_root *root)
{
	return root->ops->version;
}

void crgw_cgroup_root_free(struct crgw_cgroup_root *root)
{
	if (!root)
		return;
	/* Only when empty: another gateway of the same name may still use it. */
	for (unsigned i = 0; i < root->ndirs; i++)
		rmdir(root->dirs[i]);
	free(root);
}

/* ---- groups ------------------------------------------------------------------------------------- */

/* SIGKILL to every process listed in dir/cgroup.procs. Returns how many were signalled. */
static unsigned kill_listed(const char *dir)
{
	char buf[65536];
	unsigned n = 0;

	if (cg_read(dir, "cgroup.procs", buf, sizeof(buf)))
		return 0;
	for (char *p = buf; *p;) {
		char *end;
		long pid = strtol(p, &end, 10);

		if (end == p)
			break;
		if (pid > 1 && kill((pid_t)pid, SIGKILL) == 0)
			n++;
		p = *end ? end + 1 : end;
	}
	return n;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Kills everything in `dirs` and removes them, retrying while processes die. -EBUSY when time runs out. */
static int remove_dirs(const struct crgw_cgroup_root *root, char (*dirs)[PATH_MAX], unsigned ndirs,
		       unsigned wait_ms)
{
	unsigned waited = 0;
	bool left;

	for (;;) {
		left = false;
		for (unsigned i = 0; i < ndirs; i++)
			if (dirs[i][0] && root->ops->kill_dir(dirs[i]) != 0)
				kill_listed(dirs[i]);
		for (unsigned i = 0; i < ndirs; i++)
			if (dirs[i][0] && rmdir(dirs[i]) != 0) {
				if (errno == ENOENT)
					dirs[i][0] = '\0';
				else
					left = true;
			} else {
				dirs[i][0] = '\0';
			}
		if (!left || waited >= wait_ms)
			break;
		/* A killed process takes a moment to free its memory and leave its groups. */
		sleep_ms(10);
		waited += 10;
	}
	return left ? -EBUSY : 0;
}

int crgw_cgroup_create(struct crgw_cgroup_root *root, const char *name, const struct crgw_cgroup_limits *limits,
		       pid_t pid, struct crgw_cgroup **out, char *err, size_t errlen)
{
	struct crgw_cgroup *cg;
	char pidtext[24];
	int e = 0;

	*out = NULL;
	if (!valid_name(name)) {
		snprintf(err, errlen, "'%s' is not a usable group name", name);
		return -EINVAL;
	}
	cg = calloc(1, sizeof(*cg));
	if (!cg)
		return -ENOMEM;
	cg->root = root;
	cg->event_fd = -1;
	cg->aux_fd = -1;
	for (unsigned i = 0; i < root->ndirs && !e; i++) {
		if ((e = cg_path(cg->dirs[i], sizeof(cg->dirs[i]), root->dirs[i], name)))
			break;
		if (mkdir(cg->dirs[i], 0755)) {
			e = -errno;
			snprintf(err, errlen, "%s: %s", cg->dirs[i], strerror(errno));
			cg->dirs[i][0] = '\0';
			break;
		}
		cg->ndirs = i + 1;
	}
	if (!e)
		e = root->ops->apply(cg, limits, err, errlen);
	/* The process joins last, once every limit is in place: it never runs unlimited in the group. */
	snprintf(pidtext, sizeof(pidtext), "%d", (int)pid);
	for (unsigned i = 0; i < cg->ndirs && !e; i++)
		if ((e = cg_write(cg->dirs[i], "cgroup.procs", pidtext)))
			snprintf(err, errlen, "moving process %d into %s: %s", (int)pid, cg->dirs[i], strerror(-e));
	if (!e && (e = root->ops->watch(cg)))
		snprintf(err, errlen, "watching %s for OOM kills: %s", cg->dirs[0], strerror(-e));
	if (e) {
		/* Nothing may stay: the process that joined is the sandbox's, and the sandbox is not made. */
		crgw_cgroup_destroy(cg, 2000);
		return e;
	}
	*out = cg;
	return 0;
}

int crgw_cgroup_usage(const struct crgw_cgroup *cg, struct crgw_cgroup_usage *out)
{
	memset(out, 0, sizeof(*out));
	return cg->root->ops->usage(cg, out);
}

int crgw_cgroup_event_fd(const struct crgw_cgroup *cg)
{
	return cg->event_fd;
}

void crgw_cgroup_event_drain(const struct crgw_cgroup *cg)
{
	char buf[4096];

	if (cg->event_fd >= 0)
		while (read(cg->event_fd, buf, sizeof(buf)) > 0)
			;
}

int crgw_cgroup_kill(const struct crgw_cgroup *cg)
{
	for (unsigned i = 0; i < cg->ndirs; i++)
		if (cg->root->ops->kill_dir(cg->dirs[i]) != 0)
			kill_listed(cg->dirs[i]);
	return 0;
}

int crgw_cgroup_destroy(struct crgw_cgroup *cg, unsigned wait_ms)
{
	int e;

	if (!cg)
		return 0;
	e = remove_dirs(cg->root, cg->dirs, cg->ndirs, wait_ms);
	if (cg->event_fd >= 0)
		close(cg->event_fd);
	if (cg->aux_fd >= 0)
		close(cg->aux_fd);
	free(cg);
	return e;
}

size_t crgw_cgroup_dirs(const struct crgw_cgroup *cg, const char **dirs, size_t max)
{
	size_t n = 0;

	for (unsigned i = 0; i < cg->ndirs && n < max; i++)
		dirs[n++] = cg->dirs[i];
	return n;
}

int crgw_cgroup_root_sweep(struct crgw_cgroup_root *root, unsigned *removed)
{
	char names[256][65];
	unsigned nnames = 0;

	*removed = 0;
	/* Names from every hierarchy: a crash may have left a group in some and not in others. */
	for (unsigned i = 0; i < root->ndirs; i++) {
		DIR *d = opendir(root->dirs[i]);
		struct dirent *e;

		if (!d)
			continue;
		while ((e = readdir(d)) && nnames < 256) {
			bool dup = false;

			if (e->d_type != DT_DIR || !valid_name(e->d_name))
				continue;
			for (unsigned j = 0; j < nnames && !dup; j++)
				dup = !strcmp(names[j], e->d_name);
			/* valid_name() bounds the length to 64. */
			if (!dup)
				memcpy(names[nnames++], e->d_name, strlen(e->d_name) + 1);
		}
		closedir(d);
	}
	for (unsigned j = 0; j < nnames; j++) {
		char dirs[CG_DIRS_MAX][PATH_MAX];
		unsigned n = 0;

		for (unsigned i = 0; i < root->ndirs; i++)
			if (cg_path(dirs[n], sizeof(dirs[n]), root->dirs[i], names[j]) == 0 && access(dirs[n], F_OK) == 0)
				n++;
		if (remove_dirs(root, dirs, n, 2000) == 0)
			(*removed)++;
	}
	return 0;
}
