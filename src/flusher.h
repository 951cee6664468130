/*
 * flusher.h: the write-behind thread.
 *
 * Every accounting.flush_interval (at a fixed rate: a flush that runs long is
 * followed at once by the next) the flusher takes the pending increments out
 * of the counter cache and writes them in one transaction: multi-row upserts
 * of flush_batch rows each, then a read of the totals of the keys it wrote
 * that requests wait for (the loader could not read them exactly while
 * they were in flight), then its flush sequence number, then COMMIT.
 * Other instances' increments reach the cache through the loader's
 * refresh.  A failed flush keeps its
 * increments and is retried with backoff; a COMMIT whose outcome is unknown
 * is looked up by its sequence number before anything else is written, so
 * no increment is lost or written twice.  Every few seconds it also drops
 * keys of past periods and unused user configs.
 */
#ifndef TALLYD_FLUSHER_H
#define TALLYD_FLUSHER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "journal.h"

/* Starts the thread, taking over what the journal's replay put back in
 * flight (replay may be NULL).  When the database answers, it first makes
 * sure of tallyd_flushes and the accounting tables (creating the missing
 * ones) and claims the instance's row; when it is away, that happens at
 * the first connection, before the first flush.  A reconnect later runs
 * no DDL.  -1 (logged) when the thread cannot be created, a table cannot
 * be used or made, or another live tallyd holds the row. */
int flusher_start(const struct config *config, struct journal_replay *replay);

/* Asks for a flush now and waits until it has ended; 0 when everything
 * pending was written (or no flusher runs: tallyd has no store), -1 when
 * the database refused. */
int flusher_flush_now(void);

/* Writes what is pending, then sets the database row of (period, key) to
 * zero; 0, or -1 when the database could not be reached. */
int flusher_reset(int period, const char *key, size_t key_len);

struct flusher_status {
	uint64_t flushes;             /* committed */
	uint64_t failures;            /* attempts that wrote nothing */
	uint64_t conflicts;           /* transactions rolled back by a conflict and
					 run again (Galera certification, deadlock,
					 lock wait, node not ready) */
	uint64_t rows_refused;        /* rows set aside for a data error, each time */
	uint64_t last_seq;
	int64_t last_flush;           /* unix time of the last committed flush, or 0 */
	double last_duration;         /* seconds */
	size_t last_keys;
	size_t in_flight_keys;        /* waiting for the database */
	char last_error[600];         /* of the last failed attempt, "" after a success */
};
void flusher_status(struct flusher_status *out);

/* The keys that have increments to write, pending or in flight, each
 * counted once (the outage log, the pending-keys gauge). */
size_t flusher_keys_waiting(void);

/* Writes what is pending and ends the thread.  When the database stays
 * unreachable for 2 × connect_timeout it gives up and logs what is lost;
 * a statement the database has not answered by then is cut off. */
void flusher_stop(void);

#endif
