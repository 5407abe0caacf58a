/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Audited flows decided again: a one-pass reader of the fields policy diff needs from an audit line, and
 * the replay of that flow through a policy. The reader is not a general JSON parser: it keeps the
 * top-level string and integer fields it knows and steps over everything else, so that a log of millions
 * of lines is read without building a document per line.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/policy_diff.h"
#include "text.h"

#define MAX_DEPTH 16

struct cursor {
	const char *p;
	const char *end;
};

static void skip_ws(struct cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n'))
		c->p++;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static int read_hex4(struct cursor *c, unsigned *out)
{
	unsigned v = 0;

	if (c->end - c->p < 4)
		return -EINVAL;
	for (int i = 0; i < 4; i++) {
		int h = hexval(c->p[i]);

		if (h < 0)
			return -EINVAL;
		v = v << 4 | (unsigned)h;
	}
	c->p += 4;
	*out = v;
	return 0;
}

static int put(char *dst, size_t cap, size_t *at, unsigned char byte)
{
	if (*at + 1 >= cap)
		return -EINVAL;
	dst[(*at)++] = (char)byte;
	return 0;
}

static int put_utf8(char *dst, size_t cap, size_t *at, unsigned cp)
{
	int err = 0;

	if (cp < 0x80)
		return put(dst, cap, at, (unsigned char)cp);
	if (cp < 0x800) {
		err |= put(dst, cap, at, (unsigned char)(0xc0 | cp >> 6));
	} else if (cp < 0x10000) {
		err |= put(dst, cap, at, (unsigned char)(0xe0 | cp >> 12));
		err |= put(dst, cap, at, (unsigned char)(0x80 | (cp >> 6 & 0x3f)));
	} else {
		err |= put(dst, cap, at, (unsigned char)(0xf0 | cp >> 18));
		err |= put(dst, cap, at, (unsigned char)(0x80 | (cp >> 12 & 0x3f)));
		err |= put(dst, cap, at, (unsigned char)(0x80 | (cp >> 6 & 0x3f)));
	}
	err |= put(dst, cap, at, (unsigned char)(0x80 | (cp & 0x3f)));
	return err ? -EINVAL : 0;
}

/*
 * The bytes that end a run of plain string bytes: the quote, the backslash, the control characters, and
 * every byte past ASCII (a sequence is checked to be UTF-8, as JSON text must be).
 */
/* clang-format off */
static const bool SPECIAL[256] = {
	[0x00 ... 0x1f] = 1,
	['"'] = 1,
	['\\'] = 1,
	[0x80 ... 0xff] = 1,
};
/* clang-format on */

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/*
 * Where the run of plain bytes from p ends: eight bytes at a time while no byte of a word can be special
 * (a high bit, a byte below 0x20, a quote or a backslash; the tests may flag a plain byte that follows a
 * special one, never miss one), then byte by byte. Most of a log line is such runs.
 */
static const char *plain_run_end(const char *p, const char *end)
{
	while (end - p >= 8) {
		uint64_t w, q, b;

		memcpy(&w, p, sizeof(w));
		q = w ^ (ONES * '"');
		b = w ^ (ONES * '\\');
		if ((w | ((w - ONES * 0x20) & ~w) | ((q - ONES) & ~q) | ((b - ONES) & ~b)) & HIGHS)
			break;
		p += 8;
	}
	while (p < end && !SPECIAL[(unsigned char)*p])
		p++;
	return p;
}

/* The length of the UTF-8 sequence at p (at most `left` bytes), or 0 when it is not one. */
static size_t utf8_sequence(const unsigned char *p, size_t left)
{
	unsigned cp;
	size_t n;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1fu;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, cp = p[0] & 0x0fu;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07u;
	else
		return 0;
	if (left < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3fu);
	}
	/* No overlong forms, no surrogates, nothing past U+10FFFF. */
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp < 0xe000))
		return 0;
	return n;
}

static bool two_digits(const char *s, unsigned min, unsigned max)
{
	unsigned v;

	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return false;
	v = (unsigned)(s[0] - '0') * 10 + (unsigned)(s[1] - '0');
	return v >= min && v <= max;
}

/*
 * Whether `s` is a time as RFC 3339 writes one, "2026-11-22T15:54:41.021867Z" or with an offset for the Z.
 * A `ts` is compared as text (first and last seen) and copied into a draft policy's header comment, so a
 * line whose `ts` has any other shape is refused whole: then no byte of a `ts` can end that comment early
 * (a CR, U+2028) or drive a terminal (ESC), and a wrong one cannot pose as the first or last flow.
 */
static bool rfc3339(const char *s)
{
	size_t frac = 0;

	/* Each test stops at the first byte that is not the one expected, so none reads past the NUL. */
	if (!two_digits(s, 0, 99) || !two_digits(s + 2, 0, 99) || s[4] != '-' || !two_digits(s + 5, 1, 12) ||
	    s[7] != '-' || !two_digits(s + 8, 1, 31) || s[10] != 'T' || !two_digits(s + 11, 0, 23) || s[13] != ':' ||
	    !two_digits(s + 14, 0, 59) || s[16] != ':' || !two_digits(s + 17, 0, 60))
		return false;
	s += 19;
	if (*s == '.') {
		while (frac < 10 && s[1 + frac] >= '0' && s[1 + frac] <= '9')
			frac++;
		if (!frac || frac > 9)
			return false;
		s += 1 + frac;
	}
	if (s[0] == 'Z')
		return s[1] == '\0';
	return (s[0] == '+' || s[0] == '-') && two_digits(s + 1, 0, 23) && s[3] == ':' && two_digits(s + 4, 0, 59) &&
	       s[6] == '\0';
}

/*
 * A string at c->p (after its opening quote), unescaped into `dst` (NUL-terminated, at most cap - 1
 * bytes) when `dst` is not NULL, else stepped over. NUL is refused: no field the replay reads may hold one.
 * Runs of plain bytes are found first and copied whole: most of a log is read here.
 */
static int read_string(struct cursor *c, char *dst, size_t cap)
{
	size_t at = 0;

	while (c->p < c->end) {
		const char *run = c->p;
		unsigned char ch;
		unsigned cp;

		c->p = plain_run_end(c->p, c->end);
		if (dst && c->p > run) {
			size_t n = (size_t)(c->p - run);

			if (at + n >= cap)
				return -EINVAL;
			memcpy(dst + at, run, n);
			at += n;
		}
		if (c->p >= c->end)
			return -EINVAL;
		ch = (unsigned char)*c->p++;
		if (ch == '"') {
			if (dst)
				dst[at] = '\0';
			return 0;
		}
		if (ch < 0x20)
			return -EINVAL;
		if (ch >= 0x80) {
			size_t n = utf8_sequence((const unsigned char *)c->p - 1, (size_t)(c->end - c->p) + 1);

			if (!n)
				return -EINVAL;
			if (dst) {
				if (at + n >= cap)
					return -EINVAL;
				memcpy(dst + at, c->p - 1, n);
				at += n;
			}
			c->p += n - 1;
			continue;
		}
		if (c->p >= c->end)
			return -EINVAL;
		switch (*c->p++) {
		case '"':
			cp = '"';
			break;
		case '\\':
			cp = '\\';
			break;
		case '/':
			cp = '/';
			break;
		case 'b':
			cp = '\b';
			break;
		case 'f':
			cp = '\f';
			break;
		case 'n':
			cp = '\n';
			break;
		case 'r':
			cp = '\r';
			break;
		case 't':
			cp = '\t';
			break;
		case 'u':
			if (read_hex4(c, &cp))
				return -EINVAL;
			if (cp >= 0xd800 && cp < 0xdc00) {
				unsigned lo;

				if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u')
					return -EINVAL;
				c->p += 2;
				if (read_hex4(c, &lo) || lo < 0xdc00 || lo >= 0xe000)
					return -EINVAL;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			} else if (cp >= 0xdc00 && cp < 0xe000) {
				return -EINVAL;
			}
			if (cp == 0)
				return -EINVAL;
			break;
		default:
			return -EINVAL;
		}
		if (dst && put_utf8(dst, cap, &at, cp))
			return -EINVAL;
	}
	return -EINVAL;
}

static int skip_literal(struct cursor *c, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n))
		return -EINVAL;
	c->p += n;
	return 0;
}

/* A JSON number; its value when it is a non-negative integer that fits, else -1 (and still valid). */
static int read_number(struct cursor *c, long long *value)
{
	long long v = 0;
	bool integer = true, digits = false;

	if (c->p < c->end && *c->p == '-') {
		integer = false;
		c->p++;
	}
	/* JSON has no leading zeros: "0" alone, or a digit from 1 first. */
	if (c->end - c->p >= 2 && c->p[0] == '0' && c->p[1] >= '0' && c->p[1] <= '9')
		return -EINVAL;
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		if (v < 1000000000000LL)
			v = v * 10 + (*c->p - '0');
		else
			integer = false;
		digits = true;
		c->p++;
	}
	if (!digits)
		return -EINVAL;
	if (c->p < c->end && *c->p == '.') {
		integer = false;
		c->p++;
		if (c->p >= c->end || *c->p < '0' || *c->p > '9')
			return -EINVAL;
		while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
			c->p++;
	}
	if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
		integer = false;
		c->p++;
		if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
			c->p++;
		if (c->p >= c->end || *c->p < '0' || *c->p > '9')
			return -EINVAL;
		while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
			c->p++;
	}
	*value = integer ? v : -1;
	return 0;
}

static int skip_value(struct cursor *c, unsigned depth);

static int skip_container(struct cursor *c, unsigned depth, char close)
{
	if (depth >= MAX_DEPTH)
		return -EINVAL;
	skip_ws(c);
	if (c->p < c->end && *c->p == close) {
		c->p++;
		return 0;
	}
	for (;;) {
		skip_ws(c);
		if (close == '}') {
			if (c->p >= c->end || *c->p++ != '"' || read_string(c, NULL, 0))
				return -EINVAL;
			skip_ws(c);
			if (c->p >= c->end || *c->p++ != ':')
				return -EINVAL;
		}
		if (skip_value(c, depth + 1))
			return -EINVAL;
		skip_ws(c);
		if (c->p >= c->end)
			return -EINVAL;
		if (*c->p == ',') {
			c->p++;
			continue;
		}
		if (*c->p++ == close)
			return 0;
		return -EINVAL;
	}
}

static int skip_value(struct cursor *c, unsigned depth)
{
	long long ignored;

	skip_ws(c);
	if (c->p >= c->end)
		return -EINVAL;
	switch (*c->p) {
	case '"':
		c->p++;
		return read_string(c, NULL, 0);
	case '{':
		c->p++;
		return skip_container(c, depth, '}');
	case '[':
		c->p++;
		return skip_container(c, depth, ']');
	case 't':
		return skip_literal(c, "true");
	case 'f':
		return skip_literal(c, "false");
	case 'n':
		return skip_literal(c, "null");
	default:
		return read_number(c, &ignored);
	}
}

/* The fields the replay reads, by their key's bytes. */
enum field {
	F_NONE,
	F_EVENT,
	F_SERVICE,
	F_ACTION,
	F_REASON,
	F_TS,
	F_HOST,
	F_IP,
	F_REGISTRY,
	F_OPERATION,
	F_SANDBOX_ID,
	F_RUN_ID,
	F_RULE,
	F_PACKAGE,
	F_VERSION,
	F_INTEGRITY,
	F_REF,
	F_PORT,
	F_SCHEMA,
};

#define KEY(text) text, sizeof(text) - 1

static const struct {
	const char *key;
	size_t len;
	enum field field;
} FIELDS[] = {
    {KEY("ts"), F_TS},
    {KEY("ref"), F_REF},
    {KEY("rule"), F_RULE},
    {KEY("event"), F_EVENT},
    {KEY("dst_ip"), F_IP},
    {KEY("action"), F_ACTION},
    {KEY("run_id"), F_RUN_ID},
    {KEY("schema"), F_SCHEMA},
    {KEY("service"), F_SERVICE},
    {KEY("package"), F_PACKAGE},
    {KEY("version"), F_VERSION},
    {KEY("dst_host"), F_HOST},
    {KEY("dst_port"), F_PORT},
    {KEY("registry"), F_REGISTRY},
    {KEY("operation"), F_OPERATION},
    {KEY("integrity"), F_INTEGRITY},
    {KEY("sandbox_id"), F_SANDBOX_ID},
    {KEY("reason_code"), F_REASON},
};

static enum field field_of(const char *key, size_t len)
{
	/* Most keys of a line are not ones we read; the length alone rules out most of those. */
	if (len < 2 || len > 11)
		return F_NONE;
	for (size_t i = 0; i < sizeof(FIELDS) / sizeof(FIELDS[0]); i++)
		if (FIELDS[i].len == len && FIELDS[i].key[0] == key[0] && !memcmp(FIELDS[i].key, key, len))
			return FIELDS[i].field;
	return F_NONE;
}

static char *field_buffer(struct crgw_audit_flow *f, enum field field, size_t *cap)
{
#define BUF(member)                                                                                                    \
	*cap = sizeof(f->member);                                                                                      \
	return f->member
	switch (field) {
	case F_EVENT:
		BUF(event);
	case F_SERVICE:
		BUF(service);
	case F_ACTION:
		BUF(action);
	case F_REASON:
		BUF(reason);
	case F_TS:
		BUF(ts);
	case F_HOST:
		BUF(host);
	case F_IP:
		BUF(ip);
	case F_REGISTRY:
		BUF(registry);
	case F_OPERATION:
		BUF(operation);
	case F_SANDBOX_ID:
		BUF(sandbox_id);
	case F_RUN_ID:
		BUF(run_id);
	case F_RULE:
		BUF(rule);
	case F_PACKAGE:
		BUF(package);
	case F_VERSION:
		BUF(version);
	case F_INTEGRITY:
		BUF(integrity);
	case F_REF:
		BUF(ref);
	default:
		return NULL;
	}
#undef BUF
}

static void flow_clear(struct crgw_audit_flow *f)
{
	/* Not a memset of the whole: most of it is string room, and an empty string is one byte. */
	f->schema = 0;
	f->port = 0;
	f->event[0] = f->service[0] = f->action[0] = f->reason[0] = f->ts[0] = f->host[0] = f->ip[0] = '\0';
	f->registry[0] = f->operation[0] = f->sandbox_id[0] = f->run_id[0] = f->rule[0] = '\0';
	f->package[0] = f->version[0] = f->integrity[0] = f->ref[0] = '\0';
	f->target_state = f->ip_state = 0;
}

int crgw_audit_flow_parse(const char *line, size_t len, struct crgw_audit_flow *out)
{
	struct cursor c = {line, line + len};

	flow_clear(out);
	skip_ws(&c);
	if (c.p >= c.end || *c.p++ != '{')
		return -EINVAL;
	skip_ws(&c);
	if (c.p < c.end && *c.p == '}') {
		c.p++;
		goto tail;
	}
	for (;;) {
		const char *key;
		enum field field;
		char *dst;
		size_t cap = 0;

		skip_ws(&c);
		if (c.p >= c.end || *c.p++ != '"')
			return -EINVAL;
		/* A key with an escape in it is none of ours: ours are plain. */
		key = c.p;
		c.p = plain_run_end(c.p, c.end);
		if (c.p < c.end && *c.p == '"') {
			field = field_of(key, (size_t)(c.p - key));
			c.p++;
		} else {
			field = F_NONE;
			if (read_string(&c, NULL, 0))
				return -EINVAL;
		}
		skip_ws(&c);
		if (c.p >= c.end || *c.p++ != ':')
			return -EINVAL;
		skip_ws(&c);
		if (c.p >= c.end)
			return -EINVAL;
		dst = field_buffer(out, field, &cap);
		if (dst) {
			/* reason_code is null on an allow; every other field is a string when present. */
			if (*c.p == 'n' && field == F_REASON) {
				if (skip_literal(&c, "null"))
					return -EINVAL;
				dst[0] = '\0';
			} else if (*c.p != '"') {
				return -EINVAL;
			} else {
				c.p++;
				if (read_string(&c, dst, cap) || (field == F_TS && !rfc3339(dst)))
					return -EINVAL;
			}
		} else if (field == F_PORT || field == F_SCHEMA) {
			long long v;

			if (read_number(&c, &v) || v < 0 || v > 65535)
				return -EINVAL;
			if (field == F_PORT)
				out->port = (uint16_t)v;
			else
				out->schema = (int)v;
		} else if (skip_value(&c, 1)) {
			return -EINVAL;
		}
		skip_ws(&c);
		if (c.p >= c.end)
			return -EINVAL;
		if (*c.p == ',') {
			c.p++;
			continue;
		}
		if (*c.p++ == '}')
			break;
		return -EINVAL;
	}
tail:
	skip_ws(&c);
	return c.p == c.end ? 0 : -EINVAL;
}

bool text_control_char(const unsigned char *p, size_t n)
{
	if (n == 1)
		return p[0] < 0x20 || p[0] == 0x7f;
	if (n == 2)
		return p[0] == 0xc2 && p[1] < 0xa0;
	if (n != 3)
		return false;
	return (p[0] == 0xe2 && ((p[1] == 0x80 && p[2] >= 0xa8 && p[2] <= 0xae) ||
				 (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9))) ||
	       (p[0] == 0xef && ((p[1] == 0xbb && p[2] == 0xbf) || (p[1] == 0xbf && p[2] >= 0xbe)));
}

bool text_has_control(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;

	for (size_t i = 0; i < len;) {
		size_t n = u[i] < 0x80 ? 1 : u[i] < 0xe0 ? 2 : u[i] < 0xf0 ? 3 : 4;

		if (n > len - i)
			n = len - i;
		if (text_control_char(u + i, n))
			return true;
		i += n;
	}
	return false;
}

char *crgw_audit_text_safe(char *dst, size_t size, const char *src, size_t len)
{
	size_t at = 0;

	for (size_t i = 0; i < len;) {
		const unsigned char *p = (const unsigned char *)src + i;
		size_t n = p[0] < 0x80 ? 1 : utf8_sequence(p, len - i);
		bool bad = !n || text_control_char(p, n);

		/* A sequence that does not fit is left out whole: a cut one would not be UTF-8. */
		if (at + (bad ? 1 : n) >= size)
			break;
		if (bad) {
			dst[at++] = '?';
			i += n ? n : 1;
		} else {
			memcpy(dst + at, p, n);
			at += n;
			i += n;
		}
	}
	if (size)
		dst[at] = '\0';
	return dst;
}

bool crgw_text_utf8_valid(const char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		const unsigned char *p = (const unsigned char *)s + i;
		size_t n = p[0] < 0x80 ? 1 : utf8_sequence(p, len - i);

		if (!n)
			return false;
		i += n;
	}
	return true;
}

size_t crgw_text_utf8_repair(char *dst, const char *src, size_t len)
{
	size_t at = 0;

	for (size_t i = 0; i < len;) {
		const unsigned char *p = (const unsigned char *)src + i;
		size_t n = p[0] < 0x80 ? 1 : utf8_sequence(p, len - i);

		if (n) {
			memcpy(dst + at, p, n);
			at += n;
			i += n;
		} else {
			memcpy(dst + at, "\xef\xbf\xbd", 3);
			at += 3;
			i++;
		}
	}
	return at;
}

/* ---- replay ----------------------------------------------------------------------------------------- */

/* Reasons that say something other than the policy decided: replaying them would invent an answer. */
static bool reason_replayable(const char *reason)
{
	static const char *const policy_reasons[] = {
	    "host_not_allowed",	       "port_not_allowed",     "ip_literal_not_allowed",
	    "private_address_blocked", "registry_not_allowed", "lockfile_violation",
	};

	if (!reason[0])
		return true;
	for (size_t i = 0; i < sizeof(policy_reasons) / sizeof(policy_reasons[0]); i++)
		if (!strcmp(reason, policy_reasons[i]))
			return true;
	return false;
}

static enum crgw_replay_outcome outcome(const struct crgw_decision *d)
{
	return d->allow ? CRGW_REPLAY_ALLOW : CRGW_REPLAY_DENY;
}

static enum crgw_replay_outcome deny(struct crgw_decision *out, enum crgw_reason reason, const char *rule)
{
	*out = (struct crgw_decision){.allow = false, .reason = reason, .rule = rule};
	return CRGW_REPLAY_DENY;
}

static enum crgw_replay_outcome allow(struct crgw_decision *out, const char *rule)
{
	*out = (struct crgw_decision){.allow = true, .reason = CRGW_REASON_NONE, .rule = rule};
	return CRGW_REPLAY_ALLOW;
}

/* Parses `text` into `host` once per line: `state` remembers the outcome. */
static bool parsed(const char *text, signed char *state, struct crgw_host *host)
{
	if (!*state)
		*state = text[0] && !crgw_host_parse(text, strlen(text), host, NULL) ? 1 : -1;
	return *state > 0;
}

/* A name (or address) and the address it was found at, on `port` (CRGW_PORT_ANY for DNS). */
static enum crgw_replay_outcome replay_network(const struct crgw_policy *policy, const struct crgw_blocklist *blocked,
					       struct crgw_audit_flow *f, uint16_t port, struct crgw_decision *out)
{
	if (!parsed(f->host[0] ? f->host : f->ip, &f->target_state, &f->target))
		return CRGW_REPLAY_SKIP;
	crgw_policy_decide(policy, blocked, &f->target, port, out);
	if (!out->allow || f->target.kind != CRGW_HOST_NAME || !f->ip[0])
		return outcome(out);
	/* The address the name led to, checked as the gateway checks an answer or a dialled address. */
	if (!parsed(f->ip, &f->ip_state, &f->address) || f->address.kind == CRGW_HOST_NAME)
		return outcome(out);
	{
		struct crgw_decision by_name = *out;

		crgw_policy_check_address(policy, blocked, &f->address, port, out);
		/*
		 * Allowed: the name's rule decided, as the gateway's allow event will say; but a flow once refused
		 * for this very address (a special or denied one) is opened by the CIDR rule that now admits it,
		 * which is what a policy owner needs named.
		 */
		bool refused_for_address = !strcmp(f->action, "deny") &&
					   (!strcmp(f->reason, "private_address_blocked") ||
					    (!strcmp(f->reason, "host_not_allowed") &&
					     !strncmp(f->rule, "sandbox.network.deny[", 21)));

		if (out->allow && !(refused_for_address && out->rule))
			*out = by_name;
	}
	return outcome(out);
}

static enum crgw_replay_outcome replay_git(const struct crgw_policy *policy, const struct crgw_audit_flow *f,
					   struct crgw_decision *out)
{
	if (!f->host[0])
		return CRGW_REPLAY_SKIP;
	if (!crgw_policy_git_host_allowed(policy, f->host))
		return deny(out, CRGW_REASON_HOST_NOT_ALLOWED, "git.hosts");
	if (!strcmp(f->operation, "push")) {
		if (!crgw_policy_git_push(policy))
			return deny(out, CRGW_REASON_REQUEST_INVALID, "git.push");
		if (f->ref[0] && !crgw_policy_git_ref_allowed(policy, f->ref, strlen(f->ref)))
			return deny(out, CRGW_REASON_REQUEST_INVALID, "git.push_refs");
	}
	return allow(out, "git.hosts");
}

static const char *registry_path(const char *registry, const char *leaf)
{
	static const char *const paths[CRGW_REGISTRY_COUNT][4] = {
	    {"registries.npm", "registries.npm.allowed_hosts", "registries.npm.lockfile_enforcement",
	     "registries.npm.fallback"},
	    {"registries.pip", "registries.pip.allowed_hosts", "registries.pip.lockfile_enforcement",
	     "registries.pip.fallback"},
	    {"registries.go", "registries.go.allowed_hosts", "registries.go.lockfile_enforcement",
	     "registries.go.fallback"},
	    {"registries.oci", "registries.oci.allowed_hosts", "registries.oci.lockfile_enforcement",
	     "registries.oci.fallback"},
	};
	int col = !strcmp(leaf, "allowed_hosts") ? 1
		  : !strcmp(leaf, "lockfile")	 ? 2
		  : !strcmp(leaf, "fallback")	 ? 3
						 : 0;

	for (size_t i = 0; i < CRGW_REGISTRY_COUNT; i++)
		if (!strcmp(registry, crgw_registry_names[i]))
			return paths[i][col];
	return "registries";
}

/* Whether the lockfile allowlist names the artifact: by version, or (pip, whose lockfiles pin files) by hash. */
static bool listed(const struct crgw_registry_rule *rule, const struct crgw_audit_flow *f)
{
	const struct crgw_policy_artifact *a;
	size_t n = crgw_policy_registry_artifacts(rule, f->package, &a);

	for (size_t i = 0; i < n; i++) {
		if (f->version[0] && a[i].version && !strcmp(a[i].version, f->version))
			return true;
		if (f->integrity[0] && a[i].integrity && !strcmp(a[i].integrity, f->integrity))
			return true;
	}
	return false;
}

static enum crgw_replay_outcome replay_registry(const struct crgw_policy *policy, const struct crgw_audit_flow *f,
						struct crgw_decision *out)
{
	const struct crgw_registry_rule *rule;

	if (!f->registry[0])
		return CRGW_REPLAY_SKIP;
	rule = crgw_policy_registry(policy, f->registry);
	if (!rule || !rule->enable)
		return deny(out, CRGW_REASON_REGISTRY_NOT_ALLOWED, registry_path(f->registry, ""));
	if (f->host[0] && !crgw_policy_registry_host_allowed(rule, f->host))
		return deny(out, CRGW_REASON_HOST_NOT_ALLOWED, registry_path(f->registry, "allowed_hosts"));
	/* A package document (no version, no file) is served whenever the registry is; OCI has no lockfile. */
	if (!f->package[0] || (!f->version[0] && !f->integrity[0]) || !strcmp(f->registry, "oci"))
		return allow(out, registry_path(f->registry, "allowed_hosts"));
	switch (rule->mode) {
	case CRGW_LOCKFILE_DENY_UNKNOWN:
		if (listed(rule, f))
			return allow(out, registry_path(f->registry, "lockfile"));
		return deny(out, CRGW_REASON_LOCKFILE_VIOLATION, registry_path(f->registry, "lockfile"));
	case CRGW_LOCKFILE_WARN:
		allow(out, registry_path(f->registry, "lockfile"));
		if (listed(rule, f))
			return CRGW_REPLAY_ALLOW;
		out->reason = CRGW_REASON_LOCKFILE_VIOLATION;
		return CRGW_REPLAY_WARN;
	case CRGW_LOCKFILE_OFF:
		break;
	}
	if (rule->fallback_allow)
		return allow(out, registry_path(f->registry, "fallback"));
	return deny(out, CRGW_REASON_LOCKFILE_VIOLATION, registry_path(f->registry, "fallback"));
}

enum crgw_replay_outcome crgw_policy_replay(const struct crgw_policy *policy, const struct crgw_blocklist *blocked,
					    struct crgw_audit_flow *f, struct crgw_decision *out)
{
	*out = (struct crgw_decision){0};
	if (strcmp(f->event, "decision"))
		return CRGW_REPLAY_SKIP;
	/* A refused push is request_invalid whether git.push, git.push_refs or the request itself refused it. */
	if (!reason_replayable(f->reason) &&
	    !(!strcmp(f->service, "git") && !strcmp(f->operation, "push") && !strcmp(f->reason, "request_invalid")))
		return CRGW_REPLAY_SKIP;
	if (!strcmp(f->service, "dns"))
		return replay_network(policy, blocked, f, CRGW_PORT_ANY, out);
	if (!strcmp(f->service, "connect") || !strcmp(f->service, "http") || !strcmp(f->service, "tls") ||
	    !strcmp(f->service, "tcp"))
		return f->port ? replay_network(policy, blocked, f, f->port, out) : CRGW_REPLAY_SKIP;
	if (!strcmp(f->service, "git"))
		return replay_git(policy, f, out);
	if (!strcmp(f->service, "registry"))
		return replay_registry(policy, f, out);
	return CRGW_REPLAY_SKIP;
}
