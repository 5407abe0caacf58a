/* SPDX-License-Identifier: Apache-2.0 */
/*
 * crgw-ctl policy learn AUDIT [--sandbox ID] [--run-id ID] [--into FILE] [--collapse N]: drafts the least
 * policy that would have allowed the flows of a log (a learn-mode run's: `crgw-ctl run --learn`), checks
 * that the draft compiles and that it allows every one of those flows, and prints or writes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crgw/policy.h"
#include "crgw/policy_diff.h"
#include "crgw/policy_learn.h"
#include "ctl.h"

static const char usage[] =
    "usage: crgw-ctl policy learn AUDIT.jsonl|- [--sandbox ID] [--run-id ID] [--into FILE] [--collapse N]\n"
    "  drafts the least policy that would have allowed the log's flows (allow and warn decisions of\n"
    "  DNS, the proxies, git and registries), with how often each rule was used; --collapse N makes\n"
    "  N or more sibling names one '*.parent' rule. Writes FILE (replacing it) or prints the draft.\n";

struct learn {
	struct crgw_learner *learner;
	const char *sandbox, *run_id;
	uint64_t lines, unreadable, other, used, denied;
	char first[40], last[40];
	int err;
};

static int take(void *arg, const char *line, size_t len)
{
	struct learn *x = arg;
	struct crgw_audit_flow f;
	int rc;

	x->lines++;
	if (crgw_audit_flow_parse(line, len, &f)) {
		x->unreadable++;
		return 0;
	}
	if ((x->sandbox && strcmp(f.sandbox_id, x->sandbox)) || (x->run_id && strcmp(f.run_id, x->run_id))) {
		x->other++;
		return 0;
	}
	rc = crgw_learner_add(x->learner, &f);
	if (rc < 0) {
		x->err = rc;
		return rc;
	}
	if (rc == 0) {
		x->denied += !strcmp(f.event, "decision") && !strcmp(f.action, "deny");
		return 0;
	}
	x->used++;
	if (f.ts[0] && (!x->first[0] || strcmp(f.ts, x->first) < 0))
		snprintf(x->first, sizeof(x->first), "%s", f.ts);
	if (strcmp(f.ts, x->last) > 0)
		snprintf(x->last, sizeof(x->last), "%s", f.ts);
	return 0;
}

/* The draft must compile, and must allow every flow it was drafted from: read the log again through it. */
struct check {
	struct crgw_policy *policy;
	const char *sandbox, *run_id;
	uint64_t refused;
	char example[300];
};

static int recheck(void *arg, const char *line, size_t len)
{
	struct check *c = arg;
	struct crgw_audit_flow f;
	struct crgw_decision d;

	if (crgw_audit_flow_parse(line, len, &f) || (c->sandbox && strcmp(f.sandbox_id, c->sandbox)) ||
	    (c->run_id && strcmp(f.run_id, c->run_id)) || strcmp(f.event, "decision") ||
	    (strcmp(f.action, "allow") && strcmp(f.action, "warn")))
		return 0;
	if (crgw_policy_replay(c->policy, NULL, &f, &d) == CRGW_REPLAY_DENY) {
		if (!c->refused++) {
			char raw[sizeof(c->example)];

			snprintf(raw, sizeof(raw), "%s %s:%u (%s)", f.service, f.host[0] ? f.host : f.ip, f.port,
				 crgw_reason_str(d.reason));
			/* The host is the log's, unparsed, and goes to a terminal. */
			crgw_audit_text_safe(c->example, sizeof(c->example), raw, strlen(raw));
		}
	}
	return 0;
}

/* `text` (borrowed, may be NULL for "") made safe to show, in `buf`, which is returned. */
static const char *safe(char *buf, size_t size, const char *text)
{
	return crgw_audit_text_safe(buf, size, text ? text : "", text ? strlen(text) : 0);
}

static int write_file(const char *path, const char *text)
{
	char tmp[4200];
	int fd;
	size_t len = strlen(text);

	if (snprintf(tmp, sizeof(tmp), "%s.tmp-%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) || close(fd) || rename(tmp, path)) {
		int err = errno ? -errno : -EIO;

		unlink(tmp);
		return err;
	}
	return 0;
}

int policy_learn(int argc, char **argv)
{
	static const struct option options[] = {
	    {"sandbox", required_argument, NULL, 's'}, {"run-id", required_argument, NULL, 'r'},
	    {"into", required_argument, NULL, 'o'},    {"collapse", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},	       {0},
	};
	struct learn x = {0};
	struct check c = {0};
	struct crgw_learner_counts counts;
	struct crgw_compiled *compiled = NULL;
	const char *into = NULL, *log;
	unsigned long collapse = 0;
	char header[1024], err[512], *yaml = NULL, *end;
	char where[512], sandbox[64], run_id[160];
	uint64_t overlong = 0, overlong_again = 0;
	int opt, rc = CTL_EXIT_ERROR, fd = -1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "s:r:o:c:h", options, NULL)) != -1) {
		switch (opt) {
		case 's':
			x.sandbox = optarg;
			break;
		case 'r':
			x.run_id = optarg;
			break;
		case 'o':
			into = optarg;
			break;
		case 'c':
			errno = 0;
			collapse = strtoul(optarg, &end, 10);
			if (errno || *end || !(optarg[0] >= '0' && optarg[0] <= '9') || collapse < 2 ||
			    collapse > 1000) {
				fprintf(stderr,
					"crgw-ctl policy learn: --collapse: expected a number from 2 to 1000\n");
				return CTL_EXIT_ERROR;
			}
			break;
		case 'h':
			fputs(usage, stdout);
			return CTL_EXIT_OK;
		default:
			fputs(usage, stderr);
			return CTL_EXIT_ERROR;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "crgw-ctl policy learn: one audit log is required\n%s", usage);
		return CTL_EXIT_ERROR;
	}
	/* The draft replaces a file by renaming: a device, a FIFO or a link at the path would go with it. */
	struct stat st;

	if (into && lstat(into, &st) == 0 && !S_ISREG(st.st_mode)) {
		fprintf(stderr,
			"crgw-ctl policy learn: --into %s: not a regular file (the draft is written as a new file or "
			"replaces one; without --into it goes to standard output)\n",
			into);
		return CTL_EXIT_ERROR;
	}
	log = argv[optind];
	/* The path and the ids go into the draft's header comment: a line break in one would end it early. */
	safe(where, sizeof(where), strcmp(log, "-") ? log : "standard input");
	safe(sandbox, sizeof(sandbox), x.sandbox);
	safe(run_id, sizeof(run_id), x.run_id);
	x.learner = crgw_learner_new();
	if (!x.learner)
		return CTL_EXIT_ERROR;
	fd = ctl_audit_open(log);
	if (fd < 0)
		goto out;
	if (ctl_audit_lines(fd, log, take, &x, &overlong)) {
		if (x.err)
			fprintf(stderr, "crgw-ctl policy learn: %s: %s\n", where,
				x.err == -E2BIG
				    ? "more hosts or ports than a draft can hold (100,000 hosts, 1,024 ports "
				      "each): narrow it with --sandbox or --run-id"
				    : strerror(-x.err));
		goto out;
	}
	ctl_audit_close(fd);
	fd = -1;
	/* Counted as policy diff --against counts them: an over-long line is a line, and unreadable. */
	x.lines += overlong;
	x.unreadable += overlong;
	crgw_learner_counts(x.learner, &counts);
	if (!counts.flows) {
		fprintf(stderr, "crgw-ctl policy learn: %s: no allowed flow%s%s%s%s in %llu lines\n", where,
			x.sandbox ? " of sandbox " : "", sandbox, x.run_id ? " of run " : "", run_id,
			(unsigned long long)x.lines);
		goto out;
	}
	snprintf(header, sizeof(header),
		 "Drafted by crgw-ctl policy learn from %s%s%s%s%s: %llu flows, %s .. %s.\n"
		 "Every rule below was used by the job; nothing else is allowed. Review it before use.",
		 where, x.sandbox ? ", sandbox " : "", sandbox, x.run_id ? ", run " : "", run_id,
		 (unsigned long long)counts.flows, x.first, x.last);
	if (crgw_learner_draft(x.learner, (unsigned)collapse, header, &yaml))
		goto out;
	/* The draft is checked the way a policy owner would: compiled, then the same flows replayed through it. */
	if (crgw_policy_compile(yaml, strlen(yaml), NULL, &compiled) || compiled->nerrors ||
	    crgw_policy_load(compiled->json, compiled->json_len, &c.policy, err, sizeof(err))) {
		const char *why = compiled && compiled->ndiags ? compiled->diags[0].message : "out of memory";

		fprintf(stderr, "crgw-ctl policy learn: the draft does not compile: %s\n",
			crgw_audit_text_safe(err, sizeof(err), why, strlen(why)));
		fputs(yaml, stderr);
		goto out;
	}
	c.sandbox = x.sandbox;
	c.run_id = x.run_id;
	/*
	 * Standard input cannot be read twice: its draft is compiled but not replayed. The lines were
	 * counted by the first reading; this one's over-long lines are the same ones again.
	 */
	if (strcmp(log, "-") &&
	    ((fd = ctl_audit_open(log)) < 0 || ctl_audit_lines(fd, log, recheck, &c, &overlong_again)))
		goto out;
	if (c.refused) {
		fprintf(stderr, "crgw-ctl policy learn: the draft would refuse %llu of the flows, e.g. %s\n",
			(unsigned long long)c.refused, c.example);
		goto out;
	}
	if (into) {
		int e = write_file(into, yaml);

		if (e) {
			fprintf(stderr, "crgw-ctl: %s: %s\n", into, strerror(-e));
			goto out;
		}
	} else {
		fputs(yaml, stdout);
	}
	fprintf(stderr,
		"learned %llu flows: %zu hosts, %zu git hosts, %zu registries (%llu lines; %llu of other sandboxes or "
		"runs, %llu denials not learned, %llu unreadable)%s%s\n",
		(unsigned long long)counts.flows, counts.hosts, counts.git_hosts, counts.registries,
		(unsigned long long)x.lines, (unsigned long long)x.other, (unsigned long long)x.denied,
		(unsigned long long)x.unreadable, into ? "; draft written to " : "", into ? into : "");
	if (!strcmp(log, "-"))
		fprintf(stderr, "the draft compiles; read from standard input, it was not replayed against the log\n");
	rc = CTL_EXIT_OK;
out:
	ctl_audit_close(fd);
	crgw_policy_unref(c.policy);
	crgw_compiled_free(compiled);
	crgw_learner_free(x.learner);
	free(yaml);
	return rc;
}
