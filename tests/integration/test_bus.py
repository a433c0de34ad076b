"""The event bus between instances (ARCHITECTURE.md §6; issue #4): Redis pub/sub and PostgreSQL
LISTEN/NOTIFY, pokes to the sequencer leader, resync after an outage, slow consumers that page from
the log, retention pruning.

The catch-up poll and the sequencer's idle poll are set to a minute in the bus tests, so an event
that arrives within a second can only have come through the bus (notice to the reader, poke to the
leader). Every wait is bounded.
"""
import re
import time

import pytest

from apiclient import SSE, Api
from rawhttp import one_request

SLOW = {"ENGRAM_SSE_CATCHUP_MS": "60000", "ENGRAM_SEQUENCER_POLL_MS": "60000"}
ID_RE = re.compile(r"^(\d+):(\d+)$")


def metric(srv, name, labels=""):
    r = one_request(srv.host, srv.port, "GET", "/metrics")
    for line in r.body.decode().splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))


def leader_of(srvs):
    return wait_for(lambda: next((s for s in srvs if metric(s, "sequencer_leader") == 1), None),
                    10, "a sequencer leader")


def seqs_of(frames):
    out = []
    for f in frames:
        if f.event and f.event.startswith("memory."):
            m = ID_RE.match(f.id or "")
            assert m, f
            out.append(int(m.group(2)))
    return out


def read_until(sse, memory_id, timeout, what):
    """Reads frames until memory_id's memory.created (bounded; no frame dump on failure)."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "timed out after %d s waiting for %s" % (timeout, what)
        fr = sse.next_event(1.0)
        if fr is not None and fr.event == "memory.created" and fr.data["id"] == memory_id:
            return


def two_instances(engram, env):
    a = engram(env=env)
    b = engram(env=env, db=a.db, migrate=False)
    lead = leader_of([a, b])
    follower = b if lead is a else a
    return lead, follower


@pytest.mark.parametrize("bus", ["redis", "postgres"])
def test_bus_carries_notices_and_pokes(engram, redis_factory, bus):
    env = dict(SLOW)
    if bus == "redis":
        env["REDIS_URL"] = redis_factory().url
    lead, follower = two_instances(engram, env)
    for srv in (lead, follower):
        wait_for(lambda: metric(srv, "bus_connected", '{kind="%s"}' % bus) == 1, 10, "bus up")
    # Subscribe on the leader, write on the follower: the follower pokes the leader over the bus,
    # the leader sequences and delivers locally.
    # Subscribe on the follower, write on the leader: the leader's notice reaches the follower.
    project = "bus-%s-%d" % (bus, time.monotonic_ns())
    subs = [SSE(lead, project), SSE(follower, project)]
    try:
        for s in subs:
            assert s.next_event().event == "connected"
        writers = [Api(follower, project), Api(lead, project)]
        ids = []
        for i in range(20):
            t0 = time.monotonic()
            ids.append(writers[i % 2].create("u%d" % (i % 3), "bus note %d" % i)["id"])
            for s in subs:
                ev = s.wait_event("memory.created", lambda d: d["id"] == ids[-1], timeout=5)
                assert ev is not None
            # One minute polls: anything under a second came through the bus.
            assert time.monotonic() - t0 < 1.5, "event %d took %.2f s" % (i, time.monotonic() - t0)
        for s in subs:
            assert seqs_of(s.frames) == list(range(1, 21))
    finally:
        for s in subs:
            s.close()
    assert metric(follower, "bus_notices_received_total") or metric(
        lead, "bus_pokes_received_total")
    assert metric(lead, "bus_pokes_received_total") >= 1


def test_redis_outage_costs_latency_not_events(engram, redis_factory):
    redis = redis_factory()
    env = {"REDIS_URL": redis.url, "ENGRAM_SSE_CATCHUP_MS": "200"}
    lead, follower = two_instances(engram, env)
    wait_for(lambda: metric(follower, "bus_connected", '{kind="redis"}') == 1, 10, "bus up")
    project = "outage-%d" % time.monotonic_ns()
    s = SSE(follower, project)
    try:
        assert s.next_event().event == "connected"
        api = Api(lead, project)
        ids = [api.create("u", "before %d" % i)["id"] for i in range(5)]
        redis.kill()
        ids += [api.create("u", "during %d" % i)["id"] for i in range(10)]
        # Through the catch-up poll while Redis is gone.
        s.wait_event("memory.created", lambda d: d["id"] == ids[-1], timeout=10)
        wait_for(lambda: metric(follower, "bus_connected", '{kind="redis"}') == 0, 15, "bus down")
        redis.start()
        wait_for(lambda: metric(follower, "bus_connected", '{kind="redis"}') == 1, 15,
                 "bus back up")
        ids += [api.create("u", "after %d" % i)["id"] for i in range(5)]
        s.wait_event("memory.created", lambda d: d["id"] == ids[-1], timeout=10)
        got = [f.data["id"] for f in s.frames if f.event == "memory.created"]
        assert got == ids
        assert seqs_of(s.frames) == list(range(1, 21))
    finally:
        s.close()


def test_slow_consumer_pages_from_the_log(engram):
    srv = engram(env={"ENGRAM_SSE_MAX_PENDING_BYTES": "8192", "ENGRAM_SSE_CATCHUP_MS": "100"})
    project = "slow-%d" % time.monotonic_ns()
    slow = SSE(srv, project, rcvbuf=4096)
    fast = SSE(srv, project)
    try:
        assert slow.next_event().event == "connected"
        assert fast.next_event().event == "connected"
        api = Api(srv, project)
        # About 5 MB: more than the kernel's socket buffers take (the server's grows to 4 MB).
        text = "x" * 9000
        ids = [api.create("u", "%s %d" % (text, i))["id"] for i in range(600)]
        # The fast reader is not held back by the one that does not read.
        read_until(fast, ids[-1], 60, "the fast subscriber to get every event")
        wait_for(lambda: metric(srv, "sse_subscribers_behind_total") >= 1, 10,
                 "the slow subscriber to fall behind")
        # Now it reads: it catches up from the log, everything once, in order.
        read_until(slow, ids[-1], 60, "the slow subscriber to catch up")
        for s in (slow, fast):
            assert [f.data["id"] for f in s.frames if f.event == "memory.created"] == ids
            assert seqs_of(s.frames) == list(range(1, 601))
        assert metric(srv, "sse_subscribers_dropped_total") == 0
    finally:
        slow.close()
        fast.close()


def test_retention_prunes_and_old_positions_reset(engram):
    srv = engram(env={"ENGRAM_EVENT_RETENTION_S": "1"})
    project = "ret-%d" % time.monotonic_ns()
    probe = SSE(srv, project)
    epoch = ID_RE.match(probe.next_event().id).group(1)
    probe.close()
    api = Api(srv, project)
    for i in range(3):
        api.create("u", "old %d" % i)
    wait_for(lambda: (metric(srv, "events_pruned_total") or 0) >= 3, 15, "pruning")
    s = SSE(srv, project, headers={"Last-Event-ID": "%s:1" % epoch})
    try:
        fr = s.next_event()
        assert fr.event == "connected", fr
        fr = s.next_event()
        assert fr.event == "reset", fr
        assert fr.data == {"reason": "position_pruned"}
    finally:
        s.close()


def test_bump_epoch_voids_old_positions(engram, engramd_cli):
    srv = engram()
    project = "epoch-%d" % time.monotonic_ns()
    api = Api(srv, project)
    s = SSE(srv, project)
    try:
        old = ID_RE.match(s.next_event().id).group(1)
        api.create("u", "before the restore")
        ev = s.wait_event("memory.created")
        last_id = ev.id
        r = engramd_cli(["bump-epoch", project], db=srv.db)
        assert r.returncode == 0, r.stdout + r.stderr
        rows = [ln.split("\t") for ln in r.stdout.splitlines() if not ln.startswith("{")]
        assert len(rows) == 1, r.stdout
        name, epoch = rows[0]
        assert name == project and int(epoch) > int(old)
        # The next event carries the new epoch: the open stream ends so its client resumes.
        api.create("u", "after the restore")
        deadline = time.monotonic() + 10
        while not s.ended and not s.conn.eof and time.monotonic() < deadline:
            s.next_frame(0.5)
        assert s.ended or s.conn.eof, "the stream of the old epoch did not end"
    finally:
        s.close()
    s = SSE(srv, project, headers={"Last-Event-ID": last_id})
    try:
        # An unusable position: `reset` (new epoch, current position) comes before `connected`.
        fr = s.next_event()
        assert fr.event == "reset" and fr.data == {"reason": "position_unavailable"}, fr
        assert fr.id == "%s:2" % epoch
        assert s.next_event().event == "connected"
    finally:
        s.close()
    r = engramd_cli(["bump-epoch", "no-such-project"], db=srv.db)
    assert r.returncode == 1
    r = engramd_cli(["bump-epoch", "a", "b"], db=srv.db)
    assert r.returncode == 2
