/*
 * llhttp glue with limits. llhttp itself sets no size limits, so every callback counts bytes
 * and returns HPE_USER with our status once a ceiling is passed (RELIABILITY.md §0.4). The parser
 * pauses after each complete message (HPE_PAUSED from on_message_complete) so the connection can
 * bound its pipeline; llhttp_get_error_pos tells where to resume.
 *
 * llhttp 8.1 accepts two things that lead to smuggling, which we reject here: whitespace before
 * the colon of a header name ("Host : x" reaches us as the name "Host ") and obs-fold
 * continuation lines (which reach us as a value containing CR/LF).
 */
#include "engram/http.h"

#include <string.h>

static struct eg_http_parser *parser_of(llhttp_t *ll)
{
    return EG_CONTAINER_OF(ll, struct eg_http_parser, ll);
}

static int fail(struct eg_http_parser *p, int status, const char *reason)
{
    p->error_status = status;
    p->error_reason = reason;
    return HPE_USER;
}

static int on_message_begin(llhttp_t *ll)
{
    struct eg_http_parser *p = parser_of(ll);

    p->in_message = true;
    p->head_done = false;
    if (p->cur == NULL)
        p->cur = p->new_req(p->data);
    p->cur->start_ns = eg_mono_ns();
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
    struct eg_http_parser *p = parser_of(ll);
    struct eg_http_req *r = p->cur;

    if (r->target_len + len > p->limits->url_bytes)
        return fail(p, 414, "request target too long");
    /* field is reused as the URL accumulator until the first header starts */
    if (eg_buf_append(&r->field, at, len) < 0)
        return fail(p, 414, "request target too long");
    r->target_len += len;
    return 0;
}

static int on_url_complete(llhttp_t *ll)
{
    struct eg_http_parser *p = parser_of(ll);
    struct eg_http_req *r = p->cur;
    char *q;

    r->target = eg_arena_strndup(&r->arena, r->field.base ? r->field.base : "", r->target_len);
    if (r->target == NULL)
        return fail(p, 414, "request target too long");
    if (memchr(r->target, '\0', r->target_len) != NULL)
        return fail(p, 400, "NUL in request target");
    eg_buf_reset(&r->field);
    r->path = eg_arena_alloc(&r->arena, r->target_len + 2);
    if (r->path == NULL)
        return fail(p, 414, "request target too long");
    eg_http_path_normalize(r->target, r->target_len, r->path);
    q = memchr(r->target, '?', r->target_len);
    if (q != NULL) {
        char *hash = strchr(q + 1, '#');

        r->query =
            eg_arena_strndup(&r->arena, q + 1, hash ? (size_t)(hash - q - 1) : strlen(q + 1));
    }
    return 0;
}

static int check_header_bytes(struct eg_http_parser *p, size_t len)
{
    struct eg_http_req *r = p->cur;

    r->header_bytes += len;
    if (r->header_bytes > p->limits->header_bytes)
        return fail(p, 431, "header section too large");
    return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    struct eg_http_parser *p = parser_of(ll);
    struct eg_http_req *r = p->cur;

    if (check_header_bytes(p, len) != 0)
        return HPE_USER;
    for (size_t i = 0; i < len; i++) {
        if (at[i] == ' ' || at[i] == '\t')
            return fail(p, 400, "whitespace in header name");
    }
    if (eg_buf_append(&r->field, at, len) < 0)
        return fail(p, 431, "header section too large");
    p->field_end = at + len;
    p->nl_after_field = false;
    p->await_value = true;
    return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    struct eg_http_parser *p = parser_of(ll);
    struct eg_http_req *r = p->cur;

    /*
     * llhttp 8.1 reports an obs-fold continuation ("X: a\r\n b") as a further chunk of the same
     * value, skipping the CRLF and whitespace. A legitimate further chunk only happens when the
     * value was split across reads: it then starts exactly at the new buffer's first byte and the
     * previous chunk ended exactly at the old buffer's end. Anything else left a gap: a fold.
     */
    /* llhttp reports an empty value as a zero-length chunk placed after the line break; it
     * carries nothing, so only the name needs checking. */
    if (len == 0)
        return r->field.len == 0 && !p->value_open ? fail(p, 400, "empty header name") : 0;
    if (p->value_open) {
        bool contiguous = p->value_end != NULL ? at == p->value_end
                                               : (at == p->exec_start && p->value_at_buf_end);

        if (!contiguous)
            return fail(p, 400, "obs-fold in header value");
    }
    if (!p->value_open) {
        /* An empty value followed by a folded line ("Host:\r\n b") reaches us as the first
         * chunk of the value, with a line break between the name and it. */
        const char *gap = p->field_end != NULL ? p->field_end : p->exec_start;

        if (p->nl_after_field || memchr(gap, '\n', (size_t)(at - gap)) != NULL)
            return fail(p, 400, "obs-fold in header value");
        if (r->field.len == 0)
            return fail(p, 400, "empty header name");
        p->await_value = false;
    }
    p->value_open = true;
    p->value_end = at + len;
    if (check_header_bytes(p, len) != 0)
        return HPE_USER;
    for (size_t i = 0; i < len; i++) {
        if (at[i] == '\r' || at[i] == '\n' || at[i] == '\0')
            return fail(p, 400, "obs-fold or control character in header value");
    }
    if (eg_buf_append(&r->value, at, len) < 0)
        return fail(p, 431, "header section too large");
    return 0;
}

static int on_header_value_complete(llhttp_t *ll)
{
    struct eg_http_parser *p = parser_of(ll);
    struct eg_http_req *r = p->cur;
    struct eg_http_header *h;
    const char *v = r->value.base ? r->value.base : "";
    size_t vlen = r->value.len;

    p->value_open = false;
    p->value_end = NULL;
    p->nl_after_field = false;
    p->await_value = false;
    if (r->field.len == 0)
        return fail(p, 400, "empty header name");
    if (r->header_count >= p->limits->header_count)
        return fail(p, 431, "too many header fields");
    if (r->header_count == r->header_cap) {
        size_t cap = r->header_cap ? r->header_cap * 2 : 8;
        struct eg_http_header *nh = eg_arena_alloc(&r->arena, cap * sizeof(*nh));

        if (nh == NULL)
            return fail(p, 431, "header section too large");
        if (r->header_count > 0)
            memcpy(nh, r->headers, r->header_count * sizeof(*nh));
        r->headers = nh;
        r->header_cap = cap;
    }
    /* Trailing whitespace of a value is not part of it (RFC 9110 §5.5); llhttp keeps it. */
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    h = &r->headers[r->header_count];
    h->name = eg_arena_strndup(&r->arena, r->field.base ? r->field.base : "", r->field.len);
    h->value = eg_arena_strndup(&r->arena, v, vlen);
    if (h->name == NULL || h->value == NULL)
        return fail(p, 431, "header section too large");
    h->name_len = r->field.len;
    h->value_len = vlen;
    r->header_count++;
    eg_buf_reset(&r->field);
    eg_buf_reset(&r->value);
    return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
    struct eg_http_parser *p = parser_of(ll);
    struct eg_http_req *r = p->cur;
    size_t len;
    const char *expect;

    p->value_open = false;
    if (ll->http_major != 1)
        return fail(p, 400, "unsupported HTTP version");
    r->method = llhttp_get_method(ll);
    r->method_name = llhttp_method_name((llhttp_method_t)r->method);
    r->is_head = r->method == HTTP_HEAD;
    r->keep_alive = llhttp_should_keep_alive(ll);
    if ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > p->limits->body_bytes)
        return fail(p, 413, "declared body too large");
    expect = eg_http_req_header(r, "expect", &len);
    if (expect != NULL) {
        if (len == 12 && eg_ascii_caseeq(expect, "100-continue", 12))
            r->expect_continue = true;
        else
            return fail(p, 417, "unsupported expectation");
    }
    /* The field/value scratch buffers are no longer needed; give their memory back now. */
    eg_buf_fini(&r->field);
    eg_buf_fini(&r->value);
    p->head_done = true;
    if (p->on_head != NULL)
        p->on_head(p, r, p->data);
    return 0;
}

/*
 * llhttp 8.1 accepts a bare LF as the end of the request line, of the header block and of a
 * chunked body's last chunk. Line breaks are only legitimate inside body data, so every LF outside
 * the ranges on_body reports must follow a CR.
 */
static bool has_bare_lf(struct eg_http_parser *p, const char *from, const char *to)
{
    for (const char *q = from; q < to; q++) {
        if (*q != '\n')
            continue;
        if ((q == p->exec_start ? p->prev_byte : q[-1]) != '\r')
            return true;
    }
    return false;
}

static int on_body(llhttp_t *ll, const char *at, size_t len)
{
    struct eg_http_parser *p = parser_of(ll);

    if (has_bare_lf(p, p->lf_scan, at))
        return fail(p, 400, "bare LF line ending");
    p->lf_scan = at + len;
    if (eg_buf_append(&p->cur->body, at, len) < 0)
        return fail(p, 413, "body too large");
    return 0;
}

static int on_message_complete(llhttp_t *ll)
{
    struct eg_http_parser *p = parser_of(ll);

    if (ll->http_major != 1)
        return fail(p, 400, "unsupported HTTP version");
    /* We speak no upgraded protocol: an Upgrade request is the connection's last. */
    if (ll->upgrade)
        p->cur->keep_alive = false;
    p->done = p->cur;
    p->cur = NULL;
    p->in_message = false;
    p->head_done = false;
    return HPE_PAUSED;
}

void eg_http_parser_init(struct eg_http_parser *p, const struct eg_http_limits *limits,
                         eg_http_req_new_fn *new_req, eg_http_head_fn *on_head, void *data)
{
    /* Shared by every connection (llhttp only reads it): 200+ bytes fewer per connection. */
    static const llhttp_settings_t settings = {
        .on_message_begin = on_message_begin,
        .on_url = on_url,
        .on_url_complete = on_url_complete,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_header_value_complete = on_header_value_complete,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
    };

    memset(p, 0, sizeof(*p));
    llhttp_init(&p->ll, HTTP_REQUEST, &settings);
    p->limits = limits;
    p->new_req = new_req;
    p->on_head = on_head;
    p->data = data;
}

enum eg_http_parse_event eg_http_parser_feed(struct eg_http_parser *p, const char *data, size_t n,
                                             size_t *consumed)
{
    llhttp_errno_t err;

    *consumed = 0;
    if (p->error_status != 0)
        return EG_HTTP_PARSE_ERROR;
    if (!p->in_message) {
        p->line_len = 0;
        p->head_scanned = false;
        p->line_seen = false;
    }
    /*
     * Bare LF in the header block is refused before llhttp sees the bytes, so the first framing
     * error in byte order decides the status however the bytes were split (otherwise a later
     * 417 or 413 from a callback could win when they arrive together, and 400 when split).
     */
    if (!p->head_scanned) {
        char prev = p->prev_byte;

        for (size_t i = 0; i < n; i++) {
            char ch = data[i];

            if (ch == '\n') {
                if (prev != '\r') {
                    p->error_status = 400;
                    p->error_reason = "bare LF line ending";
                    *consumed = n;
                    return EG_HTTP_PARSE_ERROR;
                }
                if (p->line_len == 0 && p->line_seen) {
                    p->head_scanned = true; /* the blank line: the body (if any) follows */
                    break;
                }
                p->line_len = 0;
            } else if (ch != '\r') {
                p->line_len++;
                p->line_seen = true;
            }
            prev = ch;
        }
    }
    p->exec_start = data;
    p->value_end = NULL;
    p->field_end = NULL;
    p->lf_scan = data;
    err = llhttp_execute(&p->ll, data, n);
    /* Remember whether an open header value ran to the very end of this buffer, and whether a
     * line break followed a header name that has no value yet. */
    p->value_at_buf_end = p->value_open && p->value_end == data + n;
    p->value_end = NULL;
    if (p->await_value) {
        const char *from = p->field_end != NULL ? p->field_end : data;

        if (memchr(from, '\n', (size_t)(data + n - from)) != NULL)
            p->nl_after_field = true;
    }
    p->field_end = NULL;
    if (err == HPE_OK || err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        const char *end = err == HPE_OK ? data + n : llhttp_get_error_pos(&p->ll);

        if (has_bare_lf(p, p->lf_scan, end)) {
            /* A request completed in this call is refused whole: hand it back as the partial
             * one, so the caller answers (and frees) it like any other failed request. */
            if (p->done != NULL) {
                p->cur = p->done;
                p->done = NULL;
            }
            p->error_status = 400;
            p->error_reason = "bare LF line ending";
            *consumed = n;
            return EG_HTTP_PARSE_ERROR;
        }
        if (end > data)
            p->prev_byte = end[-1];
    }
    if (err == HPE_OK) {
        *consumed = n;
        return EG_HTTP_PARSE_MORE;
    }
    if (err == HPE_PAUSED) {
        *consumed = (size_t)(llhttp_get_error_pos(&p->ll) - data);
        llhttp_resume(&p->ll);
        return EG_HTTP_PARSE_REQUEST;
    }
    if (err == HPE_PAUSED_UPGRADE) {
        /* We speak no upgraded protocol: treat the request as the connection's last. */
        *consumed = n;
        if (p->cur != NULL && p->head_done) {
            p->done = p->cur;
            p->cur = NULL;
            p->done->keep_alive = false;
            p->in_message = false;
            return EG_HTTP_PARSE_REQUEST;
        }
        p->error_status = 400;
        p->error_reason = "upgrade not supported";
        return EG_HTTP_PARSE_ERROR;
    }
    /*
     * A limit our callback enforced keeps its status: llhttp reports an error returned from a
     * *_complete callback under its own code (HPE_CB_*), not HPE_USER.
     */
    if (p->error_status == 0) {
        p->error_status = 400;
        p->error_reason = llhttp_errno_name(err);
    }
    *consumed = n;
    return EG_HTTP_PARSE_ERROR;
}

struct eg_http_req *eg_http_parser_take(struct eg_http_parser *p)
{
    struct eg_http_req *r = p->done;

    p->done = NULL;
    return r;
}

struct eg_http_req *eg_http_parser_abandon(struct eg_http_parser *p)
{
    struct eg_http_req *r = p->cur;

    p->cur = NULL;
    return r;
}

struct eg_http_req *eg_http_req_new(size_t arena_bytes, size_t body_max)
{
    struct eg_http_req *r = eg_calloc(1, sizeof(*r));

    eg_arena_init(&r->arena, arena_bytes);
    eg_buf_init(&r->body, body_max);
    /* Scratch for the URL and one header at a time; the section limit bounds them too. */
    eg_buf_init(&r->field, 64 * 1024);
    eg_buf_init(&r->value, 64 * 1024);
    eg_buf_init(&r->resp_headers, 16 * 1024);
    eg_buf_init(&r->resp_body, 64u << 20);
    eg_buf_init(&r->stream_out, EG_HTTP_STREAM_MAX);
    r->route_id = -1;
    r->route_name = "unmatched";
    return r;
}

void eg_http_req_free(struct eg_http_req *r)
{
    if (r == NULL)
        return;
    eg_arena_fini(&r->arena);
    eg_buf_fini(&r->body);
    eg_buf_fini(&r->field);
    eg_buf_fini(&r->value);
    eg_buf_fini(&r->resp_headers);
    eg_buf_fini(&r->resp_body);
    eg_buf_fini(&r->stream_out);
    eg_free(r);
}

const char *eg_http_req_header(const struct eg_http_req *r, const char *name, size_t *len)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < r->header_count; i++) {
        const struct eg_http_header *h = &r->headers[i];

        if (h->name_len == n && eg_ascii_caseeq(h->name, name, n)) {
            if (len != NULL)
                *len = h->value_len;
            return h->value;
        }
    }
    return NULL;
}
