/* Capped growable byte buffer. Growth doubles up to the ceiling given at init (curl dynbuf). */
#include "engram/core.h"

#include <stdio.h>
#include <string.h>

void eg_buf_init(struct eg_buf *b, size_t max)
{
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void eg_buf_fini(struct eg_buf *b)
{
    eg_free(b->base);
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
}

void eg_buf_reset(struct eg_buf *b)
{
    b->len = 0;
    if (b->base != NULL)
        b->base[0] = '\0';
}

/* Makes room for n more bytes plus the NUL terminator. */
static int reserve(struct eg_buf *b, size_t n)
{
    size_t need;
    size_t cap;

    if (n > b->max || b->len > b->max - n)
        return EG_ELIMIT;
    need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    b->base = eg_realloc(b->base, cap);
    b->cap = cap;
    return 0;
}

int eg_buf_append(struct eg_buf *b, const void *p, size_t n)
{
    int rc = reserve(b, n);

    if (rc < 0)
        return rc;
    if (n > 0)
        memcpy(b->base + b->len, p, n);
    b->len += n;
    b->base[b->len] = '\0';
    return 0;
}

int eg_buf_puts(struct eg_buf *b, const char *s)
{
    return eg_buf_append(b, s, strlen(s));
}

int eg_buf_putc(struct eg_buf *b, char c)
{
    return eg_buf_append(b, &c, 1);
}

int eg_buf_vprintf(struct eg_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;
    int rc;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return EG_EPARSE;
    rc = reserve(b, (size_t)n);
    if (rc < 0)
        return rc;
    vsnprintf(b->base + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int eg_buf_printf(struct eg_buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = eg_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *eg_buf_take(struct eg_buf *b, size_t *len)
{
    char *p = b->base;

    if (len != NULL)
        *len = b->len;
    if (p == NULL)
        p = eg_strndup("", 0);
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
