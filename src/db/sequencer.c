/*
 * The sequencer: committed outbox rows -> the ordered, gapless per-project event log.
 *
 *   STANDBY --try lock ok--> LEADER --batch--> (rows: again now | none: wait, backing off) --+
 *      ^                        |                                                          |
 *      +---- lock not held / connection lost <-------------------------------------------+
 *
 * Why this gives commit order per object: a write appends its outbox row after it has locked the
 * rows it changes, so a later write to the same object waits for the earlier one's commit before
 * it even allocates its outbox id. The sequencer only sees committed rows and takes them in id
 * order, so two events of one object are sequenced in their commit order. Rows of unrelated
 * writes may commit out of id order; a row that commits late is simply sequenced by a later batch
 * and gets a later seq, which every reader sees identically.
 */
#include "engram/db.h"

#include <stdio.h>
#include <string.h>

/* pg_try_advisory_lock(bigint) key; classid/objid below are its two halves. */
#define SEQ_LOCK_KEY "1701734770"
/* How long a poke waits so several commits share one sequencer transaction. */
#define SEQ_COALESCE_MS 2
#define SEQ_LOCK_HELD                                                                              \
    "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "       \
    "AND classid = 0 AND objid = " SEQ_LOCK_KEY " AND objsubid = 1 AND granted)"

enum seq_state {
    SEQ_STANDBY,
    SEQ_LEADER,
    SEQ_CLOSED,
};

struct eg_db_seq {
    uv_loop_t *loop;
    struct eg_db_pool *pool; /* one connection: the lock is per session */
    struct eg_db_seq_config cfg;
    char *conninfo;
    eg_db_seq_batch_fn *on_batch;
    void *data;
    uv_timer_t timer;
    enum seq_state state;
    bool in_flight;
    bool again;       /* poked while a batch ran */
    uint64_t idle_ms; /* current back-off while the outbox is empty */
    uint64_t next_prune_ms;
    char limit[16];
    char retention[24];
    struct eg_db_batch batch;
    struct eg_db_seq_stats stats;
    void (*on_closed)(void *data);
    void *closed_data;
    int closing;
};

static struct eg_db_stmt st_try_lock = {"seq_try_lock",
                                        "SELECT pg_try_advisory_lock(" SEQ_LOCK_KEY ")", 0, 0};

/*
 * One statement, so one transaction. The DELETE only takes rows while this session holds the
 * lock; counted/bumped give each project the next numbers of its gapless seq.
 */
/*
 * One statement, so one transaction. The DELETE only takes rows while this session holds the
 * lock; counted/bumped give each project the next numbers of its gapless seq. With the postgres
 * bus the last row of each project also calls pg_notify, so the notice commits with the batch
 * (never with a write: ARCHITECTURE.md §5); a project id too long for a NOTIFY payload is left to
 * the readers' catch-up poll.
 */
#define SEQ_MOVE(NOTIFY)                                                                           \
    "WITH moved AS ("                                                                              \
    "  DELETE FROM event_outbox WHERE id IN ("                                                     \
    "    SELECT id FROM event_outbox WHERE " SEQ_LOCK_HELD " ORDER BY id LIMIT $1::int"            \
    "    FOR UPDATE SKIP LOCKED)"                                                                  \
    "  RETURNING id, project_id, subject_id, event_type, payload, created_at), "                   \
    "counted AS (SELECT project_id, count(*) AS n FROM moved GROUP BY project_id), "               \
    "bumped AS ("                                                                                  \
    "  INSERT INTO projects AS p (project_id, last_seq) SELECT project_id, n FROM counted"         \
    "  ON CONFLICT (project_id) DO UPDATE SET last_seq = p.last_seq + EXCLUDED.last_seq"           \
    "  RETURNING p.project_id, p.last_seq, p.epoch), "                                             \
    "numbered AS (SELECT m.*, row_number() OVER (PARTITION BY m.project_id ORDER BY m.id) AS rn"   \
    "  FROM moved m), "                                                                            \
    "ins AS (INSERT INTO events (project_id, seq, subject_id, event_type, payload, created_at)"    \
    "  SELECT n.project_id, b.last_seq - c.n + n.rn, n.subject_id, n.event_type, n.payload,"       \
    "  n.created_at FROM numbered n JOIN bumped b USING (project_id) JOIN counted c"               \
    "  USING (project_id)"                                                                         \
    "  RETURNING project_id, seq, subject_id, event_type, payload, created_at) " /* The            \
                                                                                    statement's    \
                                                                                    sub-queries    \
                                                                                    share one      \
                                                                                    snapshot: the  \
                                                                                    new epoch      \
                                                                                    comes from     \
                                                                                    bumped. */     \
    "SELECT i.project_id, i.seq, i.subject_id, i.event_type, i.payload,"                           \
    " (extract(epoch FROM i.created_at) * 1000)::bigint, b.epoch" NOTIFY                           \
    " FROM ins i JOIN bumped b USING (project_id) JOIN counted c USING (project_id)"               \
    " ORDER BY i.project_id, i.seq"

static struct eg_db_stmt st_move = {"seq_move", SEQ_MOVE(""), 1, 0};

static struct eg_db_stmt st_move_notify = {
    "seq_move_notify",
    SEQ_MOVE(", CASE WHEN i.seq = b.last_seq AND octet_length(i.project_id) <= 7000 THEN"
             " pg_notify('engram_events', b.epoch || ':' || (b.last_seq - c.n + 1) || ':' ||"
             " b.last_seq || ':' || i.project_id) END"),
    1,
    0,
};

/* Retention: the leader deletes events sequenced before the window, a bounded slice at a time. */
#define PRUNE_SLICE 5000
static struct eg_db_stmt st_prune = {
    "seq_prune",
    "WITH d AS (DELETE FROM events WHERE ctid = ANY (ARRAY("
    "SELECT ctid FROM events WHERE sequenced_at < now() - make_interval(secs => $1::double "
    "precision) ORDER BY sequenced_at LIMIT 5000)) RETURNING 1) SELECT count(*) FROM d",
    1,
    0,
};
/* How often the leader looks for events to prune: a tenth of the window, 1 s to 60 s. */
#define PRUNE_EVERY_MS(s) EG_MAX(1000u, EG_MIN(60000u, (s)->cfg.retention_s * 100u))

static struct eg_db_stmt st_lock_held = {"seq_lock_held", "SELECT " SEQ_LOCK_HELD, 0, 0};

static void seq_schedule(struct eg_db_seq *s, uint64_t ms);

static void become_standby(struct eg_db_seq *s, const char *why)
{
    if (s->state == SEQ_LEADER) {
        s->stats.leader_changes_total++;
        eg_log_fields(EG_LOG_WARN, "sequencer lost the lead",
                      (struct eg_log_field[]){EG_LF_S("reason", why)}, 1);
    }
    s->state = SEQ_STANDBY;
    s->stats.is_leader = false;
    seq_schedule(s, s->cfg.standby_poll_ms);
}

static void on_moved(const struct eg_db_reply *rep, void *data)
{
    struct eg_db_seq *s = data;
    const PGresult *rows;
    int n;

    s->in_flight = false;
    if (s->state == SEQ_CLOSED)
        return;
    if (rep->status != 0) {
        become_standby(s, rep->message);
        return;
    }
    if (rep->nresults < 2 || PQgetvalue(rep->results[1], 0, 0)[0] != 't') {
        become_standby(s, "advisory lock no longer held (session was replaced)");
        return;
    }
    rows = rep->results[0];
    n = PQntuples(rows);
    if (n > 0) {
        s->stats.batches_total++;
        s->stats.events_total += (uint64_t)n;
        s->on_batch(rows, s->data);
        s->idle_ms = 1;
    }
    if (n >= s->cfg.batch_max || s->again || s->next_prune_ms <= uv_now(s->loop)) {
        s->again = false;
        seq_schedule(s, 0);
        return;
    }
    /* An empty outbox: poll again, backing off to idle_poll_ms; pokes cut the wait short. After
     * a partial batch, wait a moment so the next one carries several commits. */
    if (n == 0)
        s->idle_ms = EG_MIN(s->idle_ms * 2, s->cfg.idle_poll_ms);
    seq_schedule(s, n > 0 ? SEQ_COALESCE_MS : s->idle_ms);
}

static void on_pruned(const struct eg_db_reply *rep, void *data)
{
    struct eg_db_seq *s = data;
    long long n =
        rep->status == 0 && rep->nresults > 0 ? eg_db_get_ll(rep->results[0], 0, 0, 0) : 0;

    s->in_flight = false;
    if (s->state == SEQ_CLOSED)
        return;
    s->stats.pruned_total += (uint64_t)n;
    if (rep->status != 0)
        eg_log_fields(EG_LOG_WARN, "event retention pruning failed",
                      (struct eg_log_field[]){EG_LF_S("error", rep->message)}, 1);
    /* A full slice: more is due, after the next batch (pruning never starves sequencing). */
    s->next_prune_ms = uv_now(s->loop) + (n >= PRUNE_SLICE ? 0 : PRUNE_EVERY_MS(s));
    seq_schedule(s, 0);
}

static void on_lock(const struct eg_db_reply *rep, void *data)
{
    struct eg_db_seq *s = data;

    s->in_flight = false;
    if (s->state == SEQ_CLOSED)
        return;
    if (rep->status == 0 && rep->nresults > 0 && PQgetvalue(rep->results[0], 0, 0)[0] == 't') {
        s->state = SEQ_LEADER;
        s->stats.is_leader = true;
        s->stats.leader_changes_total++;
        s->idle_ms = 1;
        eg_log(EG_LOG_INFO, "sequencer took the lead");
        seq_schedule(s, 0);
        return;
    }
    seq_schedule(s, s->cfg.standby_poll_ms);
}

static void on_timer(uv_timer_t *t)
{
    struct eg_db_seq *s = t->data;

    if (s->in_flight || s->state == SEQ_CLOSED || !eg_db_pool_is_live(s->pool)) {
        if (s->state == SEQ_LEADER && !eg_db_pool_is_live(s->pool))
            become_standby(s, "database connection lost");
        else if (!s->in_flight && s->state != SEQ_CLOSED)
            seq_schedule(s, s->cfg.standby_poll_ms);
        return;
    }
    memset(&s->batch, 0, sizeof(s->batch));
    s->in_flight = true;
    if (s->state == SEQ_STANDBY) {
        eg_db_batch_add(&s->batch, &st_try_lock, NULL);
        eg_db_submit(s->pool, &s->batch, on_lock, s);
        return;
    }
    if (s->next_prune_ms <= uv_now(s->loop)) {
        const char *values[1] = {s->retention};

        eg_db_batch_add(&s->batch, &st_prune, values);
        eg_db_submit(s->pool, &s->batch, on_pruned, s);
        return;
    }
    {
        const char *values[1] = {s->limit};

        eg_db_batch_add(&s->batch, s->cfg.notify ? &st_move_notify : &st_move, values);
        eg_db_batch_add(&s->batch, &st_lock_held, NULL);
        eg_db_submit(s->pool, &s->batch, on_moved, s);
    }
}

static void seq_schedule(struct eg_db_seq *s, uint64_t ms)
{
    if (s->state != SEQ_CLOSED)
        uv_timer_start(&s->timer, on_timer, ms, 0);
}

static void on_pool_state(struct eg_db_pool *p, void *data)
{
    struct eg_db_seq *s = data;

    if (!eg_db_pool_is_live(p) && s->state == SEQ_LEADER)
        become_standby(s, "database connection lost");
    else if (eg_db_pool_is_live(p) && !s->in_flight)
        seq_schedule(s, 0);
}

struct eg_db_seq *eg_db_seq_new(uv_loop_t *loop, const struct eg_db_seq_config *cfg,
                                eg_db_seq_batch_fn *on_batch, void *data)
{
    struct eg_db_seq *s = eg_calloc(1, sizeof(*s));
    struct eg_db_config dc = {
        .size = 1,
        .statement_timeout_ms = 30000,
        .queue_max = 4,
        .queue_timeout_ms = 30000,
    };

    s->loop = loop;
    s->cfg = *cfg;
    s->conninfo = eg_strndup(cfg->conninfo, strlen(cfg->conninfo));
    s->cfg.conninfo = s->conninfo;
    s->on_batch = on_batch;
    s->data = data;
    s->idle_ms = 1;
    snprintf(s->limit, sizeof(s->limit), "%d", cfg->batch_max);
    snprintf(s->retention, sizeof(s->retention), "%llu", (unsigned long long)cfg->retention_s);
    /* Retention 0 keeps every event: never due. */
    s->next_prune_ms = cfg->retention_s > 0 ? uv_now(loop) + 1000 : UINT64_MAX;
    dc.conninfo = s->conninfo;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->pool = eg_db_pool_new(loop, &dc, on_pool_state, s);
    return s;
}

void eg_db_seq_poke(struct eg_db_seq *s)
{
    if (s == NULL || s->state != SEQ_LEADER)
        return;
    /*
     * Not at once: a short window lets the commits of concurrent writes share one sequencer
     * transaction (measured: at 300 writes/s an immediate run per poke cost about half of a
     * write's database CPU). The timer is only moved earlier, never later.
     */
    if (s->in_flight)
        s->again = true;
    else if (uv_timer_get_due_in(&s->timer) > SEQ_COALESCE_MS
             || !uv_is_active((uv_handle_t *)&s->timer))
        seq_schedule(s, SEQ_COALESCE_MS);
}

void eg_db_seq_get_stats(const struct eg_db_seq *s, struct eg_db_seq_stats *out)
{
    *out = s->stats;
}

static void seq_closed_part(struct eg_db_seq *s)
{
    if (--s->closing > 0)
        return;
    if (s->on_closed != NULL)
        s->on_closed(s->closed_data);
    eg_free(s->conninfo);
    eg_free(s);
}

static void on_seq_pool_closed(void *data)
{
    seq_closed_part(data);
}

static void on_seq_timer_closed(uv_handle_t *h)
{
    seq_closed_part(h->data);
}

void eg_db_seq_close(struct eg_db_seq *s, void (*on_closed)(void *data), void *data)
{
    s->state = SEQ_CLOSED;
    s->on_closed = on_closed;
    s->closed_data = data;
    s->closing = 2;
    uv_close((uv_handle_t *)&s->timer, on_seq_timer_closed);
    /* Closing the session releases the advisory lock for a standby to take. */
    eg_db_pool_close(s->pool, on_seq_pool_closed, s);
}
