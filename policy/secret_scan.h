/* SPDX-License-Identifier: Apache-2.0 */
/* Detection of credential-looking strings in policy files. */
#ifndef CRGW_POLICY_SECRET_SCAN_H
#define CRGW_POLICY_SECRET_SCAN_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Returns a static description of the kind of credential `s` (len bytes, borrowed) appears to hold, or
 * NULL when it looks like none. The caller reports the kind, never the value.
 */
const char *secret_scan(const char *s, size_t len);

#endif
