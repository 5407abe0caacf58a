/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the tc ingress guard (guard.bpf.c) and its loader (guard.c) share: map keys and values and the
 * ring buffer's drop event. Fixed-width fields only, laid out without implicit padding, so that the
 * kernel's and user space's views are the same bytes. Included by the BPF program after vmlinux.h and by
 * the loader after <linux/bpf.h> (for struct bpf_spin_lock).
 */
#ifndef CRGW_EBPF_GUARD_H
#define CRGW_EBPF_GUARD_H

#ifndef __bpf__
#include <linux/types.h>
#endif

/*
 * Default size of the per-slot maps: the largest pool the gateway accepts (a /16) holds 16384 /30 slots.
 * The loader may set a smaller count before load (the counters are per CPU: 80 bytes x CPUs x slots).
 */
#define GUARD_MAX_SLOTS 16384

/* struct guard_sandbox.flags */
#define GUARD_F_IPV6 (1u << 0)         /* the sandbox may send IPv6 (passed unchecked in this version) */
#define GUARD_F_TCP_REDIRECT (1u << 1) /* TCP to other addresses passes: nftables redirects it to the proxies */
#define GUARD_F_ALL (GUARD_F_IPV6 | GUARD_F_TCP_REDIRECT)

/*
 * What the program decided about a packet: the index of its counter and the reason of its drop event.
 * The names are the audit log's reason codes (crgw_reason_str); the order is this ABI's, and the loader
 * checks that the public enum crgw_guard_class has the same values.
 */
enum guard_class {
	GUARD_CLASS_PASS = 0,
	GUARD_CLASS_SPOOFED_SOURCE = 1,
	GUARD_CLASS_DNS_BYPASS_ATTEMPT = 2,
	GUARD_CLASS_HOST_NOT_ALLOWED = 3,
	GUARD_CLASS_PORT_NOT_ALLOWED = 4,
	GUARD_CLASS_MAX = 5,
};

/* Map `sandboxes`: key the host-side interface's ifindex (__u32), value this. */
struct guard_sandbox {
	__u32 slot;  /* index into `counters` and `buckets`, below their max_entries */
	__u32 flags; /* GUARD_F_* */
	__u32 guest; /* the sandbox's IPv4 address, network order */
	__u32 gw;    /* the sandbox's gateway address, network order */
	__u8 mac[6]; /* the sandbox side's MAC address */
	__u8 pad[2];
};

/* Map `counters` (per CPU, index slot): what the slot's packets were, by class. bytes counts skb->len. */
struct guard_counters {
	__u64 packets[GUARD_CLASS_MAX];
	__u64 bytes[GUARD_CLASS_MAX];
};

/* Map `gw_ports`: key the (protocol, port) pairs a sandbox may reach on its gateway address; value 1. */
struct guard_port {
	__u16 port; /* host order */
	__u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

/*
 * Map `buckets` (index slot): the drop events' rate limit, GCRA form of a token bucket of
 * GUARD_EVENT_BURST tokens refilled at GUARD_EVENT_RATE per second. `tat` is the theoretical arrival time
 * (bpf_ktime_get_ns) of the next event; 0, as attach writes it, is a full bucket.
 */
struct guard_bucket {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 tat;
};

#define GUARD_EVENT_RATE 10  /* events per second per slot, as nftables' `limit rate 10/second` */
#define GUARD_EVENT_BURST 20 /* as nftables' `burst 20 packets` */

/* Map `stats` (per CPU, index GUARD_STAT_*): what belongs to no slot. */
enum guard_stat {
	GUARD_STAT_UNREGISTERED_PACKETS = 0, /* arrived on an interface without a `sandboxes` entry: dropped */
	GUARD_STAT_UNREGISTERED_BYTES = 1,
	GUARD_STAT_EVENTS_SUPPRESSED = 2, /* drop events the rate limit withheld */
	GUARD_STAT_EVENTS_LOST = 3,       /* drop events the full ring buffer refused */
	GUARD_STAT_MAX = 4,
};

/* Ring buffer `events`: one per reported drop. */
struct guard_drop {
	__u32 slot;
	__u8 reason;     /* enum guard_class, never GUARD_CLASS_PASS */
	__u8 proto;      /* IP protocol (IPv4 protocol, IPv6 next header); 0 for ARP and others */
	__u16 family;    /* 2 (AF_INET) when src/dst hold IPv4 addresses (IPv4 packets, ARP sender/target); 10
			    (AF_INET6) for IPv6; 0 when unknown */
	__u16 ethertype; /* host order: the frame's, or the tag's (0x8100, 0x88a8) for a tagged frame */
	__u16 sport;     /* host order; 0 when the packet has no TCP/UDP header */
	__u16 dport;
	__u8 src_mac[6];
	__u8 src[16]; /* IPv4 in the first 4 bytes, network order */
	__u8 dst[16];
	__u32 len; /* skb->len */
};

#endif
