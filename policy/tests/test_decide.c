/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Decision cases from data files: each file is a policy, a line "=== expect", then one expectation per
 * line: "HOST[:PORT] ACTION REASON RULE" (REASON "-" when allowed). "@blocked CIDR" adds a gateway
 * blocked range; "resolved ADDR[:PORT] ..." checks an address an allowed name resolved to. "wire" before
 * either builds the address from its bytes, as the gateway does from a DNS answer or a socket address,
 * without crgw_host_parse (so "wire resolved [::ffff:127.0.0.1]" is an IPv6 host, not IPv4).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/policy.h"
#include "tap.h"

static struct crgw_policy *compile_and_load(const char *name, const char *yaml, size_t len)
{
	struct crgw_compile_opts opts = { .source_path = name, .allow_default_allow = true };
	struct crgw_compiled *c = NULL;
	struct crgw_policy *p = NULL;
	char err[256];

	if (crgw_policy_compile(yaml, len, &opts, &c) != 0)
		return NULL;
	if (c->nerrors) {
		for (unsigned i = 0; i < c->ndiags; i++)
			printf("# %s: %u:%u %s: %s\n", name, c->diags[i].line, c->diags[i].column, c->diags[i].path,
			       c->diags[i].message);
	} else if (crgw_policy_load(c->json, c->json_len, &p, err, sizeof(err)) != 0) {
		printf("# %s: load failed: %s\n", name, err);
	}
	crgw_compiled_free(c);
	return p;
}

/* An address from its bytes alone: what the gateway hands the policy library for an answer or a socket. */
static int wire_host(const char *text, struct crgw_host *host, uint16_t *port)
{
	char buf[64];
	const char *close = strchr(text, ']');
	size_t len = close ? (size_t)(close - text - 1) : strcspn(text, ":");

	*port = 443;
	if (len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, text + (close ? 1 : 0), len);
	buf[len] = '\0';
	if (close && close[1] == ':')
		*port = (uint16_t)strtoul(close + 2, NULL, 10);
	else if (!close && text[len] == ':')
		*port = (uint16_t)strtoul(text + len + 1, NULL, 10);
	memset(host, 0, sizeof(*host));
	if (inet_pton(AF_INET6, buf, host->addr) == 1) {
		host->kind = CRGW_HOST_IPV6;
	} else if (inet_pton(AF_INET, buf, host->addr) == 1) {
		host->kind = CRGW_HOST_IPV4;
	} else {
		return -EINVAL;
	}
	snprintf(host->text, sizeof(host->text), "%s", buf);
	host->len = (uint8_t)strlen(host->text);
	return 0;
}

static void run_line(const char *file, unsigned lineno, char *line, struct crgw_policy *p,
		     struct crgw_blocklist *blocked)
{
	char *save = NULL, *tok[6];
	unsigned n = 0, skip = 0;

	for (char *t = strtok_r(line, " \t", &save); t && n < 6; t = strtok_r(NULL, " \t", &save))
		tok[n++] = t;
	if (n == 2 && strcmp(tok[0], "@blocked") == 0) {
		if (crgw_blocklist_add(blocked, tok[1], NULL) != 0)
			tap_result(false, "%s:%u: bad @blocked range", file, lineno);
		return;
	}
	bool wire = n > 0 && strcmp(tok[0], "wire") == 0;

	skip += wire;
	bool resolved = n > skip && strcmp(tok[skip], "resolved") == 0;

	skip += resolved;
	char **f = tok + skip;

	if (n != skip + 4u) {
		tap_result(false, "%s:%u: malformed expectation", file, lineno);
		return;
	}
	struct crgw_host host;
	struct crgw_decision d;
	uint16_t port;
	const char *why = "not an IPv4 or IPv6 address";

	if (wire ? wire_host(f[0], &host, &port) != 0
		 : crgw_hostport_parse(f[0], strlen(f[0]), 443, &host, &port, &why) != 0) {
		tap_result(false, "%s:%u: %s: %s", file, lineno, f[0], why);
		return;
	}
	if (resolved)
		crgw_policy_check_address(p, blocked, &host, port, &d);
	else
		crgw_policy_decide(p, blocked, &host, port, &d);

	const char *action = d.allow ? "allow" : "deny";
	const char *reason = crgw_reason_str(d.reason) ? crgw_reason_str(d.reason) : "-";
	const char *rule = d.rule ? d.rule : "-";
	bool ok = strcmp(action, f[1]) == 0 && strcmp(reason, f[2]) == 0 && strcmp(rule, f[3]) == 0;

	tap_result(ok, "%s:%u: %s%s%s -> %s %s %s%s%s", file, lineno, wire ? "wire " : "",
		   resolved ? "resolved " : "", f[0], action, reason, rule, ok ? "" : "; expected ", ok ? "" : f[1]);
	if (!ok)
		printf("#   expected: %s %s %s\n", f[1], f[2], f[3]);
}

static void run_file(const char *dir, const char *name)
{
	char path[4096];
	size_t len;
	char *text;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	text = tap_read_file(path, &len);
	if (!text) {
		tap_result(false, "%s: cannot read", name);
		return;
	}
	char *sep = strstr(text, "\n=== expect\n");

	if (!sep) {
		tap_result(false, "%s: no '=== expect' line", name);
		free(text);
		return;
	}
	*sep = '\0';
	unsigned lineno = 2;

	for (const char *c = text; *c; c++)
		lineno += *c == '\n';
	struct crgw_policy *p = compile_and_load(name, text, (size_t)(sep - text));
	struct crgw_blocklist *blocked = crgw_blocklist_new();

	if (!p || !blocked) {
		tap_result(false, "%s: policy did not compile and load", name);
	} else {
		char *line = sep + strlen("\n=== expect\n");

		while (*line) {
			char *end = strchr(line, '\n');

			if (end)
				*end = '\0';
			lineno++;
			if (line[0] != '#' && line[strspn(line, " \t")] != '\0')
				run_line(name, lineno, line, p, blocked);
			if (!end)
				break;
			line = end + 1;
		}
	}
	crgw_blocklist_free(blocked);
	crgw_policy_unref(p);
	free(text);
}

int main(int argc, char **argv)
{
	char **names;
	size_t n;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	n = tap_list_dir(argv[1], ".case", &names);
	for (size_t i = 0; i < n; i++) {
		run_file(argv[1], names[i]);
		free(names[i]);
	}
	free(names);
	return tap_done();
}
