/*
 * admin_fuzz.h: what fuzz_control.c and fuzz_metrics.c share: the daemon's
 * state as the admin thread sees it, without threads or a database (a
 * loaded config in force, the counter and user config caches, statistics),
 * and giving a client's bytes to admin.c the way the admin thread's reads
 * do, in chunks of any size, then the end of input.
 */
#ifndef TALLYD_ADMIN_FUZZ_H
#define TALLYD_ADMIN_FUZZ_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "chain.h"
#include "config.h"
#include "counters.h"
#include "live.h"
#include "stats.h"
#include "usercache.h"

/* Two accounting tables (acct_client_address read by a Quota,
 * acct_sasl_username), a SqlUserConfig plugin for `forget`, and a virtual
 * host whose name needs escaping in a Prometheus label. */
static const char admin_fuzz_config[] =
	"listen = \"127.0.0.1:12399\";\n"
	"database = { driver = \"sqlite\"; path = \"/nonexistent/fuzz.sqlite\"; };\n"
	"virtual_hosts = ( { port = 12399; name = \"fuzz \\\"vhost\\\" \\\\ one\"; plugins = (\n"
	"  { name = \"Users\"; module = \"SqlUserConfig\"; field = \"sasl_username\";\n"
	"    sql_query = \"SELECT config FROM users WHERE name=?\"; },\n"
	"  { name = \"QuotaIP\"; module = \"Quota\"; field = \"client_address\";\n"
	"    metric = \"count\"; threshold = 10; action = \"defer over quota\"; },\n"
	"  { name = \"Acct\"; module = \"Accounting\"; fields = \"client_address, sasl_username\"; }\n"
	"); } );\n";

/* Fails the run, as a broken invariant should. */
static void check(bool ok)
{
	if (!ok)
		abort();
}

/* Loads the config above and puts it in force, as main.c starts the
 * daemon, for the calling thread in stats slot 0. */
static void admin_fuzz_start(void)
{
	char path[64];
	struct config_errors errors = { 0 };

	snprintf(path, sizeof(path), "/tmp/fuzz_admin_%d.conf", (int)getpid());
	FILE *f = fopen(path, "w");
	check(f != NULL);
	fputs(admin_fuzz_config, f);
	fclose(f);
	counters_init();
	struct config *config = config_load(path, &errors);
	unlink(path);
	for (size_t i = 0; i < errors.count; i++)
		fprintf(stderr, "%s\n", errors.lines[i]);
	config_errors_free(&errors);
	check(config != NULL);
	usercache_init(config->user_config_ttl);
	stats_init(1);
	chain_activate(config);
	live_init(config, 1);
}

/* Gives data[0..len) to `in` `step` bytes a read (0: all in one), then
 * the end of input, until admin.c says the request is in or cut.  Every
 * read must find room while admin.c asks for more. */
static enum admin_input_state admin_fuzz_deliver(struct admin_input *in, const char *data,
						 size_t len, size_t step)
{
	size_t at = 0;
	enum admin_input_state state;

	admin_input_init(in);
	do {
		size_t room, n = step && step < len - at ? step : len - at;
		char *space = admin_input_space(in, &room);
		check(room > 0 && space == in->text + in->len);
		n = n < room ? n : room;
		memcpy(space, data + at, n);
		at += n;
		state = admin_input_add(in, n);
		check(in->len == at && in->text[in->len] == '\0');
	} while (state == ADMIN_INPUT_MORE);
	return state;
}

/* Delivers the input whole and in chunks and checks both against what
 * the bytes say: a request is in when a newline comes before any NUL in
 * the first ADMIN_INPUT_MAX - 1 bytes.  Both texts agree up to the line's
 * end, or up to the NUL that cut it (after it, chunks may have left bytes
 * unread). */
static enum admin_input_state admin_fuzz_deliver_both(struct admin_input *whole,
						      struct admin_input *pieces,
						      const char *data, size_t len, size_t step)
{
	enum admin_input_state state = admin_fuzz_deliver(whole, data, len, 0);
	size_t fits = len < ADMIN_INPUT_MAX - 1 ? len : ADMIN_INPUT_MAX - 1;
	size_t end = strnlen(data, fits);
	const char *newline = memchr(data, '\n', end);

	check(state == (newline ? ADMIN_INPUT_LINE : ADMIN_INPUT_NO_LINE));
	check(admin_fuzz_deliver(pieces, data, len, step) == state);
	size_t same = newline ? (size_t)(newline - data) + 1 : end < fits ? end + 1 : fits;
	check(pieces->len >= same && whole->len == fits);
	check(memcmp(whole->text, pieces->text, same) == 0);
	return state;
}

/* The input is repeated `copies` times, so that inputs shorter than the
 * fuzzer's max_len can fill the 8 KiB a client may send. */
static char *admin_fuzz_repeat(const char *data, size_t len, size_t copies)
{
	char *all = malloc(len * copies + 1);

	for (size_t i = 0; i < copies; i++)
		memcpy(all + i * len, data, len);
	return all;
}

/* A fuzzer's input as a client's bytes: the first byte picks the chunk
 * size (and, with its top bit, three copies of the rest); delivered whole
 * and in chunks, checked; true when a request line is in. */
static bool admin_fuzz_receive(const uint8_t *bytes, size_t size, struct admin_input *whole,
			       struct admin_input *pieces)
{
	size_t step = (bytes[0] & 0x7f) % 17 + 1, copies = bytes[0] & 0x80 ? 3 : 1;
	char *data = admin_fuzz_repeat((const char *)bytes + 1, size - 1, copies);
	size_t len = (size - 1) * copies;
	bool complete = admin_fuzz_deliver_both(whole, pieces, data, len, step) ==
			ADMIN_INPUT_LINE;

	free(data);
	return complete;
}

#endif
