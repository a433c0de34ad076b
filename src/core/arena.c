/*
 * Per-request arena: bump allocation from chunks, with a ceiling on the total so a client cannot
 * make one request hold unbounded memory. Chunks start small and double up to 4 KiB (or the size
 * asked for): an idle event stream keeps its request, and with it these chunks, for hours, so a
 * small request must cost little.
 */
#include "engram/core.h"

#include <string.h>

#define ARENA_FIRST_BYTES 1024
#define ARENA_CHUNK_BYTES 4096
#define ARENA_ALIGN       16

struct eg_arena_chunk {
    struct eg_arena_chunk *next;
    size_t size; /* usable bytes in data */
    size_t off;  /* bytes handed out */
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

struct eg_arena_cleanup {
    struct eg_arena_cleanup *next;
    eg_arena_cleanup_fn *fn;
    void *data;
};

void eg_arena_init(struct eg_arena *a, size_t max)
{
    a->chunks = NULL;
    a->cleanups = NULL;
    a->used = 0;
    a->max = max;
}

void eg_arena_fini(struct eg_arena *a)
{
    struct eg_arena_cleanup *c = a->cleanups;
    struct eg_arena_chunk *k = a->chunks;

    /* Cleanups live in the arena's own memory, so run them all before freeing any chunk. */
    while (c != NULL) {
        c->fn(c->data);
        c = c->next;
    }
    while (k != NULL) {
        struct eg_arena_chunk *next = k->next;

        eg_free(k);
        k = next;
    }
    a->chunks = NULL;
    a->cleanups = NULL;
    a->used = 0;
}

void *eg_arena_alloc(struct eg_arena *a, size_t n)
{
    struct eg_arena_chunk *k = a->chunks;
    size_t rounded = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    size_t size;
    void *p;

    if (rounded < n)
        return NULL;
    if (k == NULL || k->size - k->off < rounded) {
        size = k == NULL ? ARENA_FIRST_BYTES : EG_MIN(k->size * 2, (size_t)ARENA_CHUNK_BYTES);
        if (rounded > size)
            size = rounded;
        /* Written so it cannot wrap: a huge n must fail, not allocate a tiny chunk. */
        if (size > a->max || sizeof(*k) > a->max - size || a->used > a->max - size - sizeof(*k))
            return NULL;
        k = eg_malloc(sizeof(*k) + size);
        k->size = size;
        k->off = 0;
        k->next = a->chunks;
        a->chunks = k;
        a->used += size + sizeof(*k);
    }
    p = k->data + k->off;
    k->off += rounded;
    return p;
}

char *eg_arena_strndup(struct eg_arena *a, const char *s, size_t n)
{
    char *p = eg_arena_alloc(a, n + 1);

    if (p == NULL)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int eg_arena_defer(struct eg_arena *a, eg_arena_cleanup_fn *fn, void *data)
{
    struct eg_arena_cleanup *c = eg_arena_alloc(a, sizeof(*c));

    if (c == NULL)
        return EG_ELIMIT;
    c->fn = fn;
    c->data = data;
    c->next = a->cleanups;
    a->cleanups = c;
    return 0;
}
