/*
 * record.h: the byte layout of journal records, written and read.
 *
 * Numbers are in the machine's byte order (a journal never leaves the
 * machine that wrote it); a string is its length (1, 2 or 4 bytes, as the
 * record type says) followed by its bytes.  Readers advance a cursor and
 * say false when the bytes end early, so a torn or damaged record is
 * refused, never read past.  Pure functions; any thread.
 */
#ifndef TALLYD_RECORD_H
#define TALLYD_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"

static inline void record_put(struct buf *b, const void *data, size_t len)
{
	buf_append(b, data, len);
}

/* A string with a `width`-byte length (1, 2 or 4); the caller keeps len
 * within it. */
static inline void record_put_string(struct buf *b, int width, const char *s, size_t len)
{
	uint32_t n = (uint32_t)len;

	buf_append(b, &n, (size_t)width);          /* little-endian: the low bytes */
	buf_append(b, s, len);
}

static inline bool record_get(const char **p, const char *end, void *out, size_t len)
{
	if ((size_t)(end - *p) < len)
		return false;
	memcpy(out, *p, len);
	*p += len;
	return true;
}

static inline bool record_get_string(const char **p, const char *end, int width, const char **s,
				     size_t *len)
{
	uint32_t n = 0;

	if (!record_get(p, end, &n, (size_t)width) || (size_t)(end - *p) < n)
		return false;
	*s = *p;
	*len = n;
	*p += n;
	return true;
}

#endif
