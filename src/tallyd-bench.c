/*
 * tallyd-bench.c: a load generator for the Postfix policy protocol, like
 * redis-benchmark.  Closed loop: each connection sends a request shaped like
 * Postfix's END-OF-MESSAGE request and waits for the answer before sending
 * the next.  Connections are spread over threads, each with its own epoll
 * loop, statistics and latency histogram; they are summed at the end.
 *
 *   tallyd-bench -p 12346 -c 32 -d 10 -k 1000
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------- options */

struct options {
	const char *host, *port, *socket_path;
	int connections, threads;
	long requests;               /* 0: run for `seconds` */
	double seconds, warmup;
	long keys;
	const char *attribute;
	int recipient_count;
	long size;
	const char *protocol_state;
	bool csv, quiet;
};

static struct options opt = {
	.host = "127.0.0.1", .port = "12345", .connections = 50, .threads = 1,
	.requests = 100000, .keys = 1000, .attribute = "client_address",
	.recipient_count = 1, .size = 1000, .protocol_state = "END-OF-MESSAGE",
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: tallyd-bench [options]\n"
		"  -H HOST              server address (default 127.0.0.1)\n"
		"  -p PORT              server port (default 12345)\n"
		"  -s PATH              a unix socket instead of TCP\n"
		"  -c N                 connections (default 50)\n"
		"  -t N                 threads (default 1)\n"
		"  -n N                 requests in all (default 100000)\n"
		"  -d SECONDS           run for this long instead of -n\n"
		"  -w, --warmup SECONDS run this long before measuring\n"
		"  -k N                 distinct keys (default 1000)\n"
		"  -a ATTRIBUTE         the attribute that carries the key (default client_address)\n"
		"  --recipient-count N  (default 1)\n"
		"  --size N             (default 1000)\n"
		"  --protocol-state S   (default END-OF-MESSAGE)\n"
		"  --csv                one header line and one line of figures\n"
		"  -q                   no progress output\n");
}

static void parse_options(int argc, char **argv)
{
	static const struct option long_options[] = {
		{ "warmup", required_argument, NULL, 'w' },
		{ "recipient-count", required_argument, NULL, 'R' },
		{ "size", required_argument, NULL, 'S' },
		{ "protocol-state", required_argument, NULL, 'P' },
		{ "csv", no_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "H:p:s:c:t:n:d:w:k:a:qh", long_options, NULL)) != -1) {
		switch (ch) {
		case 'H': opt.host = optarg; break;
		case 'p': opt.port = optarg; break;
		case 's': opt.socket_path = optarg; break;
		case 'c': opt.connections = atoi(optarg); break;
		case 't': opt.threads = atoi(optarg); break;
		case 'n': opt.requests = atol(optarg); break;
		case 'd': opt.seconds = atof(optarg); opt.requests = 0; break;
		case 'w': opt.warmup = atof(optarg); break;
		case 'k': opt.keys = atol(optarg); break;
		case 'a': opt.attribute = optarg; break;
		case 'R': opt.recipient_count = atoi(optarg); break;
		case 'S': opt.size = atol(optarg); break;
		case 'P': opt.protocol_state = optarg; break;
		case 'C': opt.csv = true; break;
		case 'q': opt.quiet = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (opt.connections < 1 || opt.threads < 1 || opt.keys < 1 ||
	    (opt.requests <= 0 && opt.seconds <= 0)) {
		usage(stderr);
		exit(2);
	}
	if (opt.threads > opt.connections)
		opt.threads = opt.connections;
}

/* ----------------------------------------------------- latency histogram */

/* Log-linear buckets of microseconds: exact below 32, then 16 buckets per
 * power of two (about 6% wide), up to 2^40 us. */
#define BUCKETS (32 + 36 * 16)

static int bucket_of(uint64_t us)
{
	if (us < 32)
		return (int)us;
	int msb = 63 - __builtin_clzll(us);
	if (msb > 40)
		return BUCKETS - 1;
	return 32 + (msb - 5) * 16 + (int)((us >> (msb - 4)) & 15);
}

static uint64_t bucket_value(int b)
{
	if (b < 32)
		return (uint64_t)b;
	int msb = (b - 32) / 16 + 5, sub = (b - 32) % 16;
	return (uint64_t)(16 + sub) << (msb - 4);
}

/* ----------------------------------------------------------- connections */

enum { ACTIONS = 8 };

struct stats {
	uint64_t requests, errors, reconnects, max_us;
	uint64_t histogram[BUCKETS];
	char action_names[ACTIONS][32];
	uint64_t action_counts[ACTIONS];
};

struct connection {
	int fd;
	uint64_t rng;
	uint64_t sent_at;          /* ns */
	char out[4096];
	size_t out_len, out_done;
	char in[4096];
	size_t in_len;
};

struct thread {
	pthread_t id;
	int epfd;
	struct connection *conns;
	int count;
	int outstanding;           /* requests sent and not yet answered */
	struct stats stats;
};

static volatile int measuring;          /* set after the warmup */
static volatile int stopping;
static long remaining_requests;         /* -n mode; atomic */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int open_connection(void)
{
	int fd;

	if (opt.socket_path) {
		struct sockaddr_un un = { .sun_family = AF_UNIX };
		snprintf(un.sun_path, sizeof(un.sun_path), "%s", opt.socket_path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&un, sizeof(un)) == 0)
			return fd;
	} else {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
		int one = 1;
		if (getaddrinfo(opt.host, opt.port, &hints, &ai) != 0)
			return -1;
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			freeaddrinfo(ai);
			return fd;
		}
		freeaddrinfo(ai);
	}
	if (fd >= 0)
		close(fd);
	return -1;
}

static uint64_t next_random(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

/* The key for index i: an IPv4 address for client_address, else a user. */
static int format_key(char *out, size_t size, long i)
{
	if (strcmp(opt.attribute, "client_address") == 0)
		return snprintf(out, size, "10.%ld.%ld.%ld", (i >> 16) & 255, (i >> 8) & 255, i & 255);
	return snprintf(out, size, "user%ld@example.org", i);
}

/* Writes the next request into c->out: every attribute Postfix sends. */
static void make_request(struct connection *c)
{
	char key[64];
	long k = (long)(next_random(&c->rng) % (uint64_t)opt.keys);
	int n;

	format_key(key, sizeof(key), k);
	bool is_client = strcmp(opt.attribute, "client_address") == 0;
	n = snprintf(c->out, sizeof(c->out),
		     "request=smtpd_access_policy\nprotocol_state=%s\nprotocol_name=ESMTP\n"
		     "helo_name=client.example.org\nqueue_id=8045F2AB23\n"
		     "sender=%s\nrecipient=%s\nrecipient_count=%d\nclient_address=%s\n"
		     "client_name=client.example.org\nreverse_client_name=client.example.org\n"
		     "instance=123.456.7\nsasl_method=\nsasl_username=\nsasl_sender=\nsize=%ld\n"
		     "ccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n"
		     "encryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_256_GCM_SHA384\n"
		     "encryption_keysize=256\netrn_domain=\nstress=\nserver_address=127.0.0.1\n"
		     "server_port=25\npolicy_context=\ncompatibility_level=3.6\nmail_version=3.7.11\n",
		     opt.protocol_state, is_client ? "sender@example.org" : key,
		     opt.recipient_count > 1 ? "" : "rcpt@example.net", opt.recipient_count,
		     is_client ? key : "192.0.2.1", opt.size);
	if (!is_client && strcmp(opt.attribute, "sender") != 0)
		n += snprintf(c->out + n, sizeof(c->out) - (size_t)n, "%s=%s\n", opt.attribute, key);
	c->out[n++] = '\n';
	c->out_len = (size_t)n;
	c->out_done = 0;
}

/* Takes a request from the -n budget; false when there is none left. */
static bool take_request(void)
{
	if (opt.requests <= 0)
		return !stopping;
	return __atomic_sub_fetch(&remaining_requests, 1, __ATOMIC_RELAXED) >= 0;
}

static int send_request(struct thread *t, struct connection *c)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

	make_request(c);
	c->sent_at = now_ns();
	ssize_t n = write(c->fd, c->out, c->out_len);
	if (n != (ssize_t)c->out_len)
		return -1;   /* a 1 KiB request into an empty socket buffer: all or error */
	return epoll_ctl(t->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Counts n answers under the action's first word (the last slot takes
 * whatever does not fit). */
static void count_action(struct stats *s, const char *action, uint64_t n)
{
	size_t word = strcspn(action, " \n");
	int i;

	if (word > 31)
		word = 31;
	for (i = 0; i < ACTIONS - 1 && s->action_names[i][0]; i++) {
		if (strlen(s->action_names[i]) == word &&
		    strncasecmp(s->action_names[i], action, word) == 0)
			break;
	}
	if (!s->action_names[i][0])
		memcpy(s->action_names[i], action, word);
	s->action_counts[i] += n;
}

/* Replaces a broken connection; counts it. */
static void reconnect(struct thread *t, struct connection *c)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

	epoll_ctl(t->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	t->stats.errors++;
	t->stats.reconnects++;
	c->in_len = 0;
	while ((c->fd = open_connection()) < 0 && !stopping)
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	if (c->fd >= 0 && epoll_ctl(t->epfd, EPOLL_CTL_ADD, c->fd, &ev) == 0 && take_request()) {
		if (send_request(t, c) == 0)
			return;               /* the lost request's slot is busy again */
	}
	t->outstanding--;
}

/* Reads what the server answered, and sends the next request. */
static void on_readable(struct thread *t, struct connection *c)
{
	ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len - 1);

	if (n <= 0) {
		reconnect(t, c);
		return;
	}
	c->in_len += (size_t)n;
	c->in[c->in_len] = '\0';
	char *end = strstr(c->in, "\n\n");
	if (end == NULL) {
		if (c->in_len == sizeof(c->in) - 1)
			reconnect(t, c);
		return;
	}
	uint64_t us = (now_ns() - c->sent_at) / 1000;
	if (measuring) {
		t->stats.requests++;
		t->stats.histogram[bucket_of(us)]++;
		if (us > t->stats.max_us)
			t->stats.max_us = us;
		count_action(&t->stats, strncmp(c->in, "action=", 7) == 0 ? c->in + 7 : c->in, 1);
	}
	c->in_len = 0;
	if (!take_request()) {
		t->outstanding--;
		return;
	}
	if (send_request(t, c) < 0)
		reconnect(t, c);
}

static void *thread_main(void *arg)
{
	struct thread *t = arg;
	struct epoll_event events[64];

	for (int i = 0; i < t->count; i++) {
		struct connection *c = &t->conns[i];
		if (!take_request())
			break;
		t->outstanding++;
		if (send_request(t, c) < 0)
			reconnect(t, c);
	}
	/* until the time is up, or the -n budget is spent and answered */
	while (!stopping && t->outstanding > 0) {
		int n = epoll_wait(t->epfd, events, 64, 100);
		for (int i = 0; i < n; i++)
			on_readable(t, events[i].data.ptr);
	}
	return NULL;
}

/* ---------------------------------------------------------------- report */

static uint64_t percentile(const struct stats *s, double p)
{
	uint64_t want = (uint64_t)ceil((double)s->requests * p), seen = 0;

	for (int b = 0; b < BUCKETS; b++) {
		seen += s->histogram[b];
		if (seen >= want && s->histogram[b])
			return bucket_value(b);
	}
	return s->max_us;
}

static void merge(struct stats *total, const struct stats *s)
{
	total->requests += s->requests;
	total->errors += s->errors;
	total->reconnects += s->reconnects;
	if (s->max_us > total->max_us)
		total->max_us = s->max_us;
	for (int b = 0; b < BUCKETS; b++)
		total->histogram[b] += s->histogram[b];
	for (int i = 0; i < ACTIONS && s->action_names[i][0]; i++)
		count_action(total, s->action_names[i], s->action_counts[i]);
}

static void report(const struct stats *s, double elapsed)
{
	double rps = (double)s->requests / elapsed;

	if (opt.csv) {
		printf("connections,requests,seconds,rps,p50_us,p99_us,p999_us,max_us,errors,"
		       "reconnects\n%d,%llu,%.3f,%.0f,%llu,%llu,%llu,%llu,%llu,%llu\n",
		       opt.connections, (unsigned long long)s->requests, elapsed, rps,
		       (unsigned long long)percentile(s, 0.50), (unsigned long long)percentile(s, 0.99),
		       (unsigned long long)percentile(s, 0.999), (unsigned long long)s->max_us,
		       (unsigned long long)s->errors, (unsigned long long)s->reconnects);
		return;
	}
	printf("%llu requests in %.2f s over %d connections: %.0f requests/s\n",
	       (unsigned long long)s->requests, elapsed, opt.connections, rps);
	printf("latency (us): p50 %llu  p99 %llu  p999 %llu  max %llu\n",
	       (unsigned long long)percentile(s, 0.50), (unsigned long long)percentile(s, 0.99),
	       (unsigned long long)percentile(s, 0.999), (unsigned long long)s->max_us);
	printf("answers:");
	for (int i = 0; i < ACTIONS && s->action_names[i][0]; i++)
		printf(" %s %llu", s->action_names[i], (unsigned long long)s->action_counts[i]);
	printf("\nerrors %llu, reconnects %llu\n", (unsigned long long)s->errors,
	       (unsigned long long)s->reconnects);
}

/* ------------------------------------------------------------------ main */

static void start_threads(struct thread *threads)
{
	for (int t = 0, next = 0; t < opt.threads; t++) {
		struct thread *th = &threads[t];
		th->count = opt.connections / opt.threads + (t < opt.connections % opt.threads);
		th->conns = calloc((size_t)th->count, sizeof(*th->conns));
		th->epfd = epoll_create1(EPOLL_CLOEXEC);
		for (int i = 0; i < th->count; i++, next++) {
			struct connection *c = &th->conns[i];
			struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
			c->rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(next + 1);
			c->fd = open_connection();
			if (c->fd < 0) {
				fprintf(stderr, "tallyd-bench: cannot connect to %s%s%s: %s\n",
					opt.socket_path ? opt.socket_path : opt.host,
					opt.socket_path ? "" : ":", opt.socket_path ? "" : opt.port,
					strerror(errno));
				exit(1);
			}
			epoll_ctl(th->epfd, EPOLL_CTL_ADD, c->fd, &ev);
		}
	}
	for (int t = 0; t < opt.threads; t++)
		pthread_create(&threads[t].id, NULL, thread_main, &threads[t]);
}

/* Sleeps in the main thread (the clients run in their own threads). */
static void pause_seconds(double seconds)
{
	struct timespec ts = { .tv_sec = (time_t)seconds,
			       .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	struct thread *threads;
	struct stats total = { 0 };

	parse_options(argc, argv);
	remaining_requests = opt.requests;
	measuring = opt.warmup <= 0;
	threads = calloc((size_t)opt.threads, sizeof(*threads));
	start_threads(threads);
	if (opt.warmup > 0) {
		pause_seconds(opt.warmup);
		measuring = 1;
	}
	uint64_t started = now_ns();
	if (opt.requests <= 0) {
		pause_seconds(opt.seconds);
		stopping = 1;
	}
	for (int t = 0; t < opt.threads; t++) {
		pthread_join(threads[t].id, NULL);
		merge(&total, &threads[t].stats);
	}
	report(&total, (double)(now_ns() - started) / 1e9);
	return total.requests > 0 ? 0 : 1;
}
