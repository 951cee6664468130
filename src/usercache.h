/*
 * usercache.h: SqlUserConfig results, cached for user_config_ttl seconds.
 *
 * An entry is the parsed JSON object of one (sql_query, key) pair, or the
 * fact that there is none (no row, NULL, bad JSON): misses are cached too.
 * Database errors are not cached.  Workers look entries up concurrently;
 * a missing or expired entry is loaded by one of them while the others
 * wait for it.  The flusher's housekeeping drops expired entries.
 */
#ifndef TALLYD_USERCACHE_H
#define TALLYD_USERCACHE_H

#include <stddef.h>

#include "session.h"

/* ttl 0 turns caching off; wait_seconds bounds the wait for another
 * worker's load. */
void usercache_init(int ttl_seconds, int wait_seconds);
void usercache_free_all(void);

/* The small integer naming a query text (for the cache key). */
int usercache_query(const char *sql);

/* Merges the user config of `key` into `into`.  Returns 1 when there was
 * one, 0 when there is none, -1 when the database could not be asked.
 * `plugin` names the plugin in log lines. */
int usercache_lookup(int query, const char *plugin, const char *key, size_t key_len,
		     struct session *into);

/* Drops expired entries. */
void usercache_sweep(void);

#endif
