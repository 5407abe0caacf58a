/* SPDX-License-Identifier: Apache-2.0 */
/* Bounded, allocation-free reading and writing of DNS messages (RFC 1035, RFC 6891) for the gateway's resolver. */
#ifndef CRGW_DNSMSG_H
#define CRGW_DNSMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Nothing here allocates, keeps state between calls or touches globals, so every function may be called
 * from any thread. No function reads outside [msg, msg + len) or writes outside [out, out + cap).
 */

#define CRGW_DNS_HEADER_LEN 12
#define CRGW_DNS_LABEL_MAX 63
/* A name's wire length, length octets and the final root octet included. */
#define CRGW_DNS_NAME_MAX 255
/* A host name's presentation form ([a-z0-9_-] labels joined by dots, no trailing dot) plus its NUL. */
#define CRGW_DNS_HOST_TEXT_MAX 254
/*
 * Any name's escaped presentation form (see crgw_dns_name_decode) plus its NUL. The longest: four labels
 * (fewer cannot hold more bytes, more take more length octets) of 250 bytes in all, each escaped to four
 * characters, and three dots.
 */
#define CRGW_DNS_NAME_TEXT_MAX 1004
/* The UDP payload size we advertise in our OPT record (the DNS flag day 2020 value). */
#define CRGW_DNS_EDNS_UDP_SIZE 1232
/* Largest UDP response to a client that did not send EDNS. */
#define CRGW_DNS_UDP_PLAIN_MAX 512
/* Largest message: TCP frames it with a 16-bit length. */
#define CRGW_DNS_TCP_MAX 65535

/* Response codes; values above 15 travel partly in the OPT record and need an EDNS query. */
enum {
	CRGW_DNS_NOERROR = 0,
	CRGW_DNS_FORMERR = 1,
	CRGW_DNS_SERVFAIL = 2,
	CRGW_DNS_NXDOMAIN = 3,
	CRGW_DNS_NOTIMP = 4,
	CRGW_DNS_REFUSED = 5,
	CRGW_DNS_BADVERS = 16,
};

/* Record types the gateway names; any other 16-bit value passes through the readers unchanged. */
enum {
	CRGW_DNS_A = 1,
	CRGW_DNS_NS = 2,
	CRGW_DNS_CNAME = 5,
	CRGW_DNS_SOA = 6,
	CRGW_DNS_PTR = 12,
	CRGW_DNS_MX = 15,
	CRGW_DNS_TXT = 16,
	CRGW_DNS_AAAA = 28,
	CRGW_DNS_SRV = 33,
	CRGW_DNS_OPT = 41,
	CRGW_DNS_HTTPS = 65,
	CRGW_DNS_ANY = 255,
};

#define CRGW_DNS_CLASS_IN 1

/* Bits of the header's flags word, as on the wire. */
#define CRGW_DNS_F_QR 0x8000
#define CRGW_DNS_F_OPCODE 0x7800
#define CRGW_DNS_F_AA 0x0400
#define CRGW_DNS_F_TC 0x0200
#define CRGW_DNS_F_RD 0x0100
#define CRGW_DNS_F_RA 0x0080
#define CRGW_DNS_F_AD 0x0020
#define CRGW_DNS_F_CD 0x0010
#define CRGW_DNS_F_RCODE 0x000f

/* A query as crgw_dns_query_parse found it. Plain data: no pointers, so it may outlive the message. */
struct crgw_dns_query {
	uint16_t id;
	uint16_t flags; /* the whole flags word as on the wire (RD, opcode, CD...) */
	uint16_t qtype, qclass;
	/*
	 * Presentation form, lowercased, no trailing dot, NUL-terminated; "" for the root. Only [a-z0-9_-]
	 * survive in labels (A-Z are lowercased): no host a policy can allow holds anything else, and refusing
	 * the rest here means no caller has to think about dots, NULs or escapes inside a label.
	 */
	char name[CRGW_DNS_HOST_TEXT_MAX];
	size_t name_len;
	/*
	 * Offset just past the question in the message, so a response can echo it byte for byte (keeping
	 * the client's 0x20 case mixing); 0 when the question was not parsed.
	 */
	size_t question_end;
	/* From the OPT record in the additional section; edns is false when there was none or it was bad. */
	bool edns;
	bool edns_do; /* the DNSSEC OK bit */
	uint8_t edns_version;
	uint16_t edns_udp_size; /* sizes below 512 read as 512 (RFC 6891 6.2.5) */
};

/*
 * Parses a query that a client sent. `msg` is borrowed for the call only; `q` is filled in (caller owns).
 * Returns, with the answer the caller owes the client:
 *   0             a well-formed QUERY with one question;
 *   -EINVAL       no answer at all: shorter than a header, longer than CRGW_DNS_TCP_MAX (no transport
 *                 carries that), or the QR bit says it is a response (answering responses is how
 *                 reflection loops start);
 *   -EBADMSG      FORMERR: qdcount != 1, a truncated or malformed question (compression pointer, label
 *                 type bits, name over 255 bytes, a byte outside [A-Za-z0-9_-]), any answer or authority
 *                 record, a truncated or malformed additional record, a malformed OPT (owner not the root,
 *                 options overrunning their record) or more than one OPT. q->id and q->flags are set;
 *                 q->question_end is set when the question itself was fine; q->edns is false;
 *   -EOPNOTSUPP   NOTIMP: the opcode is not QUERY; only q->id and q->flags are set;
 *   -EPROTONOSUPPORT BADVERS: the OPT record asks for an EDNS version other than 0; everything else is set.
 * Additional records other than OPT are checked for shape and then ignored (TSIG and SIG(0) go unverified).
 * Bytes after the last counted record are ignored: they reach no one, since only the question is echoed.
 */
int crgw_dns_query_parse(const uint8_t *msg, size_t len, struct crgw_dns_query *q);

/* One address record for crgw_dns_response_build. */
struct crgw_dns_answer {
	uint16_t type;	  /* CRGW_DNS_A (addr[0..3] used) or CRGW_DNS_AAAA (all 16) */
	uint32_t ttl;	  /* values above 2^31 - 1 are sent as 2^31 - 1 (RFC 2181 8) */
	uint8_t addr[16]; /* network byte order */
};

/*
 * Builds the response to query `q` into out[cap] (caller owns `out`). `msg`/`len` are the query's original
 * bytes (borrowed for the call; may be NULL when q->question_end is 0). The header carries q's id and
 * opcode, QR and RA set, RD and CD copied, AA, AD and Z clear, and `rcode` (0..4095; above 15 only when
 * q->edns). The question is echoed verbatim when q->question_end says it parsed, else qdcount is 0. Then
 * the `n` answers (borrowed), each with a compression pointer to the question's name as owner and class
 * IN; then, when q->edns, an OPT record advertising CRGW_DNS_EDNS_UDP_SIZE, echoing DO and holding the
 * upper rcode bits.
 * `limit` is how large the response may be on its transport: CRGW_DNS_UDP_PLAIN_MAX for UDP without EDNS,
 * the client's edns_udp_size (the caller clamps it to its own buffer) for UDP with EDNS, CRGW_DNS_TCP_MAX
 * for TCP. When the answers do not fit in `limit`, TC is set and no answers are included.
 * Returns the response's length, -ENOSPC when it does not fit in `cap` (never truncating to fit a small
 * buffer: TC tells the client to retry over TCP, which a short buffer would not cure) or does not fit in
 * `limit` even without answers (header, question and OPT take at most 282 bytes), or -EINVAL for an
 * answer type other than A or AAAA, answers without a question, or an rcode that cannot be sent.
 */
int crgw_dns_response_build(uint8_t *out, size_t cap, size_t limit, const uint8_t *msg, size_t len,
			    const struct crgw_dns_query *q, int rcode, const struct crgw_dns_answer *answers, size_t n);

/*
 * Decodes the name starting at msg[off], following compression pointers, into `out` (caller owns, outcap
 * bytes; may be NULL with outcap 0 to only check and measure the name). The text is the name's
 * presentation form without the trailing dot, "" for the root, with A-Z lowercased, [a-z0-9_-] kept and
 * every other byte written as \DDD (decimal), so two names decode equal exactly when they are equal names,
 * and a host name decodes the way crgw_dns_query_parse writes it. CRGW_DNS_NAME_TEXT_MAX always suffices.
 * Pointers must point at or after the header and strictly before the start of the labels that hold them,
 * so every hop goes backwards and none loops; at most 128 hops. `*next` (may be NULL) gets the offset just
 * past the name where it starts, i.e. after the first pointer.
 * Returns the text length (NUL not counted), -EBADMSG for a malformed or truncated name, a forward or
 * looping pointer, a label type other than plain, or a name over CRGW_DNS_NAME_MAX wire bytes, or -ENOSPC
 * when out is too small (out then holds "" if outcap > 0).
 */
int crgw_dns_name_decode(const uint8_t *msg, size_t len, size_t off, char *out, size_t outcap, size_t *next);

enum crgw_dns_section {
	CRGW_DNS_SEC_QUESTION,
	CRGW_DNS_SEC_ANSWER,
	CRGW_DNS_SEC_AUTHORITY,
	CRGW_DNS_SEC_ADDITIONAL,
};

/* One question or resource record, as crgw_dns_msg_walk hands it to its callback. */
struct crgw_dns_rr {
	enum crgw_dns_section section;
	const char *name; /* owner, decoded as by crgw_dns_name_decode; borrowed, valid during the callback */
	size_t name_len;
	uint16_t type, rclass; /* for OPT, rclass is the UDP size */
	uint32_t ttl;	       /* 0 for questions; for OPT, the extended rcode, version and flags */
	const uint8_t *rdata;  /* borrowed pointer into the message; NULL for questions */
	uint16_t rdlen;
	size_t offset;	     /* where the record starts in the message */
	size_t rdata_offset; /* where rdata starts, for crgw_dns_name_decode on names inside it */
};

/*
 * Called once per question and record, in message order, on the walker's thread. Return 0 to go on or a
 * negative errno to stop the walk, which crgw_dns_msg_walk then returns (a positive value stops it too, but
 * comes back as -ECANCELED so it cannot pass for an offset).
 */
typedef int (*crgw_dns_rr_cb)(const struct crgw_dns_rr *rr, void *arg);

/*
 * Reads a whole message (e.g. an upstream's answer) with the same bounds as the other readers: every
 * question and record must lie inside msg[len], counts must fit the message, owner names obey
 * crgw_dns_name_decode's rules, and the rdata of CNAME, NS and PTR records must be exactly one valid name
 * (the types the gateway follows). `cb` (may be NULL, to only check) gets each entry with `arg`.
 * `msg` is borrowed for the call. The header is not interpreted beyond its counts.
 * Returns the offset just past the last counted record (bytes after it are the caller's business),
 * -EBADMSG for a malformed message, -EMSGSIZE when len is over CRGW_DNS_TCP_MAX, or the callback's
 * value as above.
 */
int crgw_dns_msg_walk(const uint8_t *msg, size_t len, crgw_dns_rr_cb cb, void *arg);

#endif
