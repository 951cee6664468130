/*
 * session.h: the per-request session and mtpolicyd's uc_ override rules.
 *
 * SqlUserConfig puts the keys of a JSON object into the session; a plugin
 * option uc_X = "var" means "for this request, the session value of var
 * replaces option X" (DESIGN.md section 4).  A session belongs to one worker
 * thread and is cleared between requests; it allocates only when it grows.
 * The same struct holds a parsed user config in the SqlUserConfig cache,
 * where it is read-only once published.
 */
#ifndef TALLYD_SESSION_H
#define TALLYD_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum session_kind {
	SESSION_STRING,
	SESSION_NUMBER,            /* text holds the number as written in JSON */
	SESSION_TRUE,
	SESSION_FALSE,
	SESSION_NULL,              /* JSON null: "not set" */
	SESSION_OTHER,             /* an object or array, as compact JSON text: only
	                              RateLimit's uc_limits uses one */
};

struct session_value {
	size_t name;               /* offsets into session->strings, NUL-terminated */
	size_t text;
	size_t text_len;
	enum session_kind kind;
};

struct session {
	struct buf strings;
	struct session_value *values;
	size_t count;
	size_t cap;
};

/* A value as a plugin sees it; text is NUL-terminated and valid until the
 * session changes. */
struct session_view {
	enum session_kind kind;
	const char *text;
	size_t len;
};

void session_init(struct session *s);
void session_free(struct session *s);
void session_clear(struct session *s);

/* Sets name to a value, replacing an earlier value of the same name. */
void session_set(struct session *s, const char *name, size_t name_len,
		 enum session_kind kind, const char *text, size_t text_len);
/* Copies every value of `from` into `to` (later SqlUserConfig plugins win). */
void session_merge(struct session *to, const struct session *from);
bool session_get(const struct session *s, const char *name, struct session_view *out);

/*
 * The uc_ rules.  `uc` is the configured uc_ option (the session variable
 * name) or NULL; `plugin` names the plugin in log lines.  Each returns the
 * configured value when uc is NULL, the variable is unset or null, or its
 * value cannot be used (which is logged).
 */
/* enabled: only the string "off" switches off, as in mtpolicyd (a JSON
 * false too switches on there); any other value switches on. */
bool session_uc_switch(const struct session *s, const char *uc, bool configured);
/* threshold: an integer (string or number); huge values saturate. */
int64_t session_uc_number(const struct session *s, const char *uc, int64_t configured,
			  const char *plugin);
/* action, field, metric: a non-empty string that `valid` accepts. */
const char *session_uc_text(const struct session *s, const char *uc, const char *configured,
			    bool (*valid)(const char *), const char *plugin, const char *option);

/* Parses an integer the way a threshold is read: optional sign, digits, or a
 * finite decimal/exponent number (rounded up); saturates.  Leading and
 * trailing white space is allowed.  Returns false for anything else. */
bool session_parse_number(const char *text, size_t len, int64_t *out);

#endif
