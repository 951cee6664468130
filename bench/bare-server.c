/*
 * bench/bare-server.c: the machine's ceiling for the policy protocol.
 *
 *   bench/bare-server -p PORT [-t THREADS]
 *
 * Answers "action=DUNNO\n\n" to every request without parsing it: it only
 * counts blank lines ("\n\n", also split across reads).  THREADS threads
 * (default: the number of CPUs) each run their own level-triggered epoll
 * loop and accept from the shared listening socket; a connection stays on
 * the thread that accepted it.  No stats, no logging: the least work a
 * server can do per request, to compare tallyd with.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_fd;

/* Per connection: whether the last byte seen was a newline. */
struct peer {
	int fd;
	bool newline;
};

static void serve(struct peer *p)
{
	static const char answer[] = "action=DUNNO\n\n";
	char in[16384], out[sizeof(answer) * 64];
	ssize_t n = read(p->fd, in, sizeof(in));

	if (n <= 0) {
		close(p->fd);
		free(p);
		return;
	}
	size_t answers = 0, len = 0;
	for (ssize_t i = 0; i < n; i++) {
		bool nl = in[i] == '\n';
		if (nl && p->newline)
			answers++;
		p->newline = nl;
	}
	for (size_t i = 0; i < answers && len + sizeof(answer) < sizeof(out); i++) {
		memcpy(out + len, answer, sizeof(answer) - 1);
		len += sizeof(answer) - 1;
	}
	if (len > 0 && write(p->fd, out, len) < 0) {
		close(p->fd);
		free(p);
	}
}

static void *loop(void *unused)
{
	int epfd = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL }, events[64];

	(void)unused;
	epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev);
	for (;;) {
		int n = epoll_wait(epfd, events, 64, -1);
		for (int i = 0; i < n; i++) {
			if (events[i].data.ptr != NULL) {
				serve(events[i].data.ptr);
				continue;
			}
			int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK);
			if (fd < 0)
				continue;
			struct peer *p = calloc(1, sizeof(*p));
			p->fd = fd;
			struct epoll_event pe = { .events = EPOLLIN, .data.ptr = p };
			epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &pe);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int port = 0, threads = (int)sysconf(_SC_NPROCESSORS_ONLN), ch, one = 1;
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	while ((ch = getopt(argc, argv, "p:t:")) != -1) {
		if (ch == 'p')
			port = atoi(optarg);
		else if (ch == 't')
			threads = atoi(optarg);
		else {
			fprintf(stderr, "usage: bare-server -p PORT [-t THREADS]\n");
			return 2;
		}
	}
	addr.sin_port = htons((uint16_t)port);
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (port <= 0 || bind(listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(listen_fd, SOMAXCONN) < 0) {
		fprintf(stderr, "bare-server: cannot listen on port %d: %s\n", port, strerror(errno));
		return 1;
	}
	pthread_t id;
	for (int i = 1; i < threads; i++)
		pthread_create(&id, NULL, loop, NULL);
	loop(NULL);
	return 0;
}
