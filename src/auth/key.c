/*
 * API keys: generation (CTR_DRBG), format and checksum, hashing, constant-time comparison,
 * scopes, durations, and the bounded cache of validated keys. Pure C plus mbedTLS; no I/O.
 */
#include "engram/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/constant_time.h>
#include <mbedtls/sha256.h>

static const char base62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
static const char base36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
static const char hexdig[] = "0123456789abcdef";

/* ---- random ------------------------------------------------------------------------------- */

/*
 * The process's one CTR_DRBG (src/core/drbg.c, shared with TLS), seeded from mbedTLS's entropy
 * source on first use; mbedTLS reseeds it on its own interval. A key without good randomness must
 * not be issued, so a failure aborts.
 */
void eg_auth_random(void *p, size_t n)
{
    if (eg_drbg_random(NULL, p, n) != 0) {
        fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"CTR_DRBG failed\"}\n");
        abort();
    }
}

/* Fills out with n characters drawn uniformly from alphabet (rejection sampling, no modulo bias).
 */
static void random_chars(char *out, size_t n, const char *alphabet, unsigned size)
{
    unsigned limit = 256 - 256 % size;
    unsigned char buf[64];
    size_t have = 0;
    size_t pos = 0;

    while (have < n) {
        if (pos == 0 || pos == sizeof(buf)) {
            eg_auth_random(buf, sizeof(buf));
            pos = 0;
        }
        if (buf[pos] < limit)
            out[have++] = alphabet[buf[pos] % size];
        pos++;
    }
}

/* ---- format ------------------------------------------------------------------------------- */

/*
 * CRC-32 (IEEE, reflected 0xedb88320) four bits at a time: every authenticated request checks
 * its key's CRC, and a bit at a time cost about 1 us of the ~100 us a write takes in engramd.
 * crc_nibble[i] is the CRC register after shifting i through four rounds.
 */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu, 0x76dc4190u, 0x6b6b51f4u,
    0x4db26158u, 0x5005713cu, 0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu,
    0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu,
};

uint32_t eg_auth_crc32(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint32_t crc = 0xffffffffu;

    for (size_t i = 0; i < n; i++) {
        crc ^= s[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    }
    return crc ^ 0xffffffffu;
}

static void crc_chars(const char *s, size_t n, char out[EG_AUTH_CRC_LEN])
{
    uint32_t v = eg_auth_crc32(s, n);

    for (int i = EG_AUTH_CRC_LEN - 1; i >= 0; i--) {
        out[i] = base62[v % 62];
        v /= 62;
    }
}

void eg_auth_key_generate(struct eg_auth_new_key *out)
{
    uint8_t hash[EG_AUTH_HASH_LEN];
    char *k = out->key;
    size_t body = EG_AUTH_KEY_LEN - EG_AUTH_CRC_LEN;

    memcpy(k, "eg_", 3);
    random_chars(k + 3, EG_AUTH_PREFIX_LEN, base36, 36);
    k[3 + EG_AUTH_PREFIX_LEN] = '_';
    random_chars(k + 4 + EG_AUTH_PREFIX_LEN, EG_AUTH_SECRET_LEN - EG_AUTH_CRC_LEN, base62, 62);
    crc_chars(k, body, k + body);
    k[EG_AUTH_KEY_LEN] = '\0';
    memcpy(out->prefix, k + 3, EG_AUTH_PREFIX_LEN);
    out->prefix[EG_AUTH_PREFIX_LEN] = '\0';
    eg_auth_hash(k, EG_AUTH_KEY_LEN, hash);
    eg_auth_hash_hex(hash, out->hash_hex);
}

static bool is_base36(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z');
}

static bool is_base62(char c)
{
    return is_base36(c) || (c >= 'A' && c <= 'Z');
}

int eg_auth_key_check(const char *s, size_t n, char prefix_out[EG_AUTH_PREFIX_LEN + 1])
{
    size_t body = EG_AUTH_KEY_LEN - EG_AUTH_CRC_LEN;
    char crc[EG_AUTH_CRC_LEN];

    if (n != EG_AUTH_KEY_LEN || memcmp(s, "eg_", 3) != 0 || s[3 + EG_AUTH_PREFIX_LEN] != '_')
        return EG_EPARSE;
    for (size_t i = 3; i < 3 + EG_AUTH_PREFIX_LEN; i++) {
        if (!is_base36(s[i]))
            return EG_EPARSE;
    }
    for (size_t i = 4 + EG_AUTH_PREFIX_LEN; i < EG_AUTH_KEY_LEN; i++) {
        if (!is_base62(s[i]))
            return EG_EPARSE;
    }
    crc_chars(s, body, crc);
    if (memcmp(crc, s + body, EG_AUTH_CRC_LEN) != 0)
        return EG_EPARSE;
    if (prefix_out != NULL) {
        memcpy(prefix_out, s + 3, EG_AUTH_PREFIX_LEN);
        prefix_out[EG_AUTH_PREFIX_LEN] = '\0';
    }
    return 0;
}

void eg_auth_hash(const char *s, size_t n, uint8_t out[EG_AUTH_HASH_LEN])
{
    mbedtls_sha256_ret((const unsigned char *)s, n, out, 0);
}

void eg_auth_hash_hex(const uint8_t hash[EG_AUTH_HASH_LEN], char *out)
{
    for (size_t i = 0; i < EG_AUTH_HASH_LEN; i++) {
        out[2 * i] = hexdig[hash[i] >> 4];
        out[2 * i + 1] = hexdig[hash[i] & 15];
    }
    out[EG_AUTH_HASH_HEX] = '\0';
}

bool eg_auth_ct_equal(const void *a, const void *b, size_t n)
{
    return mbedtls_ct_memcmp(a, b, n) == 0;
}

/* ---- scopes ------------------------------------------------------------------------------- */

static const char *const scope_names[] = {"memories:read", "memories:write", "claims:read",
                                          "claims:write",  "events:read",    "admin"};

const char *eg_auth_scope_name(unsigned scope)
{
    for (size_t i = 0; i < EG_ARRAY_LEN(scope_names); i++) {
        if (scope == 1u << i)
            return scope_names[i];
    }
    return NULL;
}

/* Drops trailing spaces from s[0, *n); false when the list then ends in a comma (names nothing). */
static bool list_trim(const char *s, size_t *n)
{
    while (*n > 0 && s[*n - 1] == ' ')
        (*n)--;
    return *n == 0 || s[*n - 1] != ',';
}

/* The next comma-separated item of s[*i, n), spaces trimmed, as [*start, *end); *i moves past it
 * and its comma. */
static void list_next(const char *s, size_t n, size_t *i, size_t *start, size_t *end)
{
    while (*i < n && s[*i] == ' ')
        (*i)++;
    *start = *i;
    while (*i < n && s[*i] != ',')
        (*i)++;
    *end = *i;
    while (*end > *start && s[*end - 1] == ' ')
        (*end)--;
    if (*i < n)
        (*i)++; /* the comma */
}

long eg_auth_scopes_parse(const char *s, size_t n)
{
    unsigned mask = 0;
    size_t i = 0;

    if (n > 1024 || !list_trim(s, &n))
        return -1;
    while (i < n) {
        size_t start;
        size_t end;
        size_t k;
        bool found = false;

        list_next(s, n, &i, &start, &end);
        if (end == start)
            return -1; /* an empty name: ",", "a,,b" or a trailing comma */
        for (k = 0; k < EG_ARRAY_LEN(scope_names); k++) {
            if (strlen(scope_names[k]) == end - start
                && memcmp(scope_names[k], s + start, end - start) == 0) {
                mask |= 1u << k;
                found = true;
                break;
            }
        }
        if (!found)
            return -1;
    }
    return (long)mask;
}

size_t eg_auth_scopes_format(unsigned mask, char *out, size_t out_len)
{
    size_t o = 0;

    if (out_len == 0)
        return 0;
    out[0] = '\0';
    for (size_t i = 0; i < EG_ARRAY_LEN(scope_names); i++) {
        if ((mask & (1u << i)) == 0)
            continue;
        o += (size_t)snprintf(out + o, o < out_len ? out_len - o : 0, "%s%s", o > 0 ? "," : "",
                              scope_names[i]);
    }
    return o < out_len ? o : out_len - 1;
}

int eg_auth_scope_quotas_parse(const char *s, uint64_t quotas[EG_AUTH_NSCOPES])
{
    size_t n = strlen(s);
    size_t i = 0;

    for (size_t k = 0; k < EG_AUTH_NSCOPES; k++)
        quotas[k] = UINT64_MAX;
    if (!list_trim(s, &n))
        return -1;
    while (i < n) {
        size_t start;
        size_t end;
        size_t eq;
        uint64_t v = 0;
        long bit;
        int k = 0;

        list_next(s, n, &i, &start, &end);
        eq = start;
        while (eq < end && s[eq] != '=')
            eq++;
        if (eq == end)
            return -1;
        bit = eg_auth_scopes_parse(s + start, eq - start);
        if (bit <= 0 || (bit & (bit - 1)) != 0)
            return -1; /* exactly one known scope per entry */
        while (bit > 1) {
            bit >>= 1;
            k++;
        }
        eq++;
        while (eq < end && s[eq] == ' ')
            eq++;
        if (eq == end || end - eq > 9)
            return -1; /* at most 999,999,999 per window */
        for (size_t j = eq; j < end; j++) {
            if (s[j] < '0' || s[j] > '9')
                return -1;
            v = v * 10 + (uint64_t)(s[j] - '0');
        }
        if (quotas[k] != UINT64_MAX)
            return -1;
        quotas[k] = v;
    }
    return 0;
}

bool eg_auth_scope_allows(unsigned mask, unsigned scope)
{
    return (mask & EG_AUTH_ADMIN) != 0 || (mask & scope) == scope;
}

int eg_auth_duration_parse(const char *s, size_t n, int64_t *seconds)
{
    int64_t v = 0;
    int64_t unit;
    size_t i = 0;

    while (i < n && s[i] >= '0' && s[i] <= '9') {
        v = v * 10 + (s[i] - '0');
        if (v > 100LL * 366 * 86400)
            return EG_EPARSE;
        i++;
    }
    if (i == 0 || i + 1 != n)
        return EG_EPARSE;
    switch (s[i]) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    case 'w': unit = 7 * 86400; break;
    default: return EG_EPARSE;
    }
    if (v > 100LL * 366 * 86400 / unit)
        return EG_EPARSE;
    *seconds = v * unit;
    return 0;
}

/* ---- cache -------------------------------------------------------------------------------- */

struct cache_entry {
    uint8_t hash[EG_AUTH_HASH_LEN];
    bool is_used;
    uint64_t filled_ns;
    struct eg_auth_principal p;
};

struct eg_auth_cache {
    struct cache_entry *slots;
    size_t mask;
    uint64_t ttl_ns;
};

struct eg_auth_cache *eg_auth_cache_new(size_t slots, uint64_t ttl_ms)
{
    struct eg_auth_cache *c = eg_calloc(1, sizeof(*c));
    size_t n = 16;

    while (n < slots && n < ((size_t)1 << 24))
        n <<= 1;
    c->slots = eg_calloc(n, sizeof(*c->slots));
    c->mask = n - 1;
    c->ttl_ns = ttl_ms * 1000000u;
    return c;
}

void eg_auth_cache_free(struct eg_auth_cache *c)
{
    if (c == NULL)
        return;
    eg_free(c->slots);
    eg_free(c);
}

static struct cache_entry *slot_of(struct eg_auth_cache *c, const uint8_t *hash)
{
    size_t i =
        (size_t)hash[0] | (size_t)hash[1] << 8 | (size_t)hash[2] << 16 | (size_t)hash[3] << 24;

    return &c->slots[i & c->mask];
}

bool eg_auth_cache_get(struct eg_auth_cache *c, const uint8_t hash[EG_AUTH_HASH_LEN],
                       uint64_t now_ns, int64_t now_wall_ms, struct eg_auth_principal *out)
{
    struct cache_entry *e = slot_of(c, hash);

    if (!e->is_used || !eg_auth_ct_equal(e->hash, hash, EG_AUTH_HASH_LEN))
        return false;
    if (now_ns - e->filled_ns >= c->ttl_ns
        || (e->p.expires_wall_ms != 0 && now_wall_ms >= e->p.expires_wall_ms)) {
        e->is_used = false;
        return false;
    }
    *out = e->p;
    return true;
}

void eg_auth_cache_put(struct eg_auth_cache *c, const uint8_t hash[EG_AUTH_HASH_LEN],
                       const struct eg_auth_principal *p, uint64_t now_ns)
{
    struct cache_entry *e = slot_of(c, hash);

    memcpy(e->hash, hash, EG_AUTH_HASH_LEN);
    e->p = *p;
    e->filled_ns = now_ns;
    e->is_used = true;
}

size_t eg_auth_cache_drop_key(struct eg_auth_cache *c, const char *key_id)
{
    size_t dropped = 0;

    for (size_t i = 0; i <= c->mask; i++) {
        if (c->slots[i].is_used && strcmp(c->slots[i].p.key_id, key_id) == 0) {
            c->slots[i].is_used = false;
            dropped++;
        }
    }
    return dropped;
}
