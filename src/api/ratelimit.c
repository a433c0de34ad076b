/*
 * Rate limits per API key (or per client address without one): a fixed window of
 * ENGRAM_RATE_LIMIT requests per ENGRAM_RATE_LIMIT_WINDOW_S seconds, shared by every instance
 * through Redis (RELIABILITY.md §1.7, §2.2 A9).
 *
 * The request path never waits for Redis. Each instance decides from its estimate of the shared
 * count, the last value Redis returned for the window plus its own increments still in flight,
 * and then counts the request in Redis (a small EVAL: INCRBY, and the key's expiry on creation).
 * A counter has at most one increment in flight: requests that arrive while it is out are added
 * up and sent as one INCRBY when its answer comes, so under load Redis sees one command per
 * round trip and counter, not one per request. Far from its limit a counter also holds its
 * increments back, at most 1/RL_HOLD_DIV of the quota it has left, and they go out with the next
 * sweep (eg__api_rl_flush, every ENGRAM_AUTH_SWEEP_MS): under a high quota and a high rate Redis
 * then sees a few commands per second and counter instead of one per round trip (each about 45
 * us of Redis CPU, measured at 2,000 writes/s), and near the limit every increment goes out at
 * once as before. The limit holds across instances up to the increments not yet counted in Redis
 * at the same moment (the overshoot A9 measures): those in flight, plus what the other instances
 * hold back, under (instances - 1)/RL_HOLD_DIV of the quota. A slow or blackholed Redis costs
 * nothing but accuracy. Without
 * Redis (unset, down, or an error) each instance allows q/ENGRAM_RATE_LIMIT_INSTANCES on its own.
 *
 * ENGRAM_RATE_LIMIT_SCOPES gives a route class its own quota ("memories:write=100"): a request
 * counts against the quota of the scope its route needs, in a counter of its own per principal;
 * routes whose scope has no entry share the default quota (ENGRAM_RATE_LIMIT; 0 leaves them
 * unlimited).
 *
 * Entries live in a bounded direct-mapped table; a collision replaces the older principal, which
 * then starts again from Redis's count on its next request.
 */
#include "api_int.h"

#include <stdio.h>
#include <string.h>

#include "engram/bus.h"

#define RL_SLOTS 4096
#define RL_SCRIPT                                                                                  \
    "local c = redis.call('INCRBY', KEYS[1], ARGV[2]) "                                            \
    "if c == tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return c"

/* A counter holds back at most 1/RL_HOLD_DIV of its quota left: none below RL_HOLD_DIV. */
#define RL_HOLD_DIV 1024

#define RL_WHO 112 /* principal (key id or "ip:<address>") + "|" + scope name */

struct rl_entry {
    char who[RL_WHO];
    int64_t window;
    uint64_t local;   /* requests this instance let through in the window */
    uint64_t shared;  /* the highest count Redis returned for the window */
    uint64_t pending; /* our increments sent and not answered yet (one command) */
    uint64_t unsent;  /* our increments waiting for that answer, or held back */
    uint64_t limit;   /* the limit of the last check */
    bool has_failed;  /* a Redis increment failed in this window: count locally */
};

struct eg_api_rl {
    struct rl_entry slots[RL_SLOTS];
    uint64_t quota;                   /* the default; 0: unlimited */
    uint64_t scoped[EG_AUTH_NSCOPES]; /* per scope bit; UINT64_MAX: the default */
    uint64_t window_s;
    uint64_t instances;
    uint64_t limited_total;
};

struct rl_call {
    struct eg_app *app;
    struct rl_entry *e;
    char who[RL_WHO];
    int64_t window;
    uint64_t n; /* the increment sent */
};

static void on_incr(int status, long long value, void *data);

/* Whether e's unsent increments may wait for the next flush: while far from the limit. */
static bool rl_may_hold(const struct rl_entry *e)
{
    uint64_t used = e->shared + e->pending + e->unsent;

    return !e->has_failed && used < e->limit && e->unsent < (e->limit - used) / RL_HOLD_DIV;
}

/* Sends the entry's unsent increments as one command; they stay unsent if Redis is not up. */
static void rl_send(struct eg_app *app, struct rl_entry *e)
{
    struct eg_api_rl *rl = app->rl;
    struct rl_call *call;
    char key[160];
    char ttl[24];
    char n[24];
    const char *argv[6];

    if (app->redis == NULL || e->unsent == 0)
        return;
    call = eg_malloc(sizeof(*call));
    call->app = app;
    call->e = e;
    memcpy(call->who, e->who, sizeof(call->who));
    call->window = e->window;
    call->n = e->unsent;
    snprintf(key, sizeof(key), "engram:rl:%s:%lld", e->who, (long long)e->window);
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)(rl->window_s * 1000 + 1000));
    snprintf(n, sizeof(n), "%llu", (unsigned long long)e->unsent);
    argv[0] = "EVAL";
    argv[1] = RL_SCRIPT;
    argv[2] = "1";
    argv[3] = key;
    argv[4] = ttl;
    argv[5] = n;
    if (eg_redis_command_int(app->redis, 6, argv, on_incr, call) == 0) {
        e->pending += e->unsent;
        e->unsent = 0;
    } else {
        eg_free(call);
    }
}

struct eg_api_rl *eg__api_rl_new(const struct eg_config *cfg, struct eg_redis *redis)
{
    struct eg_api_rl *rl;
    uint64_t scoped[EG_AUTH_NSCOPES];
    bool any = cfg->rate_limit > 0;

    if (eg_auth_scope_quotas_parse(cfg->rate_limit_scopes, scoped) < 0)
        return NULL; /* main refuses to start with it */
    for (size_t i = 0; i < EG_AUTH_NSCOPES; i++)
        any = any || (scoped[i] != UINT64_MAX && scoped[i] > 0);
    if (!any)
        return NULL;
    rl = eg_calloc(1, sizeof(*rl));
    rl->quota = cfg->rate_limit;
    memcpy(rl->scoped, scoped, sizeof(scoped));
    rl->window_s = cfg->rate_limit_window_s;
    rl->instances = cfg->rate_limit_instances;
    (void)redis; /* read from the app on each check: it is closed before the limiter */
    return rl;
}

void eg__api_rl_free(struct eg_api_rl *rl)
{
    eg_free(rl);
}

static void on_incr(int status, long long value, void *data)
{
    struct rl_call *call = data;
    struct rl_entry *e = call->e;

    /* The slot may hold another principal or window by now: then this answer is stale. */
    if (strcmp(e->who, call->who) == 0 && e->window == call->window) {
        e->pending = e->pending > call->n ? e->pending - call->n : 0;
        if (status == 0 && value > 0) {
            if ((uint64_t)value > e->shared)
                e->shared = (uint64_t)value;
            if (!rl_may_hold(e))
                rl_send(call->app, e); /* what arrived meanwhile, as one increment */
        } else {
            e->has_failed = true; /* the local share for the rest of the window */
        }
    }
    eg_free(call);
}

bool eg__api_rl_check(struct eg_app *app, struct eg_http_req *r, const char *principal,
                      unsigned scope)
{
    struct eg_api_rl *rl = app->rl;
    struct eg_redis *redis = app->redis;
    struct rl_entry *e;
    int64_t now_s = eg_wall_ms() / 1000;
    int64_t window;
    uint64_t used;
    uint64_t limit;
    uint64_t reset;
    uint64_t quota;
    const char *name = "default";
    char who[RL_WHO];
    char policy[80];
    char state[80];
    bool shared;

    if (rl == NULL || principal == NULL)
        return true;
    quota = rl->quota;
    for (size_t i = 0; i < EG_AUTH_NSCOPES; i++) {
        if (scope == 1u << i && rl->scoped[i] != UINT64_MAX) {
            quota = rl->scoped[i];
            name = eg_auth_scope_name(scope);
        }
    }
    if (quota == 0)
        return true;
    snprintf(who, sizeof(who), "%s|%s", principal, name);
    window = now_s / (int64_t)rl->window_s;
    reset = (uint64_t)((window + 1) * (int64_t)rl->window_s - now_s);
    e = &rl->slots[eg_hash_str(who) % RL_SLOTS];
    if (strcmp(e->who, who) != 0 || e->window != window) {
        if (e->pending == 0)
            rl_send(app, e); /* what it held back, into its own window's key */
        memset(e, 0, sizeof(*e));
        snprintf(e->who, sizeof(e->who), "%s", who);
        e->window = window;
    }
    shared = false;
    if (redis != NULL && !e->has_failed) {
        struct eg_redis_stats st;

        eg_redis_get_stats(redis, &st);
        shared = st.is_up;
    }
    /* With Redis the whole quota is shared; without it each instance keeps its share. */
    limit = shared ? quota : (quota + rl->instances - 1) / rl->instances;
    used = e->shared + e->pending + e->unsent;
    used = shared ? (used > e->local ? used : e->local) : e->local;
    snprintf(policy, sizeof(policy), "\"%s\";q=%llu;w=%llu", name, (unsigned long long)quota,
             (unsigned long long)rl->window_s);
    eg_http_add_header(r, "RateLimit-Policy", policy);
    if (used >= limit) {
        char after[24];

        rl->limited_total++;
        snprintf(state, sizeof(state), "\"%s\";r=0;t=%llu", name, (unsigned long long)reset);
        snprintf(after, sizeof(after), "%llu", (unsigned long long)reset);
        eg_http_add_header(r, "RateLimit", state);
        eg_http_add_header(r, "Retry-After", after);
        eg__api_error_msg(r, 429, "rate_limited",
                          "Too many requests for this API key; retry after the Retry-After "
                          "seconds");
        return false;
    }
    e->local++;
    snprintf(state, sizeof(state), "\"%s\";r=%llu;t=%llu", name,
             (unsigned long long)(limit - used - 1), (unsigned long long)reset);
    eg_http_add_header(r, "RateLimit", state);
    e->unsent++;
    e->limit = limit;
    if (e->pending == 0 && !(shared && rl_may_hold(e)))
        rl_send(app, e);
    return true;
}

void eg__api_rl_flush(struct eg_app *app)
{
    struct eg_api_rl *rl = app->rl;

    if (rl == NULL || app->redis == NULL)
        return;
    for (size_t i = 0; i < RL_SLOTS; i++) {
        if (rl->slots[i].unsent > 0 && rl->slots[i].pending == 0)
            rl_send(app, &rl->slots[i]);
    }
}

uint64_t eg__api_rl_limited_total(const struct eg_app *app)
{
    return app->rl != NULL ? app->rl->limited_total : 0;
}
