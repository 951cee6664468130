/*
 * journal.h: the append-only journal that makes answered increments
 * survive a crash (accounting.journal; off when empty).
 *
 * Before a worker sends answers, every increment behind them is written to
 * the journal (journal_record(), then journal_wait()): the first waiting
 * thread writes the records of all waiting threads in one batch, so the
 * cost is one write() per batch, not per request.  Each record carries the
 * number of the flusher's take that will carry it to the database; the
 * flusher writes a marker before each COMMIT (journal_intent) and after it
 * (journal_committed), and starts a new segment file at each take.
 *
 * After a commit, every accounting.snapshot_interval, the flusher writes a
 * snapshot of the totals and user configs tallyd knows (snapshot.h) into
 * the journal, and the segments it supersedes are deleted.
 *
 * At start-up journal_open() reads it back: the snapshot fills the caches,
 * increments committed after it are added to its totals (so that a
 * restart finds its quotas even when the database is away), those of a
 * flush whose COMMIT outcome is unknown go back in flight for the flusher
 * to resolve by its sequence number, and the rest become pending again.
 */
#ifndef TALLYD_JOURNAL_H
#define TALLYD_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "counters.h"
#include "metrics.h"

/* What replay hands to the flusher. */
struct journal_replay {
	struct counter_batch in_flight;   /* increments of a flush of unknown outcome */
	uint64_t unknown_seq;             /* that flush's sequence number, or 0 */
	size_t records;                   /* increments read back */
	size_t restored;                  /* of which not known to be in the database */
	size_t snapshot_keys;             /* keys the snapshot knew */
	size_t snapshot_configs;          /* user configs it knew */
	size_t damaged_bytes;             /* skipped: their increments are lost */
};

/* Opens (creating it) the journal directory and replays it into the
 * counter cache; then writes a fresh base segment that supersedes the old
 * ones.  Returns 0, or -1 with a message in error[] (the daemon stops: it
 * must not run without the increments it was trusted with). */
int journal_open(const char *dir, bool sync, struct journal_replay *replay, char *error,
		 size_t error_size);
bool journal_enabled(void);
void journal_close(void);

/* Worker threads: appends an increment (no wait). */
void journal_record(uint32_t take, int period, const char *key, size_t key_len,
		    const struct metric_values *delta);
/* Waits until everything this thread recorded is written, or given up:
 * false when the disk refused some of it (ENOSPC, EIO, a short write),
 * which is then only in memory. */
bool journal_wait(void);
/* Batches the disk refused since start-up (stats). */
uint64_t journal_failures(void);

/* Flusher thread. */
/* Starts a new segment (when the current one has anything new); call just
 * before counters_take_pending(). */
void journal_rotate(void);
/* Flush `seq` will carry every increment of takes <= take.  False when the
 * marker is not on disk: the flush must wait, or a crash after its COMMIT
 * would replay its increments as never written. */
bool journal_intent(uint64_t seq, uint32_t take);
/* Flush `seq` (takes <= take) is committed. */
void journal_committed(uint64_t seq, uint32_t take);
/* Right after flush `seq` committed takes <= take, with nothing in flight:
 * writes a snapshot and deletes the segments it supersedes.  False when
 * none could be written now (no segment was started since the last one,
 * or the disk refused: logged). */
bool journal_snapshot(uint64_t seq, uint32_t take);

#endif
