/* SPDX-License-Identifier: Apache-2.0 */
/*
 * /secrets/<id>/<host>/<path>[?query]: the tokenizer model. The sandbox sends a plain request naming a
 * secret of its policy and an https destination; the gateway checks the destination against the secret's
 * allowed_hosts (and the address checks every upstream passes), drops whatever credential the sandbox
 * sent, adds the secret's header in the policy's format, and sends the request on over verified TLS. The
 * answer streams back as the upstream gave it; nothing the gateway itself writes ever holds the value.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "path.h"
#include "sandbox.h"
#include "vault.h"

static const char *const methods[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" };

/* Fields that belong to this hop, or that authenticate: never passed on from the sandbox. */
static bool dropped(const char *name, size_t len, const char *secret_header)
{
	static const char *const names[] = { "host",       "authorization",     "proxy-authorization", "connection",
					     "keep-alive", "proxy-connection",  "te",                  "trailer",
					     "upgrade",    "transfer-encoding", "content-length",      "expect" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && !strncasecmp(name, names[i], len))
			return true;
	return strlen(secret_header) == len && !strncasecmp(name, secret_header, len);
}

static bool forward_fields(struct med_request *r, const char *secret_header)
{
	unsigned n = med_field_count(r);
	char line[CRGW_HTTP_HEAD_MAX + 4];

	for (unsigned i = 0; i < n; i++) {
		const char *name, *value;
		size_t nlen, vlen;

		med_field_at(r, i, &name, &nlen, &value, &vlen);
		if (dropped(name, nlen, secret_header))
			continue;
		snprintf(line, sizeof(line), "%.*s: %.*s", (int)nlen, name, (int)vlen, value);
		if (!med_header_add(r, line))
			return false;
	}
	return true;
}

static int add_secret(struct med_request *r, const struct crgw_secret_rule *rule)
{
	size_t vmax = CRGW_SECRET_VALUE_MAX, size = vmax + 1024;
	char *value = crgw_vault_scratch(vmax), *line = crgw_vault_scratch(size);
	const char *at = strstr(rule->format, "{secret}");
	ssize_t n;
	int ret = 0;

	if (!value || !line || !at) {
		ret = -ENOMEM;
		goto out;
	}
	n = crgw_vault_get(rule->id, strlen(rule->id), value, vmax);
	if (n < 0) {
		ret = (int)n;
		goto out;
	}
	snprintf(line, size, "%s: %.*s%s%s", rule->header, (int)(at - rule->format), rule->format, value,
		 at + strlen("{secret}"));
	if (!med_header_add(r, line))
		ret = -ENOMEM;
out:
	crgw_vault_scratch_free(value, vmax);
	crgw_vault_scratch_free(line, size);
	return ret;
}

void med_secrets(struct med_request *r, const char *path, size_t len, const char *query, size_t qlen)
{
	const struct crgw_policy *policy = med_sandbox(r)->policy;
	const struct crgw_secret_rule *rule;
	const char *id, *hostseg, *why = NULL, *method;
	size_t idlen, hostlen, mlen;
	bool method_ok = false;
	char detail[512];
	int err;

	method = med_method(r, &mlen);
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		method_ok |= strlen(methods[i]) == mlen && !memcmp(methods[i], method, mlen);
	if (med_path_segment(&path, &len, &id, &idlen) || med_path_segment(&path, &len, &hostseg, &hostlen)) {
		med_refuse(r, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID,
			   "expected /secrets/<secret id>/<host>/<path>");
		return;
	}
	AUDIT_SET_RAW(r->secret_id, id, idlen);
	if (crgw_host_parse(hostseg, hostlen, &r->host, &why) || r->host.kind != CRGW_HOST_NAME) {
		r->host.len = 0;
		snprintf(detail, sizeof(detail), "the destination must be a host name: %s", why ? why : "an IP address");
		med_refuse(r, 400, "Bad Request", CRGW_REASON_REQUEST_INVALID, detail);
		return;
	}
	AUDIT_SET_RAW(r->subject, path, len);
	if (!method_ok) {
		med_refuse(r, 405, "Method Not Allowed", CRGW_REASON_REQUEST_INVALID,
			   "the method is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
		return;
	}
	rule = crgw_policy_secret_find(policy, id, idlen);
	if (!rule) {
		med_refuse(r, 403, "Forbidden", CRGW_REASON_SECRET_SCOPE_VIOLATION,
			   "the policy names no secret with this id");
		return;
	}
	if (!crgw_secret_host_allowed(rule, r->host.text)) {
		snprintf(detail, sizeof(detail), "%s is not in the allowed_hosts of secret %s", r->host.text, rule->id);
		med_refuse(r, 403, "Forbidden", CRGW_REASON_SECRET_SCOPE_VIOLATION, detail);
		return;
	}
	r->url = malloc(MED_PATH_BUF * 2 + 600);
	if (!r->url) {
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
		return;
	}
	{
		size_t at = (size_t)snprintf(r->url, MED_PATH_BUF * 2 + 600, "https://%s", r->host.text);

		/* A canonical path goes back into a URL with only its bytes above 0x7f escaped. */
		for (size_t i = 0; i < len && at + 4 < MED_PATH_BUF + 400; i++) {
			unsigned char c = (unsigned char)path[i];

			if (c >= 0x80)
				at += (size_t)snprintf(r->url + at, 4, "%%%02X", c);
			else
				r->url[at++] = (char)c;
		}
		if (len == 0)
			r->url[at++] = '/';
		r->url[at] = '\0';
		if (query && qlen < MED_PATH_BUF)
			snprintf(r->url + at, MED_PATH_BUF + 200, "?%.*s", (int)qlen, query);
	}
	if (!forward_fields(r, rule->header)) {
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
		return;
	}
	err = add_secret(r, rule);
	if (err) {
		const char *why = err == -EIO	   ? "its source cannot be read"
				  : err == -ENOENT ? "crgw.yaml no longer defines it (removed by a reload)"
						   : strerror(-err);

		snprintf(detail, sizeof(detail), "secret %s is unavailable: %s", rule->id, why);
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return;
	}
	if (!med_audit_allow(r, NULL) || !med_audit_injected(r))
		return;
	atomic_fetch_add(&med_stats.secrets_injected, 1);
	med_client_start(r);
}
