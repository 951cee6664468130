/*
 * report.h: tallyd's statistics as text: tallyctl stats' "name value"
 * lines and Prometheus' text format.  Any thread; it only reads.
 */
#ifndef TALLYD_REPORT_H
#define TALLYD_REPORT_H

#include <time.h>

#include "buf.h"
#include "config.h"

/* Appends tallyctl stats' lines; `started` is the daemon's start time. */
void report_stats(struct buf *out, const struct config *config, time_t started);
/* Appends the Prometheus metrics. */
void report_metrics(struct buf *out, const struct config *config);

#endif
