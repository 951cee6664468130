/*
 * stats.h: what tallyd has done, counted per thread and summed when read.
 *
 * Every thread that serves requests or connections owns one slot and is the
 * only writer of it (relaxed atomic stores), so counting never takes a lock
 * or shares a cache line; stats_read() adds the slots up.  Counters of a
 * virtual host or a plugin live in that object (see chain.h), in the same
 * per-thread form, and start again at zero when a reload replaces them.
 */
#ifndef TALLYD_STATS_H
#define TALLYD_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Postfix action words tallyd tells apart; anything else is "other". */
enum stats_action {
	ACTION_DUNNO, ACTION_OK, ACTION_DEFER, ACTION_DEFER_IF_PERMIT, ACTION_DEFER_IF_REJECT,
	ACTION_REJECT, ACTION_HOLD, ACTION_DISCARD, ACTION_OTHER, ACTION_COUNT_OF
};
extern const char *const stats_action_names[ACTION_COUNT_OF];
enum stats_action stats_classify(const char *action);

struct stats_slot {
	_Atomic uint64_t connections;        /* accepted */
	_Atomic uint64_t refused;            /* over max_connections */
	_Atomic uint64_t requests;
	_Atomic uint64_t malformed;
	_Atomic uint64_t timeouts;
	_Atomic uint64_t waits;              /* requests that waited for the database */
	_Atomic uint64_t waits_expired;      /* ... and were answered without it (database.wait) */
	_Atomic uint64_t answers[ACTION_COUNT_OF];
} __attribute__((aligned(64)));

/* Slots for `threads` threads (workers, acceptor, main).  Once, at start. */
void stats_init(int threads);
/* The calling thread takes slot `index` for all its counting. */
void stats_bind(int index);
int stats_thread_index(void);
int stats_thread_count(void);

/* Single-writer increment: a relaxed load and store, no locked bus cycle. */
static inline void stats_bump(_Atomic uint64_t *counter, uint64_t n)
{
	atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n,
			      memory_order_relaxed);
}
struct stats_slot *stats_mine(void);

/* The sum over all slots. */
void stats_read(struct stats_slot *total);

/* Counters of one virtual host or plugin: one per thread slot. */
struct object_stats {
	_Atomic uint64_t calls;
	_Atomic uint64_t answers;
	_Atomic uint64_t waits;       /* runs that waited for the database */
	_Atomic uint64_t monitored;   /* a Quota's answers not given (monitor = true) */
	_Atomic uint64_t exempt;      /* requests that passed untouched (exempt = ...) */
	_Atomic uint64_t nanoseconds;
} __attribute__((aligned(64)));

struct object_totals {
	uint64_t calls, answers, waits, monitored, exempt, nanoseconds;
};

struct object_stats *object_stats_new(void);
void object_stats_read(const struct object_stats *per_thread, struct object_totals *out);

#endif
