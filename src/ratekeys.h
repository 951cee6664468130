/*
 * ratekeys.h: the keys a RateLimit plugin tracks, key → its windows
 * (ratewindow.h), in memory only.
 *
 * One table per RateLimit plugin name, shared by the configs that name it:
 * a reload that keeps the plugin keeps its keys (ratekeys_open() finds the
 * table again; the last ratekeys_close() frees it).  Memory is bounded by
 * max_keys: a key whose windows are all empty is dropped when a new key
 * needs room, and when none is empty the key that accepted a message
 * longest ago is (counted apart: its client may send its limit again).
 *
 * Threads: workers call ratekeys_offer() concurrently; the main thread
 * opens and closes tables (config load and free), while no worker can use
 * a table being closed; the admin thread reads the counts.  Locks: the
 * registry's mutex guards the list of tables and their reference counts;
 * each of a table's 64 shards has a mutex that guards its hash chains, its
 * list of keys by last message and every field of its keys.  Counts are
 * atomics.
 */
#ifndef TALLYD_RATEKEYS_H
#define TALLYD_RATEKEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ratewindow.h"

#define RATEKEYS_WINDOWS_MAX 8       /* windows per key */

/* The limits a key is checked against, and what tells them apart. */
struct rate_limits {
	struct rate_limit limit[RATEKEYS_WINDOWS_MAX];
	size_t count;
	uint64_t signature;        /* of the limits and the metric: a key whose windows
				      were made for other limits starts afresh */
};

/* Sets limits->signature from the limits and `metric`. */
void rate_limits_sign(struct rate_limits *limits, int metric);

struct ratekeys;

/* The table of plugin `name` (made when no config has it).  Main thread. */
struct ratekeys *ratekeys_open(const char *name);
/* Gives the table up; the last close frees it.  NULL is ignored. */
void ratekeys_close(struct ratekeys *t);

/* A message of `amount` units from `key` at `now` (ms, monotonic): -1 when
 * every window takes it (counted in all), else the index of the first
 * window it would overflow (counted in none).  A new key makes room for
 * itself when the table holds max_keys (the caller's config says how
 * many).  Any worker. */
int ratekeys_offer(struct ratekeys *t, const char *key, size_t key_len,
		   const struct rate_limits *limits, uint64_t amount, int64_t now,
		   size_t max_keys);

struct ratekeys_stats {
	size_t keys;               /* tracked now */
	uint64_t evicted_idle;     /* dropped with empty windows, ever */
	uint64_t evicted_active;   /* dropped with messages in a window (max_keys too low) */
};
void ratekeys_stats(const struct ratekeys *t, struct ratekeys_stats *out);

#endif
