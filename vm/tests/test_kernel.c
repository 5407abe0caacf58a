/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vm-kernel: the guest's kernel unpacked from the distribution's bzImage (and refused when it is not
 * one, or damaged), its modules resolved in load order, the initramfs built and cached, and a real boot of
 * both under QEMU (TCG here, KVM where /dev/kvm works) whose init reports the guest's devices.
 *
 * Usage: test_kernel BOOT_INIT   (a static program, tests/boot_init.c). Needs the packages scripts/setup
 * installs (linux-image-amd64, qemu-system-x86); without them each case says SKIP and why.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kernel.h"
#include "tap.h"

/* snprintf for paths, without the truncation warnings: -ENAMETOOLONG when it does not fit. */
__attribute__((format(printf, 3, 4))) static int fmt_path(char *out, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, len, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

extern char **environ;

static char work[] = "/tmp/crgw-test-kernel.XXXXXX";

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void skip(const char *what, const char *why)
{
	tap_count++;
	printf("ok %u - %s # SKIP %s\n", tap_count, what, why);
}

static int copy_prefix(const char *from, const char *to, off_t len, off_t flip_at)
{
	char buf[65536];
	off_t done = 0;
	int in = open(from, O_RDONLY | O_CLOEXEC), out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ssize_t n;

	if (in < 0 || out < 0)
		return -1;
	while (done < len && (n = read(in, buf, sizeof(buf))) > 0) {
		if (n > len - done)
			n = (ssize_t)(len - done);
		if (flip_at >= done && flip_at < done + n) {
			for (off_t i = flip_at - done; i < n && i < flip_at - done + 4096; i++)
				buf[i] ^= 0x5a;
		}
		if (write(out, buf, (size_t)n) != n)
			return -1;
		done += n;
	}
	close(in);
	close(out);
	return 0;
}

static unsigned count_files(const char *dir)
{
	char cmd[512];
	unsigned n = 0;
	FILE *p;

	(void)fmt_path(cmd, sizeof(cmd), "find '%s' -type f 2>/dev/null | wc -l", dir);
	p = popen(cmd, "r");
	if (p) {
		if (fscanf(p, "%u", &n) != 1)
			n = 0;
		pclose(p);
	}
	return n;
}

/* modules.dep's dependencies of `path`, for checking the order. */
static char *deps_of(const char *modules_dir, const char *path)
{
	char f[4096], line[8192];
	size_t n = strlen(path);
	FILE *in;

	(void)fmt_path(f, sizeof(f), "%s/modules.dep", modules_dir);
	in = fopen(f, "re");
	while (in && fgets(line, sizeof(line), in)) {
		if (strncmp(line, path, n) == 0 && line[n] == ':') {
			fclose(in);
			return strdup(line + n + 1);
		}
	}
	if (in)
		fclose(in);
	return NULL;
}

struct order {
	char *paths[64];
	unsigned n;
};

static int remember(void *arg, const char *rel)
{
	struct order *o = arg;

	if (o->n == 64)
		return -E2BIG;
	o->paths[o->n++] = strdup(rel);
	return 0;
}

static void test_modules(const struct vm_kernel *k)
{
	struct order o = {.n = 0};
	const char *unknown[] = {"no_such_module_here", NULL};
	char err[512] = "";
	bool ordered = true, virtio_pci = false;
	int rc = vm_modules_resolve(k->modules_dir, vm_guest_modules, remember, &o, err, sizeof(err));

	tap_result(rc == 0 && o.n >= 5, "the guest's modules resolve (%u with dependencies) %s", o.n, err);
	for (unsigned i = 0; i < o.n; i++) {
		char *deps = deps_of(k->modules_dir, o.paths[i]), *save = NULL;

		virtio_pci |= strstr(o.paths[i], "/virtio_pci.ko") != NULL;
		for (char *t = deps ? strtok_r(deps, " \n", &save) : NULL; t; t = strtok_r(NULL, " \n", &save)) {
			bool before = false;

			for (unsigned j = 0; j < i; j++)
				before |= strcmp(o.paths[j], t) == 0;
			if (!before) {
				printf("# %s comes before its dependency %s\n", o.paths[i], t);
				ordered = false;
			}
		}
		free(deps);
	}
	tap_result(ordered && virtio_pci, "every module comes after its dependencies");
	for (unsigned i = 0; i < o.n; i++)
		free(o.paths[i]);
	o.n = 0;
	rc = vm_modules_resolve(k->modules_dir, unknown, remember, &o, err, sizeof(err));
	tap_result(rc == -ENOENT && strstr(err, "no_such_module_here"), "an unknown module is refused by name: %s",
		   err);
}

static void test_bad_kernels(const struct vm_kernel *k)
{
	char path[600], out[600], err[512];
	struct stat st;
	bool pvh;
	int rc;

	(void)fmt_path(path, sizeof(path), "%s/garbage", work);
	snprintf(out, sizeof(out), "%s/garbage.out", work);
	copy_prefix("/proc/self/exe", path, 1 << 20, -1);
	err[0] = '\0';
	rc = vm_kernel_unpack(path, out, &pvh, err, sizeof(err));
	tap_result(rc == -ENOEXEC, "a file that is not a bzImage is refused: %s", err);

	if (stat(k->bzimage, &st) != 0)
		return;
	(void)fmt_path(path, sizeof(path), "%s/truncated", work);
	copy_prefix(k->bzimage, path, st.st_size / 2, -1);
	err[0] = '\0';
	rc = vm_kernel_unpack(path, out, &pvh, err, sizeof(err));
	tap_result(rc == -ENOEXEC, "a truncated bzImage is refused: %s", err);

	(void)fmt_path(path, sizeof(path), "%s/damaged", work);
	copy_prefix(k->bzimage, path, st.st_size, st.st_size / 2);
	err[0] = '\0';
	rc = vm_kernel_unpack(path, out, &pvh, err, sizeof(err));
	tap_result(rc != 0, "a bzImage with 4 KiB of its payload damaged is refused: %s", err);
}

static bool use_kvm(void)
{
	const char *v = getenv("CRGW_VM_ACCEL");

	return v && !strcmp(v, "kvm");
}

static int run_qemu(const char *vmlinux, const char *initrd, const char *log, const char *disk, double *secs)
{
	char kernel_arg[600], initrd_arg[600], serial[600], drive[700];
	/* TCG unless asked for KVM: a /dev/kvm can be there and still not run a guest (vm/accel.c). */
	const char *accel = use_kvm() ? "kvm" : "tcg";
	char *argv[64];
	int n = 0, status = 0;
	double t0 = now_s();
	pid_t pid;

	(void)fmt_path(kernel_arg, sizeof(kernel_arg), "%s", vmlinux);
	(void)fmt_path(initrd_arg, sizeof(initrd_arg), "%s", initrd);
	(void)fmt_path(serial, sizeof(serial), "file:%s", log);
	(void)fmt_path(drive, sizeof(drive), "file=%s,if=none,id=d0,format=raw", disk);
	argv[n++] = "qemu-system-x86_64";
	argv[n++] = "-M";
	argv[n++] = "q35";
	argv[n++] = "-accel";
	argv[n++] = (char *)accel;
	argv[n++] = "-cpu";
	argv[n++] = "max";
	argv[n++] = "-m";
	argv[n++] = "256";
	argv[n++] = "-smp";
	argv[n++] = "1";
	argv[n++] = "-nodefaults";
	argv[n++] = "-no-user-config";
	argv[n++] = "-display";
	argv[n++] = "none";
	argv[n++] = "-no-reboot";
	argv[n++] = "-serial";
	argv[n++] = serial;
	argv[n++] = "-kernel";
	argv[n++] = kernel_arg;
	argv[n++] = "-initrd";
	argv[n++] = initrd_arg;
	argv[n++] = "-append";
	argv[n++] = "console=ttyS0 panic=-1 loglevel=4 mitigations=off tsc=reliable no_timer_check "
		    "rcupdate.rcu_expedited=1 i8042.noaux i8042.nokbd i8042.nopnp 8250.nr_uarts=1 "
		    "random.trust_cpu=on cryptomgr.notests";
	argv[n++] = "-device";
	argv[n++] = "virtio-serial-pci";
	argv[n++] = "-chardev";
	argv[n++] = "null,id=c0";
	argv[n++] = "-device";
	argv[n++] = "virtserialport,chardev=c0,name=crgw.0";
	argv[n++] = "-drive";
	argv[n++] = drive;
	argv[n++] = "-device";
	argv[n++] = "virtio-blk-pci,drive=d0";
	argv[n++] = "-sandbox";
	argv[n++] = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";
	argv[n] = NULL;
	if (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ) != 0)
		return -errno;
	/* Bounded: a guest that hangs is killed after three minutes. */
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid)
			break;
		if (now_s() - t0 > 180) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -ETIMEDOUT;
		}
		usleep(20000);
	}
	*secs = now_s() - t0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool log_has(const char *log, const char *what)
{
	char line[1024];
	FILE *f = fopen(log, "re");
	bool found = false;

	while (f && !found && fgets(line, sizeof(line), f))
		found = strstr(line, what) != NULL;
	if (f)
		fclose(f);
	return found;
}

/* Whether `path` is a static program (no ELF interpreter): only such an init runs from the initramfs. */
static bool is_static(const char *path)
{
	char cmd[700];

	(void)fmt_path(cmd, sizeof(cmd), "readelf -lW '%s' 2>/dev/null | grep -q 'Requesting program interpreter'",
		       path);
	return system(cmd) != 0;
}

static void test_initramfs_and_boot(const struct vm_kernel *k, const char *init)
{
	char cache[600], path[4096], path2[4096], err[512] = "", log[600], disk[600];
	struct archive *a;
	struct archive_entry *e;
	struct stat st;
	unsigned modules = 0, listed = 0;
	bool init_ok = false, console_ok = false;
	double secs = 0, t0;
	int rc, fd;

	(void)fmt_path(cache, sizeof(cache), "%s/cache", work);
	t0 = now_s();
	rc = vm_initramfs_build(cache, k, init, vm_guest_modules, NULL, 0, path, sizeof(path), err, sizeof(err));
	tap_result(rc == 0, "the initramfs is built in %.2f s %s", now_s() - t0, err);
	if (rc)
		return;
	rc = vm_initramfs_build(cache, k, init, vm_guest_modules, NULL, 0, path2, sizeof(path2), err, sizeof(err));
	(void)fmt_path(log, sizeof(log), "%s/initramfs", cache);
	tap_result(rc == 0 && strcmp(path, path2) == 0 && count_files(log) == 1,
		   "the same inputs give the cached initramfs");
	stat(init, &st);
	a = archive_read_new();
	archive_read_support_format_cpio(a);
	if (archive_read_open_filename(a, path, 65536) == ARCHIVE_OK) {
		while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
			const char *name = archive_entry_pathname(e);

			if (strcmp(name, "init") == 0)
				init_ok = archive_entry_size(e) == st.st_size && (archive_entry_mode(e) & 0111);
			else if (strcmp(name, "dev/console") == 0)
				console_ok =
				    archive_entry_filetype(e) == AE_IFCHR && archive_entry_rdev(e) == makedev(5, 1);
			else if (strncmp(name, "lib/modules/", 12) == 0 && strstr(name, ".ko"))
				modules++;
			else if (strcmp(name, "etc/crgw-guest/modules") == 0) {
				char buf[8192];
				la_ssize_t n = archive_read_data(a, buf, sizeof(buf) - 1);

				buf[n > 0 ? n : 0] = '\0';
				for (char *p = buf; (p = strchr(p, '\n')); p++)
					listed++;
			}
		}
	}
	archive_read_free(a);
	tap_result(init_ok && console_ok && modules >= 5 && listed == modules,
		   "it holds /init, /dev/console and %u modules, all %u listed in load order", modules, listed);

	if (!k->vmlinux[0]) {
		skip("a boot under QEMU", "this kernel has no PVH entry point");
		return;
	}
	if (!is_static(init)) {
		skip("a boot under QEMU", "the init is not static (a sanitizer build cannot link it so)");
		return;
	}
	if (system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0) {
		skip("a boot under QEMU", "no qemu-system-x86_64 (package qemu-system-x86)");
		return;
	}
	(void)fmt_path(log, sizeof(log), "%s/console.log", work);
	(void)fmt_path(disk, sizeof(disk), "%s/disk.img", work);
	fd = open(disk, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, 1 << 20) != 0) {
		tap_result(false, "a disk image for the guest");
		return;
	}
	close(fd);
	rc = run_qemu(k->vmlinux, path, log, disk, &secs);
	tap_result(rc == 0, "QEMU (%s) booted the guest and it powered off in %.2f s (status %d)",
		   use_kvm() ? "KVM" : "TCG", secs, rc);
	tap_result(log_has(log, "boot-init: modules loaded=") && log_has(log, "failed=0"),
		   "the init loaded every module");
	tap_result(log_has(log, "=crgw.0"), "the virtio-serial port is there by name");
	tap_result(log_has(log, " vda"), "the virtio disk is there");
	tap_result(log_has(log, "boot-init: done"), "the init ran to its end");
	if (tap_failed) {
		char cmd[700];

		(void)fmt_path(cmd, sizeof(cmd), "tail -n 30 '%s' | sed 's/^/# /'", log);
		(void)!system(cmd);
	}
}

int main(int argc, char **argv)
{
	struct vm_kernel k;
	char cache[600], err[512] = "", first[4096];
	double t0;
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: test_kernel BOOT_INIT\n");
		return 2;
	}
	if (!mkdtemp(work)) {
		perror("mkdtemp");
		return 1;
	}
	(void)fmt_path(cache, sizeof(cache), "%s/cache", work);
	t0 = now_s();
	rc = vm_kernel_prepare(cache, NULL, NULL, NULL, &k, err, sizeof(err));
	if (rc == -ENOENT) {
		skip("the distribution's kernel is unpacked", err);
		tap_result(vm_kernel_prepare(cache, NULL, NULL, "no-such-release", &k, err, sizeof(err)) == -ENOENT,
			   "a release that is not there is refused: %s", err);
	} else {
		tap_result(rc == 0 && k.vmlinux[0], "kernel %s unpacked to its ELF with a PVH entry in %.2f s %s",
			   k.release, now_s() - t0, err);
		(void)fmt_path(first, sizeof(first), "%s", k.vmlinux);
		t0 = now_s();
		rc = vm_kernel_prepare(cache, NULL, NULL, k.release, &k, err, sizeof(err));
		tap_result(rc == 0 && strcmp(first, k.vmlinux) == 0, "the second time it comes from the cache (%.3f s)",
			   now_s() - t0);
		test_bad_kernels(&k);
		test_modules(&k);
		test_initramfs_and_boot(&k, argv[1]);
	}
	{
		char cmd[700];

		(void)fmt_path(cmd, sizeof(cmd), "rm -rf '%s'", work);
		(void)!system(cmd);
	}
	return tap_done();
}
