/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.x request heads and chunked bodies: llhttp (strict) plus the checks it leaves to its caller. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "http_request.h"

static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

static struct crgw_http_span extend(struct crgw_http_parser *hp, struct crgw_http_span s, const char *at,
				    size_t len)
{
	size_t off = (size_t)(at - hp->base);

	/* llhttp may hand one element over in pieces; they are adjacent in the head. */
	if (s.len == 0)
		s.off = (uint32_t)off;
	s.len = (uint32_t)(off + len - s.off);
	return s;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	struct crgw_http_parser *hp = p->data;

	if (!hp->base)
		return 0; /* a chunked body's trailer: passed on, not recorded */
	hp->req.target = extend(hp, hp->req.target, at, len);
	return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct crgw_http_parser *hp = p->data;
	struct crgw_http_request *r = &hp->req;

	if (!hp->base)
		return 0; /* a trailer field */
	/* A name after a value starts the next field. */
	if (!hp->in_name) {
		if (r->nfields == CRGW_HTTP_FIELDS_MAX) {
			hp->too_many_fields = true;
			return HPE_USER;
		}
		r->fields[r->nfields++] = (struct crgw_http_field){ 0 };
	}
	hp->in_name = true;
	r->fields[r->nfields - 1].name = extend(hp, r->fields[r->nfields - 1].name, at, len);
	return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct crgw_http_parser *hp = p->data;
	struct crgw_http_field *f = &hp->req.fields[hp->req.nfields ? hp->req.nfields - 1 : 0];

	if (!hp->base)
		return 0; /* a trailer field */
	hp->in_name = false;
	f->value = extend(hp, f->value, at, len);
	return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
	struct crgw_http_parser *hp = p->data;
	struct crgw_http_field *f = &hp->req.fields[hp->req.nfields ? hp->req.nfields - 1 : 0];

	if (!hp->base)
		return 0; /* a trailer field */
	hp->in_name = false; /* an empty value ends its field too */
	while (f->value.len && (hp->base[f->value.off + f->value.len - 1] == ' ' ||
				hp->base[f->value.off + f->value.len - 1] == '\t'))
		f->value.len--;
	return 0;
}

static int on_headers_complete(llhttp_t *p)
{
	struct crgw_http_parser *hp = p->data;
	struct crgw_http_request *r = &hp->req;

	if (!hp->base)
		return 0;
	r->method = (llhttp_method_t)llhttp_get_method(p);
	r->minor = llhttp_get_http_minor(p);
	r->keep_alive = llhttp_should_keep_alive(p);
	r->chunked = (p->flags & F_CHUNKED) != 0;
	r->upgrade = p->upgrade != 0 && r->method != HTTP_CONNECT;
	r->content_length = (p->flags & F_CONTENT_LENGTH) ? p->content_length : 0;
	if (llhttp_get_http_major(p) != 1 || r->minor > 1) {
		hp->error = "HTTP version not supported";
		return -1;
	}
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	struct crgw_http_parser *hp = p->data;

	if (!hp->base && hp->on_body)
		hp->on_body(hp->body_arg, at, len);
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	struct crgw_http_parser *hp = p->data;

	hp->message_done = true;
	return HPE_PAUSED;
}

void crgw_http_parser_init(struct crgw_http_parser *hp)
{
	memset(hp, 0, sizeof(*hp));
	llhttp_settings_init(&hp->settings);
	hp->settings.on_url = on_url;
	hp->settings.on_header_field = on_header_field;
	hp->settings.on_header_value = on_header_value;
	hp->settings.on_header_value_complete = on_header_value_complete;
	hp->settings.on_headers_complete = on_headers_complete;
	hp->settings.on_message_complete = on_message_complete;
	hp->settings.on_body = on_body;
	/* No lenient flag is ever set: strict framing is what keeps request smuggling out. */
	llhttp_init(&hp->http, HTTP_REQUEST, &hp->settings);
	hp->http.data = hp;
}

static int fail(struct crgw_http_parser *hp, const char *why)
{
	hp->error = why;
	return -EBADMSG;
}

/*
 * True when a Connection field names Host, Content-Length or Transfer-Encoding. A proxy removes the fields
 * Connection names, and without these the upstream would frame or route the request differently from the
 * gateway: the body would become a request of its own, one the policy never decided.
 */
static bool connection_names_framing(const char *buf, const struct crgw_http_request *r)
{
	static const char *const framing[] = { "host", "content-length", "transfer-encoding" };

	for (size_t j = 0; j < sizeof(framing) / sizeof(framing[0]); j++)
		if (crgw_http_connection_lists(buf, r, framing[j], strlen(framing[j])))
			return true;
	return false;
}

/*
 * Finds the end of the head in the bytes not scanned yet, refusing NUL, a CR not followed by LF, and an LF
 * not preceded by CR on the way: llhttp would take some of these, and a peer behind the gateway might read
 * them differently. Returns the head's length, 0 when it has not ended yet, or -EBADMSG.
 */
static long find_end(struct crgw_http_parser *hp, const char *buf, size_t len)
{
	size_t i = hp->scanned;

	if (i == 0 && len > 0 && !(buf[0] >= 'A' && buf[0] <= 'Z'))
		return fail(hp, "not an HTTP request");
	for (; i < len; i++) {
		char c = buf[i];

		if (c == '\0')
			return fail(hp, "NUL in the request head");
		if (c == '\r') {
			if (i + 1 == len)
				break; /* decided when the next byte comes */
			if (buf[i + 1] != '\n')
				return fail(hp, "bare CR in the request head");
		} else if (c == '\n') {
			if (i == 0 || buf[i - 1] != '\r')
				return fail(hp, "bare LF in the request head");
			if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r')
				return (long)(i + 1);
		}
	}
	hp->scanned = i;
	return 0;
}

/* Every field line must start with a token and carry one up to its colon: no folding, no odd names. */
static int check_field_lines(struct crgw_http_parser *hp, const char *buf, size_t head_len)
{
	const char *line = memchr(buf, '\n', head_len);
	const char *end = buf + head_len - 2; /* the final empty line */

	for (line = line + 1; line < end;) {
		const char *eol = memchr(line, '\r', (size_t)(end - line));
		const char *p = line;

		if (*line == ' ' || *line == '\t')
			return fail(hp, "obsolete line folding");
		while (p < eol && *p != ':') {
			if (!is_tchar((unsigned char)*p))
				return fail(hp, "invalid header field name");
			p++;
		}
		if (p == line || p == eol)
			return fail(hp, "invalid header field name");
		line = eol + 2;
	}
	return 0;
}

int crgw_http_parse_head(struct crgw_http_parser *hp, const char *buf, size_t len)
{
	struct crgw_http_request *r = &hp->req;
	llhttp_errno_t err;
	unsigned hosts = 0;
	long end;

	if (hp->error)
		return -EBADMSG;
	end = find_end(hp, buf, len < CRGW_HTTP_HEAD_MAX ? len : CRGW_HTTP_HEAD_MAX);
	if (end < 0)
		return (int)end;
	if (end == 0)
		return len >= CRGW_HTTP_HEAD_MAX ? -E2BIG : -EAGAIN;
	if (check_field_lines(hp, buf, (size_t)end))
		return -EBADMSG;
	hp->base = buf;
	r->head_len = (size_t)end;
	err = llhttp_execute(&hp->http, buf, (size_t)end);
	hp->base = NULL;
	if (err == HPE_PAUSED && !hp->message_done)
		err = HPE_INTERNAL; /* nothing but the end of the message pauses */
	if (err != HPE_OK && err != HPE_PAUSED) {
		if (hp->too_many_fields)
			return fail(hp, "too many header fields");
		return fail(hp, hp->error ? hp->error : llhttp_get_error_reason(&hp->http));
	}
	if (err == HPE_PAUSED && llhttp_get_error_pos(&hp->http) != buf + end)
		return fail(hp, "request head ends unexpectedly");
	r->method_text.len = (uint32_t)((const char *)memchr(buf, ' ', (size_t)end) - buf); /* llhttp saw one */
	for (unsigned i = 0; i < r->nfields; i++) {
		if (crgw_http_field_is(buf, r->fields[i].name, "host")) {
			hosts++;
			r->host = r->fields[i].value;
			if (r->host.len == 0)
				r->host.off = 0;
		}
	}
	if (hosts > 1)
		return fail(hp, "more than one Host field");
	if (hosts == 0 && r->minor == 1)
		return fail(hp, "HTTP/1.1 request without Host");
	if (connection_names_framing(buf, r))
		return fail(hp, "Connection names Host, Content-Length or Transfer-Encoding");
	/* RFC 9112 6.1: its framing is faulty. An upstream of 1.0 would read the chunks as the body's bytes. */
	for (unsigned i = 0; i < r->nfields && r->minor == 0; i++)
		if (crgw_http_field_is(buf, r->fields[i].name, "transfer-encoding"))
			return fail(hp, "Transfer-Encoding in an HTTP/1.0 request");
	if (r->target.len == 0)
		return fail(hp, "empty request target");
	return 0;
}

int crgw_http_parse_body(struct crgw_http_parser *hp, const char *data, size_t len, size_t *used)
{
	llhttp_errno_t err;

	*used = 0;
	if (hp->error)
		return -EBADMSG;
	if (hp->message_done)
		return 0;
	err = llhttp_execute(&hp->http, data, len);
	if (err == HPE_OK) {
		*used = len;
		return -EAGAIN;
	}
	if (err == HPE_PAUSED && hp->message_done) {
		*used = (size_t)(llhttp_get_error_pos(&hp->http) - data);
		return 0;
	}
	return fail(hp, llhttp_get_error_reason(&hp->http));
}

int crgw_http_absolute_target(const char *target, size_t len, struct crgw_http_span *authority,
			      struct crgw_http_span *path, const char **why)
{
	static const char http[] = "http://";
	size_t at = sizeof(http) - 1, end;

	if (len > 0 && (target[0] == '/' || (len == 1 && target[0] == '*')))
		return -ENOENT;
	if (len > 8 && strncasecmp(target, "https://", 8) == 0) {
		*why = "an https URL needs CONNECT";
		return -EINVAL;
	}
	if (len < at || strncasecmp(target, http, at)) {
		*why = "the request target is neither a path nor an http URL";
		return -EINVAL;
	}
	for (end = at; end < len && target[end] != '/' && target[end] != '?'; end++) {
		if (target[end] == '@') {
			*why = "user information in the request target";
			return -EINVAL;
		}
		if (target[end] == '#') {
			*why = "a fragment in the request target";
			return -EINVAL;
		}
	}
	if (end == at) {
		*why = "the URL names no host";
		return -EINVAL;
	}
	if (memchr(target + end, '#', len - end)) {
		*why = "a fragment in the request target";
		return -EINVAL;
	}
	authority->off = (uint32_t)at;
	authority->len = (uint32_t)(end - at);
	path->off = (uint32_t)end;
	path->len = (uint32_t)(len - end);
	return 0;
}

bool crgw_http_field_is(const char *base, struct crgw_http_span span, const char *name)
{
	size_t n = strlen(name);

	return span.len == n && strncasecmp(base + span.off, name, n) == 0;
}

bool crgw_http_connection_lists(const char *base, const struct crgw_http_request *r, const char *name, size_t len)
{
	for (unsigned i = 0; i < r->nfields; i++) {
		const char *v, *end;

		if (!crgw_http_field_is(base, r->fields[i].name, "connection"))
			continue;
		v = base + r->fields[i].value.off;
		end = v + r->fields[i].value.len;
		while (v < end) {
			const char *comma = memchr(v, ',', (size_t)(end - v));
			const char *tok_end = comma ? comma : end;

			while (v < tok_end && (*v == ' ' || *v == '\t'))
				v++;
			while (tok_end > v && (tok_end[-1] == ' ' || tok_end[-1] == '\t'))
				tok_end--;
			if ((size_t)(tok_end - v) == len && strncasecmp(v, name, len) == 0)
				return true;
			v = comma ? comma + 1 : end;
		}
	}
	return false;
}
