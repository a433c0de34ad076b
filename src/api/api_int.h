/*
 * Private helpers shared by the API handlers (src/api only).
 *
 * Requests: bodies are decoded the way CORE does it (JSON.parse after trimming, `{}` when empty,
 * falsy and non-object bodies refused), values are coerced with JS semantics (String(v || ""),
 * Number(v), clamps), and query parameters are parsed as CORE parses them (with DECISIONS.md
 * item 1: an absent `limit` takes the documented default).
 *
 * Responses: database rows are written as JSON by column type (PQftype), so numbers follow JS
 * formatting, bigints become strings, timestamps become ISO-8601 UTC with milliseconds and Z,
 * and json/jsonb columns are re-emitted compactly, exactly as CORE's node-postgres path does.
 */
#ifndef EG_API_INT_H
#define EG_API_INT_H

#include <jansson.h>
#include <libpq-fe.h>

#include "engram/api.h"
#include "engram/auth.h"
#include "engram/json.h"

/* ---- request bodies ----------------------------------------------------------------------- */

/**
 * Decodes r's body as a JSON object. Returns a new reference (json_decref when done; the arena
 * does it at request end when arena_owned is true), or NULL after answering 400
 * (`invalid_json_body`, or `invalid_text` for NUL characters and invalid UTF-8, DECISIONS.md item
 * 2). An empty body (after JS trim) is {}.
 */
json_t *eg__api_body(struct eg_app *app, struct eg_http_req *r);
/** Like eg__api_body but tolerant (the retract route): invalid or non-object bodies give {}. */
json_t *eg__api_body_lenient(struct eg_app *app, struct eg_http_req *r);

/* ---- JS coercions (core-contract.md §2.6) ------------------------------------------------- */

/** JS String(v || "") then trim. v may be NULL (undefined). Returns arena memory, or NULL at the
 * arena ceiling. *len gets the byte length. */
char *eg__api_js_string(struct eg_arena *a, const json_t *v, size_t *len);
/** JS String(v) without the `|| ""` (PATCH text): null -> "null". Not trimmed. */
char *eg__api_js_string_raw(struct eg_arena *a, const json_t *v, size_t *len);
/** JS Number(v). v NULL (undefined) -> NaN. */
double eg__api_js_number(const json_t *v);
/** JS Number(s) for a string (whitespace trimmed; "" -> 0; hex/octal/binary prefixes). */
double eg__api_js_number_str(const char *s, size_t n);
/** CORE's clampInt: Number(v); not finite -> def; clamp to [min,max]; floor. */
double eg__api_clamp_int(const json_t *v, double min, double max, double def);
/** CORE's clampFloat: as clampInt without the floor. */
double eg__api_clamp_float(const json_t *v, double min, double max, double def);
/** True when v is JSON true exactly. */
bool eg__api_is_true(const json_t *v);
/** JS truthiness of v (undefined/null/false/0/NaN/"" are falsy). */
bool eg__api_truthy(const json_t *v);
/** JS trim of [s, s+n) in place: returns the new start and sets *n. */
const char *eg__api_trim(const char *s, size_t *n);

/** v formatted as a JS number (the text CORE would send to PostgreSQL), in arena memory. */
char *eg__api_num_text(struct eg_arena *a, double v);
/** prefix + a UUID v4 ("mem_", "clm_", "ast_"), in arena memory; NULL at the ceiling. */
char *eg__api_new_id(struct eg_arena *a, const char *prefix);
/**
 * CORE's tags rule as JSON text: an array gives JS String() of each element, anything else [].
 * Arena memory; NULL at the ceiling.
 */
char *eg__api_tags_json(struct eg_arena *a, const json_t *v);

/* ---- query parameters --------------------------------------------------------------------- */

/** The first query parameter name (decoded), or NULL when absent. */
char *eg__api_query(struct eg_http_req *r, const char *name, size_t *len);
/** parseIntInRange with DECISIONS.md item 1: absent -> def. */
long eg__api_query_int(struct eg_http_req *r, const char *name, long def, long min, long max);
/** parseBool: absent -> def; otherwise true only if it lower-cases to "true". */
bool eg__api_query_bool(struct eg_http_req *r, const char *name, bool def);

/* ---- responses ---------------------------------------------------------------------------- */

/** Writes column col of row as a JSON value by its type (see the file comment). */
void eg__api_write_field(struct eg_jw *jw, const PGresult *res, int row, int col);
/** Writes row as an object of every column in order, skipping columns named in skip (NULL-ended).
 */
void eg__api_write_row(struct eg_jw *jw, const PGresult *res, int row, const char *const *skip);
/** Writes the rows of res as an array of objects (eg__api_write_row). */
void eg__api_write_rows(struct eg_jw *jw, const PGresult *res, const char *const *skip);
/** Finishes jw and responds with status, or 500 when the writer failed. */
void eg__api_send(struct eg_http_req *r, struct eg_jw *jw, int status);
/** Responds with {"error":code,"message":msg}. */
void eg__api_error_msg(struct eg_http_req *r, int status, const char *code, const char *msg);
/** Converts PostgreSQL timestamptz text (UTC) to CORE's ISO form. out must hold 32 bytes. */
bool eg__api_pg_ts(const char *pg, char out[32]);
/** Column index by name, or -1. */
int eg__api_col(const PGresult *res, const char *name);
/** Text of (row, col by name), or NULL when SQL NULL or missing. */
const char *eg__api_get(const PGresult *res, int row, const char *name);

/* ---- database ----------------------------------------------------------------------------- */

typedef void eg__api_db_fn(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                           void *data);

/**
 * Runs b for r. fn runs once with the reply (success or failure), unless r ends first: the
 * request arena's cleanup cancels the query. Values in b must live in r's arena.
 */
void eg__api_db(struct eg_app *app, struct eg_http_req *r, const struct eg_db_batch *b,
                eg__api_db_fn *fn, void *data);
/**
 * The answers of a write that are fixed before it runs: made_* when the statement at index
 * answer_at of its batch (an outbox INSERT ... SELECT) inserts a row, skipped_* when it does not.
 * With an Idempotency-Key, that statement runs as answering instead: the same INSERT, storing the
 * matching answer too (EG__API_IDEM_ANSWERED). All strings are borrowed until the reply.
 */
struct eg__api_known {
    int made_status;
    const char *made_body; /* NUL-terminated, made_len bytes */
    size_t made_len;
    int skipped_status;
    const char *skipped_body;
    size_t skipped_len;
    size_t answer_at;
    const struct eg_db_stmt *answering;
};
/**
 * As eg__api_db, for a write whose answer is one of known's: with an Idempotency-Key, the
 * answer is stored by a statement in the same pipeline (one round trip, not two), b's statement
 * at known->answer_at, which this changes in place. fn must send exactly the known answer that
 * matches the result.
 */
void eg__api_db_known(struct eg_app *app, struct eg_http_req *r, struct eg_db_batch *b,
                      const struct eg__api_known *known, eg__api_db_fn *fn, void *data);
/**
 * Answers a failed reply the generic way and returns true: 503 + Retry-After when the database
 * is unavailable or timed out, otherwise 500 {"error":"server_error","message":<primary message>}
 * (CORE's shape). Returns false when rep succeeded.
 */
bool eg__api_db_failed(struct eg_http_req *r, const struct eg_db_reply *rep);

/** A write committed outbox rows: wake the sequencer so they are sequenced now. */
void eg__api_wrote(struct eg_app *app);

/** The resolved project id of r (set by the router before the handler runs). */
const char *eg__api_project(struct eg_http_req *r);
void eg__api_set_project(struct eg_http_req *r, const char *project);
/** The API key r was authenticated with (arena copy), or NULL when auth is off. */
const struct eg_auth_principal *eg__api_principal(struct eg_http_req *r);
/** The id of that key, or NULL. */
const char *eg__api_key_id(struct eg_http_req *r);
/** Stores a copy of p in r's arena. Returns 0 or EG_ELIMIT. */
int eg__api_set_principal(struct eg_http_req *r, const struct eg_auth_principal *p);

/* ---- auth, CORS and audit (src/api/auth.c) -------------------------------------------------- */

/** Continues a request once its credentials are known (p NULL: auth is off). */
typedef void eg__api_authed_fn(struct eg_app *app, struct eg_http_req *r,
                               const struct eg_auth_principal *p, void *data);

/**
 * Authenticates r from `Authorization: Bearer <key>` or `x-api-key: <key>`: from the cache when
 * fresh, else with one indexed lookup through the pool (never blocking the loop). Calls fn
 * exactly once with the principal, or answers r itself: 401 (one body for every bad credential),
 * or 503 when the database cannot answer. fn may run before this returns (cache hit).
 */
void eg__api_authenticate(struct eg_app *app, struct eg_http_req *r, eg__api_authed_fn *fn,
                          void *data);
/** Answers 403 {"error":"forbidden","required_scope":scope}. */
void eg__api_forbidden_scope(struct eg_http_req *r, unsigned scope);
/**
 * CORS (ENGRAM_CORS_ORIGINS): adds the response headers for an allowed Origin and answers a
 * preflight (OPTIONS with Access-Control-Request-Method) itself. Returns true when r was answered.
 */
bool eg__api_cors(struct eg_app *app, struct eg_http_req *r);
/**
 * A key was revoked here: forget it now and end its streams on this instance (other instances
 * learn it from their sweep).
 */
void eg__api_key_revoked(struct eg_app *app, const char *key_id);

/**
 * The audit record of a write, carried by the outbox row of the object it changed (migration
 * 0009: the rows' audit_* columns, moved into audit_log when the row is sequenced). All NULL with
 * auth off (no principal), so the row records nothing.
 */
struct eg__api_audit {
    const char *action; /* "memory.create", ...; NULL: no audit record */
    const char *key_id;
    const char *request_id;
};

/** r's audit record for action: attributed to r's key and request id, or all NULL. */
struct eg__api_audit eg__api_audit(struct eg_http_req *r, const char *action);

/*
 * The audit columns of an outbox INSERT and their values: a, k and q are the parameters holding
 * the action, key id and request id ("$2", ...), type the object type and id the SQL expression
 * of the object id. Type and id are only set with an action.
 */
#define EG__API_OUTBOX_AUDIT_COLS                                                                  \
    ", audit_action, audit_key_id, audit_request_id, audit_object_type, audit_object_id"
#define EG__API_OUTBOX_AUDIT_VALS(a, k, q, type, id)                                               \
    ", " a ", " k ", " q ", CASE WHEN (" a ") IS NOT NULL THEN '" type "' END, CASE WHEN (" a      \
    ") IS NOT NULL THEN " id " END"

/* ---- idempotency (src/api/idempotency.c) --------------------------------------------------- */

/*
 * A known write's answer, stored by the statement that inserts its outbox row rather than by a
 * statement of its own (bench/api/floor.sh: a statement fewer per keyed create). `insert`, an
 * INSERT ... SELECT with parameters $1-$4, becomes CTE o; then the answer is inserted, the made
 * one ($10, $11) when o inserted a row, else the skipped one ($12, $13), with the scope ($5
 * uuid, $6 project, $7 principal, $8 key) and the fingerprint ($9, hex): EG__API_IDEM_ANSWER_PARAMS
 * parameters after the insert's own, filled by idempotency.c. The claim is taken right before
 * the answer is inserted: the scope's transaction-scoped advisory lock (idempotency.c, st_claim),
 * refused (EGI01) while a duplicate, on any instance, holds it, so the insert never waits for a
 * duplicate's uncommitted answer. Any row of the scope, live or expired, fails it with 23505
 * (idempotency.c, look_after_failure). The claim is a volatile column of subquery w, which
 * PostgreSQL evaluates (before the answer is inserted) even though nothing reads it.
 */
#define EG__API_IDEM_ANSWER_PARAMS 9
#define EG__API_IDEM_ANSWERED(insert)                                                              \
    "WITH o AS (" insert " RETURNING 1) "                                                          \
    "INSERT INTO idempotency_answers " EG__API_IDEM_ANSWER_COLS                                    \
    "SELECT $5::uuid, $6, $7, $8, decode($9, 'hex'), CASE WHEN w.hit THEN $10::int "               \
    "ELSE $12::int END, CASE WHEN w.hit THEN $11 ELSE $13 END FROM (SELECT " EG__API_IDEM_CLAIM(   \
        "$6", "$7", "$8") " AS claim, EXISTS (SELECT 1 FROM o) AS hit) w"
/* The columns a stored answer is inserted with (migration 0010's idempotency_answers). */
#define EG__API_IDEM_ANSWER_COLS                                                                   \
    "(scope, project_id, principal, idem_key, fingerprint, status, body) "
/*
 * The claim of a scope (p project, who principal, k key: SQL text expressions) as a value: 0
 * once this transaction holds the scope's transaction-scoped advisory lock; while another
 * transaction, on any instance, holds it, EGI01 is raised (CASE evaluates eg_idem_refuse only
 * then). The hash is migration 0005's eg_idem_begin's, so instances of both versions exclude
 * each other. Every keyed write claims its scope this way (idempotency.c, st_claim).
 */
#define EG__API_IDEM_CLAIM(p, who, k)                                                              \
    "CASE WHEN pg_try_advisory_xact_lock(hashtextextended(" p " || chr(31) || " who                \
    " || chr(31) || " k ", 5)) THEN 0 ELSE eg_idem_refuse('EGI01') END"

struct eg__api_idem;
/** Runs a routed request's handler (data: the router's). */
typedef void eg__api_route_fn(struct eg_app *app, struct eg_http_req *r, void *data);

/**
 * When r is a POST, PATCH or DELETE with an Idempotency-Key: takes r over and returns true (false
 * when r has no such key: the caller runs it). It answers a bad key with 400; otherwise runs
 * run(app, r, data), with r's next write batch claiming the key (a stored response is replayed,
 * or refused with 422). With lookup_first the stored responses are looked up before run() is
 * called at all (for handlers with costly work before their write).
 */
bool eg__api_idem_begin(struct eg_app *app, struct eg_http_req *r, eg__api_route_fn *run,
                        void *data, bool lookup_first);
/**
 * eg__api_db's hook: when r is to claim a key, runs b with the claim in front and the storing of
 * the response in the same transaction, and returns true; otherwise false.
 */
bool eg__api_idem_db(struct eg_app *app, struct eg_http_req *r, const struct eg_db_batch *b,
                     eg__api_db_fn *fn, void *data);
/**
 * eg__api_db_known's hook: when r is to claim a key, makes b store the answer of known that
 * matches what it does (changing b in place), runs it and returns true; otherwise false.
 */
bool eg__api_idem_db_known(struct eg_app *app, struct eg_http_req *r, struct eg_db_batch *b,
                           const struct eg__api_known *known, eg__api_db_fn *fn, void *data);
/** Adds the pruning of responses older than ttl_s seconds (text) to b. */
int eg__api_idem_batch_prune(struct eg_db_batch *b, const char *ttl_s);
struct eg__api_idem *eg__api_get_idem(struct eg_http_req *r);
int eg__api_set_idem(struct eg_http_req *r, struct eg__api_idem *im);

/* ---- rate limits (src/api/ratelimit.c) ---------------------------------------------------- */

/** Creates the limiter from cfg (NULL when ENGRAM_RATE_LIMIT is 0). redis may be NULL. */
struct eg_api_rl *eg__api_rl_new(const struct eg_config *cfg, struct eg_redis *redis);
void eg__api_rl_free(struct eg_api_rl *rl);
/** Sends the increments counters held back (src/api/auth.c's sweep timer calls it). */
void eg__api_rl_flush(struct eg_app *app);
/**
 * Counts r against principal's window for the quota of scope (the route's scope bit; 0 for the
 * default quota) and adds the RateLimit and RateLimit-Policy headers. Returns true to go on, or
 * false after answering 429 with Retry-After. Never waits for Redis.
 */
bool eg__api_rl_check(struct eg_app *app, struct eg_http_req *r, const char *principal,
                      unsigned scope);
uint64_t eg__api_rl_limited_total(const struct eg_app *app);

/* src/api/admin_keys.c: /admin/keys (admin scope). */
void eg__api_keys_list(struct eg_app *app, struct eg_http_req *r);
void eg__api_keys_create(struct eg_app *app, struct eg_http_req *r);
void eg__api_keys_revoke(struct eg_app *app, struct eg_http_req *r);
void eg__api_keys_rotate(struct eg_app *app, struct eg_http_req *r);

/* ---- handlers (one file per resource) ------------------------------------------------------ */

/* src/api/memories_write.c */
void eg__api_mem_create(struct eg_app *app, struct eg_http_req *r);
void eg__api_mem_patch(struct eg_app *app, struct eg_http_req *r);
void eg__api_mem_delete(struct eg_app *app, struct eg_http_req *r);
void eg__api_mem_restore(struct eg_app *app, struct eg_http_req *r);
void eg__api_mem_extract(struct eg_app *app, struct eg_http_req *r);
/* src/api/memories_read.c */
void eg__api_mem_list(struct eg_app *app, struct eg_http_req *r);
void eg__api_mem_get(struct eg_app *app, struct eg_http_req *r);
void eg__api_mem_superseded(struct eg_app *app, struct eg_http_req *r);
void eg__api_mem_search(struct eg_app *app, struct eg_http_req *r);
void eg__api_mem_recalls(struct eg_app *app, struct eg_http_req *r);
void eg__api_mem_claims(struct eg_app *app, struct eg_http_req *r);
/* src/api/claims.c */
void eg__api_claim_create(struct eg_app *app, struct eg_http_req *r);
void eg__api_claim_retract(struct eg_app *app, struct eg_http_req *r);
void eg__api_claim_get(struct eg_app *app, struct eg_http_req *r);
void eg__api_subj_truth(struct eg_app *app, struct eg_http_req *r);
void eg__api_subj_slot(struct eg_app *app, struct eg_http_req *r);
void eg__api_subj_slots(struct eg_app *app, struct eg_http_req *r);
void eg__api_subj_graph(struct eg_app *app, struct eg_http_req *r);
void eg__api_subj_history(struct eg_app *app, struct eg_http_req *r);
/* src/api/events.c */
void eg__api_events(struct eg_app *app, struct eg_http_req *r);

/**
 * Decoded path parameter i (decodeURIComponent semantics) in r's arena, or NULL at the arena
 * ceiling. *len gets its length.
 */
const char *eg__api_param(struct eg_http_req *r, size_t i, size_t *len);

/* ---- claims (shared by POST /claims, extract with learn and POST /memories) ---------------- */

/** One claim to create, as createClaim takes it (core-contract.md §9.1). Strings are arena. */
struct eg__api_claim_in {
    const char *claim_id;
    const char *subject_id;
    const char *predicate;
    const char *object_value;
    const char *slot;
    const char *claim_type;
    const char *confidence; /* text of the clamped number */
    const char *importance;
    const char *tags_json;        /* JSON array of strings */
    const char *source_memory_id; /* NULL for none */
    const char *source_observation_id;
    const char *subject_entity;
    const char *valid_from; /* NULL for none; cast to timestamptz by the database */
    const char *valid_until;
};

/**
 * Adds createClaim's three statements (claim, assertion, slot upsert) for c in project to b.
 * When source_memory_id is set the claim is only written if that memory exists in project; with
 * memory_in_tx it must moreover have been inserted by this same transaction (POST /memories,
 * whose insert may be skipped as a duplicate). The claim statement returns the new row's
 * response fields; zero rows means it was not written.
 */
int eg__api_batch_add_claim(struct eg_db_batch *b, struct eg_arena *a, const char *project,
                            const struct eg__api_claim_in *c, bool memory_in_tx);

/**
 * Adds the opt-in claim.created and slot.updated events (DECISIONS.md item 10) of claim_id, if this
 * transaction wrote it. confidence is the claim's confidence as JS number text; audit, when not
 * NULL, rides on claim.created (a claim derived from a memory is recorded with that memory).
 * Outbox rows close a write: add these after the write's other statements.
 */
int eg__api_batch_add_claim_events(struct eg_db_batch *b, const char *claim_id,
                                   const char *confidence, const struct eg__api_audit *audit);

#endif /* EG_API_INT_H */
