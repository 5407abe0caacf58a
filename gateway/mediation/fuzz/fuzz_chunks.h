/* SPDX-License-Identifier: Apache-2.0 */
/* Chunk sizes for the git fuzz targets, drawn from a seed the input gives, so a crash replays exactly. */
#ifndef CRGW_MEDIATION_FUZZ_CHUNKS_H
#define CRGW_MEDIATION_FUZZ_CHUNKS_H

#include <stddef.h>
#include <stdint.h>

struct chunks {
	uint32_t state;
};

/* The next piece, 1 to `left` bytes: mostly tiny (lines and zlib streams cut everywhere), sometimes large. */
static inline size_t chunk_next(struct chunks *c, size_t left)
{
	size_t n;

	c->state = c->state * 1103515245u + 12345u;
	n = (c->state >> 16) % 8 == 0 ? 1 + (c->state >> 8) % 4096 : 1 + (c->state >> 20) % 7;
	return n < left ? n : left;
}

#endif
