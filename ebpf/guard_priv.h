/* SPDX-License-Identifier: Apache-2.0 */
/* What the guard's tests reach beyond the public API: its maps and program, by descriptor. */
#ifndef CRGW_EBPF_GUARD_PRIV_H
#define CRGW_EBPF_GUARD_PRIV_H

#include "crgw/ebpf.h"

/* The descriptor of the map named `name` ("sandboxes", "counters", ...), owned by the guard; -ENOENT. */
int crgw_guard_map_fd(struct crgw_guard *g, const char *name);

/* The loaded program's descriptor, owned by the guard. */
int crgw_guard_prog_fd(struct crgw_guard *g);

#endif
