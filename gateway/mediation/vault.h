/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operator's secret values (crgw.yaml `secrets:`), held only in this process: in one locked mapping
 * that is left out of core dumps and wiped in children, copied out only into callers' locked buffers, and
 * wiped when replaced or freed. Nothing here logs a value; errors name the secret id and the source.
 * Thread-safe.
 */
#ifndef CRGW_MEDIATION_VAULT_H
#define CRGW_MEDIATION_VAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct crgw_config;
struct crgw_git_credential;

/* A value is at most this long: enough for any token or key a header carries. */
#define CRGW_SECRET_VALUE_MAX 8192

/*
 * Reads every configured secret (environment variables are then wiped from the process's environment),
 * takes the hosts' credentials (git.credentials, registries.credentials), and starts the thread that
 * re-runs commands with a refresh_seconds. Any secret that cannot be read fails the start with `err`
 * naming it and why. Returns 0, or -errno.
 */
int crgw_vault_start(const struct crgw_config *cfg, char *err, size_t errlen);

/*
 * A reload: replaces the secrets and the hosts' credentials with `cfg`'s, whole, once every new or changed
 * source has been read (an unchanged one keeps its value: an environment variable cannot be read twice).
 * A source that cannot be read fails the load as at start, and then everything held stays as it was.
 * Requests already holding a value finish with it. Called by one thread at a time.
 */
int crgw_vault_load(const struct crgw_config *cfg, char *err, size_t errlen);

/* Stops the refresh thread and wipes and unmaps every value. */
void crgw_vault_stop(void);

/* Whether the operator configured secret `id` (`len` bytes). */
bool crgw_vault_has(const char *id, size_t len);

/*
 * Copies the current value of `id` into `out` (`size` bytes: a buffer from crgw_vault_scratch). A file
 * source that changed since it was last read is read again first. Returns the length, -ENOENT for an id
 * not configured, -EIO when the source can no longer be read (the old value is not used then), -E2BIG.
 */
ssize_t crgw_vault_get(const char *id, size_t id_len, char *out, size_t size);

/* Which list of crgw.yaml a host's credential comes from. */
enum crgw_vault_realm { CRGW_VAULT_GIT, CRGW_VAULT_REGISTRY };

/*
 * Copies the operator's credential for `host` (normalized) in `realm` into `out`: which secret, and how it
 * is presented. Returns 0, or -ENOENT when the host has none.
 */
int crgw_vault_credential(enum crgw_vault_realm realm, const char *host, struct crgw_git_credential *out);

/* Whether registry credential `c`, a token realm's, may buy OCI tokens for `registry`: its own host, or listed. */
bool crgw_vault_token_for(const struct crgw_git_credential *c, const char *registry);

/*
 * Whether the operator still presents secret `secret` for `host` in `realm`: as the host's credential, or
 * (registries) as a token realm's whose token_for lists the host. What a credential fetched is served from
 * the gateway's stores only while this holds: removing it from crgw.yaml withdraws its content too.
 */
bool crgw_vault_credential_serves(enum crgw_vault_realm realm, const char *secret, const char *host);

/*
 * Locked memory outside core dumps for building what carries a value (a header line); wiped and
 * released by crgw_vault_scratch_free. NULL when out of memory.
 */
void *crgw_vault_scratch(size_t size);
void crgw_vault_scratch_free(void *p, size_t size);

/* How many values are held, and how many refreshes failed (for metrics; never values). */
struct crgw_vault_stats {
	unsigned secrets;
	unsigned long refreshes, refresh_failures;
};
void crgw_vault_get_stats(struct crgw_vault_stats *out);

#endif
