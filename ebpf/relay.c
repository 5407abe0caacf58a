/* SPDX-License-Identifier: Apache-2.0 */
/* The sockmap relay's loader: the generated skeleton, the verdict attach, tunnels in and out, counters. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* tcp_info with tcpi_bytes_received, tcpi_bytes_acked */
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/bpf.h>
#include <linux/sockios.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "crgw/relay.h"
#include "relay.h"
#include "relay.skel.h"

/* include/net/tcp_states.h: the states in which the peer's FIN has been received */
enum { ST_TIME_WAIT = 6, ST_CLOSE = 7, ST_CLOSE_WAIT = 8, ST_LAST_ACK = 9, ST_CLOSING = 11 };

_Static_assert(CRGW_RELAY_UP == RELAY_SIDE_CLIENT && CRGW_RELAY_DOWN == RELAY_SIDE_UPSTREAM, "sides are the program's");

struct crgw_relay {
	struct crgw_relay_bpf *skel;
	int socks_fd, endpoints_fd, tunnels_fd;
	bool attached, parser;
};

static void set_err(char *err, size_t errlen, const char *what, int rc)
{
	if (err && errlen)
		snprintf(err, errlen, "relay: %s: %s", what, strerror(-rc));
}

int crgw_relay_open(struct crgw_relay **out, unsigned flags, char *err, size_t errlen)
{
	struct crgw_relay *r;
	int rc;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->skel = crgw_relay_bpf__open_and_load();
	if (!r->skel) {
		rc = errno ? -errno : -EINVAL;
		set_err(err, errlen, "load", rc);
		goto out;
	}
	r->socks_fd = bpf_map__fd(r->skel->maps.socks);
	r->endpoints_fd = bpf_map__fd(r->skel->maps.endpoints);
	r->tunnels_fd = bpf_map__fd(r->skel->maps.tunnels);
	/*
	 * A stream verdict program without a stream parser: the kernel (5.15+) then runs it per received skb
	 * from the socket's data_ready, with no strparser in the way (sock_map_link's "verdict" path).
	 */
	if (flags & CRGW_RELAY_F_STRPARSER) {
		rc = bpf_prog_attach(bpf_program__fd(r->skel->progs.relay_parser), r->socks_fd, BPF_SK_SKB_STREAM_PARSER, 0);
		if (rc) {
			rc = -errno;
			set_err(err, errlen, "attach stream parser", rc);
			goto out;
		}
		r->parser = true;
	}
	rc = bpf_prog_attach(bpf_program__fd(r->skel->progs.relay_verdict), r->socks_fd, BPF_SK_SKB_STREAM_VERDICT, 0);
	if (rc) {
		rc = -errno;
		set_err(err, errlen, "attach stream verdict", rc);
		goto out;
	}
	r->attached = true;
	*out = r;
	return 0;
out:
	crgw_relay_close(r);
	return rc;
}

void crgw_relay_close(struct crgw_relay *r)
{
	if (!r)
		return;
	if (r->attached)
		bpf_prog_detach2(bpf_program__fd(r->skel->progs.relay_verdict), r->socks_fd, BPF_SK_SKB_STREAM_VERDICT);
	if (r->parser)
		bpf_prog_detach2(bpf_program__fd(r->skel->progs.relay_parser), r->socks_fd, BPF_SK_SKB_STREAM_PARSER);
	crgw_relay_bpf__destroy(r->skel);
	free(r);
}

static int cookie_of(int fd, uint64_t *cookie)
{
	socklen_t len = sizeof(*cookie);

	return getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &len) ? -errno : 0;
}

/* What the kernel counted on fd: bytes received (without the FIN) and bytes written into it. */
static int tcp_counts(int fd, uint64_t *rx, uint64_t *tx)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int outq = 0;

	memset(&ti, 0, sizeof(ti));
	/* acked first, then the queue: a concurrent ack between the two can only make tx smaller, never larger */
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return -errno;
	if (ioctl(fd, SIOCOUTQ, &outq))
		return -errno;
	*tx = ti.tcpi_bytes_acked + (uint64_t)outq;
	*rx = ti.tcpi_bytes_received;
	return 0;
}

int crgw_relay_add(struct crgw_relay *r, uint64_t tunnel, int client_fd, int upstream_fd, uint64_t client_reply)
{
	struct relay_tunnel t;
	struct relay_endpoint ep;
	uint64_t cookie[2], key, rx, tx;
	int fds[2] = {client_fd, upstream_fd};
	bool t_created = false, ep_created[2] = {false, false}, sock_created[2] = {false, false};
	int rc, s;

	if (tunnel >= (UINT64_MAX >> 1))
		return -EINVAL;
	memset(&t, 0, sizeof(t));
	for (s = 0; s < 2; s++) {
		rc = cookie_of(fds[s], &cookie[s]);
		if (rc)
			return rc;
		t.cookie[s] = cookie[s];
		rc = tcp_counts(fds[s], &rx, &tx);
		if (rc)
			return rc;
		t.base_rx[s] = rx;
		t.base_tx[s] = tx;
	}
	t.base_tx[RELAY_SIDE_CLIENT] += client_reply;
	if (bpf_map_update_elem(r->tunnels_fd, &tunnel, &t, BPF_NOEXIST)) {
		rc = -errno;
		goto out;
	}
	t_created = true;
	/* endpoints before sockets: the program drops an skb from a socket it has no endpoint for */
	for (s = 0; s < 2; s++) {
		memset(&ep, 0, sizeof(ep));
		ep.peer_key = RELAY_KEY(tunnel, s ^ 1);
		ep.tunnel = tunnel;
		ep.side = (uint32_t)s;
		if (bpf_map_update_elem(r->endpoints_fd, &cookie[s], &ep, BPF_NOEXIST)) {
			rc = -errno;
			goto out;
		}
		ep_created[s] = true;
	}
	for (s = 0; s < 2; s++) {
		uint64_t val = (uint64_t)fds[s];

		key = RELAY_KEY(tunnel, s);
		if (bpf_map_update_elem(r->socks_fd, &key, &val, BPF_NOEXIST)) {
			rc = -errno;
			goto out;
		}
		sock_created[s] = true;
	}
	return 0;
out:
	for (s = 0; s < 2; s++) {
		key = RELAY_KEY(tunnel, s);
		if (sock_created[s])
			bpf_map_delete_elem(r->socks_fd, &key);
		if (ep_created[s])
			bpf_map_delete_elem(r->endpoints_fd, &cookie[s]);
	}
	if (t_created)
		bpf_map_delete_elem(r->tunnels_fd, &tunnel);
	return rc;
}

int crgw_relay_remove(struct crgw_relay *r, uint64_t tunnel)
{
	struct relay_tunnel t;
	uint64_t key;
	int s, rc;

	if (bpf_map_lookup_elem(r->tunnels_fd, &tunnel, &t))
		return -errno;
	/*
	 * Sockets first: deleting one from the sockhash restores its original proto and callbacks (the psock
	 * goes away when its last reference does, bytes already queued on it are dropped). Then the endpoints
	 * and the counters, which the program may still be reading for an skb in flight; a missing endpoint
	 * is a drop there, never a redirect to a stale key.
	 */
	for (s = 0; s < 2; s++) {
		key = RELAY_KEY(tunnel, s);
		bpf_map_delete_elem(r->socks_fd, &key);
	}
	for (s = 0; s < 2; s++)
		bpf_map_delete_elem(r->endpoints_fd, &t.cookie[s]);
	rc = bpf_map_delete_elem(r->tunnels_fd, &tunnel) ? -errno : 0;
	return rc;
}

int crgw_relay_stats(struct crgw_relay *r, uint64_t tunnel, struct crgw_relay_stats *st)
{
	struct relay_tunnel t;

	if (bpf_map_lookup_elem(r->tunnels_fd, &tunnel, &t))
		return -errno;
	for (int s = 0; s < 2; s++) {
		st->bytes[s] = t.bytes[s];
		st->skbs[s] = t.skbs[s];
		st->passed[s] = t.passed[s];
	}
	st->last_ns = t.last_ns;
	return 0;
}

int crgw_relay_unsent(struct crgw_relay *r, uint64_t tunnel, int dir, int from_fd, int to_fd, uint64_t *unsent)
{
	struct relay_tunnel t;
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	uint64_t rx, tx, dummy;
	int rc;

	if (dir != 0 && dir != 1)
		return -EINVAL;
	if (bpf_map_lookup_elem(r->tunnels_fd, &tunnel, &t))
		return -errno;
	rc = tcp_counts(to_fd, &dummy, &tx);
	if (rc)
		return rc;
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(from_fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return -errno;
	rx = ti.tcpi_bytes_received;
	/* the FIN takes a sequence number and tcpi_bytes_received counts it (rcv_nxt moved past it) */
	if (ti.tcpi_state == ST_CLOSE_WAIT || ti.tcpi_state == ST_LAST_ACK || ti.tcpi_state == ST_CLOSING ||
	    ti.tcpi_state == ST_TIME_WAIT || ti.tcpi_state == ST_CLOSE)
		rx--;
	rx -= t.base_rx[dir];
	tx -= t.base_tx[dir ^ 1];
	*unsent = rx > tx ? rx - tx : 0;
	return 0;
}

static unsigned count_keys(int fd)
{
	uint64_t cur, next;
	unsigned n = 0;
	void *prev = NULL;

	while (!bpf_map_get_next_key(fd, prev, &next)) {
		cur = next;
		prev = &cur;
		n++;
	}
	return n;
}

int crgw_relay_count(struct crgw_relay *r, unsigned *tunnels, unsigned *endpoints, unsigned *sockets)
{
	*tunnels = count_keys(r->tunnels_fd);
	*endpoints = count_keys(r->endpoints_fd);
	*sockets = count_keys(r->socks_fd);
	return 0;
}

int crgw_relay_pause(struct crgw_relay *r, uint64_t tunnel, int side)
{
	uint64_t key = RELAY_KEY(tunnel, side & 1);

	return bpf_map_delete_elem(r->socks_fd, &key) ? -errno : 0;
}

int crgw_relay_resume(struct crgw_relay *r, uint64_t tunnel, int side, int fd)
{
	uint64_t key = RELAY_KEY(tunnel, side & 1), val = (uint64_t)fd;

	return bpf_map_update_elem(r->socks_fd, &key, &val, BPF_NOEXIST) ? -errno : 0;
}
