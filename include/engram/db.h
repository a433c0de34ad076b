/*
 * engram db: an asynchronous PostgreSQL pool on libpq and libuv, and the migration runner.
 *
 * Each connection is non-blocking with one uv_poll_t on its socket. A query is a batch of 1..N
 * prepared statements sent in pipeline mode with one sync, so the batch is a single implicit
 * transaction and one round trip (statements are prepared on first use per connection, inside
 * the same pipeline). Connections that break are re-established with jittered exponential
 * backoff; prepared statements are re-prepared after every reconnect. All calls are loop-thread
 * only.
 *
 * Completion contract (STYLE.md §6): each eg_db_submit* produces exactly one callback, never
 * from inside the submit call, unless the query is cancelled first (cancel means detach: no
 * callback; the connection still drains the results before reuse).
 */
#ifndef EG_DB_H
#define EG_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

#include "engram/core.h"
#include "engram/obs.h"

/** A statement. Define them as static objects; slot is assigned on first use. */
struct eg_db_stmt {
    const char *name; /* unique, used as the prepared statement name */
    const char *sql;
    int nparams;
    int slot; /* private: 0 until registered */
};

#define EG_DB_BATCH_MAX  96
#define EG_DB_PARAMS_MAX 16

/** Up to EG_DB_BATCH_MAX statements run in one transaction. Values are borrowed until sent. */
struct eg_db_batch {
    size_t count;
    struct {
        const struct eg_db_stmt *stmt;
        const char *values[EG_DB_PARAMS_MAX]; /* NULL means SQL NULL; text format */
    } items[EG_DB_BATCH_MAX];
};

/** Adds stmt with values (stmt->nparams of them) to b. Returns 0 or EG_ELIMIT. */
int eg_db_batch_add(struct eg_db_batch *b, const struct eg_db_stmt *stmt,
                    const char *const *values);

/** The outcome of a query. Borrowed for the callback's duration only (PQclear runs after). */
struct eg_db_reply {
    int status;      /* 0; EG_EDB (SQL error); EG_EUNAVAIL; EG_ETIMEDOUT */
    size_t nresults; /* results of successful statements, in batch order */
    PGresult *const *results;
    const char *sqlstate; /* 5 chars on EG_EDB, else "" */
    const char *message;  /* primary message on failure, else "" */
};

typedef void eg_db_done_fn(const struct eg_db_reply *reply, void *data);

struct eg_db_config {
    const char *conninfo;          /* libpq keyword string or URI (copied) */
    int size;                      /* connections */
    uint64_t statement_timeout_ms; /* server-side; the client deadline adds a margin */
    size_t queue_max;              /* waiting queries beyond this fail at once (EG_EUNAVAIL) */
    uint64_t queue_timeout_ms;     /* a query waiting longer fails (EG_EUNAVAIL) */
};

struct eg_db_pool;
struct eg_db_query;

/** Pool gauges and counters for /metrics and health. */
struct eg_db_pool_stats {
    uint64_t idle;
    uint64_t busy;
    uint64_t connecting;
    uint64_t broken;
    uint64_t waiting;
    uint64_t rejected_total; /* queue full, no live connection, or queue timeout */
    uint64_t errors_total;   /* SQL errors */
    uint64_t reconnects_total;
    int schema_version; /* highest applied migration seen, -1 if unknown */
};

/** Called whenever the pool's readiness or known schema version changes. */
typedef void eg_db_state_fn(struct eg_db_pool *p, void *data);

/** Creates the pool and starts connecting. cfg is copied. on_state may be NULL. */
struct eg_db_pool *eg_db_pool_new(uv_loop_t *loop, const struct eg_db_config *cfg,
                                  eg_db_state_fn *on_state, void *data);
/**
 * Closes every connection; waiting and in-flight queries complete with EG_ECANCELED... no: they
 * are completed with EG_EUNAVAIL first. on_closed(data) fires once all handles are closed, after
 * which the pool is freed.
 */
void eg_db_pool_close(struct eg_db_pool *p, void (*on_closed)(void *data), void *data);
/** A NOTIFY received on one of the pool's connections (after LISTEN). Borrowed strings. */
typedef void eg_db_notify_fn(const char *channel, const char *payload, void *data);
/** Delivers notifications to fn (NULL: discard them, the default). */
void eg_db_pool_set_notify(struct eg_db_pool *p, eg_db_notify_fn *fn, void *data);
/** True when at least one connection is connected and usable. */
bool eg_db_pool_is_live(const struct eg_db_pool *p);
void eg_db_pool_get_stats(const struct eg_db_pool *p, struct eg_db_pool_stats *out);
/** db_query_duration_seconds (borrowed; valid for the pool's lifetime). */
const struct eg_hist *eg_db_pool_query_hist(const struct eg_db_pool *p);

/** Submits batch b. b and the values it points to are borrowed until the callback fires or the
 * query is cancelled (allocate them in the request arena). */
struct eg_db_query *eg_db_submit(struct eg_db_pool *p, const struct eg_db_batch *b,
                                 eg_db_done_fn *cb, void *data);
/**
 * Called once all results of a eg_db_submit_tx batch are in, while its transaction is still open
 * (only when every statement succeeded and the query was not cancelled). rep is borrowed for the
 * call. Returns further statements that run in the same transaction before it commits (borrowed
 * until the final callback), or NULL. Must not cancel or submit on the pool from inside.
 */
typedef const struct eg_db_batch *eg_db_mid_fn(const struct eg_db_reply *rep, void *data);

/**
 * Like eg_db_submit, in two parts of one transaction: b runs, mid sees its results and returns
 * the rest, then the transaction commits and cb gets the results of both parts, in order. Costs
 * one extra round trip. For writes whose stored response must commit with their effect.
 */
struct eg_db_query *eg_db_submit_tx(struct eg_db_pool *p, const struct eg_db_batch *b,
                                    eg_db_mid_fn *mid, eg_db_done_fn *cb, void *data);
/**
 * Submits sql with the simple query protocol (several statements allowed, no parameters; one
 * implicit transaction unless sql has its own BEGIN/COMMIT). For migrations and admin work.
 */
struct eg_db_query *eg_db_submit_simple(struct eg_db_pool *p, const char *sql, eg_db_done_fn *cb,
                                        void *data);
/** Detaches q: its callback will not fire. Safe until the callback has fired. */
void eg_db_query_cancel(struct eg_db_query *q);

/** Parses the text value of column col in row 0 of res as an integer; def when NULL/absent. */
long long eg_db_get_ll(const PGresult *res, int row, int col, long long def);

/* ---- migrations --------------------------------------------------------------------------- */

/** One embedded migration (generated from schema/migrations by tools/embed_sql.py). */
struct eg_db_migration {
    int version;
    const char *name;
    const char *sql;
};

extern const struct eg_db_migration eg_db_migrations[];
extern const int eg_db_migration_count;

/** The schema version this binary needs (the last embedded migration). */
int eg_db_schema_required(void);

/** Result of a migration run. */
struct eg_db_migrate_result {
    int status; /* 0 or a negative EG_E* */
    int from_version;
    int to_version;
    char message[512]; /* on failure: what failed, with the server's message */
};

typedef void eg_db_migrate_done_fn(const struct eg_db_migrate_result *res, void *data);

/**
 * Applies every missing migration in order over pool p (use a pool of size 1: the advisory lock is
 * per session). Each migration runs in its own transaction together with its schema_migrations
 * row, all under pg_advisory_lock so concurrent runners serialise. done fires once.
 */
void eg_db_migrate(struct eg_db_pool *p, eg_db_migrate_done_fn *done, void *data);

/* ---- the sequencer (ARCHITECTURE.md §5) --------------------------------------------------- */

struct eg_db_seq;

/**
 * Called on the leader after each committed batch, with the rows it sequenced (columns
 * project_id, seq, subject_id, event_type, payload, created_ms, epoch; ordered by project then
 * seq).
 * res is borrowed for the call.
 */
typedef void eg_db_seq_batch_fn(const PGresult *res, void *data);

struct eg_db_seq_config {
    const char *conninfo;
    uint64_t idle_poll_ms;    /* longest wait between polls when the outbox was empty */
    uint64_t standby_poll_ms; /* how often a standby tries to take the lead */
    int batch_max;            /* outbox rows moved per transaction */
    bool notify;              /* postgres bus: NOTIFY engram_events inside each batch */
    uint64_t retention_s;     /* the leader prunes events sequenced longer ago (0: never) */
};

struct eg_db_seq_stats {
    bool is_leader;
    uint64_t batches_total;
    uint64_t events_total;
    uint64_t leader_changes_total;
    uint64_t pruned_total;
};

/**
 * Starts the sequencer on its own connection. Exactly one sequencer in the cluster leads (it holds
 * a session-level advisory lock); the others stand by and try to take over every standby_poll_ms,
 * so a dead leader is replaced within that time once its session ends. Each batch is one
 * statement, so one transaction: it deletes up to batch_max committed outbox rows in id order,
 * advances each project's projects.last_seq, and inserts the rows into events with gapless seqs.
 * The statement only moves rows while this session holds the lock, so a reconnect that lost the
 * lock cannot sequence anything twice.
 */
struct eg_db_seq *eg_db_seq_new(uv_loop_t *loop, const struct eg_db_seq_config *cfg,
                                eg_db_seq_batch_fn *on_batch, void *data);
/** Wakes the leader now (a local write committed outbox rows). Cheap; safe on a standby. */
void eg_db_seq_poke(struct eg_db_seq *s);
void eg_db_seq_get_stats(const struct eg_db_seq *s, struct eg_db_seq_stats *out);
/** Stops and closes; on_closed(data) fires once everything is closed. */
void eg_db_seq_close(struct eg_db_seq *s, void (*on_closed)(void *data), void *data);

#endif /* EG_DB_H */
