/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the ref advertisement parser. Byte 0 chooses the service, max_refs, a want filter
 * and the chunk seed; the rest is the upstream's answer, fed whole and in pieces: both must give the same
 * result, and a table read to its end must be sorted, bounded and searchable.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_chunks.h"
#include "gitproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool want_odd(void *arg, const char *ref, size_t len)
{
	(void)arg;
	(void)ref;
	return len % 2 == 1;
}

static int run(const uint8_t *in, size_t n, uint8_t flags, bool chunked, struct git_refs *out)
{
	static struct git_adv a;
	static const size_t maxes[] = { 0, 1, 2, 3, 10, 100, 1000, 10000 };
	struct chunks c = { .state = flags };
	size_t off = 0;
	int rc = -EAGAIN;

	git_adv_init(&a, out, flags & 1 ? "git-upload-pack" : "git-receive-pack", maxes[(flags >> 1) & 7],
		     flags & 0x10 ? want_odd : NULL, NULL);
	if (!n)
		return git_adv_feed(&a, in, 0);
	while (off < n && (rc == -EAGAIN || rc == 0)) {
		size_t len = chunked ? chunk_next(&c, n - off) : n - off;

		rc = git_adv_feed(&a, in + off, len);
		off += len;
	}
	assert(rc == 0 || rc == -EAGAIN || rc == -EBADMSG || rc == -ENOMEM);
	assert(rc == 0 || rc == -EAGAIN || a.why);
	/* A failure sticks. */
	if (rc && rc != -EAGAIN)
		assert(git_adv_feed(&a, (const uint8_t *)"0000", 4) == rc);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct git_refs one, two;
	uint8_t flags;
	int r1, r2;

	if (size < 1 || size > 200000)
		return 0;
	flags = data[0];
	r1 = run(data + 1, size - 1, flags, false, &one);
	r2 = run(data + 1, size - 1, flags, true, &two);
	assert(r1 == r2);
	if (r1 == 0) {
		assert(one.n == two.n && one.incomplete == two.incomplete && one.sha256 == two.sha256 &&
		       one.empty == two.empty && one.advertised == two.advertised && one.caps_len == two.caps_len);
		assert(one.sorted && one.n <= one.advertised);
		for (size_t i = 0; i < one.n; i++) {
			const struct git_ref *r = &one.refs[i];

			assert(r->len == two.refs[i].len && !memcmp(r->name, two.refs[i].name, r->len));
			assert(git_oid_equal(&r->oid, &two.refs[i].oid));
			assert(r->name[r->len] == '\0');
			assert(git_refname_valid(r->name, r->len) || (r->len == 4 && !memcmp(r->name, "HEAD", 4)));
			assert(r->oid.len == (one.sha256 ? 32 : 20));
			assert(i == 0 || strcmp(one.refs[i - 1].name, r->name) < 0);
			assert(git_refs_find(&one, r->name, r->len) == r);
		}
		assert(!git_refs_find(&one, "refs/heads/\x01", 12));
	}
	git_refs_free(&one);
	git_refs_free(&one);
	git_refs_free(&two);
	return 0;
}
