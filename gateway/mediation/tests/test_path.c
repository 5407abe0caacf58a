/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The mediation service's path canonicalization: a table of hostile request targets, every one refused
 * before routing, the canonical forms that pass, then routing helpers and query parameters.
 */
#include <errno.h>
#include <string.h>

#include "path.h"
#include "tap.h"

/* Request targets that must be refused, each for the reason in its comment. */
static const char *const hostile[] = {
	"",                                          /* empty */
	"git/git.test/x",                            /* not origin form */
	"http://gw/meta/",                           /* absolute form */
	"*",                                         /* asterisk form */
	"/git/git.test/./org/small.git/info/refs",   /* dot segment */
	"/git/git.test/org/../../meta/",             /* dot-dot */
	"/git/git.test/org/%2e%2e/x/info/refs",      /* encoded dot-dot */
	"/git/git.test/org/%2E%2E/x/info/refs",      /* upper-case escape of the same */
	"/git/git.test/org/.%2e/x",                  /* half encoded */
	"/git/git.test/org/%2e/x",                   /* encoded dot */
	"/secrets/a/api.test/..",                    /* final dot-dot */
	"/secrets/a/api.test/.",                     /* final dot */
	"/..",                                       /* root dot-dot */
	"/./meta/",                                  /* leading dot */
	"//meta/",                                   /* empty first segment */
	"/git//git.test/org/small.git/info/refs",    /* empty segment */
	"/git/git.test//org/small.git/info/refs",    /* empty segment further on */
	"/meta//",                                   /* two final slashes */
	"/git/git.test/org%2fsmall.git/info/refs",   /* encoded slash */
	"/git/git.test/org%2Fsmall.git/info/refs",   /* upper-case encoded slash */
	"/secrets/a/api.test%2f..%2fmeta",           /* encoded slash with dots */
	"/git/git.test/org\\small.git",              /* backslash */
	"/git/git.test/org%5csmall.git",             /* encoded backslash */
	"/git/git.test/org%5Csmall.git",             /* upper-case encoded backslash */
	"/secrets/a/api.test/%5c..%5c",              /* encoded backslashes around dots */
	"/git/git.test/org%00/x",                    /* encoded NUL */
	"/git/git.test/org%252e%252e/x",             /* double-encoded dots */
	"/git/git.test/org/%252f",                   /* double-encoded slash */
	"/meta/%25",                                 /* an encoded percent at all */
	"/git/git.test/org/%",                       /* lone percent */
	"/git/git.test/org/%2",                      /* short escape */
	"/git/git.test/org/%g0",                     /* bad hex */
	"/git/git.test/org/%0g",                     /* bad hex, second digit */
	"/git/git.test/org/%%30",                    /* percent then an escape */
	"/git/git.test/org/%u002e",                  /* IIS-style unicode escape */
	"/git/git.test/org/%c0%ae%c0%ae/x",          /* overlong UTF-8 dots */
	"/git/git.test/org/%3fservice=x",            /* encoded '?' */
	"/git/git.test/org/%23frag",                 /* encoded '#' */
	"/git/git.test/org/x#frag",                  /* fragment */
	"/git/git.test/org/%20x",                    /* encoded space */
	"/git/git.test/org/ x",                      /* raw space */
	"/git/git.test/org/\tx",                     /* raw tab */
	"/git/git.test/org/%09x",                    /* encoded tab */
	"/git/git.test/org/%0d%0aX-Injected:%201",   /* encoded CRLF */
	"/git/git.test/org/\r\nX: 1",                /* raw CRLF */
	"/git/git.test/org/%7f",                     /* encoded DEL */
	"/git/git.test/org/\x7f",                    /* raw DEL */
	"/git/git.test/org/%c0%ae/x",                /* overlong '.' */
	"/git/git.test/org/%e0%80%ae/x",             /* three-byte overlong '.' */
	"/git/git.test/org/%ed%a0%80",               /* a surrogate */
	"/git/git.test/org/%ff",                     /* not UTF-8 at all */
	"/git/git.test/org/%c3",                     /* truncated sequence */
	"/git/git.test/org/\xc0\xae/x",              /* raw overlong '.' */
	"/meta/?x=1#y",                              /* fragment after a query */
	"/git/git.test/org/x?service=a\\b",          /* backslash in the query */
	"/secrets/a/api.test/x?\x01",                /* control byte in the query */
	"/git/git.test/org/x\"y",                    /* a quote, which must be encoded */
	"/git/git.test/org/x<y>",                    /* angle brackets */
	"/git/git.test/org/x{y}|z^",                 /* braces, bar, caret */
	"/git/git.test/org/x`y",                     /* backquote */
	"/git/git.test/org/caf\xc3\xa9",              /* raw UTF-8, not percent-encoded */
	"/meta/?q=<script>",                         /* angle brackets in the query */
};

/* `s` with control bytes and bytes above 0x7e shown as \xNN: one TAP line per result. */
static void printable(const char *s, char *out, size_t size)
{
	size_t n = 0;

	for (; *s && n + 5 < size; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c > 0x7e)
			n += (size_t)snprintf(out + n, size - n, "\\x%02x", c);
		else
			out[n++] = (char)c;
	}
	out[n] = '\0';
}

static void test_hostile(void)
{
	char out[256];
	size_t n, qlen;
	const char *q, *why;

	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		int rc = med_path_canon(hostile[i], strlen(hostile[i]), out, sizeof(out), &n, &q, &qlen, &why);

		char shown[256];

		printable(hostile[i], shown, sizeof(shown));
		tap_result(rc == -1 && why, "hostile %zu refused: \"%s\" (%s)", i, shown, why ? why : "-");
	}
	/* A NUL inside the target, which a C string cannot show. */
	static const char nul[] = "/meta/\0x";
	tap_result(med_path_canon(nul, sizeof(nul) - 1, out, sizeof(out), &n, &q, &qlen, &why) == -1,
		   "a raw NUL is refused (%s)", why ? why : "-");
	/* Too long for the buffer. */
	tap_result(med_path_canon("/meta/abcdefgh", 14, out, 8, &n, &q, &qlen, &why) == -1, "too long: %s",
		   why ? why : "-");
}

static void canon(const char *target, const char *path, const char *query)
{
	char out[256];
	size_t n = 0, qlen = 0;
	const char *q = NULL, *why = NULL;
	int rc = med_path_canon(target, strlen(target), out, sizeof(out), &n, &q, &qlen, &why);
	bool ok = rc == 0 && n == strlen(path) && !memcmp(out, path, n) && out[n] == '\0';

	if (query)
		ok = ok && q && qlen == strlen(query) && !memcmp(q, query, qlen);
	else
		ok = ok && !q;
	tap_result(ok, "canonical \"%s\" -> \"%s\"%s%s (%s)", target, path, query ? " ? " : "", query ? query : "",
		   why ? why : "ok");
}

static void test_canonical(void)
{
	canon("/", "/", NULL);
	canon("/meta/", "/meta/", NULL);
	canon("/meta", "/meta", NULL);
	canon("/git/git.test/org/small.git/info/refs?service=git-upload-pack", "/git/git.test/org/small.git/info/refs",
	      "service=git-upload-pack");
	canon("/git/git.test/org/sm%61ll.git/git-upload-pack", "/git/git.test/org/small.git/git-upload-pack", NULL);
	canon("/secrets/api/api.test/v1/x%2Dy", "/secrets/api/api.test/v1/x-y", NULL);
	canon("/secrets/api/api.test/v1/%C3%A9t%C3%A9", "/secrets/api/api.test/v1/\xc3\xa9t\xc3\xa9", NULL);
	canon("/secrets/api/api.test/a...b/...", "/secrets/api/api.test/a...b/...", NULL);
	canon("/secrets/api/api.test/.well-known/x", "/secrets/api/api.test/.well-known/x", NULL);
	canon("/secrets/api/api.test/x?", "/secrets/api/api.test/x", "");
	canon("/secrets/api/api.test/x?a=%2F&b=..", "/secrets/api/api.test/x", "a=%2F&b=..");
}

static void test_routing(void)
{
	const char *p, *seg;
	size_t len, seglen;

	p = "/git/host/repo";
	len = strlen(p);
	tap_result(med_path_take(&p, &len, "/git") && len == 10 && !memcmp(p, "/host/repo", 10), "take /git");
	p = "/gitx/host";
	len = strlen(p);
	tap_result(!med_path_take(&p, &len, "/git"), "a prefix matches whole segments only (/gitx)");
	p = "/meta";
	len = strlen(p);
	tap_result(med_path_take(&p, &len, "/meta") && len == 0, "take /meta, nothing left");
	p = "/metadata";
	len = strlen(p);
	tap_result(!med_path_take(&p, &len, "/meta"), "/metadata is not /meta");
	p = "/git.test/org/x";
	len = strlen(p);
	tap_result(!med_path_segment(&p, &len, &seg, &seglen) && seglen == 8 && !memcmp(seg, "git.test", 8) &&
			   len == 6 && !memcmp(p, "/org/x", 6),
		   "segment git.test, rest /org/x");
	p = "/last";
	len = strlen(p);
	tap_result(!med_path_segment(&p, &len, &seg, &seglen) && seglen == 4 && len == 0, "last segment");
	p = "/";
	len = 1;
	tap_result(med_path_segment(&p, &len, &seg, &seglen) == -1, "no segment in /");
	len = 0;
	tap_result(med_path_segment(&p, &len, &seg, &seglen) == -1, "no segment in nothing");
}

static void test_query(void)
{
	char v[32];
	size_t n = 0;
	const char *q;

	q = "service=git-upload-pack";
	tap_result(!med_query_param(q, strlen(q), "service", v, sizeof(v), &n) && !strcmp(v, "git-upload-pack") &&
			   n == 15,
		   "service=git-upload-pack");
	q = "a=1&service=git%2Dreceive%2Dpack&b";
	tap_result(!med_query_param(q, strlen(q), "service", v, sizeof(v), &n) && !strcmp(v, "git-receive-pack"),
		   "decoded once, among others");
	q = "services=x";
	tap_result(med_query_param(q, strlen(q), "service", v, sizeof(v), &n) == -ENOENT, "a longer name is not it");
	tap_result(med_query_param(NULL, 0, "service", v, sizeof(v), &n) == -ENOENT, "no query");
	q = "service=a&service=b";
	tap_result(med_query_param(q, strlen(q), "service", v, sizeof(v), &n) == -EINVAL, "given twice: refused");
	q = "service";
	tap_result(med_query_param(q, strlen(q), "service", v, sizeof(v), &n) == -EINVAL, "no value: refused");
	q = "service=a%00b";
	tap_result(med_query_param(q, strlen(q), "service", v, sizeof(v), &n) == -EINVAL, "encoded NUL: refused");
	q = "service=a%0";
	tap_result(med_query_param(q, strlen(q), "service", v, sizeof(v), &n) == -EINVAL, "short escape: refused");
	q = "service=0123456789012345678901234567890123456789";
	tap_result(med_query_param(q, strlen(q), "service", v, sizeof(v), &n) == -E2BIG, "too long");
	q = "seconds=4";
	tap_result(!med_query_param(q, strlen(q), "seconds", v, sizeof(v), &n) && !strcmp(v, "4"), "seconds=4");
}

int main(void)
{
	test_hostile();
	test_canonical();
	test_routing();
	test_query();
	return tap_done();
}
