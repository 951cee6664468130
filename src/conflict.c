/*
 * conflict.c: runs again what a conflict rolled back (see conflict.h).
 * Called by the flusher and the loader threads, each with its own state;
 * nothing here is shared.
 */
#include <errno.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "conflict.h"
#include "log.h"

#define CONFLICT_BACKOFF_MS 10   /* the first pause after a conflict: 0 to this, doubling */

void conflict_retry_init(struct conflict_retry *r)
{
	r->random = ((uint64_t)getpid() << 32) ^ (uint64_t)clock_ms() ^
		(uint64_t)time(NULL) << 20 ^ (uint64_t)(uintptr_t)r;
	if (r->random == 0)
		r->random = 1;
}

uint64_t conflict_random(struct conflict_retry *r)
{
	r->random ^= r->random >> 12;
	r->random ^= r->random << 25;
	r->random ^= r->random >> 27;
	return r->random * 2685821657736338717ULL;
}

/* Random, so that two writers do not meet again. */
static void pause_after(struct conflict_retry *r, int attempt)
{
	int64_t ms = (int64_t)(conflict_random(r) % ((uint64_t)CONFLICT_BACKOFF_MS << (attempt - 1)));
	struct timespec pause = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
		;
}

bool conflict_retry(struct conflict_retry *r, const char *who, const char *what,
		    const char *why, int attempt)
{
	bool again = attempt < CONFLICT_TRIES;

	log_debug("%s: %s: rolled back by a conflict with another writer (%s), attempt %d%s",
		  who, what, why, attempt, again ? "; run again" : "");
	if (again)
		pause_after(r, attempt);
	return again;
}
