/*
 * store.h: the database layer, one interface over two drivers.
 *
 *   mysql   MariaDB or MySQL through MariaDB Connector/C (store_mysql.c)
 *   sqlite  an embedded SQLite file in WAL mode (store_sqlite.c)
 *
 * A struct store is one database connection, used by one thread at a time:
 * the flusher has one, each loader thread has one.  Request data reaches
 * SQL only as bound parameters of prepared statements; table names are
 * checked identifiers (config_is_identifier).  Every call says whether the
 * connection is still usable: STORE_LOST means the caller must close it
 * and open another (and, for a COMMIT, that the outcome is unknown);
 * STORE_RETRY that the transaction was rolled back by a conflict and may
 * simply be run again.
 *
 * On a MariaDB Galera node every connection waits for the cluster before
 * it reads (wsrep_sync_wait), so that what it reads decides nothing on a
 * stale view: the totals a quota uses, the sequence number that says
 * whether a flush is in.
 *
 * store.c holds what both drivers share: opening with the configured
 * driver, the order of rows, the SQL that batches SqlUserConfig lookups,
 * and the outage log, which says once when the database becomes
 * unreachable and once when it is back, whichever thread notices.
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
	STORE_REFUSED,    /* upsert: the database refused a row's data (a value out of
			     range, a key too long for the column...); the statement
			     wrote nothing and the transaction goes on */
	STORE_CONFLICT,   /* tallyd_flushes: the row is not this process's */
	STORE_RETRY,      /* the transaction lost a conflict and was rolled back (a
			     deadlock, a Galera certification failure or brute-force
			     abort, error 1213; a lock wait timeout, 1205), or the
			     Galera node is not ready (1047): nothing of it was
			     written, the connection is fine, try it again at once */
};

/* One (key, time) row of a flush or a key lookup. */
struct store_row {
	const char *key;
	size_t key_len;
	const char *time;
	size_t time_len;
	struct metric_values values;   /* upsert: increments; select: totals */
	bool found;                    /* select: the database has the row */
	bool refused;                  /* upsert: the flusher set the row aside */
};

/* One SqlUserConfig lookup: column 1 of the query's first row for `key`. */
struct store_lookup {
	const char *key;
	size_t key_len;
	bool found;                    /* a row with a non-NULL value */
	struct buf value;
};

/* An instance's row of tallyd_flushes. */
struct store_sequence {
	bool found;
	uint64_t seq;
	char owner[256];
	int64_t age;                   /* seconds since its owner showed life */
};

/* A row of a period (scan) and a row of a preload_query (key, value). */
typedef void (*store_total_fn)(const char *key, size_t key_len,
			       const struct metric_values *total, void *arg);
typedef void (*store_pair_fn)(const char *key, size_t key_len, const char *value,
			      size_t value_len, void *arg);

struct store;

struct store_ops {
	void (*close)(struct store *s);
	/* From another thread: makes the statement running on s fail at once
	 * (the connection is lost then). */
	void (*interrupt)(struct store *s);
	enum store_status (*begin)(struct store *s);
	enum store_status (*commit)(struct store *s);
	void (*rollback)(struct store *s);
	/* Reads no row of the accounting table, to see that its columns can be
	 * used; a table that does not exist (*missing) is created with them,
	 * or with `dry_run` only checked for whether this user may create it.
	 * A table that exists gets no DDL (MySQL). */
	enum store_status (*ensure_table)(struct store *s, const char *table, bool dry_run,
					  bool *missing);
	/* Adds rows[i].values to each row, inserting missing rows.
	 * STORE_REFUSED: a data error on some row; nothing was written. */
	enum store_status (*upsert)(struct store *s, const char *table,
				    const struct store_row *rows, size_t count);
	/* Reads the totals of rows that share rows[0].time; rows are sorted by
	 * store_row_compare().  A missing table reads as no rows. */
	enum store_status (*select)(struct store *s, const char *table, struct store_row *rows,
				    size_t count);
	/* Calls fn for every row with time key `time`, as the rows arrive
	 * (nothing is buffered).  A missing table has no rows. */
	enum store_status (*scan)(struct store *s, const char *table, const char *time,
				  size_t time_len, store_total_fn fn, void *arg);
	/* Sets the four counters of one row to zero (tallyctl reset). */
	enum store_status (*reset_row)(struct store *s, const char *table, const struct store_row *row);
	/* The flusher's bookkeeping table, tallyd_flushes: per instance, the
	 * sequence number of its last committed flush (0 when none), its
	 * owner (identity.h) and when the owner last showed life.  Reading
	 * locks the row until the transaction ends, so a COMMIT still running
	 * on a dead connection is waited for.  Writing the sequence is a
	 * compare-and-set: it moves from `prev` only in a row `owner` holds,
	 * else STORE_CONFLICT.  set_owner() hands the row to `owner`: from
	 * anyone, creating it (expected NULL), or only from `expected`
	 * (STORE_CONFLICT otherwise); it renews the owner's lease. */
	enum store_status (*ensure_sequence_table)(struct store *s, bool dry_run, bool *missing);
	enum store_status (*read_sequence)(struct store *s, const char *instance,
					   struct store_sequence *out);
	enum store_status (*write_sequence)(struct store *s, const char *instance,
					    const char *owner, uint64_t prev, uint64_t seq);
	enum store_status (*set_owner)(struct store *s, const char *instance,
				       const char *expected, const char *owner);
	/* Runs an SqlUserConfig query (one ?) for each lookup: several in one
	 * statement (store_batch_sql) when count > 1. */
	enum store_status (*user_configs)(struct store *s, const char *sql,
					  struct store_lookup *lookups, size_t count);
	/* Runs a preload_query: fn gets columns 1 and 2 of every row. */
	enum store_status (*preload)(struct store *s, const char *sql, store_pair_fn fn, void *arg);
	/* Prepares `sql` without running it: STORE_ERROR unless it prepares,
	 * takes `params` ? and returns at least `min_columns` columns. */
	enum store_status (*check_query)(struct store *s, const char *sql, unsigned params,
					 unsigned min_columns);
};

struct store {
	const struct store_ops *ops;
	char error[512];               /* the last error, for log lines */
};

/* Why a connection could not be opened. */
struct store_failure {
	char text[512];
	bool configuration;        /* not an outage: the server refused the configured
				      user, password or database (or the SQLite file
				      cannot be opened); the text says what to check */
};

/* Opens a connection with the configured driver; NULL with *failure set.
 * A statement may take `statement_timeout` seconds (the time to wait for a
 * reply, or for SQLite's lock). */
struct store *store_open(const struct database_config *config, int statement_timeout,
			 struct store_failure *failure);
struct store *store_mysql_open(const struct database_config *config, int statement_timeout,
			       struct store_failure *failure);
struct store *store_sqlite_open(const struct database_config *config, int statement_timeout,
				struct store_failure *failure);
/* The SQLite file opened to be read and changed in no way (immutable: not
 * even a -wal or -shm file is made, which root would own), for `tallyd -t
 * --connect`; only the dry-run checks may be used on it. */
struct store *store_sqlite_open_to_read(const struct database_config *config,
					struct store_failure *failure);

/* Orders rows by their folded keys (keyfold.h): rows of one client
 * compare equal, whatever their spelling. */
int store_row_compare(const void *a, const void *b);

/* What a driver's select hands its rows to (a store_total_fn): marks the
 * row with `key` among rows sorted by store_row_compare() found, with its
 * totals, whichever spelling of the key the database holds. */
struct store_sorted_rows {
	struct store_row *rows;
	size_t count;
};
void store_found_row(const char *key, size_t key_len, const struct metric_values *total,
		     void *sorted_rows);


/* What a driver's sequence write or set_owner() returns when it changed no
 * row: STORE_CONFLICT, with the error saying so. */
enum store_status store_not_owner(struct store *s, const char *instance);

/* The statement that runs `sql` for `count` keys at once: each part is
 * sql_query as a derived table, numbered, so that rows say which key they
 * answer:  SELECT 0, t.* FROM (sql) t UNION ALL SELECT 1, t.* FROM (sql) t ... */
void store_batch_sql(struct buf *out, const char *sql, size_t count);
/* The part of a flush's upsert both dialects share, into `out` (reset):
 * INSERT INTO `table` (key, time, the four metrics) VALUES and `count` rows
 * of six parameters each; the driver appends its conflict clause. */
void store_upsert_values_sql(struct buf *out, const char *table, size_t count);
/* Most keys one batched statement carries. */
#define STORE_BATCH_MAX 200

/* ---- a thread's connection, reopened when lost ---- */
/* The flusher and each loader thread keep one.  While the database is
 * away, a new connection is tried once per backoff period (250 ms doubling
 * to 5 s); every attempt is reported to the outage log. */
struct store_link {
	const struct database_config *config;
	int statement_timeout;         /* seconds */
	struct store *store;           /* NULL while disconnected */
	int64_t next_attempt;          /* clock_ms() */
	int64_t backoff;               /* ms */
	bool just_failed;              /* the last store_link_open() tried and failed ... */
	struct store_failure failure;  /* ... for this reason */
	bool just_opened;              /* ... or opened a new connection */
};
/* The connection, opened when there is none and no backoff says wait;
 * NULL while the database is away. */
struct store *store_link_open(struct store_link *l);
/* After a call reported STORE_LOST: logs it (who, doing what) and closes
 * the connection; the next store_link_open() tells whether the database
 * is still there. */
void store_link_lost(struct store_link *l, const char *who, const char *what);
void store_link_close(struct store_link *l);

/* ---- outage log (any thread) ---- */
/* `waiting` tells the outage log how many keys have increments to write. */
void store_outage_init(size_t (*waiting)(void));
/* Records a failure to reach the database; logs it when it starts an
 * outage (a refusal of the configured access is logged as what it is). */
void store_outage_begin(const struct store_failure *why);
/* Records a success; logs the end of an outage. */
void store_outage_end(void);
bool store_is_down(void);

#endif
