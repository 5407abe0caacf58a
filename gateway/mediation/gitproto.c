/* SPDX-License-Identifier: Apache-2.0 */
/*
 * git's wire protocol for mediation: pkt-lines, ref advertisements, a push's commands and the commits of
 * its pack, read from untrusted bytes in arbitrary chunks with bounded memory. What a push is judged on
 * comes from here, so every reading follows git's own where the two could disagree.
 */
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "gitproto.h"
#include "hex.h"

#define SHA1_LEN 20
#define SHA256_LEN 32


/* Parses exactly 2 * `n` hex digits (either case, as git's get_oid_hex) into an object name of `n` bytes. */
static bool oid_from_hex(struct git_oid *oid, const uint8_t *hex, size_t n)
{
	memset(oid, 0, sizeof(*oid));
	for (size_t i = 0; i < n; i++) {
		int hi = med_hexval(hex[2 * i]), lo = med_hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		oid->id[i] = (uint8_t)(hi << 4 | lo);
	}
	oid->len = (uint8_t)n;
	return true;
}

static bool is_hex(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (med_hexval(p[i]) < 0)
			return false;
	return true;
}

bool git_oid_is_zero(const struct git_oid *oid)
{
	for (size_t i = 0; i < oid->len && i < GIT_OID_MAX; i++)
		if (oid->id[i])
			return false;
	return true;
}

bool git_oid_equal(const struct git_oid *a, const struct git_oid *b)
{
	return a->len == b->len && a->len <= GIT_OID_MAX && !memcmp(a->id, b->id, a->len);
}

/* ---- ref names and capabilities --------------------------------------------------------------------- */

/* git's refname_disposition: the bytes check-ref-format refuses anywhere in a name. */
static bool ref_byte_bad(uint8_t c)
{
	return c < 0x20 || c == 0x7f || c == ' ' || c == '~' || c == '^' || c == ':' || c == '?' || c == '*' ||
	       c == '[' || c == '\\';
}

bool git_refname_valid(const char *name, size_t len)
{
	const uint8_t *s = (const uint8_t *)name;
	size_t comp = 0; /* start of the current component */

	if (!name || len < 6 || memcmp(name, "refs/", 5))
		return false;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == '/') {
			size_t clen = i - comp;

			/* Empty components ("//", a final '/'), and ones git would take for dot files or lock files. */
			if (clen == 0 || s[comp] == '.')
				return false;
			if (clen >= 5 && !memcmp(s + i - 5, ".lock", 5))
				return false;
			comp = i + 1;
			continue;
		}
		if (ref_byte_bad(s[i]))
			return false;
		if (s[i] == '.' && i > 0 && s[i - 1] == '.')
			return false;
		if (s[i] == '{' && i > 0 && s[i - 1] == '@')
			return false;
	}
	return s[len - 1] != '.';
}

const char *git_cap_find(const char *caps, size_t len, const char *name, size_t *vlen)
{
	size_t nlen = strlen(name), i = 0;

	if (!caps)
		return NULL;
	while (i < len) {
		size_t start = i, tlen;

		while (i < len && caps[i] != ' ')
			i++;
		tlen = i - start;
		i++;
		if (tlen < nlen || memcmp(caps + start, name, nlen))
			continue;
		if (tlen == nlen) {
			if (vlen)
				*vlen = 0;
			return "";
		}
		if (caps[start + nlen] == '=') {
			if (vlen)
				*vlen = tlen - nlen - 1;
			return caps + start + nlen + 1;
		}
	}
	return NULL;
}

/* The object format a capability list names: 20 or 32 bytes, or 0 for a format this parser does not know. */
static size_t caps_oid_len(const char *caps, size_t len)
{
	size_t vlen;
	const char *v = git_cap_find(caps, len, "object-format", &vlen);

	if (!v || (vlen == 4 && !memcmp(v, "sha1", 4)))
		return SHA1_LEN;
	if (vlen == 6 && !memcmp(v, "sha256", 6))
		return SHA256_LEN;
	return 0;
}

/* ---- pkt-lines -------------------------------------------------------------------------------------- */

int git_pkt_next(const uint8_t *buf, size_t len, enum git_pkt_type *type, const uint8_t **data, size_t *dlen)
{
	size_t n = 0;

	for (size_t i = 0; i < 4; i++) {
		int v;

		if (i == len)
			return -EAGAIN;
		v = med_hexval(buf[i]);
		if (v < 0)
			return -EBADMSG;
		n = n << 4 | (size_t)v;
	}
	*data = NULL;
	*dlen = 0;
	if (n < 4) {
		if (n == 3)
			return -EBADMSG;
		*type = n == 0 ? GIT_PKT_FLUSH : n == 1 ? GIT_PKT_DELIM : GIT_PKT_END;
		return 4;
	}
	if (n > GIT_PKT_MAX)
		return -EBADMSG;
	if (len < n)
		return -EAGAIN;
	*type = GIT_PKT_DATA;
	*data = buf + 4;
	*dlen = n - 4;
	return (int)n;
}

/*
 * Takes the next whole pkt-line from *buf: in place when the chunk holds all of it, else assembled in
 * `store` (GIT_PKT_MAX bytes, `*have` of them filled) across calls. Returns 1 with a pkt-line (its payload
 * may point into `store`, valid until the next call), 0 when the input ran out (all of it kept), or
 * -EBADMSG. *buf and *len move past what was taken.
 */
static int pkt_pull(uint8_t *store, size_t *have, const uint8_t **buf, size_t *len, enum git_pkt_type *type,
		    const uint8_t **data, size_t *dlen)
{
	int rc;

	if (*have == 0) {
		rc = git_pkt_next(*buf, *len, type, data, dlen);
		if (rc > 0) {
			*buf += rc;
			*len -= (size_t)rc;
			return 1;
		}
		if (rc != -EAGAIN)
			return rc;
	}
	for (;;) {
		size_t want = 4, take;

		if (*have >= 4) {
			rc = git_pkt_next(store, *have, type, data, dlen);
			if (rc > 0) {
				*have = 0;
				return 1;
			}
			if (rc != -EAGAIN)
				return rc;
			want = (size_t)med_hexval(store[0]) << 12 | (size_t)med_hexval(store[1]) << 8 |
			       (size_t)med_hexval(store[2]) << 4 | (size_t)med_hexval(store[3]);
		}
		if (*len == 0)
			return 0;
		take = want - *have < *len ? want - *have : *len;
		memcpy(store + *have, *buf, take);
		*have += take;
		*buf += take;
		*len -= take;
		/* Refuse a bad length as soon as its bytes are here, not only once the line would be whole. */
		if (*have < 4 && git_pkt_next(store, *have, type, data, dlen) == -EBADMSG)
			return -EBADMSG;
	}
}

/* Drops one final LF: git's pkt-line reader chomps it, and senders differ in whether they write it. */
static size_t chomp(const uint8_t *data, size_t len)
{
	return len && data[len - 1] == '\n' ? len - 1 : len;
}

static bool line_is(const uint8_t *data, size_t len, const char *s)
{
	size_t n = strlen(s);

	return len == n && !memcmp(data, s, n);
}

static bool line_starts(const uint8_t *data, size_t len, const char *s)
{
	size_t n = strlen(s);

	return len >= n && !memcmp(data, s, n);
}

/* ---- the ref advertisement -------------------------------------------------------------------------- */

enum adv_state {
	ADV_SERVICE,   /* "# service=..." or "version 2" */
	ADV_META,      /* lines after "# service=" up to its flush */
	ADV_FIRST,     /* "version 1", the first ref line or the flush of an empty advertisement */
	ADV_FIRST_REF, /* after "version 1" */
	ADV_REFS,
	ADV_V2,        /* protocol v2 capabilities, skipped to their flush */
	ADV_DONE,
};

static int ref_cmp(const void *a, const void *b)
{
	const struct git_ref *x = a, *y = b;
	int c = memcmp(x->name, y->name, x->len < y->len ? x->len : y->len);

	if (c)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

const struct git_ref *git_refs_find(const struct git_refs *refs, const char *name, size_t len)
{
	struct git_ref key = { .name = (char *)name, .len = len };

	if (!refs || !refs->refs)
		return NULL;
	if (refs->sorted)
		return bsearch(&key, refs->refs, refs->n, sizeof(*refs->refs), ref_cmp);
	for (size_t i = 0; i < refs->n; i++)
		if (!ref_cmp(&key, &refs->refs[i]))
			return &refs->refs[i];
	return NULL;
}

void git_refs_free(struct git_refs *refs)
{
	if (!refs)
		return;
	for (size_t i = 0; refs->refs && i < refs->n; i++)
		free(refs->refs[i].name);
	free(refs->refs);
	free(refs->caps);
	memset(refs, 0, sizeof(*refs));
}

void git_adv_init(struct git_adv *a, struct git_refs *out, const char *service, size_t max_refs,
		  bool (*want)(void *arg, const char *ref, size_t len), void *arg)
{
	size_t n = service ? strlen(service) : 0;

	memset(a, 0, offsetof(struct git_adv, line));
	a->out = out;
	a->want = want;
	a->arg = arg;
	a->max_refs = max_refs;
	a->state = ADV_SERVICE;
	if (out)
		memset(out, 0, sizeof(*out));
	/* A service name that does not fit can never match: every feed then fails on the service line. */
	if (n < sizeof(a->service))
		memcpy(a->service, service, n);
	else
		a->service[0] = '\0';
}

static int adv_fail(struct git_adv *a, int err, const char *why)
{
	a->err = err;
	a->why = why;
	return err;
}

static int adv_store(struct git_adv *a, const uint8_t *name, size_t nlen, const struct git_oid *oid)
{
	struct git_refs *out = a->out;
	struct git_ref *r;

	if (a->want && !a->want(a->arg, (const char *)name, nlen))
		return 0;
	if (out->n >= a->max_refs || a->name_bytes + nlen > GIT_ADV_NAME_BYTES_MAX) {
		out->incomplete = true;
		return 0;
	}
	if (out->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;

		if (cap > a->max_refs)
			cap = a->max_refs;
		r = realloc(out->refs, cap * sizeof(*r));
		if (!r)
			return adv_fail(a, -ENOMEM, "out of memory");
		out->refs = r;
		a->cap = cap;
	}
	r = &out->refs[out->n];
	r->name = malloc(nlen + 1);
	if (!r->name)
		return adv_fail(a, -ENOMEM, "out of memory");
	memcpy(r->name, name, nlen);
	r->name[nlen] = '\0';
	r->len = nlen;
	r->oid = *oid;
	out->n++;
	a->name_bytes += nlen;
	return 0;
}

/* One line of the v0/v1 advertisement: "<oid> <name>[\0caps]", "shallow <oid>" or "<oid> .have". */
static int adv_ref_line(struct git_adv *a, const uint8_t *d, size_t len, bool first)
{
	struct git_refs *out = a->out;
	const uint8_t *nul = memchr(d, '\0', len), *name;
	size_t hexlen, nlen, linelen = nul ? (size_t)(nul - d) : len;
	struct git_oid oid;

	if (first && nul) {
		const char *caps = (const char *)nul + 1;
		size_t clen = len - linelen - 1;

		if (memchr(caps, '\0', clen) || memchr(caps, '\n', clen))
			return adv_fail(a, -EBADMSG, "a NUL or LF inside the capabilities");
		out->caps = malloc(clen + 1);
		if (!out->caps)
			return adv_fail(a, -ENOMEM, "out of memory");
		memcpy(out->caps, caps, clen);
		out->caps[clen] = '\0';
		out->caps_len = clen;
		if (!caps_oid_len(caps, clen))
			return adv_fail(a, -EBADMSG, "an object-format this parser does not know");
		out->sha256 = caps_oid_len(caps, clen) == SHA256_LEN;
	} else if (nul) {
		return adv_fail(a, -EBADMSG, "capabilities after the first ref line");
	}
	hexlen = out->sha256 ? 2 * SHA256_LEN : 2 * SHA1_LEN;
	if (line_starts(d, linelen, "shallow ")) {
		if (linelen != 8 + hexlen || !is_hex(d + 8, hexlen))
			return adv_fail(a, -EBADMSG, "a malformed shallow line");
		return 0;
	}
	if (linelen < hexlen + 2 || d[hexlen] != ' ')
		return adv_fail(a, -EBADMSG, "a ref line without an object name and a ref");
	if (!oid_from_hex(&oid, d, hexlen / 2))
		return adv_fail(a, -EBADMSG, "an object name that is not hex");
	name = d + hexlen + 1;
	nlen = linelen - hexlen - 1;
	if (first && nlen == 15 && !memcmp(name, "capabilities^{}", 15)) {
		if (!git_oid_is_zero(&oid))
			return adv_fail(a, -EBADMSG, "capabilities^{} with an object name");
		out->empty = true;
		return 0;
	}
	/* Objects of alternate repositories, which receive-pack lists so the client need not send them. */
	if (nlen == 5 && !memcmp(name, ".have", 5))
		return 0;
	/* git expects nothing but shallow lines after the placeholder of an empty repository. */
	if (out->empty)
		return adv_fail(a, -EBADMSG, "a ref after capabilities^{}");
	if (nlen > 3 && !memcmp(name + nlen - 3, "^{}", 3)) {
		/* A peeled tag: what it points to, not a ref of its own. */
		if (!git_refname_valid((const char *)name, nlen - 3))
			return adv_fail(a, -EBADMSG, "an invalid ref name");
		return 0;
	}
	if (!(nlen == 4 && !memcmp(name, "HEAD", 4)) && !git_refname_valid((const char *)name, nlen))
		return adv_fail(a, -EBADMSG, "an invalid ref name");
	out->advertised++;
	return adv_store(a, name, nlen, &oid);
}

/* The end of the advertisement: the table sorted, and a ref kept twice refused. */
static int adv_finish(struct git_adv *a)
{
	struct git_refs *out = a->out;

	if (out->n > 1)
		qsort(out->refs, out->n, sizeof(*out->refs), ref_cmp);
	for (size_t i = 1; i < out->n; i++)
		if (!ref_cmp(&out->refs[i - 1], &out->refs[i]))
			return adv_fail(a, -EBADMSG, "a ref advertised twice");
	out->sorted = true;
	if (out->advertised == 0)
		out->empty = true;
	a->state = ADV_DONE;
	return 0;
}

static int adv_pkt(struct git_adv *a, enum git_pkt_type type, const uint8_t *data, size_t dlen)
{
	size_t len = chomp(data, dlen);

	if (type == GIT_PKT_DELIM || type == GIT_PKT_END)
		return adv_fail(a, -EBADMSG, "a v2 delimiter in a ref advertisement");
	if (type == GIT_PKT_DATA && line_starts(data, len, "ERR "))
		return adv_fail(a, -EBADMSG, "the upstream answered with an error line");
	switch (a->state) {
	case ADV_SERVICE:
		if (type == GIT_PKT_DATA && line_is(data, len, "version 2")) {
			a->state = ADV_V2;
			return 0;
		}
		if (type != GIT_PKT_DATA || !line_starts(data, len, "# service=") || !a->service[0] ||
		    !line_is(data + 10, len - 10, a->service))
			return adv_fail(a, -EBADMSG, "the advertisement does not start with its service line");
		a->state = ADV_META;
		return 0;
	case ADV_META:
		/* git reads and ignores lines here, up to the flush. */
		if (type == GIT_PKT_FLUSH)
			a->state = ADV_FIRST;
		return 0;
	case ADV_FIRST:
		if (type == GIT_PKT_DATA && line_is(data, len, "version 2")) {
			a->state = ADV_V2;
			return 0;
		}
		if (type == GIT_PKT_DATA && line_is(data, len, "version 1")) {
			a->state = ADV_FIRST_REF;
			return 0;
		}
		__attribute__((fallthrough));
	case ADV_FIRST_REF:
		if (type == GIT_PKT_FLUSH)
			return adv_finish(a);
		a->state = ADV_REFS;
		return adv_ref_line(a, data, len, true);
	case ADV_REFS:
		if (type == GIT_PKT_FLUSH)
			return adv_finish(a);
		return adv_ref_line(a, data, len, false);
	case ADV_V2:
		if (type == GIT_PKT_FLUSH) {
			a->out->incomplete = true;
			a->out->sorted = true;
			a->state = ADV_DONE;
			return 0;
		}
		if (line_is(data, len, "object-format=sha256"))
			a->out->sha256 = true;
		return 0;
	}
	return adv_fail(a, -EBADMSG, "bytes after the advertisement's final flush");
}

int git_adv_feed(struct git_adv *a, const uint8_t *buf, size_t len)
{
	enum git_pkt_type type;
	const uint8_t *data;
	size_t dlen;
	int rc;

	if (!a->out)
		return -EINVAL;
	if (a->err)
		return a->err;
	while (len) {
		if (a->state == ADV_DONE)
			return adv_fail(a, -EBADMSG, "bytes after the advertisement's final flush");
		rc = pkt_pull(a->line, &a->have, &buf, &len, &type, &data, &dlen);
		if (rc < 0)
			return adv_fail(a, rc, "a malformed pkt-line length");
		if (rc == 0)
			break;
		if (type == GIT_PKT_DATA && dlen == 0)
			return adv_fail(a, -EBADMSG, "an empty pkt-line");
		rc = adv_pkt(a, type, data, dlen);
		if (rc)
			return rc;
	}
	return a->state == ADV_DONE ? 0 : -EAGAIN;
}

/* ---- the command list of a push --------------------------------------------------------------------- */

enum push_state {
	PUSH_SHALLOW, /* shallow lines, or the first command */
	PUSH_CMDS,
	PUSH_DONE,
};

void git_push_init(struct git_push *p)
{
	memset(p, 0, sizeof(*p));
}

void git_push_free(struct git_push *p)
{
	if (!p)
		return;
	for (size_t i = 0; p->cmds && i < p->ncmds; i++)
		free(p->cmds[i].ref);
	free(p->cmds);
	free(p->caps);
	free(p->line);
	memset(p, 0, sizeof(*p));
}

static int push_fail(struct git_push *p, int err, const char *why)
{
	p->err = err;
	p->why = why;
	return err;
}

static int cmd_ref_cmp(const void *a, const void *b)
{
	const struct git_push_cmd *x = *(const struct git_push_cmd *const *)a,
				  *y = *(const struct git_push_cmd *const *)b;
	int c = memcmp(x->ref, y->ref, x->ref_len < y->ref_len ? x->ref_len : y->ref_len);

	if (c)
		return c;
	return x->ref_len < y->ref_len ? -1 : x->ref_len > y->ref_len;
}

/*
 * The flush: the list is whole. A ref named twice is refused, as receive-pack does, so that no two
 * commands on one ref can be judged apart; sorting pointers finds it in n log n for 10000 commands.
 */
static int push_finish(struct git_push *p)
{
	const struct git_push_cmd **v;
	int rc = 0;

	/* A lone flush is git's probe before a large push (it checks the credential first): no command, no change. */
	if (p->ncmds == 0)
		goto done;
	v = malloc(p->ncmds * sizeof(*v));
	if (!v)
		return push_fail(p, -ENOMEM, "out of memory");
	for (size_t i = 0; i < p->ncmds; i++)
		v[i] = &p->cmds[i];
	qsort(v, p->ncmds, sizeof(*v), cmd_ref_cmp);
	for (size_t i = 1; i < p->ncmds && !rc; i++)
		if (!cmd_ref_cmp(&v[i - 1], &v[i]))
			rc = push_fail(p, -EBADMSG, "a ref named twice");
	free(v);
	if (rc)
		return rc;
done:
	p->state = PUSH_DONE;
	free(p->line);
	p->line = NULL;
	return 0;
}

static int push_line(struct git_push *p, const uint8_t *d, size_t len)
{
	const uint8_t *nul = memchr(d, '\0', len), *ref;
	size_t linelen = nul ? (size_t)(nul - d) : len, hexlen, rlen;
	bool first = p->state == PUSH_SHALLOW;
	struct git_push_cmd *cmd;

	if (first && line_starts(d, linelen, "push-cert") && (linelen == 9 || d[9] == ' '))
		return push_fail(p, -ENOTSUP, "a push certificate (signed push)");
	if (first && line_starts(d, linelen, "shallow ")) {
		/* Before the first command, the format is not known yet: either length of name. */
		if (nul ||
		    !((linelen == 8 + 2 * SHA1_LEN || linelen == 8 + 2 * SHA256_LEN) && is_hex(d + 8, linelen - 8)))
			return push_fail(p, -EBADMSG, "a malformed shallow line");
		return 0;
	}
	if (first && nul) {
		const char *caps = (const char *)nul + 1;
		size_t clen = len - linelen - 1;

		if (memchr(caps, '\0', clen) || memchr(caps, '\n', clen))
			return push_fail(p, -EBADMSG, "a NUL or LF inside the capabilities");
		p->caps = malloc(clen + 1);
		if (!p->caps)
			return push_fail(p, -ENOMEM, "out of memory");
		memcpy(p->caps, caps, clen);
		p->caps[clen] = '\0';
		p->caps_len = clen;
		if (!caps_oid_len(caps, clen))
			return push_fail(p, -EBADMSG, "an object-format this parser does not know");
		p->sha256 = caps_oid_len(caps, clen) == SHA256_LEN;
		p->push_options = git_cap_find(caps, clen, "push-options", NULL) != NULL;
	} else if (nul) {
		return push_fail(p, -EBADMSG, "capabilities after the first command");
	}
	p->state = PUSH_CMDS;
	if (p->ncmds >= GIT_PUSH_MAX_CMDS)
		return push_fail(p, -E2BIG, "more commands than the gateway checks");
	hexlen = p->sha256 ? 2 * SHA256_LEN : 2 * SHA1_LEN;
	if (linelen < 2 * hexlen + 3 || d[hexlen] != ' ' || d[2 * hexlen + 1] != ' ')
		return push_fail(p, -EBADMSG, "a command is not \"<old> <new> <ref>\" with names of the push's format");
	if (p->ncmds == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct git_push_cmd *v = realloc(p->cmds, cap * sizeof(*v));

		if (!v)
			return push_fail(p, -ENOMEM, "out of memory");
		p->cmds = v;
		p->cap = cap;
	}
	cmd = &p->cmds[p->ncmds];
	memset(cmd, 0, sizeof(*cmd));
	if (!oid_from_hex(&cmd->old_oid, d, hexlen / 2) || !oid_from_hex(&cmd->new_oid, d + hexlen + 1, hexlen / 2))
		return push_fail(p, -EBADMSG, "an object name that is not hex");
	ref = d + 2 * hexlen + 2;
	rlen = linelen - 2 * hexlen - 2;
	if (!git_refname_valid((const char *)ref, rlen))
		return push_fail(p, -EBADMSG, "an invalid ref name");
	cmd->ref = malloc(rlen + 1);
	if (!cmd->ref)
		return push_fail(p, -ENOMEM, "out of memory");
	memcpy(cmd->ref, ref, rlen);
	cmd->ref[rlen] = '\0';
	cmd->ref_len = rlen;
	p->ncmds++;
	return 0;
}

int git_push_feed(struct git_push *p, const uint8_t *buf, size_t len, size_t *used)
{
	const uint8_t *start = buf;
	enum git_pkt_type type;
	const uint8_t *data;
	size_t dlen;
	int rc = -EAGAIN;

	*used = 0;
	if (p->err)
		return p->err;
	if (p->state == PUSH_DONE)
		return 0;
	while (len) {
		size_t before = len;

		if (p->have == 0 && !p->line && git_pkt_next(buf, len, &type, &data, &dlen) == -EAGAIN) {
			p->line = malloc(GIT_PKT_MAX);
			if (!p->line)
				return push_fail(p, -ENOMEM, "out of memory");
		}
		rc = pkt_pull(p->line, &p->have, &buf, &len, &type, &data, &dlen);
		p->bytes += before - len;
		if (rc < 0)
			return push_fail(p, rc, "a malformed pkt-line length");
		if (rc == 0)
			break;
		/*
		 * Judged on whole pkt-lines only, so that where the input was cut never changes the answer;
		 * an unfinished one is bounded by GIT_PKT_MAX anyway.
		 */
		if (p->bytes > GIT_PUSH_MAX_BYTES)
			return push_fail(p, -E2BIG, "the command list is larger than the gateway checks");
		if (type == GIT_PKT_FLUSH) {
			rc = push_finish(p);
			*used = (size_t)(buf - start);
			return rc;
		}
		if (type != GIT_PKT_DATA)
			return push_fail(p, -EBADMSG, "a v2 delimiter in the command list");
		if (dlen == 0)
			return push_fail(p, -EBADMSG, "an empty pkt-line");
		rc = push_line(p, data, chomp(data, dlen));
		if (rc)
			return rc;
	}
	*used = (size_t)(buf - start);
	return -EAGAIN;
}

int git_push_end(struct git_push *p)
{
	if (p->err)
		return p->err;
	if (p->state == PUSH_DONE)
		return 0;
	return push_fail(p, -EBADMSG, "truncated");
}

/* ---- the pack --------------------------------------------------------------------------------------- */

/*
 * Visits of commits by git_pack_reaches, all calls on one scan together: a push of GIT_PUSH_MAX_CMDS
 * updates, each walking a pack of GIT_PACK_MAX_COMMITS commits, would otherwise hold a worker for 10^9
 * steps. Past it, nothing more is proved (the push is refused, never let through).
 */
#define PACK_WALK_MAX (16u << 20)

enum pack_state {
	PK_HEADER,
	PK_OBJ_HDR, /* type and size */
	PK_OFS,     /* an OFS_DELTA's base offset */
	PK_REF,     /* a REF_DELTA's base name */
	PK_DATA,    /* zlib data */
	PK_TRAILER,
	PK_DONE,
};

enum pack_sink {
	SINK_DISCARD, /* trees, blobs, tags, deltas on them: inflated to find their end, then dropped */
	SINK_COMMIT,
	SINK_DELTA,   /* a delta on a commit the cache holds */
};

enum {
	OBJ_COMMIT = 1,
	OBJ_TREE = 2,
	OBJ_BLOB = 3,
	OBJ_TAG = 4,
	OBJ_OFS_DELTA = 6,
	OBJ_REF_DELTA = 7,
};

struct pack_commit {
	uint64_t offset;   /* where its object starts in the pack */
	uint8_t *data;     /* its content while cached as a delta base, else NULL */
	uint32_t size;
	uint32_t parent;   /* its first parent in parents[] */
	uint32_t nparents;
	uint32_t mark;     /* the walk that last visited it */
	bool bad;          /* git would not parse its header: it proves nothing */
	struct git_oid oid;
};

struct git_pack_priv {
	EVP_MD_CTX *md;    /* the pack's checksum, over everything before the trailer */
	EVP_MD_CTX *oidmd; /* one commit's name */
	const EVP_MD *algo;
	size_t hashlen;
	z_stream z;
	bool z_ready;
	int state, err;
	uint64_t offset;   /* bytes read */
	uint32_t nobjects; /* objects the header announced */
	uint32_t seen;     /* objects finished */
	uint8_t head[12];
	size_t head_have;
	/* the object being read */
	uint64_t obj_offset, obj_size, inflated, ofs;
	unsigned shift, ofs_bytes;
	int obj_type;
	enum pack_sink sink;
	size_t base;       /* commits[] index of a delta's base */
	uint8_t *obj;      /* its content, when kept */
	uint8_t base_oid[GIT_OID_MAX];
	size_t base_have;
	uint8_t trailer[GIT_OID_MAX];
	size_t trailer_have;
	uint64_t total_inflated;
	/* the commits */
	struct pack_commit *commits;
	size_t ncommits, commits_cap;
	uint32_t *table;   /* by name: commits[] index + 1, 0 empty; open addressing */
	size_t table_mask;
	uint64_t key[2];   /* the table's hash key */
	uint8_t *parents;  /* parent names, hashlen bytes each */
	size_t nparents, parents_cap;
	size_t cache_bytes, evict;
	uint32_t walk, walked;
	uint32_t *queue;
	uint8_t scratch[16384];
};

/*
 * SipHash-2-4 of a name's first 16 bytes under a random key. Names are hashes the pusher can grind: with
 * a known bucket function, 100,000 commits made to collide would turn every lookup into a scan.
 */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                                  \
	do {                                                                                                      \
		v0 += v1;                                                                                         \
		v1 = ROTL(v1, 13);                                                                                \
		v1 ^= v0;                                                                                         \
		v0 = ROTL(v0, 32);                                                                                \
		v2 += v3;                                                                                         \
		v3 = ROTL(v3, 16);                                                                                \
		v3 ^= v2;                                                                                         \
		v0 += v3;                                                                                         \
		v3 = ROTL(v3, 21);                                                                                \
		v3 ^= v0;                                                                                         \
		v2 += v1;                                                                                         \
		v1 = ROTL(v1, 17);                                                                                \
		v1 ^= v2;                                                                                         \
		v2 = ROTL(v2, 32);                                                                                \
	} while (0)

static uint64_t oid_hash(const uint64_t key[2], const uint8_t *id)
{
	uint64_t v0 = key[0] ^ 0x736f6d6570736575ull, v1 = key[1] ^ 0x646f72616e646f6dull;
	uint64_t v2 = key[0] ^ 0x6c7967656e657261ull, v3 = key[1] ^ 0x7465646279746573ull;
	uint64_t m[2], b = 16ull << 56;

	memcpy(m, id, 16);
	for (int i = 0; i < 2; i++) {
		v3 ^= m[i];
		SIPROUND;
		SIPROUND;
		v0 ^= m[i];
	}
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

static struct pack_commit *commit_by_oid(const struct git_pack_priv *p, const uint8_t *id)
{
	if (!p->table)
		return NULL;
	for (size_t i = oid_hash(p->key, id) & p->table_mask;; i = (i + 1) & p->table_mask) {
		uint32_t e = p->table[i];

		if (!e)
			return NULL;
		if (!memcmp(p->commits[e - 1].oid.id, id, p->hashlen))
			return &p->commits[e - 1];
	}
}

static void table_put(struct git_pack_priv *p, uint32_t idx)
{
	size_t i = oid_hash(p->key, p->commits[idx].oid.id) & p->table_mask;

	while (p->table[i])
		i = (i + 1) & p->table_mask;
	p->table[i] = idx + 1;
}

/* Keeps the table at most half full, so probes stay short. */
static int table_grow(struct git_pack_priv *p)
{
	size_t size = p->table ? (p->table_mask + 1) * 2 : 1024;
	uint32_t *old = p->table, *t;
	size_t old_size = p->table ? p->table_mask + 1 : 0;

	if (p->table && (p->ncommits + 1) * 2 <= p->table_mask + 1)
		return 0;
	t = calloc(size, sizeof(*t));
	if (!t)
		return -ENOMEM;
	p->table = t;
	p->table_mask = size - 1;
	for (size_t i = 0; i < old_size; i++)
		if (old[i])
			table_put(p, old[i] - 1);
	free(old);
	return 0;
}

/* The commit whose object starts at `offset` (commits are in pack order), or NULL. */
static struct pack_commit *commit_by_offset(const struct git_pack_priv *p, uint64_t offset)
{
	size_t lo = 0, hi = p->ncommits;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (p->commits[mid].offset < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < p->ncommits && p->commits[lo].offset == offset ? &p->commits[lo] : NULL;
}

static int pack_fail(struct git_pack_scan *s, int err, const char *why)
{
	if (s->priv)
		s->priv->err = err;
	s->why = why;
	return err;
}

int git_pack_scan_init(struct git_pack_scan *s, bool sha256)
{
	struct git_pack_priv *p;

	memset(s, 0, sizeof(*s));
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	s->priv = p;
	p->algo = sha256 ? EVP_sha256() : EVP_sha1();
	p->hashlen = sha256 ? SHA256_LEN : SHA1_LEN;
	p->md = EVP_MD_CTX_new();
	p->oidmd = EVP_MD_CTX_new();
	if (!p->algo || !p->md || !p->oidmd || !EVP_DigestInit_ex(p->md, p->algo, NULL))
		goto fail;
	if (inflateInit(&p->z) != Z_OK)
		goto fail;
	p->z_ready = true;
	/* Without randomness, an address still keeps the key from being known in advance. */
	if (RAND_bytes((unsigned char *)p->key, sizeof(p->key)) != 1) {
		p->key[0] = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
		p->key[1] = (uint64_t)(uintptr_t)s ^ 0xc2b2ae3d27d4eb4full;
	}
	p->state = PK_HEADER;
	return 0;
fail:
	git_pack_scan_free(s);
	return -ENOMEM;
}

static void cache_drop_all(struct git_pack_priv *p)
{
	for (size_t i = 0; i < p->ncommits; i++) {
		free(p->commits[i].data);
		p->commits[i].data = NULL;
	}
	p->cache_bytes = 0;
}

void git_pack_scan_free(struct git_pack_scan *s)
{
	struct git_pack_priv *p;

	if (!s)
		return;
	p = s->priv;
	if (p) {
		cache_drop_all(p);
		free(p->commits);
		free(p->table);
		free(p->parents);
		free(p->queue);
		free(p->obj);
		if (p->z_ready)
			inflateEnd(&p->z);
		EVP_MD_CTX_free(p->md);
		EVP_MD_CTX_free(p->oidmd);
		free(p);
	}
	memset(s, 0, sizeof(*s));
}

/*
 * A commit's parents, read as git's parse_commit_buffer reads them: "tree <hex>\n" first, then every
 * "parent <hex>\n" line; a malformed one makes the whole commit bogus to git, and so it proves nothing
 * here (`bad` set, nothing appended). Appends to parents[]; 0, or -E2BIG or -ENOMEM.
 */
static int commit_parents(struct git_pack_scan *s, const uint8_t *d, size_t n, struct pack_commit *c)
{
	struct git_pack_priv *p = s->priv;
	size_t hexlen = 2 * p->hashlen, pos = 5 + hexlen + 1, start = p->nparents;

	c->parent = (uint32_t)p->nparents;
	c->nparents = 0;
	if (n <= pos || memcmp(d, "tree ", 5) || !is_hex(d + 5, hexlen) || d[5 + hexlen] != '\n') {
		c->bad = true;
		return 0;
	}
	while (pos + 7 + hexlen < n && !memcmp(d + pos, "parent ", 7)) {
		struct git_oid oid;

		if (n <= pos + 7 + hexlen + 1 || !oid_from_hex(&oid, d + pos + 7, p->hashlen) ||
		    d[pos + 7 + hexlen] != '\n') {
			p->nparents = start;
			c->nparents = 0;
			c->bad = true;
			return 0;
		}
		if (p->nparents >= GIT_PACK_MAX_PARENTS)
			return pack_fail(s, -E2BIG, "the pack's commits name more parents than the gateway checks");
		if (p->nparents == p->parents_cap) {
			size_t cap = p->parents_cap ? p->parents_cap * 2 : 1024;
			uint8_t *v = realloc(p->parents, cap * p->hashlen);

			if (!v)
				return pack_fail(s, -ENOMEM, "out of memory");
			p->parents = v;
			p->parents_cap = cap;
		}
		memcpy(p->parents + p->nparents * p->hashlen, oid.id, p->hashlen);
		p->nparents++;
		c->nparents++;
		pos += 7 + hexlen + 1;
	}
	return 0;
}

/* Records a commit read whole or from a delta; takes `data` (`size` bytes, malloc'd). */
static int commit_add(struct git_pack_scan *s, uint64_t offset, uint8_t *data, size_t size)
{
	struct git_pack_priv *p = s->priv;
	struct pack_commit *c;
	char hdr[32];
	int hlen, rc;
	unsigned int mdlen;

	if (p->ncommits >= GIT_PACK_MAX_COMMITS) {
		free(data);
		return pack_fail(s, -E2BIG, "the pack carries more commits than the gateway checks");
	}
	if (p->ncommits == p->commits_cap) {
		size_t cap = p->commits_cap ? p->commits_cap * 2 : 256;
		struct pack_commit *v = realloc(p->commits, cap * sizeof(*v));

		if (!v) {
			free(data);
			return pack_fail(s, -ENOMEM, "out of memory");
		}
		p->commits = v;
		p->commits_cap = cap;
	}
	if (table_grow(p)) {
		free(data);
		return pack_fail(s, -ENOMEM, "out of memory");
	}
	c = &p->commits[p->ncommits];
	memset(c, 0, sizeof(*c));
	c->offset = offset;
	c->data = data;
	c->size = (uint32_t)size;
	p->ncommits++;
	p->cache_bytes += size;
	s->ncommits++;
	/* Its name is the hash of "commit <size>\0<content>", the object exactly as git stores it. */
	hlen = snprintf(hdr, sizeof(hdr), "commit %zu", size) + 1;
	if (!EVP_DigestInit_ex(p->oidmd, p->algo, NULL) || !EVP_DigestUpdate(p->oidmd, hdr, (size_t)hlen) ||
	    !EVP_DigestUpdate(p->oidmd, data, size) || !EVP_DigestFinal_ex(p->oidmd, c->oid.id, &mdlen) ||
	    mdlen != p->hashlen)
		return pack_fail(s, -ENOMEM, "the hash failed");
	c->oid.len = (uint8_t)p->hashlen;
	rc = commit_parents(s, data, size, c);
	if (rc)
		return rc;
	if (c->bad)
		s->bad_commits++;
	/* The same commit twice keeps its first record: both have one content, so one set of parents. */
	if (!commit_by_oid(p, c->oid.id))
		table_put(p, (uint32_t)(p->ncommits - 1));
	/* Oldest first out: git writes a delta close after its base, within its window. */
	while (p->cache_bytes > GIT_PACK_CACHE_BYTES && p->evict < p->ncommits - 1) {
		struct pack_commit *old = &p->commits[p->evict++];

		p->cache_bytes -= old->size;
		free(old->data);
		old->data = NULL;
	}
	return 0;
}

/* Reads one varint of a delta's header (base size, result size). */
static bool delta_varint(const uint8_t *d, size_t n, size_t *pos, uint64_t *v)
{
	uint64_t r = 0;
	unsigned shift = 0;
	uint8_t c;

	do {
		if (*pos >= n || shift > 56)
			return false;
		c = d[(*pos)++];
		r |= (uint64_t)(c & 0x7f) << shift;
		shift += 7;
	} while (c & 0x80);
	*v = r;
	return true;
}

/* Applies git's delta format: copies from the base, inserts from the delta, every bound checked. */
static int delta_apply(struct git_pack_scan *s, const uint8_t *base, size_t blen, const uint8_t *d, size_t n,
		       uint8_t **out, size_t *olen)
{
	uint64_t bsize, rsize;
	size_t pos = 0, w = 0;
	uint8_t *r;

	if (!delta_varint(d, n, &pos, &bsize) || !delta_varint(d, n, &pos, &rsize))
		return pack_fail(s, -EBADMSG, "a delta's header is cut short");
	if (bsize != blen)
		return pack_fail(s, -EBADMSG, "a delta's base size is not its base's");
	if (rsize > GIT_PACK_COMMIT_MAX)
		return pack_fail(s, -E2BIG, "a commit larger than the gateway checks");
	r = malloc(rsize ? rsize : 1);
	if (!r)
		return pack_fail(s, -ENOMEM, "out of memory");
	while (pos < n) {
		uint8_t c = d[pos++];

		if (c & 0x80) {
			uint64_t off = 0, sz = 0;

			for (unsigned i = 0; i < 4; i++)
				if (c & (1u << i)) {
					if (pos >= n)
						goto bounds;
					off |= (uint64_t)d[pos++] << (8 * i);
				}
			for (unsigned i = 0; i < 3; i++)
				if (c & (0x10u << i)) {
					if (pos >= n)
						goto bounds;
					sz |= (uint64_t)d[pos++] << (8 * i);
				}
			if (sz == 0)
				sz = 0x10000;
			if (off > blen || sz > blen - off || sz > rsize - w)
				goto bounds;
			memcpy(r + w, base + off, sz);
			w += sz;
		} else if (c) {
			if (c > n - pos || c > rsize - w)
				goto bounds;
			memcpy(r + w, d + pos, c);
			pos += c;
			w += c;
		} else {
			free(r);
			return pack_fail(s, -EBADMSG, "a delta holds the reserved instruction 0");
		}
	}
	if (w != rsize) {
		free(r);
		return pack_fail(s, -EBADMSG, "a delta's result is not the size it announces");
	}
	*out = r;
	*olen = rsize;
	return 0;
bounds:
	free(r);
	return pack_fail(s, -EBADMSG, "a delta reaches out of bounds");
}

static int obj_data_begin(struct git_pack_scan *s)
{
	struct git_pack_priv *p = s->priv;

	p->inflated = 0;
	if (inflateReset(&p->z) != Z_OK)
		return pack_fail(s, -EBADMSG, "zlib could not start");
	p->state = PK_DATA;
	if (p->sink != SINK_DISCARD) {
		p->obj = malloc(p->obj_size ? p->obj_size : 1);
		if (!p->obj)
			return pack_fail(s, -ENOMEM, "out of memory");
	}
	return 0;
}

/* A delta's base is known: kept when it is a commit the cache holds, else inflated and dropped. */
static int delta_begin(struct git_pack_scan *s, struct pack_commit *base)
{
	struct git_pack_priv *p = s->priv;

	p->sink = SINK_DISCARD;
	if (base && base->data) {
		if (p->obj_size > GIT_PACK_DELTA_MAX)
			return pack_fail(s, -E2BIG, "a delta on a commit larger than the gateway checks");
		p->sink = SINK_DELTA;
		p->base = (size_t)(base - p->commits);
	} else if (base) {
		s->evicted_bases++;
	} else {
		s->skipped_deltas++;
	}
	return obj_data_begin(s);
}

static int obj_begin(struct git_pack_scan *s)
{
	struct git_pack_priv *p = s->priv;

	switch (p->obj_type) {
	case OBJ_COMMIT:
		if (p->obj_size > GIT_PACK_COMMIT_MAX)
			return pack_fail(s, -E2BIG, "a commit larger than the gateway checks");
		p->sink = SINK_COMMIT;
		return obj_data_begin(s);
	case OBJ_TREE:
	case OBJ_BLOB:
	case OBJ_TAG:
		p->sink = SINK_DISCARD;
		return obj_data_begin(s);
	case OBJ_OFS_DELTA:
		s->ofs_deltas++;
		p->ofs = 0;
		p->ofs_bytes = 0;
		p->state = PK_OFS;
		return 0;
	case OBJ_REF_DELTA:
		s->ref_deltas++;
		p->base_have = 0;
		p->state = PK_REF;
		return 0;
	}
	return pack_fail(s, -EBADMSG, "an object of an unknown type");
}

static void obj_next(struct git_pack_priv *p)
{
	p->seen++;
	p->shift = 0;
	p->state = p->seen == p->nobjects ? PK_TRAILER : PK_OBJ_HDR;
}

/* The object's zlib stream ended. */
static int obj_end(struct git_pack_scan *s)
{
	struct git_pack_priv *p = s->priv;
	uint8_t *data = p->obj, *result = NULL;
	size_t rsize = 0;
	int rc = 0;

	p->obj = NULL;
	if (p->inflated != p->obj_size) {
		free(data);
		return pack_fail(s, -EBADMSG, "an object inflates to less than its header says");
	}
	switch (p->sink) {
	case SINK_COMMIT:
		rc = commit_add(s, p->obj_offset, data, p->obj_size);
		break;
	case SINK_DELTA:
		/* The base is still cached: nothing was added, so nothing evicted, since the delta began. */
		rc = delta_apply(s, p->commits[p->base].data, p->commits[p->base].size, data, p->obj_size, &result,
				 &rsize);
		free(data);
		if (!rc) {
			s->commit_deltas++;
			rc = commit_add(s, p->obj_offset, result, rsize);
		}
		break;
	case SINK_DISCARD:
		free(data);
		break;
	}
	if (!rc)
		obj_next(p);
	return rc;
}

/* Inflates what `buf` holds of the object's zlib stream; `*n` is what it consumed. */
static int obj_inflate(struct git_pack_scan *s, const uint8_t *buf, size_t len, size_t *n)
{
	struct git_pack_priv *p = s->priv;
	uInt avail = len > UINT_MAX ? UINT_MAX : (uInt)len;
	int zr, rc = 0;

	p->z.next_in = (Bytef *)buf;
	p->z.avail_in = avail;
	for (;;) {
		size_t produced;

		p->z.next_out = p->scratch;
		p->z.avail_out = sizeof(p->scratch);
		zr = inflate(&p->z, Z_NO_FLUSH);
		produced = sizeof(p->scratch) - p->z.avail_out;
		if (produced) {
			uint64_t room = p->obj_size - p->inflated,
				 total_room = GIT_PACK_INFLATE_MAX - p->total_inflated;

			/*
			 * Whichever limit the byte stream crosses first decides, not where zlib's output happened
			 * to be cut. The total one stops highly compressed data that would otherwise hold the
			 * worker long after its bytes arrived.
			 */
			if (produced > room && room <= total_room) {
				rc = pack_fail(s, -EBADMSG, "an object inflates to more than its header says");
				break;
			}
			if (produced > total_room) {
				rc = pack_fail(s, -E2BIG, "the pack inflates to more than the gateway checks");
				break;
			}
			if (p->sink != SINK_DISCARD)
				memcpy(p->obj + p->inflated, p->scratch, produced);
			p->inflated += produced;
			p->total_inflated += produced;
		}
		if (zr == Z_STREAM_END) {
			*n = avail - p->z.avail_in;
			return obj_end(s);
		}
		if (zr == Z_BUF_ERROR)
			break; /* no progress without more input */
		if (zr != Z_OK) {
			rc = pack_fail(s, -EBADMSG, "an object's zlib data is corrupt");
			break;
		}
		if (p->z.avail_in == 0 && p->z.avail_out != 0)
			break;
	}
	*n = avail - p->z.avail_in;
	return rc;
}

static int pack_header(struct git_pack_scan *s)
{
	struct git_pack_priv *p = s->priv;
	uint32_t version = (uint32_t)p->head[4] << 24 | p->head[5] << 16 | p->head[6] << 8 | p->head[7];

	if (memcmp(p->head, "PACK", 4))
		return pack_fail(s, -EBADMSG, "the pack does not start with PACK");
	if (version != 2 && version != 3)
		return pack_fail(s, -EBADMSG, "a pack version other than 2 or 3");
	p->nobjects = (uint32_t)p->head[8] << 24 | p->head[9] << 16 | p->head[10] << 8 | p->head[11];
	s->nobjects = p->nobjects;
	p->state = p->nobjects ? PK_OBJ_HDR : PK_TRAILER;
	return 0;
}

/* One byte of an object's header: its type, then its size in 4 + 7n bits. */
static int obj_hdr_byte(struct git_pack_scan *s, uint8_t c)
{
	struct git_pack_priv *p = s->priv;

	if (p->shift == 0) {
		p->obj_offset = p->offset;
		p->obj_type = (c >> 4) & 7;
		p->obj_size = c & 15;
		p->shift = 4;
	} else {
		if (p->shift > 57)
			return pack_fail(s, -EBADMSG, "an object's size overflows");
		p->obj_size |= (uint64_t)(c & 0x7f) << p->shift;
		p->shift += 7;
	}
	return c & 0x80 ? 0 : obj_begin(s);
}

/* One byte of an OFS_DELTA's distance back to its base, in git's encoding (each continuation adds one). */
static int ofs_byte(struct git_pack_scan *s, uint8_t c)
{
	struct git_pack_priv *p = s->priv;

	if (p->ofs_bytes++) {
		if (p->ofs >> 56)
			return pack_fail(s, -EBADMSG, "a delta's base offset overflows");
		p->ofs = ((p->ofs + 1) << 7) | (c & 0x7f);
	} else {
		p->ofs = c & 0x7f;
	}
	if (c & 0x80)
		return 0;
	if (p->ofs == 0 || p->ofs > p->obj_offset)
		return pack_fail(s, -EBADMSG, "a delta's base lies outside the pack");
	return delta_begin(s, commit_by_offset(p, p->obj_offset - p->ofs));
}

static int pack_trailer(struct git_pack_scan *s)
{
	struct git_pack_priv *p = s->priv;
	uint8_t sum[EVP_MAX_MD_SIZE];
	unsigned int len;

	if (!EVP_DigestFinal_ex(p->md, sum, &len) || len != p->hashlen)
		return pack_fail(s, -ENOMEM, "the hash failed");
	if (memcmp(sum, p->trailer, p->hashlen))
		return pack_fail(s, -EBADMSG, "the pack's checksum does not match its content");
	/* No delta can follow: the contents are done with. The walk's queue is made now, once. */
	cache_drop_all(p);
	p->queue = malloc((p->ncommits ? p->ncommits : 1) * sizeof(*p->queue));
	if (!p->queue)
		return pack_fail(s, -ENOMEM, "out of memory");
	p->state = PK_DONE;
	s->done = true;
	return 0;
}

int git_pack_scan_feed(struct git_pack_scan *s, const uint8_t *buf, size_t len)
{
	struct git_pack_priv *p = s->priv;
	const uint8_t *unhashed = buf;
	bool hashing;
	int rc = 0;

	if (!p) {
		s->why = "the scan was not started";
		return -EINVAL;
	}
	if (p->err)
		return p->err;
	if (len)
		s->fed = true;
	hashing = p->state < PK_TRAILER;
	while (len && !rc) {
		size_t n = 0;

		/* The checksum covers every byte before it, so hashing stops where the trailer begins. */
		if (hashing && p->state >= PK_TRAILER) {
			if (!EVP_DigestUpdate(p->md, unhashed, (size_t)(buf - unhashed)))
				return pack_fail(s, -ENOMEM, "the hash failed");
			hashing = false;
		}
		switch (p->state) {
		case PK_HEADER:
			n = sizeof(p->head) - p->head_have < len ? sizeof(p->head) - p->head_have : len;
			memcpy(p->head + p->head_have, buf, n);
			p->head_have += n;
			if (p->head_have == sizeof(p->head))
				rc = pack_header(s);
			break;
		case PK_OBJ_HDR:
			n = 1;
			rc = obj_hdr_byte(s, *buf);
			break;
		case PK_OFS:
			n = 1;
			rc = ofs_byte(s, *buf);
			break;
		case PK_REF:
			n = p->hashlen - p->base_have < len ? p->hashlen - p->base_have : len;
			memcpy(p->base_oid + p->base_have, buf, n);
			p->base_have += n;
			if (p->base_have == p->hashlen)
				rc = delta_begin(s, commit_by_oid(p, p->base_oid));
			break;
		case PK_DATA:
			rc = obj_inflate(s, buf, len, &n);
			break;
		case PK_TRAILER:
			n = p->hashlen - p->trailer_have < len ? p->hashlen - p->trailer_have : len;
			memcpy(p->trailer + p->trailer_have, buf, n);
			p->trailer_have += n;
			if (p->trailer_have == p->hashlen)
				rc = pack_trailer(s);
			break;
		default:
			return pack_fail(s, -EBADMSG, "bytes after the pack's checksum");
		}
		/* Every state takes a byte or more; zlib taking none would spin here forever. */
		if (!n && !rc)
			rc = pack_fail(s, -EBADMSG, "zlib made no progress");
		buf += n;
		len -= n;
		p->offset += n;
	}
	if (rc)
		return rc;
	if (hashing && !EVP_DigestUpdate(p->md, unhashed, (size_t)(buf - unhashed)))
		return pack_fail(s, -ENOMEM, "the hash failed");
	return p->state == PK_DONE ? 0 : -EAGAIN;
}

int git_pack_scan_end(struct git_pack_scan *s)
{
	if (s->priv && s->priv->err)
		return s->priv->err;
	if (!s->fed || s->done)
		return 0;
	return pack_fail(s, -EBADMSG, "truncated pack");
}

/* The breadth-first walk from `to` towards `from` through the pack's commits, on `queue` (ncommits long). */
static bool walk(struct git_pack_priv *p, uint32_t *queue, const struct git_oid *from, const struct git_oid *to)
{
	struct pack_commit *start;
	size_t head = 0, tail = 0;

	start = commit_by_oid(p, to->id);
	if (!start || start->bad)
		return false;
	if (git_oid_equal(from, to))
		return true;
	/* Each walk has its own mark, so no visited set is cleared between walks. */
	p->walk++;
	start->mark = p->walk;
	queue[tail++] = (uint32_t)(start - p->commits);
	while (head < tail) {
		const struct pack_commit *c = &p->commits[queue[head++]];

		if (++p->walked > PACK_WALK_MAX)
			return false;
		for (uint32_t i = 0; i < c->nparents; i++) {
			const uint8_t *id = p->parents + (size_t)(c->parent + i) * p->hashlen;
			struct pack_commit *q;

			if (!memcmp(id, from->id, p->hashlen))
				return true;
			q = commit_by_oid(p, id);
			if (q && !q->bad && q->mark != p->walk) {
				q->mark = p->walk;
				queue[tail++] = (uint32_t)(q - p->commits);
			}
		}
	}
	return false;
}

bool git_pack_reaches(const struct git_pack_scan *s, const struct git_oid *from, const struct git_oid *to)
{
	struct git_pack_priv *p = s ? s->priv : NULL;

	/* A pack that failed after its checksum (bytes after it) proves nothing either. */
	if (!p || !s->done || p->err || !p->queue || from->len != p->hashlen || to->len != p->hashlen)
		return false;
	return walk(p, p->queue, from, to);
}

bool git_pack_reaches_so_far(const struct git_pack_scan *s, const struct git_oid *from, const struct git_oid *to)
{
	struct git_pack_priv *p = s ? s->priv : NULL;
	uint32_t *queue;
	bool found;

	if (p && s->done)
		return git_pack_reaches(s, from, to);
	if (!p || p->err || from->len != p->hashlen || to->len != p->hashlen)
		return false;
	queue = malloc((p->ncommits ? p->ncommits : 1) * sizeof(*queue));
	if (!queue)
		return false;
	found = walk(p, queue, from, to);
	free(queue);
	return found;
}

/* ---- judging one command ---------------------------------------------------------------------------- */

enum git_push_verdict git_push_check(const struct git_push_cmd *cmd, bool force,
				     bool (*ref_allowed)(void *arg, const char *ref, size_t len), void *arg,
				     const struct git_refs *advertised, const struct git_pack_scan *scan,
				     const char **why)
{
	bool complete = advertised && !advertised->incomplete;
	const struct git_ref *adv = NULL;
	const char *because = NULL;
	enum git_push_verdict v;

	if (!ref_allowed || !ref_allowed(arg, cmd->ref, cmd->ref_len)) {
		v = GIT_PUSH_REF_NOT_ALLOWED;
	} else if (force) {
		v = GIT_PUSH_OK;
	} else if (git_oid_is_zero(&cmd->new_oid)) {
		v = GIT_PUSH_DELETE;
	} else {
		if (complete)
			adv = git_refs_find(advertised, cmd->ref, cmd->ref_len);
		if (git_oid_is_zero(&cmd->old_oid)) {
			v = adv ? GIT_PUSH_STALE : GIT_PUSH_OK;
			because = adv ? "the ref already exists upstream" : NULL;
		} else if (git_oid_equal(&cmd->old_oid, &cmd->new_oid)) {
			v = GIT_PUSH_OK;
		} else if (complete && (!adv || !git_oid_equal(&adv->oid, &cmd->old_oid))) {
			v = GIT_PUSH_STALE;
			because = adv ? "the ref upstream is at another commit" : "the ref is not upstream";
		} else if (scan && git_pack_reaches(scan, &cmd->old_oid, &cmd->new_oid)) {
			v = GIT_PUSH_OK;
		} else {
			v = GIT_PUSH_NOT_FAST_FORWARD;
			because = "the pushed commits do not lead from the old tip to the new one";
		}
	}
	if (why)
		*why = because;
	return v;
}
