/*
 * rowset.c: batches of cached keys as sorted rows (see rowset.h).  No
 * shared state: a rowset belongs to the thread that fills it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyfold.h"
#include "log.h"
#include "rowset.h"
#include "tables.h"

/* The order of a batch's periods: each period's rank among them by (table
 * name, time key), so that comparing two keys needs no lookup. */
struct period_rank {
	int period;
	int rank;
};

static int compare_periods(const void *a, const void *b)
{
	int x = ((const struct period_rank *)a)->period, y = ((const struct period_rank *)b)->period;
	size_t xl, yl;
	int c = strcmp(tables_name(periods_table(x)), tables_name(periods_table(y)));

	if (c != 0)
		return c;
	const char *xt = periods_time(x, &xl), *yt = periods_time(y, &yl);
	struct store_row rx = { .key = xt, .key_len = xl }, ry = { .key = yt, .key_len = yl };
	return store_row_compare(&rx, &ry);
}

/* What a key is sorted by; small, since the sort moves entries around.
 * `prefix` is the key's first eight bytes as a number, so that most
 * comparisons are one of integers. */
struct sort_entry {
	uint64_t prefix;
	const char *key;
	struct counter *counter;
	uint32_t key_len;
	int rank;                   /* the period's, once ranked */
};

/* The folded key's first bytes, big-endian and zero-padded, which keeps
 * key_fold_compare()'s order (a shorter key sorts first on a tie, as the
 * full comparison then decides). */
static uint64_t prefix_of(const char *key, size_t key_len)
{
	uint64_t prefix = 0;

	key_len = key_trimmed_length(key, key_len);
	for (size_t i = 0; i < 8; i++)
		prefix = prefix << 8 | (i < key_len ? key_folded_byte(key[i]) : 0);
	return prefix;
}

/* True when x sorts before y. */
static bool before(const struct sort_entry *x, const struct sort_entry *y)
{
	if (x->rank != y->rank)
		return x->rank < y->rank;
	if (x->prefix != y->prefix)
		return x->prefix < y->prefix;
	return key_fold_compare(x->key, x->key_len, y->key, y->key_len) < 0;
}

static void swap(struct sort_entry *a, struct sort_entry *b)
{
	struct sort_entry t = *a;

	*a = *b;
	*b = t;
}

/* Sorts e[0..n): a quicksort with the comparison inlined, insertion sort
 * for short runs.  A flush sorts every key it writes; qsort()'s generic
 * moves and calls made that a third of a flush's work. */
static void sort_entries(struct sort_entry *e, size_t n)
{
	while (n > 16) {
		struct sort_entry *mid = e + n / 2, *last = e + n - 1;
		if (before(mid, e))
			swap(mid, e);
		if (before(last, mid)) {
			swap(last, mid);
			if (before(mid, e))
				swap(mid, e);
		}
		swap(mid, e + n - 2);                /* the pivot, median of three */
		struct sort_entry *pivot = e + n - 2;
		size_t i = 0, j = n - 2;
		for (;;) {
			while (before(&e[++i], pivot))
				;
			while (j > 0 && before(pivot, &e[--j]))
				;
			if (i >= j)
				break;
			swap(&e[i], &e[j]);
		}
		swap(&e[i], pivot);
		/* recurse into the smaller side, loop on the larger */
		if (i < n - 1 - i) {
			sort_entries(e, i);
			e += i + 1;
			n -= i + 1;
		} else {
			sort_entries(e + i + 1, n - 1 - i);
			n = i;
		}
	}
	for (size_t i = 1; i < n; i++) {
		struct sort_entry x = e[i];
		size_t k = i;
		for (; k > 0 && before(&x, &e[k - 1]); k--)
			e[k] = e[k - 1];
		e[k] = x;
	}
}

/* Ranks the distinct periods of the batch (their ids are in e[].rank) and
 * replaces each id by its rank. */
static void rank_periods(struct sort_entry *e, size_t count)
{
	struct period_rank *ranks = NULL;
	size_t n = 0;

	for (size_t i = 0; i < count; i++) {
		size_t k = 0;
		while (k < n && ranks[k].period != e[i].rank)
			k++;
		if (k == n) {
			ranks = xrealloc(ranks, (n + 1) * sizeof(*ranks));
			ranks[n++] = (struct period_rank){ .period = e[i].rank };
		}
	}
	if (n == 0)
		return;
	qsort(ranks, n, sizeof(*ranks), compare_periods);
	for (size_t i = 0; i < count; i++) {
		size_t k = 0;
		while (ranks[k].period != e[i].rank)
			k++;
		e[i].rank = (int)k;
	}
	free(ranks);
}

/* Room for count rows.  A rowset that a burst made large shrinks again
 * once batches are a quarter of its size: it is working memory, not a
 * cache. */
static void reserve(struct rowset *r, size_t count)
{
	if (count > r->cap || (r->cap > 1024 && count < r->cap / 4)) {
		r->cap = count > 1024 ? count : 1024;
		r->keys = xrealloc(r->keys, r->cap * sizeof(*r->keys));
		r->rows = xrealloc(r->rows, r->cap * sizeof(*r->rows));
	}
}

void rowset_fill(struct rowset *r, struct counter_batch *batch, bool in_flight)
{
	struct sort_entry *e = xcalloc(batch->count + 1, sizeof(*e));

	for (size_t i = 0; i < batch->count; i++) {
		struct counter_view v;
		counter_view(batch->keys[i], &v);
		e[i] = (struct sort_entry){ .prefix = prefix_of(v.key, v.key_len), .key = v.key,
					    .key_len = (uint32_t)v.key_len, .rank = v.period,
					    .counter = batch->keys[i] };
	}
	rank_periods(e, batch->count);
	sort_entries(e, batch->count);
	reserve(r, batch->count);
	r->count = batch->count;
	for (size_t i = 0; i < batch->count; i++) {
		struct counter_view v;
		counter_view(e[i].counter, &v);
		batch->keys[i] = r->keys[i] = e[i].counter;
		r->rows[i] = (struct store_row){ .key = v.key, .key_len = v.key_len };
		if (in_flight)
			r->rows[i].values = *counters_in_flight(e[i].counter);
		r->rows[i].time = periods_time(v.period, &r->rows[i].time_len);
	}
	free(e);
}

void rowset_pick(struct rowset *out, const struct rowset *all, bool (*keep)(const struct counter *c))
{
	reserve(out, all->count);
	out->count = 0;
	for (size_t i = 0; i < all->count; i++) {
		if (keep(all->keys[i])) {
			out->keys[out->count] = all->keys[i];
			out->rows[out->count++] = all->rows[i];
		}
	}
}

void rowset_free(struct rowset *r)
{
	free(r->keys);
	free(r->rows);
	memset(r, 0, sizeof(*r));
}

/* The end of the run of rows that share row i's period. */
static size_t period_end(const struct rowset *r, size_t i)
{
	struct counter_view first, v;
	size_t end = i + 1;

	counter_view(r->keys[i], &first);
	for (; end < r->count; end++) {
		counter_view(r->keys[end], &v);
		if (v.period != first.period)
			break;
	}
	return end;
}

/* Rows for the next statement, of `left`: a whole chunk, or the largest
 * power of two that fits, so that statements come in a few sizes that the
 * connection's statement cache keeps (preparing one costs more than a
 * round trip). */
static size_t piece(size_t left, size_t chunk)
{
	size_t n = 1;

	if (left >= chunk)
		return chunk;
	while (n * 2 <= left)
		n *= 2;
	return n;
}

enum store_status rowset_each_chunk(struct rowset *r, struct store *s, size_t chunk, rowset_op op,
				    size_t *done)
{
	enum store_status status = STORE_OK;

	*done = 0;
	for (size_t i = 0, end; i < r->count && status == STORE_OK; i = end) {
		struct counter_view v;
		counter_view(r->keys[i], &v);
		const char *table = tables_name(periods_table(v.period));
		end = period_end(r, i);
		for (size_t k = i, n; k < end && status == STORE_OK; k += n) {
			n = piece(end - k, chunk);
			status = op(s, table, r->rows + k, n);
			if (status == STORE_OK)
				*done = k + n;
		}
	}
	return status;
}
