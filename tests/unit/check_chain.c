/*
 * check_chain.c: the plugin chain (first answer wins, no answer is dunno,
 * module names without case, an exempt client skips a plugin) and the
 * session's uc_ override rules.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "config.h"
#include "counters.h"
#include "session.h"
#include "unit.h"

static struct config *load(const char *plugins)
{
	char text[4096];

	snprintf(text, sizeof(text), "listen = \"127.0.0.1:12346,unix:/tmp/check_chain.sock\";\n"
		 "virtual_hosts = ( { port = 12346; plugins = ( %s ); },\n"
		 "  { socket = \"/tmp/check_chain.sock\"; plugins = ( { name = \"s\"; "
		 "module = \"Action\"; action = \"OK from the socket\"; } ); } );\n", plugins);
	return unit_load_config(text);
}

static const char *run(const struct vhost *vhost)
{
	struct attribute attr = { "request", "x", 7, 1 };
	struct request req = { &attr, 1 };
	static struct session s;

	session_clear(&s);
	return unit_run_chain(vhost, &req, &s);
}

START_TEST(test_first_plugin_that_answers_ends_the_chain)
{
	struct config *c = load("{ name = \"first\"; module = \"Action\"; action = \"reject first\"; },"
				"{ name = \"second\"; module = \"Action\"; action = \"ok second\"; }");

	ck_assert_str_eq(run(config_find_vhost(c, 12346, NULL)), "reject first");
	config_free(c);
}
END_TEST

START_TEST(test_chain_without_answer_says_dunno)
{
	struct config *c = load("{ name = \"acct\"; module = \"Accounting\"; fields = \"sender\"; }");

	ck_assert_str_eq(run(config_find_vhost(c, 12346, NULL)), "dunno");
	ck_assert_str_eq(run(NULL), "dunno");
	config_free(c);
}
END_TEST

START_TEST(test_module_names_match_without_case)
{
	struct config *c = load("{ name = \"a\"; module = \"action\"; action = \"hold\"; }");

	ck_assert_str_eq(run(config_find_vhost(c, 12346, NULL)), "hold");
	config_free(c);
	c = load("{ name = \"a\"; module = \"ACTION\"; action = \"hold\"; }");
	ck_assert_str_eq(run(config_find_vhost(c, 12346, NULL)), "hold");
	config_free(c);
}
END_TEST

START_TEST(test_virtual_hosts_are_chosen_by_port_or_socket)
{
	struct config *c = load("{ name = \"a\"; module = \"Action\"; action = \"OK from 12346\"; }");

	ck_assert_str_eq(run(config_find_vhost(c, 12346, NULL)), "OK from 12346");
	ck_assert_str_eq(run(config_find_vhost(c, 0, "/tmp/check_chain.sock")),
			 "OK from the socket");
	ck_assert_ptr_null(config_find_vhost(c, 12345, NULL));
	config_free(c);
}
END_TEST

/* ---------------------------------------------------------------- session */

static void set(struct session *s, const char *name, enum session_kind kind, const char *text)
{
	session_set(s, name, strlen(name), kind, text, strlen(text));
}

/* Runs a request from `client_address` through the vhost on port 12346. */
static const char *run_from(const struct config *c, const char *client_address)
{
	struct attribute attr = { "client_address", client_address, 14, strlen(client_address) };
	struct request req = { &attr, 1 };
	static struct session s;

	session_clear(&s);
	return unit_run_chain(config_find_vhost(c, 12346, NULL), &req, &s);
}

START_TEST(test_an_exempt_client_skips_the_plugin_and_the_others_do_not)
{
	struct config *c = load("{ name = \"rate\"; module = \"RateLimit\"; field = "
				"\"client_address\"; limits = [1, 3600]; action = \"defer rate\";\n"
				"  exempt = \"192.0.2.0/24, ::1\"; }");

	for (int i = 0; i < 3; i++) {
		ck_assert_str_eq(run_from(c, "192.0.2.1"), "dunno");
		ck_assert_str_eq(run_from(c, "::ffff:192.0.2.2"), "dunno");
		ck_assert_str_eq(run_from(c, "::1"), "dunno");
	}
	ck_assert_str_eq(run_from(c, "198.51.100.1"), "dunno");
	ck_assert_str_eq(run_from(c, "198.51.100.1"), "defer rate");
	ck_assert_str_eq(run_from(c, "unknown"), "dunno");
	ck_assert_str_eq(run_from(c, "unknown"), "defer rate");
	config_free(c);
}
END_TEST

START_TEST(test_session_values_are_replaced_and_merged)
{
	struct session a, b;
	struct session_view v;

	session_init(&a);
	session_init(&b);
	set(&a, "quota_count", SESSION_STRING, "10");
	set(&a, "quota_count", SESSION_NUMBER, "20");
	ck_assert_uint_eq(a.count, 1);
	set(&b, "quota_count", SESSION_STRING, "30");
	set(&b, "other", SESSION_TRUE, "1");
	session_merge(&a, &b);
	ck_assert(session_get(&a, "quota_count", &v));
	ck_assert_str_eq(v.text, "30");
	ck_assert(session_get(&a, "other", &v));
	ck_assert(!session_get(&a, "missing", &v));
	session_clear(&a);
	ck_assert(!session_get(&a, "other", &v));
	session_free(&a);
	session_free(&b);
}
END_TEST

START_TEST(test_uc_switch_off_only_for_the_string_off)
{
	struct session s;

	session_init(&s);
	set(&s, "off", SESSION_STRING, "off");
	set(&s, "on", SESSION_STRING, "on");
	set(&s, "word", SESSION_STRING, "nope");
	set(&s, "false", SESSION_FALSE, "");
	set(&s, "true", SESSION_TRUE, "1");
	set(&s, "zero", SESSION_NUMBER, "0");
	set(&s, "null", SESSION_NULL, "");
	ck_assert(!session_uc_switch(&s, "off", true));
	ck_assert(session_uc_switch(&s, "false", false));      /* as mtpolicyd: "0" ne "off" */
	ck_assert(session_uc_switch(&s, "on", false));
	ck_assert(session_uc_switch(&s, "word", false));
	ck_assert(session_uc_switch(&s, "true", false));
	ck_assert(session_uc_switch(&s, "zero", false));
	ck_assert(!session_uc_switch(&s, "null", false));     /* null: not set */
	ck_assert(session_uc_switch(&s, "missing", true));
	ck_assert(!session_uc_switch(&s, NULL, false));
	session_free(&s);
}
END_TEST

static int64_t number(const char *text)
{
	int64_t n;

	return session_parse_number(text, strlen(text), &n) ? n : -777;
}

START_TEST(test_threshold_numbers_are_read_as_integers_that_saturate)
{
	ck_assert_int_eq(number("10000"), 10000);
	ck_assert_int_eq(number(" 42 "), 42);
	ck_assert_int_eq(number("-5"), -5);
	ck_assert_int_eq(number("0"), 0);
	ck_assert_int_eq(number("1e4"), 10000);
	ck_assert_int_eq(number("1000.5"), 1001);
	ck_assert_int_eq(number("99999999999999999999999"), INT64_MAX);
	ck_assert_int_eq(number("-99999999999999999999999"), INT64_MIN);
	ck_assert_int_eq(number("1234567890123456789012345678901234567890123456789012345678901234567890"),
			 INT64_MAX);
	ck_assert_int_eq(number("1e400"), INT64_MAX);
	const char *junk[] = { "abc", "", " ", "0x10", "inf", "nan", "1-2", "12abc", "--1", NULL };
	for (int i = 0; junk[i]; i++)
		ck_assert_msg(number(junk[i]) == -777, "accepted '%s'", junk[i]);
}
END_TEST

START_TEST(test_uc_number_keeps_configured_value_unless_usable)
{
	struct session s;

	session_init(&s);
	set(&s, "string", SESSION_STRING, "500");
	set(&s, "json", SESSION_NUMBER, "600");
	set(&s, "bad", SESSION_STRING, "lots");
	set(&s, "bool", SESSION_TRUE, "1");
	set(&s, "null", SESSION_NULL, "");
	ck_assert_int_eq(session_uc_number(&s, "string", 1000, "t"), 500);
	ck_assert_int_eq(session_uc_number(&s, "json", 1000, "t"), 600);
	ck_assert_int_eq(session_uc_number(&s, "bad", 1000, "t"), 1000);
	ck_assert_int_eq(session_uc_number(&s, "bool", 1000, "t"), 1000);
	ck_assert_int_eq(session_uc_number(&s, "null", 1000, "t"), 1000);
	ck_assert_int_eq(session_uc_number(&s, "missing", 1000, "t"), 1000);
	ck_assert_int_eq(session_uc_number(&s, NULL, 1000, "t"), 1000);
	session_free(&s);
}
END_TEST

static bool no_digits(const char *text)
{
	return strpbrk(text, "0123456789") == NULL;
}

START_TEST(test_uc_text_needs_a_nonempty_string_the_validator_accepts)
{
	struct session s;

	session_init(&s);
	set(&s, "good", SESSION_STRING, "reject over quota");
	set(&s, "empty", SESSION_STRING, "");
	set(&s, "number", SESSION_NUMBER, "5");
	set(&s, "digits", SESSION_STRING, "450 over");
	ck_assert_str_eq(session_uc_text(&s, "good", "dunno", NULL, "t", "action"),
			 "reject over quota");
	ck_assert_str_eq(session_uc_text(&s, "empty", "dunno", NULL, "t", "action"), "dunno");
	ck_assert_str_eq(session_uc_text(&s, "number", "dunno", NULL, "t", "action"), "dunno");
	ck_assert_str_eq(session_uc_text(&s, "digits", "dunno", no_digits, "t", "action"), "dunno");
	ck_assert_str_eq(session_uc_text(&s, NULL, "dunno", NULL, "t", "action"), "dunno");
	session_free(&s);
}
END_TEST

static void setup(void)
{
	counters_init();
}

static Suite *chain_suite(void)
{
	Suite *s = suite_create("chain");
	TCase *chain = tcase_create("chain"), *session = tcase_create("session");

	tcase_add_unchecked_fixture(chain, setup, counters_free_all);
	tcase_add_test(chain, test_first_plugin_that_answers_ends_the_chain);
	tcase_add_test(chain, test_chain_without_answer_says_dunno);
	tcase_add_test(chain, test_module_names_match_without_case);
	tcase_add_test(chain, test_virtual_hosts_are_chosen_by_port_or_socket);
	tcase_add_test(chain, test_an_exempt_client_skips_the_plugin_and_the_others_do_not);
	suite_add_tcase(s, chain);
	tcase_add_test(session, test_session_values_are_replaced_and_merged);
	tcase_add_test(session, test_uc_switch_off_only_for_the_string_off);
	tcase_add_test(session, test_threshold_numbers_are_read_as_integers_that_saturate);
	tcase_add_test(session, test_uc_number_keeps_configured_value_unless_usable);
	tcase_add_test(session, test_uc_text_needs_a_nonempty_string_the_validator_accepts);
	suite_add_tcase(s, session);
	return s;
}

int main(void)
{
	return unit_run(chain_suite());
}
