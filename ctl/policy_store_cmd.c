/* SPDX-License-Identifier: Apache-2.0 */
/*
 * crgw-ctl policy push|get|ls: the gateway's policy store (docs/ctl.md). A policy pushed once can be
 * named by its hash in every registration, and the document behind any audit event's policy_hash can
 * be fetched back.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

static const char usage[] = "usage: crgw-ctl policy push [--json] [--allow-default-allow] PATH|DIR|COMPILED\n"
			    "       crgw-ctl policy get [-o FILE] sha256:HEX\n"
			    "       crgw-ctl policy ls [--json]\n";

static int parse(int argc, char **argv, bool *json, bool *allow, const char **output)
{
	static const struct option options[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"allow-default-allow", no_argument, NULL, 'A'},
	    {"output", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "jo:h", options, NULL)) != -1) {
		switch (opt) {
		case 'j':
			*json = true;
			break;
		case 'A':
			*allow = true;
			break;
		case 'o':
			*output = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return 1;
		default:
			fputs(usage, stderr);
			return -1;
		}
	}
	return 0;
}

static int push(int argc, char **argv)
{
	struct ctl_response r = {0};
	bool json = false, allow = false;
	const char *output = NULL;
	char *doc = NULL, err[512];
	size_t len;
	int rc = parse(argc, argv, &json, &allow, &output);

	if (rc)
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_ERROR;
	if (argc - optind != 1 || output) {
		fprintf(stderr, "crgw-ctl policy push: one PATH, DIR or compiled document is required\n%s", usage);
		return CTL_EXIT_ERROR;
	}
	if (ctl_policy_document(argv[optind], allow, &doc, &len))
		return CTL_EXIT_ERROR;
	if (ctl_request("POST", "/v1/policies", doc, &r, err, sizeof(err))) {
		fprintf(stderr, "crgw-ctl: %s\n", err);
		free(doc);
		return CTL_EXIT_ERROR;
	}
	free(doc);
	if (r.status != 200 && r.status != 201) {
		ctl_print_error("policy push", &r);
		free(r.body);
		return CTL_EXIT_ERROR;
	}
	if (json) {
		fputs(r.body, stdout);
	} else {
		json_t *j = json_loads(r.body, 0, NULL);

		printf("%s%s\n", json_string_value(json_object_get(j, "policy_hash")) ?: "?",
		       json_is_true(json_object_get(j, "created")) ? "" : " (already stored)");
		json_decref(j);
	}
	free(r.body);
	return CTL_EXIT_OK;
}

static int get(int argc, char **argv)
{
	struct ctl_response r = {0};
	bool json = false, allow = false;
	const char *output = NULL;
	char path[128], err[512];
	int rc = parse(argc, argv, &json, &allow, &output);

	if (rc)
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_ERROR;
	if (argc - optind != 1 || strlen(argv[optind]) > 80 || allow) {
		fprintf(stderr, "crgw-ctl policy get: one policy hash is required\n%s", usage);
		return CTL_EXIT_ERROR;
	}
	snprintf(path, sizeof(path), "/v1/policies/%s", argv[optind]);
	if (ctl_request("GET", path, NULL, &r, err, sizeof(err))) {
		fprintf(stderr, "crgw-ctl: %s\n", err);
		return CTL_EXIT_ERROR;
	}
	if (r.status != 200) {
		ctl_print_error("policy get", &r);
		free(r.body);
		return CTL_EXIT_ERROR;
	}
	if (output) {
		int fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		ssize_t n = fd >= 0 ? write(fd, r.body, r.len) : -1;

		if (fd < 0 || n != (ssize_t)r.len || close(fd)) {
			fprintf(stderr, "crgw-ctl: %s: %s\n", output, strerror(errno ? errno : EIO));
			free(r.body);
			return CTL_EXIT_ERROR;
		}
	} else {
		fwrite(r.body, 1, r.len, stdout);
	}
	free(r.body);
	return CTL_EXIT_OK;
}

static int list(int argc, char **argv)
{
	struct ctl_response r = {0};
	bool json = false, allow = false;
	const char *output = NULL;
	char err[512];
	int rc = parse(argc, argv, &json, &allow, &output);
	json_t *j, *e;
	size_t i;

	if (rc)
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_ERROR;
	if (argc != optind || output || allow) {
		fputs(usage, stderr);
		return CTL_EXIT_ERROR;
	}
	if (ctl_request("GET", "/v1/policies", NULL, &r, err, sizeof(err))) {
		fprintf(stderr, "crgw-ctl: %s\n", err);
		return CTL_EXIT_ERROR;
	}
	if (r.status != 200) {
		ctl_print_error("policy ls", &r);
		free(r.body);
		return CTL_EXIT_ERROR;
	}
	if (json) {
		fputs(r.body, stdout);
		free(r.body);
		return CTL_EXIT_OK;
	}
	j = json_loads(r.body, 0, NULL);
	printf("%-71s  %10s  %s\n", "POLICY_HASH", "BYTES", "STORED");
	json_array_foreach(json_object_get(j, "policies"), i, e)
	{
		printf("%-71s  %10lld  %s\n", json_string_value(json_object_get(e, "policy_hash")) ?: "?",
		       (long long)json_integer_value(json_object_get(e, "bytes")),
		       json_string_value(json_object_get(e, "stored")) ?: "?");
	}
	json_decref(j);
	free(r.body);
	return CTL_EXIT_OK;
}

int policy_store_cmd(int argc, char **argv)
{
	if (!strcmp(argv[0], "push"))
		return push(argc, argv);
	if (!strcmp(argv[0], "get"))
		return get(argc, argv);
	return list(argc, argv);
}
