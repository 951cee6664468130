/*
 * policy.h: the Postfix policy delegation protocol (SMTPD_POLICY_README).
 *
 * A request is "name=value\n" lines ended by an empty line; the answer is
 * "action=TEXT\n\n".  policy_parse() is incremental: call it again with the
 * same parser each time more bytes arrive.  The first call splits what is
 * there; later ones search only the new bytes for the end and split the
 * request once it is complete, so a client that drips a request a byte at a
 * time costs linear work.  Nothing but the parser is kept between calls: the
 * bytes may move and the attribute array may change.  A parsed request points
 * into the caller's bytes: it is valid until those bytes are consumed or
 * moved.  Pure functions; any thread.
 */
#ifndef TALLYD_POLICY_H
#define TALLYD_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "buf.h"

struct policy_limits {
	size_t max_request_size;   /* bytes, including the newlines */
	size_t max_attributes;
};

struct attribute {
	const char *name;
	const char *value;         /* not NUL-terminated inside the request */
	size_t name_len;
	size_t value_len;
};

struct request {
	struct attribute *attrs;   /* room for max_attributes, owned by the caller */
	size_t count;
};

/* Where the search for the end of the current request stands. */
struct policy_parser {
	size_t scanned;            /* bytes already searched; 0: a new request */
};

enum policy_status {
	POLICY_INCOMPLETE,         /* need more bytes */
	POLICY_REQUEST,            /* *req holds a request of *used bytes */
	POLICY_MALFORMED,          /* *error says why; the connection must go */
};

void policy_parser_reset(struct policy_parser *p);

/* Looks for one complete request at the start of data[0..len).  On
 * POLICY_REQUEST the parser is reset for the next request. */
enum policy_status policy_parse(struct policy_parser *p, const struct policy_limits *limits,
				const char *data, size_t len, struct request *req,
				size_t *used, const char **error);

/* The first attribute named name[0..name_len), or NULL when the request
 * lacks it. */
const struct attribute *request_find_len(const struct request *req, const char *name,
					 size_t name_len);

/* The first attribute named `name`, or NULL when the request lacks it.
 * Inline, so that the length of a literal name is known when compiling. */
static inline const struct attribute *request_find(const struct request *req, const char *name)
{
	return request_find_len(req, name, strlen(name));
}

/* True when the value is missing, empty or only white space: the rule
 * mtpolicyd uses to skip a field. */
bool attribute_is_blank(const struct attribute *attr);

/* True for a text that can follow "action=": not empty, one line. */
bool policy_action_is_valid(const char *action);

/* Appends "action=TEXT\n\n". */
void policy_write_answer(struct buf *out, const char *action);

#endif
