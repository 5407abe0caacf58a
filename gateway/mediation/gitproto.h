/* SPDX-License-Identifier: Apache-2.0 */
/*
 * git's wire protocol, as far as mediation needs it to judge a push over smart HTTP: pkt-lines, the ref
 * advertisement of GET info/refs, the command list of POST git-receive-pack and the commits of the pack
 * that follows it. Pure parsers: no I/O, no global state, every input untrusted (a sandbox or an upstream
 * wrote it), every buffer bounded. Each parser is fed arbitrary chunks (one byte at a time included) and
 * gives the same answer however its input was cut. Nothing here is thread-safe; a parser belongs to the
 * request that made it.
 *
 * Return convention of the incremental parsers: -EAGAIN while more input is needed, 0 when done, another
 * negative errno on failure; a failure is sticky (every later call returns it again).
 */
#ifndef CRGW_MEDIATION_GITPROTO_H
#define CRGW_MEDIATION_GITPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- object names and ref names --------------------------------------------------------------------- */

#define GIT_OID_MAX 32

/* An object name: `len` is 20 (SHA-1) or 32 (SHA-256); 0 when unset. */
struct git_oid {
	uint8_t id[GIT_OID_MAX];
	uint8_t len;
};

/* true when every byte of the name is zero (git's "no object": a creation's old side, a deletion's new). */
bool git_oid_is_zero(const struct git_oid *oid);

/* true when both have the same length and bytes. */
bool git_oid_equal(const struct git_oid *a, const struct git_oid *b);

/*
 * true when `name` (`len` bytes, not NUL-terminated) is a ref git would accept on a push: it starts with
 * "refs/" and follows git check-ref-format (no "..", "@{", "//", control bytes, space, ~ ^ : ? * [ \, no
 * component starting with '.' or ending with ".lock", no final '/' or '.'). "HEAD" is not a valid name here;
 * the advertisement parser alone accepts it, because upload-pack advertises it.
 */
bool git_refname_valid(const char *name, size_t len);

/*
 * Finds capability `name` in `caps`, a space-separated list of `len` bytes ("a b=1 c"). Returns a pointer
 * to its value inside `caps` with `*vlen` its length ("" and 0 for a bare "name"), or NULL when absent.
 * The first occurrence wins. `vlen` may be NULL.
 */
const char *git_cap_find(const char *caps, size_t len, const char *name, size_t *vlen);

/* ---- pkt-lines -------------------------------------------------------------------------------------- */

/* A pkt-line's largest length, its 4-byte header included (git's LARGE_PACKET_MAX). */
#define GIT_PKT_MAX 65520

enum git_pkt_type {
	GIT_PKT_DATA,   /* "00xx" + payload; "0004" is an empty payload */
	GIT_PKT_FLUSH,  /* "0000" */
	GIT_PKT_DELIM,  /* "0001" (protocol v2) */
	GIT_PKT_END,    /* "0002" response-end (protocol v2) */
};

/*
 * Reads the pkt-line at the start of `buf` (borrowed, `len` bytes). Returns its whole length (4 to
 * GIT_PKT_MAX) with `*type`, and for data the payload in `*data` (pointing into `buf`) and `*dlen`;
 * -EAGAIN when `buf` holds less than the whole pkt-line; -EBADMSG when the length is not four hex digits,
 * is 0003 or is over GIT_PKT_MAX (as soon as the bytes present show it).
 */
int git_pkt_next(const uint8_t *buf, size_t len, enum git_pkt_type *type, const uint8_t **data, size_t *dlen);

/* ---- the ref advertisement (GET info/refs?service=...) ---------------------------------------------- */

struct git_ref {
	char *name; /* NUL-terminated, `len` bytes */
	size_t len;
	struct git_oid oid;
};

/*
 * The refs an upstream advertised. `refs` is sorted by name (bytewise) once the advertisement was read to
 * its end; `incomplete` means refs are missing from it (more than the parser keeps, or protocol v2, which
 * advertises none), so the absence of a ref proves nothing. All pointers are owned by the struct.
 */
struct git_refs {
	struct git_ref *refs;
	size_t n;
	bool incomplete;
	bool sha256;       /* object-format=sha256: names are 32 bytes */
	bool empty;        /* the repository has no refs ("capabilities^{}", or no ref line at all) */
	char *caps;        /* the first ref line's capabilities, NUL-terminated, or NULL */
	size_t caps_len;
	size_t advertised; /* ref lines read, kept or not (peeled lines, .have and shallow lines not counted) */
	bool sorted;       /* refs is sorted and free of duplicates */
};

/* The ref named `name` (`len` bytes) in `refs`, or NULL. Binary search once the table is sorted. */
const struct git_ref *git_refs_find(const struct git_refs *refs, const char *name, size_t len);

/* Frees what `refs` owns and zeroes it. Safe on a zeroed struct and twice in a row. */
void git_refs_free(struct git_refs *refs);

/* Stored names, all refs together, beyond which the table is cut and marked incomplete. */
#define GIT_ADV_NAME_BYTES_MAX (4u << 20)

/*
 * The state of one advertisement being read. Embedded by value; it owns no memory (what it reads goes to
 * `out`), so it needs no free: abandoning it at any point is fine.
 */
struct git_adv {
	struct git_refs *out;
	bool (*want)(void *arg, const char *ref, size_t len);
	void *arg;
	size_t max_refs;
	size_t cap;        /* entries allocated in out->refs */
	size_t name_bytes; /* bytes of names stored */
	const char *why;   /* a static string saying what was wrong, after a failure */
	int state;
	int err;
	char service[32];
	size_t have;       /* bytes of an unfinished pkt-line in line[] */
	uint8_t line[GIT_PKT_MAX];
};

/*
 * Starts reading the answer to GET info/refs?service=`service` (copied) into `out` (borrowed, zeroed here,
 * owned by the caller and freed with git_refs_free whatever the outcome). Only refs for which
 * want(arg, name, len) is true are stored (`name` is not NUL-terminated; `want` NULL keeps every ref); once
 * `max_refs` are stored, or GIT_ADV_NAME_BYTES_MAX bytes of names, later wanted refs are dropped and
 * `out->incomplete` set, though the rest is still read and checked. "HEAD" is the one name outside
 * "refs/" accepted, as upload-pack advertises it.
 */
void git_adv_init(struct git_adv *a, struct git_refs *out, const char *service, size_t max_refs,
		  bool (*want)(void *arg, const char *ref, size_t len), void *arg);

/*
 * Feeds `len` bytes (borrowed). Accepts "# service=<service>" (and metadata lines) then a flush, then a
 * protocol v0/v1 advertisement ending in a flush. Returns -EAGAIN while more is needed; 0 at the final
 * flush, with `out` sorted; -EBADMSG (`why` set) when malformed: a bad pkt length, a line over
 * GIT_PKT_MAX, another service, an ERR line, bad hex, an invalid ref name, a ref advertised twice among the
 * stored ones, any byte after the final flush. A protocol v2 answer ("version 2", which lists capabilities
 * and no ref) is read to its flush and gives 0 with `out->incomplete` set: the caller then holds a table
 * that proves nothing, rather than an older one.
 */
int git_adv_feed(struct git_adv *a, const uint8_t *buf, size_t len);

/* ---- the command list of a push (POST git-receive-pack) --------------------------------------------- */

#define GIT_PUSH_MAX_CMDS 10000
#define GIT_PUSH_MAX_BYTES (1u << 20)

struct git_push_cmd {
	struct git_oid old_oid, new_oid;
	char *ref; /* NUL-terminated, `ref_len` bytes, valid by git_refname_valid */
	size_t ref_len;
};

/* A push's commands, in the order sent. Zeroed, it is a valid empty push that git_push_free accepts. */
struct git_push {
	struct git_push_cmd *cmds;
	size_t ncmds;
	char *caps; /* the first command's capabilities, NUL-terminated, or NULL */
	size_t caps_len;
	bool sha256;       /* object-format=sha256 */
	bool push_options; /* the push-options capability: option lines follow the flush (not read) */
	const char *why;   /* a static string saying what was wrong, after a failure */
	/* the parser's own state */
	size_t cap;        /* entries allocated in cmds */
	size_t bytes;      /* bytes of the command section read */
	int state;
	int err;
	uint8_t *line;     /* an unfinished pkt-line across calls (GIT_PKT_MAX bytes once needed) */
	size_t have;
};

/* Prepares `p` (zeroes it). */
void git_push_init(struct git_push *p);

/*
 * Feeds `len` bytes (borrowed) of the request body. `*used` is how many of them belong to the command
 * section: after 0, the pack starts at buf + *used. Reads optional "shallow <oid>" lines, then
 * "<old> <new> <ref>\0<caps>" and "<old> <new> <ref>" lines up to a flush. Returns -EAGAIN while more is
 * needed (all of `buf` used); 0 at the flush (and 0 with *used 0 on any later call); -ENOTSUP for a push
 * certificate (a signed push); -E2BIG beyond GIT_PUSH_MAX_CMDS commands or GIT_PUSH_MAX_BYTES; -EBADMSG
 * (`why` set) when malformed: a bad pkt length, bad hex, old and new of different lengths, an invalid ref,
 * a ref named twice, a line missing parts, capabilities after the first command. A lone flush (no command)
 * is valid: git sends one to probe the server before a large push.
 */
int git_push_feed(struct git_push *p, const uint8_t *buf, size_t len, size_t *used);

/* At the end of the body: 0 when the command list was read to its flush, else its error (-EBADMSG, "truncated"). */
int git_push_end(struct git_push *p);

/* Frees what `p` owns and zeroes it. Safe on a zeroed struct and twice in a row. */
void git_push_free(struct git_push *p);

/* ---- the pack of a push ----------------------------------------------------------------------------- */

#define GIT_PACK_COMMIT_MAX (1u << 20)         /* one commit's content */
#define GIT_PACK_DELTA_MAX (2u << 20)          /* one delta against a commit */
#define GIT_PACK_MAX_COMMITS 100000
#define GIT_PACK_MAX_PARENTS 400000            /* parent lines of all commits together */
#define GIT_PACK_CACHE_BYTES (16u << 20)       /* commit contents kept as delta bases */
#define GIT_PACK_INFLATE_MAX (1ull << 30)      /* bytes inflated from the whole pack */

struct git_pack_priv;

/*
 * Reads a pack as it streams past and keeps only its commits: each one's name (hashed from its content)
 * and parents, and a bounded cache of contents as delta bases. Trees, blobs and tags are inflated and
 * dropped. Zeroed, it is safe to free; git_pack_reaches on it is false.
 */
struct git_pack_scan {
	const char *why;            /* a static string saying what was wrong, after a failure */
	struct git_pack_priv *priv; /* NULL until git_pack_scan_init */
	bool fed;                   /* a byte was fed */
	bool done;                  /* the trailer was read and verified */
	/* what the pack held, for tests and logs */
	uint32_t nobjects;          /* objects the header announced */
	size_t ncommits;            /* commits read (whole or from deltas) */
	size_t ofs_deltas, ref_deltas;
	size_t commit_deltas;       /* deltas that resolved to commits */
	size_t skipped_deltas;      /* deltas on a base that is not a commit the scan holds (tree, blob, thin base) */
	size_t evicted_bases;       /* deltas on a commit whose content left the cache: unresolved */
	size_t bad_commits;         /* commits whose header git would not parse: they prove nothing */
};

/*
 * Prepares `s` (zeroed or freed before) for a pack whose names are SHA-256 (`sha256`) or SHA-1. 0, or
 * -ENOMEM.
 */
int git_pack_scan_init(struct git_pack_scan *s, bool sha256);

/*
 * Feeds `len` bytes (borrowed). Returns -EAGAIN while more is needed; 0 once the trailing checksum was
 * read and matched; -EBADMSG (`why` set) on a bad header, version other than 2 or 3, a bad object header,
 * bad zlib data, an inflated size other than announced, a delta out of bounds, a checksum mismatch or any
 * byte after the checksum; -E2BIG beyond the GIT_PACK_* bounds (`why` set); -ENOMEM.
 */
int git_pack_scan_feed(struct git_pack_scan *s, const uint8_t *buf, size_t len);

/* At the end of the body: 0 when the pack was complete or no byte was fed; else its error, or -EBADMSG. */
int git_pack_scan_end(struct git_pack_scan *s);

/* Frees what `s` owns and zeroes it. Safe on a zeroed struct and twice in a row. */
void git_pack_scan_free(struct git_pack_scan *s);

/*
 * true when the verified pack carries commit `to` and a walk from it through parent links of commits in
 * the pack reaches `from` (some pack commit names `from` as a parent, or `to` is `from`): `to` then
 * descends from `from`. False on a pack not read to its verified end, or that failed after it. Commits
 * git would not parse ("bad") are walked neither into nor through. The walks of all calls on one scan
 * together visit at most 16 Mi commits; past that every answer is false (fail closed: a push of 10000
 * updates over 100000 commits must not hold a worker). Not const underneath: it keeps walk marks in the
 * scan, so calls on one scan must not run concurrently.
 */
bool git_pack_reaches(const struct git_pack_scan *s, const struct git_oid *from, const struct git_oid *to);

/*
 * The same walk over the commits read so far, before the pack's end. A commit's name is the hash of its
 * content, so nothing later in the pack can undo a proof found here (the upstream checks the pack's own
 * integrity); what it cannot find yet may still come. Shares the walk budget of git_pack_reaches.
 */
bool git_pack_reaches_so_far(const struct git_pack_scan *s, const struct git_oid *from, const struct git_oid *to);

/* ---- judging one command ---------------------------------------------------------------------------- */

enum git_push_verdict {
	GIT_PUSH_OK,
	GIT_PUSH_REF_NOT_ALLOWED,
	GIT_PUSH_DELETE,
	GIT_PUSH_STALE,
	GIT_PUSH_NOT_FAST_FORWARD,
};

/*
 * Decides one command, in this order: a ref refused by ref_allowed(arg, ref, len) (NULL refuses every
 * ref) is REF_NOT_ALLOWED; with `force` anything else is OK; a deletion is DELETE; a creation is STALE when
 * the complete `advertised` table has the ref, else OK; old == new is OK; an update whose old side is not
 * what a complete `advertised` table holds (absent counts as different) is STALE; an update the pack
 * `scan` proves a fast-forward (git_pack_reaches) is OK; anything else NOT_FAST_FORWARD. `advertised` and
 * `scan` may be NULL (nothing proved by them). `*why`, when `why` is not NULL, is set to a short static
 * explanation or NULL.
 */
enum git_push_verdict git_push_check(const struct git_push_cmd *cmd, bool force,
				     bool (*ref_allowed)(void *arg, const char *ref, size_t len), void *arg,
				     const struct git_refs *advertised, const struct git_pack_scan *scan,
				     const char **why);

#endif
