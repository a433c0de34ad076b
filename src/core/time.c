/* Clocks and the ISO-8601 format CORE's JS Date.toISOString() produces. */
#include "engram/core.h"

#include <stdio.h>
#include <time.h>

uint64_t eg_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t eg_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t eg_time_iso(char out[32], int64_t wall_ms)
{
    /* Floor division keeps pre-1970 instants correct, as JS does. */
    int64_t secs = wall_ms / 1000;
    int64_t ms = wall_ms % 1000;
    struct tm tm;
    time_t t;
    int n;

    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    t = (time_t)secs;
    gmtime_r(&t, &tm);
    n = snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)ms);
    return n > 0 ? (size_t)n : 0;
}
