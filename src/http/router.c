/*
 * Static route table, matched in table order (CORE's order matters for overlapping paths such as
 * /memories/search vs /memories/{id}). Patterns are compared segment by segment against the
 * normalised, still-encoded path; a "{name}" segment takes any one non-empty segment.
 */
#include "engram/http.h"

#include <string.h>

/* Matches pattern against path; on success stores up to EG_HTTP_MAX_PARAMS param spans. */
static bool pattern_match(const char *pattern, const char *path, const char **ps, size_t *pl,
                          size_t *np)
{
    const char *a = pattern;
    const char *b = path;

    *np = 0;
    while (*a != '\0' && *b != '\0') {
        if (*a == '{') {
            const char *close = strchr(a, '}');
            const char *seg_end = strchr(b, '/');
            size_t len = seg_end != NULL ? (size_t)(seg_end - b) : strlen(b);

            if (len == 0 || close == NULL || *np >= EG_HTTP_MAX_PARAMS)
                return false;
            ps[*np] = b;
            pl[*np] = len;
            (*np)++;
            a = close + 1;
            b += len;
            continue;
        }
        if (*a != *b)
            return false;
        a++;
        b++;
    }
    return *a == '\0' && *b == '\0';
}

static void allow_add(char *allow, size_t allow_len, const char *m)
{
    size_t cur = strlen(allow);
    size_t mlen = strlen(m);
    const char *p = allow;

    /* skip duplicates: compare whole comma-separated tokens */
    while (*p != '\0') {
        const char *comma = strstr(p, ", ");
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);

        if (len == mlen && memcmp(p, m, mlen) == 0)
            return;
        p += len;
        if (*p != '\0')
            p += 2;
    }
    if (cur + mlen + 3 > allow_len)
        return;
    if (cur > 0) {
        memcpy(allow + cur, ", ", 2);
        cur += 2;
    }
    memcpy(allow + cur, m, mlen + 1);
}

enum eg_http_match eg_http_route_match(const struct eg_http_route *table, size_t n,
                                       struct eg_http_req *r, const struct eg_http_route **out,
                                       char *allow, size_t allow_len)
{
    const char *ps[EG_HTTP_MAX_PARAMS];
    size_t pl[EG_HTTP_MAX_PARAMS];
    size_t np;
    bool path_known = false;
    int method = r->method == HTTP_HEAD ? HTTP_GET : r->method;

    if (allow_len > 0)
        allow[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!pattern_match(table[i].pattern, r->path, ps, pl, &np))
            continue;
        if (table[i].method != method) {
            path_known = true;
            continue;
        }
        for (size_t k = 0; k < np; k++) {
            r->params[k] = eg_arena_strndup(&r->arena, ps[k], pl[k]);
            if (r->params[k] == NULL)
                return EG_HTTP_MATCH_NOT_FOUND;
        }
        r->param_count = np;
        *out = &table[i];
        return EG_HTTP_MATCH_OK;
    }
    if (!path_known)
        return EG_HTTP_MATCH_NOT_FOUND;
    if (allow_len == 0)
        return EG_HTTP_MATCH_BAD_METHOD;
    for (size_t i = 0; i < n; i++) {
        if (!pattern_match(table[i].pattern, r->path, ps, pl, &np))
            continue;
        allow_add(allow, allow_len, llhttp_method_name((llhttp_method_t)table[i].method));
        if (table[i].method == HTTP_GET)
            allow_add(allow, allow_len, "HEAD");
    }
    return EG_HTTP_MATCH_BAD_METHOD;
}
