/*
 * dbcheck.c: `tallyd -t --connect` (see dbcheck.h).
 *
 * It uses the store drivers' own checks, so that it judges a table as
 * start does: ensure_table() and ensure_sequence_table() in dry-run mode
 * read no row of a table's columns, and for a missing table prepare its
 * CREATE TABLE without running it (MariaDB and MySQL check the CREATE
 * privilege at PREPARE).  An SQLite file is opened immutable, so that a
 * check run as root leaves no file behind that the daemon could not
 * write.  One connection, main thread, no state.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dbcheck.h"
#include "plugin.h"
#include "store.h"
#include "tables.h"

/* Prepares a plugin's query (s NULL: an SQLite file that does not exist);
 * records a problem when it does not. */
static int check_query(struct store *s, const struct config *config, const struct plugin *p,
		       const char *what, const char *sql, unsigned params, unsigned columns,
		       struct config_errors *errors)
{
	if (sql == NULL || sql[0] == '\0')
		return 0;
	if (s == NULL) {
		config_error_at(errors, config->source[SOURCE_DATABASE], "plugin '%s': %s: the "
				"SQLite file %s does not exist yet, nor do the tables it reads",
				p->name, what, config->database.path);
		return 1;
	}
	if (s->ops->check_query(s, sql, params, columns) == STORE_OK)
		return 0;
	config_error_at(errors, config->source[SOURCE_DATABASE], "plugin '%s': %s: %s", p->name,
			what, s->error);
	return 1;
}

static int check_queries(struct store *s, const struct config *config,
			 struct config_errors *errors)
{
	int problems = 0;

	for (size_t i = 0; i < config->vhost_count; i++) {
		const struct vhost *v = &config->vhosts[i];
		for (size_t j = 0; j < v->plugin_count; j++) {
			const struct plugin *p = v->plugins[j];
			const char *lookup = NULL, *preload = NULL;
			if (p->module->queries == NULL)
				continue;
			p->module->queries(p, &lookup, &preload);
			problems += check_query(s, config, p, "sql_query", lookup, 1, 1, errors);
			problems += check_query(s, config, p, "preload_query", preload, 0, 2, errors);
		}
	}
	return problems;
}

int dbcheck_run(const struct config *config, struct config_errors *errors, FILE *notes)
{
	const char *where = config->source[SOURCE_DATABASE];
	struct store_failure failure;
	bool missing;
	int problems = 0;

	if (!config_needs_store(config)) {
		fprintf(notes, "tallyd: no plugin uses the database; tallyd opens none\n");
		return 0;
	}
	struct store *s;
	if (config->database.driver == DATABASE_SQLITE) {
		/* opened as root, SQLite would leave files the daemon cannot write */
		if (access(config->database.path, F_OK) < 0) {
			fprintf(notes, "tallyd: SQLite file %s will be created at start, with its "
				"tables\n", config->database.path);
			return check_queries(NULL, config, errors);
		}
		s = store_sqlite_open_to_read(&config->database, &failure);
	} else {
		s = store_open(&config->database, config->database.connect_timeout, &failure);
	}
	if (s == NULL) {
		config_error_at(errors, where, "database: %s", failure.text);
		return 1;
	}
	if (s->ops->ensure_sequence_table(s, true, &missing) != STORE_OK) {
		config_error_at(errors, where, "database: %s%s", s->error, missing ?
				"; the user needs CREATE and ALTER on the database, or the table made "
				"from schema.mysql.sql" : "");
		problems++;
	} else if (missing) {
		fprintf(notes, "tallyd: tallyd_flushes will be created (or completed) at start\n");
	}
	for (int i = 0; i < tables_count(); i++) {
		const char *table = tables_name(i);
		if (s->ops->ensure_table(s, table, true, &missing) != STORE_OK) {
			config_error_at(errors, where, "database: %s%s", s->error, missing ?
					"; the user needs CREATE on the database, or the table made "
					"from schema.mysql.sql" : "");
			problems++;
		} else if (missing) {
			fprintf(notes, "tallyd: accounting table %s will be created at start\n", table);
		}
	}
	problems += check_queries(s, config, errors);
	s->ops->close(s);
	return problems;
}
