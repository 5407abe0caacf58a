/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sandbox's seccomp filter, modelled on the container runtimes' default profile: an allowlist of the
 * system calls ordinary builds, test suites and agents make. A call the kernel has but the sandbox must
 * not use answers EPERM; clone3 and every call not listed (newer ones included) answer ENOSYS, so that
 * libraries fall back as they would on an older kernel. docs/gateway.md lists the choices and where they
 * differ from the container runtimes'.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "vm_priv.h"

/* Allowed unconditionally. Names libseccomp does not know on this architecture are skipped. */
static const char *const allowed[] = {
	"accept", "accept4", "access", "adjtimex", "alarm", "arch_prctl", "bind", "brk", "capget", "capset",
	"chdir", "chown", "chown32", "chroot", "clock_adjtime", "clock_adjtime64", "clock_getres",
	"clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
	"close", "close_range", "connect", "copy_file_range", "dup", "dup2", "dup3", "epoll_create",
	"epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait",
	"epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat",
	"faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchown", "fchown32",
	"fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
	"fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
	"ftruncate64", "futex", "futex_time64", "futex_waitv", "futimesat", "get_mempolicy", "get_robust_list",
	"get_thread_area", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid",
	"geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid",
	"getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid",
	"getresuid32", "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt", "gettid",
	"gettimeofday", "getuid", "getuid32", "getxattr", "inotify_add_watch", "inotify_init",
	"inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents",
	"io_pgetevents_time64", "io_setup", "io_submit", "ioctl", "ioprio_get", "ioprio_set", "ipc", "kcmp",
	"kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32",
	"lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek",
	"lsetxattr", "lstat", "lstat64", "madvise", "mbind", "membarrier", "memfd_create", "memfd_secret",
	"migrate_pages", "mincore", "mkdir", "mkdirat", "mlock", "mlock2", "mlockall", "mmap", "mmap2",
	"move_pages", "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
	"mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap", "msgctl",
	"msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at",
	"nanosleep", "newfstatat", "_newselect", "pause", "personality", "pidfd_getfd", "pidfd_open",
	"pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll",
	"ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_madvise",
	"process_mrelease", "process_vm_readv", "process_vm_writev", "pselect6", "pselect6_time64", "ptrace",
	"pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv",
	"recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename",
	"renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
	"rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
	"rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_get_priority_max", "sched_get_priority_min",
	"sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler", "sched_rr_get_interval",
	"sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
	"sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop", "semtimedop",
	"semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto",
	"set_mempolicy", "set_robust_list", "set_thread_area", "set_tid_address", "setdomainname", "setfsgid",
	"setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32",
	"sethostname", "setitimer", "setpgid", "setpriority", "setregid", "setregid32", "setresgid",
	"setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit", "setsid",
	"setsockopt", "setuid", "setuid32", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown",
	"sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socket", "socketcall",
	"socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat",
	"sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
	"timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
	"timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
	"timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname",
	"unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4",
	"waitid", "waitpid", "write", "writev",
};

/*
 * Refused with EPERM: kernel attack surface a build does not need (BPF, perf, userfaultfd, keyrings,
 * modules, kexec, io_uring, handle-based opens), the host's clock, swap and reboot, and every way to mount
 * a new file system or to unmount one (the sandbox's mounts are made before the filter; unmounting its
 * /proc or /tmp would only uncover empty directories, but there is no reason to let it try).
 */
const char *const crgw_seccomp_refused[] = {
	"bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "kexec_load",
	"kexec_file_load", "init_module", "finit_module", "delete_module", "open_by_handle_at",
	"io_uring_setup", "io_uring_enter", "io_uring_register", "umount", "umount2", "pivot_root",
	"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "setns",
	"acct", "swapon", "swapoff", "reboot", "settimeofday", "clock_settime", "clock_settime64", "stime",
	"syslog", "quotactl", "quotactl_fd", "fanotify_init", "lookup_dcookie", "vhangup", "iopl", "ioperm",
	"uselib", "nfsservctl", "create_module", "get_kernel_syms", "query_module", "ustat", "sysfs",
	"_sysctl", "modify_ldt", "vm86", "vm86old", NULL,
};

static int add(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n, const struct scmp_arg_cmp *cmp)
{
	int nr = seccomp_syscall_resolve_name(name);

	if (nr == __NR_SCMP_ERROR)
		return 0; /* not a call of this architecture (or newer than libseccomp): ENOSYS by default */
	return seccomp_rule_add_array(ctx, action, nr, n, cmp);
}

/*
 * Calls whose arguments decide. libseccomp lets an unconditional rule win over a conditional one, so
 * every call here gets disjoint conditional rules, one comparison per argument.
 */
static int add_conditional(scmp_filter_ctx ctx)
{
	const uint32_t EPERM_ = SCMP_ACT_ERRNO(EPERM), ALLOW = SCMP_ACT_ALLOW;
	int err = 0;

	/* New user namespaces: refused (the sandbox's own is its one); everything else clone does is fine. */
	for (int i = 0; i < 2 && !err; i++) {
		const char *name = i ? "unshare" : "clone";
		struct scmp_arg_cmp no = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, 0);
		struct scmp_arg_cmp yes = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER);

		err = add(ctx, ALLOW, name, 1, &no);
		if (!err)
			err = add(ctx, EPERM_, name, 1, &yes);
	}
	/*
	 * mount(2) may bind, remount and change propagation inside the sandbox, never make a new file system:
	 * seccomp cannot read the type string, so every new mount is refused, whatever its type. The kernel
	 * tries those operations in this order, so MS_MOVE never applies while one of these bits is set.
	 */
	static const unsigned long mount_ok[] = { MS_BIND, MS_REMOUNT, MS_SHARED, MS_PRIVATE, MS_SLAVE, MS_UNBINDABLE };
	const unsigned long any_ok = MS_BIND | MS_REMOUNT | MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE;

	for (size_t i = 0; i < sizeof(mount_ok) / sizeof(mount_ok[0]) && !err; i++) {
		struct scmp_arg_cmp c = SCMP_A3(SCMP_CMP_MASKED_EQ, mount_ok[i], mount_ok[i]);

		err = add(ctx, ALLOW, "mount", 1, &c);
	}
	if (!err) {
		struct scmp_arg_cmp c = SCMP_A3(SCMP_CMP_MASKED_EQ, any_ok, 0);

		err = add(ctx, EPERM_, "mount", 1, &c);
	}
	/*
	 * No set-user-ID or set-group-ID file: in rw mode the sandbox writes as the directory's owner, who may
	 * be root, and such a file would be a way up for any user of the host who can run it. The mode
	 * argument is checked where it is always meaningful; open and openat only with O_CREAT or O_TMPFILE,
	 * whose mode argument is otherwise whatever the register held.
	 */
	static const struct {
		const char *name;
		unsigned mode_arg;
	} modes[] = { { "chmod", 1 }, { "fchmod", 1 }, { "fchmodat", 2 }, { "creat", 1 }, { "mknod", 1 }, { "mknodat", 2 } };
	const unsigned long setid = S_ISUID | S_ISGID;

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]) && !err; i++) {
		struct scmp_arg_cmp ok = { modes[i].mode_arg, SCMP_CMP_MASKED_EQ, setid, 0 };
		struct scmp_arg_cmp uid = { modes[i].mode_arg, SCMP_CMP_MASKED_EQ, S_ISUID, S_ISUID };
		struct scmp_arg_cmp gid = { modes[i].mode_arg, SCMP_CMP_MASKED_EQ, S_ISGID, S_ISGID };

		err = add(ctx, ALLOW, modes[i].name, 1, &ok);
		if (!err)
			err = add(ctx, EPERM_, modes[i].name, 1, &uid);
		if (!err)
			err = add(ctx, EPERM_, modes[i].name, 1, &gid);
	}
	static const struct {
		const char *name;
		unsigned flags_arg;
	} opens[] = { { "open", 1 }, { "openat", 2 } };
	const unsigned long creating = O_CREAT | __O_TMPFILE;

	for (size_t i = 0; i < 2 && !err; i++) {
		unsigned fa = opens[i].flags_arg, ma = fa + 1;
		struct scmp_arg_cmp plain = { fa, SCMP_CMP_MASKED_EQ, creating, 0 };
		struct scmp_arg_cmp sane = { ma, SCMP_CMP_MASKED_EQ, setid, 0 };

		err = add(ctx, ALLOW, opens[i].name, 1, &plain);
		if (!err)
			err = add(ctx, ALLOW, opens[i].name, 1, &sane);
		for (int f = 0; f < 2 && !err; f++)
			for (int m = 0; m < 2 && !err; m++) {
				unsigned long flag = f ? __O_TMPFILE : O_CREAT, bit = m ? S_ISGID : S_ISUID;
				struct scmp_arg_cmp c[2] = { { fa, SCMP_CMP_MASKED_EQ, flag, flag },
							     { ma, SCMP_CMP_MASKED_EQ, bit, bit } };

				err = add(ctx, EPERM_, opens[i].name, 2, c);
			}
	}
	return err;
}

static int build(scmp_filter_ctx *out, char *err, size_t errlen)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(ENOSYS));
	int e = 0;

	*out = NULL;
	if (!ctx) {
		snprintf(err, errlen, "seccomp_init failed");
		return -ENOMEM;
	}
	/* 32-bit and x32 programs get the same rules, not a way around them. */
	if (seccomp_arch_native() == SCMP_ARCH_X86_64) {
		seccomp_arch_add(ctx, SCMP_ARCH_X86);
		seccomp_arch_add(ctx, SCMP_ARCH_X32);
	}
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]) && !e; i++) {
		e = add(ctx, SCMP_ACT_ALLOW, allowed[i], 0, NULL);
		if (e)
			snprintf(err, errlen, "seccomp rule for %s: %s", allowed[i], strerror(-e));
	}
	for (size_t i = 0; crgw_seccomp_refused[i] && !e; i++) {
		e = add(ctx, SCMP_ACT_ERRNO(EPERM), crgw_seccomp_refused[i], 0, NULL);
		if (e)
			snprintf(err, errlen, "seccomp rule for %s: %s", crgw_seccomp_refused[i], strerror(-e));
	}
	/*
	 * clone3 passes its flags in memory the filter cannot read: it gets the default ENOSYS (libseccomp
	 * refuses a rule whose action is the default), which makes libc use clone instead.
	 */
	if (!e && (e = add_conditional(ctx)))
		snprintf(err, errlen, "seccomp argument rules: %s", strerror(-e));
	if (e) {
		seccomp_release(ctx);
		return e;
	}
	*out = ctx;
	return 0;
}

int crgw_seccomp_apply(char *err, size_t errlen)
{
	scmp_filter_ctx ctx;
	int e = build(&ctx, err, errlen);

	if (e)
		return e;
	/* no_new_privs too (libseccomp's default): a set-uid program inside gains nothing. */
	e = seccomp_load(ctx);
	if (e)
		snprintf(err, errlen, "loading the seccomp filter: %s", strerror(-e));
	seccomp_release(ctx);
	return e;
}

bool crgw_seccomp_available(char *why, size_t whylen)
{
	scmp_filter_ctx ctx;
	int e;

	if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0) {
		snprintf(why, whylen, "the kernel has no seccomp: %s", strerror(errno));
		return false;
	}
	e = build(&ctx, why, whylen);
	if (e)
		return false;
	seccomp_release(ctx);
	snprintf(why, whylen, "libseccomp %u.%u.%u, %zu calls allowed, %zu refused with EPERM",
		 seccomp_version()->major, seccomp_version()->minor, seccomp_version()->micro,
		 sizeof(allowed) / sizeof(allowed[0]), sizeof(crgw_seccomp_refused) / sizeof(char *) - 1);
	return true;
}
