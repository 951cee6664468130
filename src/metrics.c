/*
 * metrics.c: metric names, per-request arithmetic and the key a value is
 * counted under (see metrics.h).
 * Pure functions; any thread.
 */
#include <openssl/evp.h>
#include <string.h>

#include "metrics.h"

const char *const metric_names[METRIC_COUNT_OF] = { "count", "count_rcpt", "size", "size_rcpt" };

int metric_parse(const char *name)
{
	for (int i = 0; i < METRIC_COUNT_OF; i++) {
		if (strcmp(name, metric_names[i]) == 0)
			return i;
	}
	return -1;
}

bool metric_is_valid(const char *name)
{
	return metric_parse(name) >= 0;
}

static uint64_t add_saturating(uint64_t a, uint64_t b)
{
	return a + b < a ? UINT64_MAX : a + b;
}

static uint64_t multiply_saturating(uint64_t a, uint64_t b)
{
	return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

/* The leading decimal digits of an attribute, as Perl would read them; 0
 * when it is missing. */
static uint64_t attribute_number(const struct attribute *a)
{
	uint64_t n = 0;

	if (a == NULL)
		return 0;
	for (size_t i = 0; i < a->value_len; i++) {
		unsigned digit = (unsigned)(unsigned char)a->value[i] - '0';
		if (digit > 9)
			break;
		bool overflows = n > UINT64_MAX / 10 ||
				 (n == UINT64_MAX / 10 && digit > UINT64_MAX % 10);
		n = overflows ? UINT64_MAX : n * 10 + digit;
	}
	return n;
}

/* Inlined: strlen of the literal names below costs nothing. */
static bool is_named(const struct attribute *a, const char *name)
{
	return a->name_len == strlen(name) && memcmp(a->name, name, a->name_len) == 0;
}

/* One scan for both attributes, each the first of its name, as
 * request_find() would return it; most names differ in length, which is
 * compared first. */
void metrics_of_request(const struct request *req, struct metric_values *out)
{
	const struct attribute *a = req->attrs, *stop = req->attrs + req->count;
	const struct attribute *recipient_count = NULL, *size = NULL;

	for (; a < stop; a++) {
		if (is_named(a, "recipient_count") && recipient_count == NULL)
			recipient_count = a;
		else if (is_named(a, "size") && size == NULL)
			size = a;
		else
			continue;
		if (recipient_count != NULL && size != NULL)
			break;
	}
	uint64_t recipients = attribute_number(recipient_count);
	uint64_t bytes = attribute_number(size);

	out->v[METRIC_COUNT] = 1;
	out->v[METRIC_COUNT_RCPT] = recipients ? recipients : 1;
	out->v[METRIC_SIZE] = bytes;
	out->v[METRIC_SIZE_RCPT] = recipients ? multiply_saturating(bytes, recipients) : bytes;
}

void metrics_add(struct metric_values *a, const struct metric_values *b)
{
	for (int i = 0; i < METRIC_COUNT_OF; i++)
		a->v[i] = add_saturating(a->v[i], b->v[i]);
}

const char *accounting_key(const char *value, size_t *len, char buf[ACCOUNTING_VALUE_MAX])
{
	enum { KEPT = ACCOUNTING_VALUE_MAX - 1 - 32 };
	static const char hex[] = "0123456789abcdef";
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len = 0;

	if (*len <= ACCOUNTING_VALUE_MAX)
		return value;
	if (!EVP_Digest(value, *len, digest, &digest_len, EVP_sha256(), NULL) || digest_len < 16)
		memset(digest, 0, sizeof(digest));       /* not reached with a working libcrypto */
	memcpy(buf, value, KEPT);
	buf[KEPT] = '\n';
	for (int i = 0; i < 16; i++) {
		buf[KEPT + 1 + 2 * i] = hex[digest[i] >> 4];
		buf[KEPT + 2 + 2 * i] = hex[digest[i] & 15];
	}
	*len = ACCOUNTING_VALUE_MAX;
	return buf;
}
