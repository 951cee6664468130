/*
 * ratekeys.c: the RateLimit plugins' tables of keys (see ratekeys.h).
 *
 * Locking: `registry_lock` guards `tables` and every table's `users`,
 * `name`, `next`, `field`, `limits` and `max_keys`; a shard's `lock`
 * guards its buckets, its list of keys (newest message first), every field
 * of the keys in it and its remembered limit sets.  Locks are taken
 * registry first, then one shard at a time.  A table's counts are atomics,
 * read without a lock; `clock_offset` is written before any worker runs.
 *
 * Memory: a key costs its header (48 bytes), 32 bytes per window and its
 * bytes, plus a bucket pointer; a key that was never let through is not
 * kept.  A shard remembers up to 8 limit sets (144 bytes each).
 */
#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "hash.h"
#include "keyfold.h"
#include "log.h"
#include "ratekeys.h"

#define SHARD_COUNT 64
#define INITIAL_BUCKETS 16
#define LIMIT_SETS 8

struct rate_key {
	struct rate_key *next;           /* hash chain */
	struct rate_key *newer, *older;  /* the shard's list, newest message first */
	int64_t last;                    /* ms: its last accepted message */
	uint64_t signature;              /* of the limits its windows were made for */
	uint32_t span;                   /* seconds of its longest window */
	uint16_t key_len;
	uint8_t window_count;
	uint8_t tag;                     /* hash_tag() of its hash */
	struct ratewindow windows[];   /* at offset 48 */     /* then the key's bytes, not NUL-terminated */
};

_Static_assert(offsetof(struct rate_key, windows) == 48, "a key's header is 48 bytes");

struct shard {
	pthread_mutex_t lock;
	struct rate_key **buckets;
	size_t bucket_count;             /* a power of two */
	size_t count;
	struct rate_key *newest, *oldest;
	/* the last LIMIT_SETS limits keys were made for here: a key keeps only
	 * their signature, and tallyctl show needs the limits (uc_limits) */
	struct rate_limits *sets[LIMIT_SETS];
	unsigned next_set;
} __attribute__((aligned(64)));

struct ratekeys {
	struct ratekeys *next;           /* registry */
	char *name;
	int users;                       /* configs that hold it */
	char *field;                     /* as configured (ratekeys_configure) */
	struct rate_limits limits;
	size_t max_keys;
	uint64_t hash_key[2];
	_Atomic size_t keys;
	_Atomic uint64_t evicted_idle;
	_Atomic uint64_t evicted_active;
	_Atomic uint64_t restored;
	struct shard shards[SHARD_COUNT];
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ratekeys *tables;

/* The rate clock minus clock_ms(): set by the main thread before the
 * workers start, read-only after. */
static int64_t clock_offset;

void ratekeys_set_clock(int64_t now)
{
	clock_offset = now - clock_ms();
}

int64_t ratekeys_clock(void)
{
	return clock_ms() + clock_offset;
}

void rate_limits_sign(struct rate_limits *limits, int metric)
{
	uint64_t h = hash_mix(HASH_SEED, (uint64_t)metric);

	for (size_t i = 0; i < limits->count; i++) {
		h = hash_mix(h, limits->limit[i].count);
		h = hash_mix(h, limits->limit[i].seconds);
	}
	limits->signature = hash_finish(hash_mix(h, limits->count));
}

/* ----------------------------------------------------------------- tables */

struct ratekeys *ratekeys_open(const char *name)
{
	struct ratekeys *t;

	pthread_mutex_lock(&registry_lock);
	for (t = tables; t && strcmp(t->name, name) != 0; t = t->next)
		;
	if (t == NULL) {
		t = xcalloc(1, sizeof(*t));
		t->name = xstrdup(name);
		hash_random_key(t->hash_key);
		for (int i = 0; i < SHARD_COUNT; i++)
			pthread_mutex_init(&t->shards[i].lock, NULL);
		t->next = tables;
		tables = t;
	}
	t->users++;
	pthread_mutex_unlock(&registry_lock);
	return t;
}

static void free_table(struct ratekeys *t)
{
	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &t->shards[i];
		for (struct rate_key *k = s->newest, *older; k; k = older) {
			older = k->older;
			free(k);
		}
		free(s->buckets);
		for (int j = 0; j < LIMIT_SETS; j++)
			free(s->sets[j]);
		pthread_mutex_destroy(&s->lock);
	}
	free(t->field);
	free(t->name);
	free(t);
}

void ratekeys_close(struct ratekeys *t)
{
	if (t == NULL)
		return;
	pthread_mutex_lock(&registry_lock);
	bool last = --t->users == 0;
	if (last) {
		struct ratekeys **p = &tables;
		while (*p != t)
			p = &(*p)->next;
		*p = t->next;
	}
	pthread_mutex_unlock(&registry_lock);
	if (last)
		free_table(t);
}

void ratekeys_configure(struct ratekeys *t, const char *field, const struct rate_limits *limits,
			size_t max_keys)
{
	pthread_mutex_lock(&registry_lock);
	free(t->field);
	t->field = xstrdup(field);
	t->limits = *limits;
	t->max_keys = max_keys;
	pthread_mutex_unlock(&registry_lock);
}

void ratekeys_stats(const struct ratekeys *t, struct ratekeys_stats *out)
{
	out->keys = atomic_load(&t->keys);
	out->evicted_idle = atomic_load(&t->evicted_idle);
	out->evicted_active = atomic_load(&t->evicted_active);
	out->restored = atomic_load(&t->restored);
}

/* ------------------------------------------------------------- hash table */

static const char *key_bytes(const struct rate_key *k)
{
	return (const char *)&k->windows[k->window_count];
}

static uint64_t hash_of(const struct ratekeys *t, const char *key, size_t key_len)
{
	return key_hash_folded(t->hash_key, 0, key, key_len);
}

/* The top bits pick the shard, the low bits the bucket. */
static struct shard *shard_of(struct ratekeys *t, uint64_t hash)
{
	return &t->shards[hash >> 58];
}

static struct rate_key **bucket_of(struct shard *s, uint64_t hash)
{
	return &s->buckets[hash & (s->bucket_count - 1)];
}

static void grow(struct ratekeys *t, struct shard *s)
{
	size_t count = s->bucket_count ? s->bucket_count * 2 : INITIAL_BUCKETS;
	struct rate_key **buckets = xcalloc(count, sizeof(*buckets));

	for (size_t b = 0; b < s->bucket_count; b++) {
		for (struct rate_key *k = s->buckets[b], *next; k; k = next) {
			next = k->next;
			size_t i = hash_of(t, key_bytes(k), k->key_len) & (count - 1);
			k->next = buckets[i];
			buckets[i] = k;
		}
	}
	free(s->buckets);
	s->buckets = buckets;
	s->bucket_count = count;
}

/* Eight bits of the hash that pick neither the shard nor the bucket.  A
 * key's bytes lie after its windows, a cache line or two from the header:
 * comparing the tag first spares that line for the other keys of the
 * chain, which is most of the cost of a new key in a large table. */
static uint8_t hash_tag(uint64_t hash)
{
	return (uint8_t)(hash >> 50);
}

static struct rate_key *find(struct shard *s, uint64_t hash, const char *key, size_t key_len)
{
	if (s->bucket_count == 0)
		return NULL;
	struct rate_key *k = *bucket_of(s, hash);
	uint8_t tag = hash_tag(hash);
	while (k && (k->tag != tag || !key_fold_equal(key_bytes(k), k->key_len, key, key_len)))
		k = k->next;
	return k;
}

/* Takes k out of its list (shard locked). */
static void unlist(struct shard *s, struct rate_key *k)
{
	*(k->newer ? &k->newer->older : &s->newest) = k->older;
	*(k->older ? &k->older->newer : &s->oldest) = k->newer;
	k->newer = k->older = NULL;
}

/* Puts k first in its list: it has just accepted a message (shard locked). */
static void list_first(struct shard *s, struct rate_key *k)
{
	k->older = s->newest;
	*(s->newest ? &s->newest->newer : &s->oldest) = k;
	s->newest = k;
}

/* Frees k (shard locked). */
static void drop(struct ratekeys *t, struct shard *s, struct rate_key *k, uint64_t hash)
{
	struct rate_key **p = bucket_of(s, hash);

	while (*p != k)
		p = &(*p)->next;
	*p = k->next;
	unlist(s, k);
	s->count--;
	atomic_fetch_sub(&t->keys, 1);
	free(k);
}

static bool is_idle(const struct rate_key *k, int64_t now)
{
	return k->last <= 0 || now - k->last >= (int64_t)k->span * 1000;
}

/* Makes room for one more key in s (shard locked): keys whose windows are
 * empty go first; at max_keys the one with the oldest message goes. */
static void make_room(struct ratekeys *t, struct shard *s, int64_t now, size_t max)
{
	size_t room = (max + SHARD_COUNT - 1) / SHARD_COUNT;

	for (int n = 0; n < 2 && s->oldest && is_idle(s->oldest, now); n++) {
		struct rate_key *k = s->oldest;
		drop(t, s, k, hash_of(t, key_bytes(k), k->key_len));
		atomic_fetch_add(&t->evicted_idle, 1);
	}
	while (s->count >= room && s->oldest) {
		static _Atomic long long last_warning;
		struct rate_key *k = s->oldest;
		bool idle = is_idle(k, now);
		drop(t, s, k, hash_of(t, key_bytes(k), k->key_len));
		atomic_fetch_add(idle ? &t->evicted_idle : &t->evicted_active, 1);
		if (!idle && log_ratelimit(&last_warning, 60))
			log_warning("RateLimit %s: max_keys (%zu) reached: forgetting clients that "
				    "still have messages in a window; raise max_keys", t->name, max);
	}
}

/* The limits of keys made for `signature` in s, or NULL (shard locked). */
static const struct rate_limits *known_limits(const struct shard *s, uint64_t signature)
{
	for (int i = 0; i < LIMIT_SETS; i++) {
		if (s->sets[i] && s->sets[i]->signature == signature)
			return s->sets[i];
	}
	return NULL;
}

/* Remembers the limits a new key is made for (shard locked). */
static void remember_limits(struct shard *s, const struct rate_limits *limits)
{
	if (known_limits(s, limits->signature))
		return;
	struct rate_limits **slot = &s->sets[s->next_set++ % LIMIT_SETS];
	if (*slot == NULL)
		*slot = xmalloc(sizeof(**slot));
	**slot = *limits;
}

static struct rate_key *create(struct ratekeys *t, struct shard *s, uint64_t hash,
			       const char *key, size_t key_len, const struct rate_limits *limits,
			       const struct ratewindow *windows, int64_t last)
{
	size_t size = limits->count * sizeof(struct ratewindow);
	struct rate_key *k = xcalloc(1, sizeof(*k) + size + key_len);

	k->last = last;
	k->signature = limits->signature;
	k->key_len = (uint16_t)key_len;
	k->window_count = (uint8_t)limits->count;
	k->tag = hash_tag(hash);
	for (size_t i = 0; i < limits->count; i++) {
		if (limits->limit[i].seconds > k->span)
			k->span = limits->limit[i].seconds;
	}
	memcpy(k->windows, windows, size);
	memcpy((char *)key_bytes(k), key, key_len);
	if (s->count + 1 > 2 * s->bucket_count)
		grow(t, s);
	struct rate_key **head = bucket_of(s, hash);
	k->next = *head;
	*head = k;
	list_first(s, k);
	s->count++;
	atomic_fetch_add(&t->keys, 1);
	return k;
}

int ratekeys_offer(struct ratekeys *t, const char *key, size_t key_len,
		   const struct rate_limits *limits, uint64_t amount, int64_t now,
		   size_t max_keys)
{
	int refused;

	now += clock_offset;
	if (key_len > UINT16_MAX)
		key_len = UINT16_MAX;
	uint64_t hash = hash_of(t, key, key_len);
	struct shard *s = shard_of(t, hash);
	pthread_mutex_lock(&s->lock);
	struct rate_key *k = find(s, hash, key, key_len);
	if (k && k->signature != limits->signature) {
		/* other limits (a new config, another uc_limits): afresh */
		drop(t, s, k, hash);
		k = NULL;
	}
	if (k) {
		refused = ratewindow_offer(k->windows, limits->limit, limits->count, &k->last,
					   amount, now);
		if (refused < 0 && amount > 0) {
			unlist(s, k);
			list_first(s, k);
		}
	} else {
		/* a new key: kept only when it lets the message through */
		struct ratewindow fresh[RATEKEYS_WINDOWS_MAX] = { 0 };
		int64_t last = 0;
		refused = ratewindow_offer(fresh, limits->limit, limits->count, &last, amount, now);
		if (refused < 0 && amount > 0) {
			make_room(t, s, now, max_keys);
			create(t, s, hash, key, key_len, limits, fresh, last);
			remember_limits(s, limits);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return refused;
}

/* ------------------------------------------------- saving, showing, reset */

static void copy_state(const struct rate_key *k, struct ratekey_state *out)
{
	out->last = k->last;
	out->signature = k->signature;
	out->span = k->span;
	out->window_count = k->window_count;
	memcpy(out->windows, k->windows, k->window_count * sizeof(struct ratewindow));
}

void ratekeys_for_each_table(ratekeys_table_fn *fn, void *arg)
{
	pthread_mutex_lock(&registry_lock);
	for (struct ratekeys *t = tables; t; t = t->next)
		fn(t, t->name, t->limits.signature, arg);
	pthread_mutex_unlock(&registry_lock);
}

void ratekeys_for_each_key(struct ratekeys *t, ratekeys_key_fn *fn, void *arg)
{
	struct ratekey_state state;

	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &t->shards[i];
		pthread_mutex_lock(&s->lock);
		for (struct rate_key *k = s->oldest; k; k = k->newer) {
			copy_state(k, &state);
			fn(key_bytes(k), k->key_len, &state, arg);
		}
		pthread_mutex_unlock(&s->lock);
	}
}

struct ratekeys *ratekeys_find(const char *name, uint64_t *signature)
{
	struct ratekeys *t;

	pthread_mutex_lock(&registry_lock);
	for (t = tables; t && strcmp(t->name, name) != 0; t = t->next)
		;
	if (t)
		*signature = t->limits.signature;
	pthread_mutex_unlock(&registry_lock);
	return t;
}

static bool state_is_valid(const struct ratekey_state *state, size_t key_len)
{
	if (key_len == 0 || key_len > UINT16_MAX || state->window_count < 1 ||
	    state->window_count > RATEKEYS_WINDOWS_MAX || state->last <= 0 ||
	    state->span < 1 || state->span > RATEWINDOW_SECONDS_MAX)
		return false;
	for (size_t i = 0; i < state->window_count; i++) {
		const struct ratewindow *w = &state->windows[i];
		if (w->first >= RATEWINDOW_SLICES || w->closed > RATEWINDOW_SLICES)
			return false;
	}
	return true;
}

bool ratekeys_restore(struct ratekeys *t, const char *key, size_t key_len,
		      const struct ratekey_state *state)
{
	int64_t now = ratekeys_clock();
	struct rate_limits limits = { .count = state->window_count,
				      .signature = state->signature };

	if (!state_is_valid(state, key_len) || now - state->last >= (int64_t)state->span * 1000)
		return false;
	uint64_t hash = hash_of(t, key, key_len);
	struct shard *s = shard_of(t, hash);
	pthread_mutex_lock(&s->lock);
	struct rate_key *k = find(s, hash, key, key_len);
	if (k)
		drop(t, s, k, hash);          /* a key the file holds twice: the later wins */
	make_room(t, s, now, t->max_keys);
	k = create(t, s, hash, key, key_len, &limits, state->windows, state->last);
	k->span = state->span;
	atomic_fetch_add(&t->restored, 1);
	pthread_mutex_unlock(&s->lock);
	return true;
}

/* Copies out the key's windows (and forgets it): true when it is kept. */
static bool take_key(struct ratekeys *t, const char *key, size_t key_len, bool forget,
		     struct ratekey_state *out)
{
	uint64_t hash = hash_of(t, key, key_len);
	struct shard *s = shard_of(t, hash);

	pthread_mutex_lock(&s->lock);
	struct rate_key *k = find(s, hash, key, key_len);
	if (k)
		copy_state(k, out);
	if (k && forget)
		drop(t, s, k, hash);
	pthread_mutex_unlock(&s->lock);
	return k != NULL;
}

/* The limits of the keys made for `signature` in any shard of t, copied
 * into *out; false when none is remembered. */
static bool find_limits(struct ratekeys *t, uint64_t signature, struct rate_limits *out)
{
	const struct rate_limits *found = NULL;

	for (int i = 0; i < SHARD_COUNT && found == NULL; i++) {
		struct shard *s = &t->shards[i];
		pthread_mutex_lock(&s->lock);
		found = known_limits(s, signature);
		if (found)
			*out = *found;
		pthread_mutex_unlock(&s->lock);
	}
	return found != NULL;
}

int ratekeys_visit_key(const char *which, const char *key, size_t key_len, bool forget,
		       ratekeys_visit_fn *fn, void *arg)
{
	struct ratekey_state state;
	struct rate_limits own;
	int matched = 0;

	if (key_len > UINT16_MAX)
		key_len = UINT16_MAX;
	pthread_mutex_lock(&registry_lock);
	for (struct ratekeys *t = tables; t; t = t->next) {
		if (strcmp(t->name, which) != 0 && (t->field == NULL || strcmp(t->field, which) != 0))
			continue;
		bool found = take_key(t, key, key_len, forget, &state);
		const struct rate_limits *limits = &t->limits;
		if (found && state.signature != t->limits.signature)
			limits = find_limits(t, state.signature, &own) ? &own : NULL;
		fn(t->name, t->field ? t->field : "", &t->limits, limits, found ? &state : NULL, arg);
		matched++;
	}
	pthread_mutex_unlock(&registry_lock);
	return matched;
}
