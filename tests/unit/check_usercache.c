/*
 * check_usercache.c: the SqlUserConfig cache's promises, with the test
 * playing the loader: a miss is queued once and waited for; a stale config
 * is served while one refresh runs; a preloaded mapping answers every key
 * without a query or an entry per absent key; forget makes a key be read
 * afresh; keys compare as mtpolicyd's case-insensitive columns do; a
 * query no config uses gives its slot up, but only once nothing holds it.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "usercache.h"
#include "unit.h"

#define SQL "SELECT config FROM user_config WHERE address=?"
#define PRELOAD "SELECT address, config FROM user_config"

static int query;
static struct session session;

static void setup(void)
{
	usercache_init(60);
	query = usercache_query(SQL, "", "sender", 1);
	session_init(&session);
}

static void teardown(void)
{
	struct loader_work work = { 0 };

	loader_take(&work);
	loader_work_free(&work);
	session_free(&session);
	usercache_free_all();
}

static enum lookup lookup(int q, const char *key, bool *found)
{
	uint64_t ticket;

	session_clear(&session);
	return usercache_lookup(q, key, strlen(key), true, &session, found, &ticket);
}

/* The user configs the loader was asked for since the last call (what
 * `work` held is freed first). */
static size_t take_queued(struct loader_work *work)
{
	loader_work_free(work);
	loader_take(work);
	return work->config_count;
}

static const char *value(const char *name)
{
	struct session_view v;

	return session_get(&session, name, &v) ? v.text : NULL;
}

START_TEST(test_miss_is_queued_once_and_answered_with_its_config)
{
	struct loader_work work = { 0 };
	bool found;

	ck_assert_int_eq(lookup(query, "a@example.org", &found), LOOKUP_WAIT);
	ck_assert_int_eq(lookup(query, "a@example.org", &found), LOOKUP_WAIT);
	ck_assert_uint_eq(take_queued(&work), 1);
	usercache_loaded(work.configs[0], true, "{\"quota_count\":\"7\"}", 19);
	ck_assert_int_eq(lookup(query, "a@example.org", &found), LOOKUP_FOUND);
	ck_assert(found);
	ck_assert_str_eq(value("quota_count"), "7");
	loader_work_free(&work);
}
END_TEST

START_TEST(test_no_row_and_bad_json_are_cached_as_no_config)
{
	struct loader_work work = { 0 };
	bool found;

	lookup(query, "none", &found);
	lookup(query, "bad", &found);
	ck_assert_uint_eq(take_queued(&work), 2);
	usercache_loaded(work.configs[0], false, "", 0);
	usercache_loaded(work.configs[1], true, "{broken", 7);
	ck_assert_int_eq(lookup(query, "none", &found), LOOKUP_FOUND);
	ck_assert(!found);
	ck_assert_int_eq(lookup(query, "bad", &found), LOOKUP_FOUND);
	ck_assert(!found);
	loader_work_free(&work);
}
END_TEST

START_TEST(test_failed_load_is_not_waited_for_after_the_deadline)
{
	struct loader_work work = { 0 };
	uint64_t ticket;
	bool found;

	lookup(query, "k", &found);
	take_queued(&work);
	usercache_load_failed(work.configs[0]);
	ck_assert_int_eq(usercache_lookup(query, "k", 1, false, &session, &found, &ticket),
			 LOOKUP_FAILED);
	loader_work_free(&work);
}
END_TEST

START_TEST(test_stale_config_is_served_while_one_refresh_runs)
{
	struct loader_work work = { 0 }, refresh = { 0 };
	bool found;

	usercache_free_all();
	usercache_init(1);
	query = usercache_query(SQL, "", "sender", 1);
	lookup(query, "k", &found);
	take_queued(&work);
	usercache_loaded(work.configs[0], true, "{\"quota_count\":\"1\"}", 19);
	/* past its ttl, the first lookup queues a refresh and still answers */
	int64_t give_up = clock_ms() + 5000;
	while (take_queued(&refresh) == 0 && clock_ms() < give_up) {
		ck_assert_int_eq(lookup(query, "k", &found), LOOKUP_FOUND);
		ck_assert_str_eq(value("quota_count"), "1");
	}
	ck_assert_uint_eq(refresh.config_count, 1);
	ck_assert_int_eq(lookup(query, "k", &found), LOOKUP_FOUND);   /* one refresh only */
	ck_assert_uint_eq(take_queued(&work), 0);
	usercache_loaded(refresh.configs[0], true, "{\"quota_count\":\"2\"}", 19);
	lookup(query, "k", &found);
	ck_assert_str_eq(value("quota_count"), "2");
	loader_work_free(&work);
	loader_work_free(&refresh);
}
END_TEST

START_TEST(test_stale_none_is_served_while_one_refresh_runs)
{
	struct loader_work work = { 0 }, refresh = { 0 };
	bool found;

	usercache_free_all();
	usercache_init(1);
	query = usercache_query(SQL, "", "sender", 1);
	lookup(query, "k", &found);
	take_queued(&work);
	usercache_loaded(work.configs[0], false, "", 0);
	int64_t give_up = clock_ms() + 5000;
	while (take_queued(&refresh) == 0 && clock_ms() < give_up) {
		ck_assert_int_eq(lookup(query, "k", &found), LOOKUP_FOUND);
		ck_assert(!found);
	}
	ck_assert_uint_eq(refresh.config_count, 1);
	ck_assert_int_eq(lookup(query, "k", &found), LOOKUP_FOUND);   /* one refresh only */
	ck_assert(!found);
	ck_assert_uint_eq(take_queued(&work), 0);
	usercache_loaded(refresh.configs[0], true, "{\"quota_count\":\"2\"}", 19);
	ck_assert_int_eq(lookup(query, "k", &found), LOOKUP_FOUND);
	ck_assert(found);
	ck_assert_str_eq(value("quota_count"), "2");
	loader_work_free(&work);
	loader_work_free(&refresh);
}
END_TEST

START_TEST(test_many_keys_without_config_are_answered_without_the_loader)
{
	struct loader_work work = { 0 };
	struct usercache_stats stats;
	char key[32];
	bool found;
	enum { KEYS = 20000 };

	for (int i = 0; i < KEYS; i++) {
		snprintf(key, sizeof(key), "client%d", i);
		lookup(query, key, &found);
	}
	ck_assert_uint_eq(take_queued(&work), KEYS);
	for (size_t i = 0; i < work.config_count; i++)
		usercache_loaded(work.configs[i], false, "", 0);
	usercache_sweep();                     /* fresh nones stay */
	for (int i = 0; i < KEYS; i++) {
		snprintf(key, sizeof(key), "client%d", i);
		ck_assert_int_eq(lookup(query, key, &found), LOOKUP_FOUND);
		ck_assert(!found);
	}
	ck_assert_uint_eq(take_queued(&work), 0);
	usercache_stats(&stats);
	ck_assert_uint_eq(stats.entries, KEYS);
	ck_assert_uint_eq(stats.with_config, 0);
	ck_assert_int_eq(usercache_forget("sender", "client7", 7), 1);
	ck_assert_int_eq(lookup(query, "client7", &found), LOOKUP_WAIT);
	ck_assert_int_eq(lookup(query, "client8", &found), LOOKUP_FOUND);
	usercache_forget_all();
	ck_assert_int_eq(lookup(query, "client8", &found), LOOKUP_WAIT);
	loader_work_free(&work);
}
END_TEST

START_TEST(test_preloaded_mapping_answers_absent_keys_without_entries)
{
	struct usercache_stats stats;
	struct loader_work work = { 0 };
	const char *sql;
	bool found;
	int q = usercache_query(SQL, PRELOAD, "sender", 1);

	ck_assert_int_eq(usercache_claim_preload(&sql), q);
	ck_assert_str_eq(sql, PRELOAD);
	ck_assert_int_eq(usercache_claim_preload(&sql), -1);        /* claimed once */
	usercache_preload_row(q, "a@example.org", 13, "{\"quota_count\":3}", 17);
	usercache_preload_done(q, true);
	ck_assert_int_eq(lookup(q, "a@example.org", &found), LOOKUP_FOUND);
	ck_assert(found);
	ck_assert_str_eq(value("quota_count"), "3");
	for (int i = 0; i < 100; i++) {
		char key[32];
		snprintf(key, sizeof(key), "user%d@example.org", i);
		ck_assert_int_eq(lookup(q, key, &found), LOOKUP_FOUND);
		ck_assert(!found);
	}
	usercache_stats(&stats);
	ck_assert_uint_eq(stats.entries, 1);
	ck_assert_uint_eq(take_queued(&work), 0);
	loader_work_free(&work);
}
END_TEST

START_TEST(test_a_new_preload_drops_keys_no_longer_in_the_mapping)
{
	const char *sql;
	bool found;
	int q = usercache_query(SQL, PRELOAD, "sender", 1);

	usercache_claim_preload(&sql);
	usercache_preload_row(q, "gone", 4, "{\"quota_count\":3}", 17);
	usercache_preload_done(q, true);
	usercache_forget_all();                                     /* as a reload does */
	ck_assert_int_eq(usercache_claim_preload(&sql), q);
	usercache_preload_row(q, "kept", 4, "{\"quota_count\":4}", 17);
	usercache_preload_done(q, true);
	lookup(q, "gone", &found);
	ck_assert(!found);
	lookup(q, "kept", &found);
	ck_assert(found);
}
END_TEST

START_TEST(test_forget_makes_the_next_lookup_read_afresh)
{
	struct loader_work work = { 0 };
	bool found;

	lookup(query, "k", &found);
	take_queued(&work);
	usercache_loaded(work.configs[0], true, "{\"quota_count\":\"1\"}", 19);
	loader_work_free(&work);
	ck_assert_int_eq(usercache_forget("sender", "k", 1), 1);
	ck_assert_int_eq(usercache_forget("recipient", "k", 1), 0);
	ck_assert_int_eq(lookup(query, "k", &found), LOOKUP_WAIT);
	ck_assert_uint_eq(take_queued(&work), 1);
	loader_work_free(&work);
}
END_TEST

START_TEST(test_keys_ignore_ascii_case_and_trailing_spaces)
{
	struct loader_work work = { 0 };
	bool found;

	lookup(query, "Alice@Example.org", &found);
	ck_assert_int_eq(lookup(query, "alice@example.org  ", &found), LOOKUP_WAIT);
	ck_assert_uint_eq(take_queued(&work), 1);
	usercache_loaded(work.configs[0], true, "{\"quota_count\":\"9\"}", 19);
	ck_assert_int_eq(lookup(query, "ALICE@EXAMPLE.ORG", &found), LOOKUP_FOUND);
	ck_assert(found);
	loader_work_free(&work);
}
END_TEST

START_TEST(test_queries_no_config_uses_give_their_slots_up)
{
	struct loader_work work = { 0 };
	char sql[80];
	bool found;
	int kept = -1;

	for (int i = 1; i < 64; i++) {          /* the setup's query is the first */
		snprintf(sql, sizeof(sql), "SELECT config FROM t%d WHERE k=?", i);
		kept = usercache_query(sql, "", "sender", 1);
		ck_assert_int_ge(kept, 0);
	}
	ck_assert_int_eq(usercache_query("SELECT 65", "", "sender", 2), -1);
	/* the setup's query has a key on its way from the loader: held */
	ck_assert_int_eq(lookup(query, "held", &found), LOOKUP_WAIT);
	ck_assert_uint_eq(take_queued(&work), 1);
	ck_assert_int_eq(usercache_query(sql, "", "sender", 3), kept);
	usercache_retire_queries(3);            /* only the last text is in force */
	int given = usercache_query("SELECT 66", "", "sender", 3);
	ck_assert_int_ge(given, 0);
	ck_assert_int_ne(given, query);         /* still named by the queued entry */
	ck_assert_int_ne(given, kept);
	ck_assert_int_eq(usercache_forget("sender", "x", 1), 2);   /* in force: kept and given */
	/* a new query's keys are not the old one's, whatever the slot */
	ck_assert_int_eq(lookup(given, "held", &found), LOOKUP_WAIT);
	usercache_loaded(work.configs[0], true, "{\"quota_count\":\"1\"}", 19);
	loader_work_free(&work);
}
END_TEST

static Suite *usercache_suite(void)
{
	Suite *s = suite_create("usercache");
	TCase *tc = tcase_create("cache");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_miss_is_queued_once_and_answered_with_its_config);
	tcase_add_test(tc, test_no_row_and_bad_json_are_cached_as_no_config);
	tcase_add_test(tc, test_failed_load_is_not_waited_for_after_the_deadline);
	tcase_add_test(tc, test_stale_config_is_served_while_one_refresh_runs);
	tcase_add_test(tc, test_stale_none_is_served_while_one_refresh_runs);
	tcase_add_test(tc, test_many_keys_without_config_are_answered_without_the_loader);
	tcase_add_test(tc, test_preloaded_mapping_answers_absent_keys_without_entries);
	tcase_add_test(tc, test_a_new_preload_drops_keys_no_longer_in_the_mapping);
	tcase_add_test(tc, test_forget_makes_the_next_lookup_read_afresh);
	tcase_add_test(tc, test_keys_ignore_ascii_case_and_trailing_spaces);
	tcase_add_test(tc, test_queries_no_config_uses_give_their_slots_up);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(usercache_suite());
}
