/* SPDX-License-Identifier: Apache-2.0 */
/* OCI registry mediation parsers: request paths and manifests, strictly, with one spelling for each thing. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "ociproto.h"

/* ---- Shared grammar ---- */

static bool is_lower_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(unsigned char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_lower_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/*
 * "sha256:<64 hex>" or "sha512:<128 hex>", lower case only. The cache's parser also takes upper case and the
 * SRI form; here one digest has one spelling, so a path or a manifest can never name one object two ways
 * (and so two cache keys, or an allowlist entry that one spelling slips past).
 */
static bool digest_valid(const char *s, size_t n)
{
	size_t hex;

	if (n == 7 + 64 && !memcmp(s, "sha256:", 7))
		hex = 64;
	else if (n == 7 + 128 && !memcmp(s, "sha512:", 7))
		hex = 128;
	else
		return false;
	for (size_t i = 7; i < 7 + hex; i++)
		if (!is_lower_hex((unsigned char)s[i]))
			return false;
	return true;
}

static bool seg_is(const char *s, size_t n, const char *lit)
{
	return n == strlen(lit) && !memcmp(s, lit, n);
}

/* ---- Paths ---- */

/* A repository name has at most 128 components (255 bytes); the forms add at most six more segments. */
#define MAX_SEGMENTS 136

struct seg {
	const char *p;
	size_t n;
};

/* One component of a repository name: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* (distribution spec). */
static bool name_component_valid(const char *s, size_t n)
{
	size_t i = 0;

	for (;;) {
		if (i >= n || !is_lower_alnum((unsigned char)s[i]))
			return false;
		while (i < n && is_lower_alnum((unsigned char)s[i]))
			i++;
		if (i == n)
			return true;
		if (s[i] == '.') {
			i++;
		} else if (s[i] == '_') {
			i += (i + 1 < n && s[i + 1] == '_') ? 2 : 1;
		} else if (s[i] == '-') {
			while (i < n && s[i] == '-')
				i++;
		} else {
			return false;
		}
	}
}

static bool tag_valid(const char *s, size_t n)
{
	if (n < 1 || n > OCI_TAG_MAX || !(is_alnum((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(is_alnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
			return false;
	return true;
}

/*
 * Loose on purpose: the caller lowercases the host, drops a default port and checks it against the policy.
 * This only keeps out what could never be a host and port, so nothing odd reaches a log line or a lookup.
 */
static bool host_valid(const char *s, size_t n)
{
	if (n < 1 || n > OCI_HOST_MAX || !(is_alnum((unsigned char)s[0]) || s[0] == '['))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(is_alnum((unsigned char)s[i]) || strchr(".-_:[]", s[i])))
			return false;
	return true;
}

/* Splits "/a/b/c" into segments; a final '/' sets `*trailing`. -1 with `*why` on an empty or dot segment. */
static int split(const char *path, size_t len, struct seg *segs, size_t *nseg, bool *trailing, const char **why)
{
	size_t i = 1, n = 0;

	*trailing = false;
	while (i < len) {
		const char *slash = memchr(path + i, '/', len - i);
		size_t end = slash ? (size_t)(slash - path) : len;

		if (end == i) {
			*why = "an empty path segment";
			return -1;
		}
		if (n == MAX_SEGMENTS) {
			*why = "too many path segments";
			return -1;
		}
		segs[n].p = path + i;
		segs[n].n = end - i;
		if (seg_is(segs[n].p, segs[n].n, ".") || seg_is(segs[n].p, segs[n].n, "..")) {
			*why = "a dot segment in the path";
			return -1;
		}
		n++;
		i = end + 1;
		if (slash && i == len)
			*trailing = true;
	}
	*nseg = n;
	return 0;
}

/* Fills name, endpoint and reference from segs[first] to the end: "<name>/manifests/<ref>" and so on. */
static int parse_tail(const struct seg *segs, size_t first, size_t nseg, struct oci_path *out, const char **why)
{
	const struct seg *ep, *ref;
	size_t pos = 0;

	if (nseg < first + 3) {
		*why = "expected <name>/manifests/<reference>, <name>/blobs/<digest> or <name>/tags/list";
		return -1;
	}
	ep = &segs[nseg - 2];
	ref = &segs[nseg - 1];
	/* From the right: a repository may have components named "manifests", "blobs" or "tags". */
	if (seg_is(ep->p, ep->n, "manifests")) {
		out->ep = OCI_MANIFEST;
		if (digest_valid(ref->p, ref->n)) {
			out->by_digest = true;
		} else if (memchr(ref->p, ':', ref->n)) {
			*why = "a manifest digest must be sha256:<64 hex> or sha512:<128 hex>, lower case";
			return -1;
		} else if (!tag_valid(ref->p, ref->n)) {
			*why = "a tag must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}";
			return -1;
		}
	} else if (seg_is(ep->p, ep->n, "blobs")) {
		out->ep = OCI_BLOB;
		if (!digest_valid(ref->p, ref->n)) {
			*why = "a blob digest must be sha256:<64 hex> or sha512:<128 hex>, lower case";
			return -1;
		}
		out->by_digest = true;
	} else if (seg_is(ep->p, ep->n, "tags") && seg_is(ref->p, ref->n, "list")) {
		out->ep = OCI_TAGS_LIST;
	} else {
		*why = "not a manifest, blob or tag list path (this registry mediation is read-only)";
		return -1;
	}
	if (out->ep != OCI_TAGS_LIST) {
		memcpy(out->reference, ref->p, ref->n);
		out->reference[ref->n] = '\0';
	}
	for (size_t k = first; k < nseg - 2; k++) {
		if (!name_component_valid(segs[k].p, segs[k].n)) {
			*why = "a repository name component must match [a-z0-9]+((.|_|__|-+)[a-z0-9]+)*";
			return -1;
		}
		if (pos + (k > first) + segs[k].n > OCI_NAME_MAX) {
			*why = "the repository name is longer than 255 bytes";
			return -1;
		}
		if (k > first)
			out->name[pos++] = '/';
		memcpy(out->name + pos, segs[k].p, segs[k].n);
		pos += segs[k].n;
	}
	out->name[pos] = '\0';
	return 0;
}

static int take_host(const struct seg *s, struct oci_path *out, const char **why)
{
	if (!host_valid(s->p, s->n)) {
		*why = "not a registry host";
		return -1;
	}
	memcpy(out->host, s->p, s->n);
	out->host[s->n] = '\0';
	return 0;
}

int oci_path_parse(const char *path, size_t len, struct oci_path *out, const char **why)
{
	struct seg segs[MAX_SEGMENTS];
	size_t nseg = 0, first;
	bool trailing;
	const char *dummy;
	int rc = -1;

	if (!why)
		why = &dummy;
	*why = NULL;
	memset(out, 0, sizeof(*out));
	if (!path || len == 0 || path[0] != '/') {
		*why = "the path must start with '/'";
		goto out;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)path[i];

		if (c == '?' || c == '#') {
			*why = "a query or fragment is not part of the path";
			goto out;
		}
		if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '%') {
			*why = "a byte no registry path holds";
			goto out;
		}
	}
	if (split(path, len, segs, &nseg, &trailing, why))
		goto out;

	if (nseg >= 1 && seg_is(segs[0].p, segs[0].n, "v2")) {
		if (nseg == 1) {
			out->ep = OCI_PING;
			rc = 0;
			goto out;
		}
		if (nseg < 4 || !seg_is(segs[1].p, segs[1].n, "registry") || !seg_is(segs[2].p, segs[2].n, "oci")) {
			*why = "under /v2/ the gateway serves only /v2/registry/oci/<host>/";
			goto out;
		}
		if (take_host(&segs[3], out, why))
			goto out;
		first = 4;
	} else if (nseg >= 3 && seg_is(segs[0].p, segs[0].n, "registry") && seg_is(segs[1].p, segs[1].n, "oci")) {
		if (take_host(&segs[2], out, why))
			goto out;
		if (nseg < 4 || !seg_is(segs[3].p, segs[3].n, "v2")) {
			*why = "expected /registry/oci/<host>/v2/";
			goto out;
		}
		if (nseg == 4) {
			out->ep = OCI_PING;
			rc = 0;
			goto out;
		}
		first = 4;
	} else {
		*why = "not an OCI registry path";
		goto out;
	}
	if (trailing) {
		*why = "a trailing '/' (only the ping /v2/ has one)";
		goto out;
	}
	rc = parse_tail(segs, first, nseg, out, why);
out:
	if (rc) {
		memset(out, 0, sizeof(*out));
		return -EINVAL;
	}
	*why = NULL;
	return 0;
}

/* ---- Manifests ---- */

static const char *const known_types[] = { OCI_MT_MANIFEST, OCI_MT_INDEX, OCI_MT_DOCKER_MANIFEST, OCI_MT_DOCKER_LIST };

/* Schema 1, signed or not: refused (no content digests of its own, and long deprecated). */
static bool type_is_schema1(const char *s, size_t n)
{
	return (n == strlen("application/vnd.docker.distribution.manifest.v1+json") &&
		!strncasecmp(s, "application/vnd.docker.distribution.manifest.v1+json", n)) ||
	       (n == strlen("application/vnd.docker.distribution.manifest.v1+prettyjws") &&
		!strncasecmp(s, "application/vnd.docker.distribution.manifest.v1+prettyjws", n));
}

/* The bare type of a Content-Type value: whitespace around it and parameters dropped. */
static void bare_type(const char **s, size_t *n)
{
	const char *semi = memchr(*s, ';', *n);

	if (semi)
		*n = (size_t)(semi - *s);
	while (*n && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*n)--;
	}
	while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
		(*n)--;
}

/* The known type `s` names (any case), or NULL. */
static const char *known_type(const char *s, size_t n)
{
	for (size_t i = 0; i < sizeof(known_types) / sizeof(known_types[0]); i++)
		if (n == strlen(known_types[i]) && !strncasecmp(s, known_types[i], n))
			return known_types[i];
	return NULL;
}

bool oci_manifest_type_known(const char *type, size_t len)
{
	if (!type)
		return false;
	bare_type(&type, &len);
	return known_type(type, len) != NULL;
}

static bool is_index_type(const char *t)
{
	return t == known_types[1] || t == known_types[3];
}

/* RFC 6838 section 4.2 restricted-name: 1-127 bytes, alphanumeric first. */
static bool restricted_name(const char *s, size_t n)
{
	if (n < 1 || n > 127 || !is_alnum((unsigned char)s[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!is_alnum((unsigned char)s[i]) && !strchr("!#$&-^_.+", s[i]))
			return false;
	return true;
}

static bool media_type_valid(const char *s, size_t n)
{
	const char *slash = memchr(s, '/', n);

	return slash && restricted_name(s, (size_t)(slash - s)) &&
	       restricted_name(slash + 1, n - (size_t)(slash - s) - 1);
}

static bool platform_value_valid(const char *s, size_t n, size_t cap)
{
	if (n < 1 || n >= cap)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

/*
 * The fields a client's JSON reader maps onto its manifest, descriptor and platform types. Go's encoding/json,
 * which containers/image, containerd and docker use, matches keys case-insensitively (with Unicode folding:
 * "\u017fize" is "size" to it) and lets a later key win. So {"digest": A, "Digest": B} is A here and B there,
 * and an index with "Layers" is also a manifest there. Any key that folds onto one of these names without
 * being it, and any non-ASCII key, is refused in the objects read here, so both readers see one document.
 */
static const char *const field_names[] = {
	"schemaVersion", "mediaType", "artifactType", "config", "layers", "manifests", "subject", "annotations",
	"digest", "size", "urls", "data", "platform", "architecture", "os", "os.version", "os.features", "variant",
	"features",
};

static int keys_check(json_t *o, const char **why)
{
	const char *key;
	json_t *v;

	json_object_foreach(o, key, v) {
		for (const char *c = key; *c; c++) {
			if ((unsigned char)*c >= 0x80) {
				*why = "a non-ASCII key where a client's reader folds keys";
				return -EBADMSG;
			}
		}
		for (size_t i = 0; i < sizeof(field_names) / sizeof(field_names[0]); i++) {
			if (!strcasecmp(key, field_names[i]) && strcmp(key, field_names[i])) {
				*why = "a key that differs from a field name only in case";
				return -EBADMSG;
			}
		}
	}
	return 0;
}

/* A string member's value and length; false when absent or not a string. */
static bool get_string(json_t *o, const char *key, const char **s, size_t *n)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_string(v))
		return false;
	*s = json_string_value(v);
	*n = json_string_length(v);
	/* Without JSON_ALLOW_NUL jansson refuses "\u0000", so strlen agrees; checked anyway, it is cheap. */
	return strlen(*s) == *n;
}

static int platform_parse(json_t *p, struct oci_descriptor *d, const char **why)
{
	const char *s;
	size_t n;

	if (!json_is_object(p)) {
		*why = "a platform is not an object";
		return -EBADMSG;
	}
	if (keys_check(p, why))
		return -EBADMSG;
	if (!get_string(p, "os", &s, &n) || !platform_value_valid(s, n, sizeof(d->os))) {
		*why = "a platform's os is missing or not [A-Za-z0-9._-]{1,31}";
		return -EBADMSG;
	}
	memcpy(d->os, s, n + 1);
	if (!get_string(p, "architecture", &s, &n) || !platform_value_valid(s, n, sizeof(d->arch))) {
		*why = "a platform's architecture is missing or not [A-Za-z0-9._-]{1,31}";
		return -EBADMSG;
	}
	memcpy(d->arch, s, n + 1);
	if (json_object_get(p, "variant")) {
		if (!get_string(p, "variant", &s, &n) || !platform_value_valid(s, n, sizeof(d->variant))) {
			*why = "a platform's variant is not [A-Za-z0-9._-]{1,31}";
			return -EBADMSG;
		}
		memcpy(d->variant, s, n + 1);
	}
	return 0;
}

/* One descriptor; `entry` says it is an index's entry, whose platform is read. */
static int descriptor_parse(json_t *o, bool entry, struct oci_descriptor *d, const char **why)
{
	const char *s;
	size_t n;
	json_t *v;
	json_int_t size;

	if (!json_is_object(o)) {
		*why = "a descriptor is not an object";
		return -EBADMSG;
	}
	if (keys_check(o, why))
		return -EBADMSG;
	if (!get_string(o, "mediaType", &s, &n) || !media_type_valid(s, n)) {
		*why = "a descriptor's mediaType is missing or not type/subtype";
		return -EBADMSG;
	}
	memcpy(d->media_type, s, n + 1);
	if (!get_string(o, "digest", &s, &n) || !digest_valid(s, n)) {
		*why = "a descriptor's digest is missing or not sha256:<64 hex> / sha512:<128 hex>, lower case";
		return -EBADMSG;
	}
	memcpy(d->digest, s, n + 1);
	/*
	 * An integer token only: 1.0 and 1e3 are reals to jansson. Above 2^53 a JavaScript or float-based reader
	 * would see another size than this one, and a client trusting it could be made to read forever.
	 */
	v = json_object_get(o, "size");
	if (!json_is_integer(v)) {
		*why = "a descriptor's size is missing or not an integer";
		return -EBADMSG;
	}
	size = json_integer_value(v);
	if (size < 0 || size > OCI_SIZE_MAX) {
		*why = "a descriptor's size is negative or above 2^53";
		return -EBADMSG;
	}
	d->size = (int64_t)size;
	v = json_object_get(o, "urls");
	if (v) {
		size_t i;
		json_t *u;

		if (!json_is_array(v)) {
			*why = "a descriptor's urls is not an array";
			return -EBADMSG;
		}
		json_array_foreach(v, i, u) {
			if (!json_is_string(u)) {
				*why = "a descriptor's urls holds a non-string";
				return -EBADMSG;
			}
		}
		d->has_urls = json_array_size(v) > 0;
	}
	v = json_object_get(o, "platform");
	if (entry && v)
		return platform_parse(v, d, why);
	return 0;
}

/*
 * A bound on jansson's memory before it allocates anything: a 4 MiB document of "{}," would be over a
 * million objects, some hundreds of MiB. Counting the opening brackets and commas outside strings bounds the
 * containers and the values; the lexing of strings (a quote opens and closes, a backslash escapes the next
 * byte) is jansson's, so on any prefix it accepts both agree. A real index of 10000 entries, each with a
 * platform and a few annotations, stays well below both limits.
 */
#define MAX_CONTAINERS 65536
#define MAX_VALUES 262144

static int scan_bounds(const char *doc, size_t len)
{
	size_t containers = 0, values = 0;
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		char c = doc[i];

		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = false;
			continue;
		}
		if (c == '"') {
			in_str = true;
		} else if (c == '{' || c == '[') {
			containers++;
			values++;
		} else if (c == ',') {
			values++;
		}
		if (containers > MAX_CONTAINERS || values > MAX_VALUES)
			return -E2BIG;
	}
	return 0;
}

int oci_manifest_parse(const char *doc, size_t len, const char *content_type, struct oci_manifest *out,
		       const char **why)
{
	const char *ct = NULL, *declared = NULL, *type, *s, *dummy;
	json_t *root = NULL, *arr;
	json_error_t jerr;
	size_t n;
	bool has_index_fields, has_manifest_fields;
	int err = -EBADMSG;

	if (!why)
		why = &dummy;
	*why = NULL;
	memset(out, 0, sizeof(*out));
	if (len > OCI_MANIFEST_MAX_BYTES) {
		*why = "the manifest is larger than 4 MiB";
		err = -E2BIG;
		goto out;
	}
	if (!doc) {
		*why = "no manifest";
		goto out;
	}
	if (content_type) {
		s = content_type;
		n = strlen(s);
		bare_type(&s, &n);
		if (type_is_schema1(s, n)) {
			*why = "schema 1 manifests are refused";
			goto out;
		}
		ct = known_type(s, n);
		if (!ct) {
			*why = "the Content-Type is not a manifest or index media type";
			goto out;
		}
	}
	if (scan_bounds(doc, len)) {
		*why = "the manifest holds too many JSON values";
		err = -E2BIG;
		goto out;
	}
	root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		if (json_error_code(&jerr) == json_error_out_of_memory) {
			*why = "out of memory";
			err = -ENOMEM;
		} else if (json_error_code(&jerr) == json_error_duplicate_key) {
			*why = "a duplicate key";
		} else {
			*why = "not one JSON document";
		}
		goto out;
	}
	if (!json_is_object(root)) {
		*why = "the manifest is not a JSON object";
		goto out;
	}
	if (keys_check(root, why))
		goto out;
	arr = json_object_get(root, "schemaVersion");
	if (!json_is_integer(arr) || json_integer_value(arr) != 2) {
		*why = json_is_integer(arr) && json_integer_value(arr) == 1 ? "schema 1 manifests are refused"
									     : "schemaVersion is not 2";
		goto out;
	}
	if (json_object_get(root, "mediaType")) {
		if (!get_string(root, "mediaType", &s, &n)) {
			*why = "the manifest's mediaType is not a string";
			goto out;
		}
		if (type_is_schema1(s, n)) {
			*why = "schema 1 manifests are refused";
			goto out;
		}
		/* Exact case: the document is JSON, where a value has one spelling. */
		for (size_t i = 0; i < sizeof(known_types) / sizeof(known_types[0]); i++)
			if (!strcmp(s, known_types[i]))
				declared = known_types[i];
		if (!declared) {
			*why = "the manifest's mediaType is not a manifest or index media type";
			goto out;
		}
	}
	/*
	 * A document with the fields of both kinds is refused whatever it declares: it means one thing to a
	 * client that goes by "manifests" and another to one that goes by "layers" (the ambiguity behind
	 * CVE-2021-41190, after which the image spec forbade it).
	 */
	has_index_fields = json_object_get(root, "manifests") != NULL;
	has_manifest_fields = json_object_get(root, "config") || json_object_get(root, "layers");
	if (has_index_fields && has_manifest_fields) {
		*why = "the document has both an index's manifests and a manifest's config or layers";
		goto out;
	}
	if (declared && ct && declared != ct) {
		*why = "the manifest's mediaType and the Content-Type disagree";
		goto out;
	}
	type = declared ? declared : ct;
	if (!declared && type && (type == known_types[2] || type == known_types[3])) {
		*why = "a Docker manifest without its mediaType";
		goto out;
	}
	if (!type) {
		if (has_index_fields)
			type = OCI_MT_INDEX;
		else if (has_manifest_fields)
			type = OCI_MT_MANIFEST;
		else {
			*why = "neither a manifest nor an index";
			goto out;
		}
		type = known_type(type, strlen(type));
	}
	memcpy(out->media_type, type, strlen(type) + 1);

	if (is_index_type(type)) {
		out->kind = OCI_KIND_INDEX;
		arr = json_object_get(root, "manifests");
		if (!json_is_array(arr) || has_manifest_fields) {
			*why = "an index without a manifests array";
			goto out;
		}
	} else {
		out->kind = OCI_KIND_MANIFEST;
		if (has_index_fields) {
			*why = "a manifest with an index's manifests";
			goto out;
		}
		err = descriptor_parse(json_object_get(root, "config"), false, &out->config, why);
		if (err) {
			if (!json_object_get(root, "config"))
				*why = "a manifest without a config";
			goto out;
		}
		out->has_config = true;
		err = -EBADMSG;
		arr = json_object_get(root, "layers");
		if (!json_is_array(arr)) {
			*why = "a manifest without a layers array";
			goto out;
		}
	}
	n = json_array_size(arr);
	if (n > OCI_MANIFEST_MAX_ITEMS) {
		*why = "more than 10000 layers or manifests";
		err = -E2BIG;
		goto out;
	}
	if (n) {
		out->items = calloc(n, sizeof(*out->items));
		if (!out->items) {
			*why = "out of memory";
			err = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++) {
		err = descriptor_parse(json_array_get(arr, i), out->kind == OCI_KIND_INDEX, &out->items[i], why);
		if (err)
			goto out;
		out->nitems++;
	}
	err = 0;
out:
	json_decref(root);
	if (err)
		oci_manifest_free(out);
	else
		*why = NULL;
	return err;
}

void oci_manifest_free(struct oci_manifest *m)
{
	if (!m)
		return;
	free(m->items);
	memset(m, 0, sizeof(*m));
}
