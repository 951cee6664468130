/*
 * check_counters.c: the counter cache's promises, with a fake loader in
 * place of the database: one load per key however many workers miss it,
 * totals that include in-flight and pending increments, loads that raced a
 * flush thrown away, stale periods evicted.  Check forks each test, so each
 * starts with an empty cache.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "counters.h"
#include "unit.h"

/* ------------------------------------------------------------ fake loader */

static atomic_int loads;
static struct metric_values stored;        /* what the "database" holds */
static int fail_loads;

/* A loader that can be held at its start until the test releases it. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_changed = PTHREAD_COND_INITIALIZER;
static bool gate_closed, loader_waiting;
static int latency_ms;

static int fake_load(const char *table, const char *key, size_t key_len, const char *time,
		     size_t time_len, struct metric_values *out, void *arg)
{
	atomic_fetch_add(&loads, 1);
	pthread_mutex_lock(&gate_lock);
	loader_waiting = true;
	pthread_cond_broadcast(&gate_changed);
	while (gate_closed)
		pthread_cond_wait(&gate_changed, &gate_lock);
	loader_waiting = false;
	pthread_mutex_unlock(&gate_lock);
	if (latency_ms)   /* database latency, so that misses overlap */
		nanosleep(&(struct timespec){ .tv_nsec = latency_ms * 1000000L }, NULL);
	if (fail_loads)
		return -1;
	*out = stored;
	return 0;
}

static int table;

static void setup(void)
{
	struct counters_loader loader = { .load = fake_load, .wait_seconds = 5 };

	counters_init(&loader);
	table = counters_table("acct_client_address");
	counters_table_add_pattern(table, "%Y-%m");
	memset(&stored, 0, sizeof(stored));
	atomic_store(&loads, 0);
	fail_loads = 0;
	latency_ms = 0;
	gate_closed = false;
}

static void teardown(void)
{
	counters_free_all();
}

static const struct metric_values one_message = { { 1, 3, 1000, 3000 } };

static void add(const char *key, const char *time)
{
	counters_add(table, key, strlen(key), time, strlen(time), &one_message);
}

static bool total(const char *key, const char *time, struct metric_values *out)
{
	return counters_total(table, key, strlen(key), time, strlen(time), out);
}

/* ------------------------------------------------------------------ tests */

START_TEST(test_total_is_database_value_plus_pending_increments)
{
	struct metric_values t;

	stored = (struct metric_values){ { 10, 20, 30, 40 } };
	add("192.0.2.1", "2026-11");
	ck_assert(total("192.0.2.1", "2026-11", &t));
	ck_assert_uint_eq(t.v[METRIC_COUNT], 11);
	ck_assert_uint_eq(t.v[METRIC_COUNT_RCPT], 23);
	ck_assert_uint_eq(t.v[METRIC_SIZE], 1030);
	ck_assert_uint_eq(t.v[METRIC_SIZE_RCPT], 3040);
}
END_TEST

START_TEST(test_a_key_is_loaded_once_then_served_from_the_cache)
{
	struct metric_values t;

	for (int i = 0; i < 100; i++)
		ck_assert(total("192.0.2.1", "2026-11", &t));
	ck_assert_int_eq(atomic_load(&loads), 1);
}
END_TEST

static void *ask_total(void *arg)
{
	struct metric_values t;

	total(arg, "2026-11", &t);
	return NULL;
}

START_TEST(test_concurrent_misses_on_one_key_cause_one_load)
{
	pthread_t threads[16];

	latency_ms = 100;
	for (int i = 0; i < 16; i++)
		pthread_create(&threads[i], NULL, ask_total, "198.51.100.9");
	for (int i = 0; i < 16; i++)
		pthread_join(threads[i], NULL);
	ck_assert_int_eq(atomic_load(&loads), 1);
}
END_TEST

START_TEST(test_keys_differ_by_table_time_and_key_bytes)
{
	struct metric_values t;
	int other = counters_table("acct_sender");

	add("a", "2026-11");
	add("a", "2026-10");
	counters_add(other, "a", 1, "2026-11", 7, &one_message);
	counters_add(table, "a\0b", 3, "2026-11", 7, &one_message);
	total("a", "2026-11", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 1);
	/* "ab"+"c" must not meet "a"+"bc" */
	counters_add(table, "c", 1, "2026-1ab", 8, &one_message);
	counters_total(table, "bc", 2, "2026-1a", 7, &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 0);
}
END_TEST

START_TEST(test_in_flight_increments_count_until_committed)
{
	struct counter_batch batch = { 0 };
	struct metric_values t, db = { { 7, 7, 7, 7 } };

	total("192.0.2.1", "2026-11", &t);          /* loaded: zeros */
	add("192.0.2.1", "2026-11");
	counters_take_pending(&batch);
	ck_assert_uint_eq(batch.count, 1);
	add("192.0.2.1", "2026-11");                /* pending again, while in flight */
	total("192.0.2.1", "2026-11", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 2);

	counters_committed(batch.keys[0], &db);      /* the database now says 7 */
	total("192.0.2.1", "2026-11", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 8);
	counter_batch_free(&batch);
}
END_TEST

START_TEST(test_commit_without_totals_adds_in_flight_to_flushed)
{
	struct counter_batch batch = { 0 };
	struct metric_values t;

	stored.v[METRIC_COUNT] = 5;
	total("192.0.2.1", "2026-11", &t);
	add("192.0.2.1", "2026-11");
	counters_take_pending(&batch);
	counters_committed(batch.keys[0], NULL);
	total("192.0.2.1", "2026-11", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 6);
	counter_batch_free(&batch);
}
END_TEST

START_TEST(test_failed_flush_keeps_increments_in_flight_and_merges_new_ones)
{
	struct counter_batch batch = { 0 };
	struct counter_view v;

	add("192.0.2.1", "2026-11");
	counters_take_pending(&batch);
	add("192.0.2.1", "2026-11");                /* the flush failed; more arrive */
	counters_take_pending(&batch);
	ck_assert_uint_eq(batch.count, 1);           /* still one key */
	counter_view(batch.keys[0], &v);
	ck_assert_uint_eq(v.in_flight->v[METRIC_COUNT], 2);
	ck_assert_uint_eq(v.in_flight->v[METRIC_SIZE_RCPT], 6000);
	counter_batch_free(&batch);
}
END_TEST

static void *total_of_k(void *out)
{
	total("192.0.2.77", "2026-11", out);
	return NULL;
}

START_TEST(test_load_that_raced_a_commit_is_discarded)
{
	struct counter_batch batch = { 0 };
	struct metric_values seen, db = { { 10, 10, 10, 10 } };
	pthread_t worker;

	gate_closed = true;
	stored.v[METRIC_COUNT] = 999;               /* what the stale load will read */
	pthread_create(&worker, NULL, total_of_k, &seen);
	pthread_mutex_lock(&gate_lock);
	while (!loader_waiting)
		pthread_cond_wait(&gate_changed, &gate_lock);
	pthread_mutex_unlock(&gate_lock);

	/* while the load is out, the flusher writes this key and reads 10 */
	add("192.0.2.77", "2026-11");
	counters_take_pending(&batch);
	counters_committed(batch.keys[0], &db);

	pthread_mutex_lock(&gate_lock);
	gate_closed = false;
	pthread_cond_broadcast(&gate_changed);
	pthread_mutex_unlock(&gate_lock);
	pthread_join(worker, NULL);
	ck_assert_uint_eq(seen.v[METRIC_COUNT], 10);
	counter_batch_free(&batch);
}
END_TEST

START_TEST(test_unreachable_database_gives_local_increments_and_retries)
{
	struct metric_values t;

	fail_loads = 1;
	add("192.0.2.1", "2026-11");
	ck_assert(!total("192.0.2.1", "2026-11", &t));
	ck_assert_uint_eq(t.v[METRIC_COUNT], 1);
	fail_loads = 0;
	stored.v[METRIC_COUNT] = 40;
	ck_assert(total("192.0.2.1", "2026-11", &t));
	ck_assert_uint_eq(t.v[METRIC_COUNT], 41);
	ck_assert_int_eq(atomic_load(&loads), 2);
}
END_TEST

START_TEST(test_key_with_increments_in_flight_is_not_loaded)
{
	struct counter_batch batch = { 0 };
	struct metric_values t;

	add("192.0.2.1", "2026-11");
	counters_take_pending(&batch);              /* in flight, never loaded */
	ck_assert(!total("192.0.2.1", "2026-11", &t));
	ck_assert_int_eq(atomic_load(&loads), 0);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 1);
	counter_batch_free(&batch);
}
END_TEST

START_TEST(test_refresh_replaces_flushed_totals_of_touched_keys)
{
	struct counter_batch batch = { 0 };
	struct metric_values t, db = { { 50, 50, 50, 50 } };

	total("192.0.2.1", "2026-11", &t);
	counters_take_touched(&batch);
	ck_assert_uint_eq(batch.count, 1);
	counters_refreshed(batch.keys[0], &db, false);
	total("192.0.2.1", "2026-11", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 50);
	batch.count = 0;
	counters_take_touched(&batch);              /* touched again by that total */
	counters_refreshed(batch.keys[0], NULL, false);   /* the row was deleted */
	total("192.0.2.1", "2026-11", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 0);
	counter_batch_free(&batch);
}
END_TEST

START_TEST(test_past_periods_are_evicted_once_written)
{
	struct counter_batch batch = { 0 };
	struct counters_stats stats;
	char now[16];
	time_t t = time(NULL);

	strftime(now, sizeof(now), "%Y-%m", localtime(&t));
	add("192.0.2.1", "1999-01");
	add("192.0.2.1", now);
	ck_assert_uint_eq(counters_evict_stale(t), 0);       /* both still pending */
	counters_take_pending(&batch);
	for (size_t i = 0; i < batch.count; i++)
		counters_committed(batch.keys[i], NULL);
	ck_assert_uint_eq(counters_evict_stale(t), 1);       /* only 1999-01 */
	counters_stats(&stats);
	ck_assert_uint_eq(stats.keys, 1);
	counter_batch_free(&batch);
}
END_TEST

static void *add_many(void *key)
{
	for (int i = 0; i < 10000; i++)
		add(key, "2026-11");
	return NULL;
}

START_TEST(test_concurrent_adds_are_all_counted)
{
	pthread_t threads[8];
	struct metric_values t;

	for (int i = 0; i < 8; i++)
		pthread_create(&threads[i], NULL, add_many, i % 2 ? "odd" : "even");
	for (int i = 0; i < 8; i++)
		pthread_join(threads[i], NULL);
	total("odd", "2026-11", &t);
	ck_assert_uint_eq(t.v[METRIC_COUNT], 40000);
	ck_assert_uint_eq(t.v[METRIC_SIZE_RCPT], 40000ULL * 3000);
}
END_TEST

START_TEST(test_increments_are_numbered_with_the_take_that_carries_them)
{
	struct counter_batch batch = { 0 };

	ck_assert_uint_eq(counters_add(table, "a", 1, "2026-11", 7, &one_message), 1);
	ck_assert_uint_eq(counters_add(table, "b", 1, "2026-11", 7, &one_message), 1);
	ck_assert_uint_eq(counters_take_pending(&batch), 1);
	ck_assert_uint_eq(counters_add(table, "a", 1, "2026-11", 7, &one_message), 2);
	ck_assert_uint_eq(counters_take_pending(&batch), 2);
	ck_assert_uint_eq(counters_take_pending(&batch), 3);
	counter_batch_free(&batch);
}
END_TEST

START_TEST(test_restored_in_flight_increments_join_the_batch)
{
	struct counter_batch batch = { 0 };
	struct metric_values t;

	counters_restore_in_flight(table, "a", 1, "2026-11", 7, &one_message, &batch);
	ck_assert_uint_eq(batch.count, 1);
	ck_assert(!total("a", "2026-11", &t));    /* in flight: the flusher will load it */
	ck_assert_uint_eq(t.v[METRIC_COUNT], 1);
	counters_committed(batch.keys[0], &(struct metric_values){ { 5, 5, 5, 5 } });
	ck_assert(total("a", "2026-11", &t));
	ck_assert_uint_eq(t.v[METRIC_COUNT], 5);
	counter_batch_free(&batch);
}
END_TEST

START_TEST(test_table_registry_reuses_ids_by_name)
{
	ck_assert_int_eq(counters_table("acct_client_address"), table);
	int other = counters_table("acct_sasl_username");
	ck_assert_int_ne(other, table);
	ck_assert_str_eq(counters_table_name(other), "acct_sasl_username");
}
END_TEST

static Suite *counters_suite(void)
{
	Suite *s = suite_create("counters");
	TCase *tc = tcase_create("cache");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_total_is_database_value_plus_pending_increments);
	tcase_add_test(tc, test_a_key_is_loaded_once_then_served_from_the_cache);
	tcase_add_test(tc, test_concurrent_misses_on_one_key_cause_one_load);
	tcase_add_test(tc, test_keys_differ_by_table_time_and_key_bytes);
	tcase_add_test(tc, test_in_flight_increments_count_until_committed);
	tcase_add_test(tc, test_commit_without_totals_adds_in_flight_to_flushed);
	tcase_add_test(tc, test_failed_flush_keeps_increments_in_flight_and_merges_new_ones);
	tcase_add_test(tc, test_load_that_raced_a_commit_is_discarded);
	tcase_add_test(tc, test_unreachable_database_gives_local_increments_and_retries);
	tcase_add_test(tc, test_key_with_increments_in_flight_is_not_loaded);
	tcase_add_test(tc, test_refresh_replaces_flushed_totals_of_touched_keys);
	tcase_add_test(tc, test_past_periods_are_evicted_once_written);
	tcase_add_test(tc, test_concurrent_adds_are_all_counted);
	tcase_add_test(tc, test_increments_are_numbered_with_the_take_that_carries_them);
	tcase_add_test(tc, test_restored_in_flight_increments_join_the_batch);
	tcase_add_test(tc, test_table_registry_reuses_ids_by_name);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(counters_suite());
}
