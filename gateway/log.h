/* SPDX-License-Identifier: Apache-2.0 */
/* Structured operator logs on stderr: one logfmt line per event, safe from any thread. */
#ifndef CRGW_GATEWAY_LOG_H
#define CRGW_GATEWAY_LOG_H

enum crgw_log_level { CRGW_LOG_DEBUG, CRGW_LOG_INFO, CRGW_LOG_WARN, CRGW_LOG_ERROR };

/* Messages below `level` are dropped. Set once at start-up, before threads start. */
void crgw_log_set_level(enum crgw_log_level level);

/*
 * Writes `ts=… level=… msg="…"` followed by the formatted key=value pairs in `fmt` (the caller quotes
 * values that may hold spaces). One write(2) per line, so lines from different threads never interleave.
 */
__attribute__((format(printf, 3, 4))) void crgw_log(enum crgw_log_level level, const char *msg,
						     const char *fmt, ...);

#define log_debug(msg, ...) crgw_log(CRGW_LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) crgw_log(CRGW_LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) crgw_log(CRGW_LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) crgw_log(CRGW_LOG_ERROR, msg, __VA_ARGS__)

#endif
