/*
 * Connection lifecycle over one uv_tcp_t and one uv_timer_t.
 *
 *   accept ──> open ──eg_net_conn_close──> closing ──(both close_cbs)──> on_closed
 *
 * Reads land in one loop-wide buffer: the protocol layer consumes or copies them before on_read
 * returns, so an idle connection holds no read buffer at all (it matters for many SSE streams).
 *
 * A connection accepted from a TLS listener has c->tls set; every entry point below then hands
 * over to src/net/tls.c, which keeps these contracts on plaintext.
 */
#include "engram/net.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "net_int.h"

#define READ_BUF_BYTES (64 * 1024)

static char read_buf[READ_BUF_BYTES];
static bool read_buf_busy;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    /* One loop thread: the buffer is free again once on_read returns. */
    if (read_buf_busy) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    read_buf_busy = true;
    buf->base = read_buf;
    buf->len = sizeof(read_buf);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct eg_net_conn *c = h->data;

    if (--c->handles_open == 0) {
        if (c->tls != NULL)
            eg__net_tls_conn_free(c);
        c->ops->on_closed(c);
    }
}

static void on_uv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct eg_net_conn *c = s->data;

    if (buf->base == read_buf)
        read_buf_busy = false;
    if (n == 0 || c->is_closing)
        return;
    if (c->tls != NULL) {
        eg__net_tls_on_uv_read(c, n, buf->base);
        return;
    }
    if (n < 0) {
        eg_net_conn_read_stop(c);
        c->ops->on_eof(c, n == UV_EOF ? 0 : (int)n);
        return;
    }
    c->ops->on_read(c, buf->base, (size_t)n);
}

static void on_uv_timer(uv_timer_t *t)
{
    struct eg_net_conn *c = t->data;

    if (!c->is_closing)
        c->ops->on_timeout(c);
}

static void on_uv_write(uv_write_t *w, int status)
{
    struct eg_net_conn *c = w->data;

    c->is_writing = false;
    c->ops->on_written(c, status);
}

static void format_peer(struct eg_net_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;

    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;

            uv_ip4_name(a, ip, sizeof(ip));
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

            uv_ip6_name(a, ip, sizeof(ip));
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
}

int eg_net_conn_accept(struct eg_net_conn *c, uv_stream_t *server,
                       const struct eg_net_conn_ops *ops, void *data)
{
    int rc;

    memset(c, 0, sizeof(*c));
    c->ops = ops;
    c->data = data;
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->wreq.data = c;
    c->handles_open = 2;
    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc < 0) {
        eg_net_conn_close(c);
        return rc;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    format_peer(c);
    /* listener.c makes every listening socket's data its struct eg_net_listeners. */
    if (server->data != NULL && ((struct eg_net_listeners *)server->data)->tls != NULL) {
        rc = eg__net_tls_conn_attach(c, ((struct eg_net_listeners *)server->data)->tls);
        if (rc < 0) {
            eg_net_conn_close(c);
            return rc;
        }
    }
    return 0;
}

void eg__net_conn_uv_read(struct eg_net_conn *c, bool on)
{
    if (on)
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_uv_read);
    else
        uv_read_stop((uv_stream_t *)&c->tcp);
}

void eg_net_conn_read_start(struct eg_net_conn *c)
{
    if (c->is_reading || c->is_closing)
        return;
    if (c->tls != NULL) {
        c->is_reading = true;
        eg__net_tls_read_changed(c);
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_uv_read) == 0)
        c->is_reading = true;
}

void eg_net_conn_read_stop(struct eg_net_conn *c)
{
    if (!c->is_reading)
        return;
    c->is_reading = false;
    if (c->tls != NULL)
        eg__net_tls_read_changed(c);
    else
        uv_read_stop((uv_stream_t *)&c->tcp);
}

int eg_net_conn_write(struct eg_net_conn *c, const uv_buf_t *bufs, unsigned int nbufs)
{
    int rc;

    if (c->is_writing)
        return UV_EBUSY;
    if (c->is_closing)
        return UV_ECANCELED;
    if (c->tls != NULL)
        return eg__net_tls_write(c, bufs, nbufs);
    rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, nbufs, on_uv_write);
    if (rc == 0)
        c->is_writing = true;
    return rc;
}

ssize_t eg_net_conn_try_write(struct eg_net_conn *c, const uv_buf_t *bufs, unsigned int nbufs)
{
    int n;

    if (c->is_writing || c->is_closing)
        return 0;
    if (c->tls != NULL)
        return eg__net_tls_try_write(c, bufs, nbufs);
    n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
    if (n == UV_EAGAIN)
        return 0;
    return n;
}

size_t eg_net_conn_write_pending(const struct eg_net_conn *c)
{
    size_t n = uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);

    return c->tls != NULL ? n + eg__net_tls_pending(c) : n;
}

void eg_net_conn_timer_start(struct eg_net_conn *c, uint64_t ms)
{
    if (!c->is_closing)
        uv_timer_start(&c->timer, on_uv_timer, ms, 0);
}

void eg_net_conn_timer_stop(struct eg_net_conn *c)
{
    uv_timer_stop(&c->timer);
}

static void on_uv_shutdown(uv_shutdown_t *r, int status)
{
    (void)r;
    (void)status; /* the owner's linger timer decides when to close */
}

void eg_net_conn_shutdown(struct eg_net_conn *c)
{
    if (c->tls != NULL)
        eg__net_tls_shutdown(c);
    else if (!c->is_closing)
        uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_uv_shutdown);
}

void eg_net_conn_close(struct eg_net_conn *c)
{
    if (c->is_closing)
        return;
    c->is_closing = true;
    if (c->tls != NULL) {
        eg__net_tls_close(c);
        return;
    }
    eg_net_conn_read_stop(c);
    uv_timer_stop(&c->timer);
    eg__net_conn_close_handles(c);
}

void eg__net_conn_close_handles(struct eg_net_conn *c)
{
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void eg_net_ignore_sigpipe(void)
{
    signal(SIGPIPE, SIG_IGN);
}
