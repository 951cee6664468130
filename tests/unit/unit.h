/*
 * unit.h: what every Check test program shares — running its suite and
 * turning the result into the exit status automake's test driver reads,
 * loading a config from a text, and running a chain with the test in the
 * loader's place.
 */
#ifndef TALLYD_UNIT_H
#define TALLYD_UNIT_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "chain.h"
#include "counters.h"
#include "usercache.h"

static inline int unit_run(Suite *suite)
{
	SRunner *runner = srunner_create(suite);

	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* Loads a config from `text` (through a temporary file, as tallyd reads
 * one); prints its problems and fails the test when it does not load. */
static inline struct config *unit_load_config(const char *text)
{
	char path[] = "/tmp/check_config_text_XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	struct config_errors errors = { 0 };

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	struct config *config = config_load(path, &errors);
	for (size_t i = 0; i < errors.count; i++)
		fprintf(stderr, "%s\n", errors.lines[i]);
	config_errors_free(&errors);
	unlink(path);
	ck_assert_ptr_nonnull(config);
	return config;
}

/* A config with one virtual host on port 12346 running `plugins`. */
static inline struct config *unit_load_plugins(const char *plugins)
{
	char *text = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);

	fprintf(f, "listen = \"127.0.0.1:12346\";\n"
		"virtual_hosts = ( { port = 12346; plugins = ( %s ); } );\n", plugins);
	fclose(f);
	struct config *config = unit_load_config(text);
	free(text);
	return config;
}

/* Plays the loader of an empty database: answers everything queued with
 * "no row" (a test that needs rows answers the queue itself). */
static inline void unit_answer_queue_with_no_rows(void)
{
	struct loader_work work = { 0 };

	loader_take(&work);
	for (size_t i = 0; i < work.counters.count; i++)
		counters_loaded(work.counters.keys[i], NULL, counters_epoch());
	for (size_t i = 0; i < work.config_count; i++)
		usercache_loaded(work.configs[i], false, "", 0);
	loader_work_free(&work);
}

/* Runs a request through a virtual host as a worker does, with the test as
 * the loader of an empty database whenever a plugin waits. */
static inline const char *unit_run_chain(const struct vhost *vhost, const struct request *req,
					 struct session *s)
{
	struct chain_state state;
	const char *action;

	chain_start(&state);
	while ((action = chain_run(vhost, req, s, &state)) == NULL)
		unit_answer_queue_with_no_rows();
	return action;
}

#endif
