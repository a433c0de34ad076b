/*
 * Asynchronous PostgreSQL pool.
 *
 * Connection states (only this file changes them):
 *
 *   DOWN ──timer──> RESOLVING ──> CONNECTING ──PQconnectPoll OK──> SETUP ──schema query──> IDLE
 *     ^                 │              │                              │                    │ ^
 *     └──── backoff ────┴──────────────┴────────── failure ───────────┴──── BUSY <─────────┘ │
 *                                                                          └── results ──────┘
 *
 * One uv_poll_t per libpq socket, re-created when PQsocket changes during connect (libpq may
 * close and reopen the socket, even under the same number: INTEGRATION.md §1.2). A poll error is
 * handled as readable+writable so libpq itself finds and reports the socket error (§1.0); libuv
 * stops the handle on POLLERR, so the watch is always re-armed after one.
 *
 * A batch goes out in pipeline mode: for each statement an optional PQsendPrepare (first use on
 * this connection) and a PQsendQueryPrepared, then one PQpipelineSync. The segment is one
 * implicit transaction: any error rolls all of it back. Results come back in the order sent; the
 * conn keeps the list of what it expects (prepare, exec, sync) and walks it.
 *
 * Failures never block or hang: a dead server shows up as a read error or EOF, a hung one as the
 * client-side query deadline (statement_timeout plus a margin), after which the connection is
 * dropped and re-established. Queries waiting while no connection is live fail at once with
 * EG_EUNAVAIL, so the HTTP layer answers 503 instead of queueing against a database that is down.
 */
#include "engram/db.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEADLINE_MARGIN_MS 2000
#define CONNECT_TIMEOUT_MS 5000
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     5000
#define MAX_SLOTS          256

enum conn_state {
    DBC_DOWN,
    DBC_RESOLVING,
    DBC_CONNECTING,
    DBC_SETUP,
    DBC_IDLE,
    DBC_BUSY,
    DBC_CLOSED,
};

enum item_kind {
    ITEM_PREPARE,
    ITEM_EXEC,
    ITEM_SYNC,
    ITEM_MID, /* eg_db_submit_tx: the first part's results are in; ask for the rest */
};

enum query_where {
    Q_WAITING,
    Q_RUNNING,
    Q_POSTED,
};

struct eg_db_query {
    struct eg_db_pool *pool;
    const struct eg_db_batch *batch;
    const char *sql; /* simple protocol text, borrowed */
    bool is_simple;
    bool is_internal;  /* the pool's own schema probe */
    eg_db_done_fn *cb; /* NULL once cancelled */
    eg_db_mid_fn *mid; /* eg_db_submit_tx: called before the transaction ends */
    void *data;
    enum query_where where;
    uint64_t queued_ms;
    uint64_t start_ns;
    int post_status; /* for posted failures */
    const char *post_message;
    struct eg_db_query *next;
    struct eg_db_query *prev;
};

struct db_conn {
    struct eg_db_pool *pool;
    PGconn *pg;
    uv_poll_t *poll; /* heap: replaced when the socket changes */
    int fd;
    int events;
    uv_timer_t timer; /* backoff, connect timeout, query deadline */
    uv_getaddrinfo_t gai;
    enum conn_state state;
    unsigned attempt;
    uint8_t prepared[MAX_SLOTS / 8];
    struct eg_db_query *cur;
    /* what the current pipeline will answer, in order */
    uint8_t kinds[4 * EG_DB_BATCH_MAX + 2];
    uint8_t slots[4 * EG_DB_BATCH_MAX + 2];
    size_t nitems;
    size_t pos;
    bool in_pipeline;
    PGresult *results[EG_DB_BATCH_MAX];
    size_t nresults;
    int status;
    char sqlstate[6];
    char message[256];
};

struct eg_db_pool {
    uv_loop_t *loop;
    struct eg_db_config cfg;
    char *conninfo;
    char *resolve_host; /* a host name to resolve before connecting, or NULL */
    char hostaddr[INET6_ADDRSTRLEN];
    char options[160];
    struct db_conn *conns;
    struct eg_db_query *wait_head;
    struct eg_db_query *wait_tail;
    struct eg_db_query *posted_head;
    struct eg_db_query *posted_tail;
    uv_idle_t posted_idle;
    uv_timer_t queue_timer;
    eg_db_state_fn *on_state;
    void *state_data;
    eg_db_notify_fn *on_notify;
    void *notify_data;
    struct eg_db_pool_stats stats;
    struct eg_hist query_hist;
    bool was_live;
    bool is_closing;
    int in_submit; /* inside eg_db_submit*: completions must be posted */
    int handles_open;
    void (*on_closed)(void *data);
    void *closed_data;
};

static int next_slot;

static void conn_connect(struct db_conn *c);
static void conn_fail(struct db_conn *c, int status, const char *why);
static void pool_kick(struct eg_db_pool *p);
static void on_pg_poll(uv_poll_t *h, int status, int events);

static uint64_t now_ms(struct eg_db_pool *p)
{
    return uv_now(p->loop);
}

int eg_db_batch_add(struct eg_db_batch *b, const struct eg_db_stmt *stmt, const char *const *values)
{
    if (b->count >= EG_DB_BATCH_MAX || stmt->nparams > EG_DB_PARAMS_MAX)
        return EG_ELIMIT;
    b->items[b->count].stmt = stmt;
    for (int i = 0; i < stmt->nparams; i++)
        b->items[b->count].values[i] = values[i];
    b->count++;
    return 0;
}

long long eg_db_get_ll(const PGresult *res, int row, int col, long long def)
{
    if (res == NULL || row >= PQntuples(res) || col >= PQnfields(res) || PQgetisnull(res, row, col))
        return def;
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* ---- posted completions (never complete inside submit) ------------------------------------ */

static void on_posted_idle(uv_idle_t *h)
{
    struct eg_db_pool *p = h->data;
    struct eg_db_query *q;

    while ((q = p->posted_head) != NULL) {
        struct eg_db_reply rep = {.status = q->post_status,
                                  .sqlstate = "",
                                  .message = q->post_message ? q->post_message : ""};

        p->posted_head = q->next;
        if (p->posted_head == NULL)
            p->posted_tail = NULL;
        if (q->cb != NULL)
            q->cb(&rep, q->data);
        eg_free(q);
    }
    uv_idle_stop(&p->posted_idle);
}

static void post_failure(struct eg_db_pool *p, struct eg_db_query *q, int status, const char *msg)
{
    q->where = Q_POSTED;
    q->post_status = status;
    q->post_message = msg;
    q->next = NULL;
    if (p->posted_tail != NULL)
        p->posted_tail->next = q;
    else
        p->posted_head = q;
    p->posted_tail = q;
    p->stats.rejected_total++;
    if (!p->is_closing)
        uv_idle_start(&p->posted_idle, on_posted_idle);
}

/* ---- the wait queue ----------------------------------------------------------------------- */

static void wait_unlink(struct eg_db_pool *p, struct eg_db_query *q)
{
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        p->wait_head = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    else
        p->wait_tail = q->prev;
    q->next = q->prev = NULL;
    p->stats.waiting--;
}

static void on_queue_timer(uv_timer_t *t);

static void arm_queue_timer(struct eg_db_pool *p)
{
    if (p->wait_head == NULL || p->is_closing) {
        uv_timer_stop(&p->queue_timer);
        return;
    }
    uint64_t due = p->wait_head->queued_ms + p->cfg.queue_timeout_ms;
    uint64_t now = now_ms(p);

    uv_timer_start(&p->queue_timer, on_queue_timer, due > now ? due - now : 0, 0);
}

static void on_queue_timer(uv_timer_t *t)
{
    struct eg_db_pool *p = t->data;
    uint64_t now = now_ms(p);

    while (p->wait_head != NULL && p->wait_head->queued_ms + p->cfg.queue_timeout_ms <= now) {
        struct eg_db_query *q = p->wait_head;

        wait_unlink(p, q);
        post_failure(p, q, EG_EUNAVAIL, "timed out waiting for a database connection");
    }
    arm_queue_timer(p);
}

static void fail_all_waiting(struct eg_db_pool *p, const char *why)
{
    while (p->wait_head != NULL) {
        struct eg_db_query *q = p->wait_head;

        wait_unlink(p, q);
        post_failure(p, q, EG_EUNAVAIL, why);
    }
    arm_queue_timer(p);
}

/* ---- state bookkeeping -------------------------------------------------------------------- */

void eg_db_pool_set_notify(struct eg_db_pool *p, eg_db_notify_fn *fn, void *data)
{
    p->on_notify = fn;
    p->notify_data = data;
}

bool eg_db_pool_is_live(const struct eg_db_pool *p)
{
    for (int i = 0; i < p->cfg.size; i++) {
        if (p->conns[i].state == DBC_IDLE || p->conns[i].state == DBC_BUSY)
            return true;
    }
    return false;
}

static void notify_state(struct eg_db_pool *p)
{
    bool live = eg_db_pool_is_live(p);

    if (!live && p->was_live)
        fail_all_waiting(p, "database unavailable");
    p->was_live = live;
    if (p->on_state != NULL && !p->is_closing)
        p->on_state(p, p->state_data);
}

/* ---- polling ------------------------------------------------------------------------------ */

static void on_poll_closed(uv_handle_t *h)
{
    eg_free(h);
}

static void conn_unpoll(struct db_conn *c)
{
    if (c->poll != NULL) {
        uv_close((uv_handle_t *)c->poll, on_poll_closed);
        c->poll = NULL;
    }
    c->fd = -1;
    c->events = 0;
}

/* Watches the current libpq socket for events. force re-arms even when the mask is unchanged. */
static int conn_arm(struct db_conn *c, int events, bool force)
{
    int fd = PQsocket(c->pg);

    if (fd < 0)
        return EG_EDB;
    if (c->poll != NULL && c->fd != fd)
        conn_unpoll(c);
    if (c->poll == NULL) {
        c->poll = eg_malloc(sizeof(*c->poll));
        if (uv_poll_init_socket(c->pool->loop, c->poll, fd) < 0) {
            eg_free(c->poll);
            c->poll = NULL;
            return EG_EDB;
        }
        c->poll->data = c;
        c->fd = fd;
        force = true;
    }
    if (force || events != c->events) {
        if (uv_poll_start(c->poll, events, on_pg_poll) < 0)
            return EG_EDB;
        c->events = events;
    }
    return 0;
}

/* ---- completion --------------------------------------------------------------------------- */

static void conn_clear_results(struct db_conn *c)
{
    for (size_t i = 0; i < c->nresults; i++)
        PQclear(c->results[i]);
    c->nresults = 0;
}

static void record_error(struct db_conn *c, const PGresult *r, int status)
{
    const char *state;
    const char *msg;

    if (c->status != 0)
        return; /* keep the first error; later ones are consequences */
    state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    msg = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (msg == NULL)
        msg = PQerrorMessage(c->pg);
    c->status = status;
    if (state != NULL && strcmp(state, "57014") == 0)
        c->status = EG_ETIMEDOUT;
    snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", state ? state : "");
    snprintf(c->message, sizeof(c->message), "%s", msg ? msg : "");
    /* PQerrorMessage ends in a newline; the JSON error text should not. */
    size_t n = strlen(c->message);

    while (n > 0 && (c->message[n - 1] == '\n' || c->message[n - 1] == ' '))
        c->message[--n] = '\0';
}

/*
 * Completes the current query. The callback may re-enter the pool (submit, cancel, even close
 * it), so the results are moved out of the connection first and the caller must re-check the
 * connection's state afterwards.
 */
static void conn_finish_query(struct db_conn *c)
{
    struct eg_db_pool *p = c->pool;
    struct eg_db_query *q = c->cur;
    PGresult *results[EG_DB_BATCH_MAX];
    size_t nresults = c->nresults;
    struct eg_db_reply rep;
    char sqlstate[6];
    char message[256];

    memcpy(results, c->results, nresults * sizeof(results[0]));
    memcpy(sqlstate, c->sqlstate, sizeof(sqlstate));
    memcpy(message, c->message, sizeof(message));
    c->nresults = 0;
    c->cur = NULL;
    uv_timer_stop(&c->timer);
    rep.status = c->status;
    rep.nresults = nresults;
    rep.results = results;
    rep.sqlstate = sqlstate;
    rep.message = message;
    if (rep.status == EG_EDB)
        p->stats.errors_total++;
    if (q != NULL) {
        eg_hist_observe(&p->query_hist, (double)(eg_mono_ns() - q->start_ns) / 1e9);
        if (q->is_internal) {
            /* The schema probe: a missing schema_migrations table means version 0. */
            if (rep.status == 0)
                p->stats.schema_version = (int)eg_db_get_ll(nresults ? results[0] : NULL, 0, 0, 0);
            else if (strcmp(sqlstate, "42P01") == 0)
                p->stats.schema_version = 0;
        } else if (q->cb != NULL) {
            q->cb(&rep, q->data);
        }
        eg_free(q);
    }
    for (size_t i = 0; i < nresults; i++)
        PQclear(results[i]);
}

/* ---- connection lifecycle ----------------------------------------------------------------- */

static void on_conn_timer(uv_timer_t *t);

static void conn_schedule_reconnect(struct db_conn *c)
{
    uint64_t delay = BACKOFF_MIN_MS << EG_MIN(c->attempt, 6u);
    unsigned char jitter;

    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    eg_random_bytes(&jitter, 1);
    /* full range [delay/2, delay]: reconnects of many instances do not arrive together */
    delay = delay / 2 + (delay / 2) * jitter / 255;
    c->attempt++;
    c->state = DBC_DOWN;
    uv_timer_start(&c->timer, on_conn_timer, delay, 0);
}

static void conn_fail(struct db_conn *c, int status, const char *reason)
{
    struct eg_db_pool *p = c->pool;
    bool was_live = c->state == DBC_IDLE || c->state == DBC_BUSY;
    char why[256];
    size_t n;

    /* reason often points into the PGconn (PQerrorMessage), which PQfinish frees below. */
    snprintf(why, sizeof(why), "%s", reason);
    n = strlen(why);
    while (n > 0 && (why[n - 1] == '\n' || why[n - 1] == ' '))
        why[--n] = '\0';
    if (p->in_submit > 0 && c->cur != NULL && !c->cur->is_internal) {
        /* Never complete a query inside the submit call that started it (STYLE.md §6). */
        struct eg_db_query *q = c->cur;

        c->cur = NULL;
        conn_clear_results(c);
        post_failure(p, q, status, "database connection lost");
    }

    if (c->cur != NULL) {
        if (c->status == 0) {
            c->status = status;
            snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", "");
            snprintf(c->message, sizeof(c->message), "%s", why);
        }
        conn_clear_results(c);
        conn_finish_query(c);
    }
    conn_unpoll(c);
    if (c->pg != NULL) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    memset(c->prepared, 0, sizeof(c->prepared));
    c->in_pipeline = false;
    if (was_live && !p->is_closing) {
        p->stats.reconnects_total++;
        eg_log_fields(EG_LOG_WARN, "database connection lost",
                      (struct eg_log_field[]){EG_LF_S("error", why)}, 1);
    } else if (!p->is_closing && c == &p->conns[0] && (c->attempt < 3 || c->attempt % 20 == 0)) {
        /* One connection speaks for the pool, and a long outage logs every ~minute. */
        eg_log_fields(EG_LOG_WARN, "cannot connect to the database",
                      (struct eg_log_field[]){EG_LF_S("error", why),
                                              EG_LF_I("attempt", (int64_t)c->attempt + 1)},
                      2);
    }
    if (p->is_closing) {
        c->state = DBC_CLOSED;
        return;
    }
    conn_schedule_reconnect(c);
    notify_state(p);
}

static void conn_send_probe(struct db_conn *c)
{
    struct eg_db_query *q = eg_calloc(1, sizeof(*q));

    q->pool = c->pool;
    q->is_simple = true;
    q->is_internal = true;
    q->sql = "SELECT coalesce(max(version), 0) FROM schema_migrations";
    q->start_ns = eg_mono_ns();
    q->where = Q_RUNNING;
    c->cur = q;
    c->status = 0;
    c->sqlstate[0] = '\0';
    c->message[0] = '\0';
    if (!PQsendQuery(c->pg, q->sql)) {
        conn_fail(c, EG_EUNAVAIL, PQerrorMessage(c->pg));
        return;
    }
    c->state = DBC_SETUP;
    if (conn_arm(c, UV_READABLE | UV_WRITABLE, false) < 0)
        conn_fail(c, EG_EUNAVAIL, "poll failed");
}

/* Server NOTICEs (for example "already exists, skipping" from migrations) go to the debug log. */
static void on_pg_notice(void *arg, const char *message)
{
    size_t n = strlen(message);

    (void)arg;
    while (n > 0 && message[n - 1] == '\n')
        n--;
    if (eg_log_enabled(EG_LOG_DEBUG))
        eg_log_fields(EG_LOG_DEBUG, "database notice",
                      (struct eg_log_field[]){EG_LF_SN("notice", message, n)}, 1);
}

static void conn_continue_connect(struct db_conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (conn_arm(c, UV_READABLE, true) < 0)
            conn_fail(c, EG_EUNAVAIL, "poll failed");
        break;
    case PGRES_POLLING_WRITING:
        if (conn_arm(c, UV_WRITABLE, true) < 0)
            conn_fail(c, EG_EUNAVAIL, "poll failed");
        break;
    case PGRES_POLLING_OK:
        uv_timer_stop(&c->timer);
        PQsetNoticeProcessor(c->pg, on_pg_notice, NULL);
        if (PQsetnonblocking(c->pg, 1) != 0) {
            conn_fail(c, EG_EUNAVAIL, PQerrorMessage(c->pg));
            break;
        }
        conn_send_probe(c);
        break;
    default: conn_fail(c, EG_EUNAVAIL, PQerrorMessage(c->pg)); break;
    }
}

static void conn_start_libpq(struct db_conn *c)
{
    struct eg_db_pool *p = c->pool;
    const char *keys[8];
    const char *vals[8];
    int n = 0;

    keys[n] = "dbname";
    vals[n++] = p->conninfo;
    if (p->resolve_host != NULL) {
        keys[n] = "hostaddr";
        vals[n++] = p->hostaddr;
    }
    keys[n] = "options";
    vals[n++] = p->options;
    keys[n] = "application_name";
    vals[n++] = "engramd";
    keys[n] = "keepalives_idle";
    vals[n++] = "10";
    keys[n] = "tcp_user_timeout";
    vals[n++] = "10000";
    keys[n] = NULL;
    vals[n] = NULL;
    c->pg = PQconnectStartParams(keys, vals, 1);
    if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail(c, EG_EUNAVAIL, c->pg ? PQerrorMessage(c->pg) : "out of memory");
        return;
    }
    c->state = DBC_CONNECTING;
    uv_timer_start(&c->timer, on_conn_timer, CONNECT_TIMEOUT_MS, 0);
    /* Act as if PQconnectPoll had asked for writability, as the libpq docs prescribe. */
    if (conn_arm(c, UV_WRITABLE, true) < 0)
        conn_fail(c, EG_EUNAVAIL, "poll failed");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct db_conn *c = req->data;
    struct eg_db_pool *p = c->pool;

    if (p->is_closing) {
        uv_freeaddrinfo(res);
        c->state = DBC_CLOSED;
        return;
    }
    if (status < 0 || res == NULL) {
        uv_freeaddrinfo(res);
        conn_fail(c, EG_EUNAVAIL, "could not resolve the database host name");
        return;
    }
    if (res->ai_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, p->hostaddr, sizeof(p->hostaddr));
    else
        uv_ip4_name((struct sockaddr_in *)res->ai_addr, p->hostaddr, sizeof(p->hostaddr));
    uv_freeaddrinfo(res);
    conn_start_libpq(c);
}

static void conn_connect(struct db_conn *c)
{
    struct eg_db_pool *p = c->pool;

    c->status = 0;
    if (p->resolve_host != NULL) {
        struct addrinfo hints;

        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        c->state = DBC_RESOLVING;
        c->gai.data = c;
        /* libpq would call getaddrinfo() itself, blocking the loop: resolve on the threadpool. */
        if (uv_getaddrinfo(p->loop, &c->gai, on_resolved, p->resolve_host, NULL, &hints) < 0)
            conn_fail(c, EG_EUNAVAIL, "could not resolve the database host name");
        return;
    }
    conn_start_libpq(c);
}

static void on_conn_timer(uv_timer_t *t)
{
    struct db_conn *c = t->data;

    switch (c->state) {
    case DBC_DOWN: conn_connect(c); break;
    case DBC_CONNECTING: conn_fail(c, EG_EUNAVAIL, "timed out connecting to the database"); break;
    case DBC_SETUP:
    case DBC_BUSY:
        /* The server did not answer within statement_timeout plus a margin: it or the network
         * is hung. Drop the connection; the caller gets a timeout. */
        conn_fail(c, EG_ETIMEDOUT, "database did not answer in time");
        break;
    default: break;
    }
}

/* ---- sending and receiving ---------------------------------------------------------------- */

/* Queues b's statements on c's pipeline (preparing on first use). Returns 0, or -1 after failing c.
 */
static int send_batch(struct db_conn *c, const struct eg_db_batch *b)
{
    for (size_t i = 0; i < b->count; i++) {
        struct eg_db_stmt *s = (struct eg_db_stmt *)b->items[i].stmt;

        if (s->slot == 0) {
            s->slot = ++next_slot;
            if (s->slot >= MAX_SLOTS)
                abort(); /* programmer error: raise MAX_SLOTS */
        }
        if (!(c->prepared[s->slot / 8] & (1u << (s->slot % 8)))) {
            if (!PQsendPrepare(c->pg, s->name, s->sql, s->nparams, NULL)) {
                conn_fail(c, EG_EUNAVAIL, PQerrorMessage(c->pg));
                return -1;
            }
            /* Marked now: a statement used twice in one pipeline is prepared once. A
             * failed or skipped PREPARE clears the mark again (pipeline_result). */
            c->prepared[s->slot / 8] |= (uint8_t)(1u << (s->slot % 8));
            c->kinds[c->nitems] = ITEM_PREPARE;
            c->slots[c->nitems++] = (uint8_t)s->slot;
        }
        if (!PQsendQueryPrepared(c->pg, s->name, s->nparams, b->items[i].values, NULL, NULL, 0)) {
            conn_fail(c, EG_EUNAVAIL, PQerrorMessage(c->pg));
            return -1;
        }
        c->kinds[c->nitems] = ITEM_EXEC;
        c->slots[c->nitems++] = (uint8_t)i;
    }
    return 0;
}

static void conn_send(struct db_conn *c, struct eg_db_query *q)
{
    struct eg_db_pool *p = c->pool;
    int flush;

    c->cur = q;
    q->where = Q_RUNNING;
    q->start_ns = eg_mono_ns();
    c->state = DBC_BUSY;
    c->status = 0;
    c->sqlstate[0] = '\0';
    c->message[0] = '\0';
    c->nitems = 0;
    c->pos = 0;
    if (q->is_simple) {
        if (!PQsendQuery(c->pg, q->sql)) {
            conn_fail(c, EG_EUNAVAIL, PQerrorMessage(c->pg));
            return;
        }
    } else {
        if (!PQenterPipelineMode(c->pg)) {
            conn_fail(c, EG_EUNAVAIL, PQerrorMessage(c->pg));
            return;
        }
        c->in_pipeline = true;
        if (send_batch(c, q->batch) < 0)
            return;
        if (q->mid != NULL) {
            /* The transaction stays open until the rest is sent: ask the server to flush. */
            if (!PQsendFlushRequest(c->pg)) {
                conn_fail(c, EG_EUNAVAIL, PQerrorMessage(c->pg));
                return;
            }
            c->kinds[c->nitems++] = ITEM_MID;
        } else {
            if (!PQpipelineSync(c->pg)) {
                conn_fail(c, EG_EUNAVAIL, PQerrorMessage(c->pg));
                return;
            }
            c->kinds[c->nitems++] = ITEM_SYNC;
        }
    }
    uv_timer_start(&c->timer, on_conn_timer, p->cfg.statement_timeout_ms + DEADLINE_MARGIN_MS, 0);
    flush = PQflush(c->pg);
    if (flush < 0) {
        conn_fail(c, EG_EUNAVAIL, PQerrorMessage(c->pg));
        return;
    }
    if (conn_arm(c, UV_READABLE | (flush == 1 ? UV_WRITABLE : 0), false) < 0)
        conn_fail(c, EG_EUNAVAIL, "poll failed");
}

/* Handles one pipeline result. Returns true when the whole batch is complete. */
static bool pipeline_result(struct db_conn *c, PGresult *r)
{
    enum item_kind kind = (enum item_kind)c->kinds[c->pos];
    ExecStatusType st;

    if (r == NULL) {
        /* end of one statement's results */
        if (kind != ITEM_SYNC && kind != ITEM_MID && c->pos + 1 < c->nitems)
            c->pos++;
        return false;
    }
    st = PQresultStatus(r);
    if (st == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        return true;
    }
    if (kind == ITEM_PREPARE && st != PGRES_COMMAND_OK) {
        unsigned slot = c->slots[c->pos];

        c->prepared[slot / 8] &= (uint8_t) ~(1u << (slot % 8));
    }
    if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR) {
        record_error(c, r, EG_EDB);
        PQclear(r);
        return false;
    }
    if (st == PGRES_PIPELINE_ABORTED) {
        PQclear(r);
        return false;
    }
    if (kind == ITEM_PREPARE) {
        PQclear(r);
    } else if (kind == ITEM_EXEC && c->nresults < EG_DB_BATCH_MAX) {
        c->results[c->nresults++] = r;
    } else {
        PQclear(r);
    }
    return false;
}

/*
 * eg_db_submit_tx: every result of the first part is in and the transaction is still open. The
 * caller's mid callback (which may not re-enter the pool for this query) returns the statements
 * that end it; they go out with the sync. After an error nothing is asked: the sync alone ends
 * (rolls back) the transaction. Returns 0, or -1 after failing c.
 */
static int conn_send_rest(struct db_conn *c)
{
    struct eg_db_query *q = c->cur;
    const struct eg_db_batch *rest = NULL;
    int flush;

    c->pos++; /* past ITEM_MID */
    if (c->status == 0 && (q == NULL || q->cb == NULL)) {
        /* Detached (its client went away): the first part must not commit without the rest,
         * and dropping the connection is the one sure rollback. */
        conn_fail(c, EG_ECANCELED, "two-part transaction detached; rolled back");
        return -1;
    }
    if (c->status == 0) {
        struct eg_db_reply rep = {
            .status = 0,
            .nresults = c->nresults,
            .results = c->results,
            .sqlstate = "",
            .message = "",
        };

        rest = q->mid(&rep, q->data);
    }
    if (rest != NULL && rest->count > 0 && send_batch(c, rest) < 0)
        return -1;
    if (!PQpipelineSync(c->pg)) {
        conn_fail(c, EG_EUNAVAIL, PQerrorMessage(c->pg));
        return -1;
    }
    c->kinds[c->nitems++] = ITEM_SYNC;
    flush = PQflush(c->pg);
    if (flush < 0) {
        conn_fail(c, EG_EUNAVAIL, PQerrorMessage(c->pg));
        return -1;
    }
    if (conn_arm(c, UV_READABLE | (flush == 1 ? UV_WRITABLE : 0), false) < 0) {
        conn_fail(c, EG_EUNAVAIL, "poll failed");
        return -1;
    }
    return 0;
}

static void conn_drain(struct db_conn *c)
{
    for (;;) {
        PGresult *r;
        bool done;

        /* Checked before PQisBusy: nothing more arrives until the rest is sent. */
        if (c->cur != NULL && !c->cur->is_simple && c->pos < c->nitems
            && c->kinds[c->pos] == ITEM_MID) {
            if (conn_send_rest(c) < 0)
                return;
            continue;
        }
        if (PQisBusy(c->pg))
            break;
        r = PQgetResult(c->pg);

        if (c->cur != NULL && !c->cur->is_simple) {
            done = pipeline_result(c, r);
            if (done) {
                if (!PQexitPipelineMode(c->pg)) {
                    conn_fail(c, EG_EUNAVAIL, PQerrorMessage(c->pg));
                    return;
                }
                c->in_pipeline = false;
            }
        } else {
            done = r == NULL;
            if (r != NULL) {
                ExecStatusType st = PQresultStatus(r);

                if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR)
                    record_error(c, r, EG_EDB);
                if (st == PGRES_TUPLES_OK && c->nresults < EG_DB_BATCH_MAX)
                    c->results[c->nresults++] = r;
                else
                    PQclear(r);
            }
        }
        if (done) {
            if (c->nresults > 0 && c->status != 0)
                conn_clear_results(c); /* a failed batch reports no rows */
            if (c->status == 0 && c->nresults == 0 && c->cur != NULL && !c->cur->is_simple
                && c->cur->batch->count > 0) {
                record_error(c, NULL, EG_EDB);
            }
            if (PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
                /* Never reuse a connection left inside a transaction. */
                conn_fail(c, EG_EUNAVAIL, "connection left in a transaction");
                return;
            }
            c->state = DBC_IDLE;
            conn_finish_query(c);
            /* The callback may have sent the next query on c, or closed the pool. */
            if (c->state == DBC_IDLE && c->pg != NULL && conn_arm(c, UV_READABLE, false) < 0)
                conn_fail(c, EG_EUNAVAIL, "poll failed");
            return;
        }
    }
}

/*
 * Hands on the notifications libpq has parsed, in arrival order. They arrive between and during
 * queries, and libpq parses them while it reads a query's results (PQgetResult) as well as here,
 * so this runs after every read and after the results are drained.
 */
static void conn_notifies(struct db_conn *c)
{
    struct eg_db_pool *p = c->pool;
    PGnotify *n;

    while ((n = PQnotifies(c->pg)) != NULL) {
        if (p->on_notify != NULL && !p->is_closing)
            p->on_notify(n->relname, n->extra, p->notify_data);
        PQfreemem(n);
    }
}

static void on_pg_poll(uv_poll_t *h, int status, int events)
{
    struct db_conn *c = h->data;
    struct eg_db_pool *p = c->pool;
    enum conn_state before = c->state;

    if (status < 0) {
        /* POLLERR (e.g. an RST after the server's last words): libuv has stopped the handle.
         * Let libpq discover the error itself, and forget the armed mask so that whatever is
         * armed next really restarts the watch: libpq may first return the data still queued
         * before the error, and a stopped watch would then never see the error (the query
         * would hang until its deadline). */
        events = UV_READABLE | UV_WRITABLE;
        c->events = 0;
    }
    if (c->state == DBC_CONNECTING) {
        conn_continue_connect(c);
        return;
    }
    if ((events & UV_READABLE) && !PQconsumeInput(c->pg)) {
        conn_fail(c, EG_EUNAVAIL, PQerrorMessage(c->pg));
        return;
    }
    if (events & UV_READABLE)
        conn_notifies(c);
    if (c->state == DBC_BUSY || c->state == DBC_SETUP) {
        int flush = PQflush(c->pg);

        if (flush < 0) {
            conn_fail(c, EG_EUNAVAIL, PQerrorMessage(c->pg));
            return;
        }
        if (conn_arm(c, UV_READABLE | (flush == 1 ? UV_WRITABLE : 0), false) < 0) {
            conn_fail(c, EG_EUNAVAIL, "poll failed");
            return;
        }
        conn_drain(c);
        /* Reading the results parses what came after them too: a notification that arrived
         * in the same read as a query's last result is queued only now. */
        if (c->pg != NULL)
            conn_notifies(c);
    } else if (c->state == DBC_IDLE) {
        if (PQstatus(c->pg) == CONNECTION_BAD) {
            conn_fail(c, EG_EUNAVAIL, "database connection closed");
            return;
        }
        if (c->events == 0 && conn_arm(c, UV_READABLE, false) < 0) {
            conn_fail(c, EG_EUNAVAIL, "poll failed");
            return;
        }
    }
    if (c->state == DBC_IDLE && !p->is_closing && c->pg != NULL) {
        if (before == DBC_SETUP) {
            c->attempt = 0;
            notify_state(p);
        }
        pool_kick(p);
    }
}

/* ---- pool --------------------------------------------------------------------------------- */

static void pool_kick(struct eg_db_pool *p)
{
    for (int i = 0; i < p->cfg.size && p->wait_head != NULL; i++) {
        struct db_conn *c = &p->conns[i];

        if (c->state == DBC_IDLE) {
            struct eg_db_query *q = p->wait_head;

            wait_unlink(p, q);
            conn_send(c, q);
        }
    }
    arm_queue_timer(p);
}

static struct eg_db_query *submit(struct eg_db_pool *p, struct eg_db_query *q)
{
    q->pool = p;
    q->queued_ms = now_ms(p);
    if (p->is_closing) {
        post_failure(p, q, EG_EUNAVAIL, "shutting down");
        return q;
    }
    if (!eg_db_pool_is_live(p)) {
        post_failure(p, q, EG_EUNAVAIL, "database unavailable");
        return q;
    }
    /* The cap counts queries that would wait: an idle connection takes this one at once. */
    if (p->stats.waiting >= p->cfg.queue_max) {
        for (int i = 0; i < p->cfg.size; i++) {
            if (p->conns[i].state == DBC_IDLE) {
                p->in_submit++;
                conn_send(&p->conns[i], q);
                p->in_submit--;
                return q;
            }
        }
        post_failure(p, q, EG_EUNAVAIL, "database queue full");
        return q;
    }
    p->in_submit++;
    q->where = Q_WAITING;
    q->prev = p->wait_tail;
    q->next = NULL;
    if (p->wait_tail != NULL)
        p->wait_tail->next = q;
    else
        p->wait_head = q;
    p->wait_tail = q;
    p->stats.waiting++;
    pool_kick(p);
    p->in_submit--;
    return q;
}

struct eg_db_query *eg_db_submit(struct eg_db_pool *p, const struct eg_db_batch *b,
                                 eg_db_done_fn *cb, void *data)
{
    struct eg_db_query *q = eg_calloc(1, sizeof(*q));

    q->batch = b;
    q->cb = cb;
    q->data = data;
    return submit(p, q);
}

struct eg_db_query *eg_db_submit_tx(struct eg_db_pool *p, const struct eg_db_batch *b,
                                    eg_db_mid_fn *mid, eg_db_done_fn *cb, void *data)
{
    struct eg_db_query *q = eg_calloc(1, sizeof(*q));

    q->batch = b;
    q->mid = mid;
    q->cb = cb;
    q->data = data;
    return submit(p, q);
}

struct eg_db_query *eg_db_submit_simple(struct eg_db_pool *p, const char *sql, eg_db_done_fn *cb,
                                        void *data)
{
    struct eg_db_query *q = eg_calloc(1, sizeof(*q));

    q->sql = sql;
    q->is_simple = true;
    q->cb = cb;
    q->data = data;
    return submit(p, q);
}

void eg_db_query_cancel(struct eg_db_query *q)
{
    if (q == NULL)
        return;
    if (q->where == Q_WAITING) {
        wait_unlink(q->pool, q);
        eg_free(q);
        return;
    }
    q->cb = NULL; /* running or posted: detach; the result is drained and dropped */
}

/* Splits a host name that needs resolving out of the conninfo, so libpq never resolves. */
static void plan_resolution(struct eg_db_pool *p)
{
    PQconninfoOption *opts = PQconninfoParse(p->conninfo, NULL);
    const char *host = NULL;
    const char *hostaddr = NULL;
    unsigned char tmp[sizeof(struct in6_addr)];

    if (opts == NULL)
        return;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
    }
    /* Only a single plain host name is resolved here; sockets, addresses and lists go as is. */
    if (host != NULL && host[0] != '\0' && host[0] != '/' && host[0] != '@'
        && (hostaddr == NULL || hostaddr[0] == '\0') && strchr(host, ',') == NULL
        && inet_pton(AF_INET, host, tmp) != 1 && inet_pton(AF_INET6, host, tmp) != 1)
        p->resolve_host = eg_strndup(host, strlen(host));
    PQconninfoFree(opts);
}

struct eg_db_pool *eg_db_pool_new(uv_loop_t *loop, const struct eg_db_config *cfg,
                                  eg_db_state_fn *on_state, void *data)
{
    struct eg_db_pool *p = eg_calloc(1, sizeof(*p));

    p->loop = loop;
    p->cfg = *cfg;
    p->conninfo = eg_strndup(cfg->conninfo, strlen(cfg->conninfo));
    p->cfg.conninfo = p->conninfo;
    p->on_state = on_state;
    p->state_data = data;
    p->stats.schema_version = -1;
    snprintf(p->options, sizeof(p->options),
             "-c statement_timeout=%llu -c idle_in_transaction_session_timeout=%llu "
             "-c TimeZone=UTC",
             (unsigned long long)cfg->statement_timeout_ms,
             (unsigned long long)(cfg->statement_timeout_ms * 2));
    eg_hist_init(&p->query_hist, eg_hist_latency_bounds, eg_hist_latency_nb);
    plan_resolution(p);
    uv_idle_init(loop, &p->posted_idle);
    p->posted_idle.data = p;
    uv_timer_init(loop, &p->queue_timer);
    p->queue_timer.data = p;
    p->handles_open = 2;
    p->conns = eg_calloc((size_t)cfg->size, sizeof(*p->conns));
    for (int i = 0; i < cfg->size; i++) {
        struct db_conn *c = &p->conns[i];

        c->pool = p;
        c->fd = -1;
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        p->handles_open++;
        c->state = DBC_DOWN;
        /* Stagger the first connects slightly so a pool does not open all at once. */
        uv_timer_start(&c->timer, on_conn_timer, (uint64_t)i * 5, 0);
    }
    return p;
}

void eg_db_pool_get_stats(const struct eg_db_pool *p, struct eg_db_pool_stats *out)
{
    *out = p->stats;
    out->idle = out->busy = out->connecting = out->broken = 0;
    for (int i = 0; i < p->cfg.size; i++) {
        switch (p->conns[i].state) {
        case DBC_IDLE: out->idle++; break;
        case DBC_BUSY: out->busy++; break;
        case DBC_RESOLVING:
        case DBC_CONNECTING:
        case DBC_SETUP: out->connecting++; break;
        default: out->broken++; break;
        }
    }
}

const struct eg_hist *eg_db_pool_query_hist(const struct eg_db_pool *p)
{
    return &p->query_hist;
}

static void on_pool_handle_closed(uv_handle_t *h)
{
    struct eg_db_pool *p = h->data;

    if (h->type == UV_TIMER && h != (uv_handle_t *)&p->queue_timer)
        p = ((struct db_conn *)h->data)->pool;
    if (--p->handles_open > 0)
        return;
    if (p->on_closed != NULL)
        p->on_closed(p->closed_data);
    eg_hist_fini(&p->query_hist);
    eg_free(p->conns);
    eg_free(p->conninfo);
    eg_free(p->resolve_host);
    eg_free(p);
}

void eg_db_pool_close(struct eg_db_pool *p, void (*on_closed)(void *data), void *data)
{
    if (p->is_closing)
        return;
    p->on_closed = on_closed;
    p->closed_data = data;
    fail_all_waiting(p, "shutting down");
    p->is_closing = true;
    /* Deliver every posted failure now: the idle handle is about to close. */
    on_posted_idle(&p->posted_idle);
    for (int i = 0; i < p->cfg.size; i++) {
        struct db_conn *c = &p->conns[i];

        if (c->state == DBC_RESOLVING)
            uv_cancel((uv_req_t *)&c->gai);
        if (c->state != DBC_DOWN && c->state != DBC_CLOSED && c->pg != NULL)
            conn_fail(c, EG_EUNAVAIL, "shutting down");
        on_posted_idle(&p->posted_idle);
        c->state = DBC_CLOSED;
        uv_close((uv_handle_t *)&c->timer, on_pool_handle_closed);
    }
    uv_close((uv_handle_t *)&p->posted_idle, on_pool_handle_closed);
    uv_close((uv_handle_t *)&p->queue_timer, on_pool_handle_closed);
}
