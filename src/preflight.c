/*
 * preflight.c: what start needs from the system (see preflight.h).
 *
 * A path is "writable" as start will use it: a file that exists must be
 * writable and so must its directory (SQLite puts its -wal and -shm files
 * beside it, the pid file is replaced by a rename); a file that does not
 * exist yet needs a writable directory.  Started as root with `user` set,
 * the daemon opens the database and the journal after it has dropped
 * privileges: those are checked by a child process that has taken the
 * user's identity, so that the answer is the kernel's, ACLs included.
 * Main thread only; no state.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "preflight.h"

int preflight_identity(const struct config *config, uid_t *uid, gid_t *gid,
		       struct config_errors *errors)
{
	int problems = 0;

	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	if (config->user[0] != '\0') {
		struct passwd *pw = getpwnam(config->user);
		if (pw == NULL) {
			config_error_at(errors, config->source[SOURCE_USER], "user '%s' does not "
					"exist", config->user);
			problems++;
		} else {
			*uid = pw->pw_uid;
			*gid = pw->pw_gid;
		}
	}
	if (config->group[0] != '\0') {
		struct group *gr = getgrnam(config->group);
		if (gr == NULL) {
			config_error_at(errors, config->source[SOURCE_GROUP], "group '%s' does not "
					"exist", config->group);
			problems++;
		} else {
			*gid = gr->gr_gid;
		}
	}
	return problems;
}

/* 0 when the effective identity may write `path` (a file or directory),
 * else the errno that says why not. */
static int writable_here(const char *path)
{
	return faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) == 0 ? 0 : errno;
}

/* The same, as `user` (uid, gid) when that is another identity than
 * ours: a child process takes it and asks the kernel. */
static int writable_as(const char *path, const char *user, uid_t uid, gid_t gid)
{
	if (uid == (uid_t)-1 || (uid == geteuid() && gid == getegid()))
		return writable_here(path);
	pid_t pid = fork();
	if (pid < 0)
		return errno;
	if (pid == 0) {
		if (initgroups(user, gid) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
			_exit(255);
		_exit(writable_here(path) & 0xff);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return errno;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 255)
		return EPERM;
	return WEXITSTATUS(status);
}

/* Checks that `path` can be created or written (see the header comment);
 * records a problem at `where` for `what` ("database.path").  Flags:
 * REPLACED, a file replaced by a rename, never written (the pid file, the
 * RateLimit state): only its directory must be writable; MADE_AT_START, a
 * directory systemd makes (RuntimeDirectory=) just before start: one that
 * does not exist yet is only a warning. */
enum { REPLACED = 1, MADE_AT_START = 2 };

static int check_path(const char *path, const char *what, const char *where, const char *user,
		      uid_t uid, gid_t gid, int flags, struct config_errors *errors)
{
	struct stat st;
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	int err;

	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	if (stat(dir, &st) < 0 && errno == ENOENT && (flags & MADE_AT_START)) {
		config_warning_at(errors, where, "%s %s: directory %s does not exist (yet): start "
				  "fails unless it is made first, as the systemd unit's "
				  "RuntimeDirectory= does", what, path, dir);
		free(dir);
		return 0;
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		config_error_at(errors, where, "%s %s: directory %s %s", what, path, dir,
				stat(dir, &st) < 0 ? "does not exist" : "is not a directory");
		free(dir);
		return 1;
	}
	if ((err = writable_as(dir, user, uid, gid)) != 0) {
		config_error_at(errors, where, "%s %s: user %s cannot write directory %s: %s",
				what, path, user, dir, strerror(err));
		free(dir);
		return 1;
	}
	free(dir);
	if (!(flags & REPLACED) && stat(path, &st) == 0 &&
	    (err = writable_as(path, user, uid, gid)) != 0) {
		config_error_at(errors, where, "%s %s: user %s cannot write it: %s", what, path,
				user, strerror(err));
		return 1;
	}
	return 0;
}

/* The journal is a directory that start creates when it is missing. */
static int check_directory(const char *path, const char *what, const char *where,
			   const char *user, uid_t uid, gid_t gid, struct config_errors *errors)
{
	struct stat st;
	int err;

	if (stat(path, &st) < 0)          /* its parent must take it */
		return check_path(path, what, where, user, uid, gid, 0, errors);
	if (!S_ISDIR(st.st_mode)) {
		config_error_at(errors, where, "%s %s: not a directory", what, path);
		return 1;
	}
	if ((err = writable_as(path, user, uid, gid)) != 0) {
		config_error_at(errors, where, "%s %s: user %s cannot write it: %s", what, path,
				user, strerror(err));
		return 1;
	}
	return 0;
}

int preflight_paths(const struct config *config, uid_t uid, gid_t gid,
		    struct config_errors *errors)
{
	struct passwd *self = getpwuid(geteuid());
	char *me = xstrdup(self ? self->pw_name : "(this user)");
	int problems = 0;

	if (config->pid_file[0] != '\0')
		problems += check_path(config->pid_file, "pid_file", config->source[SOURCE_PID_FILE],
				       me, (uid_t)-1, (gid_t)-1, REPLACED | MADE_AT_START, errors);
	/* the database and the journal are opened after privileges drop */
	bool drops = geteuid() == 0 && uid != (uid_t)-1;
	const char *user = drops ? config->user : me;
	if (!drops) {
		uid = (uid_t)-1;
		gid = (gid_t)-1;
	} else if (gid == (gid_t)-1) {
		gid = getegid();
	}
	/* without a plugin that uses the database, neither is opened */
	bool store = config_needs_store(config);
	if (store && config->database.driver == DATABASE_SQLITE)
		problems += check_path(config->database.path, "database.path",
				       config->source[SOURCE_DATABASE_PATH], user, uid, gid, 0, errors);
	bool journal = config->accounting.journal[0] != '\0';
	if (store && journal)
		problems += check_directory(config->accounting.journal, "accounting.journal",
					    config->source[SOURCE_JOURNAL], user, uid, gid, errors);
	/* the RateLimit state file is written after the drop too (ratestate.h) */
	if (config_uses_module(config, "RateLimit")) {
		if (config->ratelimit_state[0] != '\0')
			problems += check_path(config->ratelimit_state, "ratelimit_state",
					       config->source[SOURCE_RATELIMIT_STATE], user, uid, gid,
					       REPLACED, errors);
		else if (journal && !store)
			problems += check_directory(config->accounting.journal,
						    "accounting.journal", config->source[SOURCE_JOURNAL],
						    user, uid, gid, errors);
	}
	free(me);
	return problems;
}
