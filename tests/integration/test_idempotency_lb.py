"""Idempotency-Key through real HAProxy (ops/haproxy/haproxy.cfg) in front of two instances
(RELIABILITY.md §2.3: I1-I5 and I9 "on A and B directly, and through HAProxy"; issue #5).

The API backend balances round robin, so consecutive requests through the proxy alternate between
the instances: every replay below crosses instances as a client behind a load balancer would.
HAProxy itself only retries a request whose connection could not be made (`retry-on
conn-failure`); a request cut by an instance's death reaches the client as a 502, and the client's
retry with the same key is what the key exists for."""
import json
import os
import threading
import time
import uuid
from types import SimpleNamespace

import pytest

from rawhttp import ConnClosed
from test_auth import AUTH_ON, make_key
from test_cluster import HAPROXY, HAProxy
from test_idempotency import count, post


def _lb(engram, workdir, env, **where):
    """Two instances on one database (where: e.g. cluster=private_pg) behind HAProxy."""
    if not os.access(HAPROXY, os.X_OK):
        pytest.skip("haproxy not installed at %s" % HAPROXY)
    a = engram(env=env, **where)
    b = engram(env=env, db=a.db, migrate=False, **where)
    rundir = workdir / ("haproxy-idem-%s" % uuid.uuid4().hex[:8])
    rundir.mkdir()
    lb = HAProxy(rundir, [a, b]).start()
    return a, b, lb, SimpleNamespace(host=lb.target.host, port=lb.port)


@pytest.fixture
def lb_pair(engram, workdir):
    a, b, lb, front = _lb(engram, workdir, AUTH_ON)
    yield a, b, lb, front
    lb.stop()


def _served_by(lb):
    """{server name: requests it answered} from HAProxy's stats (be_engram_api)."""
    from rawhttp import one_request
    r = one_request(lb.target.host, lb.stats_port, "GET", "/stats;csv", timeout=2)
    lines = r.body.decode().splitlines()
    cols = lines[0].lstrip("# ").split(",")
    out = {}
    for line in lines[1:]:
        row = dict(zip(cols, line.split(",")))
        if row.get("pxname") == "be_engram_api" and row.get("svname") in lb.names:
            out[row["svname"]] = (int(row["stot"] or 0), int(row["scur"] or 0))
    return out


def test_replay_and_mismatch_through_haproxy(lb_pair):
    """I1 and I2 through the proxy: one effect, byte-identical replays from both instances, 422 for
    another payload, and another principal's own execution."""
    a, b, lb, front = lb_pair
    k = make_key(a, "p1", "memories:write,claims:write")["key"]
    k2 = make_key(a, "p2", "memories:write")["key"]
    key = "lb-" + uuid.uuid4().hex
    body = {"subject_id": "lb1", "text": "through the proxy"}
    before = _served_by(lb)
    first = post(front, "/api/v1/memories", body, key, k)
    assert first.status == 201 and first.header("idempotent-replayed") is None, first
    for _ in range(20):
        r = post(front, "/api/v1/memories", body, key, k)
        assert (r.status, r.body) == (first.status, first.body), r
        assert r.header("idempotent-replayed") == "true", r
    after = _served_by(lb)
    # both instances answered replays (round robin), so the stored response crossed instances
    assert all(after[n][0] - before.get(n, (0, 0))[0] >= 5 for n in lb.names), (before, after)
    assert count(a, "SELECT count(*) FROM memories WHERE subject_id = 'lb1'") == 1
    r = post(front, "/api/v1/memories", dict(body, text="another payload"), key, k)
    assert r.status == 422 and json.loads(r.body)["error"] == "idempotency_key_reused", r
    r = post(front, "/api/v1/memories", body, key, k2)
    assert r.status == 201 and r.header("idempotent-replayed") is None and r.body != first.body
    assert count(a, "SELECT count(*) FROM memories WHERE subject_id = 'lb1'") == 2


def test_concurrent_duplicates_through_haproxy(engram, workdir):
    """I3 through the proxy: the same keyed POST twice at once, so round robin sends one to each
    instance: exactly one execution; the other is a 409 + Retry-After (then a replay) or, when it
    arrives after the commit, a replay."""
    a, b, lb, front = _lb(engram, workdir, dict(AUTH_ON, ENGRAM_TEST_IDEM_HOLD_MS="300"))
    try:
        k = make_key(a, "p1", "claims:write")["key"]
        seen = []
        for i in range(8):
            key = "lbdup-%d-%s" % (i, uuid.uuid4().hex)
            body = {"subject_id": "d%d" % i, "predicate": "likes", "object_value": "tea"}
            res = [None, None]
            barrier = threading.Barrier(2)

            def go(j):
                barrier.wait()
                res[j] = post(front, "/api/v1/claims", body, key, k)

            ts = [threading.Thread(target=go, args=(j,)) for j in range(2)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(15)
            statuses = sorted(r.status for r in res)
            seen.append(statuses)
            assert statuses in ([201, 409], [201, 201]), res
            winner = [r for r in res if r.header("idempotent-replayed") is None and r.status == 201]
            assert len(winner) == 1, res
            for r in res:
                if r.status == 409:
                    assert r.header("retry-after") == "1", r
                    assert json.loads(r.body)["error"] == "idempotency_key_in_use", r
                elif r is not winner[0]:
                    assert r.body == winner[0].body and r.header("idempotent-replayed") == "true"
            again = post(front, "/api/v1/claims", body, key, k)
            assert (again.status, again.body) == (201, winner[0].body), again
            assert count(a, "SELECT count(*) FROM claims WHERE subject_id = %s", ("d%d" % i,)) == 1
        assert [201, 409] in seen, seen  # the hold makes real overlaps; at least one was refused
    finally:
        lb.stop()


def _kill_busy_instance(lb, servers, timeout=3.0):
    """SIGKILLs the instance HAProxy has a request in flight on; returns it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = [n for n, (_, cur) in _served_by(lb).items() if cur > 0]
        if len(busy) == 1:
            victim = servers[lb.names.index(busy[0])]
            victim.kill()
            return victim
        time.sleep(0.02)
    raise AssertionError("no single instance had the request in flight")


def _retry_until_done(front, body, key, k, path, deadline_s=15.0):
    seen = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            r = post(front, path, body, key, k)
        except (ConnClosed, OSError) as e:
            seen.append(type(e).__name__)
            time.sleep(0.1)
            continue
        seen.append(r.status)
        if r.status not in (409, 502, 503):
            return r, seen
        time.sleep(0.1)
    raise AssertionError("no final answer within %ss: %r" % (deadline_s, seen))


def test_crash_before_commit_through_haproxy(engram, workdir):
    """I4 through the proxy: the instance running a keyed POST dies before its commit. The client
    sees the cut (502 from HAProxy), retries with the same key through the proxy, gets 409 while
    the dead session's lock lasts at most, then one fresh execution: one effect."""
    a, b, lb, front = _lb(engram, workdir, dict(AUTH_ON, ENGRAM_TEST_IDEM_HOLD_MS="1500"))
    try:
        k = make_key(a, "p1", "claims:write")["key"]
        key = "lbcrash-" + uuid.uuid4().hex
        body = {"subject_id": "lbc", "predicate": "likes", "object_value": "tea"}
        first = {}

        def go():
            try:
                first["r"] = post(front, "/api/v1/claims", body, key, k)
            except (ConnClosed, OSError) as e:
                first["r"] = e

        th = threading.Thread(target=go)
        th.start()
        victim = _kill_busy_instance(lb, [a, b])
        th.join(10)
        cut = first["r"]
        assert not hasattr(cut, "status") or cut.status == 502, cut
        survivor = b if victim is a else a
        r, seen = _retry_until_done(front, body, key, k, "/api/v1/claims")
        assert r.status == 201 and r.header("idempotent-replayed") is None, (r, seen)
        assert set(seen[:-1]) <= {409, 502, 503, "ConnClosed", "ConnectionResetError"}, seen
        assert count(survivor, "SELECT count(*) FROM claims WHERE subject_id = 'lbc'") == 1
        r = post(front, "/api/v1/claims", body, key, k)
        assert r.status == 201 and r.header("idempotent-replayed") == "true", r
    finally:
        lb.stop()


def test_crash_after_commit_through_haproxy(engram, workdir):
    """I5 through the proxy: the instance commits the effect and its stored response, then dies
    before answering. The retry through the proxy replays the stored response: one effect."""
    a, b, lb, front = _lb(engram, workdir,
                          dict(AUTH_ON, ENGRAM_TEST_IDEM_CRASH_AFTER_COMMIT="1"))
    try:
        k = make_key(a, "p1", "memories:write")["key"]
        key = "lbafter-" + uuid.uuid4().hex
        body = {"subject_id": "lba", "text": "committed, then the instance died"}
        try:
            cut = post(front, "/api/v1/memories", body, key, k)
            assert cut.status == 502, cut  # HAProxy: the server closed without an answer
        except (ConnClosed, OSError):
            pass
        deadline = time.monotonic() + 5  # the socket closes a moment before the process is reaped
        dead = []
        while not dead and time.monotonic() < deadline:
            dead = [s for s in (a, b) if s.proc.poll() is not None]
            time.sleep(0.02)
        assert len(dead) == 1, "exactly one instance should have run (and died after) the commit"
        dead[0].stopped = True
        r, seen = _retry_until_done(front, body, key, k, "/api/v1/memories")
        assert r.status == 201 and r.header("idempotent-replayed") == "true", (r, seen)
        assert count(a, "SELECT count(*) FROM memories WHERE subject_id = 'lba'") == 1
    finally:
        lb.stop()


def test_database_down_during_claim_through_haproxy(engram, private_pg, workdir):
    """I9 through the proxy: PostgreSQL down when the keyed request arrives: 503 + Retry-After
    (engram's answer, passed through), no orphan claim, and the retry after recovery runs once."""
    a, b, lb, front = _lb(engram, workdir, {}, cluster=private_pg)
    try:
        key = "lbpg-" + uuid.uuid4().hex
        body = {"subject_id": "lbpg", "text": "after the outage"}
        private_pg.stop("fast")
        r = post(front, "/api/v1/memories", body, key)
        assert r.status == 503 and r.header("retry-after"), r
        private_pg.start()
        a.wait_ready(20)
        b.wait_ready(20)
        r, seen = _retry_until_done(front, body, key, None, "/api/v1/memories")
        assert r.status == 201 and r.header("idempotent-replayed") is None, (r, seen)
        r = post(front, "/api/v1/memories", body, key)
        assert r.status == 201 and r.header("idempotent-replayed") == "true", r
        assert count(a, "SELECT count(*) FROM idempotency_answers") == 1
        assert count(a, "SELECT count(*) FROM memories WHERE subject_id = 'lbpg'") == 1
    finally:
        lb.stop()
