/*
 * Migration runner over the async pool (so even the CLI path never blocks a loop).
 *
 *   lock ──> ensure table ──> read version ──> apply next (one transaction each) ──> ... ──> unlock
 *
 * pg_advisory_lock is per session, so the pool must have exactly one connection. Each migration's
 * SQL and its schema_migrations row are sent as one simple-protocol string wrapped in BEGIN/COMMIT:
 * a failure rolls both back, and a concurrent runner waiting on the lock then sees the version
 * already applied and skips it.
 */
#include "engram/db.h"

#include <stdio.h>
#include <string.h>

/* Any fixed 64-bit key; "engram01" in ASCII. */
#define MIGRATE_LOCK_KEY "7306086061938667825"

enum step {
    STEP_LOCK,
    STEP_TABLE,
    STEP_VERSION,
    STEP_APPLY,
    STEP_UNLOCK,
};

struct migrate_run {
    struct eg_db_pool *pool;
    eg_db_migrate_done_fn *done;
    void *data;
    enum step step;
    int next; /* index into eg_db_migrations of the one being applied */
    struct eg_buf sql;
    struct eg_db_migrate_result res;
};

static void on_step(const struct eg_db_reply *rep, void *data);

int eg_db_schema_required(void)
{
    return eg_db_migration_count > 0 ? eg_db_migrations[eg_db_migration_count - 1].version : 0;
}

static void finish(struct migrate_run *m)
{
    m->done(&m->res, m->data);
    eg_buf_fini(&m->sql);
    eg_free(m);
}

static void run_simple(struct migrate_run *m, enum step step, const char *sql)
{
    m->step = step;
    eg_db_submit_simple(m->pool, sql, on_step, m);
}

static void apply_next(struct migrate_run *m)
{
    const struct eg_db_migration *mig;

    while (m->next < eg_db_migration_count
           && eg_db_migrations[m->next].version <= m->res.to_version)
        m->next++;
    if (m->next >= eg_db_migration_count) {
        run_simple(m, STEP_UNLOCK, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")");
        return;
    }
    mig = &eg_db_migrations[m->next];
    eg_buf_reset(&m->sql);
    eg_buf_printf(&m->sql,
                  "BEGIN;\n%s\n;INSERT INTO schema_migrations (version, name) VALUES (%d, '%s');\n"
                  "COMMIT;",
                  mig->sql, mig->version, mig->name);
    eg_log(EG_LOG_INFO, "applying migration %s", mig->name);
    run_simple(m, STEP_APPLY, m->sql.base);
}

static void on_step(const struct eg_db_reply *rep, void *data)
{
    struct migrate_run *m = data;

    if (rep->status != 0) {
        const char *what = m->step == STEP_APPLY ? eg_db_migrations[m->next].name : "setup";

        m->res.status = rep->status;
        snprintf(m->res.message, sizeof(m->res.message), "migration %s failed: %s%s%s%s", what,
                 rep->message, rep->sqlstate[0] ? " (SQLSTATE " : "", rep->sqlstate,
                 rep->sqlstate[0] ? ")" : "");
        /* The session ends with the process or the pool, which releases the advisory lock. */
        finish(m);
        return;
    }
    switch (m->step) {
    case STEP_LOCK:
        run_simple(m, STEP_TABLE,
                   "CREATE TABLE IF NOT EXISTS schema_migrations ("
                   "version integer PRIMARY KEY, name text NOT NULL, "
                   "applied_at timestamptz NOT NULL DEFAULT now())");
        break;
    case STEP_TABLE:
        run_simple(m, STEP_VERSION, "SELECT coalesce(max(version), 0) FROM schema_migrations");
        break;
    case STEP_VERSION:
        m->res.from_version =
            (int)eg_db_get_ll(rep->nresults > 0 ? rep->results[0] : NULL, 0, 0, 0);
        m->res.to_version = m->res.from_version;
        if (m->res.from_version > eg_db_schema_required()) {
            m->res.status = EG_ESCHEMA;
            snprintf(m->res.message, sizeof(m->res.message),
                     "database schema is at version %d, newer than this engramd knows (%d)",
                     m->res.from_version, eg_db_schema_required());
            finish(m);
            return;
        }
        apply_next(m);
        break;
    case STEP_APPLY:
        m->res.to_version = eg_db_migrations[m->next].version;
        m->next++;
        apply_next(m);
        break;
    case STEP_UNLOCK: finish(m); break;
    }
}

void eg_db_migrate(struct eg_db_pool *p, eg_db_migrate_done_fn *done, void *data)
{
    struct migrate_run *m = eg_calloc(1, sizeof(*m));

    m->pool = p;
    m->done = done;
    m->data = data;
    eg_buf_init(&m->sql, 16u << 20);
    run_simple(m, STEP_LOCK, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")");
}
