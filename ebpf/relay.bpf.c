// SPDX-License-Identifier: Apache-2.0
/* The sockmap relay: an sk_skb verdict program that sends what one socket of a tunnel receives out of the other. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "relay.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 2 * RELAY_MAX_TUNNELS);
	__type(key, __u64);
	__type(value, __u64);
} socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * RELAY_MAX_TUNNELS);
	__type(key, __u64); /* socket cookie */
	__type(value, struct relay_endpoint);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RELAY_MAX_TUNNELS);
	__type(key, __u64); /* tunnel id */
	__type(value, struct relay_tunnel);
} tunnels SEC(".maps");

/*
 * Without a stream parser the kernel runs this program once per received skb (the "verdict" path, no
 * strparser): skb->len is exactly what arrived. Redirect with flags 0 queues the skb on the peer's psock,
 * whose worker writes it into the peer's send queue; nothing crosses into user space.
 */
SEC("sk_skb/stream_verdict")
int relay_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct relay_endpoint *ep;
	struct relay_tunnel *t;
	__u32 side;
	long rc;

	/*
	 * The FIN arrives as an skb of its own with no payload (tcp_read_skb hands it over too). Redirected, it
	 * would reach the peer's psock after user space has shut the peer down for the half-close, and the
	 * failed send sets EPIPE on the peer (EPOLLERR) and disables its psock's transmit. TCP has already
	 * taken the FIN's state from it; dropping it loses no data.
	 */
	if (skb->len == 0)
		return SK_DROP;
	ep = bpf_map_lookup_elem(&endpoints, &cookie);
	if (!ep)
		return SK_DROP; /* a socket in `socks` is always in `endpoints` first; removal order keeps it so */
	side = ep->side & 1;
	t = bpf_map_lookup_elem(&tunnels, &ep->tunnel);
	rc = bpf_sk_redirect_hash(skb, &socks, &ep->peer_key, 0);
	if (rc != SK_PASS) {
		/*
		 * The peer is out of the map (paused by user space, or closing). The bytes are already
		 * acknowledged, so dropping them would lose data: leave them on this socket, where recv()
		 * returns them to user space.
		 */
		if (t)
			__sync_fetch_and_add(&t->passed[side], 1);
		return SK_PASS;
	}
	if (t) {
		__sync_fetch_and_add(&t->bytes[side], skb->len);
		__sync_fetch_and_add(&t->skbs[side], 1);
		t->last_ns = bpf_ktime_get_ns();
	}
	return SK_PASS;
}

/* Optional (CRGW_RELAY_F_STRPARSER): a parser that takes each skb whole, which puts the strparser in front */
SEC("sk_skb/stream_parser")
int relay_parser(struct __sk_buff *skb)
{
	return skb->len;
}
