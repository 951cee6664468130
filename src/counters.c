/*
 * counters.c: the sharded counter cache (see counters.h).
 *
 * Locking: each shard's mutex guards its hash table, its dirty keys, its
 * spare deltas and every field of the keys in it and of their deltas.  The flush epoch is an
 * atomic.  The flusher reads in_flight of the keys in its batch without the
 * lock: it is the only thread that changes in_flight, and a delta with
 * anything in flight is never freed.
 *
 * Memory: a key costs its struct (57 bytes and the key's bytes) and a
 * bucket pointer; increments live in a separate delta only while there are
 * any, so a client that is not sending right now costs no delta.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "counters.h"
#include "hash.h"
#include "keyfold.h"
#include "log.h"
#include "park.h"
#include "tables.h"

#define SHARD_COUNT 256             /* struct counter keeps the index in a byte */
#define INITIAL_BUCKETS 64

enum {
	TOUCHED = 1,        /* a Quota read it since the last refresh */
	IN_FLUSH = 2,       /* in the flusher's batch */
	IN_REFRESH = 4,     /* being re-read by the loader */
	AWAIT_FLUSH = 8,    /* QUEUED: the loader left it to the flusher's commit */
	DIRTY = 16,         /* among the shard's dirty keys: has pending increments */
};

/* Increments not yet in the database; exists only while there are some.
 * 64 bytes: the same allocation size as a key with a short name, so the
 * memory of one serves the other. */
struct counter_delta {
	struct metric_values pending;
	struct metric_values in_flight;
};

/* 57 bytes and the key: with malloc's 8-byte header, a key of up to 15
 * bytes (any IPv4 address) fits an 80-byte allocation.  The hash is not
 * kept (a growing table computes it again), only the shard, which the
 * flusher and the loader need for the keys they hold. */
struct counter {
	struct counter *next;           /* hash chain */
	struct counter_delta *delta;    /* NULL when nothing is unwritten */
	struct metric_values flushed;
	uint32_t committed_epoch;       /* of the last commit applied to it */
	uint16_t period;
	uint8_t state : 2;              /* enum load_state */
	uint8_t flags : 6;
	uint8_t key_len;
	uint8_t shard;                  /* its index in shards[] */
	char key[];                     /* not NUL-terminated */
};
_Static_assert(offsetof(struct counter, key) == 57, "a counter with an IPv4 key fits 80 bytes");

#define SPARE_DELTAS 16             /* kept per shard for keys that send again */

struct shard {
	pthread_mutex_t lock;
	struct counter **buckets;
	size_t bucket_count;            /* a power of two */
	size_t count;
	size_t queued_count;
	uint32_t takes;                 /* counters_take_pending() calls that took this shard */
	struct counter_batch dirty;     /* keys with pending increments */
	struct counter_batch touched;   /* keys a Quota read since the last refresh */
	struct counter_delta *spare[SPARE_DELTAS];   /* emptied deltas */
	size_t spare_count;
} __attribute__((aligned(64)));

static struct shard shards[SHARD_COUNT];
static _Atomic uint64_t evicted_total;      /* keys let go for cache_max_keys */
static uint64_t hash_key[2];                /* the hash's: set once per process, so
					       that threads' last_hashed stay right */
static _Atomic uint32_t flush_epoch;
static const struct metric_values zero;

void counters_init(void)
{
	if (hash_key[0] == 0 && hash_key[1] == 0)
		hash_random_key(hash_key);
	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_init(&s->lock, NULL);
		s->bucket_count = INITIAL_BUCKETS;
		s->buckets = xcalloc(s->bucket_count, sizeof(struct counter *));
	}
	atomic_store(&flush_epoch, 0);
}

void counters_free_all(void)
{
	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		for (size_t b = 0; b < s->bucket_count && s->buckets; b++) {
			for (struct counter *c = s->buckets[b], *next; c; c = next) {
				next = c->next;
				free(c->delta);
				free(c);
			}
		}
		while (s->spare_count > 0)
			free(s->spare[--s->spare_count]);
		counter_batch_free(&s->dirty);
		counter_batch_free(&s->touched);
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
		memset(s, 0, sizeof(*s));
	}
}

/* -------------------------------------------------------------- hash table */

/* The key this thread hashed last: a request's Quota and Accounting ask
 * for the same key of the same period, one after the other. */
static _Thread_local struct {
	uint64_t hash;
	int period;
	size_t len;                     /* SIZE_MAX: none yet */
	char key[40];
} last_hashed = { .len = SIZE_MAX };

static uint64_t key_hash(int period, const char *key, size_t key_len)
{
	if (key_len == last_hashed.len && period == last_hashed.period &&
	    memcmp(key, last_hashed.key, key_len) == 0)
		return last_hashed.hash;
	uint64_t hash = key_hash_folded(hash_key, (uint64_t)period, key, key_len);
	if (key_len <= sizeof(last_hashed.key)) {
		last_hashed.hash = hash;
		last_hashed.period = period;
		last_hashed.len = key_len;
		memcpy(last_hashed.key, key, key_len);
	}
	return hash;
}

/* Bits 24..31 pick the shard, the low bits the bucket: a shard would need
 * 2^24 buckets (4 billion keys in all) before the two overlap. */
static struct shard *shard_of(uint64_t hash)
{
	return &shards[(hash >> 24) & (SHARD_COUNT - 1)];
}

static uint64_t hash_of(const struct counter *c)
{
	return key_hash(c->period, c->key, c->key_len);
}

static struct shard *shard_of_key(const struct counter *c)
{
	return &shards[c->shard];
}

static void grow(struct shard *s)
{
	size_t count = s->bucket_count * 2;
	struct counter **buckets = xcalloc(count, sizeof(struct counter *));

	for (size_t b = 0; b < s->bucket_count; b++) {
		for (struct counter *c = s->buckets[b], *next; c; c = next) {
			next = c->next;
			size_t i = hash_of(c) & (count - 1);
			c->next = buckets[i];
			buckets[i] = c;
		}
	}
	free(s->buckets);
	s->buckets = buckets;
	s->bucket_count = count;
}

/* The cached key, or NULL (shard locked). */
static struct counter *find(struct shard *s, uint64_t hash, int period, const char *key,
			    size_t key_len)
{
	struct counter *c = s->buckets[hash & (s->bucket_count - 1)];

	while (c && !(c->period == period && key_fold_equal(c->key, c->key_len, key, key_len)))
		c = c->next;
	return c;
}

/* A new key (shard locked): loaded with zero totals when its period is
 * known in full, else not loaded. */
static struct counter *create(struct shard *s, uint64_t hash, int period, const char *key,
			      size_t key_len)
{
	struct counter **head = &s->buckets[hash & (s->bucket_count - 1)];
	struct counter *c = xcalloc(1, offsetof(struct counter, key) + key_len);

	c->period = (uint16_t)period;
	c->key_len = (uint8_t)key_len;
	c->shard = (uint8_t)(s - shards);
	c->state = periods_is_complete(period) ? LOAD_DONE : LOAD_NONE;
	memcpy(c->key, key, key_len);
	c->next = *head;
	*head = c;
	periods_key_added(period);
	if (++s->count > 2 * s->bucket_count)
		grow(s);
	return c;
}

static struct counter *find_or_create(struct shard *s, uint64_t hash, int period,
				      const char *key, size_t key_len)
{
	struct counter *c = find(s, hash, period, key, key_len);

	return c ? c : create(s, hash, period, key, key_len);
}

static bool is_zero(const struct metric_values *v)
{
	return (v->v[0] | v->v[1] | v->v[2] | v->v[3]) == 0;
}

static bool has_in_flight(const struct counter *c)
{
	return c->delta && !is_zero(&c->delta->in_flight);
}

/* True when no commit reached c since `epoch` (wrap-around safe). */
static bool untouched_since(const struct counter *c, uint32_t epoch)
{
	return (int32_t)(c->committed_epoch - epoch) <= 0;
}

/* c's delta, made when it has none (shard locked): a spare one when the
 * shard has it, so that a key sending every flush_interval allocates
 * nothing. */
static struct counter_delta *delta_of(struct shard *s, struct counter *c)
{
	struct counter_delta *d = c->delta;

	if (d)
		return d;
	if (s->spare_count > 0) {
		d = s->spare[--s->spare_count];
		memset(d, 0, sizeof(*d));
	} else {
		d = xcalloc(1, sizeof(*d));
	}
	c->delta = d;
	return d;
}

/* Takes away a delta with nothing left in it (shard locked). */
static void drop_empty_delta(struct shard *s, struct counter *c)
{
	struct counter_delta *d = c->delta;

	if (d == NULL || (c->flags & DIRTY) || !is_zero(&d->pending) || !is_zero(&d->in_flight))
		return;
	c->delta = NULL;
	if (s->spare_count < SPARE_DELTAS)
		s->spare[s->spare_count++] = d;
	else
		free(d);
}

/* Notes that c has pending increments (shard locked). */
static void mark_dirty(struct shard *s, struct counter *c)
{
	if (!(c->flags & DIRTY)) {
		c->flags |= DIRTY;
		counter_batch_push(&s->dirty, c);
	}
}

/* ---------------------------------------------------------------- workers */

uint32_t counters_add(int period, const char *key, size_t key_len,
		      const struct metric_values *delta)
{
	uint64_t hash = key_hash(period, key, key_len);
	struct shard *s = shard_of(hash);

	pthread_mutex_lock(&s->lock);
	uint32_t take = s->takes + 1;
	struct counter *c = find_or_create(s, hash, period, key, key_len);
	metrics_add(&delta_of(s, c)->pending, delta);
	mark_dirty(s, c);
	pthread_mutex_unlock(&s->lock);
	return take;
}

/* Asks the loader for c's totals (shard locked). */
static void queue(struct shard *s, struct counter *c)
{
	c->state = LOAD_QUEUED;
	c->flags &= (uint8_t)~AWAIT_FLUSH;
	s->queued_count++;
	loader_want_counter(c);
}

/* What a lookup of c answers (shard locked). */
static enum lookup resolve(struct shard *s, struct counter *c, bool may_wait)
{
	switch (c->state) {
	case LOAD_DONE:
		return LOOKUP_FOUND;
	case LOAD_FAILED:
		if (!loader_may_retry())
			return LOOKUP_FAILED;
		/* fall through */
	case LOAD_NONE:
		queue(s, c);
		break;
	default:
		break;
	}
	return may_wait ? LOOKUP_WAIT : LOOKUP_FAILED;
}

enum lookup counters_total(int period, const char *key, size_t key_len, bool may_wait,
			   struct metric_values *total, uint64_t *ticket)
{
	uint64_t hash = key_hash(period, key, key_len);
	struct shard *s = shard_of(hash);

	pthread_mutex_lock(&s->lock);
	struct counter *c = find_or_create(s, hash, period, key, key_len);
	if (!(c->flags & TOUCHED)) {
		c->flags |= TOUCHED;
		counter_batch_push(&s->touched, c);
	}
	enum lookup result = resolve(s, c, may_wait);
	*total = result == LOOKUP_FOUND ? c->flushed : zero;
	if (c->delta) {
		metrics_add(total, &c->delta->in_flight);
		metrics_add(total, &c->delta->pending);
	}
	if (result == LOOKUP_WAIT)
		*ticket = park_ticket();
	pthread_mutex_unlock(&s->lock);
	return result;
}

/* ---------------------------------------------------------------- loader */

uint32_t counters_epoch(void)
{
	return atomic_load(&flush_epoch);
}

/* Sets c's totals from a read that began at `epoch`, if they are exact
 * (shard locked).  Returns false when they are not. */
static bool take_read(struct counter *c, const struct metric_values *total, uint32_t epoch)
{
	if (has_in_flight(c) || !untouched_since(c, epoch))
		return false;
	c->flushed = total ? *total : zero;
	return true;
}

/* c was queued and is resolved now (shard locked). */
static void unqueue(struct shard *s, struct counter *c, uint8_t state)
{
	c->state = state;
	c->flags &= (uint8_t)~AWAIT_FLUSH;
	s->queued_count--;
}

void counters_loaded(struct counter *c, const struct metric_values *total, uint32_t epoch)
{
	struct shard *s = shard_of_key(c);

	pthread_mutex_lock(&s->lock);
	if (c->state == LOAD_QUEUED) {
		if (take_read(c, total, epoch))
			unqueue(s, c, LOAD_DONE);
		else if (has_in_flight(c))
			c->flags |= AWAIT_FLUSH;     /* its commit will read it back */
		else
			loader_want_counter(c);      /* a commit raced the read: again */
	}
	pthread_mutex_unlock(&s->lock);
}

void counters_load_failed(struct counter *c)
{
	struct shard *s = shard_of_key(c);

	pthread_mutex_lock(&s->lock);
	if (c->state == LOAD_QUEUED)
		unqueue(s, c, LOAD_FAILED);
	pthread_mutex_unlock(&s->lock);
}

void counters_bulk_row(int period, const char *key, size_t key_len,
		       const struct metric_values *total, uint32_t epoch)
{
	uint64_t hash = key_hash(period, key, key_len);
	struct shard *s = shard_of(hash);

	pthread_mutex_lock(&s->lock);
	struct counter *c = find(s, hash, period, key, key_len);
	if (c == NULL) {
		c = create(s, hash, period, key, key_len);
		c->flushed = *total;
		c->state = LOAD_DONE;
	} else if (take_read(c, total, epoch)) {   /* also replaces what the snapshot said */
		if (c->state == LOAD_QUEUED)
			unqueue(s, c, LOAD_DONE);
		c->state = LOAD_DONE;
	}
	pthread_mutex_unlock(&s->lock);
}

int counters_take_touched(struct counter_batch *batch, int shard, size_t max)
{
	for (; shard < SHARD_COUNT && batch->count < max; shard++) {
		struct shard *s = &shards[shard];
		pthread_mutex_lock(&s->lock);
		for (size_t k = 0; k < s->touched.count; k++) {
			struct counter *c = s->touched.keys[k];
			c->flags &= (uint8_t)~TOUCHED;
			if (c->state != LOAD_DONE || (c->flags & IN_REFRESH))
				continue;
			c->flags |= IN_REFRESH;
			counter_batch_push(batch, c);
		}
		s->touched.count = 0;
		pthread_mutex_unlock(&s->lock);
	}
	return shard < SHARD_COUNT ? shard : -1;
}

void counters_refreshed(struct counter *c, const struct metric_values *total, uint32_t epoch,
			bool failed)
{
	struct shard *s = shard_of_key(c);

	pthread_mutex_lock(&s->lock);
	if (!failed && c->state == LOAD_DONE)
		take_read(c, total, epoch);
	c->flags &= (uint8_t)~IN_REFRESH;
	pthread_mutex_unlock(&s->lock);
}

/* --------------------------------------------------------------- flusher */

void counter_batch_push(struct counter_batch *batch, struct counter *c)
{
	if (batch->count == batch->cap) {
		batch->cap = batch->cap ? batch->cap * 2 : 1024;
		batch->keys = xrealloc(batch->keys, batch->cap * sizeof(*batch->keys));
	}
	batch->keys[batch->count++] = c;
}

void counter_batch_free(struct counter_batch *batch)
{
	free(batch->keys);
	memset(batch, 0, sizeof(*batch));
}

void counter_view(const struct counter *c, struct counter_view *out)
{
	out->period = c->period;
	out->key = c->key;
	out->key_len = c->key_len;
}

const struct metric_values *counters_in_flight(const struct counter *c)
{
	return c->delta ? &c->delta->in_flight : &zero;
}

bool counters_wants_read_back(const struct counter *c)
{
	struct shard *s = shard_of_key(c);

	pthread_mutex_lock(&s->lock);
	bool wanted = c->state == LOAD_QUEUED;
	pthread_mutex_unlock(&s->lock);
	return wanted;
}

/* Puts c in the flusher's batch unless it is there already (shard locked). */
static void join_batch(struct counter *c, struct counter_batch *batch)
{
	if (!(c->flags & IN_FLUSH)) {
		c->flags |= IN_FLUSH;
		counter_batch_push(batch, c);
	}
}

uint32_t counters_take_pending(struct counter_batch *batch)
{
	uint32_t take = 0;

	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		take = ++s->takes;
		for (size_t k = 0; k < s->dirty.count; k++) {
			struct counter *c = s->dirty.keys[k];
			struct counter_delta *d = c->delta;
			c->flags &= (uint8_t)~DIRTY;
			metrics_add(&d->in_flight, &d->pending);
			memset(&d->pending, 0, sizeof(d->pending));
			join_batch(c, batch);
		}
		s->dirty.count = 0;
		pthread_mutex_unlock(&s->lock);
	}
	return take;
}

void counters_restore_in_flight(int period, const char *key, size_t key_len,
				const struct metric_values *values, struct counter_batch *batch)
{
	uint64_t hash = key_hash(period, key, key_len);
	struct shard *s = shard_of(hash);

	pthread_mutex_lock(&s->lock);
	struct counter *c = find_or_create(s, hash, period, key, key_len);
	metrics_add(&delta_of(s, c)->in_flight, values);
	join_batch(c, batch);
	pthread_mutex_unlock(&s->lock);
}

uint32_t counters_next_epoch(void)
{
	return atomic_fetch_add(&flush_epoch, 1) + 1;
}

void counters_committed(struct counter *c, const struct metric_values *total, uint32_t epoch)
{
	struct shard *s = shard_of_key(c);

	pthread_mutex_lock(&s->lock);
	if (total) {
		c->flushed = *total;
		if (c->state == LOAD_QUEUED)
			unqueue(s, c, LOAD_DONE);
		c->state = LOAD_DONE;
	} else if (c->state == LOAD_DONE) {
		metrics_add(&c->flushed, &c->delta->in_flight);
	} else if (c->state == LOAD_QUEUED && (c->flags & AWAIT_FLUSH)) {
		c->flags &= (uint8_t)~AWAIT_FLUSH;
		loader_want_counter(c);          /* nothing in flight now: read it */
	}
	memset(&c->delta->in_flight, 0, sizeof(c->delta->in_flight));
	drop_empty_delta(s, c);
	c->committed_epoch = epoch;
	c->flags &= (uint8_t)~IN_FLUSH;
	pthread_mutex_unlock(&s->lock);
}

uint32_t counters_refused(struct counter *c)
{
	struct shard *s = shard_of_key(c);

	pthread_mutex_lock(&s->lock);
	uint32_t take = s->takes + 1;
	metrics_add(&c->delta->pending, &c->delta->in_flight);
	memset(&c->delta->in_flight, 0, sizeof(c->delta->in_flight));
	mark_dirty(s, c);
	if (c->state == LOAD_QUEUED && (c->flags & AWAIT_FLUSH)) {
		c->flags &= (uint8_t)~AWAIT_FLUSH;
		loader_want_counter(c);          /* nothing in flight now: read it */
	}
	c->flags &= (uint8_t)~IN_FLUSH;
	pthread_mutex_unlock(&s->lock);
	return take;
}

/* Nothing to write and no thread holds it (shard locked). */
static bool clean(const struct counter *c)
{
	return c->delta == NULL && c->flags == 0 && c->state != LOAD_QUEUED;
}

/* Clean, and of a period no quota reads any more. */
static bool stale(const struct counter *c)
{
	return clean(c) && !periods_is_live(c->period);
}

/* Removes up to `want` keys of shard s (locked) for which `doomed` holds;
 * returns how many.  Under memory pressure (`pressure`), a live period
 * that loses a key is told so: a key absent from it is no longer zero. */
static size_t remove_keys(struct shard *s, bool (*doomed)(const struct counter *), bool pressure,
			  size_t want)
{
	size_t removed = 0;

	for (size_t b = 0; b < s->bucket_count && removed < want; b++) {
		for (struct counter **link = &s->buckets[b], *c; (c = *link) != NULL && removed < want;) {
			if (!doomed(c)) {
				link = &c->next;
				continue;
			}
			*link = c->next;
			if (pressure)
				periods_key_evicted(c->period);
			periods_key_removed(c->period);
			free(c);
			s->count--;
			removed++;
		}
	}
	return removed;
}

size_t counters_evict_over(size_t max)
{
	static int hand;                    /* the flusher's: where the last round stopped */
	size_t total = 0, evicted = 0;

	for (int i = 0; i < SHARD_COUNT; i++) {
		pthread_mutex_lock(&shards[i].lock);
		total += shards[i].count;
		pthread_mutex_unlock(&shards[i].lock);
	}
	if (total <= max)
		return 0;
	size_t target = max - max / 10;     /* room for a while */
	/* a share from each shard, then from whichever has clean keys left */
	for (int pass = 0; pass < 2; pass++) {
		for (int n = 0; n < SHARD_COUNT && total - evicted > target; n++) {
			struct shard *s = &shards[(hand + n) % SHARD_COUNT];
			size_t over = total - evicted - target;
			size_t want = pass ? over : over / (size_t)(SHARD_COUNT - n) + 1;
			pthread_mutex_lock(&s->lock);
			evicted += remove_keys(s, clean, true, want);
			pthread_mutex_unlock(&s->lock);
		}
	}
	hand = (hand + 1) % SHARD_COUNT;
	atomic_fetch_add(&evicted_total, evicted);
	return evicted;
}

size_t counters_evict_stale(void)
{
	size_t evicted = 0;

	if (!periods_any_past())
		return 0;                       /* no key to look for */
	for (int i = 0; i < SHARD_COUNT; i++) {
		pthread_mutex_lock(&shards[i].lock);
		evicted += remove_keys(&shards[i], stale, false, SIZE_MAX);
		pthread_mutex_unlock(&shards[i].lock);
	}
	return evicted;
}

/* ----------------------------------------------------- tallyctl, snapshot */

bool counters_peek(int period, const char *key, size_t key_len, struct metric_values *flushed,
		   struct metric_values *in_flight, struct metric_values *pending, bool *loaded)
{
	uint64_t hash = key_hash(period, key, key_len);
	struct shard *s = shard_of(hash);

	pthread_mutex_lock(&s->lock);
	struct counter *c = find(s, hash, period, key, key_len);
	if (c) {
		*flushed = c->flushed;
		*in_flight = c->delta ? c->delta->in_flight : zero;
		*pending = c->delta ? c->delta->pending : zero;
		*loaded = c->state == LOAD_DONE;
	}
	pthread_mutex_unlock(&s->lock);
	return c != NULL;
}

void counters_reset(int period, const char *key, size_t key_len)
{
	uint64_t hash = key_hash(period, key, key_len);
	struct shard *s = shard_of(hash);

	pthread_mutex_lock(&s->lock);
	struct counter *c = find(s, hash, period, key, key_len);
	if (c && c->state == LOAD_DONE && !has_in_flight(c))
		c->flushed = zero;
	pthread_mutex_unlock(&s->lock);
}

void counters_for_each_key(void (*fn)(int period, const char *key, size_t key_len,
				      const struct metric_values *flushed, void *arg),
			   void *arg)
{
	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		for (size_t b = 0; b < s->bucket_count; b++) {
			for (struct counter *c = s->buckets[b]; c; c = c->next)
				fn(c->period, c->key, c->key_len, c->state == LOAD_DONE ? &c->flushed : NULL,
				   arg);
		}
		pthread_mutex_unlock(&s->lock);
	}
}

void counters_for_each_in(int period,
			  void (*fn)(const char *key, size_t key_len,
				     const struct metric_values *total, bool known, void *arg),
			  void *arg)
{
	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		for (size_t b = 0; b < s->bucket_count; b++) {
			for (struct counter *c = s->buckets[b]; c; c = c->next) {
				if (c->period != period)
					continue;
				bool known = c->state == LOAD_DONE;
				struct metric_values total = known ? c->flushed : zero;
				if (c->delta) {
					metrics_add(&total, &c->delta->in_flight);
					metrics_add(&total, &c->delta->pending);
				}
				fn(c->key, c->key_len, &total, known, arg);
			}
		}
		pthread_mutex_unlock(&s->lock);
	}
}

void counters_restore(int period, const char *key, size_t key_len,
		      const struct metric_values *flushed)
{
	uint64_t hash = key_hash(period, key, key_len);
	struct shard *s = shard_of(hash);

	pthread_mutex_lock(&s->lock);
	struct counter *c = find_or_create(s, hash, period, key, key_len);
	c->flushed = flushed ? *flushed : zero;
	c->state = flushed ? LOAD_DONE : LOAD_NONE;
	pthread_mutex_unlock(&s->lock);
}

void counters_restore_settled(int period, const char *key, size_t key_len,
			      const struct metric_values *values)
{
	uint64_t hash = key_hash(period, key, key_len);
	struct shard *s = shard_of(hash);

	pthread_mutex_lock(&s->lock);
	struct counter *c = find_or_create(s, hash, period, key, key_len);
	if (c->state == LOAD_DONE)
		metrics_add(&c->flushed, values);
	pthread_mutex_unlock(&s->lock);
}

size_t counters_pending_in_flight(void)
{
	size_t both = 0;

	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		for (size_t k = 0; k < s->dirty.count; k++)
			both += (s->dirty.keys[k]->flags & IN_FLUSH) != 0;
		pthread_mutex_unlock(&s->lock);
	}
	return both;
}

void counters_stats(struct counters_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		out->keys += s->count;
		out->dirty_keys += s->dirty.count;
		out->queued_keys += s->queued_count;
		pthread_mutex_unlock(&s->lock);
	}
	out->evicted = atomic_load(&evicted_total);
}
