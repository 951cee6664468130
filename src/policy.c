/*
 * policy.c: request parser and answer writer for the policy protocol (see
 * policy.h).  Stateless apart from the caller's struct policy_parser; called
 * by whichever worker thread currently owns the connection.
 */
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "policy.h"

void policy_parser_reset(struct policy_parser *p)
{
	p->scanned = 0;
}

/* The length of the empty line at data[at..len) ("\n", or "\r\n" from a
 * client that ends lines the network way), or 0 when there is none. */
static size_t empty_line(const char *data, size_t len, size_t at)
{
	if (at < len && data[at] == '\n')
		return 1;
	return at + 1 < len && data[at] == '\r' && data[at + 1] == '\n' ? 2 : 0;
}

/* Finds the empty line that ends a request in data[from..len) (or at
 * offset 0); returns the offset just past it, or 0 when absent. */
static size_t find_end(const char *data, size_t len, size_t from)
{
	size_t n = empty_line(data, len, 0);

	if (n > 0)
		return n;
	size_t pos = from > 1 ? from - 2 : 0;      /* a "\n\r\n" may straddle from */
	while (pos + 1 < len) {
		const char *nl = memchr(data + pos, '\n', len - pos - 1);
		if (nl == NULL)
			return 0;
		pos = (size_t)(nl - data) + 1;
		n = empty_line(data, len, pos);
		if (n > 0)
			return pos + n;
	}
	return 0;
}

#ifdef __SSE2__
/* Bit i is set when byte i of the 32 bytes low:high is c. */
static uint32_t bytes_equal(__m128i low, __m128i high, char c)
{
	const __m128i want = _mm_set1_epi8(c);

	return (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(low, want)) |
	       (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(high, want)) << 16;
}
#endif

/* The '\n' that ends the line at `line`, or NULL when none comes before
 * stop; *eq is the line's first '=', or NULL.  Most lines of a Postfix
 * request are shorter than 32 bytes: with SSE2 (any x86-64) one look at 32
 * bytes finds both, for less than one memchr call costs.  A longer value
 * takes memchr for its end; a longer name, the last 31 bytes of the data and
 * other processors take memchr for both. */
static const char *find_line(const char *line, const char *stop, const char **eq)
{
#ifdef __SSE2__
	if (stop - line >= 32) {
		__m128i low = _mm_loadu_si128((const __m128i *)(const void *)line);
		__m128i high = _mm_loadu_si128((const __m128i *)(const void *)(line + 16));
		uint32_t newlines = bytes_equal(low, high, '\n');
		uint32_t equals = bytes_equal(low, high, '=');
		if (newlines != 0) {
			int len = __builtin_ctz(newlines);
			equals &= (UINT32_C(1) << len) - 1;
			*eq = equals != 0 ? line + __builtin_ctz(equals) : NULL;
			return line + len;
		}
		if (equals != 0) {         /* a long value */
			*eq = line + __builtin_ctz(equals);
			return memchr(line + 32, '\n', (size_t)(stop - line - 32));
		}
	}
#endif
	const char *nl = memchr(line, '\n', (size_t)(stop - line));

	*eq = nl != NULL ? memchr(line, '=', (size_t)(nl - line)) : NULL;
	return nl;
}

/* Splits the lines of data[0..len) into req, searching each line once, up to
 * the empty line that ends the request.  Returns the offset just past that
 * line, or 0 when data holds no end yet.  *line_error is the first malformed
 * line's reason, or NULL; after one, the rest is only searched for the end. */
/* A request whose lines end with CRLF ended with "\r\n": its values lose
 * their trailing CR.  Found only at the end, so that LF requests, all of
 * Postfix's, pay nothing for it. */
static void strip_carriage_returns(struct request *req)
{
	for (size_t i = 0; i < req->count; i++) {
		struct attribute *a = &req->attrs[i];
		if (a->value_len > 0 && a->value[a->value_len - 1] == '\r')
			a->value_len--;
	}
}

static size_t split_request(const struct policy_limits *limits, const char *data, size_t len,
			    struct request *req, const char **line_error)
{
	const char *line = data, *stop = data + len, *eq;
	struct attribute *attrs = req->attrs;
	size_t count = 0;

	*line_error = NULL;
	while (line < stop && *line != '\n') {
		const char *nl = find_line(line, stop, &eq);
		if (nl == NULL)
			break;
		if (eq == NULL && nl == line + 1 && *line == '\r') {
			req->count = count;            /* "\r\n": the end, CRLF style */
			strip_carriage_returns(req);
			if (line == data)
				*line_error = "empty request (a blank line with no attributes)";
			return (size_t)(nl + 1 - data);
		}
		const char *error = eq == NULL ? "line without '='"
				  : eq == line ? "attribute with an empty name"
				  : count == limits->max_attributes ? "too many attributes" : NULL;
		if (error != NULL) {
			req->count = count;
			*line_error = error;
			return find_end(data, len, (size_t)(nl + 1 - data));
		}
		struct attribute *a = &attrs[count++];
		a->name = line;
		a->name_len = (size_t)(eq - line);
		a->value = eq + 1;
		a->value_len = (size_t)(nl - eq - 1);
		line = nl + 1;
	}
	req->count = count;
	if (line == stop || *line != '\n')
		return 0;
	if (line == data)
		*line_error = "empty request (a blank line with no attributes)";
	return (size_t)(line + 1 - data);
}

/*
 * Most requests arrive in one read, so the first call for a request splits
 * it while looking for its end.  When the end is not there yet, later calls
 * search only the new bytes for it (find_end), and split the whole request
 * once it is complete: the caller may hand over another attribute array, and
 * its bytes may have moved, between calls, so nothing split before is kept.
 * A malformed line is reported only once the request is complete, after the
 * NUL and size checks, as when the request arrives in one piece.
 */
enum policy_status policy_parse(struct policy_parser *p, const struct policy_limits *limits,
				const char *data, size_t len, struct request *req,
				size_t *used, const char **error)
{
	const char *line_error = NULL;
	size_t end = p->scanned == 0 ? split_request(limits, data, len, req, &line_error)
				     : find_end(data, len, p->scanned);
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
	if (p->scanned > 0)
		split_request(limits, data, end, req, &line_error);
	p->scanned = 0;
	*used = end;
	if (line_error != NULL) {
		*error = line_error;
		return POLICY_MALFORMED;
	}
	return POLICY_REQUEST;
}

/* Names are rarely of equal length and first byte: memcmp, a call, only
 * for those. */
const struct attribute *request_find_len(const struct request *req, const char *name,
					 size_t name_len)
{
	const struct attribute *a = req->attrs, *stop = req->attrs + req->count;

	for (; a < stop; a++) {
		if (a->name_len == name_len && a->name[0] == name[0] &&
		    memcmp(a->name, name, name_len) == 0)
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

/* Runs for every request: written in place after one buf_reserve(), which
 * keeps room for the buffer's terminating NUL (copied with "\n\n"). */
void policy_write_answer(struct buf *out, const char *action)
{
	size_t len = strlen(action);

	buf_reserve(out, len + 9);
	char *at = out->data + out->len;
	memcpy(at, "action=", 7);
	memcpy(at + 7, action, len);
	memcpy(at + 7 + len, "\n\n", 3);
	out->len += len + 9;
}
