/*
 * store.c: driver selection, the outage log and the lookup pool (see
 * store.h).
 *
 * Locking: `pool_lock` guards the pool (idle list, open count, the time of
 * the next connection attempt); no lock is held while connecting.  The
 * outage state is an atomic flag plus the start time, written only by the
 * thread that flips the flag.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "store.h"

struct store *store_open(const struct database_config *config, char *error, size_t size)
{
	if (config->driver == DATABASE_MYSQL)
		return store_mysql_open(config, error, size);
	return store_sqlite_open(config, error, size);
}

int store_row_compare(const void *a, const void *b)
{
	const struct store_row *x = a, *y = b;
	size_t common = x->key_len < y->key_len ? x->key_len : y->key_len;
	int c = memcmp(x->key, y->key, common);

	if (c != 0)
		return c;
	return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* ------------------------------------------------------------------ outage */

static atomic_bool down;
static _Atomic int64_t down_since;
static size_t (*keys_waiting)(void);       /* set once by store_pool_init() */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void store_outage_begin(const char *why)
{
	bool expected = false;

	if (atomic_compare_exchange_strong(&down, &expected, true)) {
		atomic_store(&down_since, now_ms());
		log_error("database unreachable: %s; answering from the cache, %zu keys have "
			  "increments waiting, and every increment is kept until it is back", why,
			  keys_waiting ? keys_waiting() : 0);
	}
}

void store_outage_end(void)
{
	bool expected = true;

	if (atomic_compare_exchange_strong(&down, &expected, false))
		log_notice("database reachable again after %.1f s; writing the %zu keys' "
			   "increments kept meanwhile",
			   (double)(now_ms() - atomic_load(&down_since)) / 1000.0,
			   keys_waiting ? keys_waiting() : 0);
}

bool store_is_down(void)
{
	return atomic_load(&down);
}

/* -------------------------------------------------------------------- pool */

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_returned;       /* a connection came back, or a slot freed */
static const struct database_config *pool_config;
static struct store **idle;                /* guarded by pool_lock */
static int idle_count;                     /* guarded by pool_lock */
static int open_count;                     /* guarded by pool_lock: idle + lent + connecting */
static int64_t next_attempt;               /* guarded by pool_lock: ms, during an outage */

void store_pool_init(const struct database_config *config, size_t (*waiting)(void))
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pool_returned, &attr);
	pthread_condattr_destroy(&attr);
	pool_config = config;
	keys_waiting = waiting;
	idle = xcalloc((size_t)config->pool_size, sizeof(*idle));
	idle_count = open_count = 0;
	next_attempt = 0;
}

void store_pool_free(void)
{
	pthread_mutex_lock(&pool_lock);
	for (int i = 0; i < idle_count; i++)
		idle[i]->ops->close(idle[i]);
	free(idle);
	idle = NULL;
	idle_count = open_count = 0;
	pthread_mutex_unlock(&pool_lock);
	pthread_cond_destroy(&pool_returned);
}

/* Opens a new connection for the pool; pool_lock is not held. */
static struct store *connect_one(void)
{
	char error[512];
	struct store *s = store_open(pool_config, error, sizeof(error));

	if (s) {
		store_outage_end();
		return s;
	}
	store_outage_begin(error);
	pthread_mutex_lock(&pool_lock);
	open_count--;
	next_attempt = now_ms() + 1000;
	pthread_cond_signal(&pool_returned);
	pthread_mutex_unlock(&pool_lock);
	return NULL;
}

struct store *store_pool_acquire(void)
{
	struct timespec deadline;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += pool_config->connect_timeout;
	pthread_mutex_lock(&pool_lock);
	for (;;) {
		if (idle_count > 0) {
			struct store *s = idle[--idle_count];
			pthread_mutex_unlock(&pool_lock);
			return s;
		}
		if (open_count < pool_config->pool_size) {
			if (store_is_down() && now_ms() < next_attempt)
				break;                  /* one attempt per second during an outage */
			open_count++;
			pthread_mutex_unlock(&pool_lock);
			return connect_one();
		}
		if (pthread_cond_timedwait(&pool_returned, &pool_lock, &deadline) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&pool_lock);
	return NULL;
}

void store_pool_release(struct store *s, enum store_status last)
{
	if (last == STORE_LOST) {
		log_info("database connection lost: %s", s->error);
		s->ops->close(s);
	}
	pthread_mutex_lock(&pool_lock);
	if (last == STORE_LOST)
		open_count--;
	else
		idle[idle_count++] = s;
	pthread_cond_signal(&pool_returned);
	pthread_mutex_unlock(&pool_lock);
}

int store_load_totals(const char *table, const char *key, size_t key_len, const char *time,
		      size_t time_len, struct metric_values *out, void *unused)
{
	struct store_row row = { .key = key, .key_len = key_len, .time = time,
				 .time_len = time_len };
	enum store_status status = STORE_LOST;

	(void)unused;
	for (int attempt = 0; attempt < 2 && status == STORE_LOST; attempt++) {
		struct store *s = store_pool_acquire();
		if (s == NULL)
			return -1;
		status = s->ops->select(s, table, &row, 1);
		if (status == STORE_ERROR)
			log_warning("reading totals from %s: %s", table, s->error);
		store_pool_release(s, status);
	}
	if (status != STORE_OK)
		return -1;
	memset(out, 0, sizeof(*out));
	if (row.found)
		*out = row.values;
	return 0;
}

int store_lookup_user_config(const char *sql, const char *value, size_t value_len,
			     struct buf *out)
{
	enum store_status status = STORE_LOST;
	bool found = false;

	for (int attempt = 0; attempt < 2 && status == STORE_LOST; attempt++) {
		struct store *s = store_pool_acquire();
		if (s == NULL)
			return -1;
		buf_reset(out);
		status = s->ops->user_config(s, sql, value, value_len, out, &found);
		if (status == STORE_ERROR)
			log_warning("SqlUserConfig query failed: %s", s->error);
		store_pool_release(s, status);
	}
	if (status != STORE_OK)
		return -1;
	return found ? 1 : 0;
}
