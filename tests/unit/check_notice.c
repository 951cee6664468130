/*
 * check_notice.c: a Quota tells the log once per key and period, however
 * the key is spelled, and at most NOTICE_PER_MINUTE lines a minute
 * (notice.h).
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "notice.h"
#include "unit.h"

START_TEST(test_a_key_is_told_once_per_period_however_it_is_spelled)
{
	struct notice_set *set = notice_new();
	uint64_t left_out = 99;

	ck_assert(notice_first(set, 1, "alice@example.org", 17, &left_out));
	ck_assert_uint_eq(left_out, 0);
	ck_assert(!notice_first(set, 1, "alice@example.org", 17, &left_out));
	ck_assert(!notice_first(set, 1, "Alice@Example.org ", 18, &left_out));
	ck_assert(notice_first(set, 2, "alice@example.org", 17, &left_out));   /* next period */
	ck_assert(notice_first(set, 1, "bob@example.org", 15, &left_out));
	notice_free(set);
}
END_TEST

START_TEST(test_past_the_lines_of_a_minute_first_times_are_left_out)
{
	struct notice_set *set = notice_new();
	uint64_t left_out = 0;
	char key[32];
	int told = 0;

	for (int i = 0; i < NOTICE_PER_MINUTE + 25; i++) {
		int n = snprintf(key, sizeof(key), "192.0.2.%d", i);
		told += notice_first(set, 1, key, (size_t)n, &left_out);
	}
	/* a minute may begin during the loop: then some more are told */
	ck_assert_int_ge(told, NOTICE_PER_MINUTE);
	ck_assert_int_lt(told, NOTICE_PER_MINUTE + 25);
	if (told == NOTICE_PER_MINUTE)
		ck_assert_uint_eq(left_out, 0);    /* counted, for the next line to tell */
	notice_free(set);
}
END_TEST

START_TEST(test_a_full_set_starts_afresh_instead_of_refusing)
{
	struct notice_set *set = notice_new();
	uint64_t left_out = 0;
	char key[32];

	/* far more keys than slots: none is lost to a full table, none told twice in a row */
	for (int i = 0; i < 20000; i++) {
		int n = snprintf(key, sizeof(key), "k%d", i);
		notice_first(set, 1, key, (size_t)n, &left_out);
		ck_assert(!notice_first(set, 1, key, (size_t)n, &left_out));
	}
	notice_free(set);
}
END_TEST

static Suite *notice_suite(void)
{
	Suite *s = suite_create("notice");
	TCase *tc = tcase_create("notice");

	tcase_add_test(tc, test_a_key_is_told_once_per_period_however_it_is_spelled);
	tcase_add_test(tc, test_past_the_lines_of_a_minute_first_times_are_left_out);
	tcase_add_test(tc, test_a_full_set_starts_afresh_instead_of_refusing);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(notice_suite());
}
