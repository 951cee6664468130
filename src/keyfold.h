/*
 * keyfold.h: when two keys are the same client.
 *
 * mtpolicyd's tables compare keys case-insensitively and ignore trailing
 * spaces (VARCHAR columns with a _ci collation, PAD SPACE), so that
 * `Alice@Example.org` and `alice@example.org ` are one client there.  The
 * caches compare keys the same way: ASCII letters fold to lower case and
 * trailing spaces are dropped; every other byte compares as itself.  A key
 * keeps the spelling it was first seen with (the row it creates keeps it).
 *
 * Pure functions; any thread.
 */
#ifndef TALLYD_KEYFOLD_H
#define TALLYD_KEYFOLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hash.h"

/* The length without trailing spaces. */
static inline size_t key_trimmed_length(const char *key, size_t len)
{
	while (len > 0 && key[len - 1] == ' ')
		len--;
	return len;
}

/* Eight bytes of a key from `at` (zero-padded past len), ASCII upper case
 * made lower, all eight at once: a byte gets 0x20 added when it is
 * 'A'..'Z'. */
static inline uint64_t key_folded_word(const char *key, size_t len, size_t at)
{
	uint64_t x = 0;

	if (len - at >= 8)
		memcpy(&x, key + at, 8);
	else
		for (size_t k = 0; at + k < len; k++)
			x |= (uint64_t)(unsigned char)key[at + k] << (8 * k);
	uint64_t low7 = x & 0x7f7f7f7f7f7f7f7fULL;
	uint64_t above_z = low7 + 0x2525252525252525ULL;   /* high bit set when > 'Z' */
	uint64_t from_a = low7 + 0x3f3f3f3f3f3f3f3fULL;    /* high bit set when >= 'A' */
	uint64_t upper = ~x & (from_a ^ above_z) & 0x8080808080808080ULL;
	return x | (upper >> 2);
}

static inline unsigned char key_folded_byte(char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : (unsigned char)c;
}

/* hash_keyed() of the folded key, folding as it goes. */
static inline uint64_t key_hash_folded(const uint64_t key[2], uint64_t tweak, const char *data,
				       size_t len)
{
	const uint64_t tweaked[2] = { key[0] ^ tweak, key[1] };
	struct sip s;

	len = key_trimmed_length(data, len);
	size_t full = len / 8 * 8;
	sip_init(&s, tweaked);
	for (size_t at = 0; at < full; at += 8)
		sip_word(&s, key_folded_word(data, len, at), 1);
	uint64_t last = len > full ? key_folded_word(data, len, full) : 0;
	return sip_final(&s, last | (uint64_t)len << 56, 1, 3);
}

/* The same client: equal once folded. */
static inline bool key_fold_equal(const char *a, size_t a_len, const char *b, size_t b_len)
{
	a_len = key_trimmed_length(a, a_len);
	if (a_len != key_trimmed_length(b, b_len))
		return false;
	for (size_t at = 0; at < a_len; at += 8) {
		if (key_folded_word(a, a_len, at) != key_folded_word(b, a_len, at))
			return false;
	}
	return true;
}

/* Orders keys by their folded bytes (a shorter one first on a common
 * prefix): <0, 0 (the same client) or >0. */
static inline int key_fold_compare(const char *a, size_t a_len, const char *b, size_t b_len)
{
	a_len = key_trimmed_length(a, a_len);
	b_len = key_trimmed_length(b, b_len);
	size_t common = a_len < b_len ? a_len : b_len;

	for (size_t i = 0; i < common; i++) {
		unsigned char x = key_folded_byte(a[i]), y = key_folded_byte(b[i]);
		if (x != y)
			return x < y ? -1 : 1;
	}
	return (a_len > b_len) - (a_len < b_len);
}

#endif
