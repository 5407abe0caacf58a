// SPDX-License-Identifier: Apache-2.0
/*
 * The sandbox guard: a tc ingress program on each sandbox's host-side interface (what the sandbox sends)
 * that passes only what the gateway serves and drops the rest, counting every packet by class and
 * reporting drops through a rate-limited ring buffer. A second layer, independent of nftables: it decides
 * from the frame alone (no conntrack), before the host's IP stack sees the packet.
 */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "guard.h"

/* uapi constants; vmlinux.h carries types only. */
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_IPV6 0x86DD
#define ARPHRD_ETHER 1
#define ARPOP_REQUEST 1
#define ARPOP_REPLY 2
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IPV6_HLEN 40
#define AF_INET 2
#define AF_INET6 10
#define DNS_PORT 53

#define EVENT_INTERVAL_NS (1000000000ull / GUARD_EVENT_RATE)
#define EVENT_TOLERANCE_NS ((GUARD_EVENT_BURST - 1) * EVENT_INTERVAL_NS)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GUARD_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct guard_sandbox);
} sandboxes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GUARD_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct guard_counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct guard_port);
	__type(value, __u8);
} gw_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GUARD_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct guard_bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GUARD_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* The ARP payload for Ethernet and IPv4, the only one a sandbox may send. */
struct arp_eth_ipv4 {
	__be16 hrd;
	__be16 pro;
	__u8 hln;
	__u8 pln;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
} __attribute__((packed));

static __always_inline bool mac_eq(const __u8 *a, const __u8 *b)
{
	__u32 a4, b4;
	__u16 a2, b2;

	__builtin_memcpy(&a4, a, 4);
	__builtin_memcpy(&b4, b, 4);
	__builtin_memcpy(&a2, a + 4, 2);
	__builtin_memcpy(&b2, b + 4, 2);
	return a4 == b4 && a2 == b2;
}

/*
 * Per-CPU values without atomics: tc runs in softirq context with migration disabled, so two runs on one
 * CPU do not interleave (on PREEMPT_RT they might, and a count could be lost, never invented).
 */
static __always_inline void stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += n;
}

static __always_inline int classify_arp(struct __sk_buff *skb, const struct guard_sandbox *sb, struct guard_drop *ev)
{
	struct arp_eth_ipv4 arp;

	/* Short or not Ethernet/IPv4: nothing the host's ARP would answer, nothing a sandbox needs. */
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &arp, sizeof(arp)) < 0)
		return GUARD_CLASS_HOST_NOT_ALLOWED;
	if (arp.hrd != bpf_htons(ARPHRD_ETHER) || arp.pro != bpf_htons(ETH_P_IP) || arp.hln != 6 || arp.pln != 4 ||
	    (arp.op != bpf_htons(ARPOP_REQUEST) && arp.op != bpf_htons(ARPOP_REPLY)))
		return GUARD_CLASS_HOST_NOT_ALLOWED;
	ev->family = AF_INET;
	__builtin_memcpy(ev->src, arp.spa, 4);
	__builtin_memcpy(ev->dst, arp.tpa, 4);

	/*
	 * The sender fields are what the host's neighbour table learns: a sandbox naming another MAC or
	 * address there could poison it (claim the gateway's or another sandbox's address). An ARP probe
	 * (sender address 0.0.0.0) is refused too: a sandbox's address is static, it has nothing to probe.
	 */
	if (!mac_eq(arp.sha, sb->mac))
		return GUARD_CLASS_SPOOFED_SOURCE;
	__u32 spa;

	__builtin_memcpy(&spa, arp.spa, 4);
	if (spa != sb->guest)
		return GUARD_CLASS_SPOOFED_SOURCE;
	return GUARD_CLASS_PASS;
}

static __always_inline int classify_ipv6(struct __sk_buff *skb, const struct guard_sandbox *sb, struct guard_drop *ev)
{
	struct ipv6hdr ip6;

	/* Filled for the drop event only: this version decides IPv6 by the flag alone. */
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)) == 0) {
		ev->family = AF_INET6;
		ev->proto = ip6.nexthdr;
		__builtin_memcpy(ev->src, &ip6.saddr, 16);
		__builtin_memcpy(ev->dst, &ip6.daddr, 16);
		if (ip6.nexthdr == IPPROTO_TCP || ip6.nexthdr == IPPROTO_UDP) {
			__be16 ports[2];

			if (bpf_skb_load_bytes(skb, ETH_HLEN + IPV6_HLEN, ports, sizeof(ports)) == 0) {
				ev->sport = bpf_ntohs(ports[0]);
				ev->dport = bpf_ntohs(ports[1]);
			}
		}
	}
	return (sb->flags & GUARD_F_IPV6) ? GUARD_CLASS_PASS : GUARD_CLASS_HOST_NOT_ALLOWED;
}

/*
 * An ICMP error (destination unreachable, time exceeded, parameter problem) that the sandbox's kernel sends
 * about a packet the gateway sent it: a DNS answer for a socket that has gone, say. nftables accepts those
 * as related; here the quoted header must name the gateway as its source and the guest as its destination,
 * so that no error about anyone else's traffic reaches the host's stack.
 */
static __always_inline bool icmp_error_about_gw(struct __sk_buff *skb, __u32 hlen, const struct guard_sandbox *sb)
{
	__u8 type;
	struct iphdr inner;

	if (bpf_skb_load_bytes(skb, ETH_HLEN + hlen, &type, 1) < 0)
		return false;
	if (type != 3 && type != 11 && type != 12)
		return false;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + hlen + 8, &inner, sizeof(inner)) < 0)
		return false;
	return inner.version == 4 && inner.saddr == sb->gw && inner.daddr == sb->guest;
}

static __always_inline int classify_ipv4(struct __sk_buff *skb, const struct guard_sandbox *sb, struct guard_drop *ev)
{
	struct iphdr ip;
	bool has_ports = false;
	__u16 dport = 0;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return GUARD_CLASS_HOST_NOT_ALLOWED;
	ev->family = AF_INET;
	ev->proto = ip.protocol;
	__builtin_memcpy(ev->src, &ip.saddr, 4);
	__builtin_memcpy(ev->dst, &ip.daddr, 4);

	/* Malformed: the host's stack would drop it too, but nothing unparsed may pass this layer. */
	__u32 hlen = ip.ihl * 4;
	__u32 tot = bpf_ntohs(ip.tot_len);

	if (ip.version != 4 || hlen < sizeof(ip) || tot < hlen || ETH_HLEN + tot > skb->len)
		return GUARD_CLASS_HOST_NOT_ALLOWED;

	/* The ports are read before the source is judged, so that a spoofed packet's event names them too. */
	__u16 frag = bpf_ntohs(ip.frag_off) & (IP_MF | IP_OFFSET);
	bool short_l4 = false;

	if (!(frag & IP_OFFSET) && (ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP)) {
		__be16 ports[2];

		if (bpf_skb_load_bytes(skb, ETH_HLEN + hlen, ports, sizeof(ports)) == 0) {
			has_ports = true;
			ev->sport = bpf_ntohs(ports[0]);
			dport = ev->dport = bpf_ntohs(ports[1]);
		} else {
			short_l4 = !frag; /* a whole TCP/UDP packet too short for its ports */
		}
	}
	if (ip.saddr != sb->guest)
		return GUARD_CLASS_SPOOFED_SOURCE;
	if (short_l4)
		return GUARD_CLASS_HOST_NOT_ALLOWED;

	bool to_gw = ip.daddr == sb->gw;

	/* Named before the fragment rule: a first fragment of DNS elsewhere is a bypass attempt too. */
	if (!to_gw && has_ports && dport == DNS_PORT)
		return GUARD_CLASS_DNS_BYPASS_ATTEMPT;

	/*
	 * Fragments elsewhere are never needed (TCP sets DF; the proxies see redirected TCP only). To the
	 * gateway, a first fragment carries the ports and is judged below like a whole packet (one too short
	 * to hold them is refused there). Later ones carry no ports and pass: the host reassembles nothing
	 * without its first fragment, and drops a datagram whose fragments overlap, so a later one cannot
	 * rewrite the ports. Passing first fragments unjudged let a sandbox reach any port of the host on
	 * its gateway address, fragment by fragment, where nftables is not there to judge the whole
	 * (`enforcement: ebpf`).
	 */
	if (frag && (!to_gw || (frag & IP_OFFSET)))
		return to_gw ? GUARD_CLASS_PASS : GUARD_CLASS_HOST_NOT_ALLOWED;

	if (to_gw) {
		if (ip.protocol == IPPROTO_ICMP && icmp_error_about_gw(skb, hlen, sb))
			return GUARD_CLASS_PASS;
		if (!has_ports)
			return GUARD_CLASS_PORT_NOT_ALLOWED; /* ICMP and any other protocol */
		struct guard_port key = { .port = dport, .proto = ip.protocol };

		return bpf_map_lookup_elem(&gw_ports, &key) ? GUARD_CLASS_PASS : GUARD_CLASS_PORT_NOT_ALLOWED;
	}
	if (ip.protocol == IPPROTO_TCP && (sb->flags & GUARD_F_TCP_REDIRECT))
		return GUARD_CLASS_PASS;
	return GUARD_CLASS_HOST_NOT_ALLOWED;
}

static __always_inline int classify(struct __sk_buff *skb, const struct guard_sandbox *sb, struct guard_drop *ev)
{
	struct ethhdr eth;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
		return GUARD_CLASS_HOST_NOT_ALLOWED;
	__builtin_memcpy(ev->src_mac, eth.h_source, 6);
	ev->ethertype = bpf_ntohs(eth.h_proto);
	if (!mac_eq(eth.h_source, sb->mac))
		return GUARD_CLASS_SPOOFED_SOURCE;
	/*
	 * Tagged frames. By the time tc sees one, the receive path has moved the (outer) tag out of the frame
	 * into the skb (skb_vlan_untag; veth's tx offload never puts it in), so h_proto already names the
	 * inner protocol: without this check a tagged IPv4 packet would be judged as an untagged one, and one
	 * with VLAN id 0 (a priority tag) would reach the host's IP stack.
	 */
	if (skb->vlan_present) {
		ev->ethertype = bpf_ntohs(skb->vlan_proto);
		return GUARD_CLASS_HOST_NOT_ALLOWED;
	}
	switch (ev->ethertype) {
	case ETH_P_ARP:
		return classify_arp(skb, sb, ev);
	case ETH_P_IP:
		return classify_ipv4(skb, sb, ev);
	case ETH_P_IPV6:
		return classify_ipv6(skb, sb, ev);
	default:
		return GUARD_CLASS_HOST_NOT_ALLOWED; /* in-frame VLAN tags, PPPoE, LLDP, 802.3 lengths, ... */
	}
}

/*
 * The per-slot rate limit of drop events, exact under concurrency: the bucket's update is a
 * read-compare-write that two CPUs dropping the same sandbox's packets could interleave, so it runs under
 * the value's bpf_spin_lock (no helper calls inside; the clock is read before).
 */
static __always_inline bool event_allowed(__u32 slot)
{
	struct guard_bucket *b = bpf_map_lookup_elem(&buckets, &slot);
	__u64 now = bpf_ktime_get_ns();
	bool allowed = false;

	if (!b)
		return false;
	bpf_spin_lock(&b->lock);
	__u64 tat = b->tat > now ? b->tat : now;

	if (tat - now <= EVENT_TOLERANCE_NS) {
		b->tat = tat + EVENT_INTERVAL_NS;
		allowed = true;
	}
	bpf_spin_unlock(&b->lock);
	return allowed;
}

SEC("tc")
int crgw_guard(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	const struct guard_sandbox *sb = bpf_map_lookup_elem(&sandboxes, &ifindex);
	struct guard_drop ev = {};

	/* An interface this guard is on without an entry: between a detach's steps, or a stale filter. */
	if (!sb) {
		stat_add(GUARD_STAT_UNREGISTERED_PACKETS, 1);
		stat_add(GUARD_STAT_UNREGISTERED_BYTES, skb->len);
		return TC_ACT_SHOT;
	}

	__u32 slot = sb->slot;
	__u32 cls = classify(skb, sb, &ev);

	if (cls >= GUARD_CLASS_MAX) /* cannot happen; bounds the index for the verifier all the same */
		cls = GUARD_CLASS_HOST_NOT_ALLOWED;

	struct guard_counters *c = bpf_map_lookup_elem(&counters, &slot);

	if (c) {
		c->packets[cls] += 1;
		c->bytes[cls] += skb->len;
	}
	if (cls == GUARD_CLASS_PASS)
		return TC_ACT_OK;

	if (!event_allowed(slot)) {
		stat_add(GUARD_STAT_EVENTS_SUPPRESSED, 1);
		return TC_ACT_SHOT;
	}
	ev.slot = slot;
	ev.reason = cls;
	ev.len = skb->len;
	if (bpf_ringbuf_output(&events, &ev, sizeof(ev), 0) < 0)
		stat_add(GUARD_STAT_EVENTS_LOST, 1);
	return TC_ACT_SHOT;
}

/* No helper this program calls is GPL-only, so it carries the project's license. */
char LICENSE[] SEC("license") = "Apache-2.0";
