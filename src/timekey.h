/*
 * timekey.h: the time part of an accounting key, strftime(time_pattern) in
 * local time ("%Y-%m" gives "2026-11").
 *
 * Formatting takes glibc's time zone lock, so each thread keeps the keys it
 * made in the current second and reuses them: at most one strftime per
 * pattern per thread per second.  Any thread; no shared state.
 */
#ifndef TALLYD_TIMEKEY_H
#define TALLYD_TIMEKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "metrics.h"

/* The key for `now`; NUL-terminated, valid until the thread's next call.
 * *len is 0 when the pattern gives nothing or more than ACCOUNTING_VALUE_MAX bytes. */
const char *timekey_format(const char *pattern, time_t now, size_t *len);

/* The same for the current time, cached per thread and second. */
const char *timekey_now(const char *pattern, size_t *len);

/* True when the pattern gives a usable key (for config checks). */
bool timekey_pattern_is_valid(const char *pattern);

/* True when `key` is one the pattern can give ("2026-11" for "%Y-%m",
 * not "2026-1x"): tallyctl's TIME is checked with it. */
bool timekey_matches(const char *pattern, const char *key);

#endif
