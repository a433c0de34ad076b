-- 0002_engram_events: engram's event core (ARCHITECTURE.md §5) and lexical-search support.
-- Only adds objects; CORE's tables are not altered. Runs inside one transaction.
--
-- No foreign keys to projects on purpose: writers must not touch a shared row (an FK check
-- would take a KEY SHARE lock on the project row in every write), and the sequencer creates
-- the projects row itself when it first sees a project.

-- One row per project that has ever emitted an event. Owned by the sequencer (the single
-- leader): last_seq is the last number handed out in that project's gapless seq; epoch
-- identifies this incarnation of the log so a client's resume point from another incarnation
-- (a restore, a rebuilt database) is recognised as foreign. The default is the creation time
-- in milliseconds, so a recreated project never reuses an old epoch and epochs stay below 2^53
-- (exact as JSON numbers); a restore drill bumps it to greatest(epoch + 1, now in ms).
CREATE TABLE IF NOT EXISTS projects (
    project_id TEXT PRIMARY KEY,
    last_seq   BIGINT NOT NULL DEFAULT 0,
    epoch      BIGINT NOT NULL
               DEFAULT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- Transactional outbox. Each write transaction inserts one row per event as its last
-- statements (after its row locks), with the exact JSON CORE would send. The sequencer deletes
-- rows in id order, numbers them and moves them to events. A queue table: rows live briefly,
-- so vacuum it by dead-row count rather than by a fraction of a (near-empty) table.
CREATE TABLE IF NOT EXISTS event_outbox (
    id         BIGSERIAL PRIMARY KEY,
    project_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload    TEXT NOT NULL,  -- exact JSON text; text, not jsonb, to keep bytes and key order
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

-- The ordered, gapless per-project log. Resume ("every event of P after seq N") is a range scan
-- of the primary key. created_at is the outbox row's time (the writing transaction's NOW());
-- sequenced_at is when the sequencer numbered it, used for retention.
CREATE TABLE IF NOT EXISTS events (
    project_id   TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    subject_id   TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    sequenced_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (project_id, seq)
);

-- Retention prunes by sequenced_at. The table is append-only in time order, so a BRIN index
-- finds the old end for a few pages of index and almost no insert cost.
CREATE INDEX IF NOT EXISTS idx_events_sequenced_at
    ON events USING brin (sequenced_at);

-- ---------------------------------------------------------------------------------------------
-- pg_trgm for lexical search (ILIKE '%token%' over memories.text). Trusted since PostgreSQL 13,
-- so a database owner (CREATE privilege on the database) can install it; without the privilege
-- or the contrib package we skip it and ILIKE falls back to a scan.
-- ---------------------------------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm')
       AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_trgm;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'engram: no privilege to create extension pg_trgm; no trigram index';
        END;
    END IF;
END $$;

-- Named apart from CORE's idx_memories_text_trgm, which is really a tsvector index. Building it
-- on a large existing CORE table blocks writes to memories until it finishes (no CONCURRENTLY
-- inside a transaction).
DO $$
DECLARE
    trgm_schema text;
BEGIN
    SELECT n.nspname INTO trgm_schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_trgm';
    IF trgm_schema IS NOT NULL THEN
        EXECUTE format('CREATE INDEX IF NOT EXISTS idx_memories_text_ilike
                            ON memories USING gin (text %I.gin_trgm_ops)', trgm_schema);
    END IF;
END $$;
