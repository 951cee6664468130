/*
 * statements.c: a connection's prepared statements by name (see
 * statements.h).  The thread that holds the connection.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "statements.h"

struct statement *statements_find(struct statements *s, const char *name)
{
	for (int i = 0; i < STATEMENTS_MAX; i++) {
		struct statement *c = &s->slot[i];
		if (c->name && strcmp(c->name, name) == 0) {
			c->last_used = ++s->uses;
			return c;
		}
	}
	return NULL;
}

void *statements_put(struct statements *s, const char *name, void *stmt)
{
	struct statement *slot = &s->slot[0];

	for (int i = 1; i < STATEMENTS_MAX; i++) {
		if (s->slot[i].last_used < slot->last_used)
			slot = &s->slot[i];
	}
	void *replaced = slot->stmt;
	free(slot->name);
	*slot = (struct statement){ .name = xstrdup(name), .stmt = stmt, .last_used = ++s->uses };
	return replaced;
}

struct statement *statements_holding(struct statements *s, const void *stmt)
{
	int i = 0;

	while (s->slot[i].stmt != stmt)
		i++;
	return &s->slot[i];
}

void statements_clear(struct statements *s, void (*close_stmt)(void *stmt))
{
	for (int i = 0; i < STATEMENTS_MAX; i++) {
		if (s->slot[i].stmt)
			close_stmt(s->slot[i].stmt);
		free(s->slot[i].name);
	}
	memset(s, 0, sizeof(*s));
}
