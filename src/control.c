/*
 * control.c: the admin thread (see control.h).  It owns the two listening
 * sockets and serves up to 32 clients at once, each within a 10 s deadline:
 * tallyctl's commands, and GET /metrics (what both print comes from
 * report.c; admin.c reads the requests).  Commands run one at a time.  A flush or a reload
 * waits for the flusher or the main thread, not for a lock; `show` may
 * wait up to database.wait for a total the loader reads.  It reads the
 * config through live.h like a worker.  `show rate:...` and `reset
 * rate:...` read and clear RateLimit keys (ratekeys.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "clock.h"
#include "control.h"
#include "counters.h"
#include "flusher.h"
#include "live.h"
#include "log.h"
#include "ratekeys.h"
#include "report.h"
#include "tables.h"
#include "timekey.h"
#include "top.h"
#include "usercache.h"

static int control_fd = -1;
static int metrics_fd = -1;
static int stop_pipe[2] = { -1, -1 };
static pthread_t thread;
static bool running;
static int slot;
static control_reload_fn reload_hook;
static char *control_path;
static time_t started;

/* ---------------------------------------------------------------- sockets */

static int open_control_socket(const char *path)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(un.sun_path)) {
		log_error("control_socket %s: path too long", path);
		return -1;
	}
	strcpy(un.sun_path, path);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&un, sizeof(un)) < 0 || chmod(path, 0660) < 0 ||
	    listen(fd, 16) < 0) {
		log_error("control_socket %s: %s; tallyctl will not reach tallyd", path,
			  strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int open_metrics_socket(const struct listen_address *a)
{
	int one = 1;
	int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (const struct sockaddr *)&a->addr, a->addr_len) < 0 ||
	    listen(fd, 16) < 0) {
		log_error("metrics_listen %s: %s; no Prometheus metrics", a->spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* ---------------------------------------------------------------- commands */

/* The key's totals, asking the loader and waiting up to database.wait
 * when they are not in memory (this thread may wait: it is no worker). */
static enum lookup wait_for_total(int period, const char *key, size_t key_len,
				  struct metric_values *total)
{
	const struct config *config = live_enter();
	int64_t give_up = clock_ms() + (int64_t)(config->database.wait * 1000);
	uint64_t ticket;
	enum lookup found;

	live_leave();
	while ((found = counters_total(period, key, key_len, true, total, &ticket)) ==
	       LOOKUP_WAIT && clock_ms() < give_up)
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000000 }, NULL);
	return found;
}

static void show_metrics(struct buf *out, int period, const char *key, size_t key_len)
{
	struct metric_values total, flushed, in_flight, pending;
	enum lookup found = wait_for_total(period, key, key_len, &total);
	size_t time_len;
	bool loaded = false;
	const char *time = periods_time(period, &time_len);

	counters_peek(period, key, key_len, &flushed, &in_flight, &pending, &loaded);
	buf_printf(out, "ok\ntable %s\nkey ", tables_name(periods_table(period)));
	top_append_key(out, key, key_len);
	buf_printf(out, "\ntime %.*s\n", (int)time_len, time);
	for (int m = 0; m < METRIC_COUNT_OF; m++)
		buf_printf(out, "%s %llu (flushed %llu, in flight %llu, pending %llu)\n",
			   metric_names[m], (unsigned long long)total.v[m],
			   (unsigned long long)flushed.v[m], (unsigned long long)in_flight.v[m],
			   (unsigned long long)pending.v[m]);
	if (found != LOOKUP_FOUND)
		buf_append_str(out, "note: the database's totals are not known now; only this "
			       "tallyd's own increments are shown\n");
}

/* The one table that FIELD (or a table's name) names: true, with its id
 * in ids[0] and its time_pattern; else false, with the error in `out`. */
static bool one_table(struct buf *out, const char *field, int ids[8],
		      char pattern[TABLES_PATTERN_MAX])
{
	int found = tables_for(field, ids, 8, pattern);

	if (found == 1)
		return true;
	buf_printf(out, "error: %s %s\n", found ? "several tables keep" : "no accounting table keeps",
		   field);
	for (int i = 0; i < found && i < 8; i++)
		buf_printf(out, "table %s\n", tables_name(ids[i]));
	return false;
}

/* top FIELD [N] [METRIC]: the keys of the current period with the largest
 * totals, from memory. */
static void command_top(struct buf *out, char **args, int count)
{
	int ids[8];
	char pattern[TABLES_PATTERN_MAX];
	size_t time_len;
	char *end = NULL;
	long n = count >= 3 ? strtol(args[2], &end, 10) : TOP_DEFAULT;
	int metric = count >= 4 ? metric_parse(args[3]) : METRIC_COUNT;

	if (count < 2 || count > 4 || (end != NULL && (*end != '\0' || n < 1 || n > TOP_MAX)) ||
	    metric < 0) {
		buf_printf(out, "usage: top FIELD [N] [METRIC] (N: 1..%d; METRIC: count, "
			   "count_rcpt, size or size_rcpt)\n", TOP_MAX);
		return;
	}
	if (!one_table(out, args[1], ids, pattern))
		return;
	const char *time = timekey_now(pattern[0] ? pattern : "%Y-%m", &time_len);
	int period = periods_get(ids[0], time, time_len);
	if (period < 0) {
		buf_append_str(out, "error: no period can be kept for that time now\n");
		return;
	}
	buf_printf(out, "ok\ntable %s\ntime %.*s\nmetric %s\n", tables_name(ids[0]),
		   (int)time_len, time, metric_names[metric]);
	top_report(out, period, metric, (size_t)n);
}

/* What `show rate:...` prints of one RateLimit's key. */
static void show_rate_key(const char *name, const char *field,
			  const struct rate_limits *configured, const struct rate_limits *limits,
			  const struct ratekey_state *state, void *arg)
{
	struct buf *out = arg;
	int64_t now = ratekeys_clock();

	buf_printf(out, "ratelimit %s\nfield %s\n", name, field);
	if (state == NULL)
		buf_append_str(out, "last never (no message in its windows)\n");
	else
		buf_printf(out, "last %.3f seconds ago\n", (double)(now - state->last) / 1000.0);
	if (limits == NULL)
		buf_append_str(out, "note: its windows were made for limits other than the "
			       "configured ones (uc_limits), which are not known now; their loads "
			       "are not shown\n");
	else if (limits != configured)
		buf_append_str(out, "note: its limits are not the configured ones (uc_limits)\n");
	for (size_t i = 0; limits && i < limits->count; i++) {
		struct ratewindow w = state ? state->windows[i] : (struct ratewindow){ 0 };
		uint64_t load = state ? ratewindow_load(&w, &limits->limit[i], state->last, now) : 0;
		buf_printf(out, "limit %llu in %lu seconds: load %llu\n",
			   (unsigned long long)limits->limit[i].count,
			   (unsigned long)limits->limit[i].seconds, (unsigned long long)load);
	}
}

/* show|reset rate:PLUGIN-or-FIELD KEY: a RateLimit key's windows, each
 * window's load against its limit; reset empties them (and shows what
 * they held). */
static void command_rate(struct buf *out, char **args, int count)
{
	bool reset = strcmp(args[0], "reset") == 0;
	const char *which = args[1] + strlen("rate:");
	char long_form[ACCOUNTING_VALUE_MAX];
	struct buf shown;

	if (count != 3 || which[0] == '\0') {
		buf_printf(out, "usage: %s rate:PLUGIN KEY, or %s rate:FIELD KEY\n", args[0], args[0]);
		return;
	}
	size_t key_len = strlen(args[2]);
	const char *key = accounting_key(args[2], &key_len, long_form);
	buf_init(&shown);
	if (ratekeys_visit_key(which, key, key_len, reset, show_rate_key, &shown) == 0) {
		buf_printf(out, "error: no RateLimit plugin is named %s or limits by that field\n",
			   which);
	} else {
		buf_append_str(out, "ok\nkey ");
		top_append_key(out, key, key_len);
		buf_printf(out, "\n%s", reset ? "reset: its windows are empty now; they held:\n" : "");
		buf_append(out, shown.data, shown.len);
	}
	buf_free(&shown);
}

/* show|reset FIELD KEY [TIME] */
static void command_key(struct buf *out, char **args, int count)
{
	bool reset = strcmp(args[0], "reset") == 0;
	int ids[8];
	char pattern[TABLES_PATTERN_MAX];
	size_t time_len;

	if (count < 3 || count > 4) {
		buf_printf(out, "usage: %s FIELD KEY [TIME]\n", args[0]);
		return;
	}
	if (!one_table(out, args[1], ids, pattern))
		return;
	char long_form[ACCOUNTING_VALUE_MAX];
	size_t key_len = strlen(args[2]);
	const char *key = accounting_key(args[2], &key_len, long_form);
	const char *time_pattern = pattern[0] ? pattern : "%Y-%m";
	if (count == 4 && !timekey_matches(time_pattern, args[3])) {
		buf_printf(out, "error: '%s' is no time of table %s (time_pattern \"%s\", such as %s)\n",
			   args[3], tables_name(ids[0]), time_pattern,
			   timekey_now(time_pattern, &time_len));
		return;
	}
	const char *time = count == 4 ? args[3] : timekey_now(time_pattern, &time_len);
	int period = periods_get(ids[0], time, strlen(time));
	if (period < 0) {
		buf_append_str(out, "error: no period can be kept for that time now\n");
		return;
	}
	if (reset && flusher_reset(period, key, key_len) < 0) {
		buf_append_str(out, "error: the database could not be reached; nothing was reset\n");
		return;
	}
	show_metrics(out, period, key, key_len);
}

/* forget FIELD KEY: SqlUserConfig fetches the key's config afresh. */
static void command_forget(struct buf *out, char **args, int count)
{
	if (count != 3) {
		buf_append_str(out, "usage: forget FIELD KEY\n");
		return;
	}
	if (usercache_forget(args[1], args[2], strlen(args[2])) == 0) {
		buf_printf(out, "error: no SqlUserConfig plugin looks up %s\n", args[1]);
		return;
	}
	buf_printf(out, "ok\nforgotten: the next request with %s %s reads its user config "
		   "from the database\n", args[1], args[2]);
}

static void run_command(struct buf *out, char *line)
{
	char *args[ADMIN_ARGS_MAX];
	int count = admin_split_command(line, args);

	if (count == 0) {
		buf_append_str(out, "usage: no command (stats, show, reset, top, forget, flush, reload)\n");
	} else if (strcmp(args[0], "stats") == 0) {
		buf_append_str(out, "ok\n");
		report_stats(out, live_enter(), started);
		live_leave();
	} else if ((strcmp(args[0], "show") == 0 || strcmp(args[0], "reset") == 0) &&
		   count >= 2 && strncmp(args[1], "rate:", 5) == 0) {
		command_rate(out, args, count);
	} else if (strcmp(args[0], "show") == 0 || strcmp(args[0], "reset") == 0) {
		command_key(out, args, count);
	} else if (strcmp(args[0], "top") == 0) {
		command_top(out, args, count);
	} else if (strcmp(args[0], "forget") == 0) {
		command_forget(out, args, count);
	} else if (strcmp(args[0], "flush") == 0) {
		buf_append_str(out, flusher_flush_now() == 0 ? "ok\nflushed\n" :
			       "error: the flush failed; see the log (tallyctl stats shows the last "
			       "error)\n");
	} else if (strcmp(args[0], "reload") == 0) {
		struct buf why;
		buf_init(&why);
		if (reload_hook(&why) == 0)
			buf_append_str(out, "ok\nreloaded\n");
		else
			buf_printf(out, "error: reload refused; the running configuration stays\n%s",
				   why.data ? why.data : "");
		buf_free(&why);
	} else {
		buf_printf(out, "usage: unknown command '%s' (stats, show, reset, top, forget, flush, "
			   "reload)\n", args[0]);
	}
}

/* ------------------------------------------------------------------- thread */

/* The admin thread serves every admin connection at once with poll():
 * a client that sends slowly, or not at all, or does not read its answer,
 * holds back no other and is closed when its deadline passes.  Commands
 * run one at a time, on this thread. */
#define ADMIN_CLIENTS 32
#define ADMIN_DEADLINE_MS 10000          /* to send the request and read the answer */

struct admin_client {
	int fd;
	bool metrics;                   /* GET /metrics, else a tallyctl command */
	bool answered;                  /* `out` holds the answer: writing it */
	struct admin_input in;
	struct buf out;
	size_t sent;
	int64_t deadline;               /* clock_ms() */
};

static struct admin_client clients[ADMIN_CLIENTS];   /* this thread's alone */
static int client_count;

void control_answer_command(struct buf *out, char *line, bool complete)
{
	if (complete)
		run_command(out, line);
	else
		buf_append_str(out, "error: send one command line\n");
}

void control_answer_metrics(struct buf *out, const char *request, bool complete)
{
	struct buf body;

	if (!complete)
		return;                         /* not HTTP: closed without a word */
	if (!admin_asks_for_metrics(request)) {
		buf_append_str(out, "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n"
			       "Connection: close\r\n\r\nGET /metrics\n");
		return;
	}
	buf_init(&body);
	report_metrics(&body, live_enter());
	live_leave();
	buf_printf(out, "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
		   "Content-Length: %zu\r\nConnection: close\r\n\r\n", body.len);
	buf_append(out, body.data, body.len);
	buf_free(&body);
}

static void drop_client(int i)
{
	close(clients[i].fd);
	buf_free(&clients[i].out);
	clients[i] = clients[--client_count];
}

static void accept_client(int listen_fd, bool metrics)
{
	int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	struct admin_client *c = &clients[client_count++];
	c->fd = fd;
	c->metrics = metrics;
	c->answered = false;
	c->sent = 0;
	admin_input_init(&c->in);
	buf_init(&c->out);
	c->deadline = clock_ms() + ADMIN_DEADLINE_MS;
}

/* Reads what the client sent; once its request line is in (or it sent 8
 * KiB without one, or stopped sending), runs it.  False: drop the client. */
static bool read_request(struct admin_client *c)
{
	size_t room;
	char *space = admin_input_space(&c->in, &room);
	ssize_t n = read(c->fd, space, room);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	enum admin_input_state state = admin_input_add(&c->in, (size_t)n);
	if (state == ADMIN_INPUT_MORE)
		return true;
	if (c->metrics)
		control_answer_metrics(&c->out, c->in.text, state == ADMIN_INPUT_LINE);
	else
		control_answer_command(&c->out, c->in.text, state == ADMIN_INPUT_LINE);
	c->answered = true;
	return c->out.len > 0;
}

/* Writes what it can of the answer.  False: done, or the client is gone. */
static bool write_answer(struct admin_client *c)
{
	ssize_t n = write(c->fd, c->out.data + c->sent, c->out.len - c->sent);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	c->sent += (size_t)n;
	return c->sent < c->out.len;
}

/* The poll() timeout: until the earliest deadline. */
static int next_timeout(void)
{
	int64_t now = clock_ms(), wait = -1;

	for (int i = 0; i < client_count; i++) {
		int64_t left = clients[i].deadline > now ? clients[i].deadline - now : 0;
		wait = wait < 0 || left < wait ? left : wait;
	}
	return (int)wait;
}

static void *control_main(void *unused)
{
	struct pollfd fds[3 + ADMIN_CLIENTS];

	(void)unused;
	stats_bind(slot);
	for (;;) {
		bool room = client_count < ADMIN_CLIENTS;
		fds[0] = (struct pollfd){ .fd = stop_pipe[0], .events = POLLIN };
		fds[1] = (struct pollfd){ .fd = room ? control_fd : -1, .events = POLLIN };
		fds[2] = (struct pollfd){ .fd = room ? metrics_fd : -1, .events = POLLIN };
		for (int i = 0; i < client_count; i++)
			fds[3 + i] = (struct pollfd){ .fd = clients[i].fd,
						      .events = clients[i].answered ? POLLOUT : POLLIN };
		int polled = client_count;
		if (poll(fds, (nfds_t)(3 + polled), next_timeout()) < 0 && errno != EINTR)
			break;
		if (fds[0].revents)
			break;
		int64_t now = clock_ms();
		for (int i = polled - 1; i >= 0; i--) {         /* back to front: drops move the last */
			struct admin_client *c = &clients[i];
			short ready = fds[3 + i].revents;
			bool keep = now < c->deadline;
			if (keep && (ready & POLLIN))
				keep = read_request(c);
			if (keep && c->answered && (ready & (POLLOUT | POLLIN)))
				keep = write_answer(c);
			else if (keep && (ready & (POLLERR | POLLHUP | POLLNVAL)))
				keep = false;
			if (!keep)
				drop_client(i);
		}
		if ((fds[1].revents & POLLIN) && client_count < ADMIN_CLIENTS)
			accept_client(control_fd, false);
		if ((fds[2].revents & POLLIN) && client_count < ADMIN_CLIENTS)
			accept_client(metrics_fd, true);
	}
	while (client_count > 0)
		drop_client(client_count - 1);  /* shutdown waits for no client */
	return NULL;
}

void control_start(const struct config *config, int stats_slot, control_reload_fn reload)
{
	slot = stats_slot;
	reload_hook = reload;
	started = time(NULL);
	if (config->control_socket[0] != '\0') {
		control_fd = open_control_socket(config->control_socket);
		if (control_fd >= 0)
			control_path = xstrdup(config->control_socket);
	}
	if (config->metrics_listen[0] != '\0')
		metrics_fd = open_metrics_socket(&config->metrics_address);
	if ((control_fd < 0 && metrics_fd < 0) || pipe(stop_pipe) < 0)
		return;
	int rc = pthread_create(&thread, NULL, control_main, NULL);
	if (rc != 0)
		log_error("cannot start the admin thread: %s", strerror(rc));
	running = rc == 0;
}

void control_stop(void)
{
	if (running) {
		if (write(stop_pipe[1], "", 1) != 1)
			log_error("cannot stop the admin thread: %s", strerror(errno));
		pthread_join(thread, NULL);
		running = false;
	}
	for (int i = 0; i < 2; i++) {
		if (stop_pipe[i] >= 0)
			close(stop_pipe[i]);
		stop_pipe[i] = -1;
	}
	if (control_fd >= 0) {
		close(control_fd);
		unlink(control_path);
	}
	if (metrics_fd >= 0)
		close(metrics_fd);
	control_fd = metrics_fd = -1;
	free(control_path);
	control_path = NULL;
}
