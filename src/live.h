/*
 * live.h: the configuration in force, and which thread is using which.
 *
 * A reload (main thread) replaces the config while workers serve requests.
 * A thread brackets its use with live_enter()/live_leave(); live_replace()
 * publishes the new config and returns the old one only when no thread is
 * inside a use of it and no waiting request holds it, so the caller may
 * free it.  Entering costs two atomic stores and a load: cheap enough for
 * every event.
 */
#ifndef TALLYD_LIVE_H
#define TALLYD_LIVE_H

#include "config.h"

/* `threads` is the number of stats slots (see stats.h): one use mark each. */
void live_init(const struct config *first, int threads);
void live_free(void);

const struct config *live_enter(void);
void live_leave(void);

/* A request that waits for the database keeps the config it began with:
 * the worker holds it (while it is in use by the worker) and whoever
 * finishes the request releases it. */
void live_hold(const struct config *config);
void live_release(const struct config *config);

/* Main thread: makes `next` the config in force; waits until the previous
 * one is unused (no thread in it, no request holding it: at most
 * database.wait) and returns it. */
const struct config *live_replace(const struct config *next);

#endif
