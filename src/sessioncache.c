/*
 * sessioncache.c: the marks of messages plugins have handled (see
 * sessioncache.h).  Workers read and add marks, each shard under its own
 * mutex (held for a few probes, never across anything else); the main
 * thread resizes the shards under the same mutexes.  `enabled` and `ttl`
 * are atomics, read without a lock.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "hash.h"
#include "log.h"
#include "sessioncache.h"

/* A mark evicted younger than this may belong to a message Postfix is still
 * talking about (smtpd waits up to 300 s for a client command): that
 * message may be counted again, so the log says max_entries is too small. */
#define YOUNG_SECONDS 300

struct mark {
	uint64_t hash;
	int64_t born;              /* monotonic seconds */
};

/* The marks of one shard, guarded by `lock`.  ring[head .. head+count)
 * (modulo capacity) are the marks, oldest first; index is open-addressed
 * (linear probing) by hash, each slot 0 (empty) or a ring position + 1. */
struct shard {
	pthread_mutex_t lock;
	struct mark *ring;
	uint32_t *index;
	uint32_t capacity;         /* 0: the table is off */
	uint32_t index_mask;
	uint32_t head;
	uint32_t count;
	uint64_t evicted;
};

static struct shard shards[SESSIONCACHE_SHARDS];
static atomic_bool enabled;
static atomic_int ttl_seconds;
static uint64_t hash_key[2];
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
static _Atomic long long last_eviction_warning;

/* The locks and the hash key, once, by the first sessioncache_configure(). */
static void setup(void)
{
	hash_random_key(hash_key);
	for (int i = 0; i < SESSIONCACHE_SHARDS; i++)
		pthread_mutex_init(&shards[i].lock, NULL);
}

uint64_t sessioncache_message(const char *instance, size_t instance_len)
{
	uint64_t message = hash_keyed(hash_key, 0, instance, instance_len);

	return message != 0 ? message : 1;
}

bool sessioncache_enabled(void)
{
	return atomic_load_explicit(&enabled, memory_order_relaxed);
}

static struct shard *shard_of(uint64_t hash)
{
	return &shards[hash % SESSIONCACHE_SHARDS];
}

/* Where the index looks first for a hash (bits the shard choice left). */
static uint32_t home_of(const struct shard *s, uint64_t hash)
{
	return (uint32_t)(hash >> 6) & s->index_mask;
}

/* The index slot that holds `hash`, or the empty slot where it would go. */
static uint32_t probe(const struct shard *s, uint64_t hash)
{
	uint32_t i = home_of(s, hash);

	while (s->index[i] != 0 && s->ring[s->index[i] - 1].hash != hash)
		i = (i + 1) & s->index_mask;
	return i;
}

/* Empties index slot i and moves later slots of the same probe run back
 * (deletion without tombstones). */
static void index_delete(struct shard *s, uint32_t i)
{
	for (uint32_t j = (i + 1) & s->index_mask; s->index[j] != 0;
	     j = (j + 1) & s->index_mask) {
		uint32_t home = home_of(s, s->ring[s->index[j] - 1].hash);
		/* the entry at j may move to i when its home is not in (i, j] */
		bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (!stays) {
			s->index[i] = s->index[j];
			i = j;
		}
	}
	s->index[i] = 0;
}

static void remove_oldest(struct shard *s)
{
	index_delete(s, probe(s, s->ring[s->head].hash));
	s->head = (s->head + 1) % s->capacity;
	s->count--;
}

static void expire(struct shard *s, int64_t now)
{
	int ttl = atomic_load_explicit(&ttl_seconds, memory_order_relaxed);

	while (s->count > 0 && now - s->ring[s->head].born >= ttl)
		remove_oldest(s);
}

/* Makes room for one mark: the oldest goes, and the log says so when it
 * was young. */
static void evict(struct shard *s, int64_t now)
{
	int64_t age = now - s->ring[s->head].born;

	remove_oldest(s);
	s->evicted++;
	if (age < YOUNG_SECONDS && log_ratelimit(&last_eviction_warning, 60))
		log_warning("session_cache: full, a message's mark went after %lld seconds; a "
			    "message still in progress may be counted again: raise "
			    "session_cache.max_entries (now %u per shard, %d shards)",
			    (long long)age, s->capacity, SESSIONCACHE_SHARDS);
}

bool sessioncache_seen(uint64_t mark, int64_t now)
{
	struct shard *s = shard_of(mark);
	bool seen = false;

	pthread_mutex_lock(&s->lock);
	if (s->capacity > 0) {
		uint32_t at = s->index[probe(s, mark)];
		seen = at != 0 && now - s->ring[at - 1].born <
			atomic_load_explicit(&ttl_seconds, memory_order_relaxed);
	}
	pthread_mutex_unlock(&s->lock);
	return seen;
}

bool sessioncache_claim(uint64_t mark, int64_t now)
{
	struct shard *s = shard_of(mark);
	bool made = true;

	pthread_mutex_lock(&s->lock);
	if (s->capacity > 0) {
		expire(s, now);
		uint32_t slot = probe(s, mark);
		if (s->index[slot] != 0) {
			made = false;
		} else {
			if (s->count == s->capacity) {
				evict(s, now);
				slot = probe(s, mark);
			}
			uint32_t at = (s->head + s->count) % s->capacity;
			s->ring[at] = (struct mark){ .hash = mark, .born = now };
			s->index[slot] = at + 1;
			s->count++;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return made;
}

/* The shard's newest marks moved into a ring of `capacity` (0: freed). */
static void resize(struct shard *s, uint32_t capacity)
{
	struct mark *ring = NULL;
	uint32_t *index = NULL, mask = 0, keep = s->count < capacity ? s->count : capacity;

	if (capacity > 0) {
		uint32_t slots = 4;
		while (slots < 2 * capacity)
			slots *= 2;
		mask = slots - 1;
		ring = xcalloc(capacity, sizeof(*ring));
		index = xcalloc(slots, sizeof(*index));
		for (uint32_t i = 0; i < keep; i++)
			ring[i] = s->ring[(s->head + s->count - keep + i) % s->capacity];
	}
	free(s->ring);
	free(s->index);
	s->ring = ring;
	s->index = index;
	s->capacity = capacity;
	s->index_mask = mask;
	s->head = 0;
	s->count = keep;
	for (uint32_t i = 0; i < keep; i++)
		s->index[probe(s, ring[i].hash)] = i + 1;
}

void sessioncache_configure(bool on, int ttl, int max_entries)
{
	uint32_t per_shard = on ? (uint32_t)(max_entries + SESSIONCACHE_SHARDS - 1) /
		SESSIONCACHE_SHARDS : 0;

	pthread_once(&setup_once, setup);
	atomic_store(&ttl_seconds, ttl);
	for (int i = 0; i < SESSIONCACHE_SHARDS; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		if (s->capacity != per_shard)
			resize(s, per_shard);
		pthread_mutex_unlock(&s->lock);
	}
	atomic_store(&enabled, on);
}

void sessioncache_stats(struct sessioncache_stats *out)
{
	*out = (struct sessioncache_stats){ 0 };
	for (int i = 0; i < SESSIONCACHE_SHARDS; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		out->marks += s->count;
		out->evicted += s->evicted;
		pthread_mutex_unlock(&s->lock);
	}
}
