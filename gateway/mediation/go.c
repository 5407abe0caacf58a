/* SPDX-License-Identifier: Apache-2.0 */
/*
 * /registry/go/<host>/...: Go's module proxy protocol (GOPROXY). Version lists, `.info` and `@latest` are
 * metadata (the shared store), judged by go.sum (lockfile modes) and the release cooldown; `.mod` files are
 * fetched whole and checked against go.sum's "<version>/go.mod" hash; module zips are spooled whole to an
 * unnamed file, because their go.sum hash (dirhash h1) covers the extracted files and can only be computed
 * over the complete zip, and are sent only once it matched. A verified zip goes into the content cache by
 * its sha256, and a note in the metadata store maps module@version(h1) to that sha256, so the next request
 * (and offline mode) is served from the cache. The checksum database is passed through only to hosts of
 * registries.go.allowed_hosts (docs/mediation.md, "Go modules").
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>

#include "cache/service.h"
#include "config.h"
#include "goproxy.h"
#include "log.h"
#include "registry.h"
#include "sandbox.h"

/*
 * Under a cooldown the list needs each version's time, from its own .info document: one upstream request
 * per version (stored afterwards). Only the last GO_LIST_INFO_MAX versions of the list are checked (proxies
 * append new versions; the newest are the ones a cooldown is about); older ones are kept in the list, and
 * every .info, .mod and .zip is still checked on its own, so a version the list kept is never served early.
 */
#define GO_LIST_INFO_MAX 32
/* A refused or failed answer's body is read and dropped up to this much. */
#define GO_DISCARD_MAX (64 * 1024)
#define GO_COPY_STEP (256 * 1024)

struct go_req {
	struct goproxy_path p;
	struct med_request *r;
	char esc_module[1100];   /* the proxy's case encoding, for upstream URLs */
	char esc_version[560];
	const char *sum;         /* go.sum's h1 for what is asked (the zip, or "<version>/go.mod"); NULL: unlisted */
	/* @v/list under a cooldown */
	char *list;              /* the list after the lockfile's filter */
	size_t list_len;
	char (*check)[256];      /* versions whose .info is asked */
	bool *too_new;           /* ... and which of them are too recent, or have no readable time */
	size_t ncheck, next, dropped_lockfile;
	/* what goes on once the version's .info passed the cooldown */
	void (*after_info)(struct med_request *r);
	/* the zip, spooled */
	int fd;
	uint64_t size;
	EVP_MD_CTX *sha;
	struct zip_job *job;
	struct event *wake;
};

static void job_release(struct zip_job *j);

static struct go_req *own(struct med_request *r)
{
	return ((struct reg_req *)r->handler_state)->own;
}

static const struct crgw_registry_rule *rule_of(struct med_request *r)
{
	return ((struct reg_req *)r->handler_state)->rule;
}

static void go_free(void *arg)
{
	struct go_req *q = arg;

	if (!q)
		return;
	/* The job first: its thread may still wake the event until it is orphaned. */
	job_release(q->job);
	if (q->wake)
		event_free(q->wake);
	if (q->fd >= 0)
		close(q->fd);
	EVP_MD_CTX_free(q->sha);
	free(q->list);
	free(q->check);
	free(q->too_new);
	free(q);
}

/* go.sum's hash for module@version (`gomod`: the "<version>/go.mod" entry), or NULL when it has none. */
static const char *sum_of(const struct crgw_registry_rule *rule, const char *module, const char *version, bool gomod)
{
	const struct crgw_policy_artifact *a;
	size_t n = crgw_policy_registry_artifacts(rule, module, &a), vl = strlen(version);

	for (size_t i = 0; i < n; i++) {
		const char *v = a[i].version;

		if (strncmp(v, version, vl))
			continue;
		if (gomod ? strcmp(v + vl, "/go.mod") : v[vl] != '\0')
			continue;
		if (!strncmp(a[i].integrity, "h1:", 3))
			return a[i].integrity;
	}
	return NULL;
}

/* go.sum names the version at all: its zip or only its go.mod (a module the build graph needs but never builds). */
static bool known(const struct crgw_registry_rule *rule, const char *module, const char *version)
{
	return sum_of(rule, module, version, false) || sum_of(rule, module, version, true);
}

/* https://<host>/<escaped module>/@v/<escaped version><suffix>, or @latest / @v/list. */
static void upstream_url(struct med_request *r, const char *what, char *out, size_t cap)
{
	struct go_req *q = own(r);

	if (what)
		snprintf(out, cap, "https://%s/%s/%s", r->host.text, q->esc_module, what);
	else
		snprintf(out, cap, "https://%s/%s/@v/%s", r->host.text, q->esc_module, q->esc_version);
}

static void version_url(struct med_request *r, const char *version, const char *suffix, char *out, size_t cap)
{
	struct go_req *q = own(r);
	char ev[560];

	if (goproxy_escape(version, ev, sizeof(ev)))
		ev[0] = '\0';
	snprintf(out, cap, "https://%s/%s/@v/%s%s", r->host.text, q->esc_module, ev, suffix);
}

static void oom(struct med_request *r)
{
	med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
}

/* ---- @v/list ----------------------------------------------------------------------------------------- */

static int keep_known(void *arg, const char *version)
{
	struct med_request *r = arg;
	struct go_req *q = own(r);

	if (rule_of(r)->mode != CRGW_LOCKFILE_DENY_UNKNOWN || known(rule_of(r), q->p.module, version))
		return 1;
	q->dropped_lockfile++;
	return 0;
}

static int keep_not_too_new(void *arg, const char *version)
{
	struct go_req *q = arg;

	for (size_t i = 0; i < q->ncheck; i++)
		if (q->too_new[i] && !strcmp(q->check[i], version))
			return 0;
	return 1;
}

static void list_answer(struct med_request *r)
{
	struct go_req *q = own(r);
	size_t too_new = 0, out_len = 0;
	char detail[1000], *out = malloc(q->list_len + 2);

	if (!out) {
		oom(r);
		return;
	}
	for (size_t i = 0; i < q->ncheck; i++)
		too_new += q->too_new[i];
	if (goproxy_list_filter(q->list, q->list_len, keep_not_too_new, q, out, q->list_len + 2, &out_len)) {
		free(out);
		oom(r);
		return;
	}
	/* The count of kept versions is the number of lines written. */
	{
		size_t kept = 0;

		for (size_t i = 0; i < out_len; i++)
			kept += out[i] == '\n';
		snprintf(detail, sizeof(detail), "versions kept=%zu not_in_lockfile=%zu too_new=%zu checked_for_age=%zu",
			 kept, q->dropped_lockfile, too_new, q->ncheck);
	}
	if (med_audit_allow(r, detail))
		reg_answer_doc(r, "text/plain; charset=utf-8", out, out_len);
	free(out);
}

static void list_next(struct med_request *r);

static void on_list_info(struct med_request *r, long status, const char *doc, size_t len)
{
	struct go_req *q = own(r);
	const struct crgw_registry_rule *rule = rule_of(r);
	int64_t t = 0;
	char version[256];

	/* A version whose time cannot be read is held back with the too recent ones: its age is unknown. */
	if (status != 200 || goproxy_info_time(doc, len, &t, version, NULL) || strcmp(version, q->check[q->next]) ||
	    (long long)time(NULL) - t < rule->min_release_age)
		q->too_new[q->next] = true;
	q->next++;
	list_next(r);
}

static void list_next(struct med_request *r)
{
	struct go_req *q = own(r);
	char url[REG_URL_MAX];

	if (q->next >= q->ncheck) {
		list_answer(r);
		return;
	}
	version_url(r, q->check[q->next], ".info", url, sizeof(url));
	reg_fetch_meta(r, url, "application/json", on_list_info);
}

static void on_list(struct med_request *r, long status, const char *doc, size_t len)
{
	struct go_req *q = own(r);
	const struct crgw_registry_rule *rule = rule_of(r);
	size_t n = 0, lines = 0;
	int rc;

	if (status != 200) {
		reg_answer_status(r, status);
		return;
	}
	q->list = malloc(len + 2);
	if (!q->list) {
		oom(r);
		return;
	}
	/* `doc` is the store's buffer, replaced by the next fetch: the filtered copy is what is kept. */
	rc = goproxy_list_filter(doc, len, keep_known, r, q->list, len + 2, &q->list_len);
	if (rc) {
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, "the upstream's version list is refused");
		return;
	}
	if (!rule->min_release_age) {
		list_answer(r);
		return;
	}
	for (size_t i = 0; i < q->list_len; i++)
		lines += q->list[i] == '\n';
	q->ncheck = lines < GO_LIST_INFO_MAX ? lines : GO_LIST_INFO_MAX;
	q->check = calloc(q->ncheck ? q->ncheck : 1, sizeof(*q->check));
	q->too_new = calloc(q->ncheck ? q->ncheck : 1, sizeof(*q->too_new));
	if (!q->check || !q->too_new) {
		oom(r);
		return;
	}
	/* The last ncheck lines: each a canonical version the filter wrote, shorter than 256 bytes. */
	for (const char *p = q->list, *end = q->list + q->list_len; p < end; n++) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t vl = (size_t)(eol - p);

		if (n >= lines - q->ncheck && vl < sizeof(q->check[0])) {
			memcpy(q->check[n - (lines - q->ncheck)], p, vl);
			q->check[n - (lines - q->ncheck)][vl] = '\0';
		}
		p = eol + 1;
	}
	q->next = 0;
	list_next(r);
}

/* ---- .info and @latest ------------------------------------------------------------------------------ */

/* The version's .info, fetched for the cooldown before a .mod or .zip (stored: the next one is local). */
static void on_gate_info(struct med_request *r, long status, const char *doc, size_t len)
{
	struct go_req *q = own(r);
	int64_t t = 0;
	char version[256], detail[1000];

	if (status != 200) {
		reg_answer_status(r, status);
		return;
	}
	if (goproxy_info_time(doc, len, &t, version, NULL) || strcmp(version, q->p.version)) {
		snprintf(detail, sizeof(detail), "the upstream's .info of %s gives no time the cooldown can judge",
			 q->p.version);
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return;
	}
	if (reg_too_new(r, t))
		return;
	q->after_info(r);
}

/* Runs `next` now, or after the version's .info passed the cooldown when registries.go has one. */
static void after_cooldown(struct med_request *r, void (*next)(struct med_request *r))
{
	struct go_req *q = own(r);
	char url[REG_URL_MAX];

	if (!rule_of(r)->min_release_age) {
		next(r);
		return;
	}
	q->after_info = next;
	version_url(r, q->p.version, ".info", url, sizeof(url));
	reg_fetch_meta(r, url, "application/json", on_gate_info);
}

static void on_info(struct med_request *r, long status, const char *doc, size_t len)
{
	struct go_req *q = own(r);
	const char *why = NULL;
	int64_t t = 0;
	char version[256], detail[1000];

	if (status != 200) {
		reg_answer_status(r, status);
		return;
	}
	if (goproxy_info_time(doc, len, &t, version, &why)) {
		snprintf(detail, sizeof(detail), "the upstream's document is refused: %s", why ? why : "malformed");
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return;
	}
	if (q->p.kind == GOP_INFO && strcmp(version, q->p.version)) {
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE,
			   "the upstream's .info names another version than the one asked");
		return;
	}
	if (q->p.kind == GOP_LATEST) {
		const char *vwhy = NULL;

		if (!goproxy_version_ok(q->p.module, version, &vwhy)) {
			med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE,
				   "the upstream's @latest names no valid version of the module");
			return;
		}
		AUDIT_SET(r->version, version);
		/*
		 * The go command asks @latest when the list is empty (or holds only pseudo-versions). A version the
		 * rules refuse is answered 404, which the go command reports as "no matching versions" rather
		 * than trying it.
		 */
		if (rule_of(r)->mode == CRGW_LOCKFILE_DENY_UNKNOWN && !known(rule_of(r), q->p.module, version)) {
			snprintf(detail, sizeof(detail), "@latest is %s@%s, which go.sum does not name", q->p.module, version);
			med_refuse(r, 404, "Not Found", CRGW_REASON_LOCKFILE_VIOLATION, detail);
			return;
		}
		if (rule_of(r)->min_release_age && (long long)time(NULL) - t < rule_of(r)->min_release_age) {
			snprintf(detail, sizeof(detail), "@latest is %s, published %lld s ago; registries.go.min_release_age is %ld s",
				 version, (long long)time(NULL) - (long long)t, rule_of(r)->min_release_age);
			med_refuse(r, 404, "Not Found", CRGW_REASON_RELEASE_TOO_NEW, detail);
			return;
		}
		if (rule_of(r)->mode == CRGW_LOCKFILE_WARN && !known(rule_of(r), q->p.module, version)) {
			snprintf(detail, sizeof(detail), "@latest is %s@%s, which go.sum does not name", q->p.module, version);
			if (!med_audit_warn(r, CRGW_REASON_LOCKFILE_VIOLATION, detail))
				return;
		}
	} else if (reg_too_new(r, t)) {
		return;
	}
	if (reg_allow(r))
		reg_answer_doc(r, "application/json", doc, len);
}

static void info(struct med_request *r, struct go_req *q)
{
	char url[REG_URL_MAX], detail[900];

	if (rule_of(r)->mode != CRGW_LOCKFILE_OFF && !known(rule_of(r), q->p.module, q->p.version)) {
		/* Only deny_unknown and warn judge metadata; without enforcement, fallback judges the files. */
		snprintf(detail, sizeof(detail), "%s@%s is not in go.sum", q->p.module, q->p.version);
		if (!reg_unlisted(r, detail))
			return;
	}
	upstream_url(r, NULL, url, sizeof(url));
	strncat(url, ".info", sizeof(url) - strlen(url) - 1);
	reg_fetch_meta(r, url, "application/json", on_info);
}

/* ---- .mod -------------------------------------------------------------------------------------------- */

static void on_mod(struct med_request *r, long status, const char *doc, size_t len)
{
	struct go_req *q = own(r);
	char h1[64], detail[1000];

	if (status != 200) {
		reg_answer_status(r, status);
		return;
	}
	if (len > GOPROXY_MAX_GOMOD) {
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, "the upstream's go.mod is over 16 MiB");
		return;
	}
	if (go_h1_mod(doc, len, h1)) {
		oom(r);
		return;
	}
	if (q->sum && strcmp(h1, q->sum)) {
		snprintf(detail, sizeof(detail), "the upstream's go.mod hashes to %s", h1);
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_INTEGRITY_MISMATCH, detail);
		return;
	}
	if (!q->sum)
		AUDIT_SET(r->integrity, h1);
	if (q->sum ? reg_allow(r)
		   : med_audit_allow(r, "not in go.sum: nothing to check this go.mod against (integrity is its hash as served)"))
		reg_answer_doc(r, "text/plain; charset=utf-8", doc, len);
}

static void mod_fetch(struct med_request *r)
{
	char url[REG_URL_MAX];

	upstream_url(r, NULL, url, sizeof(url));
	strncat(url, ".mod", sizeof(url) - strlen(url) - 1);
	/* Stored like metadata (bounded by cache.max_metadata_bytes too), and hashed again whenever served. */
	reg_fetch_meta(r, url, "text/plain", on_mod);
}

/* ---- .zip -------------------------------------------------------------------------------------------- */

static bool is_head(const struct med_request *r)
{
	size_t mlen;
	const char *m = med_method(r, &mlen);

	return mlen == 4 && !memcmp(m, "HEAD", 4);
}

/* The key of the note that maps a verified zip to its sha256 in the content cache. */
static void note_key(const struct go_req *q, char *out, size_t cap)
{
	snprintf(out, cap, "go zip %s@%s %s", q->p.module, q->p.version, q->sum);
}

/* An unnamed file for the zip, where the cache keeps its temporary files, else in the state directory. */
static int spool_open(struct med_request *r)
{
	const struct crgw_config *cfg = r->m->cfg;
	char dir[4200], path[4300];
	int fd;

	if (crgw_cache_service())
		snprintf(dir, sizeof(dir), "%s/tmp", cfg->cache_dir);
	else
		snprintf(dir, sizeof(dir), "%s", cfg->state_dir);
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR))
		return fd >= 0 ? fd : -errno;
	/* A file system without O_TMPFILE: a named file, unlinked at once. */
	snprintf(path, sizeof(path), "%s/.crgw-go-zip.XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(path);
	return fd;
}

static void zip_head(struct med_request *r, uint64_t size)
{
	evbuffer_drain(r->resp_head, evbuffer_get_length(r->resp_head));
	evbuffer_add_printf(r->resp_head, "Content-Type: application/zip\r\nContent-Length: %" PRIu64 "\r\n", size);
	r->status = 200;
	r->chunked_out = false;
	med_client_write(r, NULL, 0);
}

/*
 * Verifying a spooled zip: go_h1_zip inflates every entry (up to 500 MiB of zip), and a verified zip is
 * copied into the content cache. Both run on a thread of their own so that the worker's loop serves its
 * other clients meanwhile; at most GO_VERIFIERS run at once, beyond that (or when no thread can be made)
 * the work runs on the loop: slower for that worker's other clients, never wrong. The job owns a duplicate
 * of the spool's descriptor and copies of what it needs. The request and the thread part under the job's
 * lock: whoever comes second frees it (the request marks it orphaned when it ends first; the thread wakes
 * the request's event only while it is not).
 */
#define GO_VERIFIERS 4
static atomic_uint verifiers;

struct zip_job {
	pthread_mutex_t lock;
	bool orphaned, done;
	struct event *ev; /* the request's, on its loop */
	int fd;
	uint64_t size;
	char module[512], version[256];
	char want[64];    /* go.sum's h1; "" when unlisted (then never cached) */
	struct crgw_digest sha;
	/* results */
	int rc;           /* go_h1_zip's */
	const char *why;
	char h1[64];
	int cache_rc;     /* 0 cached (or already there), 1 not tried, else -errno */
};

static void job_free(struct zip_job *j)
{
	if (j->fd >= 0)
		close(j->fd);
	pthread_mutex_destroy(&j->lock);
	free(j);
}

/* Fills the cache from the verified spool. The fill hashes what it writes and checks it at commit. */
static int job_fill(struct zip_job *j, struct crgw_cache *cache)
{
	static __thread char buf[GO_COPY_STEP];
	struct crgw_cache_fill *fill = NULL;
	struct crgw_cache_follower *follower = NULL;
	uint64_t at = 0;
	int rc;

	rc = crgw_cache_fill_begin(cache, &j->sha, (int64_t)j->size, NULL, NULL, &fill, &follower);
	crgw_cache_follower_close(follower); /* another request fills the same object: it is theirs */
	if (rc || !fill)
		return rc == -EEXIST ? 0 : rc;
	while (rc == 0 && at < j->size) {
		size_t want = j->size - at < sizeof(buf) ? (size_t)(j->size - at) : sizeof(buf);
		ssize_t n = pread(j->fd, buf, want, (off_t)at);

		if (n <= 0)
			rc = n < 0 ? -errno : -EIO;
		else if ((rc = crgw_cache_fill_write(fill, buf, (size_t)n)) == 0)
			at += (uint64_t)n;
	}
	if (rc) {
		crgw_cache_fill_abort(fill);
		return rc;
	}
	return crgw_cache_fill_commit(fill);
}

/* The work itself: any thread. */
static void job_run(struct zip_job *j)
{
	struct crgw_cache *cache = crgw_cache_service();

	j->cache_rc = 1;
	j->rc = go_h1_zip(j->fd, j->module, j->version, j->h1, &j->why);
	if (j->rc || !j->want[0] || strcmp(j->h1, j->want) || !cache)
		return;
	j->cache_rc = job_fill(j, cache);
}

static void *job_main(void *arg)
{
	struct zip_job *j = arg;
	bool orphaned;

	job_run(j);
	pthread_mutex_lock(&j->lock);
	orphaned = j->orphaned;
	if (!orphaned) {
		j->done = true;
		event_active(j->ev, 0, 0);
	}
	pthread_mutex_unlock(&j->lock);
	if (orphaned)
		job_free(j);
	/* Last: med_go_drain waits for this, and then the cache and the loops may go. */
	atomic_fetch_sub(&verifiers, 1);
	return NULL;
}

void med_go_drain(void)
{
	/* Bounded: a job is at most 500 MiB hashed and copied once. */
	for (int i = 0; i < 6000 && atomic_load(&verifiers); i++)
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	if (atomic_load(&verifiers))
		log_warn("go: zip verifications still running at shutdown", "count=%u", atomic_load(&verifiers));
}

/* The request ends: the job is freed now if it is done, else by its thread. */
static void job_release(struct zip_job *j)
{
	bool done;

	if (!j)
		return;
	pthread_mutex_lock(&j->lock);
	done = j->done;
	j->orphaned = true;
	pthread_mutex_unlock(&j->lock);
	if (done)
		job_free(j);
}

static void zip_on_response(struct med_request *r)
{
	struct go_req *q = own(r);
	curl_off_t cl = -1;

	r->head_held = true;
	if (r->status != 200)
		return;
	curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	if (cl > 0 && (uint64_t)cl > GOPROXY_MAX_ZIP) {
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, "the upstream's zip is over 500 MiB");
		return;
	}
	/* A redirect or a retry starts the spool again. */
	if (ftruncate(q->fd, 0)) {
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "the zip cannot be spooled");
		return;
	}
	q->size = 0;
	if (!EVP_DigestInit_ex(q->sha, EVP_sha256(), NULL))
		oom(r);
}

static void zip_on_body(struct med_request *r, const char *data, size_t len)
{
	struct go_req *q = own(r);
	char detail[1000];

	r->bytes_down += len;
	if (r->status != 200) {
		if (r->bytes_down > GO_DISCARD_MAX)
			med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE, "the upstream's error answer is too long");
		return;
	}
	if (q->size + len > GOPROXY_MAX_ZIP || q->size + len > r->m->cfg->cache_max_artifact_bytes) {
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE,
			   "the upstream's zip is over 500 MiB (or cache.max_artifact_bytes)");
		return;
	}
	while (len) {
		ssize_t n = pwrite(q->fd, data, len, (off_t)q->size);

		if (n <= 0) {
			snprintf(detail, sizeof(detail), "the zip cannot be spooled: %s", n < 0 ? strerror(errno) : "short write");
			med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
			return;
		}
		EVP_DigestUpdate(q->sha, data, (size_t)n);
		q->size += (uint64_t)n;
		data += n;
		len -= (size_t)n;
	}
}

static void zip_start(struct med_request *r, const char *url);

/* The job ended (on the request's loop): the zip is refused, or served and its cache entry noted. */
static void zip_verified(evutil_socket_t fd, short what, void *arg)
{
	struct med_request *r = arg;
	struct go_req *q = own(r);
	struct zip_job *j = q->job;
	char detail[1000], key[1000], text[CRGW_DIGEST_TEXT_MAX];

	(void)fd;
	(void)what;
	if (j->rc) {
		snprintf(detail, sizeof(detail), "the upstream's zip is refused: %s", j->why ? j->why : strerror(-j->rc));
		med_refuse(r, 502, "Bad Gateway",
			   j->rc == -ENOMEM || j->rc == -EIO ? CRGW_REASON_UPSTREAM_UNREACHABLE
							     : CRGW_REASON_INTEGRITY_MISMATCH,
			   detail);
		return;
	}
	if (q->sum && strcmp(j->h1, q->sum)) {
		snprintf(detail, sizeof(detail), "the upstream's zip hashes to %s", j->h1);
		med_refuse(r, 502, "Bad Gateway", CRGW_REASON_INTEGRITY_MISMATCH, detail);
		return;
	}
	/* Only what go.sum vouches for is cached: an unlisted zip matched nothing. */
	if (!q->sum) {
		AUDIT_SET(r->integrity, j->h1);
	} else if (j->cache_rc == 0 && crgw_digest_format(&j->sha, text, sizeof(text)) > 0) {
		note_key(q, key, sizeof(key));
		reg_note_put(r, key, text);
		reg_vouch(r, &j->sha);
	} else if (j->cache_rc < 0) {
		log_warn("go: a verified zip is served but not cached", "module=%s version=%s error=\"%s\"", q->p.module,
			 q->p.version, strerror(-j->cache_rc));
	}
	zip_head(r, q->size);
	if (!is_head(r) && q->size) {
		if (med_client_add_file(r, q->fd, q->size)) {
			med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "cannot send the zip");
			return;
		}
		q->fd = -1; /* taken */
		r->bytes_down = q->size;
	} else {
		r->bytes_down = 0;
	}
	crgw_cache_service_observe(false, (uint64_t)(crgw_realtime_us() - r->start_us), q->size);
	med_local_done(r);
}

static bool zip_on_done(struct med_request *r, bool ok, const char *why)
{
	struct go_req *q = own(r);
	char location[2048];
	unsigned mdlen = 0;
	struct zip_job *j;
	pthread_t t;

	(void)why;
	if (!ok)
		return false; /* nothing was sent: the router answers 502 */
	if (r->status >= 300 && r->status < 400 && r->status != 304) {
		if (reg_redirect(r, location, sizeof(location)) == 0)
			zip_start(r, location);
		return true;
	}
	if (r->status != 200) {
		reg_answer_status(r, r->status);
		return true;
	}
	j = calloc(1, sizeof(*j));
	if (!j || pthread_mutex_init(&j->lock, NULL)) {
		free(j);
		oom(r);
		return true;
	}
	j->fd = dup(q->fd);
	q->wake = event_new(r->m->base, -1, 0, zip_verified, r);
	j->ev = q->wake;
	j->size = q->size;
	j->sha.alg = CRGW_DIGEST_SHA256;
	j->sha.len = 32;
	snprintf(j->module, sizeof(j->module), "%s", q->p.module);
	snprintf(j->version, sizeof(j->version), "%s", q->p.version);
	snprintf(j->want, sizeof(j->want), "%s", q->sum ? q->sum : "");
	q->job = j;
	if (j->fd < 0 || !q->wake || !EVP_DigestFinal_ex(q->sha, j->sha.bytes, &mdlen) || mdlen != 32) {
		j->done = true; /* no thread: freed with the request */
		oom(r);
		return true;
	}
	if (atomic_fetch_add(&verifiers, 1) < GO_VERIFIERS) {
		pthread_attr_t attr;
		int err = pthread_attr_init(&attr);

		if (!err) {
			pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
			err = pthread_create(&t, &attr, job_main, j);
			pthread_attr_destroy(&attr);
		}
		if (!err)
			return true; /* zip_verified runs when the thread is done */
	}
	atomic_fetch_sub(&verifiers, 1);
	job_run(j);
	j->done = true;
	zip_verified(-1, 0, r);
	return true;
}

static const struct med_handler zip_handler = {
	.on_response = zip_on_response,
	.on_response_body = zip_on_body,
	.on_done = zip_on_done,
	.free = reg_free,
	.takes_body = true,
};

static void zip_start(struct med_request *r, const char *url)
{
	char copy[REG_URL_MAX];

	snprintf(copy, sizeof(copy), "%s", url); /* `url` may be a buffer the reset replaces */
	if (r->started)
		med_client_reset(r);
	if (!reg_set_url(r, copy) || !reg_upstream_headers(r, "application/zip"))
		return;
	r->h = &zip_handler;
	med_client_start(r);
}

static void zip_fetch(struct med_request *r)
{
	struct go_req *q = own(r);
	struct reg_req *g = r->handler_state;
	char url[REG_URL_MAX], key[1000], text[CRGW_DIGEST_TEXT_MAX], detail[1000];
	int fd;

	upstream_url(r, NULL, url, sizeof(url));
	strncat(url, ".zip", sizeof(url) - strlen(url) - 1);
	if (q->sum) {
		struct reg_want want = { 0 };

		note_key(q, key, sizeof(key));
		if (reg_note_get(r, key, text, sizeof(text)) == 0 &&
		    crgw_digest_parse(text, strlen(text), &want.digest) == 0 && crgw_cache_service() &&
		    crgw_cache_lookup(crgw_cache_service(), &want.digest, NULL) == 0) {
			/*
			 * Verified against go.sum when it was cached: the cache serves it by that sha256 (and would
			 * check the same sha256 if it had to fetch it again). The audit keeps naming go.sum's h1.
			 */
			g->integrity_named = true;
			snprintf(detail, sizeof(detail), "verified against go.sum when cached; the cache serves %s", text);
			if (med_audit_allow(r, detail))
				reg_fetch_artifact(r, url, &want);
			return;
		}
	}
	if (crgw_cache_service_offline()) {
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE,
			   "offline (cache.offline): this module zip is not in the cache");
		return;
	}
	fd = spool_open(r);
	if (fd < 0) {
		snprintf(detail, sizeof(detail), "the zip cannot be spooled: %s", strerror(-fd));
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, detail);
		return;
	}
	q->fd = fd;
	q->sha = EVP_MD_CTX_new();
	if (!q->sha) {
		oom(r);
		return;
	}
	if (q->sum ? reg_allow(r)
		   : med_audit_allow(r, "not in go.sum: the zip is spooled whole but checked against nothing, and not cached"))
		zip_start(r, url);
}

/* ---- the checksum database, through the proxy ------------------------------------------------------- */

static void sumdb(struct med_request *r, struct go_req *q)
{
	struct crgw_host h;
	const char *why = NULL;
	char url[REG_URL_MAX], detail[1000];

	if (crgw_host_parse(q->p.sumdb_host, strlen(q->p.sumdb_host), &h, &why) || h.kind != CRGW_HOST_NAME ||
	    !crgw_policy_registry_host_allowed(rule_of(r), h.text)) {
		/*
		 * 404 to `supported` tells the go command that this proxy does not serve the checksum database:
		 * it then connects to the database itself, which the network policy decides (GONOSUMDB or
		 * GOSUMDB=off avoid it). Every other sumdb path gets the same answer.
		 */
		snprintf(detail, sizeof(detail), "the checksum database %s is not in registries.go.allowed_hosts: not proxied",
			 q->p.sumdb_host);
		med_refuse(r, 404, "Not Found", CRGW_REASON_HOST_NOT_ALLOWED, detail);
		return;
	}
	r->host = h;
	snprintf(url, sizeof(url), "https://%s/%s", h.text, q->p.sumdb_rest);
	if (!reg_set_url(r, url) || !med_header_add(r, "User-Agent: crgw-mediation"))
		return;
	snprintf(detail, sizeof(detail), "checksum database %s passed through, never cached", h.text);
	/* The idle handler: the answer streams to the client as it comes, status and all. */
	if (med_audit_allow(r, detail))
		med_client_start(r);
}

/* ---- the request ----------------------------------------------------------------------------------- */

void med_go(struct med_request *r, const char *path, size_t len)
{
	struct reg_req *g = reg_begin(r, "go", "go", &path, &len);
	struct go_req *q;
	const char *why = NULL;
	char detail[1000], url[REG_URL_MAX];

	if (!g)
		return;
	q = calloc(1, sizeof(*q));
	if (!q) {
		oom(r);
		return;
	}
	q->fd = -1;
	q->r = r;
	g->own = q;
	g->own_free = go_free;
	if (len < 2 || path[0] != '/' || goproxy_path_parse(path + 1, len - 1, &q->p, &why)) {
		snprintf(detail, sizeof(detail), "not a module proxy path: %s", why ? why : "empty");
		med_refuse(r, 404, "Not Found", CRGW_REASON_REQUEST_INVALID, detail);
		return;
	}
	AUDIT_SET(r->package, q->p.module);
	AUDIT_SET(r->version, q->p.version);
	if (q->p.kind == GOP_SUMDB) {
		sumdb(r, q);
		return;
	}
	if (goproxy_escape(q->p.module, q->esc_module, sizeof(q->esc_module)) ||
	    goproxy_escape(q->p.version, q->esc_version, sizeof(q->esc_version))) {
		med_refuse(r, 404, "Not Found", CRGW_REASON_REQUEST_INVALID, "the module path cannot be escaped");
		return;
	}
	switch (q->p.kind) {
	case GOP_LIST:
		upstream_url(r, "@v/list", url, sizeof(url));
		reg_fetch_meta(r, url, "text/plain", on_list);
		return;
	case GOP_LATEST:
		upstream_url(r, "@latest", url, sizeof(url));
		reg_fetch_meta(r, url, "application/json", on_info);
		return;
	case GOP_INFO:
		info(r, q);
		return;
	case GOP_MOD:
	case GOP_ZIP:
		break;
	case GOP_SUMDB:
		return;
	}
	q->sum = g->rule->mode != CRGW_LOCKFILE_OFF
			 ? sum_of(g->rule, q->p.module, q->p.version, q->p.kind == GOP_MOD)
			 : NULL;
	if (q->sum) {
		AUDIT_SET(r->integrity, q->sum);
	} else {
		snprintf(detail, sizeof(detail), "%s@%s%s is not in go.sum", q->p.module, q->p.version,
			 q->p.kind == GOP_MOD ? "/go.mod" : "");
		if (!reg_unlisted(r, detail))
			return;
	}
	after_cooldown(r, q->p.kind == GOP_MOD ? mod_fetch : zip_fetch);
}
