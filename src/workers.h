/*
 * workers.h: the worker pool that serves policy requests.
 *
 * All workers wait on one shared epoll set in which every connection is
 * registered one-shot: an event hands the connection to exactly one worker,
 * which reads, answers every complete request, writes, and re-arms it.  An
 * idle connection therefore holds no thread, and neither does a request
 * that waits for the database: it is parked (park.h) and a worker takes it
 * up again when its value is in memory.  Workers never ask the database.
 * Workers take the config in force at each event (live.h), so a reload
 * applies to the next request.
 */
#ifndef TALLYD_WORKERS_H
#define TALLYD_WORKERS_H

#include "config.h"
#include "connection.h"

/* Creates the epoll set and starts `count` threads using stats slots
 * 0 .. count-1.  0 or -1. */
int workers_start(int count);

/* Hands a new connection to the pool (the acceptor); `keepalive_timeout`
 * is its first deadline. */
void workers_add(struct connection *c, int keepalive_timeout);

/* Wakes every worker and waits until each has finished the connection it
 * holds; afterwards no worker touches any connection. */
void workers_stop(void);

/* After workers_stop(), in the main thread: answers every complete request
 * still buffered or waiting in a socket, then closes every connection. */
void workers_drain(void);

#endif
