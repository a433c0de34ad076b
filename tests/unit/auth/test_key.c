/* Unit tests for src/auth/key.c: key format and checksum, hashing, constant-time comparison,
 * scopes, durations and the bounded cache. */
#include <string.h>

#include "engram/auth.h"
#include "harness.h"

TEST(crc32_matches_the_standard_check_value)
{
    ASSERT_EQ(0xcbf43926u, eg_auth_crc32("123456789", 9));
    ASSERT_EQ(0u, eg_auth_crc32("", 0));
}

TEST(generated_keys_have_the_documented_format)
{
    struct eg_auth_new_key a;
    struct eg_auth_new_key b;
    char prefix[EG_AUTH_PREFIX_LEN + 1];

    eg_auth_key_generate(&a);
    eg_auth_key_generate(&b);
    ASSERT_EQ((size_t)EG_AUTH_KEY_LEN, strlen(a.key));
    ASSERT_EQ((size_t)55, strlen(a.key));
    ASSERT_TRUE(memcmp(a.key, "eg_", 3) == 0);
    ASSERT_TRUE(a.key[11] == '_');
    ASSERT_TRUE(strcmp(a.key, b.key) != 0);
    ASSERT_TRUE(strcmp(a.prefix, b.prefix) != 0);
    ASSERT_INT_EQ(0, eg_auth_key_check(a.key, strlen(a.key), prefix));
    ASSERT_STR_EQ(a.prefix, prefix);
    ASSERT_EQ((size_t)EG_AUTH_HASH_HEX, strlen(a.hash_hex));
}

TEST(every_single_character_change_is_refused)
{
    struct eg_auth_new_key k;
    char t[EG_AUTH_KEY_LEN + 1];

    eg_auth_key_generate(&k);
    for (size_t i = 0; i < EG_AUTH_KEY_LEN; i++) {
        memcpy(t, k.key, sizeof(t));
        t[i] = t[i] == 'a' ? 'b' : 'a';
        if (i == 11 || i < 3)
            t[i] = '-';
        ASSERT_INT_EQ(EG_EPARSE, eg_auth_key_check(t, EG_AUTH_KEY_LEN, NULL));
    }
}

TEST(malformed_keys_are_refused_without_reading_past_n)
{
    struct eg_auth_new_key k;
    char buf[EG_AUTH_KEY_LEN + 8];

    eg_auth_key_generate(&k);
    ASSERT_INT_EQ(EG_EPARSE, eg_auth_key_check("", 0, NULL));
    ASSERT_INT_EQ(EG_EPARSE, eg_auth_key_check("eg_", 3, NULL));
    ASSERT_INT_EQ(EG_EPARSE, eg_auth_key_check(k.key, EG_AUTH_KEY_LEN - 1, NULL));
    memcpy(buf, k.key, EG_AUTH_KEY_LEN);
    memcpy(buf + EG_AUTH_KEY_LEN, "x", 2);
    ASSERT_INT_EQ(EG_EPARSE, eg_auth_key_check(buf, EG_AUTH_KEY_LEN + 1, NULL));
    /* upper case in the prefix, NUL inside */
    memcpy(buf, k.key, EG_AUTH_KEY_LEN);
    buf[4] = 'A';
    ASSERT_INT_EQ(EG_EPARSE, eg_auth_key_check(buf, EG_AUTH_KEY_LEN, NULL));
    memcpy(buf, k.key, EG_AUTH_KEY_LEN);
    buf[20] = '\0';
    ASSERT_INT_EQ(EG_EPARSE, eg_auth_key_check(buf, EG_AUTH_KEY_LEN, NULL));
}

TEST(hash_is_sha256)
{
    uint8_t h[EG_AUTH_HASH_LEN];
    char hex[EG_AUTH_HASH_HEX + 1];

    eg_auth_hash("abc", 3, h);
    eg_auth_hash_hex(h, hex);
    ASSERT_STR_EQ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", hex);
}

TEST(constant_time_equality)
{
    uint8_t a[32];
    uint8_t b[32];

    memset(a, 7, sizeof(a));
    memcpy(b, a, sizeof(b));
    ASSERT_TRUE(eg_auth_ct_equal(a, b, sizeof(a)));
    b[31] ^= 1;
    ASSERT_TRUE(!eg_auth_ct_equal(a, b, sizeof(a)));
    b[31] ^= 1;
    b[0] ^= 0x80;
    ASSERT_TRUE(!eg_auth_ct_equal(a, b, sizeof(a)));
    ASSERT_TRUE(eg_auth_ct_equal(a, b, 0));
}

TEST(scopes_parse_and_format)
{
    char out[128];

    ASSERT_INT_EQ(EG_AUTH_MEMORIES_READ | EG_AUTH_CLAIMS_WRITE,
                  eg_auth_scopes_parse("claims:write, memories:read", 27));
    ASSERT_INT_EQ(EG_AUTH_ADMIN, eg_auth_scopes_parse("admin,admin", 11));
    ASSERT_INT_EQ(0, eg_auth_scopes_parse("", 0));
    ASSERT_INT_EQ(-1, eg_auth_scopes_parse("memories:read,", 14));
    ASSERT_INT_EQ(-1, eg_auth_scopes_parse(",", 1));
    ASSERT_INT_EQ(-1, eg_auth_scopes_parse("memories", 8));
    ASSERT_INT_EQ(-1, eg_auth_scopes_parse("Admin", 5));
    eg_auth_scopes_format(EG_AUTH_SCOPE_ALL, out, sizeof(out));
    ASSERT_STR_EQ("memories:read,memories:write,claims:read,claims:write,events:read,admin", out);
    ASSERT_STR_EQ("events:read", eg_auth_scope_name(EG_AUTH_EVENTS_READ));
    ASSERT_TRUE(eg_auth_scope_name(3) == NULL);
    ASSERT_TRUE(eg_auth_scope_allows(EG_AUTH_ADMIN, EG_AUTH_CLAIMS_WRITE));
    ASSERT_TRUE(!eg_auth_scope_allows(EG_AUTH_MEMORIES_READ, EG_AUTH_MEMORIES_WRITE));
    ASSERT_TRUE(!eg_auth_scope_allows(EG_AUTH_MEMORIES_WRITE, EG_AUTH_ADMIN));
}

TEST(scope_quotas)
{
    uint64_t q[EG_AUTH_NSCOPES];

    ASSERT_INT_EQ(0, eg_auth_scope_quotas_parse("", q));
    for (size_t i = 0; i < EG_AUTH_NSCOPES; i++)
        ASSERT_TRUE(q[i] == UINT64_MAX);
    ASSERT_INT_EQ(0, eg_auth_scope_quotas_parse("memories:write=100, events:read = 0", q));
    ASSERT_TRUE(q[1] == 100);
    ASSERT_TRUE(q[4] == 0);
    ASSERT_TRUE(q[0] == UINT64_MAX && q[5] == UINT64_MAX);
    ASSERT_INT_EQ(0, eg_auth_scope_quotas_parse("admin=999999999", q));
    ASSERT_TRUE(q[5] == 999999999u);
    /* unknown or several scopes, missing or bad numbers, repeats, empty entries */
    ASSERT_INT_EQ(-1, eg_auth_scope_quotas_parse("memories=1", q));
    ASSERT_INT_EQ(-1, eg_auth_scope_quotas_parse("memories:read,claims:read=1", q));
    ASSERT_INT_EQ(-1, eg_auth_scope_quotas_parse("memories:read=", q));
    ASSERT_INT_EQ(-1, eg_auth_scope_quotas_parse("memories:read=-1", q));
    ASSERT_INT_EQ(-1, eg_auth_scope_quotas_parse("memories:read=1x", q));
    ASSERT_INT_EQ(-1, eg_auth_scope_quotas_parse("memories:read=1000000000", q));
    ASSERT_INT_EQ(-1, eg_auth_scope_quotas_parse("admin=1,admin=2", q));
    ASSERT_INT_EQ(-1, eg_auth_scope_quotas_parse("admin=1,", q));
    ASSERT_INT_EQ(0, eg_auth_scope_quotas_parse(" ", q)); /* blank: none set */
}

TEST(durations)
{
    int64_t s = -1;

    ASSERT_INT_EQ(0, eg_auth_duration_parse("30d", 3, &s));
    ASSERT_EQ((int64_t)30 * 86400, s);
    ASSERT_INT_EQ(0, eg_auth_duration_parse("0s", 2, &s));
    ASSERT_EQ((int64_t)0, s);
    ASSERT_INT_EQ(0, eg_auth_duration_parse("2w", 2, &s));
    ASSERT_EQ((int64_t)14 * 86400, s);
    ASSERT_INT_EQ(EG_EPARSE, eg_auth_duration_parse("d", 1, &s));
    ASSERT_INT_EQ(EG_EPARSE, eg_auth_duration_parse("10", 2, &s));
    ASSERT_INT_EQ(EG_EPARSE, eg_auth_duration_parse("10y", 3, &s));
    ASSERT_INT_EQ(EG_EPARSE, eg_auth_duration_parse("1 d", 3, &s));
    ASSERT_INT_EQ(EG_EPARSE, eg_auth_duration_parse("99999999999999999999d", 21, &s));
    ASSERT_INT_EQ(EG_EPARSE, eg_auth_duration_parse("40000d", 6, &s));
}

TEST(cache_ttl_expiry_collisions_and_drop)
{
    struct eg_auth_cache *c = eg_auth_cache_new(16, 100);
    struct eg_auth_principal p = {.key_id = "key_1", .project = "p", .scopes = 1};
    struct eg_auth_principal got;
    uint8_t h1[EG_AUTH_HASH_LEN] = {1, 2, 3};
    uint8_t h2[EG_AUTH_HASH_LEN] = {1, 2, 3, 0, 9}; /* same slot, different hash */
    uint64_t t0 = 1000000000u;

    ASSERT_TRUE(!eg_auth_cache_get(c, h1, t0, 0, &got));
    eg_auth_cache_put(c, h1, &p, t0);
    ASSERT_TRUE(eg_auth_cache_get(c, h1, t0 + 99000000u, 0, &got));
    ASSERT_STR_EQ("key_1", got.key_id);
    ASSERT_TRUE(!eg_auth_cache_get(c, h2, t0, 0, &got));
    ASSERT_TRUE(!eg_auth_cache_get(c, h1, t0 + 100000000u, 0, &got)); /* ttl passed */
    /* an expiry inside the ttl wins */
    p.expires_wall_ms = 5000;
    eg_auth_cache_put(c, h1, &p, t0);
    ASSERT_TRUE(eg_auth_cache_get(c, h1, t0, 4999, &got));
    ASSERT_TRUE(!eg_auth_cache_get(c, h1, t0, 5000, &got));
    /* a colliding insert replaces; revocation drops by key id */
    p.expires_wall_ms = 0;
    eg_auth_cache_put(c, h1, &p, t0);
    snprintf(p.key_id, sizeof(p.key_id), "key_2");
    eg_auth_cache_put(c, h2, &p, t0);
    ASSERT_TRUE(!eg_auth_cache_get(c, h1, t0, 0, &got));
    ASSERT_EQ((size_t)1, eg_auth_cache_drop_key(c, "key_2"));
    ASSERT_TRUE(!eg_auth_cache_get(c, h2, t0, 0, &got));
    eg_auth_cache_free(c);
}

TEST(json_with_key_splices_the_key_first)
{
    struct eg_buf b;

    eg_buf_init(&b, 1024);
    ASSERT_INT_EQ(0, eg_auth_json_with_key(&b, "{\"id\":\"k\"}", "eg_x"));
    ASSERT_STR_EQ("{\"key\":\"eg_x\",\"id\":\"k\"}", b.base);
    eg_buf_reset(&b);
    ASSERT_INT_EQ(0, eg_auth_json_with_key(&b, "{}", "eg_x"));
    ASSERT_STR_EQ("{\"key\":\"eg_x\"}", b.base);
    ASSERT_INT_EQ(EG_EPARSE, eg_auth_json_with_key(&b, "[]", "eg_x"));
    eg_buf_fini(&b);
}

int main(void)
{
    static const struct test_case t[] = {
        TEST_CASE(crc32_matches_the_standard_check_value),
        TEST_CASE(generated_keys_have_the_documented_format),
        TEST_CASE(every_single_character_change_is_refused),
        TEST_CASE(malformed_keys_are_refused_without_reading_past_n),
        TEST_CASE(hash_is_sha256),
        TEST_CASE(constant_time_equality),
        TEST_CASE(scopes_parse_and_format),
        TEST_CASE(scope_quotas),
        TEST_CASE(durations),
        TEST_CASE(cache_ttl_expiry_collisions_and_drop),
        TEST_CASE(json_with_key_splices_the_key_first),
    };
    return RUN_TESTS(t);
}
