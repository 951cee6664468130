/*
 * bench/flusher-rate.c: can the flusher keep up with N distinct-key
 * increments a second?
 *
 *   bench/flusher-rate CONFIG [RATE] [SECONDS]    (default 100000 a second, 20 s)
 *
 * Uses tallyd's own counter cache and flusher against the database CONFIG
 * names, adding RATE increments a second, each to a key never seen before
 * (the flusher's worst case: every increment is a new row).  Once a second it
 * samples the keys waiting to be written; at the end it prints a Markdown
 * section: the rate reached, flushes and their longest duration, the most
 * keys ever waiting, and whether the database holds every row.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "counters.h"
#include "flusher.h"
#include "store.h"
#include "tables.h"

static double now(void)
{
	return (double)clock_ns() / 1e9;
}

static size_t waiting(void)
{
	struct counters_stats c;
	struct flusher_status f;

	counters_stats(&c);
	flusher_status(&f);
	return c.dirty_keys + f.in_flight_keys;
}

int main(int argc, char **argv)
{
	struct config_errors errors = { 0 };
	struct metric_values delta = { { 1, 1, 1000, 1000 } };
	struct flusher_status status;
	char key[32];

	if (argc < 2) {
		fprintf(stderr, "usage: flusher-rate CONFIG [RATE] [SECONDS]\n");
		return 2;
	}
	long rate = argc > 2 ? atol(argv[2]) : 100000, seconds = argc > 3 ? atol(argv[3]) : 20;
	struct config *config = config_load(argv[1], &errors);
	if (config == NULL) {
		for (size_t i = 0; i < errors.count; i++)
			fprintf(stderr, "%s\n", errors.lines[i]);
		return 1;
	}
	config_errors_free(&errors);
	counters_init();
	int table = tables_register("acct_flusher_rate");
	tables_add_pattern(table, "%Y-%m", 1);
	int period = periods_now(table, "%Y-%m");
	size_t month_len;
	const char *month = periods_time(period, &month_len);
	flusher_start(config, NULL);

	double start = now(), next_sample = start + 1;
	size_t most_waiting = 0;
	long added = 0;
	while (added < rate * seconds) {
		/* keep to RATE a second, in slices of a thousand */
		double due = start + (double)(added + 1000) / (double)rate;
		while (now() < due)
			nanosleep(&(struct timespec){ .tv_nsec = 200000 }, NULL);
		for (int i = 0; i < 1000; i++, added++) {
			int len = snprintf(key, sizeof(key), "10.%ld.%ld.%ld", (added >> 16) & 255,
					   (added >> 8) & 255, added & 255);
			counters_add(period, key, (size_t)len, &delta);
		}
		if (now() >= next_sample) {
			size_t w = waiting();
			most_waiting = w > most_waiting ? w : most_waiting;
			next_sample += 1;
		}
	}
	double elapsed = now() - start;
	flusher_status(&status);
	uint64_t flushes_during = status.flushes;
	flusher_stop();
	flusher_status(&status);

	struct store_failure failure;
	struct store *s = store_open(&config->database, config->database.statement_timeout,
				     &failure);
	struct store_row probe = { .key = key, .key_len = strlen(key), .time = month,
				   .time_len = month_len };
	bool last_written = s && s->ops->select(s, "acct_flusher_rate", &probe, 1) == STORE_OK &&
			    probe.found;
	printf("## Flusher throughput\n\n"
	       "`bench/flusher-rate`: %ld increments a second, each to a new key, for %ld s, into "
	       "%s with flush_interval %.1f s and flush_batch %d.\n\n"
	       "| measured | |\n|---|---|\n"
	       "| increments added | %ld in %.1f s (%.0f a second) |\n"
	       "| flushes while adding | %llu |\n"
	       "| most keys waiting at a sample | %zu (about %.1f s of increments) |\n"
	       "| last flush | %zu keys in %.3f s |\n"
	       "| failed flush attempts | %llu |\n"
	       "| the last key is in the database | %s |\n",
	       rate, seconds, config->database.driver == DATABASE_MYSQL ? "MariaDB" : "SQLite",
	       config->accounting.flush_interval, config->accounting.flush_batch, added, elapsed,
	       (double)added / elapsed, (unsigned long long)flushes_during, most_waiting,
	       (double)most_waiting / (double)rate, status.last_keys, status.last_duration,
	       (unsigned long long)status.failures, last_written ? "yes" : "NO");
	return last_written ? 0 : 1;
}
