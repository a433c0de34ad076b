-- 0004_auth: API keys and the audit log (ARCHITECTURE.md §8). Only adds objects.

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
CREATE INDEX IF NOT EXISTS idx_audit_log_project ON audit_log (project_id, at);
CREATE INDEX IF NOT EXISTS idx_audit_log_object ON audit_log (project_id, object_type, object_id);
