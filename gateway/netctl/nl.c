/* SPDX-License-Identifier: Apache-2.0 */
/* Netlink socket helpers: open with close-on-exec, request/ACK round trips and dumps, name checks. */

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <net/if.h>

#include "nl.h"

int netctl_nl_open(struct netctl_nl *nl, int bus)
{
	int err = 0;

	memset(nl, 0, sizeof(*nl));
	nl->rx = malloc(NETCTL_NL_RXBUF);
	if (!nl->rx) {
		err = -ENOMEM;
		goto out;
	}
	/*
	 * SOCK_CLOEXEC: the daemon forks sandbox runtimes from other threads; a netlink socket leaking into
	 * one would let it talk to the kernel with our credentials.
	 */
	nl->sock = mnl_socket_open2(bus, SOCK_CLOEXEC);
	if (!nl->sock) {
		err = -errno;
		goto out;
	}
	if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
		err = -errno;
		goto out;
	}
	nl->portid = mnl_socket_get_portid(nl->sock);
	/* Any start works on a private socket; a non-zero one keeps replies distinguishable from events. */
	nl->seq = 1;
out:
	if (err)
		netctl_nl_close(nl);
	return err;
}

void netctl_nl_close(struct netctl_nl *nl)
{
	if (!nl)
		return;
	if (nl->sock)
		mnl_socket_close(nl->sock);
	free(nl->rx);
	nl->sock = NULL;
	nl->rx = NULL;
}

uint32_t netctl_nl_seq(struct netctl_nl *nl)
{
	return nl->seq++;
}

/*
 * The flag bits are per-request-kind (NLM_F_DUMP's bits are NLM_F_REPLACE|NLM_F_EXCL on a NEW request), so
 * the caller says which kind it sends rather than this guessing from the flags.
 */
static int talk(struct netctl_nl *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
	uint32_t seq = netctl_nl_seq(nl);
	ssize_t n;
	int ret;

	nlh->nlmsg_seq = seq;
	if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		n = mnl_socket_recvfrom(nl->sock, nl->rx, NETCTL_NL_RXBUF);
		if (n < 0)
			return errno ? -errno : -EIO;
		errno = 0;
		ret = mnl_cb_run(nl->rx, (size_t)n, seq, nl->portid, cb, data);
		if (ret == MNL_CB_STOP)
			return 0;
		if (ret < 0)
			return errno ? -errno : -EIO;
	}
}

int netctl_nl_talk(struct netctl_nl *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
	nlh->nlmsg_flags |= NLM_F_ACK;
	return talk(nl, nlh, cb, data);
}

int netctl_nl_dump(struct netctl_nl *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
	/* A dump ends in NLMSG_DONE and gets no ACK; asking for one would leave a stray message queued. */
	nlh->nlmsg_flags |= NLM_F_DUMP;
	return talk(nl, nlh, cb, data);
}

bool netctl_ifname_ok(const char *name)
{
	size_t len;

	if (!name)
		return false;
	len = strnlen(name, IFNAMSIZ);
	if (len == 0 || len >= IFNAMSIZ)
		return false;
	/*
	 * The same rules as the kernel's dev_valid_name(), checked here because names are also pasted into
	 * /proc/sys paths: "..", "/" or whitespace would otherwise point a sysctl write somewhere else.
	 */
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (name[i] == '/' || name[i] == ':' || isspace((unsigned char)name[i]))
			return false;
	}
	return true;
}
