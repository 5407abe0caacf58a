/* SPDX-License-Identifier: Apache-2.0 */
/* Structured operator logs on stderr (logfmt), one write per line. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static enum crgw_log_level min_level = CRGW_LOG_INFO;
static const char *const level_names[] = { "debug", "info", "warn", "error" };

void crgw_log_set_level(enum crgw_log_level level)
{
	min_level = level;
}

void crgw_log(enum crgw_log_level level, const char *msg, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;
	va_list ap;

	if (level < min_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%06ldZ level=%s msg=\"%s\"", ts.tv_nsec / 1000,
		     level_names[level], msg);
	if (r > 0)
		n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	if (fmt && *fmt && n < sizeof(line) - 2) {
		line[n++] = ' ';
		va_start(ap, fmt);
		r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		va_end(ap);
		if (r > 0)
			n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	}
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* Best effort: a full stderr must never stop the gateway. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}
