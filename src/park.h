/*
 * park.h: connections waiting for the database, held by no thread.
 *
 * A plugin that needs a value the caches do not hold yet asks the loader
 * for it and answers "wait" with a ticket: park_ticket(), read while it saw
 * the value missing.  The worker writes what it could answer already and
 * parks the connection here: it is in no epoll set and holds no thread, so
 * the workers go on serving everyone else.  Whenever the loader or the
 * flusher has put values in the caches they call park_wake(): every
 * connection parked with an older ticket goes back to the workers, which
 * run the waiting plugin again (and park it again if its value is still
 * missing: a wake concerns any value).  A request that reaches its
 * deadline (database.wait after it first waited) goes back marked expired,
 * and is answered without the value.
 *
 * Threads: workers park; the loader and the flusher wake; the acceptor
 * expires (park_timer_fd() is in its epoll set, armed for the earliest
 * deadline); the main thread empties the lot at shutdown.  `lock` guards
 * the list, each parked connection's park fields, and the timer.
 */
#ifndef TALLYD_PARK_H
#define TALLYD_PARK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connection.h"

/* How parked connections go back to the workers. */
typedef void (*park_resume_fn)(struct connection *c);

/* Creates the timer; -1 when it cannot. */
int park_init(park_resume_fn resume);
void park_free(void);

/* The wake count now: a plugin reads it while it sees its value missing. */
uint64_t park_ticket(void);

/* Parks c until a wake after `ticket`, or until `deadline` (clock_ms()).
 * Returns false, parking nothing, when such a wake happened already: the
 * caller serves c again at once. */
bool park(struct connection *c, uint64_t ticket, int64_t deadline);

/* Sends every connection parked before this call back to the workers. */
void park_wake(void);

/* The acceptor: the timer's file descriptor, and what to do when it fires
 * (sends back the connections past their deadline, with c->wait_expired). */
int park_timer_fd(void);
void park_expire(void);

/* At shutdown, after the workers stopped: empties the lot, marking every
 * connection in it expired (the main thread then answers them). */
void park_release_all(void);

size_t park_count(void);

#endif
