/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reads the kernel's drop reports, nftables' log (NFLOG) and the eBPF guard's ring buffer, and audits each
 * drop against the sandbox it came from. Both are rate limited in the kernel (10 a second, burst 20, per
 * sandbox), so neither can flood the audit log.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "audit.h"
#include "config.h"
#include "crgw/ebpf.h"
#include "drops.h"
#include "log.h"
#include "netctl.h"
#include "sandbox.h"

static struct crgw_nflog *nflog;
static struct event *nflog_ev;
static struct crgw_guard *guard;
static struct event *guard_ev;

static const char *proto_name(int l4proto)
{
	return l4proto == IPPROTO_TCP ? "tcp" : l4proto == IPPROTO_UDP ? "udp" : l4proto == IPPROTO_ICMP ? "icmp"
	       : l4proto == IPPROTO_ICMPV6 ? "icmpv6" : "other";
}

static void set_sandbox(struct crgw_audit_event *ev, const struct crgw_sandbox *sb)
{
	AUDIT_SET(ev->sandbox_id, sb->id);
	AUDIT_SET(ev->run_id, sb->run_id);
	AUDIT_SET(ev->policy_hash, sb->policy_hash);
}

/* The rule prefixes name the reason; the kernel's `limit` already bounds how many reach us per sandbox. */
static void on_packet(const struct crgw_nflog_packet *p, void *arg)
{
	struct crgw_audit_event ev = { .kind = CRGW_AUDIT_PACKET_DROP, .service = "packet",
				       .action = CRGW_ACTION_DENY };
	struct crgw_sandbox *sb = crgw_sandbox_by_ifindex((int)p->indev);
	const char *proto = proto_name(p->l4proto), *note = "";

	(void)arg;
	if (!strcmp(p->prefix, "dns_bypass_attempt"))
		ev.reason = CRGW_REASON_DNS_BYPASS_ATTEMPT;
	else if (!strcmp(p->prefix, "spoofed_source"))
		ev.reason = CRGW_REASON_SPOOFED_SOURCE;
	else if (!strcmp(p->prefix, "rate_limited"))
		ev.reason = CRGW_REASON_RATE_LIMITED;
	if (p->family == AF_INET || p->family == AF_INET6) {
		inet_ntop(p->family, &p->src, ev.src_ip, sizeof(ev.src_ip));
		inet_ntop(p->family, &p->dst, ev.dst_ip, sizeof(ev.dst_ip));
	}
	if (p->has_ports)
		ev.dst_port = p->dport;
	if (sb) {
		set_sandbox(&ev, sb);
		/* Plain drops: to the gateway on a port it does not serve, or anywhere else. */
		if (ev.reason == CRGW_REASON_NONE)
			ev.reason = p->family == AF_INET && p->dst.v4.s_addr == sb->gw.s_addr
					    ? CRGW_REASON_PORT_NOT_ALLOWED
					    : CRGW_REASON_HOST_NOT_ALLOWED;
	} else if (ev.reason == CRGW_REASON_NONE) {
		ev.reason = CRGW_REASON_UNKNOWN_SANDBOX;
	}
	if (p->family == AF_INET6)
		note = " (IPv6 is off for sandboxes)";
	else if (ev.reason == CRGW_REASON_RATE_LIMITED)
		note = "; more new connections a second than a sandbox may open";
	snprintf(ev.detail, sizeof(ev.detail), "protocol=%s%s", proto, note);
	crgw_audit_emit(&ev);
	crgw_sandbox_unref(sb);
}

static void readable(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	for (unsigned i = 0; i < 16; i++) {
		int n = crgw_nflog_read(nflog, on_packet, NULL);

		if (n == -ENOBUFS) {
			log_warn("the kernel dropped packet-drop log messages", "%s", "");
			continue;
		}
		if (n < 0)
			return;
	}
}

/* The guard names the class it dropped for, and the slot: the sandbox is whoever holds that slot now. */
static void on_guard_drop(void *arg, const struct crgw_guard_drop *d)
{
	struct crgw_audit_event ev = { .kind = CRGW_AUDIT_PACKET_DROP, .service = "packet",
				       .action = CRGW_ACTION_DENY };
	struct crgw_sandbox *sb = crgw_sandbox_by_slot(d->slot);

	(void)arg;
	ev.reason = crgw_guard_reason(d->reason);
	if (d->family == AF_INET || d->family == AF_INET6) {
		inet_ntop(d->family, &d->src, ev.src_ip, sizeof(ev.src_ip));
		inet_ntop(d->family, &d->dst, ev.dst_ip, sizeof(ev.dst_ip));
	}
	if (d->dport)
		ev.dst_port = d->dport;
	if (sb)
		set_sandbox(&ev, sb);
	/*
	 * A frame dropped for its source MAC is judged before its IP header is read: the forged MAC is the
	 * evidence then, not a protocol that was never parsed ("protocol=other" with no address said nothing).
	 */
	if ((d->ethertype == 0x0800 || d->ethertype == 0x86dd) && d->family)
		snprintf(ev.detail, sizeof(ev.detail), "protocol=%s%s; dropped by the eBPF guard", proto_name(d->proto),
			 d->family == AF_INET6 ? " (IPv6 is off for sandboxes)" : "");
	else
		snprintf(ev.detail, sizeof(ev.detail), "ethertype=0x%04x source_mac=%02x:%02x:%02x:%02x:%02x:%02x; "
			 "dropped by the eBPF guard", d->ethertype, d->src_mac[0], d->src_mac[1], d->src_mac[2],
			 d->src_mac[3], d->src_mac[4], d->src_mac[5]);
	crgw_audit_emit(&ev);
	crgw_sandbox_unref(sb);
}

static void guard_readable(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	crgw_guard_events_poll(guard, on_guard_drop, NULL);
}

int crgw_drops_start(struct event_base *base, const struct crgw_config *cfg, bool nft, struct crgw_guard *g)
{
	int err;

	if (nft) {
		err = crgw_nflog_open((uint16_t)cfg->nflog_group, &nflog);
		if (err)
			return err;
		nflog_ev = event_new(base, crgw_nflog_fd(nflog), EV_READ | EV_PERSIST, readable, NULL);
		if (!nflog_ev || event_add(nflog_ev, NULL)) {
			crgw_drops_stop();
			return -ENOMEM;
		}
	}
	if (g) {
		guard = g;
		guard_ev = event_new(base, crgw_guard_events_fd(g), EV_READ | EV_PERSIST, guard_readable, NULL);
		if (!guard_ev || event_add(guard_ev, NULL)) {
			crgw_drops_stop();
			return -ENOMEM;
		}
	}
	return 0;
}

void crgw_drops_stop(void)
{
	if (nflog_ev)
		event_free(nflog_ev);
	nflog_ev = NULL;
	crgw_nflog_close(nflog);
	nflog = NULL;
	if (guard_ev)
		event_free(guard_ev);
	guard_ev = NULL;
	guard = NULL;
}
