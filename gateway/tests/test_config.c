/* SPDX-License-Identifier: Apache-2.0 */
/* crgw.yaml and flag parsing: every key's bounds, the error format, defaults and overrides. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"

struct yaml_case {
	const char *name;
	const char *yaml;
	const char *error; /* substring of the error, or NULL when the file must load and finish */
};

static const struct yaml_case cases[] = {
	{ "empty file keeps defaults", "", NULL },
	{ "full example", "control: /run/x.sock\naudit:\n  path: /var/log/a.log\n  max_bytes: 1048576\n  keep: 3\n"
			  "pool: 10.210.0.0/20\nworkers: 4\ndns:\n  upstream: [203.0.113.53, \"198.51.100.7:5353\"]\n"
			  "  ttl_min: 10\n  ttl_max: 60\n  denied_rcode: refused\n  rate_limit: 50\n"
			  "blocked_ranges: [10.0.0.0/8, 172.16.0.0/12]\nnftables:\n  table: crgw_x\n"
			  "interfaces:\n  prefix: sbx\nlog_level: debug\n", NULL },
	{ "unknown key", "dns:\n  upstreams: [203.0.113.53]\n", ":2:14: dns.upstreams: unknown key" },
	{ "unknown section", "proxy:\n  port: 3128\n", "proxy.port: unknown key" },
	{ "negative number", "workers: -1\n", "workers: expected a non-negative integer" },
	{ "too many workers", "workers: 1000\n", "workers: must be between 0 and 256" },
	{ "number with junk", "dns:\n  ttl_max: 60s\n", "dns.ttl_max: expected a non-negative integer" },
	{ "bad pool", "pool: 10.200.0.0\n", "pool: expected an IPv4 CIDR" },
	{ "pool text", "pool: everything\n", "pool: expected an IPv4 CIDR" },
	{ "bad upstream", "dns:\n  upstream: [resolver.example]\n", "dns.upstream: expected an IPv4 address" },
	{ "upstream port 0", "dns:\n  upstream: [\"203.0.113.53:0\"]\n", "dns.upstream: expected an IPv4 address" },
	{ "upstream port too big", "dns:\n  upstream: [\"203.0.113.53:70000\"]\n", "expected an IPv4 address" },
	{ "list for a scalar key", "workers: [1, 2]\n", "workers: expected a single value, not a list" },
	{ "mapping for a list item", "dns:\n  upstream: [{a: b}]\n", "dns.upstream: list items must be scalars" },
	{ "bad rcode", "dns:\n  denied_rcode: servfail\n", "expected nxdomain or refused" },
	{ "enforcement ebpf", "enforcement: ebpf\n", NULL },
	{ "bad enforcement", "enforcement: iptables\n", "enforcement: expected nftables, ebpf or both" },
	{ "enforcement as a list", "enforcement: [nftables, ebpf]\n", "enforcement: expected a single value" },
	{ "bad bool", "audit:\n  allow_loss: yes please\n", "audit.allow_loss: expected true or false" },
	{ "bad level", "log_level: loud\n", "log_level: expected debug, info, warn or error" },
	{ "root is a list", "- a\n- b\n", "(root): expected a mapping" },
	{ "invalid yaml", "dns: [\n", "test.yaml:" },
	{ "bad blocked range", "blocked_ranges: [10.0.0.0/33]\n", "blocked_ranges: expected an IPv4 CIDR" },
	{ "blocked range with host bits", "blocked_ranges: [10.0.0.1/8]\n", "blocked_ranges: has host bits set" },
	{ "blocked /0 with host bits", "blocked_ranges: [1.0.0.0/0]\n", "blocked_ranges: has host bits set" },
	{ "prefix ending in a digit", "interfaces:\n  prefix: sb1\n", "must start with a letter and not end in a digit" },
	{ "prefix with a dash", "interfaces:\n  prefix: sb-\n", NULL },
	{ "ttl min above max", "dns:\n  ttl_min: 100\n  ttl_max: 50\n", "dns.ttl_min: is larger than dns.ttl_max" },
	{ "pool too small", "pool: 10.200.0.0/30\n", "pool: prefix must be between /8 and /28" },
	{ "pool host bits", "pool: 10.200.0.1/16\n", "pool: has host bits set" },
	{ "table name", "nftables:\n  table: \"crgw; drop\"\n", "nftables.table: use lowercase letters" },
	{ "prefix too long", "interfaces:\n  prefix: sandbox\n", "interfaces.prefix: at most 6 characters" },
	{ "prefix longer than the buffer", "interfaces:\n  prefix: sandboxes\n", "interfaces.prefix: empty or too long" },
	{ "same transparent ports", "transparent:\n  http_port: 9000\n  tcp_port: 9000\n", "must differ" },
	{ "string too long", "nftables:\n  table: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", "empty or too long" },
	{ "deep nesting", "a:\n b:\n  c:\n   d:\n    e:\n     f: 1\n", "nested too deeply" },
	{ "non-scalar key", "? [a]\n: 1\n", "keys must be plain strings" },
	{ "octal mode", "control_mode: 0999\n", "control_mode: expected an octal file mode" },
	{ "limits", "limits:\n  memory: 512MiB\n  pids: 256\n  cpus: 1.5\n  optional: true\n  cgroup: crgw_x\n", NULL },
	{ "memory with junk", "limits:\n  memory: lots\n", "limits.memory: expected a size such as 4GiB" },
	{ "memory too small", "limits:\n  memory: 1M\n", "limits.memory: must be between 16 MiB" },
	{ "memory overflow", "limits:\n  memory: 99999999999999999T\n", "limits.memory: expected a size" },
	{ "memory unit unknown", "limits:\n  memory: 4Q\n", "limits.memory: expected a size" },
	{ "cpus negative", "limits:\n  cpus: -1\n", "limits.cpus: expected a CPU count" },
	{ "cpus four decimals", "limits:\n  cpus: 0.1234\n", "limits.cpus: expected a CPU count" },
	{ "cpus too many", "limits:\n  cpus: 5000\n", "limits.cpus: expected a CPU count" },
	{ "cpus too few", "limits:\n  cpus: 0.001\n", "limits.cpus: expected a CPU count" },
	{ "pids too few", "limits:\n  pids: 3\n", "limits.pids: must be 0 (no limit) or at least 16" },
	{ "no limits at all", "limits:\n  memory: 0\n  pids: 0\n  cpus: 0\n", NULL },
	{ "data dir relative", "data_dir: var/lib/crgw\n", "data_dir: must be an absolute path" },
	{ "cgroup name", "limits:\n  cgroup: \"../x\"\n", "limits.cgroup: use lowercase letters" },
	{ "testing ttl", "testing:\n  ttl_seconds: 3\n", NULL },
	{ "secrets and git credentials",
	  "secrets:\n  gh: { env: GH_TOKEN }\n  pw: { file: /etc/crgw/pw }\n"
	  "  api: { command: [/usr/bin/vault-get, api], refresh_seconds: 300 }\n"
	  "git:\n  credentials:\n    git.example.test: { secret: pw, scheme: basic, username: bot }\n"
	  "    Other.Example.Test.: { secret: gh, scheme: bearer }\n"
	  "registries:\n  credentials:\n    npm.example.test: { secret: gh, scheme: bearer }\n"
	  "    oci.example.test: { secret: pw, scheme: basic, username: puller }\n"
	  "mediation:\n  ca_file: /etc/crgw/ca.pem\n  max_connections: 100\n  max_connections_per_sandbox: 10\n"
	  "  idle_timeout: 30\n  push_hold_bytes: 32MiB\n", NULL },
	{ "secrets not a mapping", "secrets: [a]\n", "secrets: expected a mapping of secret ids to sources" },
	{ "secret id with capitals", "secrets:\n  Bad: { env: X }\n", "a secret id is [a-z0-9_.-]" },
	{ "secret without a source", "secrets:\n  a: { refresh_seconds: 3 }\n", "expected exactly one of env:, file: or command:" },
	{ "secret with two sources", "secrets:\n  a: { env: X, file: /x }\n", "expected exactly one of env:, file: or command:" },
	{ "secret file relative", "secrets:\n  a: { file: pw.txt }\n", "file: expected an absolute path" },
	{ "secret command relative", "secrets:\n  a: { command: [cat, /x] }\n", "the program must be an absolute path" },
	{ "secret command scalar", "secrets:\n  a: { command: /bin/cat }\n", "command: expected a list" },
	{ "secret refresh for a file", "secrets:\n  a: { file: /x, refresh_seconds: 5 }\n", "refresh_seconds applies to command: only" },
	{ "secret unknown key", "secrets:\n  a: { value: hunter2 }\n", "unknown key (expected env, file, command or refresh_seconds)" },
	{ "secret env name", "secrets:\n  a: { env: \"A B\" }\n", "env: expected a variable name" },
	{ "credential unknown secret", "secrets:\n  a: { env: X }\ngit:\n  credentials:\n    h.test: { secret: b, scheme: bearer }\n",
	  "git.credentials.h.test: names a secret that secrets: does not define" },
	{ "registry credential unknown secret",
	  "secrets:\n  a: { env: X }\nregistries:\n  credentials:\n    npm.test: { secret: b, scheme: bearer }\n",
	  "registries.credentials.npm.test: names a secret that secrets: does not define" },
	{ "registry credential twice",
	  "secrets:\n  a: { env: X }\nregistries:\n  credentials:\n    npm.test: { secret: a, scheme: bearer }\n"
	  "    NPM.test: { secret: a, scheme: bearer }\n",
	  "registries.credentials.npm.test: defined twice" },
	{ "registries unknown key", "registries:\n  npm: { x: 1 }\n", "registries.npm.x" },
	{ "credential bad scheme", "secrets:\n  a: { env: X }\ngit:\n  credentials:\n    h.test: { secret: a, scheme: digest }\n",
	  "scheme: expected basic or bearer" },
	{ "basic without username", "secrets:\n  a: { env: X }\ngit:\n  credentials:\n    h.test: { secret: a, scheme: basic }\n",
	  "username: is required for basic" },
	{ "bearer with username", "secrets:\n  a: { env: X }\ngit:\n  credentials:\n    h.test: { secret: a, scheme: bearer, username: u }\n",
	  "username: is required for basic, and only for basic" },
	{ "username with a colon", "secrets:\n  a: { env: X }\ngit:\n  credentials:\n    h.test: { secret: a, scheme: basic, username: \"a:b\" }\n",
	  "username: 1 to 127 bytes, no ':'" },
	{ "credential host is an address", "secrets:\n  a: { env: X }\ngit:\n  credentials:\n    10.0.0.1: { secret: a, scheme: bearer }\n",
	  "git.credentials" },
	{ "mediation unknown key", "mediation:\n  port: 9000\n", "mediation.port: unknown key" },
	{ "cache keys",
	  "cache:\n  enabled: true\n  dir: /srv/crgw-cache\n  max_bytes: 20GiB\n  offline: true\n"
	  "  verify_always: true\n  metadata_ttl_seconds: 60\n  max_metadata_bytes: 8MiB\n  max_artifact_bytes: 512M\n",
	  NULL },
	{ "cache disabled", "cache:\n  enabled: false\n", NULL },
	{ "cache enabled not a bool", "cache:\n  enabled: maybe\n", "cache.enabled: expected true or false" },
	{ "cache dir relative", "cache:\n  dir: var/cache/crgw\n", "cache.dir: must be an absolute path" },
	{ "cache dir is data_dir", "data_dir: /srv/crgw\ncache:\n  dir: /srv/crgw\n",
	  "cache.dir: must differ from data_dir and state_dir" },
	{ "cache dir is state_dir", "state_dir: /run/x\ncache:\n  dir: /run/x\n", "must differ from data_dir and state_dir" },
	{ "cache dir empty", "cache:\n  dir: \"\"\n", "cache.dir: empty or too long" },
	{ "cache max_bytes zero", "cache:\n  max_bytes: 0\n", "cache.max_bytes: must be between 16 MiB and 1 PiB" },
	{ "cache max_bytes too small", "cache:\n  max_bytes: 1M\n", "cache.max_bytes: must be between 16 MiB and 1 PiB" },
	{ "cache max_bytes too big", "cache:\n  max_bytes: 2048T\n", "cache.max_bytes: must be between 16 MiB and 1 PiB" },
	{ "cache max_bytes junk", "cache:\n  max_bytes: plenty\n", "cache.max_bytes: expected a size" },
	{ "cache max_bytes smallest", "cache:\n  max_bytes: 16MiB\n", NULL },
	{ "cache offline without cache", "cache:\n  enabled: false\n  offline: true\n",
	  "cache.offline: needs cache.enabled: true" },
	{ "cache ttl too long", "cache:\n  metadata_ttl_seconds: 86401\n",
	  "cache.metadata_ttl_seconds: must be between 0 and 86400" },
	{ "cache ttl zero", "cache:\n  metadata_ttl_seconds: 0\n", NULL },
	{ "cache metadata zero", "cache:\n  max_metadata_bytes: 0\n",
	  "cache.max_metadata_bytes: must be between 64 KiB and 1 GiB" },
	{ "cache metadata too big", "cache:\n  max_metadata_bytes: 2G\n", "must be between 64 KiB and 1 GiB" },
	{ "cache artifact too small", "cache:\n  max_artifact_bytes: 1K\n",
	  "cache.max_artifact_bytes: must be between 1 MiB and 1 PiB" },
	{ "cache unknown key", "cache:\n  size: 1G\n", "cache.size: unknown key" },
};

static const char *case_yaml(const char *name)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (!strcmp(cases[i].name, name))
			return cases[i].yaml;
	return "";
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

int main(void)
{
	char dir[] = "/tmp/crgw-test-config-XXXXXX", path[128], err[4400];
	struct crgw_config cfg;

	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/test.yaml", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct yaml_case *c = &cases[i];
		int rc;

		crgw_config_defaults(&cfg);
		err[0] = '\0';
		write_file(path, c->yaml);
		rc = crgw_config_load_file(&cfg, path, err, sizeof(err));
		if (rc == 0) {
			/* A file without upstream servers is fine; finishing needs one. */
			if (cfg.nupstream == 0)
				crgw_config_set(&cfg, "dns.upstream", "203.0.113.53", err, sizeof(err));
			rc = crgw_config_finish(&cfg, err, sizeof(err));
		}
		if (!c->error)
			tap_result(rc == 0, "%s loads (%s)", c->name, rc ? err : "ok");
		else
			tap_result(rc != 0 && strstr(err, c->error) != NULL, "%s is refused: want \"%s\", got \"%s\"",
				   c->name, c->error, err);
	}

	/* The full example's values arrive where they should. */
	crgw_config_defaults(&cfg);
	write_file(path, cases[1].yaml);
	crgw_config_load_file(&cfg, path, err, sizeof(err));
	crgw_config_finish(&cfg, err, sizeof(err));
	tap_result(cfg.nupstream == 2 && !strcmp(cfg.upstream[1].text, "198.51.100.7:5353"), "upstream list and port");
	tap_result(cfg.dns_refuse_denied && cfg.dns_ttl_max == 60 && cfg.dns_rate_limit == 50, "dns settings");
	tap_result(cfg.pool_prefix == 20 && cfg.workers == 4 && cfg.nblocked == 2, "pool, workers, blocked ranges");
	tap_result(cfg.audit_max_bytes == 1048576 && cfg.audit_keep == 3 && cfg.log_level == 0, "audit and log level");
	tap_result(cfg.enforcement == CRGW_ENFORCE_DEFAULT, "enforcement unset: the default (both where the guard loads)");
	for (unsigned i = 0; i < 3; i++) {
		static const char *const names[] = { "nftables", "ebpf", "both" };
		static const enum crgw_enforcement want[] = { CRGW_ENFORCE_NFTABLES, CRGW_ENFORCE_EBPF, CRGW_ENFORCE_BOTH };
		char yaml[64];

		crgw_config_defaults(&cfg);
		snprintf(yaml, sizeof(yaml), "enforcement: %s\n", names[i]);
		write_file(path, yaml);
		tap_result(crgw_config_load_file(&cfg, path, err, sizeof(err)) == 0 && cfg.enforcement == want[i],
			   "enforcement: %s", names[i]);
	}

	/* Secrets and credentials arrive as written, host names normalized; values are never in the file. */
	crgw_config_defaults(&cfg);
	write_file(path, case_yaml("secrets and git credentials"));
	crgw_config_load_file(&cfg, path, err, sizeof(err));
	crgw_config_set(&cfg, "dns.upstream", "203.0.113.53", err, sizeof(err));
	tap_result(crgw_config_finish(&cfg, err, sizeof(err)) == 0 && cfg.nsecrets == 3 &&
			   cfg.secrets[0].kind == CRGW_SECRET_ENV && !strcmp(cfg.secrets[0].env, "GH_TOKEN") &&
			   cfg.secrets[1].kind == CRGW_SECRET_FILE && !strcmp(cfg.secrets[1].path, "/etc/crgw/pw") &&
			   cfg.secrets[2].kind == CRGW_SECRET_COMMAND && cfg.secrets[2].argc == 2 &&
			   cfg.secrets[2].refresh_seconds == 300,
		   "three secrets: env, file, command with refresh (%s)", err);
	tap_result(cfg.ngit_credentials == 2 && !strcmp(cfg.git_credentials[0].host, "git.example.test") &&
			   cfg.git_credentials[0].basic && !strcmp(cfg.git_credentials[0].username, "bot") &&
			   !strcmp(cfg.git_credentials[1].host, "other.example.test") && !cfg.git_credentials[1].basic &&
			   cfg.nregistry_credentials == 2 && !strcmp(cfg.registry_credentials[0].host, "npm.example.test") &&
			   !cfg.registry_credentials[0].basic && cfg.registry_credentials[1].basic &&
			   !strcmp(cfg.registry_credentials[1].username, "puller"),
		   "git credentials: basic with a username, bearer; host names normalized");
	tap_result(!strcmp(cfg.mediation_ca_file, "/etc/crgw/ca.pem") && cfg.mediation_max_connections == 100 &&
			   cfg.mediation_max_connections_per_sandbox == 10 && cfg.mediation_idle_timeout == 30 &&
			   cfg.mediation_push_hold_bytes == (UINT64_C(32) << 20),
		   "mediation keys");

	/* The cache keys arrive where they should. */
	crgw_config_defaults(&cfg);
	write_file(path, case_yaml("cache keys"));
	crgw_config_load_file(&cfg, path, err, sizeof(err));
	tap_result(cfg.cache_enabled && !strcmp(cfg.cache_dir, "/srv/crgw-cache") &&
			   cfg.cache_max_bytes == (UINT64_C(20) << 30) && cfg.cache_offline && cfg.cache_verify_always &&
			   cfg.cache_metadata_ttl_seconds == 60 && cfg.cache_max_metadata_bytes == (UINT64_C(8) << 20) &&
			   cfg.cache_max_artifact_bytes == (UINT64_C(512) << 20),
		   "cache keys");
	tap_result(crgw_config_set(&cfg, "cache.enabled", "false", err, sizeof(err)) == 0 && !cfg.cache_enabled &&
			   crgw_config_set(&cfg, "cache.dir", "/tmp/c", err, sizeof(err)) == 0 &&
			   !strcmp(cfg.cache_dir, "/tmp/c"),
		   "--set cache.enabled=false, --set cache.dir=/tmp/c");

	/* Defaults. */
	crgw_config_defaults(&cfg);
	tap_result(cfg.cache_enabled && !strcmp(cfg.cache_dir, "/var/cache/crgw") &&
			   cfg.cache_max_bytes == (UINT64_C(10) << 30) && !cfg.cache_offline && !cfg.cache_verify_always &&
			   cfg.cache_metadata_ttl_seconds == 300 && cfg.cache_max_metadata_bytes == (UINT64_C(64) << 20) &&
			   cfg.cache_max_artifact_bytes == (UINT64_C(2) << 30),
		   "cache defaults: on, /var/cache/crgw, 10 GiB, online, trusted hits, 300 s, 64 MiB, 2 GiB");
	tap_result(cfg.nsecrets == 0 && cfg.ngit_credentials == 0 && !cfg.mediation_ca_file[0] &&
			   cfg.mediation_max_connections == 16384 && cfg.mediation_max_connections_per_sandbox == 256 &&
			   cfg.mediation_idle_timeout == 120 && cfg.mediation_push_hold_bytes == (UINT64_C(16) << 20),
		   "mediation defaults: no secrets, the system's CA store, 16384/256 connections, 120 s, 16 MiB");
	tap_result(!strcmp(cfg.control_path, "/run/crgw/control.sock") && cfg.control_mode == 0660,
		   "control socket default /run/crgw/control.sock mode 0660");
	tap_result(cfg.pool_prefix == 16 && cfg.pool.s_addr == inet_addr("10.200.0.0"), "pool default 10.200.0.0/16");
	tap_result(cfg.nupstream == 0, "no upstream DNS by default: never the host's resolver");
	tap_result(crgw_config_finish(&cfg, err, sizeof(err)) != 0 && strstr(err, "dns.upstream"),
		   "finishing without an upstream server is refused: %s", err);
	crgw_config_set(&cfg, "dns.upstream", "203.0.113.53", err, sizeof(err));
	tap_result(crgw_config_finish(&cfg, err, sizeof(err)) == 0 && cfg.workers >= 1,
		   "workers 0 becomes the core count (%u)", cfg.workers);

	/* The limit units and the defaults the issue names: 4 GiB, 4,096 processes, all CPUs. */
	crgw_config_defaults(&cfg);
	tap_result(cfg.limits_memory == (UINT64_C(4) << 30) && cfg.limits_pids == 4096 && cfg.limits_cpu_milli == 0 &&
			   !cfg.limits_optional && !strcmp(cfg.data_dir, "/var/lib/crgw"),
		   "limit defaults: 4 GiB, 4096 pids, all CPUs, not optional; data in /var/lib/crgw");
	{
		static const struct {
			const char *text;
			uint64_t bytes;
		} sizes[] = { { "512M", 512u << 20 }, { "512MiB", 512u << 20 }, { "2g", UINT64_C(2) << 30 },
			      { "1073741824", UINT64_C(1) << 30 }, { "64K", 64u << 10 }, { "3TB", UINT64_C(3) << 40 } };
		bool all = true;

		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			uint64_t b = 0;

			all &= crgw_size_parse(sizes[i].text, &b) == 0 && b == sizes[i].bytes;
		}
		uint64_t b;

		all &= crgw_size_parse("", &b) != 0 && crgw_size_parse("1.5G", &b) != 0 && crgw_size_parse("G", &b) != 0;
		tap_result(all, "sizes: M, MiB, g, bytes, K, TB; empty, fractions and bare units refused");
		uint32_t m = 0;

		all = crgw_cpus_parse("1.5", &m) == 0 && m == 1500 && crgw_cpus_parse("0.25", &m) == 0 && m == 250 &&
		      crgw_cpus_parse("2", &m) == 0 && m == 2000 && crgw_cpus_parse("1.", &m) != 0 &&
		      crgw_cpus_parse(".5", &m) != 0 && crgw_cpus_parse("1e3", &m) != 0;
		tap_result(all, "CPU counts: 1.5, 0.25, 2; '1.', '.5' and '1e3' refused");
	}

	/* Flags go through the same rows. */
	crgw_config_defaults(&cfg);
	tap_result(crgw_config_set(&cfg, "dns.ttl_max", "10", err, sizeof(err)) == 0 && cfg.dns_ttl_max == 10,
		   "--set dns.ttl_max=10");
	tap_result(crgw_config_set(&cfg, "nope", "1", err, sizeof(err)) != 0 && strstr(err, "nope: unknown key"),
		   "--set with an unknown key: %s", err);
	tap_result(crgw_config_set(&cfg, "workers", "", err, sizeof(err)) != 0, "an empty number is refused");
	for (int i = 0; i < CRGW_UPSTREAM_MAX; i++)
		crgw_config_set(&cfg, "dns.upstream", "203.0.113.53", err, sizeof(err));
	tap_result(crgw_config_set(&cfg, "dns.upstream", "203.0.113.54", err, sizeof(err)) != 0 &&
			   strstr(err, "at most 8"),
		   "a ninth upstream server is refused");
	tap_result(crgw_config_load_file(&cfg, "/nonexistent/crgw.yaml", err, sizeof(err)) != 0 &&
			   strstr(err, "No such file"),
		   "a missing file is an error: %s", err);

	unlink(path);
	rmdir(dir);
	return tap_done();
}
