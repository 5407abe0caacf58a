/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the OCI registry parsers. The first byte chooses: even, the rest is a request path;
 * odd, the rest is a manifest and byte >> 1 picks the Content-Type it came with. An accepted path must hold
 * only what its grammar allows and parse to the same parts in both prefix forms; an accepted manifest must be
 * one of the four kinds, agree with its content type and hold only well-formed, bounded descriptors.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ociproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_digest(const char *d)
{
	size_t n = strlen(d), hex = n - 7;

	assert((n == 71 && !strncmp(d, "sha256:", 7)) || (n == 135 && !strncmp(d, "sha512:", 7)));
	assert(strspn(d + 7, "0123456789abcdef") == hex);
}

static void check_path(const struct oci_path *p)
{
	char again[1024];
	struct oci_path q;
	const char *why = "unset";
	int n;

	assert(strlen(p->host) <= OCI_HOST_MAX && strlen(p->name) <= OCI_NAME_MAX);
	assert(strspn(p->host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]") ==
	       strlen(p->host));
	assert(strspn(p->name, "abcdefghijklmnopqrstuvwxyz0123456789._-/") == strlen(p->name));
	assert(!strstr(p->name, "//") && !strstr(p->name, "..") && p->name[0] != '/');
	switch (p->ep) {
	case OCI_PING:
		assert(!p->name[0] && !p->reference[0] && !p->by_digest);
		return;
	case OCI_TAGS_LIST:
		assert(p->name[0] && p->host[0] && !p->reference[0] && !p->by_digest);
		break;
	case OCI_BLOB:
		assert(p->by_digest);
		/* fallthrough */
	case OCI_MANIFEST:
		assert(p->name[0] && p->host[0] && p->reference[0]);
		assert(p->by_digest == (strchr(p->reference, ':') != NULL));
		if (p->by_digest)
			check_digest(p->reference);
		else
			assert(strlen(p->reference) <= OCI_TAG_MAX);
		break;
	default:
		assert(0);
	}

	/* The same request in the other form, and in this one again: the same parts. */
	static const char *const fmt[] = { "/v2/registry/oci/%s/%s/%s/%s", "/registry/oci/%s/v2/%s/%s/%s" };
	const char *ep = p->ep == OCI_MANIFEST ? "manifests" : p->ep == OCI_BLOB ? "blobs" : "tags";
	const char *ref = p->ep == OCI_TAGS_LIST ? "list" : p->reference;

	for (size_t i = 0; i < 2; i++) {
		n = snprintf(again, sizeof(again), fmt[i], p->host, p->name, ep, ref);
		assert(n > 0 && (size_t)n < sizeof(again));
		assert(!oci_path_parse(again, (size_t)n, &q, &why) && !why);
		assert(!memcmp(&q, p, sizeof(q)));
	}
}

static void check_descriptor(const struct oci_descriptor *d, bool entry)
{
	size_t n = strlen(d->media_type);

	assert(n >= 3 && n < sizeof(d->media_type) && strchr(d->media_type, '/'));
	for (size_t i = 0; i < n; i++)
		assert(d->media_type[i] > 0x20 && d->media_type[i] < 0x7f && d->media_type[i] != ';');
	check_digest(d->digest);
	assert(d->size >= 0 && d->size <= OCI_SIZE_MAX);
	assert(strlen(d->os) < sizeof(d->os) && strlen(d->arch) < sizeof(d->arch) &&
	       strlen(d->variant) < sizeof(d->variant));
	assert(!d->os[0] == !d->arch[0]);
	assert(!d->variant[0] || d->os[0]);
	if (!entry)
		assert(!d->os[0]);
}

static void check_manifest(const struct oci_manifest *m, const char *ct)
{
	bool index = !strcmp(m->media_type, OCI_MT_INDEX) || !strcmp(m->media_type, OCI_MT_DOCKER_LIST);

	assert(oci_manifest_type_known(m->media_type, strlen(m->media_type)));
	assert(index == (m->kind == OCI_KIND_INDEX));
	assert(m->has_config == (m->kind == OCI_KIND_MANIFEST));
	if (ct) {
		size_t n = strcspn(ct, ";");

		while (n && ct[n - 1] == ' ')
			n--;
		assert(n == strlen(m->media_type) && !strncasecmp(ct, m->media_type, n));
	}
	if (m->has_config)
		check_descriptor(&m->config, false);
	assert(m->nitems <= OCI_MANIFEST_MAX_ITEMS && !m->nitems == !m->items);
	for (size_t i = 0; i < m->nitems; i++)
		check_descriptor(&m->items[i], index);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const cts[] = {
		NULL, OCI_MT_MANIFEST, OCI_MT_INDEX, OCI_MT_DOCKER_MANIFEST, OCI_MT_DOCKER_LIST,
		"application/vnd.oci.image.index.v1+json; charset=utf-8", "application/json",
		"application/vnd.docker.distribution.manifest.v1+prettyjws",
	};
	const char *why = "unset";
	int err;

	if (size < 1)
		return 0;
	if (!(data[0] & 1)) {
		struct oci_path p;

		err = oci_path_parse((const char *)data + 1, size - 1, &p, &why);
		assert(err == 0 || err == -EINVAL);
		assert(err ? (why && why[0]) : !why);
		if (err) {
			static const struct oci_path zero;

			assert(!memcmp(&p, &zero, sizeof(p)));
			return 0;
		}
		check_path(&p);
		return 0;
	}

	const char *ct = cts[(data[0] >> 1) % (sizeof(cts) / sizeof(cts[0]))];
	struct oci_manifest m;

	err = oci_manifest_parse((const char *)data + 1, size - 1, ct, &m, &why);
	assert(err == 0 || err == -EBADMSG || err == -E2BIG || err == -ENOMEM);
	assert(err ? (why && why[0] && !m.items && !m.nitems && !m.media_type[0]) : !why);
	if (!err)
		check_manifest(&m, ct);
	oci_manifest_free(&m);
	oci_manifest_free(&m);
	return 0;
}
