/*
 * hash.h: the one hash function of tallyd's caches.  Keys are short
 * (addresses, user names), hashed on every request: it reads 8 bytes at a
 * time and mixes with multiplications; hash_finish() then spreads the bits
 * so that both the low bits (bucket) and the high bits (shard) are usable.
 * Pass the previous result as `seed` to hash several pieces as one.
 */
#ifndef TALLYD_HASH_H
#define TALLYD_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HASH_SEED 0x9e3779b97f4a7c15ULL

static inline uint64_t hash_mix(uint64_t h, uint64_t word)
{
	h = (h ^ word) * 0xff51afd7ed558ccdULL;
	return h ^ (h >> 32);
}

static inline uint64_t hash_bytes(uint64_t seed, const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = hash_mix(seed, len), word;

	for (; len >= 8; p += 8, len -= 8) {
		memcpy(&word, p, 8);
		h = hash_mix(h, word);
	}
	word = 0;
	if (len > 0)                  /* memcpy from NULL is undefined even for 0 */
		memcpy(&word, p, len);
	return hash_mix(h, word ^ 0xc4ceb9fe1a85ec53ULL);
}

static inline uint64_t hash_finish(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

#endif
