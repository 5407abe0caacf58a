/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OpenTelemetry sink: a batch of audit lines as one OTLP/HTTP JSON logs request (POST /v1/logs):
 * each line a log record whose body is the line, with its time, a severity (WARN for a denial, INFO
 * otherwise) and the event's main fields as attributes. A 2xx answer delivers the batch; 429, 5xx and
 * transport errors are retried; any other answer refuses it for good (counted lost, reported).
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crgw/policy_diff.h"
#include "internal.h"
#include "log.h"

void export_otlp_close(struct export_sink *s)
{
	if (s->curl)
		curl_easy_cleanup(s->curl);
	s->curl = NULL;
}

/* "2026-12-06T10:00:00.123456Z" → nanoseconds since the epoch, as the decimal string OTLP JSON wants. */
static void unix_nano(const char *ts, char *out, size_t size)
{
	struct tm tm = {0};
	const char *rest = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm);
	long us = 0;

	if (!rest) {
		snprintf(out, size, "0");
		return;
	}
	if (*rest == '.')
		us = strtol(rest + 1, NULL, 10);
	snprintf(out, size, "%lld%06ld000", (long long)timegm(&tm), us);
}

static void attribute(json_t *attrs, const char *key, const char *value)
{
	if (value && value[0])
		json_array_append_new(attrs, json_pack("{s:s, s:{s:s}}", "key", key, "value", "stringValue", value));
}

static json_t *record(const char *line, size_t len)
{
	struct crgw_audit_flow f;
	json_t *attrs = json_array(), *rec;
	char nano[32] = "0";
	bool parsed = crgw_audit_flow_parse(line, len, &f) == 0;
	bool deny = parsed && !strcmp(f.action, "deny");

	if (parsed) {
		unix_nano(f.ts, nano, sizeof(nano));
		attribute(attrs, "crgw.event", f.event);
		attribute(attrs, "crgw.service", f.service);
		attribute(attrs, "crgw.sandbox_id", f.sandbox_id);
		attribute(attrs, "crgw.run_id", f.run_id);
		attribute(attrs, "crgw.action", f.action);
		attribute(attrs, "crgw.reason_code", f.reason);
		attribute(attrs, "crgw.dst_host", f.host);
		attribute(attrs, "crgw.dst_ip", f.ip);
	}
	rec = json_pack("{s:s, s:s, s:i, s:s, s:{s:s%}, s:o}", "timeUnixNano", nano, "observedTimeUnixNano", nano,
			"severityNumber", deny ? 13 : 9, "severityText", deny ? "WARN" : "INFO", "body", "stringValue",
			line, len, "attributes", attrs);
	return rec;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

int export_otlp_deliver(struct export_sink *s, const char *const *lines, const size_t *lens, size_t n)
{
	json_t *records = json_array(), *doc;
	struct curl_slist *headers = NULL;
	char *body;
	long status = 0;
	CURLcode rc;

	for (size_t i = 0; i < n; i++)
		json_array_append_new(records, record(lines[i], lens[i]));
	doc = json_pack("{s:[{s:{s:[{s:s, s:{s:s}}]}, s:[{s:{s:s, s:s}, s:o}]}]}", "resourceLogs", "resource",
			"attributes", "key", "service.name", "value", "stringValue", "crgw", "scopeLogs", "scope",
			"name", "crgw.audit", "version", "1", "logRecords", records);
	body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (!body)
		return -EAGAIN;
	if (!s->curl)
		s->curl = curl_easy_init();
	if (!s->curl) {
		free(body);
		return -EAGAIN;
	}
	curl_easy_reset(s->curl);
	headers = curl_slist_append(headers, "Content-Type: application/json");
	curl_easy_setopt(s->curl, CURLOPT_URL, s->cfg.endpoint);
	curl_easy_setopt(s->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(s->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(s->curl, CURLOPT_TIMEOUT_MS, 15000L);
	curl_easy_setopt(s->curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(s->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(s->curl, CURLOPT_PROXY, "");
	curl_easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(s->curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(s->curl, CURLOPT_XFERINFOFUNCTION, export_halt_check);
	curl_easy_setopt(s->curl, CURLOPT_XFERINFODATA, s);
	curl_easy_setopt(s->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	if (s->cfg.ca_file[0])
		curl_easy_setopt(s->curl, CURLOPT_CAINFO, s->cfg.ca_file);
	rc = curl_easy_perform(s->curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(headers);
	free(body);
	if (rc == CURLE_OK && status >= 200 && status < 300) {
		atomic_store(&s->connected, 1);
		return 0;
	}
	atomic_store(&s->connected, 0);
	if (rc == CURLE_OK && status != 429 && status < 500) {
		log_error("audit export: the OTLP receiver refused a batch; it is counted lost", "sink=%s status=%ld",
			  s->cfg.name, status);
		return -EBADMSG;
	}
	if (!s->logged_down)
		log_warn("audit export: the receiver cannot be reached; events wait in the spool",
			 "sink=%s error=\"%s\"", s->cfg.name,
			 rc == CURLE_OK ? "a retryable status" : curl_easy_strerror(rc));
	s->logged_down = true;
	return -EAGAIN;
}
