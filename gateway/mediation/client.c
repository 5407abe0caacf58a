/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The upstream side of mediation: libcurl's multi interface driven by the worker's libevent loop. libcurl
 * does TLS (verified against the system store or the operator's CA file), HTTP/1.1 framing and chunked
 * decoding; the gateway decides where it may connect. The name is resolved by the gateway's own DNS, every
 * address passes the policy's rebinding check, and libcurl gets only those (CURLOPT_RESOLVE), checked again
 * as it opens each socket and, for every request, once it has its connection. A sandbox's body-less
 * requests reuse its own idle upstream connections (keyed by the sandbox: a connection made for one
 * sandbox is never used by another); a request with a body always opens a fresh one. Redirects are never
 * followed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <malloc.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "dns.h"
#include "dns_cache.h"
#include "dnsmsg.h"
#include "internal.h"
#include "log.h"
#include "sandbox.h"
#include "tchar.h"
#include "vault.h"

#define CONNECT_TIMEOUT_S 10
/* Idle upstream connections a worker keeps, and for how long one may be reused. */
#define IDLE_CONNS 64
#define IDLE_CONN_S 30L

/* ---- libcurl's memory: wiped when freed, for the copies of a credential it makes ------------------- */

static void *wipe_malloc(size_t n)
{
	return malloc(n);
}

static void wipe_free(void *p)
{
	if (p) {
		explicit_bzero(p, malloc_usable_size(p));
		free(p);
	}
}

static void *wipe_realloc(void *p, size_t n)
{
	void *q;
	size_t old;

	if (!p)
		return malloc(n);
	if (n == 0) {
		wipe_free(p);
		return NULL;
	}
	/* realloc could move the block and free the old one unwiped: move it ourselves. */
	q = malloc(n);
	if (!q)
		return NULL;
	old = malloc_usable_size(p);
	memcpy(q, p, old < n ? old : n);
	wipe_free(p);
	return q;
}

static char *wipe_strdup(const char *s)
{
	return strdup(s);
}

static void *wipe_calloc(size_t n, size_t size)
{
	return calloc(n, size);
}

int crgw_mediation_global_init(void)
{
	return curl_global_init_mem(CURL_GLOBAL_DEFAULT, wipe_malloc, wipe_free, wipe_realloc, wipe_strdup,
				    wipe_calloc) == CURLE_OK
		       ? 0
		       : -ENOMEM;
}

void crgw_mediation_global_fini(void)
{
	curl_global_cleanup();
}

/* The operator's credential for the host as a header line, added to the request (wiped when freed). */
int med_credential_add(struct med_request *r, enum crgw_vault_realm realm, char *used)
{
	/* A copy: a reload may replace the vault's list while the request goes on. */
	struct crgw_git_credential c;
	const struct crgw_git_credential *cred = &c;
	size_t vmax = CRGW_SECRET_VALUE_MAX, size = 4 * (vmax + 256) / 3 + 512;
	char *value, *plain, *line;
	ssize_t n;
	int ret = 0;

	/*
	 * Learn mode widens where a job may connect, never whose credential it uses: a host its policy does not
	 * list is asked anonymously, or the job's code could read whatever the operator's credential reads on
	 * any credentialed host, for no more than being run in learn mode.
	 */
	if (used)
		used[0] = '\0';
	if (r->anonymous || crgw_vault_credential(realm, r->host.text, &c))
		return 0; /* a public repository or registry: nothing to add */
	AUDIT_SET(r->secret_id, cred->secret);
	value = crgw_vault_scratch(vmax);
	plain = crgw_vault_scratch(vmax + 256);
	line = crgw_vault_scratch(size);
	if (!value || !plain || !line) {
		ret = -ENOMEM;
		goto out;
	}
	n = crgw_vault_get(cred->secret, strlen(cred->secret), value, vmax);
	if (n < 0) {
		ret = (int)n;
		goto out;
	}
	if (cred->basic) {
		int plen = snprintf(plain, vmax + 256, "%s:%s", cred->username, value);
		int at = snprintf(line, size, "Authorization: Basic ");

		EVP_EncodeBlock((unsigned char *)line + at, (const unsigned char *)plain, plen);
	} else {
		snprintf(line, size, "Authorization: Bearer %s", value);
	}
	if (!med_header_add(r, line))
		ret = -ENOMEM;
	else if (used)
		snprintf(used, sizeof(cred->secret), "%s", cred->secret);
out:
	crgw_vault_scratch_free(value, vmax);
	crgw_vault_scratch_free(plain, vmax + 256);
	crgw_vault_scratch_free(line, size);
	return ret;
}

bool med_header_add(struct med_request *r, const char *line)
{
	struct curl_slist *l = curl_slist_append(r->headers, line);

	if (!l)
		return false;
	r->headers = l;
	return true;
}

/* ---- the multi handle on the loop ------------------------------------------------------------------ */

struct sock_watch {
	struct event ev;
	struct crgw_mediation *m;
};

static void check_done(struct crgw_mediation *m)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(m->multi, &left))) {
		struct med_request *r = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (!r || r->finished)
			continue;
		r->finished = true;
		if (msg->data.result == CURLE_OK) {
			med_upstream_done(r, true, NULL);
		} else {
			char why[160];
			const char *e = curl_easy_strerror(msg->data.result);

			snprintf(why, sizeof(why), "%s", e);
			med_upstream_done(r, false, why);
		}
	}
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
	struct crgw_mediation *m = arg;
	int running, flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);

	curl_multi_socket_action(m->multi, fd, flags, &running);
	check_done(m);
}

static void on_curl_timer(evutil_socket_t fd, short what, void *arg)
{
	struct crgw_mediation *m = arg;
	int running;

	(void)fd;
	(void)what;
	curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(m);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct crgw_mediation *m = userp;
	struct sock_watch *w = socketp;
	short events;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (w) {
			event_del(&w->ev);
			free(w);
			curl_multi_assign(m->multi, s, NULL);
		}
		return 0;
	}
	events = (short)(EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
	if (!w) {
		w = calloc(1, sizeof(*w));
		if (!w)
			return -1;
		w->m = m;
		curl_multi_assign(m->multi, s, w);
	} else {
		event_del(&w->ev);
	}
	event_assign(&w->ev, m->base, s, events, on_socket_event, m);
	event_add(&w->ev, NULL);
	return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct crgw_mediation *m = userp;
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };

	(void)multi;
	if (timeout_ms < 0)
		evtimer_del(&m->curl_timer);
	else
		evtimer_add(&m->curl_timer, &tv);
	return 0;
}

int med_client_init(struct crgw_mediation *m)
{
	m->multi = curl_multi_init();
	if (!m->multi)
		return -ENOMEM;
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
	curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, (long)IDLE_CONNS);
	evtimer_assign(&m->curl_timer, m->base, on_curl_timer, m);
	return 0;
}

void med_client_fini(struct crgw_mediation *m)
{
	if (!m->multi)
		return;
	evtimer_del(&m->curl_timer);
	curl_multi_cleanup(m->multi);
	m->multi = NULL;
}

/* ---- one transfer ---------------------------------------------------------------------------------- */

static bool is_hop_by_hop(const char *name, size_t len)
{
	static const char *const names[] = { "connection",  "keep-alive", "proxy-authenticate", "proxy-connection",
					     "te",          "trailer",    "transfer-encoding",  "upgrade",
					     "content-length" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && !strncasecmp(name, names[i], len))
			return true;
	return false;
}

/*
 * Fields of an answer that concern the credential the gateway presented, never passed on. A challenge
 * would make a client ask its user for a password it must never have. A cookie an upstream sets in answer
 * to the operator's credential is a session of that credential (many git servers and APIs set one): held
 * by the sandbox, it would work without the gateway, from anywhere.
 */
static bool is_credential_field(const char *name, size_t len)
{
	static const char *const names[] = {"www-authenticate", "set-cookie", "set-cookie2"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && !strncasecmp(name, names[i], len))
			return true;
	return false;
}

/* RFC 9110 field names are tokens; anything else is no field to pass on. */
static bool field_name_ok(const char *name, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!med_is_tchar((unsigned char)name[i]))
			return false;
	return len > 0;
}

/*
 * An upstream's field line on its way to the sandbox's client. A CR, NUL or other control character in the
 * value becomes a space (RFC 9110 5.5 lets a recipient do so): a bare CR is a line end to some clients, and
 * "X: a\rSet-Cookie: b" would give them the field the gateway drops, or a second Content-Length.
 */
static void add_field_line(struct evbuffer *out, const char *line, size_t n)
{
	size_t from = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)line[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			evbuffer_add(out, line + from, i - from);
			evbuffer_add(out, " ", 1);
			from = i + 1;
		}
	}
	evbuffer_add(out, line + from, n - from);
	evbuffer_add(out, "\r\n", 2);
}

/* Response header lines: the status line, fields, the empty line that ends the head (and 1xx heads before it). */
static size_t on_header(char *data, size_t size, size_t nitems, void *arg)
{
	struct med_request *r = arg;
	size_t len = size * nitems, n = len;
	const char *colon;

	while (n && (data[n - 1] == '\n' || data[n - 1] == '\r'))
		n--;
	if (n >= 5 && !strncmp(data, "HTTP/", 5)) {
		const char *sp = memchr(data, ' ', n);

		r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		evbuffer_drain(r->resp_head, evbuffer_get_length(r->resp_head));
		return len;
	}
	if (n == 0) {
		if (r->status >= 100 && r->status < 200)
			return len; /* an interim answer: the real one follows */
		if (r->h && r->h->on_response)
			r->h->on_response(r);
		if (r->head_sent || r->finished || r->head_held)
			return len;
		{
			char line[128];
			curl_off_t cl = -1;

			curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
			/* The body's length is known when the upstream said it; otherwise it is chunked to the client. */
			if (cl >= 0)
				snprintf(line, sizeof(line), "Content-Length: %lld\r\n", (long long)cl);
			else
				snprintf(line, sizeof(line), "Transfer-Encoding: chunked\r\n");
			r->chunked_out = cl < 0;
			evbuffer_add(r->resp_head, line, strlen(line));
			med_client_write(r, NULL, 0); /* sends the head */
		}
		return len;
	}
	/* A folded line (obs-fold) or a malformed name is dropped: it would join or start another field. */
	colon = memchr(data, ':', n);
	if (!colon || !field_name_ok(data, (size_t)(colon - data)))
		return len;
	if (is_hop_by_hop(data, (size_t)(colon - data)) || is_credential_field(data, (size_t)(colon - data)))
		return len;
	add_field_line(r->resp_head, data, n);
	return len;
}

static size_t on_write(char *data, size_t size, size_t nitems, void *arg)
{
	struct med_request *r = arg;
	size_t len = size * nitems;

	if (r->finished)
		return 0;
	if (!med_client_has_room(r)) {
		r->pause |= CURLPAUSE_RECV;
		return CURL_WRITEFUNC_PAUSE;
	}
	if (r->h && r->h->on_response_body)
		r->h->on_response_body(r, data, len);
	if (r->finished)
		return 0;
	if (r->h && r->h->takes_body) {
		med_upstream_activity(r);
		return len;
	}
	r->bytes_down += len;
	med_client_write(r, data, len);
	return len;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct med_request *r = arg;
	size_t max = size * nitems, n = evbuffer_get_length(r->body_buf);

	if (n == 0) {
		if (r->body_done)
			return 0;
		r->pause |= CURLPAUSE_SEND;
		return CURL_READFUNC_PAUSE;
	}
	n = (size_t)evbuffer_remove(r->body_buf, buf, n < max ? n : max);
	r->bytes_up += n;
	med_body_consumed(r);
	return n;
}

static void v4_mapped(const void *v4, struct in6_addr *out)
{
	memset(out, 0, sizeof(*out));
	out->s6_addr[10] = out->s6_addr[11] = 0xff;
	memcpy(&out->s6_addr[12], v4, 4);
}

static bool address_allowed(const struct med_request *r, const struct in6_addr *a)
{
	for (unsigned i = 0; i < r->nallowed; i++)
		if (!memcmp(&r->allowed[i], a, sizeof(*a)))
			return true;
	return false;
}

/* The sandbox's current policy on an address (v4 mapped or IPv6), as add_addresses asks it. */
static bool address_passes_policy(const struct med_request *r, const struct in6_addr *a)
{
	bool v4 = IN6_IS_ADDR_V4MAPPED(a);
	struct crgw_host h = { .kind = v4 ? CRGW_HOST_IPV4 : CRGW_HOST_IPV6 };
	struct crgw_decision d = { 0 };

	memcpy(h.addr, v4 ? &a->s6_addr[12] : a->s6_addr, v4 ? 4 : 16);
	crgw_policy_check_address(med_sandbox(r)->policy, crgw_gateway_blocklist(), &h, r->port, &d);
	return d.allow;
}

/*
 * The name libcurl is told to connect to instead of the upstream's, and keys its kept connections by:
 * the upstream's name within the sandbox's. One function, because CURLOPT_RESOLVE must name exactly what
 * CURLOPT_CONNECT_TO points at, or libcurl would ask the system's resolver.
 */
static void sandbox_alias(const struct med_request *r, char *out, size_t cap)
{
	snprintf(out, cap, "%s.%s", med_sandbox(r)->id, r->host.text);
}

/* libcurl opens sockets only for addresses we handed it: checked again here, and never inherited. */
static curl_socket_t on_open(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct med_request *r = arg;
	struct in6_addr want;
	bool ok;

	(void)purpose;
	memset(&want, 0, sizeof(want));
	if (a->family == AF_INET) {
		v4_mapped(&((struct sockaddr_in *)&a->addr)->sin_addr, &want);
	} else if (a->family == AF_INET6) {
		want = ((struct sockaddr_in6 *)&a->addr)->sin6_addr;
	}
	ok = address_allowed(r, &want);
	if (!ok) {
		log_warn("mediation: refused an upstream address the checks did not pass", "sandbox=%s host=%s",
			 med_sandbox(r)->id, r->host.text);
		return CURL_SOCKET_BAD;
	}
	if (a->family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&a->addr)->sin_addr, r->upstream_ip, sizeof(r->upstream_ip));
	else
		inet_ntop(AF_INET6, &want, r->upstream_ip, sizeof(r->upstream_ip));
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/*
 * Every request, on a new connection or a kept one, just before it is sent. A new connection went to one
 * of this request's own checked addresses (on_open). A kept one was checked when it was opened, perhaps
 * under a policy since reloaded, and the name may resolve elsewhere now (rotating DNS is common): its
 * address must pass the sandbox's policy as it is now.
 */
static int on_connected(void *arg, char *peer, char *local, int peer_port, int local_port)
{
	struct med_request *r = arg;
	struct in6_addr a;
	struct in_addr a4;

	(void)local;
	(void)peer_port;
	(void)local_port;
	if (inet_pton(AF_INET, peer, &a4) == 1)
		v4_mapped(&a4, &a);
	else if (inet_pton(AF_INET6, peer, &a) != 1)
		return CURL_PREREQFUNC_ABORT;
	if (!address_allowed(r, &a) && !address_passes_policy(r, &a)) {
		log_warn("mediation: refused an upstream connection to an address the checks did not pass",
			 "sandbox=%s host=%s address=%s", med_sandbox(r)->id, r->host.text, peer);
		return CURL_PREREQFUNC_ABORT;
	}
	snprintf(r->upstream_ip, sizeof(r->upstream_ip), "%s", peer);
	return CURL_PREREQFUNC_OK;
}

/*
 * libcurl keeps a worker's idle connections in one cache and matches them by host, port and the host it
 * was told to connect to instead. That last one is the key we give it: the upstream host's name within
 * the sandbox's (CURLOPT_CONNECT_TO HOST:PORT:SANDBOX.HOST:PORT, with our addresses for SANDBOX.HOST),
 * so a sandbox finds only its own connections. TLS and Host still use the upstream's name.
 */
static int connect_via_sandbox(struct med_request *r)
{
	char alias[300], entry[600];

	sandbox_alias(r, alias, sizeof(alias));
	snprintf(entry, sizeof(entry), "%s:%u:%s:%u", r->host.text, r->port, alias, r->port);
	r->connect_to = curl_slist_append(NULL, entry);
	return r->connect_to ? 0 : -ENOMEM;
}

static void transfer_start(struct med_request *r)
{
	struct crgw_mediation *m = r->m;
	const struct crgw_config *cfg = m->cfg;
	CURL *e = curl_easy_init();
	size_t mlen;
	const char *method = med_method(r, &mlen);
	char mbuf[24];

	if (!e) {
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
		return;
	}
	r->easy = e;
	r->resolve = curl_slist_append(NULL, r->resolve_entry);
	if (!r->resolve || connect_via_sandbox(r)) {
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
		return;
	}
	snprintf(mbuf, sizeof(mbuf), "%.*s", (int)(mlen < 20 ? mlen : 20), method);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROXY, ""); /* never a proxy from the environment */
	curl_easy_setopt(e, CURLOPT_RESOLVE, r->resolve);
	curl_easy_setopt(e, CURLOPT_CONNECT_TO, r->connect_to);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
	curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_connected);
	curl_easy_setopt(e, CURLOPT_PREREQDATA, r);
	curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, IDLE_CONN_S);
	/*
	 * A request with a body never takes a kept connection: if the upstream had closed it meanwhile, libcurl
	 * would have to send the body again, which a streamed body cannot be.
	 */
	if (!r->upstream_get && r->body != MED_BODY_NONE)
		curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (cfg->mediation_ca_file[0]) {
		/* The operator's file replaces the system's store: libcurl would otherwise still read its CA directory. */
		curl_easy_setopt(e, CURLOPT_CAINFO, cfg->mediation_ca_file);
		curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
	}
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)CONNECT_TIMEOUT_S);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)cfg->mediation_idle_timeout);
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
	curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 256L * 1024);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	/* A 100-continue round trip would only delay every push. */
	med_header_add(r, "Expect:");
	if (r->upstream_get) {
		/* GET, libcurl's default, with no body */
	} else if (!strcmp(mbuf, "HEAD")) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (r->body != MED_BODY_NONE) {
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(e, CURLOPT_READDATA, r);
		if (r->body == MED_BODY_LENGTH)
			curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
					 (curl_off_t)(r->body_left + evbuffer_get_length(r->body_buf) + r->bytes_up));
		else
			med_header_add(r, "Transfer-Encoding: chunked");
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, mbuf);
	} else if (strcmp(mbuf, "GET")) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, mbuf);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
	r->started = true;
	if (curl_multi_add_handle(m->multi, e) != CURLM_OK)
		med_refuse(r, 503, "Service Unavailable", CRGW_REASON_UPSTREAM_UNREACHABLE, "out of memory");
}

/* ---- resolution through the gateway's DNS ---------------------------------------------------------- */

static void add_addresses(struct med_request *r, int family, const struct crgw_dns_cached *e)
{
	struct crgw_sandbox *sb = med_sandbox(r);

	for (unsigned i = 0; i < e->naddrs && i < CRGW_DNS_CACHE_ADDRS && r->nallowed < MED_RESOLVE_ADDRS; i++) {
		struct crgw_host h = { .kind = family == AF_INET6 ? CRGW_HOST_IPV6 : CRGW_HOST_IPV4 };
		struct crgw_decision d = { 0 };
		struct in6_addr a;
		char text[INET6_ADDRSTRLEN + 2];
		size_t used = strlen(r->resolve_entry);

		memcpy(h.addr, e->addrs[i], family == AF_INET6 ? 16 : 4);
		crgw_policy_check_address(sb->policy, crgw_gateway_blocklist(), &h, r->port, &d);
		if (!d.allow) {
			if (!r->refused++)
				r->refusal = d;
			continue;
		}
		memset(&a, 0, sizeof(a));
		if (family == AF_INET) {
			v4_mapped(e->addrs[i], &a);
			inet_ntop(AF_INET, e->addrs[i], text, sizeof(text));
		} else {
			memcpy(&a, e->addrs[i], 16);
			char bare[INET6_ADDRSTRLEN];

			inet_ntop(AF_INET6, e->addrs[i], bare, sizeof(bare));
			snprintf(text, sizeof(text), "[%s]", bare);
		}
		if (used + strlen(text) + 2 >= sizeof(r->resolve_entry))
			break;
		r->allowed[r->nallowed++] = a;
		snprintf(r->resolve_entry + used, sizeof(r->resolve_entry) - used, "%s%s",
			 r->resolve_entry[used - 1] == ':' ? "" : ",", text);
	}
}

static void lookups_done(struct med_request *r)
{
	if (r->resolving || r->lookup[0] || r->lookup[1])
		return;
	if (r->nallowed == 0) {
		if (r->refused) {
			AUDIT_SET(r->detail, "the name resolves only to refused addresses");
			med_refuse(r, 403, "Forbidden", r->refusal.reason, "the name resolves only to refused addresses");
		} else {
			atomic_fetch_add(&med_stats.upstream_failures, 1);
			med_refuse(r, 502, "Bad Gateway", CRGW_REASON_UPSTREAM_UNREACHABLE,
				   "the upstream name could not be resolved");
		}
		return;
	}
	transfer_start(r);
}

struct med_lookup {
	struct med_request *r; /* NULL once the request ended: the answer is dropped */
	int family;
};

static void on_lookup(void *arg, const struct crgw_dns_cached *e)
{
	struct med_lookup *l = arg;
	struct med_request *r = l->r;

	if (r) {
		r->lookup[l->family == AF_INET6] = NULL;
		if (e && e->rcode == CRGW_DNS_NOERROR)
			add_addresses(r, l->family, e);
	}
	free(l);
	if (r)
		lookups_done(r);
}

void med_client_start(struct med_request *r)
{
	static const uint16_t qtypes[2] = { CRGW_DNS_A, CRGW_DNS_AAAA };
	char alias[300];

	sandbox_alias(r, alias, sizeof(alias));
	/* "+": an entry that expires with libcurl's DNS cache, not one kept for the worker's lifetime. */
	snprintf(r->resolve_entry, sizeof(r->resolve_entry), "+%s:%u:", alias, r->port);
	/* Answers from the cache come back at once, some through the callback: decide after both are asked. */
	r->resolving = true;
	for (unsigned i = 0; i < 2; i++) {
		struct crgw_dns_cached e;
		struct med_lookup *l = calloc(1, sizeof(*l));
		int rc;

		if (!l)
			continue;
		l->r = r;
		l->family = i ? AF_INET6 : AF_INET;
		r->lookup[i] = l;
		rc = crgw_dns_resolve(r->m->dns, r->host.text, qtypes[i], &e, on_lookup, l);
		if (rc != 0) {
			r->lookup[i] = NULL;
			if (rc == 1 && e.rcode == CRGW_DNS_NOERROR)
				add_addresses(r, l->family, &e);
			free(l);
		}
	}
	r->resolving = false;
	lookups_done(r);
}

void med_client_resume(struct med_request *r, unsigned what)
{
	unsigned want = r->pause;

	if (!r->easy || r->finished)
		return;
	if (what & CURLPAUSE_RECV)
		want &= ~(unsigned)CURLPAUSE_RECV;
	if (what & CURLPAUSE_SEND)
		want &= ~(unsigned)CURLPAUSE_SEND;
	if (want == r->pause)
		return;
	r->pause = want;
	/* Unpausing may call the write or read callback at once, which may pause again. */
	curl_easy_pause(r->easy, (int)want);
}

void med_client_reset(struct med_request *r)
{
	struct curl_slist *l;

	med_client_abort(r);
	for (l = r->headers; l; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(r->headers);
	r->headers = NULL;
	evbuffer_drain(r->resp_head, evbuffer_get_length(r->resp_head));
	r->status = 0;
	r->started = r->finished = r->head_held = false;
	r->pause = 0;
	r->nallowed = 0;
	r->refused = 0;
	r->upstream_ip[0] = '\0';
}

bool med_resp_field(const struct med_request *r, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name), total = evbuffer_get_length(r->resp_head);
	const char *p, *end;

	if (!total)
		return false;
	p = (const char *)evbuffer_pullup(r->resp_head, -1);
	end = p + total;
	while (p && p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p)), *v;
		size_t len;

		if (!eol)
			eol = end;
		len = (size_t)(eol - p);
		if (len && p[len - 1] == '\r')
			len--;
		if (len > nlen && p[nlen] == ':' && !strncasecmp(p, name, nlen)) {
			for (v = p + nlen + 1; v < p + len && (*v == ' ' || *v == '\t'); v++)
				;
			len = (size_t)(p + len - v);
			while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
				len--;
			if (len >= cap)
				return false;
			memcpy(out, v, len);
			out[len] = '\0';
			return true;
		}
		p = eol + 1;
	}
	return false;
}

void med_client_abort(struct med_request *r)
{
	for (unsigned i = 0; i < 2; i++)
		if (r->lookup[i]) {
			r->lookup[i]->r = NULL;
			r->lookup[i] = NULL;
		}
	if (!r->easy)
		return;
	curl_multi_remove_handle(r->m->multi, r->easy);
	curl_easy_cleanup(r->easy);
	r->easy = NULL;
	curl_slist_free_all(r->resolve);
	r->resolve = NULL;
	curl_slist_free_all(r->connect_to);
	r->connect_to = NULL;
}
