/* SPDX-License-Identifier: Apache-2.0 */
/* rtnetlink side of libcrgw-netctl: a sandbox's veth pair, its addresses and routes, and link clean-up. */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>

#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sys/ioctl.h>

#include "netctl.h"
#include "nl.h"

/* Cap on leftovers collected in one clean-up pass; a machine with more is already in trouble. */
#define PREFIX_SWEEP_MAX 4096

/* Request buffer: the largest request here (a veth with its nested peer) is well under 512 bytes. */
#define REQ_BUF 1024

/* ---- sysctl ------------------------------------------------------------------------------------------- */

/*
 * Writes a per-interface sysctl of the calling thread's network namespace. /proc/sys/net resolves against
 * the namespace of the task that looks the path up (current->nsproxy), i.e. this thread, not the process:
 * that is what lets the helper thread reach the sandbox's settings. (/proc/self/net, by contrast, follows
 * the thread-group leader; /proc/thread-self/net would be the per-thread one.)
 */
static int sysctl_if_write(const char *proto, const char *ifname, const char *key, const char *value)
{
	char path[128];
	size_t len = strlen(value);
	ssize_t n;
	int fd, err = 0, ret;

	ret = snprintf(path, sizeof(path), "/proc/sys/net/%s/conf/%s/%s", proto, ifname, key);
	if (ret < 0 || (size_t)ret >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		/* A kernel built without IPv6 has no IPv6 to disable. */
		if (err == -ENOENT && !strcmp(proto, "ipv6") && access("/proc/sys/net/ipv6", F_OK) != 0)
			return 0;
		return err;
	}
	n = write(fd, value, len);
	if (n < 0)
		err = -errno;
	else if ((size_t)n != len)
		err = -EIO;
	close(fd);
	return err;
}

static int host_sysctls(const char *ifname)
{
	static const struct {
		const char *proto, *key, *value;
	} rows[] = {
	    /* No IPv6 at all: no link-local address, no router solicitations, nothing to filter twice. */
	    {"ipv6", "disable_ipv6", "1"},
	    /* Reverse-path filtering would drop spoofed packets before nftables counts and logs them. */
	    {"ipv4", "rp_filter", "0"},
	    /* Sandboxes reach the world only through the gateway's listeners, never by routing. */
	    {"ipv4", "forwarding", "0"},
	    {"ipv4", "send_redirects", "0"},
	    {"ipv4", "accept_redirects", "0"},
	};
	int err;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		err = sysctl_if_write(rows[i].proto, ifname, rows[i].key, rows[i].value);
		if (err)
			return err;
	}
	return 0;
}

/* ---- rtnetlink requests -------------------------------------------------------------------------------- */

static struct nlmsghdr *link_req(char *buf, uint16_t type, uint16_t flags, int ifindex)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifi;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	return nlh;
}

static int link_index_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct ifinfomsg *ifi;

	if (nlh->nlmsg_type != RTM_NEWLINK || mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifi))
		return MNL_CB_OK;
	ifi = mnl_nlmsg_get_payload(nlh);
	*(int *)data = ifi->ifi_index;
	return MNL_CB_OK;
}

/* ifindex of `name` in the socket's namespace, or -ENODEV. */
static int link_index(struct netctl_nl *nl, const char *name)
{
	char buf[REQ_BUF];
	struct nlmsghdr *nlh = link_req(buf, RTM_GETLINK, 0, 0);
	int ifindex = 0, err;

	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	/* Statistics are a third of the reply and of no use here. */
	mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	err = netctl_nl_talk(nl, nlh, link_index_cb, &ifindex);
	if (err)
		return err;
	return ifindex > 0 ? ifindex : -ENODEV;
}

static int link_set_up(struct netctl_nl *nl, int ifindex)
{
	char buf[REQ_BUF];
	struct nlmsghdr *nlh = link_req(buf, RTM_NEWLINK, 0, ifindex);
	struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);

	ifi->ifi_change = IFF_UP;
	ifi->ifi_flags = IFF_UP;
	return netctl_nl_talk(nl, nlh, NULL, NULL);
}

static int link_del_index(struct netctl_nl *nl, int ifindex)
{
	char buf[REQ_BUF];

	return netctl_nl_talk(nl, link_req(buf, RTM_DELLINK, 0, ifindex), NULL, NULL);
}

static int addr_add(struct netctl_nl *nl, int ifindex, struct in_addr addr, uint8_t prefix_len)
{
	char buf[REQ_BUF];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifaddrmsg *ifa;

	nlh->nlmsg_type = RTM_NEWADDR;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = prefix_len;
	ifa->ifa_flags = IFA_F_PERMANENT;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (uint32_t)ifindex;
	mnl_attr_put(nlh, IFA_LOCAL, sizeof(addr), &addr);
	mnl_attr_put(nlh, IFA_ADDRESS, sizeof(addr), &addr);
	if (prefix_len < 31) {
		uint32_t host_mask = prefix_len ? 0xffffffffu >> prefix_len : 0xffffffffu;
		struct in_addr brd = {.s_addr = addr.s_addr | htonl(host_mask)};

		mnl_attr_put(nlh, IFA_BROADCAST, sizeof(brd), &brd);
	}
	return netctl_nl_talk(nl, nlh, NULL, NULL);
}

static int default_route_add(struct netctl_nl *nl, int ifindex, struct in_addr gw)
{
	char buf[REQ_BUF];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct rtmsg *rtm;

	nlh->nlmsg_type = RTM_NEWROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = AF_INET;
	rtm->rtm_dst_len = 0;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = RT_SCOPE_UNIVERSE;
	rtm->rtm_type = RTN_UNICAST;
	mnl_attr_put(nlh, RTA_GATEWAY, sizeof(gw), &gw);
	mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)ifindex);
	return netctl_nl_talk(nl, nlh, NULL, NULL);
}

static int veth_new(struct netctl_nl *nl, const struct crgw_link_spec *spec)
{
	char buf[REQ_BUF];
	struct nlmsghdr *nlh = link_req(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
	struct nlattr *linkinfo, *data, *peer;
	struct ifinfomsg *peer_ifi;

	mnl_attr_put_strz(nlh, IFLA_IFNAME, spec->host_ifname);
	linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	/* The peer's attributes follow its own ifinfomsg, as for a top-level RTM_NEWLINK. */
	peer_ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*peer_ifi));
	memset(peer_ifi, 0, sizeof(*peer_ifi));
	peer_ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, spec->peer_ifname);
	if (spec->peer_mac)
		mnl_attr_put(nlh, IFLA_ADDRESS, 6, spec->peer_mac);
	/* Born inside the sandbox: the peer never exists in our namespace, not even for a moment. */
	mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)spec->peer_netns_fd);
	mnl_attr_nest_end(nlh, peer);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, linkinfo);
	return netctl_nl_talk(nl, nlh, NULL, NULL);
}

/* ---- the sandbox's namespace ------------------------------------------------------------------------- */

struct ns_job {
	int netns_fd;
	const char *peer_ifname;
	struct netctl_nl *nl; /* out: a socket of the sandbox's namespace */
	int err;
};

/*
 * Runs in a thread of its own: setns() changes only the calling thread, and this thread exits right after,
 * so no thread of the daemon is ever left inside a sandbox's namespace. Everything that must be done from
 * inside happens here: the socket (which stays bound to the namespace it was created in, whoever uses it
 * later) and the peer's sysctls (resolved against this thread's namespace, see sysctl_if_write).
 */
static void *ns_thread(void *arg)
{
	struct ns_job *job = arg;

	if (setns(job->netns_fd, CLONE_NEWNET) < 0) {
		job->err = -errno;
		return NULL;
	}
	job->err = netctl_nl_open(job->nl, NETLINK_ROUTE);
	if (job->err)
		return NULL;
	/* Before the peer is ever up, so it never sends a router solicitation or gets a link-local address. */
	job->err = sysctl_if_write("ipv6", job->peer_ifname, "disable_ipv6", "1");
	return NULL;
}

static int ns_enter(int netns_fd, const char *peer_ifname, struct netctl_nl *nl)
{
	struct ns_job job = {.netns_fd = netns_fd, .peer_ifname = peer_ifname, .nl = nl, .err = -EIO};
	sigset_t all, old;
	pthread_t tid;
	int err;

	/*
	 * The helper is born with every signal blocked: a process-directed signal must be handled by one of
	 * the daemon's own threads, never by this one while it is inside the sandbox's namespace.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&tid, NULL, ns_thread, &job);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return -err;
	err = pthread_join(tid, NULL);
	if (err)
		return -err;
	if (job.err)
		netctl_nl_close(nl);
	return job.err;
}

/* ---- public ------------------------------------------------------------------------------------------- */

static bool spec_ok(const struct crgw_link_spec *spec)
{
	uint32_t mask;

	if (!spec || !netctl_ifname_ok(spec->host_ifname) || !netctl_ifname_ok(spec->peer_ifname))
		return false;
	if (spec->peer_netns_fd < 0 || spec->prefix_len < 8 || spec->prefix_len > 32)
		return false;
	mask = htonl(0xffffffffu << (32 - spec->prefix_len));
	if (spec->host_addr.s_addr == spec->guest_addr.s_addr)
		return false;
	/* The default route goes via host_addr, which must be on the link's own subnet. */
	return (spec->host_addr.s_addr & mask) == (spec->guest_addr.s_addr & mask);
}

int crgw_netctl_veth_create(const struct crgw_link_spec *spec, int *host_ifindex)
{
	struct netctl_nl host = {0}, guest = {0};
	bool created = false;
	int ifindex = 0, lo, peer, err;

	if (!spec_ok(spec))
		return -EINVAL;
	err = netctl_nl_open(&host, NETLINK_ROUTE);
	if (err)
		goto out;
	err = veth_new(&host, spec);
	if (err)
		goto out;
	created = true;
	ifindex = link_index(&host, spec->host_ifname);
	if (ifindex < 0) {
		err = ifindex;
		goto out;
	}
	err = host_sysctls(spec->host_ifname);
	if (err)
		goto out;
	err = addr_add(&host, ifindex, spec->host_addr, spec->prefix_len);
	if (err)
		goto out;
	err = link_set_up(&host, ifindex);
	if (err)
		goto out;

	err = ns_enter(spec->peer_netns_fd, spec->peer_ifname, &guest);
	if (err)
		goto out;
	lo = link_index(&guest, "lo");
	if (lo < 0) {
		err = lo;
		goto out;
	}
	err = link_set_up(&guest, lo);
	if (err)
		goto out;
	peer = link_index(&guest, spec->peer_ifname);
	if (peer < 0) {
		err = peer;
		goto out;
	}
	err = addr_add(&guest, peer, spec->guest_addr, spec->prefix_len);
	if (err)
		goto out;
	err = link_set_up(&guest, peer);
	if (err)
		goto out;
	err = default_route_add(&guest, peer, spec->host_addr);
	if (err)
		goto out;
	if (host_ifindex)
		*host_ifindex = ifindex;
out:
	if (err && created) {
		/* By index when we know it: the name could in theory have been reused meanwhile. */
		if (ifindex > 0)
			link_del_index(&host, ifindex);
		else
			crgw_netctl_link_delete(spec->host_ifname);
	}
	netctl_nl_close(&guest);
	netctl_nl_close(&host);
	return err;
}

int crgw_netctl_tap_create(const struct crgw_tap_spec *spec, int *host_ifindex)
{
	struct netctl_nl host = {0};
	struct ifreq ifr;
	uint32_t mask;
	bool created = false;
	int fd, ifindex = 0, err;

	if (!spec || !netctl_ifname_ok(spec->host_ifname) || spec->prefix_len < 8 || spec->prefix_len > 32)
		return -EINVAL;
	mask = htonl(0xffffffffu << (32 - spec->prefix_len));
	if (spec->host_addr.s_addr == spec->guest_addr.s_addr ||
	    (spec->host_addr.s_addr & mask) != (spec->guest_addr.s_addr & mask))
		return -EINVAL;
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", spec->host_ifname);
	/* The VMM opens it again by name with the same flags; vnet_hdr lets virtio-net offload checksums. */
	ifr.ifr_flags = (short)(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_TUN_EXCL); /* 0x8000 is the sign bit of the short */
	if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
		err = -errno;
		close(fd);
		return err;
	}
	created = true;
	if ((spec->owner_uid >= 0 && ioctl(fd, TUNSETOWNER, (unsigned long)spec->owner_uid) != 0) ||
	    ioctl(fd, TUNSETPERSIST, 1UL) != 0) {
		err = -errno;
		close(fd); /* not persistent yet: closing deletes it */
		return err;
	}
	close(fd);
	err = netctl_nl_open(&host, NETLINK_ROUTE);
	if (err)
		goto out;
	ifindex = link_index(&host, spec->host_ifname);
	if (ifindex < 0) {
		err = ifindex;
		goto out;
	}
	err = host_sysctls(spec->host_ifname);
	if (err)
		goto out;
	err = addr_add(&host, ifindex, spec->host_addr, spec->prefix_len);
	if (err)
		goto out;
	err = link_set_up(&host, ifindex);
	if (err)
		goto out;
	if (host_ifindex)
		*host_ifindex = ifindex;
out:
	if (err && created) {
		if (ifindex > 0)
			link_del_index(&host, ifindex);
		else
			crgw_netctl_link_delete(spec->host_ifname);
	}
	netctl_nl_close(&host);
	return err;
}

int crgw_netctl_link_delete(const char *ifname)
{
	struct netctl_nl nl = {0};
	char buf[REQ_BUF];
	struct nlmsghdr *nlh;
	int err;

	if (!netctl_ifname_ok(ifname))
		return -EINVAL;
	err = netctl_nl_open(&nl, NETLINK_ROUTE);
	if (err)
		goto out;
	nlh = link_req(buf, RTM_DELLINK, 0, 0);
	mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
	err = netctl_nl_talk(&nl, nlh, NULL, NULL);
out:
	netctl_nl_close(&nl);
	return err;
}

int crgw_netctl_link_ifindex(const char *ifname)
{
	struct netctl_nl nl = {0};
	int ret;

	if (!netctl_ifname_ok(ifname))
		return -EINVAL;
	ret = netctl_nl_open(&nl, NETLINK_ROUTE);
	if (ret)
		goto out;
	ret = link_index(&nl, ifname);
out:
	netctl_nl_close(&nl);
	return ret;
}

struct sweep {
	const char *prefix;
	size_t prefix_len;
	int *ifindex; /* PREFIX_SWEEP_MAX entries */
	unsigned n;
	bool overflow;
	char foreign[IFNAMSIZ]; /* the first link that has the prefix but is not one of ours */
};

/*
 * PREFIX followed by one or more decimal digits and nothing else: how the gateway names its links. A
 * mere prefix match would also sweep links that other software (a test network's "crgwtn12u") named.
 */
static bool is_slot_name(const char *name, const char *prefix, size_t prefix_len)
{
	const char *p = name + prefix_len;

	if (strncmp(name, prefix, prefix_len) || !*p)
		return false;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
	}
	return true;
}

static int sweep_cb(const struct nlmsghdr *nlh, void *data)
{
	struct sweep *sw = data;
	const struct ifinfomsg *ifi;
	const struct nlattr *attr;
	const char *name = NULL;

	if (nlh->nlmsg_type != RTM_NEWLINK || mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifi))
		return MNL_CB_OK;
	ifi = mnl_nlmsg_get_payload(nlh);
	if (ifi->ifi_flags & IFF_LOOPBACK)
		return MNL_CB_OK;
	mnl_attr_for_each(attr, nlh, sizeof(*ifi))
	{
		if (mnl_attr_get_type(attr) == IFLA_IFNAME && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
			name = mnl_attr_get_str(attr);
	}
	if (name && !sw->foreign[0] && !strncmp(name, sw->prefix, sw->prefix_len) &&
	    !is_slot_name(name, sw->prefix, sw->prefix_len))
		snprintf(sw->foreign, sizeof(sw->foreign), "%s", name);
	if (!name || !is_slot_name(name, sw->prefix, sw->prefix_len))
		return MNL_CB_OK;
	if (sw->n == PREFIX_SWEEP_MAX) {
		sw->overflow = true;
		return MNL_CB_OK;
	}
	sw->ifindex[sw->n++] = ifi->ifi_index;
	return MNL_CB_OK;
}

int crgw_netctl_remove_links_with_prefix(const char *prefix, unsigned *removed, char *foreign, size_t foreign_len)
{
	struct netctl_nl nl = {0};
	struct sweep sw = {.prefix = prefix};
	char buf[REQ_BUF];
	struct nlmsghdr *nlh;
	unsigned count = 0;
	int err;

	if (removed)
		*removed = 0;
	if (foreign && foreign_len)
		foreign[0] = '\0';
	/* The prefix must leave room for at least one digit; '-' and the like are fine, '/' and ':' are not. */
	if (!netctl_ifname_ok(prefix) || strlen(prefix) > IFNAMSIZ - 2)
		return -EINVAL;
	sw.prefix_len = strlen(prefix);
	sw.ifindex = calloc(PREFIX_SWEEP_MAX, sizeof(*sw.ifindex));
	if (!sw.ifindex)
		return -ENOMEM;
	err = netctl_nl_open(&nl, NETLINK_ROUTE);
	if (err)
		goto out;
	/*
	 * Collect first, delete after: deleting while the dump is still running would shift the dump's
	 * cursor and skip links.
	 */
	nlh = link_req(buf, RTM_GETLINK, 0, 0);
	mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	err = netctl_nl_dump(&nl, nlh, sweep_cb, &sw);
	if (err)
		goto out;
	for (unsigned i = 0; i < sw.n; i++) {
		err = link_del_index(&nl, sw.ifindex[i]);
		/* Deleting one end of a veth whose other end also matched takes both. */
		if (err == -ENODEV)
			continue;
		if (err)
			goto out;
		count++;
	}
	err = sw.overflow ? -E2BIG : 0;
	if (foreign && foreign_len)
		snprintf(foreign, foreign_len, "%s", sw.foreign);
out:
	if (removed)
		*removed = count;
	netctl_nl_close(&nl);
	free(sw.ifindex);
	return err;
}
