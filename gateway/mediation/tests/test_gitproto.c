/* SPDX-License-Identifier: Apache-2.0 */
/*
 * git's wire protocol parsers against the real thing: repositories, advertisements, pushes and packs made
 * at run time by the git binary in a private directory, each fed whole, in random chunks and one byte at a
 * time; hand-made malformed inputs; and the push verdicts on real pushes.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "gitproto.h"
#include "tap.h"

static char tmp[256];

/* ---- running git ------------------------------------------------------------------------------------ */

/* Runs a shell command in the test's directory; its exit status. */
__attribute__((format(printf, 1, 2))) static int sh(const char *fmt, ...)
{
	char cmd[16384], full[17000];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "cd '%s' && ( %s )", tmp, cmd);
	st = system(full);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A shell command's standard output, whole (malloc'd, NUL-terminated), or NULL when it failed. */
__attribute__((format(printf, 2, 3))) static uint8_t *sh_out(size_t *len, const char *fmt, ...)
{
	char cmd[16384], full[17000];
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0;
	va_list ap;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "cd '%s' && ( %s )", tmp, cmd);
	f = popen(full, "r");
	if (!f)
		return NULL;
	for (;;) {
		if (n + 65536 + 1 > cap) {
			cap = cap ? cap * 2 : 131072;
			buf = realloc(buf, cap);
			if (!buf)
				abort();
		}
		size_t got = fread(buf + n, 1, 65536, f);

		if (!got)
			break;
		n += got;
	}
	buf[n] = '\0';
	if (pclose(f) != 0) {
		free(buf);
		return NULL;
	}
	if (len)
		*len = n;
	return buf;
}

static uint8_t *slurp(const char *name, size_t *len)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", tmp, name);
	return (uint8_t *)tap_read_file(path, len);
}

static struct git_oid oid_of_hex(const char *hex)
{
	struct git_oid o = { 0 };
	size_t n = strspn(hex, "0123456789abcdef");

	for (size_t i = 0; i + 1 < n && i / 2 < GIT_OID_MAX; i += 2) {
		unsigned v;

		sscanf(hex + i, "%2x", &v);
		o.id[i / 2] = (uint8_t)v;
	}
	o.len = (uint8_t)(n / 2);
	return o;
}

/* `git rev-parse` of `what` in repository `repo`. */
static struct git_oid rev(const char *repo, const char *what)
{
	uint8_t *out = sh_out(NULL, "git -C %s rev-parse %s", repo, what);
	struct git_oid o = { 0 };

	if (out)
		o = oid_of_hex((char *)out);
	free(out);
	return o;
}

/* ---- feeding in pieces ------------------------------------------------------------------------------ */

enum feed { WHOLE, RANDOM, BYTES, NFEED };
static const char *const feed_name[] = { "whole", "random chunks", "one byte at a time" };

static uint32_t rnd_state = 12345;

static uint32_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 17;
	rnd_state ^= rnd_state << 5;
	return rnd_state;
}

static size_t chunk(enum feed mode, size_t left)
{
	size_t n;

	if (mode == WHOLE)
		return left;
	if (mode == BYTES)
		return 1;
	/* Mostly small pieces, sometimes large ones, so both in-place and reassembled lines are exercised. */
	n = rnd() % 8 == 0 ? 1 + rnd() % 70000 : 1 + rnd() % 300;
	return n < left ? n : left;
}

/* ---- advertisements --------------------------------------------------------------------------------- */

static bool want_heads(void *arg, const char *ref, size_t len)
{
	(void)arg;
	return len > 11 && !memcmp(ref, "refs/heads/", 11);
}

static int adv_run(const uint8_t *buf, size_t len, enum feed mode, const char *service, size_t max,
		   bool (*want)(void *, const char *, size_t), struct git_refs *out, const char **why)
{
	struct git_adv *a = malloc(sizeof(*a));
	size_t off = 0;
	int rc = -EAGAIN;

	git_adv_init(a, out, service, max, want, NULL);
	/* Bytes left after a 0 are fed too: they must turn it into an error. */
	while (off < len && (rc == -EAGAIN || rc == 0)) {
		size_t n = chunk(mode, len - off);

		rc = git_adv_feed(a, buf + off, n);
		off += n;
	}
	if (why)
		*why = a->why;
	free(a);
	return rc;
}

static bool refs_same(const struct git_refs *a, const struct git_refs *b)
{
	if (a->n != b->n || a->incomplete != b->incomplete || a->sha256 != b->sha256 || a->empty != b->empty ||
	    a->advertised != b->advertised || a->caps_len != b->caps_len ||
	    (a->caps_len && memcmp(a->caps, b->caps, a->caps_len)))
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (a->refs[i].len != b->refs[i].len || strcmp(a->refs[i].name, b->refs[i].name) ||
		    !git_oid_equal(&a->refs[i].oid, &b->refs[i].oid))
			return false;
	return true;
}

/* "# service=<svc>\n" and a flush before `adv`, as git-http-backend sends it. */
static uint8_t *http_adv(const char *service, const uint8_t *adv, size_t len, size_t *out_len)
{
	char head[64];
	int h = snprintf(head, sizeof(head), "0000# service=%s\n0000", service);
	uint8_t *buf = malloc(len + (size_t)h);
	char hex[5];

	snprintf(hex, sizeof(hex), "%04x", h - 4);
	memcpy(head, hex, 4);
	memcpy(buf, head, (size_t)h);
	memcpy(buf + h, adv, len);
	*out_len = len + (size_t)h;
	return buf;
}

/* Every ref for-each-ref lists (and HEAD when `head`) is in `refs` with its name. */
static bool refs_match_git(const struct git_refs *refs, const char *repo, bool head, size_t *count)
{
	uint8_t *list = sh_out(NULL, "git -C %s for-each-ref --format='%%(objectname) %%(refname)'", repo);
	char *save = NULL, *line;
	bool ok = list != NULL;

	*count = 0;
	for (line = list ? strtok_r((char *)list, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
		char *sp = strchr(line, ' ');
		struct git_oid o = oid_of_hex(line);
		const struct git_ref *r = sp ? git_refs_find(refs, sp + 1, strlen(sp + 1)) : NULL;

		(*count)++;
		if (!r || !git_oid_equal(&r->oid, &o))
			ok = false;
	}
	free(list);
	if (head) {
		struct git_oid h = rev(repo, "HEAD");
		const struct git_ref *r = git_refs_find(refs, "HEAD", 4);

		(*count)++;
		if (!r || !git_oid_equal(&r->oid, &h))
			ok = false;
	}
	return ok;
}

/* Parses a real advertisement every way it can be cut; true when all agree with git and each other. */
static void adv_check(const char *what, const char *repo, const char *service, bool head, bool sha256)
{
	size_t raw_len, len, count = 0;
	uint8_t *raw = sh_out(&raw_len, "git %s --advertise-refs %s", service + 4, repo), *buf;
	struct git_refs first = { 0 };
	bool same = true;
	int rc0 = 1;

	if (!raw) {
		tap_result(false, "%s: git %s --advertise-refs ran", what, service + 4);
		return;
	}
	buf = http_adv(service, raw, raw_len, &len);
	for (int m = WHOLE; m < NFEED; m++) {
		struct git_refs refs = { 0 };
		int rc = adv_run(buf, len, m, service, 100000, NULL, &refs, NULL);

		if (m == WHOLE) {
			rc0 = rc;
			first = refs;
			continue;
		}
		same = same && rc == rc0 && refs_same(&first, &refs);
		git_refs_free(&refs);
	}
	tap_result(rc0 == 0, "%s: parsed (rc %d)", what, rc0);
	tap_result(same, "%s: whole, random chunks and single bytes agree", what);
	same = refs_match_git(&first, repo, head, &count);
	tap_result(same && first.n == count && !first.incomplete &&
			   first.sha256 == sha256 && first.sorted,
		   "%s: the %zu refs git lists, with their names (%zu kept)", what, count, first.n);
	git_refs_free(&first);
	free(buf);
	free(raw);
}

static void test_adv_real(void)
{
	size_t raw_len, len;
	uint8_t *raw, *buf;
	struct git_refs refs = { 0 };
	const char *why = NULL, *v;
	size_t vlen = 0;
	int rc;

	adv_check("receive-pack advertisement", "a", "git-receive-pack", false, false);
	adv_check("upload-pack advertisement (HEAD, peeled tags)", "a", "git-upload-pack", true, false);
	adv_check("sha256 receive-pack advertisement", "s256", "git-receive-pack", false, true);
	adv_check("sha256 upload-pack advertisement", "s256", "git-upload-pack", true, true);
	adv_check("10000 refs", "many", "git-receive-pack", false, false);

	/* Capabilities of the real advertisement. */
	raw = sh_out(&raw_len, "git receive-pack --advertise-refs a");
	buf = http_adv("git-receive-pack", raw, raw_len, &len);
	rc = adv_run(buf, len, WHOLE, "git-receive-pack", 100000, want_heads, &refs, NULL);
	v = git_cap_find(refs.caps, refs.caps_len, "object-format", &vlen);
	tap_result(rc == 0 && v && vlen == 4 && !memcmp(v, "sha1", 4) &&
			   git_cap_find(refs.caps, refs.caps_len, "ofs-delta", &vlen) && vlen == 0 &&
			   !git_cap_find(refs.caps, refs.caps_len, "ofs", NULL),
		   "receive-pack's capabilities: object-format=sha1, ofs-delta, no 'ofs'");
	tap_result(refs.n > 0 && refs.advertised > refs.n && !git_refs_find(&refs, "refs/tags/v1", 12) &&
			   git_refs_find(&refs, "refs/heads/main", 15) && !refs.incomplete,
		   "only wanted refs kept (%zu of %zu), others counted", refs.n, refs.advertised);
	git_refs_free(&refs);

	rc = adv_run(buf, len, BYTES, "git-receive-pack", 2, NULL, &refs, NULL);
	tap_result(rc == 0 && refs.n == 2 && refs.incomplete, "over max_refs: 2 kept, marked incomplete");
	git_refs_free(&refs);
	git_refs_free(&refs);
	tap_result(refs.refs == NULL && refs.n == 0, "git_refs_free twice is safe");

	rc = adv_run(buf, len, WHOLE, "git-upload-pack", 100, NULL, &refs, &why);
	tap_result(rc == -EBADMSG && why, "the answer of another service is refused (%s)", why);
	git_refs_free(&refs);

	/* Trailing bytes after the final flush. */
	{
		uint8_t *more = malloc(len + 4);

		memcpy(more, buf, len);
		memcpy(more + len, "0000", 4);
		for (int m = WHOLE; m < NFEED; m++) {
			rc = adv_run(more, len + 4, m, "git-receive-pack", 100, NULL, &refs, &why);
			tap_result(rc == -EBADMSG, "bytes after the final flush refused, %s", feed_name[m]);
			git_refs_free(&refs);
		}
		/* Cut anywhere before its end, it is still waiting. */
		bool waiting = true;

		for (size_t cut = 0; cut < len; cut += 7) {
			rc = adv_run(buf, cut, WHOLE, "git-receive-pack", 100, NULL, &refs, NULL);
			waiting = waiting && rc == -EAGAIN;
			git_refs_free(&refs);
		}
		tap_result(waiting, "every cut before the final flush asks for more");
		free(more);
	}

	/* A ref line given twice. */
	{
		size_t at = 35, l2, l3; /* after the service line and its flush */
		char hx[5] = { 0 };

		/* the first ref line carries the capabilities; repeat the second one */
		memcpy(hx, buf + at, 4);
		l2 = strtoul(hx, NULL, 16);
		memcpy(hx, buf + at + l2, 4);
		l3 = strtoul(hx, NULL, 16);
		uint8_t *dup = malloc(len + l3);

		memcpy(dup, buf, at + l2 + l3);
		memcpy(dup + at + l2 + l3, buf + at + l2, len - at - l2);
		rc = adv_run(dup, len + l3, RANDOM, "git-receive-pack", 100, NULL, &refs, &why);
		tap_result(rc == -EBADMSG && why && strstr(why, "twice"), "a ref advertised twice is refused (%s)",
			   why ? why : "");
		git_refs_free(&refs);
		free(dup);
	}
	free(buf);
	free(raw);

	/* An empty repository: capabilities^{} with the zero name. */
	raw = sh_out(&raw_len, "git receive-pack --advertise-refs empty.git");
	buf = http_adv("git-receive-pack", raw, raw_len, &len);
	for (int m = WHOLE; m < NFEED; m++) {
		rc = adv_run(buf, len, m, "git-receive-pack", 100, NULL, &refs, NULL);
		tap_result(rc == 0 && refs.empty && refs.n == 0 && !refs.incomplete && refs.caps &&
				   git_cap_find(refs.caps, refs.caps_len, "report-status", NULL),
			   "empty repository: capabilities^{}, no ref, %s", feed_name[m]);
		git_refs_free(&refs);
	}
	free(buf);
	free(raw);

	/* Protocol v2 over HTTP has no service line; after it, a v2 answer is also read. */
	raw = sh_out(&raw_len, "GIT_PROTOCOL=version=2 git upload-pack --advertise-refs a");
	for (int m = WHOLE; m < NFEED; m++) {
		rc = adv_run(raw, raw_len, m, "git-upload-pack", 100, NULL, &refs, NULL);
		tap_result(rc == 0 && refs.incomplete && refs.n == 0, "protocol v2: read, no ref, incomplete, %s",
			   feed_name[m]);
		git_refs_free(&refs);
	}
	buf = http_adv("git-upload-pack", raw, raw_len, &len);
	rc = adv_run(buf, len, RANDOM, "git-upload-pack", 100, NULL, &refs, NULL);
	tap_result(rc == 0 && refs.incomplete, "protocol v2 after a service line: incomplete");
	git_refs_free(&refs);
	free(buf);
	free(raw);

	/* Protocol v1: "version 1" before the refs. */
	raw = sh_out(&raw_len, "GIT_PROTOCOL=version=1 git receive-pack --advertise-refs a");
	buf = http_adv("git-receive-pack", raw, raw_len, &len);
	rc = adv_run(buf, len, BYTES, "git-receive-pack", 100000, NULL, &refs, NULL);
	tap_result(raw && !memcmp(raw + 4, "version 1", 9) && rc == 0 && git_refs_find(&refs, "refs/heads/main", 15),
		   "protocol v1 advertisement");
	git_refs_free(&refs);
	free(buf);
	free(raw);
}

/* A hand-written advertisement: `lines` separated by '|', '0' alone for a flush, "\\0" for NUL. */
static int adv_lines(const char *lines, const char *service, struct git_refs *out, const char **why)
{
	uint8_t buf[8192];
	size_t n = 0;
	const char *p = lines;
	int rc;

	while (*p) {
		const char *end = strchr(p, '|');
		size_t l = end ? (size_t)(end - p) : strlen(p);
		char line[1024];
		size_t ll = 0;

		for (size_t i = 0; i < l; i++) {
			if (p[i] == '\\' && i + 1 < l && p[i + 1] == '0') {
				line[ll++] = '\0';
				i++;
			} else {
				line[ll++] = p[i];
			}
		}
		if (ll == 1 && line[0] == '0') {
			memcpy(buf + n, "0000", 4);
			n += 4;
		} else {
			char hx[5];

			snprintf(hx, sizeof(hx), "%04zx", ll + 5);
			memcpy(buf + n, hx, 4);
			memcpy(buf + n + 4, line, ll);
			buf[n + 4 + ll] = '\n';
			n += ll + 5;
		}
		p += l + (end ? 1 : 0);
	}
	rc = adv_run(buf, n, WHOLE, service, 100, NULL, out, why);
	for (int m = RANDOM; m < NFEED; m++) {
		struct git_refs other = { 0 };
		int rc2 = adv_run(buf, n, m, service, 100, NULL, &other, NULL);

		if (rc2 != rc || (rc == 0 && !refs_same(out, &other)))
			rc = -9999; /* cutting changed the answer */
		git_refs_free(&other);
	}
	return rc;
}

#define Z40 "0000000000000000000000000000000000000000"
#define A40 "1111111111111111111111111111111111111111"
#define B40 "2222222222222222222222222222222222222222"

static void test_adv_malformed(void)
{
	static const struct {
		const char *lines;
		int rc;
		const char *what;
	} cases[] = {
		{ "# service=git-receive-pack|0|" A40 " refs/heads/main\\0report-status|" B40 " refs/heads/b|0", 0,
		  "good" },
		{ "# service=git-receive-pack|0|" A40 " refs/heads/main\\0report-status|" A40 " refs/heads/main|0",
		  -EBADMSG, "the same ref twice" },
		{ "# service=git-upload-pack|0|" A40 " refs/heads/main|0", -EBADMSG, "another service" },
		{ "# service=git-receive-pack|" A40 " refs/heads/main|0", -EAGAIN,
		  "lines after the service line skipped up to its flush" },
		{ "|0|" A40 " refs/heads/main|0", -EBADMSG, "an empty line for the service line" },
		{ A40 " refs/heads/main|0", -EBADMSG, "no service line" },
		{ "# service=git-receive-pack|0|" A40 " refs/heads/a..b|0", -EBADMSG, "refs/heads/a..b" },
		{ "# service=git-receive-pack|0|" A40 " refs/heads/x.lock|0", -EBADMSG, "refs/heads/x.lock" },
		{ "# service=git-receive-pack|0|" A40 " refs/heads/@{|0", -EBADMSG, "refs/heads/@{" },
		{ "# service=git-receive-pack|0|" A40 " refs/heads/a\tb|0", -EBADMSG, "a tab in a ref" },
		{ "# service=git-receive-pack|0|" A40 " refs/heads/a\x01|0", -EBADMSG, "a control byte in a ref" },
		{ "# service=git-receive-pack|0|" A40 " heads/main|0", -EBADMSG, "a ref outside refs/" },
		{ "# service=git-receive-pack|0|111111111111111111111111111111111111111g refs/heads/a|0", -EBADMSG,
		  "bad hex" },
		{ "# service=git-receive-pack|0|11111111111111111111111111111111111111 refs/heads/a|0", -EBADMSG,
		  "a short name" },
		{ "# service=git-receive-pack|0|" A40 "|0", -EBADMSG, "a name without a ref" },
		{ "# service=git-receive-pack|0|" A40 " refs/heads/a|" B40 " refs/heads/b\\0caps|0", -EBADMSG,
		  "capabilities on a later line" },
		{ "# service=git-receive-pack|0|" A40 " refs/heads/a\\0object-format=md5|0", -EBADMSG,
		  "an unknown object-format" },
		{ "# service=git-receive-pack|0|" A40 " refs/heads/a\\0object-format=sha256|0", -EBADMSG,
		  "sha256 announced, sha1 names" },
		{ "# service=git-receive-pack|0|ERR access denied|0", -EBADMSG, "an ERR line" },
		{ "# service=git-receive-pack|0|" A40 " capabilities^{}\\0report-status|0", -EBADMSG,
		  "capabilities^{} with a name" },
		{ "# service=git-receive-pack|0|" Z40 " capabilities^{}\\0report-status|" A40 " refs/heads/a|0",
		  -EBADMSG, "a ref after capabilities^{}" },
		{ "# service=git-receive-pack|0|" A40 " refs/heads/a\\0x|" B40 " refs/tags/t^{}|shallow " B40 "|" B40
		  " .have|0",
		  0, "peeled, shallow and .have lines ignored" },
		{ "# service=git-receive-pack|0|" A40 " refs/heads/a\\0x|shallow 12|0", -EBADMSG,
		  "a bad shallow line" },
		{ "# service=git-receive-pack|0|0", 0, "no ref at all" },
		{ "# service=git-receive-pack|0|version 1|version 1|0", -EBADMSG, "version 1 twice" },
	};
	struct git_refs refs = { 0 };
	const char *why = NULL;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = adv_lines(cases[i].lines, "git-receive-pack", &refs, &why);

		tap_result(rc == cases[i].rc, "advertisement, %s: %d (%s)", cases[i].what, rc,
			   rc && why ? why : "ok");
		if (i == 0)
			tap_result(rc == 0 && refs.n == 2 && refs.advertised == 2 && refs.caps &&
					   !strcmp(refs.caps, "report-status") && refs.sorted &&
					   !strcmp(refs.refs[0].name, "refs/heads/b"),
				   "good advertisement: two refs sorted, capabilities");
		if (cases[i].rc == 0 && strstr(cases[i].what, "ignored"))
			tap_result(refs.n == 1 && refs.advertised == 1, "only the ref line counted");
		if (cases[i].rc == 0 && strstr(cases[i].what, "no ref"))
			tap_result(refs.empty && refs.n == 0, "no ref line: empty");
		git_refs_free(&refs);
	}

	/* Lengths: hex, 0003, over 65520, and a line of exactly 65520. */
	static const struct {
		const char *bytes;
		const char *what;
	} bad[] = {
		{ "00zz", "a length that is not hex" },
		{ "0003", "length 0003" },
		{ "fff1", "a length over 65520" },
		{ "ffff", "length ffff" },
		{ "-001", "a signed length" },
		{ " 01e", "a space in the length" },
		{ "0001", "a delimiter" },
		{ "0002", "a response end" },
		{ "0004", "an empty line" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (int m = WHOLE; m < NFEED; m++) {
			uint8_t buf[64];
			size_t len;
			int rc;

			len = (size_t)snprintf((char *)buf, sizeof(buf), "001f# service=git-receive-pack\n0000%s",
					       bad[i].bytes);
			rc = adv_run(buf, len, m, "git-receive-pack", 10, NULL, &refs, NULL);
			tap_result(rc == -EBADMSG, "advertisement, %s refused, %s", bad[i].what, feed_name[m]);
			git_refs_free(&refs);
		}
	}
	{
		size_t len = 35 + GIT_PKT_MAX + 4;
		uint8_t *buf = malloc(len);
		int rc;

		memcpy(buf, "001f# service=git-receive-pack\n0000", 35);
		memcpy(buf + 35, "fff0", 4);
		memcpy(buf + 39, A40 " refs/heads/", 52);
		memset(buf + 39 + 52, 'x', GIT_PKT_MAX - 4 - 52);
		memcpy(buf + 35 + GIT_PKT_MAX, "0000", 4);
		rc = adv_run(buf, len, RANDOM, "git-receive-pack", 10, NULL, &refs, NULL);
		tap_result(rc == 0 && refs.n == 1 && refs.refs[0].len == GIT_PKT_MAX - 4 - 41,
			   "a line of exactly 65520 bytes is read");
		git_refs_free(&refs);
		free(buf);
	}
}

/* ---- pkt-lines, ref names, capabilities ------------------------------------------------------------- */

static void test_pkt(void)
{
	enum git_pkt_type t;
	const uint8_t *d;
	size_t dl;

	tap_result(git_pkt_next((const uint8_t *)"0000", 4, &t, &d, &dl) == 4 && t == GIT_PKT_FLUSH, "0000 is a flush");
	tap_result(git_pkt_next((const uint8_t *)"0001", 4, &t, &d, &dl) == 4 && t == GIT_PKT_DELIM,
		   "0001 is a delimiter");
	tap_result(git_pkt_next((const uint8_t *)"0002", 4, &t, &d, &dl) == 4 && t == GIT_PKT_END,
		   "0002 is a response end");
	tap_result(git_pkt_next((const uint8_t *)"0003", 4, &t, &d, &dl) == -EBADMSG, "0003 is refused");
	tap_result(git_pkt_next((const uint8_t *)"0004", 4, &t, &d, &dl) == 4 && t == GIT_PKT_DATA && dl == 0,
		   "0004 is an empty line");
	tap_result(git_pkt_next((const uint8_t *)"0009hello", 9, &t, &d, &dl) == 9 && dl == 5 && !memcmp(d, "hello", 5),
		   "a line");
	tap_result(git_pkt_next((const uint8_t *)"000Ahello!", 10, &t, &d, &dl) == 10 && dl == 6,
		   "upper-case hex length (git reads it)");
	tap_result(git_pkt_next((const uint8_t *)"0009hell", 8, &t, &d, &dl) == -EAGAIN, "a cut line asks for more");
	tap_result(git_pkt_next((const uint8_t *)"00", 2, &t, &d, &dl) == -EAGAIN, "a cut length asks for more");
	tap_result(git_pkt_next((const uint8_t *)"0g", 2, &t, &d, &dl) == -EBADMSG, "a bad digit is refused at once");
	tap_result(git_pkt_next((const uint8_t *)"fff1", 4, &t, &d, &dl) == -EBADMSG, "65521 is refused");
	tap_result(git_pkt_next((const uint8_t *)"fff0", 4, &t, &d, &dl) == -EAGAIN, "65520 is a length");
}

static int check_ref_format(const char *name)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		execlp("git", "git", "check-ref-format", name, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st) == 0;
}

static void test_refnames(void)
{
	static const struct {
		const char *name;
		bool ok;
	} cases[] = {
		{ "refs/heads/main", true },      { "refs/heads/feature/x-1_2", true },
		{ "refs/tags/v1.0", true },       { "refs/heads/a.b", true },
		{ "refs/heads/@", true },         { "refs/heads/caf\xc3\xa9", true },
		{ "refs/heads/a@b", true },       { "refs/heads/x.locks", true },
		{ "refs/heads/{x}", true },       { "refs/heads/a}", true },
		{ "refs/x", true },               { "refs/heads/a..b", false },
		{ "refs/heads/x.lock", false },   { "refs/heads/x.lock/y", false },
		{ "refs/heads/@{", false },       { "refs/heads/a@{1}", false },
		{ "refs/heads/.hidden", false },  { "refs/heads/a/.b", false },
		{ "refs/heads/a/", false },       { "refs/heads//a", false },
		{ "refs/heads/a.", false },       { "refs/heads/a b", false },
		{ "refs/heads/a\tb", false },     { "refs/heads/a\x01", false },
		{ "refs/heads/a\x1f", false },    { "refs/heads/a\x7f", false },
		{ "refs/heads/a~1", false },      { "refs/heads/a^", false },
		{ "refs/heads/a:b", false },      { "refs/heads/a?", false },
		{ "refs/heads/a*", false },       { "refs/heads/a[", false },
		{ "refs/heads/a\\b", false },     { "refs/", false },
		{ "refs", false },                { "heads/main", false },
		{ "HEAD", false },                { "", false },
		{ "/refs/heads/a", false },       { "refs/.lock", false },
		{ "refs/heads/.lock", false },    { "refs//heads", false },
		{ "refs/heads/..", false },       { "refs/heads/.", false },
		{ "Refs/heads/a", false },        { "refs/heads/a.lock.", false },
	};
	bool agree = true;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *n = cases[i].name;
		int git;

		tap_result(git_refname_valid(n, strlen(n)) == cases[i].ok, "ref name '%s' is %s", n,
			   cases[i].ok ? "valid" : "refused");
		/* git's own check agrees, for names starting with refs/ (the rest this parser refuses by design). */
		if (!strncmp(n, "refs/", 5)) {
			git = check_ref_format(n);
			if (git != cases[i].ok) {
				agree = false;
				printf("# git check-ref-format disagrees on '%s'\n", n);
			}
		}
	}
	tap_result(agree, "git check-ref-format agrees on every refs/ name");
	tap_result(!git_refname_valid("refs/heads/a\0b", 14), "a NUL inside a ref");
	tap_result(!git_refname_valid(NULL, 0), "no name");
}

static void test_caps(void)
{
	const char *c = " report-status-v2 side-band-64k object-format=sha256 agent=git/2.39.5 quiet";
	size_t n = strlen(c), vl = 99;
	const char *v;

	v = git_cap_find(c, n, "object-format", &vl);
	tap_result(v && vl == 6 && !memcmp(v, "sha256", 6), "object-format=sha256 found");
	v = git_cap_find(c, n, "quiet", &vl);
	tap_result(v && vl == 0 && *v == '\0', "a bare capability at the end: \"\"");
	tap_result(!git_cap_find(c, n, "side-band", NULL), "side-band is not side-band-64k");
	tap_result(!git_cap_find(c, n, "agent=git", NULL), "no match inside a value");
	tap_result(!git_cap_find(c, n - 1, "quiet", NULL), "the length bounds the search");
	tap_result(!git_cap_find(NULL, 0, "quiet", NULL), "no capabilities");
	v = git_cap_find("a=1 a=2", 7, "a", &vl);
	tap_result(v && vl == 1 && *v == '1', "the first of two wins");
}

/* ---- packs built by hand ---------------------------------------------------------------------------- */

struct pb {
	uint8_t *buf;
	size_t len, cap;
	uint32_t count;
};

static void pb_put(struct pb *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 1024;
		b->buf = realloc(b->buf, b->cap);
	}
	memcpy(b->buf + b->len, d, n);
	b->len += n;
}

static void pb_begin(struct pb *b)
{
	memset(b, 0, sizeof(*b));
	pb_put(b, "PACK\0\0\0\2\0\0\0\0", 12);
}

static void pb_hdr(struct pb *b, int type, uint64_t size)
{
	uint8_t h[16];
	size_t n = 0;
	uint8_t c = (uint8_t)(type << 4 | (size & 15));

	size >>= 4;
	while (size) {
		h[n++] = c | 0x80;
		c = size & 0x7f;
		size >>= 7;
	}
	h[n++] = c;
	pb_put(b, h, n);
	b->count++;
}

static void pb_z(struct pb *b, const void *d, size_t n)
{
	uLongf zl = compressBound(n);
	uint8_t *z = malloc(zl);

	compress(z, &zl, d, n);
	pb_put(b, z, zl);
	free(z);
}

/* An object; its offset. */
static size_t pb_obj(struct pb *b, int type, const void *d, size_t n)
{
	size_t off = b->len;

	pb_hdr(b, type, n);
	pb_z(b, d, n);
	return off;
}

static size_t pb_ofs_delta(struct pb *b, size_t base, const void *delta, size_t n)
{
	size_t off = b->len, ofs = off - base;
	uint8_t e[16];
	int i = 15;

	pb_hdr(b, 6, n);
	e[i] = ofs & 127;
	while (ofs >>= 7)
		e[--i] = 128 | (--ofs & 127);
	pb_put(b, e + i, 16 - (size_t)i);
	pb_z(b, delta, n);
	return off;
}

static void pb_ref_delta(struct pb *b, const struct git_oid *base, const void *delta, size_t n)
{
	pb_hdr(b, 7, n);
	pb_put(b, base->id, base->len);
	pb_z(b, delta, n);
}

/* Writes the object count into the header. */
static void pb_count(struct pb *b)
{
	b->buf[8] = (uint8_t)(b->count >> 24);
	b->buf[9] = (uint8_t)(b->count >> 16);
	b->buf[10] = (uint8_t)(b->count >> 8);
	b->buf[11] = (uint8_t)b->count;
}

static void pb_end(struct pb *b, bool sha256)
{
	uint8_t sum[32];
	unsigned int l;

	pb_count(b);
	EVP_Digest(b->buf, b->len, sum, &l, sha256 ? EVP_sha256() : EVP_sha1(), NULL);
	pb_put(b, sum, l);
}

static struct git_oid commit_oid(const char *body, bool sha256)
{
	struct git_oid o = { 0 };
	char hdr[32];
	int h = snprintf(hdr, sizeof(hdr), "commit %zu", strlen(body)) + 1;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int l;

	EVP_DigestInit_ex(c, sha256 ? EVP_sha256() : EVP_sha1(), NULL);
	EVP_DigestUpdate(c, hdr, (size_t)h);
	EVP_DigestUpdate(c, body, strlen(body));
	EVP_DigestFinal_ex(c, o.id, &l);
	EVP_MD_CTX_free(c);
	o.len = (uint8_t)l;
	return o;
}

static void hex_of(const struct git_oid *o, char *out)
{
	for (size_t i = 0; i < o->len; i++)
		snprintf(out + 2 * i, 3, "%02x", o->id[i]);
	out[2 * o->len] = '\0';
}

struct scan_sum {
	int rc;
	const char *why;
	size_t ncommits, ofs, ref, cdeltas, skipped, evicted, bad;
};

static int scan_run(const uint8_t *buf, size_t len, bool sha256, enum feed mode, struct git_pack_scan *s,
		    struct scan_sum *sum)
{
	size_t off = 0;
	int rc = -EAGAIN;

	if (sum)
		memset(sum, 0, sizeof(*sum));
	if (git_pack_scan_init(s, sha256))
		return -ENOMEM;
	while (off < len && (rc == -EAGAIN || rc == 0)) {
		size_t n = chunk(mode, len - off);

		rc = git_pack_scan_feed(s, buf + off, n);
		off += n;
	}
	if (rc == -EAGAIN)
		rc = git_pack_scan_end(s);
	if (sum) {
		sum->rc = rc;
		sum->why = s->why;
		sum->ncommits = s->ncommits;
		sum->ofs = s->ofs_deltas;
		sum->ref = s->ref_deltas;
		sum->cdeltas = s->commit_deltas;
		sum->skipped = s->skipped_deltas;
		sum->evicted = s->evicted_bases;
		sum->bad = s->bad_commits;
	}
	return rc;
}

/* The pack parsed three ways: the answers must match each other. `s` keeps the whole feed's scan. */
static int scan_all_ways(const uint8_t *buf, size_t len, bool sha256, struct git_pack_scan *s, bool *same)
{
	struct scan_sum a, b;

	scan_run(buf, len, sha256, WHOLE, s, &a);
	*same = true;
	for (int m = RANDOM; m < NFEED; m++) {
		struct git_pack_scan t;

		scan_run(buf, len, sha256, m, &t, &b);
		if (memcmp(&a, &b, sizeof(a)))
			*same = false;
		git_pack_scan_free(&t);
	}
	return a.rc;
}

static void test_pack_synthetic(void)
{
	char c1[512], c2[512], hx[65];
	struct git_oid o1, o2, old = oid_of_hex("3333333333333333333333333333333333333333"), tree;
	struct pb b;
	struct git_pack_scan s;
	bool same;
	int rc;

	tree = oid_of_hex("4444444444444444444444444444444444444444");
	hex_of(&tree, hx);
	snprintf(c1, sizeof(c1), "tree %s\nparent 3333333333333333333333333333333333333333\nauthor A <a@x> 1 +0000\n"
		 "committer A <a@x> 1 +0000\n\nfirst, with a long enough message to be worth a delta\n", hx);
	o1 = commit_oid(c1, false);
	hex_of(&o1, hx);
	snprintf(c2, sizeof(c2), "tree 4444444444444444444444444444444444444444\nparent %s\nauthor A <a@x> 1 +0000\n"
		 "committer A <a@x> 1 +0000\n\nfirst, with a long enough message to be worth a delta!\n", hx);
	o2 = commit_oid(c2, false);

	/* c2 as an OFS_DELTA on c1: copy all of c1 but its last byte, insert "!\n" and c2's parent line. */
	{
		uint8_t d[256];
		size_t n = 0, l1 = strlen(c1), l2 = strlen(c2);
		size_t plen = 6 + 1 + 40 + 1; /* "parent <hex>\n" */

		d[n++] = (uint8_t)(l1 & 0x7f) | (l1 > 127 ? 0x80 : 0);
		if (l1 > 127)
			d[n++] = (uint8_t)(l1 >> 7);
		d[n++] = (uint8_t)(l2 & 0x7f) | (l2 > 127 ? 0x80 : 0);
		if (l2 > 127)
			d[n++] = (uint8_t)(l2 >> 7);
		/* copy "tree <hex>\n" (46 bytes) */
		d[n++] = 0x80 | 0x10;
		d[n++] = 46;
		/* insert the parent line */
		d[n++] = (uint8_t)plen;
		memcpy(d + n, c2 + 46, plen);
		n += plen;
		/* copy the rest of c1 after its parent line, without the final "\n" */
		size_t from = 46 + plen, sz = l1 - from - 1;

		d[n++] = 0x80 | 0x01 | 0x10;
		d[n++] = (uint8_t)from;
		d[n++] = (uint8_t)sz;
		/* insert "!\n" */
		d[n++] = 2;
		memcpy(d + n, "!\n", 2);
		n += 2;

		pb_begin(&b);
		size_t base = pb_obj(&b, 1, c1, strlen(c1));
		pb_obj(&b, 3, "a blob\n", 7);
		pb_ofs_delta(&b, base, d, n);
		pb_end(&b, false);
		rc = scan_all_ways(b.buf, b.len, false, &s, &same);
		tap_result(rc == 0 && same, "hand-made pack with an OFS_DELTA commit: parsed alike three ways (%s)",
			   s.why ? s.why : "ok");
		tap_result(s.ncommits == 2 && s.commit_deltas == 1 && s.ofs_deltas == 1,
			   "both commits, one from a delta");
		tap_result(git_pack_reaches(&s, &o1, &o2) && git_pack_reaches(&s, &old, &o2) &&
				   git_pack_reaches(&s, &old, &o1) && git_pack_reaches(&s, &o2, &o2),
			   "the delta's commit has the right name and reaches through its parent");
		tap_result(!git_pack_reaches(&s, &o2, &o1) && !git_pack_reaches(&s, &tree, &o2),
			   "no walk against the parent links");
		git_pack_scan_free(&s);

		/* Proofs before the end: from the commits read so far, never from ones still to come. */
		git_pack_scan_init(&s, false);
		rc = git_pack_scan_feed(&s, b.buf, b.len / 2);
		tap_result(rc == -EAGAIN && !git_pack_reaches_so_far(&s, &old, &o2) && !git_pack_reaches(&s, &old, &o1),
			   "half a pack: the commit still to come proves nothing");
		rc = git_pack_scan_feed(&s, b.buf + b.len / 2, b.len - 20 - b.len / 2);
		tap_result(rc == -EAGAIN && git_pack_reaches_so_far(&s, &old, &o2) && git_pack_reaches_so_far(&s, &o1, &o2) &&
				   !git_pack_reaches_so_far(&s, &o2, &o1) && !git_pack_reaches(&s, &old, &o2),
			   "all but the checksum: the walk so far proves it, the end-of-pack walk waits for the checksum");
		git_pack_scan_free(&s);

		/* The same delta as a REF_DELTA, and against a base not in the pack (thin). */
		free(b.buf);
		pb_begin(&b);
		pb_obj(&b, 1, c1, strlen(c1));
		pb_ref_delta(&b, &o1, d, n);
		pb_ref_delta(&b, &tree, d, n);
		pb_end(&b, false);
		rc = scan_all_ways(b.buf, b.len, false, &s, &same);
		tap_result(rc == 0 && same && s.ncommits == 2 && s.commit_deltas == 1 && s.ref_deltas == 2 &&
				   s.skipped_deltas == 1 && git_pack_reaches(&s, &old, &o2),
			   "REF_DELTA on a commit resolved; one on a base outside the pack skipped");
		git_pack_scan_free(&s);
		free(b.buf);

		/* A copy past the base's end. */
		uint8_t bad[64];
		size_t bn = 0;

		bad[bn++] = d[0];
		if (l1 > 127)
			bad[bn++] = d[1];
		bad[bn++] = 10;
		bad[bn++] = 0x80 | 0x01 | 0x10;
		bad[bn++] = 250;
		bad[bn++] = 10;
		pb_begin(&b);
		base = pb_obj(&b, 1, c1, strlen(c1));
		pb_ofs_delta(&b, base, bad, bn);
		pb_end(&b, false);
		rc = scan_all_ways(b.buf, b.len, false, &s, &same);
		tap_result(rc == -EBADMSG && same && s.why && strstr(s.why, "bounds"),
			   "a delta copying past its base (%s)", s.why ? s.why : "");
		git_pack_scan_free(&s);
		free(b.buf);

		/* Opcode 0, and a wrong base size. */
		bad[bn - 3] = 0;
		pb_begin(&b);
		base = pb_obj(&b, 1, c1, strlen(c1));
		pb_ofs_delta(&b, base, bad, bn - 2);
		pb_end(&b, false);
		rc = scan_all_ways(b.buf, b.len, false, &s, &same);
		tap_result(rc == -EBADMSG && same, "a delta with instruction 0 (%s)", s.why ? s.why : "");
		git_pack_scan_free(&s);
		free(b.buf);
		bad[0] = 5;
		bad[1] = 10;
		pb_begin(&b);
		base = pb_obj(&b, 1, c1, strlen(c1));
		pb_ofs_delta(&b, base, bad, 2);
		pb_end(&b, false);
		rc = scan_all_ways(b.buf, b.len, false, &s, &same);
		tap_result(rc == -EBADMSG && same, "a delta naming the wrong base size (%s)", s.why ? s.why : "");
		git_pack_scan_free(&s);
		free(b.buf);
	}

	/* Sizes that lie: the header says more, or less, than the data inflates to. */
	for (int d = -1; d <= 1; d += 2) {
		pb_begin(&b);
		pb_hdr(&b, 3, (uint64_t)(7 + d));
		pb_z(&b, "a blob\n", 7);
		pb_end(&b, false);
		rc = scan_all_ways(b.buf, b.len, false, &s, &same);
		tap_result(rc == -EBADMSG && same && s.why && strstr(s.why, "inflates"),
			   "a blob %s than announced (%s)", d < 0 ? "larger" : "smaller", s.why ? s.why : "");
		git_pack_scan_free(&s);
		free(b.buf);
	}

	/* Types 0 and 5, a bad magic, version 4, a huge size, a base offset before the pack. */
	static const struct {
		const char *what;
		uint8_t bytes[24];
		size_t n;
	} heads[] = {
		{ "type 0", { 'P', 'A', 'C', 'K', 0, 0, 0, 2, 0, 0, 0, 1, 0x05 }, 13 },
		{ "type 5", { 'P', 'A', 'C', 'K', 0, 0, 0, 2, 0, 0, 0, 1, 0x55 }, 13 },
		{ "magic PACX", { 'P', 'A', 'C', 'X', 0, 0, 0, 2, 0, 0, 0, 1 }, 12 },
		{ "version 4", { 'P', 'A', 'C', 'K', 0, 0, 0, 4, 0, 0, 0, 1 }, 12 },
		{ "version 1", { 'P', 'A', 'C', 'K', 0, 0, 0, 1, 0, 0, 0, 1 }, 12 },
		{ "an object size over 64 bits",
		  { 'P', 'A', 'C', 'K', 0, 0, 0, 2, 0, 0, 0, 1, 0xb0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		    0xff, 0x7f },
		  23 },
		{ "a base before the pack", { 'P', 'A', 'C', 'K', 0, 0, 0, 2, 0, 0, 0, 1, 0x65, 0x7f }, 14 },
		{ "a base offset of 0", { 'P', 'A', 'C', 'K', 0, 0, 0, 2, 0, 0, 0, 1, 0x65, 0x00 }, 14 },
		{ "a commit over 1 MiB",
		  { 'P', 'A', 'C', 'K', 0, 0, 0, 2, 0, 0, 0, 1, 0x90, 0x80, 0x80, 0x80, 0x01 },
		  17 },
	};
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		rc = scan_all_ways(heads[i].bytes, heads[i].n, false, &s, &same);
		tap_result((rc == -EBADMSG || (rc == -E2BIG && strstr(heads[i].what, "MiB"))) && same && s.why,
			   "pack with %s refused (%d, %s)", heads[i].what, rc, s.why ? s.why : "");
		git_pack_scan_free(&s);
	}

	/* An empty pack (a push of commits the upstream has), and nothing at all. */
	pb_begin(&b);
	pb_end(&b, false);
	rc = scan_all_ways(b.buf, b.len, false, &s, &same);
	tap_result(rc == 0 && same && s.done && s.ncommits == 0, "an empty pack");
	git_pack_scan_free(&s);
	free(b.buf);
	git_pack_scan_init(&s, false);
	tap_result(git_pack_scan_end(&s) == 0 && !git_pack_reaches(&s, &old, &old),
		   "no pack at all: fine, proves nothing");
	git_pack_scan_free(&s);
	git_pack_scan_free(&s);
	memset(&s, 0, sizeof(s));
	git_pack_scan_free(&s);
	tap_result(git_pack_scan_end(&s) == 0 && !git_pack_reaches(&s, &old, &old),
		   "a zeroed scan: freed, ended, nothing reached");

	/* A malformed commit (no tree line) proves nothing, even though its parent line names the old tip. */
	{
		const char *bogus = "parent 3333333333333333333333333333333333333333\n\nno tree\n";
		struct git_oid ob = commit_oid(bogus, false);

		pb_begin(&b);
		pb_obj(&b, 1, bogus, strlen(bogus));
		pb_end(&b, false);
		rc = scan_all_ways(b.buf, b.len, false, &s, &same);
		tap_result(rc == 0 && same && s.bad_commits == 1 && !git_pack_reaches(&s, &old, &ob),
			   "a commit git would call bogus proves nothing");
		git_pack_scan_free(&s);
		free(b.buf);
	}

	/* A sha256 pack by hand: its names and checksum are SHA-256. */
	{
		const char *body = "tree 4444444444444444444444444444444444444444444444444444444444444444\n"
				   "parent 5555555555555555555555555555555555555555555555555555555555555555\n"
				   "author A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\n\nsha256\n";
		struct git_oid on = commit_oid(body, true),
			       op = oid_of_hex("5555555555555555555555555555555555555555555555555555555555555555");

		pb_begin(&b);
		pb_obj(&b, 1, body, strlen(body));
		pb_end(&b, true);
		rc = scan_all_ways(b.buf, b.len, true, &s, &same);
		tap_result(rc == 0 && same && git_pack_reaches(&s, &op, &on) && !git_pack_reaches(&s, &old, &on),
			   "hand-made sha256 pack");
		git_pack_scan_free(&s);
		rc = scan_all_ways(b.buf, b.len, false, &s, &same);
		tap_result(rc == -EBADMSG && same, "a sha256 pack read as sha1 fails its checksum (%s)",
			   s.why ? s.why : "");
		git_pack_scan_free(&s);
		free(b.buf);
	}
}

/* A commit of about `size` bytes whose parent is `parent` (hex), padded in its message. */
static char *big_commit(const char *parent, size_t size, int tag)
{
	char *c = malloc(size + 256);
	int n = snprintf(c, 256, "tree 4444444444444444444444444444444444444444\nparent %s\nauthor A <a@x> 1 +0000\n"
			 "committer A <a@x> 1 +0000\n\n%d ", parent, tag);

	memset(c + n, 'm', size - (size_t)n - 1);
	c[size - 1] = '\n';
	c[size] = '\0';
	return c;
}

static void test_pack_bounds(void)
{
	struct git_pack_scan s;
	struct pb b;
	bool same;
	int rc;

	/*
	 * 17 commits of 1,000,000 bytes overflow the 16 MiB cache: a delta on the first finds it evicted
	 * (unresolved, counted, not an error), a delta on the last resolves.
	 */
	{
		size_t offs[17];
		char hx[41], prev[41] = "3333333333333333333333333333333333333333";
		uint8_t d[16];
		size_t n = 0, sz = 1000000;
		struct git_oid last = { 0 };

		pb_begin(&b);
		for (int i = 0; i < 17; i++) {
			char *c = big_commit(prev, sz, i);

			offs[i] = pb_obj(&b, 1, c, strlen(c));
			last = commit_oid(c, false);
			hex_of(&last, hx);
			memcpy(prev, hx, 41);
			free(c);
		}
		/* a delta copying its base whole: base size, result size, copy 0..sz in 0x10000 pieces */
		for (uint64_t v = sz, k = 0; k < 2; k++, v = sz) {
			while (v >= 0x80) {
				d[n++] = (uint8_t)(v | 0x80);
				v >>= 7;
			}
			d[n++] = (uint8_t)v;
		}
		uint8_t *delta = malloc(n + (sz / 0x10000 + 1) * 8);

		memcpy(delta, d, n);
		for (size_t off = 0; off < sz; off += 0x10000) {
			size_t len = sz - off < 0x10000 ? sz - off : 0x10000;

			delta[n++] = 0x80 | 0x02 | 0x04 | 0x10 | 0x20;
			delta[n++] = (uint8_t)(off >> 8);
			delta[n++] = (uint8_t)(off >> 16);
			delta[n++] = (uint8_t)len;
			delta[n++] = (uint8_t)(len >> 8);
		}
		pb_ofs_delta(&b, offs[0], delta, n);
		pb_ofs_delta(&b, offs[16], delta, n);
		pb_end(&b, false);
		rc = scan_run(b.buf, b.len, false, RANDOM, &s, NULL);
		tap_result(rc == 0 && s.ncommits == 18 && s.evicted_bases == 1 && s.commit_deltas == 1,
			   "a delta on a commit the cache let go: unresolved and counted (%s)", s.why ? s.why : "ok");
		tap_result(git_pack_reaches(&s, &last, &last), "the duplicate commit from the resolved delta is known");
		git_pack_scan_free(&s);
		free(delta);
		free(b.buf);
	}

	/* A delta on a commit announcing more than 2 MiB. */
	{
		const char *c = "tree 4444444444444444444444444444444444444444\n\nroot\n";
		uint8_t e[2] = { 0x0a };

		pb_begin(&b);
		size_t base = pb_obj(&b, 1, c, strlen(c));

		size_t at = b.len;

		pb_hdr(&b, 6, 3u << 20);
		e[0] = (uint8_t)(at - base);
		pb_put(&b, e, 1);
		pb_count(&b);
		rc = scan_all_ways(b.buf, b.len, false, &s, &same);
		tap_result(rc == -E2BIG && same, "a 3 MiB delta on a commit: E2BIG (%s)", s.why ? s.why : "");
		git_pack_scan_free(&s);
		free(b.buf);
	}

	/* More commits than the gateway checks. */
	{
		char body[128];

		pb_begin(&b);
		for (int i = 0; i <= GIT_PACK_MAX_COMMITS; i++) {
			int l =
			    snprintf(body, sizeof(body), "tree 4444444444444444444444444444444444444444\n\n%d\n", i);

			pb_obj(&b, 1, body, (size_t)l);
		}
		pb_end(&b, false);
		rc = scan_run(b.buf, b.len, false, WHOLE, &s, NULL);
		tap_result(rc == -E2BIG && s.ncommits == GIT_PACK_MAX_COMMITS, "100001 commits: E2BIG (%s)",
			   s.why ? s.why : "");
		git_pack_scan_free(&s);
		free(b.buf);
	}

	/*
	 * A blob inflating past 1 GiB: the bomb is stopped, not inflated to its end. Built from one fully
	 * flushed deflate block of 1 MiB of zeros, repeated: each such block stands alone.
	 */
	{
		static uint8_t zeros[1 << 20], o1[8192], o2[8192], fin[64];
		z_stream z = { 0 };
		size_t n1, n2, nf;
		uLong adler = adler32(0, NULL, 0), one = adler32(adler, zeros, sizeof(zeros));

		deflateInit(&z, 9);
		z.next_in = zeros;
		z.avail_in = sizeof(zeros);
		z.next_out = o1;
		z.avail_out = sizeof(o1);
		deflate(&z, Z_FULL_FLUSH);
		n1 = sizeof(o1) - z.avail_out;
		z.next_in = zeros;
		z.avail_in = sizeof(zeros);
		z.next_out = o2;
		z.avail_out = sizeof(o2);
		deflate(&z, Z_FULL_FLUSH);
		n2 = sizeof(o2) - z.avail_out;
		z.next_out = fin;
		z.avail_out = sizeof(fin);
		deflate(&z, Z_FINISH);
		nf = sizeof(fin) - z.avail_out;
		deflateEnd(&z);
		pb_begin(&b);
		pb_hdr(&b, 3, 1100ull << 20);
		pb_put(&b, o1, n1);
		for (int i = 1; i < 1100; i++)
			pb_put(&b, o2, n2);
		for (int i = 0; i < 1100; i++)
			adler = adler32_combine(adler, one, sizeof(zeros));
		fin[nf - 4] = (uint8_t)(adler >> 24);
		fin[nf - 3] = (uint8_t)(adler >> 16);
		fin[nf - 2] = (uint8_t)(adler >> 8);
		fin[nf - 1] = (uint8_t)adler;
		pb_put(&b, fin, nf);
		pb_count(&b);
		rc = scan_run(b.buf, b.len, false, WHOLE, &s, NULL);
		tap_result(rc == -E2BIG && s.why && strstr(s.why, "inflates"), "a zlib bomb (%zu bytes): E2BIG (%s)",
			   b.len, s.why ? s.why : "");
		git_pack_scan_free(&s);
		/* The same stream, as 1000 MiB, is a valid blob: it is inflated to its end and checked. */
		b.len = 0;
		b.count = 0;
		pb_put(&b, "PACK\0\0\0\2\0\0\0\0", 12);
		pb_hdr(&b, 3, 1000ull << 20);
		pb_put(&b, o1, n1);
		adler = adler32(0, NULL, 0);
		for (int i = 0; i < 1000; i++)
			adler = adler32_combine(adler, one, sizeof(zeros));
		for (int i = 1; i < 1000; i++)
			pb_put(&b, o2, n2);
		fin[nf - 4] = (uint8_t)(adler >> 24);
		fin[nf - 3] = (uint8_t)(adler >> 16);
		fin[nf - 2] = (uint8_t)(adler >> 8);
		fin[nf - 1] = (uint8_t)adler;
		pb_put(&b, fin, nf);
		pb_end(&b, false);
		rc = scan_run(b.buf, b.len, false, WHOLE, &s, NULL);
		tap_result(rc == 0, "1000 MiB of zeros in one blob: read (%s)", s.why ? s.why : "ok");
		git_pack_scan_free(&s);
		free(b.buf);
	}
}

/* ---- real packs ------------------------------------------------------------------------------------- */

/* Checks every commit of `revs` (git rev-list --parents output) against the scan: present, parents reached. */
static bool scan_matches_revlist(struct git_pack_scan *s, const char *revs, size_t *ncommits)
{
	char *copy = strdup(revs), *save = NULL, *line;
	bool ok = true;

	*ncommits = 0;
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *sp, *rest;
		struct git_oid c = oid_of_hex(line);

		(*ncommits)++;
		if (!git_pack_reaches(s, &c, &c)) {
			printf("# commit %.12s missing\n", line);
			ok = false;
		}
		for (rest = line; (sp = strchr(rest, ' ')); rest = sp + 1) {
			struct git_oid p = oid_of_hex(sp + 1);

			if (!git_pack_reaches(s, &p, &c)) {
				printf("# parent %.12s of %.12s not reached\n", sp + 1, line);
				ok = false;
			}
		}
	}
	free(copy);
	return ok;
}

/* Commits and commit deltas in a pack, as git verify-pack -v counts them. */
static void verify_pack_counts(const char *repo, const char *idx, size_t *commits, size_t *deltas)
{
	uint8_t *out = sh_out(NULL, "git -C %s verify-pack -v '%s/%s'", repo, tmp, idx);
	char *save = NULL, *line;

	*commits = *deltas = 0;
	for (line = out ? strtok_r((char *)out, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
		char id[80], type[16], base[80];
		unsigned long a, b, c, depth;
		int n = sscanf(line, "%79s %15s %lu %lu %lu %lu %79s", id, type, &a, &b, &c, &depth, base);

		if (n >= 5 && !strcmp(type, "commit")) {
			(*commits)++;
			if (n == 7)
				(*deltas)++;
		}
	}
	free(out);
}

/* A pack written by pack-objects from `revs` (stdin of --revs) with `opts`; its bytes and its .idx name. */
static uint8_t *make_pack(const char *repo, const char *revs, const char *opts, size_t *len, char *idx, size_t idxsz)
{
	uint8_t *hash =
	    sh_out(NULL, "printf '%%s\\n' %s | git -C %s pack-objects --revs -q %s ../pk", revs, repo, opts);
	char name[160];
	uint8_t *data;

	if (!hash)
		return NULL;
	hash[strcspn((char *)hash, "\n")] = '\0';
	snprintf(name, sizeof(name), "pk-%s.pack", (char *)hash);
	snprintf(idx, idxsz, "pk-%s.idx", (char *)hash);
	free(hash);
	data = slurp(name, len);
	return data;
}

static void pack_check(const char *what, const char *repo, const char *revs, const char *opts, bool sha256,
		       const char *revlist_args, bool want_ofs, bool want_ref)
{
	char idx[160];
	size_t len, n = 0, vp_commits, vp_deltas;
	uint8_t *pack = make_pack(repo, revs, opts, &len, idx, sizeof(idx));
	uint8_t *rl;
	struct git_pack_scan s;
	bool same;
	int rc;

	if (!pack) {
		tap_result(false, "%s: pack-objects ran", what);
		return;
	}
	rc = scan_all_ways(pack, len, sha256, &s, &same);
	tap_result(rc == 0 && s.done, "%s: %zu bytes verified (%s)", what, len, s.why ? s.why : "ok");
	tap_result(same, "%s: whole, random chunks and single bytes agree", what);
	rl = sh_out(NULL, "git -C %s rev-list --parents %s", repo, revlist_args);
	same = rl && scan_matches_revlist(&s, (char *)rl, &n);
	free(rl);
	tap_result(same && n == s.ncommits,
		   "%s: the %zu commits rev-list lists, each with its parents (scan: %zu)", what, n, s.ncommits);
	verify_pack_counts(repo, idx, &vp_commits, &vp_deltas);
	tap_result(vp_commits == s.ncommits && vp_deltas == s.commit_deltas && s.evicted_bases == 0,
		   "%s: git verify-pack counts %zu commits, %zu of them deltas, as the scan does", what, vp_commits,
		   vp_deltas);
	if (want_ofs)
		tap_result(s.ofs_deltas > 0 && s.commit_deltas > 0 && s.ref_deltas == 0,
			   "%s: commits stored as OFS_DELTA (%zu commit deltas)", what, s.commit_deltas);
	if (want_ref)
		tap_result(s.ref_deltas > 0 && s.commit_deltas > 0 && s.ofs_deltas == 0,
			   "%s: commits stored as REF_DELTA (%zu commit deltas)", what, s.commit_deltas);
	git_pack_scan_free(&s);

	/* The same pack, broken. */
	{
		uint8_t *bad = malloc(len + 1);
		struct git_pack_scan t;

		memcpy(bad, pack, len);
		bad[len - 1] ^= 1;
		rc = scan_all_ways(bad, len, sha256, &t, &same);
		tap_result(rc == -EBADMSG && same && t.why && strstr(t.why, "checksum"),
			   "%s: a flipped checksum byte (%s)", what, t.why ? t.why : "");
		git_pack_scan_free(&t);
		bad[len - 1] ^= 1;
		bad[len / 2] ^= 0x40;
		rc = scan_all_ways(bad, len, sha256, &t, &same);
		tap_result(rc < 0 && rc != -EAGAIN && same, "%s: a flipped byte in the middle (%s)", what,
			   t.why ? t.why : "");
		git_pack_scan_free(&t);
		bad[len / 2] ^= 0x40;
		bad[len] = 'x';
		rc = scan_all_ways(bad, len + 1, sha256, &t, &same);
		tap_result(rc == -EBADMSG && same && t.done, "%s: a byte after the checksum (%s)", what,
			   t.why ? t.why : "");
		git_pack_scan_free(&t);
		rc = scan_all_ways(bad, len - 1, sha256, &t, &same);
		tap_result(rc == -EBADMSG && same && t.why && !strcmp(t.why, "truncated pack"), "%s: cut by one byte",
			   what);
		git_pack_scan_free(&t);
		bool cuts = true;

		for (size_t cut = 1; cut < len; cut += 1 + len / 97) {
			rc = scan_run(pack, cut, sha256, WHOLE, &t, NULL);
			cuts = cuts && rc == -EBADMSG && !t.done;
			git_pack_scan_free(&t);
		}
		tap_result(cuts, "%s: every cut is a truncated pack", what);
		free(bad);
	}
	free(pack);
}

static void test_pack_real(void)
{
	struct git_oid tip, m5, m6;
	char revs[256], *hash;
	size_t len;
	uint8_t *pack;
	struct git_pack_scan s;
	bool same;
	int rc;

	pack_check("whole history, OFS_DELTA", "big", "main side",
		   "--window=250 --depth=50 --delta-base-offset --no-reuse-delta", false, "main side", true, false);
	pack_check("whole history, REF_DELTA", "big", "main side", "--window=250 --depth=50 --no-reuse-delta", false,
		   "main side", false, true);
	pack_check("sha256 history", "s256big", "main", "--window=250 --depth=50 --delta-base-offset --no-reuse-delta",
		   true, "main", true, false);
	pack_check("default pack-objects", "a", "", "--all", false, "--all", false, false);

	/* A thin pack of the last five commits: it proves main~5 -> main, not main~6 -> main. */
	/* commits 295 to 299: no merge among them */
	tip = rev("big", "main~1");
	m5 = rev("big", "main~6");
	m6 = rev("big", "main~7");
	snprintf(revs, sizeof(revs), "main~1 ^main~6");
	hash =
	    (char *)sh_out(NULL,
			   "printf '%%s\\n' %s | git -C big pack-objects --revs --thin --stdout -q --delta-base-offset "
			   "--no-reuse-delta > thin.pack && echo ok",
			   revs);
	pack = slurp("thin.pack", &len);
	rc = pack && hash ? scan_all_ways(pack, len, false, &s, &same) : -1;
	tap_result(rc == 0 && same && s.ncommits == 5, "thin pack of five commits (%zu)", s.ncommits);
	tap_result(s.ref_deltas > 0 && s.skipped_deltas > 0,
		   "thin pack: REF_DELTAs on objects outside the pack skipped (%zu of %zu)", s.skipped_deltas,
		   s.ref_deltas);
	tap_result(git_pack_reaches(&s, &m5, &tip), "thin pack: its base reaches its tip (a fast-forward)");
	tap_result(!git_pack_reaches(&s, &m6, &tip), "thin pack: the commit before its base is beyond the pack");
	tap_result(!git_pack_reaches(&s, &tip, &m5), "thin pack: its base is not in the pack");
	git_pack_scan_free(&s);
	free(pack);
	free(hash);
}

/* ---- pushes ----------------------------------------------------------------------------------------- */

/* Emulates the gateway: commands, then the pack from where they end, both fed in pieces. */
static int push_flow(const uint8_t *buf, size_t len, enum feed mode, struct git_push *p, struct git_pack_scan *s,
		     size_t *pack_at, int *pack_rc)
{
	size_t off = 0, used = 0;
	int rc = -EAGAIN, prc = -EAGAIN;
	bool commands = false;

	git_push_init(p);
	memset(s, 0, sizeof(*s));
	*pack_at = 0;
	*pack_rc = 1;
	while (off < len) {
		size_t n = chunk(mode, len - off);
		const uint8_t *d = buf + off;

		off += n;
		if (!commands) {
			rc = git_push_feed(p, d, n, &used);
			if (rc == -EAGAIN) {
				if (used != n)
					return -9999;
				continue;
			}
			if (rc)
				return rc;
			commands = true;
			*pack_at = off - n + used;
			if (git_pack_scan_init(s, p->sha256))
				return -ENOMEM;
			d += used;
			n -= used;
		}
		if (n) {
			prc = git_pack_scan_feed(s, d, n);
			if (prc != -EAGAIN)
				break;
		}
	}
	if (!commands)
		return git_push_end(p);
	if (prc == -EAGAIN)
		prc = git_pack_scan_end(s);
	*pack_rc = prc;
	return 0;
}

static bool allow_heads(void *arg, const char *ref, size_t len)
{
	(void)arg;
	return (len > 11 && !memcmp(ref, "refs/heads/", 11)) || (len > 10 && !memcmp(ref, "refs/tags/", 10));
}

static bool allow_none(void *arg, const char *ref, size_t len)
{
	(void)arg;
	(void)ref;
	(void)len;
	return false;
}

/* The receive-pack advertisement of `repo` now, parsed. */
static void advertised(const char *repo, struct git_refs *out)
{
	size_t raw_len, len;
	uint8_t *raw = sh_out(&raw_len, "git receive-pack --advertise-refs %s", repo);
	uint8_t *buf = http_adv("git-receive-pack", raw, raw_len, &len);

	if (adv_run(buf, len, WHOLE, "git-receive-pack", 10000, NULL, out, NULL))
		out->incomplete = true;
	free(buf);
	free(raw);
}

/* Runs `git push` from `from` to `to` through the capturing receive-pack; the body it sent. */
static uint8_t *capture_push(const char *from, const char *to, const char *args, size_t *len)
{
	sh("rm -f cap");
	if (sh("CAPTURE='%s/cap' git -C %s push -q --receive-pack='%s/rp.sh' '%s/%s' %s 2>/dev/null", tmp, from, tmp,
	       tmp, to, args))
		return NULL;
	return slurp("cap", len);
}

struct push_case {
	struct git_push p;
	struct git_pack_scan s;
	struct git_refs adv;
	int rc, pack_rc;
	size_t pack_at;
	bool same;
};

/* Captures a push and parses it three ways, with the advertisement the client saw. */
static bool push_case(struct push_case *pc, const char *what, const char *from, const char *to, const char *args)
{
	size_t len;
	uint8_t *body;

	memset(pc, 0, sizeof(*pc));
	advertised(to, &pc->adv);
	body = capture_push(from, to, args, &len);
	if (!body) {
		tap_result(false, "%s: git push ran", what);
		return false;
	}
	pc->rc = push_flow(body, len, WHOLE, &pc->p, &pc->s, &pc->pack_at, &pc->pack_rc);
	pc->same = true;
	for (int m = RANDOM; m < NFEED; m++) {
		struct git_push p2;
		struct git_pack_scan s2;
		size_t at;
		int prc, rc = push_flow(body, len, m, &p2, &s2, &at, &prc);

		if (rc != pc->rc || prc != pc->pack_rc || at != pc->pack_at || p2.ncmds != pc->p.ncmds ||
		    s2.ncommits != pc->s.ncommits || p2.push_options != pc->p.push_options)
			pc->same = false;
		for (size_t i = 0; i < p2.ncmds && i < pc->p.ncmds; i++)
			if (strcmp(p2.cmds[i].ref, pc->p.cmds[i].ref) ||
			    !git_oid_equal(&p2.cmds[i].new_oid, &pc->p.cmds[i].new_oid))
				pc->same = false;
		git_push_free(&p2);
		git_pack_scan_free(&s2);
	}
	/* With push options, their lines come before the pack: the gateway refuses such a push unread. */
	tap_result(pc->rc == 0 && (pc->pack_rc == 0 || pc->p.push_options) && pc->same,
		   "%s: commands (%zu) and pack (%zu commits) read alike three ways", what, pc->p.ncmds,
		   pc->s.ncommits);
	free(body);
	return pc->rc == 0;
}

static void push_case_free(struct push_case *pc)
{
	git_push_free(&pc->p);
	git_push_free(&pc->p);
	git_pack_scan_free(&pc->s);
	git_refs_free(&pc->adv);
}

static enum git_push_verdict verdict(struct push_case *pc, size_t i, bool force, bool with_adv)
{
	const char *why;

	return git_push_check(&pc->p.cmds[i], force, allow_heads, NULL, with_adv ? &pc->adv : NULL, &pc->s, &why);
}

static void test_push_real(void)
{
	struct push_case pc;
	struct git_oid before, after;
	struct git_refs stale_adv = { 0 };
	enum git_push_verdict v;
	const char *why;

	sh("git init -q --bare R.git");
	sh("git clone -q a work && git -C work push -q ../R.git main");

	/* A fast-forward of three commits. */
	before = rev("R.git", "main");
	sh("cd work && for i in 1 2 3; do echo $i >> f && git add f && git commit -q -m ff$i; done");
	after = rev("work", "main");
	if (push_case(&pc, "fast-forward push", "work", "R.git", "main")) {
		struct git_push_cmd *c = &pc.p.cmds[0];

		tap_result(pc.p.ncmds == 1 && !strcmp(c->ref, "refs/heads/main") &&
			       git_oid_equal(&c->old_oid, &before) && git_oid_equal(&c->new_oid, &after) &&
			       !pc.p.sha256 && !pc.p.push_options &&
			       git_cap_find(pc.p.caps, pc.p.caps_len, "report-status-v2", NULL),
			   "fast-forward push: the command git sent, with its capabilities");
		tap_result(pc.pack_rc == 0 && pc.s.ncommits == 3, "fast-forward push: the pack's three commits");
		tap_result(verdict(&pc, 0, false, true) == GIT_PUSH_OK, "fast-forward push: OK");
		tap_result(git_push_check(c, false, allow_none, NULL, &pc.adv, &pc.s, &why) == GIT_PUSH_REF_NOT_ALLOWED,
			   "fast-forward push to a ref outside the policy: REF_NOT_ALLOWED");
		tap_result(git_push_check(c, true, NULL, NULL, &pc.adv, &pc.s, &why) == GIT_PUSH_REF_NOT_ALLOWED,
			   "no ref_allowed: nothing allowed");
		v = git_push_check(c, false, allow_heads, NULL, &pc.adv, NULL, &why);
		tap_result(v == GIT_PUSH_NOT_FAST_FORWARD && why,
			   "fast-forward push without its pack: not proved");
		stale_adv = pc.adv;
		memset(&pc.adv, 0, sizeof(pc.adv));
	}
	push_case_free(&pc);

	/* The previous advertisement is stale now: an update from the new tip does not start where it says. */
	before = after;
	sh("cd work && echo 4 >> f && git commit -q -am ff4");
	after = rev("work", "main");
	if (push_case(&pc, "second fast-forward push", "work", "R.git", "main")) {
		tap_result(verdict(&pc, 0, false, true) == GIT_PUSH_OK,
			   "second push: OK against the fresh advertisement");
		v = git_push_check(&pc.p.cmds[0], false, allow_heads, NULL, &stale_adv, &pc.s, &why);

		tap_result(v == GIT_PUSH_STALE && why, "second push against the earlier advertisement: STALE (%s)",
			   why ? why : "");
		stale_adv.incomplete = true;
		v = git_push_check(&pc.p.cmds[0], false, allow_heads, NULL, &stale_adv, &pc.s, &why);
		tap_result(v == GIT_PUSH_OK,
			   "against an incomplete advertisement: proved by the pack alone");
	}
	push_case_free(&pc);
	git_refs_free(&stale_adv);

	/* A rewritten commit: force-pushed by the client, refused here unless git.force_push. */
	sh("cd work && git commit -q --amend -m rewritten");
	if (push_case(&pc, "rewriting push", "work", "R.git", "+main")) {
		tap_result(pc.s.ncommits >= 1 && verdict(&pc, 0, false, true) == GIT_PUSH_NOT_FAST_FORWARD,
			   "rewritten commit: NOT_FAST_FORWARD");
		tap_result(verdict(&pc, 0, true, true) == GIT_PUSH_OK, "rewritten commit with force: OK");
	}
	push_case_free(&pc);

	/* Creation, several refs at once, then deletion (no pack). */
	sh("cd work && git branch topic && git tag -a vt -m vt && git checkout -q -b other && echo o > o && "
	   "git add o && "
	   "git commit -q -m other && git checkout -q main");
	if (push_case(&pc, "creating push", "work", "R.git", "topic other vt")) {
		bool all_new = pc.p.ncmds == 3;

		for (size_t i = 0; i < pc.p.ncmds; i++)
			all_new = all_new && git_oid_is_zero(&pc.p.cmds[i].old_oid) &&
				  verdict(&pc, i, false, true) == GIT_PUSH_OK;
		tap_result(all_new, "three creations: OK");
		struct git_refs now = { 0 };

		advertised("R.git", &now);
		v = git_push_check(&pc.p.cmds[0], false, allow_heads, NULL, &now, &pc.s, &why);
		tap_result(v == GIT_PUSH_STALE && !now.incomplete,
			   "the same creation against the advertisement after it: STALE");
		git_refs_free(&now);
	}
	push_case_free(&pc);
	if (push_case(&pc, "creation of an existing ref", "work", "R.git", "main:refs/heads/topic2")) {
		/* pretend the advertisement already had topic2 by checking against one taken after this push */
		struct git_refs now = { 0 };

		sh("git -C R.git update-ref refs/heads/topic2 main");
		advertised("R.git", &now);
		v = git_push_check(&pc.p.cmds[0], false, allow_heads, NULL, &now, &pc.s, &why);

		tap_result(v == GIT_PUSH_STALE && why, "a creation of a ref the upstream has: STALE (%s)",
			   why ? why : "");
		git_refs_free(&now);
	}
	push_case_free(&pc);
	if (push_case(&pc, "deleting push", "work", "R.git", ":topic")) {
		tap_result(pc.p.ncmds == 1 && git_oid_is_zero(&pc.p.cmds[0].new_oid) && pc.pack_rc == 0 && !pc.s.fed,
			   "deletion: a command, no pack after it");
		tap_result(verdict(&pc, 0, false, true) == GIT_PUSH_DELETE, "deletion: DELETE");
		tap_result(verdict(&pc, 0, true, true) == GIT_PUSH_OK, "deletion with force: OK");
	}
	push_case_free(&pc);

	/* Push options. */
	sh("git -C R.git config receive.advertisePushOptions true");
	sh("cd work && echo 5 >> f && git commit -q -am ff5");
	if (push_case(&pc, "push with options", "work", "R.git", "-o ci.skip main"))
		tap_result(pc.p.push_options, "push options: flagged");
	push_case_free(&pc);

	/* sha256 repositories. */
	sh("git init -q --bare --object-format=sha256 R256.git && git -C s256 push -q ../R256.git main");
	before = rev("s256", "main");
	sh("cd s256 && echo x >> f && git add f && git commit -q -m next && echo y >> f && git commit -q -am next2");
	after = rev("s256", "main");
	if (push_case(&pc, "sha256 push", "s256", "R256.git", "main")) {
		tap_result(pc.p.sha256 && pc.p.cmds[0].old_oid.len == 32 &&
			       git_oid_equal(&pc.p.cmds[0].old_oid, &before) &&
			       git_oid_equal(&pc.p.cmds[0].new_oid, &after) && pc.adv.sha256,
			   "sha256 push: 32-byte names");
		tap_result(pc.pack_rc == 0 && verdict(&pc, 0, false, true) == GIT_PUSH_OK, "sha256 push: OK");
	}
	push_case_free(&pc);
}

/* A hand-written push: lines separated by '|', '0' for a flush, "\\0" for NUL. */
static int push_lines(const char *lines, struct git_push *p)
{
	uint8_t *buf = malloc(1 << 16);
	size_t n = 0, used;
	const char *s = lines;
	int rc;

	while (*s) {
		const char *end = strchr(s, '|');
		size_t l = end ? (size_t)(end - s) : strlen(s), ll = 0;
		char line[2048];

		for (size_t i = 0; i < l; i++) {
			if (s[i] == '\\' && i + 1 < l && s[i + 1] == '0') {
				line[ll++] = '\0';
				i++;
			} else {
				line[ll++] = s[i];
			}
		}
		if (ll == 1 && line[0] == '0') {
			memcpy(buf + n, "0000", 4);
			n += 4;
		} else {
			char hx[5];

			snprintf(hx, sizeof(hx), "%04zx", ll + 4);
			memcpy(buf + n, hx, 4);
			memcpy(buf + n + 4, line, ll);
			n += ll + 4;
		}
		s += l + (end ? 1 : 0);
	}
	rc = -EAGAIN;
	for (int m = WHOLE; m < NFEED; m++) {
		struct git_push q;
		size_t off = 0;
		int r = -EAGAIN;

		git_push_init(&q);
		while (off < n && r == -EAGAIN) {
			size_t c = chunk(m, n - off);

			r = git_push_feed(&q, buf + off, c, &used);
			off += c;
		}
		if (r == -EAGAIN)
			r = git_push_end(&q);
		if (m == WHOLE) {
			rc = r;
			*p = q;
		} else {
			if (r != rc || q.ncmds != p->ncmds)
				rc = -9999;
			git_push_free(&q);
		}
	}
	free(buf);
	return rc;
}

static void test_push_malformed(void)
{
	static const struct {
		const char *lines;
		int rc;
		const char *what;
	} cases[] = {
		{ A40 " " B40 " refs/heads/main\\0report-status object-format=sha1|0", 0, "good" },
		{ "shallow " A40 "|" A40 " " B40 " refs/heads/main\\0report-status|0", 0, "a shallow line first" },
		{ A40 " " B40 " refs/heads/main\\0report-status|" A40 " " B40 " refs/heads/main|0", -EBADMSG,
		  "a ref named twice" },
		{ "push-cert\\0report-status|certificate version 0.1|0", -ENOTSUP, "a push certificate" },
		{ A40 " " B40 " refs/heads/main\\0push-options report-status|0|opt|0", 0, "push options" },
		{ "0", 0, "a lone flush: git's probe before a large push" },
		{ A40 " " B40 " refs/heads/a..b\\0x|0", -EBADMSG, "refs/heads/a..b" },
		{ A40 " " B40 " refs/heads/x.lock\\0x|0", -EBADMSG, "refs/heads/x.lock" },
		{ A40 " " B40 " refs/heads/@{\\0x|0", -EBADMSG, "refs/heads/@{" },
		{ A40 " " B40 " refs/heads/a\x01\\0x|0", -EBADMSG, "a control byte in a ref" },
		{ A40 " " B40 " refs/heads/a b\\0x|0", -EBADMSG, "a space in a ref" },
		{ A40 " " B40 " HEAD\\0x|0", -EBADMSG, "HEAD" },
		{ A40 " " B40 "\\0x|0", -EBADMSG, "no ref" },
		{ A40 " " B40 " \\0x|0", -EBADMSG, "an empty ref" },
		{ A40 " refs/heads/main\\0x|0", -EBADMSG, "no new name" },
		{ A40 "  " B40 " refs/heads/main\\0x|0", -EBADMSG, "two spaces" },
		{ "111111111111111111111111111111111111111 " B40 " refs/heads/main\\0x|0", -EBADMSG,
		  "a short old name" },
		{ A40 " 111111111111111111111111111111111111111g refs/heads/main\\0x|0", -EBADMSG, "bad hex" },
		{ A40 " " B40 "22222222222222222222222222 refs/heads/main\\0x|0", -EBADMSG,
		  "old and new of different lengths" },
		{ A40 A40 A40 " " B40 B40 B40 " refs/heads/main\\0object-format=sha256|0", -EBADMSG,
		  "sha256 announced, 120 digits" },
		{ A40 " " B40 " refs/heads/main\\0object-format=sha256|0", -EBADMSG, "sha256 announced, sha1 names" },
		{ A40 " " B40 " refs/heads/main\\0x|" A40 " " B40 " refs/heads/b\\0y|0", -EBADMSG,
		  "capabilities on a later command" },
		{ A40 " " B40 " refs/heads/main\\0x|" A40 " " B40 " refs/heads/b|", -EBADMSG, "no flush (truncated)" },
		{ A40 " " B40 " refs/heads/main\\0x|shallow " A40 "|0", -EBADMSG, "shallow after a command" },
		{ "shallow 1234|" A40 " " B40 " refs/heads/main|0", -EBADMSG, "a bad shallow line" },
		{ A40 " " B40 " refs/heads/main|" A40 " " B40 " refs/heads/b|0", 0, "no capabilities at all" },
		{ "ABCDEF1111111111111111111111111111111111 " B40 " refs/heads/main\\0x|0", 0, "upper-case hex" },
	};
	struct git_push p;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = push_lines(cases[i].lines, &p);

		tap_result(rc == cases[i].rc, "push, %s: %d (%s)", cases[i].what, rc, p.why ? p.why : "ok");
		if (!strcmp(cases[i].what, "push options"))
			tap_result(p.push_options && p.ncmds == 1, "push-options capability flagged");
		if (!strcmp(cases[i].what, "good"))
			tap_result(p.ncmds == 1 && !strcmp(p.cmds[0].ref, "refs/heads/main") && p.caps &&
					   !strcmp(p.caps, "report-status object-format=sha1") && git_push_end(&p) == 0,
				   "good push: the command and its capabilities");
		git_push_free(&p);
	}

	/* Lengths. */
	static const char *const bad[] = { "00zz", "0003", "fff1", "0001", "0002", "0004" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t used;
		int rc;

		git_push_init(&p);
		rc = git_push_feed(&p, (const uint8_t *)bad[i], 4, &used);
		tap_result(rc == -EBADMSG && p.why &&
			       git_push_feed(&p, (const uint8_t *)"0000", 4, &used) == -EBADMSG &&
			       git_push_end(&p) == -EBADMSG,
			   "push, pkt-line '%s' refused, and the failure sticks", bad[i]);
		git_push_free(&p);
	}

	/* The flush in the middle of a chunk: used points at the pack. */
	{
		char body[256];
		int l = snprintf(body + 4, sizeof(body) - 4, "%s %s refs/heads/main", A40, B40);
		size_t len, used = 0;
		int rc;

		l += 1 + snprintf(body + 4 + l + 1, sizeof(body) - 5 - (size_t)l, "report-status object-format=sha1\n");
		char hx[5];

		snprintf(hx, sizeof(hx), "%04x", l + 4);
		memcpy(body, hx, 4);
		memcpy(body + 4 + l, "0000PACK", 8);
		len = 4 + (size_t)l + 8;
		git_push_init(&p);
		rc = git_push_feed(&p, (const uint8_t *)body, len, &used);
		tap_result(rc == 0 && used == len - 4 && !memcmp(body + used, "PACK", 4) && p.ncmds == 1 &&
				   !strcmp(p.caps, "report-status object-format=sha1"),
			   "used: the pack starts after the flush");
		rc = git_push_feed(&p, (const uint8_t *)"more", 4, &used);
		tap_result(rc == 0 && used == 0, "after the flush, nothing more is taken");
		git_push_free(&p);
	}

	/* Bounds: commands and bytes. */
	{
		size_t cap = (GIT_PUSH_MAX_CMDS + 2) * 120, n = 0, used;
		uint8_t *buf = malloc(cap);
		int rc;

		for (size_t i = 0; i <= GIT_PUSH_MAX_CMDS; i++) {
			int l = snprintf((char *)buf + n + 4, 200, "%s %s refs/heads/b%zu", A40, B40, i);
			char hx[5];

			snprintf(hx, sizeof(hx), "%04x", l + 4);
			memcpy(buf + n, hx, 4);
			n += (size_t)l + 4;
		}
		memcpy(buf + n, "0000", 4);
		git_push_init(&p);
		rc = git_push_feed(&p, buf, n + 4, &used);
		tap_result(rc == -E2BIG && p.ncmds == GIT_PUSH_MAX_CMDS, "push, 10001 commands: E2BIG");
		git_push_free(&p);
		/* exactly the limit passes */
		size_t at = 0;

		for (size_t i = 0; i < GIT_PUSH_MAX_CMDS; i++) {
			char hx[5] = { 0 };

			memcpy(hx, buf + at, 4);
			at += strtoul(hx, NULL, 16);
		}
		memcpy(buf + at, "0000", 4);
		git_push_init(&p);
		rc = git_push_feed(&p, buf, at + 4, &used);
		tap_result(rc == 0 && p.ncmds == GIT_PUSH_MAX_CMDS && used == at + 4, "push, 10000 commands: read");
		git_push_free(&p);
		free(buf);

		/* 200 commands of 6000-byte names: over 1 MiB. */
		buf = malloc(210 * 6200);
		n = 0;
		for (size_t i = 0; i < 200; i++) {
			int l = snprintf((char *)buf + n + 4, 6200, "%s %s refs/heads/%zu-", A40, B40, i);

			memset(buf + n + 4 + l, 'x', 6000);
			l += 6000;
			char hx[5];

			snprintf(hx, sizeof(hx), "%04x", l + 4);
			memcpy(buf + n, hx, 4);
			n += (size_t)l + 4;
		}
		memcpy(buf + n, "0000", 4);
		for (int m = WHOLE; m < NFEED; m++) {
			size_t off = 0;

			git_push_init(&p);
			rc = -EAGAIN;
			while (off < n + 4 && rc == -EAGAIN) {
				size_t c = chunk(m, n + 4 - off);

				rc = git_push_feed(&p, buf + off, c, &used);
				off += c;
			}
			tap_result(rc == -E2BIG && p.why, "push, over 1 MiB of commands: E2BIG, %s", feed_name[m]);
			git_push_free(&p);
		}
		free(buf);
	}

	/* Zeroed and double frees. */
	memset(&p, 0, sizeof(p));
	git_push_free(&p);
	git_push_free(&p);
	tap_result(git_push_end(&p) == -EBADMSG, "a zeroed push is safe to free and is not complete");
}

static void test_verdicts(void)
{
	struct git_push_cmd cmd = { .ref = "refs/heads/main", .ref_len = 15 };
	struct git_ref r = { .name = "refs/heads/main", .len = 15 };
	struct git_refs adv = { .refs = &r, .n = 1, .sorted = true };
	struct git_oid z = { .len = 20 }, a = oid_of_hex(A40), b = oid_of_hex(B40);
	const char *why;

	r.oid = a;
	cmd.old_oid = a;
	cmd.new_oid = a;
	tap_result(git_push_check(&cmd, false, allow_heads, NULL, &adv, NULL, &why) == GIT_PUSH_OK && !why,
		   "old == new: OK");
	cmd.new_oid = z;
	tap_result(git_push_check(&cmd, false, allow_heads, NULL, &adv, NULL, &why) == GIT_PUSH_DELETE, "delete");
	cmd.old_oid = z;
	cmd.new_oid = b;
	tap_result(git_push_check(&cmd, false, allow_heads, NULL, &adv, NULL, &why) == GIT_PUSH_STALE,
		   "create an advertised ref: STALE");
	adv.incomplete = true;
	tap_result(git_push_check(&cmd, false, allow_heads, NULL, &adv, NULL, &why) == GIT_PUSH_OK,
		   "create against an incomplete advertisement: OK");
	tap_result(git_push_check(&cmd, false, allow_heads, NULL, NULL, NULL, &why) == GIT_PUSH_OK,
		   "create with no advertisement: OK");
	adv.incomplete = false;
	cmd.old_oid = b;
	cmd.new_oid = a;
	tap_result(git_push_check(&cmd, false, allow_heads, NULL, &adv, NULL, &why) == GIT_PUSH_STALE,
		   "update from a name the upstream does not have there: STALE");
	adv.n = 0;
	tap_result(git_push_check(&cmd, false, allow_heads, NULL, &adv, NULL, &why) == GIT_PUSH_STALE,
		   "update of a ref not advertised: STALE");
	adv.incomplete = true;
	tap_result(git_push_check(&cmd, false, allow_heads, NULL, &adv, NULL, &why) == GIT_PUSH_NOT_FAST_FORWARD,
		   "update with nothing to prove it: NOT_FAST_FORWARD");
	tap_result(git_push_check(&cmd, true, allow_heads, NULL, &adv, NULL, &why) == GIT_PUSH_OK, "force: OK");
	tap_result(git_push_check(&cmd, true, allow_none, NULL, &adv, NULL, &why) == GIT_PUSH_REF_NOT_ALLOWED,
		   "force does not widen the refs");
}

/* ---- fixtures --------------------------------------------------------------------------------------- */

/* A fast-import stream of `n` commits with long, similar messages and a file edited a line at a time. */
static void write_history(const char *name, size_t n)
{
	char path[512];
	FILE *f;
	static char para[3000];

	for (size_t i = 0; i < sizeof(para) - 1; i++)
		para[i] = "abcdefghijklmnopqrstuvwxyz     \n"[i * 7 % 32];
	para[sizeof(para) - 1] = '\0';
	snprintf(path, sizeof(path), "%s/%s", tmp, name);
	f = fopen(path, "w");
	for (size_t i = 1; i <= n; i++) {
		char msg[4096], file[8192];
		int ml, fl = 0;

		if (i % 25 == 0) {
			/* a side branch merged back: commits with two parents */
			ml = snprintf(msg, sizeof(msg), "side %zu\n", i);
			fprintf(f, "commit refs/heads/side\nmark :%zu\ncommitter C <c@x> %zu +0000\ndata %d\n%s",
				100000 + i, 1700000000 + i, ml, msg);
			fprintf(f, "from :%zu\nM 100644 inline side.txt\ndata 5\nside\n\n", i - 1);
		}
		ml = snprintf(msg, sizeof(msg), "commit %zu\n\n%s\nend %zu\n", i, para, i);
		for (size_t l = 0; l < 200; l++)
			fl += snprintf(file + fl, sizeof(file) - (size_t)fl, "line %zu%s\n", l,
				       l == i % 200 ? " changed" : "");
		fprintf(f, "commit refs/heads/main\nmark :%zu\ncommitter C <c@x> %zu +0000\ndata %d\n%s", i,
			1700000000 + i, ml, msg);
		if (i % 25 == 0)
			fprintf(f, "merge :%zu\n", 100000 + i);
		fprintf(f, "M 100644 inline big.txt\ndata %d\n%s\n", fl, file);
	}
	fclose(f);
}

static bool fixtures(void)
{
	FILE *f;

	if (sh("git config --global init.defaultBranch main && git config --global protocol.version 0 && "
	       "git config --global receive.denyDeleteCurrent ignore && git config --global core.bigFileThreshold 1g"))
		return false;
	if (sh("printf '#!/bin/sh\\ntee \"$CAPTURE\" | git receive-pack \"$@\"\\n' > rp.sh && chmod +x rp.sh"))
		return false;
	/* a: a few commits, branches, annotated and light tags */
	if (sh("git init -q a && cd a && echo 1 > f && git add f && git commit -q -m one && echo 2 >> f && "
	       "git commit -q -am two && git branch dev && git tag -a v1 -m v1 && git tag light && "
	       "git checkout -q -b feature/x && echo 3 >> f && git commit -q -am three && git checkout -q main"))
		return false;
	if (sh("git init -q --bare empty.git"))
		return false;
	if (sh("git init -q --object-format=sha256 s256 && cd s256 && echo 1 > f && git add f && "
	       "git commit -q -m one && "
	       "git branch b2 && git tag -a t -m t"))
		return false;
	write_history("hist", 300);
	if (sh("git init -q big && git -C big fast-import --quiet < hist"))
		return false;
	if (sh("git init -q --object-format=sha256 s256big && git -C s256big fast-import --quiet < hist"))
		return false;
	/* many: 10000 refs in packed-refs */
	if (sh("git init -q many && cd many && git commit -q --allow-empty -m x"))
		return false;
	{
		struct git_oid h = rev("many", "HEAD");
		char hx[65];
		char path[512];

		hex_of(&h, hx);
		snprintf(path, sizeof(path), "%s/many/.git/packed-refs", tmp);
		f = fopen(path, "w");
		if (!f)
			return false;
		fprintf(f, "# pack-refs with: peeled fully-peeled sorted \n");
		for (int i = 0; i < 10000; i++)
			fprintf(f, "%s refs/heads/b%05d\n", hx, i);
		fclose(f);
	}
	return true;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(tmp, sizeof(tmp), "/tmp/crgw-gitproto-XXXXXX");
	if (!mkdtemp(tmp)) {
		tap_result(false, "a private directory");
		return tap_done();
	}
	/* git as a fresh user would run it, whatever the caller's environment says. */
	setenv("HOME", tmp, 1);
	setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
	setenv("GIT_AUTHOR_NAME", "Test", 1);
	setenv("GIT_AUTHOR_EMAIL", "test@example.com", 1);
	setenv("GIT_COMMITTER_NAME", "Test", 1);
	setenv("GIT_COMMITTER_EMAIL", "test@example.com", 1);
	setenv("GIT_AUTHOR_DATE", "1700000000 +0000", 1);
	setenv("GIT_COMMITTER_DATE", "1700000000 +0000", 1);
	unsetenv("GIT_PROTOCOL");
	unsetenv("GIT_DIR");
	unsetenv("GIT_WORK_TREE");
	unsetenv("GIT_INDEX_FILE");
	unsetenv("GIT_OBJECT_DIRECTORY");

	test_pkt();
	test_refnames();
	test_caps();
	test_adv_malformed();
	test_push_malformed();
	test_verdicts();
	test_pack_synthetic();
	test_pack_bounds();
	if (!fixtures()) {
		tap_result(false, "git made the fixtures");
	} else {
		tap_result(true, "git made the fixtures");
		test_adv_real();
		test_pack_real();
		test_push_real();
	}
	sh("cd / && rm -rf '%s'", tmp);
	return tap_done();
}
