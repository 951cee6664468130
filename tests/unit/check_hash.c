/*
 * check_hash.c: the caches' hash is SipHash (the reference vectors), keyed
 * per process, and keys built to collide under the multiply-and-shift hash
 * it replaced (whatever its seed) do not collide under it.  Keys fold as
 * mtpolicyd's tables compare them (keyfold.h).
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "hash.h"
#include "keyfold.h"
#include "unit.h"

static uint64_t reference_key[2];
static unsigned char message[64];

static void setup(void)
{
	unsigned char k[16];

	for (int i = 0; i < 16; i++)
		k[i] = (unsigned char)i;
	memcpy(reference_key, k, sizeof(k));
	for (int i = 0; i < 64; i++)
		message[i] = (unsigned char)i;
}

START_TEST(test_siphash_2_4_gives_the_reference_vectors)
{
	/* the SipHash paper's: key 00..0f, messages 00 01 02 ... of these lengths */
	ck_assert_uint_eq(siphash(reference_key, message, 0, 2, 4), 0x726fdb47dd0e0e31ULL);
	ck_assert_uint_eq(siphash(reference_key, message, 8, 2, 4), 0x93f5f5799a932462ULL);
	ck_assert_uint_eq(siphash(reference_key, message, 15, 2, 4), 0xa129ca6149be45e5ULL);
}
END_TEST

START_TEST(test_keys_made_to_collide_under_the_old_hash_do_not_collide)
{
	/* flipping the top bit of one word and bits 31 and 63 of the next made
	 * hash_bytes() collide under every seed */
	uint64_t a[2] = { 0x6c65746e6f6d2d61ULL, 0x6769726f2e6d6f63ULL };
	uint64_t b[2] = { a[0] ^ 0x8000000000000000ULL, a[1] ^ 0x8000000080000000ULL };
	uint64_t key[2];

	ck_assert_uint_eq(hash_bytes(1, a, 16), hash_bytes(1, b, 16));
	ck_assert_uint_eq(hash_bytes(HASH_SEED, a, 16), hash_bytes(HASH_SEED, b, 16));
	for (int i = 0; i < 100; i++) {
		hash_random_key(key);
		ck_assert_uint_ne(hash_keyed(key, 7, a, 16), hash_keyed(key, 7, b, 16));
	}
}
END_TEST

START_TEST(test_the_key_and_the_tweak_change_the_hash)
{
	uint64_t one[2], other[2];

	hash_random_key(one);
	hash_random_key(other);
	ck_assert(one[0] != other[0] || one[1] != other[1]);
	ck_assert_uint_ne(hash_keyed(one, 1, "alice", 5), hash_keyed(other, 1, "alice", 5));
	ck_assert_uint_ne(hash_keyed(one, 1, "alice", 5), hash_keyed(one, 2, "alice", 5));
}
END_TEST

START_TEST(test_keys_fold_ascii_case_and_trailing_spaces_only)
{
	static const char *same[] = { "Alice@Example.ORG", "alice@example.org ",
				      "ALICE@EXAMPLE.ORG   ", "alice@example.org" };
	uint64_t key[2];

	hash_random_key(key);
	for (int i = 1; i < 4; i++) {
		ck_assert(key_fold_equal(same[0], strlen(same[0]), same[i], strlen(same[i])));
		ck_assert_int_eq(key_fold_compare(same[0], strlen(same[0]), same[i],
						  strlen(same[i])), 0);
		ck_assert_uint_eq(key_hash_folded(key, 7, same[0], strlen(same[0])),
				  key_hash_folded(key, 7, same[i], strlen(same[i])));
	}
	/* leading spaces, inner spaces, tabs and non-ASCII bytes are themselves */
	ck_assert(!key_fold_equal(" alice", 6, "alice", 5));
	ck_assert(!key_fold_equal("alice\t", 6, "alice", 5));
	ck_assert(!key_fold_equal("caf\xc3\xa9", 5, "CAF\xc3\x89", 5));
	ck_assert(key_fold_equal("caf\xc3\xa9", 5, "CAF\xc3\xa9", 5));
	ck_assert(!key_fold_equal("@", 1, "`", 1));         /* 0x40, 0x60: not letters */
	ck_assert(!key_fold_equal("[", 1, "{", 1));
	ck_assert_uint_ne(key_hash_folded(key, 7, "[", 1), key_hash_folded(key, 7, "{", 1));
	ck_assert_int_lt(key_fold_compare("Abc", 3, "abd", 3), 0);
	ck_assert_int_lt(key_fold_compare("ab  ", 4, "ABC", 3), 0);
	ck_assert_int_gt(key_fold_compare("b", 1, "A", 1), 0);
}
END_TEST

static Suite *hash_suite(void)
{
	Suite *s = suite_create("hash");
	TCase *tc = tcase_create("siphash");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_siphash_2_4_gives_the_reference_vectors);
	tcase_add_test(tc, test_keys_made_to_collide_under_the_old_hash_do_not_collide);
	tcase_add_test(tc, test_the_key_and_the_tweak_change_the_hash);
	tcase_add_test(tc, test_keys_fold_ascii_case_and_trailing_spaces_only);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(hash_suite());
}
