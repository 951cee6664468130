/*
 * listener.c: listening sockets and the acceptor thread (see listener.h).
 *
 * `listeners` is filled by listener_open() in the main thread before the
 * acceptor starts, read by the acceptor, and replaced (listener_reload) or
 * freed (listener_stop) only while the acceptor is stopped and joined; a
 * reload comes from the main thread or the admin thread, one at a time
 * (main.c's reload_lock).  So the array needs no lock of its own.
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "connection.h"
#include "listener.h"
#include "live.h"
#include "log.h"
#include "park.h"
#include "stats.h"
#include "tables.h"
#include "workers.h"

struct listener {
	int fd;
	int port;                  /* TCP port, 0 for unix */
	char *path;                /* unix socket path, or NULL */
	char *spec;
	int64_t paused_until;      /* clock_ms(); out of the epoll set until then (acceptor's) */
};

/* Out of file descriptors, a listener leaves the epoll set for a while:
 * its clients wait in the backlog instead of the acceptor spinning. */
#define PAUSE_MS 250

static struct listener *listeners;
static size_t listener_count;
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

static void close_listener(struct listener *l)
{
	close(l->fd);
	if (l->path)
		unlink(l->path);
	free(l->path);
	free(l->spec);
}

/* The index in old[] of the listener for `spec`, or -1. */
static long find_listener(const struct listener *old, size_t old_count, const char *spec)
{
	for (size_t k = 0; k < old_count; k++) {
		if (old[k].spec != NULL && strcmp(old[k].spec, spec) == 0)
			return (long)k;
	}
	return -1;
}

/* The listeners `config` asks for: existing sockets are moved over from
 * old[] (their spec is cleared there), missing ones are bound.  NULL when
 * one cannot be bound; then old[] is as it was. */
static struct listener *bind_all(const struct config *config, struct listener *old,
				 size_t old_count)
{
	size_t count = config->listen_count;
	struct listener *next = xcalloc(count + 1, sizeof(*next));
	long *from = xcalloc(count + 1, sizeof(*from));
	size_t i;

	for (i = 0; i < count; i++) {
		const struct listen_address *a = &config->listen[i];
		from[i] = find_listener(old, old_count, a->spec);
		if (from[i] >= 0) {
			next[i] = old[from[i]];
			old[from[i]].spec = NULL;
		} else if (bind_one(a, &next[i]) < 0) {
			break;
		}
	}
	if (i < count) {                /* undo: give back or close */
		while (i-- > 0) {
			if (from[i] >= 0)
				old[from[i]] = next[i];
			else
				close_listener(&next[i]);
		}
		free(next);
		next = NULL;
	}
	free(from);
	return next;
}

int listener_open(const struct config *config)
{
	listeners = bind_all(config, NULL, 0);
	if (listeners == NULL)
		return -1;
	listener_count = config->listen_count;
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

static void warn_full(int max_connections)
{
	static _Atomic long long last;

	stats_bump(&stats_mine()->refused, 1);
	if (log_ratelimit(&last, 10))
		log_warning("max_connections (%d) reached: refusing new connections",
			    max_connections);
}

static void pause_listener(struct listener *l, int err)
{
	static _Atomic long long last;
	struct rlimit files = { 0 };

	struct epoll_event ev = { .events = 0, .data.ptr = l };
	epoll_ctl(epoll_fd, EPOLL_CTL_MOD, l->fd, &ev);
	l->paused_until = clock_ms() + PAUSE_MS;
	getrlimit(RLIMIT_NOFILE, &files);
	if (log_ratelimit(&last, 10))
		log_warning("cannot accept on %s: %s (open files limit %llu); new connections "
			    "wait in the backlog until descriptors are free", l->spec,
			    strerror(err), (unsigned long long)files.rlim_cur);
}

/* Puts paused listeners whose pause is over back; returns the ms until the
 * next one is due (at most `wait`). */
static int resume_listeners(int64_t now, int wait)
{
	for (size_t i = 0; i < listener_count; i++) {
		struct listener *l = &listeners[i];
		if (l->paused_until == 0)
			continue;
		if (now >= l->paused_until) {
			struct epoll_event ev = { .events = EPOLLIN, .data.ptr = l };
			epoll_ctl(epoll_fd, EPOLL_CTL_MOD, l->fd, &ev);
			l->paused_until = 0;
		} else if (l->paused_until - now < wait) {
			wait = (int)(l->paused_until - now);
		}
	}
	return wait;
}

static void accept_all(struct listener *l, const struct config *config)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				pause_listener(l, errno);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
				   errno != ECONNABORTED) {
				log_error("accept on %s failed: %s", l->spec, strerror(errno));
			}
			return;
		}
		char peer[64];
		describe_peer(&ss, l, peer, sizeof(peer));
		struct connection *c = connection_open(fd, l->port, l->path, peer,
						       config->max_connections);
		if (c == NULL) {
			warn_full(config->max_connections);
			close(fd);
			continue;
		}
		stats_bump(&stats_mine()->connections, 1);
		log_debug("%s: connected to %s", peer, l->spec);
		workers_add(c, config->keepalive_timeout);
	}
}

/* Marks the wait timer's event in the acceptor's epoll set. */
static int wait_timer;

/* Once a second: connection timeouts, and the periods now live. */
static void tick(int64_t now)
{
	connection_sweep(now);
	periods_tick(time(NULL));
}

static void *acceptor_main(void *arg)
{
	struct epoll_event events[16];
	int64_t last_tick = 0;

	stats_bind(*(int *)arg);
	for (;;) {
		int n = epoll_wait(epoll_fd, events, 16, resume_listeners(clock_ms(), 1000));
		if (n < 0 && errno != EINTR) {
			log_error("acceptor: epoll_wait failed: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			if (events[i].data.ptr == NULL)
				return NULL;
			if (events[i].data.ptr == &wait_timer) {
				park_expire();
				continue;
			}
			accept_all(events[i].data.ptr, live_enter());
			live_leave();
		}
		int64_t now = clock_seconds();
		if (now != last_tick) {
			tick(now);
			last_tick = now;
		}
	}
	return NULL;
}

static int acceptor_slot;

static int start_acceptor(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (epoll_fd < 0 || stop_fd < 0 || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, stop_fd, &ev) < 0)
		goto fail;
	for (size_t i = 0; i < listener_count; i++) {
		ev.data.ptr = &listeners[i];
		listeners[i].paused_until = 0;
		if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listeners[i].fd, &ev) < 0)
			goto fail;
	}
	ev.data.ptr = &wait_timer;
	if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, park_timer_fd(), &ev) < 0)
		goto fail;
	int rc = pthread_create(&acceptor, NULL, acceptor_main, &acceptor_slot);
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

static void stop_acceptor(void)
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
}

int listener_start(int stats_slot)
{
	acceptor_slot = stats_slot;
	return start_acceptor();
}

/* The acceptor is stopped first: bind_all() moves listeners (and clears
 * their spec) that it reads. */
int listener_reload(const struct config *config)
{
	stop_acceptor();               /* new connections wait in the backlog */
	struct listener *next = bind_all(config, listeners, listener_count);

	if (next == NULL) {
		start_acceptor();          /* on the listeners it had */
		return -1;
	}
	for (size_t i = 0; i < listener_count; i++) {
		if (listeners[i].spec != NULL) {
			log_notice("no longer listening on %s", listeners[i].spec);
			close_listener(&listeners[i]);
		}
	}
	free(listeners);
	listeners = next;
	listener_count = config->listen_count;
	return start_acceptor();
}

void listener_stop(void)
{
	stop_acceptor();
	for (size_t i = 0; i < listener_count; i++)
		close_listener(&listeners[i]);
	free(listeners);
	listeners = NULL;
	listener_count = 0;
}
