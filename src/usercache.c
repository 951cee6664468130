/*
 * usercache.c: the SqlUserConfig cache (see usercache.h).
 *
 * Locking: each shard's mutex guards its chains and every field of its
 * entries; the shard's condition variable wakes workers waiting for a load.
 * No lock is held while the query runs.  `queries_lock` guards the table of
 * query texts, which only grows.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hash.h"
#include "json.h"
#include "log.h"
#include "store.h"
#include "usercache.h"

#define SHARD_COUNT 64
#define BUCKETS_PER_SHARD 1024
#define MAX_QUERIES 64

enum { EMPTY, LOADING, READY };

struct entry {
	struct entry *next;
	uint64_t hash;
	int64_t expires;                /* monotonic seconds */
	uint16_t query;
	uint16_t waiters;               /* pinned while > 0 */
	uint8_t state;
	int8_t result;                  /* READY: 1 config, 0 none, -1 database error */
	struct session values;
	size_t key_len;
	char key[];
};

struct shard {
	pthread_mutex_t lock;
	pthread_cond_t loaded;
	struct entry *buckets[BUCKETS_PER_SHARD];
} __attribute__((aligned(64)));

static struct shard *shards;
static int ttl;
static int wait_seconds;

static pthread_mutex_t queries_lock = PTHREAD_MUTEX_INITIALIZER;
static char *queries[MAX_QUERIES];             /* guarded by queries_lock */
static int query_count;                        /* guarded by queries_lock */

static int64_t now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

void usercache_init(int ttl_seconds, int wait)
{
	pthread_condattr_t attr;

	ttl = ttl_seconds;
	wait_seconds = wait;
	shards = xcalloc(SHARD_COUNT, sizeof(*shards));
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	for (int i = 0; i < SHARD_COUNT; i++) {
		pthread_mutex_init(&shards[i].lock, NULL);
		pthread_cond_init(&shards[i].loaded, &attr);
	}
	pthread_condattr_destroy(&attr);
}

static void entry_free(struct entry *e)
{
	session_free(&e->values);
	free(e);
}

void usercache_free_all(void)
{
	for (int i = 0; shards && i < SHARD_COUNT; i++) {
		for (int b = 0; b < BUCKETS_PER_SHARD; b++) {
			for (struct entry *e = shards[i].buckets[b], *next; e; e = next) {
				next = e->next;
				entry_free(e);
			}
		}
		pthread_mutex_destroy(&shards[i].lock);
		pthread_cond_destroy(&shards[i].loaded);
	}
	free(shards);
	shards = NULL;
	for (int i = 0; i < query_count; i++)
		free(queries[i]);
	query_count = 0;
}

int usercache_query(const char *sql)
{
	int id = -1;

	pthread_mutex_lock(&queries_lock);
	for (int i = 0; i < query_count && id < 0; i++) {
		if (strcmp(queries[i], sql) == 0)
			id = i;
	}
	if (id < 0 && query_count < MAX_QUERIES) {
		id = query_count++;
		queries[id] = xstrdup(sql);
	}
	pthread_mutex_unlock(&queries_lock);
	return id;
}

static const char *query_text(int query)
{
	pthread_mutex_lock(&queries_lock);
	const char *sql = queries[query];
	pthread_mutex_unlock(&queries_lock);
	return sql;
}

/* Runs the query and parses its answer into `values`: 1, 0 or -1. */
static int load(int query, const char *plugin, const char *key, size_t key_len,
		struct session *values)
{
	struct buf text;
	char error[256];

	buf_init(&text);
	int rc = store_lookup_user_config(query_text(query), key, key_len, &text);
	if (rc == 1 && json_parse_object(text.data ? text.data : "", text.len, values, error,
					 sizeof(error)) < 0) {
		log_warning("plugin %s: the user config of %.*s is not a JSON object (%s); "
			    "using the defaults", plugin, (int)key_len, key, error);
		rc = 0;
	} else if (rc == 0) {
		log_debug("plugin %s: no user config for %.*s", plugin, (int)key_len, key);
	}
	buf_free(&text);
	return rc;
}

static struct entry *find(struct shard *s, uint64_t hash, int query, const char *key,
			  size_t key_len)
{
	for (struct entry *e = s->buckets[hash % BUCKETS_PER_SHARD]; e; e = e->next) {
		if (e->hash == hash && e->query == query && e->key_len == key_len &&
		    memcmp(e->key, key, key_len) == 0)
			return e;
	}
	return NULL;
}

static struct entry *create(struct shard *s, uint64_t hash, int query, const char *key,
			    size_t key_len)
{
	struct entry *e = xcalloc(1, sizeof(*e) + key_len);
	struct entry **head = &s->buckets[hash % BUCKETS_PER_SHARD];

	e->hash = hash;
	e->query = (uint16_t)query;
	e->key_len = key_len;
	memcpy(e->key, key, key_len);
	session_init(&e->values);
	e->next = *head;
	*head = e;
	return e;
}

/* Loads e's values with the shard unlocked, then publishes them. */
static void refill(struct shard *s, struct entry *e, const char *plugin)
{
	struct session values;

	e->state = LOADING;
	e->waiters++;
	pthread_mutex_unlock(&s->lock);
	session_init(&values);
	int rc = load(e->query, plugin, e->key, e->key_len, &values);
	pthread_mutex_lock(&s->lock);
	e->waiters--;
	session_free(&e->values);
	e->values = values;
	e->result = (int8_t)rc;
	e->state = READY;
	/* errors are not cached: the next lookup asks again */
	e->expires = rc < 0 ? 0 : now_seconds() + ttl;
	pthread_cond_broadcast(&s->loaded);
}

static bool wait_for_load(struct shard *s, struct entry *e)
{
	struct timespec deadline;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += wait_seconds;
	e->waiters++;
	while (e->state == LOADING &&
	       pthread_cond_timedwait(&s->loaded, &s->lock, &deadline) != ETIMEDOUT)
		;
	e->waiters--;
	return e->state == READY;
}

int usercache_lookup(int query, const char *plugin, const char *key, size_t key_len,
		     struct session *into)
{
	if (ttl == 0)
		return load(query, plugin, key, key_len, into);
	uint16_t q = (uint16_t)query;
	uint64_t hash = hash_finish(hash_bytes(hash_bytes(HASH_SEED, &q, sizeof(q)), key, key_len));
	struct shard *s = &shards[hash % SHARD_COUNT];
	int rc = -1;

	pthread_mutex_lock(&s->lock);
	struct entry *e = find(s, hash, query, key, key_len);
	if (e == NULL)
		e = create(s, hash, query, key, key_len);
	if (e->state == LOADING) {
		if (!wait_for_load(s, e))
			goto out;           /* the other worker's query is slow: go on without */
	} else if (e->state == EMPTY || e->expires <= now_seconds()) {
		refill(s, e, plugin);
	}
	rc = e->result;
	if (rc == 1)
		session_merge(into, &e->values);
out:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

void usercache_sweep(void)
{
	int64_t now = now_seconds();

	for (int i = 0; shards && i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		for (int b = 0; b < BUCKETS_PER_SHARD; b++) {
			for (struct entry **link = &s->buckets[b], *e; (e = *link) != NULL;) {
				if (e->state == READY && e->waiters == 0 && e->expires <= now) {
					*link = e->next;
					entry_free(e);
				} else {
					link = &e->next;
				}
			}
		}
		pthread_mutex_unlock(&s->lock);
	}
}
