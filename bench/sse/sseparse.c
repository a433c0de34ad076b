/* bench/sse/sseparse.c: see sseparse.h. Every function here takes bytes and returns results or
 * calls a callback synchronously; nothing allocates, so a subscriber's whole parse state is the
 * fixed-size structs it embeds. */
#define _GNU_SOURCE /* memmem */
#include "sseparse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char MARK[] = "note ssb";

/* Reads decimal digits at *p (up to end); returns false when there are none. */
static bool take_u64(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;

    while (s < end && *s >= '0' && *s <= '9') {
        v = v * 10u + (uint64_t)(*s - '0');
        s++;
    }
    if (s == *p)
        return false;
    *p = s;
    *out = v;
    return true;
}

static bool take_char(const char **p, const char *end, char c)
{
    if (*p >= end || **p != c)
        return false;
    (*p)++;
    return true;
}

bool ssb_mark_parse(const char *p, size_t len, struct ssb_mark *m)
{
    const char *s = memmem(p, len, MARK, sizeof(MARK) - 1);
    const char *end = p + len;
    uint64_t tag;
    uint64_t phase;

    if (s == NULL)
        return false;
    s += sizeof(MARK) - 1;
    if (!take_u64(&s, end, &tag) || !take_char(&s, end, '-') || !take_u64(&s, end, &phase)
        || !take_char(&s, end, '-') || !take_u64(&s, end, &m->n) || !take_char(&s, end, '-')
        || !take_u64(&s, end, &m->send_us))
        return false;
    m->tag = (uint32_t)tag;
    m->phase = (uint32_t)phase;
    return true;
}

int ssb_mark_format(char *out, size_t cap, const struct ssb_mark *m)
{
    int n = snprintf(out, cap, "%s%u-%u-%llu-%llu about apple river stone", MARK, m->tag, m->phase,
                     (unsigned long long)m->n, (unsigned long long)m->send_us);

    return n < 0 || (size_t)n >= cap ? -1 : n;
}

size_t ssb_head_end(int *matched, const char *p, size_t len)
{
    size_t i;

    /* Counts line ends with nothing but CR between them: two mean the blank line. */
    for (i = 0; i < len; i++) {
        if (p[i] == '\n') {
            if (++*matched == 2)
                return i + 1;
        } else if (p[i] != '\r') {
            *matched = 0;
        }
    }
    return 0;
}

static bool has_prefix_ci(const char *p, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);

    return len >= n && strncasecmp(p, prefix, n) == 0;
}

int ssb_head_parse(const char *p, size_t len, struct ssb_head *h)
{
    const char *end = p + len;
    const char *line = p;
    uint64_t status;

    h->status = 0;
    h->is_chunked = false;
    h->has_length = false;
    h->content_length = 0;
    if (!has_prefix_ci(p, len, "HTTP/1.") || len < 12)
        return -1;
    line = p + 9;
    if (!take_u64(&line, end, &status) || status < 100 || status > 999)
        return -1;
    h->status = (int)status;
    for (;;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *value;

        if (nl == NULL)
            break;
        line = nl + 1;
        if (has_prefix_ci(line, (size_t)(end - line), "transfer-encoding:")) {
            nl = memchr(line, '\n', (size_t)(end - line));
            value = line + strlen("transfer-encoding:");
            if (nl != NULL && memmem(value, (size_t)(nl - value), "chunked", 7) != NULL)
                h->is_chunked = true;
        } else if (has_prefix_ci(line, (size_t)(end - line), "content-length:")) {
            value = line + strlen("content-length:");
            while (value < end && (*value == ' ' || *value == '\t'))
                value++;
            if (take_u64(&value, end, &h->content_length))
                h->has_length = true;
        }
    }
    return 0;
}

enum { CH_SIZE, CH_EXT, CH_DATA, CH_DATA_END, CH_TRAILER };

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes until p runs out or the last chunk's trailer ends: the bytes used, or -1. */
static ssize_t chunked_run(struct ssb_chunked *c, const char *p, size_t len, ssb_data_fn *fn,
                           void *arg)
{
    size_t i = 0;

    while (i < len && !c->is_done) {
        char ch = p[i];
        int hv;

        switch (c->state) {
        case CH_SIZE:
            hv = hex_value(ch);
            if (hv >= 0) {
                if (c->left > (UINT64_MAX >> 4))
                    return -1;
                c->left = (c->left << 4) | (uint64_t)hv;
            } else if (ch == '\n') {
                c->state = c->left == 0 ? CH_TRAILER : CH_DATA;
            } else {
                c->state = CH_EXT; /* ';' extensions or the CR before LF */
            }
            i++;
            break;
        case CH_EXT:
            if (ch == '\n')
                c->state = c->left == 0 ? CH_TRAILER : CH_DATA;
            i++;
            break;
        case CH_DATA: {
            size_t n = len - i;

            if (n > c->left)
                n = (size_t)c->left;
            fn(arg, p + i, n);
            i += n;
            c->left -= n;
            if (c->left == 0)
                c->state = CH_DATA_END;
            break;
        }
        case CH_DATA_END:
            if (ch == '\n')
                c->state = CH_SIZE;
            else if (ch != '\r')
                return -1;
            i++;
            break;
        case CH_TRAILER:
            /* left counts the characters of the current trailer line; an empty one ends it. */
            if (ch == '\n') {
                if (c->left == 0)
                    c->is_done = true;
                c->left = 0;
            } else if (ch != '\r') {
                c->left++;
            }
            i++;
            break;
        default: return -1;
        }
    }
    return (ssize_t)i;
}

int ssb_chunked_feed(struct ssb_chunked *c, const char *p, size_t len, ssb_data_fn *fn, void *arg)
{
    return chunked_run(c, p, len, fn, arg) < 0 ? -1 : 0;
}

void ssb_resp_reset(struct ssb_resp *r)
{
    r->head_matched = 0;
    r->has_head = false;
    r->is_done = false;
    r->hlen = 0;
    r->body_left = 0;
    memset(&r->head, 0, sizeof(r->head));
    memset(&r->ch, 0, sizeof(r->ch));
}

ssize_t ssb_resp_feed(struct ssb_resp *r, const char *p, size_t len, ssb_data_fn *fn, void *arg)
{
    size_t used = 0;

    if (!r->has_head) {
        size_t n = ssb_head_end(&r->head_matched, p, len);
        size_t take = n > 0 ? n : len;

        if (r->hlen + take > sizeof(r->hbuf))
            return -1;
        memcpy(r->hbuf + r->hlen, p, take);
        r->hlen += take;
        if (n == 0)
            return (ssize_t)len;
        if (ssb_head_parse(r->hbuf, r->hlen, &r->head) < 0)
            return -1;
        r->has_head = true;
        r->body_left = r->head.has_length ? r->head.content_length : 0;
        r->is_done = !r->head.is_chunked && r->head.has_length && r->body_left == 0;
        used = n;
    }
    if (r->is_done || used == len)
        return (ssize_t)used;
    if (r->head.is_chunked) {
        ssize_t n = chunked_run(&r->ch, p + used, len - used, fn, arg);

        if (n < 0)
            return -1;
        r->is_done = r->ch.is_done;
        return (ssize_t)used + n;
    }
    if (!r->head.has_length) {
        fn(arg, p + used, len - used); /* the body runs to the end of the connection */
        return (ssize_t)len;
    }
    if (len - used > r->body_left)
        len = used + (size_t)r->body_left;
    fn(arg, p + used, len - used);
    r->body_left -= len - used;
    r->is_done = r->body_left == 0;
    return (ssize_t)len;
}

static void sse_line(struct ssb_sse *s, const char *p, size_t len, ssb_event_fn *fn, void *arg)
{
    const char *colon;
    const char *v;
    size_t vlen;
    size_t nlen;

    if (len > 0 && p[len - 1] == '\r')
        len--;
    if (len == 0) {
        if (s->has_fields)
            fn(arg, &s->ev);
        memset(&s->ev, 0, sizeof(s->ev));
        s->has_fields = false;
        return;
    }
    if (p[0] == ':')
        return; /* comment (keepalive) */
    colon = memchr(p, ':', len);
    nlen = colon != NULL ? (size_t)(colon - p) : len;
    v = colon != NULL ? colon + 1 : p + len;
    if (v < p + len && *v == ' ')
        v++;
    vlen = (size_t)(p + len - v);
    if (nlen == 2 && memcmp(p, "id", 2) == 0) {
        const char *last = v;
        const char *q;
        uint64_t seq;

        for (q = v; q < v + vlen; q++)
            if (*q == ':')
                last = q + 1;
        if (take_u64(&last, v + vlen, &seq)) {
            s->ev.has_id = true;
            s->ev.id_seq = seq;
        }
        s->has_fields = true;
    } else if (nlen == 5 && memcmp(p, "event", 5) == 0) {
        s->ev.is_connected = vlen == 9 && memcmp(v, "connected", 9) == 0;
        s->has_fields = true;
    } else if (nlen == 4 && memcmp(p, "data", 4) == 0) {
        if (!s->ev.has_mark)
            s->ev.has_mark = ssb_mark_parse(v, vlen, &s->ev.mark);
        s->has_fields = true;
    }
}

void ssb_sse_feed(struct ssb_sse *s, const char *p, size_t len, ssb_event_fn *fn, void *arg)
{
    const char *end = p + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl != NULL ? nl : end) - p);

        if (s->line_len > SSB_LINE_MAX) {
            /* Dropping the rest of an overlong line. */
        } else if (s->line_len + n > SSB_LINE_MAX) {
            s->line_len = SSB_LINE_MAX + 1;
            s->overflows++;
        } else if (nl != NULL && s->line_len == 0) {
            sse_line(s, p, n, fn, arg); /* the common case: the whole line is in this read */
        } else {
            memcpy(s->line + s->line_len, p, n);
            s->line_len += (uint32_t)n;
            if (nl != NULL) {
                sse_line(s, s->line, s->line_len, fn, arg);
                s->line_len = 0;
            }
        }
        if (nl == NULL)
            return;
        if (s->line_len > SSB_LINE_MAX)
            s->line_len = 0;
        p = nl + 1;
    }
}

uint64_t ssb_hist_upper(unsigned b)
{
    unsigned shift;

    if (b < 64)
        return b;
    shift = (b - 64u) / 32u + 1u;
    return ((uint64_t)(32u + (b - 64u) % 32u + 1u) << shift) - 1u;
}

uint64_t ssb_hist_quantile(const uint64_t *h, double q)
{
    uint64_t total = 0;
    uint64_t want;
    uint64_t seen = 0;
    unsigned b;

    for (b = 0; b < SSB_HIST_N; b++)
        total += h[b];
    if (total == 0)
        return 0;
    want = (uint64_t)(q * (double)total + 0.5);
    if (want < 1)
        want = 1;
    if (want > total)
        want = total;
    for (b = 0; b < SSB_HIST_N; b++) {
        seen += h[b];
        if (seen >= want)
            return ssb_hist_upper(b);
    }
    return ssb_hist_upper(SSB_HIST_N - 1);
}
