-- 0007_idempotency_refuse: a keyed write claims its key and stores its response without a
-- PL/pgSQL call on the common path. Only engram's additions change. Runs inside one transaction.

-- Refuses an idempotent write from inside its own pipeline, which rolls the transaction back:
-- EGI01 (another request holds the key, on any instance) or EGI02 (a response is stored within
-- the retention: the caller replays it). src/api/idempotency.c calls it only from the failing
-- branch of a CASE, so a first execution never runs it. eg_idem_begin (0005) stays for
-- instances of the previous version during a rolling upgrade; both lock the same hash.
CREATE OR REPLACE FUNCTION eg_idem_refuse(code text) RETURNS integer
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = code,
        MESSAGE = CASE code WHEN 'EGI01' THEN 'idempotency key in use'
                  ELSE 'idempotency key already used' END;
END
$$;
