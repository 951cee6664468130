/*
 * unit.h: what every Check test program shares — running its suite and
 * turning the result into the exit status automake's test driver reads,
 * and running a chain with the test in the loader's place.
 */
#ifndef TALLYD_UNIT_H
#define TALLYD_UNIT_H

#include <check.h>
#include <stdlib.h>

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
