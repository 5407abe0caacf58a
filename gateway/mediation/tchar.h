/* SPDX-License-Identifier: Apache-2.0 */
/* RFC 9110 token characters, for the mediation parsers (field names, auth schemes, media types). */
#ifndef CRGW_MEDIATION_TCHAR_H
#define CRGW_MEDIATION_TCHAR_H

#include <stdbool.h>
#include <string.h>

static inline bool med_is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c);
}

#endif
