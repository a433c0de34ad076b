/*
 * Key management statements, shared by `engramd keys` (main.c) and /admin/keys (src/api): one
 * definition of what create, list, revoke and rotate do, each with its audit_log rows in the
 * same transaction. PostgreSQL renders the JSON of a key so both front ends print the same thing;
 * the hash column never leaves the database.
 */
#include "engram/auth.h"

#include <string.h>

/* The public form of a key row k (never key_hash), as compact JSON (row_to_json adds no spaces). */
#define KEY_JSON                                                                                   \
    "(SELECT row_to_json(x) FROM (SELECT k.id, k.project_id, k.name, k.prefix, k.scopes, "         \
    "eg_ts(k.created_at) AS created_at, eg_ts(k.expires_at) AS expires_at, "                       \
    "eg_ts(k.revoked_at) AS revoked_at, k.created_by, k.replaced_by, "                             \
    "CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked' "                                           \
    "WHEN k.expires_at IS NOT NULL AND k.expires_at <= now() THEN 'expired' "                      \
    "ELSE 'active' END AS status) x)"

static struct eg_db_stmt st_create = {
    "auth_key_create",
    "WITH k AS (INSERT INTO api_keys (id, project_id, name, prefix, key_hash, scopes, "
    "expires_at, created_by) SELECT $1, $2, $3, $4, $5, string_to_array($6, ','), "
    "COALESCE(now() + make_interval(secs => $7::float8), $8::timestamptz), $9 "
    "WHERE NOT $10::bool OR NOT EXISTS (SELECT 1 FROM api_keys a WHERE a.project_id = $2 "
    "AND 'admin' = ANY (a.scopes) AND a.revoked_at IS NULL "
    "AND (a.expires_at IS NULL OR a.expires_at > now())) RETURNING *) "
    "SELECT " KEY_JSON "::text FROM k",
    10,
    0,
};

static struct eg_db_stmt st_list = {
    "auth_key_list",
    "SELECT '[' || COALESCE(string_agg(" KEY_JSON "::text, ',' ORDER BY k.created_at, k.id), "
    "'') || ']' "
    "FROM (SELECT * FROM api_keys WHERE $1::text IS NULL OR project_id = $1 "
    "ORDER BY created_at, id LIMIT 10000) k",
    1,
    0,
};

/* Revoking twice keeps the first time. */
static struct eg_db_stmt st_revoke = {
    "auth_key_revoke",
    "WITH k AS (UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) "
    "WHERE (id = $1 OR prefix = $1) AND ($2::text IS NULL OR project_id = $2) RETURNING *) "
    "SELECT " KEY_JSON "::text FROM k",
    2,
    0,
};

/*
 * Rotation: the old key (valid now) expires after the overlap, or keeps an earlier expiry it
 * already had; the new key inherits project, name and scopes. Returns the new key's JSON, then
 * the old key's.
 */
static struct eg_db_stmt st_rotate = {
    "auth_key_rotate",
    "WITH old AS (UPDATE api_keys SET expires_at = LEAST(COALESCE(expires_at, 'infinity'), "
    "now() + make_interval(secs => $3::float8)), replaced_by = $4 "
    "WHERE (id = $1 OR prefix = $1) AND ($2::text IS NULL OR project_id = $2) "
    "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) RETURNING *), "
    "nk AS (INSERT INTO api_keys (id, project_id, name, prefix, key_hash, scopes, expires_at, "
    "created_by) SELECT $4, project_id, name, $5, $6, scopes, NULL, $7 FROM old RETURNING *) "
    "SELECT (SELECT " KEY_JSON "::text FROM nk k), (SELECT " KEY_JSON "::text FROM old k)",
    7,
    0,
};

/* An audit row for a key this transaction changed ($1 is its id or prefix). */
static struct eg_db_stmt st_audit_key = {
    "auth_audit_key",
    "INSERT INTO audit_log (project_id, key_id, request_id, action, object_type, object_id) "
    "SELECT k.project_id, $2, $3, $4, 'api_key', k.id FROM api_keys k "
    "WHERE (k.id = $1 OR k.prefix = $1) AND k.xmin = pg_current_xact_id()::xid",
    4,
    0,
};

static struct eg_db_stmt st_lookup = {
    "auth_key_lookup",
    "SELECT id, project_id, array_to_string(scopes, ','), key_hash, prefix, "
    "(extract(epoch FROM expires_at) * 1000)::bigint FROM api_keys WHERE key_hash = $1 "
    "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
    1,
    0,
};

/*
 * The overlap of 5 s catches revocations whose transaction started (now()) before the previous
 * sweep's snapshot but committed after it.
 */
static struct eg_db_stmt st_sweep = {
    "auth_key_sweep",
    "SELECT id FROM api_keys WHERE (revoked_at IS NOT NULL AND revoked_at > "
    "COALESCE($1::timestamptz, now() - interval '1 minute') - interval '5 seconds') "
    "OR (expires_at IS NOT NULL AND expires_at <= now() AND expires_at > "
    "COALESCE($1::timestamptz, now() - interval '1 minute') - interval '5 seconds') "
    "LIMIT 1000",
    1,
    0,
};

static struct eg_db_stmt st_now = {
    "auth_now",
    "SELECT now()::text",
    0,
    0,
};

int eg_auth_batch_create(struct eg_db_batch *b, const char *id, const struct eg_auth_new_key *k,
                         const struct eg_auth_key_spec *spec, const char *actor_key_id,
                         const char *request_id)
{
    const char *v[] = {id,
                       spec->project,
                       spec->name,
                       k->prefix,
                       k->hash_hex,
                       spec->scopes,
                       spec->exp_secs,
                       spec->exp_at,
                       actor_key_id,
                       spec->only_if_no_admin ? "true" : "false"};
    int rc = eg_db_batch_add(b, &st_create, v);

    if (rc == 0)
        rc = eg_db_batch_add(b, &st_audit_key,
                             (const char *[]){id, actor_key_id, request_id, "key.create"});
    return rc;
}

int eg_auth_batch_list(struct eg_db_batch *b, const char *project)
{
    return eg_db_batch_add(b, &st_list, (const char *[]){project});
}

int eg_auth_batch_revoke(struct eg_db_batch *b, const char *id_or_prefix, const char *project,
                         const char *actor_key_id, const char *request_id)
{
    int rc = eg_db_batch_add(b, &st_revoke, (const char *[]){id_or_prefix, project});

    if (rc == 0)
        rc =
            eg_db_batch_add(b, &st_audit_key,
                            (const char *[]){id_or_prefix, actor_key_id, request_id, "key.revoke"});
    return rc;
}

int eg_auth_batch_rotate(struct eg_db_batch *b, const char *id_or_prefix, const char *project,
                         const char *overlap_secs, const char *new_id,
                         const struct eg_auth_new_key *k, const char *actor_key_id,
                         const char *request_id)
{
    const char *v[] = {id_or_prefix, project,     overlap_secs, new_id,
                       k->prefix,    k->hash_hex, actor_key_id};
    int rc = eg_db_batch_add(b, &st_rotate, v);

    if (rc == 0)
        rc =
            eg_db_batch_add(b, &st_audit_key,
                            (const char *[]){id_or_prefix, actor_key_id, request_id, "key.rotate"});
    if (rc == 0)
        rc = eg_db_batch_add(b, &st_audit_key,
                             (const char *[]){new_id, actor_key_id, request_id, "key.create"});
    return rc;
}

int eg_auth_batch_lookup(struct eg_db_batch *b, const char *hash_hex)
{
    return eg_db_batch_add(b, &st_lookup, (const char *[]){hash_hex});
}

int eg_auth_batch_sweep(struct eg_db_batch *b, const char *since)
{
    int rc = eg_db_batch_add(b, &st_sweep, (const char *[]){since});

    if (rc == 0)
        rc = eg_db_batch_add(b, &st_now, NULL);
    return rc;
}

int eg_auth_json_with_key(struct eg_buf *out, const char *row, const char *key)
{
    int rc;

    /* The database wrote row as a JSON object; the key is base62 text and needs no escaping. */
    if (row[0] != '{')
        return EG_EPARSE;
    rc = eg_buf_puts(out, "{\"key\":\"");
    if (rc == 0)
        rc = eg_buf_puts(out, key);
    if (rc == 0)
        rc = eg_buf_puts(out, row[1] == '}' ? "\"" : "\",");
    if (rc == 0)
        rc = eg_buf_puts(out, row + 1);
    return rc;
}
