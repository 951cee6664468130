/*
 * check_park.c: parked requests come back exactly once — at the first wake
 * after their ticket, or at their deadline marked expired — and a wake that
 * came between the ticket and the park is never missed.  The resume
 * function stands in for the workers' epoll set.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "clock.h"
#include "park.h"
#include "unit.h"

#define MAX_RESUMED 4096

static struct connection *resumed[MAX_RESUMED];
static atomic_int resumed_count;

static void resume(struct connection *c)
{
	resumed[atomic_fetch_add(&resumed_count, 1)] = c;
}

static void setup(void)
{
	atomic_store(&resumed_count, 0);
	ck_assert_int_eq(park_init(resume), 0);
}

static void teardown(void)
{
	park_free();
}

static int64_t far(void)
{
	return clock_ms() + 60000;
}

START_TEST(test_a_wake_sends_back_what_was_parked_before_it)
{
	struct connection a = { 0 }, b = { 0 };

	ck_assert(park(&a, park_ticket(), far()));
	ck_assert(park(&b, park_ticket(), far()));
	ck_assert_uint_eq(park_count(), 2);
	park_wake();
	ck_assert_int_eq(atomic_load(&resumed_count), 2);
	ck_assert_uint_eq(park_count(), 0);
	ck_assert(!a.wait_expired && !b.wait_expired);
	park_wake();                                  /* nothing comes back twice */
	ck_assert_int_eq(atomic_load(&resumed_count), 2);
}
END_TEST

START_TEST(test_a_wake_between_ticket_and_park_is_not_missed)
{
	struct connection a = { 0 };
	uint64_t ticket = park_ticket();               /* the plugin saw its value missing */

	park_wake();                                   /* the loader filled it meanwhile */
	ck_assert(!park(&a, ticket, far()));           /* so the worker goes on at once */
	ck_assert_uint_eq(park_count(), 0);
	ck_assert_int_eq(atomic_load(&resumed_count), 0);
}
END_TEST

START_TEST(test_past_their_deadline_requests_come_back_expired)
{
	struct connection late = { 0 }, waiting = { 0 };

	ck_assert(park(&late, park_ticket(), clock_ms() - 1));
	ck_assert(park(&waiting, park_ticket(), far()));
	park_expire();
	ck_assert_int_eq(atomic_load(&resumed_count), 1);
	ck_assert_ptr_eq(resumed[0], &late);
	ck_assert(late.wait_expired);
	ck_assert_uint_eq(park_count(), 1);
	park_wake();
	ck_assert_ptr_eq(resumed[1], &waiting);
	ck_assert(!waiting.wait_expired);
}
END_TEST

START_TEST(test_release_all_empties_the_lot_marking_every_request_expired)
{
	struct connection a = { 0 }, b = { 0 };

	park(&a, park_ticket(), far());
	park(&b, park_ticket(), far());
	park_release_all();
	ck_assert_uint_eq(park_count(), 0);
	ck_assert(a.wait_expired && b.wait_expired);
	ck_assert_int_eq(atomic_load(&resumed_count), 0);   /* the main thread answers them */
}
END_TEST

static struct connection racers[MAX_RESUMED];
static atomic_bool racing;

static void *park_many(void *arg)
{
	struct connection *mine = arg;

	for (int i = 0; i < 500; i++) {
		uint64_t ticket = park_ticket();
		if (!park(&mine[i], ticket, far()))
			resume(&mine[i]);             /* served at once: counts as back */
	}
	return NULL;
}

static void *wake_often(void *unused)
{
	(void)unused;
	while (atomic_load(&racing))
		park_wake();
	return NULL;
}

START_TEST(test_concurrent_parks_and_wakes_lose_no_request)
{
	pthread_t parkers[4], waker;

	atomic_store(&racing, true);
	pthread_create(&waker, NULL, wake_often, NULL);
	for (int i = 0; i < 4; i++)
		pthread_create(&parkers[i], NULL, park_many, &racers[i * 500]);
	for (int i = 0; i < 4; i++)
		pthread_join(parkers[i], NULL);
	atomic_store(&racing, false);
	pthread_join(waker, NULL);
	park_wake();                                  /* the last parks */
	ck_assert_int_eq(atomic_load(&resumed_count), 2000);
	ck_assert_uint_eq(park_count(), 0);
}
END_TEST

static Suite *park_suite(void)
{
	Suite *s = suite_create("park");
	TCase *tc = tcase_create("lot");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_a_wake_sends_back_what_was_parked_before_it);
	tcase_add_test(tc, test_a_wake_between_ticket_and_park_is_not_missed);
	tcase_add_test(tc, test_past_their_deadline_requests_come_back_expired);
	tcase_add_test(tc, test_release_all_empties_the_lot_marking_every_request_expired);
	tcase_add_test(tc, test_concurrent_parks_and_wakes_lose_no_request);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(park_suite());
}
