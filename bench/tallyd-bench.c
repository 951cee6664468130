/*
 * tallyd-bench.c: a closed-loop load generator for the Postfix policy
 * protocol, in the manner of redis-benchmark.
 *
 * The main thread parses the options, checks that the server accepts a
 * connection, starts the load threads and keeps time (warm-up, measurement,
 * stop).  Each load thread owns its share of the connections, one epoll loop
 * and its own statistics, so the hot path takes no lock; the main thread
 * sums the statistics after joining the threads.  Threads share only
 * atomics: the phase clock, the stop flag and the request tickets of -n.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"

#define NS_PER_SEC UINT64_C(1000000000)
#define NS_PER_MS 1000000.0
#define TICK_NS (100 * UINT64_C(1000000))   /* reconnects and timeouts */
#define RETRY_NS (100 * UINT64_C(1000000))  /* pause after a failed connect */
#define PROBE_TIMEOUT_MS 5000
#define MAX_ANSWER (64 * 1024)              /* same bound as tallyd's requests */
#define READ_CHUNK 4096
#define MAX_EVENTS 256
#define MAX_IPV4_KEYS (UINT64_C(1) << 24)   /* 10.0.0.0/8 */

/* ------------------------------------------------------------ reporting */

/*
 * A command-line tool reports to the person who ran it, not to a log, so
 * messages go to stderr prefixed with the program name.  bench_fail() is for
 * what makes the run pointless (bad options, no server): it exits 1.
 */
static _Noreturn void bench_fail(const char *fmt, ...) PRINTF_LIKE(1, 2);

static void bench_vwarn(const char *fmt, va_list ap) PRINTF_LIKE(1, 0);

static void bench_vwarn(const char *fmt, va_list ap)
{
	fputs("tallyd-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

static void bench_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bench_vwarn(fmt, ap);
	va_end(ap);
	exit(1);
}

static uint64_t clock_now(void)
{
	return (uint64_t)clock_ns();
}

/* ------------------------------------------------------------- options */

enum key_order { KEYS_RANDOM, KEYS_ROUND_ROBIN };

struct bench_options {
	const char *host;
	const char *port;
	const char *socket_path;    /* set: connect to this unix socket */
	unsigned connections;
	unsigned threads;
	uint64_t requests;          /* -n; 0 when the run is timed (-d) */
	double duration;            /* -d seconds */
	double warmup;
	double timeout;
	uint64_t keys;
	uint64_t key_offset;        /* number of the first key */
	const char *key_attribute;
	enum key_order key_order;
	unsigned recipient_count;
	uint64_t size;
	const char *protocol_state;
	bool csv;
	bool quiet;
};

static void usage(FILE *out)
{
	fprintf(out,
"usage: tallyd-bench [options]\n"
"Sends Postfix policy requests over persistent connections, each connection\n"
"waiting for the answer before it sends the next (closed loop), and reports\n"
"answers per second, latency percentiles and the answers' action words.\n"
"\n"
"  -H, --host HOST          server name or address, IPv4 or IPv6 (127.0.0.1)\n"
"  -p, --port PORT          server port (12345)\n"
"  -s, --socket PATH        connect to a unix socket instead\n"
"  -c, --connections N      concurrent connections (8)\n"
"  -t, --threads N          load threads, each with its own epoll loop (1)\n"
"  -n, --requests N         measure N answers (100000 unless -d is given)\n"
"  -d, --duration SECONDS   measure for this long instead\n"
"      --warmup SECONDS     send, but do not measure, for this long first (0)\n"
"      --timeout SECONDS    give up on an answer after this long (100, as\n"
"                           Postfix's smtpd_policy_service_timeout): counted\n"
"                           as an error, entered into the latency figures with\n"
"                           the time it waited, and the connection is reopened\n"
"  -k, --keys N             distinct keys (1000)\n"
"  -a, --attribute NAME     attribute that carries the key (client_address);\n"
"                           keys are 10.x.y.z for client_address and\n"
"                           server_address, userN@example.org otherwise\n"
"      --key-order ORDER    random (uniform, the default) or round-robin\n"
"      --key-offset N       number of the first key (0): key N is 10.x.y.z\n"
"                           with x.y.z = N in base 256, or userN@example.org\n"
"      --recipient-count N  recipient_count sent (1); recipient is empty when > 1\n"
"      --size BYTES         size sent (10240)\n"
"      --protocol-state S   protocol_state sent (END-OF-MESSAGE)\n"
"      --csv                print one CSV header line and one data line\n"
"  -q, --quiet              print one summary line\n"
"  -h, --help               print this help\n"
"\n"
"Answers and latencies count when they end within the measurement (with -n:\n"
"the N requests sent after warm-up).  With -d, requests still unanswered at\n"
"the end enter the latency figures with their wait so far, so a server that\n"
"leaves connections waiting shows it in p99.  Errors, dropped connections\n"
"and failed connects count over the whole run.  Exit status 1 when the\n"
"server cannot be reached at start or nothing was answered.\n");
}

static uint64_t option_number(const char *name, const char *text, uint64_t min, uint64_t max)
{
	char *end;

	errno = 0;
	unsigned long long value = strtoull(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-' ||
	    value < min || value > max)
		bench_fail("%s must be a whole number from %" PRIu64 " to %" PRIu64 ", got '%s'",
			   name, min, max, text);
	return value;
}

static double option_seconds(const char *name, const char *text, bool zero_ok)
{
	char *end;

	errno = 0;
	double value = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || !isfinite(value) ||
	    value < 0 || (value == 0 && !zero_ok) || value > 1e6)
		bench_fail("%s must be a number of seconds%s, got '%s'", name,
			   zero_ok ? "" : " above 0", text);
	return value;
}

enum long_only { OPT_WARMUP = 256, OPT_TIMEOUT, OPT_KEY_ORDER, OPT_KEY_OFFSET, OPT_RCPT_COUNT,
		 OPT_SIZE, OPT_STATE, OPT_CSV };

static const struct option long_options[] = {
	{ "host", required_argument, NULL, 'H' },
	{ "port", required_argument, NULL, 'p' },
	{ "socket", required_argument, NULL, 's' },
	{ "connections", required_argument, NULL, 'c' },
	{ "threads", required_argument, NULL, 't' },
	{ "requests", required_argument, NULL, 'n' },
	{ "duration", required_argument, NULL, 'd' },
	{ "keys", required_argument, NULL, 'k' },
	{ "attribute", required_argument, NULL, 'a' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ "warmup", required_argument, NULL, OPT_WARMUP },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "key-order", required_argument, NULL, OPT_KEY_ORDER },
	{ "key-offset", required_argument, NULL, OPT_KEY_OFFSET },
	{ "recipient-count", required_argument, NULL, OPT_RCPT_COUNT },
	{ "size", required_argument, NULL, OPT_SIZE },
	{ "protocol-state", required_argument, NULL, OPT_STATE },
	{ "csv", no_argument, NULL, OPT_CSV },
	{ NULL, 0, NULL, 0 },
};

static void options_default(struct bench_options *o)
{
	memset(o, 0, sizeof(*o));
	o->host = "127.0.0.1";
	o->port = "12345";
	o->connections = 8;
	o->threads = 1;
	o->timeout = 100;
	o->keys = 1000;
	o->key_attribute = "client_address";
	o->key_order = KEYS_RANDOM;
	o->recipient_count = 1;
	o->size = 10240;
	o->protocol_state = "END-OF-MESSAGE";
}

/* An attribute name is sent as "name=value\n": it must be a plain word. */
static bool attribute_name_is_valid(const char *name)
{
	if (*name == '\0' || strlen(name) > 64)
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(name);
}

static bool key_is_ipv4(const struct bench_options *o)
{
	return strcmp(o->key_attribute, "client_address") == 0 ||
	       strcmp(o->key_attribute, "server_address") == 0;
}

static void options_check(struct bench_options *o)
{
	if (o->requests && o->duration > 0)
		bench_fail("give either -n or -d, not both");
	if (o->requests == 0 && o->duration == 0)
		o->requests = 100000;
	if (o->threads > o->connections)
		o->threads = o->connections;
	if (!attribute_name_is_valid(o->key_attribute))
		bench_fail("-a must be an attribute name (lower case, digits, _), got '%s'",
			   o->key_attribute);
	if (key_is_ipv4(o) && o->key_offset + o->keys > MAX_IPV4_KEYS)
		bench_fail("-k with --key-offset: at most %" PRIu64 " keys fit in 10.0.0.0/8",
			   MAX_IPV4_KEYS);
	if (strpbrk(o->protocol_state, "\n=") != NULL || *o->protocol_state == '\0')
		bench_fail("--protocol-state must be one word, got '%s'", o->protocol_state);
}

static void options_parse(int argc, char **argv, struct bench_options *o)
{
	int ch;

	options_default(o);
	while ((ch = getopt_long(argc, argv, "H:p:s:c:t:n:d:k:a:qh", long_options, NULL)) != -1) {
		switch (ch) {
		case 'H': o->host = optarg; break;
		case 'p': option_number("-p", optarg, 1, 65535); o->port = optarg; break;
		case 's': o->socket_path = optarg; break;
		case 'c': o->connections = (unsigned)option_number("-c", optarg, 1, 100000); break;
		case 't': o->threads = (unsigned)option_number("-t", optarg, 1, 256); break;
		case 'n': o->requests = option_number("-n", optarg, 1, UINT64_MAX / 2); break;
		case 'd': o->duration = option_seconds("-d", optarg, false); break;
		case 'k': o->keys = option_number("-k", optarg, 1, UINT32_MAX); break;
		case 'a': o->key_attribute = optarg; break;
		case 'q': o->quiet = true; break;
		case 'h': usage(stdout); exit(0);
		case OPT_WARMUP: o->warmup = option_seconds("--warmup", optarg, true); break;
		case OPT_TIMEOUT: o->timeout = option_seconds("--timeout", optarg, false); break;
		case OPT_KEY_ORDER:
			if (strcmp(optarg, "random") == 0)
				o->key_order = KEYS_RANDOM;
			else if (strcmp(optarg, "round-robin") == 0)
				o->key_order = KEYS_ROUND_ROBIN;
			else
				bench_fail("--key-order must be random or round-robin, got '%s'",
					   optarg);
			break;
		case OPT_KEY_OFFSET:
			o->key_offset = option_number("--key-offset", optarg, 0, UINT32_MAX);
			break;
		case OPT_RCPT_COUNT:
			o->recipient_count = (unsigned)option_number("--recipient-count", optarg,
								     0, 1000000);
			break;
		case OPT_SIZE: o->size = option_number("--size", optarg, 0, UINT64_C(1) << 40); break;
		case OPT_STATE: o->protocol_state = optarg; break;
		case OPT_CSV: o->csv = true; break;
		default: usage(stderr); exit(1);
		}
	}
	if (optind < argc) {
		usage(stderr);
		exit(1);
	}
	options_check(o);
}

/* ----------------------------------------------------------- histogram */

/*
 * Latencies (nanoseconds) go into a log-linear histogram, the HdrHistogram
 * idea: values below 2^SUB_BITS have a bucket each, and every further power
 * of two is cut into 2^(SUB_BITS-1) equal buckets.  A bucket is then at most
 * 1/64 of its values wide, so a percentile is off by less than 1.6%, and the
 * whole 64-bit range fits in 3776 counters: recording is O(1) and memory
 * does not grow with the number of requests, unlike sorting all samples.
 */
#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_HALF (HIST_SUB / 2)
#define HIST_BUCKETS (HIST_SUB + (64 - HIST_SUB_BITS) * HIST_HALF)

struct histogram {
	uint64_t counts[HIST_BUCKETS];
	uint64_t total;
	uint64_t max;
};

static size_t histogram_index(uint64_t value)
{
	if (value < HIST_SUB)
		return (size_t)value;
	int msb = 63 - __builtin_clzll(value);
	int shift = msb - HIST_SUB_BITS + 1;   /* keeps value >> shift in [HALF, SUB) */
	return HIST_SUB + (size_t)(shift - 1) * HIST_HALF + (size_t)((value >> shift) - HIST_HALF);
}

/* The largest value that lands in bucket `index`: a percentile reports it,
 * so that it never understates a latency. */
static uint64_t histogram_bucket_top(size_t index)
{
	if (index < HIST_SUB)
		return index;
	size_t rest = index - HIST_SUB;
	int shift = (int)(rest / HIST_HALF) + 1;
	uint64_t sub = rest % HIST_HALF + HIST_HALF;
	return (sub << shift) + ((UINT64_C(1) << shift) - 1);
}

static void histogram_record(struct histogram *h, uint64_t value)
{
	h->counts[histogram_index(value)]++;
	h->total++;
	if (value > h->max)
		h->max = value;
}

static void histogram_add(struct histogram *into, const struct histogram *from)
{
	for (size_t i = 0; i < HIST_BUCKETS; i++)
		into->counts[i] += from->counts[i];
	into->total += from->total;
	if (from->max > into->max)
		into->max = from->max;
}

/* The value below which `percent` of the samples lie; 0 when empty. */
static uint64_t histogram_percentile(const struct histogram *h, double percent)
{
	if (h->total == 0)
		return 0;
	uint64_t rank = (uint64_t)ceil(percent / 100.0 * (double)h->total);
	uint64_t seen = 0;

	if (rank == 0)
		rank = 1;
	for (size_t i = 0; i < HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= rank) {
			uint64_t top = histogram_bucket_top(i);
			return top < h->max ? top : h->max;
		}
	}
	return h->max;
}

/* ------------------------------------------------------- action words */

/*
 * Answers are tallied by their first word, lower-cased, so "DUNNO" and
 * "dunno" are one line of the report.  Words are cut to fit the slot and
 * words beyond the first ACTION_KINDS go to "other": a server that answers
 * nonsense makes the report shorter, never overflows it.
 */
#define ACTION_WORD_MAX 32
#define ACTION_KINDS 16

struct action_count {
	char word[ACTION_WORD_MAX];
	uint64_t count;
};

struct action_counts {
	struct action_count kinds[ACTION_KINDS];
	size_t used;
	uint64_t other;
};

static void actions_add(struct action_counts *a, const char *word, size_t len, uint64_t count)
{
	if (len >= ACTION_WORD_MAX)
		len = ACTION_WORD_MAX - 1;
	for (size_t i = 0; i < a->used; i++) {
		if (strlen(a->kinds[i].word) == len && memcmp(a->kinds[i].word, word, len) == 0) {
			a->kinds[i].count += count;
			return;
		}
	}
	if (a->used == ACTION_KINDS) {
		a->other += count;
		return;
	}
	struct action_count *slot = &a->kinds[a->used++];
	memcpy(slot->word, word, len);
	slot->word[len] = '\0';
	slot->count = count;
}

/* One character of an action word as the report shows it: lower case, and
 * '?' for what would break a report line or the CSV ("dunno:5;defer:2"). */
static char action_word_char(char c)
{
	if (c >= 'A' && c <= 'Z')
		return (char)(c - 'A' + 'a');
	if ((unsigned char)c < 0x21 || (unsigned char)c >= 0x7f || strchr(",;:", c) != NULL)
		return '?';
	return c;
}

/* Tallies the answer "action=WORD rest\n\n" (answer[0..len)); false when it
 * does not start with "action=". */
static bool actions_count_answer(struct action_counts *a, const char *answer, size_t len)
{
	static const char prefix[] = "action=";
	char word[ACTION_WORD_MAX];
	size_t n = 0;

	if (len < sizeof(prefix) - 1 || memcmp(answer, prefix, sizeof(prefix) - 1) != 0)
		return false;
	for (size_t i = sizeof(prefix) - 1; i < len && n < sizeof(word) - 1; i++) {
		if (answer[i] == ' ' || answer[i] == '\t' || answer[i] == '\n')
			break;
		word[n++] = action_word_char(answer[i]);
	}
	if (n == 0)
		actions_add(a, "(empty)", 7, 1);
	else
		actions_add(a, word, n, 1);
	return true;
}

static void actions_merge(struct action_counts *into, const struct action_counts *from)
{
	for (size_t i = 0; i < from->used; i++)
		actions_add(into, from->kinds[i].word, strlen(from->kinds[i].word),
			    from->kinds[i].count);
	into->other += from->other;
}

/* --------------------------------------------------- request template */

/*
 * What a request looks like.  Most of it is the same for every request, so
 * it is rendered once into literal text, and only four values are written
 * per request: the key, client_port, queue_id and instance.  That keeps the
 * generator cheap enough to load a server on the same two cores.
 */
enum value_kind {
	VALUE_TEXT,            /* the fixed text in the table */
	VALUE_STATE,           /* from the options, fixed for the run */
	VALUE_RECIPIENT,
	VALUE_RECIPIENT_COUNT,
	VALUE_SIZE,
	VALUE_KEY,             /* written per request */
	VALUE_CLIENT_PORT,
	VALUE_QUEUE_ID,
	VALUE_INSTANCE,
	VALUE_END,             /* the last literal: nothing follows it */
};

struct postfix_attribute {
	const char *name;
	enum value_kind kind;
	const char *text;
};

/* Every attribute Postfix 3.7 smtpd sends to a policy service, empty ones
 * too, in its order (captured from smtpd at END-OF-MESSAGE). */
static const struct postfix_attribute postfix_attributes[] = {
	{ "request", VALUE_TEXT, "smtpd_access_policy" },
	{ "protocol_state", VALUE_STATE, NULL },
	{ "protocol_name", VALUE_TEXT, "ESMTP" },
	{ "client_address", VALUE_TEXT, "192.0.2.10" },
	{ "client_name", VALUE_TEXT, "mail.example.net" },
	{ "client_port", VALUE_CLIENT_PORT, NULL },
	{ "reverse_client_name", VALUE_TEXT, "mail.example.net" },
	{ "server_address", VALUE_TEXT, "127.0.0.1" },
	{ "server_port", VALUE_TEXT, "25" },
	{ "helo_name", VALUE_TEXT, "mail.example.net" },
	{ "sender", VALUE_TEXT, "sender@example.net" },
	{ "recipient", VALUE_RECIPIENT, NULL },
	{ "recipient_count", VALUE_RECIPIENT_COUNT, NULL },
	{ "queue_id", VALUE_QUEUE_ID, NULL },
	{ "instance", VALUE_INSTANCE, NULL },
	{ "size", VALUE_SIZE, NULL },
	{ "etrn_domain", VALUE_TEXT, "" },
	{ "stress", VALUE_TEXT, "" },
	{ "sasl_method", VALUE_TEXT, "" },
	{ "sasl_username", VALUE_TEXT, "" },
	{ "sasl_sender", VALUE_TEXT, "" },
	{ "ccert_subject", VALUE_TEXT, "" },
	{ "ccert_issuer", VALUE_TEXT, "" },
	{ "ccert_fingerprint", VALUE_TEXT, "" },
	{ "ccert_pubkey_fingerprint", VALUE_TEXT, "" },
	{ "encryption_protocol", VALUE_TEXT, "" },
	{ "encryption_cipher", VALUE_TEXT, "" },
	{ "encryption_keysize", VALUE_TEXT, "0" },
	{ "policy_context", VALUE_TEXT, "" },
};

/* Literal text, then the value `kind` (VALUE_KEY .. VALUE_END). */
struct template_part {
	char *literal;
	size_t len;
	enum value_kind kind;
};

struct request_template {
	struct template_part *parts;
	size_t count;
	bool ipv4_keys;
};

/* Per-request values that are not the key. */
struct request_serial {
	uint64_t number;      /* requests written by this thread so far */
	unsigned thread;
};

static void template_add_part(struct request_template *t, struct buf *literal,
			      enum value_kind kind)
{
	t->parts = xrealloc(t->parts, (t->count + 1) * sizeof(*t->parts));
	t->parts[t->count].literal = xstrndup(buf_head(literal), buf_size(literal));
	t->parts[t->count].len = buf_size(literal);
	t->parts[t->count].kind = kind;
	t->count++;
	buf_reset(literal);
}

static bool value_is_per_request(enum value_kind kind)
{
	return kind >= VALUE_KEY;
}

/* The text of a value that is fixed for the whole run. */
static void template_fixed_value(struct buf *out, const struct bench_options *o,
				 const struct postfix_attribute *attr)
{
	switch (attr->kind) {
	case VALUE_STATE: buf_append_str(out, o->protocol_state); break;
	case VALUE_RECIPIENT:
		/* Postfix leaves recipient empty at END-OF-MESSAGE when there is more
		 * than one; recipient_count says how many there were. */
		if (o->recipient_count <= 1)
			buf_append_str(out, "recipient@example.org");
		break;
	case VALUE_RECIPIENT_COUNT: buf_printf(out, "%u", o->recipient_count); break;
	case VALUE_SIZE: buf_printf(out, "%" PRIu64, o->size); break;
	default: buf_append_str(out, attr->text); break;
	}
}

static void template_compile(struct request_template *t, const struct bench_options *o)
{
	struct buf literal;
	bool key_placed = false;

	memset(t, 0, sizeof(*t));
	t->ipv4_keys = key_is_ipv4(o);
	buf_init(&literal);
	for (size_t i = 0; i < sizeof(postfix_attributes) / sizeof(postfix_attributes[0]); i++) {
		const struct postfix_attribute *attr = &postfix_attributes[i];
		bool is_key = strcmp(attr->name, o->key_attribute) == 0;
		enum value_kind kind = is_key ? VALUE_KEY : attr->kind;

		buf_printf(&literal, "%s=", attr->name);
		if (value_is_per_request(kind))
			template_add_part(t, &literal, kind);
		else
			template_fixed_value(&literal, o, attr);
		buf_append_str(&literal, "\n");
		key_placed = key_placed || is_key;
	}
	if (!key_placed) {
		/* Not a Postfix attribute: sent last, as a newer Postfix would. */
		buf_printf(&literal, "%s=", o->key_attribute);
		template_add_part(t, &literal, VALUE_KEY);
		buf_append_str(&literal, "\n");
	}
	buf_append_str(&literal, "\n");
	template_add_part(t, &literal, VALUE_END);
	buf_free(&literal);
}

static void template_free(struct request_template *t)
{
	for (size_t i = 0; i < t->count; i++)
		free(t->parts[i].literal);
	free(t->parts);
}

static void request_write_key(struct buf *out, const struct request_template *t, uint64_t key)
{
	if (t->ipv4_keys)
		buf_printf(out, "10.%u.%u.%u", (unsigned)(key >> 16) & 255,
			   (unsigned)(key >> 8) & 255, (unsigned)key & 255);
	else
		buf_printf(out, "user%" PRIu64 "@example.org", key);
}

/* Appends one complete request for `key`. */
static void request_write(struct buf *out, const struct request_template *t, uint64_t key,
			  const struct request_serial *serial)
{
	/* Unique per thread and request, like Postfix's queue IDs and instances. */
	uint64_t unique = ((uint64_t)serial->thread << 32) | (serial->number & 0xffffffffu);

	for (size_t i = 0; i < t->count; i++) {
		const struct template_part *part = &t->parts[i];

		buf_append(out, part->literal, part->len);
		switch (part->kind) {
		case VALUE_KEY: request_write_key(out, t, key); break;
		case VALUE_CLIENT_PORT:
			buf_printf(out, "%u", 1024u + (unsigned)(serial->number % 64000));
			break;
		case VALUE_QUEUE_ID: buf_printf(out, "%010" PRIX64, unique); break;
		case VALUE_INSTANCE:
			buf_printf(out, "%x.%" PRIx64 ".%x.0", serial->thread + 1, unique,
				   (unsigned)(serial->number & 0xfffff));
			break;
		default: break;
		}
	}
}

/* ------------------------------------------------------------- target */

struct target {
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char label[320];       /* host:port or the socket path, for reports */
};

/* Connects a blocking-style probe with a time limit: 0, or an errno. */
static int target_probe(const struct target *target)
{
	int fd = socket(target->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int error = 0;
	socklen_t len = sizeof(error);

	if (fd < 0)
		return errno;
	if (connect(fd, (const struct sockaddr *)&target->addr, target->addr_len) < 0) {
		error = errno;
		if (error == EINPROGRESS) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			int ready = poll(&pfd, 1, PROBE_TIMEOUT_MS);

			if (ready == 0)
				error = ETIMEDOUT;
			else if (ready < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
				error = errno;
		}
	}
	close(fd);
	return error;
}

static void target_unix(struct target *target, const char *path)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)&target->addr;

	if (strlen(path) >= sizeof(sun->sun_path))
		bench_fail("socket path is longer than %zu bytes: %s", sizeof(sun->sun_path) - 1,
			   path);
	memset(&target->addr, 0, sizeof(target->addr));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, strlen(path) + 1);
	target->addr_len = (socklen_t)sizeof(*sun);
	snprintf(target->label, sizeof(target->label), "unix:%s", path);
	int error = target_probe(target);
	if (error != 0)
		bench_fail("cannot connect to %s: %s", target->label, strerror(error));
}

/* Resolves host and port and keeps the first address that accepts a
 * connection, so that "localhost" works whether the server listens on ::1
 * or 127.0.0.1.  A server that is down ends the run here, with exit 1. */
static void target_inet(struct target *target, const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC };
	struct addrinfo *list;
	int error = EADDRNOTAVAIL;

	int status = getaddrinfo(host, port, &hints, &list);
	if (status != 0)
		bench_fail("cannot resolve %s port %s: %s", host, port, gai_strerror(status));
	snprintf(target->label, sizeof(target->label), strchr(host, ':') ? "[%s]:%s" : "%s:%s",
		 host, port);
	for (const struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(target->addr))
			continue;
		memcpy(&target->addr, ai->ai_addr, ai->ai_addrlen);
		target->addr_len = ai->ai_addrlen;
		error = target_probe(target);
		if (error == 0)
			break;
	}
	freeaddrinfo(list);
	if (error != 0)
		bench_fail("cannot connect to %s: %s (is the server running?)", target->label,
			   strerror(error));
}

/* --------------------------------------------------- run-wide state */

struct bench {
	struct bench_options options;
	struct target target;
	struct request_template request;
	uint64_t timeout_ns;
	atomic_uint_fast64_t measure_start;   /* clock_now() when warm-up ended; 0 before */
	atomic_uint_fast64_t measure_end;     /* when measurement ended; 0 before */
	atomic_bool stop;                     /* threads leave their loops */
	atomic_uint_fast64_t tickets_taken;   /* -n: requests started while measuring */
};

struct bench_stats {
	uint64_t answers;          /* answered within the measurement */
	uint64_t bad_answers;      /* not "action=...": framing was right, content not */
	uint64_t timeouts;
	uint64_t unanswered;       /* -d: still waiting when the measurement ended */
	uint64_t drops;            /* the server closed or reset a connection */
	uint64_t connect_failures;
	int last_errno;            /* of the last drop or failed connect, for the report */
	struct histogram latency;
	struct action_counts actions;
};

/* --------------------------------------------------------- connections */

enum conn_state {
	CONN_DOWN,        /* waiting for retry_at to connect again */
	CONN_CONNECTING,  /* non-blocking connect under way */
	CONN_IDLE,        /* connected, nothing to send (-n is used up) */
	CONN_BUSY,        /* a request is out, its answer not yet in */
};

struct conn {
	int fd;
	enum conn_state state;
	bool want_write;       /* EPOLLOUT is registered: a write was short */
	struct buf out;        /* the request, or what is left of it to write */
	struct buf in;         /* bytes of the answer received so far */
	size_t scanned;        /* bytes of `in` already searched for "\n\n" */
	uint64_t sent_at;      /* clock_now() when the request was built */
	uint64_t retry_at;     /* CONN_DOWN: when to try again */
};

struct load_thread {
	pthread_t id;
	int epoll_fd;
	struct bench *bench;
	struct conn *conns;
	size_t conn_count;
	size_t busy;               /* conns in CONN_BUSY */
	uint64_t random_state;
	uint64_t next_key;         /* round-robin position */
	struct request_serial serial;
	uint64_t next_tick;
	uint64_t finished_at;      /* clock_now() when the thread's -n share was done */
	struct bench_stats stats;
};

static void conn_open(struct load_thread *t, struct conn *c);
static void conn_send_next(struct load_thread *t, struct conn *c);

static void conn_watch(struct load_thread *t, struct conn *c, int op, bool want_write)
{
	struct epoll_event ev = { .events = EPOLLIN | (want_write ? EPOLLOUT : 0),
				  .data.ptr = c };

	if (epoll_ctl(t->epoll_fd, op, c->fd, &ev) < 0)
		bench_fail("epoll_ctl: %s", strerror(errno));
	c->want_write = want_write;
}

static void conn_close(struct load_thread *t, struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);    /* also leaves the epoll set */
	c->fd = -1;
	if (c->state == CONN_BUSY)
		t->busy--;
	c->state = CONN_DOWN;
	c->want_write = false;
	c->scanned = 0;
	buf_reset(&c->in);
	buf_reset(&c->out);
}

/* A connect failed: try again after a pause, so a dead server is polled
 * ten times a second per connection instead of in a busy loop. */
static void conn_connect_failed(struct load_thread *t, struct conn *c, int error)
{
	t->stats.connect_failures++;
	t->stats.last_errno = error;
	conn_close(t, c);
	c->retry_at = clock_now() + RETRY_NS;
}

/* The server closed or reset the connection: reconnect at once and go on,
 * as Postfix's smtpd would. */
static void conn_dropped(struct load_thread *t, struct conn *c, int error)
{
	t->stats.drops++;
	t->stats.last_errno = error;
	conn_close(t, c);
	conn_open(t, c);
}

static void conn_connected(struct load_thread *t, struct conn *c)
{
	if (t->bench->target.addr.ss_family != AF_UNIX) {
		int one = 1;   /* requests are small, one per round trip: no Nagle */
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	c->state = CONN_IDLE;
	conn_watch(t, c, EPOLL_CTL_MOD, false);
	conn_send_next(t, c);
}

static void conn_open(struct load_thread *t, struct conn *c)
{
	const struct target *target = &t->bench->target;

	c->fd = socket(target->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_connect_failed(t, c, errno);
		return;
	}
	/* Even a connect that completes at once (unix sockets) is finished from
	 * the event loop: sending here could fail, drop the connection and
	 * open it again, recursing for as long as the server keeps hanging up. */
	if (connect(c->fd, (const struct sockaddr *)&target->addr, target->addr_len) == 0 ||
	    errno == EINPROGRESS) {
		c->state = CONN_CONNECTING;
		conn_watch(t, c, EPOLL_CTL_ADD, true);
	} else {
		/* Includes EAGAIN: a unix socket whose backlog is full. */
		conn_connect_failed(t, c, errno);
	}
}

static void conn_finish_connect(struct load_thread *t, struct conn *c)
{
	int error = 0;
	socklen_t len = sizeof(error);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
		error = errno;
	if (error != 0)
		conn_connect_failed(t, c, error);
	else
		conn_connected(t, c);
}

/* Writes what is left of the request; a short write waits for EPOLLOUT. */
static void conn_flush(struct load_thread *t, struct conn *c)
{
	ssize_t n = send(c->fd, buf_head(&c->out), buf_size(&c->out), MSG_NOSIGNAL);

	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		conn_dropped(t, c, errno);
		return;
	}
	if (n > 0)
		buf_consume(&c->out, (size_t)n);
	bool more = buf_size(&c->out) > 0;
	if (more != c->want_write)
		conn_watch(t, c, EPOLL_CTL_MOD, more);
}

/* With -n, each request started while measuring takes one of N tickets;
 * during warm-up nothing is counted, so nothing is taken. */
static bool thread_may_send(struct load_thread *t)
{
	struct bench *b = t->bench;

	if (atomic_load_explicit(&b->stop, memory_order_relaxed))
		return false;
	if (b->options.requests == 0 || atomic_load(&b->measure_start) == 0)
		return true;
	return atomic_fetch_add(&b->tickets_taken, 1) < b->options.requests;
}

static uint64_t random_next(uint64_t *state)
{
	uint64_t x = *state;   /* xorshift64*: fast, and good enough to pick keys */

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * UINT64_C(2685821657736338717);
}

static uint64_t thread_next_key(struct load_thread *t)
{
	const struct bench_options *o = &t->bench->options;

	if (o->key_order == KEYS_ROUND_ROBIN) {
		uint64_t key = t->next_key;
		t->next_key = (key + 1) % o->keys;
		return o->key_offset + key;
	}
	/* keys <= 2^32: scale the top 32 random bits, no modulo bias worth naming */
	return o->key_offset + (((random_next(&t->random_state) >> 32) * o->keys) >> 32);
}

static void conn_send_next(struct load_thread *t, struct conn *c)
{
	if (!thread_may_send(t)) {
		c->state = CONN_IDLE;
		return;
	}
	buf_reset(&c->out);
	request_write(&c->out, &t->bench->request, thread_next_key(t), &t->serial);
	t->serial.number++;
	c->state = CONN_BUSY;
	t->busy++;
	c->sent_at = clock_now();
	conn_flush(t, c);
}

/* Whether a request that was sent at `sent_at` and ended (answered or
 * given up) `now` belongs to the measurement.  What ends within it counts,
 * even if sent during warm-up: otherwise a server that leaves connections
 * waiting longer than the warm-up would have those waits left out.  With
 * -n only the N requests sent while measuring count, so that N is exact. */
static bool bench_is_measured(struct bench *b, uint64_t sent_at, uint64_t now)
{
	uint64_t start = atomic_load_explicit(&b->measure_start, memory_order_relaxed);
	uint64_t end = atomic_load_explicit(&b->measure_end, memory_order_relaxed);

	if (start == 0 || now < start || (end != 0 && now > end))
		return false;
	return b->options.requests == 0 || sent_at >= start;
}

static void conn_take_answer(struct load_thread *t, struct conn *c, size_t len)
{
	uint64_t now = clock_now();

	if (bench_is_measured(t->bench, c->sent_at, now)) {
		if (actions_count_answer(&t->stats.actions, buf_head(&c->in), len)) {
			t->stats.answers++;
			histogram_record(&t->stats.latency, now - c->sent_at);
		} else {
			t->stats.bad_answers++;
		}
	} else if (strncmp(buf_head(&c->in), "action=", 7) != 0) {
		t->stats.bad_answers++;
	}
	buf_consume(&c->in, len);
	c->scanned = 0;
	c->state = CONN_IDLE;
	t->busy--;
}

/* Looks for the end of the answer ("\n\n"), searching only new bytes.
 * Returns false when the connection was closed. */
static bool conn_parse_answer(struct load_thread *t, struct conn *c)
{
	size_t size = buf_size(&c->in);
	size_t from = c->scanned > 0 ? c->scanned - 1 : 0;   /* "\n" | "\n" across reads */
	const char *end = memmem(buf_head(&c->in) + from, size - from, "\n\n", 2);

	if (end == NULL) {
		c->scanned = size;
		if (size <= MAX_ANSWER)
			return true;
		t->stats.bad_answers++;   /* no end in sight: not a policy server */
		conn_close(t, c);
		conn_open(t, c);
		return false;
	}
	size_t len = (size_t)(end - buf_head(&c->in)) + 2;
	if (c->state != CONN_BUSY || len != size) {
		/* An answer nobody asked for, or two answers to one request:
		 * the conversation is out of step and cannot be trusted. */
		t->stats.bad_answers++;
		conn_close(t, c);
		conn_open(t, c);
		return false;
	}
	conn_take_answer(t, c, len);
	conn_send_next(t, c);
	return true;
}

/* One read per readiness event: level-triggered epoll reports again if
 * more is waiting, and a second read() that finds nothing costs a syscall
 * per request.  Returns false when the connection was closed. */
static bool conn_read(struct load_thread *t, struct conn *c)
{
	buf_reserve(&c->in, READ_CHUNK);
	ssize_t n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len - 1, 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n <= 0) {
		conn_dropped(t, c, n == 0 ? ECONNRESET : errno);
		return false;
	}
	c->in.len += (size_t)n;
	c->in.data[c->in.len] = '\0';
	return conn_parse_answer(t, c);
}

static void conn_handle(struct load_thread *t, struct conn *c, uint32_t events)
{
	if (c->state == CONN_CONNECTING) {
		conn_finish_connect(t, c);
		return;
	}
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && !conn_read(t, c))
		return;
	if ((events & EPOLLOUT) && buf_size(&c->out) > 0)
		conn_flush(t, c);
}

/* ------------------------------------------------------- load threads */

/* A request that waited past --timeout is an error, and its wait enters
 * the latency figures: leaving it out would flatter a server that stalls. */
static void conn_timed_out(struct load_thread *t, struct conn *c, uint64_t now)
{
	t->stats.timeouts++;
	if (bench_is_measured(t->bench, c->sent_at, now))
		histogram_record(&t->stats.latency, now - c->sent_at);
	conn_close(t, c);
	conn_open(t, c);
}

/* Every TICK_NS: reconnect what is down, give up on stalled answers. */
static void thread_tick(struct load_thread *t, uint64_t now)
{
	for (size_t i = 0; i < t->conn_count; i++) {
		struct conn *c = &t->conns[i];

		if (c->state == CONN_DOWN && now >= c->retry_at &&
		    !atomic_load_explicit(&t->bench->stop, memory_order_relaxed))
			conn_open(t, c);
		else if (c->state == CONN_BUSY && now - c->sent_at > t->bench->timeout_ns)
			conn_timed_out(t, c, now);
	}
	t->next_tick = now + TICK_NS;
}

/* A timed run ends with some requests unanswered.  Their waits so far are
 * lower bounds, but leaving them out would hide a server that never
 * answers some connections (mtpolicyd beyond max_servers): they count as
 * latencies ending when the measurement ended. */
static void thread_count_unanswered(struct load_thread *t)
{
	uint64_t end = atomic_load(&t->bench->measure_end);

	if (end == 0 || t->bench->options.requests != 0)
		return;
	for (size_t i = 0; i < t->conn_count; i++) {
		const struct conn *c = &t->conns[i];

		if (c->state == CONN_BUSY && c->sent_at < end &&
		    bench_is_measured(t->bench, c->sent_at, end)) {
			t->stats.unanswered++;
			histogram_record(&t->stats.latency, end - c->sent_at);
		}
	}
}

/* With -n the thread is done once the tickets are gone and none of its
 * requests is still out. */
static bool thread_is_done(struct load_thread *t)
{
	struct bench *b = t->bench;

	if (atomic_load_explicit(&b->stop, memory_order_relaxed))
		return true;
	return b->options.requests != 0 && t->busy == 0 && atomic_load(&b->measure_start) != 0 &&
	       atomic_load(&b->tickets_taken) >= b->options.requests;
}

static void *thread_run(void *arg)
{
	struct load_thread *t = arg;
	struct epoll_event events[MAX_EVENTS];

	for (size_t i = 0; i < t->conn_count; i++)
		conn_open(t, &t->conns[i]);
	t->next_tick = clock_now() + TICK_NS;
	while (!thread_is_done(t)) {
		int n = epoll_wait(t->epoll_fd, events, MAX_EVENTS, (int)(TICK_NS / 1000000));

		if (n < 0 && errno != EINTR)
			bench_fail("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++)
			conn_handle(t, events[i].data.ptr, events[i].events);
		uint64_t now = clock_now();
		if (now >= t->next_tick)
			thread_tick(t, now);
	}
	t->finished_at = clock_now();
	thread_count_unanswered(t);
	for (size_t i = 0; i < t->conn_count; i++)
		conn_close(t, &t->conns[i]);
	return NULL;
}

/* Deals the connections out like cards, so thread loads differ by one at most. */
static struct load_thread *threads_start(struct bench *b)
{
	unsigned count = b->options.threads;
	struct load_thread *threads = xcalloc(count, sizeof(*threads));

	for (unsigned i = 0; i < count; i++) {
		struct load_thread *t = &threads[i];

		t->bench = b;
		t->serial.thread = i;
		t->random_state = (UINT64_C(0x9e3779b97f4a7c15) * (i + 1) ^ clock_now()) | 1;
		t->next_key = b->options.keys * i / count;
		t->conn_count = b->options.connections / count + (i < b->options.connections % count);
		t->conns = xcalloc(t->conn_count, sizeof(*t->conns));
		for (size_t j = 0; j < t->conn_count; j++) {
			t->conns[j].fd = -1;
			buf_init(&t->conns[j].in);
			buf_init(&t->conns[j].out);
		}
		t->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
		if (t->epoll_fd < 0)
			bench_fail("epoll_create1: %s", strerror(errno));
	}
	for (unsigned i = 0; i < count; i++) {
		int error = pthread_create(&threads[i].id, NULL, thread_run, &threads[i]);
		if (error != 0)
			bench_fail("cannot start a thread: %s", strerror(error));
	}
	return threads;
}

static void threads_join(struct load_thread *threads, unsigned count)
{
	for (unsigned i = 0; i < count; i++) {
		pthread_join(threads[i].id, NULL);
		close(threads[i].epoll_fd);
		for (size_t j = 0; j < threads[i].conn_count; j++) {
			buf_free(&threads[i].conns[j].in);
			buf_free(&threads[i].conns[j].out);
		}
		free(threads[i].conns);
	}
}

/* ---------------------------------------------------------- timekeeping */

/* Waits until `deadline` (clock_now() time); false when SIGINT or SIGTERM
 * came first.  Signals are blocked in every thread and taken here, so ^C
 * ends the run early and still prints what was measured. */
static bool main_wait_until(uint64_t deadline, const sigset_t *signals)
{
	for (;;) {
		uint64_t now = clock_now();
		if (now >= deadline)
			return true;
		uint64_t left = deadline - now;
		struct timespec ts = { .tv_sec = (time_t)(left / NS_PER_SEC),
				       .tv_nsec = (long)(left % NS_PER_SEC) };
		if (sigtimedwait(signals, NULL, &ts) > 0)
			return false;
	}
}

/* Each thread says it is done by setting finished_at (read after join);
 * meanwhile the main thread polls the tickets and listens for signals. */
static bool main_wait_for_requests(struct bench *b, const sigset_t *signals)
{
	while (atomic_load(&b->tickets_taken) < b->options.requests) {
		if (!main_wait_until(clock_now() + 20 * UINT64_C(1000000), signals))
			return false;
	}
	return true;
}

/* Without warm-up the measurement starts before the threads do: a request
 * sent before it would reach the server uncounted, and -n N would send
 * more than N. */
static void bench_start_without_warmup(struct bench *b)
{
	if (b->options.warmup == 0)
		atomic_store(&b->measure_start, clock_now());
}

/* Runs warm-up and measurement; returns the measured seconds. */
static double bench_keep_time(struct bench *b, struct load_thread *threads, sigset_t *signals)
{
	bool whole = main_wait_until(clock_now() + (uint64_t)(b->options.warmup * 1e9), signals);
	uint64_t start = atomic_load(&b->measure_start);
	uint64_t end;

	if (start == 0) {
		start = clock_now();
		atomic_store(&b->measure_start, start);
	}
	if (whole && b->options.duration > 0) {
		main_wait_until(start + (uint64_t)(b->options.duration * 1e9), signals);
	} else if (whole) {
		whole = main_wait_for_requests(b, signals);
	}
	if (!whole || b->options.duration > 0) {
		end = clock_now();
		atomic_store(&b->measure_end, end);
		atomic_store(&b->stop, true);
		threads_join(threads, b->options.threads);
	} else {
		threads_join(threads, b->options.threads);
		end = start;
		for (unsigned i = 0; i < b->options.threads; i++)
			if (threads[i].finished_at > end)
				end = threads[i].finished_at;
	}
	return (double)(end - start) / 1e9;
}

/* ------------------------------------------------------------ report */

static void stats_sum(struct bench_stats *sum, const struct load_thread *threads,
		      unsigned count)
{
	memset(sum, 0, sizeof(*sum));
	for (unsigned i = 0; i < count; i++) {
		const struct bench_stats *s = &threads[i].stats;

		sum->answers += s->answers;
		sum->bad_answers += s->bad_answers;
		sum->timeouts += s->timeouts;
		sum->unanswered += s->unanswered;
		sum->drops += s->drops;
		sum->connect_failures += s->connect_failures;
		if (s->last_errno != 0)
			sum->last_errno = s->last_errno;
		histogram_add(&sum->latency, &s->latency);
		actions_merge(&sum->actions, &s->actions);
	}
}

static double ms(uint64_t ns)
{
	return (double)ns / NS_PER_MS;
}

/* "dunno 1234, defer 5" for the human report; "dunno:1234;defer:5" in CSV. */
static void report_actions(struct buf *out, const struct action_counts *a, bool csv)
{
	for (size_t i = 0; i < a->used; i++)
		buf_printf(out, csv ? "%s%s:%" PRIu64 : "%s%s %" PRIu64,
			   i ? (csv ? ";" : ", ") : "", a->kinds[i].word, a->kinds[i].count);
	if (a->other)
		buf_printf(out, csv ? "%sother:%" PRIu64 : "%sother %" PRIu64,
			   a->used ? (csv ? ";" : ", ") : "", a->other);
	if (a->used == 0 && a->other == 0 && !csv)
		buf_append_str(out, "none");
}

static void report_csv(const struct bench *b, const struct bench_stats *s, double seconds)
{
	const struct histogram *h = &s->latency;
	struct buf actions;

	buf_init(&actions);
	report_actions(&actions, &s->actions, true);
	printf("target,connections,threads,keys,attribute,seconds,answers,rps,"
	       "p50_ms,p99_ms,p999_ms,max_ms,bad_answers,timeouts,drops,connect_failures,"
	       "unanswered,actions\n");
	printf("%s,%u,%u,%" PRIu64 ",%s,%.3f,%" PRIu64 ",%.1f,%.3f,%.3f,%.3f,%.3f,"
	       "%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%s\n",
	       b->target.label, b->options.connections, b->options.threads, b->options.keys,
	       b->options.key_attribute, seconds, s->answers,
	       seconds > 0 ? (double)s->answers / seconds : 0.0,
	       ms(histogram_percentile(h, 50)), ms(histogram_percentile(h, 99)),
	       ms(histogram_percentile(h, 99.9)), ms(h->max), s->bad_answers, s->timeouts,
	       s->drops, s->connect_failures, s->unanswered,
	       buf_size(&actions) ? buf_head(&actions) : "");
	buf_free(&actions);
}

static void report_human(const struct bench *b, const struct bench_stats *s, double seconds)
{
	const struct bench_options *o = &b->options;
	const struct histogram *h = &s->latency;
	double rps = seconds > 0 ? (double)s->answers / seconds : 0.0;
	struct buf actions;

	if (o->quiet) {
		printf("%s: %.1f requests per second, p50 %.3f ms, p99 %.3f ms\n", b->target.label,
		       rps, ms(histogram_percentile(h, 50)), ms(histogram_percentile(h, 99)));
		return;
	}
	buf_init(&actions);
	report_actions(&actions, &s->actions, false);
	printf("target:      %s, %u connections over %u thread%s\n", b->target.label,
	       o->connections, o->threads, o->threads == 1 ? "" : "s");
	printf("keys:        %" PRIu64 " in %s, %s\n", o->keys, o->key_attribute,
	       o->key_order == KEYS_RANDOM ? "random" : "round-robin");
	printf("answers:     %" PRIu64 " in %.2f s = %.1f req/s\n", s->answers, seconds, rps);
	printf("latency:     p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms\n",
	       ms(histogram_percentile(h, 50)), ms(histogram_percentile(h, 99)),
	       ms(histogram_percentile(h, 99.9)), ms(h->max));
	printf("actions:     %s\n", buf_head(&actions));
	printf("errors:      %" PRIu64 " bad answers, %" PRIu64 " timeouts\n", s->bad_answers,
	       s->timeouts);
	printf("in flight:   %" PRIu64 " requests unanswered at the end, in the latency figures"
	       " with their wait so far\n", s->unanswered);
	printf("connections: %" PRIu64 " dropped by the server and reopened, %" PRIu64
	       " failed connects%s%s\n", s->drops, s->connect_failures,
	       s->last_errno ? "; last error: " : "", s->last_errno ? strerror(s->last_errno) : "");
	buf_free(&actions);
}

/* ---------------------------------------------------------------- main */

/* Each connection is a descriptor: lift the soft limit as far as allowed. */
static void raise_fd_limit(unsigned connections)
{
	struct rlimit limit;
	rlim_t want = (rlim_t)connections + 64;

	if (getrlimit(RLIMIT_NOFILE, &limit) < 0 || limit.rlim_cur >= want)
		return;
	limit.rlim_cur = limit.rlim_max < want ? limit.rlim_max : want;
	setrlimit(RLIMIT_NOFILE, &limit);
	if (limit.rlim_cur < want)
		bench_fail("%u connections need %llu descriptors; the limit is %llu (ulimit -n)",
			   connections, (unsigned long long)want,
			   (unsigned long long)limit.rlim_cur);
}

int main(int argc, char **argv)
{
	static struct bench b;
	struct bench_stats sum;
	sigset_t signals;

	options_parse(argc, argv, &b.options);
	raise_fd_limit(b.options.connections);
	if (b.options.socket_path)
		target_unix(&b.target, b.options.socket_path);
	else
		target_inet(&b.target, b.options.host, b.options.port);
	template_compile(&b.request, &b.options);
	b.timeout_ns = (uint64_t)(b.options.timeout * 1e9);

	sigemptyset(&signals);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);   /* inherited by the threads */

	bench_start_without_warmup(&b);
	struct load_thread *threads = threads_start(&b);
	double seconds = bench_keep_time(&b, threads, &signals);

	stats_sum(&sum, threads, b.options.threads);
	if (b.options.csv)
		report_csv(&b, &sum, seconds);
	else
		report_human(&b, &sum, seconds);
	free(threads);
	template_free(&b.request);
	return sum.answers > 0 ? 0 : 1;
}
