/* SPDX-License-Identifier: Apache-2.0 */
/*
 * crgw-ctl cp's stream, from a reader that sees what the sandbox sees (a child in the netns sandbox's
 * namespaces, or crgw-guest --copy-out in a VM) to the writer on the host (vm/workspace.c). Records of a
 * fixed header, the path (relative; "" for the top), the link target, then `size` bytes of a file. The
 * writer trusts nothing of it: names, lengths and links are checked there.
 */
#ifndef CRGW_COPY_STREAM_H
#define CRGW_COPY_STREAM_H

#include <stddef.h>
#include <stdint.h>

enum { REC_DIR = 'd', REC_FILE = 'f', REC_LINK = 'l', REC_END = 'e', REC_ERROR = 'x' };

struct rec {
	uint8_t type;
	uint8_t pad[3];
	uint32_t mode;
	uint32_t path_len;
	uint32_t link_len;
	uint64_t size;
};

#define COPY_PATH_MAX 4096
#define COPY_ENTRIES_MAX 1000000

/*
 * Streams `path` (a file, or a directory with everything beneath it; links are sent as links, never
 * followed) to `out`, then the end record; what cannot be read at the top becomes an error record.
 * Returns 0, or -errno when `out` broke or the top could not be read.
 */
int crgw_copy_send(int out, const char *path);

/* write(2) until all of `buf` is out (EINTR retried). 0, or -EPIPE when the reader is gone. */
int crgw_copy_write_all(int fd, const void *buf, size_t len);

/* Sends an error record saying `msg` (the writer ends the copy with it). */
void crgw_copy_send_error(int out, const char *msg);

#endif
