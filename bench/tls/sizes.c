/* Prints the per-connection allocations mbedTLS 2.28 makes for a server session, as compiled in
 * this machine's libmbedtls (bench/tls/run.sh). Build: cc sizes.c -o sizes */
#include <stdio.h>

#include <mbedtls/ssl.h>
#include <mbedtls/ssl_internal.h>

int main(void)
{
    printf("{\"ssl_context\":%zu,\"in_buf\":%zu,\"out_buf\":%zu,\"session\":%zu,"
           "\"transform\":%zu,\"max_content_len\":%d}\n",
           sizeof(mbedtls_ssl_context), (size_t)MBEDTLS_SSL_IN_BUFFER_LEN,
           (size_t)MBEDTLS_SSL_OUT_BUFFER_LEN, sizeof(mbedtls_ssl_session),
           sizeof(mbedtls_ssl_transform), MBEDTLS_SSL_MAX_CONTENT_LEN);
    return 0;
}
