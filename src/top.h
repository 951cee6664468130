/*
 * top.h: tallyctl top, the keys of a period with the largest totals of one
 * metric, from the counter cache: what this tallyd knows now, not the
 * database (keys it has not seen this period are not listed).  Admin
 * thread.
 */
#ifndef TALLYD_TOP_H
#define TALLYD_TOP_H

#include <stddef.h>

#include "buf.h"

#define TOP_DEFAULT 10
#define TOP_MAX 1000

/* Appends "keys N" (the period's keys in memory), then the `n` (1..TOP_MAX)
 * keys with the largest totals of `metric` (metrics.h), largest first, one
 * "RANK TOTAL KEY" line each; a total whose database part is not loaded
 * yet ends in " (not loaded)". */
void top_report(struct buf *out, int period, int metric, size_t n);

/* Writes a key on one line of an answer: the newline of a long key's form
 * (metrics.h) as the two characters \n. */
void top_append_key(struct buf *out, const char *key, size_t key_len);

#endif
