/*
 * connection.h: one client connection, and the table of all open ones.
 *
 * Ownership: a connection is either waiting in the workers' epoll set or
 * parked waiting for the database (park.h) — then no thread touches it —
 * or held by exactly one thread: the acceptor that created it, the worker
 * that took its one-shot event, or the main thread draining at shutdown.
 * Only the holder touches its buffers.
 *
 * The table (a list under `table_lock`) exists for the timeout sweep: the
 * acceptor thread calls connection_sweep() every second, which shuts down
 * (never closes) connections past their deadline; the worker that then sees
 * EOF closes them.  connection_close() unlinks under the same lock before
 * close(), so the sweep never touches a file descriptor number that has been
 * reused.  `deadline` and `expired` are atomics because the sweep reads them
 * while the holder writes them.
 */
#ifndef TALLYD_CONNECTION_H
#define TALLYD_CONNECTION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "chain.h"
#include "policy.h"
#include "session.h"

struct connection {
	int fd;
	int local_port;            /* TCP port it arrived on; 0 for unix sockets */
	char *local_path;          /* unix socket path it arrived on, or NULL: a copy,
	                              since a reload may close the listener */
	char peer[64];             /* "203.0.113.5:40312" or "unix" for log lines */

	struct buf in;             /* bytes received, not yet answered */
	struct buf out;            /* answers not yet written */
	struct policy_parser parser;
	int64_t request_started;   /* monotonic seconds; first byte of the current request */
	uint64_t requests;         /* answered on this connection */

	/* The request at the head of `in`, while it waits for the database
	 * (workers.c): where its chain stands, its session, the config it
	 * began with (held: live.h), and when its wait ends. */
	struct chain_state chain;
	struct session session;
	const struct config *held_config;   /* NULL unless it waits */
	int64_t wait_deadline;     /* clock_ms(); 0 until the request first waits */
	bool wait_expired;         /* set when it is handed back past its deadline */

	/* While parked: guarded by park.c's lock. */
	struct connection *park_prev, *park_next;
	uint64_t park_ticket;
	int64_t park_deadline;

	_Atomic int64_t deadline;  /* monotonic seconds; INT64_MAX while a worker holds it */
	atomic_bool expired;       /* set by the sweep before it shuts the socket down */
	/* Stored (release) by a thread that hands the connection to epoll and
	 * loaded (acquire) by the worker that takes it out: the kernel already
	 * orders the two, this says so in terms ThreadSanitizer sees too. */
	atomic_uint handoffs;

	struct connection *prev, *next;   /* the table; guarded by table_lock */
};

/* Registers a new accepted socket; NULL when max_connections is reached (the
 * caller closes the socket). */
struct connection *connection_open(int fd, int local_port, const char *local_path,
				   const char *peer, int max_connections);
/* Unlinks, closes the socket, frees. */
void connection_close(struct connection *c);

/* Shuts down every connection whose deadline has passed. */
void connection_sweep(int64_t now);

/* Number of open connections. */
int connection_count(void);

/* Calls fn for every open connection; for the shutdown drain, when no other
 * thread holds any connection.  fn may close the connection. */
void connection_for_each(void (*fn)(struct connection *c, void *arg), void *arg);

#endif
