/* SPDX-License-Identifier: Apache-2.0 */
/* The gateway's configuration: crgw.yaml and the command-line flags that override it. */
#ifndef CRGW_GATEWAY_CONFIG_H
#define CRGW_GATEWAY_CONFIG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRGW_UPSTREAM_MAX 8
#define CRGW_BLOCKED_MAX 64
#define CRGW_SECRETS_MAX 64
#define CRGW_SECRET_ARGV_MAX 16
#define CRGW_GIT_CREDENTIALS_MAX 64

/* Where the operator keeps one credential (crgw.yaml `secrets:`): never the value itself. */
enum crgw_secret_kind { CRGW_SECRET_ENV, CRGW_SECRET_FILE, CRGW_SECRET_COMMAND };

struct crgw_secret_source {
	char id[65];
	enum crgw_secret_kind kind;
	char env[128];           /* CRGW_SECRET_ENV: the variable's name */
	char path[1024];         /* CRGW_SECRET_FILE: re-read when it changes */
	char argv[CRGW_SECRET_ARGV_MAX][256]; /* CRGW_SECRET_COMMAND: stdout is the value */
	unsigned argc;
	unsigned refresh_seconds; /* commands: run again at most this often; 0: once at start */
};

/* `git.credentials:`, `registries.credentials:`: the secret the gateway presents to one host, and how. */
struct crgw_git_credential {
	char host[254];   /* normalized */
	char secret[65];  /* a secret id of `secrets:` */
	bool basic;       /* Basic with `username`; otherwise Bearer */
	char username[128];
	/*
	 * registries.credentials only: the other registries (normalized names, one space between) whose OCI
	 * token challenges may have this host, as their realm, sell them a token with this credential. A
	 * registry may always name its own host; one not listed gets a token asked for without the credential.
	 */
	char token_for[512];
};

#define CRGW_TOKEN_FOR_MAX 16

/* audit.sinks.NAME: where the audit stream is exported besides the file (gateway/export/). */
#define CRGW_SINKS_MAX 8
enum crgw_sink_type { CRGW_SINK_SYSLOG, CRGW_SINK_OTLP };
enum crgw_sink_transport { CRGW_SINK_UDP, CRGW_SINK_TCP, CRGW_SINK_TLS };
struct crgw_sink_config {
	char name[64];
	enum crgw_sink_type type;
	enum crgw_sink_transport transport; /* syslog */
	char host[256];                     /* syslog: the receiver's address or name */
	uint16_t port;
	bool structured;                    /* syslog format: sd (structured data and the line) or json (the line) */
	unsigned facility;                  /* syslog facility number, default 16 (local0) */
	char ca_file[4096];                 /* tls and https: the CA that signed the receiver; "" the system's */
	char server_name[256];              /* tls: the name the certificate must carry; default host */
	char endpoint[1024];                /* otlp: http(s)://host:port/v1/logs */
	uint64_t spool_max_bytes;           /* what waits on disk for the receiver, at most */
	unsigned batch_max;                 /* events per delivery, at most */
};

struct crgw_upstream {
	struct sockaddr_storage addr;
	char text[64]; /* "addr:port", as c-ares takes it */
};

#define CRGW_CONFIG_FILES_MAX 8 /* --config files whose lines an error can name */
#define CRGW_CONFIG_KEYS_MAX 96 /* rows of the key table (config.c checks) */

/*
 * Immutable once crgw_config_finish() has returned, shared read-only by every thread, except the fields
 * marked live: a reload (crgw_config_reload) stores new values into those, atomically, and a reader sees
 * the old value or the new one.
 */
struct crgw_config {
	char control_path[108];
	char state_dir[4096];
	unsigned control_mode;
	char audit_path[4096];
	uint64_t audit_max_bytes;
	unsigned audit_keep;
	unsigned audit_queue;
	bool audit_allow_loss;
	struct crgw_sink_config sinks[CRGW_SINKS_MAX];
	size_t nsinks;

	struct in_addr pool;
	unsigned pool_prefix;
	unsigned workers;

	struct crgw_upstream upstream[CRGW_UPSTREAM_MAX];
	size_t nupstream;
	_Atomic unsigned dns_ttl_min, dns_ttl_max; /* live: a reload may change those marked so */
	_Atomic unsigned dns_negative_ttl;
	_Atomic unsigned dns_rate_limit; /* queries per second per sandbox */
	_Atomic unsigned dns_binding_grace;
	bool dns_refuse_denied;   /* REFUSED instead of NXDOMAIN */
	unsigned dns_timeout_ms;

	char blocked[CRGW_BLOCKED_MAX][64];
	size_t nblocked;

	char nft_table[32];
	char iface_prefix[8];
	unsigned nflog_group;
	/*
	 * The enforcement layers (docs/gateway.md, "Enforcement layers"): CRGW_ENFORCE_DEFAULT is both where
	 * the kernel can load the BPF guard and nftables alone (with a warning) where it cannot; an explicit
	 * choice fails the start when its layer cannot be had.
	 */
	enum crgw_enforcement { CRGW_ENFORCE_DEFAULT, CRGW_ENFORCE_NFTABLES, CRGW_ENFORCE_EBPF, CRGW_ENFORCE_BOTH } enforcement;

	unsigned transparent_http_port, transparent_tcp_port;
	_Atomic unsigned proxy_max_tunnels, proxy_max_tunnels_per_sandbox;
	_Atomic unsigned proxy_idle_timeout;           /* seconds without a byte either way */
	_Atomic unsigned proxy_max_connection_seconds; /* absolute lifetime of a proxied connection; 0: none */
	_Atomic unsigned log_level;

	/* Sandboxes: where their per-sandbox data lives, their resource ceilings, and test-only knobs. */
	char data_dir[4096];
	char policy_store_dir[4096];
	bool learn_allowed; /* learn.allowed: sandboxes may run in learn mode (crgw-ctl run --learn) */ /* every accepted CompiledPolicy by its hash; default data_dir/policies */
	uint64_t limits_memory;      /* bytes; 0: none */
	uint64_t limits_pids;        /* 0: none */
	uint32_t limits_cpu_milli;   /* thousandths of a CPU; 0: all CPUs */
	uint64_t limits_disk;        /* bytes of a sandbox's own file system for its data; 0: none (no disk) */
	uint32_t limits_connection_rate; /* new redirected TCP connections a second per sandbox; 0: none */
	bool limits_optional;        /* run sandboxes without limits where cgroups cannot be had */
	char limits_cgroup[65];      /* the group beneath the gateway's own that holds the sandboxes' */
	unsigned testing_ttl_seconds; /* tests only: every sandbox lives this long instead of its policy's TTL */

	/* Mediation (port 8170): the operator's credentials and how upstreams are trusted. */
	struct crgw_secret_source secrets[CRGW_SECRETS_MAX];
	size_t nsecrets;
	struct crgw_git_credential git_credentials[CRGW_GIT_CREDENTIALS_MAX];
	size_t ngit_credentials;
	/* `registries.credentials:`: what the gateway presents to a registry host (npm, PyPI, Go, OCI token realms). */
	struct crgw_git_credential registry_credentials[CRGW_GIT_CREDENTIALS_MAX];
	size_t nregistry_credentials;
	char mediation_ca_file[4096];          /* "" : the system's CA store */
	_Atomic unsigned mediation_max_connections, mediation_max_connections_per_sandbox;
	_Atomic unsigned mediation_idle_timeout;       /* seconds without a byte either way, upstream or client */
	uint64_t mediation_push_hold_bytes;    /* what a push may hold back while its refs are checked */

	/* The content cache (docs/cache.md, "Operating the cache"): registry artifacts by digest. */
	bool cache_enabled;
	char cache_dir[4096];                  /* absolute; the cache's own directory, made 0700 */
	uint64_t cache_max_bytes;              /* bound on the objects' sizes; never 0 */
	bool cache_offline;                    /* serve only what is cached; everything else 503 */
	bool cache_verify_always;              /* hash every hit, never trust an earlier verification */
	_Atomic unsigned cache_metadata_ttl_seconds;   /* how long a metadata document is reused with its validators */
	uint64_t cache_max_metadata_bytes;     /* one metadata document (packument, index); bigger is refused */
	uint64_t cache_max_artifact_bytes;     /* one artifact; bigger is refused */

	/*
	 * Where values came from, so that crgw_config_finish() can name a file's line and column: files[] are the
	 * files read, in order; an origin's file is an index into it plus one, 0 for a default or a flag.
	 */
	char files[CRGW_CONFIG_FILES_MAX][4096];
	unsigned nfiles;
	struct crgw_config_origin {
		unsigned file, line, column;
	} origin[CRGW_CONFIG_KEYS_MAX], git_origin[CRGW_GIT_CREDENTIALS_MAX], registry_origin[CRGW_GIT_CREDENTIALS_MAX];
};

/* Fills the defaults (SPEC sections 4 to 7; docs/gateway.md lists them). */
void crgw_config_defaults(struct crgw_config *cfg);

/*
 * Reads crgw.yaml at `path` over the values already in `cfg`. On error returns -EINVAL (or -errno for
 * I/O) and writes "file:line:column: key: reason" into `err`.
 */
int crgw_config_load_file(struct crgw_config *cfg, const char *path, char *err, size_t errlen);

/*
 * Applies one setting by its YAML path (e.g. "dns.ttl_min") from text; the command-line flags use this,
 * so a flag and a key are validated by the same row. List keys append. Returns 0 or -EINVAL with `err`.
 */
int crgw_config_set(struct crgw_config *cfg, const char *key, const char *value, char *err, size_t errlen);

/* Cross-field checks and derived values (worker count from the cores). Returns 0 or -EINVAL with `err`. */
int crgw_config_finish(struct crgw_config *cfg, char *err, size_t errlen);

/* What a reload did: the keys it changed, those that differ but need a restart, and the lists it changed. */
struct crgw_config_change {
	char applied[1024];  /* "dns.rate_limit,dns.upstream", "" when nothing changed live */
	char kept[1024];     /* keys that differ in the file but cannot change live (pool, workers, …) */
	bool upstream;       /* dns.upstream changed: the caller hands it to the DNS workers */
	bool blocked;        /* blocked_ranges changed: the caller rebuilds the blocklist */
	bool secrets;        /* secrets or a host's credential changed: the caller loaded them into the vault */
};

/*
 * Applies a finished, valid configuration `next` to the running one: every live key that differs is
 * stored into `live` (numbers atomically; dns.upstream and blocked_ranges copied, for the caller to hand
 * on from the main thread; secrets and credentials recorded, the caller having loaded them into the
 * vault), every other key that differs is left as it was and named in `kept`.
 */
void crgw_config_reload(struct crgw_config *live, const struct crgw_config *next, struct crgw_config_change *out);

/*
 * Whether `secrets`, `git.credentials` or `registries.credentials` differ: the reload's caller loads them
 * into the vault (which reads the new sources) before crgw_config_reload records them.
 */
bool crgw_config_secrets_differ(const struct crgw_config *a, const struct crgw_config *b);

/* Whether `blocked_ranges` differ: the reload builds the new blocklist before anything else changes. */
bool crgw_config_blocked_differ(const struct crgw_config *a, const struct crgw_config *b);

/*
 * Reads the files the configuration names that are not secrets: the CA files of mediation and of the
 * export sinks must hold a PEM certificate. At start and before a reload is applied, so that a wrong path
 * stops the start (or the reload) instead of failing every upstream later. Returns 0 or -errno with `err`.
 */
int crgw_config_check_files(const struct crgw_config *cfg, char *err, size_t errlen);

/* Parses "a.b.c.d/len" into a network address and prefix. Returns 0 or -EINVAL. */
int crgw_cidr4_parse(const char *text, struct in_addr *addr, unsigned *prefix);

#endif
