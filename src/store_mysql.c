/*
 * store_mysql.c: the store driver for MariaDB and MySQL (MariaDB
 * Connector/C).  One struct mysql_store per connection, used by one thread
 * at a time (the pool lends it out, or the flusher owns it): no locking.
 *
 * Every statement is prepared, with request data bound as parameters, and
 * kept in a small per-connection cache keyed by its SQL text.  Keys are
 * bound as binary strings so that they reach the column byte for byte.
 * Client errors (2xxx) and a killed connection mean STORE_LOST: the caller
 * closes the connection and opens another; there is no silent reconnect,
 * which would lose the transaction state without saying so.
 */
#include <mysql.h>
#include <errmsg.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"

#define STATEMENT_CACHE 32
#define ER_CONNECTION_KILLED_MARIADB 1927

struct cached_statement {
	char *sql;
	MYSQL_STMT *stmt;
	uint64_t last_used;
};

struct mysql_store {
	struct store base;
	MYSQL *mysql;
	struct cached_statement cache[STATEMENT_CACHE];
	uint64_t uses;
	MYSQL_BIND *binds;              /* parameter array, grown as needed */
	size_t bind_cap;
	struct buf sql;                 /* scratch for statement text */
};

static const struct store_ops mysql_ops;

static enum store_status classify(unsigned int err)
{
	if (err >= 2000 && err < 3000)
		return STORE_LOST;
	if (err == ER_CONNECTION_KILLED_MARIADB || err == ER_SERVER_SHUTDOWN ||
	    err == ER_QUERY_INTERRUPTED)
		return STORE_LOST;
	return STORE_ERROR;
}

static enum store_status fail(struct mysql_store *m, unsigned int err, const char *text,
			      const char *doing)
{
	snprintf(m->base.error, sizeof(m->base.error), "%s: %s (MySQL error %u)", doing, text,
		 err);
	return classify(err);
}

static enum store_status fail_connection(struct mysql_store *m, const char *doing)
{
	return fail(m, mysql_errno(m->mysql), mysql_error(m->mysql), doing);
}

static enum store_status fail_statement(struct mysql_store *m, MYSQL_STMT *stmt,
					const char *doing)
{
	return fail(m, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), doing);
}

/* --------------------------------------------------------- statement cache */

/* The prepared statement for `sql`; NULL with the error recorded (and the
 * MySQL error number in *err) when it cannot be prepared. */
static MYSQL_STMT *prepare(struct mysql_store *m, const char *sql, unsigned int *err)
{
	struct cached_statement *slot = &m->cache[0];

	for (int i = 0; i < STATEMENT_CACHE; i++) {
		struct cached_statement *c = &m->cache[i];
		if (c->sql && strcmp(c->sql, sql) == 0) {
			c->last_used = ++m->uses;
			return c->stmt;
		}
		if (c->last_used < slot->last_used)
			slot = c;
	}
	MYSQL_STMT *stmt = mysql_stmt_init(m->mysql);
	if (stmt == NULL) {
		*err = mysql_errno(m->mysql);
		fail_connection(m, "preparing a statement");
		return NULL;
	}
	if (mysql_stmt_prepare(stmt, sql, strlen(sql)) != 0) {
		*err = mysql_stmt_errno(stmt);
		fail_statement(m, stmt, "preparing a statement");
		mysql_stmt_close(stmt);
		return NULL;
	}
	if (slot->stmt)
		mysql_stmt_close(slot->stmt);
	free(slot->sql);
	slot->sql = xstrdup(sql);
	slot->stmt = stmt;
	slot->last_used = ++m->uses;
	return stmt;
}

static MYSQL_BIND *binds(struct mysql_store *m, size_t count)
{
	if (count > m->bind_cap) {
		m->binds = xrealloc(m->binds, count * sizeof(MYSQL_BIND));
		m->bind_cap = count;
	}
	memset(m->binds, 0, count * sizeof(MYSQL_BIND));
	return m->binds;
}

static void bind_bytes(MYSQL_BIND *b, const char *data, size_t len, enum enum_field_types type)
{
	b->buffer_type = type;
	b->buffer = (void *)data;
	b->buffer_length = (unsigned long)len;
}

static void bind_u64(MYSQL_BIND *b, const uint64_t *value)
{
	b->buffer_type = MYSQL_TYPE_LONGLONG;
	b->buffer = (void *)value;
	b->is_unsigned = 1;
}

/* Runs a prepared statement with its parameters bound. */
static enum store_status execute(struct mysql_store *m, MYSQL_STMT *stmt, MYSQL_BIND *params,
				 const char *doing)
{
	if ((params && mysql_stmt_bind_param(stmt, params) != 0) || mysql_stmt_execute(stmt) != 0)
		return fail_statement(m, stmt, doing);
	return STORE_OK;
}

/* -------------------------------------------------------------- connection */

static pthread_once_t library_once = PTHREAD_ONCE_INIT;

static void library_init(void)
{
	mysql_library_init(0, NULL, NULL);
}

struct store *store_mysql_open(const struct database_config *config, char *error, size_t size)
{
	unsigned int timeout = (unsigned int)config->connect_timeout;
	const char *socket = config->socket[0] ? config->socket : NULL;

	pthread_once(&library_once, library_init);
	MYSQL *mysql = mysql_init(NULL);
	if (mysql == NULL) {
		snprintf(error, size, "out of memory in mysql_init");
		return NULL;
	}
	mysql_options(mysql, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	mysql_options(mysql, MYSQL_OPT_READ_TIMEOUT, &timeout);
	mysql_options(mysql, MYSQL_OPT_WRITE_TIMEOUT, &timeout);
	mysql_options(mysql, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	if (mysql_real_connect(mysql, config->host, config->user, config->password, config->name,
			       (unsigned int)config->port, socket, 0) == NULL) {
		snprintf(error, size, "cannot connect to MySQL/MariaDB at %s: %s",
			 socket ? socket : config->host, mysql_error(mysql));
		mysql_close(mysql);
		return NULL;
	}
	struct mysql_store *m = xcalloc(1, sizeof(*m));
	m->base.ops = &mysql_ops;
	m->mysql = mysql;
	buf_init(&m->sql);
	return &m->base;
}

static void mysql_store_close(struct store *s)
{
	struct mysql_store *m = (struct mysql_store *)s;

	for (int i = 0; i < STATEMENT_CACHE; i++) {
		if (m->cache[i].stmt)
			mysql_stmt_close(m->cache[i].stmt);
		free(m->cache[i].sql);
	}
	mysql_close(m->mysql);
	free(m->binds);
	buf_free(&m->sql);
	free(m);
}

static enum store_status query(struct mysql_store *m, const char *sql, const char *doing)
{
	if (mysql_query(m->mysql, sql) != 0)
		return fail_connection(m, doing);
	MYSQL_RES *res = mysql_store_result(m->mysql);
	if (res)
		mysql_free_result(res);
	return STORE_OK;
}

static enum store_status mysql_begin(struct store *s)
{
	return query((struct mysql_store *)s, "START TRANSACTION", "starting a transaction");
}

static enum store_status mysql_commit_transaction(struct store *s)
{
	struct mysql_store *m = (struct mysql_store *)s;

	if (mysql_commit(m->mysql) != 0)
		return fail_connection(m, "COMMIT");
	return STORE_OK;
}

static void mysql_rollback_transaction(struct store *s)
{
	mysql_rollback(((struct mysql_store *)s)->mysql);
}

/* ------------------------------------------------------------------ tables */

static enum store_status mysql_ensure_table(struct store *s, const char *table)
{
	struct mysql_store *m = (struct mysql_store *)s;

	buf_reset(&m->sql);
	buf_printf(&m->sql,
		   "CREATE TABLE IF NOT EXISTS `%s` ("
		   "`id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, "
		   "`key` VARBINARY(255) NOT NULL, "
		   "`time` VARBINARY(255) NOT NULL, "
		   "`count` BIGINT UNSIGNED NOT NULL DEFAULT 0, "
		   "`count_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0, "
		   "`size` BIGINT UNSIGNED NOT NULL DEFAULT 0, "
		   "`size_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0, "
		   "PRIMARY KEY (`id`), UNIQUE KEY `time_key` (`key`, `time`)"
		   ") ENGINE=InnoDB", table);
	return query(m, m->sql.data, "creating an accounting table");
}

static enum store_status mysql_upsert(struct store *s, const char *table,
				      const struct store_row *rows, size_t count)
{
	struct mysql_store *m = (struct mysql_store *)s;
	unsigned int err;

	buf_reset(&m->sql);
	buf_printf(&m->sql, "INSERT INTO `%s` (`key`,`time`,`count`,`count_rcpt`,`size`,"
		   "`size_rcpt`) VALUES ", table);
	for (size_t i = 0; i < count; i++)
		buf_append_str(&m->sql, i ? ",(?,?,?,?,?,?)" : "(?,?,?,?,?,?)");
	buf_append_str(&m->sql, " ON DUPLICATE KEY UPDATE `count`=`count`+VALUES(`count`),"
		       "`count_rcpt`=`count_rcpt`+VALUES(`count_rcpt`),"
		       "`size`=`size`+VALUES(`size`),`size_rcpt`=`size_rcpt`+VALUES(`size_rcpt`)");
	MYSQL_STMT *stmt = prepare(m, m->sql.data, &err);
	if (stmt == NULL)
		return classify(err);

	MYSQL_BIND *b = binds(m, count * 6);
	for (size_t i = 0; i < count; i++, b += 6) {
		bind_bytes(&b[0], rows[i].key, rows[i].key_len, MYSQL_TYPE_BLOB);
		bind_bytes(&b[1], rows[i].time, rows[i].time_len, MYSQL_TYPE_BLOB);
		for (int v = 0; v < METRIC_COUNT_OF; v++)
			bind_u64(&b[2 + v], &rows[i].values.v[v]);
	}
	return execute(m, stmt, m->binds, "writing accounting rows");
}

/* Finds the row with `key` in sorted rows. */
static struct store_row *find_row(struct store_row *rows, size_t count, const char *key,
				  size_t key_len)
{
	struct store_row probe = { .key = key, .key_len = key_len };

	return bsearch(&probe, rows, count, sizeof(*rows), store_row_compare);
}

static enum store_status fetch_totals(struct mysql_store *m, MYSQL_STMT *stmt,
				      struct store_row *rows, size_t count)
{
	char key[ACCOUNTING_VALUE_MAX + 1];
	unsigned long key_len = 0;
	uint64_t values[METRIC_COUNT_OF];
	MYSQL_BIND result[1 + METRIC_COUNT_OF];
	int rc;

	memset(result, 0, sizeof(result));
	bind_bytes(&result[0], key, sizeof(key), MYSQL_TYPE_BLOB);
	result[0].length = &key_len;
	for (int v = 0; v < METRIC_COUNT_OF; v++)
		bind_u64(&result[1 + v], &values[v]);
	if (mysql_stmt_bind_result(stmt, result) != 0)
		return fail_statement(m, stmt, "reading accounting rows");
	while ((rc = mysql_stmt_fetch(stmt)) == 0 || rc == MYSQL_DATA_TRUNCATED) {
		if (key_len > sizeof(key))
			continue;                 /* longer than any key tallyd writes */
		struct store_row *row = find_row(rows, count, key, key_len);
		if (row == NULL)
			continue;                 /* e.g. a case variant in a _ci column */
		row->found = true;
		memcpy(row->values.v, values, sizeof(values));
	}
	enum store_status status = rc == MYSQL_NO_DATA ? STORE_OK :
		fail_statement(m, stmt, "reading accounting rows");
	mysql_stmt_free_result(stmt);
	return status;
}

static enum store_status mysql_select(struct store *s, const char *table, struct store_row *rows,
				      size_t count)
{
	struct mysql_store *m = (struct mysql_store *)s;
	unsigned int err;

	for (size_t i = 0; i < count; i++)
		rows[i].found = false;
	buf_reset(&m->sql);
	buf_printf(&m->sql, "SELECT `key`,`count`,`count_rcpt`,`size`,`size_rcpt` FROM `%s` "
		   "WHERE `time`=? AND `key` IN (", table);
	for (size_t i = 0; i < count; i++)
		buf_append_str(&m->sql, i ? ",?" : "?");
	buf_append_str(&m->sql, ")");
	MYSQL_STMT *stmt = prepare(m, m->sql.data, &err);
	if (stmt == NULL)
		return err == ER_NO_SUCH_TABLE ? STORE_OK : classify(err);

	MYSQL_BIND *b = binds(m, count + 1);
	bind_bytes(&b[0], rows[0].time, rows[0].time_len, MYSQL_TYPE_BLOB);
	for (size_t i = 0; i < count; i++)
		bind_bytes(&b[1 + i], rows[i].key, rows[i].key_len, MYSQL_TYPE_BLOB);
	enum store_status status = execute(m, stmt, m->binds, "reading accounting rows");
	if (status != STORE_OK)
		return mysql_stmt_errno(stmt) == ER_NO_SUCH_TABLE ? STORE_OK : status;
	return fetch_totals(m, stmt, rows, count);
}

static enum store_status mysql_reset_row(struct store *s, const char *table,
					 const struct store_row *row)
{
	struct mysql_store *m = (struct mysql_store *)s;
	unsigned int err;
	MYSQL_BIND params[2];

	buf_reset(&m->sql);
	buf_printf(&m->sql, "UPDATE `%s` SET `count`=0,`count_rcpt`=0,`size`=0,`size_rcpt`=0 "
		   "WHERE `key`=? AND `time`=?", table);
	MYSQL_STMT *stmt = prepare(m, m->sql.data, &err);
	if (stmt == NULL)
		return err == ER_NO_SUCH_TABLE ? STORE_OK : classify(err);
	memset(params, 0, sizeof(params));
	bind_bytes(&params[0], row->key, row->key_len, MYSQL_TYPE_BLOB);
	bind_bytes(&params[1], row->time, row->time_len, MYSQL_TYPE_BLOB);
	return execute(m, stmt, params, "resetting a row");
}

/* --------------------------------------------------------------- sequences */

static enum store_status mysql_ensure_sequence_table(struct store *s)
{
	return query((struct mysql_store *)s,
		     "CREATE TABLE IF NOT EXISTS `tallyd_flushes` ("
		     "`instance` VARBINARY(255) NOT NULL PRIMARY KEY, "
		     "`seq` BIGINT UNSIGNED NOT NULL, "
		     "`flushed_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP "
		     "ON UPDATE CURRENT_TIMESTAMP) ENGINE=InnoDB",
		     "creating tallyd_flushes");
}

static enum store_status mysql_read_sequence(struct store *s, const char *instance,
					     uint64_t *seq)
{
	struct mysql_store *m = (struct mysql_store *)s;
	unsigned int err;
	MYSQL_BIND param, result;
	int rc;

	MYSQL_STMT *stmt = prepare(m, "SELECT `seq` FROM `tallyd_flushes` WHERE `instance`=? "
				   "FOR UPDATE", &err);
	if (stmt == NULL)
		return classify(err);
	memset(&param, 0, sizeof(param));
	bind_bytes(&param, instance, strlen(instance), MYSQL_TYPE_BLOB);
	enum store_status status = execute(m, stmt, &param, "reading the flush sequence");
	if (status != STORE_OK)
		return status;
	*seq = 0;
	memset(&result, 0, sizeof(result));
	bind_u64(&result, seq);
	if (mysql_stmt_bind_result(stmt, &result) != 0)
		return fail_statement(m, stmt, "reading the flush sequence");
	rc = mysql_stmt_fetch(stmt);
	if (rc != 0 && rc != MYSQL_NO_DATA)
		status = fail_statement(m, stmt, "reading the flush sequence");
	mysql_stmt_free_result(stmt);
	return status;
}

static enum store_status mysql_write_sequence(struct store *s, const char *instance,
					      uint64_t seq)
{
	struct mysql_store *m = (struct mysql_store *)s;
	unsigned int err;
	MYSQL_BIND params[2];

	MYSQL_STMT *stmt = prepare(m, "INSERT INTO `tallyd_flushes` (`instance`,`seq`) VALUES "
				   "(?,?) ON DUPLICATE KEY UPDATE `seq`=VALUES(`seq`)", &err);
	if (stmt == NULL)
		return classify(err);
	memset(params, 0, sizeof(params));
	bind_bytes(&params[0], instance, strlen(instance), MYSQL_TYPE_BLOB);
	bind_u64(&params[1], &seq);
	return execute(m, stmt, params, "writing the flush sequence");
}

/* ------------------------------------------------------------- user config */

/* Reads column 1 of the current row into out (it may be longer than the
 * first buffer). */
static enum store_status fetch_text(struct mysql_store *m, MYSQL_STMT *stmt, struct buf *out,
				    bool *found)
{
	char first[1024];
	unsigned long len = 0;
	my_bool is_null = 0;
	MYSQL_BIND result;

	memset(&result, 0, sizeof(result));
	bind_bytes(&result, first, sizeof(first), MYSQL_TYPE_STRING);
	result.length = &len;
	result.is_null = &is_null;
	if (mysql_stmt_bind_result(stmt, &result) != 0)
		return fail_statement(m, stmt, "reading the user config");
	int rc = mysql_stmt_fetch(stmt);
	if (rc == MYSQL_NO_DATA)
		return STORE_OK;
	if (rc != 0 && rc != MYSQL_DATA_TRUNCATED)
		return fail_statement(m, stmt, "reading the user config");
	*found = !is_null;
	if (is_null)
		return STORE_OK;
	if (len <= sizeof(first)) {
		buf_append(out, first, len);
		return STORE_OK;
	}
	buf_reserve(out, len);
	bind_bytes(&result, out->data + out->len, len, MYSQL_TYPE_STRING);
	if (mysql_stmt_fetch_column(stmt, &result, 0, 0) != 0)
		return fail_statement(m, stmt, "reading the user config");
	out->len += len;
	out->data[out->len] = '\0';
	return STORE_OK;
}

static enum store_status mysql_user_config(struct store *s, const char *sql, const char *value,
					   size_t value_len, struct buf *out, bool *found)
{
	struct mysql_store *m = (struct mysql_store *)s;
	unsigned int err;
	MYSQL_BIND param;

	*found = false;
	MYSQL_STMT *stmt = prepare(m, sql, &err);
	if (stmt == NULL)
		return classify(err);
	if (mysql_stmt_param_count(stmt) != 1 || mysql_stmt_field_count(stmt) < 1) {
		snprintf(s->error, sizeof(s->error), "sql_query must take exactly one ? and "
			 "return at least one column");
		return STORE_ERROR;
	}
	memset(&param, 0, sizeof(param));
	/* a string in the connection's character set: the column's collation
	 * decides how it compares, as it did for mtpolicyd */
	bind_bytes(&param, value, value_len, MYSQL_TYPE_STRING);
	enum store_status status = execute(m, stmt, &param, "running sql_query");
	if (status != STORE_OK)
		return status;
	status = fetch_text(m, stmt, out, found);
	mysql_stmt_free_result(stmt);
	return status;
}

static const struct store_ops mysql_ops = {
	.close = mysql_store_close,
	.begin = mysql_begin,
	.commit = mysql_commit_transaction,
	.rollback = mysql_rollback_transaction,
	.ensure_table = mysql_ensure_table,
	.upsert = mysql_upsert,
	.select = mysql_select,
	.reset_row = mysql_reset_row,
	.ensure_sequence_table = mysql_ensure_sequence_table,
	.read_sequence = mysql_read_sequence,
	.write_sequence = mysql_write_sequence,
	.user_config = mysql_user_config,
};
