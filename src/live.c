/*
 * live.c: the configuration in force (see live.h).  `current` and each
 * thread's `in_use` mark are atomics with sequentially consistent order:
 * a thread marks the config it loaded, then checks that it is still
 * current; the replacer stores the new one, then waits for the marks.
 * Either the thread sees the new config and retries, or the replacer sees
 * the mark and waits.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "live.h"
#include "log.h"
#include "stats.h"

static _Atomic(const struct config *) current;
static _Atomic(const struct config *) *in_use;   /* one per stats slot */
static int thread_count;

void live_init(const struct config *first, int threads)
{
	atomic_store(&current, first);
	thread_count = threads;
	in_use = xcalloc((size_t)threads, sizeof(*in_use));
}

void live_free(void)
{
	free(in_use);
	in_use = NULL;
}

const struct config *live_enter(void)
{
	_Atomic(const struct config *) *mark = &in_use[stats_thread_index()];

	for (;;) {
		const struct config *c = atomic_load(&current);
		atomic_store(mark, c);
		if (atomic_load(&current) == c)
			return c;
	}
}

void live_leave(void)
{
	atomic_store(&in_use[stats_thread_index()], NULL);
}

void live_hold(const struct config *config)
{
	atomic_fetch_add(&((struct config *)config)->holds, 1);
}

void live_release(const struct config *config)
{
	atomic_fetch_sub(&((struct config *)config)->holds, 1);
}

const struct config *live_replace(const struct config *next)
{
	const struct config *old = atomic_exchange(&current, next);

	/* threads leave at the end of an event; held requests within
	 * database.wait */
	for (int i = 0; i < thread_count; i++) {
		while (atomic_load(&in_use[i]) == old)
			nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	while (atomic_load(&((struct config *)old)->holds) > 0)
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	return old;
}
