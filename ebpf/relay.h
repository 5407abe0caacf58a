/* SPDX-License-Identifier: Apache-2.0 */
/* The structs the sockmap relay program and its loader share (fixed-width fields only). */
#ifndef CRGW_EBPF_RELAY_H
#define CRGW_EBPF_RELAY_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define RELAY_MAX_TUNNELS 65536

/* Side of a socket in a tunnel: bytes received on side s are sent out of side s ^ 1. */
#define RELAY_SIDE_CLIENT 0   /* received from the client: "up" */
#define RELAY_SIDE_UPSTREAM 1 /* received from the upstream: "down" */

/* `socks` (SOCKHASH) key of a tunnel's socket. */
#define RELAY_KEY(tunnel, side) (((__u64)(tunnel) << 1) | (side))

/* `endpoints` value, by socket cookie. */
struct relay_endpoint {
	__u64 peer_key; /* RELAY_KEY of the other socket: where this socket's received bytes go */
	__u64 tunnel;
	__u32 side;
	__u32 pad;
};

/*
 * `tunnels` value. bytes[] and last_ns are updated by the program with atomic adds and plain stores
 * (one value per tunnel, not per CPU: a tunnel's two directions run on whatever CPUs softirq picks and
 * the gateway reads them rarely). The base_* fields are written once by the loader when it adds the
 * tunnel: what the kernel had already counted on each socket then, so that drain checks compare only
 * what the relay moved.
 */
struct relay_tunnel {
	__u64 bytes[2]; /* by receiving side: [0] up (client -> upstream), [1] down */
	__u64 skbs[2];
	__u64 last_ns;  /* bpf_ktime_get_ns() of the last redirected skb, either direction */
	__u64 passed[2]; /* skbs left on the receiving socket for user space: the peer is out of the map (paused) */
	__u64 base_rx[2]; /* tcpi_bytes_received of each side at add */
	__u64 base_tx[2]; /* bytes written into each side (tcpi_bytes_acked + SIOCOUTQ) at add */
	__u64 cookie[2];  /* each side's socket cookie: the `endpoints` keys, for remove */
};

#endif
