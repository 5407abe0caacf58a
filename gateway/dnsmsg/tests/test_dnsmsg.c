/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Table-driven tests of the DNS message library. Messages are written in a small notation: hex byte pairs
 * (spaces ignored), "[text]" for a length-prefixed label (\xHH escapes inside), "[N*c]" for a label of N
 * copies of c. The one argument is the fuzz seed corpus, replayed so a crash input stays fixed even in a
 * build without libFuzzer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnsmsg.h"
#include "tap.h"

#define MSG_MAX 70000

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Turns the notation into bytes; a malformed spec is a bug in this file, so it stops the test. */
static size_t unhex(const char *spec, uint8_t *out, size_t cap)
{
	size_t n = 0;

	for (const char *p = spec; *p;) {
		if (*p == ' ') {
			p++;
		} else if (*p == '[') {
			size_t lenpos = n++;
			char *end;
			unsigned long rep = strtoul(p + 1, &end, 10);

			if (end != p + 1 && *end == '*' && end[2] == ']') {
				for (unsigned long i = 0; i < rep && n < cap; i++)
					out[n++] = (uint8_t)end[1];
				p = end + 3;
			} else {
				for (p++; *p && *p != ']' && n < cap; p++) {
					if (p[0] == '\\' && p[1] == 'x' && hexval(p[2]) >= 0 && hexval(p[3]) >= 0) {
						out[n++] = (uint8_t)(hexval(p[2]) << 4 | hexval(p[3]));
						p += 3;
					} else {
						out[n++] = (uint8_t)*p;
					}
				}
				if (*p != ']')
					goto bad;
				p++;
			}
			if (n - lenpos - 1 > 255)
				goto bad;
			out[lenpos] = (uint8_t)(n - lenpos - 1);
		} else if (hexval(p[0]) >= 0 && hexval(p[1]) >= 0 && n < cap) {
			out[n++] = (uint8_t)(hexval(p[0]) << 4 | hexval(p[1]));
			p += 2;
		} else {
			goto bad;
		}
	}
	return n;
bad:
	fprintf(stderr, "bad test spec: %s\n", spec);
	exit(2);
}

/* Header with id abcd: flags, qdcount, ancount, nscount, arcount. */
#define HDR(f, qd, an, ns, ar) "abcd " f " " qd " " an " " ns " " ar " "
#define QHDR HDR("0100", "0001", "0000", "0000", "0000")
#define QHDR_E HDR("0100", "0001", "0000", "0000", "0001")
#define WWW "[www][example][com]00 "
#define A_IN "0001 0001 "
#define OPT_DO "00 0029 1000 00008000 0000 "

/* ---- crgw_dns_query_parse ---- */

struct qcase {
	const char *what;
	const char *spec;
	int rc;
	const char *name;	/* checked when rc is 0 or -EPROTONOSUPPORT */
	size_t name_len;	/* checked instead of name when name is NULL and this is non-zero */
	uint16_t qtype, qclass; /* qclass 0 stands for IN */
	size_t qend;
	int edns; /* 1: expect an OPT with udp/dobit/version; 0: expect none */
	uint16_t udp;
	bool dobit;
	uint8_t version;
};

#define NOEDNS 0, 0, false, 0
#define EDNS(udp, dobit, version) 1, udp, dobit, version

static const struct qcase qcases[] = {
	{ "A query", QHDR WWW A_IN, 0, "www.example.com", 0, 1, 0, 33, NOEDNS },
	{ "AAAA query", QHDR WWW "001c 0001", 0, "www.example.com", 0, 28, 0, 33, NOEDNS },
	{ "TXT query", QHDR WWW "0010 0001", 0, "www.example.com", 0, 16, 0, 33, NOEDNS },
	{ "HTTPS query", QHDR WWW "0041 0001", 0, "www.example.com", 0, 65, 0, 33, NOEDNS },
	{ "ANY query is the caller's call", QHDR WWW "00ff 0001", 0, "www.example.com", 0, 255, 0, 33, NOEDNS },
	{ "root NS query", QHDR "00 0002 0001", 0, "", 0, 2, 0, 17, NOEDNS },
	{ "0x20 mixed case is lowercased", QHDR "[WwW][eXaMpLe][cOM]00 " A_IN, 0, "www.example.com", 0, 1, 0, 33,
	  NOEDNS },
	{ "upper case", QHDR "[EXAMPLE][COM]00 " A_IN, 0, "example.com", 0, 1, 0, 29, NOEDNS },
	{ "underscore and hyphen", QHDR "[_acme-challenge][my-host][io]00 0010 0001", 0,
	  "_acme-challenge.my-host.io", 0, 16, 0, 44, NOEDNS },
	{ "digits", QHDR "[1][2][3][4][in-addr][arpa]00 000c 0001", 0, "1.2.3.4.in-addr.arpa", 0, 12, 0, 38, NOEDNS },
	{ "class CH passes through", QHDR "[version][bind]00 0010 0003", 0, "version.bind", 0, 16, 3, 30, NOEDNS },
	{ "RD clear", HDR("0000", "0001", "0000", "0000", "0000") WWW A_IN, 0, "www.example.com", 0, 1, 0, 33, NOEDNS },
	{ "AD, CD and Z kept in flags", HDR("0170", "0001", "0000", "0000", "0000") WWW A_IN, 0, "www.example.com",
	  0, 1, 0, 33, NOEDNS },
	{ "trailing bytes after the counts are ignored", QHDR WWW A_IN "deadbeef", 0, "www.example.com", 0, 1, 0,
	  33, NOEDNS },
	{ "label of 63", QHDR "[63*a][com]00 " A_IN, 0, NULL, 67, 1, 0, 12 + 69 + 4, NOEDNS },
	{ "name of 255 wire bytes", QHDR "[63*a][63*b][63*c][61*d]00 " A_IN, 0, NULL, 253, 1, 0, 12 + 255 + 4, NOEDNS },
	{ "EDNS with DO", QHDR_E WWW A_IN OPT_DO, 0, "www.example.com", 0, 1, 0, 33, EDNS(4096, true, 0) },
	{ "EDNS 1232 without DO", QHDR_E WWW A_IN "00 0029 04d0 00000000 0000", 0, "www.example.com", 0, 1, 0, 33,
	  EDNS(1232, false, 0) },
	{ "EDNS size below 512 reads as 512", QHDR_E WWW A_IN "00 0029 0064 00000000 0000", 0, "www.example.com",
	  0, 1, 0, 33, EDNS(512, false, 0) },
	{ "EDNS with a cookie", QHDR_E WWW A_IN "00 0029 1000 00000000 000c 000a 0008 0102030405060708", 0,
	  "www.example.com", 0, 1, 0, 33, EDNS(4096, false, 0) },
	{ "EDNS with two options",
	  QHDR_E WWW A_IN "00 0029 1000 00008000 0012 000a 0008 0102030405060708 000c 0002 0000",
	  0, "www.example.com", 0, 1, 0, 33, EDNS(4096, true, 0) },
	{ "EDNS owner a pointer to the root", QHDR_E WWW A_IN "c01c 0029 1000 00000000 0000", 0, "www.example.com",
	  0, 1, 0, 33, EDNS(4096, false, 0) },
	{ "EDNS version 1 asks for BADVERS", QHDR_E WWW A_IN "00 0029 1000 00018000 0000", -EPROTONOSUPPORT,
	  "www.example.com", 0, 1, 0, 33, EDNS(4096, true, 1) },
	{ "EDNS option overruns its record", QHDR_E WWW A_IN "00 0029 1000 00000000 0006 000a 0008 1122", -EBADMSG,
	  NULL, 0, 0, 0, 33, NOEDNS },
	{ "EDNS option header cut short", QHDR_E WWW A_IN "00 0029 1000 00000000 0002 000a", -EBADMSG, NULL, 0, 0, 0,
	  33, NOEDNS },
	{ "EDNS rdata overruns the message", QHDR_E WWW A_IN "00 0029 1000 00000000 0010 000a 0008", -EBADMSG, NULL,
	  0, 0, 0, 33, NOEDNS },
	{ "OPT owner not the root", QHDR_E WWW A_IN "[x]00 0029 1000 00000000 0000", -EBADMSG, NULL, 0, 0, 0, 33,
	  NOEDNS },
	{ "two OPT records", HDR("0100", "0001", "0000", "0000", "0002") WWW A_IN OPT_DO OPT_DO, -EBADMSG, NULL, 0, 0,
	  0, 33, NOEDNS },
	{ "other additional record ignored", QHDR_E WWW A_IN "c00c 0001 0001 00000e10 0004 01020304", 0,
	  "www.example.com", 0, 1, 0, 33, NOEDNS },
	{ "OPT after another additional record", HDR("0100", "0001", "0000", "0000", "0002") WWW A_IN
	  "c00c 0001 0001 00000e10 0004 01020304 " OPT_DO, 0, "www.example.com", 0, 1, 0, 33, EDNS(4096, true, 0) },
	{ "additional record cut short", QHDR_E WWW A_IN "c00c 0001 0001 00000e10 0004 0102", -EBADMSG, NULL, 0, 0,
	  0, 33, NOEDNS },
	{ "additional owner points forward", QHDR_E WWW A_IN "c030 0001 0001 00000e10 0000", -EBADMSG, NULL, 0, 0, 0,
	  33, NOEDNS },
	{ "additional owner points at itself", QHDR_E WWW A_IN "c021 0001 0001 00000e10 0000", -EBADMSG, NULL, 0, 0,
	  0, 33, NOEDNS },
	{ "arcount beyond the message", HDR("0100", "0001", "0000", "0000", "0005") WWW A_IN OPT_DO, -EBADMSG, NULL,
	  0, 0, 0, 33, NOEDNS },
	{ "arcount 65535", HDR("0100", "0001", "0000", "0000", "ffff") WWW A_IN OPT_DO, -EBADMSG, NULL, 0, 0, 0, 33,
	  NOEDNS },
	{ "qdcount 0", HDR("0100", "0000", "0000", "0000", "0000"), -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "qdcount 2", HDR("0100", "0002", "0000", "0000", "0000") WWW A_IN WWW A_IN, -EBADMSG, NULL, 0, 0, 0, 0,
	  NOEDNS },
	{ "an answer record in a query", HDR("0100", "0001", "0001", "0000", "0000") WWW A_IN
	  "c00c 0001 0001 00000e10 0004 01020304", -EBADMSG, NULL, 0, 0, 0, 33, NOEDNS },
	{ "an authority record in a query", HDR("0100", "0001", "0000", "0001", "0000") WWW A_IN
	  "c00c 0001 0001 00000e10 0004 01020304", -EBADMSG, NULL, 0, 0, 0, 33, NOEDNS },
	{ "response bit set", HDR("8180", "0001", "0000", "0000", "0000") WWW A_IN, -EINVAL, NULL, 0, 0, 0, 0, NOEDNS },
	{ "opcode STATUS (2)", HDR("1100", "0001", "0000", "0000", "0000") WWW A_IN, -EOPNOTSUPP, NULL, 0, 0, 0, 0,
	  NOEDNS },
	{ "opcode NOTIFY (4)", HDR("2000", "0001", "0000", "0000", "0000") WWW A_IN, -EOPNOTSUPP, NULL, 0, 0, 0, 0,
	  NOEDNS },
	{ "opcode UPDATE (5)", HDR("2800", "0001", "0000", "0000", "0000") WWW A_IN, -EOPNOTSUPP, NULL, 0, 0, 0, 0,
	  NOEDNS },
	{ "empty message", "", -EINVAL, NULL, 0, 0, 0, 0, NOEDNS },
	{ "11 bytes", "abcd 0100 0001 0000 0000 00", -EINVAL, NULL, 0, 0, 0, 0, NOEDNS },
	{ "header only", QHDR, -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "compression pointer as the question", QHDR "c00c " A_IN, -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "compression pointer after a label", QHDR "[www]c00c " A_IN, -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "compression pointer cut short", QHDR "[www]c0", -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "label of 64 (type bits 01)", QHDR "[64*a][com]00 " A_IN, -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "label type bits 10", QHDR "80 " A_IN, -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "name of 256 wire bytes", QHDR "[63*a][63*b][63*c][62*d]00 " A_IN, -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "NUL in a label", QHDR "[a\\x00b][com]00 " A_IN, -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "dot in a label", QHDR "[a.b][com]00 " A_IN, -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "space in a label", QHDR "[a b][com]00 " A_IN, -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "wildcard label", QHDR "[*][example][com]00 " A_IN, -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "byte 0xff in a label", QHDR "[a\\xffb][com]00 " A_IN, -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "UTF-8 in a label", QHDR "[caf\\xc3\\xa9][com]00 " A_IN, -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "label runs off the end", QHDR "[www]07 6578", -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "name without its root octet", QHDR "[www]", -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
	{ "qtype without qclass", QHDR WWW "0001", -EBADMSG, NULL, 0, 0, 0, 0, NOEDNS },
};

static void query_case(const struct qcase *c)
{
	static uint8_t msg[MSG_MAX];
	size_t len = unhex(c->spec, msg, sizeof(msg));
	struct crgw_dns_query q;
	int rc = crgw_dns_query_parse(msg, len, &q);
	char why[160] = "";
	bool named = c->rc == 0 || c->rc == -EPROTONOSUPPORT;

	if (rc != c->rc)
		snprintf(why, sizeof(why), "rc %d, want %d", rc, c->rc);
	else if (rc != -EINVAL && (q.id != 0xabcd || q.flags != (msg[2] << 8 | msg[3])))
		snprintf(why, sizeof(why), "id %04x flags %04x", q.id, q.flags);
	else if (rc == -EINVAL && (q.question_end || q.edns || q.name[0]))
		snprintf(why, sizeof(why), "fields set on a dropped message");
	else if (q.question_end != c->qend)
		snprintf(why, sizeof(why), "question_end %zu, want %zu", q.question_end, c->qend);
	else if (named && c->name && strcmp(q.name, c->name) != 0)
		snprintf(why, sizeof(why), "name \"%s\"", q.name);
	else if (named && strlen(q.name) != q.name_len)
		snprintf(why, sizeof(why), "name_len %zu for \"%s\"", q.name_len, q.name);
	else if (named && !c->name && q.name_len != c->name_len)
		snprintf(why, sizeof(why), "name_len %zu, want %zu", q.name_len, c->name_len);
	else if (named && (q.qtype != c->qtype || q.qclass != (c->qclass ? c->qclass : 1)))
		snprintf(why, sizeof(why), "qtype %u qclass %u", q.qtype, q.qclass);
	else if (!named && !c->qend && q.name[0])
		snprintf(why, sizeof(why), "name \"%s\" left on a refused question", q.name);
	else if (q.edns != (c->edns == 1))
		snprintf(why, sizeof(why), "edns %d", q.edns);
	else if (q.edns && (q.edns_udp_size != c->udp || q.edns_do != c->dobit || q.edns_version != c->version))
		snprintf(why, sizeof(why), "edns size %u do %d version %u", q.edns_udp_size, q.edns_do,
			 q.edns_version);
	tap_result(!why[0], "parse: %s%s%s", c->what, why[0] ? ": " : "", why);
}

/* Every prefix of a valid query is refused the right way, and only the whole message parses. */
static void query_prefixes(void)
{
	uint8_t msg[128];
	size_t full = unhex(QHDR_E WWW A_IN "00 0029 1000 00008000 000c 000a 0008 0102030405060708", msg, sizeof(msg));

	for (size_t len = 0; len <= full; len++) {
		struct crgw_dns_query q;
		uint8_t *copy = malloc(len ? len : 1);
		int want = len < 12 ? -EINVAL : len < full ? -EBADMSG : 0;
		size_t want_qend = len >= 33 ? 33 : 0;

		/* A heap copy of exactly len bytes, so ASan sees any read past the end. */
		memcpy(copy, msg, len);
		int rc = crgw_dns_query_parse(copy, len, &q);

		tap_result(rc == want && (rc == -EINVAL || q.question_end == want_qend) && q.edns == (rc == 0),
			   "parse: prefix of %zu of %zu bytes gives %d (want %d), question_end %zu", len, full, rc,
			   want, q.question_end);
		free(copy);
	}
}

static void query_too_long(void)
{
	static uint8_t msg[MSG_MAX];
	size_t len = unhex(QHDR WWW A_IN, msg, sizeof(msg));
	struct crgw_dns_query q;

	(void)len;
	tap_result(crgw_dns_query_parse(msg, 65536, &q) == -EINVAL, "parse: 65536 bytes are dropped");
	tap_result(crgw_dns_query_parse(msg, 65535, &q) == 0, "parse: 65535 bytes with trailing zeros parse");
}

/* ---- crgw_dns_msg_walk ---- */

struct got_rr {
	int section;
	char name[CRGW_DNS_NAME_TEXT_MAX];
	size_t name_len;
	uint16_t type, rclass, rdlen;
	uint32_t ttl;
	uint8_t rdata[64];
	size_t offset, rdata_offset;
	bool rdata_null;
};

struct got {
	size_t n;
	int stop_at, stop_rc;
	struct got_rr rr[48];
};

static int collect(const struct crgw_dns_rr *rr, void *arg)
{
	struct got *g = arg;

	if (g->stop_rc && (int)g->n == g->stop_at)
		return g->stop_rc;
	if (g->n >= sizeof(g->rr) / sizeof(g->rr[0]))
		return -E2BIG;
	struct got_rr *r = &g->rr[g->n++];

	r->section = rr->section;
	snprintf(r->name, sizeof(r->name), "%s", rr->name);
	r->name_len = rr->name_len;
	r->type = rr->type;
	r->rclass = rr->rclass;
	r->ttl = rr->ttl;
	r->rdlen = rr->rdlen;
	r->rdata_null = rr->rdata == NULL;
	memcpy(r->rdata, rr->rdata ? rr->rdata : (const uint8_t *)"", rr->rdlen < 64 ? rr->rdlen : 64);
	r->offset = rr->offset;
	r->rdata_offset = rr->rdata_offset;
	return 0;
}

/* A response: www.example.com CNAME cdn.example.com, cdn.example.com A 192.0.2.1, and an OPT. */
#define RESP1                                                                                                  \
	HDR("8180", "0001", "0002", "0000", "0001") WWW A_IN "c00c 0005 0001 0000012c 0006 [cdn]c010 "           \
							     "c02d 0001 0001 0000003c 0004 c0000201 "            \
							     "00 0029 04d0 00008000 0000"

static void walk_response(void)
{
	static uint8_t msg[MSG_MAX];
	size_t len = unhex(RESP1, msg, sizeof(msg));
	struct got g = { 0 };
	int rc = crgw_dns_msg_walk(msg, len, collect, &g);
	struct got_rr *r = g.rr;

	tap_result(rc == (int)len && g.n == 4, "walk: response consumed whole (%d of %zu), %zu entries", rc, len,
		   g.n);
	tap_result(r[0].section == CRGW_DNS_SEC_QUESTION && !strcmp(r[0].name, "www.example.com") &&
			   r[0].name_len == 15 && r[0].type == 1 && r[0].rclass == 1 && r[0].ttl == 0 &&
			   r[0].rdata_null && r[0].offset == 12,
		   "walk: question");
	tap_result(r[1].section == CRGW_DNS_SEC_ANSWER && !strcmp(r[1].name, "www.example.com") && r[1].type == 5 &&
			   r[1].rclass == 1 && r[1].ttl == 300 && r[1].rdlen == 6 && r[1].offset == 33 &&
			   r[1].rdata_offset == 45,
		   "walk: CNAME record");
	char target[CRGW_DNS_NAME_TEXT_MAX];
	size_t next = 0;

	rc = crgw_dns_name_decode(msg, len, r[1].rdata_offset, target, sizeof(target), &next);
	tap_result(rc == 15 && !strcmp(target, "cdn.example.com") && next == 51, "walk: CNAME target decodes (%d %s)",
		   rc, target);
	tap_result(r[2].section == CRGW_DNS_SEC_ANSWER && !strcmp(r[2].name, "cdn.example.com") && r[2].type == 1 &&
			   r[2].ttl == 60 && r[2].rdlen == 4 && !memcmp(r[2].rdata, "\xc0\x00\x02\x01", 4),
		   "walk: A record owned through a pointer into rdata");
	tap_result(r[3].section == CRGW_DNS_SEC_ADDITIONAL && !strcmp(r[3].name, "") && r[3].name_len == 0 &&
			   r[3].type == CRGW_DNS_OPT && r[3].rclass == 1232 && r[3].ttl == 0x8000 && r[3].rdlen == 0,
		   "walk: OPT record");

	g = (struct got){ .stop_at = 2, .stop_rc = -EINTR };
	rc = crgw_dns_msg_walk(msg, len, collect, &g);
	tap_result(rc == -EINTR && g.n == 2, "walk: a callback's error stops the walk and comes back");
	g = (struct got){ .stop_at = 1, .stop_rc = 7 };
	rc = crgw_dns_msg_walk(msg, len, collect, &g);
	tap_result(rc == -ECANCELED && g.n == 1, "walk: a positive callback value comes back as -ECANCELED");
	tap_result(crgw_dns_msg_walk(msg, len, NULL, NULL) == (int)len, "walk: no callback only checks");

	/* Every strict prefix is malformed, since the counts promise more than it holds. */
	bool all = true;

	for (size_t l = 0; l < len; l++) {
		uint8_t *copy = malloc(l ? l : 1);

		memcpy(copy, msg, l);
		if (crgw_dns_msg_walk(copy, l, NULL, NULL) != -EBADMSG)
			all = false;
		free(copy);
	}
	tap_result(all, "walk: each of the %zu prefixes of the response is refused", len);
}

/* A root question, then an answer of unknown type 0xff00 whose rdata (offset 28) holds the test's bytes. */
#define WHDR(an) HDR("8180", "0001", an, "0000", "0000") "00 0001 0001 00 ff00 0001 00000000 "

struct wcase {
	const char *what;
	const char *spec;
	int rc; /* > 0: the walk returns the message length */
	const char *last_name; /* when set, the last record's owner */
};

static const struct wcase wcases[] = {
	{ "pointer to the root question", WHDR("0002") "0000 c00c 0001 0001 00000000 0000", 1, "" },
	{ "self pointer", WHDR("0002") "0000 c01c 0001 0001 00000000 0000", -EBADMSG, NULL },
	{ "two-step loop", WHDR("0002") "0002 c01e c01c 0001 0001 00000000 0000", -EBADMSG, NULL },
	{ "pointer forward", HDR("8180", "0001", "0002", "0000", "0000") "00 0001 0001 c01d 0001 0001 00000000 0000 "
									   "00 0001 0001 00000000 0000",
	  -EBADMSG, NULL },
	{ "pointer into the header", WHDR("0002") "0000 c004 0001 0001 00000000 0000", -EBADMSG, NULL },
	{ "pointer past the message", WHDR("0002") "0000 ffff 0001 0001 00000000 0000", -EBADMSG, NULL },
	{ "pointer cut short", WHDR("0002") "0000 c0", -EBADMSG, NULL },
	{ "pointer into the middle of a label is fine if backwards",
	  WHDR("0002") "0005 [\\x02AB]00 c01d 0001 0001 00000000 0000", 1, "ab" },
	{ "label of 64 in an owner", WHDR("0002") "0000 [64*x]00 0001 0001 00000000 0000", -EBADMSG, NULL },
	{ "name of 255 through a pointer", WHDR("0002") "00ff [63*a][63*b][63*c][61*d]00 c01c 0001 0001 00000000 0000",
	  1, NULL },
	{ "name of 257 through a pointer",
	  WHDR("0002") "00ff [63*a][63*b][63*c][61*d]00 [x]c01c 0001 0001 00000000 0000", -EBADMSG, NULL },
	{ "name of 256 through a pointer",
	  WHDR("0002") "00fe [63*a][63*b][63*c][60*d]00 [x]c01c 0001 0001 00000000 0000", -EBADMSG, NULL },
	{ "name of 193 through a pointer mid-name",
	  WHDR("0002") "00ff [63*a][63*b][63*c][61*d]00 [x]c05c 0001 0001 00000000 0000", 1, NULL },
	{ "rdata overruns the message", WHDR("0001") "0010 0102", -EBADMSG, NULL },
	{ "fixed part cut short", WHDR("0002") "0000 00 0001 0001 0000", -EBADMSG, NULL },
	{ "ancount beyond the message", WHDR("ffff") "0000", -EBADMSG, NULL },
	{ "question cut short", HDR("8180", "0001", "0000", "0000", "0000") "00 0001 00", -EBADMSG, NULL },
	{ "CNAME rdata one name", WHDR("0002") "0000 00 0005 0001 00000000 0003 [a]00", 1, "" },
	{ "CNAME rdata with a backwards pointer", WHDR("0002") "0000 00 0005 0001 00000000 0004 [a]c00c", 1, "" },
	{ "CNAME rdata with a byte after the name", WHDR("0002") "0000 00 0005 0001 00000000 0004 [a]00 ff", -EBADMSG,
	  NULL },
	{ "CNAME name runs past its rdata", WHDR("0002") "0000 00 0005 0001 00000000 0002 [a]00", -EBADMSG, NULL },
	{ "CNAME rdata empty", WHDR("0002") "0000 00 0005 0001 00000000 0000", -EBADMSG, NULL },
	{ "NS rdata with a forward pointer", WHDR("0002") "0000 00 0002 0001 00000000 0002 c040", -EBADMSG, NULL },
	{ "PTR rdata name", WHDR("0002") "0000 00 000c 0001 00000000 0006 [host]00", 1, "" },
	{ "unknown type rdata is not read as a name", WHDR("0001") "0002 c0ff", 1, "" },
	{ "escapes in owner names", WHDR("0002") "0000 [A\\x00.\\xff\\x5c]00 0001 0001 00000000 0000", 1,
	  "a\\000\\046\\255\\092" },
	{ "trailing bytes are left to the caller", WHDR("0001") "0000 0102", 0, NULL },
	{ "header only", HDR("8180", "0000", "0000", "0000", "0000"), 1, NULL },
	{ "11 bytes", "abcd 8180 0000 0000 0000 00", -EBADMSG, NULL },
};

static void walk_case(const struct wcase *c)
{
	static uint8_t msg[MSG_MAX];
	size_t len = unhex(c->spec, msg, sizeof(msg));
	struct got g = { 0 };
	int rc = crgw_dns_msg_walk(msg, len, collect, &g);
	bool ok;

	if (c->rc > 0)
		ok = rc == (int)len;
	else if (c->rc == 0)
		ok = rc > 0 && (size_t)rc < len;
	else
		ok = rc == c->rc;
	if (ok && c->last_name)
		ok = g.n > 0 && !strcmp(g.rr[g.n - 1].name, c->last_name);
	tap_result(ok, "walk: %s: rc %d of %zu, last name \"%s\"", c->what, rc, len, g.n ? g.rr[g.n - 1].name : "");
}

/*
 * Pointer chains: rdata holding pointers that each point two bytes back, ending at the root question,
 * and an owner that enters the chain at its far end, so its name takes `hops` hops.
 */
static int walk_chain(unsigned hops)
{
	static uint8_t msg[MSG_MAX];
	size_t len = unhex(WHDR("0002") "0000", msg, sizeof(msg));
	size_t rdlen_at = len - 2;
	size_t start = len;

	/* The first pointer goes to the root at 12; each later one to the pointer before it. */
	for (unsigned i = 0; i + 1 < hops; i++) {
		size_t target = i == 0 ? 12 : start + 2 * (i - 1);

		msg[len++] = (uint8_t)(0xc0 | target >> 8);
		msg[len++] = (uint8_t)target;
	}
	msg[rdlen_at] = (uint8_t)((len - start) >> 8);
	msg[rdlen_at + 1] = (uint8_t)(len - start);
	size_t owner_target = hops == 1 ? 12 : len - 2;

	msg[len++] = (uint8_t)(0xc0 | owner_target >> 8);
	msg[len++] = (uint8_t)owner_target;
	len += unhex("0001 0001 00000000 0000", msg + len, sizeof(msg) - len);
	int rc = crgw_dns_msg_walk(msg, len, NULL, NULL);

	return rc == (int)len ? 0 : rc;
}

/* ---- crgw_dns_name_decode ---- */

static void decode_cases(void)
{
	static uint8_t msg[MSG_MAX];
	char out[CRGW_DNS_NAME_TEXT_MAX];
	size_t len, next;
	int rc;

	len = unhex(HDR("0000", "0000", "0000", "0000", "0000") "[a\\x00b][C.D]00 [x]c00c", msg, sizeof(msg));
	rc = crgw_dns_name_decode(msg, len, 12, out, sizeof(out), &next);
	tap_result(rc == 13 && !strcmp(out, "a\\000b.c\\046d") && next == 21, "decode: escapes (%d \"%s\")", rc, out);
	rc = crgw_dns_name_decode(msg, len, 21, out, sizeof(out), &next);
	tap_result(rc == 15 && !strcmp(out, "x.a\\000b.c\\046d") && next == 25, "decode: pointer, next after it");
	rc = crgw_dns_name_decode(msg, len, 21, NULL, 0, &next);
	tap_result(rc == 15 && next == 25, "decode: NULL out measures");
	rc = crgw_dns_name_decode(msg, len, 21, out, 16, NULL);
	tap_result(rc == 15 && !strcmp(out, "x.a\\000b.c\\046d"), "decode: exact room for the NUL");
	rc = crgw_dns_name_decode(msg, len, 21, out, 15, NULL);
	tap_result(rc == -ENOSPC && out[0] == '\0', "decode: one byte short is -ENOSPC and empty");
	rc = crgw_dns_name_decode(msg, len, 25, out, sizeof(out), NULL);
	tap_result(rc == -EBADMSG, "decode: offset at the end");
	rc = crgw_dns_name_decode(msg, len, 1000, out, sizeof(out), NULL);
	tap_result(rc == -EBADMSG, "decode: offset past the end");
	rc = crgw_dns_name_decode(msg, len, 12, NULL, 5, NULL);
	tap_result(rc == -EINVAL, "decode: NULL out with room is a caller bug");

	/* The longest text any name can have fits CRGW_DNS_NAME_TEXT_MAX exactly. */
	len = unhex(HDR("0000", "0000", "0000", "0000", "0000") "[63*.][63*.][63*.][61*.]00", msg, sizeof(msg));
	rc = crgw_dns_name_decode(msg, len, 12, out, sizeof(out), &next);
	tap_result(rc == CRGW_DNS_NAME_TEXT_MAX - 1 && strlen(out) == (size_t)rc && next == len,
		   "decode: the longest escaped name fills the buffer (%d)", rc);
}

/* ---- crgw_dns_response_build ---- */

struct built {
	uint8_t buf[MSG_MAX];
	int len;
	struct got g;
	int walk;
};

static void build(struct built *b, size_t cap, size_t limit, const uint8_t *msg, size_t len,
		  const struct crgw_dns_query *q, int rcode, const struct crgw_dns_answer *a, size_t n)
{
	memset(&b->g, 0, sizeof(b->g));
	b->len = crgw_dns_response_build(b->buf, cap, limit, msg, len, q, rcode, a, n);
	b->walk = b->len > 0 ? crgw_dns_msg_walk(b->buf, (size_t)b->len, collect, &b->g) : b->len;
}

static uint16_t hdr16(const struct built *b, size_t at)
{
	return (uint16_t)(b->buf[at] << 8 | b->buf[at + 1]);
}

static bool header_is(const struct built *b, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ar)
{
	return b->len >= 12 && b->walk == b->len && hdr16(b, 0) == 0xabcd && hdr16(b, 2) == flags &&
	       hdr16(b, 4) == qd && hdr16(b, 6) == an && hdr16(b, 8) == 0 && hdr16(b, 10) == ar;
}

static void parse_spec(const char *spec, uint8_t *msg, size_t *len, struct crgw_dns_query *q, int want)
{
	*len = unhex(spec, msg, 512);
	if (crgw_dns_query_parse(msg, *len, q) != want) {
		fprintf(stderr, "test query does not parse as expected: %s\n", spec);
		exit(2);
	}
}

static void build_cases(void)
{
	static struct built b;
	uint8_t msg[512];
	size_t len;
	struct crgw_dns_query q;
	struct crgw_dns_answer ans[40];

	for (unsigned i = 0; i < 40; i++) {
		ans[i] = (struct crgw_dns_answer){ .type = CRGW_DNS_AAAA, .ttl = 30 + i };
		ans[i].addr[0] = 0x20;
		ans[i].addr[1] = 0x01;
		ans[i].addr[2] = 0x0d;
		ans[i].addr[3] = 0xb8;
		ans[i].addr[15] = (uint8_t)i;
	}

	/* Two A answers to a 0x20 query without EDNS. */
	parse_spec(QHDR "[WwW][eXaMpLe][cOM]00 " A_IN, msg, &len, &q, 0);
	struct crgw_dns_answer a2[2] = {
		{ .type = CRGW_DNS_A, .ttl = 300, .addr = { 192, 0, 2, 1 } },
		{ .type = CRGW_DNS_A, .ttl = 0xffffffffu, .addr = { 192, 0, 2, 2 } },
	};

	build(&b, sizeof(b.buf), 512, msg, len, &q, CRGW_DNS_NOERROR, a2, 2);
	tap_result(b.len == 33 + 2 * 16 && header_is(&b, 0x8180, 1, 2, 0), "build: two A answers, header (len %d)",
		   b.len);
	tap_result(!memcmp(b.buf + 12, msg + 12, 21), "build: question echoed byte for byte, 0x20 case kept");
	tap_result(b.g.n == 3 && b.g.rr[0].section == CRGW_DNS_SEC_QUESTION &&
			   !strcmp(b.g.rr[0].name, "www.example.com") && b.g.rr[0].type == 1 && b.g.rr[0].rclass == 1,
		   "build: question reads back");
	bool ok = true;

	for (size_t i = 1; i < b.g.n && i <= 2; i++) {
		struct got_rr *r = &b.g.rr[i];

		ok = ok && r->section == CRGW_DNS_SEC_ANSWER && !strcmp(r->name, "www.example.com") && r->type == 1 &&
		     r->rclass == 1 && r->rdlen == 4 && !memcmp(r->rdata, a2[i - 1].addr, 4) &&
		     b.buf[r->offset] == 0xc0 && b.buf[r->offset + 1] == 12;
	}
	tap_result(ok && b.g.rr[1].ttl == 300, "build: A answers read back, owners point at offset 12");
	tap_result(b.g.n == 3 && b.g.rr[2].ttl == 0x7fffffff, "build: TTL over 2^31-1 sent as 2^31-1");

	/* An AAAA answer to an EDNS query with DO, flags RD AD CD. */
	parse_spec(HDR("0130", "0001", "0000", "0000", "0001") WWW "001c 0001 " OPT_DO, msg, &len, &q, 0);
	build(&b, sizeof(b.buf), q.edns_udp_size, msg, len, &q, CRGW_DNS_NOERROR, ans, 1);
	tap_result(header_is(&b, 0x8190, 1, 1, 1) && b.len == 33 + 28 + 11,
		   "build: EDNS header: RD and CD copied, AD and AA clear, RA set (flags %04x)", hdr16(&b, 2));
	tap_result(b.g.n == 3 && b.g.rr[1].type == 28 && b.g.rr[1].rdlen == 16 &&
			   !memcmp(b.g.rr[1].rdata, ans[0].addr, 16) && b.g.rr[1].ttl == 30,
		   "build: AAAA answer reads back");
	tap_result(b.g.n == 3 && b.g.rr[2].section == CRGW_DNS_SEC_ADDITIONAL && b.g.rr[2].type == CRGW_DNS_OPT &&
			   b.g.rr[2].rclass == CRGW_DNS_EDNS_UDP_SIZE && b.g.rr[2].ttl == 0x8000 &&
			   b.g.rr[2].rdlen == 0 && b.g.rr[2].name_len == 0,
		   "build: OPT with our size 1232 and DO echoed");

	/* 40 AAAA answers: TC at 512 without EDNS, room at 1232 with it, always room on TCP. */
	parse_spec(QHDR WWW "001c 0001", msg, &len, &q, 0);
	build(&b, sizeof(b.buf), CRGW_DNS_UDP_PLAIN_MAX, msg, len, &q, CRGW_DNS_NOERROR, ans, 40);
	tap_result(header_is(&b, 0x8380, 1, 0, 0) && b.len == 33, "build: 40 AAAA over plain UDP: TC, no answers");
	build(&b, sizeof(b.buf), CRGW_DNS_TCP_MAX, msg, len, &q, CRGW_DNS_NOERROR, ans, 40);
	tap_result(header_is(&b, 0x8180, 1, 40, 0) && b.len == 33 + 40 * 28 && b.g.n == 41 &&
			   b.g.rr[40].ttl == 69 && b.g.rr[40].rdata[15] == 39,
		   "build: 40 AAAA over TCP all there");
	build(&b, 33 + 40 * 28, 33 + 40 * 28, msg, len, &q, CRGW_DNS_NOERROR, ans, 40);
	tap_result(header_is(&b, 0x8180, 1, 40, 0), "build: answers exactly at the limit: no TC");
	build(&b, sizeof(b.buf), 33 + 40 * 28 - 1, msg, len, &q, CRGW_DNS_NOERROR, ans, 40);
	tap_result(header_is(&b, 0x8380, 1, 0, 0), "build: one byte over the limit: TC");
	build(&b, 33 + 40 * 28 - 1, CRGW_DNS_TCP_MAX, msg, len, &q, CRGW_DNS_NOERROR, ans, 40);
	tap_result(b.len == -ENOSPC, "build: answers within the limit but over cap: -ENOSPC, not TC");
	build(&b, sizeof(b.buf), 100000, msg, len, &q, CRGW_DNS_NOERROR, ans, 40);
	tap_result(header_is(&b, 0x8180, 1, 40, 0), "build: a limit over 65535 is clamped");

	parse_spec(QHDR_E WWW "001c 0001 " OPT_DO, msg, &len, &q, 0);
	build(&b, sizeof(b.buf), 1232, msg, len, &q, CRGW_DNS_NOERROR, ans, 40);
	tap_result(header_is(&b, 0x8180, 1, 40, 1) && b.len == 33 + 40 * 28 + 11, "build: 40 AAAA fit EDNS 1232");
	build(&b, sizeof(b.buf), 512, msg, len, &q, CRGW_DNS_NOERROR, ans, 40);
	tap_result(header_is(&b, 0x8380, 1, 0, 1) && b.len == 44 && b.g.n == 2 && b.g.rr[1].type == CRGW_DNS_OPT,
		   "build: EDNS 512: TC, OPT kept");

	/* Mixed A and AAAA. */
	struct crgw_dns_answer mix[2] = { { .type = CRGW_DNS_A, .addr = { 1, 2, 3, 4 } }, ans[5] };

	parse_spec(QHDR WWW "00ff 0001", msg, &len, &q, 0);
	build(&b, sizeof(b.buf), 512, msg, len, &q, CRGW_DNS_NOERROR, mix, 2);
	tap_result(header_is(&b, 0x8180, 1, 2, 0) && b.g.n == 3 && b.g.rr[1].type == 1 && b.g.rr[2].type == 28 &&
			   b.g.rr[2].rdata[15] == 5,
		   "build: A then AAAA");

	/* Errors: FORMERR without and with a question, NOTIMP, BADVERS. */
	parse_spec(HDR("0100", "0000", "0000", "0000", "0000"), msg, &len, &q, -EBADMSG);
	build(&b, sizeof(b.buf), 512, msg, len, &q, CRGW_DNS_FORMERR, NULL, 0);
	tap_result(header_is(&b, 0x8181, 0, 0, 0) && b.len == 12, "build: FORMERR header only");
	parse_spec(QHDR_E "[www]c00c " A_IN OPT_DO, msg, &len, &q, -EBADMSG);
	build(&b, sizeof(b.buf), 512, NULL, 0, &q, CRGW_DNS_FORMERR, NULL, 0);
	tap_result(header_is(&b, 0x8181, 0, 0, 0) && b.len == 12,
		   "build: FORMERR for a bad question: header only, no OPT, msg may be NULL");
	parse_spec(HDR("0100", "0001", "0001", "0000", "0000") WWW A_IN "c00c 0001 0001 00000e10 0004 01020304", msg,
		   &len, &q, -EBADMSG);
	build(&b, sizeof(b.buf), 512, msg, len, &q, CRGW_DNS_FORMERR, NULL, 0);
	tap_result(header_is(&b, 0x8181, 1, 0, 0) && b.len == 33 && !memcmp(b.buf + 12, msg + 12, 21),
		   "build: FORMERR echoes a good question");
	parse_spec(HDR("1100", "0001", "0000", "0000", "0000") WWW A_IN, msg, &len, &q, -EOPNOTSUPP);
	build(&b, sizeof(b.buf), 512, msg, len, &q, CRGW_DNS_NOTIMP, NULL, 0);
	tap_result(header_is(&b, 0x9184, 0, 0, 0) && b.len == 12, "build: NOTIMP keeps opcode 2 (flags %04x)",
		   hdr16(&b, 2));
	parse_spec(QHDR_E WWW A_IN "00 0029 1000 00018000 0000", msg, &len, &q, -EPROTONOSUPPORT);
	build(&b, sizeof(b.buf), 512, msg, len, &q, CRGW_DNS_BADVERS, NULL, 0);
	tap_result(header_is(&b, 0x8180, 1, 0, 1) && b.g.n == 2 && b.g.rr[1].ttl == 0x01008000,
		   "build: BADVERS: rcode 0 in the header, 1 in the OPT's upper bits");
	parse_spec(QHDR WWW A_IN, msg, &len, &q, 0);
	build(&b, sizeof(b.buf), 512, msg, len, &q, CRGW_DNS_BADVERS, NULL, 0);
	tap_result(b.len == -EINVAL, "build: an extended rcode without EDNS is -EINVAL");
	build(&b, sizeof(b.buf), 512, msg, len, &q, 4096, NULL, 0);
	tap_result(b.len == -EINVAL, "build: rcode 4096 is -EINVAL");
	build(&b, sizeof(b.buf), 512, msg, len, &q, -1, NULL, 0);
	tap_result(b.len == -EINVAL, "build: negative rcode is -EINVAL");
	build(&b, sizeof(b.buf), 512, msg, len, &q, CRGW_DNS_NXDOMAIN, NULL, 0);
	tap_result(header_is(&b, 0x8183, 1, 0, 0) && b.len == 33, "build: NXDOMAIN with the question");
	build(&b, sizeof(b.buf), 512, msg, len, &q, CRGW_DNS_REFUSED, NULL, 0);
	tap_result(header_is(&b, 0x8185, 1, 0, 0), "build: REFUSED");

	/* Small buffers and caller mistakes. */
	build(&b, 11, 512, msg, len, &q, CRGW_DNS_NOERROR, NULL, 0);
	tap_result(b.len == -ENOSPC, "build: cap 11 is -ENOSPC");
	build(&b, 32, 512, msg, len, &q, CRGW_DNS_NOERROR, NULL, 0);
	tap_result(b.len == -ENOSPC, "build: cap one short of the question is -ENOSPC");
	build(&b, 33, 512, msg, len, &q, CRGW_DNS_NOERROR, NULL, 0);
	tap_result(b.len == 33, "build: cap exactly the question");
	build(&b, 40, 512, msg, len, &q, CRGW_DNS_NOERROR, a2, 1);
	tap_result(b.len == -ENOSPC, "build: an answer over cap is -ENOSPC");
	build(&b, 40, 20, msg, len, &q, CRGW_DNS_NOERROR, NULL, 0);
	tap_result(b.len == -ENOSPC, "build: question over a tiny limit is -ENOSPC");
	struct crgw_dns_answer bad = { .type = CRGW_DNS_CNAME };

	build(&b, sizeof(b.buf), 512, msg, len, &q, CRGW_DNS_NOERROR, &bad, 1);
	tap_result(b.len == -EINVAL, "build: a CNAME answer is -EINVAL");
	build(&b, sizeof(b.buf), 512, msg, len, &q, CRGW_DNS_NOERROR, NULL, 1);
	tap_result(b.len == -EINVAL, "build: answers NULL with n 1 is -EINVAL");
	build(&b, sizeof(b.buf), 512, msg, 20, &q, CRGW_DNS_NOERROR, NULL, 0);
	tap_result(b.len == -EINVAL, "build: question_end past len is -EINVAL");
	struct crgw_dns_query noq = { .id = 0xabcd, .flags = 0x0100 };

	build(&b, sizeof(b.buf), 512, NULL, 0, &noq, CRGW_DNS_NOERROR, a2, 1);
	tap_result(b.len == -EINVAL, "build: answers without a question are -EINVAL");
	build(&b, sizeof(b.buf), 512, NULL, 0, &noq, CRGW_DNS_SERVFAIL, NULL, 0);
	tap_result(header_is(&b, 0x8182, 0, 0, 0), "build: SERVFAIL with no question");
}

/* ---- the fuzz seed corpus ---- */

static int corpus_cb(const struct crgw_dns_rr *rr, void *arg)
{
	(void)arg;
	return strlen(rr->name) == rr->name_len ? 0 : -EPROTO;
}

static void replay_corpus(const char *dir)
{
	char **names;
	size_t n = tap_list_dir(dir, "", &names);

	tap_result(n >= 8, "corpus: %zu seed files in %s", n, dir);
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		size_t len = 0;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		char *data = tap_read_file(path, &len);
		uint8_t *copy = malloc(len ? len : 1);
		struct crgw_dns_query q;
		static uint8_t out[CRGW_DNS_TCP_MAX];
		int prc = -1, brc = 0, wrc = -1;

		if (data && copy) {
			memcpy(copy, data, len);
			prc = crgw_dns_query_parse(copy, len, &q);
			if (prc == 0)
				brc = crgw_dns_response_build(out, sizeof(out), 512, copy, len, &q, 0, NULL, 0);
			wrc = crgw_dns_msg_walk(copy, len, corpus_cb, NULL);
		}
		tap_result(data && brc >= 0 && wrc != -EPROTO, "corpus: %s: parse %d, walk %d", names[i], prc, wrc);
		free(copy);
		free(data);
		free(names[i]);
	}
	free(names);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS-DIR\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < sizeof(qcases) / sizeof(qcases[0]); i++)
		query_case(&qcases[i]);
	query_prefixes();
	query_too_long();
	walk_response();
	for (size_t i = 0; i < sizeof(wcases) / sizeof(wcases[0]); i++)
		walk_case(&wcases[i]);
	tap_result(walk_chain(1) == 0, "walk: a one-hop pointer");
	tap_result(walk_chain(128) == 0, "walk: a chain of 128 hops");
	tap_result(walk_chain(129) == -EBADMSG, "walk: a chain of 129 hops is refused");
	{
		static uint8_t big[CRGW_DNS_TCP_MAX + 1];

		tap_result(crgw_dns_msg_walk(big, sizeof(big), NULL, NULL) == -EMSGSIZE, "walk: 65536 bytes");
		tap_result(crgw_dns_msg_walk(big, CRGW_DNS_TCP_MAX, NULL, NULL) == 12, "walk: 65535 zero bytes");
	}
	decode_cases();
	build_cases();
	replay_corpus(argv[1]);
	return tap_done();
}
