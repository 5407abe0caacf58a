/* SPDX-License-Identifier: Apache-2.0 */
/*
 * /meta/: what a sandbox may know about itself, as JSON: its id, name and run, its policy's hash, the
 * hosts it may reach, its git hosts, the ids of its secrets (never a value: the gateway itself holds
 * them, and only as ids are they the sandbox's business), and the gateway's endpoints. Also the check,
 * at registration, that the operator holds every secret a policy names.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "sandbox.h"
#include "vault.h"

int crgw_mediation_check_policy(const struct crgw_policy *policy, char *err, size_t errlen)
{
	size_t n = crgw_policy_secret_count(policy);

	for (size_t i = 0; i < n; i++) {
		const struct crgw_secret_rule *s = crgw_policy_secret_at(policy, i);

		if (!crgw_vault_has(s->id, strlen(s->id))) {
			snprintf(err, errlen,
				 "the policy names secret '%s', which the gateway's operator has not configured (secrets: in crgw.yaml)",
				 s->id);
			return -ENOENT;
		}
	}
	return 0;
}

static json_t *string_list(size_t n, const char *(*at)(const struct crgw_policy *, size_t), const struct crgw_policy *p)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, json_string(at(p, i)));
	return a;
}

void med_meta(struct med_request *r, const char *path, size_t len)
{
	struct crgw_sandbox *sb = med_sandbox(r);
	const struct crgw_policy *p = sb->policy;
	size_t mlen;
	const char *method = med_method(r, &mlen);
	char gw[INET_ADDRSTRLEN], base[64];
	json_t *doc, *secrets, *endpoints;
	char *text;

	if (len > 1 || (len == 1 && path[0] != '/')) {
		med_refuse(r, 404, "Not Found", CRGW_REASON_REQUEST_INVALID, "the only document is /meta/");
		return;
	}
	if (!(mlen == 3 && !memcmp(method, "GET", 3)) && !(mlen == 4 && !memcmp(method, "HEAD", 4))) {
		med_refuse(r, 405, "Method Not Allowed", CRGW_REASON_REQUEST_INVALID, "/meta/ answers GET only");
		return;
	}
	inet_ntop(AF_INET, &sb->gw, gw, sizeof(gw));
	snprintf(base, sizeof(base), "http://%s:%u", gw, CRGW_MEDIATION_PORT);
	secrets = json_array();
	for (size_t i = 0; secrets && i < crgw_policy_secret_count(p); i++) {
		const struct crgw_secret_rule *s = crgw_policy_secret_at(p, i);
		json_t *hosts = json_array();

		for (size_t j = 0; hosts && j < s->nhosts; j++)
			json_array_append_new(hosts, json_string(s->allowed_hosts[j]));
		json_array_append_new(secrets, json_pack("{s:s, s:o, s:s}", "id", s->id, "allowed_hosts",
							 hosts ? hosts : json_array(), "header", s->header));
	}
	endpoints = json_object();
	if (endpoints) {
		static const char *const names[] = { "git", "secrets", "meta" };
		char buf[128];

		json_object_set_new(endpoints, "dns", json_string(gw));
		snprintf(buf, sizeof(buf), "http://%s:3128", gw);
		json_object_set_new(endpoints, "proxy", json_string(buf));
		json_object_set_new(endpoints, "mediation", json_string(base));
		for (size_t i = 0; i < 3; i++) {
			snprintf(buf, sizeof(buf), "%s/%s/", base, names[i]);
			json_object_set_new(endpoints, names[i], json_string(buf));
		}
	}
	doc = json_pack("{s:s, s:s, s:s, s:s, s:o, s:{s:o, s:b, s:b}, s:o, s:o}", "sandbox_id", sb->id, "name",
			sb->name, "run_id", sb->run_id, "policy_hash", sb->policy_hash, "allowed_hosts",
			string_list(crgw_policy_allow_host_count(p), crgw_policy_allow_host, p), "git", "hosts",
			string_list(crgw_policy_git_host_count(p), crgw_policy_git_host, p), "push",
			crgw_policy_git_push(p), "force_push", crgw_policy_git_force_push(p), "secrets",
			secrets ? secrets : json_array(), "endpoints", endpoints ? endpoints : json_object());
	text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENSURE_ASCII) : NULL;
	json_decref(doc);
	if (!text) {
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_REQUEST_INVALID, "out of memory");
		return;
	}
	if (!med_audit_allow(r, NULL)) {
		free(text);
		return;
	}
	{
		size_t n = strlen(text);
		char *body = malloc(n + 2);

		if (body) {
			memcpy(body, text, n);
			body[n] = '\n';
			med_answer(r, 200, "application/json", body, n + 1);
			free(body);
		} else {
			med_refuse(r, 503, "Service Unavailable", CRGW_REASON_REQUEST_INVALID, "out of memory");
		}
	}
	free(text);
}
