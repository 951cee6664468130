/*
 * listener.c: listening sockets and the acceptor thread (see listener.h).
 *
 * `listeners` is filled by listener_open() in the main thread before the
 * acceptor starts, read by the acceptor, and freed by listener_stop() after
 * it has been joined; nothing else touches it, so it needs no lock.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "connection.h"
#include "listener.h"
#include "log.h"
#include "workers.h"

struct listener {
	int fd;
	int port;                  /* TCP port, 0 for unix */
	char *path;                /* unix socket path, or NULL */
	char *spec;
};

static struct listener *listeners;
static size_t listener_count;
static int max_connections;
static int epoll_fd = -1;            /* the listeners and stop_fd */
static int stop_fd = -1;
static pthread_t acceptor;
static bool acceptor_running;

static int bind_one(const struct listen_address *l, struct listener *out)
{
	int family = l->addr.ss_family, one = 1;
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		goto fail;
	if (family == AF_UNIX) {
		struct stat st;
		if (lstat(l->path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(l->path);        /* left behind by an earlier run */
	} else {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (bind(fd, (const struct sockaddr *)&l->addr, l->addr_len) < 0 ||
	    listen(fd, SOMAXCONN) < 0)
		goto fail;
	/* Postfix's smtpd runs as another user: it must be able to connect */
	if (family == AF_UNIX && chmod(l->path, 0666) < 0)
		goto fail;
	out->fd = fd;
	out->port = l->port;
	out->path = l->path ? xstrdup(l->path) : NULL;
	out->spec = xstrdup(l->spec);
	return 0;
fail:
	log_error("cannot listen on %s: %s", l->spec, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

int listener_open(const struct config *config)
{
	listeners = xcalloc(config->listen_count, sizeof(*listeners));
	for (size_t i = 0; i < config->listen_count; i++) {
		if (bind_one(&config->listen[i], &listeners[i]) < 0) {
			listener_count = i;
			listener_stop();
			return -1;
		}
		listener_count = i + 1;
		if (config_find_vhost(config, config->listen[i].port, config->listen[i].path) == NULL)
			log_warning("listen %s: no virtual host serves it; its requests are "
				    "answered dunno", config->listen[i].spec);
	}
	return 0;
}

static void describe_peer(const struct sockaddr_storage *ss, const struct listener *l,
			  char *out, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(out, size, "%s:%u", ip, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(out, size, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(out, size, "unix:%s", l->path ? l->path : "?");
	}
}

static void warn_full(void)
{
	static _Atomic long long last;

	if (log_ratelimit(&last, 10))
		log_warning("max_connections (%d) reached: refusing new connections",
			    max_connections);
}

static void accept_all(struct listener *l)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				log_warning("cannot accept on %s: %s", l->spec, strerror(errno));
				nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
				   errno != ECONNABORTED) {
				log_error("accept on %s failed: %s", l->spec, strerror(errno));
			}
			return;
		}
		char peer[64];
		describe_peer(&ss, l, peer, sizeof(peer));
		struct connection *c = connection_open(fd, l->port, l->path, peer, max_connections);
		if (c == NULL) {
			warn_full();
			close(fd);
			continue;
		}
		log_debug("%s: connected to %s", peer, l->spec);
		workers_add(c);
	}
}

static void *acceptor_main(void *unused)
{
	struct epoll_event events[16];
	int64_t last_sweep = connection_now();

	for (;;) {
		int n = epoll_wait(epoll_fd, events, 16, 1000);
		if (n < 0 && errno != EINTR) {
			log_error("acceptor: epoll_wait failed: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			if (events[i].data.ptr == NULL)
				goto out;
			accept_all(events[i].data.ptr);
		}
		int64_t now = connection_now();
		if (now != last_sweep) {
			connection_sweep(now);
			last_sweep = now;
		}
	}
out:
	(void)unused;
	return NULL;
}

int listener_start(const struct config *config)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	max_connections = config->max_connections;
	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (epoll_fd < 0 || stop_fd < 0 || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, stop_fd, &ev) < 0)
		goto fail;
	for (size_t i = 0; i < listener_count; i++) {
		ev.data.ptr = &listeners[i];
		if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listeners[i].fd, &ev) < 0)
			goto fail;
	}
	int rc = pthread_create(&acceptor, NULL, acceptor_main, NULL);
	if (rc != 0) {
		errno = rc;
		goto fail;
	}
	acceptor_running = true;
	return 0;
fail:
	log_error("cannot start the acceptor: %s", strerror(errno));
	return -1;
}

void listener_stop(void)
{
	uint64_t one = 1;

	if (acceptor_running) {
		if (write(stop_fd, &one, sizeof(one)) != sizeof(one))
			log_error("cannot stop the acceptor: %s", strerror(errno));
		pthread_join(acceptor, NULL);
		acceptor_running = false;
	}
	if (stop_fd >= 0)
		close(stop_fd);
	if (epoll_fd >= 0)
		close(epoll_fd);
	stop_fd = epoll_fd = -1;
	for (size_t i = 0; i < listener_count; i++) {
		close(listeners[i].fd);
		if (listeners[i].path)
			unlink(listeners[i].path);
		free(listeners[i].path);
		free(listeners[i].spec);
	}
	free(listeners);
	listeners = NULL;
	listener_count = 0;
}
