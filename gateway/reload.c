/* SPDX-License-Identifier: Apache-2.0 */
/* Live reload (reload.h): the whole configuration checked first, then the live part applied. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "dns.h"
#include "log.h"
#include "mediation/vault.h"
#include "reload.h"
#include "sandbox.h"

static struct {
	struct crgw_config *live;
	crgw_config_reader read;
	int argc;
	char **argv;
} L;

void crgw_reload_init(struct crgw_config *live, crgw_config_reader read, int argc, char **argv)
{
	L.live = live;
	L.read = read;
	L.argc = argc;
	L.argv = argv;
}

static void audit(enum crgw_audit_kind kind, const char *detail)
{
	struct crgw_audit_event ev = {.kind = kind, .service = "control"};

	AUDIT_SET(ev.detail, detail);
	crgw_audit_emit(&ev);
}

static void refuse(struct crgw_reload_result *out)
{
	char detail[400];

	log_error("configuration reload refused: the running configuration stays", "error=\"%s\"", out->error);
	snprintf(detail, sizeof(detail), "refused, the running configuration stays: %.300s", out->error);
	audit(CRGW_AUDIT_CONFIG_REFUSED, detail);
}

int crgw_reload(struct crgw_reload_result *out)
{
	/* Large (credentials and lists): kept off the stack, and only the main thread reloads. */
	static struct crgw_config next, probe;
	char detail[400];
	bool check_only = false, blocked = false;
	int err;

	memset(out, 0, sizeof(*out));
	crgw_config_defaults(&next);
	if (!L.live || L.read(L.argc, L.argv, &next, &check_only, out->error, sizeof(out->error))) {
		if (!L.live)
			snprintf(out->error, sizeof(out->error), "the gateway is not running yet");
		refuse(out);
		return -EINVAL;
	}
	if (crgw_config_check_files(&next, out->error, sizeof(out->error))) {
		refuse(out);
		return -EINVAL;
	}
	/*
	 * The new blocklist is built and swapped in before anything else changes, so that one that cannot be
	 * built refuses the reload whole instead of being reported applied while the old list stays in force.
	 * It is built from the running pool (a new pool waits for a restart) and the new ranges.
	 */
	if (crgw_config_blocked_differ(L.live, &next)) {
		probe = *L.live;
		memcpy(probe.blocked, next.blocked, sizeof(probe.blocked));
		probe.nblocked = next.nblocked;
		err = crgw_registry_set_blocked(&probe);
		if (err) {
			snprintf(out->error, sizeof(out->error), "blocked_ranges: the list cannot be built: %s",
				 strerror(-err));
			refuse(out);
			return -EINVAL;
		}
		blocked = true;
	}
	/* The vault reads new sources first: one that cannot be read refuses the reload whole, as at start. */
	if (crgw_config_secrets_differ(L.live, &next) && crgw_vault_load(&next, out->error, sizeof(out->error))) {
		/* The running list back; if even that fails the new one stays, and the log says so. */
		if (blocked && (err = crgw_registry_set_blocked(L.live)))
			log_error("blocked_ranges not restored: the reloaded list stays in force", "error=\"%s\"",
				  strerror(-err));
		refuse(out);
		return -EINVAL;
	}
	crgw_config_reload(L.live, &next, &out->change);
	if (out->change.upstream)
		crgw_dns_set_upstreams(L.live);
	if (strstr(out->change.applied, "log_level"))
		crgw_log_set_level((enum crgw_log_level)L.live->log_level);
	out->ok = true;
	/* An event's detail is short (159 bytes): the log line below has the whole lists. */
	snprintf(detail, sizeof(detail), "applied=%.190s kept=%.190s", out->change.applied[0] ? out->change.applied : "-",
		 out->change.kept[0] ? out->change.kept : "-");
	audit(CRGW_AUDIT_CONFIG_RELOADED, detail);
	log_info("configuration reloaded", "applied=\"%s\" needs_restart=\"%s\"", out->change.applied,
		 out->change.kept);
	return 0;
}
