/*
 * usercache.c: the SqlUserConfig cache (see usercache.h).
 *
 * Locking: each shard's mutex guards its buckets, its nones and every
 * field of its entries.  `queries_lock` guards the query registry and each
 * query's preload schedule; it is never taken with a shard's lock held.  A
 * query no config in force uses is retired after a reload (its entries
 * dropped, no more preloads); its slot is given to another text only once
 * no entry names it and no preload runs, so that no other thread holds
 * its texts.  Keys hash under the slot's `tweak`, new at each use of the
 * slot, so that an old none never answers for the new query.  An entry that is queued or being refreshed is
 * in the loader's queue and is freed only by the loader's answer (when it
 * is "none") or after it.
 *
 * Memory: an entry is its struct (32 bytes and the key) and a bucket
 * pointer, plus the session of its config.  Most keys have no config:
 * once the loader says so, the entry gives way to a "none", 12 bytes in
 * an open-addressed table, without the key (see the nones section).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "hash.h"
#include "json.h"
#include "keyfold.h"
#include "log.h"
#include "park.h"
#include "usercache.h"

#define SHARD_COUNT 64
#define INITIAL_BUCKETS 64
#define MAX_QUERIES 64
#define RETRY_SECONDS 5          /* after a failed load or preload */

enum {
	REFRESHING = 1,          /* DONE, and queued for a fresh value */
	PRELOADED = 2,           /* set by a preload_query */
};

struct user_config {
	struct user_config *next;
	struct session *values;         /* NULL: no config */
	uint64_t hash;                  /* of the folded key: the key's identity */
	uint32_t expires;               /* DONE: fresh until; FAILED: retry at (clock seconds);
	                                   PRELOADED: the preload's generation */
	uint8_t key_len;
	uint8_t query;
	uint8_t state;                  /* enum load_state */
	uint8_t flags;
	char key[];
};

/* A key known to have no config, until `until` (clock seconds; 0: removed,
 * a tombstone).  `print` is the key's 64-bit hash (0: an empty slot). */
struct none {
	uint64_t print;
	uint32_t until;
} __attribute__((packed));

struct shard {
	pthread_mutex_t lock;
	struct user_config **buckets;
	size_t bucket_count;            /* a power of two */
	size_t count;
	struct none *nones;             /* NULL until the first one */
	size_t none_slots;              /* a power of two, or 0 */
	size_t none_used;               /* slots not empty: live ones and tombstones */
	size_t none_live;
} __attribute__((aligned(64)));

struct query {
	char *sql;
	char *preload_sql;              /* "" for none */
	char *field;
	uint64_t tweak;                 /* of its keys' hashes: unique to this text */
	uint64_t used_in;               /* the last config generation that uses it */
	bool retired;
	atomic_bool mapped;             /* a whole preload is in memory */
	bool preloading;                /* guarded by queries_lock, like the next two */
	uint32_t generation;            /* of the last preload claimed */
	int64_t next_preload;           /* clock_ms() */
};

static struct shard *shards;
static int ttl;
static uint64_t hash_key[2];          /* hash_keyed()'s: set once at init */

static pthread_mutex_t queries_lock = PTHREAD_MUTEX_INITIALIZER;
static struct query queries[MAX_QUERIES];
static int query_count;
static uint64_t tweaks;                 /* tweaks handed out */

/* The cache's clock: monotonic seconds, a day ahead so that a time a
 * little in the past never goes below zero. */
static uint32_t now_seconds(void)
{
	return (uint32_t)(clock_seconds() + 86400);
}

void usercache_init(int ttl_seconds)
{
	ttl = ttl_seconds;
	hash_random_key(hash_key);
	shards = xcalloc(SHARD_COUNT, sizeof(*shards));
	for (int i = 0; i < SHARD_COUNT; i++) {
		pthread_mutex_init(&shards[i].lock, NULL);
		shards[i].bucket_count = INITIAL_BUCKETS;
		shards[i].buckets = xcalloc(INITIAL_BUCKETS, sizeof(struct user_config *));
	}
}

static void entry_free(struct user_config *e)
{
	if (e->values) {
		session_free(e->values);
		free(e->values);
	}
	free(e);
}

void usercache_free_all(void)
{
	for (int i = 0; shards && i < SHARD_COUNT; i++) {
		for (size_t b = 0; b < shards[i].bucket_count; b++) {
			for (struct user_config *e = shards[i].buckets[b], *next; e; e = next) {
				next = e->next;
				entry_free(e);
			}
		}
		free(shards[i].buckets);
		free(shards[i].nones);
		pthread_mutex_destroy(&shards[i].lock);
	}
	free(shards);
	shards = NULL;
	for (int i = 0; i < query_count; i++) {
		free(queries[i].sql);
		free(queries[i].preload_sql);
		free(queries[i].field);
		memset(&queries[i], 0, sizeof(queries[i]));
	}
	query_count = 0;
	tweaks = 0;
}

static bool names_query(const struct user_config *e, int query, uint32_t unused)
{
	(void)unused;
	return e->query == query;
}

static bool any_entry(bool (*match)(const struct user_config *e, int query, uint32_t arg),
		      int query, uint32_t arg);

/* A slot for a new text (queries_lock held): a new one, or a retired one
 * that nothing uses any more; -1 when there is none. */
static int free_slot(void)
{
	if (query_count < MAX_QUERIES)
		return query_count++;
	for (int i = 0; i < MAX_QUERIES; i++) {
		struct query *q = &queries[i];
		if (q->retired && !q->preloading && !any_entry(names_query, i, 0)) {
			free(q->sql);
			free(q->preload_sql);
			free(q->field);
			memset(q, 0, sizeof(*q));
			return i;
		}
	}
	return -1;
}

int usercache_query(const char *sql, const char *preload_sql, const char *field,
		    uint64_t generation)
{
	int id = -1;

	pthread_mutex_lock(&queries_lock);
	for (int i = 0; i < query_count && id < 0; i++) {
		if (strcmp(queries[i].sql, sql) == 0 && strcmp(queries[i].preload_sql, preload_sql) == 0)
			id = i;
	}
	if (id < 0 && (id = free_slot()) >= 0) {
		queries[id].sql = xstrdup(sql);
		queries[id].preload_sql = xstrdup(preload_sql);
		queries[id].field = xstrdup(field);
		queries[id].tweak = ++tweaks;
	}
	if (id >= 0 && queries[id].retired) {     /* back in use: preloaded again */
		queries[id].retired = false;
		queries[id].next_preload = 0;
	}
	if (id >= 0 && queries[id].used_in < generation)
		queries[id].used_in = generation;
	pthread_mutex_unlock(&queries_lock);
	return id;
}

static bool is_mapped(int query)
{
	return atomic_load(&queries[query].mapped);
}

/* ------------------------------------------------------------- hash table */

/* hash_keyed() of the query and the folded key (keyfold.h): spellings
 * mtpolicyd's tables take for one key are one key here too. */
static uint64_t key_hash(int query, const char *key, size_t len)
{
	return key_hash_folded(hash_key, queries[query].tweak, key, len);
}

/* Keys are told apart by their folded spelling's 64-bit keyed hash alone,
 * as the nones are: two spellings could share an entry only if their
 * hashes under this process's random key were equal, which nobody can
 * arrange; comparing the folded bytes too cost a tenth of a lookup. */
static bool same_key(const struct user_config *e, uint64_t hash, int query)
{
	return e->hash == hash && e->query == query;
}

/* Bits 24..29 pick the shard, the low bits the bucket. */
static struct shard *shard_of(uint64_t hash)
{
	return &shards[(hash >> 24) % SHARD_COUNT];
}

static struct user_config **bucket_of(struct shard *s, uint64_t hash)
{
	return &s->buckets[hash & (s->bucket_count - 1)];
}

static void grow(struct shard *s)
{
	size_t old_count = s->bucket_count;
	struct user_config **old = s->buckets;

	s->bucket_count *= 2;
	s->buckets = xcalloc(s->bucket_count, sizeof(*s->buckets));
	for (size_t b = 0; b < old_count; b++) {
		for (struct user_config *e = old[b], *next; e; e = next) {
			next = e->next;
			struct user_config **head = bucket_of(s, e->hash);
			e->next = *head;
			*head = e;
		}
	}
	free(old);
}

static struct user_config *find(struct shard *s, uint64_t hash, int query)
{
	struct user_config *e = *bucket_of(s, hash);

	while (e && !same_key(e, hash, query))
		e = e->next;
	return e;
}

static struct user_config *create(struct shard *s, uint64_t hash, int query, const char *key,
				  size_t len)
{
	struct user_config *e = xcalloc(1, offsetof(struct user_config, key) + len);
	struct user_config **head = bucket_of(s, hash);

	e->hash = hash;
	e->query = (uint8_t)query;
	e->key_len = (uint8_t)len;
	memcpy(e->key, key, len);
	e->next = *head;
	*head = e;
	if (++s->count > 2 * s->bucket_count)
		grow(s);
	return e;
}

/* Replaces the entry's values (shard locked); takes `values` over. */
static void publish(struct user_config *e, struct session *values)
{
	if (e->values) {
		session_free(e->values);
		free(e->values);
	}
	e->values = values;
}

/* ------------------------------------------------------------------ nones */

/* Most keys have no config.  Once the loader says so, the key's entry gives
 * way to a none: the key's 64-bit keyed hash stands for the key in an
 * open-addressed table (linear probing), 12 bytes a slot.  A wrong "none"
 * would take another key with the same 64-bit hash under this process's
 * random seed.  A key is an entry or a none, never both.  Nones are not in
 * the snapshot: after a restart a key without config is asked again. */

static uint64_t print_of(uint64_t hash)
{
	return hash ? hash : 1;
}

/* The slot of hash's none, live or removed, or NULL (shard locked). */
static struct none *none_find(const struct shard *s, uint64_t hash)
{
	uint64_t print = print_of(hash);
	size_t mask = s->none_slots - 1;

	for (size_t i = print & mask, n = 0; n < s->none_slots; i = (i + 1) & mask, n++) {
		if (s->nones[i].print == print)
			return &s->nones[i];
		if (s->nones[i].print == 0)
			break;
	}
	return NULL;
}

/* Puts a none known not to be in the table into its first empty slot. */
static void none_place(struct shard *s, uint64_t print, uint32_t until)
{
	size_t mask = s->none_slots - 1, i = print & mask;

	while (s->nones[i].print != 0)
		i = (i + 1) & mask;
	s->nones[i].print = print;
	s->nones[i].until = until;
	s->none_used++;
	s->none_live++;
}

/* Rebuilds the table without tombstones and without the nones that ended
 * before `oldest`, at most half full. */
static void none_rebuild(struct shard *s, size_t room, uint32_t oldest)
{
	struct none *old = s->nones;
	size_t old_slots = s->none_slots, keep = room;

	for (size_t i = 0; i < old_slots; i++)
		keep += old[i].until != 0 && old[i].until >= oldest;
	s->none_slots = 0;
	while (keep > 0 && s->none_slots < 2 * keep)
		s->none_slots = s->none_slots ? 2 * s->none_slots : 64;
	s->nones = s->none_slots ? xcalloc(s->none_slots, sizeof(*s->nones)) : NULL;
	s->none_used = s->none_live = 0;
	for (size_t i = 0; i < old_slots; i++) {
		if (old[i].until != 0 && old[i].until >= oldest)
			none_place(s, old[i].print, old[i].until);
	}
	free(old);
}

static void none_put(struct shard *s, uint64_t hash, uint32_t until)
{
	struct none *n = none_find(s, hash);

	if (n) {
		s->none_live += n->until == 0;
		n->until = until;
		return;
	}
	if (4 * (s->none_used + 1) > 3 * s->none_slots)
		none_rebuild(s, 1, 0);
	none_place(s, print_of(hash), until);
}

/* Removes hash's none; returns until when it had one, else 0. */
static uint32_t none_remove(struct shard *s, uint64_t hash)
{
	struct none *n = none_find(s, hash);
	uint32_t until = n ? n->until : 0;

	if (until != 0) {
		n->until = 0;
		s->none_live--;
	}
	return until;
}

/* ----------------------------------------------------------------- lookup */

static void queue(struct user_config *e)
{
	e->state = LOAD_QUEUED;
	loader_want_user_config(e);
}

/* What a lookup of e answers (shard locked). */
static enum lookup resolve(struct user_config *e, bool may_wait)
{
	uint32_t now = now_seconds();

	switch (e->state) {
	case LOAD_DONE:
		if (now <= e->expires || (e->flags & (REFRESHING | PRELOADED)))
			return LOOKUP_FOUND;
		if (ttl > 0) {                  /* stale: used while it is refreshed */
			e->flags |= REFRESHING;
			loader_want_user_config(e);
			return LOOKUP_FOUND;
		}
		queue(e);                       /* no caching: every request asks */
		break;
	case LOAD_FAILED:
		if (now < e->expires || !loader_may_retry())
			return LOOKUP_FAILED;
		queue(e);
		break;
	case LOAD_NONE:
		queue(e);
		break;
	default:
		break;
	}
	return may_wait ? LOOKUP_WAIT : LOOKUP_FAILED;
}

/* A key not among the entries: NULL when it has a fresh none; else its
 * new entry, which a stale none leaves as a stale "no config", served
 * while it is refreshed (shard locked). */
static struct user_config *entry_for_lookup(struct shard *s, uint64_t hash, int query,
					    const char *key, size_t key_len)
{
	struct none *n = none_find(s, hash);

	if (n && n->until != 0 && now_seconds() <= n->until)
		return NULL;
	uint32_t until = none_remove(s, hash);
	struct user_config *e = create(s, hash, query, key, key_len);
	if (until != 0) {
		e->state = LOAD_DONE;
		e->expires = until;
	}
	return e;
}

enum lookup usercache_lookup(int query, const char *key, size_t key_len, bool may_wait,
			     struct session *into, bool *found, uint64_t *ticket)
{
	static _Atomic long long last_complaint;

	*found = false;
	if (key_len > USERCACHE_KEY_MAX) {
		if (log_ratelimit(&last_complaint, 10))
			log_warning("SqlUserConfig: a %zu-byte %s is longer than the %d bytes tallyd "
				    "looks up; no user config", key_len, queries[query].field,
				    USERCACHE_KEY_MAX);
		return LOOKUP_FOUND;
	}
	uint64_t hash = key_hash(query, key, key_len);
	struct shard *s = shard_of(hash);

	pthread_mutex_lock(&s->lock);
	struct user_config *e = find(s, hash, query);
	if (e == NULL && is_mapped(query)) {
		pthread_mutex_unlock(&s->lock);
		return LOOKUP_FOUND;            /* not in the preloaded mapping: none */
	}
	if (e == NULL)
		e = entry_for_lookup(s, hash, query, key, key_len);
	if (e == NULL) {
		pthread_mutex_unlock(&s->lock);
		return LOOKUP_FOUND;            /* a fresh none */
	}
	enum lookup result = resolve(e, may_wait);
	if (result == LOOKUP_FOUND && e->values) {
		session_merge(into, e->values);
		*found = true;
	}
	if (result == LOOKUP_WAIT)
		*ticket = park_ticket();
	pthread_mutex_unlock(&s->lock);
	return result;
}

/* ----------------------------------------------------------------- loader */

void user_config_view(const struct user_config *e, struct user_config_view *out)
{
	out->query = e->query;
	out->sql = queries[e->query].sql;
	out->key = e->key;
	out->key_len = e->key_len;
}

/* The session for a JSON text, or NULL (logged) when it is no object. */
static struct session *parse(int query, const char *key, size_t key_len, const char *text,
			     size_t len)
{
	struct session *values = xcalloc(1, sizeof(*values));
	char error[256];

	session_init(values);
	if (json_parse_object(text, len, values, error, sizeof(error)) == 0)
		return values;
	log_warning("SqlUserConfig (%s): the user config of %.*s is not a JSON object (%s); "
		    "using the defaults", queries[query].field, (int)key_len, key, error);
	session_free(values);
	free(values);
	return NULL;
}

static struct shard *shard_of_entry(const struct user_config *e)
{
	return shard_of(e->hash);
}

/* Takes e out of its bucket (shard locked). */
static void unlink_entry(struct shard *s, uint64_t hash, const struct user_config *e)
{
	for (struct user_config **link = bucket_of(s, hash); *link; link = &(*link)->next) {
		if (*link == e) {
			*link = e->next;
			s->count--;
			return;
		}
	}
}

void usercache_loaded(struct user_config *e, bool found, const char *text, size_t len)
{
	struct session *values = found ? parse(e->query, e->key, e->key_len, text, len) : NULL;
	uint64_t hash = key_hash(e->query, e->key, e->key_len);
	struct shard *s = shard_of(hash);
	uint32_t until = now_seconds() + (uint32_t)ttl;

	if (!found)
		log_debug("SqlUserConfig (%s): no user config for %.*s", queries[e->query].field,
			  (int)e->key_len, e->key);
	pthread_mutex_lock(&s->lock);
	if (values == NULL) {                   /* the entry gives way to a none */
		unlink_entry(s, hash, e);
		none_put(s, hash, until);
		entry_free(e);
	} else {
		publish(e, values);
		e->state = LOAD_DONE;
		e->flags &= (uint8_t)~(REFRESHING | PRELOADED);
		e->expires = until;
	}
	pthread_mutex_unlock(&s->lock);
}

void usercache_load_failed(struct user_config *e)
{
	struct shard *s = shard_of_entry(e);

	pthread_mutex_lock(&s->lock);
	if (e->flags & REFRESHING) {            /* keep serving the stale value */
		e->flags &= (uint8_t)~REFRESHING;
		e->expires = now_seconds() + RETRY_SECONDS - (uint32_t)ttl;
	} else if (e->state == LOAD_QUEUED) {
		e->state = LOAD_FAILED;
		e->expires = now_seconds() + 1;
	}
	pthread_mutex_unlock(&s->lock);
}

int usercache_claim_preload(const char **sql)
{
	int64_t now = clock_ms();
	int claimed = -1;

	pthread_mutex_lock(&queries_lock);
	for (int i = 0; i < query_count && claimed < 0; i++) {
		struct query *q = &queries[i];
		if (q->preload_sql[0] != '\0' && !q->preloading && !q->retired &&
		    now >= q->next_preload) {
			q->preloading = true;
			q->generation++;
			*sql = q->preload_sql;
			claimed = i;
		}
	}
	pthread_mutex_unlock(&queries_lock);
	return claimed;
}

void usercache_preload_row(int query, const char *key, size_t key_len, const char *text,
			   size_t len)
{
	if (key_len > USERCACHE_KEY_MAX)
		return;
	struct session *values = parse(query, key, key_len, text, len);
	uint64_t hash = key_hash(query, key, key_len);
	struct shard *s = shard_of(hash);

	pthread_mutex_lock(&s->lock);
	struct user_config *e = find(s, hash, query);
	if (e == NULL)
		e = create(s, hash, query, key, key_len);
	publish(e, values);
	if (e->state != LOAD_QUEUED)           /* a queued one is answered by the loader */
		e->state = LOAD_DONE;
	e->flags = (uint8_t)((e->flags & REFRESHING) | PRELOADED);
	e->expires = queries[query].generation;   /* the claiming thread's own write */
	pthread_mutex_unlock(&s->lock);
}

/* After a complete preload: entries of `query` that it did not set are
 * gone from the mapping (shard locked). */
static bool superseded(const struct user_config *e, int query, uint32_t generation)
{
	return e->query == query && e->state != LOAD_QUEUED && !(e->flags & REFRESHING) &&
	       !((e->flags & PRELOADED) && e->expires == generation);
}

static void drop_where(bool (*drop)(const struct user_config *e, int query, uint32_t arg),
		       int query, uint32_t arg)
{
	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		for (size_t b = 0; b < s->bucket_count; b++) {
			for (struct user_config **link = &s->buckets[b], *e; (e = *link) != NULL;) {
				if (drop(e, query, arg)) {
					*link = e->next;
					entry_free(e);
					s->count--;
				} else {
					link = &e->next;
				}
			}
		}
		pthread_mutex_unlock(&s->lock);
	}
}

/* True when some entry matches (takes each shard's lock in turn). */
static bool any_entry(bool (*match)(const struct user_config *e, int query, uint32_t arg),
		      int query, uint32_t arg)
{
	bool found = false;

	for (int i = 0; shards && i < SHARD_COUNT && !found; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		for (size_t b = 0; b < s->bucket_count && !found; b++) {
			for (struct user_config *e = s->buckets[b]; e && !found; e = e->next)
				found = match(e, query, arg);
		}
		pthread_mutex_unlock(&s->lock);
	}
	return found;
}

/* An entry of a retired query that no load holds. */
static bool idle_of(const struct user_config *e, int query, uint32_t unused)
{
	(void)unused;
	return e->query == query && e->state != LOAD_QUEUED && !(e->flags & REFRESHING);
}

void usercache_retire_queries(uint64_t generation)
{
	bool retired[MAX_QUERIES] = { false };

	pthread_mutex_lock(&queries_lock);
	int count = query_count;
	for (int q = 0; q < count; q++) {
		if (queries[q].used_in >= generation || queries[q].retired)
			continue;
		queries[q].retired = retired[q] = true;
		queries[q].next_preload = INT64_MAX;
		atomic_store(&queries[q].mapped, false);
	}
	pthread_mutex_unlock(&queries_lock);
	for (int q = 0; q < count; q++) {
		if (retired[q] && shards)
			drop_where(idle_of, q, 0);
	}
}

void usercache_preload_done(int query, bool ok)
{
	pthread_mutex_lock(&queries_lock);
	struct query *q = &queries[query];
	uint32_t generation = q->generation;
	q->preloading = false;
	q->next_preload = clock_ms() + 1000LL * (ok ? (ttl > 0 ? ttl : 60) : RETRY_SECONDS);
	pthread_mutex_unlock(&queries_lock);
	if (!ok)
		return;
	drop_where(superseded, query, generation);
	atomic_store(&q->mapped, true);
}

/* ------------------------------------------------------------ housekeeping */

static bool unused(const struct user_config *e, int query, uint32_t now)
{
	(void)query;
	if (e->state == LOAD_QUEUED || (e->flags & (REFRESHING | PRELOADED)))
		return false;
	if (e->state == LOAD_DONE)
		return e->expires + (uint32_t)ttl < now;
	return e->expires + 60 < now;
}

void usercache_sweep(void)
{
	uint32_t now = now_seconds();
	uint32_t oldest = now > (uint32_t)ttl ? now - (uint32_t)ttl : 0;

	if (shards == NULL)
		return;
	drop_where(unused, -1, now);
	for (int i = 0; i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		size_t ended = 0;
		for (size_t k = 0; k < s->none_slots; k++)
			ended += s->nones[k].until != 0 && s->nones[k].until < oldest;
		if (ended > 0 || s->none_used > s->none_live)
			none_rebuild(s, 0, oldest);
		pthread_mutex_unlock(&s->lock);
	}
}

/* Makes e fetch afresh at its next lookup (shard locked). */
static void make_stale(struct user_config *e)
{
	if (e->state == LOAD_QUEUED || (e->flags & REFRESHING))
		return;                         /* a fresh value is on its way */
	e->state = LOAD_NONE;
	e->flags &= (uint8_t)~PRELOADED;
}

int usercache_forget(const char *field, const char *key, size_t key_len)
{
	int known = 0;

	if (key_len > USERCACHE_KEY_MAX)
		return 0;
	bool of_field[MAX_QUERIES] = { false };
	pthread_mutex_lock(&queries_lock);           /* a slot may be given away */
	int count = query_count;
	for (int q = 0; q < count; q++)
		of_field[q] = !queries[q].retired && strcmp(queries[q].field, field) == 0;
	pthread_mutex_unlock(&queries_lock);
	for (int q = 0; q < count; q++) {
		if (!of_field[q])
			continue;
		known++;
		uint64_t hash = key_hash(q, key, key_len);
		struct shard *s = shard_of(hash);
		pthread_mutex_lock(&s->lock);
		struct user_config *e = find(s, hash, q);
		if (e == NULL && is_mapped(q))
			e = create(s, hash, q, key, key_len);  /* else the mapping says "none" */
		if (e)
			make_stale(e);
		none_remove(s, hash);
		pthread_mutex_unlock(&s->lock);
	}
	return known;
}

void usercache_forget_all(void)
{
	pthread_mutex_lock(&queries_lock);
	for (int q = 0; q < query_count; q++) {
		atomic_store(&queries[q].mapped, false);
		if (!queries[q].retired)
			queries[q].next_preload = 0;
	}
	pthread_mutex_unlock(&queries_lock);
	for (int i = 0; shards && i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		for (size_t b = 0; b < s->bucket_count; b++) {
			for (struct user_config *e = s->buckets[b]; e; e = e->next)
				make_stale(e);
		}
		none_rebuild(s, 0, UINT32_MAX);
		pthread_mutex_unlock(&s->lock);
	}
}

void usercache_stats(struct usercache_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; shards && i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		out->entries += s->none_live;
		for (size_t b = 0; b < s->bucket_count; b++) {
			for (struct user_config *e = s->buckets[b]; e; e = e->next) {
				out->entries++;
				out->with_config += e->values != NULL;
				out->queued += e->state == LOAD_QUEUED;
			}
		}
		pthread_mutex_unlock(&s->lock);
	}
}

/* --------------------------------------------------------------- snapshot */

void usercache_for_each_known(void (*fn)(const char *sql, const char *key, size_t key_len,
					 const struct session *values, void *arg),
			      void *arg)
{
	for (int i = 0; shards && i < SHARD_COUNT; i++) {
		struct shard *s = &shards[i];
		pthread_mutex_lock(&s->lock);
		for (size_t b = 0; b < s->bucket_count; b++) {
			for (struct user_config *e = s->buckets[b]; e; e = e->next) {
				if (e->state == LOAD_DONE)
					fn(queries[e->query].sql, e->key, e->key_len, e->values, arg);
			}
		}
		pthread_mutex_unlock(&s->lock);
	}
}

void usercache_for_each_query(void (*fn)(const char *sql, bool mapped, void *arg), void *arg)
{
	pthread_mutex_lock(&queries_lock);           /* a slot may be given away */
	for (int q = 0; q < query_count; q++) {
		if (!queries[q].retired)
			fn(queries[q].sql, is_mapped(q), arg);
	}
	pthread_mutex_unlock(&queries_lock);
}

/* The query with this sql_query text, or -1 (start-up: one thread). */
static int query_of(const char *sql)
{
	for (int q = 0; q < query_count; q++) {
		if (strcmp(queries[q].sql, sql) == 0)
			return q;
	}
	return -1;
}

void usercache_restore_mapped(const char *sql)
{
	int query = query_of(sql);

	if (query >= 0 && queries[query].preload_sql[0] != '\0')
		atomic_store(&queries[query].mapped, true);
}

void usercache_restore(const char *sql, const char *key, size_t key_len,
		       const struct session *values)
{
	int query = query_of(sql);

	if (query < 0 || key_len > USERCACHE_KEY_MAX)
		return;                         /* the config no longer has that query */
	uint64_t hash = key_hash(query, key, key_len);
	struct shard *s = shard_of(hash);
	struct session *copy = NULL;
	if (values) {
		copy = xcalloc(1, sizeof(*copy));
		session_init(copy);
		session_merge(copy, values);
	}
	pthread_mutex_lock(&s->lock);
	struct user_config *e = find(s, hash, query);
	if (e == NULL)
		e = create(s, hash, query, key, key_len);
	publish(e, copy);
	e->state = LOAD_DONE;
	e->flags = is_mapped(query) ? PRELOADED : 0;
	e->expires = 0;                         /* stale: refreshed at its first use */
	pthread_mutex_unlock(&s->lock);
}
