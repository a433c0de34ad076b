/*
 * engram core: error codes, allocation, capped byte buffers, the per-request arena, clocks and
 * random ids. Everything here is pure C with no libuv types, so every other module may use it.
 *
 * Ownership conventions (STYLE.md §4): every pointer argument is borrowed unless the comment says
 * "takes", "returns new" or "returns ref".
 */
#ifndef EG_CORE_H
#define EG_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- errors ------------------------------------------------------------------------------- */

/*
 * Functions return 0 (or a byte count) on success and a negative code on failure. Negative errno
 * values (the same numbers libuv's UV_E* use) are valid codes; engram's own codes count down from
 * -10000 so they never collide with errno.
 */
enum eg_err {
    EG_EAGAIN_INPUT = -10000, /* parser needs more input */
    EG_ELIMIT = -10001,       /* a configured ceiling was reached */
    EG_EPARSE = -10002,       /* malformed input */
    EG_EDB = -10003,          /* database error */
    EG_ECANCELED = -10004,    /* operation cancelled (detached) before completion */
    EG_ETIMEDOUT = -10005,    /* deadline passed */
    EG_ECONFIG = -10006,      /* bad configuration value */
    EG_EUNAVAIL = -10007,     /* dependency unavailable (database down, queue full) */
    EG_ESCHEMA = -10008,      /* database schema older than this binary needs */
};

/** Returns a static description of code (negative errno or EG_E*). Never NULL. */
const char *eg_strerror(int code);

/* ---- allocation --------------------------------------------------------------------------- */

/*
 * Allocation failure is not recoverable here: every client-driven allocation is capped, so OOM
 * means a bug or an exhausted host. These log to stderr and abort() (redis zmalloc, h2o).
 */
void *eg_malloc(size_t n);
void *eg_calloc(size_t count, size_t size);
void *eg_realloc(void *p, size_t n);
/** Returns a new NUL-terminated copy of the n bytes at s. */
char *eg_strndup(const char *s, size_t n);
void eg_free(void *p);

/* ---- capped growable buffer (curl dynbuf) ------------------------------------------------- */

/** A byte buffer whose growth is capped at max bytes; base is NUL-terminated when non-NULL. */
struct eg_buf {
    char *base; /* read-only for callers; NULL until the first append */
    size_t len; /* read-only */
    size_t cap; /* private: allocated bytes */
    size_t max; /* private: ceiling on len */
};

/** Initialises b empty with a ceiling of max bytes. Allocates nothing. */
void eg_buf_init(struct eg_buf *b, size_t max);
/** Frees b's memory and leaves it empty (still usable). */
void eg_buf_fini(struct eg_buf *b);
/** Empties b, keeping its memory. */
void eg_buf_reset(struct eg_buf *b);
/** Appends n bytes. Returns 0, or EG_ELIMIT (b unchanged) if len would pass max. */
int eg_buf_append(struct eg_buf *b, const void *p, size_t n);
/** Appends a NUL-terminated string. Same returns as eg_buf_append. */
int eg_buf_puts(struct eg_buf *b, const char *s);
/** Appends one byte. Same returns as eg_buf_append. */
int eg_buf_putc(struct eg_buf *b, char c);
/** Appends printf-formatted text. Same returns as eg_buf_append. */
int eg_buf_printf(struct eg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int eg_buf_vprintf(struct eg_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/** Transfers ownership of the bytes to the caller (free with eg_free); b is left empty. */
char *eg_buf_take(struct eg_buf *b, size_t *len);

/* ---- arena (nginx pool) ------------------------------------------------------------------- */

struct eg_arena_chunk;
struct eg_arena_cleanup;

/**
 * A bump allocator for one request: many small allocations, one eg_arena_fini. Its total size is
 * capped (max bytes); eg_arena_alloc returns NULL past the cap, which callers turn into a 413/503.
 * Cleanups registered with eg_arena_defer run in reverse order at fini.
 */
struct eg_arena {
    struct eg_arena_chunk *chunks;     /* private */
    struct eg_arena_cleanup *cleanups; /* private */
    size_t used;                       /* read-only: bytes handed out, including overhead */
    size_t max;                        /* private */
};

typedef void eg_arena_cleanup_fn(void *data);

void eg_arena_init(struct eg_arena *a, size_t max);
/** Runs the cleanups (last registered first), then frees every chunk. */
void eg_arena_fini(struct eg_arena *a);
/** Returns n bytes aligned for any type, or NULL when the arena's ceiling would be passed. */
void *eg_arena_alloc(struct eg_arena *a, size_t n);
/** Returns a NUL-terminated copy of n bytes at s, or NULL at the ceiling. */
char *eg_arena_strndup(struct eg_arena *a, const char *s, size_t n);
/** Registers fn(data) to run at fini. Returns 0 or EG_ELIMIT. */
int eg_arena_defer(struct eg_arena *a, eg_arena_cleanup_fn *fn, void *data);

/* ---- clocks ------------------------------------------------------------------------------- */

/** Monotonic time in nanoseconds (CLOCK_MONOTONIC). */
uint64_t eg_mono_ns(void);
/** Wall-clock time in milliseconds since the epoch (CLOCK_REALTIME). */
int64_t eg_wall_ms(void);
/**
 * Writes ms-since-epoch as ISO-8601 UTC with exactly 3 fractional digits and Z (the format CORE's
 * JS Date.toISOString() produces: 2026-11-22T18:59:03.402Z) into out, NUL-terminated.
 * Returns the length (24).
 */
size_t eg_time_iso(char out[32], int64_t wall_ms);

/* ---- randomness and ids ------------------------------------------------------------------- */

/**
 * Fills p with n cryptographically strong random bytes (getrandom(2)). Never fails in practice;
 * aborts if the kernel refuses, since there is no safe fallback for secrets.
 */
void eg_random_bytes(void *p, size_t n);
/**
 * Writes a 32-hex-char request id + NUL. Unique, not secret: it comes from a per-process
 * splitmix64 generator seeded once from the kernel, so the hot path makes no syscall.
 */
void eg_request_id(char out[33]);
/** Writes a lowercase hyphenated UUID v4 (36 chars + NUL) into out. */
void eg_uuid_v4(char out[37]);
/** Writes n random bytes as 2n lowercase hex chars + NUL into out. */
void eg_random_hex(char *out, size_t n);
/**
 * The process's one CTR_DRBG (mbedTLS, AES-256), seeded from mbedtls_entropy_func on first use
 * (or by eg_drbg_seed at startup). Returns 0, or a negative mbedTLS error when the entropy source
 * fails; then nothing is seeded and the next call tries again.
 */
int eg_drbg_seed(void);
/**
 * Fills out with n bytes from the process DRBG. Its signature is mbedTLS's f_rng, so it can be
 * passed as mbedtls_ssl_conf_rng(conf, eg_drbg_random, NULL); p_rng is ignored. Returns 0 or a
 * negative mbedTLS error. Loop thread (Debian's mbedTLS also locks the DRBG internally).
 */
int eg_drbg_random(void *p_rng, unsigned char *out, size_t n);

/* ---- small helpers ------------------------------------------------------------------------ */

#define EG_ARRAY_LEN(a)                    (sizeof(a) / sizeof((a)[0]))
#define EG_MIN(a, b)                       ((a) < (b) ? (a) : (b))
#define EG_MAX(a, b)                       ((a) > (b) ? (a) : (b))
#define EG_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/** 32-bit FNV-1a of a NUL-terminated string (hash-table buckets; not for anything adversarial
 * that needs a keyed hash). */
unsigned eg_hash_str(const char *s);

/** Case-insensitive ASCII comparison of n bytes; true when equal. */
bool eg_ascii_caseeq(const char *a, const char *b, size_t n);

#endif /* EG_CORE_H */
