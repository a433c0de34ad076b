-- 0003_api_helpers: SQL helpers the API's write transactions use.
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
CREATE INDEX IF NOT EXISTS idx_memories_norm_text
    ON memories (project_id, subject_id, md5(eg_norm_text(text)))
    WHERE is_deleted = false AND status = 'active';
