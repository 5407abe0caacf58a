/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcrgw-ebpf: the sandbox guard, a tc ingress program on each sandbox's host-side interface that passes
 * only what the gateway serves (a second layer beside nftables), with per-sandbox counters by class and
 * rate-limited drop events. ebpf/README.md says what it decides.
 *
 * One struct crgw_guard per gateway: one loaded program and its maps, attached to any number of
 * interfaces. Nothing is pinned: the program and maps live as long as this process holds them or an
 * interface holds the filter. Interfaces are named by ifindex in the network namespace of the thread
 * that calls attach and detach; use one namespace for all of a guard's interfaces.
 *
 * Threads: a guard is not locked; call its functions from one thread at a time (the gateway's control
 * thread). Every function returns 0 (or the documented non-negative value) on success and -errno on
 * failure, as libbpf does. Needs CAP_BPF and CAP_NET_ADMIN (root) and a kernel with BTF.
 *
 * libbpf prints through one process-wide callback: crgw_guard_open() installs one that discards
 * everything except, during a failing open, what goes into its `err`.
 */
#ifndef CRGW_EBPF_H
#define CRGW_EBPF_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include "crgw/reason.h"

struct crgw_guard;

/* What the program decided about a packet: the index of its counter, the reason of its drop event. */
enum crgw_guard_class {
	CRGW_GUARD_PASS = 0,
	CRGW_GUARD_SPOOFED_SOURCE,
	CRGW_GUARD_DNS_BYPASS_ATTEMPT,
	CRGW_GUARD_HOST_NOT_ALLOWED,
	CRGW_GUARD_PORT_NOT_ALLOWED,
	CRGW_GUARD_CLASS_COUNT
};

/* crgw_guard_sandbox.flags */
#define CRGW_GUARD_F_IPV6 (1u << 0) /* the sandbox may send IPv6: passed unchecked in this version */
/* TCP to addresses other than the gateway passes (nftables redirects it to the transparent proxies);
 * without it such TCP is dropped as host_not_allowed. */
#define CRGW_GUARD_F_TCP_REDIRECT (1u << 1)

/* The default number of slots (a /16 pool of /30s), when crgw_guard_open() is given 0. */
#define CRGW_GUARD_DEFAULT_SLOTS 16384u

/* One sandbox's host-side interface, as attach and detach take it. */
struct crgw_guard_sandbox {
	uint32_t slot;     /* the sandbox's slot, below the guard's max_slots; names its counters */
	int ifindex;       /* the host-side interface */
	uint8_t mac[6];    /* the sandbox side's MAC address: the only source MAC its frames may carry */
	struct in_addr guest, gw; /* network order */
	uint32_t flags;    /* CRGW_GUARD_F_* */
};

/* A slot's counts since its attach, summed over CPUs, indexed by enum crgw_guard_class. */
struct crgw_guard_counters {
	uint64_t packets[CRGW_GUARD_CLASS_COUNT];
	uint64_t bytes[CRGW_GUARD_CLASS_COUNT];
};

/* The guard's own counts, since open. */
struct crgw_guard_stats {
	uint64_t unregistered_packets; /* arrived on an interface with the filter but no entry: dropped */
	uint64_t unregistered_bytes;
	uint64_t events_suppressed; /* drop events withheld by the per-slot limit (10/s, burst 20) */
	uint64_t events_lost;       /* drop events the full ring buffer refused */
};

/* One reported drop; valid only during the callback. */
struct crgw_guard_drop {
	uint32_t slot;
	unsigned reason;    /* enum crgw_guard_class, never CRGW_GUARD_PASS */
	uint8_t proto;      /* IP protocol (IPv6: first next header); 0 for ARP and other frames */
	int family;         /* AF_INET: src/dst are IPv4 (IPv4 packets; ARP sender/target), AF_INET6, or 0 */
	uint16_t ethertype; /* the frame's (0x0800, 0x0806, 0x86dd, ...), or its VLAN tag's (0x8100, 0x88a8) */
	uint16_t sport, dport; /* host order; 0 without a TCP/UDP header */
	uint8_t src_mac[6];
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} src, dst;
	uint32_t len; /* the frame's length */
};

/*
 * Loads and verifies the program and creates its maps, sized for `max_slots` slots (0: the default;
 * 1..CRGW_GUARD_DEFAULT_SLOTS). The gateway ports a sandbox may reach start as UDP 53 and TCP 53, 3128,
 * 8170. On success `*out` is a new guard the caller frees with crgw_guard_close(). On failure: -errno
 * and, when `err` is not NULL, a sentence saying why BPF is not usable (no BTF, not permitted, the
 * verifier's refusal with the end of its log). Quiet otherwise: libbpf's messages go nowhere else.
 */
int crgw_guard_open(struct crgw_guard **out, uint32_t max_slots, char *err, size_t errlen);

/*
 * Takes the guard: removes the filter from every interface still attached (and the clsact qdisc where
 * this guard made it), then unloads the program and frees the maps. NULL-safe. An interface that is
 * gone is not an error.
 */
void crgw_guard_close(struct crgw_guard *g);

/*
 * Guards one interface (`sb` is borrowed): zeroes the slot's counters and event limit, adds the map
 * entry, creates the clsact qdisc unless there is one, and attaches the program as a direct-action
 * ingress filter. All or nothing: on failure nothing of it is left (the entry removed, the qdisc removed
 * if this call made it). -EINVAL for a bad slot, ifindex or flags; -EEXIST when the interface or the slot
 * is already attached (to change flags: detach, attach); -ENODEV when the interface does not exist.
 */
int crgw_guard_attach(struct crgw_guard *g, const struct crgw_guard_sandbox *sb);

/*
 * Undoes crgw_guard_attach() for `sb` (borrowed; slot and ifindex are what count): the filter, the clsact
 * qdisc if attach made it, the map entry. -ENOENT when this guard has no such attachment. -ENODEV when the
 * interface is already gone (its qdisc and filter went with it): the entry is removed all the same and
 * the guard forgets the attachment, so callers may take -ENODEV as success. On any other error the entry
 * is removed (the interface then drops everything) and the guard keeps the attachment, so that detach may
 * be called again and close retries. Counters stay readable until the slot's next attach.
 */
int crgw_guard_detach(struct crgw_guard *g, const struct crgw_guard_sandbox *sb);

/* A slot's counters, summed over CPUs, into `*out`. -EINVAL for a slot outside the guard. */
int crgw_guard_counters(struct crgw_guard *g, uint32_t slot, struct crgw_guard_counters *out);

/* The guard's own counts into `*out`. */
int crgw_guard_stats(struct crgw_guard *g, struct crgw_guard_stats *out);

/* Drop events withheld by the rate limit or lost to a full ring buffer, since open. */
uint64_t crgw_guard_suppressed(struct crgw_guard *g);

/*
 * A descriptor that polls readable (epoll, poll, an event loop) when drop events are waiting; owned by
 * the guard, valid until crgw_guard_close(). Read events with crgw_guard_events_poll().
 */
int crgw_guard_events_fd(struct crgw_guard *g);

/*
 * Hands every drop event that is ready to `cb(arg, drop)`, without blocking, in the calling thread,
 * before it returns. Returns the number handed over or -errno. `cb` must not call back into the guard.
 */
int crgw_guard_events_poll(struct crgw_guard *g, void (*cb)(void *arg, const struct crgw_guard_drop *d), void *arg);

/*
 * Lets every sandbox reach (`allow` != 0), or no longer reach, its gateway address on `port` of `proto`
 * (IPPROTO_TCP or IPPROTO_UDP): for a gateway whose services listen elsewhere than the defaults. Takes
 * effect at once on every attached interface. -EINVAL for another protocol or port 0; -E2BIG past 64 pairs.
 */
int crgw_guard_gw_port(struct crgw_guard *g, int proto, uint16_t port, int allow);

/* The audit reason of a class (CRGW_REASON_NONE for CRGW_GUARD_PASS); CRGW_REASON_COUNT_ out of range. */
enum crgw_reason crgw_guard_reason(unsigned cls);

/* The class's name: "pass", or the audit reason code ("spoofed_source", ...); NULL out of range. */
const char *crgw_guard_reason_name(unsigned cls);

#endif
