/*
 * counters.c: the sharded counter cache (see counters.h).
 *
 * Locking: each shard's mutex guards its hash table, its dirty and touched
 * lists and every field of the keys in it.  `tables_lock` guards the table
 * registry.  A shard lock is never held across a database call: a load sets
 * the key to LOADING, unlocks, asks the loader, locks again; other workers
 * that want the same key wait on the shard's condition variable meanwhile.
 *
 * Exactness: a load's result is used only if no flush of this key happened
 * during it (flush_seq unchanged) and nothing was in flight before or after;
 * otherwise it might count the in-flight increments twice or not at all, and
 * the flusher, which reads totals inside its own transaction, sets them.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "counters.h"
#include "hash.h"
#include "log.h"
#include "timekey.h"

#define SHARD_COUNT 256
#define INITIAL_BUCKETS 64
#define MAX_TABLES 256
#define MAX_PATTERNS 4

enum { UNLOADED, LOADING, LOADED };

enum {
	DIRTY = 1,          /* on the shard's dirty list: has pending increments */
	TOUCHED = 2,        /* on the shard's touched list: Quota read it */
	IN_FLUSH = 4,       /* in the flusher's batch */
	IN_REFRESH = 8,     /* being re-read by the flusher */
};

struct counter {
	struct counter *next;           /* hash chain */
	struct counter *dirty_next;
	struct counter *touched_next;
	uint64_t hash;
	struct metric_values flushed;
	struct metric_values in_flight;
	struct metric_values pending;
	uint32_t flush_seq;             /* commits applied; tells a load it raced one */
	uint16_t table;
	uint16_t waiters;               /* workers inside a load or a wait: no eviction */
	uint8_t state;
	uint8_t flags;
	uint8_t time_len;
	uint8_t key_len;
	char data[];                    /* time key, then key; not NUL-terminated */
};

struct shard {
	pthread_mutex_t lock;
	pthread_cond_t loaded;          /* signalled when a load ends */
	struct counter **buckets;
	size_t bucket_count;            /* a power of two */
	size_t count;
	size_t dirty_count;
	uint32_t takes;                 /* counters_take_pending() calls that took this shard */
	struct counter *dirty;
	struct counter *touched;
} __attribute__((aligned(64)));

struct table {
	char *name;
	char *field;                    /* set by plugins; NULL for tables the journal named */
	char *patterns[MAX_PATTERNS];
	int pattern_count;
};

static struct shard shards[SHARD_COUNT];
static struct counters_loader loader;

static pthread_mutex_t tables_lock = PTHREAD_MUTEX_INITIALIZER;
static struct table tables[MAX_TABLES];      /* guarded by tables_lock */
static int table_count;                      /* guarded by tables_lock */

/* ------------------------------------------------------------------ tables */

int counters_table(const char *name)
{
	int id = -1;

	pthread_mutex_lock(&tables_lock);
	for (int i = 0; i < table_count && id < 0; i++) {
		if (strcmp(tables[i].name, name) == 0)
			id = i;
	}
	if (id < 0 && table_count < MAX_TABLES) {
		id = table_count++;
		tables[id].name = xstrdup(name);
	}
	pthread_mutex_unlock(&tables_lock);
	return id;
}

void counters_table_add_pattern(int table, const char *pattern)
{
	struct table *t = &tables[table];

	pthread_mutex_lock(&tables_lock);
	bool known = false;
	for (int i = 0; i < t->pattern_count; i++)
		known = known || strcmp(t->patterns[i], pattern) == 0;
	if (!known && t->pattern_count < MAX_PATTERNS)
		t->patterns[t->pattern_count++] = xstrdup(pattern);
	pthread_mutex_unlock(&tables_lock);
}

const char *counters_table_name(int table)
{
	pthread_mutex_lock(&tables_lock);
	const char *name = table < table_count ? tables[table].name : NULL;
	pthread_mutex_unlock(&tables_lock);
	return name;
}

void counters_table_set_field(int table, const char *field)
{
	pthread_mutex_lock(&tables_lock);
	if (tables[table].field == NULL)
		tables[table].field = xstrdup(field);
	pthread_mutex_unlock(&tables_lock);
}

int counters_tables_for(const char *field, int *ids, int max, const char **pattern)
{
	int found = 0;

	*pattern = NULL;
	pthread_mutex_lock(&tables_lock);
	for (int i = 0; i < table_count; i++) {
		struct table *t = &tables[i];
		if (strcmp(t->name, field) != 0 && (t->field == NULL || strcmp(t->field, field) != 0))
			continue;
		if (found == 0 && t->pattern_count > 0)
			*pattern = t->patterns[0];
		if (found < max)
			ids[found] = i;
		found++;
	}
	pthread_mutex_unlock(&tables_lock);
	return found;
}

int counters_table_count(void)
{
	pthread_mutex_lock(&tables_lock);
	int n = table_count;
	pthread_mutex_unlock(&tables_lock);
	return n;
}

/* ------------------------------------------------------------------- setup */

void counters_init(const struct counters_loader *l)
{
	pthread_condattr_t attr;

	loader = *l;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_init(&s->lock, NULL);
		pthread_cond_init(&s->loaded, &attr);
		s->bucket_count = INITIAL_BUCKETS;
		s->buckets = xcalloc(s->bucket_count, sizeof(struct counter *));
	}
	pthread_condattr_destroy(&attr);
}

void counters_free_all(void)
{
	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		for (size_t b = 0; b < s->bucket_count && s->buckets; b++) {
			for (struct counter *c = s->buckets[b], *next; c; c = next) {
				next = c->next;
				free(c);
			}
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
		pthread_cond_destroy(&s->loaded);
		memset(s, 0, sizeof(*s));
	}
	for (int i = 0; i < table_count; i++) {
		free(tables[i].name);
		free(tables[i].field);
		for (int p = 0; p < tables[i].pattern_count; p++)
			free(tables[i].patterns[p]);
	}
	memset(tables, 0, sizeof(tables));
	table_count = 0;
}

/* -------------------------------------------------------------- hash table */

static uint64_t key_hash(int table, const char *key, size_t key_len, const char *time,
			 size_t time_len)
{
	uint16_t t = (uint16_t)table;
	uint64_t h = hash_bytes(HASH_SEED, &t, sizeof(t));

	h = hash_bytes(h, time, time_len);    /* lengths are mixed in: "ab"+"c" != "a"+"bc" */
	return hash_finish(hash_bytes(h, key, key_len));
}

static struct shard *shard_of(uint64_t hash)
{
	return &shards[hash >> 56];
}

static bool same_key(const struct counter *c, uint64_t hash, int table, const char *key,
		     size_t key_len, const char *time, size_t time_len)
{
	return c->hash == hash && c->table == table && c->key_len == key_len &&
	       c->time_len == time_len && memcmp(c->data, time, time_len) == 0 &&
	       memcmp(c->data + time_len, key, key_len) == 0;
}

static void grow(struct shard *s)
{
	size_t count = s->bucket_count * 2;
	struct counter **buckets = xcalloc(count, sizeof(struct counter *));

	for (size_t b = 0; b < s->bucket_count; b++) {
		for (struct counter *c = s->buckets[b], *next; c; c = next) {
			next = c->next;
			size_t i = c->hash & (count - 1);
			c->next = buckets[i];
			buckets[i] = c;
		}
	}
	free(s->buckets);
	s->buckets = buckets;
	s->bucket_count = count;
}

/* The cached key, or NULL (shard locked). */
static struct counter *find(struct shard *s, uint64_t hash, int table, const char *key,
			    size_t key_len, const char *time, size_t time_len)
{
	struct counter *c = s->buckets[hash & (s->bucket_count - 1)];

	while (c && !same_key(c, hash, table, key, key_len, time, time_len))
		c = c->next;
	return c;
}

/* The cached key, created UNLOADED when missing.  Shard locked. */
static struct counter *find_or_create(struct shard *s, uint64_t hash, int table, const char *key,
				      size_t key_len, const char *time, size_t time_len)
{
	struct counter **head = &s->buckets[hash & (s->bucket_count - 1)];
	struct counter *c = find(s, hash, table, key, key_len, time, time_len);

	if (c)
		return c;
	c = xcalloc(1, sizeof(*c) + time_len + key_len);
	c->hash = hash;
	c->table = (uint16_t)table;
	c->time_len = (uint8_t)time_len;
	c->key_len = (uint8_t)key_len;
	memcpy(c->data, time, time_len);
	memcpy(c->data + time_len, key, key_len);
	c->next = *head;
	*head = c;
	if (++s->count > s->bucket_count)
		grow(s);
	return c;
}

static bool is_zero(const struct metric_values *v)
{
	return (v->v[0] | v->v[1] | v->v[2] | v->v[3]) == 0;
}

/* ---------------------------------------------------------------- hot path */

uint32_t counters_add(int table, const char *key, size_t key_len, const char *time,
		      size_t time_len, const struct metric_values *delta)
{
	uint64_t hash = key_hash(table, key, key_len, time, time_len);
	struct shard *s = shard_of(hash);

	pthread_mutex_lock(&s->lock);
	uint32_t take = s->takes + 1;
	struct counter *c = find_or_create(s, hash, table, key, key_len, time, time_len);
	metrics_add(&c->pending, delta);
	if (!(c->flags & DIRTY)) {
		c->flags |= DIRTY;
		c->dirty_next = s->dirty;
		s->dirty = c;
		s->dirty_count++;
	}
	pthread_mutex_unlock(&s->lock);
	return take;
}

/* Waits (shard locked) until another worker's load of c ends; false when it
 * took longer than the loader's wait_seconds. */
static bool wait_for_load(struct shard *s, struct counter *c)
{
	struct timespec deadline;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += loader.wait_seconds;
	c->waiters++;
	while (c->state == LOADING) {
		if (pthread_cond_timedwait(&s->loaded, &s->lock, &deadline) == ETIMEDOUT)
			break;
	}
	c->waiters--;
	return c->state != LOADING;
}

/* Reads c's totals from the database (shard locked on entry and exit). */
static void load(struct shard *s, struct counter *c)
{
	struct metric_values values;
	uint32_t seq = c->flush_seq;
	const char *table = counters_table_name(c->table);

	c->state = LOADING;
	c->waiters++;
	pthread_mutex_unlock(&s->lock);
	int rc = loader.load(table, c->data + c->time_len, c->key_len, c->data, c->time_len,
			     &values, loader.arg);
	pthread_mutex_lock(&s->lock);
	c->waiters--;
	if (c->state == LOADING) {     /* else a commit set the totals meanwhile */
		bool exact = rc == 0 && c->flush_seq == seq && is_zero(&c->in_flight);
		if (exact)
			c->flushed = values;
		c->state = exact ? LOADED : UNLOADED;
	}
	pthread_cond_broadcast(&s->loaded);
}

/* Makes c's database totals known if it can (shard locked). */
static bool resolve(struct shard *s, struct counter *c)
{
	for (;;) {
		if (c->state == LOADED)
			return true;
		if (c->state == LOADING) {
			if (!wait_for_load(s, c))
				return false;
			continue;
		}
		/* the flusher's next commit will read the totals of a key in flight */
		if (!is_zero(&c->in_flight))
			return false;
		load(s, c);
		return c->state == LOADED;
	}
}

bool counters_total(int table, const char *key, size_t key_len, const char *time,
		    size_t time_len, struct metric_values *total)
{
	uint64_t hash = key_hash(table, key, key_len, time, time_len);
	struct shard *s = shard_of(hash);

	pthread_mutex_lock(&s->lock);
	struct counter *c = find_or_create(s, hash, table, key, key_len, time, time_len);
	if (!(c->flags & TOUCHED)) {
		c->flags |= TOUCHED;
		c->touched_next = s->touched;
		s->touched = c;
	}
	bool known = resolve(s, c);
	*total = c->flushed;
	metrics_add(total, &c->in_flight);
	metrics_add(total, &c->pending);
	pthread_mutex_unlock(&s->lock);
	return known;
}

/* ------------------------------------------------------------ flusher side */

static void batch_push(struct counter_batch *batch, struct counter *c)
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
	out->table = c->table;
	out->time = c->data;
	out->time_len = c->time_len;
	out->key = c->data + c->time_len;
	out->key_len = c->key_len;
	out->in_flight = &c->in_flight;
}

bool counters_is_read(const struct counter *c)
{
	struct shard *s = shard_of(c->hash);

	pthread_mutex_lock(&s->lock);
	bool read = c->state != UNLOADED;
	pthread_mutex_unlock(&s->lock);
	return read;
}

uint32_t counters_take_pending(struct counter_batch *batch)
{
	uint32_t take = 0;

	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		take = ++s->takes;
		for (struct counter *c = s->dirty, *next; c; c = next) {
			next = c->dirty_next;
			c->dirty_next = NULL;
			c->flags &= (uint8_t)~DIRTY;
			metrics_add(&c->in_flight, &c->pending);
			memset(&c->pending, 0, sizeof(c->pending));
			if (!(c->flags & IN_FLUSH)) {
				c->flags |= IN_FLUSH;
				batch_push(batch, c);
			}
		}
		s->dirty = NULL;
		s->dirty_count = 0;
		pthread_mutex_unlock(&s->lock);
	}
	return take;
}

void counters_restore_in_flight(int table, const char *key, size_t key_len, const char *time,
				size_t time_len, const struct metric_values *values,
				struct counter_batch *batch)
{
	uint64_t hash = key_hash(table, key, key_len, time, time_len);
	struct shard *s = shard_of(hash);

	pthread_mutex_lock(&s->lock);
	struct counter *c = find_or_create(s, hash, table, key, key_len, time, time_len);
	metrics_add(&c->in_flight, values);
	if (!(c->flags & IN_FLUSH)) {
		c->flags |= IN_FLUSH;
		batch_push(batch, c);
	}
	pthread_mutex_unlock(&s->lock);
}

void counters_committed(struct counter *c, const struct metric_values *total)
{
	struct shard *s = shard_of(c->hash);

	pthread_mutex_lock(&s->lock);
	if (total) {
		c->flushed = *total;
		c->state = LOADED;
		pthread_cond_broadcast(&s->loaded);
	} else if (c->state == LOADED) {
		metrics_add(&c->flushed, &c->in_flight);
	}
	memset(&c->in_flight, 0, sizeof(c->in_flight));
	c->flush_seq++;
	c->flags &= (uint8_t)~IN_FLUSH;
	pthread_mutex_unlock(&s->lock);
}

void counters_take_touched(struct counter_batch *batch)
{
	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		for (struct counter *c = s->touched, *next; c; c = next) {
			next = c->touched_next;
			c->touched_next = NULL;
			c->flags &= (uint8_t)~TOUCHED;
			if (c->state == LOADED && !(c->flags & (DIRTY | IN_FLUSH | IN_REFRESH)) &&
			    is_zero(&c->in_flight)) {
				c->flags |= IN_REFRESH;
				batch_push(batch, c);
			}
		}
		s->touched = NULL;
		pthread_mutex_unlock(&s->lock);
	}
}

void counters_refreshed(struct counter *c, const struct metric_values *total, bool failed)
{
	struct shard *s = shard_of(c->hash);
	static const struct metric_values none;

	pthread_mutex_lock(&s->lock);
	/* only the flusher puts increments in flight, and it is here: none are */
	if (!failed && c->state == LOADED)
		c->flushed = total ? *total : none;
	c->flags &= (uint8_t)~IN_REFRESH;
	pthread_mutex_unlock(&s->lock);
}

/* The current time keys of every table's patterns, one string per table:
 * "key1\0key2\0...\0". */
static char **current_periods(time_t now, int *count)
{
	pthread_mutex_lock(&tables_lock);
	char **periods = xcalloc((size_t)table_count + 1, sizeof(char *));
	for (int t = 0; t < table_count; t++) {
		struct buf b;
		buf_init(&b);
		for (int p = 0; p < tables[t].pattern_count; p++) {
			size_t len;
			const char *key = timekey_format(tables[t].patterns[p], now, &len);
			buf_append(&b, key, len);
			buf_append(&b, "", 1);
		}
		buf_append(&b, "", 1);
		periods[t] = b.data;
	}
	*count = table_count;
	pthread_mutex_unlock(&tables_lock);
	return periods;
}

static bool is_current(const struct counter *c, char *const *periods, int period_count)
{
	if (c->table >= period_count)
		return true;
	for (const char *p = periods[c->table]; *p; p += strlen(p) + 1) {
		if (strlen(p) == c->time_len && memcmp(p, c->data, c->time_len) == 0)
			return true;
	}
	return false;
}

size_t counters_evict_stale(time_t now)
{
	int period_count;
	char **periods = current_periods(now, &period_count);
	size_t evicted = 0;

	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		for (size_t b = 0; b < s->bucket_count; b++) {
			for (struct counter **link = &s->buckets[b], *c; (c = *link) != NULL;) {
				if (c->flags == 0 && c->waiters == 0 && c->state != LOADING &&
				    is_zero(&c->pending) && is_zero(&c->in_flight) &&
				    !is_current(c, periods, period_count)) {
					*link = c->next;
					free(c);
					s->count--;
					evicted++;
				} else {
					link = &c->next;
				}
			}
		}
		pthread_mutex_unlock(&s->lock);
	}
	for (int t = 0; t < period_count; t++)
		free(periods[t]);
	free(periods);
	return evicted;
}

bool counters_peek(int table, const char *key, size_t key_len, const char *time,
		   size_t time_len, struct metric_values *flushed, struct metric_values *in_flight,
		   struct metric_values *pending)
{
	uint64_t hash = key_hash(table, key, key_len, time, time_len);
	struct shard *s = shard_of(hash);

	pthread_mutex_lock(&s->lock);
	struct counter *c = find(s, hash, table, key, key_len, time, time_len);
	if (c) {
		*flushed = c->flushed;
		*in_flight = c->in_flight;
		*pending = c->pending;
	}
	pthread_mutex_unlock(&s->lock);
	return c != NULL;
}

void counters_reset(int table, const char *key, size_t key_len, const char *time,
		    size_t time_len)
{
	uint64_t hash = key_hash(table, key, key_len, time, time_len);
	struct shard *s = shard_of(hash);

	pthread_mutex_lock(&s->lock);
	struct counter *c = find(s, hash, table, key, key_len, time, time_len);
	if (c && c->state == LOADED && is_zero(&c->in_flight))
		memset(&c->flushed, 0, sizeof(c->flushed));
	pthread_mutex_unlock(&s->lock);
}

void counters_stats(struct counters_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		out->keys += s->count;
		out->dirty_keys += s->dirty_count;
		pthread_mutex_unlock(&s->lock);
	}
}
