/*
 * control.h: the admin thread — tallyctl's control socket and the optional
 * Prometheus endpoint (metrics_listen).
 *
 * tallyctl sends one line ("stats", "show FIELD KEY [TIME]", "reset FIELD
 * KEY [TIME]", "forget FIELD KEY", "flush", "reload") and reads the answer
 * until the server closes: a first line "ok" or "error: why", then text.
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

#endif
