/* SPDX-License-Identifier: Apache-2.0 */
/* The sandbox guard's loader: the generated skeleton, the maps, tc attach and detach, the drop events. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/bpf.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "crgw/ebpf.h"
#include "guard.h"
#include "guard.skel.h"
#include "guard_priv.h"

#define SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(SAME(CRGW_GUARD_PASS, GUARD_CLASS_PASS) && SAME(CRGW_GUARD_SPOOFED_SOURCE, GUARD_CLASS_SPOOFED_SOURCE) &&
		       SAME(CRGW_GUARD_DNS_BYPASS_ATTEMPT, GUARD_CLASS_DNS_BYPASS_ATTEMPT) &&
		       SAME(CRGW_GUARD_HOST_NOT_ALLOWED, GUARD_CLASS_HOST_NOT_ALLOWED) &&
		       SAME(CRGW_GUARD_PORT_NOT_ALLOWED, GUARD_CLASS_PORT_NOT_ALLOWED) &&
		       SAME(CRGW_GUARD_CLASS_COUNT, GUARD_CLASS_MAX),
	       "the public classes are the program's");
_Static_assert(CRGW_GUARD_F_IPV6 == GUARD_F_IPV6 && CRGW_GUARD_F_TCP_REDIRECT == GUARD_F_TCP_REDIRECT,
	       "the public flags are the program's");
_Static_assert(CRGW_GUARD_DEFAULT_SLOTS == GUARD_MAX_SLOTS, "the default slot count is the program's");
_Static_assert(sizeof(struct guard_counters) % 8 == 0, "per-CPU values are read at 8-byte strides");
_Static_assert(sizeof(struct guard_drop) == 56, "the drop event has no implicit padding");

/*
 * The filter's handle and priority on the clsact ingress hook. The gateway makes each interface, so
 * nothing else sits there; fixed values let detach name the filter without remembering more.
 */
#define TC_HANDLE 1
#define TC_PRIORITY 1

#define LOG_KEEP 8192 /* how much of libbpf's output a failing open keeps: the end, where the verifier says why */

/* One interface this guard is on, by slot. */
struct attachment {
	int ifindex;
	bool attached;
	bool qdisc_created; /* this guard made the clsact qdisc: detach removes it */
};

struct crgw_guard {
	struct crgw_guard_bpf *skel;
	struct ring_buffer *rb;
	uint32_t max_slots;
	int ncpus;
	struct guard_counters *percpu; /* [ncpus]: read and zero buffer for `counters` */
	uint64_t *percpu_stat;         /* [ncpus] */
	struct attachment *att;        /* [max_slots] */
	void (*cb)(void *arg, const struct crgw_guard_drop *d);
	void *cb_arg;
};

/* ---- libbpf's messages -------------------------------------------------------------------------------- */

/*
 * libbpf has one print callback per process. Ours drops everything unless the calling thread is inside
 * crgw_guard_open(), which then keeps the tail of what libbpf said for its error message.
 */
struct logcap {
	char buf[LOG_KEEP];
	size_t len;
};

static __thread struct logcap *capture;
static pthread_once_t print_once = PTHREAD_ONCE_INIT;

static void logcap_append(struct logcap *c, const char *s, size_t n)
{
	if (n >= sizeof(c->buf)) {
		s += n - (sizeof(c->buf) - 1);
		n = sizeof(c->buf) - 1;
	}
	if (c->len + n >= sizeof(c->buf)) {
		size_t drop = c->len + n - (sizeof(c->buf) - 1);

		memmove(c->buf, c->buf + drop, c->len - drop);
		c->len -= drop;
	}
	memcpy(c->buf + c->len, s, n);
	c->len += n;
	c->buf[c->len] = '\0';
}

static int print_cb(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	struct logcap *c = capture;
	char small[512];
	va_list copy;
	int n;

	if (!c || level == LIBBPF_DEBUG)
		return 0;
	va_copy(copy, ap);
	n = vsnprintf(small, sizeof(small), fmt, copy);
	va_end(copy);
	if (n < 0)
		return 0;
	if ((size_t)n < sizeof(small)) {
		logcap_append(c, small, (size_t)n);
		return 0;
	}
	/* The verifier's log comes as one message of up to megabytes. */
	char *big = malloc((size_t)n + 1);

	if (!big)
		return 0;
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	logcap_append(c, big, (size_t)n);
	free(big);
	return 0;
}

static void install_print(void)
{
	libbpf_set_print(print_cb);
}

/* `err` = the sentence, then as much of the end of libbpf's output as fits, on one line. */
static void open_error(char *err, size_t errlen, const struct logcap *c, int rc, const char *what)
{
	size_t n;

	if (!err || !errlen)
		return;
	snprintf(err, errlen, "%s (%s)", what, strerror(-rc));
	n = strlen(err);
	if (!c || !c->len || n + 16 >= errlen)
		return;

	/* The last lines of the log, newlines as " | ", trailing space trimmed. */
	size_t room = errlen - n - sizeof(" - libbpf: ...");
	const char *end = c->buf + c->len;

	while (end > c->buf && (end[-1] == '\n' || end[-1] == ' '))
		end--;
	const char *start = (size_t)(end - c->buf) > room ? end - room : c->buf;
	char *o = err + n;

	o += snprintf(o, errlen - n, " - libbpf: %s", start == c->buf ? "" : "...");
	for (const char *p = start; p < end && (size_t)(o - err) + 4 < errlen; p++) {
		if (*p == '\n') {
			if ((size_t)(o - err) + 4 >= errlen)
				break;
			memcpy(o, " | ", 3);
			o += 3;
		} else if (*p != '\t') {
			*o++ = *p;
		}
	}
	*o = '\0';
}

static int on_sample(void *ctx, void *data, size_t size);

/* ---- open and close ----------------------------------------------------------------------------------- */

static int gw_port_set(struct crgw_guard *g, int proto, uint16_t port, bool allow)
{
	struct guard_port key = { .port = port, .proto = (uint8_t)proto };
	uint8_t one = 1;
	int fd = bpf_map__fd(g->skel->maps.gw_ports), rc;

	if (allow)
		return bpf_map_update_elem(fd, &key, &one, BPF_ANY);
	rc = bpf_map_delete_elem(fd, &key);
	return rc == -ENOENT ? 0 : rc;
}

int crgw_guard_open(struct crgw_guard **out, uint32_t max_slots, char *err, size_t errlen)
{
	static const struct {
		int proto;
		uint16_t port;
	} default_ports[] = {
		{ IPPROTO_UDP, 53 },
		{ IPPROTO_TCP, 53 },
		{ IPPROTO_TCP, 3128 },
		{ IPPROTO_TCP, 8170 },
	};
	struct crgw_guard *g = NULL;
	struct logcap *log = NULL;
	const char *what = NULL;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (max_slots == 0)
		max_slots = CRGW_GUARD_DEFAULT_SLOTS;
	if (max_slots > CRGW_GUARD_DEFAULT_SLOTS) {
		if (err && errlen)
			snprintf(err, errlen, "max_slots %u is over %u", max_slots, CRGW_GUARD_DEFAULT_SLOTS);
		return -EINVAL;
	}
	/* Said plainly here, rather than as the CO-RE relocation failure libbpf would report. */
	if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
		rc = -errno;
		if (err && errlen)
			snprintf(err, errlen,
				 "the kernel exposes no BTF (/sys/kernel/btf/vmlinux: %s): the guard program needs a "
				 "kernel built with CONFIG_DEBUG_INFO_BTF",
				 strerror(-rc));
		return rc == -ENOENT ? -EOPNOTSUPP : rc;
	}

	pthread_once(&print_once, install_print);
	log = calloc(1, sizeof(*log));
	g = calloc(1, sizeof(*g));
	if (!log || !g) {
		rc = -ENOMEM;
		what = "out of memory";
		goto out;
	}
	g->max_slots = max_slots;
	capture = log;

	g->skel = crgw_guard_bpf__open();
	if (!g->skel) {
		rc = errno ? -errno : -EINVAL;
		what = "opening the guard's BPF object";
		goto out;
	}
	if ((rc = bpf_map__set_max_entries(g->skel->maps.sandboxes, max_slots)) < 0 ||
	    (rc = bpf_map__set_max_entries(g->skel->maps.counters, max_slots)) < 0 ||
	    (rc = bpf_map__set_max_entries(g->skel->maps.buckets, max_slots)) < 0) {
		what = "sizing the guard's maps";
		goto out;
	}
	rc = crgw_guard_bpf__load(g->skel);
	if (rc < 0) {
		if (rc == -EPERM)
			what = "loading the guard program: not permitted (needs CAP_BPF and CAP_NET_ADMIN: run as root)";
		else if (strstr(log->buf, "PROG LOAD LOG"))
			what = "loading the guard program: the kernel's verifier refused it";
		else
			what = "loading the guard program and creating its maps";
		goto out;
	}
	capture = NULL;

	for (size_t i = 0; i < sizeof(default_ports) / sizeof(default_ports[0]); i++) {
		rc = gw_port_set(g, default_ports[i].proto, default_ports[i].port, true);
		if (rc < 0) {
			what = "filling the gateway port map";
			goto out;
		}
	}

	g->ncpus = libbpf_num_possible_cpus();
	if (g->ncpus <= 0) {
		rc = g->ncpus < 0 ? g->ncpus : -EINVAL;
		what = "counting the possible CPUs";
		goto out;
	}
	g->percpu = calloc((size_t)g->ncpus, sizeof(*g->percpu));
	g->percpu_stat = calloc((size_t)g->ncpus, sizeof(*g->percpu_stat));
	g->att = calloc(max_slots, sizeof(*g->att));
	if (!g->percpu || !g->percpu_stat || !g->att) {
		rc = -ENOMEM;
		what = "out of memory";
		goto out;
	}

	/* The guard is the sample context: events_poll sets the caller's callback for its duration. */
	g->rb = ring_buffer__new(bpf_map__fd(g->skel->maps.events), on_sample, g, NULL);
	if (!g->rb) {
		rc = errno ? -errno : -EINVAL;
		what = "opening the drop event ring buffer";
		goto out;
	}
	rc = 0;
out:
	capture = NULL;
	if (rc < 0) {
		open_error(err, errlen, log, rc, what);
		crgw_guard_close(g);
		g = NULL;
	}
	free(log);
	*out = g;
	return rc;
}

/* Removes the filter, and the qdisc where this guard made it. Returns the first error. */
static int tc_remove(const struct attachment *a)
{
	DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = a->ifindex, .attach_point = BPF_TC_INGRESS);
	DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = TC_HANDLE, .priority = TC_PRIORITY);
	int rc, rc2 = 0;

	rc = bpf_tc_detach(&hook, &opts);
	/* Gone already (the qdisc deleted by someone else) is what detach wants. */
	if (rc == -ENOENT)
		rc = 0;
	if (a->qdisc_created) {
		/* Both attach points: libbpf deletes the clsact qdisc itself, not just its filters. */
		hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
		rc2 = bpf_tc_hook_destroy(&hook);
		if (rc2 == -ENOENT)
			rc2 = 0;
	}
	return rc < 0 ? rc : rc2;
}

void crgw_guard_close(struct crgw_guard *g)
{
	if (!g)
		return;
	if (g->att)
		for (uint32_t i = 0; i < g->max_slots; i++)
			if (g->att[i].attached)
				(void)tc_remove(&g->att[i]); /* an interface that is gone took its filter along */
	ring_buffer__free(g->rb);
	crgw_guard_bpf__destroy(g->skel);
	free(g->att);
	free(g->percpu);
	free(g->percpu_stat);
	free(g);
}

/* ---- attach and detach -------------------------------------------------------------------------------- */

static int slot_reset(struct crgw_guard *g, uint32_t slot)
{
	struct guard_bucket bucket;
	int rc;

	memset(g->percpu, 0, (size_t)g->ncpus * sizeof(*g->percpu));
	rc = bpf_map_update_elem(bpf_map__fd(g->skel->maps.counters), &slot, g->percpu, BPF_ANY);
	if (rc < 0)
		return rc;
	/* The kernel copies around the spin lock: writing a zeroed value leaves the lock alone. */
	memset(&bucket, 0, sizeof(bucket));
	return bpf_map_update_elem(bpf_map__fd(g->skel->maps.buckets), &slot, &bucket, BPF_ANY);
}

int crgw_guard_attach(struct crgw_guard *g, const struct crgw_guard_sandbox *sb)
{
	struct guard_sandbox value;
	struct attachment a;
	uint32_t key;
	bool entry_added = false;
	int sb_fd, rc;

	if (!g || !sb || sb->slot >= g->max_slots || sb->ifindex <= 0 || (sb->flags & ~(uint32_t)GUARD_F_ALL))
		return -EINVAL;
	if (g->att[sb->slot].attached)
		return -EEXIST;

	DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = sb->ifindex, .attach_point = BPF_TC_INGRESS);
	DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = TC_HANDLE, .priority = TC_PRIORITY,
			    .prog_fd = bpf_program__fd(g->skel->progs.crgw_guard));

	a = (struct attachment){ .ifindex = sb->ifindex };
	sb_fd = bpf_map__fd(g->skel->maps.sandboxes);
	key = (uint32_t)sb->ifindex;
	memset(&value, 0, sizeof(value));
	value.slot = sb->slot;
	value.flags = sb->flags;
	value.guest = sb->guest.s_addr;
	value.gw = sb->gw.s_addr;
	memcpy(value.mac, sb->mac, sizeof(value.mac));

	rc = slot_reset(g, sb->slot);
	if (rc < 0)
		goto out;
	/*
	 * The entry before the filter: from its first packet the program knows the interface. BPF_NOEXIST:
	 * an interface already guarded (under another slot) keeps its entry and its filter.
	 */
	rc = bpf_map_update_elem(sb_fd, &key, &value, BPF_NOEXIST);
	if (rc < 0)
		goto out;
	entry_added = true;

	rc = bpf_tc_hook_create(&hook);
	if (rc == 0)
		a.qdisc_created = true;
	else if (rc != -EEXIST)
		goto out;
	rc = bpf_tc_attach(&hook, &opts);
	if (rc < 0)
		goto out;
	a.attached = true;
	g->att[sb->slot] = a;
out:
	if (rc < 0) {
		if (a.qdisc_created) {
			hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
			(void)bpf_tc_hook_destroy(&hook);
		}
		if (entry_added)
			(void)bpf_map_delete_elem(sb_fd, &key);
	}
	return rc;
}

int crgw_guard_detach(struct crgw_guard *g, const struct crgw_guard_sandbox *sb)
{
	struct attachment *a;
	uint32_t key;
	int rc, rc2;

	if (!g || !sb || sb->slot >= g->max_slots)
		return -EINVAL;
	a = &g->att[sb->slot];
	if (!a->attached || a->ifindex != sb->ifindex)
		return -ENOENT;

	/* The filter first: the program never sees this interface without its entry (no "unregistered"). */
	rc = tc_remove(a);
	key = (uint32_t)a->ifindex;
	rc2 = bpf_map_delete_elem(bpf_map__fd(g->skel->maps.sandboxes), &key);
	if (rc2 == -ENOENT)
		rc2 = 0;
	/*
	 * A filter that could not be removed (any error but "the interface is gone") stays recorded, so that
	 * detach can be called again and close tries once more: without its entry it drops everything.
	 */
	a->attached = rc < 0 && rc != -ENODEV;
	return rc < 0 ? rc : rc2;
}

/* ---- counters and events ------------------------------------------------------------------------------ */

int crgw_guard_counters(struct crgw_guard *g, uint32_t slot, struct crgw_guard_counters *out)
{
	int rc;

	if (!g || !out || slot >= g->max_slots)
		return -EINVAL;
	rc = bpf_map_lookup_elem(bpf_map__fd(g->skel->maps.counters), &slot, g->percpu);
	if (rc < 0)
		return rc;
	memset(out, 0, sizeof(*out));
	for (int cpu = 0; cpu < g->ncpus; cpu++)
		for (int c = 0; c < GUARD_CLASS_MAX; c++) {
			out->packets[c] += g->percpu[cpu].packets[c];
			out->bytes[c] += g->percpu[cpu].bytes[c];
		}
	return 0;
}

static int stat_read(struct crgw_guard *g, uint32_t idx, uint64_t *out)
{
	int rc = bpf_map_lookup_elem(bpf_map__fd(g->skel->maps.stats), &idx, g->percpu_stat);

	*out = 0;
	if (rc < 0)
		return rc;
	for (int cpu = 0; cpu < g->ncpus; cpu++)
		*out += g->percpu_stat[cpu];
	return 0;
}

int crgw_guard_stats(struct crgw_guard *g, struct crgw_guard_stats *out)
{
	int rc;

	if (!g || !out)
		return -EINVAL;
	if ((rc = stat_read(g, GUARD_STAT_UNREGISTERED_PACKETS, &out->unregistered_packets)) < 0 ||
	    (rc = stat_read(g, GUARD_STAT_UNREGISTERED_BYTES, &out->unregistered_bytes)) < 0 ||
	    (rc = stat_read(g, GUARD_STAT_EVENTS_SUPPRESSED, &out->events_suppressed)) < 0 ||
	    (rc = stat_read(g, GUARD_STAT_EVENTS_LOST, &out->events_lost)) < 0)
		return rc;
	return 0;
}

uint64_t crgw_guard_suppressed(struct crgw_guard *g)
{
	struct crgw_guard_stats s;

	if (crgw_guard_stats(g, &s) < 0)
		return 0;
	return s.events_suppressed + s.events_lost;
}

int crgw_guard_events_fd(struct crgw_guard *g)
{
	return g ? ring_buffer__epoll_fd(g->rb) : -EINVAL;
}

static int on_sample(void *ctx, void *data, size_t size)
{
	struct crgw_guard *g = ctx;
	struct guard_drop ev;
	struct crgw_guard_drop d;

	/* The program writes whole events; anything else is skipped rather than read past its end. */
	if (size < sizeof(ev) || !g->cb)
		return 0;
	memcpy(&ev, data, sizeof(ev));
	memset(&d, 0, sizeof(d));
	d.slot = ev.slot;
	d.reason = ev.reason;
	d.proto = ev.proto;
	d.family = ev.family == AF_INET ? AF_INET : ev.family == AF_INET6 ? AF_INET6 : 0;
	d.ethertype = ev.ethertype;
	d.sport = ev.sport;
	d.dport = ev.dport;
	memcpy(d.src_mac, ev.src_mac, sizeof(d.src_mac));
	if (d.family == AF_INET) {
		memcpy(&d.src.v4, ev.src, 4);
		memcpy(&d.dst.v4, ev.dst, 4);
	} else if (d.family == AF_INET6) {
		memcpy(&d.src.v6, ev.src, 16);
		memcpy(&d.dst.v6, ev.dst, 16);
	}
	d.len = ev.len;
	g->cb(g->cb_arg, &d);
	return 0;
}

int crgw_guard_events_poll(struct crgw_guard *g, void (*cb)(void *arg, const struct crgw_guard_drop *d), void *arg)
{
	int n;

	if (!g || !cb)
		return -EINVAL;
	g->cb = cb;
	g->cb_arg = arg;
	n = ring_buffer__consume(g->rb);
	g->cb = NULL;
	g->cb_arg = NULL;
	return n;
}

int crgw_guard_gw_port(struct crgw_guard *g, int proto, uint16_t port, int allow)
{
	if (!g || (proto != IPPROTO_TCP && proto != IPPROTO_UDP) || port == 0)
		return -EINVAL;
	return gw_port_set(g, proto, port, allow != 0);
}

/* ---- reasons ------------------------------------------------------------------------------------------ */

enum crgw_reason crgw_guard_reason(unsigned cls)
{
	static const enum crgw_reason reasons[CRGW_GUARD_CLASS_COUNT] = {
		[CRGW_GUARD_PASS] = CRGW_REASON_NONE,
		[CRGW_GUARD_SPOOFED_SOURCE] = CRGW_REASON_SPOOFED_SOURCE,
		[CRGW_GUARD_DNS_BYPASS_ATTEMPT] = CRGW_REASON_DNS_BYPASS_ATTEMPT,
		[CRGW_GUARD_HOST_NOT_ALLOWED] = CRGW_REASON_HOST_NOT_ALLOWED,
		[CRGW_GUARD_PORT_NOT_ALLOWED] = CRGW_REASON_PORT_NOT_ALLOWED,
	};

	return cls < CRGW_GUARD_CLASS_COUNT ? reasons[cls] : CRGW_REASON_COUNT_;
}

const char *crgw_guard_reason_name(unsigned cls)
{
	if (cls == CRGW_GUARD_PASS)
		return "pass";
	/* The audit log's one string table: no second spelling of a reason here. */
	return cls < CRGW_GUARD_CLASS_COUNT ? crgw_reason_str(crgw_guard_reason(cls)) : NULL;
}

/* ---- for the tests ------------------------------------------------------------------------------------ */

int crgw_guard_map_fd(struct crgw_guard *g, const char *name)
{
	struct bpf_map *m;

	if (!g || !name)
		return -EINVAL;
	m = bpf_object__find_map_by_name(g->skel->obj, name);
	return m ? bpf_map__fd(m) : -ENOENT;
}

int crgw_guard_prog_fd(struct crgw_guard *g)
{
	return g ? bpf_program__fd(g->skel->progs.crgw_guard) : -EINVAL;
}
