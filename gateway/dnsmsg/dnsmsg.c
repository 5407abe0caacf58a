/* SPDX-License-Identifier: Apache-2.0 */
/* DNS message reading and writing: every read is checked against the message length before it happens. */
#include <errno.h>
#include <string.h>

#include "dnsmsg.h"

/*
 * A legitimate compressor adds at least one label per hop (a name is at most 127 labels), so 128 hops
 * are enough for any real name; the cap bounds the work a hostile message can ask for per name even
 * though backwards-only pointers already rule out loops.
 */
#define PTR_HOPS_MAX 128

/* Fixed parts after the owner name: a question's type and class; a record's type, class, TTL, rdlength. */
#define QUESTION_FIXED 4
#define RR_FIXED 10
/* The smallest question (root name) and record (root owner, empty rdata), to check counts up front. */
#define QUESTION_MIN (1 + QUESTION_FIXED)
#define RR_MIN (1 + RR_FIXED)
/* Our OPT record: root owner, fixed part, no options. */
#define OPT_LEN RR_MIN
#define TTL_MAX 0x7fffffffu

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void wr32(uint8_t *p, uint32_t v)
{
	wr16(p, (uint16_t)(v >> 16));
	wr16(p + 2, (uint16_t)v);
}

static bool host_byte(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Appends `c` while it fits; *n always counts, so the caller learns the full length either way. */
static void emit(char *out, size_t outcap, size_t *n, char c)
{
	if (out && *n < outcap)
		out[*n] = c;
	(*n)++;
}

/*
 * The one name reader. `host` is the query-side mode: no compression (a question has nothing before it
 * worth pointing at, so a pointer there only serves to confuse) and bytes outside [a-z0-9_-] refused
 * rather than escaped. Returns the text length or -errno; see crgw_dns_name_decode.
 */
static int name_read(const uint8_t *msg, size_t len, size_t off, bool host, char *out, size_t outcap, size_t *next)
{
	size_t pos = off, seg = off, wire = 1, n = 0, end = 0;
	unsigned hops = 0;
	bool jumped = false;

	for (;;) {
		if (pos >= len)
			return -EBADMSG;
		uint8_t c = msg[pos];

		if ((c & 0xc0) == 0xc0) {
			if (host || len - pos < 2)
				return -EBADMSG;
			size_t target = (size_t)(c & 0x3f) << 8 | msg[pos + 1];

			/*
			 * Strictly before the start of the labels holding this pointer, so positions only
			 * decrease and no chain can loop; never into the header, whose bytes the client
			 * chose for other reasons.
			 */
			if (target < CRGW_DNS_HEADER_LEN || target >= seg || ++hops > PTR_HOPS_MAX)
				return -EBADMSG;
			if (!jumped)
				end = pos + 2;
			jumped = true;
			pos = seg = target;
			continue;
		}
		/* 0x40 (extended labels, RFC 6891 retired them) and 0x80 (reserved); also "label > 63". */
		if (c & 0xc0)
			return -EBADMSG;
		if (c == 0)
			break;
		wire += (size_t)c + 1;
		if (wire > CRGW_DNS_NAME_MAX || c >= len - pos)
			return -EBADMSG;
		if (n)
			emit(out, outcap, &n, '.');
		for (size_t i = 1; i <= c; i++) {
			uint8_t b = msg[pos + i];

			if (b >= 'A' && b <= 'Z')
				b = (uint8_t)(b - 'A' + 'a');
			if (host_byte(b)) {
				emit(out, outcap, &n, (char)b);
			} else if (host) {
				return -EBADMSG;
			} else {
				emit(out, outcap, &n, '\\');
				emit(out, outcap, &n, (char)('0' + b / 100));
				emit(out, outcap, &n, (char)('0' + b / 10 % 10));
				emit(out, outcap, &n, (char)('0' + b % 10));
			}
		}
		pos += (size_t)c + 1;
	}
	if (!jumped)
		end = pos + 1;
	if (out) {
		if (n >= outcap) {
			if (outcap)
				out[0] = '\0';
			return -ENOSPC;
		}
		out[n] = '\0';
	}
	if (next)
		*next = end;
	return (int)n;
}

int crgw_dns_name_decode(const uint8_t *msg, size_t len, size_t off, char *out, size_t outcap, size_t *next)
{
	if (!msg || (!out && outcap))
		return -EINVAL;
	return name_read(msg, len, off, false, out, outcap, next);
}

/*
 * Reads the question or record at msg[off] into *rr, its owner decoded into name[namecap] (NULL to only
 * measure). Returns the offset just past it, or -EBADMSG.
 */
static int rr_read(const uint8_t *msg, size_t len, size_t off, enum crgw_dns_section section, struct crgw_dns_rr *rr,
		   char *name, size_t namecap)
{
	size_t pos;
	int rc = name_read(msg, len, off, false, name, namecap, &pos);

	if (rc < 0)
		return -EBADMSG;
	memset(rr, 0, sizeof(*rr));
	rr->section = section;
	rr->name = name;
	rr->name_len = (size_t)rc;
	rr->offset = off;
	if (section == CRGW_DNS_SEC_QUESTION) {
		if (len - pos < QUESTION_FIXED)
			return -EBADMSG;
		rr->type = rd16(msg + pos);
		rr->rclass = rd16(msg + pos + 2);
		return (int)(pos + QUESTION_FIXED);
	}
	if (len - pos < RR_FIXED)
		return -EBADMSG;
	rr->type = rd16(msg + pos);
	rr->rclass = rd16(msg + pos + 2);
	rr->ttl = rd32(msg + pos + 4);
	rr->rdlen = rd16(msg + pos + 8);
	pos += RR_FIXED;
	if (rr->rdlen > len - pos)
		return -EBADMSG;
	rr->rdata = msg + pos;
	rr->rdata_offset = pos;
	return (int)(pos + rr->rdlen);
}

/* Rdata that is exactly one name: the record types whose names the gateway follows or reports. */
static bool rdata_is_name(uint16_t type)
{
	return type == CRGW_DNS_CNAME || type == CRGW_DNS_NS || type == CRGW_DNS_PTR;
}

int crgw_dns_msg_walk(const uint8_t *msg, size_t len, crgw_dns_rr_cb cb, void *arg)
{
	char name[CRGW_DNS_NAME_TEXT_MAX];
	size_t count[4], off = CRGW_DNS_HEADER_LEN;

	if (!msg || len < CRGW_DNS_HEADER_LEN)
		return -EBADMSG;
	/* Offsets come back as int, and nothing legitimate is longer. */
	if (len > CRGW_DNS_TCP_MAX)
		return -EMSGSIZE;
	for (int s = 0; s < 4; s++)
		count[s] = rd16(msg + 4 + 2 * s);
	/* Counts no message of this length can hold are refused before any work is spent on them. */
	if (count[0] * QUESTION_MIN + (count[1] + count[2] + count[3]) * RR_MIN > len - off)
		return -EBADMSG;
	for (int s = CRGW_DNS_SEC_QUESTION; s <= CRGW_DNS_SEC_ADDITIONAL; s++) {
		for (size_t i = 0; i < count[s]; i++) {
			struct crgw_dns_rr rr;
			int rc = rr_read(msg, len, off, (enum crgw_dns_section)s, &rr, name, sizeof(name));

			if (rc < 0)
				return rc;
			off = (size_t)rc;
			if (s != CRGW_DNS_SEC_QUESTION && rdata_is_name(rr.type)) {
				size_t end;

				/* A name running past its rdata would make callers read the next record as a name. */
				if (name_read(msg, len, rr.rdata_offset, false, NULL, 0, &end) < 0 ||
				    end != rr.rdata_offset + rr.rdlen)
					return -EBADMSG;
			}
			if (cb) {
				rc = cb(&rr, arg);
				if (rc)
					return rc < 0 ? rc : -ECANCELED;
			}
		}
	}
	return (int)off;
}

/* Checks an OPT record's options: each a code, a length and that many bytes, filling the rdata exactly. */
static int opt_check(const struct crgw_dns_rr *rr)
{
	size_t pos = 0;

	while (pos < rr->rdlen) {
		if (rr->rdlen - pos < 4)
			return -EBADMSG;
		size_t olen = rd16(rr->rdata + pos + 2);

		pos += 4;
		if (olen > rr->rdlen - pos)
			return -EBADMSG;
		pos += olen;
	}
	return 0;
}

int crgw_dns_query_parse(const uint8_t *msg, size_t len, struct crgw_dns_query *q)
{
	struct crgw_dns_query edns = { 0 };
	size_t off;
	int rc;

	memset(q, 0, sizeof(*q));
	if (!msg || len < CRGW_DNS_HEADER_LEN || len > CRGW_DNS_TCP_MAX)
		return -EINVAL;
	q->id = rd16(msg);
	q->flags = rd16(msg + 2);
	if (q->flags & CRGW_DNS_F_QR)
		return -EINVAL;
	if (q->flags & CRGW_DNS_F_OPCODE)
		return -EOPNOTSUPP;
	if (rd16(msg + 4) != 1)
		return -EBADMSG;
	rc = name_read(msg, len, CRGW_DNS_HEADER_LEN, true, q->name, sizeof(q->name), &off);
	if (rc < 0 || len - off < QUESTION_FIXED) {
		q->name[0] = '\0';
		return -EBADMSG;
	}
	q->name_len = (size_t)rc;
	q->qtype = rd16(msg + off);
	q->qclass = rd16(msg + off + 2);
	off += QUESTION_FIXED;
	q->question_end = off;

	/* A query carries nothing in these sections; records there are someone probing the parser. */
	if (rd16(msg + 6) || rd16(msg + 8))
		return -EBADMSG;
	size_t arcount = rd16(msg + 10);

	if (arcount * RR_MIN > len - off)
		return -EBADMSG;
	for (size_t i = 0; i < arcount; i++) {
		struct crgw_dns_rr rr;

		rc = rr_read(msg, len, off, CRGW_DNS_SEC_ADDITIONAL, &rr, NULL, 0);
		if (rc < 0)
			return rc;
		off = (size_t)rc;
		if (rr.type != CRGW_DNS_OPT)
			continue;
		/* RFC 6891 6.1.1: one OPT, owned by the root; a second one is a FORMERR. */
		if (edns.edns || rr.name_len != 0 || opt_check(&rr) < 0)
			return -EBADMSG;
		edns.edns = true;
		edns.edns_udp_size = rr.rclass < CRGW_DNS_UDP_PLAIN_MAX ? CRGW_DNS_UDP_PLAIN_MAX : rr.rclass;
		edns.edns_version = (uint8_t)(rr.ttl >> 16);
		edns.edns_do = (rr.ttl & 0x8000) != 0;
	}
	/* Set only now, so that every FORMERR above goes out without an OPT we could not read. */
	q->edns = edns.edns;
	q->edns_udp_size = edns.edns_udp_size;
	q->edns_version = edns.edns_version;
	q->edns_do = edns.edns_do;
	if (q->edns && q->edns_version != 0)
		return -EPROTONOSUPPORT;
	return 0;
}

static size_t answer_len(const struct crgw_dns_answer *a)
{
	return 2 + RR_FIXED + (a->type == CRGW_DNS_A ? 4 : 16);
}

int crgw_dns_response_build(uint8_t *out, size_t cap, size_t limit, const uint8_t *msg, size_t len,
			    const struct crgw_dns_query *q, int rcode, const struct crgw_dns_answer *answers, size_t n)
{
	size_t qlen = 0, base, need, off;
	bool tc = false;
	uint16_t flags;

	if (!out || !q || rcode < 0 || rcode > 0xfff || (rcode > 0xf && !q->edns) || (n && !answers))
		return -EINVAL;
	if (q->question_end) {
		/* Trust but verify: a stale or hand-made q must not make us copy past the query. */
		if (!msg || q->question_end > len || q->question_end < CRGW_DNS_HEADER_LEN + QUESTION_MIN ||
		    q->question_end > CRGW_DNS_HEADER_LEN + CRGW_DNS_NAME_MAX + QUESTION_FIXED)
			return -EINVAL;
		qlen = q->question_end - CRGW_DNS_HEADER_LEN;
	}
	/* Answers point at the echoed question's name; without it the pointer would lead nowhere. */
	if (n && !qlen)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (answers[i].type != CRGW_DNS_A && answers[i].type != CRGW_DNS_AAAA)
			return -EINVAL;
	if (limit > CRGW_DNS_TCP_MAX)
		limit = CRGW_DNS_TCP_MAX;
	base = CRGW_DNS_HEADER_LEN + qlen + (q->edns ? OPT_LEN : 0);
	need = base;
	/* Stops at the first answer past the limit, so a huge n costs at most limit / 16 steps. */
	for (size_t i = 0; i < n; i++) {
		need += answer_len(&answers[i]);
		if (need > limit) {
			tc = true;
			need = base;
			n = 0;
			break;
		}
	}
	/* Even without answers it cannot go out: no truncation can help (only a hand-made limit gets here). */
	if (need > cap || need > limit)
		return -ENOSPC;

	flags = CRGW_DNS_F_QR | CRGW_DNS_F_RA | (q->flags & (CRGW_DNS_F_OPCODE | CRGW_DNS_F_RD | CRGW_DNS_F_CD)) |
		(tc ? CRGW_DNS_F_TC : 0) | (uint16_t)(rcode & CRGW_DNS_F_RCODE);
	wr16(out, q->id);
	wr16(out + 2, flags);
	wr16(out + 4, qlen ? 1 : 0);
	wr16(out + 6, (uint16_t)n);
	wr16(out + 8, 0);
	wr16(out + 10, q->edns ? 1 : 0);
	off = CRGW_DNS_HEADER_LEN;
	if (qlen)
		memcpy(out + off, msg + CRGW_DNS_HEADER_LEN, qlen);
	off += qlen;
	for (size_t i = 0; i < n; i++) {
		const struct crgw_dns_answer *a = &answers[i];
		uint16_t alen = a->type == CRGW_DNS_A ? 4 : 16;

		wr16(out + off, 0xc000 | CRGW_DNS_HEADER_LEN);
		wr16(out + off + 2, a->type);
		wr16(out + off + 4, CRGW_DNS_CLASS_IN);
		wr32(out + off + 6, a->ttl > TTL_MAX ? TTL_MAX : a->ttl);
		wr16(out + off + 10, alen);
		memcpy(out + off + 12, a->addr, alen);
		off += 12 + alen;
	}
	if (q->edns) {
		/* Root owner; class is our UDP size; TTL is upper rcode bits, version 0, DO echoed (RFC 3225). */
		out[off] = 0;
		wr16(out + off + 1, CRGW_DNS_OPT);
		wr16(out + off + 3, CRGW_DNS_EDNS_UDP_SIZE);
		wr32(out + off + 5, (uint32_t)(rcode >> 4) << 24 | (q->edns_do ? 0x8000u : 0));
		wr16(out + off + 9, 0);
		off += OPT_LEN;
	}
	return (int)off;
}
