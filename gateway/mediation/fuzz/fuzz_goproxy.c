/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the GOPROXY parsers. The first byte chooses what the rest is: 0 a request path,
 * 1 a module zip of goproxy.test/m@v1.0.0 (through a memfd), 2 a `.info` document, 3 an `@v/list` body.
 * An accepted path must print back (escaped) to a path that parses to the same thing; an accepted zip
 * gives an h1 of the right shape; nothing refused leaves a reason unset.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "goproxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_path(const char *p, size_t n)
{
	struct goproxy_path a, b;
	const char *why = NULL;
	char em[1100], ev[600], again[2000];
	int err = goproxy_path_parse(p, n, &a, &why);

	assert(err == 0 || (err == -EINVAL && why));
	if (err)
		return;
	assert(!memchr(p, '\0', n));
	if (a.kind == GOP_SUMDB) {
		assert(a.sumdb_host[0] && a.sumdb_rest[0]);
		assert(n == 6 + strlen(a.sumdb_host) + 1 + strlen(a.sumdb_rest));
		if (strncmp(a.sumdb_rest, "lookup/", 7) == 0)
			assert(goproxy_module_ok(a.module, &why) && goproxy_version_ok(a.module, a.version, &why));
		return;
	}
	assert(goproxy_module_ok(a.module, &why));
	assert(!goproxy_escape(a.module, em, sizeof(em)));
	if (a.kind == GOP_LIST || a.kind == GOP_LATEST) {
		assert(a.version[0] == '\0');
		snprintf(again, sizeof(again), "%s/%s", em, a.kind == GOP_LIST ? "@v/list" : "@latest");
	} else {
		static const char *const ext[] = { [GOP_INFO] = ".info", [GOP_MOD] = ".mod", [GOP_ZIP] = ".zip" };

		assert(goproxy_version_ok(a.module, a.version, &why));
		assert(!goproxy_escape(a.version, ev, sizeof(ev)));
		snprintf(again, sizeof(again), "%s/@v/%s%s", em, ev, ext[a.kind]);
	}
	/* The escaped form is unique: printing what we parsed gives back the input. */
	assert(strlen(again) == n && !memcmp(again, p, n));
	assert(!goproxy_path_parse(again, strlen(again), &b, &why));
	assert(b.kind == a.kind && !strcmp(a.module, b.module) && !strcmp(a.version, b.version));
}

static void fuzz_zip(const uint8_t *d, size_t n)
{
	static int fd = -1;
	const char *why = NULL;
	char h[64];
	int err;

	if (fd < 0)
		fd = memfd_create("fuzz-zip", 0);
	assert(fd >= 0);
	assert(!ftruncate(fd, 0));
	assert(pwrite(fd, d, n, 0) == (ssize_t)n);
	err = go_h1_zip(fd, "goproxy.test/m", "v1.0.0", h, &why);
	assert(err == 0 || err == -EBADMSG || err == -EFBIG);
	if (err) {
		assert(why && why[0]);
		return;
	}
	assert(strlen(h) == 47 && !memcmp(h, "h1:", 3) && h[46] == '=');
}

static int keep_some(void *arg, const char *v)
{
	(void)arg;
	assert(v[0] == 'v' && !strchr(v, '\n') && !strchr(v, ' '));
	return strlen(v) % 2;
}

static void fuzz_text(int which, const char *p, size_t n)
{
	const char *why = NULL;
	char ver[256];
	int64_t t;

	if (which == 2) {
		int err = goproxy_info_time(p, n, &t, ver, &why);

		assert(err == 0 || (err == -EBADMSG && why));
		if (!err)
			assert(strlen(ver) < sizeof(ver) && t >= -62167219200LL && t <= 253402300799LL + 86400);
		return;
	}
	{
		/* A last line without its newline gets one: the output is at most one byte longer, and a NUL. */
		char *out = malloc(n + 2);
		size_t olen = 0;

		assert(out);
		assert(!goproxy_list_filter(p, n, keep_some, NULL, out, n + 2, &olen));
		assert(olen <= n + 1 && strlen(out) == olen && (olen == 0 || out[olen - 1] == '\n'));
		free(out);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 4) {
	case 0:
		fuzz_path((const char *)data + 1, size - 1);
		break;
	case 1:
		fuzz_zip(data + 1, size - 1);
		break;
	default:
		fuzz_text(data[0] % 4, (const char *)data + 1, size - 1);
		break;
	}
	return 0;
}
