/*
 * json.h: a user config (a JSON object) parsed into session values, with
 * yajl.  Only the top level matters: strings, numbers (kept as written),
 * true/false/null; nested objects and arrays are recorded as SESSION_OTHER,
 * with their compact JSON text (numbers as written).
 * Pure function; any thread.
 */
#ifndef TALLYD_JSON_H
#define TALLYD_JSON_H

#include <stddef.h>

#include "session.h"

/* Adds the keys of the JSON object in text[0..len) to `out`.  Returns 0, or
 * -1 with a reason in error[] when the text is not a JSON object. */
int json_parse_object(const char *text, size_t len, struct session *out, char *error,
		      size_t error_size);

#endif
