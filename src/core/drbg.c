/*
 * The process CTR_DRBG: one generator seeded once from mbedTLS's entropy collector (getrandom on
 * Linux), reseeded by mbedTLS itself every MBEDTLS_CTR_DRBG_RESEED_INTERVAL requests. TLS
 * handshakes, session tickets and any other key material draw from it, so a hot path never makes
 * a syscall per random number.
 */
#include "engram/core.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static bool is_seeded;

int eg_drbg_seed(void)
{
    static const unsigned char pers[] = "engram drbg";
    int rc;

    if (is_seeded)
        return 0;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    rc = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, pers, sizeof(pers) - 1);
    if (rc != 0) {
        mbedtls_ctr_drbg_free(&drbg);
        mbedtls_entropy_free(&entropy);
        return rc;
    }
    is_seeded = true;
    return 0;
}

int eg_drbg_random(void *p_rng, unsigned char *out, size_t n)
{
    int rc = eg_drbg_seed();

    (void)p_rng;
    /* mbedTLS caps one request at MBEDTLS_CTR_DRBG_MAX_REQUEST bytes. */
    while (rc == 0 && n > 0) {
        size_t k = EG_MIN(n, (size_t)MBEDTLS_CTR_DRBG_MAX_REQUEST);

        rc = mbedtls_ctr_drbg_random(&drbg, out, k);
        out += k;
        n -= k;
    }
    return rc;
}
