/* Environment configuration: defaults, parsing and validation with one-line errors. */
#include "engram/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engram/core.h"

struct ctx {
    eg_config_getenv_fn *get;
    void *data;
    char *err;
    size_t err_len;
};

static const char *get(struct ctx *x, const char *name)
{
    return x->get(name, x->data);
}

static int bad(struct ctx *x, const char *name, const char *what, const char *v)
{
    snprintf(x->err, x->err_len, "%s: %s, got \"%.64s\"", name, what, v);
    return EG_ECONFIG;
}

/* Reads an integer variable into *out when set, checking [min, max]. */
static int get_u64(struct ctx *x, const char *name, uint64_t min, uint64_t max, uint64_t *out)
{
    const char *v = get(x, name);
    char what[96];
    char *end;
    unsigned long long n;

    if (v == NULL)
        return 0;
    snprintf(what, sizeof(what), "expected an integer from %llu to %llu", (unsigned long long)min,
             (unsigned long long)max);
    if (v[0] < '0' || v[0] > '9')
        return bad(x, name, what, v);
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < min || n > max)
        return bad(x, name, what, v);
    *out = n;
    return 0;
}

static int get_size(struct ctx *x, const char *name, uint64_t min, uint64_t max, size_t *out)
{
    uint64_t v = *out;
    int rc = get_u64(x, name, min, max, &v);

    *out = (size_t)v;
    return rc;
}

static int get_str(struct ctx *x, const char *name, char *out, size_t out_len)
{
    const char *v = get(x, name);

    if (v == NULL)
        return 0;
    if (strlen(v) >= out_len)
        return bad(x, name, "value too long", v);
    memcpy(out, v, strlen(v) + 1);
    return 0;
}

/* Copies s trimmed of ASCII whitespace into out. */
static void trim_copy(const char *s, char *out, size_t out_len)
{
    size_t n;

    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    if (n >= out_len)
        n = out_len - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

bool eg_config_core_bool(const char *v, bool def)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    char t[16];

    if (v == NULL)
        return def;
    trim_copy(v, t, sizeof(t));
    for (size_t i = 0; i < EG_ARRAY_LEN(yes); i++) {
        if (strlen(t) == strlen(yes[i]) && eg_ascii_caseeq(t, yes[i], strlen(t)))
            return true;
        if (strlen(t) == strlen(no[i]) && eg_ascii_caseeq(t, no[i], strlen(t)))
            return false;
    }
    return def;
}

/* Appends key='value' to a libpq keyword string, quoting as libpq requires. */
static void conninfo_add(char *out, size_t out_len, const char *key, const char *value)
{
    size_t o = strlen(out);

    o += (size_t)snprintf(out + o, o < out_len ? out_len - o : 0, "%s%s='", o ? " " : "", key);
    for (const char *p = value; *p != '\0' && o + 3 < out_len; p++) {
        if (*p == '\'' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    if (o + 2 < out_len) {
        out[o++] = '\'';
        out[o] = '\0';
    }
}

static int load_database(struct ctx *x, struct eg_config *cfg)
{
    static const char *const core_vars[] = {"POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER",
                                            "POSTGRES_PASSWORD"};
    static const char *const keys[] = {"host", "dbname", "user", "password"};
    const char *url = get(x, "DATABASE_URL");
    const char *port;

    if (url != NULL && url[0] != '\0')
        return get_str(x, "DATABASE_URL", cfg->database_url, sizeof(cfg->database_url));
    if (get(x, "POSTGRES_HOST") == NULL) {
        /* Neither form given: libpq's own PG* variables and defaults apply. */
        cfg->database_url[0] = '\0';
        return 0;
    }
    for (size_t i = 0; i < EG_ARRAY_LEN(core_vars); i++) {
        const char *v = get(x, core_vars[i]);

        if (v == NULL) {
            snprintf(x->err, x->err_len,
                     "%s: required when POSTGRES_HOST is set (or set "
                     "DATABASE_URL)",
                     core_vars[i]);
            return EG_ECONFIG;
        }
        conninfo_add(cfg->database_url, sizeof(cfg->database_url), keys[i], v);
    }
    port = get(x, "POSTGRES_PORT");
    if (port != NULL) {
        uint64_t p = 5432;
        int rc = get_u64(x, "POSTGRES_PORT", 1, 65535, &p);

        if (rc < 0)
            return rc;
        conninfo_add(cfg->database_url, sizeof(cfg->database_url), "port", port);
    }
    return 0;
}

/* The HTTPS listener: all of port, cert and key, or none of them (ENGRAM_TLS_BIND is optional). */
static int load_tls(struct ctx *x, struct eg_config *cfg)
{
    static const char *const names[] = {"ENGRAM_TLS_PORT", "ENGRAM_TLS_CERT", "ENGRAM_TLS_KEY"};
    uint64_t port = 0;
    int rc;

    cfg->tls_port = -1;
    snprintf(cfg->tls_bind, sizeof(cfg->tls_bind), "%s", cfg->bind);
    rc = get_str(x, "ENGRAM_TLS_BIND", cfg->tls_bind, sizeof(cfg->tls_bind));
    if (rc == 0 && cfg->tls_bind[0] == '\0')
        rc = bad(x, "ENGRAM_TLS_BIND", "expected comma-separated IP addresses", "");
    if (rc == 0)
        rc = get_u64(x, "ENGRAM_TLS_PORT", 0, 65535, &port);
    if (rc == 0)
        rc = get_str(x, "ENGRAM_TLS_CERT", cfg->tls_cert, sizeof(cfg->tls_cert));
    if (rc == 0)
        rc = get_str(x, "ENGRAM_TLS_KEY", cfg->tls_key, sizeof(cfg->tls_key));
    if (rc < 0)
        return rc;
    if (get(x, "ENGRAM_TLS_PORT") == NULL && cfg->tls_cert[0] == '\0' && cfg->tls_key[0] == '\0')
        return 0;
    for (size_t i = 0; i < EG_ARRAY_LEN(names); i++) {
        const char *v = get(x, names[i]);

        if (v == NULL || v[0] == '\0') {
            snprintf(x->err, x->err_len,
                     "%s: required for the HTTPS listener (ENGRAM_TLS_PORT, ENGRAM_TLS_CERT and "
                     "ENGRAM_TLS_KEY go together)",
                     names[i]);
            return EG_ECONFIG;
        }
    }
    cfg->tls_port = (int)port;
    return 0;
}

int eg_config_load(struct eg_config *cfg, eg_config_getenv_fn *getenv_fn, void *data, char *err,
                   size_t err_len)
{
    struct ctx x = {getenv_fn, data, err, err_len};
    uint64_t u;
    const char *v;
    int rc = 0;

    memset(cfg, 0, sizeof(*cfg));
    cfg->port = 8080;
    cfg->tls_port = -1;
    snprintf(cfg->bind, sizeof(cfg->bind), "0.0.0.0,::");
    cfg->db_pool_size = 8;
    cfg->db_statement_timeout_ms = 5000;
    cfg->db_queue_max = 1024;
    cfg->db_queue_timeout_ms = 2000;
    cfg->max_connections = 10000;
    cfg->max_body_bytes = 1048576;
    cfg->max_header_bytes = 16384;
    cfg->max_headers = 100;
    cfg->max_url_bytes = 8192;
    cfg->json_max_depth = 64;
    cfg->header_timeout_ms = 10000;
    cfg->body_timeout_ms = 10000;
    cfg->keepalive_timeout_ms = 60000;
    cfg->write_timeout_ms = 30000;
    cfg->pipeline_max = 16;
    cfg->drain_timeout_ms = 10000;
    cfg->sse_keepalive_ms = 15000;
    cfg->sse_heartbeat_ms = 30000;
    cfg->sse_catchup_ms = 1000;
    cfg->sse_max_pending_bytes = 256 * 1024;
    cfg->sse_retry_ms = 3000;
    cfg->sse_max_behind_ms = 60000;
    cfg->event_retention_s = 7 * 86400;
    cfg->sequencer_poll_ms = 50;
    cfg->sequencer_batch = 1000;
    snprintf(cfg->log_level, sizeof(cfg->log_level), "info");
    cfg->auth_enabled = true;
    cfg->auth_cache_ttl_ms = 500;
    cfg->auth_cache_size = 4096;
    cfg->auth_sweep_ms = 250;
    cfg->idempotency_ttl_s = 86400;
    cfg->rate_limit_window_s = 60;
    cfg->rate_limit_instances = 1;
    snprintf(cfg->default_project_id, sizeof(cfg->default_project_id), "default-project");
    snprintf(cfg->ai_mode, sizeof(cfg->ai_mode), "auto");
    cfg->use_retrieval_expand = true;
    snprintf(cfg->openai_embed_model, sizeof(cfg->openai_embed_model), "text-embedding-3-small");

    u = (uint64_t)cfg->port;
    if (rc == 0)
        rc = get_u64(&x, "PORT", 0, 65535, &u);
    cfg->port = (int)u;
    if (rc == 0)
        rc = get_str(&x, "ENGRAM_BIND", cfg->bind, sizeof(cfg->bind));
    if (rc == 0 && cfg->bind[0] == '\0')
        rc = bad(&x, "ENGRAM_BIND", "expected comma-separated IP addresses", "");
    if (rc == 0)
        rc = load_tls(&x, cfg);
    if (rc == 0)
        rc = load_database(&x, cfg);
    u = (uint64_t)cfg->db_pool_size;
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_DB_POOL_SIZE", 1, 256, &u);
    cfg->db_pool_size = (int)u;
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_DB_STATEMENT_TIMEOUT_MS", 100, 3600000,
                     &cfg->db_statement_timeout_ms);
    if (rc == 0)
        rc = get_size(&x, "ENGRAM_DB_QUEUE_MAX", 0, 1000000, &cfg->db_queue_max);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_DB_QUEUE_TIMEOUT_MS", 1, 600000, &cfg->db_queue_timeout_ms);
    if (rc == 0)
        rc = get_str(&x, "REDIS_URL", cfg->redis_url, sizeof(cfg->redis_url));
    if (rc == 0)
        rc = get_size(&x, "ENGRAM_MAX_CONNECTIONS", 1, 1000000, &cfg->max_connections);
    if (rc == 0)
        rc = get_size(&x, "ENGRAM_MAX_BODY_BYTES", 1, 64u << 20, &cfg->max_body_bytes);
    if (rc == 0)
        rc = get_size(&x, "ENGRAM_MAX_HEADER_BYTES", 256, 1u << 20, &cfg->max_header_bytes);
    if (rc == 0)
        rc = get_size(&x, "ENGRAM_MAX_HEADERS", 1, 10000, &cfg->max_headers);
    if (rc == 0)
        rc = get_size(&x, "ENGRAM_MAX_URL_BYTES", 64, 1u << 20, &cfg->max_url_bytes);
    if (rc == 0)
        rc = get_size(&x, "ENGRAM_JSON_MAX_DEPTH", 1, 1000, &cfg->json_max_depth);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_HEADER_TIMEOUT_MS", 1, 3600000, &cfg->header_timeout_ms);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_BODY_TIMEOUT_MS", 1, 3600000, &cfg->body_timeout_ms);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_KEEPALIVE_TIMEOUT_MS", 1, 86400000, &cfg->keepalive_timeout_ms);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_WRITE_TIMEOUT_MS", 1, 3600000, &cfg->write_timeout_ms);
    if (rc == 0)
        rc = get_size(&x, "ENGRAM_PIPELINE_MAX", 1, 1024, &cfg->pipeline_max);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_DRAIN_TIMEOUT_MS", 0, 3600000, &cfg->drain_timeout_ms);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_SSE_KEEPALIVE_MS", 100, 3600000, &cfg->sse_keepalive_ms);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_SSE_HEARTBEAT_MS", 100, 3600000, &cfg->sse_heartbeat_ms);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_SSE_CATCHUP_MS", 10, 600000, &cfg->sse_catchup_ms);
    if (rc == 0)
        rc = get_size(&x, "ENGRAM_SSE_MAX_PENDING_BYTES", 4096, 1u << 30,
                      &cfg->sse_max_pending_bytes);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_SSE_RETRY_MS", 0, 3600000, &cfg->sse_retry_ms);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_SSE_MAX_BEHIND_MS", 100, 86400000, &cfg->sse_max_behind_ms);
    if (rc == 0)
        rc =
            get_u64(&x, "ENGRAM_EVENT_RETENTION_S", 0, 100u * 365 * 86400, &cfg->event_retention_s);
    if (rc == 0)
        rc = get_str(&x, "ENGRAM_BUS", cfg->bus, sizeof(cfg->bus));
    if (rc == 0 && cfg->bus[0] == '\0')
        snprintf(cfg->bus, sizeof(cfg->bus), "%s",
                 cfg->redis_url[0] != '\0' ? "redis" : "postgres");
    if (rc == 0 && strcmp(cfg->bus, "redis") != 0 && strcmp(cfg->bus, "postgres") != 0)
        rc = bad(&x, "ENGRAM_BUS", "expected redis or postgres", cfg->bus);
    if (rc == 0 && strcmp(cfg->bus, "redis") == 0 && cfg->redis_url[0] == '\0')
        rc = bad(&x, "ENGRAM_BUS", "redis needs REDIS_URL", cfg->bus);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_SEQUENCER_POLL_MS", 1, 60000, &cfg->sequencer_poll_ms);
    u = (uint64_t)cfg->sequencer_batch;
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_SEQUENCER_BATCH", 1, 100000, &u);
    cfg->sequencer_batch = (int)u;
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_DRAIN_DELAY_MS", 0, 600000, &cfg->drain_delay_ms);
    if (rc == 0)
        rc = get_str(&x, "ENGRAM_LOG_LEVEL", cfg->log_level, sizeof(cfg->log_level));
    if (rc == 0 && strcmp(cfg->log_level, "debug") != 0 && strcmp(cfg->log_level, "info") != 0
        && strcmp(cfg->log_level, "warn") != 0 && strcmp(cfg->log_level, "error") != 0)
        rc = bad(&x, "ENGRAM_LOG_LEVEL", "expected debug, info, warn or error", cfg->log_level);
    v = get(&x, "ENGRAM_AUTH");
    if (rc == 0 && v != NULL) {
        /* Strict on purpose: a typo must not silently open the API. */
        bool on = eg_config_core_bool(v, true);
        bool off = !eg_config_core_bool(v, false);

        if (on == off)
            rc = bad(&x, "ENGRAM_AUTH", "expected on or off", v);
        else
            cfg->auth_enabled = on;
    }
    /* At most 1 s: a revoked key must stop working on every instance within a second. */
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_AUTH_CACHE_TTL_MS", 0, 1000, &cfg->auth_cache_ttl_ms);
    if (rc == 0)
        rc = get_size(&x, "ENGRAM_AUTH_CACHE_SIZE", 16, 1u << 24, &cfg->auth_cache_size);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_AUTH_SWEEP_MS", 10, 1000, &cfg->auth_sweep_ms);
    if (rc == 0)
        rc = get_str(&x, "ENGRAM_CORS_ORIGINS", cfg->cors_origins, sizeof(cfg->cors_origins));
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_RATE_LIMIT", 0, 100000000, &cfg->rate_limit);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_RATE_LIMIT_WINDOW_S", 1, 86400, &cfg->rate_limit_window_s);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_RATE_LIMIT_INSTANCES", 1, 1000, &cfg->rate_limit_instances);
    /* The scope names are checked by main (auth owns them), the length here. */
    if (rc == 0)
        rc = get_str(&x, "ENGRAM_RATE_LIMIT_SCOPES", cfg->rate_limit_scopes,
                     sizeof(cfg->rate_limit_scopes));
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_IDEMPOTENCY_TTL_S", 1, 30 * 86400, &cfg->idempotency_ttl_s);
    if (rc == 0)
        rc = get_u64(&x, "ENGRAM_TEST_IDEM_HOLD_MS", 0, 60000, &cfg->test_idem_hold_ms);
    cfg->test_idem_crash_after_commit =
        eg_config_core_bool(get(&x, "ENGRAM_TEST_IDEM_CRASH_AFTER_COMMIT"), false);
    /* CORE: an empty default project id counts as unset. */
    v = get(&x, "CORE_DEFAULT_PROJECT_ID");
    if (rc == 0 && v != NULL && v[0] != '\0')
        rc = get_str(&x, "CORE_DEFAULT_PROJECT_ID", cfg->default_project_id,
                     sizeof(cfg->default_project_id));
    v = get(&x, "CORE_AI_MODE");
    if (rc == 0 && v != NULL) {
        trim_copy(v, cfg->ai_mode, sizeof(cfg->ai_mode));
        for (char *p = cfg->ai_mode; *p != '\0'; p++) {
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p + 32);
        }
    }
    cfg->use_retrieval_expand = eg_config_core_bool(get(&x, "USE_RETRIEVAL_EXPAND"), true);
    cfg->core_debug = eg_config_core_bool(get(&x, "CORE_DEBUG"), false);
    if (rc == 0)
        rc = get_str(&x, "OPENAI_API_KEY", cfg->openai_api_key, sizeof(cfg->openai_api_key));
    if (rc == 0)
        rc = get_str(&x, "CEREBRAS_API", cfg->cerebras_api_key, sizeof(cfg->cerebras_api_key));
    if (rc == 0)
        rc = get_str(&x, "RETRIEVAL_MODEL", cfg->retrieval_model, sizeof(cfg->retrieval_model));
    if (rc == 0)
        rc = get_str(&x, "OPENAI_EMBED_MODEL", cfg->openai_embed_model,
                     sizeof(cfg->openai_embed_model));
    return rc;
}
