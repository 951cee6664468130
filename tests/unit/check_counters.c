/*
 * check_counters.c: the counter cache's promises, with the test playing the
 * loader (loader_take) and the flusher: a missing key is queued once and
 * waited for; totals include in-flight and pending increments; a key of a
 * period read in full is known without a query; a read that raced a commit
 * is never used; stale periods are evicted.  Check forks each test, so
 * each starts with an empty cache.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "counters.h"
#include "tables.h"
#include "unit.h"

static int table, period;

static void setup(void)
{
	counters_init();
	table = tables_register("acct_client_address");
	tables_add_pattern(table, "%Y-%m", 1);
	tables_set_read(table);
	period = periods_get(table, "2026-11", 7);
}

static void teardown(void)
{
	struct loader_work work = { 0 };

	loader_take(&work);
	loader_work_free(&work);
	counters_free_all();
	tables_free_all();
}

static const struct metric_values one_message = { { 1, 3, 1000, 3000 } };
static const struct metric_values stored = { { 10, 20, 30, 40 } };

static void add(const char *key)
{
	counters_add(period, key, strlen(key), &one_message);
}

static enum lookup total(const char *key, struct metric_values *out)
{
	uint64_t ticket;

	return counters_total(period, key, strlen(key), true, out, &ticket);
}

/* The keys the loader was asked for since the last call. */
static size_t take_queued(struct counter_batch *out)
{
	struct loader_work work = { 0 };

	loader_take(&work);
	*out = work.counters;
	free(work.configs);
	return out->count;
}

/* Plays the flusher: takes what is pending and commits it, with `read`
 * as the totals read back (NULL: none). */
static void flush(const struct metric_values *read)
{
	struct counter_batch batch = { 0 };

	counters_take_pending(&batch);
	uint32_t epoch = counters_next_epoch();
	for (size_t i = 0; i < batch.count; i++)
		counters_committed(batch.keys[i], read, epoch);
	counter_batch_free(&batch);
}

/* ------------------------------------------------------------------ tests */

START_TEST(test_missing_key_is_queued_once_however_many_ask)
{
	struct counter_batch queued;
	struct metric_values t;

	ck_assert_int_eq(total("192.0.2.1", &t), LOOKUP_WAIT);
	ck_assert_int_eq(total("192.0.2.1", &t), LOOKUP_WAIT);
	ck_assert_int_eq(total("192.0.2.1", &t), LOOKUP_WAIT);
	ck_assert_uint_eq(take_queued(&queued), 1);
	counter_batch_free(&queued);
}
END_TEST

START_TEST(test_loaded_total_is_database_value_plus_pending_increments)
{
	struct counter_batch queued;
	struct metric_values t;

	add("192.0.2.1");
	ck_assert_int_eq(total("192.0.2.1", &t), LOOKUP_WAIT);
	ck_assert_uint_eq(take_queued(&queued), 1);
	counters_loaded(queued.keys[0], &stored, counters_epoch());
	ck_assert_int_eq(total("192.0.2.1", &t), LOOKUP_FOUND);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 11);
	ck_assert_uint_eq(t.v[METRIC_COUNT_RCPT], 23);
	ck_assert_uint_eq(t.v[METRIC_SIZE], 1030);
	ck_assert_uint_eq(t.v[METRIC_SIZE_RCPT], 3040);
	counter_batch_free(&queued);
}
END_TEST

START_TEST(test_key_without_row_loads_as_zero)
{
	struct counter_batch queued;
	struct metric_values t;

	total("192.0.2.1", &t);
	take_queued(&queued);
	counters_loaded(queued.keys[0], NULL, counters_epoch());
	ck_assert_int_eq(total("192.0.2.1", &t), LOOKUP_FOUND);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 0);
	counter_batch_free(&queued);
}
END_TEST

START_TEST(test_key_of_a_period_read_in_full_is_known_without_a_query)
{
	struct counter_batch queued;
	struct metric_values t;

	counters_bulk_row(period, "192.0.2.1", 9, &stored, counters_epoch());
	periods_load_done(period, true);
	ck_assert_int_eq(total("192.0.2.1", &t), LOOKUP_FOUND);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 10);
	ck_assert_int_eq(total("192.0.2.2", &t), LOOKUP_FOUND);   /* absent: zero */
	ck_assert_uint_eq(t.v[METRIC_COUNT], 0);
	ck_assert_uint_eq(take_queued(&queued), 0);
	counter_batch_free(&queued);
}
END_TEST

START_TEST(test_keys_differ_by_period_and_key_bytes)
{
	int other = periods_get(table, "2026-12", 7);
	struct metric_values t;

	periods_set_complete(period);
	periods_set_complete(other);
	add("a");
	counters_add(other, "a", 1, &one_message);
	counters_add(other, "a", 1, &one_message);
	add("ab");
	total("a", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 1);
	counters_total(other, "a", 1, true, &t, &(uint64_t){ 0 });
	ck_assert_uint_eq(t.v[METRIC_COUNT], 2);
	total("ab", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 1);
}
END_TEST

START_TEST(test_a_key_spelled_two_ways_is_one_key_with_its_first_spelling)
{
	struct metric_values t;
	struct counter_batch batch = { 0 };
	struct counter_view v;

	counters_bulk_row(period, "alice@example.org", 17, &stored, counters_epoch());
	periods_load_done(period, true);
	add("Alice@Example.org ");
	ck_assert_int_eq(total("ALICE@EXAMPLE.ORG", &t), LOOKUP_FOUND);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 11);
	add("Bob ");
	add("bob");
	counters_take_pending(&batch);
	ck_assert_uint_eq(batch.count, 2);
	for (size_t i = 0; i < batch.count; i++) {
		counter_view(batch.keys[i], &v);
		ck_assert(v.key_len == 17 ? memcmp(v.key, "alice@example.org", 17) == 0 :
			  v.key_len == 4 && memcmp(v.key, "Bob ", 4) == 0);
	}
	counter_batch_free(&batch);
}
END_TEST

START_TEST(test_in_flight_increments_count_until_committed)
{
	struct counter_batch batch = { 0 };
	struct metric_values t;

	periods_set_complete(period);
	add("k");
	counters_take_pending(&batch);
	add("k");
	total("k", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 2);       /* one in flight, one pending */
	counters_committed(batch.keys[0], &(struct metric_values){ { 7, 7, 7, 7 } },
			   counters_next_epoch());
	total("k", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 8);       /* read back 7, plus one pending */
	counter_batch_free(&batch);
}
END_TEST

START_TEST(test_commit_without_totals_adds_in_flight_to_flushed)
{
	struct metric_values t;

	periods_set_complete(period);
	add("k");
	add("k");
	flush(NULL);
	total("k", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 2);
	ck_assert_uint_eq(t.v[METRIC_SIZE_RCPT], 6000);
}
END_TEST

START_TEST(test_failed_flush_keeps_increments_in_flight_and_merges_new_ones)
{
	struct counter_batch batch = { 0 };
	struct metric_values t;

	periods_set_complete(period);
	add("k");
	counters_take_pending(&batch);
	add("k");
	counters_take_pending(&batch);                  /* the retry takes the new one too */
	ck_assert_uint_eq(batch.count, 1);
	counters_committed(batch.keys[0], NULL, counters_next_epoch());
	total("k", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 2);
	counter_batch_free(&batch);
}
END_TEST

START_TEST(test_read_that_raced_a_commit_is_queued_again)
{
	struct counter_batch queued, again;
	struct metric_values t;

	ck_assert_int_eq(total("k", &t), LOOKUP_WAIT);
	take_queued(&queued);
	uint32_t before = counters_epoch();             /* the loader's query starts */
	add("k");
	flush(NULL);                                    /* a commit the query may not see */
	counters_loaded(queued.keys[0], &stored, before);
	ck_assert_int_eq(total("k", &t), LOOKUP_WAIT);  /* not used: it may miss the commit */
	ck_assert_uint_eq(take_queued(&again), 1);
	counters_loaded(again.keys[0], &(struct metric_values){ { 11, 0, 0, 0 } },
			counters_epoch());
	ck_assert_int_eq(total("k", &t), LOOKUP_FOUND);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 11);
	counter_batch_free(&queued);
	counter_batch_free(&again);
}
END_TEST

START_TEST(test_key_in_flight_is_left_to_the_commit_that_reads_it_back)
{
	struct counter_batch batch = { 0 }, queued, none;
	struct metric_values t;

	add("k");
	counters_take_pending(&batch);                  /* in flight */
	ck_assert_int_eq(total("k", &t), LOOKUP_WAIT);
	take_queued(&queued);
	counters_loaded(queued.keys[0], &stored, counters_epoch());
	ck_assert_int_eq(total("k", &t), LOOKUP_WAIT);  /* in flight: the read may hold it */
	ck_assert_uint_eq(take_queued(&none), 0);
	ck_assert(counters_wants_read_back(batch.keys[0]));
	counters_committed(batch.keys[0], &stored, counters_next_epoch());
	ck_assert_int_eq(total("k", &t), LOOKUP_FOUND);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 10);
	counter_batch_free(&batch);
	counter_batch_free(&queued);
	counter_batch_free(&none);
}
END_TEST

START_TEST(test_key_in_flight_committed_without_read_back_is_queued_again)
{
	struct counter_batch batch = { 0 }, queued, again;
	struct metric_values t;

	add("k");
	counters_take_pending(&batch);
	total("k", &t);
	take_queued(&queued);
	counters_loaded(queued.keys[0], &stored, counters_epoch());
	counters_committed(batch.keys[0], NULL, counters_next_epoch());
	ck_assert_uint_eq(take_queued(&again), 1);
	counter_batch_free(&batch);
	counter_batch_free(&queued);
	counter_batch_free(&again);
}
END_TEST

START_TEST(test_failed_load_gives_own_increments)
{
	struct counter_batch queued;
	struct metric_values t;
	uint64_t ticket;

	add("k");
	total("k", &t);
	take_queued(&queued);
	counters_load_failed(queued.keys[0]);
	ck_assert_int_eq(counters_total(period, "k", 1, false, &t, &ticket), LOOKUP_FAILED);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 1);
	counter_batch_free(&queued);
}
END_TEST

START_TEST(test_request_past_its_wait_is_answered_without_waiting)
{
	struct metric_values t;
	uint64_t ticket;

	add("k");
	ck_assert_int_eq(counters_total(period, "k", 1, false, &t, &ticket), LOOKUP_FAILED);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 1);
}
END_TEST

START_TEST(test_refresh_replaces_flushed_totals_of_touched_keys)
{
	struct counter_batch touched = { 0 };
	struct metric_values t;

	periods_set_complete(period);
	total("k", &t);
	counters_take_touched(&touched, 0, SIZE_MAX);
	ck_assert_uint_eq(touched.count, 1);
	counters_refreshed(touched.keys[0], &stored, counters_epoch(), false);
	total("k", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 10);
	touched.count = 0;
	counters_take_touched(&touched, 0, SIZE_MAX);               /* touched again by that total() */
	uint32_t before = counters_epoch();
	add("k");
	flush(NULL);                                   /* 11 now; the refresh read before */
	counters_refreshed(touched.keys[0], &stored, before, false);
	total("k", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 11);
	counter_batch_free(&touched);
}
END_TEST

START_TEST(test_past_periods_are_evicted_once_written)
{
	int old = periods_get(table, "1999-01", 7);
	struct counters_stats stats;

	periods_set_complete(period);
	counters_add(old, "k", 1, &one_message);
	add("k");
	/* two ticks in which only far-future periods are current */
	periods_tick(time(NULL) + 86400L * 400);
	periods_tick(time(NULL) + 86400L * 400);
	ck_assert_uint_eq(counters_evict_stale(), 0);       /* both still pending */
	flush(NULL);
	ck_assert_uint_eq(counters_evict_stale(), 2);
	counters_stats(&stats);
	ck_assert_uint_eq(stats.keys, 0);
}
END_TEST

START_TEST(test_over_cache_max_keys_clean_keys_go_and_are_read_again)
{
	struct counters_stats stats;
	struct counter_batch queued;
	struct metric_values t;
	char key[32];

	periods_load_done(period, true);
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "10.0.%d.%d", i / 256, i % 256);
		add(key);
	}
	flush(NULL);                                 /* written: clean */
	add("pending");                              /* not written: stays */
	ck_assert_uint_eq(counters_evict_over(2000), 0);
	size_t evicted = counters_evict_over(500);
	counters_stats(&stats);
	ck_assert_uint_ge(evicted, 1001 - 450);
	ck_assert_uint_le(stats.keys, 450);
	ck_assert_uint_eq(stats.evicted, evicted);
	ck_assert_int_eq(total("pending", &t), LOOKUP_FOUND);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 1);
	/* an evicted key is no longer known to be zero: the loader reads it */
	ck_assert(!periods_is_complete(period));
	int waiting = 0;
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "10.0.%d.%d", i / 256, i % 256);
		waiting += total(key, &t) == LOOKUP_WAIT;
	}
	ck_assert_int_ge(waiting, (int)evicted);
	ck_assert_uint_ge(take_queued(&queued), evicted);
	counter_batch_free(&queued);
}
END_TEST

START_TEST(test_a_load_that_raced_an_eviction_does_not_make_its_period_complete)
{
	int current = periods_now(table, "%Y-%m");      /* a period the tick makes live */

	periods_tick(time(NULL));
	ck_assert_int_eq(periods_claim_load(), current);
	periods_key_evicted(current);
	periods_load_done(current, true);
	ck_assert(!periods_is_complete(current));
}
END_TEST

static void *add_many(void *key)
{
	for (int i = 0; i < 10000; i++)
		add(key);
	return NULL;
}

START_TEST(test_concurrent_adds_are_all_counted)
{
	pthread_t threads[8];
	struct metric_values t;

	periods_set_complete(period);
	for (int i = 0; i < 8; i++)
		pthread_create(&threads[i], NULL, add_many, i % 2 ? "odd" : "even");
	for (int i = 0; i < 8; i++)
		pthread_join(threads[i], NULL);
	total("odd", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 40000);
	ck_assert_uint_eq(t.v[METRIC_SIZE_RCPT], 40000ULL * 3000);
}
END_TEST

START_TEST(test_increments_are_numbered_with_the_take_that_carries_them)
{
	struct counter_batch batch = { 0 };

	ck_assert_uint_eq(counters_add(period, "a", 1, &one_message), 1);
	ck_assert_uint_eq(counters_add(period, "b", 1, &one_message), 1);
	ck_assert_uint_eq(counters_take_pending(&batch), 1);
	ck_assert_uint_eq(counters_add(period, "a", 1, &one_message), 2);
	ck_assert_uint_eq(counters_take_pending(&batch), 2);
	ck_assert_uint_eq(counters_take_pending(&batch), 3);
	counter_batch_free(&batch);
}
END_TEST

START_TEST(test_restored_in_flight_increments_join_the_batch)
{
	struct counter_batch batch = { 0 };
	struct metric_values t;
	uint64_t ticket;

	counters_restore_in_flight(period, "a", 1, &one_message, &batch);
	ck_assert_uint_eq(batch.count, 1);
	ck_assert_int_eq(counters_total(period, "a", 1, false, &t, &ticket), LOOKUP_FAILED);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 1);
	counters_committed(batch.keys[0], &(struct metric_values){ { 5, 5, 5, 5 } },
			   counters_next_epoch());
	ck_assert_int_eq(counters_total(period, "a", 1, false, &t, &ticket), LOOKUP_FOUND);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 5);
	counter_batch_free(&batch);
}
END_TEST

START_TEST(test_registries_reuse_ids_by_name)
{
	ck_assert_int_eq(tables_register("acct_client_address"), table);
	int other = tables_register("acct_sasl_username");
	ck_assert_int_ne(other, table);
	ck_assert_str_eq(tables_name(other), "acct_sasl_username");
	ck_assert_int_eq(periods_get(table, "2026-11", 7), period);
	ck_assert_int_ne(periods_get(other, "2026-11", 7), period);
	ck_assert_int_eq(periods_now(table, "%Y-%m"), periods_now(table, "%Y-%m"));
}
END_TEST

START_TEST(test_time_patterns_no_config_uses_are_retired_at_reload)
{
	char pattern[TABLES_PATTERN_MAX];

	/* the setup's "%Y-%m" is generation 1's; 7 more fill the table */
	for (int i = 0; i < 7; i++) {
		snprintf(pattern, sizeof(pattern), "%%Y-%%m %d", i);
		ck_assert_int_eq(tables_add_pattern(table, pattern, 1), 0);
	}
	ck_assert_int_eq(tables_add_pattern(table, "%Y", 2), -1);     /* refused, not lost */
	ck_assert_int_eq(tables_add_pattern(table, "%Y-%m 6", 2), 0);  /* known: kept */
	tables_retire_patterns(2);                                     /* generation 2 in force */
	tables_for("acct_client_address", (int[1]){ 0 }, 1, pattern);
	ck_assert_str_eq(pattern, "%Y-%m 6");
	for (int i = 0; i < 7; i++) {
		snprintf(pattern, sizeof(pattern), "%%d %d", i);
		ck_assert_int_eq(tables_add_pattern(table, pattern, 3), 0);
	}
}
END_TEST

static Suite *counters_suite(void)
{
	Suite *s = suite_create("counters");
	TCase *tc = tcase_create("cache");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_missing_key_is_queued_once_however_many_ask);
	tcase_add_test(tc, test_loaded_total_is_database_value_plus_pending_increments);
	tcase_add_test(tc, test_key_without_row_loads_as_zero);
	tcase_add_test(tc, test_key_of_a_period_read_in_full_is_known_without_a_query);
	tcase_add_test(tc, test_keys_differ_by_period_and_key_bytes);
	tcase_add_test(tc, test_a_key_spelled_two_ways_is_one_key_with_its_first_spelling);
	tcase_add_test(tc, test_in_flight_increments_count_until_committed);
	tcase_add_test(tc, test_commit_without_totals_adds_in_flight_to_flushed);
	tcase_add_test(tc, test_failed_flush_keeps_increments_in_flight_and_merges_new_ones);
	tcase_add_test(tc, test_read_that_raced_a_commit_is_queued_again);
	tcase_add_test(tc, test_key_in_flight_is_left_to_the_commit_that_reads_it_back);
	tcase_add_test(tc, test_key_in_flight_committed_without_read_back_is_queued_again);
	tcase_add_test(tc, test_failed_load_gives_own_increments);
	tcase_add_test(tc, test_request_past_its_wait_is_answered_without_waiting);
	tcase_add_test(tc, test_refresh_replaces_flushed_totals_of_touched_keys);
	tcase_add_test(tc, test_past_periods_are_evicted_once_written);
	tcase_add_test(tc, test_over_cache_max_keys_clean_keys_go_and_are_read_again);
	tcase_add_test(tc, test_a_load_that_raced_an_eviction_does_not_make_its_period_complete);
	tcase_add_test(tc, test_concurrent_adds_are_all_counted);
	tcase_add_test(tc, test_increments_are_numbered_with_the_take_that_carries_them);
	tcase_add_test(tc, test_restored_in_flight_increments_join_the_batch);
	tcase_add_test(tc, test_registries_reuse_ids_by_name);
	tcase_add_test(tc, test_time_patterns_no_config_uses_are_retired_at_reload);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(counters_suite());
}
