/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pulling an image: the registry's v2 API over libcurl (blocking, one request at a time), the Bearer token
 * flow, manifest list → linux/amd64 manifest → config and layers, every byte hashed as it arrives and
 * checked against the digest that named it before anything is kept. Manifests and challenges are parsed by
 * the gateway's own parsers (gateway/mediation/ociproto.c, wwwauth.c), which have their fuzz targets.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image_priv.h"
#include "ociproto.h"
#include "wwwauth.h"

#define TOKEN_MAX 16384
#define TOKEN_ANSWER_MAX (64u << 10)
#define STAGED_MAX 4200 /* a path in DIR/tmp */
/* Rounds of fetching what an rm collected from the layer store while this pull fetched the rest. */
#define PUBLISH_ROUNDS 3

static const char accept_manifests[] =
	"Accept: " OCI_MT_INDEX ", " OCI_MT_MANIFEST ", " OCI_MT_DOCKER_LIST ", " OCI_MT_DOCKER_MANIFEST;

struct puller {
	const struct crgw_image_opts *o;
	struct img_ref ref;
	char base[1024];     /* scheme://host[:port] or MIRROR/host: the registry's v2 API is at base/v2/ */
	char *auth;          /* "Authorization: Bearer ..." (wiped on free), or NULL */
	bool mirror;
	char *err;
	size_t errlen;
};

/* Where one answer goes: memory (bounded) or a file, hashed either way. */
struct sink {
	char *buf;
	size_t len, max;
	int fd;
	EVP_MD_CTX *md;
	uint64_t got, limit;
	bool over;
	/* headers */
	char *challenge;
	char ctype[256];
	long status; /* of the response being received */
	/* progress */
	const struct crgw_image_opts *o;
	const char *digest;
	unsigned index, count;
	struct timespec last;
};

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	struct sink *k = arg;
	size_t len = size * n, vlen;
	const char *v;

	if (len >= 17 && !strncasecmp(data, "www-authenticate:", 17) && !k->challenge) {
		v = data + 17;
		vlen = len - 17;
		while (vlen && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
			vlen--;
		if (vlen <= MED_WWWAUTH_MAX_HEADER)
			k->challenge = strndup(v, vlen);
	} else if (len > 13 && !strncasecmp(data, "content-type:", 13)) {
		v = data + 13;
		vlen = len - 13;
		while (vlen && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
			vlen--;
		snprintf(k->ctype, sizeof(k->ctype), "%.*s", (int)(vlen < 255 ? vlen : 255), v);
	} else if (len >= 12 && !strncmp(data, "HTTP/", 5)) {
		/* A new response (after a redirect): forget the previous one's headers. */
		const char *sp = memchr(data, ' ', len);

		free(k->challenge);
		k->challenge = NULL;
		k->ctype[0] = 0;
		k->status = 0;
		if (sp && (size_t)(sp - data) + 4 <= len)
			for (int i = 1; i <= 3 && sp[i] >= '0' && sp[i] <= '9'; i++)
				k->status = k->status * 10 + (sp[i] - '0');
	}
	return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct sink *k = arg;
	size_t len = size * n;

	/* Only a 200's or a 206's body is kept: a 401 or a redirect says nothing about the blob. */
	if (k->status != 200 && k->status != 206)
		return len;
	/* Never more than the manifest said: a registry that sends more is cut here, not after. */
	if (k->got + len > k->limit) {
		k->over = true;
		return 0;
	}
	k->got += len;
	if (k->md)
		EVP_DigestUpdate(k->md, data, len);
	if (k->fd >= 0) {
		for (size_t off = 0; off < len;) {
			ssize_t w = write(k->fd, data + off, len - off);

			if (w < 0)
				return 0;
			off += (size_t)w;
		}
		return len;
	}
	if (k->len + len > k->max) {
		k->over = true;
		return 0;
	}
	if (!k->buf && !(k->buf = malloc(k->max + 1)))
		return 0;
	memcpy(k->buf + k->len, data, len);
	k->len += len;
	k->buf[k->len] = 0;
	return len;
}

static int on_xfer(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct sink *k = arg;
	struct timespec now;

	(void)dltotal, (void)ultotal, (void)ulnow;
	if (!k->o || !k->o->progress || !k->digest)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if ((now.tv_sec - k->last.tv_sec) * 1000 + (now.tv_nsec - k->last.tv_nsec) / 1000000 < 100)
		return 0;
	k->last = now;
	(void)dlnow;
	img_progress(k->o, CRGW_IMAGE_EV_BLOB, k->digest, k->got, k->limit, k->index, k->count, false);
	return 0;
}

/* Forgets what a file sink holds, for a download from the start. */
static int sink_restart(struct sink *k)
{
	if (ftruncate(k->fd, 0) || lseek(k->fd, 0, SEEK_SET))
		return -errno;
	k->got = 0;
	k->over = false;
	if (k->md)
		EVP_DigestInit_ex(k->md, EVP_sha256(), NULL);
	return 0;
}

static CURL *easy(const struct puller *p, const char *url, struct sink *k, struct curl_slist *hdrs)
{
	CURL *c = curl_easy_init();
	long timeout = p->o && p->o->timeout_s > 0 ? p->o->timeout_s : 60;

	if (!c)
		return NULL;
	curl_easy_setopt(c, CURLOPT_URL, url);
	/* https to registries; http only to a mirror the operator named (the gateway on its own subnet). */
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, p->mirror && !strncmp(p->base, "http:", 5) ? "http" : "https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	/* Never a proxy from the environment: the mirror option is how pulls go through the gateway. */
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, timeout);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "crgw-image/1");
	if (p->o && p->o->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, p->o->ca_file);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, k);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, k);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xfer);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, k);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	if (hdrs)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	return c;
}

/* GET `url` with the token flow's credentials; fills `k`; returns the HTTP status or -errno. */
static long get_once(struct puller *p, const char *url, const char *accept, struct sink *k)
{
	struct curl_slist *h = NULL;
	CURLcode cc;
	long status = 0;
	CURL *c;

	if (accept)
		h = curl_slist_append(h, accept);
	if (p->auth)
		h = curl_slist_append(h, p->auth);
	for (;;) {
		if (!(c = easy(p, url, k, h))) {
			curl_slist_free_all(h);
			return img_fail(p->err, p->errlen, -ENOMEM, "out of memory");
		}
		/* A file sink that holds the start of the blob asks for the rest (Range: bytes=N-). */
		if (k->fd >= 0 && k->got)
			curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)k->got);
		cc = curl_easy_perform(c);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_cleanup(c);
		/* A registry that cannot serve a range: from the start, once. */
		if (cc == CURLE_RANGE_ERROR && k->fd >= 0 && k->got) {
			int e = sink_restart(k);

			if (e) {
				curl_slist_free_all(h);
				return img_fail(p->err, p->errlen, e, "truncating a temporary file: %s", strerror(-e));
			}
			continue;
		}
		break;
	}
	curl_slist_free_all(h);
	if (k->over)
		return img_fail(p->err, p->errlen, -E2BIG, "%s: the registry sent more than the %llu bytes expected",
				url, (unsigned long long)k->limit);
	if (cc != CURLE_OK)
		return img_fail(p->err, p->errlen, cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO, "%s: %s", url,
				curl_easy_strerror(cc));
	return status;
}

static void wipe_auth(struct puller *p)
{
	if (p->auth) {
		OPENSSL_cleanse(p->auth, strlen(p->auth));
		free(p->auth);
		p->auth = NULL;
	}
}

/* The registry's Bearer challenge answered at its realm, with the credentials when there are some. */
static int fetch_token(struct puller *p, const char *challenge)
{
	struct med_wwwauth w;
	struct med_wwwauth_bearer b;
	const struct med_wwwauth_challenge *ch;
	struct sink k = { .fd = -1, .max = TOKEN_ANSWER_MAX, .limit = TOKEN_ANSWER_MAX };
	const char *why = NULL, *tok;
	char url[8192], scope[600];
	char *esc_service = NULL, *esc_scope = NULL;
	json_t *j = NULL;
	long status;
	int rc;
	CURL *c;

	if ((rc = med_wwwauth_parse(challenge, strlen(challenge), &w, &why)))
		return img_fail(p->err, p->errlen, -EPROTO, "the registry's WWW-Authenticate is malformed: %s", why);
	if (!(ch = med_wwwauth_find(&w, "Bearer"))) {
		med_wwwauth_free(&w);
		return img_fail(p->err, p->errlen, -EACCES, "the registry wants authentication other than Bearer tokens");
	}
	if ((rc = med_wwwauth_bearer(ch, &b, &why))) {
		med_wwwauth_free(&w);
		return img_fail(p->err, p->errlen, -EPROTO, "the registry's token realm is refused: %s", why);
	}
	snprintf(scope, sizeof(scope), "repository:%s:pull", p->ref.name);
	c = curl_easy_init();
	if (c) {
		esc_scope = curl_easy_escape(c, scope, 0);
		if (b.service)
			esc_service = curl_easy_escape(c, b.service, 0);
		curl_easy_cleanup(c);
	}
	if (!esc_scope || (b.service && !esc_service) ||
	    (size_t)snprintf(url, sizeof(url), "%s%sscope=%s%s%s", b.realm, strchr(b.realm, '?') ? "&" : "?",
			     esc_scope, esc_service ? "&service=" : "", esc_service ? esc_service : "") >= sizeof(url)) {
		rc = img_fail(p->err, p->errlen, -E2BIG, "the token realm is too long");
		goto out;
	}
	/* The realm is https (med_wwwauth_bearer checked), so the credentials never travel in clear. */
	{
		struct puller tp = *p;

		tp.auth = NULL;
		tp.mirror = false;
		if (!(c = easy(&tp, url, &k, NULL))) {
			rc = img_fail(p->err, p->errlen, -ENOMEM, "out of memory");
			goto out;
		}
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
		if (p->o && p->o->username && p->o->password) {
			curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
			curl_easy_setopt(c, CURLOPT_USERNAME, p->o->username);
			curl_easy_setopt(c, CURLOPT_PASSWORD, p->o->password);
		}
		CURLcode cc = curl_easy_perform(c);

		status = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_cleanup(c);
		if (cc != CURLE_OK) {
			rc = img_fail(p->err, p->errlen, -EIO, "token endpoint %s: %s", b.host, curl_easy_strerror(cc));
			goto out;
		}
	}
	if (status != 200) {
		rc = img_fail(p->err, p->errlen, -EACCES, "token endpoint %s answered %ld%s", b.host, status,
			      status == 401 || status == 403 ? " (wrong or missing credentials)" : "");
		goto out;
	}
	j = json_loadb(k.buf ? k.buf : "", k.len, 0, NULL);
	tok = json_string_value(json_object_get(j, "token"));
	if (!tok)
		tok = json_string_value(json_object_get(j, "access_token"));
	if (!tok || !*tok || strlen(tok) > TOKEN_MAX || strpbrk(tok, "\r\n ")) {
		rc = img_fail(p->err, p->errlen, -EPROTO, "token endpoint %s: no usable token in its answer", b.host);
		goto out;
	}
	wipe_auth(p);
	size_t alen = strlen(tok) + 32;

	if (!(p->auth = malloc(alen))) {
		rc = -ENOMEM;
		goto out;
	}
	snprintf(p->auth, alen, "Authorization: Bearer %s", tok);
	rc = 0;
out:
	if (j) {
		/* The answer held the token: wiped with the buffer. */
		json_decref(j);
	}
	if (k.buf) {
		OPENSSL_cleanse(k.buf, k.len);
		free(k.buf);
	}
	free(k.challenge);
	curl_free(esc_scope);
	curl_free(esc_service);
	med_wwwauth_free(&w);
	return rc;
}

/* GET with one retry after the token flow when the registry challenges. Returns 0 for a 200 (or a 206). */
static int get(struct puller *p, const char *url, const char *accept, struct sink *k, const char *what)
{
	long status = get_once(p, url, accept, k);

	/* A first challenge, or a token that expired during a long pull: one new token, one more try. */
	if (status == 401 && k->challenge) {
		char *ch = k->challenge;
		int rc;

		k->challenge = NULL;
		rc = fetch_token(p, ch);
		free(ch);
		if (rc)
			return rc;
		/* The 401's body was not kept (on_body), so what the sink holds is still good. */
		k->ctype[0] = 0;
		status = get_once(p, url, accept, k);
	}
	if (status < 0)
		return (int)status;
	if (status == 200 || (status == 206 && k->fd >= 0))
		return 0;
	if (status == 401 || status == 403)
		return img_fail(p->err, p->errlen, -EACCES, "%s: the registry refused access (%ld)", what, status);
	if (status == 404)
		return img_fail(p->err, p->errlen, -ENOENT, "%s: not found on %s", what, p->ref.host);
	return img_fail(p->err, p->errlen, -EIO, "%s: the registry answered %ld", what, status);
}

static int puller_init(struct puller *p, const char *ref, const struct crgw_image_opts *o, char *err, size_t errlen)
{
	const char *why = NULL;

	memset(p, 0, sizeof(*p));
	p->o = o;
	p->err = err;
	p->errlen = errlen;
	if (img_ref_parse(ref, &p->ref, &why))
		return img_fail(err, errlen, -EINVAL, "%s: %s", ref, why);
	if (o && o->mirror) {
		size_t n = strlen(o->mirror);

		if (strncmp(o->mirror, "http://", 7) && strncmp(o->mirror, "https://", 8))
			return img_fail(err, errlen, -EINVAL, "the mirror must be an http:// or https:// URL: %s",
					o->mirror);
		while (n && o->mirror[n - 1] == '/')
			n--;
		p->mirror = true;
		snprintf(p->base, sizeof(p->base), "%.*s/%s", (int)n, o->mirror, p->ref.host);
	} else {
		snprintf(p->base, sizeof(p->base), "https://%s", p->ref.host);
	}
	return 0;
}

/* Fetches a manifest by `reference`; verified against `digest` when given, else its digest is written there. */
static int fetch_manifest(struct puller *p, const char *reference, char digest[CRGW_IMAGE_ID_LEN],
			  bool verify, struct oci_manifest *m, char **body, size_t *len)
{
	struct sink k = { .fd = -1, .max = OCI_MANIFEST_MAX_BYTES, .limit = OCI_MANIFEST_MAX_BYTES };
	char url[2048], got[CRGW_IMAGE_ID_LEN], what[800];
	unsigned char md[32];
	const char *why = NULL;
	int rc;

	snprintf(url, sizeof(url), "%s/v2/%s/manifests/%s", p->base, p->ref.name, reference);
	snprintf(what, sizeof(what), "manifest %s/%s@%s", p->ref.host, p->ref.name, reference);
	if (!(k.md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(k.md, EVP_sha256(), NULL)) {
		rc = img_fail(p->err, p->errlen, -ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = get(p, url, accept_manifests, &k, what)))
		goto out;
	EVP_DigestFinal_ex(k.md, md, NULL);
	img_hex_digest(md, got);
	if (verify && strcmp(got, digest)) {
		rc = img_fail(p->err, p->errlen, -EBADMSG, "%s: digest mismatch: the registry's bytes are %s", what, got);
		goto out;
	}
	memcpy(digest, got, CRGW_IMAGE_ID_LEN);
	if ((rc = oci_manifest_parse(k.buf ? k.buf : "", k.len, k.ctype[0] ? k.ctype : NULL, m, &why))) {
		rc = img_fail(p->err, p->errlen, rc, "%s: %s", what, why);
		goto out;
	}
	*body = k.buf;
	*len = k.len;
	k.buf = NULL;
out:
	free(k.buf);
	free(k.challenge);
	EVP_MD_CTX_free(k.md);
	return rc;
}

int crgw_image_resolve(const char *ref, const struct crgw_image_opts *o, char *pinned, size_t pinnedlen,
		       char *err, size_t errlen)
{
	struct puller p;
	struct oci_manifest m = { 0 };
	char digest[CRGW_IMAGE_ID_LEN] = "";
	char *body = NULL;
	size_t len;
	int rc;

	if ((rc = puller_init(&p, ref, o, err, errlen)))
		return rc;
	if (p.ref.digest[0])
		memcpy(digest, p.ref.digest, sizeof(digest));
	rc = fetch_manifest(&p, p.ref.digest[0] ? p.ref.digest : p.ref.tag, digest, p.ref.digest[0] != 0, &m, &body,
			    &len);
	if (!rc && (size_t)snprintf(pinned, pinnedlen, "%s/%s%s%s@%s", p.ref.host, p.ref.name, p.ref.tag[0] ? ":" : "",
				    p.ref.tag, digest) >= pinnedlen)
		rc = img_fail(err, errlen, -ENAMETOOLONG, "reference too long");
	oci_manifest_free(&m);
	free(body);
	wipe_auth(&p);
	return rc;
}

static bool layer_type_ok(const char *t)
{
	static const char *const ok[] = {
		"application/vnd.oci.image.layer.v1.tar",
		"application/vnd.oci.image.layer.v1.tar+gzip",
		"application/vnd.oci.image.layer.v1.tar+zstd",
		"application/vnd.docker.image.rootfs.diff.tar.gzip",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!strcmp(t, ok[i]))
			return true;
	return false;
}

/*
 * Opens tmp/partial-<hex>, what an earlier run of any pull fetched of this blob, locked so that one process
 * at a time continues it; hashes what it holds into `k`. Falls back to a fresh temporary file when another
 * process holds it. Returns the descriptor or -errno; `*resumable` says which it is.
 */
static int open_partial(struct crgw_image_store *s, const struct oci_descriptor *d, struct sink *k, char *tmp,
			size_t size, bool *resumable)
{
	char buf[65536];
	struct stat st;
	uint64_t have = 0;
	ssize_t n;
	int fd;

	*resumable = false;
	snprintf(tmp, size, "%s/tmp/partial-%s", s->dir, d->digest + 7);
	fd = open(tmp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		return img_tmp_file(s, tmp, size);
	}
	*resumable = true;
	if ((uint64_t)st.st_size > (uint64_t)d->size) {
		if (ftruncate(fd, 0))
			goto bad;
		return fd;
	}
	/* Not verified yet: its hash continues into the download's, and the whole is checked at the end. */
	while (have < (uint64_t)st.st_size && (n = read(fd, buf, sizeof(buf))) > 0) {
		EVP_DigestUpdate(k->md, buf, (size_t)n);
		have += (uint64_t)n;
	}
	if (have != (uint64_t)st.st_size || lseek(fd, (off_t)have, SEEK_SET) < 0)
		goto bad;
	k->got = have;
	return fd;
bad:
	close(fd);
	unlink(tmp);
	return -EIO;
}

/*
 * One blob into a file in tmp/, verified against `d` while it streams, fsynced, its path in `staged` for
 * img_blob_publish; `staged` is left empty when the layer store has the blob already. Runs without the
 * store's lock, which is why the blob is not published here: rm may collect blobs no image names.
 */
static int fetch_blob(struct puller *p, struct crgw_image_store *s, const struct oci_descriptor *d, unsigned index,
		      unsigned count, char staged[STAGED_MAX])
{
	struct sink k = { .fd = -1, .o = p->o, .digest = d->digest, .index = index, .count = count };
	char url[2048], tmp[4200], got[CRGW_IMAGE_ID_LEN], what[200];
	const struct crgw_image_limits *lim = p->o ? p->o->limits : NULL;
	struct crgw_image_limits dl;
	unsigned char md[32];
	uint64_t resumed = 0;
	bool resumable = false;
	int rc;

	if (!lim) {
		crgw_image_limits_default(&dl);
		lim = &dl;
	}
	if (!img_digest_valid(d->digest))
		return img_fail(p->err, p->errlen, -ENOTSUP, "blob %s: only sha256 digests are supported", d->digest);
	if ((uint64_t)d->size > lim->max_blob)
		return img_fail(p->err, p->errlen, -E2BIG, "blob %s: %lld bytes is more than the limit", d->digest,
				(long long)d->size);
	staged[0] = 0;
	if (img_blob_have(s, d->digest, d->size)) {
		img_progress(p->o, CRGW_IMAGE_EV_BLOB_DONE, d->digest, (uint64_t)d->size, (uint64_t)d->size, index,
			     count, true);
		return 0;
	}
	snprintf(url, sizeof(url), "%s/v2/%s/blobs/%s", p->base, p->ref.name, d->digest);
	snprintf(what, sizeof(what), "blob %s", d->digest);
	k.limit = (uint64_t)d->size;
	if (!(k.md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(k.md, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(k.md);
		return img_fail(p->err, p->errlen, -ENOMEM, "out of memory");
	}
	if ((k.fd = open_partial(s, d, &k, tmp, sizeof(tmp), &resumable)) < 0) {
		EVP_MD_CTX_free(k.md);
		return img_fail(p->err, p->errlen, k.fd, "%s/tmp: %s", s->dir, strerror(-k.fd));
	}
	resumed = k.got;
	if (k.got < (uint64_t)d->size && (rc = get(p, url, NULL, &k, what)))
		goto out;
	if (k.got != (uint64_t)d->size) {
		rc = img_fail(p->err, p->errlen, -EBADMSG, "%s: %llu bytes arrived, the manifest says %lld (truncated)",
			      what, (unsigned long long)k.got, (long long)d->size);
		goto out;
	}
	EVP_DigestFinal_ex(k.md, md, NULL);
	img_hex_digest(md, got);
	if (strcmp(got, d->digest)) {
		rc = img_fail(p->err, p->errlen, -EBADMSG, "%s: digest mismatch: the registry's bytes are %s%s", what,
			      got, resumed ? " (with what an earlier run fetched: removed, pull again)" : "");
		goto out;
	}
	if (fsync(k.fd)) {
		rc = img_fail(p->err, p->errlen, -errno, "storing %s: %s", d->digest, strerror(errno));
		goto out;
	}
	/* Closed, so its flock goes: another pull of the same blob finds it whole and fetches nothing. */
	close(k.fd);
	k.fd = -1;
	snprintf(staged, STAGED_MAX, "%s", tmp);
	{
		struct crgw_image_progress ev = { .ev = CRGW_IMAGE_EV_BLOB_DONE, .digest = d->digest, .bytes = k.got,
						  .total = k.got, .index = index, .count = count, .resumed = resumed };

		if (p->o && p->o->progress)
			p->o->progress(&ev, p->o->progress_arg);
	}
out:
	if (k.fd >= 0) {
		close(k.fd);
		/*
		 * What arrived before a network failure stays for the next run to continue (it is checked then,
		 * whole); bytes that proved wrong, or a temporary file that is not the shared partial, go.
		 */
		if (!resumable || rc == -EBADMSG || rc == -E2BIG)
			unlink(tmp);
	}
	free(k.challenge);
	EVP_MD_CTX_free(k.md);
	return rc;
}

static json_t *descriptor_json(const struct oci_descriptor *d)
{
	return json_pack("{s:s,s:I,s:s}", "digest", d->digest, "size", (json_int_t)d->size, "media_type",
			 d->media_type);
}

int crgw_image_pull(struct crgw_image_store *s, const char *ref, const struct crgw_image_opts *o,
		    char id[CRGW_IMAGE_ID_LEN], char *err, size_t errlen)
{
	struct puller p;
	struct oci_manifest top = { 0 }, m = { 0 };
	char top_digest[CRGW_IMAGE_ID_LEN], mdigest[CRGW_IMAGE_ID_LEN];
	char *top_body = NULL, *mbody = NULL, *cfg = NULL;
	size_t top_len = 0, mlen = 0;
	json_t *record = NULL, *layers, *summary = NULL;
	const char *why = NULL, *gone = NULL;
	char (*staged)[STAGED_MAX] = NULL;
	bool locked = false;
	int rc;

	if ((rc = puller_init(&p, ref, o, err, errlen)))
		return rc;
	if (!p.ref.digest[0])
		return img_fail(err, errlen, -EINVAL,
				"%s: a tag alone can change under you: pin a digest (REF@sha256:...); "
				"crgw-ctl image pull --resolve %s prints it", ref, ref);
	memcpy(id, p.ref.digest, CRGW_IMAGE_ID_LEN);
	flock(s->lock, LOCK_SH);
	rc = img_existing(s, id, o, err, errlen);
	flock(s->lock, LOCK_UN);
	if (rc) {
		if (rc > 0) {
			rc = 0;
			img_progress(o, CRGW_IMAGE_EV_DONE, id, 0, 0, 0, 0, true);
		}
		goto out;
	}
	memcpy(top_digest, p.ref.digest, sizeof(top_digest));
	if ((rc = fetch_manifest(&p, p.ref.digest, top_digest, true, &top, &top_body, &top_len)))
		goto out;
	record = json_object();
	if (top.kind == OCI_KIND_INDEX) {
		const struct oci_descriptor *pick = NULL;

		for (size_t i = 0; i < top.nitems && !pick; i++)
			if (!strcmp(top.items[i].os, "linux") && !strcmp(top.items[i].arch, "amd64"))
				pick = &top.items[i];
		if (!pick) {
			rc = img_fail(err, errlen, -ENOENT, "%s: the index has no linux/amd64 manifest", ref);
			goto out;
		}
		if (!img_digest_valid(pick->digest)) {
			rc = img_fail(err, errlen, -ENOTSUP, "%s: only sha256 digests are supported", pick->digest);
			goto out;
		}
		memcpy(mdigest, pick->digest, sizeof(mdigest));
		if ((rc = fetch_manifest(&p, mdigest, mdigest, true, &m, &mbody, &mlen)))
			goto out;
		if (m.kind != OCI_KIND_MANIFEST) {
			rc = img_fail(err, errlen, -EBADMSG, "%s: the index's linux/amd64 entry is not a manifest", ref);
			goto out;
		}
		json_object_set_new(record, "index", json_string(top_digest));
	} else {
		memcpy(mdigest, top_digest, sizeof(mdigest));
		m = top;
		memset(&top, 0, sizeof(top));
		mbody = top_body;
		mlen = top_len;
		top_body = NULL;
	}
	img_progress(o, CRGW_IMAGE_EV_MANIFEST, mdigest, mlen, mlen, 0, 0, false);
	if (m.nitems == 0) {
		rc = img_fail(err, errlen, -EBADMSG, "%s: the manifest has no layers", ref);
		goto out;
	}
	for (size_t i = 0; i < m.nitems; i++) {
		if (m.items[i].has_urls || !layer_type_ok(m.items[i].media_type)) {
			rc = img_fail(err, errlen, -ENOTSUP, "%s: layer %s has a media type images cannot use: %s", ref,
				      m.items[i].digest, m.items[i].media_type);
			goto out;
		}
	}
	if (m.config.size > IMG_CONFIG_MAX_BYTES) {
		rc = img_fail(err, errlen, -E2BIG, "%s: the image config is larger than 4 MiB", ref);
		goto out;
	}
	if (!(staged = calloc(m.nitems + 1, sizeof(*staged)))) {
		rc = img_fail(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	/*
	 * The network is used without the store's lock, so a slow registry never holds up an rm: blobs are
	 * fetched into tmp/, where rm's collection never looks, and the lock is taken to publish them and to
	 * make the image. A blob the layer store had when this began may have been collected by an rm meanwhile
	 * (no image named it): it is fetched again, a few times at most.
	 */
	for (unsigned round = 0;; round++) {
		for (size_t i = 0; i <= m.nitems; i++) {
			const struct oci_descriptor *d = i == 0 ? &m.config : &m.items[i - 1];

			if ((rc = fetch_blob(&p, s, d, (unsigned)i + 1, (unsigned)m.nitems + 1, staged[i])))
				goto out;
		}
		flock(s->lock, LOCK_SH);
		locked = true;
		for (size_t i = 0; i <= m.nitems; i++) {
			const char *digest = i == 0 ? m.config.digest : m.items[i - 1].digest;

			if (staged[i][0] && (rc = img_blob_publish(s, staged[i], digest, err, errlen)))
				goto out;
			staged[i][0] = 0;
		}
		gone = NULL;
		for (size_t i = 0; i <= m.nitems && !gone; i++) {
			const struct oci_descriptor *d = i == 0 ? &m.config : &m.items[i - 1];

			if (!img_blob_have(s, d->digest, d->size))
				gone = d->digest;
		}
		if (!gone)
			break;
		flock(s->lock, LOCK_UN);
		locked = false;
		if (round + 1 == PUBLISH_ROUNDS) {
			rc = img_fail(err, errlen, -EAGAIN,
				      "%s: blob %s left the layer store (image rm) while this pull ran, %d times: "
				      "pull again", ref, gone, PUBLISH_ROUNDS);
			goto out;
		}
	}
	/* The config, read back from the store where it was verified. */
	{
		char blob[4200];
		FILE *f;
		size_t n;

		img_blob_path(s, m.config.digest, blob, sizeof(blob));
		if (!(cfg = malloc((size_t)m.config.size + 1)) || !(f = fopen(blob, "rb"))) {
			rc = img_fail(err, errlen, -EIO, "reading the image config %s", m.config.digest);
			goto out;
		}
		n = fread(cfg, 1, (size_t)m.config.size, f);
		fclose(f);
		if ((rc = img_config_parse(cfg, n, m.nitems, &summary, &why))) {
			rc = img_fail(err, errlen, rc, "%s: %s", ref, why);
			goto out;
		}
	}
	if ((rc = img_blob_put(s, mdigest, mbody, mlen, err, errlen)) ||
	    (top_body && (rc = img_blob_put(s, top_digest, top_body, top_len, err, errlen))))
		goto out;
	layers = json_array();
	for (size_t i = 0; i < m.nitems; i++)
		json_array_append_new(layers, descriptor_json(&m.items[i]));
	json_object_set_new(record, "layers", layers);
	json_object_set_new(record, "source", json_string("pull"));
	json_object_set_new(record, "reference", json_string(ref));
	json_object_set_new(record, "manifest", json_string(mdigest));
	json_object_set_new(record, "config", json_string(m.config.digest));
	json_object_set_new(record, "platform", json_string("linux/amd64"));
	json_object_set(record, "image_config", summary);
	rc = img_build(s, id, record, o, false, err, errlen);
	record = NULL;
out:
	/* Blobs verified before a failure are good bytes: kept in the layer store for the next run. */
	for (size_t i = 0; staged && i <= m.nitems; i++) {
		char why_not[256];

		if (!staged[i][0])
			continue;
		if (!locked) {
			flock(s->lock, LOCK_SH);
			locked = true;
		}
		img_blob_publish(s, staged[i], i == 0 ? m.config.digest : m.items[i - 1].digest, why_not,
				 sizeof(why_not));
	}
	free(staged);
	if (locked)
		flock(s->lock, LOCK_UN);
	json_decref(record);
	json_decref(summary);
	oci_manifest_free(&top);
	oci_manifest_free(&m);
	free(top_body);
	free(mbody);
	free(cfg);
	wipe_auth(&p);
	return rc;
}
