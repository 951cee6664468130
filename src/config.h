/*
 * config.h: tallyd.conf (libconfig syntax) turned into validated structs.
 *
 * config_load() reads a file and checks everything that can be checked
 * without a network or a database: unknown settings, types, ranges, listen
 * addresses, virtual hosts against listeners, plugin options.  Each problem
 * becomes a "FILE:LINE: message" in struct config_errors; any problem means
 * no config.  What loads but likely does not do what was meant (a listener
 * no virtual host serves, a Quota whose table and time_pattern no
 * Accounting writes) becomes a warning there.  A loaded config is immutable and shared read-only by all
 * threads; main.c owns it (and swaps it on reload).
 *
 * Option tables (struct config_option) are the one mechanism for settings: the
 * globals, the database and accounting groups and every plugin module
 * describe their settings in a table, and config_apply_options() fills the
 * struct, refusing what the table does not know.
 */
#ifndef TALLYD_CONFIG_H
#define TALLYD_CONFIG_H

#include <libconfig.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "log.h"
#include "stats.h"

struct config_errors {
	const char *file;
	char **lines;              /* "FILE:LINE: message" */
	size_t count;
	/* What loads but will not work as the admin likely meant (a listener
	 * no virtual host serves, a Quota no Accounting feeds): "FILE:LINE:
	 * message" too.  `tallyd -t` prints them, start and reload log them;
	 * they never refuse a config. */
	char **warnings;
	size_t warning_count;
};

void config_errors_free(struct config_errors *errors);
/* Records a problem at `where` (a setting, or NULL for the file). */
void config_error(struct config_errors *errors, const config_setting_t *where,
		  const char *fmt, ...) PRINTF_LIKE(3, 4);
/* Records a warning at `where`. */
void config_warning(struct config_errors *errors, const config_setting_t *where,
		    const char *fmt, ...) PRINTF_LIKE(3, 4);

enum option_type {
	OPTION_STRING,             /* char *, heap copy */
	OPTION_INT,                /* int */
	OPTION_INT64,              /* int64_t */
	OPTION_DOUBLE,             /* double; an integer is accepted */
	OPTION_SWITCH,             /* bool; true/false or mtpolicyd's "on"/"off" */
	OPTION_CUSTOM,             /* known name, handled by the caller */
};

struct config_option {
	const char *name;
	enum option_type type;
	size_t offset;                      /* of the field in the settings struct */
	const char *default_string;
	double default_number;              /* numbers and switches */
	double min, max;                    /* numbers; both 0 means any value */
	const char *const *choices;         /* strings: the allowed values, NULL-ended */
	bool (*valid)(const char *value);   /* strings: extra check ... */
	const char *valid_what;             /* ... and what it wants, for the message */
	bool required;
};

/* Sets every option of `options` in `settings` to its default. */
void config_default_options(const struct config_option *options, void *settings);
/* Applies the settings of `group` to `settings`; `context` prefixes messages
 * ("plugin 'QuotaIP'").  Returns the number of problems recorded. */
int config_apply_options(const struct config_option *options, void *settings,
			 const config_setting_t *group, const char *context,
			 struct config_errors *errors);
void config_free_options(const struct config_option *options, void *settings);

/* True for names that may be pasted into SQL as a table or column name. */
bool config_is_identifier(const char *s);

struct listen_address {
	char *spec;                /* as written: "127.0.0.1:12346", "[::1]:12346", "unix:/p" */
	struct sockaddr_storage addr;
	socklen_t addr_len;
	int port;                  /* TCP port; 0 for unix sockets */
	char *path;                /* unix socket path, or NULL */
};

enum database_driver { DATABASE_SQLITE, DATABASE_MYSQL };

struct database_config {
	const char *file;          /* the config file, for messages (struct config's) */
	char *driver_name;
	enum database_driver driver;
	char *host;
	int port;
	char *socket;
	char *user;
	char *password;
	char *name;
	char *path;                /* sqlite */
	int pool_size;             /* loader threads, each with a connection */
	int connect_timeout;       /* seconds; also bounds the loaders' reads and writes */
	int statement_timeout;     /* seconds the flusher's statements may take */
	double wait;               /* seconds a request waits for a value from it */
};

struct accounting_config {
	double flush_interval;
	int flush_batch;
	int cache_max_keys;        /* counter cache keys before clean ones are evicted */
	double refresh_interval;
	char *journal;             /* directory; "" = no journal */
	bool journal_sync;
	double snapshot_interval;  /* seconds between snapshots in the journal */
};

/* session_cache = { ... }: one count per message (sessioncache.h). */
struct session_cache_config {
	bool enabled;              /* the group is in the file */
	int ttl;                   /* seconds a message's marks are kept */
	int max_entries;           /* marks held at most */
};

struct vhost {
	char *name;
	int port;                  /* 0 when matched by socket */
	char *socket;
	struct plugin **plugins;
	size_t plugin_count;
	struct object_stats *stats;   /* per thread; set when the config goes live */
};

/* Settings whose values start checks against the system (preflight.h):
 * where each is written, for the messages. */
enum config_source {
	SOURCE_USER, SOURCE_GROUP, SOURCE_PID_FILE, SOURCE_DATABASE, SOURCE_DATABASE_PATH,
	SOURCE_JOURNAL, SOURCE_RATELIMIT_STATE, SOURCE_COUNT
};

struct config {
	char *file;
	char *source[SOURCE_COUNT];   /* "FILE:LINE" ("FILE:0" when not set) */
	uint64_t generation;       /* 1, 2, ... per load: told apart where addresses repeat */
	atomic_int holds;          /* waiting requests that began with it (live.h) */
	char *user;
	char *group;
	char *pid_file;
	char *log_level_name;
	int log_level;
	char *log_target_name;
	enum log_target log_target;
	char *syslog_facility_name;
	int syslog_facility;
	char *instance_id;
	char *control_socket;      /* tallyctl's unix socket; "" = none */
	char *metrics_listen;      /* Prometheus HTTP listener; "" = none */
	char *ratelimit_state;     /* RateLimit windows' file; "" = in the journal directory */
	struct listen_address metrics_address;

	struct listen_address *listen;
	size_t listen_count;
	int workers;
	int max_connections;
	int request_timeout;
	int keepalive_timeout;
	int max_request_size;
	int max_attributes;
	int user_config_ttl;

	struct database_config database;
	struct accounting_config accounting;
	struct session_cache_config session_cache;

	struct vhost *vhosts;
	size_t vhost_count;
};

/* Reads and validates `file`.  On any problem returns NULL and fills
 * `errors` (the caller frees them either way); a config that loads may
 * come with warnings in `errors`. */
struct config *config_load(const char *file, struct config_errors *errors);
/* The generation of the config loaded last (or being loaded): registries
 * mark what it uses with it. */
uint64_t config_loading(void);
void config_free(struct config *config);

/* Whether any plugin of `config` uses the database (Accounting, Quota,
 * SqlUserConfig): without one tallyd opens no store. */
bool config_needs_store(const struct config *config);
/* Whether any plugin of `config` is of `module` ("RateLimit"). */
bool config_uses_module(const struct config *config, const char *module);

/* Records a problem (a warning) at `where`, a "FILE:LINE" of config->source. */
void config_error_at(struct config_errors *errors, const char *where, const char *fmt, ...)
	PRINTF_LIKE(3, 4);
void config_warning_at(struct config_errors *errors, const char *where, const char *fmt, ...)
	PRINTF_LIKE(3, 4);

/* The virtual host serving TCP port `port` or unix socket `path`, or NULL. */
const struct vhost *config_find_vhost(const struct config *config, int port, const char *path);

#endif
