/*
 * Private to src/net: the seam between the connection (conn.c) and its TLS layer (tls.c). On a
 * TLS connection conn.c hands every read, write, read-state change and close to tls.c, which
 * calls back into conn.c only for the socket itself.
 */
#ifndef EG_NET_INT_H
#define EG_NET_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "engram/net.h"

/* conn.c: starts or stops uv_read on the socket into the loop-wide read buffer. */
void eg__net_conn_uv_read(struct eg_net_conn *c, bool on);
/* conn.c: closes both handles; on_closed follows (after eg__net_tls_conn_free). */
void eg__net_conn_close_handles(struct eg_net_conn *c);

/* tls.c: gives c a TLS session of tls and starts reading the handshake. Returns 0 or UV_ENOMEM. */
int eg__net_tls_conn_attach(struct eg_net_conn *c, struct eg_net_tls *tls);
/* tls.c: releases the session; called once both handles are closed. */
void eg__net_tls_conn_free(struct eg_net_conn *c);
/* tls.c: ciphertext from the socket (n > 0), or EOF / error (n < 0). */
void eg__net_tls_on_uv_read(struct eg_net_conn *c, ssize_t n, const char *data);
/* tls.c: the owner started or stopped reading (c->is_reading changed). */
void eg__net_tls_read_changed(struct eg_net_conn *c);
/* tls.c: the eg_net_conn_* write calls on a TLS connection (same contracts). */
int eg__net_tls_write(struct eg_net_conn *c, const uv_buf_t *bufs, unsigned int nbufs);
ssize_t eg__net_tls_try_write(struct eg_net_conn *c, const uv_buf_t *bufs, unsigned int nbufs);
void eg__net_tls_shutdown(struct eg_net_conn *c);
/* tls.c: c->is_closing was just set: close_notify, flush, then eg__net_conn_close_handles. */
void eg__net_tls_close(struct eg_net_conn *c);
/* tls.c: bytes the TLS layer holds that libuv's write queue does not count. */
size_t eg__net_tls_pending(const struct eg_net_conn *c);

#endif /* EG_NET_INT_H */
