-- 0010_idempotency_answers: stored responses keyed by a 16-byte digest of their scope (issue #5).
-- Only engram's additions change. Runs inside one transaction.

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

-- No store of an older instance can fall between the copy and the trigger: the lock waits for
-- the ones in flight and holds back new ones until this transaction commits.
LOCK TABLE idempotency_keys IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO idempotency_answers (scope, project_id, principal, idem_key, fingerprint, status, body,
                                 created_at)
SELECT eg_idem_scope(project_id, principal, idem_key), project_id, principal, idem_key,
       decode(fingerprint, 'hex'), status, body, created_at
  FROM idempotency_keys
ON CONFLICT (scope) DO NOTHING;
DROP TRIGGER IF EXISTS idempotency_keys_mirror ON idempotency_keys;
CREATE TRIGGER idempotency_keys_mirror BEFORE INSERT OR UPDATE ON idempotency_keys
    FOR EACH ROW EXECUTE FUNCTION eg_idem_mirror();
