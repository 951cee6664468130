/*
 * store_mysql.c: the store driver for MariaDB and MySQL (MariaDB
 * Connector/C).  One struct mysql_store per connection, used by one thread
 * at a time (the pool lends it out, or the flusher owns it): no locking.
 *
 * Every statement is prepared, with request data bound as parameters, and
 * kept in the connection's cache (statements.h) under its SQL text (the ones
 * built for a table and a number of rows, by a short name, so that a
 * flush does not build and compare a long text; rowset.c keeps the
 * numbers of rows to a few).  Keys are
 * bound as binary strings so that they reach the column byte for byte.
 * Client errors (2xxx) and a killed connection mean STORE_LOST: the caller
 * closes the connection and opens another; there is no silent reconnect,
 * which would lose the transaction state without saying so.  A deadlock,
 * a Galera certification failure (both 1213), a lock wait timeout (1205)
 * and a Galera node that is not ready (1047) mean STORE_RETRY.
 *
 * Each connection asks once whether the server is a Galera node (wsrep_on)
 * and then makes its reads causal (wsrep_sync_wait): a node may not have
 * applied what another committed, and tallyd's reads decide things.
 */
#include <mysql.h>
#include <errmsg.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "statements.h"
#include "store.h"

#define ER_CONNECTION_KILLED_MARIADB 1927

/* The parameters of every upsert statement of a connection live here, and
 * each statement is bound to them once: a flush copies its rows in, which
 * costs a tenth of binding six parameters a row again.  Rows of `slot`
 * bytes for the key and as many for the time key; the area is made anew,
 * under a new generation, for more rows or longer keys. */
struct upsert_area {
	MYSQL_BIND *binds;              /* 6 a row */
	char *bytes;                    /* key, then time key, `slot` bytes each, a row */
	unsigned long *lengths;         /* key and time key lengths, a row */
	uint64_t *values;               /* METRIC_COUNT_OF a row */
	size_t rows, slot;
	uint32_t generation;            /* 0: none yet */
};

/* The largest value each metric column of a table holds: BIGINT UNSIGNED
 * in tables tallyd creates, often INT UNSIGNED in mtpolicyd's.  Totals
 * stop at it instead of making the database refuse the row. */
/* What the catalog says about an accounting table's columns. */
#define TABLE_LIMITS 16
struct table_limits {
	char *table;
	uint64_t max[METRIC_COUNT_OF];  /* of each metric's column */
	char key_charset[33];           /* of `key`; "" when binary */
	char key_collation[65];
};

struct mysql_store {
	struct store base;
	MYSQL *mysql;
	struct statements statements;   /* an upsert's `bound`: the upsert area's generation */
	MYSQL_BIND *binds;              /* parameter array, grown as needed */
	size_t bind_cap;
	struct upsert_area upsert;
	struct table_limits limits[TABLE_LIMITS];   /* filled in turn, the oldest replaced */
	unsigned limit_count;
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
	/* the transaction was rolled back (1205: the statement; the caller
	 * rolls back the rest), or the Galera node refuses work for now */
	if (err == ER_LOCK_DEADLOCK || err == ER_LOCK_WAIT_TIMEOUT || err == ER_UNKNOWN_COM_ERROR)
		return STORE_RETRY;
	return STORE_ERROR;
}

/* A call failed with `err`; err 0 (the library reported a failure and no
 * reason) leaves the connection in a state nobody knows: lost. */
static enum store_status fail(struct mysql_store *m, unsigned int err, const char *text,
			      const char *doing)
{
	if (err == 0) {
		snprintf(m->base.error, sizeof(m->base.error), "%s: the client library reported "
			 "a failure without a reason; the connection is given up", doing);
		return STORE_LOST;
	}
	snprintf(m->base.error, sizeof(m->base.error), "%s: %s (MySQL error %u)", doing,
		 text && text[0] ? text : "no message", err);
	return classify(err);
}

static enum store_status fail_connection(struct mysql_store *m, const char *doing)
{
	return fail(m, mysql_errno(m->mysql), mysql_error(m->mysql), doing);
}

/* Connector/C leaves some failures of a statement (a fetch cut short) on
 * the connection rather than on the statement. */
static enum store_status fail_statement(struct mysql_store *m, MYSQL_STMT *stmt,
					const char *doing)
{
	if (mysql_stmt_errno(stmt) == 0)
		return fail_connection(m, doing);
	return fail(m, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), doing);
}

/* --------------------------------------------------------- statement cache */

/* The cached statement called `name`, or NULL. */
static MYSQL_STMT *cached(struct mysql_store *m, const char *name)
{
	struct statement *c = statements_find(&m->statements, name);

	return c ? c->stmt : NULL;
}

static void close_statement(void *stmt)
{
	mysql_stmt_close(stmt);
}

/* Prepares `sql` and caches it as `name`; NULL with the error recorded
 * (and the MySQL error number in *err) when it cannot be prepared. */
static MYSQL_STMT *prepare_as(struct mysql_store *m, const char *name, const char *sql,
			      unsigned int *err)
{
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
	MYSQL_STMT *replaced = statements_put(&m->statements, name, stmt);
	if (replaced)
		close_statement(replaced);
	return stmt;
}

/* The prepared statement for an SQL text. */
static MYSQL_STMT *prepare(struct mysql_store *m, const char *sql, unsigned int *err)
{
	MYSQL_STMT *stmt = cached(m, sql);

	return stmt ? stmt : prepare_as(m, sql, sql, err);
}

/* The parameter array, with room for `count`: fields that bind_bytes()
 * and bind_u64() do not set stay zero from its allocation. */
static MYSQL_BIND *binds(struct mysql_store *m, size_t count)
{
	if (count > m->bind_cap) {
		m->binds = xrealloc(m->binds, count * sizeof(MYSQL_BIND));
		memset(m->binds + m->bind_cap, 0, (count - m->bind_cap) * sizeof(MYSQL_BIND));
		m->bind_cap = count;
	}
	return m->binds;
}

static void bind_bytes(MYSQL_BIND *b, const char *data, size_t len, enum enum_field_types type)
{
	b->buffer_type = type;
	b->buffer = (void *)data;
	b->buffer_length = (unsigned long)len;
	b->is_unsigned = 0;
}

static void bind_u64(MYSQL_BIND *b, const uint64_t *value)
{
	b->buffer_type = MYSQL_TYPE_LONGLONG;
	b->buffer = (void *)value;
	b->is_unsigned = 1;
}

/* A data error: a value out of the column's range, a key too long for it,
 * bytes its character set cannot take (SQLSTATE class 22, and the errors
 * MariaDB reports under other states).  An InnoDB statement that fails so
 * is rolled back alone; the transaction goes on. */
static bool refuses_data(MYSQL_STMT *stmt)
{
	switch (mysql_stmt_errno(stmt)) {
	case ER_BAD_NULL_ERROR: case ER_WARN_DATA_OUT_OF_RANGE: case WARN_DATA_TRUNCATED:
	case ER_TRUNCATED_WRONG_VALUE: case ER_TRUNCATED_WRONG_VALUE_FOR_FIELD:
	case ER_DATA_TOO_LONG: case ER_DATA_OUT_OF_RANGE:
		return true;
	default:
		return strncmp(mysql_stmt_sqlstate(stmt), "22", 2) == 0;
	}
}

/* ------------------------------------------------------------ upsert area */

static void upsert_area_free(struct upsert_area *a)
{
	free(a->binds);
	free(a->bytes);
	free(a->lengths);
	free(a->values);
}

/* Room for `rows` rows of keys up to `longest` bytes. */
static void upsert_area_fit(struct upsert_area *a, size_t rows, size_t longest)
{
	if (rows <= a->rows && longest <= a->slot)
		return;
	uint32_t generation = a->generation + 1;
	size_t slot = a->slot > 32 ? a->slot : 32;

	while (slot < longest)
		slot *= 2;
	rows = rows > a->rows ? rows : a->rows;
	upsert_area_free(a);
	*a = (struct upsert_area){
		.binds = xcalloc(rows * 6, sizeof(MYSQL_BIND)), .bytes = xcalloc(rows * 2, slot),
		.lengths = xcalloc(rows * 2, sizeof(unsigned long)),
		.values = xcalloc(rows * METRIC_COUNT_OF, sizeof(uint64_t)),
		.rows = rows, .slot = slot, .generation = generation };
	for (size_t i = 0; i < rows * 2; i++) {
		MYSQL_BIND *b = &a->binds[i / 2 * 6 + i % 2];
		b->buffer_type = MYSQL_TYPE_BLOB;
		b->buffer = a->bytes + i * slot;
		b->buffer_length = (unsigned long)slot;
		b->length = &a->lengths[i];
	}
	for (size_t i = 0; i < rows * METRIC_COUNT_OF; i++) {
		MYSQL_BIND *b = &a->binds[i / METRIC_COUNT_OF * 6 + 2 + i % METRIC_COUNT_OF];
		b->buffer_type = MYSQL_TYPE_LONGLONG;
		b->buffer = &a->values[i];
		b->is_unsigned = 1;
	}
}

/* Copies the rows into the area, each increment at most what its column
 * holds. */
static void upsert_area_fill(struct upsert_area *a, const struct store_row *rows, size_t count,
			     const uint64_t max[METRIC_COUNT_OF])
{
	for (size_t i = 0; i < count; i++) {
		memcpy(a->bytes + 2 * i * a->slot, rows[i].key, rows[i].key_len);
		memcpy(a->bytes + (2 * i + 1) * a->slot, rows[i].time, rows[i].time_len);
		a->lengths[2 * i] = (unsigned long)rows[i].key_len;
		a->lengths[2 * i + 1] = (unsigned long)rows[i].time_len;
		for (int v = 0; v < METRIC_COUNT_OF; v++) {
			uint64_t value = rows[i].values.v[v];
			a->values[i * METRIC_COUNT_OF + v] = value < max[v] ? value : max[v];
		}
	}
}

/* ----------------------------------------------------------- column limits */

/* The key as stored: a character column's bytes are not converted to the
 * connection's character set on the way out. */
#define KEY_BYTES "CAST(`key` AS BINARY)"

/* The key column of the tables tallyd creates: compared as mtpolicyd's
 * are (ASCII case and trailing spaces folded, keyfold.h), every byte
 * stored as it is (latin1 takes them all). */
#define KEY_COLUMN "VARCHAR(255) CHARACTER SET latin1 COLLATE latin1_general_ci"

/* The largest value of an integer column type (information_schema's
 * DATA_TYPE and COLUMN_TYPE); BIGINT UNSIGNED's for any other type. */
static uint64_t type_max(const char *type, bool is_unsigned)
{
	static const struct { const char *name; uint64_t max; } types[] = {
		{ "tinyint", 127 }, { "smallint", 32767 }, { "mediumint", 8388607 },
		{ "int", 2147483647 }, { "bigint", INT64_MAX },
	};

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(type, types[i].name) == 0)
			return is_unsigned ? types[i].max * 2 + 1 : types[i].max;
	}
	return UINT64_MAX;
}

/* Reads the limits of `table`'s metric columns (BIGINT UNSIGNED's where
 * the catalog does not say) and the character set of its key; false when
 * the catalog knows no such table (yet). */
static bool read_limits(struct mysql_store *m, const char *table, struct table_limits *l)
{
	bool found = false;
	uint64_t *max = l->max;

	for (int v = 0; v < METRIC_COUNT_OF; v++)
		max[v] = UINT64_MAX;
	l->key_charset[0] = l->key_collation[0] = '\0';
	buf_reset(&m->sql);
	buf_printf(&m->sql, "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, "
		   "COLLATION_NAME FROM "
		   "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND "
		   "TABLE_NAME = '%s'", table);                /* a checked identifier */
	if (mysql_query(m->mysql, m->sql.data) != 0)
		return false;
	MYSQL_RES *res = mysql_store_result(m->mysql);
	for (MYSQL_ROW row; res && (row = mysql_fetch_row(res)) != NULL; found = true) {
		int v = row[0] && row[1] && row[2] ? metric_parse(row[0]) : -1;
		if (v >= 0)
			max[v] = type_max(row[1], strstr(row[2], "unsigned") != NULL);
		if (row[0] && strcmp(row[0], "key") == 0 && row[3] && row[4] &&
		    config_is_identifier(row[3]) && config_is_identifier(row[4])) {
			snprintf(l->key_charset, sizeof(l->key_charset), "%s", row[3]);
			snprintf(l->key_collation, sizeof(l->key_collation), "%s", row[4]);
		}
	}
	if (res)
		mysql_free_result(res);
	return found;
}

/* The limits of `table`, read once per connection once it exists. */
static const struct table_limits *limits_of(struct mysql_store *m, const char *table)
{
	unsigned n = m->limit_count < TABLE_LIMITS ? m->limit_count : TABLE_LIMITS;

	for (unsigned i = 0; i < n; i++) {
		if (strcmp(m->limits[i].table, table) == 0)
			return &m->limits[i];
	}
	struct table_limits *l = &m->limits[m->limit_count % TABLE_LIMITS];
	free(l->table);
	if (!read_limits(m, table, l)) {
		l->table = xstrdup("");          /* asked again: the flusher may create it */
		return l;
	}
	l->table = xstrdup(table);
	m->limit_count++;
	for (int v = 0; v < METRIC_COUNT_OF; v++) {
		if (l->max[v] != UINT64_MAX)
			log_info("%s.%s holds at most %llu: totals stop there", table, metric_names[v],
				 (unsigned long long)l->max[v]);
	}
	return l;
}

/* A key as an SQL parameter.  Against a character column (mtpolicyd's,
 * latin1 and case-insensitive) it is cast to the column's character set
 * and collation, so that the column's collation compares (a binary string
 * would be compared byte for byte in an IN list); its bytes are kept. */
static void append_key_param(struct mysql_store *m, const char *table)
{
	const struct table_limits *l = limits_of(m, table);

	if (l->key_charset[0])
		buf_printf(&m->sql, "CAST(? AS CHAR CHARACTER SET %s) COLLATE %s", l->key_charset,
			   l->key_collation);
	else
		buf_append_str(&m->sql, "?");
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

/* Why the server refused a connection.  It answered, and said no to the
 * configured user, password or database: that is a mistake in tallyd.conf
 * (or in the grants), not an outage, and the message says what to check. */
static void describe_refusal(const struct database_config *config, MYSQL *mysql,
			     const char *where, struct store_failure *failure)
{
	unsigned int err = mysql_errno(mysql);
	const char *check = NULL;
	char *text = failure->text;
	size_t size = sizeof(failure->text);

	switch (err) {
	case ER_ACCESS_DENIED_ERROR:
	case ER_ACCESS_DENIED_NO_PASSWORD_ERROR:
	case ER_MUST_CHANGE_PASSWORD_LOGIN:
	case ER_ACCOUNT_HAS_BEEN_LOCKED:
		snprintf(text, size, "access denied for user '%s' by MySQL/MariaDB at %s (%s, "
			 "MySQL error %u)", config->user, where, mysql_error(mysql), err);
		check = "database.user and database.password";
		break;
	case ER_DBACCESS_DENIED_ERROR:
		snprintf(text, size, "access denied for user '%s' to database '%s' by "
			 "MySQL/MariaDB at %s (%s, MySQL error %u)", config->user, config->name,
			 where, mysql_error(mysql), err);
		check = "database.user and database.name (and the user's grants)";
		break;
	case ER_BAD_DB_ERROR:
		snprintf(text, size, "database '%s' does not exist on MySQL/MariaDB at %s (%s, "
			 "MySQL error %u)", config->name, where, mysql_error(mysql), err);
		check = "database.name";
		break;
	case ER_HOST_NOT_PRIVILEGED:
		snprintf(text, size, "MySQL/MariaDB at %s does not let user '%s' connect from this "
			 "host (%s, MySQL error %u)", where, config->user, mysql_error(mysql), err);
		check = "database.user and the hosts in its grants";
		break;
	default:
		snprintf(text, size, "cannot connect to MySQL/MariaDB at %s: %s", where,
			 mysql_error(mysql));
		break;
	}
	failure->configuration = check != NULL;
	if (check) {
		size_t used = strlen(text);
		snprintf(text + used, size - used, ": check %s in %s", check,
			 config->file ? config->file : "the configuration");
	}
}

/* On a Galera node (wsrep_on), makes every read of this session wait until
 * the node has applied what the cluster committed before it (READ in
 * wsrep_sync_wait, added to what the server's setting asks): a total a
 * quota loads, or the sequence number that says whether a flush of
 * unknown outcome is in, must not come from a node that lags behind.  A
 * server without the variable (MySQL, MariaDB built without wsrep) or with
 * wsrep off is left as it is. */
static void read_after_the_cluster(struct mysql_store *m)
{
	static atomic_bool logged;
	bool galera = false;

	if (mysql_query(m->mysql, "SELECT @@wsrep_on") != 0)
		return;                          /* no such variable: not a Galera server */
	MYSQL_RES *res = mysql_store_result(m->mysql);
	MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
	galera = row && row[0] && strcmp(row[0], "1") == 0;
	if (res)
		mysql_free_result(res);
	if (!galera)
		return;
	if (mysql_query(m->mysql, "SET SESSION wsrep_sync_wait = @@wsrep_sync_wait | 1") != 0) {
		log_warning("a Galera node, but setting wsrep_sync_wait failed: %s (MySQL error "
			    "%u); reads may see a node that lags behind the cluster",
			    mysql_error(m->mysql), mysql_errno(m->mysql));
		return;
	}
	if (!atomic_exchange(&logged, true))
		log_info("the database is a Galera node: reads wait until it has applied what the "
			 "cluster committed (wsrep_sync_wait)");
}

struct store *store_mysql_open(const struct database_config *config, int statement_timeout,
			       struct store_failure *failure)
{
	unsigned int timeout = (unsigned int)config->connect_timeout;
	unsigned int replies = (unsigned int)statement_timeout;
	const char *socket = config->socket[0] ? config->socket : NULL;

	pthread_once(&library_once, library_init);
	MYSQL *mysql = mysql_init(NULL);
	if (mysql == NULL) {
		snprintf(failure->text, sizeof(failure->text), "out of memory in mysql_init");
		failure->configuration = false;
		return NULL;
	}
	mysql_options(mysql, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	mysql_options(mysql, MYSQL_OPT_READ_TIMEOUT, &replies);
	mysql_options(mysql, MYSQL_OPT_WRITE_TIMEOUT, &replies);
	mysql_options(mysql, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	/* the socket replaces host and port (tallyd.conf(5)); Connector/C
	 * would take host "127.0.0.1" for TCP and ignore it */
	const char *host = config->host;
	if (socket) {
		unsigned int protocol = MYSQL_PROTOCOL_SOCKET;
		mysql_options(mysql, MYSQL_OPT_PROTOCOL, &protocol);
		host = "localhost";
	}
	if (mysql_real_connect(mysql, host, config->user, config->password, config->name,
			       (unsigned int)config->port, socket, CLIENT_FOUND_ROWS) == NULL) {
		describe_refusal(config, mysql, socket ? socket : config->host, failure);
		mysql_close(mysql);
		return NULL;
	}
	struct mysql_store *m = xcalloc(1, sizeof(*m));
	m->base.ops = &mysql_ops;
	m->mysql = mysql;
	buf_init(&m->sql);
	read_after_the_cluster(m);
	return &m->base;
}

static void mysql_store_close(struct store *s)
{
	struct mysql_store *m = (struct mysql_store *)s;

	statements_clear(&m->statements, close_statement);
	mysql_close(m->mysql);
	free(m->binds);
	upsert_area_free(&m->upsert);
	for (int i = 0; i < TABLE_LIMITS; i++)
		free(m->limits[i].table);
	buf_free(&m->sql);
	free(m);
}

static void mysql_interrupt(struct store *s)
{
	shutdown((int)mysql_get_socket(((struct mysql_store *)s)->mysql), SHUT_RDWR);
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

	if (mysql_commit(m->mysql) == 0)
		return STORE_OK;
	enum store_status status = fail_connection(m, "COMMIT");
	/* a Galera node that left the primary component during COMMIT may
	 * have sent the write set: only the sequence number can tell */
	return mysql_errno(m->mysql) == ER_UNKNOWN_COM_ERROR ? STORE_LOST : status;
}

static void mysql_rollback_transaction(struct store *s)
{
	mysql_rollback(((struct mysql_store *)s)->mysql);
}

/* ------------------------------------------------------------------ tables */

/* Runs `sql`, or with `dry_run` only prepares it: the server checks the
 * privileges it needs at PREPARE, and does nothing. */
static enum store_status run_or_prepare(struct mysql_store *m, const char *sql, bool dry_run,
					const char *doing)
{
	if (!dry_run)
		return query(m, sql, doing);
	MYSQL_STMT *stmt = mysql_stmt_init(m->mysql);
	if (stmt == NULL)
		return fail_connection(m, doing);
	enum store_status status = STORE_OK;
	if (mysql_stmt_prepare(stmt, sql, strlen(sql)) != 0)
		status = fail_statement(m, stmt, doing);
	mysql_stmt_close(stmt);
	return status;
}

/* Reads no row of `sql` (a SELECT ... LIMIT 0 of the columns tallyd uses):
 * STORE_OK when they can be read, else the MySQL error in *err. */
static enum store_status probe(struct mysql_store *m, const char *sql, const char *doing,
			       unsigned int *err)
{
	*err = 0;
	if (mysql_query(m->mysql, sql) == 0) {
		MYSQL_RES *res = mysql_store_result(m->mysql);
		if (res)
			mysql_free_result(res);
		return STORE_OK;
	}
	*err = mysql_errno(m->mysql);
	return fail_connection(m, doing);
}

/* A table that exists is only read (no DDL: on Galera even CREATE TABLE IF
 * NOT EXISTS is a statement the whole cluster runs in turn). */
static enum store_status mysql_ensure_table(struct store *s, const char *table, bool dry_run,
					    bool *missing)
{
	struct mysql_store *m = (struct mysql_store *)s;
	char doing[160];
	unsigned int err;

	*missing = false;
	buf_reset(&m->sql);
	buf_printf(&m->sql, "SELECT `key`, `time`, `count`, `count_rcpt`, `size`, `size_rcpt` "
		   "FROM `%s` LIMIT 0", table);
	snprintf(doing, sizeof(doing), "reading the columns of accounting table %s", table);
	enum store_status status = probe(m, m->sql.data, doing, &err);
	if (status == STORE_OK || err != ER_NO_SUCH_TABLE)
		return status;
	*missing = true;
	buf_reset(&m->sql);
	buf_printf(&m->sql,
		   "CREATE TABLE IF NOT EXISTS `%s` ("
		   "`id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, "
		   "`key` " KEY_COLUMN " NOT NULL, "
		   "`time` VARBINARY(255) NOT NULL, "
		   "`count` BIGINT UNSIGNED NOT NULL DEFAULT 0, "
		   "`count_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0, "
		   "`size` BIGINT UNSIGNED NOT NULL DEFAULT 0, "
		   "`size_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0, "
		   "PRIMARY KEY (`id`), UNIQUE KEY `time_key` (`key`, `time`), KEY `time` (`time`)"
		   ") ENGINE=InnoDB", table);
	snprintf(doing, sizeof(doing), "creating accounting table %s", table);
	return run_or_prepare(m, m->sql.data, dry_run, doing);
}

static enum store_status mysql_upsert(struct store *s, const char *table,
				      const struct store_row *rows, size_t count)
{
	struct mysql_store *m = (struct mysql_store *)s;
	unsigned int err;

	char name[128];

	snprintf(name, sizeof(name), "upsert %s %zu", table, count);
	const uint64_t *max = limits_of(m, table)->max;
	MYSQL_STMT *stmt = cached(m, name);
	if (stmt == NULL) {
		store_upsert_values_sql(&m->sql, table, count);
		/* a total stops at what its column holds (no sum is ever formed
		 * beyond it, so the database has nothing to refuse) */
		buf_append_str(&m->sql, " ON DUPLICATE KEY UPDATE ");
		for (int v = 0; v < METRIC_COUNT_OF; v++)
			buf_printf(&m->sql, "%s`%s`=IF(VALUES(`%s`)>%llu-`%s`,%llu,`%s`+VALUES(`%s`))",
				   v ? "," : "", metric_names[v], metric_names[v],
				   (unsigned long long)max[v], metric_names[v],
				   (unsigned long long)max[v], metric_names[v], metric_names[v]);
		stmt = prepare_as(m, name, m->sql.data, &err);
	}
	if (stmt == NULL)
		return classify(err);

	size_t longest = 0;
	for (size_t i = 0; i < count; i++) {
		longest = rows[i].key_len > longest ? rows[i].key_len : longest;
		longest = rows[i].time_len > longest ? rows[i].time_len : longest;
	}
	upsert_area_fit(&m->upsert, count, longest);
	upsert_area_fill(&m->upsert, rows, count, max);
	struct statement *slot = statements_holding(&m->statements, stmt);
	if (slot->bound != m->upsert.generation) {
		if (mysql_stmt_bind_param(stmt, m->upsert.binds) != 0)
			return fail_statement(m, stmt, "writing accounting rows");
		slot->bound = m->upsert.generation;
	}
	enum store_status status = execute(m, stmt, NULL, "writing accounting rows");
	return status == STORE_ERROR && refuses_data(stmt) ? STORE_REFUSED : status;
}

/* Calls fn for every row of a statement that selects `key` and the four
 * metrics, as the rows arrive. */
static enum store_status fetch_totals(struct mysql_store *m, MYSQL_STMT *stmt, store_total_fn fn,
				      void *arg)
{
	char key[ACCOUNTING_VALUE_MAX + 1];
	unsigned long key_len = 0;
	struct metric_values values;
	MYSQL_BIND result[1 + METRIC_COUNT_OF];
	int rc;

	memset(result, 0, sizeof(result));
	bind_bytes(&result[0], key, sizeof(key), MYSQL_TYPE_BLOB);
	result[0].length = &key_len;
	for (int v = 0; v < METRIC_COUNT_OF; v++)
		bind_u64(&result[1 + v], &values.v[v]);
	if (mysql_stmt_bind_result(stmt, result) != 0)
		return fail_statement(m, stmt, "reading accounting rows");
	while ((rc = mysql_stmt_fetch(stmt)) == 0 || rc == MYSQL_DATA_TRUNCATED) {
		if (key_len <= sizeof(key))      /* else longer than any key tallyd writes */
			fn(key, key_len, &values, arg);
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
	struct store_sorted_rows sorted = { rows, count };
	unsigned int err;

	for (size_t i = 0; i < count; i++)
		rows[i].found = false;
	char name[128];

	snprintf(name, sizeof(name), "select %s %zu", table, count);
	MYSQL_STMT *stmt = cached(m, name);
	if (stmt == NULL) {
		limits_of(m, table);         /* before the text is built in m->sql */
		buf_reset(&m->sql);
		buf_printf(&m->sql, "SELECT " KEY_BYTES ",`count`,`count_rcpt`,`size`,`size_rcpt` "
			   "FROM `%s` WHERE `time`=? AND `key` IN (", table);
		for (size_t i = 0; i < count; i++) {
			buf_append_str(&m->sql, i ? "," : "");
			append_key_param(m, table);
		}
		buf_append_str(&m->sql, ")");
		stmt = prepare_as(m, name, m->sql.data, &err);
	}
	if (stmt == NULL)
		return err == ER_NO_SUCH_TABLE ? STORE_OK : classify(err);

	MYSQL_BIND *b = binds(m, count + 1);
	bind_bytes(&b[0], rows[0].time, rows[0].time_len, MYSQL_TYPE_BLOB);
	for (size_t i = 0; i < count; i++)
		bind_bytes(&b[1 + i], rows[i].key, rows[i].key_len, MYSQL_TYPE_BLOB);
	enum store_status status = execute(m, stmt, m->binds, "reading accounting rows");
	if (status != STORE_OK)
		return mysql_stmt_errno(stmt) == ER_NO_SUCH_TABLE ? STORE_OK : status;
	return fetch_totals(m, stmt, store_found_row, &sorted);
}

static enum store_status mysql_scan(struct store *s, const char *table, const char *time,
				    size_t time_len, store_total_fn fn, void *arg)
{
	struct mysql_store *m = (struct mysql_store *)s;
	unsigned int err;
	MYSQL_BIND param;

	buf_reset(&m->sql);
	buf_printf(&m->sql, "SELECT " KEY_BYTES ",`count`,`count_rcpt`,`size`,`size_rcpt` "
		   "FROM `%s` WHERE `time`=?", table);
	MYSQL_STMT *stmt = prepare(m, m->sql.data, &err);
	if (stmt == NULL)
		return err == ER_NO_SUCH_TABLE ? STORE_OK : classify(err);
	memset(&param, 0, sizeof(param));
	bind_bytes(&param, time, time_len, MYSQL_TYPE_BLOB);
	enum store_status status = execute(m, stmt, &param, "reading a period's rows");
	if (status != STORE_OK)
		return mysql_stmt_errno(stmt) == ER_NO_SUCH_TABLE ? STORE_OK : status;
	return fetch_totals(m, stmt, fn, arg);
}

static enum store_status mysql_reset_row(struct store *s, const char *table,
					 const struct store_row *row)
{
	struct mysql_store *m = (struct mysql_store *)s;
	unsigned int err;
	MYSQL_BIND params[2];

	limits_of(m, table);                 /* before the text is built in m->sql */
	buf_reset(&m->sql);
	buf_printf(&m->sql, "UPDATE `%s` SET `count`=0,`count_rcpt`=0,`size`=0,`size_rcpt`=0 "
		   "WHERE `time`=? AND `key`=", table);
	append_key_param(m, table);
	MYSQL_STMT *stmt = prepare(m, m->sql.data, &err);
	if (stmt == NULL)
		return err == ER_NO_SUCH_TABLE ? STORE_OK : classify(err);
	memset(params, 0, sizeof(params));
	bind_bytes(&params[0], row->time, row->time_len, MYSQL_TYPE_BLOB);
	bind_bytes(&params[1], row->key, row->key_len, MYSQL_TYPE_BLOB);
	return execute(m, stmt, params, "resetting a row");
}

/* --------------------------------------------------------------- sequences */

#define OWNER_COLUMNS "`owner` VARBINARY(255) NOT NULL DEFAULT '', " \
	"`alive_at` BIGINT NOT NULL DEFAULT 0"

static enum store_status mysql_ensure_sequence_table(struct store *s, bool dry_run, bool *missing)
{
	struct mysql_store *m = (struct mysql_store *)s;
	unsigned int err;

	*missing = false;
	enum store_status status = probe(m, "SELECT `instance`, `seq`, `owner`, `alive_at` FROM "
					 "`tallyd_flushes` LIMIT 0", "reading tallyd_flushes", &err);
	if (status == STORE_OK || (err != ER_NO_SUCH_TABLE && err != ER_BAD_FIELD_ERROR))
		return status;
	*missing = true;
	if (err == ER_NO_SUCH_TABLE)
		return run_or_prepare(m,
			"CREATE TABLE IF NOT EXISTS `tallyd_flushes` ("
			"`instance` VARBINARY(255) NOT NULL PRIMARY KEY, "
			"`seq` BIGINT UNSIGNED NOT NULL, "
			"`flushed_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP "
			"ON UPDATE CURRENT_TIMESTAMP, " OWNER_COLUMNS ") ENGINE=InnoDB", dry_run,
			"creating tallyd_flushes");
	/* made by a tallyd that kept no owner */
	return run_or_prepare(m, "ALTER TABLE `tallyd_flushes` ADD COLUMN IF NOT EXISTS `owner` "
			      "VARBINARY(255) NOT NULL DEFAULT '', ADD COLUMN IF NOT EXISTS "
			      "`alive_at` BIGINT NOT NULL DEFAULT 0", dry_run,
			      "adding the owner to tallyd_flushes");
}

static enum store_status mysql_read_sequence(struct store *s, const char *instance,
					     struct store_sequence *out)
{
	struct mysql_store *m = (struct mysql_store *)s;
	unsigned int err;
	MYSQL_BIND param, result[3];
	unsigned long owner_len = 0;
	int rc;

	MYSQL_STMT *stmt = prepare(m, "SELECT `seq`, `owner`, CAST(UNIX_TIMESTAMP() AS SIGNED) - `alive_at` FROM "
				   "`tallyd_flushes` WHERE `instance`=? FOR UPDATE", &err);
	if (stmt == NULL)
		return classify(err);
	memset(&param, 0, sizeof(param));
	bind_bytes(&param, instance, strlen(instance), MYSQL_TYPE_BLOB);
	enum store_status status = execute(m, stmt, &param, "reading the flush sequence");
	if (status != STORE_OK)
		return status;
	memset(out, 0, sizeof(*out));
	memset(result, 0, sizeof(result));
	bind_u64(&result[0], &out->seq);
	bind_bytes(&result[1], out->owner, sizeof(out->owner) - 1, MYSQL_TYPE_BLOB);
	result[1].length = &owner_len;
	bind_u64(&result[2], (uint64_t *)&out->age);
	result[2].is_unsigned = 0;
	if (mysql_stmt_bind_result(stmt, result) != 0)
		return fail_statement(m, stmt, "reading the flush sequence");
	rc = mysql_stmt_fetch(stmt);
	if (rc == 0 || rc == MYSQL_DATA_TRUNCATED) {
		out->found = true;
		out->owner[owner_len < sizeof(out->owner) ? owner_len : sizeof(out->owner) - 1] = 0;
	} else if (rc != MYSQL_NO_DATA) {
		status = fail_statement(m, stmt, "reading the flush sequence");
	}
	mysql_stmt_free_result(stmt);
	return status;
}

/* STORE_CONFLICT when the statement found no row to change. */
static enum store_status changed_one(struct mysql_store *m, MYSQL_STMT *stmt,
				     enum store_status status, const char *instance)
{
	if (status == STORE_OK && mysql_stmt_affected_rows(stmt) == 0)
		return store_not_owner(&m->base, instance);
	return status;
}

static enum store_status mysql_write_sequence(struct store *s, const char *instance,
					      const char *owner, uint64_t prev, uint64_t seq)
{
	struct mysql_store *m = (struct mysql_store *)s;
	unsigned int err;
	MYSQL_BIND params[4];

	MYSQL_STMT *stmt = prepare(m, "UPDATE `tallyd_flushes` SET `seq`=?, "
				   "`alive_at`=UNIX_TIMESTAMP() WHERE `instance`=? AND `owner`=? "
				   "AND `seq`=?", &err);
	if (stmt == NULL)
		return classify(err);
	memset(params, 0, sizeof(params));
	bind_u64(&params[0], &seq);
	bind_bytes(&params[1], instance, strlen(instance), MYSQL_TYPE_BLOB);
	bind_bytes(&params[2], owner, strlen(owner), MYSQL_TYPE_BLOB);
	bind_u64(&params[3], &prev);
	return changed_one(m, stmt, execute(m, stmt, params, "writing the flush sequence"),
			   instance);
}

static enum store_status mysql_set_owner(struct store *s, const char *instance,
					 const char *expected, const char *owner)
{
	struct mysql_store *m = (struct mysql_store *)s;
	unsigned int err;
	MYSQL_BIND params[3];

	MYSQL_STMT *stmt = prepare(m, expected ?
		"UPDATE `tallyd_flushes` SET `owner`=?, `alive_at`=UNIX_TIMESTAMP() "
		"WHERE `instance`=? AND `owner`=?" :
		"INSERT INTO `tallyd_flushes` (`owner`,`instance`,`seq`,`alive_at`) VALUES "
		"(?,?,0,UNIX_TIMESTAMP()) ON DUPLICATE KEY UPDATE `owner`=VALUES(`owner`), "
		"`alive_at`=VALUES(`alive_at`)", &err);
	if (stmt == NULL)
		return classify(err);
	memset(params, 0, sizeof(params));
	bind_bytes(&params[0], owner, strlen(owner), MYSQL_TYPE_BLOB);
	bind_bytes(&params[1], instance, strlen(instance), MYSQL_TYPE_BLOB);
	if (expected)
		bind_bytes(&params[2], expected, strlen(expected), MYSQL_TYPE_BLOB);
	enum store_status status = execute(m, stmt, params, "claiming the instance");
	return expected ? changed_one(m, stmt, status, instance) : status;
}

/* ------------------------------------------------------------- user config */

/* A result row read with every column bound: columns `texts` as strings
 * (into a first buffer, longer values fetched whole on demand), `number`
 * as an integer, the others ignored. */
struct row_reader {
	MYSQL_BIND *binds;
	unsigned int columns;
	char first[2][1024];
	unsigned long len[2];
	my_bool is_null[2];
	int64_t number;
};

static enum store_status reader_bind(struct mysql_store *m, MYSQL_STMT *stmt,
				     struct row_reader *r, const int texts[2], int number)
{
	r->columns = mysql_stmt_field_count(stmt);
	r->binds = xcalloc(r->columns, sizeof(MYSQL_BIND));
	for (unsigned int c = 0; c < r->columns; c++)
		r->binds[c].buffer_type = MYSQL_TYPE_NULL;     /* ignored */
	for (int t = 0; t < 2; t++) {
		if (texts[t] < 0)
			continue;
		MYSQL_BIND *b = &r->binds[texts[t]];
		bind_bytes(b, r->first[t], sizeof(r->first[t]), MYSQL_TYPE_STRING);
		b->length = &r->len[t];
		b->is_null = &r->is_null[t];
	}
	if (number >= 0) {
		r->binds[number].buffer_type = MYSQL_TYPE_LONGLONG;
		r->binds[number].buffer = &r->number;
	}
	if (mysql_stmt_bind_result(stmt, r->binds) != 0)
		return fail_statement(m, stmt, "reading a user config");
	return STORE_OK;
}

/* Appends text column t (bound at `column`) of the fetched row to out. */
static enum store_status reader_text(struct mysql_store *m, MYSQL_STMT *stmt,
				     struct row_reader *r, int t, int column, struct buf *out)
{
	unsigned long len = r->len[t];
	MYSQL_BIND whole;

	if (len <= sizeof(r->first[t])) {
		buf_append(out, r->first[t], len);
		return STORE_OK;
	}
	buf_reserve(out, len);
	memset(&whole, 0, sizeof(whole));
	bind_bytes(&whole, out->data + out->len, len, MYSQL_TYPE_STRING);
	if (mysql_stmt_fetch_column(stmt, &whole, (unsigned int)column, 0) != 0)
		return fail_statement(m, stmt, "reading a user config");
	out->len += len;
	out->data[out->len] = '\0';
	return STORE_OK;
}

/* Fetches the rows of a user config statement: with `indexed`, column 0
 * says which lookup a row answers; the first row of each counts. */
static enum store_status fetch_user_configs(struct mysql_store *m, MYSQL_STMT *stmt,
					    struct store_lookup *lookups, size_t count,
					    bool indexed)
{
	struct row_reader r = { 0 };
	const int texts[2] = { indexed ? 1 : 0, -1 };
	enum store_status status = reader_bind(m, stmt, &r, texts, indexed ? 0 : -1);
	int rc = 0;

	while (status == STORE_OK && ((rc = mysql_stmt_fetch(stmt)) == 0 ||
				      rc == MYSQL_DATA_TRUNCATED)) {
		size_t i = indexed ? (size_t)r.number : 0;
		if (i >= count || lookups[i].found || r.is_null[0])
			continue;
		lookups[i].found = true;
		status = reader_text(m, stmt, &r, 0, texts[0], &lookups[i].value);
	}
	if (status == STORE_OK && rc != MYSQL_NO_DATA)
		status = fail_statement(m, stmt, "reading a user config");
	mysql_stmt_free_result(stmt);
	free(r.binds);
	return status;
}

static enum store_status mysql_user_configs(struct store *s, const char *sql,
					    struct store_lookup *lookups, size_t count)
{
	struct mysql_store *m = (struct mysql_store *)s;
	bool batched = count > 1;
	unsigned int err;

	for (size_t i = 0; i < count; i++) {
		lookups[i].found = false;
		buf_reset(&lookups[i].value);
	}
	if (batched)
		store_batch_sql(&m->sql, sql, count);
	MYSQL_STMT *stmt = prepare(m, batched ? m->sql.data : sql, &err);
	if (stmt == NULL)
		return classify(err);
	if (mysql_stmt_param_count(stmt) != count ||
	    mysql_stmt_field_count(stmt) < (batched ? 2u : 1u)) {
		snprintf(s->error, sizeof(s->error), "sql_query must take exactly one ? and "
			 "return at least one column");
		return STORE_ERROR;
	}
	MYSQL_BIND *b = binds(m, count);
	/* strings in the connection's character set: the column's collation
	 * decides how they compare, as it did for mtpolicyd */
	for (size_t i = 0; i < count; i++)
		bind_bytes(&b[i], lookups[i].key, lookups[i].key_len, MYSQL_TYPE_STRING);
	enum store_status status = execute(m, stmt, m->binds, "running sql_query");
	if (status != STORE_OK)
		return status;
	return fetch_user_configs(m, stmt, lookups, count, batched);
}

static enum store_status mysql_preload(struct store *s, const char *sql, store_pair_fn fn,
				       void *arg)
{
	struct mysql_store *m = (struct mysql_store *)s;
	struct row_reader r = { 0 };
	const int texts[2] = { 0, 1 };
	struct buf key, value;
	unsigned int err;
	int rc = 0;

	MYSQL_STMT *stmt = prepare(m, sql, &err);
	if (stmt == NULL)
		return classify(err);
	if (mysql_stmt_param_count(stmt) != 0 || mysql_stmt_field_count(stmt) < 2) {
		snprintf(s->error, sizeof(s->error), "preload_query must take no ? and return "
			 "two columns: the key and its config");
		return STORE_ERROR;
	}
	enum store_status status = execute(m, stmt, NULL, "running preload_query");
	if (status == STORE_OK)
		status = reader_bind(m, stmt, &r, texts, -1);
	buf_init(&key);
	buf_init(&value);
	while (status == STORE_OK && ((rc = mysql_stmt_fetch(stmt)) == 0 ||
				      rc == MYSQL_DATA_TRUNCATED)) {
		if (r.is_null[0] || r.is_null[1])
			continue;
		buf_reset(&key);
		buf_reset(&value);
		status = reader_text(m, stmt, &r, 0, 0, &key);
		if (status == STORE_OK)
			status = reader_text(m, stmt, &r, 1, 1, &value);
		if (status == STORE_OK)
			fn(key.data ? key.data : "", key.len, value.data ? value.data : "", value.len,
			   arg);
	}
	if (status == STORE_OK && rc != MYSQL_NO_DATA)
		status = fail_statement(m, stmt, "running preload_query");
	mysql_stmt_free_result(stmt);
	buf_free(&key);
	buf_free(&value);
	free(r.binds);
	return status;
}

static enum store_status mysql_check_query(struct store *s, const char *sql, unsigned params,
					   unsigned min_columns)
{
	struct mysql_store *m = (struct mysql_store *)s;
	MYSQL_STMT *stmt = mysql_stmt_init(m->mysql);

	if (stmt == NULL)
		return fail_connection(m, "preparing a query");
	enum store_status status = STORE_OK;
	if (mysql_stmt_prepare(stmt, sql, strlen(sql)) != 0) {
		status = fail_statement(m, stmt, "preparing it");
	} else if (mysql_stmt_param_count(stmt) != params ||
		   mysql_stmt_field_count(stmt) < min_columns) {
		snprintf(s->error, sizeof(s->error), "it takes %lu ? (wants %u) and returns %u "
			 "columns (wants at least %u)", mysql_stmt_param_count(stmt), params,
			 mysql_stmt_field_count(stmt), min_columns);
		status = STORE_ERROR;
	}
	mysql_stmt_close(stmt);
	return status;
}

static const struct store_ops mysql_ops = {
	.close = mysql_store_close,
	.interrupt = mysql_interrupt,
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
	.set_owner = mysql_set_owner,
	.scan = mysql_scan,
	.user_configs = mysql_user_configs,
	.preload = mysql_preload,
	.check_query = mysql_check_query,
};
