/*
 * park.c: the lot of connections waiting for the database (see park.h).
 *
 * Locking: `lock` guards the list (head, tail, the park_* links of parked
 * connections), `count` and `armed_for`; `wakes` is an atomic so that
 * plugins read a ticket without the lock, and it only grows under the
 * lock, so a park either sees a wake or is found by it.  Connections are
 * handed back (the resume function re-arms them in the workers' epoll set)
 * after the lock is released.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "park.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct connection *head, *tail;     /* parked, in the order they came */
static size_t count;
static _Atomic uint64_t wakes;
static int timer_fd = -1;
static int64_t armed_for;                  /* ms the timer fires at, or 0 */
static park_resume_fn resume_connection;

int park_init(park_resume_fn resume)
{
	resume_connection = resume;
	timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (timer_fd < 0) {
		log_error("cannot create the wait timer: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* The flusher may still wake the lot (its last commits come after the
 * workers stop): the list is emptied under the lock. */
void park_free(void)
{
	pthread_mutex_lock(&lock);
	head = tail = NULL;
	count = 0;
	armed_for = 0;
	pthread_mutex_unlock(&lock);
	if (timer_fd >= 0)
		close(timer_fd);
	timer_fd = -1;
}

uint64_t park_ticket(void)
{
	return atomic_load(&wakes);
}

/* Sets the timer to fire at `at` ms (lock held); 0 disarms it. */
static void arm_timer(int64_t at)
{
	struct itimerspec when = { 0 };

	if (at > 0) {
		when.it_value.tv_sec = at / 1000;
		when.it_value.tv_nsec = (at % 1000) * 1000000;
	}
	if (timer_fd >= 0 && timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &when, NULL) < 0)
		log_error("cannot arm the wait timer: %s", strerror(errno));
	armed_for = at;
}

static void unlink_parked(struct connection *c)
{
	if (c->park_prev)
		c->park_prev->park_next = c->park_next;
	else
		head = c->park_next;
	if (c->park_next)
		c->park_next->park_prev = c->park_prev;
	else
		tail = c->park_prev;
	c->park_prev = c->park_next = NULL;
	count--;
}

bool park(struct connection *c, uint64_t ticket, int64_t deadline)
{
	pthread_mutex_lock(&lock);
	if (atomic_load(&wakes) > ticket) {
		pthread_mutex_unlock(&lock);
		return false;
	}
	c->park_ticket = ticket;
	c->park_deadline = deadline;
	c->park_next = NULL;
	c->park_prev = tail;
	if (tail)
		tail->park_next = c;
	else
		head = c;
	tail = c;
	count++;
	if (armed_for == 0 || deadline < armed_for)
		arm_timer(deadline);
	pthread_mutex_unlock(&lock);
	return true;
}

/* Takes the parked connections that `leaves` picks (lock held) into a
 * list linked through park_next. */
static struct connection *take(bool (*leaves)(const struct connection *c, int64_t arg),
			       int64_t arg)
{
	struct connection *out = NULL, **end = &out;

	for (struct connection *c = head, *next; c; c = next) {
		next = c->park_next;
		if (!leaves(c, arg))
			continue;
		unlink_parked(c);
		*end = c;
		end = &c->park_next;
	}
	return out;
}

static void resume_all(struct connection *list, bool expired)
{
	for (struct connection *c = list, *next; c; c = next) {
		next = c->park_next;
		c->park_next = NULL;
		c->wait_expired = expired;
		resume_connection(c);
	}
}

static bool parked_before(const struct connection *c, int64_t wake)
{
	return c->park_ticket < (uint64_t)wake;
}

void park_wake(void)
{
	pthread_mutex_lock(&lock);
	uint64_t wake = atomic_fetch_add(&wakes, 1) + 1;
	struct connection *list = count ? take(parked_before, (int64_t)wake) : NULL;
	pthread_mutex_unlock(&lock);
	resume_all(list, false);
}

int park_timer_fd(void)
{
	return timer_fd;
}

static bool past_deadline(const struct connection *c, int64_t now)
{
	return c->park_deadline <= now;
}

void park_expire(void)
{
	uint64_t fired;

	if (read(timer_fd, &fired, sizeof(fired)) < 0 && errno != EAGAIN)
		log_debug("reading the wait timer: %s", strerror(errno));
	pthread_mutex_lock(&lock);
	struct connection *list = take(past_deadline, clock_ms());
	int64_t next = 0;
	for (struct connection *c = head; c; c = c->park_next) {
		if (next == 0 || c->park_deadline < next)
			next = c->park_deadline;
	}
	arm_timer(next);
	pthread_mutex_unlock(&lock);
	resume_all(list, true);
}

void park_release_all(void)
{
	pthread_mutex_lock(&lock);
	for (struct connection *c = head, *next; c; c = next) {
		next = c->park_next;
		c->park_prev = c->park_next = NULL;
		c->wait_expired = true;
	}
	head = tail = NULL;
	count = 0;
	arm_timer(0);
	pthread_mutex_unlock(&lock);
}

size_t park_count(void)
{
	pthread_mutex_lock(&lock);
	size_t n = count;
	pthread_mutex_unlock(&lock);
	return n;
}
