/*
 * engramd: the command line, configuration, wiring and orderly shutdown. The only globals of the
 * program live here (the signal watchers and the app context).
 *
 *   serve:   listeners + HTTP server + database pool on one libuv loop. SIGTERM/SIGINT start a
 *            drain: readiness turns 503, (after ENGRAM_DRAIN_DELAY_MS) the listeners close, in-
 *            flight requests finish until ENGRAM_DRAIN_TIMEOUT_MS, then everything closes and the
 *            process exits 0 with a closed loop (no leaked handles). A second signal forces it.
 *   migrate: applies missing migrations over a one-connection pool, then exits.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <uv.h>

#include "engram/api.h"
#include "engram/auth.h"
#include "engram/config.h"
#include "engram/db.h"
#include "engram/http.h"
#include "engram/net.h"
#include "engram/obs.h"
#include "engram_version.h"

#define EXIT_CONFIG                2
#define MIGRATE_CONNECT_TIMEOUT_MS 30000

static const char usage_main[] =
    "usage: engramd <command> [--help]\n"
    "\n"
    "commands:\n"
    "  serve     run the HTTP server\n"
    "  migrate   apply database migrations, then exit\n"
    "  bump-epoch [PROJECT]\n"
    "            start a new event-log epoch (after a restore), then exit\n"
    "  keys      create, list, revoke and rotate API keys\n"
    "  version   print the version\n"
    "\n"
    "Configuration comes from the environment; see docs/OPERATIONS.md.\n";

static const char usage_serve[] =
    "usage: engramd serve\n"
    "\n"
    "Serves CORE's HTTP API and engram's operational routes (/health, /health/live,\n"
    "/health/ready, /metrics) on ENGRAM_BIND:PORT (default 0.0.0.0,:: port 8080), and over\n"
    "HTTPS on ENGRAM_TLS_BIND:ENGRAM_TLS_PORT when ENGRAM_TLS_CERT and ENGRAM_TLS_KEY are set.\n"
    "Database: DATABASE_URL (a libpq URI or keyword string) or CORE's POSTGRES_HOST, _PORT, _DB,\n"
    "_USER, _PASSWORD. Refuses to start on a schema older than it needs: run engramd migrate.\n"
    "SIGTERM or SIGINT drains and exits 0. Logs are JSON lines on stdout.\n";

static const char usage_migrate[] =
    "usage: engramd migrate\n"
    "\n"
    "Applies the migrations this binary embeds that the database lacks, in order, each in its\n"
    "own transaction, under an advisory lock (concurrent runs are safe). Works on an empty\n"
    "database and on a database created by CORE. Same database settings as serve.\n";

static const char usage_bump_epoch[] =
    "usage: engramd bump-epoch [PROJECT]\n"
    "\n"
    "Gives PROJECT (every project when omitted) a new event-log epoch. Run it after restoring the\n"
    "database from a backup: positions clients hold from before the restore may name events the\n"
    "restored log no longer has, and a new epoch makes every such resume answer `event: reset`.\n"
    "Open streams of the project end at its next event; their clients resume and get the reset.\n";
static const char usage_keys[] =
    "usage: engramd keys create --project P --scopes S1,S2 [--name N] [--expires WHEN]\n"
    "                           [--if-no-admin]\n"
    "       engramd keys list [--project P]\n"
    "       engramd keys revoke <id|prefix>\n"
    "       engramd keys rotate <id|prefix> [--overlap DURATION]\n"
    "\n"
    "Manages API keys directly in the database (same settings as serve). Scopes: memories:read,\n"
    "memories:write, claims:read, claims:write, events:read, admin (admin implies the others).\n"
    "WHEN is an ISO-8601 timestamp or a duration such as 30d, 12h, 15m, 10s; rotate keeps the\n"
    "old key valid for --overlap (default 24h). create and rotate print the new key once, in\n"
    "the JSON on stdout: store it then, it cannot be shown again. --if-no-admin creates nothing\n"
    "(exit 0, empty stdout) when the project already has an active admin key.\n";

static struct eg_config cfg;

static const char *env_get(const char *name, void *data)
{
    (void)data;
    return getenv(name);
}

static int load_config(void)
{
    char err[256];
    enum eg_log_level level = EG_LOG_INFO;

    if (eg_config_load(&cfg, env_get, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "engramd: %s\n", err);
        return -1;
    }
    eg_log_level_parse(cfg.log_level, &level);
    eg_log_set_level(level);
    {
        uint64_t quotas[EG_AUTH_NSCOPES];

        if (eg_auth_scope_quotas_parse(cfg.rate_limit_scopes, quotas) < 0) {
            fprintf(stderr,
                    "engramd: ENGRAM_RATE_LIMIT_SCOPES: expected scope=requests[,...] with each "
                    "scope once (memories:read, memories:write, claims:read, claims:write, "
                    "events:read, admin), got \"%.64s\"\n",
                    cfg.rate_limit_scopes);
            return -1;
        }
    }
    if (cfg.redis_url[0] != '\0') {
        struct eg_redis_addr ra;

        if (eg_redis_addr_parse(cfg.redis_url, &ra) < 0) {
            fprintf(stderr,
                    "engramd: REDIS_URL: expected redis://[:password@]host[:port][/db], "
                    "got \"%.64s\"\n",
                    cfg.redis_url);
            return -1;
        }
    }
    if (cfg.database_url[0] != '\0') {
        /* A string libpq cannot parse is a bad value, not an outage to retry forever. */
        char *perr = NULL;
        PQconninfoOption *opts = PQconninfoParse(cfg.database_url, &perr);

        if (opts == NULL) {
            size_t n = perr != NULL ? strlen(perr) : 0;

            while (n > 0 && perr[n - 1] == '\n')
                n--;
            fprintf(stderr, "engramd: %s: not a valid libpq connection string: %.*s\n",
                    getenv("DATABASE_URL") != NULL ? "DATABASE_URL" : "POSTGRES_*", (int)n,
                    perr != NULL ? perr : "");
            PQfreemem(perr);
            return -1;
        }
        PQconninfoFree(opts);
    }
    return 0;
}

static struct eg_db_config db_config(int size, uint64_t statement_timeout_ms)
{
    return (struct eg_db_config){
        .conninfo = cfg.database_url,
        .size = size,
        .statement_timeout_ms = statement_timeout_ms,
        .queue_max = cfg.db_queue_max,
        .queue_timeout_ms = cfg.db_queue_timeout_ms,
    };
}

/* ---- migrate ------------------------------------------------------------------------------ */

struct migrate_state {
    uv_loop_t *loop;
    struct eg_db_pool *pool;
    uv_timer_t timer;
    bool started;
    int exit_code;
    void (*start)(struct migrate_state *m); /* runs once the pool is live */
    const char *project;                    /* bump-epoch: NULL for every project */
    struct eg_db_batch batch;
};

static void on_migrate_pool_closed(void *data)
{
    struct migrate_state *m = data;

    uv_close((uv_handle_t *)&m->timer, NULL);
}

static void migrate_stop(struct migrate_state *m, int code)
{
    m->exit_code = code;
    uv_timer_stop(&m->timer);
    eg_db_pool_close(m->pool, on_migrate_pool_closed, m);
}

static void on_migrated(const struct eg_db_migrate_result *res, void *data)
{
    struct migrate_state *m = data;

    if (res->status < 0) {
        eg_log_fields(EG_LOG_ERROR, res->message, NULL, 0);
        migrate_stop(m, 1);
        return;
    }
    eg_log_fields(EG_LOG_INFO,
                  res->from_version == res->to_version ? "schema is current" : "migrations applied",
                  (struct eg_log_field[]){EG_LF_I("from_version", res->from_version),
                                          EG_LF_I("to_version", res->to_version)},
                  2);
    migrate_stop(m, 0);
}

static void start_migrate(struct migrate_state *m)
{
    eg_db_migrate(m->pool, on_migrated, m);
}

/* A new epoch is the current time in ms (how projects.epoch starts), and always larger. */
static struct eg_db_stmt st_bump_epoch = {
    "bump_epoch",
    "UPDATE projects SET epoch = greatest(epoch + 1,"
    " floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)"
    " WHERE $1::text IS NULL OR project_id = $1 RETURNING project_id, epoch",
    1,
    0,
};

static void on_bumped(const struct eg_db_reply *rep, void *data)
{
    struct migrate_state *m = data;
    int n;

    if (rep->status != 0) {
        eg_log_fields(EG_LOG_ERROR, "bump-epoch failed",
                      (struct eg_log_field[]){EG_LF_S("error", rep->message)}, 1);
        migrate_stop(m, 1);
        return;
    }
    n = PQntuples(rep->results[0]);
    for (int i = 0; i < n; i++)
        printf("%s\t%s\n", PQgetvalue(rep->results[0], i, 0), PQgetvalue(rep->results[0], i, 1));
    eg_log_fields(EG_LOG_INFO, "event-log epoch bumped",
                  (struct eg_log_field[]){EG_LF_I("projects", n)}, 1);
    migrate_stop(m, m->project != NULL && n == 0 ? 1 : 0);
}

static void start_bump_epoch(struct migrate_state *m)
{
    const char *values[1] = {m->project};

    eg_db_batch_add(&m->batch, &st_bump_epoch, values);
    eg_db_submit(m->pool, &m->batch, on_bumped, m);
}

static void on_migrate_pool_state(struct eg_db_pool *p, void *data)
{
    struct migrate_state *m = data;

    if (!m->started && eg_db_pool_is_live(p)) {
        m->started = true;
        uv_timer_stop(&m->timer);
        m->start(m);
    }
}

static void on_migrate_timeout(uv_timer_t *t)
{
    struct migrate_state *m = t->data;

    eg_log(EG_LOG_ERROR, "could not connect to the database within %d s",
           MIGRATE_CONNECT_TIMEOUT_MS / 1000);
    migrate_stop(m, 1);
}

/* Runs one database job (migrate, bump-epoch) on a one-connection pool, then exits. */
static int cmd_db_job(void (*start)(struct migrate_state *m), const char *project)
{
    static struct migrate_state m;
    struct eg_db_config dc = db_config(1, 3600000);
    uv_loop_t loop;

    m.start = start;
    m.project = project;
    uv_loop_init(&loop);
    m.loop = &loop;
    uv_timer_init(&loop, &m.timer);
    m.timer.data = &m;
    uv_timer_start(&m.timer, on_migrate_timeout, MIGRATE_CONNECT_TIMEOUT_MS, 0);
    m.pool = eg_db_pool_new(&loop, &dc, on_migrate_pool_state, &m);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        eg_log(EG_LOG_WARN, "loop closed with handles still open");
    return m.exit_code;
}

/* ---- keys --------------------------------------------------------------------------------- */

/*
 * The key commands run one batch over a one-connection pool on a private loop, like migrate
 * (no blocking libpq calls anywhere in src/, so the lint rule holds without exceptions).
 */
struct cli_run {
    struct eg_db_pool *pool;
    uv_timer_t timer;
    const struct eg_db_batch *batch;
    bool started;
    bool done;
    int status;
    char sqlstate[6];
    char message[512];
    PGresult *res[4]; /* copies of the results we print */
    size_t nres;
};

static void on_cli_pool_closed(void *data)
{
    struct cli_run *c = data;

    uv_close((uv_handle_t *)&c->timer, NULL);
}

static void cli_stop(struct cli_run *c)
{
    uv_timer_stop(&c->timer);
    eg_db_pool_close(c->pool, on_cli_pool_closed, c);
}

static void on_cli_done(const struct eg_db_reply *rep, void *data)
{
    struct cli_run *c = data;

    c->done = true;
    c->status = rep->status;
    snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", rep->sqlstate);
    snprintf(c->message, sizeof(c->message), "%s", rep->message);
    for (size_t i = 0; i < rep->nresults && i < EG_ARRAY_LEN(c->res); i++) {
        c->res[i] = PQcopyResult(rep->results[i], PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
        c->nres++;
    }
    cli_stop(c);
}

static void on_cli_pool_state(struct eg_db_pool *p, void *data)
{
    struct cli_run *c = data;
    struct eg_db_pool_stats st;

    if (c->started || !eg_db_pool_is_live(p))
        return;
    eg_db_pool_get_stats(p, &st);
    if (st.schema_version >= 0 && st.schema_version < eg_db_schema_required()) {
        c->started = true;
        c->status = EG_ESCHEMA;
        snprintf(c->message, sizeof(c->message),
                 "database schema is at version %d, this engramd needs %d: run `engramd migrate`",
                 st.schema_version, eg_db_schema_required());
        cli_stop(c);
        return;
    }
    c->started = true;
    eg_db_submit(p, c->batch, on_cli_done, c);
}

static void on_cli_timeout(uv_timer_t *t)
{
    struct cli_run *c = t->data;

    c->status = EG_ETIMEDOUT;
    snprintf(c->message, sizeof(c->message), "could not reach the database within %d s",
             MIGRATE_CONNECT_TIMEOUT_MS / 1000);
    cli_stop(c);
}

/* Runs b; returns 0 with c->res filled, or prints the error and returns 1. */
static int cli_run_batch(struct cli_run *c, const struct eg_db_batch *b)
{
    struct eg_db_config dc = db_config(1, 30000);
    uv_loop_t loop;

    memset(c, 0, sizeof(*c));
    c->batch = b;
    c->status = EG_EUNAVAIL;
    uv_loop_init(&loop);
    uv_timer_init(&loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, on_cli_timeout, MIGRATE_CONNECT_TIMEOUT_MS, 0);
    c->pool = eg_db_pool_new(&loop, &dc, on_cli_pool_state, c);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (c->status != 0) {
        if (strncmp(c->sqlstate, "22", 2) == 0)
            fprintf(stderr, "engramd keys: invalid value: %s\n", c->message);
        else
            fprintf(stderr, "engramd keys: %s\n",
                    c->message[0] != '\0' ? c->message : eg_strerror(c->status));
        return 1;
    }
    return 0;
}

static void cli_clear(struct cli_run *c)
{
    for (size_t i = 0; i < c->nres; i++)
        PQclear(c->res[i]);
    c->nres = 0;
}

static const char *cli_value(const struct cli_run *c, size_t i, int col)
{
    if (i >= c->nres || PQntuples(c->res[i]) != 1 || PQnfields(c->res[i]) <= col
        || PQgetisnull(c->res[i], 0, col))
        return NULL;
    return PQgetvalue(c->res[i], 0, col);
}

struct keys_args {
    const char *sub;
    const char *target;
    const char *project;
    const char *scopes;
    const char *name;
    const char *expires;
    const char *overlap;
    bool if_no_admin;
};

static int keys_usage(const char *why)
{
    fprintf(stderr, "engramd keys: %s\n%s", why, usage_keys);
    return EXIT_CONFIG;
}

static int parse_keys_args(int argc, char **argv, struct keys_args *a)
{
    memset(a, 0, sizeof(*a));
    if (argc < 3)
        return keys_usage("missing subcommand");
    a->sub = argv[2];
    for (int i = 3; i < argc; i++) {
        const char *o = argv[i];
        const char **slot = NULL;

        if (strcmp(o, "--project") == 0)
            slot = &a->project;
        else if (strcmp(o, "--scopes") == 0)
            slot = &a->scopes;
        else if (strcmp(o, "--name") == 0)
            slot = &a->name;
        else if (strcmp(o, "--expires") == 0)
            slot = &a->expires;
        else if (strcmp(o, "--overlap") == 0)
            slot = &a->overlap;
        else if (strcmp(o, "--if-no-admin") == 0) {
            a->if_no_admin = true;
            continue;
        } else if (o[0] != '-' && a->target == NULL) {
            a->target = o;
            continue;
        } else {
            fprintf(stderr, "engramd keys: unexpected argument \"%s\"\n", o);
            return EXIT_CONFIG;
        }
        if (i + 1 >= argc)
            return keys_usage("an option is missing its value");
        *slot = argv[++i];
    }
    return 0;
}

static int keys_create(const struct keys_args *a)
{
    struct eg_auth_key_spec spec = {0};
    struct eg_auth_new_key k;
    struct eg_db_batch b = {0};
    struct cli_run c;
    struct eg_buf out;
    char scopes[128];
    char secs[32];
    char id[48] = "key_";
    const char *row;
    long mask;
    int64_t n;

    if (a->project == NULL || a->project[0] == '\0' || strlen(a->project) > 255)
        return keys_usage("--project is required (1 to 255 bytes)");
    if (a->scopes == NULL)
        return keys_usage("--scopes is required");
    mask = eg_auth_scopes_parse(a->scopes, strlen(a->scopes));
    if (mask <= 0)
        return keys_usage("--scopes: expected a comma-separated list of known scopes");
    if (a->name != NULL && strlen(a->name) > 200)
        return keys_usage("--name: at most 200 bytes");
    if (a->target != NULL)
        return keys_usage("create takes no positional argument");
    eg_auth_scopes_format((unsigned)mask, scopes, sizeof(scopes));
    spec.project = a->project;
    spec.scopes = scopes;
    spec.name = a->name != NULL ? a->name : "";
    spec.only_if_no_admin = a->if_no_admin;
    if (a->expires != NULL) {
        if (eg_auth_duration_parse(a->expires, strlen(a->expires), &n) == 0) {
            snprintf(secs, sizeof(secs), "%lld", (long long)n);
            spec.exp_secs = secs;
        } else {
            spec.exp_at = a->expires;
        }
    }
    eg_auth_key_generate(&k);
    eg_uuid_v4(id + 4);
    eg_auth_batch_create(&b, id, &k, &spec, NULL, "cli");
    if (cli_run_batch(&c, &b) != 0)
        return 1;
    row = cli_value(&c, 0, 0);
    if (row == NULL) {
        cli_clear(&c);
        if (a->if_no_admin) {
            fprintf(stderr,
                    "engramd keys: project \"%s\" already has an active admin key; "
                    "none created\n",
                    a->project);
            return 0;
        }
        fprintf(stderr, "engramd keys: the key was not created\n");
        return 1;
    }
    eg_buf_init(&out, 1u << 20);
    eg_auth_json_with_key(&out, row, k.key);
    printf("%s\n", out.base);
    fflush(stdout);
    fprintf(stderr, "engramd keys: this is the only time the key is shown; store it now\n");
    eg_buf_fini(&out);
    memset(&k, 0, sizeof(k));
    cli_clear(&c);
    return 0;
}

static int keys_simple(const struct keys_args *a)
{
    struct eg_db_batch b = {0};
    struct eg_auth_new_key k;
    struct cli_run c;
    char id[48] = "key_";
    char secs[32];
    const char *row;
    int rc = 0;

    if (strcmp(a->sub, "list") == 0) {
        if (a->target != NULL)
            return keys_usage("list takes no positional argument");
        eg_auth_batch_list(&b, a->project);
    } else if (strcmp(a->sub, "revoke") == 0) {
        if (a->target == NULL)
            return keys_usage("revoke needs a key id or prefix");
        eg_auth_batch_revoke(&b, a->target, NULL, NULL, "cli");
    } else {
        int64_t n = 86400;

        if (a->target == NULL)
            return keys_usage("rotate needs a key id or prefix");
        if (a->overlap != NULL && eg_auth_duration_parse(a->overlap, strlen(a->overlap), &n) < 0)
            return keys_usage("--overlap: expected a duration such as 24h, 30m or 0s");
        snprintf(secs, sizeof(secs), "%lld", (long long)n);
        eg_auth_key_generate(&k);
        eg_uuid_v4(id + 4);
        eg_auth_batch_rotate(&b, a->target, NULL, secs, id, &k, NULL, "cli");
    }
    if (cli_run_batch(&c, &b) != 0)
        return 1;
    row = cli_value(&c, 0, 0);
    if (row == NULL) {
        fprintf(stderr, "engramd keys: no such key\n");
        rc = 1;
    } else if (strcmp(a->sub, "rotate") == 0) {
        struct eg_buf out;

        eg_buf_init(&out, 1u << 20);
        eg_auth_json_with_key(&out, row, k.key);
        printf("%s\n", out.base);
        printf("%s\n", cli_value(&c, 0, 1) != NULL ? cli_value(&c, 0, 1) : "null");
        fflush(stdout);
        fprintf(stderr, "engramd keys: the first line holds the new key, shown only now; the "
                        "second is the old key, valid until its expires_at\n");
        eg_buf_fini(&out);
        memset(&k, 0, sizeof(k));
    } else {
        printf("%s\n", row);
    }
    cli_clear(&c);
    return rc;
}

static int cmd_keys(int argc, char **argv)
{
    struct keys_args a;
    int rc = parse_keys_args(argc, argv, &a);

    if (rc != 0)
        return rc;
    if (strcmp(a.sub, "create") == 0)
        return keys_create(&a);
    if (strcmp(a.sub, "list") == 0 || strcmp(a.sub, "revoke") == 0 || strcmp(a.sub, "rotate") == 0)
        return keys_simple(&a);
    return keys_usage("unknown subcommand");
}

/* ---- serve -------------------------------------------------------------------------------- */

struct server {
    uv_loop_t loop;
    struct eg_app app;
    struct eg_net_listeners listeners;
    struct eg_net_listeners tls_listeners; /* when ENGRAM_TLS_PORT is set */
    uv_signal_t sigterm;
    uv_signal_t sigint;
    uv_timer_t drain_timer; /* delay, then deadline */
    uv_timer_t check_timer; /* polls for the last connection to close */
    uv_prepare_t log_flush; /* writes buffered log lines before the loop sleeps */
    bool listeners_open;
    bool tls_listeners_open;
    bool is_stopping;
    bool is_closed;
    bool drain_delay_done;
    int exit_code;
};

static struct server srv;

static void close_everything(void);

static void on_pool_closed(void *data);

static void on_seq_closed(void *data)
{
    (void)data;
    eg_db_pool_close(srv.app.db, on_pool_closed, NULL);
}

static void on_bus_closed(void *data)
{
    (void)data;
    srv.app.bus = NULL;
    eg_db_seq_close(srv.app.seq, on_seq_closed, NULL);
}

static void on_hub_closed(void *data)
{
    (void)data;
    srv.app.sse = NULL; /* a sequencer batch still in flight must not reach it */
    /* The hub's topics unwatch their channels as they go: the bus closes after it. */
    eg_bus_close(srv.app.bus, on_bus_closed, NULL);
}

static void on_sequenced(const PGresult *rows, void *data)
{
    (void)data;
    if (srv.app.sse != NULL)
        eg_sse_hub_publish(srv.app.sse, rows);
    eg_bus_announce(srv.app.bus, rows);
}

static void on_bus_notice(const char *project, int64_t epoch, int64_t first, int64_t last,
                          void *data)
{
    (void)data;
    if (srv.app.sse != NULL)
        eg_sse_hub_notice(srv.app.sse, project, epoch, first, last);
}

static void on_bus_resync(const char *project, void *data)
{
    (void)data;
    if (srv.app.sse != NULL)
        eg_sse_hub_resync(srv.app.sse, project);
}

static void hub_watch(const char *project, bool on, void *data)
{
    (void)data;
    eg_bus_watch(srv.app.bus, project, on);
}

static bool hub_notices_flowing(void *data)
{
    struct eg_bus_stats bs;

    (void)data;
    if (srv.app.bus == NULL)
        return false;
    eg_bus_get_stats(srv.app.bus, &bs);
    return bs.is_up;
}

static void on_bus_poke(void *data)
{
    (void)data;
    eg_db_seq_poke(srv.app.seq); /* a no-op unless this instance leads */
}

static void on_pool_closed(void *data)
{
    (void)data;
    srv.app.db = NULL;
    srv.app.sse = NULL;
    srv.app.seq = NULL;
    uv_close((uv_handle_t *)&srv.sigterm, NULL);
    uv_close((uv_handle_t *)&srv.sigint, NULL);
    uv_close((uv_handle_t *)&srv.drain_timer, NULL);
    uv_close((uv_handle_t *)&srv.check_timer, NULL);
    uv_close((uv_handle_t *)&srv.log_flush, NULL);
    eg_net_tls_close(srv.app.tls);
}

static void on_log_flush(uv_prepare_t *h)
{
    (void)h;
    eg_log_flush();
}

static void stop_listeners(void)
{
    if (srv.listeners_open) {
        eg_net_listeners_stop(&srv.listeners);
        srv.listeners_open = false;
    }
    if (srv.tls_listeners_open) {
        eg_net_listeners_stop(&srv.tls_listeners);
        srv.tls_listeners_open = false;
    }
}

static void close_everything(void)
{
    if (srv.is_closed)
        return;
    srv.is_closed = true;
    stop_listeners();
    eg_http_server_close_all(srv.app.http);
    uv_timer_stop(&srv.check_timer);
    uv_timer_stop(&srv.drain_timer);
    if (srv.app.redis != NULL && srv.app.redis != eg_bus_redis(srv.app.bus))
        eg_redis_close(srv.app.redis, NULL, NULL);
    srv.app.redis = NULL;
    eg_api_auth_stop(&srv.app);
    /* Hub, then sequencer (its session end frees the lead for a standby), then the pool. */
    eg_sse_hub_close(srv.app.sse, on_hub_closed, NULL);
}

static void on_check(uv_timer_t *t)
{
    (void)t;
    if (srv.drain_delay_done && eg_http_server_connections(srv.app.http) == 0) {
        eg_log(EG_LOG_INFO, "drained; exiting");
        close_everything();
    }
}

static void on_drain_deadline(uv_timer_t *t)
{
    (void)t;
    eg_log_fields(EG_LOG_WARN, "drain deadline passed; closing remaining connections",
                  (struct eg_log_field[]){
                      EG_LF_I("connections", (int64_t)eg_http_server_connections(srv.app.http))},
                  1);
    close_everything();
}

static void drain_connections(void)
{
    srv.drain_delay_done = true;
    /* Streams end with a retry hint first, so their clients resume on another instance. */
    eg_sse_hub_drain(srv.app.sse);
    stop_listeners();
    eg_http_server_drain(srv.app.http);
    uv_timer_start(&srv.drain_timer, on_drain_deadline, cfg.drain_timeout_ms, 0);
    uv_timer_start(&srv.check_timer, on_check, 0, 20);
}

static void on_drain_delay(uv_timer_t *t)
{
    (void)t;
    drain_connections();
}

static void start_drain(const char *why)
{
    if (srv.is_stopping) {
        eg_log(EG_LOG_WARN, "second signal; closing now");
        close_everything();
        return;
    }
    srv.is_stopping = true;
    srv.app.is_draining = true;
    eg_log_fields(EG_LOG_INFO, "draining",
                  (struct eg_log_field[]){EG_LF_S("reason", why),
                                          EG_LF_I("delay_ms", (int64_t)cfg.drain_delay_ms),
                                          EG_LF_I("timeout_ms", (int64_t)cfg.drain_timeout_ms)},
                  3);
    if (cfg.drain_delay_ms > 0)
        uv_timer_start(&srv.drain_timer, on_drain_delay, cfg.drain_delay_ms, 0);
    else
        drain_connections();
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    start_drain(signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_serve_pool_state(struct eg_db_pool *p, void *data)
{
    struct eg_db_pool_stats st;

    (void)data;
    eg_db_pool_get_stats(p, &st);
    if (st.schema_version >= 0 && st.schema_version < srv.app.schema_required && !srv.is_stopping) {
        eg_log_fields(EG_LOG_ERROR,
                      "database schema is older than this engramd needs: run `engramd migrate`",
                      (struct eg_log_field[]){EG_LF_I("schema_version", st.schema_version),
                                              EG_LF_I("required", srv.app.schema_required)},
                      2);
        fprintf(stderr,
                "engramd: database schema is at version %d, this engramd needs %d: run "
                "`engramd migrate`\n",
                st.schema_version, srv.app.schema_required);
        srv.exit_code = 1;
        srv.is_stopping = true;
        srv.app.is_draining = true;
        close_everything();
    }
}

static int cmd_serve(void)
{
    struct eg_http_server_config hc = {
        .limits = {.url_bytes = cfg.max_url_bytes,
                   .header_bytes = cfg.max_header_bytes,
                   .header_count = cfg.max_headers,
                   .body_bytes = cfg.max_body_bytes,
                   .arena_bytes = 8u << 20},
        .header_timeout_ms = cfg.header_timeout_ms,
        .body_timeout_ms = cfg.body_timeout_ms,
        .keepalive_timeout_ms = cfg.keepalive_timeout_ms,
        .write_timeout_ms = cfg.write_timeout_ms,
        .pipeline_max = cfg.pipeline_max,
        .max_connections = cfg.max_connections,
    };
    struct eg_db_config dc = db_config(cfg.db_pool_size, cfg.db_statement_timeout_ms);
    const char *bad_addr = "";
    int rc;

    if (cfg.tls_port >= 0) {
        struct eg_net_tls_config tc = {.cert_path = cfg.tls_cert,
                                       .key_path = cfg.tls_key,
                                       .cert_label = "ENGRAM_TLS_CERT",
                                       .key_label = "ENGRAM_TLS_KEY"};
        char err[512];

        if (eg_net_tls_new(&tc, &srv.app.tls, err, sizeof(err)) < 0) {
            fprintf(stderr, "engramd: %s\n", err);
            return EXIT_CONFIG;
        }
    }
    uv_loop_init(&srv.loop);
    srv.app.loop = &srv.loop;
    srv.app.cfg = &cfg;
    srv.app.version = EG_VERSION;
    srv.app.commit = EG_COMMIT;
    srv.app.schema_required = eg_db_schema_required();
    eg_api_init(&srv.app);
    srv.app.http = eg_http_server_new(&srv.loop, &hc, eg_api_handle, eg_api_done, &srv.app);

    rc = eg_net_listeners_start(&srv.listeners, &srv.loop, cfg.bind, cfg.port, 1024,
                                eg_http_server_accept, srv.app.http, &bad_addr);
    if (rc == 0 && srv.app.tls != NULL) {
        srv.listeners_open = true;
        rc = eg_net_listeners_start(&srv.tls_listeners, &srv.loop, cfg.tls_bind, cfg.tls_port, 1024,
                                    eg_http_server_accept, srv.app.http, &bad_addr);
        if (rc < 0)
            fprintf(stderr, "engramd: cannot listen on %s port %d (ENGRAM_TLS_PORT): %s\n",
                    bad_addr, cfg.tls_port, uv_strerror(rc));
        else
            eg_net_listeners_set_tls(&srv.tls_listeners, srv.app.tls);
    } else if (rc < 0) {
        fprintf(stderr, "engramd: cannot listen on %s port %d: %s\n", bad_addr, cfg.port,
                uv_strerror(rc));
    }
    if (rc < 0) {
        stop_listeners();
        eg_http_server_close_all(srv.app.http);
        uv_run(&srv.loop, UV_RUN_DEFAULT);
        eg_http_server_free(srv.app.http);
        eg_api_fini(&srv.app);
        uv_loop_close(&srv.loop);
        eg_net_tls_free(srv.app.tls);
        return 1;
    }
    srv.listeners_open = true;
    if (srv.app.tls != NULL) {
        srv.tls_listeners_open = true;
        eg_net_tls_start(srv.app.tls, &srv.loop);
    }
    srv.app.db = eg_db_pool_new(&srv.loop, &dc, on_serve_pool_state, NULL);
    {
        struct eg_db_seq_config sc = {
            .conninfo = cfg.database_url,
            .idle_poll_ms = cfg.sequencer_poll_ms,
            .standby_poll_ms = 500,
            .batch_max = cfg.sequencer_batch,
            .notify = strcmp(cfg.bus, "postgres") == 0,
            .retention_s = cfg.event_retention_s,
        };
        struct eg_bus_hooks bh = {
            .on_notice = on_bus_notice,
            .on_resync = on_bus_resync,
            .on_poke = on_bus_poke,
        };
        struct eg_sse_hub_config hc2 = {
            .keepalive_ms = cfg.sse_keepalive_ms,
            .heartbeat_ms = cfg.sse_heartbeat_ms,
            .catchup_poll_ms = cfg.sse_catchup_ms,
            .max_pending_bytes = cfg.sse_max_pending_bytes,
            .max_behind_ms = cfg.sse_max_behind_ms,
            .retry_ms = cfg.sse_retry_ms,
            .watch = hub_watch,
            .notices_flowing = hub_notices_flowing,
        };
        struct eg_redis_addr ra;

        srv.app.seq = eg_db_seq_new(&srv.loop, &sc, on_sequenced, NULL);
        if (cfg.redis_url[0] != '\0')
            eg_redis_addr_parse(cfg.redis_url, &ra);
        if (strcmp(cfg.bus, "redis") == 0) {
            char instance[37];

            eg_uuid_v4(instance);
            srv.app.bus = eg_bus_new_redis(&srv.loop, &ra, instance, &bh);
            srv.app.redis = eg_bus_redis(srv.app.bus);
        } else {
            srv.app.bus = eg_bus_new_postgres(&srv.loop, cfg.database_url, &bh);
            if (cfg.redis_url[0] != '\0')
                srv.app.redis = eg_redis_new(&srv.loop, &ra, 1000, NULL);
        }
        srv.app.sse = eg_sse_hub_new(&srv.loop, srv.app.db, &hc2);
    }
    eg_api_auth_start(&srv.app);

    uv_signal_init(&srv.loop, &srv.sigterm);
    uv_signal_init(&srv.loop, &srv.sigint);
    uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv.sigint, on_signal, SIGINT);
    uv_timer_init(&srv.loop, &srv.drain_timer);
    uv_timer_init(&srv.loop, &srv.check_timer);
    uv_prepare_init(&srv.loop, &srv.log_flush);
    uv_prepare_start(&srv.log_flush, on_log_flush);
    eg_log_set_buffered(true);

    eg_log_fields(EG_LOG_INFO, "engramd listening",
                  (struct eg_log_field[]){EG_LF_S("version", EG_VERSION),
                                          EG_LF_S("commit", EG_COMMIT), EG_LF_S("bind", cfg.bind),
                                          EG_LF_I("port", eg_net_listeners_port(&srv.listeners)),
                                          EG_LF_I("db_pool_size", cfg.db_pool_size),
                                          EG_LF_S("bus", cfg.bus),
                                          EG_LF_I("schema_required", srv.app.schema_required)},
                  7);
    if (srv.app.tls != NULL)
        eg_log_fields(
            EG_LOG_INFO, "engramd listening for HTTPS",
            (struct eg_log_field[]){EG_LF_S("bind", cfg.tls_bind),
                                    EG_LF_I("port", eg_net_listeners_port(&srv.tls_listeners))},
            2);

    uv_run(&srv.loop, UV_RUN_DEFAULT);

    eg_log_set_buffered(false);
    eg_http_server_free(srv.app.http);
    eg_api_fini(&srv.app);
    eg_net_tls_free(srv.app.tls);
    if (uv_loop_close(&srv.loop) != 0) {
        eg_log(EG_LOG_ERROR, "loop closed with handles still open");
        return 1;
    }
    eg_log(EG_LOG_INFO, "stopped");
    return srv.exit_code;
}

/* ---- main --------------------------------------------------------------------------------- */

static bool wants_help(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;
    int rc;

    if (cmd == NULL || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0
        || strcmp(cmd, "help") == 0) {
        fputs(usage_main, cmd == NULL ? stderr : stdout);
        return cmd == NULL ? EXIT_CONFIG : 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("engramd %s (%s)\n", EG_VERSION, EG_COMMIT);
        return 0;
    }
    bool bump = strcmp(cmd, "bump-epoch") == 0;

    if (strcmp(cmd, "serve") != 0 && strcmp(cmd, "migrate") != 0 && strcmp(cmd, "keys") != 0
        && !bump) {
        fprintf(stderr, "engramd: unknown command \"%s\"\n%s", cmd, usage_main);
        return EXIT_CONFIG;
    }
    if (wants_help(argc, argv)) {
        fputs(bump                        ? usage_bump_epoch
              : strcmp(cmd, "serve") == 0 ? usage_serve
              : strcmp(cmd, "keys") == 0  ? usage_keys
                                          : usage_migrate,
              stdout);
        return 0;
    }
    if (strcmp(cmd, "keys") == 0) {
        if (load_config() < 0)
            return EXIT_CONFIG;
        json_set_alloc_funcs(eg_malloc, eg_free);
        return cmd_keys(argc, argv);
    }
    if (argc > (bump ? 3 : 2)) {
        fprintf(stderr, "engramd %s: unexpected argument \"%s\"\n", cmd, argv[bump ? 3 : 2]);
        return EXIT_CONFIG;
    }
    if (load_config() < 0)
        return EXIT_CONFIG;
    eg_net_ignore_sigpipe();
    /* Library allocations follow the same abort-on-OOM policy as ours (STYLE.md §4.6). */
    json_set_alloc_funcs(eg_malloc, eg_free);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (strcmp(cmd, "serve") == 0)
        rc = cmd_serve();
    else if (bump)
        rc = cmd_db_job(start_bump_epoch, argc > 2 ? argv[2] : NULL);
    else
        rc = cmd_db_job(start_migrate, NULL);
    curl_global_cleanup();
    return rc;
}
