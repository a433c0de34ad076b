/* Prometheus text exposition helpers and process statistics read from /proc. */
#include "engram/obs.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const double eg_hist_latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075,
                                         0.1,    0.25,  0.5,    0.75,  1,    2.5,   5,    10};
const size_t eg_hist_latency_nb = EG_ARRAY_LEN(eg_hist_latency_bounds);

void eg_hist_init(struct eg_hist *h, const double *bounds, size_t nb)
{
    h->bounds = bounds;
    h->nb = nb;
    h->counts = eg_calloc(nb + 1, sizeof(*h->counts));
    h->count = 0;
    h->sum = 0;
}

void eg_hist_fini(struct eg_hist *h)
{
    eg_free(h->counts);
    h->counts = NULL;
}

void eg_hist_observe(struct eg_hist *h, double v)
{
    size_t i = 0;

    while (i < h->nb && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

int eg_prom_header(struct eg_buf *b, const char *name, const char *type, const char *help)
{
    return eg_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int put_value(struct eg_buf *b, double v)
{
    if (isnan(v))
        return eg_buf_puts(b, "NaN");
    if (isinf(v))
        return eg_buf_puts(b, v > 0 ? "+Inf" : "-Inf");
    if (v == floor(v) && fabs(v) < 9e15)
        return eg_buf_printf(b, "%.0f", v);
    return eg_buf_printf(b, "%.17g", v);
}

int eg_prom_sample(struct eg_buf *b, const char *name, const char *labels, double v)
{
    int rc;

    if (labels != NULL && labels[0] != '\0')
        rc = eg_buf_printf(b, "%s{%s} ", name, labels);
    else
        rc = eg_buf_printf(b, "%s ", name);
    if (rc == 0)
        rc = put_value(b, v);
    if (rc == 0)
        rc = eg_buf_putc(b, '\n');
    return rc;
}

int eg_prom_hist(struct eg_buf *b, const char *name, const char *labels, const struct eg_hist *h)
{
    const char *sep = labels != NULL && labels[0] != '\0' ? "," : "";
    const char *lab = labels != NULL ? labels : "";
    uint64_t cum = 0;
    int rc = 0;

    for (size_t i = 0; i <= h->nb && rc == 0; i++) {
        cum += h->counts[i];
        if (i < h->nb)
            rc = eg_buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, lab, sep, h->bounds[i],
                               (unsigned long long)cum);
        else
            rc = eg_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, lab, sep,
                               (unsigned long long)cum);
    }
    if (rc == 0)
        rc = eg_buf_printf(b, "%s_sum%s%s%s ", name, *lab ? "{" : "", lab, *lab ? "}" : "");
    if (rc == 0)
        rc = put_value(b, h->sum);
    if (rc == 0)
        rc = eg_buf_printf(b, "\n%s_count%s%s%s %llu\n", name, *lab ? "{" : "", lab,
                           *lab ? "}" : "", (unsigned long long)h->count);
    return rc;
}

int eg_prom_label_value(struct eg_buf *b, const char *s)
{
    int rc = 0;

    for (; *s != '\0' && rc == 0; s++) {
        if (*s == '\\')
            rc = eg_buf_puts(b, "\\\\");
        else if (*s == '"')
            rc = eg_buf_puts(b, "\\\"");
        else if (*s == '\n')
            rc = eg_buf_puts(b, "\\n");
        else
            rc = eg_buf_putc(b, *s);
    }
    return rc;
}

void eg_proc_stats_read(struct eg_proc_stats *s)
{
    char buf[1024];
    FILE *f;
    DIR *d;
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);

    memset(s, 0, sizeof(*s));
    f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        unsigned long size = 0;
        unsigned long rss = 0;

        if (fscanf(f, "%lu %lu", &size, &rss) == 2)
            s->rss_bytes = (double)rss * (double)page;
        fclose(f);
    }
    d = opendir("/proc/self/fd");
    if (d != NULL) {
        struct dirent *e;
        long n = 0;

        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] != '.')
                n++;
        }
        closedir(d);
        s->open_fds = (double)(n - 1); /* minus the directory stream itself */
    }
    f = fopen("/proc/self/stat", "r");
    if (f != NULL) {
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        char *p;

        fclose(f);
        buf[n] = '\0';
        /* Fields after the parenthesised command name; utime is the 14th, starttime the 22nd. */
        p = strrchr(buf, ')');
        if (p != NULL) {
            unsigned long long utime = 0;
            unsigned long long stime = 0;
            unsigned long long start = 0;

            if (sscanf(p + 2,
                       "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d "
                       "%*d %*d %*d %llu",
                       &utime, &stime, &start)
                == 3) {
                s->cpu_seconds = (double)(utime + stime) / (double)ticks;
                f = fopen("/proc/stat", "r");
                if (f != NULL) {
                    unsigned long long btime = 0;

                    while (fgets(buf, sizeof(buf), f) != NULL) {
                        if (sscanf(buf, "btime %llu", &btime) == 1)
                            break;
                    }
                    fclose(f);
                    s->start_time_seconds = (double)btime + (double)start / (double)ticks;
                }
            }
        }
    }
}
