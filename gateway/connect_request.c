/* SPDX-License-Identifier: Apache-2.0 */
/* The explicit proxy's request head: llhttp (strict) with a bounded target buffer. */
#include <errno.h>
#include <string.h>

#include "connect_request.h"

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	struct crgw_connect_parser *cp = p->data;

	if (cp->authority_len + len >= sizeof(cp->authority)) {
		cp->authority_too_long = true;
		return HPE_USER;
	}
	memcpy(cp->authority + cp->authority_len, at, len);
	cp->authority_len += len;
	cp->authority[cp->authority_len] = '\0';
	return 0;
}

/*
 * A CONNECT head ends the HTTP part of the stream (llhttp then pauses with HPE_PAUSED_UPGRADE); any other
 * request pauses at its headers: this port forwards nothing else.
 */
static int on_headers_complete(llhttp_t *p)
{
	return llhttp_get_method(p) == HTTP_CONNECT ? 0 : HPE_PAUSED;
}

void crgw_connect_parser_init(struct crgw_connect_parser *cp)
{
	memset(cp, 0, sizeof(*cp));
	llhttp_settings_init(&cp->settings);
	cp->settings.on_url = on_url;
	cp->settings.on_headers_complete = on_headers_complete;
	/* No lenient flag is ever set: strict framing is what keeps request smuggling out. */
	llhttp_init(&cp->http, HTTP_REQUEST, &cp->settings);
	cp->http.data = cp;
}

int crgw_connect_parser_feed(struct crgw_connect_parser *cp, const char *data, size_t len, size_t *used)
{
	llhttp_errno_t err;

	*used = 0;
	if (cp->state)
		return cp->state == 1 ? 0 : cp->state;
	*used = len;
	err = llhttp_execute(&cp->http, data, len);
	if (err == HPE_OK)
		return -EAGAIN;
	if (err == HPE_PAUSED_UPGRADE && llhttp_get_method(&cp->http) == HTTP_CONNECT)
		*used = (size_t)(llhttp_get_error_pos(&cp->http) - data);
	if (err == HPE_PAUSED_UPGRADE && llhttp_get_method(&cp->http) == HTTP_CONNECT && cp->authority_len)
		cp->state = 0;
	else if (cp->authority_too_long)
		cp->state = -ENAMETOOLONG;
	else if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE)
		cp->state = llhttp_get_method(&cp->http) == HTTP_CONNECT ? -EBADMSG : -EOPNOTSUPP;
	else
		cp->state = -EBADMSG;
	if (cp->state == 0) {
		cp->state = 1; /* sticky "done" */
		return 0;
	}
	return cp->state;
}
