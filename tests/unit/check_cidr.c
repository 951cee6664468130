/*
 * check_cidr.c: exempt lists (cidr.h) — what an entry may be, what is
 * refused and why, and which client addresses a list holds: IPv4 and IPv6
 * prefixes, plain addresses, IPv4-mapped IPv6, and what is no address.
 */
#include <check.h>
#include <string.h>

#include "cidr.h"
#include "unit.h"

/* Whether the client address `text` is in the list parsed from `list`. */
static bool holds(const char *list, const char *text)
{
	struct cidr_list l;
	uint8_t address[CIDR_BYTES];
	char why[200];

	ck_assert_msg(cidr_parse(list, &l, why, sizeof(why)), "'%s': %s", list, why);
	bool in = cidr_address(text, strlen(text), address) && cidr_contains(&l, address);
	cidr_free(&l);
	return in;
}

/* Parses a list that must be refused; returns why. */
static const char *refused(const char *list)
{
	static char why[200];
	struct cidr_list l = { 0 };

	ck_assert_msg(!cidr_parse(list, &l, why, sizeof(why)), "'%s' was taken", list);
	ck_assert_uint_eq(l.count, 0);
	ck_assert_ptr_null(l.nets);
	return why;
}

START_TEST(test_ipv4_prefixes_and_addresses)
{
	const char *list = "127.0.0.0/8, 192.0.2.0/24, 198.51.100.7, 203.0.113.128/25";

	ck_assert(holds(list, "127.0.0.1"));
	ck_assert(holds(list, "127.255.255.255"));
	ck_assert(!holds(list, "128.0.0.1"));
	ck_assert(holds(list, "192.0.2.0"));
	ck_assert(holds(list, "192.0.2.255"));
	ck_assert(!holds(list, "192.0.3.1"));
	ck_assert(holds(list, "198.51.100.7"));
	ck_assert(!holds(list, "198.51.100.8"));
	ck_assert(holds(list, "203.0.113.200"));
	ck_assert(!holds(list, "203.0.113.127"));      /* the bit after /24 decides */
	ck_assert(holds("0.0.0.0/0", "8.8.8.8"));
	ck_assert(!holds("0.0.0.0/0", "2001:db8::1"));  /* IPv4 networks hold IPv4 only */
}
END_TEST

START_TEST(test_ipv6_prefixes_and_addresses)
{
	const char *list = "::1 2001:db8::/32\t2001:db8:1:2::/63,fe80::1";

	ck_assert(holds(list, "::1"));
	ck_assert(holds(list, "0:0:0:0:0:0:0:1"));      /* any spelling of it */
	ck_assert(!holds(list, "::2"));
	ck_assert(holds(list, "2001:db8:ffff::5"));
	ck_assert(!holds(list, "2001:db9::1"));
	ck_assert(holds("2001:db8:1:2::/63", "2001:db8:1:3::1"));
	ck_assert(!holds("2001:db8:1:2::/63", "2001:db8:1:4::1"));
	ck_assert(holds(list, "FE80::1"));
	ck_assert(!holds(list, "127.0.0.1"));
}
END_TEST

START_TEST(test_ipv4_mapped_ipv6_is_the_ipv4_host)
{
	ck_assert(holds("192.0.2.0/24", "::ffff:192.0.2.1"));
	ck_assert(holds("192.0.2.0/24", "::FFFF:c000:0201"));
	ck_assert(!holds("192.0.2.0/24", "::ffff:192.0.3.1"));
	ck_assert(holds("::ffff:192.0.2.0/120", "192.0.2.9"));
	ck_assert(!holds("192.0.2.0/24", "::192.0.2.1"));   /* IPv4-compatible is another address */
	ck_assert(holds("::/0", "192.0.2.1"));              /* documented: ::/0 holds IPv4 too */
	ck_assert(!holds("2001:db8::/32", "192.0.2.1"));
}
END_TEST

START_TEST(test_what_is_no_address_is_never_held)
{
	const char *all = "0.0.0.0/0, ::/0";

	ck_assert(!holds(all, ""));
	ck_assert(!holds(all, "unknown"));
	ck_assert(!holds(all, "ipv6:::1"));
	ck_assert(!holds(all, "[::1]"));
	ck_assert(!holds(all, "fe80::1%eth0"));
	ck_assert(!holds(all, " 127.0.0.1"));
	ck_assert(!holds(all, "127.0.0.1 "));
	ck_assert(!holds(all, "127.0.0.1/32"));
	ck_assert(!holds(all, "1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa"));
	/* the value is not NUL-terminated in a request: only len counts */
	uint8_t address[CIDR_BYTES];
	ck_assert(cidr_address("127.0.0.1junk", 9, address));
	ck_assert(!cidr_address("127.0.0.1", 0, address));
}
END_TEST

START_TEST(test_an_empty_list_holds_nothing)
{
	struct cidr_list l;
	char why[200];

	ck_assert(cidr_parse("", &l, why, sizeof(why)));
	ck_assert_uint_eq(l.count, 0);
	ck_assert(cidr_parse(" , ", &l, why, sizeof(why)));
	ck_assert_uint_eq(l.count, 0);
	ck_assert(!holds("", "127.0.0.1"));
	cidr_free(&l);
}
END_TEST

START_TEST(test_malformed_entries_are_refused_with_what_is_wrong)
{
	ck_assert_str_eq(refused("127.0.0.0/8, 10.0.0.300"),
			 "'10.0.0.300' is not an IPv4 or IPv6 address (write an address or a "
			 "network such as 192.0.2.0/24 or 2001:db8::/32)");
	ck_assert(strstr(refused("localhost"), "'localhost' is not an IPv4 or IPv6") != NULL);
	ck_assert(strstr(refused("[::1]"), "'[::1]' is not an") != NULL);
	ck_assert(strstr(refused("ipv6:::1"), "'ipv6:::1' is not an") != NULL);
	ck_assert(strstr(refused("010.0.0.1"), "is not an") != NULL);
	ck_assert(strstr(refused("2001:db8:::1"), "is not an") != NULL);
	ck_assert_str_eq(refused("192.0.2.0/33"), "'192.0.2.0/33': the prefix length must be 0..32");
	ck_assert_str_eq(refused("::/129"), "'::/129': the prefix length must be 0..128");
	ck_assert(strstr(refused("192.0.2.0/"), "prefix length must be") != NULL);
	ck_assert(strstr(refused("192.0.2.0/-1"), "prefix length must be") != NULL);
	ck_assert(strstr(refused("192.0.2.0/024"), "prefix length must be") != NULL);
	ck_assert(strstr(refused("192.0.2.0/24/8"), "prefix length must be") != NULL);
	ck_assert_str_eq(refused("192.0.2.1/24"),
			 "'192.0.2.1/24' has bits set after its /24 prefix (the network is "
			 "192.0.2.0/24)");
	ck_assert_str_eq(refused("2001:db8::1/32"),
			 "'2001:db8::1/32' has bits set after its /32 prefix (the network is "
			 "2001:db8::/32)");
	ck_assert_str_eq(refused("10.1.2.3/9"),
			 "'10.1.2.3/9' has bits set after its /9 prefix (the network is 10.0.0.0/9)");
	ck_assert(strstr(refused("1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa/64"),
			 "too long for an address") != NULL);
}
END_TEST

START_TEST(test_a_list_has_at_most_its_maximum_of_entries)
{
	char text[CIDR_ENTRIES_MAX * 16 + 32] = "";
	struct cidr_list l;
	char why[200];

	for (int i = 0; i < CIDR_ENTRIES_MAX; i++)
		sprintf(text + strlen(text), "10.%d.%d.0/24,", i / 256, i % 256);
	ck_assert_msg(cidr_parse(text, &l, why, sizeof(why)), "%s", why);
	ck_assert_uint_eq(l.count, CIDR_ENTRIES_MAX);
	cidr_free(&l);
	strcat(text, "192.0.2.1");
	ck_assert_str_eq(refused(text), "more than 256 entries");
}
END_TEST

static Suite *cidr_suite(void)
{
	Suite *s = suite_create("cidr");
	TCase *tc = tcase_create("cidr");

	tcase_add_test(tc, test_ipv4_prefixes_and_addresses);
	tcase_add_test(tc, test_ipv6_prefixes_and_addresses);
	tcase_add_test(tc, test_ipv4_mapped_ipv6_is_the_ipv4_host);
	tcase_add_test(tc, test_what_is_no_address_is_never_held);
	tcase_add_test(tc, test_an_empty_list_holds_nothing);
	tcase_add_test(tc, test_malformed_entries_are_refused_with_what_is_wrong);
	tcase_add_test(tc, test_a_list_has_at_most_its_maximum_of_entries);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(cidr_suite());
}
