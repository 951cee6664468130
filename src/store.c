/*
 * store.c: what both drivers share (see store.h): driver selection, row
 * order, batched lookup SQL, reconnecting with backoff, and the outage log.
 *
 * A struct store_link belongs to one thread.  The outage state is an
 * atomic flag plus the start time, written only by the thread that flips
 * the flag; `keys_waiting` is set once at start-up.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "keyfold.h"
#include "store.h"

struct store *store_open(const struct database_config *config, int statement_timeout,
			 struct store_failure *failure)
{
	if (config->driver == DATABASE_MYSQL)
		return store_mysql_open(config, statement_timeout, failure);
	return store_sqlite_open(config, statement_timeout, failure);
}

int store_row_compare(const void *a, const void *b)
{
	const struct store_row *x = a, *y = b;

	return key_fold_compare(x->key, x->key_len, y->key, y->key_len);
}

void store_found_row(const char *key, size_t key_len, const struct metric_values *total,
		     void *sorted_rows)
{
	struct store_sorted_rows *sorted = sorted_rows;
	struct store_row probe = { .key = key, .key_len = key_len };
	struct store_row *row = bsearch(&probe, sorted->rows, sorted->count, sizeof(probe),
					store_row_compare);

	if (row) {
		row->found = true;
		row->values = *total;
	}
}

enum store_status store_not_owner(struct store *s, const char *instance)
{
	snprintf(s->error, sizeof(s->error), "the row of instance \"%s\" in tallyd_flushes has "
		 "another owner: another tallyd writes as it", instance);
	return STORE_CONFLICT;
}

void store_batch_sql(struct buf *out, const char *sql, size_t count)
{
	size_t len = strlen(sql);

	/* a trailing semicolon would end the derived table's text */
	while (len > 0 && (sql[len - 1] == ';' || sql[len - 1] == ' ' || sql[len - 1] == '\n' ||
			   sql[len - 1] == '\t' || sql[len - 1] == '\r'))
		len--;
	buf_reset(out);
	for (size_t i = 0; i < count; i++)
		buf_printf(out, "%sSELECT %zu AS tallyd_i, t.* FROM (%.*s) AS t",
			   i ? " UNION ALL " : "", i, (int)len, sql);
}

void store_upsert_values_sql(struct buf *out, const char *table, size_t count)
{
	buf_reset(out);
	buf_printf(out, "INSERT INTO `%s` (`key`,`time`,`count`,`count_rcpt`,`size`,`size_rcpt`) "
		   "VALUES ", table);
	for (size_t i = 0; i < count; i++)
		buf_append_str(out, i ? ",(?,?,?,?,?,?)" : "(?,?,?,?,?,?)");
}

/* -------------------------------------------------------------------- link */

struct store *store_link_open(struct store_link *l)
{
	l->just_failed = l->just_opened = false;
	if (l->store)
		return l->store;
	/* back off while the database is known to be away; once another
	 * thread's connection got through, try at once */
	if (clock_ms() < l->next_attempt && store_is_down())
		return NULL;
	l->store = store_open(l->config, l->statement_timeout, &l->failure);
	if (l->store == NULL) {
		store_outage_begin(&l->failure);    /* logs the outage, once */
		l->backoff = l->backoff ? (l->backoff * 2 > 5000 ? 5000 : l->backoff * 2) : 250;
		l->next_attempt = clock_ms() + l->backoff;
		l->just_failed = true;
		return NULL;
	}
	store_outage_end();
	l->backoff = 0;
	l->just_opened = true;
	return l->store;
}

void store_link_lost(struct store_link *l, const char *who, const char *what)
{
	log_info("%s: %s: database connection lost: %s", who, what, l->store->error);
	store_link_close(l);
}

void store_link_close(struct store_link *l)
{
	if (l->store) {
		l->store->ops->close(l->store);
		l->store = NULL;
	}
}

/* ------------------------------------------------------------------ outage */

static atomic_bool down;
static _Atomic int64_t down_since;
static size_t (*keys_waiting)(void);

void store_outage_init(size_t (*waiting)(void))
{
	keys_waiting = waiting;
}

void store_outage_begin(const struct store_failure *why)
{
	bool expected = false;

	if (atomic_compare_exchange_strong(&down, &expected, true)) {
		atomic_store(&down_since, clock_ms());
		if (why->configuration)
			log_error("configuration error: %s; answering from memory, %zu keys have "
				  "increments waiting, and every increment is kept until the "
				  "database lets tallyd in", why->text,
				  keys_waiting ? keys_waiting() : 0);
		else
			log_error("database unreachable: %s; answering from memory, %zu keys have "
				  "increments waiting, and every increment is kept until it is "
				  "back", why->text, keys_waiting ? keys_waiting() : 0);
	}
}

void store_outage_end(void)
{
	bool expected = true;

	if (atomic_compare_exchange_strong(&down, &expected, false))
		log_notice("database reachable again after %.1f s; writing the %zu keys' "
			   "increments kept meanwhile",
			   (double)(clock_ms() - atomic_load(&down_since)) / 1000.0,
			   keys_waiting ? keys_waiting() : 0);
}

bool store_is_down(void)
{
	return atomic_load(&down);
}
