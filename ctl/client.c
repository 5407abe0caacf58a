/* SPDX-License-Identifier: Apache-2.0 */
/* The control API client: HTTP/JSON over the gateway's unix socket, with libcurl. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crgw/limits.h"
#include "crgw/vm.h"
#include "ctl.h"

#define RESPONSE_MAX (64u << 20)
#define LINE_MAX_BYTES (1u << 20)

const char *ctl_control_path = "/run/crgw/control.sock";
long ctl_timeout_ms = 120000;

struct sink {
	char *buf;
	size_t len, cap;
	bool too_big;
	int (*line)(const char *text, size_t len, void *arg);
	void *arg;
	bool stop;
	CURL *curl;	/* for a stream: its answer's status */
	bool refused;	/* a stream answered with an error: its body is kept for the message */
	struct timespec start;
};

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t bytes = size * n;

	if (s->len + bytes + 1 > RESPONSE_MAX) {
		s->too_big = true;
		return 0;
	}
	if (s->len + bytes + 1 > s->cap) {
		size_t cap = (s->len + bytes + 1) * 2;
		char *p = realloc(s->buf, cap);

		if (!p)
			return 0;
		s->buf = p;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, data, bytes);
	s->len += bytes;
	s->buf[s->len] = '\0';
	return bytes;
}

/* Hands out complete lines as they arrive; a partial line waits for the rest (bounded). */
static size_t split_lines(char *data, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t bytes = size * n, start = 0;
	long status = 0;

	if (collect(data, size, n, arg) != bytes)
		return 0;
	curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200) {
		s->refused = true;
		return bytes;
	}
	for (size_t i = 0; i < s->len; i++) {
		if (s->buf[i] != '\n')
			continue;
		s->buf[i] = '\0';
		if (s->line(s->buf + start, i - start, s->arg)) {
			s->stop = true;
			return 0;
		}
		start = i + 1;
	}
	memmove(s->buf, s->buf + start, s->len - start);
	s->len -= start;
	if (s->len > LINE_MAX_BYTES)
		return 0;
	return bytes;
}

static CURL *open_handle(const char *path, char *url, size_t urlsize)
{
	CURL *c = curl_easy_init();

	if (!c)
		return NULL;
	snprintf(url, urlsize, "http://crgw%s", path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, ctl_control_path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	return c;
}

/*
 * A stream may stay quiet for ever once it is answered (audit tail -f), but its answer must come: a
 * socket that accepts and never answers would otherwise hold the command for good.
 */
static int stream_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct sink *s = arg;
	struct timespec now;
	long status = 0;

	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status || !ctl_timeout_ms)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - s->start.tv_sec) * 1000 + (now.tv_nsec - s->start.tv_nsec) / 1000000 > ctl_timeout_ms;
}

static int curl_failed(CURL *c, CURLcode rc, char *err, size_t errlen)
{
	long os_errno = 0;

	curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os_errno);
	if (rc == CURLE_COULDNT_CONNECT && (os_errno == EACCES || os_errno == EPERM)) {
		/* The gateway is running, most likely: "is crgw running?" would send the operator the wrong way. */
		snprintf(err, errlen,
			 "cannot connect to the gateway's control socket %s: %s (it is for root and the group of "
			 "crgw.yaml control_mode)",
			 ctl_control_path, strerror((int)os_errno));
		return -EACCES;
	}
	if (rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_ABORTED_BY_CALLBACK)
		snprintf(err, errlen, "the gateway at %s did not answer within %ld s", ctl_control_path,
			 ctl_timeout_ms / 1000);
	else if (rc == CURLE_PARTIAL_FILE)
		snprintf(err, errlen, "the gateway closed the stream (did it stop?)");
	else if (rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR || rc == CURLE_GOT_NOTHING)
		snprintf(err, errlen, "the gateway at %s closed the connection without an answer (did it stop?)",
			 ctl_control_path);
	else if (rc == CURLE_COULDNT_CONNECT)
		snprintf(err, errlen, "cannot reach the gateway at %s (is crgw running? set --control or CRGW_CONTROL)",
			 ctl_control_path);
	else
		snprintf(err, errlen, "control socket %s: %s", ctl_control_path, curl_easy_strerror(rc));
	if (rc == CURLE_COULDNT_CONNECT)
		return -ECONNREFUSED;
	return rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_ABORTED_BY_CALLBACK ? -ETIMEDOUT : -EIO;
}

int ctl_request(const char *method, const char *path, const char *body, struct ctl_response *out, char *err,
		size_t errlen)
{
	struct sink s = { 0 };
	struct curl_slist *headers = NULL;
	char url[1024];
	CURL *c = open_handle(path, url, sizeof(url));
	CURLcode rc;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	if (!c)
		return -ENOMEM;
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ctl_timeout_ms);
	if (body) {
		headers = curl_slist_append(headers, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	}
	rc = curl_easy_perform(c);
	if (rc != CURLE_OK) {
		ret = s.too_big ? -E2BIG : curl_failed(c, rc, err, errlen);
		if (s.too_big)
			snprintf(err, errlen, "the gateway's answer is larger than %u bytes", RESPONSE_MAX);
		free(s.buf);
	} else {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
		out->body = s.buf ? s.buf : strdup("");
		out->len = s.len;
	}
	curl_slist_free_all(headers);
	curl_easy_cleanup(c);
	return ret;
}

/*
 * "code: message" from the gateway's JSON error, for an error string. An answer that is no such JSON (the
 * HTTP library's own page for a method it does not take or a body over its bound) is named by its status:
 * its text is markup, not a message, and is never printed.
 */
static void error_text(const struct ctl_response *r, char *err, size_t errlen)
{
	json_t *j = json_loads(r->body ? r->body : "", 0, NULL);
	const char *code = json_string_value(json_object_get(j, "code"));
	const char *msg = json_string_value(json_object_get(j, "message"));

	if (code && msg)
		snprintf(err, errlen, "%s: %s", code, msg);
	else
		snprintf(err, errlen, "error: the gateway answered HTTP %ld%s", r->status,
			 r->status == 413 ? " (the request is larger than it takes)" :
			 r->status == 501 ? " (a method it does not take)" : "");
	json_decref(j);
}

int ctl_stream(const char *path, int (*line)(const char *text, size_t len, void *arg), void *arg, char *err,
	       size_t errlen)
{
	struct sink s = { .line = line, .arg = arg };
	char url[1024];
	CURL *c = open_handle(path, url, sizeof(url));
	CURLcode rc;
	int ret = 0;

	if (!c)
		return -ENOMEM;
	s.curl = c;
	clock_gettime(CLOCK_MONOTONIC, &s.start);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, split_lines);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, stream_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, &s);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	rc = curl_easy_perform(c);
	if (s.refused) {
		/* The gateway's own reason ("rate_limited: too many audit followers"), not curl's. */
		struct ctl_response r = { .body = s.buf, .len = s.len };

		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
		error_text(&r, err, errlen);
		ret = -EIO;
	} else if (rc != CURLE_OK && !s.stop) {
		ret = curl_failed(c, rc, err, errlen);
	}
	free(s.buf);
	curl_easy_cleanup(c);
	return ret;
}

void ctl_print_error(const char *what, const struct ctl_response *r)
{
	char err[1024];

	error_text(r, err, sizeof(err));
	fprintf(stderr, "crgw-ctl: %s: %s\n", what, err);
}

/* ---- the gateway as the sandbox backends see it ------------------------------------------------ */

static int gw_register(void *arg, json_t *request, json_t **answer, char *err, size_t errlen)
{
	struct ctl_response r = { 0 };
	char *body = json_dumps(request, JSON_COMPACT);
	int e;

	(void)arg;
	*answer = NULL;
	if (!body) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	e = ctl_request("POST", "/v1/sandboxes", body, &r, err, errlen);
	free(body);
	if (e)
		return e;
	if (r.status != 201) {
		error_text(&r, err, errlen);
		e = r.status == 409 ? -EEXIST : r.status == 400 ? -EINVAL : -EIO;
	} else if (!(*answer = json_loads(r.body, 0, NULL))) {
		snprintf(err, errlen, "the gateway's answer is not JSON");
		e = -EPROTO;
	}
	free(r.body);
	return e;
}

static int gw_release(void *arg, const char *id)
{
	struct ctl_response r = { 0 };
	char path[128], err[256];
	int e;

	(void)arg;
	snprintf(path, sizeof(path), "/v1/sandboxes/%s", id);
	e = ctl_request("DELETE", path, NULL, &r, err, sizeof(err));
	free(r.body);
	if (e)
		return e;
	return r.status == 200 || r.status == 404 || r.status == 410 ? 0 : -EIO; /* gone is released */
}

bool ctl_sandbox_ref_ok(const char *ref)
{
	/* An id is "sbx-" and ten hex digits (gateway/sandbox.c); a name is what the gateway takes as one. */
	return (!strncmp(ref, "sbx-", 4) && strlen(ref) == 14 && strspn(ref + 4, "0123456789abcdef") == 10) ||
	       crgw_sandbox_name_valid(ref);
}

int ctl_get_sandbox(const char *id, json_t **record, char *err, size_t errlen)
{
	struct ctl_response r = { 0 };
	char path[128];
	int e;

	*record = NULL;
	if (!ctl_sandbox_ref_ok(id)) {
		snprintf(err, errlen, "not a sandbox id or name");
		return -EINVAL;
	}
	snprintf(path, sizeof(path), "/v1/sandboxes/%s", id);
	if ((e = ctl_request("GET", path, NULL, &r, err, errlen)))
		return e;
	if (r.status == 200 || r.status == 410) {
		*record = json_loads(r.body, 0, NULL);
		e = !*record ? -EPROTO : r.status == 410 ? -ESRCH : 0;
		if (r.status == 410 || !*record)
			error_text(&r, err, errlen);
	} else {
		error_text(&r, err, errlen);
		e = r.status == 404 ? -ENOENT : -EIO;
	}
	free(r.body);
	return e;
}

static int gw_get(void *arg, const char *id, json_t **record, char *err, size_t errlen)
{
	(void)arg;
	return ctl_get_sandbox(id, record, err, errlen);
}

static int gw_timings(void *arg, const char *id, json_t *timings)
{
	struct ctl_response r = { 0 };
	char path[128], err[256], *body = json_dumps(timings, JSON_COMPACT);
	int e;

	(void)arg;
	if (!body)
		return -ENOMEM;
	snprintf(path, sizeof(path), "/v1/sandboxes/%s/timings", id);
	e = ctl_request("POST", path, body, &r, err, sizeof(err));
	free(body);
	free(r.body);
	return e ? e : r.status == 200 ? 0 : -EIO;
}

const struct crgw_gateway_ops ctl_gateway_ops = {
	.register_sandbox = gw_register,
	.release_sandbox = gw_release,
	.get_sandbox = gw_get,
	.report_timings = gw_timings,
};
