/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parsers for the read-only OCI registry mediation: the request paths a registry client sends to the gateway,
 * and the manifests and indexes an upstream registry returns. No I/O and no shared state: every function may
 * be called from any thread. Every input is untrusted.
 */
#ifndef CRGW_MEDIATION_OCIPROTO_H
#define CRGW_MEDIATION_OCIPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Request paths ---- */

#define OCI_NAME_MAX 255 /* bytes of a repository name, as the distribution spec's clients limit it */
#define OCI_TAG_MAX 128
#define OCI_HOST_MAX 253

enum oci_endpoint {
	OCI_PING, /* GET /v2/ */
	OCI_MANIFEST, /* GET|HEAD .../<name>/manifests/<tag or digest> */
	OCI_BLOB, /* GET|HEAD .../<name>/blobs/<digest> */
	OCI_TAGS_LIST, /* GET .../<name>/tags/list (its query, n and last, is the caller's) */
};

struct oci_path {
	enum oci_endpoint ep;
	/*
	 * The upstream registry as the path names it, NUL-terminated; checked only loosely (letters, digits and
	 * ".-_:[]"), so the caller normalizes it and checks it against the policy. Empty for the mirror form's
	 * ping, which names no registry.
	 */
	char host[OCI_HOST_MAX + 1];
	/*
	 * The repository: components [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* joined by '/', at most OCI_NAME_MAX bytes.
	 * Empty for a ping.
	 */
	char name[OCI_NAME_MAX + 1];
	/*
	 * A manifest's tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127}) or, for a manifest or a blob, a digest
	 * "sha256:<64 hex>" / "sha512:<128 hex>" in lower case. Empty for a ping and a tag list.
	 */
	char reference[136];
	bool by_digest; /* reference is a digest (always, for a blob) */
};

/*
 * Parses a request path. `path` (`len` bytes, borrowed, no NUL needed) is the whole canonical path from
 * med_path_canon: starting with '/', percent-decoded once, without its query. Whole, not past a prefix,
 * because the prefix decides where the host is, and a repository may itself have a component "v2". Three
 * forms are accepted:
 *
 *   /v2/                                      ping, the mirror form (the host is not known)
 *   /v2/registry/oci/<host>/<name>/<rest>     mirror form: containers/image with a registries.conf
 *                                             location "<gw>:8170/registry/oci/<host>" puts that location's
 *                                             path in front of the repository name
 *   /registry/oci/<host>/v2/                  ping, the direct form
 *   /registry/oci/<host>/v2/<name>/<rest>     direct form: a client whose base URL is ".../registry/oci/<host>"
 *
 * where <rest> is "manifests/<tag or digest>", "blobs/<digest>" or "tags/list". A ping may omit its final
 * '/'; nothing else may end with one. Returns 0 with `*out` filled, or -EINVAL with `*out` zeroed and `*why`
 * (may be NULL) pointing to a static string saying what was refused.
 */
int oci_path_parse(const char *path, size_t len, struct oci_path *out, const char **why);

/* ---- Manifests and indexes ---- */

#define OCI_MANIFEST_MAX_BYTES (4u << 20) /* the caller reads at most this much; the parser checks it again */
#define OCI_MANIFEST_MAX_ITEMS 10000 /* layers of a manifest, or manifests of an index */
#define OCI_SIZE_MAX (INT64_C(1) << 53) /* a descriptor's size: what every JSON reader holds exactly */

#define OCI_MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define OCI_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"

struct oci_descriptor {
	char media_type[256]; /* type "/" subtype, RFC 6838 restricted names, no parameters */
	char digest[136]; /* "sha256:<64 hex>" or "sha512:<128 hex>", lower case */
	int64_t size; /* 0 ... OCI_SIZE_MAX */
	/* An index entry's platform, when it has one (else empty): [A-Za-z0-9._-], at most 31 bytes each. */
	char os[32], arch[32], variant[32];
	/*
	 * The descriptor lists `urls` (a non-distributable layer): clients such as containers/image fetch those
	 * directly, around the gateway, so the handler must decide what to do with such a manifest.
	 */
	bool has_urls;
};

enum oci_manifest_kind { OCI_KIND_MANIFEST, OCI_KIND_INDEX };

struct oci_manifest {
	enum oci_manifest_kind kind;
	char media_type[256]; /* one of the four OCI_MT_* types: as declared, else as the content type says */
	struct oci_descriptor config; /* a manifest's config */
	bool has_config; /* true exactly for OCI_KIND_MANIFEST */
	struct oci_descriptor *items; /* layers or manifests, in document order; owned, NULL when nitems is 0 */
	size_t nitems;
};

/*
 * Parses a manifest or an index (`len` bytes, borrowed, untrusted) as an upstream registry returned it, with
 * the response's Content-Type `content_type` (NUL-terminated, parameters ignored; NULL when there was none).
 * The document's mediaType and the content type must agree; without a mediaType field (allowed by the OCI
 * spec, never by Docker's) the content type decides, and without both the fields do ("manifests" for an
 * index, "config"/"layers" for a manifest). A document with the fields of both kinds is refused either way.
 * Schema 1 manifests are refused.
 *
 * Returns 0 with `*out` filled (free it with oci_manifest_free); -EBADMSG when malformed; -E2BIG past
 * OCI_MANIFEST_MAX_BYTES, OCI_MANIFEST_MAX_ITEMS or the parser's count of JSON values; -ENOMEM. On failure
 * `*out` is empty and `*why` (may be NULL) points to a static string saying what was refused.
 */
int oci_manifest_parse(const char *doc, size_t len, const char *content_type, struct oci_manifest *out,
		       const char **why);

/* Frees what `m` owns and empties it. Safe on a zeroed struct and twice. */
void oci_manifest_free(struct oci_manifest *m);

/*
 * Whether `type` (`len` bytes, borrowed, no NUL needed) is one of the four manifest media types above, in any
 * case, ignoring parameters (";charset=utf-8") and whitespace around them.
 */
bool oci_manifest_type_known(const char *type, size_t len);

#endif
