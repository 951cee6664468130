/*
 * connection.c: connection objects and the table of open connections (see
 * connection.h for who holds what).  table_lock guards the list links and
 * `count`; it is taken once when a connection opens, once when it closes, and
 * once a second by the sweep, never per request.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connection.h"
#include "log.h"

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct connection *table;       /* guarded by table_lock */
static int count;                      /* guarded by table_lock */

struct connection *connection_open(int fd, int local_port, const char *local_path,
				   const char *peer, int max_connections)
{
	pthread_mutex_lock(&table_lock);
	if (count >= max_connections) {
		pthread_mutex_unlock(&table_lock);
		return NULL;
	}
	struct connection *c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->local_port = local_port;
	c->local_path = local_path ? xstrdup(local_path) : NULL;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	buf_init(&c->in);
	buf_init(&c->out);
	session_init(&c->session);
	chain_start(&c->chain);
	atomic_init(&c->deadline, INT64_MAX);
	atomic_init(&c->expired, false);
	c->next = table;
	if (table)
		table->prev = c;
	table = c;
	count++;
	pthread_mutex_unlock(&table_lock);
	return c;
}

void connection_close(struct connection *c)
{
	pthread_mutex_lock(&table_lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		table = c->next;
	if (c->next)
		c->next->prev = c->prev;
	count--;
	close(c->fd);
	pthread_mutex_unlock(&table_lock);
	buf_free(&c->in);
	buf_free(&c->out);
	session_free(&c->session);
	free(c->local_path);
	free(c);
}

void connection_sweep(int64_t now)
{
	pthread_mutex_lock(&table_lock);
	for (struct connection *c = table; c; c = c->next) {
		if (atomic_load(&c->deadline) > now)
			continue;
		/* nobody holds it: mark it, and wake a worker with EOF to close it */
		atomic_store(&c->deadline, INT64_MAX);
		atomic_store(&c->expired, true);
		shutdown(c->fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&table_lock);
}

int connection_count(void)
{
	pthread_mutex_lock(&table_lock);
	int n = count;
	pthread_mutex_unlock(&table_lock);
	return n;
}

void connection_for_each(void (*fn)(struct connection *c, void *arg), void *arg)
{
	struct connection *c, *next;

	pthread_mutex_lock(&table_lock);
	c = table;
	pthread_mutex_unlock(&table_lock);
	for (; c; c = next) {
		next = c->next;
		fn(c, arg);
	}
}
