/* SPDX-License-Identifier: Apache-2.0 */
/* Characters that change how text shows rather than being some: one rule for what policies hold and what is shown. */
#ifndef CRGW_POLICY_TEXT_H
#define CRGW_POLICY_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Whether the UTF-8 sequence at `p` (`n` bytes, one character) is a C0 or C1 control or DEL, a line or
 * paragraph separator (YAML and terminals break lines there), a bidirectional embedding, override or
 * isolate (a reader would see another order than the one matched), the byte order mark or the
 * noncharacter U+FFFE or U+FFFF.
 */
bool text_control_char(const unsigned char *p, size_t n);

/* Whether valid UTF-8 text `s` (`len` bytes) holds such a character. */
bool text_has_control(const char *s, size_t len);

#endif
