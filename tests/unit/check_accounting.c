/*
 * check_accounting.c: the accounting semantics of DESIGN.md section 4 —
 * metric arithmetic, time keys, JSON user configs, and the Quota and
 * Accounting plugins in a chain over the counter cache (with a fake
 * database that holds no rows), including the uc_ overrides.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "config.h"
#include "counters.h"
#include "tables.h"
#include "json.h"
#include "metrics.h"
#include "session.h"
#include "timekey.h"
#include "unit.h"

/* A request from "name=value" strings. */
struct test_request {
	struct attribute attrs[16];
	struct request req;
};

static void make_request(struct test_request *t, const char *const *pairs)
{
	t->req.attrs = t->attrs;
	t->req.count = 0;
	for (size_t i = 0; pairs[i]; i++) {
		const char *eq = strchr(pairs[i], '=');
		struct attribute *a = &t->attrs[t->req.count++];
		a->name = pairs[i];
		a->name_len = (size_t)(eq - pairs[i]);
		a->value = eq + 1;
		a->value_len = strlen(eq + 1);
	}
}

static struct metric_values metrics_of(const char *const *pairs)
{
	struct test_request t;
	struct metric_values m;

	make_request(&t, pairs);
	metrics_of_request(&t.req, &m);
	return m;
}

/* ---------------------------------------------------------------- metrics */

START_TEST(test_metrics_with_three_recipients_and_size_1000)
{
	const char *pairs[] = { "recipient_count=3", "size=1000", NULL };
	struct metric_values m = metrics_of(pairs);

	ck_assert_uint_eq(m.v[METRIC_COUNT], 1);
	ck_assert_uint_eq(m.v[METRIC_COUNT_RCPT], 3);
	ck_assert_uint_eq(m.v[METRIC_SIZE], 1000);
	ck_assert_uint_eq(m.v[METRIC_SIZE_RCPT], 3000);
}
END_TEST

START_TEST(test_metrics_without_recipient_count_and_size)
{
	const char *pairs[] = { "client_address=192.0.2.1", NULL };
	struct metric_values m = metrics_of(pairs);

	ck_assert_uint_eq(m.v[METRIC_COUNT], 1);
	ck_assert_uint_eq(m.v[METRIC_COUNT_RCPT], 1);
	ck_assert_uint_eq(m.v[METRIC_SIZE], 0);
	ck_assert_uint_eq(m.v[METRIC_SIZE_RCPT], 0);
}
END_TEST

START_TEST(test_metrics_recipient_count_zero_or_empty_counts_as_one)
{
	const char *zero[] = { "recipient_count=0", "size=500", NULL };
	const char *empty[] = { "recipient_count=", "size=500", NULL };
	struct metric_values m = metrics_of(zero), e = metrics_of(empty);

	ck_assert_uint_eq(m.v[METRIC_COUNT_RCPT], 1);
	ck_assert_uint_eq(m.v[METRIC_SIZE_RCPT], 500);
	ck_assert_uint_eq(e.v[METRIC_COUNT_RCPT], 1);
	ck_assert_uint_eq(e.v[METRIC_SIZE_RCPT], 500);
}
END_TEST

START_TEST(test_metrics_read_numbers_like_perl)
{
	const char *pairs[] = { "recipient_count=2x", "size=abc", NULL };
	struct metric_values m = metrics_of(pairs);

	ck_assert_uint_eq(m.v[METRIC_COUNT_RCPT], 2);
	ck_assert_uint_eq(m.v[METRIC_SIZE], 0);
}
END_TEST

START_TEST(test_metrics_saturate_instead_of_wrapping)
{
	const char *pairs[] = { "recipient_count=99999999999", "size=99999999999999999999999",
				NULL };
	struct metric_values m = metrics_of(pairs), sum = m;

	ck_assert_uint_eq(m.v[METRIC_SIZE], UINT64_MAX);
	ck_assert_uint_eq(m.v[METRIC_SIZE_RCPT], UINT64_MAX);
	metrics_add(&sum, &m);
	ck_assert_uint_eq(sum.v[METRIC_SIZE], UINT64_MAX);
}
END_TEST

START_TEST(test_metrics_saturate_exactly_at_the_largest_number)
{
	const char *below[] = { "size=18446744073709551614", NULL };
	const char *at[] = { "size=18446744073709551615", NULL };
	const char *above[] = { "size=18446744073709551616", NULL };

	ck_assert_uint_eq(metrics_of(below).v[METRIC_SIZE], UINT64_MAX - 1);
	ck_assert_uint_eq(metrics_of(at).v[METRIC_SIZE], UINT64_MAX);
	ck_assert_uint_eq(metrics_of(above).v[METRIC_SIZE], UINT64_MAX);
}
END_TEST

START_TEST(test_metrics_take_the_first_of_repeated_attributes)
{
	const char *pairs[] = { "sizes=7", "size=10", "recipient_count=2", "size=20",
				"recipient_count=5", "recipient_counts=9", NULL };
	struct metric_values m = metrics_of(pairs);

	ck_assert_uint_eq(m.v[METRIC_COUNT_RCPT], 2);
	ck_assert_uint_eq(m.v[METRIC_SIZE], 10);
	ck_assert_uint_eq(m.v[METRIC_SIZE_RCPT], 20);
}
END_TEST

START_TEST(test_metric_names)
{
	ck_assert_int_eq(metric_parse("count"), METRIC_COUNT);
	ck_assert_int_eq(metric_parse("size_rcpt"), METRIC_SIZE_RCPT);
	ck_assert_int_eq(metric_parse("Count"), -1);
	ck_assert(!metric_is_valid("bytes"));
}
END_TEST

/* --------------------------------------------------------------- time keys */

START_TEST(test_time_key_is_local_strftime)
{
	size_t len;

	setenv("TZ", "UTC", 1);
	tzset();
	const char *key = timekey_format("%Y-%m", 1795000000, &len);   /* 2026-11-18 */
	ck_assert_str_eq(key, "2026-11");
	ck_assert_uint_eq(len, 7);
	ck_assert_str_eq(timekey_format("%Y-%m-%d", 1795000000, &len), "2026-11-18");
	setenv("TZ", "Pacific/Kiritimati", 1);   /* UTC+14: already the 19th */
	tzset();
	ck_assert_str_eq(timekey_format("%Y-%m-%d", 1795000000, &len), "2026-11-19");
}
END_TEST

START_TEST(test_time_key_too_long_or_empty_is_refused)
{
	char pattern[300];
	size_t len;

	memset(pattern, 'x', 299);
	pattern[299] = '\0';
	timekey_format(pattern, 1795000000, &len);
	ck_assert_uint_eq(len, 0);
	ck_assert(!timekey_pattern_is_valid(pattern));
	ck_assert(!timekey_pattern_is_valid(""));
	ck_assert(timekey_pattern_is_valid("%Y-%W"));
}
END_TEST

START_TEST(test_time_key_cache_follows_the_pattern)
{
	size_t a_len, b_len;
	char a[64];

	strcpy(a, timekey_now("%Y", &a_len));
	const char *b = timekey_now("%Y-%m", &b_len);
	ck_assert_uint_eq(a_len, 4);
	ck_assert_uint_eq(b_len, 7);
	ck_assert(strncmp(a, b, 4) == 0);
}
END_TEST

/* -------------------------------------------------------------------- JSON */

static int parse(const char *text, struct session *s)
{
	char error[256];

	session_init(s);
	return json_parse_object(text, strlen(text), s, error, sizeof(error));
}

START_TEST(test_json_strings_and_numbers_become_session_values)
{
	struct session s;
	struct session_view v;

	ck_assert_int_eq(parse("{\"quota_count\":\"10000\",\"n\":10000,\"big\":"
			       "123456789012345678901234567890,\"f\":1.5e3}", &s), 0);
	ck_assert(session_get(&s, "quota_count", &v));
	ck_assert_int_eq(v.kind, SESSION_STRING);
	ck_assert_str_eq(v.text, "10000");
	ck_assert(session_get(&s, "n", &v));
	ck_assert_int_eq(v.kind, SESSION_NUMBER);
	ck_assert_int_eq(session_uc_number(&s, "n", 5, "t"), 10000);
	ck_assert_int_eq(session_uc_number(&s, "big", 5, "t"), INT64_MAX);
	ck_assert_int_eq(session_uc_number(&s, "f", 5, "t"), 1500);
	session_free(&s);
}
END_TEST

START_TEST(test_json_booleans_null_and_nesting)
{
	struct session s;
	struct session_view v;

	ck_assert_int_eq(parse("{\"on\":true,\"off\":false,\"none\":null,\"o\":{\"a\":1},"
			       "\"l\":[1,2]}", &s), 0);
	ck_assert(session_get(&s, "o", &v));
	ck_assert_int_eq(v.kind, SESSION_OTHER);
	ck_assert(session_uc_switch(&s, "off", false));           /* JSON false: not "off" */
	ck_assert(session_uc_switch(&s, "on", false));
	ck_assert(session_uc_switch(&s, "none", true));           /* null: not set */
	ck_assert_int_eq(session_uc_number(&s, "none", 77, "t"), 77);
	ck_assert_int_eq(session_uc_number(&s, "l", 77, "t"), 77);
	session_free(&s);
}
END_TEST

START_TEST(test_json_that_is_not_an_object_is_refused)
{
	struct session s;
	const char *bad[] = { "", "{", "{\"a\":}", "[1,2]", "\"x\"", "42", "null",
			      "{\"a\":1} trailing", NULL };

	for (int i = 0; bad[i]; i++) {
		ck_assert_msg(parse(bad[i], &s) == -1, "accepted: %s", bad[i]);
		ck_assert_uint_eq(s.count, 0);
		session_free(&s);
	}
}
END_TEST

START_TEST(test_json_with_nul_byte_is_refused)
{
	struct session s;
	char error[128];

	session_init(&s);
	ck_assert_int_eq(json_parse_object("{\"a\":\"b\"}\0x", 11, &s, error, sizeof(error)), -1);
	session_free(&s);
}
END_TEST

/* ------------------------------------------------- plugins in a chain */

static struct config *config;
static const struct vhost *vhost;

static void load_chain(const char *plugins)
{
	config_free(config);           /* a test may load a second chain */
	config = unit_load_plugins(plugins);
	vhost = config_find_vhost(config, 12346, NULL);
}

#define HOWTO_QUOTA "{ name = \"QuotaIP\"; module = \"Quota\"; field = \"client_address\"; " \
	"metric = \"count\"; threshold = 3; uc_threshold = \"quota_count\"; " \
	"uc_enabled = \"quota\"; uc_action = \"quota_action\"; uc_metric = \"quota_metric\"; " \
	"uc_field = \"quota_field\"; " \
	"action = \"defer you exceeded your monthly limit, please insert coin\"; }"
#define HOWTO_ACCOUNTING "{ name = \"AcctIP\"; module = \"Accounting\"; " \
	"fields = \"client_address, sasl_username\"; uc_enabled = \"accounting\"; }"

static void setup_chain(void)
{
	counters_init();
	load_chain(HOWTO_QUOTA ", " HOWTO_ACCOUNTING);
}

static void teardown_chain(void)
{
	config_free(config);
	config = NULL;
	counters_free_all();
	tables_free_all();
}

/* Sends one request from `ip` with the session values in `uc` ("k=v" pairs,
 * strings) and returns the answer. */
static const char *send_as(const char *ip, const char *sasl, const char *const *uc,
			   struct session *s)
{
	char client[512], user[64];
	struct test_request t;

	snprintf(client, sizeof(client), "client_address=%s", ip);
	snprintf(user, sizeof(user), "sasl_username=%s", sasl ? sasl : "");
	const char *pairs[] = { "request=smtpd_access_policy", client, user,
				"recipient_count=2", "size=100", NULL };
	make_request(&t, pairs);
	session_clear(s);
	for (size_t i = 0; uc && uc[i]; i++) {
		const char *eq = strchr(uc[i], '=');
		session_set(s, uc[i], (size_t)(eq - uc[i]), SESSION_STRING, eq + 1, strlen(eq + 1));
	}
	return unit_run_chain(vhost, &t.req, s);
}

static uint64_t counted(const char *table_name, const char *key, enum metric m)
{
	struct metric_values t;
	int period = periods_now(tables_register(table_name), "%Y-%m");
	uint64_t ticket;

	if (counters_total(period, key, strlen(key), true, &t, &ticket) == LOOKUP_WAIT) {
		unit_answer_queue_with_no_rows();
		counters_total(period, key, strlen(key), true, &t, &ticket);
	}
	return t.v[m];
}

START_TEST(test_quota_defers_once_count_reaches_threshold_and_stops_counting)
{
	struct session s;

	session_init(&s);
	for (int i = 0; i < 3; i++)
		ck_assert_str_eq(send_as("192.0.2.1", NULL, NULL, &s), "dunno");
	ck_assert_str_eq(send_as("192.0.2.1", NULL, NULL, &s),
			 "defer you exceeded your monthly limit, please insert coin");
	ck_assert_str_eq(send_as("192.0.2.1", NULL, NULL, &s),
			 "defer you exceeded your monthly limit, please insert coin");
	ck_assert_uint_eq(counted("acct_client_address", "192.0.2.1", METRIC_COUNT), 3);
	ck_assert_uint_eq(counted("acct_client_address", "192.0.2.1", METRIC_SIZE_RCPT), 600);
	session_free(&s);
}
END_TEST

START_TEST(test_accounting_skips_blank_fields)
{
	struct session s;

	session_init(&s);
	send_as("192.0.2.2", " ", NULL, &s);
	send_as("192.0.2.2", "alice", NULL, &s);
	ck_assert_uint_eq(counted("acct_client_address", "192.0.2.2", METRIC_COUNT), 2);
	ck_assert_uint_eq(counted("acct_sasl_username", "alice", METRIC_COUNT), 1);
	ck_assert_uint_eq(counted("acct_sasl_username", " ", METRIC_COUNT), 0);
	session_free(&s);
}
END_TEST

START_TEST(test_blank_quota_field_skips_the_check)
{
	struct session s;
	const char *uc[] = { "quota_threshold_unused=1", NULL };

	session_init(&s);
	load_chain(HOWTO_QUOTA);
	ck_assert_str_eq(send_as("", NULL, uc, &s), "dunno");
	session_free(&s);
}
END_TEST

START_TEST(test_uc_threshold_replaces_threshold_as_string_or_number)
{
	struct session s;
	const char *five[] = { "quota_count=5", NULL };

	session_init(&s);
	for (int i = 0; i < 5; i++)
		ck_assert_str_eq(send_as("192.0.2.3", NULL, five, &s), "dunno");
	ck_assert_str_ne(send_as("192.0.2.3", NULL, five, &s), "dunno");

	session_clear(&s);
	session_set(&s, "quota_count", 11, SESSION_NUMBER, "7", 1);
	struct test_request t;
	const char *pairs[] = { "client_address=192.0.2.3", NULL };
	make_request(&t, pairs);
	ck_assert_str_eq(unit_run_chain(vhost, &t.req, &s), "dunno");    /* 5 < 7 */
	session_free(&s);
}
END_TEST

START_TEST(test_uc_threshold_zero_or_negative_defers_everything)
{
	struct session s;
	const char *zero[] = { "quota_count=0", NULL }, *negative[] = { "quota_count=-1", NULL };

	session_init(&s);
	ck_assert_str_ne(send_as("192.0.2.4", NULL, zero, &s), "dunno");
	ck_assert_str_ne(send_as("192.0.2.5", NULL, negative, &s), "dunno");
	ck_assert_uint_eq(counted("acct_client_address", "192.0.2.4", METRIC_COUNT), 0);
	session_free(&s);
}
END_TEST

START_TEST(test_non_numeric_uc_threshold_uses_configured_value)
{
	struct session s;
	const char *words[] = { "quota_count=lots", NULL };

	session_init(&s);
	for (int i = 0; i < 3; i++)
		ck_assert_str_eq(send_as("192.0.2.6", NULL, words, &s), "dunno");
	ck_assert_str_ne(send_as("192.0.2.6", NULL, words, &s), "dunno");
	session_free(&s);
}
END_TEST

START_TEST(test_uc_action_replaces_action_unless_empty)
{
	struct session s;
	const char *custom[] = { "quota_count=0", "quota_action=reject 5.7.1 over quota", NULL };
	const char *empty[] = { "quota_count=0", "quota_action=", NULL };

	session_init(&s);
	ck_assert_str_eq(send_as("192.0.2.7", NULL, custom, &s), "reject 5.7.1 over quota");
	ck_assert_str_eq(send_as("192.0.2.7", NULL, empty, &s),
			 "defer you exceeded your monthly limit, please insert coin");
	session_free(&s);
}
END_TEST

START_TEST(test_uc_enabled_off_switches_plugins_off)
{
	struct session s;
	const char *off[] = { "quota=off", "quota_count=0", "accounting=off", NULL };

	session_init(&s);
	ck_assert_str_eq(send_as("192.0.2.8", NULL, off, &s), "dunno");
	ck_assert_uint_eq(counted("acct_client_address", "192.0.2.8", METRIC_COUNT), 0);
	session_clear(&s);
	/* a JSON false leaves it on, as in mtpolicyd */
	session_set(&s, "quota", 5, SESSION_FALSE, "", 0);
	session_set(&s, "quota_count", 11, SESSION_STRING, "0", 1);
	struct test_request t;
	const char *pairs[] = { "client_address=192.0.2.8", NULL };
	make_request(&t, pairs);
	ck_assert_str_eq(unit_run_chain(vhost, &t.req, &s),
			 "defer you exceeded your monthly limit, please insert coin");
	session_free(&s);
}
END_TEST

START_TEST(test_uc_metric_and_field_switch_what_is_compared)
{
	struct session s;
	/* size_rcpt is 200 per message: the second message sees 200 >= 150 */
	const char *by_size[] = { "quota_metric=size_rcpt", "quota_count=150", NULL };
	const char *bad_metric[] = { "quota_metric=bytes", "quota_count=1", NULL };
	const char *by_user[] = { "quota_field=sasl_username", "quota_count=1", NULL };

	session_init(&s);
	ck_assert_str_eq(send_as("192.0.2.9", NULL, by_size, &s), "dunno");
	ck_assert_str_ne(send_as("192.0.2.9", NULL, by_size, &s), "dunno");
	/* an unknown metric falls back to count: 2 >= 1 */
	ck_assert_str_ne(send_as("192.0.2.9", NULL, bad_metric, &s), "dunno");
	/* by sasl_username: bob has sent nothing yet */
	ck_assert_str_eq(send_as("192.0.2.9", "bob", by_user, &s), "dunno");
	ck_assert_str_ne(send_as("192.0.2.10", "bob", by_user, &s), "dunno");
	session_free(&s);
}
END_TEST

START_TEST(test_overlong_keys_are_counted_apart_under_their_long_form)
{
	struct session s;
	char one[300], other[300], buf[ACCOUNTING_VALUE_MAX];

	memset(one, '1', 299);
	one[299] = '\0';
	memcpy(other, one, sizeof(one));
	other[298] = '2';                              /* the same first 222 bytes */
	session_init(&s);
	ck_assert_str_eq(send_as(one, NULL, NULL, &s), "dunno");
	ck_assert_str_eq(send_as(one, NULL, NULL, &s), "dunno");
	ck_assert_str_eq(send_as(other, NULL, NULL, &s), "dunno");
	size_t len = 299;
	const char *key = accounting_key(one, &len, buf);
	ck_assert_uint_eq(len, ACCOUNTING_VALUE_MAX);
	ck_assert_int_eq(key[222], '\n');
	char stored[ACCOUNTING_VALUE_MAX + 1];
	memcpy(stored, key, len);
	stored[len] = '\0';
	ck_assert_uint_eq(counted("acct_client_address", stored, METRIC_COUNT), 2);
	len = 299;
	key = accounting_key(other, &len, buf);
	memcpy(stored, key, len);
	ck_assert_uint_eq(counted("acct_client_address", stored, METRIC_COUNT), 1);
	session_free(&s);
}
END_TEST

static Suite *accounting_suite(void)
{
	Suite *s = suite_create("accounting");
	TCase *arithmetic = tcase_create("arithmetic");
	TCase *chain = tcase_create("chain");

	tcase_add_test(arithmetic, test_metrics_with_three_recipients_and_size_1000);
	tcase_add_test(arithmetic, test_metrics_without_recipient_count_and_size);
	tcase_add_test(arithmetic, test_metrics_recipient_count_zero_or_empty_counts_as_one);
	tcase_add_test(arithmetic, test_metrics_read_numbers_like_perl);
	tcase_add_test(arithmetic, test_metrics_saturate_instead_of_wrapping);
	tcase_add_test(arithmetic, test_metrics_saturate_exactly_at_the_largest_number);
	tcase_add_test(arithmetic, test_metrics_take_the_first_of_repeated_attributes);
	tcase_add_test(arithmetic, test_metric_names);
	tcase_add_test(arithmetic, test_time_key_is_local_strftime);
	tcase_add_test(arithmetic, test_time_key_too_long_or_empty_is_refused);
	tcase_add_test(arithmetic, test_time_key_cache_follows_the_pattern);
	tcase_add_test(arithmetic, test_json_strings_and_numbers_become_session_values);
	tcase_add_test(arithmetic, test_json_booleans_null_and_nesting);
	tcase_add_test(arithmetic, test_json_that_is_not_an_object_is_refused);
	tcase_add_test(arithmetic, test_json_with_nul_byte_is_refused);
	suite_add_tcase(s, arithmetic);

	tcase_add_checked_fixture(chain, setup_chain, teardown_chain);
	tcase_add_test(chain, test_quota_defers_once_count_reaches_threshold_and_stops_counting);
	tcase_add_test(chain, test_accounting_skips_blank_fields);
	tcase_add_test(chain, test_blank_quota_field_skips_the_check);
	tcase_add_test(chain, test_uc_threshold_replaces_threshold_as_string_or_number);
	tcase_add_test(chain, test_uc_threshold_zero_or_negative_defers_everything);
	tcase_add_test(chain, test_non_numeric_uc_threshold_uses_configured_value);
	tcase_add_test(chain, test_uc_action_replaces_action_unless_empty);
	tcase_add_test(chain, test_uc_enabled_off_switches_plugins_off);
	tcase_add_test(chain, test_uc_metric_and_field_switch_what_is_compared);
	tcase_add_test(chain, test_overlong_keys_are_counted_apart_under_their_long_form);
	suite_add_tcase(s, chain);
	return s;
}

int main(void)
{
	return unit_run(accounting_suite());
}
