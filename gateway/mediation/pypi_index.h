/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Python "simple" repository project pages (PEP 503 HTML, PEP 691 JSON, with PEP 592 yanking and PEP 700
 * upload times) parsed and rewritten for the /registry/pypi/ handler: every file is shown to a callback that
 * keeps or drops it and says the URL the client should see, and a new page holds only the kept files. PEP
 * 691 content negotiation and PEP 503 name normalization. Pure: no I/O, no globals, any thread.
 */
#ifndef CRGW_MEDIATION_PYPI_INDEX_H
#define CRGW_MEDIATION_PYPI_INDEX_H

#include <stdbool.h>
#include <stddef.h>

#define PYPI_MAX_DOC (64u << 20) /* bytes of one page, in or out */
#define PYPI_MAX_FILES 100000 /* files on one page */
#define PYPI_MAX_URL 8192 /* bytes of a URL, raw or resolved, and of a callback's new URL */
#define PYPI_MAX_FILENAME 255 /* bytes of a file name */
#define PYPI_MAX_TEXT 4096 /* bytes of requires-python, a yank reason, a hash */
#define PYPI_MAX_NAME 256 /* bytes of a project name */

enum pypi_format { PYPI_HTML, PYPI_JSON };

/* One file of a page. Every pointer is borrowed from the parser and valid only during the callback. */
struct pypi_file {
	const char *filename; /* the anchor text / "filename": printable ASCII, no '/', equal to the URL's last
	                         path segment once percent-decoded */
	const char *url; /* absolute http(s) URL, resolved against the page's URL (RFC 3986 section 5.2) or its
	                    <base href>, fragment removed; printable ASCII */
	const char *sha256; /* 64 lowercase hex digits from the #sha256= fragment or "hashes", NULL if none */
	const char *requires_python; /* unescaped, valid UTF-8 without control bytes; NULL if none */
	bool yanked;
	const char *yanked_reason; /* NULL when none (or not yanked); control bytes turned into spaces */
	long long upload_time; /* PEP 700, seconds since the epoch; -1 unknown (HTML has none) */
	long long size; /* PEP 700 "size" in bytes; -1 unknown (HTML has none) */
	char version[128]; /* from the file name, given the project (see pypi_filename_version); "" if unknown */
};

/*
 * Keeps (true) or drops (false) one file. When keeping, writes the URL the client should see into `new_url`
 * (NUL-terminated, at most `cap` bytes with the NUL; an absolute URL of printable ASCII without '#' whose
 * last path segment, percent-decoded, is the file name, so the page can be read again). Called in page order,
 * synchronously, from pypi_index_rewrite().
 */
typedef bool (*pypi_file_cb)(void *arg, const struct pypi_file *f, char *new_url, size_t cap);

/*
 * Parses the page `doc` (`len` bytes, borrowed, untrusted, not NUL-terminated) in `in_fmt`, fetched from
 * `doc_url` (an absolute http(s) URL, NUL-terminated) for `project` (PEP 503-normalized, NUL-terminated),
 * calls `cb` for every file, and writes a new page in `out_fmt` holding only the kept files with their new
 * URLs, sha256 (in the fragment for HTML, in "hashes" for JSON), requires-python and yanked (and, in JSON,
 * upload-time and size when known, and "versions" recomputed from the kept files). PEP 658/714 metadata
 * advertisements and signatures are dropped: the gateway serves neither .metadata nor .asc files.
 *
 * The whole page is parsed before the first callback, so a malformed page calls nothing. Fail closed: an
 * anchor that cannot be read, a file that does not belong to the project's page (a JSON "name" that is not
 * `project`), a file name that is not its URL's, a bad sha256, a repository version other than 1.x are all
 * -EINVAL. Returns 0 with `*out` (malloc'd, NUL-terminated, the caller frees) and `*out_len`; -EINVAL with
 * `*why` (static text) for malformed input or a callback's bad URL, -E2BIG beyond a bound above (the
 * resolved URLs, and the new ones, may also total at most PYPI_MAX_DOC bytes), -ENOMEM.
 * On failure `*out` is NULL. `why` may be NULL; on success `*why` is NULL.
 */
int pypi_index_rewrite(enum pypi_format in_fmt, const char *doc, size_t len, const char *doc_url,
		       const char *project, enum pypi_format out_fmt, pypi_file_cb cb, void *arg, char **out,
		       size_t *out_len, const char **why);

/*
 * PEP 503 normalization of `name` (`len` bytes, borrowed): lower case, each run of "-_." one '-'. Writes a
 * NUL-terminated result to `out`. 0; -EINVAL when `name` is not a valid PEP 508 name (ASCII letters and
 * digits, with "-_." only inside); -ENOSPC when `cap` cannot hold it.
 */
int pypi_normalize(const char *name, size_t len, char *out, size_t cap);

/*
 * The version a distribution file name carries, for the PEP 503-normalized `project`: a wheel
 * "{name}-{ver}(-{build})?-{py}-{abi}-{plat}.whl" or an sdist "{name}-{ver}" + .tar.gz/.zip/.tar.bz2/.tar.xz/
 * .tgz/.tar, whose {name} normalizes to `project` (so "Foo_Bar-1.0.tar.gz" is foo-bar's, "foo-bar-1.0" is
 * not foo's). Writes "" when the name is another project's or the version does not look like PEP 440 (a
 * digit first, after an optional 'v'; only letters, digits and ".!+_-"). 0, or -ENOSPC.
 */
int pypi_filename_version(const char *filename, const char *project, char *out, size_t cap);

/*
 * Which format a client wants from its Accept header (`accept`, `len` bytes, borrowed; NULL or empty means
 * none). PEP 691 negotiation: text/html, application/vnd.pypi.simple.v1+html and
 * application/vnd.pypi.simple.latest+html are HTML, the two +json forms JSON; wildcards match; each offer
 * gets the q of its most specific range. Higher q wins, then the more specific match, then HTML, so no
 * Accept and a bare wildcard give HTML. Unreadable elements are skipped. PYPI_HTML, PYPI_JSON, or -1 when nothing
 * is acceptable (answer 406).
 */
int pypi_accept(const char *accept, size_t len);

#endif
