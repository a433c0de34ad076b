/*
 * Health endpoints. /health is CORE's (no dependency checks, always 200). /health/live says the
 * loop answers, nothing more, so an outage of a dependency never restarts the process.
 * /health/ready says whether this instance should get traffic: PostgreSQL reachable with the
 * schema this binary needs, and not draining. Redis, once configured, is reported but never makes
 * the instance unready: events keep flowing through PostgreSQL (ARCHITECTURE.md §5–6).
 */
#include "engram/api.h"

#include <string.h>

#include "engram/json.h"

void eg_api_health(struct eg_app *app, struct eg_http_req *r)
{
    struct eg_jw jw;
    char ts[32];

    (void)app;
    eg_time_iso(ts, eg_wall_ms());
    eg_buf_reset(&r->resp_body);
    eg_jw_init(&jw, &r->resp_body);
    eg_jw_obj_begin(&jw);
    eg_jw_key(&jw, "ok");
    eg_jw_bool(&jw, true);
    eg_jw_key(&jw, "service");
    eg_jw_cstr(&jw, "engram");
    eg_jw_key(&jw, "timestamp");
    eg_jw_cstr(&jw, ts);
    eg_jw_obj_end(&jw);
    eg_jw_finish(&jw);
    eg_http_respond(r, 200, NULL);
}

void eg_api_health_live(struct eg_app *app, struct eg_http_req *r)
{
    static const char body[] = "{\"status\":\"pass\"}";

    (void)app;
    eg_http_respond_json(r, 200, body, sizeof(body) - 1);
}

static void check(struct eg_jw *jw, const char *name, bool pass)
{
    eg_jw_key(jw, name);
    eg_jw_obj_begin(jw);
    eg_jw_key(jw, "status");
    eg_jw_cstr(jw, pass ? "pass" : "fail");
}

void eg_api_health_ready(struct eg_app *app, struct eg_http_req *r)
{
    struct eg_db_pool_stats st = {0};
    struct eg_jw jw;
    bool db_ok;
    bool schema_ok;
    bool ok;

    if (app->db != NULL)
        eg_db_pool_get_stats(app->db, &st);
    else
        st.schema_version = -1;
    db_ok = app->db != NULL && eg_db_pool_is_live(app->db);
    schema_ok = st.schema_version >= app->schema_required;
    ok = db_ok && schema_ok && !app->is_draining;

    eg_buf_reset(&r->resp_body);
    eg_jw_init(&jw, &r->resp_body);
    eg_jw_obj_begin(&jw);
    eg_jw_key(&jw, "status");
    eg_jw_cstr(&jw, ok ? "pass" : "fail");
    eg_jw_key(&jw, "checks");
    eg_jw_obj_begin(&jw);

    check(&jw, "postgres", db_ok);
    eg_jw_key(&jw, "connections");
    eg_jw_int(&jw, (int64_t)(st.idle + st.busy));
    eg_jw_obj_end(&jw);

    check(&jw, "schema", schema_ok);
    eg_jw_key(&jw, "version");
    eg_jw_int(&jw, st.schema_version);
    eg_jw_key(&jw, "required");
    eg_jw_int(&jw, app->schema_required);
    eg_jw_obj_end(&jw);

    check(&jw, "draining", !app->is_draining);
    eg_jw_obj_end(&jw);

    /* Reported, never blocking: without Redis, events still flow through PostgreSQL. */
    if (app->redis != NULL) {
        struct eg_redis_stats rs;

        eg_redis_get_stats(app->redis, &rs);
        check(&jw, "redis", rs.is_up);
        eg_jw_key(&jw, "affects_readiness");
        eg_jw_bool(&jw, false);
        if (rs.is_up) {
            eg_jw_key(&jw, "ping_seconds");
            eg_jw_num(&jw, rs.last_ping_seconds);
        }
        eg_jw_obj_end(&jw);
    }

    eg_jw_obj_end(&jw);
    eg_jw_obj_end(&jw);
    if (eg_jw_finish(&jw) < 0) {
        eg_http_respond_error(r, 500, "server_error");
        return;
    }
    if (!ok)
        eg_http_add_header(r, "Retry-After", "1");
    eg_http_respond(r, ok ? 200 : 503, NULL);
}
