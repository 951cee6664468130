/*
 * log.c: the logging module and the allocation wrappers that die loudly.
 *
 * Any thread logs.  The target is chosen once at start-up (log_open) before
 * threads exist; the level is an atomic int so that SIGHUP can change it
 * while workers are logging.  Lines to stderr are written with one write()
 * each so that lines of different threads never interleave.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

static enum log_target target = LOG_TARGET_STDERR;
static atomic_int max_priority = LOG_INFO;

struct name_value {
	const char *name;
	int value;
};

static const struct name_value levels[] = {
	{ "error", LOG_ERR }, { "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
	{ "info", LOG_INFO }, { "debug", LOG_DEBUG },
}, facilities[] = {
	{ "mail", LOG_MAIL }, { "daemon", LOG_DAEMON }, { "user", LOG_USER },
	{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 },
	{ "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
	{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
};

static int lookup(const char *name, const struct name_value *t, size_t count, int *out)
{
	for (size_t i = 0; i < count; i++) {
		if (strcmp(t[i].name, name) == 0) {
			*out = t[i].value;
			return 0;
		}
	}
	return -1;
}

int log_level_parse(const char *name, int *priority)
{
	return lookup(name, levels, sizeof(levels) / sizeof(levels[0]), priority);
}

int log_facility_parse(const char *name, int *facility)
{
	return lookup(name, facilities, sizeof(facilities) / sizeof(facilities[0]), facility);
}

void log_open(enum log_target new_target, int facility)
{
	target = new_target;
	if (target == LOG_TARGET_SYSLOG)
		openlog("tallyd", LOG_PID | LOG_NDELAY, facility);
}

void log_close(void)
{
	if (target == LOG_TARGET_SYSLOG)
		closelog();
	target = LOG_TARGET_STDERR;
}

void log_set_level(int priority)
{
	atomic_store(&max_priority, priority);
}

bool log_enabled(int priority)
{
	return priority <= atomic_load_explicit(&max_priority, memory_order_relaxed);
}

static const char *priority_label(int priority)
{
	switch (priority) {
	case LOG_ERR: return "error: ";
	case LOG_WARNING: return "warning: ";
	case LOG_NOTICE: return "notice: ";
	case LOG_DEBUG: return "debug: ";
	default: return "";
	}
}

void log_vmsg(int priority, const char *fmt, va_list ap)
{
	char text[2048];

	if (!log_enabled(priority))
		return;
	vsnprintf(text, sizeof(text), fmt, ap);
	if (target == LOG_TARGET_SYSLOG) {
		syslog(priority, "%s%s", priority_label(priority), text);
		return;
	}

	char line[2200], stamp[32];
	struct timespec now;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &now);
	localtime_r(&now.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	int len = snprintf(line, sizeof(line), "%s.%03ld tallyd[%ld]: %s%s\n", stamp,
			   now.tv_nsec / 1000000, (long)getpid(), priority_label(priority), text);
	if (len < 0)
		return;
	if ((size_t)len >= sizeof(line)) {
		len = sizeof(line) - 1;
		line[len - 1] = '\n';
	}
	ssize_t ignored = write(STDERR_FILENO, line, (size_t)len);
	(void)ignored;
}

void log_msg(int priority, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(priority, fmt, ap);
	va_end(ap);
}

bool log_ratelimit(_Atomic long long *last, int seconds)
{
	long long now = clock_seconds();
	long long previous = atomic_load(last);

	/* the first caller after the pause wins; the others stay quiet */
	return (now - previous >= seconds || previous == 0) &&
	       atomic_compare_exchange_strong(last, &previous, now);
}

void fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_ERR, fmt, ap);
	va_end(ap);
	exit(1);
}

static void *checked(void *ptr, size_t size)
{
	if (ptr == NULL && size != 0) {
		log_error("out of memory allocating %zu bytes", size);
		abort();
	}
	return ptr;
}

void *xmalloc(size_t size)
{
	return checked(malloc(size), size);
}

void *xcalloc(size_t count, size_t size)
{
	return checked(calloc(count, size), count * size);
}

void *xrealloc(void *ptr, size_t size)
{
	return checked(realloc(ptr, size), size);
}

char *xstrdup(const char *s)
{
	return checked(strdup(s), strlen(s) + 1);
}

char *xstrndup(const char *s, size_t n)
{
	return checked(strndup(s, n), n + 1);
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *out;

	va_start(ap, fmt);
	int n = vasprintf(&out, fmt, ap);
	va_end(ap);
	return checked(n < 0 ? NULL : out, 1);
}
