/*
 * The SSE hub: topics (one per project with local subscribers), subscriber cursors, delivery.
 *
 * A topic's `last` is the highest seq it has delivered to live subscribers. New seqs are learned
 * from the local sequencer (eg_sse_hub_publish) and from a periodic catch-up poll; either way the
 * topic reads `events` after `last` in pages and delivers in seq order, so every subscriber sees
 * the log's order, once, whichever instance sequenced the event.
 *
 * A subscriber is live when its cursor equals its topic's `last`; otherwise it pages forward from
 * PostgreSQL on its own (resume with Last-Event-ID) and goes live when it reaches `last`. A
 * subscriber whose unsent bytes pass max_pending_bytes is cut off: the client reconnects with its
 * Last-Event-ID and resumes from the log without loss.
 */
#include "engram/sse.h"

#include <stdio.h>
#include <string.h>

#include "engram/json.h"
#include "engram/obs.h"

#define PAGE_ROWS     "500"
#define TOPIC_BUCKETS 256

struct topic;

struct sub {
    struct eg_sse_hub *hub;
    struct eg_http_req *r;
    struct topic *t;
    char *subject;       /* NULL: every subject */
    char *key_id;        /* the API key that opened it (NULL with auth off), for revocation */
    bool include_claims; /* claim.* and slot.* events too (DECISIONS.md item 10) */
    int64_t cursor;      /* last seq this subscriber has passed */
    bool has_resume;
    int64_t resume_epoch;
    int64_t resume_seq;
    bool is_live;
    bool is_started; /* stream head and `connected` sent */
    bool is_gone;
    bool want_end;   /* ending requested; done by the end timer */
    bool awaits_log; /* resume position beyond what this instance has read: read first */
    bool was_rechecked;
    struct eg_db_query *q; /* its own catch-up page */
    struct eg_db_batch batch;
    char cursor_text[24];
    struct sub *prev;
    struct sub *next;
};

struct topic {
    struct eg_sse_hub *hub;
    char *project;
    int64_t epoch;
    int64_t last;
    bool is_ready;    /* position read from projects */
    bool wants_fetch; /* newer events exist */
    int position_attempts;
    struct eg_db_query *q;
    struct eg_db_batch batch;
    char last_text[24];
    struct sub *subs;
    size_t nsubs;
    struct topic *next; /* hash bucket chain */
};

struct eg_sse_hub {
    uv_loop_t *loop;
    struct eg_db_pool *db;
    struct eg_sse_hub_config cfg;
    struct topic *buckets[TOPIC_BUCKETS];
    uv_timer_t keepalive;
    uv_timer_t catchup;
    uv_timer_t end_timer; /* ends streams outside any iteration over topics */
    int busy;             /* iterations in progress: topic frees wait */
    bool needs_sweep;
    uint64_t ticks;
    bool is_draining;
    struct eg_sse_hub_stats stats;
    int closing;
    void (*on_closed)(void *data);
    void *closed_data;
    char retry_frame[32];
};

static struct eg_db_stmt st_position = {
    "sse_position",
    /* Creates the project's row if needed: an epoch must exist before any id is handed out. */
    "WITH ins AS (INSERT INTO projects (project_id) VALUES ($1) ON CONFLICT (project_id) "
    "DO NOTHING RETURNING last_seq, epoch) "
    "SELECT last_seq, epoch FROM ins UNION ALL "
    "SELECT last_seq, epoch FROM projects WHERE project_id = $1 LIMIT 1",
    1,
    0,
};

static struct eg_db_stmt st_page = {
    "sse_page",
    "SELECT seq, subject_id, event_type, payload FROM events WHERE project_id = $1 "
    "AND seq > $2::bigint ORDER BY seq LIMIT " PAGE_ROWS,
    2,
    0,
};

/* The oldest seq still in the log (retention prunes older ones). */
static struct eg_db_stmt st_oldest = {
    "sse_oldest",
    "SELECT coalesce(min(seq), 0) FROM events WHERE project_id = $1",
    1,
    0,
};

static void topic_fetch(struct topic *t);
static void sub_catch_up(struct sub *s);
static void topic_read_position(struct topic *t);

static unsigned hash_str(const char *s)
{
    unsigned h = 2166136261u;

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % TOPIC_BUCKETS;
}

static struct topic *topic_find(struct eg_sse_hub *h, const char *project)
{
    for (struct topic *t = h->buckets[hash_str(project)]; t != NULL; t = t->next) {
        if (strcmp(t->project, project) == 0)
            return t;
    }
    return NULL;
}

static void topic_free_if_unused(struct topic *t)
{
    struct eg_sse_hub *h = t->hub;
    struct topic **pp;

    if (t->subs != NULL || t->q != NULL)
        return;
    if (h->busy > 0) {
        h->needs_sweep = true; /* someone is walking the topics: free it afterwards */
        return;
    }
    for (pp = &h->buckets[hash_str(t->project)]; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    h->stats.topics--;
    eg_free(t->project);
    eg_free(t);
}

static void hub_unbusy(struct eg_sse_hub *h)
{
    if (--h->busy > 0 || !h->needs_sweep)
        return;
    h->needs_sweep = false;
    for (size_t b = 0; b < TOPIC_BUCKETS; b++) {
        struct topic *next;

        for (struct topic *t = h->buckets[b]; t != NULL; t = next) {
            next = t->next;
            topic_free_if_unused(t);
        }
    }
}

/* ---- writing to subscribers --------------------------------------------------------------- */

/*
 * Ending a stream can free its request, subscriber and topic synchronously, so it never happens
 * where the caller walks subscribers: it is requested here and done by the end timer.
 */
static void on_end_timer(uv_timer_t *timer)
{
    struct eg_sse_hub *h = timer->data;

    h->busy++;
    for (size_t b = 0; b < TOPIC_BUCKETS; b++) {
        for (struct topic *t = h->buckets[b]; t != NULL; t = t->next) {
            struct sub *next;

            for (struct sub *s = t->subs; s != NULL; s = next) {
                next = s->next;
                if (s->want_end && !s->is_gone)
                    eg_http_stream_end(s->r);
            }
        }
    }
    hub_unbusy(h);
}

static void sub_end(struct sub *s)
{
    if (s->is_gone || !s->is_started || s->want_end)
        return;
    s->want_end = true;
    s->is_live = false;
    uv_timer_start(&s->hub->end_timer, on_end_timer, 0, 0);
}

/* Writes one frame; a subscriber too far behind is cut off (it resumes from the log). */
static bool sub_write(struct sub *s, const char *frame, size_t len)
{
    struct eg_sse_hub *h = s->hub;

    if (s->is_gone || s->want_end)
        return false;
    if (eg_http_stream_pending(s->r) + len > h->cfg.max_pending_bytes
        || eg_http_stream_write(s->r, frame, len) < 0) {
        h->stats.dropped_total++;
        eg_log_fields(EG_LOG_WARN, "sse subscriber too slow; closing it so it resumes",
                      (struct eg_log_field[]){EG_LF_S("request_id", s->r->request_id),
                                              EG_LF_S("project", s->t->project)},
                      2);
        s->is_live = false;
        sub_end(s);
        return false;
    }
    return true;
}

static bool sub_wants(const struct sub *s, const char *subject, const char *type)
{
    /* CORE clients see exactly CORE's event types unless they ask for claim events. */
    if (!s->include_claims && strncmp(type, "memory.", 7) != 0)
        return false;
    return s->subject == NULL || strcmp(s->subject, subject) == 0;
}

/* Frames one event row (seq, subject_id, event_type, payload). Returns 0 or an error. */
static int frame_row(struct eg_buf *b, int64_t epoch, const PGresult *res, int row)
{
    char id[48];
    const char *payload = PQgetvalue(res, row, 3);

    snprintf(id, sizeof(id), "%lld:%s", (long long)epoch, PQgetvalue(res, row, 0));
    return eg_sse_frame(b, id, PQgetvalue(res, row, 2), payload, strlen(payload));
}

static void sub_send_connected(struct sub *s)
{
    struct eg_sse_hub *h = s->hub;
    struct eg_buf b;
    struct eg_jw jw;
    char ts[32];
    char id[48];
    bool reset = false;

    if (s->has_resume) {
        /*
         * A position beyond what this instance has read may still be in the log (another
         * instance sequenced it and our catch-up poll has not run yet): read the log first, and
         * only a position still ahead afterwards is unusable.
         */
        if (s->resume_epoch == s->t->epoch && s->resume_seq > s->t->last && !s->was_rechecked) {
            s->was_rechecked = true;
            s->awaits_log = true;
            topic_fetch(s->t);
            return;
        }
        /* A position from another epoch, or ahead of the log, cannot be resumed from. */
        if (s->resume_epoch != s->t->epoch || s->resume_seq > s->t->last)
            reset = true;
        else
            s->cursor = s->resume_seq;
    } else {
        s->cursor = s->t->last;
    }
    eg_buf_init(&b, 64 * 1024);
    eg_buf_puts(&b, h->retry_frame);
    if (reset) {
        h->stats.resets_total++;
        snprintf(id, sizeof(id), "%lld:%lld", (long long)s->t->epoch, (long long)s->t->last);
        {
            static const char why[] = "{\"reason\":\"position_unavailable\"}";

            eg_sse_frame(&b, id, "reset", why, sizeof(why) - 1);
        }
        s->cursor = s->t->last;
    }
    eg_time_iso(ts, eg_wall_ms());
    {
        struct eg_buf data;

        eg_buf_init(&data, 4096);
        eg_jw_init(&jw, &data);
        eg_jw_obj_begin(&jw);
        eg_jw_key(&jw, "project_id");
        eg_jw_cstr(&jw, s->t->project);
        eg_jw_key(&jw, "subject_id");
        eg_jw_cstr(&jw, s->subject);
        eg_jw_key(&jw, "timestamp");
        eg_jw_cstr(&jw, ts);
        eg_jw_obj_end(&jw);
        eg_jw_finish(&jw);
        snprintf(id, sizeof(id), "%lld:%lld", (long long)s->t->epoch, (long long)s->cursor);
        eg_sse_frame(&b, id, "connected", data.base, data.len);
        eg_buf_fini(&data);
    }
    eg_http_add_header(s->r, "Cache-Control", "no-cache, no-transform");
    eg_http_add_header(s->r, "X-Accel-Buffering", "no");
    eg_http_stream_begin(s->r, 200, "text/event-stream");
    s->is_started = true;
    if (!sub_write(s, b.base, b.len)) {
        eg_buf_fini(&b);
        return;
    }
    eg_buf_fini(&b);
    if (s->cursor == s->t->last)
        s->is_live = true;
    else
        sub_catch_up(s);
}

/* ---- subscriber catch-up pages ------------------------------------------------------------ */

static void on_sub_page(const struct eg_db_reply *rep, void *data)
{
    struct sub *s = data;
    struct eg_buf b;
    const PGresult *res;
    int n;

    s->q = NULL;
    if (s->is_gone)
        return;
    if (rep->status != 0) {
        sub_end(s); /* the client resumes from its last id */
        return;
    }
    res = rep->results[0];
    n = PQntuples(res);
    if (s->cursor > 0 && rep->nresults > 1) {
        /* The first page of a resume: a position older than the log's oldest kept seq was
         * pruned, and events in between are gone. */
        long long oldest = eg_db_get_ll(rep->results[1], 0, 0, 0);

        if (oldest > 0 && s->cursor + 1 < oldest) {
            char id[48];

            eg_buf_init(&b, 1024);
            snprintf(id, sizeof(id), "%lld:%lld", (long long)s->t->epoch, (long long)s->t->last);
            {
                static const char why[] = "{\"reason\":\"position_pruned\"}";

                eg_sse_frame(&b, id, "reset", why, sizeof(why) - 1);
            }
            s->hub->stats.resets_total++;
            s->cursor = s->t->last;
            if (sub_write(s, b.base, b.len))
                s->is_live = true;
            eg_buf_fini(&b);
            return;
        }
    }
    eg_buf_init(&b, 8u << 20);
    for (int i = 0; i < n; i++) {
        int64_t seq = eg_db_get_ll(res, i, 0, 0);

        if (seq > s->t->last)
            break; /* the topic delivers those once it has read them */
        if (sub_wants(s, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2))
            && frame_row(&b, s->t->epoch, res, i) == 0)
            s->hub->stats.caught_up_total++;
        s->cursor = seq;
    }
    if (b.len > 0 && !sub_write(s, b.base, b.len)) {
        eg_buf_fini(&b);
        return;
    }
    eg_buf_fini(&b);
    if (s->cursor >= s->t->last)
        s->is_live = true;
    else
        sub_catch_up(s);
}

static void sub_catch_up(struct sub *s)
{
    const char *page[2];
    const char *oldest[1];

    snprintf(s->cursor_text, sizeof(s->cursor_text), "%lld", (long long)s->cursor);
    page[0] = s->t->project;
    page[1] = s->cursor_text;
    oldest[0] = s->t->project;
    memset(&s->batch, 0, sizeof(s->batch));
    eg_db_batch_add(&s->batch, &st_page, page);
    eg_db_batch_add(&s->batch, &st_oldest, oldest);
    s->q = eg_db_submit(s->hub->db, &s->batch, on_sub_page, s);
}

/* ---- topics ------------------------------------------------------------------------------- */

/* Delivers rows (seq, subject_id, event_type, payload) in seq order to the live subscribers. */
static void topic_deliver(struct topic *t, const PGresult *res, int from, int to, int col_offset)
{
    struct eg_buf b;

    eg_buf_init(&b, 8u << 20);
    for (int i = from; i < to; i++) {
        int64_t seq = eg_db_get_ll(res, i, col_offset, 0);
        const char *subject = PQgetvalue(res, i, col_offset + 1);
        const char *type = PQgetvalue(res, i, col_offset + 2);
        const char *payload = PQgetvalue(res, i, col_offset + 3);
        struct sub *s;
        struct sub *next;
        char id[48];

        if (seq != t->last + 1) {
            t->wants_fetch = true; /* a gap: read the log instead */
            break;
        }
        /* Framed once, written to every live subscriber that wants it. */
        eg_buf_reset(&b);
        snprintf(id, sizeof(id), "%lld:%lld", (long long)t->epoch, (long long)seq);
        if (eg_sse_frame(&b, id, type, payload, strlen(payload)) < 0)
            eg_buf_reset(&b);
        for (s = t->subs; s != NULL; s = next) {
            next = s->next;
            if (!s->is_live || s->is_gone)
                continue;
            if (sub_wants(s, subject, type) && b.len > 0 && sub_write(s, b.base, b.len))
                t->hub->stats.delivered_total++;
            s->cursor = seq;
        }
        t->last = seq;
    }
    eg_buf_fini(&b);
}

/* Starts the subscribers that waited for this instance to read the log up to its end. */
static void topic_start_held(struct topic *t)
{
    struct sub *next;

    t->hub->busy++;
    for (struct sub *s = t->subs; s != NULL; s = next) {
        next = s->next;
        if (s->awaits_log && !s->is_gone) {
            s->awaits_log = false;
            sub_send_connected(s);
        }
    }
    hub_unbusy(t->hub);
}

static void on_topic_page(const struct eg_db_reply *rep, void *data)
{
    struct topic *t = data;
    bool again;
    int n;

    t->q = NULL;
    if (t->subs == NULL) {
        topic_free_if_unused(t);
        return;
    }
    if (rep->status != 0) {
        t->wants_fetch = true; /* the next poll retries */
        topic_start_held(t);
        return;
    }
    n = PQntuples(rep->results[0]);
    /* A fetch requested while this one was in flight may concern newer events: keep it. */
    again = t->wants_fetch;
    t->wants_fetch = false;
    topic_deliver(t, rep->results[0], 0, n, 0);
    if (n >= 500 || again || t->wants_fetch)
        topic_fetch(t);
    else
        topic_start_held(t);
}

static void topic_fetch(struct topic *t)
{
    const char *values[2];

    if (t->q != NULL || !t->is_ready) {
        t->wants_fetch = true;
        return;
    }
    snprintf(t->last_text, sizeof(t->last_text), "%lld", (long long)t->last);
    values[0] = t->project;
    values[1] = t->last_text;
    memset(&t->batch, 0, sizeof(t->batch));
    eg_db_batch_add(&t->batch, &st_page, values);
    t->q = eg_db_submit(t->hub->db, &t->batch, on_topic_page, t);
}

static void on_topic_position(const struct eg_db_reply *rep, void *data)
{
    struct topic *t = data;
    struct sub *s;
    struct sub *next;

    t->q = NULL;
    if (t->subs == NULL) {
        topic_free_if_unused(t);
        return;
    }
    /*
     * No row: another session was creating the project row, our INSERT waited for it and did
     * nothing, and the SELECT ran on the statement's older snapshot. A new statement sees the
     * row; an epoch is never invented.
     */
    if (rep->status == 0 && PQntuples(rep->results[0]) == 0 && ++t->position_attempts < 5) {
        topic_read_position(t);
        return;
    }
    if (rep->status != 0 || PQntuples(rep->results[0]) == 0) {
        /* No position, no stream: tell the waiting clients to come back. */
        t->hub->busy++;
        for (s = t->subs; s != NULL; s = next) {
            next = s->next;
            if (!s->is_started && !s->is_gone) {
                struct eg_http_req *r = s->r;

                /* Answering may free r and s at once: mark first, touch nothing after. */
                s->is_gone = true;
                eg_http_add_header(r, "Retry-After", "1");
                eg_http_respond_error(r, 503, "service_unavailable");
            }
        }
        t->position_attempts = 0;
        hub_unbusy(t->hub);
        return;
    }
    t->position_attempts = 0;
    t->last = eg_db_get_ll(rep->results[0], 0, 0, 0);
    t->epoch = eg_db_get_ll(rep->results[0], 0, 1, 0);
    t->is_ready = true;
    for (s = t->subs; s != NULL; s = next) {
        next = s->next;
        if (!s->is_started && !s->is_gone)
            sub_send_connected(s);
    }
    if (t->wants_fetch)
        topic_fetch(t);
}

static void topic_read_position(struct topic *t)
{
    const char *values[1] = {t->project};

    memset(&t->batch, 0, sizeof(t->batch));
    eg_db_batch_add(&t->batch, &st_position, values);
    t->q = eg_db_submit(t->hub->db, &t->batch, on_topic_position, t);
}

/* ---- subscriptions ------------------------------------------------------------------------ */

static void on_sub_cleanup(void *data)
{
    struct sub *s = data;
    struct topic *t = s->t;

    /* The request is being freed: its connection closed or the stream ended. */
    s->is_gone = true;
    if (s->q != NULL)
        eg_db_query_cancel(s->q);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        t->subs = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    t->nsubs--;
    s->hub->stats.subscribers--;
    topic_free_if_unused(t);
}

void eg_sse_subscribe(struct eg_sse_hub *h, struct eg_http_req *r, const char *project,
                      const char *subject, const char *last_event_id, bool include_claims,
                      const char *key_id)
{
    struct topic *t;
    struct sub *s;

    if (h->is_draining) {
        eg_http_add_header(r, "Retry-After", "1");
        eg_http_respond_error(r, 503, "service_unavailable");
        return;
    }
    s = eg_arena_alloc(&r->arena, sizeof(*s));
    if (s == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    memset(s, 0, sizeof(*s));
    s->hub = h;
    s->r = r;
    s->include_claims = include_claims;
    if (subject != NULL)
        s->subject = eg_arena_strndup(&r->arena, subject, strlen(subject));
    if (key_id != NULL)
        s->key_id = eg_arena_strndup(&r->arena, key_id, strlen(key_id));
    if (last_event_id != NULL
        && eg_sse_parse_id(last_event_id, strlen(last_event_id), &s->resume_epoch, &s->resume_seq)
               == 0)
        s->has_resume = true;
    else if (last_event_id != NULL && last_event_id[0] != '\0') {
        /* Not an id of ours: the client gets a reset, then live events. */
        s->has_resume = true;
        s->resume_epoch = -1;
    }
    t = topic_find(h, project);
    if (t == NULL) {
        unsigned b = hash_str(project);

        t = eg_calloc(1, sizeof(*t));
        t->hub = h;
        t->project = eg_strndup(project, strlen(project));
        t->next = h->buckets[b];
        h->buckets[b] = t;
        h->stats.topics++;
    }
    s->t = t;
    s->next = t->subs;
    if (t->subs != NULL)
        t->subs->prev = s;
    t->subs = s;
    t->nsubs++;
    h->stats.subscribers++;
    if (eg_arena_defer(&r->arena, on_sub_cleanup, s) < 0) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    if (t->is_ready)
        sub_send_connected(s);
    else if (t->q == NULL)
        topic_read_position(t);
}

void eg_sse_hub_publish(struct eg_sse_hub *h, const PGresult *rows)
{
    int n = PQntuples(rows);
    int i = 0;

    /* Rows come grouped by project, in seq order. */
    while (i < n) {
        const char *project = PQgetvalue(rows, i, 0);
        int j = i;
        struct topic *t;

        while (j < n && strcmp(PQgetvalue(rows, j, 0), project) == 0)
            j++;
        t = topic_find(h, project);
        if (t != NULL && t->is_ready) {
            if (t->q == NULL && eg_db_get_ll(rows, i, 5, 0) == t->epoch)
                topic_deliver(t, rows, i, j, 1);
            else
                t->wants_fetch = true;
            if (t->wants_fetch)
                topic_fetch(t);
        }
        i = j;
    }
}

/* ---- timers ------------------------------------------------------------------------------- */

static void on_keepalive(uv_timer_t *timer)
{
    struct eg_sse_hub *h = timer->data;
    bool heartbeat;
    char frame[96];
    char ts[32];
    size_t len;

    h->ticks++;
    /* CORE's heartbeat event every heartbeat_ms; a comment line on the other ticks. */
    heartbeat = h->ticks * h->cfg.keepalive_ms % h->cfg.heartbeat_ms < h->cfg.keepalive_ms;
    eg_time_iso(ts, eg_wall_ms());
    if (heartbeat)
        len = (size_t)snprintf(frame, sizeof(frame),
                               "event: heartbeat\ndata: {\"timestamp\":\"%s\"}\n\n", ts);
    else
        len = (size_t)snprintf(frame, sizeof(frame), ": keepalive\n\n");
    for (size_t b = 0; b < TOPIC_BUCKETS; b++) {
        for (struct topic *t = h->buckets[b]; t != NULL; t = t->next) {
            struct sub *next;

            for (struct sub *s = t->subs; s != NULL; s = next) {
                next = s->next;
                if (s->is_started && !s->is_gone)
                    sub_write(s, frame, len);
            }
        }
    }
}

static void on_catchup(uv_timer_t *timer)
{
    struct eg_sse_hub *h = timer->data;

    /* Events another instance sequenced reach us here; a missed notification costs latency. */
    for (size_t b = 0; b < TOPIC_BUCKETS; b++) {
        for (struct topic *t = h->buckets[b]; t != NULL; t = t->next) {
            if (t->is_ready && t->subs != NULL)
                topic_fetch(t);
        }
    }
}

struct eg_sse_hub *eg_sse_hub_new(uv_loop_t *loop, struct eg_db_pool *db,
                                  const struct eg_sse_hub_config *cfg)
{
    struct eg_sse_hub *h = eg_calloc(1, sizeof(*h));

    h->loop = loop;
    h->db = db;
    h->cfg = *cfg;
    snprintf(h->retry_frame, sizeof(h->retry_frame), "retry: %llu\n\n",
             (unsigned long long)cfg->retry_ms);
    uv_timer_init(loop, &h->keepalive);
    uv_timer_init(loop, &h->catchup);
    uv_timer_init(loop, &h->end_timer);
    h->keepalive.data = h;
    h->catchup.data = h;
    h->end_timer.data = h;
    uv_timer_start(&h->keepalive, on_keepalive, cfg->keepalive_ms, cfg->keepalive_ms);
    uv_timer_start(&h->catchup, on_catchup, cfg->catchup_poll_ms, cfg->catchup_poll_ms);
    return h;
}

void eg_sse_hub_drain(struct eg_sse_hub *h)
{
    char frame[64];
    unsigned char jitter;
    size_t len;

    h->is_draining = true;
    for (size_t b = 0; b < TOPIC_BUCKETS; b++) {
        for (struct topic *t = h->buckets[b]; t != NULL; t = t->next) {
            struct sub *next;

            for (struct sub *s = t->subs; s != NULL; s = next) {
                next = s->next;
                if (!s->is_started || s->is_gone)
                    continue;
                /* Spread the reconnects so the remaining instances are not hit at once. */
                eg_random_bytes(&jitter, 1);
                len = (size_t)snprintf(
                    frame, sizeof(frame), "retry: %llu\n\n",
                    (unsigned long long)(h->cfg.retry_ms / 2 + h->cfg.retry_ms * jitter / 255));
                sub_write(s, frame, len);
                sub_end(s);
            }
        }
    }
}

size_t eg_sse_hub_end_key(struct eg_sse_hub *h, const char *key_id)
{
    size_t n = 0;

    /* sub_end only marks and arms the end timer, so walking the lists here is safe. */
    for (size_t b = 0; b < TOPIC_BUCKETS; b++) {
        for (struct topic *t = h->buckets[b]; t != NULL; t = t->next) {
            for (struct sub *s = t->subs; s != NULL; s = s->next) {
                if (s->key_id != NULL && !s->is_gone && !s->want_end && s->is_started
                    && strcmp(s->key_id, key_id) == 0) {
                    sub_end(s);
                    n++;
                }
            }
        }
    }
    return n;
}

void eg_sse_hub_get_stats(const struct eg_sse_hub *h, struct eg_sse_hub_stats *out)
{
    *out = h->stats;
}

static void on_hub_timer_closed(uv_handle_t *handle)
{
    struct eg_sse_hub *h = handle->data;

    if (--h->closing > 0)
        return;
    if (h->on_closed != NULL)
        h->on_closed(h->closed_data);
    eg_free(h);
}

void eg_sse_hub_close(struct eg_sse_hub *h, void (*on_closed)(void *data), void *data)
{
    h->on_closed = on_closed;
    h->closed_data = data;
    h->closing = 3;
    uv_close((uv_handle_t *)&h->end_timer, on_hub_timer_closed);
    uv_close((uv_handle_t *)&h->keepalive, on_hub_timer_closed);
    uv_close((uv_handle_t *)&h->catchup, on_hub_timer_closed);
}
