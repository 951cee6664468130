/*
 * ratewindow.c: the sliding window of a rate limit (see ratewindow.h and
 * doc/ratelimit.md).  Pure functions: the caller owns the memory and holds
 * its lock (ratekeys.c, a shard's mutex).
 */
#include <string.h>

#include "ratewindow.h"

/* Ticks cut a window into at most this many steps: a stamp that is still
 * kept is never more than TICKS_PER_WINDOW + 2 ticks older than the key's
 * last message, which 16 bits tell apart. */
#define TICKS_PER_WINDOW 65000

uint64_t ratewindow_slice(const struct rate_limit *limit)
{
	return limit->count / RATEWINDOW_SLICES + (limit->count % RATEWINDOW_SLICES != 0);
}

static int64_t window_ms(const struct rate_limit *limit)
{
	return (int64_t)limit->seconds * 1000;
}

/* Milliseconds per tick: 1 for windows up to 65 s, 1330 for a day. */
static int64_t tick_ms(const struct rate_limit *limit)
{
	return (window_ms(limit) + TICKS_PER_WINDOW - 1) / TICKS_PER_WINDOW;
}

uint64_t ratewindow_load(struct ratewindow *w, const struct rate_limit *limit, int64_t last,
			 int64_t now)
{
	int64_t start = now - window_ms(limit);     /* inside: times > start */

	if (last <= 0 || last <= start) {
		/* the newest message left: so did every slice */
		memset(w, 0, sizeof(*w));
		return 0;
	}
	int64_t tick = tick_ms(limit), last_tick = last / tick;
	while (w->closed > 0) {
		uint16_t age = (uint16_t)((uint16_t)last_tick - w->stamp[w->first]);
		/* the slice's newest message came at the latest in the last
		 * millisecond of its tick */
		if ((last_tick - age + 1) * tick - 1 > start)
			break;
		w->first = (uint8_t)((w->first + 1) % RATEWINDOW_SLICES);
		w->closed--;
	}
	return w->closed * ratewindow_slice(limit) + w->open;
}

void ratewindow_add(struct ratewindow *w, const struct rate_limit *limit, uint64_t amount,
		    int64_t now)
{
	uint64_t k = ratewindow_slice(limit);
	uint16_t stamp = (uint16_t)(now / tick_ms(limit));

	w->open += amount;
	while (w->open >= k) {
		/* never more than count / k <= 10 closed slices; a full ring
		 * (limits changed under a key) loses its oldest, not memory */
		if (w->closed == RATEWINDOW_SLICES) {
			w->first = (uint8_t)((w->first + 1) % RATEWINDOW_SLICES);
			w->closed--;
		}
		w->stamp[(w->first + w->closed) % RATEWINDOW_SLICES] = stamp;
		w->closed++;
		w->open -= k;
	}
}

int ratewindow_offer(struct ratewindow *windows, const struct rate_limit *limits, size_t n,
		     int64_t *last, uint64_t amount, int64_t now)
{
	if (amount == 0)
		return -1;
	if (now < *last)
		now = *last;
	for (size_t i = 0; i < n; i++) {
		uint64_t load = ratewindow_load(&windows[i], &limits[i], *last, now);
		if (amount > limits[i].count || load > limits[i].count - amount)
			return (int)i;
	}
	for (size_t i = 0; i < n; i++)
		ratewindow_add(&windows[i], &limits[i], amount, now);
	*last = now;
	return -1;
}
