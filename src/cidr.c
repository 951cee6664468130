/*
 * cidr.c: lists of IPv4 and IPv6 networks (see cidr.h).
 *
 * Parsing runs in the main thread when a config loads; matching runs in the
 * workers, on the stack, with no allocation and no lock.  inet_pton()
 * decides what an address is, so the forms it refuses (leading zeros in
 * IPv4, scopes, brackets) are no address here either.
 */
#include "cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* The longest entry: an IPv6 address with an IPv4 tail, then "/128". */
#define ENTRY_MAX (INET6_ADDRSTRLEN + 4)

static const uint8_t ipv4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* A NUL-terminated address (no prefix) as 16 bytes; *ipv4 tells the form. */
static bool address_of(const char *text, uint8_t out[CIDR_BYTES], bool *ipv4)
{
	*ipv4 = strchr(text, ':') == NULL;
	if (!*ipv4)
		return inet_pton(AF_INET6, text, out) == 1;
	memcpy(out, ipv4_mapped, sizeof(ipv4_mapped));
	return inet_pton(AF_INET, text, out + sizeof(ipv4_mapped)) == 1;
}

bool cidr_address(const char *text, size_t len, uint8_t out[CIDR_BYTES])
{
	char copy[INET6_ADDRSTRLEN];
	bool ipv4;

	if (len == 0 || len >= sizeof(copy))
		return false;
	memcpy(copy, text, len);
	copy[len] = '\0';
	return address_of(copy, out, &ipv4);
}

/* Whether a and b agree in their first `bits` bits. */
static bool same_prefix(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return ((a[whole] ^ b[whole]) & mask) == 0;
}

bool cidr_contains(const struct cidr_list *list, const uint8_t address[CIDR_BYTES])
{
	for (size_t i = 0; i < list->count; i++) {
		if (same_prefix(address, list->nets[i].address, list->nets[i].bits))
			return true;
	}
	return false;
}

/* A prefix length: 1 to 3 digits, at most `max`; -1 when it is none. */
static int prefix_of(const char *text, unsigned max)
{
	size_t n = strlen(text);

	if (n == 0 || n > 3 || strspn(text, "0123456789") != n || (n > 1 && text[0] == '0'))
		return -1;
	int bits = atoi(text);
	return (unsigned)bits <= max ? bits : -1;
}

/* The network of `net` with its host bits cleared. */
static void network_of(const struct cidr_net *net, struct cidr_net *out)
{
	*out = (struct cidr_net){ .bits = net->bits };
	memcpy(out->address, net->address, net->bits / 8);
	if (net->bits % 8)
		out->address[net->bits / 8] =
			(uint8_t)(net->address[net->bits / 8] & (0xff << (8 - net->bits % 8)));
}

/* Writes a network as the admin would: IPv4 form when it was written so. */
static void format_net(const struct cidr_net *net, bool ipv4, char *out, size_t size)
{
	char text[INET6_ADDRSTRLEN];

	if (ipv4)
		inet_ntop(AF_INET, net->address + sizeof(ipv4_mapped), text, sizeof(text));
	else
		inet_ntop(AF_INET6, net->address, text, sizeof(text));
	snprintf(out, size, "%s/%u", text, ipv4 ? net->bits - 96 : net->bits);
}

/* One entry; false with why[] filled. */
static bool parse_entry(const char *entry, struct cidr_net *net, char *why, size_t why_size)
{
	char copy[ENTRY_MAX + 1];
	bool ipv4;

	if (strlen(entry) > ENTRY_MAX) {
		snprintf(why, why_size, "'%.*s...' is too long for an address", 20, entry);
		return false;
	}
	strcpy(copy, entry);
	char *slash = strchr(copy, '/');
	if (slash)
		*slash = '\0';
	if (!address_of(copy, net->address, &ipv4)) {
		snprintf(why, why_size, "'%s' is not an IPv4 or IPv6 address (write an address "
			 "or a network such as 192.0.2.0/24 or 2001:db8::/32)", entry);
		return false;
	}
	int bits = slash ? prefix_of(slash + 1, ipv4 ? 32 : 128) : (ipv4 ? 32 : 128);
	if (bits < 0) {
		snprintf(why, why_size, "'%s': the prefix length must be 0..%d", entry,
			 ipv4 ? 32 : 128);
		return false;
	}
	net->bits = (unsigned)bits + (ipv4 ? 96 : 0);
	struct cidr_net network;
	network_of(net, &network);
	if (memcmp(&network.address, net->address, CIDR_BYTES) != 0) {
		char text[ENTRY_MAX + 1];
		format_net(&network, ipv4, text, sizeof(text));
		snprintf(why, why_size, "'%s' has bits set after its /%d prefix (the network "
			 "is %s)", entry, bits, text);
		return false;
	}
	return true;
}

bool cidr_parse(const char *text, struct cidr_list *list, char *why, size_t why_size)
{
	static const char separators[] = ", \t\n";
	char *copy = xstrdup(text), *save = NULL;
	bool ok = true;

	*list = (struct cidr_list){ 0 };
	for (char *e = strtok_r(copy, separators, &save); e && ok;
	     e = strtok_r(NULL, separators, &save)) {
		if (list->count == CIDR_ENTRIES_MAX) {
			snprintf(why, why_size, "more than %d entries", CIDR_ENTRIES_MAX);
			ok = false;
		} else {
			list->nets = xrealloc(list->nets, (list->count + 1) * sizeof(*list->nets));
			ok = parse_entry(e, &list->nets[list->count], why, why_size);
			list->count += ok;
		}
	}
	free(copy);
	if (!ok)
		cidr_free(list);
	return ok;
}

void cidr_free(struct cidr_list *list)
{
	free(list->nets);
	*list = (struct cidr_list){ 0 };
}
