/*
 * Path normalisation and decoding the way CORE's WHATWG URL and URLSearchParams do it, so that
 * routing and parameters behave identically (core-contract.md §2.2).
 */
#include "engram/http.h"

#include <stdint.h>
#include <string.h>

#include "engram/json.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A WHATWG "single-dot" or "double-dot" segment: ".", "%2e", "..", ".%2e", "%2e." ... */
static int dot_kind(const char *s, size_t n)
{
    int dots = 0;
    size_t i = 0;

    while (i < n) {
        if (s[i] == '.') {
            i++;
        } else if (i + 2 < n && s[i] == '%' && s[i + 1] == '2' && (s[i + 2] | 32) == 'e') {
            i += 3;
        } else {
            return 0;
        }
        dots++;
        if (dots > 2)
            return 0;
    }
    return dots;
}

size_t eg_http_path_normalize(const char *target, size_t target_len, char *out)
{
    size_t end = 0;
    size_t len;
    size_t o = 0;
    size_t i;
    size_t skip = 0;

    while (end < target_len && target[end] != '?' && target[end] != '#')
        end++;
    /* An absolute-form or asterisk target is not a path; the router will not match it. */
    if (end == 0 || (target[0] != '/' && target[0] != '\\')) {
        memcpy(out, target, end);
        out[end] = '\0';
        return end;
    }
    /* WHATWG, special scheme: a backslash is a slash. */
    for (i = 0; i < end; i++)
        out[i] = target[i] == '\\' ? '/' : target[i];
    len = end;
    /* "//host/path" against http://localhost names a host: the path starts after it. */
    if (len >= 2 && out[1] == '/') {
        while (skip < len && out[skip] == '/')
            skip++;
        while (skip < len && out[skip] != '/')
            skip++;
        if (skip == len) {
            out[0] = '/';
            out[1] = '\0';
            return 1;
        }
    }
    /* Resolve dot segments in place; the write position never passes the read position. */
    i = skip + 1;
    out[o++] = '/';
    while (i <= len) {
        size_t seg_start = i;
        size_t seg_len;
        int kind;

        while (i < len && out[i] != '/')
            i++;
        seg_len = i - seg_start;
        kind = dot_kind(out + seg_start, seg_len);
        if (kind == 1) {
            /* "." contributes nothing; at the end it leaves a trailing slash, as WHATWG does */
        } else if (kind == 2) {
            /* drop the last segment written (out always ends with '/') */
            if (o > 1) {
                o--;
                while (o > 0 && out[o - 1] != '/')
                    o--;
            }
        } else {
            memmove(out + o, out + seg_start, seg_len);
            o += seg_len;
            if (i < len)
                out[o++] = '/';
        }
        i++;
    }
    out[o] = '\0';
    return o;
}

char *eg_http_decode_component(struct eg_arena *a, const char *s, size_t n, size_t *out_len)
{
    char *out = eg_arena_alloc(a, n + 1);
    size_t o = 0;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
                goto raw; /* decodeURIComponent throws; CORE keeps the raw text */
            out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    if (!eg_utf8_valid(out, o))
        goto raw;
    if (out_len != NULL)
        *out_len = o;
    return out;
raw:
    memcpy(out, s, n);
    out[n] = '\0';
    if (out_len != NULL)
        *out_len = n;
    return out;
}

/*
 * application/x-www-form-urlencoded decoding: '+' is a space, a malformed escape stays literal, and
 * bytes that are not valid UTF-8 become U+FFFD (URLSearchParams decodes with the WHATWG decoder).
 */
static char *form_decode(struct eg_arena *a, const char *s, size_t n, size_t *out_len)
{
    char *out = eg_arena_alloc(a, n + 1);
    size_t o = 0;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    if (!eg_utf8_valid(out, o)) {
        /* A U+FFFD takes at most 3 bytes per input byte. */
        char *fixed = eg_arena_alloc(a, 3 * o + 1);
        size_t f = 0;

        if (fixed == NULL)
            return NULL;
        for (size_t i = 0; i < o;) {
            uint32_t cp;

            i += eg_utf8_next((const unsigned char *)out + i, o - i, &cp);
            f += eg_utf8_put(fixed + f, cp);
        }
        fixed[f] = '\0';
        out = fixed;
        o = f;
    }
    if (out_len != NULL)
        *out_len = o;
    return out;
}

/* Iterates "name=value" pairs; calls fn for those whose decoded name equals name. */
static size_t query_scan(struct eg_arena *a, const char *query, const char *name,
                         void (*fn)(const char *v, size_t len, void *data), void *data, bool first)
{
    size_t name_len = strlen(name);
    size_t count = 0;
    const char *p = query;

    if (query == NULL)
        return 0;
    while (*p != '\0') {
        const char *amp = strchr(p, '&');
        size_t len = amp != NULL ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq != NULL ? (size_t)(eq - p) : len;
        size_t dklen;
        char *key;

        if (len > 0) {
            key = form_decode(a, p, klen, &dklen);
            if (key != NULL && dklen == name_len && memcmp(key, name, name_len) == 0) {
                size_t vlen = 0;
                char *v = eq != NULL ? form_decode(a, eq + 1, len - klen - 1, &vlen)
                                     : form_decode(a, "", 0, &vlen);

                if (v != NULL) {
                    fn(v, vlen, data);
                    count++;
                    if (first)
                        return count;
                }
            }
        }
        p += len;
        if (*p == '&')
            p++;
    }
    return count;
}

struct first_hit {
    char *v;
    size_t len;
};

static void keep_first(const char *v, size_t len, void *data)
{
    struct first_hit *h = data;

    h->v = (char *)v;
    h->len = len;
}

char *eg_http_query_get(struct eg_arena *a, const char *query, const char *name, size_t *len)
{
    struct first_hit h = {NULL, 0};

    query_scan(a, query, name, keep_first, &h, true);
    if (len != NULL)
        *len = h.len;
    return h.v;
}

size_t eg_http_query_get_all(struct eg_arena *a, const char *query, const char *name,
                             void (*fn)(const char *v, size_t len, void *data), void *data)
{
    return query_scan(a, query, name, fn, data, false);
}
