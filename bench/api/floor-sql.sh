# bench/api/floor-sql.sh: the statements of a memory create, keyed or not, with pgbench variables
# for engramd's parameters (sourced by floor.sh, whose header describes the variants, and by
# rowcost.sh). floor_db starts the database they run on (after bench/lib.sh and build_engramd).
# shellcheck shell=bash disable=SC2034 # the variables are the sourcing script's

# event_outbox_x: event_outbox with an answer's columns, unique on its scope (the outbox variant);
# answers_pk and answers_heap: idempotency_answers with its primary key only, and with no index.
# floor_db [-c name=value ...]: a PostgreSQL with engram's schema (engramd migrate) and these tables.
floor_db() {
  start_pg "$@"
  DATABASE_URL="postgresql://engram@127.0.0.1:$PG_PORT/engram" "$ENGRAMD" migrate >"$TMP/migrate.log" 2>&1 \
    || { cat "$TMP/migrate.log" >&2; die "engramd migrate failed"; }
  floor_tables
}
floor_tables() {
  q "CREATE TABLE event_outbox_x (LIKE event_outbox INCLUDING ALL, idem_scope uuid, idem_fingerprint bytea,
       idem_status int, idem_body text);
     CREATE UNIQUE INDEX ON event_outbox_x (idem_scope) WHERE idem_scope IS NOT NULL;
     CREATE TABLE answers_pk (LIKE idempotency_answers INCLUDING DEFAULTS);
     ALTER TABLE answers_pk ADD PRIMARY KEY (scope);
     CREATE TABLE answers_heap (LIKE idempotency_answers INCLUDING DEFAULTS)" >/dev/null
}

# ---- the statements, with pgbench variables for engramd's parameters --------------------------
# pgbench variables are integers, so ids and texts are built from :r in SQL. The JSON bodies
# keep a space after each colon: pgbench reads ":name" as a variable.
ID="'mem_' || md5(:r::text)::uuid::text"
TEXT="'note ' || :r::text || ' about apple river ' || :w::text"
SUBJ="'s-' || :r::text"
MEM="INSERT INTO memories (id, project_id, subject_id, text, kind, visibility, importance, confidence, is_temporal, tags, metadata, status, superseded_by, is_deleted, source_type, last_reinforced_at) SELECT $ID, 'bench', $SUBJ, $TEXT, 'fact', 'private', '50'::int, '0.95'::float8, 'f'::bool, ARRAY(SELECT json_array_elements_text('[]'::json)), '{}'::jsonb, 'active', NULL, false, 'explicit', now() WHERE NOT 't'::bool OR NOT EXISTS (SELECT 1 FROM memories d WHERE d.project_id = 'bench' AND d.subject_id = $SUBJ AND d.is_deleted = false AND d.status = 'active' AND md5(eg_norm_text(d.text)) = (SELECT md5(eg_norm_text($TEXT))) AND eg_norm_text(d.text) = eg_norm_text($TEXT)) RETURNING id;"
AUDIT_COLS="audit_action, audit_key_id, audit_request_id, audit_object_type, audit_object_id"
audit_vals() { echo "$1::text, $2::text, $3::text, CASE WHEN ($1::text) IS NOT NULL THEN 'memory' END, CASE WHEN ($1::text) IS NOT NULL THEN m.id END"; }
OUTBOX_SEL="SELECT m.project_id, m.subject_id, 'memory.created', eg_payload_memory_created(m)"
OUTBOX_FROM="FROM memories m WHERE m.id = $ID AND m.xmin = pg_current_xact_id()::xid"
OUTBOX_OFF="INSERT INTO event_outbox (project_id, subject_id, event_type, payload, $AUDIT_COLS) $OUTBOX_SEL, $(audit_vals NULL NULL NULL) $OUTBOX_FROM;"
ALL_AUDIT=$(audit_vals "'memory.create'" "'key_0123456789ab'" "'req-' || :r::text")
OUTBOX_ALL="INSERT INTO event_outbox (project_id, subject_id, event_type, payload, $AUDIT_COLS) $OUTBOX_SEL, $ALL_AUDIT $OUTBOX_FROM;"
KEY="'k-' || :r::text"
CLAIM_EXPR="CASE WHEN pg_try_advisory_xact_lock(hashtextextended('bench' || chr(31) || 'key_0123456789ab' || chr(31) || $KEY, 5)) THEN 0 ELSE eg_idem_refuse('EGI01') END"
CLAIM="SELECT $CLAIM_EXPR;"
SCOPE="md5('k' || :r::text)::uuid"
FPR="sha256(:r::text::bytea)"
answer() { echo "'{\"id\": $1, \"subject_id\": \"s-' || :r::text || '\", \"text\": \"note ' || :r::text || ' about apple river ' || :w::text || '\", \"kind\": \"fact\", \"created\": $2}'"; }
MADE=$(answer "\"mem_' || md5(:r::text)::uuid::text || '\"" true)
SKIPPED=$(answer null false)
STORE_COLS="(scope, project_id, principal, idem_key, fingerprint, status, body)"
STORE_CLAIMED="WITH s AS (INSERT INTO idempotency_answers $STORE_COLS SELECT $SCOPE, 'bench', 'key_0123456789ab', $KEY, $FPR, CASE WHEN w.hit THEN 201::int ELSE 200::int END, CASE WHEN w.hit THEN $MADE ELSE $SKIPPED END FROM (SELECT EXISTS (SELECT 1 FROM memories m WHERE m.id = $ID AND m.xmin = pg_current_xact_id()::xid) AS hit) w ON CONFLICT (scope) DO UPDATE SET project_id = EXCLUDED.project_id, principal = EXCLUDED.principal, idem_key = EXCLUDED.idem_key, fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status, body = EXCLUDED.body, created_at = now() WHERE idempotency_answers.created_at <= now() - make_interval(secs => 86400) RETURNING 1) SELECT CASE WHEN EXISTS (SELECT 1 FROM s) THEN 0 ELSE eg_idem_refuse('EGI02') END;"
STORE_APART="INSERT INTO idempotency_answers $STORE_COLS SELECT $SCOPE, 'bench', 'key_0123456789ab', $KEY, $FPR, CASE WHEN w.hit THEN 201::int ELSE 200::int END, CASE WHEN w.hit THEN $MADE ELSE $SKIPPED END FROM (SELECT EXISTS (SELECT 1 FROM memories m WHERE m.id = $ID AND m.xmin = pg_current_xact_id()::xid) AS hit, set_config('lock_timeout', '50ms', true) AS lock_timeout) w;"
ANSWERED="WITH o AS (${OUTBOX_ALL%;} RETURNING 1) INSERT INTO idempotency_answers $STORE_COLS SELECT $SCOPE, 'bench', 'key_0123456789ab', $KEY, $FPR, CASE WHEN w.hit THEN 201::int ELSE 200::int END, CASE WHEN w.hit THEN $MADE ELSE $SKIPPED END FROM (SELECT $CLAIM_EXPR AS claim, EXISTS (SELECT 1 FROM o) AS hit) w;"
STORE_ROW="INSERT INTO idempotency_answers $STORE_COLS VALUES ($SCOPE, 'bench', 'key_0123456789ab', $KEY, $FPR, 201, $MADE);"
OUTBOX_ANSWER="INSERT INTO event_outbox_x (project_id, subject_id, event_type, payload, $AUDIT_COLS, idem_scope, idem_fingerprint, idem_status, idem_body) $OUTBOX_SEL, $ALL_AUDIT, $SCOPE, $FPR, 201, $MADE $OUTBOX_FROM;"
