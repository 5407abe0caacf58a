/* SPDX-License-Identifier: Apache-2.0 */
/* The text forms of a sandbox's limits and name, shared by crgw and crgw-ctl (crgw/limits.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crgw/limits.h"
#include "crgw/policy_diff.h"

int crgw_size_parse(const char *text, uint64_t *out)
{
	/* clang-format off */
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {
		{ "", 0 }, { "B", 0 },
		{ "K", 10 }, { "KB", 10 }, { "KiB", 10 },
		{ "M", 20 }, { "MB", 20 }, { "MiB", 20 },
		{ "G", 30 }, { "GB", 30 }, { "GiB", 30 },
		{ "T", 40 }, { "TB", 40 }, { "TiB", 40 },
		{ "P", 50 }, { "PB", 50 }, { "PiB", 50 },
	};
	/* clang-format on */
	unsigned long long n;
	char *end;

	if (*text < '0' || *text > '9')
		return -EINVAL;
	errno = 0;
	n = strtoull(text, &end, 10);
	if (errno)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		/* Any case: 512m, 2gib and 2GiB mean the same (all are bytes, all powers of 1024). */
		if (!strcasecmp(end, units[i].suffix)) {
			if (units[i].shift && n > (UINT64_MAX >> units[i].shift))
				return -EINVAL;
			*out = (uint64_t)n << units[i].shift;
			return 0;
		}
	}
	return -EINVAL;
}

int crgw_cpus_parse(const char *text, uint32_t *milli)
{
	unsigned long whole = 0, frac = 0, scale = 100;
	const char *p = text;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		whole = whole * 10 + (unsigned long)(*p - '0');
		if (whole > 1000000)
			return -EINVAL;
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (scale == 0)
				return -EINVAL; /* more than three decimals */
			frac += (unsigned long)(*p - '0') * scale;
			scale /= 10;
		}
	}
	if (*p)
		return -EINVAL;
	*milli = (uint32_t)(whole * 1000 + frac);
	return 0;
}

bool crgw_run_id_valid(const char *run_id)
{
	size_t n = strlen(run_id);

	if (n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)run_id[i] < 0x20 || run_id[i] == 0x7f)
			return false;
	/* Audit events are JSON: a run id that is not UTF-8 could not be written into them. */
	return crgw_text_utf8_valid(run_id, n);
}

bool crgw_sandbox_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > CRGW_SANDBOX_NAME_MAX || !strncmp(name, "sbx-", 4) || name[0] == '.' || name[0] == '-')
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
		      *p == '_' || *p == '-'))
			return false;
	return true;
}
