/*
 * import_mtpolicyd.h: an mtpolicyd.conf read and written out as the
 * equivalent tallyd.conf (tallyd --import-mtpolicyd FILE).
 *
 * What tallyd supports is translated: port (and host), log_level, the Sql
 * connection (or db_dsn), and virtual hosts with their Accounting, Quota,
 * SqlUserConfig and Action plugins.  user, group, pid_file and an SQLite
 * file outside /var/lib/tallyd are the package's (user tallyd,
 * /run/tallyd/tallyd.pid, /var/lib/tallyd/tallyd.sqlite), with mtpolicyd's
 * as comments, and the package's journal is added, so that the output
 * starts under debian/tallyd.service as it is.
 * Everything else is listed, with its line in the mtpolicyd file, on
 * `report` and as comments at the top of the output.  Single-threaded; used
 * by the command line only.
 */
#ifndef TALLYD_IMPORT_MTPOLICYD_H
#define TALLYD_IMPORT_MTPOLICYD_H

#include <stdio.h>

/* Returns 0 when everything that decides answers was translated (what
 * changes no answer, such as Net::Server's process settings, log_file or a
 * Memcached connection, may still be listed), 2 when something that may
 * change answers was left out (the output is written all the same), 1 when
 * the file cannot be read or parsed (nothing is written). */
int import_mtpolicyd(const char *path, FILE *out, FILE *report);

#endif
