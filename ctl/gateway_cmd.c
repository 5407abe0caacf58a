/* SPDX-License-Identifier: Apache-2.0 */
/* crgw-ctl sandbox ls|show|rm, audit tail [-f], stats: views of a running gateway. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crgw/policy_diff.h"
#include "ctl.h"

char *ctl_shown(const char *s, size_t len)
{
	char *shown = malloc(len + 1);

	return shown ? crgw_audit_text_safe(shown, len + 1, s, len) : NULL;
}

json_t *ctl_json_text(const char *s)
{
	size_t len = strlen(s);
	char *buf = malloc(len * 3 + 1);
	json_t *j = buf ? json_stringn(buf, crgw_text_utf8_repair(buf, s, len)) : NULL;

	free(buf);
	return j;
}

static bool has_flag(int *argc, char **argv, const char *flag)
{
	for (int i = 1; i < *argc; i++)
		if (!strcmp(argv[i], flag)) {
			memmove(&argv[i], &argv[i + 1], (size_t)(*argc - i) * sizeof(*argv));
			(*argc)--;
			return true;
		}
	return false;
}

/* GETs `path` and parses the JSON answer; prints why on failure. */
static json_t *get_json(const char *path, const char *what, int *exit_code)
{
	struct ctl_response r;
	char err[512];
	json_t *j;

	*exit_code = CTL_EXIT_ERROR;
	if (ctl_request("GET", path, NULL, &r, err, sizeof(err))) {
		fprintf(stderr, "crgw-ctl: %s\n", err);
		return NULL;
	}
	if (r.status != 200) {
		ctl_print_error(what, &r);
		free(r.body);
		return NULL;
	}
	j = json_loads(r.body, 0, NULL);
	free(r.body);
	if (!j)
		fprintf(stderr, "crgw-ctl: %s: the gateway's answer is not JSON\n", what);
	else
		*exit_code = CTL_EXIT_OK;
	return j;
}

static void print_pretty(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (s)
		puts(s);
	free(s);
}

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "-";
}

/* "1h02m", "4m09s", "12s": how long a sandbox has left. */
static void format_left(json_int_t s, char *buf, size_t size)
{
	if (s >= 3600)
		snprintf(buf, size, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
	else if (s >= 60)
		snprintf(buf, size, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
	else
		snprintf(buf, size, "%llds", (long long)s);
}

static int sandbox_ls(bool json)
{
	int rc;
	json_t *j = get_json("/v1/sandboxes", "sandbox ls", &rc), *sb;
	size_t i;

	if (!j)
		return rc;
	if (json) {
		print_pretty(j);
	} else {
		printf("%-16s %-16s %-14s %-9s %-8s %-9s %-19s %-27s %s\n", "ID", "NAME", "GUEST", "TTL LEFT",
		       "BACKEND", "WORKSPACE", "POLICY", "CREATED", "RUN");
		json_array_foreach(json_object_get(j, "sandboxes"), i, sb) {
			char left[32];

			format_left(json_integer_value(json_object_get(sb, "ttl_left_s")), left, sizeof(left));
			const char *run_id = str(sb, "run_id");
			char *shown = ctl_shown(run_id, strlen(run_id));

			printf("%-16s %-16s %-14s %-9s %-8s %-9s %-19.19s %-27s %s\n", str(sb, "id"), str(sb, "name"),
			       str(sb, "guest"), left, str(sb, "backend"),
			       str(json_object_get(sb, "workspace"), "mode"), str(sb, "policy_hash"), str(sb, "created"),
			       shown ? shown : "?");
			free(shown);
		}
	}
	json_decref(j);
	return CTL_EXIT_OK;
}

/* Any JSON value for people, nested objects indented under their key. */
static void print_value(const char *key, json_t *v, int indent)
{
	const char *k2;
	json_t *v2;
	size_t i;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		printf("%*s%s:\n", indent, "", key);
		json_object_foreach(v, k2, v2)
			print_value(k2, v2, indent + 2);
		break;
	case JSON_ARRAY:
		printf("%*s%s:\n", indent, "", key);
		json_array_foreach(v, i, v2) {
			char idx[32];

			snprintf(idx, sizeof(idx), "- %zu", i);
			print_value(idx, v2, indent + 2);
		}
		break;
	case JSON_STRING: {
		/* A run id is the caller's text: shown safely, and "-" when there is none, as for null. */
		char *shown = json_string_length(v) ? ctl_shown(json_string_value(v), json_string_length(v)) : NULL;

		printf("%*s%-*s %s\n", indent, "", 24 - indent, key, shown ? shown : "-");
		free(shown);
		break;
	}
	case JSON_INTEGER:
		printf("%*s%-*s %lld\n", indent, "", 24 - indent, key, (long long)json_integer_value(v));
		break;
	case JSON_REAL: printf("%*s%-*s %g\n", indent, "", 24 - indent, key, json_real_value(v)); break;
	case JSON_TRUE: printf("%*s%-*s true\n", indent, "", 24 - indent, key); break;
	case JSON_FALSE: printf("%*s%-*s false\n", indent, "", 24 - indent, key); break;
	default: printf("%*s%-*s -\n", indent, "", 24 - indent, key); break;
	}
}

static int sandbox_show(const char *id, bool json)
{
	char path[256];
	int rc;
	json_t *j, *v;
	const char *key;

	if (!ctl_sandbox_ref_ok(id)) {
		fprintf(stderr, "crgw-ctl: '%s' is not a sandbox id or name\n", id);
		return CTL_EXIT_ERROR;
	}
	snprintf(path, sizeof(path), "/v1/sandboxes/%s", id);
	j = get_json(path, id, &rc);
	if (!j)
		return rc;
	if (json) {
		print_pretty(j);
	} else {
		json_object_foreach(j, key, v)
			print_value(key, v, 0);
	}
	json_decref(j);
	return CTL_EXIT_OK;
}

static int sandbox_rm(int n, char **ids)
{
	int rc = CTL_EXIT_OK;

	for (int i = 0; i < n; i++) {
		struct ctl_response r;
		char path[256], err[512];

		if (!ctl_sandbox_ref_ok(ids[i])) {
			fprintf(stderr, "crgw-ctl: '%s' is not a sandbox id or name\n", ids[i]);
			rc = CTL_EXIT_ERROR;
			continue;
		}
		snprintf(path, sizeof(path), "/v1/sandboxes/%s", ids[i]);
		if (ctl_request("DELETE", path, NULL, &r, err, sizeof(err))) {
			fprintf(stderr, "crgw-ctl: %s\n", err);
			return CTL_EXIT_ERROR;
		}
		if (r.status == 200) {
			json_t *j = r.body ? json_loads(r.body, 0, NULL) : NULL;
			const char *teardown = json_string_value(json_object_get(j, "teardown"));

			/* The answer comes when the sandbox is gone; a teardown past the gateway's bound goes on. */
			if (teardown && !strcmp(teardown, "continuing"))
				printf("%s released (its processes or data are still being removed)\n", ids[i]);
			else
				printf("%s released\n", ids[i]);
			json_decref(j);
		} else {
			ctl_print_error(ids[i], &r);
			rc = CTL_EXIT_ERROR;
		}
		free(r.body);
	}
	return rc;
}

static const char sandbox_usage[] =
	"usage: crgw-ctl sandbox ls [--json]             the running sandboxes, their TTL left\n"
	"       crgw-ctl sandbox show [--json] SANDBOX   one sandbox: limits, resources, counters\n"
	"       crgw-ctl sandbox diff [--json] SANDBOX   what a copy-mode sandbox changed in /workspace\n"
	"       crgw-ctl sandbox rm SANDBOX...           release sandboxes\n"
	"SANDBOX is an id or a name.\n";

int cmd_sandbox(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "diff"))
		return sandbox_diff(argc - 1, argv + 1);
	if (has_flag(&argc, argv, "--help") || has_flag(&argc, argv, "-h")) {
		fputs(sandbox_usage, stdout);
		return CTL_EXIT_OK;
	}
	bool json = has_flag(&argc, argv, "--json");

	if (argc >= 2 && !strcmp(argv[1], "ls") && argc == 2)
		return sandbox_ls(json);
	if (argc == 3 && !strcmp(argv[1], "show"))
		return sandbox_show(argv[2], json);
	if (argc >= 3 && !strcmp(argv[1], "rm"))
		return sandbox_rm(argc - 2, argv + 2);
	fputs(sandbox_usage, stderr);
	return CTL_EXIT_ERROR;
}

/* ---- audit tail --------------------------------------------------------------------------------- */

/* A field of an event for a terminal, in `buf` (1,100 bytes): '?' for what could move its cursor. */
static const char *shown(json_t *o, const char *key, char *buf)
{
	const char *s = str(o, key);

	return crgw_audit_text_safe(buf, 1100, s, strlen(s));
}

/* One line per event for people; --json passes the events through untouched. */
static int print_event(const char *text, size_t len, void *arg)
{
	bool json = *(bool *)arg;
	json_t *e;

	if (len == 0)
		return 0;
	if (json) {
		printf("%s\n", text);
		fflush(stdout);
		return 0;
	}
	e = json_loads(text, 0, NULL);
	if (!e) {
		printf("%s\n", text);
		return 0;
	}
	json_t *port = json_object_get(e, "dst_port");
	char f[8][1100];

	/* Shown, not printed: a field that carried an escape sequence must not drive the reader's terminal. */
	printf("%s %-18s %-5s %-24s %-7s %-16s %s", shown(e, "ts", f[0]), shown(e, "event", f[1]),
	       shown(e, "action", f[2]), shown(e, "reason_code", f[3]), shown(e, "service", f[4]),
	       shown(e, "sandbox_id", f[5]), shown(e, json_object_get(e, "dst_host") ? "dst_host" : "dst_ip", f[6]));
	if (port)
		printf(":%lld", (long long)json_integer_value(port));
	/* A registry event's package and version: what was installed, or refused. */
	if (json_object_get(e, "package")) {
		printf(" %s", shown(e, "package", f[7]));
		if (json_object_get(e, "version"))
			printf("@%s", shown(e, "version", f[7]));
	}
	if (json_object_get(e, "bytes_up"))
		printf(" (%lld bytes up, %lld down, %lld ms)", (long long)json_integer_value(json_object_get(e, "bytes_up")),
		       (long long)json_integer_value(json_object_get(e, "bytes_down")),
		       (long long)json_integer_value(json_object_get(e, "duration_ms")));
	if (json_object_get(e, "detail"))
		printf(" (%s)", shown(e, "detail", f[0]));
	printf("\n");
	fflush(stdout);
	json_decref(e);
	return 0;
}

int cmd_audit(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "lines", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	bool follow = false, json = false;
	unsigned long lines = 20;
	char path[128], err[512], *end;
	int c;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
			  (argc >= 3 && !strcmp(argv[1], "tail") && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))))) {
		printf("usage: crgw-ctl audit tail [-f] [-n LINES] [--json]\n"
		       "Prints the last LINES audit events (default 20); -f follows live events.\n");
		return CTL_EXIT_OK;
	}
	if (argc < 2 || strcmp(argv[1], "tail")) {
		fprintf(stderr, "usage: crgw-ctl audit tail [-f] [-n LINES] [--json]\n");
		return CTL_EXIT_ERROR;
	}
	optind = 1;
	while ((c = getopt_long(argc - 1, argv + 1, "fn:", opts, NULL)) != -1) {
		switch (c) {
		case 'f': follow = true; break;
		case 'j': json = true; break;
		case 'n':
			errno = 0;
			lines = strtoul(optarg, &end, 10);
			if (errno || *end || *optarg == '\0' || lines > 4096) {
				fprintf(stderr, "crgw-ctl: -n wants 0..4096\n");
				return CTL_EXIT_ERROR;
			}
			break;
		default:
			fprintf(stderr, "usage: crgw-ctl audit tail [-f] [-n LINES] [--json]\n");
			return CTL_EXIT_ERROR;
		}
	}
	if (optind < argc - 1) {
		fprintf(stderr, "crgw-ctl audit tail: unexpected '%s'\nusage: crgw-ctl audit tail [-f] [-n LINES] [--json]\n",
			argv[optind + 1]);
		return CTL_EXIT_ERROR;
	}
	snprintf(path, sizeof(path), "/v1/audit?lines=%lu%s", lines, follow ? "&follow=1" : "");
	if (ctl_stream(path, print_event, &json, err, sizeof(err))) {
		fprintf(stderr, "crgw-ctl: %s\n", err);
		return CTL_EXIT_ERROR;
	}
	return CTL_EXIT_OK;
}

/* ---- stats -------------------------------------------------------------------------------------- */

/* One line per sandbox: memory used and its limit, CPU time, processes, OOM kills, its disk, TTL left. */
static void print_resources(json_t *rows)
{
	json_t *row;
	size_t i;

	if (!json_array_size(rows))
		return;
	printf("\n%-16s %-16s %12s %12s %10s %6s %4s %16s %9s\n", "SANDBOX", "NAME", "MEMORY", "LIMIT", "CPU", "PIDS",
	       "OOM", "DISK", "TTL LEFT");
	json_array_foreach(rows, i, row) {
		json_t *res = json_object_get(row, "resources"), *lim = json_object_get(row, "limits");
		json_t *mlim = json_object_get(lim, "memory_bytes");
		char mem[32] = "-", limit[32] = "-", cpu[32] = "-", left[32], disk[48] = "-";
		json_t *d = json_object_get(row, "disk");

		if (res) {
			snprintf(mem, sizeof(mem), "%.1f MiB", json_integer_value(json_object_get(res, "memory_bytes")) / 1048576.0);
			snprintf(cpu, sizeof(cpu), "%.2f s", json_integer_value(json_object_get(res, "cpu_us")) / 1e6);
		}
		if (json_is_integer(mlim))
			snprintf(limit, sizeof(limit), "%.0f MiB", json_integer_value(mlim) / 1048576.0);
		if (d)
			snprintf(disk, sizeof(disk), "%lld/%lld MiB",
				 (long long)(json_integer_value(json_object_get(d, "used_bytes")) >> 20),
				 (long long)(json_integer_value(json_object_get(d, "limit_bytes")) >> 20));
		format_left(json_integer_value(json_object_get(row, "ttl_left_s")), left, sizeof(left));
		printf("%-16s %-16s %12s %12s %10s %6lld %4lld %16s %9s\n", str(row, "id"), str(row, "name"), mem, limit,
		       cpu, (long long)json_integer_value(json_object_get(res, "pids")),
		       (long long)json_integer_value(json_object_get(res, "oom_kills")), disk, left);
	}
}

int cmd_stats(int argc, char **argv)
{
	if (has_flag(&argc, argv, "--help") || has_flag(&argc, argv, "-h")) {
		printf("usage: crgw-ctl stats [--json | --prometheus]\n"
		       "The gateway's counters, its limits state and each sandbox's memory, CPU and processes.\n");
		return CTL_EXIT_OK;
	}
	bool json = has_flag(&argc, argv, "--json");
	bool prom = has_flag(&argc, argv, "--prometheus");
	int rc;
	json_t *j, *v;
	const char *key;

	if (argc != 1 || (json && prom)) {
		char what[300] = "";

		if (json && prom)
			snprintf(what, sizeof(what), "crgw-ctl stats: --json and --prometheus exclude each other\n");
		else
			snprintf(what, sizeof(what), "crgw-ctl stats: unexpected '%.200s'\n", argv[1]);
		fprintf(stderr, "%susage: crgw-ctl stats [--json | --prometheus]\n", what);
		return CTL_EXIT_ERROR;
	}
	if (prom) {
		struct ctl_response r;
		char err[512];

		if (ctl_request("GET", "/metrics", NULL, &r, err, sizeof(err))) {
			fprintf(stderr, "crgw-ctl: %s\n", err);
			return CTL_EXIT_ERROR;
		}
		fputs(r.body, stdout);
		free(r.body);
		return r.status == 200 ? CTL_EXIT_OK : CTL_EXIT_ERROR;
	}
	j = get_json("/v1/stats", "stats", &rc);
	if (!j)
		return rc;
	if (json) {
		print_pretty(j);
	} else {
		json_object_foreach(j, key, v) {
			if (!strcmp(key, "sandbox_resources"))
				continue;
			if (json_is_object(v)) {
				const char *k2;
				json_t *v2;

				json_object_foreach(v, k2, v2) {
					if (json_is_string(v2))
						printf("%s.%-20s %s\n", key, k2, json_string_value(v2));
					else if (json_is_boolean(v2))
						printf("%s.%-20s %s\n", key, k2, json_is_true(v2) ? "true" : "false");
					else
						printf("%s.%-20s %lld\n", key, k2, (long long)json_integer_value(v2));
				}
			} else {
				printf("%-24s %lld\n", key, (long long)json_integer_value(v));
			}
		}
		print_resources(json_object_get(j, "sandbox_resources"));
	}
	json_decref(j);
	return CTL_EXIT_OK;
}

int cmd_reload(int argc, char **argv)
{
	static const char usage_text[] = "usage: crgw-ctl reload [--json]\n"
					 "Makes the gateway read crgw.yaml again (as SIGHUP does): what may change live\n"
					 "is applied, what needs a restart is named; a bad file is refused and the\n"
					 "running configuration stays (exit 2).\n";
	struct ctl_response r = { 0 };
	char err[512];
	json_t *j;

	if (has_flag(&argc, argv, "--help") || has_flag(&argc, argv, "-h")) {
		fputs(usage_text, stdout);
		return CTL_EXIT_OK;
	}
	bool json = has_flag(&argc, argv, "--json");

	if (argc != 1) {
		fputs(usage_text, stderr);
		return CTL_EXIT_ERROR;
	}
	if (ctl_request("POST", "/v1/reload", "", &r, err, sizeof(err))) {
		fprintf(stderr, "crgw-ctl: %s\n", err);
		return CTL_EXIT_ERROR;
	}
	if (r.status != 200) {
		ctl_print_error("reload", &r);
		free(r.body);
		return CTL_EXIT_ERROR;
	}
	j = json_loads(r.body, 0, NULL);
	if (json) {
		print_pretty(j);
	} else {
		json_t *applied = json_object_get(j, "applied"), *kept = json_object_get(j, "needs_restart"), *v;
		size_t i;

		printf("reloaded; changed live:");
		json_array_foreach(applied, i, v) printf(" %s", json_string_value(v));
		printf("%s\n", json_array_size(applied) ? "" : " nothing");
		if (json_array_size(kept)) {
			printf("left as they were (they need a restart):");
			json_array_foreach(kept, i, v) printf(" %s", json_string_value(v));
			printf("\n");
		}
	}
	json_decref(j);
	free(r.body);
	return CTL_EXIT_OK;
}
