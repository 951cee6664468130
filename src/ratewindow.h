/*
 * ratewindow.h: the sliding window of a rate limit, "at most `count` units
 * in any `seconds`-second span", in 32 bytes.
 *
 * A window is cut into slices by amount, not by time: every slice but the
 * open one holds exactly k = ceil(count / 10) units and remembers when its
 * newest message came (a 16-bit tick, 1/65000 of the window, rounded so
 * that a slice is kept at least as long as its newest message is inside).
 * The open slice holds the rest (< k units); its newest message is the
 * key's last accepted one, which the caller keeps (one time for all the
 * windows of a key).  The load of a window is k per slice still inside
 * plus the open slice: never less than the units truly inside, and less
 * than k more.  So the window never lets more than `count` through in any
 * span (it errs on the safe side) and defers at most k - 1 units early
 * (< 10% of count; exact for counts up to 10).  doc/ratelimit.md has the
 * proof.
 *
 * Times are milliseconds of a monotonic clock, passed in by the caller
 * (`now`), so that tests can play any schedule.  Pure functions on memory
 * the caller owns and locks (ratekeys.c); any thread.
 */
#ifndef TALLYD_RATEWINDOW_H
#define TALLYD_RATEWINDOW_H

#include <stddef.h>
#include <stdint.h>

#define RATEWINDOW_SLICES 10
#define RATEWINDOW_SECONDS_MAX 2592000    /* 30 days: the tick still fits 16 bits */
#define RATEWINDOW_COUNT_MAX (UINT64_C(1) << 62)

/* One limit: at most `count` units in any `seconds`-second span. */
struct rate_limit {
	uint64_t count;            /* 1..RATEWINDOW_COUNT_MAX */
	uint32_t seconds;          /* 1..RATEWINDOW_SECONDS_MAX */
};

struct ratewindow {
	uint64_t open;                         /* units in the open slice, < k */
	uint16_t stamp[RATEWINDOW_SLICES];     /* tick (mod 2^16) of each closed slice's newest
						  message, a ring from `first` */
	uint8_t first;
	uint8_t closed;                        /* closed slices in the ring */
};
_Static_assert(sizeof(struct ratewindow) <= 32, "a window costs at most 32 bytes");

/* The units a closed slice holds: ceil(count / 10). */
uint64_t ratewindow_slice(const struct rate_limit *limit);

/* Drops what left the window by `now` and returns the window's load: an
 * upper bound of the units accepted inside (now - seconds, now], less than
 * one slice above it.  `last` is when the key last accepted a message (0:
 * never), now >= last. */
uint64_t ratewindow_load(struct ratewindow *w, const struct rate_limit *limit, int64_t last,
			 int64_t now);

/* Adds `amount` units accepted at `now`, after ratewindow_load() at the
 * same `now` said that load + amount <= count. */
void ratewindow_add(struct ratewindow *w, const struct rate_limit *limit, uint64_t amount,
		    int64_t now);

/* A message of `amount` units at `now` for a key with `n` windows: -1 when
 * every window takes it (it is added to all and *last becomes now), else
 * the index of the first window it would overflow (nothing changes).  A
 * message of 0 units passes and changes nothing; `now` earlier than *last
 * (another thread read the clock first) counts as *last. */
int ratewindow_offer(struct ratewindow *windows, const struct rate_limit *limits, size_t n,
		     int64_t *last, uint64_t amount, int64_t now);

#endif
