/*
 * buf.h: a growable byte buffer, the only way tallyd builds strings whose
 * length input decides (connection I/O, SQL text, answers, stats).
 *
 * A buffer is owned by one thread at a time; it has no lock.  Data lives in
 * data[start .. len); buf_consume() drops bytes from the front without
 * moving memory, buf_compact() moves the rest to the front when worth it.
 * Contents are always NUL-terminated after len, so text can be printed.
 * write_all() is the one loop that writes bytes to a descriptor whole.
 */
#ifndef TALLYD_BUF_H
#define TALLYD_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "log.h"

struct buf {
	char *data;
	size_t start;   /* first unconsumed byte */
	size_t len;     /* end of valid data */
	size_t cap;     /* allocated, including room for the terminating NUL */
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);

/* Makes room for at least `more` bytes after len. */
void buf_reserve(struct buf *b, size_t more);

void buf_append(struct buf *b, const void *data, size_t len);
void buf_append_str(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Unconsumed bytes. */
static inline const char *buf_head(const struct buf *b) { return b->data + b->start; }
static inline size_t buf_size(const struct buf *b) { return b->len - b->start; }

/* Drops n bytes from the front; an emptied buffer starts over at 0. */
void buf_consume(struct buf *b, size_t n);

/* Moves unconsumed bytes to the front, and gives memory back when a large
 * buffer holds little (a client sent one big request, then small ones). */
void buf_compact(struct buf *b, size_t keep_cap);

/* Writes all `len` bytes to `fd`, again after EINTR and short writes: 0,
 * or -1 (errno set by the failed write(), 0 after a write of nothing). */
int write_all(int fd, const void *data, size_t len);

#endif
