/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The seccomp filter on its own: a child in a private mount namespace takes the filter and runs the
 * probe, whose TAP lines pass through. Needs root (so that the refusals are the filter's, not the
 * kernel's permission checks).
 * usage: test_seccomp PROBE
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crgw/vm.h"

int main(int argc, char **argv)
{
	char dir[] = "/tmp/crgw-test-seccomp-XXXXXX", why[256];
	int status;
	pid_t pid;

	if (argc != 2) {
		fprintf(stderr, "usage: test_seccomp PROBE\n");
		return 2;
	}
	if (geteuid() != 0) {
		printf("1..0 # SKIP needs root\n");
		return 0;
	}
	if (!crgw_seccomp_available(why, sizeof(why))) {
		printf("not ok 1 - seccomp available: %s\n1..1\n", why);
		return 1;
	}
	if (!mkdtemp(dir))
		return 1;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		/* Should a refusal fail, the probe's mount attempt stays in this namespace. */
		if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
			_exit(3);
		if (crgw_seccomp_apply(why, sizeof(why))) {
			printf("not ok 1 - the filter loads: %s\n1..1\n", why);
			_exit(1);
		}
		execl(argv[1], argv[1], dir, (char *)NULL);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	rmdir(dir);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
