/*
 * Tests for src/net/tls.c and the TLS settings of src/core/config.c: configuration errors, the
 * process DRBG, loading certificates (made here with mbedTLS's writer), and a loop test: an echo
 * owner on a private loop behind a TLS listener, driven by a blocking mbedTLS client in a thread
 * (test code only; the loop itself never blocks).
 */
#include <engram/net.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/ecp.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include <engram/config.h>
#include <engram/core.h>

#include "../harness.h"

/* ---- configuration ------------------------------------------------------------------------ */

struct env_var {
    const char *name;
    const char *value;
};

static const char *fake_getenv(const char *name, void *data)
{
    const struct env_var *e = data;

    for (; e->name != NULL; e++) {
        if (strcmp(e->name, name) == 0)
            return e->value;
    }
    return NULL;
}

static int load(struct eg_config *cfg, const struct env_var *env, char *err, size_t err_len)
{
    err[0] = '\0';
    return eg_config_load(cfg, fake_getenv, (void *)env, err, err_len);
}

TEST(config_tls_off_by_default)
{
    static const struct env_var env[] = {{NULL, NULL}};
    struct eg_config cfg;
    char err[256];

    ASSERT_EQ(0, load(&cfg, env, err, sizeof(err)));
    ASSERT_EQ(-1, cfg.tls_port);
}

TEST(config_tls_all_three)
{
    static const struct env_var env[] = {{"ENGRAM_BIND", "127.0.0.1"},
                                         {"ENGRAM_TLS_PORT", "8443"},
                                         {"ENGRAM_TLS_CERT", "/c.pem"},
                                         {"ENGRAM_TLS_KEY", "/k.pem"},
                                         {NULL, NULL}};
    static const struct env_var env2[] = {{"ENGRAM_TLS_PORT", "0"},
                                          {"ENGRAM_TLS_BIND", "::1"},
                                          {"ENGRAM_TLS_CERT", "/c.pem"},
                                          {"ENGRAM_TLS_KEY", "/k.pem"},
                                          {NULL, NULL}};
    struct eg_config cfg;
    char err[256];

    ASSERT_EQ(0, load(&cfg, env, err, sizeof(err)));
    ASSERT_EQ(8443, cfg.tls_port);
    ASSERT_STR_EQ("127.0.0.1", cfg.tls_bind); /* follows ENGRAM_BIND */
    ASSERT_STR_EQ("/c.pem", cfg.tls_cert);
    ASSERT_STR_EQ("/k.pem", cfg.tls_key);
    ASSERT_EQ(0, load(&cfg, env2, err, sizeof(err)));
    ASSERT_EQ(0, cfg.tls_port);
    ASSERT_STR_EQ("::1", cfg.tls_bind);
}

static void expect_error(const struct env_var *env, const char *name)
{
    struct eg_config cfg;
    char err[256];

    ASSERT_EQ(EG_ECONFIG, load(&cfg, env, err, sizeof(err)));
    ASSERT_TRUE(strncmp(err, name, strlen(name)) == 0 && err[strlen(name)] == ':');
}

TEST(config_tls_errors_name_the_variable)
{
    static const struct env_var no_cert[] = {
        {"ENGRAM_TLS_PORT", "8443"}, {"ENGRAM_TLS_KEY", "/k.pem"}, {NULL, NULL}};
    static const struct env_var no_key[] = {
        {"ENGRAM_TLS_PORT", "8443"}, {"ENGRAM_TLS_CERT", "/c.pem"}, {NULL, NULL}};
    static const struct env_var no_port[] = {
        {"ENGRAM_TLS_CERT", "/c.pem"}, {"ENGRAM_TLS_KEY", "/k.pem"}, {NULL, NULL}};
    static const struct env_var bad_port[] = {{"ENGRAM_TLS_PORT", "65536"},
                                              {"ENGRAM_TLS_CERT", "/c.pem"},
                                              {"ENGRAM_TLS_KEY", "/k.pem"},
                                              {NULL, NULL}};
    static const struct env_var empty_cert[] = {{"ENGRAM_TLS_PORT", "8443"},
                                                {"ENGRAM_TLS_CERT", ""},
                                                {"ENGRAM_TLS_KEY", "/k.pem"},
                                                {NULL, NULL}};
    static const struct env_var empty_bind[] = {{"ENGRAM_TLS_BIND", ""}, {NULL, NULL}};

    expect_error(no_cert, "ENGRAM_TLS_CERT");
    expect_error(no_key, "ENGRAM_TLS_KEY");
    expect_error(no_port, "ENGRAM_TLS_PORT");
    expect_error(bad_port, "ENGRAM_TLS_PORT");
    expect_error(empty_cert, "ENGRAM_TLS_CERT");
    expect_error(empty_bind, "ENGRAM_TLS_BIND");
}

/* ---- DRBG --------------------------------------------------------------------------------- */

TEST(drbg_draws_differ_and_large_requests_work)
{
    unsigned char a[32];
    unsigned char b[32];
    static unsigned char big[5000];

    ASSERT_EQ(0, eg_drbg_seed());
    ASSERT_EQ(0, eg_drbg_random(NULL, a, sizeof(a)));
    ASSERT_EQ(0, eg_drbg_random(NULL, b, sizeof(b)));
    ASSERT_TRUE(memcmp(a, b, sizeof(a)) != 0);
    memset(big, 0, sizeof(big));
    ASSERT_EQ(0, eg_drbg_random(NULL, big, sizeof(big)));
    /* The tail past the first 1,024-byte request is filled too. */
    ASSERT_TRUE(memcmp(big + 4900, (unsigned char[100]){0}, 100) != 0);
}

/* ---- certificates ------------------------------------------------------------------------- */

static char dir[64];
static char cert_path[128];
static char key_path[128];
static char key2_path[128];

static int write_file(const char *path, const unsigned char *pem)
{
    FILE *f = fopen(path, "w");

    if (f == NULL)
        return -1;
    fputs((const char *)pem, f);
    return fclose(f);
}

static int make_key(mbedtls_pk_context *key, const char *path)
{
    unsigned char pem[2048];
    int rc;

    mbedtls_pk_init(key);
    rc = mbedtls_pk_setup(key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (rc == 0)
        rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*key), eg_drbg_random,
                                 NULL);
    if (rc == 0)
        rc = mbedtls_pk_write_key_pem(key, pem, sizeof(pem));
    if (rc == 0)
        rc = write_file(path, pem);
    return rc;
}

/* A self-signed P-256 certificate for CN=localhost and its key, plus a second, unrelated key. */
static int make_cert_files(void)
{
    mbedtls_pk_context key;
    mbedtls_pk_context key2;
    mbedtls_x509write_cert crt;
    mbedtls_mpi serial;
    unsigned char pem[4096];
    int rc;

    snprintf(dir, sizeof(dir), "/tmp/eg-tls-unit-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", dir);
    snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
    snprintf(key2_path, sizeof(key2_path), "%s/key2.pem", dir);
    rc = make_key(&key, key_path);
    if (rc == 0)
        rc = make_key(&key2, key2_path);
    mbedtls_x509write_crt_init(&crt);
    mbedtls_mpi_init(&serial);
    if (rc == 0)
        rc = mbedtls_mpi_lset(&serial, 7);
    if (rc == 0) {
        mbedtls_x509write_crt_set_subject_key(&crt, &key);
        mbedtls_x509write_crt_set_issuer_key(&crt, &key);
        mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
        mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
        rc = mbedtls_x509write_crt_set_subject_name(&crt, "CN=localhost");
    }
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_issuer_name(&crt, "CN=localhost");
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_serial(&crt, &serial);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_validity(&crt, "20250101000000", "20350101000000");
    if (rc == 0)
        rc = mbedtls_x509write_crt_pem(&crt, pem, sizeof(pem), eg_drbg_random, NULL);
    if (rc == 0)
        rc = write_file(cert_path, pem);
    mbedtls_mpi_free(&serial);
    mbedtls_x509write_crt_free(&crt);
    mbedtls_pk_free(&key);
    mbedtls_pk_free(&key2);
    return rc;
}

static void remove_cert_files(void)
{
    unlink(cert_path);
    unlink(key_path);
    unlink(key2_path);
    rmdir(dir);
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

TEST(tls_new_loads_and_reports_errors)
{
    struct eg_net_tls_config cfg = {cert_path, key_path, "CERT", "KEY"};
    struct eg_net_tls *t = NULL;
    char err[512];

    ASSERT_EQ(0, eg_net_tls_new(&cfg, &t, err, sizeof(err)));
    ASSERT_TRUE(t != NULL);
    eg_net_tls_free(t);

    cfg.key_path = key2_path; /* a key of another certificate */
    ASSERT_EQ(EG_ECONFIG, eg_net_tls_new(&cfg, &t, err, sizeof(err)));
    ASSERT_TRUE(t == NULL);
    ASSERT_TRUE(starts_with(err, "KEY: "));

    cfg.key_path = "/nonexistent/key.pem";
    ASSERT_EQ(EG_ECONFIG, eg_net_tls_new(&cfg, &t, err, sizeof(err)));
    ASSERT_TRUE(starts_with(err, "KEY: "));
    ASSERT_TRUE(strstr(err, "/nonexistent/key.pem") != NULL);

    cfg.key_path = key_path;
    cfg.cert_path = key_path; /* a key where the certificate should be */
    ASSERT_EQ(EG_ECONFIG, eg_net_tls_new(&cfg, &t, err, sizeof(err)));
    ASSERT_TRUE(starts_with(err, "CERT: "));
    ASSERT_TRUE(strchr(err, '\n') == NULL);
}

/* ---- loop test: echo over TLS ------------------------------------------------------------- */

struct echo {
    struct eg_net_conn conn;
    struct eg_buf out;      /* received, not yet written */
    struct eg_buf inflight; /* the bytes of the eg_net_conn_write in flight */
    int *closed;
};

static struct eg_net_listeners listeners;
static struct eg_net_tls *tls;
static int closed_count;
static int echo_port;
static int client_rounds;
static int client_ok;

static void echo_flush(struct echo *e)
{
    uv_buf_t b;
    ssize_t n;

    if (e->conn.is_writing || e->out.len == 0 || e->conn.is_closing)
        return;
    b = uv_buf_init(e->out.base, (unsigned int)e->out.len);
    n = eg_net_conn_try_write(&e->conn, &b, 1);
    if (n < 0) {
        eg_net_conn_close(&e->conn);
        return;
    }
    if ((size_t)n == e->out.len) {
        eg_buf_reset(&e->out);
        return;
    }
    /* The rest goes out with a write that completes with on_written (TLS took at most 64 KiB). */
    eg_buf_reset(&e->inflight);
    eg_buf_append(&e->inflight, e->out.base + n, e->out.len - (size_t)n);
    eg_buf_reset(&e->out);
    b = uv_buf_init(e->inflight.base, (unsigned int)e->inflight.len);
    if (eg_net_conn_write(&e->conn, &b, 1) < 0)
        eg_net_conn_close(&e->conn);
}

static void echo_on_read(struct eg_net_conn *c, const char *data, size_t n)
{
    struct echo *e = c->data;

    eg_buf_append(&e->out, data, n);
    echo_flush(e);
}

static void echo_on_eof(struct eg_net_conn *c, int status)
{
    (void)status;
    eg_net_conn_close(c);
}

static void echo_on_timeout(struct eg_net_conn *c)
{
    eg_net_conn_close(c);
}

static void echo_on_written(struct eg_net_conn *c, int status)
{
    struct echo *e = c->data;

    eg_buf_reset(&e->inflight);
    if (status < 0)
        eg_net_conn_close(c);
    else
        echo_flush(e);
}

static void echo_on_closed(struct eg_net_conn *c)
{
    struct echo *e = c->data;

    eg_buf_fini(&e->out);
    eg_buf_fini(&e->inflight);
    closed_count++;
    eg_free(e);
    /* One client: once it is gone, the loop may end. */
    eg_net_listeners_stop(&listeners);
    eg_net_tls_close(tls);
}

static const struct eg_net_conn_ops echo_ops = {
    .on_read = echo_on_read,
    .on_eof = echo_on_eof,
    .on_timeout = echo_on_timeout,
    .on_written = echo_on_written,
    .on_closed = echo_on_closed,
};

static void on_accept(uv_stream_t *server, void *data)
{
    struct echo *e = eg_calloc(1, sizeof(*e));

    (void)data;
    eg_buf_init(&e->out, 16u << 20);
    eg_buf_init(&e->inflight, 16u << 20);
    if (eg_net_conn_accept(&e->conn, server, &echo_ops, e) < 0)
        return;
    eg_net_conn_read_start(&e->conn);
    eg_net_conn_timer_start(&e->conn, 10000);
}

static int read_exact(mbedtls_ssl_context *ssl, unsigned char *buf, size_t n)
{
    size_t got = 0;

    while (got < n) {
        int r = mbedtls_ssl_read(ssl, buf + got, n - got);

        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* The client: handshake, echo rounds of growing size (up to 200 KB, many records), close. */
static void *client_main(void *arg)
{
    mbedtls_net_context net;
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    char port[16];
    static unsigned char msg[200000];
    static unsigned char back[200000];
    int rc;

    (void)arg;
    mbedtls_net_init(&net);
    mbedtls_ssl_config_init(&conf);
    mbedtls_ssl_init(&ssl);
    snprintf(port, sizeof(port), "%d", echo_port);
    rc = mbedtls_net_connect(&net, "127.0.0.1", port, MBEDTLS_NET_PROTO_TCP);
    if (rc == 0)
        rc = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                         MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc == 0) {
        mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_NONE);
        mbedtls_ssl_conf_rng(&conf, eg_drbg_random, NULL);
        rc = mbedtls_ssl_setup(&ssl, &conf);
    }
    if (rc == 0) {
        mbedtls_ssl_set_bio(&ssl, &net, mbedtls_net_send, mbedtls_net_recv, NULL);
        rc = mbedtls_ssl_handshake(&ssl);
    }
    for (size_t len = 1; rc == 0 && len <= sizeof(msg); len = len * 3 + 7) {
        size_t off = 0;

        for (size_t i = 0; i < len; i++)
            msg[i] = (unsigned char)(i * 31 + len);
        while (rc == 0 && off < len) {
            int w = mbedtls_ssl_write(&ssl, msg + off, len - off);

            if (w <= 0)
                rc = -1;
            else
                off += (size_t)w;
        }
        if (rc == 0)
            rc = read_exact(&ssl, back, len);
        if (rc == 0 && memcmp(msg, back, len) != 0)
            rc = -1;
        if (rc == 0)
            client_rounds++;
    }
    if (rc == 0) {
        unsigned char one;

        /* Our close_notify; the server answers with its own, then EOF. */
        rc = mbedtls_ssl_close_notify(&ssl);
        if (rc == 0)
            rc = mbedtls_ssl_read(&ssl, &one, 1) == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY ? 0 : -1;
    }
    client_ok = rc == 0;
    mbedtls_ssl_free(&ssl);
    mbedtls_ssl_config_free(&conf);
    mbedtls_net_free(&net);
    return NULL;
}

TEST(echo_over_tls_on_a_private_loop)
{
    struct eg_net_tls_config cfg = {cert_path, key_path, NULL, NULL};
    struct eg_net_tls_stats st;
    const char *bad = NULL;
    char err[512];
    uv_loop_t loop;
    pthread_t th;

    ASSERT_EQ(0, eg_net_tls_new(&cfg, &tls, err, sizeof(err)));
    ASSERT_EQ(0, uv_loop_init(&loop));
    eg_net_tls_start(tls, &loop);
    ASSERT_EQ(0,
              eg_net_listeners_start(&listeners, &loop, "127.0.0.1", 0, 16, on_accept, NULL, &bad));
    eg_net_listeners_set_tls(&listeners, tls);
    echo_port = eg_net_listeners_port(&listeners);
    ASSERT_EQ(0, pthread_create(&th, NULL, client_main, NULL));
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    ASSERT_EQ(1, client_ok);
    ASSERT_EQ(10, client_rounds); /* 1, 10, 37, ... 88 570 bytes */
    ASSERT_EQ(1, closed_count);
    eg_net_tls_get_stats(tls, &st);
    ASSERT_EQ(1, st.handshakes_total);
    ASSERT_EQ(0, st.connections_active);
    for (int i = 0; i < EG_NET_TLS_FAIL_COUNT; i++)
        ASSERT_EQ(0, st.failures_total[i]);
    ASSERT_EQ(0, uv_loop_close(&loop));
    eg_net_tls_free(tls);
}

int main(void)
{
    static const struct test_case tests[] = {
        TEST_CASE(config_tls_off_by_default),
        TEST_CASE(config_tls_all_three),
        TEST_CASE(config_tls_errors_name_the_variable),
        TEST_CASE(drbg_draws_differ_and_large_requests_work),
        TEST_CASE(tls_new_loads_and_reports_errors),
        TEST_CASE(echo_over_tls_on_a_private_loop),
    };
    int rc;

    if (make_cert_files() != 0) {
        printf("Bail out! cannot make test certificates\n");
        return 1;
    }
    rc = RUN_TESTS(tests);
    remove_cert_files();
    return rc;
}
