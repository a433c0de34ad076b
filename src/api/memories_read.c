/*
 * Read-only memory routes: list (core-contract.md §5.3), get (§5.11), superseded (§5.7), search
 * (§5.6, §6), recalls (§5.8) and a memory's claims (§5.9).
 *
 * Every handler validates in CORE's order, builds one batch (one round trip, one snapshot of
 * the request's statements) and writes the response from the rows. Every statement filters by
 * the resolved project, so a tenant never sees another project's rows.
 *
 * Memory rows are written in CORE's table order with `is_deleted` kept (DECISIONS.md item 9)
 * and without `embedding`; the column list is spelled out instead of `SELECT *` because the
 * embedding column only exists where pgvector does and engram's migrations may add columns.
 *
 * Query parameters reach PostgreSQL as text. Two things a client can put in them that
 * PostgreSQL text cannot hold are handled here rather than answered with CORE's 500: invalid
 * UTF-8 becomes U+FFFD as URLSearchParams does it, and a value containing NUL is sent as SQL
 * NULL, which equals nothing, so the lookup finds no rows (no stored text contains NUL).
 */
#include "api_int.h"

#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <wctype.h>

#include "engram/db.h"

/* CORE's `memories` columns in table order, minus `embedding`, plus `is_deleted` (DECISIONS 9).
 * tags is text[]; to_json gives the JSON array CORE's driver produces. */
#define MEMORY_COLUMNS                                                                             \
    "id, project_id, subject_id, text, kind, visibility, importance, confidence, is_temporal, "    \
    "to_json(tags) AS tags, metadata, status, superseded_by, is_deleted, source_type, "            \
    "created_at, updated_at, last_seen_at, seen_count, reinforcement_count, last_reinforced_at"

/* Every column of memory_recall_events in table order (§3.6). */
#define RECALL_COLUMNS                                                                             \
    "event_id, project_id, subject_id, memory_id, memory_text, chat_id, message_index, "           \
    "chat_logged, similarity_score, request_type, model, metadata, recalled_at"

/* ---- statements ----------------------------------------------------------------------------- */

/*
 * GET /memories: one statement per include_deleted/include_superseded combination instead of
 * CORE's `($3 OR is_deleted = FALSE)`, so that each has literal conditions the planner matches
 * to the (project_id, subject_id, status[, is_deleted], created_at DESC) indexes and a page
 * is read in index order without sorting the subject. Indexed by deleted | superseded << 1.
 */
#define LIST_SQL(cond)                                                                             \
    "SELECT " MEMORY_COLUMNS " FROM memories WHERE project_id = $1 AND subject_id = $2" cond       \
    " ORDER BY created_at DESC LIMIT $3 OFFSET $4"

static struct eg_db_stmt st_list[4] = {
    {"mem_list", LIST_SQL(" AND is_deleted = false AND status = 'active'"), 4, 0},
    {"mem_list_deleted", LIST_SQL(" AND status = 'active'"), 4, 0},
    {"mem_list_superseded", LIST_SQL(" AND is_deleted = false"), 4, 0},
    {"mem_list_all", LIST_SQL(""), 4, 0},
};

static struct eg_db_stmt st_superseded = {
    "mem_superseded",
    LIST_SQL(" AND is_deleted = false AND status = 'superseded'"),
    4,
    0,
};

static struct eg_db_stmt st_get = {
    "mem_get",
    "SELECT " MEMORY_COLUMNS " FROM memories WHERE project_id = $1 AND id = $2",
    2,
    0,
};

static struct eg_db_stmt st_get_state = {
    "mem_get_state",
    "SELECT is_deleted FROM memories WHERE project_id = $1 AND id = $2",
    2,
    0,
};

/* The value column is chosen in C by object_type: the four candidates have different types. */
static struct eg_db_stmt st_assertions = {
    "mem_assertions",
    "SELECT assertion_id, predicate, object_type, value_string, value_number, value_date, "
    "value_json, confidence, status, first_seen_at, last_seen_at FROM claim_assertions "
    "WHERE project_id = $1 AND memory_id = $2 ORDER BY last_seen_at DESC",
    2,
    0,
};

static struct eg_db_stmt st_recalls_chat = {
    "recalls_by_chat",
    "SELECT " RECALL_COLUMNS " FROM memory_recall_events WHERE project_id = $1 AND chat_id = $2 "
    "ORDER BY recalled_at ASC, message_index ASC",
    2,
    0,
};

static struct eg_db_stmt st_recalls_memory = {
    "recalls_by_memory",
    "SELECT " RECALL_COLUMNS " FROM memory_recall_events WHERE project_id = $1 "
    "AND memory_id = $2 ORDER BY recalled_at DESC LIMIT $3",
    3,
    0,
};

/* An aggregate always returns one row, so the empty case needs no special path. */
static struct eg_db_stmt st_recalls_stats = {
    "recalls_stats",
    "SELECT COUNT(*)::int AS total_recalls, COUNT(DISTINCT chat_id)::int AS unique_chats, "
    "COUNT(DISTINCT subject_id)::int AS unique_subjects, "
    "COALESCE(AVG(similarity_score), 0)::double precision AS avg_score, "
    "MIN(recalled_at) AS first_recalled_at, MAX(recalled_at) AS last_recalled_at "
    "FROM memory_recall_events WHERE project_id = $1 AND memory_id = $2",
    2,
    0,
};

/*
 * Lexical-only search (§6.4). CORE's predicate is `text ILIKE '%'||q||'%' OR EXISTS (SELECT 1
 * FROM unnest(tokens) ...)`; the EXISTS form hides the column from the planner. Here the whole
 * query and the tokens arrive as one array of ready-made, LIKE-escaped patterns, and
 * `text ILIKE ANY ($3)` is an indexable condition. The effective_score expression is CORE's,
 * verbatim, so the float8 arithmetic (numeric 0.25 * importance, then float8) rounds exactly as
 * CORE's does.
 *
 * Two ways to the same rows, cheapest first. `head` reads the subject's best 500 memories in
 * the order of the answer (idx_memories_subject_rank, migration 0004) and keeps the matches: if
 * that yields `limit` rows they are the answer, since every memory after those 500 ranks below
 * all of them. Otherwise (a rare word, a large limit) the second branch runs the full search,
 * a bitmap scan of the pg_trgm index idx_memories_text_ilike (migration 0002) ANDed with the
 * subject, one index search per pattern; its one-time filter keeps it from running at all when
 * `head` was enough. Measured on a 10k-memory subject of a 365k-row table: a word in 9 % of the
 * subject took 33 ms through the trigram index (67k matching rows among all tenants) and takes
 * 0.6 ms through `head`; a word absent from the subject costs `head` about 0.5 ms more than
 * before. tests/integration/test_api_search_index.py EXPLAINs this text (between the markers),
 * checks both branches and compares its rows with the plain query's; keep them in step.
 */
/* search-sql-begin */
#define SEARCH_LEXICAL_SQL                                                                         \
    "WITH head AS MATERIALIZED ("                                                                  \
    "SELECT r.* FROM (SELECT m.id, m.text, m.kind, m.importance, m.is_temporal, m.created_at, "    \
    "m.confidence FROM memories m "                                                                \
    "WHERE m.project_id = $1 AND m.subject_id = $2 AND m.is_deleted = false "                      \
    "AND m.status = 'active' ORDER BY m.importance DESC, m.created_at DESC LIMIT 500) r "          \
    "WHERE r.text ILIKE ANY ($3::text[]) "                                                         \
    "ORDER BY r.importance DESC, r.created_at DESC LIMIT $4), "                                    \
    "hit AS (SELECT * FROM head WHERE (SELECT count(*) FROM head) >= $4 "                          \
    "UNION ALL (SELECT m.id, m.text, m.kind, m.importance, m.is_temporal, m.created_at, "          \
    "m.confidence FROM memories m "                                                                \
    "WHERE m.project_id = $1 AND m.subject_id = $2 AND m.is_deleted = false "                      \
    "AND m.status = 'active' AND m.text ILIKE ANY ($3::text[]) "                                   \
    "AND (SELECT count(*) FROM head) < $4 "                                                        \
    "ORDER BY m.importance DESC, m.created_at DESC LIMIT $4)) "                                    \
    "SELECT m.id, m.text, m.kind, m.importance, m.is_temporal, m.created_at, "                     \
    "0::double precision AS score, "                                                               \
    "(0.25 * m.importance + 0.15 * m.confidence * 100)::double precision AS effective_score "      \
    "FROM hit m ORDER BY m.importance DESC, m.created_at DESC"
/* search-sql-end */

static struct eg_db_stmt st_search_lexical = {"mem_search_lexical", SEARCH_LEXICAL_SQL, 4, 0};

/*
 * Runs first in the search batch (one transaction, so the setting ends with it). The right plan
 * depends on the values: the trigram index for a selective pattern in a large subject, the
 * (project_id, subject_id) btree for a small subject or a pattern too short to yield trigrams
 * (which would otherwise scan the whole GIN index, every tenant's rows). A generic plan is
 * built from average statistics and, once cheaper on paper than the first custom plans, sticks
 * to the btree even for a subject with 100k memories; so search is always planned with its
 * parameters (about 0.3 ms). The EXPLAIN test checks this statement is in place.
 */
/* search-plan-mode */
static struct eg_db_stmt st_search_custom_plan = {
    "mem_search_custom_plan",
    "SELECT set_config('plan_cache_mode', 'force_custom_plan', true)",
    0,
    0,
};

/* ---- parameters ----------------------------------------------------------------------------- */

/*
 * CORE's `String(url.searchParams.get(name) || "").trim()`: absent and empty are both "".
 * (eg_http_query_get already made the value valid UTF-8, as URLSearchParams does.) Returns
 * NUL-terminated arena memory, or NULL at the arena ceiling. *len excludes the terminator; the
 * text may contain NUL bytes.
 */
static char *query_text(struct eg_http_req *r, const char *name, size_t *len)
{
    size_t n = 0;
    const char *raw = eg__api_query(r, name, &n);
    const char *s;

    if (raw == NULL)
        raw = "";
    s = eg__api_trim(raw, &n);
    *len = n;
    return eg_arena_strndup(&r->arena, s, n);
}

/* The parameter value for text s: SQL NULL when s holds a NUL byte (see the file comment). */
static const char *pg_text(const char *s, size_t len)
{
    return memchr(s, '\0', len) != NULL ? NULL : s;
}

/* Decimal text of v in r's arena, or NULL at the ceiling. */
static const char *num_text(struct eg_http_req *r, long v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%ld", v);

    return eg_arena_strndup(&r->arena, tmp, (size_t)n);
}

/* ---- responses ------------------------------------------------------------------------------ */

static void jw_begin(struct eg_http_req *r, struct eg_jw *jw)
{
    eg_buf_reset(&r->resp_body);
    eg_jw_init(jw, &r->resp_body);
    eg_jw_obj_begin(jw);
}

/* {"data":[rows],"count":n}, the shape of list and superseded. */
static void respond_rows(struct eg_http_req *r, const PGresult *res)
{
    struct eg_jw jw;

    jw_begin(r, &jw);
    eg_jw_key(&jw, "data");
    eg__api_write_rows(&jw, res, NULL);
    eg_jw_key(&jw, "count");
    eg_jw_int(&jw, PQntuples(res));
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 200);
}

/* Answers the arena ceiling (a client-controlled size: the query string). */
static void respond_too_large(struct eg_http_req *r)
{
    eg_http_respond_error(r, 413, "payload_too_large");
}

/* Runs b for r, or answers 413 when adding to it failed (rc < 0). */
static void submit(struct eg_app *app, struct eg_http_req *r, const struct eg_db_batch *b, int rc,
                   eg__api_db_fn *fn, void *data)
{
    if (rc < 0) {
        respond_too_large(r);
        return;
    }
    eg__api_db(app, r, b, fn, data);
}

/* A batch in r's arena (it must outlive the submit call), or NULL at the ceiling. */
static struct eg_db_batch *batch_new(struct eg_http_req *r)
{
    struct eg_db_batch *b = eg_arena_alloc(&r->arena, sizeof(*b));

    if (b != NULL)
        b->count = 0;
    return b;
}

/* ---- GET /api/v1/memories and /api/v1/memories/superseded ----------------------------------- */

static void on_rows(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                    void *data)
{
    (void)app;
    (void)data;
    if (eg__api_db_failed(r, rep))
        return;
    respond_rows(r, rep->results[0]);
}

/* Shared by list and superseded: subject_id required, then limit/offset as CORE parses them
 * (an absent limit is the default 50, DECISIONS.md item 1). */
static void list_rows(struct eg_app *app, struct eg_http_req *r, const struct eg_db_stmt *stmt)
{
    size_t subject_len;
    const char *subject = query_text(r, "subject_id", &subject_len);
    struct eg_db_batch *b;
    const char *values[4];

    if (subject == NULL) {
        respond_too_large(r);
        return;
    }
    if (subject_len == 0) {
        eg_http_respond_error(r, 400, "subject_id_required");
        return;
    }
    values[0] = eg__api_project(r);
    values[1] = pg_text(subject, subject_len);
    values[2] = num_text(r, eg__api_query_int(r, "limit", 50, 1, 200));
    values[3] = num_text(r, eg__api_query_int(r, "offset", 0, 0, 1000000));
    b = batch_new(r);
    if (b == NULL || values[2] == NULL || values[3] == NULL) {
        respond_too_large(r);
        return;
    }
    submit(app, r, b, eg_db_batch_add(b, stmt, values), on_rows, NULL);
}

void eg__api_mem_list(struct eg_app *app, struct eg_http_req *r)
{
    int variant = (eg__api_query_bool(r, "include_deleted", false) ? 1 : 0)
                  | (eg__api_query_bool(r, "include_superseded", false) ? 2 : 0);

    list_rows(app, r, &st_list[variant]);
}

void eg__api_mem_superseded(struct eg_app *app, struct eg_http_req *r)
{
    list_rows(app, r, &st_superseded);
}

/* ---- GET /api/v1/memories/{id} and /api/v1/memories/{id}/claims ----------------------------- */

/* The id path parameter as a statement value; *ok is false at the arena ceiling. */
static const char *id_param(struct eg_http_req *r, bool *ok)
{
    size_t len = 0;
    const char *id = eg__api_param(r, 0, &len);

    *ok = id != NULL;
    return id != NULL ? pg_text(id, len) : NULL;
}

/* Not found, then deleted (404 both, §5.11/§5.9); true when it answered. */
static bool memory_missing(struct eg_http_req *r, const PGresult *res)
{
    const char *deleted;

    if (PQntuples(res) == 0) {
        eg_http_respond_error(r, 404, "memory_not_found");
        return true;
    }
    deleted = eg__api_get(res, 0, "is_deleted");
    if (deleted != NULL && deleted[0] == 't') {
        eg_http_respond_error(r, 404, "memory_deleted");
        return true;
    }
    return false;
}

static void on_get(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                   void *data)
{
    const PGresult *res;
    struct eg_jw jw;

    (void)app;
    (void)data;
    if (eg__api_db_failed(r, rep))
        return;
    res = rep->results[0];
    if (memory_missing(r, res))
        return;
    jw_begin(r, &jw);
    eg_jw_key(&jw, "data");
    eg__api_write_row(&jw, res, 0, NULL);
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 200);
}

void eg__api_mem_get(struct eg_app *app, struct eg_http_req *r)
{
    bool ok;
    const char *values[2] = {eg__api_project(r), id_param(r, &ok)};
    struct eg_db_batch *b = batch_new(r);

    if (!ok || b == NULL) {
        respond_too_large(r);
        return;
    }
    submit(app, r, b, eg_db_batch_add(b, &st_get, values), on_get, NULL);
}

/* One assertion in CORE's mapping: {id, predicate, type, value, confidence, status,
 * first_seen_at, last_seen_at}, value taken from the column its object_type names. */
static void write_assertion(struct eg_jw *jw, const PGresult *res, int row)
{
    const char *type = eg__api_get(res, row, "object_type");
    const char *value_col = "value_string";

    if (type != NULL && strcmp(type, "number") == 0)
        value_col = "value_number";
    else if (type != NULL && strcmp(type, "date") == 0)
        value_col = "value_date";
    else if (type != NULL && strcmp(type, "json") == 0)
        value_col = "value_json";

    eg_jw_obj_begin(jw);
    eg_jw_key(jw, "id");
    eg__api_write_field(jw, res, row, eg__api_col(res, "assertion_id"));
    eg_jw_key(jw, "predicate");
    eg__api_write_field(jw, res, row, eg__api_col(res, "predicate"));
    eg_jw_key(jw, "type");
    eg__api_write_field(jw, res, row, eg__api_col(res, "object_type"));
    eg_jw_key(jw, "value");
    eg__api_write_field(jw, res, row, eg__api_col(res, value_col));
    eg_jw_key(jw, "confidence");
    eg__api_write_field(jw, res, row, eg__api_col(res, "confidence"));
    eg_jw_key(jw, "status");
    eg__api_write_field(jw, res, row, eg__api_col(res, "status"));
    eg_jw_key(jw, "first_seen_at");
    eg__api_write_field(jw, res, row, eg__api_col(res, "first_seen_at"));
    eg_jw_key(jw, "last_seen_at");
    eg__api_write_field(jw, res, row, eg__api_col(res, "last_seen_at"));
    eg_jw_obj_end(jw);
}

static void on_claims(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                      void *data)
{
    const PGresult *assertions;
    struct eg_jw jw;
    int n;

    (void)app;
    (void)data;
    if (eg__api_db_failed(r, rep))
        return;
    if (memory_missing(r, rep->results[0]))
        return;
    assertions = rep->results[1];
    n = PQntuples(assertions);
    jw_begin(r, &jw);
    eg_jw_key(&jw, "data");
    eg_jw_arr_begin(&jw);
    for (int i = 0; i < n; i++)
        write_assertion(&jw, assertions, i);
    eg_jw_arr_end(&jw);
    eg_jw_key(&jw, "count");
    eg_jw_int(&jw, n);
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 200);
}

/*
 * CORE loads the memory and then its assertions in two round trips; both statements go in one
 * batch here and the assertions are simply not used when the memory is missing or deleted.
 */
void eg__api_mem_claims(struct eg_app *app, struct eg_http_req *r)
{
    bool ok;
    const char *values[2] = {eg__api_project(r), id_param(r, &ok)};
    struct eg_db_batch *b = batch_new(r);
    int rc;

    if (!ok || b == NULL) {
        respond_too_large(r);
        return;
    }
    rc = eg_db_batch_add(b, &st_get_state, values);
    if (rc == 0)
        rc = eg_db_batch_add(b, &st_assertions, values);
    submit(app, r, b, rc, on_claims, NULL);
}

/* ---- GET /api/v1/memories/recalls ----------------------------------------------------------- */

struct recalls_req {
    const char *key; /* "chat_id" or "memory_id": the echoed field */
    const char *id;  /* trimmed value, may hold NUL (written as \u0000) */
    size_t id_len;
    bool is_stats;
};

static void on_recalls(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                       void *data)
{
    struct recalls_req *rr = data;
    const PGresult *res;
    struct eg_jw jw;

    (void)app;
    if (eg__api_db_failed(r, rep))
        return;
    res = rep->results[0];
    jw_begin(r, &jw);
    if (rr->is_stats) {
        eg_jw_key(&jw, "memory_id");
        eg_jw_str(&jw, rr->id, rr->id_len);
        eg_jw_key(&jw, "stats");
        eg__api_write_row(&jw, res, 0, NULL);
    } else {
        eg_jw_key(&jw, "data");
        eg__api_write_rows(&jw, res, NULL);
        eg_jw_key(&jw, "count");
        eg_jw_int(&jw, PQntuples(res));
        eg_jw_key(&jw, rr->key);
        eg_jw_str(&jw, rr->id, rr->id_len);
    }
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 200);
}

/* Three modes in CORE's order: chat_id (no limit), memory_id with stats, memory_id. */
void eg__api_mem_recalls(struct eg_app *app, struct eg_http_req *r)
{
    size_t chat_len;
    size_t memory_len;
    const char *chat = query_text(r, "chat_id", &chat_len);
    const char *memory = query_text(r, "memory_id", &memory_len);
    bool is_stats = eg__api_query_bool(r, "stats", false);
    long limit = eg__api_query_int(r, "limit", 100, 1, 1000);
    struct recalls_req *rr = eg_arena_alloc(&r->arena, sizeof(*rr));
    struct eg_db_batch *b = batch_new(r);
    const char *values[3];
    const struct eg_db_stmt *stmt;

    if (chat == NULL || memory == NULL || rr == NULL || b == NULL) {
        respond_too_large(r);
        return;
    }
    if (chat_len == 0 && memory_len == 0) {
        eg__api_error_msg(r, 400, "missing_parameter", "Provide either chat_id or memory_id");
        return;
    }
    values[0] = eg__api_project(r);
    if (chat_len > 0) {
        *rr = (struct recalls_req){"chat_id", chat, chat_len, false};
        stmt = &st_recalls_chat;
    } else {
        *rr = (struct recalls_req){"memory_id", memory, memory_len, is_stats};
        stmt = is_stats ? &st_recalls_stats : &st_recalls_memory;
    }
    values[1] = pg_text(rr->id, rr->id_len);
    values[2] = num_text(r, limit);
    if (values[2] == NULL) {
        respond_too_large(r);
        return;
    }
    submit(app, r, b, eg_db_batch_add(b, stmt, values), on_recalls, rr);
}

/* ---- GET /api/v1/memories/search ------------------------------------------------------------ */

#define SEARCH_TOKENS_MAX 10

/* §6.2's stop words; tokens are compared after lower-casing. */
static const char *const stop_words[] = {
    "a",    "an",   "and",   "are",  "as",    "at",       "be",         "but",         "by",
    "does", "for",  "from",  "how",  "i",     "in",       "is",         "it",          "me",
    "my",   "of",   "on",    "or",   "our",   "personal", "preference", "preferences", "the",
    "to",   "user", "users", "what", "where", "who",      "why",        "you",         "your",
};

static bool is_stop_word(const char *t)
{
    for (size_t i = 0; i < sizeof(stop_words) / sizeof(stop_words[0]); i++) {
        if (strcmp(t, stop_words[i]) == 0)
            return true;
    }
    return false;
}

/*
 * Unicode character classes come from glibc's C.UTF-8 locale (always present on Debian), read
 * through a private locale object so the process locale stays "C". Loop thread only (the
 * static is initialised once there).
 */
static locale_t utf8_ctype(void)
{
    static locale_t loc;
    static bool is_tried;

    if (!is_tried) {
        is_tried = true;
        loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    }
    return loc;
}

/* Combining marks belong to the word they decorate ("cafe" + U+0301 is one word). */
static bool is_combining_mark(uint32_t cp)
{
    return (cp >= 0x0300 && cp <= 0x036f) || (cp >= 0x1ab0 && cp <= 0x1aff)
           || (cp >= 0x1dc0 && cp <= 0x1dff) || (cp >= 0x20d0 && cp <= 0x20ff)
           || (cp >= 0xfe20 && cp <= 0xfe2f);
}

/*
 * Token characters (DECISIONS.md item 7): CORE keeps [a-z0-9] after lower-casing and splits on
 * everything else, which cuts `café` to `caf`; engram keeps letters and digits of every script.
 * Without the C.UTF-8 locale, non-ASCII counts as a letter unless it is in a punctuation, space
 * or symbol block, which errs towards longer tokens (still correct, since ILIKE decides).
 */
static bool is_token_char(uint32_t cp)
{
    locale_t loc;

    if (cp < 0x80)
        return (cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9');
    if (is_combining_mark(cp))
        return true;
    if (cp == 0xfffd)
        return false;
    loc = utf8_ctype();
    if (loc != (locale_t)0)
        return iswalnum_l((wint_t)cp, loc) != 0;
    return !((cp >= 0x80 && cp <= 0xbf) || cp == 0xd7 || cp == 0xf7
             || (cp >= 0x2000 && cp <= 0x2bff) || (cp >= 0x3000 && cp <= 0x303f)
             || (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff0f)
             || (cp >= 0xff1a && cp <= 0xff20));
}

/* JS toLowerCase, per code point (the simple mappings; ASCII exactly as JS). */
static uint32_t to_lower(uint32_t cp)
{
    locale_t loc;

    if (cp < 0x80)
        return cp >= 'A' && cp <= 'Z' ? cp + ('a' - 'A') : cp;
    loc = utf8_ctype();
    return loc != (locale_t)0 ? (uint32_t)towlower_l((wint_t)cp, loc) : cp;
}

struct search_req {
    const char *q; /* trimmed query, echoed in "query" and "used_queries" */
    size_t q_len;
    double min_score; /* [0, 100]; gates semantic-only hits in vector mode (§6.5) */
    const char *tokens[SEARCH_TOKENS_MAX];
    size_t token_count;
};

/*
 * §6.2 with DECISIONS.md item 7: lower-case, split on non-token characters, keep tokens of JS
 * length >= 2 that are not stop words, deduplicate in order, keep the first ten. Tokens go to
 * s->tokens (arena). Returns 0 or EG_ELIMIT at the arena ceiling.
 */
static int search_tokenize(struct eg_arena *a, struct search_req *s)
{
    const unsigned char *p = (const unsigned char *)s->q;
    size_t n = s->q_len;
    char *tok = eg_arena_alloc(a, 4 * n + 1); /* a lower-cased code point fits in 4 bytes */
    size_t tok_len = 0;
    size_t i = 0;

    if (tok == NULL)
        return EG_ELIMIT;
    s->token_count = 0;
    while (s->token_count < SEARCH_TOKENS_MAX) {
        uint32_t cp = 0;
        bool is_end = i >= n;

        if (!is_end) {
            i += eg_utf8_next(p + i, n - i, &cp);
            cp = to_lower(cp);
            if (is_token_char(cp)) {
                tok_len += eg_utf8_put(tok + tok_len, cp);
                continue;
            }
        }
        if (tok_len > 0) {
            bool is_dup = false;

            tok[tok_len] = '\0';
            for (size_t k = 0; k < s->token_count && !is_dup; k++)
                is_dup = strcmp(s->tokens[k], tok) == 0;
            if (!is_dup && eg_utf16_len(tok, tok_len) >= 2 && !is_stop_word(tok)) {
                s->tokens[s->token_count] = eg_arena_strndup(a, tok, tok_len);
                if (s->tokens[s->token_count] == NULL)
                    return EG_ELIMIT;
                s->token_count++;
            }
            tok_len = 0;
        }
        if (is_end)
            break;
    }
    return 0;
}

/* Appends `%<s with \ % _ escaped>%` to b as one double-quoted array element (DECISIONS 7:
 * the query is matched literally; `\` is LIKE's default escape character). */
static int put_like_element(struct eg_buf *b, const char *s, size_t n)
{
    int rc = eg_buf_puts(b, "\"%");

    for (size_t i = 0; i < n && rc == 0; i++) {
        char c = s[i];

        if (c == '\\' || c == '%' || c == '_')
            rc = eg_buf_puts(b, "\\\\"); /* the LIKE escape, itself escaped for the array */
        if (rc == 0 && (c == '"' || c == '\\'))
            rc = eg_buf_putc(b, '\\'); /* array-literal escape */
        if (rc == 0)
            rc = eg_buf_putc(b, c);
    }
    if (rc == 0)
        rc = eg_buf_puts(b, "%\"");
    return rc;
}

/*
 * The patterns of §6.3 as a text[] literal: the whole query, then each token. A query holding
 * NUL can be no stored text's substring, so only its tokens are searched (NUL splits tokens).
 * Returns arena memory, or NULL at the arena ceiling.
 */
static const char *search_patterns(struct eg_arena *a, const struct search_req *s)
{
    struct eg_buf b;
    bool is_first = true;
    int rc;
    const char *out = NULL;

    /* An escaped query byte takes at most 4 bytes (a backslash: LIKE escape and array escape
     * for both); tokens hold no special characters and at most 4 bytes per query byte. */
    eg_buf_init(&b, 8 * (s->q_len + 1) + 16 * SEARCH_TOKENS_MAX + 64);
    rc = eg_buf_putc(&b, '{');
    if (rc == 0 && memchr(s->q, '\0', s->q_len) == NULL) {
        rc = put_like_element(&b, s->q, s->q_len);
        is_first = false;
    }
    for (size_t i = 0; i < s->token_count && rc == 0; i++) {
        if (!is_first)
            rc = eg_buf_putc(&b, ',');
        if (rc == 0)
            rc = put_like_element(&b, s->tokens[i], strlen(s->tokens[i]));
        is_first = false;
    }
    if (rc == 0)
        rc = eg_buf_putc(&b, '}');
    if (rc == 0)
        out = eg_arena_strndup(a, b.base, b.len);
    eg_buf_fini(&b);
    return out;
}

static void on_search(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                      void *data)
{
    struct search_req *s = data;
    const PGresult *res;
    struct eg_jw jw;

    (void)app;
    if (eg__api_db_failed(r, rep))
        return;
    res = rep->results[1]; /* [0] is the plan-mode setting */
    /* The columns are SearchHit's, in order; score and effective_score are float8. */
    jw_begin(r, &jw);
    eg_jw_key(&jw, "data");
    eg__api_write_rows(&jw, res, NULL);
    eg_jw_key(&jw, "query");
    eg_jw_str(&jw, s->q, s->q_len);
    eg_jw_key(&jw, "count");
    eg_jw_int(&jw, PQntuples(res));
    /* The simple recall service (§5.6): CORE's engine and mode names, the query as the only
     * query used, no predicates. Vector mode reports the same (only the scores differ). */
    eg_jw_key(&jw, "engine");
    eg_jw_cstr(&jw, "simple");
    eg_jw_key(&jw, "mode");
    eg_jw_cstr(&jw, "simple");
    eg_jw_key(&jw, "used_queries");
    eg_jw_arr_begin(&jw);
    eg_jw_str(&jw, s->q, s->q_len);
    eg_jw_arr_end(&jw);
    eg_jw_key(&jw, "predicates");
    eg_jw_arr_begin(&jw);
    eg_jw_arr_end(&jw);
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, 200);
}

/* min_score, else distance, else "30"; Number(); not finite -> 30; clamped to [0, 100]. */
static double search_min_score(struct eg_http_req *r)
{
    size_t n = 0;
    const char *raw = eg__api_query(r, "min_score", &n);
    double d;

    if (raw == NULL)
        raw = eg__api_query(r, "distance", &n);
    if (raw == NULL)
        return 30;
    d = eg__api_js_number_str(raw, n);
    if (!isfinite(d))
        return 30;
    return d < 0 ? 0 : d > 100 ? 100 : d;
}

/*
 * engram runs without embeddings, so the store search is always the lexical-only mode of §6.4
 * (min_score parsed but without effect). Vector mode (§6.5) will add the query embedding as a
 * parameter and a second statement chosen here; the response writer stays the same.
 * `context` parameters only feed the LLM recall service (§11.3) and are not read.
 */
void eg__api_mem_search(struct eg_app *app, struct eg_http_req *r)
{
    size_t subject_len;
    const char *subject = query_text(r, "subject_id", &subject_len);
    struct search_req *s = eg_arena_alloc(&r->arena, sizeof(*s));
    struct eg_db_batch *b = batch_new(r);
    const char *values[4];
    int rc;

    if (subject == NULL || s == NULL || b == NULL) {
        respond_too_large(r);
        return;
    }
    if (subject_len == 0) {
        eg_http_respond_error(r, 400, "subject_id_required");
        return;
    }
    s->q = query_text(r, "q", &s->q_len);
    if (s->q == NULL) {
        respond_too_large(r);
        return;
    }
    if (s->q_len == 0) {
        eg_http_respond_error(r, 400, "q_required");
        return;
    }
    s->min_score = search_min_score(r);
    values[0] = eg__api_project(r);
    values[1] = pg_text(subject, subject_len);
    values[2] = search_tokenize(&r->arena, s) == 0 ? search_patterns(&r->arena, s) : NULL;
    values[3] = num_text(r, eg__api_query_int(r, "limit", 25, 1, 200));
    if (values[2] == NULL || values[3] == NULL) {
        respond_too_large(r);
        return;
    }
    rc = eg_db_batch_add(b, &st_search_custom_plan, NULL);
    if (rc == 0)
        rc = eg_db_batch_add(b, &st_search_lexical, values);
    submit(app, r, b, rc, on_search, s);
}
