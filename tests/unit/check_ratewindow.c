/*
 * check_ratewindow.c: RateLimit's sliding windows (ratewindow.c), its key
 * tables (ratekeys.c), their state file (ratestate.c) and the plugin
 * (plugins/ratelimit.c).  Time is passed in, so every schedule is played
 * exactly.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "config.h"
#include "clock.h"
#include "hash.h"
#include "json.h"
#include "log.h"
#include "ratekeys.h"
#include "ratestate.h"
#include "ratewindow.h"
#include "session.h"
#include "unit.h"

#define SECOND 1000
#define MAX_KEYS 1000

/* One window: -1 (accepted) or 0 (deferred). */
static int offer(struct ratewindow *w, const struct rate_limit *l, int64_t *last, uint64_t amount,
		 int64_t now)
{
	return ratewindow_offer(w, l, 1, last, amount, now);
}

START_TEST(test_a_client_at_its_limit_gets_through_again_as_each_old_message_leaves)
{
	struct rate_limit limit = { 10, 60 };
	struct ratewindow w = { 0 };
	int64_t last = 0;

	/* ten messages one second apart, from t = 1 s */
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(offer(&w, &limit, &last, 1, (1 + i) * SECOND), -1);
	ck_assert_int_eq(offer(&w, &limit, &last, 1, 30 * SECOND), 0);
	/* the message of t = 1 s leaves at 61 s, not at a minute boundary */
	ck_assert_int_eq(offer(&w, &limit, &last, 1, 61 * SECOND - 1), 0);
	ck_assert_int_eq(offer(&w, &limit, &last, 1, 61 * SECOND), -1);
	/* one place freed, one taken: the next waits for the message of t = 2 s */
	ck_assert_int_eq(offer(&w, &limit, &last, 1, 61 * SECOND + 500), 0);
	ck_assert_int_eq(offer(&w, &limit, &last, 1, 62 * SECOND), -1);
	ck_assert_int_eq(offer(&w, &limit, &last, 1, 62 * SECOND), 0);
}
END_TEST

START_TEST(test_a_large_limit_frees_places_in_steps_of_one_slice_at_most)
{
	struct rate_limit limit = { 100, 60 };     /* slices of 10 */
	struct ratewindow w = { 0 };
	int64_t last = 0;

	ck_assert_uint_eq(ratewindow_slice(&limit), 10);
	/* 100 messages, one every 100 ms from t = 1 s */
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(offer(&w, &limit, &last, 1, SECOND + i * 100), -1);
	ck_assert_int_eq(offer(&w, &limit, &last, 1, 20 * SECOND), 0);
	/* at t = 61.0 s + 1 ms the first ten have left: all ten places come
	 * back when the slice's newest message (t = 1.9 s) leaves, at 61.9 s */
	int64_t t = 61 * SECOND + 1;
	int accepted = 0;
	for (; t < 62 * SECOND; t += 10)
		accepted += offer(&w, &limit, &last, 1, t) == -1;
	ck_assert_int_eq(accepted, 10);
	ck_assert_int_eq(offer(&w, &limit, &last, 1, 62 * SECOND), 0);
}
END_TEST

START_TEST(test_a_message_is_deferred_by_the_first_window_it_overflows_and_counted_in_none)
{
	struct rate_limit limits[2] = { { 3, 10 }, { 5, 60 } };
	struct ratewindow w[2] = { 0 };
	int64_t last = 0;

	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(ratewindow_offer(w, limits, 2, &last, 1, (1 + i) * SECOND), -1);
	/* the 10-second window is full; the minute has room */
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(ratewindow_offer(w, limits, 2, &last, 1, 5 * SECOND + i), 0);
	ck_assert_uint_eq(ratewindow_load(&w[1], &limits[1], last, 6 * SECOND), 3);
	/* the 10-second window slides on: two more, then the minute is full */
	ck_assert_int_eq(ratewindow_offer(w, limits, 2, &last, 1, 11 * SECOND), -1);
	ck_assert_int_eq(ratewindow_offer(w, limits, 2, &last, 1, 12 * SECOND), -1);
	ck_assert_int_eq(ratewindow_offer(w, limits, 2, &last, 1, 13 * SECOND + 1), 1);
	ck_assert_uint_eq(ratewindow_load(&w[0], &limits[0], last, 14 * SECOND), 2);
	/* the minute frees its first place at 61 s */
	ck_assert_int_eq(ratewindow_offer(w, limits, 2, &last, 1, 61 * SECOND - 1), 1);
	ck_assert_int_eq(ratewindow_offer(w, limits, 2, &last, 1, 61 * SECOND), -1);
}
END_TEST

START_TEST(test_a_message_larger_than_a_limit_is_always_deferred_and_zero_passes)
{
	struct rate_limit limit = { 1000, 60 };
	struct ratewindow w = { 0 };
	int64_t last = 0;

	ck_assert_int_eq(offer(&w, &limit, &last, 1001, SECOND), 0);
	ck_assert_int_eq(offer(&w, &limit, &last, 1000, SECOND), -1);
	ck_assert_int_eq(offer(&w, &limit, &last, 0, SECOND), -1);
	ck_assert_int_eq(offer(&w, &limit, &last, 1, 2 * SECOND), 0);
}
END_TEST

START_TEST(test_an_idle_key_comes_back_after_a_long_time_with_empty_windows)
{
	struct rate_limit limit = { 5, 60 };
	struct ratewindow w = { 0 };
	int64_t last = 0;

	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(offer(&w, &limit, &last, 1, SECOND), -1);
	/* far beyond 2^16 ticks later: nothing old is mistaken for new */
	int64_t later = SECOND + (int64_t)70000 * 60 * SECOND;
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(offer(&w, &limit, &last, 1, later), -1);
	ck_assert_int_eq(offer(&w, &limit, &last, 1, later), 0);
}
END_TEST

/* ------------------------------------------------------ random schedules */

struct sent {
	int64_t at;
	uint64_t amount;
};

static uint64_t next_random(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}

/* Units the log holds in (now - window, now], and with the window one tick
 * longer (the tick a window rounds its times to). */
static void exact_load(const struct sent *log, size_t n, int64_t window, int64_t tick,
		       int64_t now, uint64_t *inside, uint64_t *inside_with_tick)
{
	*inside = *inside_with_tick = 0;
	for (size_t i = 0; i < n; i++) {
		if (log[i].at > now - window)
			*inside += log[i].amount;
		if ((log[i].at / tick + 1) * tick - 1 > now - window)
			*inside_with_tick += log[i].amount;
	}
}

/* Plays random bursts and pauses against one window and checks, against an
 * exact log, that no span of the window ever holds more than the limit and
 * that a deferral comes at most one slice - 1 units early.  Returns the
 * largest early deferral seen. */
static uint64_t play(uint64_t count, uint32_t seconds, uint64_t max_amount, uint64_t seed,
		     int steps)
{
	struct rate_limit limit = { count, seconds };
	struct ratewindow w = { 0 };
	struct sent *log = calloc((size_t)steps, sizeof(*log));
	size_t n = 0, from = 0;
	int64_t last = 0, now = SECOND, window = (int64_t)seconds * 1000;
	int64_t tick = (window + 64999) / 65000;
	uint64_t k = ratewindow_slice(&limit), worst = 0;

	for (int step = 0; step < steps; step++) {
		uint64_t r = next_random(&seed);
		/* mostly bursts (same ms), sometimes gaps that keep the window
		 * about full, rarely long pauses */
		if (r % 4 == 1)
			now += (int64_t)(r >> 8) % (window * 2 / (int64_t)(count / max_amount + 1) + 1);
		else if ((r >> 40) % (4 * (count / max_amount) + 64) == 0)
			now += (int64_t)(r >> 8) % (2 * window);
		uint64_t amount = 1 + (r >> 20) % max_amount;
		uint64_t inside, inside_with_tick;
		while (from < n && log[from].at + window + tick < now)
			from++;      /* out of every span the checks look at */
		exact_load(log + from, n - from, window, tick, now, &inside, &inside_with_tick);
		if (offer(&w, &limit, &last, amount, now) == -1) {
			log[n++] = (struct sent){ now, amount };
			ck_assert_msg(inside + amount <= count, "%llu in %u s over %llu at %lld",
				      (unsigned long long)(inside + amount), seconds,
				      (unsigned long long)count, (long long)now);
		} else if (amount <= count) {
			/* deferred: the window held more than count - amount - (k - 1) */
			ck_assert_msg(inside_with_tick + amount + k - 1 > count,
				      "deferred with %llu of %llu inside, amount %llu, slice %llu",
				      (unsigned long long)inside_with_tick,
				      (unsigned long long)count, (unsigned long long)amount,
				      (unsigned long long)k);
			uint64_t early = count + 1 - (inside_with_tick + amount);
			if (inside_with_tick + amount <= count && early > worst)
				worst = early;
		}
	}
	free(log);
	return worst;
}

START_TEST(test_no_span_ever_holds_more_than_the_limit_under_random_schedules)
{
	static const uint64_t counts[] = { 1, 2, 5, 10, 11, 19, 37, 100, 999, 1000 };
	static const uint32_t seconds[] = { 1, 60, 3600, 86400 };

	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		for (size_t s = 0; s < sizeof(seconds) / sizeof(seconds[0]); s++) {
			uint64_t worst = play(counts[c], seconds[s], 1, 0x9e3779b97f4a7c15ULL + c * 7 + s,
					      20000);
			uint64_t k = (counts[c] + 9) / 10;
			ck_assert_uint_le(worst, k > 0 ? k - 1 : 0);
			if (s == 1)
				fprintf(stderr, "count %llu per %u s: deferred at most %llu early "
					"(bound %llu)\n", (unsigned long long)counts[c], seconds[s],
					(unsigned long long)worst, (unsigned long long)(k - 1));
		}
	}
}
END_TEST

START_TEST(test_sizes_never_overflow_a_byte_limit_under_random_schedules)
{
	/* size limits: messages of up to a tenth, a third, all of the limit */
	play(10 * 1000 * 1000, 3600, 1000 * 1000, 42, 20000);
	play(10 * 1000 * 1000, 60, 3 * 1000 * 1000, 43, 20000);
	play(1000, 60, 1000, 44, 20000);
}
END_TEST

/* ------------------------------------------------------------- key tables */

static struct rate_limits limits_of(uint64_t count, uint32_t seconds)
{
	struct rate_limits l = { .count = 1 };

	l.limit[0] = (struct rate_limit){ count, seconds };
	rate_limits_sign(&l, 0);
	return l;
}

START_TEST(test_keys_fold_case_and_trailing_spaces_and_new_limits_start_afresh)
{
	struct ratekeys *t = ratekeys_open("fold");
	struct rate_limits two = limits_of(2, 60), three = limits_of(3, 60);

	ck_assert_int_eq(ratekeys_offer(t, "Alice@Example.org", 17, &two, 1, SECOND, MAX_KEYS), -1);
	ck_assert_int_eq(ratekeys_offer(t, "alice@example.org ", 18, &two, 1, SECOND, MAX_KEYS), -1);
	ck_assert_int_eq(ratekeys_offer(t, "ALICE@EXAMPLE.ORG", 17, &two, 1, SECOND, MAX_KEYS), 0);
	ck_assert_int_eq(ratekeys_offer(t, "bob@example.org", 15, &two, 1, SECOND, MAX_KEYS), -1);
	ck_assert_int_eq(ratekeys_offer(t, "alice@example.org", 17, &three, 1, SECOND, MAX_KEYS), -1);
	struct ratekeys_stats st;
	ratekeys_stats(t, &st);
	ck_assert_uint_eq(st.keys, 2);
	ratekeys_close(t);
}
END_TEST

START_TEST(test_a_table_survives_a_reload_that_keeps_the_plugin)
{
	struct ratekeys *old = ratekeys_open("kept");
	struct rate_limits one = limits_of(1, 60);

	ck_assert_int_eq(ratekeys_offer(old, "k", 1, &one, 1, SECOND, MAX_KEYS), -1);
	struct ratekeys *new = ratekeys_open("kept");
	ratekeys_close(old);
	ck_assert_ptr_eq(new, old);
	ck_assert_int_eq(ratekeys_offer(new, "k", 1, &one, 1, 2 * SECOND, MAX_KEYS), 0);
	ratekeys_close(new);
}
END_TEST

START_TEST(test_max_keys_bounds_the_table_and_idle_keys_go_first)
{
	struct ratekeys *t = ratekeys_open("bounded");
	struct rate_limits one = limits_of(1, 60);
	struct ratekeys_stats st;
	char key[32];

	/* 1000 keys within one minute: each shard keeps one, the rest go
	 * while they still have a message inside (counted apart) */
	for (int i = 0; i < 1000; i++) {
		int len = snprintf(key, sizeof(key), "10.0.%d.%d", i / 256, i % 256);
		ck_assert_int_eq(ratekeys_offer(t, key, (size_t)len, &one, 1, SECOND, 64), -1);
	}
	ratekeys_stats(t, &st);
	ck_assert_uint_le(st.keys, 64);
	ck_assert_uint_eq(st.keys + st.evicted_idle + st.evicted_active, 1000);
	ck_assert_uint_gt(st.evicted_active, 0);
	/* two minutes later the old keys are idle: they go without loss */
	uint64_t active = st.evicted_active;
	for (int i = 0; i < 1000; i++) {
		int len = snprintf(key, sizeof(key), "10.1.%d.%d", i / 256, i % 256);
		ratekeys_offer(t, key, (size_t)len, &one, 1, 200 * SECOND + i, 64);
	}
	ratekeys_stats(t, &st);
	ck_assert_uint_le(st.keys, 64);
	ck_assert_uint_ge(st.evicted_idle, 1);
	ck_assert_uint_gt(st.evicted_active, active);
	ratekeys_close(t);
}
END_TEST

struct racer {
	struct ratekeys *table;
	const struct rate_limits *limits;
	int accepted;
};

static void *race(void *arg)
{
	struct racer *r = arg;

	for (int i = 0; i < 5000; i++)
		r->accepted += ratekeys_offer(r->table, "shared", 6, r->limits, 1,
					      SECOND + i / 100, MAX_KEYS) == -1;
	return NULL;
}

START_TEST(test_threads_offering_one_key_never_pass_its_limit_together)
{
	struct ratekeys *t = ratekeys_open("raced");
	struct rate_limits limit = limits_of(100, 60);
	struct racer racers[4];
	pthread_t threads[4];
	int total = 0;

	for (int i = 0; i < 4; i++) {
		racers[i] = (struct racer){ t, &limit, 0 };
		pthread_create(&threads[i], NULL, race, &racers[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(threads[i], NULL);
		total += racers[i].accepted;
	}
	ck_assert_int_eq(total, 100);   /* all within one minute: exactly the limit */
	ratekeys_close(t);
}
END_TEST

/* ------------------------------------------------------------- state file */

#define DAY (86400LL * SECOND)

/* A table "saved" configured with `limits`, as a plugin's setup makes it. */
static struct ratekeys *configured(const struct rate_limits *limits)
{
	struct ratekeys *t = ratekeys_open("saved");

	ratekeys_configure(t, "client_address", limits, MAX_KEYS);
	return t;
}

static int offer_now(struct ratekeys *t, const struct rate_limits *limits)
{
	return ratekeys_offer(t, "192.0.2.1", 9, limits, 1, clock_ms(), MAX_KEYS);
}

/* Saves a table with 192.0.2.1 at its limit of 2 per `seconds`, the rate
 * clock reading `clock`; the table is gone afterwards, as at a stop. */
static void save_at_limit(const char *path, int64_t clock, uint32_t seconds)
{
	struct rate_limits two = limits_of(2, seconds);
	struct ratekeys *t = configured(&two);

	ratekeys_set_clock(clock);
	ck_assert_int_eq(offer_now(t, &two), -1);
	ck_assert_int_eq(offer_now(t, &two), -1);
	ck_assert_int_eq(offer_now(t, &two), 0);
	ck_assert_int_eq(ratestate_save(path, false), 0);
	ratekeys_close(t);
}

static uint64_t restored(struct ratekeys *t)
{
	struct ratekeys_stats st;

	ratekeys_stats(t, &st);
	return st.restored;
}

START_TEST(test_saved_windows_go_on_when_the_monotonic_clock_starts_elsewhere)
{
	char path[] = "/tmp/check_ratestate_XXXXXX";
	struct rate_limits two = limits_of(2, 3600);

	close(mkstemp(path));
	save_at_limit(path, 1000 * SECOND, 3600);
	/* another boot: the monotonic clock reads a year more; loading sets
	 * the rate clock back to the saved one, and the key is still full */
	ratekeys_set_clock(365 * DAY);
	struct ratekeys *t = configured(&two);
	ratestate_load(path);
	ck_assert_uint_eq(restored(t), 1);
	ck_assert_int_eq(offer_now(t, &two), 0);
	ck_assert_int_eq(ratekeys_offer(t, "192.0.2.2", 9, &two, 1, clock_ms(), MAX_KEYS), -1);
	ratekeys_close(t);
	unlink(path);
}
END_TEST

/* Moves the file's save time `ms` into the past, with a checksum to match. */
static void age_file(const char *path, int64_t ms)
{
	FILE *f = fopen(path, "r+b");
	char data[4096];
	size_t len = fread(data, 1, sizeof(data), f);
	int64_t wall;

	ck_assert_uint_gt(len, 48);
	memcpy(&wall, data + 40, 8);
	wall -= ms;
	memcpy(data + 40, &wall, 8);
	uint64_t hash = hash_bytes(HASH_SEED, data + 32, len - 32);
	memcpy(data + 24, &hash, 8);
	rewind(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

START_TEST(test_a_key_whose_windows_emptied_while_stopped_is_not_restored)
{
	char path[] = "/tmp/check_ratestate_XXXXXX";
	struct rate_limits two = limits_of(2, 60);

	close(mkstemp(path));
	save_at_limit(path, 1000 * SECOND, 60);
	age_file(path, 55 * SECOND);           /* stopped 55 s: the window still holds it */
	struct ratekeys *t = configured(&two);
	ratestate_load(path);
	ck_assert_uint_eq(restored(t), 1);
	ck_assert_int_eq(offer_now(t, &two), 0);
	ratekeys_close(t);

	save_at_limit(path, 1000 * SECOND, 60);
	age_file(path, 61 * SECOND);           /* 61 s: empty */
	t = configured(&two);
	ratestate_load(path);
	ck_assert_uint_eq(restored(t), 0);
	ck_assert_int_eq(offer_now(t, &two), -1);
	ratekeys_close(t);
	unlink(path);
}
END_TEST

START_TEST(test_a_damaged_state_file_is_set_aside_and_nothing_is_restored)
{
	char path[] = "/tmp/check_ratestate_XXXXXX";
	struct rate_limits two = limits_of(2, 3600);

	close(mkstemp(path));
	save_at_limit(path, 1000 * SECOND, 3600);
	FILE *f = fopen(path, "r+b");
	fseek(f, 60, SEEK_SET);
	fputc('!', f);                          /* one byte of the payload */
	fclose(f);
	struct ratekeys *t = configured(&two);
	ratestate_load(path);
	ck_assert_uint_eq(restored(t), 0);
	ck_assert_int_eq(access(path, F_OK), -1);
	char *aside = xasprintf("%s.damaged", path);
	ck_assert_int_eq(access(aside, F_OK), 0);
	ratekeys_close(t);
	unlink(aside);
	free(aside);
}
END_TEST

/* ---------------------------------------------------------------- plugin */

static const char *run(const struct config *c, const char *user, const char *json)
{
	struct attribute attr[2] = { { "sasl_username", user, 13, strlen(user) },
				     { "recipient_count", "3", 15, 1 } };
	struct request req = { attr, 2 };
	static struct session s;
	char error[128];

	session_clear(&s);
	if (json)
		ck_assert_int_eq(json_parse_object(json, strlen(json), &s, error, sizeof(error)), 0);
	return unit_run_chain(config_find_vhost(c, 12346, NULL), &req, &s);
}

START_TEST(test_the_plugin_names_the_window_and_takes_limits_from_a_json_array)
{
	struct config *c = unit_load_plugins("{ name = \"rate\"; module = \"RateLimit\"; field = \"sasl_username\";"
				" limits = ( [2, 3600], [1, 60] ); uc_limits = \"limits\"; }");

	ck_assert_str_eq(run(c, "ann", NULL), "dunno");
	ck_assert_str_eq(run(c, "ann", NULL),
			 "defer 4.7.1 rate limit exceeded: 1 messages in 60 seconds");
	/* from SQL: a JSON array, or a string holding one */
	const char *mine = "{\"limits\": [[3, 3600], [ 2 , 60 ]]}";
	ck_assert_str_eq(run(c, "bob", mine), "dunno");
	ck_assert_str_eq(run(c, "bob", mine), "dunno");
	ck_assert_str_eq(run(c, "bob", mine),
			 "defer 4.7.1 rate limit exceeded: 2 messages in 60 seconds");
	const char *text = "{\"limits\": \"[[1, 10]]\"}";
	ck_assert_str_eq(run(c, "cy", text), "dunno");
	ck_assert_str_eq(run(c, "cy", text),
			 "defer 4.7.1 rate limit exceeded: 1 messages in 10 seconds");
	/* unusable: the configured limits */
	const char *bad = "{\"limits\": [[0, 60]]}";
	ck_assert_str_eq(run(c, "dee", bad), "dunno");
	ck_assert_str_eq(run(c, "dee", bad),
			 "defer 4.7.1 rate limit exceeded: 1 messages in 60 seconds");
	config_free(c);
}
END_TEST

START_TEST(test_the_plugin_counts_recipients_and_takes_overrides)
{
	struct config *c = unit_load_plugins("{ name = \"rcpt\"; module = \"RateLimit\"; field = \"sasl_username\";"
				" metric = \"count_rcpt\"; limits = [7, 60]; uc_action = \"say\";"
				" uc_enabled = \"on\"; }");

	ck_assert_str_eq(run(c, "eve", NULL), "dunno");   /* 3 */
	ck_assert_str_eq(run(c, "eve", NULL), "dunno");   /* 6 */
	ck_assert_str_eq(run(c, "eve", NULL),
			 "defer 4.7.1 rate limit exceeded: 7 recipients in 60 seconds");
	ck_assert_str_eq(run(c, "eve", "{\"say\": \"defer slow down\"}"), "defer slow down");
	ck_assert_str_eq(run(c, "eve", "{\"on\": \"off\"}"), "dunno");
	ck_assert_str_eq(run(c, "", NULL), "dunno");
	config_free(c);
}
END_TEST

static Suite *ratewindow_suite(void)
{
	Suite *s = suite_create("ratewindow");
	TCase *window = tcase_create("window"), *keys = tcase_create("keys");
	TCase *plugin = tcase_create("plugin");

	tcase_set_timeout(window, 60);
	tcase_add_test(window, test_a_client_at_its_limit_gets_through_again_as_each_old_message_leaves);
	tcase_add_test(window, test_a_large_limit_frees_places_in_steps_of_one_slice_at_most);
	tcase_add_test(window,
		       test_a_message_is_deferred_by_the_first_window_it_overflows_and_counted_in_none);
	tcase_add_test(window, test_a_message_larger_than_a_limit_is_always_deferred_and_zero_passes);
	tcase_add_test(window, test_an_idle_key_comes_back_after_a_long_time_with_empty_windows);
	tcase_add_test(window, test_no_span_ever_holds_more_than_the_limit_under_random_schedules);
	tcase_add_test(window, test_sizes_never_overflow_a_byte_limit_under_random_schedules);
	suite_add_tcase(s, window);
	tcase_add_test(keys, test_keys_fold_case_and_trailing_spaces_and_new_limits_start_afresh);
	tcase_add_test(keys, test_a_table_survives_a_reload_that_keeps_the_plugin);
	tcase_add_test(keys, test_max_keys_bounds_the_table_and_idle_keys_go_first);
	tcase_add_test(keys, test_threads_offering_one_key_never_pass_its_limit_together);
	tcase_add_test(keys, test_saved_windows_go_on_when_the_monotonic_clock_starts_elsewhere);
	tcase_add_test(keys, test_a_key_whose_windows_emptied_while_stopped_is_not_restored);
	tcase_add_test(keys, test_a_damaged_state_file_is_set_aside_and_nothing_is_restored);
	suite_add_tcase(s, keys);
	tcase_add_unchecked_fixture(plugin, counters_init, counters_free_all);
	tcase_add_test(plugin, test_the_plugin_names_the_window_and_takes_limits_from_a_json_array);
	tcase_add_test(plugin, test_the_plugin_counts_recipients_and_takes_overrides);
	suite_add_tcase(s, plugin);
	return s;
}

int main(void)
{
	return unit_run(ratewindow_suite());
}
