/*
 * check_policy.c: the policy protocol parser and answer writer — requests
 * split at every byte, pipelined requests, limits, and every kind of
 * malformed input DESIGN.md section 2 names — and how answers are counted
 * (stats_classify).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "stats.h"
#include "unit.h"

#define REQUEST "request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\n" \
	"client_address=192.0.2.1\nsasl_username=\nsize=1000\n\n"

static const struct policy_limits limits = { .max_request_size = 1024, .max_attributes = 8 };
static struct attribute attrs[8];
static struct request req = { .attrs = attrs };

static enum policy_status parse_all(struct policy_parser *p, const char *data, size_t len,
				    size_t *used, const char **error)
{
	return policy_parse(p, &limits, data, len, &req, used, error);
}

static enum policy_status parse_once(const char *data, size_t len, size_t *used,
				     const char **error)
{
	struct policy_parser p;

	policy_parser_reset(&p);
	return parse_all(&p, data, len, used, error);
}

static void assert_value(const char *name, const char *value)
{
	const struct attribute *a = request_find(&req, name);

	ck_assert_ptr_nonnull(a);
	ck_assert_uint_eq(a->value_len, strlen(value));
	ck_assert(memcmp(a->value, value, a->value_len) == 0);
}

START_TEST(test_parser_reads_a_request_in_one_piece)
{
	size_t used;
	const char *error;

	ck_assert_int_eq(parse_once(REQUEST, strlen(REQUEST), &used, &error), POLICY_REQUEST);
	ck_assert_uint_eq(used, strlen(REQUEST));
	ck_assert_uint_eq(req.count, 5);
	assert_value("request", "smtpd_access_policy");
	assert_value("client_address", "192.0.2.1");
	assert_value("sasl_username", "");
	ck_assert_ptr_null(request_find(&req, "recipient"));
}
END_TEST

START_TEST(test_parser_waits_for_blank_line_when_split_at_every_byte)
{
	size_t len = strlen(REQUEST), used;
	const char *error;
	struct policy_parser p;

	policy_parser_reset(&p);
	for (size_t n = 1; n < len; n++)
		ck_assert_int_eq(parse_all(&p, REQUEST, n, &used, &error), POLICY_INCOMPLETE);
	ck_assert_int_eq(parse_all(&p, REQUEST, len, &used, &error), POLICY_REQUEST);
	ck_assert_uint_eq(used, len);
	assert_value("size", "1000");
}
END_TEST

START_TEST(test_parser_splits_pipelined_requests)
{
	const char *two = "a=1\n\nb=2\nc=3\n\nd=";
	size_t used, offset = 0;
	const char *error;
	struct policy_parser p;

	policy_parser_reset(&p);
	ck_assert_int_eq(parse_all(&p, two, strlen(two), &used, &error), POLICY_REQUEST);
	ck_assert_uint_eq(req.count, 1);
	assert_value("a", "1");
	offset += used;
	ck_assert_int_eq(parse_all(&p, two + offset, strlen(two) - offset, &used, &error),
			 POLICY_REQUEST);
	ck_assert_uint_eq(req.count, 2);
	assert_value("c", "3");
	offset += used;
	ck_assert_int_eq(parse_all(&p, two + offset, strlen(two) - offset, &used, &error),
			 POLICY_INCOMPLETE);
}
END_TEST

START_TEST(test_crlf_line_ends_are_taken_like_lf)
{
	const char *crlf = "request=smtpd_access_policy\r\nsize=1000\r\nempty=\r\n"
			   "inner=a\rb\r\n\r\nnext=1\n\n";
	size_t len = strlen(crlf), end = strstr(crlf, "next=") - crlf, used;
	const char *error;
	struct policy_parser p;

	ck_assert_int_eq(parse_once(crlf, len, &used, &error), POLICY_REQUEST);
	ck_assert_uint_eq(used, end);
	ck_assert_uint_eq(req.count, 4);
	assert_value("size", "1000");
	assert_value("empty", "");
	assert_value("inner", "a\rb");
	/* split at every byte, the end found by the later calls' search */
	policy_parser_reset(&p);
	for (size_t n = 1; n < end; n++)
		ck_assert_int_eq(parse_all(&p, crlf, n, &used, &error), POLICY_INCOMPLETE);
	ck_assert_int_eq(parse_all(&p, crlf, end, &used, &error), POLICY_REQUEST);
	ck_assert_uint_eq(used, end);
	assert_value("size", "1000");
	ck_assert_int_eq(parse_once("\r\n", 2, &used, &error), POLICY_MALFORMED);
}
END_TEST

START_TEST(test_value_may_contain_equals_signs_and_any_bytes)
{
	const char *text = "sender=a=b@example.org\nclient_name=\xff\xfe caf\xc3\xa9\n\n";
	size_t used;
	const char *error;

	ck_assert_int_eq(parse_once(text, strlen(text), &used, &error), POLICY_REQUEST);
	assert_value("sender", "a=b@example.org");
	assert_value("client_name", "\xff\xfe caf\xc3\xa9");
}
END_TEST

static void assert_malformed(const char *data, size_t len, const char *reason)
{
	size_t used;
	const char *error = NULL;

	ck_assert_int_eq(parse_once(data, len, &used, &error), POLICY_MALFORMED);
	ck_assert_ptr_nonnull(error);
	ck_assert_msg(strstr(error, reason) != NULL, "error '%s' lacks '%s'", error, reason);
}

START_TEST(test_line_without_equals_is_malformed)
{
	assert_malformed("request=x\ngarbage\n\n", 20, "without '='");
}
END_TEST

START_TEST(test_attribute_with_empty_name_is_malformed)
{
	assert_malformed("=value\n\n", 8, "empty name");
}
END_TEST

START_TEST(test_empty_request_is_malformed)
{
	assert_malformed("\n", 1, "empty request");
	assert_malformed("\nrequest=x\n\n", 12, "empty request");
}
END_TEST

START_TEST(test_nul_byte_is_malformed_even_in_a_later_chunk)
{
	const char text[] = "request=x\nsender=a\0b\n\n";
	size_t used;
	const char *error;
	struct policy_parser p;

	assert_malformed(text, sizeof(text) - 1, "NUL");
	policy_parser_reset(&p);
	ck_assert_int_eq(parse_all(&p, text, 10, &used, &error), POLICY_INCOMPLETE);
	ck_assert_int_eq(parse_all(&p, text, sizeof(text) - 1, &used, &error), POLICY_MALFORMED);
}
END_TEST

START_TEST(test_oversize_request_is_malformed_complete_or_not)
{
	char big[2048];

	memset(big, 'x', sizeof(big));
	memcpy(big, "sender=", 7);
	assert_malformed(big, sizeof(big), "max_request_size");      /* no end in sight */
	big[sizeof(big) - 2] = '\n';
	big[sizeof(big) - 1] = '\n';
	assert_malformed(big, sizeof(big), "max_request_size");      /* complete, too big */
}
END_TEST

START_TEST(test_request_at_the_size_limit_is_accepted)
{
	char text[1024];
	size_t used;
	const char *error;

	memset(text, 'x', sizeof(text));
	memcpy(text, "sender=", 7);
	text[1022] = '\n';
	text[1023] = '\n';
	ck_assert_int_eq(parse_once(text, sizeof(text), &used, &error), POLICY_REQUEST);
	ck_assert_uint_eq(used, 1024);
}
END_TEST

START_TEST(test_too_many_attributes_is_malformed)
{
	const char *nine = "a=1\nb=2\nc=3\nd=4\ne=5\nf=6\ng=7\nh=8\ni=9\n\n";
	const char *eight = "a=1\nb=2\nc=3\nd=4\ne=5\nf=6\ng=7\nh=8\n\n";
	size_t used;
	const char *error;

	assert_malformed(nine, strlen(nine), "too many attributes");
	ck_assert_int_eq(parse_once(eight, strlen(eight), &used, &error), POLICY_REQUEST);
}
END_TEST

START_TEST(test_parsing_the_same_bytes_again_gives_the_same_request)
{
	size_t len = strlen(REQUEST), used, again;
	const char *error;
	struct policy_parser p;

	/* workers re-parse a request whose answer was postponed */
	policy_parser_reset(&p);
	ck_assert_int_eq(parse_all(&p, REQUEST, 10, &used, &error), POLICY_INCOMPLETE);
	ck_assert_int_eq(parse_all(&p, REQUEST, len, &used, &error), POLICY_REQUEST);
	ck_assert_int_eq(parse_all(&p, REQUEST, len, &again, &error), POLICY_REQUEST);
	ck_assert_uint_eq(again, used);
	ck_assert_uint_eq(req.count, 5);
	assert_value("request", "smtpd_access_policy");
	assert_value("size", "1000");
}
END_TEST

START_TEST(test_parser_keeps_nothing_from_bytes_that_moved)
{
	size_t len = strlen(REQUEST), used = 0;
	const char *error;
	struct policy_parser p;
	struct attribute other[8];
	struct request other_req = { .attrs = other };
	char *copy = NULL;
	enum policy_status status = POLICY_INCOMPLETE;

	/* between reads the buffer may be moved and another worker, with
	 * another attribute array, may take the connection */
	policy_parser_reset(&p);
	for (size_t n = 1; n <= len; n++) {
		free(copy);
		copy = malloc(len);
		memcpy(copy, REQUEST, n);
		memset(attrs, 0xa5, sizeof(attrs));
		memset(other, 0x5a, sizeof(other));
		status = policy_parse(&p, &limits, copy, n, n % 2 ? &req : &other_req, &used,
				      &error);
		ck_assert_int_eq(status, n < len ? POLICY_INCOMPLETE : POLICY_REQUEST);
	}
	struct request *got = len % 2 ? &req : &other_req;
	ck_assert_uint_eq(used, len);
	ck_assert_uint_eq(got->count, 5);
	for (size_t i = 0; i < got->count; i++)
		ck_assert(got->attrs[i].name >= copy && got->attrs[i].name < copy + len);
	ck_assert(memcmp(got->attrs[4].value, "1000", 4) == 0);
	free(copy);
}
END_TEST

/* Parses data whole, then split after each byte, and checks both end in
 * `status` with the same error. */
static void assert_same_outcome_split_anywhere(const char *data, size_t len,
					       enum policy_status status, const char *reason)
{
	for (size_t split = 0; split < len; split++) {
		size_t used;
		const char *error = NULL;
		struct policy_parser p;
		policy_parser_reset(&p);
		enum policy_status first = parse_all(&p, data, split, &used, &error);
		if (first == POLICY_INCOMPLETE)
			first = parse_all(&p, data, len, &used, &error);
		ck_assert_msg(first == status, "split at %zu: status %d", split, (int)first);
		if (reason != NULL)
			ck_assert_msg(error != NULL && strstr(error, reason) != NULL,
				      "split at %zu: error '%s' lacks '%s'", split,
				      error ? error : "(none)", reason);
	}
}

START_TEST(test_line_errors_are_the_same_wherever_the_request_is_split)
{
	const char nul_after_bad_line[] = "garbage\nsender=a\0b\n\n";
	char big[1100];

	assert_same_outcome_split_anywhere(REQUEST, strlen(REQUEST), POLICY_REQUEST, NULL);
	assert_same_outcome_split_anywhere("a=1\ngarbage\nb=2\n\n", 18, POLICY_MALFORMED,
					   "without '='");
	assert_same_outcome_split_anywhere("a=1\n=2\n\n", 8, POLICY_MALFORMED, "empty name");
	assert_same_outcome_split_anywhere("\n", 1, POLICY_MALFORMED, "empty request");
	assert_same_outcome_split_anywhere("a=1\nb=2\nc=3\nd=4\ne=5\nf=6\ng=7\nh=8\ni=9\n\n", 37,
					   POLICY_MALFORMED, "too many attributes");
	/* the NUL and size checks come before the lines' errors */
	assert_same_outcome_split_anywhere(nul_after_bad_line, sizeof(nul_after_bad_line) - 1,
					   POLICY_MALFORMED, "NUL");
	memset(big, 'x', sizeof(big));
	memcpy(big, "garbage\nsender=", 15);
	big[sizeof(big) - 2] = '\n';
	big[sizeof(big) - 1] = '\n';
	assert_same_outcome_split_anywhere(big, sizeof(big), POLICY_MALFORMED, "max_request_size");
}
END_TEST

START_TEST(test_bad_line_waits_for_the_end_of_its_request)
{
	size_t used;
	const char *error = NULL;
	struct policy_parser p;

	policy_parser_reset(&p);
	ck_assert_int_eq(parse_all(&p, "garbage\nsender=x\n", 17, &used, &error),
			 POLICY_INCOMPLETE);
	ck_assert_int_eq(parse_all(&p, "garbage\nsender=x\n\n", 18, &used, &error),
			 POLICY_MALFORMED);
	ck_assert_str_eq(error, "line without '='");
}
END_TEST

START_TEST(test_long_and_short_lines_and_empty_values)
{
	char text[1024];
	size_t len = 0, used;
	const char *error;
	char name[80], value[300];

	/* names and values of every length up to past a 64-byte block, the last
	 * lines close to the end of the bytes */
	for (size_t n = 1; n <= 70; n += 3) {
		len = 0;
		memset(name, 'n', n);
		memset(value, 'v', 4 * n);
		len += (size_t)snprintf(text + len, sizeof(text) - len, "%.*s=%.*s\nempty=\n",
					(int)n, name, (int)(4 * n), value);
		len += (size_t)snprintf(text + len, sizeof(text) - len, "x=%.*s\n\n", (int)n, value);
		ck_assert_int_eq(parse_once(text, len, &used, &error), POLICY_REQUEST);
		ck_assert_uint_eq(used, len);
		ck_assert_uint_eq(req.count, 3);
		ck_assert_uint_eq(req.attrs[0].name_len, n);
		ck_assert_uint_eq(req.attrs[0].value_len, 4 * n);
		ck_assert_uint_eq(req.attrs[1].value_len, 0);
		ck_assert_uint_eq(req.attrs[2].value_len, n);
	}
}
END_TEST

START_TEST(test_find_returns_the_first_attribute_of_exactly_that_name)
{
	const char *text = "sizes=1\nsize=2\nsize=3\nsiZe=4\nrecipient=a\n\n";
	size_t used;
	const char *error;
	char config_name[] = "size";     /* not a literal: its length is not known */

	ck_assert_int_eq(parse_once(text, strlen(text), &used, &error), POLICY_REQUEST);
	ck_assert_ptr_eq(request_find(&req, "size"), &req.attrs[1]);
	ck_assert_ptr_eq(request_find(&req, config_name), &req.attrs[1]);
	ck_assert_ptr_eq(request_find(&req, "sizes"), &req.attrs[0]);
	ck_assert_ptr_eq(request_find_len(&req, "sizes", 4), &req.attrs[1]);
	ck_assert_ptr_null(request_find(&req, "siz"));
	ck_assert_ptr_null(request_find(&req, "SIZE"));
	ck_assert_ptr_null(request_find(&req, ""));
	ck_assert_ptr_eq(request_find(&req, "recipient"), &req.attrs[4]);
}
END_TEST

START_TEST(test_blank_means_missing_empty_or_white_space)
{
	const char *text = "a=\nb=  \t\nc= x \n\n";
	size_t used;
	const char *error;

	parse_once(text, strlen(text), &used, &error);
	ck_assert(attribute_is_blank(request_find(&req, "a")));
	ck_assert(attribute_is_blank(request_find(&req, "b")));
	ck_assert(!attribute_is_blank(request_find(&req, "c")));
	ck_assert(attribute_is_blank(request_find(&req, "missing")));
}
END_TEST

START_TEST(test_answer_is_action_line_and_blank_line)
{
	struct buf out;

	buf_init(&out);
	policy_write_answer(&out, "defer you exceeded your monthly limit, please insert coin");
	policy_write_answer(&out, "dunno");
	ck_assert_str_eq(out.data, "action=defer you exceeded your monthly limit, please insert "
			 "coin\n\naction=dunno\n\n");
	buf_free(&out);
}
END_TEST

START_TEST(test_answers_append_as_the_buffer_grows_and_moves)
{
	struct buf out, expected;
	char action[600];

	buf_init(&out);
	buf_init(&expected);
	for (size_t n = 1; n < sizeof(action); n += 37) {
		memset(action, 'a' + n % 26, n);
		action[n] = '\0';
		policy_write_answer(&out, action);
		buf_printf(&expected, "action=%s\n\n", action);
		if (n % 3 == 0) {      /* as written answers leave the front */
			buf_consume(&out, 5);
			buf_consume(&expected, 5);
		}
	}
	ck_assert_uint_eq(buf_size(&out), buf_size(&expected));
	ck_assert(memcmp(buf_head(&out), buf_head(&expected), buf_size(&out)) == 0);
	ck_assert_int_eq(out.data[out.len], '\0');
	buf_free(&out);
	buf_free(&expected);
}
END_TEST

START_TEST(test_answers_are_counted_by_their_first_word_in_any_case)
{
	ck_assert_int_eq(stats_classify("dunno"), ACTION_DUNNO);
	ck_assert_int_eq(stats_classify("OK"), ACTION_OK);
	ck_assert_int_eq(stats_classify("Defer_If_Permit quota service unavailable"),
			 ACTION_DEFER_IF_PERMIT);
	ck_assert_int_eq(stats_classify("defer_if_reject\tlater"), ACTION_DEFER_IF_REJECT);
	ck_assert_int_eq(stats_classify("DEFER you exceeded your monthly limit"), ACTION_DEFER);
	ck_assert_int_eq(stats_classify("reject"), ACTION_REJECT);
	ck_assert_int_eq(stats_classify("hold"), ACTION_HOLD);
	ck_assert_int_eq(stats_classify("discard spam"), ACTION_DISCARD);
	ck_assert_int_eq(stats_classify("450 4.7.1 try later"), ACTION_DEFER);
	ck_assert_int_eq(stats_classify("554 5.7.1 no"), ACTION_REJECT);
	ck_assert_int_eq(stats_classify("4500 no"), ACTION_OTHER);
	ck_assert_int_eq(stats_classify("defe"), ACTION_OTHER);
	ck_assert_int_eq(stats_classify("deferred"), ACTION_OTHER);
	ck_assert_int_eq(stats_classify("okay"), ACTION_OTHER);
	ck_assert_int_eq(stats_classify("prepend X-Header: 1"), ACTION_OTHER);
	ck_assert_int_eq(stats_classify(""), ACTION_OTHER);
	ck_assert_int_eq(stats_classify(" dunno"), ACTION_OTHER);
}
END_TEST

START_TEST(test_action_text_must_be_one_nonempty_line)
{
	ck_assert(policy_action_is_valid("defer_if_permit quota service unavailable"));
	ck_assert(!policy_action_is_valid(""));
	ck_assert(!policy_action_is_valid("dunno\naction=ok"));
	ck_assert(!policy_action_is_valid("dunno\r"));
}
END_TEST

static Suite *policy_suite(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("parser");

	tcase_add_test(tc, test_parser_reads_a_request_in_one_piece);
	tcase_add_test(tc, test_parser_waits_for_blank_line_when_split_at_every_byte);
	tcase_add_test(tc, test_parser_splits_pipelined_requests);
	tcase_add_test(tc, test_crlf_line_ends_are_taken_like_lf);
	tcase_add_test(tc, test_value_may_contain_equals_signs_and_any_bytes);
	tcase_add_test(tc, test_line_without_equals_is_malformed);
	tcase_add_test(tc, test_attribute_with_empty_name_is_malformed);
	tcase_add_test(tc, test_empty_request_is_malformed);
	tcase_add_test(tc, test_nul_byte_is_malformed_even_in_a_later_chunk);
	tcase_add_test(tc, test_oversize_request_is_malformed_complete_or_not);
	tcase_add_test(tc, test_request_at_the_size_limit_is_accepted);
	tcase_add_test(tc, test_too_many_attributes_is_malformed);
	tcase_add_test(tc, test_parsing_the_same_bytes_again_gives_the_same_request);
	tcase_add_test(tc, test_parser_keeps_nothing_from_bytes_that_moved);
	tcase_add_test(tc, test_line_errors_are_the_same_wherever_the_request_is_split);
	tcase_add_test(tc, test_bad_line_waits_for_the_end_of_its_request);
	tcase_add_test(tc, test_long_and_short_lines_and_empty_values);
	tcase_add_test(tc, test_find_returns_the_first_attribute_of_exactly_that_name);
	tcase_add_test(tc, test_blank_means_missing_empty_or_white_space);
	tcase_add_test(tc, test_answer_is_action_line_and_blank_line);
	tcase_add_test(tc, test_answers_append_as_the_buffer_grows_and_moves);
	tcase_add_test(tc, test_answers_are_counted_by_their_first_word_in_any_case);
	tcase_add_test(tc, test_action_text_must_be_one_nonempty_line);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(policy_suite());
}
