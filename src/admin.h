/*
 * admin.h: how the admin thread reads what a client sends (control.c):
 * when a request is in, the arguments of a tallyctl command line, and
 * whether an HTTP request asks for the metrics.  Pure functions on the
 * caller's buffers; the admin thread and the fuzzers call them.
 *
 * A request is one line.  Whatever follows its newline is ignored.
 */
#ifndef TALLYD_ADMIN_H
#define TALLYD_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#define ADMIN_INPUT_MAX 8192            /* bytes a client may send, with the NUL */
#define ADMIN_ARGS_MAX 8                /* arguments of a command line */

/* What one client has sent so far: text[0..len), NUL-terminated. */
struct admin_input {
	char text[ADMIN_INPUT_MAX];
	size_t len;
};

enum admin_input_state {
	ADMIN_INPUT_MORE,               /* no newline yet: read again */
	ADMIN_INPUT_LINE,               /* a newline is in: answer the line */
	ADMIN_INPUT_NO_LINE,            /* full, the client stopped sending, or a NUL first */
};

/* An empty input. */
void admin_input_init(struct admin_input *in);
/* Where the next read puts its bytes, and *room, how many fit (at least
 * 1 while the state is ADMIN_INPUT_MORE). */
char *admin_input_space(struct admin_input *in, size_t *room);
/* Takes the `n` bytes a read put at admin_input_space() (0: the client
 * stopped sending) and says what to do next.  A NUL byte before the
 * newline makes it ADMIN_INPUT_NO_LINE: a request is text, and the client
 * is answered at once rather than left waiting for its deadline. */
enum admin_input_state admin_input_add(struct admin_input *in, size_t n);

/* Splits a command line in place into at most ADMIN_ARGS_MAX arguments,
 * stored in args; returns their count (0: an empty line).  The line ends
 * at its first newline, without a CR just before it (a CR elsewhere is
 * part of an argument, as in a request value).  When the line holds a tab,
 * tabs separate the arguments (tallyctl sends so, and a key may hold
 * spaces), else spaces (a line typed by hand).  Runs of separators count
 * as one; arguments past the eighth are dropped. */
int admin_split_command(char *line, char **args);

/* Whether the request line of an HTTP request asks for the metrics:
 * GET /metrics or GET /. */
bool admin_asks_for_metrics(const char *request);

#endif
