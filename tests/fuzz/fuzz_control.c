/*
 * fuzz_control.c: libFuzzer target for the control socket: what a tallyctl
 * client sends (admin.c reads it, control.c answers it).
 *
 * The input's first byte picks the chunk size in which the rest is
 * delivered (and, with its top bit, three copies of it, to fill the 8 KiB
 * a client may send); the rest is delivered whole too.  Checked: a request
 * is in exactly when a newline comes before any NUL in those 8 KiB; both
 * deliveries read the same line and split it into the same arguments,
 * each inside the line, non-empty, with no tab or newline, at most eight;
 * the answers are "ok", "error: ..." or "usage: ..." lines, and the same (for `stats`,
 * the first line: the uptime may tick between them).  Commands
 * run for real against a loaded config (admin_fuzz.h), but `flush`,
 * `reset` and `reload` stop at their arguments: they wait for the flusher
 * and main threads, which a fuzzer has not.  A period `show` names is
 * marked read in full first, as the loader does, so it never waits for
 * the database.  Every key `show` names stays in the counter cache, which
 * the flusher would trim: past CACHE_KEYS keys the cache starts afresh.
 */
#include <stdint.h>

#include "admin_fuzz.h"
#include "control.h"
#include "loader.h"
#include "tables.h"
#include "timekey.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	admin_fuzz_start();
	return 0;
}

/* Splits the line in `in` (a copy: splitting writes) and checks the
 * arguments; returns their count. */
static int split(const struct admin_input *in, char *line, char **args)
{
	memcpy(line, in->text, in->len + 1);
	bool tabs = strchr(line, '\t') != NULL && strcspn(line, "\t") < strcspn(line, "\n");
	int count = admin_split_command(line, args);

	check(count >= 0 && count <= ADMIN_ARGS_MAX);
	for (int i = 0; i < count; i++) {
		size_t n = strlen(args[i]);
		check(args[i] >= line && args[i] + n <= line + in->len && n > 0);
		check(strpbrk(args[i], "\t\n") == NULL);
		check(tabs || strchr(args[i], ' ') == NULL);
	}
	return count;
}

/* What `show FIELD KEY [TIME]` reads: its period, marked read in full. */
static void mark_period_read(char **args, int count)
{
	int ids[8];
	char pattern[TABLES_PATTERN_MAX];
	const char *time;
	size_t time_len;

	if (count < 3 || count > 4 || strcmp(args[0], "show") != 0 ||
	    tables_for(args[1], ids, 8, pattern) != 1)
		return;
	time = count == 4 ? args[3] : timekey_now(pattern[0] ? pattern : "%Y-%m", &time_len);
	int period = periods_get(ids[0], time, strlen(time));
	if (period >= 0)
		periods_set_complete(period);
}

/* Runs the command in `in` (a copy) and checks the answer's form; returns
 * it. */
static struct buf answer(const struct admin_input *in, char *line, bool complete)
{
	struct buf out;

	buf_init(&out);
	memcpy(line, in->text, in->len + 1);
	control_answer_command(&out, line, complete);
	check(out.len > 0 && out.data[out.len - 1] == '\n' && strlen(out.data) == out.len);
	check(strncmp(out.data, "ok\n", 3) == 0 || strncmp(out.data, "error: ", 7) == 0 ||
	      strncmp(out.data, "usage: ", 7) == 0);
	check(complete || strcmp(out.data, "error: send one command line\n") == 0);
	return out;
}

#define CACHE_KEYS 50000

/* Empties the counter cache once it holds CACHE_KEYS keys, and the
 * loader's queue, which points into it, first. */
static void trim_cache(void)
{
	struct counters_stats stats;
	struct loader_work work = { 0 };

	counters_stats(&stats);
	if (stats.keys < CACHE_KEYS)
		return;
	loader_take(&work);
	loader_work_free(&work);
	counters_free_all();
	counters_init();
}

static bool waits_for_another_thread(const char *command)
{
	return strcmp(command, "flush") == 0 || strcmp(command, "reset") == 0 ||
	       strcmp(command, "reload") == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size)
{
	static struct admin_input whole, pieces;
	static char line[2][ADMIN_INPUT_MAX];
	char *args[2][ADMIN_ARGS_MAX];

	if (size < 1)
		return 0;
	bool complete = admin_fuzz_receive(bytes, size, &whole, &pieces);

	int count = 0;
	if (complete) {
		count = split(&whole, line[0], args[0]);
		check(split(&pieces, line[1], args[1]) == count);
		for (int i = 0; i < count; i++)
			check(strcmp(args[0][i], args[1][i]) == 0);
	}
	if (count > 0 && waits_for_another_thread(args[0][0]))
		return 0;
	mark_period_read(args[0], count);
	bool stats = count > 0 && strcmp(args[0][0], "stats") == 0;
	struct buf a = answer(&whole, line[0], complete), b = answer(&pieces, line[1], complete);
	size_t same = stats ? strcspn(a.data, "\n") + 1 : a.len;    /* the uptime may tick */
	check(a.len == b.len || stats);
	check(memcmp(a.data, b.data, same) == 0);
	buf_free(&a);
	buf_free(&b);
	trim_cache();
	return 0;
}
