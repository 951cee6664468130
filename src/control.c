/*
 * control.c: the admin thread (see control.h).  It owns the two listening
 * sockets and serves one client at a time: tallyctl's commands, and GET
 * /metrics (what both print comes from report.c).  A flush or a reload
 * waits for the flusher or the main thread, not for a lock; `show` may
 * wait up to database.wait for a total the loader reads.  It reads the
 * config through live.h like a worker.
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
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "control.h"
#include "counters.h"
#include "flusher.h"
#include "live.h"
#include "log.h"
#include "report.h"
#include "tables.h"
#include "timekey.h"
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

/* ------------------------------------------------------------------ report */

/* ---------------------------------------------------------------- commands */

/* The key's totals, asking the loader and waiting up to database.wait
 * when they are not in memory (this thread may wait: it is no worker). */
static enum lookup wait_for_total(int period, const char *key, struct metric_values *total)
{
	const struct config *config = live_enter();
	int64_t give_up = clock_ms() + (int64_t)(config->database.wait * 1000);
	uint64_t ticket;
	enum lookup found;

	live_leave();
	while ((found = counters_total(period, key, strlen(key), true, total, &ticket)) ==
	       LOOKUP_WAIT && clock_ms() < give_up)
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000000 }, NULL);
	return found;
}

static void show_metrics(struct buf *out, int period, const char *key)
{
	struct metric_values total, flushed, in_flight, pending;
	enum lookup found = wait_for_total(period, key, &total);
	size_t time_len;
	bool loaded = false;
	const char *time = periods_time(period, &time_len);

	counters_peek(period, key, strlen(key), &flushed, &in_flight, &pending, &loaded);
	buf_printf(out, "ok\ntable %s\nkey %s\ntime %.*s\n", tables_name(periods_table(period)),
		   key, (int)time_len, time);
	for (int m = 0; m < METRIC_COUNT_OF; m++)
		buf_printf(out, "%s %llu (flushed %llu, in flight %llu, pending %llu)\n",
			   metric_names[m], (unsigned long long)total.v[m],
			   (unsigned long long)flushed.v[m], (unsigned long long)in_flight.v[m],
			   (unsigned long long)pending.v[m]);
	if (found != LOOKUP_FOUND)
		buf_append_str(out, "note: the database's totals are not known now; only this "
			       "tallyd's own increments are shown\n");
}

/* show|reset FIELD KEY [TIME] */
static void command_key(struct buf *out, char **args, int count)
{
	bool reset = strcmp(args[0], "reset") == 0;
	int ids[8];
	const char *pattern;
	size_t time_len;

	if (count < 3 || count > 4) {
		buf_printf(out, "error: usage: %s FIELD KEY [TIME]\n", args[0]);
		return;
	}
	int found = tables_for(args[1], ids, 8, &pattern);
	if (found != 1) {
		buf_printf(out, "error: %s %s\n", found ? "several tables keep" :
			   "no accounting table keeps", args[1]);
		for (int i = 0; i < found && i < 8; i++)
			buf_printf(out, "table %s\n", tables_name(ids[i]));
		return;
	}
	if (strlen(args[2]) > ACCOUNTING_VALUE_MAX) {
		buf_printf(out, "error: the key is longer than %d bytes\n", ACCOUNTING_VALUE_MAX);
		return;
	}
	const char *time = count == 4 ? args[3] :
		timekey_now(pattern ? pattern : "%Y-%m", &time_len);
	int period = periods_get(ids[0], time, strlen(time));
	if (period < 0) {
		buf_append_str(out, "error: no period can be kept for that time now\n");
		return;
	}
	if (reset && flusher_reset(period, args[2], strlen(args[2])) < 0) {
		buf_append_str(out, "error: the database could not be reached; nothing was reset\n");
		return;
	}
	show_metrics(out, period, args[2]);
}

/* forget FIELD KEY: SqlUserConfig fetches the key's config afresh. */
static void command_forget(struct buf *out, char **args, int count)
{
	if (count != 3) {
		buf_append_str(out, "error: usage: forget FIELD KEY\n");
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
	char *args[8], *save = NULL;
	int count = 0;

	/* tallyctl separates arguments with tabs, so that a key may hold
	 * spaces; a line typed by hand has spaces */
	const char *separators = strchr(line, '\t') ? "\t" : " ";
	line[strcspn(line, "\r\n")] = '\0';
	for (char *a = strtok_r(line, separators, &save); a && count < 8;
	     a = strtok_r(NULL, separators, &save))
		args[count++] = a;
	if (count == 0) {
		buf_append_str(out, "error: no command\n");
	} else if (strcmp(args[0], "stats") == 0) {
		buf_append_str(out, "ok\n");
		report_stats(out, live_enter(), started);
		live_leave();
	} else if (strcmp(args[0], "show") == 0 || strcmp(args[0], "reset") == 0) {
		command_key(out, args, count);
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
		buf_printf(out, "error: unknown command '%s' (stats, show, reset, forget, flush, "
			   "reload)\n", args[0]);
	}
}

/* ------------------------------------------------------------------- thread */

static void write_all(int fd, const struct buf *b)
{
	size_t done = 0;

	while (done < b->len) {
		ssize_t n = write(fd, b->data + done, b->len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		done += (size_t)n;
	}
}

/* Reads until `end` appears or 8 KiB; false on timeout or EOF before it. */
static bool read_until(int fd, char *in, size_t size, const char *end)
{
	size_t len = 0;

	while (len + 1 < size) {
		ssize_t n = read(fd, in + len, size - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		in[len] = '\0';
		if (strstr(in, end))
			return true;
	}
	in[len] = '\0';
	return len > 0 && strstr(in, end) != NULL;
}

static void serve_control(int fd)
{
	char line[4096];
	struct buf out;

	buf_init(&out);
	if (read_until(fd, line, sizeof(line), "\n"))
		run_command(&out, line);
	else
		buf_append_str(&out, "error: send one command line\n");
	write_all(fd, &out);
	buf_free(&out);
}

static void serve_metrics(int fd)
{
	char request[8192];
	struct buf body, out;

	buf_init(&body);
	buf_init(&out);
	if (!read_until(fd, request, sizeof(request), "\n")) {
		buf_free(&body);
		return;
	}
	if (strncmp(request, "GET /metrics ", 13) == 0 || strncmp(request, "GET / ", 6) == 0) {
		report_metrics(&body, live_enter());
		live_leave();
		buf_printf(&out, "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
			   "Content-Length: %zu\r\nConnection: close\r\n\r\n", body.len);
		buf_append(&out, body.data, body.len);
	} else {
		buf_append_str(&out, "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n"
			       "Connection: close\r\n\r\nGET /metrics\n");
	}
	write_all(fd, &out);
	buf_free(&body);
	buf_free(&out);
}

static void accept_one(int listen_fd, void (*serve)(int fd))
{
	struct timeval five = { .tv_sec = 5 };
	int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &five, sizeof(five));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &five, sizeof(five));
	serve(fd);
	close(fd);
}

static void *control_main(void *unused)
{
	struct pollfd fds[3] = {
		{ .fd = stop_pipe[0], .events = POLLIN },
		{ .fd = control_fd, .events = POLLIN },
		{ .fd = metrics_fd, .events = POLLIN },
	};

	(void)unused;
	stats_bind(slot);
	for (;;) {
		if (poll(fds, 3, -1) < 0 && errno != EINTR)
			break;
		if (fds[0].revents)
			break;
		if (fds[1].revents & POLLIN)
			accept_one(control_fd, serve_control);
		if (fds[2].revents & POLLIN)
			accept_one(metrics_fd, serve_metrics);
	}
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
