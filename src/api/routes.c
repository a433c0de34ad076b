/*
 * Routing: CORE's table in CORE's order (core-contract.md §2.3), engram's operational routes,
 * project resolution (§2.4), 404/405 (DECISIONS.md item 11), and the done hook that writes the
 * access log line and request metrics.
 */
#include "engram/api.h"

#include "api_int.h"

#include <stdio.h>
#include <string.h>

#include "engram/json.h"

enum route_id {
    R_HEALTH,
    R_HEALTH_LIVE,
    R_HEALTH_READY,
    R_METRICS,
    /* CORE's routes, in its matching order; everything from here needs a project */
    R_EVENTS,
    R_MEM_LIST,
    R_MEM_EXTRACT,
    R_MEM_SEARCH,
    R_MEM_SUPERSEDED,
    R_MEM_RECALLS,
    R_MEM_CLAIMS,
    R_MEM_RESTORE,
    R_MEM_GET,
    R_MEM_PATCH,
    R_MEM_DELETE,
    R_MEM_CREATE,
    R_CLAIM_CREATE,
    R_CLAIM_RETRACT,
    R_SUBJ_TRUTH,
    R_SUBJ_SLOT,
    R_SUBJ_SLOTS,
    R_SUBJ_GRAPH,
    R_SUBJ_HISTORY,
    R_CLAIM_GET,
    /* engram's key management (admin scope) */
    R_KEYS_LIST,
    R_KEYS_CREATE,
    R_KEYS_REVOKE,
    R_KEYS_ROTATE,
    R_COUNT,
};

#define FIRST_PROJECT_ROUTE R_EVENTS

static const struct eg_http_route routes[] = {
    {HTTP_GET, "/health", R_HEALTH},
    {HTTP_GET, "/health/live", R_HEALTH_LIVE},
    {HTTP_GET, "/health/ready", R_HEALTH_READY},
    {HTTP_GET, "/metrics", R_METRICS},
    {HTTP_GET, "/api/v1/events/memories", R_EVENTS},
    {HTTP_GET, "/api/v1/memories", R_MEM_LIST},
    {HTTP_POST, "/api/v1/memories/extract", R_MEM_EXTRACT},
    {HTTP_GET, "/api/v1/memories/search", R_MEM_SEARCH},
    {HTTP_GET, "/api/v1/memories/superseded", R_MEM_SUPERSEDED},
    {HTTP_GET, "/api/v1/memories/recalls", R_MEM_RECALLS},
    {HTTP_GET, "/api/v1/memories/{id}/claims", R_MEM_CLAIMS},
    {HTTP_POST, "/api/v1/memories/{id}/restore", R_MEM_RESTORE},
    {HTTP_GET, "/api/v1/memories/{id}", R_MEM_GET},
    {HTTP_PATCH, "/api/v1/memories/{id}", R_MEM_PATCH},
    {HTTP_DELETE, "/api/v1/memories/{id}", R_MEM_DELETE},
    {HTTP_POST, "/api/v1/memories", R_MEM_CREATE},
    {HTTP_POST, "/api/v1/claims", R_CLAIM_CREATE},
    {HTTP_POST, "/api/v1/claims/{id}/retract", R_CLAIM_RETRACT},
    {HTTP_GET, "/api/v1/claims/subject/{subjectId}/truth", R_SUBJ_TRUTH},
    {HTTP_GET, "/api/v1/claims/subject/{subjectId}/slot/{slot}", R_SUBJ_SLOT},
    {HTTP_GET, "/api/v1/claims/subject/{subjectId}/slots", R_SUBJ_SLOTS},
    {HTTP_GET, "/api/v1/claims/subject/{subjectId}/graph", R_SUBJ_GRAPH},
    {HTTP_GET, "/api/v1/claims/subject/{subjectId}/history", R_SUBJ_HISTORY},
    {HTTP_GET, "/api/v1/claims/{id}", R_CLAIM_GET},
    {HTTP_GET, "/admin/keys", R_KEYS_LIST},
    {HTTP_POST, "/admin/keys", R_KEYS_CREATE},
    {HTTP_POST, "/admin/keys/{id}/revoke", R_KEYS_REVOKE},
    {HTTP_POST, "/admin/keys/{id}/rotate", R_KEYS_ROTATE},
};

/*
 * The scope each route needs with auth on (docs/API.md has the table). Routes before
 * FIRST_PROJECT_ROUTE (health, metrics) are not authenticated. A memory's claims are claims data;
 * extract may store memories (and their derived claims) with learn, so it is a memory write.
 */
static const unsigned route_scopes[R_COUNT] = {
    [R_EVENTS] = EG_AUTH_EVENTS_READ,
    [R_MEM_LIST] = EG_AUTH_MEMORIES_READ,
    [R_MEM_EXTRACT] = EG_AUTH_MEMORIES_WRITE,
    [R_MEM_SEARCH] = EG_AUTH_MEMORIES_READ,
    [R_MEM_SUPERSEDED] = EG_AUTH_MEMORIES_READ,
    [R_MEM_RECALLS] = EG_AUTH_MEMORIES_READ,
    [R_MEM_CLAIMS] = EG_AUTH_CLAIMS_READ,
    [R_MEM_RESTORE] = EG_AUTH_MEMORIES_WRITE,
    [R_MEM_GET] = EG_AUTH_MEMORIES_READ,
    [R_MEM_PATCH] = EG_AUTH_MEMORIES_WRITE,
    [R_MEM_DELETE] = EG_AUTH_MEMORIES_WRITE,
    [R_MEM_CREATE] = EG_AUTH_MEMORIES_WRITE,
    [R_CLAIM_CREATE] = EG_AUTH_CLAIMS_WRITE,
    [R_CLAIM_RETRACT] = EG_AUTH_CLAIMS_WRITE,
    [R_SUBJ_TRUTH] = EG_AUTH_CLAIMS_READ,
    [R_SUBJ_SLOT] = EG_AUTH_CLAIMS_READ,
    [R_SUBJ_SLOTS] = EG_AUTH_CLAIMS_READ,
    [R_SUBJ_GRAPH] = EG_AUTH_CLAIMS_READ,
    [R_SUBJ_HISTORY] = EG_AUTH_CLAIMS_READ,
    [R_CLAIM_GET] = EG_AUTH_CLAIMS_READ,
    [R_KEYS_LIST] = EG_AUTH_ADMIN,
    [R_KEYS_CREATE] = EG_AUTH_ADMIN,
    [R_KEYS_REVOKE] = EG_AUTH_ADMIN,
    [R_KEYS_ROTATE] = EG_AUTH_ADMIN,
};

/* ---- request metrics ---------------------------------------------------------------------- */

#define METHOD_SLOTS 8
static const char *const method_labels[METHOD_SLOTS] = {"GET",    "HEAD", "POST",    "PATCH",
                                                        "DELETE", "PUT",  "OPTIONS", "OTHER"};
/* route index R_COUNT is "unmatched" (404/405 and malformed requests): never the raw path */
#define ROUTE_SLOTS (R_COUNT + 1)

struct status_count {
    int status;
    uint64_t count;
};

struct series {
    struct status_count *by_status;
    size_t nstatus;
    struct eg_hist hist;
    bool has_hist;
};

struct eg_api_metrics {
    struct series s[ROUTE_SLOTS][METHOD_SLOTS];
};

static int method_slot(int method)
{
    switch (method) {
    case HTTP_GET: return 0;
    case HTTP_HEAD: return 1;
    case HTTP_POST: return 2;
    case HTTP_PATCH: return 3;
    case HTTP_DELETE: return 4;
    case HTTP_PUT: return 5;
    case HTTP_OPTIONS: return 6;
    default: return 7;
    }
}

void eg_api_init(struct eg_app *app)
{
    app->metrics = eg_calloc(1, sizeof(*app->metrics));
}

void eg_api_fini(struct eg_app *app)
{
    struct eg_api_metrics *m = app->metrics;

    eg__api_rl_free(app->rl);
    app->rl = NULL;
    if (m == NULL)
        return;
    for (int r = 0; r < ROUTE_SLOTS; r++) {
        for (int k = 0; k < METHOD_SLOTS; k++) {
            eg_free(m->s[r][k].by_status);
            if (m->s[r][k].has_hist)
                eg_hist_fini(&m->s[r][k].hist);
        }
    }
    eg_free(m);
    app->metrics = NULL;
}

static const char *route_label(int route)
{
    return route >= 0 && route < R_COUNT ? routes[route].pattern : "unmatched";
}

static void observe(struct eg_app *app, int route, int method, int status, double secs)
{
    struct series *s =
        &app->metrics->s[route >= 0 && route < R_COUNT ? route : R_COUNT][method_slot(method)];
    size_t i;

    for (i = 0; i < s->nstatus && s->by_status[i].status != status; i++)
        ;
    if (i == s->nstatus) {
        /* Statuses are a small closed set (our own code chooses them), so this stays tiny. */
        s->by_status = eg_realloc(s->by_status, (s->nstatus + 1) * sizeof(*s->by_status));
        s->by_status[i].status = status;
        s->by_status[i].count = 0;
        s->nstatus++;
    }
    s->by_status[i].count++;
    if (!s->has_hist) {
        eg_hist_init(&s->hist, eg_hist_latency_bounds, eg_hist_latency_nb);
        s->has_hist = true;
    }
    eg_hist_observe(&s->hist, secs);
}

int eg_api_render_request_metrics(struct eg_app *app, struct eg_buf *b);

int eg_api_render_request_metrics(struct eg_app *app, struct eg_buf *b)
{
    struct eg_api_metrics *m = app->metrics;
    char labels[256];
    int rc;

    rc = eg_prom_header(b, "http_requests_total", "counter",
                        "HTTP requests answered, by method, route pattern and status.");
    for (int r = 0; r < ROUTE_SLOTS && rc == 0; r++) {
        for (int k = 0; k < METHOD_SLOTS && rc == 0; k++) {
            const struct series *s = &m->s[r][k];

            for (size_t i = 0; i < s->nstatus && rc == 0; i++) {
                snprintf(labels, sizeof(labels), "method=\"%s\",route=\"%s\",status=\"%d\"",
                         method_labels[k], route_label(r), s->by_status[i].status);
                rc =
                    eg_prom_sample(b, "http_requests_total", labels, (double)s->by_status[i].count);
            }
        }
    }
    if (rc == 0)
        rc = eg_prom_header(b, "http_request_duration_seconds", "histogram",
                            "Time from a request's first byte to its response being queued.");
    for (int r = 0; r < ROUTE_SLOTS && rc == 0; r++) {
        for (int k = 0; k < METHOD_SLOTS && rc == 0; k++) {
            const struct series *s = &m->s[r][k];

            if (!s->has_hist)
                continue;
            snprintf(labels, sizeof(labels), "method=\"%s\",route=\"%s\"", method_labels[k],
                     route_label(r));
            rc = eg_prom_hist(b, "http_request_duration_seconds", labels, &s->hist);
        }
    }
    return rc;
}

void eg_api_done(struct eg_http_req *r, void *data)
{
    struct eg_app *app = data;
    double secs = (double)(eg_mono_ns() - r->start_ns) / 1e9;
    const char *route = route_label(r->route_id);

    observe(app, r->route_id, r->method, r->status, secs);
    if (eg_log_enabled(EG_LOG_INFO)) {
        struct eg_log_field f[] = {
            EG_LF_S("request_id", r->request_id),
            EG_LF_S("method", r->method_name ? r->method_name : "-"),
            EG_LF_S("route", route),
            EG_LF_S("path", r->path),
            EG_LF_I("status", r->status),
            EG_LF_D("duration_ms", (double)(int64_t)(secs * 1e6) / 1e3),
            EG_LF_I("bytes", (int64_t)r->bytes_out),
            EG_LF_S("remote", r->conn != NULL ? eg_http_req_peer(r) : NULL),
        };

        eg_log_fields(EG_LOG_INFO, "request", f, EG_ARRAY_LEN(f));
    }
}

/* ---- dispatch ----------------------------------------------------------------------------- */

static void respond_not_found(struct eg_http_req *r)
{
    struct eg_buf *b = &r->resp_body;
    struct eg_jw jw;

    eg_buf_reset(b);
    eg_jw_init(&jw, b);
    eg_jw_obj_begin(&jw);
    eg_jw_key(&jw, "error");
    eg_jw_cstr(&jw, "not_found");
    eg_jw_key(&jw, "path");
    eg_jw_cstr(&jw, r->path);
    eg_jw_key(&jw, "method");
    eg_jw_cstr(&jw, r->method_name);
    eg_jw_obj_end(&jw);
    if (eg_jw_finish(&jw) < 0) {
        eg_http_respond_error(r, 500, "server_error");
        return;
    }
    eg_http_respond(r, 404, NULL);
}

/* Joins every x-project-id header as Node does (", "), trimmed; NULL when absent or empty. */
static const char *project_header(struct eg_http_req *r)
{
    struct eg_buf joined;
    const char *out = NULL;
    size_t start;
    size_t end;

    eg_buf_init(&joined, 64 * 1024);
    for (size_t i = 0; i < r->header_count; i++) {
        const struct eg_http_header *h = &r->headers[i];

        if (h->name_len == 12 && eg_ascii_caseeq(h->name, "x-project-id", 12)) {
            if (joined.len > 0)
                eg_buf_puts(&joined, ", ");
            eg_buf_append(&joined, h->value, h->value_len);
        }
    }
    start = 0;
    end = joined.len;
    while (start < end && (joined.base[start] == ' ' || joined.base[start] == '\t'))
        start++;
    while (end > start && (joined.base[end - 1] == ' ' || joined.base[end - 1] == '\t'))
        end--;
    if (end > start)
        out = eg_arena_strndup(&r->arena, joined.base + start, end - start);
    eg_buf_fini(&joined);
    return out;
}

/*
 * CORE's project resolution: x-project-id (Node joins repeated headers with ", "), else the
 * configured default; trimmed; empty is a 400. Returns the project id in the request's arena.
 */
static const char *resolve_project(struct eg_app *app, struct eg_http_req *r)
{
    const char *out = project_header(r);

    if (out == NULL && app->cfg->default_project_id[0] != '\0')
        out = app->cfg->default_project_id;
    return out;
}

/* What routing found, kept while the key is looked up. */
struct routed {
    enum eg_http_match m;
    const struct eg_http_route *route;
    char allow[128];
};

static void run_route(struct eg_app *app, struct eg_http_req *r, void *data);

/* Whom a request counts against: its API key, else its client address (arena; NULL at the cap). */
static const char *rate_subject(struct eg_http_req *r, const struct eg_auth_principal *p)
{
    const char *peer;
    const char *colon;
    char *out;

    if (p != NULL)
        return p->key_id;
    peer = eg_http_req_peer(r);
    if (peer == NULL)
        return NULL;
    colon = strrchr(peer, ':');
    out = eg_arena_alloc(&r->arena, strlen(peer) + 4);
    if (out == NULL)
        return NULL;
    snprintf(out, strlen(peer) + 4, "ip:%.*s",
             (int)(colon != NULL ? colon - peer : (long)strlen(peer)), peer);
    return out;
}

static void dispatch(struct eg_app *app, struct eg_http_req *r, const struct eg_auth_principal *p,
                     void *data)
{
    struct routed *rt = data;
    const struct eg_http_route *route = rt->route;
    const char *project;

    if (app->rl != NULL
        && !eg__api_rl_check(app, r, rate_subject(r, p),
                             route != NULL ? route_scopes[route->id] : 0))
        return;
    if (p != NULL) {
        /* The key's project is authoritative; naming another one is refused, not ignored. */
        const char *named = project_header(r);

        if (named != NULL && strcmp(named, p->project) != 0) {
            eg__api_error_msg(r, 403, "forbidden",
                              "x-project-id does not match the API key's project");
            return;
        }
        project = p->project;
    } else {
        project = resolve_project(app, r);
    }
    if (project == NULL) {
        static const char required[] =
            "{\"error\":\"project_id_required\",\"message\":\"Provide x-project-id header or "
            "configure defaultProjectId\"}";

        eg_http_respond_json(r, 400, required, sizeof(required) - 1);
        return;
    }
    if (rt->m == EG_HTTP_MATCH_NOT_FOUND) {
        respond_not_found(r);
        return;
    }
    if (rt->m == EG_HTTP_MATCH_BAD_METHOD) {
        eg_http_add_header(r, "Allow", rt->allow);
        eg_http_respond_error(r, 405, "method_not_allowed");
        return;
    }
    r->route_id = route->id;
    if (route->id >= R_KEYS_LIST && p == NULL) {
        /* Without auth there is no principal to manage keys as: use `engramd keys`. */
        eg__api_forbidden_scope(r, EG_AUTH_ADMIN);
        return;
    }
    if (p != NULL) {
        unsigned need = route_scopes[route->id];

        if (!eg_auth_scope_allows(p->scopes, need)) {
            eg__api_forbidden_scope(r, need);
            return;
        }
        /* Claim events on the stream are claims data too. */
        if (route->id == R_EVENTS && !eg_auth_scope_allows(p->scopes, EG_AUTH_CLAIMS_READ)) {
            const char *include = eg__api_query(r, "include", NULL);

            if (include != NULL && strcmp(include, "claims") == 0) {
                eg__api_forbidden_scope(r, EG_AUTH_CLAIMS_READ);
                return;
            }
        }
    }
    eg__api_set_project(r, project);
    if (eg__api_project(r) == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    /* Key management answers carry new key text, which must never be stored: no replays. */
    /* extract may call an LLM provider before it writes: a replay looks up first. */
    if (route->id < R_KEYS_LIST
        && eg__api_idem_begin(app, r, run_route, rt, route->id == R_MEM_EXTRACT))
        return;
    run_route(app, r, rt);
}

static void run_route(struct eg_app *app, struct eg_http_req *r, void *data)
{
    struct routed *rt = data;

    switch (rt->route->id) {
    case R_EVENTS: eg__api_events(app, r); break;
    case R_MEM_LIST: eg__api_mem_list(app, r); break;
    case R_MEM_EXTRACT: eg__api_mem_extract(app, r); break;
    case R_MEM_SEARCH: eg__api_mem_search(app, r); break;
    case R_MEM_SUPERSEDED: eg__api_mem_superseded(app, r); break;
    case R_MEM_RECALLS: eg__api_mem_recalls(app, r); break;
    case R_MEM_CLAIMS: eg__api_mem_claims(app, r); break;
    case R_MEM_RESTORE: eg__api_mem_restore(app, r); break;
    case R_MEM_GET: eg__api_mem_get(app, r); break;
    case R_MEM_PATCH: eg__api_mem_patch(app, r); break;
    case R_MEM_DELETE: eg__api_mem_delete(app, r); break;
    case R_MEM_CREATE: eg__api_mem_create(app, r); break;
    case R_CLAIM_CREATE: eg__api_claim_create(app, r); break;
    case R_CLAIM_RETRACT: eg__api_claim_retract(app, r); break;
    case R_SUBJ_TRUTH: eg__api_subj_truth(app, r); break;
    case R_SUBJ_SLOT: eg__api_subj_slot(app, r); break;
    case R_SUBJ_SLOTS: eg__api_subj_slots(app, r); break;
    case R_SUBJ_GRAPH: eg__api_subj_graph(app, r); break;
    case R_SUBJ_HISTORY: eg__api_subj_history(app, r); break;
    case R_CLAIM_GET: eg__api_claim_get(app, r); break;
    case R_KEYS_LIST: eg__api_keys_list(app, r); break;
    case R_KEYS_CREATE: eg__api_keys_create(app, r); break;
    case R_KEYS_REVOKE: eg__api_keys_revoke(app, r); break;
    case R_KEYS_ROTATE: eg__api_keys_rotate(app, r); break;
    default: eg_http_respond_error(r, 500, "server_error"); break;
    }
}

void eg_api_handle(struct eg_http_req *r, void *data)
{
    struct eg_app *app = data;
    const struct eg_http_route *route = NULL;
    struct routed *rt;
    char allow[128] = "";
    enum eg_http_match m;

    /* A preflight carries no credentials, so CORS comes before authentication. */
    if (eg__api_cors(app, r))
        return;
    m = eg_http_route_match(routes, EG_ARRAY_LEN(routes), r, &route, allow, sizeof(allow));
    if (m == EG_HTTP_MATCH_OK && route->id < FIRST_PROJECT_ROUTE) {
        r->route_id = route->id;
        switch (route->id) {
        case R_HEALTH: eg_api_health(app, r); return;
        case R_HEALTH_LIVE: eg_api_health_live(app, r); return;
        case R_HEALTH_READY: eg_api_health_ready(app, r); return;
        case R_METRICS: eg_api_metrics(app, r); return;
        default: break;
        }
    }
    rt = eg_arena_alloc(&r->arena, sizeof(*rt));
    if (rt == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    rt->m = m;
    rt->route = route;
    memcpy(rt->allow, allow, sizeof(allow));
    if (m == EG_HTTP_MATCH_OK)
        r->route_id = route->id; /* metrics and logs name the route even when auth refuses */
    if (!app->cfg->auth_enabled) {
        dispatch(app, r, NULL, rt);
        return;
    }
    if (app->auth == NULL) {
        /* Shutting down (the key cache is gone): never fall back to no authentication. */
        eg_http_add_header(r, "Retry-After", "1");
        eg_http_respond_error(r, 503, "service_unavailable");
        return;
    }
    /* With auth on, unknown paths answer 401 too: routes are not revealed to anonymous clients. */
    eg__api_authenticate(app, r, dispatch, rt);
}
