/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The text forms of a sandbox's limits and name. crgw reads them from crgw.yaml and the control API,
 * crgw-ctl from its flags: one parser, so that what `crgw-ctl run` accepts is what the gateway takes,
 * and a typo is refused before a sandbox is begun.
 */
#ifndef CRGW_LIMITS_H
#define CRGW_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

#define CRGW_SANDBOX_NAME_MAX 63

/* The least a sandbox may be given: below these a job cannot start its first process. */
#define CRGW_LIMIT_MEMORY_MIN (UINT64_C(16) << 20)
#define CRGW_LIMIT_PIDS_MIN 8
#define CRGW_LIMIT_CPU_MILLI_MIN 10
/* A disk of its own (limits.disk): room for a home, a package cache and a build's objects; at most 1 PiB. */
#define CRGW_LIMIT_DISK_MIN (UINT64_C(64) << 20)
#define CRGW_LIMIT_DISK_MAX (UINT64_C(1) << 50)

/*
 * Parses a size in bytes: a number with an optional binary unit (K, M, G, T, P, with or without "iB" or "B",
 * in any case; all powers of 1024). Returns 0 or -EINVAL (also on overflow).
 */
int crgw_size_parse(const char *text, uint64_t *out);

/* Parses a CPU count ("2", "0.5", "1.25"; at most 3 decimals) into thousandths. Returns 0 or -EINVAL. */
int crgw_cpus_parse(const char *text, uint32_t *milli);

/*
 * Whether `name` can name a sandbox: 1 to CRGW_SANDBOX_NAME_MAX letters, digits, '.', '_', '-', not
 * starting with '.', '-' or "sbx-" (names share the ids' namespace in every command).
 */
bool crgw_sandbox_name_valid(const char *name);

/*
 * Whether `run_id` can be a sandbox's run id: at most 63 bytes of UTF-8, none of them a control character
 * (it is printed in listings and audit text; the caller's CI job id or UUID needs none).
 */
bool crgw_run_id_valid(const char *run_id);

#endif
