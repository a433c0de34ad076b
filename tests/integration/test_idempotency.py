"""Idempotency-Key (RELIABILITY.md §2.3 I1-I7, I9): replays, mismatches, concurrent duplicates
across two instances, crashes before and after the commit, retention, validation errors and a
database outage. Keys are scoped to (project, API key, Idempotency-Key)."""
import hashlib
import json
import threading
import time
import uuid

import pytest

from apiclient import Api
from rawhttp import ConnClosed, one_request
from test_auth import AUTH_ON, auth_headers, make_key


def post(srv, path, body, key, api_key=None, project="p1", method="POST", timeout=10.0):
    hdrs = [("Content-Type", "application/json")]
    if key is not None:
        hdrs.append(("Idempotency-Key", key))
    if api_key is not None:
        hdrs += auth_headers(api_key)
    else:
        hdrs.append(("x-project-id", project))
    data = json.dumps(body).encode() if body is not None else None
    return one_request(srv.host, srv.port, method, path, hdrs, data, timeout=timeout)


def count(srv, sql, params=()):
    return srv.cluster.query(srv.db, sql, params)[0][0]


@pytest.fixture
def pair(engram):
    a = engram(env=AUTH_ON)
    b = engram(env=AUTH_ON, db=a.db, migrate=False)
    return a, b


def test_replay_is_byte_identical_across_instances(pair):
    a, b = pair
    k = make_key(a, "p1", "memories:write,memories:read,claims:write")["key"]
    key = str(uuid.uuid4())
    body = {"subject_id": "s1", "text": "idempotent memory"}
    first = post(a, "/api/v1/memories", body, key, k)
    assert first.status == 201 and first.header("idempotent-replayed") is None, first
    for i in range(100):
        r = post((a, b)[i % 2], "/api/v1/memories", body, '"%s"' % key if i % 3 == 0 else key, k)
        assert (r.status, r.body) == (first.status, first.body), r
        assert r.header("idempotent-replayed") == "true"
    assert count(a, "SELECT count(*) FROM memories WHERE subject_id = 's1'") == 1
    # DELETE replays its first answer instead of reporting "already gone"
    mid = json.loads(first.body)["id"]
    d1 = post(b, "/api/v1/memories/" + mid, None, "del-" + key, k, method="DELETE")
    d2 = post(a, "/api/v1/memories/" + mid, None, "del-" + key, k, method="DELETE")
    assert d1.body == d2.body == b'{"ok":true,"deleted":true}' and d2.header("idempotent-replayed")
    # GET ignores the header
    r = one_request(a.host, a.port, "GET", "/api/v1/memories/" + mid,
                    auth_headers(make_key(a, "p1", "memories:read")["key"])
                    + [("Idempotency-Key", key)])
    assert r.status == 404 and r.header("idempotent-replayed") is None  # deleted above


def test_mismatch_and_scope(pair):
    a, b = pair
    k1 = make_key(a, "p1", "memories:write,claims:write")["key"]
    k1b = make_key(a, "p1", "memories:write,claims:write")["key"]
    k2 = make_key(a, "p2", "memories:write,claims:write")["key"]
    key = "order-" + uuid.uuid4().hex
    body = {"subject_id": "s", "predicate": "likes", "object_value": "tea"}
    first = post(a, "/api/v1/claims", body, key, k1)
    assert first.status == 201, first
    for srv, path, b2, method in [
        (b, "/api/v1/claims", dict(body, object_value="coffee"), "POST"),
        (a, "/api/v1/claims?x=1", body, "POST"),
        (b, "/api/v1/memories", body, "POST"),
        (a, "/api/v1/memories/mem_x", {"text": "x"}, "PATCH"),
    ]:
        r = post(srv, path, b2, key, k1, method=method)
        assert r.status == 422, (path, method, r)
        assert json.loads(r.body)["error"] == "idempotency_key_reused"
    assert count(a, "SELECT count(*) FROM claims") == 1
    # other principals, in the same or another project, get their own execution
    for other in (k1b, k2):
        r = post(b, "/api/v1/claims", body, key, other)
        assert r.status == 201 and r.header("idempotent-replayed") is None, r
        assert r.body != first.body
    assert count(a, "SELECT count(*) FROM claims") == 3


# Claims store their answer in a second part of the transaction; memory creates store one of two
# answers rendered before the write, in the same round trip (eg__api_db_known).
WRITE_ROUTES = {
    "claims": ("/api/v1/claims", lambda s: {"subject_id": s, "predicate": "likes",
                                           "object_value": "tea"}),
    "memories": ("/api/v1/memories", lambda s: {"subject_id": s, "text": "tea for " + s}),
}


@pytest.mark.parametrize("route", sorted(WRITE_ROUTES))
def test_concurrent_duplicates_across_instances(engram, route):
    path, make_body = WRITE_ROUTES[route]
    env = dict(AUTH_ON, ENGRAM_TEST_IDEM_HOLD_MS="400")
    a = engram(env=env)
    b = engram(env=env, db=a.db, migrate=False)
    k = make_key(a, "p1", "claims:write,memories:write")["key"]
    outcomes = []
    for i in range(6):
        key = "dup-%d-%s" % (i, uuid.uuid4().hex)
        body = make_body("s%d" % i)
        res = [None, None]
        barrier = threading.Barrier(2)

        def go(j, srv):
            barrier.wait()
            res[j] = post(srv, path, body, key, k)

        ts = [threading.Thread(target=go, args=(j, s)) for j, s in enumerate((a, b))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(15)
        statuses = sorted(r.status for r in res)
        outcomes.append(statuses)
        assert statuses in ([201, 409], [201, 201]), res
        if statuses == [201, 409]:
            loser = [r for r in res if r.status == 409][0]
            assert loser.header("retry-after") == "1"
            assert json.loads(loser.body)["error"] == "idempotency_key_in_use"
            winner = [r for r in res if r.status == 201][0]
            again = post(b, path, body, key, k)
            assert (again.status, again.body) == (201, winner.body)
        else:  # the second arrived after the first committed: a replay
            assert res[0].body == res[1].body
        assert count(a, "SELECT count(*) FROM %s WHERE subject_id = %%s" % route,
                     ("s%d" % i,)) == 1
    assert [201, 409] in outcomes


@pytest.mark.parametrize("route", sorted(WRITE_ROUTES))
def test_crash_before_commit_rolls_back(engram, route):
    path, make_body = WRITE_ROUTES[route]
    a = engram(env=dict(AUTH_ON, ENGRAM_TEST_IDEM_HOLD_MS="2500"))
    b = engram(env=AUTH_ON, db=a.db, migrate=False)
    k = make_key(a, "p1", "claims:write,memories:write")["key"]
    key = "crash-" + uuid.uuid4().hex
    body = make_body("sc")
    th = threading.Thread(target=lambda: _swallow(lambda: post(a, path, body, key, k)))
    th.start()
    time.sleep(0.5)
    a.kill()
    th.join(10)
    t0 = time.monotonic()
    seen = []
    while time.monotonic() - t0 < 8:
        r = post(b, path, body, key, k)
        seen.append(r.status)
        if r.status != 409:
            break
        time.sleep(0.1)
    assert seen[-1] == 201 and set(seen[:-1]) <= {409}, seen
    assert count(b, "SELECT count(*) FROM %s WHERE subject_id = 'sc'" % route) == 1


def _swallow(fn):
    try:
        fn()
    except (ConnClosed, OSError):
        pass


def test_crash_after_commit_replays(engram):
    a = engram(env=dict(AUTH_ON, ENGRAM_TEST_IDEM_CRASH_AFTER_COMMIT="1"))
    b = engram(env=AUTH_ON, db=a.db, migrate=False)
    k = make_key(a, "p1", "memories:write")["key"]
    key = "after-" + uuid.uuid4().hex
    body = {"subject_id": "sa", "text": "committed then crashed"}
    with pytest.raises((ConnClosed, OSError)):
        post(a, "/api/v1/memories", body, key, k)
    a.proc.wait(10)
    a.stopped = True
    r = post(b, "/api/v1/memories", body, key, k)
    assert r.status == 201 and r.header("idempotent-replayed") == "true", r
    assert count(b, "SELECT count(*) FROM memories WHERE subject_id = 'sa'") == 1


def test_retention(engram):
    srv = engram(env={"ENGRAM_IDEMPOTENCY_TTL_S": "1"})
    key = "ttl-" + uuid.uuid4().hex
    body = {"subject_id": "st", "predicate": "likes", "object_value": "tea"}
    first = post(srv, "/api/v1/claims", body, key)
    assert post(srv, "/api/v1/claims", body, key).header("idempotent-replayed") == "true"
    time.sleep(1.5)
    again = post(srv, "/api/v1/claims", body, key)
    assert again.status == 201 and again.header("idempotent-replayed") is None
    assert again.body != first.body
    assert count(srv, "SELECT count(*) FROM claims WHERE subject_id = 'st'") == 2
    assert count(srv, "SELECT count(*) FROM idempotency_answers") == 1


def test_retention_memory_create(engram):
    # A memory create stores its answer with a plain INSERT (no claim, no ON CONFLICT): an answer
    # past the retention that the minutely prune has not removed yet makes that insert fail, and
    # the write must then run anyway (the expired answer deleted), once, and store its own.
    srv = engram(env={"ENGRAM_IDEMPOTENCY_TTL_S": "1"})
    key = "ttl-mem-" + uuid.uuid4().hex
    first = post(srv, "/api/v1/memories", {"subject_id": "sm", "text": "green tea"}, key)
    assert first.status == 201, first
    replay = post(srv, "/api/v1/memories", {"subject_id": "sm", "text": "green tea"}, key)
    assert replay.header("idempotent-replayed") == "true" and replay.body == first.body
    time.sleep(1.5)
    assert count(srv, "SELECT count(*) FROM idempotency_answers "
                      "WHERE created_at < now() - interval '1 second'") == 1  # expired, unpruned
    body = {"subject_id": "sm", "text": "black coffee"}
    again = post(srv, "/api/v1/memories", body, key)
    assert again.status == 201 and again.header("idempotent-replayed") is None, again
    assert json.loads(again.body)["text"] == "black coffee"
    assert count(srv, "SELECT count(*) FROM memories WHERE subject_id = 'sm'") == 2
    assert count(srv, "SELECT count(*) FROM idempotency_answers") == 1
    replay = post(srv, "/api/v1/memories", body, key)
    assert replay.header("idempotent-replayed") == "true" and replay.body == again.body


def test_validation_errors_are_not_stored_but_executed_4xx_are(engram):
    srv = engram()
    key = "v-" + uuid.uuid4().hex
    bad = post(srv, "/api/v1/memories", {"subject_id": "sv"}, key)
    assert bad.status == 400, bad
    good = post(srv, "/api/v1/memories", {"subject_id": "sv", "text": "fixed"}, key)
    assert good.status == 201 and good.header("idempotent-replayed") is None, good
    nf = post(srv, "/api/v1/memories/mem_missing", {"text": "x"}, "nf-" + key, method="PATCH")
    assert nf.status == 404
    nf2 = post(srv, "/api/v1/memories/mem_missing", {"text": "x"}, "nf-" + key, method="PATCH")
    assert (nf2.status, nf2.body) == (404, nf.body) and nf2.header("idempotent-replayed") == "true"


def test_duplicate_skip_is_stored_as_such(engram_server):
    """A keyed create skipped as a duplicate (DECISIONS.md item 4) stores and replays the 200
    skip, also when the client's id names an existing memory: the stored answer follows what the
    transaction wrote, not what the table holds."""
    srv = engram_server
    sub = "dup-" + uuid.uuid4().hex[:8]
    first = post(srv, "/api/v1/memories", {"subject_id": sub, "text": "Same text", "id": "m-" + sub},
                 None)
    assert first.status == 201, first
    for body in ({"subject_id": sub, "text": "same  TEXT", "kind": "note"},
                 {"subject_id": sub, "text": "Same text", "id": "m-" + sub}):
        key = "skip-" + uuid.uuid4().hex
        r1 = post(srv, "/api/v1/memories", body, key)
        assert r1.status == 200, r1
        assert json.loads(r1.body) == {"id": None, "subject_id": sub, "text": body["text"],
                                       "kind": body.get("kind", "fact"), "created": False,
                                       "skipped": True, "reason": "duplicate"}
        r2 = post(srv, "/api/v1/memories", body, key)
        assert (r2.status, r2.body) == (200, r1.body) and r2.header("idempotent-replayed"), r2
    made = post(srv, "/api/v1/memories", {"subject_id": sub, "text": "Other text"}, "made-" + sub)
    again = post(srv, "/api/v1/memories", {"subject_id": sub, "text": "Other text"}, "made-" + sub)
    assert made.status == 201 and (again.status, again.body) == (201, made.body)
    assert again.header("idempotent-replayed") == "true"
    stored = srv.cluster.query(srv.db, "SELECT status, body FROM idempotency_answers "
                               "WHERE idem_key = %s", ("made-" + sub,))
    assert stored == [(201, made.body.decode())]
    assert count(srv, "SELECT count(*) FROM memories WHERE subject_id = %s", (sub,)) == 2


def test_retry_that_collides_with_its_first_execution_replays(engram_server):
    """A retry runs its write before it meets the stored response; a client-chosen id makes that
    write fail (the first execution made the row), and the stored answer still wins."""
    srv = engram_server
    mid = "mem_fixed_" + uuid.uuid4().hex[:8]
    body = {"subject_id": "fixed", "text": "a memory with its own id", "id": mid}
    key = "fixed-" + uuid.uuid4().hex
    first = post(srv, "/api/v1/memories", body, key)
    assert first.status == 201 and json.loads(first.body)["id"] == mid, first
    again = post(srv, "/api/v1/memories", body, key)
    assert (again.status, again.body) == (201, first.body), again
    assert again.header("idempotent-replayed") == "true"
    other = post(srv, "/api/v1/memories", dict(body, text="another text"), "other-" + key)
    assert other.status == 409 and json.loads(other.body)["error"] == "memory_exists", other
    assert count(srv, "SELECT count(*) FROM memories WHERE id = %s", (mid,)) == 1
    assert count(srv, "SELECT count(*) FROM idempotency_answers WHERE idem_key = %s",
                 ("other-" + key,)) == 0


def test_validation_error_needs_no_database(engram, private_pg):
    """The answer given before any database work waits for the lookup of the key, but a failed
    lookup leaves it as it was: a 400 stays a 400 while PostgreSQL is down."""
    srv = engram(cluster=private_pg)
    private_pg.stop("fast")
    r = post(srv, "/api/v1/memories", {"subject_id": "sv"}, "v-" + uuid.uuid4().hex)
    assert r.status == 400 and json.loads(r.body)["error"] != "service_unavailable", r
    private_pg.start()
    srv.wait_ready(20)


@pytest.mark.parametrize("value", ["", '""', "x" * 256, "a\x01b", '"abc', 'ab"c', "a b",
                                   '"a\\"b"'])
def test_invalid_keys(engram_server, value):
    r = post(engram_server, "/api/v1/memories", {"subject_id": "s", "text": "t"}, value)
    assert r.status == 400, r
    # control characters never get past the HTTP parser (its own 400)
    want = "bad_request" if "\x01" in value else "invalid_idempotency_key"
    assert json.loads(r.body)["error"] == want


def test_valid_key_forms(engram_server):
    for value in ["x" * 255, '"quoted key with spaces"', "8e03978e-40d5-43e8-bc93-6894a57f9324"]:
        r = post(engram_server, "/api/v1/memories", {"subject_id": "s", "text": value}, value)
        assert r.status == 201, (value, r)


def test_admin_key_answers_are_never_stored(engram):
    srv = engram(env=AUTH_ON)
    admin = make_key(srv, "p1", "admin")["key"]
    r = post(srv, "/admin/keys", {"scopes": "memories:read"}, "k-1", admin)
    assert r.status == 201
    r2 = post(srv, "/admin/keys", {"scopes": "memories:read"}, "k-1", admin)
    assert r2.status == 201 and r2.body != r.body
    assert count(srv, "SELECT count(*) FROM idempotency_answers") == 0


def test_database_down_during_claim(engram, private_pg):
    srv = engram(cluster=private_pg)
    key = "pgdown-" + uuid.uuid4().hex
    body = {"subject_id": "sd", "text": "after the outage"}
    private_pg.stop("fast")
    r = post(srv, "/api/v1/memories", body, key)
    assert r.status == 503 and r.header("retry-after"), r
    private_pg.start()
    srv.wait_ready(20)
    r = post(srv, "/api/v1/memories", body, key)
    assert r.status == 201 and r.header("idempotent-replayed") is None, r
    r = post(srv, "/api/v1/memories", body, key)
    assert r.status == 201 and r.header("idempotent-replayed") == "true", r
    assert count(srv, "SELECT count(*) FROM idempotency_answers") == 1
    assert Api(srv, "p1").get("/api/v1/memories?subject_id=sd").json["count"] == 1


# ---- migration 0010: stored responses keyed by a digest of their scope ----------------------

# The store of an instance from before migration 0010 (src/api/idempotency.c at 77270a5), as it
# keeps running during a rolling upgrade.
OLD_STORE = (
    "WITH s AS (INSERT INTO idempotency_keys (project_id, principal, idem_key, fingerprint, "
    "status, body) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (project_id, principal, idem_key) "
    "DO UPDATE SET fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status, "
    "body = EXCLUDED.body, created_at = now() WHERE idempotency_keys.created_at <= now() - "
    "make_interval(secs => 86400) RETURNING 1) "
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM s) THEN 0 ELSE eg_idem_refuse('EGI02') END")


def request_fingerprint(method, target, body):
    return hashlib.sha256(b"%s\n%s\n%s" % (method.encode(), target.encode(), body)).hexdigest()


def scope_digest(project, principal, key):
    return str(uuid.UUID(bytes=hashlib.sha256(
        ("%s\x1f%s\x1f%s" % (project, principal, key)).encode()).digest()[:16]))


def test_stored_answers_are_keyed_by_the_scope_digest(engram):
    srv = engram(env=AUTH_ON)
    made = make_key(srv, "p1", "memories:write")
    other = make_key(srv, "p1", "memories:write")
    key = "digest-" + uuid.uuid4().hex
    body = {"subject_id": "sd1", "text": "keyed by digest"}
    for k in (made, other):
        assert post(srv, "/api/v1/memories", body, key, k["key"]).status in (200, 201)
    rows = srv.cluster.query(
        srv.db, "SELECT principal, scope::text, scope = eg_idem_scope(project_id, principal, "
        "idem_key), encode(fingerprint, 'hex') FROM idempotency_answers WHERE idem_key = %s "
        "ORDER BY created_at", (key,))
    assert [r[0] for r in rows] == [made["id"], other["id"]]
    fp = request_fingerprint("POST", "/api/v1/memories", json.dumps(body).encode())
    for principal, scope, sql_agrees, stored_fp in rows:
        assert scope == scope_digest("p1", principal, key) and sql_agrees, (principal, scope)
        assert stored_fp == fp


def test_an_older_instances_answer_replays(engram_server):
    """An instance still on the old version stores into idempotency_keys: the trigger mirrors
    the answer, and this version replays it."""
    srv = engram_server
    key = "old-" + uuid.uuid4().hex
    body = json.dumps({"subject_id": "so1", "text": "stored by an older instance"}).encode()
    fp = request_fingerprint("POST", "/api/v1/memories", body)
    srv.cluster.query(srv.db, OLD_STORE, ("p1", "", key, fp, 201, '{"id":"mem_old"}'))
    r = one_request(srv.host, srv.port, "POST", "/api/v1/memories",
                    [("Content-Type", "application/json"), ("x-project-id", "p1"),
                     ("Idempotency-Key", key)], body)
    assert (r.status, r.body) == (201, b'{"id":"mem_old"}'), r
    assert r.header("idempotent-replayed") == "true"
    assert count(srv, "SELECT count(*) FROM memories WHERE subject_id = 'so1'") == 0


def test_an_older_instance_cannot_repeat_a_newer_ones_write(engram_server):
    import psycopg2
    srv = engram_server
    key = "new-" + uuid.uuid4().hex
    body = {"subject_id": "so2", "text": "stored by this version"}
    assert post(srv, "/api/v1/memories", body, key).status == 201
    fp = request_fingerprint("POST", "/api/v1/memories", json.dumps(body).encode())
    with pytest.raises(psycopg2.Error) as e:
        srv.cluster.query(srv.db, OLD_STORE, ("p1", "", key, fp, 201, '{"again":true}'))
    assert e.value.pgcode == "EGI02"
    # Past the retention the older instance's write runs, and its answer replaces the old one.
    srv.cluster.query(srv.db, "UPDATE idempotency_answers SET created_at = now() - "
                      "interval '25 hours' WHERE idem_key = %s", (key,))
    srv.cluster.query(srv.db, OLD_STORE, ("p1", "", key, fp, 201, '{"again":true}'))
    assert srv.cluster.query(srv.db, "SELECT body FROM idempotency_answers WHERE idem_key = %s",
                             (key,)) == [('{"again":true}',)]


def test_migration_0010_carries_stored_answers_over(engram):
    """Answers stored before the upgrade replay after it: the database is taken back to
    version 9 with one stored answer, then migrated."""
    db = engram.pg.create_database()
    engram.migrate(engram.pg.url(db))
    q = lambda sql, params=(): engram.pg.query(db, sql, params)  # noqa: E731
    q("DROP TRIGGER idempotency_keys_mirror ON idempotency_keys")
    q("DROP TABLE idempotency_answers")
    q("DROP FUNCTION eg_idem_mirror(), eg_idem_scope(text, text, text)")
    q("DELETE FROM schema_migrations WHERE version = 10")
    key = "pre-" + uuid.uuid4().hex
    body = json.dumps({"subject_id": "so3", "text": "stored before the upgrade"}).encode()
    fp = request_fingerprint("POST", "/api/v1/memories", body)
    q(OLD_STORE, ("p1", "", key, fp, 201, '{"id":"mem_pre"}'))
    engram.migrate(engram.pg.url(db))
    assert q("SELECT scope::text, encode(fingerprint, 'hex'), status, body FROM "
             "idempotency_answers") == [(scope_digest("p1", "", key), fp, 201, '{"id":"mem_pre"}')]
    srv2 = engram(db=db, migrate=False)
    r = one_request(srv2.host, srv2.port, "POST", "/api/v1/memories",
                    [("Content-Type", "application/json"), ("x-project-id", "p1"),
                     ("Idempotency-Key", key)], body)
    assert (r.status, r.body) == (201, b'{"id":"mem_pre"}') and r.header("idempotent-replayed")
