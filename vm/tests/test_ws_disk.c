/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A VM's workspace disks without a VM: the copy of a directory (its files, links, owners and root
 * directory as on the host, no lost+found), the modes a VM refuses, and sandbox diff over change disks
 * made here as the guest's overlay would leave them (whiteouts, an opaque directory) and over disks that
 * are damaged or forged. Needs root (mknod of whiteouts) and mke2fs; skips otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tap.h"
#include "vm_priv.h"

static char top[64], got[4096];

static void run(const char *fmt, const char *arg)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), fmt, top, arg);
	if (system(cmd) != 0)
		fprintf(stderr, "# failed: %s\n", cmd);
}

static void collect(void *arg, const struct crgw_change *c)
{
	size_t n = strlen(got);

	(void)arg;
	snprintf(got + n, sizeof(got) - n, "%c%c %s;", c->review ? '!' : ' ', "ACD"[c->kind], c -> path);
}

/* The debugfs listing of `what` on `disk`, into `out`. */
static void debugfs(const char *disk, const char *what, char *out, size_t len)
{
	char cmd[512];
	FILE *p;
	size_t n;

	snprintf(cmd, sizeof(cmd), "debugfs -R '%s' '%s' 2>/dev/null", what, disk);
	p = popen(cmd, "r");
	n = p ? fread(out, 1, len - 1, p) : 0;
	out[n] = '\0';
	if (p)
		pclose(p);
}

int main(void)
{
	struct crgw_sandbox_spec spec = {0};
	struct vm_ws ws;
	char err[600], path[PATH_MAX + 64], data[128], lower[128], listing[4096];
	int e;

	if (geteuid() != 0 || system("command -v mke2fs >/dev/null && command -v debugfs >/dev/null") != 0) {
		printf("1..0 # SKIP needs root and e2fsprogs (mke2fs, debugfs)\n");
		return 0;
	}
	snprintf(top, sizeof(top), "/tmp/crgw-ws-disk.XXXXXX");
	if (!mkdtemp(top))
		return 1;
	snprintf(lower, sizeof(lower), "%s/repo", top);
	snprintf(data, sizeof(data), "%s/data", top);
	run("mkdir -p %s/repo/src %s/data", top);
	run("cd %s/repo && echo hello >README && echo 'int x;' >src/a.c && ln -s README link%s", "");
	run("cd %s/repo && chown 4321:4322 src/a.c && chown 1000:1001 . && chmod 0750 .%s", "");

	/* What a VM may not have. */
	spec.workspace_mode = CRGW_WS_RW;
	spec.workspace_dir = lower;
	e = vm_ws_check(&ws, &spec, "qemu", err, sizeof(err));
	tap_result(e == -EOPNOTSUPP && strstr(err, "rw"), "rw is refused: a VM cannot share the directory (%s)", err);
	spec.workspace_mode = CRGW_WS_COPY;
	spec.workspace_dir = "/";
	e = vm_ws_check(&ws, &spec, "qemu", err, sizeof(err));
	tap_result(e == -EINVAL, "the host's root is not a workspace (%s)", err);
	snprintf(path, sizeof(path), "%s/README", lower);
	spec.workspace_dir = path;
	e = vm_ws_check(&ws, &spec, "qemu", err, sizeof(err));
	tap_result(e == -ENOTDIR, "a file is not a workspace (%s)", err);
	spec.workspace_dir = top;
	e = vm_ws_check(&ws, &spec, "qemu", err, sizeof(err));
	e = e ? e : vm_ws_make_disks(&ws, data, err, sizeof(err));
	tap_result(e == -ELOOP, "a workspace that holds the data directory is refused (%s)", err);

	/* The copy. */
	spec.workspace_dir = lower;
	e = vm_ws_check(&ws, &spec, "qemu", err, sizeof(err));
	e = e ? e : vm_ws_make_disks(&ws, data, err, sizeof(err));
	tap_result(e == 0 && ws.upper[0] && access(ws.upper, F_OK) == 0, "copy mode makes both disks (%s)",
		   e ? err : ws.lower);
	debugfs(ws.lower, "ls -l /", listing, sizeof(listing));
	tap_result(strstr(listing, "README") && strstr(listing, "link") && strstr(listing, "40750 (2)   1000   1001") &&
		       !strstr(listing, "lost+found"),
		   "the copy has the files, the root directory's owner and mode, and no lost+found");
	debugfs(ws.lower, "stat /src/a.c", listing, sizeof(listing));
	tap_result(strstr(listing, "User:  4321") && strstr(listing, "Group:  4322"), "owners are kept");
	snprintf(path, sizeof(path), "e2fsck -fn '%s' >/dev/null 2>&1", ws.lower);
	tap_result(system(path) == 0, "the copy is a clean file system after lost+found went (e2fsck -fn)");
	debugfs(ws.upper, "stats", listing, sizeof(listing));
	tap_result(strstr(listing, "crgw-ws-upper") && !strstr(listing, "has_journal"),
		   "the change disk is labelled for the guest and has no journal (the host reads it live)");
	unlink(ws.lower);
	unlink(ws.upper);
	/* A caller whose PATH lacks the sbin directories (sudo's secure_path aside) still finds mke2fs. */
	char *saved = getenv("PATH") ? strdup(getenv("PATH")) : NULL;

	setenv("PATH", "/nonexistent", 1);
	spec.workspace_mode = CRGW_WS_RO;
	e = vm_ws_check(&ws, &spec, "qemu", err, sizeof(err));
	e = e ? e : vm_ws_make_disks(&ws, data, err, sizeof(err));
	if (saved)
		setenv("PATH", saved, 1);
	free(saved);
	tap_result(e == 0 && !ws.upper[0], "ro mode makes the copy only (and finds mke2fs without PATH: %s)",
		   e ? err : "found");
	unlink(ws.lower);

	/* A data directory too small for the copy: refused before anything is written, saying why. */
	char small[128];

	snprintf(small, sizeof(small), "%s/small", top);
	mkdir(small, 0700);
	if (mount("tmpfs", small, "tmpfs", 0, "size=1m") == 0) {
		run("head -c 4194304 /dev/zero >%s/repo/big%s", "");
		spec.workspace_mode = CRGW_WS_COPY;
		e = vm_ws_check(&ws, &spec, "qemu", err, sizeof(err));
		e = e ? e : vm_ws_make_disks(&ws, small, err, sizeof(err));
		snprintf(listing, sizeof(listing), "[ -z \"$(ls -A '%s')\" ]", small);
		tap_result(e == -ENOSPC && strstr(err, "does not fit") && system(listing) == 0,
			   "a workspace that does not fit in the data directory is refused, nothing left (%s)", err);
		umount(small);
		run("rm -f %s/repo/big%s", "");
	} else {
		tap_result(false, "mounting a 1 MiB tmpfs for the full-disk case: %s", strerror(errno));
	}

	/* sandbox diff over a change disk as the guest's overlay leaves it. */
	run("cd %s && mkdir -p seed/upper/src seed/upper/new seed/work && echo y >seed/upper/README%s", "");
	run("cd %s && echo z >seed/upper/src/b.c && echo n >seed/upper/new/f && mknod seed/upper/link c 0 0%s", "");
	snprintf(path, sizeof(path), "%s/seed/upper/src", top);
	setxattr(path, "trusted.overlay.opaque", "y", 1, 0);
	run("cd %s && truncate -s 4M changes.ext4 && mke2fs -q -F -t ext4 -O ^has_journal -d seed changes.ext4%s", "");
	snprintf(path, sizeof(path), "%s/changes.ext4", top);
	got[0] = '\0';
	e = vm_ws_diff(path, lower, data, collect, NULL, err, sizeof(err));
	tap_result(e == 0 && !strcmp(got, " C README; D link; A new/; A new/f; D src/a.c; A src/b.c;"),
		   "changed, deleted (a whiteout), replaced (an opaque directory) and added entries: %s", got);
	snprintf(listing, sizeof(listing), "ls -A '%s' | grep -q diff", data);
	tap_result(system(listing) != 0, "the scratch mirror is removed after");

	/* Disks that are no change disk at all. */
	run("cd %s && rm -rf seed/upper && truncate -s 4M empty.ext4 && mke2fs -q -F -t ext4 -d seed empty.ext4%s", "");
	snprintf(path, sizeof(path), "%s/empty.ext4", top);
	got[0] = '\0';
	e = vm_ws_diff(path, lower, data, collect, NULL, err, sizeof(err));
	tap_result(e == 0 && !got[0], "a disk without the overlay's directory has no changes yet");
	run("cd %s && head -c 1048576 /dev/urandom >noise.ext4%s", "");
	snprintf(path, sizeof(path), "%s/noise.ext4", top);
	e = vm_ws_diff(path, lower, data, collect, NULL, err, sizeof(err));
	tap_result(e != 0 && strstr(err, "reading the changes"), "random bytes are a clear error (%s)", err);
	run("cd %s && cp changes.ext4 bent.ext4 && dd if=/dev/urandom of=bent.ext4 bs=1024 seek=2 count=200 "
	    "conv=notrunc "
	    "2>/dev/null%s",
	    "");
	snprintf(path, sizeof(path), "%s/bent.ext4", top);
	e = vm_ws_diff(path, lower, data, collect, NULL, err, sizeof(err));
	snprintf(listing, sizeof(listing), "ls -A '%s' | grep -q diff", data);
	tap_result(system(listing) != 0, "a disk with its metadata overwritten ends cleanly, its mirror removed (%s)",
		   e ? err : "it still read");
	snprintf(path, sizeof(path), "%s/missing.ext4", top);
	e = vm_ws_diff(path, lower, data, collect, NULL, err, sizeof(err));
	tap_result(e != 0, "a missing disk is an error (%s)", err);

	run("rm -rf '%s'%s", "");
	return tap_done();
}
