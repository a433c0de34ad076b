/*
 * Memory writes: create, patch, soft delete, restore, extract (core-contract.md §5.4, §5.5,
 * §5.10, §5.12, §5.13, with DECISIONS.md).
 *
 * Every write is one pipelined transaction, one round trip: the data statements, then, last, one
 * event_outbox row per event CORE would emit, with the exact payload text CORE sends. Outbox rows
 * are produced by INSERT ... SELECT from the row this transaction wrote (xmin = our transaction
 * id), so an update that matched nothing emits nothing, and payload fields such as created_at are
 * the row's own. That row is found by its primary key alone: the data statement before it already
 * checked the project, and no other project's row can carry our id and our xmin. A project_id
 * condition there would also let the planner pick a (project_id, ...) index instead of the
 * primary key, which it does on a small, not yet analysed table; prepared on a fresh database,
 * that plan was kept and read every memory of the project per write (7 ms, 8,400 buffers per
 * create after 17k creates; 900 -> 325 creates/s over three 10 s runs, back to 3,100/s only when
 * ANALYZE invalidated it). The sequencer (src/db/sequencer.c) turns committed outbox rows into
 * the event log; writes never touch a shared row, so writes to one project run in parallel.
 */
#include "api_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engram/ai.h"

#define TEXT_MAX_UNITS 10000
#define WRITTEN_BY_US  "xmin = pg_current_xact_id()::xid"

static const char *const kinds[] = {"fact", "preference", "context", "note", "event", "trait"};
static const char *const visibilities[] = {"private", "shared", "public"};

/* ---- statements --------------------------------------------------------------------------- */

/*
 * Inserts a memory unless (when $13) an active memory of the subject has the same normalised
 * text (DECISIONS.md item 4). Returns id, subject_id, text, kind; no row means duplicate.
 *
 * The hash of the new text is a scalar sub-select on purpose: as an InitPlan parameter it lets
 * the generic plan PostgreSQL keeps for this prepared statement look it up in
 * idx_memories_norm_text. Written inline, the generic plan scanned the whole subject instead
 * (18.7 creates/s on a 20k-memory subject), and forcing custom plans cost a third of the
 * throughput in planning (pgbench: ~3,800 vs ~1,250 tx/s).
 */
static struct eg_db_stmt st_mem_insert = {
    "mem_insert",
    "INSERT INTO memories (id, project_id, subject_id, text, kind, visibility, importance, "
    "confidence, is_temporal, tags, metadata, status, superseded_by, is_deleted, source_type, "
    "last_reinforced_at) "
    "SELECT $1, $2, $3, $4, $5, $6, $7::int, $8::float8, $9::bool, "
    "ARRAY(SELECT json_array_elements_text($10::json)), $11::jsonb, 'active', NULL, false, $12, "
    "now() "
    "WHERE NOT $13::bool OR NOT EXISTS (SELECT 1 FROM memories d WHERE d.project_id = $2 "
    "AND d.subject_id = $3 AND d.is_deleted = false AND d.status = 'active' "
    "AND md5(eg_norm_text(d.text)) = (SELECT md5(eg_norm_text($4))) "
    "AND eg_norm_text(d.text) = eg_norm_text($4)) "
    "RETURNING id",
    13,
    0,
};

/*
 * The outbox statements of a memory write: $1 the memory's id, $2-$4 the write's audit record
 * (struct eg__api_audit), carried on the row of the memory it changed.
 */
#define OUTBOX_INSERT                                                                              \
    "INSERT INTO event_outbox (project_id, subject_id, event_type, "                               \
    "payload" EG__API_OUTBOX_AUDIT_COLS ") "
#define MEMORY_AUDIT EG__API_OUTBOX_AUDIT_VALS("$2::text", "$3::text", "$4::text", "memory", "m.id")

#define OUTBOX_CREATED                                                                             \
    OUTBOX_INSERT                                                                                  \
    "SELECT m.project_id, m.subject_id, 'memory.created', "                                        \
    "eg_payload_memory_created(m)" MEMORY_AUDIT                                                    \
    " FROM memories m WHERE m.id = $1 AND m." WRITTEN_BY_US

static struct eg_db_stmt st_outbox_created = {"outbox_memory_created", OUTBOX_CREATED, 4, 0};

/* The same with an Idempotency-Key: it also stores the create's answer (eg__api_db_known). */
static struct eg_db_stmt st_outbox_created_answered = {
    "outbox_memory_created_answered",
    EG__API_IDEM_ANSWERED(OUTBOX_CREATED),
    4 + EG__API_IDEM_ANSWER_PARAMS,
    0,
};

/* memory.updated from PATCH: {id, subject_id}. */
static struct eg_db_stmt st_outbox_patched = {
    "outbox_memory_patched",
    OUTBOX_INSERT
    "SELECT m.project_id, m.subject_id, 'memory.updated', "
    "'{\"id\":' || to_json(m.id)::text || ',\"subject_id\":' || to_json(m.subject_id)::text "
    "|| '}'" MEMORY_AUDIT " FROM memories m WHERE m.id = $1 AND m." WRITTEN_BY_US,
    4,
    0,
};

/* memory.updated from restore: {id, status} (a different shape, as CORE). */
static struct eg_db_stmt st_outbox_restored = {
    "outbox_memory_restored",
    OUTBOX_INSERT "SELECT m.project_id, m.subject_id, 'memory.updated', "
                  "'{\"id\":' || to_json(m.id)::text || ',\"status\":\"active\"}'" MEMORY_AUDIT
                  " FROM memories m WHERE m.id = $1 AND m." WRITTEN_BY_US,
    4,
    0,
};

static struct eg_db_stmt st_outbox_deleted = {
    "outbox_memory_deleted",
    OUTBOX_INSERT
    "SELECT m.project_id, m.subject_id, 'memory.deleted', '{\"id\":' || to_json(m.id)::text || "
    "'}'" MEMORY_AUDIT " FROM memories m WHERE m.id = $1 AND m.is_deleted AND m." WRITTEN_BY_US,
    4,
    0,
};

/* The parameters of the outbox statements above: memory id and r's audit record for action. */
static const char **outbox_values(struct eg_http_req *r, const char *id, const char *action,
                                  const char *out[4])
{
    struct eg__api_audit a = eg__api_audit(r, action);

    out[0] = id;
    out[1] = a.action;
    out[2] = a.key_id;
    out[3] = a.request_id;
    return out;
}

/* Locks and reads the memory a PATCH or restore applies to. */
static struct eg_db_stmt st_mem_lock = {
    "mem_lock",
    "SELECT is_deleted, status FROM memories WHERE project_id = $1 AND id = $2 FOR UPDATE",
    2,
    0,
};

/* PATCH: NULL parameters keep the stored value (the field was absent or not applicable). */
static struct eg_db_stmt st_mem_patch = {
    "mem_patch",
    "UPDATE memories SET text = COALESCE($3, text), kind = COALESCE($4, kind), "
    "visibility = COALESCE($5, visibility), importance = COALESCE($6::int, importance), "
    "confidence = COALESCE($7::float8, confidence), "
    "is_temporal = COALESCE($8::bool, is_temporal), "
    "tags = CASE WHEN $9::json IS NULL THEN tags "
    "ELSE ARRAY(SELECT json_array_elements_text($9::json)) END, "
    "metadata = COALESCE($10::jsonb, metadata) "
    "WHERE project_id = $1 AND id = $2 AND is_deleted = false RETURNING id",
    10,
    0,
};

static struct eg_db_stmt st_mem_delete = {
    "mem_delete",
    "UPDATE memories SET is_deleted = true WHERE project_id = $1 AND id = $2 "
    "AND is_deleted = false RETURNING id",
    2,
    0,
};

static struct eg_db_stmt st_mem_restore = {
    "mem_restore",
    "UPDATE memories SET status = 'active', superseded_by = NULL WHERE project_id = $1 "
    "AND id = $2 AND is_deleted = false AND status <> 'active' RETURNING id, subject_id, text",
    2,
    0,
};

/* ---- helpers ------------------------------------------------------------------------------ */

static bool in_set(const char *s, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, set[i]) == 0)
            return true;
    }
    return false;
}

/*
 * kind/visibility as CORE passes them (`v || default`), validated here instead of by the
 * database's CHECK (DECISIONS.md item 2). Returns NULL when invalid.
 */
static const char *enum_field(struct eg_arena *a, const json_t *v, const char *def,
                              const char *const *set, size_t n)
{
    const char *s;

    if (!eg__api_truthy(v))
        return def;
    if (!json_is_string(v))
        return NULL;
    s = json_string_value(v);
    if (strlen(s) != json_string_length(v) || !in_set(s, set, n))
        return NULL;
    return eg_arena_strndup(a, s, strlen(s));
}

/* A JSON value as compact text (for jsonb parameters). */
static char *json_text(struct eg_arena *a, const json_t *v)
{
    struct eg_buf b;
    struct eg_jw jw;
    char *out = NULL;

    eg_buf_init(&b, 8u << 20);
    eg_jw_init(&jw, &b);
    eg_jw_value(&jw, v);
    if (eg_jw_finish(&jw) == 0)
        out = eg_arena_strndup(a, b.base, b.len);
    eg_buf_fini(&b);
    return out;
}

static bool text_has_nul(const char *s, size_t n)
{
    return memchr(s, '\0', n) != NULL;
}

/*
 * CORE's first checks of create and extract: subject_id, then text, each JS String(v || "")
 * trimmed and required. Answers the error itself and returns false.
 */
static bool subject_and_text(struct eg_http_req *r, const json_t *body, const char **subject,
                             size_t *subject_len, const char **text, size_t *text_len)
{
    *subject = eg__api_js_string(&r->arena, json_object_get(body, "subject_id"), subject_len);
    *text = eg__api_js_string(&r->arena, json_object_get(body, "text"), text_len);
    if (*subject == NULL || *text == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return false;
    }
    if (*subject_len == 0) {
        eg_http_respond_error(r, 400, "subject_id_required");
        return false;
    }
    if (*text_len == 0) {
        eg_http_respond_error(r, 400, "text_required");
        return false;
    }
    return true;
}

/*
 * The memory id of r's path and an empty batch in its arena. Returns false after answering 413.
 * *has_nul tells that the decoded id holds a NUL: no stored id can, and libpq would cut it short.
 */
static bool id_and_batch(struct eg_http_req *r, const char **id, bool *has_nul,
                         struct eg_db_batch **b)
{
    size_t len = 0;

    *id = eg__api_param(r, 0, &len);
    *b = eg_arena_alloc(&r->arena, sizeof(**b));
    if (*id == NULL || *b == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return false;
    }
    memset(*b, 0, sizeof(**b));
    *has_nul = strlen(*id) != len;
    return true;
}

/* ---- POST /api/v1/memories ---------------------------------------------------------------- */

/*
 * Both possible answers are rendered from the request before the write runs (the insert returns
 * exactly the values it was given), so a keyed create stores its answer in the same round trip
 * (eg__api_db_known).
 */
struct create_fields {
    const char *id;
    const char *subject;
    size_t subject_len;
    const char *text;
    size_t text_len;
    const char *kind;     /* as stored */
    const char *kind_raw; /* body.kind || "fact", for the duplicate answer */
    size_t kind_raw_len;
};

/* The answer for made (201, the row written) or not (200, DECISIONS.md item 4), in the arena. */
static const char *render_created(struct eg_http_req *r, const struct create_fields *f, bool made,
                                  size_t *len)
{
    struct eg_buf b;
    struct eg_jw jw;
    const char *out = NULL;

    eg_buf_init(&b, 256 + f->text_len + f->subject_len);
    eg_jw_init(&jw, &b);
    eg_jw_obj_begin(&jw);
    eg_jw_key(&jw, "id");
    if (made)
        eg_jw_cstr(&jw, f->id);
    else
        eg_jw_null(&jw);
    eg_jw_key(&jw, "subject_id");
    eg_jw_str(&jw, f->subject, f->subject_len);
    eg_jw_key(&jw, "text");
    eg_jw_str(&jw, f->text, f->text_len);
    eg_jw_key(&jw, "kind");
    if (made)
        eg_jw_cstr(&jw, f->kind);
    else
        eg_jw_str(&jw, f->kind_raw, f->kind_raw_len);
    eg_jw_key(&jw, "created");
    eg_jw_bool(&jw, made);
    if (made) {
        eg_jw_key(&jw, "superseded_count");
        eg_jw_int(&jw, 0);
        eg_jw_key(&jw, "superseded_ids");
        eg_jw_arr_begin(&jw);
        eg_jw_arr_end(&jw);
    } else {
        eg_jw_key(&jw, "skipped");
        eg_jw_bool(&jw, true);
        eg_jw_key(&jw, "reason");
        eg_jw_cstr(&jw, "duplicate");
    }
    eg_jw_obj_end(&jw);
    if (eg_jw_finish(&jw) == 0) {
        out = eg_arena_strndup(&r->arena, b.base, b.len);
        *len = b.len;
    }
    eg_buf_fini(&b);
    return out;
}

static void on_created(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                       void *data)
{
    const struct eg__api_known *k = data;

    if (rep->status != 0 && strcmp(rep->sqlstate, "23505") == 0
        && strstr(rep->message, "memories_pkey") != NULL) {
        eg_http_respond_error(r, 409, "memory_exists");
        return;
    }
    if (eg__api_db_failed(r, rep))
        return;
    if (PQntuples(rep->results[0]) == 0) {
        /* No row: an active memory of the subject has the same text (DECISIONS.md item 4). */
        eg_http_respond_json(r, k->skipped_status, k->skipped_body, k->skipped_len);
        return;
    }
    eg__api_wrote(app);
    eg_http_respond_json(r, k->made_status, k->made_body, k->made_len);
}

/* Adds createClaim statements for every background claim of text (core-contract.md §9.3). */
/* A claim this write creates, for its claim events (added after the memory's own event). */
struct claim_ref {
    const char *id;
    const char *confidence;
};

static int add_background_claims(struct eg_http_req *r, struct eg_db_batch *b, const char *project,
                                 const char *subject, const char *memory_id, const char *text,
                                 size_t text_len, struct claim_ref *refs, size_t *nrefs)
{
    struct eg_ai_claim *claims = NULL;
    size_t count = 0;
    int rc = eg_ai_background_claims(text, text_len, &claims, &count);

    if (rc < 0)
        return 0; /* CORE: extraction errors abort claim extraction silently */
    for (size_t i = 0; i < count && rc == 0; i++) {
        struct eg__api_claim_in c = {0};
        const struct eg_ai_claim *x = &claims[i];
        double conf = isfinite(x->confidence) ? x->confidence : 0.8;

        c.claim_id = eg__api_new_id(&r->arena, "clm_");
        c.subject_id = subject;
        c.predicate = eg_arena_strndup(&r->arena, x->predicate, strlen(x->predicate));
        c.object_value = eg_arena_strndup(&r->arena, x->object_value, strlen(x->object_value));
        c.slot = c.predicate;
        c.claim_type = x->claim_type != NULL && x->claim_type[0] != '\0'
                           ? x->claim_type
                           : eg_ai_infer_claim_type(x->predicate, strlen(x->predicate));
        c.confidence = eg__api_num_text(&r->arena, conf < 0 ? 0 : conf > 1 ? 1 : conf);
        c.importance = "0.5";
        c.tags_json = "[]";
        c.source_memory_id = memory_id;
        c.subject_entity = "self";
        if (c.claim_id == NULL || c.predicate == NULL || c.object_value == NULL
            || c.confidence == NULL)
            rc = EG_ELIMIT;
        else
            rc = eg__api_batch_add_claim(b, &r->arena, project, &c, true);
        if (rc == 0 && *nrefs < EG_AI_BACKGROUND_MAX) {
            refs[*nrefs].id = c.claim_id;
            refs[*nrefs].confidence = c.confidence;
            (*nrefs)++;
        }
    }
    eg_ai_claims_free(claims, count);
    return rc;
}

void eg__api_mem_create(struct eg_app *app, struct eg_http_req *r)
{
    const char *project = eg__api_project(r);
    json_t *body = eg__api_body(app, r);
    struct eg_db_batch *b;
    struct eg__api_known *known;
    const char *subject;
    const char *text;
    const char *id;
    const char *kind;
    const char *visibility;
    const char *tags;
    const char *metadata;
    const char *source_type;
    size_t subject_len;
    size_t text_len;
    json_t *v;
    bool extract;
    struct claim_ref refs[EG_AI_BACKGROUND_MAX];
    size_t nrefs = 0;

    if (body == NULL)
        return;
    if (!subject_and_text(r, body, &subject, &subject_len, &text, &text_len))
        return;
    if (eg_utf16_len(text, text_len) > TEXT_MAX_UNITS) {
        static const char too_long[] = "{\"error\":\"text_too_long\",\"max\":10000}";

        eg_http_respond_json(r, 400, too_long, sizeof(too_long) - 1);
        return;
    }
    if (text_has_nul(text, text_len) || text_has_nul(subject, subject_len)) {
        eg_http_respond_error(r, 400, "invalid_text");
        return;
    }
    v = json_object_get(body, "id");
    id = eg__api_truthy(v) ? eg__api_js_string_raw(&r->arena, v, NULL)
                           : eg__api_new_id(&r->arena, "mem_");
    kind = enum_field(&r->arena, json_object_get(body, "kind"), "fact", kinds, EG_ARRAY_LEN(kinds));
    if (kind == NULL) {
        eg_http_respond_error(r, 400, "invalid_kind");
        return;
    }
    visibility = enum_field(&r->arena, json_object_get(body, "visibility"), "private", visibilities,
                            EG_ARRAY_LEN(visibilities));
    if (visibility == NULL) {
        eg_http_respond_error(r, 400, "invalid_visibility");
        return;
    }
    tags = eg__api_tags_json(&r->arena, json_object_get(body, "tags"));
    v = json_object_get(body, "metadata");
    metadata = eg__api_truthy(v) && (json_is_object(v) || json_is_array(v))
                   ? json_text(&r->arena, v)
                   : "{}";
    v = json_object_get(body, "source_type");
    source_type = eg__api_truthy(v) ? eg__api_js_string_raw(&r->arena, v, NULL) : "explicit";
    extract = !(json_is_false(json_object_get(body, "extract_claims")))
              && !eg__api_is_true(json_object_get(body, "no_supersede"));

    known = eg_arena_alloc(&r->arena, sizeof(*known));
    b = eg_arena_alloc(&r->arena, sizeof(*b));
    if (id == NULL || tags == NULL || metadata == NULL || source_type == NULL || known == NULL
        || b == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    {
        /* The duplicate answer echoes the raw kind (body.kind || "fact"), the subject and text. */
        struct create_fields f = {id, subject, subject_len, text, text_len, kind, "fact", 4};

        v = json_object_get(body, "kind");
        if (eg__api_truthy(v))
            f.kind_raw = eg__api_js_string_raw(&r->arena, v, &f.kind_raw_len);
        known->made_status = 201;
        known->skipped_status = 200;
        known->made_body = render_created(r, &f, true, &known->made_len);
        known->skipped_body =
            f.kind_raw != NULL ? render_created(r, &f, false, &known->skipped_len) : NULL;
        if (known->made_body == NULL || known->skipped_body == NULL) {
            eg_http_respond_error(r, 413, "payload_too_large");
            return;
        }
    }
    memset(b, 0, sizeof(*b));
    {
        const char *values[13] = {
            id,
            project,
            subject,
            text,
            kind,
            visibility,
            eg__api_num_text(&r->arena,
                             eg__api_clamp_int(json_object_get(body, "importance"), 0, 100, 50)),
            eg__api_num_text(&r->arena,
                             eg__api_clamp_float(json_object_get(body, "confidence"), 0, 1, 0.95)),
            eg__api_is_true(json_object_get(body, "is_temporal")) ? "t" : "f",
            tags,
            metadata,
            source_type,
            "t",
        };
        const char *outbox[4];

        if (values[6] == NULL || values[7] == NULL || eg_db_batch_add(b, &st_mem_insert, values) < 0
            || (extract
                && add_background_claims(r, b, project, subject, id, text, text_len, refs, &nrefs)
                       < 0)) {
            eg_http_respond_error(r, 413, "payload_too_large");
            return;
        }
        /* The memory's event: the row whose insert tells which answer is the create's. */
        known->answer_at = b->count;
        known->answering = &st_outbox_created_answered;
        if (eg_db_batch_add(b, &st_outbox_created, outbox_values(r, id, "memory.create", outbox))
            < 0) {
            eg_http_respond_error(r, 413, "payload_too_large");
            return;
        }
        for (size_t i = 0; i < nrefs; i++) {
            if (eg__api_batch_add_claim_events(b, refs[i].id, refs[i].confidence, NULL) < 0) {
                eg_http_respond_error(r, 413, "payload_too_large");
                return;
            }
        }
    }
    eg__api_db_known(app, r, b, known, on_created, known);
}

/* ---- PATCH /api/v1/memories/{id} ---------------------------------------------------------- */

static bool pg_bool_text(const json_t *v, const char **out)
{
    static const char *const yes[] = {"t", "true", "y", "yes", "on", "1"};
    static const char *const no[] = {"f", "false", "n", "no", "off", "0"};
    char low[8];
    const char *s;
    size_t n;

    if (json_is_boolean(v)) {
        *out = json_is_true(v) ? "t" : "f";
        return true;
    }
    if (json_is_number(v)) {
        double d = json_number_value(v);

        if (d != 0 && d != 1)
            return false;
        *out = d == 1 ? "t" : "f";
        return true;
    }
    if (!json_is_string(v))
        return false;
    n = json_string_length(v);
    s = eg__api_trim(json_string_value(v), &n);
    if (n == 0 || n >= sizeof(low))
        return false;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    low[n] = '\0';
    for (size_t i = 0; i < EG_ARRAY_LEN(yes); i++) {
        if (strcmp(low, yes[i]) == 0) {
            *out = "t";
            return true;
        }
        if (strcmp(low, no[i]) == 0) {
            *out = "f";
            return true;
        }
    }
    return false;
}

static void on_patched(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                       void *data)
{
    const char *id = data;
    struct eg_jw jw;

    if (eg__api_db_failed(r, rep))
        return;
    if (PQntuples(rep->results[0]) == 0) {
        eg_http_respond_error(r, 404, "memory_not_found");
        return;
    }
    if (PQgetvalue(rep->results[0], 0, 0)[0] == 't' || PQntuples(rep->results[1]) == 0) {
        eg_http_respond_error(r, 404, "memory_deleted");
        return;
    }
    eg__api_wrote(app);
    eg_buf_reset(&r->resp_body);
    eg_jw_init(&jw, &r->resp_body);
    eg_jw_obj_begin(&jw);
    eg_jw_key(&jw, "id");
    eg_jw_cstr(&jw, id);
    eg_jw_key(&jw, "updated");
    eg_jw_bool(&jw, true);
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 200);
}

void eg__api_mem_patch(struct eg_app *app, struct eg_http_req *r)
{
    const char *project = eg__api_project(r);
    json_t *body = eg__api_body(app, r);
    const char *values[10] = {0};
    struct eg_db_batch *b;
    const char *id;
    bool has_nul;
    json_t *v;
    double d;

    if (body == NULL)
        return;
    if (!id_and_batch(r, &id, &has_nul, &b))
        return;
    if (has_nul) {
        eg_http_respond_error(r, 404, "memory_not_found");
        return;
    }
    values[0] = project;
    values[1] = id;
    v = json_object_get(body, "text");
    if (v != NULL) {
        size_t n;

        /* CORE stores String(null) as "null"; engram refuses non-strings (DECISIONS item 2). */
        if (!json_is_string(v)) {
            eg_http_respond_error(r, 400, "invalid_text");
            return;
        }
        n = json_string_length(v);
        values[2] = eg__api_trim(json_string_value(v), &n);
        values[2] = eg_arena_strndup(&r->arena, values[2], n);
    }
    v = json_object_get(body, "kind");
    if (v != NULL) {
        values[3] = json_is_string(v) && in_set(json_string_value(v), kinds, EG_ARRAY_LEN(kinds))
                        ? json_string_value(v)
                        : NULL;
        if (values[3] == NULL) {
            eg_http_respond_error(r, 400, "invalid_kind");
            return;
        }
    }
    v = json_object_get(body, "visibility");
    if (v != NULL) {
        values[4] = json_is_string(
                        v) && in_set(json_string_value(v), visibilities, EG_ARRAY_LEN(visibilities))
                        ? json_string_value(v)
                        : NULL;
        if (values[4] == NULL) {
            eg_http_respond_error(r, 400, "invalid_visibility");
            return;
        }
    }
    /* clampInt/clampFloat with the stored value as fallback: NULL keeps it. */
    v = json_object_get(body, "importance");
    d = eg__api_js_number(v);
    if (v != NULL && isfinite(d))
        values[5] = eg__api_num_text(&r->arena, floor(d < 0 ? 0 : d > 100 ? 100 : d));
    v = json_object_get(body, "confidence");
    d = eg__api_js_number(v);
    if (v != NULL && isfinite(d))
        values[6] = eg__api_num_text(&r->arena, d < 0 ? 0 : d > 1 ? 1 : d);
    v = json_object_get(body, "is_temporal");
    if (v != NULL && !pg_bool_text(v, &values[7])) {
        eg_http_respond_error(r, 400, "invalid_is_temporal");
        return;
    }
    v = json_object_get(body, "tags");
    if (json_is_array(v))
        values[8] = eg__api_tags_json(&r->arena, v);
    v = json_object_get(body, "metadata");
    if (v != NULL)
        values[9] = eg__api_truthy(v) ? json_text(&r->arena, v) : "{}";
    {
        const char *lock[2] = {project, id};
        const char *outbox[4];

        if (eg_db_batch_add(b, &st_mem_lock, lock) < 0
            || eg_db_batch_add(b, &st_mem_patch, values) < 0
            || eg_db_batch_add(b, &st_outbox_patched, outbox_values(r, id, "memory.update", outbox))
                   < 0) {
            eg_http_respond_error(r, 413, "payload_too_large");
            return;
        }
    }
    eg__api_db(app, r, b, on_patched, (void *)id);
}

/* ---- DELETE /api/v1/memories/{id} --------------------------------------------------------- */

static void on_deleted(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                       void *data)
{
    static const char yes[] = "{\"ok\":true,\"deleted\":true}";
    static const char no[] = "{\"ok\":true,\"deleted\":false}";

    (void)data;
    if (eg__api_db_failed(r, rep))
        return;
    if (PQntuples(rep->results[0]) > 0)
        eg__api_wrote(app);
    if (PQntuples(rep->results[0]) > 0)
        eg_http_respond_json(r, 200, yes, sizeof(yes) - 1);
    else
        eg_http_respond_json(r, 200, no, sizeof(no) - 1);
}

void eg__api_mem_delete(struct eg_app *app, struct eg_http_req *r)
{
    const char *project = eg__api_project(r);
    struct eg_db_batch *b;
    const char *id;
    bool has_nul;

    if (!id_and_batch(r, &id, &has_nul, &b))
        return;
    if (has_nul) {
        static const char no[] = "{\"ok\":true,\"deleted\":false}";

        eg_http_respond_json(r, 200, no, sizeof(no) - 1);
        return;
    }
    const char *values[2] = {project, id};
    const char *outbox[4];

    eg_db_batch_add(b, &st_mem_delete, values);
    eg_db_batch_add(b, &st_outbox_deleted, outbox_values(r, id, "memory.delete", outbox));
    eg__api_db(app, r, b, on_deleted, NULL);
}

/* ---- POST /api/v1/memories/{id}/restore --------------------------------------------------- */

static void on_restored(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                        void *data)
{
    const PGresult *lock;
    const PGresult *upd;
    struct eg_jw jw;

    (void)data;
    if (eg__api_db_failed(r, rep))
        return;
    lock = rep->results[0];
    upd = rep->results[1];
    if (PQntuples(lock) == 0) {
        eg_http_respond_error(r, 404, "memory_not_found");
        return;
    }
    if (PQgetvalue(lock, 0, 0)[0] == 't') {
        eg__api_error_msg(r, 400, "memory_deleted", "Cannot restore a deleted memory");
        return;
    }
    if (PQntuples(upd) == 0) {
        static const char already[] =
            "{\"ok\":true,\"restored\":false,\"message\":\"Memory is already active\"}";

        eg_http_respond_json(r, 200, already, sizeof(already) - 1);
        return;
    }
    eg__api_wrote(app);
    eg_buf_reset(&r->resp_body);
    eg_jw_init(&jw, &r->resp_body);
    eg_jw_obj_begin(&jw);
    eg_jw_key(&jw, "ok");
    eg_jw_bool(&jw, true);
    eg_jw_key(&jw, "restored");
    eg_jw_bool(&jw, true);
    for (int c = 0; c < PQnfields(upd); c++) {
        eg_jw_key(&jw, PQfname(upd, c));
        eg__api_write_field(&jw, upd, 0, c);
    }
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 200);
}

void eg__api_mem_restore(struct eg_app *app, struct eg_http_req *r)
{
    const char *project = eg__api_project(r);
    struct eg_db_batch *b;
    const char *id;
    bool has_nul;

    if (!id_and_batch(r, &id, &has_nul, &b))
        return;
    if (has_nul) {
        eg_http_respond_error(r, 404, "memory_not_found");
        return;
    }
    const char *values[2] = {project, id};
    const char *outbox[4];

    eg_db_batch_add(b, &st_mem_lock, values);
    eg_db_batch_add(b, &st_mem_restore, values);
    eg_db_batch_add(b, &st_outbox_restored, outbox_values(r, id, "memory.restore", outbox));
    eg__api_db(app, r, b, on_restored, NULL);
}

/* ---- POST /api/v1/memories/extract -------------------------------------------------------- */

struct extract_ctx {
    struct eg_ai_extraction x;
    char **memory_ids;
    char ***claim_ids;
};

static void on_extract_cleanup(void *data)
{
    struct extract_ctx *ec = data;

    eg_ai_extraction_free(&ec->x);
}

static void write_extracted(struct eg_jw *jw, const struct eg_ai_memory *m)
{
    eg_jw_obj_begin(jw);
    eg_jw_key(jw, "text");
    eg_jw_cstr(jw, m->text);
    eg_jw_key(jw, "kind");
    eg_jw_cstr(jw, m->kind);
    eg_jw_key(jw, "importance");
    eg_jw_int(jw, m->importance);
    eg_jw_key(jw, "confidence");
    eg_jw_num(jw, m->confidence);
    eg_jw_key(jw, "is_temporal");
    eg_jw_bool(jw, m->is_temporal);
    eg_jw_key(jw, "visibility");
    eg_jw_cstr(jw, m->visibility);
    eg_jw_key(jw, "tags");
    eg_jw_arr_begin(jw);
    for (size_t t = 0; t < m->tag_count; t++)
        eg_jw_cstr(jw, m->tags[t]);
    eg_jw_arr_end(jw);
    eg_jw_key(jw, "claims");
    eg_jw_arr_begin(jw);
    for (size_t c = 0; c < m->claim_count; c++) {
        eg_jw_obj_begin(jw);
        eg_jw_key(jw, "predicate");
        eg_jw_cstr(jw, m->claims[c].predicate);
        eg_jw_key(jw, "object_value");
        eg_jw_cstr(jw, m->claims[c].object_value);
        eg_jw_key(jw, "claim_type");
        eg_jw_cstr(jw, m->claims[c].claim_type);
        eg_jw_key(jw, "confidence");
        eg_jw_num(jw, m->claims[c].confidence);
        eg_jw_obj_end(jw);
    }
    eg_jw_arr_end(jw);
    eg_jw_obj_end(jw);
}

static void on_learned(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                       void *data)
{
    struct extract_ctx *ec = data;
    struct eg_jw jw;
    size_t claims = 0;

    if (eg__api_db_failed(r, rep))
        return;
    if (ec->x.count > 0)
        eg__api_wrote(app);
    for (size_t i = 0; i < ec->x.count; i++)
        claims += ec->x.memories[i].claim_count;
    eg_buf_reset(&r->resp_body);
    eg_jw_init(&jw, &r->resp_body);
    eg_jw_obj_begin(&jw);
    eg_jw_key(&jw, "ok");
    eg_jw_bool(&jw, true);
    eg_jw_key(&jw, "mode");
    eg_jw_cstr(&jw, "simple");
    eg_jw_key(&jw, "learned");
    eg_jw_bool(&jw, true);
    eg_jw_key(&jw, "extracted_count");
    eg_jw_int(&jw, (int64_t)ec->x.count);
    eg_jw_key(&jw, "learned_memory_count");
    eg_jw_int(&jw, (int64_t)ec->x.count);
    eg_jw_key(&jw, "learned_claim_count");
    eg_jw_int(&jw, (int64_t)claims);
    eg_jw_key(&jw, "memories");
    eg_jw_arr_begin(&jw);
    for (size_t i = 0; i < ec->x.count; i++) {
        const struct eg_ai_memory *m = &ec->x.memories[i];

        eg_jw_obj_begin(&jw);
        eg_jw_key(&jw, "memory_id");
        eg_jw_cstr(&jw, ec->memory_ids[i]);
        eg_jw_key(&jw, "text");
        eg_jw_cstr(&jw, m->text);
        eg_jw_key(&jw, "kind");
        eg_jw_cstr(&jw, m->kind);
        eg_jw_key(&jw, "claim_ids");
        eg_jw_arr_begin(&jw);
        for (size_t c = 0; c < m->claim_count; c++)
            eg_jw_cstr(&jw, ec->claim_ids[i][c]);
        eg_jw_arr_end(&jw);
        eg_jw_obj_end(&jw);
    }
    eg_jw_arr_end(&jw);
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 200);
}

void eg__api_mem_extract(struct eg_app *app, struct eg_http_req *r)
{
    const char *project = eg__api_project(r);
    json_t *body = eg__api_body(app, r);
    struct extract_ctx *ec;
    struct eg_db_batch *b;
    struct eg_jw jw;
    const char *subject;
    const char *text;
    size_t subject_len;
    size_t text_len;
    bool learn;
    bool force;

    if (body == NULL)
        return;
    if (!subject_and_text(r, body, &subject, &subject_len, &text, &text_len))
        return;
    learn =
        eg__api_is_true(json_object_get(body, "learn")) || eg__api_query_bool(r, "learn", false);
    force =
        eg__api_is_true(json_object_get(body, "force")) || eg__api_query_bool(r, "force", false);
    ec = eg_arena_alloc(&r->arena, sizeof(*ec));
    if (ec == NULL || eg_arena_defer(&r->arena, on_extract_cleanup, ec) < 0) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    memset(ec, 0, sizeof(*ec));
    if (eg_ai_extract_simple(text, text_len, force, &ec->x) < 0) {
        eg_http_respond_error(r, 400, "invalid_text");
        return;
    }
    if (!learn) {
        eg_buf_reset(&r->resp_body);
        eg_jw_init(&jw, &r->resp_body);
        eg_jw_obj_begin(&jw);
        eg_jw_key(&jw, "ok");
        eg_jw_bool(&jw, true);
        eg_jw_key(&jw, "learned");
        eg_jw_bool(&jw, false);
        eg_jw_key(&jw, "mode");
        eg_jw_cstr(&jw, "simple");
        eg_jw_key(&jw, "extracted_count");
        eg_jw_int(&jw, (int64_t)ec->x.count);
        eg_jw_key(&jw, "memories");
        eg_jw_arr_begin(&jw);
        for (size_t i = 0; i < ec->x.count; i++)
            write_extracted(&jw, &ec->x.memories[i]);
        eg_jw_arr_end(&jw);
        eg_jw_obj_end(&jw);
        eg__api_send(r, &jw, 200);
        return;
    }
    b = eg_arena_alloc(&r->arena, sizeof(*b));
    ec->memory_ids = eg_arena_alloc(&r->arena, (ec->x.count + 1) * sizeof(char *));
    ec->claim_ids = eg_arena_alloc(&r->arena, (ec->x.count + 1) * sizeof(char **));
    if (b == NULL || ec->memory_ids == NULL || ec->claim_ids == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    memset(b, 0, sizeof(*b));
    for (size_t i = 0; i < ec->x.count; i++) {
        const struct eg_ai_memory *m = &ec->x.memories[i];
        char *metadata = eg_arena_alloc(&r->arena, 64);
        const char *id = eg__api_new_id(&r->arena, "mem_");
        char tags[256];
        const char *values[13];
        const char *outbox[4];
        struct eg_buf tb;
        struct eg_jw tw;

        ec->memory_ids[i] = (char *)id;
        ec->claim_ids[i] = eg_arena_alloc(&r->arena, (m->claim_count + 1) * sizeof(char *));
        if (metadata == NULL || id == NULL || ec->claim_ids[i] == NULL) {
            eg_http_respond_error(r, 413, "payload_too_large");
            return;
        }
        snprintf(metadata, 64, "{\"extracted_via\":\"simple\",\"force\":%s}",
                 force ? "true" : "false");
        eg_buf_init(&tb, sizeof(tags) - 1);
        eg_jw_init(&tw, &tb);
        eg_jw_arr_begin(&tw);
        for (size_t t = 0; t < m->tag_count; t++)
            eg_jw_cstr(&tw, m->tags[t]);
        eg_jw_arr_end(&tw);
        eg_jw_finish(&tw);
        snprintf(tags, sizeof(tags), "%s", tb.base != NULL ? tb.base : "[]");
        eg_buf_fini(&tb);
        values[0] = id;
        values[1] = project;
        values[2] = subject;
        values[3] = m->text;
        values[4] = m->kind;
        values[5] = m->visibility;
        values[6] = eg__api_num_text(&r->arena, m->importance);
        values[7] = eg__api_num_text(&r->arena, m->confidence);
        values[8] = m->is_temporal ? "t" : "f";
        values[9] = eg_arena_strndup(&r->arena, tags, strlen(tags));
        values[10] = metadata;
        values[11] = "inferred";
        values[12] = "f"; /* CORE: no duplicate guard when learning */
        if (eg_db_batch_add(b, &st_mem_insert, values) < 0) {
            eg_http_respond_error(r, 413, "payload_too_large");
            return;
        }
        for (size_t c = 0; c < m->claim_count; c++) {
            const struct eg_ai_claim *x = &m->claims[c];
            struct eg__api_claim_in ci = {0};

            ci.claim_id = eg__api_new_id(&r->arena, "clm_");
            ci.subject_id = subject;
            ci.predicate = x->predicate;
            ci.object_value = x->object_value;
            ci.slot = x->predicate;
            ci.claim_type = x->claim_type != NULL && x->claim_type[0] != '\0'
                                ? x->claim_type
                                : eg_ai_infer_claim_type(x->predicate, strlen(x->predicate));
            ci.confidence = eg__api_num_text(&r->arena, x->confidence);
            ci.importance = "0.5";
            ci.tags_json = "[]";
            ci.source_memory_id = id;
            ci.subject_entity = "self";
            ec->claim_ids[i][c] = (char *)ci.claim_id;
            if (ci.claim_id == NULL || ci.confidence == NULL
                || eg__api_batch_add_claim(b, &r->arena, project, &ci, true) < 0) {
                eg_http_respond_error(r, 413, "payload_too_large");
                return;
            }
        }
        /* Events close the write: the memory's, then its claims' (opt-in claim events). */
        if (eg_db_batch_add(b, &st_outbox_created, outbox_values(r, id, "memory.extract", outbox))
            < 0) {
            eg_http_respond_error(r, 413, "payload_too_large");
            return;
        }
        for (size_t c = 0; c < m->claim_count; c++) {
            if (eg__api_batch_add_claim_events(b, ec->claim_ids[i][c],
                                               eg__api_num_text(&r->arena, m->claims[c].confidence),
                                               NULL)
                < 0) {
                eg_http_respond_error(r, 413, "payload_too_large");
                return;
            }
        }
    }
    if (ec->x.count == 0) {
        on_learned(app, r, &(struct eg_db_reply){.status = 0, .sqlstate = "", .message = ""}, ec);
        return;
    }
    eg__api_db(app, r, b, on_learned, ec);
}
