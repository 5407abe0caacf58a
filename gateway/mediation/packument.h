/* SPDX-License-Identifier: Apache-2.0 */
/*
 * npm packuments (a package's metadata document, as an npm registry serves it): parsed strictly, every version
 * judged by the caller, and rewritten so the sandbox's client sees only the versions it may install, each with
 * a tarball URL that points back at the gateway. Also npm package names and tarball paths. Pure: no I/O, no
 * global state; every input untrusted (the upstream wrote the document, the sandbox wrote the path). Nothing
 * here keeps state between calls, so any thread may call any function.
 */
#ifndef CRGW_MEDIATION_PACKUMENT_H
#define CRGW_MEDIATION_PACKUMENT_H

#include <stdbool.h>
#include <stddef.h>

#define NPM_PACKUMENT_MAX (96u << 20) /* bytes of one document; the caller stops reading here too */
#define NPM_REWRITE_MAX (128u << 20)  /* bytes of a rewritten document */
#define NPM_MAX_DEPTH 64	      /* nesting of arrays and objects in a document */
#define NPM_NAME_MAX 214	      /* bytes of a package name, scope included (npm's own limit) */
#define NPM_VERSION_MAX 256	      /* bytes of a version (npm's own limit) */
#define NPM_URL_MAX 2048	      /* bytes of a tarball URL, ours or the upstream's */
#define NPM_INTEGRITY_MAX 1024	      /* bytes of dist.integrity (one or more "algo-base64" hashes) */
#define NPM_SHASUM_MAX 64	      /* bytes of dist.shasum (40 hex digits when well formed) */

/*
 * One version, as the callback sees it. Every pointer is borrowed from the parsed document and valid only
 * during the callback. The strings are NUL-terminated and hold no NUL (JSON's \u0000 is refused).
 */
struct npm_version_info {
	const char *version;   /* the key in "versions": a valid semver version, NPM_VERSION_MAX bytes at most */
	const char *tarball;   /* dist.tarball, NULL if missing */
	const char *integrity; /* dist.integrity ("sha512-..."), NULL if missing; format not checked here */
	const char *shasum;    /* dist.shasum (hex sha1), NULL if missing; format not checked here */
	long long published;   /* time[version] in seconds since the epoch; -1 when absent, unparsable or pre-1970 */
	bool prerelease;       /* the version has a prerelease part ("1.0.0-rc.1") */
};

enum npm_verdict { NPM_KEEP, NPM_DROP_UNLISTED, NPM_DROP_TOO_NEW };

/*
 * Decides one version. On NPM_KEEP it writes the tarball URL the client should see into `new_tarball`
 * (NUL-terminated, non-empty, at most `cap` bytes with the NUL; `cap` is NPM_URL_MAX + 1). A value outside the
 * enum counts as NPM_DROP_UNLISTED. Called once per version with a valid semver key, in document order, from
 * inside npm_packument_rewrite(); it must not free anything it was given.
 */
typedef enum npm_verdict (*npm_version_cb)(void *arg, const struct npm_version_info *v, char *new_tarball, size_t cap);

/* The result of a rewrite. `doc` is owned by the struct and freed by npm_rewrite_free(). */
struct npm_rewrite {
	char *doc;  /* the new document, compact JSON, NUL-terminated */
	size_t len; /* bytes of `doc` without the NUL */
	size_t kept, dropped_unlisted, dropped_too_new;
	size_t dropped_invalid; /* versions whose key is not a valid semver version: dropped, never given to cb */
};

/*
 * Rewrites the packument `doc` (`len` bytes, borrowed, untrusted, not NUL-terminated) of package `name`
 * (NUL-terminated, borrowed; scoped "@scope/pkg" or plain) into `out`, which the call initializes.
 *
 * The document must be a JSON object (duplicate keys, \u0000, invalid UTF-8, integers beyond 64 bits,
 * nesting deeper than NPM_MAX_DEPTH all refused) whose "name" is `name`; "versions" (an object; absent
 * means none) holds objects whose "version" equals their key, whose "name" (when present) is `name`, whose
 * "dist" (when present) is an object with string "tarball", "integrity", "shasum" (when present); "time"
 * and "dist-tags" are objects when present. Any other shape fails the whole document (fail closed).
 *
 * `cb` decides every version. Dropped versions leave "versions" and "time" (time.created and
 * time.modified stay). In kept versions dist.tarball becomes the callback's URL. "dist-tags": "latest",
 * when it names a dropped or missing version (or is absent), is re-pointed at the highest kept version,
 * preferring releases over prereleases and versions below the old "latest" over ones above it; it is
 * removed when nothing is kept. Any other tag naming a dropped or missing version (or not a string) is
 * removed; an absent "dist-tags" is added. Versions whose key is not a valid semver version are dropped
 * (counted in dropped_invalid) without asking `cb`, because the URLs and cache keys built from a version
 * must not carry anything else. "_attachments" is removed. Everything else is kept: strings byte for byte, integers by
 * value, reals by value (jansson prints them with up to 17 significant digits, so "0.1" may come back longer).
 *
 * `abbreviated`: emit the "application/vnd.npm.install-v1+json" form instead: "name", "modified" (from
 * time.modified), "dist-tags" and "versions" holding only the fields npm's installer reads (see
 * packument.c); "hasInstallScript" is added when the version's scripts hold a preinstall, install or
 * postinstall script, as the registry does.
 *
 * Returns 0; -EINVAL for a malformed document or argument (a URL from `cb` that is empty, unterminated or
 * not UTF-8 included); -E2BIG past a bound above (input size, depth, output size); -ENOMEM.
 * On failure `out` is empty and `*why` (may be NULL) points to a static string saying what was refused; on
 * success `*why` is NULL.
 */
int npm_packument_rewrite(const char *doc, size_t len, const char *name, bool abbreviated, npm_version_cb cb, void *arg,
			  struct npm_rewrite *out, const char **why);

/* Frees the document of `r` and empties it. Safe on a zeroed struct and twice. */
void npm_rewrite_free(struct npm_rewrite *r);

/* One version found by npm_packument_find(), copied out of the document (so nothing to release). */
struct npm_version_found {
	char version[NPM_VERSION_MAX + 1];
	char tarball[NPM_URL_MAX + 1];	       /* "" when missing */
	char integrity[NPM_INTEGRITY_MAX + 1]; /* "" when missing */
	char shasum[NPM_SHASUM_MAX + 1];       /* "" when missing */
	long long published;		       /* as in struct npm_version_info */
	bool prerelease;
};

/*
 * Finds `version` (NUL-terminated, borrowed) of package `name` in the packument `doc` without rewriting, for a
 * tarball request that needs the upstream's integrity and publish time. The document is checked as
 * npm_packument_rewrite() checks it, whole. Returns 0 and fills `out`; -ENOENT when the version is absent;
 * -EINVAL when the document or an argument is malformed; -E2BIG past a bound (a string too long for
 * `out` included); -ENOMEM. `*why` as for npm_packument_rewrite().
 */
int npm_packument_find(const char *doc, size_t len, const char *name, const char *version,
		       struct npm_version_found *out, const char **why);

/*
 * true when `name` (`len` bytes, not NUL-terminated) is an npm package name: 1-214 bytes, plain or
 * "@scope/name", each part made of letters, digits, '-', '_' and '.', and not starting with '.' or '_';
 * not "node_modules". Upper case is accepted because npm accepts it for packages published before the rule
 * (JSONStream is one); the characters npm's old rules also let through (~ ' ! ( ) *) are not.
 */
bool npm_name_valid(const char *name, size_t len);

/* true when `v` (`len` bytes) is a semver 2.0.0 version ("1.2.3", "1.0.0-rc.1+build.5"), at most NPM_VERSION_MAX. */
bool npm_semver_valid(const char *v, size_t len);

/*
 * Compares two valid semver versions by semver precedence (build metadata ignored; a prerelease is below its
 * release; numeric identifiers compare as numbers, of any length). <0, 0 or >0.
 */
int npm_semver_cmp(const char *a, const char *b);

/*
 * Parses an RFC 3339 time ("2015-02-18T22:20:37.035Z", or with an offset "+01:00"; fractional seconds
 * ignored) into seconds since the epoch; -1 when malformed or before 1970. `s` is NUL-terminated.
 */
long long npm_time_parse(const char *s);

/*
 * Parses a tarball path as the registry serves it, "<name>/-/<basename>-<version>.tgz" (one leading '/'
 * allowed), where <name> is plain or "@scope/pkg" (the decoded form of "@scope%2fpkg") and <basename> is the
 * name without its scope. Writes the name and the version (NUL-terminated) to `name` and `version`.
 * 0; -EINVAL when the path is anything else (bad name, other basename, not semver, not ".tgz", extra
 * segments); -E2BIG when `ncap` or `vcap` is too small.
 */
int npm_tarball_path_parse(const char *path, size_t len, char *name, size_t ncap, char *version, size_t vcap);

#endif
