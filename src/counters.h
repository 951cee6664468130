/*
 * counters.h: the counter cache, (table, time key, key) → the four metrics.
 *
 * Each cached key holds three sets of values:
 *   flushed   totals the database had when tallyd last read or wrote them;
 *   in_flight increments handed to the flusher and not yet committed;
 *   pending   increments since then.
 * A Quota sees flushed + in_flight + pending, so nothing waits for a flush.
 *
 * Threads: workers call counters_add() and counters_total(); the flusher is
 * the only thread that moves pending to in_flight and in_flight to flushed
 * (counters_take_pending(), counters_committed(), ...).  The cache is split
 * into shards, each behind its own mutex, so workers rarely contend; no
 * lock is held while the database is asked.
 */
#ifndef TALLYD_COUNTERS_H
#define TALLYD_COUNTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "metrics.h"

struct counter;

/*
 * Tables.  Plugins register the tables they use at config time (and Quota
 * with uc_field at run time); ids are small, stable integers.  The time
 * patterns used with a table tell which periods are current: keys of other
 * periods are evicted once flushed.
 */
int counters_table(const char *name);           /* id, or -1 when 256 tables exist */
void counters_table_add_pattern(int table, const char *pattern);
const char *counters_table_name(int table);
int counters_table_count(void);
/* The request field a plugin keeps in the table (for tallyctl). */
void counters_table_set_field(int table, const char *field);
/* Tables kept for `field`, or named `field`: up to `max` ids; returns how
 * many there are.  *pattern gets the first one's first time pattern. */
int counters_tables_for(const char *field, int *ids, int max, const char **pattern);

/* How counters_total() reads a key it has not cached: returns 0 with *out
 * filled (zeros when the database has no such row or table), or -1 when the
 * database could not be asked. */
struct counters_loader {
	int (*load)(const char *table, const char *key, size_t key_len, const char *time,
		    size_t time_len, struct metric_values *out, void *arg);
	void *arg;
	int wait_seconds;   /* how long a worker waits for another's load */
};

void counters_init(const struct counters_loader *loader);
/* Frees every key (at exit, when no other thread uses the cache). */
void counters_free_all(void);

/* Adds one request's increments (worker threads).  Returns the number of
 * the flusher's take (counters_take_pending) that will carry them to the
 * database: the journal records it, so that a restart knows which
 * increments a committed flush already holds. */
uint32_t counters_add(int table, const char *key, size_t key_len, const char *time,
		      size_t time_len, const struct metric_values *delta);

/* The current totals.  A key not cached yet is loaded once, however many
 * workers ask at the same time.  Returns false when its database totals are
 * unknown (database unreachable): *total then holds tallyd's own unflushed
 * increments only. */
bool counters_total(int table, const char *key, size_t key_len, const char *time,
		    size_t time_len, struct metric_values *total);

/* ---- the flusher's side ---- */

/* A list of cached keys the flusher works on; pinned keys are not evicted. */
struct counter_batch {
	struct counter **keys;
	size_t count;
	size_t cap;
};

void counter_batch_free(struct counter_batch *batch);

/* What the flusher needs to know of a key.  The strings are immutable for
 * the key's lifetime; in_flight may be read without a lock by the flusher,
 * the only thread that changes it. */
struct counter_view {
	int table;
	const char *key;
	size_t key_len;
	const char *time;
	size_t time_len;
	const struct metric_values *in_flight;
};
void counter_view(const struct counter *c, struct counter_view *out);

/* True when a Quota reads the key's totals (it is loaded, or being loaded):
 * only such keys are worth reading back after a flush. */
bool counters_is_read(const struct counter *c);

/* Moves every pending increment to in_flight and adds the keys concerned
 * to `batch` (keys already in it from a failed flush get the new increments
 * added).  Returns the number of this take: takes are numbered 1, 2, ...
 * from start-up, and every increment counters_add() numbered with it or
 * lower is now in the batch. */
uint32_t counters_take_pending(struct counter_batch *batch);

/* At start-up, before any take: puts increments whose flush had an unknown
 * outcome back in flight, in `batch` (the journal's replay). */
void counters_restore_in_flight(int table, const char *key, size_t key_len, const char *time,
				size_t time_len, const struct metric_values *values,
				struct counter_batch *batch);

/* After COMMIT: the key's in-flight increments are in the database, whose
 * totals are now `total` (NULL when they were not read back: the cached
 * total then grows by what was in flight).  Unpins it. */
void counters_committed(struct counter *c, const struct metric_values *total);

/* Keys that Quota read since the last call, that are loaded and have no
 * increments in flight: their totals can be re-read (pinned). */
void counters_take_touched(struct counter_batch *batch);

/* After a refresh: `total` is what the database holds (NULL: no row).
 * With `failed`, the refresh did not happen; the key is only unpinned. */
void counters_refreshed(struct counter *c, const struct metric_values *total, bool failed);

/* Drops keys of periods that are no longer current and have nothing left
 * to write. */
size_t counters_evict_stale(time_t now);

/* For tallyctl show: the parts of a cached key; false when not cached. */
bool counters_peek(int table, const char *key, size_t key_len, const char *time,
		   size_t time_len, struct metric_values *flushed, struct metric_values *in_flight,
		   struct metric_values *pending);

/* After the database row was set to zero (flusher thread, nothing in
 * flight): the cached total restarts at zero plus what is pending. */
void counters_reset(int table, const char *key, size_t key_len, const char *time,
		    size_t time_len);

struct counters_stats {
	size_t keys;
	size_t dirty_keys;   /* keys with pending increments */
};
void counters_stats(struct counters_stats *out);

#endif
