/*
 * hash.h: tallyd's two hashes.
 *
 * - hash_keyed(): SipHash-1-3 under a per-process random key, for the
 *   caches, whose keys clients choose.  Without the key nobody can make
 *   keys collide (the multiply-and-shift hash it replaced let keys that
 *   differ in chosen high bits collide under any seed).  The SipHash
 *   primitives are here too, for callers that feed words of their own
 *   (usercache.c folds case as it goes).
 * - hash_bytes(): a fast unkeyed mix for checksums (the journal) and for
 *   tables whose keys tallyd makes (time keys).  Reads 8 bytes at a time.
 *
 * Pure functions; any thread.
 */
#ifndef TALLYD_HASH_H
#define TALLYD_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

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

/* ------------------------------------------------------------- SipHash */

struct sip {
	uint64_t v0, v1, v2, v3;
};

static inline uint64_t sip_rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static inline void sip_round(struct sip *s)
{
	s->v0 += s->v1; s->v1 = sip_rotl(s->v1, 13); s->v1 ^= s->v0; s->v0 = sip_rotl(s->v0, 32);
	s->v2 += s->v3; s->v3 = sip_rotl(s->v3, 16); s->v3 ^= s->v2;
	s->v0 += s->v3; s->v3 = sip_rotl(s->v3, 21); s->v3 ^= s->v0;
	s->v2 += s->v1; s->v1 = sip_rotl(s->v1, 17); s->v1 ^= s->v2; s->v2 = sip_rotl(s->v2, 32);
}

static inline void sip_init(struct sip *s, const uint64_t key[2])
{
	s->v0 = 0x736f6d6570736575ULL ^ key[0];
	s->v1 = 0x646f72616e646f6dULL ^ key[1];
	s->v2 = 0x6c7967656e657261ULL ^ key[0];
	s->v3 = 0x7465646279746573ULL ^ key[1];
}

/* Absorbs one little-endian 8-byte word of the message. */
static inline void sip_word(struct sip *s, uint64_t m, int rounds)
{
	s->v3 ^= m;
	for (int i = 0; i < rounds; i++)
		sip_round(s);
	s->v0 ^= m;
}

/* The last word: the message's tail bytes, and its length in the top byte. */
static inline uint64_t sip_final(struct sip *s, uint64_t last, int c, int d)
{
	sip_word(s, last, c);
	s->v2 ^= 0xff;
	for (int i = 0; i < d; i++)
		sip_round(s);
	return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

/* The bytes of data from `at` on, fewer than 8, as a zero-padded word. */
static inline uint64_t sip_tail(const unsigned char *data, size_t at, size_t len)
{
	const unsigned char *p = data + at;
	uint64_t word = 0;

	switch (len - at) {
	case 7: word |= (uint64_t)p[6] << 48; /* fall through */
	case 6: word |= (uint64_t)p[5] << 40; /* fall through */
	case 5: word |= (uint64_t)p[4] << 32; /* fall through */
	case 4: word |= (uint64_t)p[3] << 24; /* fall through */
	case 3: word |= (uint64_t)p[2] << 16; /* fall through */
	case 2: word |= (uint64_t)p[1] << 8; /* fall through */
	case 1: word |= (uint64_t)p[0]; /* fall through */
	default: break;
	}
	return word;
}

/* SipHash-c-d of data; `prefix` bytes of whole words were absorbed before. */
static inline uint64_t sip_bytes(struct sip *s, size_t prefix, const void *data, size_t len,
				 int c, int d)
{
	const unsigned char *p = data;
	size_t full = len / 8 * 8;
	uint64_t word;

	for (size_t at = 0; at < full; at += 8) {
		memcpy(&word, p + at, 8);
		sip_word(s, word, c);
	}
	return sip_final(s, sip_tail(p, full, len) | (uint64_t)(prefix + len) << 56, c, d);
}

static inline uint64_t siphash(const uint64_t key[2], const void *data, size_t len, int c, int d)
{
	struct sip s;

	sip_init(&s, key);
	return sip_bytes(&s, 0, data, len, c, d);
}

/* A per-process key for hash_keyed(), from getrandom() (the clock and the
 * pid only where the kernel has no getrandom). */
static inline void hash_random_key(uint64_t key[2])
{
	if (getrandom(key, 2 * sizeof(uint64_t), 0) != (ssize_t)(2 * sizeof(uint64_t))) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		key[0] = (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 30) ^ 0x9e3779b97f4a7c15ULL;
		key[1] = (uint64_t)getpid() ^ 0xc4ceb9fe1a85ec53ULL;
	}
}

/* The caches' hash: SipHash-1-3 of the key's bytes under the process's
 * key with the tweak (a period, a query) folded into it: one SipHash key
 * per table or query, which costs no extra round. */
static inline uint64_t hash_keyed(const uint64_t key[2], uint64_t tweak, const void *data,
				  size_t len)
{
	const uint64_t tweaked[2] = { key[0] ^ tweak, key[1] };
	struct sip s;

	sip_init(&s, tweaked);
	return sip_bytes(&s, 0, data, len, 1, 3);
}

/* ----------------------------------------------------- the unkeyed hash */

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
