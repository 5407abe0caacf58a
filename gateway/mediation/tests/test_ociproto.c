/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OCI registry mediation parsers: request paths in both forms with every refused variant, then manifests and
 * indexes (OCI and Docker, documents shaped as umoci and skopeo write them) and hostile ones, then the bounds.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ociproto.h"
#include "tap.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define D256 "sha256:" HEX64
#define D512 "sha512:" HEX64 HEX64
#define M "/v2/registry/oci/oci.test/"
#define R "/registry/oci/oci.test/v2/"

/* ---- Paths ---- */

static const struct {
	const char *path;
	enum oci_endpoint ep;
	const char *host, *name, *ref;
	bool by_digest;
} path_good[] = {
	{ "/v2/", OCI_PING, "", "", "", false },
	{ "/v2", OCI_PING, "", "", "", false },
	{ "/registry/oci/oci.test/v2/", OCI_PING, "oci.test", "", "", false },
	{ "/registry/oci/oci.test/v2", OCI_PING, "oci.test", "", "", false },
	/* The mirror form, as skopeo sends it (location "<gw>:8170/registry/oci/oci.test"). */
	{ M "library/alpine/manifests/latest", OCI_MANIFEST, "oci.test", "library/alpine", "latest", false },
	{ M "library/alpine/manifests/" D256, OCI_MANIFEST, "oci.test", "library/alpine", D256, true },
	{ M "library/alpine/blobs/" D256, OCI_BLOB, "oci.test", "library/alpine", D256, true },
	{ M "library/alpine/blobs/" D512, OCI_BLOB, "oci.test", "library/alpine", D512, true },
	{ M "library/alpine/tags/list", OCI_TAGS_LIST, "oci.test", "library/alpine", "", false },
	{ M "alpine/manifests/3.19", OCI_MANIFEST, "oci.test", "alpine", "3.19", false },
	/* The direct form. */
	{ R "library/alpine/manifests/latest", OCI_MANIFEST, "oci.test", "library/alpine", "latest", false },
	{ R "a/blobs/" D256, OCI_BLOB, "oci.test", "a", D256, true },
	{ R "a/b/tags/list", OCI_TAGS_LIST, "oci.test", "a/b", "", false },
	{ "/registry/oci/oci.pkgs.example:5000/v2/x/manifests/v1", OCI_MANIFEST, "oci.pkgs.example:5000", "x", "v1",
	  false },
	{ "/registry/oci/[fd00::1]:5000/v2/x/manifests/v1", OCI_MANIFEST, "[fd00::1]:5000", "x", "v1", false },
	/* Nested names, and names whose components are the endpoints' words: the endpoint is read from the right. */
	{ M "a/b/c/d/e/manifests/t", OCI_MANIFEST, "oci.test", "a/b/c/d/e", "t", false },
	{ M "v2/x/manifests/t", OCI_MANIFEST, "oci.test", "v2/x", "t", false },
	{ R "v2/manifests/t", OCI_MANIFEST, "oci.test", "v2", "t", false },
	{ M "manifests/manifests/manifests", OCI_MANIFEST, "oci.test", "manifests", "manifests", false },
	{ M "blobs/tags/list", OCI_TAGS_LIST, "oci.test", "blobs", "", false },
	{ M "x/tags/manifests/list", OCI_MANIFEST, "oci.test", "x/tags", "list", false },
	{ M "registry/oci/oci.test/x/manifests/t", OCI_MANIFEST, "oci.test", "registry/oci/oci.test/x", "t", false },
	/* Separators: '.', '_', '__', any run of '-'. */
	{ M "a.b_c__d-e---f/g0/manifests/t", OCI_MANIFEST, "oci.test", "a.b_c__d-e---f/g0", "t", false },
	/* Tags: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}. */
	{ M "a/manifests/_", OCI_MANIFEST, "oci.test", "a", "_", false },
	{ M "a/manifests/V1.2.3-rc_1", OCI_MANIFEST, "oci.test", "a", "V1.2.3-rc_1", false },
	{ M "a/manifests/sha256", OCI_MANIFEST, "oci.test", "a", "sha256", false },
	{ M "a/manifests/" HEX64, OCI_MANIFEST, "oci.test", "a", HEX64, false }, /* 64 hex is a tag */
};

static const struct {
	const char *path;
	size_t len; /* 0: strlen */
} path_bad[] = {
	{ "", 0 },
	{ "v2/", 0 },                                     /* not starting with '/' */
	{ "/", 0 },
	{ "/v2//", 0 },                                   /* empty segment */
	{ "//v2/", 0 },
	{ "/v3/", 0 },
	{ "/v2/_catalog", 0 },                            /* not served */
	{ "/v2/library/alpine/manifests/latest", 0 },    /* the bare /v2/<name> form names no registry */
	{ "/v2/registry/oci/", 0 },
	{ "/v2/registry/oci/oci.test", 0 },
	{ "/v2/registry/oci/oci.test/", 0 },
	{ "/v2/registry/npm/oci.test/a/manifests/t", 0 },
	{ "/registry/oci/", 0 },
	{ "/registry/oci/oci.test", 0 },
	{ "/registry/oci/oci.test/", 0 },
	{ "/registry/oci/oci.test/v1/", 0 },
	{ "/registry/oci/oci.test/x/manifests/t", 0 },    /* direct form without v2 */
	{ "/registry/oci//v2/x/manifests/t", 0 },        /* empty host */
	{ "/registry/oci/.oci.test/v2/x/manifests/t", 0 },
	{ "/registry/oci/oci test/v2/x/manifests/t", 0 },
	{ "/registry/oci/oci.test@evil/v2/x/manifests/t", 0 },
	{ M "manifests/t", 0 },                           /* no name */
	{ M "tags/list", 0 },
	{ M "blobs/" D256, 0 },
	{ M "Library/alpine/manifests/t", 0 },            /* uppercase name */
	{ M "library/Alpine/manifests/t", 0 },
	{ M "../alpine/manifests/t", 0 },                 /* dot segments */
	{ M "a/../b/manifests/t", 0 },
	{ M "a/./b/manifests/t", 0 },
	{ M "a/manifests/..", 0 },
	{ "/v2/registry/oci/../v2/", 0 },
	{ "/v2/registry/oci/../../v2/", 0 },
	{ M "a//b/manifests/t", 0 },                      /* empty components */
	{ M "a/b//manifests/t", 0 },
	{ M "a/manifests//t", 0 },
	{ M "a/manifests/t/", 0 },                        /* trailing slash */
	{ M "a/tags/list/", 0 },
	{ M "a/blobs/" D256 "/", 0 },
	{ R "a/manifests/t/", 0 },
	{ M "a/manifests/", 0 },
	{ M "-a/manifests/t", 0 },                        /* separators misplaced */
	{ M "a-/manifests/t", 0 },
	{ M "a..b/manifests/t", 0 },
	{ M "a___b/manifests/t", 0 },
	{ M "a.-b/manifests/t", 0 },
	{ M "a_/manifests/t", 0 },
	{ M ".a/manifests/t", 0 },
	{ M "a/manifests/.t", 0 },                        /* bad tags */
	{ M "a/manifests/-t", 0 },
	{ M "a/manifests/t+1", 0 },
	{ M "a/manifests/a:b", 0 },
	{ M "a/manifests/" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0 },       /* 129 bytes */
	{ M "a/manifests/sha256:" HEX64 "0", 0 },          /* bad digest lengths */
	{ M "a/manifests/sha256:" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde", 0 },
	{ M "a/blobs/sha512:" HEX64, 0 },
	{ M "a/blobs/sha256:" HEX64 HEX64, 0 },
	{ M "a/blobs/sha256:", 0 },
	{ M "a/blobs/sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", 0 }, /* upper hex */
	{ M "a/manifests/sha256:0123456789abcdeF0123456789abcdef0123456789abcdef0123456789abcdef", 0 },
	{ M "a/blobs/SHA256:" HEX64, 0 },
	{ M "a/blobs/sha384:" HEX64 "0123456789abcdef0123456789abcdef", 0 },
	{ M "a/blobs/sha256:" "0123456789abcdeg0123456789abcdef0123456789abcdef0123456789abcdef", 0 },
	{ M "a/blobs/sha256-ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8=", 0 }, /* SRI form */
	{ M "a/blobs/latest", 0 },                        /* a blob needs a digest */
	{ M "a/blobs/uploads", 0 },                       /* read-only: no uploads */
	{ M "a/blobs/uploads/", 0 },
	{ M "a/blobs/uploads/0f1e", 0 },
	{ M "a/referrers/" D256, 0 },
	{ M "a/tags/lists", 0 },
	{ M "a/tags/list?n=10", 0 },                      /* queries are not part of the path */
	{ M "a/manifests/t?x", 0 },
	{ "/v2/?x", 0 },
	{ M "a/manifests/t#f", 0 },
	{ M "a/manifests/t%20", 0 },                      /* still encoded: the caller decodes */
	{ M "a/manifests/t\\x", 0 },
	{ M "a/manifests/t x", 0 },
	{ M "a/manifests/t\x01", 0 },
	{ M "a/manifests/t\xc3\xa9", 0 },
	{ M "a\0b/manifests/t", sizeof(M "a\0b/manifests/t") - 1 }, /* NUL */
	{ "/v2/\0", 5 },
};

static void test_paths(void)
{
	struct oci_path p;
	const char *why;

	for (size_t i = 0; i < sizeof(path_good) / sizeof(path_good[0]); i++) {
		int err = oci_path_parse(path_good[i].path, strlen(path_good[i].path), &p, &why);

		tap_result(!err && !why && p.ep == path_good[i].ep && !strcmp(p.host, path_good[i].host) &&
				   !strcmp(p.name, path_good[i].name) && !strcmp(p.reference, path_good[i].ref) &&
				   p.by_digest == path_good[i].by_digest,
			   "path good %zu: %s (%s)", i, path_good[i].path, why ? why : "ok");
	}
	for (size_t i = 0; i < sizeof(path_bad) / sizeof(path_bad[0]); i++) {
		size_t len = path_bad[i].len ? path_bad[i].len : strlen(path_bad[i].path);
		int err;

		memset(&p, 0x5a, sizeof(p));
		why = NULL;
		err = oci_path_parse(path_bad[i].path, len, &p, &why);
		tap_result(err == -EINVAL && why && *why && !p.host[0] && !p.name[0] && !p.reference[0] &&
				   !p.by_digest,
			   "path bad %zu refused: %.*s (%s)", i, (int)strnlen(path_bad[i].path, len), path_bad[i].path,
			   why ? why : "accepted");
	}
	tap_result(oci_path_parse(NULL, 0, &p, NULL) == -EINVAL, "NULL path, NULL why");
	/* Only `len` bytes are read: a longer buffer's tail is not the path. */
	tap_result(!oci_path_parse(M "a/manifests/tXYZ", strlen(M "a/manifests/t"), &p, NULL) &&
			   !strcmp(p.reference, "t"),
		   "len bounds the path");
}

/* Names at and past 255 bytes, and many components. */
static void test_path_bounds(void)
{
	char path[1024], name[300];
	struct oci_path p;
	const char *why;
	size_t n;
	int err;

	memset(name, 'a', 255);
	name[255] = '\0';
	snprintf(path, sizeof(path), M "%s/manifests/t", name);
	tap_result(!oci_path_parse(path, strlen(path), &p, &why) && strlen(p.name) == 255, "255-byte name");
	snprintf(path, sizeof(path), M "%sa/manifests/t", name);
	err = oci_path_parse(path, strlen(path), &p, &why);
	tap_result(err == -EINVAL && why, "256-byte name refused (%s)", why);

	/* 128 components of one byte: 255 bytes with the slashes. */
	n = 0;
	for (int i = 0; i < 128; i++)
		n += (size_t)snprintf(name + n, sizeof(name) - n, i ? "/%c" : "%c", 'a' + i % 26);
	snprintf(path, sizeof(path), R "%s/tags/list", name);
	tap_result(!oci_path_parse(path, strlen(path), &p, &why) && strlen(p.name) == 255, "128 components (%s)",
		   why ? why : "ok");
	snprintf(path, sizeof(path), R "%s/b/tags/list", name);
	err = oci_path_parse(path, strlen(path), &p, &why);
	tap_result(err == -EINVAL && why, "129 components refused (%s)", why);

	memset(name, 'a', 128);
	name[128] = '\0';
	snprintf(path, sizeof(path), M "x/manifests/%s", name);
	tap_result(!oci_path_parse(path, strlen(path), &p, &why) && strlen(p.reference) == 128, "128-byte tag");

	memset(name, 'h', 253);
	name[253] = '\0';
	snprintf(path, sizeof(path), "/registry/oci/%s/v2/", name);
	tap_result(!oci_path_parse(path, strlen(path), &p, &why) && strlen(p.host) == 253, "253-byte host");
	snprintf(path, sizeof(path), "/registry/oci/%sh/v2/", name);
	err = oci_path_parse(path, strlen(path), &p, &why);
	tap_result(err == -EINVAL && why, "254-byte host refused (%s)", why);
}

/* ---- Manifests ---- */

#define CFG_DIGEST "sha256:dbb5da85f0ddd69b75082672d8d1fac51840daf37c81560a5f4004b08fc24071"
#define LAYER_DIGEST "sha256:6b01ba931ec56758822cbdb4425655dab49fcdebfdb8eede458abdb1d94c4fe8"

/* As umoci wrote it (umoci new; umoci insert): an OCI manifest without a mediaType field. */
static const char umoci_manifest[] =
	"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\""
	CFG_DIGEST "\",\"size\":291},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
	"\"digest\":\"" LAYER_DIGEST "\",\"size\":125}]}";

/* umoci's index.json: an OCI index without a mediaType field, an entry with annotations. */
static const char umoci_index[] =
	"{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	"\"digest\":\"sha256:e9dd2e2fd15fe8b619603f711e400a91e467d492584f890d8a12d4d8db6082f0\",\"size\":345,"
	"\"annotations\":{\"org.opencontainers.image.ref.name\":\"latest\"}}]}";

/* The same image as skopeo copies it with --format v2s2. */
static const char docker_manifest[] =
	"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"config\":"
	"{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"size\":291,\"digest\":\"" CFG_DIGEST
	"\"},\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":125,"
	"\"digest\":\"" LAYER_DIGEST "\"}]}";

/* A multi-platform OCI index as registries serve them, with an attestation entry of platform unknown. */
static const char oci_index[] =
	"{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"application/vnd.oci.image.index.v1+json\",\n"
	"  \"manifests\": [\n"
	"    {\"mediaType\": \"application/vnd.oci.image.manifest.v1+json\", \"size\": 1013,\n"
	"     \"digest\": \"" D256 "\", \"platform\": {\"architecture\": \"amd64\", \"os\": \"linux\"}},\n"
	"    {\"mediaType\": \"application/vnd.oci.image.manifest.v1+json\", \"size\": 1013,\n"
	"     \"digest\": \"" D512 "\",\n"
	"     \"platform\": {\"architecture\": \"arm\", \"os\": \"linux\", \"variant\": \"v7\",\n"
	"                  \"os.features\": [\"x\"]}},\n"
	"    {\"mediaType\": \"application/vnd.oci.image.manifest.v1+json\", \"size\": 566,\n"
	"     \"digest\": \"" D256 "\", \"platform\": {\"architecture\": \"unknown\", \"os\": \"unknown\"},\n"
	"     \"annotations\": {\"vnd.docker.reference.type\": \"attestation-manifest\"}}\n"
	"  ],\n  \"annotations\": {\"org.opencontainers.image.created\": \"2026-01-01T00:00:00Z\"}\n}\n";

static const char docker_list[] =
	"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.list.v2+json\","
	"\"manifests\":[{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"size\":528,"
	"\"digest\":\"" D256 "\",\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}}]}";

/* An artifact manifest: the empty config, subject and artifactType, a layer with foreign urls. */
static const char artifact[] =
	"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	"\"artifactType\":\"application/vnd.example.sbom.v1\",\"config\":{\"mediaType\":"
	"\"application/vnd.oci.empty.v1+json\",\"digest\":\"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\","
	"\"size\":2,\"data\":\"e30=\"},\"layers\":[{\"mediaType\":\"application/vnd.example.sbom.v1\",\"digest\":\""
	D256 "\",\"size\":9007199254740992,\"urls\":[\"https://oci.pkgs.example/x\"]}],\"subject\":{\"mediaType\":"
	"\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D256 "\",\"size\":1}}";

static const char empty_index[] = "{\"schemaVersion\":2,\"manifests\":[]}";
static const char empty_layers[] =
	"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" D256 "\",\"size\":0},\"layers\":[]}";

static const struct {
	const char *what, *doc, *ct;
	enum oci_manifest_kind kind;
	const char *type;
	size_t nitems;
} man_good[] = {
	{ "umoci manifest, no content type", umoci_manifest, NULL, OCI_KIND_MANIFEST, OCI_MT_MANIFEST, 1 },
	{ "umoci manifest, OCI content type", umoci_manifest, OCI_MT_MANIFEST, OCI_KIND_MANIFEST, OCI_MT_MANIFEST,
	  1 },
	{ "umoci index, no content type", umoci_index, NULL, OCI_KIND_INDEX, OCI_MT_INDEX, 1 },
	{ "umoci index, OCI content type", umoci_index, OCI_MT_INDEX, OCI_KIND_INDEX, OCI_MT_INDEX, 1 },
	{ "docker manifest", docker_manifest, OCI_MT_DOCKER_MANIFEST, OCI_KIND_MANIFEST, OCI_MT_DOCKER_MANIFEST,
	  1 },
	{ "docker manifest, no content type", docker_manifest, NULL, OCI_KIND_MANIFEST, OCI_MT_DOCKER_MANIFEST, 1 },
	{ "docker manifest, content type with parameters",
	  docker_manifest, " application/vnd.docker.distribution.manifest.v2+json ; charset=utf-8",
	  OCI_KIND_MANIFEST, OCI_MT_DOCKER_MANIFEST, 1 },
	{ "content type in another case", docker_manifest, "Application/VND.docker.distribution.manifest.v2+JSON",
	  OCI_KIND_MANIFEST, OCI_MT_DOCKER_MANIFEST, 1 },
	{ "OCI index", oci_index, OCI_MT_INDEX, OCI_KIND_INDEX, OCI_MT_INDEX, 3 },
	{ "docker manifest list", docker_list, OCI_MT_DOCKER_LIST, OCI_KIND_INDEX, OCI_MT_DOCKER_LIST, 1 },
	{ "artifact", artifact, OCI_MT_MANIFEST, OCI_KIND_MANIFEST, OCI_MT_MANIFEST, 1 },
	{ "empty index", empty_index, NULL, OCI_KIND_INDEX, OCI_MT_INDEX, 0 },
	{ "no layers", empty_layers, NULL, OCI_KIND_MANIFEST, OCI_MT_MANIFEST, 0 },
};

static void test_manifests_good(void)
{
	struct oci_manifest m;
	const char *why;

	for (size_t i = 0; i < sizeof(man_good) / sizeof(man_good[0]); i++) {
		int err = oci_manifest_parse(man_good[i].doc, strlen(man_good[i].doc), man_good[i].ct, &m, &why);

		tap_result(!err && !why && m.kind == man_good[i].kind && !strcmp(m.media_type, man_good[i].type) &&
				   m.nitems == man_good[i].nitems && m.has_config == (m.kind == OCI_KIND_MANIFEST),
			   "manifest good %zu: %s (%s)", i, man_good[i].what, why ? why : "ok");
		oci_manifest_free(&m);
	}

	/* What the descriptors hold. */
	tap_result(!oci_manifest_parse(docker_manifest, strlen(docker_manifest), NULL, &m, NULL) &&
			   !strcmp(m.config.digest, CFG_DIGEST) && m.config.size == 291 &&
			   !strcmp(m.config.media_type, "application/vnd.docker.container.image.v1+json") &&
			   !strcmp(m.items[0].digest, LAYER_DIGEST) && m.items[0].size == 125 &&
			   !strcmp(m.items[0].media_type, "application/vnd.docker.image.rootfs.diff.tar.gzip") &&
			   !m.items[0].os[0] && !m.items[0].has_urls,
		   "docker manifest: config and layer");
	oci_manifest_free(&m);
	tap_result(!oci_manifest_parse(oci_index, strlen(oci_index), NULL, &m, NULL) && m.nitems == 3 &&
			   !strcmp(m.items[0].os, "linux") && !strcmp(m.items[0].arch, "amd64") &&
			   !m.items[0].variant[0] && !strcmp(m.items[1].variant, "v7") &&
			   !strcmp(m.items[1].digest, D512) && !strcmp(m.items[2].arch, "unknown") &&
			   m.items[1].size == 1013 && !m.has_config,
		   "OCI index: platforms");
	oci_manifest_free(&m);
	tap_result(!oci_manifest_parse(artifact, strlen(artifact), NULL, &m, NULL) && m.items[0].has_urls &&
			   m.items[0].size == OCI_SIZE_MAX && m.config.size == 2,
		   "artifact: urls flagged, size 2^53 accepted");
	oci_manifest_free(&m);
	oci_manifest_free(&m);
	oci_manifest_free(NULL);
	tap_result(m.items == NULL && m.nitems == 0, "free twice and on NULL");
}

/* A manifest with one layer whose descriptor is `layer` (JSON object text). */
#define ONE_LAYER(layer)                                                                                          \
	"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" D256 "\",\"size\":1},\"layers\":[" \
	layer "]}"
#define LAYER_WITH(size_digest) "{\"mediaType\":\"a/b\"," size_digest "}"
/* An index with one entry whose platform is `plat`. */
#define ONE_ENTRY(plat)                                                                                           \
	"{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"a/b\",\"digest\":\"" D256 "\",\"size\":1,"          \
	"\"platform\":" plat "}]}"

static const struct {
	const char *what, *doc, *ct;
	int err;
} man_bad[] = {
	{ "empty", "", NULL, -EBADMSG },
	{ "not JSON", "schemaVersion: 2", NULL, -EBADMSG },
	{ "an array", "[]", NULL, -EBADMSG },
	{ "a string", "\"x\"", NULL, -EBADMSG },
	{ "trailing garbage", "{\"schemaVersion\":2,\"manifests\":[]} x", NULL, -EBADMSG },
	{ "two documents", "{\"schemaVersion\":2,\"manifests\":[]}{}", NULL, -EBADMSG },
	{ "no schemaVersion", "{\"manifests\":[]}", NULL, -EBADMSG },
	{ "schemaVersion 1", "{\"schemaVersion\":1,\"name\":\"a\",\"tag\":\"t\",\"fsLayers\":[]}", NULL, -EBADMSG },
	{ "schemaVersion 3", "{\"schemaVersion\":3,\"manifests\":[]}", NULL, -EBADMSG },
	{ "schemaVersion 2.0", "{\"schemaVersion\":2.0,\"manifests\":[]}", NULL, -EBADMSG },
	{ "schemaVersion \"2\"", "{\"schemaVersion\":\"2\",\"manifests\":[]}", NULL, -EBADMSG },
	{ "schema 1 content type", "{\"schemaVersion\":2,\"manifests\":[]}",
	  "application/vnd.docker.distribution.manifest.v1+prettyjws", -EBADMSG },
	{ "schema 1 mediaType", "{\"schemaVersion\":2,\"mediaType\":"
	  "\"application/vnd.docker.distribution.manifest.v1+json\",\"manifests\":[]}", NULL, -EBADMSG },
	{ "unknown content type", empty_index, "application/json", -EBADMSG },
	{ "empty content type", empty_index, "", -EBADMSG },
	{ "unknown mediaType", "{\"schemaVersion\":2,\"mediaType\":\"application/json\",\"manifests\":[]}", NULL,
	  -EBADMSG },
	{ "mediaType in another case", "{\"schemaVersion\":2,\"mediaType\":"
	  "\"application/vnd.OCI.image.index.v1+json\",\"manifests\":[]}", NULL, -EBADMSG },
	{ "mediaType not a string", "{\"schemaVersion\":2,\"mediaType\":1,\"manifests\":[]}", NULL, -EBADMSG },
	/* Inconsistent mediaType and Content-Type. */
	{ "index declared, manifest content type", oci_index, OCI_MT_MANIFEST, -EBADMSG },
	{ "OCI index declared, docker list content type", oci_index, OCI_MT_DOCKER_LIST, -EBADMSG },
	{ "docker declared, OCI content type", docker_manifest, OCI_MT_MANIFEST, -EBADMSG },
	{ "docker list declared, docker manifest content type", docker_list, OCI_MT_DOCKER_MANIFEST, -EBADMSG },
	/* Inconsistent with the fields. */
	{ "manifest content type, index fields", umoci_index, OCI_MT_MANIFEST, -EBADMSG },
	{ "index content type, manifest fields", umoci_manifest, OCI_MT_INDEX, -EBADMSG },
	{ "index declared, manifest fields", "{\"schemaVersion\":2,\"mediaType\":"
	  "\"application/vnd.oci.image.index.v1+json\",\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" D256
	  "\",\"size\":1},\"layers\":[]}", NULL, -EBADMSG },
	{ "both kinds' fields", "{\"schemaVersion\":2,\"manifests\":[],\"layers\":[]}", NULL, -EBADMSG },
	{ "both kinds' fields, declared", "{\"schemaVersion\":2,\"mediaType\":"
	  "\"application/vnd.oci.image.index.v1+json\",\"manifests\":[],\"config\":{}}", OCI_MT_INDEX, -EBADMSG },
	{ "neither kind's fields", "{\"schemaVersion\":2}", NULL, -EBADMSG },
	{ "docker without mediaType", umoci_manifest, OCI_MT_DOCKER_MANIFEST, -EBADMSG },
	{ "docker list without mediaType", umoci_index, OCI_MT_DOCKER_LIST, -EBADMSG },
	{ "manifest without config", "{\"schemaVersion\":2,\"layers\":[]}", NULL, -EBADMSG },
	{ "manifest without layers", "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" D256
	  "\",\"size\":1}}", NULL, -EBADMSG },
	{ "layers not an array", "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" D256
	  "\",\"size\":1},\"layers\":{}}", NULL, -EBADMSG },
	{ "manifests not an array", "{\"schemaVersion\":2,\"manifests\":{}}", NULL, -EBADMSG },
	{ "manifests null", "{\"schemaVersion\":2,\"manifests\":null}", NULL, -EBADMSG },
	/* Duplicates, at every level. */
	{ "duplicate schemaVersion", "{\"schemaVersion\":2,\"schemaVersion\":2,\"manifests\":[]}", NULL, -EBADMSG },
	{ "duplicate mediaType", "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"mediaType\":\""
	  OCI_MT_MANIFEST "\",\"manifests\":[]}", NULL, -EBADMSG },
	{ "duplicate layers", "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" D256
	  "\",\"size\":1},\"layers\":[],\"layers\":[]}", NULL, -EBADMSG },
	{ "duplicate digest in a descriptor", ONE_LAYER(LAYER_WITH("\"digest\":\"" D256 "\",\"size\":1,"
	  "\"digest\":\"" D512 "\"")), NULL, -EBADMSG },
	{ "duplicate key in a platform", ONE_ENTRY("{\"os\":\"linux\",\"architecture\":\"amd64\",\"os\":\"windows\"}"),
	  NULL, -EBADMSG },
	/* Keys that a case-folding reader (Go's encoding/json) maps onto a field: one document, two readings. */
	{ "index with Layers", "{\"schemaVersion\":2,\"manifests\":[],\"Layers\":[]}", NULL, -EBADMSG },
	{ "MediaType beside mediaType", "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"MediaType\":\""
	  OCI_MT_MANIFEST "\",\"manifests\":[]}", NULL, -EBADMSG },
	{ "Digest after digest", ONE_LAYER(LAYER_WITH("\"size\":1,\"digest\":\"" D256 "\",\"Digest\":\"" D512
	  "\"")), NULL, -EBADMSG },
	{ "SIZE alone", ONE_LAYER(LAYER_WITH("\"SIZE\":1,\"digest\":\"" D256 "\",\"size\":2")), NULL, -EBADMSG },
	{ "size with a long s (U+017F)", ONE_LAYER(LAYER_WITH("\"size\":1,\"digest\":\"" D256
	  "\",\"\u017fize\":2")), NULL, -EBADMSG },
	{ "Kelvin sign in a platform key", ONE_ENTRY("{\"os\":\"linux\",\"architecture\":\"amd64\","
	  "\"variant\":\"v8\",\"\u212aey\":1}"), NULL, -EBADMSG },
	{ "OS in a platform", ONE_ENTRY("{\"os\":\"linux\",\"architecture\":\"amd64\",\"OS\":\"windows\"}"), NULL,
	  -EBADMSG },
	/* Descriptors. */
	{ "descriptor not an object", ONE_LAYER("1"), NULL, -EBADMSG },
	{ "descriptor without mediaType", ONE_LAYER("{\"digest\":\"" D256 "\",\"size\":1}"), NULL, -EBADMSG },
	{ "descriptor mediaType empty", ONE_LAYER("{\"mediaType\":\"\",\"digest\":\"" D256 "\",\"size\":1}"), NULL,
	  -EBADMSG },
	{ "descriptor mediaType without subtype", ONE_LAYER("{\"mediaType\":\"a/\",\"digest\":\"" D256
	  "\",\"size\":1}"), NULL, -EBADMSG },
	{ "descriptor mediaType with parameters", ONE_LAYER("{\"mediaType\":\"a/b; x=y\",\"digest\":\"" D256
	  "\",\"size\":1}"), NULL, -EBADMSG },
	{ "descriptor mediaType with a newline", ONE_LAYER("{\"mediaType\":\"a/b\\n\",\"digest\":\"" D256
	  "\",\"size\":1}"), NULL, -EBADMSG },
	{ "descriptor mediaType with NUL", ONE_LAYER("{\"mediaType\":\"a/b\\u0000c\",\"digest\":\"" D256
	  "\",\"size\":1}"), NULL, -EBADMSG },
	{ "descriptor mediaType a number", ONE_LAYER("{\"mediaType\":1,\"digest\":\"" D256 "\",\"size\":1}"), NULL,
	  -EBADMSG },
	{ "config digest bad", "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"sha256:00\","
	  "\"size\":1},\"layers\":[]}", NULL, -EBADMSG },
	{ "no digest", ONE_LAYER(LAYER_WITH("\"size\":1")), NULL, -EBADMSG },
	{ "digest a number", ONE_LAYER(LAYER_WITH("\"size\":1,\"digest\":1")), NULL, -EBADMSG },
	{ "digest short", ONE_LAYER(LAYER_WITH("\"size\":1,\"digest\":\"sha256:" "0123456789abcdef0123456789abcdef"
	  "0123456789abcdef0123456789abcde\"")), NULL, -EBADMSG },
	{ "digest long", ONE_LAYER(LAYER_WITH("\"size\":1,\"digest\":\"" D256 "0\"")), NULL, -EBADMSG },
	{ "sha512 with 64 hex", ONE_LAYER(LAYER_WITH("\"size\":1,\"digest\":\"sha512:" HEX64 "\"")), NULL,
	  -EBADMSG },
	{ "digest uppercase hex", ONE_LAYER(LAYER_WITH("\"size\":1,\"digest\":\"sha256:"
	  "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\"")), NULL, -EBADMSG },
	{ "digest uppercase algorithm", ONE_LAYER(LAYER_WITH("\"size\":1,\"digest\":\"SHA256:" HEX64 "\"")), NULL,
	  -EBADMSG },
	{ "digest unknown algorithm", ONE_LAYER(LAYER_WITH("\"size\":1,\"digest\":\"blake3:" HEX64 "\"")), NULL,
	  -EBADMSG },
	{ "digest SRI form", ONE_LAYER(LAYER_WITH("\"size\":1,\"digest\":"
	  "\"sha256-ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8=\"")), NULL, -EBADMSG },
	{ "digest with a space", ONE_LAYER(LAYER_WITH("\"size\":1,\"digest\":\" " D256 "\"")), NULL, -EBADMSG },
	{ "no size", ONE_LAYER(LAYER_WITH("\"digest\":\"" D256 "\"")), NULL, -EBADMSG },
	{ "negative size", ONE_LAYER(LAYER_WITH("\"size\":-1,\"digest\":\"" D256 "\"")), NULL, -EBADMSG },
	{ "size 2^53+1", ONE_LAYER(LAYER_WITH("\"size\":9007199254740993,\"digest\":\"" D256 "\"")), NULL,
	  -EBADMSG },
	{ "size 2^63-1", ONE_LAYER(LAYER_WITH("\"size\":9223372036854775807,\"digest\":\"" D256 "\"")), NULL,
	  -EBADMSG },
	{ "size past int64", ONE_LAYER(LAYER_WITH("\"size\":99999999999999999999,\"digest\":\"" D256 "\"")), NULL,
	  -EBADMSG },
	{ "size a real", ONE_LAYER(LAYER_WITH("\"size\":1.0,\"digest\":\"" D256 "\"")), NULL, -EBADMSG },
	{ "size with an exponent", ONE_LAYER(LAYER_WITH("\"size\":1e3,\"digest\":\"" D256 "\"")), NULL, -EBADMSG },
	{ "size a string", ONE_LAYER(LAYER_WITH("\"size\":\"1\",\"digest\":\"" D256 "\"")), NULL, -EBADMSG },
	{ "size null", ONE_LAYER(LAYER_WITH("\"size\":null,\"digest\":\"" D256 "\"")), NULL, -EBADMSG },
	{ "urls not an array", ONE_LAYER(LAYER_WITH("\"size\":1,\"digest\":\"" D256 "\",\"urls\":\"x\"")), NULL,
	  -EBADMSG },
	{ "urls with a number", ONE_LAYER(LAYER_WITH("\"size\":1,\"digest\":\"" D256 "\",\"urls\":[1]")), NULL,
	  -EBADMSG },
	/* Platforms of index entries. */
	{ "platform not an object", ONE_ENTRY("\"linux\""), NULL, -EBADMSG },
	{ "platform without os", ONE_ENTRY("{\"architecture\":\"amd64\"}"), NULL, -EBADMSG },
	{ "platform without architecture", ONE_ENTRY("{\"os\":\"linux\"}"), NULL, -EBADMSG },
	{ "platform os empty", ONE_ENTRY("{\"os\":\"\",\"architecture\":\"amd64\"}"), NULL, -EBADMSG },
	{ "platform os 32 bytes", ONE_ENTRY("{\"os\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"architecture\":\"x\"}"),
	  NULL, -EBADMSG },
	{ "platform os with a slash", ONE_ENTRY("{\"os\":\"linux/x\",\"architecture\":\"amd64\"}"), NULL, -EBADMSG },
	{ "platform variant a number", ONE_ENTRY("{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":7}"), NULL,
	  -EBADMSG },
	{ "platform architecture a number", ONE_ENTRY("{\"os\":\"linux\",\"architecture\":1}"), NULL, -EBADMSG },
	{ "index entry bad digest", "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"a/b\",\"digest\":"
	  "\"sha256:x\",\"size\":1}]}", NULL, -EBADMSG },
};

static void test_manifests_bad(void)
{
	struct oci_manifest m;
	const char *why;

	for (size_t i = 0; i < sizeof(man_bad) / sizeof(man_bad[0]); i++) {
		int err;

		memset(&m, 0x5a, sizeof(m));
		why = NULL;
		err = oci_manifest_parse(man_bad[i].doc, strlen(man_bad[i].doc), man_bad[i].ct, &m, &why);
		tap_result(err == man_bad[i].err && why && *why && !m.items && !m.nitems && !m.has_config &&
				   !m.media_type[0],
			   "manifest bad %zu refused: %s (%d, %s)", i, man_bad[i].what, err, why ? why : "accepted");
		oci_manifest_free(&m);
	}
	tap_result(oci_manifest_parse("{\"schemaVersion\":2,\"manifests\":[]}\0", 36, NULL, &m, &why) == -EBADMSG,
		   "a NUL after the document");
	tap_result(oci_manifest_parse(NULL, 0, NULL, &m, NULL) == -EBADMSG, "NULL document, NULL why");
}

static void test_type_known(void)
{
	static const struct {
		const char *t;
		bool known;
	} cases[] = {
		{ OCI_MT_MANIFEST, true },
		{ OCI_MT_INDEX, true },
		{ OCI_MT_DOCKER_MANIFEST, true },
		{ OCI_MT_DOCKER_LIST, true },
		{ "application/vnd.oci.image.index.v1+json; charset=utf-8", true },
		{ "  APPLICATION/vnd.oci.image.manifest.v1+json\t", true },
		{ "application/vnd.docker.distribution.manifest.v1+json", false },
		{ "application/vnd.docker.distribution.manifest.v1+prettyjws", false },
		{ "application/vnd.oci.image.config.v1+json", false },
		{ "application/json", false },
		{ "application/vnd.oci.image.manifest.v1+jso", false },
		{ "application/vnd.oci.image.manifest.v1+jsonx", false },
		{ "", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		tap_result(oci_manifest_type_known(cases[i].t, strlen(cases[i].t)) == cases[i].known,
			   "type known %zu: \"%s\" %s", i, cases[i].t, cases[i].known ? "known" : "not known");
	tap_result(!oci_manifest_type_known(OCI_MT_MANIFEST, 10), "len bounds the type");
	tap_result(!oci_manifest_type_known(NULL, 0), "NULL type");
}

/* An index of `n` entries, malloc'd. */
static char *big_index(size_t n, size_t *len)
{
	static const char entry[] = "{\"mediaType\":\"a/b\",\"digest\":\"" D256 "\",\"size\":1,"
				    "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}";
	size_t cap = 64 + n * sizeof(entry);
	char *s = malloc(cap);
	size_t k;

	if (!s)
		abort();
	k = (size_t)snprintf(s, cap, "{\"schemaVersion\":2,\"manifests\":[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			s[k++] = ',';
		memcpy(s + k, entry, sizeof(entry) - 1);
		k += sizeof(entry) - 1;
	}
	memcpy(s + k, "]}", 3);
	*len = k + 2;
	return s;
}

static void test_manifest_bounds(void)
{
	struct oci_manifest m;
	const char *why;
	size_t len;
	char *s;
	int err;

	s = big_index(OCI_MANIFEST_MAX_ITEMS, &len);
	err = oci_manifest_parse(s, len, OCI_MT_INDEX, &m, &why);
	tap_result(!err && m.nitems == OCI_MANIFEST_MAX_ITEMS && !strcmp(m.items[9999].arch, "amd64"),
		   "10000 entries (%zu bytes)", len);
	oci_manifest_free(&m);
	free(s);
	s = big_index(OCI_MANIFEST_MAX_ITEMS + 1, &len);
	err = oci_manifest_parse(s, len, OCI_MT_INDEX, &m, &why);
	tap_result(err == -E2BIG && why && !m.items, "10001 entries refused (%s)", why);
	free(s);

	/* Past 4 MiB: refused before reading a byte of it. */
	len = OCI_MANIFEST_MAX_BYTES + 1;
	s = malloc(len);
	if (!s)
		abort();
	memset(s, ' ', len);
	err = oci_manifest_parse(s, len, NULL, &m, &why);
	tap_result(err == -E2BIG && why, "4 MiB + 1 refused (%s)", why);

	/* Under 4 MiB, but over a million tiny containers: refused before jansson allocates them. */
	len = 2 + 3 * 1000000;
	s[0] = '[';
	for (size_t i = 0; i < 1000000; i++)
		memcpy(s + 1 + 3 * i, "{},", 3);
	s[len - 2] = '{';
	s[len - 1] = '}';
	memcpy(s + len, "]", 1);
	err = oci_manifest_parse(s, len + 1, NULL, &m, &why);
	tap_result(err == -E2BIG && why, "a million objects refused (%s)", why);
	/* ...and a million small scalars. */
	s[0] = '[';
	for (size_t i = 0; i < 1000000; i++)
		memcpy(s + 1 + 2 * i, "1,", 2);
	memcpy(s + 1 + 2 * 1000000, "1]", 2);
	err = oci_manifest_parse(s, 3 + 2 * 1000000, NULL, &m, &why);
	tap_result(err == -E2BIG && why, "a million numbers refused (%s)", why);
	/* Commas and brackets inside strings are not values. */
	len = (size_t)snprintf(s, OCI_MANIFEST_MAX_BYTES, "{\"schemaVersion\":2,\"manifests\":[],\"x\":\"");
	for (size_t i = 0; i < 1000000; i++)
		memcpy(s + len + 2 * i, i % 2 ? ",[" : "\\\"", 2);
	len += 2 * 1000000;
	memcpy(s + len, "\"}", 2);
	len += 2;
	err = oci_manifest_parse(s, len, NULL, &m, &why);
	tap_result(!err && m.kind == OCI_KIND_INDEX, "commas, brackets and escaped quotes in a string (%s)",
		   why ? why : "ok");
	oci_manifest_free(&m);
	free(s);
}

int main(void)
{
	test_paths();
	test_path_bounds();
	test_manifests_good();
	test_manifests_bad();
	test_type_known();
	test_manifest_bounds();
	return tap_done();
}
