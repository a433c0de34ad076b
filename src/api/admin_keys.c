/*
 * /admin/keys: key management over HTTP for `admin`-scoped keys, always inside the admin key's
 * own project (tenancy: a key never manages another project's keys). The statements and their
 * audit rows are the CLI's (src/auth/store.c). A new key's text is in the create and rotate
 * responses only; nothing else, logs included, ever shows it.
 */
#include "api_int.h"

#include <stdio.h>
#include <string.h>

#define NAME_MAX_BYTES 200
#define ID_MAX_BYTES   100

struct keys_ctx {
    struct eg_db_batch batch;
    struct eg_auth_new_key key;
    char new_id[48];
    char scopes[128];
    char secs[32];
    const char *target; /* id or prefix from the path */
};

static struct keys_ctx *ctx_new(struct eg_http_req *r)
{
    struct keys_ctx *c = eg_arena_alloc(&r->arena, sizeof(*c));

    if (c == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return NULL;
    }
    memset(c, 0, sizeof(*c));
    return c;
}

static void respond_text(struct eg_http_req *r, int status, const struct eg_buf *b)
{
    eg_http_respond_json(r, status, b->base, b->len);
}

/* A database error caused by the client's expiry text is a 400, anything else the usual. */
static bool keys_db_failed(struct eg_http_req *r, const struct eg_db_reply *rep)
{
    if (rep->status == EG_EDB && strncmp(rep->sqlstate, "22", 2) == 0) {
        eg__api_error_msg(r, 400, "invalid_request",
                          "expires must be an ISO-8601 timestamp or a duration such as 30d");
        return true;
    }
    return eg__api_db_failed(r, rep);
}

static const char *row_text(const struct eg_db_reply *rep, int col)
{
    const PGresult *res = rep->nresults > 0 ? rep->results[0] : NULL;

    if (res == NULL || PQntuples(res) != 1 || PQgetisnull(res, 0, col))
        return NULL;
    return PQgetvalue(res, 0, col);
}

static const char *path_target(struct eg_http_req *r)
{
    size_t n = 0;
    const char *id = eg__api_param(r, 0, &n);

    if (id == NULL) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return NULL;
    }
    if (n == 0 || n > ID_MAX_BYTES || memchr(id, '\0', n) != NULL) {
        eg_http_respond_error(r, 404, "key_not_found");
        return NULL;
    }
    return id;
}

/* Reads an optional duration field; def when absent. Answers 400 and returns false when bad. */
static bool duration_field(struct eg_http_req *r, const json_t *v, const char *name, int64_t def,
                           int64_t *out)
{
    if (v == NULL || json_is_null(v)) {
        *out = def;
        return true;
    }
    if (!json_is_string(v)
        || eg_auth_duration_parse(json_string_value(v), json_string_length(v), out) < 0) {
        char msg[128];

        snprintf(msg, sizeof(msg), "%s must be a duration such as 30d, 24h, 15m or 10s", name);
        eg__api_error_msg(r, 400, "invalid_request", msg);
        return false;
    }
    return true;
}

/* ---- GET /admin/keys ---------------------------------------------------------------------- */

static void on_listed(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                      void *data)
{
    const char *rows;
    struct eg_buf *b = &r->resp_body;

    (void)app;
    (void)data;
    if (eg__api_db_failed(r, rep))
        return;
    rows = row_text(rep, 0);
    eg_buf_reset(b);
    if (eg_buf_puts(b, "{\"keys\":") < 0 || eg_buf_puts(b, rows != NULL ? rows : "[]") < 0
        || eg_buf_puts(b, "}") < 0) {
        eg_http_respond_error(r, 500, "server_error");
        return;
    }
    eg_http_respond(r, 200, NULL);
}

void eg__api_keys_list(struct eg_app *app, struct eg_http_req *r)
{
    struct keys_ctx *c = ctx_new(r);

    if (c == NULL)
        return;
    eg_auth_batch_list(&c->batch, eg__api_project(r));
    eg__api_db(app, r, &c->batch, on_listed, c);
}

/* ---- POST /admin/keys --------------------------------------------------------------------- */

static void on_created(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                       void *data)
{
    struct keys_ctx *c = data;
    const char *row;
    struct eg_buf b;
    int rc;

    (void)app;
    if (keys_db_failed(r, rep))
        return;
    row = row_text(rep, 0);
    if (row == NULL) {
        eg_http_respond_error(r, 500, "server_error");
        return;
    }
    eg_buf_init(&b, 64 * 1024);
    rc = eg_auth_json_with_key(&b, row, c->key.key);
    /* Wiped before responding: answering may free the request's arena at once. */
    memset(c->key.key, 0, sizeof(c->key.key));
    if (rc < 0)
        eg_http_respond_error(r, 500, "server_error");
    else
        respond_text(r, 201, &b);
    eg_buf_fini(&b);
}

void eg__api_keys_create(struct eg_app *app, struct eg_http_req *r)
{
    const struct eg_auth_principal *p = eg__api_principal(r);
    json_t *body = eg__api_body(app, r);
    struct eg_auth_key_spec spec = {0};
    struct keys_ctx *c;
    const json_t *v;
    long mask = 0;

    if (body == NULL)
        return;
    c = ctx_new(r);
    if (c == NULL)
        return;
    /* Mass assignment: a key is always made in the admin key's own project. */
    v = json_object_get(body, "project_id");
    if (v != NULL && !(json_is_string(v) && strcmp(json_string_value(v), p->project) == 0)) {
        eg__api_error_msg(r, 403, "forbidden", "keys can only be created in the key's project");
        return;
    }
    v = json_object_get(body, "scopes");
    if (json_is_string(v)) {
        mask = eg_auth_scopes_parse(json_string_value(v), json_string_length(v));
    } else if (json_is_array(v) && json_array_size(v) <= 16) {
        size_t i;
        json_t *e;

        json_array_foreach(v, i, e)
        {
            long one = json_is_string(e)
                           ? eg_auth_scopes_parse(json_string_value(e), json_string_length(e))
                           : -1;

            if (one <= 0) {
                mask = -1;
                break;
            }
            mask |= one;
        }
    } else {
        mask = -1;
    }
    if (mask <= 0) {
        eg__api_error_msg(r, 400, "invalid_request",
                          "scopes must list one or more of memories:read, memories:write, "
                          "claims:read, claims:write, events:read, admin");
        return;
    }
    eg_auth_scopes_format((unsigned)mask, c->scopes, sizeof(c->scopes));
    spec.project = p->project;
    spec.scopes = c->scopes;
    spec.name = "";
    v = json_object_get(body, "name");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v) || json_string_length(v) > NAME_MAX_BYTES) {
            eg__api_error_msg(r, 400, "invalid_request",
                              "name must be a string of at most 200 bytes");
            return;
        }
        spec.name = json_string_value(v);
    }
    v = json_object_get(body, "expires");
    if (v != NULL && !json_is_null(v)) {
        int64_t secs;

        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 64) {
            eg__api_error_msg(r, 400, "invalid_request",
                              "expires must be an ISO-8601 timestamp or a duration such as 30d");
            return;
        }
        if (eg_auth_duration_parse(json_string_value(v), json_string_length(v), &secs) == 0) {
            snprintf(c->secs, sizeof(c->secs), "%lld", (long long)secs);
            spec.exp_secs = c->secs;
        } else {
            spec.exp_at = json_string_value(v); /* PostgreSQL parses it; a bad one is a 400 */
        }
    }
    eg_auth_key_generate(&c->key);
    eg_uuid_v4(c->new_id + 4);
    memcpy(c->new_id, "key_", 4);
    if (eg_auth_batch_create(&c->batch, c->new_id, &c->key, &spec, p->key_id, r->request_id) < 0) {
        eg_http_respond_error(r, 500, "server_error");
        return;
    }
    eg__api_db(app, r, &c->batch, on_created, c);
}

/* ---- POST /admin/keys/{id}/revoke --------------------------------------------------------- */

static void on_revoked(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                       void *data)
{
    const char *row;
    json_t *j;

    (void)data;
    if (eg__api_db_failed(r, rep))
        return;
    row = row_text(rep, 0);
    if (row == NULL) {
        eg_http_respond_error(r, 404, "key_not_found");
        return;
    }
    /* Apply it here at once; other instances pick it up in their next sweep. */
    j = json_loads(row, 0, NULL);
    if (j != NULL && json_is_string(json_object_get(j, "id")))
        eg__api_key_revoked(app, json_string_value(json_object_get(j, "id")));
    json_decref(j);
    eg_http_respond_json(r, 200, row, strlen(row));
}

void eg__api_keys_revoke(struct eg_app *app, struct eg_http_req *r)
{
    const struct eg_auth_principal *p = eg__api_principal(r);
    struct keys_ctx *c;
    const char *target = path_target(r);

    if (target == NULL)
        return;
    c = ctx_new(r);
    if (c == NULL)
        return;
    eg_auth_batch_revoke(&c->batch, target, p->project, p->key_id, r->request_id);
    eg__api_db(app, r, &c->batch, on_revoked, c);
}

/* ---- POST /admin/keys/{id}/rotate --------------------------------------------------------- */

static void on_rotated(struct eg_app *app, struct eg_http_req *r, const struct eg_db_reply *rep,
                       void *data)
{
    struct keys_ctx *c = data;
    const char *fresh;
    const char *old;
    struct eg_buf b;
    int rc;

    (void)app;
    if (eg__api_db_failed(r, rep))
        return;
    fresh = row_text(rep, 0);
    old = row_text(rep, 1);
    if (fresh == NULL || old == NULL) {
        eg_http_respond_error(r, 404, "key_not_found");
        return;
    }
    eg_buf_init(&b, 64 * 1024);
    rc = eg_auth_json_with_key(&b, fresh, c->key.key);
    /* {"key":..,<new key>} becomes {"key":..,<new key>,"previous":<old key>} */
    if (rc == 0 && b.len > 0 && b.base[b.len - 1] == '}') {
        b.len--;
        rc = eg_buf_puts(&b, ",\"previous\":");
        if (rc == 0)
            rc = eg_buf_puts(&b, old);
        if (rc == 0)
            rc = eg_buf_puts(&b, "}");
    }
    memset(c->key.key, 0, sizeof(c->key.key));
    if (rc < 0)
        eg_http_respond_error(r, 500, "server_error");
    else
        respond_text(r, 200, &b);
    eg_buf_fini(&b);
}

void eg__api_keys_rotate(struct eg_app *app, struct eg_http_req *r)
{
    const struct eg_auth_principal *p = eg__api_principal(r);
    const char *target = path_target(r);
    struct keys_ctx *c;
    json_t *body;
    int64_t overlap;

    if (target == NULL)
        return;
    body = eg__api_body(app, r);
    if (body == NULL)
        return;
    if (!duration_field(r, json_object_get(body, "overlap"), "overlap", 86400, &overlap))
        return;
    c = ctx_new(r);
    if (c == NULL)
        return;
    snprintf(c->secs, sizeof(c->secs), "%lld", (long long)overlap);
    eg_auth_key_generate(&c->key);
    eg_uuid_v4(c->new_id + 4);
    memcpy(c->new_id, "key_", 4);
    eg_auth_batch_rotate(&c->batch, target, p->project, c->secs, c->new_id, &c->key, p->key_id,
                         r->request_id);
    eg__api_db(app, r, &c->batch, on_rotated, c);
}
