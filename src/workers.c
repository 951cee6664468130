/*
 * workers.c: the worker threads, their shared epoll set, and serving a
 * connection (see workers.h).
 *
 * Each worker owns its struct worker (request attribute array); a
 * connection is touched only by the worker that took its one-shot event.
 * `epoll_fd` and `stop_fd` are set before the threads start and never change.
 * Each event is served with the config in force when it began (live.h);
 * a request that waits for the database keeps the config it began with.
 * A request whose plugin waits stops the connection where it is: answers
 * before it are written, nothing after it is read, and the connection is
 * parked (park.h) until the loader wakes it or its wait is over; then a
 * worker runs the chain again from the plugin that waited.
 * A worker takes up to EVENTS_PER_TURN connections from one epoll_wait():
 * it answers all of them, waits once for the journal to hold the
 * increments behind all those answers, and only then sends them.
 * The stop eventfd is registered level-triggered (not one-shot), so once it
 * is written every worker sees it.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "chain.h"
#include "clock.h"
#include "journal.h"
#include "log.h"
#include "policy.h"
#include "live.h"
#include "park.h"
#include "stats.h"
#include "workers.h"

enum serve_result { ANSWERED, KEEP_READING, KEEP_WRITING, PARK, CLOSE };

struct worker {
	pthread_t thread;
	int slot;                  /* stats slot, also its live.h use mark */
	bool draining;             /* shutting down: nothing waits any more */
	const struct config *config;   /* in force for the current event */
	uint64_t generation;       /* config's: a later config may reuse its address */
	struct policy_limits limits;
	struct request request;    /* attrs: room for attrs_cap attributes */
	size_t attrs_cap;
};

static int epoll_fd = -1;
static int stop_fd = -1;
static struct worker *workers;
static int worker_count;

/* Bytes read per turn before answering: bounds what one client can make a
 * worker do before the others get a turn. */
#define READ_CHUNK 16384
#define READ_LIMIT (256 * 1024)
/* Connections a worker takes from epoll at once: their answers share one
 * journal wait (journal.h), so one write() covers them all. */
#define EVENTS_PER_TURN 8

static void worker_init(struct worker *w, int slot)
{
	memset(w, 0, sizeof(*w));
	w->slot = slot;
}

/* Room for the attributes of requests under `config`'s limits. */
static void fit_limits(struct worker *w, const struct config *config)
{
	w->limits.max_request_size = (size_t)config->max_request_size;
	w->limits.max_attributes = (size_t)config->max_attributes;
	if (w->attrs_cap < w->limits.max_attributes) {
		w->attrs_cap = w->limits.max_attributes;
		w->request.attrs = xrealloc(w->request.attrs, w->attrs_cap * sizeof(struct attribute));
	}
}

/* Takes the config in force for one event. */
static void worker_enter(struct worker *w)
{
	const struct config *config = live_enter();

	if (config != w->config || config->generation != w->generation) {
		w->config = config;
		w->generation = config->generation;
		fit_limits(w, config);
	}
}

static void worker_free(struct worker *w)
{
	free(w->request.attrs);
}

/* Writes what is pending; 0, or -1 when the connection is broken. */
static int write_pending(struct connection *c)
{
	while (buf_size(&c->out) > 0) {
		ssize_t n = write(c->fd, buf_head(&c->out), buf_size(&c->out));
		if (n > 0) {
			buf_consume(&c->out, (size_t)n);
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return 0;
		} else {
			log_debug("%s: write failed: %s", c->peer, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Reads what the socket has (up to READ_LIMIT); -1 on a broken connection. */
static int read_available(struct connection *c, bool *eof)
{
	size_t total = 0;

	while (total < READ_LIMIT) {
		buf_reserve(&c->in, READ_CHUNK);
		size_t room = c->in.cap - c->in.len - 1;
		ssize_t n = read(c->fd, c->in.data + c->in.len, room);
		if (n > 0) {
			c->in.len += (size_t)n;
			total += (size_t)n;
			if ((size_t)n < room)
				return 0;
		} else if (n == 0) {
			*eof = true;
			return 0;
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			return 0;
		} else {
			log_debug("%s: read failed: %s", c->peer, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* The request at the head of c->in waits for the database: it keeps the
 * config it began with, and its wait ends database.wait from now. */
static void begin_wait(struct worker *w, struct connection *c)
{
	if (c->held_config == NULL) {
		c->held_config = w->config;
		live_hold(c->held_config);
	}
	if (c->wait_deadline == 0) {
		c->wait_deadline = clock_ms() + (int64_t)(c->held_config->database.wait * 1000);
		stats_bump(&stats_mine()->waits, 1);
	}
}

/* The head request is answered: the connection is ready for the next. */
static void end_request(struct connection *c, size_t used)
{
	if (c->held_config) {
		live_release(c->held_config);
		c->held_config = NULL;
	}
	if (c->wait_expired)
		stats_bump(&stats_mine()->waits_expired, 1);
	c->wait_deadline = 0;
	c->wait_expired = false;
	chain_start(&c->chain);
	session_clear(&c->session);
	buf_consume(&c->in, used);
}

/* Answers every complete request in c->in, in order, until one waits for
 * the database (*waits) or there are no more.  False after a malformed
 * request. */
static bool answer_requests(struct worker *w, struct connection *c, bool *waits)
{
	struct stats_slot *stats = stats_mine();
	enum policy_status status;
	const char *error = NULL;
	size_t used;

	*waits = false;
	for (;;) {
		const struct config *config = c->held_config ? c->held_config : w->config;
		if (config != w->config)
			fit_limits(w, config);   /* the waiting request's own limits */
		status = policy_parse(&c->parser, &w->limits, buf_head(&c->in), buf_size(&c->in),
				      &w->request, &used, &error);
		if (config != w->config)
			fit_limits(w, w->config);
		if (status != POLICY_REQUEST)
			break;
		if (c->wait_deadline != 0 && clock_ms() >= c->wait_deadline)
			c->wait_expired = true;   /* woken, but too late to wait again */
		c->chain.may_wait = !w->draining && !c->wait_expired;
		const struct vhost *vhost = config_find_vhost(config, c->local_port, c->local_path);
		const char *action = chain_run(vhost, &w->request, &c->session, &c->chain);
		if (action == NULL) {
			begin_wait(w, c);
			*waits = true;
			return true;
		}
		policy_write_answer(&c->out, action);
		c->requests++;
		stats_bump(&stats->requests, 1);
		stats_bump(&stats->answers[stats_classify(action)], 1);
		log_debug("%s: request %llu answered %s", c->peer,
			  (unsigned long long)c->requests, action);
		end_request(c, used);
	}
	if (status == POLICY_MALFORMED) {
		stats_bump(&stats->malformed, 1);
		log_warning("%s: malformed request after %llu good ones: %s; closing the connection",
			    c->peer, (unsigned long long)c->requests, error);
		return false;
	}
	return true;
}

static void log_eof(const struct worker *w, const struct connection *c)
{
	bool partial = buf_size(&c->in) > 0;

	if (atomic_load(&c->expired))
		stats_bump(&stats_mine()->timeouts, 1);
	if (atomic_load(&c->expired) && partial)
		log_warning("%s: request not complete after %d s (request_timeout); closing",
			    c->peer, w->config->request_timeout);
	else if (atomic_load(&c->expired))
		log_debug("%s: idle for %d s (keepalive_timeout); closing", c->peer,
			  w->config->keepalive_timeout);
	else if (partial)
		log_info("%s: client closed the connection in the middle of a request", c->peer);
	else
		log_debug("%s: client closed the connection after %llu requests", c->peer,
			  (unsigned long long)c->requests);
}

/* What serve_begin() left for serve_end(). */
struct turn {
	struct connection *c;
	enum serve_result early;   /* ANSWERED, or the result without answers */
	bool eof;
	bool well_formed;
	bool waits;
};

/* Reads what the client sent and answers it into c->out, not sent yet:
 * the increments behind the answers go to the journal first. */
static void serve_begin(struct worker *w, struct turn *t)
{
	struct connection *c = t->c;

	t->eof = false;
	t->early = ANSWERED;
	if (write_pending(c) < 0) {
		t->early = CLOSE;
	} else if (buf_size(&c->out) > 0) {
		t->early = KEEP_WRITING;      /* the client reads slowly: do not read more */
	} else if (c->held_config == NULL && read_available(c, &t->eof) < 0) {
		t->early = CLOSE;             /* a request that waited is answered first */
	} else {
		t->well_formed = answer_requests(w, c, &t->waits);
	}
}

/* Sends the answers, once their increments are journaled. */
static enum serve_result serve_end(struct worker *w, struct turn *t)
{
	struct connection *c = t->c;

	if (t->early != ANSWERED)
		return t->early;
	if (write_pending(c) < 0 || !t->well_formed)
		return CLOSE;
	if (t->waits)
		return PARK;
	if (t->eof) {
		log_eof(w, c);
		return CLOSE;
	}
	buf_compact(&c->in, READ_CHUNK * 2);
	return buf_size(&c->out) > 0 ? KEEP_WRITING : KEEP_READING;
}

/* Serves one connection on its own. */
static enum serve_result serve(struct worker *w, struct connection *c)
{
	struct turn t = { .c = c };

	serve_begin(w, &t);
	journal_wait();
	return serve_end(w, &t);
}

/* The sweep's deadline for `seconds` from `since`: both are whole seconds
 * of the coarse clock, so one more keeps a connection from getting less
 * than its timeout (it gets at most a second more). */
static int64_t deadline_after(int64_t since, int seconds)
{
	return since + seconds + 1;
}

static void set_deadline(const struct worker *w, struct connection *c)
{
	int64_t now = clock_seconds();

	if (buf_size(&c->in) == 0) {
		c->request_started = 0;
		atomic_store(&c->deadline, deadline_after(now, w->config->keepalive_timeout));
		return;
	}
	if (c->request_started == 0)
		c->request_started = now;
	atomic_store(&c->deadline, deadline_after(c->request_started, w->config->request_timeout));
}

/* Gives the connection back to epoll: from here on another worker may own it. */
static int arm(struct connection *c, int op, uint32_t events)
{
	struct epoll_event ev = { .events = events | EPOLLONESHOT | EPOLLRDHUP, .data.ptr = c };
	int fd = c->fd;                       /* c is not ours after the release */

	atomic_fetch_add_explicit(&c->handoffs, 1, memory_order_release);
	return epoll_ctl(epoll_fd, op, fd, &ev);
}

/* Takes a connection out of epoll (see arm()). */
static void take(struct connection *c)
{
	(void)atomic_load_explicit(&c->handoffs, memory_order_acquire);
	atomic_store(&c->deadline, INT64_MAX);
}

/* Closes a connection this thread holds, with what its request held. */
static void close_connection(struct connection *c)
{
	if (c->held_config)
		live_release(c->held_config);
	connection_close(c);
}

void workers_add(struct connection *c, int keepalive_timeout)
{
	atomic_store(&c->deadline, deadline_after(clock_seconds(), keepalive_timeout));
	if (arm(c, EPOLL_CTL_ADD, EPOLLIN) < 0) {
		log_error("%s: cannot add the connection to the worker pool: %s", c->peer,
			  strerror(errno));
		connection_close(c);
	}
}

/* Hands a parked connection back to the workers (park.h): writable at
 * once, so a worker takes it right away. */
static void resume(struct connection *c)
{
	if (arm(c, EPOLL_CTL_MOD, EPOLLOUT) < 0) {
		log_error("%s: cannot resume the connection: %s", c->peer, strerror(errno));
		close_connection(c);
	}
}

/* After serve_end(): the connection goes back to epoll, is parked, or is
 * closed; either way it is not this thread's any more. */
static void serve_finish(struct worker *w, struct connection *c, enum serve_result r)
{
	while (r == PARK && !park(c, c->chain.ticket, c->wait_deadline))
		r = serve(w, c);              /* its value came already: go on */
	if (r == PARK)
		return;
	if (r == CLOSE) {
		close_connection(c);
		return;
	}
	set_deadline(w, c);
	if (arm(c, EPOLL_CTL_MOD, r == KEEP_WRITING ? EPOLLOUT : EPOLLIN) < 0) {
		log_error("%s: cannot re-arm the connection: %s", c->peer, strerror(errno));
		close_connection(c);
	}
}

/* Serves the connections of one epoll_wait() together: all are answered,
 * then one journal wait covers the increments behind all the answers,
 * then the answers are sent.  False when the stop event was among them. */
static bool serve_events(struct worker *w, const struct epoll_event *events, int n)
{
	struct turn turns[EVENTS_PER_TURN];
	int count = 0;
	bool stop = false;

	worker_enter(w);
	for (int i = 0; i < n; i++) {
		if (events[i].data.ptr == NULL) {
			stop = true;              /* stop_fd: shutting down */
			continue;
		}
		turns[count].c = events[i].data.ptr;
		take(turns[count].c);
		serve_begin(w, &turns[count++]);
	}
	journal_wait();
	for (int i = 0; i < count; i++)
		serve_finish(w, turns[i].c, serve_end(w, &turns[i]));
	live_leave();
	return !stop;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event events[EVENTS_PER_TURN];

	stats_bind(w->slot);
	for (;;) {
		int n = epoll_wait(epoll_fd, events, EVENTS_PER_TURN, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("worker: epoll_wait failed: %s", strerror(errno));
			break;
		}
		if (!serve_events(w, events, n))
			break;
	}
	return NULL;
}

int workers_start(int count)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	if (park_init(resume) < 0)
		return -1;
	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (epoll_fd < 0 || stop_fd < 0 || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, stop_fd, &ev) < 0) {
		log_error("cannot create the worker pool's epoll set: %s", strerror(errno));
		return -1;
	}
	worker_count = count;
	workers = xcalloc((size_t)worker_count, sizeof(*workers));
	for (int i = 0; i < worker_count; i++) {
		worker_init(&workers[i], i);
		int rc = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
		if (rc != 0) {
			log_error("cannot start worker thread %d: %s", i, strerror(rc));
			worker_count = i;
			return -1;
		}
	}
	return 0;
}

void workers_stop(void)
{
	uint64_t one = 1;

	if (write(stop_fd, &one, sizeof(one)) != sizeof(one))
		log_error("cannot wake the workers: %s", strerror(errno));
	for (int i = 0; i < worker_count; i++) {
		pthread_join(workers[i].thread, NULL);
		worker_free(&workers[i]);
	}
	free(workers);
	workers = NULL;
	worker_count = 0;
}

/* Gives a slow reader a last second to take its answers. */
static void write_before_close(struct connection *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLOUT };
	int64_t give_up = clock_seconds() + 2;

	while (buf_size(&c->out) > 0 && clock_seconds() < give_up &&
	       poll(&p, 1, 1000) > 0 && write_pending(c) == 0)
		;
}

static void drain_one(struct connection *c, void *arg)
{
	struct worker *w = arg;

	worker_enter(w);
	if (serve(w, c) != CLOSE)
		write_before_close(c);
	live_leave();
	close_connection(c);
}

void workers_drain(void)
{
	struct worker w;

	worker_init(&w, stats_thread_index());
	w.draining = true;
	park_release_all();                 /* parked requests are answered now */
	connection_for_each(drain_one, &w);
	worker_free(&w);
	close(epoll_fd);
	close(stop_fd);
	epoll_fd = stop_fd = -1;
	park_free();
}
