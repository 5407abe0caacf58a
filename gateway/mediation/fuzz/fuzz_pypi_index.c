/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the Python simple index reader and writer. Byte 0 picks the formats in and out, the
 * project and the page's URL; bytes 1-2 say which files to keep (file i by bit i % 16); the rest is the page.
 * Every file shown must be well formed; the page written must read back as exactly the kept files, with the
 * gateway's URLs and the same hashes, requires-python and yanking (and times and sizes, JSON to JSON). The
 * whole input also goes through Accept negotiation, name normalization and file name versions.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pypi_index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct kept {
	char *filename, *url, *sha256, *rp, *reason;
	bool yanked;
	long long upload_time, size;
};

struct run {
	unsigned mask;
	size_t calls, kept, n;
	struct kept k[64];
	bool overflow; /* more kept files than k holds: compare the count only */
	enum pypi_format in;
	bool second; /* reading the written page */
	const struct run *first;
};

static char *dup_or_null(const char *s)
{
	char *d = s ? strdup(s) : NULL;

	assert(!s || d);
	return d;
}

static bool streq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

static void check_file(const struct pypi_file *f, enum pypi_format in)
{
	size_t fl = strlen(f->filename);

	assert(fl >= 1 && fl <= PYPI_MAX_FILENAME);
	for (size_t i = 0; i < fl; i++)
		assert(f->filename[i] > 0x20 && f->filename[i] < 0x7f && f->filename[i] != '/');
	assert(!strncmp(f->url, "http://", 7) || !strncmp(f->url, "https://", 8));
	assert(strlen(f->url) <= PYPI_MAX_URL && !strchr(f->url, '#') && !strchr(f->url, ' '));
	if (f->sha256) {
		assert(strlen(f->sha256) == 64);
		for (size_t i = 0; i < 64; i++)
			assert((f->sha256[i] >= '0' && f->sha256[i] <= '9') ||
			       (f->sha256[i] >= 'a' && f->sha256[i] <= 'f'));
	}
	if (f->requires_python)
		for (const char *p = f->requires_python; *p; p++)
			assert((unsigned char)*p >= 0x20 && *p != 0x7f);
	assert(!f->yanked_reason || (f->yanked && f->yanked_reason[0]));
	assert(in == PYPI_JSON || (f->upload_time == -1 && f->size == -1));
	assert(strlen(f->version) < sizeof(f->version));
}

/* The gateway's URL for a file: its name percent-encoded but for unreserved characters. */
static void gw_url(const char *filename, char *out, size_t cap)
{
	size_t o = (size_t)snprintf(out, cap, "http://gw.test/f/");

	for (const unsigned char *p = (const unsigned char *)filename; *p && o + 4 < cap; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~", *p))
			out[o++] = (char)*p;
		else
			o += (size_t)snprintf(out + o, cap - o, "%%%02X", *p);
	}
	out[o] = '\0';
}

static bool cb(void *arg, const struct pypi_file *f, char *new_url, size_t cap)
{
	struct run *r = arg;
	size_t i = r->calls++;
	bool keep = r->second || (r->mask >> (i % 16)) & 1;

	check_file(f, r->in);
	if (!keep)
		return false;
	gw_url(f->filename, new_url, cap);
	r->kept++;
	if (r->n == sizeof(r->k) / sizeof(r->k[0])) {
		r->overflow = true;
		return true;
	}
	struct kept *k = &r->k[r->n++];

	k->filename = dup_or_null(f->filename);
	k->url = dup_or_null(r->second ? f->url : new_url);
	k->sha256 = dup_or_null(f->sha256);
	k->rp = dup_or_null(f->requires_python);
	k->reason = dup_or_null(f->yanked_reason);
	k->yanked = f->yanked;
	k->upload_time = f->upload_time;
	k->size = f->size;
	return true;
}

static void run_free(struct run *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->k[i].filename);
		free(r->k[i].url);
		free(r->k[i].sha256);
		free(r->k[i].rp);
		free(r->k[i].reason);
	}
}

static void side_checks(const uint8_t *data, size_t size)
{
	char norm[80], again[80], ver[128], fn[300];
	size_t n = size < 64 ? size : 64;
	int a = pypi_accept((const char *)data, size), err;

	assert(a == -1 || a == PYPI_HTML || a == PYPI_JSON);
	if (!pypi_normalize((const char *)data, n, norm, sizeof(norm))) {
		assert(norm[0] && !strstr(norm, "--"));
		for (const char *p = norm; *p; p++)
			assert((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-');
		assert(!pypi_normalize(norm, strlen(norm), again, sizeof(again)) && !strcmp(norm, again));
		n = size < sizeof(fn) - 1 ? size : sizeof(fn) - 1;
		memcpy(fn, data, n);
		fn[n] = '\0';
		err = pypi_filename_version(fn, norm, ver, sizeof(ver));
		assert(err == 0 || (err == -ENOSPC && !ver[0]));
		assert(!ver[0] || (ver[0] >= '0' && ver[0] <= '9') || ver[0] == 'v' || ver[0] == 'V');
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const projects[] = { "crgw-beta", "p" };
	static const char *const urls[] = { "https://pypi.test/simple/crgw-beta/", "http://pypi.test:8080/s/p" };
	struct run first = { 0 }, second = { 0 };
	const char *project, *why = "unset";
	char *out = (char *)"unset", *out2 = NULL;
	size_t out_len = 0, out2_len = 0;
	enum pypi_format in, outf;
	int err;

	side_checks(data, size);
	if (size < 3)
		return 0;
	in = data[0] & 1 ? PYPI_JSON : PYPI_HTML;
	outf = data[0] & 2 ? PYPI_JSON : PYPI_HTML;
	project = projects[(data[0] >> 2) & 1];
	first.mask = (unsigned)data[1] | (unsigned)data[2] << 8;
	first.in = in;
	err = pypi_index_rewrite(in, (const char *)data + 3, size - 3, urls[(data[0] >> 3) & 1], project, outf, cb,
				 &first, &out, &out_len, &why);
	assert(err == 0 || err == -EINVAL || err == -E2BIG || err == -ENOMEM);
	if (err) {
		/* A refused page calls nothing back. */
		assert(why && why[0] && !out && first.calls == 0);
		return 0;
	}
	assert(!why && out && strlen(out) == out_len);

	/* The written page reads back as exactly the kept files. */
	second.second = true;
	second.in = outf;
	err = pypi_index_rewrite(outf, out, out_len, "http://gw.test/simple/x/", project, outf, cb, &second, &out2,
				 &out2_len, &why);
	if (err)
		fprintf(stderr, "re-reading failed: %s\n%s\n", why, out);
	assert(!err);
	assert(second.calls == first.kept && second.n == first.n && second.overflow == first.overflow);
	for (size_t i = 0; i < first.n && i < second.n; i++) {
		const struct kept *a = &first.k[i], *b = &second.k[i];

		assert(!strcmp(a->filename, b->filename));
		assert(!strcmp(a->url, b->url));
		assert(streq(a->sha256, b->sha256));
		assert(streq(a->rp, b->rp));
		assert(a->yanked == b->yanked && streq(a->reason, b->reason));
		if (outf == PYPI_JSON)
			assert(a->upload_time == b->upload_time && a->size == b->size);
	}
	/* Writing again what was read from the written page gives the same page. */
	assert(out2_len == out_len && !memcmp(out, out2, out_len));
	run_free(&first);
	run_free(&second);
	free(out);
	free(out2);
	return 0;
}
