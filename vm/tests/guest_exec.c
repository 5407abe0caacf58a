/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A test tool: runs one command through crgw-guest listening at a unix socket (QEMU's chardev socket of
 * the virtio-serial port, or crgw-guest --listen unix:), with crgw_guest_exec() as a VM backend's exec
 * will, and exits with the command's status. For the VM smoke test and for people at a terminal.
 * usage: guest_exec [-t] [-i] [-w SECONDS] SOCKET -- ARGV...
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vm_priv.h"

int main(int argc, char **argv)
{
	struct crgw_exec_request req = {0};
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	long wait_s = 0;
	char err[512] = "";
	int opt, fd, status = 125, e;

	while ((opt = getopt(argc, argv, "tiw:")) != -1) {
		if (opt == 't')
			req.tty = true;
		else if (opt == 'i')
			req.interactive = true;
		else if (opt == 'w')
			wait_s = strtol(optarg, NULL, 10);
		else
			goto usage;
	}
	if (argc - optind < 2 || strlen(argv[optind]) >= sizeof(sun.sun_path))
		goto usage;
	memcpy(sun.sun_path, argv[optind], strlen(argv[optind]));
	req.argv = argv + optind + 1;
	/* The agent (or QEMU's socket) may not be there yet: a VM is still booting. */
	for (time_t until = time(NULL) + wait_s;;) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			break;
		e = errno;
		if (fd >= 0)
			close(fd);
		if (time(NULL) >= until) {
			fprintf(stderr, "guest_exec: %s: %s\n", sun.sun_path, strerror(e));
			return 125;
		}
		usleep(50000);
	}
	e = crgw_guest_exec(fd, &req, &status, err, sizeof(err));
	if (e)
		fprintf(stderr, "guest_exec: %s\n", err);
	close(fd);
	return status;
usage:
	fprintf(stderr, "usage: guest_exec [-t] [-i] [-w SECONDS] SOCKET -- ARGV...\n");
	return 2;
}
