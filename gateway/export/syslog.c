/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The syslog sink: each audit line as one RFC 5424 message (the line itself as MSG; with format sd, also
 * the event's main fields as structured data), over UDP (a datagram each), TCP or TLS (octet counting,
 * RFC 6587 and RFC 5425). A batch counts as delivered once the receiver's TCP stack has acknowledged
 * every byte of it; a connection that fails before then is opened again and the batch sent again.
 */
#include <curl/curl.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "crgw/policy_diff.h"
#include "internal.h"
#include "log.h"

#define SD_ID "crgw@32473" /* 32473: the example enterprise number of RFC 5612 */
#define ACK_WAIT_MS 5000
#define MSG_MAX (70 * 1024)

static void down(struct export_sink *s, const char *what)
{
	if (!s->logged_down)
		log_warn("audit export: the receiver cannot be reached; events wait in the spool",
			 "sink=%s error=\"%s\"", s->cfg.name, what);
	s->logged_down = true;
	atomic_store(&s->connected, 0);
}

void export_syslog_close(struct export_sink *s)
{
	if (s->curl)
		curl_easy_cleanup(s->curl);
	s->curl = NULL;
	if (s->udp_fd >= 0)
		close(s->udp_fd);
	s->udp_fd = -1;
	atomic_store(&s->connected, 0);
}

/* An SD-PARAM value: '"', '\' and ']' escaped (RFC 5424 section 6.3.3). */
static size_t sd_value(char *out, size_t size, const char *v)
{
	size_t at = 0;

	for (; *v && at + 3 < size; v++) {
		if (*v == '"' || *v == '\\' || *v == ']')
			out[at++] = '\\';
		out[at++] = *v;
	}
	out[at] = '\0';
	return at;
}

/* One message, without framing: "<PRI>1 TIMESTAMP HOST crgw PID MSGID SD MSG". */
static size_t format(struct export_sink *s, const char *line, size_t len, char *out, size_t size)
{
	struct crgw_audit_flow f;
	char sd[1024] = "-";
	/* The writer made the line; one that does not read (cannot happen) still goes out, as its bytes. */
	bool parsed = crgw_audit_flow_parse(line, len, &f) == 0;
	int severity = parsed && !strcmp(f.action, "deny") ? 4 : 6;
	int n;

	if (s->cfg.structured) {
		size_t at = (size_t)snprintf(sd, sizeof(sd), "[%s", SD_ID);

		if (parsed) {
			const char *keys[] = {"service",     "sandbox_id", "run_id", "action",
					      "reason_code", "dst_host",   "dst_ip"};
			const char *vals[] = {f.service, f.sandbox_id, f.run_id, f.action, f.reason, f.host, f.ip};
			char v[600], param[800];

			for (size_t i = 0; i <= sizeof(keys) / sizeof(keys[0]); i++) {
				size_t plen;

				if (i < sizeof(keys) / sizeof(keys[0])) {
					if (!vals[i][0])
						continue;
					sd_value(v, sizeof(v), vals[i]);
					plen = (size_t)snprintf(param, sizeof(param), " %s=\"%s\"", keys[i], v);
				} else if (f.port) {
					plen = (size_t)snprintf(param, sizeof(param), " dst_port=\"%u\"", f.port);
				} else {
					break;
				}
				/* A parameter that would not fit is left out whole, never cut. */
				if (plen < sizeof(param) && at + plen + 2 <= sizeof(sd)) {
					memcpy(sd + at, param, plen);
					at += plen;
				}
			}
		}
		memcpy(sd + at, "]", 2);
	}
	n = snprintf(out, size, "<%u>1 %s %s crgw %d %s %s %.*s", s->cfg.facility * 8 + (unsigned)severity,
		     parsed && f.ts[0] ? f.ts : "-", s->hostname, (int)getpid(), parsed && f.event[0] ? f.event : "-",
		     sd, (int)len, line);
	return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

static int udp_send(struct export_sink *s, const char *msg, size_t len)
{
	if (s->udp_fd < 0) {
		struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *ai = NULL;
		char port[8];

		snprintf(port, sizeof(port), "%u", s->cfg.port);
		if (getaddrinfo(s->cfg.host, port, &hints, &ai)) {
			down(s, "cannot resolve the address");
			return -EAGAIN;
		}
		s->udp_fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (s->udp_fd < 0 || connect(s->udp_fd, ai->ai_addr, ai->ai_addrlen)) {
			freeaddrinfo(ai);
			export_syslog_close(s);
			down(s, strerror(errno));
			return -EAGAIN;
		}
		freeaddrinfo(ai);
		atomic_store(&s->connected, 1);
	}
	if (send(s->udp_fd, msg, len, 0) != (ssize_t)len) {
		export_syslog_close(s);
		down(s, strerror(errno));
		return -EAGAIN;
	}
	return 0;
}

static int stream_open(struct export_sink *s)
{
	char url[600], connect_to[600];
	struct curl_slist *to = NULL;
	bool tls = s->cfg.transport == CRGW_SINK_TLS;
	const char *name = s->cfg.server_name[0] ? s->cfg.server_name : s->cfg.host;
	bool v6 = strchr(name, ':') != NULL;
	CURLcode rc;

	s->curl = curl_easy_init();
	if (!s->curl)
		return -EAGAIN;
	/* CONNECT_ONLY: libcurl connects (and for TLS, handshakes and verifies), then the stream is ours. */
	snprintf(url, sizeof(url), "%s://%s%s%s:%u/", tls ? "https" : "http", v6 ? "[" : "", name, v6 ? "]" : "",
		 s->cfg.port);
	curl_easy_setopt(s->curl, CURLOPT_URL, url);
	curl_easy_setopt(s->curl, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(s->curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(s->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(s->curl, CURLOPT_PROXY, "");
	curl_easy_setopt(s->curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(s->curl, CURLOPT_XFERINFOFUNCTION, export_halt_check);
	curl_easy_setopt(s->curl, CURLOPT_XFERINFODATA, s);
	if (tls && s->cfg.ca_file[0])
		curl_easy_setopt(s->curl, CURLOPT_CAINFO, s->cfg.ca_file);
	if (s->cfg.server_name[0] && strcmp(s->cfg.server_name, s->cfg.host)) {
		snprintf(connect_to, sizeof(connect_to), "%s:%u:%s:%u", s->cfg.server_name, s->cfg.port, s->cfg.host,
			 s->cfg.port);
		to = curl_slist_append(NULL, connect_to);
		curl_easy_setopt(s->curl, CURLOPT_CONNECT_TO, to);
	}
	rc = curl_easy_perform(s->curl);
	curl_slist_free_all(to);
	if (rc != CURLE_OK) {
		down(s, curl_easy_strerror(rc));
		export_syslog_close(s);
		return -EAGAIN;
	}
	atomic_store(&s->connected, 1);
	return 0;
}

static curl_socket_t stream_fd(struct export_sink *s)
{
	curl_socket_t fd = CURL_SOCKET_BAD;

	if (s->curl)
		curl_easy_getinfo(s->curl, CURLINFO_ACTIVESOCKET, &fd);
	return fd;
}

/* A receiver that closed or reset the connection says so by making it readable. */
static bool stream_alive(struct export_sink *s)
{
	struct pollfd p = {.fd = stream_fd(s), .events = POLLIN | POLLRDHUP};

	return p.fd != CURL_SOCKET_BAD && poll(&p, 1, 0) == 0;
}

static int stream_send(struct export_sink *s, const char *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		size_t n = 0;
		CURLcode rc = curl_easy_send(s->curl, buf + off, len - off, &n);

		if (rc == CURLE_AGAIN) {
			struct pollfd p = {.fd = stream_fd(s), .events = POLLOUT};

			if (poll(&p, 1, ACK_WAIT_MS) <= 0)
				return -EAGAIN;
			continue;
		}
		if (rc != CURLE_OK)
			return -EAGAIN;
		off += n;
	}
	return 0;
}

/* Waits until the receiver's TCP stack has acknowledged everything sent (nothing left unacknowledged). */
static int stream_acked(struct export_sink *s)
{
	curl_socket_t fd = stream_fd(s);

	for (int waited = 0; waited <= ACK_WAIT_MS && !atomic_load(&s->halt); waited += 10) {
		int outq = 0;

		if (ioctl(fd, SIOCOUTQ, &outq))
			return -EAGAIN;
		if (outq == 0)
			return stream_alive(s) ? 0 : -EAGAIN;
		struct timespec t = {0, 10 * 1000000L};

		nanosleep(&t, NULL);
	}
	return -EAGAIN;
}

int export_syslog_deliver(struct export_sink *s, const char *const *lines, const size_t *lens, size_t n)
{
	char *msg = malloc(MSG_MAX + 16), *frames = NULL;
	size_t used = 0, cap = 0;
	int rc = 0;

	if (!msg)
		return -EAGAIN;
	if (s->cfg.transport == CRGW_SINK_UDP) {
		for (size_t i = 0; i < n && !rc; i++)
			rc = udp_send(s, msg, format(s, lines[i], lens[i], msg, MSG_MAX));
		free(msg);
		return rc;
	}
	if (s->curl && !stream_alive(s))
		export_syslog_close(s);
	if (!s->curl && stream_open(s)) {
		free(msg);
		return -EAGAIN;
	}
	/* Octet counting: "LEN SP MSG" for each message, the batch sent as one stream of frames. */
	for (size_t i = 0; i < n; i++) {
		size_t len = format(s, lines[i], lens[i], msg, MSG_MAX);
		char head[24];
		int h = snprintf(head, sizeof(head), "%zu ", len);

		if (used + (size_t)h + len > cap) {
			size_t ncap = (cap ? cap * 2 : 64 * 1024) + (size_t)h + len;
			char *nf = realloc(frames, ncap);

			if (!nf) {
				rc = -EAGAIN;
				break;
			}
			frames = nf;
			cap = ncap;
		}
		memcpy(frames + used, head, (size_t)h);
		memcpy(frames + used + h, msg, len);
		used += (size_t)h + len;
	}
	if (!rc)
		rc = stream_send(s, frames, used);
	if (!rc)
		rc = stream_acked(s);
	if (rc) {
		down(s, "the connection failed before the receiver acknowledged the batch");
		export_syslog_close(s);
	}
	free(frames);
	free(msg);
	return rc;
}
