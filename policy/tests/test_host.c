/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Host normalization cases from a data file, one per line: INPUT<TAB>EXPECTED, where EXPECTED is
 * "name TEXT", "ipv4 TEXT", "ipv6 TEXT" or "error". INPUT may use \xHH escapes; host:port inputs are
 * written with a trailing "@PORT" expectation: "INPUT<TAB>ipv4 TEXT @PORT" runs crgw_hostport_parse, and
 * "INPUT<TAB>error @host" or "error @port" expects crgw_hostport_parse to refuse the input, blaming the
 * host (-EINVAL) or the port (-ERANGE): crgw-ctl policy explain tells the two apart.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/policy.h"
#include "tap.h"

static size_t unescape(const char *in, char *out, size_t cap)
{
	size_t n = 0;

	for (size_t i = 0; in[i] && n < cap; i++) {
		unsigned v;

		if (in[i] == '\\' && in[i + 1] == 'x' && sscanf(in + i + 2, "%2x", &v) == 1) {
			out[n++] = (char)v;
			i += 3;
		} else {
			out[n++] = in[i];
		}
	}
	return n;
}

static const char *kind_name(enum crgw_host_kind k)
{
	return k == CRGW_HOST_NAME ? "name" : k == CRGW_HOST_IPV4 ? "ipv4" : "ipv6";
}

int main(int argc, char **argv)
{
	size_t len;
	char *text = argc == 2 ? tap_read_file(argv[1], &len) : NULL;
	unsigned lineno = 0;

	if (!text) {
		fprintf(stderr, "usage: %s HOSTS-FILE\n", argv[0]);
		return 2;
	}
	for (char *line = text; line && *line;) {
		char *end = strchr(line, '\n');
		char *tab, input[2048], got[512];
		const char *why = NULL;
		struct crgw_host h;
		uint16_t port = 0;
		unsigned want_port = 0;
		int rc;

		if (end)
			*end = '\0';
		lineno++;
		tab = strchr(line, '\t');
		if (line[0] == '#' || line[0] == '\0') {
			line = end ? end + 1 : NULL;
			continue;
		}
		if (!tab) {
			tap_result(false, "line %u: no tab", lineno);
			line = end ? end + 1 : NULL;
			continue;
		}
		*tab = '\0';
		size_t n = unescape(line, input, sizeof(input));
		const char *expected = tab + 1;
		const char *at = strstr(expected, " @");

		if (at) {
			want_port = (unsigned)strtoul(at + 2, NULL, 10);
			rc = crgw_hostport_parse(input, n, 443, &h, &port, &why);
		} else {
			rc = crgw_host_parse(input, n, &h, &why);
		}
		if (rc)
			snprintf(got, sizeof(got), "error%s", !at ? "" : rc == -ERANGE ? " @port" : " @host");
		else if (at)
			snprintf(got, sizeof(got), "%s %s @%u", kind_name(h.kind), h.text, port);
		else
			snprintf(got, sizeof(got), "%s %s", kind_name(h.kind), h.text);
		bool ok = strcmp(got, expected) == 0 && (rc || strlen(h.text) == h.len);

		tap_result(ok, "line %u: %s -> %s%s%s", lineno, line, got, rc && why ? ": " : "", rc && why ? why : "");
		if (!ok)
			printf("#   expected: %s\n", expected);
		(void)want_port;
		line = end ? end + 1 : NULL;
	}
	free(text);
	return tap_done();
}
