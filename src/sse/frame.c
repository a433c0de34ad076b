/* SSE framing (WHATWG HTML §9.2): pure, no I/O. */
#include "engram/sse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool field_ok(const char *s)
{
    return s == NULL || strpbrk(s, "\r\n") == NULL;
}

int eg_sse_frame(struct eg_buf *b, const char *id, const char *event, const char *data, size_t len)
{
    size_t start = b->len;
    size_t i = 0;
    int rc = 0;

    if (!field_ok(id) || !field_ok(event) || memchr(data, '\0', len) != NULL)
        return EG_EPARSE;
    if (id != NULL)
        rc = eg_buf_printf(b, "id: %s\n", id);
    if (rc == 0 && event != NULL)
        rc = eg_buf_printf(b, "event: %s\n", event);
    /* Every line of data becomes its own data: field; the client joins them with LF. */
    for (;;) {
        size_t j = i;

        while (j < len && data[j] != '\n' && data[j] != '\r')
            j++;
        if (rc == 0)
            rc = eg_buf_puts(b, "data: ");
        if (rc == 0)
            rc = eg_buf_append(b, data + i, j - i);
        if (rc == 0)
            rc = eg_buf_putc(b, '\n');
        if (j >= len || rc < 0)
            break;
        if (data[j] == '\r' && j + 1 < len && data[j + 1] == '\n')
            j++;
        i = j + 1;
    }
    if (rc == 0)
        rc = eg_buf_putc(b, '\n');
    if (rc < 0) {
        b->len = start;
        if (b->base != NULL)
            b->base[start] = '\0';
    }
    return rc;
}

int eg_sse_parse_id(const char *s, size_t n, int64_t *epoch, int64_t *seq)
{
    char tmp[48];
    char *colon;
    char *end;

    if (n == 0 || n >= sizeof(tmp))
        return EG_EPARSE;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    colon = strchr(tmp, ':');
    if (colon == NULL || colon == tmp || colon[1] == '\0')
        return EG_EPARSE;
    *colon = '\0';
    for (const char *p = tmp; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return EG_EPARSE;
    }
    for (const char *p = colon + 1; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return EG_EPARSE;
    }
    errno = 0;
    *epoch = strtoll(tmp, &end, 10);
    if (errno != 0)
        return EG_EPARSE;
    *seq = strtoll(colon + 1, &end, 10);
    if (errno != 0)
        return EG_EPARSE;
    return 0;
}
