/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcrgw-netctl: programs the kernel for the gateway over netlink only (libmnl, libnftnl; never `ip` or
 * `nft`): a sandbox's veth pair and addresses, the nftables ruleset that confines each sandbox, and the
 * NFLOG stream that reports what that ruleset dropped.
 *
 * Threads: no function keeps global state or changes the namespaces or working directory of the calling
 * thread (crgw_netctl_veth_create() blocks its signals only around pthread_create, so that its helper is
 * born with them blocked), so any thread may call them while other threads do unrelated work. The
 * daemon serialises calls that change the same objects (one control thread); the kernel serialises the rest.
 * Every socket the library opens is close-on-exec and closed before the call returns (except the NFLOG
 * reader's, which the caller owns). All functions return 0 (or a documented non-negative value) on success
 * and -errno on failure.
 */
#ifndef CRGW_NETCTL_H
#define CRGW_NETCTL_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>

/* ---- links (rtnetlink) -------------------------------------------------------------------------------- */

/* What a sandbox's network link looks like; every pointer is borrowed for the duration of the call. */
struct crgw_link_spec {
	const char *host_ifname; /* 1..15 characters; start it with the ruleset's interface prefix */
	const char *peer_ifname; /* the name inside the sandbox, e.g. "eth0" */
	int peer_netns_fd;       /* an open fd of the sandbox's network namespace (/proc/PID/ns/net, ...) */
	struct in_addr host_addr;  /* the gateway's address on this link, network order */
	struct in_addr guest_addr; /* the sandbox's address, network order */
	uint8_t prefix_len;        /* 30 in practice; 8..32 accepted, and both addresses must share it */
	const uint8_t *peer_mac;   /* 6 bytes: the sandbox side's MAC address; NULL: the kernel picks one */
};

/*
 * Creates the veth pair with its peer born inside `spec->peer_netns_fd` (it never appears in our namespace)
 * and configures both ends. Host side: IPv6 disabled, rp_filter 0 (the ruleset's anti-spoof check is what
 * drops and counts spoofed packets), forwarding 0, send_redirects 0, accept_redirects 0, host_addr/prefix,
 * up. Sandbox side: lo up; peer with IPv6 disabled, guest_addr/prefix, up; default route via host_addr.
 * The sandbox namespace is reached through sockets and /proc/sys files opened by a short-lived helper
 * thread that alone enters it; the calling thread never changes namespace.
 * On success stores the host side's ifindex in `*host_ifindex` (may be NULL). On failure nothing this call
 * made is left behind (the host link is deleted, which takes the peer with it) and -errno is returned:
 * -EINVAL for a bad spec, -EEXIST when either name is taken.
 */
int crgw_netctl_veth_create(const struct crgw_link_spec *spec, int *host_ifindex);

/* What a VM sandbox's TAP looks like (the guest configures its own side from its kernel command line). */
struct crgw_tap_spec {
	const char *host_ifname;   /* 1..15 characters; start it with the ruleset's interface prefix */
	struct in_addr host_addr;  /* the gateway's address on this link, network order */
	struct in_addr guest_addr; /* the guest's address (checked to share the subnet), network order */
	uint8_t prefix_len;        /* 8..32 */
	int owner_uid;             /* who may attach to it besides root (the VMM's user); -1: root only */
};

/*
 * Creates a persistent TAP device (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, through /dev/net/tun: the one
 * kind of link rtnetlink cannot create) in our namespace and configures it as the host side of a veth:
 * the same sysctls, host_addr/prefix, up. It has no carrier until a VMM attaches by name. On failure
 * nothing is left; -EINVAL for a bad spec, -EEXIST (or -EBUSY) when the name is taken, -ENOENT when the
 * kernel has no /dev/net/tun.
 */
int crgw_netctl_tap_create(const struct crgw_tap_spec *spec, int *host_ifindex);

/* Deletes a link of our namespace by name (a veth's peer goes with it). -ENODEV when there is none. */
int crgw_netctl_link_delete(const char *ifname);

/* Returns the ifindex (> 0) of a link of our namespace, or -ENODEV. */
int crgw_netctl_link_ifindex(const char *ifname);

/*
 * Deletes every link of our namespace named exactly `prefix` followed by one or more decimal digits (the
 * gateway names its links prefix + slot number): start-up cleanup of what a crashed predecessor left. Other
 * names that merely start with the prefix ("crgwtn12u" when the prefix is "crgw", "crgw-x") and loopback
 * are never touched. `prefix` is 1..14 characters an interface name may hold ('-' included); -EINVAL
 * otherwise. `*removed` (may be NULL) counts the links this call deleted; a link that vanished meanwhile (a
 * veth peer deleted with its partner) is not an error. `foreign` (may be NULL) gets the name of the first
 * link that starts with the prefix without being one of ours ("" when none): the gateway's rules would
 * drop what arrives on it.
 */
int crgw_netctl_remove_links_with_prefix(const char *prefix, unsigned *removed, char *foreign, size_t foreign_len);

/* ---- ruleset (nf_tables) ------------------------------------------------------------------------------ */

#define CRGW_NFT_DEFAULT_TABLE "crgw"
#define CRGW_NFT_DEFAULT_PREFIX "crgw-"
#define CRGW_NFT_DNS_PORT 53
#define CRGW_NFT_SERVICE_PORTS_MAX 8

/*
 * The gateway's ruleset settings. Strings are borrowed for each call. The table is always of family inet.
 * Zero values take the defaults noted; http_port and tcp_port are required.
 */
struct crgw_nft_config {
	const char *table;        /* NULL: "crgw" */
	const char *iface_prefix; /* NULL: "crgw-"; unregistered interfaces with this prefix are dropped */
	uint16_t nflog_group;     /* NFLOG group of every log statement */
	uint16_t http_port;       /* transparent HTTP listener on the gateway address (redirect of tcp/80) */
	uint16_t tcp_port;        /* transparent TCP listener (redirect of all other TCP) */
	/* TCP services a sandbox may reach on its gateway address; n == 0: 53, 3128, 8170. UDP: 53 only. */
	uint16_t service_tcp_ports[CRGW_NFT_SERVICE_PORTS_MAX];
	unsigned n_service_tcp_ports;
	/*
	 * The sandbox address pool, network order, no host bits (-EINVAL otherwise); pool_prefix 0..32, 0: no
	 * pool rule. A packet with a source inside the pool that arrives on any interface but a registered
	 * sandbox's or lo is dropped, so a source address in the pool always names the sandbox that sent it.
	 */
	struct in_addr pool;
	uint8_t pool_prefix;
	/*
	 * New redirected TCP connections a second per sandbox (the first packets its nat chain sees; its
	 * gateway's own services are untracked and not counted), the excess dropped and logged as
	 * rate_limited, with a second's worth of burst; 0: no limit.
	 */
	uint32_t new_conn_rate;
};

/* One sandbox as the ruleset sees it. */
struct crgw_nft_sandbox {
	uint32_t id;         /* names its objects: sb<id>_pre, sb<id>_spoof, ... */
	const char *ifname;  /* host side of its link (borrowed) */
	struct in_addr gw;    /* host side address, network order */
	struct in_addr guest; /* the only source address the sandbox may use */
};

struct crgw_nft_counter {
	uint64_t packets;
	uint64_t bytes;
};

struct crgw_nft_counters {
	struct crgw_nft_counter spoof; /* spoofed source addresses dropped */
	struct crgw_nft_counter dns;   /* DNS to anything but the gateway dropped */
	struct crgw_nft_counter drop;  /* everything else dropped: non-TCP to other addresses, IPv6, ... */
};

/*
 * Replaces the table with an empty skeleton in one atomic batch: verdict maps pre_vmap, nat_vmap, in_vmap,
 * fwd_vmap (ifname : verdict), set sandbox_ifaces, counter pool_spoof, and base chains prerouting_raw
 * (-300), prerouting_nat (-100), input (0), forward (0), all policy accept but confined to interfaces
 * listed in the maps, plus a fail-closed drop of any other interface whose name starts with the prefix
 * and (with a pool) of pool-sourced packets from any interface but lo. Used at start-up; it also removes
 * whatever a crashed predecessor left in the table.
 */
int crgw_nft_reset(const struct crgw_nft_config *cfg);

/*
 * Installs one sandbox's enforcement in one atomic batch: counters sb<id>_spoof, _dns, _drop; the timed
 * set sb<id>_fwd (ipv4_addr . inet_service); chains sb<id>_pre, _nat, _in, _fwd (each ending in an
 * explicit verdict); and the map and set elements that send the interface's packets there. Until this
 * returns 0 the interface is dropped by the prefix catch-all; after a failure nothing of it exists.
 * -EEXIST when the id or the interface is already installed.
 */
int crgw_nft_sandbox_add(const struct crgw_nft_config *cfg, const struct crgw_nft_sandbox *sb);

/* Flags of crgw_nft_sandbox_del(). */
#define CRGW_NFT_F_FORCE 0x1u /* whatever is missing (or the whole table) is not an error: crash cleanup */

/*
 * Removes one sandbox's map and set elements, chains, set and counters in one atomic batch. Without
 * CRGW_NFT_F_FORCE anything missing fails the whole batch with -ENOENT and nothing changes. With it, the
 * kernel's "destroy" operations (Linux 6.3+) skip what is absent.
 */
int crgw_nft_sandbox_del(const struct crgw_nft_config *cfg, uint32_t id, const char *ifname, unsigned flags);

/* Reads the sandbox's three named counters. -ENOENT when the sandbox is not installed. */
int crgw_nft_counters_get(const struct crgw_nft_config *cfg, uint32_t id, struct crgw_nft_counters *out);

/* Reads counter pool_spoof (pool-sourced packets from other interfaces). -ENOENT without a table. */
int crgw_nft_pool_spoof_get(const struct crgw_nft_config *cfg, struct crgw_nft_counter *out);

/* Deletes the whole table (shutdown). -ENOENT when it does not exist. */
int crgw_nft_table_delete(const struct crgw_nft_config *cfg);

/* ---- NFLOG reader ------------------------------------------------------------------------------------- */

#define CRGW_NFLOG_COPY_BYTES 96   /* bytes of each packet the kernel copies to us */
#define CRGW_NFLOG_PREFIX_MAX 128  /* the kernel's own limit for a log prefix, NUL included */

/* One logged packet, valid only during the callback. Addresses and ports are parsed from the copied bytes. */
struct crgw_nflog_packet {
	char prefix[CRGW_NFLOG_PREFIX_MAX]; /* NUL-terminated; "" when the rule had none */
	uint32_t indev;                     /* input ifindex; 0 when unknown */
	int family;                         /* AF_INET, AF_INET6, or AF_UNSPEC when the header was unreadable */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} src, dst;                          /* network order */
	uint8_t l4proto;                    /* IPPROTO_*; 0 when unknown */
	bool has_ports;                     /* TCP/UDP/UDP-Lite/SCTP header present (first fragment) */
	uint16_t sport, dport;              /* host order; valid when has_ports */
	uint32_t copied;                    /* bytes of the packet we saw (<= CRGW_NFLOG_COPY_BYTES) */
};

struct crgw_nflog;

/* Called once per logged packet; `p` is borrowed for the call only. */
typedef void (*crgw_nflog_cb)(const struct crgw_nflog_packet *p, void *arg);

/*
 * Binds NFLOG group `group` of our namespace with a copy of the first CRGW_NFLOG_COPY_BYTES of each packet,
 * delivered without batching delay. -EPERM when another socket already holds the group (the kernel's
 * answer; it also means missing CAP_NET_ADMIN). `*out` is a new reader
 * owned by the caller (crgw_nflog_close). Its fd is non-blocking and close-on-exec.
 */
int crgw_nflog_open(uint16_t group, struct crgw_nflog **out);

/* The fd to poll for readability; owned by the reader. */
int crgw_nflog_fd(const struct crgw_nflog *log);

/*
 * Reads what is pending (at most 64 datagrams per call, so one busy sandbox cannot starve an event loop;
 * poll again) and calls `cb` for each packet from the calling thread. Returns the number of packets
 * passed to `cb` (0 is possible when only non-packet messages arrived), -EAGAIN when nothing was pending,
 * -ENOBUFS once after the kernel had to drop log messages because we read too slowly (the reader stays
 * usable), or another -errno.
 */
int crgw_nflog_read(struct crgw_nflog *log, crgw_nflog_cb cb, void *arg);

/* Unbinds and frees; accepts NULL. */
void crgw_nflog_close(struct crgw_nflog *log);

#endif
