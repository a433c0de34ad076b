-- 0001_core: CORE's six tables, exactly as CORE (mnexium/core-mnx, sql/postgres/schema.sql) defines
-- them: names, column order, types, defaults, constraints (with the names PostgreSQL gives them in a
-- CORE database), indexes and the updated_at triggers. See spec/core-contract.md §3.
--
-- Two ways in, one result:
--   * empty database: everything is created here;
--   * database CORE already runs on: every statement finds its object and does nothing
--     (IF NOT EXISTS, or a DO block that checks the catalog first), so data is untouched.
--
-- pgvector is optional. CORE requires it; engram uses it when it is there. When the `vector`
-- extension is installed (or can be installed), memories.embedding and claims.embedding are created
-- at CORE's column position, plus the ivfflat index. Without it those parts are skipped and the
-- tables simply lack `embedding` (the API strips that column anyway).
--
-- Runs inside one transaction as one multi-statement string: no transaction control, no
-- CREATE INDEX CONCURRENTLY, no psql meta-commands.

-- ---------------------------------------------------------------------------------------------
-- pgvector: use it if installed; install it if the server has it and we are allowed to.
-- `vector` is not a trusted extension, so installing it needs a superuser; a plain owner gets
-- insufficient_privilege and we continue without it. (If a DBA installs vector afterwards, this
-- file has already run: adding the columns then takes a later migration; see the ALTER below.)
-- ---------------------------------------------------------------------------------------------
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
END $$;

-- BEFORE UPDATE trigger function shared by memories and claims. CORE's name, and CORE's body
-- byte for byte (pg_dump shows the body text), so engram and CORE databases dump identically.
CREATE OR REPLACE FUNCTION core_set_updated_at()
RETURNS trigger AS $$
BEGIN
  NEW.updated_at = NOW();
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- ---------------------------------------------------------------------------------------------
-- memories and claims. Built with EXECUTE so that `embedding` lands exactly where CORE puts it
-- (between metadata and status in memories, between retract_reason and valid_from in claims)
-- when vector exists, and is left out otherwise. The type is qualified with the extension's
-- schema so it resolves even if that schema is not on search_path.
-- ---------------------------------------------------------------------------------------------
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
        CREATE TABLE IF NOT EXISTS memories (
            id                  TEXT PRIMARY KEY,
            project_id          TEXT NOT NULL,
            subject_id          TEXT NOT NULL,
            text                TEXT NOT NULL,
            kind                TEXT NOT NULL DEFAULT 'fact',
            visibility          TEXT NOT NULL DEFAULT 'private',
            importance          INTEGER NOT NULL DEFAULT 50
                                CONSTRAINT memories_importance_check
                                CHECK (importance BETWEEN 0 AND 100),
            confidence          DOUBLE PRECISION NOT NULL DEFAULT 0.8
                                CONSTRAINT memories_confidence_check
                                CHECK (confidence >= 0 AND confidence <= 1),
            is_temporal         BOOLEAN NOT NULL DEFAULT FALSE,
            tags                TEXT[] NOT NULL DEFAULT '{}',
            metadata            JSONB NOT NULL DEFAULT '{}'::jsonb,
            %s
            status              TEXT NOT NULL DEFAULT 'active',
            superseded_by       TEXT,
            is_deleted          BOOLEAN NOT NULL DEFAULT FALSE,
            source_type         TEXT NOT NULL DEFAULT 'explicit',
            created_at          TIMESTAMPTZ NOT NULL DEFAULT NOW(),
            updated_at          TIMESTAMPTZ NOT NULL DEFAULT NOW(),
            last_seen_at        TIMESTAMPTZ,
            seen_count          INTEGER NOT NULL DEFAULT 0,
            reinforcement_count INTEGER NOT NULL DEFAULT 0,
            last_reinforced_at  TIMESTAMPTZ
        )$ddl$, emb);

    EXECUTE format($ddl$
        CREATE TABLE IF NOT EXISTS claims (
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
            status                TEXT NOT NULL DEFAULT 'active',
            asserted_at           TIMESTAMPTZ NOT NULL DEFAULT NOW(),
            updated_at            TIMESTAMPTZ NOT NULL DEFAULT NOW(),
            retracted_at          TIMESTAMPTZ,
            retract_reason        TEXT,
            %s
            valid_from            TIMESTAMPTZ,
            valid_until           TIMESTAMPTZ,
            CONSTRAINT fk_claim_source_memory
                FOREIGN KEY (source_memory_id) REFERENCES memories(id) ON DELETE SET NULL
        )$ddl$, emb);

    -- A database whose tables predate the vector extension (created without it, DBA installed
    -- vector later) gets the column appended at the end: ALTER TABLE cannot insert a column in
    -- the middle. Never happens for a fresh database or a CORE database.
    IF vec_schema IS NOT NULL THEN
        EXECUTE format('ALTER TABLE memories ADD COLUMN IF NOT EXISTS embedding %I.vector(1536)',
                       vec_schema);
        EXECUTE format('ALTER TABLE claims ADD COLUMN IF NOT EXISTS embedding %I.vector(1536)',
                       vec_schema);
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS claim_assertions (
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
    object_type   TEXT NOT NULL DEFAULT 'string',
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

CREATE TABLE IF NOT EXISTS claim_edges (
    edge_id       BIGSERIAL PRIMARY KEY,
    project_id    TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    from_claim_id TEXT NOT NULL
                  CONSTRAINT claim_edges_from_claim_id_fkey
                  REFERENCES claims(claim_id) ON DELETE CASCADE,
    to_claim_id   TEXT NOT NULL
                  CONSTRAINT claim_edges_to_claim_id_fkey
                  REFERENCES claims(claim_id) ON DELETE CASCADE,
    edge_type     TEXT NOT NULL,
    weight        DOUBLE PRECISION NOT NULL DEFAULT 0,
    reason_code   TEXT,
    reason_text   TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT claim_edges_project_id_from_claim_id_to_claim_id_edge_type_key
        UNIQUE (project_id, from_claim_id, to_claim_id, edge_type)
);

CREATE TABLE IF NOT EXISTS slot_state (
    project_id           TEXT NOT NULL,
    subject_id           TEXT NOT NULL,
    slot                 TEXT NOT NULL,
    active_claim_id      TEXT
                         CONSTRAINT slot_state_active_claim_id_fkey
                         REFERENCES claims(claim_id) ON DELETE SET NULL,
    status               TEXT NOT NULL DEFAULT 'active',
    replaced_by_claim_id TEXT,
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (project_id, subject_id, slot)
);

CREATE TABLE IF NOT EXISTS memory_recall_events (
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

-- ---------------------------------------------------------------------------------------------
-- Enumeration CHECKs. CORE adds these after CREATE TABLE, each only if absent (older CORE
-- databases may lack some), so we do the same. Looked up per table, not just by name.
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('memories', 'memories_kind_check',
             $c$CHECK (kind IN ('fact', 'preference', 'context', 'note', 'event', 'trait'))$c$),
            ('memories', 'memories_visibility_check',
             $c$CHECK (visibility IN ('private', 'shared', 'public'))$c$),
            ('memories', 'memories_status_check',
             $c$CHECK (status IN ('active', 'superseded'))$c$),
            ('claims', 'claims_status_check',
             $c$CHECK (status IN ('active', 'retracted'))$c$),
            ('claim_assertions', 'claim_assertions_object_type_check',
             $c$CHECK (object_type IN ('string', 'number', 'date', 'json'))$c$),
            ('claim_edges', 'claim_edges_type_check',
             $c$CHECK (edge_type IN ('supersedes', 'supports', 'duplicates', 'related', 'retracts'))$c$),
            ('slot_state', 'slot_state_status_check',
             $c$CHECK (status IN ('active', 'superseded', 'retracted'))$c$)
        ) AS t(tbl, name, def)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                        WHERE conrelid = c.tbl::regclass AND conname = c.name) THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s', c.tbl, c.name, c.def);
        END IF;
    END LOOP;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Indexes (CORE's names).
-- ---------------------------------------------------------------------------------------------
CREATE INDEX IF NOT EXISTS idx_memories_project_subject
    ON memories (project_id, subject_id);
CREATE INDEX IF NOT EXISTS idx_memories_project_subject_active
    ON memories (project_id, subject_id, status, is_deleted, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_memories_superseded
    ON memories (project_id, subject_id, status, created_at DESC);
-- Despite its name this is a full-text (tsvector) index, not a trigram one; no CORE query uses
-- it. Kept under CORE's name so a CORE database is recognised as already having it.
CREATE INDEX IF NOT EXISTS idx_memories_text_trgm
    ON memories USING gin (to_tsvector('english', text));

CREATE INDEX IF NOT EXISTS idx_claims_project_subject
    ON claims (project_id, subject_id);
CREATE INDEX IF NOT EXISTS idx_claims_project_subject_slot
    ON claims (project_id, subject_id, slot, asserted_at DESC);
CREATE INDEX IF NOT EXISTS idx_claims_project_subject_predicate
    ON claims (project_id, subject_id, predicate, asserted_at DESC);
CREATE INDEX IF NOT EXISTS idx_claims_status
    ON claims (project_id, subject_id, status);

CREATE INDEX IF NOT EXISTS idx_claim_assertions_memory
    ON claim_assertions (project_id, memory_id, last_seen_at DESC);
CREATE INDEX IF NOT EXISTS idx_claim_assertions_claim
    ON claim_assertions (project_id, claim_id);

CREATE INDEX IF NOT EXISTS idx_claim_edges_from
    ON claim_edges (project_id, from_claim_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_claim_edges_to
    ON claim_edges (project_id, to_claim_id, created_at DESC);

CREATE INDEX IF NOT EXISTS idx_slot_state_subject
    ON slot_state (project_id, subject_id, status, updated_at DESC);

CREATE INDEX IF NOT EXISTS idx_memory_recall_by_chat
    ON memory_recall_events (project_id, chat_id, recalled_at ASC);
CREATE INDEX IF NOT EXISTS idx_memory_recall_by_memory
    ON memory_recall_events (project_id, memory_id, recalled_at DESC);
CREATE INDEX IF NOT EXISTS idx_memory_recall_by_subject
    ON memory_recall_events (project_id, subject_id, recalled_at DESC);

-- ivfflat over embeddings, only with pgvector (on an empty table this logs a harmless
-- "little data" notice). CORE's API never orders by raw distance, so it is not used for search.
DO $$
DECLARE
    vec_schema text;
BEGIN
    SELECT n.nspname INTO vec_schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'vector';
    IF vec_schema IS NOT NULL THEN
        EXECUTE format('CREATE INDEX IF NOT EXISTS idx_memories_embedding_ivfflat
                            ON memories USING ivfflat (embedding %I.vector_cosine_ops)
                            WITH (lists = 100)', vec_schema);
    END IF;
END $$;

-- ---------------------------------------------------------------------------------------------
-- updated_at triggers, created only if absent (CORE drops and recreates them; the result is
-- the same, but checking avoids touching a live table's triggers).
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['memories', 'claims'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger
                        WHERE tgrelid = tbl::regclass
                          AND tgname = format('trg_%s_updated_at', tbl)
                          AND NOT tgisinternal) THEN
            EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %I
                            FOR EACH ROW EXECUTE FUNCTION core_set_updated_at()',
                           format('trg_%s_updated_at', tbl), tbl);
        END IF;
    END LOOP;
END $$;
