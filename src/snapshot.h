/*
 * snapshot.h: what tallyd knows of the database, kept in the journal so
 * that quotas survive a restart while the database is away.
 *
 * A snapshot is a run of journal records: for each live period of a
 * quota's table, whether it is known in full, and every cached key's
 * database totals, or the fact that they are not known; every user config
 * in memory, and which preload mappings are whole.  The flusher writes one
 * right after a commit (journal_snapshot), so its totals hold every
 * increment of the takes that commit carried and none after them; at start
 * the journal's replay reads it back before the increments that came
 * later.  Restored totals and configs are used until the database answers:
 * the loader then reads the periods and the configs again.
 *
 * Threads: the flusher encodes (reading the caches under their locks); the
 * main thread decodes at start-up, before any other thread runs.
 */
#ifndef TALLYD_SNAPSHOT_H
#define TALLYD_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Appends the snapshot records to `out`; returns how many keys they hold. */
size_t snapshot_encode(struct buf *out);

/* Reading a snapshot back: its records refer to periods and queries by
 * their number within it. */
struct snapshot_reader {
	int *periods;              /* snapshot number -> period id (-1: none) */
	size_t period_count;
	char **queries;            /* snapshot number -> sql_query text */
	size_t query_count;
	size_t keys;               /* totals restored */
	size_t configs;            /* user configs restored */
};

/* True for the record types a snapshot writes. */
bool snapshot_has_type(char type);
/* Applies one record of type `type` (already read) from *p; false when
 * the bytes are not a whole record. */
bool snapshot_decode(struct snapshot_reader *r, char type, const char **p, const char *end);
void snapshot_reader_free(struct snapshot_reader *r);

#endif
