/*
 * cidr.h: lists of IPv4 and IPv6 networks, and whether an address is in one.
 *
 * A plugin's `exempt = "127.0.0.0/8, ::1, 192.0.2.0/24";` is parsed once
 * when the config loads (cidr_parse) into a small array; cidr_address()
 * and cidr_contains() then decide per request without allocating or
 * locking.  Every address is kept as 16 bytes: an IPv4 address as its
 * IPv4-mapped IPv6 form (::ffff:a.b.c.d), so that `192.0.2.0/24` also
 * matches a client_address written `::ffff:192.0.2.1` (the same host), and
 * its prefix length counts from bit 96.  The consequence: an IPv6 network
 * that holds ::ffff:0:0/96 (`::/0`, `::/64`, `::ffff:0:0/96`) holds every
 * IPv4 address too.
 *
 * What is not an address is in no list: an empty value, Postfix's
 * "unknown", a scoped `fe80::1%eth0`, a bracketed `[::1]` or an
 * `ipv6:`-prefixed form (the policy protocol sends neither).
 *
 * Pure functions on their arguments: any thread.  A list is read-only once
 * parsed; the caller frees it.
 */
#ifndef TALLYD_CIDR_H
#define TALLYD_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CIDR_BYTES 16
#define CIDR_ENTRIES_MAX 256       /* a list is scanned in full: keep it small */

struct cidr_net {
	uint8_t address[CIDR_BYTES];   /* host bits after `bits` are zero */
	unsigned bits;                 /* prefix length on 128 bits */
};

struct cidr_list {
	struct cidr_net *nets;
	size_t count;
};

/* Parses entries separated by commas and/or white space: IPv4 or IPv6
 * addresses, each optionally with a /prefix (0..32, 0..128).  An empty
 * text is an empty list.  Returns true and fills `list`; or returns false,
 * leaves `list` empty and writes what is wrong, naming the entry, to
 * why[why_size].  An entry with bits set after its prefix (192.0.2.1/24)
 * is refused: its meaning is not clear. */
bool cidr_parse(const char *text, struct cidr_list *list, char *why, size_t why_size);
void cidr_free(struct cidr_list *list);

/* The address written in text[0..len) as 16 bytes; false when it is not an
 * IPv4 or IPv6 address. */
bool cidr_address(const char *text, size_t len, uint8_t out[CIDR_BYTES]);

/* Whether `address` (from cidr_address) is in one of the list's networks. */
bool cidr_contains(const struct cidr_list *list, const uint8_t address[CIDR_BYTES]);

#endif
