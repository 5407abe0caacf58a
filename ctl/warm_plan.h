/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What `crgw-ctl cache warm` asks the gateway's mediation for: the /registry/ path of every artifact a
 * compiled policy's lockfiles name (npm tarballs, pip project pages and the files their hashes pick, Go
 * module zips and go.mod files). Pure: no I/O, no globals, any thread; unit-tested in
 * ctl/tests/test_warm_plan.c.
 */
#ifndef CRGW_CTL_WARM_PLAN_H
#define CRGW_CTL_WARM_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "crgw/policy.h"

/* Bytes of one /registry/ path, NUL included. */
#define WARM_PATH_MAX 2048

enum warm_kind {
	WARM_NPM,      /* a tarball */
	WARM_PIP_PAGE, /* a project's page: read for the files whose sha256 the requirements name */
	WARM_PIP_FILE, /* a distribution file of a page */
	WARM_GO,       /* a module zip (.zip) or a go.mod file (.mod) */
};

/* One request to make, or one artifact that cannot be asked for (`invalid`, reported as failed). */
struct warm_item {
	enum warm_kind kind;
	const char *registry; /* "npm", "pip" or "go" (static) */
	const char *name;     /* borrowed from the policy; for a page, the project as the lockfile wrote it */
	const char *version;  /* borrowed from the policy; NULL for a page */
	char *path;           /* malloc'd "/registry/..."; NULL when `invalid` */
	const char *invalid;  /* static: a reason word (invalid_name, no_allowed_host, no_sha256) or NULL */
	size_t project;       /* WARM_PIP_PAGE: its index in warm_plan.projects */
};

/* A sha256 the requirements name for a project: which files of its page to fetch. */
struct warm_hash {
	const char *sha256;  /* 64 hex digits, borrowed from the policy (after its "sha256:") */
	const char *name;    /* borrowed */
	const char *version; /* borrowed */
	bool found;          /* set by the caller when a file of the page had it */
};

struct warm_project {
	char name[256];   /* PEP 503-normalized */
	const char *host; /* the pip rule's primary, borrowed */
	size_t first, n;  /* its hashes: warm_plan.hashes[first .. first + n) */
};

struct warm_plan {
	struct warm_item *items; /* npm tarballs, then pip pages (and pip artifacts that cannot be asked for), then Go */
	size_t nitems;
	struct warm_project *projects;
	size_t nprojects;
	struct warm_hash *hashes;
	size_t nhashes;
};

/*
 * The plan for the enabled registries among `npm`, `pip` and `go` (each borrowed, may be NULL): one item per
 * distinct npm name@version (from the artifact's own host when it is an allowed host, else the rule's
 * primary), one page per pip project with its sha256 hashes, one item per distinct Go module@version (a
 * ".../go.mod" version is the .mod file). The plan borrows strings from the rules: it must not outlive them.
 * 0, or -ENOMEM (then `out` is empty). An empty plan is not an error.
 */
int warm_plan_build(const struct crgw_registry_rule *npm, const struct crgw_registry_rule *pip,
		    const struct crgw_registry_rule *go, struct warm_plan *out);

/* Frees what warm_plan_build made; accepts an empty or zeroed plan. */
void warm_plan_free(struct warm_plan *plan);

/*
 * "/registry/npm/<host>/<name>/-/<name without its scope>-<version>.tgz" into `out` (`cap` bytes), checked
 * to be exactly the path the gateway's npm handler reads back as name@version. 0; -EINVAL for a name, a
 * version or a host the gateway would refuse; -E2BIG.
 */
int warm_npm_path(const char *host, const char *name, const char *version, char *out, size_t cap);

/*
 * A pip project's page, "/registry/pypi/<host>/simple/<project>/", with the project PEP 503-normalized; with a
 * file name (not NULL), that file of the page: ".../<project>/<file>". 0; -EINVAL for a name the gateway
 * would refuse (a file name other than letters, digits and "._+!-"); -E2BIG.
 */
int warm_pypi_path(const char *host, const char *project, const char *file, char *out, size_t cap);

/*
 * A Go module's zip, "/registry/go/<host>/<escaped module>/@v/<escaped version>.zip", or its go.mod file
 * (".mod") when `version` ends in "/go.mod", as go.sum writes those. 0; -EINVAL for a module path or a
 * version Go would refuse; -E2BIG.
 */
int warm_go_path(const char *host, const char *module, const char *version, char *out, size_t cap);

#endif
