/*
 * check_rowset.c: a flush's keys become rows in the one order every
 * instance uses (period by table name and time key, then key bytes, as
 * store_row_compare() orders them), each key once, with its increments.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "rowset.h"
#include "tables.h"
#include "unit.h"

static int table;

static void setup(void)
{
	counters_init();
	table = tables_register("acct_client_address");
	tables_add_pattern(table, "%Y-%m", 1);
	tables_set_read(table);
}

static void teardown(void)
{
	counters_free_all();
	tables_free_all();
}

/* Keys that share long prefixes, duplicates of each other's first bytes
 * and lengths from 0 on: ties on the first eight bytes must fall back on
 * the whole key. */
static void key_of(unsigned n, char *out, size_t size)
{
	switch (n % 4) {
	case 0: snprintf(out, size, "10.%u.%u.%u", n % 7, n % 251, n / 7); break;
	case 1: snprintf(out, size, "user%u@example.org", n); break;
	case 2: snprintf(out, size, "%.*s", (int)(n % 12), "aaaaaaaaaaaaaaaa"); break;
	default: snprintf(out, size, "10.%u.%u.%u%c", n % 7, n % 251, n / 7, 'a' + n % 3); break;
	}
}

START_TEST(test_rows_come_sorted_by_period_then_key_each_once)
{
	int periods[2] = { periods_get(table, "2026-12", 7), periods_get(table, "2026-11", 7) };
	const struct metric_values one = { { 1, 1, 10, 10 } };
	struct counter_batch batch = { 0 };
	struct rowset r = { 0 };
	char key[64];
	size_t added = 0;

	for (unsigned n = 0; n < 20000; n++) {
		key_of(n * 2654435761u % 20000, key, sizeof(key));
		counters_add(periods[n % 2], key, strlen(key), &one);
		added++;
	}
	counters_take_pending(&batch);
	rowset_fill(&r, &batch, true);
	ck_assert_uint_eq(r.count, batch.count);
	uint64_t messages = 0;
	for (size_t i = 0; i < r.count; i++) {
		messages += r.rows[i].values.v[0];
		if (i == 0)
			continue;
		const struct store_row *a = &r.rows[i - 1], *b = &r.rows[i];
		struct store_row ta = { .key = a->time, .key_len = a->time_len };
		struct store_row tb = { .key = b->time, .key_len = b->time_len };
		int by_time = store_row_compare(&ta, &tb);
		ck_assert_int_le(by_time, 0);                  /* 2026-11 first */
		if (by_time == 0)
			ck_assert_int_lt(store_row_compare(a, b), 0);   /* strictly: each once */
	}
	ck_assert_uint_eq(messages, added);
	ck_assert_int_eq(memcmp(r.rows[0].time, "2026-11", 7), 0);
	rowset_free(&r);
	counter_batch_free(&batch);
}
END_TEST

static Suite *rowset_suite(void)
{
	Suite *s = suite_create("rowset");
	TCase *tc = tcase_create("order");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_rows_come_sorted_by_period_then_key_each_once);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(rowset_suite());
}
