/*
 * check_sessioncache.c: the session cache's marks (sessioncache.c) and
 * what the plugins make of them: one count per message with session_cache,
 * one per request without.  Time is passed in, so ttl is played exactly.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "chain.h"
#include "config.h"
#include "sessioncache.h"
#include "unit.h"

static uint64_t mark_of(uint64_t plugin, const char *instance)
{
	return sessioncache_mark(sessioncache_message(instance, strlen(instance)), plugin);
}

/* The mark of the n-th made-up message. */
static uint64_t nth(int n)
{
	char instance[32];

	snprintf(instance, sizeof(instance), "%x.%x.0", (unsigned)n, (unsigned)n * 7u);
	return mark_of(1, instance);
}

START_TEST(test_a_message_is_claimed_once_per_plugin)
{
	sessioncache_configure(true, 3600, 1000);
	uint64_t quota = mark_of(1, "2f3a.65a1b2c3.4d5e6.0"), acct = mark_of(2, "2f3a.65a1b2c3.4d5e6.0");

	ck_assert(quota != acct);
	ck_assert(!sessioncache_seen(quota, 100));
	ck_assert(sessioncache_claim(quota, 100));
	ck_assert(sessioncache_seen(quota, 101));
	ck_assert(!sessioncache_claim(quota, 101));
	ck_assert(!sessioncache_seen(acct, 101));       /* another plugin: its own mark */
	ck_assert(sessioncache_claim(acct, 101));
	ck_assert(!sessioncache_claim(mark_of(1, "2f3a.65a1b2c3.4d5e6.0"), 102));
}
END_TEST

START_TEST(test_a_mark_lasts_its_ttl_and_no_longer)
{
	sessioncache_configure(true, 60, 1000);
	uint64_t m = nth(1);

	ck_assert(sessioncache_claim(m, 1000));
	ck_assert(sessioncache_seen(m, 1059));
	ck_assert(!sessioncache_seen(m, 1060));
	ck_assert(sessioncache_claim(m, 1060));         /* counted again: a new session */
	struct sessioncache_stats st;
	sessioncache_stats(&st);
	ck_assert_uint_eq(st.marks, 1);
	ck_assert_uint_eq(st.evicted, 0);              /* expired, not evicted */
}
END_TEST

START_TEST(test_a_full_table_evicts_its_oldest_marks_and_stays_bounded)
{
	enum { MAX = 100 * SESSIONCACHE_SHARDS, MADE = 10 * MAX };
	struct sessioncache_stats st;

	sessioncache_configure(true, 3600, MAX);
	for (int i = 0; i < MADE; i++)
		ck_assert(sessioncache_claim(nth(i), 10 + i / 1000));
	sessioncache_stats(&st);
	ck_assert_uint_le(st.marks, MAX);
	ck_assert_uint_gt(st.marks, MAX / 2);
	ck_assert_uint_eq(st.marks + st.evicted, MADE);
	ck_assert(!sessioncache_seen(nth(0), 20));      /* the oldest went */
	ck_assert(sessioncache_seen(nth(MADE - 1), 20));   /* the newest stays */
	/* every mark still held is found, and none of those evicted is */
	int held = 0;
	for (int i = 0; i < MADE; i++)
		held += sessioncache_seen(nth(i), 20);
	ck_assert_int_eq(held, (int)st.marks);
}
END_TEST

START_TEST(test_a_reload_keeps_the_marks_and_a_smaller_table_the_newest)
{
	enum { MAX = 100 * SESSIONCACHE_SHARDS };   /* room enough for MAX / 2 in any shard */
	struct sessioncache_stats st;

	sessioncache_configure(true, 3600, MAX);
	for (int i = 0; i < MAX / 2; i++)
		ck_assert(sessioncache_claim(nth(i), 10 + i));
	sessioncache_configure(true, 7200, MAX);        /* a new ttl, the same room */
	for (int i = 0; i < MAX / 2; i++)
		ck_assert(sessioncache_seen(nth(i), 1000));
	sessioncache_configure(true, 7200, 4 * MAX);    /* more room */
	for (int i = 0; i < MAX / 2; i++)
		ck_assert(!sessioncache_claim(nth(i), 1000));
	sessioncache_configure(true, 7200, SESSIONCACHE_SHARDS);   /* one mark per shard */
	sessioncache_stats(&st);
	ck_assert_uint_le(st.marks, SESSIONCACHE_SHARDS);
	ck_assert(sessioncache_seen(nth(MAX / 2 - 1), 1000));      /* the newest of all */
	int held = 0;
	for (int i = 0; i < MAX / 2; i++)
		held += sessioncache_seen(nth(i), 1000);
	ck_assert_int_eq(held, (int)st.marks);
}
END_TEST

START_TEST(test_off_keeps_nothing_and_every_claim_counts)
{
	struct sessioncache_stats st;

	sessioncache_configure(true, 3600, 1000);
	ck_assert(sessioncache_claim(nth(1), 10));
	sessioncache_configure(false, 3600, 1000);
	ck_assert(!sessioncache_enabled());
	ck_assert(!sessioncache_seen(nth(1), 10));
	ck_assert(sessioncache_claim(nth(1), 10));
	ck_assert(sessioncache_claim(nth(1), 10));
	sessioncache_stats(&st);
	ck_assert_uint_eq(st.marks, 0);
}
END_TEST

/* Claims marks 0..CLAIMED-1 (a request repeated on another connection
 * comes to another worker); counts the claims it won. */
enum { CLAIMED = 2000 };

static void *claim_all(void *won)
{
	for (int i = 0; i < CLAIMED; i++)
		*(int *)won += sessioncache_claim(nth(i), 10);
	return NULL;
}

START_TEST(test_workers_claiming_one_message_at_once_count_it_once)
{
	pthread_t threads[4];
	int won[4] = { 0 };

	sessioncache_configure(true, 3600, 4 * CLAIMED);
	for (int i = 0; i < 4; i++)
		pthread_create(&threads[i], NULL, claim_all, &won[i]);
	for (int i = 0; i < 4; i++)
		pthread_join(threads[i], NULL);
	ck_assert_int_eq(won[0] + won[1] + won[2] + won[3], CLAIMED);
}
END_TEST

/* ---------------------------------------------------------------- plugins */

/* An RCPT request of message `instance` from sasl user `user`. */
static const char *rcpt(const struct config *c, const char *user, const char *instance)
{
	struct attribute attr[3] = { { "sasl_username", user, 13, strlen(user) },
				     { "instance", instance, 8, strlen(instance) },
				     { "protocol_state", "RCPT", 14, 4 } };
	struct request req = { attr, 3 };
	static struct session s;

	session_clear(&s);
	return unit_run_chain(config_find_vhost(c, 12346, NULL), &req, &s);
}

#define RATE_PLUGIN "{ name = \"rate\"; module = \"RateLimit\"; field = \"sasl_username\";" \
	" limits = [2, 3600]; action = \"defer 4.7.1 slow down\"; }"

START_TEST(test_ratelimit_counts_a_message_once_however_many_recipients_it_has)
{
	struct config *c = unit_load_plugins(RATE_PLUGIN);

	sessioncache_configure(true, 3600, 1000);
	for (int i = 0; i < 5; i++)
		ck_assert_str_eq(rcpt(c, "ann", "a1.b1.1"), "dunno");
	for (int i = 0; i < 5; i++)
		ck_assert_str_eq(rcpt(c, "ann", "a1.b1.2"), "dunno");
	/* the third message is over [2, 3600] at each of its recipients */
	ck_assert_str_eq(rcpt(c, "ann", "a1.b1.3"), "defer 4.7.1 slow down");
	ck_assert_str_eq(rcpt(c, "ann", "a1.b1.3"), "defer 4.7.1 slow down");
	/* a request without an instance counts on its own */
	ck_assert_str_eq(rcpt(c, "bob", ""), "dunno");
	ck_assert_str_eq(rcpt(c, "bob", ""), "dunno");
	ck_assert_str_eq(rcpt(c, "bob", ""), "defer 4.7.1 slow down");
	config_free(c);
}
END_TEST

START_TEST(test_without_session_cache_every_request_counts)
{
	struct config *c = unit_load_plugins(RATE_PLUGIN);

	sessioncache_configure(false, 3600, 1000);
	ck_assert_str_eq(rcpt(c, "cy", "c1.d1.1"), "dunno");
	ck_assert_str_eq(rcpt(c, "cy", "c1.d1.1"), "dunno");
	ck_assert_str_eq(rcpt(c, "cy", "c1.d1.1"), "defer 4.7.1 slow down");
	config_free(c);
}
END_TEST

START_TEST(test_the_session_cache_group_is_read_with_its_defaults)
{
	struct config *c = unit_load_config("session_cache = { ttl = 600; };\n");

	ck_assert(c->session_cache.enabled);
	ck_assert_int_eq(c->session_cache.ttl, 600);
	ck_assert_int_eq(c->session_cache.max_entries, 100000);
	config_free(c);
	c = unit_load_config("session_cache = { };\n");
	ck_assert(c->session_cache.enabled);
	ck_assert_int_eq(c->session_cache.ttl, 3600);
	config_free(c);
	c = unit_load_config("workers = 2;\n");
	ck_assert(!c->session_cache.enabled);
	config_free(c);
}
END_TEST

static Suite *sessioncache_suite(void)
{
	Suite *s = suite_create("sessioncache");
	TCase *table = tcase_create("table"), *plugins = tcase_create("plugins");

	tcase_add_test(table, test_a_message_is_claimed_once_per_plugin);
	tcase_add_test(table, test_a_mark_lasts_its_ttl_and_no_longer);
	tcase_add_test(table, test_a_full_table_evicts_its_oldest_marks_and_stays_bounded);
	tcase_add_test(table, test_a_reload_keeps_the_marks_and_a_smaller_table_the_newest);
	tcase_add_test(table, test_off_keeps_nothing_and_every_claim_counts);
	tcase_add_test(table, test_workers_claiming_one_message_at_once_count_it_once);
	suite_add_tcase(s, table);
	tcase_add_unchecked_fixture(plugins, counters_init, counters_free_all);
	tcase_add_test(plugins, test_ratelimit_counts_a_message_once_however_many_recipients_it_has);
	tcase_add_test(plugins, test_without_session_cache_every_request_counts);
	tcase_add_test(plugins, test_the_session_cache_group_is_read_with_its_defaults);
	suite_add_tcase(s, plugins);
	return s;
}

int main(void)
{
	return unit_run(sessioncache_suite());
}
