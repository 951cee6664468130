/*
 * stats.c: per-thread counters (see stats.h).  `slots` is allocated once
 * before any thread counts and never moves; each slot has one writer, and
 * readers (the admin thread) sum them with relaxed loads.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "stats.h"

const char *const stats_action_names[ACTION_COUNT_OF] = {
	"dunno", "ok", "defer", "defer_if_permit", "defer_if_reject", "reject", "hold",
	"discard", "other",
};

static struct stats_slot *slots;
static int slot_count;
static _Thread_local int my_slot;

void stats_init(int threads)
{
	slot_count = threads;
	slots = aligned_alloc(64, sizeof(*slots) * (size_t)threads);
	if (slots == NULL)
		fatal("out of memory for statistics");
	memset(slots, 0, sizeof(*slots) * (size_t)threads);
}

void stats_bind(int index)
{
	my_slot = index;
}

int stats_thread_index(void)
{
	return my_slot;
}

int stats_thread_count(void)
{
	return slot_count;
}

struct stats_slot *stats_mine(void)
{
	return &slots[my_slot];
}

static bool ends_word(char c)
{
	return c == '\0' || c == ' ' || c == '\t';
}

/* True when the first word of `action` is `name` (lower case), ignoring
 * ASCII case as strncasecmp() does in the C locale.  No library calls and
 * no strlen: this runs for every answer. */
static bool first_word_is(const char *action, const char *name)
{
	size_t i = 0;

	for (; name[i] != '\0'; i++) {
		unsigned char c = (unsigned char)action[i];
		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		if (c != (unsigned char)name[i])
			return false;
	}
	return ends_word(action[i]);
}

enum stats_action stats_classify(const char *action)
{
	for (int i = 0; i < ACTION_OTHER; i++) {
		if (first_word_is(action, stats_action_names[i]))
			return (enum stats_action)i;
	}
	/* "450 4.7.1 text" and "550 ..." answers: a deferral or a rejection */
	bool three_characters = !ends_word(action[0]) && !ends_word(action[1]) &&
				!ends_word(action[2]) && ends_word(action[3]);
	if (action[0] == '4' && three_characters)
		return ACTION_DEFER;
	if (action[0] == '5' && three_characters)
		return ACTION_REJECT;
	return ACTION_OTHER;
}

static uint64_t load(const _Atomic uint64_t *counter)
{
	return atomic_load_explicit(counter, memory_order_relaxed);
}

void stats_read(struct stats_slot *total)
{
	memset(total, 0, sizeof(*total));
	for (int i = 0; i < slot_count; i++) {
		const struct stats_slot *s = &slots[i];
		total->connections += load(&s->connections);
		total->refused += load(&s->refused);
		total->requests += load(&s->requests);
		total->malformed += load(&s->malformed);
		total->timeouts += load(&s->timeouts);
		total->waits += load(&s->waits);
		total->waits_expired += load(&s->waits_expired);
		for (int a = 0; a < ACTION_COUNT_OF; a++)
			total->answers[a] += load(&s->answers[a]);
	}
}

struct object_stats *object_stats_new(void)
{
	size_t size = sizeof(struct object_stats) * (size_t)slot_count;
	struct object_stats *per_thread = aligned_alloc(64, size ? size : 64);

	if (per_thread == NULL)
		fatal("out of memory for statistics");
	memset(per_thread, 0, size);
	return per_thread;
}

void object_stats_read(const struct object_stats *per_thread, struct object_totals *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < slot_count; i++) {
		out->calls += load(&per_thread[i].calls);
		out->answers += load(&per_thread[i].answers);
		out->waits += load(&per_thread[i].waits);
		out->monitored += load(&per_thread[i].monitored);
		out->exempt += load(&per_thread[i].exempt);
		out->nanoseconds += load(&per_thread[i].nanoseconds);
	}
}
