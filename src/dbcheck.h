/*
 * dbcheck.h: `tallyd -t --connect`, the database as this config will use it.
 *
 * dbcheck_run() connects with the configured driver and credentials and,
 * changing nothing, checks what start and the first flush need:
 * tallyd_flushes and every accounting table the config names exist with
 * columns tallyd can use, or may be created by this user; and every
 * SqlUserConfig query prepares, with the ? and the columns tallyd needs.
 * Problems become "FILE:LINE: message" in `errors`; what start will do
 * (a table it will create) is said on `notes`.  Returns the number of
 * problems.  Main thread, for -t only.
 */
#ifndef TALLYD_DBCHECK_H
#define TALLYD_DBCHECK_H

#include <stdio.h>

#include "config.h"

int dbcheck_run(const struct config *config, struct config_errors *errors, FILE *notes);

#endif
