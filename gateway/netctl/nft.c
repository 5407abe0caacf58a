/* SPDX-License-Identifier: Apache-2.0 */
/* nf_tables side of libcrgw-netctl: the gateway's ruleset, changed only in whole atomic batches. */

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

#include "netctl.h"
#include "nl.h"

/*
 * The "destroy" operations (delete if present) came with Linux 6.3; Debian 12's uapi headers predate
 * them. The numbers are kernel ABI.
 */
#define MSG_DESTROYCHAIN 27
#define MSG_DESTROYRULE 28
#define MSG_DESTROYSET 29
#define MSG_DESTROYSETELEM 30
#define MSG_DESTROYOBJ 31

/* nft's datatype numbers, so that `nft list` prints our sets the way it prints its own. */
#define TYPE_IPADDR 7
#define TYPE_INET_PROTOCOL 12
#define TYPE_INET_SERVICE 13
#define TYPE_IFNAME 41
#define TYPE_CONCAT(a, b) (((a) << 6) | (b))
#define NFT_BYTEORDER_HOST 1 /* nft's BYTEORDER_HOST_ENDIAN */

/*
 * One sandbox's batch is ~45 messages of at most ~600 bytes. The limit is what one batch may hold (it is
 * sent in one sendmsg, so it must stay well under the socket's send buffer); the slack is room for the
 * message that overflows it, which libmnl writes before it can tell.
 */
#define BATCH_LIMIT 65536
#define BATCH_SLACK 16384

#define NAME_MAX_LEN 64 /* "sb4294967295_spoof" and the like */
#define POOL_SPOOF_COUNTER "pool_spoof" /* no sb<id>_ name can collide with it */

/* The drop log's rate: enough to see what a sandbox tries, too little for it to flood the audit log. */
#define LOG_RATE 10
#define LOG_BURST 20
/*
 * Conntrack entries are the host's, shared by every sandbox and the gateway's own upstream connections
 * (262,144 by default), and a sandbox's redirected TCP makes one per connection attempt: unchecked, one
 * sandbox made 8,000 in a fifth of a second (connect and close, or bare SYNs from a raw socket), whose
 * TIME_WAIT and SYN_RECV entries live 120 and 60 s. New connections are held to a rate per sandbox
 * (crgw_nft_config.new_conn_rate, limits.connection_rate), and their closing states to the short timeouts
 * of SANDBOX_CT_TIMEOUT, so that one sandbox keeps at most about ten seconds' worth of that rate in states
 * other than established.
 */
#define SANDBOX_CT_TIMEOUT "sandbox_tcp" /* no sb<id>_ name can collide with it */

static const uint16_t default_service_ports[] = { 53, 3128, 8170 };

/* ---- settings ----------------------------------------------------------------------------------------- */

struct nftcfg {
	const char *table;
	const char *prefix;
	uint16_t group;
	uint16_t http_port, tcp_port;
	const uint16_t *svc;
	unsigned n_svc;
	struct in_addr pool;
	uint8_t pool_prefix;
	uint32_t new_conn_rate;
};

/* The netmask of /len (0..32), network order. */
static uint32_t prefix_mask(unsigned len)
{
	return len ? htonl(0xffffffffu << (32 - len)) : 0;
}

static int cfg_resolve(const struct crgw_nft_config *cfg, struct nftcfg *c)
{
	if (!cfg)
		return -EINVAL;
	c->table = cfg->table ? cfg->table : CRGW_NFT_DEFAULT_TABLE;
	c->prefix = cfg->iface_prefix ? cfg->iface_prefix : CRGW_NFT_DEFAULT_PREFIX;
	c->group = cfg->nflog_group;
	c->http_port = cfg->http_port;
	c->tcp_port = cfg->tcp_port;
	c->pool = cfg->pool;
	c->pool_prefix = cfg->pool_prefix;
	c->new_conn_rate = cfg->new_conn_rate;
	if (cfg->n_service_tcp_ports) {
		c->svc = cfg->service_tcp_ports;
		c->n_svc = cfg->n_service_tcp_ports;
	} else {
		c->svc = default_service_ports;
		c->n_svc = sizeof(default_service_ports) / sizeof(default_service_ports[0]);
	}
	if (!c->table[0] || strlen(c->table) >= NFT_TABLE_MAXNAMELEN)
		return -EINVAL;
	/* An empty prefix would make the catch-all drop every interface of the machine. */
	if (!netctl_ifname_ok(c->prefix))
		return -EINVAL;
	/* Host bits would make the pool rule match nothing: a silent hole rather than an error. */
	if (c->pool_prefix > 32 || (c->pool_prefix && (c->pool.s_addr & ~prefix_mask(c->pool_prefix)) != 0))
		return -EINVAL;
	if (!c->http_port || !c->tcp_port || c->n_svc > CRGW_NFT_SERVICE_PORTS_MAX)
		return -EINVAL;
	for (unsigned i = 0; i < c->n_svc; i++) {
		if (!c->svc[i])
			return -EINVAL;
	}
	return 0;
}

/* ---- batches ------------------------------------------------------------------------------------------ */

/*
 * A batch under construction. Builders record the first failure in `err` and become no-ops after it, so
 * the ruleset code below reads as a list of statements; batch_send() reports the failure and sends
 * nothing. Nothing reaches the kernel until the whole batch is built.
 */
struct batch {
	char *buf;
	struct mnl_nlmsg_batch *b;
	struct netctl_nl *nl;
	const char *table;
	unsigned nmsg;   /* messages between BEGIN and END, each of which the kernel ACKs */
	uint32_t set_id; /* transaction-local ids of the sets this batch creates */
	int err;
};

static int batch_init(struct batch *bt, struct netctl_nl *nl, const char *table)
{
	memset(bt, 0, sizeof(*bt));
	bt->nl = nl;
	bt->table = table;
	bt->buf = malloc(BATCH_LIMIT + BATCH_SLACK);
	if (!bt->buf)
		return -ENOMEM;
	bt->b = mnl_nlmsg_batch_start(bt->buf, BATCH_LIMIT);
	if (!bt->b) {
		free(bt->buf);
		bt->buf = NULL;
		return -ENOMEM;
	}
	nftnl_batch_begin(mnl_nlmsg_batch_current(bt->b), netctl_nl_seq(nl));
	mnl_nlmsg_batch_next(bt->b);
	return 0;
}

static void batch_free(struct batch *bt)
{
	if (bt->b)
		mnl_nlmsg_batch_stop(bt->b);
	free(bt->buf);
	bt->b = NULL;
	bt->buf = NULL;
}

/* Header of the next message, or NULL after a failure. */
static struct nlmsghdr *batch_hdr(struct batch *bt, uint16_t type, uint16_t flags)
{
	if (bt->err)
		return NULL;
	return nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(bt->b), type, NFPROTO_INET, flags | NLM_F_ACK,
				     netctl_nl_seq(bt->nl));
}

/* Closes the message started by batch_hdr(). */
static void batch_next(struct batch *bt)
{
	/* Splitting into two transactions would break the all-or-nothing promise: refuse instead. */
	if (!mnl_nlmsg_batch_next(bt->b)) {
		bt->err = -E2BIG;
		return;
	}
	bt->nmsg++;
}

static int ack_error(const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *e;

	if (nlh->nlmsg_type != NLMSG_ERROR)
		return 0;
	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*e))
		return -EBADMSG;
	e = mnl_nlmsg_get_payload(nlh);
	return e->error;
}

/*
 * Sends the batch and collects one ACK per message. nfnetlink runs the whole transaction inside our
 * sendmsg() (commit or abort included), so every reply is already queued when it returns; the poll is
 * only a guard against a kernel that ever stops doing so. The first error in batch order is returned.
 */
static int batch_send(struct batch *bt)
{
	int fd = mnl_socket_get_fd(bt->nl->sock);
	unsigned acks = 0;
	int first_err = 0;

	if (bt->err)
		return bt->err;
	nftnl_batch_end(mnl_nlmsg_batch_current(bt->b), netctl_nl_seq(bt->nl));
	if (!mnl_nlmsg_batch_next(bt->b))
		return -E2BIG;
	if (mnl_socket_sendto(bt->nl->sock, mnl_nlmsg_batch_head(bt->b), mnl_nlmsg_batch_size(bt->b)) < 0)
		return -errno;

	while (acks < bt->nmsg && !first_err) {
		ssize_t n = recv(fd, bt->nl->rx, NETCTL_NL_RXBUF, MSG_DONTWAIT);
		const struct nlmsghdr *nlh;
		int left;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			int r = poll(&pfd, 1, 2000);

			if (r == 0)
				return -ETIMEDOUT;
			if (r < 0 && errno != EINTR)
				return -errno;
			continue;
		}
		if (n < 0)
			return -errno;
		left = (int)n;
		for (nlh = (const struct nlmsghdr *)bt->nl->rx; mnl_nlmsg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left)) {
			int e = ack_error(nlh);

			if (nlh->nlmsg_type != NLMSG_ERROR)
				continue;
			if (e && !first_err)
				first_err = e;
			acks++;
		}
	}
	return first_err;
}

/* ---- rule expressions --------------------------------------------------------------------------------- */

/* A rule under construction; `oom` is sticky like batch.err. */
struct rb {
	struct nftnl_rule *r;
	bool oom;
};

static struct nftnl_expr *expr(struct rb *rb, const char *name)
{
	struct nftnl_expr *e;

	if (rb->oom)
		return NULL;
	e = nftnl_expr_alloc(name);
	if (!e) {
		rb->oom = true;
		return NULL;
	}
	nftnl_rule_add_expr(rb->r, e);
	return e;
}

static void e_meta(struct rb *rb, uint32_t key, uint32_t dreg)
{
	struct nftnl_expr *e = expr(rb, "meta");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
}

static void e_cmp(struct rb *rb, uint32_t sreg, uint32_t op, const void *data, uint32_t len)
{
	struct nftnl_expr *e = expr(rb, "cmp");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, sreg);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
	nftnl_expr_set_data(e, NFTNL_EXPR_CMP_DATA, data, len);
}

static void e_payload(struct rb *rb, uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg)
{
	struct nftnl_expr *e = expr(rb, "payload");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
}

/* `set_id` 0: a set that exists already. `map` loads the verdict register (a vmap). */
static void e_lookup(struct rb *rb, uint32_t sreg, const char *set, uint32_t set_id, bool map)
{
	struct nftnl_expr *e = expr(rb, "lookup");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
	nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
	if (set_id)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, set_id);
	if (map)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_VERDICT);
}

static void e_notrack(struct rb *rb)
{
	expr(rb, "notrack");
}

static void e_verdict(struct rb *rb, int verdict)
{
	struct nftnl_expr *e = expr(rb, "immediate");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)verdict);
}

static void e_counter(struct rb *rb, const char *name)
{
	struct nftnl_expr *e = expr(rb, "objref");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_OBJREF_IMM_TYPE, NFT_OBJECT_COUNTER);
	nftnl_expr_set_str(e, NFTNL_EXPR_OBJREF_IMM_NAME, name);
}

static void e_limited_log(struct rb *rb, uint16_t group, const char *prefix)
{
	struct nftnl_expr *e = expr(rb, "limit");

	if (!e)
		return;
	nftnl_expr_set_u64(e, NFTNL_EXPR_LIMIT_RATE, LOG_RATE);
	nftnl_expr_set_u64(e, NFTNL_EXPR_LIMIT_UNIT, 1); /* per second */
	nftnl_expr_set_u32(e, NFTNL_EXPR_LIMIT_BURST, LOG_BURST);
	nftnl_expr_set_u32(e, NFTNL_EXPR_LIMIT_TYPE, NFT_LIMIT_PKTS);
	nftnl_expr_set_u32(e, NFTNL_EXPR_LIMIT_FLAGS, 0);
	e = expr(rb, "log");
	if (!e)
		return;
	nftnl_expr_set_u16(e, NFTNL_EXPR_LOG_GROUP, group);
	nftnl_expr_set_str(e, NFTNL_EXPR_LOG_PREFIX, prefix);
}

/* `ct timeout set NAME`: takes effect on a connection's first packet, after conntrack made its entry. */
static void e_ct_timeout(struct rb *rb, const char *name)
{
	struct nftnl_expr *e = expr(rb, "objref");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_OBJREF_IMM_TYPE, NFT_OBJECT_CT_TIMEOUT);
	nftnl_expr_set_str(e, NFTNL_EXPR_OBJREF_IMM_NAME, name);
}

/* `limit rate over RATE/second burst BURST packets`: matches the packets beyond the rate. */
static void m_over_rate(struct rb *rb, uint64_t rate, uint32_t burst)
{
	struct nftnl_expr *e = expr(rb, "limit");

	if (!e)
		return;
	nftnl_expr_set_u64(e, NFTNL_EXPR_LIMIT_RATE, rate);
	nftnl_expr_set_u64(e, NFTNL_EXPR_LIMIT_UNIT, 1); /* per second */
	nftnl_expr_set_u32(e, NFTNL_EXPR_LIMIT_BURST, burst);
	nftnl_expr_set_u32(e, NFTNL_EXPR_LIMIT_TYPE, NFT_LIMIT_PKTS);
	nftnl_expr_set_u32(e, NFTNL_EXPR_LIMIT_FLAGS, NFT_LIMIT_F_INV);
}

/* ct state / ct status: loads `key`, keeps `mask`, and matches when any of its bits is set. */
static void e_ct_any(struct rb *rb, uint32_t key, uint32_t mask)
{
	static const uint32_t zero;
	struct nftnl_expr *e = expr(rb, "ct");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
	e = expr(rb, "bitwise");
	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, sizeof(uint32_t));
	/* Both keys are host-order u32 in the register, so the mask is too. */
	nftnl_expr_set_data(e, NFTNL_EXPR_BITWISE_MASK, &mask, sizeof(mask));
	nftnl_expr_set_data(e, NFTNL_EXPR_BITWISE_XOR, &zero, sizeof(zero));
	e_cmp(rb, NFT_REG_1, NFT_CMP_NEQ, &zero, sizeof(zero));
}

static void e_redirect(struct rb *rb, uint16_t port)
{
	uint16_t be = htons(port);
	struct nftnl_expr *e = expr(rb, "immediate");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
	nftnl_expr_set_data(e, NFTNL_EXPR_IMM_DATA, &be, sizeof(be));
	e = expr(rb, "redir");
	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MIN, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_REDIR_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
}

/* ---- matches (each carries the dependency nft would add, so it means the same on any packet) --------- */

static void m_nfproto(struct rb *rb, uint8_t nfproto)
{
	e_meta(rb, NFT_META_NFPROTO, NFT_REG_1);
	e_cmp(rb, NFT_REG_1, NFT_CMP_EQ, &nfproto, sizeof(nfproto));
}

/* `meta l4proto (op) proto`; for IPv4 the protocol of the IP header (not of what an ICMP error quotes). */
static void m_l4proto_op(struct rb *rb, uint32_t op, uint8_t proto)
{
	e_meta(rb, NFT_META_L4PROTO, NFT_REG_1);
	e_cmp(rb, NFT_REG_1, op, &proto, sizeof(proto));
}

static void m_l4proto(struct rb *rb, uint8_t proto)
{
	m_l4proto_op(rb, NFT_CMP_EQ, proto);
}

/* ip saddr/daddr (op) addr. In an inet table an IPv6 packet would otherwise be read at IPv4 offsets. */
static void m_ip_addr(struct rb *rb, bool dst, uint32_t op, struct in_addr addr)
{
	m_nfproto(rb, NFPROTO_IPV4);
	e_payload(rb, NFT_PAYLOAD_NETWORK_HEADER, dst ? 16 : 12, 4, NFT_REG_1);
	e_cmp(rb, NFT_REG_1, op, &addr.s_addr, sizeof(addr.s_addr));
}

/* `ip saddr NET/LEN` (LEN 1..32; NET without host bits): load, mask, compare, as nft does. */
static void m_ip_saddr_in(struct rb *rb, struct in_addr net, uint8_t len)
{
	static const uint32_t zero;
	uint32_t mask = prefix_mask(len);
	struct nftnl_expr *e;

	m_nfproto(rb, NFPROTO_IPV4);
	e_payload(rb, NFT_PAYLOAD_NETWORK_HEADER, 12, 4, NFT_REG_1);
	if (len < 32) {
		e = expr(rb, "bitwise");
		if (!e)
			return;
		nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, sizeof(uint32_t));
		nftnl_expr_set_data(e, NFTNL_EXPR_BITWISE_MASK, &mask, sizeof(mask));
		nftnl_expr_set_data(e, NFTNL_EXPR_BITWISE_XOR, &zero, sizeof(zero));
	}
	e_cmp(rb, NFT_REG_1, NFT_CMP_EQ, &net.s_addr, sizeof(net.s_addr));
}

/* The destination port of TCP, UDP and the like sits at the same offset; callers match l4proto first. */
static void e_dport(struct rb *rb, uint32_t dreg)
{
	e_payload(rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, dreg);
}

static void m_dport(struct rb *rb, uint16_t port)
{
	uint16_t be = htons(port);

	e_dport(rb, NFT_REG_1);
	e_cmp(rb, NFT_REG_1, NFT_CMP_EQ, &be, sizeof(be));
}

/* iifname/oifname "PREFIX*": compares only the prefix bytes of the padded name. */
static void m_ifname_prefix(struct rb *rb, uint32_t key, const char *prefix)
{
	e_meta(rb, key, NFT_REG_1);
	e_cmp(rb, NFT_REG_1, NFT_CMP_EQ, prefix, (uint32_t)strlen(prefix));
}

/* ip daddr . tcp dport @set */
static void m_fwd_pair(struct rb *rb, const char *set, uint32_t set_id)
{
	m_nfproto(rb, NFPROTO_IPV4);
	m_l4proto(rb, IPPROTO_TCP);
	/* A concatenation: address in the first 32-bit register, port (zero-padded by the load) in the next. */
	e_payload(rb, NFT_PAYLOAD_NETWORK_HEADER, 16, 4, NFT_REG32_00);
	e_dport(rb, NFT_REG32_01);
	e_lookup(rb, NFT_REG32_00, set, set_id, false);
}

/* ---- batch messages ----------------------------------------------------------------------------------- */

static struct rb rule_start(struct batch *bt, const char *chain)
{
	struct rb rb = { .r = NULL, .oom = false };

	if (bt->err)
		return rb;
	rb.r = nftnl_rule_alloc();
	if (!rb.r) {
		bt->err = -ENOMEM;
		return rb;
	}
	nftnl_rule_set_u32(rb.r, NFTNL_RULE_FAMILY, NFPROTO_INET);
	nftnl_rule_set_str(rb.r, NFTNL_RULE_TABLE, bt->table);
	nftnl_rule_set_str(rb.r, NFTNL_RULE_CHAIN, chain);
	return rb;
}

/* Appends the rule to its chain and frees it. */
static void rule_end(struct batch *bt, struct rb *rb)
{
	struct nlmsghdr *nlh;

	if (!rb->r)
		return;
	if (rb->oom && !bt->err)
		bt->err = -ENOMEM;
	nlh = batch_hdr(bt, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
	if (nlh) {
		nftnl_rule_nlmsg_build_payload(nlh, rb->r);
		batch_next(bt);
	}
	nftnl_rule_free(rb->r);
	rb->r = NULL;
}

static void msg_table(struct batch *bt, uint16_t type, uint16_t flags)
{
	struct nftnl_table *t;
	struct nlmsghdr *nlh;

	if (bt->err)
		return;
	t = nftnl_table_alloc();
	if (!t) {
		bt->err = -ENOMEM;
		return;
	}
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, bt->table);
	nlh = batch_hdr(bt, type, flags);
	nftnl_table_nlmsg_build_payload(nlh, t);
	batch_next(bt);
	nftnl_table_free(t);
}

/* A regular chain when `type` is NULL; otherwise a base chain with policy accept. */
static void msg_chain(struct batch *bt, uint16_t msg, const char *name, const char *type, uint32_t hook,
		      int32_t prio)
{
	struct nftnl_chain *c;
	struct nlmsghdr *nlh;

	if (bt->err)
		return;
	c = nftnl_chain_alloc();
	if (!c) {
		bt->err = -ENOMEM;
		return;
	}
	nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, bt->table);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
	if (type) {
		nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, type);
		nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, hook);
		nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
		nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	}
	nlh = batch_hdr(bt, msg, msg == NFT_MSG_NEWCHAIN ? NLM_F_CREATE | NLM_F_EXCL : 0);
	nftnl_chain_nlmsg_build_payload(nlh, c);
	batch_next(bt);
	nftnl_chain_free(c);
}

/* Deletes (flushes) every rule of a chain. */
static void msg_flush(struct batch *bt, uint16_t msg, const char *chain)
{
	struct rb rb = rule_start(bt, chain);
	struct nlmsghdr *nlh;

	if (!rb.r)
		return;
	nlh = batch_hdr(bt, msg, 0);
	if (nlh) {
		nftnl_rule_nlmsg_build_payload(nlh, rb.r);
		batch_next(bt);
	}
	nftnl_rule_free(rb.r);
}

static void msg_counter(struct batch *bt, uint16_t msg, const char *name)
{
	struct nftnl_obj *o;
	struct nlmsghdr *nlh;

	if (bt->err)
		return;
	o = nftnl_obj_alloc();
	if (!o) {
		bt->err = -ENOMEM;
		return;
	}
	nftnl_obj_set_u32(o, NFTNL_OBJ_FAMILY, NFPROTO_INET);
	nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, bt->table);
	nftnl_obj_set_str(o, NFTNL_OBJ_NAME, name);
	nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
	nlh = batch_hdr(bt, msg, msg == NFT_MSG_NEWOBJ ? NLM_F_CREATE | NLM_F_EXCL : 0);
	nftnl_obj_nlmsg_build_payload(nlh, o);
	batch_next(bt);
	nftnl_obj_free(o);
}

/*
 * The timeouts of sandboxes' redirected TCP. The far end is the gateway's own listener, one hop away: a
 * handshake or a close that has not finished in seconds never will, and TIME_WAIT's job (late segments of
 * an old connection) is done by the sockets themselves. Established is the kernel's default (5 days); the
 * tunnel caps bound those. Every state is given: libnftnl sends the whole array, and 0 would mean 0 s.
 */
static void msg_ct_timeout(struct batch *bt)
{
	uint32_t t[NFTNL_CTTIMEOUT_TCP_MAX] = {
		[NFTNL_CTTIMEOUT_TCP_SYN_SENT] = 10,
		[NFTNL_CTTIMEOUT_TCP_SYN_RECV] = 10,
		[NFTNL_CTTIMEOUT_TCP_ESTABLISHED] = 432000,
		[NFTNL_CTTIMEOUT_TCP_FIN_WAIT] = 30,
		[NFTNL_CTTIMEOUT_TCP_CLOSE_WAIT] = 60,
		[NFTNL_CTTIMEOUT_TCP_LAST_ACK] = 30,
		[NFTNL_CTTIMEOUT_TCP_TIME_WAIT] = 2,
		[NFTNL_CTTIMEOUT_TCP_CLOSE] = 2,
		[NFTNL_CTTIMEOUT_TCP_SYN_SENT2] = 10,
		[NFTNL_CTTIMEOUT_TCP_RETRANS] = 300,
		[NFTNL_CTTIMEOUT_TCP_UNACK] = 300,
	};
	struct nftnl_obj *o;
	struct nlmsghdr *nlh;

	if (bt->err)
		return;
	o = nftnl_obj_alloc();
	if (!o) {
		bt->err = -ENOMEM;
		return;
	}
	nftnl_obj_set_u32(o, NFTNL_OBJ_FAMILY, NFPROTO_INET);
	nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, bt->table);
	nftnl_obj_set_str(o, NFTNL_OBJ_NAME, SANDBOX_CT_TIMEOUT);
	nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, NFT_OBJECT_CT_TIMEOUT);
	nftnl_obj_set_u16(o, NFTNL_OBJ_CT_TIMEOUT_L3PROTO, NFPROTO_IPV4);
	nftnl_obj_set_u8(o, NFTNL_OBJ_CT_TIMEOUT_L4PROTO, IPPROTO_TCP);
	nftnl_obj_set_data(o, NFTNL_OBJ_CT_TIMEOUT_ARRAY, t, sizeof(t));
	nlh = batch_hdr(bt, NFT_MSG_NEWOBJ, NLM_F_CREATE | NLM_F_EXCL);
	nftnl_obj_nlmsg_build_payload(nlh, o);
	batch_next(bt);
	nftnl_obj_free(o);
}

static struct nftnl_set *set_alloc(struct batch *bt, const char *name)
{
	struct nftnl_set *s;

	if (bt->err)
		return NULL;
	s = nftnl_set_alloc();
	if (!s) {
		bt->err = -ENOMEM;
		return NULL;
	}
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
	nftnl_set_set_str(s, NFTNL_SET_TABLE, bt->table);
	nftnl_set_set_str(s, NFTNL_SET_NAME, name);
	return s;
}

/*
 * Creates a set (a map when `map`, of verdicts). Returns its transaction id for lookups in the same batch
 * (0 after a failure).
 */
static uint32_t msg_newset(struct batch *bt, const char *name, uint32_t flags, uint32_t key_type,
			   uint32_t key_len, bool map)
{
	struct nftnl_set *s = set_alloc(bt, name);
	struct nlmsghdr *nlh;
	uint32_t id;

	if (!s)
		return 0;
	id = ++bt->set_id;
	nftnl_set_set_u32(s, NFTNL_SET_ID, id);
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS, flags | (map ? NFT_SET_MAP : 0));
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, key_type);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, key_len);
	if (map)
		nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
	if (key_type == TYPE_IFNAME) {
		/*
		 * The kernel does not care, but without this hint `nft list` shows every interface name
		 * key as "": the name is a host-order string, not a big-endian number.
		 */
		struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(64);

		if (!ud || !nftnl_udata_put_u32(ud, NFTNL_UDATA_SET_KEYBYTEORDER, NFT_BYTEORDER_HOST)) {
			bt->err = -ENOMEM;
		} else {
			nftnl_set_set_data(s, NFTNL_SET_USERDATA, nftnl_udata_buf_data(ud), nftnl_udata_buf_len(ud));
		}
		nftnl_udata_buf_free(ud);
	}
	nlh = batch_hdr(bt, NFT_MSG_NEWSET, NLM_F_CREATE | NLM_F_EXCL);
	if (!nlh) {
		nftnl_set_free(s);
		return 0;
	}
	nftnl_set_nlmsg_build_payload(nlh, s);
	batch_next(bt);
	nftnl_set_free(s);
	return bt->err ? 0 : id;
}

/*
 * An anonymous constant set such as {tcp, udp}: created, filled and (by the rule that follows) bound in
 * the same transaction, and freed by the kernel with that rule. `keys` holds n keys of key_len bytes.
 */
static uint32_t anon_set(struct batch *bt, uint32_t key_type, uint32_t key_len, const void *keys, unsigned n)
{
	struct nftnl_set *s;
	struct nlmsghdr *nlh;
	uint32_t id = msg_newset(bt, "__set%d", NFT_SET_ANONYMOUS | NFT_SET_CONSTANT, key_type, key_len, false);

	if (!id)
		return 0;
	s = set_alloc(bt, "__set%d");
	if (!s)
		return 0;
	/* The kernel picks the real name ("__set0", ...); elements find the set by this id instead. */
	nftnl_set_set_u32(s, NFTNL_SET_ID, id);
	for (unsigned i = 0; i < n; i++) {
		struct nftnl_set_elem *e = nftnl_set_elem_alloc();

		if (!e) {
			bt->err = -ENOMEM;
			nftnl_set_free(s);
			return 0;
		}
		nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, (const char *)keys + i * key_len, key_len);
		nftnl_set_elem_add(s, e);
	}
	nlh = batch_hdr(bt, NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL);
	if (nlh) {
		nftnl_set_elems_nlmsg_build_payload(nlh, s);
		batch_next(bt);
	}
	nftnl_set_free(s);
	return bt->err ? 0 : id;
}

/* Adds (NEWSETELEM, `jump` non-NULL for a vmap) or removes one ifname element. */
static void msg_ifname_elem(struct batch *bt, uint16_t msg, const char *set, const char *ifname, const char *jump)
{
	char key[IFNAMSIZ] = { 0 };
	struct nftnl_set *s = set_alloc(bt, set);
	struct nftnl_set_elem *e;
	struct nlmsghdr *nlh;

	if (!s)
		return;
	e = nftnl_set_elem_alloc();
	if (!e) {
		bt->err = -ENOMEM;
		nftnl_set_free(s);
		return;
	}
	/* The key is the name zero-padded to IFNAMSIZ, exactly what `meta iifname` loads. */
	memcpy(key, ifname, strnlen(ifname, IFNAMSIZ - 1));
	nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, sizeof(key));
	if (jump) {
		nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_VERDICT, (uint32_t)NFT_JUMP);
		nftnl_set_elem_set_str(e, NFTNL_SET_ELEM_CHAIN, jump);
	}
	nftnl_set_elem_add(s, e);
	nlh = batch_hdr(bt, msg, msg == NFT_MSG_NEWSETELEM ? NLM_F_CREATE | NLM_F_EXCL : 0);
	if (nlh) {
		nftnl_set_elems_nlmsg_build_payload(nlh, s);
		batch_next(bt);
	}
	nftnl_set_free(s);
}

static void msg_delset(struct batch *bt, uint16_t msg, const char *name)
{
	struct nftnl_set *s = set_alloc(bt, name);
	struct nlmsghdr *nlh;

	if (!s)
		return;
	nlh = batch_hdr(bt, msg, 0);
	nftnl_set_nlmsg_build_payload(nlh, s);
	batch_next(bt);
	nftnl_set_free(s);
}

/* ---- the ruleset -------------------------------------------------------------------------------------- */

static const char *const vmaps[4] = { "pre_vmap", "nat_vmap", "in_vmap", "fwd_vmap" };
static const char *const sb_suffix[4] = { "pre", "nat", "in", "fwd" };

/* `iifname != "NAME"`: the whole zero-padded name, as meta iifname loads it, so "lo" does not match "lo1". */
static void m_iifname_ne(struct rb *rb, const char *name)
{
	char key[IFNAMSIZ] = { 0 };

	memcpy(key, name, strnlen(name, IFNAMSIZ - 1));
	e_meta(rb, NFT_META_IIFNAME, NFT_REG_1);
	e_cmp(rb, NFT_REG_1, NFT_CMP_NEQ, key, sizeof(key));
}

/* `iifname vmap @map` */
static void rule_vmap(struct batch *bt, const char *chain, const char *map)
{
	struct rb rb = rule_start(bt, chain);

	e_meta(&rb, NFT_META_IIFNAME, NFT_REG_1);
	e_lookup(&rb, NFT_REG_1, map, 0, true);
	rule_end(bt, &rb);
}

/* `iifname "PREFIX*" drop`: an interface of ours that is not (yet) registered gets nothing through. */
static void rule_prefix_drop(struct batch *bt, const char *chain, const char *prefix)
{
	struct rb rb = rule_start(bt, chain);

	m_ifname_prefix(&rb, NFT_META_IIFNAME, prefix);
	e_verdict(&rb, NF_DROP);
	rule_end(bt, &rb);
}

static int build_skeleton(struct batch *bt, const struct nftcfg *c)
{
	struct rb rb;

	/*
	 * "Delete if it exists" without the 6.3 destroy operation: creating an existing table without
	 * NLM_F_EXCL is a no-op, so the delete that follows always has something to delete. The new table is
	 * created in the same transaction, so there is no instant without the fail-closed catch-all.
	 */
	msg_table(bt, NFT_MSG_NEWTABLE, NLM_F_CREATE);
	msg_table(bt, NFT_MSG_DELTABLE, 0);
	msg_table(bt, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL);

	for (unsigned i = 0; i < 4; i++)
		msg_newset(bt, vmaps[i], 0, TYPE_IFNAME, IFNAMSIZ, true);
	msg_newset(bt, "sandbox_ifaces", 0, TYPE_IFNAME, IFNAMSIZ, false);

	msg_chain(bt, NFT_MSG_NEWCHAIN, "prerouting_raw", "filter", NF_INET_PRE_ROUTING, -300);
	msg_chain(bt, NFT_MSG_NEWCHAIN, "prerouting_nat", "nat", NF_INET_PRE_ROUTING, -100);
	msg_chain(bt, NFT_MSG_NEWCHAIN, "input", "filter", NF_INET_LOCAL_IN, 0);
	msg_chain(bt, NFT_MSG_NEWCHAIN, "forward", "filter", NF_INET_FORWARD, 0);
	msg_chain(bt, NFT_MSG_NEWCHAIN, "output_raw", "filter", NF_INET_LOCAL_OUT, -300);

	rule_vmap(bt, "prerouting_raw", "pre_vmap");
	rule_prefix_drop(bt, "prerouting_raw", c->prefix);
	/*
	 * Every registered sandbox left through the vmap (its chain ends in a verdict), so what reaches this
	 * rule came in on some other interface. A pool source from there is forged: the gateway names a TCP
	 * peer by its source address alone, and must never hand one sandbox's policy to another host. lo is
	 * exempt because the host reaches its own gateway addresses over it.
	 */
	msg_counter(bt, NFT_MSG_NEWOBJ, POOL_SPOOF_COUNTER);
	msg_ct_timeout(bt);
	if (c->pool_prefix) {
		for (unsigned i = 0; i < 2; i++) {
			rb = rule_start(bt, "prerouting_raw");
			m_iifname_ne(&rb, "lo");
			m_ip_saddr_in(&rb, c->pool, c->pool_prefix);
			if (i == 0) {
				e_limited_log(&rb, c->group, "spoofed_source");
			} else {
				e_counter(&rb, POOL_SPOOF_COUNTER);
				e_verdict(&rb, NF_DROP);
			}
			rule_end(bt, &rb);
		}
	}
	/* The resolver's answers to sandboxes, untracked like the queries (sb<id>_pre). */
	if (c->pool_prefix) {
		uint16_t dns = htons(CRGW_NFT_DNS_PORT);

		rb = rule_start(bt, "output_raw");
		m_ip_saddr_in(&rb, c->pool, c->pool_prefix);
		m_l4proto(&rb, IPPROTO_UDP);
		e_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2, NFT_REG_1);
		e_cmp(&rb, NFT_REG_1, NFT_CMP_EQ, &dns, sizeof(dns));
		e_notrack(&rb);
		rule_end(bt, &rb);

		/* And the gateway's side of its own TCP services (sb<id>_pre untracks the sandbox's side). */
		uint16_t svc[CRGW_NFT_SERVICE_PORTS_MAX];
		uint32_t set;

		for (unsigned i = 0; i < c->n_svc; i++)
			svc[i] = htons(c->svc[i]);
		set = anon_set(bt, TYPE_INET_SERVICE, 2, svc, c->n_svc);
		rb = rule_start(bt, "output_raw");
		m_ip_saddr_in(&rb, c->pool, c->pool_prefix);
		m_l4proto(&rb, IPPROTO_TCP);
		e_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2, NFT_REG_1);
		e_lookup(&rb, NFT_REG_1, "__set%d", set, false);
		e_notrack(&rb);
		rule_end(bt, &rb);
	}
	rule_vmap(bt, "prerouting_nat", "nat_vmap");
	rule_vmap(bt, "input", "in_vmap");
	rule_vmap(bt, "forward", "fwd_vmap");
	/* Nothing is routed into a sandbox; its only peer is the gateway itself. */
	rb = rule_start(bt, "forward");
	e_meta(&rb, NFT_META_OIFNAME, NFT_REG_1);
	e_lookup(&rb, NFT_REG_1, "sandbox_ifaces", 0, false);
	e_verdict(&rb, NF_DROP);
	rule_end(bt, &rb);
	rule_prefix_drop(bt, "forward", c->prefix);
	return bt->err;
}

struct sbnames {
	char chain[4][NAME_MAX_LEN];
	char spoof[NAME_MAX_LEN], dns[NAME_MAX_LEN], drop[NAME_MAX_LEN], fwd[NAME_MAX_LEN];
};

static void sb_names(uint32_t id, struct sbnames *n)
{
	for (unsigned i = 0; i < 4; i++)
		snprintf(n->chain[i], sizeof(n->chain[i]), "sb%u_%s", id, sb_suffix[i]);
	snprintf(n->spoof, sizeof(n->spoof), "sb%u_spoof", id);
	snprintf(n->dns, sizeof(n->dns), "sb%u_dns", id);
	snprintf(n->drop, sizeof(n->drop), "sb%u_drop", id);
	snprintf(n->fwd, sizeof(n->fwd), "sb%u_fwd", id);
}

/* `limit rate 10/second burst 20 packets log group G prefix "packet_drop"` then `counter name X drop` */
static void rules_tail_drop(struct batch *bt, const struct nftcfg *c, const char *chain, const char *counter)
{
	struct rb rb = rule_start(bt, chain);

	e_limited_log(&rb, c->group, "packet_drop");
	rule_end(bt, &rb);
	rb = rule_start(bt, chain);
	e_counter(&rb, counter);
	e_verdict(&rb, NF_DROP);
	rule_end(bt, &rb);
}

static void chain_pre(struct batch *bt, const struct nftcfg *c, const struct crgw_nft_sandbox *sb,
		      const struct sbnames *n)
{
	const char *ch = n->chain[0];
	static const uint8_t tcp_udp[2] = { IPPROTO_TCP, IPPROTO_UDP };
	uint16_t dns = htons(CRGW_NFT_DNS_PORT);
	struct rb rb;

	/* IPv6 is disabled on both ends; anything that still arrives is dropped, counted and logged. */
	rb = rule_start(bt, ch);
	m_nfproto(&rb, NFPROTO_IPV6);
	e_limited_log(&rb, c->group, "packet_drop");
	rule_end(bt, &rb);
	rb = rule_start(bt, ch);
	m_nfproto(&rb, NFPROTO_IPV6);
	e_counter(&rb, n->drop);
	e_verdict(&rb, NF_DROP);
	rule_end(bt, &rb);

	/*
	 * Anti-spoof comes first and at priority -300, before conntrack and routing: a forged source must not
	 * create conntrack state or reach any later rule that trusts the source address.
	 */
	rb = rule_start(bt, ch);
	m_ip_addr(&rb, false, NFT_CMP_NEQ, sb->guest);
	e_limited_log(&rb, c->group, "spoofed_source");
	rule_end(bt, &rb);
	rb = rule_start(bt, ch);
	m_ip_addr(&rb, false, NFT_CMP_NEQ, sb->guest);
	e_counter(&rb, n->spoof);
	e_verdict(&rb, NF_DROP);
	rule_end(bt, &rb);

	/* DNS goes to the gateway's resolver or nowhere: the resolver is what enforces the policy. */
	for (unsigned i = 0; i < 2; i++) {
		uint32_t set = anon_set(bt, TYPE_INET_PROTOCOL, 1, tcp_udp, 2);

		rb = rule_start(bt, ch);
		m_ip_addr(&rb, true, NFT_CMP_NEQ, sb->gw);
		e_meta(&rb, NFT_META_L4PROTO, NFT_REG_1);
		e_lookup(&rb, NFT_REG_1, "__set%d", set, false);
		e_dport(&rb, NFT_REG_1);
		e_cmp(&rb, NFT_REG_1, NFT_CMP_EQ, &dns, sizeof(dns));
		if (i == 0) {
			e_limited_log(&rb, c->group, "dns_bypass_attempt");
		} else {
			e_counter(&rb, n->dns);
			e_verdict(&rb, NF_DROP);
		}
		rule_end(bt, &rb);
	}

	/*
	 * The host does not forward, so routing would drop these unseen; dropping them here counts and
	 * audits them. TCP to other addresses goes on to sb<id>_nat's redirect, and DNS was handled above.
	 */
	for (unsigned i = 0; i < 2; i++) {
		rb = rule_start(bt, ch);
		m_ip_addr(&rb, true, NFT_CMP_NEQ, sb->gw);
		m_l4proto_op(&rb, NFT_CMP_NEQ, IPPROTO_TCP);
		if (i == 0) {
			e_limited_log(&rb, c->group, "packet_drop");
		} else {
			e_counter(&rb, n->drop);
			e_verdict(&rb, NF_DROP);
		}
		rule_end(bt, &rb);
	}

	/*
	 * Queries to the gateway's own resolver skip conntrack (the replies too, in output_raw): a DNS
	 * exchange is never NATed and the input chain admits it by address and port, so tracking would only
	 * cost each query a conntrack entry and two NAT hook passes.
	 */
	rb = rule_start(bt, ch);
	m_ip_addr(&rb, true, NFT_CMP_EQ, sb->gw);
	m_l4proto(&rb, IPPROTO_UDP);
	m_dport(&rb, CRGW_NFT_DNS_PORT);
	e_notrack(&rb);
	e_verdict(&rb, NF_ACCEPT);
	rule_end(bt, &rb);

	/*
	 * The same for the gateway's TCP services (DNS, the explicit proxy, mediation): never NATed, admitted
	 * by address and port in sb<id>_in, so a tunnel or a mediation request spends no conntrack entry and
	 * no NAT hook passes on its client side. Replies are untracked in output_raw.
	 */
	uint16_t svc[CRGW_NFT_SERVICE_PORTS_MAX];
	uint32_t set;

	for (unsigned i = 0; i < c->n_svc; i++)
		svc[i] = htons(c->svc[i]);
	set = anon_set(bt, TYPE_INET_SERVICE, 2, svc, c->n_svc);
	rb = rule_start(bt, ch);
	m_ip_addr(&rb, true, NFT_CMP_EQ, sb->gw);
	m_l4proto(&rb, IPPROTO_TCP);
	e_dport(&rb, NFT_REG_1);
	e_lookup(&rb, NFT_REG_1, "__set%d", set, false);
	e_notrack(&rb);
	e_verdict(&rb, NF_ACCEPT);
	rule_end(bt, &rb);

	rb = rule_start(bt, ch);
	e_verdict(&rb, NF_ACCEPT);
	rule_end(bt, &rb);
}

static void chain_nat(struct batch *bt, const struct nftcfg *c, const struct crgw_nft_sandbox *sb,
		      const struct sbnames *n, uint32_t fwd_id)
{
	const char *ch = n->chain[1];
	struct rb rb;

	/*
	 * Only a connection's first packet comes through a nat chain: this is the sandbox's rate of new
	 * conntrack entries. Both rules see every such packet, so their limits agree. The burst is a second's
	 * worth: a build opening a few hundred connections at once is not cut.
	 */
	for (unsigned i = 0; c->new_conn_rate && i < 2; i++) {
		rb = rule_start(bt, ch);
		m_over_rate(&rb, c->new_conn_rate, c->new_conn_rate);
		if (i == 0) {
			e_limited_log(&rb, c->group, "rate_limited");
		} else {
			e_counter(&rb, n->drop);
			e_verdict(&rb, NF_DROP);
		}
		rule_end(bt, &rb);
	}
	/* The new entry takes the short closing timeouts (only an unconfirmed entry can, so not in sb<id>_pre). */
	rb = rule_start(bt, ch);
	m_l4proto(&rb, IPPROTO_TCP);
	e_ct_timeout(&rb, SANDBOX_CT_TIMEOUT);
	rule_end(bt, &rb);

	/* Pairs the DNS layer bound for direct forwarding keep their destination. */
	rb = rule_start(bt, ch);
	m_fwd_pair(&rb, n->fwd, fwd_id);
	e_verdict(&rb, NF_ACCEPT);
	rule_end(bt, &rb);

	rb = rule_start(bt, ch);
	m_ip_addr(&rb, true, NFT_CMP_NEQ, sb->gw);
	m_l4proto(&rb, IPPROTO_TCP);
	m_dport(&rb, 80);
	e_redirect(&rb, c->http_port);
	rule_end(bt, &rb);

	rb = rule_start(bt, ch);
	m_ip_addr(&rb, true, NFT_CMP_NEQ, sb->gw);
	m_l4proto(&rb, IPPROTO_TCP);
	e_redirect(&rb, c->tcp_port);
	rule_end(bt, &rb);

	rb = rule_start(bt, ch);
	e_verdict(&rb, NF_ACCEPT);
	rule_end(bt, &rb);
}

static void chain_in(struct batch *bt, const struct nftcfg *c, const struct crgw_nft_sandbox *sb,
		     const struct sbnames *n)
{
	const char *ch = n->chain[2];
	uint16_t svc[CRGW_NFT_SERVICE_PORTS_MAX];
	uint16_t listeners[2] = { htons(c->http_port), htons(c->tcp_port) };
	uint32_t set;
	struct rb rb;

	for (unsigned i = 0; i < c->n_svc; i++)
		svc[i] = htons(c->svc[i]);

	rb = rule_start(bt, ch);
	m_ip_addr(&rb, true, NFT_CMP_EQ, sb->gw);
	m_l4proto(&rb, IPPROTO_UDP);
	m_dport(&rb, CRGW_NFT_DNS_PORT);
	e_verdict(&rb, NF_ACCEPT);
	rule_end(bt, &rb);

	set = anon_set(bt, TYPE_INET_SERVICE, 2, svc, c->n_svc);
	rb = rule_start(bt, ch);
	m_ip_addr(&rb, true, NFT_CMP_EQ, sb->gw);
	m_l4proto(&rb, IPPROTO_TCP);
	e_dport(&rb, NFT_REG_1);
	e_lookup(&rb, NFT_REG_1, "__set%d", set, false);
	e_verdict(&rb, NF_ACCEPT);
	rule_end(bt, &rb);

	/*
	 * The listener ports only for connections our own redirect made: a sandbox connecting to them
	 * directly would present a destination that the listener cannot tell from a redirected one.
	 */
	set = anon_set(bt, TYPE_INET_SERVICE, 2, listeners, c->http_port == c->tcp_port ? 1 : 2);
	rb = rule_start(bt, ch);
	e_ct_any(&rb, NFT_CT_STATUS, IPS_DST_NAT);
	m_l4proto(&rb, IPPROTO_TCP);
	e_dport(&rb, NFT_REG_1);
	e_lookup(&rb, NFT_REG_1, "__set%d", set, false);
	e_verdict(&rb, NF_ACCEPT);
	rule_end(bt, &rb);

	/*
	 * After the explicit allows, so it only adds: replies within connections the gateway host opened
	 * towards the sandbox, and ICMP errors about flows already accepted. A sandbox cannot make a flow
	 * "established" on its own: its first packet is dropped below, so conntrack never confirms the entry,
	 * and spoofed sources never got past sb<id>_pre. No conntrack helpers are assigned, so "related"
	 * opens no expectation channels.
	 */
	rb = rule_start(bt, ch);
	e_ct_any(&rb, NFT_CT_STATE, NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED));
	e_verdict(&rb, NF_ACCEPT);
	rule_end(bt, &rb);

	rules_tail_drop(bt, c, ch, n->drop);
}

static void chain_fwd(struct batch *bt, const struct nftcfg *c, const struct sbnames *n, uint32_t fwd_id)
{
	const char *ch = n->chain[3];
	struct rb rb = rule_start(bt, ch);

	m_fwd_pair(&rb, n->fwd, fwd_id);
	e_verdict(&rb, NF_ACCEPT);
	rule_end(bt, &rb);
	rules_tail_drop(bt, c, ch, n->drop);
}

static int build_sandbox(struct batch *bt, const struct nftcfg *c, const struct crgw_nft_sandbox *sb)
{
	struct sbnames n;
	struct nftnl_set *s;
	struct nlmsghdr *nlh;
	uint32_t fwd_id;

	sb_names(sb->id, &n);
	msg_counter(bt, NFT_MSG_NEWOBJ, n.spoof);
	msg_counter(bt, NFT_MSG_NEWOBJ, n.dns);
	msg_counter(bt, NFT_MSG_NEWOBJ, n.drop);

	/* ipv4_addr . inet_service with per-element timeouts; filled later by the DNS layer. */
	s = set_alloc(bt, n.fwd);
	if (!s)
		return bt->err;
	fwd_id = ++bt->set_id;
	nftnl_set_set_u32(s, NFTNL_SET_ID, fwd_id);
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS, NFT_SET_TIMEOUT);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, TYPE_CONCAT(TYPE_IPADDR, TYPE_INET_SERVICE));
	/*
	 * 4-byte address, port padded to 4. No field description (NFTA_SET_DESC_CONCAT): the kernel wants
	 * that only with NFT_SET_CONCAT, which would steer it to the interval backend; a hash needs neither.
	 */
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, 8);
	nlh = batch_hdr(bt, NFT_MSG_NEWSET, NLM_F_CREATE | NLM_F_EXCL);
	if (nlh) {
		nftnl_set_nlmsg_build_payload(nlh, s);
		batch_next(bt);
	}
	nftnl_set_free(s);

	for (unsigned i = 0; i < 4; i++)
		msg_chain(bt, NFT_MSG_NEWCHAIN, n.chain[i], NULL, 0, 0);
	chain_pre(bt, c, sb, &n);
	chain_nat(bt, c, sb, &n, fwd_id);
	chain_in(bt, c, sb, &n);
	chain_fwd(bt, c, &n, fwd_id);

	/* Last, so that the interface leaves the catch-all only once its chains are complete. */
	for (unsigned i = 0; i < 4; i++)
		msg_ifname_elem(bt, NFT_MSG_NEWSETELEM, vmaps[i], sb->ifname, n.chain[i]);
	msg_ifname_elem(bt, NFT_MSG_NEWSETELEM, "sandbox_ifaces", sb->ifname, NULL);
	return bt->err;
}

static int build_sandbox_del(struct batch *bt, uint32_t id, const char *ifname, bool force)
{
	uint16_t m_elem = force ? MSG_DESTROYSETELEM : NFT_MSG_DELSETELEM;
	uint16_t m_rule = force ? MSG_DESTROYRULE : NFT_MSG_DELRULE;
	uint16_t m_chain = force ? MSG_DESTROYCHAIN : NFT_MSG_DELCHAIN;
	uint16_t m_set = force ? MSG_DESTROYSET : NFT_MSG_DELSET;
	uint16_t m_obj = force ? MSG_DESTROYOBJ : NFT_MSG_DELOBJ;
	struct sbnames n;

	sb_names(id, &n);
	/* Order matters within the transaction: nothing may be deleted while something still refers to it. */
	for (unsigned i = 0; i < 4; i++)
		msg_ifname_elem(bt, m_elem, vmaps[i], ifname, NULL);
	msg_ifname_elem(bt, m_elem, "sandbox_ifaces", ifname, NULL);
	for (unsigned i = 0; i < 4; i++)
		msg_flush(bt, m_rule, n.chain[i]);
	for (unsigned i = 0; i < 4; i++)
		msg_chain(bt, m_chain, n.chain[i], NULL, 0, 0);
	msg_delset(bt, m_set, n.fwd);
	msg_counter(bt, m_obj, n.spoof);
	msg_counter(bt, m_obj, n.dns);
	msg_counter(bt, m_obj, n.drop);
	return bt->err;
}

/* ---- public ------------------------------------------------------------------------------------------- */

/* Opens a socket, builds with `build`, sends. One function so every entry point cleans up the same way. */
typedef int (*build_fn)(struct batch *bt, const void *arg);

static int run_batch(const char *table, build_fn build, const void *arg)
{
	struct netctl_nl nl = { 0 };
	struct batch bt = { 0 };
	int err;

	err = netctl_nl_open(&nl, NETLINK_NETFILTER);
	if (err)
		goto out;
	err = batch_init(&bt, &nl, table);
	if (err)
		goto out;
	err = build(&bt, arg);
	if (err)
		goto out;
	err = batch_send(&bt);
out:
	batch_free(&bt);
	netctl_nl_close(&nl);
	return err;
}

static int do_reset(struct batch *bt, const void *arg)
{
	return build_skeleton(bt, arg);
}

int crgw_nft_reset(const struct crgw_nft_config *cfg)
{
	struct nftcfg c;
	int err = cfg_resolve(cfg, &c);

	if (err)
		return err;
	return run_batch(c.table, do_reset, &c);
}

struct add_arg {
	const struct nftcfg *c;
	const struct crgw_nft_sandbox *sb;
};

static int do_add(struct batch *bt, const void *arg)
{
	const struct add_arg *a = arg;

	return build_sandbox(bt, a->c, a->sb);
}

int crgw_nft_sandbox_add(const struct crgw_nft_config *cfg, const struct crgw_nft_sandbox *sb)
{
	struct nftcfg c;
	struct add_arg a = { .c = &c, .sb = sb };
	int err = cfg_resolve(cfg, &c);

	if (err)
		return err;
	if (!sb || !netctl_ifname_ok(sb->ifname) || sb->gw.s_addr == sb->guest.s_addr)
		return -EINVAL;
	return run_batch(c.table, do_add, &a);
}

struct del_arg {
	uint32_t id;
	const char *ifname;
	bool force;
};

static int do_del(struct batch *bt, const void *arg)
{
	const struct del_arg *a = arg;

	return build_sandbox_del(bt, a->id, a->ifname, a->force);
}

static int table_exists(const char *table)
{
	struct netctl_nl nl = { 0 };
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nftnl_table *t = NULL;
	struct nlmsghdr *nlh;
	int err;

	err = netctl_nl_open(&nl, NETLINK_NETFILTER);
	if (err)
		goto out;
	t = nftnl_table_alloc();
	if (!t) {
		err = -ENOMEM;
		goto out;
	}
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, table);
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, NFPROTO_INET, 0, 0);
	nftnl_table_nlmsg_build_payload(nlh, t);
	err = netctl_nl_talk(&nl, nlh, NULL, NULL);
out:
	nftnl_table_free(t);
	netctl_nl_close(&nl);
	return err;
}

int crgw_nft_sandbox_del(const struct crgw_nft_config *cfg, uint32_t id, const char *ifname, unsigned flags)
{
	struct nftcfg c;
	struct del_arg a = { .id = id, .ifname = ifname, .force = flags & CRGW_NFT_F_FORCE };
	int err = cfg_resolve(cfg, &c);

	if (err)
		return err;
	if (!netctl_ifname_ok(ifname) || (flags & ~CRGW_NFT_F_FORCE))
		return -EINVAL;
	err = run_batch(c.table, do_del, &a);
	/* Even "destroy" needs the table; with no table there is nothing of the sandbox left to remove. */
	if (err == -ENOENT && a.force && table_exists(c.table) == -ENOENT)
		return 0;
	return err;
}

static int do_table_delete(struct batch *bt, const void *arg)
{
	(void)arg;
	msg_table(bt, NFT_MSG_DELTABLE, 0);
	return bt->err;
}

int crgw_nft_table_delete(const struct crgw_nft_config *cfg)
{
	struct nftcfg c;
	int err = cfg_resolve(cfg, &c);

	if (err)
		return err;
	return run_batch(c.table, do_table_delete, NULL);
}

static int obj_cb(const struct nlmsghdr *nlh, void *data)
{
	struct crgw_nft_counter *out = data;
	struct nftnl_obj *o = nftnl_obj_alloc();

	if (!o) {
		errno = ENOMEM;
		return MNL_CB_ERROR;
	}
	if (nftnl_obj_nlmsg_parse(nlh, o) < 0) {
		nftnl_obj_free(o);
		errno = EBADMSG;
		return MNL_CB_ERROR;
	}
	out->packets = nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_PKTS);
	out->bytes = nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_BYTES);
	nftnl_obj_free(o);
	return MNL_CB_OK;
}

/* Reads named counters `names[i]` of `table` into `dst[i]`; the reads are not one snapshot. */
static int counters_read(const char *table, const char *const *names, struct crgw_nft_counter *const *dst,
			 unsigned n)
{
	struct netctl_nl nl = { 0 };
	int err;

	err = netctl_nl_open(&nl, NETLINK_NETFILTER);
	if (err)
		goto out;
	for (unsigned i = 0; i < n; i++) {
		char buf[MNL_SOCKET_BUFFER_SIZE];
		struct nftnl_obj *o = nftnl_obj_alloc();
		struct nlmsghdr *nlh;

		if (!o) {
			err = -ENOMEM;
			goto out;
		}
		nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, table);
		nftnl_obj_set_str(o, NFTNL_OBJ_NAME, names[i]);
		nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
		nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETOBJ, NFPROTO_INET, 0, 0);
		nftnl_obj_nlmsg_build_payload(nlh, o);
		nftnl_obj_free(o);
		err = netctl_nl_talk(&nl, nlh, obj_cb, dst[i]);
		if (err)
			goto out;
	}
out:
	netctl_nl_close(&nl);
	return err;
}

int crgw_nft_counters_get(const struct crgw_nft_config *cfg, uint32_t id, struct crgw_nft_counters *out)
{
	struct crgw_nft_counters tmp = { 0 };
	struct crgw_nft_counter *const dst[3] = { &tmp.spoof, &tmp.dns, &tmp.drop };
	struct sbnames n;
	struct nftcfg c;
	int err = cfg_resolve(cfg, &c);

	if (err)
		return err;
	if (!out)
		return -EINVAL;
	sb_names(id, &n);
	const char *const names[3] = { n.spoof, n.dns, n.drop };

	err = counters_read(c.table, names, dst, 3);
	/* Each counter on its own is exact; nothing partial reaches the caller. */
	if (!err)
		*out = tmp;
	return err;
}

int crgw_nft_pool_spoof_get(const struct crgw_nft_config *cfg, struct crgw_nft_counter *out)
{
	struct crgw_nft_counter tmp = { 0 };
	struct crgw_nft_counter *const dst[1] = { &tmp };
	const char *const names[1] = { POOL_SPOOF_COUNTER };
	struct nftcfg c;
	int err = cfg_resolve(cfg, &c);

	if (err)
		return err;
	if (!out)
		return -EINVAL;
	err = counters_read(c.table, names, dst, 1);
	if (!err)
		*out = tmp;
	return err;
}
