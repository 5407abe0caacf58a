/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tries each system call the sandbox's seccomp filter must refuse, and some it must allow, and prints TAP.
 * Run under the filter: by test_seccomp (the filter alone) and inside a real sandbox by the end-to-end
 * test. Every refused call is made with arguments that would do no harm if the filter let it through.
 * usage: syscall_probe WRITABLE-DIR
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <stdbool.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned n, failed;

static void expect(const char *what, long rc, int err, int want)
{
	bool ok = want ? (rc == -1 && err == want) : rc >= 0;

	n++;
	failed += !ok;
	printf("%s %u - %s %s (got %s)\n", ok ? "ok" : "not ok", n, what,
	       want == EPERM ? "answers EPERM" : want == ENOSYS ? "answers ENOSYS" : "works",
	       rc >= 0 ? "success" : strerror(err));
}

#define TRY(what, want, call)                          \
	do {                                           \
		errno = 0;                             \
		long rc_ = (long)(call);               \
		expect((what), rc_, errno, (want));    \
	} while (0)

static void *thread_main(void *arg)
{
	return arg;
}

int main(int argc, char **argv)
{
	char path[4096], target[4096];
	int sv[2];

	if (argc != 2) {
		fprintf(stderr, "usage: syscall_probe WRITABLE-DIR\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/probe-file", argv[1]);
	snprintf(target, sizeof(target), "%s/probe-dir", argv[1]);
	mkdir(target, 0755);
	unlink(path);

	/* Refused with EPERM. Arguments are invalid or harmless, should one get through. */
	TRY("bpf", EPERM, syscall(SYS_bpf, 0, NULL, 0));
	TRY("perf_event_open", EPERM, syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
	TRY("userfaultfd", EPERM, syscall(SYS_userfaultfd, 0));
	TRY("keyctl", EPERM, syscall(SYS_keyctl, 0, 0, 0, 0, 0));
	TRY("add_key", EPERM, syscall(SYS_add_key, "user", "crgw-probe", "x", 1, -2));
	TRY("request_key", EPERM, syscall(SYS_request_key, "user", "crgw-probe", NULL, 0));
	TRY("kexec_load", EPERM, syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL));
	TRY("kexec_file_load", EPERM, syscall(SYS_kexec_file_load, -1, -1, 0, NULL, 0xdead0000UL));
	TRY("init_module", EPERM, syscall(SYS_init_module, NULL, 0, ""));
	TRY("finit_module", EPERM, syscall(SYS_finit_module, -1, "", 0));
	TRY("delete_module", EPERM, syscall(SYS_delete_module, "crgw_no_such_module", 0));
	TRY("open_by_handle_at", EPERM, syscall(SYS_open_by_handle_at, -1, NULL, 0));
	TRY("io_uring_setup", EPERM, syscall(SYS_io_uring_setup, 0, NULL));
	TRY("unshare(CLONE_NEWUSER)", EPERM, syscall(SYS_unshare, CLONE_NEWUSER));
	errno = 0;
	long cl = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, 0);

	if (cl == 0)
		_exit(0); /* the filter let it through: the child must not run the rest */
	expect("clone(CLONE_NEWUSER)", cl, errno, EPERM);
	if (cl > 0)
		waitpid((pid_t)cl, NULL, 0);
	TRY("mount of a new tmpfs", EPERM, mount("tmpfs", target, "tmpfs", 0, "size=1m"));
	TRY("mount of a new proc", EPERM, mount("proc", target, "proc", 0, NULL));
	TRY("fsopen", EPERM, syscall(SYS_fsopen, "tmpfs", 0));
	TRY("umount2", EPERM, umount2("/crgw-no-such-mount", 0));
	TRY("pivot_root", EPERM, syscall(SYS_pivot_root, "/crgw-none", "/crgw-none"));
	TRY("setns", EPERM, setns(-1, 0));
	TRY("chmod to set-user-ID", EPERM, chmod(target, 04755));
	TRY("open(O_CREAT) set-user-ID", EPERM, open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 04755));

	/* clone3 answers ENOSYS, so that libc falls back to clone, whose flags the filter reads. */
	struct clone_args ca = { .exit_signal = SIGCHLD };

	errno = 0;
	cl = syscall(SYS_clone3, &ca, sizeof(ca));
	if (cl == 0)
		_exit(0);
	expect("clone3", cl, errno, ENOSYS);
	if (cl > 0)
		waitpid((pid_t)cl, NULL, 0);

	/* Allowed: what builds and tools need. */
	TRY("socketpair(AF_UNIX)", 0, socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	TRY("socket(AF_NETLINK)", 0, socket(AF_NETLINK, SOCK_RAW, 0));
	TRY("open(O_CREAT) 0644", 0, open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	TRY("chmod 0755", 0, chmod(path, 0755));
	pthread_t t;

	TRY("pthread_create (clone3 falls back to clone)", 0, -pthread_create(&t, NULL, thread_main, NULL));
	pthread_join(t, NULL);
	pid_t child = fork();

	if (child == 0)
		_exit(0);
	TRY("fork", 0, child);
	waitpid(child, NULL, 0);
	TRY("memfd_create", 0, syscall(SYS_memfd_create, "probe", 0));
	unlink(path);
	rmdir(target);
	printf("1..%u\n", n);
	return failed ? 1 : 0;
}
