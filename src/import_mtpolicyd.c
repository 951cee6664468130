/*
 * import_mtpolicyd.c: mtpolicyd.conf → tallyd.conf (see import_mtpolicyd.h).
 *
 * mtpolicyd reads its file with Perl's Config::General: "key = value" or
 * "key value" lines, values optionally in quotes, # comments, lines joined by
 * a trailing backslash, <Block argument> ... </Block> sections.  The reader
 * below builds a tree of those items; the writer walks it and emits what
 * tallyd understands.  Single-threaded, command line only.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "import_mtpolicyd.h"
#include "log.h"

/* ------------------------------------------------------------------ reader */

struct item {
	char *name;                /* the key, or the block's name ("VirtualHost") */
	char *value;               /* the value, or the block's argument ("12346") */
	int line;
	bool block;
	struct item *children;     /* a block's items */
	size_t count;
};

static void item_free(struct item *it)
{
	for (size_t i = 0; i < it->count; i++)
		item_free(&it->children[i]);
	free(it->children);
	free(it->name);
	free(it->value);
}

static struct item *item_add(struct item *parent)
{
	parent->children = xrealloc(parent->children, (parent->count + 1) * sizeof(struct item));
	struct item *it = &parent->children[parent->count++];
	memset(it, 0, sizeof(*it));
	return it;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

/* Cuts a # comment off, unless the # is inside quotes or escaped. */
static void strip_comment(char *line)
{
	char quote = 0;

	for (char *p = line; *p; p++) {
		if (*p == '\\' && p[1]) {
			p++;
		} else if (quote) {
			quote = *p == quote ? 0 : quote;
		} else if (*p == '"' || *p == '\'') {
			quote = *p;
		} else if (*p == '#') {
			*p = '\0';
			return;
		}
	}
}

/* A value as Config::General gives it: without its surrounding quotes. */
static char *unquote(const char *value)
{
	size_t len = strlen(value);

	if (len >= 2 && (value[0] == '"' || value[0] == '\'') && value[len - 1] == value[0])
		return xstrndup(value + 1, len - 2);
	return xstrdup(value);
}

/* Appends "PATH:LINE: message\n" to `list`: how the reader's error and the
 * writer's lists of what they left out name a place in the file. */
static void place(struct buf *list, const char *path, int line, const char *fmt, ...)
	PRINTF_LIKE(4, 5);
static void place(struct buf *list, const char *path, int line, const char *fmt, ...)
{
	va_list ap, again;

	buf_printf(list, "%s:%d: ", path, line);
	va_start(ap, fmt);
	va_copy(again, ap);
	int n = vsnprintf(NULL, 0, fmt, ap);
	if (n > 0) {
		buf_reserve(list, (size_t)n);
		vsnprintf(list->data + list->len, (size_t)n + 1, fmt, again);
		list->len += (size_t)n;
	}
	va_end(again);
	va_end(ap);
	buf_append_str(list, "\n");
}

struct reader {
	const char *path;
	struct buf error;          /* "PATH:LINE: what is wrong\n" */
};

/* One logical line (continuations joined); NULL at the end of the file. */
static char *read_line(FILE *f, struct buf *b, int *line)
{
	char chunk[4096];

	buf_reset(b);
	while (fgets(chunk, sizeof(chunk), f)) {
		size_t len = strlen(chunk);
		if (len > 0 && chunk[len - 1] == '\n')
			(*line)++;
		buf_append(b, chunk, len);
		while (b->len > 0 && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == '\r'))
			b->data[--b->len] = '\0';
		if (b->len > 0 && b->data[b->len - 1] == '\\') {
			b->data[--b->len] = '\0';       /* continued on the next line */
			continue;
		}
		return b->data ? b->data : "";
	}
	return b->len > 0 ? b->data : NULL;
}

/* Parses `line` into a key/value item of `block`, a new block, or the end of
 * `block`; false (with r->error) on a syntax error. */
static bool parse_line(struct reader *r, char *text, int line, struct item **stack, int *depth)
{
	struct item *block = stack[*depth];

	if (text[0] == '<' && text[1] == '/') {
		char *name = trim(text + 2);
		name[strcspn(name, ">")] = '\0';
		if (*depth == 0 || strcasecmp(trim(name), block->name) != 0) {
			place(&r->error, r->path, line, "</%s> closes no open <%s>", name, name);
			return false;
		}
		(*depth)--;
		return true;
	}
	if (strncmp(text, "<<", 2) == 0) {
		place(&r->error, r->path, line, "includes (%s) are not read: import the included "
		      "file too", text);
		return false;
	}
	if (text[0] == '<') {
		char *close = strchr(text, '>');
		if (close == NULL) {
			place(&r->error, r->path, line, "a block opens without '>'");
			return false;
		}
		*close = '\0';
		char *inner = trim(text + 1), *arg = inner + strcspn(inner, " \t");
		if (*arg)
			*arg++ = '\0';
		struct item *it = item_add(block);
		it->name = xstrdup(inner);
		it->value = unquote(trim(arg));
		it->line = line;
		it->block = true;
		if (*depth == 15) {
			place(&r->error, r->path, line, "blocks nested too deep");
			return false;
		}
		stack[++*depth] = it;
		return true;
	}
	size_t key_len = strcspn(text, " \t=");
	char *rest = text + key_len;
	rest += strspn(rest, " \t");
	if (*rest == '=')
		rest++;
	struct item *it = item_add(block);
	it->name = xstrndup(text, key_len);
	it->value = unquote(trim(rest));
	it->line = line;
	return true;
}

static bool read_file(struct reader *r, FILE *f, struct item *root)
{
	struct item *stack[16] = { root };
	int depth = 0, line = 0;
	struct buf b;
	char *text;
	bool ok = true;

	buf_init(&b);
	while (ok && (text = read_line(f, &b, &line)) != NULL) {
		strip_comment(text);
		text = trim(text);
		if (*text)
			ok = parse_line(r, text, line, stack, &depth);
	}
	buf_free(&b);
	if (ok && depth > 0) {
		place(&r->error, r->path, stack[depth]->line, "<%s %s> is never closed",
		      stack[depth]->name, stack[depth]->value);
		ok = false;
	}
	return ok;
}

/* ------------------------------------------------------------------ writer */

/*
 * tallyd.service starts tallyd as user tallyd, and lets it write only
 * /run/tallyd and /var/lib/tallyd: the import writes the package's user,
 * group, pid_file, journal and SQLite file (conf/tallyd.conf's), whatever
 * mtpolicyd had (kept as comments), so that its output starts under the
 * unit as it is.
 */
static const struct { const char *name, *value; } packaged[] = {
	{ "user", "tallyd" }, { "group", "tallyd" }, { "pid_file", "/run/tallyd/tallyd.pid" },
};
#define PACKAGED_STATE_DIR "/var/lib/tallyd/"
#define PACKAGED_JOURNAL PACKAGED_STATE_DIR "journal"
#define PACKAGED_SQLITE PACKAGED_STATE_DIR "tallyd.sqlite"

/* What the writer leaves out goes to one of two lists, each line
 * "PATH:LINE: what": `left_out` for what changes answers (the import exits
 * 2), `inert` for what changes no answer (Net::Server's process knobs,
 * log_file, connections only left-out parts use). */
struct writer {
	const char *path;
	struct buf config;         /* the tallyd.conf text */
	struct buf left_out;
	struct buf inert;
	const struct item *root;
};

/* A libconfig string literal. */
static void quoted(struct buf *out, const char *s)
{
	buf_append_str(out, "\"");
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_append(out, "\\", 1);
		buf_append(out, s, 1);
	}
	buf_append_str(out, "\"");
}

static const struct item *find(const struct item *block, const char *name)
{
	for (size_t i = 0; i < block->count; i++) {
		if (!block->children[i].block && strcasecmp(block->children[i].name, name) == 0)
			return &block->children[i];
	}
	return NULL;
}

static bool is_integer(const char *s)
{
	char *end;

	if (*s == '\0')
		return false;
	strtoll(s, &end, 10);
	return *end == '\0';
}

/* mtpolicyd's plugins test `enabled eq 'off'`: only that exact string
 * switches a plugin off; "OFF", "0", "no" and "" leave it running. */
static bool switch_value(const char *s)
{
	return strcmp(s, "off") != 0;
}

enum kind { STRING, INTEGER, SWITCH };

struct plugin_option {
	const char *name;
	enum kind kind;
};

struct module {
	const char *name;                     /* mtpolicyd's, as tallyd spells it */
	const struct plugin_option *options;  /* what carries over */
};

static const struct plugin_option accounting_options[] = {
	{ "fields", STRING }, { "time_pattern", STRING }, { "table_prefix", STRING },
	{ "enabled", SWITCH }, { "uc_enabled", STRING }, { NULL, 0 },
};
static const struct plugin_option quota_options[] = {
	{ "field", STRING }, { "metric", STRING }, { "threshold", INTEGER }, { "action", STRING },
	{ "time_pattern", STRING }, { "table_prefix", STRING }, { "enabled", SWITCH },
	{ "uc_enabled", STRING }, { "uc_field", STRING }, { "uc_threshold", STRING },
	{ "uc_action", STRING }, { "uc_metric", STRING }, { NULL, 0 },
};
static const struct plugin_option sqluserconfig_options[] = {
	{ "sql_query", STRING }, { "field", STRING }, { NULL, 0 },
};
static const struct plugin_option action_options[] = {
	{ "action", STRING }, { NULL, 0 },
};
static const struct module modules[] = {
	{ "Accounting", accounting_options }, { "Quota", quota_options },
	{ "SqlUserConfig", sqluserconfig_options }, { "Action", action_options },
};

/* mtpolicyd's options every plugin may have that mean nothing to tallyd */
static bool ignorable(const char *name)
{
	return strcasecmp(name, "module") == 0 || strcasecmp(name, "log_level") == 0;
}

static const struct module *find_module(const char *name)
{
	for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]); i++) {
		if (strcasecmp(modules[i].name, name) == 0)
			return &modules[i];
	}
	return NULL;
}

static const struct plugin_option *find_option(const struct module *m, const char *name)
{
	for (const struct plugin_option *o = m->options; o->name; o++) {
		if (strcmp(o->name, name) == 0)
			return o;
	}
	return NULL;
}

/* An mtpolicyd switch as a libconfig boolean; a value other than "on" or
 * "off" gets a comment, so that nobody takes "OFF" for a plugin that is
 * off. */
static void write_switch(struct buf *out, const char *name, const char *value)
{
	bool on = switch_value(value);

	if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0)
		buf_printf(out, "\n        # mtpolicyd had %s = \"%s\"; only \"off\" switches a "
			   "plugin off", name, value);
	buf_printf(out, "\n        %s = %s;", name, on ? "true" : "false");
}

/* Writes one plugin; false when it is left out. */
static bool write_plugin(struct writer *w, const struct item *p, struct buf *out)
{
	const struct item *module_item = find(p, "module");
	const struct module *m = module_item ? find_module(module_item->value) : NULL;

	if (m == NULL) {
		place(&w->left_out, w->path, p->line, "plugin %s (module %s): tallyd has no such "
		      "module", p->value, module_item ? module_item->value : "not set");
		return false;
	}
	buf_append_str(out, "      { name = ");
	quoted(out, p->value);
	buf_printf(out, "; module = \"%s\";", m->name);
	for (size_t i = 0; i < p->count; i++) {
		const struct item *o = &p->children[i];
		const struct plugin_option *known = o->block ? NULL : find_option(m, o->name);
		if (o->block) {
			place(&w->left_out, w->path, o->line, "plugin %s: the <%s %s> inside it",
			      p->value, o->name, o->value);
		} else if (known == NULL) {
			if (!ignorable(o->name))
				place(&w->left_out, w->path, o->line, "plugin %s: option %s", p->value,
				      o->name);
		} else if (known->kind == INTEGER && !is_integer(o->value)) {
			place(&w->left_out, w->path, o->line, "plugin %s: %s = %s is not a whole number",
			      p->value, o->name, o->value);
		} else if (known->kind == SWITCH) {
			write_switch(out, o->name, o->value);
		} else {
			buf_printf(out, "\n        %s = ", o->name);
			if (known->kind == INTEGER)
				buf_append_str(out, o->value);
			else
				quoted(out, o->value);
			buf_append_str(out, ";");
		}
	}
	buf_append_str(out, " }");
	return true;
}

static void write_vhost(struct writer *w, const struct item *v, bool *first)
{
	struct buf plugins;
	size_t written = 0;

	buf_init(&plugins);
	for (size_t i = 0; i < v->count; i++) {
		const struct item *p = &v->children[i];
		if (p->block && strcasecmp(p->name, "Plugin") == 0) {
			struct buf one;
			buf_init(&one);
			if (write_plugin(w, p, &one)) {
				buf_printf(&plugins, "%s%s", written++ ? ",\n" : "", one.data);
			}
			buf_free(&one);
		} else if (!(strcasecmp(p->name, "name") == 0 && !p->block)) {
			place(&w->left_out, w->path, p->line, "virtual host %s: %s", v->value, p->name);
		}
	}
	if (written == 0) {
		place(&w->left_out, w->path, v->line, "virtual host %s: no plugin tallyd has; its "
		      "port answers dunno", v->value);
	} else {
		const struct item *name = find(v, "name");
		buf_printf(&w->config, "%s  { port = %s;", *first ? "" : ",\n", v->value);
		if (name) {
			buf_append_str(&w->config, " name = ");
			quoted(&w->config, name->value);
			buf_append_str(&w->config, ";");
		}
		buf_printf(&w->config, "\n    plugins = (\n%s\n    );\n  }", plugins.data);
		*first = false;
	}
	buf_free(&plugins);
}

/* ------------------------------------------------------------- globals */

/* Net::Server's port list: "host:port", "port" (host from `host`, which
 * mtpolicyd sets to 127.0.0.1 before it reads its file; "*" is every
 * address), "/path|unix". */
static void write_listen(struct writer *w, const struct item *port, const struct item *host)
{
	char *copy = xstrdup(port ? port->value : "127.0.0.1:12345"), *save = NULL;
	const char *default_host = host ? host->value : "127.0.0.1";
	size_t n = 0;

	buf_append_str(&w->config, "listen = \"");
	for (char *p = strtok_r(copy, ", ", &save); p; p = strtok_r(NULL, ", ", &save)) {
		char *unix_mark = strstr(p, "|unix");
		if (unix_mark) {
			*unix_mark = '\0';
			buf_printf(&w->config, "%sunix:%s", n++ ? "," : "", p);
		} else if (strchr(p, ':')) {
			buf_printf(&w->config, "%s%s", n++ ? "," : "", p);
		} else {
			buf_printf(&w->config, "%s%s:%s", n++ ? "," : "", default_host, p);
		}
	}
	buf_append_str(&w->config, "\";\n");
	free(copy);
}

/* dbi:mysql:database=X;host=Y;port=Z, dbi:mysql:X, dbi:SQLite:dbname=/path */
static void write_database(struct writer *w, const char *dsn, const char *user,
			   const char *password, int line)
{
	char *copy = xstrdup(dsn), *save = NULL;
	char *scheme = strtok_r(copy, ":", &save), *driver = strtok_r(NULL, ":", &save);
	char *rest = strtok_r(NULL, "", &save);
	bool sqlite = driver && strcasecmp(driver, "SQLite") == 0;

	if (scheme == NULL || strcasecmp(scheme, "dbi") != 0 || driver == NULL ||
	    (!sqlite && strcasecmp(driver, "mysql") != 0 && strcasecmp(driver, "MariaDB") != 0)) {
		place(&w->left_out, w->path, line, "database %s: tallyd speaks to MySQL/MariaDB and "
		      "SQLite only", dsn);
		free(copy);
		return;
	}
	buf_printf(&w->config, "database = {\n  driver = \"%s\";\n", sqlite ? "sqlite" : "mysql");
	for (char *p = rest ? strtok_r(rest, ";", &save) : NULL; p; p = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(p, '=');
		const char *key = eq ? (*eq = '\0', p) : (sqlite ? "dbname" : "database");
		const char *value = eq ? eq + 1 : p;
		if (strcmp(key, "database") == 0 || strcmp(key, "dbname") == 0 || strcmp(key, "db") == 0)
			key = sqlite ? "path" : "name";
		else if (strcmp(key, "mysql_socket") == 0)
			key = "socket";
		else if (strcmp(key, "host") != 0 && strcmp(key, "port") != 0) {
			place(&w->left_out, w->path, line, "database: %s=%s", key, value);
			continue;
		}
		if (strcmp(key, "path") == 0 &&
		    strncmp(value, PACKAGED_STATE_DIR, strlen(PACKAGED_STATE_DIR)) != 0) {
			place(&w->left_out, w->path, line, "database %s: tallyd.service lets tallyd "
			      "write only " PACKAGED_STATE_DIR "; to keep its counts, copy it to "
			      PACKAGED_SQLITE ", owned by tallyd", value);
			buf_printf(&w->config, "  # mtpolicyd's file was %s: copy it here, owned by "
				   "tallyd,\n  # to keep its counts\n", value);
			value = PACKAGED_SQLITE;
		}
		buf_printf(&w->config, "  %s = ", key);
		if (strcmp(key, "port") == 0 && is_integer(value))
			buf_append_str(&w->config, value);
		else
			quoted(&w->config, value);
		buf_append_str(&w->config, ";\n");
	}
	if (!sqlite) {
		buf_append_str(&w->config, "  user = ");
		quoted(&w->config, user ? user : "");
		buf_append_str(&w->config, ";\n  password = ");
		quoted(&w->config, password ? password : "");
		buf_append_str(&w->config, ";\n");
	}
	buf_append_str(&w->config, "};\n");
	free(copy);
}

/* The database: the first Sql connection (mtpolicyd 2 names it db), else
 * db_dsn (mtpolicyd 1).  Every other connection is listed: another Sql one
 * changes answers (what reads it would read tallyd's one database); the
 * others (Memcached, Ldap...) serve only what tallyd lacks (and lists
 * where it is configured), so by themselves they change no answer. */
static void write_connection(struct writer *w)
{
	const struct item *used = NULL, *dsn = NULL, *user = NULL, *password = NULL;

	for (size_t i = 0; i < w->root->count; i++) {
		const struct item *c = &w->root->children[i];
		if (!c->block || strcasecmp(c->name, "Connection") != 0)
			continue;
		const struct item *module = find(c, "module");
		bool sql = module && strcasecmp(module->value, "Sql") == 0 && find(c, "dsn");
		if (sql && used == NULL) {
			used = c;
			if (strcmp(c->value, "db") != 0)
				place(&w->left_out, w->path, c->line, "connection %s: tallyd has one "
				      "database; it uses this one", c->value);
		} else if (sql) {
			place(&w->left_out, w->path, c->line, "connection %s (Sql): tallyd has one "
			      "database, connection %s's", c->value, used->value);
		} else {
			place(&w->inert, w->path, c->line, "connection %s (module %s): nothing tallyd "
			      "runs uses it", c->value, module ? module->value : "not set");
		}
	}
	if (used) {
		dsn = find(used, "dsn");
		user = find(used, "user");
		password = find(used, "password");
	} else if ((dsn = find(w->root, "db_dsn")) != NULL) {
		user = find(w->root, "db_user");
		password = find(w->root, "db_password");
	}
	if (dsn)
		write_database(w, dsn->value, user ? user->value : NULL,
			       password ? password->value : NULL, used ? used->line : dsn->line);
}

/* mtpolicyd's session cache keeps a message's session in memcached or
 * Redis for `expire` seconds (300 when not set), so that its plugins count
 * a message once however many requests Postfix makes about it: tallyd's
 * session_cache does that in memory, with expire as its ttl.  Module None
 * (mtpolicyd's default) is no cache; the backend's own options (servers,
 * locks) change no answer. */
static void write_session_cache(struct writer *w)
{
	const struct item *cache = NULL;

	for (size_t i = 0; i < w->root->count && cache == NULL; i++) {
		const struct item *it = &w->root->children[i];
		if (it->block && strcasecmp(it->name, "SessionCache") == 0)
			cache = it;
	}
	if (cache == NULL)
		return;
	const struct item *module = find(cache, "module"), *expire = find(cache, "expire");
	if (module == NULL || strcasecmp(module->value, "None") == 0) {
		place(&w->inert, w->path, cache->line, "<SessionCache> with module %s: no session "
		      "cache, as in tallyd without session_cache", module ? module->value : "not set");
		return;
	}
	long ttl = expire ? strtol(expire->value, NULL, 10) : 300;
	if (expire && (!is_integer(expire->value) || ttl < 1 || ttl > 604800)) {
		ttl = is_integer(expire->value) ? 604800 : 300;
		place(&w->inert, w->path, expire->line, "<SessionCache> expire = %s: tallyd keeps a "
		      "message's session 1 to 604800 s; it keeps it %ld s", expire->value, ttl);
	}
	for (size_t i = 0; i < cache->count; i++) {
		const struct item *o = &cache->children[i];
		if (o != module && o != expire)
			place(&w->inert, w->path, o->line, "<SessionCache> %s = %s: tallyd keeps "
			      "sessions in its own memory", o->name, o->value);
	}
	buf_printf(&w->config, "# mtpolicyd's <SessionCache> (%s): one count per message, kept "
		   "in memory\nsession_cache = {\n  ttl = %ld;%s\n};\n", module->value, ttl,
		   expire ? "" : "   # mtpolicyd's default expire");
}

/* Net::Server's log levels 0..4. */
static const char *log_level_name(const char *level)
{
	static const char *const names[] = { "error", "warning", "notice", "info", "debug" };
	int n = atoi(level);

	return names[n < 0 ? 0 : n > 4 ? 4 : n];
}

/* Settings of mtpolicyd's process, not of its answers: listed, and the
 * import still exits 0. */
#define POOL "Net::Server's process pool; tallyd answers with `workers` threads"
static const struct { const char *name, *why; } process_knobs[] = {
	{ "min_servers", POOL }, { "min_spare_servers", POOL }, { "max_spare_servers", POOL },
	{ "max_servers", POOL }, { "max_requests", POOL },
	{ "max_keepalive", "requests per connection; tallyd keeps a connection until "
	  "keepalive_timeout" },
	{ "log_file", "tallyd logs to syslog, or to stderr (log_target)" },
};
#undef POOL

static const char *process_knob(const char *name)
{
	for (size_t i = 0; i < sizeof(process_knobs) / sizeof(process_knobs[0]); i++) {
		if (strcasecmp(process_knobs[i].name, name) == 0)
			return process_knobs[i].why;
	}
	return NULL;
}

/* A timeout in whole seconds, 1..`most` as tallyd.conf(5) takes it; a
 * longer one is cut to `most`, and 0 (no limit in mtpolicyd) or a value
 * that is no number leaves tallyd's default. */
static void write_seconds(struct writer *w, const char *name, long most, const char *otherwise)
{
	const struct item *it = find(w->root, name);
	long seconds = it && is_integer(it->value) ? strtol(it->value, NULL, 10) : 0;

	if (it == NULL)
		return;
	if (seconds > most)
		place(&w->inert, w->path, it->line, "%s = %s: tallyd's longest is %ld s", name,
		      it->value, most);
	else if (seconds < 1)
		place(&w->inert, w->path, it->line, "%s = %s: %s", name, it->value, otherwise);
	if (seconds >= 1)
		buf_printf(&w->config, "%s = %ld;\n", name, seconds > most ? most : seconds);
}

static void write_process(struct writer *w)
{
	buf_append_str(&w->config, "# As the package runs tallyd: tallyd.service starts it as user "
		       "tallyd, which\n# may write only /run/tallyd and /var/lib/tallyd.\n");
	for (size_t i = 0; i < sizeof(packaged) / sizeof(packaged[0]); i++) {
		const struct item *it = find(w->root, packaged[i].name);
		if (it)
			buf_printf(&w->config, "# mtpolicyd had %s = %s\n", it->name, it->value);
		buf_printf(&w->config, "%s = ", packaged[i].name);
		quoted(&w->config, packaged[i].value);
		buf_append_str(&w->config, ";\n");
	}
	const struct item *level = find(w->root, "log_level");
	if (level)
		buf_printf(&w->config, "log_level = \"%s\";\n", log_level_name(level->value));
}

static void write_globals(struct writer *w)
{
	static const char *const handled[] = {
		"port", "host", "user", "group", "pid_file", "log_level", "db_dsn", "db_user",
		"db_password", "request_timeout", "keepalive_timeout", NULL
	};

	for (size_t i = 0; i < w->root->count; i++) {
		const struct item *it = &w->root->children[i];
		const char *why = it->block ? NULL : process_knob(it->name);
		bool known = false;
		for (int k = 0; handled[k] && !known; k++)
			known = strcasecmp(it->name, handled[k]) == 0;
		if (it->block && strcasecmp(it->name, "VirtualHost") != 0 &&
		    strcasecmp(it->name, "Connection") != 0 &&
		    strcasecmp(it->name, "SessionCache") != 0)
			place(&w->left_out, w->path, it->line, "<%s%s%s>", it->name,
			      *it->value ? " " : "", it->value);
		else if (why)
			place(&w->inert, w->path, it->line, "%s = %s: %s", it->name, it->value, why);
		else if (!it->block && !known)
			place(&w->left_out, w->path, it->line, "%s = %s", it->name, it->value);
	}
	write_process(w);
	write_seconds(w, "request_timeout", 3600, "tallyd's request_timeout stays 20 s");
	write_seconds(w, "keepalive_timeout", 86400, "tallyd closes an idle connection after "
		      "keepalive_timeout (default 300 s, Postfix's max_idle)");
	write_listen(w, find(w->root, "port"), find(w->root, "host"));
	write_connection(w);
	write_session_cache(w);
	buf_append_str(&w->config, "accounting = {\n  # Not in mtpolicyd: every increment is "
		       "written here before its answer,\n  # so that a crash loses no count.\n"
		       "  journal = \"" PACKAGED_JOURNAL "\";\n};\n");
}

static bool port_listed(const char *listen, const char *port)
{
	char needle[32];

	snprintf(needle, sizeof(needle), ":%s", port);
	for (const char *p = strstr(listen, needle); p; p = strstr(p + 1, needle)) {
		char after = p[strlen(needle)];
		if (after == ',' || after == '"')
			return true;
	}
	return false;
}

static void write_vhosts(struct writer *w)
{
	struct buf all = w->config;     /* write_vhost() appends to w->config */
	const char *listen = strstr(all.data, "listen = ");
	bool first = true;

	buf_init(&w->config);
	for (size_t i = 0; i < w->root->count; i++) {
		const struct item *v = &w->root->children[i];
		if (!v->block || strcasecmp(v->name, "VirtualHost") != 0)
			continue;
		if (!is_integer(v->value) || !port_listed(listen, v->value))
			place(&w->left_out, w->path, v->line, "virtual host %s: port is not in port",
			      v->value);
		else
			write_vhost(w, v, &first);
	}
	if (!first)                       /* at least one virtual host made it */
		buf_printf(&all, "virtual_hosts = (\n%s\n);\n", w->config.data);
	buf_free(&w->config);
	w->config = all;
}

/* `list`'s lines, each with `prefix` before it. */
static void print_list(FILE *out, const char *prefix, const struct buf *list)
{
	for (const char *line = list->data, *nl; line && *line; line = nl + 1) {
		nl = strchr(line, '\n');
		fprintf(out, "%s%.*s\n", prefix, (int)(nl - line), line);
	}
}

int import_mtpolicyd(const char *path, FILE *out, FILE *report)
{
	struct reader r = { .path = path };
	struct item root = { .name = NULL };
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		fprintf(report, "tallyd: %s: cannot read the file\n", path);
		return 1;
	}
	buf_init(&r.error);
	bool ok = read_file(&r, f, &root);
	fclose(f);
	if (!ok) {
		fprintf(report, "%s", r.error.data);
		buf_free(&r.error);
		item_free(&root);
		return 1;
	}
	buf_free(&r.error);
	struct writer w = { .path = path, .root = &root };
	buf_init(&w.config);
	buf_init(&w.left_out);
	buf_init(&w.inert);
	write_globals(&w);
	write_vhosts(&w);

	fprintf(out, "# tallyd.conf translated from %s by tallyd --import-mtpolicyd.\n", path);
	if (w.left_out.len > 0) {
		fprintf(out, "# Left out, changing answers:\n");
		print_list(out, "#   ", &w.left_out);
		fprintf(report, "tallyd: these parts of %s were not translated, and answers may "
			"differ:\n", path);
		print_list(report, "", &w.left_out);
	}
	if (w.inert.len > 0) {
		fprintf(out, "# Left out, changing no answer:\n");
		print_list(out, "#   ", &w.inert);
		fprintf(report, "tallyd: left out too, changing no answer:\n");
		print_list(report, "", &w.inert);
	}
	fprintf(out, "\n%s", w.config.data ? w.config.data : "");
	int status = w.left_out.len > 0 ? 2 : 0;
	buf_free(&w.config);
	buf_free(&w.left_out);
	buf_free(&w.inert);
	item_free(&root);
	return status;
}
