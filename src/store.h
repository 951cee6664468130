/*
 * store.h: the database layer, one interface over two drivers.
 *
 *   mysql   MariaDB or MySQL through MariaDB Connector/C (store_mysql.c)
 *   sqlite  an embedded SQLite file in WAL mode (store_sqlite.c)
 *
 * A struct store is one database connection, used by one thread at a time.
 * Request data reaches SQL only as bound parameters of prepared statements;
 * table names are checked identifiers (config_is_identifier).  Every call
 * says whether the connection is still usable: STORE_LOST means the caller
 * must close it and open another (and, for a COMMIT, that the outcome is
 * unknown).
 *
 * store.c adds what both drivers share: the lookup pool for the workers
 * (the flusher has its own connection) and the outage log, which says once
 * when the database becomes unreachable and once when it is back.
 */
#ifndef TALLYD_STORE_H
#define TALLYD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "metrics.h"

enum store_status {
	STORE_OK,
	STORE_ERROR,      /* the statement failed; the connection is fine */
	STORE_LOST,       /* the connection is gone or in an unknown state */
};

/* One (key, time) row of a flush or a refresh. */
struct store_row {
	const char *key;
	size_t key_len;
	const char *time;
	size_t time_len;
	struct metric_values values;   /* upsert: increments; select: totals */
	bool found;                    /* select: the database has the row */
};

struct store;

struct store_ops {
	void (*close)(struct store *s);
	enum store_status (*begin)(struct store *s);
	enum store_status (*commit)(struct store *s);
	void (*rollback)(struct store *s);
	/* CREATE TABLE IF NOT EXISTS with the accounting columns. */
	enum store_status (*ensure_table)(struct store *s, const char *table);
	/* Adds rows[i].values to each row, inserting missing rows. */
	enum store_status (*upsert)(struct store *s, const char *table,
				    const struct store_row *rows, size_t count);
	/* Reads the totals of rows that share rows[0].time; rows are sorted by
	 * store_row_compare().  A missing table reads as no rows. */
	enum store_status (*select)(struct store *s, const char *table, struct store_row *rows,
				    size_t count);
	/* The flusher's bookkeeping table, tallyd_flushes: per instance, the
	 * sequence number of its last committed flush (0 when none).  Reading
	 * locks the row until the transaction ends, so a COMMIT still running
	 * on a dead connection is waited for. */
	/* Sets the four counters of one row to zero (tallyctl reset). */
	enum store_status (*reset_row)(struct store *s, const char *table, const struct store_row *row);
	enum store_status (*ensure_sequence_table)(struct store *s);
	enum store_status (*read_sequence)(struct store *s, const char *instance, uint64_t *seq);
	enum store_status (*write_sequence)(struct store *s, const char *instance, uint64_t seq);
	/* Runs an SqlUserConfig query with `value` bound to its ?: column 1 of
	 * row 1 goes to *out, *found says whether there was a row. */
	enum store_status (*user_config)(struct store *s, const char *sql, const char *value,
					 size_t value_len, struct buf *out, bool *found);
};

struct store {
	const struct store_ops *ops;
	char error[512];               /* the last error, for log lines */
};

/* Opens a connection with the configured driver; NULL with *error set. */
struct store *store_open(const struct database_config *config, char *error, size_t size);
struct store *store_mysql_open(const struct database_config *config, char *error, size_t size);
struct store *store_sqlite_open(const struct database_config *config, char *error, size_t size);

/* Orders rows by key bytes (shorter first on a common prefix). */
int store_row_compare(const void *a, const void *b);

/* ---- outage log (any thread) ---- */
/* Records a failure to reach the database; logs it when it starts an outage. */
void store_outage_begin(const char *why);
/* Records a success; logs the end of an outage. */
void store_outage_end(void);
bool store_is_down(void);

/* ---- lookup pool (worker threads) ---- */
/* `waiting` tells the outage log how many keys have increments to write. */
void store_pool_init(const struct database_config *config, size_t (*waiting)(void));
void store_pool_free(void);
/* A connection for one lookup, or NULL when the database cannot be reached
 * now: during an outage, only one attempt to reconnect is made per second,
 * and nobody waits longer than connect_timeout. */
struct store *store_pool_acquire(void);
/* Gives it back; a connection that reported STORE_LOST is closed. */
void store_pool_release(struct store *s, enum store_status last);

/* Lookups through the pool, for the workers.  A lookup whose connection
 * turns out to be lost (the server closed an idle one, or restarted) is
 * tried once more on a new connection. */
/* The totals of one row, as counters' loader: 0, or -1 when the database
 * could not be asked (zeros when it has no such row or table). */
int store_load_totals(const char *table, const char *key, size_t key_len, const char *time,
		      size_t time_len, struct metric_values *out, void *unused);
/* Runs an SqlUserConfig query: 1 with the text in *out, 0 when there is no
 * row (or a NULL), -1 on a database error (logged). */
int store_lookup_user_config(const char *sql, const char *value, size_t value_len,
			     struct buf *out);

#endif
