/*
 * ratestate.h: the RateLimit plugins' windows kept in a file, so that a
 * restart does not hand every client its whole limit again.
 *
 * ratestate_save() writes every key of every RateLimit table (ratekeys.h)
 * to a new file beside the old one, syncs it and renames it over the old
 * one: a reader finds the old file or the new one, whole.  The main thread
 * saves at stop and every accounting.snapshot_interval, so a crash (kill
 * -9, power cut) loses what the windows took in since the last save.
 * ratestate_load() reads the file back at start, before any worker runs:
 * it sets the rate clock so that it goes on from the saved one by the
 * wall-clock time that passed (keys whose windows emptied meanwhile are
 * not restored), and skips, logged, the keys of a plugin that is gone or
 * whose limits or metric changed.  A file that is damaged, cut short or of
 * another format is logged with its path and renamed PATH.damaged; tallyd
 * starts without it.
 *
 * Threads: the main thread only.  No state of its own.
 */
#ifndef TALLYD_RATESTATE_H
#define TALLYD_RATESTATE_H

#include <stdbool.h>

#include "config.h"

/* Where the state is kept: ratelimit_state, else "ratelimit.state" in the
 * journal directory, else NULL (not kept).  The caller frees it. */
char *ratestate_path(const struct config *config);

/* Reads `path` into the tables the config opened; sets the rate clock. */
void ratestate_load(const char *path);

/* Writes the tables to `path` (nothing when no RateLimit is configured);
 * 0, or -1 (logged).  `at_stop`: say so in the log, not only at debug. */
int ratestate_save(const char *path, bool at_stop);

#endif
