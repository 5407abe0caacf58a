/* SPDX-License-Identifier: Apache-2.0 */
/* NFLOG reader of libcrgw-netctl: turns what the ruleset logged into parsed packet summaries. */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>

#include "netctl.h"
#include "nl.h"

/* Per call, so that a flood of logs cannot hold the caller's event loop. */
#define READS_PER_CALL 64

/*
 * Room for a burst while the daemon is busy; the kernel caps it at rmem_max. Overruns are reported as
 * -ENOBUFS, never silently.
 */
#define RCVBUF_BYTES (1 << 20)

/* Bounds of IPv6 extension header walking: enough for any sane packet, cheap for a hostile one. */
#define V6_EXT_MAX 8

struct crgw_nflog {
	struct netctl_nl nl;
	uint16_t group;
};

static int config(struct crgw_nflog *log)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct nfgenmsg *nfg;
	struct nfulnl_msg_config_cmd cmd = { .command = NFULNL_CFG_CMD_BIND };
	struct nfulnl_msg_config_mode mode = {
		.copy_range = htonl(CRGW_NFLOG_COPY_BYTES),
		.copy_mode = NFULNL_COPY_PACKET,
	};

	nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = AF_UNSPEC;
	nfg->version = NFNETLINK_V0;
	nfg->res_id = htons(log->group);
	/* The kernel binds first and then applies the other attributes to the new instance. */
	mnl_attr_put(nlh, NFULA_CFG_CMD, sizeof(cmd), &cmd);
	mnl_attr_put(nlh, NFULA_CFG_MODE, sizeof(mode), &mode);
	/*
	 * The default queues up to 100 packets or one second before sending; the ruleset's rate limit already
	 * bounds the volume, and an audit event should not lag behind the drop it reports.
	 */
	mnl_attr_put_u32(nlh, NFULA_CFG_QTHRESH, htonl(1));
	return netctl_nl_talk(&log->nl, nlh, NULL, NULL);
}

int crgw_nflog_open(uint16_t group, struct crgw_nflog **out)
{
	struct crgw_nflog *log = NULL;
	int rcvbuf = RCVBUF_BYTES;
	int fd, fl, err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	log = calloc(1, sizeof(*log));
	if (!log)
		return -ENOMEM;
	log->group = group;
	err = netctl_nl_open(&log->nl, NETLINK_NETFILTER);
	if (err)
		goto out;
	fd = mnl_socket_get_fd(log->nl.sock);
	/* Best effort: a smaller buffer only means an earlier -ENOBUFS. */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	/* Blocking while configuring (the ACK is awaited), non-blocking for the event loop afterwards. */
	err = config(log);
	if (err)
		goto out;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		err = -errno;
		goto out;
	}
	*out = log;
out:
	if (err)
		crgw_nflog_close(log);
	return err;
}

int crgw_nflog_fd(const struct crgw_nflog *log)
{
	return log ? mnl_socket_get_fd(log->nl.sock) : -EINVAL;
}

void crgw_nflog_close(struct crgw_nflog *log)
{
	if (!log)
		return;
	/* Closing the socket unbinds the group in the kernel; no message needed. */
	netctl_nl_close(&log->nl);
	free(log);
}

/* ---- packet parsing (all input here is attacker-controlled: every read is bounds-checked) ------------ */

static bool has_ports(uint8_t proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE || proto == IPPROTO_SCTP;
}

static void parse_ports(struct crgw_nflog_packet *p, const uint8_t *l4, size_t len)
{
	if (!has_ports(p->l4proto) || len < 4)
		return;
	p->sport = (uint16_t)(l4[0] << 8 | l4[1]);
	p->dport = (uint16_t)(l4[2] << 8 | l4[3]);
	p->has_ports = true;
}

static void parse_ipv4(struct crgw_nflog_packet *p, const uint8_t *b, size_t len)
{
	size_t ihl;
	uint16_t frag;

	if (len < 20 || (b[0] >> 4) != 4)
		return;
	ihl = (size_t)(b[0] & 0x0f) * 4;
	if (ihl < 20 || ihl > len)
		return;
	p->family = AF_INET;
	p->l4proto = b[9];
	memcpy(&p->src.v4, b + 12, 4);
	memcpy(&p->dst.v4, b + 16, 4);
	/* Only the first fragment carries the transport header. */
	frag = (uint16_t)((b[6] << 8 | b[7]) & 0x1fff);
	if (frag == 0)
		parse_ports(p, b + ihl, len - ihl);
}

static void parse_ipv6(struct crgw_nflog_packet *p, const uint8_t *b, size_t len)
{
	size_t off = 40;
	uint8_t next;

	if (len < 40 || (b[0] >> 4) != 6)
		return;
	p->family = AF_INET6;
	memcpy(&p->src.v6, b + 8, 16);
	memcpy(&p->dst.v6, b + 24, 16);
	next = b[6];
	for (unsigned i = 0; i < V6_EXT_MAX; i++) {
		size_t hlen;

		switch (next) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
			if (off + 2 > len)
				goto truncated;
			hlen = ((size_t)b[off + 1] + 1) * 8;
			break;
		case IPPROTO_AH:
			if (off + 2 > len)
				goto truncated;
			hlen = ((size_t)b[off + 1] + 2) * 4;
			break;
		case IPPROTO_FRAGMENT:
			if (off + 8 > len)
				goto truncated;
			/* A non-first fragment has no transport header to read. */
			if ((b[off + 2] << 8 | b[off + 3]) & 0xfff8) {
				p->l4proto = b[off];
				return;
			}
			hlen = 8;
			break;
		default:
			p->l4proto = next;
			parse_ports(p, b + off, len - off);
			return;
		}
		next = b[off];
		off += hlen;
		if (off > len)
			goto truncated;
	}
truncated:
	/* Header chain longer than what we copied or allow: the protocol stays unknown. */
	p->l4proto = 0;
}

struct attrs {
	const struct nlattr *tb[NFULA_MAX + 1];
};

static int attr_cb(const struct nlattr *attr, void *data)
{
	struct attrs *a = data;
	int type = mnl_attr_get_type(attr);

	/* Unknown (newer) attributes are skipped, not fatal. */
	if (mnl_attr_type_valid(attr, NFULA_MAX) < 0)
		return MNL_CB_OK;
	a->tb[type] = attr;
	return MNL_CB_OK;
}

/* Returns true when `nlh` was a packet (and `cb` was called). */
static bool handle_msg(const struct nlmsghdr *nlh, crgw_nflog_cb cb, void *arg)
{
	struct crgw_nflog_packet p;
	const struct nfgenmsg *nfg;
	struct attrs a = { 0 };

	if (nlh->nlmsg_type != ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET))
		return false;
	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*nfg))
		return false;
	nfg = mnl_nlmsg_get_payload(nlh);
	if (mnl_attr_parse(nlh, sizeof(*nfg), attr_cb, &a) < 0)
		return false;

	memset(&p, 0, sizeof(p));
	p.family = AF_UNSPEC;
	if (a.tb[NFULA_PREFIX]) {
		const char *s = mnl_attr_get_payload(a.tb[NFULA_PREFIX]);
		size_t n = strnlen(s, mnl_attr_get_payload_len(a.tb[NFULA_PREFIX]));

		if (n >= sizeof(p.prefix))
			n = sizeof(p.prefix) - 1;
		memcpy(p.prefix, s, n);
		p.prefix[n] = '\0';
	}
	if (a.tb[NFULA_IFINDEX_INDEV] && mnl_attr_validate(a.tb[NFULA_IFINDEX_INDEV], MNL_TYPE_U32) == 0)
		p.indev = ntohl(mnl_attr_get_u32(a.tb[NFULA_IFINDEX_INDEV]));
	if (a.tb[NFULA_PAYLOAD]) {
		const uint8_t *b = mnl_attr_get_payload(a.tb[NFULA_PAYLOAD]);
		size_t len = mnl_attr_get_payload_len(a.tb[NFULA_PAYLOAD]);

		p.copied = (uint32_t)len;
		/*
		 * The message's family says which header to expect; the version nibble must agree, so a
		 * rule in an inet or netdev table (family not IPv4/IPv6) is still parsed right.
		 */
		if (len && (b[0] >> 4) == 4 && nfg->nfgen_family != NFPROTO_IPV6)
			parse_ipv4(&p, b, len);
		else if (len && (b[0] >> 4) == 6 && nfg->nfgen_family != NFPROTO_IPV4)
			parse_ipv6(&p, b, len);
	}
	cb(&p, arg);
	return true;
}

int crgw_nflog_read(struct crgw_nflog *log, crgw_nflog_cb cb, void *arg)
{
	int fd, packets = 0;
	bool got = false;

	if (!log || !cb)
		return -EINVAL;
	fd = mnl_socket_get_fd(log->nl.sock);
	for (unsigned i = 0; i < READS_PER_CALL; i++) {
		ssize_t n = recv(fd, log->nl.rx, NETCTL_NL_RXBUF, MSG_DONTWAIT | MSG_TRUNC);
		const struct nlmsghdr *nlh;
		int left;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		got = true;
		/* MSG_TRUNC gives the real size; a datagram larger than our buffer is parsed as far as it fits. */
		left = n > NETCTL_NL_RXBUF ? NETCTL_NL_RXBUF : (int)n;
		for (nlh = (const struct nlmsghdr *)log->nl.rx; mnl_nlmsg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left)) {
			if (handle_msg(nlh, cb, arg))
				packets++;
		}
	}
	if (!got)
		return -EAGAIN;
	return packets;
}
