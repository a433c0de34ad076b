/*
 * engram api: the application. Route table (CORE's matching order), project resolution, handlers,
 * and the per-request access log and metrics. struct eg_app is the one context object passed
 * explicitly to everything that needs shared state; main.c owns it.
 */
#ifndef EG_API_H
#define EG_API_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "engram/bus.h"
#include "engram/config.h"
#include "engram/db.h"
#include "engram/http.h"
#include "engram/obs.h"
#include "engram/sse.h"

struct eg_api_metrics;
struct eg_api_auth;
struct eg_api_rl;

struct eg_app {
    uv_loop_t *loop;
    const struct eg_config *cfg;
    struct eg_db_pool *db; /* NULL until created */
    struct eg_http_server *http;
    struct eg_db_seq *seq; /* the sequencer (this instance may or may not lead) */
    struct eg_sse_hub *sse;
    struct eg_redis *redis; /* NULL without REDIS_URL (the bus's when the bus is redis) */
    struct eg_bus *bus;     /* notices between instances (ENGRAM_BUS) */
    struct eg_net_tls *tls; /* NULL without ENGRAM_TLS_PORT */
    struct eg_api_metrics *metrics;
    struct eg_api_auth *auth; /* key cache and sweeps; NULL before start and after stop */
    struct eg_api_rl *rl;     /* rate limits; NULL when ENGRAM_RATE_LIMIT is 0 */
    bool is_draining;
    int schema_required;
    const char *version;
    const char *commit;
};

/** Allocates the metrics registry for app (freed by eg_api_fini). */
void eg_api_init(struct eg_app *app);
void eg_api_fini(struct eg_app *app);

/**
 * Starts API-key authentication when cfg->auth_enabled (the key cache and the revocation sweep
 * over app->db), or logs the loud warning that it is off. Call after app->db and app->sse exist.
 */
void eg_api_auth_start(struct eg_app *app);
/** Stops the sweep and frees the cache (its timer closes through the loop). Idempotent. */
void eg_api_auth_stop(struct eg_app *app);

/** The HTTP handler (eg_http_handler_fn): routes r and runs its handler. data is the app. */
void eg_api_handle(struct eg_http_req *r, void *data);
/** The HTTP done hook (eg_http_done_fn): access log line and request metrics. */
void eg_api_done(struct eg_http_req *r, void *data);

/* Handlers (src/api/<resource>.c). Each responds exactly once. */
void eg_api_health(struct eg_app *app, struct eg_http_req *r);
void eg_api_health_live(struct eg_app *app, struct eg_http_req *r);
void eg_api_health_ready(struct eg_app *app, struct eg_http_req *r);
void eg_api_metrics(struct eg_app *app, struct eg_http_req *r);

/** Renders every metric family into b (exposed for tests). */
int eg_api_metrics_render(struct eg_app *app, struct eg_buf *b);

#endif /* EG_API_H */
