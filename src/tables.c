/*
 * tables.c: the registry of accounting tables and periods (see tables.h).
 *
 * Locking: `registry_lock` guards `tables`, `table_count`, the period
 * index (`buckets`, the `bucket_next` links) and the slots array's
 * pointers.  A period's `load`, `keys`, `stamp`, `complete` and eviction
 * counts are atomics: workers, the loader and the flusher (which evicts
 * keys for cache_max_keys) read and write them without the lock.  A period is
 * freed only when it has no keys and has not been live for two ticks, so
 * no thread can still be about to use its id (the per-thread cache of
 * periods_now() lives for one second).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "hash.h"
#include "log.h"
#include "metrics.h"
#include "tables.h"
#include "timekey.h"

#define MAX_PATTERNS 8
#define PERIODS_MAX 65535          /* ids fit the counter cache's 16 bits */
#define BUCKETS 4096
#define LOAD_RETRY_MS 5000          /* after a failed bulk load */

struct table {
	char *name;
	char *field;                    /* NULL for tables only the journal named */
	char patterns[MAX_PATTERNS][TABLES_PATTERN_MAX];   /* copied out under the lock */
	uint64_t pattern_used[MAX_PATTERNS];   /* the last config generation using it */
	int pattern_count;
	bool read;
};

struct period {
	struct period *bucket_next;
	uint64_t hash;
	int id;
	int table;
	atomic_int load;                /* enum period_load: the loader's reading of it */
	atomic_bool complete;           /* every key's totals are known (or zero) */
	_Atomic uint32_t evictions;     /* keys of it the cache let go (cache_max_keys) */
	_Atomic uint32_t evictions_at_claim;   /* ... when its bulk load began */
	atomic_uint keys;               /* cached keys of this period */
	_Atomic uint64_t stamp;         /* the last tick that found it current or next */
	_Atomic int64_t retry_at;       /* clock_ms(): a failed load is tried again then */
	size_t time_len;
	char time[];
};

enum period_load { UNLOADED, LOADING, LOADED };

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct table tables[TABLES_MAX];
static int table_count;
static struct period *slots[PERIODS_MAX];
static struct period *buckets[BUCKETS];
static int next_free;                      /* a hint: slots below are taken */
static int slots_used;                     /* ids below are or were in use */
static _Atomic uint64_t ticks = 2;         /* periods_tick() calls, +2 */

/* ------------------------------------------------------------------ tables */

int tables_register(const char *name)
{
	int id = -1;

	pthread_mutex_lock(&registry_lock);
	for (int i = 0; i < table_count && id < 0; i++) {
		if (strcmp(tables[i].name, name) == 0)
			id = i;
	}
	if (id < 0 && table_count < TABLES_MAX) {
		id = table_count++;
		tables[id].name = xstrdup(name);
	}
	pthread_mutex_unlock(&registry_lock);
	return id;
}

int tables_add_pattern(int table, const char *pattern, uint64_t generation)
{
	struct table *t = &tables[table];
	int i, rc = 0;

	if (strlen(pattern) >= TABLES_PATTERN_MAX)
		return -1;
	pthread_mutex_lock(&registry_lock);
	for (i = 0; i < t->pattern_count && strcmp(t->patterns[i], pattern) != 0; i++)
		;
	if (i == t->pattern_count && i < MAX_PATTERNS)
		snprintf(t->patterns[t->pattern_count++], TABLES_PATTERN_MAX, "%s", pattern);
	if (i < t->pattern_count && t->pattern_used[i] < generation)
		t->pattern_used[i] = generation;
	rc = i < t->pattern_count ? 0 : -1;
	pthread_mutex_unlock(&registry_lock);
	return rc;
}

void tables_retire_patterns(uint64_t generation)
{
	pthread_mutex_lock(&registry_lock);
	for (int n = 0; n < table_count; n++) {
		struct table *t = &tables[n];
		int kept = 0;
		for (int i = 0; i < t->pattern_count; i++) {
			if (t->pattern_used[i] < generation)
				continue;
			memmove(t->patterns[kept], t->patterns[i], TABLES_PATTERN_MAX);
			t->pattern_used[kept++] = t->pattern_used[i];
		}
		t->pattern_count = kept;
	}
	pthread_mutex_unlock(&registry_lock);
}

void tables_set_field(int table, const char *field)
{
	pthread_mutex_lock(&registry_lock);
	if (tables[table].field == NULL)
		tables[table].field = xstrdup(field);
	pthread_mutex_unlock(&registry_lock);
}

void tables_set_read(int table)
{
	pthread_mutex_lock(&registry_lock);
	tables[table].read = true;
	pthread_mutex_unlock(&registry_lock);
}

bool tables_is_read(int table)
{
	pthread_mutex_lock(&registry_lock);
	bool read = table < table_count && tables[table].read;
	pthread_mutex_unlock(&registry_lock);
	return read;
}

const char *tables_name(int table)
{
	pthread_mutex_lock(&registry_lock);
	const char *name = table < table_count ? tables[table].name : NULL;
	pthread_mutex_unlock(&registry_lock);
	return name;
}

int tables_count(void)
{
	pthread_mutex_lock(&registry_lock);
	int n = table_count;
	pthread_mutex_unlock(&registry_lock);
	return n;
}

int tables_for(const char *field, int *ids, int max, char pattern[TABLES_PATTERN_MAX])
{
	int found = 0;

	pattern[0] = '\0';
	pthread_mutex_lock(&registry_lock);
	for (int i = 0; i < table_count; i++) {
		struct table *t = &tables[i];
		if (strcmp(t->name, field) != 0 && (t->field == NULL || strcmp(t->field, field) != 0))
			continue;
		if (found == 0 && t->pattern_count > 0)
			memcpy(pattern, t->patterns[0], TABLES_PATTERN_MAX);
		if (found < max)
			ids[found] = i;
		found++;
	}
	pthread_mutex_unlock(&registry_lock);
	return found;
}

/* ----------------------------------------------------------------- periods */

static uint64_t period_hash(int table, const char *time, size_t time_len)
{
	return hash_finish(hash_bytes((uint64_t)table * HASH_SEED, time, time_len));
}

/* The period's id, or -1 (registry_lock held). */
static int find_period(uint64_t hash, int table, const char *time, size_t time_len)
{
	for (struct period *p = buckets[hash % BUCKETS]; p; p = p->bucket_next) {
		if (p->hash == hash && p->table == table && p->time_len == time_len &&
		    memcmp(p->time, time, time_len) == 0)
			return p->id;
	}
	return -1;
}

int periods_get(int table, const char *time, size_t time_len)
{
	static _Atomic long long last_complaint;
	uint64_t hash = period_hash(table, time, time_len);

	pthread_mutex_lock(&registry_lock);
	int id = find_period(hash, table, time, time_len);
	while (id < 0 && next_free < PERIODS_MAX && slots[next_free] != NULL)
		next_free++;
	if (id < 0 && next_free < PERIODS_MAX) {
		struct period *p = xcalloc(1, sizeof(*p) + time_len + 1);
		p->hash = hash;
		p->table = table;
		p->time_len = time_len;
		memcpy(p->time, time, time_len);
		atomic_init(&p->stamp, atomic_load(&ticks));
		p->bucket_next = buckets[hash % BUCKETS];
		buckets[hash % BUCKETS] = p;
		id = next_free++;
		if (next_free > slots_used)
			slots_used = next_free;
		p->id = id;
		slots[id] = p;
	}
	pthread_mutex_unlock(&registry_lock);
	if (id < 0 && log_ratelimit(&last_complaint, 10))
		log_error("%d accounting periods are in use; %.*s of table %s is not counted",
			  PERIODS_MAX, (int)time_len, time, tables_name(table));
	return id;
}

struct cached_period {
	int table;
	const char *pattern;
	time_t second;
	int period;
};

#define CACHED_PERIODS 8
static _Thread_local struct cached_period cache[CACHED_PERIODS];
static _Thread_local unsigned cache_next;

int periods_now(int table, const char *pattern)
{
	time_t now = time(NULL);
	size_t len;

	for (unsigned i = 0; i < CACHED_PERIODS; i++) {
		struct cached_period *c = &cache[i];
		if (c->second == now && c->table == table && c->pattern == pattern)
			return c->period;
	}
	const char *key = timekey_now(pattern, &len);
	int period = len > 0 ? periods_get(table, key, len) : -1;
	cache[cache_next++ % CACHED_PERIODS] = (struct cached_period){
		.table = table, .pattern = pattern, .second = now, .period = period,
	};
	return period;
}

/* Periods are read by id without the lock: a slot is set before its id is
 * handed out and cleared only when no key or thread uses the id. */
static struct period *slot(int period)
{
	return slots[period];
}

int periods_table(int period)
{
	return slot(period)->table;
}

const char *periods_time(int period, size_t *len)
{
	*len = slot(period)->time_len;
	return slot(period)->time;
}

bool periods_is_complete(int period)
{
	return atomic_load_explicit(&slot(period)->complete, memory_order_acquire);
}

void periods_set_complete(int period)
{
	atomic_store_explicit(&slot(period)->complete, true, memory_order_release);
}

int periods_claim_load(void)
{
	int64_t now = clock_ms();
	int claimed = -1;

	pthread_mutex_lock(&registry_lock);
	for (int id = 0; id < slots_used && claimed < 0; id++) {
		struct period *p = slots[id];
		int unloaded = UNLOADED;
		if (p && tables[p->table].read && periods_is_live(id) && now >= atomic_load(&p->retry_at) &&
		    atomic_compare_exchange_strong(&p->load, &unloaded, LOADING)) {
			atomic_store(&p->evictions_at_claim, atomic_load(&p->evictions));
			claimed = id;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	return claimed;
}

void periods_load_done(int period, bool complete)
{
	struct period *p = slot(period);

	/* a key evicted while the load ran may have been read before it went */
	if (complete && atomic_load(&p->evictions) == atomic_load(&p->evictions_at_claim))
		periods_set_complete(period);
	else
		atomic_store(&slot(period)->retry_at, clock_ms() + LOAD_RETRY_MS);
	atomic_store(&slot(period)->load, complete ? LOADED : UNLOADED);
}

void periods_key_evicted(int period)
{
	struct period *p = slot(period);

	atomic_fetch_add(&p->evictions, 1);
	atomic_store_explicit(&p->complete, false, memory_order_release);
}

void periods_key_added(int period)
{
	atomic_fetch_add_explicit(&slot(period)->keys, 1, memory_order_relaxed);
}

void periods_key_removed(int period)
{
	atomic_fetch_sub_explicit(&slot(period)->keys, 1, memory_order_relaxed);
}

void periods_tick(time_t now)
{
	uint64_t tick = atomic_fetch_add(&ticks, 1) + 1;
	int count = tables_count();

	for (int t = 0; t < count; t++) {
		for (int i = 0; i < MAX_PATTERNS; i++) {
			char pattern[TABLES_PATTERN_MAX];
			pthread_mutex_lock(&registry_lock);
			bool more = i < tables[t].pattern_count;
			if (more)
				memcpy(pattern, tables[t].patterns[i], TABLES_PATTERN_MAX);
			pthread_mutex_unlock(&registry_lock);
			if (!more)
				break;      /* one retired meanwhile may skip another for a tick */
			for (time_t at = now; at <= now + PERIODS_LOOKAHEAD; at++) {
				size_t len;
				const char *key = timekey_format(pattern, at, &len);
				int id = len > 0 ? periods_get(t, key, len) : -1;
				if (id >= 0)
					atomic_store(&slot(id)->stamp, tick);
			}
		}
	}
}

bool periods_is_live(int period)
{
	return atomic_load(&slot(period)->stamp) + 1 >= atomic_load(&ticks);
}

bool periods_any_past(void)
{
	bool found = false;

	pthread_mutex_lock(&registry_lock);
	for (int id = 0; id < slots_used && !found; id++)
		found = slots[id] && atomic_load(&slots[id]->keys) > 0 && !periods_is_live(id);
	pthread_mutex_unlock(&registry_lock);
	return found;
}

void periods_retire(void)
{
	uint64_t now = atomic_load(&ticks);

	pthread_mutex_lock(&registry_lock);
	for (int b = 0; b < BUCKETS; b++) {
		for (struct period **link = &buckets[b], *p; (p = *link) != NULL;) {
			if (atomic_load(&p->keys) == 0 && atomic_load(&p->stamp) + 2 < now &&
			    atomic_load(&p->load) != LOADING) {
				*link = p->bucket_next;
				slots[p->id] = NULL;
				if (p->id < next_free)
					next_free = p->id;
				free(p);
			} else {
				link = &p->bucket_next;
			}
		}
	}
	pthread_mutex_unlock(&registry_lock);
}

void tables_free_all(void)
{
	for (int i = 0; i < table_count; i++) {
		free(tables[i].name);
		free(tables[i].field);
	}
	memset(tables, 0, sizeof(tables));
	table_count = 0;
	for (int id = 0; id < PERIODS_MAX; id++) {
		free(slots[id]);
		slots[id] = NULL;
	}
	memset(buckets, 0, sizeof(buckets));
	next_free = slots_used = 0;
	memset(cache, 0, sizeof(cache));
}
