/* SPDX-License-Identifier: Apache-2.0 */
/* crgw-ctl: the command-line front end; each command lives in its own file. */
#include <stdio.h>
#include <string.h>

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
	"\n"
	"Exit codes:\n"
	"  0  success; for explain, the destination is allowed\n"
	"  1  explain: the destination is denied\n"
	"  2  invalid policy, bad usage, or any error that prevented an answer\n"
	"\n"
	"See docs/ctl.md for every command, its output and its JSON.\n";

int main(int argc, char **argv)
{
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
	fprintf(stderr, "crgw-ctl: unknown command '%s'\n\n%s", argv[1], usage);
	return CTL_EXIT_ERROR;
}
