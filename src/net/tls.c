/*
 * Server-side TLS for eg_net_conn (mbedTLS 2.28), driven by the loop and never blocking.
 *
 * mbedTLS never touches the socket (STYLE.md §6). Its receive callback takes ciphertext from the
 * bytes the current uv_read delivered (or from a heap copy kept while the owner is paused); its
 * send callback appends ciphertext to `out`, which reaches the socket through uv_try_write, the
 * rest through one uv_write at a time (`flight`). The owner (the HTTP server) keeps using the
 * eg_net_conn calls and sees plaintext only.
 *
 * Per connection:
 *
 *   handshake ──done──> open ──eg_net_conn_close──> closing: close_notify queued, flushing
 *      │                                                 │ flushed, write error, or
 *      │ mbedTLS error / plain HTTP (400) / not TLS /    │ EG_NET_TLS_CLOSE_FLUSH_MS
 *      │ too large / EOF / owner closes                  v
 *      └──────────> closing (alert or 400 flushed) ──> handles closed ──> on_closed
 *
 * Reading: while the handshake runs the socket is read whatever the owner wants (its 503 answer
 * must be able to go out, and the handshake is bounded by the owner's header timer and by
 * EG_NET_TLS_HANDSHAKE_MAX). Afterwards the socket is read only while the owner reads and no
 * input is held: when the owner pauses mid-read, the unconsumed ciphertext is copied aside (at
 * most one read) and delivered from an idle handle once the owner reads again, never from inside
 * eg_net_conn_read_start.
 *
 * Writing: try_write encrypts and writes only when nothing is queued (else it returns 0 and the
 * owner falls back to eg_net_conn_write, whose on_written fires when the ciphertext carrying it
 * was written: that is the owner's backpressure). Encrypted bytes cannot be taken back, so
 * try_write encrypts at most TRY_WRITE_MAX of plaintext: what the socket did not take of that
 * stays in flight, counts in eg_net_conn_write_pending, and is what a close may still have to
 * flush (bounded by EG_NET_TLS_CLOSE_FLUSH_MS); the owner writes the rest with eg_net_conn_write.
 */
#include "engram/net.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#include "engram/obs.h"
#include "net_int.h"

/* Ciphertext waiting for the socket; the owner's own buffers are capped below this. */
#define OUT_MAX           (256u << 20)
#define TICKET_LIFETIME_S 86400
/* Plaintext one try_write encrypts at most: four full records. */
#define TRY_WRITE_MAX (64u * 1024)

struct eg_net_tls {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt cert;
    mbedtls_pk_context key;
    mbedtls_ssl_ticket_context tickets;
    uv_idle_t pump; /* delivers held input to owners that resumed reading */
    struct eg_net_tls_conn *pump_head;
    struct eg_net_tls_stats stats;
    bool is_started;
    bool is_closed;
};

struct eg_net_tls_conn {
    mbedtls_ssl_context ssl;
    struct eg_net_tls *ctx;
    struct eg_net_conn *c;
    const unsigned char *in; /* ciphertext mbedTLS has not taken yet */
    size_t in_len;
    unsigned char *saved; /* heap copy of `in` while the owner is paused; NULL otherwise */
    struct eg_buf out;    /* ciphertext not yet handed to libuv */
    struct eg_buf flight; /* ciphertext of the uv_write in flight (immutable meanwhile) */
    uv_buf_t *deferred;   /* the owner's write, waiting for the handshake */
    unsigned int deferred_n;
    size_t deferred_len;
    size_t hs_bytes; /* ciphertext received during the handshake */
    struct eg_net_tls_conn *pump_next;
    bool is_hs_done;
    bool is_failed;       /* no close_notify: the handshake failed or the session broke */
    bool is_flushing;     /* a uv_write of `flight` is in flight */
    bool out_has_app;     /* `out` carries the owner's eg_net_conn_write */
    bool flight_has_app;  /* `flight` does: on_written fires with its completion */
    bool is_uv_reading;   /* uv_read is started on the socket */
    bool in_pump;         /* on ctx->pump_head */
    bool want_shutdown;   /* uv_shutdown once everything queued is written */
    bool sent_notify;     /* close_notify queued */
    bool peer_closed;     /* the peer's close_notify or EOF was seen */
    bool handles_closing; /* eg__net_conn_close_handles was called */
};

/* One record's plaintext; the owner consumes or copies it before on_read returns. */
static unsigned char plain_buf[16384];

static const char plain_http_400[] = "HTTP/1.1 400 Bad Request\r\n"
                                     "Content-Type: text/plain\r\n"
                                     "Content-Length: 35\r\n"
                                     "Connection: close\r\n"
                                     "\r\n"
                                     "This port speaks HTTPS (TLS) only.\n";

static const int suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    0,
};

/* mbedTLS's default preference picks secp521r1, twice the handshake CPU (INTEGRATION.md §1.6). */
static const mbedtls_ecp_group_id curves[] = {
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_NONE,
};

static const char *alpn[] = {"http/1.1", NULL};

const char *eg_net_tls_failure_name(enum eg_net_tls_failure f)
{
    static const char *const names[EG_NET_TLS_FAIL_COUNT] = {"handshake", "plain_http", "not_tls",
                                                             "too_large", "incomplete"};

    return (unsigned)f < EG_NET_TLS_FAIL_COUNT ? names[f] : "unknown";
}

/* ---- context ------------------------------------------------------------------------------ */

static int config_error(char *err, size_t err_len, const char *label, const char *what,
                        const char *path, int mbed_rc)
{
    char why[128] = "";

    if (mbed_rc != 0)
        mbedtls_strerror(mbed_rc, why, sizeof(why));
    snprintf(err, err_len, "%s: %s \"%.200s\"%s%s", label, what, path, why[0] ? ": " : "", why);
    return EG_ECONFIG;
}

int eg_net_tls_new(const struct eg_net_tls_config *cfg, struct eg_net_tls **out, char *err,
                   size_t err_len)
{
    const char *cert_label = cfg->cert_label != NULL ? cfg->cert_label : "certificate";
    const char *key_label = cfg->key_label != NULL ? cfg->key_label : "key";
    struct eg_net_tls *t = eg_calloc(1, sizeof(*t));
    int rc;

    *out = NULL;
    mbedtls_ssl_config_init(&t->conf);
    mbedtls_x509_crt_init(&t->cert);
    mbedtls_pk_init(&t->key);
    mbedtls_ssl_ticket_init(&t->tickets);
    rc = eg_drbg_seed();
    if (rc != 0) {
        snprintf(err, err_len, "%s: cannot seed the random generator (mbedTLS error -0x%04x)",
                 cert_label, (unsigned)-rc);
        rc = EG_ECONFIG;
        goto fail;
    }
    rc = mbedtls_x509_crt_parse_file(&t->cert, cfg->cert_path);
    if (rc != 0) {
        /* A positive count means some certificates of the file did not parse. */
        rc = config_error(err, err_len, cert_label, "cannot load a PEM certificate chain from",
                          cfg->cert_path, rc < 0 ? rc : 0);
        goto fail;
    }
    rc = mbedtls_pk_parse_keyfile(&t->key, cfg->key_path, NULL);
    if (rc != 0) {
        rc = config_error(err, err_len, key_label, "cannot load a PEM private key from",
                          cfg->key_path, rc);
        goto fail;
    }
    rc = mbedtls_pk_check_pair(&t->cert.pk, &t->key);
    if (rc != 0) {
        rc = config_error(err, err_len, key_label, "the key does not match the certificate of",
                          cfg->cert_path, 0);
        goto fail;
    }
    rc = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                     MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc == 0)
        rc = mbedtls_ssl_conf_own_cert(&t->conf, &t->cert, &t->key);
    if (rc == 0)
        rc = mbedtls_ssl_conf_alpn_protocols(&t->conf, alpn);
    if (rc == 0)
        rc = mbedtls_ssl_ticket_setup(&t->tickets, eg_drbg_random, NULL, MBEDTLS_CIPHER_AES_256_GCM,
                                      TICKET_LIFETIME_S);
    if (rc != 0) {
        rc = config_error(err, err_len, cert_label, "cannot set up TLS with", cfg->cert_path, rc);
        goto fail;
    }
    mbedtls_ssl_conf_rng(&t->conf, eg_drbg_random, NULL);
    mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&t->conf, suites);
    mbedtls_ssl_conf_curves(&t->conf, curves);
    mbedtls_ssl_conf_renegotiation(&t->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    mbedtls_ssl_conf_session_tickets_cb(&t->conf, mbedtls_ssl_ticket_write,
                                        mbedtls_ssl_ticket_parse, &t->tickets);
    *out = t;
    return 0;
fail:
    eg_net_tls_free(t);
    return rc;
}

static void pump_run(uv_idle_t *h);

void eg_net_tls_start(struct eg_net_tls *t, uv_loop_t *loop)
{
    uv_idle_init(loop, &t->pump);
    t->pump.data = t;
    t->is_started = true;
}

void eg_net_tls_close(struct eg_net_tls *t)
{
    if (t == NULL || !t->is_started || t->is_closed)
        return;
    t->is_closed = true;
    t->pump_head = NULL;
    uv_close((uv_handle_t *)&t->pump, NULL);
}

void eg_net_tls_free(struct eg_net_tls *t)
{
    if (t == NULL)
        return;
    mbedtls_ssl_ticket_free(&t->tickets);
    mbedtls_ssl_config_free(&t->conf);
    mbedtls_pk_free(&t->key);
    mbedtls_x509_crt_free(&t->cert);
    eg_free(t);
}

void eg_net_tls_get_stats(const struct eg_net_tls *t, struct eg_net_tls_stats *out)
{
    *out = t->stats;
}

/* ---- BIO: mbedTLS's only way to the bytes ------------------------------------------------- */

static int bio_send(void *p, const unsigned char *buf, size_t len)
{
    struct eg_net_tls_conn *t = p;

    if (eg_buf_append(&t->out, buf, len) < 0)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    return (int)len;
}

static int bio_recv(void *p, unsigned char *buf, size_t len)
{
    struct eg_net_tls_conn *t = p;
    size_t n = EG_MIN(len, t->in_len);

    if (n == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    memcpy(buf, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

/* ---- writing ------------------------------------------------------------------------------ */

static void on_flight_written(uv_write_t *w, int status);

/*
 * Hands `out` to the socket: uv_try_write first when allowed (never for the owner's
 * eg_net_conn_write, whose on_written must come from a callback), the rest as the one uv_write in
 * flight. With a write in flight, `out` waits for its callback. Returns 0 or a negative UV_E*.
 */
static int flush(struct eg_net_tls_conn *t, bool may_try)
{
    struct eg_net_conn *c = t->c;
    struct eg_buf tmp;
    uv_buf_t b;
    size_t off = 0;
    int rc;

    if (t->is_flushing || t->out.len == 0 || t->handles_closing)
        return 0;
    if (may_try && !t->out_has_app) {
        int n;

        b = uv_buf_init(t->out.base, (unsigned int)t->out.len);
        n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN)
            return n;
        off = n > 0 ? (size_t)n : 0;
        if (off == t->out.len) {
            /* Freed rather than kept: an idle connection should hold no write buffer. */
            eg_buf_fini(&t->out);
            return 0;
        }
    }
    tmp = t->flight;
    t->flight = t->out;
    t->out = tmp;
    t->flight_has_app = t->out_has_app;
    t->out_has_app = false;
    b = uv_buf_init(t->flight.base + off, (unsigned int)(t->flight.len - off));
    rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_flight_written);
    if (rc < 0) {
        t->flight_has_app = false;
        eg_buf_fini(&t->flight);
        return rc;
    }
    t->is_flushing = true;
    return 0;
}

static void finish_close(struct eg_net_tls_conn *t)
{
    if (t->handles_closing)
        return;
    t->handles_closing = true;
    eg__net_conn_close_handles(t->c);
}

static void on_shutdown(uv_shutdown_t *r, int status)
{
    (void)r;
    (void)status; /* the owner's linger timer decides when to close */
}

static void maybe_shutdown(struct eg_net_tls_conn *t)
{
    struct eg_net_conn *c = t->c;

    if (!t->want_shutdown || t->is_flushing || t->out.len > 0 || c->is_closing)
        return;
    t->want_shutdown = false;
    uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown);
}

static void queue_close_notify(struct eg_net_tls_conn *t)
{
    if (!t->is_hs_done || t->is_failed || t->sent_notify)
        return;
    t->sent_notify = true;
    mbedtls_ssl_close_notify(&t->ssl); /* appends the alert to `out`; best effort */
}

static void on_flight_written(uv_write_t *w, int status)
{
    struct eg_net_conn *c = w->data;
    struct eg_net_tls_conn *t = c->tls;
    bool had_app = t->flight_has_app;

    t->is_flushing = false;
    t->flight_has_app = false;
    eg_buf_fini(&t->flight);
    if (c->is_closing) {
        if (had_app) {
            c->is_writing = false;
            c->ops->on_written(c, status);
        }
        if (status < 0 || flush(t, true) < 0 || (!t->is_flushing && t->out.len == 0))
            finish_close(t);
        return;
    }
    if (status == 0 && flush(t, true) < 0)
        status = UV_EPIPE;
    if (had_app) {
        c->is_writing = false;
        c->ops->on_written(c, status);
    } else if (status < 0) {
        /* The owner believes these bytes written (try_write): report the broken socket. */
        t->is_failed = true;
        c->ops->on_eof(c, status);
    } else if (!c->is_closing && !c->is_writing && !t->is_flushing && t->out.len == 0
               && c->ops->on_drained != NULL) {
        /* try_write's tail is out: an owner waiting for room hears it here, since no
         * on_written of its own will come. */
        c->ops->on_drained(c);
    }
    if (!c->is_closing)
        maybe_shutdown(t);
}

/*
 * Encrypts up to max bytes of the plaintext of bufs into `out`, in records of at most 16 KiB.
 * Returns the plaintext bytes encrypted or a negative UV_E*.
 */
static ssize_t encrypt(struct eg_net_tls_conn *t, const uv_buf_t *bufs, unsigned int nbufs,
                       size_t max)
{
    size_t total = 0;

    for (unsigned int i = 0; i < nbufs && total < max; i++) {
        const unsigned char *p = (const unsigned char *)bufs[i].base;
        size_t left = EG_MIN(bufs[i].len, max - total);

        /* One record per call (at most the 16 KiB maximum fragment); the BIO never blocks. */
        while (left > 0) {
            int n = mbedtls_ssl_write(&t->ssl, p, left);

            if (n <= 0) {
                t->is_failed = true;
                return UV_EPROTO;
            }
            p += n;
            left -= (size_t)n;
            total += (size_t)n;
        }
    }
    return (ssize_t)total;
}

ssize_t eg__net_tls_try_write(struct eg_net_conn *c, const uv_buf_t *bufs, unsigned int nbufs)
{
    struct eg_net_tls_conn *t = c->tls;
    ssize_t n;
    int rc;

    if (!t->is_hs_done || t->is_failed || t->is_flushing || t->out.len > 0)
        return 0;
    n = encrypt(t, bufs, nbufs, TRY_WRITE_MAX);
    if (n < 0)
        return n;
    rc = flush(t, true);
    return rc < 0 ? rc : n;
}

int eg__net_tls_write(struct eg_net_conn *c, const uv_buf_t *bufs, unsigned int nbufs)
{
    struct eg_net_tls_conn *t = c->tls;
    int rc;

    if (t->is_failed)
        return UV_EPIPE;
    if (!t->is_hs_done) {
        /* Only the owner's pre-handshake answer (503 at the connection limit) lands here. */
        t->deferred = eg_malloc(nbufs * sizeof(*bufs));
        memcpy(t->deferred, bufs, nbufs * sizeof(*bufs));
        t->deferred_n = nbufs;
        t->deferred_len = 0;
        for (unsigned int i = 0; i < nbufs; i++)
            t->deferred_len += bufs[i].len;
        c->is_writing = true;
        return 0;
    }
    if (encrypt(t, bufs, nbufs, SIZE_MAX) < 0)
        return UV_EPROTO;
    t->out_has_app = true;
    rc = flush(t, false);
    if (rc < 0) {
        t->out_has_app = false;
        return rc;
    }
    c->is_writing = true;
    return 0;
}

void eg__net_tls_shutdown(struct eg_net_conn *c)
{
    struct eg_net_tls_conn *t = c->tls;

    if (c->is_closing)
        return;
    queue_close_notify(t);
    t->want_shutdown = true;
    if (flush(t, true) < 0) {
        eg_net_conn_close(c);
        return;
    }
    maybe_shutdown(t);
}

size_t eg__net_tls_pending(const struct eg_net_conn *c)
{
    const struct eg_net_tls_conn *t = c->tls;

    return t->out.len + t->deferred_len;
}

/* ---- reading ------------------------------------------------------------------------------ */

static bool has_input(struct eg_net_tls_conn *t)
{
    return t->in_len > 0 || mbedtls_ssl_get_bytes_avail(&t->ssl) > 0
           || mbedtls_ssl_check_pending(&t->ssl);
}

/* Reads the socket exactly when there is a reason to (see the top of this file). */
static void update_reading(struct eg_net_tls_conn *t)
{
    struct eg_net_conn *c = t->c;
    bool want = !c->is_closing && !t->peer_closed && !t->is_failed
                && (!t->is_hs_done || (c->is_reading && t->saved == NULL && !has_input(t)));

    if (want == t->is_uv_reading)
        return;
    eg__net_conn_uv_read(c, want);
    t->is_uv_reading = want;
}

/*
 * Takes t off the pending list. A t that pump_run already took into its batch is not on the list;
 * it stays marked and pump_run skips it because its connection is closing.
 */
static void pump_unlink(struct eg_net_tls_conn *t)
{
    struct eg_net_tls_conn **pp = &t->ctx->pump_head;

    if (!t->in_pump)
        return;
    while (*pp != NULL && *pp != t)
        pp = &(*pp)->pump_next;
    if (*pp == t) {
        *pp = t->pump_next;
        t->in_pump = false;
        t->pump_next = NULL;
    }
}

static void pump_schedule(struct eg_net_tls_conn *t)
{
    struct eg_net_tls *ctx = t->ctx;

    if (t->in_pump || ctx->is_closed || !ctx->is_started)
        return;
    t->in_pump = true;
    t->pump_next = ctx->pump_head;
    ctx->pump_head = t;
    uv_idle_start(&ctx->pump, pump_run);
}

static void log_failure(struct eg_net_tls_conn *t, enum eg_net_tls_failure why, int mbed_rc)
{
    char text[128] = "";

    if (!eg_log_enabled(EG_LOG_DEBUG))
        return;
    if (mbed_rc != 0)
        mbedtls_strerror(mbed_rc, text, sizeof(text));
    eg_log_fields(EG_LOG_DEBUG, "tls handshake failed",
                  (struct eg_log_field[]){EG_LF_S("peer", t->c->peer),
                                          EG_LF_S("reason", eg_net_tls_failure_name(why)),
                                          EG_LF_S("error", text)},
                  3);
}

/* Ends a connection whose handshake did not complete; whatever is queued still goes out. */
static void fail_handshake(struct eg_net_tls_conn *t, enum eg_net_tls_failure why, int mbed_rc)
{
    t->ctx->stats.failures_total[why]++;
    t->is_failed = true;
    log_failure(t, why, mbed_rc);
    eg_net_conn_close(t->c);
}

/* Runs the handshake, then hands plaintext to the owner while it reads. */
static void pump(struct eg_net_tls_conn *t)
{
    struct eg_net_conn *c = t->c;
    int rc;

    if (!t->is_hs_done) {
        rc = mbedtls_ssl_handshake(&t->ssl);
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
            if (flush(t, true) < 0)
                fail_handshake(t, EG_NET_TLS_FAIL_INCOMPLETE, 0);
            return;
        }
        if (rc != 0) {
            flush(t, true); /* the alert mbedTLS queued, if any */
            fail_handshake(t, EG_NET_TLS_FAIL_HANDSHAKE, rc);
            return;
        }
        t->is_hs_done = true;
        t->hs_bytes = 0;
        t->ctx->stats.handshakes_total++;
        if (t->deferred != NULL) {
            ssize_t n = encrypt(t, t->deferred, t->deferred_n, SIZE_MAX);

            eg_free(t->deferred);
            t->deferred = NULL;
            t->deferred_len = 0;
            t->out_has_app = n >= 0;
            if (n < 0) {
                eg_net_conn_close(c);
                return;
            }
        }
        if (flush(t, !t->out_has_app) < 0) {
            eg_net_conn_close(c);
            return;
        }
    }
    while (c->is_reading && !c->is_closing) {
        rc = mbedtls_ssl_read(&t->ssl, plain_buf, sizeof(plain_buf));
        if (rc > 0) {
            c->ops->on_read(c, (const char *)plain_buf, (size_t)rc);
            continue;
        }
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            break;
        flush(t, true); /* an alert mbedTLS queued, if any */
        if (rc != 0 && rc != MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
            t->is_failed = true; /* a bad record: the session is unusable */
        t->peer_closed = true;
        c->is_reading = false;
        update_reading(t);
        c->ops->on_eof(c, t->is_failed ? UV_EPROTO : 0);
        return;
    }
    if (!c->is_closing && flush(t, true) < 0)
        eg_net_conn_close(c);
}

/* Keeps what mbedTLS did not take from a shared read buffer, so the owner can resume later. */
static void keep_leftover(struct eg_net_tls_conn *t)
{
    if (t->in_len == 0 || t->c->is_closing) {
        eg_free(t->saved);
        t->saved = NULL;
        t->in = NULL;
        t->in_len = 0;
        return;
    }
    if (t->saved == NULL) {
        t->saved = eg_malloc(t->in_len);
        memcpy(t->saved, t->in, t->in_len);
        t->in = t->saved;
    }
}

static void pump_run(uv_idle_t *h)
{
    struct eg_net_tls *ctx = h->data;
    struct eg_net_tls_conn *list = ctx->pump_head;

    ctx->pump_head = NULL;
    uv_idle_stop(h);
    while (list != NULL) {
        struct eg_net_tls_conn *t = list;

        /* Memory stays valid until the close callbacks, which run in a later loop phase. */
        list = t->pump_next;
        t->pump_next = NULL;
        t->in_pump = false;
        if (t->c->is_closing)
            continue;
        pump(t);
        keep_leftover(t);
        update_reading(t);
    }
}

void eg__net_tls_on_uv_read(struct eg_net_conn *c, ssize_t n, const char *data)
{
    struct eg_net_tls_conn *t = c->tls;

    if (n < 0) {
        t->peer_closed = true;
        update_reading(t);
        if (!t->is_hs_done) {
            fail_handshake(t, EG_NET_TLS_FAIL_INCOMPLETE, 0);
            return;
        }
        c->is_reading = false;
        c->ops->on_eof(c, n == UV_EOF ? 0 : (int)n);
        return;
    }
    if (!t->is_hs_done) {
        if (t->hs_bytes == 0 && (unsigned char)data[0] != MBEDTLS_SSL_MSG_HANDSHAKE) {
            /* A request line starts with an upper-case method; anything else is noise. */
            if (data[0] >= 'A' && data[0] <= 'Z') {
                eg_buf_append(&t->out, plain_http_400, sizeof(plain_http_400) - 1);
                flush(t, true);
                fail_handshake(t, EG_NET_TLS_FAIL_PLAIN_HTTP, 0);
            } else {
                fail_handshake(t, EG_NET_TLS_FAIL_NOT_TLS, 0);
            }
            return;
        }
        t->hs_bytes += (size_t)n;
        if (t->hs_bytes > EG_NET_TLS_HANDSHAKE_MAX) {
            fail_handshake(t, EG_NET_TLS_FAIL_TOO_LARGE, 0);
            return;
        }
    }
    /* The socket is not read while input is held (update_reading), so nothing is overwritten. */
    assert(t->saved == NULL && t->in_len == 0);
    t->in = (const unsigned char *)data;
    t->in_len = (size_t)n;
    pump(t);
    keep_leftover(t);
    update_reading(t);
}

void eg__net_tls_read_changed(struct eg_net_conn *c)
{
    struct eg_net_tls_conn *t = c->tls;

    if (c->is_reading && t->is_hs_done && has_input(t))
        pump_schedule(t);
    update_reading(t);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

int eg__net_tls_conn_attach(struct eg_net_conn *c, struct eg_net_tls *ctx)
{
    struct eg_net_tls_conn *t = eg_calloc(1, sizeof(*t));

    mbedtls_ssl_init(&t->ssl);
    if (mbedtls_ssl_setup(&t->ssl, &ctx->conf) != 0) {
        mbedtls_ssl_free(&t->ssl);
        eg_free(t);
        return UV_ENOMEM;
    }
    t->ctx = ctx;
    t->c = c;
    eg_buf_init(&t->out, OUT_MAX);
    eg_buf_init(&t->flight, OUT_MAX);
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    c->tls = t;
    ctx->stats.connections_active++;
    update_reading(t);
    return 0;
}

static void on_close_deadline(uv_timer_t *h)
{
    struct eg_net_conn *c = h->data;

    finish_close(c->tls);
}

void eg__net_tls_close(struct eg_net_conn *c)
{
    struct eg_net_tls_conn *t = c->tls;

    c->is_reading = false;
    update_reading(t);
    uv_timer_stop(&c->timer);
    pump_unlink(t);
    if (!t->is_hs_done && !t->is_failed) {
        /* Closed by the owner (handshake timeout, shutdown) or the peer before completion. */
        t->ctx->stats.failures_total[EG_NET_TLS_FAIL_INCOMPLETE]++;
        t->is_failed = true;
        log_failure(t, EG_NET_TLS_FAIL_INCOMPLETE, 0);
    }
    eg_free(t->deferred);
    t->deferred = NULL;
    t->deferred_len = 0;
    queue_close_notify(t);
    if (flush(t, true) < 0 || (!t->is_flushing && t->out.len == 0)) {
        finish_close(t);
        return;
    }
    uv_timer_start(&c->timer, on_close_deadline, EG_NET_TLS_CLOSE_FLUSH_MS, 0);
}

void eg__net_tls_conn_free(struct eg_net_conn *c)
{
    struct eg_net_tls_conn *t = c->tls;

    pump_unlink(t);
    t->ctx->stats.connections_active--;
    mbedtls_ssl_free(&t->ssl);
    eg_buf_fini(&t->out);
    eg_buf_fini(&t->flight);
    eg_free(t->saved);
    eg_free(t->deferred);
    eg_free(t);
    c->tls = NULL;
}
