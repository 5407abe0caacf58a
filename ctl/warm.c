/* SPDX-License-Identifier: Apache-2.0 */
/*
 * crgw-ctl cache warm: fetches every artifact a policy's lockfiles name ahead of a run, so that the next run
 * can work offline (docs/cache.md, "Warming the cache"). It goes through the gateway's own mediation exactly
 * as a sandbox does: a netns sandbox is made for the policy, and a child that joins only its network
 * namespace asks http://<gateway>:8170/registry/... for each artifact (several at once), discarding the
 * bytes. So the gateway applies the same checks, verifies the same way, fills the cache the same way and
 * audits the same events; there is no second fetch path in the gateway. The child reports one JSON line
 * per artifact over a pipe; the parent prints them and owns the sandbox, releasing it whatever happens.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <jansson.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crgw/vm.h"
#include "ctl.h"
#include "pypi_index.h"
#include "warm_plan.h"

/* Bytes of a refusal's body kept for the report. */
#define DETAIL_MAX 512
/* Bytes of one result line from the child; a longer one is an error. */
#define LINE_MAX_BYTES (64 * 1024)
#define JOBS_DEFAULT 8
#define JOBS_MAX 64
/* The child's user and group once it is in the sandbox's network namespace. */
#define NOBODY 65534

static const char warm_usage[] =
	"usage: crgw-ctl cache warm [--policy PATH|DIR] [--jobs N] [--json]\n"
	"\n"
	"Fetches every artifact the policy's lockfiles name (npm tarballs, pip files, Go modules) through the\n"
	"gateway's registry mediation, from a sandbox made for the policy, so that the content cache holds them\n"
	"before a run. One line per artifact: fetched, cached (it was already there) or failed with a reason.\n"
	"\n"
	"  --policy PATH|DIR   the policy (default: ./cleanroom.yaml, then ./.buildkite/cleanroom.yaml)\n"
	"  --jobs N            requests at once (default 8, at most 64)\n"
	"  --json              one JSON object per artifact, then a summary\n"
	"\n"
	"Exit codes: 0 every artifact is fetched or cached; 1 one failed; 2 bad usage, no artifacts to warm,\n"
	"a gateway without a cache, or the sandbox could not be made. Needs root.\n";

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the child: requests from inside the sandbox's network namespace ------------------------------- */

struct job {
	enum warm_kind kind;
	const char *registry, *name, *version; /* borrowed from the plan's policy */
	char *path;                            /* owned */
	char file[PYPI_MAX_FILENAME + 1];      /* WARM_PIP_FILE */
	size_t project;                        /* WARM_PIP_PAGE */
	char reason[64], cache[16];            /* X-Crgw-Reason, X-Crgw-Cache */
	char *body;                            /* a page whole; otherwise the first DETAIL_MAX bytes */
	size_t blen, bcap;
	uint64_t bytes;
	bool too_big;
	size_t qi;                             /* its place in the engine's queue */
};

struct engine {
	CURLM *multi;
	struct job **q;
	size_t n, cap, next; /* queued, and the first not started */
	unsigned running, max;
	const char *base;    /* "http://<gateway>:8170" */
	struct warm_plan *plan;
	struct curl_slist *page_accept; /* PEP 691 JSON: the gateway's pages carry their sha256 either way */
	FILE *out;
};

static void job_free(struct job *j)
{
	if (!j)
		return;
	free(j->path);
	free(j->body);
	free(j);
}

/* Printable ASCII only, no longer than `cap`: what goes into a report comes from the network. */
static void clean_copy(char *dst, size_t cap, const char *src, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len && n + 1 < cap; i++)
		dst[n++] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : ' ';
	while (n && dst[n - 1] == ' ')
		n--;
	dst[n] = '\0';
}

/* One result line. `status` "fetched", "cached" or "failed"; the others may be NULL or empty. */
static void emit(struct engine *e, const char *registry, const char *name, const char *version, const char *file,
		 const char *path, const char *status, const char *reason, const char *detail, long http_status,
		 uint64_t bytes)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s?}", "event", "artifact", "status", status, "registry", registry,
			      "name", name ? name : "", "version", version);
	char *s;

	if (!o)
		return;
	if (file && *file)
		json_object_set_new(o, "file", json_string(file));
	if (path)
		json_object_set_new(o, "path", json_string(path));
	json_object_set_new(o, "http_status", json_integer(http_status));
	json_object_set_new(o, "bytes", json_integer((json_int_t)bytes));
	if (reason && *reason)
		json_object_set_new(o, "reason", json_string(reason));
	if (detail && *detail)
		json_object_set_new(o, "detail", json_string(detail));
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (s) {
		fprintf(e->out, "%s\n", s);
		fflush(e->out);
	}
	free(s);
}

static int enqueue(struct engine *e, struct job *j)
{
	if (e->n == e->cap) {
		size_t ncap = e->cap ? e->cap * 2 : 128;
		struct job **q = realloc(e->q, ncap * sizeof(*q));

		if (!q)
			return -ENOMEM;
		e->q = q;
		e->cap = ncap;
	}
	j->qi = e->n;
	e->q[e->n++] = j;
	return 0;
}

static struct job *job_new(enum warm_kind kind, const char *registry, const char *name, const char *version,
			   const char *path)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j || !(j->path = strdup(path))) {
		free(j);
		return NULL;
	}
	j->kind = kind;
	j->registry = registry;
	j->name = name;
	j->version = version;
	return j;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct job *j = arg;
	size_t len = size * nmemb, keep = j->kind == WARM_PIP_PAGE ? PYPI_MAX_DOC : DETAIL_MAX, take;

	j->bytes += len;
	if (j->blen + len > keep && j->kind == WARM_PIP_PAGE) {
		j->too_big = true;
		return 0; /* ends the transfer */
	}
	take = j->blen < keep ? (len < keep - j->blen ? len : keep - j->blen) : 0;
	if (!take)
		return len;
	if (j->blen + take + 1 > j->bcap) {
		size_t ncap = j->bcap ? j->bcap : 4096;
		char *b;

		while (ncap < j->blen + take + 1)
			ncap *= 2;
		b = realloc(j->body, ncap);
		if (!b)
			return 0;
		j->body = b;
		j->bcap = ncap;
	}
	memcpy(j->body + j->blen, data, take);
	j->blen += take;
	j->body[j->blen] = '\0';
	return len;
}

/*
 * "Name: value" when the line (`len` bytes, not NUL-terminated: libcurl's header data) is that header,
 * case-insensitive: the value up to the line's end, cleaned into `out`.
 */
static void header_value(const char *line, size_t len, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name), at, end;

	if (len <= nlen || strncasecmp(line, name, nlen) || line[nlen] != ':')
		return;
	at = nlen + 1;
	while (at < len && (line[at] == ' ' || line[at] == '\t'))
		at++;
	for (end = at; end < len && line[end] != '\r' && line[end] != '\n'; end++)
		;
	clean_copy(out, cap, line + at, end - at);
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct job *j = arg;
	size_t len = size * nmemb;

	if (len >= 5 && !strncmp(data, "HTTP/", 5))
		j->reason[0] = j->cache[0] = '\0'; /* a new answer */
	header_value(data, len, "X-Crgw-Reason", j->reason, sizeof(j->reason));
	header_value(data, len, "X-Crgw-Cache", j->cache, sizeof(j->cache));
	return len;
}

static int start(struct engine *e, struct job *j)
{
	char url[WARM_PATH_MAX + 128];
	CURL *c = curl_easy_init();

	if (!c)
		return -ENOMEM;
	snprintf(url, sizeof(url), "%s%s", e->base, j->path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PRIVATE, j);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, j);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, j);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "crgw-ctl-cache-warm/" CRGW_VERSION);
	/* Only the gateway, directly: no proxy from the environment, no redirect. */
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
	/* The gateway ends a stalled upstream itself (mediation.idle_timeout); this is for a stalled gateway. */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 300L);
	if (j->kind == WARM_PIP_PAGE)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, e->page_accept);
	if (curl_multi_add_handle(e->multi, c) != CURLM_OK) {
		curl_easy_cleanup(c);
		return -ENOMEM;
	}
	e->running++;
	return 0;
}

/* The report of one finished artifact request. */
static void report(struct engine *e, struct job *j, CURLcode rc, long status)
{
	char detail[DETAIL_MAX + 64] = "", reason[80];
	const char *st = "failed";

	snprintf(reason, sizeof(reason), "%s", j->reason);
	if (rc != CURLE_OK) {
		/* A cut after the head (an integrity mismatch among them: the audit says which) or no answer. */
		if (!reason[0])
			snprintf(reason, sizeof(reason), "transfer_failed");
		snprintf(detail, sizeof(detail), "%s", curl_easy_strerror(rc));
	} else if (status == 200) {
		if (!strcasecmp(j->cache, "hit")) {
			st = "cached";
		} else if (!strcasecmp(j->cache, "uncached")) {
			snprintf(reason, sizeof(reason), "not_cacheable");
			snprintf(detail, sizeof(detail), "the gateway served it without keeping it (an integrity it "
							 "cannot cache by, such as sha1, or the cache could not take it)");
		} else {
			st = "fetched";
			reason[0] = '\0';
		}
	} else {
		const char *b = j->body ? j->body : "";

		if (!reason[0])
			snprintf(reason, sizeof(reason), "http_%ld", status);
		/* The gateway's answers read "crgw: [<reason>: ]<detail>": the detail is enough. */
		if (!strncmp(b, "crgw: ", 6))
			b += 6;
		if (!strncmp(b, reason, strlen(reason)) && b[strlen(reason)] == ':')
			b += strlen(reason) + 1;
		while (*b == ' ')
			b++;
		clean_copy(detail, sizeof(detail), b, strlen(b));
	}
	/* What an error answer's body holds is not the artifact: only an artifact's bytes count. */
	if (status != 200)
		j->bytes = 0;
	emit(e, j->registry, j->name, j->version, j->kind == WARM_PIP_FILE ? j->file : NULL, j->path, st, reason,
	     detail, status, j->bytes);
}

struct page_ctx {
	struct engine *e;
	struct warm_project *proj;
	int err;
};

static bool page_file(void *arg, const struct pypi_file *f, char *new_url, size_t cap)
{
	struct page_ctx *p = arg;
	struct warm_plan *plan = p->e->plan;
	char path[WARM_PATH_MAX];

	(void)new_url;
	(void)cap;
	if (!f->sha256)
		return false;
	for (size_t k = p->proj->first; k < p->proj->first + p->proj->n; k++) {
		struct warm_hash *h = &plan->hashes[k];
		struct job *j;

		if (strcasecmp(h->sha256, f->sha256))
			continue;
		h->found = true;
		if (warm_pypi_path(p->proj->host, p->proj->name, f->filename, path, sizeof(path))) {
			emit(p->e, "pip", h->name, h->version, f->filename, NULL, "failed", "invalid_name",
			     "a file name the gateway would not take", 0, 0);
			return false;
		}
		j = job_new(WARM_PIP_FILE, "pip", h->name, h->version, path);
		if (!j || enqueue(p->e, j)) {
			job_free(j);
			p->err = -ENOMEM;
			return false;
		}
		snprintf(j->file, sizeof(j->file), "%s", f->filename);
		return false; /* the page itself is not kept */
	}
	return false;
}

/* A project's page arrived: its files whose sha256 the requirements name are queued. */
static void page_done(struct engine *e, struct job *j, CURLcode rc, long status, const char *ctype)
{
	struct warm_project *proj = &e->plan->projects[j->project];
	struct page_ctx ctx = { .e = e, .proj = proj };
	char url[WARM_PATH_MAX + 128], detail[DETAIL_MAX + 200];
	const char *why = NULL;
	char *out = NULL;
	size_t out_len = 0;
	int perr = 0;

	if (rc == CURLE_OK && status == 200) {
		snprintf(url, sizeof(url), "%s%s", e->base, j->path);
		perr = pypi_index_rewrite(ctype && strstr(ctype, "json") ? PYPI_JSON : PYPI_HTML, j->body ? j->body : "",
					  j->blen, url, proj->name, PYPI_HTML, page_file, &ctx, &out, &out_len, &why);
		free(out);
		if (!perr && ctx.err)
			perr = ctx.err;
		for (size_t k = proj->first; !perr && k < proj->first + proj->n; k++) {
			struct warm_hash *h = &e->plan->hashes[k];

			if (h->found)
				continue;
			snprintf(detail, sizeof(detail), "the gateway's page for %s lists no file with sha256 %s", proj->name,
				 h->sha256);
			emit(e, "pip", h->name, h->version, NULL, j->path, "failed", "not_on_index", detail, status, 0);
		}
		if (!perr)
			return;
		snprintf(detail, sizeof(detail), "the project's page could not be read: %s", why ? why : strerror(-perr));
		snprintf(j->reason, sizeof(j->reason), "bad_page");
	} else if (j->too_big) {
		snprintf(detail, sizeof(detail), "the project's page is larger than %u bytes", PYPI_MAX_DOC);
		snprintf(j->reason, sizeof(j->reason), "bad_page");
	} else {
		/* No page: each of its artifacts is reported with the page's own refusal or failure. */
		struct job tmp = *j;

		for (size_t k = proj->first; k < proj->first + proj->n; k++) {
			struct warm_hash *h = &e->plan->hashes[k];

			tmp.name = h->name;
			tmp.version = h->version;
			report(e, &tmp, rc, status);
		}
		return;
	}
	for (size_t k = proj->first; k < proj->first + proj->n; k++) {
		struct warm_hash *h = &e->plan->hashes[k];

		if (!h->found)
			emit(e, "pip", h->name, h->version, NULL, j->path, "failed", j->reason, detail, status, 0);
	}
}

static void finished(struct engine *e, CURL *c, CURLcode rc)
{
	struct job *j = NULL;
	long status = 0;
	char *ctype = NULL;

	curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **)&j);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ctype);
	if (j->kind == WARM_PIP_PAGE)
		page_done(e, j, rc, status, ctype);
	else
		report(e, j, rc, status);
	curl_multi_remove_handle(e->multi, c);
	curl_easy_cleanup(c);
	e->running--;
}

/* Runs every request of the plan, `max` at a time. 0, or -errno when it could not go on. */
static int engine_run(struct engine *e)
{
	for (size_t i = 0; i < e->plan->nitems; i++) {
		struct warm_item *it = &e->plan->items[i];
		struct job *j;

		if (it->invalid) {
			emit(e, it->registry, it->name, it->version, NULL, NULL, "failed", it->invalid,
			     !strcmp(it->invalid, "no_allowed_host") ? "the registry has no allowed host"
			     : !strcmp(it->invalid, "no_sha256") ? "the requirements give it no sha256, which is what the "
								   "gateway checks a file by"
								 : "a name or version the gateway would refuse",
			     0, 0);
			continue;
		}
		j = job_new(it->kind, it->registry, it->name, it->version, it->path);
		if (!j || enqueue(e, j)) {
			job_free(j);
			return -ENOMEM;
		}
		j->project = it->project;
	}
	while (e->next < e->n || e->running) {
		CURLMsg *msg;
		int still, left;

		while (e->running < e->max && e->next < e->n) {
			struct job *j = e->q[e->next++];

			if (start(e, j)) {
				emit(e, j->registry, j->name, j->version, NULL, j->path, "failed", "transfer_failed",
				     "out of memory", 0, 0);
				job_free(j);
				e->q[e->next - 1] = NULL;
			}
		}
		if (curl_multi_perform(e->multi, &still) != CURLM_OK)
			return -EIO;
		while ((msg = curl_multi_info_read(e->multi, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct job *j = NULL;

			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
			finished(e, msg->easy_handle, msg->data.result);
			e->q[j->qi] = NULL;
			job_free(j);
		}
		if (e->running && curl_multi_poll(e->multi, NULL, 0, 1000, NULL) != CURLM_OK)
			return -EIO;
	}
	return 0;
}

/*
 * The child: joins the sandbox's network namespace (and nothing else: it needs no file of the sandbox),
 * becomes nobody and runs the plan. Never returns.
 */
static void __attribute__((noreturn)) child_main(int out_fd, pid_t parent, long holder, const char *base,
						 struct warm_plan *plan, unsigned jobs)
{
	struct engine e = { .base = base, .plan = plan, .max = jobs };
	char ns[64];
	int fd, err;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(2);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	e.out = fdopen(out_fd, "w");
	if (!e.out)
		_exit(2);
	snprintf(ns, sizeof(ns), "/proc/%ld/ns/net", holder);
	fd = open(ns, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET)) {
		fprintf(stderr, "crgw-ctl: cache warm: joining the sandbox's network namespace %s: %s\n", ns,
			strerror(errno));
		_exit(2);
	}
	close(fd);
	/*
	 * What it reads next comes from the network (pages the gateway rewrote from an upstream's): it needs
	 * no privilege to make TCP connections, so it keeps none.
	 */
	if (setgroups(0, NULL) || setresgid(NOBODY, NOBODY, NOBODY) || setresuid(NOBODY, NOBODY, NOBODY) ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		fprintf(stderr, "crgw-ctl: cache warm: dropping privileges: %s\n", strerror(errno));
		_exit(2);
	}
	/*
	 * The change of user cleared the parent-death signal (prctl(2)): set again, or a parent killed with
	 * SIGKILL would leave this process fetching on, as nobody, in a sandbox nobody releases.
	 */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(2);
	e.multi = curl_multi_init();
	if (!e.multi)
		_exit(2);
	e.page_accept = curl_slist_append(NULL, "Accept: application/vnd.pypi.simple.v1+json");
	if (!e.page_accept)
		_exit(2);
	curl_multi_setopt(e.multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)jobs);
	err = engine_run(&e);
	if (err)
		fprintf(stderr, "crgw-ctl: cache warm: %s\n", strerror(-err));
	fclose(e.out);
	_exit(err ? 2 : 0);
}

/* ---- the parent: the sandbox, and the report ------------------------------------------------------- */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

struct tally {
	unsigned long fetched, cached, failed;
	unsigned long long bytes;
};

/* One line from the child: counted and printed. Returns 0, or -EPROTO for a line that is not a result. */
static int take_line(const char *line, bool json, struct tally *t)
{
	json_t *o = json_loads(line, 0, NULL);
	const char *status = json_string_value(json_object_get(o, "status"));
	const char *reason = json_string_value(json_object_get(o, "reason"));
	const char *detail = json_string_value(json_object_get(o, "detail"));
	const char *file = json_string_value(json_object_get(o, "file"));
	const char *version = json_string_value(json_object_get(o, "version"));
	unsigned long long bytes = (unsigned long long)json_integer_value(json_object_get(o, "bytes"));

	if (!status) {
		json_decref(o);
		return -EPROTO;
	}
	if (!strcmp(status, "fetched"))
		t->fetched++;
	else if (!strcmp(status, "cached"))
		t->cached++;
	else
		t->failed++;
	t->bytes += bytes;
	if (json) {
		puts(line);
	} else {
		printf("%s%s%s  %s@%s  %llu", status, reason ? " " : "", reason ? reason : "",
		       json_string_value(json_object_get(o, "name")), version ? version : "", bytes);
		if (file)
			printf("  %s", file);
		if (detail && strcmp(status, "fetched") && strcmp(status, "cached"))
			printf("  (%s)", detail);
		putchar('\n');
	}
	fflush(stdout);
	json_decref(o);
	return 0;
}

/*
 * Reads the child's lines until it closes the pipe or a signal stops us. 0, -EINTR, -ESRCH when the
 * sandbox's holder died (`holder_fd`, a pidfd, or -1), or -errno.
 */
static int read_results(int fd, int holder_fd, bool json, struct tally *t)
{
	char *buf = malloc(LINE_MAX_BYTES + 1);
	size_t have = 0;
	int err = 0;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = holder_fd, .events = POLLIN } };
		ssize_t n;
		char *nl, *at = buf;

		/*
		 * A stopping gateway releases every sandbox (it kills the holder) before it closes their
		 * connections, and the child's requests then wait out their 300-second stall limit: the holder's
		 * end ends the warm at once.
		 */
		if (poll(p, holder_fd >= 0 ? 2 : 1, -1) < 0) {
			if (errno == EINTR && !stop_signal)
				continue;
			err = errno == EINTR ? -EINTR : -errno;
			break;
		}
		if (holder_fd >= 0 && (p[1].revents & POLLIN) && !(p[0].revents & (POLLIN | POLLHUP))) {
			err = -ESRCH;
			break;
		}
		n = read(fd, buf + have, LINE_MAX_BYTES - have);

		if (n < 0 && errno == EINTR) {
			if (stop_signal) {
				err = -EINTR;
				break;
			}
			continue;
		}
		if (n <= 0) {
			err = n < 0 ? -errno : 0;
			break;
		}
		have += (size_t)n;
		buf[have] = '\0';
		while ((nl = memchr(at, '\n', have - (size_t)(at - buf)))) {
			*nl = '\0';
			if (take_line(at, json, t))
				fprintf(stderr, "crgw-ctl: cache warm: an unreadable report line was skipped\n");
			at = nl + 1;
		}
		have -= (size_t)(at - buf);
		memmove(buf, at, have);
		/* A SIGPIPE comes while a line is written (stdout's reader went away), never during the read. */
		if (stop_signal) {
			err = -EINTR;
			break;
		}
		if (have == LINE_MAX_BYTES) {
			err = -E2BIG;
			break;
		}
	}
	free(buf);
	return err;
}

/* The gateway has a content cache, or we say why not. `*offline` and its fill counters from its answer. */
static int check_cache(bool *offline, json_int_t *fills_failed, json_int_t *fills_active)
{
	struct ctl_response r;
	char err[512];
	json_t *j;

	if (ctl_request("GET", "/v1/cache", NULL, &r, err, sizeof(err))) {
		fprintf(stderr, "crgw-ctl: %s\n", err);
		return -EIO;
	}
	if (r.status != 200) {
		ctl_print_error("cache warm", &r);
		free(r.body);
		return -EIO;
	}
	j = json_loads(r.body, 0, NULL);
	free(r.body);
	*offline = json_is_true(json_object_get(j, "offline"));
	*fills_failed = json_integer_value(json_object_get(j, "fills_failed"));
	*fills_active = json_integer_value(json_object_get(j, "fills_active"));
	json_decref(j);
	return 0;
}

/*
 * Fills that failed in the gateway while the warm ran. A fetch is answered before its fill is committed
 * (a full disk shows only then, and the fill's fsync runs after the answer), so "fetched" alone does not
 * prove the artifact was kept: the gateway's count of failed fills, once its fills are done, does. Other
 * sandboxes' fills count too; a warm is for working offline, so any failure is worth saying.
 */
static json_int_t fills_failed_since(json_int_t before)
{
	json_int_t failed = before, active = 1;
	bool offline;

	for (int i = 0; i < 600 && active > 0; i++) {
		if (check_cache(&offline, &failed, &active))
			return 0;
		if (active > 0)
			usleep(100 * 1000);
	}
	return failed > before ? failed - before : 0;
}

int cache_warm(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "policy", required_argument, NULL, 'p' },
		{ "jobs", required_argument, NULL, 'J' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct crgw_sandbox_spec spec = { .workspace_mode = CRGW_WS_NONE, .remove_on_exit = true };
	const struct crgw_backend *backend = NULL;
	struct crgw_vm_sandbox *sb = NULL;
	struct crgw_policy *policy = NULL;
	struct warm_plan plan = { 0 };
	struct tally t = { 0 };
	static const int stop_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE };
	struct sigaction sa = { .sa_handler = on_signal }, old[4];
	const char *policy_path = NULL;
	char *json_policy = NULL, err[1024] = "";
	unsigned long jobs = JOBS_DEFAULT;
	bool json = false, offline = false, handlers = false;
	json_int_t fills_failed = 0, fills_active = 0, lost = 0;
	int c, rc = CTL_EXIT_ERROR, pfd[2] = { -1, -1 }, e, wstatus = 0, holder_fd;
	pid_t child = -1;
	double t0 = now_s();

	/* getopt names the program in its messages: the command's whole name, not "warm:". */
	argv[0] = (char *)"crgw-ctl cache warm";
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': policy_path = optarg; break;
		case 'j': json = true; break;
		case 'J': {
			char *end;

			errno = 0;
			jobs = strtoul(optarg, &end, 10);
			if (errno || *end || optarg[0] < '0' || optarg[0] > '9' || jobs < 1 || jobs > JOBS_MAX) {
				fprintf(stderr, "crgw-ctl: --jobs wants 1..%d\n", JOBS_MAX);
				return CTL_EXIT_ERROR;
			}
			break;
		}
		case 'h': fputs(warm_usage, stdout); return CTL_EXIT_OK;
		default: fputs(warm_usage, stderr); return CTL_EXIT_ERROR;
		}
	}
	if (optind != argc) {
		fputs(warm_usage, stderr);
		return CTL_EXIT_ERROR;
	}
	if (ctl_compile_policy(policy_path, false, &json_policy, NULL, 0))
		goto out;
	if ((e = crgw_policy_load(json_policy, strlen(json_policy), &policy, err, sizeof(err)))) {
		fprintf(stderr, "crgw-ctl: cache warm: the compiled policy does not load: %s\n", err);
		goto out;
	}
	if (warm_plan_build(crgw_policy_registry(policy, "npm"), crgw_policy_registry(policy, "pip"),
			    crgw_policy_registry(policy, "go"), &plan)) {
		fprintf(stderr, "crgw-ctl: cache warm: out of memory\n");
		goto out;
	}
	if (!plan.nitems) {
		fprintf(stderr, "crgw-ctl: cache warm: %s: the policy names no artifact to fetch: it needs an enabled "
				"registries.npm, pip or go with lockfile_enforcement and its lockfiles\n",
			policy_path ? policy_path : ".");
		goto out;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "crgw-ctl: cache warm: it makes a sandbox for the policy: the netns backend needs root\n");
		goto out;
	}
	backend = crgw_backend_find("netns");
	if (!backend) {
		fprintf(stderr, "crgw-ctl: backend_unavailable: the netns backend is not available here\n");
		goto out;
	}
	if (check_cache(&offline, &fills_failed, &fills_active))
		goto out;
	if (offline)
		fprintf(stderr, "crgw-ctl: cache warm: the gateway is offline (cache.offline): what is not cached "
				"already fails\n");
	/*
	 * From here a signal ends the warm in order: the child goes, the sandbox is released. SIGPIPE too:
	 * `cache warm | head -1` would otherwise kill us and leave the sandbox registered until its TTL.
	 */
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		sigaction(stop_signals[i], &sa, &old[i]);
	handlers = true;
	spec.policy_json = json_policy;
	spec.run_id = "cache-warm";
	if ((e = backend->create(&spec, &ctl_gateway_ops, &sb, err, sizeof(err)))) {
		fprintf(stderr, "crgw-ctl: %s\n", err);
		goto out;
	}
	json_t *rec = crgw_vm_sandbox_record(sb);
	json_int_t holder = json_integer_value(json_object_get(rec, "holder_pid"));
	const char *base = json_string_value(json_object_get(json_object_get(rec, "mediation"), "url"));

	if (holder <= 0 || !base || strncmp(base, "http://", 7)) {
		fprintf(stderr, "crgw-ctl: cache warm: the gateway's record of sandbox %s has no holder or mediation "
				"URL (is it older than crgw-ctl?)\n", crgw_vm_sandbox_id(sb));
		goto out;
	}
	if (stop_signal)
		goto out;
	if (pipe2(pfd, O_CLOEXEC)) {
		fprintf(stderr, "crgw-ctl: cache warm: %s\n", strerror(errno));
		goto out;
	}
	fflush(NULL);
	pid_t parent = getpid();

	child = fork();
	if (child < 0) {
		fprintf(stderr, "crgw-ctl: cache warm: fork: %s\n", strerror(errno));
		goto out;
	}
	if (child == 0) {
		close(pfd[0]);
		child_main(pfd[1], parent, (long)holder, base, &plan, (unsigned)jobs);
	}
	close(pfd[1]);
	pfd[1] = -1;
	holder_fd = (int)syscall(SYS_pidfd_open, (pid_t)holder, 0);
	e = read_results(pfd[0], holder_fd, json, &t);
	if (holder_fd >= 0)
		close(holder_fd);
	if (e == -EINTR || stop_signal) {
		kill(child, SIGKILL);
		fprintf(stderr, "crgw-ctl: cache warm: stopped by signal %d\n", (int)stop_signal);
	} else if (e == -ESRCH) {
		kill(child, SIGKILL);
		fprintf(stderr, "crgw-ctl: cache warm: the gateway released the warm's sandbox (did it stop?)\n");
	} else if (e) {
		kill(child, SIGKILL);
		fprintf(stderr, "crgw-ctl: cache warm: reading the results: %s\n", strerror(-e));
	}
	while (waitpid(child, &wstatus, 0) < 0 && errno == EINTR)
		;
	child = -1;
	if (e || stop_signal)
		goto out;
	if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus)) {
		fprintf(stderr, "crgw-ctl: cache warm: the fetching process failed (%s %d)\n",
			WIFEXITED(wstatus) ? "exit" : "signal", WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : WTERMSIG(wstatus));
		goto out;
	}
	double secs = now_s() - t0;
	unsigned long total = t.fetched + t.cached + t.failed;

	if (t.fetched)
		lost = fills_failed_since(fills_failed);

	if (json) {
		json_t *s = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:I}", "event", "summary", "artifacts",
				      (json_int_t)total, "fetched", (json_int_t)t.fetched, "cached", (json_int_t)t.cached,
				      "failed", (json_int_t)t.failed, "bytes", (json_int_t)t.bytes, "seconds",
				      (double)(long long)(secs * 1000) / 1000.0, "fills_failed", lost);
		char *line = s ? json_dumps(s, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) : NULL;

		if (line)
			puts(line);
		free(line);
		json_decref(s);
	} else {
		char h[32];

		cache_human(t.bytes, h, sizeof(h));
		printf("%lu artifact%s: %lu fetched, %lu cached, %lu failed; %llu bytes (%s) in %.1f s\n", total,
		       total == 1 ? "" : "s", t.fetched, t.cached, t.failed, t.bytes, h, secs);
	}
	if (lost)
		fprintf(stderr,
			"crgw-ctl: cache warm: %lld of the gateway's fills failed while warming (its log says why: a full "
			"disk, the cache's bounds): what was fetched may not all be cached, and the next run may not "
			"work offline\n",
			(long long)lost);
	rc = t.failed || lost ? CTL_EXIT_DENY : CTL_EXIT_OK;
out:
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	if (sb) {
		backend->release(sb, &ctl_gateway_ops);
		backend->free(sb);
	}
	if (handlers)
		for (size_t i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
			sigaction(stop_signals[i], &old[i], NULL);
	warm_plan_free(&plan);
	crgw_policy_unref(policy);
	free(json_policy);
	return rc;
}
