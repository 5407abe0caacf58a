/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sandbox registry: (ingress interface, guest address) → sandbox, with its immutable compiled policy,
 * counters and DNS bindings. Registration and release run on the control thread and are atomic with the
 * kernel enforcement; lookups run on every worker and take a reference.
 */
#ifndef CRGW_GATEWAY_SANDBOX_H
#define CRGW_GATEWAY_SANDBOX_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgroup.h"
#include "crgw/limits.h"
#include "crgw/policy.h"

struct crgw_config;
struct crgw_binding_table;
struct crgw_mediation_state;

struct crgw_sandbox_counters {
	atomic_uint_fast64_t dns_queries, dns_allowed, dns_denied, dns_rate_limited, dns_formerr, dns_servfail;
	atomic_uint_fast64_t connections_refused;
	atomic_uint tunnels; /* explicit-proxy connections open now */
	atomic_uint mediation_conns; /* mediation connections open now */
	atomic_uint dns_tcp_conns; /* DNS-over-TCP connections open now */
};

/*
 * How long making the sandbox and running in it took, in ms, as its backend reported them (crgw-ctl posts
 * them: the gateway cannot see a VM boot), and the gateway's own teardown. -1: not reported.
 */
struct crgw_sandbox_timings {
	int64_t image_prep_ms, network_ms, boot_ms, last_command_ms, teardown_ms;
	uint32_t commands; /* commands whose time was reported */
};

struct crgw_sandbox {
	atomic_uint refs;
	/* Set as its release begins: the workers then close its connections (crgw_sandbox_on_release). */
	atomic_bool released;
	char id[24];
	char name[CRGW_SANDBOX_NAME_MAX + 1]; /* "" when the caller gave none */
	char run_id[64];
	char backend[16];
	unsigned slot;
	char ifname[16];
	uint8_t guest_mac[6]; /* the sandbox side's MAC address (the veth peer's, or what the VMM must use) */
	int ifindex;
	struct in_addr gw, guest;
	struct crgw_policy *policy; /* owned reference, immutable */
	bool learn;                 /* learn mode: what the policy alone refuses passes, audited as warn */
	char policy_hash[72];
	int64_t created_us;
	pid_t holder_pid;
	int holder_pidfd; /* -1 when the sandbox has no holder process */
	int64_t expires_us; /* CLOCK_REALTIME µs when its TTL ends */
	unsigned ttl_s;
	/* Its control group (owned; NULL when the operator allowed sandboxes without limits and none could
	 * be had) and the limits in it. Read on the control thread only. */
	struct crgw_cgroup *cgroup;
	struct crgw_cgroup_limits limits;
	uint64_t oom_kills_seen;
	/* Bytes of its own file system, mounted on data_dir (disk.h); 0: its data shares the host's. */
	uint64_t disk_limit;
	/* Where its data lives (data_dir/sandboxes/ID: workspace changes, home), and its workspace as the
	 * backend described it, for crgw-ctl's sandbox diff and cp. */
	char data_dir[4200];
	char workspace_mode[8];
	char workspace_dir[4096];
	struct crgw_sandbox_counters counters;
	struct crgw_sandbox_timings timings; /* control thread only */
	/* DNS query rate limit: a one-second window, approximate across workers by design. */
	atomic_uint_fast64_t rate_window;
	atomic_uint rate_count;
	/* Audit events for denials are rate limited per sandbox; the suppressed ones are counted. */
	atomic_uint_fast64_t audit_window;
	atomic_uint audit_count;
	atomic_uint_fast64_t audit_suppressed;
	struct crgw_binding_table *bindings;
	/* What mediation remembers between this sandbox's requests (made on first use; mediation.h). */
	_Atomic(struct crgw_mediation_state *) mediation;
};

/* What a registration asks for (the control API's POST /v1/sandboxes body, validated). */
struct crgw_sandbox_request {
	const char *policy_json; /* borrowed CompiledPolicy text */
	size_t policy_len;
	const char *netns_path;  /* the sandbox's network namespace; NULL for a VM (tap) */
	const char *run_id;      /* optional */
	const char *backend;     /* "netns", "qemu", "firecracker" */
	bool tap;                /* a VM's TAP instead of a veth into netns_path */
	long long tap_owner;     /* the uid that may attach to the TAP besides root; -1: root only */
	pid_t holder_pid;        /* optional: the process that keeps the sandbox alive; 0 for none */
	const char *name;        /* optional, unique among live sandboxes */
	const char *workspace_mode; /* optional: copy, rw, ro or none */
	const char *workspace_dir;  /* optional: the host directory, absolute */
	struct crgw_cgroup_limits limits; /* asked for; a zero field takes the operator's ceiling */
	uint64_t disk_limit;              /* asked for, in bytes; 0 takes the operator's ceiling */
	bool learn;                 /* learn mode (needs learn.allowed and a policy that permits it) */
};

/* What stays of a released sandbox for a while, so that its creator can learn why it ended. */
struct crgw_sandbox_tombstone {
	char id[24];
	char name[CRGW_SANDBOX_NAME_MAX + 1];
	char why[128];
	int64_t released_us;
	bool has_usage;
	struct crgw_cgroup_usage usage;
	struct crgw_cgroup_limits limits;
	struct crgw_sandbox_timings timings;
	uint64_t disk_limit;
	bool has_disk_used;
	uint64_t disk_used; /* bytes its disk held when it was released */
};

/* Copies the tombstone of the released sandbox `id_or_name` (the last 256 are kept). Control thread. */
bool crgw_sandbox_tombstone_find(const char *id_or_name, struct crgw_sandbox_tombstone *out);

/* How sandboxes are limited: "v1 (memory, pids, cpu, cpuacct) under …", or why they are not. */
const char *crgw_registry_limits_state(bool *active);

/*
 * Whether sandboxes get disks of their own: "ext4 on a loop device per sandbox, …", "none: …" (limits.disk
 * is 0), or "off: why" (the host cannot, and limits.optional let the gateway start); `off` says the last.
 */
const char *crgw_registry_disk_state(bool *off);

/* Sets up the registry for the configured pool and the kernel state (a fresh table). Control thread. */
int crgw_registry_init(const struct crgw_config *cfg, const struct crgw_blocklist *blocked);

/* Removes a crashed predecessor's interfaces and nftables table. Runs before anything is accepted. */
int crgw_registry_cleanup_stale(const struct crgw_config *cfg);

/*
 * Registers a sandbox: loads its policy, allocates a /30, creates the interface in its namespace and
 * installs its nftables chains, all or nothing. Returns 0 with a new reference in `*out`, or -errno with
 * `err` filled (the caller answers runtime_launch_failed or policy_invalid per `*reason`).
 */
int crgw_sandbox_register(const struct crgw_sandbox_request *req, struct crgw_sandbox **out,
			  enum crgw_reason *reason, char *err, size_t errlen);

/*
 * Releases the sandbox `id` (or name): interface, rules, sets, bindings; kills its holder and every
 * process in its group; its group and data go to the teardown thread; a tombstone says `why`.
 * -ENOENT if unknown. Control thread.
 */
int crgw_sandbox_release(const char *id, const char *why);

/* Reads the sandbox's resource usage. Returns 0, or -ENOENT when it has no group. Control thread. */
int crgw_sandbox_usage(const struct crgw_sandbox *sb, struct crgw_cgroup_usage *out);

/* Releases every sandbox (shutdown). */
void crgw_registry_release_all(const char *why);

/*
 * Audits sandbox_released for each sandbox a previous gateway registered and left behind (found by
 * crgw_registry_cleanup_stale), so that every sandbox_registered in the log has its end. Call once the
 * audit log is open.
 */
void crgw_registry_audit_stale(void);

/* Tears down the nftables table (shutdown, after release_all). */
void crgw_registry_fini(void);

/*
 * The sandbox that owns packets arriving on `ifindex` from `src` (network order), with a new reference,
 * or NULL. `ifindex` 0 skips the interface check (TCP, where anti-spoof rules bind the address to the
 * interface). Any thread; wait-free for readers apart from a read lock.
 */
struct crgw_sandbox *crgw_sandbox_lookup(int ifindex, struct in_addr src);

/*
 * The sandbox behind an accepted TCP connection (`fd`, peer `sa`/`salen`), with a new reference, or NULL
 * after auditing `unknown_sandbox` for `service`. The anti-spoof rules tie every pool address to its own
 * interface, so the source names the sandbox; the connection must also be addressed to that sandbox's
 * gateway address (after a redirect, the kernel reports the gateway address as the local one).
 */
struct sockaddr;
struct crgw_sandbox *crgw_sandbox_for_accepted(int fd, const struct sockaddr *sa, int salen, const char *service);

/* By id or name, with a new reference, or NULL. */
struct crgw_sandbox *crgw_sandbox_find(const char *id);

/* Calls `cb` for each registered sandbox under the registry's read lock (it must not block). */
void crgw_sandbox_foreach(void (*cb)(struct crgw_sandbox *sb, void *arg), void *arg);

unsigned crgw_sandbox_count(void);

/* Packets dropped for claiming a sandbox-pool source on another interface (nftables counter). */
uint64_t crgw_registry_pool_spoof_packets(void);

/* The sandbox behind host-side interface `ifindex`, with a new reference, or NULL. Control thread. */
struct crgw_sandbox *crgw_sandbox_by_ifindex(int ifindex);

/* The sandbox in `slot`, with a new reference, or NULL. Any thread. */
struct crgw_sandbox *crgw_sandbox_by_slot(uint32_t slot);

struct crgw_nft_counters;
/* Reads the sandbox's nftables drop counters. Returns 0 or -errno (-ENODEV: nftables is not a layer). */
int crgw_sandbox_kernel_counters(const struct crgw_sandbox *sb, struct crgw_nft_counters *out);

struct crgw_guard_counters;
/* Reads the sandbox's eBPF guard counters (packets and bytes by class). -ENODEV: the guard is off. */
int crgw_sandbox_guard_counters(const struct crgw_sandbox *sb, struct crgw_guard_counters *out);

struct crgw_guard;
/*
 * The enforcement layers: whether nftables is one (`*nft`), the eBPF guard when it is on (`*guard`, borrowed,
 * NULL otherwise; either pointer may be NULL), and the guard's state for people: "active" or "off: why".
 */
const char *crgw_registry_enforcement(bool *nft, struct crgw_guard **guard);

struct crgw_sandbox *crgw_sandbox_ref(struct crgw_sandbox *sb);
void crgw_sandbox_unref(struct crgw_sandbox *sb);

/*
 * `hook` is called (on the thread that releases, after `released` is set) whenever a sandbox is released,
 * so that connections holding a reference to it end with it rather than at their idle timeout. NULL
 * removes it. Set and cleared on the thread that releases sandboxes (the main thread).
 */
void crgw_sandbox_on_release(void (*hook)(void));

/* The blocklist every decision uses (the pool, the gateway's own addresses, the operator's ranges). */
const struct crgw_blocklist *crgw_gateway_blocklist(void);

/*
 * (Re)builds the gateway's blocklist from `cfg` (the pool, blocked_ranges, the host's own addresses) and
 * publishes it; the list it replaces stays valid until shutdown. At start and on a reload (main thread).
 * Returns 0, -ENOSPC after 64 reloads that changed it, or -errno.
 */
int crgw_registry_set_blocked(const struct crgw_config *cfg);

/*
 * The sandbox's decisions: the policy's (crgw_policy_decide, crgw_policy_check_address, with the gateway's
 * blocklist), except in learn mode, where what the policy alone refuses (host_not_allowed,
 * port_not_allowed, ip_literal_not_allowed by a policy rule) passes with `allow` true and the reason and
 * rule enforcement would have given kept: callers audit such a decision with action warn. What the
 * gateway refuses always (private_address_blocked, gateway.* rules) is refused in learn mode too.
 */
void crgw_sandbox_decide(const struct crgw_sandbox *sb, const struct crgw_host *host, uint16_t port,
			 struct crgw_decision *d);
void crgw_sandbox_check_address(const struct crgw_sandbox *sb, const struct crgw_host *addr, uint16_t port,
				struct crgw_decision *d);

/* ---- audit rate limits ------------------------------------------------------------------------- */

#define CRGW_AUDIT_DENY_PER_S 100

/*
 * True when this sandbox may emit another denial event this second (CRGW_AUDIT_DENY_PER_S); counts the
 * ones it may not, and hands the count of suppressed events to the next one allowed in `*suppressed`.
 */
bool crgw_sandbox_audit_allowed(struct crgw_sandbox *sb, uint64_t *suppressed);

/* Audits traffic from a source that is no registered sandbox (unknown_sandbox), rate limited globally. */
struct sockaddr_in;
void crgw_audit_unknown(const struct sockaddr_in *peer, int ifindex, const char *service);

/* ---- DNS bindings (SPEC section 5): what the gateway's resolver told this sandbox ---------------- */

/* As many as the DNS cache keeps of one answer (CRGW_DNS_CACHE_ADDRS): a binding never cuts an answer short. */
#define CRGW_BINDING_ADDRS 64

struct crgw_binding_addr {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
};

/*
 * Records that `name` resolved to `addrs` (n >= 1, all of one family, unused bytes zero) for this sandbox
 * until `expiry` (CLOCK_MONOTONIC seconds). Returns 1 when the binding is new, changed or extended (the
 * caller audits those), 0 when an equal one already existed, -ENOSPC when the sandbox holds the maximum
 * of live bindings, -ENOMEM. Thread-safe.
 */
int crgw_binding_record(struct crgw_sandbox *sb, const char *name, const struct crgw_binding_addr *addrs,
			unsigned n, int64_t expiry);

/* Removes the binding of (`name`, `family`): used when the allow that made it could not be audited. */
void crgw_binding_forget(struct crgw_sandbox *sb, const char *name, uint8_t family);

/* True when `name` is bound to `addr` for this sandbox and the binding has not expired. */
bool crgw_binding_check(struct crgw_sandbox *sb, const char *name, const struct crgw_binding_addr *addr);

/*
 * The name a live binding of this sandbox ties to `addr` (the most recently extended one), copied into
 * `name` (CRGW_HOST_NAME_MAX + 1 bytes). Returns false when no name is bound to it. Thread-safe; costs a
 * walk of the sandbox's bindings (at most 4,096).
 */
bool crgw_binding_name_for(struct crgw_sandbox *sb, const struct crgw_binding_addr *addr, char *name);

/*
 * Among the names a live binding of this sandbox ties to `addr`, one the policy allows on `port`: copied
 * into `name` (CRGW_HOST_NAME_MAX + 1 bytes) with its decision in `*d`, and true. When none is allowed,
 * false, with `*d` the decision of the last name looked at (d->reason is CRGW_REASON_NONE when no name is
 * bound to the address at all). Thread-safe.
 */
bool crgw_binding_allowed_name(struct crgw_sandbox *sb, const struct crgw_binding_addr *addr, uint16_t port,
			       char *name, struct crgw_decision *d);

unsigned crgw_binding_count(struct crgw_sandbox *sb);

int64_t crgw_monotonic_s(void);
int64_t crgw_realtime_us(void);

#endif
