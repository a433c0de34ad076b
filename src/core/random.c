/* Random ids from the kernel CSPRNG; getrandom(2) never blocks once the pool is initialised. */
#include "engram/core.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

void eg_random_bytes(void *p, size_t n)
{
    unsigned char *out = p;

    while (n > 0) {
        ssize_t got = getrandom(out, n, 0);

        if (got < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"getrandom failed\"}\n");
            abort();
        }
        out += got;
        n -= (size_t)got;
    }
}

static const char hexdig[] = "0123456789abcdef";

void eg_random_hex(char *out, size_t n)
{
    unsigned char raw[64];

    while (n > 0) {
        size_t k = n < sizeof(raw) ? n : sizeof(raw);

        eg_random_bytes(raw, k);
        for (size_t i = 0; i < k; i++) {
            *out++ = hexdig[raw[i] >> 4];
            *out++ = hexdig[raw[i] & 15];
        }
        n -= k;
    }
    *out = '\0';
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

void eg_request_id(char out[33])
{
    /* Thread-local so a future worker thread never shares the state. */
    static _Thread_local uint64_t state;
    static _Thread_local bool seeded;
    uint64_t v[2];

    if (!seeded) {
        eg_random_bytes(&state, sizeof(state));
        seeded = true;
    }
    v[0] = splitmix64(&state);
    v[1] = splitmix64(&state);
    for (int w = 0; w < 2; w++) {
        for (int i = 0; i < 16; i++)
            out[w * 16 + i] = hexdig[(v[w] >> (60 - 4 * i)) & 15];
    }
    out[32] = '\0';
}

/*
 * Every memory create takes a UUID, and a getrandom(2) per UUID was 2-3 % of engramd's CPU under
 * write load (a syscall is dear on a VM). So each thread reads the kernel's bytes 512 at a time
 * and hands them out once each, in order. A forked child discards its copy of the pool, so it
 * never repeats the parent's ids (engramd does not fork; this keeps it true if it ever does).
 */
#define UUID_POOL 512

static _Thread_local unsigned char uuid_pool[UUID_POOL];
static _Thread_local size_t uuid_left;
static pthread_once_t uuid_once = PTHREAD_ONCE_INIT;

static void uuid_pool_forget(void)
{
    explicit_bzero(uuid_pool, sizeof(uuid_pool));
    uuid_left = 0;
}

static void uuid_pool_init(void)
{
    pthread_atfork(NULL, NULL, uuid_pool_forget);
}

void eg_uuid_v4(char out[37])
{
    unsigned char r[16];
    size_t o = 0;

    pthread_once(&uuid_once, uuid_pool_init);
    if (uuid_left < sizeof(r)) {
        eg_random_bytes(uuid_pool, sizeof(uuid_pool));
        uuid_left = sizeof(uuid_pool);
    }
    memcpy(r, uuid_pool + sizeof(uuid_pool) - uuid_left, sizeof(r));
    explicit_bzero(uuid_pool + sizeof(uuid_pool) - uuid_left, sizeof(r));
    uuid_left -= sizeof(r);
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hexdig[r[i] >> 4];
        out[o++] = hexdig[r[i] & 15];
    }
    out[o] = '\0';
}
