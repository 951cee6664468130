/*
 * loader.c: the loader threads (see loader.h).
 *
 * Each loader thread owns its database connection and its scratch space;
 * nothing else touches them.  `queue_lock` guards the two queues, the
 * refresh schedule, the statistics and `stopping`; `work_queued` is signalled
 * when the queues go from empty to not.  A thread takes a whole queue at
 * once, so entries asked for while a batch runs go into the next batch.
 * Jobs in order of urgency: queued counters, queued user configs (someone
 * waits for those), then a live period to load in bulk, the refresh of
 * totals quotas used, a due preload_query.
 *
 * A read that lost a conflict (STORE_RETRY: a Galera node not ready, a
 * lock wait timeout) is run again at once as the flusher runs its
 * transaction (conflict.h), counted (loader_conflicts); the connection is
 * kept.  A preload_query is not: it is tried again a few seconds later.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "conflict.h"
#include "counters.h"
#include "loader.h"
#include "log.h"
#include "park.h"
#include "rowset.h"
#include "store.h"
#include "tables.h"
#include "usercache.h"

#define IDLE_CHECK_MS 250        /* how often an idle thread looks for background work */

struct loader_thread {
	pthread_t thread;
	struct store_link link;         /* the connection, reopened when lost */
	struct store *store;            /* link.store, when connected */
	struct conflict_retry retry;    /* the pauses after a conflict */
	struct rowset rows;
	struct store_lookup lookups[STORE_BATCH_MAX];
};

static const struct config *config;
static struct loader_thread *threads;
static int thread_count;
static _Atomic int64_t retry_at;        /* ms: failed entries are not queued before */
static _Atomic int64_t conflict_noticed; /* ms: reads that outlast their tries, once a minute */

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_queued;
static struct loader_work queue;              /* guarded by queue_lock, like the rest */
static bool stopping;
static int64_t next_refresh;                  /* ms */
static bool refreshing;
static struct loader_status status;
static atomic_bool unbatchable[64];           /* SqlUserConfig queries that must go one by one */

/* ------------------------------------------------------------------ queue */

static bool queue_is_empty(void)
{
	return queue.counters.count == 0 && queue.config_count == 0;
}

void loader_want_counter(struct counter *c)
{
	pthread_mutex_lock(&queue_lock);
	if (queue_is_empty())
		pthread_cond_signal(&work_queued);
	counter_batch_push(&queue.counters, c);
	pthread_mutex_unlock(&queue_lock);
}

void loader_want_user_config(struct user_config *e)
{
	pthread_mutex_lock(&queue_lock);
	if (queue_is_empty())
		pthread_cond_signal(&work_queued);
	if (queue.config_count == queue.config_cap) {
		queue.config_cap = queue.config_cap ? queue.config_cap * 2 : 256;
		queue.configs = xrealloc(queue.configs, queue.config_cap * sizeof(*queue.configs));
	}
	queue.configs[queue.config_count++] = e;
	pthread_mutex_unlock(&queue_lock);
}

/* Swaps the queue into `work` (queue_lock held). */
static bool take_locked(struct loader_work *work)
{
	struct loader_work swap = *work;

	if (queue_is_empty())
		return false;
	*work = queue;
	queue = swap;
	queue.counters.count = 0;
	queue.config_count = 0;
	return true;
}

bool loader_take(struct loader_work *work)
{
	pthread_mutex_lock(&queue_lock);
	bool taken = take_locked(work);
	pthread_mutex_unlock(&queue_lock);
	return taken;
}

void loader_work_free(struct loader_work *work)
{
	counter_batch_free(&work->counters);
	free(work->configs);
	memset(work, 0, sizeof(*work));
}

bool loader_may_retry(void)
{
	return !store_is_down() || clock_ms() >= atomic_load(&retry_at);
}

static void count(uint64_t *counter, uint64_t n)
{
	pthread_mutex_lock(&queue_lock);
	*counter += n;
	pthread_mutex_unlock(&queue_lock);
}

/* ------------------------------------------------------------- connection */

/* A connection; false while the database is away.  A failed attempt
 * makes failed entries wait for the next one (loader_may_retry). */
static bool connect_store(struct loader_thread *t)
{
	t->store = store_link_open(&t->link);
	if (t->link.just_failed) {
		atomic_store(&retry_at, t->link.next_attempt);
		count(&status.failures, 1);
	}
	return t->store != NULL;
}

/* After a statement reported STORE_LOST: the server closed an idle
 * connection or went away; a new connection tells which. */
static void lost(struct loader_thread *t, const char *what)
{
	store_link_lost(&t->link, "loader", what);
	t->store = NULL;
}

/* After a read lost conflict number `attempt` in a row: counts it; true
 * after a short pause while it may run again, false (noticed once a
 * minute: a node not ready can refuse every refresh) when the tries are
 * used up. */
static bool conflicted(struct loader_thread *t, const char *what, int attempt)
{
	count(&status.conflicts, 1);
	if (conflict_retry(&t->retry, "loader", what, t->store->error, attempt))
		return true;
	int64_t now = clock_ms(), last = atomic_load(&conflict_noticed);
	if (now - last >= 60000 && atomic_compare_exchange_strong(&conflict_noticed, &last, now))
		log_notice("loader: %s lost %d conflicts in a row (%s); tried again later "
			   "(tallyctl stats: loader_conflicts)", what, CONFLICT_TRIES,
			   t->store->error);
	return false;
}

/* ------------------------------------------------------------ counter keys */

static bool select_rows(struct loader_thread *t, size_t *done)
{
	size_t chunk = (size_t)config->accounting.flush_batch;
	int losses = 0, conflicts = 0;

	while (connect_store(t)) {
		size_t part;
		struct rowset rest = { .keys = t->rows.keys + *done, .rows = t->rows.rows + *done,
				       .count = t->rows.count - *done };
		enum store_status st = rowset_each_chunk(&rest, t->store, chunk,
							 t->store->ops->select, &part);
		*done += part;
		if (st == STORE_OK)
			return true;
		if (st == STORE_RETRY) {
			if (!conflicted(t, "reading totals", ++conflicts))
				return false;
			continue;
		}
		if (st == STORE_ERROR) {
			log_warning("loader: reading totals: %s", t->store->error);
			return false;
		}
		lost(t, "reading totals");       /* once more on a new connection */
		if (++losses == 2)
			return false;
	}
	return false;
}

static void load_counters(struct loader_thread *t, struct counter_batch *batch)
{
	uint32_t epoch = counters_epoch();
	size_t done = 0;

	rowset_fill(&t->rows, batch, false);
	bool ok = select_rows(t, &done);
	for (size_t i = 0; i < t->rows.count; i++) {
		const struct store_row *row = &t->rows.rows[i];
		if (i < done)
			counters_loaded(t->rows.keys[i], row->found ? &row->values : NULL, epoch);
		else
			counters_load_failed(t->rows.keys[i]);
	}
	pthread_mutex_lock(&queue_lock);
	status.batches++;
	status.keys_loaded += done;
	status.failures += !ok;
	pthread_mutex_unlock(&queue_lock);
	park_wake();
}

/* ----------------------------------------------------------- user configs */

static int compare_entries(const void *a, const void *b)
{
	struct user_config_view x, y;

	user_config_view(*(struct user_config *const *)a, &x);
	user_config_view(*(struct user_config *const *)b, &y);
	return (x.query > y.query) - (x.query < y.query);
}

/* The number of lookups to send for n keys: a few fixed sizes, so that the
 * connection's statement cache keeps the batched statements. */
static size_t batch_size(size_t n)
{
	static const size_t sizes[] = { 1, 4, 16, 64, STORE_BATCH_MAX };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		if (n <= sizes[i])
			return sizes[i];
	}
	return STORE_BATCH_MAX;
}

/* Runs one query for entries[0..n) (n <= STORE_BATCH_MAX) and publishes
 * the answers. */
static enum store_status run_lookups(struct loader_thread *t, struct user_config **entries,
				     size_t n)
{
	struct user_config_view v;

	user_config_view(entries[0], &v);
	if (n > 1 && atomic_load(&unbatchable[v.query])) {
		enum store_status st = STORE_OK;
		for (size_t i = 0; i < n && st == STORE_OK; i++)
			st = run_lookups(t, entries + i, 1);
		return st;
	}
	size_t size = batch_size(n);
	for (size_t i = 0; i < size; i++) {
		struct user_config_view k;
		user_config_view(entries[i < n ? i : n - 1], &k);   /* padding repeats the last */
		t->lookups[i].key = k.key;
		t->lookups[i].key_len = k.key_len;
	}
	enum store_status st = t->store->ops->user_configs(t->store, v.sql, t->lookups, size);
	if (st == STORE_ERROR && size > 1) {
		log_notice("loader: sql_query cannot run as one statement for %zu keys (%s); "
			   "asking for each key on its own", size, t->store->error);
		atomic_store(&unbatchable[v.query], true);
		return run_lookups(t, entries, n);
	}
	for (size_t i = 0; i < n && st == STORE_OK; i++)
		usercache_loaded(entries[i], t->lookups[i].found,
				 t->lookups[i].value.data ? t->lookups[i].value.data : "",
				 t->lookups[i].value.len);
	return st;
}

/* The number of entries from `first` on that share its query (at most a
 * batch). */
static size_t same_query(struct user_config **entries, size_t count, size_t first)
{
	struct user_config_view a, b;
	size_t n = 1;

	user_config_view(entries[first], &a);
	while (first + n < count && n < STORE_BATCH_MAX) {
		user_config_view(entries[first + n], &b);
		if (b.query != a.query)
			break;
		n++;
	}
	return n;
}

/* run_lookups() on a connection: once more on a new one when it was lost,
 * again at once after a conflict. */
static enum store_status run_query(struct loader_thread *t, struct user_config **entries,
				   size_t n)
{
	enum store_status st = STORE_LOST;
	int losses = 0, conflicts = 0;

	while (losses < 2 && connect_store(t)) {
		st = run_lookups(t, entries, n);
		if (st == STORE_RETRY && conflicted(t, "running sql_query", ++conflicts))
			continue;
		if (st != STORE_LOST)
			break;
		lost(t, "running sql_query");
		losses++;
	}
	return st;
}

static void load_user_configs(struct loader_thread *t, struct user_config **entries,
			      size_t count)
{
	size_t done = 0, failed = 0;

	qsort(entries, count, sizeof(*entries), compare_entries);
	while (done < count) {
		size_t n = same_query(entries, count, done);
		enum store_status st = run_query(t, entries + done, n);
		if (st == STORE_ERROR)
			log_warning("SqlUserConfig failed: %s", t->store->error);
		for (size_t i = 0; i < n && st != STORE_OK; i++)
			usercache_load_failed(entries[done + i]);
		failed += st != STORE_OK ? n : 0;
		done += n;
	}
	pthread_mutex_lock(&queue_lock);
	status.batches++;
	status.configs_loaded += done - failed;
	status.failures += failed > 0;
	pthread_mutex_unlock(&queue_lock);
	park_wake();
}

/* ------------------------------------------------------- background work */

struct scan_state {
	int period;
	uint32_t epoch;
	size_t rows;
};

static void bulk_row(const char *key, size_t key_len, const struct metric_values *total,
		     void *arg)
{
	struct scan_state *scan = arg;

	counters_bulk_row(scan->period, key, key_len, total, scan->epoch);
	if (++scan->rows % 4096 == 0)
		park_wake();                 /* waiters among these rows need not wait for all */
}

/* Reads all rows of a live period of a quota's table.  False when there
 * was none to load. */
static bool load_period(struct loader_thread *t)
{
	int period = periods_claim_load();
	size_t time_len;

	if (period < 0)
		return false;
	if (!connect_store(t)) {
		periods_load_done(period, false);
		return false;
	}
	struct scan_state scan = { .period = period, .epoch = counters_epoch() };
	const char *table = tables_name(periods_table(period));
	const char *time = periods_time(period, &time_len);
	int64_t started = clock_ms();
	enum store_status st;
	int conflicts = 0;
	do {
		scan.rows = 0;
		st = t->store->ops->scan(t->store, table, time, time_len, bulk_row, &scan);
	} while (st == STORE_RETRY && conflicted(t, "reading a period", ++conflicts));
	periods_load_done(period, st == STORE_OK);
	park_wake();
	if (st == STORE_OK) {
		log_info("loaded %zu rows of %s for %.*s in %.2f s", scan.rows, table, (int)time_len,
			 time, (double)(clock_ms() - started) / 1000.0);
		pthread_mutex_lock(&queue_lock);
		status.periods_loaded++;
		status.rows_bulk_loaded += scan.rows;
		pthread_mutex_unlock(&queue_lock);
	} else {
		log_warning("loader: reading %s for %.*s: %s; tried again later", table,
			    (int)time_len, time, t->store->error);
		count(&status.failures, 1);
		if (st == STORE_LOST)
			lost(t, "reading a period");
	}
	return true;
}

/* Claims the refresh when it is due.  With refresh_interval 0 it still
 * comes every 10 s, to let go of the keys quotas touched (*read false). */
static bool claim_refresh(bool *read)
{
	int64_t every = (int64_t)(config->accounting.refresh_interval * 1000);
	bool claimed = false;

	*read = every > 0;
	if (every <= 0)
		every = 10000;
	pthread_mutex_lock(&queue_lock);
	int64_t now = clock_ms();
	if (next_refresh == 0)
		next_refresh = now + every;
	if (!refreshing && now >= next_refresh) {
		refreshing = claimed = true;
		next_refresh = now + every;
	}
	pthread_mutex_unlock(&queue_lock);
	return claimed;
}

/* Re-reads the totals quotas used, for other instances' increments: a few
 * thousand keys at a time, so that its memory stays small. */
static bool refresh(struct loader_thread *t)
{
	struct counter_batch batch = { 0 };
	size_t chunk = 4 * (size_t)config->accounting.flush_batch;
	int shard = 0;
	bool read;

	if (!claim_refresh(&read))
		return false;
	while (shard >= 0) {
		batch.count = 0;
		shard = counters_take_touched(&batch, shard, chunk);
		if (batch.count == 0)
			continue;
		uint32_t epoch = counters_epoch();
		size_t done = 0;
		rowset_fill(&t->rows, &batch, false);
		if (read)
			select_rows(t, &done);
		for (size_t i = 0; i < t->rows.count; i++) {
			const struct store_row *row = &t->rows.rows[i];
			counters_refreshed(t->rows.keys[i], row->found ? &row->values : NULL, epoch,
					   i >= done);
		}
	}
	counter_batch_free(&batch);
	pthread_mutex_lock(&queue_lock);
	refreshing = false;
	status.refreshes++;
	pthread_mutex_unlock(&queue_lock);
	return true;
}

struct preload_state {
	int query;
	size_t rows;
};

static void preload_row(const char *key, size_t key_len, const char *value, size_t value_len,
			void *arg)
{
	struct preload_state *p = arg;

	usercache_preload_row(p->query, key, key_len, value, value_len);
	p->rows++;
}

static bool preload(struct loader_thread *t)
{
	const char *sql;
	int query = usercache_claim_preload(&sql);

	if (query < 0)
		return false;
	struct preload_state p = { .query = query };
	enum store_status st = connect_store(t) ? t->store->ops->preload(t->store, sql, preload_row,
									  &p) : STORE_LOST;
	usercache_preload_done(query, st == STORE_OK);
	park_wake();
	if (st == STORE_OK) {
		log_info("preload_query: %zu user configs loaded", p.rows);
		count(&status.preloads, 1);
	} else if (t->store) {
		log_warning("preload_query failed: %s; the last mapping stays, tried again in a "
			    "few seconds", t->store->error);
		if (st == STORE_LOST)
			lost(t, "preload_query");
	}
	return true;
}

/* ------------------------------------------------------------------ thread */

static void *loader_main(void *arg)
{
	struct loader_thread *t = arg;
	struct loader_work work = { 0 };

	pthread_mutex_lock(&queue_lock);
	while (!stopping) {
		if (take_locked(&work)) {
			pthread_mutex_unlock(&queue_lock);
			if (work.counters.count > 0)
				load_counters(t, &work.counters);
			if (work.config_count > 0)
				load_user_configs(t, work.configs, work.config_count);
			pthread_mutex_lock(&queue_lock);
			continue;
		}
		pthread_mutex_unlock(&queue_lock);
		bool worked = load_period(t) || refresh(t) || preload(t);
		pthread_mutex_lock(&queue_lock);
		if (!worked && !stopping && queue_is_empty()) {
			struct timespec until = clock_after_ms(IDLE_CHECK_MS);
			pthread_cond_timedwait(&work_queued, &queue_lock, &until);
		}
	}
	pthread_mutex_unlock(&queue_lock);
	loader_work_free(&work);
	return NULL;
}

int loader_start(const struct config *c)
{
	pthread_condattr_t attr;

	config = c;
	stopping = false;
	next_refresh = 0;
	memset(&status, 0, sizeof(status));
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&work_queued, &attr);
	pthread_condattr_destroy(&attr);
	thread_count = c->database.pool_size;
	threads = xcalloc((size_t)thread_count, sizeof(*threads));
	for (int i = 0; i < thread_count; i++) {
		threads[i].link.config = &c->database;
		threads[i].link.statement_timeout = c->database.connect_timeout;
		for (int k = 0; k < STORE_BATCH_MAX; k++)
			buf_init(&threads[i].lookups[k].value);
		conflict_retry_init(&threads[i].retry);
		int rc = pthread_create(&threads[i].thread, NULL, loader_main, &threads[i]);
		if (rc != 0) {
			log_error("cannot start loader thread %d: %s", i, strerror(rc));
			thread_count = i;
			return -1;
		}
	}
	return 0;
}

void loader_stop(void)
{
	pthread_mutex_lock(&queue_lock);
	stopping = true;
	pthread_cond_broadcast(&work_queued);
	pthread_mutex_unlock(&queue_lock);
	for (int i = 0; i < thread_count; i++) {
		struct loader_thread *t = &threads[i];
		pthread_join(t->thread, NULL);
		store_link_close(&t->link);
		rowset_free(&t->rows);
		for (int k = 0; k < STORE_BATCH_MAX; k++)
			buf_free(&t->lookups[k].value);
	}
	/* what is still queued is answered "failed", so that nothing waits */
	for (size_t i = 0; i < queue.counters.count; i++)
		counters_load_failed(queue.counters.keys[i]);
	for (size_t i = 0; i < queue.config_count; i++)
		usercache_load_failed(queue.configs[i]);
	loader_work_free(&queue);
	free(threads);
	threads = NULL;
	thread_count = 0;
	pthread_cond_destroy(&work_queued);
}

void loader_status(struct loader_status *out)
{
	pthread_mutex_lock(&queue_lock);
	*out = status;
	out->queued = queue.counters.count + queue.config_count;
	pthread_mutex_unlock(&queue_lock);
}
