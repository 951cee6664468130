/*
 * top.c: tallyctl top (see top.h): a min-heap of the n largest totals seen
 * while the counter cache is walked, sorted at the end.  Admin thread.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "metrics.h"
#include "top.h"

struct ranked {
	uint64_t value;
	bool known;
	uint8_t key_len;
	char key[ACCOUNTING_VALUE_MAX];
};

struct ranking {
	struct ranked *heap;       /* heap[0]: the smallest kept */
	size_t count, max;
	size_t seen;
	int metric;
};

static void swap(struct ranked *a, struct ranked *b)
{
	struct ranked t = *a;
	*a = *b;
	*b = t;
}

static void sift_up(struct ranking *r, size_t i)
{
	while (i > 0 && r->heap[(i - 1) / 2].value > r->heap[i].value) {
		swap(&r->heap[(i - 1) / 2], &r->heap[i]);
		i = (i - 1) / 2;
	}
}

static void sift_down(struct ranking *r, size_t i)
{
	for (;;) {
		size_t smallest = i, left = 2 * i + 1, right = left + 1;
		if (left < r->count && r->heap[left].value < r->heap[smallest].value)
			smallest = left;
		if (right < r->count && r->heap[right].value < r->heap[smallest].value)
			smallest = right;
		if (smallest == i)
			return;
		swap(&r->heap[i], &r->heap[smallest]);
		i = smallest;
	}
}

static void fill(struct ranked *slot, const char *key, size_t key_len, uint64_t value,
		 bool known)
{
	slot->value = value;
	slot->known = known;
	slot->key_len = (uint8_t)(key_len < ACCOUNTING_VALUE_MAX ? key_len : ACCOUNTING_VALUE_MAX);
	memcpy(slot->key, key, slot->key_len);
}

static void keep(const char *key, size_t key_len, const struct metric_values *total, bool known,
		 void *arg)
{
	struct ranking *r = arg;
	uint64_t value = total->v[r->metric];

	r->seen++;
	if (r->count < r->max) {
		fill(&r->heap[r->count], key, key_len, value, known);
		sift_up(r, r->count++);
	} else if (value > r->heap[0].value) {
		fill(&r->heap[0], key, key_len, value, known);
		sift_down(r, 0);
	}
}

static int largest_first(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;

	return (x->value < y->value) - (x->value > y->value);
}

void top_append_key(struct buf *out, const char *key, size_t key_len)
{
	for (size_t i = 0; i < key_len; i++) {
		if (key[i] == '\n')
			buf_append_str(out, "\\n");
		else
			buf_append(out, key + i, 1);
	}
}

void top_report(struct buf *out, int period, int metric, size_t n)
{
	struct ranking r = { .max = n, .metric = metric };

	r.heap = xcalloc(n, sizeof(*r.heap));
	counters_for_each_in(period, keep, &r);
	qsort(r.heap, r.count, sizeof(*r.heap), largest_first);
	buf_printf(out, "keys %zu\n", r.seen);
	for (size_t i = 0; i < r.count; i++) {
		buf_printf(out, "%zu %llu ", i + 1, (unsigned long long)r.heap[i].value);
		top_append_key(out, r.heap[i].key, r.heap[i].key_len);
		buf_append_str(out, r.heap[i].known ? "\n" : " (not loaded)\n");
	}
	free(r.heap);
}
