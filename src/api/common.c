/* Shared handler helpers: CORE-compatible body decoding, JS coercions, row serialisation. */
#include "api_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- JS whitespace and trimming ----------------------------------------------------------- */

/* Length of the JS WhiteSpace/LineTerminator character at s (0 if none), for String.trim(). */
static size_t js_space_len(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (s[0] == ' ' || (s[0] >= 0x09 && s[0] <= 0x0d))
        return 1;
    if (n >= 2 && s[0] == 0xc2 && s[1] == 0xa0) /* U+00A0 */
        return 2;
    if (n >= 3 && s[0] == 0xe1 && s[1] == 0x9a && s[2] == 0x80) /* U+1680 */
        return 3;
    if (n >= 3 && s[0] == 0xe2 && s[1] == 0x80
        && ((s[2] >= 0x80 && s[2] <= 0x8a) || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf))
        return 3; /* U+2000..U+200A, U+2028, U+2029, U+202F */
    if (n >= 3 && s[0] == 0xe2 && s[1] == 0x81 && s[2] == 0x9f) /* U+205F */
        return 3;
    if (n >= 3 && s[0] == 0xe3 && s[1] == 0x80 && s[2] == 0x80) /* U+3000 */
        return 3;
    if (n >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf) /* U+FEFF */
        return 3;
    return 0;
}

/* Length of a JS whitespace character ending at s[n-1] (0 if none). */
static size_t js_space_len_back(const unsigned char *s, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        if (js_space_len(s + n - k, k) == k)
            return k;
    }
    return 0;
}

const char *eg__api_trim(const char *s, size_t *n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = *n;
    size_t k;

    while ((k = js_space_len(p, len)) > 0) {
        p += k;
        len -= k;
    }
    while ((k = js_space_len_back(p, len)) > 0)
        len -= k;
    *n = len;
    return (const char *)p;
}

/* ---- bodies ------------------------------------------------------------------------------- */

static void on_json_free(void *data)
{
    json_decref(data);
}

static json_t *parse_body(struct eg_app *app, struct eg_http_req *r, bool lenient)
{
    size_t n = r->body.len;
    const char *s = eg__api_trim(r->body.base != NULL ? r->body.base : "", &n);
    struct eg_json_err err;
    json_t *v;

    if (n == 0) {
        v = json_object();
    } else {
        v = eg_json_parse(s, n, (int)app->cfg->json_max_depth, &err);
        if (v == NULL) {
            if (lenient) {
                v = json_object();
            } else {
                eg_http_respond_error(r, 400,
                                      err.code == EG_JSON_ENUL || err.code == EG_JSON_EUTF8
                                          ? "invalid_text"
                                          : "invalid_json_body");
                return NULL;
            }
        } else if (!json_is_object(v)) {
            /* CORE refuses falsy bodies; engram refuses every non-object (DECISIONS.md item 3). */
            json_decref(v);
            if (!lenient) {
                eg_http_respond_error(r, 400, "invalid_json_body");
                return NULL;
            }
            v = json_object();
        }
    }
    if (eg_arena_defer(&r->arena, on_json_free, v) < 0) {
        json_decref(v);
        eg_http_respond_error(r, 413, "payload_too_large");
        return NULL;
    }
    return v;
}

json_t *eg__api_body(struct eg_app *app, struct eg_http_req *r)
{
    return parse_body(app, r, false);
}

json_t *eg__api_body_lenient(struct eg_app *app, struct eg_http_req *r)
{
    return parse_body(app, r, true);
}

/* ---- JS coercions ------------------------------------------------------------------------- */

bool eg__api_is_true(const json_t *v)
{
    return v != NULL && json_is_true(v);
}

bool eg__api_truthy(const json_t *v)
{
    if (v == NULL || json_is_null(v) || json_is_false(v))
        return false;
    if (json_is_number(v)) {
        double d = json_number_value(v);

        return d != 0 && !isnan(d);
    }
    if (json_is_string(v))
        return json_string_length(v) > 0;
    return true;
}

/* Appends JS String(v) to b (arrays join their elements with ","; null/undefined inside an
 * array become ""). */
static int js_stringify_into(struct eg_buf *b, const json_t *v, int depth)
{
    char num[EG_JSON_NUMBER_MAX];

    if (depth > 64)
        return EG_ELIMIT;
    switch (json_typeof(v)) {
    case JSON_STRING: return eg_buf_append(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
    case JSON_REAL:
        eg_json_fmt_number(num, json_number_value(v));
        /* NaN and infinities never come out of JSON parsing. */
        return eg_buf_puts(b, num);
    case JSON_TRUE: return eg_buf_puts(b, "true");
    case JSON_FALSE: return eg_buf_puts(b, "false");
    case JSON_NULL: return eg_buf_puts(b, "null");
    case JSON_OBJECT: return eg_buf_puts(b, "[object Object]");
    case JSON_ARRAY: {
        size_t i;
        json_t *e;
        int rc = 0;

        json_array_foreach(v, i, e)
        {
            if (i > 0)
                rc = eg_buf_putc(b, ',');
            if (rc == 0 && !json_is_null(e))
                rc = js_stringify_into(b, e, depth + 1);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    }
    return 0;
}

static char *to_arena(struct eg_arena *a, struct eg_buf *b, size_t *len)
{
    char *out = eg_arena_strndup(a, b->base != NULL ? b->base : "", b->len);

    if (len != NULL)
        *len = b->len;
    eg_buf_fini(b);
    return out;
}

char *eg__api_js_string_raw(struct eg_arena *a, const json_t *v, size_t *len)
{
    struct eg_buf b;

    eg_buf_init(&b, 16u << 20);
    if (v == NULL)
        eg_buf_puts(&b, "undefined");
    else if (js_stringify_into(&b, v, 0) < 0) {
        eg_buf_fini(&b);
        return NULL;
    }
    return to_arena(a, &b, len);
}

char *eg__api_js_string(struct eg_arena *a, const json_t *v, size_t *len)
{
    struct eg_buf b;
    const char *s;
    size_t n;
    char *out;

    eg_buf_init(&b, 16u << 20);
    if (eg__api_truthy(v) && js_stringify_into(&b, v, 0) < 0) {
        eg_buf_fini(&b);
        return NULL;
    }
    n = b.len;
    s = eg__api_trim(b.base != NULL ? b.base : "", &n);
    out = eg_arena_strndup(a, s, n);
    if (len != NULL)
        *len = n;
    eg_buf_fini(&b);
    return out;
}

/* JS StringToNumber: StrDecimalLiteral, Infinity, or 0x/0o/0b integers; anything else NaN. */
double eg__api_js_number_str(const char *s, size_t n)
{
    char tmp[512];
    size_t i = 0;
    bool digits = false;
    int base = 0;
    double v = 0;

    s = eg__api_trim(s, &n);
    if (n == 0)
        return 0;
    if (n >= sizeof(tmp))
        return NAN; /* longer than any number a client can mean; JS would still parse it */
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (n > 2 && tmp[0] == '0') {
        if (tmp[1] == 'x' || tmp[1] == 'X')
            base = 16;
        else if (tmp[1] == 'o' || tmp[1] == 'O')
            base = 8;
        else if (tmp[1] == 'b' || tmp[1] == 'B')
            base = 2;
    }
    if (base != 0) {
        for (i = 2; i < n; i++) {
            int d = tmp[i] >= '0' && tmp[i] <= '9'   ? tmp[i] - '0'
                    : tmp[i] >= 'a' && tmp[i] <= 'f' ? tmp[i] - 'a' + 10
                    : tmp[i] >= 'A' && tmp[i] <= 'F' ? tmp[i] - 'A' + 10
                                                     : 99;
            if (d >= base)
                return NAN;
            v = v * base + d;
        }
        return v;
    }
    if (tmp[i] == '+' || tmp[i] == '-')
        i++;
    if (strcmp(tmp + i, "Infinity") == 0)
        return tmp[0] == '-' ? -INFINITY : INFINITY;
    while (i < n && tmp[i] >= '0' && tmp[i] <= '9') {
        i++;
        digits = true;
    }
    if (i < n && tmp[i] == '.') {
        i++;
        while (i < n && tmp[i] >= '0' && tmp[i] <= '9') {
            i++;
            digits = true;
        }
    }
    if (!digits)
        return NAN;
    if (i < n && (tmp[i] == 'e' || tmp[i] == 'E')) {
        bool exp_digits = false;

        i++;
        if (i < n && (tmp[i] == '+' || tmp[i] == '-'))
            i++;
        while (i < n && tmp[i] >= '0' && tmp[i] <= '9') {
            i++;
            exp_digits = true;
        }
        if (!exp_digits)
            return NAN;
    }
    if (i != n)
        return NAN;
    return strtod(tmp, NULL);
}

double eg__api_js_number(const json_t *v)
{
    if (v == NULL)
        return NAN;
    switch (json_typeof(v)) {
    case JSON_NULL:
    case JSON_FALSE: return 0;
    case JSON_TRUE: return 1;
    case JSON_INTEGER:
    case JSON_REAL: return json_number_value(v);
    case JSON_STRING: return eg__api_js_number_str(json_string_value(v), json_string_length(v));
    case JSON_ARRAY: {
        /* Number([]) is 0, Number([x]) is Number(String(x)), longer arrays are NaN. */
        struct eg_buf b;
        double d;

        if (json_array_size(v) > 1)
            return NAN;
        eg_buf_init(&b, 4096);
        if (json_array_size(v) == 1 && !json_is_null(json_array_get(v, 0))
            && js_stringify_into(&b, json_array_get(v, 0), 0) < 0) {
            eg_buf_fini(&b);
            return NAN;
        }
        d = eg__api_js_number_str(b.base != NULL ? b.base : "", b.len);
        eg_buf_fini(&b);
        return d;
    }
    case JSON_OBJECT: return NAN;
    }
    return NAN;
}

double eg__api_clamp_int(const json_t *v, double min, double max, double def)
{
    double d = eg__api_js_number(v);

    if (!isfinite(d))
        return def;
    d = d < min ? min : d > max ? max : d;
    return floor(d);
}

double eg__api_clamp_float(const json_t *v, double min, double max, double def)
{
    double d = eg__api_js_number(v);

    if (!isfinite(d))
        return def;
    return d < min ? min : d > max ? max : d;
}

char *eg__api_num_text(struct eg_arena *a, double v)
{
    char buf[EG_JSON_NUMBER_MAX];
    size_t n = eg_json_fmt_number(buf, v);

    return eg_arena_strndup(a, buf, n);
}

char *eg__api_new_id(struct eg_arena *a, const char *prefix)
{
    char uuid[37];
    size_t n = strlen(prefix);
    char *id = eg_arena_alloc(a, n + sizeof(uuid));

    if (id == NULL)
        return NULL;
    eg_uuid_v4(uuid);
    memcpy(id, prefix, n);
    memcpy(id + n, uuid, sizeof(uuid));
    return id;
}

char *eg__api_tags_json(struct eg_arena *a, const json_t *v)
{
    struct eg_buf b;
    struct eg_jw jw;
    size_t i;
    json_t *e;
    char *out = NULL;

    eg_buf_init(&b, 8u << 20);
    eg_jw_init(&jw, &b);
    eg_jw_arr_begin(&jw);
    if (json_is_array(v)) {
        json_array_foreach(v, i, e)
        {
            size_t len = 0;
            char *s = eg__api_js_string_raw(a, e, &len);

            if (s == NULL)
                goto out;
            eg_jw_str(&jw, s, len);
        }
    }
    eg_jw_arr_end(&jw);
    if (eg_jw_finish(&jw) == 0)
        out = eg_arena_strndup(a, b.base, b.len);
out:
    eg_buf_fini(&b);
    return out;
}

/* ---- query parameters --------------------------------------------------------------------- */

char *eg__api_query(struct eg_http_req *r, const char *name, size_t *len)
{
    return eg_http_query_get(&r->arena, r->query, name, len);
}

long eg__api_query_int(struct eg_http_req *r, const char *name, long def, long min, long max)
{
    size_t n = 0;
    const char *raw = eg__api_query(r, name, &n);
    double d;

    if (raw == NULL)
        return def; /* DECISIONS.md item 1: the documented default, not CORE's accidental 1 */
    d = eg__api_js_number_str(raw, n);
    if (!isfinite(d))
        return def;
    if (d < (double)min)
        return min;
    if (d > (double)max)
        return max;
    return (long)floor(d);
}

bool eg__api_query_bool(struct eg_http_req *r, const char *name, bool def)
{
    size_t n = 0;
    const char *raw = eg__api_query(r, name, &n);

    if (raw == NULL)
        return def;
    return n == 4 && eg_ascii_caseeq(raw, "true", 4);
}

/* ---- responses ---------------------------------------------------------------------------- */

bool eg__api_pg_ts(const char *pg, char out[32])
{
    /* PostgreSQL (TimeZone=UTC): "2026-11-22 21:08:33.689123+00", fraction optional. */
    size_t n = strlen(pg);
    char ms[4] = "000";
    size_t i;

    if (n < 22 || pg[10] != ' ' || pg[4] != '-' || pg[13] != ':')
        return false;
    i = 19;
    if (pg[i] == '.') {
        i++;
        for (int k = 0; k < 3 && pg[i] >= '0' && pg[i] <= '9'; k++)
            ms[k] = pg[i++];
        while (pg[i] >= '0' && pg[i] <= '9')
            i++; /* microseconds are truncated, as node-postgres does */
    }
    if (strcmp(pg + i, "+00") != 0)
        return false;
    snprintf(out, 32, "%.10sT%.8s.%sZ", pg, pg + 11, ms);
    return true;
}

int eg__api_col(const PGresult *res, const char *name)
{
    return PQfnumber(res, name);
}

const char *eg__api_get(const PGresult *res, int row, const char *name)
{
    int c = PQfnumber(res, name);

    if (c < 0 || row >= PQntuples(res) || PQgetisnull(res, row, c))
        return NULL;
    return PQgetvalue(res, row, c);
}

/* Type OIDs from pg_type.h (stable across PostgreSQL versions). */
enum {
    OID_BOOL = 16,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_TEXT = 25,
    OID_JSON = 114,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_VARCHAR = 1043,
    OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184,
    OID_NUMERIC = 1700,
    OID_JSONB = 3802,
};

void eg__api_write_field(struct eg_jw *jw, const PGresult *res, int row, int col)
{
    const char *v;
    char ts[32];

    if (PQgetisnull(res, row, col)) {
        eg_jw_null(jw);
        return;
    }
    v = PQgetvalue(res, row, col);
    switch (PQftype(res, col)) {
    case OID_BOOL: eg_jw_bool(jw, v[0] == 't'); break;
    case OID_INT2:
    case OID_INT4: eg_jw_raw(jw, v, strlen(v)); break;
    case OID_INT8: eg_jw_str(jw, v, strlen(v)); break; /* node-postgres: bigint as string */
    case OID_FLOAT4:
    case OID_FLOAT8:
    case OID_NUMERIC: eg_jw_num(jw, strtod(v, NULL)); break;
    case OID_TIMESTAMP:
    case OID_TIMESTAMPTZ:
        if (eg__api_pg_ts(v, ts))
            eg_jw_cstr(jw, ts);
        else
            eg_jw_cstr(jw, v);
        break;
    case OID_JSON:
    case OID_JSONB: {
        struct eg_json_err err;
        json_t *j = eg_json_parse(v, strlen(v), 1000, &err);

        if (j == NULL) {
            eg_jw_null(jw);
            break;
        }
        eg_jw_value(jw, j);
        json_decref(j);
        break;
    }
    default: eg_jw_str(jw, v, (size_t)PQgetlength(res, row, col)); break;
    }
}

static bool skipped(const char *name, const char *const *skip)
{
    for (; skip != NULL && *skip != NULL; skip++) {
        if (strcmp(name, *skip) == 0)
            return true;
    }
    return false;
}

void eg__api_write_row(struct eg_jw *jw, const PGresult *res, int row, const char *const *skip)
{
    int n = PQnfields(res);

    eg_jw_obj_begin(jw);
    for (int c = 0; c < n; c++) {
        const char *name = PQfname(res, c);

        if (skipped(name, skip))
            continue;
        eg_jw_key(jw, name);
        eg__api_write_field(jw, res, row, c);
    }
    eg_jw_obj_end(jw);
}

void eg__api_write_rows(struct eg_jw *jw, const PGresult *res, const char *const *skip)
{
    int rows = res != NULL ? PQntuples(res) : 0;

    eg_jw_arr_begin(jw);
    for (int i = 0; i < rows; i++)
        eg__api_write_row(jw, res, i, skip);
    eg_jw_arr_end(jw);
}

void eg__api_send(struct eg_http_req *r, struct eg_jw *jw, int status)
{
    if (eg_jw_finish(jw) < 0) {
        eg_http_respond_error(r, 500, "server_error");
        return;
    }
    eg_http_respond(r, status, NULL);
}

void eg__api_error_msg(struct eg_http_req *r, int status, const char *code, const char *msg)
{
    struct eg_jw jw;

    eg_buf_reset(&r->resp_body);
    eg_jw_init(&jw, &r->resp_body);
    eg_jw_obj_begin(&jw);
    eg_jw_key(&jw, "error");
    eg_jw_cstr(&jw, code);
    eg_jw_key(&jw, "message");
    eg_jw_cstr(&jw, msg);
    eg_jw_obj_end(&jw);
    eg__api_send(r, &jw, status);
}

/* ---- database ----------------------------------------------------------------------------- */

struct api_query {
    struct eg_app *app;
    struct eg_http_req *r;
    struct eg_db_query *q;
    eg__api_db_fn *fn;
    void *data;
};

static void on_api_query_done(const struct eg_db_reply *rep, void *data)
{
    struct api_query *aq = data;

    aq->q = NULL;
    aq->fn(aq->app, aq->r, rep, aq->data);
}

static void on_api_query_cleanup(void *data)
{
    struct api_query *aq = data;

    /* The request ended (client gone) before the database answered: detach. */
    if (aq->q != NULL)
        eg_db_query_cancel(aq->q);
}

/* Runs b for r without an Idempotency-Key. */
static void submit(struct eg_app *app, struct eg_http_req *r, const struct eg_db_batch *b,
                   eg__api_db_fn *fn, void *data)
{
    struct api_query *aq = eg_arena_alloc(&r->arena, sizeof(*aq));

    if (aq == NULL || eg_arena_defer(&r->arena, on_api_query_cleanup, aq) < 0) {
        eg_http_respond_error(r, 413, "payload_too_large");
        return;
    }
    aq->app = app;
    aq->r = r;
    aq->fn = fn;
    aq->data = data;
    aq->q = eg_db_submit(app->db, b, on_api_query_done, aq);
}

void eg__api_db(struct eg_app *app, struct eg_http_req *r, const struct eg_db_batch *b,
                eg__api_db_fn *fn, void *data)
{
    if (!eg__api_idem_db(app, r, b, fn, data))
        submit(app, r, b, fn, data);
}

void eg__api_db_known(struct eg_app *app, struct eg_http_req *r, struct eg_db_batch *b,
                      const struct eg__api_known *known, eg__api_db_fn *fn, void *data)
{
    if (!eg__api_idem_db_known(app, r, b, known, fn, data))
        submit(app, r, b, fn, data);
}

bool eg__api_db_failed(struct eg_http_req *r, const struct eg_db_reply *rep)
{
    if (rep->status == 0)
        return false;
    /*
     * Unavailable, timed out, or refused by a server going away (class 57P: admin/crash
     * shutdown, cannot connect now; class 08: connection exceptions) or by contention (40001
     * serialization, 40P01 deadlock): the request may be retried, so 503 + Retry-After.
     */
    if (rep->status == EG_EUNAVAIL || rep->status == EG_ETIMEDOUT
        || strncmp(rep->sqlstate, "57P", 3) == 0 || strncmp(rep->sqlstate, "08", 2) == 0
        || strcmp(rep->sqlstate, "40001") == 0 || strcmp(rep->sqlstate, "40P01") == 0) {
        eg_http_add_header(r, "Retry-After", "1");
        eg_http_respond_error(r, 503, "service_unavailable");
        return true;
    }
    eg_log_fields(EG_LOG_ERROR, "database error",
                  (struct eg_log_field[]){EG_LF_S("request_id", r->request_id),
                                          EG_LF_S("sqlstate", rep->sqlstate),
                                          EG_LF_S("error", rep->message)},
                  3);
    eg__api_error_msg(r, 500, "server_error", rep->message);
    return true;
}

void eg__api_wrote(struct eg_app *app)
{
    struct eg_db_seq_stats st;

    eg_db_seq_get_stats(app->seq, &st);
    if (st.is_leader)
        eg_db_seq_poke(app->seq);
    else
        eg_bus_poke(app->bus); /* the leader is another instance */
}

struct api_req {
    const char *project;
    const struct eg_auth_principal *principal;
    struct eg__api_idem *idem;
};

static struct api_req *api_req_of(struct eg_http_req *r)
{
    struct api_req *ar = r->user;

    if (ar == NULL) {
        ar = eg_arena_alloc(&r->arena, sizeof(*ar));
        if (ar == NULL)
            return NULL;
        memset(ar, 0, sizeof(*ar));
        r->user = ar;
    }
    return ar;
}

const char *eg__api_project(struct eg_http_req *r)
{
    struct api_req *ar = r->user;

    return ar != NULL ? ar->project : NULL;
}

void eg__api_set_project(struct eg_http_req *r, const char *project)
{
    struct api_req *ar = api_req_of(r);

    if (ar != NULL)
        ar->project = project;
}

const struct eg_auth_principal *eg__api_principal(struct eg_http_req *r)
{
    struct api_req *ar = r->user;

    return ar != NULL ? ar->principal : NULL;
}

const char *eg__api_key_id(struct eg_http_req *r)
{
    const struct eg_auth_principal *p = eg__api_principal(r);

    return p != NULL ? p->key_id : NULL;
}

int eg__api_set_principal(struct eg_http_req *r, const struct eg_auth_principal *p)
{
    struct api_req *ar = api_req_of(r);
    struct eg_auth_principal *copy;

    if (ar == NULL)
        return EG_ELIMIT;
    copy = eg_arena_alloc(&r->arena, sizeof(*copy));
    if (copy == NULL)
        return EG_ELIMIT;
    *copy = *p;
    ar->principal = copy;
    return 0;
}

struct eg__api_idem *eg__api_get_idem(struct eg_http_req *r)
{
    struct api_req *ar = r->user;

    return ar != NULL ? ar->idem : NULL;
}

int eg__api_set_idem(struct eg_http_req *r, struct eg__api_idem *im)
{
    struct api_req *ar = api_req_of(r);

    if (ar == NULL)
        return EG_ELIMIT;
    ar->idem = im;
    return 0;
}
