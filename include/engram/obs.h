/*
 * engram observability: structured JSON log lines on stdout and Prometheus text exposition.
 *
 * Logging never writes secrets: callers pass only the fields they choose, and request headers are
 * never logged wholesale. Everything here runs on the loop thread.
 */
#ifndef EG_OBS_H
#define EG_OBS_H

#include <stddef.h>
#include <stdint.h>

#include "engram/core.h"

/* ---- logs --------------------------------------------------------------------------------- */

enum eg_log_level {
    EG_LOG_DEBUG = 0,
    EG_LOG_INFO = 1,
    EG_LOG_WARN = 2,
    EG_LOG_ERROR = 3,
};

/** Sets the minimum level written (default info). */
void eg_log_set_level(enum eg_log_level level);
/** Parses "debug|info|warn|error"; returns 0 and sets *out, or EG_ECONFIG. */
int eg_log_level_parse(const char *s, enum eg_log_level *out);
/** Returns true when level would be written. */
bool eg_log_enabled(enum eg_log_level level);

/**
 * A log field. Fields are typed so values are escaped correctly; a NULL str is written as null.
 */
struct eg_log_field {
    const char *key;
    enum { EG_LF_STR, EG_LF_INT, EG_LF_NUM } type;
    const char *str;
    size_t len; /* for EG_LF_STR; SIZE_MAX means strlen(str) */
    int64_t i;
    double d;
};

#define EG_LF_S(k, v)                                                                              \
    ((struct eg_log_field){.key = (k), .type = EG_LF_STR, .str = (v), .len = SIZE_MAX})
#define EG_LF_SN(k, v, n)                                                                          \
    ((struct eg_log_field){.key = (k), .type = EG_LF_STR, .str = (v), .len = (n)})
#define EG_LF_I(k, v) ((struct eg_log_field){.key = (k), .type = EG_LF_INT, .i = (v)})
#define EG_LF_D(k, v) ((struct eg_log_field){.key = (k), .type = EG_LF_NUM, .d = (v)})

/**
 * Writes one JSON object line to stdout: {"ts":..,"level":..,"msg":..,<fields>}. The line is
 * assembled in memory and written with one write(2) so lines never interleave.
 */
void eg_log_fields(enum eg_log_level level, const char *msg, const struct eg_log_field *f,
                   size_t n);
/**
 * Buffered mode (the server's): lines collect in memory and go out with one write per loop
 * iteration (eg_log_flush from a uv_prepare), at 32 KiB, or at once for warnings and errors.
 * Unbuffered (the default) writes every line immediately.
 */
void eg_log_set_buffered(bool on);
/** Writes any buffered lines. */
void eg_log_flush(void);
/** printf-style convenience for lines with no structured fields. */
void eg_log(enum eg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- metrics (Prometheus text format 0.0.4) ----------------------------------------------- */

/** A fixed-bucket histogram. bounds are borrowed (static) and ascending; counts has nb+1 slots. */
struct eg_hist {
    const double *bounds;
    size_t nb;
    uint64_t *counts; /* per bucket, not cumulative; the last slot is +Inf */
    uint64_t count;
    double sum;
};

/** Request-latency buckets in seconds (OpenTelemetry's advice for http.server.request.duration). */
extern const double eg_hist_latency_bounds[];
extern const size_t eg_hist_latency_nb;

/** Initialises h with the given bounds. Allocates counts (freed by eg_hist_fini). */
void eg_hist_init(struct eg_hist *h, const double *bounds, size_t nb);
void eg_hist_fini(struct eg_hist *h);
void eg_hist_observe(struct eg_hist *h, double v);

/** Writes "# HELP name help\n# TYPE name type\n". */
int eg_prom_header(struct eg_buf *b, const char *name, const char *type, const char *help);
/**
 * Writes one sample line. labels is a pre-rendered label list without braces (for example
 * `method="GET",route="/health"`), or NULL for none. Values print as integers when integral.
 */
int eg_prom_sample(struct eg_buf *b, const char *name, const char *labels, double v);
/** Writes the _bucket/_sum/_count lines of h with the given labels (NULL for none). */
int eg_prom_hist(struct eg_buf *b, const char *name, const char *labels, const struct eg_hist *h);
/** Appends s as a Prometheus label value (escaping backslash, double quote and newline). */
int eg_prom_label_value(struct eg_buf *b, const char *s);

/** Process figures from /proc/self: resident bytes, open fds, CPU seconds, start time (s). */
struct eg_proc_stats {
    double rss_bytes;
    double open_fds;
    double cpu_seconds;
    double start_time_seconds;
};
void eg_proc_stats_read(struct eg_proc_stats *s);

#endif /* EG_OBS_H */
