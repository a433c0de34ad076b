/*
 * HTTP/1.1 connections.
 *
 * Per connection:
 *   reading ──request complete──> dispatch (handler) ──respond──> queued in order ──write──> done
 * The parser pauses after every request. While pipeline_max requests are in flight, or after a
 * request that ends the connection, unparsed bytes wait in `pending` and reading stops, so a
 * client flooding one connection holds at most one read buffer of unparsed bytes.
 *
 * Timers (one per connection, nginx style):
 *   header   armed once when a request's first byte arrives: the whole header phase (slowloris)
 *   body     re-armed on every read while a body is incomplete (idle gap)
 *   idle     keep-alive between requests
 *   write    a response the client does not drain
 *   linger   after a final error response, keep reading briefly so the client sees it
 * Requests waiting on the application have no connection timer: their own deadlines apply.
 *
 * Closing: eg_net_conn_close is asynchronous; queued requests are freed in on_closed, which runs
 * their arena cleanups (cancelling any async work), so a handler never sees a freed request.
 */
#include "engram/http.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engram/net.h"

#define PENDING_MAX (128 * 1024)
#define LINGER_MS   2000

enum timer_mode {
    TIMER_NONE,
    TIMER_HEADER,
    TIMER_BODY,
    TIMER_IDLE,
    TIMER_WRITE,
    TIMER_LINGER,
};

struct eg_http_server {
    uv_loop_t *loop;
    struct eg_http_server_config cfg;
    eg_http_handler_fn *handler;
    eg_http_done_fn *done;
    void *data;
    struct eg_http_conn *conns;
    struct eg_http_server_stats stats;
    bool is_draining;
    uv_timer_t resume_timer; /* runs connections that used up their budget */
    uv_timer_t grace_timer;  /* a drain's end of grace for idle keep-alive connections */
    struct eg_http_conn *resume_head;
    bool is_closed;
    time_t date_sec;
    char date[40];
};

struct eg_http_conn {
    struct eg_net_conn net;
    struct eg_http_server *srv;
    struct eg_http_parser parser;
    struct eg_http_conn *prev;
    struct eg_http_conn *next;
    struct eg_http_req *head; /* oldest request awaiting its response write */
    struct eg_http_req *tail;
    size_t inflight;
    size_t writing_count;  /* requests whose bytes the current write carries */
    struct eg_buf pending; /* unparsed bytes held while paused */
    struct eg_buf out;     /* bytes of the current write */
    enum timer_mode timer;
    bool want_close; /* no more requests; close once the queue is empty */
    bool parse_failed;
    bool is_lingering;
    bool is_running;    /* inside conn_run or on_read's parse: do not re-enter */
    bool has_requested; /* at least one request started on this connection */
    bool in_resume;     /* on the server's resume list */
    struct eg_http_conn *resume_next;
};

static void conn_process(struct eg_http_conn *c, const char *data, size_t n);
static void conn_run(struct eg_http_conn *c);
static void conn_update_timer(struct eg_http_conn *c, bool rearm_body);
static void set_timer(struct eg_http_conn *c, enum timer_mode mode, uint64_t ms, bool rearm);
static const char *cached_date(struct eg_http_server *s)
{
    time_t now = time(NULL);

    if (now != s->date_sec) {
        struct tm tm;

        gmtime_r(&now, &tm);
        strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        s->date_sec = now;
    }
    return s->date;
}

static struct eg_http_req *new_req(void *data)
{
    struct eg_http_conn *c = data;

    return eg_http_req_new(c->srv->cfg.limits.arena_bytes, c->srv->cfg.limits.body_bytes);
}

static bool request_id_ok(const char *v, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = v[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
              || ch == '-' || ch == '_' || ch == '.' || ch == ':'))
            return false;
    }
    return true;
}

static void set_request_id(struct eg_http_req *r)
{
    size_t n = 0;
    const char *v = r->header_count > 0 ? eg_http_req_header(r, "x-request-id", &n) : NULL;

    if (v != NULL && request_id_ok(v, n)) {
        memcpy(r->request_id, v, n);
        r->request_id[n] = '\0';
    } else {
        eg_request_id(r->request_id);
    }
}

static void enqueue(struct eg_http_conn *c, struct eg_http_req *r)
{
    r->conn = c;
    r->app = c->srv->data;
    r->next = NULL;
    if (c->tail != NULL)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->inflight++;
    c->srv->stats.requests_in_flight++;
}

static const char *error_code(int status)
{
    switch (status) {
    case 400: return "bad_request";
    case 408: return "request_timeout";
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 417: return "expectation_failed";
    case 431: return "request_header_fields_too_large";
    case 503: return "service_unavailable";
    default: return "bad_request";
    }
}

/* Queues a final error response (no handler involved); the connection closes after it. */
static void respond_final_error(struct eg_http_conn *c, struct eg_http_req *r, int status)
{
    if (r == NULL)
        r = new_req(c);
    if (r->method_name == NULL)
        r->method_name = "-";
    set_request_id(r);
    r->close_after = true;
    c->want_close = true;
    enqueue(c, r);
    if (status == 503)
        eg_http_add_header(r, "Retry-After", "1");
    eg_http_respond_error(r, status, error_code(status));
}

static void on_head(struct eg_http_parser *p, struct eg_http_req *r, void *data)
{
    struct eg_http_conn *c = data;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b;

    (void)p;
    /* 100 Continue may only go out when nothing else is queued ahead of it on the wire. */
    if (!r->expect_continue || c->inflight > 0 || c->net.is_writing)
        return;
    b = uv_buf_init((char *)cont, sizeof(cont) - 1);
    c->writing_count = 0;
    eg_net_conn_write(&c->net, &b, 1);
}

static void dispatch(struct eg_http_conn *c, struct eg_http_req *r)
{
    /* The next idle period starts a fresh keep-alive deadline. */
    set_timer(c, TIMER_NONE, 0, false);
    c->has_requested = true;
    set_request_id(r);
    if (!r->keep_alive || c->srv->is_draining) {
        r->close_after = true;
        c->want_close = true;
    }
    enqueue(c, r);
    c->srv->handler(r, c->srv->data);
}

static void stash(struct eg_http_conn *c, const char *data, size_t n)
{
    if (n == 0)
        return;
    /* Reading is stopped while anything is pending, so this holds at most one read's bytes. */
    if (eg_buf_append(&c->pending, data, n) < 0) {
        eg_net_conn_close(&c->net);
        return;
    }
    eg_net_conn_read_stop(&c->net);
}

/* Parses and dispatches requests from data; keeps what cannot be parsed yet in `pending`. */
static void conn_process(struct eg_http_conn *c, const char *data, size_t n)
{
    while (n > 0 && !c->net.is_closing) {
        size_t used = 0;
        enum eg_http_parse_event ev;

        if (c->want_close || c->parse_failed)
            return; /* nothing after a final request is parsed */
        if (c->inflight >= c->srv->cfg.pipeline_max) {
            stash(c, data, n);
            return;
        }
        ev = eg_http_parser_feed(&c->parser, data, n, &used);
        data += used;
        n -= used;
        if (ev == EG_HTTP_PARSE_REQUEST) {
            dispatch(c, eg_http_parser_take(&c->parser));
        } else if (ev == EG_HTTP_PARSE_ERROR) {
            c->parse_failed = true;
            respond_final_error(c, eg_http_parser_abandon(&c->parser), c->parser.error_status);
            return;
        }
    }
}

static void finish_req(struct eg_http_conn *c, struct eg_http_req *r)
{
    c->inflight--;
    c->srv->stats.requests_in_flight--;
    if (c->srv->done != NULL)
        c->srv->done(r, c->srv->data);
    eg_http_req_free(r);
}

/*
 * Retires the requests whose bytes were written. Returns false when the connection is ending
 * (closed, or lingering after a final error response).
 */
static bool after_write(struct eg_http_conn *c, int status)
{
    bool close_now = false;

    for (size_t i = 0; i < c->writing_count && c->head != NULL; i++) {
        struct eg_http_req *r = c->head;

        c->head = r->next;
        if (c->head == NULL)
            c->tail = NULL;
        if (r->close_after)
            close_now = true;
        finish_req(c, r);
    }
    c->writing_count = 0;
    if (c->head != NULL && c->head->is_streaming)
        eg_buf_fini(&c->out); /* written; an idle stream keeps no write buffer */
    if (status < 0) {
        eg_net_conn_close(&c->net);
        return false;
    }
    if (close_now && c->parse_failed) {
        /* Lingering close: the client may still be sending; let it read our error first. */
        c->is_lingering = true;
        eg_net_conn_shutdown(&c->net);
        eg_net_conn_read_start(&c->net);
        return false;
    }
    if (close_now || (c->want_close && c->head == NULL)) {
        eg_net_conn_close(&c->net);
        return false;
    }
    return true;
}

/*
 * Gives a stream's arena back (eg_http_req_on_free): only when nothing registered an arena
 * cleanup, since that owner may still point into it. The access log keeps a copy of the path.
 */
static void stream_retire_arena(struct eg_http_req *r)
{
    if (r->arena.cleanups != NULL || r->arena.chunks == NULL)
        return;
    r->path_owned =
        eg_strndup(r->path != NULL ? r->path : "", r->path != NULL ? strlen(r->path) : 0);
    r->path = r->path_owned;
    r->target = NULL;
    r->target_len = 0;
    r->query = NULL;
    r->headers = NULL;
    r->header_count = 0;
    r->header_cap = 0;
    r->param_count = 0;
    memset(r->params, 0, sizeof(r->params));
    r->user = NULL;
    eg_arena_fini(&r->arena);
}

/*
 * Writes every response that is ready, in order, in one write. Returns 1 when the bytes went out
 * at once (requests retired), 0 when a write request is in flight or nothing was ready, -1 when
 * the connection is ending.
 */
static int conn_write_ready(struct eg_http_conn *c)
{
    struct eg_http_req *r;
    uv_buf_t b;
    size_t count = 0;
    ssize_t n;

    if (c->net.is_writing || c->net.is_closing)
        return 0;
    eg_buf_reset(&c->out);
    if (c->head != NULL && c->head->is_streaming) {
        /* A stream owns the connection: its head, then its chunks as they come. */
        r = c->head;
        if (!r->stream_head_sent) {
            if (eg_http_render_head(r, cached_date(c->srv), !r->stream_ended, &c->out) < 0) {
                eg_net_conn_close(&c->net);
                return -1;
            }
            r->stream_head_sent = true;
            /* An event stream can live for hours: drop what only the request phase needed. */
            eg_buf_fini(&r->field);
            eg_buf_fini(&r->value);
            eg_buf_fini(&r->body);
            eg_buf_fini(&r->resp_headers);
            stream_retire_arena(r);
        }
        if (r->stream_out.len > 0
            && eg_buf_append(&c->out, r->stream_out.base, r->stream_out.len) < 0) {
            eg_net_conn_close(&c->net);
            return -1;
        }
        r->bytes_out += c->out.len;
        eg_buf_fini(&r->stream_out); /* idle streams hold no queue memory */
        if (r->stream_ended) {
            eg_buf_puts(&c->out, "0\r\n\r\n");
            r->close_after = true;
            count = 1; /* retire the request once the end is written */
        } else if (c->out.len == 0) {
            return 0;
        }
    }
    for (r = count == 0 && (c->head == NULL || !c->head->is_streaming) ? c->head : NULL;
         r != NULL && r->has_responded && !r->is_held; r = r->next) {
        size_t before = c->out.len;
        bool keep = r->keep_alive && !r->close_after;

        if (eg_http_render_head(r, cached_date(c->srv), keep, &c->out) < 0
            || (!r->is_head && eg_buf_append(&c->out, r->resp_body.base, r->resp_body.len) < 0)) {
            eg_net_conn_close(&c->net);
            return -1;
        }
        r->bytes_out = c->out.len - before;
        count++;
        if (r->close_after)
            break;
    }
    if (c->out.len == 0)
        return 0;
    c->writing_count = count;
    b = uv_buf_init(c->out.base, (unsigned int)c->out.len);
    /* Try the socket first: a complete write needs no request, callback or watcher re-arm. */
    n = eg_net_conn_try_write(&c->net, &b, 1);
    if (n < 0) {
        eg_net_conn_close(&c->net);
        return -1;
    }
    if ((size_t)n == c->out.len)
        return after_write(c, 0) ? 1 : -1;
    b = uv_buf_init(c->out.base + n, (unsigned int)(c->out.len - (size_t)n));
    if (eg_net_conn_write(&c->net, &b, 1) < 0) {
        eg_net_conn_close(&c->net);
        return -1;
    }
    return 0;
}

/*
 * The connection's driver: writes ready responses, parses held bytes, resumes reading. Every
 * event entry point calls it; it never re-enters (a respond() from inside a handler it
 * dispatched is picked up by its next iteration), so no recursion grows with pipelining.
 */
/* Rounds of (write, parse up to pipeline_max requests) one conn_run may do before yielding. */
#define RUN_BUDGET_ROUNDS 8

static void on_resume_timer(uv_timer_t *t)
{
    struct eg_http_server *s = t->data;
    struct eg_http_conn *list = s->resume_head;

    s->resume_head = NULL;
    while (list != NULL) {
        struct eg_http_conn *c = list;

        list = c->resume_next;
        c->in_resume = false;
        conn_run(c);
    }
}

/* Lets the loop serve other connections, then continues c (fairness under pipelined floods). */
static void conn_yield(struct eg_http_conn *c)
{
    struct eg_http_server *s = c->srv;

    if (c->in_resume || s->is_closed)
        return;
    c->in_resume = true;
    c->resume_next = s->resume_head;
    s->resume_head = c;
    uv_timer_start(&s->resume_timer, on_resume_timer, 0, 0);
}

static void conn_run(struct eg_http_conn *c)
{
    bool progressed = true;
    int rounds = 0;

    if (c->is_running || c->net.is_closing || c->is_lingering)
        return;
    c->is_running = true;
    while (progressed && !c->net.is_closing && !c->is_lingering) {
        if (++rounds > RUN_BUDGET_ROUNDS) {
            conn_yield(c);
            break;
        }
        int w = conn_write_ready(c);

        progressed = w == 1;
        if (w < 0)
            break;
        if (c->pending.len > 0 && !c->want_close && !c->parse_failed
            && c->inflight < c->srv->cfg.pipeline_max) {
            struct eg_buf held = c->pending;

            eg_buf_init(&c->pending, PENDING_MAX);
            conn_process(c, held.base, held.len);
            eg_buf_fini(&held);
            progressed = true;
        }
    }
    if (!c->net.is_closing && !c->is_lingering && c->pending.len == 0 && !c->want_close
        && !c->parse_failed && !c->in_resume)
        eg_net_conn_read_start(&c->net);
    c->is_running = false;
    if (!c->net.is_closing)
        conn_update_timer(c, false);
}

/* The socket took what was queued: a stream waiting for room (eg_http_stream_on_drain) goes on. */
static void stream_drained(struct eg_http_conn *c)
{
    struct eg_http_req *r = c->head;

    if (r != NULL && r->is_streaming && r->on_drain != NULL && !r->stream_ended)
        r->on_drain(r, r->drain_data);
}

/* TLS only: ciphertext a direct write left queued is out, and no write of ours will complete. */
static void on_drained(struct eg_net_conn *nc)
{
    stream_drained(nc->data);
}

static void on_written(struct eg_net_conn *nc, int status)
{
    struct eg_http_conn *c = nc->data;

    if (after_write(c, status)) {
        stream_drained(c);
        conn_run(c);
    } else if (!nc->is_closing)
        conn_update_timer(c, false);
}

static void set_timer(struct eg_http_conn *c, enum timer_mode mode, uint64_t ms, bool rearm)
{
    if (mode == c->timer && !rearm)
        return;
    c->timer = mode;
    if (mode == TIMER_NONE)
        eg_net_conn_timer_stop(&c->net);
    else
        eg_net_conn_timer_start(&c->net, ms);
}

static void conn_update_timer(struct eg_http_conn *c, bool rearm_body)
{
    const struct eg_http_server_config *cfg = &c->srv->cfg;

    if (c->is_lingering)
        set_timer(c, TIMER_LINGER, LINGER_MS, false);
    else if (c->net.is_writing && c->writing_count > 0)
        set_timer(c, TIMER_WRITE, cfg->write_timeout_ms, false);
    else if (c->parser.in_message && !c->parser.head_done)
        set_timer(c, TIMER_HEADER, cfg->header_timeout_ms, false);
    else if (c->parser.in_message)
        set_timer(c, TIMER_BODY, cfg->body_timeout_ms, rearm_body);
    else if (c->inflight == 0)
        /* A connection that never sent a request gets the header timeout (nginx's
         * client_header_timeout), so idle connects cannot hold slots for a minute. */
        set_timer(c, TIMER_IDLE,
                  c->has_requested ? cfg->keepalive_timeout_ms : cfg->header_timeout_ms, false);
    else
        set_timer(c, TIMER_NONE, 0, false);
}

static void on_read(struct eg_net_conn *nc, const char *data, size_t n)
{
    struct eg_http_conn *c = nc->data;

    if (c->is_lingering || c->want_close || c->parse_failed)
        return; /* discard: the connection is ending */
    if (c->pending.len > 0) {
        stash(c, data, n);
        return;
    }
    c->is_running = true;
    conn_process(c, data, n);
    c->is_running = false;
    conn_run(c);
    if (!nc->is_closing)
        conn_update_timer(c, true);
}

static void on_eof(struct eg_net_conn *nc, int status)
{
    struct eg_http_conn *c = nc->data;

    /* A stream has nothing left to answer: its client went away. */
    if (c->head != NULL && c->head->is_streaming) {
        eg_net_conn_close(nc);
        return;
    }
    /* A half-closed client may still read the answers to what it already sent. */
    if (status == 0 && c->inflight > 0 && !c->is_lingering) {
        c->want_close = true;
        return;
    }
    eg_net_conn_close(nc);
}

static void on_timeout(struct eg_net_conn *nc)
{
    struct eg_http_conn *c = nc->data;

    switch (c->timer) {
    case TIMER_HEADER:
    case TIMER_BODY:
        c->timer = TIMER_NONE;
        if (c->inflight == 0 && !c->parse_failed) {
            c->parse_failed = true;
            eg_net_conn_read_stop(nc);
            respond_final_error(c, eg_http_parser_abandon(&c->parser), 408);
            return;
        }
        eg_net_conn_close(nc);
        break;
    default: eg_net_conn_close(nc); break;
    }
}

static void on_closed(struct eg_net_conn *nc)
{
    struct eg_http_conn *c = nc->data;
    struct eg_http_server *s = c->srv;
    struct eg_http_req *r;

    if (c->in_resume) {
        struct eg_http_conn **pp = &s->resume_head;

        while (*pp != NULL && *pp != c)
            pp = &(*pp)->resume_next;
        if (*pp == c)
            *pp = c->resume_next;
    }
    while ((r = c->head) != NULL) {
        c->head = r->next;
        r->status = r->has_responded ? r->status : 499; /* client went away first */
        finish_req(c, r);
    }
    eg_http_req_free(eg_http_parser_abandon(&c->parser));
    eg_http_req_free(eg_http_parser_take(&c->parser));
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->stats.connections_active--;
    eg_buf_fini(&c->pending);
    eg_buf_fini(&c->out);
    eg_free(c);
}

static const struct eg_net_conn_ops conn_ops = {
    .on_read = on_read,
    .on_eof = on_eof,
    .on_timeout = on_timeout,
    .on_written = on_written,
    .on_drained = on_drained,
    .on_closed = on_closed,
};

void eg_http_server_accept(uv_stream_t *listener, void *server)
{
    struct eg_http_server *s = server;
    struct eg_http_conn *c = eg_calloc(1, sizeof(*c));

    c->srv = s;
    eg_buf_init(&c->pending, PENDING_MAX);
    eg_buf_init(&c->out, 80u << 20);
    eg_http_parser_init(&c->parser, &s->cfg.limits, new_req, on_head, c);
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    s->stats.connections_active++;
    s->stats.connections_total++;
    if (eg_net_conn_accept(&c->net, listener, &conn_ops, c) < 0)
        return; /* on_closed frees c */
    if (s->stats.connections_active > s->cfg.max_connections || s->is_draining) {
        s->stats.connections_rejected++;
        respond_final_error(c, NULL, 503);
        return;
    }
    eg_net_conn_read_start(&c->net);
    conn_update_timer(c, false);
}

void eg_http_respond(struct eg_http_req *r, int status, const char *content_type)
{
    if (r->has_responded)
        return;
    r->status = status;
    r->content_type = content_type;
    r->has_responded = true;
    if (r->conn != NULL)
        conn_run(r->conn);
}

void eg_http_hold(struct eg_http_req *r)
{
    r->is_held = true;
}

void eg_http_release(struct eg_http_req *r)
{
    if (!r->is_held)
        return;
    r->is_held = false;
    if (r->has_responded && r->conn != NULL)
        conn_run(r->conn);
}

void eg_http_discard_held(struct eg_http_req *r)
{
    if (r->is_held)
        r->has_responded = false;
}

struct eg_http_server *eg_http_server_new(uv_loop_t *loop, const struct eg_http_server_config *cfg,
                                          eg_http_handler_fn *handler, eg_http_done_fn *done,
                                          void *data)
{
    struct eg_http_server *s = eg_calloc(1, sizeof(*s));

    s->loop = loop;
    s->cfg = *cfg;
    if (s->cfg.pipeline_max == 0)
        s->cfg.pipeline_max = 1;
    s->handler = handler;
    s->done = done;
    s->data = data;
    uv_timer_init(loop, &s->resume_timer);
    s->resume_timer.data = s;
    uv_timer_init(loop, &s->grace_timer);
    s->grace_timer.data = s;
    return s;
}

/* A drain's grace is over: close the connections with nothing in flight (the rest close after
 * their last answer). */
static void on_grace_timer(uv_timer_t *t)
{
    struct eg_http_server *s = t->data;
    struct eg_http_conn *next;

    for (struct eg_http_conn *c = s->conns; c != NULL; c = next) {
        next = c->next;
        if (c->inflight == 0 && !c->parser.in_message)
            eg_net_conn_close(&c->net);
    }
}

void eg_http_server_drain(struct eg_http_server *s)
{
    s->is_draining = true;
    /*
     * Idle keep-alive connections stay open for EG_HTTP_DRAIN_IDLE_GRACE_MS: a proxy may have
     * sent a request on one a moment ago (HAProxy reuses its idle server connections), and
     * closing it now would lose that request (a POST is not retried). A request that arrives
     * in the grace is answered with `Connection: close` (dispatch); then the rest close.
     */
    uv_timer_start(&s->grace_timer, on_grace_timer, EG_HTTP_DRAIN_IDLE_GRACE_MS, 0);
    for (struct eg_http_conn *c = s->conns; c != NULL; c = c->next) {
        /* Idle: the grace. A request still arriving keeps reading; dispatch() marks it the
         * connection's last. */
        if (c->inflight == 0 || c->parser.in_message)
            continue;
        /* Finish what is in flight, announce the close on the last response, then close. */
        c->want_close = true;
        if (c->tail != NULL && (!c->tail->has_responded || c->tail->is_held))
            c->tail->close_after = true;
        eg_net_conn_read_stop(&c->net);
    }
}

void eg_http_server_close_all(struct eg_http_server *s)
{
    if (!s->is_closed) {
        s->is_closed = true;
        uv_close((uv_handle_t *)&s->resume_timer, NULL);
        uv_close((uv_handle_t *)&s->grace_timer, NULL);
    }
    for (struct eg_http_conn *c = s->conns; c != NULL; c = c->next)
        eg_net_conn_close(&c->net);
}

const char *eg_http_req_peer(const struct eg_http_req *r)
{
    return r->conn != NULL ? r->conn->net.peer : NULL;
}

void eg_http_stream_begin(struct eg_http_req *r, int status, const char *content_type)
{
    if (r->has_responded)
        return;
    r->status = status;
    r->content_type = content_type;
    r->is_streaming = true;
    r->has_responded = true;
    if (r->conn != NULL)
        conn_run(r->conn);
}

int eg_http_stream_write(struct eg_http_req *r, const char *data, size_t len)
{
    char size_line[24];
    int n;

    if (r->conn == NULL || r->conn->net.is_closing || r->stream_ended)
        return EG_ECANCELED;
    n = snprintf(size_line, sizeof(size_line), "%zx\r\n", len);
    if (r->stream_out.len + (size_t)n + len + 2 > EG_HTTP_STREAM_MAX)
        return EG_ELIMIT;
    eg_buf_append(&r->stream_out, size_line, (size_t)n);
    eg_buf_append(&r->stream_out, data, len);
    eg_buf_append(&r->stream_out, "\r\n", 2);
    conn_run(r->conn);
    return 0;
}

int eg_http_stream_writev(struct eg_http_req *r, const uv_buf_t *bufs, unsigned int nbufs)
{
    struct eg_http_conn *c = r->conn;
    uv_buf_t iov[EG_HTTP_WRITEV_MAX + 2];
    char size_line[24];
    size_t len = 0;
    size_t total;
    ssize_t n;
    int sl;

    if (c == NULL || c->net.is_closing || r->stream_ended)
        return EG_ECANCELED;
    if (nbufs > EG_HTTP_WRITEV_MAX)
        return EG_ELIMIT;
    for (unsigned int i = 0; i < nbufs; i++)
        len += bufs[i].len;
    if (len == 0)
        return 0;
    sl = snprintf(size_line, sizeof(size_line), "%zx\r\n", len);
    total = (size_t)sl + len + 2;
    if (r->stream_out.len + total > EG_HTTP_STREAM_MAX)
        return EG_ELIMIT;
    iov[0] = uv_buf_init(size_line, (unsigned int)sl);
    memcpy(iov + 1, bufs, nbufs * sizeof(*bufs));
    iov[nbufs + 1] = uv_buf_init((char *)"\r\n", 2);
    n = 0;
    /* Straight to the socket when nothing is ahead of these bytes. */
    if (r->stream_head_sent && r->stream_out.len == 0 && !c->net.is_writing && !c->is_running) {
        n = eg_net_conn_try_write(&c->net, iov, nbufs + 2);
        if (n < 0) {
            eg_net_conn_close(&c->net);
            return EG_ECANCELED;
        }
        r->bytes_out += (size_t)n;
        if ((size_t)n == total)
            return 0;
    }
    /* Queue the rest, skipping what the socket took. */
    for (unsigned int i = 0; i < nbufs + 2; i++) {
        size_t skip = EG_MIN((size_t)n, iov[i].len);

        n -= (ssize_t)skip;
        eg_buf_append(&r->stream_out, iov[i].base + skip, iov[i].len - skip);
    }
    conn_run(c);
    return 0;
}

void eg_http_stream_on_drain(struct eg_http_req *r, void (*fn)(struct eg_http_req *r, void *data),
                             void *data)
{
    r->on_drain = fn;
    r->drain_data = data;
}

size_t eg_http_stream_pending(const struct eg_http_req *r)
{
    size_t queued = 0;

    /* With TLS this includes ciphertext the TLS layer still holds (eg_net_conn_write_pending). */
    if (r->conn != NULL)
        queued = eg_net_conn_write_pending(&r->conn->net);
    return r->stream_out.len + queued;
}

void eg_http_stream_end(struct eg_http_req *r)
{
    if (!r->is_streaming || r->stream_ended)
        return;
    r->stream_ended = true;
    if (r->conn != NULL && !r->conn->net.is_closing)
        conn_run(r->conn);
}

size_t eg_http_server_connections(const struct eg_http_server *s)
{
    return (size_t)s->stats.connections_active;
}

void eg_http_server_get_stats(const struct eg_http_server *s, struct eg_http_server_stats *out)
{
    *out = s->stats;
}

void eg_http_server_free(struct eg_http_server *s)
{
    eg_free(s);
}
