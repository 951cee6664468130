/*
 * config.c: tallyd.conf → struct config (see config.h).
 *
 * Runs in the main thread at start-up and on reload; the result is
 * immutable.  All checks record "FILE:LINE: message" and go on, so that
 * `tallyd -t` lists every problem at once.  Relative paths are made
 * absolute here because the daemon changes directory to /.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "chain.h"
#include "log.h"
#include "plugin.h"
#include "tables.h"

/* ------------------------------------------------------------------ errors */

void config_errors_free(struct config_errors *errors)
{
	for (size_t i = 0; i < errors->count; i++)
		free(errors->lines[i]);
	free(errors->lines);
	errors->lines = NULL;
	errors->count = 0;
	for (size_t i = 0; i < errors->warning_count; i++)
		free(errors->warnings[i]);
	free(errors->warnings);
	errors->warnings = NULL;
	errors->warning_count = 0;
}

static void add_line(char ***lines, size_t *count, const char *file, int line,
		     const char *message)
{
	*lines = xrealloc(*lines, (*count + 1) * sizeof(char *));
	(*lines)[(*count)++] = xasprintf("%s:%d: %s", file, line, message);
}

static void add_error(struct config_errors *errors, const char *file, int line,
		      const char *message)
{
	add_line(&errors->lines, &errors->count, file, line, message);
}

/* Adds "FILE:LINE: message" for `where` to an error or warning list. */
static void add_at(char ***lines, size_t *count, const char *file,
		   const config_setting_t *where, const char *fmt, va_list ap)
{
	char message[1024];
	int line = 0;

	vsnprintf(message, sizeof(message), fmt, ap);
	if (where != NULL) {
		line = config_setting_source_line(where);
		if (config_setting_source_file(where) != NULL)
			file = config_setting_source_file(where);
	}
	add_line(lines, count, file, line, message);
}

void config_error(struct config_errors *errors, const config_setting_t *where,
		  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_at(&errors->lines, &errors->count, errors->file, where, fmt, ap);
	va_end(ap);
}

/* Adds "WHERE: message" to lines (errors or warnings). */
static void add_placed(char ***lines, size_t *count, const char *where, const char *fmt,
		       va_list ap)
{
	char message[1024];

	vsnprintf(message, sizeof(message), fmt, ap);
	*lines = xrealloc(*lines, (*count + 1) * sizeof(char *));
	(*lines)[(*count)++] = xasprintf("%s: %s", where, message);
}

void config_error_at(struct config_errors *errors, const char *where, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_placed(&errors->lines, &errors->count, where, fmt, ap);
	va_end(ap);
}

void config_warning_at(struct config_errors *errors, const char *where, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_placed(&errors->warnings, &errors->warning_count, where, fmt, ap);
	va_end(ap);
}

void config_warning(struct config_errors *errors, const config_setting_t *where,
		    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_at(&errors->warnings, &errors->warning_count, errors->file, where, fmt, ap);
	va_end(ap);
}

/* ----------------------------------------------------------- option tables */

/* The field an option describes, as a pointer to its type. */
static void *field_of(void *settings, const struct config_option *o)
{
	return (char *)settings + o->offset;
}
#define FIELD(settings, option, type) ((type *)field_of((settings), (option)))

void config_default_options(const struct config_option *options, void *settings)
{
	for (const struct config_option *o = options; o->name; o++) {
		switch (o->type) {
		case OPTION_STRING:
			*FIELD(settings, o, char *) =
				o->default_string ? xstrdup(o->default_string) : NULL;
			break;
		case OPTION_INT:
			*FIELD(settings, o, int) = (int)o->default_number;
			break;
		case OPTION_INT64:
			*FIELD(settings, o, int64_t) = (int64_t)o->default_number;
			break;
		case OPTION_DOUBLE:
			*FIELD(settings, o, double) = o->default_number;
			break;
		case OPTION_SWITCH:
			*FIELD(settings, o, bool) = o->default_number != 0;
			break;
		case OPTION_CUSTOM:
			break;
		}
	}
}

void config_free_options(const struct config_option *options, void *settings)
{
	for (const struct config_option *o = options; o->name; o++) {
		if (o->type == OPTION_STRING) {
			free(*FIELD(settings, o, char *));
			*FIELD(settings, o, char *) = NULL;
		}
	}
}

static const struct config_option *find_option(const struct config_option *options, const char *name)
{
	for (const struct config_option *o = options; o->name; o++) {
		if (strcmp(o->name, name) == 0)
			return o;
	}
	return NULL;
}

static void list_choices(char *out, size_t size, const char *const *choices)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; choices[i] && used < size; i++)
		used += (size_t)snprintf(out + used, size - used, "%s%s", i ? ", " : "", choices[i]);
}

static bool in_choices(const char *value, const char *const *choices)
{
	for (size_t i = 0; choices[i]; i++) {
		if (strcmp(value, choices[i]) == 0)
			return true;
	}
	return false;
}

static int apply_string(const struct config_option *o, void *settings, const config_setting_t *s,
			const char *prefix, struct config_errors *errors)
{
	const char *value = config_setting_get_string(s);
	char choices[512];

	if (value == NULL) {
		config_error(errors, s, "%s%s must be a string (in double quotes)", prefix, o->name);
		return 1;
	}
	if (o->choices && !in_choices(value, o->choices)) {
		list_choices(choices, sizeof(choices), o->choices);
		config_error(errors, s, "%s%s must be one of %s; got '%s'", prefix, o->name,
			     choices, value);
		return 1;
	}
	if (o->valid && !o->valid(value)) {
		config_error(errors, s, "%s%s must be %s; got '%s'", prefix, o->name,
			     o->valid_what, value);
		return 1;
	}
	char **field = FIELD(settings, o, char *);
	free(*field);
	*field = xstrdup(value);
	return 0;
}

static int apply_number(const struct config_option *o, void *settings, const config_setting_t *s,
			const char *prefix, struct config_errors *errors)
{
	int type = config_setting_type(s);
	bool integer = type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64;
	double value;

	if (!integer && !(o->type == OPTION_DOUBLE && type == CONFIG_TYPE_FLOAT)) {
		config_error(errors, s, "%s%s must be %s", prefix, o->name,
			     o->type == OPTION_DOUBLE ? "a number" : "a whole number (no quotes)");
		return 1;
	}
	value = integer ? (double)config_setting_get_int64(s) : config_setting_get_float(s);
	if ((o->min != 0 || o->max != 0) && (value < o->min || value > o->max)) {
		config_error(errors, s, "%s%s must be %.15g..%.15g, got %.15g", prefix, o->name,
			     o->min, o->max, value);
		return 1;
	}
	switch (o->type) {
	case OPTION_INT:
		*FIELD(settings, o, int) = (int)value;
		break;
	case OPTION_INT64:
		*FIELD(settings, o, int64_t) = config_setting_get_int64(s);
		break;
	default:
		*FIELD(settings, o, double) = value;
		break;
	}
	return 0;
}

static int apply_switch(const struct config_option *o, void *settings, const config_setting_t *s,
			const char *prefix, struct config_errors *errors)
{
	const char *text = config_setting_get_string(s);
	bool *field = FIELD(settings, o, bool);

	if (config_setting_type(s) == CONFIG_TYPE_BOOL) {
		*field = config_setting_get_bool(s);
	} else if (text && (strcmp(text, "on") == 0 || strcmp(text, "off") == 0)) {
		*field = strcmp(text, "on") == 0;
	} else {
		config_error(errors, s, "%s%s must be true or false (or \"on\"/\"off\")", prefix,
			     o->name);
		return 1;
	}
	return 0;
}

int config_apply_options(const struct config_option *options, void *settings,
			 const config_setting_t *group, const char *context,
			 struct config_errors *errors)
{
	char prefix[320];
	int problems = 0;

	snprintf(prefix, sizeof(prefix), "%s%s", context ? context : "", context ? ": " : "");
	if (config_setting_type(group) != CONFIG_TYPE_GROUP) {
		config_error(errors, group, "%s%s must be a group { ... }", prefix,
			     config_setting_name(group));
		return 1;
	}
	for (int i = 0; i < config_setting_length(group); i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const struct config_option *o = find_option(options, config_setting_name(s));

		if (o == NULL) {
			config_error(errors, s, "%sunknown setting '%s'", prefix,
				     config_setting_name(s));
			problems++;
		} else if (o->type == OPTION_STRING) {
			problems += apply_string(o, settings, s, prefix, errors);
		} else if (o->type == OPTION_SWITCH) {
			problems += apply_switch(o, settings, s, prefix, errors);
		} else if (o->type != OPTION_CUSTOM) {
			problems += apply_number(o, settings, s, prefix, errors);
		}
	}
	for (const struct config_option *o = options; o->name; o++) {
		if (o->required && config_setting_get_member(group, o->name) == NULL) {
			config_error(errors, group, "%smissing required setting '%s'", prefix, o->name);
			problems++;
		}
	}
	return problems;
}

bool config_is_identifier(const char *s)
{
	if (s[0] == '\0' || strlen(s) > 64)
		return false;
	for (; *s; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return false;
	}
	return true;
}

/* ------------------------------------------------------ the tallyd options */

static const char *const log_levels[] = { "error", "warning", "notice", "info", "debug", NULL };
static const char *const log_targets[] = { "syslog", "stderr", NULL };
static const char *const facilities[] = {
	"mail", "daemon", "user", "local0", "local1", "local2", "local3",
	"local4", "local5", "local6", "local7", NULL
};
static const char *const drivers[] = { "sqlite", "mysql", NULL };

#define GLOBAL(field) offsetof(struct config, field)
#define DATABASE(field) offsetof(struct database_config, field)
#define ACCOUNTING(field) offsetof(struct accounting_config, field)
#define VHOST(field) offsetof(struct vhost, field)
#define SESSION_CACHE(field) offsetof(struct session_cache_config, field)

static const struct config_option global_options[] = {
	{ .name = "user", .type = OPTION_STRING, .offset = GLOBAL(user), .default_string = "" },
	{ .name = "group", .type = OPTION_STRING, .offset = GLOBAL(group), .default_string = "" },
	{ .name = "pid_file", .type = OPTION_STRING, .offset = GLOBAL(pid_file),
	  .default_string = "" },
	{ .name = "log_level", .type = OPTION_STRING, .offset = GLOBAL(log_level_name),
	  .default_string = "info", .choices = log_levels },
	{ .name = "log_target", .type = OPTION_STRING, .offset = GLOBAL(log_target_name),
	  .default_string = "syslog", .choices = log_targets },
	{ .name = "syslog_facility", .type = OPTION_STRING,
	  .offset = GLOBAL(syslog_facility_name), .default_string = "mail",
	  .choices = facilities },
	{ .name = "instance_id", .type = OPTION_STRING, .offset = GLOBAL(instance_id),
	  .default_string = "" },
	{ .name = "control_socket", .type = OPTION_STRING, .offset = GLOBAL(control_socket),
	  .default_string = "/run/tallyd/control.sock" },
	{ .name = "metrics_listen", .type = OPTION_STRING, .offset = GLOBAL(metrics_listen),
	  .default_string = "" },
	{ .name = "ratelimit_state", .type = OPTION_STRING, .offset = GLOBAL(ratelimit_state),
	  .default_string = "" },
	{ .name = "listen", .type = OPTION_CUSTOM },
	{ .name = "workers", .type = OPTION_INT, .offset = GLOBAL(workers),
	  .default_number = 8, .min = 1, .max = 1024 },
	{ .name = "max_connections", .type = OPTION_INT, .offset = GLOBAL(max_connections),
	  .default_number = 4096, .min = 1, .max = 1000000 },
	{ .name = "request_timeout", .type = OPTION_INT, .offset = GLOBAL(request_timeout),
	  .default_number = 20, .min = 1, .max = 3600 },
	{ .name = "keepalive_timeout", .type = OPTION_INT, .offset = GLOBAL(keepalive_timeout),
	  .default_number = 300, .min = 1, .max = 86400 },
	{ .name = "max_request_size", .type = OPTION_INT, .offset = GLOBAL(max_request_size),
	  .default_number = 65536, .min = 1024, .max = 16777216 },
	{ .name = "max_attributes", .type = OPTION_INT, .offset = GLOBAL(max_attributes),
	  .default_number = 256, .min = 1, .max = 65536 },
	{ .name = "user_config_ttl", .type = OPTION_INT, .offset = GLOBAL(user_config_ttl),
	  .default_number = 60, .min = 0, .max = 86400 },
	{ .name = "database", .type = OPTION_CUSTOM },
	{ .name = "accounting", .type = OPTION_CUSTOM },
	{ .name = "session_cache", .type = OPTION_CUSTOM },
	{ .name = "virtual_hosts", .type = OPTION_CUSTOM },
	{ .name = NULL },
};

static const struct config_option database_options[] = {
	{ .name = "driver", .type = OPTION_STRING, .offset = DATABASE(driver_name),
	  .default_string = "sqlite", .choices = drivers },
	{ .name = "host", .type = OPTION_STRING, .offset = DATABASE(host),
	  .default_string = "localhost" },
	{ .name = "port", .type = OPTION_INT, .offset = DATABASE(port),
	  .default_number = 3306, .min = 1, .max = 65535 },
	{ .name = "socket", .type = OPTION_STRING, .offset = DATABASE(socket),
	  .default_string = "" },
	{ .name = "user", .type = OPTION_STRING, .offset = DATABASE(user),
	  .default_string = "tallyd" },
	{ .name = "password", .type = OPTION_STRING, .offset = DATABASE(password),
	  .default_string = "" },
	{ .name = "name", .type = OPTION_STRING, .offset = DATABASE(name),
	  .default_string = "tallyd" },
	{ .name = "path", .type = OPTION_STRING, .offset = DATABASE(path),
	  .default_string = LOCALSTATEDIR "/lib/tallyd/tallyd.sqlite" },
	{ .name = "pool_size", .type = OPTION_INT, .offset = DATABASE(pool_size),
	  .default_number = 2, .min = 1, .max = 64 },
	{ .name = "connect_timeout", .type = OPTION_INT, .offset = DATABASE(connect_timeout),
	  .default_number = 5, .min = 1, .max = 300 },
	{ .name = "statement_timeout", .type = OPTION_INT,
	  .offset = DATABASE(statement_timeout), .default_number = 30, .min = 1, .max = 3600 },
	{ .name = "wait", .type = OPTION_DOUBLE, .offset = DATABASE(wait),
	  .default_number = 2.0, .min = 0.05, .max = 60 },
	{ .name = NULL },
};

static const struct config_option accounting_options[] = {
	{ .name = "flush_interval", .type = OPTION_DOUBLE, .offset = ACCOUNTING(flush_interval),
	  .default_number = 1.0, .min = 0.01, .max = 3600 },
	{ .name = "flush_batch", .type = OPTION_INT, .offset = ACCOUNTING(flush_batch),
	  .default_number = 1000, .min = 1, .max = 10000 },
	{ .name = "cache_max_keys", .type = OPTION_INT, .offset = ACCOUNTING(cache_max_keys),
	  .default_number = 10000000, .min = 100, .max = 2000000000 },
	{ .name = "refresh_interval", .type = OPTION_DOUBLE,
	  .offset = ACCOUNTING(refresh_interval), .default_number = 10.0,
	  .min = 0, .max = 86400 },
	{ .name = "journal", .type = OPTION_STRING, .offset = ACCOUNTING(journal),
	  .default_string = "" },
	{ .name = "journal_sync", .type = OPTION_SWITCH, .offset = ACCOUNTING(journal_sync) },
	{ .name = "snapshot_interval", .type = OPTION_DOUBLE,
	  .offset = ACCOUNTING(snapshot_interval), .default_number = 60, .min = 1, .max = 86400 },
	{ .name = NULL },
};

static const struct config_option session_cache_options[] = {
	{ .name = "ttl", .type = OPTION_INT, .offset = SESSION_CACHE(ttl),
	  .default_number = 3600, .min = 1, .max = 604800 },
	{ .name = "max_entries", .type = OPTION_INT, .offset = SESSION_CACHE(max_entries),
	  .default_number = 100000, .min = 64, .max = 100000000 },
	{ .name = NULL },
};

static const struct config_option vhost_options[] = {
	{ .name = "port", .type = OPTION_INT, .offset = VHOST(port), .min = 1, .max = 65535 },
	{ .name = "socket", .type = OPTION_STRING, .offset = VHOST(socket), .default_string = "" },
	{ .name = "name", .type = OPTION_STRING, .offset = VHOST(name), .default_string = "" },
	{ .name = "plugins", .type = OPTION_CUSTOM, .required = true },
	{ .name = NULL },
};

/* ---------------------------------------------------------------- listen */

/* Makes a relative path absolute: the daemon runs in /. */
static char *absolute_path(const char *path)
{
	char cwd[PATH_MAX];

	if (path[0] == '/' || path[0] == '\0' || getcwd(cwd, sizeof(cwd)) == NULL)
		return xstrdup(path);
	while (path[0] == '.' && path[1] == '/')
		path += 2;
	return xasprintf("%s/%s", cwd, path);
}

static void make_absolute(char **path)
{
	char *abs = absolute_path(*path);

	free(*path);
	*path = abs;
}

static const char *parse_port(const char *text, int *port)
{
	char *end;
	long n = strtol(text, &end, 10);

	if (*text == '\0' || *end != '\0' || n < 1 || n > 65535)
		return "the port must be 1..65535";
	*port = (int)n;
	return NULL;
}

/* Fills `l` from "ADDR:PORT", "[ADDR6]:PORT", "*:PORT" or "unix:PATH";
 * returns NULL or why the spec is wrong. */
static const char *parse_listen(const char *spec, struct listen_address *l)
{
	memset(l, 0, sizeof(*l));
	l->spec = xstrdup(spec);

	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&l->addr;
		l->path = absolute_path(spec + 5);
		if (l->path[0] == '\0')
			return "unix: needs a path";
		if (strlen(l->path) >= sizeof(un->sun_path))
			return "the unix socket path is too long";
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, l->path);
		l->addr_len = sizeof(*un);
		return NULL;
	}

	const char *colon = strrchr(spec, ':');
	if (colon == NULL)
		return "expected ADDRESS:PORT, [IPV6]:PORT or unix:PATH";
	const char *why = parse_port(colon + 1, &l->port);
	if (why)
		return why;

	char host[INET6_ADDRSTRLEN + 2];
	size_t host_len = (size_t)(colon - spec);
	if (host_len >= sizeof(host))
		return "the address is not a numeric IPv4 or IPv6 address";
	memcpy(host, spec, host_len);
	host[host_len] = '\0';

	if (host[0] == '[' && host_len > 2 && host[host_len - 1] == ']') {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&l->addr;
		host[host_len - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &in6->sin6_addr) != 1)
			return "the address in [] is not a numeric IPv6 address";
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)l->port);
		l->addr_len = sizeof(*in6);
		return NULL;
	}
	struct sockaddr_in *in = (struct sockaddr_in *)&l->addr;
	if (strcmp(host, "*") == 0)
		in->sin_addr.s_addr = htonl(INADDR_ANY);
	else if (strcmp(host, "localhost") == 0)
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
		return "the address is not a numeric IPv4 address (IPv6 goes in [])";
	in->sin_family = AF_INET;
	in->sin_port = htons((uint16_t)l->port);
	l->addr_len = sizeof(*in);
	return NULL;
}

static void add_listen(struct config *config, const char *spec, const config_setting_t *where,
		       struct config_errors *errors)
{
	struct listen_address l;
	const char *why = parse_listen(spec, &l);

	for (size_t i = 0; why == NULL && i < config->listen_count; i++) {
		if (strcmp(config->listen[i].spec, l.spec) == 0)
			why = "listed twice";
	}
	if (why) {
		config_error(errors, where, "listen '%s': %s", spec, why);
		free(l.spec);
		free(l.path);
		return;
	}
	config->listen = xrealloc(config->listen, (config->listen_count + 1) * sizeof(l));
	config->listen[config->listen_count++] = l;
}

/* listen = "a:1,b:2" (mtpolicyd's port option) or listen = ["a:1", "b:2"]. */
static void parse_listen_setting(struct config *config, const config_setting_t *s,
				 struct config_errors *errors)
{
	const char *text = config_setting_get_string(s);

	if (text != NULL) {
		char *copy = xstrdup(text), *save = NULL;
		for (char *item = strtok_r(copy, ", \t", &save); item;
		     item = strtok_r(NULL, ", \t", &save))
			add_listen(config, item, s, errors);
		free(copy);
	} else if (config_setting_is_aggregate(s) && !config_setting_is_group(s)) {
		for (int i = 0; i < config_setting_length(s); i++) {
			const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
			if (config_setting_get_string(e) == NULL)
				config_error(errors, e, "listen: each entry must be a string");
			else
				add_listen(config, config_setting_get_string(e), e, errors);
		}
	} else {
		config_error(errors, s, "listen must be a string (\"127.0.0.1:12345,"
			     "127.0.0.1:12346\") or a list of strings");
		return;
	}
	if (config->listen_count == 0)
		config_error(errors, s, "listen names no address");
}

/* metrics_listen = "127.0.0.1:9187": one TCP address. */
static void check_metrics_listen(struct config *config, const config_setting_t *where,
				 struct config_errors *errors)
{
	struct listen_address *m = &config->metrics_address;

	if (config->metrics_listen[0] == '\0')
		return;
	const char *why = parse_listen(config->metrics_listen, m);
	if (why == NULL && m->path != NULL)
		why = "must be a TCP address";
	for (size_t i = 0; why == NULL && i < config->listen_count; i++) {
		if (config->listen[i].port == m->port)
			why = "uses a port that listen uses too";
	}
	if (why)
		config_error(errors, where, "metrics_listen '%s': %s", config->metrics_listen, why);
}

/* ----------------------------------------------------------- virtual hosts */

static bool listens_on(const struct config *config, int port, const char *path)
{
	for (size_t i = 0; i < config->listen_count; i++) {
		const struct listen_address *l = &config->listen[i];
		if (path ? (l->path && strcmp(l->path, path) == 0) : l->port == port)
			return true;
	}
	return false;
}

static void parse_plugins(struct vhost *vhost, const config_setting_t *list,
			  struct config_errors *errors)
{
	if (!config_setting_is_list(list) || config_setting_length(list) == 0) {
		config_error(errors, list, "virtual host '%s': plugins must be a non-empty list "
			     "( { name = ...; module = ...; }, ... )", vhost->name);
		return;
	}
	int count = config_setting_length(list);
	vhost->plugins = xcalloc((size_t)count, sizeof(struct plugin *));
	for (int i = 0; i < count; i++) {
		const config_setting_t *group = config_setting_get_elem(list, (unsigned)i);
		struct plugin *plugin = chain_create_plugin(group, errors);
		if (plugin == NULL)
			continue;
		for (size_t j = 0; j < vhost->plugin_count; j++) {
			if (strcmp(vhost->plugins[j]->name, plugin->name) == 0) {
				config_error(errors, group, "virtual host '%s': two plugins are named '%s'",
					     vhost->name, plugin->name);
				break;
			}
		}
		vhost->plugins[vhost->plugin_count++] = plugin;
	}
}

static void check_vhost_address(struct config *config, struct vhost *vhost, size_t index,
				const config_setting_t *group, struct config_errors *errors)
{
	bool has_socket = vhost->socket[0] != '\0';

	if ((vhost->port != 0) == has_socket) {
		config_error(errors, group, "virtual host '%s': set either port or socket",
			     vhost->name);
		return;
	}
	if (has_socket)
		make_absolute(&vhost->socket);
	if (!listens_on(config, vhost->port, has_socket ? vhost->socket : NULL)) {
		if (has_socket)
			config_error(errors, group, "virtual host '%s': no listen entry is "
				     "unix:%s", vhost->name, vhost->socket);
		else
			config_error(errors, group, "virtual host '%s': port %d is not in listen",
				     vhost->name, vhost->port);
	}
	for (size_t i = 0; i < index; i++) {
		const struct vhost *other = &config->vhosts[i];
		if (has_socket ? strcmp(other->socket, vhost->socket) == 0 : other->port == vhost->port)
			config_error(errors, group, "virtual host '%s' serves the same %s as '%s'",
				     vhost->name, has_socket ? "socket" : "port", other->name);
	}
}

static void parse_vhosts(struct config *config, const config_setting_t *list,
			 struct config_errors *errors)
{
	if (!config_setting_is_list(list)) {
		config_error(errors, list, "virtual_hosts must be a list ( { port = ...; plugins "
			     "= ( ... ); }, ... )");
		return;
	}
	int count = config_setting_length(list);
	config->vhosts = xcalloc((size_t)count, sizeof(struct vhost));
	for (int i = 0; i < count; i++) {
		const config_setting_t *group = config_setting_get_elem(list, (unsigned)i);
		struct vhost *vhost = &config->vhosts[config->vhost_count++];
		char context[64];

		config_default_options(vhost_options, vhost);
		snprintf(context, sizeof(context), "virtual host %d", i + 1);
		if (config_apply_options(vhost_options, vhost, group, context, errors) > 0)
			continue;
		if (vhost->name[0] == '\0') {
			free(vhost->name);
			vhost->name = vhost->port ? xasprintf("port %d", vhost->port) :
				vhost->socket[0] ? xstrdup(vhost->socket) : xasprintf("number %d", i + 1);
		}
		check_vhost_address(config, vhost, (size_t)i, group, errors);
		parse_plugins(vhost, config_setting_get_member(group, "plugins"), errors);
	}
}

/* ---------------------------------------------------------------- warnings */

/* The setting that names listen entry `index`: the list's element, or the
 * string that names them all (NULL: the default address). */
static const config_setting_t *listen_setting_of(const config_setting_t *listen, size_t index)
{
	if (listen != NULL && config_setting_get_string(listen) == NULL &&
	    (size_t)config_setting_length(listen) > index)
		return config_setting_get_elem(listen, (unsigned)index);
	return listen;
}

/* A listener no virtual host serves answers every request "dunno". */
static void warn_unserved(const struct config *config, const config_setting_t *listen,
			  struct config_errors *errors)
{
	for (size_t i = 0; i < config->listen_count; i++) {
		const struct listen_address *a = &config->listen[i];
		if (config_find_vhost(config, a->port, a->path) == NULL)
			config_warning(errors, listen_setting_of(listen, i), "listen %s: no virtual "
				       "host serves it; its requests are answered dunno", a->spec);
	}
}

/* True when some plugin of the config writes `table` with `pattern`. */
static bool written_by_any(const struct config *config, int table, const char *pattern)
{
	for (size_t i = 0; i < config->vhost_count; i++) {
		const struct vhost *v = &config->vhosts[i];
		for (size_t j = 0; j < v->plugin_count; j++) {
			const struct plugin *p = v->plugins[j];
			if (p->module->writes && p->module->writes(p, table, pattern))
				return true;
		}
	}
	return false;
}

/* A Quota reads the totals an Accounting writes: when no Accounting of the
 * config writes its table with its time pattern, what this tallyd counts
 * never reaches it.  Called only for a config without errors, so plugin j
 * of virtual host i is element j of the i-th plugins list. */
static void warn_unfed_quotas(const struct config *config, const config_setting_t *vhosts,
			      struct config_errors *errors)
{
	for (size_t i = 0; i < config->vhost_count; i++) {
		const struct vhost *v = &config->vhosts[i];
		const config_setting_t *list =
			config_setting_get_member(config_setting_get_elem(vhosts, (unsigned)i),
						  "plugins");
		for (size_t j = 0; j < v->plugin_count; j++) {
			const struct plugin *p = v->plugins[j];
			const char *pattern = NULL;
			int table = p->module->reads ? p->module->reads(p, &pattern) : -1;
			if (table < 0 || written_by_any(config, table, pattern))
				continue;
			config_warning(errors, config_setting_get_elem(list, (unsigned)j),
				       "plugin '%s': no Accounting writes table %s with time_pattern "
				       "\"%s\", so this Quota never sees what this tallyd counts (only "
				       "what other instances write there); Accounting and Quota must "
				       "agree on table_prefix, field and time_pattern", p->name,
				       tables_name(table), pattern);
		}
	}
}

/* ------------------------------------------------------------------ loading */

static void apply_group(const struct config_option *options, void *settings, const char *name,
			const config_setting_t *root, struct config_errors *errors)
{
	const config_setting_t *group = config_setting_get_member(root, name);

	config_default_options(options, settings);
	if (group)
		config_apply_options(options, settings, group, name, errors);
}

static void derive(struct config *config)
{
	log_level_parse(config->log_level_name, &config->log_level);
	log_facility_parse(config->syslog_facility_name, &config->syslog_facility);
	config->log_target = strcmp(config->log_target_name, "stderr") == 0 ?
		LOG_TARGET_STDERR : LOG_TARGET_SYSLOG;
	config->database.driver = strcmp(config->database.driver_name, "mysql") == 0 ?
		DATABASE_MYSQL : DATABASE_SQLITE;
	config->database.file = config->file;
	make_absolute(&config->database.path);
	make_absolute(&config->accounting.journal);
	make_absolute(&config->pid_file);
	make_absolute(&config->control_socket);
	make_absolute(&config->ratelimit_state);
}

/* ------------------------------------------------------- 64-bit integers */

/* Debian 12's libconfig (1.5) reads an integer without the L suffix as 32
 * bits, silently wrapped: threshold = 3000000000 became -1294967296.  Every
 * integer of the text that does not fit 32 bits gets its L before libconfig
 * reads it; one that does not fit 64 bits is refused at its line.  Strings,
 * comments, names and floating-point numbers are passed over as libconfig's
 * scanner reads them. */

/* The end of the token at p that is not a number: a string, a comment, a
 * name; p itself when there is none. */
static const char *skip_non_number(const char *p, int *line)
{
	if (*p == '"') {
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1])
				p++;
			*line += *p == '\n';
		}
		return *p ? p + 1 : p;
	}
	if (*p == '#' || (p[0] == '/' && p[1] == '/'))
		return p + strcspn(p, "\n");
	if (p[0] == '/' && p[1] == '*') {
		const char *end = strstr(p + 2, "*/");
		for (const char *q = p; q < (end ? end : p + strlen(p)); q++)
			*line += *q == '\n';
		return end ? end + 2 : p + strlen(p);
	}
	if (isalpha((unsigned char)*p) || *p == '*') {
		while (isalnum((unsigned char)*p) || (*p != '\0' && strchr("-_*", *p) != NULL))
			p++;
	}
	return p;
}

/* Copies text to out, an L after each integer beyond 32 bits; false (with
 * the errors added) when one does not fit 64 bits. */
static bool widen_integers(const char *text, const char *file, struct buf *out,
			   struct config_errors *errors)
{
	bool ok = true;
	int line = 1;

	for (const char *p = text; *p;) {
		const char *end = skip_non_number(p, &line);
		if (end != p) {
			buf_append(out, p, (size_t)(end - p));
			p = end;
			continue;
		}
		bool sign = (*p == '-' || *p == '+') && isdigit((unsigned char)p[1]);
		if (!sign && !isdigit((unsigned char)*p)) {
			line += *p == '\n';
			buf_append(out, p++, 1);
			continue;
		}
		bool hex = p[sign] == '0' && (p[sign + 1] == 'x' || p[sign + 1] == 'X');
		end = p + sign + (hex ? 2 : 0);
		while (hex ? isxdigit((unsigned char)*end) : isdigit((unsigned char)*end))
			end++;
		bool integer = hex ? *end != 'L' : *end == '\0' || strchr(".eEL", *end) == NULL;
		buf_append(out, p, (size_t)(end - p));
		if (integer) {
			errno = 0;
			long long value = strtoll(p, NULL, 0);
			if (errno == ERANGE) {
				char *message = xasprintf("the number %.*s is out of range: integers "
							  "are 64-bit (-9223372036854775808.."
							  "9223372036854775807)", (int)(end - p), p);
				add_error(errors, file, line, message);
				free(message);
				ok = false;
			} else if (value < INT32_MIN || value > INT32_MAX) {
				buf_append(out, "L", 1);
			}
		}
		p = end;
	}
	return ok;
}

/* Reads the file into cf; false with the errors added. */
static bool read_config_file(config_t *cf, const char *file, struct config_errors *errors)
{
	struct buf text, widened;
	char chunk[8192];
	size_t n;
	FILE *f = fopen(file, "r");

	if (f == NULL) {
		add_error(errors, file, 0, "cannot read the file");
		return false;
	}
	buf_init(&text);
	buf_init(&widened);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&text, chunk, n);
	bool ok = !ferror(f);
	fclose(f);
	if (!ok)
		add_error(errors, file, 0, "cannot read the file");
	buf_append(&text, "", 1);                  /* a C string, even when empty */
	ok = ok && widen_integers(text.data, file, &widened, errors);
	buf_append(&widened, "", 1);
	if (ok && !config_read_string(cf, widened.data)) {
		add_error(errors, config_error_file(cf) ? config_error_file(cf) : file,
			  config_error_line(cf), config_error_text(cf));
		ok = false;
	}
	buf_free(&text);
	buf_free(&widened);
	return ok;
}

/* Where the settings that start checks against the system are written. */
static void note_sources(struct config *config, const config_t *cf, const char *file)
{
	static const char *const paths[SOURCE_COUNT] = {
		[SOURCE_USER] = "user", [SOURCE_GROUP] = "group", [SOURCE_PID_FILE] = "pid_file",
		[SOURCE_DATABASE] = "database", [SOURCE_DATABASE_PATH] = "database.path",
		[SOURCE_JOURNAL] = "accounting.journal", [SOURCE_RATELIMIT_STATE] = "ratelimit_state",
	};

	for (int i = 0; i < SOURCE_COUNT; i++) {
		const config_setting_t *s = config_lookup(cf, paths[i]);
		const char *in = s && config_setting_source_file(s) ? config_setting_source_file(s) :
			file;
		config->source[i] = xasprintf("%s:%d", in, s ? config_setting_source_line(s) : 0);
	}
}

static _Atomic uint64_t loads;

uint64_t config_loading(void)
{
	return atomic_load(&loads);
}

struct config *config_load(const char *file, struct config_errors *errors)
{
	config_t cf;
	struct config *config = xcalloc(1, sizeof(*config));

	errors->file = file;
	config->file = xstrdup(file);
	config->generation = atomic_fetch_add(&loads, 1) + 1;
	config_default_options(global_options, config);
	config_init(&cf);
	if (!read_config_file(&cf, file, errors))
		goto fail;

	const config_setting_t *root = config_root_setting(&cf);
	config_apply_options(global_options, config, root, NULL, errors);
	const config_setting_t *listen = config_setting_get_member(root, "listen");
	if (listen)
		parse_listen_setting(config, listen, errors);
	else
		add_listen(config, "127.0.0.1:12345", NULL, errors);
	apply_group(database_options, &config->database, "database", root, errors);
	apply_group(accounting_options, &config->accounting, "accounting", root, errors);
	apply_group(session_cache_options, &config->session_cache, "session_cache", root, errors);
	config->session_cache.enabled = config_setting_get_member(root, "session_cache") != NULL;
	const config_setting_t *vhosts = config_setting_get_member(root, "virtual_hosts");
	if (vhosts)
		parse_vhosts(config, vhosts, errors);
	check_metrics_listen(config, config_setting_get_member(root, "metrics_listen"), errors);
	if (errors->count > 0)
		goto fail;
	warn_unserved(config, listen, errors);
	if (vhosts)
		warn_unfed_quotas(config, vhosts, errors);
	derive(config);
	note_sources(config, &cf, file);
	config_destroy(&cf);
	return config;

fail:
	config_destroy(&cf);
	config_free(config);
	return NULL;
}

void config_free(struct config *config)
{
	if (config == NULL)
		return;
	for (size_t i = 0; i < config->listen_count; i++) {
		free(config->listen[i].spec);
		free(config->listen[i].path);
	}
	free(config->listen);
	free(config->metrics_address.spec);
	free(config->metrics_address.path);
	for (size_t i = 0; i < config->vhost_count; i++) {
		struct vhost *vhost = &config->vhosts[i];
		for (size_t j = 0; j < vhost->plugin_count; j++)
			chain_free_plugin(vhost->plugins[j]);
		free(vhost->plugins);
		free(vhost->stats);
		config_free_options(vhost_options, vhost);
	}
	free(config->vhosts);
	config_free_options(database_options, &config->database);
	config_free_options(accounting_options, &config->accounting);
	config_free_options(global_options, config);
	for (int i = 0; i < SOURCE_COUNT; i++)
		free(config->source[i]);
	free(config->file);
	free(config);
}

/* Whether a plugin of any virtual host is one that `picks`. */
static bool any_plugin(const struct config *config,
		       bool (*picks)(const struct plugin *plugin, const char *arg), const char *arg)
{
	for (size_t i = 0; i < config->vhost_count; i++) {
		const struct vhost *v = &config->vhosts[i];
		for (size_t j = 0; j < v->plugin_count; j++) {
			if (picks(v->plugins[j], arg))
				return true;
		}
	}
	return false;
}

static bool uses_database(const struct plugin *plugin, const char *unused)
{
	(void)unused;
	return plugin->module->uses_database;
}

static bool is_module(const struct plugin *plugin, const char *module)
{
	return strcasecmp(plugin->module->name, module) == 0;
}

bool config_needs_store(const struct config *config)
{
	return any_plugin(config, uses_database, NULL);
}

bool config_uses_module(const struct config *config, const char *module)
{
	return any_plugin(config, is_module, module);
}

const struct vhost *config_find_vhost(const struct config *config, int port, const char *path)
{
	for (size_t i = 0; i < config->vhost_count; i++) {
		const struct vhost *v = &config->vhosts[i];
		if (path ? strcmp(v->socket, path) == 0 : v->port == port)
			return v;
	}
	return NULL;
}
