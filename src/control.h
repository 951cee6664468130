/*
 * control.h: the admin thread — tallyctl's control socket and the optional
 * Prometheus endpoint (metrics_listen).
 *
 * tallyctl sends one line ("stats", "show FIELD KEY [TIME]", "reset FIELD
 * KEY [TIME]", "forget FIELD KEY", "flush", "reload") and reads the answer
 * until the server closes: a first line "ok", "error: why", or "usage:
 * why" (the command line is wrong: tallyctl exits 2), then text.
 * The metrics listener answers GET /metrics in Prometheus' text format.
 */
#ifndef TALLYD_CONTROL_H
#define TALLYD_CONTROL_H

#include "buf.h"
#include "config.h"

/* Reloads the configuration (main.c); 0, or -1 with the reasons in *why. */
typedef int (*control_reload_fn)(struct buf *why);

/* Opens the sockets `config` names and starts the thread in stats slot
 * `slot`.  A socket that cannot be opened is logged and left out. */
void control_start(const struct config *config, int slot, control_reload_fn reload);
void control_stop(void);

/* The admin thread's answers to what a client sent (`text`, NUL-terminated;
 * `complete`: its line is in, see admin.h), appended to `out`: a tallyctl
 * command's, and an HTTP request's (nothing when incomplete: the client is
 * closed without a word).  The fuzzers call them too; `reload` calls the
 * function control_start() was given, and `flush` and `reset` wait for the
 * flusher thread. */
void control_answer_command(struct buf *out, char *text, bool complete);
void control_answer_metrics(struct buf *out, const char *text, bool complete);

#endif
