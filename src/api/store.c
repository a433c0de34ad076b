/* Statements shared by several handlers: createClaim (core-contract.md §9.1). */
#include "api_int.h"

#include <string.h>

/*
 * The claim is written only when its source memory (if any) exists in the same project
 * (DECISIONS.md item 2) and, for POST /memories, was inserted by this very transaction: a
 * create answered as a duplicate inserts no memory, so its extracted claims must vanish too.
 * xmin equal to the current transaction id means "written by us". The statements that read back
 * a claim written by this transaction find it by claim_id alone (see memories_write.c: a
 * project_id condition lets the planner scan a project index on a fresh database).
 */
static struct eg_db_stmt st_claim_insert = {
    "claim_insert",
    "INSERT INTO claims (claim_id, project_id, subject_id, predicate, object_value, slot, "
    "claim_type, confidence, importance, tags, source_memory_id, source_observation_id, "
    "subject_entity, status, valid_from, valid_until) "
    "SELECT $1, $2, $3, $4, $5, $6, $7, $8::float8, $9::float8, "
    "ARRAY(SELECT json_array_elements_text($10::json)), $11, $12, $13, 'active', "
    "$14::timestamptz, $15::timestamptz "
    "WHERE $11::text IS NULL OR EXISTS (SELECT 1 FROM memories m WHERE m.id = $11 "
    "AND m.project_id = $2 AND (NOT $16::bool OR m.xmin = pg_current_xact_id()::xid)) "
    "RETURNING claim_id, subject_id, predicate, object_value, slot, claim_type, confidence, "
    "source_observation_id AS observation_id",
    16,
    0,
};

static struct eg_db_stmt st_assertion_insert = {
    "claim_assertion_insert",
    "INSERT INTO claim_assertions (assertion_id, project_id, subject_id, claim_id, memory_id, "
    "predicate, object_type, value_string, confidence, status) "
    "SELECT $1, c.project_id, c.subject_id, c.claim_id, c.source_memory_id, c.predicate, "
    "'string', c.object_value, c.confidence, 'active' FROM claims c "
    "WHERE c.claim_id = $2 AND c.xmin = pg_current_xact_id()::xid",
    2,
    0,
};

/* Last writer wins (CORE): the newest claim becomes the slot's active claim. */
static struct eg_db_stmt st_slot_upsert = {
    "claim_slot_upsert",
    "INSERT INTO slot_state (project_id, subject_id, slot, active_claim_id, status, "
    "replaced_by_claim_id, updated_at) "
    "SELECT c.project_id, c.subject_id, c.slot, c.claim_id, 'active', NULL, now() FROM claims c "
    "WHERE c.claim_id = $1 AND c.xmin = pg_current_xact_id()::xid "
    "ON CONFLICT (project_id, subject_id, slot) DO UPDATE SET "
    "active_claim_id = EXCLUDED.active_claim_id, status = 'active', "
    "replaced_by_claim_id = NULL, updated_at = now()",
    1,
    0,
};

/* The audit record ($3-$5) rides on claim.created, the first of the two rows. */
#define CLAIM_CREATED_AUDIT                                                                        \
    EG__API_OUTBOX_AUDIT_VALS("CASE ev.n WHEN 1 THEN $3::text END",                                \
                              "CASE ev.n WHEN 1 THEN $4::text END",                                \
                              "CASE ev.n WHEN 1 THEN $5::text END", "claim", "c.claim_id")

/*
 * The claim.created and slot.updated events of a claim written by this transaction (xmin), so a
 * claim refused for its source memory emits nothing. One INSERT keeps the two in order.
 * $2 is the confidence already in JS number form; $3-$5 the audit record, on claim.created only.
 */
static struct eg_db_stmt st_claim_events = {
    "claim_create_events",
    "INSERT INTO event_outbox (project_id, subject_id, event_type, "
    "payload" EG__API_OUTBOX_AUDIT_COLS
    ") SELECT c.project_id, c.subject_id, ev.t, CASE ev.n WHEN 1 THEN "
    "'{\"claim_id\":' || to_json(c.claim_id)::text || ',\"subject_id\":' || "
    "to_json(c.subject_id)::text || ',\"predicate\":' || to_json(c.predicate)::text || "
    "',\"object_value\":' || to_json(c.object_value)::text || ',\"slot\":' || "
    "to_json(c.slot)::text || ',\"claim_type\":' || to_json(c.claim_type)::text || "
    "',\"confidence\":' || $2::text || ',\"source_memory_id\":' || "
    "COALESCE(to_json(c.source_memory_id)::text, 'null') || ',\"asserted_at\":\"' || "
    "eg_ts(c.asserted_at) || '\"}' ELSE "
    "'{\"subject_id\":' || to_json(c.subject_id)::text || ',\"slot\":' || "
    "to_json(c.slot)::text || ',\"active_claim_id\":' || to_json(c.claim_id)::text || "
    "',\"status\":\"active\"}' END" CLAIM_CREATED_AUDIT
    " FROM claims c CROSS JOIN (VALUES (1, 'claim.created'), (2, 'slot.updated')) AS ev(n, t) "
    "WHERE c.claim_id = $1 AND c.xmin = pg_current_xact_id()::xid "
    "ORDER BY ev.n",
    5,
    0,
};

int eg__api_batch_add_claim_events(struct eg_db_batch *b, const char *claim_id,
                                   const char *confidence, const struct eg__api_audit *audit)
{
    const char *values[5] = {claim_id, confidence, NULL, NULL, NULL};

    if (audit != NULL) {
        values[2] = audit->action;
        values[3] = audit->key_id;
        values[4] = audit->request_id;
    }
    return eg_db_batch_add(b, &st_claim_events, values);
}

int eg__api_batch_add_claim(struct eg_db_batch *b, struct eg_arena *a, const char *project,
                            const struct eg__api_claim_in *c, bool memory_in_tx)
{
    char *assertion_id = eg__api_new_id(a, "ast_");
    const char *claim[16] = {
        c->claim_id,       project,       c->subject_id,       c->predicate,
        c->object_value,   c->slot,       c->claim_type,       c->confidence,
        c->importance,     c->tags_json,  c->source_memory_id, c->source_observation_id,
        c->subject_entity, c->valid_from, c->valid_until,      memory_in_tx ? "t" : "f"};
    const char *assertion[2] = {assertion_id, c->claim_id};
    const char *slot[1] = {c->claim_id};
    int rc;

    if (assertion_id == NULL)
        return EG_ELIMIT;
    rc = eg_db_batch_add(b, &st_claim_insert, claim);
    if (rc == 0)
        rc = eg_db_batch_add(b, &st_assertion_insert, assertion);
    if (rc == 0)
        rc = eg_db_batch_add(b, &st_slot_upsert, slot);
    return rc;
}

const char *eg__api_param(struct eg_http_req *r, size_t i, size_t *len)
{
    if (i >= r->param_count)
        return NULL;
    return eg_http_decode_component(&r->arena, r->params[i], strlen(r->params[i]), len);
}
