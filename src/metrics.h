/*
 * metrics.h: the four accounting metrics and what one request adds to them.
 *
 * Per request (DESIGN.md section 4, as mtpolicyd 2.05 computes them):
 *   count      += 1
 *   count_rcpt += recipient_count        (1 when unset, empty or 0)
 *   size       += size                   (0 when unset or empty)
 *   size_rcpt  += size * recipient_count (size when recipient_count is unset or 0)
 * Numbers are read like Perl reads them: leading decimal digits, anything
 * else counts as 0; results saturate instead of wrapping.  Pure functions.
 */
#ifndef TALLYD_METRICS_H
#define TALLYD_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "policy.h"

/* Longest key or time key tallyd stores: the columns are VARCHAR(255). */
#define ACCOUNTING_VALUE_MAX 255

/* The key a value is counted under: the value itself up to 255 bytes; a
 * longer one as its first 222 bytes, a newline and the first 16 bytes of
 * its SHA-256 in hex.  No request value holds a newline, so no value reads
 * as another's long form, and distinct long values stay distinct, the
 * same on every store and instance.  Returns value, or buf with the long
 * form; *len is the key's length. */
const char *accounting_key(const char *value, size_t *len, char buf[ACCOUNTING_VALUE_MAX]);

enum metric { METRIC_COUNT, METRIC_COUNT_RCPT, METRIC_SIZE, METRIC_SIZE_RCPT, METRIC_COUNT_OF };

/* The column names, in enum order. */
extern const char *const metric_names[METRIC_COUNT_OF];

struct metric_values {
	uint64_t v[METRIC_COUNT_OF];
};

/* The metric named `name`, or -1. */
int metric_parse(const char *name);
bool metric_is_valid(const char *name);

/* What `req` adds to each metric. */
void metrics_of_request(const struct request *req, struct metric_values *out);

/* a += b, saturating. */
void metrics_add(struct metric_values *a, const struct metric_values *b);

#endif
