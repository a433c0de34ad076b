-- 0005_idempotency: stored responses for Idempotency-Key (docs/API.md). Only adds objects.

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
CREATE INDEX IF NOT EXISTS idx_idempotency_keys_created ON idempotency_keys (created_at);

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
