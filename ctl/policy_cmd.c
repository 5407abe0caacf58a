/* SPDX-License-Identifier: Apache-2.0 */
/* crgw-ctl policy validate|compile|explain: the policy library, with no gateway running. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crgw/policy.h"
#include "crgw/policy_diff.h"
#include "ctl.h"

struct policy_args {
	bool json;
	bool allow_default_allow;
	const char *output;
	const char *repository;
	const char *commit;
	const char *policy;
	const char *compiled;
	const char *blocked[64];
	unsigned nblocked;
	const char *positional;
};

struct loaded {
	struct repo_policy repo;
	struct crgw_compiled *compiled;
	char error[600]; /* why there is no compiled policy at all (also on stderr) */
};

static void print_json(json_t *v)
{
	char *s = json_dumps(v, JSON_SORT_KEYS | JSON_INDENT(2));

	if (s) {
		puts(s);
		free(s);
	}
	json_decref(v);
}

static json_t *diag_json(const struct crgw_diag *d)
{
	json_t *o = json_object();

	if (crgw_reason_str(d->code))
		json_object_set_new(o, "code", json_string(crgw_reason_str(d->code)));
	json_object_set_new(o, "path", json_string(d->path));
	json_object_set_new(o, "line", json_integer(d->line));
	json_object_set_new(o, "column", json_integer(d->column));
	json_object_set_new(o, "message", json_string(d->message));
	return o;
}

/* Human form: FILE:LINE:COLUMN: CODE: PATH: MESSAGE, the shape editors and CI logs link to. */
static void print_diags(const char *file, const struct crgw_compiled *c)
{
	for (unsigned i = 0; i < c->ndiags; i++) {
		const struct crgw_diag *d = &c->diags[i];
		const char *code = crgw_reason_str(d->code);

		/* Line 0: about the whole file or the command line (--repository), no place in the file. */
		if (d->line)
			fprintf(stderr, "%s:%u:%u: ", file, d->line, d->column);
		else
			fprintf(stderr, "%s: ", file);
		fprintf(stderr, "%s: %s%s%s\n", code ? code : "warning", d->path, d->path[0] ? ": " : "", d->message);
	}
	if (c->nerrors + c->nwarnings > c->ndiags)
		fprintf(stderr, "%s: %u more diagnostics not shown\n", file, c->nerrors + c->nwarnings - c->ndiags);
}

/* Finds, reads and compiles the policy. Returns 0 (check compiled->nerrors), or -errno after saying why. */
static int compile_policy(const struct policy_args *a, const char *where, struct loaded *out)
{
	struct crgw_compile_opts opts = {
		.read_file = repo_read_beneath,
		.allow_default_allow = a->allow_default_allow,
		.source_repository = a->repository,
		.source_commit = a->commit,
	};
	char err[512], *yaml = NULL;
	size_t len = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = repo_find_policy(where, &out->repo, err, sizeof(err));
	if (rc) {
		snprintf(out->error, sizeof(out->error), "%s", err);
		fprintf(stderr, "crgw-ctl: %s\n", out->error);
		return rc;
	}
	rc = repo_read_file(out->repo.path, CRGW_POLICY_MAX_BYTES, &yaml, &len);
	if (rc) {
		if (rc == -E2BIG)
			snprintf(out->error, sizeof(out->error), "%s: policy_invalid: file larger than %u bytes",
				 out->repo.path, CRGW_POLICY_MAX_BYTES);
		else
			snprintf(out->error, sizeof(out->error), "%s: %s", out->repo.path, repo_read_error(rc));
		fprintf(stderr, "crgw-ctl: %s\n", out->error);
		return rc;
	}
	opts.read_file_arg = out->repo.root;
	opts.source_path = out->repo.source;
	rc = crgw_policy_compile(yaml, len, &opts, &out->compiled);
	free(yaml);
	if (rc) {
		snprintf(out->error, sizeof(out->error), "%s: %s", out->repo.path, strerror(-rc));
		fprintf(stderr, "crgw-ctl: %s\n", out->error);
	}
	return rc;
}

static int parse_args(int argc, char **argv, struct policy_args *a, const char *allowed)
{
	static const struct option options[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "allow-default-allow", no_argument, NULL, 'A' },
		{ "output", required_argument, NULL, 'o' },
		{ "repository", required_argument, NULL, 'r' },
		{ "commit", required_argument, NULL, 'c' },
		{ "policy", required_argument, NULL, 'p' },
		{ "compiled", required_argument, NULL, 'C' },
		{ "blocked", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int opt;

	memset(a, 0, sizeof(*a));
	optind = 1;
	/* Options may follow the policy or the host, as they may for policy diff and learn. */
	while ((opt = getopt_long(argc, argv, "o:h", options, NULL)) != -1) {
		if (opt == '?' || (opt != 'h' && !strchr(allowed, opt))) {
			if (opt != '?')
				fprintf(stderr, "crgw-ctl policy %s: option not valid here\n", argv[0]);
			return -EINVAL;
		}
		switch (opt) {
		case 'j':
			a->json = true;
			break;
		case 'A':
			a->allow_default_allow = true;
			break;
		case 'o':
			a->output = optarg;
			break;
		case 'r':
			a->repository = optarg;
			break;
		case 'c':
			a->commit = optarg;
			break;
		case 'p':
			a->policy = optarg;
			break;
		case 'C':
			a->compiled = optarg;
			break;
		case 'b':
			if (a->nblocked == sizeof(a->blocked) / sizeof(a->blocked[0])) {
				fprintf(stderr, "crgw-ctl: too many --blocked ranges\n");
				return -EINVAL;
			}
			a->blocked[a->nblocked++] = optarg;
			break;
		case 'h':
			return 1;
		}
	}
	if (argc - optind > 1) {
		fprintf(stderr, "crgw-ctl policy %s: unexpected argument '%s'\n", argv[0], argv[optind + 1]);
		return -EINVAL;
	}
	a->positional = optind < argc ? argv[optind] : NULL;
	return 0;
}

/* Reads a CompiledPolicy file: no larger than a gateway takes, so that a huge one costs no memory to refuse. */
static int read_compiled(const char *path, char **json, size_t *len)
{
	int rc = repo_read_file(path, CRGW_COMPILED_MAX_BYTES, json, len);

	if (rc == -E2BIG)
		fprintf(stderr, "crgw-ctl: %s: larger than %u MiB, the most a gateway takes for a compiled policy\n",
			path, CRGW_COMPILED_MAX_BYTES >> 20);
	else if (rc)
		fprintf(stderr, "crgw-ctl: %s: %s\n", path, repo_read_error(rc));
	return rc;
}

/*
 * Whether `path` is a compiled document: a file whose first character that is not white space is '{' and
 * that is a JSON object with a "format" member. JSON is YAML too, and a policy written in JSON has no
 * "format": it is compiled as the policy file it is, not refused as a compiled document that lacks one.
 */
static bool looks_compiled(const char *path)
{
	/* O_NONBLOCK: a FIFO in place of a policy would block the open until a writer came. Anything but a
	 * regular file is left to the policy's reader, which refuses it by name. */
	int fd = path ? open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC) : -1;
	char buf[64], first = 0, *text = NULL;
	size_t len = 0;
	bool compiled = false;
	struct stat st;
	ssize_t n;

	if (fd < 0)
		return false;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return false;
	}
	n = read(fd, buf, sizeof(buf));
	for (ssize_t i = 0; i < n && !first; i++)
		if (buf[i] != ' ' && buf[i] != '\n' && buf[i] != '\r' && buf[i] != '\t')
			first = buf[i];
	close(fd);
	if (first != '{')
		return false;
	/* Too large or unreadable: the compiled document's reader says why. */
	if (repo_read_file(path, CRGW_COMPILED_MAX_BYTES, &text, &len))
		return true;
	json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);

	/* JSON that does not parse is read as YAML, whose errors have a line and a column. */
	compiled = doc && json_object_get(doc, "format") != NULL;
	json_decref(doc);
	free(text);
	return compiled;
}

/*
 * validate of a compiled document (what `compile -o` wrote, what push and diff take): checked as the
 * gateway loads one. Read as YAML instead, it drew ten errors about keys a policy file does not have.
 */
static int validate_compiled(const struct policy_args *a)
{
	struct crgw_policy *policy = NULL;
	char err[512] = "", *json = NULL;
	size_t len = 0;
	int rc = read_compiled(a->positional, &json, &len);

	if (rc == -E2BIG)
		snprintf(err, sizeof(err), "%s: larger than %u MiB, the most a gateway takes for a compiled policy",
			 a->positional, CRGW_COMPILED_MAX_BYTES >> 20);
	else if (rc)
		snprintf(err, sizeof(err), "%s: %s", a->positional, repo_read_error(rc));
	else if (crgw_policy_load(json, len, &policy, err, sizeof(err)) != 0)
		rc = -EINVAL;
	free(json);
	if (a->json) {
		json_t *o = json_object(), *errors = json_array();

		if (rc) {
			json_t *e = json_object();

			json_object_set_new(e, "code", json_string("policy_invalid"));
			json_object_set_new(e, "path", json_string(""));
			json_object_set_new(e, "line", json_integer(0));
			json_object_set_new(e, "column", json_integer(0));
			json_object_set_new(e, "message", json_string(err));
			json_array_append_new(errors, e);
		}
		json_object_set_new(o, "valid", json_boolean(!rc));
		json_object_set_new(o, "policy", json_string(a->positional));
		json_object_set_new(o, "compiled", json_true());
		json_object_set_new(o, "policy_hash", rc ? json_null() : json_string(crgw_policy_hash(policy)));
		json_object_set_new(o, "errors", errors);
		json_object_set_new(o, "errors_total", json_integer(rc ? 1 : 0));
		json_object_set_new(o, "warnings", json_array());
		print_json(o);
	} else if (rc) {
		fprintf(stderr, "%s: policy_invalid: %s\n", a->positional, err);
		printf("%s: invalid compiled policy (1 error)\n", a->positional);
	} else {
		printf("%s: valid compiled policy (%s)\n", a->positional, crgw_policy_hash(policy));
	}
	crgw_policy_unref(policy);
	return rc ? CTL_EXIT_ERROR : CTL_EXIT_OK;
}

static int cmd_validate(const struct policy_args *a)
{
	struct loaded l;
	int rc;

	if (looks_compiled(a->positional))
		return validate_compiled(a);
	rc = compile_policy(a, a->positional, &l);

	if (rc) {
		if (a->json) {
			/* The shape of an invalid policy's answer, so a consumer reads one shape. */
			json_t *o = json_object(), *e = json_object(), *errors = json_array();

			json_object_set_new(e, "code", json_string("policy_invalid"));
			json_object_set_new(e, "path", json_string(""));
			json_object_set_new(e, "line", json_integer(0));
			json_object_set_new(e, "column", json_integer(0));
			json_object_set_new(e, "message", json_string(l.error));
			json_array_append_new(errors, e);
			json_object_set_new(o, "valid", json_false());
			json_object_set_new(o, "policy", json_string(l.repo.path[0] ? l.repo.path
									   : a->positional ? a->positional : "."));
			json_object_set_new(o, "policy_hash", json_null());
			json_object_set_new(o, "errors", errors);
			json_object_set_new(o, "errors_total", json_integer(1));
			json_object_set_new(o, "warnings", json_array());
			json_object_set_new(o, "error", json_string(l.error));
			print_json(o);
		}
		return CTL_EXIT_ERROR;
	}
	const struct crgw_compiled *c = l.compiled;

	if (l.repo.warning[0] && !a->json)
		fprintf(stderr, "warning: %s\n", l.repo.warning);
	if (a->json) {
		json_t *o = json_object(), *errors = json_array(), *warnings = json_array();

		if (l.repo.warning[0]) {
			json_t *w = json_object();

			json_object_set_new(w, "path", json_string(""));
			json_object_set_new(w, "message", json_string(l.repo.warning));
			json_array_append_new(warnings, w);
		}
		for (unsigned i = 0; i < c->ndiags; i++)
			json_array_append_new(c->diags[i].code ? errors : warnings, diag_json(&c->diags[i]));
		json_object_set_new(o, "valid", json_boolean(c->nerrors == 0));
		json_object_set_new(o, "policy", json_string(l.repo.path));
		json_object_set_new(o, "policy_hash", c->nerrors ? json_null() : json_string(c->hash));
		json_object_set_new(o, "errors", errors);
		json_object_set_new(o, "errors_total", json_integer(c->nerrors));
		json_object_set_new(o, "warnings", warnings);
		print_json(o);
	} else {
		print_diags(l.repo.path, c);
		if (c->nerrors == 0)
			printf("%s: valid (%s)\n", l.repo.path, c->hash);
		else
			printf("%s: invalid (%u error%s)\n", l.repo.path, c->nerrors, c->nerrors == 1 ? "" : "s");
	}
	rc = c->nerrors ? CTL_EXIT_ERROR : CTL_EXIT_OK;
	crgw_compiled_free(l.compiled);
	return rc;
}

static int cmd_compile(const struct policy_args *a)
{
	struct loaded l;
	int rc = compile_policy(a, a->positional, &l);

	if (rc)
		return CTL_EXIT_ERROR;
	if (l.repo.warning[0])
		fprintf(stderr, "warning: %s\n", l.repo.warning);
	print_diags(l.repo.path, l.compiled);
	if (l.compiled->nerrors) {
		crgw_compiled_free(l.compiled);
		return CTL_EXIT_ERROR;
	}
	char *text = l.compiled->json;
	char *pretty = NULL;

	/* Humans get indentation; --json and -o get the canonical bytes the hash covers. */
	if (!a->json && !a->output) {
		json_t *doc = json_loads(l.compiled->json, 0, NULL);

		pretty = doc ? json_dumps(doc, JSON_SORT_KEYS | JSON_INDENT(2)) : NULL;
		json_decref(doc);
		text = pretty ? pretty : text;
	}
	FILE *f = a->output ? fopen(a->output, "w") : stdout;

	if (!f) {
		fprintf(stderr, "crgw-ctl: %s: %s\n", a->output, strerror(errno));
		rc = CTL_EXIT_ERROR;
	} else {
		fprintf(f, "%s\n", text);
		if (f != stdout && fclose(f) != 0) {
			fprintf(stderr, "crgw-ctl: %s: %s\n", a->output, strerror(errno));
			rc = CTL_EXIT_ERROR;
		}
	}
	free(pretty);
	crgw_compiled_free(l.compiled);
	return rc;
}

static const char *explain_text(const struct crgw_decision *d)
{
	if (d->allow)
		return strcmp(d->rule, "sandbox.network.default") == 0
			       ? "no rule names this destination and the policy's default is allow"
			       : "an allow rule admits this host on this port";
	switch (d->reason) {
	case CRGW_REASON_HOST_NOT_ALLOWED:
		return strcmp(d->rule, "sandbox.network.default") == 0
			       ? "no allow rule names this host, and the policy's default is deny"
			       : "a deny rule matches this host and port; deny rules take precedence over allow rules";
	case CRGW_REASON_PORT_NOT_ALLOWED:
		return "an allow rule names this host, but not on this port";
	case CRGW_REASON_IP_LITERAL_NOT_ALLOWED:
		return strcmp(d->rule, "sandbox.network.default") == 0
			       ? "an IP address is matched only against IP/CIDR rules, and none admits it"
			       : "a deny rule matches this address";
	case CRGW_REASON_PRIVATE_ADDRESS_BLOCKED:
		return strcmp(d->rule, "gateway.blocked_ranges") == 0
			       ? "the address is in a range the gateway always refuses"
			       : "loopback, link-local, metadata, unspecified, multicast and reserved addresses need a "
				 "CIDR allow rule at least as specific as their range";
	default:
		return "denied";
	}
}

static int load_for_explain(const struct policy_args *a, struct crgw_policy **policy, char *label, size_t n)
{
	char err[512];
	int rc;

	if (a->compiled) {
		char *json = NULL;
		size_t len = 0;

		rc = read_compiled(a->compiled, &json, &len);
		if (rc)
			return rc;
		rc = crgw_policy_load(json, len, policy, err, sizeof(err));
		free(json);
		if (rc)
			fprintf(stderr, "crgw-ctl: %s: policy_invalid: %s\n", a->compiled, err);
		snprintf(label, n, "%s", a->compiled);
		return rc;
	}
	struct loaded l;

	rc = compile_policy(a, a->policy, &l);
	if (rc)
		return rc;
	if (l.repo.warning[0])
		fprintf(stderr, "warning: %s\n", l.repo.warning);
	snprintf(label, n, "%s", l.repo.path);
	if (l.compiled->nerrors) {
		print_diags(l.repo.path, l.compiled);
		crgw_compiled_free(l.compiled);
		return -EINVAL;
	}
	rc = crgw_policy_load(l.compiled->json, l.compiled->json_len, policy, err, sizeof(err));
	if (rc)
		fprintf(stderr, "crgw-ctl: %s: %s\n", l.repo.path, err);
	crgw_compiled_free(l.compiled);
	return rc;
}

/*
 * The host part of a HOST[:PORT] that crgw_hostport_parse refused for its host, as the user wrote it: the
 * same split as that function makes ("[v6]:port", one colon, or a bare IPv6 address).
 */
static void host_part(const char *in, char *out, size_t size)
{
	size_t len = strlen(in);
	const char *colon = strchr(in, ':');

	if (in[0] == '[') {
		const char *close = strchr(in, ']');

		/* "[::1]junk" is refused whole: what follows the bracket is no port, so it stays in the host shown. */
		if (close && close[1] == ':')
			len = (size_t)(close - in) + 1;
	} else if (colon && !strchr(colon + 1, ':')) {
		len = (size_t)(colon - in);
	}
	snprintf(out, size, "%.*s", (int)len, in);
}

/* What explain says about an IP host that carries an IPv4 address (docs/policy.md). */
static void print_embedded(const struct crgw_host *host, json_t *o)
{
	struct crgw_host v4;
	enum crgw_embed form = crgw_host_embedded_ipv4(host, &v4);

	if (form == CRGW_EMBED_NONE)
		return;
	if (o) {
		json_t *e = json_object();

		json_object_set_new(e, "form", json_string(crgw_embed_str(form)));
		json_object_set_new(e, "address", json_string(v4.text));
		json_object_set_new(o, "embedded_ipv4", e);
		return;
	}
	printf("  carries: %s (%s), checked as that IPv4 address too\n", v4.text, crgw_embed_str(form));
}

/*
 * The services of mediation that reach `host` for the sandbox, whatever the decision for a direct
 * connection: git.hosts and the enabled registries' allowed_hosts (docs/mediation.md, docs/registries.md).
 * A host a job clones from or installs from is often one the network rules do not name, and an explain
 * that said only "deny" would send its reader looking for the wrong rule.
 */
static json_t *mediation_routes(const struct crgw_policy *policy, const struct crgw_host *host)
{
	static const char *const modes[] = { "off", "deny_unknown", "warn" };
	const char *off;
	json_t *routes = json_array();

	if (!routes || host->kind != CRGW_HOST_NAME)
		return routes;
	if (crgw_policy_git_host_allowed(policy, host->text))
		json_array_append_new(routes, json_pack("{s:s, s:s, s:b}", "service", "git", "rule", "git.hosts",
							  "push", crgw_policy_git_push(policy)));
	for (size_t i = 0; i < CRGW_REGISTRY_COUNT; i++) {
		const struct crgw_registry_rule *r = crgw_policy_registry(policy, crgw_registry_names[i]);
		char rule[64];

		if (!r || !r->enable || !crgw_policy_registry_host_allowed(r, host->text))
			continue;
		snprintf(rule, sizeof(rule), "registries.%s.allowed_hosts", crgw_registry_names[i]);
		off = r->fallback_allow ? "off (fallback: allow)" : "off (fallback: deny)";
		json_array_append_new(routes, json_pack("{s:s, s:s, s:s, s:s}", "service", "registry", "registry",
							  crgw_registry_names[i], "rule", rule, "lockfile",
							  r->mode == CRGW_LOCKFILE_OFF ? off : modes[r->mode]));
	}
	return routes;
}

static void print_routes(const json_t *routes, const char *host)
{
	size_t i;
	json_t *r;

	json_array_foreach(routes, i, r) {
		const char *service = json_string_value(json_object_get(r, "service"));
		const char *rule = json_string_value(json_object_get(r, "rule"));

		/* The decision above is a direct connection's; these reach the host another way. */
		if (!strcmp(service, "git"))
			printf("  mediation: %s: git in the sandbox clones and fetches https://%s/… through the "
			       "gateway's mediation, which adds the operator's credential (pushes: %s)\n",
			       rule, host, json_is_true(json_object_get(r, "push")) ? "as git.push_refs allow" : "refused");
		else
			printf("  mediation: %s: %s in the sandbox installs from %s through the gateway's mediation "
			       "(lockfile enforcement: %s)\n",
			       rule, json_string_value(json_object_get(r, "registry")), host,
			       json_string_value(json_object_get(r, "lockfile")));
	}
}

static int cmd_explain(const struct policy_args *a)
{
	struct crgw_policy *policy = NULL;
	struct crgw_blocklist *blocked = NULL;
	struct crgw_decision d;
	struct crgw_host host;
	uint16_t port;
	const char *why = NULL;
	char label[4096], invalid_host[1100], explanation[512];
	bool invalid = false;
	int rc = CTL_EXIT_ERROR;

	if (!a->positional || !a->positional[0]) {
		fprintf(stderr, "crgw-ctl policy explain: HOST[:PORT] is required\n");
		return CTL_EXIT_ERROR;
	}
	if (a->compiled && a->policy) {
		fprintf(stderr, "crgw-ctl policy explain: --policy and --compiled exclude each other\n");
		return CTL_EXIT_ERROR;
	}
	/* A URL pasted whole read as HOST:PORT with the port "//host/...": say what was wrong with it. */
	/* The question as asked, for a terminal: an escape in it must not drive the reader's. */
	char asked[1100];

	crgw_audit_text_safe(asked, sizeof(asked), a->positional, strlen(a->positional));
	if (strstr(a->positional, "://")) {
		fprintf(stderr, "crgw-ctl policy explain: '%s': a URL; give HOST[:PORT] (https://h/p is h:443)\n",
			asked);
		return CTL_EXIT_ERROR;
	}
	switch (crgw_hostport_parse(a->positional, strlen(a->positional), 443, &host, &port, &why)) {
	case 0:
		break;
	case -EINVAL:
		/*
		 * A host the gateway never reads as a name or an address (0177.0.0.1, 0x7f000001, 2130706433,
		 * 127.1, a stray character): it refuses the target before any rule is consulted, so that is the
		 * answer, not a usage error. A bad port is the question's fault, and stays one.
		 */
		invalid = true;
		host_part(a->positional, invalid_host, sizeof(invalid_host));
		break;
	default:
		fprintf(stderr, "crgw-ctl: '%s': %s\n", asked, why);
		return CTL_EXIT_ERROR;
	}
	blocked = ctl_gateway_blocklist();
	if (!blocked)
		return CTL_EXIT_ERROR;
	for (unsigned i = 0; i < a->nblocked; i++) {
		const char *bad = "out of memory";

		if (crgw_blocklist_add(blocked, a->blocked[i], &bad) != 0) {
			fprintf(stderr, "crgw-ctl: --blocked '%s': %s (expected ADDRESS or ADDRESS/PREFIX)\n", a->blocked[i],
				bad);
			goto out;
		}
	}
	if (load_for_explain(a, &policy, label, sizeof(label)) != 0)
		goto out;
	if (invalid) {
		/* What the proxies do with such a CONNECT target, URL or Host field: 400, request_invalid, no rule. */
		d = (struct crgw_decision){ .allow = false, .reason = CRGW_REASON_REQUEST_INVALID, .rule = NULL };
		snprintf(explanation, sizeof(explanation),
			 "the proxies refuse a target whose host is neither a name nor a canonical IP address (HTTP 400, "
			 "or a closed connection) before any rule is consulted: %s",
			 why);
	} else {
		crgw_policy_decide(policy, blocked, &host, port, &d);
		snprintf(explanation, sizeof(explanation), "%s", explain_text(&d));
	}
	if (a->json) {
		json_t *o = json_object();
		json_t *h = json_string(invalid ? invalid_host : host.text);

		json_object_set_new(o, "action", json_string(d.allow ? "allow" : "deny"));
		json_object_set_new(o, "reason_code",
				    d.allow ? json_null() : json_string(crgw_reason_str(d.reason)));
		/* A refused host is printed as given; jansson refuses text that is not UTF-8 (then: null). */
		json_object_set_new(o, "host", h ? h : json_null());
		json_object_set_new(o, "host_kind",
				    json_string(invalid			      ? "invalid"
						: host.kind == CRGW_HOST_NAME ? "name"
						: host.kind == CRGW_HOST_IPV4 ? "ipv4"
									      : "ipv6"));
		json_object_set_new(o, "port", json_integer(port));
		json_object_set_new(o, "rule", d.rule ? json_string(d.rule) : json_null());
		json_object_set_new(o, "explanation", json_string(explanation));
		json_object_set_new(o, "policy", json_string(label));
		json_object_set_new(o, "policy_hash", json_string(crgw_policy_hash(policy)));
		if (!invalid) {
			print_embedded(&host, o);
			json_object_set_new(o, "mediation", mediation_routes(policy, &host));
		}
		print_json(o);
	} else {
		bool v6 = !invalid && host.kind == CRGW_HOST_IPV6;

		char shown_host[1100];

		crgw_audit_text_safe(shown_host, sizeof(shown_host), invalid ? invalid_host : host.text,
				     strlen(invalid ? invalid_host : host.text));
		printf("%s %s%s%s:%u\n", d.allow ? "allow" : "deny", v6 ? "[" : "", shown_host, v6 ? "]" : "", port);
		if (!d.allow)
			printf("  reason: %s\n", crgw_reason_str(d.reason));
		printf("  rule:   %s\n", d.rule ? d.rule : "none (refused before any rule is consulted)");
		if (!invalid)
			print_embedded(&host, NULL);
		printf("  why:    %s\n", explanation);
		if (!invalid) {
			json_t *routes = mediation_routes(policy, &host);

			print_routes(routes, host.text);
			json_decref(routes);
		}
		printf("  policy: %s (%s)\n", label, crgw_policy_hash(policy));
	}
	rc = d.allow ? CTL_EXIT_OK : CTL_EXIT_DENY;
out:
	crgw_policy_unref(policy);
	crgw_blocklist_free(blocked);
	return rc;
}

int cmd_policy(int argc, char **argv)
{
	static const char help[] = "usage: crgw-ctl policy validate|compile|explain|diff|learn|push|get|ls ... (crgw-ctl --help)\n";
	struct policy_args a;
	int rc;

	if (argc < 2) {
		fputs(help, stderr);
		return CTL_EXIT_ERROR;
	}
	const char *sub = argv[1];

	if (!strcmp(sub, "--help") || !strcmp(sub, "-h")) {
		fputs(help, stdout);
		return CTL_EXIT_OK;
	}
	if (!strcmp(sub, "diff"))
		return policy_diff(argc - 1, argv + 1);
	if (!strcmp(sub, "learn"))
		return policy_learn(argc - 1, argv + 1);
	if (!strcmp(sub, "push") || !strcmp(sub, "get") || !strcmp(sub, "ls"))
		return policy_store_cmd(argc - 1, argv + 1);
	const char *allowed = strcmp(sub, "validate") == 0  ? "jA"
			      : strcmp(sub, "compile") == 0 ? "jAorc"
			      : strcmp(sub, "explain") == 0 ? "jApCb"
							    : NULL;

	if (!allowed) {
		fprintf(stderr, "crgw-ctl policy: unknown subcommand '%s'\n%s", sub, help);
		return CTL_EXIT_ERROR;
	}
	rc = parse_args(argc - 1, argv + 1, &a, allowed);
	if (rc == 1) {
		fputs(help, stdout);
		return CTL_EXIT_OK;
	}
	if (rc)
		return CTL_EXIT_ERROR;
	if (strcmp(sub, "validate") == 0)
		return cmd_validate(&a);
	if (strcmp(sub, "compile") == 0)
		return cmd_compile(&a);
	return cmd_explain(&a);
}

/*
 * The gateway refuses its host's own addresses (docs/policy.md, "Blocked ranges"), and every host has these
 * two on lo: without them explain would call 127.0.0.1 a special address that a rule for 127.0.0.0/8 opens,
 * and the gateway would refuse it.
 */
struct crgw_blocklist *ctl_gateway_blocklist(void)
{
	static const char *const own[] = { "127.0.0.1", "::1" };
	struct crgw_blocklist *list = crgw_blocklist_new();

	for (size_t i = 0; list && i < sizeof(own) / sizeof(own[0]); i++) {
		if (crgw_blocklist_add(list, own[i], NULL)) {
			crgw_blocklist_free(list);
			list = NULL;
		}
	}
	return list;
}

int ctl_compile_policy(const char *where, bool allow_default_allow, char **json, char *root, size_t rootlen)
{
	struct policy_args a = { .allow_default_allow = allow_default_allow };
	struct loaded l;
	int rc = compile_policy(&a, where, &l);

	if (rc)
		return rc;
	if (l.repo.warning[0])
		fprintf(stderr, "warning: %s\n", l.repo.warning);
	print_diags(l.repo.path, l.compiled);
	if (l.compiled->nerrors) {
		crgw_compiled_free(l.compiled);
		return -EINVAL;
	}
	*json = strdup(l.compiled->json);
	crgw_compiled_free(l.compiled);
	if (root && snprintf(root, rootlen, "%s", l.repo.root) >= (int)rootlen) {
		free(*json);
		return -ENAMETOOLONG;
	}
	return *json ? 0 : -ENOMEM;
}

int ctl_policy_document(const char *where, bool allow_default_allow, char **json, size_t *len)
{
	int rc;

	*json = NULL;
	if (looks_compiled(where))
		return read_compiled(where, json, len);
	rc = ctl_compile_policy(where, allow_default_allow, json, NULL, 0);
	if (!rc)
		*len = strlen(*json);
	return rc;
}
