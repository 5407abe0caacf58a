/* SPDX-License-Identifier: Apache-2.0 */
/*
 * KVM or TCG (vm/accel.c): CRGW_VM_ACCEL, and the probe that boots a guest under KVM once per boot of the
 * host. The probe's QEMU here is a script standing in for it (a guest that boots, a QEMU that aborts, one
 * that only echoes its command line): what is tested is the decision and what is remembered, not KVM. The
 * real probe runs in e2e-qemu. The probe cases need a usable /dev/kvm (the decision never probes without
 * one); without it only the rest runs.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernel.h"
#include "tap.h"
#include "vm_priv.h"

static char top[64];

static void write_script(const char *name, const char *body)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", top, name);
	f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f, "#!/bin/sh\necho run >>%s/%s.runs\nprintf '%%s\\n' \"$@\" >%s/%s.argv\n%s\n", top, name, top, name,
		body);
	fclose(f);
	chmod(path, 0755);
}

static int runs_of(const char *name)
{
	char path[PATH_MAX];
	size_t len = 0;
	char *s;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s.runs", top, name);
	s = tap_read_file(path, &len);
	for (size_t i = 0; s && i < len; i++)
		n += s[i] == '\n';
	free(s);
	return n;
}

static bool argv_has(const char *name, const char *line)
{
	char path[PATH_MAX], want[512];
	size_t len = 0;
	char *s;
	bool has;

	snprintf(path, sizeof(path), "%s/%s.argv", top, name);
	snprintf(want, sizeof(want), "\n%s\n", line);
	s = tap_read_file(path, &len);
	has = s && strstr(s, want);
	free(s);
	return has;
}

static int choose(const char *qemu_name, bool *kvm, char *why, size_t whylen)
{
	struct vm_kernel k = {0};
	char qemu[PATH_MAX];

	snprintf(k.vmlinux, sizeof(k.vmlinux), "%s/vmlinux", top);
	snprintf(qemu, sizeof(qemu), "%s/%s", top, qemu_name);
	return vm_accel_choose(qemu, &k, "/nonexistent/initrd", kvm, why, whylen);
}

int main(void)
{
	char why[600], cache[128], path[PATH_MAX + 16], boot_id[64] = "";
	bool kvm = false;
	size_t len = 0;
	char *s;
	int e;

	snprintf(top, sizeof(top), "/tmp/crgw-accel.XXXXXX");
	if (!mkdtemp(top))
		return 1;
	snprintf(cache, sizeof(cache), "%s/cache", top);
	mkdir(cache, 0755);
	setenv("CRGW_VM_CACHE", cache, 1);
	/* A guest that boots: busybox's printf of the two halves, as the console shows it. */
	write_script("qemu-good", "printf 'SeaBIOS\\r\\ncrgw-kvm-probe-ok\\r\\n'; exit 0");
	/* QEMU refusing the host's CPU under a nested KVM. */
	write_script("qemu-abort", "echo 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69' >&2; exit 134");
	/* A kernel that logs its command line and resets: the word is never whole there. */
	write_script("qemu-echo", "printf '%s\\n' \"$*\"; exit 0");
	/* A guest stopped with a register dump, and QEMU waiting (exec: the pid is QEMU's own). */
	snprintf(path, sizeof(path), "echo $$ >%s/qemu-hang.pid; echo 'KVM internal error RIP=0000'; exec sleep 30",
		 top);
	write_script("qemu-hang", path);

	setenv("CRGW_VM_ACCEL", "tcg", 1);
	kvm = true;
	e = choose("qemu-good", &kvm, why, sizeof(why));
	tap_result(e == 0 && !kvm && runs_of("qemu-good") == 0, "CRGW_VM_ACCEL=tcg: TCG, nothing tried (%d)", e);
	setenv("CRGW_VM_ACCEL", "kvm", 1);
	e = choose("qemu-abort", &kvm, why, sizeof(why));
	tap_result(e == 0 && kvm && runs_of("qemu-abort") == 0, "CRGW_VM_ACCEL=kvm: KVM as asked, nothing tried (%d)",
		   e);
	setenv("CRGW_VM_ACCEL", "hvf", 1);
	e = choose("qemu-good", &kvm, why, sizeof(why));
	tap_result(e == -EINVAL && strstr(why, "CRGW_VM_ACCEL=hvf: not kvm, tcg or auto"),
		   "another value is refused: %s", why);
	setenv("CRGW_VM_ACCEL", "auto", 1);

	if (access("/dev/kvm", R_OK | W_OK)) {
		e = choose("qemu-good", &kvm, why, sizeof(why));
		tap_result(e == 0 && !kvm && runs_of("qemu-good") == 0, "no usable /dev/kvm: TCG without a probe (%s)",
			   why);
		printf("# no usable /dev/kvm here: the probe's cases need one\n");
		goto out;
	}
	s = tap_read_file("/proc/sys/kernel/random/boot_id", &len);
	if (s)
		snprintf(boot_id, sizeof(boot_id), "%.36s", s);
	free(s);

	kvm = vm_accel_expected(why, sizeof(why));
	tap_result(kvm && strstr(why, "not yet tried"), "doctor's view before any launch: KVM, not yet tried (%s)",
		   why);
	e = choose("qemu-good", &kvm, why, sizeof(why));
	tap_result(e == 0 && kvm && runs_of("qemu-good") == 1,
		   "auto: a guest that boots under KVM means KVM (%d, %d run)", e, runs_of("qemu-good"));
	tap_result(argv_has("qemu-good", "kvm") && argv_has("qemu-good", "host") && argv_has("qemu-good", "-no-reboot"),
		   "the probe asks for KVM with the host's CPU, as a launch does, and no reboot");
	e = choose("qemu-good", &kvm, why, sizeof(why));
	tap_result(e == 0 && kvm && runs_of("qemu-good") == 1, "the second launch uses the remembered answer (%d run)",
		   runs_of("qemu-good"));
	snprintf(path, sizeof(path), "%s/kvm-probe", cache);
	s = tap_read_file(path, &len);
	tap_result(s && boot_id[0] && !strncmp(s, boot_id, 36) && strstr(s, "\nkvm\n"),
		   "the answer is kept with this boot's id: %.60s", s ? s : "(none)");
	free(s);

	/* Another QEMU binary is another question. */
	e = choose("qemu-abort", &kvm, why, sizeof(why));
	tap_result(e == 0 && !kvm && strstr(why, "failed to set MSR") && runs_of("qemu-abort") == 1,
		   "a QEMU that aborts under KVM means TCG, with its words: %s", why);
	e = choose("qemu-abort", &kvm, why, sizeof(why));
	tap_result(e == 0 && !kvm && strstr(why, "failed to set MSR") && runs_of("qemu-abort") == 1,
		   "remembered, reason and all, without trying again (%d run)", runs_of("qemu-abort"));
	kvm = vm_accel_expected(why, sizeof(why));
	tap_result(!kvm && strstr(why, "failed to set MSR"), "doctor's view: this boot's last answer (%s)", why);

	e = choose("qemu-echo", &kvm, why, sizeof(why));
	tap_result(e == 0 && !kvm, "a command line that names the word is no guest saying it (%s)", why);

	/* A guest that stops and a QEMU that waits: ended at the deadline, and nothing of it left behind. */
	vm_accel_probe_timeout_ms = 1000;
	e = choose("qemu-hang", &kvm, why, sizeof(why));
	tap_result(e == 0 && !kvm && strstr(why, "did not boot within 1.0 s") && strstr(why, "RIP=0000"),
		   "a QEMU still waiting at the deadline means TCG, with its last words: %s", why);
	{
		char pidfile[PATH_MAX];
		size_t plen = 0;
		char *pid;
		long n;

		snprintf(pidfile, sizeof(pidfile), "%s/qemu-hang.pid", top);
		pid = tap_read_file(pidfile, &plen);
		n = pid ? strtol(pid, NULL, 10) : 0;
		tap_result(n > 0 && n < INT_MAX && kill((pid_t)n, 0) && errno == ESRCH,
			   "the waiting QEMU was ended (pid %s)", pid ? pid : "?");
		free(pid);
	}
	snprintf(path, sizeof(path), "ls %s | grep -q out", cache);
	tap_result(system(path) != 0, "no probe output file is left in the cache directory");

	/* A damaged answer file is no answer: probed again. */
	snprintf(path, sizeof(path), "%s/kvm-probe", cache);
	{
		FILE *f = fopen(path, "w");

		if (f) {
			fputs("garbage\n", f);
			fclose(f);
		}
	}
	e = choose("qemu-good", &kvm, why, sizeof(why));
	tap_result(e == 0 && kvm && runs_of("qemu-good") == 2, "a damaged answer file is tried again (%d runs)",
		   runs_of("qemu-good"));
out:
	snprintf(path, sizeof(path), "rm -rf %s", top);
	if (system(path) != 0)
		printf("# could not remove %s\n", top);
	return tap_done();
}
