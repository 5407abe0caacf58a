/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Live reload (SIGHUP, POST /v1/reload, crgw-ctl reload): crgw.yaml and the flags read again, checked
 * whole, and what may change while sandboxes and tunnels run applied (docs/gateway.md, "Reloading").
 * Main thread only.
 */
#ifndef CRGW_GATEWAY_RELOAD_H
#define CRGW_GATEWAY_RELOAD_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Reads the configuration into `cfg` from the file and the flags; 2 with the reason in `msg` on an error. */
typedef int (*crgw_config_reader)(int argc, char **argv, struct crgw_config *cfg, bool *check_only, char *msg,
				  size_t msglen);

/* Remembers the running configuration (written by reloads) and how it was read (argv borrowed for good). */
void crgw_reload_init(struct crgw_config *live, crgw_config_reader read, int argc, char **argv);

struct crgw_reload_result {
	bool ok;	  /* false: refused, the running configuration unchanged */
	char error[4400]; /* why it was refused */
	struct crgw_config_change change;
};

/* Reads and applies the configuration; audits and logs the outcome. Returns 0, or -EINVAL when refused. */
int crgw_reload(struct crgw_reload_result *out);

#endif
