/* SPDX-License-Identifier: Apache-2.0 */
/* Private netlink plumbing shared by the rtnetlink, nf_tables and NFLOG parts of libcrgw-netctl. */
#ifndef CRGW_NETCTL_NL_H
#define CRGW_NETCTL_NL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libmnl/libmnl.h>

/*
 * Replies larger than one page arrive during dumps (a link message with its attributes is ~1.5 KiB and the
 * kernel packs several into one datagram); 32 KiB is what the kernel's dump code sizes its skbs up to, so
 * nothing is ever truncated.
 */
#define NETCTL_NL_RXBUF 32768

/*
 * One netlink socket and its reply buffer. Each public call opens its own and closes it before returning,
 * so no state is shared between threads and a socket never outlives the namespace decision that made it.
 */
struct netctl_nl {
	struct mnl_socket *sock;
	uint32_t portid;
	uint32_t seq;
	char *rx; /* NETCTL_NL_RXBUF bytes */
};

/* Opens and binds a socket of `bus` (NETLINK_ROUTE, NETLINK_NETFILTER) with SOCK_CLOEXEC. 0 or -errno. */
int netctl_nl_open(struct netctl_nl *nl, int bus);

/* Closes what netctl_nl_open made; safe on a zeroed or already closed struct. */
void netctl_nl_close(struct netctl_nl *nl);

/* Gives the next sequence number of this socket. */
uint32_t netctl_nl_seq(struct netctl_nl *nl);

/*
 * Sends one request (borrowed; its seq is assigned and NLM_F_ACK added here) and reads replies until the
 * kernel's ACK. `cb` (may be NULL) sees every data message. Returns 0, the kernel's -errno, or the
 * callback's failure as -errno.
 */
int netctl_nl_talk(struct netctl_nl *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data);

/* Like netctl_nl_talk() for a dump request (NLM_F_DUMP added here): reads until NLMSG_DONE. */
int netctl_nl_dump(struct netctl_nl *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data);

/* Bounded name checks shared by the modules; both reject NULL. */
bool netctl_ifname_ok(const char *name);

#endif
