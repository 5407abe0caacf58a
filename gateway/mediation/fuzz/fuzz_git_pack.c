/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the pack scanner. Byte 0: bit 0 SHA-256, bit 1 rewrite the trailing checksum so the
 * pack verifies (else almost no input would reach the end), the rest the chunk seed. The pack is fed whole
 * and in pieces: the answers and what was counted must agree, and reachability answers too.
 */
#include <assert.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_chunks.h"
#include "gitproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run(const uint8_t *in, size_t n, bool sha256, uint8_t seed, bool chunked, struct git_pack_scan *s)
{
	struct chunks c = { .state = seed };
	size_t off = 0;
	int rc = -EAGAIN;

	if (git_pack_scan_init(s, sha256))
		return -ENOMEM;
	while (off < n && (rc == -EAGAIN || rc == 0)) {
		size_t len = chunked ? chunk_next(&c, n - off) : n - off;

		rc = git_pack_scan_feed(s, in + off, len);
		off += len;
	}
	if (rc == -EAGAIN)
		rc = git_pack_scan_end(s);
	assert(rc == 0 || rc == -EBADMSG || rc == -E2BIG || rc == -ENOMEM);
	assert(rc == 0 || s->why);
	assert(rc != 0 || !n || s->done);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct git_pack_scan one, two;
	bool sha256;
	size_t hl, n;
	uint8_t *pack;
	int r1, r2;

	if (size < 1 || size > 200000)
		return 0;
	sha256 = data[0] & 1;
	hl = sha256 ? 32 : 20;
	n = size - 1;
	pack = malloc(n ? n : 1);
	memcpy(pack, data + 1, n);
	if ((data[0] & 2) && n > hl) {
		unsigned int l;

		EVP_Digest(pack, n - hl, pack + n - hl, &l, sha256 ? EVP_sha256() : EVP_sha1(), NULL);
	}
	r1 = run(pack, n, sha256, data[0], false, &one);
	r2 = run(pack, n, sha256, data[0], true, &two);
	assert(r1 == r2);
	assert(one.ncommits == two.ncommits && one.ofs_deltas == two.ofs_deltas && one.ref_deltas == two.ref_deltas &&
	       one.commit_deltas == two.commit_deltas && one.skipped_deltas == two.skipped_deltas &&
	       one.evicted_bases == two.evicted_bases && one.bad_commits == two.bad_commits);
	assert(one.done == two.done);
	/* Names from the input, asked both ways: the same answers, and nothing when the pack failed. */
	for (size_t i = 0; i + 2 * hl <= n && i < 8 * hl; i += hl) {
		struct git_oid a = { .len = (uint8_t)hl }, b = { .len = (uint8_t)hl };
		bool x;

		memcpy(a.id, pack + i, hl);
		memcpy(b.id, pack + i + hl, hl);
		x = git_pack_reaches(&one, &a, &b);
		assert(x == git_pack_reaches(&two, &a, &b));
		assert(!x || r1 == 0);
	}
	git_pack_scan_free(&one);
	git_pack_scan_free(&one);
	git_pack_scan_free(&two);
	free(pack);
	return 0;
}
