/*
 * listener.h: the listening sockets and the acceptor thread.
 *
 * listener_open() binds every `listen` address (as root, before privileges
 * are dropped).  listener_start() runs the acceptor thread: it accepts new
 * connections, refuses those beyond max_connections, hands the rest to the
 * worker pool, and keeps time: it answers waiting requests whose
 * database.wait is over (park.h's timer), and once a second sweeps
 * connections past their timeouts and marks the live periods (tables.h).
 * It never blocks on anything but its epoll set.
 * listener_reload() changes the set of sockets for a new config, pausing
 * the acceptor while it does (the kernel's backlog holds new connections).
 */
#ifndef TALLYD_LISTENER_H
#define TALLYD_LISTENER_H

#include "config.h"

/* Binds all listen addresses; -1 (logged) when one cannot be bound. */
int listener_open(const struct config *config);

/* Starts the acceptor thread, counting in stats slot `stats_slot`; it takes
 * max_connections and keepalive_timeout from the config in force. 0 or -1. */
int listener_start(int stats_slot);

/* Reload: binds the addresses `config` adds, keeps the sockets it keeps,
 * closes the ones it drops.  -1 (logged, nothing changed) when a new
 * address cannot be bound.  Open connections are not touched. */
int listener_reload(const struct config *config);

/* Stops accepting: ends the acceptor thread, closes the sockets and removes
 * unix socket files.  Open connections are not touched. */
void listener_stop(void);

#endif
