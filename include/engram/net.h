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
struct eg_net_tls;
struct eg_net_tls_conn;

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
    /** Optional, TLS only: ciphertext that eg_net_conn_try_write left queued has all been
     * written and no eg_net_conn_write is in flight, so eg_net_conn_write_pending is 0 again. A
     * plain connection never queues behind try_write, so it never fires there. */
    void (*on_drained)(struct eg_net_conn *c);
    /** Both handles are closed; the owner may free the memory that embeds c. Fires exactly once. */
    void (*on_closed)(struct eg_net_conn *c);
};

/**
 * A connection. Fields are private except data and peer. On a connection accepted from a TLS
 * listener (eg_net_listeners_set_tls) every call below works the same, on plaintext: the owner
 * never sees ciphertext (src/net/tls.c).
 */
struct eg_net_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    const struct eg_net_conn_ops *ops;
    void *data;                  /* public: the owner's pointer */
    char peer[64];               /* public, read-only: "ip:port" of the client */
    struct eg_net_tls_conn *tls; /* private: NULL on a plain connection */
    int handles_open;
    bool is_closing;
    bool is_reading; /* the owner wants on_read (with TLS the socket may read regardless) */
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
 * response written completely here needs no write request and no watcher re-arm. With TLS the
 * count is plaintext taken (at most 64 KiB per call, 0 while earlier ciphertext is queued); a tail
 * of its ciphertext may still be queued, which eg_net_conn_write_pending counts.
 */
ssize_t eg_net_conn_try_write(struct eg_net_conn *c, const uv_buf_t *bufs, unsigned int nbufs);
/**
 * Bytes accepted by eg_net_conn_write/try_write (or produced by TLS) that the socket has not taken
 * yet: libuv's write queue plus, with TLS, ciphertext and plaintext still held by the TLS layer.
 */
size_t eg_net_conn_write_pending(const struct eg_net_conn *c);
/** Arms the single timer to fire once after ms (re-arming replaces the old deadline). */
void eg_net_conn_timer_start(struct eg_net_conn *c, uint64_t ms);
void eg_net_conn_timer_stop(struct eg_net_conn *c);
/** Half-closes the write side once queued writes are flushed (lingering close). */
void eg_net_conn_shutdown(struct eg_net_conn *c);
/**
 * Closes the connection (idempotent). on_closed follows once both handles are closed. With TLS the
 * close is graceful: close_notify and any ciphertext still queued are flushed first (bounded by
 * EG_NET_TLS_CLOSE_FLUSH_MS); no on_* callback but a pending write's on_written and on_closed
 * fires after this call. A write still waiting for the TLS handshake is dropped (no on_written).
 */
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
    struct eg_net_tls *tls; /* private: set by eg_net_listeners_set_tls */
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
/**
 * Makes every connection l accepts from now on speak TLS with tls (borrowed: it must outlive
 * those connections). Call after eg_net_listeners_start, before the loop runs.
 */
void eg_net_listeners_set_tls(struct eg_net_listeners *l, struct eg_net_tls *tls);

/* ---- TLS (mbedTLS 2.28, server side) ------------------------------------------------------ */

/* Ciphertext bytes a client may send before its handshake completes (a ClientHello is ~2 KiB). */
#define EG_NET_TLS_HANDSHAKE_MAX (32u * 1024)
/* How long a closing TLS connection may take to flush close_notify and queued ciphertext. */
#define EG_NET_TLS_CLOSE_FLUSH_MS 2000

/** Server TLS settings. The label strings name the settings in error messages. */
struct eg_net_tls_config {
    const char *cert_path;  /* PEM certificate chain, leaf first */
    const char *key_path;   /* PEM private key (unencrypted) matching the leaf */
    const char *cert_label; /* e.g. "ENGRAM_TLS_CERT"; NULL means "certificate" */
    const char *key_label;  /* e.g. "ENGRAM_TLS_KEY"; NULL means "key" */
};

/** Why a handshake did not complete (the label of tls_handshake_failures_total). */
enum eg_net_tls_failure {
    EG_NET_TLS_FAIL_HANDSHAKE = 0,  /* mbedTLS refused it: version, suites, bad messages */
    EG_NET_TLS_FAIL_PLAIN_HTTP = 1, /* a plain HTTP request (answered with a plain 400) */
    EG_NET_TLS_FAIL_NOT_TLS = 2,    /* the first byte is no TLS handshake record */
    EG_NET_TLS_FAIL_TOO_LARGE = 3,  /* more than EG_NET_TLS_HANDSHAKE_MAX bytes */
    EG_NET_TLS_FAIL_INCOMPLETE = 4, /* closed first: peer EOF, handshake timeout, shutdown */
    EG_NET_TLS_FAIL_COUNT = 5,
};

/** Returns the metric label of f ("handshake", "plain_http", ...). */
const char *eg_net_tls_failure_name(enum eg_net_tls_failure f);

struct eg_net_tls_stats {
    uint64_t handshakes_total; /* completed */
    uint64_t failures_total[EG_NET_TLS_FAIL_COUNT];
    uint64_t connections_active; /* accepted TLS connections not yet closed */
};

/**
 * Loads the certificate and key and builds the server configuration: TLS 1.2 only (mbedTLS 2.28
 * has no 1.3), ECDHE with AES-GCM or ChaCha20-Poly1305, X25519/P-256/P-384, no renegotiation, no
 * compression, ALPN http/1.1, session tickets. Needs no loop. Returns 0 and *out (new, freed with
 * eg_net_tls_free), or EG_ECONFIG with one line in err naming the setting (cfg's label) at fault.
 */
int eg_net_tls_new(const struct eg_net_tls_config *cfg, struct eg_net_tls **out, char *err,
                   size_t err_len);
/** Attaches tls to loop (one idle handle, started only while paused input waits). */
void eg_net_tls_start(struct eg_net_tls *tls, uv_loop_t *loop);
/** Closes the loop handle (asynchronously, no callback). Idempotent; connections still closing
 * finish without it. */
void eg_net_tls_close(struct eg_net_tls *tls);
/** Frees tls once its connections are gone and the loop has run the close. */
void eg_net_tls_free(struct eg_net_tls *tls);
void eg_net_tls_get_stats(const struct eg_net_tls *tls, struct eg_net_tls_stats *out);

/** Ignores SIGPIPE process-wide: libuv and hiredis write to sockets a peer may have reset. */
void eg_net_ignore_sigpipe(void);

#endif /* EG_NET_H */
