/*
 * workers.h: the worker pool that serves policy requests.
 *
 * All workers wait on one shared epoll set in which every connection is
 * registered one-shot: an event hands the connection to exactly one worker,
 * which reads, answers every complete request, writes, and re-arms it.  An
 * idle connection therefore holds no thread, and a worker that waits for the
 * database delays only the connection it holds.
 */
#ifndef TALLYD_WORKERS_H
#define TALLYD_WORKERS_H

#include "config.h"
#include "connection.h"

/* Creates the epoll set and starts config->workers threads.  0 or -1. */
int workers_start(const struct config *config);

/* Hands a new connection to the pool (called by the acceptor). */
void workers_add(struct connection *c);

/* Wakes every worker and waits until each has finished the connection it
 * holds; afterwards no worker touches any connection. */
void workers_stop(void);

/* After workers_stop(), in the main thread: answers every complete request
 * still buffered or waiting in a socket, then closes every connection. */
void workers_drain(void);

#endif
