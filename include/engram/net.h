/*
 * engram net: TCP listeners and the connection object every protocol layer builds on.
 *
 * A struct eg_net_conn owns one accepted socket (uv_tcp_t) and one timer. It is embedded in its
 * owner (the HTTP connection), which is freed only from ops->on_closed, after libuv has closed
 * both handles (STYLE.md §4.5). All calls are loop-thread only.
 */
#ifndef EG_NET_H
#define EG_NET_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "engram/core.h"

struct eg_net_conn;

/** Callbacks of a connection. None of them fires from inside the eg_net_* call that caused it. */
struct eg_net_conn_ops {
    /** Bytes arrived. data is borrowed for the call only (a shared loop buffer): copy what you
     * keep. */
    void (*on_read)(struct eg_net_conn *c, const char *data, size_t n);
    /** The peer closed (EOF) or the socket failed (status < 0). The owner decides to close. */
    void (*on_eof)(struct eg_net_conn *c, int status);
    /** The timer armed with eg_net_conn_timer_start expired. */
    void (*on_timeout)(struct eg_net_conn *c);
    /** The write started with eg_net_conn_write finished (status 0) or failed. */
    void (*on_written)(struct eg_net_conn *c, int status);
    /** Both handles are closed; the owner may free the memory that embeds c. Fires exactly once. */
    void (*on_closed)(struct eg_net_conn *c);
};

/** A connection. Fields are private except data and peer. */
struct eg_net_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    const struct eg_net_conn_ops *ops;
    void *data;    /* public: the owner's pointer */
    char peer[64]; /* public, read-only: "ip:port" of the client */
    int handles_open;
    bool is_closing;
    bool is_reading;
    bool is_writing;
};

/**
 * Accepts a pending connection from server into c (caller's memory). Returns 0, or a negative
 * UV_E* after which ops->on_closed still fires once (so the owner frees c in one place).
 */
int eg_net_conn_accept(struct eg_net_conn *c, uv_stream_t *server,
                       const struct eg_net_conn_ops *ops, void *data);
/** Starts or stops delivering on_read. Idempotent. */
void eg_net_conn_read_start(struct eg_net_conn *c);
void eg_net_conn_read_stop(struct eg_net_conn *c);
/**
 * Writes bufs (borrowed until on_written). At most one write may be in flight; returns
 * UV_EBUSY if one is, or a negative UV_E* if libuv refused (then no on_written fires).
 */
int eg_net_conn_write(struct eg_net_conn *c, const uv_buf_t *bufs, unsigned int nbufs);
/**
 * Writes as much of bufs as the socket takes now, without queueing (uv_try_write). Returns the
 * bytes written (possibly 0) or a negative UV_E* on a socket error. Never fires on_written: a
 * response written completely here needs no write request and no watcher re-arm.
 */
ssize_t eg_net_conn_try_write(struct eg_net_conn *c, const uv_buf_t *bufs, unsigned int nbufs);
/** Arms the single timer to fire once after ms (re-arming replaces the old deadline). */
void eg_net_conn_timer_start(struct eg_net_conn *c, uint64_t ms);
void eg_net_conn_timer_stop(struct eg_net_conn *c);
/** Half-closes the write side once queued writes are flushed (lingering close). */
void eg_net_conn_shutdown(struct eg_net_conn *c);
/** Closes the connection (idempotent). on_closed follows once both handles are closed. */
void eg_net_conn_close(struct eg_net_conn *c);

/* ---- listeners ---------------------------------------------------------------------------- */

typedef void eg_net_accept_fn(uv_stream_t *server, void *data);

/** A set of listening sockets, one per bind address, sharing one port. */
struct eg_net_listeners {
    uv_tcp_t *socks; /* private */
    size_t count;    /* read-only */
    size_t open;     /* private: handles not yet closed */
    eg_net_accept_fn *on_accept;
    void *data;
};

/**
 * Binds and listens on every comma-separated numeric address in addrs (IPv4 or IPv6) at port.
 * IPv6 sockets are v6-only so "0.0.0.0,::" works. On failure everything opened is closed and a
 * negative UV_E* is returned; *bad_addr then names the failing address (static storage).
 */
int eg_net_listeners_start(struct eg_net_listeners *l, uv_loop_t *loop, const char *addrs, int port,
                           int backlog, eg_net_accept_fn *on_accept, void *data,
                           const char **bad_addr);
/** Returns the port the first socket is bound to (useful with port 0), or -1. */
int eg_net_listeners_port(const struct eg_net_listeners *l);
/** Stops accepting and closes the sockets. Idempotent. */
void eg_net_listeners_stop(struct eg_net_listeners *l);

/** Ignores SIGPIPE process-wide: libuv and hiredis write to sockets a peer may have reset. */
void eg_net_ignore_sigpipe(void);

#endif /* EG_NET_H */
