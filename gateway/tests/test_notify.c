/* SPDX-License-Identifier: Apache-2.0 */
/* crgw_notify(): the sd_notify datagram reaches path and abstract sockets, and nothing happens without one. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"
#include "tap.h"

/* Binds a datagram socket: a path, or an abstract name when `name` starts with '@'. */
static int listener(const char *name)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t len = strlen(name);
	socklen_t addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (name[0] == '@' ? 0 : 1));
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = 2 };

	memcpy(sun.sun_path, name, len);
	if (name[0] == '@')
		sun.sun_path[0] = '\0';
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, addrlen) ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		return -1;
	return fd;
}

static bool received(int fd, const char *want)
{
	char buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

	if (n < 0)
		return false;
	buf[n] = '\0';
	return strcmp(buf, want) == 0;
}

int main(void)
{
	char dir[] = "/tmp/crgw-test-notify-XXXXXX", path[128], abstract[64], longname[200];
	int fd;

	if (!mkdtemp(dir))
		return 1;
	unsetenv("NOTIFY_SOCKET");
	tap_result(crgw_notify("READY=1") == 0, "without NOTIFY_SOCKET nothing is sent and nothing fails");
	setenv("NOTIFY_SOCKET", "", 1);
	tap_result(crgw_notify("READY=1") == 0, "an empty NOTIFY_SOCKET is the same as none");

	snprintf(path, sizeof(path), "%s/notify", dir);
	fd = listener(path);
	setenv("NOTIFY_SOCKET", path, 1);
	tap_result(fd >= 0 && crgw_notify("READY=1") == 0 && received(fd, "READY=1"), "READY=1 reaches a path socket");
	tap_result(crgw_notify("STOPPING=1") == 0 && received(fd, "STOPPING=1"), "STOPPING=1 too");
	close(fd);
	unlink(path);
	tap_result(crgw_notify("READY=1") < 0, "a socket nobody listens on is an error, not a crash");

	snprintf(abstract, sizeof(abstract), "@crgw-test-notify-%d", (int)getpid());
	fd = listener(abstract);
	setenv("NOTIFY_SOCKET", abstract, 1);
	tap_result(fd >= 0 && crgw_notify("READY=1") == 0 && received(fd, "READY=1"),
		   "READY=1 reaches an abstract socket (%s)", abstract);
	close(fd);

	setenv("NOTIFY_SOCKET", "notify", 1);
	tap_result(crgw_notify("READY=1") == -EINVAL, "a relative name is refused");
	memset(longname, 'x', sizeof(longname) - 1);
	longname[0] = '/';
	longname[sizeof(longname) - 1] = '\0';
	setenv("NOTIFY_SOCKET", longname, 1);
	tap_result(crgw_notify("READY=1") == -EINVAL, "a name longer than a unix socket address is refused");
	rmdir(dir);
	return tap_done();
}
