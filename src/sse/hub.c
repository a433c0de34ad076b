/*
 * The SSE hub: topics (one per project with local subscribers), subscriber cursors, delivery.
 *
 * A topic's `last` is the highest seq it has delivered to live subscribers. New seqs are learned
 * from the local sequencer (eg_sse_hub_publish, rows in hand), from bus notices (another instance
 * sequenced them), and from a periodic catch-up poll that covers lost notices; a topic only ever
 * delivers seq last + 1, reading `events` after `last` whenever it lacks rows, so every
 * subscriber sees the log's order, once, whichever instance sequenced the event.
 *
 * A subscriber is live when its cursor equals its topic's `last`. Each batch of events is framed
 * once into one buffer, and each live subscriber gets the frames it wants in one writev straight
 * from that buffer. A subscriber that is behind (it resumed with Last-Event-ID, or its unsent
 * bytes would pass max_pending_bytes) takes no live events and pages forward from PostgreSQL, a
 * page each time its socket drains, until it reaches `last`; one that stays behind longer than
 * max_behind_ms is closed and resumes with its Last-Event-ID.
 */
#include "engram/sse.h"

#include <stdio.h>
#include <string.h>

#include "engram/json.h"
#include "engram/obs.h"

#define PAGE_ROWS     "500"
#define TOPIC_BUCKETS 256
/* A catch-up page stops adding rows past this many bytes (the rest is the next page). */
#define PAGE_BYTES (256u << 10)
/* With the bus up, topics poll the log only every this many catch-up ticks. */
#define BUS_UP_POLL_EVERY 10

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
    uint64_t behind_since_ms; /* loop time it stopped being live; 0 while live */
    bool is_started;          /* stream head and `connected` sent */
    bool is_gone;
    bool want_end;   /* ending requested; done by the end timer */
    bool awaits_log; /* resume position beyond what this instance has read: read first */
    bool was_rechecked;
    struct eg_db_query *q;     /* its own catch-up page */
    struct eg_db_batch *batch; /* allocated while a page is read (13 KiB: not per stream) */
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
    struct eg_hist lag;
    struct eg_buf frames; /* a batch's frames, shared by every subscriber's writev */
    struct eg_sse_hub_config cfg;
    struct topic *buckets[TOPIC_BUCKETS];
    uv_timer_t keepalive;
    uv_timer_t catchup;
    uv_timer_t end_timer; /* ends streams outside any iteration over topics */
    int busy;             /* iterations in progress: topic frees wait */
    bool needs_sweep;
    uint64_t ticks;
    uint64_t catchup_ticks;
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
    "SELECT seq, subject_id, event_type, payload, "
    "(extract(epoch FROM created_at) * 1000)::bigint FROM events WHERE project_id = $1 "
    "AND seq > $2::bigint ORDER BY seq LIMIT " PAGE_ROWS,
    2,
    0,
};

/* The oldest seq still in the log (retention prunes older ones); last_seq + 1 when it is empty,
 * so a position before a fully pruned log still counts as pruned. */
static struct eg_db_stmt st_oldest = {
    "sse_oldest",
    "SELECT coalesce((SELECT min(seq) FROM events WHERE project_id = $1),"
    " (SELECT last_seq + 1 FROM projects WHERE project_id = $1), 0)",
    1,
    0,
};

static void topic_read_position(struct topic *t);

static unsigned hash_str(const char *s)
{
    return eg_hash_str(s) % TOPIC_BUCKETS;
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
    if (h->cfg.watch != NULL)
        h->cfg.watch(t->project, false, h->cfg.bus_data);
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

static bool sub_can_write(const struct sub *s)
{
    return s->is_started && !s->is_gone && !s->want_end;
}

/* Writes bufs whatever is pending (control frames, catch-up pages). False: the stream ended. */
static bool sub_writev(struct sub *s, const uv_buf_t *bufs, unsigned int n)
{
    if (!sub_can_write(s))
        return false;
    if (eg_http_stream_writev(s->r, bufs, n) < 0) {
        sub_end(s); /* over the stream's hard limit or closing: the client resumes */
        return false;
    }
    return true;
}

static bool sub_write(struct sub *s, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned int)len);

    return sub_writev(s, &b, 1);
}

static void sub_catch_up(struct sub *s);

static void sub_fall_behind(struct sub *s)
{
    struct eg_sse_hub *h = s->hub;

    s->is_live = false;
    if (s->behind_since_ms == 0)
        s->behind_since_ms = uv_now(h->loop);
    h->stats.fell_behind_total++;
    eg_log_fields(EG_LOG_INFO, "sse subscriber fell behind; it continues from the log",
                  (struct eg_log_field[]){EG_LF_S("request_id", s->r->request_id),
                                          EG_LF_S("project", s->t->project)},
                  2);
    /* Nothing queued means no drain event will come: page at once. */
    if (s->q == NULL && eg_http_stream_pending(s->r) <= h->cfg.max_pending_bytes / 2)
        sub_catch_up(s);
}

/*
 * Offers live frames. A subscriber whose unsent bytes would pass the cap takes none of them: it
 * falls behind and continues from the log when its socket drains, so a slow reader never holds
 * more than the cap in this process and never slows the others.
 */
static bool sub_offer(struct sub *s, const uv_buf_t *bufs, unsigned int n, size_t len)
{
    size_t pending = eg_http_stream_pending(s->r);

    /* An empty queue always takes the frames, so one event larger than the cap still goes live. */
    if (pending > 0 && pending + len > s->hub->cfg.max_pending_bytes) {
        sub_fall_behind(s);
        return false;
    }
    return sub_writev(s, bufs, n);
}

/* The socket took queued bytes: a subscriber that is behind pages on once it has room. */
static void on_sub_drain(struct eg_http_req *r, void *data)
{
    struct sub *s = data;

    (void)r;
    if (s->is_live || s->q != NULL || !sub_can_write(s) || s->awaits_log)
        return;
    if (eg_http_stream_pending(s->r) <= s->hub->cfg.max_pending_bytes / 2)
        sub_catch_up(s);
}

static bool sub_wants(const struct sub *s, const char *subject, const char *type)
{
    /* CORE clients see exactly CORE's event types unless they ask for claim events. */
    if (!s->include_claims && strncmp(type, "memory.", 7) != 0)
        return false;
    return s->subject == NULL || strcmp(s->subject, subject) == 0;
}

/* Frames one event row (seq, subject_id, event_type, payload at col..col+3). */
static int frame_row(struct eg_buf *b, int64_t epoch, const PGresult *res, int row, int col)
{
    char id[48];
    const char *payload = PQgetvalue(res, row, col + 3);

    snprintf(id, sizeof(id), "%lld:%s", (long long)epoch, PQgetvalue(res, row, col));
    return eg_sse_frame(b, id, PQgetvalue(res, row, col + 2), payload, strlen(payload));
}

static void sub_send_reset(struct sub *s, const char *why_json)
{
    struct eg_buf b;
    char id[48];

    eg_buf_init(&b, 1024);
    s->hub->stats.resets_total++;
    snprintf(id, sizeof(id), "%lld:%lld", (long long)s->t->epoch, (long long)s->t->last);
    eg_sse_frame(&b, id, "reset", why_json, strlen(why_json));
    s->cursor = s->t->last;
    sub_write(s, b.base, b.len);
    eg_buf_fini(&b);
}

static void topic_fetch(struct topic *t);

static void sub_send_connected(struct sub *s)
{
    struct eg_sse_hub *h = s->hub;
    struct eg_buf b;
    struct eg_buf data;
    struct eg_jw jw;
    char ts[32];
    char id[48];
    enum eg_sse_start start;

    start = eg_sse_classify_resume(s->has_resume, s->resume_epoch, s->resume_seq, s->t->epoch,
                                   s->t->last, s->was_rechecked);
    if (start == EG_SSE_START_READ_LOG) {
        /* Another instance may have sequenced it: read the log first, then decide again. */
        s->was_rechecked = true;
        s->awaits_log = true;
        topic_fetch(s->t);
        return;
    }
    s->cursor = start == EG_SSE_START_CATCH_UP ? s->resume_seq : s->t->last;
    eg_http_add_header(s->r, "Cache-Control", "no-cache, no-transform");
    eg_http_add_header(s->r, "X-Accel-Buffering", "no");
    eg_http_stream_on_drain(s->r, on_sub_drain, s);
    eg_http_stream_begin(s->r, 200, "text/event-stream");
    s->is_started = true;
    sub_write(s, h->retry_frame, strlen(h->retry_frame));
    if (start == EG_SSE_START_RESET)
        sub_send_reset(s, "{\"reason\":\"position_unavailable\"}");
    eg_time_iso(ts, eg_wall_ms());
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
    eg_buf_init(&b, 8192);
    /* The id is the position, so a client that drops before any event still resumes exactly. */
    snprintf(id, sizeof(id), "%lld:%lld", (long long)s->t->epoch, (long long)s->cursor);
    eg_sse_frame(&b, id, "connected", data.base, data.len);
    eg_buf_fini(&data);
    if (!sub_write(s, b.base, b.len)) {
        eg_buf_fini(&b);
        return;
    }
    eg_buf_fini(&b);
    if (s->cursor == s->t->last) {
        s->is_live = true;
    } else {
        s->behind_since_ms = uv_now(h->loop);
        sub_catch_up(s);
    }
}

/* ---- subscriber catch-up pages ------------------------------------------------------------ */

static void sub_go_live(struct sub *s)
{
    s->is_live = true;
    s->behind_since_ms = 0;
}

static void on_sub_page(const struct eg_db_reply *rep, void *data)
{
    struct sub *s = data;
    struct eg_sse_hub *h = s->hub;
    struct eg_buf *b = &h->frames;
    const PGresult *res;
    int n;

    s->q = NULL;
    eg_free(s->batch);
    s->batch = NULL;
    if (s->is_gone)
        return;
    if (rep->status != 0) {
        sub_end(s); /* the client resumes from its last id */
        return;
    }
    res = rep->results[0];
    n = PQntuples(res);
    if (rep->nresults > 1 && eg_sse_is_pruned(s->cursor, eg_db_get_ll(rep->results[1], 0, 0, 0))) {
        /* Events after the position were pruned: the client must resync via REST. */
        sub_send_reset(s, "{\"reason\":\"position_pruned\"}");
        sub_go_live(s);
        return;
    }
    eg_buf_reset(b);
    for (int i = 0; i < n && b->len < PAGE_BYTES; i++) {
        int64_t seq = eg_db_get_ll(res, i, 0, 0);

        if (seq > s->t->last)
            break; /* the topic delivers those once it has read them */
        if (sub_wants(s, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2))
            && frame_row(b, s->t->epoch, res, i, 0) == 0)
            h->stats.caught_up_total++;
        s->cursor = seq;
    }
    if (b->len > 0 && !sub_write(s, b->base, b->len))
        return;
    if (s->cursor >= s->t->last)
        sub_go_live(s);
    else if (eg_http_stream_pending(s->r) <= h->cfg.max_pending_bytes / 2)
        sub_catch_up(s);
    /* else: the next page when the socket drains (on_sub_drain). */
}

static void sub_catch_up(struct sub *s)
{
    const char *page[2];
    const char *oldest[1];

    snprintf(s->cursor_text, sizeof(s->cursor_text), "%lld", (long long)s->cursor);
    page[0] = s->t->project;
    page[1] = s->cursor_text;
    oldest[0] = s->t->project;
    s->batch = eg_calloc(1, sizeof(*s->batch));
    eg_db_batch_add(s->batch, &st_page, page);
    eg_db_batch_add(s->batch, &st_oldest, oldest);
    s->q = eg_db_submit(s->hub->db, s->batch, on_sub_page, s);
}

/* ---- topics ------------------------------------------------------------------------------- */

/* One event of a batch, framed into hub->frames. */
struct framed {
    size_t off;
    size_t len;
    const char *subject;
    const char *type;
};

/* Writes the batch's frames that s wants, in one writev where they fit. */
static bool sub_offer_batch(struct sub *s, const char *base, const struct framed *ev, int n)
{
    uv_buf_t iov[EG_HTTP_WRITEV_MAX];
    unsigned int k = 0;
    size_t len = 0;

    for (int i = 0; i < n; i++) {
        if (ev[i].len == 0 || !sub_wants(s, ev[i].subject, ev[i].type))
            continue;
        /* Adjacent frames join into one buffer: an unfiltered subscriber takes one. */
        if (k > 0 && iov[k - 1].base + iov[k - 1].len == base + ev[i].off) {
            iov[k - 1].len += ev[i].len;
        } else {
            if (k == EG_HTTP_WRITEV_MAX) {
                if (!sub_offer(s, iov, k, len))
                    return false;
                k = 0;
                len = 0;
            }
            iov[k++] = uv_buf_init((char *)base + ev[i].off, (unsigned int)ev[i].len);
        }
        len += ev[i].len;
    }
    return k == 0 || sub_offer(s, iov, k, len);
}

/*
 * Delivers rows [from, to) (seq, subject_id, event_type, payload, created_ms at col..col+4) in
 * seq order to the live subscribers: each event framed once, each subscriber one writev.
 */
static void topic_deliver(struct topic *t, const PGresult *res, int from, int to, int col)
{
    struct eg_sse_hub *h = t->hub;
    struct eg_buf *b = &h->frames;
    struct framed *ev;
    int n = 0;
    int64_t last = t->last;
    int64_t now_ms;

    if (from >= to)
        return;
    ev = eg_malloc((size_t)(to - from) * sizeof(*ev));
    eg_buf_reset(b);
    for (int i = from; i < to; i++) {
        int64_t seq = eg_db_get_ll(res, i, col, 0);

        /* A gap, or enough bytes for one round: the log read continues from `last`. */
        if (seq != last + 1 || b->len >= PAGE_BYTES) {
            t->wants_fetch = true;
            break;
        }
        ev[n].off = b->len;
        if (frame_row(b, t->epoch, res, i, col) < 0)
            b->len = ev[n].off; /* unframeable (cannot happen for our payloads): skipped */
        ev[n].len = b->len - ev[n].off;
        ev[n].subject = PQgetvalue(res, i, col + 1);
        ev[n].type = PQgetvalue(res, i, col + 2);
        n++;
        last = seq;
    }
    if (n > 0) {
        h->busy++;
        for (struct sub *s = t->subs; s != NULL; s = s->next) {
            if (!s->is_live || !sub_can_write(s))
                continue;
            if (sub_offer_batch(s, b->base, ev, n)) {
                s->cursor = last;
                h->stats.delivered_total += (uint64_t)n;
            }
        }
        hub_unbusy(h);
        t->last = last;
        /* Commit (the write transaction's start, to be exact) to written to every live one. */
        now_ms = eg_wall_ms();
        for (int i = 0; i < n; i++) {
            int64_t created = eg_db_get_ll(res, from + i, col + 4, now_ms);

            eg_hist_observe(&h->lag, (double)(now_ms - created) / 1000.0);
        }
    }
    eg_free(ev);
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
        /* The next poll retries. Subscribers waiting for this read keep waiting: a failed read
         * says nothing about their position (answering now would `reset` a valid one). */
        t->wants_fetch = true;
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
    t->hub->stats.log_reads_total++;
    snprintf(t->last_text, sizeof(t->last_text), "%lld", (long long)t->last);
    values[0] = t->project;
    values[1] = t->last_text;
    memset(&t->batch, 0, sizeof(t->batch));
    eg_db_batch_add(&t->batch, &st_page, values);
    t->q = eg_db_submit(t->hub->db, &t->batch, on_topic_page, t);
}

/*
 * The project's epoch changed (a restore drill): every position handed out is void. The streams
 * end; their clients come back with ids of the old epoch and get `reset`. The topic reads its
 * position again for the next subscriber.
 */
static void topic_new_epoch(struct topic *t)
{
    eg_log_fields(EG_LOG_WARN, "project epoch changed; ending its streams",
                  (struct eg_log_field[]){EG_LF_S("project", t->project)}, 1);
    t->is_ready = false;
    t->wants_fetch = false;
    for (struct sub *s = t->subs; s != NULL; s = s->next)
        sub_end(s);
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
    t->hub->busy++;
    for (s = t->subs; s != NULL; s = next) {
        next = s->next;
        if (!s->is_started && !s->is_gone)
            sub_send_connected(s);
    }
    hub_unbusy(t->hub);
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
    eg_free(s->batch);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        t->subs = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    t->nsubs--;
    s->hub->stats.subscribers--;
    eg_free(s->subject);
    eg_free(s->key_id);
    eg_free(s);
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
    /* Not in the arena: an idle stream gives its arena back once its head is out. */
    s = eg_calloc(1, sizeof(*s));
    s->hub = h;
    s->r = r;
    s->include_claims = include_claims;
    if (subject != NULL)
        s->subject = eg_strndup(subject, strlen(subject));
    if (key_id != NULL)
        s->key_id = eg_strndup(key_id, strlen(key_id));
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
        /* Its channel's confirmation triggers a log read (eg_sse_hub_resync). */
        if (h->cfg.watch != NULL)
            h->cfg.watch(project, true, h->cfg.bus_data);
    }
    s->t = t;
    s->next = t->subs;
    if (t->subs != NULL)
        t->subs->prev = s;
    t->subs = s;
    t->nsubs++;
    h->stats.subscribers++;
    eg_http_req_on_free(r, on_sub_cleanup, s);
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
            int64_t epoch = eg_db_get_ll(rows, i, 6, 0);

            if (epoch != t->epoch)
                topic_new_epoch(t);
            else if (t->q == NULL)
                topic_deliver(t, rows, i, j, 1);
            else
                t->wants_fetch = true; /* a read is in flight: it delivers in order */
            if (t->wants_fetch)
                topic_fetch(t);
        }
        i = j;
    }
}

void eg_sse_hub_notice(struct eg_sse_hub *h, const char *project, int64_t epoch, int64_t first,
                       int64_t last)
{
    struct topic *t = topic_find(h, project);

    if (t == NULL)
        return;
    if (!t->is_ready) {
        t->wants_fetch = true; /* the position being read may predate it */
        return;
    }
    switch (eg_sse_classify_notice(t->epoch, t->last, epoch, first, last)) {
    case EG_SSE_NOTICE_DUP: h->stats.notices_dup_total++; break;
    case EG_SSE_NOTICE_EPOCH: topic_new_epoch(t); break;
    case EG_SSE_NOTICE_GAP:
        h->stats.notices_gap_total++;
        topic_fetch(t);
        break;
    case EG_SSE_NOTICE_NEW: topic_fetch(t); break;
    }
}

void eg_sse_hub_resync(struct eg_sse_hub *h, const char *project)
{
    if (project != NULL) {
        struct topic *t = topic_find(h, project);

        if (t != NULL && t->is_ready)
            topic_fetch(t);
        else if (t != NULL)
            t->wants_fetch = true;
        return;
    }
    for (size_t b = 0; b < TOPIC_BUCKETS; b++) {
        for (struct topic *t = h->buckets[b]; t != NULL; t = t->next) {
            if (t->is_ready && t->subs != NULL)
                topic_fetch(t);
        }
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
    h->busy++;
    for (size_t b = 0; b < TOPIC_BUCKETS; b++) {
        for (struct topic *t = h->buckets[b]; t != NULL; t = t->next) {
            for (struct sub *s = t->subs; s != NULL; s = s->next) {
                /* A subscriber far behind has bytes queued already: no keepalive needed. */
                if (sub_can_write(s)
                    && eg_http_stream_pending(s->r) + len <= h->cfg.max_pending_bytes)
                    sub_write(s, frame, len);
            }
        }
    }
    hub_unbusy(h);
}

static void on_catchup(uv_timer_t *timer)
{
    struct eg_sse_hub *h = timer->data;
    uint64_t now = uv_now(h->loop);
    bool poll = true;

    h->catchup_ticks++;
    /* With the bus up, notices bring news and the poll only covers lost ones. */
    if (h->cfg.notices_flowing != NULL && h->cfg.notices_flowing(h->cfg.bus_data))
        poll = h->catchup_ticks % BUS_UP_POLL_EVERY == 0;
    h->busy++;
    for (size_t b = 0; b < TOPIC_BUCKETS; b++) {
        for (struct topic *t = h->buckets[b]; t != NULL; t = t->next) {
            if (poll && t->is_ready && t->subs != NULL)
                topic_fetch(t);
            for (struct sub *s = t->subs; s != NULL; s = s->next) {
                if (s->behind_since_ms == 0 || !sub_can_write(s))
                    continue;
                if (now - s->behind_since_ms > h->cfg.max_behind_ms) {
                    h->stats.dropped_total++;
                    eg_log_fields(EG_LOG_WARN, "sse subscriber stayed behind too long; closing it",
                                  (struct eg_log_field[]){EG_LF_S("request_id", s->r->request_id),
                                                          EG_LF_S("project", t->project)},
                                  2);
                    sub_end(s);
                } else if (s->q == NULL && !s->is_live) {
                    on_sub_drain(s->r, s); /* in case no write was left to complete */
                }
            }
        }
    }
    hub_unbusy(h);
}

struct eg_sse_hub *eg_sse_hub_new(uv_loop_t *loop, struct eg_db_pool *db,
                                  const struct eg_sse_hub_config *cfg)
{
    struct eg_sse_hub *h = eg_calloc(1, sizeof(*h));

    h->loop = loop;
    h->db = db;
    h->cfg = *cfg;
    eg_hist_init(&h->lag, eg_hist_latency_bounds, eg_hist_latency_nb);
    eg_buf_init(&h->frames, 64u << 20);
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
            for (struct sub *s = t->subs; s != NULL; s = s->next) {
                if (!sub_can_write(s))
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
    out->lag = &h->lag;
}

static void on_hub_timer_closed(uv_handle_t *handle)
{
    struct eg_sse_hub *h = handle->data;

    if (--h->closing > 0)
        return;
    if (h->on_closed != NULL)
        h->on_closed(h->closed_data);
    eg_hist_fini(&h->lag);
    eg_buf_fini(&h->frames);
    eg_free(h);
}

void eg_sse_hub_close(struct eg_sse_hub *h, void (*on_closed)(void *data), void *data)
{
    /* Every subscription has ended; a topic kept only by a log read in flight goes now, its
     * read detached (the pool closes after the hub and would call back into freed memory). */
    for (size_t b = 0; b < TOPIC_BUCKETS; b++) {
        struct topic *next;

        for (struct topic *t = h->buckets[b]; t != NULL; t = next) {
            next = t->next;
            if (t->q != NULL) {
                eg_db_query_cancel(t->q);
                t->q = NULL;
            }
            topic_free_if_unused(t);
        }
    }
    h->on_closed = on_closed;
    h->closed_data = data;
    h->closing = 3;
    uv_close((uv_handle_t *)&h->end_timer, on_hub_timer_closed);
    uv_close((uv_handle_t *)&h->keepalive, on_hub_timer_closed);
    uv_close((uv_handle_t *)&h->catchup, on_hub_timer_closed);
}
