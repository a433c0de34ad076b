/* JSON log lines on stdout (12-factor): one object per line, written with a single write(2). */
#include "engram/obs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engram/json.h"

static enum eg_log_level min_level = EG_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void eg_log_set_level(enum eg_log_level level)
{
    min_level = level;
}

bool eg_log_enabled(enum eg_log_level level)
{
    return level >= min_level;
}

int eg_log_level_parse(const char *s, enum eg_log_level *out)
{
    for (size_t i = 0; i < EG_ARRAY_LEN(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum eg_log_level)i;
            return 0;
        }
    }
    return EG_ECONFIG;
}

#define LOG_BUF_FLUSH_BYTES (32 * 1024)

static bool is_buffered;
static struct eg_buf pending = {NULL, 0, 0, 1u << 20};

static void write_all(const char *p, size_t n);

void eg_log_set_buffered(bool on)
{
    if (!on)
        eg_log_flush();
    is_buffered = on;
}

void eg_log_flush(void)
{
    if (pending.len > 0)
        write_all(pending.base, pending.len);
    eg_buf_reset(&pending);
}

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a broken stdout */
        }
        p += w;
        n -= (size_t)w;
    }
}

void eg_log_fields(enum eg_log_level level, const char *msg, const struct eg_log_field *f, size_t n)
{
    struct eg_buf b;
    char ts[32];
    char num[32];

    if (!eg_log_enabled(level))
        return;
    eg_buf_init(&b, 64 * 1024);
    eg_time_iso(ts, eg_wall_ms());
    eg_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level_names[level]);
    eg_json_put_string(&b, msg, strlen(msg));
    for (size_t i = 0; i < n; i++) {
        eg_buf_putc(&b, ',');
        eg_json_put_string(&b, f[i].key, strlen(f[i].key));
        eg_buf_putc(&b, ':');
        switch (f[i].type) {
        case EG_LF_STR:
            if (f[i].str == NULL)
                eg_buf_puts(&b, "null");
            else
                eg_json_put_string(&b, f[i].str,
                                   f[i].len == SIZE_MAX ? strlen(f[i].str) : f[i].len);
            break;
        case EG_LF_INT: eg_buf_printf(&b, "%lld", (long long)f[i].i); break;
        case EG_LF_NUM:
            eg_json_fmt_number(num, f[i].d);
            eg_buf_puts(&b, num);
            break;
        }
    }
    eg_buf_puts(&b, "}\n");
    if (b.base != NULL) {
        if (is_buffered && eg_buf_append(&pending, b.base, b.len) == 0) {
            if (pending.len >= LOG_BUF_FLUSH_BYTES || level >= EG_LOG_WARN)
                eg_log_flush();
        } else {
            eg_log_flush();
            write_all(b.base, b.len);
        }
    }
    eg_buf_fini(&b);
}

void eg_log(enum eg_log_level level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (!eg_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    eg_log_fields(level, msg, NULL, 0);
}
