/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Upstream WWW-Authenticate challenges: the forms registries send, each checked through its canonical print;
 * a table of hostile headers, each refused with its reason; the bounds; then Bearer realm checks.
 */
#include <errno.h>
#include <string.h>

#include "tap.h"
#include "wwwauth.h"

/* A header and what it parses to, printed canonically (see med_wwwauth_print). */
static const struct {
	const char *hdr, *canon;
} good[] = {
	{ "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
	  "scope=\"repository:library/alpine:pull\"",
	  "Bearer realm=\"https://auth.docker.io/token\", service=registry.docker.io, "
	  "scope=\"repository:library/alpine:pull\"" },
	{ "Bearer realm=\"https://ghcr.io/token\",service=\"ghcr.io\",scope=\"repository:org/img:pull\"",
	  "Bearer realm=\"https://ghcr.io/token\", service=ghcr.io, scope=\"repository:org/img:pull\"" },
	/* Several scopes, space-separated, one with a comma (quoted, so not a list separator). */
	{ "Bearer realm=\"https://a.test/t\",scope=\"repository:a/b:pull repository:c/d:pull,push\"",
	  "Bearer realm=\"https://a.test/t\", scope=\"repository:a/b:pull repository:c/d:pull,push\"" },
	{ "Basic realm=\"x\", charset=\"UTF-8\"", "Basic realm=x, charset=UTF-8" },
	{ "Basic realm=\"Registry Realm\"", "Basic realm=\"Registry Realm\"" },
	/* Two challenges in one header. */
	{ "Basic realm=\"a\", Bearer realm=\"https://b.test/t\",service=b",
	  "Basic realm=a, Bearer realm=\"https://b.test/t\", service=b" },
	{ "Negotiate, Basic realm=x", "Negotiate, Basic realm=x" },
	{ "Negotiate abc==", "Negotiate abc==" },
	{ "Negotiate YIIB+/9_-.~==, Basic realm=r", "Negotiate YIIB+/9_-.~==, Basic realm=r" },
	{ "Negotiate", "Negotiate" },
	{ "Bearer realm", "Bearer realm" }, /* by the grammar, a token68 "realm": find() then bearer() refuse it */
	{ "Bearer realm=\"\"", "Bearer realm=\"\"" },
	{ "Bearer realm=\"a\\\"b\\\\c\"", "Bearer realm=\"a\\\"b\\\\c\"" },
	{ "Bearer realm=\"\\a\\b\"", "Bearer realm=ab" }, /* an escape of a plain character is that character */
	{ "bEARER REALM=\"x\", Service=y", "bEARER REALM=x, Service=y" },
	{ "Bearer realm = \"x\" ,  service\t=\ty", "Bearer realm=x, service=y" }, /* BWS and OWS */
	{ "  Bearer realm=x  ", "Bearer realm=x" },
	{ "Bearer   realm=x", "Bearer realm=x" },
	{ "Bearer realm=x,Basic", "Bearer realm=x, Basic" },
	{ "Bearer realm=x,\tBasic realm=y", "Bearer realm=x, Basic realm=y" },
	{ "Bearer error=\"invalid_token\", error_description=\"expired, retry\"",
	  "Bearer error=invalid_token, error_description=\"expired, retry\"" },
	{ "A a=1, B b=2, C c=3", "A a=1, B b=2, C c=3" },
};

/* Headers that must be refused, each with its error and, in its comment, why. */
static const struct {
	const char *hdr;
	size_t len; /* 0: strlen */
	int err;
} hostile[] = {
	{ "", 0, -EBADMSG },                                         /* empty */
	{ "   ", 0, -EBADMSG },                                      /* only whitespace */
	{ "Bearer realm=\"https://a.test/t", 0, -EBADMSG },          /* unterminated quote */
	{ "Bearer realm=\"x\\", 0, -EBADMSG },                       /* backslash at the end */
	{ "Bearer realm=\"a\0b\"", 17, -EBADMSG },                   /* NUL in a value */
	{ "Bearer\0 realm=x", 15, -EBADMSG },                        /* NUL after the scheme */
	{ "Bearer realm=\"a\r\nX-Injected: 1\"", 0, -EBADMSG },      /* CRLF */
	{ "Bearer realm=\"a\x01\"", 0, -EBADMSG },                   /* control byte in a quote */
	{ "Bearer realm=x\x7f", 0, -EBADMSG },                       /* DEL */
	{ "Bearer realm=\"caf\xc3\xa9\"", 0, -EBADMSG },             /* non-ASCII */
	{ "Bea(rer realm=x", 0, -EBADMSG },                          /* bad token char in a scheme */
	{ "Bearer re@lm=x", 0, -EBADMSG },                           /* bad token char in a name */
	{ "Bearer realm=a/b", 0, -EBADMSG },                         /* bad token char in an unquoted value */
	{ "Bearer =x", 0, -EBADMSG },                                /* empty param name */
	{ "Bearer realm=x, =y", 0, -EBADMSG },                       /* empty param name after a comma */
	{ "Bearer realm=\"a\", realm=\"b\"", 0, -EBADMSG },          /* duplicate realm */
	{ "Bearer realm=a, REALM=b", 0, -EBADMSG },                  /* duplicate, other case */
	{ "Bearer realm=x, service=", 0, -EBADMSG },                 /* missing value at the end */
	{ "Bearer service=, realm=x", 0, -EBADMSG },                 /* missing value before a comma */
	{ "Bearer realm=\"x\" junk", 0, -EBADMSG },                  /* trailing garbage after a value */
	{ "Bearer realm=\"x\"\"y\"", 0, -EBADMSG },                  /* two quoted strings */
	{ "Bearer realm=x,", 0, -EBADMSG },                          /* trailing comma */
	{ "Bearer realm=x, , Basic", 0, -EBADMSG },                  /* empty list element */
	{ ", Bearer realm=x", 0, -EBADMSG },                         /* leading comma */
	{ "Bearer realm==x", 0, -EBADMSG },                          /* two '=' */
	{ "Bearer realm x=y", 0, -EBADMSG },                         /* a name followed by a space, not '=' */
	{ "realm=x", 0, -EBADMSG },                                  /* a param with no scheme */
	{ "Negotiate abc==, d=e", 0, -EBADMSG },                     /* a param after a token68 */
	{ "Negotiate abc== def", 0, -EBADMSG },                      /* garbage after a token68 */
	{ "Negotiate a=b=", 0, -EBADMSG },                           /* '=' inside a token68 */
	{ "Bearer\trealm=x", 0, -EBADMSG },                          /* a tab, not a space, after the scheme */
	{ "Bearer,realm=x", 0, -EBADMSG },                           /* a comma where the space should be */
	{ "\"Bearer\" realm=x", 0, -EBADMSG },                       /* a quoted scheme */
	{ "Bearer realm=x;service=y", 0, -EBADMSG },                 /* ';' is no separator here */
};

static void test_good(void)
{
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct med_wwwauth w, again;
		char out[1024], out2[1024];
		const char *why = "unset";
		size_t n = 0;
		int err = med_wwwauth_parse(good[i].hdr, strlen(good[i].hdr), &w, &why);
		bool ok = !err && !why && !med_wwwauth_print(&w, out, sizeof(out), &n) && !strcmp(out, good[i].canon) &&
			  n == strlen(out);

		/* The canonical print parses to the same challenges. */
		ok = ok && !med_wwwauth_parse(out, n, &again, NULL) &&
		     !med_wwwauth_print(&again, out2, sizeof(out2), NULL) && !strcmp(out, out2);
		tap_result(ok, "good %zu: %s", i, good[i].hdr);
		if (!ok)
			printf("# err %d why %s got [%s]\n", err, why ? why : "-", err ? "" : out);
		med_wwwauth_free(&w);
		med_wwwauth_free(&again);
		med_wwwauth_free(&w);
	}
}

static void test_lookup(void)
{
	static const char h[] = "Basic realm=\"r\", Bearer Realm=\"https://a.test/t\", SERVICE=\"s\\\"x\"";
	struct med_wwwauth w;
	const struct med_wwwauth_challenge *c;

	tap_result(!med_wwwauth_parse(h, strlen(h), &w, NULL) && w.n == 2, "two challenges");
	c = med_wwwauth_find(&w, "bearer");
	tap_result(c == &w.ch[1] && c->n_params == 2 && !c->token68, "find Bearer in any case");
	tap_result(c && !strcmp(med_wwwauth_param(c, "realm"), "https://a.test/t"), "realm in any case");
	tap_result(c && !strcmp(med_wwwauth_param(c, "service"), "s\"x") && c->params[1].value_len == 3,
		   "escaped quote unescaped");
	tap_result(c && !med_wwwauth_param(c, "scope"), "absent param");
	tap_result(!med_wwwauth_find(&w, "Negotiate"), "absent scheme");
	tap_result(!med_wwwauth_find(&w, "Bear"), "a prefix of a scheme is not it");
	med_wwwauth_free(&w);
	tap_result(w.n == 0, "freed and emptied");

	static const char t[] = "Negotiate abc==";
	tap_result(!med_wwwauth_parse(t, strlen(t), &w, NULL) && w.ch[0].token68 &&
			   !strcmp(w.ch[0].token68, "abc==") && w.ch[0].n_params == 0,
		   "token68 kept whole");
	med_wwwauth_free(&w);

	struct med_wwwauth z;

	memset(&z, 0, sizeof(z));
	med_wwwauth_free(&z);
	med_wwwauth_free(&z);
	med_wwwauth_free(NULL);
	tap_result(z.n == 0, "free on a zeroed struct, twice, and on NULL");
}

static void test_hostile(void)
{
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		struct med_wwwauth w;
		const char *why = NULL;
		size_t len = hostile[i].len ? hostile[i].len : strlen(hostile[i].hdr);
		int err = med_wwwauth_parse(hostile[i].hdr, len, &w, &why);

		tap_result(err == hostile[i].err && why && *why && w.n == 0, "hostile %zu refused: %s", i,
			   why ? why : "(no reason)");
		med_wwwauth_free(&w);
	}
}

/* Builds a header into a malloc'd buffer from a prefix, `n` copies of a piece, and a suffix. */
static char *build(const char *pre, const char *piece, size_t n, const char *post, size_t *len)
{
	size_t a = strlen(pre), b = strlen(piece), c = strlen(post);
	char *s = malloc(a + b * n + c + 1);

	if (!s)
		abort();
	memcpy(s, pre, a);
	for (size_t i = 0; i < n; i++)
		memcpy(s + a + i * b, piece, b);
	memcpy(s + a + b * n, post, c + 1);
	*len = a + b * n + c;
	return s;
}

static void expect(const char *what, const char *h, size_t len, int want)
{
	struct med_wwwauth w;
	const char *why = NULL;
	int err = med_wwwauth_parse(h, len, &w, &why);

	tap_result(err == want && (err == 0) == (why == NULL), "%s: %d (%s)", what, err, why ? why : "accepted");
	med_wwwauth_free(&w);
}

static void test_bounds(void)
{
	char *s, piece[16];
	size_t len;

	s = build("Bearer realm=\"", "a", 4096, "\"", &len);
	expect("a 4096-byte quoted value", s, len, 0);
	free(s);
	s = build("Bearer realm=\"", "a", 4097, "\"", &len);
	expect("a 4097-byte quoted value", s, len, -E2BIG);
	free(s);
	s = build("Bearer realm=\"", "\\a", 4097, "\"", &len);
	expect("4097 bytes after unescaping", s, len, -E2BIG);
	free(s);
	s = build("Bearer realm=", "a", 4097, "", &len);
	expect("a 4097-byte token value", s, len, -E2BIG);
	free(s);
	s = build("Negotiate ", "a", 4097, "", &len);
	expect("a 4097-byte token68", s, len, -E2BIG);
	free(s);
	s = build("A", ", A", 15, "", &len);
	expect("16 challenges", s, len, 0);
	free(s);
	s = build("A", ", A", 16, "", &len);
	expect("17 challenges", s, len, -E2BIG);
	free(s);

	/* 32 and 33 distinct params. */
	char params[33 * 8 + 16];
	size_t k = 0;

	k += (size_t)snprintf(params + k, sizeof(params) - k, "Bearer ");
	for (int i = 0; i < 33; i++) {
		snprintf(piece, sizeof(piece), "%sp%d=v", i ? "," : "", i);
		k += (size_t)snprintf(params + k, sizeof(params) - k, "%s", piece);
		if (i == 31)
			expect("32 params", params, k, 0);
	}
	expect("33 params", params, k, -E2BIG);

	s = build("Basic realm=\"", "a", 4000, "\"", &len);
	s = realloc(s, 16384 + 1);
	memset(s, ' ', 16384);
	memcpy(s, "Basic realm=x", 13);
	expect("a 16 KiB header", s, 16384, 0);
	expect("a header of 16 KiB and one byte", s, 16385, -E2BIG);
	free(s);
}

static void test_bearer(void)
{
	static const struct {
		const char *hdr, *host;
		unsigned port;
	} ok[] = {
		{ "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\"", "auth.docker.io",
		  443 },
		{ "Bearer realm=\"https://Auth.Example:8443/token?x=1\"", "auth.example", 8443 },
		{ "Bearer realm=\"https://[2001:db8::1]/token\"", "2001:db8::1", 443 },
		{ "Bearer realm=\"https://[::1]:65535\"", "::1", 65535 },
		{ "Bearer realm=\"HTTPS://192.0.2.1:1/t\"", "192.0.2.1", 1 },
		{ "Basic realm=x, bearer realm=\"https://a.test\"", "a.test", 443 },
	};
	static const struct {
		const char *hdr, *what;
	} bad[] = {
		{ "Bearer realm=\"http://auth.example/token\"", "http:// refused" },
		{ "Bearer realm=\"https://user:pw@auth.example/token\"", "userinfo refused" },
		{ "Bearer realm=\"https://@auth.example/token\"", "empty userinfo refused" },
		{ "Bearer realm=\"https:///token\"", "no host refused" },
		{ "Bearer realm=\"https://\"", "nothing after the scheme refused" },
		{ "Bearer realm=\"https://:443/token\"", "port without host refused" },
		{ "Bearer realm=\"https://a.test:0/t\"", "port 0 refused" },
		{ "Bearer realm=\"https://a.test:65536/t\"", "port 65536 refused" },
		{ "Bearer realm=\"https://a.test:99999999999999999999/t\"", "huge port refused" },
		{ "Bearer realm=\"https://a.test:/t\"", "empty port refused" },
		{ "Bearer realm=\"https://a.test:44x/t\"", "non-numeric port refused" },
		{ "Bearer realm=\"https://a.test/t#frag\"", "fragment refused" },
		{ "Bearer realm=\"https://a.test#frag\"", "fragment in the authority refused" },
		{ "Bearer realm=\"https://[2001:db8::1/t\"", "unclosed IPv6 literal refused" },
		{ "Bearer realm=\"https://[]/t\"", "empty IPv6 literal refused" },
		{ "Bearer realm=\"https://[not:an:addr::g]/t\"", "bad IPv6 literal refused" },
		{ "Bearer realm=\"https://[fe80::1%25eth0]/t\"", "IPv6 zone id refused" },
		{ "Bearer realm=\"https://[::1]x/t\"", "garbage after an IPv6 literal refused" },
		{ "Bearer realm=\"https://a%2etest/t\"", "percent-encoded host refused" },
		{ "Bearer realm=\"https://a.test\\\\@b.test/t\"", "backslash refused" },
		{ "Bearer realm=\"https://a.test /t\"", "space refused" },
		{ "Bearer realm=\"//a.test/t\"", "relative realm refused" },
		{ "Bearer service=x", "no realm refused" },
		{ "Bearer abc==", "token68 Bearer refused" },
		{ "Bearer", "params-less Bearer refused" },
		{ "Basic realm=\"https://a.test/t\"", "Basic is not Bearer" },
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct med_wwwauth w;
		struct med_wwwauth_bearer b;
		const char *why = "unset";
		int err = med_wwwauth_parse(ok[i].hdr, strlen(ok[i].hdr), &w, NULL);

		err = err ? err : med_wwwauth_bearer(med_wwwauth_find(&w, "Bearer"), &b, &why);
		tap_result(!err && !why && !strcmp(b.host, ok[i].host) && b.port == ok[i].port && b.realm,
			   "realm %zu accepted: %s port %u", i, err ? "-" : b.host, err ? 0 : b.port);
		med_wwwauth_free(&w);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct med_wwwauth w;
		struct med_wwwauth_bearer b;
		const char *why = NULL;
		int err = med_wwwauth_parse(bad[i].hdr, strlen(bad[i].hdr), &w, NULL);
		const struct med_wwwauth_challenge *c = err ? NULL : (w.n ? &w.ch[0] : NULL);

		err = err ? err : med_wwwauth_bearer(c, &b, &why);
		tap_result(err == -EBADMSG && why && !b.realm && !b.host[0], "%s (%s)", bad[i].what,
			   why ? why : "-");
		med_wwwauth_free(&w);
	}

	struct med_wwwauth w;
	struct med_wwwauth_bearer b;
	static const char h[] =
		"Bearer realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:org/img:pull\"";

	tap_result(!med_wwwauth_parse(h, strlen(h), &w, NULL) && !med_wwwauth_bearer(&w.ch[0], &b, NULL) &&
			   !strcmp(b.service, "registry.example") && !strcmp(b.scope, "repository:org/img:pull") &&
			   !strcmp(b.realm, "https://auth.example/token"),
		   "service and scope returned");
	med_wwwauth_free(&w);
	tap_result(med_wwwauth_bearer(NULL, &b, NULL) == -EBADMSG, "no challenge");
}

int main(void)
{
	test_good();
	test_lookup();
	test_hostile();
	test_bounds();
	test_bearer();
	return tap_done();
}
