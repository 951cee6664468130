/*
 * bench/cache-memory.c: bytes of memory per key in tallyd's counter cache.
 *
 *   bench/cache-memory [KEYS]      (default 1000000)
 *
 * Fills the real cache (counters.c) with KEYS client addresses in the
 * current month, a period known in full (as after the loader's bulk load),
 * each read and incremented once, as the how-to chain does, committing
 * what is pending every 10,000 keys as the flusher would, and prints the
 * growth of the resident set size divided by KEYS.  Single-threaded, no
 * database: the daemon's own figure is bench/daemon-memory's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "counters.h"
#include "tables.h"

/* What the flusher does after a commit. */
static void commit_pending(void)
{
	struct counter_batch batch = { 0 };

	counters_take_pending(&batch);
	uint32_t epoch = counters_next_epoch();
	for (size_t i = 0; i < batch.count; i++)
		counters_committed(batch.keys[i], NULL, epoch);
	counter_batch_free(&batch);
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			kib = strtol(line + 6, NULL, 10);
	}
	if (f)
		fclose(f);
	return kib;
}

int main(int argc, char **argv)
{
	long keys = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
	struct metric_values delta = { { 1, 1, 2000, 2000 } }, total;
	char key[32];
	uint64_t ticket;

	counters_init();
	int table = tables_register("acct_client_address");
	tables_add_pattern(table, "%Y-%m", 1);
	int period = periods_now(table, "%Y-%m");
	periods_set_complete(period);
	long before = rss_kib();
	for (long i = 0; i < keys; i++) {
		int len = snprintf(key, sizeof(key), "10.%ld.%ld.%ld", (i >> 16) & 255,
				   (i >> 8) & 255, i & 255);
		counters_total(period, key, (size_t)len, true, &total, &ticket);
		counters_add(period, key, (size_t)len, &delta);
		if (i % 10000 == 9999)
			commit_pending();
	}
	long after = rss_kib();
	printf("keys %ld, rss growth %.1f MiB, %.0f bytes per key\n", keys,
	       (double)(after - before) / 1024, (double)(after - before) * 1024 / (double)keys);
	return 0;
}
