/*
 * store_sqlite.c: the store driver for an embedded SQLite file, tallyd's
 * default.  One struct sqlite_store per connection (sqlite3 opened with
 * NOMUTEX), used by one thread at a time: no locking here.  The file is in
 * WAL mode so that the loaders read while the flusher writes; a
 * connection waits for another's lock up to its statement timeout (busy
 * timeout: statement_timeout for the flusher, connect_timeout for loaders).
 *
 * Statements are prepared once per connection and cached (statements.h):
 * by SQL text, or by a short name for those built per table and number of
 * rows (rowset.c keeps them to a few).  Keys are bound as
 * text with their length, so any byte reaches the file unchanged.  Keys
 * compare folded (keyfold.h); in a table that holds one client's key in
 * two spellings, reads add its rows up.
 */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "keyfold.h"
#include "log.h"
#include "statements.h"
#include "store.h"

/* SQLite allows 32766 parameters per statement; an upsert row takes 6. */
#define MAX_ROWS_PER_STATEMENT 5000

struct sqlite_store {
	struct store base;
	sqlite3 *db;
	struct statements statements;
	struct buf sql;
};

static const struct store_ops sqlite_ops;

static enum store_status fail(struct sqlite_store *q, int rc, const char *doing)
{
	snprintf(q->base.error, sizeof(q->base.error), "%s: %s", doing, sqlite3_errmsg(q->db));
	switch (rc & 0xff) {
	case SQLITE_IOERR: case SQLITE_CORRUPT: case SQLITE_NOTADB: case SQLITE_CANTOPEN:
		return STORE_LOST;
	default:
		return STORE_ERROR;
	}
}

/* The cached statement called `name`, reset and unbound, or NULL. */
static sqlite3_stmt *cached(struct sqlite_store *q, const char *name)
{
	struct statement *c = statements_find(&q->statements, name);

	if (c == NULL)
		return NULL;
	sqlite3_reset(c->stmt);
	sqlite3_clear_bindings(c->stmt);
	return c->stmt;
}

static void finalize(void *stmt)
{
	sqlite3_finalize(stmt);
}

/* Prepares `sql` and caches it as `name`; NULL with *rc set on error. */
static sqlite3_stmt *prepare_as(struct sqlite_store *q, const char *name, const char *sql,
				int *rc)
{
	sqlite3_stmt *stmt;

	*rc = sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
	if (*rc != SQLITE_OK)
		return NULL;
	finalize(statements_put(&q->statements, name, stmt));
	return stmt;
}

/* The prepared statement for an SQL text, reset and unbound. */
static sqlite3_stmt *prepare(struct sqlite_store *q, const char *sql, int *rc)
{
	sqlite3_stmt *stmt = cached(q, sql);

	return stmt ? stmt : prepare_as(q, sql, sql, rc);
}

static int64_t clamp(uint64_t v)
{
	return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* Runs a statement that returns no rows. */
static enum store_status run(struct sqlite_store *q, sqlite3_stmt *stmt, const char *doing)
{
	int rc = sqlite3_step(stmt);

	sqlite3_reset(stmt);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? STORE_OK : fail(q, rc, doing);
}

static void sqlite_interrupt(struct store *s)
{
	sqlite3_interrupt(((struct sqlite_store *)s)->db);
}

static enum store_status exec(struct sqlite_store *q, const char *sql, const char *doing)
{
	int rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? STORE_OK : fail(q, rc, doing);
}

/* Opens `name` (a path, or a file: URI with SQLITE_OPEN_URI in flags);
 * `pragmas` run first, when not NULL. */
static struct store *open_file(const char *name, const char *path, int flags, int busy_ms,
			       const char *pragmas, struct store_failure *failure)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(name, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);

	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(db, busy_ms);
		if (pragmas)
			rc = sqlite3_exec(db, pragmas, NULL, NULL, NULL);
	}
	if (rc != SQLITE_OK) {
		snprintf(failure->text, sizeof(failure->text), "cannot open SQLite database %s: %s",
			 path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		failure->configuration = true;     /* the file is tallyd's: nobody else's outage */
		sqlite3_close(db);
		return NULL;
	}
	struct sqlite_store *q = xcalloc(1, sizeof(*q));
	q->base.ops = &sqlite_ops;
	q->db = db;
	buf_init(&q->sql);
	return &q->base;
}

struct store *store_sqlite_open(const struct database_config *config, int statement_timeout,
				struct store_failure *failure)
{
	return open_file(config->path, config->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
			 statement_timeout * 1000, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
			 failure);
}

struct store *store_sqlite_open_to_read(const struct database_config *config,
					struct store_failure *failure)
{
	struct buf uri;

	buf_init(&uri);
	buf_append_str(&uri, "file:");
	for (const char *p = config->path; *p; p++) {     /* a path as a URI's path */
		if (*p == '%' || *p == '?' || *p == '#')
			buf_printf(&uri, "%%%02X", (unsigned char)*p);
		else
			buf_append(&uri, p, 1);
	}
	buf_append_str(&uri, "?immutable=1");
	struct store *s = open_file(uri.data, config->path, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI,
				    0, NULL, failure);
	buf_free(&uri);
	return s;
}

static void sqlite_store_close(struct store *s)
{
	struct sqlite_store *q = (struct sqlite_store *)s;

	statements_clear(&q->statements, finalize);
	sqlite3_close(q->db);
	buf_free(&q->sql);
	free(q);
}

static enum store_status sqlite_begin(struct store *s)
{
	return exec((struct sqlite_store *)s, "BEGIN IMMEDIATE", "starting a transaction");
}

static enum store_status sqlite_commit(struct store *s)
{
	return exec((struct sqlite_store *)s, "COMMIT", "COMMIT");
}

static void sqlite_rollback(struct store *s)
{
	sqlite3_exec(((struct sqlite_store *)s)->db, "ROLLBACK", NULL, NULL, NULL);
}

/* A key as SQLite compares it here: ASCII case (SQLite's lower() folds
 * ASCII alone) and trailing spaces folded, as keyfold.h does. */
#define FOLDED(x) "lower(rtrim(" x ",' '))"

/* The unique index the upsert counts on: keys folded, so that one client's
 * spellings share a row, which keeps the spelling that created it.  A table
 * that holds two spellings of a key already cannot have it: it keeps
 * comparing bytes, and says so. */
static void ensure_folded_index(struct sqlite_store *q, const char *table)
{
	buf_reset(&q->sql);
	buf_printf(&q->sql, "CREATE UNIQUE INDEX IF NOT EXISTS `%s_key_folded` ON `%s` ("
		   FOLDED("`key`") ", `time`)", table, table);
	if (exec(q, q->sql.data, "indexing folded keys") != STORE_OK)
		log_warning("SQLite table %s: %s; it holds a key in two spellings (ASCII case, "
			    "trailing spaces), so they stay two rows, written by their exact "
			    "spelling and read as one total", table, q->base.error);
}

/* Whether `table` has its folded unique index.  Without it (see above) a
 * key's spellings are rows of their own, which reads add up; asked at
 * each read, as the flusher may create it meanwhile. */
static bool has_folded_index(struct sqlite_store *q, const char *table)
{
	int rc;
	sqlite3_stmt *stmt = prepare(q, "SELECT 1 FROM sqlite_master WHERE type='index' AND "
				     "name=?1 || '_key_folded'", &rc);

	if (stmt == NULL)
		return false;
	sqlite3_bind_text(stmt, 1, table, -1, SQLITE_STATIC);
	bool found = sqlite3_step(stmt) == SQLITE_ROW;
	sqlite3_reset(stmt);
	return found;
}

static bool no_such_table(struct sqlite_store *q)
{
	return strncmp(sqlite3_errmsg(q->db), "no such table", 13) == 0;
}

/* Whether `sql` prepares; *rc is SQLite's answer. */
static bool prepares(struct sqlite_store *q, const char *sql, int *rc)
{
	sqlite3_stmt *stmt = NULL;

	*rc = sqlite3_prepare_v2(q->db, sql, -1, &stmt, NULL);
	sqlite3_finalize(stmt);
	return *rc == SQLITE_OK;
}

/* mtpolicyd's SQLite tables lack UNIQUE(key, time), which the upsert needs,
 * and an index on time, which the loader's reads of a period need: both are
 * added to tables that exist already.  With `dry_run` nothing is changed:
 * the columns are read, and a missing table only noted (the file is
 * writable: preflight.c checked it). */
static enum store_status sqlite_ensure_table(struct store *s, const char *table, bool dry_run,
					     bool *missing)
{
	struct sqlite_store *q = (struct sqlite_store *)s;
	char doing[160];
	int rc;

	buf_reset(&q->sql);
	buf_printf(&q->sql, "SELECT `key`, `time`, `count`, `count_rcpt`, `size`, `size_rcpt` "
		   "FROM `%s` LIMIT 0", table);
	*missing = !prepares(q, q->sql.data, &rc) && no_such_table(q);
	if (rc != SQLITE_OK && !*missing) {
		snprintf(doing, sizeof(doing), "reading the columns of accounting table %s", table);
		return fail(q, rc, doing);
	}
	if (dry_run)
		return STORE_OK;
	buf_reset(&q->sql);
	buf_printf(&q->sql,
		   "CREATE TABLE IF NOT EXISTS `%s` ("
		   "`id` INTEGER PRIMARY KEY, "
		   "`key` VARCHAR(255) NOT NULL, `time` VARCHAR(255) NOT NULL, "
		   "`count` INTEGER NOT NULL DEFAULT 0, `count_rcpt` INTEGER NOT NULL DEFAULT 0, "
		   "`size` INTEGER NOT NULL DEFAULT 0, `size_rcpt` INTEGER NOT NULL DEFAULT 0); "
		   "CREATE UNIQUE INDEX IF NOT EXISTS `%s_time_key` ON `%s` (`key`, `time`); "
		   "CREATE INDEX IF NOT EXISTS `%s_time` ON `%s` (`time`);",
		   table, table, table, table, table);
	snprintf(doing, sizeof(doing), "creating accounting table %s", table);
	enum store_status status = exec(q, q->sql.data, doing);
	if (status == STORE_OK)
		ensure_folded_index(q, table);
	return status;
}

/* The upsert's text: on a folded key's row when the table has the index
 * for it, else on the exact key's. */
static void upsert_sql(struct sqlite_store *q, const char *table, size_t count, bool folded)
{
	store_upsert_values_sql(&q->sql, table, count);
	/* a total stops at INT64_MAX, SQLite's largest integer (beyond it a
	 * sum would turn into an inexact REAL) */
	buf_append_str(&q->sql, folded ? " ON CONFLICT(" FOLDED("`key`") ",`time`) DO UPDATE SET " :
		       " ON CONFLICT(`key`,`time`) DO UPDATE SET ");
	for (int v = 0; v < METRIC_COUNT_OF; v++)
		buf_printf(&q->sql, "%s`%s`=CASE WHEN excluded.`%s`>%lld-`%s` THEN %lld "
			   "ELSE `%s`+excluded.`%s` END", v ? "," : "", metric_names[v],
			   metric_names[v], (long long)INT64_MAX, metric_names[v],
			   (long long)INT64_MAX, metric_names[v], metric_names[v]);
}

static enum store_status upsert_chunk(struct sqlite_store *q, const char *table,
				      struct store_row *rows, size_t count)
{
	char name[128];
	int rc = SQLITE_OK;

	snprintf(name, sizeof(name), "upsert %s %zu", table, count);
	sqlite3_stmt *stmt = cached(q, name);
	if (stmt == NULL) {         /* the folded index missing: prepare says so */
		upsert_sql(q, table, count, true);
		stmt = prepare_as(q, name, q->sql.data, &rc);
	}
	if (stmt == NULL) {
		upsert_sql(q, table, count, false);
		stmt = prepare_as(q, name, q->sql.data, &rc);
	}
	if (stmt == NULL)
		return fail(q, rc, "writing accounting rows");
	for (size_t i = 0; i < count; i++) {
		int p = (int)i * 6 + 1;
		sqlite3_bind_text(stmt, p, rows[i].key, (int)rows[i].key_len, SQLITE_STATIC);
		sqlite3_bind_text(stmt, p + 1, rows[i].time, (int)rows[i].time_len, SQLITE_STATIC);
		for (int v = 0; v < METRIC_COUNT_OF; v++)
			sqlite3_bind_int64(stmt, p + 2 + v, clamp(rows[i].values.v[v]));
	}
	return run(q, stmt, "writing accounting rows");
}

/* Runs `chunk` on the rows, MAX_ROWS_PER_STATEMENT at a time. */
static enum store_status in_chunks(struct sqlite_store *q, const char *table,
				   struct store_row *rows, size_t count,
				   enum store_status (*chunk)(struct sqlite_store *, const char *,
							      struct store_row *, size_t))
{
	enum store_status status = STORE_OK;

	for (size_t done = 0; done < count && status == STORE_OK; done += MAX_ROWS_PER_STATEMENT) {
		size_t n = count - done < MAX_ROWS_PER_STATEMENT ? count - done :
			MAX_ROWS_PER_STATEMENT;
		status = chunk(q, table, rows + done, n);
	}
	return status;
}

/* A data error on a row: the row's values, not the database, are at fault. */
static bool refuses_data(struct sqlite_store *q)
{
	switch (sqlite3_errcode(q->db)) {
	case SQLITE_CONSTRAINT: case SQLITE_MISMATCH: case SQLITE_TOOBIG:
		return true;
	default:
		return false;
	}
}

/* More rows than one statement takes run inside a savepoint, so that a
 * refusal leaves none of them written. */
static enum store_status sqlite_upsert(struct store *s, const char *table,
				       const struct store_row *rows, size_t count)
{
	struct sqlite_store *q = (struct sqlite_store *)s;
	bool pieces = count > MAX_ROWS_PER_STATEMENT;

	if (pieces && exec(q, "SAVEPOINT tallyd_upsert", "writing accounting rows") != STORE_OK)
		return STORE_ERROR;
	enum store_status status = in_chunks(q, table, (struct store_row *)rows, count,
					     upsert_chunk);
	if (status == STORE_ERROR && refuses_data(q))
		status = STORE_REFUSED;
	if (pieces && status == STORE_REFUSED)
		exec(q, "ROLLBACK TO tallyd_upsert", "writing accounting rows");
	if (pieces && status != STORE_LOST)
		exec(q, "RELEASE tallyd_upsert", "writing accounting rows");
	return status;
}

/* Calls fn for every row of a statement that selects `key` and the four
 * metrics; with `add`, rows ordered by folded key, once per folded key,
 * with the sum of its rows (up to SQLite's largest integer) and the first
 * row's spelling. */
static enum store_status fetch_totals(struct sqlite_store *q, sqlite3_stmt *stmt, bool add,
				      store_total_fn fn, void *arg)
{
	bool held = false;
	struct metric_values sum = { 0 };
	struct buf key;
	int rc;

	buf_init(&key);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		struct metric_values values;
		for (int v = 0; v < METRIC_COUNT_OF; v++) {
			int64_t n = sqlite3_column_int64(stmt, 1 + v);
			values.v[v] = n < 0 ? 0 : (uint64_t)n;
		}
		const char *row_key = (const char *)sqlite3_column_blob(stmt, 0);
		size_t row_len = (size_t)sqlite3_column_bytes(stmt, 0);
		if (!add) {
			fn(row_key, row_len, &values, arg);
			continue;
		}
		if (held && key_fold_equal(key.data, key.len, row_key, row_len)) {
			for (int v = 0; v < METRIC_COUNT_OF; v++)
				sum.v[v] = sum.v[v] > (uint64_t)INT64_MAX - values.v[v] ?
					(uint64_t)INT64_MAX : sum.v[v] + values.v[v];
			continue;
		}
		if (held)
			fn(key.data ? key.data : "", key.len, &sum, arg);
		buf_reset(&key);
		buf_append(&key, row_key ? row_key : "", row_len);
		sum = values;
		held = true;
	}
	if (held && rc == SQLITE_DONE)
		fn(key.data ? key.data : "", key.len, &sum, arg);
	buf_free(&key);
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? STORE_OK : fail(q, rc, "reading accounting rows");
}

static enum store_status select_chunk(struct sqlite_store *q, const char *table,
				      struct store_row *rows, size_t count)
{
	struct store_sorted_rows sorted = { rows, count };
	bool add = !has_folded_index(q, table);
	char name[128];
	int rc = SQLITE_OK;

	snprintf(name, sizeof(name), "select %s %zu%s", table, count, add ? " added" : "");
	sqlite3_stmt *stmt = cached(q, name);
	if (stmt == NULL) {
		buf_reset(&q->sql);
		buf_printf(&q->sql, "SELECT `key`,`count`,`count_rcpt`,`size`,`size_rcpt` FROM `%s` "
			   "WHERE `time`=? AND " FOLDED("`key`") " IN (", table);
		for (size_t i = 0; i < count; i++)
			buf_append_str(&q->sql, i ? "," FOLDED("?") : FOLDED("?"));
		buf_append_str(&q->sql, add ? ") ORDER BY " FOLDED("`key`") : ")");
		stmt = prepare_as(q, name, q->sql.data, &rc);
	}
	if (stmt == NULL)
		return no_such_table(q) ? STORE_OK : fail(q, rc, "reading accounting rows");
	sqlite3_bind_text(stmt, 1, rows[0].time, (int)rows[0].time_len, SQLITE_STATIC);
	for (size_t i = 0; i < count; i++)
		sqlite3_bind_text(stmt, (int)i + 2, rows[i].key, (int)rows[i].key_len, SQLITE_STATIC);
	return fetch_totals(q, stmt, add, store_found_row, &sorted);
}

static enum store_status sqlite_select(struct store *s, const char *table, struct store_row *rows,
				       size_t count)
{
	for (size_t i = 0; i < count; i++)
		rows[i].found = false;
	return in_chunks((struct sqlite_store *)s, table, rows, count, select_chunk);
}

static enum store_status sqlite_scan(struct store *s, const char *table, const char *time,
				     size_t time_len, store_total_fn fn, void *arg)
{
	struct sqlite_store *q = (struct sqlite_store *)s;
	bool add = !has_folded_index(q, table);
	int rc;

	buf_reset(&q->sql);
	buf_printf(&q->sql, "SELECT `key`,`count`,`count_rcpt`,`size`,`size_rcpt` FROM `%s` "
		   "WHERE `time`=?%s", table, add ? " ORDER BY " FOLDED("`key`") : "");
	sqlite3_stmt *stmt = prepare(q, q->sql.data, &rc);
	if (stmt == NULL)
		return no_such_table(q) ? STORE_OK : fail(q, rc, "reading a period's rows");
	sqlite3_bind_text(stmt, 1, time, (int)time_len, SQLITE_STATIC);
	return fetch_totals(q, stmt, add, fn, arg);
}

static enum store_status sqlite_reset_row(struct store *s, const char *table,
					  const struct store_row *row)
{
	struct sqlite_store *q = (struct sqlite_store *)s;
	int rc;

	buf_reset(&q->sql);
	buf_printf(&q->sql, "UPDATE `%s` SET `count`=0,`count_rcpt`=0,`size`=0,`size_rcpt`=0 "
		   "WHERE " FOLDED("`key`") "=" FOLDED("?") " AND `time`=?", table);
	sqlite3_stmt *stmt = prepare(q, q->sql.data, &rc);
	if (stmt == NULL)
		return no_such_table(q) ? STORE_OK : fail(q, rc, "resetting a row");
	sqlite3_bind_text(stmt, 1, row->key, (int)row->key_len, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, row->time, (int)row->time_len, SQLITE_STATIC);
	return run(q, stmt, "resetting a row");
}

static enum store_status sqlite_ensure_sequence_table(struct store *s, bool dry_run,
						      bool *missing)
{
	struct sqlite_store *q = (struct sqlite_store *)s;
	int rc;

	*missing = !prepares(q, "SELECT `instance`, `seq`, `owner`, `alive_at` FROM "
			     "`tallyd_flushes` LIMIT 0", &rc);
	if (!*missing)
		return STORE_OK;
	if (!no_such_table(q) && strncmp(sqlite3_errmsg(q->db), "no such column", 14) != 0)
		return fail(q, rc, "reading tallyd_flushes");
	if (dry_run)
		return STORE_OK;
	enum store_status status = exec(q,
		"CREATE TABLE IF NOT EXISTS `tallyd_flushes` (`instance` TEXT NOT NULL "
		"PRIMARY KEY, `seq` INTEGER NOT NULL, `flushed_at` TEXT, "
		"`owner` TEXT NOT NULL DEFAULT '', `alive_at` INTEGER NOT NULL DEFAULT 0)",
		"creating tallyd_flushes");

	if (status != STORE_OK ||
	    exec(q, "SELECT `owner`, `alive_at` FROM `tallyd_flushes` LIMIT 0",
		 "reading tallyd_flushes") == STORE_OK)
		return status;
	/* made by a tallyd that kept no owner */
	return exec(q, "ALTER TABLE `tallyd_flushes` ADD COLUMN `owner` TEXT NOT NULL "
		    "DEFAULT ''; ALTER TABLE `tallyd_flushes` ADD COLUMN `alive_at` INTEGER "
		    "NOT NULL DEFAULT 0", "adding the owner to tallyd_flushes");
}

static enum store_status sqlite_check_query(struct store *s, const char *sql, unsigned params,
					    unsigned min_columns)
{
	struct sqlite_store *q = (struct sqlite_store *)s;
	sqlite3_stmt *stmt = NULL;
	int rc = sqlite3_prepare_v2(q->db, sql, -1, &stmt, NULL);
	enum store_status status = STORE_OK;

	if (rc != SQLITE_OK) {
		status = fail(q, rc, "preparing it");
	} else if ((unsigned)sqlite3_bind_parameter_count(stmt) != params ||
		   (unsigned)sqlite3_column_count(stmt) < min_columns) {
		snprintf(s->error, sizeof(s->error), "it takes %d ? (wants %u) and returns %d "
			 "columns (wants at least %u)", sqlite3_bind_parameter_count(stmt), params,
			 sqlite3_column_count(stmt), min_columns);
		status = STORE_ERROR;
	}
	sqlite3_finalize(stmt);
	return status;
}

#define SQLITE_NOW "CAST(strftime('%s','now') AS INTEGER)"

/* Inside the flusher's BEGIN IMMEDIATE the database is already locked. */
static enum store_status sqlite_read_sequence(struct store *s, const char *instance,
					      struct store_sequence *out)
{
	struct sqlite_store *q = (struct sqlite_store *)s;
	int rc;
	sqlite3_stmt *stmt = prepare(q, "SELECT `seq`, `owner`, " SQLITE_NOW " - `alive_at` "
				     "FROM `tallyd_flushes` WHERE `instance`=?", &rc);

	if (stmt == NULL)
		return fail(q, rc, "reading the flush sequence");
	memset(out, 0, sizeof(*out));
	sqlite3_bind_text(stmt, 1, instance, -1, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		const unsigned char *owner = sqlite3_column_text(stmt, 1);
		out->found = true;
		out->seq = (uint64_t)sqlite3_column_int64(stmt, 0);
		snprintf(out->owner, sizeof(out->owner), "%s", owner ? (const char *)owner : "");
		out->age = sqlite3_column_int64(stmt, 2);
	}
	sqlite3_reset(stmt);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? STORE_OK :
		fail(q, rc, "reading the flush sequence");
}

/* STORE_CONFLICT when the last statement changed no row. */
static enum store_status changed_one(struct sqlite_store *q, enum store_status status,
				     const char *instance)
{
	if (status == STORE_OK && sqlite3_changes(q->db) == 0)
		return store_not_owner(&q->base, instance);
	return status;
}

static enum store_status sqlite_write_sequence(struct store *s, const char *instance,
					       const char *owner, uint64_t prev, uint64_t seq)
{
	struct sqlite_store *q = (struct sqlite_store *)s;
	int rc;
	sqlite3_stmt *stmt = prepare(q, "UPDATE `tallyd_flushes` SET `seq`=?, `flushed_at`="
				     "datetime('now'), `alive_at`=" SQLITE_NOW " WHERE "
				     "`instance`=? AND `owner`=? AND `seq`=?", &rc);

	if (stmt == NULL)
		return fail(q, rc, "writing the flush sequence");
	sqlite3_bind_int64(stmt, 1, clamp(seq));
	sqlite3_bind_text(stmt, 2, instance, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, owner, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 4, clamp(prev));
	return changed_one(q, run(q, stmt, "writing the flush sequence"), instance);
}

static enum store_status sqlite_set_owner(struct store *s, const char *instance,
					  const char *expected, const char *owner)
{
	struct sqlite_store *q = (struct sqlite_store *)s;
	int rc;
	sqlite3_stmt *stmt = prepare(q, expected ?
		"UPDATE `tallyd_flushes` SET `owner`=?1, `alive_at`=" SQLITE_NOW
		" WHERE `instance`=?2 AND `owner`=?3" :
		"INSERT INTO `tallyd_flushes` (`owner`,`instance`,`seq`,`alive_at`) VALUES "
		"(?1,?2,0," SQLITE_NOW ") ON CONFLICT(`instance`) DO UPDATE SET "
		"`owner`=excluded.`owner`, `alive_at`=excluded.`alive_at`", &rc);

	if (stmt == NULL)
		return fail(q, rc, "claiming the instance");
	sqlite3_bind_text(stmt, 1, owner, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, instance, -1, SQLITE_STATIC);
	if (expected)
		sqlite3_bind_text(stmt, 3, expected, -1, SQLITE_STATIC);
	enum store_status status = run(q, stmt, "claiming the instance");
	return expected ? changed_one(q, status, instance) : status;
}

/* Appends column `column` of the current row to out; false for NULL. */
static bool column_text(sqlite3_stmt *stmt, int column, struct buf *out)
{
	if (sqlite3_column_type(stmt, column) == SQLITE_NULL)
		return false;
	size_t len = (size_t)sqlite3_column_bytes(stmt, column);
	if (len > 0)
		buf_append(out, sqlite3_column_blob(stmt, column), len);
	return true;
}

static enum store_status sqlite_user_configs(struct store *s, const char *sql,
					     struct store_lookup *lookups, size_t count)
{
	struct sqlite_store *q = (struct sqlite_store *)s;
	bool batched = count > 1;
	int rc;

	for (size_t i = 0; i < count; i++) {
		lookups[i].found = false;
		buf_reset(&lookups[i].value);
	}
	if (batched)
		store_batch_sql(&q->sql, sql, count);
	sqlite3_stmt *stmt = prepare(q, batched ? q->sql.data : sql, &rc);
	if (stmt == NULL)
		return fail(q, rc, "preparing sql_query");
	if ((size_t)sqlite3_bind_parameter_count(stmt) != count ||
	    sqlite3_column_count(stmt) < (batched ? 2 : 1)) {
		snprintf(s->error, sizeof(s->error), "sql_query must take exactly one ? and "
			 "return at least one column");
		return STORE_ERROR;
	}
	for (size_t i = 0; i < count; i++)
		sqlite3_bind_text(stmt, (int)i + 1, lookups[i].key, (int)lookups[i].key_len,
				  SQLITE_STATIC);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		size_t i = batched ? (size_t)sqlite3_column_int64(stmt, 0) : 0;
		if (i < count && !lookups[i].found)
			lookups[i].found = column_text(stmt, batched ? 1 : 0, &lookups[i].value);
	}
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? STORE_OK : fail(q, rc, "running sql_query");
}

static enum store_status sqlite_preload(struct store *s, const char *sql, store_pair_fn fn,
					void *arg)
{
	struct sqlite_store *q = (struct sqlite_store *)s;
	struct buf key, value;
	int rc;
	sqlite3_stmt *stmt = prepare(q, sql, &rc);

	if (stmt == NULL)
		return fail(q, rc, "preparing preload_query");
	if (sqlite3_bind_parameter_count(stmt) != 0 || sqlite3_column_count(stmt) < 2) {
		snprintf(s->error, sizeof(s->error), "preload_query must take no ? and return "
			 "two columns: the key and its config");
		return STORE_ERROR;
	}
	buf_init(&key);
	buf_init(&value);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		buf_reset(&key);
		buf_reset(&value);
		if (column_text(stmt, 0, &key) && column_text(stmt, 1, &value))
			fn(key.data ? key.data : "", key.len, value.data ? value.data : "", value.len,
			   arg);
	}
	sqlite3_reset(stmt);
	buf_free(&key);
	buf_free(&value);
	return rc == SQLITE_DONE ? STORE_OK : fail(q, rc, "running preload_query");
}

static const struct store_ops sqlite_ops = {
	.close = sqlite_store_close,
	.interrupt = sqlite_interrupt,
	.begin = sqlite_begin,
	.commit = sqlite_commit,
	.rollback = sqlite_rollback,
	.ensure_table = sqlite_ensure_table,
	.upsert = sqlite_upsert,
	.select = sqlite_select,
	.reset_row = sqlite_reset_row,
	.ensure_sequence_table = sqlite_ensure_sequence_table,
	.read_sequence = sqlite_read_sequence,
	.write_sequence = sqlite_write_sequence,
	.set_owner = sqlite_set_owner,
	.scan = sqlite_scan,
	.user_configs = sqlite_user_configs,
	.preload = sqlite_preload,
	.check_query = sqlite_check_query,
};
