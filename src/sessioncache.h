/*
 * sessioncache.h: which plugins have already handled which message, for
 * the top-level session_cache group (mtpolicyd's <SessionCache>).
 *
 * Postfix names a message by its `instance` attribute in every request
 * about it (each RCPT, DATA, END-OF-MESSAGE, and a request repeated after a
 * policy timeout).  A plugin that has let a message through (Accounting has
 * counted it, Quota has passed it, RateLimit has counted it) leaves a mark
 * for (instance, plugin name); a later request of the same message finds
 * the mark and the plugin adds nothing again.  A mark is a 64-bit hash of
 * the two, keyed (no instance text is kept), valid for `ttl` seconds after
 * it was made.  The table holds at most `max_entries` marks: when a shard is
 * full its oldest mark goes, even before its ttl.
 *
 * Memory only.  Workers call sessioncache_seen() and sessioncache_claim()
 * concurrently: 64 shards, each a ring of marks in the order they were made
 * (oldest first, so expiry and eviction take from one end) with an
 * open-addressed index, under the shard's own mutex.  sessioncache_configure()
 * is called by the main thread at start and at each reload; it resizes each
 * shard under its lock and keeps the newest marks, so a reload forgets no
 * message in progress unless max_entries shrinks below what is kept.
 */
#ifndef TALLYD_SESSIONCACHE_H
#define TALLYD_SESSIONCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hash.h"

#define SESSIONCACHE_SHARDS 64

struct sessioncache_stats {
	uint64_t marks;            /* held now */
	uint64_t evicted;          /* taken out before their ttl because a shard was full */
};

/* Turns the table on with `ttl` seconds and room for `max_entries` marks,
 * keeping the marks it holds (the newest, when there is less room now);
 * enabled = false turns it off and frees its marks.  Main thread, at start
 * before any worker runs (on or off: it sets the table up), and at reload. */
void sessioncache_configure(bool enabled, int ttl, int max_entries);

/* Whether the table is on: with it off, every request counts. */
bool sessioncache_enabled(void);

/* The message an `instance` names: a keyed hash, never 0 (once per
 * request, by the chain). */
uint64_t sessioncache_message(const char *instance, size_t instance_len);

/* The mark of (message, plugin): `plugin` is a hash of the plugin's name
 * (plugin->name_hash).  The mix is a bijection of the message for each
 * plugin, so two messages never share a plugin's mark, and nobody without
 * the key can choose messages whose marks collide. */
static inline uint64_t sessioncache_mark(uint64_t message, uint64_t plugin)
{
	return hash_mix(message, plugin);
}

/* True when `mark` was made less than ttl seconds before `now` (monotonic
 * seconds) and is still held. */
bool sessioncache_seen(uint64_t mark, int64_t now);

/* Makes `mark` at `now`; false when it was already there (another request
 * of the message came first), true when this call made it.  With the table
 * off it returns true and keeps nothing. */
bool sessioncache_claim(uint64_t mark, int64_t now);

void sessioncache_stats(struct sessioncache_stats *out);

#endif
