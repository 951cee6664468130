/*
 * ratekeys.h: the keys a RateLimit plugin tracks, key → its windows
 * (ratewindow.h), in memory (ratestate.h saves and restores them).
 *
 * One table per RateLimit plugin name, shared by the configs that name it:
 * a reload that keeps the plugin keeps its keys (ratekeys_open() finds the
 * table again; the last ratekeys_close() frees it).  Memory is bounded by
 * max_keys: a key whose windows are all empty is dropped when a new key
 * needs room, and when none is empty the key that accepted a message
 * longest ago is (counted apart: its client may send its limit again).
 *
 * Times are the rate clock's: clock_ms() plus an offset that
 * ratekeys_set_clock() sets at start, so that windows saved by one process
 * (ratestate.h) go on in the next.
 *
 * Threads: workers call ratekeys_offer() concurrently; the main thread
 * opens and closes tables (config load and free; no worker can use a table
 * being closed), configures them (a config going into force), and saves
 * and restores their keys (ratestate.c); the admin thread reads the counts
 * and shows or forgets keys.  Locks: the registry's mutex guards the list of tables, their
 * reference counts and what ratekeys_configure() set; each of a table's
 * 64 shards has a mutex that guards its hash chains, its list of keys by
 * last message and every field of its keys.  Counts are atomics.
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

/* What the table's plugin is configured with, for tallyctl and the state
 * file: the config in force says (the plugin's activate()).  Main thread. */
void ratekeys_configure(struct ratekeys *t, const char *field, const struct rate_limits *limits,
			size_t max_keys);

/* Sets the rate clock so that it reads `now` (ms) at once; before any
 * worker runs.  ratekeys_clock() reads it. */
void ratekeys_set_clock(int64_t now);
int64_t ratekeys_clock(void);

/* A message of `amount` units from `key` at `now` (ms, clock_ms()): -1 when
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
	uint64_t restored;         /* put back from the state file at start */
};
void ratekeys_stats(const struct ratekeys *t, struct ratekeys_stats *out);

/* A key's windows, copied out or in. */
struct ratekey_state {
	int64_t last;              /* ms of the rate clock: its last accepted message */
	uint64_t signature;        /* of the limits its windows were made for */
	uint32_t span;             /* seconds of its longest window */
	size_t window_count;
	struct ratewindow windows[RATEKEYS_WINDOWS_MAX];
};

/* What a table holds, for the state file (main thread).  The registry is
 * locked throughout: fn must not open or close tables.  `signature` is the
 * configured limits'. */
typedef void ratekeys_table_fn(struct ratekeys *t, const char *name, uint64_t signature,
			       void *arg);
void ratekeys_for_each_table(ratekeys_table_fn *fn, void *arg);
/* Every key of t, oldest message first within each shard; fn runs under
 * the shard's lock. */
typedef void ratekeys_key_fn(const char *key, size_t key_len, const struct ratekey_state *state,
			     void *arg);
void ratekeys_for_each_key(struct ratekeys *t, ratekeys_key_fn *fn, void *arg);

/* The table of plugin `name` and its configured limits' signature, or
 * NULL; no reference is taken (main thread, while its config holds it). */
struct ratekeys *ratekeys_find(const char *name, uint64_t *signature);
/* Puts a saved key back (restore in the order saved); false when its
 * windows are empty by now, or the state is not one a key can have. */
bool ratekeys_restore(struct ratekeys *t, const char *key, size_t key_len,
		      const struct ratekey_state *state);

/* tallyctl show and reset: for each table whose plugin is named `which`,
 * or whose field is `which`, calls fn with the table's configuration, the
 * limits the key's windows were made for (the configured ones, or other
 * ones from uc_limits; NULL when no key of the table made for them is
 * remembered) and the key's windows (NULL: no such key); with `forget`,
 * the key is dropped after it was copied.  Returns how many tables
 * matched.  The registry is locked while fn runs.  The admin thread. */
typedef void ratekeys_visit_fn(const char *name, const char *field,
			       const struct rate_limits *configured,
			       const struct rate_limits *limits, const struct ratekey_state *state,
			       void *arg);
int ratekeys_visit_key(const char *which, const char *key, size_t key_len, bool forget,
		       ratekeys_visit_fn *fn, void *arg);

#endif
