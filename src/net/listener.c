/* Listening sockets: one per bind address, all on the same port. */
#include "engram/net.h"

#include <stdio.h>
#include <string.h>

static void on_connection(uv_stream_t *server, int status)
{
    struct eg_net_listeners *l = server->data;

    /* A failed accept (EMFILE and friends) is retried by libuv on the next readiness. */
    if (status < 0)
        return;
    l->on_accept(server, l->data);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct eg_net_listeners *l = h->data;

    if (--l->open == 0) {
        eg_free(l->socks);
        l->socks = NULL;
        l->count = 0;
    }
}

static int bind_one(uv_tcp_t *s, const char *addr, int port, int backlog)
{
    struct sockaddr_storage ss;
    int rc;

    if (strchr(addr, ':') != NULL) {
        rc = uv_ip6_addr(addr, port, (struct sockaddr_in6 *)&ss);
        if (rc == 0)
            rc = uv_tcp_bind(s, (struct sockaddr *)&ss, UV_TCP_IPV6ONLY);
    } else {
        rc = uv_ip4_addr(addr, port, (struct sockaddr_in *)&ss);
        if (rc == 0)
            rc = uv_tcp_bind(s, (struct sockaddr *)&ss, 0);
    }
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)s, backlog, on_connection);
    return rc;
}

int eg_net_listeners_start(struct eg_net_listeners *l, uv_loop_t *loop, const char *addrs, int port,
                           int backlog, eg_net_accept_fn *on_accept, void *data,
                           const char **bad_addr)
{
    static char bad[64];
    const char *p = addrs;
    size_t n = 1;
    int rc = 0;

    memset(l, 0, sizeof(*l));
    l->on_accept = on_accept;
    l->data = data;
    for (const char *q = addrs; *q != '\0'; q++)
        n += *q == ',';
    l->socks = eg_calloc(n, sizeof(*l->socks));
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        char addr[64];
        uv_tcp_t *s = &l->socks[l->count];

        while (len > 0 && *p == ' ') {
            p++;
            len--;
        }
        if (len == 0 || len >= sizeof(addr)) {
            rc = UV_EINVAL;
            snprintf(bad, sizeof(bad), "%.*s", (int)EG_MIN(len, sizeof(bad) - 1), p);
            *bad_addr = bad;
            eg_net_listeners_stop(l);
            return rc;
        }
        memcpy(addr, p, len);
        addr[len] = '\0';
        uv_tcp_init(loop, s);
        s->data = l;
        l->count++;
        l->open++;
        rc = bind_one(s, addr, port, backlog);
        if (rc < 0) {
            snprintf(bad, sizeof(bad), "%s", addr);
            *bad_addr = bad;
            eg_net_listeners_stop(l);
            return rc;
        }
        /* With port 0, every further address reuses the port the kernel picked first. */
        if (port == 0)
            port = eg_net_listeners_port(l);
        p += len;
        if (*p == ',')
            p++;
    }
    return l->count > 0 ? 0 : UV_EINVAL;
}

void eg_net_listeners_set_tls(struct eg_net_listeners *l, struct eg_net_tls *tls)
{
    l->tls = tls;
}

int eg_net_listeners_port(const struct eg_net_listeners *l)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    if (l->count == 0 || uv_tcp_getsockname(&l->socks[0], (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void eg_net_listeners_stop(struct eg_net_listeners *l)
{
    for (size_t i = 0; i < l->count; i++) {
        if (!uv_is_closing((uv_handle_t *)&l->socks[i]))
            uv_close((uv_handle_t *)&l->socks[i], on_listener_closed);
    }
    if (l->open == 0) {
        eg_free(l->socks);
        l->socks = NULL;
        l->count = 0;
    }
}
