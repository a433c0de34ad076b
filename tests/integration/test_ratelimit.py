"""Rate limits per API key across instances (RELIABILITY.md §2.2 A9; docs/API.md)."""
import json
import re

from rawhttp import one_request
from test_auth import AUTH_ON, auth_headers, make_key

PATH = "/api/v1/memories?subject_id=s"


def get(srv, key=None, project="p"):
    hdrs = auth_headers(key) if key else [("x-project-id", project)]
    return one_request(srv.host, srv.port, "GET", PATH, hdrs)


def test_shared_limit_across_two_instances(engram, redis_factory):
    redis = redis_factory()
    env = dict(AUTH_ON, REDIS_URL=redis.url, ENGRAM_RATE_LIMIT="20",
               ENGRAM_RATE_LIMIT_WINDOW_S="60", ENGRAM_RATE_LIMIT_INSTANCES="2")
    a = engram(env=env)
    b = engram(env=env, db=a.db, migrate=False)
    k1 = make_key(a, "p1", "memories:read")["key"]
    k2 = make_key(a, "p2", "memories:read")["key"]
    statuses = []
    for i in range(30):
        r = get((a, b)[i % 2], k1)
        statuses.append(r.status)
        assert r.header("ratelimit-policy") == '"default";q=20;w=60', r
        assert re.match(r'^"default";r=\d+;t=\d+$', r.header("ratelimit")), r
        if r.status == 429:
            body = json.loads(r.body)
            assert body["error"] == "rate_limited", r
            t = int(r.header("ratelimit").split("t=")[1])
            assert int(r.header("retry-after")) >= t and r.header("ratelimit").startswith(
                '"default";r=0;')
    accepted = statuses.count(200)
    assert set(statuses) <= {200, 429}
    # one shared counter: 20, plus at most the increments in flight (overshoot, A9)
    assert 20 <= accepted <= 22, statuses
    assert statuses[-1] == 429
    # another key is unaffected
    assert get(a, k2).status == 200 and get(b, k2).status == 200


def post(srv, key, text):
    return one_request(srv.host, srv.port, "POST", "/api/v1/memories",
                       auth_headers(key) + [("content-type", "application/json")],
                       json.dumps({"subject_id": "s", "text": text}).encode())


def test_per_scope_quota_across_two_instances(engram, redis_factory):
    """ENGRAM_RATE_LIMIT_SCOPES gives writes their own quota, shared by both instances; reads
    keep the default quota in a counter of their own, and a scope with no quota and no default
    is not limited at all."""
    redis = redis_factory()
    env = dict(AUTH_ON, REDIS_URL=redis.url, ENGRAM_RATE_LIMIT="12",
               ENGRAM_RATE_LIMIT_SCOPES="memories:write=4, claims:read=0")
    a = engram(env=env)
    b = engram(env=env, db=a.db, migrate=False)
    key = make_key(a, "p1", "memories:read,memories:write,claims:read")["key"]
    writes = []
    for i in range(10):
        r = post((a, b)[i % 2], key, "w%d" % i)
        writes.append(r.status)
        assert r.header("ratelimit-policy") == '"memories:write";q=4;w=60', r
        assert r.header("ratelimit").startswith('"memories:write";r='), r
        if r.status == 429:
            assert json.loads(r.body)["error"] == "rate_limited"
            assert int(r.header("retry-after")) >= 1
    assert set(writes) <= {201, 429}
    assert 4 <= writes.count(201) <= 6 and writes[-1] == 429, writes
    # the writes did not use up the read quota: reads count against "default", q=12
    r = get(a, key)
    assert r.status == 200 and r.header("ratelimit-policy") == '"default";q=12;w=60', r
    assert r.header("ratelimit").startswith('"default";r=11;'), r
    # claims:read=0 means unlimited: no headers at all
    r = one_request(a.host, a.port, "GET", "/api/v1/claims/subject/s/truth", auth_headers(key))
    assert r.status == 200 and r.header("ratelimit") is None, r
    # per key: a fresh key of the same project has its own write quota
    other = make_key(a, "p1", "memories:write")["key"]
    assert post(b, other, "fresh").status == 201


def test_scope_quota_alone_turns_the_limiter_on(engram):
    """With no default quota, only the named scope is limited (local share, no Redis)."""
    srv = engram(env={"ENGRAM_RATE_LIMIT_SCOPES": "memories:read=3"})
    statuses = [get(srv, project="q").status for _ in range(5)]
    assert statuses == [200] * 3 + [429] * 2, statuses
    r = one_request(srv.host, srv.port, "POST", "/api/v1/memories",
                    [("x-project-id", "q"), ("content-type", "application/json")],
                    b'{"subject_id":"s","text":"writes are not limited"}')
    assert r.status == 201 and r.header("ratelimit") is None, r


def test_local_share_without_redis(engram):
    srv = engram(env={"ENGRAM_RATE_LIMIT": "10", "ENGRAM_RATE_LIMIT_INSTANCES": "2"})
    statuses = [get(srv).status for _ in range(8)]
    # no Redis: each instance allows its share, q/N = 5, counted per client address
    assert statuses == [200] * 5 + [429] * 3, statuses
    # health and metrics are never limited
    assert one_request(srv.host, srv.port, "GET", "/health/live", []).status == 200


def test_off_by_default(engram_server):
    r = get(engram_server)
    assert r.status == 200 and r.header("ratelimit") is None


def test_fallback_when_redis_goes_down(engram, redis_factory):
    import time
    redis = redis_factory()
    srv = engram(env={"REDIS_URL": redis.url, "ENGRAM_RATE_LIMIT": "10",
                      "ENGRAM_RATE_LIMIT_INSTANCES": "2", "ENGRAM_RATE_LIMIT_WINDOW_S": "3600"})
    assert [get(srv, project="x").status for _ in range(3)] == [200] * 3
    redis.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = one_request(srv.host, srv.port, "GET", "/metrics", []).body
        if re.search(rb"^engram_redis_up 0", m, re.M) or re.search(rb"^redis_up 0", m, re.M):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("redis_up never went to 0")
    statuses = [get(srv, project="x").status for _ in range(6)]
    # the local share (5) now applies, counting what this instance let through in the window
    assert statuses == [200] * 2 + [429] * 4, statuses
    srv.assert_alive()


def redis_cli(redis, *args):
    import subprocess
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(redis.port)] + list(args),
                          check=True, capture_output=True, text=True, timeout=10).stdout


def shared_count(redis):
    keys = redis_cli(redis, "--scan", "--pattern", "engram:rl:*").split()
    return sum(int(redis_cli(redis, "GET", k).strip() or 0) for k in keys)


def wait_shared(redis, n, timeout=10.0):
    """The shared count once it reaches n (or what it is after timeout s)."""
    import time
    deadline = time.monotonic() + timeout
    while shared_count(redis) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return shared_count(redis)


def test_increments_coalesce_while_one_is_in_flight(engram, redis_factory):
    """A counter has one increment in flight at a time: the requests made while Redis holds it
    are added up and sent as one INCRBY when it answers, and the shared count still ends equal
    to the requests let through."""
    import time
    redis = redis_factory()
    srv = engram(env={"REDIS_URL": redis.url, "ENGRAM_RATE_LIMIT": "1000",
                      "ENGRAM_RATE_LIMIT_WINDOW_S": "3600"})
    assert get(srv, project="x").status == 200
    wait_shared(redis, 1)
    redis_cli(redis, "CONFIG", "RESETSTAT")
    # Redis holds every script for 1.5 s (PING, the liveness probe, still answers)
    redis_cli(redis, "CLIENT", "PAUSE", "1500", "WRITE")
    t0 = time.monotonic()
    statuses = [get(srv, project="x").status for _ in range(20)]
    assert time.monotonic() - t0 < 1.2, "the requests were slower than the pause"
    assert statuses == [200] * 20
    assert wait_shared(redis, 21) == 21
    stats = redis_cli(redis, "INFO", "commandstats")
    calls = int(re.search(r"cmdstat_eval:calls=(\d+)", stats).group(1))
    assert calls == 2, stats  # the first request's, then the other 19 as one
    srv.assert_alive()


def test_far_from_the_limit_increments_wait_for_the_sweep(engram, redis_factory):
    """Under a quota far above the traffic a counter holds its increments back (at most 1/1024 of
    the quota left) and sends them with the sweep, so Redis sees a few commands instead of one per
    request; they still all reach the shared count, within a sweep period."""
    import time
    redis = redis_factory()
    srv = engram(env={"REDIS_URL": redis.url, "ENGRAM_RATE_LIMIT": "1000000",
                      "ENGRAM_RATE_LIMIT_WINDOW_S": "3600", "ENGRAM_AUTH_SWEEP_MS": "1000"})
    redis_cli(redis, "CONFIG", "RESETSTAT")
    t0 = time.monotonic()
    statuses = [get(srv, project="x").status for _ in range(60)]
    elapsed = time.monotonic() - t0
    assert statuses == [200] * 60
    assert wait_shared(redis, 60) == 60
    stats = redis_cli(redis, "INFO", "commandstats")
    calls = int(re.search(r"cmdstat_eval:calls=(\d+)", stats).group(1))
    # one per sweep at most (1 s apart) during the requests, and the one after them
    assert calls <= int(elapsed) + 2, (calls, elapsed, stats)
    srv.assert_alive()


def test_near_the_limit_nothing_is_held_back(engram, redis_factory):
    """Held-back increments never cost the limit: with 2,000 of a 2,048 quota used, what is left
    (48) is under RL_HOLD_DIV, so each request's increment goes out at once, and a second instance
    stops at the quota."""
    redis = redis_factory()
    env = {"REDIS_URL": redis.url, "ENGRAM_RATE_LIMIT": "2048",
           "ENGRAM_RATE_LIMIT_WINDOW_S": "3600", "ENGRAM_AUTH_SWEEP_MS": "1000"}
    a = engram(env=env)
    b = engram(env=env, db=a.db, migrate=False)
    assert get(a, project="x").status == 200
    wait_shared(redis, 1)
    key = redis_cli(redis, "--scan", "--pattern", "engram:rl:*").split()[0]
    redis_cli(redis, "INCRBY", key, "1999")  # another instance's 1,999
    statuses = [get((a, b)[i % 2], project="x").status for i in range(60)]
    accepted = statuses.count(200)
    # 48 left, plus at most the increments in flight (A9)
    assert 48 <= accepted <= 50, statuses
    assert statuses[-1] == 429
