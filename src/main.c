/*
 * main.c: tallyd's command line, start-up order and shutdown order.
 *
 * Start-up (main thread): read and check the config, check what it needs
 * from the system (preflight.h: the user, group and files it writes; -t
 * stops here, and with --connect checks the database too, dbcheck.h), bind
 * the listeners (as root), daemonize, write the pid file, drop privileges,
 * open the database side (caches, journal, loader, flusher; none when no
 * plugin uses the database), read the RateLimit windows back (ratestate.h),
 * start the workers, the acceptor and the admin thread, then wait for
 * signals, saving the RateLimit windows every snapshot_interval.  Signals
 * are blocked in every thread and taken here with sigwaitinfo() (or
 * sigtimedwait(), between saves), so no handler runs inside other code.
 * Shutdown reverses it: stop accepting, let the workers finish, answer
 * what is buffered, save the RateLimit windows, write every pending
 * increment.
 *
 * Reload (SIGHUP, or tallyctl through the admin thread; reload_lock keeps
 * them apart) swaps in a new config for listeners, virtual hosts, plugins,
 * limits and the log level.  The start-up config stays alive to the end:
 * the database side was built from it, and its settings need a restart.
 *
 * Threads and their statistics slots: workers 0..N-1, then the acceptor,
 * the main thread and the admin thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>

#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chain.h"
#include "clock.h"
#include "config.h"
#include "control.h"
#include "counters.h"
#include "dbcheck.h"
#include "flusher.h"
#include "identity.h"
#include "import_mtpolicyd.h"
#include "journal.h"
#include "listener.h"
#include "loader.h"
#include "live.h"
#include "log.h"
#include "preflight.h"
#include "ratestate.h"
#include "sessioncache.h"
#include "stats.h"
#include "store.h"
#include "tables.h"
#include "usercache.h"
#include "workers.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG SYSCONFDIR "/tallyd/tallyd.conf"

struct options {
	const char *config_file;
	const char *log_level;
	bool foreground;
	bool check_only;
	bool connect;              /* -t --connect: the database too */
};

static struct options options;
static struct config *startup_config;       /* alive until exit */
static bool has_store;                      /* the database side runs */
static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: tallyd [-f] [-t [--connect]] [-c FILE] [-l LEVEL] | --import-mtpolicyd FILE\n"
		"  -c FILE   configuration file (default " DEFAULT_CONFIG ")\n"
		"  -f        stay in the foreground\n"
		"  -t        check the configuration and exit (0 when it is good)\n"
		"  --connect with -t: check the database and its tables too\n"
		"  -l LEVEL  log level: error, warning, notice, info or debug\n"
		"  -V        print the version and exit\n"
		"  -h        print this help and exit\n"
		"  --import-mtpolicyd FILE\n"
		"            print the tallyd.conf equivalent to an mtpolicyd.conf, and\n"
		"            list on stderr what it left out (exit 2 when that changes\n"
		"            answers, 0 when it does not)\n");
}

static void parse_options(int argc, char **argv, struct options *o)
{
	static const struct option long_options[] = {
		{ "import-mtpolicyd", required_argument, NULL, 'I' },
		{ "connect", no_argument, NULL, 'C' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	o->config_file = DEFAULT_CONFIG;
	while ((ch = getopt_long(argc, argv, "c:fl:tVh", long_options, NULL)) != -1) {
		switch (ch) {
		case 'I': exit(import_mtpolicyd(optarg, stdout, stderr));
		case 'C': o->connect = true; break;
		case 'c': o->config_file = optarg; break;
		case 'f': o->foreground = true; break;
		case 'l': o->log_level = optarg; break;
		case 't': o->check_only = true; break;
		case 'V': printf("tallyd %s\n", PACKAGE_VERSION); exit(0);
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(1);
		}
	}
	if (optind < argc || (o->connect && !o->check_only)) {
		usage(stderr);
		exit(1);
	}
}

/* Loads the config, or prints its problems and exits 1; its warnings are
 * left in `warnings` (printed by -t, logged at start). */
static struct config *load_config(const struct options *o, struct config_errors *warnings)
{
	struct config *config = config_load(o->config_file, warnings);

	for (size_t i = 0; i < warnings->count; i++)
		fprintf(stderr, "%s\n", warnings->lines[i]);
	if (config == NULL)
		exit(1);
	if (o->log_level && log_level_parse(o->log_level, &config->log_level) < 0) {
		fprintf(stderr, "tallyd: -l %s: not one of error, warning, notice, info, debug\n",
			o->log_level);
		exit(1);
	}
	return config;
}

/* What start checks against the system, before it needs it: the user and
 * group, and the files it writes.  Problems are printed; false when any. */
static bool preflight(const struct config *config, uid_t *uid, gid_t *gid, bool connect)
{
	struct config_errors errors = { .file = config->file };

	preflight_identity(config, uid, gid, &errors);
	preflight_paths(config, *uid, *gid, &errors);
	if (connect)
		dbcheck_run(config, &errors, stdout);
	for (size_t i = 0; i < errors.warning_count; i++)
		fprintf(stderr, "warning: %s\n", errors.warnings[i]);
	for (size_t i = 0; i < errors.count; i++)
		fprintf(stderr, "%s\n", errors.lines[i]);
	bool ok = errors.count == 0;
	config_errors_free(&errors);
	return ok;
}

/* tallyd -t [--connect]: what start would check, then exit. */
static int check_only(struct config *config, const struct config_errors *warnings)
{
	uid_t uid;
	gid_t gid;

	for (size_t i = 0; i < warnings->warning_count; i++)
		fprintf(stderr, "warning: %s\n", warnings->warnings[i]);
	bool ok = preflight(config, &uid, &gid, options.connect);
	if (ok)
		printf("tallyd: configuration %s is OK%s\n", options.config_file,
		       options.connect ? ", and so is its database" : "");
	config_free(config);
	return ok ? 0 : 1;
}

/* Settings the running daemon cannot change: a reload says so. */
static void warn_restart_only(const struct config *old, const struct config *next)
{
	const struct { const char *name; const char *a, *b; } strings[] = {
		{ "user", old->user, next->user }, { "group", old->group, next->group },
		{ "pid_file", old->pid_file, next->pid_file },
		{ "log_target", old->log_target_name, next->log_target_name },
		{ "syslog_facility", old->syslog_facility_name, next->syslog_facility_name },
		{ "instance_id", old->instance_id, next->instance_id },
		{ "control_socket", old->control_socket, next->control_socket },
		{ "metrics_listen", old->metrics_listen, next->metrics_listen },
		{ "database.driver", old->database.driver_name, next->database.driver_name },
		{ "database.host", old->database.host, next->database.host },
		{ "database.socket", old->database.socket, next->database.socket },
		{ "database.user", old->database.user, next->database.user },
		{ "database.password", old->database.password, next->database.password },
		{ "database.name", old->database.name, next->database.name },
		{ "database.path", old->database.path, next->database.path },
		{ "accounting.journal", old->accounting.journal, next->accounting.journal },
		{ "ratelimit_state", old->ratelimit_state, next->ratelimit_state },
	};
	const struct { const char *name; double a, b; } numbers[] = {
		{ "workers", old->workers, next->workers },
		{ "user_config_ttl", old->user_config_ttl, next->user_config_ttl },
		{ "database.port", old->database.port, next->database.port },
		{ "database.pool_size", old->database.pool_size, next->database.pool_size },
		{ "database.connect_timeout", old->database.connect_timeout,
		  next->database.connect_timeout },
		{ "database.statement_timeout", old->database.statement_timeout,
		  next->database.statement_timeout },
		{ "accounting.flush_interval", old->accounting.flush_interval,
		  next->accounting.flush_interval },
		{ "accounting.flush_batch", old->accounting.flush_batch,
		  next->accounting.flush_batch },
		{ "accounting.refresh_interval", old->accounting.refresh_interval,
		  next->accounting.refresh_interval },
		{ "accounting.journal_sync", old->accounting.journal_sync,
		  next->accounting.journal_sync },
		{ "accounting.snapshot_interval", old->accounting.snapshot_interval,
		  next->accounting.snapshot_interval },
	};

	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		if (strcmp(strings[i].a, strings[i].b) != 0)
			log_warning("reload: %s changed; it takes effect after a restart",
				    strings[i].name);
	}
	for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
		if (numbers[i].a != numbers[i].b)
			log_warning("reload: %s changed; it takes effect after a restart",
				    numbers[i].name);
	}
}

static void configure_session_cache(const struct config *config)
{
	const struct session_cache_config *c = &config->session_cache;

	sessioncache_configure(c->enabled, c->ttl, c->max_entries);
}

/* Reads the config file again and puts it in force; on any problem the
 * running config stays and `why` says what was wrong. */
static int reload(struct buf *why)
{
	struct config_errors errors = { 0 };

	pthread_mutex_lock(&reload_lock);
	struct config *next = config_load(options.config_file, &errors);
	for (size_t i = 0; i < errors.count; i++) {
		log_error("reload refused: %s", errors.lines[i]);
		buf_printf(why, "%s\n", errors.lines[i]);
	}
	if (next && !has_store && config_needs_store(next)) {
		log_error("reload refused: %s: tallyd started without a database (no Accounting, "
			  "Quota or SqlUserConfig); restart it to use one", options.config_file);
		buf_printf(why, "%s: tallyd started without a database (no Accounting, Quota or "
			   "SqlUserConfig); restart it to use one\n", options.config_file);
		config_free(next);
		next = NULL;
	}
	for (size_t i = 0; next && i < errors.warning_count; i++)
		log_warning("%s", errors.warnings[i]);
	config_errors_free(&errors);
	if (next && listener_reload(next) < 0) {
		buf_append_str(why, "a new listen address cannot be bound (see the log)\n");
		config_free(next);
		next = NULL;
	}
	if (next == NULL) {
		pthread_mutex_unlock(&reload_lock);
		return -1;
	}
	if (options.log_level)
		log_level_parse(options.log_level, &next->log_level);
	warn_restart_only(startup_config, next);
	chain_activate(next);
	log_set_level(next->log_level);
	const struct config *old = live_replace(next);
	if (old != startup_config)
		config_free((struct config *)old);
	usercache_forget_all();              /* a changed relay policy applies at once */
	configure_session_cache(next);       /* keeps the marks of messages in progress */
	tables_retire_patterns(next->generation);
	usercache_retire_queries(next->generation);
	log_notice("configuration %s reloaded", options.config_file);
	pthread_mutex_unlock(&reload_lock);
	return 0;
}

/*
 * Forks; the parent waits until the child reports that start-up finished,
 * so that `tallyd` exits non-zero when the daemon could not start.  Returns
 * the file descriptor on which the child reports (see report_ready).
 */
static int daemonize(void)
{
	int ready[2];
	char byte;

	if (pipe(ready) < 0)
		fatal("cannot create a pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		fatal("cannot fork: %s", strerror(errno));
	if (pid > 0) {
		close(ready[1]);
		exit(read(ready[0], &byte, 1) == 1 ? 0 : 1);
	}
	close(ready[0]);
	if (setsid() < 0)
		fatal("setsid failed: %s", strerror(errno));
	if (chdir("/") < 0)
		fatal("cannot change to /: %s", strerror(errno));
	return ready[1];
}

static void report_ready(int fd, const struct config *config)
{
	int null = open("/dev/null", O_RDWR);

	if (fd < 0)
		return;
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		if (config->log_target == LOG_TARGET_SYSLOG)
			dup2(null, STDERR_FILENO);
		close(null);
	}
	if (write(fd, "", 1) != 1)
		log_warning("cannot report start-up to the parent process: %s", strerror(errno));
	close(fd);
}

/* Writes the pid into a new file beside pid_file and renames it over
 * pid_file: whatever stood at that name (a symlink or a hard link planted
 * by whoever can write the directory, the tallyd user in the packaged
 * layout) is replaced, never written through.  The file stays root's: the
 * daemon only needs the directory to remove it at exit. */
static void write_pid_file(const struct config *config)
{
	if (config->pid_file[0] == '\0')
		return;
	struct buf temporary;
	buf_init(&temporary);
	buf_printf(&temporary, "%s.XXXXXX", config->pid_file);
	int fd = mkstemp(temporary.data);
	bool ok = fd >= 0 && dprintf(fd, "%ld\n", (long)getpid()) > 0 &&
		  fchmod(fd, 0644) == 0 && close(fd) == 0;
	if (ok && rename(temporary.data, config->pid_file) < 0)
		ok = false;
	if (!ok) {
		int err = errno;
		if (fd >= 0)
			unlink(temporary.data);
		fatal("cannot write pid_file %s: %s", config->pid_file, strerror(err));
	}
	buf_free(&temporary);
}

static void drop_privileges(const struct config *config, uid_t uid, gid_t gid)
{
	if (uid == (uid_t)-1 && gid == (gid_t)-1)
		return;
	if (geteuid() != 0) {
		log_debug("not started as root: user and group are left as they are");
		return;
	}
	if (gid != (gid_t)-1 && setgid(gid) < 0)
		fatal("cannot change to group %ld: %s", (long)gid, strerror(errno));
	if (uid != (uid_t)-1) {
		if (initgroups(config->user, gid) < 0)
			fatal("cannot set the groups of user %s: %s", config->user, strerror(errno));
		if (setuid(uid) < 0)
			fatal("cannot change to user %s: %s", config->user, strerror(errno));
	}
}

/* Keys whose increments are not in the database yet, for the outage log. */
/* The caches, the journal, the loader and the flusher.  An unreachable
 * MySQL server is an outage tallyd rides out: it starts, answers, and
 * makes its tables when the server is back.  A server that refuses the
 * configured user, password or database, an SQLite file it cannot open,
 * or tables it cannot make are mistakes to report now.  Without a plugin
 * that uses the database there is none of this. */
static void start_database(const struct config *config)
{
	struct store_failure failure;
	char error[512];

	counters_init();
	usercache_init(config->user_config_ttl);
	has_store = config_needs_store(config);
	if (!has_store) {
		log_info("no Accounting, Quota or SqlUserConfig plugin: no database is opened");
		return;
	}
	store_outage_init(flusher_keys_waiting);
	struct store *probe = store_open(&config->database, config->database.connect_timeout,
					 &failure);
	if (probe == NULL && failure.configuration)
		fatal("configuration error: %s", failure.text);
	if (probe == NULL)
		store_outage_begin(&failure);
	else
		probe->ops->close(probe);

	struct journal_replay replay = { 0 };
	const char *journal = config->accounting.journal;
	if (journal[0] != '\0') {
		if (journal_open(journal, config->accounting.journal_sync, &replay, error,
				 sizeof(error)) < 0)
			fatal("journal: %s", error);
		if (replay.records > 0)
			log_notice("journal %s: %zu increments read back, %zu not yet known to be "
				   "in the database", journal, replay.records, replay.restored);
		if (replay.damaged_bytes > 0)
			log_error("journal %s: %zu damaged bytes skipped; the increments in them are "
				  "lost (see above where)", journal, replay.damaged_bytes);
		if (replay.snapshot_keys + replay.snapshot_configs > 0)
			log_notice("journal %s: the snapshot knew the totals of %zu keys and %zu user "
				   "configs; they are used until the database answers", journal,
				   replay.snapshot_keys, replay.snapshot_configs);
	}
	if (identity_init(config, replay.unknown_seq, error, sizeof(error)) < 0)
		fatal("%s", error);
	periods_tick(time(NULL));          /* the loader reads the current periods at once */
	if (loader_start(config) < 0 || flusher_start(config, &replay) < 0)
		fatal("start-up failed");
}

static void stop_database(void)
{
	if (!has_store) {
		usercache_free_all();
		counters_free_all();
		tables_free_all();
		return;
	}
	loader_stop();
	flusher_stop();
	journal_close();
	identity_free();
	usercache_free_all();
	counters_free_all();
	tables_free_all();
}

static void block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Reloads on SIGHUP, saves the RateLimit windows to `rate_state` (NULL:
 * none) every `interval` seconds; returns the signal that asked tallyd to
 * stop. */
static int wait_for_stop(const sigset_t *set, const char *rate_state, double interval)
{
	int64_t next_save = clock_ms() + (int64_t)(interval * 1000);

	for (;;) {
		siginfo_t info;
		int64_t left = next_save - clock_ms();
		struct timespec wait = { .tv_sec = left > 0 ? left / 1000 : 0,
					 .tv_nsec = left > 0 ? left % 1000 * 1000000 : 0 };
		int sig = rate_state ? sigtimedwait(set, &info, &wait) : sigwaitinfo(set, &info);
		if (rate_state && clock_ms() >= next_save) {
			ratestate_save(rate_state, false);
			next_save = clock_ms() + (int64_t)(interval * 1000);
		}
		if (sig == SIGHUP) {
			struct buf why;
			buf_init(&why);
			reload(&why);
			buf_free(&why);
		} else if (sig > 0) {
			return sig;
		}
	}
}

int main(int argc, char **argv)
{
	sigset_t signals;
	uid_t uid;
	gid_t gid;
	int ready_fd = -1;

	parse_options(argc, argv, &options);
	struct config_errors warnings = { 0 };
	struct config *config = load_config(&options, &warnings);
	if (options.check_only) {
		int status = check_only(config, &warnings);
		config_errors_free(&warnings);
		return status;
	}
	if (!preflight(config, &uid, &gid, false))
		return 1;
	startup_config = config;
	int workers = config->workers;
	int acceptor_slot = workers, main_slot = workers + 1, admin_slot = workers + 2;
	stats_init(workers + 3);
	stats_bind(main_slot);
	chain_activate(config);
	live_init(config, workers + 3);
	configure_session_cache(config);
	log_set_level(config->log_level);
	block_signals(&signals);

	if (listener_open(config) < 0)
		return 1;
	if (!options.foreground)
		ready_fd = daemonize();
	log_open(config->log_target, config->syslog_facility);
	for (size_t i = 0; i < warnings.warning_count; i++)
		log_warning("%s", warnings.warnings[i]);
	config_errors_free(&warnings);
	write_pid_file(config);
	drop_privileges(config, uid, gid);
	start_database(config);
	char *rate_state = ratestate_path(config);
	if (rate_state)
		ratestate_load(rate_state);
	if (workers_start(workers) < 0 || listener_start(acceptor_slot) < 0)
		fatal("start-up failed");
	control_start(config, admin_slot, reload);
	log_notice("tallyd %s started: %zu listener(s), %d workers", PACKAGE_VERSION,
		   config->listen_count, workers);
	report_ready(ready_fd, config);

	int sig = wait_for_stop(&signals, rate_state, config->accounting.snapshot_interval);
	log_notice("%s: stopping", strsignal(sig));
	control_stop();
	listener_stop();
	workers_stop();
	workers_drain();
	if (rate_state)
		ratestate_save(rate_state, true);
	free(rate_state);
	stop_database();
	if (config->pid_file[0] != '\0' && unlink(config->pid_file) < 0)
		log_debug("cannot remove pid_file %s: %s", config->pid_file, strerror(errno));
	log_notice("stopped");
	const struct config *last = live_replace(config);
	if (last != config)
		config_free((struct config *)last);
	live_free();
	config_free(config);
	log_close();
	return 0;
}
