/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Upstream `WWW-Authenticate` challenges, parsed strictly. The header comes from an upstream the gateway does
 * not trust, and the registry client acts on it (it asks `realm` for a token), so anything that two readers
 * could take two ways is refused rather than guessed at: duplicate params, empty list elements, bytes
 * outside ASCII, a realm that is not plainly an https URL.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tchar.h"
#include "wwwauth.h"

/* RFC 9110 token68, before its trailing '='s. */
static bool is_t68char(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("-._~+/", c);
}

static bool is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

struct cur {
	const char *p;
	size_t n, i;
	const char *why;
};

static void skip_ows(struct cur *c)
{
	while (c->i < c->n && is_ows((unsigned char)c->p[c->i]))
		c->i++;
}

static size_t token_len(const struct cur *c, size_t at)
{
	size_t j = at;

	while (j < c->n && med_is_tchar((unsigned char)c->p[j]))
		j++;
	return j - at;
}

static int fail(struct cur *c, int err, const char *why)
{
	c->why = why;
	return err;
}

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/*
 * A quoted-string at c->i (which is '"'), unescaped into a new string. Only ASCII: qdtext is SP, HTAB and
 * visible characters but '"' and '\'; a quoted-pair escapes one of those or '"' or '\'.
 */
static int quoted(struct cur *c, char **val, size_t *vlen)
{
	char buf[MED_WWWAUTH_MAX_VALUE];
	size_t k = 0;

	c->i++;
	for (;;) {
		unsigned char ch;

		if (c->i >= c->n)
			return fail(c, -EBADMSG, "unterminated quoted string");
		ch = (unsigned char)c->p[c->i++];
		if (ch == '"')
			break;
		if (ch == '\\') {
			if (c->i >= c->n)
				return fail(c, -EBADMSG, "unterminated quoted string (a backslash at the end)");
			ch = (unsigned char)c->p[c->i++];
		}
		/* The whole header was checked for control and non-ASCII bytes already. */
		if (k == sizeof(buf))
			return fail(c, -E2BIG, "a value is longer than 4096 bytes");
		buf[k++] = (char)ch;
	}
	*val = dup_n(buf, k);
	*vlen = k;
	return *val ? 0 : fail(c, -ENOMEM, "out of memory");
}

/* The auth-params of `ch`, from c->i (at a token). Stops at the ',' before a new challenge, or the end. */
static int params(struct cur *c, struct med_wwwauth_challenge *ch)
{
	for (;;) {
		struct med_wwwauth_param *pm;
		size_t nl = token_len(c, c->i), vl;
		int err;

		if (nl == 0)
			return fail(c, -EBADMSG, c->i < c->n && c->p[c->i] == '=' ? "empty param name"
										 : "a param name holds a bad character");
		for (size_t k = 0; k < ch->n_params; k++) {
			/* Two realms (or scopes) would be ambiguous: which one would another reader use? */
			if (strlen(ch->params[k].name) == nl && !strncasecmp(ch->params[k].name, c->p + c->i, nl))
				return fail(c, -EBADMSG, "a param is given twice in one challenge");
		}
		if (ch->n_params == MED_WWWAUTH_MAX_PARAMS)
			return fail(c, -E2BIG, "more than 32 params in one challenge");
		pm = &ch->params[ch->n_params];
		pm->name = dup_n(c->p + c->i, nl);
		if (!pm->name)
			return fail(c, -ENOMEM, "out of memory");
		ch->n_params++;
		c->i += nl;
		skip_ows(c);
		if (c->i >= c->n || c->p[c->i] != '=')
			return fail(c, -EBADMSG, "a param name is not followed by '='");
		c->i++;
		skip_ows(c);
		if (c->i < c->n && c->p[c->i] == '"') {
			err = quoted(c, &pm->value, &pm->value_len);
			if (err)
				return err;
		} else {
			vl = token_len(c, c->i);
			if (vl == 0)
				return fail(c, -EBADMSG, c->i >= c->n || c->p[c->i] == ',' ? "a param has no value"
											    : "a value holds a bad character");
			if (vl > MED_WWWAUTH_MAX_VALUE)
				return fail(c, -E2BIG, "a value is longer than 4096 bytes");
			pm->value = dup_n(c->p + c->i, vl);
			if (!pm->value)
				return fail(c, -ENOMEM, "out of memory");
			pm->value_len = vl;
			c->i += vl;
		}
		skip_ows(c);
		if (c->i >= c->n)
			return 0;
		if (c->p[c->i] != ',')
			return fail(c, -EBADMSG, "trailing garbage after a param value");
		/*
		 * After a ',': another param is `token BWS "="`; anything else is a new challenge, which the
		 * caller reads from the ','. This is how RFC 9110 resolves the ambiguity of its list grammar.
		 */
		size_t save = c->i, t;

		c->i++;
		skip_ows(c);
		t = token_len(c, c->i);
		if (t) {
			size_t j = c->i + t;

			while (j < c->n && is_ows((unsigned char)c->p[j]))
				j++;
			if (j < c->n && c->p[j] == '=')
				continue;
		} else if (c->i < c->n && c->p[c->i] == '=') {
			continue; /* reported as an empty param name */
		}
		c->i = save;
		return 0;
	}
}

/* One challenge from c->i (at its scheme). Stops at the ',' before the next challenge, or the end. */
static int challenge(struct cur *c, struct med_wwwauth_challenge *ch)
{
	size_t sl = token_len(c, c->i), sp = 0, j;

	if (sl == 0)
		return fail(c, -EBADMSG, c->i < c->n && c->p[c->i] == ',' ? "an empty list element"
									   : "an auth scheme holds a bad character");
	ch->scheme = dup_n(c->p + c->i, sl);
	if (!ch->scheme)
		return fail(c, -ENOMEM, "out of memory");
	c->i += sl;
	while (c->i + sp < c->n && c->p[c->i + sp] == ' ')
		sp++;
	if (c->i + sp >= c->n || c->p[c->i + sp] == ',') {
		c->i += sp;
		return 0; /* a scheme alone */
	}
	if (sp == 0)
		return fail(c, -EBADMSG, c->p[c->i] == '=' ? "a param without an auth scheme"
							   : "an auth scheme is not followed by a space");
	c->i += sp;
	/* token68: its characters, then '='s, then the end or a ','. Otherwise auth-params. */
	j = c->i;
	while (j < c->n && is_t68char((unsigned char)c->p[j]))
		j++;
	if (j > c->i) {
		size_t end = j;

		while (end < c->n && c->p[end] == '=')
			end++;
		size_t k = end;

		while (k < c->n && is_ows((unsigned char)c->p[k]))
			k++;
		if (k >= c->n || c->p[k] == ',') {
			if (end - c->i > MED_WWWAUTH_MAX_VALUE)
				return fail(c, -E2BIG, "a token68 is longer than 4096 bytes");
			ch->token68 = dup_n(c->p + c->i, end - c->i);
			if (!ch->token68)
				return fail(c, -ENOMEM, "out of memory");
			c->i = k;
			return 0;
		}
	}
	return params(c, ch);
}

int med_wwwauth_parse(const char *hdr, size_t len, struct med_wwwauth *out, const char **why)
{
	struct cur c = { .p = hdr, .n = len };
	int err = 0;

	memset(out, 0, sizeof(*out));
	if (len > MED_WWWAUTH_MAX_HEADER) {
		err = fail(&c, -E2BIG, "the header is longer than 16 KiB");
		goto out;
	}
	/*
	 * Checked once, up front, so nothing below meets them: NUL could cut a C string short, CR and LF could
	 * split a header, and bytes outside ASCII have no meaning a registry relies on.
	 */
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)hdr[i];

		if (ch == '\0') {
			err = fail(&c, -EBADMSG, "a NUL byte");
			goto out;
		}
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			err = fail(&c, -EBADMSG, "a control byte");
			goto out;
		}
		if (ch >= 0x80) {
			err = fail(&c, -EBADMSG, "a byte outside ASCII");
			goto out;
		}
	}
	skip_ows(&c);
	if (c.i >= c.n) {
		err = fail(&c, -EBADMSG, "no challenge");
		goto out;
	}
	for (;;) {
		if (out->n == MED_WWWAUTH_MAX_CHALLENGES) {
			err = fail(&c, -E2BIG, "more than 16 challenges");
			goto out;
		}
		err = challenge(&c, &out->ch[out->n++]);
		if (err)
			goto out;
		skip_ows(&c);
		if (c.i >= c.n)
			break;
		if (c.p[c.i] != ',') {
			err = fail(&c, -EBADMSG, "trailing garbage after a challenge");
			goto out;
		}
		c.i++;
		skip_ows(&c);
		if (c.i >= c.n) {
			err = fail(&c, -EBADMSG, "a trailing comma");
			goto out;
		}
	}
out:
	if (err)
		med_wwwauth_free(out);
	if (why)
		*why = err ? c.why : NULL;
	return err;
}

void med_wwwauth_free(struct med_wwwauth *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n && i < MED_WWWAUTH_MAX_CHALLENGES; i++) {
		struct med_wwwauth_challenge *ch = &w->ch[i];

		free(ch->scheme);
		free(ch->token68);
		for (size_t k = 0; k < ch->n_params && k < MED_WWWAUTH_MAX_PARAMS; k++) {
			free(ch->params[k].name);
			free(ch->params[k].value);
		}
	}
	memset(w, 0, sizeof(*w));
}

const struct med_wwwauth_challenge *med_wwwauth_find(const struct med_wwwauth *w, const char *scheme)
{
	for (size_t i = 0; i < w->n; i++)
		if (!strcasecmp(w->ch[i].scheme, scheme))
			return &w->ch[i];
	return NULL;
}

const char *med_wwwauth_param(const struct med_wwwauth_challenge *c, const char *name)
{
	for (size_t k = 0; k < c->n_params; k++)
		if (!strcasecmp(c->params[k].name, name))
			return c->params[k].value;
	return NULL;
}

struct outbuf {
	char *p;
	size_t cap, n;
	bool over;
};

static void put(struct outbuf *o, const char *s, size_t n)
{
	if (o->over || n >= o->cap - o->n) {
		o->over = true;
		return;
	}
	memcpy(o->p + o->n, s, n);
	o->n += n;
}

int med_wwwauth_print(const struct med_wwwauth *w, char *out, size_t outsz, size_t *out_len)
{
	struct outbuf o = { .p = out, .cap = outsz };

	if (!outsz)
		return -E2BIG;
	for (size_t i = 0; i < w->n; i++) {
		const struct med_wwwauth_challenge *ch = &w->ch[i];

		if (i)
			put(&o, ", ", 2);
		put(&o, ch->scheme, strlen(ch->scheme));
		if (ch->token68) {
			put(&o, " ", 1);
			put(&o, ch->token68, strlen(ch->token68));
		}
		for (size_t k = 0; k < ch->n_params; k++) {
			const struct med_wwwauth_param *pm = &ch->params[k];
			bool tok = pm->value_len > 0;

			put(&o, k ? ", " : " ", k ? 2 : 1);
			put(&o, pm->name, strlen(pm->name));
			put(&o, "=", 1);
			for (size_t b = 0; b < pm->value_len && tok; b++)
				tok = med_is_tchar((unsigned char)pm->value[b]);
			if (tok) {
				put(&o, pm->value, pm->value_len);
				continue;
			}
			put(&o, "\"", 1);
			for (size_t b = 0; b < pm->value_len; b++) {
				if (pm->value[b] == '"' || pm->value[b] == '\\')
					put(&o, "\\", 1);
				put(&o, pm->value + b, 1);
			}
			put(&o, "\"", 1);
		}
	}
	if (o.over)
		return -E2BIG;
	out[o.n] = '\0';
	if (out_len)
		*out_len = o.n;
	return 0;
}

static int refuse(const char **why, const char *reason)
{
	if (why)
		*why = reason;
	return -EBADMSG;
}

/* The authority of an https URL: host (a DNS name, an IPv4 address or a bracketed IPv6 literal), then a port. */
static int realm_authority(const char *a, size_t n, struct med_wwwauth_bearer *out, const char **why)
{
	size_t h = 0, hl;
	const char *host = a;

	if (memchr(a, '@', n))
		return refuse(why, "the realm holds userinfo");
	if (n && a[0] == '[') {
		const char *close = memchr(a, ']', n);
		unsigned char v6[16];

		if (!close)
			return refuse(why, "the realm's IPv6 literal has no ']'");
		host = a + 1;
		hl = (size_t)(close - host);
		h = hl + 2;
		if (hl == 0 || hl >= sizeof(out->host))
			return refuse(why, "the realm's IPv6 literal is empty or too long");
		memcpy(out->host, host, hl);
		out->host[hl] = '\0';
		/* inet_pton also refuses zone ids ("%25eth0"), which name nothing outside this machine. */
		if (inet_pton(AF_INET6, out->host, v6) != 1)
			return refuse(why, "the realm's IPv6 literal is not an address");
	} else {
		while (h < n && a[h] != ':') {
			char ch = a[h];

			if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			      ch == '-' || ch == '.'))
				return refuse(why, "the realm's host holds a bad character");
			h++;
		}
		hl = h;
		if (hl == 0)
			return refuse(why, "the realm has no host");
		if (hl > 253)
			return refuse(why, "the realm's host is too long");
		for (size_t k = 0; k < hl; k++)
			out->host[k] = (char)(host[k] >= 'A' && host[k] <= 'Z' ? host[k] + 32 : host[k]);
		out->host[hl] = '\0';
	}
	out->port = 443;
	if (h == n)
		return 0;
	if (a[h] != ':')
		return refuse(why, "the realm's host is followed by garbage");
	h++;
	if (h == n)
		return refuse(why, "the realm's port is empty");
	unsigned long port = 0;

	for (; h < n; h++) {
		if (a[h] < '0' || a[h] > '9')
			return refuse(why, "the realm's port is not a number");
		port = port * 10 + (unsigned long)(a[h] - '0');
		if (port > 65535)
			return refuse(why, "the realm's port is out of range");
	}
	if (port == 0)
		return refuse(why, "the realm's port is out of range");
	out->port = (uint16_t)port;
	return 0;
}

int med_wwwauth_bearer(const struct med_wwwauth_challenge *c, struct med_wwwauth_bearer *out, const char **why)
{
	static const char https[] = "https://";
	const char *r, *a;
	size_t alen;

	memset(out, 0, sizeof(*out));
	if (!c || !c->scheme || strcasecmp(c->scheme, "Bearer"))
		return refuse(why, "not a Bearer challenge");
	if (c->token68 || !c->n_params)
		return refuse(why, "a Bearer challenge without params");
	r = med_wwwauth_param(c, "realm");
	if (!r)
		return refuse(why, "a Bearer challenge without a realm");
	if (strncasecmp(r, https, sizeof(https) - 1))
		return refuse(why, "the realm is not an https:// URL");
	/* Values may hold spaces and any visible character; a URL holds neither spaces nor these. */
	for (const char *p = r; *p; p++) {
		if (*p == '#')
			return refuse(why, "the realm holds a fragment");
		if (*p == ' ' || *p == '\t' || *p == '\\' || *p == '"' || *p == '<' || *p == '>' || *p == '{' ||
		    *p == '}' || *p == '|' || *p == '^' || *p == '`')
			return refuse(why, "the realm holds a character a URL may not");
	}
	a = r + sizeof(https) - 1;
	alen = strcspn(a, "/?");
	if (realm_authority(a, alen, out, why)) {
		memset(out, 0, sizeof(*out));
		return -EBADMSG;
	}
	out->realm = r;
	out->service = med_wwwauth_param(c, "service");
	out->scope = med_wwwauth_param(c, "scope");
	if (why)
		*why = NULL;
	return 0;
}
