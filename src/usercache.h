/*
 * usercache.h: SqlUserConfig results in memory.
 *
 * An entry is the parsed JSON object of one (query, key) pair, or the fact
 * that there is none (no row, NULL, bad JSON).  A key not in memory is
 * queued for the loader (loader.h) and the lookup answers LOOKUP_WAIT; the
 * loader fetches misses in batches.  An entry older than user_config_ttl
 * is still used while one background refresh runs (stale while
 * revalidate), so a client that keeps sending never waits twice.
 *
 * With a preload_query (rows of key and JSON config) the loader reads the
 * whole mapping every user_config_ttl: then a key that is not in memory
 * has no config, with no query and no memory per such key.  Keys of a
 * preloaded mapping compare as mtpolicyd's case-insensitive columns do:
 * ASCII case and trailing spaces do not matter.
 *
 * Threads: workers look up; the loader fills; the flusher sweeps; the
 * admin and main threads forget (tallyctl forget, reload).  64 shards,
 * each behind its own mutex; lock order: a shard, then the loader's queue.
 * A published session is read-only until its entry is replaced.
 */
#ifndef TALLYD_USERCACHE_H
#define TALLYD_USERCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loader.h"
#include "session.h"

#define USERCACHE_KEY_MAX 255

void usercache_init(int ttl_seconds);
void usercache_free_all(void);

/* The id of an SqlUserConfig query: sql_query, preload_query ("" for
 * none) and the request field it is for, used by the config of load
 * `generation`; -1 when 64 are in use by the running config and the new
 * one together. */
int usercache_query(const char *sql, const char *preload_sql, const char *field,
		    uint64_t generation);
/* After a reload: retires the queries no config since `generation` uses
 * (their entries go, their slots can take other texts). */
void usercache_retire_queries(uint64_t generation);

/* Merges the config of `key` into `into`; *found says whether there was
 * one.  LOOKUP_WAIT: park on *ticket.  LOOKUP_FAILED: not known now. */
enum lookup usercache_lookup(int query, const char *key, size_t key_len, bool may_wait,
			     struct session *into, bool *found, uint64_t *ticket);

/* ---- the loader ---- */

struct user_config_view {
	int query;
	const char *sql;
	const char *key;
	size_t key_len;
};
void user_config_view(const struct user_config *e, struct user_config_view *out);
/* The answer to a queued entry: found with the JSON text, or no row. */
void usercache_loaded(struct user_config *e, bool found, const char *text, size_t len);
void usercache_load_failed(struct user_config *e);

/* A preload that is due (-1: none), claimed until usercache_preload_done();
 * *sql is its preload_query. */
int usercache_claim_preload(const char **sql);
void usercache_preload_row(int query, const char *key, size_t key_len, const char *text,
			   size_t len);
/* ok: the rows given since the claim are the whole mapping. */
void usercache_preload_done(int query, bool ok);

/* ---- housekeeping and tallyctl ---- */

/* Drops entries nobody used for a whole ttl after they expired. */
void usercache_sweep(void);
/* Makes the next lookup of `key` of every query for `field` fetch it
 * afresh; returns how many queries know the field. */
int usercache_forget(const char *field, const char *key, size_t key_len);
/* The same for every key (reload): every mapping is read again. */
void usercache_forget_all(void);

struct usercache_stats {
	size_t entries;
	size_t with_config;
	size_t queued;
};
void usercache_stats(struct usercache_stats *out);

/* ---- the snapshot ---- */

/* Calls fn for every entry whose config is known (values NULL: none). */
void usercache_for_each_known(void (*fn)(const char *sql, const char *key, size_t key_len,
					 const struct session *values, void *arg),
			      void *arg);
/* Calls fn for every query: its sql_query text (stable for the daemon's
 * life) and whether a whole preload mapping is in memory. */
void usercache_for_each_query(void (*fn)(const char *sql, bool mapped, void *arg), void *arg);
/* Start-up, from the snapshot: a config as it was (stale, so its first use
 * refreshes it), and a mapping that was whole (read again when the
 * database answers). */
void usercache_restore(const char *sql, const char *key, size_t key_len,
		       const struct session *values);
void usercache_restore_mapped(const char *sql);

#endif
