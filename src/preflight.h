/*
 * preflight.h: what start needs from the system, checked before it is
 * needed, the same way by `tallyd -t` and by start.
 *
 * preflight_identity() finds `user` and `group`; preflight_paths() checks
 * that the files start writes can be written: the pid_file's directory (by
 * the user tallyd starts as: it is written before privileges drop), and,
 * when the config needs a store, the SQLite file or its directory and the
 * journal directory (by the user it runs as once privileges drop: started
 * as root with `user` set, that user, checked in a child process that
 * takes that user's identity).  Each problem is a "FILE:LINE: message" in
 * `errors` at the setting's place; both return how many they found.  A
 * pid_file directory that does not exist is a warning only: systemd makes
 * it (RuntimeDirectory=) just before start.
 * Main thread, at start and for -t.
 */
#ifndef TALLYD_PREFLIGHT_H
#define TALLYD_PREFLIGHT_H

#include <sys/types.h>

#include "config.h"

/* uid and gid are (uid_t)-1 / (gid_t)-1 when the config asks no change. */
int preflight_identity(const struct config *config, uid_t *uid, gid_t *gid,
		       struct config_errors *errors);
int preflight_paths(const struct config *config, uid_t uid, gid_t gid,
		    struct config_errors *errors);

#endif
