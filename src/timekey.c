/*
 * timekey.c: time keys from time_pattern (see timekey.h).  The cache is
 * thread-local, so nothing here is shared between threads.
 */
#include <string.h>

#include "timekey.h"

#define CACHE_SLOTS 8

struct cached_key {
	char pattern[64];
	time_t second;
	size_t len;
	char key[ACCOUNTING_VALUE_MAX + 1];
};

static _Thread_local struct cached_key cache[CACHE_SLOTS];
static _Thread_local unsigned next_slot;
static _Thread_local char scratch[ACCOUNTING_VALUE_MAX + 1];

static size_t format(const char *pattern, time_t now, char *out)
{
	struct tm tm;

	localtime_r(&now, &tm);
	/* strftime gives 0 both for "too long" and for an empty result; the
	 * pattern is the admin's time_pattern, as in mtpolicyd */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	return strftime(out, ACCOUNTING_VALUE_MAX + 1, pattern, &tm);
#pragma GCC diagnostic pop
}

const char *timekey_format(const char *pattern, time_t now, size_t *len)
{
	*len = format(pattern, now, scratch);
	return scratch;
}

const char *timekey_now(const char *pattern, size_t *len)
{
	time_t now = time(NULL);
	size_t pattern_len = strlen(pattern);

	if (pattern_len < sizeof(cache[0].pattern)) {
		for (unsigned i = 0; i < CACHE_SLOTS; i++) {
			struct cached_key *c = &cache[i];
			if (c->second == now && strcmp(c->pattern, pattern) == 0) {
				*len = c->len;
				return c->key;
			}
		}
		struct cached_key *c = &cache[next_slot++ % CACHE_SLOTS];
		memcpy(c->pattern, pattern, pattern_len + 1);
		c->second = now;
		c->len = format(pattern, now, c->key);
		*len = c->len;
		return c->key;
	}
	return timekey_format(pattern, now, len);
}

bool timekey_pattern_is_valid(const char *pattern)
{
	char out[ACCOUNTING_VALUE_MAX + 1];

	return pattern[0] != '\0' && format(pattern, time(NULL), out) > 0;
}

bool timekey_matches(const char *pattern, const char *key)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(key, pattern, &tm);
	return end != NULL && *end == '\0';
}
