/* bench/sse/test_sseparse.c: the load tool's parsers, fed a chunked engram-style stream and a
 * plain nchan-style stream split at every point and in random pieces. TAP output. */
#include "sseparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_tests;
static int g_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        g_tests++;                                                                                 \
        if (!(cond)) {                                                                             \
            g_failed++;                                                                            \
            printf("not ok %d - %s:%d %s\n", g_tests, __FILE__, __LINE__, #cond);                  \
        }                                                                                          \
    } while (0)

struct seen {
    int events;
    int connected;
    uint64_t ids[16];
    uint64_t marks_n[16];
    uint64_t marks_us[16];
    int has_mark[16];
};

static void on_event(void *arg, const struct ssb_sse_event *ev)
{
    struct seen *s = arg;

    if (ev->is_connected)
        s->connected++;
    if (s->events < 16) {
        s->ids[s->events] = ev->id_seq;
        s->has_mark[s->events] = ev->has_mark;
        s->marks_n[s->events] = ev->mark.n;
        s->marks_us[s->events] = ev->mark.send_us;
    }
    s->events++;
}

struct stream {
    struct ssb_resp resp;
    struct ssb_sse sse;
    struct seen seen;
};

static void on_body(void *arg, const char *p, size_t len)
{
    struct stream *st = arg;

    ssb_sse_feed(&st->sse, p, len, on_event, &st->seen);
}

static void feed(struct stream *st, const char *p, size_t len)
{
    CHECK(ssb_resp_feed(&st->resp, p, len, on_body, st) == (ssize_t)len);
}

/* Two responses back to back on one keep-alive connection, as the writers read them. */
static const char TWO[] = "HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello"
                          "HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "3\r\nabc\r\n0\r\n\r\n";

struct two {
    struct ssb_resp resp;
    int done;
    int status[2];
    size_t blen[2];
    char body[2][16];
};

static void on_two_body(void *arg, const char *p, size_t len)
{
    struct two *t = arg;

    if (t->done < 2 && t->blen[t->done] + len < sizeof(t->body[0])) {
        memcpy(t->body[t->done] + t->blen[t->done], p, len);
        t->blen[t->done] += len;
    }
}

static void feed_two(struct two *t, const char *p, size_t len)
{
    while (len > 0 && t->done < 2) {
        ssize_t n = ssb_resp_feed(&t->resp, p, len, on_two_body, t);

        CHECK(n >= 0);
        if (n < 0)
            return;
        p += n;
        len -= (size_t)n;
        if (t->resp.is_done) {
            t->status[t->done++] = t->resp.head.status;
            ssb_resp_reset(&t->resp);
        }
    }
    CHECK(len == 0);
}

static void check_two(void)
{
    size_t len = sizeof(TWO) - 1;
    size_t split;

    for (split = 0; split <= len; split++) {
        struct two t;

        memset(&t, 0, sizeof(t));
        feed_two(&t, TWO, split);
        feed_two(&t, TWO + split, len - split);
        CHECK(t.done == 2 && t.status[0] == 201 && t.status[1] == 409);
        CHECK(t.blen[0] == 5 && memcmp(t.body[0], "hello", 5) == 0);
        CHECK(t.blen[1] == 3 && memcmp(t.body[1], "abc", 3) == 0);
    }
}

static size_t chunk(char *out, const char *payload)
{
    return (size_t)sprintf(out, "%zx\r\n%s\r\n", strlen(payload), payload);
}

static size_t build_chunked(char *buf)
{
    size_t n = 0;

    n += (size_t)sprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                              "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n");
    n += chunk(buf + n,
               "retry: 3000\n\nid: 17:2\nevent: connected\ndata: {\"project_id\":\"p\"}\n\n");
    n += chunk(buf + n, "id: 17:3\nevent: memory.created\ndata: {\"id\":\"m1\",\"text\":\"note "
                        "ssb42-0-1-1700000000000001 about apple river stone\"}\n\n: keepalive\n\n");
    n += chunk(buf + n,
               "id: 17:4\nevent: memory.created\r\ndata: {\"text\":\"note ssb42-1-2-"
               "1700000000000002 about apple river stone\"}\r\n\r\nevent: heartbeat\ndata: {}\n\n");
    return n;
}

static size_t build_plain(char *buf)
{
    return (size_t)sprintf(buf,
                           "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                           "Connection: keep-alive\r\n\r\n: hi\n\nid: 1700000000:0\ndata: "
                           "{\"subject_id\":\"s\",\"text\":\"note ssb42-0-1-5 about x\"}\n\n");
}

static void check_chunked(const struct stream *st)
{
    CHECK(st->resp.head.status == 200);
    CHECK(st->resp.head.is_chunked);
    CHECK(st->seen.events == 4);
    CHECK(st->seen.connected == 1);
    CHECK(st->seen.ids[0] == 2);
    CHECK(st->seen.ids[1] == 3 && st->seen.has_mark[1] && st->seen.marks_n[1] == 1);
    CHECK(st->seen.marks_us[1] == 1700000000000001ull);
    CHECK(st->seen.ids[2] == 4 && st->seen.has_mark[2] && st->seen.marks_n[2] == 2);
    CHECK(!st->seen.has_mark[3]);
}

static void check_plain(const struct stream *st)
{
    CHECK(!st->resp.head.is_chunked);
    CHECK(st->seen.events == 1);
    CHECK(st->seen.has_mark[0] && st->seen.marks_n[0] == 1 && st->seen.marks_us[0] == 5);
}

int main(void)
{
    static char buf[4096];
    size_t len;
    size_t split;
    int round;
    uint64_t v;

    len = build_chunked(buf);
    for (split = 0; split <= len; split++) {
        struct stream st;

        memset(&st, 0, sizeof(st));
        feed(&st, buf, split);
        feed(&st, buf + split, len - split);
        check_chunked(&st);
    }
    srand(7);
    for (round = 0; round < 2000; round++) {
        struct stream st;
        size_t off = 0;

        memset(&st, 0, sizeof(st));
        while (off < len) {
            size_t n = 1 + (size_t)rand() % 40;

            if (n > len - off)
                n = len - off;
            feed(&st, buf + off, n);
            off += n;
        }
        check_chunked(&st);
    }
    len = build_plain(buf);
    for (split = 0; split <= len; split++) {
        struct stream st;

        memset(&st, 0, sizeof(st));
        feed(&st, buf, split);
        feed(&st, buf + split, len - split);
        check_plain(&st);
    }
    check_two();
    for (v = 1; v < (1ull << 40); v = v * 3 + 1) {
        unsigned b = ssb_hist_bucket(v);

        CHECK(ssb_hist_upper(b) >= v);
        CHECK(b == 0 || ssb_hist_upper(b - 1) < v);
        CHECK((double)ssb_hist_upper(b) <= (double)v * 1.04 + 1);
    }
    printf("1..%d\n# %d failed\n", g_tests, g_failed);
    return g_failed == 0 ? 0 : 1;
}
