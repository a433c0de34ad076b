/*
 * Redis connection with liveness: resolve -> connect -> (AUTH, SELECT) -> probe every ping_ms.
 *
 *   DOWN --timer--> RESOLVING --> CONNECTING --first answer--> UP --probe late/error--> DOWN
 *
 * A command connection probes with PING, or with `PUBLISH <hb> hb` when it has a heartbeat
 * channel; a subscriber connection subscribes to that channel and counts as alive while the
 * heartbeats keep arriving (hiredis 0.14 never calls back for PING on a subscribed connection,
 * INTEGRATION.md §1.4). So one published heartbeat proves the whole pub/sub path.
 *
 * hiredis does not reconnect by itself and frees its context after the disconnect callback, so
 * that callback only drops our pointer and arms the backoff timer. A probe that gets no answer in
 * time (a SIGSTOPped or blackholed Redis keeps its socket open) tears the context down from the
 * timer, never from inside a hiredis callback.
 */
#include "engram/bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <async.h>
#include <hiredis.h>

#include "engram/obs.h"

#define CONNECT_TIMEOUT_MS 3000
/* A probe unanswered this long means a hung server (SIGSTOP, blackhole): reconnect. */
#define PROBE_DEADLINE_MS 2000
#define BACKOFF_MIN_MS    100
#define BACKOFF_MAX_MS    5000

enum redis_state {
    R_DOWN,
    R_RESOLVING,
    R_CONNECTING,
    R_UP,
    R_CLOSED,
};

struct eg_redis {
    uv_loop_t *loop;
    struct eg_redis_addr addr;
    uint64_t ping_ms;
    redisAsyncContext *ac;
    enum redis_state state;
    uv_timer_t timer; /* backoff, connect timeout, ping schedule and deadline */
    uv_getaddrinfo_t gai;
    char ip[64];
    unsigned attempt;
    bool ping_outstanding;
    uint64_t ping_sent_ms;
    uint64_t last_rx_ms; /* subscriber: when a message last arrived */
    struct eg_redis_hooks hooks;
    char *hb;
    size_t hb_len;
    struct eg_redis_stats stats;
    int closing_parts; /* the timer's close, and a DNS lookup still in flight */
    void (*on_closed)(void *data);
    void *closed_data;
};

/* ---- the libuv adapter -------------------------------------------------------------------- */

struct uv_adapter {
    uv_poll_t poll;
    redisAsyncContext *ac;
    int events;
    bool is_closing;
};

static void on_redis_poll(uv_poll_t *h, int status, int events)
{
    struct uv_adapter *a = h->data;

    if (a->is_closing)
        return;
    /* libuv stops the handle on POLLERR: let hiredis read/write and discover the error. */
    if (status < 0)
        events = UV_READABLE | UV_WRITABLE;
    if (events & UV_READABLE)
        redisAsyncHandleRead(a->ac);
    /* Reading may have freed the context (cleanup sets is_closing). */
    if ((events & UV_WRITABLE) && !a->is_closing)
        redisAsyncHandleWrite(a->ac);
    /* After POLLERR hiredis may have read only the data queued before the error: watch again,
     * or the error (and every later reply) would never be seen. */
    if (status < 0 && !a->is_closing && a->events != 0)
        uv_poll_start(&a->poll, a->events, on_redis_poll);
}

static void adapter_update(struct uv_adapter *a, int events)
{
    if (a->is_closing || events == a->events)
        return;
    a->events = events;
    if (events == 0)
        uv_poll_stop(&a->poll);
    else
        uv_poll_start(&a->poll, events, on_redis_poll);
}

static void add_read(void *p)
{
    struct uv_adapter *a = p;

    adapter_update(a, a->events | UV_READABLE);
}

static void del_read(void *p)
{
    struct uv_adapter *a = p;

    adapter_update(a, a->events & ~UV_READABLE);
}

static void add_write(void *p)
{
    struct uv_adapter *a = p;

    adapter_update(a, a->events | UV_WRITABLE);
}

static void del_write(void *p)
{
    struct uv_adapter *a = p;

    adapter_update(a, a->events & ~UV_WRITABLE);
}

static void on_adapter_closed(uv_handle_t *h)
{
    eg_free(h->data);
}

static void adapter_cleanup(void *p)
{
    struct uv_adapter *a = p;

    a->is_closing = true;
    uv_close((uv_handle_t *)&a->poll, on_adapter_closed);
}

static int adapter_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    struct uv_adapter *a;

    if (ac->ev.data != NULL)
        return REDIS_ERR;
    a = eg_calloc(1, sizeof(*a));
    if (uv_poll_init_socket(loop, &a->poll, ac->c.fd) != 0) {
        eg_free(a);
        return REDIS_ERR;
    }
    a->poll.data = a;
    a->ac = ac;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = adapter_cleanup;
    ac->ev.data = a;
    return REDIS_OK;
}

/* ---- URL ---------------------------------------------------------------------------------- */

int eg_redis_addr_parse(const char *url, struct eg_redis_addr *out)
{
    const char *p;
    const char *at;
    const char *host_end;
    size_t n;

    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (strncmp(url, "redis://", 8) != 0)
        return EG_ECONFIG;
    p = url + 8;
    at = strchr(p, '@');
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));

        if (colon != NULL) {
            n = (size_t)(at - colon - 1);
            if (n >= sizeof(out->password))
                return EG_ECONFIG;
            memcpy(out->password, colon + 1, n);
        }
        p = at + 1;
    }
    host_end = p + strcspn(p, ":/");
    n = (size_t)(host_end - p);
    if (n == 0 || n >= sizeof(out->host))
        return EG_ECONFIG;
    memcpy(out->host, p, n);
    p = host_end;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);

        if (end == p + 1 || port < 1 || port > 65535)
            return EG_ECONFIG;
        out->port = (int)port;
        p = end;
    }
    if (*p == '/' && p[1] != '\0') {
        char *end;
        long db = strtol(p + 1, &end, 10);

        if (*end != '\0' || db < 0 || db > 1000)
            return EG_ECONFIG;
        out->db = (int)db;
    } else if (*p != '\0' && strcmp(p, "/") != 0) {
        return EG_ECONFIG;
    }
    return 0;
}

/* ---- connection lifecycle ----------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void schedule(struct eg_redis *r, uint64_t ms)
{
    if (r->state != R_CLOSED)
        uv_timer_start(&r->timer, on_timer, ms, 0);
}

static void go_down(struct eg_redis *r, const char *why)
{
    uint64_t delay = BACKOFF_MIN_MS << EG_MIN(r->attempt, 6u);
    unsigned char jitter;

    if (r->stats.is_up) {
        r->stats.reconnects_total++;
        eg_log_fields(EG_LOG_WARN, "redis connection lost",
                      (struct eg_log_field[]){EG_LF_S("error", why)}, 1);
    } else if (r->attempt < 3 || r->attempt % 20 == 0) {
        eg_log_fields(EG_LOG_WARN, "cannot connect to redis",
                      (struct eg_log_field[]){EG_LF_S("error", why),
                                              EG_LF_I("attempt", (int64_t)r->attempt + 1)},
                      2);
    }
    if (r->stats.is_up && r->hooks.on_down != NULL && r->state != R_CLOSED)
        r->hooks.on_down(r->hooks.data);
    r->stats.is_up = false;
    r->ping_outstanding = false;
    if (r->state == R_CLOSED)
        return;
    r->state = R_DOWN;
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    eg_random_bytes(&jitter, 1);
    r->attempt++;
    schedule(r, delay / 2 + (delay / 2) * jitter / 255);
}

/* Tears the context down from outside hiredis's callbacks (timers only). */
static void drop_context(struct eg_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;

    r->ac = NULL;
    if (ac != NULL) {
        ac->data = NULL; /* its callbacks must not find us any more */
        redisAsyncFree(ac);
    }
    go_down(r, why);
}

static void mark_up(struct eg_redis *r)
{
    bool was_up = r->stats.is_up;

    r->stats.is_up = true;
    r->state = R_UP;
    r->attempt = 0;
    if (!was_up) {
        eg_log_fields(EG_LOG_INFO, "redis connected",
                      (struct eg_log_field[]){
                          EG_LF_S("role", r->hooks.is_subscriber ? "subscriber" : "commands")},
                      1);
        if (r->hooks.on_up != NULL)
            r->hooks.on_up(r->hooks.data);
    }
}

/* A callback of ours for the context in use (not for one torn down, whose queued callbacks
 * hiredis still runs with NULL replies). */
static bool is_current(const struct eg_redis *r, const redisAsyncContext *ac)
{
    return r != NULL && r->state != R_CLOSED && r->ac == ac && ac->data == r;
}

static void on_pong(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct eg_redis *r = privdata;
    redisReply *rep = reply;

    if (!is_current(r, ac))
        return;
    r->ping_outstanding = false;
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        return; /* the disconnect callback, or the next ping deadline, handles it */
    r->stats.last_ping_seconds = (double)(uv_now(r->loop) - r->ping_sent_ms) / 1000.0;
    mark_up(r);
}

static void send_ping(struct eg_redis *r)
{
    int rc;

    r->ping_outstanding = true;
    r->ping_sent_ms = uv_now(r->loop);
    if (r->hb != NULL)
        rc = redisAsyncCommand(r->ac, on_pong, r, "PUBLISH %b hb", r->hb, r->hb_len);
    else
        rc = redisAsyncCommand(r->ac, on_pong, r, "PING");
    if (rc != REDIS_OK)
        drop_context(r, "PING could not be queued");
}

/* Every reply on a subscriber connection: subscribe acknowledgements and messages. */
static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct eg_redis *r = privdata;
    redisReply *rep = reply;
    const redisReply *kind;
    const redisReply *ch;

    if (!is_current(r, ac) || rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3)
        return;
    kind = rep->element[0];
    ch = rep->element[1];
    if (kind->type != REDIS_REPLY_STRING || ch->type != REDIS_REPLY_STRING)
        return;
    r->last_rx_ms = uv_now(r->loop);
    if (strcmp(kind->str, "message") == 0) {
        const redisReply *msg = rep->element[2];

        r->stats.messages_total++;
        if ((size_t)ch->len == r->hb_len && memcmp(ch->str, r->hb, r->hb_len) == 0)
            return;
        if (msg->type == REDIS_REPLY_STRING && r->hooks.on_message != NULL)
            r->hooks.on_message(ch->str, (size_t)ch->len, msg->str, (size_t)msg->len,
                                r->hooks.data);
    } else if (strcmp(kind->str, "subscribe") == 0) {
        if ((size_t)ch->len == r->hb_len && memcmp(ch->str, r->hb, r->hb_len) == 0)
            mark_up(r);
        else if (r->hooks.on_subscribed != NULL)
            r->hooks.on_subscribed(ch->str, (size_t)ch->len, r->hooks.data);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct eg_redis *r = ac->data;

    if (r == NULL || r->state == R_CLOSED)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        r->ac = NULL;
        go_down(r, ac->errstr);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct eg_redis *r = ac->data;

    (void)status;
    if (r == NULL)
        return;
    r->ac = NULL; /* hiredis frees it right after this callback */
    if (r->state != R_CLOSED)
        go_down(r, ac->errstr[0] != '\0' ? ac->errstr : "disconnected");
}

static void start_connect(struct eg_redis *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->ip, r->addr.port);

    if (ac == NULL) {
        go_down(r, "out of memory");
        return;
    }
    if (ac->err != 0) {
        go_down(r, ac->errstr);
        redisAsyncFree(ac);
        return;
    }
    ac->data = r;
    if (adapter_attach(ac, r->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        go_down(r, "cannot watch the redis socket");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    r->state = R_CONNECTING;
    /* Commands queue until the connection is up; the PING doubles as the connect check. */
    if (r->addr.password[0] != '\0')
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", r->addr.password);
    if (r->addr.db != 0)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", r->addr.db);
    if (r->hooks.is_subscriber) {
        /* Up once the heartbeat channel is subscribed; the owner then subscribes the rest. */
        r->last_rx_ms = uv_now(r->loop);
        redisAsyncCommand(ac, on_sub_reply, r, "SUBSCRIBE %b", r->hb, r->hb_len);
    } else {
        send_ping(r);
    }
    schedule(r, CONNECT_TIMEOUT_MS);
}

static void closed_part(struct eg_redis *r)
{
    if (--r->closing_parts > 0)
        return;
    if (r->on_closed != NULL)
        r->on_closed(r->closed_data);
    eg_free(r->hb);
    eg_free(r);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct eg_redis *r = req->data;

    if (r->state == R_CLOSED) {
        uv_freeaddrinfo(res);
        closed_part(r);
        return;
    }
    if (status < 0 || res == NULL) {
        uv_freeaddrinfo(res);
        go_down(r, "cannot resolve the redis host");
        return;
    }
    if (res->ai_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, r->ip, sizeof(r->ip));
    else
        uv_ip4_name((struct sockaddr_in *)res->ai_addr, r->ip, sizeof(r->ip));
    uv_freeaddrinfo(res);
    start_connect(r);
}

static void on_timer(uv_timer_t *t)
{
    struct eg_redis *r = t->data;
    struct addrinfo hints;

    switch (r->state) {
    case R_DOWN:
        /* redisAsyncConnect resolves names with a blocking getaddrinfo: resolve off the loop. */
        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        r->state = R_RESOLVING;
        r->gai.data = r;
        if (uv_getaddrinfo(r->loop, &r->gai, on_resolved, r->addr.host, NULL, &hints) < 0)
            go_down(r, "cannot resolve the redis host");
        break;
    case R_CONNECTING:
    case R_UP:
        if (r->state == R_CONNECTING && !r->stats.is_up) {
            drop_context(r, "timed out connecting to redis");
            break;
        }
        if (r->hooks.is_subscriber) {
            /* Heartbeats come every ping_ms while the command connection is up: three missed
             * ones mean the path is broken (INTEGRATION.md §1.4). */
            if (uv_now(r->loop) - r->last_rx_ms > 3 * r->ping_ms) {
                drop_context(r, "no heartbeat arrived on the subscriber connection");
                break;
            }
        } else if (r->ping_outstanding) {
            if (uv_now(r->loop) - r->ping_sent_ms >= PROBE_DEADLINE_MS) {
                drop_context(r, "redis did not answer PING in time");
                break;
            }
        } else {
            send_ping(r);
        }
        schedule(r, r->ping_ms);
        break;
    default: break;
    }
}

struct eg_redis *eg_redis_new(uv_loop_t *loop, const struct eg_redis_addr *addr, uint64_t ping_ms,
                              const struct eg_redis_hooks *hooks)
{
    struct eg_redis *r = eg_calloc(1, sizeof(*r));

    r->loop = loop;
    r->addr = *addr;
    r->ping_ms = ping_ms;
    if (hooks != NULL) {
        r->hooks = *hooks;
        if (hooks->hb_channel != NULL) {
            r->hb_len = strlen(hooks->hb_channel);
            r->hb = eg_strndup(hooks->hb_channel, r->hb_len);
        }
    }
    r->state = R_DOWN;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    schedule(r, 0);
    return r;
}

void eg_redis_get_stats(const struct eg_redis *r, struct eg_redis_stats *out)
{
    *out = r->stats;
}

bool eg_redis_is_up(const struct eg_redis *r)
{
    return r->stats.is_up && r->ac != NULL;
}

int eg_redis_publish(struct eg_redis *r, const char *channel, size_t channel_len, const char *msg,
                     size_t msg_len)
{
    if (!eg_redis_is_up(r)
        || redisAsyncCommand(r->ac, NULL, NULL, "PUBLISH %b %b", channel, channel_len, msg, msg_len)
               != REDIS_OK)
        return EG_EUNAVAIL;
    r->stats.commands_total++;
    return 0;
}

int eg_redis_subscribe(struct eg_redis *r, const char *channel, size_t len, bool subscribe)
{
    int rc;

    if (!eg_redis_is_up(r) || !r->hooks.is_subscriber)
        return EG_EUNAVAIL;
    if (subscribe)
        rc = redisAsyncCommand(r->ac, on_sub_reply, r, "SUBSCRIBE %b", channel, len);
    else
        rc = redisAsyncCommand(r->ac, on_sub_reply, r, "UNSUBSCRIBE %b", channel, len);
    return rc == REDIS_OK ? 0 : EG_EUNAVAIL;
}

static void on_redis_timer_closed(uv_handle_t *h)
{
    closed_part(h->data);
}

void eg_redis_close(struct eg_redis *r, void (*on_closed)(void *data), void *data)
{
    redisAsyncContext *ac = r->ac;

    r->on_closed = on_closed;
    r->closed_data = data;
    r->closing_parts = 1;
    if (r->state == R_RESOLVING) {
        /* on_resolved still runs (cancelled or not) and completes the close. */
        r->closing_parts++;
        uv_cancel((uv_req_t *)&r->gai);
    }
    r->state = R_CLOSED;
    r->ac = NULL;
    if (ac != NULL) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    uv_close((uv_handle_t *)&r->timer, on_redis_timer_closed);
}

/* ---- commands ----------------------------------------------------------------------------- */

struct int_call {
    eg_redis_int_fn *cb;
    void *data;
};

static void on_int_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct int_call *call = privdata;
    redisReply *rep = reply;

    (void)ac;
    /* NULL: the connection went away with the command pending (hiredis calls us once). */
    if (rep != NULL && rep->type == REDIS_REPLY_INTEGER)
        call->cb(0, rep->integer, call->data);
    else
        call->cb(EG_EUNAVAIL, 0, call->data);
    eg_free(call);
}

int eg_redis_command_int(struct eg_redis *r, int argc, const char **argv, eg_redis_int_fn *cb,
                         void *data)
{
    struct int_call *call;

    if (r == NULL || r->state != R_UP || r->ac == NULL)
        return EG_EUNAVAIL;
    call = eg_malloc(sizeof(*call));
    call->cb = cb;
    call->data = data;
    if (redisAsyncCommandArgv(r->ac, on_int_reply, call, argc, argv, NULL) != REDIS_OK) {
        eg_free(call);
        return EG_EUNAVAIL;
    }
    return 0;
}
