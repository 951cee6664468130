/*
 * fuzz_policy.c: libFuzzer target for the request parser (policy.c).
 *
 * The input's first byte picks the chunk sizes in which the rest is
 * delivered, as a worker receives it over reads; each read gets the unparsed
 * bytes in a new buffer of their exact size and the other of two attribute
 * arrays, since between reads the buffer may move and another worker may
 * take the connection.  Checked on every request:
 * it lies inside the buffer, names hold no '=' or newline, values no
 * newline, sizes and counts stay within the limits, and parsing the same
 * bytes in one piece gives the same requests and the same final status.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

#define MAX_ATTRIBUTES 16
#define MAX_REQUEST 512

static const struct policy_limits limits = { MAX_REQUEST, MAX_ATTRIBUTES };

struct outcome {
	size_t requests;
	uint64_t digest;           /* of every parsed name and value */
	enum policy_status last;
};

static void check(bool ok)
{
	if (!ok)
		abort();
}

static uint64_t mix(uint64_t h, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
	return h * 31 + n;
}

static void check_request(const struct request *req, const char *data, size_t used,
			  struct outcome *out)
{
	check(used <= MAX_REQUEST && req->count <= MAX_ATTRIBUTES);
	for (size_t i = 0; i < req->count; i++) {
		const struct attribute *a = &req->attrs[i];
		check(a->name >= data && a->value + a->value_len <= data + used);
		check(a->name_len > 0 && !memchr(a->name, '=', a->name_len));
		check(!memchr(a->name, '\n', a->name_len) && !memchr(a->value, '\n', a->value_len));
		out->digest = mix(mix(out->digest, a->name, a->name_len), a->value, a->value_len);
		char name[64];
		size_t n = a->name_len < sizeof(name) - 1 ? a->name_len : sizeof(name) - 1;
		memcpy(name, a->name, n);
		name[n] = '\0';
		check(request_find(req, name) != NULL || n != a->name_len);
		attribute_is_blank(a);
	}
}

/* Parses data[0..len) given `step` bytes at a time (0: all at once). */
static struct outcome parse(const char *data, size_t len, size_t step)
{
	struct attribute attrs[2][MAX_ATTRIBUTES];
	struct request reqs[2] = { { .attrs = attrs[0] }, { .attrs = attrs[1] } };
	struct policy_parser parser;
	struct outcome out = { 0 };
	size_t start = 0, have = step ? (step < len ? step : len) : len, reads = 0;
	size_t used;
	const char *error;

	policy_parser_reset(&parser);
	for (;;) {
		struct request *req = &reqs[reads++ % 2];
		char *bytes = malloc(have > start ? have - start : 1);
		memcpy(bytes, data + start, have - start);
		out.last = policy_parse(&parser, &limits, bytes, have - start, req, &used, &error);
		if (out.last == POLICY_REQUEST) {
			check(used > 0 && start + used <= have);
			check_request(req, bytes, used, &out);
			out.requests++;
			start += used;
		}
		free(bytes);
		if (out.last == POLICY_REQUEST)
			continue;
		if (out.last == POLICY_MALFORMED) {
			check(error != NULL);
			return out;
		}
		if (have == len)
			return out;
		have = have + step < len ? have + step : len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size)
{
	if (size < 1)
		return 0;
	size_t step = bytes[0] % 17 + 1;
	const char *data = (const char *)bytes + 1;
	size_t len = size - 1;

	struct outcome whole = parse(data, len, 0), pieces = parse(data, len, step);
	check(whole.requests == pieces.requests && whole.digest == pieces.digest &&
	      whole.last == pieces.last);

	struct buf out;
	buf_init(&out);
	if (len > 0 && len < 200) {
		char action[200];
		memcpy(action, data, len);
		action[len] = '\0';
		if (policy_action_is_valid(action)) {
			policy_write_answer(&out, action);
			check(out.len == strlen(action) + 9 && memcmp(out.data + out.len - 2, "\n\n", 2) == 0);
		}
	}
	buf_free(&out);
	return 0;
}
