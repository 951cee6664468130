/*
 * check_import.c: tallyd --import-mtpolicyd — the how-to's configuration
 * and Debian's shipped mtpolicyd.conf translate into configs tallyd loads,
 * what cannot be translated is reported with its line, and broken input is
 * refused.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "counters.h"
#include "import_mtpolicyd.h"
#include "chain.h"
#include "plugin.h"
#include "unit.h"

static char *output, *report;
static int status;

/* Translates `path`; output and report are kept for the assertions. */
static void import(const char *path)
{
	size_t out_len, report_len;
	FILE *out = open_memstream(&output, &out_len), *rep = open_memstream(&report, &report_len);

	free(output);
	free(report);
	status = import_mtpolicyd(path, out, rep);
	fclose(out);
	fclose(rep);
}

static char *write_temp(const char *text)
{
	static char path[64];
	strcpy(path, "/tmp/check_import_XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void import_text(const char *text)
{
	char *path = write_temp(text);
	import(path);
	unlink(path);
}

/* Loads the translation with tallyd's own loader. */
static struct config *load_output(void)
{
	return unit_load_config(output);
}

START_TEST(test_howto_configuration_translates_whole)
{
	import(TOP_SRCDIR "/tests/unit/data/mtpolicyd-howto.conf");
	ck_assert_int_eq(status, 0);
	ck_assert_str_eq(report, "");
	struct config *c = load_output();
	ck_assert_uint_eq(c->listen_count, 2);
	const struct vhost *v = config_find_vhost(c, 12346, NULL);
	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(v->name, "accounting");
	ck_assert_uint_eq(v->plugin_count, 3);
	ck_assert_str_eq(v->plugins[0]->module->name, "SqlUserConfig");
	ck_assert_str_eq(v->plugins[1]->name, "QuotaIP");
	ck_assert_str_eq(v->plugins[2]->module->name, "Accounting");
	ck_assert_int_eq(c->database.driver, DATABASE_MYSQL);
	ck_assert_str_eq(c->database.name, "mail");
	ck_assert_str_eq(c->database.host, "localhost");
	ck_assert_str_eq(c->database.password, "sec\"ret");
	config_free(c);
}
END_TEST

/* tallyd.service runs tallyd as tallyd and lets it write only /run/tallyd
 * and /var/lib/tallyd: mtpolicyd's user, group and pid_file would stop it. */
START_TEST(test_process_settings_are_the_packaged_ones_with_mtpolicyds_as_comments)
{
	struct config_errors errors = { 0 };
	struct config *packaged = config_load(TOP_SRCDIR "/conf/tallyd.conf", &errors);
	config_errors_free(&errors);
	ck_assert_ptr_nonnull(packaged);

	import(TOP_SRCDIR "/tests/unit/data/mtpolicyd-howto.conf");
	ck_assert_int_eq(status, 0);
	ck_assert(strstr(output, "# mtpolicyd had user = mtpolicyd\n") != NULL);
	ck_assert(strstr(output, "# mtpolicyd had group = mtpolicyd\n") != NULL);
	ck_assert(strstr(output, "# mtpolicyd had pid_file = /run/mtpolicyd/mtpolicyd.pid\n") != NULL);
	struct config *c = load_output();
	ck_assert_str_eq(c->user, packaged->user);
	ck_assert_str_eq(c->group, packaged->group);
	ck_assert_str_eq(c->pid_file, packaged->pid_file);
	ck_assert_str_eq(c->accounting.journal, packaged->accounting.journal);
	config_free(c);

	import_text("port=1\n");                 /* mtpolicyd had none of them */
	ck_assert_int_eq(status, 0);
	ck_assert(strstr(output, "mtpolicyd had") == NULL);
	c = load_output();
	ck_assert_str_eq(c->user, packaged->user);
	ck_assert_str_eq(c->pid_file, packaged->pid_file);
	ck_assert_str_eq(c->accounting.journal, packaged->accounting.journal);
	config_free(c);

	/* an SQLite file the unit does not let tallyd write: the package's,
	 * and exit 2, since its counts start from zero unless it is copied */
	import_text("port=1\ndb_dsn=\"dbi:SQLite:dbname=/var/lib/mtpolicyd/mtpolicyd.sqlite\"\n");
	ck_assert_int_eq(status, 2);
	ck_assert(strstr(report, ":2: database /var/lib/mtpolicyd/mtpolicyd.sqlite: ") != NULL);
	ck_assert(strstr(output, "# mtpolicyd's file was /var/lib/mtpolicyd/mtpolicyd.sqlite") != NULL);
	c = load_output();
	ck_assert_str_eq(c->database.path, packaged->database.path);
	config_free(c);
	import_text("port=1\ndb_dsn=\"dbi:SQLite:dbname=/var/lib/tallyd/counts.sqlite\"\n");
	ck_assert_int_eq(status, 0);
	c = load_output();
	ck_assert_str_eq(c->database.path, "/var/lib/tallyd/counts.sqlite");
	config_free(c);
	config_free(packaged);
}
END_TEST

START_TEST(test_process_knobs_and_log_file_are_listed_and_exit_0)
{
	import_text("port=1\nmin_servers=4\nmin_spare_servers=4\nmax_spare_servers=12\n"
		    "max_servers=50\nmax_requests=1000\nmax_keepalive=100\n"
		    "log_file=/var/log/mtpolicyd.log\nkeepalive_timeout=0\n");
	ck_assert_int_eq(status, 0);
	const char *knobs[] = { ":2: min_servers = 4", ":3: min_spare_servers = 4",
				":4: max_spare_servers = 12", ":5: max_servers = 50",
				":6: max_requests = 1000", ":7: max_keepalive = 100",
				":8: log_file = /var/log/mtpolicyd.log", ":9: keepalive_timeout = 0" };
	for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
		ck_assert_msg(strstr(output, knobs[i]) != NULL, "%s not in the output", knobs[i]);
		ck_assert_msg(strstr(report, knobs[i]) != NULL, "%s not on stderr", knobs[i]);
	}
	ck_assert(strstr(output, "# Left out, changing no answer:\n") != NULL);
	config_free(load_output());

	/* timeouts longer than tallyd takes are cut, and the output loads */
	import_text("port=1\nrequest_timeout=7200\nkeepalive_timeout=99999999999\n");
	ck_assert_int_eq(status, 0);
	ck_assert(strstr(report, ":2: request_timeout = 7200: tallyd's longest is 3600 s") != NULL);
	struct config *c = load_output();
	ck_assert_int_eq(c->request_timeout, 3600);
	ck_assert_int_eq(c->keepalive_timeout, 86400);
	config_free(c);

	/* one part that changes answers is enough for exit 2 */
	import_text("port=1\nmin_servers=4\nvhost_by_policy_context=1\n");
	ck_assert_int_eq(status, 2);
	ck_assert(strstr(report, ":3: vhost_by_policy_context = 1") != NULL);
}
END_TEST

/* mtpolicyd's plugins test `enabled eq 'off'`. */
START_TEST(test_only_the_exact_string_off_switches_a_plugin_off)
{
	import_text("port=1\n<VirtualHost 1>\n"
		    "<Plugin a>\nmodule=Accounting\nfields=sender\nenabled=\"0\"\n</Plugin>\n"
		    "<Plugin b>\nmodule=Accounting\nfields=sender\nenabled=\"OFF\"\n</Plugin>\n"
		    "<Plugin c>\nmodule=Quota\nfield=sender\nmetric=count\nthreshold=5\n"
		    "enabled=\"\"\n</Plugin>\n"
		    "<Plugin d>\nmodule=Accounting\nfields=sender\nenabled=off\n</Plugin>\n"
		    "<Plugin e>\nmodule=Accounting\nfields=sender\nenabled=on\n</Plugin>\n"
		    "</VirtualHost>\n");
	ck_assert_int_eq(status, 0);
	ck_assert(strstr(output, "\"a\"; module = \"Accounting\";\n        fields = \"sender\";\n"
			 "        # mtpolicyd had enabled = \"0\"; only \"off\" switches a plugin off\n"
			 "        enabled = true; }") != NULL);
	ck_assert(strstr(output, "# mtpolicyd had enabled = \"OFF\"; only \"off\" switches a "
			 "plugin off\n        enabled = true; }") != NULL);
	ck_assert(strstr(output, "# mtpolicyd had enabled = \"\"; only \"off\" switches a "
			 "plugin off\n        enabled = true; }") != NULL);
	ck_assert(strstr(output, "\"d\"; module = \"Accounting\";\n        fields = \"sender\";\n"
			 "        enabled = false; }") != NULL);
	ck_assert(strstr(output, "\"e\"; module = \"Accounting\";\n        fields = \"sender\";\n"
			 "        enabled = true; }") != NULL);
	const char *off = strstr(output, "enabled = false");         /* d's, and no other */
	ck_assert(off != NULL && strstr(off + 1, "enabled = false") == NULL);
	config_free(load_output());
}
END_TEST

START_TEST(test_every_connection_left_out_is_listed)
{
	/* after the one tallyd uses, where the import used to stop looking */
	import_text("port=1\n<Connection db>\nmodule=Sql\ndsn=\"dbi:mysql:mail\"\n</Connection>\n"
		    "<Connection memcached>\nmodule=Memcached\nservers=\"127.0.0.1:11211\"\n"
		    "</Connection>\n");
	ck_assert_int_eq(status, 0);                /* it serves nothing tallyd runs */
	ck_assert(strstr(report, ":6: connection memcached (module Memcached)") != NULL);
	ck_assert(strstr(output, "#   ") != NULL && strstr(output, ":6: connection memcached") != NULL);
	struct config *c = load_output();
	ck_assert_str_eq(c->database.name, "mail");
	config_free(c);

	import_text("port=1\n<Connection db>\nmodule=Sql\ndsn=\"dbi:mysql:mail\"\n</Connection>\n"
		    "<Connection other>\nmodule=Sql\ndsn=\"dbi:mysql:other\"\n</Connection>\n");
	ck_assert_int_eq(status, 2);                /* what reads it would read mail */
	ck_assert(strstr(report, ":6: connection other (Sql): tallyd has one database, "
			 "connection db's") != NULL);
}
END_TEST

START_TEST(test_debian_configuration_translates_what_tallyd_has)
{
	import(TOP_SRCDIR "/tests/unit/data/mtpolicyd-debian.conf");
	ck_assert_int_eq(status, 2);
	ck_assert(strstr(report, "mtpolicyd-debian.conf:66: plugin greylist (module Greylist): "
			 "tallyd has no such module") != NULL);
	ck_assert(strstr(report, ":48: <SessionCache>") == NULL);   /* translated */
	ck_assert(strstr(report, ":58: <SessionCache> lock_timeout = 10: tallyd keeps sessions "
			 "in its own memory") != NULL);
	ck_assert(strstr(report, "min_servers = 4") != NULL);
	ck_assert(strstr(report, "keepalive_timeout = 0") != NULL);
	ck_assert(strstr(report, ":37: connection memcached (module Memcached)") != NULL);
	ck_assert(strstr(output, "# Left out") != NULL);      /* listed in the output too */
	struct config *c = load_output();
	ck_assert_uint_eq(c->vhost_count, 0);                  /* nothing tallyd can run */
	ck_assert_str_eq(c->listen[0].spec, "127.0.0.1:12345");
	ck_assert_int_eq(c->database.driver, DATABASE_SQLITE);
	ck_assert_str_eq(c->database.path, "/var/lib/tallyd/tallyd.sqlite");
	ck_assert(c->session_cache.enabled);
	ck_assert_int_eq(c->session_cache.ttl, 300);
	ck_assert(strstr(report, ":43: database /var/lib/mtpolicyd/mtpolicyd.sqlite: "
			 "tallyd.service lets tallyd write only /var/lib/tallyd/") != NULL);
	config_free(c);
}
END_TEST

START_TEST(test_strings_are_escaped_for_libconfig)
{
	import_text("port=\"127.0.0.1:1\"\n<VirtualHost 1>\n<Plugin a>\nmodule=\"Action\"\n"
		    "action = 'reject say \"no\" \\\\ now'\n</Plugin>\n</VirtualHost>\n");
	ck_assert_int_eq(status, 0);
	struct config *c = load_output();
	struct attribute none[1];
	struct request req = { none, 0 };
	struct session s;
	session_init(&s);
	ck_assert_str_eq(unit_run_chain(config_find_vhost(c, 1, NULL), &req, &s),
			 "reject say \"no\" \\\\ now");
	session_free(&s);
	config_free(c);
}
END_TEST

START_TEST(test_unknown_modules_and_options_are_reported_with_their_lines)
{
	import_text("port=\"127.0.0.1:1\"\n<VirtualHost 1>\n  <Plugin rbl>\n    module = \"RBL\"\n"
		    "  </Plugin>\n  <Plugin q>\n    module = \"quota\"\n    field = sender\n"
		    "    metric = count\n    threshold = 5\n    on_error = continue\n  </Plugin>\n"
		    "</VirtualHost>\n");
	ck_assert_int_eq(status, 2);
	ck_assert(strstr(report, ":3: plugin rbl (module RBL): tallyd has no such module") != NULL);
	ck_assert(strstr(report, ":11: plugin q: option on_error") != NULL);
	struct config *c = load_output();
	ck_assert_uint_eq(config_find_vhost(c, 1, NULL)->plugin_count, 1);
	config_free(c);
}
END_TEST

/* place() builds the line in a growable buffer: nothing is cut at 400 bytes
 * as the reader's and writer's fixed buffers once did. */
START_TEST(test_long_values_are_reported_whole)
{
	char text[1200], option[1001];

	memset(option, 'x', sizeof(option) - 1);
	option[sizeof(option) - 1] = '\0';
	snprintf(text, sizeof(text), "port=1\n%s = 1\n", option);
	import_text(text);
	ck_assert_int_eq(status, 2);
	ck_assert(strstr(report, option) != NULL);
	ck_assert(strstr(report, ":2: ") != NULL);
}
END_TEST

START_TEST(test_database_names_from_each_dsn_form)
{
	import_text("port=1\nhost=127.0.0.1\ndb_dsn=\"dbi:mysql:mail\"\ndb_user=u\ndb_password=p\n");
	ck_assert_int_eq(status, 0);
	struct config *c = load_output();
	ck_assert_str_eq(c->database.name, "mail");
	ck_assert_str_eq(c->database.user, "u");
	ck_assert_str_eq(c->listen[0].spec, "127.0.0.1:1");      /* a bare port takes host */
	config_free(c);

	import_text("port=1\n<Connection db>\nmodule=Sql\n"
		    "dsn=\"dbi:mysql:database=x;host=db.example;port=3307;mysql_socket=/run/m.sock\"\n"
		    "</Connection>\n");
	c = load_output();
	ck_assert_str_eq(c->database.name, "x");
	ck_assert_str_eq(c->database.host, "db.example");
	ck_assert_int_eq(c->database.port, 3307);
	ck_assert_str_eq(c->database.socket, "/run/m.sock");
	ck_assert_str_eq(c->listen[0].spec, "127.0.0.1:1");      /* mtpolicyd's default host */
	config_free(c);

	import_text("port=\"1,127.0.0.2:2\"\nhost=*\n");
	c = load_output();
	ck_assert_str_eq(c->listen[0].spec, "*:1");
	ck_assert_str_eq(c->listen[1].spec, "127.0.0.2:2");
	config_free(c);

	import_text("port=1\ndb_dsn=\"dbi:Pg:dbname=mail\"\n");
	ck_assert_int_eq(status, 2);
	ck_assert(strstr(report, "tallyd speaks to MySQL/MariaDB and SQLite only") != NULL);
}
END_TEST

START_TEST(test_a_session_cache_becomes_session_cache_with_expire_as_ttl)
{
	import_text("port=1\n<SessionCache>\nmodule = \"Redis\"\nexpire = 900\n</SessionCache>\n");
	ck_assert_int_eq(status, 0);
	struct config *c = load_output();
	ck_assert(c->session_cache.enabled);
	ck_assert_int_eq(c->session_cache.ttl, 900);
	config_free(c);

	/* no expire: mtpolicyd's 300 s; 0 (never in memcached): tallyd's longest */
	import_text("port=1\n<SessionCache>\nmodule = Memcached\n</SessionCache>\n");
	c = load_output();
	ck_assert_int_eq(c->session_cache.ttl, 300);
	config_free(c);
	import_text("port=1\n<SessionCache>\nmodule = Memcached\nexpire = 0\n</SessionCache>\n");
	ck_assert_int_eq(status, 0);
	ck_assert(strstr(report, ":4: <SessionCache> expire = 0: tallyd keeps a message's "
			 "session 1 to 604800 s; it keeps it 604800 s") != NULL);
	c = load_output();
	ck_assert_int_eq(c->session_cache.ttl, 604800);
	config_free(c);

	/* module None, mtpolicyd's default, and no block at all: no cache */
	import_text("port=1\n<SessionCache>\nmodule = None\n</SessionCache>\n");
	ck_assert_int_eq(status, 0);
	c = load_output();
	ck_assert(!c->session_cache.enabled);
	config_free(c);
	import_text("port=1\n");
	c = load_output();
	ck_assert(!c->session_cache.enabled);
	config_free(c);
}
END_TEST

START_TEST(test_broken_or_missing_files_are_refused)
{
	import_text("port=1\n<VirtualHost 1>\n<Plugin a>\nmodule=Action\n</VirtualHost>\n");
	ck_assert_int_eq(status, 1);
	ck_assert(strstr(report, ":5: </VirtualHost> closes no open <VirtualHost>") != NULL);
	ck_assert_str_eq(output, "");
	import_text("port=1\n<VirtualHost 1>\n");
	ck_assert_int_eq(status, 1);
	ck_assert(strstr(report, ":2: <VirtualHost 1> is never closed") != NULL);
	import("/nonexistent/mtpolicyd.conf");
	ck_assert_int_eq(status, 1);
	ck_assert(strstr(report, "cannot read the file") != NULL);
}
END_TEST

static void setup(void)
{
	counters_init();
}

static Suite *import_suite(void)
{
	Suite *s = suite_create("import");
	TCase *tc = tcase_create("import");

	tcase_add_unchecked_fixture(tc, setup, counters_free_all);
	tcase_add_test(tc, test_howto_configuration_translates_whole);
	tcase_add_test(tc, test_process_settings_are_the_packaged_ones_with_mtpolicyds_as_comments);
	tcase_add_test(tc, test_process_knobs_and_log_file_are_listed_and_exit_0);
	tcase_add_test(tc, test_only_the_exact_string_off_switches_a_plugin_off);
	tcase_add_test(tc, test_every_connection_left_out_is_listed);
	tcase_add_test(tc, test_debian_configuration_translates_what_tallyd_has);
	tcase_add_test(tc, test_strings_are_escaped_for_libconfig);
	tcase_add_test(tc, test_unknown_modules_and_options_are_reported_with_their_lines);
	tcase_add_test(tc, test_long_values_are_reported_whole);
	tcase_add_test(tc, test_database_names_from_each_dsn_form);
	tcase_add_test(tc, test_a_session_cache_becomes_session_cache_with_expire_as_ttl);
	tcase_add_test(tc, test_broken_or_missing_files_are_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(import_suite());
}
