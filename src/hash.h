/*
 * hash.h: the one hash function of tallyd's caches (64-bit FNV-1a).  Keys
 * are short (addresses, user names), so a simple byte loop is enough; pass
 * the previous result as `seed` to hash several pieces as one.
 */
#ifndef TALLYD_HASH_H
#define TALLYD_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_SEED 0xcbf29ce484222325ULL

static inline uint64_t hash_bytes(uint64_t seed, const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = seed;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Spreads the bits so that both the low bits (bucket) and the high bits
 * (shard) of the result are usable. */
static inline uint64_t hash_finish(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

#endif
