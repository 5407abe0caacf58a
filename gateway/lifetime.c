/* SPDX-License-Identifier: Apache-2.0 */
/* Holder exits, TTLs and OOM kills: the watches that release sandboxes on the control thread. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lifetime.h"
#include "log.h"
#include "sandbox.h"

struct watch {
	struct watch *next;
	char id[24];
	int holder_fd, oom_fd; /* our own duplicates: the sandbox's close when it goes */
	struct event *holder_ev, *oom_ev, *ttl_ev;
	struct event *recheck_ev; /* a memory event whose kill was not counted yet: look again */
	unsigned rechecks;
};

static struct {
	struct event_base *base;
	struct watch *watches;
} L;

static void watch_free(struct watch *w)
{
	for (struct watch **pp = &L.watches; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	if (w->holder_ev)
		event_free(w->holder_ev);
	if (w->oom_ev)
		event_free(w->oom_ev);
	if (w->ttl_ev)
		event_free(w->ttl_ev);
	if (w->recheck_ev)
		event_free(w->recheck_ev);
	if (w->holder_fd >= 0)
		close(w->holder_fd);
	if (w->oom_fd >= 0)
		close(w->oom_fd);
	free(w);
}

static void holder_exited(evutil_socket_t fd, short what, void *arg)
{
	struct watch *w = arg;

	(void)fd;
	(void)what;
	if (crgw_sandbox_release(w->id, "its holder process ended") == 0)
		log_info("sandbox holder ended", "id=%s", w->id);
	/* The holder goes in every release: its end is where a watch ends. */
	watch_free(w);
}

static void ttl_expired(evutil_socket_t fd, short what, void *arg)
{
	struct watch *w = arg;

	(void)fd;
	(void)what;
	if (crgw_sandbox_release(w->id, "ttl expired") == 0)
		log_info("sandbox TTL expired", "id=%s", w->id);
	watch_free(w);
}

/*
 * The kernel killed a process of the group for want of memory. One OOM kill ends the whole sandbox: a
 * build with a random process missing is worse than one that stops and says why. v2 groups do it in the
 * kernel (memory.oom.group); here it is the same for both.
 */
static void check_oom(struct watch *w, bool event)
{
	struct crgw_sandbox *sb = crgw_sandbox_find(w->id);
	struct crgw_cgroup_usage u;
	char why[128];

	if (!sb) {
		watch_free(w);
		return;
	}
	if (event) {
		crgw_cgroup_event_drain(sb->cgroup);
		w->rechecks = 0;
	}
	if (crgw_sandbox_usage(sb, &u) == 0 && u.oom_kills > sb->oom_kills_seen) {
		sb->oom_kills_seen = u.oom_kills;
		snprintf(why, sizeof(why), "out of memory: a process passed the %llu MiB limit and was killed",
			 (unsigned long long)(sb->limits.memory >> 20));
		log_warn("sandbox out of memory", "id=%s oom_kills=%llu", w->id, (unsigned long long)u.oom_kills);
		crgw_sandbox_unref(sb);
		crgw_sandbox_release(w->id, why);
		return; /* the holder's end frees the watch */
	}
	crgw_sandbox_unref(sb);
	/*
	 * cgroup v1 signals the group's OOM before the killer has run and counted its kill (memory.oom_control's
	 * oom_kill): the count is read again 5 ms later, then at doubling intervals, about 1.3 s in all. A
	 * v2 event follows the count, and the first look finds it.
	 */
	if (w->recheck_ev && w->rechecks < 8) {
		struct timeval tv = { 0, 5000 << w->rechecks };

		w->rechecks++;
		evtimer_add(w->recheck_ev, &tv);
	}
}

static void memory_event(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	check_oom(arg, true);
}

static void memory_recheck(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	check_oom(arg, false);
}

void crgw_lifetime_init(struct event_base *base)
{
	L.base = base;
}

int crgw_lifetime_watch(const struct crgw_sandbox *sb)
{
	struct watch *w = calloc(1, sizeof(*w));
	int64_t left_us = sb->expires_us - crgw_realtime_us();
	struct timeval tv;
	int err = -ENOMEM;

	if (!w)
		return -ENOMEM;
	memcpy(w->id, sb->id, sizeof(w->id));
	w->holder_fd = w->oom_fd = -1;
	if (left_us < 0)
		left_us = 0;
	tv.tv_sec = (time_t)(left_us / 1000000);
	tv.tv_usec = (suseconds_t)(left_us % 1000000);
	w->ttl_ev = evtimer_new(L.base, ttl_expired, w);
	if (!w->ttl_ev || evtimer_add(w->ttl_ev, &tv))
		goto fail;
	if (sb->holder_pidfd >= 0) {
		w->holder_fd = fcntl(sb->holder_pidfd, F_DUPFD_CLOEXEC, 0);
		w->holder_ev = w->holder_fd >= 0 ? event_new(L.base, w->holder_fd, EV_READ, holder_exited, w) : NULL;
		if (!w->holder_ev || event_add(w->holder_ev, NULL))
			goto fail;
	}
	if (sb->cgroup && crgw_cgroup_event_fd(sb->cgroup) >= 0) {
		w->oom_fd = fcntl(crgw_cgroup_event_fd(sb->cgroup), F_DUPFD_CLOEXEC, 0);
		w->oom_ev = w->oom_fd >= 0 ? event_new(L.base, w->oom_fd, EV_READ | EV_PERSIST, memory_event, w) : NULL;
		w->recheck_ev = evtimer_new(L.base, memory_recheck, w);
		if (!w->oom_ev || !w->recheck_ev || event_add(w->oom_ev, NULL))
			goto fail;
	}
	w->next = L.watches;
	L.watches = w;
	return 0;
fail:
	err = errno ? -errno : -ENOMEM;
	watch_free(w);
	log_warn("cannot watch a sandbox's holder, TTL or memory", "id=%s", sb->id);
	return err;
}

void crgw_lifetime_fini(void)
{
	while (L.watches)
		watch_free(L.watches);
}
