/* SPDX-License-Identifier: Apache-2.0 */
/* Shared pieces of crgw-ctl's subcommands. */
#ifndef CRGW_CTL_H
#define CRGW_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes, documented in `crgw-ctl --help` and docs/ctl.md. */
#define CTL_EXIT_OK 0
#define CTL_EXIT_DENY 1
#define CTL_EXIT_ERROR 2

struct repo_policy {
	char path[4096];      /* the policy file to read */
	char root[4096];      /* repository root: lockfiles resolve beneath it */
	char source[256];     /* path recorded in the compiled policy, relative to the root */
	char warning[4300];   /* non-empty when both candidate files exist */
};

/*
 * Finds the policy for `arg` (a file, a directory, or NULL for "."): DIR/cleanroom.yaml first, then
 * DIR/.buildkite/cleanroom.yaml. Returns 0, or -errno with a message in `err`.
 */
int repo_find_policy(const char *arg, struct repo_policy *out, char *err, size_t errlen);

/*
 * Reads a whole regular file of at most `max` bytes. Returns 0 with a malloc'd buffer, -E2BIG, -EINVAL for
 * anything but a regular file (a FIFO, a device, a directory), or -errno.
 */
int repo_read_file(const char *path, size_t max, char **buf, size_t *len);

/* What a repo_read_file error other than -E2BIG means, for a message (-EINVAL: "not a regular file"). */
const char *repo_read_error(int err);

/* A crgw_read_file_cb that reads beneath the repository root `arg` (a const char *), refusing to leave it. */
int repo_read_beneath(void *arg, const char *path, size_t max, char **buf, size_t *len);

int cmd_policy(int argc, char **argv);
/* crgw-ctl policy diff (policy_diff.c): argv[0] is "diff". */
int policy_diff(int argc, char **argv);
/* crgw-ctl policy push|get|ls (policy_store_cmd.c): argv[0] is the subcommand. */
int policy_store_cmd(int argc, char **argv);
/* crgw-ctl policy learn (policy_learn.c): argv[0] is "learn". */
int policy_learn(int argc, char **argv);

/* The longest audit line read; a longer one is counted and skipped. */
#define CTL_AUDIT_LINE_MAX (64u * 1024)

/*
 * Opens an audit log (`path`, or "-" for standard input) for ctl_audit_lines, so that a command can
 * find out that it cannot be read before it prints anything. Returns the descriptor (the caller closes
 * it with ctl_audit_close), or -errno after saying why on stderr (a directory is -EISDIR).
 */
int ctl_audit_open(const char *path);

/* Closes what ctl_audit_open returned; standard input stays open, and a negative `fd` is ignored. */
void ctl_audit_close(int fd);

/*
 * Reads an audit log (`fd` from ctl_audit_open, borrowed; `path` names it in messages) as a stream,
 * calling `fn` for each non-empty line (without its newline; borrowed for the call) until the end or
 * until `fn` returns non-zero, which is returned. Lines over CTL_AUDIT_LINE_MAX are counted in
 * `*overlong` and skipped. Memory stays bounded whatever the log's size. Returns 0 or -errno after
 * saying why on stderr.
 */
int ctl_audit_lines(int fd, const char *path, int (*fn)(void *arg, const char *line, size_t len), void *arg,
		    uint64_t *overlong);
int cmd_sandbox(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_reload(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_cp(int argc, char **argv);
int cmd_cache(int argc, char **argv);
int cmd_image(int argc, char **argv);

/* crgw-ctl cache warm (warm.c): argv[0] is "warm". */
int cache_warm(int argc, char **argv);

/* "0 B", "512 B", "1.5 KiB", "10.0 GiB" (cache_cmd.c). */
void cache_human(unsigned long long bytes, char *buf, size_t size);

/*
 * `s` (`len` bytes) for a terminal, in a malloc'd string: a control character, Unicode line or paragraph
 * separator, bidi control or byte that is not UTF-8 is shown as '?' (crgw_audit_text_safe); NULL without
 * memory.
 */
char *ctl_shown(const char *s, size_t len);

/*
 * `s` as a JSON string, whatever its bytes: a file name that is not UTF-8 (a Latin-1 "caf\xe9") gets U+FFFD
 * for each byte that is not (crgw_text_utf8_repair), rather than no string at all (jansson takes UTF-8 only).
 * NULL without memory.
 */
struct json_t *ctl_json_text(const char *s);

/* Sandbox subcommands beyond ls/show/rm (workspace_cmd.c). */
int sandbox_diff(int argc, char **argv);

struct crgw_gateway_ops;
/* The gateway over the control API, as the sandbox backends need it (client.c). */
extern const struct crgw_gateway_ops ctl_gateway_ops;

/* GETs a sandbox's record; 0, -ESRCH with the tombstone of a released one, -ENOENT, or -errno (`err`). */
struct json_t;
/*
 * Whether `ref` can be a sandbox id or name (crgw_sandbox_name_valid), so that it names one sandbox and
 * stays one path segment: a '#', '?', space or dot segment would make the URL name another resource (curl
 * drops a fragment: "keep#x" would be keep).
 */
bool ctl_sandbox_ref_ok(const char *ref);
int ctl_get_sandbox(const char *id, struct json_t **record, char *err, size_t errlen);

/*
 * Finds and compiles the policy at `where` (a file, a directory or NULL for "."), printing diagnostics.
 * Returns 0 with the canonical CompiledPolicy in a malloc'd `*json` and, when `root` is not NULL, the
 * repository root the policy was found in; -EINVAL for an invalid policy, or -errno.
 */
int ctl_compile_policy(const char *where, bool allow_default_allow, char **json, char *root, size_t rootlen);

/*
 * A CompiledPolicy document from `where`: a compiled document as it is (a file that is a JSON object
 * with a "format" member), else the policy found and compiled there (ctl_compile_policy).
 * Returns 0 with a malloc'd `*json` of `*len` bytes, or -errno after saying why on stderr.
 */
int ctl_policy_document(const char *where, bool allow_default_allow, char **json, size_t *len);

/*
 * A new blocklist holding what every gateway refuses whatever its configuration says, for the commands
 * that decide without one (policy explain, policy diff): 127.0.0.1 and ::1, the loopback addresses each
 * gateway host has and refuses as its own (its other addresses and its pool are the caller's --blocked).
 * NULL when out of memory; free with crgw_blocklist_free.
 */
struct crgw_blocklist *ctl_gateway_blocklist(void);

/* ---- the control API client (client.c) ---------------------------------------------------------- */

/* The control socket: --control, else $CRGW_CONTROL, else /run/crgw/control.sock. Set by main(). */
extern const char *ctl_control_path;

/* The whole of one ctl_request, in ms (default 120000); 0: no limit, for answers that take long (cache verify). */
extern long ctl_timeout_ms;

struct ctl_response {
	long status;   /* HTTP status; 0 when the gateway could not be reached */
	char *body;    /* malloc'd, NUL-terminated */
	size_t len;
};

/*
 * One request to the gateway. Returns 0 when an HTTP answer came (check `status`), or -errno with a
 * message in `err` (e.g. the gateway is not running). The caller frees out->body.
 */
int ctl_request(const char *method, const char *path, const char *body, struct ctl_response *out, char *err,
		size_t errlen);

/*
 * Streams a GET response, calling `line` for each complete line until the stream ends or `line` returns
 * non-zero. Returns 0 or -errno with `err`.
 */
int ctl_stream(const char *path, int (*line)(const char *text, size_t len, void *arg), void *arg, char *err,
	       size_t errlen);

/* Prints the gateway's JSON error (code: message) for a non-2xx response to stderr. */
void ctl_print_error(const char *what, const struct ctl_response *r);

/* Exit codes of run and exec when crgw-ctl itself fails, as container runtimes use them. */
#define CTL_EXIT_RUN_FAILED 125
#define CTL_EXIT_CANNOT_EXEC 126
#define CTL_EXIT_NOT_FOUND 127

#endif
