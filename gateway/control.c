/* SPDX-License-Identifier: Apache-2.0 */
/* Control API handlers: sandboxes, audit streaming, stats, metrics, health, capabilities. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <pthread.h>
#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "cache/service.h"
#include "config.h"
#include "control.h"
#include "crgw/ebpf.h"
#include "crgw/limits.h"
#include "mediation/mediation.h"
#include "dns.h"
#include "dns_cache.h"
#include "lifetime.h"
#include "log.h"
#include "netctl.h"
#include "policy_store.h"
#include "export/export.h"
#include "proxy.h"
#include "reload.h"
#include "disk.h"
#include "sandbox.h"
#include "teardown.h"

#define BODY_MAX (8u << 20)
#define FOLLOWERS_MAX 64
#define FOLLOWER_BUFFER_MAX (8u << 20)

struct release_wait;

struct follower {
	struct follower *next;
	struct evhttp_request *req;
	uint64_t last;
};

static struct {
	const struct crgw_config *cfg;
	struct event_base *base;
	struct evhttp *http;
	int fd;
	struct event *notify_ev;
	struct follower *followers;
	unsigned nfollowers;
	struct release_wait *releases; /* DELETEs waiting for their teardown */
	int64_t started_us;
	uid_t sock_uid;
	gid_t sock_gid;
} C = {.fd = -1};

/* ---- replies ------------------------------------------------------------------------------------ */

static void reply_json(struct evhttp_request *req, int status, json_t *body)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	if (!text) {
		evhttp_send_error(req, 500, "out of memory");
		json_decref(body);
		return;
	}
	evbuffer_add(out, text, strlen(text));
	evbuffer_add(out, "\n", 1);
	free(text);
	json_decref(body);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	evhttp_send_reply(req, status, status < 300 ? "OK" : "Error", NULL);
}

/* Errors are JSON with a stable code (a reason code where one applies) and a human message. */
static void reply_error(struct evhttp_request *req, int status, const char *code, const char *message)
{
	reply_json(req, status, json_pack("{s:s, s:s}", "code", code, "message", message));
}

static void rfc3339(int64_t us, char *buf, size_t size)
{
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;
	size_t n;

	gmtime_r(&secs, &tm);
	n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%06dZ", (int)(us % 1000000));
}

static json_t *limit_value(uint64_t v)
{
	return v ? json_integer((json_int_t)v) : json_null();
}

static json_t *limits_json(const struct crgw_cgroup_limits *l, bool off)
{
	if (off)
		return json_string("off");
	/* 0 is "no limit": null, never a limit of zero. */
	return json_pack("{s:o, s:o, s:o}", "memory_bytes", limit_value(l->memory), "pids", limit_value(l->pids),
			 "cpus", l->cpu_milli ? json_real(l->cpu_milli / 1000.0) : json_null());
}

/*
 * A sandbox's own disk: its size, what it holds, and (when `left` is given) what its jobs may still
 * write, less than the size less what it holds by the file system's own overhead; "off" where the host
 * could not make one; null: none.
 */
static json_t *disk_json(uint64_t limit, bool has_used, uint64_t used, const uint64_t *left)
{
	json_t *o;
	bool off;

	if (!limit) {
		crgw_registry_disk_state(&off);
		return off ? json_string("off") : json_null();
	}
	o = json_pack("{s:I, s:o}", "limit_bytes", (json_int_t)limit, "used_bytes",
		      has_used ? json_integer((json_int_t)used) : json_null());
	if (o && left)
		json_object_set_new(o, "free_bytes", has_used ? json_integer((json_int_t)*left) : json_null());
	return o;
}

static json_t *usage_json(const struct crgw_cgroup_usage *u)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "memory_bytes", (json_int_t)u->memory, "memory_peak_bytes",
			 (json_int_t)u->memory_peak, "cpu_us", (json_int_t)u->cpu_us, "pids", (json_int_t)u->pids,
			 "oom_kills", (json_int_t)u->oom_kills, "pids_denied", (json_int_t)u->pids_denied);
}

/* The eBPF guard as a whole: its state, and what no sandbox's counters show. */
static json_t *guard_stats_json(void)
{
	struct crgw_guard *g;
	struct crgw_guard_stats st = {0};
	const char *state = crgw_registry_enforcement(NULL, &g);

	if (g)
		crgw_guard_stats(g, &st);
	return json_pack("{s:s, s:I, s:I, s:I}", "state", state, "events_suppressed", (json_int_t)st.events_suppressed,
			 "events_lost", (json_int_t)st.events_lost, "unregistered_packets",
			 (json_int_t)st.unregistered_packets);
}

/* The eBPF guard's figures for one sandbox: what it passed, and what it dropped by reason. */
static json_t *guard_json(const struct crgw_guard_counters *g)
{
	json_t *o = json_pack("{s:I, s:I}", "passed_packets", (json_int_t)g->packets[CRGW_GUARD_PASS], "passed_bytes",
			      (json_int_t)g->bytes[CRGW_GUARD_PASS]);
	json_t *d = json_object();

	for (unsigned c = CRGW_GUARD_PASS + 1; o && d && c < CRGW_GUARD_CLASS_COUNT; c++)
		json_object_set_new(
		    d, crgw_guard_reason_name(c),
		    json_pack("{s:I, s:I}", "packets", (json_int_t)g->packets[c], "bytes", (json_int_t)g->bytes[c]));
	if (o && d)
		json_object_set_new(o, "dropped", d);
	else
		json_decref(d);
	return o ? o : json_null();
}

/* The timings reported so far; NULL when none were. */
static json_t *timings_json(const struct crgw_sandbox_timings *t)
{
	json_t *o = json_object();
	const struct {
		const char *name;
		int64_t v;
	} f[] = {{"image_prep_ms", t->image_prep_ms},
		 {"network_ms", t->network_ms},
		 {"boot_ms", t->boot_ms},
		 {"last_command_ms", t->last_command_ms},
		 {"teardown_ms", t->teardown_ms}};

	for (size_t i = 0; o && i < sizeof(f) / sizeof(f[0]); i++)
		if (f[i].v >= 0)
			json_object_set_new(o, f[i].name, json_integer(f[i].v));
	if (o && t->commands)
		json_object_set_new(o, "commands", json_integer(t->commands));
	if (o && json_object_size(o) == 0) {
		json_decref(o);
		o = NULL;
	}
	return o;
}

static json_t *sandbox_json(struct crgw_sandbox *sb, bool detail)
{
	char gw[INET_ADDRSTRLEN], guest[INET_ADDRSTRLEN], created[40], expires[40];
	int64_t left = (sb->expires_us - crgw_realtime_us()) / 1000000;
	json_t *o;

	inet_ntop(AF_INET, &sb->gw, gw, sizeof(gw));
	inet_ntop(AF_INET, &sb->guest, guest, sizeof(guest));
	rfc3339(sb->created_us, created, sizeof(created));
	rfc3339(sb->expires_us, expires, sizeof(expires));
	o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "id", sb->id, "run_id",
		      sb->run_id, "backend", sb->backend, "interface", sb->ifname, "ifindex", sb->ifindex, "gateway",
		      gw, "guest", guest, "policy_hash", sb->policy_hash, "created", created, "expires", expires,
		      "ttl_s", (json_int_t)sb->ttl_s, "ttl_left_s", (json_int_t)(left > 0 ? left : 0));
	if (!o)
		return NULL;
	if (sb->name[0])
		json_object_set_new(o, "name", json_string(sb->name));
	if (sb->learn)
		json_object_set_new(o, "learn", json_true());
	if (sb->holder_pid)
		json_object_set_new(o, "holder_pid", json_integer(sb->holder_pid));
	{
		/* The MAC the anti-spoofing layers expect of the guest: a VMM gives it to its NIC. */
		char mac[18];
		const uint8_t *m = sb->guest_mac;

		snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
		json_object_set_new(o, "guest_mac", json_string(mac));
	}
	json_object_set_new(o, "limits", limits_json(&sb->limits, sb->cgroup == NULL));
	{
		uint64_t used = 0, left = 0;
		bool has_used = sb->disk_limit && crgw_disk_usage(sb->data_dir, &used, &left) == 0;

		json_object_set_new(o, "disk", disk_json(sb->disk_limit, has_used, used, &left));
	}
	if (sb->workspace_mode[0])
		json_object_set_new(o, "workspace",
				    json_pack("{s:s, s:s}", "mode", sb->workspace_mode, "dir", sb->workspace_dir));
	if (sb->data_dir[0])
		json_object_set_new(o, "data_dir", json_string(sb->data_dir));
	json_t *timings = timings_json(&sb->timings);

	if (timings)
		json_object_set_new(o, "timings", timings);
	/* What a backend points the sandbox's tools at when it starts a command (docs/mediation.md). */
	{
		char url[64];
		json_t *hosts = json_array();

		snprintf(url, sizeof(url), "http://%s:%u", gw, CRGW_MEDIATION_PORT);
		for (size_t i = 0; hosts && i < crgw_policy_git_host_count(sb->policy); i++)
			json_array_append_new(hosts, json_string(crgw_policy_git_host(sb->policy, i)));
		json_t *regs = json_object();

		/* Each enabled registry's primary host, where the sandbox's tools are pointed. */
		for (size_t i = 0; regs && i < CRGW_REGISTRY_COUNT; i++) {
			const char *name = crgw_registry_names[i];
			const struct crgw_registry_rule *rule = crgw_policy_registry(sb->policy, name);

			if (rule && rule->enable && rule->primary)
				json_object_set_new(regs, name, json_string(rule->primary));
		}
		json_object_set_new(o, "mediation",
				    json_pack("{s:s, s:o, s:o}", "url", url, "git_hosts", hosts ? hosts : json_array(),
					      "registries", regs ? regs : json_object()));
	}
	if (detail) {
		struct crgw_nft_counters c = {0};
		struct crgw_cgroup_usage u;

		struct crgw_guard_counters g;

		crgw_sandbox_kernel_counters(sb, &c);
		/* Either layer may have dropped a packet (the guard runs first): the drop counters are their sums. */
		if (crgw_sandbox_guard_counters(sb, &g) == 0) {
			c.spoof.packets += g.packets[CRGW_GUARD_SPOOFED_SOURCE];
			c.dns.packets += g.packets[CRGW_GUARD_DNS_BYPASS_ATTEMPT];
			c.drop.packets +=
			    g.packets[CRGW_GUARD_HOST_NOT_ALLOWED] + g.packets[CRGW_GUARD_PORT_NOT_ALLOWED];
			json_object_set_new(o, "ebpf", guard_json(&g));
		}
		json_object_set_new(o, "counters",
				    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "dns_queries",
					      (json_int_t)atomic_load(&sb->counters.dns_queries), "dns_allowed",
					      (json_int_t)atomic_load(&sb->counters.dns_allowed), "dns_denied",
					      (json_int_t)atomic_load(&sb->counters.dns_denied), "dns_rate_limited",
					      (json_int_t)atomic_load(&sb->counters.dns_rate_limited), "dns_formerr",
					      (json_int_t)atomic_load(&sb->counters.dns_formerr), "connections_refused",
					      (json_int_t)atomic_load(&sb->counters.connections_refused),
					      "spoofed_packets", (json_int_t)c.spoof.packets, "dns_bypass_packets",
					      (json_int_t)c.dns.packets, "dropped_packets",
					      (json_int_t)c.drop.packets));
		json_object_set_new(o, "bindings", json_integer(crgw_binding_count(sb)));
		if (crgw_sandbox_usage(sb, &u) == 0)
			json_object_set_new(o, "resources", usage_json(&u));
	}
	/* A process that joins the sandbox later (crgw-ctl exec) writes itself into each. */
	if (sb->cgroup) {
		const char *dirs[8];
		size_t n = crgw_cgroup_dirs(sb->cgroup, dirs, 8);
		json_t *arr = json_array();

		for (size_t i = 0; arr && i < n; i++)
			json_array_append_new(arr, json_string(dirs[i]));
		if (arr)
			json_object_set_new(o, "cgroup_dirs", arr);
	}
	return o;
}

/* ---- sandboxes ---------------------------------------------------------------------------------- */

static void list_one(struct crgw_sandbox *sb, void *arg)
{
	json_t *o = sandbox_json(sb, false);

	if (o)
		json_array_append_new(arg, o);
}

static void sandboxes_list(struct evhttp_request *req)
{
	json_t *arr = json_array();

	crgw_sandbox_foreach(list_one, arr);
	reply_json(req, 200, json_pack("{s:o}", "sandboxes", arr));
}

/*
 * Stores a policy document that the gateway accepts; answers the request itself when it cannot (invalid:
 * 422; not stored: 500) and returns non-zero then. `created` may be NULL.
 */
static int store_policy(struct evhttp_request *req, const char *text, char *hash, size_t hashlen, bool *created)
{
	struct crgw_policy *p = NULL;
	char err[512];
	bool made = false;
	int rc;

	if (crgw_policy_load(text, strlen(text), &p, err, sizeof(err))) {
		reply_error(req, 422, "policy_invalid", err);
		return -EINVAL;
	}
	snprintf(hash, hashlen, "%s", crgw_policy_hash(p));
	crgw_policy_unref(p);
	rc = crgw_policy_store_put(hash, text, strlen(text), &made);
	if (rc) {
		snprintf(err, sizeof(err), "cannot keep the policy in the policy store: %s", strerror(-rc));
		log_error("policy store write failed", "hash=%s error=\"%s\"", hash, strerror(-rc));
		reply_error(req, 500, "runtime_launch_failed", err);
		return rc;
	}
	if (created)
		*created = made;
	return 0;
}

static int keep_policy(struct evhttp_request *req, const char *text)
{
	char hash[72];

	return store_policy(req, text, hash, sizeof(hash), NULL);
}

/* POST /v1/policies: a CompiledPolicy, checked as a registration checks it, kept by its hash. */
static void policy_push(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;
	json_t *doc;
	char *text, hash[72];
	bool created = false;

	if (len == 0 || len > BODY_MAX) {
		reply_error(req, 400, "request_invalid", "a CompiledPolicy document is required");
		return;
	}
	doc = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(doc)) {
		char msg[300];

		snprintf(msg, sizeof(msg), "body: %s", doc ? "expected a JSON object" : jerr.text);
		reply_error(req, 400, "request_invalid", msg);
		json_decref(doc);
		return;
	}
	text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	json_decref(doc);
	if (!text) {
		reply_error(req, 500, "runtime_launch_failed", "out of memory");
		return;
	}
	if (!store_policy(req, text, hash, sizeof(hash), &created)) {
		log_info("policy stored", "hash=%s created=%s", hash, created ? "yes" : "no");
		reply_json(req, created ? 201 : 200, json_pack("{s:s, s:b}", "policy_hash", hash, "created", created));
	}
	free(text);
}

static void policy_entry(const struct crgw_policy_store_entry *e, void *arg)
{
	char stored[40];

	rfc3339(e->stored * 1000000, stored, sizeof(stored));
	json_array_append_new(
	    arg, json_pack("{s:s, s:I, s:s}", "policy_hash", e->hash, "bytes", (json_int_t)e->bytes, "stored", stored));
}

static void policies_list(struct evhttp_request *req)
{
	json_t *arr = json_array();
	int n = crgw_policy_store_list(policy_entry, arr);

	if (n < 0) {
		json_decref(arr);
		reply_error(req, 500, "runtime_launch_failed", "the policy store cannot be read");
		return;
	}
	reply_json(req, 200, json_pack("{s:o}", "policies", arr));
}

/* GET /v1/policies/<hash>: the exact document, as the gateway checked it, for any event's policy_hash. */
static void policy_get(struct evhttp_request *req, const char *hash)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	char *text = NULL;
	size_t len = 0;
	int rc = crgw_policy_store_get(hash, &text, &len);

	if (rc == -EINVAL) {
		reply_error(req, 400, "request_invalid", "expected /v1/policies/sha256:<64 lowercase hex digits>");
		return;
	}
	if (rc == -ENOENT) {
		reply_error(req, 404, "not_found", "no policy with this hash in the store");
		return;
	}
	if (rc) {
		reply_error(req, 500, "runtime_launch_failed",
			    rc == -EBADMSG ? "the stored policy no longer matches its hash"
					   : "the policy store cannot be read");
		return;
	}
	evbuffer_add(out, text, len);
	evbuffer_add(out, "\n", 1);
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	evhttp_send_reply(req, 200, "OK", NULL);
}

static json_t *key_list(const char *csv)
{
	json_t *a = json_array();
	char buf[1024], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", csv);
	for (char *k = strtok_r(buf, ",", &save); k; k = strtok_r(NULL, ",", &save))
		json_array_append_new(a, json_string(k));
	return a;
}

/* POST /v1/reload: what SIGHUP does, with the outcome in the answer. */
static void reload(struct evhttp_request *req)
{
	struct crgw_reload_result *r = malloc(sizeof(*r));

	if (!r) {
		reply_error(req, 500, "runtime_launch_failed", "out of memory");
		return;
	}
	if (crgw_reload(r))
		reply_error(req, 422, "config_invalid", r->error);
	else
		reply_json(req, 200,
			   json_pack("{s:b, s:o, s:o}", "reloaded", 1, "applied", key_list(r->change.applied),
				     "needs_restart", key_list(r->change.kept)));
	free(r);
}

static void sandbox_create(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	struct crgw_sandbox_request r = {0};
	struct crgw_sandbox *sb = NULL;
	enum crgw_reason reason;
	json_error_t jerr;
	json_t *body, *policy = NULL, *workspace = NULL, *limits = NULL;
	char *policy_text = NULL, err[512] = "";
	const char *netns = NULL, *run_id = NULL, *backend = "netns", *name = NULL, *policy_hash = NULL;
	const char *ws_mode = NULL, *ws_dir = NULL, *memory = NULL, *cpus = NULL, *disk = NULL;
	json_int_t holder = 0, pids = 0, tap_owner = -1;
	int learn = 0;
	bool vm;
	int ret;

	if (len == 0 || len > BODY_MAX) {
		reply_error(req, 400, "request_invalid", "a JSON body is required");
		return;
	}
	body = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &jerr);
	if (!body ||
	    json_unpack_ex(body, &jerr, JSON_STRICT, "{s?o, s?s, s?s, s?s, s?s, s?I, s?s, s?o, s?o, s?I, s?b}",
			   "policy", &policy, "policy_hash", &policy_hash, "netns_path", &netns, "run_id", &run_id,
			   "backend", &backend, "holder_pid", &holder, "name", &name, "workspace", &workspace, "limits",
			   &limits, "tap_owner", &tap_owner, "learn", &learn) ||
	    (workspace &&
	     json_unpack_ex(workspace, &jerr, JSON_STRICT, "{s:s, s?s}", "mode", &ws_mode, "dir", &ws_dir)) ||
	    (limits && json_unpack_ex(limits, &jerr, JSON_STRICT, "{s?s, s?I, s?s, s?s}", "memory", &memory, "pids",
				      &pids, "cpus", &cpus, "disk", &disk))) {
		char msg[300];

		snprintf(msg, sizeof(msg), "body: %s", jerr.text);
		reply_error(req, 400, "request_invalid", msg);
		json_decref(body);
		return;
	}
	if (!policy == !policy_hash) {
		reply_error(req, 400, "request_invalid", "body: give the policy, or the policy_hash of a stored one");
		json_decref(body);
		return;
	}
	if (policy && !json_is_object(policy)) {
		reply_error(req, 400, "request_invalid", "policy: expected a compiled policy (a JSON object)");
		json_decref(body);
		return;
	}
	/* A VM backend gets a TAP its VMM attaches to; the netns backend a veth into its namespace. */
	vm = !strcmp(backend, "qemu") || !strcmp(backend, "firecracker");
	if (strcmp(backend, "netns") && !vm) {
		reply_error(req, 400, "backend_unavailable", "backend: expected netns, qemu or firecracker");
		json_decref(body);
		return;
	}
	if (vm ? netns != NULL : netns == NULL) {
		reply_error(req, 400, "request_invalid",
			    vm ? "netns_path: a VM sandbox has no namespace of ours (its VMM attaches to a TAP)"
			       : "netns_path: required for the netns backend");
		json_decref(body);
		return;
	}
	if (!crgw_run_id_valid(run_id ? run_id : "") || holder < 0 || holder > 4194304 || (netns && netns[0] != '/') ||
	    tap_owner < -1 || tap_owner > 4294967294LL || (!vm && tap_owner != -1)) {
		reply_error(req, 400, "request_invalid",
			    "run_id (at most 63 characters, no control characters), holder_pid, netns_path or "
			    "tap_owner out of range");
		json_decref(body);
		return;
	}
	if (ws_mode &&
	    (strcmp(ws_mode, "copy") && strcmp(ws_mode, "rw") && strcmp(ws_mode, "ro") && strcmp(ws_mode, "none"))) {
		reply_error(req, 400, "request_invalid", "workspace.mode: expected copy, rw, ro or none");
		json_decref(body);
		return;
	}
	if (ws_dir && (ws_dir[0] != '/' || strlen(ws_dir) >= sizeof(((struct crgw_sandbox *)0)->workspace_dir))) {
		reply_error(req, 400, "request_invalid", "workspace.dir: expected an absolute path");
		json_decref(body);
		return;
	}
	if ((memory && (crgw_size_parse(memory, &r.limits.memory) || r.limits.memory < CRGW_LIMIT_MEMORY_MIN)) ||
	    (cpus && (crgw_cpus_parse(cpus, &r.limits.cpu_milli) || r.limits.cpu_milli < CRGW_LIMIT_CPU_MILLI_MIN)) ||
	    (disk && (crgw_size_parse(disk, &r.disk_limit) || r.disk_limit < CRGW_LIMIT_DISK_MIN ||
		      r.disk_limit > CRGW_LIMIT_DISK_MAX)) || pids < 0 ||
	    (pids && pids < CRGW_LIMIT_PIDS_MIN)) {
		reply_error(req, 400, "request_invalid",
			    "limits: memory is a size of at least 16M (e.g. 512M), pids at least 8, cpus a count of "
			    "at least 0.01 (e.g. 0.5), disk a size of 64M to 1P (e.g. 10G)");
		json_decref(body);
		return;
	}
	r.limits.pids = (uint64_t)pids;
	r.name = name;
	r.workspace_mode = ws_mode;
	r.workspace_dir = ws_dir;
	if (policy_hash) {
		size_t plen;
		int rc = crgw_policy_store_get(policy_hash, &policy_text, &plen);

		if (rc) {
			reply_error(
			    req,
			    rc == -EINVAL   ? 400
			    : rc == -ENOENT ? 404
					    : 500,
			    rc == -EINVAL   ? "request_invalid"
			    : rc == -ENOENT ? "policy_invalid"
					    : "runtime_launch_failed",
			    rc == -EINVAL ? "policy_hash: expected sha256: and 64 lowercase hex digits"
			    : rc == -ENOENT
				? "policy_hash: no such policy in the store (crgw-ctl policy push)"
				: "policy_hash: the stored policy cannot be read or no longer matches its hash");
			json_decref(body);
			return;
		}
	} else {
		policy_text = json_dumps(policy, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
		if (!policy_text) {
			reply_error(req, 500, "runtime_launch_failed", "out of memory");
			json_decref(body);
			return;
		}
		/* Every policy a sandbox runs under stays fetchable by the hash its events carry. */
		if (keep_policy(req, policy_text)) {
			free(policy_text);
			json_decref(body);
			return;
		}
	}
	r.policy_json = policy_text;
	r.policy_len = strlen(policy_text);
	r.netns_path = netns;
	r.run_id = run_id;
	r.backend = backend;
	r.holder_pid = (pid_t)holder;
	r.tap = vm;
	r.tap_owner = (long long)tap_owner;
	r.learn = learn;
	ret = crgw_sandbox_register(&r, &sb, &reason, err, sizeof(err));
	if (ret) {
		log_warn("sandbox registration refused", "reason=%s error=\"%s\"", crgw_reason_str(reason), err);
		reply_error(req,
			    reason == CRGW_REASON_POLICY_INVALID    ? 422
			    : reason == CRGW_REASON_REQUEST_INVALID ? (ret == -EEXIST  ? 409
								       : ret == -EPERM ? 403
										       : 400)
								    : 500,
			    crgw_reason_str(reason), err);
	} else {
		crgw_lifetime_watch(sb);
		reply_json(req, 201, sandbox_json(sb, false));
		crgw_sandbox_unref(sb);
	}
	free(policy_text);
	json_decref(body);
}

/*
 * DELETE answers once the sandbox's processes have ended and its data is gone, the teardown thread's part
 * of a release, so that a client that removed a sandbox finds nothing of it left (a TAP, a VMM, a data
 * directory). The loop polls the teardown's progress rather than being woken by its thread: nothing the
 * thread holds can outlive a client that left or a gateway that stops. A teardown slower than the bound
 * (a process stuck in the kernel, a huge tree) is answered as going on.
 */
#define RELEASE_WAIT_POLL_MS 5
#define RELEASE_WAIT_MAX_MS 15000

struct release_wait {
	struct release_wait *next;
	struct evhttp_request *req;
	struct event *timer;
	uint64_t ticket;
	int64_t deadline_s; /* crgw_monotonic_s: a busy loop fires the timer late, so polls do not count time */
	char id[65];
};

static void release_wait_free(struct release_wait *w)
{
	for (struct release_wait **p = &C.releases; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			break;
		}
	event_free(w->timer);
	free(w);
}

static void release_answer(struct release_wait *w, bool done)
{
	evhttp_connection_set_closecb(evhttp_request_get_connection(w->req), NULL, NULL);
	reply_json(w->req, 200, json_pack("{s:s, s:s}", "released", w->id, "teardown", done ? "done" : "continuing"));
	release_wait_free(w);
}

static void release_client_gone(struct evhttp_connection *conn, void *arg)
{
	(void)conn;
	release_wait_free(arg);
}

static void release_poll(evutil_socket_t fd, short what, void *arg)
{
	struct release_wait *w = arg;
	const struct timeval tv = {0, RELEASE_WAIT_POLL_MS * 1000};

	(void)fd;
	(void)what;
	if (crgw_teardown_done(w->ticket) || crgw_monotonic_s() >= w->deadline_s)
		release_answer(w, crgw_teardown_done(w->ticket));
	else
		evtimer_add(w->timer, &tv);
}

/*
 * The answer about a sandbox that is not registered: 410 with why and when it was released while its
 * tombstone is kept (its creator learns of an OOM kill or its TTL from here), else 404.
 */
static void reply_gone(struct evhttp_request *req, const char *id)
{
	struct crgw_sandbox_tombstone t;
	char msg[300], at[40];
	json_t *o, *timings;

	if (!crgw_sandbox_tombstone_find(id, &t)) {
		reply_error(req, 404, "not_found", "no such sandbox");
		return;
	}
	rfc3339(t.released_us, at, sizeof(at));
	snprintf(msg, sizeof(msg), "sandbox %s was released at %s: %s", t.id, at, t.why);
	o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "code", "released", "message", msg, "id", t.id, "reason", t.why,
		      "released", at);
	if (o && t.name[0])
		json_object_set_new(o, "name", json_string(t.name));
	if (o && t.has_usage) {
		json_object_set_new(o, "resources", usage_json(&t.usage));
		json_object_set_new(o, "limits", limits_json(&t.limits, false));
	}
	if (o && t.disk_limit)
		json_object_set_new(o, "disk", disk_json(t.disk_limit, t.has_disk_used, t.disk_used, NULL));
	timings = o ? timings_json(&t.timings) : NULL;
	if (timings)
		json_object_set_new(o, "timings", timings);
	reply_json(req, 410, o);
}

static void sandbox_delete(struct evhttp_request *req, const char *id)
{
	const struct timeval tv = {0, RELEASE_WAIT_POLL_MS * 1000};
	struct release_wait *w;
	uint64_t ticket;

	if (crgw_sandbox_release(id, "released through the control API")) {
		reply_gone(req, id); /* a second rm says when and why the first release was */
		return;
	}
	/* The release queued its work last (or did it at once): its ticket is the latest, or a later one. */
	ticket = crgw_teardown_ticket();
	w = crgw_teardown_done(ticket) ? NULL : calloc(1, sizeof(*w));
	if (w)
		w->timer = evtimer_new(C.base, release_poll, w);
	if (!w || !w->timer) {
		free(w);
		reply_json(req, 200,
			   json_pack("{s:s, s:s}", "released", id, "teardown",
				     crgw_teardown_done(ticket) ? "done" : "continuing"));
		return;
	}
	w->req = req;
	w->ticket = ticket;
	w->deadline_s = crgw_monotonic_s() + RELEASE_WAIT_MAX_MS / 1000;
	snprintf(w->id, sizeof(w->id), "%s", id);
	w->next = C.releases;
	C.releases = w;
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), release_client_gone, w);
	evtimer_add(w->timer, &tv);
}

static void sandbox_one(struct evhttp_request *req, const char *id)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct crgw_sandbox *sb;

	if (cmd == EVHTTP_REQ_DELETE) {
		sandbox_delete(req, id);
		return;
	}
	if (cmd != EVHTTP_REQ_GET) {
		reply_error(req, 405, "request_invalid", "use GET or DELETE");
		return;
	}
	sb = crgw_sandbox_find(id);
	if (!sb) {
		reply_gone(req, id);
		return;
	}
	reply_json(req, 200, sandbox_json(sb, true));
	crgw_sandbox_unref(sb);
}

/*
 * POST /v1/sandboxes/ID/timings: what its backend measured ({"image_prep_ms", "network_ms", "boot_ms",
 * "command_ms"}, each optional, in ms). A VM's boot happens where the gateway cannot see it.
 */
static void sandbox_timings(struct evhttp_request *req, const char *id)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_int_t v[4] = {-1, -1, -1, -1};
	struct crgw_sandbox *sb;
	json_error_t jerr;
	json_t *body;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		reply_error(req, 405, "request_invalid", "use POST");
		return;
	}
	if (len == 0 || len > 4096) {
		reply_error(req, 400, "request_invalid", "a JSON body is required");
		return;
	}
	body = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &jerr);
	if (!body || json_unpack_ex(body, &jerr, JSON_STRICT, "{s?I, s?I, s?I, s?I}", "image_prep_ms", &v[0],
				    "network_ms", &v[1], "boot_ms", &v[2], "command_ms", &v[3])) {
		char msg[300];

		snprintf(msg, sizeof(msg), "body: %s", jerr.text);
		reply_error(req, 400, "request_invalid", msg);
		json_decref(body);
		return;
	}
	json_decref(body);
	for (int i = 0; i < 4; i++)
		if (v[i] < -1 || v[i] > 7LL * 86400 * 1000) {
			reply_error(req, 400, "request_invalid", "timings are milliseconds, at most a week");
			return;
		}
	sb = crgw_sandbox_find(id);
	if (!sb) {
		reply_error(req, 404, "not_found", "no such sandbox");
		return;
	}
	if (v[0] >= 0)
		sb->timings.image_prep_ms = v[0];
	if (v[1] >= 0)
		sb->timings.network_ms = v[1];
	if (v[2] >= 0)
		sb->timings.boot_ms = v[2];
	if (v[3] >= 0) {
		sb->timings.last_command_ms = v[3];
		sb->timings.commands++;
	}
	reply_json(req, 200, timings_json(&sb->timings) ?: json_object());
	crgw_sandbox_unref(sb);
}

/* ---- audit streaming ---------------------------------------------------------------------------- */

static void add_line(void *arg, const char *line, size_t len)
{
	struct evbuffer *buf = arg;

	if (line) {
		evbuffer_add(buf, line, len);
		evbuffer_add(buf, "\n", 1);
	}
}

static void follower_remove(struct follower *f)
{
	for (struct follower **pp = &C.followers; *pp; pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			C.nfollowers--;
			free(f);
			return;
		}
}

static void follower_closed(struct evhttp_connection *conn, void *arg)
{
	struct follower *f = arg;

	(void)conn;
	/*
	 * A stream its client cut: libevent let go of the request, since its reply was not ended, and
	 * leaves it to us (about 900 bytes per `audit tail -f` otherwise, until the gateway stopped).
	 */
	if (!evhttp_request_get_connection(f->req))
		evhttp_request_free(f->req);
	follower_remove(f);
}

static void feed_followers(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	for (struct follower *f = C.followers, *next; f; f = next) {
		struct evhttp_connection *conn = evhttp_request_get_connection(f->req);
		struct bufferevent *bev = evhttp_connection_get_bufferevent(conn);
		struct evbuffer *buf;

		next = f->next;
		/* A follower that does not read is cut off rather than buffered without bound. */
		if (bev && evbuffer_get_length(bufferevent_get_output(bev)) > FOLLOWER_BUFFER_MAX) {
			log_warn("dropping a slow audit follower", "buffered=%zu",
				 evbuffer_get_length(bufferevent_get_output(bev)));
			/*
			 * Shut the socket rather than end the reply: the client learns the stream was cut, and
			 * the connection (with its buffer) goes at once instead of waiting for a reader.
			 */
			evhttp_connection_set_closecb(conn, NULL, NULL);
			shutdown(bufferevent_getfd(bev), SHUT_RDWR);
			/* Ended, so that the connection's failing write frees the request with it. */
			evhttp_send_reply_end(f->req);
			follower_remove(f);
			continue;
		}
		buf = evbuffer_new();
		if (!buf)
			continue;
		f->last = crgw_audit_recent(f->last, 4096, add_line, buf);
		if (evbuffer_get_length(buf))
			evhttp_send_reply_chunk(f->req, buf);
		evbuffer_free(buf);
	}
}

/* Runs on the audit writer thread: only wakes the control loop. */
static void audit_notify(void *arg)
{
	(void)arg;
	if (C.notify_ev)
		event_active(C.notify_ev, EV_READ, 0);
}

static void audit_tail(struct evhttp_request *req, const struct evkeyvalq *query)
{
	const char *lines_s = evhttp_find_header(query, "lines");
	const char *follow_s = evhttp_find_header(query, "follow");
	unsigned long lines = 20;
	struct evbuffer *buf;
	uint64_t last;
	char *end;

	if (lines_s) {
		lines = strtoul(lines_s, &end, 10);
		if (!(lines_s[0] >= '0' && lines_s[0] <= '9') || *end || lines > 4096) {
			reply_error(req, 400, "request_invalid", "lines must be 0..4096");
			return;
		}
	}
	if (follow_s && strcmp(follow_s, "0") && strcmp(follow_s, "1")) {
		reply_error(req, 400, "request_invalid", "follow must be 0 or 1");
		return;
	}
	buf = evbuffer_new();
	if (!buf) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	last = crgw_audit_recent(0, (unsigned)lines, add_line, buf);
	if (lines == 0) {
		/* Only the position: nothing before now. */
		evbuffer_drain(buf, evbuffer_get_length(buf));
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/x-ndjson");
	if (!follow_s || strcmp(follow_s, "1")) {
		evhttp_send_reply(req, 200, "OK", buf);
		evbuffer_free(buf);
		return;
	}
	if (C.nfollowers >= FOLLOWERS_MAX) {
		evbuffer_free(buf);
		reply_error(req, 503, "rate_limited", "too many audit followers");
		return;
	}
	struct follower *f = calloc(1, sizeof(*f));

	if (!f) {
		evbuffer_free(buf);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	f->req = req;
	f->last = last;
	f->next = C.followers;
	C.followers = f;
	C.nfollowers++;
	evhttp_send_reply_start(req, 200, "OK");
	if (evbuffer_get_length(buf))
		evhttp_send_reply_chunk(req, buf);
	evbuffer_free(buf);
	/* A quiet log is no reason to end a follower's stream: a year, where the default is a minute. */
	evhttp_connection_set_timeout(evhttp_request_get_connection(req), 365 * 86400);
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), follower_closed, f);
}

/* ---- stats, metrics, health --------------------------------------------------------------------- */

/* Per-sandbox resource figures for stats and metrics: copied out under the registry lock, read after. */
struct usage_row {
	char id[24];
	char name[CRGW_SANDBOX_NAME_MAX + 1];
	struct crgw_cgroup_limits limits;
	bool has_usage;
	struct crgw_cgroup_usage usage;
	int64_t ttl_left_s;
	bool has_guard;
	struct crgw_guard_counters guard;
	uint64_t disk_limit; /* 0: no disk of its own */
	bool has_disk;
	uint64_t disk_used, disk_left;
};

struct usage_rows {
	struct usage_row *rows;
	size_t n, cap;
};

static void collect_row(struct crgw_sandbox *sb, void *arg)
{
	struct usage_rows *r = arg;
	struct usage_row *row;

	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		struct usage_row *rows = realloc(r->rows, cap * sizeof(*rows));

		if (!rows)
			return;
		r->rows = rows;
		r->cap = cap;
	}
	row = &r->rows[r->n++];
	memset(row, 0, sizeof(*row));
	memcpy(row->id, sb->id, sizeof(row->id));
	memcpy(row->name, sb->name, sizeof(row->name));
	row->limits = sb->limits;
	row->ttl_left_s = (sb->expires_us - crgw_realtime_us()) / 1000000;
	if (row->ttl_left_s < 0)
		row->ttl_left_s = 0;
	/* sysfs reads are a few microseconds each; the control thread is the only writer of the registry. */
	row->has_usage = crgw_sandbox_usage(sb, &row->usage) == 0;
	row->has_guard = crgw_sandbox_guard_counters(sb, &row->guard) == 0;
	row->disk_limit = sb->disk_limit;
	row->has_disk = sb->disk_limit && crgw_disk_usage(sb->data_dir, &row->disk_used, &row->disk_left) == 0;
}

static void stats(struct evhttp_request *req)
{
	struct crgw_dns_stats d;
	struct crgw_audit_stats a;
	struct crgw_dns_cache_stats c;
	struct usage_rows rows = {0};
	struct crgw_mediation_stats m;
	json_t *o, *arr;
	bool active;
	const char *state = crgw_registry_limits_state(&active);

	crgw_dns_get_stats(&d);
	crgw_audit_get_stats(&a);
	crgw_dns_cache_get_stats(&c);
	crgw_mediation_get_stats(&m);
	o = json_pack("{s:i, s:i, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, "
		      "s:{s:I, s:I, s:I, s:I, s:i}, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:i}}",
		      "sandboxes", crgw_sandbox_count(), "workers", C.cfg->workers, "pool_spoof_packets",
		      (json_int_t)crgw_registry_pool_spoof_packets(), "dns", "queries", (json_int_t)d.queries,
		      "answered_cache", (json_int_t)d.answered_cache, "answered_upstream",
		      (json_int_t)d.answered_upstream, "denied", (json_int_t)d.denied, "formerr", (json_int_t)d.formerr,
		      "servfail", (json_int_t)d.servfail, "rate_limited", (json_int_t)d.rate_limited, "unknown_sandbox",
		      (json_int_t)d.unknown_sandbox, "upstream_queries", (json_int_t)d.upstream_queries,
		      "upstream_failures", (json_int_t)d.upstream_failures, "dns_cache", "hits", (json_int_t)c.hits,
		      "misses", (json_int_t)c.misses, "inserts", (json_int_t)c.inserts, "evictions",
		      (json_int_t)c.evictions, "entries", c.entries, "audit", "queued", (json_int_t)a.queued, "written",
		      (json_int_t)a.written, "lost", (json_int_t)a.lost, "write_errors", (json_int_t)a.write_errors,
		      "rotations", (json_int_t)a.rotations, "bytes", (json_int_t)a.bytes, "queue_depth", a.queue_depth);
	if (o) {
		struct crgw_proxy_stats p;

		crgw_proxy_get_stats(&p);
		json_object_set_new(o, "proxy",
				    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "tunnels_open", (json_int_t)p.tunnels_open,
					      "tunnels_total", (json_int_t)p.tunnels_total, "denied", (json_int_t)p.denied,
					      "upstream_failures", (json_int_t)p.upstream_failures, "bytes_up",
					      (json_int_t)p.bytes_up, "bytes_down", (json_int_t)p.bytes_down));
		json_object_set_new(o, "ebpf", guard_stats_json());
		/* The audit sinks: what each delivered, lost, and holds in its spool. */
		struct crgw_export_stats xs[CRGW_SINKS_MAX];
		size_t nx = crgw_export_get_stats(xs, CRGW_SINKS_MAX);
		json_t *sinks = json_array();

		for (size_t i = 0; i < nx && i < CRGW_SINKS_MAX; i++)
			json_array_append_new(sinks,
					      json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "name", xs[i].name, "type",
							xs[i].type, "delivered", (json_int_t)xs[i].delivered, "lost",
							(json_int_t)xs[i].lost, "failures", (json_int_t)xs[i].failures,
							"spool_bytes", (json_int_t)xs[i].spool_bytes, "connected",
							xs[i].connected));
		json_object_set_new(json_object_get(o, "audit"), "sinks", sinks);
	}
	crgw_sandbox_foreach(collect_row, &rows);
	arr = json_array();
	for (size_t i = 0; arr && i < rows.n; i++) {
		const struct usage_row *r = &rows.rows[i];
		json_t *row = json_pack("{s:s, s:o, s:I}", "id", r->id, "limits", limits_json(&r->limits, !active),
					"ttl_left_s", (json_int_t)r->ttl_left_s);

		if (row && r->name[0])
			json_object_set_new(row, "name", json_string(r->name));
		if (row && r->has_usage)
			json_object_set_new(row, "resources", usage_json(&r->usage));
		if (row && r->has_guard)
			json_object_set_new(row, "traffic", guard_json(&r->guard));
		if (row && r->disk_limit)
			json_object_set_new(row, "disk", disk_json(r->disk_limit, r->has_disk, r->disk_used, &r->disk_left));
		json_array_append_new(arr, row);
	}
	free(rows.rows);
	if (o) {
		json_object_set_new(o, "limits", json_pack("{s:b, s:s, s:s}", "active", active, "cgroup", state, "disk",
							   crgw_registry_disk_state(NULL)));
		json_object_set_new(o, "sandbox_resources", arr ? arr : json_array());
		json_object_set_new(
		    o, "mediation",
		    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "connections_open", (json_int_t)m.connections_open,
			      "requests", (json_int_t)m.requests, "denied", (json_int_t)m.denied, "upstream_failures",
			      (json_int_t)m.upstream_failures, "secrets_injected", (json_int_t)m.secrets_injected,
			      "bytes_up", (json_int_t)m.bytes_up, "bytes_down", (json_int_t)m.bytes_down));
	} else {
		json_decref(arr);
	}
	reply_json(req, 200, o);
}

static void metric(struct evbuffer *out, const char *name, const char *type, const char *help, uint64_t v)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
			    (unsigned long long)v);
}

/* One labelled series per sandbox and figure: memory, CPU, processes, OOM kills, TTL left. */
static void sandbox_metrics(struct evbuffer *out)
{
	static const struct {
		const char *name, *type, *help;
	} series[] = {
	    {"crgw_sandbox_memory_bytes", "gauge", "Memory charged to the sandbox's group."},
	    {"crgw_sandbox_memory_limit_bytes", "gauge", "The sandbox's memory limit (absent: none)."},
	    {"crgw_sandbox_cpu_seconds_total", "counter", "CPU time used by the sandbox's processes."},
	    {"crgw_sandbox_processes", "gauge", "Processes and threads in the sandbox."},
	    {"crgw_sandbox_oom_kills_total", "counter", "Processes of the sandbox killed for want of memory."},
	    {"crgw_sandbox_pids_denied_total", "counter", "Forks refused at the sandbox's process limit."},
	    {"crgw_sandbox_ttl_seconds_left", "gauge", "Seconds until the sandbox's TTL ends."},
	};
	struct usage_rows rows = {0};
	bool active;

	crgw_registry_limits_state(&active);
	evbuffer_add_printf(out,
			    "# HELP crgw_limits_active 1 when sandboxes run under cgroup limits.\n"
			    "# TYPE crgw_limits_active gauge\ncrgw_limits_active %d\n",
			    active ? 1 : 0);
	crgw_sandbox_foreach(collect_row, &rows);
	for (size_t k = 0; k < sizeof(series) / sizeof(series[0]); k++) {
		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", series[k].name, series[k].help, series[k].name,
				    series[k].type);
		for (size_t i = 0; i < rows.n; i++) {
			const struct usage_row *r = &rows.rows[i];
			const struct crgw_cgroup_usage *u = &r->usage;

			if (k == 1 && (!active || !r->limits.memory))
				continue;
			if (k != 1 && k != 6 && !r->has_usage)
				continue;
			evbuffer_add_printf(out, "%s{sandbox=\"%s\"} ", series[k].name, r->id);
			switch (k) {
			case 0:
				evbuffer_add_printf(out, "%llu\n", (unsigned long long)u->memory);
				break;
			case 1:
				evbuffer_add_printf(out, "%llu\n", (unsigned long long)r->limits.memory);
				break;
			case 2:
				evbuffer_add_printf(out, "%llu.%06llu\n", (unsigned long long)(u->cpu_us / 1000000),
						    (unsigned long long)(u->cpu_us % 1000000));
				break;
			case 3:
				evbuffer_add_printf(out, "%llu\n", (unsigned long long)u->pids);
				break;
			case 4:
				evbuffer_add_printf(out, "%llu\n", (unsigned long long)u->oom_kills);
				break;
			case 5:
				evbuffer_add_printf(out, "%llu\n", (unsigned long long)u->pids_denied);
				break;
			default:
				evbuffer_add_printf(out, "%lld\n", (long long)r->ttl_left_s);
				break;
			}
		}
	}
	/* Disks: only the sandboxes that have one. */
	static const struct {
		const char *name, *help;
	} disk_series[] = {
	    {"crgw_sandbox_disk_limit_bytes", "The size of the sandbox's own disk (absent: none)."},
	    {"crgw_sandbox_disk_used_bytes", "What the sandbox's own disk holds."},
	    {"crgw_sandbox_disk_free_bytes", "What the sandbox may still write to its own disk."},
	};

	for (size_t k = 0; k < sizeof(disk_series) / sizeof(disk_series[0]); k++) {
		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", disk_series[k].name, disk_series[k].help,
				    disk_series[k].name);
		for (size_t i = 0; i < rows.n; i++) {
			const struct usage_row *r = &rows.rows[i];

			if (!r->disk_limit || (k && !r->has_disk))
				continue;
			evbuffer_add_printf(out, "%s{sandbox=\"%s\"} %llu\n", disk_series[k].name, r->id,
					    (unsigned long long)(k == 0 ? r->disk_limit : k == 1 ? r->disk_used : r->disk_left));
		}
	}
	/* The eBPF guard's traffic accounting: one series per sandbox and class, gone with the sandbox. */
	for (size_t k = 0; k < 2; k++) {
		const char *name = k ? "crgw_sandbox_bytes_total" : "crgw_sandbox_packets_total";

		evbuffer_add_printf(out,
				    "# HELP %s %s sent by the sandbox, by the eBPF guard's verdict (pass or the "
				    "drop's reason).\n# TYPE %s counter\n",
				    name, k ? "Bytes" : "Packets", name);
		for (size_t i = 0; i < rows.n; i++) {
			const struct usage_row *r = &rows.rows[i];

			for (unsigned c = 0; r->has_guard && c < CRGW_GUARD_CLASS_COUNT; c++)
				evbuffer_add_printf(out, "%s{sandbox=\"%s\",class=\"%s\"} %llu\n", name, r->id,
						    c == CRGW_GUARD_PASS ? "pass" : crgw_guard_reason_name(c),
						    (unsigned long long)(k ? r->guard.bytes[c] : r->guard.packets[c]));
		}
	}
	free(rows.rows);
}

/* ---- the content cache (docs/cache.md, "Operating the cache") ----------------------------------- */

#define CACHE_LS_DEFAULT 10000
#define CACHE_LS_MAX 100000

/*
 * The one gc or verify under way and the request waiting for it. The job runs on a thread of its own
 * (cache/service.c); its callback only stores the result and wakes the control loop, which answers. The
 * lock is held for those few stores, and by control_stop while it drops the event, so that a job ending
 * during shutdown never touches a freed event.
 */
static struct {
	pthread_mutex_t lock;
	struct event *ev;
	struct evhttp_request *req; /* NULL once its client has gone */
	struct crgw_cache_job_result result;
	uint64_t target;
	uintptr_t seq, result_seq; /* the job `req` waits for, and the job `result` is from */
} J = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool cache_or_error(struct evhttp_request *req)
{
	if (crgw_cache_service())
		return true;
	reply_error(req, 409, "cache_disabled", "the content cache is disabled (crgw.yaml cache.enabled: false)");
	return false;
}

static json_t *latency_json(bool hit)
{
	struct crgw_cache_latency l;

	crgw_cache_service_latency(hit, &l);
	return json_pack("{s:I, s:f, s:I}", "count", (json_int_t)l.count, "sum_seconds", l.sum_us / 1e6, "bytes",
			 (json_int_t)l.bytes);
}

static void cache_stats(struct evhttp_request *req)
{
	struct crgw_cache_stats s;
	json_t *o;

	if (!cache_or_error(req))
		return;
	crgw_cache_stats(crgw_cache_service(), &s);
	o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b}", "dir",
		      C.cfg->cache_dir, "objects", (json_int_t)s.objects, "bytes", (json_int_t)s.bytes, "max_bytes",
		      (json_int_t)s.max_bytes, "hits", (json_int_t)s.hits, "misses", (json_int_t)s.misses, "hit_ratio",
		      s.hits + s.misses ? json_real((double)s.hits / (double)(s.hits + s.misses)) : json_null(),
		      "bytes_served", (json_int_t)s.bytes_served, "bytes_stored", (json_int_t)s.bytes_stored,
		      "evictions", (json_int_t)s.evictions, "corrupt", (json_int_t)s.corrupt, "fills_failed",
		      (json_int_t)s.fills_failed, "fills_active", (json_int_t)s.fills_active, "offline",
		      C.cfg->cache_offline, "verify_always", C.cfg->cache_verify_always);
	if (o)
		json_object_set_new(o, "latency",
				    json_pack("{s:o, s:o}", "hits", latency_json(true), "misses", latency_json(false)));
	reply_json(req, 200, o);
}

struct ls_walk {
	json_t *arr;
	size_t limit, total;
};

static int ls_one(void *arg, const struct crgw_cache_entry *e)
{
	struct ls_walk *w = arg;
	char digest[CRGW_DIGEST_TEXT_MAX], at[40];

	if (w->total++ >= w->limit)
		return 0; /* counted, not listed */
	if (crgw_digest_format(&e->digest, digest, sizeof(digest)) < 0)
		return 0;
	rfc3339((int64_t)e->atime * 1000000, at, sizeof(at));
	json_array_append_new(w->arr, json_pack("{s:s, s:I, s:s, s:b}", "digest", digest, "size", (json_int_t)e->size,
						"last_access", at, "verified", e->verified));
	return 0;
}

static void cache_ls(struct evhttp_request *req, const struct evkeyvalq *query)
{
	const char *limit_s = evhttp_find_header(query, "limit");
	struct ls_walk w = {.limit = CACHE_LS_DEFAULT};
	char *end;
	int err;

	if (!cache_or_error(req))
		return;
	if (limit_s) {
		unsigned long n = strtoul(limit_s, &end, 10);

		if (*limit_s < '0' || *limit_s > '9' || *end || n > CACHE_LS_MAX) {
			reply_error(req, 400, "request_invalid", "limit must be 0..100000");
			return;
		}
		w.limit = n;
	}
	w.arr = json_array();
	if (!w.arr) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	/* In eviction order: the first listed is the next to go. */
	err = crgw_cache_foreach(crgw_cache_service(), ls_one, &w);
	if (err) {
		json_decref(w.arr);
		reply_error(req, 500, "cache_error", strerror(-err));
		return;
	}
	reply_json(req, 200,
		   json_pack("{s:o, s:I, s:b}", "objects", w.arr, "total", (json_int_t)w.total, "truncated",
			     w.total > w.limit));
}

/* On the job's thread: hand the result to the control loop. */
static void cache_job_done(void *arg, const struct crgw_cache_job_result *r)
{
	pthread_mutex_lock(&J.lock);
	J.result = *r;
	J.result_seq = (uintptr_t)arg;
	if (J.ev)
		event_active(J.ev, EV_READ, 0);
	pthread_mutex_unlock(&J.lock);
}

static void cache_job_client_gone(struct evhttp_connection *conn, void *arg)
{
	(void)conn;
	(void)arg;
	pthread_mutex_lock(&J.lock);
	J.req = NULL;
	pthread_mutex_unlock(&J.lock);
}

static void cache_job_reply(evutil_socket_t fd, short what, void *arg)
{
	struct crgw_cache_job_result r;
	struct evhttp_request *req;

	(void)fd;
	(void)what;
	(void)arg;
	pthread_mutex_lock(&J.lock);
	r = J.result;
	/* A result whose client left may be read after the next job started: it is not that job's answer. */
	req = J.result_seq == J.seq ? J.req : NULL;
	if (req)
		J.req = NULL;
	pthread_mutex_unlock(&J.lock);
	if (!req)
		return;
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
	if (r.err) {
		reply_error(req, 500, "cache_error", strerror(-r.err));
	} else if (r.kind == CRGW_CACHE_JOB_GC) {
		reply_json(req, 200,
			   json_pack("{s:I, s:I, s:I, s:I, s:I}", "evicted", (json_int_t)r.evicted, "target_bytes",
				     (json_int_t)J.target, "bytes_before", (json_int_t)r.bytes_before, "bytes_after",
				     (json_int_t)r.bytes_after, "duration_ms", (json_int_t)(r.duration_us / 1000)));
	} else {
		reply_json(req, 200,
			   json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "checked", (json_int_t)r.verify.checked, "ok",
				     (json_int_t)r.verify.ok, "corrupt", (json_int_t)r.verify.corrupt, "errors",
				     (json_int_t)r.verify.errors, "bytes_after", (json_int_t)r.bytes_after,
				     "duration_ms", (json_int_t)(r.duration_us / 1000)));
	}
}

/* POST /v1/cache/gc {"target": "SIZE"} (default: the bound), POST /v1/cache/verify. */
static void cache_job(struct evhttp_request *req, enum crgw_cache_job_kind kind)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	uint64_t target = C.cfg->cache_max_bytes;
	int err;

	if (!cache_or_error(req))
		return;
	if (kind == CRGW_CACHE_JOB_GC && len) {
		const char *t = NULL;
		json_error_t jerr;
		json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &jerr);

		if (!body || json_unpack_ex(body, &jerr, JSON_STRICT, "{s?s}", "target", &t) ||
		    (t && (crgw_size_parse(t, &target) || target > INT64_MAX))) {
			/* Above INT64_MAX the answer's target_bytes, a JSON integer, would print negative. */
			json_decref(body);
			reply_error(req, 400, "request_invalid",
				    "body: {\"target\": SIZE}, a size such as 0, 512M or 2GiB");
			return;
		}
		json_decref(body);
	}
	pthread_mutex_lock(&J.lock);
	if (J.req) {
		pthread_mutex_unlock(&J.lock);
		reply_error(req, 409, "cache_busy", "a cache gc or verify is already running");
		return;
	}
	J.req = req;
	J.target = target;
	J.seq++;
	pthread_mutex_unlock(&J.lock);
	err = crgw_cache_service_job(kind, target, cache_job_done, (void *)J.seq);
	if (err) {
		pthread_mutex_lock(&J.lock);
		J.req = NULL;
		pthread_mutex_unlock(&J.lock);
		if (err == -EBUSY)
			reply_error(req, 409, "cache_busy", "a cache gc or verify is already running");
		else
			reply_error(req, 500, "cache_error", strerror(-err));
		return;
	}
	/* Hashing a large cache takes minutes: the connection waits without the usual minute's timeout. */
	evhttp_connection_set_timeout(evhttp_request_get_connection(req), 7 * 86400);
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), cache_job_client_gone, NULL);
}

static void cache_histogram(struct evbuffer *out, const char *name, const char *help, bool hit)
{
	struct crgw_cache_latency l;

	crgw_cache_service_latency(hit, &l);
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (size_t i = 0; i < CRGW_CACHE_LATENCY_BUCKETS; i++)
		evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, crgw_cache_latency_bounds_us[i] / 1e6,
				    (unsigned long long)l.buckets[i]);
	evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %llu.%06llu\n%s_count %llu\n", name,
			    (unsigned long long)l.buckets[CRGW_CACHE_LATENCY_BUCKETS], name,
			    (unsigned long long)(l.sum_us / 1000000), (unsigned long long)(l.sum_us % 1000000), name,
			    (unsigned long long)l.count);
}

/* Nothing at all while the cache is disabled: no series is better than series of zeros that look real. */
static void cache_metrics(struct evbuffer *out)
{
	struct crgw_cache_stats s;

	if (!crgw_cache_service())
		return;
	crgw_cache_stats(crgw_cache_service(), &s);
	metric(out, "crgw_cache_objects", "gauge", "Objects in the content cache.", s.objects);
	metric(out, "crgw_cache_bytes", "gauge", "Bytes of the content cache's objects.", s.bytes);
	metric(out, "crgw_cache_max_bytes", "gauge", "The content cache's bound (cache.max_bytes).", s.max_bytes);
	metric(out, "crgw_cache_hits_total", "counter", "Objects opened from the content cache.", s.hits);
	metric(out, "crgw_cache_misses_total", "counter", "Objects asked of the content cache and not in it.",
	       s.misses);
	metric(out, "crgw_cache_bytes_served_total", "counter", "Bytes served from the content cache.", s.bytes_served);
	metric(out, "crgw_cache_bytes_stored_total", "counter", "Bytes of verified objects stored in the cache.",
	       s.bytes_stored);
	metric(out, "crgw_cache_evictions_total", "counter", "Objects evicted from the content cache.", s.evictions);
	metric(out, "crgw_cache_corrupt_total", "counter",
	       "Cached objects found not matching their digest, and removed.", s.corrupt);
	metric(out, "crgw_cache_fills_failed_total", "counter",
	       "Fills that kept nothing: digest mismatches, write errors, aborts.", s.fills_failed);
	cache_histogram(out, "crgw_cache_hit_latency_seconds",
			"Time from a request to its last byte, for responses served from the cache.", true);
	cache_histogram(out, "crgw_cache_miss_latency_seconds",
			"Time from a request to its last byte, for responses the cache could not serve.", false);
}

static void metrics(struct evhttp_request *req)
{
	struct evbuffer *out = evbuffer_new();
	struct crgw_dns_stats d;
	struct crgw_audit_stats a;
	struct crgw_dns_cache_stats c;

	if (!out) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	crgw_dns_get_stats(&d);
	crgw_audit_get_stats(&a);
	crgw_dns_cache_get_stats(&c);
	metric(out, "crgw_sandboxes", "gauge", "Registered sandboxes.", crgw_sandbox_count());
	metric(out, "crgw_dns_queries_total", "counter", "DNS queries from sandboxes.", d.queries);
	metric(out, "crgw_dns_answered_cache_total", "counter", "Allowed queries answered from the cache.",
	       d.answered_cache);
	metric(out, "crgw_dns_answered_upstream_total", "counter", "Queries answered after an upstream lookup.",
	       d.answered_upstream);
	metric(out, "crgw_dns_denied_total", "counter", "Queries for names the policy denies.", d.denied);
	metric(out, "crgw_dns_formerr_total", "counter", "Malformed queries.", d.formerr);
	metric(out, "crgw_dns_servfail_total", "counter", "Queries answered SERVFAIL.", d.servfail);
	metric(out, "crgw_dns_rate_limited_total", "counter", "Queries refused by the per-sandbox rate limit.",
	       d.rate_limited);
	metric(out, "crgw_dns_unknown_sandbox_total", "counter", "Queries from unregistered sources.",
	       d.unknown_sandbox);
	metric(out, "crgw_dns_upstream_queries_total", "counter", "Lookups sent upstream.", d.upstream_queries);
	metric(out, "crgw_dns_upstream_failures_total", "counter", "Upstream lookups that failed.",
	       d.upstream_failures);
	metric(out, "crgw_dns_cache_entries", "gauge", "Entries in the DNS cache.", c.entries);
	metric(out, "crgw_dns_cache_hits_total", "counter", "DNS cache hits.", c.hits);
	metric(out, "crgw_dns_cache_misses_total", "counter", "DNS cache misses.", c.misses);
	metric(out, "crgw_pool_spoof_packets_total", "counter",
	       "Packets with a sandbox-pool source on a non-sandbox interface, dropped.",
	       crgw_registry_pool_spoof_packets());
	metric(out, "crgw_audit_events_written_total", "counter", "Audit events written.", a.written);
	metric(out, "crgw_audit_events_lost_total", "counter", "Audit events that could not be queued or written.",
	       a.lost);
	metric(out, "crgw_audit_write_errors_total", "counter", "Failed audit writes (retried).", a.write_errors);
	metric(out, "crgw_audit_queue_depth", "gauge", "Audit events waiting for the writer.", a.queue_depth);
	metric(out, "crgw_audit_rotations_total", "counter", "Audit log rotations.", a.rotations);
	{
		struct crgw_mediation_stats m;

		crgw_mediation_get_stats(&m);
		metric(out, "crgw_mediation_connections", "gauge", "Open connections to mediation (8170).",
		       m.connections_open);
		metric(out, "crgw_mediation_requests_total", "counter", "Requests to mediation.", m.requests);
		metric(out, "crgw_mediation_denied_total", "counter", "Mediation requests refused.", m.denied);
		metric(out, "crgw_mediation_upstream_failures_total", "counter",
		       "Mediation requests whose upstream failed.", m.upstream_failures);
		metric(out, "crgw_mediation_secrets_injected_total", "counter",
		       "Requests sent upstream with a secret's header.", m.secrets_injected);
		metric(out, "crgw_mediation_bytes_up_total", "counter", "Request body bytes sent upstream.",
		       m.bytes_up);
		metric(out, "crgw_mediation_bytes_down_total", "counter", "Response body bytes sent to sandboxes.",
		       m.bytes_down);
	}
	{
		struct crgw_guard *g;
		struct crgw_guard_stats st = {0};

		crgw_registry_enforcement(NULL, &g);
		if (g)
			crgw_guard_stats(g, &st);
		metric(out, "crgw_ebpf_active", "gauge", "1 when the eBPF guard enforces on every sandbox.", g ? 1 : 0);
		metric(out, "crgw_ebpf_events_suppressed_total", "counter",
		       "Drop reports the guard's per-sandbox limit held back (the packets were dropped and counted).",
		       st.events_suppressed);
		metric(out, "crgw_ebpf_events_lost_total", "counter", "Drop reports lost to a full ring buffer.",
		       st.events_lost);
	}
	cache_metrics(out);
	sandbox_metrics(out);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

static void health(struct evhttp_request *req)
{
	struct crgw_audit_stats a;
	bool ok;

	crgw_audit_get_stats(&a);
	/* Unhealthy while the audit log cannot keep up: decisions are then being refused or lost. */
	ok = a.queue_depth < 1024;
	reply_json(req, ok ? 200 : 503,
		   json_pack("{s:s, s:s, s:i, s:i, s:I}", "status", ok ? "ok" : "degraded", "version", CRGW_VERSION,
			     "sandboxes", crgw_sandbox_count(), "workers", C.cfg->workers, "uptime_s",
			     (json_int_t)((crgw_realtime_us() - C.started_us) / 1000000)));
}

static void capabilities(struct evhttp_request *req)
{
	bool active, nft;
	struct crgw_guard *guard;
	const char *state = crgw_registry_limits_state(&active);
	const char *ebpf_state = crgw_registry_enforcement(&nft, &guard);

	json_t *o =
	    json_pack("{s:{s:{s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:s}}, s:{s:b, s:b, s:s, s:b}, "
		      "s:{s:b, s:b, s:s}}",
		      "backends", "netns", "network_default_deny", 1, "network_host_port_filtering", 1, "dns_control",
		      1, "policy_immutability", 1, "audit_event_emission", 1, "secret_isolation", 1, "resource_limits",
		      active, "ttl", 1, "isolation", "namespaces (weaker than a VM)", "enforcement", "nftables", nft,
		      "ebpf", guard != NULL, "ebpf_state", ebpf_state, "transparent_proxies", nft, "resource_limits",
		      "active", active, "optional", C.cfg->limits_optional, "cgroup", state);

	if (o)
		json_object_set_new(json_object_get(o, "resource_limits"), "disk",
				    json_string(crgw_registry_disk_state(NULL)));

	/* The gateway's side of a VM sandbox: a TAP with the same rules, the VMM as the holder. */
	if (o && access("/dev/net/tun", R_OK | W_OK) == 0)
		json_object_set_new(json_object_get(o, "backends"), "qemu",
				    json_pack("{s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:s}", "network_default_deny",
					      1, "network_host_port_filtering", 1, "dns_control", 1,
					      "policy_immutability", 1, "audit_event_emission", 1, "secret_isolation",
					      1, "resource_limits", active, "ttl", 1, "isolation",
					      "a virtual machine (its own kernel)"));
	reply_json(req, 200, o);
}

/* ---- routing ------------------------------------------------------------------------------------ */

/*
 * The socket's mode keeps others out, but a path is not the only way to a socket: a workspace mounted with
 * an idmap shows a root-owned socket inside it as the sandbox root's own. So the peer's credentials are
 * checked too: root, the socket's owner, or a member of its group (primary or supplementary).
 */
static bool peer_allowed(struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char path[64], buf[4096];
	FILE *f;
	bool ok = false;

	if (!bev || getsockopt(bufferevent_getfd(bev), SOL_SOCKET, SO_PEERCRED, &cred, &len) || len != sizeof(cred))
		return false;
	if (cred.uid == 0 || cred.uid == C.sock_uid || cred.gid == C.sock_gid)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)cred.pid);
	f = fopen(path, "re");
	while (f && !ok && fgets(buf, sizeof(buf), f)) {
		if (strncmp(buf, "Groups:", 7))
			continue;
		for (char *p = buf + 7, *end; *p; p = end) {
			unsigned long g = strtoul(p, &end, 10);

			if (end == p)
				break;
			ok |= g == C.sock_gid;
		}
	}
	if (f)
		fclose(f);
	if (!ok)
		log_warn("control API refused a peer", "pid=%d uid=%u gid=%u", (int)cred.pid, cred.uid, cred.gid);
	return ok;
}

static void route(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *qs = uri ? evhttp_uri_get_query(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evkeyvalq query = {0};

	(void)arg;
	if (!peer_allowed(req)) {
		reply_error(req, 403, "request_invalid", "this peer may not use the control API");
		return;
	}
	/* Before the path: a CONNECT's target is an authority, which has none. */
	if (cmd == EVHTTP_REQ_CONNECT) {
		reply_error(req, 405, "request_invalid", "the control API is no proxy");
		return;
	}
	if (!path) {
		reply_error(req, 400, "request_invalid", "bad request target");
		return;
	}
	TAILQ_INIT(&query);
	if (qs && evhttp_parse_query_str(qs, &query)) {
		reply_error(req, 400, "request_invalid", "bad query string");
		return;
	}
	if (!strcmp(path, "/v1/sandboxes")) {
		if (cmd == EVHTTP_REQ_GET)
			sandboxes_list(req);
		else if (cmd == EVHTTP_REQ_POST)
			sandbox_create(req);
		else
			reply_error(req, 405, "request_invalid", "use GET or POST");
	} else if (!strncmp(path, "/v1/sandboxes/", 14) && path[14] && !strchr(path + 14, '/')) {
		sandbox_one(req, path + 14);
	} else if (!strncmp(path, "/v1/sandboxes/", 14) && strlen(path) < 14 + 64 + 9 && path[14] && path[14] != '/' &&
		   strchr(path + 14, '/') && !strcmp(strchr(path + 14, '/'), "/timings")) {
		char id[65];

		snprintf(id, sizeof(id), "%.*s", (int)(strchr(path + 14, '/') - (path + 14)), path + 14);
		sandbox_timings(req, id);
	} else if (!strcmp(path, "/v1/reload")) {
		if (cmd == EVHTTP_REQ_POST)
			reload(req);
		else
			reply_error(req, 405, "request_invalid", "use POST");
	} else if (!strcmp(path, "/v1/policies")) {
		if (cmd == EVHTTP_REQ_GET)
			policies_list(req);
		else if (cmd == EVHTTP_REQ_POST)
			policy_push(req);
		else
			reply_error(req, 405, "request_invalid", "use GET or POST");
	} else if (!strncmp(path, "/v1/policies/", 13)) {
		if (cmd == EVHTTP_REQ_GET)
			policy_get(req, path + 13);
		else
			reply_error(req, 405, "request_invalid", "use GET");
	} else if (!strcmp(path, "/v1/cache/gc") || !strcmp(path, "/v1/cache/verify")) {
		if (cmd == EVHTTP_REQ_POST)
			cache_job(req, path[10] == 'g' ? CRGW_CACHE_JOB_GC : CRGW_CACHE_JOB_VERIFY);
		else
			reply_error(req, 405, "request_invalid", "use POST");
	} else if (cmd != EVHTTP_REQ_GET) {
		reply_error(req, 405, "request_invalid", "use GET");
	} else if (!strcmp(path, "/v1/audit")) {
		audit_tail(req, &query);
	} else if (!strcmp(path, "/v1/stats")) {
		stats(req);
	} else if (!strcmp(path, "/metrics")) {
		metrics(req);
	} else if (!strcmp(path, "/v1/cache")) {
		cache_stats(req);
	} else if (!strcmp(path, "/v1/cache/objects")) {
		cache_ls(req, &query);
	} else if (!strcmp(path, "/v1/health")) {
		health(req);
	} else if (!strcmp(path, "/v1/capabilities")) {
		capabilities(req);
	} else {
		reply_error(req, 404, "not_found", "no such endpoint");
	}
	evhttp_clear_headers(&query);
}

/* A socket file nobody answers on is a dead gateway's; one that answers is a live one. */
static int take_over_path(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, err = 0;

	if (lstat(path, &st) != 0)
		return 0;
	/* Only a socket is ours to replace: a mistyped path must not cost the file that is there. */
	if (!S_ISSOCK(st.st_mode)) {
		log_error("the control path is not a socket: not replacing it", "path=\"%s\"", path);
		return -ENOTSOCK;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
		err = -EADDRINUSE;
	else if (unlink(path) != 0)
		err = -errno;
	close(fd);
	return err;
}

int crgw_control_start(struct event_base *base, const struct crgw_config *cfg)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const char *path = cfg->control_path;
	int err;

	C.cfg = cfg;
	C.base = base;
	C.started_us = crgw_realtime_us();
	crgw_lifetime_init(base);
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	err = take_over_path(path);
	if (err)
		return err;
	C.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (C.fd < 0)
		return -errno;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	/* Created with the final mode, never briefly wider (no chmod window). */
	mode_t old = umask(0777 & ~cfg->control_mode);

	err = bind(C.fd, (struct sockaddr *)&sun, sizeof(sun)) ? -errno : 0;
	umask(old);
	struct stat st;

	if (!err && stat(path, &st) == 0) {
		C.sock_uid = st.st_uid;
		C.sock_gid = st.st_gid;
	}
	if (err || listen(C.fd, 128)) {
		err = err ? err : -errno;
		close(C.fd);
		C.fd = -1;
		return err;
	}
	C.http = evhttp_new(base);
	C.notify_ev = event_new(base, -1, 0, feed_followers, NULL);
	J.ev = event_new(base, -1, 0, cache_job_reply, NULL);
	if (!C.http || !C.notify_ev || !J.ev || !evhttp_accept_socket_with_handle(C.http, C.fd)) {
		crgw_control_stop();
		return -ENOMEM;
	}
	evhttp_set_max_body_size(C.http, BODY_MAX);
	evhttp_set_max_headers_size(C.http, 16384);
	evhttp_set_timeout(C.http, 60);
	/* The router answers every method it does not take with a JSON 405; libevent's own refusal is HTML. */
	evhttp_set_allowed_methods(C.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE | EVHTTP_REQ_PUT |
					       EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS |
					       EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
	evhttp_set_gencb(C.http, route, NULL);
	crgw_audit_set_notify(audit_notify, NULL);
	return 0;
}

void crgw_control_stop(void)
{
	crgw_lifetime_fini();
	crgw_audit_set_notify(NULL, NULL);
	while (C.followers) {
		struct follower *f = C.followers;

		C.followers = f->next;
		evhttp_connection_set_closecb(evhttp_request_get_connection(f->req), NULL, NULL);
		evhttp_send_reply_end(f->req);
		free(f);
	}
	C.nfollowers = 0;
	/* Shutdown finishes every teardown anyway (main.c): the waiting clients are told it goes on. */
	while (C.releases)
		release_answer(C.releases, false);
	/* A job still running finishes into nothing; its client's connection goes with evhttp below. */
	pthread_mutex_lock(&J.lock);
	if (J.ev)
		event_free(J.ev);
	J.ev = NULL;
	if (J.req)
		evhttp_connection_set_closecb(evhttp_request_get_connection(J.req), NULL, NULL);
	J.req = NULL;
	pthread_mutex_unlock(&J.lock);
	if (C.http) {
		evhttp_free(C.http);
		C.http = NULL;
		C.fd = -1; /* closed by evhttp */
	}
	if (C.fd >= 0) {
		close(C.fd);
		C.fd = -1;
	}
	if (C.notify_ev) {
		event_free(C.notify_ev);
		C.notify_ev = NULL;
	}
	if (C.cfg)
		unlink(C.cfg->control_path);
}
