/*
 * fuzz_config.c: libFuzzer target for the config loader (config.c and the
 * plugin option tables).  Writes the input to one temporary file per
 * process and loads it: no crash, no leak, and every error line starts with
 * the file name, a colon and a line number.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "counters.h"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size)
{
	struct config_errors errors = { 0 };

	if (path[0] == '\0') {
		counters_init();
		snprintf(path, sizeof(path), "/tmp/fuzz_config_%d.conf", (int)getpid());
	}
	FILE *f = fopen(path, "w");
	if (f == NULL)
		abort();
	fwrite(bytes, 1, size, f);
	fclose(f);

	struct config *config = config_load(path, &errors);
	for (size_t i = 0; i < errors.count; i++) {
		size_t n = strlen(path);
		const char *line = errors.lines[i];
		/* @include'd files name themselves; the others must name ours */
		if (strncmp(line, path, n) == 0 && (line[n] != ':' || line[n + 1] < '0' ||
						     line[n + 1] > '9'))
			abort();
	}
	for (size_t i = 0; i < errors.warning_count; i++) {
		size_t n = strlen(path);
		const char *line = errors.warnings[i];
		/* warnings are about a config that loads, and name its lines */
		if (config == NULL || (strncmp(line, path, n) == 0 &&
				       (line[n] != ':' || line[n + 1] < '0' || line[n + 1] > '9')))
			abort();
	}
	if ((config == NULL) != (errors.count > 0))
		abort();
	config_errors_free(&errors);
	config_free(config);
	return 0;
}
