/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the query parser, the whole-message walker and the response builder, and checks that every
 * response built from a parsed query reads back as the same question with the answers we put in.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dnsmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	const uint8_t *msg;
	size_t len;
	const char *qname; /* expected owner of questions and answers, when set */
	size_t count[4];
};

static int check_rr(const struct crgw_dns_rr *rr, void *arg)
{
	struct seen *s = arg;
	char target[CRGW_DNS_NAME_TEXT_MAX];

	if (strlen(rr->name) != rr->name_len || rr->name_len >= CRGW_DNS_NAME_TEXT_MAX || rr->offset >= s->len)
		abort();
	if (rr->rdata && (rr->rdata != s->msg + rr->rdata_offset || rr->rdata_offset + rr->rdlen > s->len))
		abort();
	if (s->qname && rr->section <= CRGW_DNS_SEC_ANSWER && strcmp(rr->name, s->qname) != 0)
		abort();
	/* The walker vouched for single-name rdata; decoding it must agree. */
	if (rr->type == CRGW_DNS_CNAME && rr->section != CRGW_DNS_SEC_QUESTION &&
	    crgw_dns_name_decode(s->msg, s->len, rr->rdata_offset, target, sizeof(target), NULL) < 0)
		abort();
	s->count[rr->section]++;
	return 0;
}

static void check_name(const struct crgw_dns_query *q)
{
	if (strlen(q->name) != q->name_len || q->name_len >= CRGW_DNS_HOST_TEXT_MAX)
		abort();
	for (size_t i = 0; i < q->name_len; i++) {
		char c = q->name[i];
		bool dot = c == '.';

		if (!(dot || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			abort();
		if (dot && (i == 0 || i + 1 == q->name_len || q->name[i + 1] == '.'))
			abort();
	}
}

/* Builds a response to a parsed query and reads it back. */
static void respond(const uint8_t *data, size_t size, const struct crgw_dns_query *q, int rcode, size_t limit)
{
	static uint8_t out[CRGW_DNS_TCP_MAX];
	struct crgw_dns_answer ans[64];
	size_t n = q->question_end && rcode == CRGW_DNS_NOERROR ? data[size - 1] % 64 : 0;

	for (size_t i = 0; i < n; i++) {
		ans[i] = (struct crgw_dns_answer){ .type = (i & 1) ? CRGW_DNS_AAAA : CRGW_DNS_A, .ttl = (uint32_t)i };
		memset(ans[i].addr, (int)i, sizeof(ans[i].addr));
	}
	int len = crgw_dns_response_build(out, sizeof(out), limit, data, size, q, rcode, ans, n);

	if (len < CRGW_DNS_HEADER_LEN || (size_t)len > limit)
		abort();

	struct seen s = { .msg = out, .len = (size_t)len, .qname = q->question_end ? q->name : NULL };
	bool tc = out[2] & (CRGW_DNS_F_TC >> 8);

	if (crgw_dns_msg_walk(out, (size_t)len, check_rr, &s) != len)
		abort();
	if ((out[0] << 8 | out[1]) != q->id || !(out[2] & 0x80) || (out[3] & 0x0f) != (rcode & 0x0f))
		abort();
	if (s.count[0] != (q->question_end ? 1u : 0u) || s.count[1] != (tc ? 0 : n) || s.count[3] != q->edns)
		abort();
	/* The question goes back byte for byte, so the client's 0x20 case mixing survives. */
	if (q->question_end && memcmp(out + 12, data + 12, q->question_end - 12) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct crgw_dns_query q;
	struct seen s = { .msg = data, .len = size };
	int rc = crgw_dns_query_parse(data, size, &q), rcode;
	int wrc = crgw_dns_msg_walk(data, size, check_rr, &s);

	if (wrc < 0 ? wrc != -EBADMSG && wrc != -EMSGSIZE : wrc < CRGW_DNS_HEADER_LEN || (size_t)wrc > size)
		abort();
	switch (rc) {
	case -EINVAL:
		return 0;
	case 0:
		rcode = CRGW_DNS_NOERROR;
		break;
	case -EBADMSG:
		rcode = CRGW_DNS_FORMERR;
		break;
	case -EOPNOTSUPP:
		rcode = CRGW_DNS_NOTIMP;
		break;
	case -EPROTONOSUPPORT:
		rcode = CRGW_DNS_BADVERS;
		break;
	default:
		abort();
	}
	check_name(&q);
	if (q.question_end) {
		char text[CRGW_DNS_NAME_TEXT_MAX];

		/* A host name must decode the same through the general decoder. */
		if (q.question_end > size || crgw_dns_name_decode(data, size, 12, text, sizeof(text), NULL) < 0 ||
		    strcmp(text, q.name) != 0)
			abort();
	}
	if (((rc == 0 || rc == -EPROTONOSUPPORT) && !q.question_end) || (rc == -EOPNOTSUPP && q.question_end))
		abort();
	respond(data, size, &q, rcode, q.edns ? q.edns_udp_size : CRGW_DNS_UDP_PLAIN_MAX);
	respond(data, size, &q, rcode, CRGW_DNS_TCP_MAX);
	return 0;
}
