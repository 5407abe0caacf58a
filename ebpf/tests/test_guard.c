/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sandbox guard (libcrgw-ebpf) with the real kernel and real packets; needs root.
 *
 * The process first moves into a network namespace of its own, which plays the gateway's side, and makes
 * a second one for the sandbox, joined by a veth pair ("gtest0" on the gateway side with 10.203.0.1/30,
 * "eth0" in the sandbox with 10.203.0.2/30 and a known MAC). Both namespaces exist only through this
 * process's descriptors: when it ends, however it ends, the kernel removes them with the links, qdiscs
 * and filters in them, and with the last descriptor the program and its maps. Nothing is added to the
 * machine's own namespace (no link, address or route), and a gateway running there (holding port 53,
 * with its nftables table) neither sees these packets nor gets in the way.
 *
 * Packets are sent from the sandbox with ordinary sockets (a socket stays in the namespace it was made
 * in) and, for everything forged, as whole frames on an AF_PACKET socket. Every case checks all five
 * counters of the slot by difference (exactly one packet in the expected class, nothing anywhere else)
 * and the drop event it produced. Neighbour entries are made permanent after the first exchange so that
 * no ARP is sent behind the test's back, and IPv6 is off in both namespaces.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>

#include <bpf/bpf.h>

#include "tap.h"
#include "crgw/ebpf.h"
#include "guard.h"
#include "guard_priv.h"

#define SLOT 7
#define MAX_SLOTS 64
#define HOST_IF "gtest0"
#define HOST_IF2 "gtest1"
#define GUEST_IF "eth0"
#define GUEST_VLAN_IF "eth0.5"
#define PROG_NAME "crgw_guard"

/* 10.203.0.x: the gateway is .1, the guest .2; .66 is a forged source, .77 some other host. */
#define GW 1
#define GUEST 2
#define FORGED 66
#define OTHER 77

static const uint8_t guest_mac[6] = { 0x02, 0xcb, 0x00, 0x00, 0x00, 0x02 };
static const uint8_t host_mac[6] = { 0x02, 0xcb, 0x00, 0x00, 0x00, 0x01 };
static const uint8_t forged_mac[6] = { 0x02, 0xcb, 0x00, 0x00, 0x00, 0x99 };

static int gw_ns = -1, sb_ns = -1;
static int host_ifindex, guest_ifindex, guest_vlan_ifindex;
static int pkt_fd = -1; /* AF_PACKET, in the sandbox */
static struct crgw_guard *g;
static struct crgw_guard_sandbox sb;

/* ---- small helpers ------------------------------------------------------------------------------------ */

/* Prints a diagnostic; every line of it gets the "# " that TAP requires. */
__attribute__((format(printf, 1, 2))) static void diag(const char *fmt, ...)
{
	char text[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	for (char *line = text, *nl; line && *line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		printf("# %s\n", line);
	}
	fflush(stdout);
}

__attribute__((noreturn, format(printf, 1, 2))) static void bail(const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	printf("Bail out! %s\n", text);
	fflush(stdout);
	exit(1);
}

static void enter(int ns)
{
	if (setns(ns, CLONE_NEWNET) != 0)
		bail("setns: %s", strerror(errno));
}

/* Runs a shell command in the calling thread's namespace; returns its exit status. */
__attribute__((format(printf, 1, 2))) static int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	fflush(stdout);
	st = system(cmd);
	if (st != 0)
		diag("command failed (%d): %s", st, cmd);
	return st;
}

/* The first line of a command's output that contains `needle` is reported as true. */
static bool output_has(const char *cmd, const char *needle)
{
	char line[512];
	bool found = false;
	FILE *f;

	fflush(stdout);
	f = popen(cmd, "r");
	if (!f)
		return true; /* cannot tell: count it as present, so the check fails */
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			found = true;
	pclose(f);
	return found;
}

static bool output_empty(const char *cmd)
{
	char line[512];
	bool empty = true;
	FILE *f;

	fflush(stdout);
	f = popen(cmd, "r");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		empty = false;
	pclose(f);
	return empty;
}

static int sysctl_write(const char *path, const char *value)
{
	char full[256];
	int fd, rc = 0;

	snprintf(full, sizeof(full), "/proc/sys/%s", path);
	fd = open(full, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, value, strlen(value)) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static uint32_t ip4(unsigned last)
{
	return htonl((10u << 24) | (203u << 16) | last);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int sb_socket(int type)
{
	int fd;

	enter(sb_ns);
	fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
	enter(gw_ns);
	if (fd < 0)
		bail("socket in the sandbox: %s", strerror(errno));
	return fd;
}

static uint16_t local_port(int fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	if (getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		return 0;
	return ntohs(a.sin_port);
}

/* ---- the system's BPF programs and the guard's maps --------------------------------------------------- */

/* Programs named PROG_NAME; `*total` all programs. */
static int count_progs(int *total)
{
	__u32 id = 0;
	int n = 0, all = 0;

	while (bpf_prog_get_next_id(id, &id) == 0) {
		struct bpf_prog_info info;
		__u32 len = sizeof(info);
		int fd = bpf_prog_get_fd_by_id(id);

		if (fd < 0)
			continue; /* gone meanwhile */
		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
			all++;
			if (strcmp(info.name, PROG_NAME) == 0)
				n++;
		}
		close(fd);
	}
	*total = all;
	return n;
}

static int map_entries(struct crgw_guard *guard)
{
	int fd = crgw_guard_map_fd(guard, "sandboxes"), n = 0;
	__u32 key, next;
	void *prev = NULL;

	if (fd < 0)
		return -1;
	while (bpf_map_get_next_key(fd, prev, &next) == 0 && n < 100000) {
		key = next;
		prev = &key;
		n++;
	}
	return n;
}

static bool map_has(struct crgw_guard *guard, int ifindex)
{
	struct guard_sandbox v;
	__u32 key = (__u32)ifindex;

	return bpf_map_lookup_elem(crgw_guard_map_fd(guard, "sandboxes"), &key, &v) == 0;
}

static bool has_clsact(const char *ifname)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "tc qdisc show dev %s 2>&1", ifname);
	return output_has(cmd, "clsact");
}

/* ---- frames ------------------------------------------------------------------------------------------- */

static uint16_t csum(const void *data, size_t len, uint32_t sum)
{
	const uint8_t *p = data;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

static size_t put_eth(uint8_t *b, const uint8_t *src, uint16_t type)
{
	memcpy(b, host_mac, 6);
	memcpy(b + 6, src, 6);
	b[12] = (uint8_t)(type >> 8);
	b[13] = (uint8_t)type;
	return 14;
}

enum fkind { F_IPV4, F_ARP, F_IPV6, F_VLAN, F_VLAN_DEV, F_RAW };

/* One forged or hand-made frame and what the guard must make of it. */
struct fcase {
	const char *name;
	enum fkind kind;
	unsigned cls;
	const uint8_t *eth_src; /* NULL: the guest's */
	uint8_t src, dst;       /* 10.203.0.x: IPv4 source and destination, ARP sender and target */
	uint8_t proto;
	uint16_t sport, dport;
	uint16_t frag; /* IPv4 flags and fragment offset, host order */
	uint8_t ihl;   /* 0: 5 */
	bool short_l4; /* only 2 bytes of the TCP/UDP header */
	uint16_t tot_extra; /* the IPv4 total length claims this many bytes more than the frame has */
	const uint8_t *sha; /* ARP sender MAC, NULL: the guest's */
	uint8_t pln;        /* ARP protocol length, 0: 4 */
	uint16_t vid;       /* F_VLAN */
	uint16_t ethertype; /* F_RAW */
	uint8_t icmp_type;  /* IPPROTO_ICMP: 0 an echo request; 3 (unreachable) quoting a UDP packet inner_src -> inner_dst */
	uint8_t inner_src, inner_dst;
	/* The drop event's expected fields beyond reason, slot and source MAC. */
	int ev_family;
	uint16_t ev_ethertype;
	bool ev_ports;
};

/* IPv4 header and a TCP SYN, UDP datagram with 4 bytes or ICMP echo, at `b`. */
static size_t put_ipv4(uint8_t *b, const struct fcase *c)
{
	uint8_t *l4 = b + 20;
	size_t l4len;

	memset(b, 0, 20);
	switch (c->proto) {
	case IPPROTO_TCP:
		l4len = 20;
		memset(l4, 0, l4len);
		l4[0] = (uint8_t)(c->sport >> 8), l4[1] = (uint8_t)c->sport;
		l4[2] = (uint8_t)(c->dport >> 8), l4[3] = (uint8_t)c->dport;
		l4[7] = 1;     /* sequence */
		l4[12] = 0x50; /* data offset 5 */
		l4[13] = 0x02; /* SYN */
		l4[14] = 0xff, l4[15] = 0xff;
		break;
	case IPPROTO_UDP:
		l4len = 12;
		memset(l4, 0, l4len);
		l4[0] = (uint8_t)(c->sport >> 8), l4[1] = (uint8_t)c->sport;
		l4[2] = (uint8_t)(c->dport >> 8), l4[3] = (uint8_t)c->dport;
		l4[5] = (uint8_t)l4len;
		memcpy(l4 + 8, "ping", 4);
		break;
	case IPPROTO_ICMP:
		l4len = 8;
		memset(l4, 0, l4len);
		l4[0] = 8; /* echo request */
		l4[5] = 1;
		if (c->icmp_type) {
			uint8_t *in = l4 + 8;

			l4[0] = c->icmp_type;
			l4[1] = 3; /* port unreachable */
			l4[5] = 0;
			memset(in, 0, 28);
			in[0] = 0x45, in[3] = 28, in[8] = 64, in[9] = IPPROTO_UDP;
			memcpy(in + 12, &(uint32_t){ ip4(c->inner_src) }, 4);
			memcpy(in + 16, &(uint32_t){ ip4(c->inner_dst) }, 4);
			in[20] = 0, in[21] = 53, in[22] = 0x9c, in[23] = 0x40, in[25] = 8; /* 53 -> 40000 */
			l4len += 28;
		}
		memcpy(l4 + 2, &(uint16_t){ csum(l4, l4len, 0) }, 2);
		break;
	default:
		l4len = 8;
		memset(l4, 0xab, l4len);
	}
	if (c->short_l4)
		l4len = 2;
	b[0] = (uint8_t)(0x40 | (c->ihl ? c->ihl : 5));
	b[2] = (uint8_t)((20 + l4len + c->tot_extra) >> 8), b[3] = (uint8_t)(20 + l4len + c->tot_extra);
	b[5] = 0x42;
	b[6] = (uint8_t)(c->frag >> 8), b[7] = (uint8_t)c->frag;
	b[8] = 64;
	b[9] = c->proto;
	memcpy(b + 12, &(uint32_t){ ip4(c->src) }, 4);
	memcpy(b + 16, &(uint32_t){ ip4(c->dst) }, 4);
	memcpy(b + 10, &(uint16_t){ csum(b, 20, 0) }, 2);
	return 20 + l4len;
}

static size_t build_frame(uint8_t *b, const struct fcase *c)
{
	const uint8_t *src = c->eth_src ? c->eth_src : guest_mac;
	size_t n;

	switch (c->kind) {
	case F_IPV4:
	case F_VLAN_DEV: /* the VLAN device adds the tag */
		n = put_eth(b, src, ETH_P_IP);
		return n + put_ipv4(b + n, c);
	case F_VLAN:
		n = put_eth(b, src, ETH_P_8021Q);
		b[n] = (uint8_t)(c->vid >> 8), b[n + 1] = (uint8_t)c->vid;
		b[n + 2] = 0x08, b[n + 3] = 0x00;
		n += 4;
		return n + put_ipv4(b + n, c);
	case F_ARP: {
		uint8_t pln = c->pln ? c->pln : 4;

		n = put_eth(b, src, ETH_P_ARP);
		uint8_t *a = b + n;

		memset(a, 0, 8 + 2 * (6 + pln));
		a[1] = 1;                /* Ethernet */
		a[2] = 0x08, a[3] = 0x00; /* IPv4 */
		a[4] = 6;
		a[5] = pln;
		a[7] = 1; /* request */
		memcpy(a + 8, c->sha ? c->sha : guest_mac, 6);
		memcpy(a + 14, &(uint32_t){ ip4(c->src) }, 4);
		memcpy(a + 14 + pln + 6, &(uint32_t){ ip4(c->dst) }, 4);
		return n + 8 + 2 * (6 + pln);
	}
	case F_IPV6: {
		static const uint8_t s6[16] = { 0xfe, 0x80, [13] = 0xcb, [15] = 2 };
		static const uint8_t d6[16] = { 0xfe, 0x80, [15] = 1 };

		n = put_eth(b, src, ETH_P_IPV6);
		uint8_t *h = b + n;

		memset(h, 0, 40 + 12);
		h[0] = 0x60;
		h[5] = 12; /* payload length */
		h[6] = IPPROTO_UDP;
		h[7] = 64;
		memcpy(h + 8, s6, 16);
		memcpy(h + 24, d6, 16);
		h[40] = (uint8_t)(c->sport >> 8), h[41] = (uint8_t)c->sport;
		h[42] = (uint8_t)(c->dport >> 8), h[43] = (uint8_t)c->dport;
		h[45] = 12;
		memcpy(h + 48, "ping", 4);
		return n + 40 + 12;
	}
	case F_RAW:
		n = put_eth(b, src, c->ethertype);
		memset(b + n, 0, 46);
		return n + 46;
	}
	return 0;
}

static void send_frame(const uint8_t *frame, size_t len, int ifindex)
{
	struct sockaddr_ll to = {
		.sll_family = AF_PACKET,
		.sll_ifindex = ifindex,
		.sll_halen = 6,
	};

	memcpy(to.sll_addr, host_mac, 6);
	if (sendto(pkt_fd, frame, len, 0, (struct sockaddr *)&to, sizeof(to)) != (ssize_t)len)
		diag("sendto(AF_PACKET): %s", strerror(errno));
}

/* ---- counters and events ------------------------------------------------------------------------------ */

static struct crgw_guard_counters counters_now(void)
{
	struct crgw_guard_counters c;
	int rc = crgw_guard_counters(g, SLOT, &c);

	if (rc < 0)
		bail("crgw_guard_counters: %s", strerror(-rc));
	return c;
}

static bool counters_equal(const struct crgw_guard_counters *a, const uint64_t want[CRGW_GUARD_CLASS_COUNT])
{
	for (int i = 0; i < CRGW_GUARD_CLASS_COUNT; i++)
		if (a->packets[i] != want[i])
			return false;
	return true;
}

/*
 * Waits (at most 1 s) for the slot's packet counts to be `want`, and 50 ms more for any that follow.
 * `*reached` (may be NULL): when they were first seen equal.
 */
static struct crgw_guard_counters wait_counters_at(const uint64_t want[CRGW_GUARD_CLASS_COUNT], double *reached)
{
	double end = now_s() + 1.0;
	struct crgw_guard_counters c = counters_now();

	while (!counters_equal(&c, want) && now_s() < end) {
		sleep_ms(5);
		c = counters_now();
	}
	if (reached)
		*reached = now_s();
	sleep_ms(50);
	return counters_now();
}

static struct crgw_guard_counters wait_counters(const uint64_t want[CRGW_GUARD_CLASS_COUNT])
{
	return wait_counters_at(want, NULL);
}

#define MAX_EVENTS 512
static struct crgw_guard_drop events[MAX_EVENTS];
static unsigned n_events;

static void on_drop(void *arg, const struct crgw_guard_drop *d)
{
	(void)arg;
	if (n_events < MAX_EVENTS)
		events[n_events] = *d;
	n_events++;
}

/* Collects what is ready, after waiting up to `wait_ms` for the descriptor to say there is something. */
static int collect_events(int wait_ms)
{
	struct pollfd p = { .fd = crgw_guard_events_fd(g), .events = POLLIN };
	int n;

	n_events = 0;
	if (poll(&p, 1, wait_ms) < 0)
		return -errno;
	n = crgw_guard_events_poll(g, on_drop, NULL);
	return n < 0 ? n : (int)n_events;
}

static const char *class_name(unsigned cls)
{
	const char *n = crgw_guard_reason_name(cls);

	return n ? n : "?";
}

/* What one packet must have done: one count in `cls`, `bytes` of it (0: any), and its drop event. */
struct expect {
	unsigned cls;
	size_t bytes;
	/* the event, for a drop */
	const uint8_t *mac;
	uint16_t ethertype;
	int family;
	uint8_t proto;
	uint32_t src, dst; /* network order, AF_INET only */
	uint16_t sport, dport;
};

static void check_packet(const char *name, const struct crgw_guard_counters *before, const struct expect *e)
{
	uint64_t want[CRGW_GUARD_CLASS_COUNT];
	char why[512] = "";
	size_t off = 0;

	for (int i = 0; i < CRGW_GUARD_CLASS_COUNT; i++)
		want[i] = before->packets[i] + (i == (int)e->cls);
	struct crgw_guard_counters after = wait_counters(want);

	for (int i = 0; i < CRGW_GUARD_CLASS_COUNT; i++)
		if (after.packets[i] != want[i])
			off += (size_t)snprintf(why + off, sizeof(why) - off, " %s %+lld", class_name((unsigned)i),
						(long long)(after.packets[i] - before->packets[i]));
	uint64_t bytes = after.bytes[e->cls] - before->bytes[e->cls];

	if (!why[0] && (e->bytes ? bytes != e->bytes : bytes == 0))
		snprintf(why, sizeof(why), " %llu bytes counted, %zu expected", (unsigned long long)bytes, e->bytes);
	tap_result(!why[0], "%s: %s%s%s", name, class_name(e->cls), why[0] ? ", got" : "", why);

	int n = collect_events(e->cls == CRGW_GUARD_PASS ? 0 : 1000);

	if (e->cls == CRGW_GUARD_PASS) {
		tap_result(n == 0, "%s: no drop event (%d)", name, n);
		return;
	}
	if (n != 1) {
		tap_result(false, "%s: one drop event, got %d", name, n);
		return;
	}
	const struct crgw_guard_drop *d = &events[0];
	const uint8_t *mac = e->mac ? e->mac : guest_mac;
	bool ok = d->slot == SLOT && d->reason == e->cls && d->ethertype == e->ethertype && d->family == e->family &&
		  d->proto == e->proto && memcmp(d->src_mac, mac, 6) == 0 && d->sport == e->sport &&
		  d->dport == e->dport && d->len == bytes;

	if (e->family == AF_INET)
		ok = ok && d->src.v4.s_addr == e->src && d->dst.v4.s_addr == e->dst;
	char s[INET6_ADDRSTRLEN] = "-", t[INET6_ADDRSTRLEN] = "-";

	if (d->family)
		inet_ntop(d->family, &d->src, s, sizeof(s)), inet_ntop(d->family, &d->dst, t, sizeof(t));
	tap_result(ok, "%s: event slot %u %s ethertype 0x%04x family %d proto %u %s:%u -> %s:%u mac ..:%02x len %u",
		   name, d->slot, class_name(d->reason), d->ethertype, d->family, d->proto, s, d->sport, t, d->dport,
		   d->src_mac[5], d->len);
}

/* ---- cases -------------------------------------------------------------------------------------------- */

static void run_frame(const struct fcase *c)
{
	uint8_t frame[256];
	size_t len = build_frame(frame, c);
	struct crgw_guard_counters before = counters_now();
	struct expect e = {
		.cls = c->cls,
		.bytes = c->kind == F_VLAN ? len - 4 : len, /* the receive path took the tag out */
		.mac = c->eth_src,
		.ethertype = c->ev_ethertype,
		.family = c->ev_family,
		.proto = c->ev_family ? (c->kind == F_IPV6 ? IPPROTO_UDP : c->proto) : 0,
		.src = ip4(c->src),
		.dst = ip4(c->dst),
		.sport = c->ev_ports ? c->sport : 0,
		.dport = c->ev_ports ? c->dport : 0,
	};

	if (c->kind == F_VLAN_DEV) {
		if (!guest_vlan_ifindex) {
			printf("ok %u - %s # SKIP the kernel has no VLAN devices (8021q)\n", ++tap_count, c->name);
			return;
		}
		e.bytes = len; /* the tag travels beside the frame */
	}
	if (c->kind == F_ARP)
		e.proto = 0;
	send_frame(frame, len, c->kind == F_VLAN_DEV ? guest_vlan_ifindex : guest_ifindex);
	check_packet(c->name, &before, &e);
}

/* A UDP datagram of 4 bytes from the guest's socket; `recv_fd` >= 0: it must arrive there. */
static void run_udp(const char *name, unsigned dst, uint16_t port, unsigned cls, int recv_fd)
{
	int fd = sb_socket(SOCK_DGRAM);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = ip4(dst) };
	struct sockaddr_in me = { .sin_family = AF_INET, .sin_addr.s_addr = ip4(GUEST) };
	struct crgw_guard_counters before = counters_now();

	if (bind(fd, (struct sockaddr *)&me, sizeof(me)) != 0)
		bail("bind: %s", strerror(errno));
	struct expect e = { .cls = cls, .bytes = 14 + 20 + 8 + 4, .ethertype = ETH_P_IP, .family = AF_INET,
			    .proto = IPPROTO_UDP, .src = ip4(GUEST), .dst = ip4(dst), .sport = local_port(fd),
			    .dport = port };

	if (sendto(fd, "ping", 4, 0, (struct sockaddr *)&to, sizeof(to)) != 4)
		diag("%s: sendto: %s", name, strerror(errno));
	if (recv_fd >= 0) {
		struct pollfd p = { .fd = recv_fd, .events = POLLIN };
		char buf[16];
		ssize_t n = -1;

		if (poll(&p, 1, 1000) == 1)
			n = recv(recv_fd, buf, sizeof(buf), MSG_DONTWAIT);
		tap_result(n == 4 && memcmp(buf, "ping", 4) == 0, "%s: the datagram reached the gateway's socket",
			   name);
	}
	check_packet(name, &before, &e);
	close(fd);
}

/*
 * A TCP SYN from the guest's socket. `answered`: the gateway's stack answers (RST: nothing listens), so
 * connect fails with ECONNREFUSED; otherwise the SYN is dropped, and the socket is closed before the
 * first retransmission (1 s), so that exactly one packet is sent.
 */
static void run_tcp(const char *name, unsigned dst, uint16_t port, unsigned cls, bool answered)
{
	int fd = sb_socket(SOCK_STREAM | SOCK_NONBLOCK);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = ip4(dst) };
	struct sockaddr_in me = { .sin_family = AF_INET, .sin_addr.s_addr = ip4(GUEST) };
	struct crgw_guard_counters before = counters_now();
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (bind(fd, (struct sockaddr *)&me, sizeof(me)) != 0)
		bail("bind: %s", strerror(errno));
	struct expect e = { .cls = cls, .ethertype = ETH_P_IP, .family = AF_INET, .proto = IPPROTO_TCP,
			    .src = ip4(GUEST), .dst = ip4(dst), .sport = local_port(fd), .dport = port };

	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0 || errno != EINPROGRESS)
		diag("%s: connect: %s", name, strerror(errno));
	if (answered) {
		if (poll(&p, 1, 900) == 1)
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
		tap_result(soerr == ECONNREFUSED, "%s: the gateway's stack answered (%s)", name,
			   soerr ? strerror(soerr) : "no answer");
	} else {
		sleep_ms(150);
	}
	close(fd);
	check_packet(name, &before, &e);
}

/* An IPv4 frame whose event names its addresses. */
#define IPV4(n, c, ...)                                                                                          \
	{                                                                                                        \
		.name = n, .kind = F_IPV4, .cls = c, .ev_family = AF_INET, .ev_ethertype = ETH_P_IP, __VA_ARGS__ \
	}

static const struct fcase frame_cases[] = {
	IPV4("forged source address", CRGW_GUARD_SPOOFED_SOURCE, .src = FORGED, .dst = GW, .proto = IPPROTO_UDP,
	     .sport = 40000, .dport = 53, .ev_ports = true),
	IPV4("forged source address, DNS elsewhere", CRGW_GUARD_SPOOFED_SOURCE, .src = FORGED, .dst = OTHER,
	     .proto = IPPROTO_UDP, .sport = 40000, .dport = 53, .ev_ports = true),
	{ .name = "forged source MAC", .kind = F_IPV4, .cls = CRGW_GUARD_SPOOFED_SOURCE, .eth_src = forged_mac,
	  .src = GUEST, .dst = GW, .proto = IPPROTO_UDP, .sport = 40000, .dport = 53, .ev_ethertype = ETH_P_IP },
	IPV4("ICMP echo to the gateway", CRGW_GUARD_PORT_NOT_ALLOWED, .src = GUEST, .dst = GW, .proto = IPPROTO_ICMP),
	IPV4("ICMP unreachable to the gateway about a packet of someone else's", CRGW_GUARD_PORT_NOT_ALLOWED,
	     .src = GUEST, .dst = GW, .proto = IPPROTO_ICMP, .icmp_type = 3, .inner_src = OTHER, .inner_dst = GUEST),
	IPV4("ICMP unreachable to the gateway about the gateway's packet to the guest", CRGW_GUARD_PASS, .src = GUEST,
	     .dst = GW, .proto = IPPROTO_ICMP, .icmp_type = 3, .inner_src = GW, .inner_dst = GUEST),
	IPV4("TCP to the gateway's port 22", CRGW_GUARD_PORT_NOT_ALLOWED, .src = GUEST, .dst = GW,
	     .proto = IPPROTO_TCP, .sport = 40001, .dport = 22, .ev_ports = true),
	IPV4("UDP to the gateway's TCP-only port 3128", CRGW_GUARD_PORT_NOT_ALLOWED, .src = GUEST, .dst = GW,
	     .proto = IPPROTO_UDP, .sport = 40001, .dport = 3128, .ev_ports = true),
	IPV4("GRE to another address", CRGW_GUARD_HOST_NOT_ALLOWED, .src = GUEST, .dst = OTHER, .proto = 47),
	IPV4("first fragment (MF) to another address", CRGW_GUARD_HOST_NOT_ALLOWED, .src = GUEST, .dst = OTHER,
	     .proto = IPPROTO_UDP, .sport = 40002, .dport = 9999, .frag = 0x2000, .ev_ports = true),
	IPV4("later fragment to another address", CRGW_GUARD_HOST_NOT_ALLOWED, .src = GUEST, .dst = OTHER,
	     .proto = IPPROTO_UDP, .sport = 40002, .dport = 9999, .frag = 100),
	IPV4("first fragment of DNS to another address", CRGW_GUARD_DNS_BYPASS_ATTEMPT, .src = GUEST, .dst = OTHER,
	     .proto = IPPROTO_UDP, .sport = 40003, .dport = 53, .frag = 0x2000, .ev_ports = true),
	IPV4("first fragment to a port the gateway does not serve", CRGW_GUARD_PORT_NOT_ALLOWED, .src = GUEST,
	     .dst = GW, .proto = IPPROTO_UDP, .sport = 40004, .dport = 9999, .frag = 0x2000, .ev_ports = true),
	IPV4("first fragment of a TCP SYN to a port the gateway does not serve", CRGW_GUARD_PORT_NOT_ALLOWED,
	     .src = GUEST, .dst = GW, .proto = IPPROTO_TCP, .sport = 40006, .dport = 7777, .frag = 0x2000,
	     .ev_ports = true),
	IPV4("first fragment too short for its ports to the gateway", CRGW_GUARD_PORT_NOT_ALLOWED, .src = GUEST,
	     .dst = GW, .proto = IPPROTO_TCP, .sport = 40007, .dport = 3128, .frag = 0x2000, .short_l4 = true),
	IPV4("first fragment of DNS to the gateway", CRGW_GUARD_PASS, .src = GUEST, .dst = GW, .proto = IPPROTO_UDP,
	     .sport = 40004, .dport = 53, .frag = 0x2000),
	IPV4("later fragment to the gateway", CRGW_GUARD_PASS, .src = GUEST, .dst = GW, .proto = IPPROTO_UDP,
	     .sport = 40004, .dport = 9999, .frag = 0x2000 | 100),
	IPV4("IPv4 header length 4 (malformed)", CRGW_GUARD_HOST_NOT_ALLOWED, .src = GUEST, .dst = GW,
	     .proto = IPPROTO_UDP, .sport = 40005, .dport = 53, .ihl = 4),
	IPV4("IPv4 total length past the frame (truncated)", CRGW_GUARD_HOST_NOT_ALLOWED, .src = GUEST, .dst = GW,
	     .proto = IPPROTO_UDP, .sport = 40005, .dport = 53, .tot_extra = 100),
	IPV4("UDP to the gateway's port 53 cut inside its header", CRGW_GUARD_HOST_NOT_ALLOWED, .src = GUEST,
	     .dst = GW, .proto = IPPROTO_UDP, .sport = 40005, .dport = 53, .short_l4 = true),
	{ .name = "ARP request from the guest", .kind = F_ARP, .cls = CRGW_GUARD_PASS, .src = GUEST, .dst = GW },
	{ .name = "ARP with a forged sender address", .kind = F_ARP, .cls = CRGW_GUARD_SPOOFED_SOURCE, .src = FORGED,
	  .dst = GW, .ev_family = AF_INET, .ev_ethertype = ETH_P_ARP },
	{ .name = "gratuitous ARP claiming the gateway's address", .kind = F_ARP, .cls = CRGW_GUARD_SPOOFED_SOURCE,
	  .src = GW, .dst = GW, .ev_family = AF_INET, .ev_ethertype = ETH_P_ARP },
	{ .name = "ARP with a forged sender MAC", .kind = F_ARP, .cls = CRGW_GUARD_SPOOFED_SOURCE, .sha = forged_mac,
	  .src = GUEST, .dst = GW, .ev_family = AF_INET, .ev_ethertype = ETH_P_ARP },
	{ .name = "ARP with protocol length 6", .kind = F_ARP, .cls = CRGW_GUARD_HOST_NOT_ALLOWED, .src = GUEST,
	  .dst = GW, .pln = 6, .ev_ethertype = ETH_P_ARP },
	{ .name = "IPv6 without the flag", .kind = F_IPV6, .cls = CRGW_GUARD_HOST_NOT_ALLOWED, .sport = 1000,
	  .dport = 53, .ev_family = AF_INET6, .ev_ethertype = ETH_P_IPV6, .ev_ports = true },
	{ .name = "VLAN-tagged frame (id 5) of DNS to the gateway", .kind = F_VLAN, .cls = CRGW_GUARD_HOST_NOT_ALLOWED,
	  .src = GUEST, .dst = GW, .proto = IPPROTO_UDP, .sport = 40006, .dport = 53, .vid = 5,
	  .ev_ethertype = ETH_P_8021Q },
	{ .name = "priority-tagged frame (VLAN id 0) of DNS to the gateway", .kind = F_VLAN,
	  .cls = CRGW_GUARD_HOST_NOT_ALLOWED, .src = GUEST, .dst = GW, .proto = IPPROTO_UDP, .sport = 40006,
	  .dport = 53, .vid = 0, .ev_ethertype = ETH_P_8021Q },
	{ .name = "frame from a VLAN device (tag offloaded)", .kind = F_VLAN_DEV, .cls = CRGW_GUARD_HOST_NOT_ALLOWED,
	  .src = GUEST, .dst = GW, .proto = IPPROTO_UDP, .sport = 40006, .dport = 53, .ev_ethertype = ETH_P_8021Q },
	{ .name = "LLDP frame", .kind = F_RAW, .cls = CRGW_GUARD_HOST_NOT_ALLOWED, .ethertype = 0x88cc,
	  .ev_ethertype = 0x88cc },
};

/* ---- setup -------------------------------------------------------------------------------------------- */

static void setup(void)
{
	char mac_h[18], mac_g[18];

	/* The gateway's namespace: this process's own from here on. */
	if (unshare(CLONE_NEWNET) != 0)
		bail("unshare(CLONE_NEWNET): %s (needs root)", strerror(errno));
	gw_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (sysctl_write("net/ipv6/conf/all/disable_ipv6", "1") < 0 ||
	    sysctl_write("net/ipv6/conf/default/disable_ipv6", "1") < 0)
		diag("could not turn IPv6 off in the gateway namespace");
	if (unshare(CLONE_NEWNET) != 0)
		bail("unshare(CLONE_NEWNET): %s", strerror(errno));
	sb_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (gw_ns < 0 || sb_ns < 0)
		bail("opening the namespaces: %s", strerror(errno));
	/* No IPv6 from the sandbox but what the test forges: no router solicitation, MLD or DAD. */
	if (sysctl_write("net/ipv6/conf/all/disable_ipv6", "1") < 0 ||
	    sysctl_write("net/ipv6/conf/default/disable_ipv6", "1") < 0)
		diag("could not turn IPv6 off in the sandbox namespace");
	enter(gw_ns);

	snprintf(mac_h, sizeof(mac_h), "%02x:%02x:%02x:%02x:%02x:%02x", host_mac[0], host_mac[1], host_mac[2],
		 host_mac[3], host_mac[4], host_mac[5]);
	snprintf(mac_g, sizeof(mac_g), "%02x:%02x:%02x:%02x:%02x:%02x", guest_mac[0], guest_mac[1], guest_mac[2],
		 guest_mac[3], guest_mac[4], guest_mac[5]);
	if (sh("ip link add " HOST_IF " address %s type veth peer name " GUEST_IF " address %s netns /proc/%d/fd/%d",
	       mac_h, mac_g, (int)getpid(), sb_ns) != 0 ||
	    sh("ip link set lo up && ip addr add 10.203.0.1/30 dev " HOST_IF " && ip link set " HOST_IF " up") != 0)
		bail("could not make the gateway side");
	sysctl_write("net/ipv4/conf/" HOST_IF "/forwarding", "0");
	host_ifindex = (int)if_nametoindex(HOST_IF);

	enter(sb_ns);
	if (sh("ip link set lo up && ip addr add 10.203.0.2/30 dev " GUEST_IF " && ip link set " GUEST_IF " up && "
	       "ip route add default via 10.203.0.1") != 0)
		bail("could not make the sandbox side");
	/* A kernel without 8021q (these machines) has no VLAN devices: that case is then skipped. */
	fflush(stdout);
	if (system("ip link add link " GUEST_IF " name " GUEST_VLAN_IF " type vlan id 5 2>/dev/null && "
		   "ip link set " GUEST_VLAN_IF " up") == 0)
		guest_vlan_ifindex = (int)if_nametoindex(GUEST_VLAN_IF);
	guest_ifindex = (int)if_nametoindex(GUEST_IF);
	pkt_fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0); /* protocol 0: sends, never receives */
	enter(gw_ns);
	if (!host_ifindex || !guest_ifindex || pkt_fd < 0)
		bail("setup: interfaces %d %d, packet socket %d", host_ifindex, guest_ifindex, pkt_fd);

	sb = (struct crgw_guard_sandbox){ .slot = SLOT, .ifindex = host_ifindex };
	memcpy(sb.mac, guest_mac, 6);
	sb.guest.s_addr = ip4(GUEST);
	sb.gw.s_addr = ip4(GW);
}

/* A UDP socket of the gateway's on 10.203.0.1:port. */
static int gw_udp(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = ip4(GW) };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		bail("binding 10.203.0.1:%u: %s", port, strerror(errno));
	return fd;
}

static void attach_flags(uint32_t flags)
{
	int rc;

	sb.flags = flags;
	rc = crgw_guard_attach(g, &sb);
	if (rc < 0)
		bail("crgw_guard_attach(flags %u): %s", flags, strerror(-rc));
}

static void detach(void)
{
	int rc = crgw_guard_detach(g, &sb);

	if (rc < 0)
		bail("crgw_guard_detach: %s", strerror(-rc));
}

/* ---- the parts ---------------------------------------------------------------------------------------- */

static void test_reasons(void)
{
	static const char *const names[] = { "pass", "spoofed_source", "dns_bypass_attempt", "host_not_allowed",
					     "port_not_allowed" };
	bool ok = true;

	for (unsigned i = 0; i < CRGW_GUARD_CLASS_COUNT; i++)
		ok = ok && crgw_guard_reason_name(i) && strcmp(crgw_guard_reason_name(i), names[i]) == 0;
	tap_result(ok && crgw_guard_reason_name(CRGW_GUARD_CLASS_COUNT) == NULL &&
			   crgw_guard_reason(CRGW_GUARD_PASS) == CRGW_REASON_NONE &&
			   crgw_guard_reason(CRGW_GUARD_DNS_BYPASS_ATTEMPT) == CRGW_REASON_DNS_BYPASS_ATTEMPT,
		   "class names are the audit reason codes");
}

static void test_open_errors(void)
{
	char err[512];
	struct crgw_guard *x = (struct crgw_guard *)1;
	int rc = crgw_guard_open(&x, CRGW_GUARD_DEFAULT_SLOTS + 1, err, sizeof(err));

	tap_result(rc == -EINVAL && x == NULL && err[0], "open with too many slots: -EINVAL (%s)", err);

	/* Without privileges: a child that is uid 65534 with no capabilities. */
	int pfd[2];

	if (pipe(pfd) != 0)
		bail("pipe: %s", strerror(errno));
	fflush(stdout);
	pid_t pid = fork();

	if (pid == 0) {
		struct crgw_guard *y = NULL;
		char e[400] = "";
		char out[512];

		close(pfd[0]);
		if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0)
			_exit(2);
		int r = crgw_guard_open(&y, 4, e, sizeof(e));

		snprintf(out, sizeof(out), "%d %d %s", r, y == NULL, e);
		if (write(pfd[1], out, strlen(out)) < 0)
			_exit(3);
		crgw_guard_close(y);
		_exit(0);
	}
	close(pfd[1]);
	char buf[512] = "";
	ssize_t n = read(pfd[0], buf, sizeof(buf) - 1);
	int st = 0;

	close(pfd[0]);
	waitpid(pid, &st, 0);
	buf[n > 0 ? n : 0] = '\0';
	int r = 0, isnull = 0, used = 0;

	sscanf(buf, "%d %d %n", &r, &isnull, &used);
	tap_result(r == -EPERM && isnull && strstr(buf + used, "not permitted"),
		   "open without privileges: -EPERM with a reason (%s)", buf[0] ? buf + used : "no answer");
}

static void test_first_exchange(int dns_fd)
{
	/*
	 * The first datagram needs ARP: the guest asks for the gateway's MAC (passes), the gateway answers
	 * (egress: not counted), the datagram follows. The gateway may also have learnt the guest's address
	 * and ask again later, so only "at least two passed, nothing dropped" is exact here.
	 */
	int fd = sb_socket(SOCK_DGRAM);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(53), .sin_addr.s_addr = ip4(GW) };
	struct pollfd p = { .fd = dns_fd, .events = POLLIN };
	char buf[16];
	ssize_t n = -1;

	if (sendto(fd, "ping", 4, 0, (struct sockaddr *)&to, sizeof(to)) != 4)
		diag("sendto: %s", strerror(errno));
	if (poll(&p, 1, 2000) == 1)
		n = recv(dns_fd, buf, sizeof(buf), MSG_DONTWAIT);
	close(fd);
	tap_result(n == 4, "ARP from the guest and then UDP to the gateway's port 53 pass: the datagram arrived");
	sleep_ms(50);
	struct crgw_guard_counters c = counters_now();

	tap_result(c.packets[CRGW_GUARD_PASS] >= 2 && c.packets[1] + c.packets[2] + c.packets[3] + c.packets[4] == 0,
		   "first exchange: %llu passed (ARP and IPv4), nothing dropped",
		   (unsigned long long)c.packets[CRGW_GUARD_PASS]);

	/* From here on no ARP behind the test's back. */
	if (sh("ip neigh replace 10.203.0.2 lladdr 02:cb:00:00:00:02 dev " HOST_IF " nud permanent") != 0)
		bail("static neighbour on the gateway side");
	enter(sb_ns);
	int rc = sh("ip neigh replace 10.203.0.1 lladdr 02:cb:00:00:00:01 dev " GUEST_IF " nud permanent");

	enter(gw_ns);
	if (rc != 0)
		bail("static neighbour in the sandbox");
	sleep_ms(100);
	collect_events(0);
}

static void test_burst(void)
{
	struct crgw_guard_counters before;
	struct crgw_guard_stats s0, s1;
	uint64_t want[CRGW_GUARD_CLASS_COUNT];
	int fd = sb_socket(SOCK_DGRAM);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9999), .sin_addr.s_addr = ip4(GW) };

	sleep_ms(2100); /* the slot's bucket full again: 20 tokens at 10/s */
	collect_events(0);
	before = counters_now();
	crgw_guard_stats(g, &s0);
	double t0 = now_s();

	for (int i = 0; i < 100; i++)
		if (sendto(fd, "ping", 4, 0, (struct sockaddr *)&to, sizeof(to)) != 4)
			diag("sendto: %s", strerror(errno));
	double t1;

	close(fd);
	for (int i = 0; i < CRGW_GUARD_CLASS_COUNT; i++)
		want[i] = before.packets[i] + (i == CRGW_GUARD_PORT_NOT_ALLOWED ? 100 : 0);
	/* Until the last drop was counted: the kernel may still be taking them in after the last send. */
	struct crgw_guard_counters after = wait_counters_at(want, &t1);

	tap_result(counters_equal(&after, want), "burst: 100 UDP datagrams to the gateway's port 9999 counted (%llu)",
		   (unsigned long long)(after.packets[CRGW_GUARD_PORT_NOT_ALLOWED] -
					before.packets[CRGW_GUARD_PORT_NOT_ALLOWED]));

	unsigned total = 0, right = 0;
	int n;

	while ((n = collect_events(200)) > 0) {
		for (unsigned i = 0; i < n_events && i < MAX_EVENTS; i++)
			right += events[i].reason == CRGW_GUARD_PORT_NOT_ALLOWED && events[i].slot == SLOT;
		total += (unsigned)n;
	}
	crgw_guard_stats(g, &s1);
	/* The bucket refills one token per 100 ms while the burst is taken in. */
	unsigned ceiling = 20 + (unsigned)((t1 - t0) * 10) + 1;
	uint64_t suppressed = s1.events_suppressed - s0.events_suppressed;

	tap_result(total >= 20 && total <= ceiling && right == total,
		   "burst: %u events (20 to %u allowed: taken in within %.0f ms), all port_not_allowed of slot %u", total,
		   ceiling, (t1 - t0) * 1000, SLOT);
	tap_result(suppressed + total == 100 && s1.events_lost == s0.events_lost,
		   "burst: the other %llu counted as suppressed, none lost", (unsigned long long)suppressed);
	tap_result(crgw_guard_suppressed(g) == s1.events_suppressed + s1.events_lost,
		   "crgw_guard_suppressed() = suppressed + lost (%llu)", (unsigned long long)crgw_guard_suppressed(g));
}

/* The filter without its map entry: fail closed, counted as unregistered. */
static void test_unregistered(int dns_fd)
{
	struct crgw_guard_stats s0, s1;
	struct crgw_guard_counters before = counters_now(), after;
	__u32 key = (__u32)host_ifindex;
	int fd = sb_socket(SOCK_DGRAM);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(53), .sin_addr.s_addr = ip4(GW) };
	struct pollfd p = { .fd = dns_fd, .events = POLLIN };

	crgw_guard_stats(g, &s0);
	tap_result(bpf_map_delete_elem(crgw_guard_map_fd(g, "sandboxes"), &key) == 0,
		   "the interface's map entry removed behind the guard's back");
	if (sendto(fd, "ping", 4, 0, (struct sockaddr *)&to, sizeof(to)) != 4)
		diag("sendto: %s", strerror(errno));
	close(fd);
	tap_result(poll(&p, 1, 300) == 0, "without its entry the interface drops: DNS to the gateway does not arrive");
	crgw_guard_stats(g, &s1);
	after = counters_now();
	tap_result(s1.unregistered_packets == s0.unregistered_packets + 1 &&
			   s1.unregistered_bytes == s0.unregistered_bytes + 46 &&
			   memcmp(&after, &before, sizeof(after)) == 0,
		   "counted as unregistered (%llu packets, %llu bytes), not in the slot",
		   (unsigned long long)(s1.unregistered_packets - s0.unregistered_packets),
		   (unsigned long long)(s1.unregistered_bytes - s0.unregistered_bytes));
	int rc = crgw_guard_detach(g, &sb);

	tap_result(rc == 0 && !has_clsact(HOST_IF), "detach with the entry already gone: 0 (%d), no clsact left", rc);
}

static void test_attach_errors(void)
{
	struct crgw_guard_sandbox x = sb;
	struct crgw_guard *g2 = NULL;
	char err[256];
	int rc;

	x.slot = MAX_SLOTS;
	tap_result(crgw_guard_attach(g, &x) == -EINVAL && map_entries(g) == 0, "attach to slot %u of %u: -EINVAL",
		   MAX_SLOTS, MAX_SLOTS);
	x = sb;
	x.flags = 1u << 7;
	tap_result(crgw_guard_attach(g, &x) == -EINVAL, "attach with an unknown flag: -EINVAL");
	x = sb;
	x.ifindex = 999999;
	rc = crgw_guard_attach(g, &x);
	tap_result(rc == -ENODEV && map_entries(g) == 0, "attach to a missing interface: -ENODEV (%d), no entry left",
		   rc);

	attach_flags(0);
	x = sb;
	tap_result(crgw_guard_attach(g, &x) == -EEXIST, "attach of an attached slot: -EEXIST");
	x.slot = SLOT + 1;
	rc = crgw_guard_attach(g, &x);
	tap_result(rc == -EEXIST && map_entries(g) == 1 && map_has(g, host_ifindex),
		   "attach of an attached interface under another slot: -EEXIST (%d), the first entry intact", rc);
	tap_result(crgw_guard_detach(g, &x) == -ENOENT, "detach of a slot never attached: -ENOENT");
	detach();
	tap_result(!has_clsact(HOST_IF) && map_entries(g) == 0, "detach: no clsact, no entry");

	/* Another guard's filter already there: the attach fails and leaves that guard's qdisc alone. */
	rc = crgw_guard_open(&g2, 4, err, sizeof(err));
	if (rc < 0)
		bail("second guard: %s", err);
	x = sb;
	x.slot = 1;
	rc = crgw_guard_attach(g2, &x);
	tap_result(rc == 0, "a second guard attached to the interface");
	rc = crgw_guard_attach(g, &sb);
	tap_result(rc == -EEXIST && map_entries(g) == 0 && has_clsact(HOST_IF),
		   "attach over another guard's filter: -EEXIST (%d), no entry left, its qdisc kept", rc);
	crgw_guard_close(g2);
	tap_result(!has_clsact(HOST_IF), "closing the second guard removed its filter and the qdisc it made");
}

static void test_cycles(void)
{
	double t0 = now_s();
	int i, rc = 0;

	for (i = 0; i < 500 && now_s() - t0 < 60; i++) {
		sb.flags = (uint32_t)i & 3u;
		if ((rc = crgw_guard_attach(g, &sb)) < 0 || (rc = crgw_guard_detach(g, &sb)) < 0)
			break;
	}
	tap_result(i == 500 && rc == 0, "500 attach/detach cycles on one interface (%d done in %.1f s, last %d)", i,
		   now_s() - t0, rc);
	tap_result(!has_clsact(HOST_IF) && output_empty("tc filter show dev " HOST_IF " ingress 2>/dev/null") &&
			   map_entries(g) == 0,
		   "after the cycles: no clsact qdisc, no filter, no map entry");
	sb.flags = 0;
}

static void test_gone_interface(void)
{
	struct crgw_guard_sandbox x = sb;
	int rc;

	if (sh("ip link add " HOST_IF2 " type veth peer name " HOST_IF2 "p && ip link set " HOST_IF2 " up") != 0)
		bail("second veth pair");
	x.slot = 2;
	x.ifindex = (int)if_nametoindex(HOST_IF2);
	rc = crgw_guard_attach(g, &x);
	tap_result(rc == 0 && has_clsact(HOST_IF2) && map_has(g, x.ifindex), "attached to " HOST_IF2 " (%d)", rc);
	sh("ip link del " HOST_IF2);
	rc = crgw_guard_detach(g, &x);
	tap_result(rc == -ENODEV && !map_has(g, x.ifindex) && map_entries(g) == 0,
		   "detach after the interface was deleted: -ENODEV (%d), the map entry gone", rc);
	tap_result(crgw_guard_detach(g, &x) == -ENOENT, "and the guard forgot the attachment: a second detach is -ENOENT");
}

int main(void)
{
	struct crgw_guard_counters c;
	char err[1024];
	int total0, total1, progs0, progs1, rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (geteuid() != 0) {
		printf("1..0 # SKIP needs root (namespaces, BPF)\n");
		return 0;
	}
	progs0 = count_progs(&total0);
	diag("before open: %d BPF programs in the system, %d named %s", total0, progs0, PROG_NAME);
	setup();
	test_reasons();
	test_open_errors();

	rc = crgw_guard_open(&g, MAX_SLOTS, err, sizeof(err));
	if (rc < 0)
		bail("crgw_guard_open: %s", err);
	tap_result(true, "guard loaded");
	{
		struct bpf_map_info info;
		__u32 len = sizeof(info);

		memset(&info, 0, sizeof(info));
		bpf_obj_get_info_by_fd(crgw_guard_map_fd(g, "counters"), &info, &len);
		tap_result(info.max_entries == MAX_SLOTS, "max_slots sizes the maps (counters: %u entries)",
			   info.max_entries);
	}

	int dns_fd = gw_udp(53);

	/* ---- flags 0 ---- */
	attach_flags(0);
	c = counters_now();
	tap_result(has_clsact(HOST_IF) && map_entries(g) == 1 && c.packets[0] + c.packets[1] + c.bytes[0] == 0,
		   "attached: clsact on " HOST_IF ", one entry, counters zero");
	test_first_exchange(dns_fd);

	run_udp("UDP to the gateway's port 53", GW, 53, CRGW_GUARD_PASS, dns_fd);
	run_tcp("TCP SYN to the gateway's port 53", GW, 53, CRGW_GUARD_PASS, true);
	run_tcp("TCP SYN to the gateway's port 3128", GW, 3128, CRGW_GUARD_PASS, true);
	run_tcp("TCP SYN to the gateway's port 8170", GW, 8170, CRGW_GUARD_PASS, true);
	run_udp("UDP to the gateway's port 9999", GW, 9999, CRGW_GUARD_PORT_NOT_ALLOWED, -1);
	run_udp("UDP to 10.203.0.77:53", OTHER, 53, CRGW_GUARD_DNS_BYPASS_ATTEMPT, -1);
	run_tcp("TCP SYN to 10.203.0.77:53", OTHER, 53, CRGW_GUARD_DNS_BYPASS_ATTEMPT, false);
	run_udp("UDP to 10.203.0.77:9999", OTHER, 9999, CRGW_GUARD_HOST_NOT_ALLOWED, -1);
	run_tcp("TCP SYN to 10.203.0.77:443 without TCP redirect", OTHER, 443, CRGW_GUARD_HOST_NOT_ALLOWED, false);
	for (size_t i = 0; i < sizeof(frame_cases) / sizeof(frame_cases[0]); i++)
		run_frame(&frame_cases[i]);

	/* The gateway's ports are a map: a port added passes at once, and is refused again once removed. */
	int extra_fd = gw_udp(9999);

	tap_result(crgw_guard_gw_port(g, IPPROTO_UDP, 9999, 1) == 0, "UDP 9999 added to the gateway's ports");
	run_udp("UDP to the gateway's port 9999 once allowed", GW, 9999, CRGW_GUARD_PASS, extra_fd);
	tap_result(crgw_guard_gw_port(g, IPPROTO_UDP, 9999, 0) == 0, "UDP 9999 removed again");
	run_udp("UDP to the gateway's port 9999 once removed", GW, 9999, CRGW_GUARD_PORT_NOT_ALLOWED, -1);
	close(extra_fd);
	tap_result(crgw_guard_gw_port(g, IPPROTO_ICMP, 1, 1) == -EINVAL && crgw_guard_gw_port(g, IPPROTO_TCP, 0, 1) == -EINVAL,
		   "gateway ports: other protocols and port 0 refused");
	{
		struct crgw_guard_stats s;

		crgw_guard_stats(g, &s);
		tap_result(s.events_suppressed == 0 && s.events_lost == 0 && s.unregistered_packets == 0,
			   "no event suppressed or lost so far, nothing unregistered");
	}

	/* ---- TCP redirect ---- */
	detach();
	attach_flags(CRGW_GUARD_F_TCP_REDIRECT);
	c = counters_now();
	tap_result(c.packets[CRGW_GUARD_PASS] + c.packets[CRGW_GUARD_PORT_NOT_ALLOWED] == 0,
		   "re-attached with TCP redirect: the slot's counters start at zero");
	run_tcp("TCP SYN to 10.203.0.77:443 with TCP redirect", OTHER, 443, CRGW_GUARD_PASS, false);
	run_tcp("TCP SYN to 10.203.0.77:53 with TCP redirect", OTHER, 53, CRGW_GUARD_DNS_BYPASS_ATTEMPT, false);
	run_udp("UDP to 10.203.0.77:9999 with TCP redirect", OTHER, 9999, CRGW_GUARD_HOST_NOT_ALLOWED, -1);

	/* ---- IPv6 ---- */
	detach();
	attach_flags(CRGW_GUARD_F_IPV6);
	{
		struct fcase v6 = { .name = "IPv6 with the flag", .kind = F_IPV6, .cls = CRGW_GUARD_PASS,
				    .sport = 1000, .dport = 53 };

		run_frame(&v6);
	}
	run_tcp("TCP SYN to 10.203.0.77:443 with the IPv6 flag only", OTHER, 443, CRGW_GUARD_HOST_NOT_ALLOWED, false);

	test_burst();
	test_unregistered(dns_fd);
	test_attach_errors();
	test_cycles();
	test_gone_interface();

	/* Closed while attached: the filter and the qdisc go, and so does the program. */
	attach_flags(0);
	crgw_guard_close(g);
	g = NULL;
	tap_result(!has_clsact(HOST_IF), "close while attached: no clsact left on " HOST_IF);
	double end = now_s() + 5;

	do {
		progs1 = count_progs(&total1);
		if (progs1 == progs0 && total1 == total0)
			break;
		sleep_ms(50);
	} while (now_s() < end);
	tap_result(progs1 == progs0, "after close: %d programs named %s, as before open", progs1, PROG_NAME);
	diag("after close: %d BPF programs in the system (%d before open)", total1, total0);
	close(dns_fd);
	return tap_done();
}
