/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Go's module proxy protocol (GOPROXY) for /registry/go/: request paths checked and decoded, go.sum hashes
 * ("h1:", dirhash Hash1) of go.mod files and module zips, the time of a `.info` document and a filter for
 * `@v/list` bodies. Pure functions, no event loop; any thread.
 */
#ifndef CRGW_MEDIATION_GOPROXY_H
#define CRGW_MEDIATION_GOPROXY_H

#include <stddef.h>
#include <stdint.h>

/* Go's module zip limits (golang.org/x/mod/zip), and ours where Go has none. */
#define GOPROXY_MAX_ZIP (500u << 20) /* the zip file, and the sum of its files' uncompressed sizes */
#define GOPROXY_MAX_GOMOD (16u << 20) /* <module>@<version>/go.mod */
#define GOPROXY_MAX_LICENSE (16u << 20) /* <module>@<version>/LICENSE */
#define GOPROXY_MAX_FILES 65534u /* entries: a count of 0xffff means zip64, which is refused */
#define GOPROXY_MAX_CDIR (32u << 20) /* central directory bytes */

enum goproxy_kind { GOP_LIST, GOP_INFO, GOP_MOD, GOP_ZIP, GOP_LATEST, GOP_SUMDB };

/*
 * A request path, checked and decoded. `module` and `version` are the real (unescaped) strings; `version`
 * is "" for GOP_LIST and GOP_LATEST. For GOP_SUMDB, `sumdb_host` is the checksum database's name and
 * `sumdb_rest` what follows it, as sent (still escaped: it is forwarded upstream verbatim), one of
 * `supported`, `latest`, `lookup/<module>@<version>` (then `module` and `version` are filled too) or a tile
 * path in the canonical form of golang.org/x/mod/sumdb/tlog (`tile/<H>/<L>/[x<NNN>/...]<NNN>[.p/<W>]`,
 * `<L>` may be `data`).
 */
struct goproxy_path {
	enum goproxy_kind kind;
	char module[512];
	char version[256];
	char sumdb_host[254];
	char sumdb_rest[512];
};

/*
 * Parses `path` (`len` bytes, borrowed, untrusted; what follows "/registry/go/") into `out`. Module paths
 * follow golang.org/x/mod/module CheckPath, versions must be canonical semver ("v1.2.3", "v1.2.3-pre",
 * pseudo-versions) or "+incompatible" on a major version of 2 or more, and must agree with the path's
 * major version suffix (/vN, or .vN for gopkg.in). Non-canonical queries (`@v/master.info`) are refused.
 * 0, or -EINVAL with `*why` (may be NULL) a static string.
 */
int goproxy_path_parse(const char *path, size_t len, struct goproxy_path *out, const char **why);

/*
 * The proxy's case encoding: each upper-case letter of `in` (NUL-terminated) becomes '!' and its lower
 * case. Writes a NUL-terminated string to `out` (`cap` bytes). 0; -EINVAL when `in` holds '!' or a byte
 * outside ASCII; -E2BIG when `out` is too small.
 */
int goproxy_escape(const char *in, char *out, size_t cap);

/*
 * The reverse of goproxy_escape over `len` bytes of `in`: "!x" becomes "X". 0; -EINVAL when `in` holds an
 * upper-case letter, a '!' not followed by a lower-case letter, NUL or a byte outside ASCII; -E2BIG.
 */
int goproxy_unescape(const char *in, size_t len, char *out, size_t cap);

/* 1 when `module` (NUL-terminated) is a valid module path (CheckPath), else 0; `*why` says why not. */
int goproxy_module_ok(const char *module, const char **why);

/* 1 when `version` is canonical and agrees with `module`'s major version suffix, else 0. */
int goproxy_version_ok(const char *module, const char *version, const char **why);

/*
 * The go.sum hash of a go.mod file ("<module> <version>/go.mod h1:..."): Hash1 over the single file name
 * "go.mod" with the `len` bytes at `mod` (borrowed). Writes "h1:<base64>" NUL-terminated to `out`. 0 or
 * -ENOMEM.
 */
int go_h1_mod(const char *mod, size_t len, char out[64]);

/*
 * The go.sum hash of the module zip read from `fd` (borrowed; read with pread, its offset is not moved; a
 * regular file or a memfd). Checks the zip as Go would before extracting it, and more strictly: every name
 * starts with "<module>@<version>/" (real, unescaped), names are clean relative paths of Go's allowed
 * characters (ASCII only: non-ASCII names are refused, as their case folding cannot be checked here), no
 * duplicates, no two names equal under case folding, no name both a file and a directory, go.mod only at
 * the root, stored or deflated entries only, no encryption, no zip64, no data before the first entry or
 * between the entries and the central directory's end, entries that do not overlap, sizes and CRCs that
 * match the headers, and the limits above (bytes counted while inflating, headers never trusted).
 * Writes "h1:<base64>" to `out`. 0; -EBADMSG (malformed or refused), -EFBIG (a limit), -EIO, -ENOMEM, with
 * `*why` (may be NULL) a static string.
 */
int go_h1_zip(int fd, const char *module, const char *version, char out[64], const char **why);

/*
 * The `Time` of a `.info` or `@latest` document (`{"Version":"v1.2.3","Time":"2023-01-02T15:04:05Z"}`,
 * `len` bytes, borrowed) as seconds since the epoch (RFC 3339, any offset, fractions dropped), into `*t`;
 * its `Version` into `version` (256 bytes) unless NULL. 0, or -EBADMSG with `*why` static.
 */
int goproxy_info_time(const char *json, size_t len, int64_t *t, char *version, const char **why);

/* Called once per version of an `@v/list` body: 1 keeps it, 0 drops it, a negative errno stops the filter. */
typedef int (*goproxy_keep_cb)(void *arg, const char *version);

/*
 * Filters an `@v/list` body (`len` bytes, borrowed: one version per line, anything after the first field of
 * a line ignored as the go command does) into `out` (`cap` bytes; `len` + 2 is always enough): each line
 * whose first field is a canonical version is passed to `keep`, and a kept one is written as "<version>\n".
 * Lines that are not versions are dropped. `*out_len` is the bytes written (NUL-terminated). 0, -E2BIG,
 * or what `keep` returned.
 */
int goproxy_list_filter(const char *body, size_t len, goproxy_keep_cb keep, void *arg, char *out, size_t cap,
			size_t *out_len);

#endif
