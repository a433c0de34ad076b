/*
 * Heap bytes one established server-side TLS session holds in Debian's mbedTLS 2.28, measured
 * with mallinfo2 (bench/tls/run.sh). N client/server pairs handshake in memory with the settings
 * src/net/tls.c uses (ECDSA P-256, ECDHE suites, X25519 first, tickets), exchange one small request
 * and response, then the clients are freed: what remains allocated is the servers' sessions.
 * Prints one JSON line. Build: cc conn_mem.c -lmbedtls -lmbedx509 -lmbedcrypto -o conn_mem
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#define PAIRS 200

struct pipe {
    unsigned char buf[32768];
    size_t len;
};

struct end {
    mbedtls_ssl_context ssl;
    struct pipe *in;
    struct pipe *out;
};

static struct pipe pipes[PAIRS][2];
static struct end servers[PAIRS];
static struct end clients[PAIRS];
static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;

static int bio_send(void *p, const unsigned char *b, size_t n)
{
    struct end *e = p;

    if (e->out->len + n > sizeof(e->out->buf))
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    memcpy(e->out->buf + e->out->len, b, n);
    e->out->len += n;
    return (int)n;
}

static int bio_recv(void *p, unsigned char *b, size_t n)
{
    struct end *e = p;

    if (e->in->len == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (n > e->in->len)
        n = e->in->len;
    memcpy(b, e->in->buf, n);
    memmove(e->in->buf, e->in->buf + n, e->in->len - n);
    e->in->len -= n;
    return (int)n;
}

static int make_cert(mbedtls_pk_context *key, mbedtls_x509_crt *crt)
{
    mbedtls_x509write_cert w;
    mbedtls_mpi serial;
    unsigned char pem[4096];
    int rc;

    mbedtls_x509write_crt_init(&w);
    mbedtls_mpi_init(&serial);
    rc = mbedtls_pk_setup(key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (rc == 0)
        rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*key),
                                 mbedtls_ctr_drbg_random, &drbg);
    if (rc == 0)
        rc = mbedtls_mpi_lset(&serial, 1);
    if (rc == 0) {
        mbedtls_x509write_crt_set_subject_key(&w, key);
        mbedtls_x509write_crt_set_issuer_key(&w, key);
        mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
        rc = mbedtls_x509write_crt_set_subject_name(&w, "CN=localhost");
    }
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_issuer_name(&w, "CN=localhost");
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_serial(&w, &serial);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_validity(&w, "20250101000000", "20350101000000");
    if (rc == 0)
        rc = mbedtls_x509write_crt_pem(&w, pem, sizeof(pem), mbedtls_ctr_drbg_random, &drbg);
    if (rc == 0)
        rc = mbedtls_x509_crt_parse(crt, pem, strlen((char *)pem) + 1);
    mbedtls_mpi_free(&serial);
    mbedtls_x509write_crt_free(&w);
    return rc;
}

int main(void)
{
    static const int suites[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 0};
    static const mbedtls_ecp_group_id curves[] = {MBEDTLS_ECP_DP_CURVE25519,
                                                  MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_NONE};
    static const char req[] = "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n";
    static unsigned char resp[212];
    unsigned char tmp[1024];
    mbedtls_ssl_config sconf;
    mbedtls_ssl_config cconf;
    mbedtls_ssl_ticket_context tickets;
    mbedtls_pk_context key;
    mbedtls_x509_crt crt;
    size_t m0;
    size_t m1;
    size_t m2;
    int rc;

    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_pk_init(&key);
    mbedtls_x509_crt_init(&crt);
    mbedtls_ssl_config_init(&sconf);
    mbedtls_ssl_config_init(&cconf);
    mbedtls_ssl_ticket_init(&tickets);
    rc = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0);
    if (rc == 0)
        rc = make_cert(&key, &crt);
    if (rc == 0)
        rc = mbedtls_ssl_config_defaults(&sconf, MBEDTLS_SSL_IS_SERVER,
                                         MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc == 0)
        rc = mbedtls_ssl_config_defaults(&cconf, MBEDTLS_SSL_IS_CLIENT,
                                         MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc == 0)
        rc = mbedtls_ssl_conf_own_cert(&sconf, &crt, &key);
    if (rc == 0)
        rc = mbedtls_ssl_ticket_setup(&tickets, mbedtls_ctr_drbg_random, &drbg,
                                      MBEDTLS_CIPHER_AES_256_GCM, 86400);
    if (rc != 0) {
        fprintf(stderr, "setup failed: -0x%04x\n", (unsigned)-rc);
        return 1;
    }
    mbedtls_ssl_conf_rng(&sconf, mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ssl_conf_rng(&cconf, mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ssl_conf_authmode(&cconf, MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_ciphersuites(&sconf, suites);
    mbedtls_ssl_conf_curves(&sconf, curves);
    mbedtls_ssl_conf_min_version(&sconf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_renegotiation(&sconf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    mbedtls_ssl_conf_session_tickets_cb(&sconf, mbedtls_ssl_ticket_write, mbedtls_ssl_ticket_parse,
                                        &tickets);
    memset(resp, 'x', sizeof(resp));

    m0 = mallinfo2().uordblks;
    for (int i = 0; i < PAIRS && rc == 0; i++) {
        struct end *s = &servers[i];
        struct end *c = &clients[i];
        int sr = MBEDTLS_ERR_SSL_WANT_READ;
        int cr = MBEDTLS_ERR_SSL_WANT_READ;

        s->in = &pipes[i][0];
        c->out = &pipes[i][0];
        s->out = &pipes[i][1];
        c->in = &pipes[i][1];
        mbedtls_ssl_init(&s->ssl);
        mbedtls_ssl_init(&c->ssl);
        rc = mbedtls_ssl_setup(&s->ssl, &sconf);
        if (rc == 0)
            rc = mbedtls_ssl_setup(&c->ssl, &cconf);
        mbedtls_ssl_set_bio(&s->ssl, s, bio_send, bio_recv, NULL);
        mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
        for (int step = 0; rc == 0 && step < 100 && (sr != 0 || cr != 0); step++) {
            if (cr != 0)
                cr = mbedtls_ssl_handshake(&c->ssl);
            if (sr != 0)
                sr = mbedtls_ssl_handshake(&s->ssl);
            if ((cr != 0 && cr != MBEDTLS_ERR_SSL_WANT_READ)
                || (sr != 0 && sr != MBEDTLS_ERR_SSL_WANT_READ))
                rc = cr != 0 && cr != MBEDTLS_ERR_SSL_WANT_READ ? cr : sr;
        }
        if (rc == 0 && (sr != 0 || cr != 0))
            rc = -1;
        if (rc == 0 && mbedtls_ssl_write(&c->ssl, (const unsigned char *)req, sizeof(req) - 1) < 0)
            rc = -2;
        if (rc == 0 && mbedtls_ssl_read(&s->ssl, tmp, sizeof(tmp)) <= 0)
            rc = -3;
        if (rc == 0 && mbedtls_ssl_write(&s->ssl, resp, sizeof(resp)) < 0)
            rc = -4;
        if (rc == 0 && mbedtls_ssl_read(&c->ssl, tmp, sizeof(tmp)) <= 0)
            rc = -5;
    }
    if (rc != 0) {
        fprintf(stderr, "handshake failed: -0x%04x\n", (unsigned)-rc);
        return 1;
    }
    m1 = mallinfo2().uordblks;
    for (int i = 0; i < PAIRS; i++)
        mbedtls_ssl_free(&clients[i].ssl);
    m2 = mallinfo2().uordblks;
    printf("{\"pairs\":%d,\"server_heap_per_session\":%zu,\"both_ends_per_pair\":%zu,"
           "\"ssl_context_struct\":%zu}\n",
           PAIRS, (m2 - m0) / PAIRS, (m1 - m0) / PAIRS, sizeof(mbedtls_ssl_context));
    for (int i = 0; i < PAIRS; i++)
        mbedtls_ssl_free(&servers[i].ssl);
    mbedtls_ssl_ticket_free(&tickets);
    mbedtls_ssl_config_free(&sconf);
    mbedtls_ssl_config_free(&cconf);
    mbedtls_x509_crt_free(&crt);
    mbedtls_pk_free(&key);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return 0;
}
