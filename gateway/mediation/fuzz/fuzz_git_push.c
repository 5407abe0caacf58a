/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for a push as the gateway reads it: the command list, then the pack from the byte the
 * commands end at, then every command judged. Byte 0: bit 0 rewrite the pack's trailing checksum so it
 * verifies, bit 1 force, the rest the chunk seed. Fed whole and in pieces: commands, where the pack
 * starts, the pack's answer and every verdict must agree.
 */
#include <assert.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_chunks.h"
#include "gitproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct result {
	struct git_push p;
	struct git_pack_scan s;
	int rc, pack_rc;
	size_t pack_at;
};

static bool allow_heads(void *arg, const char *ref, size_t len)
{
	(void)arg;
	return len > 11 && !memcmp(ref, "refs/heads/", 11);
}

static void run(const uint8_t *in, size_t n, uint8_t seed, bool chunked, struct result *r)
{
	struct chunks c = { .state = seed };
	size_t off = 0, used;
	bool commands = false;
	int prc = -EAGAIN;

	memset(r, 0, sizeof(*r));
	git_push_init(&r->p);
	r->rc = -EAGAIN;
	while (off < n) {
		size_t len = chunked ? chunk_next(&c, n - off) : n - off;
		const uint8_t *d = in + off;

		off += len;
		if (!commands) {
			r->rc = git_push_feed(&r->p, d, len, &used);
			if (r->rc == -EAGAIN) {
				assert(used == len);
				continue;
			}
			if (r->rc)
				break;
			assert(used <= len);
			commands = true;
			r->pack_at = off - len + used;
			if (git_pack_scan_init(&r->s, r->p.sha256)) {
				r->rc = -ENOMEM;
				break;
			}
			d += used;
			len -= used;
		}
		if (len) {
			prc = git_pack_scan_feed(&r->s, d, len);
			if (prc != -EAGAIN && prc != 0)
				break;
		}
	}
	if (!commands && r->rc == -EAGAIN)
		r->rc = git_push_end(&r->p);
	if (commands && prc == -EAGAIN)
		prc = git_pack_scan_end(&r->s);
	r->pack_rc = commands ? prc : 1;
	assert(r->rc == 0 || r->rc == -EBADMSG || r->rc == -ENOTSUP || r->rc == -E2BIG || r->rc == -ENOMEM);
	assert(r->rc == 0 || r->p.why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct result one, two;
	uint8_t *body;
	size_t n;

	if (size < 1 || size > 200000)
		return 0;
	n = size - 1;
	body = malloc(n ? n : 1);
	memcpy(body, data + 1, n);
	run(body, n, data[0], false, &one);
	/* With the commands read, give the pack a checksum that matches, then read both ways again. */
	if ((data[0] & 1) && one.rc == 0) {
		size_t hl = one.p.sha256 ? 32 : 20, at = one.pack_at;
		unsigned int l;

		if (n - at > hl) {
			EVP_Digest(body + at, n - at - hl, body + n - hl, &l, one.p.sha256 ? EVP_sha256() : EVP_sha1(),
				   NULL);
			git_push_free(&one.p);
			git_pack_scan_free(&one.s);
			run(body, n, data[0], false, &one);
		}
	}
	run(body, n, data[0], true, &two);
	assert(one.rc == two.rc && one.pack_rc == two.pack_rc);
	if (one.rc == 0) {
		struct git_refs adv = { .incomplete = true };

		assert(one.pack_at == two.pack_at && one.pack_at <= n);
		assert(one.p.ncmds == two.p.ncmds && one.p.ncmds <= GIT_PUSH_MAX_CMDS);
		assert(one.p.sha256 == two.p.sha256 && one.p.push_options == two.p.push_options);
		assert(one.s.ncommits == two.s.ncommits && one.s.done == two.s.done);
		for (size_t i = 0; i < one.p.ncmds; i++) {
			const struct git_push_cmd *a = &one.p.cmds[i], *b = &two.p.cmds[i];
			const char *why;
			enum git_push_verdict va, vb;

			assert(a->ref_len == b->ref_len && !strcmp(a->ref, b->ref) && strlen(a->ref) == a->ref_len);
			assert(git_refname_valid(a->ref, a->ref_len));
			assert(git_oid_equal(&a->old_oid, &b->old_oid) && git_oid_equal(&a->new_oid, &b->new_oid));
			assert(a->old_oid.len == (one.p.sha256 ? 32 : 20) && a->new_oid.len == a->old_oid.len);
			va = git_push_check(a, data[0] & 2, allow_heads, NULL, &adv, one.pack_rc == 0 ? &one.s : NULL,
					    &why);
			vb = git_push_check(b, data[0] & 2, allow_heads, NULL, &adv, two.pack_rc == 0 ? &two.s : NULL,
					    &why);
			assert(va == vb && va <= GIT_PUSH_NOT_FAST_FORWARD);
			/* Nothing but a proof from a verified pack lets an update through. */
			if (va == GIT_PUSH_OK && !(data[0] & 2) && !git_oid_is_zero(&a->old_oid) &&
			    !git_oid_equal(&a->old_oid, &a->new_oid))
				assert(one.pack_rc == 0 && one.s.done);
		}
	}
	git_push_free(&one.p);
	git_push_free(&two.p);
	git_push_free(&two.p);
	git_pack_scan_free(&one.s);
	git_pack_scan_free(&two.s);
	free(body);
	return 0;
}
