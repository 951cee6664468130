/*
 * policy.c: request parser and answer writer for the policy protocol (see
 * policy.h).  Stateless apart from the caller's struct policy_parser; called
 * by whichever worker thread currently owns the connection.
 */
#include <string.h>

#include "policy.h"

void policy_parser_reset(struct policy_parser *p)
{
	p->scanned = 0;
}

/* Finds "\n\n" (or a lone "\n" at offset 0) in data[from..len); returns the
 * offset just past it, or 0 when absent. */
static size_t find_end(const char *data, size_t len, size_t from)
{
	if (len > 0 && data[0] == '\n')
		return 1;
	size_t pos = from > 0 ? from - 1 : 0;
	while (pos + 1 < len) {
		const char *nl = memchr(data + pos, '\n', len - pos - 1);
		if (nl == NULL)
			return 0;
		pos = (size_t)(nl - data);
		if (data[pos + 1] == '\n')
			return pos + 2;
		pos++;
	}
	return 0;
}

static enum policy_status split_lines(const struct policy_limits *limits, const char *data,
				      size_t end, struct request *req, const char **error)
{
	req->count = 0;
	if (end == 1) {
		*error = "empty request (a blank line with no attributes)";
		return POLICY_MALFORMED;
	}
	const char *line = data, *stop = data + end - 1;   /* up to the final blank line */
	while (line < stop) {
		const char *nl = memchr(line, '\n', (size_t)(stop - line));
		const char *eq = memchr(line, '=', (size_t)(nl - line));
		if (eq == NULL) {
			*error = "line without '='";
			return POLICY_MALFORMED;
		}
		if (eq == line) {
			*error = "attribute with an empty name";
			return POLICY_MALFORMED;
		}
		if (req->count == limits->max_attributes) {
			*error = "too many attributes";
			return POLICY_MALFORMED;
		}
		struct attribute *a = &req->attrs[req->count++];
		a->name = line;
		a->name_len = (size_t)(eq - line);
		a->value = eq + 1;
		a->value_len = (size_t)(nl - eq - 1);
		line = nl + 1;
	}
	return POLICY_REQUEST;
}

enum policy_status policy_parse(struct policy_parser *p, const struct policy_limits *limits,
				const char *data, size_t len, struct request *req,
				size_t *used, const char **error)
{
	size_t end = find_end(data, len, p->scanned);
	size_t searched = end ? end : len;

	if (memchr(data + p->scanned, '\0', searched - p->scanned) != NULL) {
		*error = "NUL byte in request";
		return POLICY_MALFORMED;
	}
	if (searched > limits->max_request_size) {
		*error = "request larger than max_request_size";
		return POLICY_MALFORMED;
	}
	if (end == 0) {
		p->scanned = len;
		return POLICY_INCOMPLETE;
	}
	p->scanned = 0;
	*used = end;
	return split_lines(limits, data, end, req, error);
}

const struct attribute *request_find(const struct request *req, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < req->count; i++) {
		const struct attribute *a = &req->attrs[i];
		if (a->name_len == len && memcmp(a->name, name, len) == 0)
			return a;
	}
	return NULL;
}

bool attribute_is_blank(const struct attribute *attr)
{
	if (attr == NULL)
		return true;
	for (size_t i = 0; i < attr->value_len; i++) {
		switch (attr->value[i]) {
		case ' ': case '\t': case '\r': case '\f': case '\v':
			continue;
		default:
			return false;
		}
	}
	return true;
}

bool policy_action_is_valid(const char *action)
{
	return action[0] != '\0' && strpbrk(action, "\r\n") == NULL;
}

void policy_write_answer(struct buf *out, const char *action)
{
	buf_reserve(out, strlen(action) + 9);
	buf_append(out, "action=", 7);
	buf_append_str(out, action);
	buf_append(out, "\n\n", 2);
}
