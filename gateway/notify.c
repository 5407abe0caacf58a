/* SPDX-License-Identifier: Apache-2.0 */
/* The sd_notify datagram protocol in a few lines, so the gateway needs no libsystemd. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"

int crgw_notify(const char *state)
{
	const char *name = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t len;
	socklen_t addrlen;
	int fd, err = 0;

	if (!name || !name[0])
		return 0;
	len = strlen(name);
	if ((name[0] != '/' && name[0] != '@') || len >= sizeof(sun.sun_path)) {
		log_warn("NOTIFY_SOCKET names no unix socket; not notifying", "state=\"%s\"", state);
		return -EINVAL;
	}
	memcpy(sun.sun_path, name, len);
	/* An abstract name starts with a NUL and has no terminator: its length is part of the name. */
	if (name[0] == '@') {
		sun.sun_path[0] = '\0';
		addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	} else {
		addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		err = -errno;
	else if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, addrlen) < 0)
		err = -errno;
	if (fd >= 0)
		close(fd);
	if (err)
		log_warn("cannot notify the service manager", "socket=\"%s\" state=\"%s\" error=\"%s\"", name, state,
			 strerror(-err));
	return err;
}
