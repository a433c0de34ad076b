/*
 * Idempotency-Key on POST, PATCH and DELETE (RELIABILITY.md §1.1-1.2, §2.3; docs/API.md).
 *
 * Scope: (project, principal, key), the principal being the API key's id ("" with auth off), so
 * a client never sees another client's stored response. Stored responses are keyed by the first
 * 16 bytes of SHA-256(project 0x1f principal 0x1f key) (migration 0010's eg_idem_scope), and a
 * lookup also compares the three texts. Fingerprint: SHA-256 of the method, the request target
 * (path and query) and the body bytes.
 *
 *   1. The handler runs at once. Its write batch begins with the claim, a transaction-scoped
 *      advisory lock on the scope: held elsewhere, on any instance, it is refused (EGI01) and the
 *      request gets 409 + Retry-After.
 *   2. The batch ends with the stored response, in the same transaction as the effect. Its
 *      insert meets a response already stored within the retention (ENGRAM_IDEMPOTENCY_TTL_S)
 *      as a conflict and raises EGI02; the write rolls back, and the lookup replays the stored
 *      response with `Idempotent-Replayed: true`, or refuses with 422 when the fingerprint
 *      differs. Any other failure of a keyed write is looked up the same way before it is
 *      answered: a retry's insert can fail on the very row its first execution made. So a
 *      first execution pays nothing for the check, and a retry runs (and rolls back) its write
 *      before it is answered from the store.
 *      - Any write but a memory create runs as a two-part transaction (eg_db_submit_tx): with
 *        the transaction still open, the handler renders its response (held, not sent), the
 *        response is inserted, then the commit, and only then is the response sent.
 *      - A write whose answer is known before it runs (eg__api_db_known: a memory create, whose
 *        two possible answers are rendered from the request) is one pipelined round trip, like
 *        an unkeyed one, and the leanest: no statement of its own. The statement that inserts
 *        the write's outbox row also takes the claim and inserts the answer that matches what
 *        the transaction did (EG__API_IDEM_ANSWERED in api_int.h): a duplicate in flight
 *        elsewhere holds the claim (409 + Retry-After, as above); one committed meanwhile makes
 *        the answer's insert fail with 23505, and the lookup replays it. (Up to d980987 the
 *        answer's primary key was the claim, under a 50 ms lock_timeout: set_config cost about
 *        3 us a write where the advisory lock measured nothing, and the timeout was a tuning
 *        knob: at 1 ms, 32 of about 160,000 unique-key creates were answered other than 201.)
 *        A row of the scope past the retention but not yet pruned also fails it with 23505:
 *        the lookup then deletes that row and runs the write once more. (On pgbench's model of
 *        the create, bench/api/floor.sh: a claim statement and INSERT … ON CONFLICT cost about
 *        half the stored answer's share of write throughput, 17 % against 12 %; the answer as
 *        a statement of its own instead of inside the outbox one, 13 % against 8 %.)
 *      A rollback stores nothing and sends a 503 instead.
 *   3. An answer given before any database work (a validation error) is held while the lookup
 *      runs, so a reused key is still refused with 422 and a stored response still replayed;
 *      otherwise the held answer goes out unchanged (also when the lookup fails) and nothing
 *      is stored.
 *   The extract route looks up first instead (lookup_first): it may call an LLM provider before
 *   its write, and a replay must not.
 *
 * So the stored response commits with the effect or not at all: a crash before the commit
 * leaves nothing (the lock dies with the session), a crash after it leaves the response for the
 * retry to replay. Responses are stored once execution began, 4xx included (a 404 from PATCH is
 * the result of running it); validation errors answered before any database work are not stored,
 * so a corrected retry with the same key runs (Stripe's rule). Failed transactions store nothing.
 */
#include "api_int.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define IDEM_KEY_MAX   255
#define IDEM_SCOPE_LEN 16

struct eg__api_idem {
    struct eg_app *app;
    const char *key;
    char scope[2 * IDEM_SCOPE_LEN + 1]; /* hex; PostgreSQL reads it as a uuid */
    char fingerprint[EG_AUTH_HASH_HEX + 1];
    char ttl[24];
    char hold[24];
    char status[8];
    char status_skipped[8]; /* eg__api_db_known's second answer */
    const char *principal;
    eg__api_route_fn *run;
    void *run_data;
    bool is_armed;  /* the next write batch claims the key */
    bool did_retry; /* one replay re-check after losing a race */
    enum {
        LOOKUP_FIRST,   /* before the handler runs (lookup_first) */
        LOOKUP_REFUSAL, /* for an answer held before any database work */
        LOOKUP_FAILURE, /* for a write that failed; `failure` is its reply */
    } lookup_for;
    struct eg_db_reply failure;
    char failure_state[6];
    size_t offset;           /* statements put in front of the handler's */
    struct eg_db_batch *aux; /* the lookup's or the stored answer's: see aux_batch */
    struct api_write *w;
};

/* The handler's write, wrapped (see eg__api_idem_db). */
struct api_write {
    struct eg__api_idem *idem;
    struct eg_http_req *r;
    eg__api_db_fn *fn;
    void *data;
    struct eg_db_query *q;
    const struct eg_db_batch *known; /* the whole batch of a known write, for its one rerun */
    bool handler_ran;
};

static struct eg_db_stmt st_lookup = {
    "idem_lookup",
    "SELECT encode(fingerprint, 'hex'), status, body FROM idempotency_answers "
    "WHERE scope = $1::uuid AND project_id = $2 AND principal = $3 AND idem_key = $4 "
    "AND created_at > now() - make_interval(secs => $5::int)",
    5,
    0,
};

/* The claim of a two-part write, the first statement of its batch (EG__API_IDEM_CLAIM). */
static struct eg_db_stmt st_claim = {"idem_claim", "SELECT " EG__API_IDEM_CLAIM("$1", "$2", "$3"),
                                     3, 0};

static struct eg_db_stmt st_hold = {
    "idem_test_hold",
    "SELECT pg_sleep($1::float8 / 1000)",
    1,
    0,
};

/*
 * The stores insert under the claim's lock, over an expired row of the same scope at most; a
 * response stored within the retention (the request is a retry) makes them raise EGI02, which
 * rolls the write back, and the response is replayed instead. The uniqueness check is the one
 * the insert does anyway, so a first execution pays no separate lookup. (A scope whose digest
 * collides with another's live response is refused the same way; its lookup, which compares the
 * texts, finds nothing, and the request is answered as in use.)
 */
#define STORE_SCOPE "$1::uuid, $2, $3, $4, decode($5, 'hex')"
#define STORE_CONFLICT                                                                             \
    "ON CONFLICT (scope) DO UPDATE SET project_id = EXCLUDED.project_id, "                         \
    "principal = EXCLUDED.principal, idem_key = EXCLUDED.idem_key, "                               \
    "fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status, body = EXCLUDED.body, "         \
    "created_at = now() WHERE idempotency_answers.created_at <= now() - make_interval(secs => "
#define STORE_CHECK                                                                                \
    " RETURNING 1) SELECT CASE WHEN EXISTS (SELECT 1 FROM s) THEN 0 ELSE eg_idem_refuse('EGI02') " \
    "END"

static struct eg_db_stmt st_store = {
    "idem_store",
    "WITH s AS (INSERT INTO idempotency_answers " EG__API_IDEM_ANSWER_COLS "VALUES (" STORE_SCOPE
    ", $6::int, $7) " STORE_CONFLICT "$8::int)" STORE_CHECK,
    8,
    0,
};

/* The answer of the scope if it is past the retention: a known write's insert ran into it. */
static struct eg_db_stmt st_forget = {
    "idem_forget",
    "WITH d AS (DELETE FROM idempotency_answers WHERE scope = $1::uuid "
    "AND created_at <= now() - make_interval(secs => $2::int) RETURNING 1) SELECT count(*) FROM d",
    2,
    0,
};

/* Both tables: idempotency_keys holds what instances older than migration 0010 stored. */
static struct eg_db_stmt st_prune = {
    "idem_prune",
    "WITH old AS (DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys "
    "WHERE created_at < now() - make_interval(secs => $1::int) LIMIT 10000)) "
    "DELETE FROM idempotency_answers WHERE ctid IN (SELECT ctid FROM idempotency_answers "
    "WHERE created_at < now() - make_interval(secs => $1::int) LIMIT 10000)",
    1,
    0,
};

/* ---- the header --------------------------------------------------------------------------- */

/*
 * The value as an sf-string ("...", no escapes) or a bare token: 1 to 255 printable ASCII
 * characters. Returns the key in the arena, NULL when invalid (*bad set) or absent.
 */
static const char *parse_key(struct eg_http_req *r, bool *bad)
{
    size_t n = 0;
    const char *v = eg_http_req_header(r, "idempotency-key", &n);
    bool quoted;

    *bad = false;
    if (v == NULL)
        return NULL;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    quoted = n >= 2 && v[0] == '"' && v[n - 1] == '"';
    if (quoted) {
        v++;
        n -= 2;
    }
    *bad = n == 0 || n > IDEM_KEY_MAX;
    for (size_t i = 0; i < n && !*bad; i++) {
        unsigned char c = (unsigned char)v[i];

        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\' || (!quoted && c == ' '))
            *bad = true;
    }
    if (*bad)
        return NULL;
    return eg_arena_strndup(&r->arena, v, n);
}

/* The first IDEM_SCOPE_LEN bytes of SHA-256(project 0x1f principal 0x1f key), in hex. */
static void scope_digest(struct eg__api_idem *im, const char *project)
{
    uint8_t h[EG_AUTH_HASH_LEN];
    char hex[EG_AUTH_HASH_HEX + 1];
    struct eg_buf b;

    eg_buf_init(&b, strlen(project) + strlen(im->principal) + strlen(im->key) + 2);
    eg_buf_puts(&b, project);
    eg_buf_putc(&b, 0x1f);
    eg_buf_puts(&b, im->principal);
    eg_buf_putc(&b, 0x1f);
    eg_buf_puts(&b, im->key);
    eg_auth_hash(b.base, b.len, h);
    eg_auth_hash_hex(h, hex);
    memcpy(im->scope, hex, 2 * IDEM_SCOPE_LEN);
    im->scope[2 * IDEM_SCOPE_LEN] = '\0';
    eg_buf_fini(&b);
}

static void fingerprint(struct eg_http_req *r, char out[EG_AUTH_HASH_HEX + 1])
{
    uint8_t h[EG_AUTH_HASH_LEN];
    struct eg_buf b;

    eg_buf_init(&b, r->body.len + r->target_len + 64);
    eg_buf_puts(&b, r->method_name);
    eg_buf_putc(&b, '\n');
    eg_buf_append(&b, r->target, r->target_len);
    eg_buf_putc(&b, '\n');
    if (r->body.len > 0)
        eg_buf_append(&b, r->body.base, r->body.len);
    eg_auth_hash(b.base, b.len, h);
    eg_auth_hash_hex(h, out);
    eg_buf_fini(&b);
}

/* ---- lookup and replay -------------------------------------------------------------------- */

static bool lookup(struct eg__api_idem *im, struct eg_http_req *r);
static void on_known_done(const struct eg_db_reply *rep, void *data);

/*
 * The one small batch a keyed request may need besides its write: the lookup's statements, or
 * a two-part write's stored answer (never both at once). A batch is 13 kB, so it is allocated
 * only when needed: a keyed memory create that succeeds needs none. Empty; NULL when the arena
 * is exhausted.
 */
static struct eg_db_batch *aux_batch(struct eg__api_idem *im, struct eg_http_req *r)
{
    if (im->aux == NULL && (im->aux = eg_arena_alloc(&r->arena, sizeof(*im->aux))) == NULL)
        return NULL;
    im->aux->count = 0;
    return im->aux;
}

static void busy(struct eg_http_req *r)
{
    eg_http_add_header(r, "Retry-After", "1");
    eg__api_error_msg(r, 409, "idempotency_key_in_use",
                      "A request with this Idempotency-Key is still running; retry shortly");
}

/*
 * The key is held by a write in flight: the claim was refused. Nothing is stored yet to look up.
 * (55P03 too: a lock_timeout that an operator set on the role, met by a write, is as retryable.)
 */
static bool is_busy(const struct eg_db_reply *rep)
{
    return strcmp(rep->sqlstate, "EGI01") == 0 || strcmp(rep->sqlstate, "55P03") == 0;
}

/* The write failed and no stored response explains it: answer the failure. */
static void answer_failure(struct eg__api_idem *im, const struct eg_db_reply *rep)
{
    struct api_write *w = im->w;

    if (is_busy(rep) || strcmp(rep->sqlstate, "EGI02") == 0)
        busy(w->r); /* EGI02 with nothing stored: it expired just now; the retry runs */
    else if (w->handler_ran)
        eg__api_db_failed(w->r, rep); /* its answer was discarded: the commit failed */
    else
        w->fn(im->app, w->r, rep, w->data); /* the handler answers its own failure */
}

/*
 * A keyed write failed. A failure other than a busy key may be the retry running into its own
 * first execution (the stored response raised EGI02, or the handler's insert found the row the
 * first one made: 23505), so look for a stored response before answering it. Returns false when
 * the failure is to be answered as it is.
 */
static bool look_after_failure(struct eg__api_idem *im, const struct eg_db_reply *rep)
{
    struct eg_http_req *r = im->w->r;

    if (rep->status != EG_EDB || im->did_retry || is_busy(rep) || aux_batch(im, r) == NULL)
        return false;
    im->did_retry = true;
    im->failure = *rep;
    im->failure.nresults = 0;
    im->failure.results = NULL;
    snprintf(im->failure_state, sizeof(im->failure_state), "%s", rep->sqlstate);
    im->failure.sqlstate = im->failure_state;
    im->failure.message = eg_arena_strndup(&r->arena, rep->message, strlen(rep->message));
    if (im->failure.message == NULL)
        im->failure.message = "";
    im->lookup_for = LOOKUP_FAILURE;
    eg_http_hold(r); /* whichever answer comes, on_lookup sends it last */
    lookup(im, r);   /* cannot fail: its batch is allocated */
    return true;
}

/* The response stored under r's key: replayed, or refused with 422 when r is another request. */
static void answer_stored(struct eg__api_idem *im, struct eg_http_req *r, const PGresult *res)
{
    if (strcmp(PQgetvalue(res, 0, 0), im->fingerprint) != 0) {
        eg__api_error_msg(r, 422, "idempotency_key_reused",
                          "This Idempotency-Key was used with a different request (method, path, "
                          "query or body)");
        return;
    }
    eg_http_add_header(r, "Idempotent-Replayed", "true");
    eg_http_respond_json(r, (int)eg_db_get_ll(res, 0, 1, 500), PQgetvalue(res, 0, 2),
                         (size_t)PQgetlength(res, 0, 2));
}

static void on_lookup(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                      void *data)
{
    struct eg__api_idem *im = data;
    const PGresult *res = rep->status == 0 && rep->nresults > 0 ? rep->results[0] : NULL;
    bool found = res != NULL && PQntuples(res) > 0;

    switch (im->lookup_for) {
    case LOOKUP_REFUSAL:
        /* The held answer stands unless the key was used: it needs no database to be right. */
        if (found) {
            eg_http_discard_held(r);
            answer_stored(im, r, res);
        }
        eg_http_release(r); /* may free r */
        return;
    case LOOKUP_FAILURE:
        /* A stored response wins over the failure of the write that ran into it. */
        if (found) {
            answer_stored(im, r, res);
        } else if (rep->status == 0 && rep->nresults > 1
                   && eg_db_get_ll(rep->results[1], 0, 0, 0) > 0) {
            /* A known write ran into an answer past the retention, now deleted: run it again
             * (once: did_retry is set). The handler answers when it is done. */
            im->w->q = eg_db_submit(app->db, im->w->known, on_known_done, im->w);
        } else {
            answer_failure(im, rep->status != 0 ? rep : &im->failure);
        }
        eg_http_release(r); /* may free r */
        return;
    case LOOKUP_FIRST: break;
    }
    if (eg__api_db_failed(r, rep))
        return;
    if (!found) {
        im->is_armed = true;
        im->run(app, r, im->run_data);
        return;
    }
    answer_stored(im, r, res);
}

/* Returns false, having done nothing, when its batch cannot be allocated. */
static bool lookup(struct eg__api_idem *im, struct eg_http_req *r)
{
    const char *v[5] = {im->scope, eg__api_project(r), im->principal, im->key, im->ttl};
    struct eg_db_batch *b = aux_batch(im, r);

    if (b == NULL)
        return false;
    eg_db_batch_add(b, &st_lookup, v);
    /* A known write's insert also fails on an answer past the retention (not yet pruned). */
    if (im->lookup_for == LOOKUP_FAILURE && im->w->known != NULL
        && strcmp(im->failure.sqlstate, "23505") == 0)
        eg_db_batch_add(b, &st_forget, (const char *[]){im->scope, im->ttl});
    eg__api_db(im->app, r, b, on_lookup, im);
    return true;
}

bool eg__api_idem_begin(struct eg_app *app, struct eg_http_req *r, eg__api_route_fn *run,
                        void *data, bool lookup_first)
{
    struct eg__api_idem *im;
    bool bad;
    const char *key;

    if (r->method != HTTP_POST && r->method != HTTP_PATCH && r->method != HTTP_DELETE)
        return false;
    key = parse_key(r, &bad);
    if (bad) {
        eg__api_error_msg(r, 400, "invalid_idempotency_key",
                          "Idempotency-Key must be 1 to 255 printable ASCII characters, "
                          "optionally in double quotes");
        return true;
    }
    if (key == NULL)
        return false;
    im = eg_arena_alloc(&r->arena, sizeof(*im));
    if (im == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return true;
    }
    memset(im, 0, sizeof(*im));
    im->app = app;
    im->key = key;
    im->principal = eg__api_key_id(r) != NULL ? eg__api_key_id(r) : "";
    im->run = run;
    im->run_data = data;
    snprintf(im->ttl, sizeof(im->ttl), "%llu", (unsigned long long)app->cfg->idempotency_ttl_s);
    snprintf(im->hold, sizeof(im->hold), "%llu", (unsigned long long)app->cfg->test_idem_hold_ms);
    fingerprint(r, im->fingerprint);
    scope_digest(im, eg__api_project(r));
    if (eg__api_set_idem(r, im) < 0) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return true;
    }
    if (lookup_first) {
        if (!lookup(im, r))
            eg_http_respond_error(r, 413, "payload_too_large");
        return true;
    }
    /*
     * Held while the handler runs, so an answer it gives before any database work can wait for
     * the lookup. Nothing is written while held, so r outlives run(); database replies always
     * come later, from the loop.
     */
    im->is_armed = true;
    eg_http_hold(r);
    run(app, r, data);
    if (im->is_armed && r->has_responded) {
        im->is_armed = false;
        im->lookup_for = LOOKUP_REFUSAL;
        if (lookup(im, r))
            return true;
        /* without the lookup the held answer goes out unchanged, as when it fails */
    }
    im->is_armed = false; /* an answer that comes later, without a write, is not stored */
    eg_http_release(r);   /* may free r */
    return true;
}

/* ---- the write, in two parts of one transaction ------------------------------------------- */

/* rep as the handler sees it: the results of its own statements only, not the claim's. */
static struct eg_db_reply handler_reply(const struct eg__api_idem *im,
                                        const struct eg_db_reply *rep)
{
    struct eg_db_reply mine = *rep;

    mine.results = rep->results + im->offset;
    mine.nresults = rep->nresults >= im->offset ? rep->nresults - im->offset : 0;
    return mine;
}

static const struct eg_db_batch *on_write_mid(const struct eg_db_reply *rep, void *data)
{
    struct api_write *w = data;
    struct eg__api_idem *im = w->idem;
    struct eg_http_req *r = w->r;
    struct eg_db_reply mine = handler_reply(im, rep);
    struct eg_db_batch *tail;
    const char *v[8];

    /* The handler answers into a held response. */
    eg_http_hold(r);
    w->handler_ran = true;
    w->fn(im->app, r, &mine, w->data);
    if (!r->has_responded)
        return NULL; /* an answer still to come cannot be stored; the effect commits alone */
    snprintf(im->status, sizeof(im->status), "%d", r->status);
    v[0] = im->scope;
    v[1] = eg__api_project(r);
    v[2] = im->principal;
    v[3] = im->key;
    v[4] = im->fingerprint;
    v[5] = im->status;
    v[6] = eg_arena_strndup(&r->arena, r->resp_body.base != NULL ? r->resp_body.base : "",
                            r->resp_body.len);
    v[7] = im->ttl;
    tail = aux_batch(im, r);
    if (v[6] == NULL || tail == NULL || eg_db_batch_add(tail, &st_store, v) < 0)
        return NULL;
    return tail;
}

/* The claim or the handler's statements failed, so nothing was held: answer directly. */
static void first_part_failed(struct api_write *w, const struct eg_db_reply *rep)
{
    if (!look_after_failure(w->idem, rep))
        answer_failure(w->idem, rep);
}

/* One segment, the answer stored by SQL (eg__api_db_known): the handler answers after commit. */
static void on_known_done(const struct eg_db_reply *rep, void *data)
{
    struct api_write *w = data;
    struct eg__api_idem *im = w->idem;
    struct eg_db_reply mine;

    w->q = NULL;
    if (rep->status != 0) {
        first_part_failed(w, rep);
        return;
    }
    /* The handler answers after the commit here, so its own eg__api_wrote is the poke. */
    if (im->app->cfg->test_idem_crash_after_commit)
        raise(SIGKILL); /* I5, as on_write_done */
    mine = handler_reply(im, rep);
    w->fn(im->app, w->r, &mine, w->data);
}

static void on_write_done(const struct eg_db_reply *rep, void *data)
{
    struct api_write *w = data;
    struct eg__api_idem *im = w->idem;
    struct eg_http_req *r = w->r;

    w->q = NULL;
    if (rep->status == 0) {
        eg__api_wrote(im->app);
        if (im->app->cfg->test_idem_crash_after_commit) {
            /* I5: the effect and its stored response committed; the client never hears. */
            raise(SIGKILL);
        }
        if (!w->handler_ran)
            w->fn(im->app, r, rep, w->data); /* not expected: mid runs on every success */
        else
            eg_http_release(r);
        return;
    }
    if (!w->handler_ran) {
        first_part_failed(w, rep);
        return;
    }
    /* The store or the commit failed after the handler answered: that answer must not go out. */
    eg_http_discard_held(r);
    if (look_after_failure(im, rep))
        return;
    answer_failure(im, rep);
    eg_http_release(r);
}

static void on_write_cleanup(void *data)
{
    struct api_write *w = data;

    if (w->q != NULL)
        eg_db_query_cancel(w->q); /* the pool rolls the transaction back */
}

/*
 * Makes the statement at known->answer_at of a known write's batch store its answer: it becomes
 * known->answering (EG__API_IDEM_ANSWERED), with the answer's values after its own.
 */
static int answer_in_place(struct eg__api_idem *im, struct eg_http_req *r, struct eg_db_batch *b,
                           const struct eg__api_known *known)
{
    const char **v;
    int own;

    if (known->answer_at >= b->count)
        return EG_ELIMIT; /* no statement to store the answer */
    own = b->items[known->answer_at].stmt->nparams;
    if (known->answering->nparams != own + EG__API_IDEM_ANSWER_PARAMS
        || known->answering->nparams > EG_DB_PARAMS_MAX)
        return EG_ELIMIT; /* not the statement answering wraps */
    snprintf(im->status, sizeof(im->status), "%d", known->made_status);
    snprintf(im->status_skipped, sizeof(im->status_skipped), "%d", known->skipped_status);
    v = b->items[known->answer_at].values;
    v[own + 0] = im->scope;
    v[own + 1] = eg__api_project(r);
    v[own + 2] = im->principal;
    v[own + 3] = im->key;
    v[own + 4] = im->fingerprint;
    v[own + 5] = im->status;
    v[own + 6] = known->made_body;
    v[own + 7] = im->status_skipped;
    v[own + 8] = known->skipped_body;
    b->items[known->answer_at].stmt = known->answering;
    return 0;
}

/* The key r claims for its write, or NULL (no key, or its write is under way already). */
static struct eg__api_idem *claim_write(struct eg_http_req *r)
{
    struct eg__api_idem *im = eg__api_get_idem(r);

    if (im == NULL || !im->is_armed)
        return NULL;
    im->is_armed = false; /* one write per request claims the key */
    return im;
}

/* The wrapper of im's write; NULL after answering 413. */
static struct api_write *new_write(struct eg__api_idem *im, struct eg_http_req *r,
                                   eg__api_db_fn *fn, void *data)
{
    struct api_write *w = eg_arena_alloc(&r->arena, sizeof(*w));

    if (w == NULL || eg_arena_defer(&r->arena, on_write_cleanup, w) < 0) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return NULL;
    }
    memset(w, 0, sizeof(*w));
    w->idem = im;
    w->r = r;
    w->fn = fn;
    w->data = data;
    im->w = w;
    return w;
}

bool eg__api_idem_db(struct eg_app *app, struct eg_http_req *r, const struct eg_db_batch *b,
                     eg__api_db_fn *fn, void *data)
{
    struct eg__api_idem *im = claim_write(r);
    struct api_write *w;
    struct eg_db_batch *full;
    const char *begin[3];

    if (im == NULL)
        return false;
    if ((w = new_write(im, r, fn, data)) == NULL)
        return true;
    if ((full = eg_arena_alloc(&r->arena, sizeof(*full))) == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return true;
    }
    full->count = 0;
    begin[0] = eg__api_project(r);
    begin[1] = im->principal;
    begin[2] = im->key;
    eg_db_batch_add(full, &st_claim, begin);
    if (app->cfg->test_idem_hold_ms > 0)
        eg_db_batch_add(full, &st_hold, (const char *[]){im->hold});
    im->offset = full->count;
    for (size_t i = 0; i < b->count; i++) {
        if (eg_db_batch_add(full, b->items[i].stmt, b->items[i].values) < 0) {
            eg_http_respond_error(r, 413, "payload_too_large");
            return true;
        }
    }
    w->q = eg_db_submit_tx(app->db, full, on_write_mid, on_write_done, w);
    return true;
}

bool eg__api_idem_db_known(struct eg_app *app, struct eg_http_req *r, struct eg_db_batch *b,
                           const struct eg__api_known *known, eg__api_db_fn *fn, void *data)
{
    struct eg__api_idem *im = claim_write(r);
    struct api_write *w;

    if (im == NULL)
        return false;
    if ((w = new_write(im, r, fn, data)) == NULL)
        return true;
    if (answer_in_place(im, r, b, known) < 0) {
        eg_http_respond_error(r, 500, "server_error"); /* the handler's batch does not fit */
        return true;
    }
    /* Tests hold the transaction open with its answer inserted (a duplicate is in flight). */
    if (app->cfg->test_idem_hold_ms > 0
        && eg_db_batch_add(b, &st_hold, (const char *[]){im->hold}) < 0) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return true;
    }
    im->offset = 0;
    w->known = b;
    w->q = eg_db_submit(app->db, b, on_known_done, w);
    return true;
}

/* ---- retention ---------------------------------------------------------------------------- */

int eg__api_idem_batch_prune(struct eg_db_batch *b, const char *ttl_s)
{
    return eg_db_batch_add(b, &st_prune, (const char *[]){ttl_s});
}
