/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a request_invalid event names as dst_host when the client's target did not parse: the destination
 * part of what the client wrote, escaped and bounded, never a path, a query or user information.
 */
#include <stdlib.h>
#include <string.h>

#include "proxy_internal.h"
#include "tap.h"

static void asked(const char *in, const char *want, const char *what)
{
	struct tunnel *t = calloc(1, sizeof(*t));

	if (!t)
		exit(1);
	proxy_note_asked(t, in, strlen(in));
	tap_result(strcmp(t->asked, want) == 0, "%s: \"%s\"", what, t->asked);
	free(t);
}

static void request_line(const char *head, const char *want, const char *what)
{
	struct tunnel *t = calloc(1, sizeof(*t));

	if (!t)
		exit(1);
	t->head = strdup(head);
	t->head_len = strlen(head);
	proxy_note_request_line(t);
	tap_result(strcmp(t->asked, want) == 0, "%s: \"%s\"", what, t->asked);
	free(t->head);
	free(t);
}

int main(void)
{
	char big[600];

	asked("0177.0.0.1:443", "0177.0.0.1:443", "a CONNECT target is kept whole");
	asked("no port here", "no\\x20port\\x20here", "spaces are escaped");
	asked("user:secret@evil.test:443", "evil.test:443", "user information never reaches the log");
	asked("http://user:secret@evil.test/x", "evil.test", "nor from a URL");
	asked("http://0x7f000001/path?token=abc", "0x7f000001", "a URL gives its authority, not its path or query");
	asked("https://x.test/a", "x.test", "any scheme");
	asked("ftp://a.test?q", "a.test", "a query right after the host is cut");
	asked("http://a.test#frag", "a.test", "and a fragment");
	asked("/just/a/path?token=abc", "", "a path names no destination");
	asked("http://", "", "an empty authority names none either");
	asked("a@b@c.test", "c.test", "everything up to the last '@' goes");
	asked("x\xff\xfe.test", "x\\xff\\xfe.test", "bytes that are not UTF-8 are escaped");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	struct tunnel *t = calloc(1, sizeof(*t));

	if (!t)
		return 1;
	proxy_note_asked(t, big, strlen(big));
	tap_result(strlen(t->asked) == sizeof(t->asked) - 1 && !strcmp(t->asked + strlen(t->asked) - 3, "..."),
		   "a long target is cut to the field (%zu bytes) and ends in ...", strlen(t->asked));
	free(t);

	request_line("GET http://0x7f000001/secret?t=1 HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n", "0x7f000001",
		     "a malformed head names its URL's authority");
	request_line("CONNECT host.test:443 HTTP/1.1\r\nBad Header\r\n\r\n", "host.test:443", "and its CONNECT target");
	request_line("GET /path HTTP/1.1\r\nHost: a.test\r\n\tfold\r\n\r\n", "",
		     "an origin-form target names nothing (a malformed head's Host is not trusted)");
	request_line("CONNECT no port here HTTP/1.1\r\nHost: x\r\n\r\n", "no\\x20port\\x20here",
		     "a target with spaces is taken whole, from the method to the version");
	request_line("GET http://a.test/", "", "without a complete request line, nothing");
	request_line("GET http://a.test/\r\n\r\n", "", "a line without a version, nothing");
	request_line("GARBAGE\r\n\r\n", "", "a line without a target, nothing");
	return tap_done();
}
