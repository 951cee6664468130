/*
 * notice.h: telling the log once when a key reaches its quota.
 *
 * A Quota plugin keeps one notice set.  The first time in a period that a
 * key is over the plugin's threshold, notice_first() says so and the
 * plugin logs a notice (key, metric, total, threshold); later deferrals of
 * that key are not logged again.  The set is a fixed table of keyed hashes
 * of (period, folded key), claimed with compare-and-swap: no lock, any
 * worker.  When it is three quarters full it starts afresh, so a key may
 * be told again after many others.  At most NOTICE_PER_MINUTE lines a
 * minute are logged per plugin; the keys left out are counted and named
 * in the next line (tallyctl top shows them all).
 */
#ifndef TALLYD_NOTICE_H
#define TALLYD_NOTICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NOTICE_PER_MINUTE 60

struct notice_set;

struct notice_set *notice_new(void);
void notice_free(struct notice_set *set);

/* True the first time (period, key) is seen over its quota, and when the
 * line may be logged now; *left_out then holds how many first times since
 * the last line were not logged (0 usually). */
bool notice_first(struct notice_set *set, int period, const char *key, size_t key_len,
		  uint64_t *left_out);

#endif
