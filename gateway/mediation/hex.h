/* SPDX-License-Identifier: Apache-2.0 */
/* One hexadecimal digit, for the mediation parsers (percent escapes, pkt-line lengths, object ids). */
#ifndef CRGW_MEDIATION_HEX_H
#define CRGW_MEDIATION_HEX_H

/* The value of hex digit `c` (either case), or -1. */
static inline int med_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
