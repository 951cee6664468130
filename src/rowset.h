/*
 * rowset.h: cached keys as database rows, in the order statements want.
 *
 * The flusher writes and the loader reads keys of the counter cache in
 * statements of many rows, one period (table and time key) per statement.
 * A rowset is such a batch: the keys sorted by (table name, time key, key
 * bytes) — the same order on every instance, which keeps concurrent
 * flushes from deadlocking — each with its row.  rowset_each_chunk() runs
 * an operation on each period's rows, a chunk at a time.
 *
 * A rowset belongs to the thread that made it; the keys must stay pinned
 * (in a flush, queued, or being refreshed) while it is used.
 */
#ifndef TALLYD_ROWSET_H
#define TALLYD_ROWSET_H

#include <stdbool.h>
#include <stddef.h>

#include "counters.h"
#include "store.h"

struct rowset {
	struct counter **keys;
	struct store_row *rows;     /* rows[i] is keys[i]'s, values = its in-flight increments */
	size_t count;
	size_t cap;
};

/* Sorts the batch and makes the rowset of it (replacing what r held);
 * with `in_flight` (the flusher's batch only) the rows carry the keys'
 * increments in flight, else zeros. */
void rowset_fill(struct rowset *r, struct counter_batch *batch, bool in_flight);
/* The rows of `all` whose keys `keep` picks, in the same order. */
void rowset_pick(struct rowset *out, const struct rowset *all, bool (*keep)(const struct counter *c));
void rowset_free(struct rowset *r);

/* What rowset_each_chunk() runs: rows of one period of `table`. */
typedef enum store_status (*rowset_op)(struct store *s, const char *table,
				       struct store_row *rows, size_t count);
/* Runs op on each period's rows — `chunk` rows a call, and what is left
 * in powers of two, so that statements come in a few sizes — until one
 * returns something else than STORE_OK; *done counts the rows of the
 * calls that succeeded. */
enum store_status rowset_each_chunk(struct rowset *r, struct store *s, size_t chunk, rowset_op op,
				    size_t *done);

#endif
