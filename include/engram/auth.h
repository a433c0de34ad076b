/*
 * engram auth: API keys (format, generation, hashing, scopes), the bounded cache of validated
 * keys, and the SQL of key management shared by `engramd keys` and /admin/keys.
 *
 * A key is "eg_<prefix>_<secret>": prefix is EG_AUTH_PREFIX_LEN characters [0-9a-z] (public: it
 * names the key in listings and logs), secret is EG_AUTH_SECRET_LEN base62 characters whose last
 * EG_AUTH_CRC_LEN are a CRC-32 of everything before them (so look-alikes and typos are refused
 * without a database lookup, as GitHub's token format does). The random part comes from mbedTLS
 * CTR_DRBG seeded from the platform entropy source. Only SHA-256(key) is stored; the key is shown
 * once, at creation. Everything here is loop-thread only (the DRBG and the cache are unlocked).
 */
#ifndef EG_AUTH_H
#define EG_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engram/core.h"
#include "engram/db.h"

#define EG_AUTH_PREFIX_LEN 8
#define EG_AUTH_SECRET_LEN 43 /* 37 random base62 characters (~220 bits) + 6 of CRC-32 */
#define EG_AUTH_CRC_LEN    6
#define EG_AUTH_KEY_LEN    (3 + EG_AUTH_PREFIX_LEN + 1 + EG_AUTH_SECRET_LEN)
#define EG_AUTH_HASH_LEN   32
#define EG_AUTH_HASH_HEX   (2 * EG_AUTH_HASH_LEN)

/* ---- scopes ------------------------------------------------------------------------------- */

enum eg_auth_scope {
    EG_AUTH_MEMORIES_READ = 1u << 0,
    EG_AUTH_MEMORIES_WRITE = 1u << 1,
    EG_AUTH_CLAIMS_READ = 1u << 2,
    EG_AUTH_CLAIMS_WRITE = 1u << 3,
    EG_AUTH_EVENTS_READ = 1u << 4,
    EG_AUTH_ADMIN = 1u << 5, /* key management; also grants every other scope of its project */
};

#define EG_AUTH_SCOPE_ALL 0x3fu
#define EG_AUTH_NSCOPES   6 /* scope bit i is 1u << i */

/** The scope's name ("memories:read"); scope must be exactly one bit. NULL otherwise. */
const char *eg_auth_scope_name(unsigned scope);
/**
 * Parses a comma-separated scope list (spaces around names allowed, duplicates collapse).
 * Returns the mask, 0 for an empty list, or -1 when a name is unknown or the text is too long.
 */
long eg_auth_scopes_parse(const char *s, size_t n);
/** Writes mask as canonical comma-separated names into out (NUL-terminated). Returns length. */
size_t eg_auth_scopes_format(unsigned mask, char *out, size_t out_len);
/**
 * Parses per-scope quotas, "memories:write=100, events:read=20" (ENGRAM_RATE_LIMIT_SCOPES), into
 * quotas[i] for scope bit i; scopes not named are set to UINT64_MAX (use the default quota).
 * Returns 0, or -1 for an unknown scope, a missing or out-of-range number, or a repeated scope.
 */
int eg_auth_scope_quotas_parse(const char *s, uint64_t quotas[EG_AUTH_NSCOPES]);
/** True when a key holding mask may use a route that needs scope (admin implies all). */
bool eg_auth_scope_allows(unsigned mask, unsigned scope);

/* ---- keys --------------------------------------------------------------------------------- */

/** A new key: the text shown once, its public prefix, and the hash that is stored. */
struct eg_auth_new_key {
    char key[EG_AUTH_KEY_LEN + 1];
    char prefix[EG_AUTH_PREFIX_LEN + 1];
    char hash_hex[EG_AUTH_HASH_HEX + 1];
};

/** Generates a key from CTR_DRBG. Aborts only if the entropy source is unusable (logged). */
void eg_auth_key_generate(struct eg_auth_new_key *out);
/**
 * Checks the format and checksum of the n bytes at s. Returns 0, or EG_EPARSE when the text is
 * not a well-formed engram key. Reads at most n bytes. prefix_out (may be NULL) gets the prefix.
 */
int eg_auth_key_check(const char *s, size_t n, char prefix_out[EG_AUTH_PREFIX_LEN + 1]);
/** SHA-256 of the n bytes at s. */
void eg_auth_hash(const char *s, size_t n, uint8_t out[EG_AUTH_HASH_LEN]);
/** Lower-case hex of a hash; out must hold EG_AUTH_HASH_HEX + 1 bytes. */
void eg_auth_hash_hex(const uint8_t hash[EG_AUTH_HASH_LEN], char *out);
/** Constant-time equality of n bytes (mbedtls_ct_memcmp): timing depends on n only. */
bool eg_auth_ct_equal(const void *a, const void *b, size_t n);
/** CRC-32 (IEEE 802.3, as zlib's crc32) of n bytes. Exposed for tests. */
uint32_t eg_auth_crc32(const void *p, size_t n);
/** Fills p with n bytes from the CTR_DRBG. */
void eg_auth_random(void *p, size_t n);

/**
 * Parses a duration "<digits><unit>" with unit s, m, h, d or w (e.g. "30d", "24h") into seconds.
 * Returns 0, or EG_EPARSE (also on overflow past 100 years).
 */
int eg_auth_duration_parse(const char *s, size_t n, int64_t *seconds);

/* ---- cache of validated keys -------------------------------------------------------------- */

/** What a valid key grants. Strings are NUL-terminated copies. */
struct eg_auth_principal {
    char key_id[64];
    char prefix[EG_AUTH_PREFIX_LEN + 1];
    char project[256];
    unsigned scopes;
    int64_t expires_wall_ms; /* 0: no expiry */
};

struct eg_auth_cache;

/**
 * Creates a direct-mapped cache of `slots` entries (rounded up to a power of two, at least 16),
 * each valid for ttl_ms after it was filled. A colliding insert replaces the older entry, so the
 * cache never holds more than `slots` keys whatever clients send.
 */
struct eg_auth_cache *eg_auth_cache_new(size_t slots, uint64_t ttl_ms);
void eg_auth_cache_free(struct eg_auth_cache *c);
/**
 * Looks hash up at monotonic time now_ns and wall time now_wall_ms. Copies the principal into
 * *out and returns true on a fresh, unexpired hit (the hash is compared in constant time).
 */
bool eg_auth_cache_get(struct eg_auth_cache *c, const uint8_t hash[EG_AUTH_HASH_LEN],
                       uint64_t now_ns, int64_t now_wall_ms, struct eg_auth_principal *out);
/** Stores p under hash at now_ns (copied). */
void eg_auth_cache_put(struct eg_auth_cache *c, const uint8_t hash[EG_AUTH_HASH_LEN],
                       const struct eg_auth_principal *p, uint64_t now_ns);
/** Drops every entry of key_id (revocation). Returns how many were dropped. */
size_t eg_auth_cache_drop_key(struct eg_auth_cache *c, const char *key_id);

/* ---- key management statements (src/auth/store.c) ----------------------------------------- */

/*
 * Each eg_auth_batch_* adds one operation's statements to b: the change and its audit_log row in
 * the same transaction. Values are borrowed until the batch is sent. project NULL means any
 * project (the CLI, which runs with database credentials); /admin/keys passes its key's project.
 * actor_key_id is the key doing it (NULL for the CLI); request_id names the request ("cli").
 * Results: statement 0 returns one row with one column, the key as JSON text (never its hash),
 * or no row when nothing matched (rotate: one row, new key then old key, NULLs when none).
 * eg_auth_batch_list's row is a JSON array.
 */
struct eg_auth_key_spec {
    const char *project;
    const char *name;      /* "" for none */
    const char *scopes;    /* canonical list (eg_auth_scopes_format) */
    const char *exp_secs;  /* expiry as seconds from now, or NULL */
    const char *exp_at;    /* expiry as a timestamp for PostgreSQL to parse, or NULL */
    bool only_if_no_admin; /* create nothing when the project has an active admin key */
};

int eg_auth_batch_create(struct eg_db_batch *b, const char *id, const struct eg_auth_new_key *k,
                         const struct eg_auth_key_spec *spec, const char *actor_key_id,
                         const char *request_id);
int eg_auth_batch_list(struct eg_db_batch *b, const char *project);
/** id_or_prefix: the key's id or its prefix. */
int eg_auth_batch_revoke(struct eg_db_batch *b, const char *id_or_prefix, const char *project,
                         const char *actor_key_id, const char *request_id);
/** The old key stays valid for overlap_secs (text), then expires; the new key gets new_id/k. */
int eg_auth_batch_rotate(struct eg_db_batch *b, const char *id_or_prefix, const char *project,
                         const char *overlap_secs, const char *new_id,
                         const struct eg_auth_new_key *k, const char *actor_key_id,
                         const char *request_id);
/**
 * The lookup of a presented key by its hash: one row (id, project_id, scopes as a comma list,
 * key_hash hex, prefix, expiry in epoch ms or NULL) while the key is neither revoked nor expired.
 */
int eg_auth_batch_lookup(struct eg_db_batch *b, const char *hash_hex);
/**
 * Keys revoked or expired since `since` (a timestamptz text from a previous sweep, or NULL for
 * the last minute): statement 0 gives their ids, statement 1 the database's now() to pass next.
 */
int eg_auth_batch_sweep(struct eg_db_batch *b, const char *since);

/**
 * Splices "key":"<k>" as the first member into the JSON object text row (from the database) and
 * appends the result to out. Returns 0 or EG_ELIMIT.
 */
int eg_auth_json_with_key(struct eg_buf *out, const char *row, const char *key);

#endif /* EG_AUTH_H */
