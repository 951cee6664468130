/*
 * identity.h: who this tallyd is to the database.
 *
 * The instance id names this tallyd's row in tallyd_flushes, where each
 * flush records its sequence number (flusher.c).  A journal replayed after
 * a crash is resolved against that row, so the id must not change under
 * it: it is `instance_id` when the config sets one, else the id kept in
 * the journal directory's file `instance` (made at the first start:
 * host name and a random suffix), else, without a journal, the host name
 * and the first `listen` entry (nothing is replayed then).
 *
 * The owner token names this process ("HOST pid PID boot BOOT_ID"): the
 * row holds its owner's token and the database time it last showed
 * life.  A process takes the row only when it is free, its own, its lease
 * (IDENTITY_LEASE seconds) is over, or its owner was an earlier process on
 * this machine that is gone; otherwise two live tallyds share one id, and
 * the second refuses to start.
 *
 * Main thread at start (identity_init), read-only afterwards: any thread.
 */
#ifndef TALLYD_IDENTITY_H
#define TALLYD_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* A row's owner that showed no life for this long (database seconds) is
 * gone; the flusher renews its lease at least every IDENTITY_LEASE / 4. */
#define IDENTITY_LEASE 60

/* Decides the instance id and the owner token.  With a journal directory
 * the file `instance` there is locked for the process's life (a second
 * tallyd on the same directory is refused) and written when the id is
 * new.  `replay_unknown`: the journal holds a flush of unknown outcome,
 * which only the id that wrote it can resolve.  -1 with error[] set. */
int identity_init(const struct config *config, uint64_t replay_unknown, char *error,
		  size_t size);
void identity_free(void);

const char *identity_instance(void);
const char *identity_owner(void);

/* Whether this process may take a row whose owner is `holder` (empty:
 * none), last alive `age` seconds ago. */
bool identity_may_take(const char *holder, int64_t age);

#endif
