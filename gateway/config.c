/* SPDX-License-Identifier: Apache-2.0 */
/* crgw.yaml and flag parsing: one table row per key with its type, bounds and default. */
#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "config.h"
#include "crgw/limits.h"
#include "crgw/policy.h"

/* K_SIZE: a size where 0 means "no limit"; K_BOUND: a size that must lie within the bounds, never 0. */
enum key_type { K_UINT, K_BOOL, K_STRING, K_POOL, K_UPSTREAM, K_BLOCKED, K_RCODE, K_LEVEL, K_MODE, K_SIZE, K_BOUND, K_CPUS,
		K_ENFORCEMENT };

struct key {
	const char *path;
	enum key_type type;
	size_t offset;
	size_t size;    /* strings: buffer size */
	uint64_t min, max;
};

#define OFF(f) offsetof(struct crgw_config, f)
#define STR(f) OFF(f), sizeof(((struct crgw_config *)0)->f)

static const struct key keys[] = {
	{ "control", K_STRING, STR(control_path), 0, 0 },
	{ "state_dir", K_STRING, STR(state_dir), 0, 0 },
	{ "control_mode", K_MODE, OFF(control_mode), 0, 0, 0777 },
	{ "audit.path", K_STRING, STR(audit_path), 0, 0 },
	{ "audit.max_bytes", K_UINT, OFF(audit_max_bytes), 8, 4096, UINT64_C(1) << 40 },
	{ "audit.keep", K_UINT, OFF(audit_keep), 4, 0, 1000 },
	{ "audit.queue", K_UINT, OFF(audit_queue), 4, 64, 1 << 22 },
	{ "audit.allow_loss", K_BOOL, OFF(audit_allow_loss), 0, 0, 0 },
	{ "pool", K_POOL, 0, 0, 0, 0 },
	{ "workers", K_UINT, OFF(workers), 4, 0, 256 },
	{ "dns.upstream", K_UPSTREAM, 0, 0, 0, 0 },
	{ "dns.ttl_min", K_UINT, OFF(dns_ttl_min), 4, 0, 86400 },
	{ "dns.ttl_max", K_UINT, OFF(dns_ttl_max), 4, 1, 604800 },
	{ "dns.negative_ttl", K_UINT, OFF(dns_negative_ttl), 4, 0, 3600 },
	{ "dns.rate_limit", K_UINT, OFF(dns_rate_limit), 4, 1, 1000000 },
	{ "dns.binding_grace", K_UINT, OFF(dns_binding_grace), 4, 0, 3600 },
	{ "dns.denied_rcode", K_RCODE, OFF(dns_refuse_denied), 0, 0, 0 },
	{ "dns.timeout_ms", K_UINT, OFF(dns_timeout_ms), 4, 100, 30000 },
	{ "blocked_ranges", K_BLOCKED, 0, 0, 0, 0 },
	{ "nftables.table", K_STRING, STR(nft_table), 0, 0 },
	{ "nftables.nflog_group", K_UINT, OFF(nflog_group), 4, 1, 65535 },
	{ "enforcement", K_ENFORCEMENT, OFF(enforcement), 0, 0, 0 },
	{ "interfaces.prefix", K_STRING, STR(iface_prefix), 0, 0 },
	{ "transparent.http_port", K_UINT, OFF(transparent_http_port), 4, 1, 65535 },
	{ "transparent.tcp_port", K_UINT, OFF(transparent_tcp_port), 4, 1, 65535 },
	{ "proxy.max_tunnels", K_UINT, OFF(proxy_max_tunnels), 4, 1, 1000000 },
	{ "proxy.max_tunnels_per_sandbox", K_UINT, OFF(proxy_max_tunnels_per_sandbox), 4, 1, 1000000 },
	{ "proxy.idle_timeout", K_UINT, OFF(proxy_idle_timeout), 4, 1, 86400 },
	{ "proxy.max_connection_seconds", K_UINT, OFF(proxy_max_connection_seconds), 4, 0, 604800 },
	{ "log_level", K_LEVEL, OFF(log_level), 0, 0, 0 },
	{ "data_dir", K_STRING, STR(data_dir), 0, 0 },
	{ "limits.memory", K_SIZE, OFF(limits_memory), 8, 16u << 20, UINT64_C(1) << 50 },
	{ "limits.pids", K_UINT, OFF(limits_pids), 8, 0, 4194304 },
	{ "limits.cpus", K_CPUS, OFF(limits_cpu_milli), 4, 10, 1024000 },
	{ "limits.disk", K_SIZE, OFF(limits_disk), 8, CRGW_LIMIT_DISK_MIN, CRGW_LIMIT_DISK_MAX },
	{ "limits.optional", K_BOOL, OFF(limits_optional), 0, 0, 0 },
	{ "limits.cgroup", K_STRING, STR(limits_cgroup), 0, 0 },
	{ "limits.connection_rate", K_UINT, OFF(limits_connection_rate), 4, 0, 1000000 },
	{ "testing.ttl_seconds", K_UINT, OFF(testing_ttl_seconds), 4, 0, 604800 },
	{ "mediation.ca_file", K_STRING, STR(mediation_ca_file), 0, 0 },
	{ "mediation.max_connections", K_UINT, OFF(mediation_max_connections), 4, 1, 1000000 },
	{ "mediation.max_connections_per_sandbox", K_UINT, OFF(mediation_max_connections_per_sandbox), 4, 1, 1000000 },
	{ "mediation.idle_timeout", K_UINT, OFF(mediation_idle_timeout), 4, 1, 86400 },
	{ "mediation.push_hold_bytes", K_BOUND, OFF(mediation_push_hold_bytes), 8, 1u << 20, UINT64_C(1) << 30 },
	{ "cache.enabled", K_BOOL, OFF(cache_enabled), 0, 0, 0 },
	{ "cache.dir", K_STRING, STR(cache_dir), 0, 0 },
	{ "policy_store.dir", K_STRING, STR(policy_store_dir), 0, 0 },
	{ "learn.allowed", K_BOOL, OFF(learn_allowed), 0, 0, 0 },
	{ "cache.max_bytes", K_BOUND, OFF(cache_max_bytes), 8, 16u << 20, UINT64_C(1) << 50 },
	{ "cache.offline", K_BOOL, OFF(cache_offline), 0, 0, 0 },
	{ "cache.verify_always", K_BOOL, OFF(cache_verify_always), 0, 0, 0 },
	{ "cache.metadata_ttl_seconds", K_UINT, OFF(cache_metadata_ttl_seconds), 4, 0, 86400 },
	{ "cache.max_metadata_bytes", K_BOUND, OFF(cache_max_metadata_bytes), 8, 64u << 10, UINT64_C(1) << 30 },
	{ "cache.max_artifact_bytes", K_BOUND, OFF(cache_max_artifact_bytes), 8, 1u << 20, UINT64_C(1) << 50 },
};

_Static_assert(sizeof(keys) / sizeof(keys[0]) <= CRGW_CONFIG_KEYS_MAX, "crgw_config.origin has a slot per row");

void crgw_config_defaults(struct crgw_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->control_path, sizeof(cfg->control_path), "/run/crgw/control.sock");
	cfg->control_mode = 0660;
	snprintf(cfg->state_dir, sizeof(cfg->state_dir), "/run/crgw/state");
	snprintf(cfg->audit_path, sizeof(cfg->audit_path), "/var/log/crgw/audit.log");
	cfg->audit_max_bytes = UINT64_C(100) << 20;
	cfg->audit_keep = 5;
	cfg->audit_queue = 65536;
	inet_pton(AF_INET, "10.200.0.0", &cfg->pool);
	cfg->pool_prefix = 16;
	cfg->dns_ttl_min = 5;
	cfg->dns_ttl_max = 300;
	cfg->dns_negative_ttl = 30;
	cfg->dns_rate_limit = 500;
	cfg->dns_binding_grace = 30;
	cfg->dns_timeout_ms = 2000;
	snprintf(cfg->nft_table, sizeof(cfg->nft_table), "crgw");
	snprintf(cfg->iface_prefix, sizeof(cfg->iface_prefix), "crgw-");
	cfg->nflog_group = 4242;
	cfg->transparent_http_port = 15080;
	cfg->transparent_tcp_port = 15443;
	cfg->proxy_max_tunnels = 65536;
	cfg->proxy_max_tunnels_per_sandbox = 4096;
	cfg->proxy_idle_timeout = 300;
	cfg->proxy_max_connection_seconds = 86400;
	cfg->log_level = 1;
	snprintf(cfg->data_dir, sizeof(cfg->data_dir), "/var/lib/crgw");
	cfg->limits_memory = UINT64_C(4) << 30;
	cfg->limits_pids = 4096;
	cfg->limits_cpu_milli = 0;
	cfg->limits_connection_rate = 1000;
	snprintf(cfg->limits_cgroup, sizeof(cfg->limits_cgroup), "crgw");
	cfg->mediation_max_connections = 16384;
	cfg->mediation_max_connections_per_sandbox = 256;
	cfg->mediation_idle_timeout = 120;
	cfg->mediation_push_hold_bytes = UINT64_C(16) << 20;
	/*
	 * The cache is regenerable data that should survive a reboot: /var/cache, not state_dir (under /run,
	 * a tmpfs) nor data_dir (the sandboxes' own data, emptied through trash/).
	 */
	cfg->cache_enabled = true;
	snprintf(cfg->cache_dir, sizeof(cfg->cache_dir), "/var/cache/crgw");
	cfg->cache_max_bytes = UINT64_C(10) << 30;
	cfg->cache_metadata_ttl_seconds = 300;
	cfg->cache_max_metadata_bytes = UINT64_C(64) << 20;
	cfg->cache_max_artifact_bytes = UINT64_C(2) << 30;
}

/*
 * Decimal digits and nothing else, at most `max`. strtoul() would also take leading blanks and a sign
 * ("-1" wraps to a huge value, "+8" passes), which the runtime parsers (policy/pattern.c) refuse: what
 * --check-config accepts must be what the gateway runs with.
 */
static int parse_decimal(const char *v, uint64_t max, uint64_t *out)
{
	uint64_t n = 0;

	if (*v == '\0')
		return -EINVAL;
	for (; *v; v++) {
		if (*v < '0' || *v > '9')
			return -EINVAL;
		if (n > (max - (uint64_t)(*v - '0')) / 10)
			return -ERANGE;
		n = n * 10 + (uint64_t)(*v - '0');
	}
	*out = n;
	return 0;
}

int crgw_cidr4_parse(const char *text, struct in_addr *addr, unsigned *prefix)
{
	char buf[32];
	const char *slash = strchr(text, '/');
	size_t alen = slash ? (size_t)(slash - text) : strlen(text);
	uint64_t len = 32;

	if (alen == 0 || alen >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, text, alen);
	buf[alen] = '\0';
	if (inet_pton(AF_INET, buf, addr) != 1)
		return -EINVAL;
	if (slash && parse_decimal(slash + 1, 32, &len))
		return -EINVAL;
	*prefix = (unsigned)len;
	return 0;
}

static int parse_upstream(const char *v, struct crgw_upstream *u)
{
	char host[48];
	const char *colon = strrchr(v, ':');
	uint64_t port = 53;
	struct sockaddr_in *sin = (struct sockaddr_in *)&u->addr;
	size_t hlen = colon ? (size_t)(colon - v) : strlen(v);

	/* IPv4 only for now: the sandbox pool and the test network are IPv4 (docs/gateway.md). */
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, v, hlen);
	host[hlen] = '\0';
	if (colon && (parse_decimal(colon + 1, 65535, &port) || port == 0))
		return -EINVAL;
	memset(&u->addr, 0, sizeof(u->addr));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		return -EINVAL;
	snprintf(u->text, sizeof(u->text), "%s:%llu", host, (unsigned long long)port);
	return 0;
}

/* A bound of the table for an error message: "64 KiB", "16 MiB", "1 PiB" (the bounds are powers of two). */
static void size_text(uint64_t bytes, char *buf, size_t size)
{
	static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	unsigned u = 0;

	while (u < 6 && bytes >= 1024 && bytes % 1024 == 0) {
		bytes /= 1024;
		u++;
	}
	snprintf(buf, size, "%llu %s", (unsigned long long)bytes, units[u]);
}

static int fail(char *err, size_t errlen, const char *where, const char *key, const char *why)
{
	snprintf(err, errlen, "%s%s%s: %s", where ? where : "", where ? ": " : "", key, why);
	return -EINVAL;
}

static int set_key(struct crgw_config *cfg, const struct key *k, const char *v, char *err, size_t errlen,
		   const char *where)
{
	char *base = (char *)cfg;
	uint64_t n;

	switch (k->type) {
	case K_UINT:
		if (parse_decimal(v, UINT64_MAX, &n))
			return fail(err, errlen, where, k->path, "expected a non-negative integer");
		if (n < k->min || n > k->max) {
			char why[96];

			snprintf(why, sizeof(why), "must be between %llu and %llu", (unsigned long long)k->min,
				 (unsigned long long)k->max);
			return fail(err, errlen, where, k->path, why);
		}
		if (k->size == 8)
			*(uint64_t *)(base + k->offset) = n;
		else if (k->size == 2)
			*(uint16_t *)(base + k->offset) = (uint16_t)n;
		else
			*(unsigned *)(base + k->offset) = (unsigned)n;
		return 0;
	case K_MODE:
		n = 0;
		for (const char *p = v; *p && n <= k->max; p++)
			n = *p >= '0' && *p <= '7' ? n * 8 + (uint64_t)(*p - '0') : UINT64_MAX;
		if (*v == '\0' || n > k->max)
			return fail(err, errlen, where, k->path, "expected an octal file mode such as 0660");
		*(unsigned *)(base + k->offset) = (unsigned)n;
		return 0;
	case K_BOOL:
		if (!strcmp(v, "true"))
			*(bool *)(base + k->offset) = true;
		else if (!strcmp(v, "false"))
			*(bool *)(base + k->offset) = false;
		else
			return fail(err, errlen, where, k->path, "expected true or false");
		return 0;
	case K_STRING:
		if (*v == '\0' || strlen(v) >= k->size)
			return fail(err, errlen, where, k->path, "empty or too long");
		memcpy(base + k->offset, v, strlen(v) + 1);
		return 0;
	case K_RCODE:
		if (!strcmp(v, "nxdomain"))
			cfg->dns_refuse_denied = false;
		else if (!strcmp(v, "refused"))
			cfg->dns_refuse_denied = true;
		else
			return fail(err, errlen, where, k->path, "expected nxdomain or refused");
		return 0;
	case K_SIZE: {
		uint64_t bytes;
		char why[128], lo[32], hi[32];

		if (crgw_size_parse(v, &bytes))
			return fail(err, errlen, where, k->path, "expected a size such as 4GiB, 512M or 1073741824");
		/* 0 says "no limit"; any other value must be a usable one. */
		if (bytes && (bytes < k->min || bytes > k->max)) {
			size_text(k->min, lo, sizeof(lo));
			size_text(k->max, hi, sizeof(hi));
			snprintf(why, sizeof(why), "must be between %s and %s (or 0: no limit)", lo, hi);
			return fail(err, errlen, where, k->path, why);
		}
		*(uint64_t *)(base + k->offset) = bytes;
		return 0;
	}
	case K_BOUND: {
		uint64_t bytes;
		char why[128], lo[32], hi[32];

		if (crgw_size_parse(v, &bytes))
			return fail(err, errlen, where, k->path, "expected a size such as 4GiB, 512M or 1073741824");
		if (bytes < k->min || bytes > k->max) {
			size_text(k->min, lo, sizeof(lo));
			size_text(k->max, hi, sizeof(hi));
			snprintf(why, sizeof(why), "must be between %s and %s", lo, hi);
			return fail(err, errlen, where, k->path, why);
		}
		*(uint64_t *)(base + k->offset) = bytes;
		return 0;
	}
	case K_CPUS: {
		uint32_t m;

		if (crgw_cpus_parse(v, &m) || (m && (m < k->min || m > k->max)))
			return fail(err, errlen, where, k->path,
				    "expected a CPU count between 0.01 and 1024 such as 2 or 0.5 (0: all CPUs)");
		*(uint32_t *)(base + k->offset) = m;
		return 0;
	}
	case K_ENFORCEMENT:
		if (!strcmp(v, "nftables"))
			cfg->enforcement = CRGW_ENFORCE_NFTABLES;
		else if (!strcmp(v, "ebpf"))
			cfg->enforcement = CRGW_ENFORCE_EBPF;
		else if (!strcmp(v, "both"))
			cfg->enforcement = CRGW_ENFORCE_BOTH;
		else
			return fail(err, errlen, where, k->path, "expected nftables, ebpf or both");
		return 0;
	case K_LEVEL: {
		static const char *const names[] = { "debug", "info", "warn", "error" };

		for (unsigned i = 0; i < 4; i++)
			if (!strcmp(v, names[i])) {
				cfg->log_level = i;
				return 0;
			}
		return fail(err, errlen, where, k->path, "expected debug, info, warn or error");
	}
	case K_POOL:
		if (crgw_cidr4_parse(v, &cfg->pool, &cfg->pool_prefix) || !strchr(v, '/'))
			return fail(err, errlen, where, k->path, "expected an IPv4 CIDR such as 10.200.0.0/16");
		return 0;
	case K_UPSTREAM:
		if (cfg->nupstream == CRGW_UPSTREAM_MAX)
			return fail(err, errlen, where, k->path, "too many upstream servers (at most 8)");
		if (parse_upstream(v, &cfg->upstream[cfg->nupstream]))
			return fail(err, errlen, where, k->path, "expected an IPv4 address with an optional :port");
		cfg->nupstream++;
		return 0;
	case K_BLOCKED: {
		struct in_addr a;
		unsigned p;

		if (cfg->nblocked == CRGW_BLOCKED_MAX)
			return fail(err, errlen, where, k->path, "too many ranges (at most 64)");
		if (strlen(v) >= sizeof(cfg->blocked[0]) || crgw_cidr4_parse(v, &a, &p))
			return fail(err, errlen, where, k->path, "expected an IPv4 CIDR");
		if (p < 32 && (ntohl(a.s_addr) & (uint32_t)((UINT64_C(1) << (32 - p)) - 1)))
			return fail(err, errlen, where, k->path, "has host bits set (write the network address)");
		memcpy(cfg->blocked[cfg->nblocked++], v, strlen(v) + 1);
		return 0;
	}
	}
	return fail(err, errlen, where, k->path, "unsupported");
}

static const struct key *find_key(const char *path)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!strcmp(keys[i].path, path))
			return &keys[i];
	return NULL;
}

/* Maps whose keys the operator names (a secret's id, a sink's name, a host): no row of `keys` describes them. */
static const char *const named_maps[] = { "secrets", "audit.sinks", "git.credentials", "registries.credentials" };

int crgw_config_set(struct crgw_config *cfg, const char *key, const char *value, char *err, size_t errlen)
{
	const struct key *k = find_key(key);

	if (!k) {
		for (size_t i = 0; i < sizeof(named_maps) / sizeof(named_maps[0]); i++) {
			size_t n = strlen(named_maps[i]);

			if (!strncmp(key, named_maps[i], n) && (key[n] == '.' || key[n] == '\0'))
				return fail(err, errlen, NULL, key,
					    "secrets, audit sinks and credentials are maps set in a configuration file "
					    "(--config, crgw.d/), not with --set");
		}
		return fail(err, errlen, NULL, key, "unknown key");
	}
	/* A flag's value has no line to name; one that fails crgw_config_finish() is reported by key alone. */
	memset(&cfg->origin[k - keys], 0, sizeof(cfg->origin[0]));
	return set_key(cfg, k, value, err, errlen, NULL);
}

struct walk {
	struct crgw_config *cfg;
	const char *file;
	char *err;
	size_t errlen;
	yaml_document_t *doc;
	unsigned findex; /* this file's index in cfg->files plus one; 0: past the last slot */
	unsigned maps; /* MAP_* bits: the maps keyed by the operator's names already read from this file */
};

enum { MAP_SECRETS = 1, MAP_SINKS = 2, MAP_GIT = 4, MAP_REGISTRIES = 8 };

/* The operator's maps are short (64 entries at most) and the root has a row per key: this bounds the check below. */
#define MAPPING_MAX_PAIRS 256

/*
 * YAML says a mapping's keys are unique, but libyaml keeps both and the walk would let the last win
 * silently. Keys are compared byte for byte (check_events() has refused NUL).
 */
static int check_unique(struct walk *w, yaml_node_t *map, const char *path, const char *where)
{
	yaml_node_pair_t *start = map->data.mapping.pairs.start, *top = map->data.mapping.pairs.top;

	if (top - start > MAPPING_MAX_PAIRS)
		return fail(w->err, w->errlen, where, path[0] ? path : "(root)", "more than 256 keys in one mapping");
	for (yaml_node_pair_t *p = start; p < top; p++) {
		yaml_node_t *kn = yaml_document_get_node(w->doc, p->key);

		if (!kn || kn->type != YAML_SCALAR_NODE)
			continue;
		for (yaml_node_pair_t *q = start; q < p; q++) {
			yaml_node_t *prev = yaml_document_get_node(w->doc, q->key);
			char at[4200], why[128], key[300];

			if (!prev || prev->type != YAML_SCALAR_NODE ||
			    prev->data.scalar.length != kn->data.scalar.length ||
			    memcmp(prev->data.scalar.value, kn->data.scalar.value, kn->data.scalar.length))
				continue;
			snprintf(at, sizeof(at), "%s:%lu:%lu", w->file, (unsigned long)kn->start_mark.line + 1,
				 (unsigned long)kn->start_mark.column + 1);
			snprintf(key, sizeof(key), "%s%s%.255s", path, path[0] ? "." : "",
				 (const char *)kn->data.scalar.value);
			snprintf(why, sizeof(why), "given twice (first at line %lu, column %lu)",
				 (unsigned long)prev->start_mark.line + 1, (unsigned long)prev->start_mark.column + 1);
			return fail(w->err, w->errlen, at, key, why);
		}
	}
	return 0;
}

/* A map keyed by the operator's names, written both nested and dotted, would be read twice. */
static int once(struct walk *w, unsigned bit, const char *where, const char *path)
{
	if (w->maps & bit)
		return fail(w->err, w->errlen, where, path, "given twice");
	w->maps |= bit;
	return 0;
}

static void set_origin(struct walk *w, struct crgw_config_origin *o, const yaml_node_t *n)
{
	o->file = w->findex;
	o->line = (unsigned)n->start_mark.line + 1;
	o->column = (unsigned)n->start_mark.column + 1;
}

static int walk_secrets(struct walk *w, yaml_node_t *node, const char *where);
static int walk_sinks(struct walk *w, yaml_node_t *node, const char *where);
static int walk_credentials(struct walk *w, yaml_node_t *node, const char *where, const char *section,
			    struct crgw_git_credential *list, struct crgw_config_origin *origins, size_t *count);

/* Maps keyed by the operator's own names (secret ids, sink names, hosts), walked by their own functions. */
static int walk_node(struct walk *w, yaml_node_t *node, const char *path, unsigned depth)
{
	struct crgw_config_origin *o;
	char where[4200];
	const struct key *k;

	snprintf(where, sizeof(where), "%s:%lu:%lu", w->file, (unsigned long)node->start_mark.line + 1,
		 (unsigned long)node->start_mark.column + 1);
	if (depth > 4)
		return fail(w->err, w->errlen, where, path, "nested too deeply");
	/* Maps keyed by the operator's own names: secret ids, git hosts. */
	if (!strcmp(path, "secrets"))
		return once(w, MAP_SECRETS, where, path) || walk_secrets(w, node, where) ? -EINVAL : 0;
	if (!strcmp(path, "audit.sinks"))
		return once(w, MAP_SINKS, where, path) || walk_sinks(w, node, where) ? -EINVAL : 0;
	if (!strcmp(path, "git.credentials"))
		return once(w, MAP_GIT, where, path) ||
		       walk_credentials(w, node, where, path, w->cfg->git_credentials, w->cfg->git_origin,
					&w->cfg->ngit_credentials) ? -EINVAL : 0;
	if (!strcmp(path, "registries.credentials"))
		return once(w, MAP_REGISTRIES, where, path) ||
		       walk_credentials(w, node, where, path, w->cfg->registry_credentials, w->cfg->registry_origin,
					&w->cfg->nregistry_credentials) ? -EINVAL : 0;
	/* An entry of those maps has no row: `secrets.a: {...}` would otherwise end as "secrets.a.env: unknown key". */
	for (size_t i = 0; i < sizeof(named_maps) / sizeof(named_maps[0]); i++) {
		size_t n = strlen(named_maps[i]);

		if (!strncmp(path, named_maps[i], n) && path[n] == '.') {
			char why[128];

			snprintf(why, sizeof(why), "write %s's entries nested under %s:, not as dotted keys",
				 named_maps[i], named_maps[i]);
			return fail(w->err, w->errlen, where, path, why);
		}
	}
	if (node->type == YAML_MAPPING_NODE) {
		int err = check_unique(w, node, path, where);

		if (err)
			return err;
		/* A mapping is either the root or a section whose keys are looked up with the dotted path. */
		for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
			yaml_node_t *kn = yaml_document_get_node(w->doc, p->key);
			yaml_node_t *vn = yaml_document_get_node(w->doc, p->value);
			char sub[256];
			int err;

			if (!kn || !vn || kn->type != YAML_SCALAR_NODE)
				return fail(w->err, w->errlen, where, path[0] ? path : "(root)",
					    "keys must be plain strings");
			if (snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "",
				     (const char *)kn->data.scalar.value) >= (int)sizeof(sub))
				return fail(w->err, w->errlen, where, path, "key too long");
			err = walk_node(w, vn, sub, depth + 1);
			if (err)
				return err;
		}
		return 0;
	}
	k = find_key(path);
	if (!k)
		return fail(w->err, w->errlen, where, path, "unknown key");
	/* Also `dns: {ttl_max: 5}` and `dns.ttl_max: 6` in one file, which check_unique() cannot see. */
	o = &w->cfg->origin[k - keys];
	if (w->findex && o->file == w->findex) {
		char why[128];

		snprintf(why, sizeof(why), "given twice (first at line %u, column %u)", o->line, o->column);
		return fail(w->err, w->errlen, where, path, why);
	}
	set_origin(w, o, node);
	if (node->type == YAML_SEQUENCE_NODE) {
		if (k->type != K_UPSTREAM && k->type != K_BLOCKED)
			return fail(w->err, w->errlen, where, path, "expected a single value, not a list");
		for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top;
		     it++) {
			yaml_node_t *item = yaml_document_get_node(w->doc, *it);
			int err;

			if (!item || item->type != YAML_SCALAR_NODE)
				return fail(w->err, w->errlen, where, path, "list items must be scalars");
			err = set_key(w->cfg, k, (const char *)item->data.scalar.value, w->err, w->errlen, where);
			if (err)
				return err;
		}
		return 0;
	}
	if (node->type != YAML_SCALAR_NODE)
		return fail(w->err, w->errlen, where, path, "unexpected value");
	return set_key(w->cfg, k, (const char *)node->data.scalar.value, w->err, w->errlen, where);
}

static const char *scalar(yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static void node_where(struct walk *w, yaml_node_t *n, char *where, size_t size)
{
	snprintf(where, size, "%s:%lu:%lu", w->file, (unsigned long)n->start_mark.line + 1,
		 (unsigned long)n->start_mark.column + 1);
}

/* As the policy compiler checks them: an id names a secret, it never looks like one. */
static bool secret_id_valid(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > 64)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
			return false;
	return true;
}

/*
 * A sink's name is a file name under DATA_DIR/spool/: no dot, so never "." or ".." (".." would make the
 * spool DATA_DIR itself) nor a hidden file.
 */
static bool sink_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= sizeof(((struct crgw_sink_config *)0)->name))
		return false;
	return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/*
 * secrets:
 *   ID: { env: NAME } | { file: PATH } | { command: [ARGV...], refresh_seconds: N }
 */
static int walk_secrets(struct walk *w, yaml_node_t *node, const char *where)
{
	char at[4200];

	if (node->type != YAML_MAPPING_NODE)
		return fail(w->err, w->errlen, where, "secrets", "expected a mapping of secret ids to sources");
	if (check_unique(w, node, "secrets", where))
		return -EINVAL;
	for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(w->doc, p->key), *vn = yaml_document_get_node(w->doc, p->value);
		const char *id = scalar(kn);
		struct crgw_secret_source *src;
		char key[128];
		unsigned sources = 0;

		node_where(w, kn ? kn : node, at, sizeof(at));
		if (!id || !secret_id_valid(id))
			return fail(w->err, w->errlen, at, "secrets",
				    "a secret id is [a-z0-9_.-], 1 to 64 characters");
		snprintf(key, sizeof(key), "secrets.%s", id);
		for (size_t i = 0; i < w->cfg->nsecrets; i++)
			if (!strcmp(w->cfg->secrets[i].id, id))
				return fail(w->err, w->errlen, at, key, "defined twice");
		if (w->cfg->nsecrets == CRGW_SECRETS_MAX)
			return fail(w->err, w->errlen, at, key, "too many secrets (at most 64)");
		if (!vn || vn->type != YAML_MAPPING_NODE)
			return fail(w->err, w->errlen, at, key, "expected env:, file: or command:");
		if (check_unique(w, vn, key, at))
			return -EINVAL;
		src = &w->cfg->secrets[w->cfg->nsecrets];
		memset(src, 0, sizeof(*src));
		memcpy(src->id, id, strlen(id) + 1);
		for (yaml_node_pair_t *q = vn->data.mapping.pairs.start; q < vn->data.mapping.pairs.top; q++) {
			yaml_node_t *fk = yaml_document_get_node(w->doc, q->key), *fv = yaml_document_get_node(w->doc, q->value);
			const char *f = scalar(fk), *v = scalar(fv);

			node_where(w, fk ? fk : vn, at, sizeof(at));
			if (!f)
				return fail(w->err, w->errlen, at, key, "keys must be plain strings");
			if (!strcmp(f, "env")) {
				if (!v || !*v || strlen(v) >= sizeof(src->env) || strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(v) || (*v >= '0' && *v <= '9'))
					return fail(w->err, w->errlen, at, key, "env: expected a variable name");
				memcpy(src->env, v, strlen(v) + 1);
				src->kind = CRGW_SECRET_ENV;
				sources++;
			} else if (!strcmp(f, "file")) {
				if (!v || v[0] != '/' || strlen(v) >= sizeof(src->path))
					return fail(w->err, w->errlen, at, key, "file: expected an absolute path");
				memcpy(src->path, v, strlen(v) + 1);
				src->kind = CRGW_SECRET_FILE;
				sources++;
			} else if (!strcmp(f, "command")) {
				if (!fv || fv->type != YAML_SEQUENCE_NODE)
					return fail(w->err, w->errlen, at, key, "command: expected a list [PROGRAM, ARGS...]");
				for (yaml_node_item_t *it = fv->data.sequence.items.start; it < fv->data.sequence.items.top;
				     it++) {
					const char *a = scalar(yaml_document_get_node(w->doc, *it));

					if (!a || strlen(a) >= sizeof(src->argv[0]) || src->argc == CRGW_SECRET_ARGV_MAX)
						return fail(w->err, w->errlen, at, key,
							    "command: at most 16 plain strings of up to 255 bytes");
					memcpy(src->argv[src->argc++], a, strlen(a) + 1);
				}
				if (src->argc == 0 || src->argv[0][0] != '/')
					return fail(w->err, w->errlen, at, key,
						    "command: the program must be an absolute path");
				src->kind = CRGW_SECRET_COMMAND;
				sources++;
			} else if (!strcmp(f, "refresh_seconds")) {
				uint64_t n;

				if (!v || parse_decimal(v, 604800, &n))
					return fail(w->err, w->errlen, at, key, "refresh_seconds: expected 0 to 604800");
				src->refresh_seconds = (unsigned)n;
			} else {
				return fail(w->err, w->errlen, at, key,
					    "unknown key (expected env, file, command or refresh_seconds)");
			}
		}
		if (sources != 1)
			return fail(w->err, w->errlen, at, key, "expected exactly one of env:, file: or command:");
		if (src->refresh_seconds && src->kind != CRGW_SECRET_COMMAND)
			return fail(w->err, w->errlen, at, key, "refresh_seconds applies to command: only");
		w->cfg->nsecrets++;
	}
	return 0;
}

/*
 * A credential's host name, or a registry one of them serves: a name, normalized into `host`. The host
 * parser's reason for "https://h" or "h:443" would speak of IPv6 or of a policy's ports, hence the first check.
 */
static int credential_host(struct walk *w, const char *v, const char *at, const char *key, const char *expected,
			   struct crgw_host *host)
{
	const char *why = NULL;
	char text[160];

	if (v && strpbrk(v, ":/@[]")) {
		snprintf(text, sizeof(text), "expected %s (no scheme, port, user or path)", expected);
		return fail(w->err, w->errlen, at, key, text);
	}
	if (!v || crgw_host_parse(v, strlen(v), host, &why) || host->kind != CRGW_HOST_NAME)
		return fail(w->err, w->errlen, at, key, why ? why : "expected a host name");
	return 0;
}

/* registries.credentials.HOST.token_for: [REGISTRY, ...], host names, into c->token_for. */
static int walk_token_for(struct walk *w, yaml_node_t *node, const char *key, struct crgw_git_credential *c)
{
	char at[4200], field[320];
	size_t used = 0, n = 0;

	snprintf(field, sizeof(field), "%s.token_for", key);
	node_where(w, node, at, sizeof(at));
	if (!node || node->type != YAML_SEQUENCE_NODE)
		return fail(w->err, w->errlen, at, field, "expected a list of registry host names");
	for (yaml_node_item_t *i = node->data.sequence.items.start; i < node->data.sequence.items.top; i++) {
		yaml_node_t *in = yaml_document_get_node(w->doc, *i);
		struct crgw_host host;
		size_t len;

		node_where(w, in ? in : node, at, sizeof(at));
		if (credential_host(w, scalar(in), at, field, "a registry host name such as registry.example.com", &host))
			return -EINVAL;
		if (++n > CRGW_TOKEN_FOR_MAX)
			return fail(w->err, w->errlen, at, field, "too many registries (at most 16)");
		len = strlen(host.text);
		if (used + len + 2 > sizeof(c->token_for))
			return fail(w->err, w->errlen, at, field, "the names are too long together (511 bytes at most)");
		if (used)
			c->token_for[used++] = ' ';
		memcpy(c->token_for + used, host.text, len + 1);
		used += len;
	}
	return 0;
}

/*
 * git: | registries:
 *   credentials:
 *     HOST: { secret: ID, scheme: basic, username: NAME } | { secret: ID, scheme: bearer }
 *           registries: and token_for: [REGISTRY, ...]
 */
static int walk_credentials(struct walk *w, yaml_node_t *node, const char *where, const char *section,
			    struct crgw_git_credential *list, struct crgw_config_origin *origins, size_t *count)
{
	bool registries = !strcmp(section, "registries.credentials");
	char at[4200];

	if (node->type != YAML_MAPPING_NODE)
		return fail(w->err, w->errlen, where, section, "expected a mapping of host names");
	if (check_unique(w, node, section, where))
		return -EINVAL;
	for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(w->doc, p->key), *vn = yaml_document_get_node(w->doc, p->value);
		const char *scheme = NULL;
		struct crgw_git_credential *c;
		struct crgw_host host;
		char key[300];

		node_where(w, kn ? kn : node, at, sizeof(at));
		if (credential_host(w, scalar(kn), at, section, "a host name such as git.example.com", &host))
			return -EINVAL;
		snprintf(key, sizeof(key), "%s.%s", section, host.text);
		for (size_t i = 0; i < *count; i++)
			if (!strcmp(list[i].host, host.text))
				return fail(w->err, w->errlen, at, key, "defined twice");
		if (*count == CRGW_GIT_CREDENTIALS_MAX)
			return fail(w->err, w->errlen, at, key, "too many hosts (at most 64)");
		if (!vn || vn->type != YAML_MAPPING_NODE)
			return fail(w->err, w->errlen, at, key, "expected secret:, scheme: and (for basic) username:");
		if (check_unique(w, vn, key, at))
			return -EINVAL;
		set_origin(w, &origins[*count], kn);
		c = &list[*count];
		memset(c, 0, sizeof(*c));
		memcpy(c->host, host.text, strlen(host.text) + 1);
		for (yaml_node_pair_t *q = vn->data.mapping.pairs.start; q < vn->data.mapping.pairs.top; q++) {
			yaml_node_t *fk = yaml_document_get_node(w->doc, q->key);
			yaml_node_t *fv = yaml_document_get_node(w->doc, q->value);
			const char *f = scalar(fk), *v = scalar(fv);

			node_where(w, fk ? fk : vn, at, sizeof(at));
			if (f && !strcmp(f, "token_for")) {
				if (!registries)
					return fail(w->err, w->errlen, at, key, "unknown key (expected secret, scheme, username)");
				if (walk_token_for(w, fv, key, c))
					return -EINVAL;
				continue;
			}
			if (!f || !v)
				return fail(w->err, w->errlen, at, key, "expected plain strings");
			if (!strcmp(f, "secret")) {
				if (!secret_id_valid(v))
					return fail(w->err, w->errlen, at, key, "secret: expected a secret id of secrets:");
				memcpy(c->secret, v, strlen(v) + 1);
			} else if (!strcmp(f, "scheme")) {
				scheme = strcmp(v, "basic") == 0 || strcmp(v, "bearer") == 0 ? v : NULL;
				if (!scheme)
					return fail(w->err, w->errlen, at, key, "scheme: expected basic or bearer");
				c->basic = scheme[0] == 'b' && scheme[1] == 'a';
			} else if (!strcmp(f, "username")) {
				if (!*v || strlen(v) >= sizeof(c->username) || strchr(v, ':'))
					return fail(w->err, w->errlen, at, key, "username: 1 to 127 bytes, no ':'");
				memcpy(c->username, v, strlen(v) + 1);
			} else {
				return fail(w->err, w->errlen, at, key,
					    registries ? "unknown key (expected secret, scheme, username, token_for)"
						       : "unknown key (expected secret, scheme, username)");
			}
		}
		if (!c->secret[0] || !scheme)
			return fail(w->err, w->errlen, at, key, "secret: and scheme: are required");
		if (c->basic != (c->username[0] != '\0'))
			return fail(w->err, w->errlen, at, key, "username: is required for basic, and only for basic");
		(*count)++;
	}
	return 0;
}

/* "host:port" (or "[v6]:port") into its parts; a port is required. */
static bool split_hostport(const char *v, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon = strrchr(v, ':');
	uint64_t p;
	size_t n;

	if (!colon || colon == v || parse_decimal(colon + 1, 65535, &p) || p == 0)
		return false;
	n = (size_t)(colon - v);
	if (v[0] == '[') {
		if (v[n - 1] != ']' || n < 3)
			return false;
		v++;
		n -= 2;
	}
	if (n >= hostlen)
		return false;
	memcpy(host, v, n);
	host[n] = '\0';
	*port = (uint16_t)p;
	return true;
}

/* A syslog receiver's host: a name, an IPv4 address or an IPv6 one (its brackets already gone). */
static bool sink_host_ok(const char *h)
{
	if (!*h)
		return false;
	for (const char *p = h; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr(".-_:", *p))
			return false;
	return true;
}

/*
 * An OTLP endpoint as libcurl will read it: a host, a port that fits, and nothing (a blank, CR, LF)
 * that could end up splitting the request line; parsed by libcurl's own URL parser, which sends it.
 */
static bool endpoint_ok(const char *v)
{
	CURLU *u = curl_url();
	char *host = NULL, *port = NULL;
	uint64_t p = 80;
	bool ok;

	for (const char *c = v; *c; c++)
		if ((unsigned char)*c <= ' ' || *c == 0x7f) {
			curl_url_cleanup(u);
			return false;
		}
	ok = u && !curl_url_set(u, CURLUPART_URL, v, 0) && !curl_url_get(u, CURLUPART_HOST, &host, 0) && host[0];
	if (ok && !curl_url_get(u, CURLUPART_PORT, &port, 0))
		ok = !parse_decimal(port, 65535, &p) && p > 0;
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return ok;
}

static const char *const facilities[] = {"kern",   "user",   "mail",   "daemon", "auth",     "syslog",
					 "lpr",	   "news",   "uucp",   "cron",	 "authpriv", "ftp",
					 "ntp",	   "audit",  "alert",  "clock",	 "local0",   "local1",
					 "local2", "local3", "local4", "local5", "local6",   "local7"};

/*
 * audit:
 *   sinks:
 *     NAME: { type: syslog, transport: udp|tcp|tls, address: HOST:PORT, format: json|sd, facility: F,
 *             ca_file: PATH, server_name: NAME, spool_max_bytes: SIZE, batch_max: N }
 *     NAME: { type: otlp, endpoint: URL, ca_file: PATH, spool_max_bytes: SIZE, batch_max: N }
 */
static int walk_sinks(struct walk *w, yaml_node_t *node, const char *where)
{
	char at[4200];

	if (node->type != YAML_MAPPING_NODE)
		return fail(w->err, w->errlen, where, "audit.sinks", "expected a mapping of sink names");
	if (check_unique(w, node, "audit.sinks", where))
		return -EINVAL;
	for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(w->doc, p->key),
			    *vn = yaml_document_get_node(w->doc, p->value);
		const char *name = scalar(kn);
		struct crgw_sink_config *s;
		bool typed = false, addressed = false;
		char key[300];

		node_where(w, kn ? kn : node, at, sizeof(at));
		if (!name || !sink_name_valid(name))
			return fail(w->err, w->errlen, at, "audit.sinks",
				    "a sink name is [A-Za-z0-9_-], 1 to 63 characters");
		snprintf(key, sizeof(key), "audit.sinks.%s", name);
		for (size_t i = 0; i < w->cfg->nsinks; i++)
			if (!strcmp(w->cfg->sinks[i].name, name))
				return fail(w->err, w->errlen, at, key, "defined twice");
		if (w->cfg->nsinks == CRGW_SINKS_MAX)
			return fail(w->err, w->errlen, at, key, "too many sinks (at most 8)");
		if (!vn || vn->type != YAML_MAPPING_NODE)
			return fail(w->err, w->errlen, at, key, "expected type: and its settings");
		if (check_unique(w, vn, key, at))
			return -EINVAL;
		s = &w->cfg->sinks[w->cfg->nsinks];
		memset(s, 0, sizeof(*s));
		memcpy(s->name, name, strlen(name) + 1);
		s->transport = CRGW_SINK_TCP;
		s->facility = 16;
		s->spool_max_bytes = UINT64_C(64) << 20;
		s->batch_max = 256;
		for (yaml_node_pair_t *q = vn->data.mapping.pairs.start; q < vn->data.mapping.pairs.top; q++) {
			yaml_node_t *fk = yaml_document_get_node(w->doc, q->key);
			const char *f = scalar(fk), *v = scalar(yaml_document_get_node(w->doc, q->value));

			node_where(w, fk ? fk : vn, at, sizeof(at));
			if (!f || !v)
				return fail(w->err, w->errlen, at, key, "expected plain strings");
			if (!strcmp(f, "type")) {
				if (strcmp(v, "syslog") && strcmp(v, "otlp"))
					return fail(w->err, w->errlen, at, key, "type: expected syslog or otlp");
				s->type = v[0] == 's' ? CRGW_SINK_SYSLOG : CRGW_SINK_OTLP;
				typed = true;
			} else if (!strcmp(f, "transport")) {
				if (!strcmp(v, "udp"))
					s->transport = CRGW_SINK_UDP;
				else if (!strcmp(v, "tcp"))
					s->transport = CRGW_SINK_TCP;
				else if (!strcmp(v, "tls"))
					s->transport = CRGW_SINK_TLS;
				else
					return fail(w->err, w->errlen, at, key, "transport: expected udp, tcp or tls");
			} else if (!strcmp(f, "address")) {
				if (!split_hostport(v, s->host, sizeof(s->host), &s->port) || !sink_host_ok(s->host))
					return fail(w->err, w->errlen, at, key,
						    "address: expected HOST:PORT (a name, an IPv4 address or [IPv6])");
				addressed = true;
			} else if (!strcmp(f, "format")) {
				if (strcmp(v, "json") && strcmp(v, "sd"))
					return fail(w->err, w->errlen, at, key, "format: expected json or sd");
				s->structured = !strcmp(v, "sd");
			} else if (!strcmp(f, "facility")) {
				size_t i;

				for (i = 0; i < sizeof(facilities) / sizeof(facilities[0]) && strcmp(v, facilities[i]);
				     i++)
					;
				if (i == sizeof(facilities) / sizeof(facilities[0]))
					return fail(w->err, w->errlen, at, key,
						    "facility: expected a syslog facility (local0 …)");
				s->facility = (unsigned)i;
			} else if (!strcmp(f, "ca_file")) {
				if (v[0] != '/' || strlen(v) >= sizeof(s->ca_file))
					return fail(w->err, w->errlen, at, key, "ca_file: expected an absolute path");
				memcpy(s->ca_file, v, strlen(v) + 1);
			} else if (!strcmp(f, "server_name")) {
				if (!*v || strlen(v) >= sizeof(s->server_name))
					return fail(w->err, w->errlen, at, key, "server_name: 1 to 255 bytes");
				memcpy(s->server_name, v, strlen(v) + 1);
			} else if (!strcmp(f, "endpoint")) {
				if ((strncmp(v, "http://", 7) && strncmp(v, "https://", 8)) ||
				    strlen(v) >= sizeof(s->endpoint) || !endpoint_ok(v))
					return fail(w->err, w->errlen, at, key,
						    "endpoint: expected an http:// or https:// URL with a host (and a port "
						    "1-65535)");
				memcpy(s->endpoint, v, strlen(v) + 1);
				addressed = true;
			} else if (!strcmp(f, "spool_max_bytes")) {
				if (crgw_size_parse(v, &s->spool_max_bytes) || s->spool_max_bytes < 4096 ||
				    s->spool_max_bytes > (UINT64_C(1) << 40))
					return fail(w->err, w->errlen, at, key,
						    "spool_max_bytes: a size from 4K to 1T");
			} else if (!strcmp(f, "batch_max")) {
				uint64_t n;

				if (parse_decimal(v, 10000, &n) || n < 1)
					return fail(w->err, w->errlen, at, key, "batch_max: 1 to 10000");
				s->batch_max = (unsigned)n;
			} else {
				return fail(
				    w->err, w->errlen, at, key,
				    "unknown key (type, transport, address, format, facility, ca_file, server_name, "
				    "endpoint, spool_max_bytes, batch_max)");
			}
		}
		/* What the entry lacks is no key's fault: the error points at the sink's name. */
		node_where(w, kn ? kn : node, at, sizeof(at));
		if (!typed)
			return fail(w->err, w->errlen, at, key, "type: is required (syslog or otlp)");
		if (!addressed || (s->type == CRGW_SINK_SYSLOG && !s->host[0]) ||
		    (s->type == CRGW_SINK_OTLP && !s->endpoint[0]))
			return fail(w->err, w->errlen, at, key,
				    s->type == CRGW_SINK_SYSLOG ? "address: is required" : "endpoint: is required");
		w->cfg->nsinks++;
	}
	return 0;
}

/*
 * A crgw.yaml is a few KiB. The cap bounds what a reload, which runs on the main thread, reads and parses;
 * libyaml keeps every node of a document in memory (a 4 MiB list took 330 MB).
 */
#define CONFIG_MAX_BYTES (1u << 20)

/* Line and column of a byte offset: libyaml's reader errors carry only the offset. */
static void offset_mark(const unsigned char *buf, size_t len, size_t offset, yaml_mark_t *mark)
{
	memset(mark, 0, sizeof(*mark));
	for (size_t i = 0; i < offset && i < len; i++) {
		if (buf[i] == '\n') {
			mark->line++;
			mark->column = 0;
		} else {
			mark->column++;
		}
	}
}

static int parser_error(const char *path, const yaml_parser_t *parser, const unsigned char *buf, size_t len,
			char *err, size_t errlen)
{
	yaml_mark_t m = parser->problem_mark;

	if (parser->error == YAML_MEMORY_ERROR) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	if (parser->error == YAML_READER_ERROR)
		offset_mark(buf, len, parser->problem_offset, &m);
	snprintf(err, errlen, "%s:%lu:%lu: %s%s%s", path, (unsigned long)m.line + 1, (unsigned long)m.column + 1,
		 parser->context ? parser->context : "", parser->context ? ": " : "",
		 parser->problem ? parser->problem : "invalid YAML");
	return -EINVAL;
}

/*
 * A pass over the events before the document is built, refusing what the walk below could not see or
 * would be slow on: tags (`!!int "5"` would read as a string the walk takes at its word; the policy
 * compiler refuses them too), anchors and aliases (libyaml resolves aliases in quadratic time: 80,000 of them took
 * over 20 s; the policy compiler refuses them too), a second document (yaml_parser_load() returns only the
 * first, so the rest would be ignored), and NUL in a scalar (a "\0" escape would cut a key or a value short
 * where it is read as a C string).
 */
static int check_events(const char *path, const unsigned char *buf, size_t len, char *err, size_t errlen)
{
	yaml_parser_t parser;
	unsigned documents = 0;
	bool done = false;
	int ret = 0;

	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, buf, len);
	while (!done && !ret) {
		yaml_event_t ev;
		const char *why = NULL;

		if (!yaml_parser_parse(&parser, &ev)) {
			ret = parser_error(path, &parser, buf, len, err, errlen);
			break;
		}
		switch (ev.type) {
		case YAML_ALIAS_EVENT:
			why = "YAML aliases are not accepted";
			break;
		case YAML_SCALAR_EVENT:
			if (ev.data.scalar.anchor)
				why = "YAML anchors are not accepted";
			else if (ev.data.scalar.tag)
				why = "YAML tags are not accepted";
			else if (memchr(ev.data.scalar.value, '\0', ev.data.scalar.length))
				why = "NUL character in a string";
			break;
		case YAML_SEQUENCE_START_EVENT:
			why = ev.data.sequence_start.anchor ? "YAML anchors are not accepted"
			      : ev.data.sequence_start.tag  ? "YAML tags are not accepted"
							    : NULL;
			break;
		case YAML_MAPPING_START_EVENT:
			why = ev.data.mapping_start.anchor ? "YAML anchors are not accepted"
			      : ev.data.mapping_start.tag  ? "YAML tags are not accepted"
							   : NULL;
			break;
		case YAML_DOCUMENT_START_EVENT:
			why = ++documents > 1 ? "more than one YAML document in the file" : NULL;
			break;
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		default:
			break;
		}
		if (why) {
			snprintf(err, errlen, "%s:%lu:%lu: %s", path, (unsigned long)ev.start_mark.line + 1,
				 (unsigned long)ev.start_mark.column + 1, why);
			ret = -EINVAL;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	return ret;
}

/*
 * Reads the whole file into a new buffer (the caller frees it). O_NONBLOCK so that a FIFO given as
 * --config cannot block the open; anything but a regular file is then refused before a read.
 */
static int read_config(const char *path, unsigned char **out, size_t *outlen, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	unsigned char *buf = NULL;
	size_t len = 0;
	struct stat st;
	int ret = 0;

	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		ret = -EINVAL;
		goto out;
	}
	buf = malloc(CONFIG_MAX_BYTES + 1);
	if (!buf) {
		ret = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	/* Read one byte past the cap rather than trust st_size: the file may grow while it is read. */
	while (len <= CONFIG_MAX_BYTES) {
		ssize_t n = read(fd, buf + len, CONFIG_MAX_BYTES + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > CONFIG_MAX_BYTES) {
		snprintf(err, errlen, "%s: larger than 1 MiB", path);
		ret = -EFBIG;
		goto out;
	}
	*out = buf;
	*outlen = len;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return ret;
}

int crgw_config_load_file(struct crgw_config *cfg, const char *path, char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	struct walk w = { cfg, path, err, errlen, &doc, 0, 0 };
	unsigned char *buf = NULL;
	size_t len = 0;
	int ret;

	ret = read_config(path, &buf, &len, err, errlen);
	if (ret)
		return ret;
	ret = check_events(path, buf, len, err, errlen);
	if (ret) {
		free(buf);
		return ret;
	}
	if (!yaml_parser_initialize(&parser)) {
		free(buf);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, buf, len);
	if (!yaml_parser_load(&parser, &doc)) {
		ret = parser_error(path, &parser, buf, len, err, errlen);
		yaml_parser_delete(&parser);
		free(buf);
		return ret;
	}
	/* Past the last slot a file's errors in crgw_config_finish() name the key without a line. */
	if (cfg->nfiles < CRGW_CONFIG_FILES_MAX && strlen(path) < sizeof(cfg->files[0])) {
		memcpy(cfg->files[cfg->nfiles], path, strlen(path) + 1);
		w.findex = ++cfg->nfiles;
	}
	root = yaml_document_get_root_node(&doc);
	if (!root) {
		ret = 0; /* an empty file keeps every default */
	} else if (root->type != YAML_MAPPING_NODE) {
		char where[4200];

		node_where(&w, root, where, sizeof(where));
		ret = fail(err, errlen, where, "(root)", "expected a mapping");
	} else {
		ret = walk_node(&w, root, "", 0);
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	free(buf);
	return ret;
}

/* "FILE:LINE:COLUMN" of a value a file gave; NULL for a default or a flag (the message names the key alone). */
static const char *origin_where(const struct crgw_config *cfg, const struct crgw_config_origin *o, char *buf,
				size_t size)
{
	if (!o->file || o->file > cfg->nfiles)
		return NULL;
	snprintf(buf, size, "%s:%u:%u", cfg->files[o->file - 1], o->line, o->column);
	return buf;
}

static const char *key_where(const struct crgw_config *cfg, const char *key, char *buf, size_t size)
{
	const struct key *k = find_key(key);

	return k ? origin_where(cfg, &cfg->origin[k - keys], buf, size) : NULL;
}

/*
 * The lexical form of an absolute path: "//" and "/./" collapse and a trailing "/" goes, so that
 * "/var/lib//crgw/." and "/var/lib/crgw" compare equal. Lexical because the directories need not exist
 * yet; ".." is refused rather than resolved, since through a symbolic link it would not be lexical.
 */
static int path_normal(const char *in, char *out, size_t size)
{
	size_t n = 0;

	if (in[0] != '/' || size < 2)
		return -EINVAL;
	for (const char *p = in; *p;) {
		size_t len;

		while (*p == '/')
			p++;
		len = strcspn(p, "/");
		if (len == 0 || (len == 1 && p[0] == '.')) {
			p += len;
			continue;
		}
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return -EINVAL;
		if (n + 1 + len >= size)
			return -ENAMETOOLONG;
		out[n++] = '/';
		memcpy(out + n, p, len);
		n += len;
		p += len;
	}
	if (n == 0)
		out[n++] = '/';
	out[n] = '\0';
	return 0;
}

/* `inner` is `outer` or lies beneath it; both normal. */
static bool path_within(const char *inner, const char *outer)
{
	size_t n = strlen(outer);

	if (n == 1)
		return true; /* "/" */
	return !strncmp(inner, outer, n) && (inner[n] == '\0' || inner[n] == '/');
}

/*
 * Directories the gateway empties or moves away must not hold each other: the cache owns everything
 * beneath cache.dir (it empties its tmp/ at open), start-up moves DATA_DIR/sandboxes and empties
 * DATA_DIR/trash, sinks own DATA_DIR/spool, and start-up reads every entry of state_dir as a holder's file.
 * The policy store's default, DATA_DIR/policies, lies in data_dir beside those, which is fine.
 */
static int check_dirs(struct crgw_config *cfg, char *err, size_t errlen)
{
	static const char *const owned[] = { "sandboxes", "trash", "spool" };
	static const char *const names[] = { "data_dir", "state_dir", "cache.dir", "policy_store.dir" };
	char norm[4][4096], at[4200];
	const char *dirs[4] = { cfg->data_dir, cfg->state_dir, cfg->cache_dir, cfg->policy_store_dir };

	for (int i = 0; i < 4; i++)
		if (path_normal(dirs[i], norm[i], sizeof(norm[i])))
			return fail(err, errlen, key_where(cfg, names[i], at, sizeof(at)), names[i],
				    "must be an absolute path without '..'");
	/* cache.dir (2) against data_dir (0) and state_dir (1); policy_store.dir (3) against those and the cache. */
	for (int i = 2; i < 4; i++) {
		if (i == 3 || cfg->cache_enabled) {
			for (int j = 0; j < 4; j++) {
				char why[160];

				if (j == i || (j == 2 && !cfg->cache_enabled) || (i == 2 && j == 3))
					continue;
				if (!strcmp(norm[i], norm[j]))
					snprintf(why, sizeof(why), "must differ from %s", names[j]);
				else if (j != 0 && path_within(norm[i], norm[j]))
					snprintf(why, sizeof(why), "must not lie inside %s", names[j]);
				else if (path_within(norm[j], norm[i]))
					snprintf(why, sizeof(why), "must not hold %s", names[j]);
				else
					continue;
				return fail(err, errlen, key_where(cfg, names[i], at, sizeof(at)), names[i], why);
			}
		}
		for (size_t j = 0; j < sizeof(owned) / sizeof(owned[0]); j++) {
			char sub[4200], why[160];

			snprintf(sub, sizeof(sub), "%s/%s", strcmp(norm[0], "/") ? norm[0] : "", owned[j]);
			if ((i == 3 || cfg->cache_enabled) && path_within(norm[i], sub)) {
				snprintf(why, sizeof(why), "must not lie in data_dir's %s/ (the gateway empties it)",
					 owned[j]);
				return fail(err, errlen, key_where(cfg, names[i], at, sizeof(at)), names[i], why);
			}
		}
	}
	return 0;
}

static bool in_net(struct in_addr a, uint32_t net, unsigned prefix)
{
	uint32_t mask = prefix ? ~((UINT32_C(1) << (32 - prefix)) - 1) : 0;

	return (ntohl(a.s_addr) & mask) == (net & mask);
}

/*
 * Addresses that cannot be what the key means: a resolver at 0.0.0.0, a broadcast, a multicast or a
 * reserved address, or inside the sandbox pool (a sandbox's address would answer every sandbox's
 * queries); a pool in loopback, "this network", multicast or reserved space.
 */
static int check_addresses(const struct crgw_config *cfg, char *err, size_t errlen)
{
	static const struct {
		uint32_t net;
		unsigned prefix;
		const char *why;
	} bad[] = {
		{ 0x00000000, 8, "is in 0.0.0.0/8 (\"this network\")" },
		{ 0xe0000000, 4, "is a multicast address (224.0.0.0/4)" },
		{ 0xf0000000, 4, "is reserved or the broadcast address (240.0.0.0/4)" },
	};
	char at[4200], why[160];

	/* A pool is /8 or longer, so its first address tells which of these /8 and /4 ranges holds it. */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (in_net(cfg->pool, bad[i].net, bad[i].prefix))
			return fail(err, errlen, key_where(cfg, "pool", at, sizeof(at)), "pool", bad[i].why);
	if (in_net(cfg->pool, 0x7f000000, 8))
		return fail(err, errlen, key_where(cfg, "pool", at, sizeof(at)), "pool",
			    "is in loopback (127.0.0.0/8)");
	for (size_t u = 0; u < cfg->nupstream; u++) {
		struct in_addr a = ((const struct sockaddr_in *)&cfg->upstream[u].addr)->sin_addr;
		const char *reason = NULL;

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]) && !reason; i++)
			if (in_net(a, bad[i].net, bad[i].prefix))
				reason = bad[i].why;
		if (!reason && in_net(a, ntohl(cfg->pool.s_addr), cfg->pool_prefix))
			reason = "is inside the sandbox pool: a sandbox's address would be every sandbox's resolver";
		if (reason) {
			snprintf(why, sizeof(why), "%s %s", cfg->upstream[u].text, reason);
			return fail(err, errlen, key_where(cfg, "dns.upstream", at, sizeof(at)), "dns.upstream", why);
		}
	}
	return 0;
}

int crgw_config_finish(struct crgw_config *cfg, char *err, size_t errlen)
{
	char at[4200];
	uint32_t mask;
	long cores;
	int ret;

	if (cfg->pool_prefix > 28 || cfg->pool_prefix < 8)
		return fail(err, errlen, key_where(cfg, "pool", at, sizeof(at)), "pool",
			    "prefix must be between /8 and /28 (one /30 per sandbox)");
	mask = htonl(~((1u << (32 - cfg->pool_prefix)) - 1));
	if ((cfg->pool.s_addr & ~mask) != 0)
		return fail(err, errlen, key_where(cfg, "pool", at, sizeof(at)), "pool", "has host bits set");
	ret = check_addresses(cfg, err, errlen);
	if (ret)
		return ret;
	if (cfg->nupstream == 0)
		return fail(err, errlen, key_where(cfg, "dns.upstream", at, sizeof(at)), "dns.upstream",
			    "no upstream DNS server configured (the gateway never uses the host's resolver)");
	if (cfg->dns_ttl_min > cfg->dns_ttl_max)
		return fail(err, errlen, key_where(cfg, "dns.ttl_min", at, sizeof(at)), "dns.ttl_min",
			    "is larger than dns.ttl_max");
	if (cfg->transparent_http_port == cfg->transparent_tcp_port)
		return fail(err, errlen, key_where(cfg, "transparent.http_port", at, sizeof(at)),
			    "transparent.http_port",
			    "must differ from transparent.tcp_port");
	for (const char *p = cfg->nft_table; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= '0' && *p <= '9') && *p != '_')
			return fail(err, errlen, key_where(cfg, "nftables.table", at, sizeof(at)), "nftables.table",
				    "use lowercase letters, digits and _");
	/* Names are prefix + slot number, so a prefix ending in a digit would make them ambiguous. */
	for (const char *p = cfg->iface_prefix; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= '0' && *p <= '9') && *p != '-')
			return fail(err, errlen, key_where(cfg, "interfaces.prefix", at, sizeof(at)),
				    "interfaces.prefix",
				    "use lowercase letters, digits and -");
	if (cfg->iface_prefix[0] < 'a' || cfg->iface_prefix[0] > 'z' ||
	    (cfg->iface_prefix[strlen(cfg->iface_prefix) - 1] >= '0' &&
	     cfg->iface_prefix[strlen(cfg->iface_prefix) - 1] <= '9'))
		return fail(err, errlen, key_where(cfg, "interfaces.prefix", at, sizeof(at)), "interfaces.prefix",
			    "must start with a letter and not end in a digit");
	if (strlen(cfg->iface_prefix) > 6)
		return fail(err, errlen, key_where(cfg, "interfaces.prefix", at, sizeof(at)), "interfaces.prefix",
			    "at most 6 characters (names hold a slot number)");
	if (cfg->limits_pids && cfg->limits_pids < 16)
		return fail(err, errlen, key_where(cfg, "limits.pids", at, sizeof(at)), "limits.pids",
			    "must be 0 (no limit) or at least 16");
	if (!cfg->policy_store_dir[0] && snprintf(cfg->policy_store_dir, sizeof(cfg->policy_store_dir), "%s/policies",
						  cfg->data_dir) >= (int)sizeof(cfg->policy_store_dir))
		return fail(err, errlen, key_where(cfg, "data_dir", at, sizeof(at)), "data_dir",
			    "too long to hold policies/");
	/* The gateway's working directory is whatever started it: a relative path would name another file. */
	{
		const struct {
			const char *key, *path;
			bool optional; /* "" means unset (mediation.ca_file: the system's CA store) */
		} paths[] = {
			{ "control", cfg->control_path, false }, { "audit.path", cfg->audit_path, false },
			{ "mediation.ca_file", cfg->mediation_ca_file, true }, { "data_dir", cfg->data_dir, false },
			{ "cache.dir", cfg->cache_dir, false }, { "policy_store.dir", cfg->policy_store_dir, false },
		};

		for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
			if (paths[i].path[0] != '/' && (paths[i].path[0] || !paths[i].optional))
				return fail(err, errlen, key_where(cfg, paths[i].key, at, sizeof(at)), paths[i].key,
					    "must be an absolute path");
	}
	ret = check_dirs(cfg, err, errlen);
	if (ret)
		return ret;
	if (cfg->cache_offline && !cfg->cache_enabled)
		return fail(err, errlen, key_where(cfg, "cache.offline", at, sizeof(at)), "cache.offline",
			    "needs cache.enabled: true (there is nothing to serve)");
	for (const char *p = cfg->limits_cgroup; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= '0' && *p <= '9') && *p != '_' && *p != '-')
			return fail(err, errlen, key_where(cfg, "limits.cgroup", at, sizeof(at)), "limits.cgroup",
				    "use lowercase letters, digits, _ and -");
	for (size_t i = 0; i < cfg->ngit_credentials + cfg->nregistry_credentials; i++) {
		bool git = i < cfg->ngit_credentials;
		const struct crgw_git_credential *c =
			git ? &cfg->git_credentials[i] : &cfg->registry_credentials[i - cfg->ngit_credentials];
		bool found = false;

		for (size_t j = 0; j < cfg->nsecrets && !found; j++)
			found = strcmp(cfg->secrets[j].id, c->secret) == 0;
		if (!found) {
			char key[300];

			snprintf(key, sizeof(key), "%s.credentials.%s", git ? "git" : "registries", c->host);
			const struct crgw_config_origin *o =
				git ? &cfg->git_origin[i] : &cfg->registry_origin[i - cfg->ngit_credentials];

			return fail(err, errlen, origin_where(cfg, o, at, sizeof(at)), key,
				    "names a secret that secrets: does not define");
		}
	}
	if (cfg->workers == 0) {
		cores = sysconf(_SC_NPROCESSORS_ONLN);
		cfg->workers = cores > 0 ? (unsigned)cores : 1;
		if (cfg->workers > 64)
			cfg->workers = 64;
	}
	return 0;
}

/* ---- reload -------------------------------------------------------------------------------------- */

/* What a reload may change while sandboxes and tunnels run: limits, timeouts, upstreams, refusals. */
static const char *const live_keys[] = {
    "dns.upstream",
    "dns.ttl_min",
    "dns.ttl_max",
    "dns.negative_ttl",
    "dns.rate_limit",
    "dns.binding_grace",
    "blocked_ranges",
    "proxy.max_tunnels",
    "proxy.max_tunnels_per_sandbox",
    "proxy.idle_timeout",
    "proxy.max_connection_seconds",
    "log_level",
    "mediation.max_connections",
    "mediation.max_connections_per_sandbox",
    "mediation.idle_timeout",
    "cache.metadata_ttl_seconds",
};

static bool is_live(const char *path)
{
	for (size_t i = 0; i < sizeof(live_keys) / sizeof(live_keys[0]); i++)
		if (!strcmp(path, live_keys[i]))
			return true;
	return false;
}

/* The bytes a scalar key's value takes in the structure. */
static size_t scalar_size(const struct key *k)
{
	switch (k->type) {
	case K_BOOL:
	case K_RCODE:
		return sizeof(bool);
	case K_LEVEL:
	case K_MODE:
		return sizeof(unsigned);
	case K_ENFORCEMENT:
		return sizeof(enum crgw_enforcement);
	default:
		return k->size;
	}
}

static void note(char *list, size_t size, const char *key)
{
	size_t used = strlen(list);

	snprintf(list + used, size - used, "%s%s", used ? "," : "", key);
}

static bool upstreams_differ(const struct crgw_config *a, const struct crgw_config *b)
{
	if (a->nupstream != b->nupstream)
		return true;
	for (size_t i = 0; i < a->nupstream; i++)
		if (strcmp(a->upstream[i].text, b->upstream[i].text))
			return true;
	return false;
}

bool crgw_config_blocked_differ(const struct crgw_config *a, const struct crgw_config *b)
{
	if (a->nblocked != b->nblocked)
		return true;
	for (size_t i = 0; i < a->nblocked; i++)
		if (strcmp(a->blocked[i], b->blocked[i]))
			return true;
	return false;
}

void crgw_config_reload(struct crgw_config *live, const struct crgw_config *next, struct crgw_config_change *out)
{
	unsigned char *dst = (unsigned char *)live;
	const unsigned char *src = (const unsigned char *)next;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const struct key *k = &keys[i];
		bool differ;

		switch (k->type) {
		case K_UPSTREAM:
			differ = upstreams_differ(live, next);
			break;
		case K_BLOCKED:
			differ = crgw_config_blocked_differ(live, next);
			break;
		case K_POOL:
			differ = live->pool.s_addr != next->pool.s_addr || live->pool_prefix != next->pool_prefix;
			break;
		case K_STRING:
			differ = strcmp((const char *)dst + k->offset, (const char *)src + k->offset) != 0;
			break;
		default:
			differ = memcmp(dst + k->offset, src + k->offset, scalar_size(k)) != 0;
			break;
		}
		if (!differ)
			continue;
		if (!is_live(k->path)) {
			note(out->kept, sizeof(out->kept), k->path);
			continue;
		}
		note(out->applied, sizeof(out->applied), k->path);
		if (k->type == K_UPSTREAM) {
			memcpy(live->upstream, next->upstream, sizeof(live->upstream));
			live->nupstream = next->nupstream;
			out->upstream = true;
		} else if (k->type == K_BLOCKED) {
			memcpy(live->blocked, next->blocked, sizeof(live->blocked));
			live->nblocked = next->nblocked;
			out->blocked = true;
		} else if (scalar_size(k) == sizeof(unsigned)) {
			unsigned v;

			memcpy(&v, src + k->offset, sizeof(v));
			atomic_store((_Atomic unsigned *)(dst + k->offset), v);
		}
	}
	if (live->nsinks != next->nsinks || memcmp(live->sinks, next->sinks, sizeof(live->sinks)))
		note(out->kept, sizeof(out->kept), "audit.sinks");
	/*
	 * Requests read secrets and credentials from the vault, which the caller has already loaded with these
	 * (crgw_vault_load): the copies here only record what runs, for the next comparison.
	 */
	if (live->nsecrets != next->nsecrets || memcmp(live->secrets, next->secrets, sizeof(live->secrets))) {
		note(out->applied, sizeof(out->applied), "secrets");
		memcpy(live->secrets, next->secrets, sizeof(live->secrets));
		live->nsecrets = next->nsecrets;
		out->secrets = true;
	}
	if (live->ngit_credentials != next->ngit_credentials ||
	    memcmp(live->git_credentials, next->git_credentials, sizeof(live->git_credentials))) {
		note(out->applied, sizeof(out->applied), "git.credentials");
		memcpy(live->git_credentials, next->git_credentials, sizeof(live->git_credentials));
		live->ngit_credentials = next->ngit_credentials;
		out->secrets = true;
	}
	if (live->nregistry_credentials != next->nregistry_credentials ||
	    memcmp(live->registry_credentials, next->registry_credentials, sizeof(live->registry_credentials))) {
		note(out->applied, sizeof(out->applied), "registries.credentials");
		memcpy(live->registry_credentials, next->registry_credentials, sizeof(live->registry_credentials));
		live->nregistry_credentials = next->nregistry_credentials;
		out->secrets = true;
	}
}

bool crgw_config_secrets_differ(const struct crgw_config *a, const struct crgw_config *b)
{
	return a->nsecrets != b->nsecrets || memcmp(a->secrets, b->secrets, sizeof(a->secrets)) ||
	       a->ngit_credentials != b->ngit_credentials ||
	       memcmp(a->git_credentials, b->git_credentials, sizeof(a->git_credentials)) ||
	       a->nregistry_credentials != b->nregistry_credentials ||
	       memcmp(a->registry_credentials, b->registry_credentials, sizeof(a->registry_credentials));
}

/* A CA file upstreams are verified with: a regular file of at most 16 MiB holding a PEM certificate. */
static int ca_file_check(const char *key, const char *path, char *err, size_t errlen)
{
	struct stat st;
	unsigned certs = 0;
	X509 *cert;
	FILE *f;
	BIO *bio;
	int fd;

	if (!path[0])
		return 0;
	/* Opened without blocking, then looked at: a FIFO would hold the start until a writer came. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st)) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		snprintf(err, errlen, "%s: %s: %s", key, path, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > 16 << 20) {
		close(fd);
		snprintf(err, errlen, "%s: %s: %s", key, path,
			 S_ISREG(st.st_mode) ? "larger than 16 MiB" : "not a regular file");
		return -EINVAL;
	}
	f = fdopen(fd, "r");
	bio = f ? BIO_new_fp(f, BIO_CLOSE) : NULL;
	if (!bio) {
		if (f)
			fclose(f);
		else
			close(fd);
		ERR_clear_error();
		snprintf(err, errlen, "%s: %s: out of memory", key, path);
		return -ENOMEM;
	}
	while ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		certs++;
		X509_free(cert);
	}
	ERR_clear_error();
	BIO_free(bio);
	if (!certs) {
		snprintf(err, errlen, "%s: %s: no PEM certificate in it", key, path);
		return -EINVAL;
	}
	return 0;
}

int crgw_config_check_files(const struct crgw_config *cfg, char *err, size_t errlen)
{
	int rc = ca_file_check("mediation.ca_file", cfg->mediation_ca_file, err, errlen);

	for (size_t i = 0; !rc && i < cfg->nsinks; i++) {
		char key[128];

		snprintf(key, sizeof(key), "audit.sinks.%s.ca_file", cfg->sinks[i].name);
		rc = ca_file_check(key, cfg->sinks[i].ca_file, err, errlen);
	}
	return rc;
}
