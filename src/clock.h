/*
 * clock.h: the daemon's one monotonic clock, in the units its users need.
 *
 *   clock_ns()       nanoseconds, for measuring how long something took
 *   clock_ms()       milliseconds, for deadlines and schedules
 *   clock_seconds()  whole seconds from the coarse clock, cheap enough for
 *                    every request (connection timeouts, cache expiry)
 *
 * All three read CLOCK_MONOTONIC (the coarse variant for seconds), so they
 * never jump with the wall clock.  Any thread; no state.
 */
#ifndef TALLYD_CLOCK_H
#define TALLYD_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t clock_ms(void)
{
	return clock_ns() / 1000000;
}

static inline int64_t clock_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec;
}

/* An absolute CLOCK_MONOTONIC time `ms` from now, for condition variables
 * created with pthread_condattr_setclock(CLOCK_MONOTONIC). */
static inline struct timespec clock_after_ms(int64_t ms)
{
	int64_t at = clock_ns() + ms * 1000000;

	return (struct timespec){ .tv_sec = at / 1000000000, .tv_nsec = at % 1000000000 };
}

#endif
