/* SPDX-License-Identifier: Apache-2.0 */
/* Bounded, allocation-free parsing of the TLS ClientHello that opens a redirected connection, for SNI decisions. */
#ifndef CRGW_TLSHELLO_H
#define CRGW_TLSHELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Nothing here allocates, keeps state between calls or touches globals, so the parser may be called from
 * any thread. It never reads outside [buf, buf + len), and uses about 8 KiB of stack (a bitmap of the
 * extension types seen, for exact duplicate detection). Its work is linear in len.
 */

/*
 * Bytes of records we are willing to buffer for one hello. A real hello is under 2 KiB, or about 3 KiB with
 * post-quantum key shares; 64 KiB leaves room for padding and for clients that fragment their records.
 */
#define CRGW_TLS_HELLO_MAX (64 * 1024)
/*
 * Longest record fragment accepted: 2^14 plus the 256 bytes of expansion RFC 8446 5.2 allows a protected
 * record. A plaintext hello record must stay within 2^14; the extra slack only ever reaches a server that
 * will refuse the record itself, so it cannot make the server see a different name than we do.
 */
#define CRGW_TLS_RECORD_MAX (16384 + 256)
/* The longest host name (253 characters) plus its NUL. */
#define CRGW_TLS_SNI_MAX 254

/* A ClientHello as crgw_tls_hello_parse found it. Plain data: no pointers, so it may outlive the buffer. */
struct crgw_tls_hello {
	/*
	 * The server_name extension's host_name, lowercased, no trailing dot, NUL-terminated; "" when the hello
	 * has no server_name. Labels of 1 to 63 bytes from [a-z0-9_-] joined by single dots, 1 to 253 bytes in
	 * all, the last label not numeric (see crgw_tls_hello_parse): the same alphabet the DNS service accepts,
	 * so a name that passes here can be looked up and compared with bindings as is.
	 */
	char sni[CRGW_TLS_SNI_MAX];
	size_t sni_len;
	bool has_sni;
	/*
	 * An encrypted_client_hello extension (0xfe0d) is present, so sni is the outer, public name and the
	 * name the client really wants is encrypted. Chromium sends a GREASE ECH extension when it has no ECH
	 * configuration, which looks the same on the wire: then sni is the real name, and we cannot tell.
	 */
	bool ech;
	bool has_alpn; /* an application_layer_protocol_negotiation extension with a well-formed list */
	bool grease;   /* some cipher suite, extension or supported version was a GREASE value (RFC 8701) */
	uint16_t legacy_version; /* the ClientHello's legacy_version, 0x0301..0x03ff */
	/* The highest non-GREASE version in supported_versions; legacy_version when there is none. */
	uint16_t max_version;
	unsigned records; /* records the hello spans */
	/*
	 * Bytes of the stream the hello spans: whole records, up to the end of the record holding its last
	 * byte (anything after it in that record is the client's next handshake bytes, and part of the count).
	 * Always <= len and <= CRGW_TLS_HELLO_MAX. The caller replays everything it read, not only these bytes.
	 */
	size_t consumed;
	/*
	 * Set only with -EAGAIN: no stream shorter than this many bytes can hold a complete hello given what
	 * was read so far (always > len and <= CRGW_TLS_HELLO_MAX). A caller may wait until it has this many
	 * bytes before parsing again, so a client that trickles its hello byte by byte costs a few parses
	 * instead of one per segment; an error in the bytes already read is then only reported later.
	 */
	size_t need;
	/*
	 * Set only with -EBADMSG: what was refused is the server_name's name (see below: empty, too long, an
	 * address literal, a character outside the alphabet), not the hello's structure, so the caller can say so.
	 */
	bool sni_invalid;
};

/*
 * Parses the start of a TLS stream: `buf`, `len` is everything received so far on the connection, borrowed
 * for the call only (`buf` may be NULL when len is 0); `out` is filled in (caller owns) and is all zero
 * except `need` and `sni_invalid` unless 0 is returned. Each call starts from scratch: the caller appends
 * what it reads and calls again. Returns:
 *   0         a complete ClientHello, and the rest of the record holding its last byte, were read;
 *   -EAGAIN   more bytes are needed (never returned once len >= CRGW_TLS_HELLO_MAX; see out->need);
 *   -E2BIG    the hello, in whole records, would end beyond CRGW_TLS_HELLO_MAX bytes of the stream
 *             (known as soon as a handshake or record length says so);
 *   -EBADMSG  not a well-formed TLS ClientHello:
 *             - a record other than handshake (22) before the hello is complete (so an SSLv2-compatible
 *               hello, whose first byte has the top bit set, a TLS alert, application data or plain HTTP);
 *               a record version other than 0x0301..0x0304; a zero-length record (RFC 8446 5.1 forbids
 *               them for handshake records) or one longer than CRGW_TLS_RECORD_MAX;
 *             - a handshake message other than client_hello (1) first;
 *             - legacy_version outside 0x0301..0x03ff; a session id over 32 bytes; an empty or odd cipher
 *               suite list; an empty compression method list; any length that overruns its container or
 *               leaves bytes over (the extensions block must end exactly where the hello does; a hello
 *               without extensions is allowed, as TLS 1.2 allows);
 *             - the same extension type twice (GREASE types included: RFC 8446 4.2 allows no repeats);
 *             - a server_name extension that is not exactly one host_name(0) entry whose length fills the
 *               list, or whose name is not a host name as described at struct crgw_tls_hello's sni: empty,
 *               over 253 bytes, a label over 63, a leading, trailing or doubled dot, any byte but
 *               [A-Za-z0-9_.-] (so NUL, '/', '%', ':', '*', spaces, control and non-ASCII bytes are out),
 *               or a last label that is all digits or "0x" and hex digits: RFC 6066 forbids address
 *               literals in server_name, and resolvers read "1.2.3.4", "0x7f.1" or "0x7f000001" as addresses;
 *             - a malformed supported_versions (odd, empty, or not filling the extension) or ALPN list
 *               (not filling the extension, empty, or holding an empty protocol name).
 * Errors are reported in stream order, so for any prefix of a stream the result is -EAGAIN or the same
 * result as for the whole stream, and a complete hello gives the same *out in every stream that holds it.
 * Extensions other than those named above are skipped unread, unknown and GREASE ones alike.
 */
int crgw_tls_hello_parse(const uint8_t *buf, size_t len, struct crgw_tls_hello *out);

#endif
