/* SPDX-License-Identifier: Apache-2.0 */
/* The sandbox registry, registration and release atomic with enforcement, and the DNS bindings. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/nsfs.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "config.h"
#include "crgw/ebpf.h"
#include "disk.h"
#include "log.h"
#include "netctl.h"
#include "mediation/mediation.h"
#include "sandbox.h"
#include "teardown.h"

#define BIND_BUCKETS 256
#define BIND_MAX 4096

/* One (name, address family): A and AAAA answers bind separately, so alternating them changes nothing. */
struct binding {
	struct binding *next;
	int64_t expiry;
	uint8_t family;
	unsigned naddrs;
	struct crgw_binding_addr addrs[CRGW_BINDING_ADDRS];
	char name[];
};

struct crgw_binding_table {
	pthread_mutex_t lock;
	unsigned count;
	struct binding *buckets[BIND_BUCKETS];
};

static struct {
	const struct crgw_config *cfg;
	/* Replaced whole by a reload; the lists it replaced stay until shutdown (a decision may hold one). */
	_Atomic(struct crgw_blocklist *) blocked;
	struct crgw_blocklist *retired[64];
	unsigned nretired;
	pthread_rwlock_t lock;
	struct crgw_sandbox **slots;
	bool *reserved;
	unsigned nslots, count;
	struct crgw_nft_config nft;
	bool nft_on, nft_ready;	  /* nftables is a layer (enforcement), and its table is made */
	struct crgw_guard *guard; /* the eBPF layer, when it is on */
	char ebpf_state[600];
	/* NULL when the operator allowed sandboxes without limits and no cgroup could be had. */
	struct crgw_cgroup_root *cgroups;
	char limits_state[4300];
	/* Disks: what the capability map says, and whether limits.disk is set but cannot be had. */
	char disk_state[4400];
	bool disks_off;
	/* Released sandboxes' tombstones, a ring; control thread only. */
	struct crgw_sandbox_tombstone tombstones[256];
	unsigned ntombstones, next_tombstone;
	void (*on_release)(void);
} R = {.lock = PTHREAD_RWLOCK_INITIALIZER};

void crgw_sandbox_on_release(void (*hook)(void))
{
	R.on_release = hook;
}

int64_t crgw_monotonic_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

int64_t crgw_realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const struct crgw_blocklist *crgw_gateway_blocklist(void)
{
	return atomic_load_explicit(&R.blocked, memory_order_acquire);
}

/* The gateway's own addresses are refused as destinations whatever a policy says (SPEC section 3). */
static int block_own_addresses(struct crgw_blocklist *list)
{
	struct ifaddrs *ifa, *i;
	char text[INET6_ADDRSTRLEN];
	int err = 0;

	if (getifaddrs(&ifa))
		return -errno;
	for (i = ifa; i && !err; i = i->ifa_next) {
		if (!i->ifa_addr)
			continue;
		if (i->ifa_addr->sa_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, text, sizeof(text));
		else if (i->ifa_addr->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, text, sizeof(text));
		else
			continue;
		err = crgw_blocklist_add(list, text, NULL);
	}
	freeifaddrs(ifa);
	return err;
}

static void nft_config_from(const struct crgw_config *cfg, struct crgw_nft_config *nft)
{
	memset(nft, 0, sizeof(*nft));
	nft->table = cfg->nft_table;
	nft->iface_prefix = cfg->iface_prefix;
	nft->nflog_group = (uint16_t)cfg->nflog_group;
	nft->http_port = (uint16_t)cfg->transparent_http_port;
	nft->tcp_port = (uint16_t)cfg->transparent_tcp_port;
	nft->pool = cfg->pool;
	nft->pool_prefix = (uint8_t)cfg->pool_prefix;
	nft->new_conn_rate = cfg->limits_connection_rate;
}

/* The start time of `pid` in clock ticks (field 22 of /proc/PID/stat), or 0: with the pid it names a process. */
static unsigned long long process_start(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields are counted after the last ')'. */
	p = strrchr(buf, ')');
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (p)
		start = strtoull(p + 1, NULL, 10);
	return start;
}

static void state_path(const char *id, char *path, size_t size)
{
	snprintf(path, size, "%s/%s", R.cfg->state_dir, id);
}

/*
 * A sandbox's holder outlives a gateway killed with SIGKILL: its record (pid and start time) lets the next
 * gateway end it, and with it the sandbox's namespaces, before anything is accepted.
 */
static void state_write(const struct crgw_sandbox *sb)
{
	char path[4200], line[256];
	int fd, n;

	if (!sb->holder_pid)
		return;
	state_path(sb->id, path, sizeof(path));
	/* The policy hash and run id too: the next gateway audits the sandbox's end with them. */
	n = snprintf(line, sizeof(line), "%d %llu %s %s\n", (int)sb->holder_pid, process_start(sb->holder_pid),
		     sb->policy_hash, sb->run_id);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, line, (size_t)n) != n)
		log_warn("cannot record a sandbox's holder", "path=\"%s\" error=\"%s\"", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

static void state_remove(const struct crgw_sandbox *sb)
{
	char path[4200];

	state_path(sb->id, path, sizeof(path));
	unlink(path);
}

/*
 * Sandboxes a previous gateway registered and never released: their end is audited once the log is open,
 * and only then are their records removed, so that a start failing before leaves them to the next one.
 */
struct stale_sandbox {
	char id[24], policy_hash[72], run_id[64];
};
static struct stale_sandbox *stale;
static size_t nstale;
static char stale_dir[4096];

/* false when it could not be remembered: its record is then removed at once, unaudited. */
static bool remember_stale(const char *id, const char *record)
{
	struct stale_sandbox *s, *grown;
	char hash[72] = "";
	int used = 0;

	if (strlen(id) >= sizeof(s->id))
		return false;
	if (nstale % 64 == 0) {
		grown = realloc(stale, (nstale + 64) * sizeof(*stale));
		if (!grown)
			return false;
		stale = grown;
	}
	s = &stale[nstale++];
	memset(s, 0, sizeof(*s));
	snprintf(s->id, sizeof(s->id), "%s", id);
	/* "PID START HASH RUN-ID": a record of an older gateway has only the first two. */
	if (sscanf(record, "%*d %*u %71s %n", hash, &used) == 1 && !strncmp(hash, "sha256:", 7)) {
		snprintf(s->policy_hash, sizeof(s->policy_hash), "%s", hash);
		snprintf(s->run_id, sizeof(s->run_id), "%.*s", (int)strcspn(record + used, "\n"), record + used);
	}
	return true;
}

static void end_stale_holders(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	unsigned ended = 0;

	if (!d)
		return;
	snprintf(stale_dir, sizeof(stale_dir), "%s", dir);
	while ((e = readdir(d))) {
		char path[4400], buf[256];
		unsigned long long start = 0;
		int pid = 0, fd;
		ssize_t n;
		bool kept = false;

		if (strncmp(e->d_name, "sbx-", 4))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		if (n > 0) {
			buf[n] = '\0';
			if (sscanf(buf, "%d %llu", &pid, &start) == 2 && pid > 1 && start &&
			    process_start(pid) == start && kill(pid, SIGKILL) == 0)
				ended++;
			kept = remember_stale(e->d_name, buf);
		}
		if (!kept)
			unlink(path);
	}
	closedir(d);
	if (ended)
		log_info("ended a previous run's sandbox holders", "count=%u", ended);
}

void crgw_registry_audit_stale(void)
{
	for (size_t i = 0; i < nstale; i++) {
		struct crgw_audit_event ev = {.kind = CRGW_AUDIT_SANDBOX_RELEASED, .service = "control"};

		AUDIT_SET(ev.sandbox_id, stale[i].id);
		AUDIT_SET(ev.run_id, stale[i].run_id);
		AUDIT_SET(ev.policy_hash, stale[i].policy_hash);
		AUDIT_SET(ev.detail, "the gateway that registered it stopped without releasing it (killed or crashed); "
				     "ended at this gateway's start");
		crgw_audit_emit(&ev);
		/* Queued (or counted lost, and reported as such): the record has done its work. */
		char path[4200];

		snprintf(path, sizeof(path), "%s/%s", stale_dir, stale[i].id);
		unlink(path);
	}
	free(stale);
	stale = NULL;
	nstale = 0;
}

/*
 * The data of sandboxes a crashed gateway left (workspace changes, homes) goes: each directory is moved
 * aside at once and removed by the teardown thread, so a large tree does not delay the start.
 */
static int remove_stale_data(const struct crgw_config *cfg)
{
	char dir[4200], trash[4200];
	DIR *d;
	struct dirent *e;

	snprintf(dir, sizeof(dir), "%s/sandboxes", cfg->data_dir);
	snprintf(trash, sizeof(trash), "%s/trash", cfg->data_dir);
	/* The parents exist by now (main.c makes them without following planted links). */
	if ((mkdir(cfg->data_dir, 0700) && errno != EEXIST) || (mkdir(dir, 0700) && errno != EEXIST) ||
	    (mkdir(trash, 0700) && errno != EEXIST))
		return -errno;
	/* Only root may look into the data: it holds the sandboxes' homes and workspace changes. */
	chmod(cfg->data_dir, 0700);
	/* A previous run's disks first: a mounted directory cannot be moved, and its loop device goes with it. */
	unsigned detached = 0;
	int err = crgw_disk_detach_beneath(dir, &detached);

	if (detached)
		log_info("detached a previous run's sandbox disks", "count=%u", detached);
	if (err)
		log_warn("cannot detach a previous run's sandbox disks", "error=\"%s\"", strerror(-err));
	d = opendir(dir);
	while (d && (e = readdir(d))) {
		char from[4500], to[4500];

		if (e->d_name[0] == '.')
			continue;
		snprintf(from, sizeof(from), "%s/%s", dir, e->d_name);
		snprintf(to, sizeof(to), "%s/%s", trash, e->d_name);
		if (rename(from, to) == 0)
			log_info("removing a previous run's sandbox data", "path=\"%s\"", from);
	}
	if (d)
		closedir(d);
	crgw_teardown_submit(NULL, trash, NULL);
	return 0;
}

int crgw_registry_cleanup_stale(const struct crgw_config *cfg)
{
	struct crgw_nft_config nft;
	unsigned removed = 0;
	int err;

	if (mkdir(cfg->state_dir, 0700) && errno != EEXIST)
		return -errno;
	end_stale_holders(cfg->state_dir);
	err = remove_stale_data(cfg);
	if (err) {
		log_error("cannot prepare the data directory", "path=\"%s\" error=\"%s\"", cfg->data_dir,
			  strerror(-err));
		return err;
	}

	nft_config_from(cfg, &nft);
	err = crgw_nft_table_delete(&nft);
	if (err == 0)
		log_info("removed a previous run's nftables table", "table=\"inet %s\"", cfg->nft_table);
	else if (err != -ENOENT)
		return err;
	char foreign[IFNAMSIZ];

	err = crgw_netctl_remove_links_with_prefix(cfg->iface_prefix, &removed, foreign, sizeof(foreign));
	if (err)
		return err;
	/* The ruleset drops whatever comes in on an interface with the prefix that is no sandbox's. */
	if (foreign[0]) {
		log_error("interfaces.prefix matches an interface of the host's that is not a sandbox's: the gateway's "
			  "rules would drop everything that arrives on it; choose a prefix nothing else uses",
			  "prefix=\"%s\" interface=\"%s\"", cfg->iface_prefix, foreign);
		return -EEXIST;
	}
	if (removed)
		log_info("removed a previous run's interfaces", "prefix=%s count=%u", cfg->iface_prefix, removed);
	return 0;
}

/*
 * Limits fail closed: without the controllers the gateway does not start, unless the operator said that
 * sandboxes may run without limits (limits.optional); then the capability map, doctor and every
 * sandbox_registered event say so.
 */
static int open_cgroups(const struct crgw_config *cfg)
{
	char err[4096] = "";
	unsigned removed = 0;
	int e;

	e = crgw_cgroup_root_open(cfg->limits_cgroup, &R.cgroups, err, sizeof(err));
	if (e) {
		snprintf(R.limits_state, sizeof(R.limits_state), "off: %s", err);
		if (!cfg->limits_optional) {
			log_error(
			    "cannot set up resource limits (set limits.optional: true to run sandboxes without them)",
			    "error=\"%s\"", err);
			return e;
		}
		log_warn("sandboxes run WITHOUT resource limits (limits.optional is set)", "error=\"%s\"", err);
		return 0;
	}
	crgw_cgroup_root_sweep(R.cgroups, &removed);
	if (removed)
		log_info("removed a previous run's sandbox groups", "count=%u", removed);
	snprintf(R.limits_state, sizeof(R.limits_state), "%s", crgw_cgroup_root_describe(R.cgroups));
	log_info("resource limits", "cgroup=\"%s\"", R.limits_state);
	return 0;
}

/*
 * Disks fail closed like the other limits: with limits.disk set, a host that cannot make one (no loop
 * devices, no ext4, no mke2fs) runs no gateway, unless limits.optional lets sandboxes run without.
 */
static int open_disks(const struct crgw_config *cfg)
{
	char dir[4200], why[4096] = "", size[32];
	int e;

	R.disks_off = false;
	if (!cfg->limits_disk) {
		snprintf(R.disk_state, sizeof(R.disk_state),
			 "none: limits.disk is 0 (a sandbox's data shares %s; a run may still ask for a disk)",
			 cfg->data_dir);
		return 0;
	}
	snprintf(dir, sizeof(dir), "%s/sandboxes", cfg->data_dir);
	/* One of the full size, so that a ceiling the host cannot hold (larger than its free space, or than
	 * one file may be) is found now, not at every sandbox's start. */
	e = crgw_disk_probe(dir, cfg->limits_disk, why, sizeof(why));
	if (e) {
		snprintf(R.disk_state, sizeof(R.disk_state), "off: %s", why);
		if (!cfg->limits_optional) {
			log_error(
			    "cannot give sandboxes disks of their own (set limits.optional: true, or limits.disk: 0, "
			    "to run sandboxes without them)",
			    "error=\"%s\"", why);
			return e;
		}
		R.disks_off = true;
		log_warn("sandboxes run WITHOUT disk limits (limits.optional is set)", "error=\"%s\"", why);
		return 0;
	}
	snprintf(size, sizeof(size), "%llu", (unsigned long long)cfg->limits_disk);
	snprintf(R.disk_state, sizeof(R.disk_state),
		 "ext4 on a loop device per sandbox, at most %s bytes (limits.disk)", size);
	log_info("sandbox disks", "limit=%s", size);
	return 0;
}

/*
 * The eBPF layer. By default it is on where the kernel can load it, and its absence is a warning (nftables
 * still enforces everything); asked for by name (ebpf, both), it is required. Its maps hold at most
 * GUARD_SLOTS_MAX sandboxes: a larger pool's higher slots cannot register while the layer is on.
 */
#define GUARD_SLOTS_MAX 65536u

static int open_guard(const struct crgw_config *cfg)
{
	char why[512] = "";
	int err;

	if (cfg->enforcement == CRGW_ENFORCE_NFTABLES) {
		snprintf(R.ebpf_state, sizeof(R.ebpf_state), "off: enforcement is nftables");
		return 0;
	}
	err = crgw_guard_open(&R.guard, R.nslots < GUARD_SLOTS_MAX ? R.nslots : GUARD_SLOTS_MAX, why, sizeof(why));
	if (err) {
		R.guard = NULL;
		snprintf(R.ebpf_state, sizeof(R.ebpf_state), "off: %s", why[0] ? why : strerror(-err));
		if (cfg->enforcement != CRGW_ENFORCE_DEFAULT) {
			log_error("cannot load the eBPF guard (enforcement names it)", "error=\"%s\"",
				  R.ebpf_state + 5);
			return err;
		}
		log_warn("sandboxes are enforced by nftables alone: the eBPF guard cannot be loaded", "error=\"%s\"",
			 R.ebpf_state + 5);
		return 0;
	}
	snprintf(R.ebpf_state, sizeof(R.ebpf_state), "active");
	log_info("eBPF guard loaded", "max_sandboxes=%u", R.nslots < GUARD_SLOTS_MAX ? R.nslots : GUARD_SLOTS_MAX);
	return 0;
}

const char *crgw_registry_enforcement(bool *nft, struct crgw_guard **guard)
{
	if (nft)
		*nft = R.nft_on;
	if (guard)
		*guard = R.guard;
	return R.ebpf_state;
}

/* The sandbox side's MAC address: locally administered, unicast, one per slot (02:63:67 is "cg"). */
static void sandbox_mac(uint32_t slot, uint8_t mac[6])
{
	mac[0] = 0x02;
	mac[1] = 0x63;
	mac[2] = 0x67;
	mac[3] = (uint8_t)(slot >> 16);
	mac[4] = (uint8_t)(slot >> 8);
	mac[5] = (uint8_t)slot;
}

static void guard_sandbox_of(const struct crgw_sandbox *sb, struct crgw_guard_sandbox *gs)
{
	memset(gs, 0, sizeof(*gs));
	gs->slot = sb->slot;
	gs->ifindex = sb->ifindex;
	sandbox_mac(sb->slot, gs->mac);
	gs->guest = sb->guest;
	gs->gw = sb->gw;
	/* Other TCP passes only where nftables redirects it to the transparent proxies. */
	gs->flags = R.nft_on ? CRGW_GUARD_F_TCP_REDIRECT : 0;
}

const char *crgw_registry_limits_state(bool *active)
{
	if (active)
		*active = R.cgroups != NULL;
	return R.limits_state;
}

const char *crgw_registry_disk_state(bool *off)
{
	if (off)
		*off = R.disks_off;
	return R.disk_state;
}

int crgw_registry_set_blocked(const struct crgw_config *cfg)
{
	struct crgw_blocklist *list = crgw_blocklist_new(), *old;
	char pool[32];
	int err;

	if (!list)
		return -ENOMEM;
	if (R.nretired == sizeof(R.retired) / sizeof(R.retired[0])) {
		crgw_blocklist_free(list);
		return -ENOSPC;
	}
	snprintf(pool, sizeof(pool), "%s/%u", inet_ntoa(cfg->pool), cfg->pool_prefix);
	err = crgw_blocklist_add(list, pool, NULL);
	for (size_t i = 0; !err && i < cfg->nblocked; i++)
		err = crgw_blocklist_add(list, cfg->blocked[i], NULL);
	if (!err)
		err = block_own_addresses(list);
	if (err) {
		crgw_blocklist_free(list);
		return err;
	}
	old = atomic_exchange_explicit(&R.blocked, list, memory_order_acq_rel);
	if (old)
		R.retired[R.nretired++] = old;
	return 0;
}

int crgw_registry_init(const struct crgw_config *cfg, const struct crgw_blocklist *unused)
{
	char pool[32];
	int err;

	(void)unused;
	R.cfg = cfg;
	R.nslots = 1u << (32 - cfg->pool_prefix - 2);
	R.slots = calloc(R.nslots, sizeof(*R.slots));
	R.reserved = calloc(R.nslots, sizeof(*R.reserved));
	if (!R.slots || !R.reserved)
		return -ENOMEM;
	(void)pool;
	err = crgw_registry_set_blocked(cfg);
	if (err)
		return err;
	err = open_cgroups(cfg);
	if (err)
		return err;
	err = open_disks(cfg);
	if (err)
		return err;
	err = open_guard(cfg);
	if (err)
		return err;
	R.nft_on = cfg->enforcement != CRGW_ENFORCE_EBPF;
	if (!R.nft_on)
		return 0;
	nft_config_from(cfg, &R.nft);
	err = crgw_nft_reset(&R.nft);
	if (err)
		return err;
	R.nft_ready = true;
	return 0;
}

void crgw_registry_fini(void)
{
	if (R.nft_ready)
		crgw_nft_table_delete(&R.nft);
	R.nft_ready = false;
	crgw_guard_close(R.guard);
	R.guard = NULL;
	crgw_cgroup_root_free(R.cgroups);
	R.cgroups = NULL;
	free(R.slots);
	free(R.reserved);
	crgw_blocklist_free(atomic_load(&R.blocked));
	for (unsigned i = 0; i < R.nretired; i++)
		crgw_blocklist_free(R.retired[i]);
	R.nretired = 0;
	R.slots = NULL;
	R.reserved = NULL;
	atomic_store(&R.blocked, NULL);
}

struct crgw_sandbox *crgw_sandbox_ref(struct crgw_sandbox *sb)
{
	atomic_fetch_add_explicit(&sb->refs, 1, memory_order_relaxed);
	return sb;
}

static void bindings_free(struct crgw_binding_table *t)
{
	if (!t)
		return;
	for (unsigned i = 0; i < BIND_BUCKETS; i++) {
		struct binding *b = t->buckets[i], *next;

		for (; b; b = next) {
			next = b->next;
			free(b);
		}
	}
	pthread_mutex_destroy(&t->lock);
	free(t);
}

void crgw_sandbox_unref(struct crgw_sandbox *sb)
{
	if (!sb || atomic_fetch_sub_explicit(&sb->refs, 1, memory_order_acq_rel) != 1)
		return;
	crgw_policy_unref(sb->policy);
	bindings_free(sb->bindings);
	crgw_mediation_state_free(atomic_load(&sb->mediation));
	if (sb->holder_pidfd >= 0)
		close(sb->holder_pidfd);
	/* Only a registration that failed still owns its group here; release hands it to teardown. */
	if (sb->cgroup)
		crgw_cgroup_destroy(sb->cgroup, 2000);
	free(sb);
}

struct crgw_sandbox *crgw_sandbox_lookup(int ifindex, struct in_addr src)
{
	uint32_t base = ntohl(R.cfg->pool.s_addr), a = ntohl(src.s_addr);
	struct crgw_sandbox *sb = NULL;
	uint32_t slot;

	if ((a - base) >> (32 - R.cfg->pool_prefix) != 0)
		return NULL;
	slot = (a - base) >> 2;
	pthread_rwlock_rdlock(&R.lock);
	if (slot < R.nslots && R.slots[slot] && R.slots[slot]->guest.s_addr == src.s_addr &&
	    (ifindex == 0 || R.slots[slot]->ifindex == ifindex))
		sb = crgw_sandbox_ref(R.slots[slot]);
	pthread_rwlock_unlock(&R.lock);
	return sb;
}

struct crgw_sandbox *crgw_sandbox_for_accepted(int fd, const struct sockaddr *sa, int salen, const char *service)
{
	const struct sockaddr_in *peer = (const struct sockaddr_in *)sa;
	struct sockaddr_in local;
	socklen_t llen = sizeof(local);
	struct crgw_sandbox *sb;

	if (salen != (int)sizeof(*peer) || peer->sin_family != AF_INET ||
	    getsockname(fd, (struct sockaddr *)&local, &llen) != 0 || local.sin_family != AF_INET)
		return NULL;
	sb = crgw_sandbox_lookup(0, peer->sin_addr);
	if (sb && sb->gw.s_addr == local.sin_addr.s_addr)
		return sb;
	crgw_sandbox_unref(sb);
	crgw_audit_unknown(peer, 0, service);
	return NULL;
}

struct crgw_sandbox *crgw_sandbox_find(const char *id)
{
	struct crgw_sandbox *sb = NULL;

	pthread_rwlock_rdlock(&R.lock);
	for (unsigned i = 0; i < R.nslots && !sb; i++)
		if (R.slots[i] &&
		    (!strcmp(R.slots[i]->id, id) || (R.slots[i]->name[0] && !strcmp(R.slots[i]->name, id))))
			sb = crgw_sandbox_ref(R.slots[i]);
	pthread_rwlock_unlock(&R.lock);
	return sb;
}

int crgw_sandbox_usage(const struct crgw_sandbox *sb, struct crgw_cgroup_usage *out)
{
	if (!sb->cgroup)
		return -ENOENT;
	return crgw_cgroup_usage(sb->cgroup, out);
}

bool crgw_sandbox_tombstone_find(const char *id_or_name, struct crgw_sandbox_tombstone *out)
{
	/* Newest first: a name may have been reused. */
	for (unsigned k = 0; k < R.ntombstones; k++) {
		unsigned i = (R.next_tombstone + 256 - 1 - k) % 256;
		const struct crgw_sandbox_tombstone *t = &R.tombstones[i];

		if (!strcmp(t->id, id_or_name) || (t->name[0] && !strcmp(t->name, id_or_name))) {
			*out = *t;
			return true;
		}
	}
	return false;
}

void crgw_sandbox_foreach(void (*cb)(struct crgw_sandbox *sb, void *arg), void *arg)
{
	pthread_rwlock_rdlock(&R.lock);
	for (unsigned i = 0; i < R.nslots; i++)
		if (R.slots[i])
			cb(R.slots[i], arg);
	pthread_rwlock_unlock(&R.lock);
}

struct crgw_sandbox *crgw_sandbox_by_ifindex(int ifindex)
{
	struct crgw_sandbox *sb = NULL;

	pthread_rwlock_rdlock(&R.lock);
	for (unsigned i = 0; i < R.nslots && !sb; i++)
		if (R.slots[i] && R.slots[i]->ifindex == ifindex)
			sb = crgw_sandbox_ref(R.slots[i]);
	pthread_rwlock_unlock(&R.lock);
	return sb;
}

int crgw_sandbox_kernel_counters(const struct crgw_sandbox *sb, struct crgw_nft_counters *out)
{
	return R.nft_on ? crgw_nft_counters_get(&R.nft, sb->slot, out) : -ENODEV;
}

int crgw_sandbox_guard_counters(const struct crgw_sandbox *sb, struct crgw_guard_counters *out)
{
	return R.guard ? crgw_guard_counters(R.guard, sb->slot, out) : -ENODEV;
}

struct crgw_sandbox *crgw_sandbox_by_slot(uint32_t slot)
{
	struct crgw_sandbox *sb = NULL;

	pthread_rwlock_rdlock(&R.lock);
	if (slot < R.nslots && R.slots[slot])
		sb = crgw_sandbox_ref(R.slots[slot]);
	pthread_rwlock_unlock(&R.lock);
	return sb;
}

uint64_t crgw_registry_pool_spoof_packets(void)
{
	struct crgw_nft_counter c = {0};

	if (R.nft_on)
		crgw_nft_pool_spoof_get(&R.nft, &c);
	return c.packets;
}

unsigned crgw_sandbox_count(void)
{
	unsigned n;

	pthread_rwlock_rdlock(&R.lock);
	n = R.count;
	pthread_rwlock_unlock(&R.lock);
	return n;
}

static int reserve_slot(unsigned *slot)
{
	int err = -ENOSPC;

	pthread_rwlock_wrlock(&R.lock);
	for (unsigned i = 0; i < R.nslots; i++)
		if (!R.slots[i] && !R.reserved[i]) {
			R.reserved[i] = true;
			*slot = i;
			err = 0;
			break;
		}
	pthread_rwlock_unlock(&R.lock);
	return err;
}

static void unreserve_slot(unsigned slot)
{
	pthread_rwlock_wrlock(&R.lock);
	R.reserved[slot] = false;
	pthread_rwlock_unlock(&R.lock);
}

static void audit_sandbox(const struct crgw_sandbox *sb, enum crgw_audit_kind kind, const char *detail,
			  const struct crgw_cgroup_usage *usage, const uint64_t *disk_used)
{
	struct crgw_audit_event ev = {.kind = kind, .service = "control"};

	AUDIT_SET(ev.sandbox_id, sb->id);
	AUDIT_SET(ev.run_id, sb->run_id);
	AUDIT_SET(ev.policy_hash, sb->policy_hash);
	inet_ntop(AF_INET, &sb->guest, ev.src_ip, sizeof(ev.src_ip));
	AUDIT_SET(ev.detail, detail);
	if (kind == CRGW_AUDIT_SANDBOX_REGISTERED) {
		ev.ttl_s = sb->ttl_s;
		ev.limits_off = sb->cgroup == NULL;
		ev.has_limits = sb->cgroup != NULL;
		ev.limit_memory = sb->limits.memory;
		ev.limit_pids = sb->limits.pids;
		ev.limit_cpu_milli = sb->limits.cpu_milli;
		ev.limit_disk = sb->disk_limit;
	}
	if (disk_used) {
		ev.has_disk_used = true;
		ev.disk_used = *disk_used;
	}
	if (usage) {
		ev.has_usage = true;
		ev.oom_kills = usage->oom_kills;
		ev.pids_denied = usage->pids_denied;
		ev.memory_peak = usage->memory_peak;
		ev.cpu_ms = usage->cpu_us / 1000;
	}
	crgw_audit_emit(&ev);
}

/*
 * A run may lower the operator's ceilings, never raise them: a zero field takes the ceiling, a value above
 * it is refused with the ceiling named.
 */
static int effective_limits(const struct crgw_cgroup_limits *asked, struct crgw_cgroup_limits *out, char *err,
			    size_t errlen)
{
	const struct crgw_config *c = R.cfg;

	*out = (struct crgw_cgroup_limits){c->limits_memory, c->limits_pids, c->limits_cpu_milli};
	if (asked->memory) {
		if (c->limits_memory && asked->memory > c->limits_memory) {
			snprintf(err, errlen,
				 "a memory limit of %llu bytes is above the operator's ceiling of %llu (limits.memory)",
				 (unsigned long long)asked->memory, (unsigned long long)c->limits_memory);
			return -EINVAL;
		}
		out->memory = asked->memory;
	}
	if (asked->pids) {
		if (c->limits_pids && asked->pids > c->limits_pids) {
			snprintf(err, errlen,
				 "a process limit of %llu is above the operator's ceiling of %llu (limits.pids)",
				 (unsigned long long)asked->pids, (unsigned long long)c->limits_pids);
			return -EINVAL;
		}
		out->pids = asked->pids;
	}
	if (asked->cpu_milli) {
		if (c->limits_cpu_milli && asked->cpu_milli > c->limits_cpu_milli) {
			snprintf(err, errlen,
				 "a CPU limit of %u.%03u is above the operator's ceiling of %u.%03u (limits.cpus)",
				 asked->cpu_milli / 1000, asked->cpu_milli % 1000, c->limits_cpu_milli / 1000,
				 c->limits_cpu_milli % 1000);
			return -EINVAL;
		}
		out->cpu_milli = asked->cpu_milli;
	}
	return 0;
}

/* The disk likewise; none at all where limits.disk is set but the host cannot make one (limits.optional). */
static int effective_disk(uint64_t asked, uint64_t *out, char *err, size_t errlen)
{
	uint64_t ceiling = R.cfg->limits_disk;

	*out = 0;
	if (R.disks_off)
		return 0;
	if (asked && ceiling && asked > ceiling) {
		snprintf(err, errlen, "a disk of %llu bytes is above the operator's ceiling of %llu (limits.disk)",
			 (unsigned long long)asked, (unsigned long long)ceiling);
		return -EINVAL;
	}
	*out = asked ? asked : ceiling;
	return 0;
}

/* A sandbox's disk image lies beside its data directory, which is the disk's mount point. */
static void disk_image_of(const struct crgw_sandbox *sb, char *out, size_t len)
{
	snprintf(out, len, "%s.ext4", sb->data_dir);
}

static bool name_taken(const char *name)
{
	bool taken = false;

	pthread_rwlock_rdlock(&R.lock);
	for (unsigned i = 0; i < R.nslots && !taken; i++)
		taken = R.slots[i] && !strcmp(R.slots[i]->name, name);
	pthread_rwlock_unlock(&R.lock);
	return taken;
}

static void new_id(char *id, size_t size)
{
	uint8_t r[5];

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		memset(r, 0, sizeof(r));
	snprintf(id, size, "sbx-%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4]);
}

int crgw_sandbox_register(const struct crgw_sandbox_request *req, struct crgw_sandbox **out, enum crgw_reason *reason,
			  char *err, size_t errlen)
{
	struct crgw_sandbox *sb;
	struct crgw_link_spec link = {0};
	struct crgw_nft_sandbox nsb = {0};
	struct crgw_guard_sandbox gs;
	uint8_t mac[6];
	bool slot_taken = false, link_created = false, rules_added = false, guard_attached = false, disk_made = false;
	uint32_t base;
	int netns_fd = -1, ret;
	char detail[160];

	*reason = CRGW_REASON_RUNTIME_LAUNCH_FAILED;
	sb = calloc(1, sizeof(*sb));
	if (!sb)
		return -ENOMEM;
	atomic_init(&sb->refs, 1);
	sb->holder_pidfd = -1;
	ret = crgw_policy_load(req->policy_json, req->policy_len, &sb->policy, err, errlen);
	if (ret) {
		*reason = CRGW_REASON_POLICY_INVALID;
		goto out;
	}
	AUDIT_SET(sb->policy_hash, crgw_policy_hash(sb->policy));
	if (req->learn && !R.cfg->learn_allowed) {
		*reason = CRGW_REASON_REQUEST_INVALID;
		snprintf(err, errlen, "learn mode is off on this gateway (learn.allowed in crgw.yaml)");
		ret = -EPERM;
		goto out;
	}
	if (req->learn && !crgw_policy_learn_allowed(sb->policy)) {
		*reason = CRGW_REASON_REQUEST_INVALID;
		snprintf(err, errlen, "the policy forbids learn mode (sandbox.learn: false)");
		ret = -EPERM;
		goto out;
	}
	sb->learn = req->learn;
	/* A policy that names a secret the operator does not hold cannot run: its requests would only fail. */
	ret = crgw_mediation_check_policy(sb->policy, err, errlen);
	if (ret) {
		*reason = CRGW_REASON_RUNTIME_LAUNCH_FAILED;
		goto out;
	}
	sb->bindings = calloc(1, sizeof(*sb->bindings));
	if (!sb->bindings) {
		ret = -ENOMEM;
		goto out;
	}
	pthread_mutex_init(&sb->bindings->lock, NULL);
	new_id(sb->id, sizeof(sb->id));
	AUDIT_SET(sb->run_id, req->run_id ? req->run_id : "");
	AUDIT_SET(sb->backend, req->backend ? req->backend : "netns");
	sb->created_us = crgw_realtime_us();
	sb->timings = (struct crgw_sandbox_timings){-1, -1, -1, -1, -1, 0};
	sb->ttl_s = R.cfg->testing_ttl_seconds ? R.cfg->testing_ttl_seconds : crgw_policy_ttl_minutes(sb->policy) * 60;
	sb->expires_us = sb->created_us + (int64_t)sb->ttl_s * 1000000;
	if (req->name && req->name[0]) {
		if (!crgw_sandbox_name_valid(req->name)) {
			*reason = CRGW_REASON_REQUEST_INVALID;
			snprintf(err, errlen,
				 "'%.64s' is not a usable sandbox name (letters, digits, '.', '_', '-'; "
				 "at most 63; not starting with sbx-)",
				 req->name);
			ret = -EINVAL;
			goto out;
		}
		/* Registration runs on the control thread only, so the check and the insert cannot race. */
		if (name_taken(req->name)) {
			*reason = CRGW_REASON_REQUEST_INVALID;
			snprintf(err, errlen, "a sandbox named '%s' exists already", req->name);
			ret = -EEXIST;
			goto out;
		}
		AUDIT_SET(sb->name, req->name);
	}
	if (req->workspace_mode)
		AUDIT_SET(sb->workspace_mode, req->workspace_mode);
	if (req->workspace_dir)
		AUDIT_SET(sb->workspace_dir, req->workspace_dir);
	ret = effective_limits(&req->limits, &sb->limits, err, errlen);
	if (!ret)
		ret = effective_disk(req->disk_limit, &sb->disk_limit, err, errlen);
	if (ret) {
		*reason = CRGW_REASON_REQUEST_INVALID;
		goto out;
	}
	if (R.cgroups && req->holder_pid <= 0) {
		snprintf(err, errlen, "resource limits need the sandbox's holder process (holder_pid)");
		ret = -EINVAL;
		goto out;
	}

	if (req->holder_pid > 0) {
		/* A pidfd, not the pid: the number may be reused, the descriptor names this process only. */
		sb->holder_pidfd = (int)syscall(SYS_pidfd_open, req->holder_pid, 0);
		if (sb->holder_pidfd < 0) {
			ret = -errno;
			snprintf(err, errlen, "holder process %d: %s", (int)req->holder_pid, strerror(errno));
			goto out;
		}
		sb->holder_pid = req->holder_pid;
	}
	/* Without blocking: a FIFO named here would otherwise hold the control thread until a writer came. */
	netns_fd = req->tap ? -1 : open(req->netns_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (!req->tap && netns_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "network namespace %s: %s", req->netns_path, strerror(errno));
		goto out;
	}
	if (!req->tap && ioctl(netns_fd, NS_GET_NSTYPE) != CLONE_NEWNET) {
		ret = -EINVAL;
		snprintf(err, errlen, "network namespace %s: not a network namespace", req->netns_path);
		goto out;
	}
	ret = reserve_slot(&sb->slot);
	if (ret) {
		snprintf(err, errlen, "the sandbox pool is exhausted");
		goto out;
	}
	slot_taken = true;
	base = ntohl(R.cfg->pool.s_addr) + sb->slot * 4;
	sb->gw.s_addr = htonl(base + 1);
	sb->guest.s_addr = htonl(base + 2);
	snprintf(sb->ifname, sizeof(sb->ifname), "%s%u", R.cfg->iface_prefix, sb->slot);

	sandbox_mac(sb->slot, mac);
	memcpy(sb->guest_mac, mac, sizeof(mac));
	if (req->tap) {
		struct crgw_tap_spec tap = {.host_ifname = sb->ifname,
					    .host_addr = sb->gw,
					    .guest_addr = sb->guest,
					    .prefix_len = 30,
					    .owner_uid = (int)req->tap_owner};

		ret = crgw_netctl_tap_create(&tap, &sb->ifindex);
	} else {
		link.host_ifname = sb->ifname;
		link.peer_ifname = "eth0";
		link.peer_netns_fd = netns_fd;
		link.host_addr = sb->gw;
		link.guest_addr = sb->guest;
		link.prefix_len = 30;
		link.peer_mac = mac;
		ret = crgw_netctl_veth_create(&link, &sb->ifindex);
	}
	if (ret) {
		snprintf(err, errlen, "creating interface %s: %s", sb->ifname, strerror(-ret));
		goto out;
	}
	link_created = true;
	nsb.id = sb->slot;
	nsb.ifname = sb->ifname;
	nsb.gw = sb->gw;
	nsb.guest = sb->guest;
	ret = R.nft_on ? crgw_nft_sandbox_add(&R.nft, &nsb) : 0;
	if (ret) {
		snprintf(err, errlen, "installing nftables rules for %s: %s", sb->ifname, strerror(-ret));
		goto out;
	}
	rules_added = R.nft_on;
	if (R.guard) {
		guard_sandbox_of(sb, &gs);
		ret = crgw_guard_attach(R.guard, &gs);
		if (ret) {
			snprintf(err, errlen, "attaching the eBPF guard to %s: %s", sb->ifname,
				 ret == -E2BIG ? "the guard's maps hold no sandbox in this slot" : strerror(-ret));
			goto out;
		}
		guard_attached = true;
	}
	if (R.cgroups) {
		char why[400];

		ret =
		    crgw_cgroup_create(R.cgroups, sb->id, &sb->limits, req->holder_pid, &sb->cgroup, why, sizeof(why));
		if (ret) {
			snprintf(err, errlen, "resource limits: %s", why);
			goto out;
		}
	}
	snprintf(sb->data_dir, sizeof(sb->data_dir), "%s/sandboxes/%s", R.cfg->data_dir, sb->id);
	if (mkdir(sb->data_dir, 0700)) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", sb->data_dir, strerror(errno));
		sb->data_dir[0] = '\0';
		goto out;
	}
	if (sb->disk_limit) {
		char image[sizeof(sb->data_dir) + 8], why[4400];

		disk_image_of(sb, image, sizeof(image));
		ret = crgw_disk_create(image, sb->data_dir, sb->disk_limit, why, sizeof(why));
		if (ret) {
			snprintf(err, errlen, "the sandbox's disk: %s", why);
			goto out;
		}
		disk_made = true;
	}

	state_write(sb);
	pthread_rwlock_wrlock(&R.lock);
	R.slots[sb->slot] = crgw_sandbox_ref(sb);
	R.reserved[sb->slot] = false;
	R.count++;
	pthread_rwlock_unlock(&R.lock);
	slot_taken = false;

	snprintf(detail, sizeof(detail), "backend=%s interface=%s%s%s workspace=%s%s", sb->backend, sb->ifname,
		 sb->name[0] ? " name=" : "", sb->name, sb->workspace_mode[0] ? sb->workspace_mode : "none",
		 sb->learn ? " learn=1" : "");
	audit_sandbox(sb, CRGW_AUDIT_SANDBOX_REGISTERED, detail, NULL, NULL);
	log_info("sandbox registered", "id=%s interface=%s guest=%s policy=%s", sb->id, sb->ifname,
		 inet_ntoa(sb->guest), sb->policy_hash);
	*out = sb;
	sb = NULL;
	ret = 0;
out:
	if (netns_fd >= 0)
		close(netns_fd);
	if (ret && disk_made) {
		char image[sizeof(sb->data_dir) + 8];

		disk_image_of(sb, image, sizeof(image));
		crgw_disk_detach(sb->data_dir);
		unlink(image);
	}
	if (ret && sb && sb->data_dir[0])
		rmdir(sb->data_dir);
	if (guard_attached && ret)
		crgw_guard_detach(R.guard, &gs);
	if (rules_added && ret)
		crgw_nft_sandbox_del(&R.nft, sb->slot, sb->ifname, 0);
	if (link_created && ret)
		crgw_netctl_link_delete(link.host_ifname);
	if (slot_taken)
		unreserve_slot(sb->slot);
	if (sb)
		crgw_sandbox_unref(sb);
	return ret;
}

static void add_tombstone(const struct crgw_sandbox *sb, const char *why, const struct crgw_cgroup_usage *usage,
			  const uint64_t *disk_used)
{
	struct crgw_sandbox_tombstone *t = &R.tombstones[R.next_tombstone];

	memset(t, 0, sizeof(*t));
	memcpy(t->id, sb->id, sizeof(t->id));
	memcpy(t->name, sb->name, sizeof(t->name));
	AUDIT_SET(t->why, why);
	t->released_us = crgw_realtime_us();
	t->limits = sb->limits;
	t->timings = sb->timings;
	t->disk_limit = sb->disk_limit;
	if (disk_used) {
		t->has_disk_used = true;
		t->disk_used = *disk_used;
	}
	if (usage) {
		t->has_usage = true;
		t->usage = *usage;
	}
	R.next_tombstone = (R.next_tombstone + 1) % 256;
	if (R.ntombstones < 256)
		R.ntombstones++;
}

/* Returns 0, or -errno when the sandbox's rules could not be removed (its slot must not be reused). */
static int release(struct crgw_sandbox *sb, const char *why)
{
	struct crgw_nft_counters c = {0};
	struct crgw_cgroup_usage usage;
	bool have_usage = false;
	char detail[160];
	int err, nft_err;

	struct crgw_guard_counters gc = {0};
	struct crgw_guard_sandbox gs;
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* Its connections end with it: held open, they would outlive it and send to its address's next owner. */
	atomic_store(&sb->released, true);
	if (R.on_release)
		R.on_release();
	if (R.guard) {
		/* The guard's drops count with nftables' in the final figures: either layer may have dropped them. */
		crgw_guard_counters(R.guard, sb->slot, &gc);
		guard_sandbox_of(sb, &gs);
		err = crgw_guard_detach(R.guard, &gs);
		if (err && err != -ENODEV)
			log_error("detaching a sandbox's eBPF guard failed", "id=%s error=\"%s\"", sb->id,
				  strerror(-err));
	}
	nft_err = 0;
	if (R.nft_on) {
		crgw_nft_counters_get(&R.nft, sb->slot, &c);
		nft_err = crgw_nft_sandbox_del(&R.nft, sb->slot, sb->ifname, 0);
	}
	c.spoof.packets += gc.packets[CRGW_GUARD_SPOOFED_SOURCE];
	c.dns.packets += gc.packets[CRGW_GUARD_DNS_BYPASS_ATTEMPT];
	if (nft_err)
		log_error("removing a sandbox's nftables rules failed; its slot stays reserved", "id=%s error=\"%s\"",
			  sb->id, strerror(-nft_err));
	err = crgw_netctl_link_delete(sb->ifname);
	if (err && err != -ENODEV)
		log_error("removing a sandbox's interface failed", "id=%s interface=%s error=\"%s\"", sb->id,
			  sb->ifname, strerror(-err));
	/* The holder is the sandbox's init: ending it ends every process left in the sandbox. */
	if (sb->holder_pidfd >= 0)
		syscall(SYS_pidfd_send_signal, sb->holder_pidfd, SIGKILL, NULL, 0);
	if (sb->cgroup) {
		/* The final figures first, then everything in the group goes, joined processes included. */
		have_usage = crgw_cgroup_usage(sb->cgroup, &usage) == 0;
		crgw_cgroup_kill(sb->cgroup);
	}
	/* What its disk holds, for the tombstone: the job is over, or near enough. */
	uint64_t disk_used = 0, disk_left;
	bool has_disk_used = sb->disk_limit && crgw_disk_usage(sb->data_dir, &disk_used, &disk_left) == 0;
	char image[sizeof(sb->data_dir) + 8];

	disk_image_of(sb, image, sizeof(image));
	/* The group waits for its processes to die and the data may be a large tree: both off this thread. */
	crgw_teardown_submit(sb->cgroup, sb->data_dir[0] ? sb->data_dir : NULL, sb->disk_limit ? image : NULL);
	sb->cgroup = NULL;
	state_remove(sb);
	/*
	 * A release that came while an OOM kill was still on its way to the memory watch (the command died,
	 * its creator released the sandbox) still says so.
	 */
	char because[128];

	if (have_usage && usage.oom_kills && strncmp(why, "out of memory", 13)) {
		snprintf(because, sizeof(because), "%s, after %llu OOM kill%s", why,
			 (unsigned long long)usage.oom_kills, usage.oom_kills == 1 ? "" : "s");
		why = because;
	}
	snprintf(detail, sizeof(detail), "%.80s; dns_queries=%llu spoofed_packets=%llu dns_bypass_packets=%llu", why,
		 (unsigned long long)atomic_load(&sb->counters.dns_queries), (unsigned long long)c.spoof.packets,
		 (unsigned long long)c.dns.packets);
	audit_sandbox(sb, CRGW_AUDIT_SANDBOX_RELEASED, detail, have_usage ? &usage : NULL,
		      has_disk_used ? &disk_used : NULL);
	/* The gateway's part: the holder's end and the data's removal continue off this thread. */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	sb->timings.teardown_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	add_tombstone(sb, why, have_usage ? &usage : NULL, has_disk_used ? &disk_used : NULL);
	log_info("sandbox released", "id=%s interface=%s reason=\"%s\"", sb->id, sb->ifname, why);
	return nft_err;
}

int crgw_sandbox_release(const char *id, const char *why)
{
	struct crgw_sandbox *sb = NULL;

	pthread_rwlock_wrlock(&R.lock);
	for (unsigned i = 0; i < R.nslots; i++)
		if (R.slots[i] &&
		    (!strcmp(R.slots[i]->id, id) || (R.slots[i]->name[0] && !strcmp(R.slots[i]->name, id)))) {
			sb = R.slots[i];
			/* Kept reserved until the kernel objects are gone, so the /30 is not handed out twice. */
			R.slots[i] = NULL;
			R.reserved[i] = true;
			R.count--;
			break;
		}
	pthread_rwlock_unlock(&R.lock);
	if (!sb)
		return -ENOENT;
	if (release(sb, why) == 0)
		unreserve_slot(sb->slot);
	crgw_sandbox_unref(sb);
	return 0;
}

void crgw_registry_release_all(const char *why)
{
	for (unsigned i = 0; R.slots && i < R.nslots; i++) {
		char id[24] = "";

		pthread_rwlock_rdlock(&R.lock);
		if (R.slots[i])
			memcpy(id, R.slots[i]->id, sizeof(id));
		pthread_rwlock_unlock(&R.lock);
		if (id[0])
			crgw_sandbox_release(id, why);
	}
}

/* ---- audit rate limits ------------------------------------------------------------------------- */

bool crgw_sandbox_audit_allowed(struct crgw_sandbox *sb, uint64_t *suppressed)
{
	uint64_t now = (uint64_t)crgw_monotonic_s();
	uint64_t w = atomic_load_explicit(&sb->audit_window, memory_order_relaxed);

	if (w != now && atomic_compare_exchange_strong(&sb->audit_window, &w, now))
		atomic_store(&sb->audit_count, 0);
	if (atomic_fetch_add(&sb->audit_count, 1) >= CRGW_AUDIT_DENY_PER_S) {
		atomic_fetch_add(&sb->audit_suppressed, 1);
		return false;
	}
	*suppressed = atomic_exchange(&sb->audit_suppressed, 0);
	return true;
}

static atomic_uint_fast64_t unknown_window, unknown_count, unknown_suppressed;

void crgw_audit_unknown(const struct sockaddr_in *peer, int ifindex, const char *service)
{
	uint64_t now = (uint64_t)crgw_monotonic_s(), w = atomic_load(&unknown_window);
	struct crgw_audit_event ev = {.kind = CRGW_AUDIT_DECISION, .service = service};
	uint64_t suppressed;

	if (w != now && atomic_compare_exchange_strong(&unknown_window, &w, now))
		atomic_store(&unknown_count, 0);
	if (atomic_fetch_add(&unknown_count, 1) >= CRGW_AUDIT_DENY_PER_S) {
		atomic_fetch_add(&unknown_suppressed, 1);
		return;
	}
	suppressed = atomic_exchange(&unknown_suppressed, 0);
	inet_ntop(AF_INET, &peer->sin_addr, ev.src_ip, sizeof(ev.src_ip));
	ev.action = CRGW_ACTION_DENY;
	ev.reason = CRGW_REASON_UNKNOWN_SANDBOX;
	if (suppressed)
		ev.count = suppressed + 1;
	snprintf(ev.detail, sizeof(ev.detail), "ifindex=%d", ifindex);
	crgw_audit_emit(&ev);
}

/* ---- bindings ----------------------------------------------------------------------------------- */

static unsigned name_hash(const char *name)
{
	uint32_t h = 2166136261u;

	for (; *name; name++)
		h = (h ^ (uint8_t)*name) * 16777619u;
	return h % BIND_BUCKETS;
}

static void evict_expired(struct crgw_binding_table *t, int64_t now)
{
	for (unsigned i = 0; i < BIND_BUCKETS; i++) {
		struct binding **pp = &t->buckets[i];

		while (*pp) {
			struct binding *b = *pp;

			if (b->expiry < now) {
				*pp = b->next;
				free(b);
				t->count--;
			} else {
				pp = &b->next;
			}
		}
	}
}

int crgw_binding_record(struct crgw_sandbox *sb, const char *name, const struct crgw_binding_addr *addrs, unsigned n,
			int64_t expiry)
{
	struct crgw_binding_table *t = sb->bindings;
	unsigned h = name_hash(name);
	struct binding *b;
	int ret = 0;
	size_t nlen = strlen(name);
	uint8_t family;

	if (n == 0)
		return -EINVAL;
	if (n > CRGW_BINDING_ADDRS)
		n = CRGW_BINDING_ADDRS;
	family = addrs[0].family;
	pthread_mutex_lock(&t->lock);
	for (b = t->buckets[h]; b; b = b->next)
		if (b->family == family && !strcmp(b->name, name))
			break;
	if (b && b->expiry >= expiry && b->naddrs == n && !memcmp(b->addrs, addrs, n * sizeof(*addrs)))
		goto out;
	if (!b) {
		if (t->count >= BIND_MAX)
			evict_expired(t, crgw_monotonic_s());
		if (t->count >= BIND_MAX) {
			ret = -ENOSPC;
			goto out;
		}
		b = calloc(1, sizeof(*b) + nlen + 1);
		if (!b) {
			ret = -ENOMEM;
			goto out;
		}
		memcpy(b->name, name, nlen + 1);
		b->family = family;
		b->next = t->buckets[h];
		t->buckets[h] = b;
		t->count++;
	}
	/*
	 * Addresses of an earlier answer stay bound until that answer expires: a client may still hold them.
	 * Merging keeps both sets (bounded), newest first.
	 */
	struct crgw_binding_addr merged[CRGW_BINDING_ADDRS];
	unsigned m = 0;

	for (unsigned i = 0; i < n; i++)
		merged[m++] = addrs[i];
	if (b->expiry >= crgw_monotonic_s())
		for (unsigned i = 0; i < b->naddrs && m < CRGW_BINDING_ADDRS; i++) {
			bool dup = false;

			for (unsigned j = 0; j < n; j++)
				dup |= !memcmp(&b->addrs[i], &addrs[j], sizeof(addrs[j]));
			if (!dup)
				merged[m++] = b->addrs[i];
		}
	ret = b->naddrs != m || memcmp(b->addrs, merged, m * sizeof(merged[0])) || expiry > b->expiry;
	memcpy(b->addrs, merged, m * sizeof(merged[0]));
	b->naddrs = m;
	if (expiry > b->expiry)
		b->expiry = expiry;
out:
	pthread_mutex_unlock(&t->lock);
	return ret;
}

void crgw_binding_forget(struct crgw_sandbox *sb, const char *name, uint8_t family)
{
	struct crgw_binding_table *t = sb->bindings;

	pthread_mutex_lock(&t->lock);
	for (struct binding **pp = &t->buckets[name_hash(name)]; *pp; pp = &(*pp)->next)
		if ((*pp)->family == family && !strcmp((*pp)->name, name)) {
			struct binding *b = *pp;

			*pp = b->next;
			free(b);
			t->count--;
			break;
		}
	pthread_mutex_unlock(&t->lock);
}

bool crgw_binding_check(struct crgw_sandbox *sb, const char *name, const struct crgw_binding_addr *addr)
{
	struct crgw_binding_table *t = sb->bindings;
	bool ok = false;
	int64_t now = crgw_monotonic_s();

	pthread_mutex_lock(&t->lock);
	for (struct binding *b = t->buckets[name_hash(name)]; b; b = b->next) {
		if (b->family != addr->family || strcmp(b->name, name))
			continue;
		if (b->expiry >= now)
			for (unsigned i = 0; i < b->naddrs && !ok; i++)
				ok = !memcmp(&b->addrs[i], addr, sizeof(*addr));
		break;
	}
	pthread_mutex_unlock(&t->lock);
	return ok;
}

bool crgw_binding_name_for(struct crgw_sandbox *sb, const struct crgw_binding_addr *addr, char *name)
{
	struct crgw_binding_table *t = sb->bindings;
	const struct binding *best = NULL;
	int64_t now = crgw_monotonic_s();

	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < BIND_BUCKETS; i++)
		for (const struct binding *b = t->buckets[i]; b; b = b->next) {
			if (b->expiry < now || (best && best->expiry >= b->expiry))
				continue;
			for (unsigned j = 0; j < b->naddrs; j++)
				if (!memcmp(&b->addrs[j], addr, sizeof(*addr))) {
					best = b;
					break;
				}
		}
	if (best)
		memcpy(name, best->name, strlen(best->name) + 1);
	pthread_mutex_unlock(&t->lock);
	return best != NULL;
}

bool crgw_binding_allowed_name(struct crgw_sandbox *sb, const struct crgw_binding_addr *addr, uint16_t port, char *name,
			       struct crgw_decision *d)
{
	struct crgw_binding_table *t = sb->bindings;
	int64_t now = crgw_monotonic_s();
	bool found = false;

	memset(d, 0, sizeof(*d));
	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < BIND_BUCKETS && !found; i++)
		for (const struct binding *b = t->buckets[i]; b && !found; b = b->next) {
			bool bound = false;
			struct crgw_host host;

			if (b->expiry < now || b->family != addr->family)
				continue;
			for (unsigned j = 0; j < b->naddrs && !bound; j++)
				bound = !memcmp(&b->addrs[j], addr, sizeof(*addr));
			if (!bound || crgw_host_parse(b->name, strlen(b->name), &host, NULL))
				continue;
			/* The matcher never allocates: deciding under the lock is cheap and keeps `b` alive. */
			crgw_sandbox_decide(sb, &host, port, d);
			memcpy(name, b->name, strlen(b->name) + 1);
			found = d->allow;
		}
	pthread_mutex_unlock(&t->lock);
	return found;
}

unsigned crgw_binding_count(struct crgw_sandbox *sb)
{
	unsigned n;

	pthread_mutex_lock(&sb->bindings->lock);
	n = sb->bindings->count;
	pthread_mutex_unlock(&sb->bindings->lock);
	return n;
}

/* Learn mode lets through what the policy alone refuses; the gateway's own refusals stand. */
static void learn_override(const struct crgw_sandbox *sb, struct crgw_decision *d)
{
	if (!sb->learn || d->allow || (d->rule && !strncmp(d->rule, "gateway.", 8)))
		return;
	if (d->reason == CRGW_REASON_HOST_NOT_ALLOWED || d->reason == CRGW_REASON_PORT_NOT_ALLOWED ||
	    d->reason == CRGW_REASON_IP_LITERAL_NOT_ALLOWED)
		d->allow = true;
}

void crgw_sandbox_decide(const struct crgw_sandbox *sb, const struct crgw_host *host, uint16_t port,
			 struct crgw_decision *d)
{
	crgw_policy_decide(sb->policy, crgw_gateway_blocklist(), host, port, d);
	learn_override(sb, d);
}

void crgw_sandbox_check_address(const struct crgw_sandbox *sb, const struct crgw_host *addr, uint16_t port,
				struct crgw_decision *d)
{
	crgw_policy_check_address(sb->policy, crgw_gateway_blocklist(), addr, port, d);
	learn_override(sb, d);
}
