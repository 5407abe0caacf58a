/* SPDX-License-Identifier: Apache-2.0 */
/*
 * KVM or TCG for the qemu backend. /dev/kvm being there is not enough: a nested or paravirtualized KVM
 * can refuse a model-specific register QEMU sets for `-cpu host` (QEMU then aborts), or fail to emulate
 * an instruction the guest kernel runs early (the guest then stops with a register dump and QEMU waits
 * forever). Either way every launch would wait out the boot timeout. So before the first KVM launch
 * since the host booted, a guest is booted under KVM once: the same kernel and initramfs, whose init is
 * busybox told to print a word. The guest printing it is what "KVM works" means here, and the answer is
 * kept in the cache directory for the rest of the host's uptime.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kernel.h"
#include "vm_priv.h"

#define PROBE_HALF1 "crgw-kvm-"
#define PROBE_HALF2 "probe-ok"
#define PROBE_WORD PROBE_HALF1 PROBE_HALF2
#define PROBE_FILE "kvm-probe"

/* A working KVM boots this far in well under a second; a stuck guest never does. */
int vm_accel_probe_timeout_ms = 15000;

enum accel_mode { ACCEL_AUTO, ACCEL_KVM, ACCEL_TCG, ACCEL_INVALID };

/* CRGW_VM_ACCEL: unset or empty is auto. */
static enum accel_mode accel_mode(void)
{
	const char *v = getenv("CRGW_VM_ACCEL");

	if (!v || !*v || !strcmp(v, "auto"))
		return ACCEL_AUTO;
	if (!strcmp(v, "kvm"))
		return ACCEL_KVM;
	return strcmp(v, "tcg") ? ACCEL_INVALID : ACCEL_TCG;
}

static void accel_invalid(char *why, size_t whylen)
{
	(void)vm_fmt(why, whylen, "CRGW_VM_ACCEL=%.64s: not kvm, tcg or auto", getenv("CRGW_VM_ACCEL"));
}

/* This boot of the host ("" when unknown). */
static void read_boot_id(char *out, size_t len)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	out[0] = '\0';
	if (f) {
		if (!fgets(out, (int)len, f))
			out[0] = '\0';
		fclose(f);
	}
	out[strcspn(out, "\n")] = '\0';
}

/* What the answer depends on: this boot of the host, the kernel, the initramfs and QEMU's binary. */
static int probe_key(const char *qemu, const struct vm_kernel *k, const char *initrd, char *out, size_t len)
{
	char boot_id[64];
	struct stat st;

	read_boot_id(boot_id, sizeof(boot_id));
	if (!boot_id[0])
		return -ENOENT;
	if (stat(qemu, &st))
		return -errno;
	return vm_fmt(out, len, "%s %s %s %s %lld.%09ld %lld", boot_id, k->vmlinux, initrd, qemu,
		      (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (long long)st.st_size);
}

/* An answer line ("kvm", or "tcg REASON"): 1, or 0 with `why`, or -ENOENT for anything else. */
static int parse_answer(char *line, char *why, size_t whylen)
{
	line[strcspn(line, "\n")] = '\0';
	if (!strcmp(line, "kvm"))
		return 1;
	if (strncmp(line, "tcg ", 4))
		return -ENOENT;
	(void)vm_fmt(why, whylen, "%s", line + 4);
	return 0;
}

/*
 * The remembered answer whose key line passes `match`: 1 (KVM works), 0 (it does not, `why` says so),
 * -ENOENT (none).
 */
static int probe_recall(const char *path, bool (*match)(const char *line, const char *want), const char *want,
			char *why, size_t whylen)
{
	char line[PATH_MAX * 3 + 256];
	FILE *f = fopen(path, "re");
	int r = -ENOENT;

	if (!f)
		return -ENOENT;
	if (fgets(line, sizeof(line), f) && (line[strcspn(line, "\n")] = '\0', match(line, want)) &&
	    fgets(line, sizeof(line), f))
		r = parse_answer(line, why, whylen);
	fclose(f);
	return r;
}

/* The answer for exactly this key. */
static bool key_is(const char *line, const char *key)
{
	return !strcmp(line, key);
}

/* An answer of this boot of the host, whatever kernel it was for. */
static bool same_boot(const char *line, const char *boot_id)
{
	size_t n = strlen(boot_id);

	return !strncmp(line, boot_id, n) && line[n] == ' ';
}

static void probe_remember(const char *path, const char *key, bool works, const char *why)
{
	char tmp[PATH_MAX];
	FILE *f;
	int fd;

	if (vm_fmt(tmp, sizeof(tmp), "%s.XXXXXX", path) || (fd = mkstemp(tmp)) < 0)
		return;
	/* Readable by all: doctor need not be root to show it. */
	f = fchmod(fd, 0644) ? NULL : fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(tmp);
		return;
	}
	fprintf(f, "%s\n%s%s%s\n", key, works ? "kvm" : "tcg", works ? "" : " ", works ? "" : why);
	/* Only a whole answer replaces the old one; a lost one only means probing again. */
	if (fclose(f) || rename(tmp, path))
		unlink(tmp);
}

/* Boots the guest under KVM once. Returns whether it printed the word; `why` says what happened if not. */
static bool probe_run(const char *qemu, const struct vm_kernel *k, const char *initrd, char *why, size_t whylen)
{
	char out[PATH_MAX], tail[400];
	/* clang-format off: pairs of option and value read best side by side */
	const char *argv[] = {
	    qemu,
	    "-M",
	    VM_QEMU_MACHINE,
	    "-accel",
	    "kvm",
	    "-cpu",
	    VM_QEMU_KVM_CPU,
	    "-m",
	    "128",
	    "-smp",
	    "1",
	    "-nodefaults",
	    "-no-user-config",
	    "-display",
	    "none",
	    "-no-reboot",
	    "-serial",
	    "stdio",
	    "-kernel",
	    k->vmlinux,
	    "-initrd",
	    initrd,
	    /*
	     * busybox as init: it prints the word and exits, the kernel panics and resets. The word is given
	     * in two halves, so the command line itself, should it be logged, never holds it.
	     */
	    "-append",
	    "console=ttyS0 panic=-1 quiet mitigations=off tsc=reliable no_timer_check 8250.nr_uarts=1 "
	    "rdinit=/bin/busybox -- printf %s%s\\n " PROBE_HALF1 " " PROBE_HALF2,
	    NULL,
	};
	/* clang-format on */
	double deadline = vm_now_ms() + vm_accel_probe_timeout_ms;
	bool printed = false, timed_out = false;
	char buf[65536];
	ssize_t n = 0;
	off_t size;
	int fd, status = 0;
	pid_t pid, parent = getpid();

	/* Unlinked at once: a crgw-ctl killed mid-probe leaves nothing in the cache directory. */
	if (vm_fmt(out, sizeof(out), "%s/%s.out.XXXXXX", vm_cache_dir(), PROBE_FILE) || (fd = mkstemp(out)) < 0) {
		(void)vm_fmt(why, whylen, "cannot make a file for the probe's output in %s", vm_cache_dir());
		return false;
	}
	unlink(out);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

		/* A stuck guest's QEMU would wait forever: it goes with a crgw-ctl that is killed. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent || null < 0 || dup2(null, 0) < 0 ||
		    dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		execvp(qemu, (char *const *)argv);
		_exit(127);
	}
	if (pid < 0) {
		(void)vm_fmt(why, whylen, "cannot start %s: %s", qemu, strerror(errno));
		close(fd);
		return false;
	}
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid || (w < 0 && errno != EINTR))
			break;
		if (vm_now_ms() > deadline) {
			timed_out = true;
			kill(pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			break;
		}
		nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
	}
	/* The end of what QEMU and the guest wrote: the word, or QEMU's last complaint. */
	size = lseek(fd, 0, SEEK_END);
	if (size > 0)
		n = pread(fd, buf, sizeof(buf) - 1, size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	printed = n > 0 && memmem(buf, (size_t)n, PROBE_WORD, sizeof(PROBE_WORD) - 1) != NULL;
	if (!printed) {
		size_t w = 0, from = n > 300 ? (size_t)n - 300 : 0;

		/* One line for a log or doctor: control characters become blanks, runs of blanks one. */
		for (size_t r = from; r < (size_t)(n > 0 ? n : 0) && w < sizeof(tail) - 1; r++) {
			char c = (unsigned char)buf[r] < 0x20 || buf[r] == 0x7f ? ' ' : buf[r];

			if (c != ' ' || (w && tail[w - 1] != ' '))
				tail[w++] = c;
		}
		while (w && tail[w - 1] == ' ')
			w--;
		tail[w] = '\0';
		if (timed_out)
			(void)vm_fmt(why, whylen, "a guest under KVM did not boot within %.1f s%s%s",
				     vm_accel_probe_timeout_ms / 1000.0, tail[0] ? ": " : "", tail);
		else
			(void)vm_fmt(why, whylen, "a guest did not boot under KVM (QEMU's %s %d)%s%s",
				     WIFEXITED(status) ? "exit status" : "signal",
				     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), tail[0] ? ": " : "",
				     tail);
	}
	return printed;
}

int vm_accel_choose(const char *qemu, const struct vm_kernel *k, const char *initrd, bool *kvm, char *why,
		    size_t whylen)
{
	char key[PATH_MAX * 3 + 128], path[PATH_MAX];
	int r;

	why[0] = '\0';
	*kvm = false;
	switch (accel_mode()) {
	case ACCEL_TCG:
		return 0;
	case ACCEL_KVM:
		*kvm = true;
		return 0;
	case ACCEL_INVALID:
		accel_invalid(why, whylen);
		return -EINVAL;
	case ACCEL_AUTO:
		break;
	}
	if (access("/dev/kvm", R_OK | W_OK))
		return 0;
	if (vm_fmt(path, sizeof(path), "%s/%s", vm_cache_dir(), PROBE_FILE) ||
	    probe_key(qemu, k, initrd, key, sizeof(key)))
		return 0; /* cannot remember, so probe every time */
	r = probe_recall(path, key_is, key, why, whylen);
	if (r < 0) {
		r = probe_run(qemu, k, initrd, why, whylen);
		probe_remember(path, key, r, why);
	}
	*kvm = r == 1;
	return 0;
}

bool vm_kvm_known_broken(char *why, size_t whylen)
{
	char path[PATH_MAX], boot_id[64];

	why[0] = '\0';
	if (accel_mode() == ACCEL_KVM)
		return false;
	read_boot_id(boot_id, sizeof(boot_id));
	if (!boot_id[0] || vm_fmt(path, sizeof(path), "%s/%s", vm_cache_dir(), PROBE_FILE))
		return false;
	return probe_recall(path, same_boot, boot_id, why, whylen) == 0;
}

bool vm_accel_expected(char *why, size_t whylen)
{
	char path[PATH_MAX], boot_id[64];
	int r;

	why[0] = '\0';
	switch (accel_mode()) {
	case ACCEL_TCG:
		(void)vm_fmt(why, whylen, "CRGW_VM_ACCEL=tcg");
		return false;
	case ACCEL_KVM:
		(void)vm_fmt(why, whylen, "CRGW_VM_ACCEL=kvm");
		return true;
	case ACCEL_INVALID:
		accel_invalid(why, whylen);
		return false;
	case ACCEL_AUTO:
		break;
	}
	if (access("/dev/kvm", R_OK | W_OK)) {
		(void)vm_fmt(why, whylen, "no /dev/kvm");
		return false;
	}
	read_boot_id(boot_id, sizeof(boot_id));
	r = !boot_id[0] || vm_fmt(path, sizeof(path), "%s/%s", vm_cache_dir(), PROBE_FILE)
		? -ENOENT
		: probe_recall(path, same_boot, boot_id, why, whylen);
	if (r < 0)
		(void)vm_fmt(why, whylen, "/dev/kvm present, not yet tried");
	return r != 0;
}
