/*
 * check_config.c: every way tallyd.conf can be wrong is refused with the
 * right FILE:LINE and a message that names the problem; good configs load
 * with the documented defaults.  Each case writes its own small file.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "counters.h"
#include "unit.h"

static char path[64];

/* Writes text to a fresh file and loads it. */
static struct config *load_text(const char *text, struct config_errors *errors)
{
	strcpy(path, "/tmp/check_config_XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	memset(errors, 0, sizeof(*errors));
	struct config *config = config_load(path, errors);
	unlink(path);
	return config;
}

/* A config broken in one place, the line of that place, what the message says. */
struct broken {
	const char *text;
	int line;
	const char *message;
};

#define LISTEN "listen = \"127.0.0.1:12346\";\n"
#define VHOST(plugins) "virtual_hosts = ( { port = 12346;\n plugins = ( " plugins " ); } );\n"
#define ACTION "{ name = \"a\"; module = \"Action\"; action = \"dunno\"; }"

#define LONG_PATTERN "%Y-%m-%d %H:%M:%S, then text enough to pass sixty-three bytes in all"

static const struct broken cases[] = {
	{ "workers = ;\n", 1, "syntax error" },
	{ "workers = 8;\nwrokers = 8;\n", 2, "unknown setting 'wrokers'" },
	{ "\ndatabase = { driver = \"mysql\"; hots = \"db\"; };\n", 2,
	  "database: unknown setting 'hots'" },
	{ "accounting = {\n flush_intervall = 1.0; };\n", 2,
	  "accounting: unknown setting 'flush_intervall'" },
	{ "workers = \"8\";\n", 1, "workers must be a whole number" },
	{ "pid_file = 5;\n", 1, "pid_file must be a string" },
	{ "workers = 2.5;\n", 1, "workers must be a whole number" },
	{ "log_level = [\"info\"];\n", 1, "log_level must be a string" },
	{ "workers = 0;\n", 1, "workers must be 1..1024, got 0" },
	{ "\nworkers = 1025;\n", 2, "workers must be 1..1024, got 1025" },
	{ "max_request_size = 100;\n", 1, "max_request_size must be 1024..16777216" },
	{ "accounting = { flush_interval = 0.0; };\n", 1, "flush_interval must be 0.01..3600" },
	{ "database = { port = 70000; };\n", 1, "port must be 1..65535, got 70000" },
	{ "log_level = \"loud\";\n", 1,
	  "log_level must be one of error, warning, notice, info, debug; got 'loud'" },
	{ "database = { driver = \"pg\"; };\n", 1, "driver must be one of sqlite, mysql" },
	{ "listen = \"127.0.0.1\";\n", 1, "listen '127.0.0.1': expected ADDRESS:PORT" },
	{ "listen = \"300.1.1.1:1\";\n", 1, "not a numeric IPv4 address" },
	{ "listen = \"[::g]:1\";\n", 1, "not a numeric IPv6 address" },
	{ "listen = \"127.0.0.1:0\";\n", 1, "the port must be 1..65535" },
	{ "listen = \"127.0.0.1:1,127.0.0.1:1\";\n", 1, "listed twice" },
	{ "listen = \"unix:\";\n", 1, "unix: needs a path" },
	{ "listen = ( \"127.0.0.1:1\",\n 5 );\n", 2, "each entry must be a string" },
	{ "listen = [ \"127.0.0.1:1\",\n 5 ];\n", 2, "mismatched element type in array" },
	{ "listen = 12345;\n", 1, "listen must be a string" },
	{ LISTEN "virtual_hosts = ( { port = 12347;\n plugins = ( " ACTION " ); } );\n", 2,
	  "virtual host 'port 12347': port 12347 is not in listen" },
	{ LISTEN "virtual_hosts = ( { port = 12346; socket = \"/s\";\n plugins = ( " ACTION
	  " ); } );\n", 2, "set either port or socket" },
	{ LISTEN "virtual_hosts = ( { name = \"x\";\n plugins = ( " ACTION " ); } );\n", 2,
	  "virtual host 'x': set either port or socket" },
	{ LISTEN "virtual_hosts = ( {\n plugins = ( " ACTION " ); } );\n", 2,
	  "virtual host 'number 1': set either port or socket" },
	{ LISTEN "virtual_hosts = ( { port = 12346; plugins = ( " ACTION " ); },\n"
	  "{ port = 12346; name = \"again\"; plugins = ( " ACTION " ); } );\n", 3,
	  "virtual host 'again' serves the same port as 'port 12346'" },
	{ LISTEN "virtual_hosts = ( { socket = \"/tmp/p\";\n plugins = ( " ACTION " ); } );\n", 2,
	  "no listen entry is unix:/tmp/p" },
	{ LISTEN "virtual_hosts = ( { port = 12346;\n plugins = ( ); } );\n", 3,
	  "plugins must be a non-empty list" },
	{ LISTEN "virtual_hosts = ( { port = 12346; } );\n", 2,
	  "missing required setting 'plugins'" },
	{ LISTEN VHOST(ACTION ",\n" ACTION), 4, "two plugins are named 'a'" },
	{ LISTEN VHOST("{ module = \"Action\"; action = \"dunno\"; }"), 3, "plugin without a name" },
	{ LISTEN VHOST("{ name = \"a\"; action = \"dunno\"; }"), 3, "plugin 'a': missing module" },
	{ LISTEN VHOST("{ name = \"a\"; module = \"Greylist\"; }"), 3,
	  "plugin 'a': unknown module 'Greylist'" },
	{ LISTEN VHOST("{ name = \"a\"; module = \"Action\"; }"), 3,
	  "plugin 'a': missing required setting 'action'" },
	{ LISTEN VHOST("{ name = \"a\"; module = \"Action\"; action = \"dunno\" \"\\n\"; }"), 3,
	  "plugin 'a': action must be a one-line action text" },
	{ LISTEN VHOST("{ name = \"a\"; module = \"Action\"; action = \"dunno\"; colour = 1; }"), 3,
	  "plugin 'a': unknown setting 'colour'" },
	{ LISTEN VHOST("{ name = \"acct\"; module = \"Accounting\"; fields = \"client_address\";"
		       " enabled = \"maybe\"; }"), 3,
	  "plugin 'acct': enabled must be true or false" },
	{ LISTEN VHOST("{ name = \"acct\"; module = \"Accounting\"; fields = \"client-address\"; }"), 3,
	  "table_prefix + field ('acct_client-address') must be a plain identifier" },
	{ LISTEN VHOST("{ name = \"acct\"; module = \"Accounting\"; fields = \"client_address\";"
		       " time_pattern = \"" LONG_PATTERN "\"; }"), 3,
	  "time_pattern \"" LONG_PATTERN "\" cannot be kept for table acct_client_address" },
	{ LISTEN VHOST("{ name = \"acct\"; module = \"Accounting\"; fields = \"client_address\";"
		       " table_prefix = \"acct-\"; }"), 3,
	  "table_prefix must be empty or a plain identifier" },
	{ LISTEN VHOST("{ name = \"acct\"; module = \"Accounting\"; fields = \" , \"; }"), 3,
	  "fields names no field" },
	{ LISTEN VHOST("{ name = \"acct\"; module = \"Accounting\"; fields = \"client_address\";"
		       " time_pattern = \"\"; }"), 3, "time_pattern must be a strftime pattern" },
	{ LISTEN VHOST("{ name = \"q\"; module = \"Quota\"; field = \"client_address\";"
		       " metric = \"bytes\"; threshold = 1; }"), 3,
	  "plugin 'q': metric must be one of count, count_rcpt, size, size_rcpt; got 'bytes'" },
	{ LISTEN VHOST("{ name = \"q\"; module = \"Quota\"; field = \"client_address\";"
		       " metric = \"count\"; }"), 3, "plugin 'q': missing required setting 'threshold'" },
	{ LISTEN VHOST("{ name = \"q\"; module = \"Quota\"; field = \"x y\"; metric = \"count\";"
		       " threshold = 1; }"), 3, "field must be an attribute name" },
	{ LISTEN VHOST("{ name = \"u\"; module = \"SqlUserConfig\"; sql_query = \"SELECT 1\"; }"), 3,
	  "sql_query must be an SQL query with exactly one ?" },
	/* two ?: accepted until now, then one failed lookup (and log line) per request */
	{ LISTEN VHOST("{ name = \"u\"; module = \"SqlUserConfig\";\n"
		       " sql_query = \"SELECT c FROM t WHERE a = ? OR b = ?\"; }"), 4,
	  "plugin 'u': sql_query must be an SQL query with exactly one ?" },
	/* a ? in a string, a name or a comment is no placeholder */
	{ LISTEN VHOST("{ name = \"u\"; module = \"SqlUserConfig\";\n"
		       " sql_query = \"SELECT '?' FROM `t?` WHERE 1 /* ? */ -- ?\"; }"), 4,
	  "plugin 'u': sql_query must be an SQL query with exactly one ?" },
	{ LISTEN VHOST("{ name = \"u\"; module = \"SqlUserConfig\"; sql_query = \"SELECT c FROM t "
		       "WHERE a = ?\";\n preload_query = \"SELECT a, c FROM t WHERE a = ?\"; }"), 4,
	  "plugin 'u': preload_query must be an SQL query without ?" },
	{ LISTEN VHOST("{ name = \"r\"; module = \"RateLimit\"; field = \"sasl_username\"; }"), 3,
	  "plugin 'r': missing required setting 'limits'" },
	{ LISTEN VHOST("{ name = \"r\"; module = \"RateLimit\"; field = \"sasl_username\";\n"
		       " limits = ( [100, 60],\n [0, 3600] ); }"), 5,
	  "plugin 'r': limit [0, 3600]: the count must be 1..2^62" },
	{ LISTEN VHOST("{ name = \"r\"; module = \"RateLimit\"; field = \"sasl_username\";\n"
		       " limits = ( [100, 2592001] ); }"), 4,
	  "plugin 'r': limit [100, 2592001]: the seconds must be 1..2592000" },
	{ LISTEN VHOST("{ name = \"r\"; module = \"RateLimit\"; field = \"sasl_username\";\n"
		       " limits = ( (100, \"60\") ); }"), 4,
	  "plugin 'r': a limit is [count, seconds], two whole numbers" },
	{ LISTEN VHOST("{ name = \"r\"; module = \"RateLimit\"; field = \"sasl_username\";\n"
		       " limits = ( [100, 60, 5] ); }"), 4,
	  "plugin 'r': limits must be a list of [count, seconds] pairs" },
	{ LISTEN VHOST("{ name = \"r\"; module = \"RateLimit\"; field = \"sasl_username\";\n"
		       " limits = ( ); }"), 4,
	  "plugin 'r': limits must be a list of 1 to 8 [count, seconds] pairs" },
	{ LISTEN VHOST("{ name = \"r\"; module = \"RateLimit\"; field = \"sasl_username\";\n"
		       " limits = [1, 2]; metric = \"bytes\"; }"), 4,
	  "plugin 'r': metric must be one of count, count_rcpt, size, size_rcpt; got 'bytes'" },
	{ LISTEN VHOST("{ name = \"r\"; module = \"RateLimit\"; field = \"sasl_username\";\n"
		       " limits = [1, 2]; max_keys = 1; }"), 4,
	  "plugin 'r': max_keys must be 64..100000000, got 1" },
	/* integers beyond 32 bits keep their value (libconfig 1.5 wraps them) */
	{ "workers = 3000000000;\n", 1, "workers must be 1..1024, got 3000000000" },
	{ "\nmax_connections = 4294967297;\n", 2, "got 4294967297" },
	{ "workers = 3000000000L;\n", 1, "got 3000000000" },
	{ "workers = -2147483649;\n", 1, "got -2147483649" },
	{ "workers = 0x80000000;\n", 1, "got 2147483648" },
	{ "# 99999999999999999999\nworkers = 99999999999999999999;\n", 2,
	  "the number 99999999999999999999 is out of range: integers are 64-bit" },
	{ "workers = 8;\nname_at_the_very_end", 2, "syntax error" },   /* no newline after it */
	{ LISTEN "metrics_listen = \"127.0.0.1:12346\";\n", 2,
	  "metrics_listen '127.0.0.1:12346': uses a port that listen uses too" },
};

START_TEST(test_broken_config_is_refused_at_its_line)
{
	const struct broken *b = &cases[_i];
	struct config_errors errors;
	char prefix[96];

	ck_assert_ptr_null(load_text(b->text, &errors));
	ck_assert_uint_ge(errors.count, 1);
	snprintf(prefix, sizeof(prefix), "%s:%d: ", path, b->line);
	ck_assert_msg(strncmp(errors.lines[0], prefix, strlen(prefix)) == 0,
		      "case %d: '%s' does not start with '%s'", _i, errors.lines[0], prefix);
	ck_assert_msg(strstr(errors.lines[0], b->message) != NULL,
		      "case %d: '%s' lacks '%s'", _i, errors.lines[0], b->message);
	config_errors_free(&errors);
}
END_TEST

START_TEST(test_unreadable_file_is_refused)
{
	struct config_errors errors = { 0 };

	ck_assert_ptr_null(config_load("/nonexistent/tallyd.conf", &errors));
	ck_assert_str_eq(errors.lines[0], "/nonexistent/tallyd.conf:0: cannot read the file");
	config_errors_free(&errors);
}
END_TEST

START_TEST(test_every_problem_in_a_file_is_reported)
{
	struct config_errors errors;

	ck_assert_ptr_null(load_text("workers = 0;\nlog_level = \"loud\";\nfoo = 1;\n"
				     "database = { port = 0; };\n", &errors));
	ck_assert_uint_eq(errors.count, 4);
	ck_assert(strstr(errors.lines[3], ":4: database: port") != NULL);
	config_errors_free(&errors);
}
END_TEST

START_TEST(test_empty_config_loads_with_the_documented_defaults)
{
	struct config_errors errors;
	struct config *c = load_text("", &errors);

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->workers, 8);
	ck_assert_int_eq(c->max_connections, 4096);
	ck_assert_int_eq(c->request_timeout, 20);
	ck_assert_int_eq(c->keepalive_timeout, 300);
	ck_assert_int_eq(c->max_request_size, 65536);
	ck_assert_int_eq(c->max_attributes, 256);
	ck_assert_int_eq(c->user_config_ttl, 60);
	ck_assert_int_eq(c->database.driver, DATABASE_SQLITE);
	ck_assert_int_eq(c->database.pool_size, 2);
	ck_assert(c->database.wait == 2.0);
	ck_assert_int_eq(c->database.connect_timeout, 5);
	ck_assert(c->accounting.flush_interval == 1.0);
	ck_assert_int_eq(c->accounting.flush_batch, 1000);
	ck_assert(c->accounting.refresh_interval == 10.0);
	ck_assert_str_eq(c->accounting.journal, "");
	ck_assert_int_eq(c->log_target, LOG_TARGET_SYSLOG);
	ck_assert_int_eq(c->log_level, LOG_INFO);
	ck_assert_uint_eq(c->listen_count, 1);
	ck_assert_str_eq(c->listen[0].spec, "127.0.0.1:12345");
	ck_assert_uint_eq(c->vhost_count, 0);
	config_errors_free(&errors);
	config_free(c);
}
END_TEST

START_TEST(test_listen_as_string_or_list_with_ipv6_and_unix)
{
	struct config_errors errors;
	struct config *c = load_text(
		"listen = [ \"127.0.0.1:12345\", \"[::1]:12346\", \"unix:/tmp/tallyd-test.sock\" ];\n"
		"virtual_hosts = (\n"
		" { port = 12346; name = \"acct\"; plugins = ( " ACTION " ); },\n"
		" { socket = \"/tmp/tallyd-test.sock\"; plugins = ( " ACTION " ); } );\n", &errors);

	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(c->listen_count, 3);
	ck_assert_int_eq(c->listen[1].port, 12346);
	ck_assert_str_eq(c->listen[2].path, "/tmp/tallyd-test.sock");
	ck_assert_str_eq(config_find_vhost(c, 12346, NULL)->name, "acct");
	ck_assert_ptr_nonnull(config_find_vhost(c, 0, "/tmp/tallyd-test.sock"));
	ck_assert_ptr_null(config_find_vhost(c, 12345, NULL));
	config_errors_free(&errors);
	config_free(c);

	c = load_text("listen = \"127.0.0.1:12345, 127.0.0.1:12346\";\n", &errors);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(c->listen_count, 2);
	config_errors_free(&errors);
	config_free(c);
}
END_TEST

START_TEST(test_relative_paths_become_absolute)
{
	struct config_errors errors;
	char cwd[512], expected[600];
	struct config *c = load_text("database = { path = \"var/tallyd.sqlite\"; };\n"
				     "listen = \"unix:./var/t.sock\";\n", &errors);

	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	snprintf(expected, sizeof(expected), "%s/var/tallyd.sqlite", cwd);
	ck_assert_str_eq(c->database.path, expected);
	snprintf(expected, sizeof(expected), "%s/var/t.sock", cwd);
	ck_assert_str_eq(c->listen[0].path, expected);
	config_errors_free(&errors);
	config_free(c);
}
END_TEST

START_TEST(test_integer_accepted_where_a_number_is_expected)
{
	struct config_errors errors;
	struct config *c = load_text("accounting = { flush_interval = 2; };\n", &errors);

	ck_assert_ptr_nonnull(c);
	ck_assert(c->accounting.flush_interval == 2.0);
	config_errors_free(&errors);
	config_free(c);
}
END_TEST

START_TEST(test_numbers_in_strings_comments_and_floats_stay_as_written)
{
	struct config_errors errors;
	struct config *c = load_text("# 3000000000\npid_file = \"/run/3000000000\\\"x\";\n"
				     "/* 4294967297 */ accounting = { flush_interval = 3000.5; "
				     "refresh_interval = 5e3; };\nworkers = 8;\n", &errors);

	ck_assert_msg(c != NULL, "%s", errors.count ? errors.lines[0] : "");
	ck_assert_str_eq(c->pid_file, "/run/3000000000\"x");
	ck_assert(c->accounting.flush_interval == 3000.5);
	ck_assert(c->accounting.refresh_interval == 5000.0);
	config_errors_free(&errors);
	config_free(c);
}
END_TEST

START_TEST(test_packaged_and_quickstart_configs_load)
{
	const char *files[] = { TOP_SRCDIR "/conf/tallyd.conf",
				TOP_SRCDIR "/conf/quickstart.conf" };

	for (size_t i = 0; i < 2; i++) {
		struct config_errors errors = { 0 };
		struct config *c = config_load(files[i], &errors);
		for (size_t e = 0; e < errors.count; e++)
			fprintf(stderr, "%s\n", errors.lines[e]);
		ck_assert_ptr_nonnull(c);
		ck_assert_uint_ge(c->vhost_count, 1);
		config_errors_free(&errors);
	config_free(c);
	}
}
END_TEST

/* The warning that holds `text`, or NULL. */
static const char *warning_with(const struct config_errors *errors, const char *text)
{
	for (size_t i = 0; i < errors->warning_count; i++) {
		if (strstr(errors->warnings[i], text))
			return errors->warnings[i];
	}
	return NULL;
}

START_TEST(test_a_listener_no_virtual_host_serves_is_a_warning_at_its_line)
{
	struct config_errors errors;
	char expected[160];
	struct config *c = load_text("listen = [ \"127.0.0.1:12346\",\n \"127.0.0.1:12347\" ];\n"
				     VHOST(ACTION), &errors);

	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(errors.warning_count, 1);
	snprintf(expected, sizeof(expected), "%s:2: listen 127.0.0.1:12347: no virtual host serves "
		 "it; its requests are answered dunno", path);
	ck_assert_str_eq(errors.warnings[0], expected);
	config_errors_free(&errors);
	config_free(c);
}
END_TEST

#define QUOTA(extra) "{ name = \"q\"; module = \"Quota\"; field = \"client_address\"; " \
	"metric = \"count\"; threshold = 5; " extra " }"
#define ACCOUNTING(extra) "{ name = \"acct\"; module = \"Accounting\"; " \
	"fields = \"sasl_username, client_address\"; " extra " }"

/* A Quota reads what an Accounting writes: table_prefix, field and
 * time_pattern must agree, or the quota never sees this tallyd's counts. */
START_TEST(test_a_quota_no_accounting_feeds_is_a_warning_at_its_line)
{
	static const struct { const char *plugins; bool warned; } quota_cases[] = {
		{ QUOTA("") ",\n" ACCOUNTING(""), false },
		{ ACCOUNTING("") ",\n" QUOTA(""), false },
		{ QUOTA("") ",\n" ACCOUNTING("time_pattern = \"%Y-%m-%d\";"), true },
		{ QUOTA("table_prefix = \"q_\";") ",\n" ACCOUNTING(""), true },
		{ "{ name = \"q\"; module = \"Quota\"; field = \"sender\"; metric = \"size\"; "
		  "threshold = 5; },\n" ACCOUNTING(""), true },
		{ QUOTA("") ",\n" ACCOUNTING("enabled = false;"), true },
		{ QUOTA("") ",\n" ACCOUNTING("enabled = false; uc_enabled = \"acct\";"), false },
		{ QUOTA("enabled = false;") ",\n" ACCOUNTING("time_pattern = \"%Y\";"), false },
		{ QUOTA(""), true },
	};

	for (size_t i = 0; i < sizeof(quota_cases) / sizeof(quota_cases[0]); i++) {
		struct config_errors errors;
		char text[1024], where[96];
		snprintf(text, sizeof(text), LISTEN "virtual_hosts = ( { port = 12346;\n plugins = "
			 "(\n%s ); } );\n", quota_cases[i].plugins);
		struct config *c = load_text(text, &errors);
		ck_assert_msg(c != NULL, "case %zu: %s", i, errors.count ? errors.lines[0] : "");
		const char *w = warning_with(&errors, "plugin 'q': no Accounting writes table");
		ck_assert_msg((w != NULL) == quota_cases[i].warned, "case %zu: %s", i, w ? w : "no warning");
		snprintf(where, sizeof(where), "%s:4: ", path);
		ck_assert_msg(w == NULL || strncmp(w, where, strlen(where)) == 0, "case %zu: %s", i, w);
		config_errors_free(&errors);
	config_free(c);
	}
}
END_TEST

START_TEST(test_an_sql_query_with_one_placeholder_and_a_quoted_question_mark_loads)
{
	struct config_errors errors;
	struct config *c = load_text(LISTEN VHOST(
		"{ name = \"u\"; module = \"SqlUserConfig\"; sql_query = \"SELECT c FROM t "
		"WHERE a = ? AND b <> 'why?' AND `c?` = 1 -- really?\"; }"), &errors);

	ck_assert_msg(c != NULL, "%s", errors.count ? errors.lines[0] : "");
	ck_assert(config_needs_store(c));
	config_errors_free(&errors);
	config_free(c);
	c = load_text(LISTEN VHOST(ACTION), &errors);
	ck_assert_ptr_nonnull(c);
	ck_assert(!config_needs_store(c));
	config_errors_free(&errors);
	config_free(c);
}
END_TEST

static void setup(void)
{
	counters_init();
}

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_unchecked_fixture(tc, setup, counters_free_all);
	tcase_add_loop_test(tc, test_broken_config_is_refused_at_its_line, 0,
			    (int)(sizeof(cases) / sizeof(cases[0])));
	tcase_add_test(tc, test_unreadable_file_is_refused);
	tcase_add_test(tc, test_every_problem_in_a_file_is_reported);
	tcase_add_test(tc, test_empty_config_loads_with_the_documented_defaults);
	tcase_add_test(tc, test_listen_as_string_or_list_with_ipv6_and_unix);
	tcase_add_test(tc, test_relative_paths_become_absolute);
	tcase_add_test(tc, test_integer_accepted_where_a_number_is_expected);
	tcase_add_test(tc, test_numbers_in_strings_comments_and_floats_stay_as_written);
	tcase_add_test(tc, test_packaged_and_quickstart_configs_load);
	tcase_add_test(tc, test_a_listener_no_virtual_host_serves_is_a_warning_at_its_line);
	tcase_add_test(tc, test_a_quota_no_accounting_feeds_is_a_warning_at_its_line);
	tcase_add_test(tc, test_an_sql_query_with_one_placeholder_and_a_quoted_question_mark_loads);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(config_suite());
}
