-- engram baseline schema: the result of applying every file in schema/migrations/ in order,
-- as one file for a fresh, empty database. tests/integration/fixtures/check_schema.sh proves
-- that loading this file and applying the migrations give the same pg_dump --schema-only and
-- the same schema_migrations rows. Whenever a migration is added, update this file to match.
--
-- Fresh databases only: the data tables are created without IF NOT EXISTS, so loading this into
-- a database that already has them fails (use `engramd migrate` there) instead of recording
-- migrations as applied when they were not. Runs inside one transaction, as one string.
--
-- Optional extensions, as in the migrations: pgvector (embedding columns + ivfflat index) and
-- pg_trgm (trigram index for ILIKE search) are used when installed, installed when available
-- and permitted, and skipped otherwise.

-- Migration bookkeeping (same DDL the migration runner issues before anything else).
CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')
       AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS vector;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'engram: no privilege to create extension vector; embeddings disabled';
        END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm')
       AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_trgm;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'engram: no privilege to create extension pg_trgm; no trigram index';
        END;
    END IF;
END $$;

-- =============================================================================================
-- CORE's tables (0001_core; spec/core-contract.md §3)
-- =============================================================================================

-- Body kept identical to CORE's so pg_dump of engram and CORE databases match.
CREATE FUNCTION core_set_updated_at()
RETURNS trigger AS $$
BEGIN
  NEW.updated_at = NOW();
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- memories and claims carry `embedding` (at CORE's position) only when pgvector is installed.
DO $$
DECLARE
    vec_schema text;
    emb        text := '';
BEGIN
    SELECT n.nspname INTO vec_schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'vector';
    IF vec_schema IS NOT NULL THEN
        emb := format('embedding %I.vector(1536),', vec_schema);
    END IF;

    EXECUTE format($ddl$
        CREATE TABLE memories (
            id                  TEXT PRIMARY KEY,
            project_id          TEXT NOT NULL,
            subject_id          TEXT NOT NULL,
            text                TEXT NOT NULL,
            kind                TEXT NOT NULL DEFAULT 'fact'
                                CONSTRAINT memories_kind_check CHECK (kind IN
                                    ('fact', 'preference', 'context', 'note', 'event', 'trait')),
            visibility          TEXT NOT NULL DEFAULT 'private'
                                CONSTRAINT memories_visibility_check CHECK (visibility IN
                                    ('private', 'shared', 'public')),
            importance          INTEGER NOT NULL DEFAULT 50
                                CONSTRAINT memories_importance_check
                                CHECK (importance BETWEEN 0 AND 100),
            confidence          DOUBLE PRECISION NOT NULL DEFAULT 0.8
                                CONSTRAINT memories_confidence_check
                                CHECK (confidence >= 0 AND confidence <= 1),
            is_temporal         BOOLEAN NOT NULL DEFAULT FALSE,
            tags                TEXT[] NOT NULL DEFAULT '{}',
            metadata            JSONB NOT NULL DEFAULT '{}'::jsonb,
            %1$s
            status              TEXT NOT NULL DEFAULT 'active'
                                CONSTRAINT memories_status_check CHECK (status IN
                                    ('active', 'superseded')),
            superseded_by       TEXT,
            is_deleted          BOOLEAN NOT NULL DEFAULT FALSE,
            source_type         TEXT NOT NULL DEFAULT 'explicit',
            created_at          TIMESTAMPTZ NOT NULL DEFAULT NOW(),
            updated_at          TIMESTAMPTZ NOT NULL DEFAULT NOW(),
            last_seen_at        TIMESTAMPTZ,
            seen_count          INTEGER NOT NULL DEFAULT 0,
            reinforcement_count INTEGER NOT NULL DEFAULT 0,
            last_reinforced_at  TIMESTAMPTZ
        );

        CREATE TABLE claims (
            claim_id              TEXT PRIMARY KEY,
            project_id            TEXT NOT NULL,
            subject_id            TEXT NOT NULL,
            predicate             TEXT NOT NULL,
            object_value          TEXT NOT NULL,
            slot                  TEXT NOT NULL,
            claim_type            TEXT NOT NULL DEFAULT 'fact',
            confidence            DOUBLE PRECISION NOT NULL DEFAULT 0.8
                                  CONSTRAINT claims_confidence_check
                                  CHECK (confidence >= 0 AND confidence <= 1),
            importance            DOUBLE PRECISION NOT NULL DEFAULT 0.5
                                  CONSTRAINT claims_importance_check
                                  CHECK (importance >= 0 AND importance <= 1),
            tags                  TEXT[] NOT NULL DEFAULT '{}',
            source_memory_id      TEXT,
            source_observation_id TEXT,
            subject_entity        TEXT NOT NULL DEFAULT 'self',
            status                TEXT NOT NULL DEFAULT 'active'
                                  CONSTRAINT claims_status_check CHECK (status IN
                                      ('active', 'retracted')),
            asserted_at           TIMESTAMPTZ NOT NULL DEFAULT NOW(),
            updated_at            TIMESTAMPTZ NOT NULL DEFAULT NOW(),
            retracted_at          TIMESTAMPTZ,
            retract_reason        TEXT,
            %1$s
            valid_from            TIMESTAMPTZ,
            valid_until           TIMESTAMPTZ,
            CONSTRAINT fk_claim_source_memory
                FOREIGN KEY (source_memory_id) REFERENCES memories(id) ON DELETE SET NULL
        )$ddl$, emb);

    IF vec_schema IS NOT NULL THEN
        EXECUTE format('CREATE INDEX idx_memories_embedding_ivfflat
                            ON memories USING ivfflat (embedding %I.vector_cosine_ops)
                            WITH (lists = 100)', vec_schema);
    END IF;
END $$;

CREATE TABLE claim_assertions (
    assertion_id  TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    claim_id      TEXT NOT NULL
                  CONSTRAINT claim_assertions_claim_id_fkey
                  REFERENCES claims(claim_id) ON DELETE CASCADE,
    memory_id     TEXT
                  CONSTRAINT claim_assertions_memory_id_fkey
                  REFERENCES memories(id) ON DELETE SET NULL,
    predicate     TEXT NOT NULL,
    object_type   TEXT NOT NULL DEFAULT 'string'
                  CONSTRAINT claim_assertions_object_type_check CHECK (object_type IN
                      ('string', 'number', 'date', 'json')),
    value_string  TEXT,
    value_number  DOUBLE PRECISION,
    value_date    TIMESTAMPTZ,
    value_json    JSONB,
    confidence    DOUBLE PRECISION NOT NULL DEFAULT 0.8
                  CONSTRAINT claim_assertions_confidence_check
                  CHECK (confidence >= 0 AND confidence <= 1),
    status        TEXT NOT NULL DEFAULT 'active',
    first_seen_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE claim_edges (
    edge_id       BIGSERIAL PRIMARY KEY,
    project_id    TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    from_claim_id TEXT NOT NULL
                  CONSTRAINT claim_edges_from_claim_id_fkey
                  REFERENCES claims(claim_id) ON DELETE CASCADE,
    to_claim_id   TEXT NOT NULL
                  CONSTRAINT claim_edges_to_claim_id_fkey
                  REFERENCES claims(claim_id) ON DELETE CASCADE,
    edge_type     TEXT NOT NULL
                  CONSTRAINT claim_edges_type_check CHECK (edge_type IN
                      ('supersedes', 'supports', 'duplicates', 'related', 'retracts')),
    weight        DOUBLE PRECISION NOT NULL DEFAULT 0,
    reason_code   TEXT,
    reason_text   TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT claim_edges_project_id_from_claim_id_to_claim_id_edge_type_key
        UNIQUE (project_id, from_claim_id, to_claim_id, edge_type)
);

CREATE TABLE slot_state (
    project_id           TEXT NOT NULL,
    subject_id           TEXT NOT NULL,
    slot                 TEXT NOT NULL,
    active_claim_id      TEXT
                         CONSTRAINT slot_state_active_claim_id_fkey
                         REFERENCES claims(claim_id) ON DELETE SET NULL,
    status               TEXT NOT NULL DEFAULT 'active'
                         CONSTRAINT slot_state_status_check CHECK (status IN
                             ('active', 'superseded', 'retracted')),
    replaced_by_claim_id TEXT,
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (project_id, subject_id, slot)
);

CREATE TABLE memory_recall_events (
    event_id         TEXT PRIMARY KEY,
    project_id       TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    memory_id        TEXT NOT NULL
                     CONSTRAINT memory_recall_events_memory_id_fkey
                     REFERENCES memories(id) ON DELETE CASCADE,
    memory_text      TEXT NOT NULL DEFAULT '',
    chat_id          TEXT NOT NULL DEFAULT '',
    message_index    INTEGER NOT NULL DEFAULT 0,
    chat_logged      BOOLEAN NOT NULL DEFAULT TRUE,
    similarity_score DOUBLE PRECISION NOT NULL DEFAULT 0,
    request_type     TEXT NOT NULL DEFAULT 'chat',
    model            TEXT NOT NULL DEFAULT '',
    metadata         JSONB NOT NULL DEFAULT '{}'::jsonb,
    recalled_at      TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_memories_project_subject
    ON memories (project_id, subject_id);
CREATE INDEX idx_memories_project_subject_active
    ON memories (project_id, subject_id, status, is_deleted, created_at DESC);
CREATE INDEX idx_memories_superseded
    ON memories (project_id, subject_id, status, created_at DESC);
-- CORE's name; it is a full-text index, not a trigram one (see idx_memories_text_ilike).
CREATE INDEX idx_memories_text_trgm
    ON memories USING gin (to_tsvector('english', text))
    WITH (gin_pending_list_limit = 256);  -- 0006: bounded pending-list merges

CREATE INDEX idx_claims_project_subject
    ON claims (project_id, subject_id);
CREATE INDEX idx_claims_project_subject_slot
    ON claims (project_id, subject_id, slot, asserted_at DESC);
CREATE INDEX idx_claims_project_subject_predicate
    ON claims (project_id, subject_id, predicate, asserted_at DESC);
CREATE INDEX idx_claims_status
    ON claims (project_id, subject_id, status);

CREATE INDEX idx_claim_assertions_memory
    ON claim_assertions (project_id, memory_id, last_seen_at DESC);
CREATE INDEX idx_claim_assertions_claim
    ON claim_assertions (project_id, claim_id);

CREATE INDEX idx_claim_edges_from
    ON claim_edges (project_id, from_claim_id, created_at DESC);
CREATE INDEX idx_claim_edges_to
    ON claim_edges (project_id, to_claim_id, created_at DESC);

CREATE INDEX idx_slot_state_subject
    ON slot_state (project_id, subject_id, status, updated_at DESC);

CREATE INDEX idx_memory_recall_by_chat
    ON memory_recall_events (project_id, chat_id, recalled_at ASC);
CREATE INDEX idx_memory_recall_by_memory
    ON memory_recall_events (project_id, memory_id, recalled_at DESC);
CREATE INDEX idx_memory_recall_by_subject
    ON memory_recall_events (project_id, subject_id, recalled_at DESC);

CREATE TRIGGER trg_memories_updated_at BEFORE UPDATE ON memories
    FOR EACH ROW EXECUTE FUNCTION core_set_updated_at();
CREATE TRIGGER trg_claims_updated_at BEFORE UPDATE ON claims
    FOR EACH ROW EXECUTE FUNCTION core_set_updated_at();

-- =============================================================================================
-- engram's event core (0002_engram_events; ARCHITECTURE.md §5). Roles are explained in the
-- migration; no foreign keys to projects so writers never lock a shared row.
-- =============================================================================================

-- Per-project sequencer state: last seq handed out, log incarnation (epoch, ms at creation).
CREATE TABLE projects (
    project_id TEXT PRIMARY KEY,
    last_seq   BIGINT NOT NULL DEFAULT 0,
    epoch      BIGINT NOT NULL
               DEFAULT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- Transactional outbox written by each write transaction, drained in id order by the sequencer.
CREATE TABLE event_outbox (
    id         BIGSERIAL PRIMARY KEY,
    project_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload    TEXT NOT NULL,  -- exact JSON text
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

-- The ordered, gapless per-project event log; resume is a primary-key range scan.
CREATE TABLE events (
    project_id   TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    subject_id   TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    sequenced_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (project_id, seq)
);

-- Retention pruning by time on an append-only table.
CREATE INDEX idx_events_sequenced_at
    ON events USING brin (sequenced_at);

-- Trigram index for lexical ILIKE search, only with pg_trgm.
DO $$
DECLARE
    trgm_schema text;
BEGIN
    SELECT n.nspname INTO trgm_schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_trgm';
    IF trgm_schema IS NOT NULL THEN
        EXECUTE format('CREATE INDEX idx_memories_text_ilike
                            ON memories USING gin (text %I.gin_trgm_ops)
                            WITH (gin_pending_list_limit = 256)', trgm_schema);
    END IF;
END $$;

-- ---- 0003_api_helpers ----------------------------------------------------------------------
--
-- Event payloads are written into event_outbox inside the same transaction as the data, from the
-- inserted row itself (so created_at is the row's own NOW()). They must be byte-identical to what
-- CORE's JavaScript emits: compact JSON, JS string escaping (PostgreSQL's to_json escapes exactly
-- the characters JSON.stringify escapes, with lowercase \u00xx), integers as digits, and
-- timestamps as ISO-8601 UTC with milliseconds (truncated) and Z.

-- Date.prototype.toISOString() of a timestamptz: 2026-11-22T18:59:03.402Z.
CREATE OR REPLACE FUNCTION eg_ts(t timestamptz) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    AS $$ SELECT to_char(date_trunc('milliseconds', t) AT TIME ZONE 'UTC',
                         'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;

-- The text a duplicate check compares (DECISIONS.md item 4): trimmed, whitespace runs collapsed,
-- case-folded.
CREATE OR REPLACE FUNCTION eg_norm_text(t text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT lower(regexp_replace(btrim(t, E' \t\n\r\f\v'), E'\\s+', ' ', 'g')) $$;

-- memory.created: {id, subject_id, text, kind, visibility, importance, tags, created_at}.
CREATE OR REPLACE FUNCTION eg_payload_memory_created(m memories) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT '{"id":' || to_json(m.id)::text
              || ',"subject_id":' || to_json(m.subject_id)::text
              || ',"text":' || to_json(m.text)::text
              || ',"kind":' || to_json(m.kind)::text
              || ',"visibility":' || to_json(m.visibility)::text
              || ',"importance":' || m.importance::text
              || ',"tags":' || array_to_json(m.tags)::text
              || ',"created_at":"' || eg_ts(m.created_at) || '"}' $$;

-- Finds an active memory of the same subject whose normalised text equals a new one's without
-- scanning the subject: the md5 keeps index entries small whatever the text length.
CREATE INDEX idx_memories_norm_text
    ON memories (project_id, subject_id, md5(eg_norm_text(text)))
    WHERE is_deleted = false AND status = 'active';

-- ---- 0004_auth -------------------------------------------------------------------------------

-- One row per API key. The key itself is never stored: key_hash is the hex SHA-256 of the whole
-- key text, looked up through its unique index; prefix is the public part of the key, unique so
-- `engramd keys revoke <prefix>` names one key. A key is valid while revoked_at is NULL and
-- expires_at is NULL or in the future. replaced_by links a rotated key to its successor.
CREATE TABLE IF NOT EXISTS api_keys (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    prefix      TEXT NOT NULL UNIQUE,
    key_hash    TEXT NOT NULL UNIQUE,
    scopes      TEXT[] NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at  TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ,
    created_by  TEXT,
    replaced_by TEXT
);
CREATE INDEX IF NOT EXISTS idx_api_keys_project ON api_keys (project_id, created_at);
-- The revocation sweep every instance runs (keys revoked or expired since its last look).
CREATE INDEX IF NOT EXISTS idx_api_keys_revoked ON api_keys (revoked_at)
    WHERE revoked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_api_keys_expires ON api_keys (expires_at)
    WHERE expires_at IS NOT NULL;

-- Who (key_id; NULL for the CLI) did which write (action) to which object, under which request
-- id. Rows are written in the same transaction as the write they describe, and only for objects
-- that transaction changed. Never holds secrets or request bodies.
CREATE TABLE IF NOT EXISTS audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    project_id  TEXT NOT NULL,
    key_id      TEXT,
    request_id  TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id   TEXT NOT NULL
);

-- ---- 0005_idempotency ------------------------------------------------------------------------

-- One row per (project, principal, key) whose request ran: written in the same transaction as
-- the request's effect, so a stored response exists exactly when the effect committed. principal
-- is the API key's id ('' with auth off); fingerprint is the hex SHA-256 of method, target and
-- body. Rows older than the retention are ignored, replaced on reuse, and pruned.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    project_id  TEXT NOT NULL,
    principal   TEXT NOT NULL,
    idem_key    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      INTEGER NOT NULL,
    body        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (project_id, principal, idem_key)
);

-- Claims a key for the calling transaction: a transaction-scoped advisory lock on the scope
-- (another holder, on any instance, means a concurrent duplicate: SQLSTATE EGI01), then a check
-- that no response was stored since the caller looked (EGI02: replay it). The lock ends with the
-- transaction, including when the session dies, so a crashed instance never leaves a key stuck.
CREATE OR REPLACE FUNCTION eg_idem_begin(p text, who text, k text, ttl_s integer) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended(p || chr(31) || who || chr(31) || k, 5)) THEN
        RAISE EXCEPTION 'idempotency key in use' USING ERRCODE = 'EGI01';
    END IF;
    IF EXISTS (SELECT 1 FROM idempotency_keys WHERE project_id = p AND principal = who
               AND idem_key = k AND created_at > now() - make_interval(secs => ttl_s)) THEN
        RAISE EXCEPTION 'idempotency key already used' USING ERRCODE = 'EGI02';
    END IF;
END
$$;

-- ---- 0006_search_rank_index -----------------------------------------------------------------

-- The subject's active memories in search's answer order: search reads the best 500 first.
CREATE INDEX idx_memories_subject_rank
    ON memories (project_id, subject_id, importance DESC, created_at DESC)
    WHERE is_deleted = false AND status = 'active';

-- ---- 0007_idempotency_refuse ----------------------------------------------------------------

-- Refuses an idempotent write from inside its pipeline: EGI01 (key held) or EGI02 (stored).
CREATE OR REPLACE FUNCTION eg_idem_refuse(code text) RETURNS integer
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = code,
        MESSAGE = CASE code WHEN 'EGI01' THEN 'idempotency key in use'
                  ELSE 'idempotency key already used' END;
END
$$;

-- ---- 0008_lean_layer_rows --------------------------------------------------------------------

-- Write-optimised indexes on the layers' per-write rows: time ranges through BRIN.
CREATE INDEX IF NOT EXISTS idx_audit_log_at ON audit_log USING brin (at);
CREATE INDEX IF NOT EXISTS idx_idempotency_keys_created_brin
    ON idempotency_keys USING brin (created_at);

-- ---- 0009_audit_through_outbox -------------------------------------------------------------

-- Every audited write also appends outbox rows, in the same transaction. Its audit record now
-- rides on the row of the object it changed instead of costing the write a statement of its own
-- (a lookup by primary key and an insert, measured at about 52 us of a write's 450 us of
-- statements under load). The columns are set together, or all NULL for an unaudited write (auth
-- off) and for an event that describes no object of its own (slot.updated).
ALTER TABLE event_outbox
    ADD COLUMN IF NOT EXISTS audit_action      TEXT,
    ADD COLUMN IF NOT EXISTS audit_key_id      TEXT,
    ADD COLUMN IF NOT EXISTS audit_request_id  TEXT,
    ADD COLUMN IF NOT EXISTS audit_object_type TEXT,
    ADD COLUMN IF NOT EXISTS audit_object_id   TEXT;

-- When outbox rows leave the outbox (the sequencer moving them into the event log), their audit
-- records land in audit_log in that same transaction, one INSERT per batch: an audit row is
-- committed with its write (in the outbox) and is in audit_log once the write is sequenced.
-- A statement trigger rather than the sequencer's own statement, so that every version's
-- sequencer carries the records during a rolling upgrade; `at` is the write transaction's time.
CREATE OR REPLACE FUNCTION eg_audit_from_outbox() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO audit_log (at, project_id, key_id, request_id, action, object_type, object_id)
    SELECT created_at, project_id, audit_key_id, audit_request_id, audit_action,
           audit_object_type, audit_object_id
      FROM moved WHERE audit_action IS NOT NULL ORDER BY id;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS event_outbox_audit ON event_outbox;
CREATE TRIGGER event_outbox_audit AFTER DELETE ON event_outbox
    REFERENCING OLD TABLE AS moved FOR EACH STATEMENT EXECUTE FUNCTION eg_audit_from_outbox();

-- ---- 0010_idempotency_answers -------------------------------------------------------------

-- Every keyed write stores its response, and that insert was the production layers' largest cost
-- per write (70 us of statement time and 694 B of WAL under load). Most of it was the primary
-- key over three texts (project, principal, key: about 90 bytes an entry, at a random place in
-- the index) and the 64-character hex fingerprint. Here the key is the first 16 bytes of
-- SHA-256(project || 0x1f || principal || 0x1f || key) as a uuid, and the fingerprint is the
-- 32-byte digest itself. The texts stay in the row: a lookup checks them, so two scopes whose
-- digests collide can never see each other's response (the second is refused as in use).
CREATE TABLE IF NOT EXISTS idempotency_answers (
    scope       UUID PRIMARY KEY,
    project_id  TEXT NOT NULL,
    principal   TEXT NOT NULL,
    idem_key    TEXT NOT NULL,
    fingerprint BYTEA NOT NULL,
    status      INTEGER NOT NULL,
    body        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_idempotency_answers_created_brin
    ON idempotency_answers USING brin (created_at);

-- The scope's key, as engramd computes it (src/api/idempotency.c).
CREATE OR REPLACE FUNCTION eg_idem_scope(p text, who text, k text) RETURNS uuid
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT encode(substr(sha256(convert_to(p || chr(31) || who || chr(31) || k, 'UTF8')),
                               1, 16), 'hex')::uuid $$;

-- Instances of an older version keep writing idempotency_keys until they are replaced (a rolling
-- upgrade). Each of their stores is mirrored here, under the same rule as engramd's own: over a
-- response older than the default retention (24 h) at most; a response stored here within it
-- makes their write fail with EGI02, which they answer 409 (retry) rather than run the write a
-- second time. So no instance, of either version, repeats a write another one answered.
CREATE OR REPLACE FUNCTION eg_idem_mirror() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO idempotency_answers AS a (scope, project_id, principal, idem_key, fingerprint,
                                          status, body, created_at)
    VALUES (eg_idem_scope(NEW.project_id, NEW.principal, NEW.idem_key), NEW.project_id,
            NEW.principal, NEW.idem_key, decode(NEW.fingerprint, 'hex'), NEW.status, NEW.body,
            NEW.created_at)
    ON CONFLICT (scope) DO UPDATE
        SET project_id = EXCLUDED.project_id, principal = EXCLUDED.principal,
            idem_key = EXCLUDED.idem_key, fingerprint = EXCLUDED.fingerprint,
            status = EXCLUDED.status, body = EXCLUDED.body, created_at = EXCLUDED.created_at
        WHERE a.created_at <= now() - interval '24 hours';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'idempotency key already used' USING ERRCODE = 'EGI02';
    END IF;
    RETURN NEW;
END
$$;

-- (The migration also copies the rows of idempotency_keys here first, under a table lock; a new
-- database has none.)
DROP TRIGGER IF EXISTS idempotency_keys_mirror ON idempotency_keys;
CREATE TRIGGER idempotency_keys_mirror BEFORE INSERT OR UPDATE ON idempotency_keys
    FOR EACH ROW EXECUTE FUNCTION eg_idem_mirror();

-- =============================================================================================
-- Every migration above counts as applied.
-- =============================================================================================
INSERT INTO schema_migrations (version, name) VALUES
    (1, '0001_core'),
    (2, '0002_engram_events'),
    (3, '0003_api_helpers'),
    (4, '0004_auth'),
    (5, '0005_idempotency'),
    (6, '0006_search_rank_index'),
    (7, '0007_idempotency_refuse'),
    (8, '0008_lean_layer_rows'),
    (9, '0009_audit_through_outbox'),
    (10, '0010_idempotency_answers')
ON CONFLICT (version) DO NOTHING;
