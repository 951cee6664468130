/*
 * bench/cache-memory.c: bytes of memory per key in tallyd's counter cache.
 *
 *   bench/cache-memory [KEYS]      (default 1000000)
 *
 * Fills the real cache (counters.c) with KEYS client addresses in the
 * current month, each loaded from a fake database and incremented once, as
 * the how-to chain does, and prints the growth of the resident set size
 * divided by KEYS.  Single-threaded, no database.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "counters.h"

static int no_rows(const char *table, const char *key, size_t key_len, const char *time,
		   size_t time_len, struct metric_values *out, void *arg)
{
	memset(out, 0, sizeof(*out));
	return 0;
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
	struct counters_loader loader = { .load = no_rows, .wait_seconds = 1 };
	struct metric_values delta = { { 1, 1, 2000, 2000 } }, total;
	char time_key[16], key[32];
	time_t now = time(NULL);

	strftime(time_key, sizeof(time_key), "%Y-%m", localtime(&now));
	counters_init(&loader);
	int table = counters_table("acct_client_address");
	long before = rss_kib();
	for (long i = 0; i < keys; i++) {
		int len = snprintf(key, sizeof(key), "10.%ld.%ld.%ld", (i >> 16) & 255,
				   (i >> 8) & 255, i & 255);
		counters_total(table, key, (size_t)len, time_key, strlen(time_key), &total);
		counters_add(table, key, (size_t)len, time_key, strlen(time_key), &delta);
	}
	long after = rss_kib();
	printf("keys %ld, rss growth %.1f MiB, %.0f bytes per key\n", keys,
	       (double)(after - before) / 1024, (double)(after - before) * 1024 / (double)keys);
	return 0;
}
