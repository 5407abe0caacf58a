/* SPDX-License-Identifier: Apache-2.0 */
/*
 * crgw-ctl run, exec and cp: the command line over the sandbox backends (vm/). run makes a sandbox for the
 * policy's repository, runs a command in it and returns its exit code; exec runs another command in a
 * sandbox left running; cp copies files out of one.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crgw/limits.h"
#include "crgw/vm.h"
#include "ctl.h"

#define ENV_MAX 1024

static const char run_usage[] =
    "usage: crgw-ctl run [OPTIONS] [--] CMD [ARGS...]\n"
    "\n"
    "Makes a sandbox behind the gateway for a repository's policy, runs CMD in it (in /workspace) and\n"
    "exits with CMD's exit code (128+N when it died of signal N).\n"
    "\n"
    "  --policy PATH|DIR        the policy (default: ./cleanroom.yaml, then ./.buildkite/cleanroom.yaml)\n"
    "  --policy-hash HASH       a policy from the gateway's store (crgw-ctl policy push); the workspace\n"
    "                           then defaults to the current directory\n"
    "  --workspace DIR          the directory seen at /workspace (default: the policy's repository)\n"
    "  --workspace-mode MODE    copy (default: changes stay in the sandbox, the host's files never\n"
    "                           change; see sandbox diff, cp), rw (the directory itself; new files\n"
    "                           belong to its owner), ro (read-only), none (no workspace)\n"
    "  -e, --env NAME=VALUE     set a variable in the command's environment (NAME alone: our value)\n"
    "      --env-file FILE      NAME=VALUE lines (# comments and blank lines ignored)\n"
    "  -i, --interactive        our standard input reaches the command (else it reads /dev/null)\n"
    "  -t, --tty                a terminal: the command gets a pty; ^C and the window size reach it\n"
    "  -w, --workdir DIR        where the command starts, inside the sandbox (default /workspace)\n"
    "      --name NAME          a name for the sandbox, usable wherever an id is\n"
    "      --memory SIZE        lower the memory limit (e.g. 512M; the operator's limits.memory is the\n"
    "                           ceiling)\n"
    "      --pids N             lower the process limit\n"
    "      --cpus N             lower the CPU limit (e.g. 0.5)\n"
    "      --disk SIZE          the size of the sandbox's own disk, for its home and workspace changes\n"
    "                           (e.g. 10G; the operator's limits.disk is the ceiling)\n"
    "      --rm                 release the sandbox when the command ends (else it stays for exec,\n"
    "                           sandbox diff and cp, until sandbox rm or its TTL)\n"
    "      --run-id ID          a caller's id, copied into every audit event of the sandbox\n"
    "      --learn              learn mode (when the operator allows it, learn.allowed): what the policy\n"
    "                           refuses is let through and audited as warn; then crgw-ctl policy learn\n"
    "      --backend NAME       netns (the default), qemu (a VM: KVM where /dev/kvm works, TCG\n"
    "                           otherwise) or firecracker (a Firecracker microVM: KVM, $CRGW_FIRECRACKER\n"
    "                           or firecracker in PATH); a VM's workspace is copy, ro or none\n"
    "      --json               JSON events on standard error (sandbox_created, exited)\n"
    "  -h, --help\n"
    "\n"
    "Exit codes: the command's; 125 when the sandbox could not be made or the arguments are wrong,\n"
    "126 when CMD cannot run, 127 when CMD is not found, 137 when an out-of-memory kill ended the\n"
    "sandbox or its TTL ran out.\n";

static const char exec_usage[] =
    "usage: crgw-ctl exec [-i] [-t] [-e NAME=VALUE]... [--env-file FILE] [-w DIR] SANDBOX [--] CMD [ARGS...]\n"
    "\n"
    "Runs CMD in a running sandbox (an id or a name), as run does, and exits with its exit code.\n";

static const char cp_usage[] =
    "usage: crgw-ctl cp SANDBOX:PATH HOSTPATH\n"
    "\n"
    "Copies PATH (absolute inside the sandbox, or relative to /workspace) out of a running sandbox to\n"
    "HOSTPATH (into it, when it is a directory). Links inside the sandbox never lead outside it; set-id\n"
    "bits are dropped; the new files belong to you.\n";

struct env_list {
	char *items[ENV_MAX + 1]; /* NULL-terminated for the backend */
	size_t n;
};

static void env_free(struct env_list *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->items[i]);
	e->n = 0;
}

static bool env_name_ok(const char *s, size_t len)
{
	if (len == 0 || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_'))
			return false;
	return true;
}

/* NAME=VALUE, or NAME alone for our own value (left out when we have none, as container runtimes do). */
static int env_add(struct env_list *e, const char *item, const char *where)
{
	const char *eq = strchr(item, '=');
	size_t nlen = eq ? (size_t)(eq - item) : strlen(item);
	char *copy;

	if (!env_name_ok(item, nlen)) {
		fprintf(stderr, "crgw-ctl: %s'%s': expected NAME=VALUE with NAME of letters, digits and _\n", where,
			item);
		return -EINVAL;
	}
	if (e->n == ENV_MAX) {
		fprintf(stderr, "crgw-ctl: more than %d environment variables\n", ENV_MAX);
		return -E2BIG;
	}
	if (eq) {
		copy = strdup(item);
	} else {
		const char *v = getenv(item);

		if (!v)
			return 0;
		if (asprintf(&copy, "%s=%s", item, v) < 0)
			copy = NULL;
	}
	if (!copy)
		return -ENOMEM;
	e->items[e->n++] = copy;
	return 0;
}

static int env_file(struct env_list *e, const char *path)
{
	char *text = NULL, where[PATH_MAX + 32];
	size_t len, lineno = 0;
	int err = repo_read_file(path, 1 << 20, &text, &len);

	if (err) {
		fprintf(stderr, "crgw-ctl: --env-file %s: %s\n", path,
			err == -E2BIG ? "larger than 1 MiB" : repo_read_error(err));
		return err;
	}
	for (char *line = text, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		line[strcspn(line, "\r")] = '\0';
		while (*line == ' ' || *line == '\t')
			line++;
		if (!*line || *line == '#')
			continue;
		if (!strncmp(line, "export ", 7))
			line += 7;
		snprintf(where, sizeof(where), "%s:%zu: ", path, lineno);
		if ((err = env_add(e, line, where)))
			break;
	}
	free(text);
	return err;
}

/* The options run and exec share. */
struct exec_opts {
	struct env_list env;
	bool tty, interactive;
	const char *workdir;
};

/* Takes one of the shared options (-e, --env-file, -i, -t, -w): 1 when it was one, 0 when not, -1 on error. */
static int exec_option(int c, struct exec_opts *x)
{
	switch (c) {
	case 'e':
		return env_add(&x->env, optarg, "-e ") ? -1 : 1;
	case 'E':
		return env_file(&x->env, optarg) ? -1 : 1;
	case 'i':
		x->interactive = true;
		return 1;
	case 't':
		x->tty = true;
		return 1;
	case 'w':
		if (optarg[0] != '/') {
			fprintf(stderr, "crgw-ctl: -w: the working directory is a path inside the sandbox, absolute\n");
			return -1;
		}
		x->workdir = optarg;
		return 1;
	default:
		return 0;
	}
}

static void json_event(bool json, json_t *ev)
{
	char *s;

	if (json && ev && (s = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER))) {
		fprintf(stderr, "%s\n", s);
		free(s);
	}
	json_decref(ev);
}

/*
 * What became of the sandbox once the command ended, from one look at its record (or, once released,
 * its tombstone): an OOM kill or its TTL ends it with status 137 and a word why; forks refused at its
 * process limit are worth a word too, and so is a full disk under a failed command; `*gone` says whether
 * it still exists. With `wait_release`, a command killed by a signal may be the sandbox ending, and its
 * release takes the gateway a moment.
 */
static int after_command(const char *id, int status, bool wait_release, bool *gone)
{
	json_t *rec = NULL, *res;
	char err[512];
	int e;

	for (int i = 0;; i++) {
		e = ctl_get_sandbox(id, &rec, err, sizeof(err));
		/* 1.5 s: the gateway's memory watch may take 1.3 s to see a cgroup v1 OOM kill counted. */
		if (e || !wait_release || status < 128 || i == 29)
			break;
		json_decref(rec);
		rec = NULL;
		usleep(50000);
	}
	*gone = e != 0;
	res = json_object_get(rec, "resources");
	json_int_t oom = json_integer_value(json_object_get(res, "oom_kills"));
	json_int_t denied = json_integer_value(json_object_get(res, "pids_denied"));
	const char *reason = json_string_value(json_object_get(rec, "reason"));

	/* A kept sandbox the gateway has not ended (yet) is not said to be ended: the next lines say it runs. */
	if (status == 137 && oom > 0) {
		fprintf(stderr, "crgw-ctl: sandbox %s ran out of memory: %lld process%s killed at its memory limit%s\n", id,
			(long long)oom, oom == 1 ? " was" : "es were",
			*gone || !wait_release ? "; the sandbox was ended" : "");
	} else if (status == 137 && e == -ESRCH && reason) {
		fprintf(stderr, "crgw-ctl: sandbox %s was released: %s\n", id, reason);
	} else if (status == 137 && e && e != -ESRCH) {
		/* A gateway that stops ends its sandboxes: a bare 137 would read as an out-of-memory kill. */
		fprintf(stderr, "crgw-ctl: sandbox %s ended with its gateway: %s\n", id, err);
	} else if (denied > 0) {
		fprintf(stderr, "crgw-ctl: sandbox %s: %lld fork%s refused at its process limit of %lld\n", id,
			(long long)denied, denied == 1 ? " was" : "s were",
			(long long)json_integer_value(json_object_get(json_object_get(rec, "limits"), "pids")));
	}
	/* A failed command on a full disk: "No space left on device" in its output has a cause worth naming. */
	json_t *disk = json_object_get(rec, "disk");
	json_int_t size = json_integer_value(json_object_get(disk, "limit_bytes"));
	json_t *left = json_object_get(disk, "free_bytes");

	if (status != 0 && size > 0 && json_is_integer(left) && json_integer_value(left) < (1 << 20) + size / 100)
		fprintf(stderr, "crgw-ctl: sandbox %s: its disk of %lld MiB is full (--disk, limits.disk)\n", id,
			(long long)(size >> 20));
	json_decref(rec);
	return status;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Runs the command and tells the gateway how long it took (sandbox show's timings.last_command_ms). */
static int exec_timed(const struct crgw_backend *backend, struct crgw_vm_sandbox *sb,
		      const struct crgw_exec_request *req, int *status, char *err, size_t errlen, double *ms)
{
	double t0 = now_ms();
	int e = backend->exec(sb, req, status, err, errlen);
	json_t *t;

	*ms = now_ms() - t0;
	if (!e && (t = json_pack("{s:I}", "command_ms", (json_int_t)(*ms + 0.5)))) {
		(void)ctl_gateway_ops.report_timings(ctl_gateway_ops.arg, crgw_vm_sandbox_id(sb), t);
		json_decref(t);
	}
	return e;
}

/*
 * A policy from the gateway's store by its hash (the gateway checks it again when the sandbox registers);
 * the workspace then defaults to the current directory, as a policy found there would make it.
 */
static int fetch_policy(const char *hash, char **policy, char *root, size_t rootlen)
{
	struct ctl_response r = {0};
	char path[128], err[512];

	if (strlen(hash) > 80) {
		fprintf(stderr, "crgw-ctl run: --policy-hash: expected sha256:<64 hex digits>\n");
		return -EINVAL;
	}
	snprintf(path, sizeof(path), "/v1/policies/%s", hash);
	if (ctl_request("GET", path, NULL, &r, err, sizeof(err))) {
		fprintf(stderr, "crgw-ctl: %s\n", err);
		return -EIO;
	}
	if (r.status != 200) {
		ctl_print_error("run --policy-hash", &r);
		free(r.body);
		return -ENOENT;
	}
	*policy = r.body;
	if (!getcwd(root, rootlen)) {
		fprintf(stderr, "crgw-ctl run: the current directory: %s\n", strerror(errno));
		return -errno;
	}
	return 0;
}

int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"policy", required_argument, NULL, 'p'},
	    {"policy-hash", required_argument, NULL, 'H'},
	    {"learn", no_argument, NULL, 'L'},
	    {"backend", required_argument, NULL, 'b'},
	    {"rm", no_argument, NULL, 'r'},
	    {"json", no_argument, NULL, 'j'},
	    {"run-id", required_argument, NULL, 'I'},
	    {"name", required_argument, NULL, 'N'},
	    {"workspace", required_argument, NULL, 'W'},
	    {"workspace-mode", required_argument, NULL, 'M'},
	    {"env", required_argument, NULL, 'e'},
	    {"env-file", required_argument, NULL, 'E'},
	    {"interactive", no_argument, NULL, 'i'},
	    {"tty", no_argument, NULL, 't'},
	    {"workdir", required_argument, NULL, 'w'},
	    {"memory", required_argument, NULL, 'm'},
	    {"pids", required_argument, NULL, 'P'},
	    {"disk", required_argument, NULL, 'D'},
	    {"cpus", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct crgw_sandbox_spec spec = {.workspace_mode = CRGW_WS_COPY};
	struct exec_opts x = {0};
	const char *policy_path = NULL, *policy_hash = NULL, *backend_name = "netns", *workspace = NULL;
	const struct crgw_backend *backend = NULL;
	struct crgw_vm_sandbox *sb = NULL;
	char *policy = NULL, root[PATH_MAX], err[1024] = "";
	bool json = false;
	int c, status = CTL_EXIT_RUN_FAILED, e;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+e:itw:h", opts, NULL)) != -1) {
		int taken = exec_option(c, &x);

		if (taken < 0)
			goto out;
		if (taken)
			continue;
		switch (c) {
		case 'p':
			policy_path = optarg;
			break;
		case 'H':
			policy_hash = optarg;
			break;
		case 'L':
			spec.learn = true;
			break;
		case 'b':
			backend_name = optarg;
			break;
		case 'r':
			spec.remove_on_exit = true;
			break;
		case 'j':
			json = true;
			break;
		case 'I':
			if (!crgw_run_id_valid(optarg)) {
				fprintf(stderr, "crgw-ctl: --run-id: at most 63 bytes of UTF-8, no control characters\n");
				goto out;
			}
			spec.run_id = optarg;
			break;
		case 'N':
			if (!crgw_sandbox_name_valid(optarg)) {
				fprintf(stderr,
					"crgw-ctl: --name: '%.64s' is not a usable sandbox name (letters, digits, '.', "
					"'_', '-'; at most %d; not starting with '.', '-' or sbx-)\n",
					optarg, CRGW_SANDBOX_NAME_MAX);
				goto out;
			}
			spec.name = optarg;
			break;
		case 'W':
			workspace = optarg;
			break;
		case 'M':
			if (crgw_workspace_mode_parse(optarg, &spec.workspace_mode)) {
				fprintf(stderr, "crgw-ctl: --workspace-mode: expected copy, rw, ro or none\n");
				goto out;
			}
			break;
		/* Checked here as the gateway checks them, so that a typo costs no sandbox. */
		case 'm': {
			uint64_t bytes;

			if (crgw_size_parse(optarg, &bytes) || bytes < CRGW_LIMIT_MEMORY_MIN) {
				fprintf(stderr, "crgw-ctl: --memory: expected a size of at least 16M (e.g. 512M, 2G)\n");
				goto out;
			}
			spec.memory = optarg;
			break;
		}
		case 'D': {
			uint64_t bytes;

			if (crgw_size_parse(optarg, &bytes) || bytes < CRGW_LIMIT_DISK_MIN || bytes > CRGW_LIMIT_DISK_MAX) {
				fprintf(stderr, "crgw-ctl: --disk: expected a size of 64M to 1P (e.g. 10G)\n");
				goto out;
			}
			spec.disk = optarg;
			break;
		}
		case 'c': {
			uint32_t milli;

			if (crgw_cpus_parse(optarg, &milli) || milli < CRGW_LIMIT_CPU_MILLI_MIN) {
				fprintf(stderr, "crgw-ctl: --cpus: expected a count of at least 0.01 with at most three "
						"decimals (e.g. 0.5, 2)\n");
				goto out;
			}
			spec.cpus = optarg;
			break;
		}
		case 'P': {
			char *end;

			errno = 0;
			spec.pids = strtoul(optarg, &end, 10);
			if (errno || *end || optarg[0] < '0' || optarg[0] > '9' || spec.pids < CRGW_LIMIT_PIDS_MIN) {
				fprintf(stderr, "crgw-ctl: --pids: expected a number of at least %d\n", CRGW_LIMIT_PIDS_MIN);
				goto out;
			}
			break;
		}
		case 'h':
			fputs(run_usage, stdout);
			status = CTL_EXIT_OK;
			goto out;
		default:
			fputs(run_usage, stderr);
			goto out;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "crgw-ctl run: CMD is required\n%s", run_usage);
		goto out;
	}
	backend = crgw_backend_find(backend_name);
	if (!backend) {
		fprintf(stderr,
			"crgw-ctl: backend_unavailable: backend '%s' is not available here (netns, qemu or "
			"firecracker)\n",
			backend_name);
		goto out;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "crgw-ctl: run: the %s backend needs root\n", backend_name);
		goto out;
	}
	if (policy_hash && policy_path) {
		fprintf(stderr, "crgw-ctl run: --policy and --policy-hash exclude each other\n");
		goto out;
	}
	if (policy_hash ? fetch_policy(policy_hash, &policy, root, sizeof(root))
			: ctl_compile_policy(policy_path, false, &policy, root, sizeof(root)))
		goto out;
	spec.policy_json = policy;
	/* The workspace is the repository the policy came from, unless the caller says otherwise. */
	spec.workspace_dir = workspace ? workspace : root;
	e = backend->create(&spec, &ctl_gateway_ops, &sb, err, sizeof(err));
	if (e) {
		fprintf(stderr, "crgw-ctl: %s\n", err);
		goto out;
	}
	json_t *rec = crgw_vm_sandbox_record(sb);

	json_event(json,
		   json_pack("{s:s, s:s, s:s, s:s, s:s}", "event", "sandbox_created", "sandbox_id",
			     crgw_vm_sandbox_id(sb), "guest", json_string_value(json_object_get(rec, "guest")) ?: "",
			     "gateway", json_string_value(json_object_get(rec, "gateway")) ?: "", "policy_hash",
			     json_string_value(json_object_get(rec, "policy_hash")) ?: ""));
	x.env.items[x.env.n] = NULL;
	struct crgw_exec_request req = {
	    .argv = argv + optind, .env = x.env.items, .cwd = x.workdir, .tty = x.tty, .interactive = x.interactive};

	/* Gone or not: --rm, a signal to us, its TTL or an OOM kill end it; the gateway's record says which. */
	bool released = false;
	double command_ms, teardown_ms = -1;

	e = exec_timed(backend, sb, &req, &status, err, sizeof(err), &command_ms);
	if (e)
		fprintf(stderr, "crgw-ctl: %s\n", err);
	else
		status = after_command(crgw_vm_sandbox_id(sb), status, !spec.remove_on_exit, &released);
	if (spec.remove_on_exit) {
		double t0 = now_ms();
		int re = backend->release(sb, &ctl_gateway_ops);

		/* Its processes end here either way; what the gateway made waits for the gateway's next start. */
		if (re)
			fprintf(stderr,
				"crgw-ctl: sandbox %s could not be released (%s): its processes were ended here; its "
				"interface, rules and data go when the gateway next starts\n",
				crgw_vm_sandbox_id(sb), re == -ECONNREFUSED ? "the gateway is not running" : strerror(-re));
		released = true;
		teardown_ms = now_ms() - t0;
	} else {
		if (!json && !released)
			fprintf(
			    stderr,
			    "crgw-ctl: sandbox %s is still running: crgw-ctl exec %s -- CMD, crgw-ctl sandbox rm %s\n",
			    crgw_vm_sandbox_id(sb), crgw_vm_sandbox_id(sb), crgw_vm_sandbox_id(sb));
	}
	json_t *timings = crgw_vm_sandbox_timings(sb);

	if (timings && !e)
		json_object_set_new(timings, "command_ms", json_integer((json_int_t)(command_ms + 0.5)));
	if (timings && teardown_ms >= 0)
		json_object_set_new(timings, "teardown_ms", json_integer((json_int_t)(teardown_ms + 0.5)));
	if (getenv("CRGW_VM_TIMINGS"))
		fprintf(stderr, "crgw-ctl: %s: command %.0f ms, teardown %.0f ms\n", crgw_vm_sandbox_id(sb),
			e ? -1.0 : command_ms, teardown_ms);
	json_event(json, json_pack("{s:s, s:s, s:i, s:b, s:o*}", "event", "exited", "sandbox_id",
				   crgw_vm_sandbox_id(sb), "exit_code", status, "released", released, "timings",
				   timings));
out:
	if (sb)
		backend->free(sb);
	env_free(&x.env);
	free(policy);
	return status;
}

int cmd_exec(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"env", required_argument, NULL, 'e'},
	    {"env-file", required_argument, NULL, 'E'},
	    {"interactive", no_argument, NULL, 'i'},
	    {"tty", no_argument, NULL, 't'},
	    {"workdir", required_argument, NULL, 'w'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct exec_opts x = {0};
	const struct crgw_backend *backend = NULL;
	struct crgw_vm_sandbox *sb = NULL;
	json_t *rec = NULL;
	char err[1024] = "";
	int c, status = CTL_EXIT_RUN_FAILED, e;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+e:itw:h", opts, NULL)) != -1) {
		int taken = exec_option(c, &x);

		if (taken < 0)
			goto out;
		if (taken)
			continue;
		switch (c) {
		case 'h':
			fputs(exec_usage, stdout);
			status = CTL_EXIT_OK;
			goto out;
		default:
			fputs(exec_usage, stderr);
			goto out;
		}
	}
	/* SANDBOX [--] CMD...: getopt stopped at SANDBOX. */
	if (optind >= argc) {
		fputs(exec_usage, stderr);
		goto out;
	}
	const char *id = argv[optind++];

	if (optind < argc && !strcmp(argv[optind], "--"))
		optind++;
	if (optind >= argc) {
		fprintf(stderr, "crgw-ctl exec: CMD is required\n%s", exec_usage);
		goto out;
	}
	e = ctl_get_sandbox(id, &rec, err, sizeof(err));
	if (e) {
		fprintf(stderr, "crgw-ctl: %s: %s\n", id, err);
		goto out;
	}
	backend = crgw_backend_find(json_string_value(json_object_get(rec, "backend")) ?: "netns");
	if (!backend) {
		fprintf(stderr, "crgw-ctl: %s: its backend is not available in this build\n", id);
		goto out;
	}
	if ((e = backend->open(rec, &sb, err, sizeof(err)))) {
		fprintf(stderr, "crgw-ctl: %s\n", err);
		goto out;
	}
	x.env.items[x.env.n] = NULL;
	struct crgw_exec_request req = {
	    .argv = argv + optind, .env = x.env.items, .cwd = x.workdir, .tty = x.tty, .interactive = x.interactive};

	double command_ms;

	e = exec_timed(backend, sb, &req, &status, err, sizeof(err), &command_ms);
	if (e) {
		fprintf(stderr, "crgw-ctl: %s\n", err);
	} else {
		bool gone;

		status = after_command(crgw_vm_sandbox_id(sb), status, false, &gone);
	}
out:
	if (sb)
		backend->free(sb);
	json_decref(rec);
	env_free(&x.env);
	return status;
}

int cmd_cp(int argc, char **argv)
{
	char id[80], err[1024];
	const char *colon, *path;
	json_t *rec = NULL;
	int e;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(cp_usage, stdout);
		return CTL_EXIT_OK;
	}
	if (argc != 3 || !(colon = strchr(argv[1], ':')) || colon == argv[1] ||
	    (size_t)(colon - argv[1]) >= sizeof(id) || !colon[1]) {
		fputs(cp_usage, stderr);
		return CTL_EXIT_ERROR;
	}
	memcpy(id, argv[1], (size_t)(colon - argv[1]));
	id[colon - argv[1]] = '\0';
	path = colon + 1;
	e = ctl_get_sandbox(id, &rec, err, sizeof(err));
	if (e) {
		fprintf(stderr, "crgw-ctl: %s: %s\n", id, err);
		json_decref(rec);
		return CTL_EXIT_ERROR;
	}
	e = crgw_sandbox_copy(rec, path, argv[2], err, sizeof(err));
	json_decref(rec);
	if (e) {
		fprintf(stderr, "crgw-ctl: cp: %s: %s\n", id, err);
		return CTL_EXIT_ERROR;
	}
	return CTL_EXIT_OK;
}
