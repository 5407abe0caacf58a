/* SPDX-License-Identifier: Apache-2.0 */
/* Reads the kernel's drop log and audits each drop against the sandbox whose interface it came from. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "audit.h"
#include "config.h"
#include "drops.h"
#include "log.h"
#include "netctl.h"
#include "sandbox.h"

static struct crgw_nflog *nflog;
static struct event *nflog_ev;

/* The rule prefixes name the reason; the kernel's `limit` already bounds how many reach us per sandbox. */
static void on_packet(const struct crgw_nflog_packet *p, void *arg)
{
	struct crgw_audit_event ev = { .kind = CRGW_AUDIT_PACKET_DROP, .service = "packet",
				       .action = CRGW_ACTION_DENY };
	struct crgw_sandbox *sb = crgw_sandbox_by_ifindex((int)p->indev);
	const char *proto = p->l4proto == IPPROTO_TCP ? "tcp" : p->l4proto == IPPROTO_UDP ? "udp"
			  : p->l4proto == IPPROTO_ICMP ? "icmp" : p->l4proto == IPPROTO_ICMPV6 ? "icmpv6" : "other";

	(void)arg;
	if (!strcmp(p->prefix, "dns_bypass_attempt"))
		ev.reason = CRGW_REASON_DNS_BYPASS_ATTEMPT;
	else if (!strcmp(p->prefix, "spoofed_source"))
		ev.reason = CRGW_REASON_SPOOFED_SOURCE;
	if (p->family == AF_INET || p->family == AF_INET6) {
		inet_ntop(p->family, &p->src, ev.src_ip, sizeof(ev.src_ip));
		inet_ntop(p->family, &p->dst, ev.dst_ip, sizeof(ev.dst_ip));
	}
	if (p->has_ports)
		ev.dst_port = p->dport;
	if (sb) {
		AUDIT_SET(ev.sandbox_id, sb->id);
		AUDIT_SET(ev.run_id, sb->run_id);
		AUDIT_SET(ev.policy_hash, sb->policy_hash);
		/* Plain drops: to the gateway on a port it does not serve, or anywhere else. */
		if (ev.reason == CRGW_REASON_NONE)
			ev.reason = p->family == AF_INET && p->dst.v4.s_addr == sb->gw.s_addr
					    ? CRGW_REASON_PORT_NOT_ALLOWED
					    : CRGW_REASON_HOST_NOT_ALLOWED;
	} else if (ev.reason == CRGW_REASON_NONE) {
		ev.reason = CRGW_REASON_UNKNOWN_SANDBOX;
	}
	snprintf(ev.detail, sizeof(ev.detail), "protocol=%s%s", proto,
		 p->family == AF_INET6 ? " (IPv6 is off for sandboxes)" : "");
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

int crgw_drops_start(struct event_base *base, const struct crgw_config *cfg)
{
	int err = crgw_nflog_open((uint16_t)cfg->nflog_group, &nflog);

	if (err)
		return err;
	nflog_ev = event_new(base, crgw_nflog_fd(nflog), EV_READ | EV_PERSIST, readable, NULL);
	if (!nflog_ev || event_add(nflog_ev, NULL)) {
		crgw_drops_stop();
		return -ENOMEM;
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
}
