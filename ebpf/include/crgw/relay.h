/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sockmap relay (experimental): established TCP tunnels relayed in the kernel by an sk_skb verdict
 * program, so the bytes never reach user space. Not used by the gateway yet.
 *
 * One relay per process (or per worker); its calls are not thread-safe against each other on one relay
 * (the maps are, so a thread may read stats while another adds tunnels). Needs CAP_BPF/CAP_NET_ADMIN.
 */
#ifndef CRGW_RELAY_H
#define CRGW_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct crgw_relay;

#define CRGW_RELAY_UP 0   /* client -> upstream; also the client socket's side */
#define CRGW_RELAY_DOWN 1 /* upstream -> client; also the upstream socket's side */

/* Also attach a stream parser (each skb whole), so the kernel runs the strparser path instead of the
 * parser-less verdict path. For the experiment: README "Relay (experimental)" has what it changes. */
#define CRGW_RELAY_F_STRPARSER 0x1u

/* Loads the program and its maps and attaches it to the sockhash. *out is a new relay on success;
 * err (may be NULL) receives a message on failure. Returns 0 or -errno. */
int crgw_relay_open(struct crgw_relay **out, unsigned flags, char *err, size_t errlen);
/* Detaches and frees; the kernel drops every socket still in the map (the sockets stay open). NULL ok. */
void crgw_relay_close(struct crgw_relay *r);

/*
 * Puts a tunnel in the relay: from now on what client_fd receives is sent out of upstream_fd and the
 * reverse. Borrows both fds (connected TCP sockets; the caller keeps them open until remove and closes
 * them after). Both or neither end up in the map. Bytes already in a socket's receive queue are not
 * relayed (read them first). `client_reply` is what the caller writes into client_fd itself right after
 * adding (a proxy's "200 Connection established", 0 if nothing): the drain check must not count it as
 * relayed. Adding before that reply is what keeps the client's first bytes from arriving before the
 * socket is in the map. Returns 0, -EEXIST if the tunnel id is in use, or -errno.
 */
int crgw_relay_add(struct crgw_relay *r, uint64_t tunnel, int client_fd, int upstream_fd, uint64_t client_reply);
/* Takes the tunnel out (both sockets, then its counters). Idempotent: -ENOENT if it was not there. */
int crgw_relay_remove(struct crgw_relay *r, uint64_t tunnel);

struct crgw_relay_stats {
	uint64_t bytes[2]; /* [CRGW_RELAY_UP], [CRGW_RELAY_DOWN]: bytes the program redirected */
	uint64_t skbs[2];
	uint64_t passed[2]; /* skbs left to user space on the receiving socket (peer paused or gone) */
	uint64_t last_ns; /* CLOCK_MONOTONIC ns of the last redirected skb, 0 if none */
};
int crgw_relay_stats(struct crgw_relay *r, uint64_t tunnel, struct crgw_relay_stats *st);

/* How many entries the maps hold: tunnels, endpoints (2 per tunnel), sockets (2 per tunnel). */
int crgw_relay_count(struct crgw_relay *r, unsigned *tunnels, unsigned *endpoints, unsigned *sockets);

/*
 * Half-close support. How many bytes received on `dir`'s source socket (from_fd) have not yet been
 * written into the destination socket (to_fd): the kernel's tcpi_bytes_received of from_fd (less the
 * FIN's sequence number once it came) against what was written into to_fd (tcpi_bytes_acked + SIOCOUTQ),
 * both since the add. The FIN rule: when from_fd reports EPOLLRDHUP, wait for *unsent == 0, then
 * shutdown(to_fd, SHUT_WR). Shutting down earlier loses the bytes still queued in the peer's psock.
 */
int crgw_relay_unsent(struct crgw_relay *r, uint64_t tunnel, int dir, int from_fd, int to_fd, uint64_t *unsent);

/*
 * Experiment for backpressure: take one socket of a tunnel out of the sockhash (pause) so that what it
 * receives stays in its own receive queue and TCP's window closes, and put it back (resume, borrowing fd).
 * Pausing destroys that socket's psock, and with it whatever the peer had redirected to it and not yet
 * sent (README). While one side is paused, what the other side receives is left on it for user space
 * (recv it and write it to the paused socket). Resume does not relay bytes that queued while paused:
 * move them first.
 */
int crgw_relay_pause(struct crgw_relay *r, uint64_t tunnel, int side);
int crgw_relay_resume(struct crgw_relay *r, uint64_t tunnel, int side, int fd);

#endif
