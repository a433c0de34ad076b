/*
 * Authentication of API requests, the revocation sweep, CORS, and audit rows.
 *
 * A request's key is checked for format and checksum (no I/O), hashed (SHA-256), then looked up
 * in a bounded in-memory cache and, on a miss, with one indexed query through the async pool.
 * Every bad credential (missing, malformed, unknown, revoked, expired) gets the same 401.
 *
 * How fast a revocation takes effect everywhere (RELIABILITY.md §2.2 A3), without Redis:
 *   - a cached key is trusted for at most ENGRAM_AUTH_CACHE_TTL_MS (<= 1000 ms by config
 *     validation, default 500), after which the next request looks it up again; and
 *   - every instance runs a sweep every ENGRAM_AUTH_SWEEP_MS (default 250 ms): one indexed query
 *     for keys revoked or expired since its previous sweep (a watermark on the database's clock,
 *     so instance clocks do not matter). Each such key is dropped from the cache and its open
 *     SSE streams end, so streams, which are authenticated once, also end within the bound.
 * A notification channel (LISTEN or Redis pub/sub) would be faster but needs a dedicated
 * connection and a gap fill after every reconnect anyway; the poll is that gap fill, costs 4
 * cheap queries per second per instance, and keeps working whatever Redis does. The instance
 * that revokes a key applies it at once.
 */
#include "api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engram/auth.h"
#include "engram/sse.h"

#define CORS_ALLOW_METHODS "GET, POST, PATCH, DELETE"
#define CORS_ALLOW_HEADERS                                                                         \
    "Authorization, Content-Type, X-API-Key, X-Project-Id, X-Request-Id, Idempotency-Key, "        \
    "Last-Event-ID"
#define CORS_EXPOSE_HEADERS                                                                        \
    "Retry-After, WWW-Authenticate, X-Request-Id, RateLimit, RateLimit-Policy, "                   \
    "Idempotent-Replayed"
#define CORS_MAX_AGE "600"

struct eg_api_auth {
    struct eg_app *app;
    struct eg_auth_cache *cache;
    uv_timer_t sweep_timer;
    struct eg_db_query *sweep_q;
    struct eg_db_batch sweep_batch;
    struct eg_db_query *prune_q;
    struct eg_db_batch prune_batch;
    char prune_ttl[24];
    uint64_t ticks;
    char since[64]; /* the database's now() at the last sweep; "" before the first */
    bool has_since;
    bool is_closing;
};

/* ---- 401 and 403 -------------------------------------------------------------------------- */

static void respond_unauthorized(struct eg_http_req *r)
{
    static const char body[] =
        "{\"error\":\"unauthorized\",\"message\":\"A valid API key is required: send "
        "Authorization: Bearer <key> or x-api-key: <key>\"}";

    eg_http_add_header(r, "WWW-Authenticate", "Bearer");
    eg_http_respond_json(r, 401, body, sizeof(body) - 1);
}

void eg__api_forbidden_scope(struct eg_http_req *r, unsigned scope)
{
    char body[128];
    int n = snprintf(body, sizeof(body), "{\"error\":\"forbidden\",\"required_scope\":\"%s\"}",
                     eg_auth_scope_name(scope));

    eg_http_respond_json(r, 403, body, (size_t)n);
}

/* ---- credentials -------------------------------------------------------------------------- */

/* The presented key: the Bearer token, else x-api-key. NULL when neither header is usable. */
static const char *credential(struct eg_http_req *r, size_t *len)
{
    size_t n = 0;
    const char *v = eg_http_req_header(r, "authorization", &n);

    if (v != NULL) {
        if (n < 7 || !eg_ascii_caseeq(v, "bearer ", 7))
            return NULL;
        v += 7;
        n -= 7;
        while (n > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            n--;
        }
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
        *len = n;
        return v;
    }
    v = eg_http_req_header(r, "x-api-key", &n);
    if (v == NULL)
        return NULL;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    *len = n;
    return v;
}

struct auth_ctx {
    eg__api_authed_fn *fn;
    void *data;
    uint8_t hash[EG_AUTH_HASH_LEN];
    char hash_hex[EG_AUTH_HASH_HEX + 1];
    struct eg_db_batch batch;
};

static void on_lookup(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                      void *data)
{
    struct auth_ctx *ax = data;
    struct eg_auth_principal p;
    const PGresult *res;
    const char *scopes;
    long mask;
    uint8_t stored[EG_AUTH_HASH_LEN];

    if (eg__api_db_failed(r, rep))
        return;
    res = rep->nresults > 0 ? rep->results[0] : NULL;
    if (res == NULL || PQntuples(res) != 1 || PQgetlength(res, 0, 3) != EG_AUTH_HASH_HEX) {
        respond_unauthorized(r);
        return;
    }
    /* The index found the row by hash; compare again in constant time all the same. */
    for (size_t i = 0; i < EG_AUTH_HASH_LEN; i++) {
        char byte[3] = {PQgetvalue(res, 0, 3)[2 * i], PQgetvalue(res, 0, 3)[2 * i + 1], '\0'};

        stored[i] = (uint8_t)strtoul(byte, NULL, 16);
    }
    scopes = PQgetvalue(res, 0, 2);
    mask = eg_auth_scopes_parse(scopes, strlen(scopes));
    if (!eg_auth_ct_equal(stored, ax->hash, EG_AUTH_HASH_LEN) || mask < 0
        || PQgetlength(res, 0, 0) >= (int)sizeof(p.key_id)
        || PQgetlength(res, 0, 1) >= (int)sizeof(p.project)) {
        respond_unauthorized(r);
        return;
    }
    memset(&p, 0, sizeof(p));
    memcpy(p.key_id, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
    memcpy(p.project, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
    snprintf(p.prefix, sizeof(p.prefix), "%s", PQgetvalue(res, 0, 4));
    p.scopes = (unsigned)mask;
    p.expires_wall_ms = (int64_t)eg_db_get_ll(res, 0, 5, 0);
    if (app->auth != NULL && app->auth->cache != NULL)
        eg_auth_cache_put(app->auth->cache, ax->hash, &p, eg_mono_ns());
    if (eg__api_set_principal(r, &p) < 0) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    ax->fn(app, r, eg__api_principal(r), ax->data);
}

void eg__api_authenticate(struct eg_app *app, struct eg_http_req *r, eg__api_authed_fn *fn,
                          void *data)
{
    struct eg_auth_principal p;
    struct auth_ctx *ax;
    uint8_t hash[EG_AUTH_HASH_LEN];
    size_t n = 0;
    const char *key = credential(r, &n);

    if (key == NULL || eg_auth_key_check(key, n, NULL) < 0) {
        respond_unauthorized(r);
        return;
    }
    eg_auth_hash(key, n, hash);
    if (eg_auth_cache_get(app->auth->cache, hash, eg_mono_ns(), eg_wall_ms(), &p)) {
        if (eg__api_set_principal(r, &p) < 0) {
            eg_http_respond_error(r, 413, "payload_too_large");
            return;
        }
        fn(app, r, eg__api_principal(r), data);
        return;
    }
    /* A cache miss: the lookup's context, with its batch (13 kB), only now. */
    ax = eg_arena_alloc(&r->arena, sizeof(*ax));
    if (ax == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    ax->fn = fn;
    ax->data = data;
    memcpy(ax->hash, hash, sizeof(hash));
    eg_auth_hash_hex(ax->hash, ax->hash_hex);
    ax->batch.count = 0;
    eg_auth_batch_lookup(&ax->batch, ax->hash_hex);
    eg__api_db(app, r, &ax->batch, on_lookup, ax);
}

/* ---- revocation --------------------------------------------------------------------------- */

void eg__api_key_revoked(struct eg_app *app, const char *key_id)
{
    size_t ended = 0;

    if (app->auth == NULL || app->auth->cache == NULL)
        return;
    eg_auth_cache_drop_key(app->auth->cache, key_id);
    if (app->sse != NULL)
        ended = eg_sse_hub_end_key(app->sse, key_id);
    if (ended > 0)
        eg_log_fields(
            EG_LOG_INFO, "closed the event streams of a revoked or expired key",
            (struct eg_log_field[]){EG_LF_S("key_id", key_id), EG_LF_I("streams", (int64_t)ended)},
            2);
}

static void on_sweep(const struct eg_db_reply *rep, void *data)
{
    struct eg_api_auth *a = data;
    const PGresult *ids;
    const PGresult *now;

    a->sweep_q = NULL;
    if (rep->status != 0 || rep->nresults < 2)
        return; /* the next tick retries from the same watermark */
    ids = rep->results[0];
    now = rep->results[1];
    for (int i = 0; i < PQntuples(ids); i++)
        eg__api_key_revoked(a->app, PQgetvalue(ids, i, 0));
    if (PQntuples(now) == 1 && PQgetlength(now, 0, 0) < (int)sizeof(a->since)) {
        snprintf(a->since, sizeof(a->since), "%s", PQgetvalue(now, 0, 0));
        a->has_since = true;
    }
}

static void on_prune(const struct eg_db_reply *rep, void *data)
{
    struct eg_api_auth *a = data;

    (void)rep; /* the next round retries */
    a->prune_q = NULL;
}

/* About once a minute per instance: stored idempotent responses past their retention. */
static void maybe_prune(struct eg_api_auth *a, uint64_t interval_ms)
{
    if (++a->ticks % (60000 / interval_ms + 1) != 1 || a->prune_q != NULL)
        return;
    snprintf(a->prune_ttl, sizeof(a->prune_ttl), "%llu",
             (unsigned long long)a->app->cfg->idempotency_ttl_s);
    a->prune_batch.count = 0;
    eg__api_idem_batch_prune(&a->prune_batch, a->prune_ttl);
    a->prune_q = eg_db_submit(a->app->db, &a->prune_batch, on_prune, a);
}

static void on_sweep_timer(uv_timer_t *t)
{
    struct eg_api_auth *a = t->data;

    eg__api_rl_flush(a->app);
    if (a->app->db == NULL || !eg_db_pool_is_live(a->app->db))
        return;
    maybe_prune(a, a->app->cfg->auth_sweep_ms);
    if (a->cache == NULL || a->sweep_q != NULL)
        return;
    a->sweep_batch.count = 0;
    eg_auth_batch_sweep(&a->sweep_batch, a->has_since ? a->since : NULL);
    a->sweep_q = eg_db_submit(a->app->db, &a->sweep_batch, on_sweep, a);
}

void eg_api_auth_start(struct eg_app *app)
{
    struct eg_api_auth *a;

    if (!app->cfg->auth_enabled)
        eg_log(EG_LOG_WARN,
               "AUTHENTICATION IS OFF (ENGRAM_AUTH=off): every client can read and write every "
               "project. Use this for development only.");
    a = eg_calloc(1, sizeof(*a));
    a->app = app;
    if (app->rl == NULL)
        app->rl = eg__api_rl_new(app->cfg, app->redis);
    /* Without auth the timer only prunes idempotency records. */
    if (app->cfg->auth_enabled)
        a->cache = eg_auth_cache_new(app->cfg->auth_cache_size, app->cfg->auth_cache_ttl_ms);
    uv_timer_init(app->loop, &a->sweep_timer);
    a->sweep_timer.data = a;
    uv_timer_start(&a->sweep_timer, on_sweep_timer, app->cfg->auth_sweep_ms,
                   app->cfg->auth_sweep_ms);
    app->auth = a;
}

static void on_sweep_timer_closed(uv_handle_t *h)
{
    struct eg_api_auth *a = h->data;

    eg_auth_cache_free(a->cache);
    eg_free(a);
}

void eg_api_auth_stop(struct eg_app *app)
{
    struct eg_api_auth *a = app->auth;

    if (a == NULL || a->is_closing)
        return;
    a->is_closing = true;
    if (a->sweep_q != NULL)
        eg_db_query_cancel(a->sweep_q);
    if (a->prune_q != NULL)
        eg_db_query_cancel(a->prune_q);
    a->sweep_q = NULL;
    a->prune_q = NULL;
    uv_close((uv_handle_t *)&a->sweep_timer, on_sweep_timer_closed);
    app->auth = NULL;
}

/* ---- CORS --------------------------------------------------------------------------------- */

static bool origin_allowed(const char *list, const char *origin, size_t n)
{
    const char *p = list;

    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *s = p;

        while (len > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            len--;
        }
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if ((len == 1 && s[0] == '*') || (len == n && memcmp(s, origin, n) == 0))
            return true;
        if (end == NULL)
            break;
        p = end + 1;
    }
    return false;
}

bool eg__api_cors(struct eg_app *app, struct eg_http_req *r)
{
    const char *list = app->cfg->cors_origins;
    size_t n = 0;
    const char *origin;
    char *copy;
    bool allowed;
    bool preflight;

    if (list[0] == '\0')
        return false;
    /* Responses differ by Origin, so caches must key on it whether or not it was allowed. */
    eg_http_add_header(r, "Vary", "Origin");
    origin = eg_http_req_header(r, "origin", &n);
    preflight = r->method == HTTP_OPTIONS
                && eg_http_req_header(r, "access-control-request-method", NULL) != NULL;
    allowed = origin != NULL && n > 0 && n < 1024 && memchr(origin, '\r', n) == NULL
              && memchr(origin, '\n', n) == NULL && origin_allowed(list, origin, n);
    if (allowed) {
        copy = eg_arena_strndup(&r->arena, origin, n);
        if (copy == NULL) {
            eg_http_respond_error(r, 413, "payload_too_large");
            return true;
        }
        /* The origin is echoed (never "*"), so the answer is right for credentialed requests. */
        eg_http_add_header(r, "Access-Control-Allow-Origin", copy);
        if (!preflight)
            eg_http_add_header(r, "Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS);
    }
    if (!preflight)
        return false;
    if (!allowed) {
        eg__api_error_msg(r, 403, "forbidden", "origin not allowed");
        return true;
    }
    eg_http_add_header(r, "Access-Control-Allow-Methods", CORS_ALLOW_METHODS);
    eg_http_add_header(r, "Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
    eg_http_add_header(r, "Access-Control-Max-Age", CORS_MAX_AGE);
    eg_buf_reset(&r->resp_body);
    eg_http_respond(r, 204, NULL);
    return true;
}

/* ---- audit -------------------------------------------------------------------------------- */

struct eg__api_audit eg__api_audit(struct eg_http_req *r, const char *action)
{
    const char *key_id = eg__api_key_id(r);

    if (key_id == NULL)
        return (struct eg__api_audit){NULL, NULL, NULL};
    return (struct eg__api_audit){action, key_id, r->request_id};
}
