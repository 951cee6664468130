/*
 * counters.h: the counter cache, (period, key) → the four metrics.
 *
 * A cached key holds the totals the database had when tallyd last read or
 * wrote them (`flushed`) and, while it has any, a delta of increments the
 * flusher has taken but not committed (`in_flight`) and increments since
 * (`pending`).  A Quota sees flushed + in_flight + pending.
 *
 * Where the database totals come from, without a worker ever asking the
 * database: the loader reads a period's rows in bulk (counters_bulk_row);
 * once the whole period is read, a key that is not cached is known to be
 * zero and is created loaded.  A key the cache does not know yet is queued
 * for the loader once (QUEUED); the worker that asked is told to wait
 * (LOOKUP_WAIT, with a park ticket), and every worker asking meanwhile too.
 * The flusher's commits and the loader's refreshes keep loaded totals
 * current.
 *
 * Exactness: every commit applied to the cache gets the next flush epoch,
 * and each key remembers its last one.  A total the loader read is used
 * only if the key has nothing in flight and no commit reached it since the
 * epoch read before the query; otherwise it might count in-flight
 * increments twice or not at all, and the key is queued again (or left to
 * the flusher, which reads totals back inside its own transaction).
 *
 * Threads: workers add and read; the loader fills; the flusher moves
 * pending → in flight → flushed; the admin thread peeks.  The cache is
 * split into 256 shards, each behind its own mutex; no lock is held while
 * the database is asked.  Lock order: a shard, then the loader's queue.
 */
#ifndef TALLYD_COUNTERS_H
#define TALLYD_COUNTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loader.h"
#include "metrics.h"

struct counter;

void counter_batch_push(struct counter_batch *batch, struct counter *c);
void counter_batch_free(struct counter_batch *batch);

void counters_init(void);
/* Frees every key (at exit, when no other thread uses the cache). */
void counters_free_all(void);

/* ---- workers ---- */

/* Adds one request's increments.  Returns the number of the flusher's take
 * (counters_take_pending) that will carry them to the database: the
 * journal records it, so that a restart knows which increments a committed
 * flush already holds. */
uint32_t counters_add(int period, const char *key, size_t key_len,
		      const struct metric_values *delta);

/* The key's totals.  LOOKUP_FOUND: *total is exact as far as this tallyd
 * knows.  LOOKUP_WAIT: the loader was asked for them; park on *ticket.
 * LOOKUP_FAILED (may_wait false, or the database is known to be away):
 * *total holds tallyd's own unwritten increments only. */
enum lookup counters_total(int period, const char *key, size_t key_len, bool may_wait,
			   struct metric_values *total, uint64_t *ticket);

/* ---- the loader ---- */

/* The flush epoch now: read it before a query whose totals will be used. */
uint32_t counters_epoch(void);
/* A queued key's totals (NULL: no row) as of a query that began at `epoch`. */
void counters_loaded(struct counter *c, const struct metric_values *total, uint32_t epoch);
/* The queued key could not be read: lookups fail until the next retry. */
void counters_load_failed(struct counter *c);
/* One row of a period's bulk load, read by a query that began at `epoch`. */
void counters_bulk_row(int period, const char *key, size_t key_len,
		       const struct metric_values *total, uint32_t epoch);
/* Loaded keys that a Quota read since they were last taken: their totals
 * are re-read for other instances' increments (pinned until refreshed).
 * Takes from `shard` (0 to begin) on, until the batch holds `max` keys or
 * more; returns the shard to go on from, or -1 after the last. */
int counters_take_touched(struct counter_batch *batch, int shard, size_t max);
void counters_refreshed(struct counter *c, const struct metric_values *total, uint32_t epoch,
			bool failed);

/* ---- the flusher ---- */

/* What the flusher and the loader need to know of a key: immutable, read
 * without a lock. */
struct counter_view {
	int period;
	const char *key;
	size_t key_len;
};
void counter_view(const struct counter *c, struct counter_view *out);
/* The flusher alone, for a key in its batch: the increments in flight.  It
 * is the only thread that changes them, and a delta with anything in
 * flight is never freed, so it reads them without the lock.  Zeros when
 * there are none. */
const struct metric_values *counters_in_flight(const struct counter *c);

/* True when requests wait for the key's totals: such keys are read back
 * inside a flush's transaction. */
bool counters_wants_read_back(const struct counter *c);

/* Moves every pending increment to in_flight and adds the keys concerned
 * to `batch` (keys already in it from a failed flush get the new increments
 * added).  Returns the number of this take: takes are numbered 1, 2, ...
 * from start-up, and every increment counters_add() numbered with it or
 * lower is now in the batch. */
uint32_t counters_take_pending(struct counter_batch *batch);

/* At start-up, before any take: puts increments whose flush had an unknown
 * outcome back in flight, in `batch` (the journal's replay). */
void counters_restore_in_flight(int period, const char *key, size_t key_len,
				const struct metric_values *values, struct counter_batch *batch);

/* After COMMIT: a new epoch for the commits about to be applied. */
uint32_t counters_next_epoch(void);
/* The key's in-flight increments are in the database, whose totals are
 * now `total` (NULL when they were not read back: a loaded total then
 * grows by what was in flight). */
void counters_committed(struct counter *c, const struct metric_values *total, uint32_t epoch);
/* The database refused the key's row: its in-flight increments are pending
 * again, for the next flush.  Returns the take that will carry them (for
 * the journal). */
uint32_t counters_refused(struct counter *c);

/* With more than `max` keys cached, evicts keys that have nothing to
 * write and that no thread holds, down to 90% of max (their periods are
 * then no longer known in full: such keys are read again when asked for).
 * Returns how many. */
size_t counters_evict_over(size_t max);

/* Drops keys of periods that are no longer live and have nothing left to
 * write; returns how many. */
size_t counters_evict_stale(void);

/* ---- tallyctl and the snapshot ---- */

/* The parts of a cached key; false when it is not cached.  *loaded says
 * whether its database totals are known. */
bool counters_peek(int period, const char *key, size_t key_len, struct metric_values *flushed,
		   struct metric_values *in_flight, struct metric_values *pending, bool *loaded);
/* After the database row was set to zero (flusher thread, nothing in
 * flight): the cached total restarts at zero plus what is pending. */
void counters_reset(int period, const char *key, size_t key_len);
/* Calls fn for every cached key, with its flushed totals, or NULL when
 * they are not known (the snapshot). */
void counters_for_each_key(void (*fn)(int period, const char *key, size_t key_len,
				      const struct metric_values *flushed, void *arg),
			   void *arg);
/* Calls fn for every cached key of `period`, with its total as a Quota
 * sees it (flushed, in flight and pending); `known` is false when the
 * database's part is not loaded (the total is then this tallyd's own
 * increments).  Each shard is locked in turn: fn must be quick and must
 * not call counters.  tallyctl top. */
void counters_for_each_in(int period,
			  void (*fn)(const char *key, size_t key_len,
				     const struct metric_values *total, bool known, void *arg),
			  void *arg);
/* Start-up, from the snapshot: a key whose database totals were `flushed`
 * (NULL: not known). */
void counters_restore(int period, const char *key, size_t key_len,
		      const struct metric_values *flushed);
/* Start-up, from the journal: increments committed after the snapshot was
 * taken, which its totals lack. */
void counters_restore_settled(int period, const char *key, size_t key_len,
			      const struct metric_values *values);

struct counters_stats {
	size_t keys;
	size_t dirty_keys;   /* keys with pending increments */
	size_t queued_keys;  /* keys the loader has been asked for */
	uint64_t evicted;    /* keys let go for cache_max_keys, ever */
};
void counters_stats(struct counters_stats *out);
/* The keys with pending increments that are in the flusher's batch too
 * (each has something in flight as well): counted once where both are
 * added up.  Walks the pending keys. */
size_t counters_pending_in_flight(void);

#endif
