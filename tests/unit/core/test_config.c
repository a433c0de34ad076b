/*
 * Tests for src/core/config.c: eg_config_load with a fake environment (a small table passed as
 * the getenv callback's data) and eg_config_core_bool.
 */
#include <engram/config.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <engram/core.h>
#include <engram/http.h>

#include "../harness.h"

/* ---- fake environment --------------------------------------------------------------------- */

struct env_var {
    const char *name;
    const char *value;
};

/* data: a table ending with {NULL, NULL}; the first entry with the name wins. */
static const char *fake_getenv(const char *name, void *data)
{
    const struct env_var *e = data;

    for (; e->name != NULL; e++) {
        if (strcmp(e->name, name) == 0)
            return e->value;
    }
    return NULL;
}

struct loaded {
    struct eg_config cfg;
    char err[256];
    int rc;
};

static void load(struct loaded *l, const struct env_var *env)
{
    memset(l, 0, sizeof(*l));
    l->rc = eg_config_load(&l->cfg, fake_getenv, (void *)env, l->err, sizeof(l->err));
}

/* True when err starts with "NAME:" */
static bool names(const char *err, const char *name)
{
    size_t n = strlen(name);

    return strncmp(err, name, n) == 0 && err[n] == ':';
}

/* ---- defaults ----------------------------------------------------------------------------- */

TEST(defaults)
{
    static const struct env_var env[] = {{NULL, NULL}};
    struct loaded l;

    load(&l, env);
    ASSERT_INT_EQ(0, l.rc);
    ASSERT_INT_EQ(8080, l.cfg.port);
    ASSERT_STR_EQ("0.0.0.0,::", l.cfg.bind);
    ASSERT_STR_EQ("", l.cfg.database_url); /* libpq's own PG* variables apply */
    ASSERT_INT_EQ(8, l.cfg.db_pool_size);
    ASSERT_EQ((uint64_t)5000, l.cfg.db_statement_timeout_ms);
    ASSERT_EQ((size_t)1024, l.cfg.db_queue_max);
    ASSERT_EQ((uint64_t)2000, l.cfg.db_queue_timeout_ms);
    ASSERT_STR_EQ("", l.cfg.redis_url);
    ASSERT_EQ((size_t)10000, l.cfg.max_connections);
    ASSERT_EQ((size_t)1048576, l.cfg.max_body_bytes);
    ASSERT_EQ((size_t)16384, l.cfg.max_header_bytes);
    ASSERT_EQ((size_t)100, l.cfg.max_headers);
    ASSERT_EQ((size_t)8192, l.cfg.max_url_bytes);
    ASSERT_EQ((size_t)64, l.cfg.json_max_depth);
    ASSERT_EQ((uint64_t)10000, l.cfg.header_timeout_ms);
    ASSERT_EQ((uint64_t)10000, l.cfg.body_timeout_ms);
    ASSERT_EQ((uint64_t)60000, l.cfg.keepalive_timeout_ms);
    ASSERT_EQ((uint64_t)30000, l.cfg.write_timeout_ms);
    ASSERT_EQ((size_t)16, l.cfg.pipeline_max);
    ASSERT_EQ((uint64_t)10000, l.cfg.drain_timeout_ms);
    ASSERT_EQ((uint64_t)0, l.cfg.drain_delay_ms);
    ASSERT_STR_EQ("info", l.cfg.log_level);
    ASSERT_STR_EQ("default-project", l.cfg.default_project_id);
    ASSERT_STR_EQ("auto", l.cfg.ai_mode);
    ASSERT_TRUE(l.cfg.use_retrieval_expand);
    ASSERT_TRUE(!l.cfg.core_debug);
    ASSERT_STR_EQ("", l.cfg.openai_api_key);
    ASSERT_STR_EQ("", l.cfg.cerebras_api_key);
    ASSERT_STR_EQ("", l.cfg.retrieval_model);
    ASSERT_STR_EQ("text-embedding-3-small", l.cfg.openai_embed_model);
    /* the defaults agree with the HTTP layer's */
    ASSERT_EQ(EG_HTTP_LIMITS_DEFAULT.body_bytes, l.cfg.max_body_bytes);
    ASSERT_EQ(EG_HTTP_LIMITS_DEFAULT.header_bytes, l.cfg.max_header_bytes);
    ASSERT_EQ(EG_HTTP_LIMITS_DEFAULT.header_count, l.cfg.max_headers);
    ASSERT_EQ(EG_HTTP_LIMITS_DEFAULT.url_bytes, l.cfg.max_url_bytes);
}

/* ---- integer variables -------------------------------------------------------------------- */

enum kind { K_INT, K_SIZE, K_U64 };

struct int_var {
    const char *name;
    uint64_t min;
    uint64_t max;
    size_t off;
    enum kind kind;
};

#define V(name, min, max, field, kind)                                                             \
    {                                                                                              \
        name, min, max, offsetof(struct eg_config, field), kind                                    \
    }

static const struct int_var int_vars[] = {
    V("PORT", 0, 65535, port, K_INT),
    V("ENGRAM_DB_POOL_SIZE", 1, 256, db_pool_size, K_INT),
    V("ENGRAM_DB_STATEMENT_TIMEOUT_MS", 100, 3600000, db_statement_timeout_ms, K_U64),
    V("ENGRAM_DB_QUEUE_MAX", 0, 1000000, db_queue_max, K_SIZE),
    V("ENGRAM_DB_QUEUE_TIMEOUT_MS", 1, 600000, db_queue_timeout_ms, K_U64),
    V("ENGRAM_MAX_CONNECTIONS", 1, 1000000, max_connections, K_SIZE),
    V("ENGRAM_MAX_BODY_BYTES", 1, 64u << 20, max_body_bytes, K_SIZE),
    V("ENGRAM_MAX_HEADER_BYTES", 256, 1u << 20, max_header_bytes, K_SIZE),
    V("ENGRAM_MAX_HEADERS", 1, 10000, max_headers, K_SIZE),
    V("ENGRAM_MAX_URL_BYTES", 64, 1u << 20, max_url_bytes, K_SIZE),
    V("ENGRAM_JSON_MAX_DEPTH", 1, 1000, json_max_depth, K_SIZE),
    V("ENGRAM_HEADER_TIMEOUT_MS", 1, 3600000, header_timeout_ms, K_U64),
    V("ENGRAM_BODY_TIMEOUT_MS", 1, 3600000, body_timeout_ms, K_U64),
    V("ENGRAM_KEEPALIVE_TIMEOUT_MS", 1, 86400000, keepalive_timeout_ms, K_U64),
    V("ENGRAM_WRITE_TIMEOUT_MS", 1, 3600000, write_timeout_ms, K_U64),
    V("ENGRAM_PIPELINE_MAX", 1, 1024, pipeline_max, K_SIZE),
    V("ENGRAM_DRAIN_TIMEOUT_MS", 0, 3600000, drain_timeout_ms, K_U64),
    V("ENGRAM_DRAIN_DELAY_MS", 0, 600000, drain_delay_ms, K_U64),
};

static uint64_t field_value(const struct eg_config *cfg, const struct int_var *v)
{
    const char *p = (const char *)cfg + v->off;

    switch (v->kind) {
    case K_INT: {
        int x;

        memcpy(&x, p, sizeof(x));
        return (uint64_t)x;
    }
    case K_SIZE: {
        size_t x;

        memcpy(&x, p, sizeof(x));
        return x;
    }
    case K_U64:
    default: {
        uint64_t x;

        memcpy(&x, p, sizeof(x));
        return x;
    }
    }
}

/* Loads with the one variable set; returns rc, and the field value / message. */
static int load_one(const char *name, const char *value, uint64_t *got, char *err, size_t err_len)
{
    struct env_var env[2] = {{name, value}, {NULL, NULL}};
    struct eg_config cfg;
    int rc;

    err[0] = '\0';
    rc = eg_config_load(&cfg, fake_getenv, env, err, err_len);
    for (size_t i = 0; i < EG_ARRAY_LEN(int_vars); i++) {
        if (strcmp(int_vars[i].name, name) == 0)
            *got = field_value(&cfg, &int_vars[i]);
    }
    return rc;
}

TEST(integers_accept_range)
{
    for (size_t i = 0; i < EG_ARRAY_LEN(int_vars); i++) {
        const struct int_var *v = &int_vars[i];
        uint64_t vals[3] = {v->min, v->max, v->min + (v->max - v->min) / 2};

        for (size_t k = 0; k < 3; k++) {
            char buf[32];
            char err[256];
            uint64_t got = 0;
            int rc;

            snprintf(buf, sizeof(buf), "%llu", (unsigned long long)vals[k]);
            rc = load_one(v->name, buf, &got, err, sizeof(err));
            if (rc != 0 || got != vals[k])
                printf("# %s=%s: rc %d, got %llu, err %s\n", v->name, buf, rc,
                       (unsigned long long)got, err);
            ASSERT_INT_EQ(0, rc);
            ASSERT_EQ(vals[k], got);
        }
    }
}

TEST(integers_reject_bad)
{
    static const char *const bad[] = {
        "",
        "abc",
        "-1",
        "-0",
        " 5",
        "5 ",
        "5x",
        "0x10",
        "+5",
        "1e3",
        "5.0",
        "1,0",
        "\t7",
        "99999999999999999999999",
        "18446744073709551616", /* 2^64 */
    };

    for (size_t i = 0; i < EG_ARRAY_LEN(int_vars); i++) {
        const struct int_var *v = &int_vars[i];
        char out_of_range[2][32];
        size_t nr = 0;

        snprintf(out_of_range[nr++], sizeof(out_of_range[0]), "%llu",
                 (unsigned long long)v->max + 1);
        if (v->min > 0)
            snprintf(out_of_range[nr++], sizeof(out_of_range[0]), "%llu",
                     (unsigned long long)v->min - 1);

        for (size_t k = 0; k < EG_ARRAY_LEN(bad) + nr; k++) {
            const char *val = k < EG_ARRAY_LEN(bad) ? bad[k] : out_of_range[k - EG_ARRAY_LEN(bad)];
            char err[256];
            uint64_t got = 0;
            int rc = load_one(v->name, val, &got, err, sizeof(err));

            if (rc != EG_ECONFIG || !names(err, v->name))
                printf("# %s=\"%s\": rc %d, err \"%s\"\n", v->name, val, rc, err);
            ASSERT_INT_EQ(EG_ECONFIG, rc);
            ASSERT_TRUE(names(err, v->name));
            ASSERT_TRUE(strstr(err, "integer") != NULL);
        }
    }
}

TEST(integer_error_message)
{
    char err[256];
    uint64_t got;

    ASSERT_INT_EQ(EG_ECONFIG, load_one("ENGRAM_PIPELINE_MAX", "2000", &got, err, sizeof(err)));
    ASSERT_STR_EQ("ENGRAM_PIPELINE_MAX: expected an integer from 1 to 1024, got \"2000\"", err);
    /* a tiny err buffer is truncated, not overrun */
    {
        char small[8];

        memset(small, 'x', sizeof(small));
        ASSERT_INT_EQ(EG_ECONFIG, load_one("PORT", "x", &got, small, sizeof(small)));
        ASSERT_STR_EQ("PORT: e", small);
    }
}

TEST(later_error_after_first)
{
    /* the first bad variable (in load order) is the one reported */
    static const struct env_var env[] = {
        {"PORT", "80"}, {"ENGRAM_MAX_HEADERS", "0"}, {"ENGRAM_PIPELINE_MAX", "0"}, {NULL, NULL}};
    struct loaded l;

    load(&l, env);
    ASSERT_INT_EQ(EG_ECONFIG, l.rc);
    ASSERT_TRUE(names(l.err, "ENGRAM_MAX_HEADERS"));
}

/* ---- strings ------------------------------------------------------------------------------ */

TEST(strings)
{
    static const struct env_var env[] = {
        {"ENGRAM_BIND", "127.0.0.1,::1"}, {"REDIS_URL", "redis://r:6379/0"},
        {"ENGRAM_LOG_LEVEL", "debug"},    {"OPENAI_API_KEY", "sk-test"},
        {"CEREBRAS_API", "cb-test"},      {"RETRIEVAL_MODEL", "m1"},
        {"OPENAI_EMBED_MODEL", "e1"},     {NULL, NULL}};
    struct loaded l;

    load(&l, env);
    ASSERT_INT_EQ(0, l.rc);
    ASSERT_STR_EQ("127.0.0.1,::1", l.cfg.bind);
    ASSERT_STR_EQ("redis://r:6379/0", l.cfg.redis_url);
    ASSERT_STR_EQ("debug", l.cfg.log_level);
    ASSERT_STR_EQ("sk-test", l.cfg.openai_api_key);
    ASSERT_STR_EQ("cb-test", l.cfg.cerebras_api_key);
    ASSERT_STR_EQ("m1", l.cfg.retrieval_model);
    ASSERT_STR_EQ("e1", l.cfg.openai_embed_model);
}

TEST(string_errors)
{
    char long_value[700];
    struct loaded l;

    memset(long_value, 'a', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = '\0';
    {
        const struct env_var env[] = {{"REDIS_URL", long_value}, {NULL, NULL}};

        load(&l, env);
        ASSERT_INT_EQ(EG_ECONFIG, l.rc);
        ASSERT_TRUE(names(l.err, "REDIS_URL"));
    }
    {
        const struct env_var env[] = {{"ENGRAM_BIND", ""}, {NULL, NULL}};

        load(&l, env);
        ASSERT_INT_EQ(EG_ECONFIG, l.rc);
        ASSERT_TRUE(names(l.err, "ENGRAM_BIND"));
    }
    {
        const struct env_var env[] = {{"ENGRAM_LOG_LEVEL", "verbose"}, {NULL, NULL}};

        load(&l, env);
        ASSERT_INT_EQ(EG_ECONFIG, l.rc);
        ASSERT_TRUE(names(l.err, "ENGRAM_LOG_LEVEL"));
    }
    {
        const struct env_var env[] = {{"OPENAI_API_KEY", long_value}, {NULL, NULL}};

        load(&l, env);
        ASSERT_INT_EQ(EG_ECONFIG, l.rc);
        ASSERT_TRUE(names(l.err, "OPENAI_API_KEY"));
    }
}

/* ---- database ----------------------------------------------------------------------------- */

TEST(database_url_wins)
{
    /* POSTGRES_* incomplete (no user) would be an error; DATABASE_URL takes precedence */
    static const struct env_var env[] = {{"POSTGRES_HOST", "pg"},
                                         {"POSTGRES_DB", "core"},
                                         {"DATABASE_URL", "postgres://u:p@db:5432/engram"},
                                         {NULL, NULL}};
    struct loaded l;

    load(&l, env);
    ASSERT_INT_EQ(0, l.rc);
    ASSERT_STR_EQ("postgres://u:p@db:5432/engram", l.cfg.database_url);
}

TEST(database_postgres_vars)
{
    static const struct env_var env[] = {{"POSTGRES_HOST", "pg"},
                                         {"POSTGRES_DB", "core"},
                                         {"POSTGRES_USER", "app"},
                                         {"POSTGRES_PASSWORD", "p'w\\x y"},
                                         {"POSTGRES_PORT", "5433"},
                                         {"DATABASE_URL", ""}, /* empty counts as unset */
                                         {NULL, NULL}};
    struct loaded l;

    load(&l, env);
    ASSERT_INT_EQ(0, l.rc);
    ASSERT_STR_EQ("host='pg' dbname='core' user='app' password='p\\'w\\\\x y' port='5433'",
                  l.cfg.database_url);
}

TEST(database_postgres_missing_user)
{
    static const struct env_var env[] = {{"POSTGRES_HOST", "pg"},
                                         {"POSTGRES_DB", "core"},
                                         {"POSTGRES_PASSWORD", "pw"},
                                         {NULL, NULL}};
    static const struct env_var only_host[] = {{"POSTGRES_HOST", "pg"}, {NULL, NULL}};
    struct loaded l;

    load(&l, env);
    ASSERT_INT_EQ(EG_ECONFIG, l.rc);
    ASSERT_TRUE(names(l.err, "POSTGRES_USER"));
    /* with nothing but the host, the first missing one is named */
    load(&l, only_host);
    ASSERT_INT_EQ(EG_ECONFIG, l.rc);
    ASSERT_TRUE(names(l.err, "POSTGRES_DB"));
}

TEST(database_postgres_bad_port)
{
    static const struct env_var env[] = {{"POSTGRES_HOST", "pg"},  {"POSTGRES_DB", "core"},
                                         {"POSTGRES_USER", "app"}, {"POSTGRES_PASSWORD", "pw"},
                                         {"POSTGRES_PORT", "0"},   {NULL, NULL}};
    static const struct env_var env2[] = {{"POSTGRES_HOST", "pg"},  {"POSTGRES_DB", "core"},
                                          {"POSTGRES_USER", "app"}, {"POSTGRES_PASSWORD", "pw"},
                                          {"POSTGRES_PORT", "54x"}, {NULL, NULL}};
    struct loaded l;

    load(&l, env);
    ASSERT_INT_EQ(EG_ECONFIG, l.rc);
    ASSERT_TRUE(names(l.err, "POSTGRES_PORT"));
    load(&l, env2);
    ASSERT_INT_EQ(EG_ECONFIG, l.rc);
    ASSERT_TRUE(names(l.err, "POSTGRES_PORT"));
}

TEST(database_port_without_host_ignored)
{
    static const struct env_var env[] = {{"POSTGRES_PORT", "5433"}, {NULL, NULL}};
    struct loaded l;

    load(&l, env);
    ASSERT_INT_EQ(0, l.rc);
    ASSERT_STR_EQ("", l.cfg.database_url);
}

/* ---- CORE settings ------------------------------------------------------------------------ */

TEST(core_default_project)
{
    static const struct env_var empty[] = {{"CORE_DEFAULT_PROJECT_ID", ""}, {NULL, NULL}};
    static const struct env_var set[] = {{"CORE_DEFAULT_PROJECT_ID", "proj-1"}, {NULL, NULL}};
    struct loaded l;

    load(&l, empty);
    ASSERT_INT_EQ(0, l.rc);
    ASSERT_STR_EQ("default-project", l.cfg.default_project_id);
    load(&l, set);
    ASSERT_INT_EQ(0, l.rc);
    ASSERT_STR_EQ("proj-1", l.cfg.default_project_id);
}

TEST(core_ai_mode)
{
    static const struct env_var e1[] = {{"CORE_AI_MODE", "  OpenAI \t\n"}, {NULL, NULL}};
    static const struct env_var e2[] = {{"CORE_AI_MODE", "OFF"}, {NULL, NULL}};
    static const struct env_var e3[] = {{"CORE_AI_MODE", "cerebras"}, {NULL, NULL}};
    struct loaded l;

    load(&l, e1);
    ASSERT_INT_EQ(0, l.rc);
    ASSERT_STR_EQ("openai", l.cfg.ai_mode);
    load(&l, e2);
    ASSERT_STR_EQ("off", l.cfg.ai_mode);
    load(&l, e3);
    ASSERT_STR_EQ("cerebras", l.cfg.ai_mode);
}

TEST(core_flags)
{
    static const struct env_var e1[] = {
        {"USE_RETRIEVAL_EXPAND", " off "}, {"CORE_DEBUG", "YES"}, {NULL, NULL}};
    static const struct env_var e2[] = {
        {"USE_RETRIEVAL_EXPAND", "maybe"}, {"CORE_DEBUG", "maybe"}, {NULL, NULL}};
    struct loaded l;

    load(&l, e1);
    ASSERT_INT_EQ(0, l.rc);
    ASSERT_TRUE(!l.cfg.use_retrieval_expand);
    ASSERT_TRUE(l.cfg.core_debug);
    load(&l, e2);
    ASSERT_INT_EQ(0, l.rc);
    ASSERT_TRUE(l.cfg.use_retrieval_expand); /* defaults */
    ASSERT_TRUE(!l.cfg.core_debug);
}

TEST(core_bool)
{
    static const char *const yes[] = {"1",   "true", "TRUE", "True",     "YES",
                                      "yes", "on",   " on ", "\ttrue\n", "On"};
    static const char *const no[] = {"0",   "false", "FALSE", "no",       "NO",
                                     "off", "OFF",   " 0 ",   "\toff\r\n"};
    static const char *const other[] = {"maybe",
                                        "",
                                        "  ",
                                        "2",
                                        "onn",
                                        "yes please",
                                        "y",
                                        "t",
                                        "01",
                                        "truetruetruetrue",
                                        "1                x"};

    for (size_t i = 0; i < EG_ARRAY_LEN(yes); i++) {
        ASSERT_TRUE(eg_config_core_bool(yes[i], false));
        ASSERT_TRUE(eg_config_core_bool(yes[i], true));
    }
    for (size_t i = 0; i < EG_ARRAY_LEN(no); i++) {
        ASSERT_TRUE(!eg_config_core_bool(no[i], true));
        ASSERT_TRUE(!eg_config_core_bool(no[i], false));
    }
    for (size_t i = 0; i < EG_ARRAY_LEN(other); i++) {
        if (eg_config_core_bool(other[i], true) != true
            || eg_config_core_bool(other[i], false) != false)
            printf("# \"%s\" is not the default\n", other[i]);
        ASSERT_TRUE(eg_config_core_bool(other[i], true));
        ASSERT_TRUE(!eg_config_core_bool(other[i], false));
    }
    ASSERT_TRUE(eg_config_core_bool(NULL, true));
    ASSERT_TRUE(!eg_config_core_bool(NULL, false));
}

int main(void)
{
    static const struct test_case tests[] = {
        TEST_CASE(defaults),
        TEST_CASE(integers_accept_range),
        TEST_CASE(integers_reject_bad),
        TEST_CASE(integer_error_message),
        TEST_CASE(later_error_after_first),
        TEST_CASE(strings),
        TEST_CASE(string_errors),
        TEST_CASE(database_url_wins),
        TEST_CASE(database_postgres_vars),
        TEST_CASE(database_postgres_missing_user),
        TEST_CASE(database_postgres_bad_port),
        TEST_CASE(database_port_without_host_ignored),
        TEST_CASE(core_default_project),
        TEST_CASE(core_ai_mode),
        TEST_CASE(core_flags),
        TEST_CASE(core_bool),
    };
    return RUN_TESTS(tests);
}
