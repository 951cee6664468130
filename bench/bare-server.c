/*
 * bare-server.c: the machine's ceiling for the policy protocol.  It answers
 * "action=DUNNO\n\n" to every request without parsing it, so a benchmark
 * run can say how close tallyd comes to what the kernel and the load
 * generator allow on the same cores.
 *
 * The main thread accepts on 127.0.0.1:PORT and deals each connection to
 * the next worker's epoll set (epoll_ctl is safe across threads); from then
 * on only that worker touches the connection.  Nothing else is shared.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define READ_SIZE 16384
#define ANSWER "action=DUNNO\n\n"
#define ANSWER_LEN (sizeof(ANSWER) - 1)
#define ANSWERS_PER_WRITE 64

struct conn {
	int fd;
	bool after_newline;   /* the last byte read was '\n': a request may end next */
	bool want_write;
	size_t owed;          /* answer bytes not yet written */
};

struct worker {
	pthread_t thread;
	int epoll_fd;
};

/* ANSWERS_PER_WRITE answers back to back, filled in once at start. */
static char answers[ANSWERS_PER_WRITE * ANSWER_LEN];

static void fail(const char *what)
{
	fprintf(stderr, "bare-server: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void conn_close(struct conn *c)
{
	close(c->fd);
	free(c);
}

/* Counts the requests that end in data[0..len): an empty line, that is a
 * '\n' right after a '\n', also when the two arrive in different reads. */
static size_t conn_count_requests(struct conn *c, const char *data, size_t len)
{
	size_t requests = 0;
	const char *p = data, *end = data + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL) {
			c->after_newline = false;
			break;
		}
		if (c->after_newline && nl == p) {
			requests++;
			c->after_newline = false;
		} else {
			c->after_newline = true;
		}
		p = nl + 1;
	}
	return requests;
}

/* Writes what is owed; the answers all look alike, so the debt is a byte
 * count into the repeated answer.  False when the connection broke. */
static bool conn_pay(struct conn *c, int epoll_fd)
{
	while (c->owed > 0) {
		size_t skip = (ANSWER_LEN - c->owed % ANSWER_LEN) % ANSWER_LEN;
		size_t len = c->owed < sizeof(answers) - skip ? c->owed : sizeof(answers) - skip;
		ssize_t n = send(c->fd, answers + skip, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		c->owed -= (size_t)n;
	}
	bool want_write = c->owed > 0;
	if (want_write != c->want_write) {
		struct epoll_event ev = { .events = EPOLLIN | (want_write ? EPOLLOUT : 0),
					  .data.ptr = c };
		epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
		c->want_write = want_write;
	}
	return true;
}

/* One read per event; level-triggered epoll comes back if more is waiting. */
static bool conn_serve(struct conn *c, int epoll_fd, char *data)
{
	ssize_t n = recv(c->fd, data, READ_SIZE, 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n <= 0)
		return false;
	c->owed += conn_count_requests(c, data, (size_t)n) * ANSWER_LEN;
	return conn_pay(c, epoll_fd);
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct epoll_event events[MAX_EVENTS];
	char *data = malloc(READ_SIZE);

	if (data == NULL)
		fail("malloc");
	for (;;) {
		int n = epoll_wait(w->epoll_fd, events, MAX_EVENTS, -1);
		if (n < 0 && errno != EINTR)
			fail("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct conn *c = events[i].data.ptr;
			bool alive = true;

			if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				alive = conn_serve(c, w->epoll_fd, data);
			if (alive && (events[i].events & EPOLLOUT))
				alive = conn_pay(c, w->epoll_fd);
			if (!alive)
				conn_close(c);
		}
	}
	return NULL;
}

static int listen_on(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		fail("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		fail("bind");
	if (listen(fd, 4096) < 0)
		fail("listen");
	return fd;
}

/* Hands connections out in turn, so each worker gets its share even when
 * a benchmark opens all of them in one burst. */
static void accept_forever(int listen_fd, struct worker *workers, int count)
{
	for (int next = 0;; next = (next + 1) % count) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int one = 1;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
				continue;
			fail("accept");
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct conn *c = calloc(1, sizeof(*c));
		if (c == NULL)
			fail("calloc");
		c->fd = fd;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		if (epoll_ctl(workers[next].epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
			fail("epoll_ctl");
	}
}

static int number(const char *text, int min, int max)
{
	char *end;
	long value = strtol(text, &end, 10);

	if (end == text || *end != '\0' || value < min || value > max) {
		fprintf(stderr, "bare-server: expected a number from %d to %d, got '%s'\n", min,
			max, text);
		exit(1);
	}
	return (int)value;
}

int main(int argc, char **argv)
{
	int port = 12399, threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
	struct rlimit limit;
	int ch;

	while ((ch = getopt(argc, argv, "p:t:h")) != -1) {
		switch (ch) {
		case 'p': port = number(optarg, 1, 65535); break;
		case 't': threads = number(optarg, 1, 1024); break;
		default:
			fprintf(ch == 'h' ? stdout : stderr,
				"usage: bare-server [-p port] [-t threads]\n"
				"Answers action=DUNNO to every policy request on 127.0.0.1:port\n"
				"(default 12399) with one epoll loop per thread (default: one per CPU).\n");
			exit(ch == 'h' ? 0 : 1);
		}
	}
	if (threads < 1)
		threads = 1;
	if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
		limit.rlim_cur = limit.rlim_max;   /* one descriptor per connection */
		setrlimit(RLIMIT_NOFILE, &limit);
	}
	for (size_t i = 0; i < ANSWERS_PER_WRITE; i++)
		memcpy(answers + i * ANSWER_LEN, ANSWER, ANSWER_LEN);

	int listen_fd = listen_on(port);
	struct worker *workers = calloc((size_t)threads, sizeof(*workers));
	if (workers == NULL)
		fail("calloc");
	for (int i = 0; i < threads; i++) {
		workers[i].epoll_fd = epoll_create1(EPOLL_CLOEXEC);
		if (workers[i].epoll_fd < 0)
			fail("epoll_create1");
		errno = pthread_create(&workers[i].thread, NULL, worker_run, &workers[i]);
		if (errno != 0)
			fail("pthread_create");
	}
	accept_forever(listen_fd, workers, threads);
	return 0;
}
