/* SPDX-License-Identifier: Apache-2.0 */
/* crgw.yaml and flag parsing: every key's bounds, the error format, defaults and overrides. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "crgw/limits.h"
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
	{ "no limits at all", "limits:\n  memory: 0\n  pids: 0\n  cpus: 0\n  connection_rate: 0\n", NULL },
	{ "connection rate too high", "limits:\n  connection_rate: 1000001\n", "limits.connection_rate" },
	{ "connection rate negative", "limits:\n  connection_rate: -1\n", "limits.connection_rate" },
	{ "data dir relative", "data_dir: var/lib/crgw\n", "data_dir: must be an absolute path" },
	{ "cgroup name", "limits:\n  cgroup: \"../x\"\n", "limits.cgroup: use lowercase letters" },
	{ "testing ttl", "testing:\n  ttl_seconds: 3\n", NULL },
	{ "secrets and git credentials",
	  "secrets:\n  gh: { env: GH_TOKEN }\n  pw: { file: /etc/crgw/pw }\n"
	  "  api: { command: [/usr/bin/vault-get, api], refresh_seconds: 300 }\n"
	  "git:\n  credentials:\n    git.example.test: { secret: pw, scheme: basic, username: bot }\n"
	  "    Other.Example.Test.: { secret: gh, scheme: bearer }\n"
	  "registries:\n  credentials:\n    npm.example.test: { secret: gh, scheme: bearer }\n"
	  "    oci.example.test: { secret: pw, scheme: basic, username: puller, token_for: [Reg.Example.Test, r2.test] }\n"
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
	{ "token_for on a git credential",
	  "secrets:\n  a: { env: X }\ngit:\n  credentials:\n    h.test: { secret: a, scheme: bearer, token_for: [r.test] }\n",
	  "git.credentials.h.test: unknown key (expected secret, scheme, username)" },
	{ "token_for not a list",
	  "secrets:\n  a: { env: X }\nregistries:\n  credentials:\n    h.test: { secret: a, scheme: bearer, token_for: r.test }\n",
	  "registries.credentials.h.test.token_for: expected a list of registry host names" },
	{ "token_for a URL",
	  "secrets:\n  a: { env: X }\nregistries:\n  credentials:\n    h.test: { secret: a, scheme: bearer, token_for: [\"https://r.test\"] }\n",
	  "token_for: expected a registry host name such as registry.example.com" },
	{ "token_for an address",
	  "secrets:\n  a: { env: X }\nregistries:\n  credentials:\n    h.test: { secret: a, scheme: bearer, token_for: [10.0.0.1] }\n",
	  "registries.credentials.h.test.token_for" },
	{ "token_for too many",
	  "secrets:\n  a: { env: X }\nregistries:\n  credentials:\n    h.test: { secret: a, scheme: bearer, token_for: "
	  "[a1.t, a2.t, a3.t, a4.t, a5.t, a6.t, a7.t, a8.t, a9.t, b1.t, b2.t, b3.t, b4.t, b5.t, b6.t, b7.t, b8.t] }\n",
	  "too many registries (at most 16)" },
	{ "token_for too long together",
	  "secrets:\n  a: { env: X }\nregistries:\n  credentials:\n    h.test: { secret: a, scheme: bearer, token_for: ["
	  "a123456789012345678901234567890123456789012345678901234567.t, b123456789012345678901234567890123456789012345678901234567.t, "
	  "c123456789012345678901234567890123456789012345678901234567.t, d123456789012345678901234567890123456789012345678901234567.t, "
	  "e123456789012345678901234567890123456789012345678901234567.t, f123456789012345678901234567890123456789012345678901234567.t, "
	  "g123456789012345678901234567890123456789012345678901234567.t, h123456789012345678901234567890123456789012345678901234567.t, "
	  "i123456789012345678901234567890123456789012345678901234567.t] }\n",
	  "the names are too long together (511 bytes at most)" },
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
	  "cache.dir: must differ from data_dir" },
	{ "cache dir is state_dir", "state_dir: /run/x\ncache:\n  dir: /run/x\n", "cache.dir: must differ from state_dir" },
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

	/* Numbers are decimal digits only: no sign, no blank (strtoul() takes both). */
	{ "blocked range with a signed prefix", "blocked_ranges: [\"10.0.0.0/+8\"]\n", "blocked_ranges: expected an IPv4 CIDR" },
	{ "blocked range with a negative prefix", "blocked_ranges: [\"0.0.0.0/-0\"]\n", "blocked_ranges: expected an IPv4 CIDR" },
	{ "blocked range with a blank prefix", "blocked_ranges: [\"0.0.0.0/ 0\"]\n", "blocked_ranges: expected an IPv4 CIDR" },
	{ "pool with a signed prefix", "pool: 10.0.0.0/+16\n", "pool: expected an IPv4 CIDR" },
	{ "workers with a plus", "workers: +5\n", "workers: expected a non-negative integer" },
	{ "keep with a blank and a sign", "audit:\n  keep: \" -18446744073709551615\"\n", "audit.keep: expected a non-negative integer" },
	{ "mode minus zero", "control_mode: -0\n", "control_mode: expected an octal file mode" },
	{ "mode with a plus", "control_mode: \"+660\"\n", "control_mode: expected an octal file mode" },
	{ "upstream port with a plus", "dns:\n  upstream: [\"203.0.113.53:+53\"]\n", "dns.upstream: expected an IPv4 address" },
	{ "sink batch_max with a plus", "audit:\n  sinks:\n    s: { type: syslog, address: \"h.test:514\", batch_max: \"+5\" }\n",
	  "batch_max: 1 to 10000" },
	{ "sink address port with a plus", "audit:\n  sinks:\n    s: { type: syslog, address: \"h.test:+514\" }\n",
	  "address: expected HOST:PORT" },
	{ "refresh_seconds with a plus", "secrets:\n  a: { command: [/bin/true], refresh_seconds: \"+5\" }\n",
	  "refresh_seconds: expected 0 to 604800" },
	{ "mode 0660", "control_mode: \"0660\"\n", NULL },

	/* One document, no anchors or aliases, no NUL, no key twice. */
	{ "two documents", "dns: {upstream: [203.0.113.53]}\n---\nworkers: 9999\n", "test.yaml:2:1: more than one YAML document" },
	{ "document end then more", "workers: 3\n...\nbogus_key: 1\n", "test.yaml:3:1: did not find expected <document start>" },
	{ "document end then another", "workers: 3\n...\n---\nbogus_key: 1\n", "test.yaml:3:1: more than one YAML document" },
	{ "explicit single document", "---\nworkers: 3\n...\n", NULL },
	{ "anchor", "workers: &w 5\n", "test.yaml:1:10: YAML anchors are not accepted" },
	{ "anchor on a list", "blocked_ranges: &b [10.0.0.0/8]\n", "YAML anchors are not accepted" },
	{ "alias", "workers: *w\n", "test.yaml:1:10: YAML aliases are not accepted" },
	{ "NUL in a key", "\"workers\\0junk\": 5\n", "test.yaml:1:1: NUL character in a string" },
	{ "NUL in a value", "control: \"/run/x.sock\\0/../evil\"\n", "test.yaml:1:10: NUL character in a string" },
	{ "NUL in a secret id", "secrets: {\"ab\\0CD\": {env: X}}\n", "NUL character in a string" },
	{ "key twice", "workers: 3\nworkers: 4\n", "test.yaml:2:1: workers: given twice (first at line 1, column 1)" },
	{ "section twice", "dns:\n  ttl_max: 5\ndns:\n  ttl_min: 1\n", "test.yaml:3:1: dns: given twice (first at line 1" },
	{ "nested and dotted", "dns:\n  ttl_max: 5\ndns.ttl_max: 6\n", "test.yaml:3:14: dns.ttl_max: given twice (first at line 2, column 12)" },
	{ "list key twice", "blocked_ranges: [10.0.0.0/8]\nblocked_ranges: [172.16.0.0/12]\n", "blocked_ranges: given twice" },
	{ "secret source key twice", "secrets:\n  a: { env: X, env: Y }\n", "secrets.a.env: given twice" },
	{ "sink without a type points at its name", "audit:\n  sinks:\n    s:\n      transport: udp\n      format: json\n",
	  ":3:5: audit.sinks.s: type: is required" },
	{ "sink without an address points at its name", "audit:\n  sinks:\n    s:\n      type: syslog\n      format: json\n",
	  ":3:5: audit.sinks.s: address: is required" },
	{ "sink key twice", "audit:\n  sinks:\n    s: { type: syslog, type: otlp, address: \"h.test:514\" }\n",
	  "audit.sinks.s.type: given twice" },
	{ "secrets nested and dotted", "secrets:\n  a: { env: X }\nsecrets.b: { env: Y }\n", "secrets.b: write secrets's entries nested" },
	{ "credential key twice",
	  "secrets:\n  a: { env: X }\ngit:\n  credentials:\n    h.test: { secret: a, secret: a, scheme: bearer }\n",
	  "git.credentials.h.test.secret: given twice" },
	{ "credential host as a URL",
	  "secrets:\n  a: { env: X }\ngit:\n  credentials:\n    \"https://git.example\": { secret: a, scheme: bearer }\n",
	  "git.credentials: expected a host name such as git.example.com (no scheme, port, user or path)" },
	{ "credential host with a port",
	  "secrets:\n  a: { env: X }\ngit:\n  credentials:\n    \"git.example:443\": { secret: a, scheme: bearer }\n",
	  "expected a host name such as git.example.com" },

	/* Sink names become file names under DATA_DIR/spool/. */
	{ "sink named ..", "audit:\n  sinks:\n    '..': { type: syslog, address: \"h.test:514\" }\n", "a sink name is [A-Za-z0-9_-]" },
	{ "sink named .", "audit:\n  sinks:\n    '.': { type: syslog, address: \"h.test:514\" }\n", "a sink name is [A-Za-z0-9_-]" },
	{ "sink name with a dot", "audit:\n  sinks:\n    a.b: { type: syslog, address: \"h.test:514\" }\n", "a sink name is" },
	{ "sink name of 64 characters",
	  "audit:\n  sinks:\n    aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: { type: syslog, address: \"h.test:514\" }\n",
	  "1 to 63 characters" },
	{ "sink name in capitals", "audit:\n  sinks:\n    Main_log-2: { type: syslog, address: \"h.test:514\" }\n", NULL },
	{ "sink address with a blank", "audit:\n  sinks:\n    s: { type: syslog, address: \"a b:514\" }\n",
	  "address: expected HOST:PORT" },
	{ "sink address without a host", "audit:\n  sinks:\n    s: { type: syslog, address: \"]:514\" }\n",
	  "address: expected HOST:PORT" },
	{ "sink address in IPv6", "audit:\n  sinks:\n    s: { type: syslog, address: \"[2001:db8::1]:514\" }\n", NULL },
	{ "otlp endpoint without a host", "audit:\n  sinks:\n    o: { type: otlp, endpoint: \"http://\" }\n",
	  "endpoint: expected an http:// or https:// URL with a host" },
	{ "otlp endpoint port too large", "audit:\n  sinks:\n    o: { type: otlp, endpoint: \"http://x.test:99999/v1/logs\" }\n",
	  "endpoint: expected" },
	{ "otlp endpoint with a line break", "audit:\n  sinks:\n    o: { type: otlp, endpoint: \"http://x.test/v1\\r\\nX: y\" }\n",
	  "endpoint: expected" },
	{ "otlp endpoint", "audit:\n  sinks:\n    o: { type: otlp, endpoint: \"https://collector.test:4318/v1/logs\" }\n", NULL },

	/* Paths: the gateway's working directory is whatever started it. */
	{ "relative control socket", "control: run/x.sock\n", "control: must be an absolute path" },
	{ "relative audit log", "audit:\n  path: audit.log\n", "audit.path: must be an absolute path" },
	{ "relative mediation CA", "mediation:\n  ca_file: ca.pem\n", "mediation.ca_file: must be an absolute path" },
	{ "a YAML tag", "workers: !!str 2\n", "YAML tags are not accepted" },

	/* Directories compare by their lexical form. */
	{ "cache dir is data_dir with a slash", "data_dir: /srv/crgw\ncache:\n  dir: /srv/crgw/\n", "cache.dir: must differ from data_dir" },
	{ "cache dir is data_dir with a dot", "data_dir: /srv/crgw\ncache:\n  dir: /srv/crgw/.\n", "cache.dir: must differ from data_dir" },
	{ "cache dir is data_dir with //", "data_dir: /srv/crgw\ncache:\n  dir: /srv//crgw\n", "cache.dir: must differ from data_dir" },
	{ "cache dir is the default state_dir", "cache:\n  dir: /run/crgw/state/\n", "cache.dir: must differ from state_dir" },
	{ "cache dir in sandboxes", "cache:\n  dir: /var/lib/crgw/sandboxes\n", "cache.dir: must not lie in data_dir's sandboxes/" },
	{ "cache dir in trash", "cache:\n  dir: /var/lib/crgw//trash/c\n", "cache.dir: must not lie in data_dir's trash/" },
	{ "cache dir inside state_dir", "state_dir: /run/x\ncache:\n  dir: /run/x/cache\n", "cache.dir: must not lie inside state_dir" },
	{ "cache dir holds data_dir", "data_dir: /srv/c/data\ncache:\n  dir: /srv/c\n", "cache.dir: must not hold data_dir" },
	{ "cache dir with ..", "cache:\n  dir: /var/cache/../lib/crgw\n", "cache.dir: must be an absolute path without '..'" },
	{ "cache dir in data_dir", "data_dir: /srv/crgw\ncache:\n  dir: /srv/crgw/cache\n", NULL },
	{ "disabled cache anywhere", "cache:\n  enabled: false\n  dir: /var/lib/crgw\n", NULL },
	{ "policy store is data_dir", "policy_store:\n  dir: /var/lib/crgw/\n", "policy_store.dir: must differ from data_dir" },
	{ "policy store in the cache", "policy_store:\n  dir: /var/cache/crgw/p\n", "policy_store.dir: must not lie inside cache.dir" },
	{ "policy store in spool", "policy_store:\n  dir: /var/lib/crgw/spool/p\n", "must not lie in data_dir's spool/" },

	/* Sizes: the documented range, and a message that prints it. */
	{ "push hold zero", "mediation:\n  push_hold_bytes: 0\n", "mediation.push_hold_bytes: must be between 1 MiB and 1 GiB" },
	{ "push hold too big", "mediation:\n  push_hold_bytes: 2G\n", "mediation.push_hold_bytes: must be between 1 MiB and 1 GiB" },
	{ "memory too big", "limits:\n  memory: 2048T\n", "limits.memory: must be between 16 MiB and 1 PiB (or 0: no limit)" },

	/* Errors of the checks across keys name the line of the value. */
	{ "ttl min above max, located", "dns:\n  ttl_min: 100\n  ttl_max: 50\n", "test.yaml:2:12: dns.ttl_min: is larger than" },
	{ "pool host bits, located", "pool: 10.200.0.1/16\n", "test.yaml:1:7: pool: has host bits set" },
	{ "limits.pids, located", "limits:\n  pids: 8\n", "test.yaml:2:9: limits.pids: must be 0" },
	{ "credential unknown secret, located",
	  "secrets:\n  a: { env: X }\ngit:\n  credentials:\n    h.test: { secret: b, scheme: bearer }\n",
	  "test.yaml:5:5: git.credentials.h.test: names a secret" },
	{ "cache dir, located", "cache:\n  dir: /srv/x/../y\n", "test.yaml:2:8: cache.dir:" },
	{ "reader error, located", "workers: 1\nlog_level: \"a\x01\"\n", "test.yaml:2:" },
	{ "root not a mapping, located", "\n- a\n", "test.yaml:2:1: (root): expected a mapping" },

	/* Addresses that cannot be a resolver or a pool. */
	{ "upstream 0.0.0.0", "dns:\n  upstream: [0.0.0.0]\n", "dns.upstream: 0.0.0.0:53 is in 0.0.0.0/8" },
	{ "upstream broadcast", "dns:\n  upstream: [255.255.255.255]\n", "is reserved or the broadcast address" },
	{ "upstream multicast", "dns:\n  upstream: [224.0.0.1]\n", "dns.upstream: 224.0.0.1:53 is a multicast address" },
	{ "upstream in the pool", "dns:\n  upstream: [10.200.0.1]\n", "test.yaml:2:13: dns.upstream: 10.200.0.1:53 is inside the sandbox pool" },
	{ "upstream on loopback", "dns:\n  upstream: [127.0.0.53]\n", NULL },
	{ "pool in loopback", "pool: 127.0.0.0/8\n", "pool: is in loopback" },
	{ "pool in this network", "pool: 0.0.0.0/8\n", "pool: is in 0.0.0.0/8" },
	{ "pool in multicast", "pool: 224.0.0.0/8\n", "pool: is a multicast address" },
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
			   !strcmp(cfg.registry_credentials[1].username, "puller") &&
			   !strcmp(cfg.registry_credentials[1].token_for, "reg.example.test r2.test") &&
			   !cfg.registry_credentials[0].token_for[0],
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
			   cfg.limits_connection_rate == 1000 && !cfg.limits_optional && !strcmp(cfg.data_dir, "/var/lib/crgw"),
		   "limit defaults: 4 GiB, 4096 pids, all CPUs, 1000 new connections a second, not optional; data in "
		   "/var/lib/crgw");
	{
		static const struct {
			const char *text;
			uint64_t bytes;
		} sizes[] = { { "512M", 512u << 20 }, { "512MiB", 512u << 20 }, { "2g", UINT64_C(2) << 30 },
			      { "1073741824", UINT64_C(1) << 30 }, { "64K", 64u << 10 }, { "3TB", UINT64_C(3) << 40 },
			      { "1kib", 1u << 10 }, { "2gB", UINT64_C(2) << 30 }, { "1PiB", UINT64_C(1) << 50 },
			      { "16383P", UINT64_C(16383) << 50 } };
		bool all = true;

		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			uint64_t b = 0;

			all &= crgw_size_parse(sizes[i].text, &b) == 0 && b == sizes[i].bytes;
		}
		uint64_t b;

		all &= crgw_size_parse("", &b) != 0 && crgw_size_parse("1.5G", &b) != 0 && crgw_size_parse("G", &b) != 0 &&
		       crgw_size_parse("16384P", &b) != 0 && crgw_size_parse("1EiB", &b) != 0 &&
		       crgw_size_parse("1 G", &b) != 0;
		tap_result(all, "sizes: M, MiB, g, bytes, K, TB, kib, gB, PiB; empty, fractions, bare units, 2^64 and "
				"beyond, E and a blank refused");
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
	crgw_config_defaults(&cfg);
	tap_result(crgw_config_set(&cfg, "workers", " -18446744073709551615", err, sizeof(err)) != 0 &&
			   crgw_config_set(&cfg, "workers", "+5", err, sizeof(err)) != 0 && cfg.workers == 0,
		   "--set workers= -18446744073709551615 and +5 are refused");
	{
		struct in_addr a;
		unsigned p;

		tap_result(crgw_cidr4_parse("10.0.0.0/+8", &a, &p) && crgw_cidr4_parse("0.0.0.0/-0", &a, &p) &&
				   crgw_cidr4_parse("10.0.0.0/ 8", &a, &p) && crgw_cidr4_parse("10.0.0.0/", &a, &p) &&
				   !crgw_cidr4_parse("10.0.0.0/8", &a, &p) && p == 8,
			   "CIDR prefixes are digits only");
	}

	/* A flag's value has no line: a check across keys names the key alone. */
	crgw_config_defaults(&cfg);
	write_file(path, "dns:\n  ttl_max: 50\n  upstream: [203.0.113.53]\n");
	crgw_config_load_file(&cfg, path, err, sizeof(err));
	crgw_config_set(&cfg, "dns.ttl_min", "100", err, sizeof(err));
	tap_result(crgw_config_finish(&cfg, err, sizeof(err)) != 0 && !strncmp(err, "dns.ttl_min: ", 13),
		   "a flag's error has no location: %s", err);

	/* What the loader refuses before parsing: not a regular file, more than 1 MiB. */
	{
		char fifo[160], big[160];
		FILE *f;

		snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
		snprintf(big, sizeof(big), "%s/big.yaml", dir);
		crgw_config_defaults(&cfg);
		tap_result(mkfifo(fifo, 0600) == 0 && crgw_config_load_file(&cfg, fifo, err, sizeof(err)) != 0 &&
				   strstr(err, "not a regular file"),
			   "a FIFO is refused without blocking: %s", err);
		tap_result(crgw_config_load_file(&cfg, dir, err, sizeof(err)) != 0 && strstr(err, "not a regular file"),
			   "a directory is refused: %s", err);
		f = fopen(big, "w");
		for (int i = 0; f && i < (1 << 20) / 16 + 1; i++)
			fputs("# sixteen bytes\n", f);
		if (f)
			fclose(f);
		tap_result(crgw_config_load_file(&cfg, big, err, sizeof(err)) != 0 && strstr(err, "larger than 1 MiB"),
			   "a file over 1 MiB is refused: %s", err);
		f = fopen(big, "w");
		for (int i = 0; f && i < (1 << 20) / 16; i++)
			fputs("# sixteen bytes\n", f);
		if (f)
			fclose(f);
		tap_result(crgw_config_load_file(&cfg, big, err, sizeof(err)) == 0, "a file of exactly 1 MiB loads: %s",
			   err);
		unlink(fifo);
		unlink(big);
	}

	unlink(path);
	rmdir(dir);
	return tap_done();
}
