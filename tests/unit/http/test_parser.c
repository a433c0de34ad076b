/*
 * Tests for src/http/parser.c: the llhttp glue with limits, driven directly (no sockets).
 *
 * Per STYLE.md §8 every parser test that matters is run at every split point and with random
 * chunkings, and bytes are fed from right before a PROT_NONE guard page so any over-read crashes.
 * Every request the parser hands out (taken or abandoned) is freed, so ASan also checks leaks.
 */
#include <engram/http.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <engram/core.h>

#include "../harness.h"

/* ---- fixture ------------------------------------------------------------------------------ */

struct fixture {
    struct eg_http_limits limits;
    struct eg_http_parser p;
    size_t created;           /* requests allocated through new_req */
    size_t heads;             /* on_head calls */
    size_t head_header_count; /* header_count seen by the last on_head */
    size_t head_body_len;     /* body length seen by the last on_head */
    bool head_expect;         /* expect_continue seen by the last on_head */
};

static struct eg_http_req *fx_new_req(void *data)
{
    struct fixture *f = data;

    f->created++;
    return eg_http_req_new(f->limits.arena_bytes, f->limits.body_bytes);
}

static void fx_on_head(struct eg_http_parser *p, struct eg_http_req *r, void *data)
{
    struct fixture *f = data;

    (void)p;
    f->heads++;
    f->head_header_count = r->header_count;
    f->head_body_len = r->body.len;
    f->head_expect = r->expect_continue;
}

/* f must not move afterwards: the parser keeps pointers to f->limits and f. */
static void fx_init(struct fixture *f, const struct eg_http_limits *limits)
{
    memset(f, 0, sizeof(*f));
    f->limits = limits != NULL ? *limits : EG_HTTP_LIMITS_DEFAULT;
    eg_http_parser_init(&f->p, &f->limits, fx_new_req, fx_on_head, f);
}

static void fx_fini(struct fixture *f)
{
    eg_http_req_free(eg_http_parser_take(&f->p));
    eg_http_req_free(eg_http_parser_abandon(&f->p));
}

static struct eg_http_limits small_limits(void)
{
    struct eg_http_limits l = {.url_bytes = 32,
                               .header_bytes = 64,
                               .header_count = 4,
                               .body_bytes = 16,
                               .arena_bytes = 64 * 1024};
    return l;
}

/* ---- guard page --------------------------------------------------------------------------- */

static char *guard_base;
static size_t guard_page;

/* Copies n bytes so that they end exactly at a PROT_NONE page; returns where they start. */
static const char *guarded(const char *d, size_t n)
{
    if (guard_base == NULL) {
        guard_page = (size_t)sysconf(_SC_PAGESIZE);
        guard_base =
            mmap(NULL, 2 * guard_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (guard_base == MAP_FAILED)
            abort();
        if (mprotect(guard_base + guard_page, guard_page, PROT_NONE) != 0)
            abort();
    }
    if (n > guard_page)
        abort();
    memmove(guard_base + guard_page - n, d, n);
    return guard_base + guard_page - n;
}

/* ---- feeding helpers ---------------------------------------------------------------------- */

#define MAX_REQS 16

struct collected {
    struct eg_http_req *reqs[MAX_REQS];
    size_t count;
    size_t consumed_at[MAX_REQS]; /* offset in the whole stream after each request */
    size_t offset;                /* bytes of the stream accepted so far */
};

static void collected_free(struct collected *c)
{
    for (size_t i = 0; i < c->count; i++)
        eg_http_req_free(c->reqs[i]);
    c->count = 0;
}

/*
 * Feeds one piece (copied against the guard page), taking every completed request and feeding
 * the rest of the piece again, as the server does. Returns the last event.
 */
static enum eg_http_parse_event feed_piece(struct fixture *f, const char *d, size_t n,
                                           struct collected *c)
{
    const char *g = guarded(d, n);
    enum eg_http_parse_event ev;

    for (int rounds = 0;; rounds++) {
        size_t used = 12345;

        if (rounds > MAX_REQS + 2)
            abort(); /* the parser makes no progress */
        ev = eg_http_parser_feed(&f->p, g, n, &used);
        if (ev == EG_HTTP_PARSE_ERROR)
            return ev;
        if (used > n)
            abort();
        c->offset += used;
        if (ev == EG_HTTP_PARSE_MORE) {
            if (used != n)
                abort(); /* MORE means everything was consumed */
            return ev;
        }
        if (c->count == MAX_REQS)
            abort();
        c->consumed_at[c->count] = c->offset;
        c->reqs[c->count++] = eg_http_parser_take(&f->p);
        g += used;
        n -= used;
        if (n == 0)
            return ev;
    }
}

/* A textual summary of everything parsed into r, to compare results of different feedings. */
static char *digest(const struct eg_http_req *r, size_t *len)
{
    struct eg_buf b;

    eg_buf_init(&b, 1u << 20);
    eg_buf_printf(&b, "method=%d %s|target=%s(%zu)|path=%s|query=%s|", r->method,
                  r->method_name ? r->method_name : "-", r->target ? r->target : "(null)",
                  r->target_len, r->path ? r->path : "(null)", r->query ? r->query : "(null)");
    for (size_t i = 0; i < r->header_count; i++) {
        eg_buf_printf(&b, "h[%s(%zu)]=[", r->headers[i].name, r->headers[i].name_len);
        eg_buf_append(&b, r->headers[i].value, r->headers[i].value_len);
        eg_buf_puts(&b, "]|");
    }
    eg_buf_printf(&b, "body(%zu)=[", r->body.len);
    if (r->body.len > 0)
        eg_buf_append(&b, r->body.base, r->body.len);
    eg_buf_printf(&b, "]|ka=%d head=%d expect=%d", r->keep_alive, r->is_head, r->expect_continue);
    return eg_buf_take(&b, len);
}

/* Parses one whole request fed at once; NULL unless the parser reported exactly one request. */
static struct eg_http_req *parse_whole(struct fixture *f, const char *d, size_t n)
{
    struct collected c = {0};
    enum eg_http_parse_event ev = feed_piece(f, d, n, &c);

    if (ev != EG_HTTP_PARSE_REQUEST || c.count != 1 || c.offset != n) {
        collected_free(&c);
        return NULL;
    }
    return c.reqs[0];
}

#define S(lit) lit, sizeof(lit) - 1

/* Checks that lit fails with EG_HTTP_PARSE_ERROR and the given status (whole input at once). */
#define ASSERT_PARSE_FAILS(lit, status)                                                            \
    do {                                                                                           \
        struct fixture f_;                                                                         \
        struct collected c_ = {0};                                                                 \
        enum eg_http_parse_event ev_;                                                              \
        fx_init(&f_, NULL);                                                                        \
        ev_ = feed_piece(&f_, S(lit), &c_);                                                        \
        collected_free(&c_);                                                                       \
        fx_fini(&f_);                                                                              \
        ASSERT_INT_EQ(EG_HTTP_PARSE_ERROR, ev_);                                                   \
        ASSERT_INT_EQ((status), f_.p.error_status);                                                \
        ASSERT_TRUE(f_.p.error_reason != NULL);                                                    \
    } while (0)

/* ---- basics ------------------------------------------------------------------------------- */

TEST(simple_get)
{
    static const char req[] = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    struct fixture f;
    struct eg_http_req *r;
    size_t len = 0;

    fx_init(&f, NULL);
    r = parse_whole(&f, S(req));
    ASSERT_TRUE(r != NULL);
    ASSERT_INT_EQ(HTTP_GET, r->method);
    ASSERT_STR_EQ("GET", r->method_name);
    ASSERT_STR_EQ("/health", r->target);
    ASSERT_EQ((size_t)7, r->target_len);
    ASSERT_STR_EQ("/health", r->path);
    ASSERT_TRUE(r->query == NULL);
    ASSERT_EQ((size_t)1, r->header_count);
    ASSERT_STR_EQ("localhost", eg_http_req_header(r, "host", &len));
    ASSERT_EQ((size_t)9, len);
    ASSERT_EQ((size_t)0, r->body.len);
    ASSERT_TRUE(r->keep_alive);
    ASSERT_TRUE(!r->is_head);
    ASSERT_TRUE(!r->expect_continue);
    ASSERT_INT_EQ(-1, r->route_id);
    ASSERT_STR_EQ("unmatched", r->route_name);
    ASSERT_EQ((size_t)1, f.created);
    ASSERT_EQ((size_t)1, f.heads);
    ASSERT_TRUE(!f.p.in_message);
    ASSERT_TRUE(eg_http_parser_take(&f.p) == NULL); /* already taken */
    ASSERT_TRUE(eg_http_parser_abandon(&f.p) == NULL);
    eg_http_req_free(r);
    fx_fini(&f);
}

TEST(target_path_and_query)
{
    static const char req[] =
        "GET /api/v1/./memories/../memories?project=a%20b&x=1#frag HTTP/1.1\r\n"
        "Host: h\r\n\r\n";
    struct fixture f;
    struct eg_http_req *r;

    fx_init(&f, NULL);
    r = parse_whole(&f, S(req));
    ASSERT_TRUE(r != NULL);
    ASSERT_STR_EQ("/api/v1/./memories/../memories?project=a%20b&x=1#frag", r->target);
    ASSERT_STR_EQ("/api/v1/memories", r->path);
    ASSERT_STR_EQ("project=a%20b&x=1", r->query);
    eg_http_req_free(r);
    fx_fini(&f);
}

TEST(empty_query)
{
    static const char req[] = "GET /a? HTTP/1.1\r\nHost: h\r\n\r\n";
    struct fixture f;
    struct eg_http_req *r;

    fx_init(&f, NULL);
    r = parse_whole(&f, S(req));
    ASSERT_TRUE(r != NULL);
    ASSERT_STR_EQ("/a", r->path);
    ASSERT_STR_EQ("", r->query);
    eg_http_req_free(r);
    fx_fini(&f);
}

TEST(headers_parsed)
{
    static const char req[] = "GET / HTTP/1.1\r\n"
                              "Host: example.com\r\n"
                              "Content-Type:application/json  \t \r\n"
                              "X-Empty:\r\n"
                              "X-Dup: first\r\n"
                              "x-dup: second\r\n"
                              "X-Inner:  a  b \r\n"
                              "\r\n";
    struct fixture f;
    struct eg_http_req *r;
    size_t len = 99;

    fx_init(&f, NULL);
    r = parse_whole(&f, S(req));
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ((size_t)6, r->header_count);
    /* names as received */
    ASSERT_STR_EQ("Host", r->headers[0].name);
    ASSERT_EQ((size_t)4, r->headers[0].name_len);
    ASSERT_STR_EQ("example.com", r->headers[0].value);
    ASSERT_STR_EQ("Content-Type", r->headers[1].name);
    ASSERT_STR_EQ("x-dup", r->headers[4].name);
    /* trailing whitespace trimmed; inner whitespace kept; leading OWS dropped */
    ASSERT_STR_EQ("application/json", r->headers[1].value);
    ASSERT_EQ((size_t)16, r->headers[1].value_len);
    ASSERT_STR_EQ("a  b", r->headers[5].value);
    ASSERT_EQ((size_t)4, r->headers[5].value_len);
    /* case-insensitive lookup, first wins */
    ASSERT_STR_EQ("application/json", eg_http_req_header(r, "CONTENT-TYPE", &len));
    ASSERT_EQ((size_t)16, len);
    ASSERT_STR_EQ("example.com", eg_http_req_header(r, "hOsT", NULL));
    ASSERT_STR_EQ("first", eg_http_req_header(r, "X-DUP", &len));
    ASSERT_EQ((size_t)5, len);
    ASSERT_STR_EQ("", eg_http_req_header(r, "x-empty", &len));
    ASSERT_EQ((size_t)0, len);
    len = 77;
    ASSERT_TRUE(eg_http_req_header(r, "x-missing", &len) == NULL);
    ASSERT_EQ((size_t)77, len);                              /* untouched when absent */
    ASSERT_TRUE(eg_http_req_header(r, "Hos", NULL) == NULL); /* no prefix match */
    ASSERT_TRUE(eg_http_req_header(r, "Host2", NULL) == NULL);
    eg_http_req_free(r);
    fx_fini(&f);
}

TEST(body_content_length)
{
    static const char req[] = "POST /api/v1/memories HTTP/1.1\r\n"
                              "Host: h\r\n"
                              "Content-Length: 11\r\n"
                              "\r\n"
                              "hello\0world";
    struct fixture f;
    struct eg_http_req *r;

    fx_init(&f, NULL);
    r = parse_whole(&f, S(req));
    ASSERT_TRUE(r != NULL);
    ASSERT_INT_EQ(HTTP_POST, r->method);
    ASSERT_STR_EQ("POST", r->method_name);
    ASSERT_MEM_EQ(r->body.base, r->body.len, "hello\0world");
    ASSERT_EQ((size_t)1, f.heads);
    ASSERT_EQ((size_t)0, f.head_body_len); /* on_head ran before any body byte */
    eg_http_req_free(r);
    fx_fini(&f);
}

TEST(body_content_length_zero)
{
    static const char req[] = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
    struct fixture f;
    struct eg_http_req *r;

    fx_init(&f, NULL);
    r = parse_whole(&f, S(req));
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ((size_t)0, r->body.len);
    eg_http_req_free(r);
    fx_fini(&f);
}

TEST(body_chunked)
{
    static const char req[] = "POST /x HTTP/1.1\r\n"
                              "Host: h\r\n"
                              "Transfer-Encoding: chunked\r\n"
                              "\r\n"
                              "5\r\nhello\r\n"
                              "1;ext=1\r\n \r\n"
                              "A\r\n0123456789\r\n"
                              "0\r\n"
                              "\r\n";
    struct fixture f;
    struct eg_http_req *r;

    fx_init(&f, NULL);
    r = parse_whole(&f, S(req));
    ASSERT_TRUE(r != NULL);
    ASSERT_MEM_EQ(r->body.base, r->body.len, "hello 0123456789");
    ASSERT_EQ((size_t)1, f.heads);
    ASSERT_EQ((size_t)0, f.head_body_len);
    eg_http_req_free(r);
    fx_fini(&f);
}

TEST(pipelined_requests)
{
    static const char r1[] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    static const char r2[] = "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
    static const char r3[] = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "2\r\nxy\r\n0\r\n\r\n";
    static const char r4[] = "HEAD /d HTTP/1.1\r\nHost: h\r\n\r\n";
    static const char all[] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                              "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                              "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "2\r\nxy\r\n0\r\n\r\n"
                              "HEAD /d HTTP/1.1\r\nHost: h\r\n\r\n";
    const size_t lens[] = {sizeof(r1) - 1, sizeof(r2) - 1, sizeof(r3) - 1, sizeof(r4) - 1};
    static const char *const paths[] = {"/a", "/b", "/c", "/d"};
    static const char *const texts[] = {r1, r2, r3, r4};
    struct fixture f;
    const char *g = guarded(S(all));
    size_t n = sizeof(all) - 1;
    size_t off = 0;

    fx_init(&f, NULL);
    for (size_t i = 0; i < 4; i++) {
        size_t used = 0;
        struct eg_http_req *r;

        ASSERT_INT_EQ(EG_HTTP_PARSE_REQUEST, eg_http_parser_feed(&f.p, g + off, n - off, &used));
        /* consumed points at the next request's first byte */
        ASSERT_EQ(lens[i], used);
        ASSERT_EQ(i + 1, f.heads);
        r = eg_http_parser_take(&f.p);
        ASSERT_TRUE(r != NULL);
        ASSERT_STR_EQ(paths[i], r->path);
        if (i == 1)
            ASSERT_MEM_EQ(r->body.base, r->body.len, "abc");
        if (i == 2)
            ASSERT_MEM_EQ(r->body.base, r->body.len, "xy");
        ASSERT_EQ(i == 3, r->is_head);
        eg_http_req_free(r);
        off += used;
        if (i + 1 < 4)
            ASSERT_TRUE(memcmp(g + off, texts[i + 1], lens[i + 1]) == 0);
    }
    ASSERT_EQ(n, off);
    ASSERT_EQ((size_t)4, f.created);
    /* an empty feed between requests is harmless */
    {
        size_t used = 9;

        ASSERT_INT_EQ(EG_HTTP_PARSE_MORE, eg_http_parser_feed(&f.p, g + n, 0, &used));
        ASSERT_EQ((size_t)0, used);
    }
    fx_fini(&f);
}

/* ---- every split point -------------------------------------------------------------------- */

/* Parses msg whole, then split in two at every offset; every result must be identical. */
static bool check_all_splits(const char *msg, size_t n)
{
    struct fixture f;
    struct eg_http_req *r;
    char *want;
    size_t want_len;
    bool ok = true;

    fx_init(&f, NULL);
    r = parse_whole(&f, msg, n);
    if (r == NULL) {
        fx_fini(&f);
        printf("# whole message did not parse\n");
        return false;
    }
    want = digest(r, &want_len);
    eg_http_req_free(r);
    fx_fini(&f);

    for (size_t k = 0; k <= n && ok; k++) {
        struct collected c = {0};
        enum eg_http_parse_event ev1;
        enum eg_http_parse_event ev2 = EG_HTTP_PARSE_MORE;

        fx_init(&f, NULL);
        ev1 = feed_piece(&f, msg, k, &c);
        if (k < n)
            ev2 = feed_piece(&f, msg + k, n - k, &c);
        if (ev1 != (k == n ? EG_HTTP_PARSE_REQUEST : EG_HTTP_PARSE_MORE)
            || (k < n && ev2 != EG_HTTP_PARSE_REQUEST) || c.count != 1 || c.offset != n
            || f.heads != 1 || f.created != 1) {
            printf("# split at %zu: events %d/%d, %zu requests, offset %zu, %zu heads\n", k,
                   (int)ev1, (int)ev2, c.count, c.offset, f.heads);
            ok = false;
        } else {
            size_t got_len;
            char *got = digest(c.reqs[0], &got_len);

            if (got_len != want_len || memcmp(got, want, want_len) != 0) {
                printf("# split at %zu: got %s\n#   want %s\n", k, got, want);
                ok = false;
            }
            eg_free(got);
        }
        collected_free(&c);
        fx_fini(&f);
    }
    eg_free(want);
    return ok;
}

TEST(split_content_length)
{
    static const char req[] = "POST /api/v1/memories/x%2Fy?project=p%201&q=a+b HTTP/1.1\r\n"
                              "Host: example.com\r\n"
                              "Content-Type: application/json \t\r\n"
                              "X-Request-Id:  abc-123\r\n"
                              "Content-Length: 26\r\n"
                              "\r\n"
                              "{\"content\":\"hi\\r\\n\",\"n\":1}";

    ASSERT_TRUE(sizeof(req) - 1 > 100);
    ASSERT_TRUE(check_all_splits(S(req)));
}

TEST(split_chunked)
{
    static const char req[] = "PATCH /api/v1/memories/abc HTTP/1.1\r\n"
                              "Host: h\r\n"
                              "Transfer-Encoding: chunked\r\n"
                              "Expect: 100-continue\r\n"
                              "\r\n"
                              "3\r\nabc\r\n"
                              "b;name=\"v\"\r\nhello world\r\n"
                              "0\r\n"
                              "X-Trailer: t\r\n"
                              "\r\n";

    ASSERT_TRUE(check_all_splits(S(req)));
}

TEST(split_get_no_body)
{
    static const char req[] = "GET /api/v1/memories?limit=10 HTTP/1.1\r\n"
                              "Host: h\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n";

    ASSERT_TRUE(check_all_splits(S(req)));
}

/* ---- random chunkings --------------------------------------------------------------------- */

static uint32_t rng_state;

static uint32_t rng_next(void)
{
    uint32_t x = rng_state;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    rng_state = x;
    return x;
}

TEST(random_chunkings)
{
    static const char all[] = "GET /a?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1 \r\n\r\n"
                              "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789"
                              "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "4\r\nwiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n"
                              "HEAD /d HTTP/1.1\r\nHost: h\r\n\r\n"
                              "GET /e HTTP/1.0\r\nHost: h\r\n\r\n";
    const size_t n = sizeof(all) - 1;
    struct fixture f;
    struct collected ref = {0};
    char *want[MAX_REQS];
    size_t want_len[MAX_REQS];
    size_t nreq;

    fx_init(&f, NULL);
    ASSERT_INT_EQ(EG_HTTP_PARSE_REQUEST, feed_piece(&f, all, n, &ref));
    nreq = ref.count;
    ASSERT_EQ((size_t)5, nreq);
    ASSERT_MEM_EQ(ref.reqs[2]->body.base, ref.reqs[2]->body.len, "wikipedia in\r\n\r\nchunks.");
    ASSERT_TRUE(!ref.reqs[4]->keep_alive);
    for (size_t i = 0; i < nreq; i++)
        want[i] = digest(ref.reqs[i], &want_len[i]);
    collected_free(&ref);
    fx_fini(&f);

    rng_state = 0x2545f491u;
    for (int iter = 0; iter < 400; iter++) {
        struct collected c = {0};
        size_t off = 0;
        bool ok = true;

        fx_init(&f, NULL);
        while (off < n) {
            size_t piece = 1 + rng_next() % (iter % 4 == 0 ? 3 : 40);

            if (piece > n - off)
                piece = n - off;
            if (feed_piece(&f, all + off, piece, &c) == EG_HTTP_PARSE_ERROR) {
                ok = false;
                break;
            }
            off += piece;
        }
        if (ok && c.count != nreq)
            ok = false;
        for (size_t i = 0; ok && i < nreq; i++) {
            size_t got_len;
            char *got = digest(c.reqs[i], &got_len);

            ok = got_len == want_len[i] && memcmp(got, want[i], got_len) == 0;
            if (!ok)
                printf("# iteration %d request %zu: got %s\n#   want %s\n", iter, i, got, want[i]);
            eg_free(got);
        }
        if (ok)
            ok = f.heads == nreq && f.created == nreq && c.offset == n;
        collected_free(&c);
        fx_fini(&f);
        if (!ok) {
            printf("# random chunking %d failed\n", iter);
            for (size_t i = 0; i < nreq; i++)
                eg_free(want[i]);
            ASSERT_TRUE(ok);
        }
    }
    for (size_t i = 0; i < nreq; i++)
        eg_free(want[i]);
}

/* Every byte fed on its own, against the guard page. */
TEST(byte_at_a_time)
{
    static const char req[] = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    struct fixture f;
    struct collected c = {0};
    size_t n = sizeof(req) - 1;

    fx_init(&f, NULL);
    for (size_t i = 0; i < n; i++) {
        enum eg_http_parse_event ev = feed_piece(&f, req + i, 1, &c);

        ASSERT_INT_EQ(i + 1 == n ? EG_HTTP_PARSE_REQUEST : EG_HTTP_PARSE_MORE, ev);
        ASSERT_EQ(i + 1 >= n - 5, f.heads == 1); /* headers complete before the body */
    }
    ASSERT_EQ((size_t)1, c.count);
    ASSERT_MEM_EQ(c.reqs[0]->body.base, c.reqs[0]->body.len, "hello");
    collected_free(&c);
    fx_fini(&f);
}

/* ---- limits ------------------------------------------------------------------------------- */

TEST(limit_url)
{
    struct eg_http_limits l = small_limits();
    struct fixture f;
    struct collected c = {0};
    struct eg_http_req *r;

    /* exactly url_bytes (32) is accepted */
    fx_init(&f, &l);
    r = parse_whole(&f, S("GET /0123456789012345678901234567890 HTTP/1.1\r\nHost: h\r\n\r\n"));
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ((size_t)32, r->target_len);
    eg_http_req_free(r);
    fx_fini(&f);

    /* one more byte: 414 */
    fx_init(&f, &l);
    ASSERT_INT_EQ(EG_HTTP_PARSE_ERROR,
                  feed_piece(&f, S("GET /01234567890123456789012345678901 HTTP/1.1\r\n"), &c));
    ASSERT_INT_EQ(414, f.p.error_status);
    ASSERT_EQ((size_t)0, f.heads);
    fx_fini(&f);

    /* split across feeds, the running total still counts */
    fx_init(&f, &l);
    ASSERT_INT_EQ(EG_HTTP_PARSE_MORE, feed_piece(&f, S("GET /0123456789012345"), &c));
    ASSERT_INT_EQ(EG_HTTP_PARSE_ERROR, feed_piece(&f, S("6789012345678901 HTTP/1.1\r\n"), &c));
    ASSERT_INT_EQ(414, f.p.error_status);
    /* the parser stays failed */
    {
        size_t used = 5;

        ASSERT_INT_EQ(EG_HTTP_PARSE_ERROR, eg_http_parser_feed(&f.p, "G", 1, &used));
        ASSERT_EQ((size_t)0, used);
    }
    ASSERT_EQ((size_t)0, c.count);
    fx_fini(&f);
}

TEST(limit_header_bytes)
{
    struct eg_http_limits l = small_limits();
    struct fixture f;
    struct collected c = {0};
    struct eg_http_req *r;

    l.header_count = 100;
    /* names + values = (4 + 1) + (1 + 58) = 64: accepted */
    fx_init(&f, &l);
    r = parse_whole(&f, S("GET / HTTP/1.1\r\nHost: h\r\n"
                          "X: 0123456789012345678901234567890123456789012345678901234567\r\n\r\n"));
    ASSERT_TRUE(r != NULL);
    eg_http_req_free(r);
    fx_fini(&f);

    /* 65: 431 */
    fx_init(&f, &l);
    ASSERT_INT_EQ(EG_HTTP_PARSE_ERROR,
                  feed_piece(&f,
                             S("GET / HTTP/1.1\r\nHost: h\r\n"
                               "X: 01234567890123456789012345678901234567890123456789012345678"
                               "\r\n\r\n"),
                             &c));
    ASSERT_INT_EQ(431, f.p.error_status);
    ASSERT_EQ((size_t)0, f.heads);
    fx_fini(&f);

    /* many small headers fed one per piece add up */
    fx_init(&f, &l);
    ASSERT_INT_EQ(EG_HTTP_PARSE_MORE, feed_piece(&f, S("GET / HTTP/1.1\r\n"), &c));
    for (int i = 0; i < 4; i++) /* 13 bytes each: 52 */
        ASSERT_INT_EQ(EG_HTTP_PARSE_MORE, feed_piece(&f, S("Abcdef: 0123456\r\n"), &c));
    ASSERT_INT_EQ(EG_HTTP_PARSE_ERROR, feed_piece(&f, S("Abcdef: 0123456\r\n"), &c));
    ASSERT_INT_EQ(431, f.p.error_status);
    fx_fini(&f);
}

TEST(limit_header_count)
{
    struct eg_http_limits l = small_limits();
    struct fixture f;
    struct collected c = {0};
    struct eg_http_req *r;

    /* exactly 4 */
    fx_init(&f, &l);
    r = parse_whole(&f, S("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"));
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ((size_t)4, r->header_count);
    eg_http_req_free(r);
    fx_fini(&f);

    /* 5: 431 */
    fx_init(&f, &l);
    ASSERT_INT_EQ(
        EG_HTTP_PARSE_ERROR,
        feed_piece(&f, S("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n"), &c));
    ASSERT_INT_EQ(431, f.p.error_status);
    ASSERT_STR_EQ("too many header fields", f.p.error_reason);
    ASSERT_EQ((size_t)0, f.heads);
    fx_fini(&f);
}

TEST(limit_declared_body)
{
    struct eg_http_limits l = small_limits();
    struct fixture f;
    struct collected c = {0};
    struct eg_http_req *r;

    /* exactly body_bytes */
    fx_init(&f, &l);
    r = parse_whole(&f, S("POST / HTTP/1.1\r\nContent-Length: 16\r\n\r\n0123456789abcdef"));
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ((size_t)16, r->body.len);
    eg_http_req_free(r);
    fx_fini(&f);

    /* 17 declared: fails at the headers, before any body byte is sent */
    fx_init(&f, &l);
    ASSERT_INT_EQ(EG_HTTP_PARSE_ERROR,
                  feed_piece(&f, S("POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n"), &c));
    ASSERT_INT_EQ(413, f.p.error_status);
    ASSERT_STR_EQ("declared body too large", f.p.error_reason);
    ASSERT_EQ((size_t)0, f.heads);
    ASSERT_EQ((size_t)0, c.count);
    fx_fini(&f);

    /* a huge declared length too */
    fx_init(&f, &l);
    ASSERT_INT_EQ(EG_HTTP_PARSE_ERROR,
                  feed_piece(&f, S("POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n"), &c));
    ASSERT_INT_EQ(413, f.p.error_status);
    ASSERT_EQ((size_t)0, f.heads);
    fx_fini(&f);
}

TEST(limit_chunked_body)
{
    struct eg_http_limits l = small_limits();
    struct fixture f;
    struct collected c = {0};
    struct eg_http_req *r;

    /* 10 + 6 = 16: accepted */
    fx_init(&f, &l);
    r = parse_whole(&f, S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "a\r\n0123456789\r\n6\r\nabcdef\r\n0\r\n\r\n"));
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ((size_t)16, r->body.len);
    eg_http_req_free(r);
    fx_fini(&f);

    /* 10 + 7 = 17: 413 once the 17th byte arrives */
    fx_init(&f, &l);
    ASSERT_INT_EQ(EG_HTTP_PARSE_MORE,
                  feed_piece(&f,
                             S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "a\r\n0123456789\r\n7\r\nabcdef"),
                             &c));
    ASSERT_EQ((size_t)1, f.heads);
    ASSERT_INT_EQ(EG_HTTP_PARSE_ERROR, feed_piece(&f, S("g\r\n0\r\n\r\n"), &c));
    ASSERT_INT_EQ(413, f.p.error_status);
    ASSERT_EQ((size_t)0, c.count);
    fx_fini(&f);

    /* one huge chunk */
    fx_init(&f, &l);
    ASSERT_INT_EQ(EG_HTTP_PARSE_ERROR,
                  feed_piece(&f,
                             S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "100\r\n0123456789abcdefg"),
                             &c));
    ASSERT_INT_EQ(413, f.p.error_status);
    fx_fini(&f);
}

/* ---- malformed input: all 400 ------------------------------------------------------------- */

TEST(malformed_request_line)
{
    ASSERT_PARSE_FAILS("FOO / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("get / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET / HTTX/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET / HTTP/3.0\r\nHost: h\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET / HTTP/1.1 extra\r\nHost: h\r\n\r\n", 400);
    /* not asserted: llhttp 8.1 tolerates two spaces after the method ("GET  / HTTP/1.1") */
}

TEST(malformed_line_endings)
{
    /* bare LF after a header value (the other bare-LF places: regression_bare_lf_accepted) */
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHost: h\n\n", 400);
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHost: h\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHost: h\r\nX: y\n\r\n", 400);
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n",
                       400);
    /* CR without LF */
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\rHost: h\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHost: h\r\n\rX", 400);
}

/* obs-fold continuation lines (RFC 9112 §5.2: reject) */
TEST(obs_fold_rejected)
{
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nX: 1\r\nHost: a \r\n  b\r\nY: 2\r\n\r\n", 400);
}

/* The fold must be caught wherever the input is split (the check compares chunk positions). */
TEST(obs_fold_rejected_every_split)
{
    static const char *const msgs[] = {
        "GET / HTTP/1.1\r\nHost: ab\r\n cd\r\n\r\n",
        "GET / HTTP/1.1\r\nX: 1\r\nHost: ab\r\n\t\tcd\r\nY: 2\r\n\r\n",
    };

    for (size_t m = 0; m < EG_ARRAY_LEN(msgs); m++) {
        size_t n = strlen(msgs[m]);

        for (size_t k = 0; k <= n; k++) {
            struct fixture f;
            struct collected c = {0};
            enum eg_http_parse_event ev;

            fx_init(&f, NULL);
            ev = feed_piece(&f, msgs[m], k, &c);
            if (ev == EG_HTTP_PARSE_MORE && k < n)
                ev = feed_piece(&f, msgs[m] + k, n - k, &c);
            collected_free(&c);
            fx_fini(&f);
            if (ev != EG_HTTP_PARSE_ERROR || f.p.error_status != 400)
                printf("# message %zu split at %zu: event %d status %d\n", m, k, (int)ev,
                       f.p.error_status);
            ASSERT_INT_EQ(EG_HTTP_PARSE_ERROR, ev);
            ASSERT_INT_EQ(400, f.p.error_status);
        }
    }
}

TEST(malformed_headers)
{
    /* empty header name */
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\n: a\r\n\r\n", 400);
    /* whitespace before the colon */
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400);
    /* no colon */
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHost\r\n\r\n", 400);
    /* NUL in a header value, name */
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n", 400);
}

TEST(malformed_target)
{
    /* NUL in the URL */
    ASSERT_PARSE_FAILS("GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET /a?\0 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

TEST(malformed_framing)
{
    /* Content-Length and Transfer-Encoding together */
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "0\r\n\r\n",
                       400);
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                       "0\r\n\r\n",
                       400);
    /* two different Content-Length headers, and a list */
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                       400);
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello!", 400);
    /* non-numeric / negative Content-Length */
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
    /* chunked not last */
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400);
    /* bad chunk sizes */
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
                       400);
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nab\r\n0\r\n\r\n",
                       400);
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\nab\r\n0\r\n\r\n",
                       400);
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "fffffffffffffffffff\r\n",
                       400);
    /* missing CRLF after chunk data */
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
                       400);
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab0\r\n\r\n",
                       400);
}

/* ---- semantics ---------------------------------------------------------------------------- */

TEST(expect_continue)
{
    struct fixture f;
    struct collected c = {0};

    fx_init(&f, NULL);
    ASSERT_INT_EQ(EG_HTTP_PARSE_MORE,
                  feed_piece(&f,
                             S("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n"
                               "Content-Length: 2\r\n\r\n"),
                             &c));
    /* on_head saw expect_continue before any body, so the server can send 100 Continue */
    ASSERT_EQ((size_t)1, f.heads);
    ASSERT_TRUE(f.head_expect);
    ASSERT_TRUE(f.p.in_message);
    ASSERT_TRUE(f.p.head_done);
    ASSERT_INT_EQ(EG_HTTP_PARSE_REQUEST, feed_piece(&f, S("ok"), &c));
    ASSERT_EQ((size_t)1, c.count);
    ASSERT_TRUE(c.reqs[0]->expect_continue);
    ASSERT_MEM_EQ(c.reqs[0]->body.base, c.reqs[0]->body.len, "ok");
    collected_free(&c);
    fx_fini(&f);
}

TEST(expect_other_417)
{
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n",
                       417);
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue-x\r\n\r\n", 417);
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHost: h\r\nExpect:\r\n\r\n", 417);
}

TEST(keep_alive)
{
    struct fixture f;
    struct eg_http_req *r;

    fx_init(&f, NULL);
    r = parse_whole(&f, S("GET / HTTP/1.0\r\nHost: h\r\n\r\n"));
    ASSERT_TRUE(r != NULL);
    ASSERT_TRUE(!r->keep_alive);
    eg_http_req_free(r);
    fx_fini(&f);

    fx_init(&f, NULL);
    r = parse_whole(&f, S("GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"));
    ASSERT_TRUE(r != NULL);
    ASSERT_TRUE(r->keep_alive);
    eg_http_req_free(r);
    fx_fini(&f);

    fx_init(&f, NULL);
    r = parse_whole(&f, S("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    ASSERT_TRUE(r != NULL);
    ASSERT_TRUE(r->keep_alive);
    eg_http_req_free(r);
    fx_fini(&f);

    fx_init(&f, NULL);
    r = parse_whole(&f, S("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
    ASSERT_TRUE(r != NULL);
    ASSERT_TRUE(!r->keep_alive);
    eg_http_req_free(r);
    fx_fini(&f);
}

TEST(head_request)
{
    struct fixture f;
    struct eg_http_req *r;

    fx_init(&f, NULL);
    r = parse_whole(&f, S("HEAD /api/v1/memories HTTP/1.1\r\nHost: h\r\n\r\n"));
    ASSERT_TRUE(r != NULL);
    ASSERT_TRUE(r->is_head);
    ASSERT_INT_EQ(HTTP_HEAD, r->method);
    ASSERT_STR_EQ("HEAD", r->method_name);
    eg_http_req_free(r);
    fx_fini(&f);
}

TEST(on_head_once_per_request)
{
    static const char all[] = "GET /1 HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n"
                              "POST /2 HTTP/1.1\r\nA: 1\r\nContent-Length: 4\r\n\r\nbody"
                              "POST /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "1\r\nx\r\n0\r\n\r\n";
    struct fixture f;
    struct collected c = {0};
    const char *g = guarded(S(all));
    size_t n = sizeof(all) - 1;
    size_t used;

    fx_init(&f, NULL);
    ASSERT_INT_EQ(EG_HTTP_PARSE_REQUEST, eg_http_parser_feed(&f.p, g, n, &used));
    ASSERT_EQ((size_t)1, f.heads);
    ASSERT_EQ((size_t)2, f.head_header_count); /* all headers were in when it fired */
    eg_http_req_free(eg_http_parser_take(&f.p));
    g += used;
    n -= used;
    ASSERT_INT_EQ(EG_HTTP_PARSE_REQUEST, eg_http_parser_feed(&f.p, g, n, &used));
    ASSERT_EQ((size_t)2, f.heads);
    ASSERT_EQ((size_t)2, f.head_header_count);
    ASSERT_EQ((size_t)0, f.head_body_len);
    eg_http_req_free(eg_http_parser_take(&f.p));
    g += used;
    n -= used;
    ASSERT_INT_EQ(EG_HTTP_PARSE_REQUEST, eg_http_parser_feed(&f.p, g, n, &used));
    ASSERT_EQ(n, used);
    ASSERT_EQ((size_t)3, f.heads);
    ASSERT_EQ((size_t)1, f.head_header_count);
    eg_http_req_free(eg_http_parser_take(&f.p));
    ASSERT_EQ((size_t)3, f.created);
    collected_free(&c);
    fx_fini(&f);
}

TEST(no_on_head_callback)
{
    struct eg_http_limits l = EG_HTTP_LIMITS_DEFAULT;
    struct fixture f;
    struct eg_http_parser p;
    const char *g = guarded(S("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    size_t used;

    memset(&f, 0, sizeof(f));
    f.limits = l;
    eg_http_parser_init(&p, &f.limits, fx_new_req, NULL, &f);
    ASSERT_INT_EQ(EG_HTTP_PARSE_REQUEST, eg_http_parser_feed(&p, g, 27, &used));
    ASSERT_EQ((size_t)27, used);
    eg_http_req_free(eg_http_parser_take(&p));
}

TEST(abandon_partial)
{
    struct fixture f;
    struct collected c = {0};
    struct eg_http_req *r;

    fx_init(&f, NULL);
    ASSERT_INT_EQ(EG_HTTP_PARSE_MORE,
                  feed_piece(&f, S("POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nhalf"), &c));
    ASSERT_TRUE(f.p.in_message);
    ASSERT_TRUE(eg_http_parser_take(&f.p) == NULL);
    r = eg_http_parser_abandon(&f.p);
    ASSERT_TRUE(r != NULL);
    ASSERT_MEM_EQ(r->body.base, r->body.len, "half");
    ASSERT_TRUE(eg_http_parser_abandon(&f.p) == NULL);
    eg_http_req_free(r);
    eg_http_req_free(NULL); /* allowed */
    fx_fini(&f);
}

/*
 * ---- KNOWN BUGS in src/http/parser.c (these tests fail until it is fixed) ------------------
 *
 * (Fixed meanwhile: a status set by fail() in on_header_value_complete / on_headers_complete
 * used to be overwritten with 400 because llhttp reports HPE_CB_* rather than HPE_USER for
 * them; limit_header_count, limit_declared_body and expect_other_417 cover it.)
 */

/*
 * BUG 2: obs-fold after an EMPTY first line is accepted. llhttp 8.1 reports "Host:\r\n b" as one
 * value chunk " b" and no chunk for the empty first line, so the contiguity check in
 * on_header_value (value_open is still false) never sees a gap: the request parses with
 * Host "b". (Folds after a non-empty value are rejected: obs_fold_rejected.)
 */
TEST(regression_obs_fold_after_empty_value)
{
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHost:\r\n b\r\nX: 1\r\n\r\n", 400); /* got Host "b" */
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHost: \r\n\tb\r\n\r\n", 400);
}

/*
 * BUG 3: bare LF line endings are accepted by llhttp 8.1 after the request line, as the empty
 * line ending the header section and after the last chunk, and nothing in parser.c rejects them.
 */
TEST(regression_bare_lf_accepted)
{
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\nHost: h\r\n\r\n", 400);
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\r\nHost: h\r\n\n", 400);
    ASSERT_PARSE_FAILS("GET / HTTP/1.1\nHost: h\n\n", 400); /* rejected only at "h\n" today */
    ASSERT_PARSE_FAILS("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\n",
                       400);
}

/*
 * BUG 4: an Upgrade request is not treated as the connection's last. on_message_complete pauses
 * (HPE_PAUSED) before llhttp can return HPE_PAUSED_UPGRADE, so the request comes out with
 * keep_alive still true, and the next feed on that connection (the upgraded bytes, or a
 * pipelined request) returns HPE_PAUSED_UPGRADE with cur == NULL and fails with 400 "upgrade
 * not supported". The HPE_PAUSED_UPGRADE branch that marks keep_alive = false is unreachable.
 */
TEST(regression_upgrade_not_last_request)
{
    static const char req[] = "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                              "Upgrade: websocket\r\n\r\n";
    struct fixture f;
    struct collected c = {0};
    bool keep_alive;

    fx_init(&f, NULL);
    ASSERT_INT_EQ(EG_HTTP_PARSE_REQUEST, feed_piece(&f, S(req), &c));
    ASSERT_EQ((size_t)1, c.count);
    keep_alive = c.reqs[0]->keep_alive;
    collected_free(&c);
    fx_fini(&f);
    ASSERT_TRUE(!keep_alive); /* got true */
}

int main(void)
{
    static const struct test_case tests[] = {
        TEST_CASE(simple_get),
        TEST_CASE(target_path_and_query),
        TEST_CASE(empty_query),
        TEST_CASE(headers_parsed),
        TEST_CASE(body_content_length),
        TEST_CASE(body_content_length_zero),
        TEST_CASE(body_chunked),
        TEST_CASE(pipelined_requests),
        TEST_CASE(split_content_length),
        TEST_CASE(split_chunked),
        TEST_CASE(split_get_no_body),
        TEST_CASE(random_chunkings),
        TEST_CASE(byte_at_a_time),
        TEST_CASE(limit_url),
        TEST_CASE(limit_header_bytes),
        TEST_CASE(limit_header_count),
        TEST_CASE(limit_declared_body),
        TEST_CASE(limit_chunked_body),
        TEST_CASE(malformed_request_line),
        TEST_CASE(malformed_line_endings),
        TEST_CASE(obs_fold_rejected),
        TEST_CASE(obs_fold_rejected_every_split),
        TEST_CASE(malformed_headers),
        TEST_CASE(malformed_target),
        TEST_CASE(malformed_framing),
        TEST_CASE(expect_continue),
        TEST_CASE(expect_other_417),
        TEST_CASE(keep_alive),
        TEST_CASE(head_request),
        TEST_CASE(on_head_once_per_request),
        TEST_CASE(no_on_head_callback),
        TEST_CASE(abandon_partial),
        /* KNOWN BUGS: expected to fail until src/http/parser.c is fixed */
        TEST_CASE(regression_obs_fold_after_empty_value),
        TEST_CASE(regression_bare_lf_accepted),
        TEST_CASE(regression_upgrade_not_last_request),
    };
    int rc = RUN_TESTS(tests);

    if (guard_base != NULL)
        munmap(guard_base, 2 * guard_page);
    return rc;
}
