/*
 * loader.h: every read of the database, on threads of its own.
 *
 * Workers never ask the database.  The caches (counters.c, usercache.c)
 * share one way to get what they miss: an entry that is missing is marked
 * QUEUED and handed to the loader once (loader_want_*), and every request
 * that needs it waits, parked, for the loader's next wake (park.h).  The
 * loader threads (database.pool_size, each with its own connection) take
 * the queue in batches, many keys per SELECT, and wake the parked
 * connections when a batch is in the caches.  Behind the answers they also
 * read each live period of a quota's table in bulk (tables.h), re-read the
 * totals quotas use every refresh_interval, refresh stale user configs,
 * and run SqlUserConfig's preload_query every user_config_ttl.
 *
 * When the database cannot be reached, queued entries fail at once
 * (LOAD_FAILED): lookups answer LOOKUP_FAILED without waiting until the
 * next connection attempt (loader_may_retry).  When it hangs, nothing
 * comes back, and the waiting requests reach their deadline instead.
 *
 * Threads: workers, the flusher and the admin thread queue (holding the
 * entry's cache lock: the queue's lock comes after it); the loader threads
 * take.  `queue_lock` guards the queues and the schedule.
 */
#ifndef TALLYD_LOADER_H
#define TALLYD_LOADER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* What a cache lookup answers a worker. */
enum lookup {
	LOOKUP_FOUND,      /* the value is in memory */
	LOOKUP_WAIT,       /* the loader was asked; park until it wakes you */
	LOOKUP_FAILED,     /* it cannot be had now: the database is away, or the wait is over */
};

/* Where a cache entry stands with the loader. */
enum load_state {
	LOAD_NONE,         /* never asked for */
	LOAD_QUEUED,       /* asked for; the loader will answer */
	LOAD_DONE,         /* in memory */
	LOAD_FAILED,       /* the last attempt failed */
};

struct counter;
struct user_config;

/* A list of cached keys the loader or the flusher works on
 * (counter_batch_push() and counter_batch_free() are in counters.h). */
struct counter_batch {
	struct counter **keys;
	size_t count;
	size_t cap;
};

/* What a loader thread takes from the queue at once. */
struct loader_work {
	struct counter_batch counters;
	struct user_config **configs;
	size_t config_count;
	size_t config_cap;
};

/* Hands an entry that just became QUEUED to the loader (its cache's lock
 * held).  It stays valid until the loader answers it. */
void loader_want_counter(struct counter *c);
void loader_want_user_config(struct user_config *e);

/* False while the database is known to be unreachable and the next
 * connection attempt is not due: a failed entry is not queued again. */
bool loader_may_retry(void);

/* Moves everything queued into `work` (emptied first); false when nothing
 * is.  The loader threads' way to take work; tests call it to play the
 * loader. */
bool loader_take(struct loader_work *work);
void loader_work_free(struct loader_work *work);

/* Starts pool_size loader threads; -1 when one cannot be created. */
int loader_start(const struct config *config);
/* Fails what is queued, stops the threads, closes their connections. */
void loader_stop(void);

struct loader_status {
	uint64_t batches;            /* queued entries answered, in this many rounds */
	uint64_t keys_loaded;
	uint64_t configs_loaded;
	uint64_t periods_loaded;     /* bulk loads completed */
	uint64_t rows_bulk_loaded;
	uint64_t refreshes;
	uint64_t preloads;
	uint64_t failures;           /* rounds or loads that failed */
	uint64_t conflicts;          /* reads that lost a conflict and ran again (conflict.h) */
	size_t queued;               /* waiting in the queue now */
};
void loader_status(struct loader_status *out);

#endif
