/*
 * statements.h: a connection's prepared statements, found by name (the SQL
 * text, or a short name for one built per table and number of rows) and
 * kept up to STATEMENTS_MAX, the least recently used replaced.  Both store
 * drivers use it; the driver owns the statements (the cache holds them as
 * void *) and closes the one a new statement replaces.  One per
 * connection, used by the thread that holds the connection: no locking.
 */
#ifndef TALLYD_STATEMENTS_H
#define TALLYD_STATEMENTS_H

#include <stdint.h>

#define STATEMENTS_MAX 32

struct statement {
	char *name;                     /* NULL: a free slot */
	void *stmt;
	uint64_t last_used;
	uint32_t bound;                 /* the driver's: what its parameters are bound to */
};

struct statements {
	struct statement slot[STATEMENTS_MAX];
	uint64_t uses;
};

/* The statement called `name`, marked used; NULL when there is none. */
struct statement *statements_find(struct statements *s, const char *name);
/* Keeps `stmt` as `name` (bound 0) in the least recently used slot;
 * returns the statement it held, for the driver to close (NULL if none). */
void *statements_put(struct statements *s, const char *name, void *stmt);
/* The slot that holds `stmt`, which the cache must hold. */
struct statement *statements_holding(struct statements *s, const void *stmt);
/* Closes every statement with `close_stmt` and empties the cache. */
void statements_clear(struct statements *s, void (*close_stmt)(void *stmt));

#endif
