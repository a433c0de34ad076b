-- 0008_lean_layer_rows: cheaper rows for the production layers (issue #5). Only engram's
-- additions change. Runs inside one transaction.

-- audit_log gets a row for every write made with an API key. Its two btree indexes over
-- (project, time) and (project, object) made each of those rows pay two more index insertions,
-- one of them at a random place in the index, for reads that only an operator's investigation
-- makes. A BRIN index over the insertion time takes no space to speak of and keeps a time-range
-- query (the way an investigation starts) from reading the whole table; the id order stays
-- indexed by the primary key. An operator who looks objects up often can add a btree back.
DROP INDEX IF EXISTS idx_audit_log_project;
DROP INDEX IF EXISTS idx_audit_log_object;
CREATE INDEX IF NOT EXISTS idx_audit_log_at ON audit_log USING brin (at);

-- The stored responses are pruned by age only, in insertion order: a BRIN index serves that
-- scan as well as the btree did, without a btree insertion per keyed write.
DROP INDEX IF EXISTS idx_idempotency_keys_created;
CREATE INDEX IF NOT EXISTS idx_idempotency_keys_created_brin
    ON idempotency_keys USING brin (created_at);
