/*
 * log.h: the one place tallyd reports anything.
 *
 * log_error() .. log_debug() write one line to syslog (default facility
 * mail) or to stderr with a timestamp.  fatal() logs and exits 1; it is for
 * start-up only, never for something a request or the database did.
 * Every thread may call these; the level is an atomic, so a reload can
 * change it while workers log.
 */
#ifndef TALLYD_LOG_H
#define TALLYD_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>

#define PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))

enum log_target { LOG_TARGET_STDERR, LOG_TARGET_SYSLOG };

/* Starts logging; before this call everything goes to stderr at "info". */
void log_open(enum log_target target, int facility);
void log_close(void);

/* Sets the most verbose priority written (LOG_ERR .. LOG_DEBUG). */
void log_set_level(int priority);
bool log_enabled(int priority);

/* Parse a level name (error|warning|notice|info|debug) or a facility name
 * (mail, daemon, local0..local7, user); 0 on success, -1 when unknown. */
int log_level_parse(const char *name, int *priority);
int log_facility_parse(const char *name, int *facility);

void log_msg(int priority, const char *fmt, ...) PRINTF_LIKE(2, 3);
void log_vmsg(int priority, const char *fmt, va_list ap) PRINTF_LIKE(2, 0);

#define log_error(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

void fatal(const char *fmt, ...) __attribute__((noreturn)) PRINTF_LIKE(1, 2);

/* For warnings that input can repeat without end: true at most once every
 * `seconds` per `last` (a static the caller keeps, starting at 0). */
bool log_ratelimit(_Atomic long long *last, int seconds);

/* Out of memory is the one failure tallyd does not try to survive. */
void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);

#endif
