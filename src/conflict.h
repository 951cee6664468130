/*
 * conflict.h: what a database thread does when its statement or
 * transaction lost a conflict with another writer (STORE_RETRY: a Galera
 * certification failure or deadlock, 1213; a lock wait timeout, 1205; a
 * Galera node not ready, 1047).  It is no failure and no lost connection:
 * nothing of it was written, so it runs again at once on the same
 * connection, up to CONFLICT_TRIES times, after a short random pause so
 * that two writers do not meet again; each run is logged at debug.  The
 * flusher (its transaction) and the loader threads (their reads) use it;
 * each caller counts conflicts in its own statistics.
 *
 * Each thread keeps its own struct conflict_retry: no locking.
 */
#ifndef TALLYD_CONFLICT_H
#define TALLYD_CONFLICT_H

#include <stdbool.h>
#include <stdint.h>

#define CONFLICT_TRIES 5         /* runs of one statement or transaction before it waits */

struct conflict_retry {
	uint64_t random;         /* xorshift64* state: the pauses (and the flusher's jitter) */
};

/* Seeds the generator differently in each process and thread. */
void conflict_retry_init(struct conflict_retry *r);
/* A number from the thread's generator: enough for pauses and jitter. */
uint64_t conflict_random(struct conflict_retry *r);
/* After run `attempt` (1 the first) of `what` was rolled back by a
 * conflict, `why` the driver's message: logs it at debug as `who`'s; while
 * attempt < CONFLICT_TRIES pauses 0 to 10 ms, doubling with each attempt,
 * and returns true (run it again); false when the tries are used up (the
 * caller says so, at most at notice, and tries again later). */
bool conflict_retry(struct conflict_retry *r, const char *who, const char *what,
		    const char *why, int attempt);

#endif
