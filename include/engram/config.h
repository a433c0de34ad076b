/*
 * engram configuration, read from the environment (12-factor). CORE's variable names are
 * accepted as they are; engram's own settings are ENGRAM_*. See docs/OPERATIONS.md for the table.
 */
#ifndef EG_CONFIG_H
#define EG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct eg_config {
    /* listener */
    int port;       /* PORT */
    char bind[256]; /* ENGRAM_BIND: comma-separated numeric addresses */
    /* HTTPS listener: on when ENGRAM_TLS_PORT is set (then cert and key are required) */
    int tls_port;        /* ENGRAM_TLS_PORT; -1 when unset (no HTTPS listener) */
    char tls_bind[256];  /* ENGRAM_TLS_BIND; defaults to ENGRAM_BIND */
    char tls_cert[1024]; /* ENGRAM_TLS_CERT: PEM certificate chain file */
    char tls_key[1024];  /* ENGRAM_TLS_KEY: PEM private key file */
    /* database: DATABASE_URL, else CORE's POSTGRES_* */
    char database_url[1024];
    int db_pool_size;                 /* ENGRAM_DB_POOL_SIZE */
    uint64_t db_statement_timeout_ms; /* ENGRAM_DB_STATEMENT_TIMEOUT_MS */
    size_t db_queue_max;              /* ENGRAM_DB_QUEUE_MAX */
    uint64_t db_queue_timeout_ms;     /* ENGRAM_DB_QUEUE_TIMEOUT_MS */
    /* redis */
    char redis_url[512]; /* REDIS_URL; empty when unset */
    /* HTTP limits and timers */
    size_t max_connections;        /* ENGRAM_MAX_CONNECTIONS */
    size_t max_body_bytes;         /* ENGRAM_MAX_BODY_BYTES */
    size_t max_header_bytes;       /* ENGRAM_MAX_HEADER_BYTES */
    size_t max_headers;            /* ENGRAM_MAX_HEADERS */
    size_t max_url_bytes;          /* ENGRAM_MAX_URL_BYTES */
    size_t json_max_depth;         /* ENGRAM_JSON_MAX_DEPTH */
    uint64_t header_timeout_ms;    /* ENGRAM_HEADER_TIMEOUT_MS */
    uint64_t body_timeout_ms;      /* ENGRAM_BODY_TIMEOUT_MS */
    uint64_t keepalive_timeout_ms; /* ENGRAM_KEEPALIVE_TIMEOUT_MS */
    uint64_t write_timeout_ms;     /* ENGRAM_WRITE_TIMEOUT_MS */
    size_t pipeline_max;           /* ENGRAM_PIPELINE_MAX */
    uint64_t drain_timeout_ms;     /* ENGRAM_DRAIN_TIMEOUT_MS: in-flight work after SIGTERM */
    uint64_t drain_delay_ms;       /* ENGRAM_DRAIN_DELAY_MS: ready=503 before the listener closes */
    uint64_t sse_keepalive_ms;     /* ENGRAM_SSE_KEEPALIVE_MS: comment keepalive interval */
    uint64_t sse_heartbeat_ms;     /* ENGRAM_SSE_HEARTBEAT_MS: CORE's heartbeat event */
    uint64_t sse_catchup_ms;       /* ENGRAM_SSE_CATCHUP_MS: poll for other instances' events */
    size_t sse_max_pending_bytes;  /* ENGRAM_SSE_MAX_PENDING_BYTES: slow-subscriber cap */
    uint64_t sse_retry_ms;         /* ENGRAM_SSE_RETRY_MS: the retry: hint */
    uint64_t sse_max_behind_ms;    /* ENGRAM_SSE_MAX_BEHIND_MS: behind longer -> closed */
    uint64_t event_retention_s;    /* ENGRAM_EVENT_RETENTION_S: event log window (0: forever) */
    char bus[16];                  /* ENGRAM_BUS: redis (REDIS_URL set) or postgres */
    uint64_t sequencer_poll_ms;    /* ENGRAM_SEQUENCER_POLL_MS: idle outbox poll ceiling */
    int sequencer_batch;           /* ENGRAM_SEQUENCER_BATCH: rows per transaction */
    char log_level[16];            /* ENGRAM_LOG_LEVEL */
    /* API keys and browsers (docs/API.md) */
    bool auth_enabled;          /* ENGRAM_AUTH: on (default) or off (CORE's open API) */
    uint64_t auth_cache_ttl_ms; /* ENGRAM_AUTH_CACHE_TTL_MS: how long a validated key is trusted */
    size_t auth_cache_size;     /* ENGRAM_AUTH_CACHE_SIZE: validated keys kept in memory */
    uint64_t auth_sweep_ms;     /* ENGRAM_AUTH_SWEEP_MS: revocation poll (closes streams) */
    char cors_origins[2048];    /* ENGRAM_CORS_ORIGINS: "*" or comma-separated origins */
    uint64_t rate_limit;        /* ENGRAM_RATE_LIMIT: requests per window per key; 0: off */
    uint64_t rate_limit_window_s;  /* ENGRAM_RATE_LIMIT_WINDOW_S */
    uint64_t rate_limit_instances; /* ENGRAM_RATE_LIMIT_INSTANCES: share of each without Redis */
    char
        rate_limit_scopes[512]; /* ENGRAM_RATE_LIMIT_SCOPES: "scope=q,..." per-route-scope quotas */
    uint64_t idempotency_ttl_s; /* ENGRAM_IDEMPOTENCY_TTL_S: how long a stored response replays */
    /* fault hooks for the idempotency tests (RELIABILITY.md §2.0); never set in production */
    uint64_t test_idem_hold_ms; /* ENGRAM_TEST_IDEM_HOLD_MS: hold the claimed key this long */
    bool test_idem_crash_after_commit; /* ENGRAM_TEST_IDEM_CRASH_AFTER_COMMIT: SIGKILL self */
    /* CORE's application settings */
    char default_project_id[256]; /* CORE_DEFAULT_PROJECT_ID */
    char ai_mode[32];             /* CORE_AI_MODE, trimmed and lower-cased */
    bool use_retrieval_expand;    /* USE_RETRIEVAL_EXPAND */
    bool core_debug;              /* CORE_DEBUG */
    char openai_api_key[256];     /* OPENAI_API_KEY (never logged) */
    char cerebras_api_key[256];   /* CEREBRAS_API (never logged) */
    char retrieval_model[128];    /* RETRIEVAL_MODEL */
    char openai_embed_model[128]; /* OPENAI_EMBED_MODEL */
};

/** Looks a variable up; returns NULL when unset. getenv() fits; tests pass their own. */
typedef const char *eg_config_getenv_fn(const char *name, void *data);

/**
 * Fills cfg from the environment, defaults first. Returns 0, or EG_ECONFIG with a one-line
 * message in err naming the variable and what was wrong with it.
 */
int eg_config_load(struct eg_config *cfg, eg_config_getenv_fn *get, void *data, char *err,
                   size_t err_len);

/** Parses CORE's boolean flags: 1/true/yes/on and 0/false/no/off (trimmed, any case), else def. */
bool eg_config_core_bool(const char *v, bool def);

#endif /* EG_CONFIG_H */
