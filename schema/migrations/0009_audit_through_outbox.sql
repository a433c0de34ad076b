-- 0009_audit_through_outbox: a write's audit record travels on its outbox row (issue #5). Only
-- engram's additions change. Runs inside one transaction.

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
