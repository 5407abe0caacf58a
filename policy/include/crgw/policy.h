/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcrgw-policy: compiles cleanroom.yaml into a CompiledPolicy, loads a CompiledPolicy into an immutable
 * matcher, and decides (host, port) pairs. No event loop, no network I/O; every function is thread-safe
 * on distinct arguments, and a loaded policy may be shared read-only by any number of threads.
 */
#ifndef CRGW_POLICY_H
#define CRGW_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crgw/reason.h"

/* ---- hosts -------------------------------------------------------------------------------------- */

#define CRGW_HOST_NAME_MAX 253

enum crgw_host_kind {
	CRGW_HOST_NAME,
	CRGW_HOST_IPV4,
	CRGW_HOST_IPV6,
};

/*
 * A destination host in normal form: a lowercase punycode name without trailing dot, or an IP address
 * (IPv4-mapped IPv6 is stored as IPv4). `text` is the normal form as a string; `addr` holds the address
 * in network order (4 bytes used for IPv4).
 */
struct crgw_host {
	enum crgw_host_kind kind;
	uint8_t addr[16];
	uint8_t len;
	char text[CRGW_HOST_NAME_MAX + 1];
};

/*
 * Normalizes `len` bytes of `in` (borrowed; may hold NUL or invalid UTF-8, which are refused) into
 * `out`. Names in Unicode go through IDNA2008 (UTS#46 non-transitional); numeric spellings that are not
 * a canonical dotted quad (octal, hex, integer, short forms) are refused, as are names that look numeric
 * after IDNA. Returns 0 or -EINVAL with `*why` (if non-NULL) set to a static explanation. ASCII input
 * takes a path without allocation.
 */
int crgw_host_parse(const char *in, size_t len, struct crgw_host *out, const char **why);

/*
 * Parses "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address (borrowed bytes) into a
 * normalized host and a port (`default_port` when none is given). Ports are decimal 1-65535.
 * Returns 0; -ERANGE with `*why` set when the port is at fault (not a decimal number from 1 to 65535, or
 * nothing after the ':'); -EINVAL with `*why` set when the host is (crgw_host_parse refused it, or the
 * brackets of an IPv6 literal are wrong).
 */
int crgw_hostport_parse(const char *in, size_t len, uint16_t default_port, struct crgw_host *host,
			uint16_t *port, const char **why);

/*
 * The forms in which an IPv6 address carries an IPv4 address (docs/policy.md, "Addresses that carry an
 * IPv4 address"). Bit positions: IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96 (not :: or ::1),
 * SIIT-translated ::ffff:0:0:0/96 and NAT64 64:ff9b::/96 in the last 32 bits; 6to4 2002::/16 in bits
 * 16-47; Teredo 2001::/32 in the last 32 bits, inverted (the client's address, where packets go).
 */
enum crgw_embed {
	CRGW_EMBED_NONE,
	CRGW_EMBED_MAPPED,
	CRGW_EMBED_COMPATIBLE,
	CRGW_EMBED_TRANSLATED,
	CRGW_EMBED_NAT64,
	CRGW_EMBED_6TO4,
	CRGW_EMBED_TEREDO,
};

/*
 * When `h` is an IPv6 host in one of the forms above, fills `v4` (an IPv4 host, text included) with the
 * IPv4 address it carries and returns the form; otherwise returns CRGW_EMBED_NONE and leaves `v4` alone.
 * `v4` may be `h` itself.
 * A host from crgw_host_parse is never CRGW_EMBED_MAPPED (it is stored as IPv4); one built from the 16
 * bytes of a DNS answer may be. Never allocates.
 */
enum crgw_embed crgw_host_embedded_ipv4(const struct crgw_host *h, struct crgw_host *v4);

/* A short static name of the form: "ipv4-mapped", "nat64", "6to4", "teredo", …; NULL for NONE. */
const char *crgw_embed_str(enum crgw_embed form);

/* ---- compiling ---------------------------------------------------------------------------------- */

/* One compile diagnostic. `line` and `column` are 1-based (0 when not tied to a place in the YAML). */
struct crgw_diag {
	enum crgw_reason code; /* POLICY_INVALID or POLICY_CONFLICT; NONE for a warning */
	unsigned line;
	unsigned column;
	char path[160];    /* dotted path, e.g. "sandbox.network.allow[2].ports[0]"; "" for the document */
	char message[320]; /* human text; never contains secret-looking input */
};

#define CRGW_DIAG_MAX 32

/*
 * Reads a lockfile the policy names. `path` is relative to the repository root and already checked to
 * hold no absolute part and no ".." component; the callback must still keep it beneath the root. Returns
 * 0 with a malloc'd buffer (taken by the caller) of at most `max` bytes, -E2BIG when the file is larger,
 * -EINVAL when it is no regular file (it must never wait on a FIFO), -EXDEV or -ELOOP when its path
 * leaves the root, or another -errno.
 */
typedef int (*crgw_read_file_cb)(void *arg, const char *path, size_t max, char **buf, size_t *len);

struct crgw_compile_opts {
	/* NULL: lockfiles cannot be read, and a policy that enables lockfile enforcement fails. The policy
	 * library itself does no file I/O. */
	crgw_read_file_cb read_file;
	void *read_file_arg;
	/* Recorded in the compiled policy's `source`; any may be NULL. */
	const char *source_path;
	const char *source_repository;
	const char *source_commit;
	/* v1 refuses `default: allow` unless the operator opts in. */
	bool allow_default_allow;
};

/* The outcome of one compile. On success `json` is the canonical CompiledPolicy (NUL-terminated). */
struct crgw_compiled {
	char *json;
	size_t json_len;
	char hash[72]; /* "sha256:<64 hex>", "" on failure */
	struct crgw_diag diags[CRGW_DIAG_MAX];
	unsigned ndiags;    /* kept (errors first come first) */
	unsigned nerrors;   /* all errors, including those not kept */
	unsigned nwarnings;
};

/* Upper bound on policy file size; larger input is refused before parsing. */
#define CRGW_POLICY_MAX_BYTES (1024u * 1024)

/* The largest CompiledPolicy a gateway takes (its store, its control API); the compiler's limits keep below it. */
#define CRGW_COMPILED_MAX_BYTES (8u * 1024 * 1024)

/*
 * Compiles `len` bytes of YAML (borrowed). Returns 0 with `*out` set (a new object the caller frees with
 * crgw_compiled_free) whether or not the policy was valid: check `nerrors`. Returns -ENOMEM otherwise.
 */
int crgw_policy_compile(const char *yaml, size_t len, const struct crgw_compile_opts *opts,
			struct crgw_compiled **out);

void crgw_compiled_free(struct crgw_compiled *compiled);

/* ---- loaded policy and decisions ---------------------------------------------------------------- */

struct crgw_policy;

/*
 * Loads a CompiledPolicy document (borrowed bytes; untrusted: it arrives over the control API) and builds
 * the matcher. Verifies the schema and that `policy_hash` matches the content. Returns 0 with a new
 * reference in `*out`, -EINVAL with `err` filled, or -ENOMEM.
 */
int crgw_policy_load(const char *json, size_t len, struct crgw_policy **out, char *err, size_t errlen);

/* Returns a new reference to `policy`. */
struct crgw_policy *crgw_policy_ref(struct crgw_policy *policy);

/* Drops a reference; the last one frees. Accepts NULL. */
void crgw_policy_unref(struct crgw_policy *policy);

/* "sha256:<hex>", borrowed for the policy's lifetime. */
const char *crgw_policy_hash(const struct crgw_policy *policy);

/* Whether the policy lets its sandboxes run in learn mode: false when it says `sandbox.learn: false`. */
bool crgw_policy_learn_allowed(const struct crgw_policy *policy);

/* The policy's sandbox.ttl_minutes (1..10080; 60 when the document has none). */
unsigned crgw_policy_ttl_minutes(const struct crgw_policy *policy);

/*
 * Address ranges refused whatever the policy says (the sandbox pool, the gateway's own addresses, and
 * the operator's extra ranges). Built once at configuration time, then read-only.
 */
struct crgw_blocklist;

struct crgw_blocklist *crgw_blocklist_new(void);
/* Adds "addr/len" or a bare address. Returns 0, or -EINVAL with `*why` set (when not NULL) or -ENOMEM. */
int crgw_blocklist_add(struct crgw_blocklist *list, const char *cidr, const char **why);
void crgw_blocklist_free(struct crgw_blocklist *list);

struct crgw_decision {
	bool allow;
	enum crgw_reason reason; /* CRGW_REASON_NONE when allowed */
	const char *rule;        /* dotted path of the deciding rule, borrowed from the policy */
};

/*
 * Decides whether the sandbox may reach `host`:`port` (SPEC section 3: deny rules, exact and CIDR allows,
 * wildcard allows, the default; IP literals only against IP rules; special and blocked addresses).
 * `blocked` may be NULL. Never allocates; safe to call from any thread.
 */
void crgw_policy_decide(const struct crgw_policy *policy, const struct crgw_blocklist *blocked,
			const struct crgw_host *host, uint16_t port, struct crgw_decision *out);

/*
 * Port 0 in crgw_policy_decide() and crgw_policy_check_address() asks about a name or address on no port
 * in particular, as DNS does: an allow rule on any port admits it, and only a deny rule covering every
 * port refuses it.
 */
#define CRGW_PORT_ANY 0

/*
 * Checks an address that an allowed name resolved to (DNS-rebinding defence): refuses `blocked` ranges,
 * CIDR deny rules, and loopback, link-local, unspecified, multicast and metadata addresses unless a CIDR
 * allow rule at least as specific as that range admits it. `host` must be an IPv4 or IPv6 host; it may
 * hold the bytes of an answer as they came (an IPv6 host with an IPv4-mapped address is checked as the
 * IPv4 address, and one that carries an IPv4 address in another form must pass the checks as itself and
 * as that IPv4 address: crgw_host_embedded_ipv4). crgw_policy_decide treats IP hosts the same way.
 * Never allocates.
 */
void crgw_policy_check_address(const struct crgw_policy *policy, const struct crgw_blocklist *blocked,
			       const struct crgw_host *addr, uint16_t port, struct crgw_decision *out);

/* ---- what mediation reads: git, secrets, allowed hosts ------------------------------------------ */

/*
 * Everything below is computed once by crgw_policy_load: these functions never allocate, and any thread
 * holding a reference may call them. Returned strings and structs are borrowed for the policy's lifetime.
 */

/* git.hosts: the hosts /git/<host>/ may reach, as normalized names (crgw_host_parse's `text`), sorted. */
size_t crgw_policy_git_host_count(const struct crgw_policy *policy);

/* The `i`th of git.hosts; NULL when `i` is not below the count. */
const char *crgw_policy_git_host(const struct crgw_policy *policy, size_t i);

/*
 * Whether `host` (NUL-terminated, borrowed) is one of git.hosts, byte for byte. It must already be
 * normalized (crgw_host_parse's `text`): nothing is lowercased or decoded here, so "GitHub.com" is false.
 */
bool crgw_policy_git_host_allowed(const struct crgw_policy *policy, const char *host);

/*
 * registries.<registry>.min_release_age, in seconds: versions published more recently than this are hidden
 * from metadata and their downloads refused (release_too_new). 0 when not set, and for registries without
 * publish times ("oci") or unknown names.
 */
long crgw_policy_registry_min_release_age(const struct crgw_policy *policy, const char *registry);

/* ---- registries (SPEC section 3): what /registry/<name>/ may fetch --------------------------------- */

enum crgw_lockfile_mode {
	CRGW_LOCKFILE_OFF,          /* no lockfile_enforcement: `fallback` decides every artifact */
	CRGW_LOCKFILE_DENY_UNKNOWN, /* an artifact outside the allowlist is refused (lockfile_violation) */
	CRGW_LOCKFILE_WARN,         /* it is let through and audited with action warn */
};

/* One entry of a registry's artifact allowlist, as the compiler wrote it (docs/policy.md, "Lockfiles"). */
struct crgw_policy_artifact {
	const char *name;
	const char *version;
	const char *registry;  /* the host the lockfile resolved it from; NULL when the lockfile does not say */
	const char *integrity; /* "sha512-<base64>", "sha1-<base64>", "sha256:<hex>", "h1:<base64>" */
};

/* registries.<name> of the compiled policy. */
struct crgw_registry_rule {
	const char *name;                 /* "npm", "pip", "go" or "oci" */
	bool enable;
	const char *const *allowed_hosts; /* normalized names, sorted */
	size_t nhosts;
	/*
	 * The host a sandbox's tools are pointed at (npm_config_registry, PIP_INDEX_URL, GOPROXY): the allowed
	 * host the lockfiles resolved most artifacts from, else the first of allowed_hosts. NULL when none.
	 */
	const char *primary;
	bool fallback_allow;              /* `fallback: allow` */
	enum crgw_lockfile_mode mode;
	long min_release_age;             /* seconds; 0: none */
	const struct crgw_policy_artifact *artifacts; /* sorted by name, then version, then integrity */
	size_t nartifacts;
};

/* The registries a policy may enable, by the names crgw_policy_registry() takes: "npm", "pip", "go", "oci". */
#define CRGW_REGISTRY_COUNT 4
extern const char *const crgw_registry_names[CRGW_REGISTRY_COUNT];

/* registries.<name> ("npm", "pip", "go", "oci"), or NULL when the policy has no such section. */
const struct crgw_registry_rule *crgw_policy_registry(const struct crgw_policy *policy, const char *name);

/* Whether `host` (normalized, NUL-terminated) is one of the registry's allowed_hosts, byte for byte. */
bool crgw_policy_registry_host_allowed(const struct crgw_registry_rule *rule, const char *host);

/*
 * The allowlist entries for package `name` (exact bytes; the caller normalizes as the lockfile parser
 * did): returns their count and points *first at the first of them (they are adjacent), or 0.
 */
size_t crgw_policy_registry_artifacts(const struct crgw_registry_rule *rule, const char *name,
				      const struct crgw_policy_artifact **first);

/* git.push: whether pushes (git-receive-pack) go upstream at all. */
bool crgw_policy_git_push(const struct crgw_policy *policy);

/* git.force_push: when false, deleting a ref and non-fast-forward updates are refused on every ref. */
bool crgw_policy_git_force_push(const struct crgw_policy *policy);

/*
 * Whether git.push_refs admits the ref named by `len` bytes of `ref` (borrowed; need not be
 * NUL-terminated). A ref must be a full, valid ref name ("refs/…", git check-ref-format rules, no '*'),
 * or it is never admitted; then a pattern without '*' admits exactly itself, and a '*' stands for one or
 * more bytes, '/' included. Byte for byte, case-sensitive (docs/policy.md, "Git"). Looks at push_refs
 * alone: the caller checks git.push and, for deletions and non-fast-forward updates, git.force_push.
 */
bool crgw_policy_git_ref_allowed(const struct crgw_policy *policy, const char *ref, size_t len);

/* One entry of `secrets`: where a secret may be sent and how. Never holds the secret's value. */
struct crgw_secret_rule {
	const char *id;     /* [a-z0-9_.-], 1-64 bytes */
	const char *header; /* an HTTP header name; never one that controls framing or routing */
	const char *format; /* the header's value, with "{secret}" exactly once */
	const char *const *allowed_hosts; /* canonical names and wildcards ("*.x", "**.x"), sorted */
	size_t nhosts;                    /* at least 1 */
	unsigned ttl_seconds;             /* 1-86400 */
};

/* The number of secrets, and the `i`th in the CompiledPolicy's order (NULL when `i` is out of range). */
size_t crgw_policy_secret_count(const struct crgw_policy *policy);
const struct crgw_secret_rule *crgw_policy_secret_at(const struct crgw_policy *policy, size_t i);

/* The secret whose id is the `len` bytes of `id` (borrowed; need not be NUL-terminated), or NULL. */
const struct crgw_secret_rule *crgw_policy_secret_find(const struct crgw_policy *policy, const char *id,
						       size_t len);

/*
 * Whether the secret may be sent to `host` (NUL-terminated, borrowed, already normalized by
 * crgw_host_parse). Wildcards are supported with the meaning they have in network rules: an exact name
 * matches itself, "*.example.com" a name with exactly one more label, "**.example.com" one with one or
 * more, never "example.com" itself. A secret's hosts are never IP addresses (the compiler refuses them),
 * so no IP literal is ever admitted.
 */
bool crgw_secret_host_allowed(const struct crgw_secret_rule *secret, const char *host);

/*
 * The distinct hosts of the network allow rules, as the CompiledPolicy writes them (names, "*.x" and
 * "**.x" wildcards, addresses, "addr/len" networks), sorted bytewise: for the sandbox's /meta/ document.
 * Deny rules are not listed; a host listed may still be refused on some ports or addresses.
 */
size_t crgw_policy_allow_host_count(const struct crgw_policy *policy);

/* The `i`th allow host; NULL when `i` is not below the count. */
const char *crgw_policy_allow_host(const struct crgw_policy *policy, size_t i);

#endif
