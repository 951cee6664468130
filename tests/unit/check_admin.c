/*
 * check_admin.c: how the admin thread reads a client (admin.c): a request
 * is in at its first newline and cut when 8 KiB hold none or the client
 * stops; a tallyctl line splits at tabs so that a key with spaces stays one
 * argument, a line typed by hand at spaces, and only the line itself (not
 * what follows it) decides which; only GET /metrics and GET / ask for the
 * metrics.
 */
#include <check.h>
#include <string.h>

#include "admin.h"
#include "unit.h"

/* Gives `text` to `in` as one read; returns the state. */
static enum admin_input_state add(struct admin_input *in, const char *text)
{
	size_t room;
	char *space = admin_input_space(in, &room);
	size_t n = strlen(text);

	ck_assert_uint_le(n, room);
	memcpy(space, text, n);
	return admin_input_add(in, n);
}

START_TEST(test_a_request_is_in_at_its_newline_whatever_the_reads)
{
	struct admin_input in;

	admin_input_init(&in);
	ck_assert_int_eq(add(&in, "sta"), ADMIN_INPUT_MORE);
	ck_assert_int_eq(add(&in, "ts"), ADMIN_INPUT_MORE);
	ck_assert_int_eq(add(&in, "\nafter"), ADMIN_INPUT_LINE);
	ck_assert_str_eq(in.text, "stats\nafter");
}
END_TEST

START_TEST(test_a_client_that_stops_or_fills_8_kib_without_a_newline_is_cut)
{
	struct admin_input in;
	size_t room;

	admin_input_init(&in);
	ck_assert_int_eq(add(&in, "stats"), ADMIN_INPUT_MORE);
	ck_assert_int_eq(add(&in, ""), ADMIN_INPUT_NO_LINE);      /* it stopped sending */
	admin_input_init(&in);
	ck_assert_int_eq(add(&in, "stats"), ADMIN_INPUT_MORE);
	char *space = admin_input_space(&in, &room);
	memset(space, 'x', room - 1);
	ck_assert_int_eq(admin_input_add(&in, room - 1), ADMIN_INPUT_MORE);
	space = admin_input_space(&in, &room);
	ck_assert_uint_eq(room, 1);
	*space = 'x';
	ck_assert_int_eq(admin_input_add(&in, room), ADMIN_INPUT_NO_LINE);   /* full */
	ck_assert_uint_eq(in.len, ADMIN_INPUT_MAX - 1);
}
END_TEST

START_TEST(test_a_nul_byte_is_answered_at_once_not_at_the_deadline)
{
	struct admin_input in;
	size_t room;

	admin_input_init(&in);
	memcpy(admin_input_space(&in, &room), "stats\0\n", 7);
	ck_assert_int_eq(admin_input_add(&in, 7), ADMIN_INPUT_NO_LINE);
	admin_input_init(&in);
	ck_assert_int_eq(add(&in, "sta"), ADMIN_INPUT_MORE);
	memcpy(admin_input_space(&in, &room), "ts\0", 3);
	ck_assert_int_eq(admin_input_add(&in, 3), ADMIN_INPUT_NO_LINE);
}
END_TEST

START_TEST(test_a_key_with_spaces_stays_one_argument_between_tabs)
{
	char line[] = "show\tsasl_username\tuser with spaces\n";
	char *args[ADMIN_ARGS_MAX];

	ck_assert_int_eq(admin_split_command(line, args), 3);
	ck_assert_str_eq(args[0], "show");
	ck_assert_str_eq(args[1], "sasl_username");
	ck_assert_str_eq(args[2], "user with spaces");
}
END_TEST

START_TEST(test_a_line_typed_by_hand_splits_at_runs_of_spaces)
{
	char line[] = "  show  client_address 192.0.2.1   2026-11\r\n";
	char *args[ADMIN_ARGS_MAX];

	ck_assert_int_eq(admin_split_command(line, args), 4);
	ck_assert_str_eq(args[0], "show");
	ck_assert_str_eq(args[2], "192.0.2.1");
	ck_assert_str_eq(args[3], "2026-11");
}
END_TEST

/* Found by fuzz_control: a tab after the newline made the typed line one
 * argument, "show client_address 192.0.2.1", an unknown command. */
START_TEST(test_what_follows_the_line_does_not_pick_its_separators)
{
	char line[] = "show client_address 192.0.2.1\nmore\tbytes";
	char *args[ADMIN_ARGS_MAX];

	ck_assert_int_eq(admin_split_command(line, args), 3);
	ck_assert_str_eq(args[0], "show");
	ck_assert_str_eq(args[2], "192.0.2.1");
}
END_TEST

/* A request value may hold a CR (policy.c drops only a line's last one),
 * so a key given to tallyctl may too. */
START_TEST(test_only_the_cr_that_ends_the_line_is_dropped)
{
	char line[] = "show\tclient_address\tcarriage\rreturn\r\n";
	char *args[ADMIN_ARGS_MAX];

	ck_assert_int_eq(admin_split_command(line, args), 3);
	ck_assert_str_eq(args[2], "carriage\rreturn");
}
END_TEST

START_TEST(test_an_empty_line_has_no_arguments_and_a_ninth_is_dropped)
{
	char empty[] = "\r\n", many[] = "a b c d e f g h i j\n";
	char *args[ADMIN_ARGS_MAX];

	ck_assert_int_eq(admin_split_command(empty, args), 0);
	ck_assert_int_eq(admin_split_command(many, args), ADMIN_ARGS_MAX);
	ck_assert_str_eq(args[ADMIN_ARGS_MAX - 1], "h");
}
END_TEST

START_TEST(test_only_get_metrics_and_get_root_ask_for_the_metrics)
{
	ck_assert(admin_asks_for_metrics("GET /metrics HTTP/1.1\r\n"));
	ck_assert(admin_asks_for_metrics("GET / HTTP/1.0\r\n"));
	ck_assert(!admin_asks_for_metrics("GET /metricsfoo HTTP/1.1\r\n"));
	ck_assert(!admin_asks_for_metrics("POST /metrics HTTP/1.1\r\n"));
	ck_assert(!admin_asks_for_metrics("GET /metrics"));
}
END_TEST

static Suite *admin_suite(void)
{
	Suite *s = suite_create("admin");
	TCase *input = tcase_create("input"), *command = tcase_create("command");

	tcase_add_test(input, test_a_request_is_in_at_its_newline_whatever_the_reads);
	tcase_add_test(input, test_a_client_that_stops_or_fills_8_kib_without_a_newline_is_cut);
	tcase_add_test(input, test_a_nul_byte_is_answered_at_once_not_at_the_deadline);
	tcase_add_test(input, test_only_get_metrics_and_get_root_ask_for_the_metrics);
	tcase_add_test(command, test_a_key_with_spaces_stays_one_argument_between_tabs);
	tcase_add_test(command, test_a_line_typed_by_hand_splits_at_runs_of_spaces);
	tcase_add_test(command, test_what_follows_the_line_does_not_pick_its_separators);
	tcase_add_test(command, test_only_the_cr_that_ends_the_line_is_dropped);
	tcase_add_test(command, test_an_empty_line_has_no_arguments_and_a_ninth_is_dropped);
	suite_add_tcase(s, input);
	suite_add_tcase(s, command);
	return s;
}

int main(void)
{
	return unit_run(admin_suite());
}
