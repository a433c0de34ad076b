/*
 * The bus: notices "project P grew to seq N" between instances, and pokes for the sequencer.
 *
 * Both backends keep no state that matters for correctness: a topic's reader trusts only
 * PostgreSQL, so a notice is a hint to read the log now rather than at the next catch-up poll.
 * What the bus must get right is telling its owner when hints may have been missed (on_resync):
 * after every (re)connect, and for a project channel once its subscription is confirmed.
 *
 * redis:    engram:ev:<project>   "<epoch>:<first>:<last>"   one channel per watched project
 *           engram:poke           ""                         to the sequencer leader
 *           engram:hb:<instance>  "hb"                       liveness of the subscriber connection
 * postgres: engram_events         "<epoch>:<first>:<last>:<project>"  NOTIFY in the sequencer's
 *                                                                     batch transaction
 *           engram_poke           ""
 */
#include "engram/bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engram/db.h"
#include "engram/obs.h"

#define CHANNEL_PREFIX   "engram:ev:"
#define POKE_CHANNEL     "engram:poke"
#define PG_EVENTS        "engram_events"
#define PG_POKE          "engram_poke"
#define POKE_COALESCE_MS 2
#define WATCH_BUCKETS    256
#define REDIS_PING_MS    1000

enum bus_kind {
    BUS_REDIS,
    BUS_POSTGRES,
};

struct watch {
    char *project;
    struct watch *next;
};

struct eg_bus {
    uv_loop_t *loop;
    enum bus_kind kind;
    struct eg_bus_hooks hooks;
    struct eg_bus_stats stats;
    struct watch *watched[WATCH_BUCKETS];
    uv_timer_t poke_timer;
    bool poke_due;
    /* redis */
    struct eg_redis *cmd;
    struct eg_redis *sub;
    /* postgres */
    struct eg_db_pool *pg;
    bool is_listening;
    int closing;
    void (*on_closed)(void *data);
    void *closed_data;
};

static unsigned watch_hash(const char *s)
{
    return eg_hash_str(s) % WATCH_BUCKETS;
}

int eg_bus_parse_notice(const char *s, size_t n, bool with_project, int64_t *epoch, int64_t *first,
                        int64_t *last, const char **project)
{
    int64_t v[3];
    size_t i = 0;

    for (int k = 0; k < 3; k++) {
        int64_t x = 0;
        size_t start = i;

        while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 18)
            x = x * 10 + (s[i++] - '0');
        if (i == start)
            return EG_EPARSE;
        v[k] = x;
        if (k < 2 || with_project) {
            if (i >= n || s[i] != ':')
                return EG_EPARSE;
            i++;
        }
    }
    if (!with_project && i != n)
        return EG_EPARSE;
    if (v[1] < 1 || v[2] < v[1])
        return EG_EPARSE;
    *epoch = v[0];
    *first = v[1];
    *last = v[2];
    if (project != NULL)
        *project = with_project ? s + i : NULL;
    return 0;
}

static void set_up(struct eg_bus *b, bool up)
{
    if (b->stats.is_up == up)
        return;
    b->stats.is_up = up;
    if (!up)
        b->stats.reconnects_total++;
    /* Either way notices may have been lost: read every topic's log. */
    if (b->hooks.on_resync != NULL)
        b->hooks.on_resync(NULL, b->hooks.data);
}

/* ---- redis -------------------------------------------------------------------------------- */

static void channel_of(struct eg_buf *out, const char *project)
{
    eg_buf_reset(out);
    eg_buf_puts(out, CHANNEL_PREFIX);
    eg_buf_puts(out, project);
}

/* The project a project channel names (NUL-terminated into out); false for other channels. */
static bool project_of(const char *channel, size_t len, char *out, size_t out_len)
{
    size_t plen = sizeof(CHANNEL_PREFIX) - 1;

    if (len <= plen || len - plen >= out_len || memcmp(channel, CHANNEL_PREFIX, plen) != 0)
        return false;
    memcpy(out, channel + plen, len - plen);
    out[len - plen] = '\0';
    return true;
}

static void redis_sub_all(struct eg_bus *b)
{
    struct eg_buf ch;

    eg_buf_init(&ch, 1u << 20);
    eg_redis_subscribe(b->sub, POKE_CHANNEL, sizeof(POKE_CHANNEL) - 1, true);
    for (size_t i = 0; i < WATCH_BUCKETS; i++) {
        for (struct watch *w = b->watched[i]; w != NULL; w = w->next) {
            channel_of(&ch, w->project);
            eg_redis_subscribe(b->sub, ch.base, ch.len, true);
        }
    }
    eg_buf_fini(&ch);
}

static void on_sub_up(void *data)
{
    struct eg_bus *b = data;

    redis_sub_all(b);
    set_up(b, true);
}

static void on_sub_down(void *data)
{
    set_up(data, false);
}

static void on_sub_message(const char *channel, size_t channel_len, const char *msg, size_t msg_len,
                           void *data)
{
    struct eg_bus *b = data;
    int64_t epoch;
    int64_t first;
    int64_t last;
    char project[1024];

    if (channel_len == sizeof(POKE_CHANNEL) - 1
        && memcmp(channel, POKE_CHANNEL, channel_len) == 0) {
        b->stats.pokes_received_total++;
        if (b->hooks.on_poke != NULL)
            b->hooks.on_poke(b->hooks.data);
        return;
    }
    if (!project_of(channel, channel_len, project, sizeof(project))
        || eg_bus_parse_notice(msg, msg_len, false, &epoch, &first, &last, NULL) < 0)
        return;
    b->stats.notices_received_total++;
    if (b->hooks.on_notice != NULL)
        b->hooks.on_notice(project, epoch, first, last, b->hooks.data);
}

static void on_sub_subscribed(const char *channel, size_t channel_len, void *data)
{
    struct eg_bus *b = data;
    char project[1024];

    /* Notices sent before the subscription took effect were missed: read that log once. */
    if (!project_of(channel, channel_len, project, sizeof(project)))
        return;
    if (b->hooks.on_resync != NULL)
        b->hooks.on_resync(project, b->hooks.data);
}

struct eg_bus *eg_bus_new_redis(uv_loop_t *loop, const struct eg_redis_addr *addr,
                                const char *instance_id, const struct eg_bus_hooks *hooks)
{
    struct eg_bus *b = eg_calloc(1, sizeof(*b));
    char hb[96];
    struct eg_redis_hooks cmd_hooks = {0};
    struct eg_redis_hooks sub_hooks = {0};

    b->loop = loop;
    b->kind = BUS_REDIS;
    b->hooks = *hooks;
    b->stats.kind = "redis";
    snprintf(hb, sizeof(hb), "engram:hb:%s", instance_id);
    cmd_hooks.hb_channel = hb;
    sub_hooks.hb_channel = hb;
    sub_hooks.is_subscriber = true;
    sub_hooks.on_up = on_sub_up;
    sub_hooks.on_down = on_sub_down;
    sub_hooks.on_message = on_sub_message;
    sub_hooks.on_subscribed = on_sub_subscribed;
    sub_hooks.data = b;
    uv_timer_init(loop, &b->poke_timer);
    b->poke_timer.data = b;
    b->cmd = eg_redis_new(loop, addr, REDIS_PING_MS, &cmd_hooks);
    b->sub = eg_redis_new(loop, addr, REDIS_PING_MS, &sub_hooks);
    return b;
}

/* ---- postgres ----------------------------------------------------------------------------- */

static void on_pg_notify(const char *channel, const char *payload, void *data)
{
    struct eg_bus *b = data;
    int64_t epoch;
    int64_t first;
    int64_t last;
    const char *project;

    if (strcmp(channel, PG_POKE) == 0) {
        b->stats.pokes_received_total++;
        if (b->hooks.on_poke != NULL)
            b->hooks.on_poke(b->hooks.data);
        return;
    }
    if (strcmp(channel, PG_EVENTS) != 0
        || eg_bus_parse_notice(payload, strlen(payload), true, &epoch, &first, &last, &project) < 0)
        return;
    b->stats.notices_received_total++;
    if (b->hooks.on_notice != NULL)
        b->hooks.on_notice(project, epoch, first, last, b->hooks.data);
}

static void on_listening(const struct eg_db_reply *rep, void *data)
{
    struct eg_bus *b = data;

    if (rep->status != 0) {
        /* The connection broke again; the pool's state callback brings us back here. */
        eg_log_fields(EG_LOG_WARN, "LISTEN failed",
                      (struct eg_log_field[]){EG_LF_S("error", rep->message)}, 1);
        return;
    }
    b->is_listening = true;
    set_up(b, true);
}

static void on_pg_state(struct eg_db_pool *p, void *data)
{
    struct eg_bus *b = data;

    if (b->closing > 0)
        return;
    if (eg_db_pool_is_live(p)) {
        /* A new session listens to nothing: LISTEN again, then resync (set_up). */
        eg_db_submit_simple(p, "LISTEN " PG_EVENTS "; LISTEN " PG_POKE, on_listening, b);
    } else {
        b->is_listening = false;
        set_up(b, false);
    }
}

struct eg_bus *eg_bus_new_postgres(uv_loop_t *loop, const char *conninfo,
                                   const struct eg_bus_hooks *hooks)
{
    struct eg_bus *b = eg_calloc(1, sizeof(*b));
    struct eg_db_config dc = {
        .conninfo = conninfo,
        .size = 1,
        .statement_timeout_ms = 10000,
        .queue_max = 64,
        .queue_timeout_ms = 10000,
    };

    b->loop = loop;
    b->kind = BUS_POSTGRES;
    b->hooks = *hooks;
    b->stats.kind = "postgres";
    uv_timer_init(loop, &b->poke_timer);
    b->poke_timer.data = b;
    b->pg = eg_db_pool_new(loop, &dc, on_pg_state, b);
    eg_db_pool_set_notify(b->pg, on_pg_notify, b);
    return b;
}

/* ---- common ------------------------------------------------------------------------------- */

struct eg_redis *eg_bus_redis(const struct eg_bus *b)
{
    return b != NULL && b->kind == BUS_REDIS ? b->cmd : NULL;
}

void eg_bus_watch(struct eg_bus *b, const char *project, bool watch)
{
    struct watch **pp;
    struct eg_buf ch;

    if (b == NULL || b->kind != BUS_REDIS)
        return; /* postgres: one channel carries every project's notices */
    for (pp = &b->watched[watch_hash(project)]; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->project, project) == 0)
            break;
    }
    if (watch == (*pp != NULL))
        return;
    if (watch) {
        struct watch *w = eg_calloc(1, sizeof(*w));

        w->project = eg_strndup(project, strlen(project));
        *pp = w;
    } else {
        struct watch *w = *pp;

        *pp = w->next;
        eg_free(w->project);
        eg_free(w);
    }
    eg_buf_init(&ch, 1u << 20);
    channel_of(&ch, project);
    /* While down, on_sub_up subscribes every watched project again. */
    eg_redis_subscribe(b->sub, ch.base, ch.len, watch);
    eg_buf_fini(&ch);
}

void eg_bus_announce(struct eg_bus *b, const PGresult *rows)
{
    int n = PQntuples(rows);
    struct eg_buf ch;
    char msg[80];

    if (b == NULL || b->kind != BUS_REDIS || n == 0)
        return;
    eg_buf_init(&ch, 1u << 20);
    for (int i = 0, j; i < n; i = j) {
        const char *project = PQgetvalue(rows, i, 0);
        int len;

        for (j = i + 1; j < n && strcmp(PQgetvalue(rows, j, 0), project) == 0; j++)
            ;
        len = snprintf(msg, sizeof(msg), "%lld:%lld:%lld", eg_db_get_ll(rows, i, 6, 0),
                       eg_db_get_ll(rows, i, 1, 0), eg_db_get_ll(rows, j - 1, 1, 0));
        channel_of(&ch, project);
        /* Redis down: the other instances' catch-up polls find these events. */
        if (eg_redis_publish(b->cmd, ch.base, ch.len, msg, (size_t)len) == 0)
            b->stats.notices_published_total++;
    }
    eg_buf_fini(&ch);
}

static void on_poke_sent(const struct eg_db_reply *rep, void *data)
{
    (void)rep;
    (void)data;
}

static void on_poke_timer(uv_timer_t *t)
{
    struct eg_bus *b = t->data;

    b->poke_due = false;
    if (b->kind == BUS_REDIS) {
        if (eg_redis_publish(b->cmd, POKE_CHANNEL, sizeof(POKE_CHANNEL) - 1, "", 0) == 0)
            b->stats.pokes_sent_total++;
    } else if (b->is_listening) {
        /* Its own transaction: a NOTIFY never rides on a write's commit (ARCHITECTURE.md §5). */
        eg_db_submit_simple(b->pg, "NOTIFY " PG_POKE, on_poke_sent, b);
        b->stats.pokes_sent_total++;
    }
}

void eg_bus_poke(struct eg_bus *b)
{
    if (b == NULL || b->poke_due || b->closing > 0)
        return;
    /* Commits within a couple of milliseconds share one poke. */
    b->poke_due = true;
    uv_timer_start(&b->poke_timer, on_poke_timer, POKE_COALESCE_MS, 0);
}

void eg_bus_get_stats(const struct eg_bus *b, struct eg_bus_stats *out)
{
    *out = b->stats;
}

static void closed_part(void *data)
{
    struct eg_bus *b = data;

    if (--b->closing > 0)
        return;
    for (size_t i = 0; i < WATCH_BUCKETS; i++) {
        struct watch *next;

        for (struct watch *w = b->watched[i]; w != NULL; w = next) {
            next = w->next;
            eg_free(w->project);
            eg_free(w);
        }
    }
    if (b->on_closed != NULL)
        b->on_closed(b->closed_data);
    eg_free(b);
}

static void on_poke_timer_closed(uv_handle_t *h)
{
    closed_part(h->data);
}

void eg_bus_close(struct eg_bus *b, void (*on_closed)(void *data), void *data)
{
    b->on_closed = on_closed;
    b->closed_data = data;
    b->closing = 1;
    uv_close((uv_handle_t *)&b->poke_timer, on_poke_timer_closed);
    if (b->kind == BUS_REDIS) {
        b->closing += 2;
        eg_redis_close(b->cmd, closed_part, b);
        eg_redis_close(b->sub, closed_part, b);
    } else {
        b->closing++;
        eg_db_pool_close(b->pg, closed_part, b);
    }
}
