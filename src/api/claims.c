/*
 * Claims: POST /claims, retract, GET /claims/{id} and the subject views (truth, slot, slots,
 * graph, history), core-contract.md §5.14–§5.21 and §9.
 *
 * Every query filters by the request's project. Claim rows are selected with an explicit column
 * list in CORE's table order without `embedding`: the column does not exist when pgvector is
 * absent, and GET /claims/{id}, graph and history never show it (DECISIONS.md item 8).
 *
 * Writes emit engram's opt-in claim events (DECISIONS.md item 10) through event_outbox, in the
 * same transaction as the data and after it: `claim.created` then `slot.updated` for a new
 * claim, `claim.retracted` then `slot.updated` for a retraction.
 */
#include "api_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engram/ai.h"

/* The API form of a claim row (core-contract.md §3.2 minus embedding); prefix c. */
#define CLAIM_COLS                                                                                 \
    "c.claim_id, c.project_id, c.subject_id, c.predicate, c.object_value, c.slot, c.claim_type, "  \
    "c.confidence, c.importance, to_json(c.tags) AS tags, c.source_memory_id, "                    \
    "c.source_observation_id, c.subject_entity, c.status, c.asserted_at, c.updated_at, "           \
    "c.retracted_at, c.retract_reason, c.valid_from, c.valid_until"

#define EDGE_COLS                                                                                  \
    "e.edge_id, e.project_id, e.subject_id, e.from_claim_id, e.to_claim_id, e.edge_type, "         \
    "e.weight, e.reason_code, e.reason_text, e.created_at"

/* ---- shared helpers ----------------------------------------------------------------------- */

static struct eg_db_batch *batch_new(struct eg_http_req *r)
{
    struct eg_db_batch *b = eg_arena_alloc(&r->arena, sizeof(*b));

    if (b == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return NULL;
    }
    b->count = 0;
    return b;
}

/*
 * Path parameter i, decoded. PostgreSQL text cannot hold NUL, so an id or subject with %00 is
 * refused as invalid_text (DECISIONS.md item 2) rather than silently cut at the NUL.
 */
static const char *path_param(struct eg_http_req *r, size_t i)
{
    size_t n = 0;
    const char *p = eg__api_param(r, i, &n);

    if (p == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return NULL;
    }
    if (memchr(p, '\0', n) != NULL) {
        eg_http_respond_error(r, 400, "invalid_text");
        return NULL;
    }
    return p;
}

static char *fmt_long(struct eg_http_req *r, long v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%ld", v);

    return eg_arena_strndup(&r->arena, tmp, (size_t)n);
}

static void json_begin(struct eg_http_req *r, struct eg_jw *jw)
{
    eg_buf_reset(&r->resp_body);
    eg_jw_init(jw, &r->resp_body);
    eg_jw_obj_begin(jw);
}

/* Writes "name": <column name of row>; a missing column writes null. */
static void put_col(struct eg_jw *jw, const PGresult *res, int row, const char *key,
                    const char *col)
{
    int c = PQfnumber(res, col);

    eg_jw_key(jw, key);
    if (c < 0)
        eg_jw_null(jw);
    else
        eg__api_write_field(jw, res, row, c);
}

static const PGresult *result_at(const struct eg_db_reply *rep, size_t i)
{
    return i < rep->nresults ? rep->results[i] : NULL;
}

/*
 * Builds the JSON array of the claim ids in column 0 of res, the parameter of the chained edge
 * queries (graph, history). Returns arena text, or NULL at the arena ceiling.
 */
static const char *ids_json(struct eg_http_req *r, const PGresult *res)
{
    struct eg_buf b;
    struct eg_jw jw;
    int rows = PQntuples(res);
    char *out;

    eg_buf_init(&b, r->arena.max);
    eg_jw_init(&jw, &b);
    eg_jw_arr_begin(&jw);
    for (int i = 0; i < rows; i++)
        eg_jw_str(&jw, PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0));
    eg_jw_arr_end(&jw);
    out = eg_jw_finish(&jw) < 0 ? NULL : eg_arena_strndup(&r->arena, b.base, b.len);
    eg_buf_fini(&b);
    return out;
}

/* ---- POST /claims (§5.14, §9.1) ------------------------------------------------------------ */

/* JS String(v) when v is truthy, else NULL (CORE's `v || null` then node-postgres's text). */
static bool opt_string(struct eg_http_req *r, const json_t *v, const char **out)
{
    *out = NULL;
    if (!eg__api_truthy(v))
        return true;
    *out = eg__api_js_string_raw(&r->arena, v, NULL);
    return *out != NULL;
}

static void on_claim_created(struct eg_app *app, struct eg_http_req *r,
                             const struct eg_db_reply *rep, void *data)
{
    const PGresult *res = result_at(rep, 0);
    struct eg_jw jw;

    (void)app;
    (void)data;
    if (rep->status == EG_EDB) {
        /* DECISIONS.md item 2: specific 400/409 codes instead of CORE's 500. The timestamptz
         * casts of valid_from/valid_until are the only class-22 sources: every other value is
         * generated here or was validated as UTF-8 without NUL when the body was decoded. */
        if (strcmp(rep->sqlstate, "23505") == 0 && strstr(rep->message, "claims_pkey") != NULL) {
            eg_http_respond_error(r, 409, "claim_exists");
            return;
        }
        if (strncmp(rep->sqlstate, "22", 2) == 0) {
            eg_http_respond_error(r, 400, "invalid_date");
            return;
        }
    }
    if (eg__api_db_failed(r, rep))
        return;
    if (res == NULL || PQntuples(res) == 0) {
        /* Only a source_memory_id missing from this project stops the insert. */
        eg_http_respond_error(r, 400, "source_memory_not_found");
        return;
    }
    json_begin(r, &jw);
    for (int c = 0; c < PQnfields(res); c++) {
        eg_jw_key(&jw, PQfname(res, c));
        eg__api_write_field(&jw, res, 0, c);
    }
    eg_jw_key(&jw, "linking_triggered");
    eg_jw_bool(&jw, true); /* a constant in CORE */
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 201);
}

void eg__api_claim_create(struct eg_app *app, struct eg_http_req *r)
{
    const char *project = eg__api_project(r);
    json_t *body = eg__api_body(app, r);
    struct eg__api_claim_in in = {0};
    struct eg__api_audit audit;
    struct eg_db_batch *b;
    size_t pred_len = 0;
    size_t n = 0;
    bool ok;

    if (body == NULL)
        return;
    /* Validation order is CORE's: subject, predicate, object. */
    in.subject_id = eg__api_js_string(&r->arena, json_object_get(body, "subject_id"), &n);
    if (in.subject_id != NULL && n == 0) {
        eg_http_respond_error(r, 400, "subject_id_required");
        return;
    }
    in.predicate = eg__api_js_string(&r->arena, json_object_get(body, "predicate"), &pred_len);
    if (in.predicate != NULL && pred_len == 0) {
        eg_http_respond_error(r, 400, "predicate_required");
        return;
    }
    in.object_value = eg__api_js_string(&r->arena, json_object_get(body, "object_value"), &n);
    if (in.object_value != NULL && n == 0) {
        eg_http_respond_error(r, 400, "object_value_required");
        return;
    }
    ok = in.subject_id != NULL && in.predicate != NULL && in.object_value != NULL;

    if (ok && eg__api_truthy(json_object_get(body, "claim_id"))) {
        in.claim_id = eg__api_js_string_raw(&r->arena, json_object_get(body, "claim_id"), NULL);
    } else if (ok) {
        in.claim_id = eg__api_new_id(&r->arena, "clm_");
    }
    ok = ok && in.claim_id != NULL;
    ok = ok && opt_string(r, json_object_get(body, "slot"), &in.slot);
    if (ok && in.slot == NULL)
        in.slot = in.predicate;
    ok = ok && opt_string(r, json_object_get(body, "claim_type"), &in.claim_type);
    if (ok && in.claim_type == NULL)
        in.claim_type = eg_ai_infer_claim_type(in.predicate, pred_len);

    /* JS number text: PostgreSQL reads it back as the same double, and the claim.created
     * payload can embed it as is. */
    in.confidence = eg__api_num_text(
        &r->arena, eg__api_clamp_float(json_object_get(body, "confidence"), 0, 1, 0.8));
    in.importance = eg__api_num_text(
        &r->arena, eg__api_clamp_float(json_object_get(body, "importance"), 0, 1, 0.5));
    ok = ok && in.confidence != NULL && in.importance != NULL;
    if (ok) {
        in.tags_json = eg__api_tags_json(&r->arena, json_object_get(body, "tags"));
        ok = in.tags_json != NULL;
    }
    ok = ok && opt_string(r, json_object_get(body, "source_memory_id"), &in.source_memory_id);
    ok =
        ok
        && opt_string(r, json_object_get(body, "source_observation_id"), &in.source_observation_id);
    ok = ok && opt_string(r, json_object_get(body, "subject_entity"), &in.subject_entity);
    if (ok && in.subject_entity == NULL)
        in.subject_entity = "self";
    ok = ok && opt_string(r, json_object_get(body, "valid_from"), &in.valid_from);
    ok = ok && opt_string(r, json_object_get(body, "valid_until"), &in.valid_until);
    if (!ok) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }

    b = batch_new(r);
    if (b == NULL)
        return;
    audit = eg__api_audit(r, "claim.create");
    if (eg__api_batch_add_claim(b, &r->arena, project, &in, false) < 0
        || eg__api_batch_add_claim_events(b, in.claim_id, in.confidence, &audit) < 0) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    eg__api_db(app, r, b, on_claim_created, NULL);
}

/* ---- POST /claims/{id}/retract (§5.15) ----------------------------------------------------- */

/* The audit record ($4-$6) rides on claim.retracted, the first of the two rows. */
#define CLAIM_RETRACTED_AUDIT                                                                      \
    EG__API_OUTBOX_AUDIT_VALS("CASE x.n WHEN 1 THEN $4::text END",                                 \
                              "CASE x.n WHEN 1 THEN $5::text END",                                 \
                              "CASE x.n WHEN 1 THEN $6::text END", "claim", "c.claim_id")

/*
 * The whole retraction in one statement, so `previous` is chosen from the same snapshot that
 * writes slot_state and the edge: a separate statement would take a new snapshot (READ
 * COMMITTED) and could pick a different previous claim than the one the response reports.
 * The UPDATE takes the claim's row lock first; every later CTE reads from it, so the outbox rows
 * are written after that lock, as the event log's ordering requires.
 * Zero rows: the claim does not exist in this project.
 */
static struct eg_db_stmt st_claim_retract = {
    "claim_retract",
    "WITH c AS (UPDATE claims SET status = 'retracted', retracted_at = now(), "
    "retract_reason = $3 WHERE project_id = $1 AND claim_id = $2 "
    "RETURNING claim_id, subject_id, slot), "
    "prev AS (SELECT p.claim_id FROM claims p, c WHERE p.project_id = $1 "
    "AND p.subject_id = c.subject_id AND p.slot = c.slot AND p.status = 'active' "
    "AND p.claim_id <> c.claim_id ORDER BY p.asserted_at DESC LIMIT 1), "
    "ss AS (INSERT INTO slot_state (project_id, subject_id, slot, active_claim_id, status, "
    "replaced_by_claim_id, updated_at) "
    "SELECT $1, c.subject_id, c.slot, (SELECT claim_id FROM prev), "
    "CASE WHEN EXISTS (SELECT 1 FROM prev) THEN 'active' ELSE 'retracted' END, c.claim_id, now() "
    "FROM c ON CONFLICT (project_id, subject_id, slot) DO UPDATE SET "
    "active_claim_id = EXCLUDED.active_claim_id, status = EXCLUDED.status, "
    "replaced_by_claim_id = EXCLUDED.replaced_by_claim_id, updated_at = now() "
    "RETURNING active_claim_id, status), "
    "edge AS (INSERT INTO claim_edges (project_id, subject_id, from_claim_id, to_claim_id, "
    "edge_type, weight, reason_code, reason_text) "
    "SELECT $1, c.subject_id, c.claim_id, prev.claim_id, 'retracts', 1, 'manual_retraction', $3 "
    "FROM c, prev ON CONFLICT (project_id, from_claim_id, to_claim_id, edge_type) DO NOTHING "
    "RETURNING 1), "
    "ev AS (INSERT INTO event_outbox (project_id, subject_id, event_type, "
    "payload" EG__API_OUTBOX_AUDIT_COLS ") SELECT $1, c.subject_id, x.t, CASE x.n WHEN 1 THEN "
    "'{\"claim_id\":' || to_json(c.claim_id)::text || ',\"subject_id\":' || "
    "to_json(c.subject_id)::text || ',\"slot\":' || to_json(c.slot)::text || "
    "',\"previous_claim_id\":' || COALESCE(to_json((SELECT claim_id FROM prev))::text, 'null') "
    "|| ',\"reason\":' || to_json($3::text)::text || ',\"retracted_at\":\"' || eg_ts(now()) "
    "|| '\"}' ELSE "
    "'{\"subject_id\":' || to_json(c.subject_id)::text || ',\"slot\":' || "
    "to_json(c.slot)::text || ',\"active_claim_id\":' || "
    "COALESCE(to_json(s.active_claim_id)::text, 'null') || ',\"status\":' || "
    "to_json(s.status)::text || '}' END" CLAIM_RETRACTED_AUDIT
    " FROM c CROSS JOIN ss s CROSS JOIN (VALUES (1, 'claim.retracted'), (2, 'slot.updated')) "
    "AS x(n, t) ORDER BY x.n RETURNING 1) "
    "SELECT c.claim_id, c.slot, (SELECT claim_id FROM prev) AS previous_claim_id, "
    "EXISTS (SELECT 1 FROM prev) AS restored_previous FROM c",
    6,
    0,
};

struct retract_ctx {
    const char *reason;
};

static void on_claim_retracted(struct eg_app *app, struct eg_http_req *r,
                               const struct eg_db_reply *rep, void *data)
{
    struct retract_ctx *ctx = data;
    const PGresult *res = result_at(rep, 0);
    struct eg_jw jw;

    (void)app;
    if (eg__api_db_failed(r, rep))
        return;
    if (res == NULL || PQntuples(res) == 0) {
        eg_http_respond_error(r, 404, "claim_not_found");
        return;
    }
    json_begin(r, &jw);
    eg_jw_key(&jw, "success");
    eg_jw_bool(&jw, true);
    put_col(&jw, res, 0, "claim_id", "claim_id");
    put_col(&jw, res, 0, "slot", "slot");
    put_col(&jw, res, 0, "previous_claim_id", "previous_claim_id");
    put_col(&jw, res, 0, "restored_previous", "restored_previous");
    eg_jw_key(&jw, "reason");
    eg_jw_cstr(&jw, ctx->reason);
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 200);
}

void eg__api_claim_retract(struct eg_app *app, struct eg_http_req *r)
{
    const char *project = eg__api_project(r);
    const char *id = path_param(r, 0);
    struct retract_ctx *ctx;
    struct eg__api_audit audit;
    struct eg_db_batch *b;
    json_t *body;
    json_t *reason;

    if (id == NULL)
        return;
    body = eg__api_body_lenient(app, r);
    if (body == NULL)
        return;
    ctx = eg_arena_alloc(&r->arena, sizeof(*ctx));
    if (ctx == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    /* String(body.reason || "manual_retraction"): not trimmed, 7 -> "7". */
    reason = json_object_get(body, "reason");
    ctx->reason = eg__api_truthy(reason) ? eg__api_js_string_raw(&r->arena, reason, NULL)
                                         : "manual_retraction";
    b = batch_new(r);
    if (b == NULL)
        return;
    audit = eg__api_audit(r, "claim.retract");
    if (ctx->reason == NULL
        || eg_db_batch_add(b, &st_claim_retract,
                           (const char *[]){project, id, ctx->reason, audit.action, audit.key_id,
                                            audit.request_id})
               < 0) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    eg__api_db(app, r, b, on_claim_retracted, ctx);
}

/* ---- GET /claims/{id} (§5.21) -------------------------------------------------------------- */

static struct eg_db_stmt st_claim_get = {
    "claim_get",
    "SELECT " CLAIM_COLS " FROM claims c WHERE c.project_id = $1 AND c.claim_id = $2",
    2,
    0,
};

static struct eg_db_stmt st_claim_assertions = {
    "claim_get_assertions",
    "SELECT a.assertion_id, a.project_id, a.subject_id, a.claim_id, a.memory_id, a.predicate, "
    "a.object_type, a.value_string, a.value_number, a.value_date, a.value_json, a.confidence, "
    "a.status, a.first_seen_at, a.last_seen_at FROM claim_assertions a "
    "WHERE a.project_id = $1 AND a.claim_id = $2 ORDER BY a.last_seen_at DESC",
    2,
    0,
};

static struct eg_db_stmt st_claim_edges = {
    "claim_get_edges",
    "SELECT " EDGE_COLS " FROM claim_edges e WHERE e.project_id = $1 "
    "AND (e.from_claim_id = $2 OR e.to_claim_id = $2) ORDER BY e.created_at DESC, e.edge_id DESC",
    2,
    0,
};

static void on_claim_get(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                         void *data)
{
    const PGresult *claim = result_at(rep, 0);
    const PGresult *edges = result_at(rep, 2);
    struct eg_jw jw;
    int type_col;

    (void)app;
    (void)data;
    if (eg__api_db_failed(r, rep))
        return;
    if (claim == NULL || PQntuples(claim) == 0 || edges == NULL) {
        eg_http_respond_error(r, 404, "claim_not_found");
        return;
    }
    json_begin(r, &jw);
    eg_jw_key(&jw, "claim");
    eg__api_write_row(&jw, claim, 0, NULL);
    eg_jw_key(&jw, "assertions");
    eg__api_write_rows(&jw, result_at(rep, 1), NULL);
    eg_jw_key(&jw, "edges");
    eg__api_write_rows(&jw, edges, NULL);
    /* CORE filters the edges it just read; nothing writes supersedes edges, so this is [] unless
     * a tool wrote some directly. */
    eg_jw_key(&jw, "supersession_chain");
    eg_jw_arr_begin(&jw);
    type_col = PQfnumber(edges, "edge_type");
    for (int i = 0; i < PQntuples(edges); i++) {
        if (strcmp(PQgetvalue(edges, i, type_col), "supersedes") == 0)
            eg__api_write_row(&jw, edges, i, NULL);
    }
    eg_jw_arr_end(&jw);
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 200);
}

void eg__api_claim_get(struct eg_app *app, struct eg_http_req *r)
{
    const char *project = eg__api_project(r);
    const char *id = path_param(r, 0);
    const char *v[2] = {project, id};
    struct eg_db_batch *b;

    if (id == NULL)
        return;
    b = batch_new(r);
    if (b == NULL)
        return;
    eg_db_batch_add(b, &st_claim_get, v);
    eg_db_batch_add(b, &st_claim_assertions, v);
    eg_db_batch_add(b, &st_claim_edges, v);
    eg__api_db(app, r, b, on_claim_get, NULL);
}

/* ---- subject views ------------------------------------------------------------------------- */

/* What the subject handlers keep for their response. */
struct subj_ctx {
    const char *project;
    const char *subject;
    const char *slot;  /* slot route: the path slot; history: the filter or NULL */
    const char *limit; /* history, graph: for the chained edge query */
    bool include_source;
};

static struct subj_ctx *subj_ctx_new(struct eg_http_req *r)
{
    struct subj_ctx *ctx = eg_arena_alloc(&r->arena, sizeof(*ctx));

    if (ctx == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return NULL;
    }
    memset(ctx, 0, sizeof(*ctx));
    ctx->project = eg__api_project(r);
    ctx->subject = path_param(r, 0);
    return ctx->subject != NULL ? ctx : NULL;
}

/* Runs stmt with values (copied into the batch; the strings must be arena memory). */
static void subj_query(struct eg_app *app, struct eg_http_req *r, const struct eg_db_stmt *stmt,
                       const char *const *values, eg__api_db_fn *fn, void *data)
{
    struct eg_db_batch *b = batch_new(r);

    if (b == NULL)
        return;
    eg_db_batch_add(b, stmt, values);
    eg__api_db(app, r, b, fn, data);
}

/* truth and slot: the active claim of each active slot (§5.16, §5.17). */
#define TRUTH_SQL                                                                                  \
    "SELECT ss.slot, ss.active_claim_id, c.predicate, c.object_value, c.claim_type, "              \
    "c.confidence, to_json(COALESCE(c.tags, '{}')) AS tags, ss.updated_at, c.source_memory_id, "   \
    "c.source_observation_id FROM slot_state ss JOIN claims c ON c.project_id = ss.project_id "    \
    "AND c.claim_id = ss.active_claim_id WHERE ss.project_id = $1 AND ss.subject_id = $2 "         \
    "AND ss.status = 'active' AND c.status = 'active'"

static struct eg_db_stmt st_subj_truth = {
    "subj_truth",
    TRUTH_SQL " ORDER BY ss.updated_at DESC, ss.slot",
    2,
    0,
};

static struct eg_db_stmt st_subj_slot = {
    "subj_slot",
    TRUTH_SQL " AND ss.slot = $3 LIMIT 1",
    3,
    0,
};

static void put_source(struct eg_jw *jw, const PGresult *res, int row)
{
    eg_jw_key(jw, "source");
    eg_jw_obj_begin(jw);
    put_col(jw, res, row, "memory_id", "source_memory_id");
    put_col(jw, res, row, "observation_id", "source_observation_id");
    eg_jw_obj_end(jw);
}

static void on_subj_truth(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                          void *data)
{
    static const char *const no_source[] = {"source_memory_id", "source_observation_id", NULL};
    struct subj_ctx *ctx = data;
    const PGresult *res = result_at(rep, 0);
    struct eg_jw jw;
    int rows;

    (void)app;
    if (eg__api_db_failed(r, rep))
        return;
    rows = res != NULL ? PQntuples(res) : 0;
    json_begin(r, &jw);
    eg_jw_key(&jw, "subject_id");
    eg_jw_cstr(&jw, ctx->subject);
    eg_jw_key(&jw, "project_id");
    eg_jw_cstr(&jw, ctx->project);
    eg_jw_key(&jw, "slot_count");
    eg_jw_int(&jw, rows);
    eg_jw_key(&jw, "slots");
    eg_jw_arr_begin(&jw);
    for (int i = 0; i < rows; i++) {
        if (!ctx->include_source) {
            eg__api_write_row(&jw, res, i, no_source);
            continue;
        }
        /* CORE keeps the flat source fields and appends the nested object too. */
        eg_jw_obj_begin(&jw);
        for (int c = 0; c < PQnfields(res); c++) {
            eg_jw_key(&jw, PQfname(res, c));
            eg__api_write_field(&jw, res, i, c);
        }
        put_source(&jw, res, i);
        eg_jw_obj_end(&jw);
    }
    eg_jw_arr_end(&jw);
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 200);
}

void eg__api_subj_truth(struct eg_app *app, struct eg_http_req *r)
{
    struct subj_ctx *ctx = subj_ctx_new(r);

    if (ctx == NULL)
        return;
    ctx->include_source = eg__api_query_bool(r, "include_source", true);
    subj_query(app, r, &st_subj_truth, (const char *[]){ctx->project, ctx->subject}, on_subj_truth,
               ctx);
}

static void on_subj_slot(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                         void *data)
{
    struct subj_ctx *ctx = data;
    const PGresult *res = result_at(rep, 0);
    struct eg_jw jw;

    (void)app;
    if (eg__api_db_failed(r, rep))
        return;
    json_begin(r, &jw);
    if (res == NULL || PQntuples(res) == 0) {
        eg_jw_key(&jw, "error");
        eg_jw_cstr(&jw, "slot_not_found");
        eg_jw_key(&jw, "subject_id");
        eg_jw_cstr(&jw, ctx->subject);
        eg_jw_key(&jw, "slot");
        eg_jw_cstr(&jw, ctx->slot);
        eg_jw_obj_end(&jw);
        eg__api_send(r, &jw, 404);
        return;
    }
    eg_jw_key(&jw, "subject_id");
    eg_jw_cstr(&jw, ctx->subject);
    eg_jw_key(&jw, "project_id");
    eg_jw_cstr(&jw, ctx->project);
    put_col(&jw, res, 0, "slot", "slot");
    put_col(&jw, res, 0, "active_claim_id", "active_claim_id");
    put_col(&jw, res, 0, "predicate", "predicate");
    put_col(&jw, res, 0, "object_value", "object_value");
    put_col(&jw, res, 0, "claim_type", "claim_type");
    put_col(&jw, res, 0, "confidence", "confidence");
    put_col(&jw, res, 0, "updated_at", "updated_at");
    put_col(&jw, res, 0, "tags", "tags");
    put_source(&jw, res, 0);
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 200);
}

void eg__api_subj_slot(struct eg_app *app, struct eg_http_req *r)
{
    struct subj_ctx *ctx = subj_ctx_new(r);

    if (ctx == NULL)
        return;
    ctx->slot = path_param(r, 1);
    if (ctx->slot == NULL)
        return;
    subj_query(app, r, &st_subj_slot, (const char *[]){ctx->project, ctx->subject, ctx->slot},
               on_subj_slot, ctx);
}

/* slots: every slot_state row whatever its status, its active claim if any (§5.18). */
static struct eg_db_stmt st_subj_slots = {
    "subj_slots",
    "SELECT ss.slot, ss.active_claim_id, COALESCE(c.predicate, '') AS predicate, "
    "COALESCE(c.object_value, '') AS object_value, COALESCE(c.claim_type, '') AS claim_type, "
    "COALESCE(c.confidence, 0) AS confidence, to_json(COALESCE(c.tags, '{}')) AS tags, "
    "ss.updated_at, c.source_memory_id, c.source_observation_id, ss.status "
    "FROM slot_state ss LEFT JOIN claims c ON c.project_id = ss.project_id "
    "AND c.claim_id = ss.active_claim_id WHERE ss.project_id = $1 AND ss.subject_id = $2 "
    "ORDER BY ss.updated_at DESC, ss.slot LIMIT $3::int",
    3,
    0,
};

static void slots_bucket(struct eg_jw *jw, const PGresult *res, const char *name,
                         const char *status)
{
    int col = PQfnumber(res, "status");

    eg_jw_key(jw, name);
    eg_jw_arr_begin(jw);
    for (int i = 0; i < PQntuples(res); i++) {
        const char *s = PQgetvalue(res, i, col);
        bool is_known = strcmp(s, "active") == 0 || strcmp(s, "superseded") == 0;

        if (status != NULL ? strcmp(s, status) == 0 : !is_known)
            eg__api_write_row(jw, res, i, NULL);
    }
    eg_jw_arr_end(jw);
}

static void on_subj_slots(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                          void *data)
{
    struct subj_ctx *ctx = data;
    const PGresult *res = result_at(rep, 0);
    struct eg_jw jw;
    int active = 0;
    int col;

    (void)app;
    if (eg__api_db_failed(r, rep))
        return;
    if (res == NULL) {
        eg_http_respond_error(r, 500, "server_error");
        return;
    }
    col = PQfnumber(res, "status");
    for (int i = 0; i < PQntuples(res); i++)
        active += strcmp(PQgetvalue(res, i, col), "active") == 0;
    json_begin(r, &jw);
    eg_jw_key(&jw, "subject_id");
    eg_jw_cstr(&jw, ctx->subject);
    eg_jw_key(&jw, "total");
    eg_jw_int(&jw, PQntuples(res));
    eg_jw_key(&jw, "active_count");
    eg_jw_int(&jw, active);
    eg_jw_key(&jw, "slots");
    eg_jw_obj_begin(&jw);
    slots_bucket(&jw, res, "active", "active");
    slots_bucket(&jw, res, "superseded", "superseded");
    slots_bucket(&jw, res, "other", NULL);
    eg_jw_obj_end(&jw);
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 200);
}

void eg__api_subj_slots(struct eg_app *app, struct eg_http_req *r)
{
    struct subj_ctx *ctx = subj_ctx_new(r);

    if (ctx == NULL)
        return;
    ctx->limit = fmt_long(r, eg__api_query_int(r, "limit", 100, 1, 500));
    if (ctx->limit == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    subj_query(app, r, &st_subj_slots, (const char *[]){ctx->project, ctx->subject, ctx->limit},
               on_subj_slots, ctx);
}

/*
 * graph and history read the claims first, then the edges touching exactly those claims (as
 * CORE does, in a second query). Passing the ids, rather than repeating the claim query inside
 * the edge query, keeps the edges consistent with the claims returned even when claims are
 * written in between.
 */
static struct eg_db_stmt st_subj_graph_claims = {
    "subj_graph_claims",
    "SELECT " CLAIM_COLS " FROM claims c WHERE c.project_id = $1 AND c.subject_id = $2 "
    "ORDER BY c.asserted_at DESC, c.claim_id LIMIT $3::int",
    3,
    0,
};

static struct eg_db_stmt st_subj_graph_edges = {
    "subj_graph_edges",
    "SELECT " EDGE_COLS " FROM claim_edges e WHERE e.project_id = $1 "
    "AND (e.from_claim_id IN (SELECT json_array_elements_text($2::json)) "
    "OR e.to_claim_id IN (SELECT json_array_elements_text($2::json))) "
    "ORDER BY e.created_at DESC, e.edge_id DESC",
    2,
    0,
};

static struct eg_db_stmt st_subj_history_claims = {
    "subj_history_claims",
    "SELECT " CLAIM_COLS " FROM claims c WHERE c.project_id = $1 AND c.subject_id = $2 "
    "AND ($3::text IS NULL OR c.slot = $3) "
    "ORDER BY c.asserted_at DESC, c.claim_id LIMIT $4::int",
    4,
    0,
};

static struct eg_db_stmt st_subj_history_edges = {
    "subj_history_edges",
    "SELECT " EDGE_COLS " FROM claim_edges e WHERE e.project_id = $1 "
    "AND e.edge_type = 'supersedes' "
    "AND (e.from_claim_id IN (SELECT json_array_elements_text($2::json)) "
    "OR e.to_claim_id IN (SELECT json_array_elements_text($2::json))) "
    "ORDER BY e.created_at DESC, e.edge_id DESC",
    2,
    0,
};

/* State carried from the claim query to the edge query. */
struct graph_ctx {
    struct subj_ctx *subj;
    PGresult *claims; /* a copy: the reply's results are freed after its callback */
};

static void on_graph_cleanup(void *data)
{
    struct graph_ctx *g = data;

    if (g->claims != NULL)
        PQclear(g->claims);
}

struct type_count {
    const char *name;
    int64_t count;
};

static void graph_write(struct eg_http_req *r, struct graph_ctx *g, const PGresult *edges)
{
    const PGresult *claims = g->claims;
    int n_edges = edges != NULL ? PQntuples(edges) : 0;
    int type_col = edges != NULL ? PQfnumber(edges, "edge_type") : -1;
    struct type_count *types = NULL;
    size_t n_types = 0;
    struct eg_jw jw;

    /* Distinct types are few (five by the CHECK constraint), so a linear lookup is enough. */
    if (n_edges > 0) {
        types = eg_arena_alloc(&r->arena, (size_t)n_edges * sizeof(*types));
        if (types == NULL) {
            eg_http_respond_error(r, 413, "payload_too_large");
            return;
        }
    }
    for (int i = 0; i < n_edges; i++) {
        const char *t = PQgetvalue(edges, i, type_col);
        size_t k = 0;

        while (k < n_types && strcmp(types[k].name, t) != 0)
            k++;
        if (k == n_types) {
            types[n_types].name = t;
            types[n_types].count = 0;
            n_types++;
        }
        types[k].count++;
    }

    json_begin(r, &jw);
    eg_jw_key(&jw, "subject_id");
    eg_jw_cstr(&jw, g->subj->subject);
    eg_jw_key(&jw, "claims_count");
    eg_jw_int(&jw, PQntuples(claims));
    eg_jw_key(&jw, "edges_count");
    eg_jw_int(&jw, n_edges);
    /* Keys in the order each type first appears in the edge list (a JS object's insertion
     * order; the CHECK constraint limits edge types to the five names above, none of them an
     * array index, so no numeric key reordering applies). */
    eg_jw_key(&jw, "edges_by_type");
    eg_jw_obj_begin(&jw);
    for (size_t k = 0; k < n_types; k++) {
        eg_jw_key(&jw, types[k].name);
        eg_jw_int(&jw, types[k].count);
    }
    eg_jw_obj_end(&jw);
    eg_jw_key(&jw, "claims");
    eg__api_write_rows(&jw, claims, NULL);
    eg_jw_key(&jw, "edges");
    eg__api_write_rows(&jw, edges, NULL);
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 200);
}

/*
 * True when key is a JS array index ("0", "7", "4294967294"; no sign, no leading zero): JS
 * objects enumerate such keys first, in ascending numeric order, before the other keys in
 * insertion order, and JSON.stringify follows that order.
 */
static bool is_array_index(const char *key, unsigned long long *out)
{
    size_t n = strlen(key);
    unsigned long long v = 0;

    if (n == 0 || n > 10 || (key[0] == '0' && n > 1))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (key[i] < '0' || key[i] > '9')
            return false;
        v = v * 10 + (unsigned long long)(key[i] - '0');
    }
    if (v >= 4294967295ULL)
        return false;
    *out = v;
    return true;
}

static const char *slot_key(const PGresult *res, int row, int col)
{
    const char *s = PQgetvalue(res, row, col);

    return s[0] != '\0' ? s : "_unknown"; /* CORE: c.slot || "_unknown" */
}

struct slot_key {
    const char *key;
    int first_row;
    bool is_index;
    unsigned long long index;
};

static int cmp_slot_key(const void *a, const void *b)
{
    const struct slot_key *x = a;
    const struct slot_key *y = b;

    if (x->is_index != y->is_index)
        return x->is_index ? -1 : 1;
    if (x->is_index)
        return x->index < y->index ? -1 : x->index > y->index ? 1 : 0;
    return x->first_row - y->first_row;
}

static void history_write(struct eg_http_req *r, struct graph_ctx *g, const PGresult *edges)
{
    const PGresult *claims = g->claims;
    int rows = PQntuples(claims);
    int slot_col = PQfnumber(claims, "slot");
    struct slot_key *keys = NULL;
    size_t n_keys = 0;
    struct eg_jw jw;

    if (rows > 0) {
        keys = eg_arena_alloc(&r->arena, (size_t)rows * sizeof(*keys));
        if (keys == NULL) {
            eg_http_respond_error(r, 413, "payload_too_large");
            return;
        }
    }
    for (int i = 0; i < rows; i++) {
        const char *k = slot_key(claims, i, slot_col);
        bool is_seen = false;

        for (size_t j = 0; j < n_keys && !is_seen; j++)
            is_seen = strcmp(keys[j].key, k) == 0;
        if (is_seen)
            continue;
        keys[n_keys].key = k;
        keys[n_keys].first_row = i;
        keys[n_keys].is_index = is_array_index(k, &keys[n_keys].index);
        n_keys++;
    }
    if (n_keys > 1)
        qsort(keys, n_keys, sizeof(*keys), cmp_slot_key);

    json_begin(r, &jw);
    eg_jw_key(&jw, "subject_id");
    eg_jw_cstr(&jw, g->subj->subject);
    eg_jw_key(&jw, "project_id");
    eg_jw_cstr(&jw, g->subj->project);
    eg_jw_key(&jw, "slot_filter");
    eg_jw_cstr(&jw, g->subj->slot);
    eg_jw_key(&jw, "by_slot");
    eg_jw_obj_begin(&jw);
    for (size_t j = 0; j < n_keys; j++) {
        eg_jw_key(&jw, keys[j].key);
        eg_jw_arr_begin(&jw);
        for (int i = keys[j].first_row; i < rows; i++) {
            if (strcmp(slot_key(claims, i, slot_col), keys[j].key) == 0)
                eg__api_write_row(&jw, claims, i, NULL);
        }
        eg_jw_arr_end(&jw);
    }
    eg_jw_obj_end(&jw);
    eg_jw_key(&jw, "edges");
    eg__api_write_rows(&jw, edges, NULL);
    eg_jw_key(&jw, "total_claims");
    eg_jw_int(&jw, rows);
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 200);
}

static void on_graph_edges(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                           void *data)
{
    (void)app;
    if (eg__api_db_failed(r, rep))
        return;
    graph_write(r, data, result_at(rep, 0));
}

static void on_history_edges(struct eg_app *app, struct eg_http_req *r,
                             const struct eg_db_reply *rep, void *data)
{
    (void)app;
    if (eg__api_db_failed(r, rep))
        return;
    history_write(r, data, result_at(rep, 0));
}

/* Claims are in: keep a copy, then ask for their edges (none to ask for when there are none). */
static void on_claims_read(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                           void *data, bool is_history)
{
    struct subj_ctx *ctx = data;
    const PGresult *res = result_at(rep, 0);
    struct graph_ctx *g;
    const char *ids;

    if (eg__api_db_failed(r, rep))
        return;
    g = eg_arena_alloc(&r->arena, sizeof(*g));
    if (res == NULL || g == NULL) {
        eg_http_respond_error(r, res == NULL ? 500 : 413,
                              res == NULL ? "server_error" : "payload_too_large");
        return;
    }
    g->subj = ctx;
    g->claims = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
    if (g->claims == NULL || eg_arena_defer(&r->arena, on_graph_cleanup, g) < 0) {
        if (g->claims != NULL)
            PQclear(g->claims);
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    if (PQntuples(g->claims) == 0) {
        if (is_history)
            history_write(r, g, NULL);
        else
            graph_write(r, g, NULL);
        return;
    }
    ids = ids_json(r, g->claims);
    if (ids == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    subj_query(app, r, is_history ? &st_subj_history_edges : &st_subj_graph_edges,
               (const char *[]){ctx->project, ids}, is_history ? on_history_edges : on_graph_edges,
               g);
}

static void on_graph_claims(struct eg_app *app, struct eg_http_req *r,
                            const struct eg_db_reply *rep, void *data)
{
    on_claims_read(app, r, rep, data, false);
}

static void on_history_claims(struct eg_app *app, struct eg_http_req *r,
                              const struct eg_db_reply *rep, void *data)
{
    on_claims_read(app, r, rep, data, true);
}

void eg__api_subj_graph(struct eg_app *app, struct eg_http_req *r)
{
    struct subj_ctx *ctx = subj_ctx_new(r);

    if (ctx == NULL)
        return;
    ctx->limit = fmt_long(r, eg__api_query_int(r, "limit", 50, 1, 200));
    if (ctx->limit == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    subj_query(app, r, &st_subj_graph_claims,
               (const char *[]){ctx->project, ctx->subject, ctx->limit}, on_graph_claims, ctx);
}

void eg__api_subj_history(struct eg_app *app, struct eg_http_req *r)
{
    struct subj_ctx *ctx = subj_ctx_new(r);
    const char *slot;
    size_t n = 0;

    if (ctx == NULL)
        return;
    slot = eg__api_query(r, "slot", &n);
    if (slot != NULL) {
        slot = eg__api_trim(slot, &n);
        if (memchr(slot, '\0', n) != NULL || !eg_utf8_valid(slot, n)) {
            eg_http_respond_error(r, 400, "invalid_text"); /* DECISIONS.md item 2 */
            return;
        }
        ctx->slot = n > 0 ? eg_arena_strndup(&r->arena, slot, n) : NULL;
    }
    ctx->limit = fmt_long(r, eg__api_query_int(r, "limit", 100, 1, 500));
    if (ctx->limit == NULL || (n > 0 && ctx->slot == NULL)) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    subj_query(app, r, &st_subj_history_claims,
               (const char *[]){ctx->project, ctx->subject, ctx->slot, ctx->limit},
               on_history_claims, ctx);
}
