/*
 * fuzz_metrics.c: libFuzzer target for the metrics port: the HTTP request
 * a scraper sends (admin.c reads it, control.c answers it, report.c writes
 * the metrics of a loaded config, see admin_fuzz.h).
 *
 * The input's first byte picks the chunk size in which the rest is
 * delivered (and, with its top bit, three copies of it, to fill the 8 KiB
 * a client may send); the rest is delivered whole too.  Checked: both give
 * the same answer; without a newline the answer is empty (the client is
 * closed without a word); GET /metrics and GET / get a 200 whose
 * Content-Length is the body's length and whose body is Prometheus' text
 * format, line by line (comments, or a name, labels with escaped values
 * and a number); any other request gets the 404 text.
 */
#include <stdint.h>

#include "admin_fuzz.h"
#include "control.h"

#define OK_HEAD "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: "
#define NOT_FOUND "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n" \
	"Connection: close\r\n\r\nGET /metrics\n"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	admin_fuzz_start();
	return 0;
}

static bool is_name_char(char c, bool first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
	       (!first && c >= '0' && c <= '9');
}

/* A metric or label name at p; returns what follows it. */
static const char *name(const char *p)
{
	check(is_name_char(*p, true));
	while (is_name_char(*p, false))
		p++;
	return p;
}

/* {label="value",...} at p, values escaping \, " and newlines; returns what
 * follows it. */
static const char *labels(const char *p)
{
	do {
		p = name(p + 1);
		check(p[0] == '=' && p[1] == '"');
		for (p += 2; *p != '"'; p++) {
			check(*p != '\n' && *p != '\0');
			if (*p == '\\')
				check(*++p == '\\' || *p == '"' || *p == 'n');
		}
		p++;
	} while (*p == ',');
	check(*p == '}');
	return p + 1;
}

/* One line of the body, up to and with its newline; returns the next. */
static const char *sample(const char *p)
{
	const char *end = strchr(p, '\n');

	check(end != NULL);
	if (strncmp(p, "# HELP ", 7) == 0 || strncmp(p, "# TYPE ", 7) == 0) {
		p = name(p + 7);
		check(*p == ' ' && p + 1 < end);
		return end + 1;
	}
	p = name(p);
	if (*p == '{')
		p = labels(p);
	check(*p == ' ');
	char *number_end;
	strtod(p + 1, &number_end);
	check(number_end == end && number_end > p + 1);
	return end + 1;
}

/* The 200 answer: headers, a Content-Length that is the body's length,
 * and a body of samples. */
static void check_metrics(const struct buf *out)
{
	char *after;

	check(strncmp(out->data, OK_HEAD, strlen(OK_HEAD)) == 0);
	unsigned long long length = strtoull(out->data + strlen(OK_HEAD), &after, 10);
	check(strncmp(after, "\r\nConnection: close\r\n\r\n", 23) == 0);
	const char *body = after + 23;
	check(length > 0 && length == (size_t)(out->data + out->len - body));
	check(strlen(body) == length);
	for (const char *p = body; *p; p = sample(p))
		;
}

static struct buf answer(const struct admin_input *in, bool complete)
{
	struct buf out;

	buf_init(&out);
	control_answer_metrics(&out, in->text, complete);
	if (!complete)
		check(out.len == 0);
	else if (strncmp(in->text, "GET /metrics ", 13) == 0 || strncmp(in->text, "GET / ", 6) == 0)
		check_metrics(&out);
	else
		check(out.len == strlen(NOT_FOUND) && memcmp(out.data, NOT_FOUND, out.len) == 0);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size)
{
	static struct admin_input whole, pieces;

	if (size < 1)
		return 0;
	bool complete = admin_fuzz_receive(bytes, size, &whole, &pieces);

	struct buf a = answer(&whole, complete), b = answer(&pieces, complete);
	check(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
	buf_free(&a);
	buf_free(&b);
	return 0;
}
