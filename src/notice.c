/*
 * notice.c: which keys a Quota plugin has told the log about (see
 * notice.h).  Lock-free; any worker thread.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"
#include "keyfold.h"
#include "log.h"
#include "notice.h"

#define NOTICE_SLOTS 4096                 /* a power of two: 32 KiB a plugin */
#define NOTICE_FULL (NOTICE_SLOTS / 4 * 3)

struct notice_set {
	uint64_t hash_key[2];
	_Atomic uint64_t slots[NOTICE_SLOTS];     /* 0: free */
	_Atomic unsigned used;
	_Atomic long long minute;                 /* of the lines counted in `lines` */
	_Atomic unsigned lines;
	_Atomic uint64_t left_out;
};

struct notice_set *notice_new(void)
{
	struct notice_set *set = xcalloc(1, sizeof(*set));

	hash_random_key(set->hash_key);
	return set;
}

void notice_free(struct notice_set *set)
{
	free(set);
}

/* Empties the set (several threads may, at once: harmless). */
static void start_afresh(struct notice_set *set)
{
	for (size_t i = 0; i < NOTICE_SLOTS; i++)
		atomic_store_explicit(&set->slots[i], 0, memory_order_relaxed);
	atomic_store(&set->used, 0);
}

/* True when the hash was not in the set (it is now). */
static bool claim(struct notice_set *set, uint64_t hash)
{
	if (atomic_load(&set->used) >= NOTICE_FULL)
		start_afresh(set);
	for (size_t probe = 0; probe < NOTICE_SLOTS; probe++) {
		_Atomic uint64_t *slot = &set->slots[(hash + probe) & (NOTICE_SLOTS - 1)];
		uint64_t seen = atomic_load_explicit(slot, memory_order_relaxed);
		if (seen == hash)
			return false;
		if (seen == 0 && atomic_compare_exchange_strong(slot, &seen, hash)) {
			atomic_fetch_add(&set->used, 1);
			return true;
		}
		if (seen == hash)
			return false;             /* another thread claimed it just now */
	}
	return true;
}

/* True when a line may be logged in this minute. */
static bool may_log(struct notice_set *set)
{
	long long minute = clock_seconds() / 60;
	long long seen = atomic_load(&set->minute);

	if (seen != minute && atomic_compare_exchange_strong(&set->minute, &seen, minute))
		atomic_store(&set->lines, 0);
	return atomic_fetch_add(&set->lines, 1) < NOTICE_PER_MINUTE;
}

bool notice_first(struct notice_set *set, int period, const char *key, size_t key_len,
		  uint64_t *left_out)
{
	uint64_t hash = key_hash_folded(set->hash_key, (uint64_t)period, key, key_len) | 1;

	if (!claim(set, hash))
		return false;
	if (!may_log(set)) {
		atomic_fetch_add(&set->left_out, 1);
		return false;
	}
	*left_out = atomic_exchange(&set->left_out, 0);
	return true;
}
