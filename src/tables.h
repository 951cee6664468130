/*
 * tables.h: the accounting tables tallyd uses, and their periods.
 *
 * A table is table_prefix + field ("acct_client_address").  Plugins
 * register the tables they use while a config loads (Quota with uc_field
 * also at run time); a table id is a small integer that never changes.  A
 * table remembers its time patterns (those a config in force uses: the
 * others are retired after a reload), the request field it keeps (for
 * tallyctl), and whether a Quota reads it: only such tables are loaded
 * from the database.
 *
 * A period is one (table, time key) pair: ("acct_client_address",
 * "2026-11").  Cached keys name their period by a 16-bit id.  Per period
 * the registry keeps how far its bulk load got: once the loader has read
 * all of a period's rows, a key that is not cached is known to be zero.
 * Once a second (periods_tick) the acceptor marks the periods that are
 * current, or that start within PERIODS_LOOKAHEAD seconds, as live: the
 * loader loads live periods of read tables ahead of their edge, and the
 * flusher evicts keys of periods that are no longer live, then retires
 * those periods' ids.
 *
 * Threads: any.  `registry_lock` guards the table list and the period
 * index; a period's load state and key count are atomics that workers read
 * without the lock.  Each thread caches the period of (table, pattern) for
 * the current second (periods_now), so a request takes no lock here.
 */
#ifndef TALLYD_TABLES_H
#define TALLYD_TABLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define TABLES_MAX 256
#define PERIODS_LOOKAHEAD 3        /* seconds: how early a next period is loaded */

/* ---- tables ---- */

/* The id of table `name`, registered on first use; -1 when TABLES_MAX
 * tables exist. */
int tables_register(const char *name);
/* Adds a time pattern whose periods are loaded ahead, used by the config
 * of load `generation`; -1 when it is longer than TABLES_PATTERN_MAX - 1
 * or the table has as many patterns as it can keep (8). */
#define TABLES_PATTERN_MAX 64
int tables_add_pattern(int table, const char *pattern, uint64_t generation);
/* After a reload: drops the patterns no config since `generation` used. */
void tables_retire_patterns(uint64_t generation);
/* The request field a plugin keeps in the table (the first one given). */
void tables_set_field(int table, const char *field);
/* A Quota reads the table's totals: its periods are loaded. */
void tables_set_read(int table);
bool tables_is_read(int table);
const char *tables_name(int table);
int tables_count(void);
/* Tables kept for `field`, or named `field`: up to `max` ids; returns how
 * many there are.  pattern gets the first one's first time pattern ("" for
 * none). */
int tables_for(const char *field, int *ids, int max, char pattern[TABLES_PATTERN_MAX]);

/* ---- periods ---- */

/* The id of (table, time key), registered on first use; -1 when every id
 * is taken (logged). */
int periods_get(int table, const char *time, size_t time_len);
/* The period of `table` for time_pattern now (cached per thread and
 * second); -1 when the pattern gives no key now, or no id is free. */
int periods_now(int table, const char *pattern);
int periods_table(int period);
const char *periods_time(int period, size_t *len);

/* Whether a key of the period that is not cached is known to be zero. */
bool periods_is_complete(int period);
/* The loader: claims a live period of a read table that it has not read
 * yet (-1: none), and reports the end of its read: all rows, or failed
 * (tried again a few seconds later). */
int periods_claim_load(void);
void periods_load_done(int period, bool complete);
/* A period the snapshot knew in full (start-up): complete for lookups,
 * and still read from the database once it answers. */
void periods_set_complete(int period);

/* A key of the period left the cache under memory pressure: a key that is
 * not cached is no longer known to be zero (its totals are read). */
void periods_key_evicted(int period);

/* Keys cached per period (the counter cache reports them). */
void periods_key_added(int period);
void periods_key_removed(int period);

/* The acceptor, once a second: marks live periods for `now`. */
void periods_tick(time_t now);
/* False for a period that is neither current nor next: its keys can go. */
bool periods_is_live(int period);
/* True when a period that is not live still has cached keys. */
bool periods_any_past(void);
/* Frees the ids of periods that are not live and have no keys. */
void periods_retire(void);

/* Forgets everything (tests and exit, when no other thread runs). */
void tables_free_all(void);

#endif
