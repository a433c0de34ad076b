/* bench/sse/baseline.c: a bare libuv SSE fan-out, "this machine's physical limit" for
 * bench/sse/run.sh (issue #4).
 *
 * One loop. It accepts connections and reads one request head:
 *   GET <anything>   a subscriber: gets an SSE response head (chunked, as engram sends it) and a
 *                    `connected` event carrying the current id, then every event;
 *   POST <anything>  an event: the body (Content-Length) becomes one shared, refcounted frame
 *                    "id: 0:<seq>\nevent: memory.created\ndata: <body>\n\n" (in one chunk), and
 *                    the request gets 202; keep-alive, so the load tool's writer drives it exactly
 *                    as it drives engram's POST /api/v1/memories.
 * Fan-out modes (--mode):
 *   single    one uv_write per event per subscriber (libuv writes at once when nothing is queued);
 *   coalesce  events are queued per subscriber and written by a uv_check handle after the loop's
 *             poll phase, all pending events of a subscriber in one writev; while a write is in
 *             flight, new events wait and go out together from its callback.
 * Nothing else: no parsing of subscriber input after the head, no per-event allocation but the
 * frame itself (and, in single mode, a write request from a free list). A subscriber with more
 * than --max-pending events queued is closed, so memory stays bounded. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#define HEAD_MAX 8192
#define BODY_MAX 65536
#define IOV_MAX_BATCH 64

struct event {
    uint32_t refs;
    uint32_t len;
    char wire[];
};

enum conn_kind { CONN_NEW, CONN_SUB, CONN_PUB };

struct conn {
    uv_tcp_t tcp;
    uint8_t kind;
    bool is_writing;
    bool is_dirty;
    bool is_closing;
    /* Request accumulation (publishers and partial heads only; freed for subscribers). */
    char *acc;
    uint32_t acc_len;
    /* Subscriber list and, in coalesce mode, its queue of pending events. */
    struct conn *prev;
    struct conn *next;
    struct conn *dirty_next;
    struct event **pending;
    uint32_t npending;
    uint32_t cap_pending;
    uint32_t nwriting; /* events in the write in flight (coalesce mode) */
    uv_write_t wreq;   /* the one write in flight (coalesce mode, head) */
};

struct wreq {
    uv_write_t req;
    struct event *ev;
    struct wreq *free_next;
};

static uv_loop_t *g_loop;
static struct conn g_subs; /* list head */
static struct conn *g_dirty;
static uv_check_t g_check;
static bool g_coalesce;
static bool g_chunked = true;
static uint32_t g_max_pending = 4096;
static uint64_t g_seq;
static uint64_t g_nsubs;
static struct wreq *g_free_wreqs;
static char g_read_buf[65536];

static void ev_unref(struct event *ev)
{
    if (--ev->refs == 0)
        free(ev);
}

static struct event *ev_new(const char *name, const char *data, size_t dlen)
{
    char hdr[128];
    int hn = snprintf(hdr, sizeof(hdr), "id: 0:%llu\nevent: %s\ndata: ", (unsigned long long)g_seq,
                      name);
    size_t payload = (size_t)hn + dlen + 2;
    struct event *ev = malloc(sizeof(*ev) + payload + 32);
    size_t n = 0;
    size_t i;

    if (ev == NULL)
        abort();
    if (g_chunked)
        n += (size_t)snprintf(ev->wire, 32, "%zx\r\n", payload);
    memcpy(ev->wire + n, hdr, (size_t)hn);
    n += (size_t)hn;
    /* The payload must stay one data line. */
    for (i = 0; i < dlen; i++)
        ev->wire[n + i] = data[i] == '\n' || data[i] == '\r' ? ' ' : data[i];
    n += dlen;
    memcpy(ev->wire + n, "\n\n", 2);
    n += 2;
    if (g_chunked) {
        memcpy(ev->wire + n, "\r\n", 2);
        n += 2;
    }
    ev->len = (uint32_t)n;
    ev->refs = 1;
    return ev;
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(g_read_buf, sizeof(g_read_buf));
}

static void conn_on_close(uv_handle_t *h)
{
    struct conn *c = h->data;
    uint32_t i;

    for (i = 0; i < c->npending; i++)
        ev_unref(c->pending[i]);
    free(c->pending);
    free(c->acc);
    free(c);
}

static void conn_close(struct conn *c)
{
    if (c->is_closing)
        return;
    c->is_closing = true;
    if (c->kind == CONN_SUB) {
        c->prev->next = c->next;
        c->next->prev = c->prev;
        g_nsubs--;
    }
    /* Writes in flight complete with UV_ECANCELED before the close callback frees c. */
    uv_close((uv_handle_t *)&c->tcp, conn_on_close);
}

static void single_on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;

    (void)status;
    ev_unref(w->ev);
    w->free_next = g_free_wreqs;
    g_free_wreqs = w;
}

static void coalesce_flush(struct conn *c);

static void coalesce_on_write(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    uint32_t i;

    for (i = 0; i < c->nwriting; i++)
        ev_unref(c->pending[i]);
    memmove(c->pending, c->pending + c->nwriting, (c->npending - c->nwriting) * sizeof(*c->pending));
    c->npending -= c->nwriting;
    c->nwriting = 0;
    c->is_writing = false;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->npending > 0 && !c->is_closing)
        coalesce_flush(c);
}

static void coalesce_flush(struct conn *c)
{
    uv_buf_t bufs[IOV_MAX_BATCH];
    uint32_t n = c->npending < IOV_MAX_BATCH ? c->npending : IOV_MAX_BATCH;
    uint32_t i;

    for (i = 0; i < n; i++)
        bufs[i] = uv_buf_init(c->pending[i]->wire, c->pending[i]->len);
    c->nwriting = n;
    c->is_writing = true;
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n, coalesce_on_write) < 0) {
        c->is_writing = false;
        c->nwriting = 0;
        conn_close(c);
    }
}

static void on_check(uv_check_t *h)
{
    struct conn *c = g_dirty;

    (void)h;
    g_dirty = NULL;
    while (c != NULL) {
        struct conn *next = c->dirty_next;

        c->is_dirty = false;
        c->dirty_next = NULL;
        if (!c->is_closing && !c->is_writing && c->npending > 0)
            coalesce_flush(c);
        c = next;
    }
}

static void publish(struct event *ev)
{
    struct conn *c;
    struct conn *next;

    for (c = g_subs.next; c != &g_subs; c = next) {
        next = c->next;
        if (!g_coalesce) {
            struct wreq *w = g_free_wreqs;
            uv_buf_t b = uv_buf_init(ev->wire, ev->len);

            if (w != NULL)
                g_free_wreqs = w->free_next;
            else if ((w = malloc(sizeof(*w))) == NULL)
                abort();
            w->ev = ev;
            ev->refs++;
            if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, single_on_write) < 0) {
                ev_unref(ev);
                w->free_next = g_free_wreqs;
                g_free_wreqs = w;
                conn_close(c);
            } else if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) >
                       (size_t)g_max_pending * 512) {
                conn_close(c); /* slow consumer: keep memory bounded */
            }
            continue;
        }
        if (c->npending >= g_max_pending) {
            conn_close(c);
            continue;
        }
        if (c->npending == c->cap_pending) {
            uint32_t cap = c->cap_pending ? c->cap_pending * 2 : 4;
            struct event **p = realloc(c->pending, cap * sizeof(*p));

            if (p == NULL)
                abort();
            c->pending = p;
            c->cap_pending = cap;
        }
        c->pending[c->npending++] = ev;
        ev->refs++;
        if (!c->is_dirty && !c->is_writing) {
            c->is_dirty = true;
            c->dirty_next = g_dirty;
            g_dirty = c;
        }
    }
}

static void write_static(struct conn *c, const char *s, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)s, (unsigned)len);

    /* Heads and small answers fit an empty socket buffer; a partial write means a broken peer. */
    if (uv_try_write((uv_stream_t *)&c->tcp, &b, 1) != (int)len)
        conn_close(c);
}

static const char SUB_HEAD[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
static const char SUB_HEAD_PLAIN[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                     "Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
static const char PUB_OK[] = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";

static void become_subscriber(struct conn *c)
{
    struct event *ev;

    c->kind = CONN_SUB;
    free(c->acc);
    c->acc = NULL;
    c->acc_len = 0;
    c->next = &g_subs;
    c->prev = g_subs.prev;
    g_subs.prev->next = c;
    g_subs.prev = c;
    g_nsubs++;
    if (g_chunked)
        write_static(c, SUB_HEAD, sizeof(SUB_HEAD) - 1);
    else
        write_static(c, SUB_HEAD_PLAIN, sizeof(SUB_HEAD_PLAIN) - 1);
    if (c->is_closing)
        return;
    ev = ev_new("connected", "{}", 2);
    write_static(c, ev->wire, ev->len);
    ev_unref(ev);
}

/* Handles complete requests in c->acc; returns false when c was closed. */
static bool process(struct conn *c)
{
    for (;;) {
        char *end = memmem(c->acc, c->acc_len, "\r\n\r\n", 4);
        size_t head_len;
        size_t body_len = 0;
        char *cl;

        if (end == NULL)
            return true;
        head_len = (size_t)(end - c->acc) + 4;
        if (c->acc_len >= 4 && strncmp(c->acc, "GET ", 4) == 0) {
            become_subscriber(c);
            return !c->is_closing;
        }
        if (c->acc_len < 5 || strncmp(c->acc, "POST ", 5) != 0) {
            conn_close(c);
            return false;
        }
        c->kind = CONN_PUB;
        cl = strcasestr(c->acc, "\r\ncontent-length:");
        if (cl != NULL && cl < end)
            body_len = strtoul(cl + 17, NULL, 10);
        if (body_len > BODY_MAX) {
            conn_close(c);
            return false;
        }
        if (c->acc_len < head_len + body_len)
            return true;
        g_seq++;
        {
            struct event *ev = ev_new("memory.created", c->acc + head_len, body_len);

            write_static(c, PUB_OK, sizeof(PUB_OK) - 1);
            publish(ev);
            ev_unref(ev);
        }
        if (c->is_closing)
            return false;
        memmove(c->acc, c->acc + head_len + body_len, c->acc_len - head_len - body_len);
        c->acc_len -= (uint32_t)(head_len + body_len);
    }
}

static void conn_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = st->data;

    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0 || c->kind == CONN_SUB)
        return; /* subscribers send nothing we need after the head */
    if (c->acc == NULL) {
        c->acc = malloc(HEAD_MAX + BODY_MAX);
        if (c->acc == NULL)
            abort();
    }
    if (c->acc_len + (size_t)nread > HEAD_MAX + BODY_MAX) {
        conn_close(c);
        return;
    }
    memcpy(c->acc + c->acc_len, buf->base, (size_t)nread);
    c->acc_len += (uint32_t)nread;
    process(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct conn *c;

    if (status < 0)
        return;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    uv_tcp_init(g_loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        c->is_closing = true;
        uv_close((uv_handle_t *)&c->tcp, conn_on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_on_read);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    uv_stop(h->loop);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {{"port", 1, 0, 'p'},        {"bind", 1, 0, 'b'},
                                       {"mode", 1, 0, 'm'},        {"plain", 0, 0, 'n'},
                                       {"max-pending", 1, 0, 'x'}, {0, 0, 0, 0}};
    const char *bind_ip = "127.0.0.1";
    int port = 0;
    uv_tcp_t server;
    uv_signal_t sig;
    struct sockaddr_in addr;
    int c;
    int rc;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'p': port = (int)strtol(optarg, NULL, 10); break;
        case 'b': bind_ip = optarg; break;
        case 'm': g_coalesce = strcmp(optarg, "coalesce") == 0; break;
        case 'n': g_chunked = false; break;
        case 'x': g_max_pending = (uint32_t)strtoul(optarg, NULL, 10); break;
        default:
            fputs("usage: baseline --port N [--bind IP] [--mode single|coalesce] [--plain] "
                  "[--max-pending N]\n",
                  stderr);
            return 2;
        }
    }
    if (port <= 0)
        return fputs("baseline: --port is required\n", stderr), 2;
    signal(SIGPIPE, SIG_IGN);
    g_loop = uv_default_loop();
    g_subs.next = g_subs.prev = &g_subs;
    uv_check_init(g_loop, &g_check);
    if (g_coalesce)
        uv_check_start(&g_check, on_check);
    uv_tcp_init(g_loop, &server);
    uv_ip4_addr(bind_ip, port, &addr);
    rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, 4096, on_connection);
    if (rc < 0) {
        fprintf(stderr, "baseline: listen %s:%d: %s\n", bind_ip, port, uv_strerror(rc));
        return 1;
    }
    uv_signal_init(g_loop, &sig);
    uv_signal_start(&sig, on_signal, SIGTERM);
    fprintf(stderr, "baseline: listening on %s:%d, mode %s, %s\n", bind_ip, port,
            g_coalesce ? "coalesce" : "single", g_chunked ? "chunked" : "plain");
    uv_run(g_loop, UV_RUN_DEFAULT);
    return 0;
}
