/* SPDX-License-Identifier: Apache-2.0 */
/* crgw-ctl: the command-line front end; each command lives in its own file. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "ctl.h"

static const char usage[] =
	"usage: crgw-ctl [--help] [--version] COMMAND [ARGS]\n"
	"\n"
	"Commands:\n"
	"  policy validate [--json] [--allow-default-allow] [PATH|DIR]\n"
	"                         check a policy; DIR is searched for cleanroom.yaml, then\n"
	"                         .buildkite/cleanroom.yaml\n"
	"  policy compile [--json] [-o FILE] [--repository NAME] [--commit SHA] [PATH|DIR]\n"
	"                         print the CompiledPolicy (--json: the canonical bytes, one line)\n"
	"  policy explain [--policy PATH|DIR | --compiled FILE] [--blocked CIDR]... [--json] HOST[:PORT]\n"
	"                         would the sandbox reach HOST:PORT (default port 443), and why\n"
	"  policy diff OLD NEW [--against AUDIT.jsonl|-] [--json] [--blocked CIDR]...\n"
	"                         the rules that changed, the destinations that flip, and with --against\n"
	"                         the flows of a real audit log whose decision flips (exit 1 when any)\n"
	"  policy learn AUDIT [--sandbox ID] [--run-id ID] [--into FILE] [--collapse N]\n"
	"                         draft the least policy that allows a (run --learn) log's flows\n"
	"  policy push [--json] PATH|DIR|COMPILED | get [-o FILE] HASH | ls [--json]\n"
	"                         the gateway's policy store: register sandboxes by hash (run --policy-hash),\n"
	"                         fetch the policy behind any audit event\n"
	"  run [--policy PATH|DIR | --policy-hash HASH] [--workspace DIR] [--workspace-mode copy|rw|ro|none]\n"
	"      [-e NAME=VALUE] [--env-file FILE] [-i] [-t] [-w DIR] [--name NAME] [--memory SIZE]\n"
	"      [--pids N] [--cpus N] [--disk SIZE] [--rm] [--json] [--run-id ID]\n"
	"      [--backend netns|qemu|firecracker] -- CMD [ARGS...]\n"
	"                         run CMD in a new sandbox behind the gateway, in /workspace; exits with\n"
	"                         CMD's code (crgw-ctl run --help)\n"
	"  exec [-i] [-t] [-e NAME=VALUE] [-w DIR] SANDBOX -- CMD [ARGS...]\n"
	"                         run CMD in a sandbox left by run without --rm\n"
	"  sandbox ls [--json] | show [--json] SANDBOX | diff [--json] SANDBOX | rm SANDBOX...\n"
	"                         SANDBOX is an id or a name; diff lists a copy-mode workspace's changes\n"
	"  cp SANDBOX:PATH HOSTPATH\n"
	"                         copy a file or directory out of a running sandbox\n"
	"  audit tail [-f] [-n LINES] [--json]\n"
	"                         recent audit events; -f follows live events\n"
	"  stats [--json | --prometheus]\n"
	"  reload [--json]        the gateway reads crgw.yaml again; live settings change, the rest is named\n"
	"  cache ls [--json] [--limit N] | stats [--json] | gc [--target SIZE] [--json] | verify [--json]\n"
	"  cache warm [--policy PATH|DIR] [--jobs N] [--json]\n"
	"                         the gateway's content cache; verify exits 1 when an object was corrupt;\n"
	"                         warm fetches what the policy's lockfiles name, exits 1 when one failed\n"
	"  image pull [--resolve] REF@sha256:HEX | import TARBALL | ls [--json] | inspect IMAGE | rm IMAGE...\n"
	"                         OCI images as ext4 root file systems for the VM backends, cached by digest\n"
	"                         (crgw-ctl image --help)\n"
	"  doctor [--json]        host prerequisites and the gateway's capability map\n"
	"\n"
	"Global option: --control PATH (or CRGW_CONTROL) names the gateway's control socket\n"
	"(default /run/crgw/control.sock).\n"
	"\n"
	"Exit codes:\n"
	"  0  success; for explain, the destination is allowed\n"
	"  1  explain: the destination is denied; policy diff: something flips; doctor: a check failed;\n"
	"     cache verify: an object was corrupt (it was removed) or unreadable; cache warm: an\n"
	"     artifact failed\n"
	"  2  invalid policy, bad usage, or any error that prevented an answer\n"
	"  run and exec: the command's exit code (128+N when killed by signal N); 125 when the sandbox\n"
	"  could not be made or the arguments are wrong, 126 when CMD cannot run, 127 when CMD was not found\n"
	"\n"
	"See docs/ctl.md for every command, its output and its JSON.\n";

/* Takes --control PATH / --control=PATH out of argv (before any "--"), wherever it appears. */
static int take_control_option(int *argc, char **argv)
{
	const char *env = getenv("CRGW_CONTROL");

	if (env && *env)
		ctl_control_path = env;
	for (int i = 1; i < *argc; i++) {
		int take = 0;

		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--control")) {
			if (i + 1 >= *argc) {
				fprintf(stderr, "crgw-ctl: --control needs a path\n");
				return -1;
			}
			ctl_control_path = argv[i + 1];
			take = 2;
		} else if (!strncmp(argv[i], "--control=", 10)) {
			ctl_control_path = argv[i] + 10;
			take = 1;
		}
		if (take) {
			memmove(&argv[i], &argv[i + take], (size_t)(*argc - i - take + 1) * sizeof(*argv));
			*argc -= take;
			i--;
		}
	}
	/* What curl would say of these is about host names ("Couldn't resolve host name"), not the path. */
	if (!*ctl_control_path) {
		fprintf(stderr, "crgw-ctl: --control needs a path\n");
		return -1;
	}
	if (strlen(ctl_control_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		fprintf(stderr, "crgw-ctl: control socket %s: longer than a UNIX socket's path can be (%zu bytes at most)\n",
			ctl_control_path, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		return -1;
	}
	return 0;
}

/* run and exec keep 125 for their own failures, usage included (docs/ctl.md, "Exit codes"). */
static int usage_exit(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--control")) {
			i++;
			continue;
		}
		if (!strncmp(argv[i], "--control=", 10))
			continue;
		return !strcmp(argv[i], "run") || !strcmp(argv[i], "exec") ? CTL_EXIT_RUN_FAILED : CTL_EXIT_ERROR;
	}
	return CTL_EXIT_ERROR;
}

static int dispatch(int argc, char **argv);

/*
 * An answer that did not reach stdout (a full disk, a closed pipe's reader gone) is no answer: exit 2, not
 * the code of an answer the caller never got. run and exec keep their command's code, which is theirs.
 */
int main(int argc, char **argv)
{
	bool cmd = argc > 1 && (!strcmp(argv[1], "run") || !strcmp(argv[1], "exec"));
	int rc = dispatch(argc, argv), err;

	err = fflush(stdout) ? errno : ferror(stdout) ? EIO : 0;
	if (err && !cmd) {
		fprintf(stderr, "crgw-ctl: cannot write the output: %s\n", strerror(err));
		return CTL_EXIT_ERROR;
	}
	return rc;
}

static int dispatch(int argc, char **argv)
{
	if (take_control_option(&argc, argv))
		return usage_exit(argc, argv);
	if (argc < 2) {
		fputs(usage, stderr);
		return CTL_EXIT_ERROR;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		fputs(usage, stdout);
		return CTL_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("crgw-ctl %s\n", CRGW_VERSION);
		return CTL_EXIT_OK;
	}
	if (strcmp(argv[1], "policy") == 0)
		return cmd_policy(argc - 1, argv + 1);
	if (strcmp(argv[1], "sandbox") == 0)
		return cmd_sandbox(argc - 1, argv + 1);
	if (strcmp(argv[1], "audit") == 0)
		return cmd_audit(argc - 1, argv + 1);
	if (strcmp(argv[1], "stats") == 0)
		return cmd_stats(argc - 1, argv + 1);
	if (strcmp(argv[1], "reload") == 0)
		return cmd_reload(argc - 1, argv + 1);
	if (strcmp(argv[1], "cache") == 0)
		return cmd_cache(argc - 1, argv + 1);
	if (strcmp(argv[1], "image") == 0)
		return cmd_image(argc - 1, argv + 1);
	if (strcmp(argv[1], "doctor") == 0)
		return cmd_doctor(argc - 1, argv + 1);
	if (strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(argv[1], "exec") == 0)
		return cmd_exec(argc - 1, argv + 1);
	if (strcmp(argv[1], "cp") == 0)
		return cmd_cp(argc - 1, argv + 1);
	fprintf(stderr, "crgw-ctl: unknown command '%s'\n\n%s", argv[1], usage);
	return CTL_EXIT_ERROR;
}
