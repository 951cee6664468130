/*
 * metrics.c: metric names and per-request arithmetic (see metrics.h).
 * Pure functions; any thread.
 */
#include <string.h>

#include "metrics.h"

const char *const metric_names[METRIC_COUNT_OF] = { "count", "count_rcpt", "size", "size_rcpt" };

int metric_parse(const char *name)
{
	for (int i = 0; i < METRIC_COUNT_OF; i++) {
		if (strcmp(name, metric_names[i]) == 0)
			return i;
	}
	return -1;
}

bool metric_is_valid(const char *name)
{
	return metric_parse(name) >= 0;
}

static uint64_t add_saturating(uint64_t a, uint64_t b)
{
	return a + b < a ? UINT64_MAX : a + b;
}

static uint64_t multiply_saturating(uint64_t a, uint64_t b)
{
	return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

/* The leading decimal digits of an attribute, as Perl would read them. */
static uint64_t attribute_number(const struct request *req, const char *name)
{
	const struct attribute *a = request_find(req, name);
	uint64_t n = 0;

	if (a == NULL)
		return 0;
	for (size_t i = 0; i < a->value_len && a->value[i] >= '0' && a->value[i] <= '9'; i++)
		n = add_saturating(multiply_saturating(n, 10), (uint64_t)(a->value[i] - '0'));
	return n;
}

void metrics_of_request(const struct request *req, struct metric_values *out)
{
	uint64_t recipients = attribute_number(req, "recipient_count");
	uint64_t size = attribute_number(req, "size");

	out->v[METRIC_COUNT] = 1;
	out->v[METRIC_COUNT_RCPT] = recipients ? recipients : 1;
	out->v[METRIC_SIZE] = size;
	out->v[METRIC_SIZE_RCPT] = recipients ? multiply_saturating(size, recipients) : size;
}

void metrics_add(struct metric_values *a, const struct metric_values *b)
{
	for (int i = 0; i < METRIC_COUNT_OF; i++)
		a->v[i] = add_saturating(a->v[i], b->v[i]);
}
